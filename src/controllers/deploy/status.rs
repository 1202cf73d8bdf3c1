//! `status.deployments`, written by server-side apply under the deploy controller's own
//! field manager: the certificate controller's forced applies never send the field, so
//! neither removes the other's fields.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::{DeployContext, FIELD_MANAGER, source_key};
use crate::api::{Certificate, DeploymentStatus};

/// What this controller last wrote per Certificate (`namespace/name`): the
/// resourceVersion of the write and the entries. The watch cache may still hold an older
/// copy when the next reconcile starts; acting on it would import an ACM certificate
/// twice.
#[derive(Default)]
pub struct Written(
    std::sync::Mutex<std::collections::HashMap<String, (u64, Vec<DeploymentStatus>)>>,
);

impl Written {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u64, Vec<DeploymentStatus>)>>
    {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Certificate's entries: the cached copy's, or what was written after it.
    pub fn entries(&self, cert: &Certificate) -> Vec<DeploymentStatus> {
        let cached = cert
            .status
            .as_ref()
            .map(|s| s.deployments.clone())
            .unwrap_or_default();
        let version = cert
            .resource_version()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        match self.lock().get(&source_key(cert)) {
            Some((written, entries)) if *written > version => entries.clone(),
            _ => cached,
        }
    }

    /// Whether the last write for this Certificate failed (its entries are held here
    /// only): the next reconcile writes them again even when nothing changed.
    pub fn pending(&self, cert: &Certificate) -> bool {
        self.lock()
            .get(&source_key(cert))
            .is_some_and(|(version, _)| *version == u64::MAX)
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Applies `next` unless it is what the Certificate already says.
pub(super) async fn apply(
    d: &DeployContext,
    cert: &Certificate,
    current: &[DeploymentStatus],
    next: &[DeploymentStatus],
) -> Result<(), kube::Error> {
    if current == next && !d.written.pending(cert) {
        return Ok(());
    }
    let api: Api<Certificate> =
        Api::namespaced(d.ctx.client.clone(), &cert.namespace().unwrap_or_default());
    // An empty list is sent as no status at all: the manager's entries are removed.
    let status = match next.is_empty() {
        true => serde_json::json!({}),
        false => serde_json::json!({ "deployments": next }),
    };
    let body = serde_json::json!({
        "apiVersion": "caas.dev/v1alpha1",
        "kind": "Certificate",
        "status": status,
    });
    let written = api
        .patch_status(
            &cert.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .inspect_err(|_| {
            // Not on record: what was done (an ACM ARN) is kept here until a write
            // succeeds, so the retry re-imports into it instead of importing again.
            d.written
                .lock()
                .insert(source_key(cert), (u64::MAX, next.to_vec()));
        })?;
    if let Some(version) = written
        .resource_version()
        .and_then(|v| v.parse::<u64>().ok())
    {
        d.written
            .lock()
            .insert(source_key(cert), (version, next.to_vec()));
    }
    Ok(())
}
