//! Which credential source each cloud DNS-01 solver of an issuer signs in with, checked
//! when the issuer is reconciled (the solver signs in again for each order): shown in
//! `status.cloudCredentials` and by `kubectl caas check issuer`. Names only, never a key.

use crate::api::issuer::{CloudCredentials, SolverConfig};
use crate::shared::IssuerHandle;
use crate::solvers::dns01::factory;

/// The cloud provider a solver entry names, if any.
fn cloud_provider(config: &SolverConfig) -> Option<&'static str> {
    let dns01 = config.dns01.as_ref()?;
    factory::configured(dns01)
        .into_iter()
        .find(|p| ["route53", "cloudDNS", "azureDNS"].contains(p))
}

/// Signs in for each cloud solver of `issuer` (no DNS change is made).
pub async fn check(client: &kube::Client, issuer: &IssuerHandle) -> Vec<CloudCredentials> {
    let mut out = Vec::new();
    for (index, config) in issuer.spec.solvers.iter().enumerate() {
        let Some(provider) = cloud_provider(config) else {
            continue;
        };
        let (source, error) = match factory::provider(client, issuer, config).await {
            Ok(p) => (p.credential_source().map(|s| s.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(CloudCredentials {
            solver: u32::try_from(index).unwrap_or(u32::MAX),
            provider: provider.to_string(),
            source,
            error,
        });
    }
    out
}
