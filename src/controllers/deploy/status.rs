//! `status.deployments`, written by server-side apply under the deploy controller's own
//! field manager: the certificate controller's forced applies never send the field, so
//! neither removes the other's fields.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::FIELD_MANAGER;
use crate::api::{Certificate, DeploymentStatus};
use crate::controllers::Context;

/// Applies `next` unless it is what the Certificate already says.
pub(super) async fn apply(
    ctx: &Context,
    cert: &Certificate,
    current: &[DeploymentStatus],
    next: &[DeploymentStatus],
) -> Result<(), kube::Error> {
    if current == next {
        return Ok(());
    }
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
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
    api.patch_status(
        &cert.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}
