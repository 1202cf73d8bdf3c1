//! HTTP-01: the operator answers `/.well-known/acme-challenge/<token>` itself.
//!
//! Answers come from the [`ChallengeIndex`] (fed by the watched Certificates' status:
//! each challenge's token and key authorization), so any replica can answer. For each
//! challenge the operator creates, in the Certificate's namespace, a temporary Ingress
//! (or, with `gatewayHTTPRoute`, a Gateway API HTTPRoute attached to the named Gateways)
//! routing exactly that path to the namespace's selector-less Service, whose Endpoints
//! lead to the operator: no pod per challenge. The routes are labelled and owned by the
//! Certificate and deleted when the challenge ends; the Service and Endpoints are shared
//! by the namespace's challenges in flight ([`super::http01_service`]) and deleted after
//! the last. A sweep removes what a crash left.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::http01_service::{SERVICE_NAME, SERVICE_PORT, challenge_key};
use super::index::ChallengeIndex;
use super::{Challenge, Deps, Kind, SolveEnv, SolveFuture, Solver, SolverError};
use crate::api::gateway::{
    HTTPBackendRef, HTTPPathMatch, HTTPRoute, HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec,
};
use crate::api::issuer::Http01GatewayHttpRoute;
use crate::api::issuer::Http01Solver;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, ChallengeType, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
};
use crate::shared::FIELD_MANAGER;

pub const COMPONENT: &str = "http01-solver";
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

async fn answer(
    State(index): State<Arc<ChallengeIndex>>,
    Path(token): Path<String>,
) -> (StatusCode, String) {
    match index.http01(&token) {
        Some(key) => (StatusCode::OK, key),
        None => (
            StatusCode::NOT_FOUND,
            "unknown challenge token\n".to_string(),
        ),
    }
}

/// The solver listener's routes.
pub fn router(index: Arc<ChallengeIndex>) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(index)
}

/// Serves HTTP-01 answers on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    index: Arc<ChallengeIndex>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP-01 solver listening");
    axum::serve(listener, router(index))
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

fn labels(cert: &Certificate) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (COMPONENT_LABEL.to_string(), COMPONENT.to_string()),
        (CERTIFICATE_LABEL.to_string(), cert.name_any()),
    ])
}

fn owner(cert: &Certificate) -> Result<OwnerReference, SolverError> {
    cert.controller_owner_ref(&())
        .ok_or_else(|| SolverError::InvalidSpec("the Certificate has no name or uid yet".into()))
}

fn meta(
    name: &str,
    cert: &Certificate,
    annotations: Option<BTreeMap<String, String>>,
) -> Result<ObjectMeta, SolverError> {
    Ok(ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels(cert)),
        annotations,
        owner_references: Some(vec![owner(cert)?]),
        ..Default::default()
    })
}

/// One rule: the challenge's host and its exact path, nothing else.
fn ingress(
    name: &str,
    cert: &Certificate,
    solver: &Http01Solver,
    dns_name: &str,
    token: &str,
) -> Result<Ingress, SolverError> {
    let cfg = solver.ingress.clone().unwrap_or_default();
    let annotations = cfg
        .class
        .as_ref()
        .map(|class| BTreeMap::from([("kubernetes.io/ingress.class".to_string(), class.clone())]));
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: SERVICE_NAME.to_string(),
            port: Some(ServiceBackendPort {
                number: Some(SERVICE_PORT),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    Ok(Ingress {
        metadata: meta(name, cert, annotations)?,
        spec: Some(IngressSpec {
            ingress_class_name: cfg.ingress_class_name.clone(),
            rules: Some(vec![IngressRule {
                // An Ingress host cannot be an IP address (RFC 8738 identifiers): the
                // rule then matches every host, still only on the token's exact path.
                host: dns_name
                    .parse::<std::net::IpAddr>()
                    .is_err()
                    .then(|| dns_name.to_string()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(format!("{PATH_PREFIX}{token}")),
                        path_type: "Exact".into(),
                        backend,
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// One rule: the challenge's host and its exact path, attached to the solver's Gateways.
fn http_route(
    name: &str,
    cert: &Certificate,
    cfg: &Http01GatewayHttpRoute,
    dns_name: &str,
    token: &str,
) -> Result<HTTPRoute, SolverError> {
    let mut metadata = meta(name, cert, None)?;
    // The user's labels first: ours (which the sweep selects by) win a clash.
    let mut labels = cfg.labels.clone();
    labels.extend(metadata.labels.take().unwrap_or_default());
    metadata.labels = Some(labels);
    let spec = HTTPRouteSpec {
        parent_refs: cfg.parent_refs.clone(),
        // An IP identifier has no hostname to match: the route matches every host, still
        // only on the token's exact path.
        hostnames: dns_name
            .parse::<IpAddr>()
            .is_err()
            .then(|| dns_name.to_string())
            .into_iter()
            .collect(),
        rules: vec![HTTPRouteRule {
            matches: vec![HTTPRouteMatch {
                path: Some(HTTPPathMatch {
                    type_: Some("Exact".into()),
                    value: Some(format!("{PATH_PREFIX}{token}")),
                }),
            }],
            backend_refs: vec![HTTPBackendRef {
                name: SERVICE_NAME.to_string(),
                port: Some(SERVICE_PORT),
                ..Default::default()
            }],
        }],
    };
    Ok(HTTPRoute { metadata, spec })
}

/// Makes sure the namespace's Service and Endpoints exist, and creates (or updates) the
/// challenge's Ingress (or HTTPRoute).
pub async fn present(env: &SolveEnv<'_>, challenge: Challenge<'_>) -> Result<(), SolverError> {
    let (client, cert) = (env.deps.client, env.cert);
    let solver = &env.config.http01.clone().unwrap_or_default();
    let (dns_name, token) = (challenge.dns_name, challenge.token);
    let ns = cert.namespace().unwrap_or_default();
    let name = resource_name(token);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let key = challenge_key(&cert.name_any(), token);
    let (index, now) = (env.deps.index, env.deps.memory.now());
    env.deps
        .http01
        .acquire(
            (client, &ns),
            key,
            env.deps.settings.solver_endpoint,
            (index, now),
        )
        .await?;
    if let Some(cfg) = &solver.gateway_http_route {
        let route = http_route(&name, cert, cfg, dns_name, token)?;
        return match Api::<HTTPRoute>::namespaced(client.clone(), &ns)
            .patch(&name, &pp, &Patch::Apply(&route))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Err(SolverError::InvalidSpec(
                "http01.gatewayHTTPRoute: this cluster has no HTTPRoute API \
                 (gateway.networking.k8s.io/v1); install Gateway API or use http01.ingress"
                    .into(),
            )),
            Err(e) => Err(e.into()),
        };
    }
    let ingress = ingress(&name, cert, solver, dns_name, token)?;
    Api::<Ingress>::namespaced(client.clone(), &ns)
        .patch(&name, &pp, &Patch::Apply(&ingress))
        .await?;
    Ok(())
}

/// Which route objects a challenge may have: the one its solver makes (an Ingress, or a
/// Gateway API HTTPRoute), or either when the solver is not known any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    Ingress,
    HttpRoute,
    Either,
}

impl Routes {
    /// The routes the solver `config` makes (`Either` for a config that is not HTTP-01:
    /// the issuer changed since the challenge was presented).
    pub fn of(config: &crate::api::issuer::SolverConfig) -> Routes {
        match config.http01.as_ref() {
            Some(h) if h.gateway_http_route.is_some() => Routes::HttpRoute,
            Some(_) => Routes::Ingress,
            None => Routes::Either,
        }
    }
}

/// Deletes the route of one challenge (already gone is fine): only the kind its solver
/// makes (one API request saved per challenge; one of the other kind, left by an issuer
/// changed in between, goes with the sweep). The shared Service and Endpoints go in
/// [`Http01::cleaned_up`].
pub async fn remove(
    client: &kube::Client,
    namespace: &str,
    token: &str,
    routes: Routes,
) -> Result<(), kube::Error> {
    let name = resource_name(token);
    if routes != Routes::HttpRoute {
        let ingresses = Api::<Ingress>::namespaced(client.clone(), namespace);
        delete_if_present(&ingresses, &name).await?;
    }
    // 404 also when the cluster has no HTTPRoute API: nothing to delete. 403: RBAC
    // without HTTPRoutes (made for Ingress challenges only) must not stop the cleanup.
    if routes != Routes::Ingress {
        let http_routes = Api::<HTTPRoute>::namespaced(client.clone(), namespace);
        match delete_if_present(&http_routes, &name).await {
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Deletes `name`; `Ok(false)` when it was already gone.
pub(super) async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// HTTP-01 behind the [`Solver`] trait.
pub struct Http01;

impl Solver for Http01 {
    fn kind(&self) -> Kind {
        Kind(ChallengeType::Http01, "http01", |c| c.http01.is_some())
    }

    fn present<'a>(&'a self, env: &'a SolveEnv<'a>, challenge: Challenge<'a>) -> SolveFuture<'a> {
        Box::pin(present(env, challenge))
    }

    fn cleanup<'a>(&'a self, env: &'a SolveEnv<'a>, challenge: Challenge<'a>) -> SolveFuture<'a> {
        let ns = env.cert.namespace().unwrap_or_default();
        let routes = Routes::of(env.config);
        Box::pin(async move { Ok(remove(env.deps.client, &ns, challenge.token, routes).await?) })
    }

    /// The challenges are over: the namespace's Service and Endpoints go when no other
    /// challenge needs them.
    fn cleaned_up<'a>(
        &'a self,
        deps: Deps<'a>,
        cert: &'a Certificate,
        challenges: &'a [Challenge<'a>],
        _all_removed: bool,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let ns = cert.namespace().unwrap_or_default();
            let name = cert.name_any();
            let keys = challenges
                .iter()
                .map(|c| challenge_key(&name, c.token))
                .collect();
            let now = deps.memory.now();
            if let Err(e) = deps
                .http01
                .release((deps.client, &ns), keys, (deps.index, now))
                .await
            {
                tracing::warn!(namespace = %ns, error = %e, "cannot remove the HTTP-01 Service; the sweep will");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_route_kind_the_solver_makes_is_deleted() {
        use crate::api::issuer::{Http01GatewayHttpRoute, Http01Solver, SolverConfig};
        let ingress = SolverConfig {
            http01: Some(Http01Solver::default()),
            ..Default::default()
        };
        assert_eq!(Routes::of(&ingress), Routes::Ingress);
        let route = SolverConfig {
            http01: Some(Http01Solver {
                gateway_http_route: Some(Http01GatewayHttpRoute::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(Routes::of(&route), Routes::HttpRoute);
        assert_eq!(Routes::of(&SolverConfig::default()), Routes::Either);
    }

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
