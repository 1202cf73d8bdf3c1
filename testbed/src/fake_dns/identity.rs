//! The identity endpoints in front of the cloud DNS fakes: the GCE metadata server
//! (GKE Workload Identity's tokens) and Microsoft Entra ID (client credentials with a
//! client secret or a federated token, as workload identity sends it), in the shapes of
//! Google's and Microsoft's documentation and of their official clients' requests
//! (google-auth, azure-identity / MSAL, checked in the e2e tests).

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use serde_json::json;

use super::cloud::{AZURE_CLIENT, AZURE_TENANT, CLOUD_DNS_PROJECT};
use super::{State, reply};

const METADATA: &str = "/computeMetadata/v1/";

/// Whether `path` is the metadata server's (`/` is google-auth's ping).
pub(super) fn is_metadata(path: &str) -> bool {
    path == "/" || path.starts_with(METADATA)
}

/// The service account the metadata server speaks for.
pub(super) fn metadata_email() -> String {
    format!("caas-dns@{CLOUD_DNS_PROJECT}.iam.gserviceaccount.com")
}

/// The GCE metadata server: every request needs `Metadata-Flavor: Google` (403
/// otherwise, like the real one), every answer carries it.
pub(super) fn metadata(state: &State, path: &str, flavor: &str) -> Response<Full<Bytes>> {
    let answer = |status: u16, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("metadata-flavor", "Google")
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    if flavor != "Google" {
        let text = "Missing required header \"Metadata-Flavor\": \"Google\"\n".to_string();
        return answer(403, "text/html", text);
    }
    let json = |body: serde_json::Value| answer(200, "application/json", body.to_string());
    let account = "instance/service-accounts/default/";
    let scopes = [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/ndev.clouddns.readwrite",
    ];
    match path.strip_prefix(METADATA).unwrap_or_default() {
        "" if path == "/" => answer(200, "text/plain", String::new()),
        "project/project-id" => answer(200, "text/plain", CLOUD_DNS_PROJECT.into()),
        p if p == format!("{account}email") => answer(200, "text/plain", metadata_email()),
        p if p == format!("{account}token") => json(json!({
            "access_token": state.authorization.trim_start_matches("Bearer "),
            "expires_in": 3599, "token_type": "Bearer"
        })),
        // google-auth reads the account's email and scopes first (`?recursive=true`).
        p if p == account || p == account.trim_end_matches('/') => json(json!({
            "aliases": ["default"], "email": metadata_email(), "scopes": scopes
        })),
        _ => answer(404, "text/html", "Not Found\n".into()),
    }
}

/// Whether `path` is Entra ID's (token endpoint, OpenID configuration, instance
/// discovery).
pub(super) fn is_entra(path: &str) -> bool {
    path.ends_with("/oauth2/v2.0/token")
        || path.ends_with("/v2.0/.well-known/openid-configuration")
        || path == "/common/discovery/instance"
}

/// Entra ID: the token endpoint takes `client_id` with the client secret or with the
/// federated token as `client_assertion` (workload identity); MSAL (azure-identity in
/// Python) reads the tenant's OpenID configuration first.
pub(super) fn entra(state: &State, path: &str, host: &str, form: &str) -> Response<Full<Bytes>> {
    let authority = format!("https://{host}");
    let tenant_base = format!("{authority}/{AZURE_TENANT}");
    if path == "/common/discovery/instance" {
        return reply(
            200,
            json!({
                "tenant_discovery_endpoint": format!("{tenant_base}/v2.0/.well-known/openid-configuration"),
                "api-version": "1.1",
                "metadata": [{ "preferred_network": host, "preferred_cache": host, "aliases": [host] }]
            }),
        );
    }
    if path == format!("/{AZURE_TENANT}/v2.0/.well-known/openid-configuration") {
        return reply(
            200,
            json!({
                "token_endpoint": format!("{tenant_base}/oauth2/v2.0/token"),
                "authorization_endpoint": format!("{tenant_base}/oauth2/v2.0/authorize"),
                "issuer": format!("{authority}/{AZURE_TENANT}/v2.0"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "tenant_region_scope": "EU"
            }),
        );
    }
    if path != format!("/{AZURE_TENANT}/oauth2/v2.0/token") {
        let description = format!(
            "AADSTS90002: Tenant '{}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
            path.trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
        );
        return entra_error(400, "invalid_request", 90002, &description);
    }
    let secret = state.azure_secret.lock().expect("lock").clone();
    token(state, &secret, form)
}

/// The token endpoint proper (client credentials grant).
fn token(state: &State, secret: &str, form: &str) -> Response<Full<Bytes>> {
    let field = |k: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(decode)
            .unwrap_or_default()
    };
    if field("grant_type") != "client_credentials" || field("client_id") != AZURE_CLIENT {
        let description = format!(
            "AADSTS700016: Application with identifier '{}' was not found in the directory '{AZURE_TENANT}'.",
            field("client_id")
        );
        return entra_error(400, "unauthorized_client", 700016, &description);
    }
    let audience = match state.api {
        super::Api::KeyVault => "https://vault.azure.net/.default",
        _ => "https://management.azure.com/.default",
    };
    if field("scope") != audience {
        let description = format!(
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
            field("scope")
        );
        return entra_error(400, "invalid_scope", 70011, &description);
    }
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let proved = match (field("client_secret"), field("client_assertion")) {
        (given, _) if !given.is_empty() => given == secret,
        (_, assertion) if field("client_assertion_type") == assertion_type => {
            if assertion != state.federated_token {
                let description = "AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://kubernetes.default.svc'.";
                return entra_error(400, "invalid_request", 70021, description);
            }
            true
        }
        _ => false,
    };
    if !proved {
        let description = format!(
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{AZURE_CLIENT}'."
        );
        return entra_error(401, "invalid_client", 7000215, &description);
    }
    let token = state.authorization.trim_start_matches("Bearer ");
    reply(
        200,
        json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token }),
    )
}

/// An error in Entra ID's shape.
fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({
            "error": error, "error_description": description, "error_codes": [code],
            "timestamp": "2026-12-06 10:00:00Z", "trace_id": "00000000-0000-0000-0000-000000000001",
            "correlation_id": "00000000-0000-0000-0000-000000000002",
            "error_uri": "https://login.microsoftonline.com/error?code=".to_string() + &code.to_string()
        }),
    )
}

/// Decodes one `application/x-www-form-urlencoded` value.
pub(super) fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
