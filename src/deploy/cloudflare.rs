//! Cloudflare custom certificates (API v4, "Custom SSL for a Zone"): `POST
//! /zones/{zone}/custom_certificates` the first time, `PATCH .../custom_certificates/{id}`
//! on renewal, `GET` to see what is there, `DELETE`. Cloudflare answers `{"success",
//! "errors": [{"code", "message"}], "result"}`.
//!
//! Cloudflare never gives the certificate back, so "already there" means the same
//! `expires_on` (to the second) as ours. A PATCH of an `sni_custom` certificate may
//! answer a new ID (Cloudflare's reference: "will result in a new resource id being
//! returned, and the previous one being deleted"): the ID in the answer is kept.

use reqwest::Method;
use serde_json::{Value, json};

use super::rest::{Answer, Rest};
use super::{Bundle, DeployError, Deployed};
use crate::api::deploy::CloudflareTarget;
use crate::api::issuer::SecretKeySelector;

pub const DEFAULT_URL: &str = "https://api.cloudflare.com/client/v4";

pub struct Cloudflare {
    rest: Rest,
    cfg: CloudflareTarget,
}

/// Where the copy goes: the zone (as the target names it), and the custom certificate
/// it adopts, if any (adopting another one is a new place).
pub fn location(cfg: &CloudflareTarget) -> String {
    let zone = (cfg.zone_id.as_deref())
        .or(cfg.zone_name.as_deref())
        .unwrap_or("");
    match &cfg.custom_certificate_id {
        Some(id) => format!("cloudflare:zone/{zone}/adopted/{id}"),
        None => format!("cloudflare:zone/{zone}"),
    }
}

/// Cloudflare's own words (`errors[].message (code N)`), with the HTTP status.
fn words(answer: &Answer) -> String {
    let errors: Vec<String> = (answer.body["errors"].as_array().into_iter().flatten())
        .map(|e| {
            let message = e["message"].as_str().unwrap_or("?");
            format!("{message} (code {})", e["code"])
        })
        .collect();
    match errors.is_empty() {
        true => format!(
            "HTTP {}: {}",
            answer.status,
            super::rest::short(&answer.body)
        ),
        false => format!("HTTP {}: {}", answer.status, errors.join("; ")),
    }
}

/// Whether custom certificate `c` holds `bundle`'s certificate: Cloudflare never gives
/// the certificate back, so the same `expires_on` (to the second) and `hosts` (the
/// certificate's DNS names) it is.
fn holds(c: &Value, bundle: &Bundle) -> bool {
    let expires = (c["expires_on"].as_str()).and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let same_expiry = expires.is_some_and(|t| t.as_second() == bundle.info.not_after.as_second());
    let mut hosts: Vec<&str> = (c["hosts"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let mut names: Vec<&str> = bundle.info.dns_names.iter().map(String::as_str).collect();
    hosts.sort_unstable();
    names.sort_unstable();
    same_expiry && hosts == names
}

/// Whether `replaced` (the notAfter of the certificate deployed before) is `bundle`'s
/// notAfter to the second: `expires_on` cannot tell the two apart.
fn same_second(replaced: Option<jiff::Timestamp>, bundle: &Bundle) -> bool {
    replaced.is_some_and(|t| t.as_second() == bundle.info.not_after.as_second())
}

impl Cloudflare {
    /// With the target's API token (or global API key and email), read from Secrets in
    /// `namespace`. Cloudflare has no ambient credentials.
    pub async fn new(
        client: &kube::Client,
        namespace: &str,
        cfg: &CloudflareTarget,
    ) -> Result<Cloudflare, DeployError> {
        let value = async |r: &SecretKeySelector, what: &str| {
            super::secret_value(client, namespace, r, what).await
        };
        let auth = match (&cfg.api_token_secret_ref, &cfg.api_key_secret_ref) {
            (Some(r), _) => vec![(
                "authorization",
                format!("Bearer {}", value(r, "Cloudflare API token").await?),
            )],
            (None, Some(r)) => {
                let email = cfg.email.clone().ok_or_else(|| {
                    DeployError::invalid("cloudflare.apiKeySecretRef needs email")
                })?;
                let key = value(r, "Cloudflare API key").await?;
                vec![("x-auth-email", email), ("x-auth-key", key)]
            }
            (None, None) => {
                return Err(DeployError::invalid(
                    "cloudflare needs apiTokenSecretRef (or apiKeySecretRef and email)",
                ));
            }
        };
        let ids = [
            ("zoneID", &cfg.zone_id),
            ("customCertificateID", &cfg.custom_certificate_id),
        ];
        for (field, id) in ids {
            if let Some(id) = id {
                let field = format!("cloudflare.{field}");
                super::rest::check_name(&field, id, super::rest::name_char, 64)?;
            }
        }
        if cfg.zone_id.is_none() && cfg.zone_name.is_none() {
            return Err(DeployError::invalid("cloudflare needs zoneID or zoneName"));
        }
        let base = cfg.api_url.as_deref().unwrap_or(DEFAULT_URL);
        Ok(Cloudflare {
            rest: Rest::new("Cloudflare", base, auth, words)?,
            cfg: cfg.clone(),
        })
    }

    /// The zone's ID: given, or looked up by name (`GET /zones?name=`).
    async fn zone(&self) -> Result<String, DeployError> {
        if let Some(id) = &self.cfg.zone_id {
            return Ok(id.clone());
        }
        let name = self.cfg.zone_name.as_deref().unwrap_or_default();
        let path = format!("/zones?name={name}");
        let answer = (self.rest)
            .expect(Method::GET, &path, None, "zone lookup")
            .await?;
        let id = answer.body["result"][0]["id"].as_str();
        id.map(str::to_string).ok_or_else(|| {
            DeployError::invalid(format!(
                "Cloudflare has no zone {name} this token may see (Zone / Zone / Read)"
            ))
        })
    }

    /// The custom certificate `id`; `None`: it does not exist.
    async fn get(&self, zone: &str, id: &str) -> Result<Option<Value>, DeployError> {
        let path = format!("/zones/{zone}/custom_certificates/{id}");
        let found = self.rest.read(&path).await?;
        Ok(found.map(|body| body["result"].clone()))
    }

    /// A custom certificate of the zone holding `bundle`'s certificate: one uploaded
    /// before a status write was lost (Cloudflare has no idempotency key). The first
    /// page (50) of the zone's custom certificates is looked at.
    async fn find(&self, zone: &str, bundle: &Bundle) -> Result<Option<Value>, DeployError> {
        let path = format!("/zones/{zone}/custom_certificates?per_page=50");
        let answer = self.rest.expect(Method::GET, &path, None, "list").await?;
        let all = answer.body["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(all.into_iter().find(|c| holds(c, bundle)))
    }

    /// Puts `bundle` into custom certificate `id` (PATCH), or a new one when there is
    /// none or it is gone (unless `adopted`: the user's `customCertificateID` must exist).
    /// `replaced`: the notAfter of another certificate the status says `id` holds. Two
    /// certificates may share a notAfter to the second (a renewal issued within a second
    /// of the one before, as Pebble does when the authorization is reused), and then
    /// `expires_on` cannot tell them apart: the PATCH is sent.
    pub async fn deploy(
        &self,
        bundle: &Bundle,
        (id, adopted): (Option<&str>, bool),
        replaced: Option<jiff::Timestamp>,
    ) -> Result<Deployed, DeployError> {
        let zone = self.zone().await?;
        let mut existing = match id {
            Some(id) => self.get(&zone, id).await?,
            None => None,
        };
        if let (Some(id), None, true) = (id, &existing, adopted) {
            return Err(DeployError::invalid(format!(
                "cloudflare.customCertificateID {id} does not exist in zone {zone}"
            )));
        }
        if existing.is_none() {
            existing = self.find(&zone, bundle).await?;
        }
        let bundle_method = self.cfg.bundle_method.as_deref().unwrap_or("ubiquitous");
        let mut body = json!({
            "certificate": bundle.chain_pem, "private_key": bundle.key_pem,
            "bundle_method": bundle_method,
        });
        let collection = format!("/zones/{zone}/custom_certificates");
        let id_of = |c: &Value| c["id"].as_str().unwrap_or_default().to_string();
        let answer = match existing {
            Some(c)
                if holds(&c, bundle)
                    && c["bundle_method"] == bundle_method
                    && !same_second(replaced, bundle) =>
            {
                return Ok(Deployed::unchanged(&id_of(&c)));
            }
            Some(c) => {
                let path = format!("{collection}/{}", id_of(&c));
                let update = self
                    .rest
                    .expect(Method::PATCH, &path, Some(&body), "update");
                update.await?
            }
            None => {
                let kind = self.cfg.certificate_type.as_deref().unwrap_or("sni_custom");
                body["type"] = json!(kind);
                let upload = self
                    .rest
                    .expect(Method::POST, &collection, Some(&body), "upload");
                upload.await?
            }
        };
        let id = answer.body["result"]["id"]
            .as_str()
            .ok_or_else(|| DeployError::refused("Cloudflare answered no custom certificate id"))?;
        Ok(Deployed::wrote(id))
    }

    /// Deletes custom certificate `id` (gone already: fine).
    pub async fn delete(&self, id: &str) -> Result<(), DeployError> {
        let zone = self.zone().await?;
        let path = format!("/zones/{zone}/custom_certificates/{id}");
        self.rest.delete(&path).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudflare_errors_read_with_their_codes() {
        let answer = Answer {
            status: 403,
            body: json!({"success": false, "errors": [{"code": 10000, "message": "Authentication error"}]}),
        };
        assert_eq!(
            words(&answer),
            "HTTP 403: Authentication error (code 10000)"
        );
        let answer = Answer {
            status: 502,
            body: json!("<html>bad gateway"),
        };
        assert_eq!(words(&answer), "HTTP 502: \"<html>bad gateway\"");
    }
}
