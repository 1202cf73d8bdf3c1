//! Fakes of the cloud certificate stores a DeployTarget writes to, named as fakes and
//! written from the providers' API references (each is checked against the provider's
//! official Python client in the e2e tests):
//!
//! * `FakeCloudflareApi` also serves custom certificates (API v4 "Custom SSL for a
//!   Zone"): `GET|POST /zones/{z}/custom_certificates`, `GET|PATCH|DELETE
//!   .../custom_certificates/{id}`; a PATCH of an `sni_custom` certificate answers a new
//!   id and deletes the old one, as the reference warns. A DNS-only token
//!   ([`FakeDnsApi::dns_only_token`]) is refused there with code 10000.
//! * `FakeKeyVault` (REST 7.x, over TLS): `POST /certificates/{name}/import` (a new
//!   version each time; `value` is the PEM file base64-encoded, as the official client
//!   sends it, and must hold a PKCS#8 key), `GET
//!   /certificates/{name}[/{version}]`, `GET /certificates/{name}/versions`, `DELETE
//!   /certificates/{name}` (soft delete: the name stays taken), `GET
//!   /deletedcertificates/{name}`; bearer tokens from the fake Entra ID for the vault's
//!   audience only, and the 401 challenge the Azure SDKs start with.
//! * `FakeCertificateManager` (REST v1): `POST .../certificates?certificateId=`, `GET|
//!   PATCH|DELETE .../certificates/{id}`, `GET .../operations/{op}` (writes answer a
//!   running operation, done at its first poll); tokens from the Cloud DNS fake's token
//!   endpoint and metadata server; another project is `PERMISSION_DENIED`.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response};
use serde_json::{Value, json};

use super::*;

/// What the certificate fakes hold.
#[derive(Default)]
pub(super) struct Stores {
    /// Cloudflare: `zone/id` -> the custom certificate (with the PEM uploaded, under
    /// `certificate`). Key Vault: name -> its versions, oldest first. Certificate
    /// Manager: the resource name -> the certificate.
    pub items: BTreeMap<String, Vec<Value>>,
    /// Key Vault: names deleted and not purged.
    pub deleted: BTreeMap<String, Value>,
    /// Certificate Manager: certificates a certificate map entry uses.
    pub attached: BTreeSet<String>,
    pub next: u64,
}

/// The fake of Azure Key Vault's certificates API.
pub struct FakeKeyVault;

/// The fake of Google Certificate Manager's API.
pub struct FakeCertificateManager;

impl FakeKeyVault {
    /// `url` is the vault (https, CA in `ca_file`), `authority` its Entra ID, `credential`
    /// the client secret of [`crate::AZURE_CLIENT`].
    pub async fn start() -> FakeDnsApi {
        let token = crate::unique_name("eyJ0eXAi.vault");
        crate::register_secret(&token);
        let secret = crate::unique_name("kv-secret");
        let mut fake =
            FakeDnsApi::start(Api::KeyVault, format!("Bearer {token}"), secret, "").await;
        *fake.state.azure_secret.lock().expect("lock") = fake.credential.clone();
        let (url, ca_file) = fake.serve_tls().await;
        let file = ca_file.with_file_name("azure-identity-token");
        std::fs::write(&file, &fake.state.federated_token).expect("write the token file");
        fake.url = url.clone();
        fake.authority = Some(url);
        fake.ca_file = Some(ca_file);
        fake.federated_token_file = Some(file);
        fake
    }
}

impl FakeCertificateManager {
    /// `credential` is a service account key the fake accepts; `metadata_host` its
    /// metadata server; `url` the API base (without `/v1`).
    pub async fn start() -> FakeDnsApi {
        super::cloud::google_fake(Api::CertificateManager).await
    }
}

impl FakeDnsApi {
    /// Makes the certificate routes answer 503 in the provider's shape (`true`), or
    /// serve again.
    pub fn set_down(&self, down: bool) {
        (self.state.down).store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// What the fake holds at `key` (see [`Stores::items`]), oldest first.
    pub fn stored(&self, key: &str) -> Vec<Value> {
        let stores = self.state.stores.lock().expect("lock");
        stores.items.get(key).cloned().unwrap_or_default()
    }

    /// The serial (lowercase hex) of the newest certificate at `key`.
    pub fn remote_serial(&self, key: &str) -> Option<String> {
        let newest = self.stored(key).pop()?;
        if let Some(pem) = newest["certificate"]
            .as_str()
            .or(newest["pemCertificate"].as_str())
        {
            return pem_serial(pem);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(newest["cer"].as_str()?)
            .ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        Some(cert.raw_serial_as_string().replace(':', "").to_lowercase())
    }

    /// Every key it holds certificates at.
    pub fn stored_keys(&self) -> Vec<String> {
        let stores = self.state.stores.lock().expect("lock");
        stores.items.keys().cloned().collect()
    }

    /// Cloudflare: a custom certificate uploaded by someone else into zone `zone` (as a
    /// user's, to be adopted); its id.
    pub fn upload_custom_certificate(&self, zone: &str, pem: &str) -> String {
        let body = json!({ "certificate": pem, "private_key": "-----BEGIN PRIVATE KEY-----", "type": "sni_custom" });
        let answer = custom_certificates(&self.state, &Method::POST, zone, &[], &body);
        assert_eq!(answer.status(), 200, "the fake took the upload");
        let stores = self.state.stores.lock().expect("lock");
        let (key, _) = (stores.items.iter().rev())
            .find(|(k, _)| k.starts_with(&format!("{zone}/")))
            .expect("stored");
        key.rsplit('/').next().expect("id").to_string()
    }

    /// Certificate Manager: a certificate map entry uses `name` from now on (deleting
    /// it is refused), as `gcloud certificate-manager maps entries create` would.
    pub fn attach_to_map(&self, name: &str) {
        let mut stores = self.state.stores.lock().expect("lock");
        stores.attached.insert(name.to_string());
    }
}

/// The serial (lowercase hex) of the first certificate of `pem`; `None` when none parses.
pub fn pem_serial(pem: &str) -> Option<String> {
    let der = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")?
        .contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.raw_serial_as_string().replace(':', "").to_lowercase())
}

/// The first certificate of `pem` as DER, with its notBefore and notAfter (seconds).
fn leaf(pem: &str) -> Option<(Vec<u8>, i64, i64)> {
    let der = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")?
        .contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = cert.validity();
    let (nbf, exp) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    Some((der, nbf, exp))
}

/// The DNS names of a DER certificate's subjectAltName.
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    match cert.subject_alternative_name() {
        Ok(Some(san)) => (san.value.general_names.iter())
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The answer while [`FakeDnsApi::set_down`] holds, in each provider's shape.
pub(super) fn down(api: Api) -> Response<Full<Bytes>> {
    match api {
        Api::KeyVault => reply(
            503,
            json!({ "error": { "code": "ServiceUnavailable", "message": "The service is temporarily unavailable. Please retry." } }),
        ),
        Api::CertificateManager => reply(
            503,
            json!({ "error": { "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE" } }),
        ),
        _ => Response::builder()
            .status(503)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(
                "503 Service Temporarily Unavailable",
            )))
            .expect("response"),
    }
}

/// Cloudflare's custom certificates of zone `zone` (`rest`: the path after it).
pub(super) fn custom_certificates(
    state: &State,
    method: &Method,
    zone: &str,
    rest: &[&str],
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
    if !state.zones.iter().any(|(id, _)| id == zone) {
        return fail(
            404,
            7003,
            "Could not route to /zones/..., perhaps your object identifier is invalid?",
        );
    }
    let mut stores = state.stores.lock().expect("lock");
    let key = |id: &str| format!("{zone}/{id}");
    let not_found = || fail(404, 1407, "The custom certificate was not found.");
    match (method, rest) {
        (&Method::GET, []) => {
            let all: Vec<Value> = (stores.items.iter())
                .filter(|(k, _)| k.starts_with(&format!("{zone}/")))
                .filter_map(|(_, v)| v.last().map(public))
                .collect();
            ok(Value::Array(all))
        }
        (&Method::GET, [id]) => match stores.items.get(&key(id)).and_then(|v| v.last()) {
            Some(cert) => ok(public(cert)),
            None => not_found(),
        },
        (&Method::POST, []) | (&Method::PATCH, [_]) => {
            let before = match rest {
                [id] => match stores.items.get(&key(id)).and_then(|v| v.last()) {
                    Some(c) => Some((id.to_string(), c.clone())),
                    None => return not_found(),
                },
                _ => None,
            };
            let (Some(pem), Some(private_key)) =
                (body["certificate"].as_str(), body["private_key"].as_str())
            else {
                return fail(400, 1002, "certificate and private_key are required");
            };
            let Some((der, nbf, exp)) = leaf(pem) else {
                return fail(400, 1002, "The certificate is not a valid PEM certificate.");
            };
            if !private_key.contains("PRIVATE KEY-----") {
                return fail(400, 1002, "The private key is not a valid PEM key.");
            }
            let kind = match &before {
                Some((_, c)) => c["type"].as_str().unwrap_or("sni_custom").to_string(),
                None => body["type"].as_str().unwrap_or("legacy_custom").to_string(),
            };
            stores.next += 1;
            // A PATCH of sni_custom: a new id, the old one deleted (the reference's warning).
            let id = match (&before, kind.as_str()) {
                (Some((id, _)), "legacy_custom") => id.clone(),
                _ => format!("{:032x}", 0xcafe_0000_u64 + stores.next),
            };
            if let Some((old, _)) = &before {
                stores.items.remove(&key(old));
            }
            let now = jiff::Timestamp::now().to_string();
            let method = body["bundle_method"].as_str().unwrap_or("ubiquitous");
            let cert = json!({
                "id": id, "zone_id": zone, "type": kind, "bundle_method": method,
                "status": "active", "hosts": dns_names(&der), "issuer": "caas-testbed",
                "signature": "SHA256WithECDSA", "expires_on": rfc3339(exp),
                "uploaded_on": now, "modified_on": now, "priority": 0,
                "certificate": pem, "not_before": rfc3339(nbf),
            });
            stores.items.entry(key(&id)).or_default().push(cert.clone());
            ok(public(&cert))
        }
        (&Method::DELETE, [id]) => match stores.items.remove(&key(id)) {
            Some(_) => ok(json!({ "id": id })),
            None => not_found(),
        },
        _ => fail(404, 7000, "No route for that URI"),
    }
}

/// A stored custom certificate as the API shows it: without the PEM (Cloudflare never
/// gives it back).
fn public(cert: &Value) -> Value {
    let mut shown = cert.clone();
    if let Some(o) = shown.as_object_mut() {
        o.remove("certificate");
        o.remove("not_before");
    }
    shown
}

/// Key Vault's error shape.
fn kv_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({ "error": { "code": code, "message": message } }),
    )
}

/// Key Vault's certificates API (`path` without the query).
pub(super) fn key_vault(
    state: &State,
    method: &Method,
    vault: &str,
    path: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut stores = state.stores.lock().expect("lock");
    let missing = |name: &str| {
        let m = format!(
            "A certificate with (name/id) {name} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        );
        kv_error(404, "CertificateNotFound", &m)
    };
    match (method, parts.as_slice()) {
        (&Method::POST, ["certificates", name, "import"]) => {
            if stores.deleted.contains_key(*name) {
                let m = format!(
                    "Certificate {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the certificate can only be recovered or purged."
                );
                return kv_error(409, "Conflict", &m);
            }
            // azure-keyvault-certificates sends the PEM file base64-encoded (as a PFX).
            let b64 = base64::engine::general_purpose::STANDARD;
            let decoded = (body["value"].as_str())
                .and_then(|v| b64.decode(v).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let value = decoded.unwrap_or_default();
            let value = value.as_str();
            let Some((der, nbf, exp)) = leaf(value) else {
                let m = "The specified PEM X.509 certificate content is in an unexpected format. Please check if certificate is in valid PEM format.";
                return kv_error(400, "BadParameter", m);
            };
            if !value.contains("-----BEGIN PRIVATE KEY-----") {
                let m = "The specified PEM X.509 certificate content can not be read. Please check if certificate is in valid PEM format. Accepted private key formats: PKCS#8.";
                return kv_error(400, "BadParameter", m);
            }
            stores.next += 1;
            let version = format!("{:032x}", 0xbeef_0000_u64 + stores.next);
            let id = format!("{vault}/certificates/{name}/{version}");
            let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref(),
            );
            let now = jiff::Timestamp::now().as_second();
            let bundle = json!({
                "id": id, "kid": format!("{vault}/keys/{name}/{version}"),
                "sid": format!("{vault}/secrets/{name}/{version}"), "x5t": x5t,
                "cer": b64.encode(&der),
                "attributes": { "enabled": true, "nbf": nbf, "exp": exp, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90 },
                "policy": { "id": format!("{vault}/certificates/{name}/policy"),
                    "key_props": { "exportable": true, "reuse_key": false },
                    "secret_props": { "contentType": "application/x-pem-file" },
                    "x509_props": {}, "issuer": { "name": "Unknown" },
                    "attributes": { "enabled": true, "created": now, "updated": now } },
                "tags": body.get("tags").cloned().unwrap_or(json!({})),
            });
            stores
                .items
                .entry(name.to_string())
                .or_default()
                .push(bundle.clone());
            reply(200, bundle)
        }
        (&Method::GET, ["certificates", name, "versions"]) => match stores.items.get(*name) {
            Some(versions) => {
                let items: Vec<Value> = (versions.iter())
                    .map(|v| json!({ "id": v["id"], "x5t": v["x5t"], "attributes": v["attributes"], "tags": v["tags"] }))
                    .collect();
                reply(200, json!({ "value": items, "nextLink": null }))
            }
            None => missing(name),
        },
        (&Method::GET, ["certificates", name, rest @ ..]) => {
            let found = stores.items.get(*name).and_then(|versions| match rest {
                [] | [""] => versions.last().cloned(),
                [version] => (versions.iter())
                    .find(|v| {
                        v["id"]
                            .as_str()
                            .is_some_and(|i| i.ends_with(&format!("/{version}")))
                    })
                    .cloned(),
                _ => None,
            });
            found.map_or_else(|| missing(name), |b| reply(200, b))
        }
        (&Method::DELETE, ["certificates", name]) => match stores.items.remove(*name) {
            Some(mut versions) => {
                let mut deleted = versions.pop().unwrap_or_default();
                let now = jiff::Timestamp::now().as_second();
                deleted["recoveryId"] = json!(format!("{vault}/deletedcertificates/{name}"));
                deleted["deletedDate"] = json!(now);
                deleted["scheduledPurgeDate"] = json!(now + 90 * 86400);
                stores.deleted.insert(name.to_string(), deleted.clone());
                reply(200, deleted)
            }
            None => missing(name),
        },
        (&Method::GET, ["deletedcertificates", name]) => match stores.deleted.get(*name) {
            Some(d) => reply(200, d.clone()),
            None => {
                let m = format!("Deleted Certificate not found: {name}");
                kv_error(404, "CertificateNotFound", &m)
            }
        },
        _ => kv_error(
            400,
            "BadParameter",
            "Method or path not supported by this fake",
        ),
    }
}

/// Google's error shape.
fn google_error(code: u16, status: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        code,
        json!({ "error": { "code": code, "message": message, "status": status } }),
    )
}

/// Certificate Manager v1 (`path` from `/v1/`).
pub(super) fn certificate_manager(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    body: &Value,
) -> Response<Full<Bytes>> {
    let path = uri.path().trim_start_matches("/v1/");
    let parts: Vec<&str> = path.split('/').collect();
    let ["projects", project, "locations", location, kind, rest @ ..] = parts.as_slice() else {
        return google_error(404, "NOT_FOUND", "Method not found.");
    };
    let parent = format!("projects/{project}/locations/{location}");
    if *project != crate::CLOUD_DNS_PROJECT {
        let verb = match *method {
            Method::GET => "get",
            Method::POST => "create",
            Method::PATCH => "update",
            _ => "delete",
        };
        let m = format!(
            "Permission 'certificatemanager.certs.{verb}' denied on resource '//certificatemanager.googleapis.com/{parent}' (or it may not exist)."
        );
        return google_error(403, "PERMISSION_DENIED", &m);
    }
    let mut stores = state.stores.lock().expect("lock");
    let operation = |stores: &mut Stores, target: &str, verb: &str| {
        stores.next += 1;
        let name = format!("{parent}/operations/operation-{}", stores.next);
        let running = json!({
            "name": name, "done": false,
            "metadata": { "@type": "type.googleapis.com/google.cloud.certificatemanager.v1.OperationMetadata",
                "createTime": jiff::Timestamp::now().to_string(), "target": target, "verb": verb,
                "apiVersion": "v1" },
        });
        stores.items.insert(name.clone(), vec![running.clone()]);
        reply(200, running)
    };
    match (method, *kind, rest) {
        (&Method::GET, "operations", [op]) => {
            let name = format!("{parent}/operations/{op}");
            let Some(running) = stores.items.get_mut(&name).and_then(|v| v.last_mut()) else {
                return google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Resource '{name}' was not found"),
                );
            };
            running["done"] = json!(true);
            let target = running["metadata"]["target"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut done = running.clone();
            if let Some(cert) = stores.items.get(&target).and_then(|v| v.last()) {
                let mut response = cert.clone();
                response["@type"] =
                    json!("type.googleapis.com/google.cloud.certificatemanager.v1.Certificate");
                done["response"] = response;
            } else {
                done["response"] = json!({ "@type": "type.googleapis.com/google.protobuf.Empty" });
            }
            reply(200, done)
        }
        (&Method::POST, "certificates", []) => {
            let Some(id) = query(uri, "certificateId") else {
                return google_error(400, "INVALID_ARGUMENT", "certificate_id is required");
            };
            let name = format!("{parent}/certificates/{id}");
            if stores.items.contains_key(&name) {
                return google_error(
                    409,
                    "ALREADY_EXISTS",
                    &format!("Resource '{name}' already exists"),
                );
            }
            match stored_certificate(&name, body, None) {
                Ok(cert) => {
                    stores.items.insert(name.clone(), vec![cert]);
                    operation(&mut stores, &name, "create")
                }
                Err(m) => google_error(400, "INVALID_ARGUMENT", &m),
            }
        }
        (_, "certificates", [id]) => {
            let name = format!("{parent}/certificates/{id}");
            let Some(before) = stores.items.get(&name).and_then(|v| v.last()).cloned() else {
                return google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Resource '{name}' was not found"),
                );
            };
            match *method {
                Method::GET => reply(200, before),
                Method::PATCH => {
                    let mask = query(uri, "updateMask").unwrap_or_default();
                    if !mask
                        .split(',')
                        .any(|m| m == "selfManaged" || m == "self_managed")
                    {
                        return google_error(
                            400,
                            "INVALID_ARGUMENT",
                            "update_mask must name self_managed",
                        );
                    }
                    match stored_certificate(&name, body, Some(&before)) {
                        Ok(cert) => {
                            stores.items.entry(name.clone()).or_default().push(cert);
                            operation(&mut stores, &name, "update")
                        }
                        Err(m) => google_error(400, "INVALID_ARGUMENT", &m),
                    }
                }
                Method::DELETE if stores.attached.contains(&name) => google_error(
                    400,
                    "FAILED_PRECONDITION",
                    &format!(
                        "can't delete certificate that is referenced by a CertificateMapEntry: {name}"
                    ),
                ),
                Method::DELETE => {
                    stores.items.remove(&name);
                    operation(&mut stores, &name, "delete")
                }
                _ => google_error(404, "NOT_FOUND", "Method not found."),
            }
        }
        _ => google_error(404, "NOT_FOUND", "Method not found."),
    }
}

/// A certificate as Certificate Manager keeps it, from a create or update body
/// (`selfManaged` as the REST reference spells it; `self_managed` read too).
fn stored_certificate(name: &str, body: &Value, before: Option<&Value>) -> Result<Value, String> {
    let managed = body
        .get("selfManaged")
        .or(body.get("self_managed"))
        .cloned()
        .unwrap_or_default();
    let pem = (managed
        .get("pemCertificate")
        .or(managed.get("pem_certificate")))
    .and_then(Value::as_str)
    .unwrap_or_default();
    let key = (managed
        .get("pemPrivateKey")
        .or(managed.get("pem_private_key")))
    .and_then(Value::as_str)
    .unwrap_or_default();
    let Some((der, _, exp)) = leaf(pem) else {
        return Err("Failed to parse the certificate's PEM.".into());
    };
    if !key.contains("PRIVATE KEY-----") {
        return Err("Failed to parse the private key's PEM.".into());
    }
    let sans = dns_names(&der);
    let now = jiff::Timestamp::now().to_string();
    let keep = |field: &str, default: Value| {
        before.map_or_else(
            || body.get(field).cloned().unwrap_or(default.clone()),
            |b| b[field].clone(),
        )
    };
    Ok(json!({
        "name": name, "createTime": before.map_or(json!(now), |b| b["createTime"].clone()),
        "updateTime": now, "labels": keep("labels", json!({})),
        "description": keep("description", json!("")),
        "pemCertificate": pem, "sanDnsnames": sans, "expireTime": rfc3339(exp),
        "scope": "DEFAULT",
    }))
}

/// Key Vault without a valid token: 401 with the challenge the Azure SDKs start with
/// (they send the first request without a token and read the authority and resource
/// from `WWW-Authenticate`).
pub(super) fn vault_challenge(host: &str, authorization: &str) -> Response<Full<Bytes>> {
    let challenge = format!(
        "Bearer authorization=\"https://{host}/{}\", resource=\"https://vault.azure.net\"",
        crate::AZURE_TENANT
    );
    let message = match authorization.is_empty() {
        true => "AKV10000: Request is missing a Bearer or PoP token.",
        false => "The access token is not valid for this vault.",
    };
    let body = json!({ "error": { "code": "Unauthorized", "message": message } });
    Response::builder()
        .status(401)
        .header("content-type", "application/json")
        .header("www-authenticate", challenge)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}
