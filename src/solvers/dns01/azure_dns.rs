//! Azure DNS through Azure Resource Manager (learn.microsoft.com/rest/api/dns, api-version
//! 2018-05-01): `GET|PUT|DELETE /subscriptions/{s}/resourceGroups/{g}/providers/
//! Microsoft.Network/dnsZones/{zone}/TXT/{relative name}` with the record set's
//! `{"properties": {"TTL", "TXTRecords": [{"value": [..]}]}}`, and a bearer token from
//! Microsoft Entra ID (client credentials: a client secret, or workload identity's
//! federated token). Errors are `{"error": {"code", "message"}}`.

use http::Method;
use serde_json::{Value, json};

use super::api::{Answer, ApiClient, Rest, base_url, bearer, find_zone, relative};
use super::error::DnsError;
use super::provider::{Change, DnsFuture, DnsProvider, Secrets};
use crate::api::issuer::AzureDns as Config;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://management.azure.com";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const PROVIDER: &str = "Azure DNS";
const API_VERSION: &str = "2018-05-01";

pub struct AzureDns {
    /// At `.../resourceGroups/{g}/providers/Microsoft.Network/dnsZones`.
    rest: Rest,
    zone: Option<String>,
}

fn words(answer: &Answer) -> String {
    let e = &answer.body["error"];
    match (
        e["code"].as_str(),
        e["message"].as_str(),
        answer.body["error_description"].as_str(),
    ) {
        (Some(code), Some(m), _) => format!("HTTP {}: {code}: {m}", answer.status),
        (_, _, Some(d)) => format!(
            "HTTP {}: {}: {d}",
            answer.status,
            answer.body["error"].as_str().unwrap_or("error")
        ),
        _ => format!("HTTP {}: {}", answer.status, answer.body),
    }
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How the client proves itself to Entra ID: its secret, or workload identity's
/// federated token.
async fn proof(secrets: Secrets<'_>, cfg: &Config) -> Result<String, SolverError> {
    if let Some(r) = &cfg.client_secret_secret_ref {
        let secret = secrets.value(r, "Azure client secret").await?;
        return Ok(format!("client_secret={}", form_encode(&secret)));
    }
    let file = env("AZURE_FEDERATED_TOKEN_FILE").ok_or_else(|| {
        SolverError::InvalidSpec("azureDNS has no clientSecretSecretRef and no workload identity (AZURE_FEDERATED_TOKEN_FILE)".into())
    })?;
    let token = std::fs::read_to_string(&file)
        .map_err(|e| SolverError::InvalidSpec(format!("cannot read {file}: {e}")))?;
    Ok(format!(
        "client_assertion_type={}&client_assertion={}",
        form_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        form_encode(token.trim())
    ))
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl AzureDns {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<AzureDns, SolverError> {
        let api = ApiClient::new(PROVIDER)?;
        let tenant = cfg.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID"));
        let client_id = cfg.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
        let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
            return Err(SolverError::InvalidSpec("azureDNS needs tenantID and clientID (or workload identity's AZURE_TENANT_ID and AZURE_CLIENT_ID)".into()));
        };
        let form = format!(
            "grant_type=client_credentials&client_id={}&scope={}&{}",
            form_encode(&client_id),
            form_encode("https://management.azure.com/.default"),
            proof(secrets, cfg).await?
        );
        let authority = base_url(cfg.authority_url.as_deref(), DEFAULT_AUTHORITY);
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let refused = |a: &Answer| {
            DnsError::api(
                PROVIDER,
                format!("client {client_id}"),
                "(token request)",
                words(a),
            )
        };
        let token = api.access_token(&url, &form, refused).await?;
        let zones = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnsZones",
            base_url(cfg.api_url.as_deref(), DEFAULT_URL),
            cfg.subscription_id.trim(),
            cfg.resource_group_name.trim()
        );
        Ok(AzureDns {
            rest: Rest::new(api, zones, bearer(&token), words),
            zone: cfg.hosted_zone_name.clone(),
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

    /// The TXT values at `fqdn` (each record's strings joined).
    async fn values(&self, zone: &str, fqdn: &str) -> Result<Vec<String>, DnsError> {
        let path = versioned(&format!("/{zone}/TXT/{}", relative(fqdn, zone)));
        let at = (fqdn.trim_end_matches('.'), zone);
        let Some(answer) = self.rest.get_opt(&path, at).await? else {
            return Ok(Vec::new());
        };
        let joined = |r: &Value| {
            r["value"]
                .as_array()
                .map(|v| v.iter().filter_map(|s| s.as_str()).collect::<String>())
                .unwrap_or_default()
        };
        Ok(answer.body["properties"]["TXTRecords"]
            .as_array()
            .map(|a| a.iter().map(joined).collect())
            .unwrap_or_default())
    }

    /// Writes the set (`PUT`), or deletes it when empty.
    async fn write(&self, zone: &str, fqdn: &str, values: &[String]) -> Result<(), DnsError> {
        let path = versioned(&format!("/{zone}/TXT/{}", relative(fqdn, zone)));
        let records: Vec<Value> = values.iter().map(|v| json!({ "value": [v] })).collect();
        let body = json!({ "properties": { "TTL": 60, "TXTRecords": records } });
        let (method, body) = match values.is_empty() {
            true => (Method::DELETE, None),
            false => (Method::PUT, Some(&body)),
        };
        let ok = |a: &Answer| a.is(&[200, 201, 202, 204]);
        let at = (fqdn.trim_end_matches('.'), zone);
        self.rest.expect(method, &path, body, ok, at).await?;
        Ok(())
    }

    async fn update(&self, fqdn: &str, value: &str, change: Change) -> Result<(), DnsError> {
        let zone = self.zone(fqdn).await?;
        let values = self.values(&zone, fqdn).await?;
        match change.apply(&values, value) {
            Some(values) => self.write(&zone, fqdn, &values).await,
            None => Ok(()),
        }
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
}
