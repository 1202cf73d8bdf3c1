//! Azure DNS through Azure Resource Manager (learn.microsoft.com/rest/api/dns, api-version
//! 2018-05-01): `GET|PUT|DELETE /subscriptions/{s}/resourceGroups/{g}/providers/
//! Microsoft.Network/dnsZones/{zone}/TXT/{relative name}` with the record set's
//! `{"properties": {"TTL", "TXTRecords": [{"value": [..]}]}}`, and a bearer token from
//! Microsoft Entra ID (client credentials: a client secret, or workload identity's
//! federated token). Errors are `{"error": {"code", "message"}}`.

use futures::future::BoxFuture;
use http::Method;
use serde_json::{Value, json};

use super::DnsError;
use super::api::{Answer, ApiClient, relative, zone_candidates};
use super::provider::{DnsProvider, secret_value};
use crate::shared::IssuerHandle;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://management.azure.com";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const PROVIDER: &str = "Azure DNS";
const API_VERSION: &str = "2018-05-01";

pub struct AzureDns {
    api: ApiClient,
    /// `.../resourceGroups/{g}/providers/Microsoft.Network/dnsZones`
    zones: String,
    auth: Vec<(&'static str, String)>,
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
    super::sigv4::uri_encode(s, false)
}

impl AzureDns {
    pub async fn new(
        client: &kube::Client,
        issuer: &IssuerHandle,
        cfg: &crate::api::issuer::AzureDns,
    ) -> Result<AzureDns, SolverError> {
        let api = ApiClient::new(PROVIDER)?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let tenant = cfg.tenant_id.clone().or_else(|| env("AZURE_TENANT_ID"));
        let client_id = cfg.client_id.clone().or_else(|| env("AZURE_CLIENT_ID"));
        let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
            return Err(SolverError::InvalidSpec("azureDNS needs tenantID and clientID (or workload identity's AZURE_TENANT_ID and AZURE_CLIENT_ID)".into()));
        };
        let proof = match &cfg.client_secret_secret_ref {
            Some(r) => format!(
                "client_secret={}",
                form_encode(&secret_value(client, issuer, r, "Azure client secret").await?)
            ),
            None => {
                let file = env("AZURE_FEDERATED_TOKEN_FILE").ok_or_else(|| {
                    SolverError::InvalidSpec("azureDNS has no clientSecretSecretRef and no workload identity (AZURE_FEDERATED_TOKEN_FILE)".into())
                })?;
                let token = std::fs::read_to_string(&file)
                    .map_err(|e| SolverError::InvalidSpec(format!("cannot read {file}: {e}")))?;
                format!(
                    "client_assertion_type={}&client_assertion={}",
                    form_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    form_encode(token.trim())
                )
            }
        };
        let authority = cfg
            .authority_url
            .as_deref()
            .unwrap_or(DEFAULT_AUTHORITY)
            .trim_end_matches('/');
        let form = format!(
            "grant_type=client_credentials&client_id={}&scope={}&{proof}",
            form_encode(&client_id),
            form_encode("https://management.azure.com/.default")
        );
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let answer = api
            .send_raw(Method::POST, &url, &headers, Some(&form))
            .await?;
        let body: Value =
            serde_json::from_str(answer.body.as_str().unwrap_or_default()).unwrap_or_default();
        let token = match body["access_token"].as_str() {
            Some(t) if answer.status == 200 => t.to_string(),
            _ => {
                return Err(SolverError::Dns(DnsError::Api {
                    provider: PROVIDER,
                    name: format!("client {client_id}"),
                    zone: "(token request)".into(),
                    message: words(&Answer {
                        status: answer.status,
                        body,
                    }),
                }));
            }
        };
        let base = cfg
            .api_url
            .as_deref()
            .unwrap_or(DEFAULT_URL)
            .trim_end_matches('/');
        Ok(AzureDns {
            api,
            zones: format!(
                "{base}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/dnsZones",
                cfg.subscription_id.trim(),
                cfg.resource_group_name.trim()
            ),
            auth: vec![("authorization", format!("Bearer {token}"))],
            zone: cfg.hosted_zone_name.clone(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, DnsError> {
        let url = format!("{}{path}?api-version={API_VERSION}", self.zones);
        self.api.send(method, &url, &self.auth, body).await
    }

    fn refused(name: &str, zone: &str, answer: &Answer) -> DnsError {
        DnsError::Api {
            provider: PROVIDER,
            name: name.to_string(),
            zone: zone.to_string(),
            message: words(answer),
        }
    }

    async fn zone(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = fqdn.trim_end_matches('.');
        if let Some(z) = &self.zone {
            return Ok(z.trim_end_matches('.').to_string());
        }
        for candidate in zone_candidates(fqdn) {
            let answer = self
                .call(Method::GET, &format!("/{candidate}"), None)
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

    /// The TXT values at `fqdn` (each record's strings joined).
    async fn values(&self, zone: &str, fqdn: &str) -> Result<Vec<String>, DnsError> {
        let path = format!("/{zone}/TXT/{}", relative(fqdn, zone));
        let answer = self.call(Method::GET, &path, None).await?;
        match answer.status {
            200 => Ok(answer.body["properties"]["TXTRecords"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            r["value"]
                                .as_array()
                                .map(|v| v.iter().filter_map(|s| s.as_str()).collect::<String>())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default()),
            404 => Ok(Vec::new()),
            _ => Err(Self::refused(fqdn.trim_end_matches('.'), zone, &answer)),
        }
    }

    /// Writes the set (`PUT`), or deletes it when empty.
    async fn write(&self, zone: &str, fqdn: &str, values: &[String]) -> Result<(), DnsError> {
        let path = format!("/{zone}/TXT/{}", relative(fqdn, zone));
        let answer = match values.is_empty() {
            true => self.call(Method::DELETE, &path, None).await?,
            false => {
                let records: Vec<Value> = values.iter().map(|v| json!({ "value": [v] })).collect();
                let body = json!({ "properties": { "TTL": 60, "TXTRecords": records } });
                self.call(Method::PUT, &path, Some(&body)).await?
            }
        };
        match answer.status {
            200 | 201 | 202 | 204 => Ok(()),
            _ => Err(Self::refused(fqdn.trim_end_matches('.'), zone, &answer)),
        }
    }
}

impl DnsProvider for AzureDns {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let zone = self.zone(fqdn).await?;
            let mut values = self.values(&zone, fqdn).await?;
            if values.iter().any(|v| v == value) {
                return Ok(());
            }
            values.push(value.to_string());
            self.write(&zone, fqdn, &values).await
        })
    }

    fn remove_txt<'a>(
        &'a self,
        fqdn: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let zone = self.zone(fqdn).await?;
            let values = self.values(&zone, fqdn).await?;
            if !values.iter().any(|v| v == value) {
                return Ok(());
            }
            let rest: Vec<String> = values.into_iter().filter(|v| v != value).collect();
            self.write(&zone, fqdn, &rest).await
        })
    }
}
