//! DNS providers behind one trait: each adds and removes one TXT value at a name
//! ([`Change`]), leaving other values there (an apex and its wildcard share
//! `_acme-challenge.<name>`), with credentials read from the issuer's [`Secrets`].

use futures::future::BoxFuture;

use super::DnsError;
use super::{acme_dns, azure_dns, cloud_dns, cloudflare, digitalocean, route53, webhook};
use crate::api::issuer::{SecretKeySelector, Solver as SolverConfig};
use crate::shared::{IssuerHandle, read_secret_key};
use crate::solvers::SolverError;
use crate::solvers::rfc2136::{self, Rfc2136Client};

/// The future of a provider's call.
pub type DnsFuture<'a, T = ()> = BoxFuture<'a, Result<T, DnsError>>;

/// Which way one TXT value changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

impl Change {
    /// A record set's `values` after the change of `value`; `None` when there is nothing
    /// to do (already there, or already gone).
    pub fn apply(self, values: &[String], value: &str) -> Option<Vec<String>> {
        let present = values.iter().any(|v| v == value);
        match self {
            Change::Add if !present => Some([values, &[value.to_string()]].concat()),
            Change::Remove if present => {
                Some(values.iter().filter(|v| *v != value).cloned().collect())
            }
            _ => None,
        }
    }
}

pub trait DnsProvider: Send + Sync {
    /// Publishes `value` at `fqdn` (absolute) next to other values, or removes it leaving
    /// the others; either is idempotent.
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a>;

    /// Publishes `value` at `fqdn` (absolute), next to other values (idempotent).
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        self.change(Change::Add, fqdn, value)
    }

    /// Removes `value` at `fqdn`, leaving other values (idempotent).
    fn remove_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        self.change(Change::Remove, fqdn, value)
    }

    /// Publishes `value` as [`add_txt`](Self::add_txt) does; returns the provider's id
    /// of the change while it is still being applied to the provider's servers (Route 53
    /// `PENDING`, Cloud DNS `pending`), for [`applied`](Self::applied).
    fn publish<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a, Option<String>> {
        Box::pin(async move { self.add_txt(fqdn, value).await.map(|()| None) })
    }

    /// Whether the change `id` (from [`publish`](Self::publish)) has reached all the
    /// provider's servers.
    fn applied<'a>(&'a self, _id: &'a str) -> DnsFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    /// The name where the value ends up, for the propagation check (acme-dns: the
    /// account's `fulldomain`).
    fn served_at(&self, fqdn: &str) -> String {
        fqdn.to_string()
    }

    /// Whether the zone serves `value` at `fqdn`, when the provider can ask its own
    /// authoritative server (RFC 2136); `None`: check through DNS resolution.
    fn serves<'a>(&'a self, _fqdn: &'a str, _value: &'a str) -> DnsFuture<'a, Option<bool>> {
        Box::pin(async { Ok(None) })
    }
}

impl DnsProvider for Rfc2136Client {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, change))
    }

    fn serves<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a, Option<bool>> {
        Box::pin(async move { self.has_txt(fqdn, value).await.map(Some) })
    }
}

/// Where a provider reads its credentials: the Secrets in the issuer's Secret namespace.
#[derive(Clone, Copy)]
pub struct Secrets<'a> {
    pub client: &'a kube::Client,
    pub issuer: &'a IssuerHandle,
}

impl Secrets<'_> {
    pub fn namespace(&self) -> &str {
        &self.issuer.secret_namespace
    }

    /// The value of `key` in Secret `name` (trimmed); `None` when either is missing.
    pub async fn get(&self, name: &str, key: &str) -> Result<Option<String>, SolverError> {
        let raw = read_secret_key(self.client, self.namespace(), name, key).await?;
        Ok(raw.map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// The value of the Secret key a solver names; `SecretNotFound` names it, and `what`
    /// it should hold, when it is missing.
    pub async fn value(&self, r: &SecretKeySelector, what: &str) -> Result<String, SolverError> {
        self.get(&r.name, &r.key).await?.ok_or_else(|| {
            SolverError::SecretNotFound(format!(
                "the {what} Secret {}/{} (key {:?}) does not exist",
                self.namespace(),
                r.name,
                r.key
            ))
        })
    }
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
    fn a_change_edits_a_set_or_has_nothing_to_do() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let values = set(&["a", "b"]);
        assert_eq!(Change::Add.apply(&values, "c"), Some(set(&["a", "b", "c"])));
        assert_eq!(Change::Add.apply(&values, "a"), None);
        assert_eq!(Change::Remove.apply(&values, "a"), Some(set(&["b"])));
        assert_eq!(Change::Remove.apply(&values, "c"), None);
    }
}
