//! Microsoft Entra ID access tokens through `azure_identity`: an app registration's
//! client secret, workload identity (the federated token file that AKS mounts, named by
//! `AZURE_FEDERATED_TOKEN_FILE`), or the managed identity as the fallback. The authority
//! host is the issuer's `authorityURL`, else `AZURE_AUTHORITY_HOST`, else Azure's public
//! cloud (`azure_identity` accepts only `https://` authorities).

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::{CredentialSource, TokenError, env};

/// Azure Resource Manager (Azure DNS among its APIs).
pub const MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";
const CLOUD: &str = "Azure";

/// Who signs in and where.
#[derive(Clone, Debug, Default)]
pub struct AzureLogin {
    /// The tenant; workload identity defaults to `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// The app registration or identity; workload identity defaults to `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// The Entra ID authority (`https://login.microsoftonline.com`); `None`:
    /// `AZURE_AUTHORITY_HOST`, else the public cloud.
    pub authority: Option<String>,
}

/// A signed-in Azure credential: gives access tokens and says where they come from.
pub struct AzureAuth {
    credential: Arc<dyn TokenCredential>,
    named: CredentialSource,
}

impl AzureAuth {
    /// An app registration's client secret (read from `from`, e.g. `Secret ns/name`).
    pub fn client_secret(login: &AzureLogin, secret: String) -> Result<AzureAuth, TokenError> {
        let client_id = login.client_id.clone().unwrap_or_default();
        let named = named(format!("client secret for client {client_id}"));
        let Some(tenant) = &login.tenant_id else {
            return Err(refused(&named, "a client secret needs tenantID".into()));
        };
        let options = ClientSecretCredentialOptions {
            client_options: client_options(login, &named)?,
        };
        let credential =
            ClientSecretCredential::new(tenant, client_id, Secret::new(secret), Some(options))
                .map_err(|e| refused(&named, words(&e)))?;
        Ok(AzureAuth { credential, named })
    }

    /// The workload's own identity: workload identity when `AZURE_FEDERATED_TOKEN_FILE`
    /// is set (client and tenant from `login`, else `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`), else the managed identity (`login`'s client as a
    /// user-assigned identity, if given).
    pub fn ambient(login: &AzureLogin) -> Result<AzureAuth, TokenError> {
        if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some_and(|f| !f.is_empty()) {
            let client = login.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
            let client = client.unwrap_or_default();
            let named = named(format!(
                "workload identity (federated token) for client {client}"
            ));
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions {
                    client_options: client_options(login, &named)?,
                },
                client_id: login.client_id.clone(),
                tenant_id: login.tenant_id.clone(),
                ..Default::default()
            };
            let credential = WorkloadIdentityCredential::new(Some(options))
                .map_err(|e| refused(&named, words(&e)))?;
            return Ok(AzureAuth { credential, named });
        }
        let named = named(match &login.client_id {
            Some(id) => format!("managed identity (client {id})"),
            None => "managed identity".to_string(),
        });
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: login.client_id.clone().map(UserAssignedId::ClientId),
            client_options: client_options(login, &named)?,
        };
        let credential = ManagedIdentityCredential::new(Some(options))
            .map_err(|e| refused(&named, words(&e)))?;
        Ok(AzureAuth { credential, named })
    }

    /// A client secret when one is given, else the workload's own identity
    /// ([`AzureAuth::ambient`]).
    pub fn sign_in(login: &AzureLogin, secret: Option<String>) -> Result<AzureAuth, TokenError> {
        match secret {
            Some(secret) => AzureAuth::client_secret(login, secret),
            None => AzureAuth::ambient(login),
        }
    }

    /// Where the tokens come from (never a secret or token).
    pub fn source(&self) -> &CredentialSource {
        &self.named
    }

    /// An access token for `scope` (`azure_identity` caches it until it expires).
    pub async fn token(&self, scope: &str) -> Result<String, TokenError> {
        let token = self.credential.get_token(&[scope], None).await;
        token
            .map(|t| t.token.secret().to_string())
            .map_err(|e| refused(&self.named, words(&e)))
    }
}

/// The credential's pipeline: our reqwest client, and the authority when one is given.
fn client_options(
    login: &AzureLogin,
    named: &CredentialSource,
) -> Result<ClientOptions, TokenError> {
    let client = super::http_client().map_err(|e| refused(named, e))?;
    let cloud = login.authority.as_ref().map(|host| {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.trim_end_matches('/').to_string();
        Arc::new(CloudConfiguration::from(custom))
    });
    Ok(ClientOptions {
        transport: Some(Transport::new(Arc::new(client))),
        cloud,
        ..Default::default()
    })
}

/// `azure_identity`'s message on one line (Entra's `AADSTS...` words are in it).
fn words(e: &azure_core::Error) -> String {
    e.to_string().replace('\n', "; ")
}

fn refused(named: &CredentialSource, message: String) -> TokenError {
    TokenError {
        credential: named.clone(),
        message,
    }
}

fn named(source: String) -> CredentialSource {
    CredentialSource::new(CLOUD, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_authority_is_refused_in_azure_identitys_words() {
        let login = AzureLogin {
            tenant_id: Some("11111111-1111-1111-1111-111111111111".into()),
            client_id: Some("c".into()),
            authority: Some("http://127.0.0.1:1".into()),
        };
        let err = AzureAuth::client_secret(&login, "s3cr3t".into())
            .err()
            .expect("refused");
        let message = err.to_string();
        assert!(message.contains("HTTPS"), "{message}");
        assert!(message.contains("client secret for client c"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
