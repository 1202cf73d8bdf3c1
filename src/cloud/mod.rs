//! The cloud layer: credentials and API clients for AWS, Google Cloud and Azure, on the
//! providers' maintained SDK crates, shared by the DNS-01 providers and (next) the
//! deployment targets. It imports only [`crate::api`] and [`crate::shared`].
//!
//! Every client says which credential source signed in ([`CredentialSource`]), never
//! the credential itself: Issuer status and `kubectl caas check issuer` show it.

use std::fmt;

/// Which credential source a cloud client signed in with, e.g. `AWS: web identity
/// (IRSA) for role arn:aws:iam::1:role/dns`, `Google: metadata server`. Holds names and
/// ARNs only, never a key or token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSource {
    /// `AWS`, `Google` or `Azure`.
    pub cloud: &'static str,
    /// The source, in the provider's own terms.
    pub source: String,
}

impl CredentialSource {
    pub fn new(cloud: &'static str, source: impl Into<String>) -> Self {
        CredentialSource {
            cloud,
            source: source.into(),
        }
    }
}

/// An environment variable's value, unset when empty.
pub(crate) fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cloud, self.source)
    }
}
pub mod aws;

pub mod azure;
pub mod google;

/// A cloud credential source could not give a token: in the provider's (or its SDK's)
/// own words, with the source named, never the credential.
#[derive(Debug, thiserror::Error)]
#[error("{credential} gave no token: {message}")]
pub struct TokenError {
    pub credential: CredentialSource,
    pub message: String,
}

/// The HTTP client the cloud SDKs send through (Azure's pipeline, the GCE metadata
/// server): reqwest on rustls with `ring`, the operator's process-wide crypto provider
/// (installed here too, so a client made outside `main` works the same).
pub fn http_client() -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))
}
