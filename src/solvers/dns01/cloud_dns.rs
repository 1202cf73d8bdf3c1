//! Google Cloud DNS API v1 (cloud.google.com/dns/docs/reference/rest/v1):
//! `GET /dns/v1/projects/{p}/managedZones?dnsName=`, `GET .../managedZones/{z}/rrsets?name=&type=TXT`,
//! `POST .../managedZones/{z}/changes` (`{"additions", "deletions"}`: the TXT set with our
//! value added or removed; not waited for in `present`: the solver's `ready` asks `GET
//! .../changes/{id}` and says "not yet" until it is `done`). A change deletes the set
//! exactly as it was read, so Cloud DNS refuses it (412 `conditionNotMet`; 409
//! `alreadyExists` for an addition where a set appeared) when another writer changed the
//! set in between; it is then read and made again ([`retry_conflicts`]), and no value is
//! lost. Access tokens come from [`crate::cloud::google`] (a service account key, or the
//! metadata server). Errors are `{"error": {"code", "message", "status"}}`.

use http::Method;
use serde_json::{Value, json};

use super::api::{Answer, ApiClient, Rest, Written, base_url, bearer, find_zone, retry_conflicts};
use super::error::DnsError;
use super::provider::{Change, Pending, Secrets};
use crate::api::issuer::CloudDns as Config;
use crate::cloud::CredentialSource;
use crate::cloud::google::{DNS_SCOPE, GoogleAuth};
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://dns.googleapis.com";
const PROVIDER: &str = "Google Cloud DNS";

pub struct CloudDns {
    /// At `.../dns/v1/projects/{p}`.
    rest: Rest,
    zone: Option<String>,
    source: CredentialSource,
}

fn words(answer: &Answer) -> String {
    let e = &answer.body["error"];
    match e["message"].as_str() {
        Some(m) => format!(
            "HTTP {}: {m} ({})",
            answer.status,
            e["status"].as_str().unwrap_or("error")
        ),
        None => format!("HTTP {}: {}", answer.status, answer.body),
    }
}

impl CloudDns {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<CloudDns, SolverError> {
        let sign_in = |error| DnsError::SignIn {
            provider: PROVIDER,
            error,
        };
        let auth = match &cfg.service_account_secret_ref {
            Some(r) => {
                let json = secrets.value(r, "cloudDNS service account key").await?;
                let from = format!("Secret {}/{}", secrets.namespace(), r.name);
                GoogleAuth::from_key(&json, &from)
            }
            None => GoogleAuth::ambient(),
        }
        .map_err(sign_in)?;
        let token = auth.token(DNS_SCOPE).await.map_err(sign_in)?;
        let base = base_url(cfg.api_url.as_deref(), DEFAULT_URL);
        let base = format!("{base}/dns/v1/projects/{}", cfg.project.trim());
        Ok(CloudDns {
            rest: Rest::new(ApiClient::new(PROVIDER)?, base, bearer(&token), words),
            zone: cfg.hosted_zone_name.clone(),
            source: auth.source().clone(),
        })
    }

    /// The managed zone's name holding `fqdn`.
    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(z) = &self.zone {
            return Ok(z.clone());
        }
        let name = fqdn.trim_end_matches('.');
        find_zone(PROVIDER, fqdn, |candidate| async move {
            let path = format!("/managedZones?dnsName={candidate}.");
            let at = (name, candidate.as_str());
            let answer = self.rest.expect(Method::GET, &path, None, ok, at).await?;
            let zone = answer.body["managedZones"][0]["name"].as_str();
            Ok(zone.map(str::to_string))
        })
        .await
    }

    /// The TXT set at `fqdn` (as Cloud DNS holds it), if any.
    async fn set(&self, zone: &str, fqdn: &str) -> Result<Option<Value>, DnsError> {
        let name = format!("{}.", fqdn.trim_end_matches('.'));
        let path = format!("/managedZones/{zone}/rrsets?name={name}&type=TXT");
        let at = (name.as_str(), zone);
        let answer = self.rest.expect(Method::GET, &path, None, ok, at).await?;
        Ok(answer.body["rrsets"]
            .as_array()
            .and_then(|a| a.first().cloned()))
    }

    /// Replaces the set: `deletions` of `old` exactly as read, `additions` of the new
    /// values; a [`Written::Conflict`] when Cloud DNS says the set is no longer `old`.
    async fn write(
        &self,
        zone: &str,
        fqdn: &str,
        old: Option<Value>,
        values: Vec<String>,
    ) -> Result<Written<Pending>, DnsError> {
        let name = format!("{}.", fqdn.trim_end_matches('.'));
        let mut body = json!({ "kind": "dns#change" });
        if let Some(old) = old {
            body["deletions"] = json!([old]);
        }
        if !values.is_empty() {
            body["additions"] = json!([{ "kind": "dns#resourceRecordSet", "name": name, "type": "TXT", "ttl": 60, "rrdatas": values }]);
        }
        let path = format!("/managedZones/{zone}/changes");
        // Not waiting for the change to be `done` here: the solver's `ready` asks
        // (`applied`), and says "not yet" until then.
        let answer = self.rest.call(Method::POST, &path, Some(&body)).await?;
        match answer.status {
            200 => {}
            409 | 412 => return Ok(Written::Conflict),
            _ => return Err(self.rest.refused(&name, zone, &answer)),
        }
        let id = answer.body["id"].as_str().unwrap_or_default();
        let pending = answer.body["status"].as_str() == Some("pending") && !id.is_empty();
        Ok(Written::Done(pending.then(|| format!("{zone}/{id}"))))
    }

    /// Whether change `zone/id` is `done`.
    async fn settled(&self, change: &str) -> Result<bool, DnsError> {
        let (zone, id) = change.split_once('/').unwrap_or_default();
        let path = format!("/managedZones/{zone}/changes/{id}");
        let answer = self
            .rest
            .expect(Method::GET, &path, None, ok, (change, zone))
            .await?;
        Ok(answer.body["status"].as_str() != Some("pending"))
    }

    /// Applies `change`; `zone/id` of the change while it is still pending.
    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<Pending, DnsError> {
        let zone = self.zone(fqdn).await?;
        let quoted = format!("\"{value}\"");
        let at = (fqdn.trim_end_matches('.'), zone.as_str());
        retry_conflicts(PROVIDER, at, || async {
            let set = self.set(&zone, fqdn).await?;
            match change.apply(&rrdatas(&set), &quoted) {
                Some(values) => self.write(&zone, fqdn, set, values).await,
                None => Ok(Written::Done(None)),
            }
        })
        .await
    }
}

/// Cloud DNS answers 200 to what it did.
fn ok(answer: &Answer) -> bool {
    answer.status == 200
}

fn rrdatas(set: &Option<Value>) -> Vec<String> {
    set.as_ref()
        .and_then(|s| s["rrdatas"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

super::provider::pending_changes_provider!(CloudDns, source);
