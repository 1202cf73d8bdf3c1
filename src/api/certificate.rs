//! `Certificate`: the TLS certificate a user wants in a Secret, kept valid.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::acme::{ChallengeState, ChallengeType, OrderState};
use super::conditions::Condition;

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
    /// Requested lifetime (e.g. `2160h`): sent as the order's `notAfter` (unless the
    /// issuer sets `enableDurationFeature: false`); the CA's default lifetime when unset.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,
    /// Labels and annotations to put on the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,
    /// Extra keys in the Secret: `CombinedPEM` (`tls-combined.pem`), `DER` (`key.der`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_output_formats: Vec<OutputFormat>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the operator will renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// Increases by one with each certificate written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// The last `caas.dev/renew` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_renewal: Option<String>,
    /// The issuer the certificate in the Secret came from (`CaaSIssuer/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<String>,
    /// With `fallbackIssuerRefs`: the issuer the issuance in progress uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuing_with: Option<String>,
    /// With `fallbackIssuerRefs`: when issuance from `issuingWith` first failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuing_with_failing_since: Option<String>,
    /// The ACME order in progress (one at a time): a restart resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    pub url: String,
    /// The issuer the order was placed with (`CaaSIssuer/name`): its solvers clean up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    #[serde(rename = "type")]
    pub type_: ChallengeType,
    /// The identifier (DNS name, `*.` for wildcards) this challenge proves.
    pub dns_name: String,
    pub token: String,
    /// The key authorization the operator serves (public: token + account key thumbprint).
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
