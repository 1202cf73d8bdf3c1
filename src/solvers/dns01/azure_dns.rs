//! Azure DNS through Azure Resource Manager (learn.microsoft.com/rest/api/dns, api-version
//! 2018-05-01): `GET|PUT|DELETE /subscriptions/{s}/resourceGroups/{g}/providers/
//! Microsoft.Network/dnsZones/{zone}/TXT/{relative name}` with the record set's
//! `{"etag", "properties": {"TTL", "TXTRecords": [{"value": [..]}]}}`. Writes are
//! conditional: `If-Match` with the etag read (`If-None-Match: *` when there was no set),
//! so ARM refuses one (412 `PreconditionFailed`) when another writer changed the set in
//! between; it is then read and made again ([`retry_conflicts`]), and no value is lost.
//! The bearer token comes from [`crate::cloud::azure`] (client secret, workload identity
//! or managed identity). Errors are `{"error": {"code", "message"}}`.

use http::Method;
use serde_json::{Value, json};

use super::api::retry_conflicts;
use super::api::{Answer, ApiClient, Rest, Written, base_url, bearer, find_zone, relative};
use super::error::DnsError;
use super::provider::{Change, DnsFuture, DnsProvider, Secrets};
use crate::api::issuer::AzureDns as Config;
use crate::cloud::CredentialSource;
use crate::cloud::azure::{AzureAuth, AzureLogin, MANAGEMENT_SCOPE};
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://management.azure.com";
const PROVIDER: &str = "Azure DNS";
const API_VERSION: &str = "2018-05-01";

pub struct AzureDns {
    /// At `.../resourceGroups/{g}/providers/Microsoft.Network/dnsZones`.
    rest: Rest,
    zone: Option<String>,
    source: CredentialSource,
}

/// A TXT record set as read: its values and etag (`None`: there is no set).
struct Set {
    values: Vec<String>,
    etag: Option<String>,
}

fn words(answer: &Answer) -> String {
    let e = &answer.body["error"];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(code), Some(m)) => format!("HTTP {}: {code}: {m}", answer.status),
        _ => format!("HTTP {}: {}", answer.status, answer.body),
    }
}

/// Signs in: the client secret when the solver names one, else the workload's identity.
async fn sign_in(secrets: Secrets<'_>, cfg: &Config) -> Result<AzureAuth, SolverError> {
    let login = AzureLogin {
        tenant_id: cfg.tenant_id.clone(),
        client_id: cfg.client_id.clone(),
        authority: cfg.authority_url.clone(),
    };
    let secret = match &cfg.client_secret_secret_ref {
        Some(r) => Some(secrets.value(r, "Azure client secret").await?),
        None => None,
    };
    AzureAuth::sign_in(&login, secret).map_err(|error| {
        SolverError::Dns(DnsError::SignIn {
            provider: PROVIDER,
            error,
        })
    })
}

impl AzureDns {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<AzureDns, SolverError> {
        let auth = sign_in(secrets, cfg).await?;
        let token = auth
            .token(MANAGEMENT_SCOPE)
            .await
            .map_err(|error| DnsError::SignIn {
                provider: PROVIDER,
                error,
            })?;
        let zones = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnsZones",
            base_url(cfg.api_url.as_deref(), DEFAULT_URL),
            cfg.subscription_id.trim(),
            cfg.resource_group_name.trim()
        );
        Ok(AzureDns {
            rest: Rest::new(ApiClient::new(PROVIDER)?, zones, bearer(&token), words),
            zone: cfg.hosted_zone_name.clone(),
            source: auth.source().clone(),
        })
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(z) = &self.zone {
            return Ok(z.trim_end_matches('.').to_string());
        }
        let name = fqdn.trim_end_matches('.');
        find_zone(PROVIDER, fqdn, |candidate| async move {
            let path = versioned(&format!("/{candidate}"));
            let found = self.rest.get_opt(&path, (name, &candidate)).await?;
            Ok(found.map(|_| candidate))
        })
        .await
    }

    /// The TXT set at `fqdn` (each record's strings joined), with its etag.
    async fn set(&self, zone: &str, fqdn: &str) -> Result<Set, DnsError> {
        let path = versioned(&format!("/{zone}/TXT/{}", relative(fqdn, zone)));
        let at = (fqdn.trim_end_matches('.'), zone);
        let Some(answer) = self.rest.get_opt(&path, at).await? else {
            let (values, etag) = (Vec::new(), None);
            return Ok(Set { values, etag });
        };
        let joined = |r: &Value| {
            r["value"]
                .as_array()
                .map(|v| v.iter().filter_map(|s| s.as_str()).collect::<String>())
                .unwrap_or_default()
        };
        let values = answer.body["properties"]["TXTRecords"]
            .as_array()
            .map(|a| a.iter().map(joined).collect())
            .unwrap_or_default();
        let etag = answer.body["etag"].as_str().map(str::to_string);
        Ok(Set { values, etag })
    }

    /// Writes the set (`PUT`), or deletes it when empty, on the condition that it is
    /// still as read; [`Written::Conflict`] when ARM says it is not.
    async fn write(
        &self,
        zone: &str,
        fqdn: &str,
        read: &Set,
        values: &[String],
    ) -> Result<Written<()>, DnsError> {
        let path = versioned(&format!("/{zone}/TXT/{}", relative(fqdn, zone)));
        let records: Vec<Value> = values.iter().map(|v| json!({ "value": [v] })).collect();
        let body = json!({ "properties": { "TTL": 60, "TXTRecords": records } });
        let (method, body) = match values.is_empty() {
            true => (Method::DELETE, None),
            false => (Method::PUT, Some(&body)),
        };
        let condition = match &read.etag {
            Some(etag) => ("if-match", etag.clone()),
            None => ("if-none-match", "*".to_string()),
        };
        let answer = self
            .rest
            .call_with(method, &path, &[condition], body)
            .await?;
        match answer.status {
            200 | 201 | 202 | 204 => Ok(Written::Done(())),
            412 => Ok(Written::Conflict),
            _ => Err(self.rest.refused(fqdn.trim_end_matches('.'), zone, &answer)),
        }
    }

    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<(), DnsError> {
        let zone = self.zone(fqdn).await?;
        let at = (fqdn.trim_end_matches('.'), zone.as_str());
        retry_conflicts(PROVIDER, at, || async {
            let set = self.set(&zone, fqdn).await?;
            match change.apply(&set.values, value) {
                Some(values) => self.write(&zone, fqdn, &set, &values).await,
                None => Ok(Written::Done(())),
            }
        })
        .await
    }
}

/// A path with the API version Azure Resource Manager requires.
fn versioned(path: &str) -> String {
    format!("{path}?api-version={API_VERSION}")
}

impl DnsProvider for AzureDns {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.update(fqdn, value, change))
    }

    fn credential_source(&self) -> Option<CredentialSource> {
        Some(self.source.clone())
    }
}
