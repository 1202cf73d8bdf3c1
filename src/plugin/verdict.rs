//! The one-line verdicts of `kubectl caas status` and `inspect`: for each reason the
//! operator reports (the README's troubleshooting table), what it means and the next
//! action. Pure, so every reason is tested. A leaf of the plugin.

use crate::api::{Condition, Reason, Time};

/// The verdict of `status certificate`, from its `Ready` and (true) `Expiring`
/// conditions and its status times.
pub fn certificate(
    ready: Option<&Condition>,
    expiring: Option<&Condition>,
    not_after: Option<Time>,
    renewal_time: Option<Time>,
) -> String {
    let or_what = |t: Option<Time>| t.map_or_else(|| "?".to_string(), |t| t.to_string());
    let reason = ready.map(|c| c.reason.as_str()).unwrap_or_default();
    match (ready.is_some_and(|c| c.is_true()), expiring) {
        (true, Some(e)) => format!("EXPIRING ({}): {}", e.reason, e.message),
        (true, None) => format!(
            "READY: valid until {}; renewal at {}",
            or_what(not_after),
            or_what(renewal_time)
        ),
        (false, _) if reason.is_empty() => {
            "NOT READY: the operator has not looked at it yet (is it running? does it watch \
             this namespace?)"
                .to_string()
        }
        (false, _) => format!("NOT READY ({reason}): {}", certificate_advice(reason)),
    }
}

/// The verdict of `status issuer`, from its `Ready` condition and whether its directory
/// answers from here.
pub fn issuer(ready: Option<&Condition>, directory: Result<(), &str>) -> String {
    let reason = ready.map(|c| c.reason.as_str()).unwrap_or_default();
    match (ready.is_some_and(|c| c.is_true()), directory) {
        (true, Ok(())) => "READY: the account is registered and the CA answers".to_string(),
        (true, Err(e)) => format!("READY, but the CA's directory does not answer from here: {e}"),
        (false, _) if reason.is_empty() => {
            "NOT READY: the operator has not looked at it yet".to_string()
        }
        (false, _) => format!("NOT READY ({reason}): {}", issuer_advice(reason)),
    }
}

/// The verdict of `inspect secret`: whether the Secret is usable, and why not.
pub fn secret(has_certificate: bool, valid_now: bool, key_matches: Option<bool>) -> (bool, String) {
    let usable = valid_now && key_matches == Some(true);
    let verdict = match (has_certificate, usable) {
        (false, _) => "NOT USABLE: no certificate in tls.crt",
        (_, true) => "USABLE: valid now, and tls.key belongs to the certificate",
        _ if key_matches == Some(false) => "NOT USABLE: tls.key does not belong to the certificate",
        _ => "NOT USABLE: the certificate is not valid now",
    };
    (usable, verdict.to_string())
}

/// What a user should do about a Certificate's `Ready` reason (as its condition says it).
pub fn certificate_advice(reason: &str) -> &'static str {
    Reason::parse(reason).map_or(UNKNOWN, certificate_advice_for)
}

/// What a user should do about an issuer's `Ready` reason (as its condition says it).
pub fn issuer_advice(reason: &str) -> &'static str {
    Reason::parse(reason).map_or(UNKNOWN, issuer_advice_for)
}

/// For a reason this operator never writes.
const UNKNOWN: &str = "read the message and the events";

/// The certificate advice of each reason. Matching every variant (no wildcard) makes a
/// new reason a compile error here until it has advice.
fn certificate_advice_for(reason: Reason) -> &'static str {
    use Reason::*;
    match reason {
        Issued => "nothing to do: it renews by itself",
        Issuing => "wait: an issuance is under way (see the order below)",
        SecretMissing | RenewalDue | ManualRenewal | Expired | IssuerChanged | KeyMissing
        | KeyMismatch | KeySettingsChanged | NamesChanged => {
            "wait: a new certificate is being issued for the reason given"
        }
        InvalidSpec => "fix the field the message names, then apply again",
        IssuerNotFound => "create the issuer the Certificate names (or fix issuerRef)",
        IssuerNotReady => "fix the issuer first: kubectl caas status issuer <name>",
        NoSolver => "add a solver whose selector matches every name (wildcards need dns01)",
        ChallengeFailed | OrderFailed => {
            "check that each name resolves to your ingress (HTTP-01) or that the DNS \
             credentials may update the zone (DNS-01); the CA's words are quoted per name"
        }
        ChallengeNotOffered => {
            "give the issuer a solver of a type the CA offers for that name (the message \
             lists what it offers)"
        }
        DnsUpdateFailed => {
            "fix the DNS provider's credentials or zone (the message quotes the provider)"
        }
        SecretNotFound => "create the Secret the issuer's solver names (credentials, TSIG key)",
        RateLimited => "wait: new orders resume at the time given; do not delete and recreate",
        DurationNotSupported => {
            "remove duration, or remove enableDurationFeature: true from the issuer (off by default)"
        }
        WaitingForCa => "wait: the CA is still validating or issuing (no time limit)",
        PersistentRecordMissing => {
            "publish the TXT record the message names, once; then it goes on"
        }
        PersistUntilNear => {
            "publish the dns-persist-01 record again with a later persistUntil (or none) and \
             set the issuer's dnsPersist01.persistUntil to match"
        }
        WaitingForDns => {
            "wait, or check --dns01-recursive-nameservers if the cluster cannot reach the \
             zone's nameservers"
        }
        SecretWriteFailed => {
            "let the operator write the Secret (RBAC, quota, an immutable Secret of that name)"
        }
        CertificateMismatch | InvalidCertificate => {
            "nothing: the CA's certificate was refused and a new order follows; report it to \
             the CA if it repeats"
        }
        KubernetesError => "install the chart's RBAC (the message quotes the API server)",
        KeyLost => "nothing: the key was lost before use; a new order follows",
        AcmeError => "read the CA's words in the message; check the issuer's server and account",
        RenewalFailing => {
            "fix the failure the message quotes before notAfter: the certificate in use \
             stays valid until then"
        }
        Deployed
        | WaitingForCertificate
        | TargetNotFound
        | InvalidTarget
        | UnsupportedKey
        | NotPermitted
        | CopyConflict
        | DestinationRefused
        | DeployedCopyExpiring
        | DestinationUnreachable => deployment_advice(reason),
        AccountNotFound | BadNonce | EabRejected | ServerUnreachable | AccountRegistered
        | AccountKeyRace | KeyRolloverFailed => {
            "look at the issuer: kubectl caas status issuer <name> (its account or CA)"
        }
        UnknownProfile => {
            "set profile (the Certificate's, or its issuer's) to one the CA offers (the \
             message lists them), or remove it"
        }
    }
}

/// The advice of the reasons of a deployment's conditions.
fn deployment_advice(reason: Reason) -> &'static str {
    use Reason::*;
    match reason {
        Deployed => "nothing to do: renewals are deployed by themselves",
        WaitingForCertificate => "wait: the target gets the certificate once it is issued",
        TargetNotFound => "create the deploy target deployTo names (or fix deployTo)",
        InvalidTarget => "fix the deploy target's field the message names",
        UnsupportedKey => "use an RSA or ECDSA key (privateKey.algorithm) for this destination",
        NotPermitted => {
            "turn on secretCopies in the chart, or annotate the namespace with \
             caas.dev/accept-secret-copies-from"
        }
        CopyConflict => "rename or delete the Secret in the way (or set secretName on the target)",
        DestinationRefused => {
            "fix what the destination's words say (credentials, IAM rights, the key type); \
             it is retried with backoff"
        }
        DeployedCopyExpiring => {
            "fix the failure the deployment's Deployed condition quotes before that copy's \
             notAfter: the destination serves it until then"
        }
        DestinationUnreachable => {
            "nothing, if it passes: it is retried with backoff (30 s doubling to 1 h); check \
             the endpoint and network if it lasts"
        }
        _ => UNKNOWN,
    }
}

/// The issuer advice of each reason an issuer's Ready can carry; the Certificate-only
/// reasons fall to the generic advice.
fn issuer_advice_for(reason: Reason) -> &'static str {
    use Reason::*;
    match reason {
        AccountRegistered => "nothing to do",
        EabRejected => {
            "copy the EAB key ID and HMAC key again from the CA's console (the HMAC into \
             the Secret); the issuer retries by itself"
        }
        SecretNotFound => {
            "create the EAB Secret and key the issuer names (ClusterCaaSIssuer: in the \
             operator's namespace)"
        }
        ServerUnreachable => {
            "check server (the ACME directory URL), DNS, proxies, and caBundle for a private CA"
        }
        InvalidSpec => "fix the field the message names",
        SecretWriteFailed => "let the operator write the account key Secret (RBAC, quota)",
        AccountKeyRace => "nothing: the next look uses the key Secret that won",
        KeyRolloverFailed => "read the CA's words; the old key stays in use and it retries",
        AccountNotFound => {
            "the CA does not know the account of the key Secret: delete the key Secret's \
             tls.key only if the CA's console agrees the account is gone"
        }
        BadNonce => "nothing: the CA refused nonces repeatedly; the issuer retries",
        UnknownProfile => {
            "set the issuer's profile to one the CA offers (the message lists them), or remove it"
        }
        RateLimited => "wait: the CA asked to slow down; the issuer retries after Retry-After",
        AcmeError => "read the CA's words in the message",
        KubernetesError => "install the chart's RBAC (the message quotes the API server)",
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason in the README's troubleshooting table has its own advice.
    #[test]
    fn every_documented_reason_has_advice() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("## Troubleshooting\n")
            .nth(1)
            .and_then(|t| t.split("\n## ").next())
            .expect("a Troubleshooting section");
        let mut seen = 0;
        for row in table
            .lines()
            .filter(|l| l.starts_with("| issuer") || l.starts_with("| certificate"))
        {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let reasons: Vec<&str> = cells[2]
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, r)| r)
                .collect();
            for reason in reasons {
                let advice = match cells[1] {
                    "issuer" => issuer_advice(reason),
                    _ => certificate_advice(reason),
                };
                assert!(
                    !advice.starts_with("read the message"),
                    "no advice for the {} reason {reason}",
                    cells[1]
                );
                seen += 1;
            }
        }
        let documented: std::collections::BTreeSet<&str> = table
            .lines()
            .filter(|l| l.starts_with("| issuer") || l.starts_with("| certificate"))
            .flat_map(|row| {
                row.split('|')
                    .nth(2)
                    .unwrap_or_default()
                    .split('`')
                    .skip(1)
                    .step_by(2)
            })
            .collect();
        for reason in Reason::ALL {
            assert!(
                documented.contains(reason.as_str()),
                "the reason {reason} is missing from the README's troubleshooting table"
            );
        }
        assert!(
            seen >= 25,
            "only {seen} reasons found in the README's table"
        );
    }

    fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
        Condition::new(type_, status, reason, message)
    }

    #[test]
    fn certificate_verdicts() {
        let ready = condition("Ready", true, "Issued", "ok");
        let expiring = condition("Expiring", true, "RenewalFailing", "expires soon");
        assert_eq!(
            certificate(
                Some(&ready),
                None,
                Some("2027-01-01T00:00:00Z".parse().unwrap()),
                None
            ),
            "READY: valid until 2027-01-01T00:00:00Z; renewal at ?"
        );
        assert_eq!(
            certificate(Some(&ready), Some(&expiring), None, None),
            "EXPIRING (RenewalFailing): expires soon"
        );
        assert!(certificate(None, None, None, None).starts_with("NOT READY: the operator has not"));
        let failed = condition("Ready", false, "RateLimited", "later");
        assert_eq!(
            certificate(Some(&failed), Some(&expiring), None, None),
            format!(
                "NOT READY (RateLimited): {}",
                certificate_advice("RateLimited")
            )
        );
    }

    #[test]
    fn issuer_verdicts() {
        let ready = condition("Ready", true, "AccountRegistered", "ok");
        assert_eq!(
            issuer(Some(&ready), Ok(())),
            "READY: the account is registered and the CA answers"
        );
        assert_eq!(
            issuer(Some(&ready), Err("timeout")),
            "READY, but the CA's directory does not answer from here: timeout"
        );
        assert_eq!(
            issuer(None, Ok(())),
            "NOT READY: the operator has not looked at it yet"
        );
        let rejected = condition("Ready", false, "EABRejected", "no");
        assert!(
            issuer(Some(&rejected), Ok(())).starts_with("NOT READY (EABRejected): copy the EAB")
        );
    }

    #[test]
    fn secret_verdicts() {
        assert_eq!(
            secret(false, false, None),
            (false, "NOT USABLE: no certificate in tls.crt".to_string())
        );
        assert!(secret(true, true, Some(true)).0);
        assert!(secret(true, true, Some(true)).1.starts_with("USABLE"));
        assert!(
            secret(true, true, Some(false))
                .1
                .contains("does not belong")
        );
        assert!(secret(true, false, None).1.contains("not valid now"));
        assert!(secret(true, true, None).1.contains("not valid now"));
    }
}
