//! DigitalOcean's API v2 (docs.digitalocean.com/reference/api): `GET /v2/domains/{name}`
//! finds the zone, `GET|POST /v2/domains/{zone}/records` and `DELETE
//! /v2/domains/{zone}/records/{id}` change it, with `Authorization: Bearer <token>`.
//! Errors are `{"id": "unauthorized", "message": "..."}`.

use http::Method;
use serde_json::{Value, json};

use super::DnsError;
use super::api::{Answer, ApiClient, Rest, base_url, bearer, find_zone, relative};
use super::provider::{Change, DnsFuture, DnsProvider, Secrets};
use crate::api::issuer::DigitalOcean as Config;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://api.digitalocean.com";
const PROVIDER: &str = "DigitalOcean";

pub struct DigitalOcean {
    rest: Rest,
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
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<DigitalOcean, SolverError> {
        let token = secrets
            .value(&cfg.token_secret_ref, "DigitalOcean token")
            .await?;
        let base = base_url(cfg.api_url.as_deref(), DEFAULT_URL);
        let rest = Rest::new(ApiClient::new(PROVIDER)?, base, bearer(&token), words);
        Ok(DigitalOcean { rest })
    }

    /// The domain (zone) of the account holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = fqdn.trim_end_matches('.');
        find_zone(PROVIDER, fqdn, |candidate| async move {
            let path = format!("/v2/domains/{candidate}");
            let found = self.rest.get_opt(&path, (name, &candidate)).await?;
            Ok(found.map(|_| candidate))
        })
        .await
    }

    /// The TXT records at `name` in `zone` (DigitalOcean filters by the full name).
    async fn records(&self, zone: &str, name: &str) -> Result<Vec<Value>, DnsError> {
        let path = format!("/v2/domains/{zone}/records?type=TXT&name={name}&per_page=200");
        let ok = |a: &Answer| a.is(&[200]);
        let answer = self
            .rest
            .expect(Method::GET, &path, None, ok, (name, zone))
            .await?;
        Ok(answer.body["domain_records"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<(), DnsError> {
        let zone = self.zone(fqdn).await?;
        let (zone, name) = (zone.as_str(), fqdn.trim_end_matches('.'));
        let at = (name, zone);
        let records = self.records(zone, name).await?;
        let ours = records
            .iter()
            .filter(|r| r["data"].as_str() == Some(value))
            .collect();
        let create = || async move {
            let relative = relative(fqdn, zone);
            let body = json!({ "type": "TXT", "name": relative, "data": value, "ttl": 60 });
            let path = format!("/v2/domains/{zone}/records");
            let ok = |a: &Answer| a.is(&[200, 201]);
            let rest = &self.rest;
            rest.expect(Method::POST, &path, Some(&body), ok, at)
                .await
                .map(drop)
        };
        let gone = |a: &Answer| a.is(&[200, 204, 404]);
        change
            .per_record(ours, create, |record| async move {
                let Some(id) = record["id"].as_u64() else {
                    return Ok(());
                };
                let path = format!("/v2/domains/{zone}/records/{id}");
                let rest = &self.rest;
                rest.expect(Method::DELETE, &path, None, gone, at)
                    .await
                    .map(drop)
            })
            .await
    }
}

impl DnsProvider for DigitalOcean {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, change))
    }
}
