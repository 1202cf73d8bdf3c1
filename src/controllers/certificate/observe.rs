//! Observe: every read a reconcile makes, from the watched stores. The API server is
//! asked directly only when a stored copy is older than what this process wrote itself
//! (its watch event has not arrived yet): acting on the older copy would undo the write.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::key_of;
use crate::api::Certificate;
use crate::controllers::Context;
use crate::shared::IssuerHandle;

/// What one reconcile works from.
pub struct Observed {
    pub cert: Arc<Certificate>,
    /// The TLS Secret, when it exists and the operator manages it.
    pub secret: Option<Secret>,
    /// The issuer the Certificate names, when it exists.
    pub issuer: Option<IssuerHandle>,
    /// Its `fallbackIssuerRefs`, in order, each when it exists.
    pub fallbacks: Vec<Option<IssuerHandle>>,
}

pub async fn observe(ctx: &Context, cert: Arc<Certificate>) -> Result<Observed, kube::Error> {
    let cert = fresh(ctx, cert).await?;
    // After a restart status may hold challenges this replica has not indexed yet.
    ctx.index.update(&cert);
    let issuer = ctx.stores.issuer_of(&cert, &ctx.settings).await?;
    let mut fallbacks = Vec::new();
    for r in &cert.spec.fallback_issuer_refs {
        fallbacks.push(ctx.stores.issuer_by_ref(&cert, r, &ctx.settings).await?);
    }
    let ns = cert.namespace().unwrap_or_default();
    let mut secret = managed_secret(ctx, &cert, &ns, &cert.spec.secret_name).await?;
    let first_look = cert
        .status
        .as_ref()
        .is_none_or(|s| s.revision.is_none() && s.order.is_none());
    if secret.is_none() && first_look {
        // A Secret made before (by hand, or by another tool) is not in the store of the
        // Secrets we manage: it may hold a good certificate to take over.
        secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&cert.spec.secret_name)
            .await?;
    }
    Ok(Observed {
        cert,
        secret,
        issuer,
        fallbacks,
    })
}

fn version(obj: &impl ResourceExt) -> Option<u64> {
    obj.resource_version().and_then(|v| v.parse().ok())
}

/// The Certificate as the API server has it now when the watched copy is older than our
/// own last status write.
async fn fresh(ctx: &Context, cert: Arc<Certificate>) -> Result<Arc<Certificate>, kube::Error> {
    let key = key_of(&cert);
    let written = ctx.memory.written_status(&key);
    match (written, version(&*cert)) {
        (Some(w), Some(c)) if c >= w => {
            ctx.memory.caught_up(&key);
            Ok(cert)
        }
        (None, _) => Ok(cert),
        _ => {
            // What we wrote is what the API server has (a change by anyone else comes
            // with its own watch event and a newer version).
            if let Some(written) = ctx.memory.written_certificate(&key) {
                return Ok(written);
            }
            let api: Api<Certificate> =
                Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
            Ok(api
                .get_opt(&cert.name_any())
                .await?
                .map(Arc::new)
                .unwrap_or(cert))
        }
    }
}

/// A Secret the operator writes for `cert` (TLS, next key): from the store of managed
/// Secrets, or from the API server when the store has not caught up with our own write.
pub async fn managed_secret(
    ctx: &Context,
    cert: &Certificate,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, kube::Error> {
    let stored = ctx.stores.secret(namespace, name).await?;
    let written = ctx.memory.written_secret(&key_of(cert), name);
    let stale = match (&stored, written) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(s), Some(w)) => version(s).is_none_or(|v| v < w),
    };
    if !stale {
        if written.is_some() {
            // The store has caught up with our write: nothing to remember (at 10,000
            // Certificates these entries were 3 MiB). The watch's relists are of the most
            // recent versions (kube's default `ListSemantic::MostRecent`), so the store
            // never goes back to an older one.
            ctx.memory.set_written_secret(&key_of(cert), name, None);
        }
        return Ok(stored);
    }
    let current = Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await?;
    if current.is_none() {
        // Deleted since we wrote it: the store is right after all.
        ctx.memory.set_written_secret(&key_of(cert), name, None);
    }
    Ok(current)
}
