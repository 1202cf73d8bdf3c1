//! The HTTP side of talking to a CA: instant-acme's client with the issuer's trust roots
//! (`caBundle`), request counting, resending on dropped connections and 5xx answers, and
//! `Retry-After` kept per order URL and, for error answers, per account (no task-local
//! state: the JWS names the account).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::AcmeError;
use crate::metrics::AcmeRequestLabels;
use crate::shared::memory::Memory;

/// Counts of ACME requests by endpoint and HTTP status (a metric), and the last
/// `Retry-After` seen per URL. Shared by every client the operator makes.
#[derive(Default)]
pub struct AcmeStats {
    requests: Family<AcmeRequestLabels, Counter>,
    /// Where the waits the CA asks for are kept (per order URL, and per account for error answers).
    memory: Arc<Memory>,
}

impl AcmeStats {
    /// Stats counting into `requests` (the registered metric family), keeping waits in
    /// `memory`.
    pub fn new(requests: Family<AcmeRequestLabels, Counter>, memory: Arc<Memory>) -> Self {
        AcmeStats { requests, memory }
    }

    /// Counts one request to `endpoint` answered with `status` (0: no answer).
    fn count(&self, endpoint: &str, status: u16) {
        self.requests
            .get_or_create(&AcmeRequestLabels {
                endpoint: endpoint.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// Records the `Retry-After` of an answer to `url` with `status`; an error answer's
    /// (429, 5xx) also for the `account` that made the request.
    fn record_retry_after(&self, account: Option<&str>, status: u16, url: &str, wait: Duration) {
        if let Some(account) = account.filter(|_| status == 429 || status >= 500) {
            self.memory.record_error_wait(account, wait);
        }
        self.memory.record_url_wait(url, wait);
    }

    /// The `Retry-After` the CA last sent for `url` (an order's), consumed.
    pub fn take_retry_after(&self, url: &str) -> Option<Duration> {
        self.memory.take_url_wait(url)
    }

    /// The longest `Retry-After` the CA sent with an error answer (429, 503) to
    /// `account`'s requests since `since`: how long a rate-limited client must wait.
    pub fn error_retry_after(&self, account: &str, since: std::time::Instant) -> Option<Duration> {
        self.memory.error_wait_since(account, since)
    }
}

/// The endpoint of an ACME URL, for metrics: the leading path segments (at most three)
/// that look like words (`acme/new-order`, `authz-v3`, `v2/DV90/order`, Pebble's
/// `certZ`), so that the IDs in URLs never become label values: one series per
/// certificate would grow the metrics (and every scrape) without bound.
fn endpoint(uri: &http::Uri) -> String {
    uri.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .take_while(|s| is_word(s))
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a URL path segment reads as a word, not an ID. Each dash-separated part of a
/// word is a number of at most 3 digits, or letters (at most 15, at most 2 capitals:
/// `renewalInfo`, `DV90`) then at most 3 digits (`authz-v3`, `acme-v02`,
/// `draft-ietf-acme-ari-03`). IDs fail: hex and base64url strings (`3a084b68b86b5520`,
/// `2U-TEsA2gOaZx4vb24UhwQ`: too many capitals or digits, `_`), numbers, UUIDs.
fn is_word(s: &str) -> bool {
    fn part(p: &str) -> bool {
        let letters = p.chars().take_while(char::is_ascii_alphabetic).count();
        let digits = &p[letters..];
        let capitals = p.chars().filter(char::is_ascii_uppercase).count();
        digits.chars().all(|c| c.is_ascii_digit())
            && digits.len() <= 3
            && !p.is_empty()
            && letters <= 15
            && capitals <= 2
    }
    s.len() < 24 && s.chars().any(|c| c.is_ascii_alphabetic()) && s.split('-').all(part)
}

/// An issuer's `caBundle` as PEM: PEM as written, or base64-encoded PEM (the form of
/// cert-manager's field of the same name, so pasted manifests work).
pub fn ca_bundle_pem(bundle: &str) -> Result<String, AcmeError> {
    let bundle = bundle.trim();
    if bundle.contains("-----BEGIN") {
        return Ok(bundle.to_string());
    }
    let compact: String = bundle.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.trim_end_matches('=').as_bytes())
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.trim_end_matches('='))
        })
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|pem| pem.contains("-----BEGIN"))
        .ok_or_else(|| {
            AcmeError::InvalidSpec(
                "caBundle is neither PEM nor base64-encoded PEM: paste the CA certificates as PEM"
                    .into(),
            )
        })
}

/// The certificates of a `caBundle` (PEM or base64-encoded PEM), at least one.
fn ca_bundle_certificates(bundle: &str) -> Result<Vec<CertificateDer<'static>>, AcmeError> {
    let pem = ca_bundle_pem(bundle)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| AcmeError::InvalidSpec(format!("caBundle is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(AcmeError::InvalidSpec(
            "caBundle holds no PEM CERTIFICATE block".into(),
        ));
    }
    Ok(certs)
}

/// How long one ACME request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The hyper client under [`AcmeHttp`].
type HyperHttps = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// instant-acme's HTTP client, with the issuer's trust roots and our bookkeeping.
#[derive(Clone)]
pub struct AcmeHttp {
    client: HyperHttps,
    stats: Arc<AcmeStats>,
}

impl AcmeHttp {
    /// A client trusting exactly the PEM certificates in `ca_bundle`, or the system's roots
    /// when there is none.
    pub fn new(ca_bundle: Option<&str>, stats: Arc<AcmeStats>) -> Result<Self, AcmeError> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_bundle.map(str::trim).filter(|s| !s.is_empty()) {
            Some(bundle) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = ca_bundle_certificates(bundle)?;
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        AcmeError::InvalidSpec(format!(
                            "caBundle holds an unusable certificate: {e}"
                        ))
                    })?;
                }
                builder.with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| AcmeError::InvalidSpec(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
                )
            }
            None => builder.try_with_platform_verifier().map_err(|e| {
                AcmeError::InvalidSpec(format!("cannot load the system's trusted roots: {e}"))
            })?,
        };
        let connector = builder.https_only().enable_http1().build();
        Ok(AcmeHttp {
            client: HyperClient::builder(TokioExecutor::new()).build(connector),
            stats,
        })
    }
}

/// The account a signed request is made for: the `kid` of its JWS protected header (the
/// account URL; RFC 8555 section 6.2). `None` for requests signed with the key itself
/// (new-account) and for GETs.
fn account_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Jws {
        protected: String,
    }
    #[derive(serde::Deserialize)]
    struct Protected {
        kid: Option<String>,
    }
    let jws: Jws = serde_json::from_slice(body).ok()?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jws.protected.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Protected>(&header).ok()?.kid
}

/// How often one ACME request is sent at most when the connection drops or the CA
/// answers 500/502/503/504 without `Retry-After` (an overloaded front end, a restarting
/// CA). A replayed JWS whose nonce the CA already used is answered `badNonce`, which
/// instant-acme retries with a fresh nonce; a replayed new-order can leave one unused
/// order behind, which costs less than a failed issuance and its backoff.
const MAX_ATTEMPTS: u32 = 3;

/// `Retry-After` as seconds or an HTTP date (RFC 9110 section 10.2.3), at most a day.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
            Duration::try_from(at.duration_since(now)).unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(24 * 3600)))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let stats = self.stats.clone();
        Box::pin(send(client, stats, req))
    }
}

/// Sends one ACME request, again (up to [`MAX_ATTEMPTS`] times in all) when the
/// connection drops or the CA answers 500/502/503/504 without `Retry-After`; counts every
/// answer (status 0: none) and records the `Retry-After` of the one handed back.
async fn send(
    client: HyperHttps,
    stats: Arc<AcmeStats>,
    req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, instant_acme::Error> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let endpoint = endpoint(&parts.uri);
    let url = parts.uri.to_string();
    let mut attempt = 1;
    loop {
        let req = copy_request(&parts, &body)?;
        // A CA that accepts connections and then says nothing must not hold a
        // reconcile forever (and is not asked again at once).
        let Ok(response) = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req)).await else {
            stats.count(&endpoint, 0);
            return Err(instant_acme::Error::Other(
                format!("no answer from the ACME server within {REQUEST_TIMEOUT:?}").into(),
            ));
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                stats.count(&endpoint, 0);
                if attempt < MAX_ATTEMPTS {
                    tracing::debug!(%url, attempt, "ACME request failed ({e}); sending it again");
                    pause_before_resending(attempt).await;
                    attempt += 1;
                    continue;
                }
                return Err(instant_acme::Error::Other(Box::new(e)));
            }
        };
        let status = response.status().as_u16();
        stats.count(&endpoint, status);
        let retry_after = retry_after(response.headers());
        if matches!(status, 500 | 502 | 503 | 504)
            && retry_after.is_none()
            && attempt < MAX_ATTEMPTS
        {
            tracing::debug!(%url, attempt, status, "the CA answered {status}; sending the request again");
            pause_before_resending(attempt).await;
            attempt += 1;
            continue;
        }
        if let Some(wait) = retry_after {
            stats.record_retry_after(account_of(&body).as_deref(), status, &url, wait);
        }
        return Ok(BytesResponse::from(response));
    }
}

/// Every ACME request names its client (RFC 8555 section 6.1: "ACME clients MUST send a
/// User-Agent header field"; Pebble 2.10 and Boulder refuse requests without one).
const USER_AGENT: &str = concat!("caas-operator/", env!("CARGO_PKG_VERSION"));

/// A fresh copy of a request (method, URI, version, headers, body), with our
/// `User-Agent` unless it has one, to send (again).
fn copy_request(
    parts: &http::request::Parts,
    body: &Bytes,
) -> Result<Request<BodyWrapper<Bytes>>, instant_acme::Error> {
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    if !parts.headers.contains_key(http::header::USER_AGENT) {
        builder = builder.header(http::header::USER_AGENT, USER_AGENT);
    }
    builder
        .body(BodyWrapper::from(body.to_vec()))
        .map_err(|e| instant_acme::Error::Other(Box::new(e)))
}

/// The pause before sending a request again after failed attempt number `attempt`
/// (from 1): 250 ms, then 1 s.
async fn pause_before_resending(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(250 * 4u64.pow(attempt - 1))).await;
}

/// An answer's `Retry-After`, if it has a readable one.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_of_a_request_is_its_jws_kid() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jws = |protected: &str| {
            format!(
                r#"{{"protected":"{}","payload":"","signature":"x"}}"#,
                b64(protected)
            )
        };
        let signed = jws(r#"{"alg":"ES256","kid":"https://ca/acct/7","nonce":"n","url":"u"}"#);
        assert_eq!(
            account_of(signed.as_bytes()).as_deref(),
            Some("https://ca/acct/7")
        );
        let new_account = jws(r#"{"alg":"ES256","jwk":{"kty":"EC"},"nonce":"n","url":"u"}"#);
        assert_eq!(account_of(new_account.as_bytes()), None);
        assert_eq!(account_of(b""), None, "a GET");
        assert_eq!(account_of(b"{\"protected\":\"%%%\"}"), None);
    }

    #[test]
    fn endpoints_drop_ids() {
        let uri: http::Uri = "https://ca.example/acme/order/123/abc".parse().unwrap();
        assert_eq!(endpoint(&uri), "acme/order");
        let uri: http::Uri = "https://127.0.0.1:14000/my-order/Xy3kPq_aB9cD0eF1gH2iJ3kL4mN5"
            .parse()
            .unwrap();
        assert_eq!(endpoint(&uri), "my-order");
        for (url, want) in [
            // Pebble 2.10: 16 hex digits.
            ("https://p:14000/certZ/3a084b68b86b5520", "certZ"),
            (
                "https://p:14000/draft-ietf-acme-ari-03/renewalInfo/aBc.DeF",
                "draft-ietf-acme-ari-03/renewalInfo",
            ),
            // Let's Encrypt.
            (
                "https://acme-v02.api.letsencrypt.org/acme/authz-v3/1234567",
                "acme/authz-v3",
            ),
            (
                "https://acme-v02.api.letsencrypt.org/acme/cert/03ab9f0e1c2d3e4f5a6b7c8d9e0f1a2b3c4d",
                "acme/cert",
            ),
            (
                "https://acme-v02.api.letsencrypt.org/acme/chall-v3/12/AbCdEf",
                "acme/chall-v3",
            ),
            // ZeroSSL / Sectigo: base64url IDs, digits or not.
            (
                "https://acme.zerossl.com/v2/DV90/order/AbCdEfGhIjKlMnOpQrStUv",
                "v2/DV90/order",
            ),
            (
                "https://acme.zerossl.com/v2/DV90/cert/Ab_dEf9hIjKlMnOpQrStUv",
                "v2/DV90/cert",
            ),
            (
                "https://acme.zerossl.com/v2/DV90/authz/AbCdEfGh12",
                "v2/DV90/authz",
            ),
            (
                "https://acme.zerossl.com/v2/DV90/newNonce",
                "v2/DV90/newNonce",
            ),
            // Google Trust Services: base64url IDs, some with a dash.
            (
                "https://dv.acme-v02.api.pki.goog/authz/IUfYm2Bv1O2qH5Qi4Z1jqA",
                "authz",
            ),
            (
                "https://dv.acme-v02.api.pki.goog/order/2U-TEsA2gOaZx4vb24UhwQ",
                "order",
            ),
            (
                "https://dv.acme-v02.api.pki.goog/chall/Ab-CdEfGh-IjKlMn",
                "chall",
            ),
            ("https://dv.acme-v02.api.pki.goog/new-nonce", "new-nonce"),
            // A UUID.
            (
                "https://ca.example/order/1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                "order",
            ),
        ] {
            assert_eq!(endpoint(&url.parse().unwrap()), want, "{url}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        // A date in the past means now; absurd values are capped at a day.
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
