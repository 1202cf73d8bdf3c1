//! Finalizers on Certificates, added and removed by JSON patch: appending cannot drop
//! another controller's finalizer, and removal tests the entry it removes (so a list
//! changed in between makes the patch fail and the caller retry).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, TestOperation};
use kube::ResourceExt;
use kube::api::{Api, Patch};

use crate::api::Certificate;

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

async fn patch(
    api: &Api<Certificate>,
    name: &str,
    ops: Vec<PatchOperation>,
) -> Result<(), kube::Error> {
    api.patch(
        name,
        &super::patch::operator_params(),
        &Patch::<()>::Json(json_patch::Patch(ops)),
    )
    .await?;
    Ok(())
}

/// Adds `finalizer` (reading the Certificate as it is now: the cached copy may predate
/// another controller's finalizer).
pub async fn ensure(
    client: &kube::Client,
    cert: &Certificate,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api: Api<Certificate> =
        Api::namespaced(client.clone(), &cert.namespace().unwrap_or_default());
    let current = api.get(&cert.name_any()).await?;
    if current.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let value = serde_json::Value::String(finalizer.into());
    // Creating the list can only race with another first finalizer in the instant
    // between GET and PATCH (then the patch fails and the caller retries).
    let add = match current.metadata.finalizers {
        Some(_) => AddOperation {
            path: pointer(&["metadata", "finalizers", "-"]),
            value,
        },
        None => AddOperation {
            path: pointer(&["metadata", "finalizers"]),
            value: serde_json::Value::Array(vec![value]),
        },
    };
    patch(&api, &cert.name_any(), vec![PatchOperation::Add(add)]).await
}

/// Removes `finalizer` if the Certificate still has it.
pub async fn remove(
    client: &kube::Client,
    cert: &Certificate,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api: Api<Certificate> =
        Api::namespaced(client.clone(), &cert.namespace().unwrap_or_default());
    let Some(current) = api.get_opt(&cert.name_any()).await? else {
        return Ok(());
    };
    let Some(index) = current.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(());
    };
    let path = pointer(&["metadata", "finalizers", &index.to_string()]);
    let ops = vec![
        PatchOperation::Test(TestOperation {
            path: path.clone(),
            value: serde_json::Value::String(finalizer.into()),
        }),
        PatchOperation::Remove(RemoveOperation { path }),
    ];
    patch(&api, &cert.name_any(), ops).await
}
