//! Azure Key Vault certificates (REST API 7.4): `POST {vault}/certificates/{name}/import`
//! makes each certificate a new version of the same name, so Application Gateway and
//! Front Door, which follow the versionless ID, serve it; `GET {vault}/certificates/{name}`
//! (the newest version) to see what is there; `DELETE` (the vault's soft delete keeps the
//! name reserved until purged: we never purge).
//!
//! The import takes the PEM file (the key, PKCS#8 only, then the certificates)
//! base64-encoded as `value`, with the policy's content type `application/x-pem-file`:
//! what the official client (azure-keyvault-certificates 4.12) sends.

use base64::Engine;
use reqwest::Method;
use serde_json::json;

use super::rest::{Answer, Rest, der_serial};
use super::{Bundle, DeployError, Deployed};
use crate::api::deploy::KeyVaultTarget;
use crate::cloud::CredentialSource;
use crate::cloud::azure::{AzureAuth, AzureLogin};

const API_VERSION: &str = "api-version=7.4";
/// Key Vault's hosts in Azure's clouds (public, China, US Government).
const VAULT_HOSTS: &[&str] = &[
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
];

pub struct KeyVault {
    rest: Rest,
    vault: String,
    name: String,
    tags: std::collections::BTreeMap<String, String>,
    pub source: CredentialSource,
}

/// The certificate's name: the target's, else one made of the Certificate's
/// `namespace/name` in Key Vault's characters (`0-9a-zA-Z-`, at most 127).
pub fn certificate_name(cfg: &KeyVaultTarget, key: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let made = || super::rest::default_name(key, allowed, 127, false);
    cfg.certificate_name.clone().unwrap_or_else(made)
}

/// The copy's place and identity: the versionless certificate ID.
pub fn location(cfg: &KeyVaultTarget, default: &str) -> String {
    let vault = cfg.vault_url.trim_end_matches('/');
    format!("{vault}/certificates/{}", certificate_name(cfg, default))
}

/// The token audience of a vault: `https://vault.azure.net/.default` in Azure's public
/// cloud; a sovereign cloud's vault host without its first label
/// (`x.vault.azure.cn` -> `https://vault.azure.cn/.default`).
fn scope(vault_url: &str) -> String {
    let host = (vault_url.split("://").nth(1).unwrap_or(vault_url))
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    match host.split_once('.') {
        Some((_, rest)) if rest.starts_with("vault.") => format!("https://{rest}/.default"),
        _ => "https://vault.azure.net/.default".into(),
    }
}

/// Key Vault's own words: `{"error": {"code", "message"}}`, with the HTTP status.
fn words(answer: &Answer) -> String {
    let error = &answer.body["error"];
    let status = answer.status;
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => match error["innererror"]["code"].as_str() {
            Some(inner) => format!("HTTP {status}: {code} ({inner}): {message}"),
            None => format!("HTTP {status}: {code}: {message}"),
        },
        _ => format!("HTTP {status}: {}", super::rest::short(&answer.body)),
    }
}

impl KeyVault {
    /// Signs in with the target's client secret (a Secret in `namespace`) or, when it
    /// names none and `ambient` allows, workload identity or the managed identity.
    pub async fn new(
        client: &kube::Client,
        namespace: &str,
        cfg: &KeyVaultTarget,
        ambient: bool,
        default_name: &str,
    ) -> Result<KeyVault, DeployError> {
        let name = certificate_name(cfg, default_name);
        super::rest::check_name(
            "azureKeyVault.certificateName",
            &name,
            super::rest::name_char,
            127,
        )?;
        let login = AzureLogin {
            tenant_id: cfg.tenant_id.clone(),
            client_id: cfg.client_id.clone(),
            authority: cfg.authority_url.clone(),
        };
        let auth = match &cfg.client_secret_secret_ref {
            Some(r) => {
                let secret = super::secret_value(client, namespace, r, "Azure client secret");
                AzureAuth::client_secret(&login, secret.await?)
            }
            None if ambient && !super::rest::https_host_in(&cfg.vault_url, VAULT_HOSTS) => {
                return Err(DeployError::Refused {
                    reason: crate::api::Reason::NotPermitted,
                    words: format!(
                        "azureKeyVault.vaultURL {} is not an Azure Key Vault (https://NAME{}): \
                         the operator's own identity sends its tokens to Key Vault only; give \
                         the target clientSecretSecretRef to use another host",
                        cfg.vault_url, VAULT_HOSTS[0]
                    ),
                });
            }
            None if ambient => AzureAuth::ambient(&login),
            None => return Err(super::no_ambient("azureKeyVault", "clientSecretSecretRef")),
        };
        let auth = auth.map_err(|e| DeployError::refused(format!("Azure sign-in: {e}")))?;
        let token = (auth.token(&scope(&cfg.vault_url)).await)
            .map_err(|e| DeployError::refused(format!("Azure sign-in: {e}")))?;
        let bearer = vec![("authorization", format!("Bearer {token}"))];
        let vault = cfg.vault_url.trim_end_matches('/').to_string();
        Ok(KeyVault {
            rest: Rest::new("Key Vault", &vault, bearer, words)?,
            name,
            vault,
            tags: cfg.tags.clone(),
            source: auth.source().clone(),
        })
    }

    fn id(&self) -> String {
        format!("{}/certificates/{}", self.vault, self.name)
    }

    /// The serial of the newest version; `None`: no such certificate.
    async fn serial(&self) -> Result<Option<String>, DeployError> {
        let path = format!("/certificates/{}?{API_VERSION}", self.name);
        let Some(body) = self.rest.read(&path).await? else {
            return Ok(None);
        };
        let der = (body["cer"].as_str())
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok());
        Ok(der.and_then(|d| der_serial(&d)))
    }

    /// Imports `bundle` as a new version, unless the newest version holds its serial.
    pub async fn deploy(&self, bundle: &Bundle) -> Result<Deployed, DeployError> {
        let current = self.serial().await?;
        if current.is_some_and(|s| super::same_serial(&s, &bundle.info.serial)) {
            return Ok(Deployed::unchanged(&self.id()));
        }
        let key = crate::pki::pkcs8_pem(&bundle.key_pem)
            .map_err(|e| DeployError::refused(format!("the Secret's key: {e}")))?;
        let body = json!({
            "value": base64::engine::general_purpose::STANDARD
                .encode(format!("{}\n{}", key.trim_end(), bundle.chain_pem)),
            "policy": { "secret_props": { "contentType": "application/x-pem-file" } },
            "tags": self.tags,
        });
        let path = format!("/certificates/{}/import?{API_VERSION}", self.name);
        (self.rest)
            .expect(Method::POST, &path, Some(&body), "import")
            .await?;
        Ok(Deployed::wrote(&self.id()))
    }

    /// Deletes the certificate `id` (versionless, in this vault), all versions (gone
    /// already: fine). The vault keeps it as deleted (recoverable) for its retention
    /// period.
    pub async fn delete(&self, id: &str) -> Result<(), DeployError> {
        let name = id.rsplit('/').next().unwrap_or(&self.name);
        let path = format!("/certificates/{name}?{API_VERSION}");
        self.rest.delete(&path).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_audience_follows_the_vaults_cloud() {
        let public = "https://vault.azure.net/.default";
        assert_eq!(scope("https://shop.vault.azure.net"), public);
        assert_eq!(
            scope("https://shop.vault.azure.cn/"),
            "https://vault.azure.cn/.default"
        );
        assert_eq!(scope("https://127.0.0.1:8443"), public);
        let cfg = KeyVaultTarget {
            vault_url: "https://kv.vault.azure.net/".into(),
            ..Default::default()
        };
        assert_eq!(
            location(&cfg, "shop/web.tls")[..53],
            *"https://kv.vault.azure.net/certificates/shop-web-tls-"
        );
        let answer = Answer {
            status: 403,
            body: json!({"error": {"code": "Forbidden", "message": "Caller is not authorized", "innererror": {"code": "ForbiddenByRbac"}}}),
        };
        assert_eq!(
            words(&answer),
            "HTTP 403: Forbidden (ForbiddenByRbac): Caller is not authorized"
        );
    }
}
