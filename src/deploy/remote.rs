//! The cloud destinations behind one type: where a target puts its copy, signing in
//! with its credentials, deploying a bundle and deleting a copy. Secret copies are not
//! here: they are Kubernetes objects of their own ([`super::copies`]).

use super::acm::Acm;
use super::cloudflare::Cloudflare;
use super::google_cm::CertificateManager;
use super::key_vault::KeyVault;
use super::{Bundle, DeployError, Deployed, acm, cloudflare, google_cm, key_vault};
use crate::api::deploy::DeployTargetSpec;

/// The tag every ACM import gets, naming its Certificate (`namespace/name`): an ARN
/// whose status write was lost can be found by it.
pub const ACM_TAG: &str = "caas.dev/certificate";

/// The Certificate a copy is of: `namespace/name` (ACM's tag; Key Vault's and
/// Certificate Manager's default names are made of it).
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub key: &'a str,
}

/// A signed-in cloud destination.
pub enum Remote {
    Acm(Acm, std::collections::BTreeMap<String, String>),
    Cloudflare(Cloudflare),
    KeyVault(KeyVault),
    CertificateManager(CertificateManager),
}

/// Where a target puts the Certificate's copy (a change means a new copy); `None`: not
/// a cloud destination.
pub fn location(spec: &DeployTargetSpec, source: Source<'_>) -> Option<String> {
    let name = source.key;
    if let Some(cfg) = &spec.acm {
        return Some(acm::location(cfg));
    }
    if let Some(cfg) = &spec.cloudflare {
        return Some(cloudflare::location(cfg));
    }
    if let Some(cfg) = &spec.azure_key_vault {
        return Some(key_vault::location(cfg, name));
    }
    (spec.google_certificate_manager.as_ref()).map(|cfg| google_cm::location(cfg, name))
}

/// The one remote certificate a target names outright (ACM's `certificateARN`,
/// Cloudflare's `customCertificateID`, a Key Vault `certificateName`, a Certificate
/// Manager `certificateID`): several Certificates naming such a target would overwrite
/// each other.
pub fn names_one(spec: &DeployTargetSpec) -> Option<&str> {
    (spec.acm.as_ref().and_then(|c| c.certificate_arn.as_deref()))
        .or(spec
            .cloudflare
            .as_ref()
            .and_then(|c| c.custom_certificate_id.as_deref()))
        .or(spec
            .azure_key_vault
            .as_ref()
            .and_then(|c| c.certificate_name.as_deref()))
        .or((spec.google_certificate_manager.as_ref()).and_then(|c| c.certificate_id.as_deref()))
}

/// An existing copy the target adopts by its ID (ACM ARN, Cloudflare ID): never made,
/// so never deleted, by this operator (nor what a Cloudflare PATCH made of it).
pub fn adopted(spec: &DeployTargetSpec) -> Option<&str> {
    (spec.acm.as_ref().and_then(|c| c.certificate_arn.as_deref())).or(spec
        .cloudflare
        .as_ref()
        .and_then(|c| c.custom_certificate_id.as_deref()))
}

/// The remote certificate a deployment writes into: ACM keeps an ARN, so an adopted
/// one always; Cloudflare answers each PATCH with a new ID, so the one this place
/// holds now (`deployed`: the entry's, at the same location), else the adopted one.
pub fn prior(spec: &DeployTargetSpec, deployed: Option<&str>) -> Option<String> {
    let adopted = adopted(spec);
    let chosen = match spec.cloudflare.is_some() {
        true => deployed.or(adopted),
        false => adopted.or(deployed),
    };
    chosen.map(str::to_string)
}

impl Remote {
    /// Signs in to the target's destination with its credentials (Secrets in
    /// `namespace`), or the operator's own identity where `ambient` allows it.
    pub async fn connect(
        client: &kube::Client,
        namespace: &str,
        spec: &DeployTargetSpec,
        ambient: bool,
        source: Source<'_>,
    ) -> Result<Remote, DeployError> {
        let name = source.key;
        if let Some(cfg) = &spec.acm {
            let mut tags = cfg.tags.clone();
            tags.insert(ACM_TAG.into(), source.key.to_string());
            let acm = Acm::new(client, namespace, cfg, ambient).await?;
            return Ok(Remote::Acm(acm, tags));
        }
        if let Some(cfg) = &spec.cloudflare {
            return Ok(Remote::Cloudflare(
                Cloudflare::new(client, namespace, cfg).await?,
            ));
        }
        if let Some(cfg) = &spec.azure_key_vault {
            let vault = KeyVault::new(client, namespace, cfg, ambient, name).await?;
            return Ok(Remote::KeyVault(vault));
        }
        let Some(cfg) = &spec.google_certificate_manager else {
            return Err(DeployError::invalid("not a cloud destination"));
        };
        let google = CertificateManager::new(client, namespace, cfg, ambient, name).await?;
        Ok(Remote::CertificateManager(google))
    }

    /// Puts `bundle` at the destination: into `prior` (the copy made before, or the one
    /// adopted) where the destination has IDs of its own, else where the target names.
    /// `replaced`: the notAfter of another certificate deployed there before, if any.
    pub async fn deploy(
        &self,
        bundle: &Bundle,
        (prior, adopted): (Option<&str>, bool),
        replaced: Option<jiff::Timestamp>,
    ) -> Result<Deployed, DeployError> {
        match self {
            Remote::Acm(acm, tags) => acm.deploy(bundle, prior, adopted, tags).await,
            Remote::Cloudflare(cf) => cf.deploy(bundle, (prior, adopted), replaced).await,
            Remote::KeyVault(kv) => kv.deploy(bundle).await,
            Remote::CertificateManager(cm) => cm.deploy(bundle).await,
        }
    }

    /// Deletes the copy at `remote_id` (gone already: fine); a copy in use is refused
    /// by the destination and that refusal returned, never forced.
    pub async fn delete(&self, remote_id: &str) -> Result<(), DeployError> {
        match self {
            Remote::Acm(acm, _) => acm.delete(remote_id).await,
            Remote::Cloudflare(cf) => cf.delete(remote_id).await,
            Remote::KeyVault(kv) => kv.delete(remote_id).await,
            Remote::CertificateManager(cm) => cm.delete(remote_id).await,
        }
    }
}
