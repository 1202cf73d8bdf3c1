//! HTTP-01: the operator answers `/.well-known/acme-challenge/<token>` itself.
//!
//! Answers come from the [`ChallengeIndex`] (fed by the watched Certificates' status:
//! each challenge's token and key authorization), so any replica can answer. For each
//! challenge the operator creates, in the Certificate's namespace, a temporary Ingress
//! (or, with `gatewayHTTPRoute`, a Gateway API HTTPRoute attached to the named Gateways)
//! routing exactly that path to a selector-less Service whose Endpoints lead to the
//! operator: no pod per challenge. All are labelled and owned by the Certificate, and
//! deleted when the challenge ends (and by a sweep after a crash).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::index::ChallengeIndex;
use super::{Challenge, Kind, SolveEnv, SolveFuture, Solver, SolverError};
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
use crate::shared::settings::SolverEndpoint;

pub const COMPONENT: &str = "http01-solver";
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";
/// The temporary Service's port.
const SERVICE_PORT: i32 = 8089;

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

fn service(
    name: &str,
    cert: &Certificate,
    endpoint: SolverEndpoint,
) -> Result<Service, SolverError> {
    Ok(Service {
        metadata: meta(name, cert, None)?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(i32::from(endpoint.port))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn endpoints(
    name: &str,
    cert: &Certificate,
    ip: IpAddr,
    port: u16,
) -> Result<Endpoints, SolverError> {
    Ok(Endpoints {
        metadata: meta(name, cert, None)?,
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
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
            name: name.to_string(),
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
                name: name.to_string(),
                port: Some(SERVICE_PORT),
                ..Default::default()
            }],
        }],
    };
    Ok(HTTPRoute { metadata, spec })
}

/// Creates (or updates) the temporary Service, Endpoints and Ingress (or HTTPRoute) for
/// one challenge.
pub async fn present(env: &SolveEnv<'_>, challenge: Challenge<'_>) -> Result<(), SolverError> {
    let (client, cert) = (env.deps.client, env.cert);
    let solver = &env.config.http01.clone().unwrap_or_default();
    let (dns_name, token) = (challenge.dns_name, challenge.token);
    let endpoint = env.deps.settings.solver_endpoint;
    let ns = cert.namespace().unwrap_or_default();
    let name = resource_name(token);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch(&name, &pp, &Patch::Apply(&service(&name, cert, endpoint)?))
        .await?;
    match endpoint.ip {
        Some(ip) => {
            Api::<Endpoints>::namespaced(client.clone(), &ns)
                .patch(
                    &name,
                    &pp,
                    &Patch::Apply(&endpoints(&name, cert, ip, endpoint.port)?),
                )
                .await?;
        }
        None => tracing::warn!(
            "no --pod-ip: the temporary Service for HTTP-01 has no Endpoints; \
             only a CA that reaches the solver listener directly can validate"
        ),
    }
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

/// Deletes the temporary objects of one challenge (those already gone are fine): its
/// route (only the kind its solver makes: one API request saved per challenge; one of the
/// other kind, left by an issuer changed in between, goes with the sweep), Service and
/// Endpoints.
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
    // without HTTPRoutes (made for Ingress challenges only) must not stop the cleanup of
    // the Service and Endpoints.
    if routes != Routes::Ingress {
        let http_routes = Api::<HTTPRoute>::namespaced(client.clone(), namespace);
        match delete_if_present(&http_routes, &name).await {
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            other => {
                other?;
            }
        }
    }
    delete_if_present(
        &Api::<Service>::namespaced(client.clone(), namespace),
        &name,
    )
    .await?;
    delete_if_present(
        &Api::<Endpoints>::namespaced(client.clone(), namespace),
        &name,
    )
    .await?;
    Ok(())
}

/// Deletes `name`; `Ok(false)` when it was already gone.
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
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
    let mut deleted = 0;
    macro_rules! sweep {
        ($kind:ty) => {{
            let api = Api::<$kind>::namespaced(client.clone(), namespace);
            for obj in api.list_metadata(&lp).await?.items {
                let name = obj.name_any();
                if !keep.contains(&name) && delete_if_present(&api, &name).await? {
                    deleted += 1;
                }
            }
        }};
    }
    sweep!(Ingress);
    // Without the HTTPRoute API (or the right to see HTTPRoutes) there is none to sweep.
    match Api::<HTTPRoute>::namespaced(client.clone(), namespace)
        .list_metadata(&lp)
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {}
        Err(e) => return Err(e),
        Ok(_) => sweep!(HTTPRoute),
    }
    sweep!(Service);
    sweep!(Endpoints);
    Ok(deleted)
}

/// Deletes temporary HTTP-01 objects that no challenge in progress needs: leftovers of
/// a crash between presenting a challenge and cleaning up. Runs when this replica starts
/// leading and every ten minutes after.
pub async fn sweep(client: kube::Client, namespace: Option<String>, store: Store<Certificate>) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}={}",
        COMPONENT
    );
    loop {
        // Every challenge has a Service, whichever way it is routed.
        let services: Api<Service> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match services
            .list_metadata(&kube::api::ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => {
                for obj in list.items {
                    let ns = obj.namespace().unwrap_or_default();
                    let Some(cert_name) = obj.labels().get(CERTIFICATE_LABEL).cloned() else {
                        continue;
                    };
                    let keep: Vec<String> = store
                        .get(&ObjectRef::new(&cert_name).within(&ns))
                        .and_then(|c| c.status.clone())
                        .and_then(|s| s.order)
                        .map(|o| o.challenges.into_iter().map(|c| c.token).collect())
                        .unwrap_or_default();
                    match cleanup(&client, &ns, &cert_name, &keep).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(namespace = %ns, certificate = %cert_name, deleted = n, "swept leftover HTTP-01 objects")
                        }
                        Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep: cannot list Services"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
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
