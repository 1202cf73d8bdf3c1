//! HTTP-01: the operator answers `/.well-known/acme-challenge/<token>` itself.
//!
//! Answers come from the watched Certificates' status (each challenge's token and key
//! authorization), so any replica can answer. For each challenge the operator creates,
//! in the Certificate's namespace, a temporary Ingress routing exactly that path to a
//! selector-less Service whose Endpoints lead to the operator: no pod per challenge.
//! All three are labelled and owned by the Certificate, and deleted when the challenge
//! ends (and by a sweep after a crash).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::issuer::Http01Solver;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};

pub const COMPONENT: &str = "http01-solver";
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";
const FIELD_MANAGER: &str = "caas-operator";

/// The key authorization for `token`, from any watched Certificate's current order.
pub fn key_authorization(store: &Store<Certificate>, token: &str) -> Option<String> {
    store.state().iter().find_map(|cert| {
        cert.status
            .as_ref()?
            .order
            .as_ref()?
            .challenges
            .iter()
            .find(|c| c.type_ == "http-01" && c.token == token && !c.key.is_empty())
            .map(|c| c.key.clone())
    })
}

async fn answer(
    State(store): State<Store<Certificate>>,
    Path(token): Path<String>,
) -> (StatusCode, String) {
    match key_authorization(&store, &token) {
        Some(key) => (StatusCode::OK, key),
        None => (
            StatusCode::NOT_FOUND,
            "unknown challenge token\n".to_string(),
        ),
    }
}

/// The solver listener's routes.
pub fn router(store: Store<Certificate>) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(store)
}

/// Serves HTTP-01 answers on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    store: Store<Certificate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP-01 solver listening");
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Name of the temporary objects for one challenge (a DNS-1035 label).
pub fn resource_name(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("caas-solver-{hex}")
}

/// Where the temporary Service sends traffic: the operator's address and solver port.
#[derive(Clone, Copy, Debug)]
pub struct SolverEndpoint {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

fn labels(cert: &Certificate) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (COMPONENT_LABEL.to_string(), COMPONENT.to_string()),
        (CERTIFICATE_LABEL.to_string(), cert.name_any()),
    ])
}

fn owner(cert: &Certificate) -> OwnerReference {
    cert.controller_owner_ref(&())
        .expect("a stored Certificate has a name and uid")
}

/// Creates (or updates) the temporary Service, Endpoints and Ingress for one challenge.
pub async fn present(
    client: &kube::Client,
    cert: &Certificate,
    solver: &Http01Solver,
    dns_name: &str,
    token: &str,
    endpoint: SolverEndpoint,
) -> Result<(), kube::Error> {
    let ns = cert.namespace().unwrap_or_default();
    let name = resource_name(token);
    let labels = labels(cert);
    let owner = owner(cert);
    let pp = PatchParams::apply(FIELD_MANAGER).force();

    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "labels": labels, "ownerReferences": [owner] },
        "spec": { "type": "ClusterIP", "ports": [{ "name": "http", "port": 8089, "targetPort": endpoint.port, "protocol": "TCP" }] }
    });
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch(&name, &pp, &Patch::Apply(&service))
        .await?;
    match endpoint.ip {
        Some(ip) => {
            let endpoints = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": { "name": name, "labels": labels, "ownerReferences": [owner] },
                "subsets": [{ "addresses": [{ "ip": ip.to_string() }], "ports": [{ "name": "http", "port": endpoint.port, "protocol": "TCP" }] }]
            });
            Api::<Endpoints>::namespaced(client.clone(), &ns)
                .patch(&name, &pp, &Patch::Apply(&endpoints))
                .await?;
        }
        None => tracing::warn!(
            "no --pod-ip: the temporary Service for HTTP-01 has no Endpoints; \
             only a CA that reaches the solver listener directly can validate"
        ),
    }
    let ingress_cfg = solver.ingress.clone().unwrap_or_default();
    let mut annotations = BTreeMap::new();
    if let Some(class) = &ingress_cfg.class {
        annotations.insert("kubernetes.io/ingress.class".to_string(), class.clone());
    }
    let mut spec = json!({
        "rules": [{
            "host": dns_name,
            "http": { "paths": [{
                "path": format!("{PATH_PREFIX}{token}"),
                "pathType": "Exact",
                "backend": { "service": { "name": name, "port": { "number": 8089 } } }
            }] }
        }]
    });
    if let Some(class) = &ingress_cfg.ingress_class_name {
        spec["ingressClassName"] = json!(class);
    }
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": name, "labels": labels, "annotations": annotations, "ownerReferences": [owner] },
        "spec": spec
    });
    Api::<Ingress>::namespaced(client.clone(), &ns)
        .patch(&name, &pp, &Patch::Apply(&ingress))
        .await?;
    Ok(())
}

/// Deletes this Certificate's temporary solver objects, except those for `keep` tokens.
pub async fn cleanup(
    client: &kube::Client,
    namespace: &str,
    cert_name: &str,
    keep: &[String],
) -> Result<usize, kube::Error> {
    let selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}={COMPONENT},{CERTIFICATE_LABEL}={cert_name}"
    );
    let keep: Vec<String> = keep.iter().map(|t| resource_name(t)).collect();
    let lp = ListParams::default().labels(&selector);
    let dp = DeleteParams::background();
    let mut deleted = 0;
    macro_rules! sweep {
        ($kind:ty) => {{
            let api = Api::<$kind>::namespaced(client.clone(), namespace);
            for obj in api.list_metadata(&lp).await?.items {
                let name = obj.name_any();
                if !keep.contains(&name) {
                    match api.delete(&name, &dp).await {
                        Ok(_) => deleted += 1,
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }};
    }
    sweep!(Ingress);
    sweep!(Service);
    sweep!(Endpoints);
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_dns_labels() {
        let n = resource_name("some-token_with-odd+chars");
        assert!(n.len() <= 63 && n.starts_with("caas-solver-"));
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_ne!(resource_name("a"), resource_name("b"));
    }
}
