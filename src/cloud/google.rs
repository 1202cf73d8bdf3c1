//! Google Cloud access tokens, from (in this order of preference) a service account JSON
//! key in a Secret, the key `GOOGLE_APPLICATION_CREDENTIALS` names, or the metadata server
//! (GKE Workload Identity, GCE). Keys go through `gcp_auth` (it signs the JWT and
//! exchanges it at the key's `token_uri`, and caches the token).
//!
//! The metadata server is asked here with one plain GET: `gcp_auth` 0.12.7 (the newest)
//! hard-codes `metadata.google.internal` and ignores `GCE_METADATA_HOST`, which GKE's
//! metadata proxy and every test bed rely on. A metadata token is not an OAuth exchange:
//! the server hands out the token of the workload's service account.
//!
//! Workload identity federation (`"type": "external_account"` credentials) is not
//! supported by `gcp_auth`; such a file is refused with a message saying so.

use std::sync::Arc;

use gcp_auth::{CustomServiceAccount, TokenProvider};
use serde::Deserialize;

use super::{CredentialSource, TokenError, env};

/// Read and write access to Cloud DNS.
pub const DNS_SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
const CLOUD: &str = "Google";
const METADATA_HOST: &str = "metadata.google.internal";
const METADATA_TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Where tokens come from.
enum Source {
    Key {
        account: Arc<CustomServiceAccount>,
        token_uri: String,
    },
    Metadata {
        client: reqwest::Client,
        url: String,
    },
}

/// A signed-in Google credential: gives access tokens and says where they come from.
pub struct GoogleAuth {
    source: Source,
    named: CredentialSource,
}

/// The fields of a credentials JSON file this module reads itself (names, never keys).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    token_uri: String,
}

impl GoogleAuth {
    /// A service account JSON key, read from `from` (e.g. `Secret ns/name`).
    pub fn from_key(json: &str, from: &str) -> Result<GoogleAuth, TokenError> {
        let file: Option<KeyFile> = serde_json::from_str(json).ok();
        let email = file.as_ref().map_or("", |f| f.client_email.as_str());
        let named = named(format!("service account key {email} from {from}"));
        let refused = |message: String| TokenError {
            credential: named.clone(),
            message,
        };
        let file = file.filter(|f| f.kind == "service_account" && !f.client_email.is_empty());
        let Some(file) = file else {
            return Err(refused(
                "not a service account JSON key (type service_account, client_email, private_key, token_uri)".into(),
            ));
        };
        let account = CustomServiceAccount::from_json(json)
            .map_err(|e| refused(format!("not a usable service account key: {e}")))?;
        let source = Source::Key {
            account: Arc::new(account),
            token_uri: file.token_uri,
        };
        Ok(GoogleAuth { source, named })
    }

    /// The workload's own credentials: the key file `GOOGLE_APPLICATION_CREDENTIALS`
    /// names, else the metadata server (`GCE_METADATA_HOST`, else
    /// `metadata.google.internal`).
    pub fn ambient() -> Result<GoogleAuth, TokenError> {
        if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
            let from = format!("GOOGLE_APPLICATION_CREDENTIALS ({path})");
            let json = std::fs::read_to_string(&path).map_err(|e| TokenError {
                credential: named(from.clone()),
                message: format!("cannot read the file: {e}"),
            })?;
            let kind = serde_json::from_str::<KeyFile>(&json).map(|f| f.kind);
            if kind.as_deref().is_ok_and(|k| k == "external_account") {
                return Err(TokenError {
                    credential: named(format!("workload identity federation from {from}")),
                    message: "external_account credentials are not supported (gcp_auth has no token exchange for them); use GKE Workload Identity (the metadata server) or a service account key".into(),
                });
            }
            return GoogleAuth::from_key(&json, &from);
        }
        let host = env("GCE_METADATA_HOST").unwrap_or_else(|| METADATA_HOST.to_string());
        let named = named(format!("metadata server {host}"));
        let client = super::http_client().map_err(|message| TokenError {
            credential: named.clone(),
            message,
        })?;
        let url = format!("http://{host}{METADATA_TOKEN}");
        let source = Source::Metadata { client, url };
        Ok(GoogleAuth { source, named })
    }

    /// Where the tokens come from (never a key or token).
    pub fn source(&self) -> &CredentialSource {
        &self.named
    }

    /// An access token for `scope`.
    pub async fn token(&self, scope: &str) -> Result<String, TokenError> {
        let refused = |message: String| TokenError {
            credential: self.named.clone(),
            message,
        };
        match &self.source {
            Source::Key { account, token_uri } => match account.token(&[scope]).await {
                Ok(token) => Ok(token.as_str().to_string()),
                // gcp_auth keeps the endpoint's answer out of its error (it logs it as a
                // warning, which the operator's log shows).
                Err(e) => Err(refused(format!(
                    "{e} at {token_uri} (the token endpoint refused the key, or did not answer; gcp_auth logs its answer)"
                ))),
            },
            Source::Metadata { client, url } => metadata_token(client, url).await.map_err(refused),
        }
    }
}

/// The metadata server's token: `GET` with `Metadata-Flavor: Google`, answering
/// `{"access_token", "expires_in", "token_type"}`.
async fn metadata_token(client: &reqwest::Client, url: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
    }
    let response = client
        .get(url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| format!("no answer from {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let text: String = text.chars().take(300).collect();
        return Err(format!("{url} answered {status}: {text}"));
    }
    serde_json::from_str::<Answer>(&text)
        .map(|a| a.access_token)
        .map_err(|_| format!("{url} answered {status} without an access_token"))
}

fn named(source: String) -> CredentialSource {
    CredentialSource::new(CLOUD, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_named_by_its_account_and_a_non_key_is_refused_without_its_content() {
        let err = GoogleAuth::from_key(
            r#"{"type":"authorized_user","client_secret":"s3cr3t"}"#,
            "Secret ns/k",
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains("Secret ns/k"), "{err}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
