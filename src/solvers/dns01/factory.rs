//! The DNS provider an issuer's `dns01` solver entry names, built with its credentials.

use super::provider::{DnsProvider, Secrets};
use super::{acme_dns, azure_dns, cloud_dns, cloudflare, digitalocean, route53, webhook};
use crate::api::issuer::Dns01Solver;
use crate::api::issuer::SolverConfig;
use crate::shared::settings::AmbientCredentials;
use crate::shared::{IssuerHandle, IssuerKind};
use crate::solvers::SolverError;
use crate::solvers::rfc2136::{self, Rfc2136Client};

/// Why `issuer` may not sign in to a cloud with the operator's own identity for `dns01`
/// (a cloud provider without keys), if it may not.
pub fn ambient_refused(
    issuer: &IssuerHandle,
    dns01: &Dns01Solver,
    allowed: AmbientCredentials,
) -> Option<String> {
    let keyless = [
        (
            "route53",
            dns01
                .route53
                .as_ref()
                .map(|r| r.secret_access_key_secret_ref.is_none()),
        ),
        (
            "cloudDNS",
            dns01
                .cloud_dns
                .as_ref()
                .map(|g| g.service_account_secret_ref.is_none()),
        ),
        (
            "azureDNS",
            dns01
                .azure_dns
                .as_ref()
                .map(|a| a.client_secret_secret_ref.is_none()),
        ),
    ];
    let ambient = keyless
        .into_iter()
        .find_map(|(name, keyless)| (keyless == Some(true)).then_some(name))?;
    let (ok, flag, kind) = match issuer.kind {
        IssuerKind::Namespaced => (
            allowed.issuers,
            "--issuer-ambient-credentials",
            "CaaSIssuer",
        ),
        IssuerKind::Cluster => (
            allowed.cluster_issuers,
            "--cluster-issuer-ambient-credentials",
            "ClusterCaaSIssuer",
        ),
    };
    (!ok).then(|| {
        format!(
            "{ambient} names no key, and the operator's own cloud identity is not lent to a {kind}: give a key Secret, use a ClusterCaaSIssuer, or start the operator with {flag} (chart: ambientCredentials)"
        )
    })
}

/// The provider a `dns01` solver entry names, with its credentials read; which cloud
/// credential source signed in (never its value) goes to the debug log.
pub async fn provider(
    client: &kube::Client,
    issuer: &IssuerHandle,
    config: &SolverConfig,
    ambient: AmbientCredentials,
) -> Result<Box<dyn DnsProvider>, SolverError> {
    if let Some(dns01) = config.dns_provider()
        && let Some(why) = ambient_refused(issuer, dns01, ambient)
    {
        return Err(SolverError::InvalidSpec(why));
    }
    let provider = build(client, issuer, config).await?;
    if let Some(source) = provider.credential_source() {
        tracing::debug!(issuer = %issuer.name, credentials = %source, "DNS-01 provider signed in");
    }
    Ok(provider)
}

async fn build(
    client: &kube::Client,
    issuer: &IssuerHandle,
    config: &SolverConfig,
) -> Result<Box<dyn DnsProvider>, SolverError> {
    let dns01 = config
        .dns_provider()
        .ok_or_else(|| SolverError::InvalidSpec("the solver has no DNS provider".into()))?;
    let secrets = Secrets { client, issuer };
    if let Some(cfg) = &dns01.rfc2136 {
        let secret = secrets.value(&cfg.tsig_secret_secret_ref, "TSIG").await?;
        let server = rfc2136::resolve_nameserver(&cfg.nameserver).await?;
        return Ok(Box::new(Rfc2136Client::new(
            server,
            &cfg.tsig_key_name,
            cfg.tsig_algorithm.as_deref(),
            secret.as_bytes(),
        )?));
    }
    if let Some(cfg) = &dns01.cloudflare {
        return Ok(Box::new(cloudflare::Cloudflare::new(secrets, cfg).await?));
    }
    if let Some(cfg) = &dns01.route53 {
        return Ok(Box::new(route53::Route53::new(secrets, cfg).await?));
    }
    if let Some(cfg) = &dns01.cloud_dns {
        return Ok(Box::new(cloud_dns::CloudDns::new(secrets, cfg).await?));
    }
    if let Some(cfg) = &dns01.azure_dns {
        return Ok(Box::new(azure_dns::AzureDns::new(secrets, cfg).await?));
    }
    if let Some(cfg) = &dns01.digitalocean {
        return Ok(Box::new(
            digitalocean::DigitalOcean::new(secrets, cfg).await?,
        ));
    }
    if let Some(cfg) = &dns01.acme_dns {
        return Ok(Box::new(acme_dns::AcmeDns::new(secrets, cfg).await?));
    }
    if let Some(cfg) = &dns01.webhook {
        return Ok(Box::new(webhook::Webhook::new(secrets, cfg).await?));
    }
    Err(SolverError::InvalidSpec(
        "the dns01 solver names no provider".into(),
    ))
}

/// The providers a `dns01` block sets (for validation: exactly one).
pub fn configured(dns01: &crate::api::issuer::Dns01Solver) -> Vec<&'static str> {
    [
        ("rfc2136", dns01.rfc2136.is_some()),
        ("cloudflare", dns01.cloudflare.is_some()),
        ("route53", dns01.route53.is_some()),
        ("digitalocean", dns01.digitalocean.is_some()),
        ("cloudDNS", dns01.cloud_dns.is_some()),
        ("azureDNS", dns01.azure_dns.is_some()),
        ("acmeDNS", dns01.acme_dns.is_some()),
        ("webhook", dns01.webhook.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_identity_is_lent_as_cert_manager_lends_it() {
        let dns01: Dns01Solver = serde_json::from_value(serde_json::json!({
            "route53": { "region": "us-east-1" }
        }))
        .unwrap();
        let keyed: Dns01Solver = serde_json::from_value(serde_json::json!({
            "route53": { "accessKeyID": "AKIA", "secretAccessKeySecretRef": { "name": "a", "key": "k" } }
        }))
        .unwrap();
        let mut issuer = IssuerHandle {
            kind: IssuerKind::Namespaced,
            name: "dns".into(),
            secret_namespace: "shop".into(),
            spec: Default::default(),
            status: None,
            generation: None,
            annotations: Default::default(),
        };
        let default = AmbientCredentials::default();
        let why = ambient_refused(&issuer, &dns01, default).expect("refused for a CaaSIssuer");
        assert!(
            why.contains("--issuer-ambient-credentials") && why.contains("route53"),
            "{why}"
        );
        assert_eq!(
            ambient_refused(&issuer, &keyed, default),
            None,
            "keys are always fine"
        );
        let on = AmbientCredentials {
            issuers: true,
            cluster_issuers: true,
        };
        assert_eq!(ambient_refused(&issuer, &dns01, on), None);
        issuer.kind = IssuerKind::Cluster;
        assert_eq!(
            ambient_refused(&issuer, &dns01, default),
            None,
            "cluster issuers: on"
        );
    }
}
