//! Why a DNS-01 record could not be published or removed: shared by RFC 2136
//! ([`crate::solvers::rfc2136`]), the HTTP providers' APIs and the propagation check.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid RFC 2136 solver configuration: {0}")]
    Config(String),
    #[error("DNS server {server} did not answer: {message}")]
    Unreachable { server: SocketAddr, message: String },
    #[error("DNS server {server} refused the update of {name} in zone {zone}: {code} ({hint})")]
    Refused {
        server: SocketAddr,
        name: String,
        zone: String,
        code: String,
        hint: &'static str,
    },
    #[error("DNS server {server} is not authoritative for a zone holding {name}")]
    NoZone { server: SocketAddr, name: String },
    /// A DNS provider's API refused or failed, in its own words.
    #[error("{provider} refused the change of {name} in zone {zone}: {message}")]
    Api {
        provider: &'static str,
        name: String,
        zone: String,
        message: String,
    },
    /// A DNS provider's API could not be reached or answered nonsense.
    #[error("{provider} API at {url} did not answer: {message}")]
    ApiUnreachable {
        provider: &'static str,
        url: String,
        message: String,
    },
    /// The provider's cloud credentials gave no access token (in the SDK's or the
    /// token endpoint's words; the source named, never the credential).
    #[error("{provider}: {error}")]
    SignIn {
        provider: &'static str,
        error: crate::cloud::TokenError,
    },
    /// No cloud credentials could be had (no source, or the source refused).
    #[error("could not sign in to {cloud}: {message}")]
    CloudSignIn {
        cloud: &'static str,
        message: String,
    },
    /// No zone of the provider's account holds the name.
    #[error("{provider} has no zone holding {name} for these credentials")]
    NoProviderZone {
        provider: &'static str,
        name: String,
    },
}

impl DnsError {
    /// A provider's API refused the change of `name` in `zone`, in `message` (its words).
    pub fn api(
        provider: &'static str,
        name: impl Into<String>,
        zone: impl Into<String>,
        message: String,
    ) -> DnsError {
        DnsError::Api {
            provider,
            name: name.into(),
            zone: zone.into(),
            message,
        }
    }
}
