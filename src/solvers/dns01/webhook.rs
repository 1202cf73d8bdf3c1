//! lego's `httpreq` protocol (go-acme.github.io/lego/dns/httpreq): POST `<url>/present`
//! and `<url>/cleanup` with `{"fqdn": "_acme-challenge.example.com.", "value": "..."}`,
//! optional HTTP basic auth; any 2xx is success. Existing httpreq adapters work unchanged.

use base64::Engine;
use http::Method;
use serde_json::json;

use super::api::{ApiClient, Headers};
use super::error::DnsError;
use super::provider::{Change, DnsFuture, DnsProvider, Secrets};
use crate::api::issuer::Webhook as Config;
use crate::solvers::SolverError;

const PROVIDER: &str = "the httpreq webhook";

pub struct Webhook {
    api: ApiClient,
    url: String,
    auth: Headers,
}

impl Webhook {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<Webhook, SolverError> {
        let mut auth = Vec::new();
        if let Some(r) = &cfg.basic_auth_secret_ref {
            let user = secrets.get(&r.name, "username").await?;
            let password = secrets.get(&r.name, "password").await?;
            let (Some(user), Some(password)) = (user, password) else {
                return Err(SolverError::SecretNotFound(format!(
                    "the basic-auth Secret {}/{} needs username and password",
                    secrets.namespace(),
                    r.name
                )));
            };
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            auth.push(("authorization", format!("Basic {token}")));
        }
        Ok(Webhook {
            api: ApiClient::new(PROVIDER)?,
            url: cfg.url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    async fn post(&self, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let fqdn = format!("{}.", fqdn.trim_end_matches('.'));
        let body = json!({ "fqdn": fqdn, "value": value });
        let url = format!("{}/{action}", self.url);
        let answer = self
            .api
            .send(Method::POST, &url, &self.auth, Some(&body).into())
            .await?;
        match answer.status {
            200..=299 => Ok(()),
            status => {
                let message = format!("HTTP {status} on /{action}: {}", answer.body);
                let name = fqdn.trim_end_matches('.');
                Err(DnsError::api(PROVIDER, name, "(the webhook's)", message))
            }
        }
    }
}

impl DnsProvider for Webhook {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        let action = match change {
            Change::Add => "present",
            Change::Remove => "cleanup",
        };
        Box::pin(self.post(action, fqdn, value))
    }
}
