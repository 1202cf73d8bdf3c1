//! `Certificate`: the TLS certificate a user wants in a Secret, kept valid.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::acme::{ChallengeState, ChallengeType, OrderState};
use super::conditions::Condition;
use super::deploy::{DeployRef, DeploymentStatus};
use super::issuer_name::IssuerName;
use super::time::Time;

#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "caas.dev",
    version = "v1alpha1",
    kind = "Certificate",
    namespaced,
    status = "CertificateStatus",
    shortname = "caascert",
    shortname = "caascerts",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.secretName"}"#,
    printcolumn = r#"{"name":"Issuer","type":"string","jsonPath":".spec.issuerRef.name"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.notAfter"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Name of the `kubernetes.io/tls` Secret to write.
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    /// Issuers to fall back on, in order, when issuance from `issuerRef` has failed for
    /// `fallbackAfter` or it is not Ready. The next renewal starts with `issuerRef` again;
    /// `status.issuedBy` says where the certificate came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_issuer_refs: Vec<IssuerRef>,
    /// How long issuance from an issuer may fail before the next fallback issuer is tried
    /// (e.g. `6h`; default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_after: Option<String>,
    /// DNS names (SANs). Wildcards (`*.example.com`) need a DNS-01 solver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// IP address SANs, where the CA supports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Subject common name; must be one of the names. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Requested lifetime (e.g. `2160h`): sent as the order's `notAfter` only when the
    /// issuer sets `enableDurationFeature: true`; otherwise the CA's default lifetime.
    /// `status.notBefore`/`notAfter` show what the CA gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Renew this long before expiry (e.g. `720h`). Default: 30 days, or a third of the
    /// lifetime for short certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
    /// Renew when this percentage of the lifetime is left (1-99); instead of `renewBefore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before_percentage: Option<u8>,
    /// ACME profile for this Certificate's orders (e.g. `shortlived`), instead of the
    /// issuer's `profile`; checked against the profiles the CA offers before any order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,
    /// Labels and annotations to put on the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// Extra keys in the Secret: `CombinedPEM` (`tls-combined.pem`), `DER` (`key.der`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_output_formats: Vec<OutputFormat>,
    /// Where the certificate goes besides its Secret (`DeployTarget`s, by default, or
    /// `ClusterDeployTarget`s); `status.deployments` says what reached each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub deploy_to: Vec<DeployRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct IssuerRef {
    pub name: String,
    /// `CaaSIssuer` (default) or `ClusterCaaSIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl IssuerRef {
    pub fn is_cluster(&self) -> bool {
        self.kind.as_deref() == Some("ClusterCaaSIssuer")
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "ECDSA")]
    Ecdsa,
    #[serde(rename = "RSA")]
    Rsa,
    Ed25519,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum KeyEncoding {
    #[serde(rename = "PKCS1")]
    Pkcs1,
    #[default]
    #[serde(rename = "PKCS8")]
    Pkcs8,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RotationPolicy {
    #[default]
    Always,
    Never,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeySpec {
    /// `ECDSA` (default), `RSA` or `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<KeyAlgorithm>,
    /// ECDSA: 256 (default) or 384. RSA: 2048 (default), 3072 or 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// `PKCS1` or `PKCS8` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<KeyEncoding>,
    /// `Always` (default): a new key for each certificate. `Never`: reuse the Secret's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<RotationPolicy>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct OutputFormat {
    /// `CombinedPEM` or `DER`.
    #[serde(rename = "type")]
    pub type_: OutputFormatType,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum OutputFormatType {
    #[serde(rename = "CombinedPEM")]
    CombinedPem,
    #[serde(rename = "DER")]
    Der,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub not_before: Option<Time>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub not_after: Option<Time>,
    /// When the operator will renew.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub renewal_time: Option<Time>,
    /// Increases by one with each certificate written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub last_failure_time: Option<Time>,
    /// The last `caas.dev/renew` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_renewal: Option<String>,
    /// The issuer the certificate in the Secret came from (`CaaSIssuer/name`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub issued_by: Option<IssuerName>,
    /// With `fallbackIssuerRefs`: the issuer the issuance in progress uses.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub issuing_with: Option<IssuerName>,
    /// With `fallbackIssuerRefs`: when issuance from `issuingWith` first failed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub issuing_with_failing_since: Option<Time>,
    /// The ACME order in progress (one at a time): a restart resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderStatus>,
    /// One entry per target of `spec.deployTo`: what was deployed there, and whether
    /// the last attempt failed (`Deployed`). Written by the deploy controller only
    /// (its own field manager); the certificate controller never sends it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["target"]))]
    pub deployments: Vec<DeploymentStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    pub url: String,
    /// The issuer the order was placed with (`CaaSIssuer/name`): its solvers clean up.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub issuer: Option<IssuerName>,
    /// ACME order state: `pending`, `ready`, `processing`, `valid`, `invalid`.
    pub state: OrderState,
    /// Fingerprint of the request (names, key settings) the order was made for: an
    /// order for an older spec is abandoned.
    #[serde(default)]
    pub request_hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ChallengeStatus>,
    /// When the order's state or one of its challenges' states last changed: how long
    /// the CA (or DNS) has kept the operator waiting. Polls grow sparser with it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub state_since: Option<Time>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    #[serde(rename = "type")]
    pub type_: ChallengeType,
    /// The identifier (DNS name, `*.` for wildcards) this challenge proves.
    pub dns_name: String,
    /// The challenge's token (its URL for dns-persist-01, which has none).
    pub token: String,
    /// The key authorization the operator serves (public: token + account key thumbprint);
    /// for dns-persist-01, the TXT record's value.
    #[serde(default)]
    pub key: String,
    /// ACME challenge state: `pending`, `processing`, `valid`, `invalid`.
    pub state: ChallengeState,
    /// The CA's error, when it rejected the challenge; or, while `waitingForDNS`, what the
    /// operator waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The TXT record is published but not yet served by the zone's server: the CA is
    /// not asked to validate until it is.
    #[serde(
        default,
        rename = "waitingForDNS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub waiting_for_dns: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IssuerKind;
    use serde_json::json;

    /// A status as the operator writes it (and older versions wrote it, as strings).
    fn written() -> serde_json::Value {
        json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Issued", "message": "issued",
                "lastTransitionTime": "2026-11-29T10:00:00.123456789Z", "observedGeneration": 2
            }],
            "notBefore": "2026-11-29T09:59:00Z",
            "notAfter": "2027-02-27T09:59:00Z",
            "renewalTime": "2027-01-28T03:12:45.5Z",
            "revision": 3,
            "failedIssuanceAttempts": 1,
            "lastFailureTime": "2026-11-29T09:00:00Z",
            "issuedBy": "ClusterCaaSIssuer/backup",
            "issuingWith": "CaaSIssuer/ca",
            "issuingWithFailingSince": "2026-11-28T09:00:00Z",
            "order": {
                "url": "https://ca/order/1", "issuer": "CaaSIssuer/ca", "state": "pending",
                "requestHash": "h", "stateSince": "2026-11-29T09:30:00Z"
            }
        })
    }

    #[test]
    fn a_status_written_before_reads_typed_and_writes_the_same() {
        let status: CertificateStatus = serde_json::from_value(written()).unwrap();
        let t = |s: &str| Some(Time(s.parse().unwrap()));
        assert_eq!(status.not_after, t("2027-02-27T09:59:00Z"));
        assert_eq!(status.renewal_time, t("2027-01-28T03:12:45.5Z"));
        assert_eq!(
            status.conditions[0].last_transition_time,
            t("2026-11-29T10:00:00.123456789Z")
        );
        assert_eq!(
            status.issued_by,
            Some(IssuerName::new(IssuerKind::Cluster, "backup"))
        );
        let order = status.order.as_ref().unwrap();
        assert_eq!(
            order.issuer,
            Some(IssuerName::new(IssuerKind::Namespaced, "ca"))
        );
        assert_eq!(order.state_since, t("2026-11-29T09:30:00Z"));
        assert_eq!(serde_json::to_value(&status).unwrap(), written());
        // Byte for byte, too.
        let text = serde_json::to_string(&written()).unwrap();
        let again: CertificateStatus = serde_json::from_str(&text).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&again).unwrap()).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }

    #[test]
    fn bad_values_read_as_none_and_the_certificate_still_reads() {
        let mut status = written();
        for key in [
            "notBefore",
            "notAfter",
            "renewalTime",
            "lastFailureTime",
            "issuingWithFailingSince",
        ] {
            status[key] = json!("last tuesday");
        }
        status["issuedBy"] = json!("backup");
        status["issuingWith"] = json!("Issuer/ca");
        status["order"]["issuer"] = json!(42);
        status["order"]["stateSince"] = json!("");
        status["conditions"][0]["lastTransitionTime"] = json!("now");
        let cert: Certificate = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate",
            "metadata": { "name": "web", "namespace": "ns" },
            "spec": { "secretName": "web-tls", "issuerRef": { "name": "ca" } },
            "status": status,
        }))
        .expect("a Certificate with bad status values still reads");
        let s = cert.status.unwrap();
        assert_eq!(
            (
                s.not_before,
                s.not_after,
                s.renewal_time,
                s.last_failure_time
            ),
            (None, None, None, None)
        );
        assert_eq!(s.issuing_with_failing_since, None);
        assert_eq!((s.issued_by, s.issuing_with), (None, None));
        let order = s.order.unwrap();
        assert_eq!((order.issuer, order.state_since), (None, None));
        assert_eq!(s.conditions[0].last_transition_time, None);
        assert_eq!(s.conditions[0].reason, "Issued");
        assert_eq!(s.revision, Some(3));
    }
}
