//! Deploying a certificate beyond its Secret: the destinations' calls (AWS Certificate
//! Manager, Cloudflare custom certificates, Azure Key Vault, Google Certificate Manager,
//! Secret copies in other namespaces; [`remote`] puts the cloud ones behind one type),
//! each taking the [`Bundle`] read from the
//! TLS Secret and answering in the destination's own words. What to deploy when is
//! decided in [`crate::decide::deploy`]; the deploy controller carries it out.
//!
//! Builds on [`crate::api`], [`crate::shared`], [`crate::cloud`] and the pure
//! [`crate::decide`] (serial comparison) only.

pub mod acm;
pub mod cloudflare;
pub mod copies;
pub mod google_cm;
pub mod key_vault;
pub mod remote;
pub mod rest;

pub(crate) use crate::decide::deploy::same_serial;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::api::Reason;
use crate::pki::{self, CertInfo};

/// The TLS Secret's certificate, split as destinations want it. Its `Debug` leaves out
/// the key and the Secret's data.
#[derive(Clone)]
pub struct Bundle {
    /// `tls.crt` as written: leaf first, then intermediates.
    pub chain_pem: String,
    pub leaf_pem: String,
    /// The intermediates (empty when the CA sent none).
    pub intermediates_pem: String,
    pub key_pem: String,
    pub info: CertInfo,
    /// Every key of the Secret (`tls.crt`, `tls.key`, `ca.crt`, extra formats).
    pub data: BTreeMap<String, ByteString>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .field("key_pem", &"(redacted)")
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// From a TLS Secret as the API server has it (not the watch cache's slim copy).
    pub fn from_secret(secret: &Secret) -> Result<Bundle, String> {
        let data = secret.data.clone().unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| format!("the Secret has no {key}"))
        };
        let chain_pem = text("tls.crt")?;
        let key_pem = text("tls.key")?;
        let info = pki::parse_chain(&chain_pem).map_err(|e| e.to_string())?;
        let blocks = pem_blocks(&chain_pem);
        let leaf_pem = blocks.first().cloned().unwrap_or_default();
        let intermediates_pem = blocks[1.min(blocks.len())..].concat();
        Ok(Bundle {
            chain_pem,
            leaf_pem,
            intermediates_pem,
            key_pem,
            info,
            data,
        })
    }
}

/// The `CERTIFICATE` blocks of a PEM text, each with its END line and a newline.
fn pem_blocks(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let (Some(start), Some(end)) = (rest.find(BEGIN), rest.find(END)) {
        if end < start {
            rest = &rest[end + END.len()..];
            continue;
        }
        blocks.push(format!("{}\n", &rest[start..end + END.len()]));
        rest = &rest[end + END.len()..];
    }
    blocks
}

/// What a deployment became.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deployed {
    /// The copy's identity at the destination (ACM: its ARN; copies: the Secret name).
    pub remote_id: String,
    /// Secret copies: the namespaces holding one.
    pub namespaces: Vec<String>,
    /// Whether anything was written (false: the destination already had this serial).
    pub wrote: bool,
}

impl Deployed {
    /// The destination already held this certificate at `remote_id`.
    pub fn unchanged(remote_id: &str) -> Deployed {
        Deployed {
            remote_id: remote_id.to_string(),
            ..Default::default()
        }
    }

    /// Written to `remote_id`.
    pub fn wrote(remote_id: &str) -> Deployed {
        Deployed {
            remote_id: remote_id.to_string(),
            namespaces: Vec::new(),
            wrote: true,
        }
    }
}

/// The value of a target's credential Secret key (in `namespace`), trimmed.
pub(crate) async fn secret_value(
    client: &kube::Client,
    namespace: &str,
    r: &crate::api::issuer::SecretKeySelector,
    what: &str,
) -> Result<String, DeployError> {
    let raw = crate::shared::read_secret_key(client, namespace, &r.name, &r.key).await;
    match raw.map_err(|e| DeployError::kube(&e))? {
        Some(b) => Ok(String::from_utf8_lossy(&b).trim().to_string()),
        None => Err(DeployError::invalid(format!(
            "the {what} Secret {namespace}/{} (key {:?}) does not exist",
            r.name, r.key
        ))),
    }
}

/// A target without credentials of its own where the operator's identity may not be
/// lent (a namespaced target without `--issuer-ambient-credentials`).
pub(crate) fn no_ambient(block: &str, field: &str) -> DeployError {
    DeployError::Refused {
        reason: Reason::NotPermitted,
        words: format!(
            "{block} names no credentials, and a namespaced DeployTarget may not use the \
             operator's own identity: give it {field}, or start the operator with \
             --issuer-ambient-credentials"
        ),
    }
}

/// Why a deployment failed, in the destination's words (never a credential).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The destination or the target's setup refused: fix something, then it goes.
    #[error("{words}")]
    Refused { reason: Reason, words: String },
    /// No answer, or "not now" (5xx, throttling): retried as is.
    #[error("{0}")]
    Unreachable(String),
}

impl DeployError {
    pub fn reason(&self) -> Reason {
        match self {
            DeployError::Refused { reason, .. } => *reason,
            DeployError::Unreachable(_) => Reason::DestinationUnreachable,
        }
    }

    pub fn refused(words: impl Into<String>) -> Self {
        DeployError::Refused {
            reason: Reason::DestinationRefused,
            words: words.into(),
        }
    }

    pub fn invalid(words: impl Into<String>) -> Self {
        DeployError::Refused {
            reason: Reason::InvalidTarget,
            words: words.into(),
        }
    }

    /// A Kubernetes API error: the API server's words, retried.
    pub fn kube(e: &kube::Error) -> Self {
        DeployError::Unreachable(format!("Kubernetes API: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_splits_into_leaf_and_intermediates() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(pem);
        assert_eq!(blocks.len(), 3);
        assert_eq!(
            blocks[0],
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
        );
        assert!(
            blocks[1..]
                .concat()
                .starts_with("-----BEGIN CERTIFICATE-----\nBBB")
        );
        assert!(pem_blocks("no pem").is_empty());
    }
}
