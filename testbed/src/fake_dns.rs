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

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::{shared_bind, tool};

/// Which API a fake speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Cloudflare,
    DigitalOcean,
    Httpreq,
    AcmeDns,
    Route53,
    CloudDns,
    AzureDns,
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
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// The fake of Cloudflare's API v4.
pub struct FakeCloudflareApi;
/// The fake of DigitalOcean's API v2.
pub struct FakeDigitalOceanApi;
/// A fake `httpreq` endpoint (lego's protocol) in front of BIND.
pub struct FakeHttpreqServer;
/// The fake of Amazon Route 53's REST API (2013-04-01, XML, SigV4-signed requests).
pub struct FakeRoute53Api;

impl FakeRoute53Api {
    /// `credential` is `<access key id>:<secret access key>`.
    pub async fn start() -> FakeDnsApi {
        let key_id = format!(
            "AKIA{}",
            crate::unique_name("fake").to_uppercase().replace('-', "")
        );
        let secret = crate::unique_name("aws-secret");
        FakeDnsApi::start(
            Api::Route53,
            key_id.clone(),
            format!("{key_id}:{secret}"),
            "",
        )
        .await
    }
}

/// The fake of Google Cloud DNS API v1 and of the OAuth token endpoint a service
/// account key names (RFC 7523 JWT bearer; the JWT's RS256 signature is verified).
pub struct FakeCloudDnsApi;

/// The project the fake serves.
pub const CLOUD_DNS_PROJECT: &str = "caas-test-project";

impl FakeCloudDnsApi {
    /// `credential` is the service account JSON key; [`FakeDnsApi::other_key`] is one for
    /// the same account that the fake does not accept.
    pub async fn start() -> FakeDnsApi {
        use rsa::pkcs1::EncodeRsaPublicKey;
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
        let public = key
            .to_public_key()
            .to_pkcs1_der()
            .expect("public key")
            .as_bytes()
            .to_vec();
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string();
        let other = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
        let other_pem = other.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string();
        let email = format!("caas-dns@{CLOUD_DNS_PROJECT}.iam.gserviceaccount.com");
        let token = crate::unique_name("ya29");
        crate::register_secret(&token);
        let authorization = format!("Bearer {token}");
        let mut fake = FakeDnsApi::start(Api::CloudDns, authorization, String::new(), "").await;
        let sa = |private_key: &str| {
            json!({
                "type": "service_account", "project_id": CLOUD_DNS_PROJECT,
                "private_key_id": "0123456789abcdef", "private_key": private_key,
                "client_email": email, "client_id": "100000000000000000001",
                "token_uri": format!("{}/token", fake.url)
            })
            .to_string()
        };
        fake.credential = sa(&pem);
        fake.other_key = Some(sa(&other_pem));
        crate::register_secret(&pem);
        crate::register_secret(&other_pem);
        *fake.state.public_key.lock().expect("lock") = public;
        fake
    }
}

/// The fake of Azure DNS (Azure Resource Manager, api-version 2018-05-01) and of the
/// Microsoft Entra ID token endpoint (client credentials with a client secret).
pub struct FakeAzureDnsApi;

/// The subscription, resource group, tenant and client the fake serves.
pub const AZURE_SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000caa5";
pub const AZURE_RESOURCE_GROUP: &str = "dns-rg";
pub const AZURE_TENANT: &str = "11111111-1111-1111-1111-111111111111";
pub const AZURE_CLIENT: &str = "22222222-2222-2222-2222-222222222222";

impl FakeAzureDnsApi {
    /// `credential` is the client secret.
    pub async fn start() -> FakeDnsApi {
        let token = crate::unique_name("eyJ0eXAi");
        crate::register_secret(&token);
        let secret = crate::unique_name("azure-secret");
        FakeDnsApi::start(Api::AzureDns, format!("Bearer {token}"), secret, "").await
    }
}

/// A fake acme-dns server (joohoi/acme-dns's API: `POST /update` with `X-Api-User`,
/// `X-Api-Key`, `{"subdomain", "txt"}`; the two latest values kept per subdomain).
pub struct FakeAcmeDnsServer;

impl FakeAcmeDnsServer {
    /// With one account whose `fulldomain` is `fulldomain` (which the zone's
    /// `_acme-challenge` CNAME must point at). `credential` is its password.
    pub async fn start(fulldomain: &str) -> FakeDnsApi {
        let user = crate::unique_name("acmedns-user");
        let password = crate::unique_name("acmedns-password");
        let subdomain = fulldomain.split('.').next().unwrap_or_default().to_string();
        let authorization = format!("{user}:{password}:{subdomain}:{fulldomain}");
        let mut fake = FakeDnsApi::start(Api::AcmeDns, authorization, password, "").await;
        fake.account = Some(json!({
            "username": user, "password": fake.credential, "fulldomain": fulldomain,
            "subdomain": subdomain, "allowfrom": []
        }));
        fake
    }
}

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
        let credential = format!("{user}:{}", crate::unique_name("pw"));
        let basic = base64::engine::general_purpose::STANDARD.encode(&credential);
        FakeDnsApi::start(Api::Httpreq, format!("Basic {basic}"), credential, "").await
    }
}

impl FakeDnsApi {
    async fn start(api: Api, authorization: String, credential: String, base: &str) -> FakeDnsApi {
        if !credential.is_empty() {
            crate::register_secret(&credential);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake DNS API");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            api,
            authorization,
            zones: vec![
                (
                    "023e105f4ecef8ad9ca31a8372d0c353".into(),
                    crate::bind::ZONE.into(),
                ),
                (
                    "9a7806061c88ada191ed06f989cc3dac".into(),
                    DELEGATE_ZONE.into(),
                ),
            ],
            records: Mutex::default(),
            next_id: Mutex::new(1000),
            log: Mutex::default(),
            public_key: Mutex::default(),
            azure_secret: Mutex::new(if api == Api::AzureDns {
                credential.clone()
            } else {
                String::new()
            }),
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        FakeDnsApi {
            url: format!("http://{addr}{base}"),
            credential,
            account: None,
            other_key: None,
            state,
            task,
        }
    }

    /// `METHOD path -> status` of every request so far.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().expect("lock").clone()
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
        self.task.abort();
    }
}

/// The second zone of the shared BIND: targets of `_acme-challenge` CNAMEs.
pub const DELEGATE_ZONE: &str = "delegate.test";

/// Applies one TXT change to the shared BIND with `nsupdate` (TSIG-signed).
async fn nsupdate(add: bool, name: &str, value: &str) -> Result<(), String> {
    let bind = shared_bind();
    let change = match add {
        true => format!("update add {name}. 60 TXT \"{value}\""),
        false => format!("update delete {name}. TXT \"{value}\""),
    };
    let script = format!("server 127.0.0.1 {}\n{change}\nsend\n", bind.port);
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
        // SigV4's shape, and the access key id (the fake does not recompute signatures).
        Api::Route53 => {
            let auth = header("authorization");
            auth.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={}/",
                state.authorization
            )) && auth.contains("/us-east-1/route53/aws4_request")
                && auth.contains("SignedHeaders=host;x-amz-date")
                && auth
                    .split("Signature=")
                    .nth(1)
                    .is_some_and(|s| s.len() == 64)
                && header("x-amz-date").len() == 16
        }
        // The token endpoint authenticates by the JWT it is given.
        Api::CloudDns if parts.uri.path() == "/token" => true,
        Api::AzureDns if parts.uri.path().ends_with("/oauth2/v2.0/token") => true,
        _ => header("authorization") == state.authorization,
    };
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
        (true, Api::CloudDns) => cloud_dns(&state, &parts.method, &parts.uri, &raw, &body).await,
        (false, Api::AzureDns) => reply(
            401,
            json!({ "error": {
            "code": "AuthenticationFailed", "message": "Authentication failed. The 'Authorization' header is missing or invalid."
        } }),
        ),
        (true, Api::AzureDns) => azure_dns(&state, &parts.method, &parts.uri, &raw, &body).await,
        (false, Api::Route53) => xml(
            403,
            &aws_error(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
        ),
        (true, Api::Route53) => route53(&state, &parts.method, &parts.uri, &raw).await,
        (true, Api::AcmeDns) => acme_dns(&state, &parts.method, parts.uri.path(), &body).await,
        (true, Api::Cloudflare) => cloudflare(&state, &parts.method, &parts.uri, &body).await,
        (true, Api::DigitalOcean) => digitalocean(&state, &parts.method, &parts.uri, &body).await,
        (true, Api::Httpreq) => httpreq(&state, &parts.method, parts.uri.path(), &body).await,
    };
    state.log.lock().expect("lock").push(format!(
        "{} {} -> {}",
        parts.method,
        parts.uri,
        response.status().as_u16()
    ));
    Ok(response)
}

/// Adds a record (in memory and in BIND); its id.
async fn add(state: &State, name: &str, content: &str) -> Result<u64, String> {
    nsupdate(true, name, content).await?;
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

async fn cloudflare(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &Value,
) -> Response<Full<Bytes>> {
    let ok = |result: Value| {
        reply(
            200,
            json!({ "success": true, "errors": [], "messages": [], "result": result }),
        )
    };
    let fail = |status: u16, code: u32, message: &str| {
        reply(
            status,
            json!({ "success": false, "errors": [{ "code": code, "message": message }], "messages": [], "result": null }),
        )
    };
    let path: Vec<&str> = uri
        .path()
        .trim_start_matches("/client/v4/")
        .split('/')
        .collect();
    match (method, path.as_slice()) {
        (&Method::GET, ["zones"]) => {
            let name = query(uri, "name").unwrap_or_default();
            let zones: Vec<Value> = state
                .zones
                .iter()
                .filter(|(_, z)| *z == name)
                .map(|(id, z)| json!({ "id": id, "name": z, "status": "active" }))
                .collect();
            ok(Value::Array(zones))
        }
        (_, ["zones", id, "dns_records", ..]) if !state.zones.iter().any(|(z, _)| z == id) => fail(
            404,
            7003,
            "Could not route to /zones/..., perhaps your object identifier is invalid?",
        ),
        (&Method::GET, ["zones", _, "dns_records"]) => {
            let name = query(uri, "name");
            let records: Vec<Value> = state.records.lock().expect("lock").iter()
                .filter(|r| name.as_deref().is_none_or(|n| n == r.name))
                .map(|r| json!({ "id": r.id.to_string(), "type": "TXT", "name": r.name, "content": r.content, "ttl": 120 }))
                .collect();
            ok(Value::Array(records))
        }
        (&Method::POST, ["zones", id, "dns_records"]) => {
            let (Some("TXT"), Some(name), Some(content)) = (
                body["type"].as_str(),
                body["name"].as_str(),
                body["content"].as_str(),
            ) else {
                return fail(400, 9005, "Content for TXT record is invalid");
            };
            if zone_of(state, name).map(|(z, _)| z.as_str()) != Some(id) {
                return fail(400, 9007, "DNS name is invalid for this zone");
            }
            match add(state, name, content).await {
                Ok(rid) => ok(
                    json!({ "id": rid.to_string(), "type": "TXT", "name": name, "content": content, "ttl": body["ttl"] }),
                ),
                Err(e) => fail(500, 1000, &e),
            }
        }
        (&Method::DELETE, ["zones", _, "dns_records", rid]) => match rid.parse::<u64>() {
            Ok(id) => match remove(state, id).await {
                Ok(true) => ok(json!({ "id": rid })),
                Ok(false) => fail(404, 81044, "Record does not exist."),
                Err(e) => fail(500, 1000, &e),
            },
            Err(_) => fail(404, 81044, "Record does not exist."),
        },
        _ => fail(404, 7000, "No route for that URI"),
    }
}

async fn digitalocean(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &Value,
) -> Response<Full<Bytes>> {
    let not_found = || {
        reply(
            404,
            json!({ "id": "not_found", "message": "The resource you were accessing could not be found." }),
        )
    };
    let path: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let domain = |name: &str| state.zones.iter().any(|(_, z)| z == name);
    match (method, path.as_slice()) {
        (&Method::GET, ["v2", "domains", name]) if domain(name) => reply(
            200,
            json!({ "domain": { "name": name, "ttl": 1800, "zone_file": "" } }),
        ),
        (_, ["v2", "domains", name, ..]) if !domain(name) => not_found(),
        (&Method::GET, ["v2", "domains", zone, "records"]) => {
            let name = query(uri, "name");
            let records: Vec<Value> = state.records.lock().expect("lock").iter()
                .filter(|r| zone_of(state, &r.name).is_some_and(|(_, z)| z == zone))
                .filter(|r| name.as_deref().is_none_or(|n| n == r.name))
                .map(|r| json!({ "id": r.id, "type": "TXT", "name": r.name.strip_suffix(&format!(".{zone}")).unwrap_or("@"), "data": r.content, "ttl": 60 }))
                .collect();
            let total = records.len();
            reply(
                200,
                json!({ "domain_records": records, "links": {}, "meta": { "total": total } }),
            )
        }
        (&Method::POST, ["v2", "domains", zone, "records"]) => {
            let (Some("TXT"), Some(name), Some(data)) = (
                body["type"].as_str(),
                body["name"].as_str(),
                body["data"].as_str(),
            ) else {
                return reply(
                    422,
                    json!({ "id": "unprocessable_entity", "message": "Name Only valid hostname characters are allowed" }),
                );
            };
            // Absolute with a trailing dot (as lego sends), else relative to the domain.
            let fqdn = match name.strip_suffix('.') {
                Some(abs) => abs.to_string(),
                None if name == "@" => zone.to_string(),
                None => format!("{name}.{zone}"),
            };
            if zone_of(state, &fqdn).map(|(_, z)| z.as_str()) != Some(*zone) {
                return reply(
                    422,
                    json!({ "id": "unprocessable_entity", "message": "Name is not in this domain" }),
                );
            }
            match add(state, &fqdn, data).await {
                Ok(id) => reply(
                    201,
                    json!({ "domain_record": { "id": id, "type": "TXT", "name": name, "data": data, "ttl": body["ttl"] } }),
                ),
                Err(e) => reply(500, json!({ "id": "server_error", "message": e })),
            }
        }
        (&Method::DELETE, ["v2", "domains", _, "records", id]) => match id.parse::<u64>() {
            Ok(id) => match remove(state, id).await {
                Ok(true) => Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .expect("response"),
                Ok(false) => not_found(),
                Err(e) => reply(500, json!({ "id": "server_error", "message": e })),
            },
            Err(_) => not_found(),
        },
        _ => not_found(),
    }
}

async fn httpreq(
    state: &State,
    method: &Method,
    path: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    let (Some(fqdn), Some(value)) = (body["fqdn"].as_str(), body["value"].as_str()) else {
        return reply(400, json!("fqdn and value are required"));
    };
    let name = fqdn.trim_end_matches('.');
    if method != Method::POST || zone_of(state, name).is_none() {
        return reply(400, json!(format!("no zone for {fqdn}")));
    }
    let result = match path {
        "/present" => add(state, name, value).await.map(|_| ()),
        "/cleanup" => {
            let ids: Vec<u64> = state
                .records
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.name == name && r.content == value)
                .map(|r| r.id)
                .collect();
            let mut result = Ok(());
            for id in ids {
                if let Err(e) = remove(state, id).await {
                    result = Err(e);
                }
            }
            result
        }
        _ => return reply(404, json!("not found")),
    };
    match result {
        Ok(()) => reply(200, json!("ok")),
        Err(e) => reply(500, json!(e)),
    }
}

async fn acme_dns(
    state: &State,
    method: &Method,
    path: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    let mut fields = state.authorization.splitn(4, ':').skip(2);
    let (Some(subdomain), Some(fulldomain)) = (fields.next(), fields.next()) else {
        return reply(500, json!({ "error": "fake misconfigured" }));
    };
    if method != Method::POST || path != "/update" {
        return reply(404, json!({ "error": "not found" }));
    }
    let (Some(sub), Some(txt)) = (body["subdomain"].as_str(), body["txt"].as_str()) else {
        return reply(400, json!({ "error": "malformed_json_payload" }));
    };
    if sub != subdomain {
        return reply(401, json!({ "error": "forbidden" }));
    }
    if txt.len() != 43 {
        return reply(400, json!({ "error": "bad_txt" }));
    }
    if let Err(e) = add(state, fulldomain, txt).await {
        return reply(500, json!({ "error": e }));
    }
    // acme-dns keeps the two latest values.
    let older: Vec<u64> = {
        let records = state.records.lock().expect("lock");
        let mine: Vec<&Rec> = records.iter().filter(|r| r.name == fulldomain).collect();
        mine.iter()
            .take(mine.len().saturating_sub(2))
            .map(|r| r.id)
            .collect()
    };
    for id in older {
        if let Err(e) = remove(state, id).await {
            return reply(500, json!({ "error": e }));
        }
    }
    reply(200, json!({ "txt": txt }))
}

fn xml(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn aws_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake-0001</RequestId></ErrorResponse>"
    )
}

/// The text of each `<tag>` in `xml`.
fn xml_tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|p| p.split_once(&close).map(|(v, _)| v.replace("&quot;", "\"")))
        .collect()
}

/// Route 53 orders names by their labels from the right (`test.acc.a`).
fn reversed(name: &str) -> String {
    name.trim_end_matches('.')
        .split('.')
        .rev()
        .collect::<Vec<_>>()
        .join(".")
}

const R53: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

async fn route53(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &str,
) -> Response<Full<Bytes>> {
    let path: Vec<&str> = uri
        .path()
        .trim_start_matches("/2013-04-01/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    match (method, path.as_slice()) {
        (&Method::GET, ["hostedzonesbyname"]) => {
            let dnsname = query(uri, "dnsname").unwrap_or_default();
            let mut zones: Vec<&(String, String)> = state.zones.iter().collect();
            zones.sort_by_key(|(_, n)| reversed(n));
            let first = zones
                .into_iter()
                .find(|(_, n)| reversed(n) >= reversed(&dnsname));
            let listed: String = first
                .map(|(id, n)| format!("<HostedZone><Id>/hostedzone/{id}</Id><Name>{n}.</Name><CallerReference>fake</CallerReference><Config><PrivateZone>false</PrivateZone></Config><ResourceRecordSetCount>3</ResourceRecordSetCount></HostedZone>"))
                .unwrap_or_default();
            xml(
                200,
                &format!(
                    "<?xml version=\"1.0\"?>\n<ListHostedZonesByNameResponse xmlns=\"{R53}\"><HostedZones>{listed}</HostedZones><DNSName>{dnsname}</DNSName><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListHostedZonesByNameResponse>"
                ),
            )
        }
        (_, ["hostedzone", id, ..]) if !state.zones.iter().any(|(z, _)| z == id) => xml(
            404,
            &aws_error(
                "NoSuchHostedZone",
                &format!("No hosted zone found with ID: {id}"),
            ),
        ),
        (&Method::GET, ["hostedzone", _, "rrset"]) => {
            let name = query(uri, "name")
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_string();
            let records = state.records.lock().expect("lock").clone();
            let mut names: Vec<&String> = records
                .iter()
                .map(|r| &r.name)
                .filter(|n| reversed(n) >= reversed(&name))
                .collect();
            names.sort_by_key(|n| reversed(n));
            let set: String = names.first().map(|n| {
                let values: String = records.iter().filter(|r| &r.name == *n).map(|r| format!("<ResourceRecord><Value>\"{}\"</Value></ResourceRecord>", r.content)).collect();
                format!("<ResourceRecordSet><Name>{n}.</Name><Type>TXT</Type><TTL>60</TTL><ResourceRecords>{values}</ResourceRecords></ResourceRecordSet>")
            }).unwrap_or_default();
            xml(
                200,
                &format!(
                    "<?xml version=\"1.0\"?>\n<ListResourceRecordSetsResponse xmlns=\"{R53}\"><ResourceRecordSets>{set}</ResourceRecordSets><IsTruncated>false</IsTruncated><MaxItems>1</MaxItems></ListResourceRecordSetsResponse>"
                ),
            )
        }
        (&Method::POST, ["hostedzone", _, "rrset"]) => route53_change(state, body).await,
        (&Method::GET, ["change", id]) => xml(
            200,
            &format!(
                "<?xml version=\"1.0\"?>\n<GetChangeResponse xmlns=\"{R53}\"><ChangeInfo><Id>/change/{id}</Id><Status>INSYNC</Status><SubmittedAt>2026-11-29T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
            ),
        ),
        _ => xml(404, &aws_error("NotFound", "no such operation")),
    }
}

/// One ChangeBatch of one change: UPSERT replaces the set, DELETE must name it exactly.
async fn route53_change(state: &State, body: &str) -> Response<Full<Bytes>> {
    let (Some(action), Some(name), Some("TXT")) = (
        xml_tags(body, "Action").first().cloned(),
        xml_tags(body, "Name")
            .first()
            .map(|n| n.trim_end_matches('.').to_string()),
        xml_tags(body, "Type").first().map(String::as_str),
    ) else {
        return xml(
            400,
            &aws_error(
                "InvalidInput",
                "Invalid XML ; cvc-complex-type.2.4.b: The content of element 'Change' is not complete.",
            ),
        );
    };
    let wanted: Vec<String> = xml_tags(body, "Value")
        .iter()
        .map(|v| v.trim_matches('"').to_string())
        .collect();
    let current: Vec<Rec> = state
        .records
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.name == name)
        .cloned()
        .collect();
    let mut have: Vec<String> = current.iter().map(|r| r.content.clone()).collect();
    have.sort();
    match action.as_str() {
        "DELETE" => {
            let mut w = wanted.clone();
            w.sort();
            if w != have {
                return xml(
                    400,
                    &aws_error(
                        "InvalidChangeBatch",
                        &format!(
                            "[Tried to delete resource record set [name='{name}.', type='TXT'] but the values provided do not match the current values]"
                        ),
                    ),
                );
            }
            for r in current {
                if let Err(e) = remove(state, r.id).await {
                    return xml(500, &aws_error("InternalFailure", &e));
                }
            }
        }
        "UPSERT" | "CREATE" => {
            for r in current.iter().filter(|r| !wanted.contains(&r.content)) {
                if let Err(e) = remove(state, r.id).await {
                    return xml(500, &aws_error("InternalFailure", &e));
                }
            }
            for v in wanted.iter().filter(|v| !have.contains(v)) {
                if let Err(e) = add(state, &name, v).await {
                    return xml(500, &aws_error("InternalFailure", &e));
                }
            }
        }
        other => {
            return xml(
                400,
                &aws_error("InvalidInput", &format!("Invalid action {other}")),
            );
        }
    }
    let mut next = state.next_id.lock().expect("lock");
    *next += 1;
    xml(
        200,
        &format!(
            "<?xml version=\"1.0\"?>\n<ChangeResourceRecordSetsResponse xmlns=\"{R53}\"><ChangeInfo><Id>/change/C{}</Id><Status>PENDING</Status><SubmittedAt>2026-11-29T00:00:00Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>",
            *next
        ),
    )
}

/// The OAuth token endpoint: checks the JWT bearer assertion's RS256 signature, issuer
/// and audience, as Google's does.
fn cloud_token(state: &State, form: &str) -> Response<Full<Bytes>> {
    let refuse = |description: &str| {
        reply(
            400,
            json!({ "error": "invalid_grant", "error_description": description }),
        )
    };
    let assertion = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("assertion="))
        .unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return refuse("Invalid JWT.");
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Value = b64
        .decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or_default();
    let signature = b64.decode(signature).unwrap_or_default();
    let public = state.public_key.lock().expect("lock").clone();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public,
    );
    if key
        .verify(
            format!("{header}.{claims_raw}", claims_raw = parts[1]).as_bytes(),
            &signature,
        )
        .is_err()
    {
        return refuse("Invalid JWT Signature.");
    }
    if !claims["iss"]
        .as_str()
        .is_some_and(|i| i.ends_with(".iam.gserviceaccount.com"))
        || !claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("/token"))
    {
        return refuse("Invalid JWT: iss or aud.");
    }
    let token = state.authorization.trim_start_matches("Bearer ");
    reply(
        200,
        json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }),
    )
}

async fn cloud_dns(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    raw: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    if uri.path() == "/token" {
        return cloud_token(state, raw);
    }
    let error = |code: u16, status: &str, message: &str| {
        reply(
            code,
            json!({ "error": { "code": code, "message": message, "status": status } }),
        )
    };
    let prefix = format!("/dns/v1/projects/{CLOUD_DNS_PROJECT}/managedZones");
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return error(403, "PERMISSION_DENIED", "Forbidden");
    };
    let path: Vec<&str> = rest
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let zone_name = |id: &str| {
        state
            .zones
            .iter()
            .find(|(z, _)| z == id)
            .map(|(_, n)| n.clone())
    };
    match (method, path.as_slice()) {
        (&Method::GET, []) => {
            let dns_name = query(uri, "dnsName").unwrap_or_default();
            let zones: Vec<Value> = state.zones.iter().filter(|(_, n)| format!("{n}.") == dns_name)
                .map(|(id, n)| json!({ "kind": "dns#managedZone", "name": id, "dnsName": format!("{n}.") })).collect();
            reply(200, json!({ "managedZones": zones }))
        }
        (_, [zone, ..]) if zone_name(zone).is_none() => error(
            404,
            "NOT_FOUND",
            &format!("The 'parameters.managedZone' resource named '{zone}' does not exist."),
        ),
        (&Method::GET, [_, "rrsets"]) => {
            let name = query(uri, "name")
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_string();
            let values: Vec<String> = state
                .records
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.name == name)
                .map(|r| format!("\"{}\"", r.content))
                .collect();
            let sets = match values.is_empty() {
                true => json!([]),
                false => {
                    json!([{ "kind": "dns#resourceRecordSet", "name": format!("{name}."), "type": "TXT", "ttl": 60, "rrdatas": values }])
                }
            };
            reply(200, json!({ "rrsets": sets }))
        }
        (&Method::POST, [_, "changes"]) => {
            let set = |v: &Value| -> (String, Vec<String>) {
                let name = v["name"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_end_matches('.')
                    .to_string();
                let values = v["rrdatas"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|d| d.as_str())
                            .map(|d| d.trim_matches('"').to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                (name, values)
            };
            let deletions: Vec<(String, Vec<String>)> = body["deletions"]
                .as_array()
                .map(|a| a.iter().map(set).collect())
                .unwrap_or_default();
            let additions: Vec<(String, Vec<String>)> = body["additions"]
                .as_array()
                .map(|a| a.iter().map(set).collect())
                .unwrap_or_default();
            for (name, values) in &deletions {
                let current: Vec<Rec> = state
                    .records
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|r| &r.name == name)
                    .cloned()
                    .collect();
                let mut have: Vec<&String> = current.iter().map(|r| &r.content).collect();
                let mut want: Vec<&String> = values.iter().collect();
                have.sort();
                want.sort();
                if have != want {
                    return error(
                        412,
                        "FAILED_PRECONDITION",
                        &format!(
                            "The resource 'entity.change.deletions[{name}.][TXT]' named '{name}. (TXT)' does not match the current record set"
                        ),
                    );
                }
            }
            for (name, values) in &deletions {
                let kept: Vec<&String> = additions
                    .iter()
                    .filter(|(n, _)| n == name)
                    .flat_map(|(_, v)| v)
                    .collect();
                let ids: Vec<u64> = state
                    .records
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|r| {
                        &r.name == name && !values.is_empty() && !kept.contains(&&r.content)
                    })
                    .map(|r| r.id)
                    .collect();
                for id in ids {
                    if let Err(e) = remove(state, id).await {
                        return error(500, "INTERNAL", &e);
                    }
                }
            }
            for (name, values) in &additions {
                let have: Vec<String> = state
                    .records
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|r| &r.name == name)
                    .map(|r| r.content.clone())
                    .collect();
                for v in values.iter().filter(|v| !have.contains(v)) {
                    if let Err(e) = add(state, name, v).await {
                        return error(500, "INTERNAL", &e);
                    }
                }
            }
            reply(
                200,
                json!({ "kind": "dns#change", "id": "1", "status": "done" }),
            )
        }
        _ => error(404, "NOT_FOUND", "Not Found"),
    }
}

/// Entra ID's token endpoint: the client id and secret must match.
fn azure_token(state: &State, secret: &str, form: &str) -> Response<Full<Bytes>> {
    let field = |k: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    if field("grant_type") != "client_credentials" || field("client_id") != AZURE_CLIENT {
        return reply(
            400,
            json!({ "error": "unauthorized_client", "error_description": "AADSTS700016: Application not found in the directory." }),
        );
    }
    if field("client_secret") != secret {
        return reply(
            401,
            json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." }),
        );
    }
    let token = state.authorization.trim_start_matches("Bearer ");
    reply(
        200,
        json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": token }),
    )
}

async fn azure_dns(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    raw: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    if uri.path() == format!("/{AZURE_TENANT}/oauth2/v2.0/token") {
        let secret = state.azure_secret.lock().expect("lock").clone();
        return azure_token(state, &secret, raw);
    }
    let error = |status: u16, code: &str, message: &str| {
        reply(
            status,
            json!({ "error": { "code": code, "message": message } }),
        )
    };
    if query(uri, "api-version").as_deref() != Some("2018-05-01") {
        return error(
            400,
            "InvalidApiVersionParameter",
            "The api-version is missing or not supported.",
        );
    }
    let prefix = format!(
        "/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/{AZURE_RESOURCE_GROUP}/providers/Microsoft.Network/dnsZones/"
    );
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return error(
            403,
            "AuthorizationFailed",
            "The client does not have authorization to perform action 'Microsoft.Network/dnsZones/read' over this scope.",
        );
    };
    let path: Vec<&str> = rest.split('/').collect();
    let known = |z: &str| state.zones.iter().any(|(_, n)| n == z);
    match (method, path.as_slice()) {
        (&Method::GET, [zone]) if known(zone) => reply(
            200,
            json!({ "name": zone, "type": "Microsoft.Network/dnszones", "properties": {} }),
        ),
        (_, [zone, ..]) if !known(zone) => error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.Network/dnszones/{zone}' under resource group '{AZURE_RESOURCE_GROUP}' was not found."
            ),
        ),
        (_, [zone, "TXT", relative]) => {
            let name = match *relative {
                "@" => zone.to_string(),
                r => format!("{r}.{zone}"),
            };
            let current: Vec<Rec> = state
                .records
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.name == name)
                .cloned()
                .collect();
            let set = |values: Vec<String>| {
                json!({ "name": relative, "type": "Microsoft.Network/dnszones/TXT", "properties": {
                "TTL": 60, "fqdn": format!("{name}."), "TXTRecords": values.into_iter().map(|v| json!({ "value": [v] })).collect::<Vec<_>>()
            } })
            };
            match *method {
                Method::GET if current.is_empty() => error(
                    404,
                    "NotFound",
                    &format!(
                        "The resource record '{relative}' does not exist in resource group '{AZURE_RESOURCE_GROUP}' of subscription '{AZURE_SUBSCRIPTION}'."
                    ),
                ),
                Method::GET => reply(
                    200,
                    set(current.iter().map(|r| r.content.clone()).collect()),
                ),
                Method::PUT => {
                    let wanted: Vec<String> = body["properties"]["TXTRecords"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|r| {
                                    r["value"]
                                        .as_array()
                                        .map(|v| {
                                            v.iter().filter_map(|s| s.as_str()).collect::<String>()
                                        })
                                        .unwrap_or_default()
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    for r in current.iter().filter(|r| !wanted.contains(&r.content)) {
                        if let Err(e) = remove(state, r.id).await {
                            return error(500, "InternalServerError", &e);
                        }
                    }
                    let have: Vec<String> = current.iter().map(|r| r.content.clone()).collect();
                    for v in wanted.iter().filter(|v| !have.contains(v)) {
                        if let Err(e) = add(state, &name, v).await {
                            return error(500, "InternalServerError", &e);
                        }
                    }
                    reply(if current.is_empty() { 201 } else { 200 }, set(wanted))
                }
                Method::DELETE => {
                    for r in &current {
                        if let Err(e) = remove(state, r.id).await {
                            return error(500, "InternalServerError", &e);
                        }
                    }
                    Response::builder()
                        .status(if current.is_empty() { 204 } else { 200 })
                        .body(Full::new(Bytes::new()))
                        .expect("response")
                }
                _ => error(
                    405,
                    "MethodNotAllowed",
                    "The requested method is not allowed.",
                ),
            }
        }
        _ => error(404, "NotFound", "Not Found"),
    }
}
