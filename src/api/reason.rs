//! Every reason the operator writes into a condition of a Certificate or an issuer: one
//! closed vocabulary, so a new reason is a new variant here, documented in the README's
//! troubleshooting table (a test checks both ways) and advised on by `kubectl caas`.
//!
//! In the CRDs a condition's reason stays a plain string (Kubernetes' convention): these
//! are the values the operator writes, not a schema.

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)+) => {
        /// Why a condition is what it is (the `reason` of a condition).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The reason as written in conditions.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $wire,)+
                }
            }

            /// The reason a condition names; `None` for one this operator never writes.
            pub fn parse(text: &str) -> Option<Reason> {
                match text {
                    $($wire => Some(Reason::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    // Both kinds.
    /// The spec is invalid; the message names the field.
    InvalidSpec = "InvalidSpec",
    /// A Secret the spec names is missing (or its key is).
    SecretNotFound = "SecretNotFound",
    /// A Secret the operator writes cannot be written.
    SecretWriteFailed = "SecretWriteFailed",
    /// A Kubernetes API call failed.
    KubernetesError = "KubernetesError",
    /// The CA answered with a problem document.
    AcmeError = "ACMEError",
    /// The CA asked to slow down (429 with `Retry-After`).
    RateLimited = "RateLimited",
    // Certificates.
    /// A valid certificate is in the Secret.
    Issued = "Issued",
    /// An issuance is under way.
    Issuing = "Issuing",
    /// The issuer the Certificate names does not exist.
    IssuerNotFound = "IssuerNotFound",
    /// The issuer exists but is not Ready.
    IssuerNotReady = "IssuerNotReady",
    /// No solver of the issuer matches a name.
    NoSolver = "NoSolver",
    /// The CA rejected a challenge.
    ChallengeFailed = "ChallengeFailed",
    /// The CA offers no challenge type the chosen solver answers for a name.
    ChallengeNotOffered = "ChallengeNotOffered",
    /// The CA marked the order invalid.
    OrderFailed = "OrderFailed",
    /// The DNS provider refused a change or did not answer.
    DnsUpdateFailed = "DNSUpdateFailed",
    /// The CA refuses the order's notAfter (`duration`).
    DurationNotSupported = "DurationNotSupported",
    /// The CA is still validating or issuing.
    WaitingForCa = "WaitingForCA",
    /// A TXT record is published but not yet served.
    WaitingForDns = "WaitingForDNS",
    /// dns-persist-01: the persistent TXT record naming the account is not served yet
    /// (the message says exactly what to publish).
    PersistentRecordMissing = "PersistentRecordMissing",
    /// dns-persist-01: the record's `persistUntil` comes before the next renewal or within
    /// `--expiring-within` (`PersistentRecordExpiring`).
    PersistUntilNear = "PersistUntilNear",
    /// The CA's certificate does not match the order's key or names.
    CertificateMismatch = "CertificateMismatch",
    /// The CA's certificate cannot be read.
    InvalidCertificate = "InvalidCertificate",
    /// The private key of an order was lost before use.
    KeyLost = "KeyLost",
    /// The certificate nears its end and renewal fails (`Expiring`).
    RenewalFailing = "RenewalFailing",
    // Why a certificate is (re)issued: the Issuing condition and the issuance event.
    /// The Secret (or its tls.crt) does not exist.
    SecretMissing = "SecretMissing",
    /// The certificate's renewal time has come.
    RenewalDue = "RenewalDue",
    /// `kubectl caas renew` (the `caas.dev/renew` annotation) asked for it.
    ManualRenewal = "ManualRenewal",
    /// The certificate has expired.
    Expired = "Expired",
    /// The certificate came from another issuer.
    IssuerChanged = "IssuerChanged",
    /// The Secret has no tls.key.
    KeyMissing = "KeyMissing",
    /// The Secret's tls.key does not belong to its certificate.
    KeyMismatch = "KeyMismatch",
    /// The private key settings changed.
    KeySettingsChanged = "KeySettingsChanged",
    /// The certificate's names differ from the spec.
    NamesChanged = "NamesChanged",
    // A Certificate's deployments (`status.deployments[].conditions`, type `Deployed`).
    /// The Secret's certificate is at the target.
    Deployed = "Deployed",
    /// The Secret holds no certificate yet: nothing to deploy.
    WaitingForCertificate = "WaitingForCertificate",
    /// The `DeployTarget` or `ClusterDeployTarget` named in `deployTo` does not exist.
    TargetNotFound = "TargetNotFound",
    /// The target's spec is invalid; the message names the field.
    InvalidTarget = "InvalidTarget",
    /// The destination does not take this key type (ACM: no Ed25519).
    UnsupportedKey = "UnsupportedKey",
    /// The operator may not deploy there (Secret copies switched off, no consent).
    NotPermitted = "NotPermitted",
    /// A Secret of the copy's name exists and is not a copy of this certificate.
    CopyConflict = "CopyConflict",
    /// The destination refused the request (credentials, rights, the certificate).
    DestinationRefused = "DestinationRefused",
    /// The destination did not answer, or answered that it is unavailable.
    DestinationUnreachable = "DestinationUnreachable",
    /// A deployed copy nears its notAfter and the renewal has not reached it (`Expiring`
    /// of a deployment).
    DeployedCopyExpiring = "DeployedCopyExpiring",
    // Issuers.
    /// The ACME account is registered.
    AccountRegistered = "AccountRegistered",
    /// The CA refused the EAB key ID or HMAC.
    EabRejected = "EABRejected",
    /// No ACME answer from the issuer's server.
    ServerUnreachable = "ServerUnreachable",
    /// Two issuers created the same account key Secret at once.
    AccountKeyRace = "AccountKeyRace",
    /// The CA refused an account key rollover.
    KeyRolloverFailed = "KeyRolloverFailed",
    /// The CA does not know the account of the key.
    AccountNotFound = "AccountNotFound",
    /// The issuer's `profile` is not one the CA's directory offers.
    UnknownProfile = "UnknownProfile",
    /// The CA kept refusing the request's nonce.
    BadNonce = "BadNonce",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_and_is_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert!(seen.insert(r.as_str()), "{r} twice");
        }
        assert_eq!(Reason::parse("Bogus"), None);
    }
}
