//! JSON over HTTPS for the destinations whose few calls are not worth an SDK crate
//! (Cloudflare, Azure Key Vault, Google Certificate Manager: none has a maintained Rust
//! SDK on our rustls/ring stack; Azure's pre-1.0 `azure_security_keyvault_certificates`
//! would add an API to track for two calls), on the cloud layer's reqwest client.

use reqwest::Method;
use serde_json::Value;

use super::DeployError;

/// How long one call may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An answer: the HTTP status and the JSON body (when it is not JSON: its first 300
/// characters as a JSON string).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One service's API: its base URL, auth headers, and how it words a refusal.
pub struct Rest {
    client: reqwest::Client,
    base: String,
    auth: Vec<(&'static str, String)>,
    /// The service's name in messages (`Cloudflare`, `Key Vault`).
    service: &'static str,
    words: fn(&Answer) -> String,
}

impl Rest {
    /// `base` without a trailing `/` (removed here); every path starts with one.
    pub fn new(
        service: &'static str,
        base: &str,
        auth: Vec<(&'static str, String)>,
        words: fn(&Answer) -> String,
    ) -> Result<Rest, DeployError> {
        let client = crate::cloud::http_client().map_err(DeployError::Unreachable)?;
        Ok(Rest {
            client,
            base: base.trim_end_matches('/').to_string(),
            auth,
            service,
            words,
        })
    }

    /// Sends one request; only a call that got no answer is an error here.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, DeployError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url).timeout(TIMEOUT);
        for (name, value) in &self.auth {
            req = req.header(*name, value);
        }
        if let Some(json) = body {
            req = req
                .header("content-type", "application/json")
                .body(json.to_string());
        }
        let unreachable =
            |e: reqwest::Error| DeployError::Unreachable(format!("{} {url}: {e}", self.service));
        let response = req.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes).chars().take(300).collect())
        });
        Ok(Answer { status, body })
    }

    /// A call that must succeed: its answer, or the refusal in the service's words.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer, DeployError> {
        let answer = self.send(method, path, body).await?;
        match answer.ok() {
            true => Ok(answer),
            false => Err(self.failed(what, &answer)),
        }
    }

    /// A refusal as a [`DeployError`]: "not now" (429, 5xx) is retried as is, the rest
    /// needs a fix. `what` names the call (`upload`, `import`).
    pub fn failed(&self, what: &str, answer: &Answer) -> DeployError {
        let words = format!("{} {what}: {}", self.service, (self.words)(answer));
        match answer.status == 429 || answer.status >= 500 {
            true => DeployError::Unreachable(words),
            false => DeployError::refused(words),
        }
    }
}

/// The serial number (lowercase hex, as `pki::CertInfo::serial`) of a DER certificate.
pub fn der_serial(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.raw_serial_as_string().replace(':', ""))
}

/// The serial number of the first certificate of a PEM text.
pub fn pem_serial(pem: &str) -> Option<String> {
    crate::pki::parse_chain(pem).ok().map(|info| info.serial)
}

/// `text` as a name of `allowed` characters (others become `-`), at most `max` long,
/// without `-` at either end: a default name made from `<namespace>-<certificate>`.
pub fn name_from(text: &str, allowed: fn(char) -> bool, max: usize) -> String {
    let mapped: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(max)
        .collect();
    mapped.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_keep_the_allowed_characters() {
        let kv = |c: char| c.is_ascii_alphanumeric() || c == '-';
        assert_eq!(name_from("shop-tls.example", kv, 127), "shop-tls-example");
        let google = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        assert_eq!(
            name_from("Shop.web", google, 63),
            "hop-web",
            "callers lowercase first"
        );
        assert_eq!(name_from(&"a".repeat(70), google, 63).len(), 63);
    }
}
