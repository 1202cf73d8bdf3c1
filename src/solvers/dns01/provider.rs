//! DNS providers behind one trait: each adds and removes one TXT value at a name,
//! leaving other values there (an apex and its wildcard share `_acme-challenge.<name>`).

use futures::future::BoxFuture;

use super::DnsError;
use super::{acme_dns, azure_dns, cloud_dns, cloudflare, digitalocean, route53, webhook};
use crate::api::issuer::{SecretKeySelector, Solver as SolverConfig};
use crate::shared::{IssuerHandle, read_secret_key};
use crate::solvers::SolverError;
use crate::solvers::rfc2136::{self, Rfc2136Client};

pub trait DnsProvider: Send + Sync {
    /// Publishes `value` at `fqdn` (absolute), next to other values (idempotent).
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>>;

    /// Removes `value` at `fqdn`, leaving other values (idempotent).
    fn remove_txt<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>>;

    /// The name where the value ends up, for the propagation check (acme-dns: the
    /// account's `fulldomain`).
    fn served_at(&self, fqdn: &str) -> String {
        fqdn.to_string()
    }

    /// Whether the zone serves `value` at `fqdn`, when the provider can ask its own
    /// authoritative server (RFC 2136); `None`: check through DNS resolution.
    fn serves<'a>(
        &'a self,
        _fqdn: &'a str,
        _value: &'a str,
    ) -> BoxFuture<'a, Result<Option<bool>, DnsError>> {
        Box::pin(async { Ok(None) })
    }
}

impl DnsProvider for Rfc2136Client {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(Rfc2136Client::add_txt(self, fqdn, value))
    }

    fn remove_txt<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(Rfc2136Client::remove_txt(self, fqdn, value))
    }

    fn serves<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Option<bool>, DnsError>> {
        Box::pin(async move { self.has_txt(fqdn, value).await.map(Some) })
    }
}

/// The value of a Secret key an issuer's solver names (in the issuer's Secret namespace).
pub async fn secret_value(
    client: &kube::Client,
    issuer: &IssuerHandle,
    r: &SecretKeySelector,
    what: &str,
) -> Result<String, SolverError> {
    let raw = read_secret_key(client, &issuer.secret_namespace, &r.name, &r.key)
        .await?
        .ok_or_else(|| {
            SolverError::SecretNotFound(format!(
                "the {what} Secret {}/{} (key {:?}) does not exist",
                issuer.secret_namespace, r.name, r.key
            ))
        })?;
    Ok(String::from_utf8_lossy(&raw).trim().to_string())
}

/// The provider a `dns01` solver entry names, with its credentials read.
pub async fn provider(
    client: &kube::Client,
    issuer: &IssuerHandle,
    config: &SolverConfig,
) -> Result<Box<dyn DnsProvider>, SolverError> {
    let dns01 = config
        .dns01
        .as_ref()
        .ok_or_else(|| SolverError::InvalidSpec("the solver has no dns01 block".into()))?;
    if let Some(cfg) = &dns01.rfc2136 {
        let r = &cfg.tsig_secret_secret_ref;
        let secret = secret_value(client, issuer, r, "TSIG").await?;
        let server = rfc2136::resolve_nameserver(&cfg.nameserver).await?;
        return Ok(Box::new(Rfc2136Client::new(
            server,
            &cfg.tsig_key_name,
            cfg.tsig_algorithm.as_deref(),
            secret.as_bytes(),
        )?));
    }
    if let Some(cfg) = &dns01.cloudflare {
        return Ok(Box::new(
            cloudflare::Cloudflare::new(client, issuer, cfg).await?,
        ));
    }
    if let Some(cfg) = &dns01.route53 {
        return Ok(Box::new(route53::Route53::new(client, issuer, cfg).await?));
    }
    if let Some(cfg) = &dns01.cloud_dns {
        return Ok(Box::new(
            cloud_dns::CloudDns::new(client, issuer, cfg).await?,
        ));
    }
    if let Some(cfg) = &dns01.azure_dns {
        return Ok(Box::new(
            azure_dns::AzureDns::new(client, issuer, cfg).await?,
        ));
    }
    if let Some(cfg) = &dns01.digitalocean {
        return Ok(Box::new(
            digitalocean::DigitalOcean::new(client, issuer, cfg).await?,
        ));
    }
    if let Some(cfg) = &dns01.acme_dns {
        return Ok(Box::new(acme_dns::AcmeDns::new(client, issuer, cfg).await?));
    }
    if let Some(cfg) = &dns01.webhook {
        return Ok(Box::new(webhook::Webhook::new(client, issuer, cfg).await?));
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
