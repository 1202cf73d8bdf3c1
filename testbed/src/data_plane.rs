//! `IngressDataPlaneStandIn`: a stand-in for an ingress controller's (or Gateway's) data
//! plane, so the HTTP-01 tests prove that the temporary Ingress / HTTPRoute, Service
//! and Endpoints the operator writes really route the CA's request to the answer.
//!
//! It listens on Pebble's HTTP-01 port. For each request it resolves, from the API
//! server and only in its namespace: host and path -> an Ingress rule (host equal, or
//! no host; path `Exact` equal or `Prefix` a prefix) or an HTTPRoute (hostname equal,
//! `*.` wildcard, or none; path `Exact` or `PathPrefix`; attached through `parentRefs`
//! to a Gateway that exists) -> the backend Service and port -> that port's
//! `targetPort` -> the Endpoints of the same name and their port. It then connects to
//! that port on 127.0.0.1 (pod IPs are not routable here) and relays the answer. Any
//! missing link is a 404 saying which, as a real ingress controller would answer.
//!
//! Not modelled: IngressClass / GatewayClass selection (one data plane serves all),
//! TLS listeners, header or method matches, weights.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What routed one request: `Ingress ns/name` or `HTTPRoute ns/name`, and the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Routed {
    pub host: String,
    pub path: String,
    pub via: String,
    pub status: u16,
}

/// The running stand-in; stops when dropped.
pub struct IngressDataPlaneStandIn {
    pub port: u16,
    log: Arc<Mutex<Vec<Routed>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IngressDataPlaneStandIn {
    /// Serves `port` on 127.0.0.1 for the routes of `namespace` (read with `kubeconfig`),
    /// on a thread and runtime of its own, until dropped.
    pub fn start(port: u16, namespace: &str, kubeconfig: &Path) -> IngressDataPlaneStandIn {
        let log: Arc<Mutex<Vec<Routed>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let ns = namespace.to_string();
        let kubeconfig = kubeconfig.to_path_buf();
        let task_log = log.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let client = match crate::apiserver::client_from(&kubeconfig).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(std::io::Error::other(e.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let state = Arc::new(State {
                    client,
                    ns,
                    log: task_log,
                });
                let serve = async move {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let state = state.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let state = state.clone();
                                async move { Ok::<_, Infallible>(route(&state, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        ready_rx
            .recv()
            .expect("data plane thread")
            .unwrap_or_else(|e| panic!("IngressDataPlaneStandIn on 127.0.0.1:{port}: {e}"));
        IngressDataPlaneStandIn {
            port,
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request so far, in order.
    pub fn routed(&self) -> Vec<Routed> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for IngressDataPlaneStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    client: kube::Client,
    ns: String,
    log: Arc<Mutex<Vec<Routed>>>,
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .expect("response")
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default();
    // `name:port` or `[v6]:port` -> the name.
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
    .trim_start_matches('[')
    .trim_end_matches(']')
    .to_ascii_lowercase();
    let path = req.uri().path().to_string();
    let (via, response) = match resolve(state, &host, &path).await {
        Ok((via, port)) => match forward(port, &host, &path).await {
            Ok((status, body)) => (via, reply(status, body)),
            Err(e) => (via, reply(502, format!("backend 127.0.0.1:{port}: {e}\n"))),
        },
        Err(missing) => (missing.clone(), reply(404, format!("{missing}\n"))),
    };
    eprintln!(
        "[ingress data plane stand-in] {host}{path} -> {via}: {}",
        response.status()
    );
    state.log.lock().unwrap().push(Routed {
        host,
        path,
        via,
        status: response.status().as_u16(),
    });
    response
}

/// The backend port for `host` and `path`, and what routed it; or the missing link.
async fn resolve(state: &State, host: &str, path: &str) -> Result<(String, u16), String> {
    let (via, service, port) = match ingress_backend(state, host, path).await? {
        Some(found) => found,
        None => http_route_backend(state, host, path)
            .await?
            .ok_or_else(|| format!("no Ingress rule or HTTPRoute matches {host}{path}"))?,
    };
    let port = endpoint_port(state, &service, &port).await?;
    Ok((via, port))
}

/// A Service port, by number or (Ingress only) by name.
enum ServicePortRef {
    Number(i32),
    Name(String),
}

async fn ingress_backend(
    state: &State,
    host: &str,
    path: &str,
) -> Result<Option<(String, String, ServicePortRef)>, String> {
    let api: Api<Ingress> = Api::namespaced(state.client.clone(), &state.ns);
    let list = api
        .list(&Default::default())
        .await
        .map_err(|e| format!("list Ingresses: {e}"))?;
    for ing in list.items {
        let name = ing.metadata.name.clone().unwrap_or_default();
        for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            if rule.host.as_deref().is_some_and(|h| !host_matches(h, host)) {
                continue;
            }
            for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                let want = p.path.as_deref().unwrap_or("/");
                let hit = match p.path_type.as_str() {
                    "Exact" => path == want,
                    _ => path.starts_with(want),
                };
                let Some(svc) = p.backend.service.as_ref().filter(|_| hit) else {
                    continue;
                };
                let port = svc.port.as_ref().ok_or("Ingress backend without a port")?;
                let port = match (&port.number, &port.name) {
                    (Some(n), _) => ServicePortRef::Number(*n),
                    (None, Some(n)) => ServicePortRef::Name(n.clone()),
                    _ => return Err(format!("Ingress {name}: backend port has no number")),
                };
                return Ok(Some((
                    format!("Ingress {}/{name}", state.ns),
                    svc.name.clone(),
                    port,
                )));
            }
        }
    }
    Ok(None)
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|h| h.ends_with('.') && !h[..h.len() - 1].contains('.')),
        None => pattern == host,
    }
}

fn gateway_api(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        kind,
    ))
}

async fn http_route_backend(
    state: &State,
    host: &str,
    path: &str,
) -> Result<Option<(String, String, ServicePortRef)>, String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(state.client.clone(), &state.ns, &gateway_api("HTTPRoute"));
    let list = match api.list(&Default::default()).await {
        Ok(l) => l,
        // No Gateway API in this cluster: no routes.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(format!("list HTTPRoutes: {e}")),
    };
    for r in list.items {
        let name = r.metadata.name.clone().unwrap_or_default();
        let spec = r.data.get("spec").cloned().unwrap_or(Value::Null);
        let hostnames: Vec<&str> = strs(&spec["hostnames"]);
        if !hostnames.is_empty() && !hostnames.iter().any(|h| host_matches(h, host)) {
            continue;
        }
        for rule in spec["rules"].as_array().into_iter().flatten() {
            let matches = rule["matches"].as_array().cloned().unwrap_or_default();
            let hit = matches.is_empty()
                || matches.iter().any(|m| {
                    let value = m["path"]["value"].as_str().unwrap_or("/");
                    match m["path"]["type"].as_str().unwrap_or("PathPrefix") {
                        "Exact" => path == value,
                        "PathPrefix" => path.starts_with(value),
                        _ => false,
                    }
                });
            if !hit {
                continue;
            }
            attached(state, &name, &spec["parentRefs"]).await?;
            let backend = &rule["backendRefs"][0];
            let service = backend["name"]
                .as_str()
                .ok_or(format!("HTTPRoute {name}: rule without a backendRef"))?;
            let port = backend["port"]
                .as_i64()
                .ok_or(format!("HTTPRoute {name}: backendRef without a port"))?;
            return Ok(Some((
                format!("HTTPRoute {}/{name}", state.ns),
                service.to_string(),
                ServicePortRef::Number(port as i32),
            )));
        }
    }
    Ok(None)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A route is served only when one of its `parentRefs` is a Gateway that exists (with
/// the named listener, when `sectionName` is set).
async fn attached(state: &State, route: &str, parents: &Value) -> Result<(), String> {
    for p in parents.as_array().into_iter().flatten() {
        if p["kind"].as_str().unwrap_or("Gateway") != "Gateway" {
            continue;
        }
        let ns = p["namespace"].as_str().unwrap_or(&state.ns);
        let name = p["name"].as_str().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(state.client.clone(), ns, &gateway_api("Gateway"));
        let Ok(Some(gw)) = api.get_opt(name).await else {
            continue;
        };
        let Some(section) = p["sectionName"].as_str() else {
            return Ok(());
        };
        let listeners = gw.data["spec"]["listeners"].as_array().cloned();
        if listeners
            .unwrap_or_default()
            .iter()
            .any(|l| l["name"].as_str() == Some(section))
        {
            return Ok(());
        }
    }
    Err(format!(
        "HTTPRoute {}/{route} is attached to no existing Gateway (parentRefs {parents})",
        state.ns
    ))
}

/// Service port -> targetPort -> the Endpoints port of that name (or number).
async fn endpoint_port(state: &State, service: &str, port: &ServicePortRef) -> Result<u16, String> {
    let svc = Api::<Service>::namespaced(state.client.clone(), &state.ns)
        .get_opt(service)
        .await
        .map_err(|e| format!("get Service {service}: {e}"))?
        .ok_or(format!("no Service {}/{service}", state.ns))?;
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    let sp = ports
        .iter()
        .find(|p| match port {
            ServicePortRef::Number(n) => p.port == *n,
            ServicePortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
        })
        .ok_or(format!("Service {service} has no such port"))?;
    let eps = Api::<Endpoints>::namespaced(state.client.clone(), &state.ns)
        .get_opt(service)
        .await
        .map_err(|e| format!("get Endpoints {service}: {e}"))?
        .ok_or(format!("no Endpoints {}/{service}", state.ns))?;
    for subset in eps.subsets.iter().flatten() {
        if subset.addresses.as_ref().is_none_or(|a| a.is_empty()) {
            continue;
        }
        for ep in subset.ports.iter().flatten() {
            let by_name = sp.name.is_some() && ep.name == sp.name;
            let by_target = match &sp.target_port {
                Some(IntOrString::Int(n)) => ep.port == *n,
                Some(IntOrString::String(n)) => ep.name.as_deref() == Some(n.as_str()),
                None => ep.port == sp.port,
            };
            if by_name || by_target {
                return u16::try_from(ep.port).map_err(|_| "bad Endpoints port".into());
            }
        }
    }
    Err(format!(
        "Endpoints {service} have no ready address with the Service's port"
    ))
}

/// GET `path` from 127.0.0.1:`port`, as the ingress controller's proxy would.
async fn forward(port: u16, host: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, raw[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn hosts_and_wildcards() {
        assert!(host_matches("a.example", "a.example"));
        assert!(host_matches("A.example", "a.example"));
        assert!(host_matches("*.example", "a.example"));
        assert!(!host_matches("*.example", "b.a.example"));
        assert!(!host_matches("*.example", "example"));
        assert!(!host_matches("a.example", "b.example"));
    }
}
