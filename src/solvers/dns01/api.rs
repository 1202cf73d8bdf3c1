//! A small JSON-over-HTTPS client for the DNS providers' REST APIs. Each provider's few
//! calls are typed in its own file; their SDKs are either not in Rust, or (AWS) would
//! cost minutes of compile time on 2 cores for four requests.

use std::time::Duration;

use http::Method;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::DnsError;

/// How long one API request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct ApiClient {
    provider: &'static str,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// An answer: HTTP status and JSON body (`Null` when there is none or it is not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl ApiClient {
    /// A client trusting the system's roots (plain `http://` too: proxies, tests).
    pub fn new(provider: &'static str) -> Result<ApiClient, DnsError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| DnsError::Config(format!("cannot load the system's trusted roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(ApiClient {
            provider,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends one request with `headers` and an optional JSON body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, DnsError> {
        let payload = body.map(|b| ("application/json", Bytes::from(b.to_string())));
        self.request(method, url, headers, payload, true).await
    }

    /// Sends one request with a text body (the caller sets its content type); the answer's
    /// body as a JSON string, unparsed (XML APIs).
    pub async fn send_raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&str>,
    ) -> Result<Answer, DnsError> {
        let payload = body.map(|b| ("", Bytes::from(b.to_string())));
        self.request(method, url, headers, payload, false).await
    }

    async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Bytes)>,
        json: bool,
    ) -> Result<Answer, DnsError> {
        let unreachable = |message: String| DnsError::ApiUnreachable {
            provider: self.provider,
            url: url.to_string(),
            message,
        };
        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let payload = match body {
            Some((content_type, bytes)) => {
                if !content_type.is_empty() {
                    req = req.header(http::header::CONTENT_TYPE, content_type);
                }
                bytes
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let text = || Value::String(String::from_utf8_lossy(&bytes).into_owned());
        let body = match json {
            true => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                let text = String::from_utf8_lossy(&bytes);
                Value::String(text.chars().take(300).collect())
            }),
            false => text(),
        };
        Ok(Answer { status, body })
    }
}

/// The names a zone holding `fqdn` may have, longest first (`a.b.example.com.` ->
/// `a.b.example.com`, `b.example.com`, `example.com`); never a bare top-level label.
pub fn zone_candidates(fqdn: &str) -> Vec<String> {
    let name = fqdn.trim_end_matches('.');
    let labels: Vec<&str> = name.split('.').collect();
    (0..labels.len().saturating_sub(1))
        .map(|i| labels[i..].join("."))
        .collect()
}

/// `fqdn` relative to `zone` (`_acme-challenge.a` in `example.com`), `@` for the apex.
pub fn relative(fqdn: &str, zone: &str) -> String {
    let name = fqdn.trim_end_matches('.');
    match name.strip_suffix(zone).and_then(|r| r.strip_suffix('.')) {
        Some(r) => r.to_string(),
        None if name == zone => "@".to_string(),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_relative_names() {
        assert_eq!(
            zone_candidates("_acme-challenge.a.example.com."),
            vec![
                "_acme-challenge.a.example.com",
                "a.example.com",
                "example.com"
            ]
        );
        assert_eq!(
            relative("_acme-challenge.a.example.com.", "example.com"),
            "_acme-challenge.a"
        );
        assert_eq!(relative("example.com", "example.com"), "@");
    }
}
