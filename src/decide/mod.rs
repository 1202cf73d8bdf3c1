//! The pure decisions of the Certificate controller: is the spec valid, and is the
//! Secret's certificate still what the spec asks for, or must a new one be issued?
//!
//! No I/O here: the controller gathers the spec, status, Secret contents and the time,
//! and carries out what these functions return.

use std::collections::BTreeSet;
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};

use crate::api::certificate::{CertificateStatus, OrderStatus, RotationPolicy};
use crate::api::{ChallengeState, OrderState, Reason, Time};
use crate::pki::{CertInfo, KeySettings, key_matches};

pub mod deploy;
pub mod fallback;
pub mod order;
pub mod persist;
pub mod renewal;
mod validate;
pub use validate::{profile_problem, validate, validate_dns_name};

/// What a valid Certificate spec asks for, normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Lowercased, deduplicated, in the spec's order.
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub common_name: Option<String>,
    pub key: KeySettings,
    pub rotation: RotationPolicy,
    pub duration: Option<SignedDuration>,
    pub renew_before: Option<SignedDuration>,
    pub renew_before_percentage: Option<u8>,
    /// The Certificate's own ACME profile (instead of the issuer's).
    pub profile: Option<String>,
    /// Fingerprint of what the certificate must contain (names, key settings, issuer):
    /// an order made for another fingerprint is abandoned.
    pub hash: String,
    /// The `caas.dev/renew` annotation's value: a renewal is due when status has not
    /// acted on this value yet. Set by the caller.
    pub renew_request: Option<String>,
    /// The `caas.dev/compromised-key` annotation's value: a Secret whose key it names is
    /// reissued with a new key. Set by the caller.
    pub compromised_key: Option<String>,
}

/// Annotation that asks for a renewal now (`caas-operator renew` sets it to the time).
pub const RENEW_ANNOTATION: &str = "caas.dev/renew";

/// Annotation naming a key that must never be used again (`sha256:` of its public key,
/// [`crate::pki::spki_fingerprint`]): `caas-operator revoke --reason keyCompromise`
/// sets it, so the renewal gets a new key even with `rotationPolicy: Never`.
pub const COMPROMISED_KEY_ANNOTATION: &str = "caas.dev/compromised-key";

/// Whether a private key (by its fingerprint, `sha256:` and lowercase hex) may be used
/// again: not when the Certificate's compromised-key annotation names it (read in any
/// case, with or without `sha256:`).
pub fn key_usable(fingerprint: &str, compromised: Option<&str>) -> bool {
    let bare = |f: &str| f.trim().trim_start_matches("sha256:").to_ascii_lowercase();
    compromised.is_none_or(|c| bare(c) != bare(fingerprint))
}

/// What the Secret holds, as far as the decision needs.
#[derive(Clone, Debug, Default)]
pub struct SecretView {
    /// The leaf of `tls.crt`, or why it could not be read.
    pub cert: Option<Result<CertInfo, String>>,
    pub key_pem: Option<String>,
    /// The issuer named in the Secret's annotations.
    pub issuer: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// The Secret is good: its certificate, to renew at this time.
    Valid {
        renewal_time: Timestamp,
        cert: CertInfo,
    },
    /// A certificate must be issued, for this reason (a CamelCase word) and message.
    Issue { reason: Reason, message: String },
}

/// Decides whether the Secret's certificate satisfies the request.
///
/// `jitter` is a random draw in [0, 1) used only when the renewal time is computed
/// afresh (it is kept in status otherwise, so it does not move between reconciles).
pub fn decide(
    request: &Request,
    issuers: &[&str],
    status: Option<&CertificateStatus>,
    secret: Option<&SecretView>,
    now: Timestamp,
    jitter: f64,
) -> Decision {
    match check(request, issuers, status, secret, now, jitter) {
        Ok((renewal_time, cert)) => Decision::Valid {
            renewal_time,
            cert: cert.clone(),
        },
        Err(Issue(reason, message)) => Decision::Issue { reason, message },
    }
}

/// [`decide`]: the Secret's certificate and its renewal time when it satisfies the
/// request, or the reason and message of the [`Decision::Issue`] saying why it does not.
fn check<'a>(
    request: &Request,
    issuers: &[&str],
    status: Option<&CertificateStatus>,
    secret: Option<&'a SecretView>,
    now: Timestamp,
    jitter: f64,
) -> Result<(Timestamp, &'a CertInfo), Issue> {
    let (secret, cert) = readable_cert(secret)?;
    check_key(request, secret, cert)?;
    check_names(request, cert)?;
    if secret
        .issuer
        .as_deref()
        .is_some_and(|i| !issuers.contains(&i))
    {
        return Err(issue(
            Reason::IssuerChanged,
            "the certificate came from another issuer",
        ));
    }
    if now >= cert.not_after {
        return Err(issue(Reason::Expired, "the certificate has expired"));
    }
    if let Some(asked) = &request.renew_request
        && status.and_then(|s| s.manual_renewal.as_ref()) != Some(asked)
    {
        return Err(issue(
            Reason::ManualRenewal,
            &format!("renewal requested ({RENEW_ANNOTATION}: {asked})"),
        ));
    }
    let renewal_time = renewal_time(request, status, cert, jitter);
    if now >= renewal_time {
        return Err(issue(
            Reason::RenewalDue,
            &format!("renewal was due at {renewal_time}"),
        ));
    }
    Ok((renewal_time, cert))
}

/// Why a certificate must be issued: [`Decision::Issue`]'s reason and message.
struct Issue(Reason, String);

fn issue(reason: Reason, message: &str) -> Issue {
    Issue(reason, message.to_string())
}

/// The Secret and the certificate in its `tls.crt`, if there is one that can be read.
fn readable_cert(secret: Option<&SecretView>) -> Result<(&SecretView, &CertInfo), Issue> {
    let Some(secret) = secret else {
        return Err(issue(Reason::SecretMissing, "the Secret does not exist"));
    };
    match &secret.cert {
        None => Err(issue(Reason::SecretMissing, "the Secret has no tls.crt")),
        Some(Err(e)) => Err(issue(
            Reason::InvalidCertificate,
            &format!("the Secret's tls.crt cannot be read: {e}"),
        )),
        Some(Ok(cert)) => Ok((secret, cert)),
    }
}

/// Whether the Secret's `tls.key` belongs to `cert` and has the requested settings.
fn check_key(request: &Request, secret: &SecretView, cert: &CertInfo) -> Result<(), Issue> {
    match &secret.key_pem {
        None => Err(issue(Reason::KeyMissing, "the Secret has no tls.key")),
        Some(key) if !key_matches(key, cert) => Err(issue(
            Reason::KeyMismatch,
            "the Secret's tls.key does not belong to its certificate",
        )),
        Some(key) if !request.key.matches(key) => Err(issue(
            Reason::KeySettingsChanged,
            "the private key settings changed",
        )),
        Some(_)
            if !key_usable(
                &crate::pki::spki_fingerprint(&cert.public_key_spki),
                request.compromised_key.as_deref(),
            ) =>
        {
            Err(issue(
                Reason::KeySettingsChanged,
                &format!(
                    "the Secret's key is named compromised ({COMPROMISED_KEY_ANNOTATION}): a new key is due"
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Whether `cert` names exactly what the request names (DNS names in any case).
fn check_names(request: &Request, cert: &CertInfo) -> Result<(), Issue> {
    let want: BTreeSet<&str> = request.dns_names.iter().map(String::as_str).collect();
    let have: BTreeSet<String> = cert
        .dns_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let have: BTreeSet<&str> = have.iter().map(String::as_str).collect();
    let want_ips: BTreeSet<&IpAddr> = request.ip_addresses.iter().collect();
    let have_ips: BTreeSet<&IpAddr> = cert.ip_addresses.iter().collect();
    if want != have || want_ips != have_ips {
        return Err(issue(
            Reason::NamesChanged,
            "the certificate's names differ from the spec",
        ));
    }
    Ok(())
}

/// When to renew `cert`: the time kept in status while it belongs to this certificate,
/// else computed afresh with `jitter`.
fn renewal_time(
    request: &Request,
    status: Option<&CertificateStatus>,
    cert: &CertInfo,
    jitter: f64,
) -> Timestamp {
    let known = status
        .filter(|s| s.not_after == Some(Time(cert.not_after)))
        .and_then(|s| s.renewal_time)
        .map(Time::timestamp);
    known.unwrap_or_else(|| {
        let lifetime = cert.not_after.duration_since(cert.not_before);
        let before = renewal::renew_before(
            lifetime,
            request.renew_before,
            request.renew_before_percentage,
        );
        renewal::renewal_time(cert.not_before, cert.not_after, before, jitter)
    })
}

/// Delay before the next attempt after `attempts` failed issuances in a row:
/// 10 s doubling, capped at 4 hours.
/// How long until `not_after` when that is less than `within` (and not past): the
/// certificate is about to expire. Callers mark it `Expiring` only while renewal fails.
pub fn expires_within(
    not_after: Option<Time>,
    now: Timestamp,
    within: std::time::Duration,
) -> Option<SignedDuration> {
    let left = not_after?.0.duration_since(now);
    let within = SignedDuration::try_from(within).ok()?;
    (left.is_positive() && left < within).then_some(left)
}

pub fn backoff(attempts: i32) -> SignedDuration {
    let exp = attempts.clamp(1, 20) - 1;
    let secs = 10i64.saturating_mul(1i64 << exp).min(4 * 3600);
    SignedDuration::from_secs(secs)
}

/// Whether an issuance may be attempted now, after `attempts` failures in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryGate {
    /// Go ahead.
    Go,
    /// The spec changed since the failures: forget them and go ahead.
    Reset,
    /// Back off: look again after this long.
    Wait(std::time::Duration),
}

/// The backoff gate: after a failure, wait [`backoff`]`(attempts)` from the last failure
/// (whether or not an order is in progress); a new spec resets it.
pub fn retry_gate(
    attempts: i32,
    last_failure: Option<Timestamp>,
    same_spec: bool,
    now: Timestamp,
) -> RetryGate {
    if attempts <= 0 {
        return RetryGate::Go;
    }
    if !same_spec {
        return RetryGate::Reset;
    }
    match last_failure {
        Some(last) if now < last + backoff(attempts) => RetryGate::Wait(
            (last + backoff(attempts))
                .duration_since(now)
                .unsigned_abs(),
        ),
        _ => RetryGate::Go,
    }
}

/// How long to wait before asking the CA again about an order whose state (and its
/// challenges' states) has not changed for `unchanged`: quick polls while the order is
/// fresh (most CAs validate and issue within seconds), then a fifth of the time waited so
/// far, at most a minute. A CA that takes ten minutes is asked about 40 times, one that
/// takes a day about 1,500 times, and none is ever given up on for being slow. The CA's
/// `Retry-After` is a minimum (up to an hour): never sooner, and a CA sending
/// `Retry-After: 0` for hours does not get polled in a loop.
pub fn poll_delay(
    unchanged: std::time::Duration,
    retry_after: Option<std::time::Duration>,
    floor: std::time::Duration,
) -> std::time::Duration {
    use std::time::Duration;
    let own = (unchanged / 5).min(Duration::from_secs(60)).max(floor);
    match retry_after {
        Some(wait) => wait.min(Duration::from_secs(3600)).max(own),
        None => own,
    }
}

/// What the progress of an order is made of: its state and its challenges' states. The
/// time since this last changed is what [`poll_delay`] grows with.
pub fn progress_signature(order: &OrderStatus) -> String {
    let mut sig = order.state.as_str().to_string();
    for c in &order.challenges {
        sig.push('|');
        sig.push_str(c.state.as_str());
    }
    sig
}

/// How a dns-persist-01 challenge without a DNS provider says what to publish.
pub const PERSIST_PUBLISH: &str = "publish this TXT record once";

/// The `Issuing` condition (reason, message) while an order waits on the CA or on DNS for
/// a while (`unchanged` at least 5 s): what is being waited for, since when, and when the
/// operator looks again. `None` while things move.
pub fn waiting_condition(
    order: &OrderStatus,
    unchanged: std::time::Duration,
    next: std::time::Duration,
) -> Option<(Reason, String)> {
    if unchanged < std::time::Duration::from_secs(5) {
        return None;
    }
    let took = human(unchanged);
    let next = human(next);
    if order.state == OrderState::Processing {
        return Some((
            Reason::WaitingForCa,
            format!(
                "the CA has been processing the order (issuing the certificate) for {took}; \
                 asking again in {next}, with no time limit"
            ),
        ));
    }
    if order.state != OrderState::Pending {
        return None;
    }
    let dns = (order.challenges.iter().filter(|c| c.waiting_for_dns))
        .find_map(|c| c.error.as_deref().map(|e| (c.type_, e)));
    if let Some((type_, dns)) = dns {
        // dns-persist-01 without a provider: a record someone has to publish (once), not
        // one in transit.
        let reason = match type_ {
            crate::api::ChallengeType::DnsPersist01 if dns.starts_with(PERSIST_PUBLISH) => {
                Reason::PersistentRecordMissing
            }
            _ => Reason::WaitingForDns,
        };
        return Some((
            reason,
            format!("{dns} (for {took}; checking again in {next})"),
        ));
    }
    let validating: Vec<&str> = order
        .challenges
        .iter()
        .filter(|c| c.state == ChallengeState::Processing)
        .map(|c| c.dns_name.as_str())
        .collect();
    if validating.is_empty() {
        return None;
    }
    Some((
        Reason::WaitingForCa,
        format!(
            "the CA has been validating {} for {took}; asking again in {next}, with no time limit",
            validating.join(", ")
        ),
    ))
}

/// A duration in whole seconds, as `4m 10s`.
fn human(d: std::time::Duration) -> String {
    let secs = SignedDuration::from_secs(d.as_secs().min(i64::MAX as u64) as i64);
    format!("{secs:#}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn expiring_is_close_to_not_after_but_not_past() {
        use super::expires_within;
        use jiff::{SignedDuration, Timestamp};
        let now: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        let at = |t: &str| Some(crate::api::Time(t.parse().unwrap()));
        let week = std::time::Duration::from_secs(7 * 86400);
        assert_eq!(
            expires_within(at("2026-12-01T10:00:00Z"), now, week),
            Some(SignedDuration::from_hours(48))
        );
        assert_eq!(expires_within(at("2026-12-31T10:00:00Z"), now, week), None);
        assert_eq!(expires_within(at("2026-11-28T10:00:00Z"), now, week), None);
        assert_eq!(expires_within(None, now, week), None);
    }

    use super::*;

    #[test]
    fn a_compromised_key_is_never_usable_again() {
        let fp = "sha256:00ab";
        assert!(key_usable(fp, None));
        assert!(key_usable(fp, Some("sha256:ffff")));
        assert!(!key_usable(fp, Some(" sha256:00ab ")));
        assert!(!key_usable(fp, Some("SHA256:00AB".to_lowercase().as_str())));
        assert!(
            !key_usable(fp, Some("00AB")),
            "without the prefix, in capitals"
        );
    }
    use crate::api::certificate::CertificateSpec;
    use crate::api::certificate::{IssuerRef, KeyAlgorithm, PrivateKeySpec};
    use crate::pki::{generate_key, parse_chain};

    fn spec(names: &[&str]) -> CertificateSpec {
        CertificateSpec {
            secret_name: "tls".into(),
            issuer_ref: IssuerRef {
                name: "ca".into(),
                kind: None,
            },
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_messages() {
        assert!(
            validate(&spec(&[]), "i")
                .unwrap_err()
                .contains("names nothing")
        );
        assert!(
            validate(&spec(&["a..b"]), "i")
                .unwrap_err()
                .contains("empty label")
        );
        assert!(
            validate(&spec(&["a.*.b"]), "i")
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(validate(&spec(&["*"]), "i").is_err());
        assert!(
            validate(&spec(&["bad_name.example"]), "i")
                .unwrap_err()
                .contains("xn--")
        );
        assert!(
            validate(&spec(&[&"a".repeat(64)]), "i")
                .unwrap_err()
                .contains("63")
        );
        let mut s = spec(&["a.example"]);
        s.secret_name = "Bad Name".into();
        assert!(validate(&s, "i").unwrap_err().contains("secretName"));
        let mut s = spec(&["a.example"]);
        s.common_name = Some("b.example".into());
        assert!(validate(&s, "i").unwrap_err().contains("commonName"));
        let mut s = spec(&["a.example"]);
        s.renew_before = Some("soon".into());
        assert!(validate(&s, "i").unwrap_err().contains("renewBefore"));
        let mut s = spec(&["a.example"]);
        s.private_key = Some(PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Ecdsa),
            size: Some(1),
            ..Default::default()
        });
        assert!(validate(&s, "i").unwrap_err().contains("256 or 384"));
        let mut s = spec(&["a.example"]);
        s.issuer_ref.kind = Some("Issuer".into());
        assert!(validate(&s, "i").unwrap_err().contains("issuerRef.kind"));
    }

    #[test]
    fn normalizes_and_hashes() {
        let a = validate(
            &spec(&["B.example.", "a.example", "b.example", "*.a.example"]),
            "i",
        )
        .unwrap();
        assert_eq!(a.dns_names, vec!["b.example", "a.example", "*.a.example"]);
        let b = validate(&spec(&["a.example", "*.a.example", "b.example"]), "i").unwrap();
        assert_eq!(a.hash, b.hash, "order does not matter");
        let c = validate(&spec(&["a.example"]), "i").unwrap();
        assert_ne!(a.hash, c.hash);
        let d = validate(&spec(&["a.example"]), "other-issuer").unwrap();
        assert_ne!(c.hash, d.hash);
    }

    fn secret_for(names: &[&str], key: &str, nb: Timestamp, na: Timestamp) -> SecretView {
        let kp = rcgen::KeyPair::from_pem(key).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = time_of(nb);
        params.not_after = time_of(na);
        let pem = params.self_signed(&kp).unwrap().pem();
        SecretView {
            cert: Some(parse_chain(&pem).map_err(|e| e.to_string())),
            key_pem: Some(key.to_string()),
            issuer: Some("CaaSIssuer/ca".into()),
        }
    }

    fn time_of(t: Timestamp) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(t.as_second()).unwrap()
    }

    const ISSUER: &str = "CaaSIssuer/ca";

    /// A request for `a.example`, its key, and a Secret with a certificate for it valid
    /// from January to April 2026; now is February 1st.
    struct Fixture {
        req: Request,
        key: String,
        nb: Timestamp,
        na: Timestamp,
        now: Timestamp,
        good: SecretView,
    }

    fn fixture() -> Fixture {
        let req = validate(&spec(&["a.example"]), "i").unwrap();
        let key = generate_key(&req.key).unwrap();
        let nb: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let na: Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        let good = secret_for(&["a.example"], &key, nb, na);
        Fixture {
            req,
            key,
            nb,
            na,
            now,
            good,
        }
    }

    fn reason(decision: Decision) -> &'static str {
        match decision {
            Decision::Issue { reason, .. } => reason.as_str(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn valid_until_the_renewal_time() {
        let Fixture { req, now, good, .. } = fixture();
        assert_eq!(
            reason(decide(&req, &[ISSUER], None, None, now, 0.0)),
            "SecretMissing"
        );
        match decide(&req, &[ISSUER], None, Some(&good), now, 0.0) {
            Decision::Valid { renewal_time, cert } => {
                assert_eq!(renewal_time, "2026-03-02T00:00:00Z".parse().unwrap());
                assert_eq!(Some(Ok(cert)), good.cert);
            }
            other => panic!("{other:?}"),
        }
        let late: Timestamp = "2026-03-05T00:00:00Z".parse().unwrap();
        assert_eq!(
            reason(decide(&req, &[ISSUER], None, Some(&good), late, 0.0)),
            "RenewalDue"
        );
        let expired: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            reason(decide(&req, &[ISSUER], None, Some(&good), expired, 0.0)),
            "Expired"
        );
    }

    #[test]
    fn changed_names_key_or_issuer_mean_a_new_certificate() {
        let f = fixture();
        let (req, now) = (&f.req, f.now);
        let wrong_names = secret_for(&["b.example"], &f.key, f.nb, f.na);
        assert_eq!(
            reason(decide(req, &[ISSUER], None, Some(&wrong_names), now, 0.0)),
            "NamesChanged"
        );
        let mut wrong_key = f.good.clone();
        wrong_key.key_pem = Some(generate_key(&req.key).unwrap());
        assert_eq!(
            reason(decide(req, &[ISSUER], None, Some(&wrong_key), now, 0.0)),
            "KeyMismatch"
        );
        let mut garbage = f.good.clone();
        garbage.cert = Some(Err("bad".into()));
        assert_eq!(
            reason(decide(req, &[ISSUER], None, Some(&garbage), now, 0.0)),
            "InvalidCertificate"
        );
        assert_eq!(
            reason(decide(
                req,
                &["ClusterCaaSIssuer/x"],
                None,
                Some(&f.good),
                now,
                0.0
            )),
            "IssuerChanged"
        );
        let mut p384 = spec(&["a.example"]);
        p384.private_key = Some(PrivateKeySpec {
            size: Some(384),
            ..Default::default()
        });
        let req384 = validate(&p384, "i").unwrap();
        assert_eq!(
            reason(decide(&req384, &[ISSUER], None, Some(&f.good), now, 0.0)),
            "KeySettingsChanged"
        );
    }

    #[test]
    fn renewal_time_in_status_is_kept_for_the_same_certificate() {
        let Fixture {
            req, na, now, good, ..
        } = fixture();
        let status = CertificateStatus {
            not_after: Some(crate::api::Time(na)),
            renewal_time: Some("2026-03-20T00:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            decide(&req, &[ISSUER], Some(&status), Some(&good), now, 0.9),
            Decision::Valid {
                renewal_time: "2026-03-20T00:00:00Z".parse().unwrap(),
                cert: good.cert.clone().unwrap().unwrap(),
            }
        );
    }

    #[test]
    fn retry_gate_waits_out_the_backoff() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(retry_gate(0, None, true, t), RetryGate::Go);
        assert_eq!(
            retry_gate(1, Some(t), true, t),
            RetryGate::Wait(std::time::Duration::from_secs(10))
        );
        assert_eq!(
            retry_gate(3, Some(t), true, t + SignedDuration::from_secs(15)),
            RetryGate::Wait(std::time::Duration::from_secs(25))
        );
        assert_eq!(
            retry_gate(1, Some(t), true, t + SignedDuration::from_secs(10)),
            RetryGate::Go
        );
        assert_eq!(retry_gate(4, Some(t), false, t), RetryGate::Reset);
    }

    #[test]
    fn manual_renewal_once_per_request() {
        let mut req = validate(&spec(&["a.example"]), "i").unwrap();
        let key = generate_key(&req.key).unwrap();
        let nb: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let na: Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        let good = secret_for(&["a.example"], &key, nb, na);
        req.renew_request = Some("2026-02-01T00:00:00Z".into());
        assert!(matches!(
            decide(&req, &["CaaSIssuer/ca"], None, Some(&good), now, 0.0),
            Decision::Issue {
                reason: Reason::ManualRenewal,
                ..
            }
        ));
        let handled = CertificateStatus {
            manual_renewal: req.renew_request.clone(),
            ..Default::default()
        };
        assert!(matches!(
            decide(
                &req,
                &["CaaSIssuer/ca"],
                Some(&handled),
                Some(&good),
                now,
                0.0
            ),
            Decision::Valid { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), SignedDuration::from_secs(10));
        assert_eq!(backoff(2), SignedDuration::from_secs(20));
        assert_eq!(backoff(5), SignedDuration::from_secs(160));
        assert_eq!(backoff(30), SignedDuration::from_hours(4));
    }

    #[test]
    fn polling_backs_off_and_honours_retry_after() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        assert_eq!(poll_delay(s(0), None, ms(500)), ms(500));
        assert_eq!(poll_delay(s(1), None, ms(300)), ms(300));
        assert_eq!(poll_delay(s(100), None, ms(500)), s(20));
        assert_eq!(poll_delay(s(3600), None, ms(500)), s(60));
        assert_eq!(poll_delay(s(0), Some(s(7)), ms(500)), s(7));
        assert_eq!(poll_delay(s(3600), Some(s(7)), ms(500)), s(60));
        assert_eq!(poll_delay(s(0), Some(s(86400)), ms(500)), s(3600));
        assert_eq!(poll_delay(s(0), Some(s(0)), ms(500)), ms(500));
        assert_eq!(poll_delay(s(600), Some(s(0)), ms(500)), s(60));
        // Ten minutes of a CA that says nothing: about 40 polls, the last gaps a minute.
        let (mut t, mut polls, mut last) = (Duration::ZERO, 0, Duration::ZERO);
        while t < s(600) {
            last = poll_delay(t, None, ms(300));
            t += last;
            polls += 1;
        }
        assert!((25..=60).contains(&polls), "{polls} polls in 10 minutes");
        assert_eq!(last, s(60));
    }

    #[test]
    fn waiting_conditions_say_what_is_awaited() {
        use crate::api::certificate::ChallengeStatus;
        use std::time::Duration;
        let ch = |name: &str, state: &str, error: Option<&str>| ChallengeStatus {
            type_: crate::api::ChallengeType::Http01,
            dns_name: name.into(),
            token: "t".into(),
            key: "k".into(),
            state: ChallengeState::from_wire(state).unwrap(),
            waiting_for_dns: error.is_some(),
            error: error.map(str::to_string),
        };
        let mut order = OrderStatus {
            url: "https://ca/order/1".into(),
            issuer: None,
            state: OrderState::Pending,
            request_hash: "h".into(),
            challenges: vec![
                ch("a.example", "processing", None),
                ch("b.example", "valid", None),
            ],
            state_since: None,
        };
        let s = Duration::from_secs;
        assert_eq!(waiting_condition(&order, s(2), s(1)), None);
        let (reason, message) = waiting_condition(&order, s(250), s(50)).unwrap();
        assert_eq!(reason, Reason::WaitingForCa);
        assert!(
            message.contains("validating a.example for 4m 10s"),
            "{message}"
        );
        assert!(message.contains("in 50s"), "{message}");
        let sig = progress_signature(&order);
        order.challenges[0].state = ChallengeState::Valid;
        assert_ne!(progress_signature(&order), sig);
        assert_eq!(waiting_condition(&order, s(250), s(50)), None);
        order.state = OrderState::Processing;
        let (reason, message) = waiting_condition(&order, s(600), s(60)).unwrap();
        assert_eq!(reason, Reason::WaitingForCa);
        assert!(message.contains("processing the order"), "{message}");
        order.state = OrderState::Pending;
        order.challenges[0] = ch(
            "c.example",
            "pending",
            Some("waiting for _acme-challenge.c.example. TXT to be served by the zone's server"),
        );
        let (reason, _) = waiting_condition(&order, s(30), s(6)).unwrap();
        assert_eq!(reason, Reason::WaitingForDns);
        order.state = OrderState::Valid;
        assert_eq!(waiting_condition(&order, s(30), s(6)), None);
    }
}
