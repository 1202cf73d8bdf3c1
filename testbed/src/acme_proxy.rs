//! A fault-injecting HTTPS proxy in front of Pebble: what a flaky network, an overloaded
//! CA front end, and a slow commercial CA look like to the operator.
//!
//! Pebble builds every URL it hands out from the request's `Host` header, so forwarding
//! requests with the proxy's own host makes the directory, orders, authorizations and
//! JWS `url` checks all point at the proxy: nothing needs rewriting except where a fault
//! says so. The proxy serves Pebble's own TLS certificate (valid for 127.0.0.1), so the
//! issuer's `caBundle` stays Pebble's.
//!
//! Every exchange is logged (`exchanges()`) with its arrival time, kind, the answer the
//! operator got, and for new orders the names asked for: tests assert on gaps after a
//! `Retry-After`, on the number of orders per name, and on polling rates.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pebble::Pebble;

/// What an ACME request is for, from Pebble's URL layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Nonce,
    NewAccount,
    Account,
    NewOrder,
    Order,
    Authz,
    Challenge,
    Finalize,
    Certificate,
    RenewalInfo,
    Other,
}

impl Kind {
    fn of(path: &str) -> Kind {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "dir" => Kind::Directory,
            "nonce-plz" => Kind::Nonce,
            "sign-me-up" => Kind::NewAccount,
            "my-account" => Kind::Account,
            "order-plz" => Kind::NewOrder,
            "my-order" => Kind::Order,
            "authZ" => Kind::Authz,
            "chalZ" => Kind::Challenge,
            "finalize-order" => Kind::Finalize,
            "certZ" => Kind::Certificate,
            f if f.starts_with("draft-ietf-acme-ari") => Kind::RenewalInfo,
            _ => Kind::Other,
        }
    }
}

/// A fault to inject into one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `429 rateLimited` with `Retry-After: secs` (the CA never sees the request).
    RateLimited { retry_after_secs: u64 },
    /// Answer `500 serverInternal` (the CA never sees the request).
    ServerError,
    /// Answer `400` with this problem type (e.g. `malformed`) and detail, as a CA that
    /// refuses the request would (the CA never sees it).
    Refuse { kind: String, detail: String },
    /// Forward the request, but hold the answer back this long.
    Slow(Duration),
    /// Close the connection without an answer (the CA never sees the request).
    Drop,
    /// Never answer, never forward: the request hangs until the client gives up or
    /// dies. Used to stop the operator at an exact step before killing it.
    Hold,
}

/// One request and what the proxy did with it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// When the request arrived.
    pub at: Instant,
    pub kind: Kind,
    pub method: String,
    pub path: String,
    /// The answer's status; 0 for dropped and held requests.
    pub status: u16,
    pub fault: Option<Fault>,
    /// The `Retry-After` the operator was given, in seconds.
    pub retry_after: Option<u64>,
    /// For new orders: the names asked for.
    pub names: Vec<String>,
    /// The order this request concerns (new orders: from `Location`).
    pub order_id: Option<String>,
    /// The `status` field of the JSON answer, as the operator saw it.
    pub answer_status: Option<String>,
}

/// The decision function: sees the request and everything logged so far.
pub type Rule = Box<dyn FnMut(&Exchange, &[Exchange]) -> Option<Fault> + Send>;

/// A slow CA: authorizations stay `pending` (their challenges `processing`) for
/// `validation` after the first challenge is accepted, and the order stays
/// `processing` for `issuance` after the first finalize. Pebble itself finishes at
/// once; the proxy rewrites what the operator sees until the time is up.
#[derive(Clone, Copy, Debug)]
pub struct SlowCa {
    pub validation: Duration,
    pub issuance: Duration,
}

struct State {
    upstream: String,
    host: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    log: Mutex<Vec<Exchange>>,
    rule: Mutex<Option<Rule>>,
    slow: Mutex<Option<SlowCa>>,
    first_challenge: Mutex<Option<Instant>>,
    first_finalize: Mutex<Option<Instant>>,
    release: tokio::sync::watch::Sender<bool>,
}

/// The proxy; stops when dropped.
pub struct AcmeProxy {
    pub directory_url: String,
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl AcmeProxy {
    /// Starts a proxy in front of `pebble` on a free port (in the current Tokio runtime).
    pub async fn start(pebble: &Pebble) -> AcmeProxy {
        let cert_pem = std::fs::read(pebble.dir.join("cert.pem")).expect("Pebble cert.pem");
        let key_pem = std::fs::read(pebble.dir.join("key.pem")).expect("Pebble key.pem");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .expect("cert PEM");
        let key = PrivateKeyDer::from_pem_slice(&key_pem).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        let tls = crate::http::tls_client_config(&pebble.tls_ca_pem).expect("Pebble's CA");
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let upstream = pebble.directory_url.trim_end_matches("/dir").to_string();
        let state = Arc::new(State {
            upstream,
            host: format!("127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build(https),
            log: Mutex::default(),
            rule: Mutex::default(),
            slow: Mutex::default(),
            first_challenge: Mutex::default(),
            first_finalize: Mutex::default(),
            release: tokio::sync::watch::channel(false).0,
        });
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = task_state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        // In a task of its own: a client killed mid-request must not cancel
                        // the forwarding (the CA acts on it) nor its entry in the log.
                        let exchange = tokio::spawn(handle(state, req));
                        async move {
                            exchange
                                .await
                                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        AcmeProxy {
            directory_url: format!("https://127.0.0.1:{port}/dir"),
            port,
            state,
            task,
        }
    }

    /// Decides the fault (if any) of every request from now on.
    pub fn set_rule(
        &self,
        rule: impl FnMut(&Exchange, &[Exchange]) -> Option<Fault> + Send + 'static,
    ) {
        *self.state.rule.lock().expect("lock") = Some(Box::new(rule));
        let _ = self.state.release.send(false);
    }

    /// No more faults; held requests are answered with a dropped connection.
    pub fn clear_rule(&self) {
        *self.state.rule.lock().expect("lock") = None;
        let _ = self.state.release.send(true);
    }

    /// Makes the CA slow (see [`SlowCa`]).
    pub fn set_slow(&self, slow: SlowCa) {
        *self.state.slow.lock().expect("lock") = Some(slow);
    }

    /// Everything logged so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.log.lock().expect("lock").clone()
    }

    /// Whether a request is being held now.
    pub fn holding(&self) -> bool {
        self.exchanges()
            .iter()
            .any(|e| e.fault == Some(Fault::Hold))
    }

    /// Orders that the CA finalized successfully, as (order id, names).
    pub fn finalized_orders(&self) -> Vec<(String, Vec<String>)> {
        let log = self.exchanges();
        log.iter()
            .filter(|e| e.kind == Kind::Finalize && e.status == 200)
            .filter_map(|e| {
                let id = e.order_id.clone()?;
                let names = log
                    .iter()
                    .find(|n| n.kind == Kind::NewOrder && n.order_id.as_ref() == Some(&id))
                    .map(|n| n.names.clone())
                    .unwrap_or_default();
                Some((id, names))
            })
            .collect()
    }

    /// How many orders were finalized successfully per set of names (sorted).
    pub fn finalized_per_names(&self) -> std::collections::BTreeMap<Vec<String>, usize> {
        let mut per = std::collections::BTreeMap::new();
        for (_, names) in self.finalized_orders() {
            *per.entry(names).or_default() += 1;
        }
        per
    }

    /// New orders the CA created (answered 201).
    pub fn new_orders(&self) -> Vec<Exchange> {
        self.exchanges()
            .into_iter()
            .filter(|e| e.kind == Kind::NewOrder && e.status == 201)
            .collect()
    }
}

impl Drop for AcmeProxy {
    fn drop(&mut self) {
        let _ = self.state.release.send(true);
        self.task.abort();
    }
}

fn problem(
    status: u16,
    kind: &str,
    detail: &str,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail,
        "status": status,
    });
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/problem+json");
    if let Some(secs) = retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// The names in a new-order JWS (its payload is base64url JSON; not verified here).
fn order_names(body: &[u8]) -> Vec<String> {
    let jws: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let payload = jws["payload"].as_str().unwrap_or("");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
    let mut names: Vec<String> = payload["identifiers"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn id_from_path(path: &str) -> Option<String> {
    path.trim_start_matches('/')
        .split('/')
        .nth(1)
        .map(str::to_string)
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let kind = Kind::of(&path);
    let mut exchange = Exchange {
        at: Instant::now(),
        kind,
        method: parts.method.to_string(),
        path: path.clone(),
        status: 0,
        fault: None,
        retry_after: None,
        names: if kind == Kind::NewOrder {
            order_names(&body)
        } else {
            Vec::new()
        },
        order_id: match kind {
            Kind::Order | Kind::Finalize => id_from_path(&path),
            _ => None,
        },
        answer_status: None,
    };
    let fault = {
        let mut rule = state.rule.lock().expect("lock");
        let log = state.log.lock().expect("lock");
        rule.as_mut().and_then(|r| r(&exchange, &log))
    };
    exchange.fault = fault.clone();
    let mut slow_answer = None;
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            exchange.status = 429;
            exchange.retry_after = Some(retry_after_secs);
            state.log.lock().expect("lock").push(exchange);
            return Ok(problem(
                429,
                "rateLimited",
                "too many requests (injected by the test proxy)",
                Some(retry_after_secs),
            ));
        }
        Some(Fault::ServerError) => {
            exchange.status = 500;
            state.log.lock().expect("lock").push(exchange);
            return Ok(problem(
                500,
                "serverInternal",
                "internal error (injected by the test proxy)",
                None,
            ));
        }
        Some(Fault::Refuse { kind, detail }) => {
            exchange.status = 400;
            state.log.lock().expect("lock").push(exchange);
            return Ok(problem(400, &kind, &detail, None));
        }
        Some(Fault::Drop) => {
            state.log.lock().expect("lock").push(exchange);
            return Err(std::io::Error::other(
                "connection dropped by the test proxy",
            ));
        }
        Some(Fault::Hold) => {
            state.log.lock().expect("lock").push(exchange);
            let mut release = state.release.subscribe();
            let _ = release.wait_for(|r| *r).await;
            return Err(std::io::Error::other("held request released"));
        }
        Some(Fault::Slow(d)) => slow_answer = Some(d),
        None => {}
    }

    // Forward, keeping the proxy's Host so that Pebble's URLs point here.
    let url = format!("{}{}", state.upstream, path);
    let mut builder = Request::builder().method(parts.method.clone()).uri(url);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            builder = builder.header(name, value);
        }
    }
    builder = builder.header(hyper::header::HOST, state.host.as_str());
    let upstream = builder.body(Full::new(body)).expect("request");
    let response = match state.client.request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            state.log.lock().expect("lock").push(exchange);
            return Err(std::io::Error::other(format!("upstream: {e}")));
        }
    };
    let (mut head, body) = response.into_parts();
    let mut body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    exchange.status = head.status.as_u16();
    if kind == Kind::NewOrder {
        exchange.order_id = head
            .headers
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split("/my-order/").nth(1))
            .map(str::to_string);
    }
    if exchange.status < 300 {
        if kind == Kind::Challenge && parts.method == hyper::Method::POST {
            state
                .first_challenge
                .lock()
                .expect("lock")
                .get_or_insert(exchange.at);
        }
        if kind == Kind::Finalize {
            state
                .first_finalize
                .lock()
                .expect("lock")
                .get_or_insert(exchange.at);
        }
    }
    if let Some(slow) = *state.slow.lock().expect("lock")
        && let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&body)
    {
        let validating = state
            .first_challenge
            .lock()
            .expect("lock")
            .is_some_and(|t| t.elapsed() < slow.validation);
        let issuing = state
            .first_finalize
            .lock()
            .expect("lock")
            .is_some_and(|t| t.elapsed() < slow.issuance);
        if slow_rewrite(kind, &mut json, validating, issuing) {
            body = Bytes::from(json.to_string());
            head.headers.remove(hyper::header::CONTENT_LENGTH);
        }
    }
    // The object's status, or for an error answer the problem type and detail.
    exchange.answer_status = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|j| match j["status"].as_str() {
            Some(s) => Some(s.to_string()),
            None => j["type"]
                .as_str()
                .map(|t| format!("{t}: {}", j["detail"].as_str().unwrap_or(""))),
        });
    exchange.retry_after = head
        .headers
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    state.log.lock().expect("lock").push(exchange);
    if let Some(d) = slow_answer {
        tokio::time::sleep(d).await;
    }
    Ok(Response::from_parts(head, Full::new(body)))
}

/// What a slow CA shows while it is still validating or issuing. Returns whether the
/// answer changed.
fn slow_rewrite(kind: Kind, json: &mut serde_json::Value, validating: bool, issuing: bool) -> bool {
    let status = json["status"].as_str().unwrap_or("").to_string();
    match kind {
        Kind::Authz if validating && status == "valid" => {
            json["status"] = "pending".into();
            if let Some(challenges) = json["challenges"].as_array_mut() {
                for c in challenges {
                    if c["status"] == "valid" {
                        c["status"] = "processing".into();
                        if let Some(o) = c.as_object_mut() {
                            o.remove("validated");
                        }
                    }
                }
            }
            true
        }
        Kind::Challenge if validating && status == "valid" => {
            json["status"] = "processing".into();
            if let Some(o) = json.as_object_mut() {
                o.remove("validated");
            }
            true
        }
        Kind::Order | Kind::NewOrder | Kind::Finalize if validating && status == "ready" => {
            json["status"] = "pending".into();
            true
        }
        Kind::Order | Kind::Finalize if issuing && status == "valid" => {
            json["status"] = "processing".into();
            if let Some(o) = json.as_object_mut() {
                o.remove("certificate");
            }
            true
        }
        _ => false,
    }
}
