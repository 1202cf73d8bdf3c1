//! Fakes of hosted DNS services' HTTP APIs, named as fakes: `FakeCloudflareApi`,
//! `FakeDigitalOceanApi` and `FakeHttpreqServer` (lego's `httpreq` protocol). Each
//! checks authentication the way the real service does, follows its request and
//! response shapes (from the providers' API references), and applies every change to
//! the shared BIND with `nsupdate`, so Pebble validates through real DNS.
//!
//! * Cloudflare API v4: `GET /client/v4/zones?name=`, `GET|POST
//!   /client/v4/zones/{zone_id}/dns_records`, `DELETE .../dns_records/{id}`;
//!   `Authorization: Bearer <token>`; answers `{"success", "errors", "messages",
//!   "result"}`; a bad token gets 403 with error code 10000 "Authentication error".
//! * DigitalOcean API v2: `GET /v2/domains/{name}`, `GET|POST
//!   /v2/domains/{name}/records` (record names relative to the domain, or absolute with
//!   a trailing dot), `DELETE /v2/domains/{name}/records/{id}` (204);
//!   `Authorization: Bearer <token>`; a bad token gets 401 `{"id": "unauthorized",
//!   "message": "Unable to authenticate you"}`.
//! * httpreq: POST `/present` and `/cleanup` with `{"fqdn", "value"}`, optional basic
//!   auth (401 otherwise).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::{shared_bind, tool};

mod cloud;
mod deploy;
mod http_apis;
mod identity;

pub use deploy::{FakeCertificateManager, FakeKeyVault, pem_serial};

pub use cloud::{
    AZURE_CLIENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION, AZURE_TENANT, CLOUD_DNS_PROJECT,
    FakeAzureDnsApi, FakeCloudDnsApi,
};
use cloud::{azure_dns, cloud_dns};
pub use http_apis::FakeAcmeDnsServer;
use http_apis::{acme_dns, cloudflare, digitalocean, httpreq};

/// Which API a fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Cloudflare,
    DigitalOcean,
    Httpreq,
    AcmeDns,
    CloudDns,
    AzureDns,
    KeyVault,
    CertificateManager,
}

#[derive(Clone, Debug)]
struct Rec {
    id: u64,
    /// Absolute name without the trailing dot.
    name: String,
    content: String,
}

struct State {
    api: Api,
    /// What the `Authorization` header must say.
    authorization: String,
    /// The zones of the account: (id, name).
    zones: Vec<(String, String)>,
    records: Mutex<Vec<Rec>>,
    next_id: Mutex<u64>,
    /// `METHOD path -> status` of every request.
    log: Mutex<Vec<String>>,
    /// Cloud DNS: the service account's public key (PKCS#1 DER).
    public_key: Mutex<Vec<u8>>,
    /// Azure: the client secret.
    azure_secret: Mutex<String>,
    /// Azure: the federated token (workload identity) Entra ID accepts as the client's
    /// assertion.
    federated_token: String,
    /// Cloud DNS and Azure DNS: one record-set write at a time, checked and applied as
    /// one step (the services' own consistency).
    writes: tokio::sync::Mutex<()>,
    /// Azure: each record set's version (by absolute name), its etag.
    etags: Mutex<HashMap<String, u64>>,
    /// `METHOD path -> status` of every conditional write refused (412, 409).
    conflicts: Mutex<Vec<String>>,
    /// Every TXT record ever added: (name, value).
    added: Mutex<Vec<(String, String)>>,
    /// Every change applied to BIND, in order: `+name value` / `-name value`, with the
    /// time since the fake started.
    timeline: Mutex<Vec<String>>,
    started: std::time::Instant,
    /// Writes of a whole record set that changed more than one value: a writer's set,
    /// read before another writer's change, undoing that change (a lost update).
    overwrites: Mutex<Vec<String>>,
    /// The certificate fakes' contents.
    stores: Mutex<deploy::Stores>,
    /// Whether the certificate routes answer 503.
    down: std::sync::atomic::AtomicBool,
    /// Cloudflare: what `Authorization` says for a token with DNS permissions only.
    dns_only: String,
}

/// A running fake; stops when dropped.
pub struct FakeDnsApi {
    /// The API base URL, as the provider's docs give it (e.g. `.../client/v4`).
    pub url: String,
    /// The credential it accepts (token, or `user:password` for httpreq).
    pub credential: String,
    /// acme-dns: the account, as cert-manager's and lego's accounts JSON hold it.
    pub account: Option<Value>,
    /// Cloud DNS: a service account key the fake refuses.
    pub other_key: Option<String>,
    /// Cloud DNS: the fake GCE metadata server's `host:port` (`GCE_METADATA_HOST`).
    pub metadata_host: Option<String>,
    /// Azure: the Microsoft Entra ID authority (`https://127.0.0.1:port`; Azure's SDKs
    /// take only https authorities), its CA in [`FakeDnsApi::ca_file`].
    pub authority: Option<String>,
    /// Azure: the PEM file of the CA behind `authority` (for `SSL_CERT_FILE`,
    /// `REQUESTS_CA_BUNDLE`).
    pub ca_file: Option<PathBuf>,
    /// Azure: the federated token file workload identity reads
    /// (`AZURE_FEDERATED_TOKEN_FILE`).
    pub federated_token_file: Option<PathBuf>,
    /// Cloudflare: a token with DNS permissions only (custom certificates refused).
    pub dns_only_token: Option<String>,
    state: Arc<State>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The fake of Cloudflare's API v4.
pub struct FakeCloudflareApi;
/// The fake of DigitalOcean's API v2.
pub struct FakeDigitalOceanApi;
/// A fake `httpreq` endpoint (lego's protocol) in front of BIND.
pub struct FakeHttpreqServer;
impl FakeCloudflareApi {
    #[allow(clippy::new_ret_no_self)]
    pub async fn start() -> FakeDnsApi {
        let token = crate::unique_name("cf-token");
        FakeDnsApi::start(
            Api::Cloudflare,
            format!("Bearer {token}"),
            token,
            "/client/v4",
        )
        .await
    }
}

impl FakeDigitalOceanApi {
    pub async fn start() -> FakeDnsApi {
        let token = crate::unique_name("do-token");
        FakeDnsApi::start(Api::DigitalOcean, format!("Bearer {token}"), token, "").await
    }
}

impl FakeHttpreqServer {
    /// With basic auth `user` and a random password (`credential` is `user:password`).
    pub async fn start(user: &str) -> FakeDnsApi {
        Self::start_for(user, &[crate::bind::ZONE, DELEGATE_ZONE]).await
    }

    /// Like [`FakeHttpreqServer::start`], for names in `zones` only (those of the
    /// port-53 BIND, [`crate::AuthBind`], are changed there).
    pub async fn start_for(user: &str, zones: &[&str]) -> FakeDnsApi {
        let password = crate::unique_name("pw");
        crate::register_secret(&password);
        let credential = format!("{user}:{password}");
        let basic = base64::engine::general_purpose::STANDARD.encode(&credential);
        let auth = format!("Basic {basic}");
        FakeDnsApi::start_in(Api::Httpreq, auth, credential, "", zones).await
    }
}

impl FakeDnsApi {
    async fn start(api: Api, authorization: String, credential: String, base: &str) -> FakeDnsApi {
        let zones = [crate::bind::ZONE, DELEGATE_ZONE];
        Self::start_in(api, authorization, credential, base, &zones).await
    }

    /// A fake whose account holds `zones` (ids made up from their names).
    async fn start_in(
        api: Api,
        authorization: String,
        credential: String,
        base: &str,
        zones: &[&str],
    ) -> FakeDnsApi {
        if !credential.is_empty() {
            crate::register_secret(&credential);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake DNS API");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let federated_token = crate::unique_name("eyJhbGciOiJSUzI1NiJ9.federated");
        let dns_only = crate::unique_name("cf-dns-only-token");
        crate::register_secret(&dns_only);
        crate::register_secret(&federated_token);
        let state = Arc::new(State {
            api,
            authorization,
            zones: zones.iter().map(|z| (zone_id(z), z.to_string())).collect(),
            records: Mutex::default(),
            next_id: Mutex::new(1000),
            log: Mutex::default(),
            public_key: Mutex::default(),
            azure_secret: Mutex::new(if api == Api::AzureDns {
                credential.clone()
            } else {
                String::new()
            }),
            federated_token,
            writes: tokio::sync::Mutex::default(),
            etags: Mutex::default(),
            conflicts: Mutex::default(),
            added: Mutex::default(),
            timeline: Mutex::default(),
            started: std::time::Instant::now(),
            overwrites: Mutex::default(),
            stores: Mutex::default(),
            down: Default::default(),
            dns_only: match api {
                Api::Cloudflare => format!("Bearer {dns_only}"),
                _ => String::new(),
            },
        });
        let tasks = vec![tokio::spawn(serve(listener, state.clone(), None))];
        FakeDnsApi {
            url: format!("http://{addr}{base}"),
            credential,
            account: None,
            other_key: None,
            metadata_host: None,
            authority: None,
            ca_file: None,
            federated_token_file: None,
            dns_only_token: (api == Api::Cloudflare).then_some(dns_only),
            state,
            tasks,
        }
    }

    /// Serves the same API over TLS too, with a certificate for `127.0.0.1` from a new
    /// CA; the `https://` base and the CA's PEM file.
    async fn serve_tls(&mut self) -> (String, PathBuf) {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let (ca, cert, key) = crate::pebble::tls_certificates();
        let dir = crate::scratch_dir("fake-dns-tls");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca).expect("write ca.pem");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert PEM");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake DNS API (TLS)");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(serve(listener, self.state.clone(), Some(acceptor)));
        self.tasks.push(task);
        (format!("https://{addr}"), ca_file)
    }

    /// Conditional writes refused so far (`METHOD path -> status`): how often writers
    /// of one record set met.
    pub fn conflicts(&self) -> Vec<String> {
        self.state.conflicts.lock().expect("lock").clone()
    }

    /// `METHOD path -> status` of every request so far.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().expect("lock").clone()
    }

    /// Every TXT record it ever added: (name, value).
    pub fn added(&self) -> Vec<(String, String)> {
        self.state.added.lock().expect("lock").clone()
    }

    /// Every change it applied to BIND, in order (`{ms} +name value` / `-name value`).
    pub fn timeline(&self) -> Vec<String> {
        self.state.timeline.lock().expect("lock").clone()
    }

    /// Whole-set writes that changed more than one value at a name (each DNS-01 writer
    /// changes one): another writer's value undone by a stale set.
    pub fn overwrites(&self) -> Vec<String> {
        self.state.overwrites.lock().expect("lock").clone()
    }

    /// The TXT records it holds now: (name, value).
    pub fn records(&self) -> Vec<(String, String)> {
        self.state
            .records
            .lock()
            .expect("lock")
            .iter()
            .map(|r| (r.name.clone(), r.content.clone()))
            .collect()
    }
}

impl Drop for FakeDnsApi {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accepts connections on `listener` (over TLS with `tls`) and answers them with
/// [`handle`].
async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                Some(tls) => match tls.accept(tcp).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(_) => return,
                },
                None => http.serve_connection(TokioIo::new(tcp), service).await,
            };
        });
    }
}

/// The second zone of the shared BIND: targets of `_acme-challenge` CNAMEs.
pub const DELEGATE_ZONE: &str = "delegate.test";

/// The made-up id of a zone: Cloudflare-like 32 hex digits; the ids the fakes always
/// had for `acc.test` and `delegate.test`.
fn zone_id(zone: &str) -> String {
    match zone {
        crate::bind::ZONE => "023e105f4ecef8ad9ca31a8372d0c353".into(),
        DELEGATE_ZONE => "9a7806061c88ada191ed06f989cc3dac".into(),
        other => format!(
            "{:0>32}",
            other
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
        .chars()
        .take(32)
        .collect(),
    }
}

/// Applies one TXT change with `nsupdate` (TSIG-signed) to the shared BIND, or to the
/// port-53 BIND for a name in its zones.
pub(crate) async fn nsupdate(add: bool, name: &str, value: &str) -> Result<(), String> {
    let bind = shared_bind();
    let server = match crate::auth_bind::holds(name) {
        true => "127.0.0.1 53".to_string(),
        false => format!("127.0.0.1 {}", bind.port),
    };
    let change = match add {
        true => format!("update add {name}. 60 TXT \"{value}\""),
        false => format!("update delete {name}. TXT \"{value}\""),
    };
    let script = format!("server {server}\n{change}\nsend\n");
    let mut child = tokio::process::Command::new(tool("nsupdate"))
        .arg("-k")
        .arg(bind.dir.join("tsig.key"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(script.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn query(uri: &hyper::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%2A", "*").replace("%2a", "*"))
    })
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let raw = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let authorized = match state.api {
        // user:password:subdomain:fulldomain
        Api::AcmeDns => state.authorization.starts_with(&format!(
            "{}:{}:",
            header("x-api-user"),
            header("x-api-key")
        )),
        // The token endpoints authenticate by what they are given; the metadata server
        // by the `Metadata-Flavor` header (checked there).
        Api::CloudDns if parts.uri.path() == "/token" => true,
        Api::CloudDns if identity::is_metadata(parts.uri.path()) => true,
        Api::AzureDns | Api::KeyVault if identity::is_entra(parts.uri.path()) => true,
        Api::CertificateManager if parts.uri.path() == "/token" => true,
        Api::CertificateManager if identity::is_metadata(parts.uri.path()) => true,
        // A DNS-only token: DNS records yes, custom certificates no.
        Api::Cloudflare if header("authorization") == state.dns_only => {
            !parts.uri.path().contains("/custom_certificates")
        }
        Api::CloudDns | Api::CertificateManager
            if cloud::self_signed_jwt(&state, &header("authorization")) =>
        {
            true
        }
        _ => header("authorization") == state.authorization,
    };
    let certificates = parts.uri.path().contains("/custom_certificates")
        || matches!(state.api, Api::KeyVault | Api::CertificateManager);
    if authorized
        && certificates
        && state.down.load(std::sync::atomic::Ordering::SeqCst)
        && !identity::is_entra(parts.uri.path())
        && parts.uri.path() != "/token"
        && !identity::is_metadata(parts.uri.path())
    {
        let response = deploy::down(state.api);
        let line = format!("{} {} -> 503", parts.method, parts.uri);
        state.log.lock().expect("lock").push(line);
        return Ok(response);
    }
    let response = match (authorized, state.api) {
        (false, Api::Cloudflare) => reply(
            403,
            json!({
                "success": false, "errors": [{ "code": 10000, "message": "Authentication error" }],
                "messages": [], "result": null
            }),
        ),
        (false, Api::DigitalOcean) => reply(
            401,
            json!({ "id": "unauthorized", "message": "Unable to authenticate you" }),
        ),
        (false, Api::Httpreq) => reply(401, json!("Unauthorized")),
        (false, Api::AcmeDns) => reply(401, json!({ "error": "forbidden" })),
        (false, Api::CloudDns) => reply(
            401,
            json!({ "error": {
            "code": 401, "status": "UNAUTHENTICATED",
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
        } }),
        ),
        (true, Api::CloudDns | Api::CertificateManager)
            if identity::is_metadata(parts.uri.path()) =>
        {
            identity::metadata(&state, parts.uri.path(), &header("metadata-flavor"))
        }
        (true, Api::CloudDns | Api::CertificateManager) => {
            cloud_dns(&state, &parts.method, &parts.uri, &raw, &body).await
        }
        (false, Api::CertificateManager) => reply(
            401,
            json!({ "error": {
            "code": 401, "status": "UNAUTHENTICATED",
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
        } }),
        ),
        (true, Api::KeyVault) if identity::is_entra(parts.uri.path()) => {
            identity::entra(&state, parts.uri.path(), &header("host"), &raw)
        }
        (false, Api::KeyVault) => {
            deploy::vault_challenge(&header("host"), &header("authorization"))
        }
        (true, Api::KeyVault) => {
            let vault = format!("https://{}", header("host"));
            deploy::key_vault(&state, &parts.method, &vault, parts.uri.path(), &body)
        }
        (false, Api::AzureDns) => reply(
            401,
            json!({ "error": {
            "code": "AuthenticationFailed", "message": "Authentication failed. The 'Authorization' header is missing or invalid."
        } }),
        ),
        (true, Api::AzureDns) if identity::is_entra(parts.uri.path()) => {
            identity::entra(&state, parts.uri.path(), &header("host"), &raw)
        }
        (true, Api::AzureDns) => {
            let conditions = [header("if-match"), header("if-none-match")];
            azure_dns(&state, &parts.method, &parts.uri, &conditions, &body).await
        }
        (true, Api::AcmeDns) => acme_dns(&state, &parts.method, parts.uri.path(), &body).await,
        (true, Api::Cloudflare) => cloudflare(&state, &parts.method, &parts.uri, &body).await,
        (true, Api::DigitalOcean) => digitalocean(&state, &parts.method, &parts.uri, &body).await,
        (true, Api::Httpreq) => httpreq(&state, &parts.method, parts.uri.path(), &body).await,
    };
    let line = format!(
        "{} {} -> {}",
        parts.method,
        parts.uri,
        response.status().as_u16()
    );
    if matches!(response.status().as_u16(), 409 | 412) {
        state.conflicts.lock().expect("lock").push(line.clone());
    }
    state.log.lock().expect("lock").push(line);
    Ok(response)
}

/// The values at `name` now.
fn values_at(state: &State, name: &str) -> Vec<String> {
    let records = state.records.lock().expect("lock");
    let at = records.iter().filter(|r| r.name == name);
    at.map(|r| r.content.clone()).collect()
}

/// Notes a whole-set write at `name` that changed more than one value since `before`.
fn note_overwrite(state: &State, name: &str, before: &[String]) {
    let after = values_at(state, name);
    let removed: Vec<&String> = before.iter().filter(|v| !after.contains(v)).collect();
    let added: Vec<&String> = after.iter().filter(|v| !before.contains(v)).collect();
    if removed.len() + added.len() > 1 {
        let line = format!("{name}: removed {removed:?}, added {added:?}");
        state.overwrites.lock().expect("lock").push(line);
    }
}

/// Adds a record (in memory and in BIND); its id.
async fn add(state: &State, name: &str, content: &str) -> Result<u64, String> {
    nsupdate(true, name, content).await?;
    let at = state.started.elapsed().as_millis();
    let line = format!("{at} +{name} {content}");
    state.timeline.lock().expect("lock").push(line);
    let added = (name.to_string(), content.to_string());
    state.added.lock().expect("lock").push(added);
    let mut next = state.next_id.lock().expect("lock");
    *next += 1;
    let id = *next;
    state.records.lock().expect("lock").push(Rec {
        id,
        name: name.to_string(),
        content: content.to_string(),
    });
    Ok(id)
}

/// Removes record `id` (in memory and in BIND); false when there is none.
async fn remove(state: &State, id: u64) -> Result<bool, String> {
    let found = state
        .records
        .lock()
        .expect("lock")
        .iter()
        .find(|r| r.id == id)
        .cloned();
    let Some(rec) = found else { return Ok(false) };
    // BIND holds one copy per value: keep it while another record has the same value.
    let shared = state
        .records
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.name == rec.name && r.content == rec.content)
        .count()
        > 1;
    if !shared {
        nsupdate(false, &rec.name, &rec.content).await?;
        let at = state.started.elapsed().as_millis();
        let line = format!("{at} -{} {}", rec.name, rec.content);
        state.timeline.lock().expect("lock").push(line);
    }
    state.records.lock().expect("lock").retain(|r| r.id != id);
    Ok(true)
}

fn zone_of<'a>(state: &'a State, name: &str) -> Option<&'a (String, String)> {
    state
        .zones
        .iter()
        .find(|(_, z)| name == z || name.ends_with(&format!(".{z}")))
}
