//! An issuer of either kind ([`CaaSIssuer`] or [`ClusterCaaSIssuer`]) as the layers
//! below the controllers see it: its spec and status, and the namespace its Secrets
//! live in.

use kube::ResourceExt;

pub use crate::api::IssuerKind;
use crate::api::issuer::IssuerStatus;
use crate::api::{CaaSIssuer, ClusterCaaSIssuer, IssuerName, IssuerSpec};

/// An issuer of either kind, with where its Secrets live.
#[derive(Clone, Debug)]
pub struct IssuerHandle {
    pub kind: IssuerKind,
    pub name: String,
    /// The issuer's namespace (namespaced) or the cluster resource namespace (cluster).
    pub secret_namespace: String,
    pub spec: IssuerSpec,
    pub status: Option<IssuerStatus>,
    pub generation: Option<i64>,
    /// The issuer's annotations (`caas.dev/rotate-account-key`).
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl IssuerHandle {
    pub fn from_namespaced(issuer: &CaaSIssuer) -> Self {
        IssuerHandle {
            kind: IssuerKind::Namespaced,
            name: issuer.name_any(),
            secret_namespace: issuer.namespace().unwrap_or_default(),
            spec: issuer.spec.clone(),
            status: issuer.status.clone(),
            generation: issuer.metadata.generation,
            annotations: issuer.annotations().clone(),
        }
    }

    /// A cluster issuer, whose Secrets live in `cluster_resource_namespace`.
    pub fn from_cluster(issuer: &ClusterCaaSIssuer, cluster_resource_namespace: &str) -> Self {
        IssuerHandle {
            kind: IssuerKind::Cluster,
            name: issuer.name_any(),
            secret_namespace: cluster_resource_namespace.to_string(),
            spec: issuer.spec.0.clone(),
            status: issuer.status.clone(),
            generation: issuer.metadata.generation,
            annotations: issuer.annotations().clone(),
        }
    }

    /// Kind and name, as status names the issuer (`issuedBy`, `issuingWith`, the
    /// order's `issuer`).
    pub fn issuer_name(&self) -> IssuerName {
        IssuerName::new(self.kind, self.name.clone())
    }

    /// Whether this is the issuer `name` names.
    pub fn is(&self, name: &IssuerName) -> bool {
        self.kind == name.kind && self.name == name.name
    }

    /// `CaaSIssuer/name` or `ClusterCaaSIssuer/name`, as written in Secret annotations:
    /// [`Self::issuer_name`]'s `Display`.
    pub fn display(&self) -> String {
        self.issuer_name().to_string()
    }

    /// The issuer's key in caches and [`Memory`](super::memory::Memory).
    pub fn cache_key(&self) -> String {
        format!("{}/{}", self.secret_namespace, self.display())
    }

    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| crate::api::conditions::find(&s.conditions, "Ready"))
            .is_some_and(|c| c.is_true())
    }

    /// What about the issuer changes the certificates it makes (for the request hash).
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}",
            self.display(),
            self.spec.server,
            self.spec.profile.as_deref().unwrap_or("")
        )
    }
}
