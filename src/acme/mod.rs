//! The ACME side: an HTTP client for instant-acme that trusts an issuer's `caBundle`,
//! counts requests and remembers `Retry-After`; account registration with External
//! Account Binding; and the classification of CA errors into reasons users act on.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use instant_acme::Account;

#[cfg(test)]
use rustls_pki_types::PrivatePkcs8KeyDer;
#[cfg(test)]
use rustls_pki_types::pem::PemObject;

pub mod direct;
mod jws;
mod transport;
pub use direct::{AccountKey, Direct, Eab, MacAlgorithm};
pub use transport::{AcmeHttp, AcmeStats, REQUEST_TIMEOUT, ca_bundle_pem, parse_retry_after};

/// What went wrong talking to a CA, sorted by what a user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The issuer spec cannot work as written.
    #[error("{0}")]
    InvalidSpec(String),
    /// The CA refused the External Account Binding (wrong key ID or HMAC key).
    #[error("the CA rejected the External Account Binding: {0}")]
    EabRejected(String),
    /// The CA could not be reached or did not answer ACME.
    #[error("cannot reach the ACME server: {0}")]
    Unreachable(String),
    /// The CA asks us to slow down.
    #[error("rate limited by the CA: {detail}")]
    RateLimited {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The CA answered with a problem document.
    #[error("the CA refused: {0}")]
    Problem(String),
    /// The account key Secret holds a key the CA does not know.
    #[error("{0}")]
    AccountNotFound(String),
    /// The CA rejected a nonce more often than the client retries on its own: a transient
    /// condition, retried at once and never counted as a failure.
    #[error("the CA rejected the request's nonce")]
    BadNonce,
}

impl AcmeError {
    /// Classifies an instant-acme error.
    pub fn from_acme(e: instant_acme::Error) -> AcmeError {
        match e {
            instant_acme::Error::Api(problem) => {
                let kind = problem
                    .r#type
                    .as_deref()
                    .unwrap_or("")
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let detail = problem.detail.clone().unwrap_or_default();
                let text = format!("{kind}: {detail}");
                match kind.as_str() {
                    "rateLimited" => AcmeError::RateLimited {
                        detail: text,
                        retry_after: None,
                    },
                    "badNonce" => AcmeError::BadNonce,
                    "externalAccountRequired" => AcmeError::EabRejected(text),
                    "unauthorized" | "malformed"
                        if detail.to_ascii_lowercase().contains("external account")
                            || detail.to_ascii_lowercase().contains("eab") =>
                    {
                        AcmeError::EabRejected(text)
                    }
                    "accountDoesNotExist" => AcmeError::AccountNotFound(format!(
                        "the CA has no account for the key in the account key Secret ({text}); \
                         the issuer registers it"
                    )),
                    _ => AcmeError::Problem(text),
                }
            }
            instant_acme::Error::Hyper(e) => AcmeError::Unreachable(e.to_string()),
            instant_acme::Error::Other(e) => AcmeError::Unreachable(error_chain(&*e)),
            instant_acme::Error::Json(e) => {
                AcmeError::Unreachable(format!("the server did not answer ACME JSON: {e}"))
            }
            other => AcmeError::Problem(other.to_string()),
        }
    }

    /// The condition reason for this error.
    pub fn reason(&self) -> crate::api::Reason {
        use crate::api::Reason;
        match self {
            AcmeError::InvalidSpec(_) => Reason::InvalidSpec,
            AcmeError::EabRejected(_) => Reason::EabRejected,
            AcmeError::Unreachable(_) => Reason::ServerUnreachable,
            AcmeError::RateLimited { .. } => Reason::RateLimited,
            AcmeError::Problem(_) => Reason::AcmeError,
            AcmeError::AccountNotFound(_) => Reason::AccountNotFound,
            AcmeError::BadNonce => Reason::BadNonce,
        }
    }

    /// Errors worth retrying at once without counting a failure.
    pub fn is_transient(&self) -> bool {
        matches!(self, AcmeError::BadNonce)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Decodes an EAB HMAC key as CAs hand it out: base64url, padded or not (standard
/// base64 accepted too).
pub fn decode_eab_hmac(raw: &[u8]) -> Result<Vec<u8>, AcmeError> {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            AcmeError::InvalidSpec(
                "the EAB HMAC key is not base64url: copy it exactly as the CA shows it".into(),
            )
        })
}

/// An ACME account: instant-acme's for everything it does, [`Direct`] for the requests
/// it cannot make.
#[derive(Clone)]
pub struct AcmeAccount {
    pub acme: Account,
    pub direct: Arc<Direct>,
}

impl std::ops::Deref for AcmeAccount {
    type Target = Account;
    fn deref(&self) -> &Account {
        &self.acme
    }
}

/// What registering an account sends besides the key.
pub struct Registration<'a> {
    pub email: Option<&'a str>,
    pub eab: Option<&'a Eab>,
}

/// The account of `key` at `server`: the one the CA has for that key; when it has none,
/// registered now (with EAB) if `register` is given, else [`AcmeError::AccountNotFound`].
/// Registering reuses the stored key, so a retry after any failure or restart finds the
/// account made before instead of making (and binding the EAB key to) a second one.
pub async fn account(
    http: &AcmeHttp,
    server: &str,
    key: AccountKey,
    register: Option<Registration<'_>>,
) -> Result<AcmeAccount, AcmeError> {
    let server = server.trim();
    let direct = Direct::new(http, server, key)
        .await
        .map_err(AcmeError::from_acme)?;
    let kid = match direct.find_account().await.map_err(AcmeError::from_acme)? {
        Some(kid) => kid,
        None => match register {
            Some(r) => direct
                .register(r.email, r.eab)
                .await
                .map_err(AcmeError::from_acme)?,
            None => {
                return Err(AcmeError::AccountNotFound(
                    "the CA has no account for the key in the account key Secret yet; \
                     the issuer registers it"
                        .into(),
                ));
            }
        },
    };
    attach(http, server, direct, kid).await
}

/// Hands an account found or registered by [`Direct`] over to instant-acme.
pub async fn attach(
    http: &AcmeHttp,
    server: &str,
    direct: Arc<Direct>,
    kid: String,
) -> Result<AcmeAccount, AcmeError> {
    let acme = Account::builder_with_http(Box::new(http.clone()))
        .from_parts(kid, direct.key.der(), server.trim().to_string())
        .await
        .map_err(AcmeError::from_acme)?;
    Ok(AcmeAccount { acme, direct })
}

/// Finds the existing account for an account key (PKCS#8 PEM); never registers.
pub async fn load(http: &AcmeHttp, server: &str, key_pem: &str) -> Result<AcmeAccount, AcmeError> {
    account(http, server, AccountKey::from_pem(key_pem)?, None).await
}

pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eab_hmac_padded_unpadded_and_garbage() {
        assert_eq!(decode_eab_hmac(b"AAEC").unwrap(), vec![0, 1, 2]);
        assert_eq!(decode_eab_hmac(b"AAE=").unwrap(), vec![0, 1]);
        assert_eq!(decode_eab_hmac(b"AAE\n").unwrap(), vec![0, 1]);
        assert_eq!(decode_eab_hmac(b"-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_eab_hmac(b"***").is_err());
        assert!(decode_eab_hmac(b"").is_err());
    }

    #[test]
    fn pem_roundtrip() {
        let pem = pem_encode("PRIVATE KEY", &[1, 2, 3]);
        assert_eq!(
            PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .secret_pkcs8_der(),
            &[1, 2, 3]
        );
    }
}
