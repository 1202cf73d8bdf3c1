//! dns-persist-01 (draft-ietf-acme-dns-persist, CA/B Forum ballot SC-088): the domain
//! owner publishes one TXT record `_validation-persist.<domain>` naming the CA (its issuer
//! domain name) and the ACME account once, and every later order validates against it
//! with no DNS write at all.
//!
//! The challenge's value in status (`key`) is the record's value, made from the
//! challenge's `issuer-domain-names` and the account URI when the order is read. With a
//! DNS provider the record is written once, when it is not served yet, and never
//! removed; without one the user publishes it and the order waits until it is served.

use super::propagation;
use super::{Kind, Readiness, SolveEnv, SolveFuture, Solver, SolverError};
use crate::api::ChallengeType;
use crate::api::issuer::{DnsPersist01Solver, SolverConfig};
use crate::solvers::Challenge;

/// The TXT record name for an identifier (a wildcard's at its base name), absolute.
pub fn record_name(dns_name: &str) -> String {
    let base = dns_name.strip_prefix("*.").unwrap_or(dns_name);
    format!("_validation-persist.{base}.")
}

/// The record's value: the CA's issuer domain name, the account URI, `policy=wildcard`
/// for a wildcard name, and `persistUntil` (Unix seconds) when the record should stop
/// authorizing.
pub fn record_value(
    issuer_domain_name: &str,
    account_uri: &str,
    wildcard: bool,
    persist_until: Option<jiff::Timestamp>,
) -> String {
    let mut value = format!("{issuer_domain_name}; accounturi={account_uri}");
    if wildcard {
        value.push_str("; policy=wildcard");
    }
    if let Some(until) = persist_until {
        value.push_str(&format!("; persistUntil={}", until.as_second()));
    }
    value
}

/// A record value split as the draft's ABNF has it: the issuer domain name, then
/// `name=value` parameters (names case-insensitive, blanks around `;` and `=` ignored);
/// `None` when it does not parse (the CA ignores such a record too).
fn parse(value: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut parts = value.split(';').map(str::trim);
    let domain = parts.next().filter(|d| !d.is_empty() && !d.contains('='))?;
    let mut params = Vec::new();
    for part in parts.filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=')?;
        params.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    Some((domain, params))
}

/// Whether a served record value gives at least what `wanted` (a [`record_value`]) asks:
/// the same CA and account, `policy=wildcard` when wanted (a wildcard record covers the
/// bare name too), and it lasts as long (no `persistUntil`, or one no sooner, and not
/// past at `now`; one with a `persistUntil` when none is wanted does not do: it would
/// stop working with no warning). Spacing, case and parameter order do not matter;
/// unknown parameters are ignored.
pub fn authorizes(served: &str, wanted: &str, now: jiff::Timestamp) -> bool {
    let (Some((domain, have)), Some((want_domain, want))) = (parse(served), parse(wanted)) else {
        return false;
    };
    let get = |params: &[(String, String)], name: &str| {
        (params.iter().find(|(n, _)| n == name)).map(|(_, v)| v.clone())
    };
    let until = |params: &[(String, String)]| get(params, "persistuntil").map(|v| v.parse::<i64>());
    let wildcard = |params: &[(String, String)]| {
        get(params, "policy").is_some_and(|p| p.eq_ignore_ascii_case("wildcard"))
    };
    // The CA refuses a record whose persistUntil has passed, whatever was asked.
    let lasts = match (until(&have), until(&want)) {
        (None, _) => true,
        (Some(Ok(h)), Some(Ok(w))) => h >= w && h >= now.as_second(),
        _ => false,
    };
    domain == want_domain
        && get(&have, "accounturi").is_some()
        && get(&have, "accounturi") == get(&want, "accounturi")
        && (wildcard(&have) || !wildcard(&want))
        && lasts
}

/// The issuer domain name to put in the record: the solver's `issuerDomainName`, else
/// the first the CA names in the challenge (`issuer-domain-names`).
pub fn issuer_domain_name(
    cfg: &DnsPersist01Solver,
    challenge: &serde_json::Value,
) -> Result<String, String> {
    let offered: Vec<&str> = (challenge["issuer-domain-names"]
        .as_array()
        .into_iter()
        .flatten())
    .filter_map(serde_json::Value::as_str)
    .collect();
    match (&cfg.issuer_domain_name, offered.first()) {
        (Some(name), _) if offered.is_empty() || offered.contains(&name.as_str()) => Ok(name.clone()),
        (Some(name), _) => Err(format!(
            "dnsPersist01.issuerDomainName {name:?} is not one the CA names for this challenge: {}",
            offered.join(", ")
        )),
        (None, Some(first)) => Ok(first.to_string()),
        (None, None) => Err(
            "the CA's dns-persist-01 challenge names no issuer-domain-names: set dnsPersist01.issuerDomainName".into(),
        ),
    }
}

/// What a user without a provider is asked to publish.
pub fn publish_request(dns_name: &str, value: &str) -> String {
    let name = record_name(dns_name);
    format!(
        "{} (it stays: every later order validates against it, with no DNS write): {} TXT \"{value}\"",
        crate::decide::PERSIST_PUBLISH,
        name.trim_end_matches('.')
    )
}

fn config(config: &SolverConfig) -> Option<&DnsPersist01Solver> {
    config.dns_persist01.as_ref()
}

/// Whether the solver names a DNS provider to write the record through.
fn has_provider(env: &SolveEnv<'_>) -> bool {
    config(env.config).is_some_and(|c| !super::factory::configured(&c.provider).is_empty())
}

/// dns-persist-01 behind the [`Solver`] trait.
pub struct DnsPersist01;

impl Solver for DnsPersist01 {
    fn kind(&self) -> Kind {
        let configured = |c: &SolverConfig| c.dns_persist01.is_some();
        Kind(ChallengeType::DnsPersist01, "dnsPersist01", configured)
    }

    /// With a provider, writes the record unless it is served already (so orders after
    /// the first write nothing).
    fn present<'a>(&'a self, env: &'a SolveEnv<'a>, challenge: Challenge<'a>) -> SolveFuture<'a> {
        Box::pin(async move {
            if !has_provider(env) {
                return Ok(());
            }
            let (fqdn, value) = (record_name(challenge.dns_name), challenge.key_authorization);
            if served(env, &fqdn, value).await?.is_none() {
                return Ok(());
            }
            let provider = provider(env).await?;
            // Already at the provider's primary (a hidden primary, split-horizon DNS).
            if provider.serves(&fqdn, value).await? == Some(true) {
                return Ok(());
            }
            let pending = provider.publish(&fqdn, value).await?;
            env.deps.memory.set_dns_change(&fqdn, value, pending);
            Ok(())
        })
    }

    fn ready<'a>(
        &'a self,
        env: &'a SolveEnv<'a>,
        challenge: Challenge<'a>,
    ) -> SolveFuture<'a, Readiness> {
        Box::pin(async move {
            let (fqdn, value) = (record_name(challenge.dns_name), challenge.key_authorization);
            if served(env, &fqdn, value).await?.is_none() {
                return Ok(Readiness::Ready);
            }
            // With a provider the record is ours to write (present did): wait for the
            // provider and its servers, as for DNS-01 (WaitingForDNS, nothing to publish).
            if has_provider(env) {
                let provider = provider(env).await?;
                return super::served(env, &*provider, &fqdn, value).await;
            }
            Ok(Readiness::Waiting(publish_request(
                challenge.dns_name,
                value,
            )))
        })
    }

    // cleanup: none. The record is meant to stay.
}

/// `None` when the zone's servers serve a record that [`authorizes`] `value`.
async fn served(
    env: &SolveEnv<'_>,
    fqdn: &str,
    value: &str,
) -> Result<Option<String>, SolverError> {
    let resolvers = &env.deps.settings.dns01_resolvers;
    let now = jiff::Timestamp::now();
    let matches = |served: &str| authorizes(served, value, now);
    Ok(propagation::missing_by(resolvers, fqdn, &matches).await?)
}

async fn provider(
    env: &SolveEnv<'_>,
) -> Result<Box<dyn super::provider::DnsProvider>, SolverError> {
    super::factory::provider(
        env.deps.client,
        env.issuer,
        env.config,
        env.deps.settings.ambient_credentials,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_persistent_record_names_the_ca_and_the_account() {
        assert_eq!(
            record_name("*.example.com"),
            "_validation-persist.example.com."
        );
        let uri = "https://ca.example/acct/1";
        assert_eq!(
            record_value("ca.example", uri, false, None),
            "ca.example; accounturi=https://ca.example/acct/1"
        );
        let until = jiff::Timestamp::from_second(1_900_000_000).unwrap();
        assert_eq!(
            record_value("ca.example", uri, true, Some(until)),
            "ca.example; accounturi=https://ca.example/acct/1; policy=wildcard; persistUntil=1900000000"
        );
        let challenge = serde_json::json!({ "issuer-domain-names": ["letsencrypt.org"] });
        let cfg = DnsPersist01Solver::default();
        assert_eq!(
            issuer_domain_name(&cfg, &challenge).unwrap(),
            "letsencrypt.org"
        );
        let own = DnsPersist01Solver {
            issuer_domain_name: Some("ca.example".into()),
            ..Default::default()
        };
        assert!(
            issuer_domain_name(&own, &challenge).is_err(),
            "not the CA's"
        );
        let both = serde_json::json!({ "issuer-domain-names": ["letsencrypt.org", "ca.example"] });
        assert_eq!(issuer_domain_name(&own, &both).unwrap(), "ca.example");
        assert!(issuer_domain_name(&cfg, &serde_json::json!({})).is_err());
    }

    #[test]
    fn a_served_record_counts_by_meaning_not_by_spelling() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let at = |served: &str, wanted: &str| authorizes(served, wanted, now);
        let uri = "https://ca.example/acct/1";
        let until = jiff::Timestamp::from_second(1_900_000_000).ok();
        let plain = record_value("ca.example", uri, false, None);
        let wild = record_value("ca.example", uri, true, None);
        let until_wanted = record_value("ca.example", uri, false, until);
        assert!(at(&plain, &plain));
        let spelled = "CA.example. ;accounturi = https://ca.example/acct/1;  Policy=Wildcard ; x=y";
        assert!(at(spelled, &plain), "case, blanks, order, unknown");
        assert!(at(spelled, &wild));
        assert!(at(&wild, &plain), "a wildcard record covers the bare name");
        assert!(!at(&plain, &wild), "but not the other way");
        assert!(!at(
            "ca.example; accounturi=https://ca.example/acct/2",
            &plain
        ));
        assert!(!at(
            "other.example; accounturi=https://ca.example/acct/1",
            &plain
        ));
        assert!(!at("ca.example; policy=wildcard", &plain), "no account");
        assert!(!at("ca.example; accounturi", &plain), "does not parse");
        // persistUntil: none lasts for ever; a sooner one does not do.
        assert!(at(&plain, &until_wanted));
        let later = format!("{plain}; persistUntil=1900000001");
        let sooner = format!("{plain}; persistUntil=1899999999");
        assert!(at(&later, &until_wanted));
        assert!(!at(&sooner, &until_wanted));
        assert!(!at(&later, &plain), "wanted for ever");
        assert!(!at(&format!("{plain}; persistUntil=soon"), &until_wanted));
        // Past at `now`: the CA would refuse it, even when it is the one asked for.
        let past = format!("{plain}; persistUntil=1799999999");
        assert!(!at(&past, &past));
    }
}
