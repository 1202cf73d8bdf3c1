//! What every layer above [`crate::api`] may use, and nothing in here imports a layer
//! above it: the one field manager of the operator's writes, Secret reads, the issuer
//! handle (an issuer of either kind with where its Secrets live), Kubernetes Events and
//! the per-object memory of a leadership term (with its injectable clock).
//!
//! `acme`, `solvers` and `controllers` all build on this; it builds on `api` (and
//! `pki`) only.

pub mod cached_secret;
pub mod events;
pub mod finalizer;
pub mod issuer;
pub mod memory;
pub mod patch;
pub mod settings;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

pub use issuer::{IssuerHandle, IssuerKind};

/// The one field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "caas-operator";

/// The field manager of the writes `kubectl caas` makes for its user (`renew`).
pub const PLUGIN_FIELD_MANAGER: &str = "kubectl-caas";

/// Reads `key` of Secret `name`; `Ok(None)` when the Secret or key is missing.
pub async fn read_secret_key(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0))
}
