//! DNS-01: a TXT record `_acme-challenge.<name>` holding the key authorization's digest,
//! published through the issuer's DNS provider ([`provider`]: RFC 2136, Cloudflare,
//! Route 53, Google Cloud DNS, Azure DNS, DigitalOcean, acme-dns or an httpreq webhook;
//! the HTTP ones share the REST plumbing of `api.rs`), checked with [`propagation`]
//! before the CA looks. Their failures are [`DnsError`]s.
//!
//! TXT records live outside the cluster, so garbage collection cannot remove them: while
//! any is published the Certificate carries the [`DNS_CLEANUP_FINALIZER`], and deleting
//! it mid-order removes the records first ([`finalize_deletion`]).

use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

mod acme_dns;
mod api;
mod azure_dns;
mod cloud_dns;
mod cloudflare;
mod digitalocean;
mod error;
pub mod factory;
pub mod persist;
pub mod propagation;
pub mod provider;
mod route53;
mod webhook;

pub use self::error::DnsError;
use self::provider::DnsProvider;
use super::Deps;
use super::{Challenge, Kind, Readiness, SolveEnv, SolveFuture, Solver, SolverError};
use crate::api::certificate::ChallengeStatus;
use crate::api::issuer::CnameStrategy;
use crate::api::{Certificate, ChallengeType};
use crate::shared::IssuerHandle;

/// Guards DNS-01 TXT records: present on a Certificate only while one is published.
/// (HTTP-01 objects are owned by the Certificate: garbage collection removes them.)
pub const DNS_CLEANUP_FINALIZER: &str = "caas.dev/dns01-cleanup";

/// The TXT value for a DNS-01 key authorization: base64url(SHA-256(key authorization)).
pub fn record_value(key_authorization: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The TXT record name for an identifier (a wildcard is proven at its base name), as an
/// absolute name.
pub fn record_name(dns_name: &str) -> String {
    format!(
        "_acme-challenge.{}.",
        dns_name.strip_prefix("*.").unwrap_or(dns_name)
    )
}

/// The dns-account-01 label of an ACME account (draft-ietf-acme-dns-account-label):
/// the first 10 bytes of SHA-256 of the account URI, base32, lowercase (16 characters).
pub fn account_label(account_uri: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, account_uri.as_bytes());
    data_encoding::BASE32_NOPAD
        .encode(&digest.as_ref()[..10])
        .to_ascii_lowercase()
}

/// The dns-account-01 TXT record name: `_<account label>._acme-challenge.<name>.`.
pub fn account_record_name(account_uri: &str, dns_name: &str) -> String {
    format!("_{}.{}", account_label(account_uri), record_name(dns_name))
}

/// The TXT record names the DNS-01 and dns-account-01 challenges among `challenges`
/// publish and remove (for messages; `_<account>` stands for the account's label).
pub fn txt_records(challenges: &[ChallengeStatus]) -> Vec<String> {
    let name = |c: &ChallengeStatus| record_name(&c.dns_name).trim_end_matches('.').to_string();
    (challenges.iter())
        .filter_map(|c| match c.type_ {
            ChallengeType::Dns01 => Some(name(c)),
            ChallengeType::DnsAccount01 => Some(format!("_<account>.{}", name(c))),
            _ => None,
        })
        .collect()
}

/// The issuer's ACME account URI (dns-account-01 and dns-persist-01 records name it).
pub fn account_uri<'a>(env: &SolveEnv<'a>) -> Result<&'a str, SolverError> {
    (env.issuer.status.as_ref())
        .and_then(|s| s.account_uri.as_deref())
        .ok_or_else(|| {
            SolverError::InvalidSpec(format!(
                "{} has no ACME account URI yet (its status.accountURI)",
                env.issuer.display()
            ))
        })
}

/// The provider, the record's name (a CNAME followed with `cnameStrategy: Follow`) and
/// its value for one challenge: at `_acme-challenge.<name>`, or with `scoped` (dns-account-01)
/// at `_<account label>._acme-challenge.<name>`.
async fn record(
    env: &SolveEnv<'_>,
    challenge: Challenge<'_>,
    scoped: bool,
) -> Result<(Box<dyn DnsProvider>, String, String), SolverError> {
    let provider = factory::provider(
        env.deps.client,
        env.issuer,
        env.config,
        env.deps.settings.ambient_credentials,
    )
    .await?;
    let mut fqdn = match scoped {
        false => record_name(challenge.dns_name),
        true => account_record_name(account_uri(env)?, challenge.dns_name),
    };
    let strategy = env.config.dns_provider().and_then(|d| d.cname_strategy);
    if strategy == Some(CnameStrategy::Follow) {
        let target = propagation::follow_cname(&env.deps.settings.dns01_resolvers, &fqdn).await?;
        fqdn = format!("{}.", target.trim_end_matches('.'));
    }
    Ok((provider, fqdn, record_value(challenge.key_authorization)))
}

/// Publishes a challenge's TXT record without the Certificate's cleanup guard: for a
/// probe that removes its own record at once (`kubectl caas check issuer --dns`).
pub async fn publish_unguarded(
    env: &SolveEnv<'_>,
    challenge: Challenge<'_>,
) -> Result<(), SolverError> {
    let (provider, fqdn, value) = record(env, challenge, false).await?;
    Ok(provider.add_txt(&fqdn, &value).await?)
}

/// DNS-01 behind the [`Solver`] trait.
pub struct Dns01;

/// dns-account-01 behind the [`Solver`] trait: DNS-01 at the account's own label.
pub struct DnsAccount01;

/// Puts a challenge's TXT record in place (`scoped`: dns-account-01's name).
async fn present_txt(
    env: &SolveEnv<'_>,
    challenge: Challenge<'_>,
    scoped: bool,
) -> Result<(), SolverError> {
    let (provider, fqdn, value) = record(env, challenge, scoped).await?;
    // Status already names the record; from now on a deletion waits for it.
    crate::shared::finalizer::ensure(env.deps.client, env.cert, DNS_CLEANUP_FINALIZER).await?;
    let pending = provider.publish(&fqdn, &value).await?;
    env.deps.memory.set_dns_change(&fqdn, &value, pending);
    Ok(())
}

/// Removes a challenge's TXT record (`scoped`: dns-account-01's name).
async fn cleanup_txt(
    env: &SolveEnv<'_>,
    challenge: Challenge<'_>,
    scoped: bool,
) -> Result<(), SolverError> {
    let (provider, fqdn, value) = record(env, challenge, scoped).await?;
    Ok(provider.remove_txt(&fqdn, &value).await?)
}

/// Whether a challenge's TXT record is served where the CA looks (`scoped`:
/// dns-account-01's name).
async fn ready_txt(
    env: &SolveEnv<'_>,
    challenge: Challenge<'_>,
    scoped: bool,
) -> Result<Readiness, SolverError> {
    let (provider, fqdn, value) = record(env, challenge, scoped).await?;
    served(env, &*provider, &fqdn, &value).await
}

/// Whether `fqdn` TXT `value` is served: the provider's pending change applied, then the
/// zone's servers (or the provider itself) answering with it.
pub(crate) async fn served(
    env: &SolveEnv<'_>,
    provider: &dyn DnsProvider,
    fqdn: &str,
    value: &str,
) -> Result<Readiness, SolverError> {
    if let Some(change) = env.deps.memory.dns_change(fqdn, value) {
        if !provider.applied(&change).await? {
            let name = fqdn.trim_end_matches('.');
            let why = format!("waiting for the DNS provider to apply change {change} ({name} TXT)");
            return Ok(Readiness::Waiting(why));
        }
        env.deps.memory.set_dns_change(fqdn, value, None);
    }
    let missing = match provider.serves(fqdn, value).await? {
        Some(true) => None,
        Some(false) => Some(format!(
            "waiting for {} TXT to be served by the zone's server",
            fqdn.trim_end_matches('.')
        )),
        None => {
            let at = provider.served_at(fqdn);
            propagation::missing(&env.deps.settings.dns01_resolvers, &at, value).await?
        }
    };
    Ok(missing.map_or(Readiness::Ready, Readiness::Waiting))
}

/// DNS-01 and dns-account-01 behind the [`Solver`] trait: they differ only in the
/// record's name (`scoped`: the account's label), so one implementation serves both.
macro_rules! txt_solver {
    ($solver:ident, $type:expr, $field:literal, $scoped:literal, $configured:expr) => {
        impl Solver for $solver {
            fn kind(&self) -> Kind {
                Kind($type, $field, $configured)
            }

            fn present<'a>(
                &'a self,
                env: &'a SolveEnv<'a>,
                challenge: Challenge<'a>,
            ) -> SolveFuture<'a> {
                Box::pin(present_txt(env, challenge, $scoped))
            }

            fn ready<'a>(
                &'a self,
                env: &'a SolveEnv<'a>,
                challenge: Challenge<'a>,
            ) -> SolveFuture<'a, Readiness> {
                Box::pin(ready_txt(env, challenge, $scoped))
            }

            fn cleanup<'a>(
                &'a self,
                env: &'a SolveEnv<'a>,
                challenge: Challenge<'a>,
            ) -> SolveFuture<'a> {
                Box::pin(cleanup_txt(env, challenge, $scoped))
            }

            fn cleaned_up<'a>(
                &'a self,
                deps: Deps<'a>,
                cert: &'a Certificate,
                challenges: &'a [Challenge<'a>],
                all_removed: bool,
            ) -> BoxFuture<'a, ()> {
                Box::pin(after_cleanup(deps, cert, challenges, all_removed, $scoped))
            }
        }
    };
}

txt_solver!(Dns01, ChallengeType::Dns01, "dns01", false, |c| c
    .dns01
    .is_some());
txt_solver!(
    DnsAccount01,
    ChallengeType::DnsAccount01,
    "dnsAccount01",
    true,
    |c| c.dns_account01.is_some()
);

/// Once the order's records were removed (or could not be): outside a deletion, say which
/// records may be left (status is about to forget the order) and drop the guard. During
/// a deletion the guard is [`finalize_deletion`]'s to drop, once every kind of record
/// (DNS-01 and dns-account-01 alike) is gone.
async fn after_cleanup(
    deps: Deps<'_>,
    cert: &Certificate,
    challenges: &[Challenge<'_>],
    all_removed: bool,
    scoped: bool,
) {
    if challenges.is_empty() || cert.metadata.deletion_timestamp.is_some() {
        return;
    }
    if !all_removed {
        let names: Vec<String> = (challenges.iter())
            .map(|c| record_name(c.dns_name).trim_end_matches('.').to_string())
            .collect();
        let which = match scoped {
            true => "dns-account-01 TXT records (the account's label) under",
            false => "TXT records",
        };
        deps.events
            .event(
                cert,
                true,
                "CleanupFailed",
                "Issue",
                format!(
                    "could not remove the {which} {} (see the operator log); remove them by hand",
                    names.join(", ")
                ),
            )
            .await;
    }
    if let Err(e) = crate::shared::finalizer::remove(deps.client, cert, DNS_CLEANUP_FINALIZER).await
    {
        tracing::warn!(certificate = %cert.name_any(), error = %e, "cannot remove the DNS-01 cleanup finalizer");
    }
}

/// A Certificate being deleted: remove the TXT records of its order, then let it go.
/// A DNS server that refuses is retried for 2 minutes; an issuer that is gone (deleted
/// with its namespace, say) cannot be used to remove anything. Either way the deletion
/// then goes ahead and an event names the records left behind. A failure to drop the
/// finalizer is an error: the controller retries it. `cleanup` removes the order's
/// challenges' answers with the issuer, returning whether all went.
pub async fn finalize_deletion<F>(
    deps: Deps<'_>,
    cert: &Certificate,
    issuer: Option<&IssuerHandle>,
    cleanup: F,
) -> Result<Action, kube::Error>
where
    F: AsyncFnOnce(&IssuerHandle, &[ChallengeStatus]) -> bool,
{
    if !cert.finalizers().iter().any(|f| f == DNS_CLEANUP_FINALIZER) {
        return Ok(Action::await_change());
    }
    let challenges = cert
        .status
        .as_ref()
        .and_then(|s| s.order.as_ref())
        .map(|o| o.challenges.clone())
        .unwrap_or_default();
    let records = txt_records(&challenges);
    let removed = match issuer {
        _ if records.is_empty() => true,
        Some(issuer) => cleanup(issuer, &challenges).await,
        None => false,
    };
    if removed {
        crate::shared::finalizer::remove(deps.client, cert, DNS_CLEANUP_FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let deleting_for = cert
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .unwrap_or_default();
    if issuer.is_some() && deleting_for < jiff::SignedDuration::from_mins(2) {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let why = if issuer.is_some() {
        "the DNS server refused for 2 minutes"
    } else {
        "the issuer is gone"
    };
    deps.events
        .event(
            cert,
            true,
            "CleanupFailed",
            "Delete",
            format!(
                "could not remove the TXT records {} ({why}); deleting anyway: remove them by hand",
                records.join(", "),
            ),
        )
        .await;
    crate::shared::finalizer::remove(deps.client, cert, DNS_CLEANUP_FINALIZER).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_value_is_unpadded_base64url_sha256() {
        let v = record_value("token.thumbprint");
        assert_eq!(v.len(), 43);
        assert!(!v.contains('=') && !v.contains('+') && !v.contains('/'));
        // RFC 8555 section 8.4: the digest of the key authorization, nothing else.
        let digest = ring::digest::digest(&ring::digest::SHA256, b"token.thumbprint");
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&v)
                .unwrap(),
            digest.as_ref()
        );
    }

    #[test]
    fn wildcards_are_proven_at_their_base_name() {
        assert_eq!(record_name("*.example.com"), "_acme-challenge.example.com.");
        assert_eq!(record_name("example.com"), "_acme-challenge.example.com.");
        let ch = |t, n: &str| ChallengeStatus {
            type_: t,
            dns_name: n.into(),
            ..Default::default()
        };
        assert_eq!(
            txt_records(&[
                ch(ChallengeType::Dns01, "*.a.example"),
                ch(ChallengeType::Http01, "b.example"),
            ]),
            vec!["_acme-challenge.a.example"]
        );
    }
}
