//! Google Certificate Manager (REST v1), a self-managed certificate: `POST
//! .../certificates?certificateId=` the first time, `PATCH
//! .../certificates/{id}?updateMask=selfManaged` on renewal, `GET` to see what is there
//! (`pemCertificate`), `DELETE`. Writes answer a long-running operation, polled a few
//! times (`GET /v1/{operation}`); one still running after that is looked at again on
//! the next attempt, when the serial check tells whether it landed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::rest::{Answer, Rest, pem_serial};
use super::{Bundle, DeployError, Deployed};
use crate::api::deploy::GoogleCertificateManagerTarget as Target;
use crate::cloud::CredentialSource;
use crate::cloud::google::GoogleAuth;

pub const DEFAULT_URL: &str = "https://certificatemanager.googleapis.com";
/// The scope Certificate Manager's calls need.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Waits between polls of an operation (about 15 s in all).
const POLLS: [u64; 4] = [1, 2, 4, 8];

pub struct CertificateManager {
    rest: Rest,
    /// `projects/P/locations/L/certificates/ID`.
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    description: Option<String>,
    pub source: CredentialSource,
}

/// The certificate's ID: the target's, else one made of the Certificate's
/// `namespace/name` (`default`) in Google's characters (`a-z0-9-`, at most 63, a letter
/// first).
pub fn certificate_id(cfg: &Target, default: &str) -> String {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let made = || super::rest::default_name(default, allowed, 63, true);
    cfg.certificate_id.clone().unwrap_or_else(made)
}

/// The certificate's resource name, its identity and place.
pub fn location(cfg: &Target, default: &str) -> String {
    let region = cfg.location.as_deref().unwrap_or("global");
    let id = certificate_id(cfg, default);
    format!(
        "projects/{}/locations/{region}/certificates/{id}",
        cfg.project
    )
}

/// Google's own words: `{"error": {"code", "message", "status"}}`.
fn words(answer: &Answer) -> String {
    let error = &answer.body["error"];
    match (error["status"].as_str(), error["message"].as_str()) {
        (Some(status), Some(message)) => format!("HTTP {}: {status}: {message}", answer.status),
        _ => format!(
            "HTTP {}: {}",
            answer.status,
            super::rest::short(&answer.body)
        ),
    }
}

impl CertificateManager {
    /// Signs in with the target's service account key (a Secret in `namespace`) or,
    /// when it names none and `ambient` allows, the metadata server.
    pub async fn new(
        client: &kube::Client,
        namespace: &str,
        cfg: &Target,
        ambient: bool,
        default_name: &str,
    ) -> Result<CertificateManager, DeployError> {
        let id = certificate_id(cfg, default_name);
        let lower = super::rest::lower_name_char;
        super::rest::check_name("googleCertificateManager.certificateID", &id, lower, 63)?;
        super::rest::check_name("googleCertificateManager.project", &cfg.project, lower, 30)?;
        let region = cfg.location.as_deref().unwrap_or("global");
        super::rest::check_name("googleCertificateManager.location", region, lower, 40)?;
        let auth = match &cfg.service_account_secret_ref {
            Some(r) => {
                let what = "Google service account key";
                let json = super::secret_value(client, namespace, r, what).await?;
                GoogleAuth::from_key(&json, &format!("Secret {namespace}/{}", r.name))
            }
            None if ambient
                && cfg
                    .api_url
                    .as_deref()
                    .is_some_and(|u| !super::rest::https_host_in(u, &[".googleapis.com"])) =>
            {
                return Err(DeployError::Refused {
                    reason: crate::api::Reason::NotPermitted,
                    words: "googleCertificateManager.apiURL is not Google's (https://*.googleapis.com): \
                            the operator's own identity sends its tokens to Google only; give the \
                            target serviceAccountSecretRef to use another host"
                        .into(),
                });
            }
            None if ambient => GoogleAuth::ambient(),
            None => {
                let field = "serviceAccountSecretRef";
                return Err(super::no_ambient("googleCertificateManager", field));
            }
        };
        let sign_in = |e| DeployError::refused(format!("Google sign-in: {e}"));
        let auth = auth.map_err(sign_in)?;
        let token = auth.token(SCOPE).await.map_err(sign_in)?;
        let base = cfg.api_url.as_deref().unwrap_or(DEFAULT_URL);
        let base = format!("{}/v1", base.trim_end_matches('/'));
        let bearer = vec![("authorization", format!("Bearer {token}"))];
        Ok(CertificateManager {
            rest: Rest::new("Certificate Manager", &base, bearer, words)?,
            name: location(cfg, default_name),
            labels: cfg.labels.clone(),
            description: cfg.description.clone(),
            source: auth.source().clone(),
        })
    }

    /// The serial it holds; `None`: no such certificate.
    async fn serial(&self) -> Result<Option<String>, DeployError> {
        let path = format!("/{}", self.name);
        let Some(body) = self.rest.read(&path).await? else {
            return Ok(None);
        };
        let pem = (body["pemCertificate"].as_str())
            .or(body["selfManaged"]["pemCertificate"].as_str())
            .unwrap_or_default();
        Ok(Some(pem_serial(pem).unwrap_or_default()))
    }

    /// Creates the certificate, or patches it when it exists, unless it holds this
    /// serial; waits for the operation.
    pub async fn deploy(&self, bundle: &Bundle) -> Result<Deployed, DeployError> {
        let current = self.serial().await?;
        if (current.as_deref()).is_some_and(|s| super::same_serial(s, &bundle.info.serial)) {
            return Ok(Deployed::unchanged(&self.name));
        }
        let managed =
            json!({ "pemCertificate": bundle.chain_pem, "pemPrivateKey": bundle.key_pem });
        let operation = match current {
            Some(_) => self.patch(&managed).await?,
            None => {
                let mut body = json!({ "selfManaged": managed, "labels": self.labels });
                if let Some(d) = &self.description {
                    body["description"] = json!(d);
                }
                let (parent, id) = self.name.rsplit_once('/').unwrap_or_default();
                let path = format!("/{parent}?certificateId={id}");
                let answer = self.rest.send(Method::POST, &path, Some(&body)).await?;
                match answer.status {
                    // Made meanwhile (a lost status write): the same ID, patched.
                    409 => self.patch(&managed).await?,
                    _ if answer.ok() => answer.body,
                    _ => return Err(self.rest.failed("create", &answer)),
                }
            }
        };
        self.wait(operation, "write").await?;
        Ok(Deployed::wrote(&self.name))
    }

    async fn patch(&self, managed: &Value) -> Result<Value, DeployError> {
        let path = format!("/{}?updateMask=selfManaged", self.name);
        let body = json!({ "selfManaged": managed });
        let answer = self
            .rest
            .expect(Method::PATCH, &path, Some(&body), "update");
        Ok(answer.await?.body)
    }

    /// Polls `operation` until done; its error in Google's words.
    async fn wait(&self, mut operation: Value, what: &str) -> Result<(), DeployError> {
        for pause in POLLS {
            if operation["done"].as_bool() == Some(true) {
                let error = &operation["error"];
                if error.is_null() {
                    return Ok(());
                }
                let words = format!(
                    "Certificate Manager {what}: {} (code {})",
                    error["message"].as_str().unwrap_or("?"),
                    error["code"]
                );
                // google.rpc.Code: 4 DEADLINE_EXCEEDED, 14 UNAVAILABLE are "not now".
                return Err(match error["code"].as_i64() {
                    Some(4 | 14) => DeployError::Unreachable(words),
                    _ => DeployError::refused(words),
                });
            }
            tokio::time::sleep(Duration::from_secs(pause)).await;
            let name = operation["name"].as_str().unwrap_or_default().to_string();
            let path = format!("/{name}");
            operation = self
                .rest
                .expect(Method::GET, &path, None, "operation")
                .await?
                .body;
        }
        Err(DeployError::Unreachable(format!(
            "Certificate Manager {what}: operation {} still running",
            operation["name"].as_str().unwrap_or("?")
        )))
    }

    /// Deletes the certificate `name` (`projects/../certificates/ID`; gone already:
    /// fine). One a certificate map entry uses is refused (`FAILED_PRECONDITION`) and
    /// reported, never forced.
    pub async fn delete(&self, name: &str) -> Result<(), DeployError> {
        let path = format!("/{name}");
        match self.rest.delete(&path).await? {
            Some(operation) => self.wait(operation, "delete").await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_words_as_google_has_them() {
        let cfg = Target {
            project: "p".into(),
            ..Default::default()
        };
        assert_eq!(
            location(&cfg, "Shop/web.tls")[..54],
            *"projects/p/locations/global/certificates/shop-web-tls-"
        );
        let answer = Answer {
            status: 403,
            body: json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
                "message": "Permission 'certificatemanager.certs.create' denied"}}),
        };
        assert_eq!(
            words(&answer),
            "HTTP 403: PERMISSION_DENIED: Permission 'certificatemanager.certs.create' denied"
        );
    }
}
