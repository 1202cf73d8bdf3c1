//! DigitalOcean's API v2 (docs.digitalocean.com/reference/api): `GET /v2/domains/{name}`
//! finds the zone, `GET|POST /v2/domains/{zone}/records` and `DELETE
//! /v2/domains/{zone}/records/{id}` change it, with `Authorization: Bearer <token>`.
//! Errors are `{"id": "unauthorized", "message": "..."}`.

use serde_json::json;

use super::api::{Answer, ApiClient, Rest, base_url, bearer, find_zone, relative};
use super::error::DnsError;
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

    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<(), DnsError> {
        let zone = self.zone(fqdn).await?;
        let name = fqdn.trim_end_matches('.');
        let at = (name, zone.as_str());
        let collection = format!("/v2/domains/{zone}/records");
        // DigitalOcean filters by the full name.
        let list = format!("{collection}?type=TXT&name={name}&per_page=200");
        let listed = |a: &Answer| a.is(&[200]);
        let records = self
            .rest
            .get_list(&list, "domain_records", listed, at)
            .await?;
        let ours = records.iter().filter(|r| r["data"].as_str() == Some(value));
        let ours = ours
            .map(|r| r["id"].as_u64().map(|id| id.to_string()))
            .collect();
        let relative = relative(fqdn, &zone);
        let record = json!({ "type": "TXT", "name": relative, "data": value, "ttl": 60 });
        let ok: [fn(&Answer) -> bool; 2] = [|a| a.is(&[200, 201]), |a| a.is(&[200, 204, 404])];
        let rest = &self.rest;
        rest.change_records(change, &collection, ours, &record, ok, at)
            .await
    }
}

impl DnsProvider for DigitalOcean {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, change))
    }
}
