//! DigitalOcean's API v2 (docs.digitalocean.com/reference/api): `GET /v2/domains/{name}`
//! finds the zone, `GET|POST /v2/domains/{zone}/records` and `DELETE
//! /v2/domains/{zone}/records/{id}` change it, with `Authorization: Bearer <token>`.
//! Errors are `{"id": "unauthorized", "message": "..."}`.

use futures::future::BoxFuture;
use http::Method;
use serde_json::{Value, json};

use super::DnsError;
use super::api::{Answer, ApiClient, relative, zone_candidates};
use super::provider::{DnsProvider, secret_value};
use crate::shared::IssuerHandle;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://api.digitalocean.com";
const PROVIDER: &str = "DigitalOcean";

pub struct DigitalOcean {
    api: ApiClient,
    base: String,
    auth: Vec<(&'static str, String)>,
}

/// DigitalOcean's own words from an error answer.
fn words(answer: &Answer) -> String {
    match answer.body["message"].as_str() {
        Some(m) => format!(
            "HTTP {}: {m} ({})",
            answer.status,
            answer.body["id"].as_str().unwrap_or("error")
        ),
        None => format!("HTTP {}: {}", answer.status, answer.body),
    }
}

impl DigitalOcean {
    pub async fn new(
        client: &kube::Client,
        issuer: &IssuerHandle,
        cfg: &crate::api::issuer::DigitalOcean,
    ) -> Result<DigitalOcean, SolverError> {
        let token =
            secret_value(client, issuer, &cfg.token_secret_ref, "DigitalOcean token").await?;
        Ok(DigitalOcean {
            api: ApiClient::new(PROVIDER)?,
            base: cfg
                .api_url
                .as_deref()
                .unwrap_or(DEFAULT_URL)
                .trim_end_matches('/')
                .to_string(),
            auth: vec![("authorization", format!("Bearer {token}"))],
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

    fn refused(name: &str, zone: &str, answer: &Answer) -> DnsError {
        DnsError::Api {
            provider: PROVIDER,
            name: name.to_string(),
            zone: zone.to_string(),
            message: words(answer),
        }
    }

    /// The domain (zone) of the account holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = fqdn.trim_end_matches('.');
        for candidate in zone_candidates(fqdn) {
            let answer = self
                .call(Method::GET, &format!("/v2/domains/{candidate}"), None)
                .await?;
            match answer.status {
                200 => return Ok(candidate),
                404 => continue,
                _ => return Err(Self::refused(name, &candidate, &answer)),
            }
        }
        Err(DnsError::NoProviderZone {
            provider: PROVIDER,
            name: name.to_string(),
        })
    }

    /// The TXT records at `fqdn` in `zone` (DigitalOcean filters by the full name).
    async fn records(&self, zone: &str, fqdn: &str) -> Result<Vec<Value>, DnsError> {
        let name = fqdn.trim_end_matches('.');
        let answer = self
            .call(
                Method::GET,
                &format!("/v2/domains/{zone}/records?type=TXT&name={name}&per_page=200"),
                None,
            )
            .await?;
        if answer.status != 200 {
            return Err(Self::refused(name, zone, &answer));
        }
        Ok(answer.body["domain_records"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl DnsProvider for DigitalOcean {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let zone = self.zone(fqdn).await?;
            if self
                .records(&zone, fqdn)
                .await?
                .iter()
                .any(|r| r["data"].as_str() == Some(value))
            {
                return Ok(());
            }
            let body =
                json!({ "type": "TXT", "name": relative(fqdn, &zone), "data": value, "ttl": 60 });
            let answer = self
                .call(
                    Method::POST,
                    &format!("/v2/domains/{zone}/records"),
                    Some(&body),
                )
                .await?;
            match answer.status {
                200 | 201 => Ok(()),
                _ => Err(Self::refused(fqdn.trim_end_matches('.'), &zone, &answer)),
            }
        })
    }

    fn remove_txt<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let zone = self.zone(fqdn).await?;
            for record in self.records(&zone, fqdn).await? {
                let Some(id) = record["id"]
                    .as_u64()
                    .filter(|_| record["data"].as_str() == Some(value))
                else {
                    continue;
                };
                let answer = self
                    .call(
                        Method::DELETE,
                        &format!("/v2/domains/{zone}/records/{id}"),
                        None,
                    )
                    .await?;
                if !matches!(answer.status, 200 | 204 | 404) {
                    return Err(Self::refused(fqdn.trim_end_matches('.'), &zone, &answer));
                }
            }
            Ok(())
        })
    }
}
