//! Which credential source each cloud DNS-01 solver of an issuer signs in with, checked
//! when the issuer is reconciled (the solver signs in again for each order): shown in
//! `status.cloudCredentials` and by `kubectl caas check issuer`. Names only, never a key.

use crate::api::issuer::{CloudCredentials, SolverConfig};
use crate::shared::IssuerHandle;
use crate::shared::settings::AmbientCredentials;
use crate::solvers::dns01::factory;

/// How long one solver's sign-in may hold up the issuer's reconcile.
const SIGN_IN_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// `message` without what changes on every attempt (AWS request ids, Entra ID's trace
/// and correlation ids and timestamps): the status is written only when it changes, and a
/// changing status would wake the issuer again and again.
fn stable(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("aws_request_id: ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "aws_request_id: ".len()..];
        let end = tail.strip_prefix("Some(").map_or(0, |_| "Some(".len());
        let value = &tail[end..];
        let skip = match value.strip_prefix('"').and_then(|v| v.find('"')) {
            Some(close) => end + close + 2,
            None => value.find([',', ' ', '}']).map_or(tail.len(), |i| end + i),
        };
        rest = tail[skip..].trim_start_matches(')');
        out.push_str("aws_request_id: _");
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| {
            let l = l.trim_start();
            !["Trace ID:", "Correlation ID:", "Timestamp:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cloud provider a solver entry names, if any.
fn cloud_provider(config: &SolverConfig) -> Option<&'static str> {
    let dns01 = config.dns_provider()?;
    factory::configured(dns01)
        .into_iter()
        .find(|p| ["route53", "cloudDNS", "azureDNS"].contains(p))
}

/// Signs in for each cloud solver of `issuer` (no DNS change is made).
pub async fn check(
    client: &kube::Client,
    issuer: &IssuerHandle,
    ambient: AmbientCredentials,
) -> Vec<CloudCredentials> {
    let mut out = Vec::new();
    for (index, config) in issuer.spec.solvers.iter().enumerate() {
        let Some(provider) = cloud_provider(config) else {
            continue;
        };
        let signed = tokio::time::timeout(
            SIGN_IN_WAIT,
            factory::provider(client, issuer, config, ambient),
        );
        let (source, error) = match signed.await {
            Ok(Ok(p)) => (p.credential_source().map(|s| s.to_string()), None),
            Ok(Err(e)) => (None, Some(stable(&e.to_string()))),
            Err(_) => (None, Some(format!("no answer within {SIGN_IN_WAIT:?}"))),
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

#[cfg(test)]
mod tests {
    use super::stable;

    #[test]
    fn what_changes_per_attempt_is_left_out() {
        let aws = r#"no AWS credentials: Error { code: "AccessDenied", message: "Not authorized", aws_request_id: "4f0c-11" }"#;
        let again = r#"no AWS credentials: Error { code: "AccessDenied", message: "Not authorized", aws_request_id: "9a1b-22" }"#;
        assert_eq!(stable(aws), stable(again));
        assert!(stable(aws).contains("AccessDenied") && !stable(aws).contains("4f0c"));
        let entra = "AADSTS700016: Application not found.\nTrace ID: 1\nCorrelation ID: 2\nTimestamp: 2026-12-06 11:00:00Z";
        assert_eq!(stable(entra), "AADSTS700016: Application not found.");
    }
}
