//! The one-line verdict of `kubectl caas status`: for each reason the operator reports
//! (the README's troubleshooting table), what it means and the next action. Pure, so
//! every reason is tested.

/// What a user should do about a Certificate's `Ready` reason.
pub fn certificate_advice(reason: &str) -> &'static str {
    match reason {
        "Issued" => "nothing to do: it renews by itself",
        "Issuing" => "wait: an issuance is under way (see the order below)",
        "InvalidSpec" => "fix the field the message names, then apply again",
        "IssuerNotFound" => "create the issuer the Certificate names (or fix issuerRef)",
        "IssuerNotReady" => "fix the issuer first: kubectl caas status issuer <name>",
        "NoSolver" => "add a solver whose selector matches every name (wildcards need dns01)",
        "ChallengeFailed" | "OrderFailed" => {
            "check that each name resolves to your ingress (HTTP-01) or that the DNS \
             credentials may update the zone (DNS-01); the CA's words are quoted per name"
        }
        "DNSUpdateFailed" => {
            "fix the DNS provider's credentials or zone (the message quotes the provider)"
        }
        "RateLimited" => "wait: new orders resume at the time given; do not delete and recreate",
        "DurationNotSupported" => {
            "remove duration, or set enableDurationFeature: false on the issuer"
        }
        "WaitingForCA" => "wait: the CA is still validating or issuing (no time limit)",
        "WaitingForDNS" => {
            "wait, or check --dns01-recursive-nameservers if the cluster cannot reach the \
             zone's nameservers"
        }
        "SecretWriteFailed" => {
            "let the operator write the Secret (RBAC, quota, an immutable Secret of that name)"
        }
        "CertificateMismatch" | "InvalidCertificate" => {
            "nothing: the CA's certificate was refused and a new order follows; report it to \
             the CA if it repeats"
        }
        "KubernetesError" => "install the chart's RBAC (the message quotes the API server)",
        "KeyLost" => "nothing: the key was lost before use; a new order follows",
        "ACMEError" => "read the CA's words in the message; check the issuer's server and account",
        _ => "read the message and the events below",
    }
}

/// What a user should do about an issuer's `Ready` reason.
pub fn issuer_advice(reason: &str) -> &'static str {
    match reason {
        "AccountRegistered" => "nothing to do",
        "EABRejected" => {
            "copy the EAB key ID and HMAC key again from the CA's console (the HMAC into \
             the Secret); the issuer retries by itself"
        }
        "SecretNotFound" => {
            "create the EAB Secret and key the issuer names (ClusterCaaSIssuer: in the \
             operator's namespace)"
        }
        "ServerUnreachable" => {
            "check server (the ACME directory URL), DNS, proxies, and caBundle for a private CA"
        }
        "InvalidSpec" => "fix the field the message names",
        "SecretWriteFailed" => "let the operator write the account key Secret (RBAC, quota)",
        "AccountKeyRace" => "nothing: the next look uses the key Secret that won",
        "KeyRolloverFailed" => "read the CA's words; the old key stays in use and it retries",
        _ => "read the message and the events",
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
        assert!(
            seen >= 25,
            "only {seen} reasons found in the README's table"
        );
    }
}
