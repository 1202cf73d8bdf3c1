//! Google Cloud DNS and Azure DNS, each with the token endpoint its credentials use.

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response};
use serde_json::{Value, json};

use super::*;

/// The fake of Google Cloud DNS API v1 and of the OAuth token endpoint a service
/// account key names (RFC 7523 JWT bearer; the JWT's RS256 signature is verified).
pub struct FakeCloudDnsApi;

/// The project the fake serves.
pub const CLOUD_DNS_PROJECT: &str = "caas-test-project";

impl FakeCloudDnsApi {
    /// `credential` is the service account JSON key; [`FakeDnsApi::other_key`] is one for
    /// the same account that the fake does not accept.
    pub async fn start() -> FakeDnsApi {
        google_fake(Api::CloudDns).await
    }
}

/// A fake of a Google API (`api`) with its token endpoint and metadata server.
pub(super) async fn google_fake(api: Api) -> FakeDnsApi {
    {
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
        let mut fake = FakeDnsApi::start(api, authorization, String::new(), "").await;
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
        fake.metadata_host = Some(fake.url.trim_start_matches("http://").to_string());
        crate::register_secret(&pem);
        crate::register_secret(&other_pem);
        *fake.state.public_key.lock().expect("lock") = public;
        fake
    }
}

/// The fake of Azure DNS (Azure Resource Manager, api-version 2018-05-01: record sets
/// with etags, `If-Match` / `If-None-Match` refused with 412 `PreconditionFailed` when
/// stale) and of Microsoft Entra ID (client credentials with a client secret or
/// workload identity's federated token), the latter over TLS at
/// [`FakeDnsApi::authority`].
pub struct FakeAzureDnsApi;

/// The subscription, resource group, tenant and client the fake serves.
pub const AZURE_SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000caa5";
pub const AZURE_RESOURCE_GROUP: &str = "dns-rg";
pub const AZURE_TENANT: &str = "11111111-1111-1111-1111-111111111111";
pub const AZURE_CLIENT: &str = "22222222-2222-2222-2222-222222222222";

impl FakeAzureDnsApi {
    /// `credential` is the client secret; `federated_token_file` holds the token
    /// workload identity presents.
    pub async fn start() -> FakeDnsApi {
        let token = crate::unique_name("eyJ0eXAi");
        crate::register_secret(&token);
        let secret = crate::unique_name("azure-secret");
        let mut fake =
            FakeDnsApi::start(Api::AzureDns, format!("Bearer {token}"), secret, "").await;
        let (authority, ca_file) = fake.serve_tls().await;
        let file = ca_file.with_file_name("azure-identity-token");
        std::fs::write(&file, &fake.state.federated_token).expect("write the token file");
        fake.authority = Some(authority);
        fake.ca_file = Some(ca_file);
        fake.federated_token_file = Some(file);
        fake
    }
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
    // Form-encoded; base64url with or without padding (gcp_auth pads, google-auth
    // does not; Google takes both).
    let assertion = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("assertion="))
        .map(super::identity::decode)
        .unwrap_or_default();
    let Some(claims) = verified_jwt(state, &assertion) else {
        return refuse("Invalid JWT Signature.");
    };
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

pub(super) async fn cloud_dns(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    raw: &str,
    body: &Value,
) -> Response<Full<Bytes>> {
    if uri.path() == "/token" {
        return cloud_token(state, raw);
    }
    if state.api == Api::CertificateManager {
        if state.down.load(std::sync::atomic::Ordering::SeqCst) {
            return super::deploy::down(state.api);
        }
        return super::deploy::certificate_manager(state, method, uri, body);
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
            // A read sees a set as it is between writes, never halfway through one.
            let _between_writes = state.writes.lock().await;
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
            let _one_at_a_time = state.writes.lock().await;
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
            // Adding a set where one exists (not deleted in the same change) is refused.
            for (name, _) in &additions {
                let exists = state
                    .records
                    .lock()
                    .expect("lock")
                    .iter()
                    .any(|r| &r.name == name);
                if exists && !deletions.iter().any(|(n, _)| n == name) {
                    return error(
                        409,
                        "ALREADY_EXISTS",
                        &format!(
                            "The resource 'entity.change.additions[{name}.][TXT]' named '{name}. (TXT)' already exists"
                        ),
                    );
                }
            }
            let names = deletions.iter().chain(&additions).map(|(n, _)| n.clone());
            let before: Vec<(String, Vec<String>)> =
                names.map(|n| (n.clone(), values_at(state, &n))).collect();
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
            for (name, values) in &before {
                note_overwrite(state, name, values);
            }
            reply(
                200,
                json!({ "kind": "dns#change", "id": "1", "status": "done" }),
            )
        }
        _ => error(404, "NOT_FOUND", "Not Found"),
    }
}

/// `conditions`: the `If-Match` and `If-None-Match` headers (empty when not sent).
pub(super) async fn azure_dns(
    state: &State,
    method: &Method,
    uri: &hyper::Uri,
    conditions: &[String; 2],
    body: &Value,
) -> Response<Full<Bytes>> {
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
            // Writes are checked against the set and applied as one step; a read sees
            // the set and its etag between writes.
            let _one_at_a_time = state.writes.lock().await;
            let current: Vec<Rec> = state
                .records
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.name == name)
                .cloned()
                .collect();
            let etag = |state: &State| {
                let version = state.etags.lock().expect("lock").get(&name).copied();
                format!("{:08x}-0000-0000-0000-00000000caa5", version.unwrap_or(0))
            };
            let set = |values: Vec<String>, etag: String| {
                json!({ "name": relative, "type": "Microsoft.Network/dnszones/TXT", "etag": etag, "properties": {
                "TTL": 60, "fqdn": format!("{name}."), "TXTRecords": values.into_iter().map(|v| json!({ "value": [v] })).collect::<Vec<_>>()
            } })
            };
            if *method != Method::GET {
                let [if_match, if_none_match] = conditions;
                let stale = (!if_match.is_empty()
                    && (current.is_empty() || *if_match != etag(state)))
                    || (if_none_match == "*" && !current.is_empty());
                if stale {
                    return error(
                        412,
                        "PreconditionFailed",
                        &format!(
                            "The condition '{if_match}{if_none_match}' in the precondition header is not satisfied by the current state of the record set '{relative}'."
                        ),
                    );
                }
                *state
                    .etags
                    .lock()
                    .expect("lock")
                    .entry(name.clone())
                    .or_default() += 1;
            }
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
                    set(
                        current.iter().map(|r| r.content.clone()).collect(),
                        etag(state),
                    ),
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
                    let before: Vec<String> = current.iter().map(|r| r.content.clone()).collect();
                    note_overwrite(state, &name, &before);
                    let status = if current.is_empty() { 201 } else { 200 };
                    reply(status, set(wanted, etag(state)))
                }
                Method::DELETE => {
                    for r in &current {
                        if let Err(e) = remove(state, r.id).await {
                            return error(500, "InternalServerError", &e);
                        }
                    }
                    let before: Vec<String> = current.iter().map(|r| r.content.clone()).collect();
                    note_overwrite(state, &name, &before);
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

/// The claims of a JWT signed (RS256) by the service account's key; `None` when the
/// signature does not verify.
fn verified_jwt(state: &State, jwt: &str) -> Option<Value> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return None;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signature = b64.decode(signature.trim_end_matches('=')).ok()?;
    let public = state.public_key.lock().expect("lock").clone();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public,
    );
    key.verify(format!("{header}.{claims}").as_bytes(), &signature)
        .ok()?;
    let claims = b64.decode(claims.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&claims).ok()
}

/// A self-signed JWT as the bearer token (Google's client libraries send one instead
/// of exchanging it at the token endpoint, "JWT access"): signed by the service
/// account's key, issued by it, for this API's host.
pub(super) fn self_signed_jwt(state: &State, authorization: &str) -> bool {
    let Some(jwt) = authorization.strip_prefix("Bearer ") else {
        return false;
    };
    verified_jwt(state, jwt).is_some_and(|claims| {
        claims["iss"]
            .as_str()
            .is_some_and(|i| i.ends_with(".iam.gserviceaccount.com"))
            && claims["exp"]
                .as_i64()
                .is_some_and(|e| e > jiff::Timestamp::now().as_second())
    })
}
