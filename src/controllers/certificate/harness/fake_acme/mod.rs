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

use http::StatusCode;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::acme::AccountKey;

mod handlers;
mod sign;

use handlers::{handle, jwk_key};

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

impl Ca {
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
