//! acme-dns (github.com/joohoi/acme-dns): `POST <host>/update` with `X-Api-User`,
//! `X-Api-Key` and `{"subdomain", "txt"}`. The server keeps the two latest values of a
//! subdomain (an apex and its wildcard) and has no delete: cleanup is nothing to do. The
//! accounts JSON is cert-manager's (and lego's storage file's) format, keyed by domain.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiClient, Body};
use super::error::DnsError;
use super::provider::{Change, DnsFuture, DnsProvider, Secrets};
use crate::api::issuer::AcmeDns as Config;
use crate::solvers::SolverError;

const PROVIDER: &str = "acme-dns";

#[derive(Clone, Deserialize)]
struct Account {
    username: String,
    password: String,
    fulldomain: String,
    subdomain: String,
}

pub struct AcmeDns {
    api: ApiClient,
    host: String,
    accounts: std::collections::HashMap<String, Account>,
}

impl AcmeDns {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<AcmeDns, SolverError> {
        let json = secrets
            .value(&cfg.account_secret_ref, "acme-dns accounts")
            .await?;
        let accounts = serde_json::from_str(&json).map_err(|e| {
            // Never quote the JSON: it holds passwords.
            SolverError::InvalidSpec(format!(
                "the acme-dns accounts Secret {} is not the accounts JSON ({{\"<domain>\": {{\"username\", \"password\", \"fulldomain\", \"subdomain\"}}}}): {}",
                cfg.account_secret_ref.name,
                e.classify_name()
            ))
        })?;
        Ok(AcmeDns {
            api: ApiClient::new(PROVIDER)?,
            host: cfg.host.trim_end_matches('/').to_string(),
            accounts,
        })
    }

    /// The account for the domain whose challenge record is `fqdn`.
    fn account(&self, fqdn: &str) -> Result<&Account, DnsError> {
        let domain = domain(fqdn);
        self.accounts.get(&domain).ok_or_else(|| {
            let message = format!("the accounts Secret has no entry for {domain}");
            DnsError::api(PROVIDER, fqdn.trim_end_matches('.'), &domain, message)
        })
    }

    /// Sets the subdomain's latest value.
    async fn update(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let account = self.account(fqdn)?;
        let headers = [
            ("x-api-user", account.username.clone()),
            ("x-api-key", account.password.clone()),
        ];
        let body = json!({ "subdomain": account.subdomain, "txt": value });
        let url = format!("{}/update", self.host);
        let answer = self
            .api
            .send(Method::POST, &url, &headers, Body::Json(&body))
            .await?;
        if answer.status == 200 {
            return Ok(());
        }
        let error = answer.body["error"].as_str();
        let message = error.map_or_else(|| answer.body.to_string(), str::to_string);
        let message = format!("HTTP {}: {message}", answer.status);
        Err(DnsError::api(
            PROVIDER,
            &account.fulldomain,
            domain(fqdn),
            message,
        ))
    }
}

/// The domain a challenge record is for (`_acme-challenge.` stripped).
fn domain(fqdn: &str) -> String {
    let name = fqdn.trim_end_matches('.');
    name.strip_prefix("_acme-challenge.")
        .unwrap_or(name)
        .to_string()
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing or wrong fields",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

impl DnsProvider for AcmeDns {
    fn change<'a>(&'a self, change: Change, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        match change {
            Change::Add => Box::pin(self.update(fqdn, value)),
            // acme-dns has no delete; the next update replaces the older value.
            Change::Remove => Box::pin(async { Ok(()) }),
        }
    }

    fn served_at(&self, fqdn: &str) -> String {
        self.account(fqdn).map_or_else(
            |_| fqdn.to_string(),
            |a| format!("{}.", a.fulldomain.trim_end_matches('.')),
        )
    }
}
