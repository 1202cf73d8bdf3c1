//! Cloudflare's API v4 (developers.cloudflare.com/api): `GET /zones?name=`, then
//! `GET|POST /zones/{id}/dns_records` and `DELETE /zones/{id}/dns_records/{id}`, with
//! `Authorization: Bearer <token>` (or the legacy `X-Auth-Email` + `X-Auth-Key`).
//! Answers are `{"success", "errors": [{"code", "message"}], "result"}`.

use futures::future::BoxFuture;
use http::Method;
use serde_json::{Value, json};

use super::DnsError;
use super::api::{Answer, ApiClient, zone_candidates};
use super::provider::{DnsProvider, secret_value};
use crate::shared::IssuerHandle;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://api.cloudflare.com/client/v4";
const PROVIDER: &str = "Cloudflare";

pub struct Cloudflare {
    api: ApiClient,
    base: String,
    auth: Vec<(&'static str, String)>,
}

/// Cloudflare's own words from an error answer (`errors[].message`, with codes).
fn words(answer: &Answer) -> String {
    let errors: Vec<String> = answer.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} (code {})",
                        e["message"].as_str().unwrap_or("?"),
                        e["code"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    match errors.is_empty() {
        true => format!("HTTP {}: {}", answer.status, answer.body),
        false => format!("HTTP {}: {}", answer.status, errors.join("; ")),
    }
}

fn succeeded(answer: &Answer) -> bool {
    answer.status < 300 && answer.body["success"].as_bool() == Some(true)
}

/// A TXT record's content as Cloudflare shows it (sometimes in quotes).
fn content(record: &Value) -> &str {
    record["content"].as_str().unwrap_or("").trim_matches('"')
}

impl Cloudflare {
    pub async fn new(
        client: &kube::Client,
        issuer: &IssuerHandle,
        cfg: &crate::api::issuer::Cloudflare,
    ) -> Result<Cloudflare, SolverError> {
        let auth = match (&cfg.api_token_secret_ref, &cfg.api_key_secret_ref) {
            (Some(r), _) => vec![(
                "authorization",
                format!(
                    "Bearer {}",
                    secret_value(client, issuer, r, "Cloudflare API token").await?
                ),
            )],
            (None, Some(r)) => {
                let email = cfg.email.clone().ok_or_else(|| {
                    SolverError::InvalidSpec("cloudflare.apiKeySecretRef needs email".into())
                })?;
                vec![
                    ("x-auth-email", email),
                    (
                        "x-auth-key",
                        secret_value(client, issuer, r, "Cloudflare API key").await?,
                    ),
                ]
            }
            (None, None) => {
                return Err(SolverError::InvalidSpec(
                    "cloudflare needs apiTokenSecretRef (or apiKeySecretRef and email)".into(),
                ));
            }
        };
        Ok(Cloudflare {
            api: ApiClient::new(PROVIDER)?,
            base: cfg
                .api_url
                .as_deref()
                .unwrap_or(DEFAULT_URL)
                .trim_end_matches('/')
                .to_string(),
            auth,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, DnsError> {
        self.api
            .send(method, &format!("{}{path}", self.base), &self.auth, body)
            .await
    }

    /// The zone (id, name) holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<(String, String), DnsError> {
        for candidate in zone_candidates(fqdn) {
            let answer = self
                .call(Method::GET, &format!("/zones?name={candidate}"), None)
                .await?;
            if !succeeded(&answer) {
                return Err(DnsError::Api {
                    provider: PROVIDER,
                    name: fqdn.trim_end_matches('.').to_string(),
                    zone: candidate,
                    message: words(&answer),
                });
            }
            if let Some(id) = answer.body["result"][0]["id"].as_str() {
                return Ok((id.to_string(), candidate));
            }
        }
        Err(DnsError::NoProviderZone {
            provider: PROVIDER,
            name: fqdn.trim_end_matches('.').to_string(),
        })
    }

    /// The TXT records at `name` in zone `id`.
    async fn records(&self, id: &str, zone: &str, name: &str) -> Result<Vec<Value>, DnsError> {
        let answer = self
            .call(
                Method::GET,
                &format!("/zones/{id}/dns_records?type=TXT&name={name}&per_page=100"),
                None,
            )
            .await?;
        if !succeeded(&answer) {
            return Err(self.refused(name, zone, &answer));
        }
        Ok(answer.body["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn refused(&self, name: &str, zone: &str, answer: &Answer) -> DnsError {
        DnsError::Api {
            provider: PROVIDER,
            name: name.to_string(),
            zone: zone.to_string(),
            message: words(answer),
        }
    }
}

impl DnsProvider for Cloudflare {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let (id, zone) = self.zone(fqdn).await?;
            let name = fqdn.trim_end_matches('.');
            if self
                .records(&id, &zone, name)
                .await?
                .iter()
                .any(|r| content(r) == value)
            {
                return Ok(());
            }
            let body = json!({ "type": "TXT", "name": name, "content": value, "ttl": 120 });
            let answer = self
                .call(
                    Method::POST,
                    &format!("/zones/{id}/dns_records"),
                    Some(&body),
                )
                .await?;
            match succeeded(&answer) {
                true => Ok(()),
                false => Err(self.refused(name, &zone, &answer)),
            }
        })
    }

    fn remove_txt<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let (id, zone) = self.zone(fqdn).await?;
            let name = fqdn.trim_end_matches('.');
            for record in self.records(&id, &zone, name).await? {
                let Some(rid) = record["id"].as_str().filter(|_| content(&record) == value) else {
                    continue;
                };
                let answer = self
                    .call(
                        Method::DELETE,
                        &format!("/zones/{id}/dns_records/{rid}"),
                        None,
                    )
                    .await?;
                if !succeeded(&answer) && answer.status != 404 {
                    return Err(self.refused(name, &zone, &answer));
                }
            }
            Ok(())
        })
    }
}
