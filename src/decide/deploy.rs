//! The deploy controller's decisions, per target of a Certificate: deploy now, wait out a
//! backoff, refuse, or nothing until the next look; and which namespaces get a Secret
//! copy. Pure: time, randomness and what the stores hold are passed in.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use crate::api::certificate::KeyAlgorithm;
use crate::api::{DeploymentStatus, Reason};

/// The certificate in the Secret, as far as deploying it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretCert {
    /// Lowercase hex, as `caas.dev/serial`.
    pub serial: String,
    pub not_after: Timestamp,
    pub key: KeyAlgorithm,
}

/// What to do for one target now.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// No certificate in the Secret yet: woken when there is.
    WaitForCertificate,
    /// The target cannot take this certificate; no call is made.
    Refuse { reason: Reason, message: String },
    /// Put the Secret's certificate there (after one read: nothing is uploaded when the
    /// destination already holds this serial).
    Deploy,
    /// The last attempt failed: the next is due then.
    Wait { until: Timestamp },
    /// Deployed and current: look again then (a copy deleted behind our back comes back).
    Idle { verify_at: Timestamp },
}

/// What the controller sees of a target now.
#[derive(Clone, Copy, Debug)]
pub struct TargetView<'a> {
    /// `acm`, `secretCopies`.
    pub destination: &'a str,
    /// Where the target puts the copy now (a change means a new copy).
    pub location: &'a str,
    /// The target's resourceVersion: one other than the entry's ends a backoff.
    pub version: Option<&'a str>,
    /// What the stores show of the destination differs from the entry (a Secret copy
    /// deleted or changed by hand).
    pub stale: bool,
}

/// One target's step.
pub fn step(
    target: TargetView<'_>,
    entry: Option<&DeploymentStatus>,
    secret: Option<&SecretCert>,
    now: Timestamp,
    verify_every: SignedDuration,
) -> Step {
    let TargetView {
        destination,
        location,
        version,
        stale,
    } = target;
    let Some(secret) = secret else {
        return Step::WaitForCertificate;
    };
    // No cloud certificate store takes Ed25519 keys (ACM, Cloudflare, Key Vault and
    // Certificate Manager list RSA and ECDSA only).
    if destination != "secretCopies" && secret.key == KeyAlgorithm::Ed25519 {
        return Step::Refuse {
            reason: Reason::UnsupportedKey,
            message: format!(
                "{destination} takes RSA and ECDSA keys only: this Certificate's key is \
                 Ed25519 (privateKey.algorithm)"
            ),
        };
    }
    let Some(entry) = entry else {
        return Step::Deploy;
    };
    if entry.failed_attempts.unwrap_or(0) > 0
        && let Some(next) = entry.next_attempt_time.map(|t| t.0)
        && next > now
        && entry.target_version.as_deref() == version
    {
        return Step::Wait { until: next };
    }
    // Deployed, or done as far as it can be without counting as a failure (copies in
    // the namespaces that consent, the others named): current until something changes.
    let partly_copied = (entry.conditions.iter())
        .any(|c| c.type_ == "Deployed" && c.reason == Reason::NotPermitted.as_str());
    let settled = entry.is_deployed()
        || (partly_copied
            && entry.failed_attempts.unwrap_or(0) == 0
            && entry.deployed_at.is_some());
    let current = settled
        && entry.location.as_deref() == Some(location)
        && entry
            .serial
            .as_deref()
            .is_some_and(|s| same_serial(s, &secret.serial));
    match (current && !stale, entry.deployed_at) {
        (true, Some(at)) if at.0 + verify_every > now => Step::Idle {
            verify_at: at.0 + verify_every,
        },
        _ => Step::Deploy,
    }
}

/// Whether the copy at a target nears its end while the Secret holds a newer certificate
/// that has not reached it: `within` of its notAfter (`--expiring-within`), or past it.
pub fn copy_expiring(
    entry: &DeploymentStatus,
    secret: Option<&SecretCert>,
    now: Timestamp,
    within: SignedDuration,
) -> bool {
    let (Some(not_after), Some(secret)) = (entry.not_after, secret) else {
        return false;
    };
    let renewed = !(entry.serial.as_deref()).is_some_and(|s| same_serial(s, &secret.serial));
    renewed && now + within >= not_after.0
}

/// Whether two serial numbers in hex are the same number (colons, case and leading
/// zeros aside: ACM writes `0a:1b:...`, x509 parsers may keep a leading `00`).
pub fn same_serial(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let hex: String = s
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        hex.trim_start_matches('0').to_string()
    };
    norm(a) == norm(b)
}

/// How long to wait after the `failed_attempts`-th failure in a row: 30 s doubling to an
/// hour, ±10 % (`rand` in [0, 1)) so that targets failing together spread out.
pub fn backoff(failed_attempts: i32, rand: f64) -> SignedDuration {
    let doublings = failed_attempts.clamp(1, 8) - 1;
    let base = (30.0 * f64::from(1u32 << doublings)).min(3600.0);
    SignedDuration::from_secs_f64(base * (0.9 + 0.2 * rand.clamp(0.0, 1.0)))
}

/// How often a refused target is looked at again.
pub const REFUSAL_RECHECK: SignedDuration = SignedDuration::from_mins(5);

/// When the controller should look at the Certificate again, of the steps taken: the
/// earliest backoff, verification or refusal re-check; `None` when only events can
/// change anything.
pub fn next_look(steps: &[Step], now: Timestamp) -> Option<SignedDuration> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Wait { until } => Some(*until),
            Step::Idle { verify_at } => Some(*verify_at),
            // What cures a refusal may wake nothing here (another Certificate letting
            // go of an adopted ARN, a copy about to expire): look again now and then.
            Step::Refuse { .. } => Some(now + REFUSAL_RECHECK),
            _ => None,
        })
        .min()
        .map(|t| now.duration_until(t).max(SignedDuration::from_secs(1)))
}

/// Entries of targets the Certificate no longer names (their copies are removed or
/// left as the target said).
pub fn dropped<'a>(
    keys: &BTreeSet<String>,
    entries: &'a [DeploymentStatus],
) -> Vec<&'a DeploymentStatus> {
    entries
        .iter()
        .filter(|e| !keys.contains(&e.target))
        .collect()
}

/// Whether a namespace's labels match a target's selector.
pub type LabelMatch<'a> = &'a dyn Fn(&BTreeMap<String, String>) -> bool;

/// A namespace as the copies decision sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NamespaceView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `caas.dev/accept-secret-copies-from`, if set.
    pub accepts_from: Option<String>,
}

/// Where Secret copies go: the listed namespaces and those the selector matches, but
/// never the source's own; `refused` names those a namespaced target may not write to
/// (no consent) and listed namespaces that do not exist.
#[derive(Debug, Default, PartialEq)]
pub struct CopyPlan {
    pub namespaces: Vec<String>,
    pub refused: Vec<String>,
}

/// `matches`: whether a namespace's labels match the target's selector (`None`: no
/// selector). A cluster target needs no consent; a namespaced one copies only into
/// namespaces whose annotation lists the source namespace or `*`.
pub fn copy_plan(
    listed: &[String],
    matches: Option<LabelMatch<'_>>,
    namespaces: &[NamespaceView],
    source_namespace: &str,
    cluster_target: bool,
) -> CopyPlan {
    let consents = |ns: &NamespaceView| {
        cluster_target
            || ns.accepts_from.as_deref().is_some_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .any(|n| n == "*" || n == source_namespace)
            })
    };
    let mut plan = CopyPlan::default();
    let wanted =
        |ns: &NamespaceView| listed.contains(&ns.name) || matches.is_some_and(|m| m(&ns.labels));
    for ns in namespaces
        .iter()
        .filter(|ns| ns.name != source_namespace && wanted(ns))
    {
        match consents(ns) {
            true => plan.namespaces.push(ns.name.clone()),
            false => plan.refused.push(format!(
                "{} (no caas.dev/accept-secret-copies-from consent for {source_namespace})",
                ns.name
            )),
        }
    }
    for name in listed {
        if name != source_namespace && !namespaces.iter().any(|ns| &ns.name == name) {
            plan.refused.push(format!("{name} (no such namespace)"));
        }
    }
    plan.namespaces.sort();
    plan.namespaces.dedup();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, Time};

    fn now() -> Timestamp {
        "2026-12-06T12:00:00Z".parse().unwrap()
    }

    fn secret(serial: &str) -> SecretCert {
        SecretCert {
            serial: serial.into(),
            not_after: now() + SignedDuration::from_hours(24 * 90),
            key: KeyAlgorithm::Ecdsa,
        }
    }

    fn deployed(serial: &str, location: &str, at: Timestamp) -> DeploymentStatus {
        DeploymentStatus {
            target: "DeployTarget/edge".into(),
            destination: Some("acm".into()),
            location: Some(location.into()),
            serial: Some(serial.into()),
            deployed_at: Some(Time(at)),
            conditions: vec![Condition::new("Deployed", true, "Deployed", "ok")],
            ..Default::default()
        }
    }

    const DAY: SignedDuration = SignedDuration::from_hours(24);

    fn view<'a>(destination: &'a str, location: &'a str, stale: bool) -> TargetView<'a> {
        TargetView {
            destination,
            location,
            version: None,
            stale,
        }
    }

    #[test]
    fn a_new_serial_is_deployed_and_a_current_one_waits_for_its_verification() {
        let entry = deployed(
            "0a1b",
            "acm:us-east-1",
            now() - SignedDuration::from_hours(1),
        );
        let s = |serial, location, stale| {
            step(
                view("acm", location, stale),
                Some(&entry),
                Some(&secret(serial)),
                now(),
                DAY,
            )
        };
        assert_eq!(
            s("0a1b", "acm:us-east-1", false),
            Step::Idle {
                verify_at: now() + SignedDuration::from_hours(23)
            }
        );
        // ACM's colon form and a leading zero are the same serial.
        assert!(matches!(
            s("00:0A:1B", "acm:us-east-1", false),
            Step::Idle { .. }
        ));
        assert_eq!(s("0c2d", "acm:us-east-1", false), Step::Deploy, "renewed");
        assert_eq!(s("0a1b", "acm:eu-west-1", false), Step::Deploy, "moved");
        assert_eq!(
            s("0a1b", "acm:us-east-1", true),
            Step::Deploy,
            "a copy changed by hand"
        );
        assert_eq!(
            step(
                view("acm", "acm:us-east-1", false),
                None,
                Some(&secret("1")),
                now(),
                DAY
            ),
            Step::Deploy
        );
        let late = now() + DAY;
        assert_eq!(
            step(
                view("acm", "acm:us-east-1", false),
                Some(&entry),
                Some(&secret("0a1b")),
                late,
                DAY
            ),
            Step::Deploy,
            "verification due"
        );
    }

    #[test]
    fn a_refusal_once_cured_is_deployed_at_once_not_at_the_next_verification() {
        let mut entry = deployed(
            "0a1b",
            "acm:us-east-1",
            now() - SignedDuration::from_hours(1),
        );
        entry.conditions = vec![Condition::new("Deployed", false, "TargetNotFound", "gone")];
        let target = view("acm", "acm:us-east-1", false);
        assert_eq!(
            step(target, Some(&entry), Some(&secret("0a1b")), now(), DAY),
            Step::Deploy
        );
        // Copies made where permitted, the rest named: settled until something changes.
        entry.conditions = vec![Condition::new(
            "Deployed",
            false,
            "NotPermitted",
            "not copied to c",
        )];
        assert!(matches!(
            step(target, Some(&entry), Some(&secret("0a1b")), now(), DAY),
            Step::Idle { .. }
        ));
    }

    #[test]
    fn nothing_is_deployed_before_the_secret_has_a_certificate() {
        assert_eq!(
            step(view("acm", "acm:us-east-1", false), None, None, now(), DAY),
            Step::WaitForCertificate
        );
    }

    #[test]
    fn a_failing_target_waits_its_backoff_even_for_a_new_serial() {
        let mut entry = deployed("0a1b", "acm:us-east-1", now() - DAY);
        entry.failed_attempts = Some(3);
        entry.next_attempt_time = Some(Time(now() + SignedDuration::from_mins(2)));
        entry.conditions = vec![Condition::new(
            "Deployed",
            false,
            "DestinationUnreachable",
            "503",
        )];
        entry.target_version = Some("7".into());
        let at = |t, version| {
            let target = TargetView {
                version,
                ..view("acm", "acm:us-east-1", false)
            };
            step(target, Some(&entry), Some(&secret("0c2d")), t, DAY)
        };
        let two_minutes = now() + SignedDuration::from_mins(2);
        assert_eq!(at(now(), Some("7")), Step::Wait { until: two_minutes });
        assert_eq!(at(two_minutes, Some("7")), Step::Deploy);
        assert_eq!(
            at(now(), Some("8")),
            Step::Deploy,
            "the target changed: tried at once"
        );
    }

    #[test]
    fn ed25519_is_refused_by_acm_before_any_call_and_copied_elsewhere() {
        let mut s = secret("1");
        s.key = KeyAlgorithm::Ed25519;
        let refused = step(
            view("acm", "acm:us-east-1", false),
            None,
            Some(&s),
            now(),
            DAY,
        );
        assert!(matches!(
            refused,
            Step::Refuse {
                reason: Reason::UnsupportedKey,
                ..
            }
        ));
        assert_eq!(
            step(
                view("secretCopies", "secretCopies:a", false),
                None,
                Some(&s),
                now(),
                DAY
            ),
            Step::Deploy
        );
    }

    #[test]
    fn a_copy_near_its_not_after_with_a_newer_secret_is_expiring() {
        let mut entry = deployed("0a1b", "acm:us-east-1", now() - DAY * 80);
        entry.not_after = Some(Time(now() + DAY * 5));
        let week = DAY * 7;
        assert!(copy_expiring(&entry, Some(&secret("0c2d")), now(), week));
        assert!(
            !copy_expiring(&entry, Some(&secret("0a1b")), now(), week),
            "the renewal is there"
        );
        assert!(
            !copy_expiring(&entry, Some(&secret("0c2d")), now(), DAY),
            "not yet within"
        );
        assert!(!copy_expiring(&entry, None, now(), week));
        entry.not_after = None;
        assert!(!copy_expiring(&entry, Some(&secret("0c2d")), now(), week));
    }

    #[test]
    fn backoff_doubles_from_30_seconds_to_an_hour_with_jitter() {
        let secs = |n, r| backoff(n, r).as_secs_f64().round();
        assert_eq!(secs(1, 0.5), 30.0);
        assert_eq!(secs(2, 0.5), 60.0);
        assert_eq!(secs(7, 0.5), 1920.0);
        assert_eq!(secs(8, 0.5), 3600.0);
        assert_eq!(secs(50, 0.5), 3600.0);
        assert_eq!(secs(1, 0.0), 27.0);
        assert_eq!(secs(1, 0.999_999), 33.0);
    }

    #[test]
    fn the_next_look_is_the_earliest_wait_or_verification() {
        let soon = now() + SignedDuration::from_mins(5);
        let steps = [
            Step::Deploy,
            Step::Idle {
                verify_at: now() + DAY,
            },
            Step::Wait { until: soon },
        ];
        assert_eq!(next_look(&steps, now()), Some(SignedDuration::from_mins(5)));
        assert_eq!(next_look(&[Step::WaitForCertificate], now()), None);
        let refused = Step::Refuse {
            reason: Reason::TargetNotFound,
            message: String::new(),
        };
        assert_eq!(next_look(&[refused], now()), Some(REFUSAL_RECHECK));
    }

    #[test]
    fn entries_of_targets_no_longer_named_are_dropped() {
        let entries = [
            deployed("1", "acm:x", now()),
            DeploymentStatus {
                target: "ClusterDeployTarget/copies".into(),
                ..Default::default()
            },
        ];
        let keys: BTreeSet<String> = ["DeployTarget/edge".to_string()].into();
        let dropped = dropped(&keys, &entries);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].target, "ClusterDeployTarget/copies");
    }

    fn ns(name: &str, label: Option<&str>, accepts: Option<&str>) -> NamespaceView {
        NamespaceView {
            name: name.into(),
            labels: label
                .map(|l| [(l.to_string(), "true".to_string())].into())
                .unwrap_or_default(),
            accepts_from: accepts.map(str::to_string),
        }
    }

    #[test]
    fn copies_go_to_listed_and_selected_namespaces_but_never_the_source() {
        let all = [
            ns("shop", Some("wants"), None),
            ns("a", None, None),
            ns("b", Some("wants"), None),
            ns("c", None, None),
        ];
        let selector = |labels: &BTreeMap<String, String>| labels.contains_key("wants");
        let plan = copy_plan(
            &["a".into(), "gone".into()],
            Some(&selector),
            &all,
            "shop",
            true,
        );
        assert_eq!(plan.namespaces, ["a", "b"]);
        assert_eq!(plan.refused, ["gone (no such namespace)"]);
    }

    #[test]
    fn a_namespaced_target_copies_only_where_the_namespace_consents() {
        let all = [
            ns("a", None, Some("payments, shop")),
            ns("b", None, Some("*")),
            ns("c", None, Some("payments")),
            ns("d", None, None),
        ];
        let listed: Vec<String> = ["a", "b", "c", "d"].map(String::from).into();
        let plan = copy_plan(&listed, None, &all, "shop", false);
        assert_eq!(plan.namespaces, ["a", "b"]);
        assert_eq!(plan.refused.len(), 2);
        assert!(plan.refused[0].starts_with("c (no caas.dev/accept-secret-copies-from"));
    }
}
