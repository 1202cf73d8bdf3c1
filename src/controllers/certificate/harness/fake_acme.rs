//! A fake ACME CA for unit tests — not a CA: it checks no JWS signature, no nonce and no
//! challenge answer, and keeps everything in memory. It serves, over TLS on 127.0.0.1
//! (the operator's ACME client is https-only; [`FakeCa::ca_bundle`] is its `caBundle`):
//!
//! * the directory (with `renewalInfo`), newNonce, newAccount (`onlyReturnExisting`;
//!   an `externalAccountBinding` is recorded, not verified);
//! * newOrder (echoing `replaces`, `notAfter` and `profile`), orders, authorizations and
//!   challenges: new authorizations are `pending` and become `valid` as soon as one of
//!   their challenges is POSTed; with [`FakeCa::reuse_valid_authorizations`] they are
//!   `valid` from the start and the order `ready` at once, as when a CA reuses an
//!   authorization the account proved before (Pebble does so half the time);
//! * finalize: the CSR (its names must be the order's) is signed by a test CA: the leaf
//!   carries the CSR's public key and names, `notAfter` as ordered (90 days otherwise)
//!   and an Authority Key Identifier (for ARI); the order is `valid` at once;
//! * certificate download (leaf + test CA) and renewalInfo (a window in the last third
//!   of the certificate's life, `Retry-After: 21600`).
//!
//! A test can make the next request to an endpoint fail with a problem document
//! ([`FakeCa::fail_next`]). Not modelled: JWS, nonce and EAB MAC verification
//! (`badNonce` only when injected), order ownership, `processing` orders and
//! `Retry-After` on polls, failed challenges and invalid orders, expiry, rate limits,
//! keyChange, revocation, alternate chains (`Link: rel="alternate"`), profiles in the
//! directory.
//!
//! Requests are counted per endpoint ([`FakeCa::count`]); new orders' payloads and the
//! renewal windows answered are kept for assertions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{Method, Response, StatusCode, Uri};
use hyper::body::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use crate::acme::AccountKey;

/// The endpoints [`FakeCa::count`] knows.
pub const ENDPOINTS: &[&str] = &[
    "directory",
    "new-nonce",
    "new-account",
    "new-order",
    "order",
    "authz",
    "challenge",
    "finalize",
    "certificate",
    "renewal-info",
];

struct Account {
    /// The JWK's `crv|x|y`.
    jwk: String,
    kid: String,
    eab_kid: Option<String>,
}

struct Authz {
    identifier: Value,
    status: &'static str,
    /// Indexes into `Inner::challenges`.
    challenges: Vec<usize>,
}

struct Challenge {
    type_: &'static str,
    token: String,
    status: &'static str,
    authz: usize,
}

struct Order {
    status: &'static str,
    identifiers: Vec<Value>,
    authzs: Vec<usize>,
    not_after: Option<String>,
    replaces: Option<String>,
    profile: Option<String>,
    /// Index into `Inner::certs` once valid.
    cert: Option<usize>,
}

/// A certificate the CA signed.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Leaf and test CA, PEM.
    pub chain: String,
    /// Serial, lowercase hex (as the operator writes it).
    pub serial: String,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
}

/// A renewal window the CA suggested, and for which certificate identifier.
#[derive(Clone, Debug)]
pub struct Window {
    pub cert_id: String,
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
}

#[derive(Default)]
struct Inner {
    nonce: u64,
    accounts: Vec<Account>,
    orders: Vec<Order>,
    authzs: Vec<Authz>,
    challenges: Vec<Challenge>,
    certs: Vec<Issued>,
    counts: BTreeMap<String, usize>,
    new_orders: Vec<Value>,
    windows: Vec<Window>,
    serials: u64,
    /// Problems to answer the next request to an endpoint with, once each.
    faults: Vec<(String, StatusCode, String, String)>,
}

struct Ca {
    base: String,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    reuse: AtomicBool,
    inner: Mutex<Inner>,
}

/// The running fake CA; the server stops when this is dropped.
pub struct FakeCa {
    ca: Arc<Ca>,
    tls_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS listener for axum: the handshake is made in `accept`.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn serial_bytes(n: u64) -> Vec<u8> {
    // A positive 9-byte serial: a leading 0x01, then the counter.
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes
}

/// A subject public key taken from a CSR, for rcgen to sign.
struct CsrKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// The public key and the names a CSR asks for.
fn read_csr(der: &[u8]) -> Result<(CsrKey, Vec<SanType>), String> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| e.to_string())?;
    let spki = &csr.certification_request_info.subject_pki;
    let raw = spki.subject_public_key.data.to_vec();
    // The algorithm whose SubjectPublicKeyInfo encoding is the CSR's, byte for byte.
    let alg = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ]
    .into_iter()
    .find(|alg| {
        let key = CsrKey {
            raw: raw.clone(),
            alg,
        };
        key.subject_public_key_info() == spki.raw
    })
    .ok_or("the CSR's key algorithm is not one the fake CA signs")?;
    let mut names = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push(SanType::DnsName(
                        n.to_string().try_into().map_err(|e| format!("{e}"))?,
                    )),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => <[u8; 4]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                            16 => <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                            _ => None,
                        };
                        names.push(SanType::IpAddress(ip.ok_or("a bad IP SAN")?));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok((CsrKey { raw, alg }, names))
}

fn offset(t: jiff::Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).expect("a time in range")
}

fn san_value(san: &SanType) -> Value {
    match san {
        SanType::DnsName(n) => json!({"type": "dns", "value": n.as_str()}),
        SanType::IpAddress(ip) => json!({"type": "ip", "value": ip.to_string()}),
        _ => Value::Null,
    }
}

impl Ca {
    /// Signs a leaf for `key` and `names`, valid from `not_before` to `not_after`.
    fn sign(
        &self,
        inner: &mut Inner,
        key: &impl PublicKeyData,
        names: Vec<SanType>,
        not_before: jiff::Timestamp,
        not_after: jiff::Timestamp,
    ) -> Result<usize, String> {
        // X.509 times are whole seconds.
        let whole =
            |t: jiff::Timestamp| jiff::Timestamp::from_second(t.as_second()).expect("in range");
        let (not_before, not_after) = (whole(not_before), whole(not_after));
        inner.serials += 1;
        let serial = serial_bytes(inner.serials);
        let mut params = CertificateParams::default();
        params.subject_alt_names = names;
        params.distinguished_name = DistinguishedName::new();
        params.not_before = offset(not_before);
        params.not_after = offset(not_after);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params
            .signed_by(key, &self.issuer)
            .map_err(|e| e.to_string())?;
        inner.certs.push(Issued {
            chain: format!("{}{}", leaf.pem(), self.ca_pem),
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            not_before,
            not_after,
        });
        Ok(inner.certs.len() - 1)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn order_json(&self, inner: &Inner, id: usize) -> Value {
        let o = &inner.orders[id];
        let mut v = json!({
            "status": o.status,
            "expires": (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string(),
            "identifiers": o.identifiers,
            "authorizations": o.authzs.iter().map(|a| self.url(&format!("/authz/{a}"))).collect::<Vec<_>>(),
            "finalize": self.url(&format!("/finalize/{id}")),
        });
        if let Some(c) = o.cert {
            v["certificate"] = self.url(&format!("/cert/{c}")).into();
        }
        if let Some(r) = &o.replaces {
            v["replaces"] = r.clone().into();
        }
        if let Some(n) = &o.not_after {
            v["notAfter"] = n.clone().into();
        }
        if let Some(p) = &o.profile {
            v["profile"] = p.clone().into();
        }
        v
    }

    fn challenge_json(&self, inner: &Inner, id: usize) -> Value {
        let c = &inner.challenges[id];
        json!({
            "type": c.type_,
            "url": self.url(&format!("/chall/{id}")),
            "token": c.token,
            "status": c.status,
        })
    }

    fn authz_json(&self, inner: &Inner, id: usize) -> Value {
        let a = &inner.authzs[id];
        json!({
            "identifier": a.identifier,
            "status": a.status,
            "expires": (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string(),
            "challenges": a.challenges.iter().map(|c| self.challenge_json(inner, *c)).collect::<Vec<_>>(),
        })
    }
}

/// An answer: status, extra headers, body, content type.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    content_type: &'static str,
}

fn ok(status: StatusCode, body: Value) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
        content_type: "application/json",
    }
}

fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Answer {
    let body = json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail.into(),
        "status": status.as_u16(),
    });
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
        content_type: "application/problem+json",
    }
}

fn with_location(mut a: Answer, location: String) -> Answer {
    a.headers.push(("Location", location));
    a
}

/// A flattened JWS: its protected header and payload (`Null`: POST-as-GET).
fn jws(body: &[u8]) -> Result<(Value, Value), Answer> {
    let bad = |what: &str| problem(StatusCode::BAD_REQUEST, "malformed", what.to_string());
    let outer: Value = serde_json::from_slice(body).map_err(|_| bad("the body is not a JWS"))?;
    let part = |name: &str| -> Result<Value, Answer> {
        let text = outer[name]
            .as_str()
            .ok_or_else(|| bad("a JWS part is missing"))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        let bytes = B64
            .decode(text)
            .map_err(|_| bad("a JWS part is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| bad("a JWS part is not JSON"))
    };
    Ok((part("protected")?, part("payload")?))
}

fn jwk_key(jwk: &Value) -> String {
    format!("{}|{}|{}", jwk["crv"], jwk["x"], jwk["y"])
}

async fn handle(
    State(ca): State<Arc<Ca>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_string();
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let (first, rest) = (parts.next().unwrap_or(""), parts.next());
    let id: Option<usize> = rest.and_then(|r| r.parse().ok());
    let endpoint = match first {
        "dir" => "directory",
        "nonce" => "new-nonce",
        "new-account" => "new-account",
        "new-order" => "new-order",
        "order" => "order",
        "authz" => "authz",
        "chall" => "challenge",
        "finalize" => "finalize",
        "cert" => "certificate",
        "renewal-info" => "renewal-info",
        _ => "other",
    };
    let mut inner = ca.inner.lock().expect("CA lock");
    *inner.counts.entry(endpoint.to_string()).or_default() += 1;
    let fault = inner.faults.iter().position(|f| f.0 == endpoint);
    let answer = match (endpoint, &method) {
        _ if let Some(i) = fault => {
            let (_, status, kind, detail) = inner.faults.remove(i);
            problem(status, &kind, detail)
        }
        ("directory", &Method::GET) => ok(
            StatusCode::OK,
            json!({
                "newNonce": ca.url("/nonce"),
                "newAccount": ca.url("/new-account"),
                "newOrder": ca.url("/new-order"),
                "revokeCert": ca.url("/revoke"),
                "keyChange": ca.url("/key-change"),
                "renewalInfo": ca.url("/renewal-info"),
                "meta": {"externalAccountRequired": false},
            }),
        ),
        ("new-nonce", _) => Answer {
            status: if method == Method::HEAD {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            },
            headers: Vec::new(),
            body: Vec::new(),
            content_type: "text/plain",
        },
        ("renewal-info", &Method::GET) => renewal_info(&mut inner, rest.unwrap_or_default()),
        (_, &Method::POST) => match jws(&body) {
            Ok((protected, payload)) => post(&ca, &mut inner, endpoint, id, &protected, &payload),
            Err(a) => a,
        },
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "malformed",
            format!("the fake CA does not {method} {path}"),
        ),
    };
    inner.nonce += 1;
    let nonce = format!("nonce-{}", inner.nonce);
    drop(inner);
    let mut response = Response::builder()
        .status(answer.status)
        .header("Content-Type", answer.content_type)
        .header("Replay-Nonce", nonce)
        .header("Cache-Control", "no-store");
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(answer.body)).expect("a response")
}

fn renewal_info(inner: &mut Inner, cert_id: &str) -> Answer {
    // The identifier is base64url(AKI) "." base64url(serial).
    let serial = cert_id
        .split_once('.')
        .and_then(|(_, s)| B64.decode(s).ok())
        .map(|s| {
            s.iter()
                .skip_while(|b| **b == 0)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
    let Some(cert) = inner.certs.iter().find(|c| {
        Some(c.serial.trim_start_matches('0'))
            == serial.as_deref().map(|s| s.trim_start_matches('0'))
    }) else {
        return problem(StatusCode::NOT_FOUND, "malformed", "no such certificate");
    };
    let life = cert.not_after.duration_since(cert.not_before);
    let start = cert.not_before + life * 2 / 3;
    let end = start + life / 12;
    inner.windows.push(Window {
        cert_id: cert_id.to_string(),
        start,
        end,
    });
    let mut a = ok(
        StatusCode::OK,
        json!({"suggestedWindow": {"start": start.to_string(), "end": end.to_string()}}),
    );
    a.headers.push(("Retry-After", "21600".into()));
    a
}

fn post(
    ca: &Ca,
    inner: &mut Inner,
    endpoint: &str,
    id: Option<usize>,
    protected: &Value,
    payload: &Value,
) -> Answer {
    if endpoint == "new-account" {
        return new_account(ca, inner, protected, payload);
    }
    // Everything else is signed with the account URL.
    let kid = protected["kid"].as_str().unwrap_or_default();
    let Some(account) = inner.accounts.iter().position(|a| a.kid == kid) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "accountDoesNotExist",
            format!("no account {kid:?}"),
        );
    };
    let gone = || problem(StatusCode::NOT_FOUND, "malformed", "no such object");
    match endpoint {
        "new-order" => new_order(ca, inner, account, payload),
        "order" => match id.filter(|i| *i < inner.orders.len()) {
            Some(i) => ok(StatusCode::OK, ca.order_json(inner, i)),
            None => gone(),
        },
        "authz" => match id.filter(|i| *i < inner.authzs.len()) {
            Some(i) => ok(StatusCode::OK, ca.authz_json(inner, i)),
            None => gone(),
        },
        "challenge" => match id.filter(|i| *i < inner.challenges.len()) {
            Some(i) => {
                if payload.is_object() {
                    validate(inner, i);
                }
                let a = inner.challenges[i].authz;
                with_location(
                    ok(StatusCode::OK, ca.challenge_json(inner, i)),
                    ca.url(&format!("/authz/{a}")),
                )
            }
            None => gone(),
        },
        "finalize" => match id.filter(|i| *i < inner.orders.len()) {
            Some(i) => finalize(ca, inner, i, payload),
            None => gone(),
        },
        "certificate" => match id.filter(|i| *i < inner.certs.len()) {
            Some(i) => Answer {
                status: StatusCode::OK,
                headers: Vec::new(),
                body: inner.certs[i].chain.clone().into_bytes(),
                content_type: "application/pem-certificate-chain",
            },
            None => gone(),
        },
        _ => problem(
            StatusCode::NOT_FOUND,
            "malformed",
            format!("the fake CA has no {endpoint} endpoint"),
        ),
    }
}

fn new_account(ca: &Ca, inner: &mut Inner, protected: &Value, payload: &Value) -> Answer {
    let key = jwk_key(&protected["jwk"]);
    if let Some(a) = inner.accounts.iter().find(|a| a.jwk == key) {
        return with_location(
            ok(StatusCode::OK, json!({"status": "valid"})),
            a.kid.clone(),
        );
    }
    if payload["onlyReturnExisting"] == json!(true) {
        return problem(
            StatusCode::BAD_REQUEST,
            "accountDoesNotExist",
            "no account for this key",
        );
    }
    let eab_kid = payload["externalAccountBinding"]["protected"]
        .as_str()
        .and_then(|p| B64.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|p| p["kid"].as_str().map(str::to_string));
    let kid = ca.url(&format!("/acct/{}", inner.accounts.len() + 1));
    inner.accounts.push(Account {
        jwk: key,
        kid: kid.clone(),
        eab_kid,
    });
    with_location(ok(StatusCode::CREATED, json!({"status": "valid"})), kid)
}

fn new_order(ca: &Ca, inner: &mut Inner, _account: usize, payload: &Value) -> Answer {
    inner.new_orders.push(payload.clone());
    let identifiers = payload["identifiers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if identifiers.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "malformed", "no identifiers");
    }
    let reuse = ca.reuse.load(Ordering::SeqCst);
    let mut authzs = Vec::new();
    for identifier in &identifiers {
        let a = inner.authzs.len();
        let mut challenges = Vec::new();
        for type_ in ["http-01", "dns-01", "tls-alpn-01"] {
            challenges.push(inner.challenges.len());
            inner.challenges.push(Challenge {
                type_,
                token: format!("token-{a}-{type_}"),
                status: if reuse { "valid" } else { "pending" },
                authz: a,
            });
        }
        inner.authzs.push(Authz {
            identifier: identifier.clone(),
            status: if reuse { "valid" } else { "pending" },
            challenges,
        });
        authzs.push(a);
    }
    let id = inner.orders.len();
    inner.orders.push(Order {
        status: if reuse { "ready" } else { "pending" },
        identifiers,
        authzs,
        not_after: payload["notAfter"].as_str().map(str::to_string),
        replaces: payload["replaces"].as_str().map(str::to_string),
        profile: payload["profile"].as_str().map(str::to_string),
        cert: None,
    });
    with_location(
        ok(StatusCode::CREATED, ca.order_json(inner, id)),
        ca.url(&format!("/order/{id}")),
    )
}

/// The challenge is answered (the fake believes it): its authorization is valid, and its
/// orders ready once all their authorizations are.
fn validate(inner: &mut Inner, challenge: usize) {
    let a = inner.challenges[challenge].authz;
    inner.challenges[challenge].status = "valid";
    inner.authzs[a].status = "valid";
    for o in 0..inner.orders.len() {
        let order = &inner.orders[o];
        if order.status == "pending"
            && order.authzs.contains(&a)
            && order
                .authzs
                .iter()
                .all(|x| inner.authzs[*x].status == "valid")
        {
            inner.orders[o].status = "ready";
        }
    }
}

fn finalize(ca: &Ca, inner: &mut Inner, id: usize, payload: &Value) -> Answer {
    if inner.orders[id].status != "ready" {
        return problem(
            StatusCode::FORBIDDEN,
            "orderNotReady",
            format!("the order is {}", inner.orders[id].status),
        );
    }
    let Some(csr) = payload["csr"].as_str().and_then(|c| B64.decode(c).ok()) else {
        return problem(StatusCode::BAD_REQUEST, "badCSR", "no csr");
    };
    let (key, names) = match read_csr(&csr) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "badCSR", e),
    };
    let mut asked: Vec<String> = names.iter().map(|n| san_value(n).to_string()).collect();
    let mut ordered: Vec<String> = inner.orders[id]
        .identifiers
        .iter()
        .map(Value::to_string)
        .collect();
    asked.sort();
    ordered.sort();
    if asked != ordered {
        return problem(
            StatusCode::BAD_REQUEST,
            "badCSR",
            format!("the CSR names {asked:?}, the order {ordered:?}"),
        );
    }
    let now = jiff::Timestamp::now();
    let not_after = inner.orders[id]
        .not_after
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(now + jiff::SignedDuration::from_hours(90 * 24));
    match ca.sign(
        inner,
        &key,
        names,
        now - jiff::SignedDuration::from_mins(1),
        not_after,
    ) {
        Ok(cert) => {
            let order = &mut inner.orders[id];
            order.status = "valid";
            order.cert = Some(cert);
            with_location(
                ok(StatusCode::OK, ca.order_json(inner, id)),
                ca.url(&format!("/order/{id}")),
            )
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "serverInternal", e),
    }
}

impl FakeCa {
    /// Starts a fake CA on 127.0.0.1 (in the current Tokio runtime).
    pub async fn start() -> FakeCa {
        // The TLS server certificate, for 127.0.0.1.
        let tls_key = KeyPair::generate().expect("a key");
        let mut tls_params = CertificateParams::default();
        tls_params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let tls_cert = tls_params.self_signed(&tls_key).expect("a TLS certificate");
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![tls_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(tls_key.serialize_der().into()),
        )
        .expect("a TLS server config");

        // The test CA that signs the leaves.
        let ca_key = KeyPair::generate().expect("a key");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "caas-operator fake test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");

        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = tcp.local_addr().expect("an address").port();
        let ca = Arc::new(Ca {
            base: format!("https://127.0.0.1:{port}"),
            issuer: Issuer::new(ca_params, ca_key),
            ca_pem: ca_cert.pem(),
            reuse: AtomicBool::new(false),
            inner: Mutex::default(),
        });
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(server)),
        };
        let router = axum::Router::new().fallback(handle).with_state(ca.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeCa {
            ca,
            tls_pem: tls_cert.pem(),
            task,
        }
    }

    /// The directory URL (the issuer's `server`).
    pub fn directory_url(&self) -> String {
        self.ca.url("/dir")
    }

    /// The issuer's `caBundle`: the TLS certificate of the fake.
    pub fn ca_bundle(&self) -> String {
        self.tls_pem.clone()
    }

    /// The test CA's certificate (PEM): the last certificate of every chain.
    pub fn root_pem(&self) -> String {
        self.ca.ca_pem.clone()
    }

    /// New authorizations are valid at once (and new orders ready).
    pub fn reuse_valid_authorizations(&self, reuse: bool) {
        self.ca.reuse.store(reuse, Ordering::SeqCst);
    }

    /// Answers the next request to `endpoint` (one of [`ENDPOINTS`]) with a problem
    /// document (`kind`: the last word of its type URN, e.g. `rejectedIdentifier`).
    pub fn fail_next(&self, endpoint: &str, status: u16, kind: &str, detail: &str) {
        assert!(ENDPOINTS.contains(&endpoint), "no endpoint {endpoint}");
        let status = StatusCode::from_u16(status).expect("an HTTP status");
        self.ca.inner.lock().expect("CA lock").faults.push((
            endpoint.into(),
            status,
            kind.into(),
            detail.into(),
        ));
    }

    /// Registers the account of `key` (as the issuer controller would have); its URL.
    pub fn register(&self, key: &AccountKey) -> String {
        let mut inner = self.ca.inner.lock().expect("CA lock");
        let kid = self.ca.url(&format!("/acct/{}", inner.accounts.len() + 1));
        inner.accounts.push(Account {
            jwk: jwk_key(&key.jwk()),
            kid: kid.clone(),
            eab_kid: None,
        });
        kid
    }

    /// The EAB key IDs accounts were registered with.
    pub fn eab_key_ids(&self) -> Vec<Option<String>> {
        let inner = self.ca.inner.lock().expect("CA lock");
        inner.accounts.iter().map(|a| a.eab_kid.clone()).collect()
    }

    /// Signs a certificate for `names` with a new ECDSA P-256 key, outside any order (a
    /// certificate issued before the test starts); with its key (PKCS#8 PEM).
    pub fn issue(
        &self,
        names: &[&str],
        not_before: jiff::Timestamp,
        not_after: jiff::Timestamp,
    ) -> (Issued, String) {
        let key = KeyPair::generate().expect("a key");
        let sans = names
            .iter()
            .map(|n| SanType::DnsName((*n).try_into().expect("a DNS name")))
            .collect();
        let mut inner = self.ca.inner.lock().expect("CA lock");
        let i = self
            .ca
            .sign(&mut inner, &key, sans, not_before, not_after)
            .expect("signed");
        (inner.certs[i].clone(), key.serialize_pem())
    }

    /// Requests to `endpoint` (one of [`ENDPOINTS`]) so far.
    pub fn count(&self, endpoint: &str) -> usize {
        assert!(ENDPOINTS.contains(&endpoint), "no endpoint {endpoint}");
        let inner = self.ca.inner.lock().expect("CA lock");
        inner.counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Requests to any endpoint so far.
    pub fn total(&self) -> usize {
        let inner = self.ca.inner.lock().expect("CA lock");
        inner.counts.values().sum()
    }

    /// The counts by endpoint (for failure messages).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.ca.inner.lock().expect("CA lock").counts.clone()
    }

    /// The newOrder payloads received.
    pub fn new_orders(&self) -> Vec<Value> {
        self.ca.inner.lock().expect("CA lock").new_orders.clone()
    }

    /// The URL of order number `i` (from 0).
    pub fn order_url(&self, i: usize) -> String {
        self.ca.url(&format!("/order/{i}"))
    }

    /// The state of order number `i`.
    pub fn order_status(&self, i: usize) -> String {
        self.ca.inner.lock().expect("CA lock").orders[i]
            .status
            .to_string()
    }

    /// The certificates signed, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.ca.inner.lock().expect("CA lock").certs.clone()
    }

    /// The renewal windows answered.
    pub fn windows(&self) -> Vec<Window> {
        self.ca.inner.lock().expect("CA lock").windows.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::{AcmeError, AcmeHttp, AcmeStats, Eab, MacAlgorithm, Registration};

    /// Registration with EAB, lookup by key, and a key the CA does not know.
    #[tokio::test]
    async fn accounts() {
        let ca = FakeCa::start().await;
        let http = AcmeHttp::new(Some(&ca.ca_bundle()), Arc::new(AcmeStats::default())).unwrap();
        let server = ca.directory_url();
        let key = AccountKey::generate().unwrap();
        let pem = key.to_pem();
        let eab = Eab {
            key_id: "kid-1".into(),
            hmac: vec![7; 32],
            algorithm: MacAlgorithm::Hs256,
        };
        let registration = Registration {
            email: Some("ops@example.com"),
            eab: Some(&eab),
        };
        let made = crate::acme::account(&http, &server, key, Some(registration))
            .await
            .unwrap();
        assert_eq!(ca.eab_key_ids(), [Some("kid-1".to_string())]);
        let found = crate::acme::load(&http, &server, &pem).await.unwrap();
        assert_eq!(found.id(), made.id());
        let stranger = AccountKey::generate().unwrap().to_pem();
        let err = crate::acme::load(&http, &server, &stranger)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, AcmeError::AccountNotFound(_)), "{err}");
        // Look up and register; look up; look up.
        assert_eq!(ca.count("new-account"), 4);
    }
}
