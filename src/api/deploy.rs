//! `DeployTarget` and `ClusterDeployTarget`: a place a certificate is copied to once it is
//! in its Secret (a cloud certificate store, Secrets of other namespaces), defined once
//! and named by any number of Certificates (`spec.deployTo`). What was deployed where is
//! in the Certificate's `status.deployments`, written by the deploy controller only.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::Condition;
use super::issuer::SecretKeySelector;
use super::time::Time;

/// Where a certificate goes: exactly one destination block.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "caas.dev",
    version = "v1alpha1",
    kind = "DeployTarget",
    namespaced,
    shortname = "deploytarget",
    printcolumn = r#"{"name":"ACM region","type":"string","jsonPath":".spec.acm.region","priority":1}"#,
    printcolumn = r#"{"name":"Vault","type":"string","jsonPath":".spec.azureKeyVault.vaultURL","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DeployTargetSpec {
    /// What happens to a remote copy (ACM) when its Certificate goes or stops naming
    /// this target: `Retain` (default: left where it is, listeners may use it) or
    /// `Delete`. Secret copies are always removed with their Certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// AWS Certificate Manager: imported, and re-imported into the same ARN on renewal
    /// (listeners of ALB, NLB and CloudFront keep using it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmTarget>,
    /// Cloudflare custom certificates of a zone: uploaded, and on renewal the same
    /// custom certificate updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareTarget>,
    /// Azure Key Vault: each certificate imported as a new version of one certificate
    /// name (Application Gateway and Front Door follow its versionless ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<KeyVaultTarget>,
    /// Google Certificate Manager: a self-managed certificate, patched on renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_certificate_manager: Option<GoogleCertificateManagerTarget>,
    /// Copies of the Secret in other namespaces, kept current and removed with the
    /// Certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_copies: Option<SecretCopiesTarget>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// The platform team's kind: same spec; its credential Secrets live in the operator's
/// namespace (`--cluster-resource-namespace`), and its Secret copies need no consent.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "caas.dev",
    version = "v1alpha1",
    kind = "ClusterDeployTarget",
    shortname = "clusterdeploytarget",
    printcolumn = r#"{"name":"ACM region","type":"string","jsonPath":".spec.acm.region","priority":1}"#,
    printcolumn = r#"{"name":"Vault","type":"string","jsonPath":".spec.azureKeyVault.vaultURL","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct ClusterDeployTargetSpec(pub DeployTargetSpec);

/// AWS Certificate Manager (`ImportCertificate`). Credentials as `route53`: keys from a
/// Secret, or none for the operator's own (IRSA, EKS Pod Identity, instance role), with
/// an optional role to assume.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AcmTarget {
    /// The region of the load balancer (CloudFront: us-east-1); default: `AWS_REGION`,
    /// else us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The access key ID as a plain string; or `accessKeyIDSecretRef`. With
    /// `secretAccessKeySecretRef`.
    #[serde(
        default,
        rename = "accessKeyID",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id: Option<String>,
    #[serde(
        default,
        rename = "accessKeyIDSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeySelector>,
    /// A role to assume (STS AssumeRole) with the credentials above or the ambient ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Tags put on the certificate at its first import (ACM refuses tags on re-import).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// An imported certificate to re-import into (adopt one listeners already use);
    /// default: a new import, whose ARN `status.deployments` keeps.
    #[serde(
        default,
        rename = "certificateARN",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_arn: Option<String>,
    /// API base URL (default: the SDK's ACM endpoint, or `AWS_ENDPOINT_URL_ACM` /
    /// `AWS_ENDPOINT_URL`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Cloudflare custom certificates (API v4 `/zones/{id}/custom_certificates`). Credentials
/// as the DNS-01 `cloudflare` block: an API token with Zone / SSL and Certificates / Edit
/// (and Zone / Zone / Read for `zoneName`), or the global API key with `email`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareTarget {
    /// The zone's ID; or `zoneName`, looked up.
    #[serde(default, rename = "zoneID", skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_secret_ref: Option<SecretKeySelector>,
    /// Legacy global API key (with `email`), instead of a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `ubiquitous` (default), `optimal` or `force`: how Cloudflare builds the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_method: Option<String>,
    /// `sni_custom` (default) or `legacy_custom`; used at the first upload.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub certificate_type: Option<String>,
    /// A custom certificate to update (adopt one already serving); default: a new
    /// upload, whose ID `status.deployments` keeps.
    #[serde(
        default,
        rename = "customCertificateID",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_certificate_id: Option<String>,
    /// API base URL (default `https://api.cloudflare.com/client/v4`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Azure Key Vault certificates (`POST {vaultURL}/certificates/{name}/import`).
/// Credentials as the DNS-01 `azureDNS` block: a client secret, else workload identity or
/// the managed identity.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyVaultTarget {
    /// `https://NAME.vault.azure.net`.
    #[serde(rename = "vaultURL")]
    pub vault_url: String,
    /// The certificate's name in the vault; default `<namespace>-<certificate>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_name: Option<String>,
    #[serde(default, rename = "tenantID", skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, rename = "clientID", skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_secret_ref: Option<SecretKeySelector>,
    /// Microsoft Entra ID login base URL (default `https://login.microsoftonline.com`).
    #[serde(
        default,
        rename = "authorityURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub authority_url: Option<String>,
    /// Tags on each imported version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Google Certificate Manager (`certificatemanager.googleapis.com/v1`), a self-managed
/// certificate. Credentials as the DNS-01 `cloudDNS` block: a service account key, else
/// the metadata server (GKE Workload Identity).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCertificateManagerTarget {
    pub project: String,
    /// `global` (default) or a region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The certificate's ID; default `<namespace>-<certificate>`.
    #[serde(
        default,
        rename = "certificateID",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_id: Option<String>,
    /// Secret and key holding a service account JSON key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_secret_ref: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// API base URL (default `https://certificatemanager.googleapis.com`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Copies of the certificate's Secret in other namespaces (type `kubernetes.io/tls`,
/// the same data), by name list and/or namespace label selector. Needs the chart's
/// `secretCopies.enabled`. A namespaced `DeployTarget` copies only into namespaces that
/// consent with the annotation `caas.dev/accept-secret-copies-from` (a comma-separated
/// list of namespaces, or `*`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretCopiesTarget {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// The copies' name; default: the source Secret's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Extra labels and annotations on the copies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Namespaces by label: all of `matchLabels` must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

impl NamespaceSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

const ONE_OF: &str = "a deploy target names exactly one of acm, cloudflare, azureKeyVault, \
                      googleCertificateManager, secretCopies";

impl DeployTargetSpec {
    /// The destination's name as `status.deployments[].destination` says it; an error
    /// naming the problem unless exactly one destination block is set.
    pub fn destination(&self) -> Result<&'static str, String> {
        let set: Vec<&'static str> = [
            (self.acm.is_some(), "acm"),
            (self.cloudflare.is_some(), "cloudflare"),
            (self.azure_key_vault.is_some(), "azureKeyVault"),
            (
                self.google_certificate_manager.is_some(),
                "googleCertificateManager",
            ),
            (self.secret_copies.is_some(), "secretCopies"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        match set.as_slice() {
            [one] => Ok(one),
            [] => Err(format!("{ONE_OF}; it names none")),
            many => Err(format!("{ONE_OF}; it names {}", many.join(" and "))),
        }
    }
}

/// A Certificate's reference to a target: `DeployTarget` (default, the Certificate's
/// namespace) or `ClusterDeployTarget`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct DeployRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl DeployRef {
    pub fn is_cluster(&self) -> bool {
        self.kind.as_deref() == Some("ClusterDeployTarget")
    }

    /// The targets of an Ingress's or Gateway's `caas.dev/deploy-to` annotation:
    /// comma-separated, `name` (a `DeployTarget` in the object's namespace) or
    /// `ClusterDeployTarget/name` (`DeployTarget/name` also reads).
    pub fn parse_list(text: &str) -> Result<Vec<DeployRef>, String> {
        let mut refs: Vec<DeployRef> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (kind, name) = match item.split_once('/') {
                None => (None, item),
                Some(("DeployTarget", name)) => (None, name),
                Some(("ClusterDeployTarget", name)) => (Some("ClusterDeployTarget"), name),
                Some((kind, _)) => {
                    return Err(format!(
                        "{item:?}: the kind is DeployTarget or ClusterDeployTarget, not {kind:?}"
                    ));
                }
            };
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid {
                return Err(format!("{item:?}: {name:?} is not a valid object name"));
            }
            let r = DeployRef {
                name: name.to_string(),
                kind: kind.map(str::to_string),
            };
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
        Ok(refs)
    }

    /// The reference a status entry's key (`DeployTarget/name`) names.
    pub fn from_key(key: &str) -> Option<DeployRef> {
        match key.split_once('/')? {
            ("DeployTarget", name) => Some(DeployRef {
                name: name.into(),
                kind: None,
            }),
            ("ClusterDeployTarget", name) => Some(DeployRef {
                name: name.into(),
                kind: Some("ClusterDeployTarget".into()),
            }),
            _ => None,
        }
    }

    /// `DeployTarget/name` or `ClusterDeployTarget/name`: the key of its status entry.
    pub fn key(&self) -> String {
        let kind = match self.is_cluster() {
            true => "ClusterDeployTarget",
            false => "DeployTarget",
        };
        format!("{kind}/{}", self.name)
    }
}

/// What the deploy controller did for one target of a Certificate.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// `DeployTarget/name` or `ClusterDeployTarget/name`.
    pub target: String,
    /// `acm`, `cloudflare`, `azureKeyVault`, `googleCertificateManager` or
    /// `secretCopies` (unset while the target is missing or invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Where the copy is (`acm:eu-west-1`); a change means a new copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The copy's identity at the destination: ACM's ARN, Cloudflare's custom
    /// certificate ID, Key Vault's versionless certificate ID, Certificate Manager's
    /// certificate name, the Secret copies' name.
    #[serde(default, rename = "remoteID", skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// Secret copies: the namespaces holding a current copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The serial number (lowercase hex) of the certificate deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub deployed_at: Option<Time>,
    /// The deployed certificate's notAfter.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub not_after: Option<Time>,
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i32>,
    /// The target's resourceVersion at the last attempt: a target changed since (its
    /// keys fixed, say) is tried again at once, whatever the backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// When the next attempt is due after a failure.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub next_attempt_time: Option<Time>,
    /// `Deployed`, with the destination's own words when it failed.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl DeploymentStatus {
    /// Whether it is (or was) Secret copies: those are removed with the Certificate.
    pub fn is_copies(&self) -> bool {
        self.destination.as_deref() == Some("secretCopies")
    }

    /// Whether its `Deployed` condition is True.
    pub fn is_deployed(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == "Deployed" && c.is_true())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_exactly_one_destination() {
        let mut spec = DeployTargetSpec::default();
        assert!(spec.destination().unwrap_err().contains("names none"));
        spec.acm = Some(AcmTarget::default());
        assert_eq!(spec.destination(), Ok("acm"));
        spec.secret_copies = Some(SecretCopiesTarget::default());
        assert!(
            spec.destination()
                .unwrap_err()
                .contains("it names acm and secretCopies")
        );
    }

    #[test]
    fn targets_read_cert_manager_style_names_and_keys_name_the_kind() {
        let spec: DeployTargetSpec = serde_json::from_value(serde_json::json!({
            "acm": {"region": "eu-west-1", "accessKeyID": "AKIA", "certificateARN": "arn:x",
                    "secretAccessKeySecretRef": {"name": "aws", "key": "secret"},
                    "tags": {"team": "shop"}}
        }))
        .unwrap();
        let acm = spec.acm.as_ref().unwrap();
        assert_eq!(acm.access_key_id.as_deref(), Some("AKIA"));
        assert_eq!(acm.certificate_arn.as_deref(), Some("arn:x"));
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["acm"]["accessKeyID"],
            "AKIA"
        );
        let r: DeployRef =
            serde_json::from_str(r#"{"name":"copies","kind":"ClusterDeployTarget"}"#).unwrap();
        assert_eq!(r.key(), "ClusterDeployTarget/copies");
        let r: DeployRef = serde_json::from_str(r#"{"name":"edge"}"#).unwrap();
        assert_eq!(r.key(), "DeployTarget/edge");
        assert_eq!(DeployRef::from_key(&r.key()), Some(r));
        assert_eq!(DeployRef::from_key("Other/x"), None);
    }

    #[test]
    fn the_deploy_to_annotation_names_targets_of_both_kinds() {
        let refs = DeployRef::parse_list(
            " edge-acm, ClusterDeployTarget/copies,DeployTarget/cdn,edge-acm ,",
        )
        .unwrap();
        let keys: Vec<String> = refs.iter().map(DeployRef::key).collect();
        assert_eq!(
            keys,
            [
                "DeployTarget/edge-acm",
                "ClusterDeployTarget/copies",
                "DeployTarget/cdn"
            ]
        );
        assert!(
            DeployRef::parse_list("Issuer/x")
                .unwrap_err()
                .contains("not \"Issuer\"")
        );
        assert!(
            DeployRef::parse_list("Bad Name")
                .unwrap_err()
                .contains("not a valid object name")
        );
        assert!(DeployRef::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn a_hand_edited_deployment_time_reads_as_unset() {
        let d: DeploymentStatus = serde_json::from_value(serde_json::json!({
            "target": "DeployTarget/edge", "destination": "acm", "deployedAt": "yesterday",
            "remoteID": "arn:aws:acm:us-east-1:1:certificate/x"
        }))
        .unwrap();
        assert_eq!(d.deployed_at, None);
        assert_eq!(
            d.remote_id.as_deref(),
            Some("arn:aws:acm:us-east-1:1:certificate/x")
        );
        assert!(!d.is_deployed());
    }
}
