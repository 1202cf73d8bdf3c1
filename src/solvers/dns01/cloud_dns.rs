//! Google Cloud DNS API v1 (cloud.google.com/dns/docs/reference/rest/v1):
//! `GET /dns/v1/projects/{p}/managedZones?dnsName=`, `GET .../managedZones/{z}/rrsets?name=&type=TXT`,
//! `POST .../managedZones/{z}/changes` (`{"additions", "deletions"}`: the TXT set with our
//! value added or removed; not waited for in `present`: the solver's `ready` asks `GET
//! .../changes/{id}` and says "not yet" until it is `done`). Access tokens come from
//! a service account key (an RS256 JWT exchanged at its `token_uri`, RFC 7523) or the
//! metadata server. Errors are `{"error": {"code", "message", "status"}}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::Method;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Answer, ApiClient, Body, Rest, base_url, bearer, find_zone};
use super::error::DnsError;
use super::provider::{Change, Pending, Secrets};
use crate::api::issuer::CloudDns as Config;
use crate::solvers::SolverError;

pub const DEFAULT_URL: &str = "https://dns.googleapis.com";
const PROVIDER: &str = "Google Cloud DNS";
const METADATA_TOKEN: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    token_uri: String,
}

pub struct CloudDns {
    /// At `.../dns/v1/projects/{p}`.
    rest: Rest,
    zone: Option<String>,
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

/// An access token for `key`: a JWT signed with its RSA key, exchanged at its token URI.
async fn key_token(api: &ApiClient, key: &ServiceAccountKey) -> Result<String, SolverError> {
    let invalid =
        |what: &str| SolverError::InvalidSpec(format!("the cloudDNS service account key {what}"));
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key.private_key.as_bytes())
        .map_err(|_| invalid("has no PKCS#8 private_key"))?;
    let pair = ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| invalid("private_key is not an RSA key"))?;
    let now = jiff::Timestamp::now().as_second();
    let header = B64.encode(json!({ "alg": "RS256", "typ": "JWT" }).to_string());
    let claims = B64.encode(
        json!({
            "iss": key.client_email,
            "scope": "https://www.googleapis.com/auth/ndev.clouddns.readwrite",
            "aud": key.token_uri,
            "iat": now,
            "exp": now + 3600,
        })
        .to_string(),
    );
    let input = format!("{header}.{claims}");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| invalid("cannot sign"))?;
    let jwt = format!("{input}.{}", B64.encode(signature));
    let form =
        format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}");
    let refused = |a: &Answer| {
        let error = a.body["error"].as_str().unwrap_or("error");
        let description = a.body["error_description"].as_str().unwrap_or("");
        let message = format!("HTTP {}: {error} {description}", a.status);
        DnsError::api(PROVIDER, &key.client_email, "(token exchange)", message)
    };
    Ok(api.access_token(&key.token_uri, &form, refused).await?)
}

/// A token from the metadata server (workload identity).
async fn metadata_token(api: &ApiClient) -> Result<String, SolverError> {
    let headers = [("metadata-flavor", "Google".to_string())];
    let answer = api
        .send(Method::GET, METADATA_TOKEN, &headers, Body::None)
        .await
        .map_err(|e| {
            SolverError::InvalidSpec(format!(
                "cloudDNS has no serviceAccountSecretRef and no workload identity: {e}"
            ))
        })?;
    answer.body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            SolverError::InvalidSpec(format!(
                "the metadata server gave no access token: {}",
                words(&answer)
            ))
        })
}

impl CloudDns {
    pub async fn new(secrets: Secrets<'_>, cfg: &Config) -> Result<CloudDns, SolverError> {
        let api = ApiClient::new(PROVIDER)?;
        let token = match &cfg.service_account_secret_ref {
            Some(r) => {
                let json = secrets.value(r, "cloudDNS service account key").await?;
                let key: ServiceAccountKey = serde_json::from_str(&json).map_err(|_| {
                    SolverError::InvalidSpec(format!(
                        "the cloudDNS service account Secret {} is not a service account JSON key (client_email, private_key, token_uri)",
                        r.name
                    ))
                })?;
                key_token(&api, &key).await?
            }
            None => metadata_token(&api).await?,
        };
        let base = base_url(cfg.api_url.as_deref(), DEFAULT_URL);
        let base = format!("{base}/dns/v1/projects/{}", cfg.project.trim());
        Ok(CloudDns {
            rest: Rest::new(api, base, bearer(&token), words),
            zone: cfg.hosted_zone_name.clone(),
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

    /// Replaces the set (`deletions` of the old one, `additions` of the new).
    async fn write(
        &self,
        zone: &str,
        fqdn: &str,
        old: Option<Value>,
        values: Vec<String>,
    ) -> Result<Option<String>, DnsError> {
        let name = format!("{}.", fqdn.trim_end_matches('.'));
        let at = (name.as_str(), zone);
        let mut body = json!({ "kind": "dns#change" });
        if let Some(old) = old {
            body["deletions"] = json!([old]);
        }
        if !values.is_empty() {
            body["additions"] = json!([{ "kind": "dns#resourceRecordSet", "name": name, "type": "TXT", "ttl": 60, "rrdatas": values }]);
        }
        let path = format!("/managedZones/{zone}/changes");
        let rest = &self.rest;
        // Not waiting for the change to be `done` here: the solver's `ready` asks
        // (`applied`), and says "not yet" until then.
        let answer = rest
            .expect(Method::POST, &path, Some(&body), ok, at)
            .await?;
        let id = answer.body["id"].as_str().unwrap_or_default();
        let pending = answer.body["status"].as_str() == Some("pending") && !id.is_empty();
        Ok(pending.then(|| format!("{zone}/{id}")))
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
        let set = self.set(&zone, fqdn).await?;
        match change.apply(&rrdatas(&set), &format!("\"{value}\"")) {
            Some(values) => self.write(&zone, fqdn, set, values).await,
            None => Ok(None),
        }
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

super::provider::pending_changes_provider!(CloudDns);
