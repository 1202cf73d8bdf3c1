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
        // No redirects: a redirect to another host would carry the credentials there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeployError::Unreachable(format!("cannot make an HTTP client: {e}")))?;
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

    /// A read of what may be missing: the body, or `None` on 404.
    pub async fn read(&self, path: &str) -> Result<Option<Value>, DeployError> {
        self.maybe(Method::GET, path, "read").await
    }

    /// A delete of what may be gone already: the answer's body, or `None` on 404.
    pub async fn delete(&self, path: &str) -> Result<Option<Value>, DeployError> {
        self.maybe(Method::DELETE, path, "delete").await
    }

    async fn maybe(
        &self,
        method: Method,
        path: &str,
        what: &str,
    ) -> Result<Option<Value>, DeployError> {
        let answer = self.send(method, path, None).await?;
        match answer.status {
            404 => Ok(None),
            _ if answer.ok() => Ok(Some(answer.body)),
            _ => Err(self.failed(what, &answer)),
        }
    }

    /// A refusal as a [`DeployError`]: "not now" (429, 5xx) is retried as is, the rest
    /// needs a fix. `what` names the call (`upload`, `import`).
    pub fn failed(&self, what: &str, answer: &Answer) -> DeployError {
        let words = format!("{} {what}: {}", self.service, (self.words)(answer));
        match matches!(answer.status, 408 | 429) || answer.status >= 500 {
            true => DeployError::Unreachable(words),
            false => DeployError::refused(words),
        }
    }
}

/// A JSON body for a message when the service's own error fields are missing: at most
/// 300 characters (a proxy echoing the request must not put a key into status).
pub fn short(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// Whether `url` is `https://` on a host ending with one of `suffixes`: where the
/// operator's own cloud identity may send its tokens.
pub fn https_host_in(url: &str, suffixes: &[&str]) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let host = rest.split(['/', ':', '?', '#']).next().unwrap_or_default();
    !rest.contains('@') && suffixes.iter().any(|s| host.ends_with(s))
}

/// A name the target gives that goes into a URL path: only `allowed` characters, 1 to
/// `max` of them (so no `/` or `..` can lead the call elsewhere).
pub fn check_name(
    field: &str,
    value: &str,
    allowed: fn(char) -> bool,
    max: usize,
) -> Result<(), DeployError> {
    match !value.is_empty() && value.len() <= max && value.chars().all(allowed) {
        true => Ok(()),
        false => Err(DeployError::invalid(format!(
            "{field} {value:?} is not a valid name here (at most {max} letters, digits and '-')"
        ))),
    }
}

/// Letters, digits and `-`.
pub fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Lowercase letters, digits and `-` (Google's resource IDs).
pub fn lower_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
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

/// The default remote name of Certificate `key` (`namespace/name`):
/// `namespace-name` in `allowed` characters (others become `-`), cut to leave room for
/// `-` and six hex digits of the key's SHA-256, so that `a-b/c` and `a/b-c` (or two long
/// names alike at the start) never share a certificate. `lowercase` for Google's IDs,
/// which also start with a letter.
pub fn default_name(key: &str, allowed: fn(char) -> bool, max: usize, lowercase: bool) -> String {
    let text = key.replacen('/', "-", 1);
    let text = if lowercase {
        text.to_ascii_lowercase()
    } else {
        text
    };
    let mapped: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(max - 7)
        .collect();
    let mut base = mapped.trim_matches('-').to_string();
    if lowercase && !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 'c');
        base.truncate(max - 7);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hash: String = digest.as_ref()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{hash}", base.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_to_the_clouds_hosts_only_and_names_stay_in_their_path() {
        let vaults = &[".vault.azure.net"];
        assert!(https_host_in("https://shop.vault.azure.net/", vaults));
        assert!(https_host_in("https://shop.vault.azure.net:443", vaults));
        assert!(!https_host_in("http://shop.vault.azure.net", vaults));
        assert!(!https_host_in(
            "https://shop.vault.azure.net.evil.example",
            vaults
        ));
        assert!(!https_host_in(
            "https://x@evil.example/.vault.azure.net",
            vaults
        ));
        assert!(check_name("certificateName", "shop-tls", name_char, 127).is_ok());
        for bad in ["", "../secrets", "a/b", "a?b"] {
            assert!(
                check_name("certificateName", bad, name_char, 127).is_err(),
                "{bad}"
            );
        }
        let long = serde_json::json!({ "echo": "k".repeat(1000) });
        assert!(short(&long).len() <= 303);
    }

    #[test]
    fn default_names_are_readable_and_never_shared() {
        let kv = |c: char| c.is_ascii_alphanumeric() || c == '-';
        let name = default_name("shop/web.tls", kv, 127, false);
        assert!(
            name.starts_with("shop-web-tls-") && name.len() == 19,
            "{name}"
        );
        assert_ne!(
            default_name("a-b/c", kv, 127, false),
            default_name("a/b-c", kv, 127, false)
        );
        let google = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let id = default_name("1shop/Web", google, 63, true);
        assert!(id.starts_with("c1shop-web-"), "{id}");
        let long = default_name(&format!("ns/{}", "a".repeat(80)), google, 63, true);
        assert_eq!(long.len(), 63, "{long}");
        let other = default_name(&format!("ns/{}b", "a".repeat(80)), google, 63, true);
        assert_ne!(long, other);
    }
}
