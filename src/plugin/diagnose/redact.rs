//! Redaction of a support bundle: the secret values to hide (and their base64 forms),
//! PEM private keys and bearer tokens, and the scan that refuses a bundle with anything
//! secret left. Pure.

use std::collections::BTreeSet;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

pub const REDACTED: &str = "[REDACTED]";

/// Values (and their base64 forms) that must not appear in the bundle.
#[derive(Default)]
pub struct Secrets(BTreeSet<String>);

impl Secrets {
    pub fn add(&mut self, value: &str) {
        // The value as stored (base64 of the raw bytes, trailing newline and all) and
        // trimmed.
        if value.len() >= 8 {
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                self.0.insert(engine.encode(value));
            }
        }
        let value = value.trim();
        // Short values ("1", "true", a port) would redact half the bundle, and are not
        // credentials.
        if value.len() < 8 {
            return;
        }
        self.0.insert(value.to_string());
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            self.0.insert(engine.encode(value));
        }
        for line in value.lines().map(str::trim).filter(|l| l.len() >= 16) {
            if !line.starts_with("-----") {
                self.0.insert(line.to_string());
            }
        }
    }

    /// Every value of the Secret.
    pub fn add_secret(&mut self, secret: &Secret) {
        for v in secret.data.iter().flat_map(|d| d.values()) {
            if let Ok(text) = std::str::from_utf8(&v.0) {
                self.add(text);
            }
        }
    }

    /// The private keys of a Secret the operator manages (its certificates are public).
    pub fn add_managed_keys(&mut self, secret: &Secret) {
        for (k, v) in secret.data.iter().flatten() {
            if (k.ends_with(".key") || k.contains("key.next"))
                && let Ok(text) = std::str::from_utf8(&v.0)
            {
                self.add(text);
            }
        }
    }
}

/// `text` with every known secret value, PEM private key and bearer token replaced.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    let mut out = text.to_string();
    // Longest first: a value containing another is replaced whole.
    let mut values: Vec<&String> = secrets.0.iter().collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    redact_bearer(&redact_private_keys(out))
}

/// PEM private keys, whatever their type; certificates stay.
fn redact_private_keys(mut out: String) -> String {
    let mut from = 0;
    while let Some(found) = out[from..].find("-----BEGIN ") {
        let start = from + found;
        let label_start = start + "-----BEGIN ".len();
        let Some(label_len) = out[label_start..].find("-----") else {
            break;
        };
        let label = out[label_start..label_start + label_len].to_string();
        if !label.contains("PRIVATE KEY") {
            from = label_start + label_len;
            continue;
        }
        let end_marker = format!("-----END {label}-----");
        let end = out[start..]
            .find(&end_marker)
            .map(|e| start + e + end_marker.len())
            .unwrap_or(out.len());
        out.replace_range(start..end, REDACTED);
        from = start + REDACTED.len();
    }
    out
}

fn redact_bearer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("Bearer ") {
        out.push_str(&rest[..at + 7]);
        let tail = &rest[at + 7..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// What is left that must not be sent: `None` when clean.
pub fn leftover(text: &str, secrets: &Secrets) -> Option<String> {
    if secrets.0.iter().any(|v| text.contains(v.as_str())) {
        return Some("a secret value is still present".to_string());
    }
    text.contains("PRIVATE KEY-----")
        .then(|| "a PEM private key is still present".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_keys_and_tokens_are_redacted() {
        let mut s = Secrets::default();
        let hmac = "c2VjcmV0LWhtYWMta2V5LXZhbHVl";
        s.add(hmac);
        s.add("short");
        let b64 = base64::engine::general_purpose::STANDARD.encode(hmac);
        let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----";
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        let text = format!(
            "hmac {hmac} again {b64}\n{cert}\n{key}\nAuthorization: Bearer abc.def-123, x short"
        );
        let out = redact(&text, &s);
        assert!(!out.contains(hmac) && !out.contains(&b64), "{out}");
        assert!(
            !out.contains("MHcCAQEEIB") && !out.contains("PRIVATE KEY"),
            "{out}"
        );
        assert!(
            out.contains("BEGIN CERTIFICATE"),
            "certificates stay: {out}"
        );
        assert!(out.contains("Bearer [REDACTED], x short"), "{out}");
        assert_eq!(leftover(&out, &s), None);
        assert!(leftover(&text, &s).is_some());
    }

    #[test]
    fn only_the_keys_of_managed_secrets_are_redacted() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web-tls" },
            "data": {
                "tls.crt": "Y2VydGlmaWNhdGUtdGV4dC1wdWJsaWM=",
                "tls.key": "a2V5LXRleHQtdGhhdC1pcy1zZWNyZXQ=",
            }
        }))
        .unwrap();
        let mut s = Secrets::default();
        s.add_managed_keys(&secret);
        let out = redact("key-text-that-is-secret certificate-text-public", &s);
        assert_eq!(out, "[REDACTED] certificate-text-public");
        let mut all = Secrets::default();
        all.add_secret(&secret);
        assert_eq!(
            redact("key-text-that-is-secret certificate-text-public", &all),
            "[REDACTED] [REDACTED]"
        );
    }
}
