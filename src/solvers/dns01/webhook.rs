//! lego's `httpreq` protocol (go-acme.github.io/lego/dns/httpreq): POST `<url>/present`
//! and `<url>/cleanup` with `{"fqdn": "_acme-challenge.example.com.", "value": "..."}`,
//! optional HTTP basic auth; any 2xx is success. Existing httpreq adapters work unchanged.

use base64::Engine;
use futures::future::BoxFuture;
use http::Method;
use serde_json::json;

use super::DnsError;
use super::api::ApiClient;
use super::provider::DnsProvider;
use crate::shared::{IssuerHandle, read_secret_key};
use crate::solvers::SolverError;

const PROVIDER: &str = "the httpreq webhook";

pub struct Webhook {
    api: ApiClient,
    url: String,
    auth: Vec<(&'static str, String)>,
}

impl Webhook {
    pub async fn new(
        client: &kube::Client,
        issuer: &IssuerHandle,
        cfg: &crate::api::issuer::Webhook,
    ) -> Result<Webhook, SolverError> {
        let mut auth = Vec::new();
        if let Some(r) = &cfg.basic_auth_secret_ref {
            let ns = &issuer.secret_namespace;
            let read = async |key: &str| {
                read_secret_key(client, ns, &r.name, key)
                    .await
                    .map(|v| v.map(|b| String::from_utf8_lossy(&b).trim().to_string()))
            };
            let (Some(user), Some(password)) = (read("username").await?, read("password").await?)
            else {
                return Err(SolverError::SecretNotFound(format!(
                    "the basic-auth Secret {ns}/{} needs username and password",
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
        let answer = self
            .api
            .send(
                Method::POST,
                &format!("{}/{action}", self.url),
                &self.auth,
                Some(&body),
            )
            .await?;
        match answer.status {
            200..=299 => Ok(()),
            status => Err(DnsError::Api {
                provider: PROVIDER,
                name: fqdn.trim_end_matches('.').to_string(),
                zone: "(the webhook's)".into(),
                message: format!("HTTP {status} on /{action}: {}", answer.body),
            }),
        }
    }
}

impl DnsProvider for Webhook {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.post("present", fqdn, value))
    }

    fn remove_txt<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.post("cleanup", fqdn, value))
    }
}
