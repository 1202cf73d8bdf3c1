//! Cloudflare's API v4 (developers.cloudflare.com/api): `GET /zones?name=`, then
//! `GET|POST /zones/{id}/dns_records` and `DELETE /zones/{id}/dns_records/{id}`, with
//! `Authorization: Bearer <token>` (or the legacy `X-Auth-Email` + `X-Auth-Key`).
//! Answers are `{"success", "errors": [{"code", "message"}], "result"}`.

use http::Method;
use serde_json::{Value, json};

use super::api::{Answer, ApiClient, Headers, Rest, base_url, bearer, find_zone};
use super::error::DnsError;
use super::provider::{Change, DnsFuture, DnsProvider, Secrets};
use crate::api::issuer::Cloudflare as Config;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://api.cloudflare.com/client/v4";
const PROVIDER: &str = "Cloudflare";

pub struct Cloudflare {
    rest: Rest,
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

/// An API token, or the legacy global API key with its account's email.
async fn auth(secrets: Secrets<'_>, cfg: &Config) -> Result<Headers, SolverError> {
    match (&cfg.api_token_secret_ref, &cfg.api_key_secret_ref) {
        (Some(r), _) => Ok(bearer(&secrets.value(r, "Cloudflare API token").await?)),
        (None, Some(r)) => {
            let email = cfg.email.clone().ok_or_else(|| {
                SolverError::InvalidSpec("cloudflare.apiKeySecretRef needs email".into())
            })?;
            let key = secrets.value(r, "Cloudflare API key").await?;
            Ok(vec![("x-auth-email", email), ("x-auth-key", key)])
        }
        (None, None) => Err(SolverError::InvalidSpec(
            "cloudflare needs apiTokenSecretRef (or apiKeySecretRef and email)".into(),
        )),
    }
}

impl Cloudflare {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<Cloudflare, SolverError> {
        let auth = auth(secrets, cfg).await?;
        let base = base_url(cfg.api_url.as_deref(), DEFAULT_URL);
        let rest = Rest::new(ApiClient::new(PROVIDER)?, base, auth, words);
        Ok(Cloudflare { rest })
    }

    /// The zone (id, name) holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<(String, String), DnsError> {
        let name = fqdn.trim_end_matches('.');
        find_zone(PROVIDER, fqdn, |candidate| async move {
            let path = format!("/zones?name={candidate}");
            let at = (name, candidate.as_str());
            let answer = self
                .rest
                .expect(Method::GET, &path, None, succeeded, at)
                .await?;
            let id = answer.body["result"][0]["id"].as_str();
            Ok(id.map(|id| (id.to_string(), candidate)))
        })
        .await
    }

    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<(), DnsError> {
        let (id, zone) = self.zone(fqdn).await?;
        let name = fqdn.trim_end_matches('.');
        let at = (name, zone.as_str());
        let collection = format!("/zones/{id}/dns_records");
        let list = format!("{collection}?type=TXT&name={name}&per_page=100");
        let records = self.rest.get_list(&list, "result", succeeded, at).await?;
        let ours = records.iter().filter(|r| content(r) == value);
        let ours = ours.map(|r| r["id"].as_str().map(str::to_string)).collect();
        let record = json!({ "type": "TXT", "name": name, "content": value, "ttl": 120 });
        let ok = [succeeded, |a: &Answer| succeeded(a) || a.status == 404];
        let rest = &self.rest;
        rest.change_records(change, &collection, ours, &record, ok, at)
            .await
    }
}

impl DnsProvider for Cloudflare {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, change))
    }
}
