//! Reading what reports are made of, shared by `status`, `check` and `diagnose`: the
//! issuer's ACME directory (with its trust settings), a JSON GET, a Secret's key, and the
//! Secrets an issuer's spec names. A leaf: it imports nothing from the rest of the plugin.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::Value;

use crate::api::{CaaSIssuer, ClusterCaaSIssuer, IssuerSpec, IssuerStatus};

/// The directory, fetched with the issuer's trust settings.
pub async fn directory(spec: &IssuerSpec) -> Result<(crate::acme::AcmeHttp, Value), String> {
    use std::sync::Arc;
    let stats = Arc::new(crate::acme::AcmeStats::new(
        Default::default(),
        Arc::new(crate::shared::memory::Memory::default()),
    ));
    let http =
        crate::acme::AcmeHttp::new(spec.ca_bundle.as_deref(), stats).map_err(|e| e.to_string())?;
    let answer = get(&http, spec.server.trim(), "reading the directory: ").await?;
    let (status, body) = (answer.parts.status, answer.body);
    if !status.is_success() {
        return Err(format!("the directory URL answered {status}"));
    }
    let dir: Value = serde_json::from_slice(&body)
        .map_err(|_| "the server URL does not serve an ACME directory (not JSON)".to_string())?;
    if !dir["newAccount"].is_string() {
        return Err("the server URL serves JSON without newAccount: not an ACME directory".into());
    }
    Ok((http, dir))
}

/// GETs `url` with the issuer's trust settings, waiting at most 15 s; `reading` starts
/// the message of an error while reading the body.
async fn get(
    http: &crate::acme::AcmeHttp,
    url: &str,
    reading: &str,
) -> Result<crate::acme::direct::Answer, String> {
    use instant_acme::HttpClient;
    let req = http::Request::get(url)
        .body(instant_acme::BodyWrapper::default())
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(15), http.request(req))
        .await
        .map_err(|_| "no answer within 15 s".to_string())?
        .map_err(|e| crate::acme::AcmeError::from_acme(e).to_string())?;
    crate::acme::direct::read(answer)
        .await
        .map_err(|e| format!("{reading}{e}"))
}

/// GETs `url` (JSON) with the issuer's trust settings.
pub async fn get_json(http: &crate::acme::AcmeHttp, url: &str) -> Result<Value, String> {
    let answer = get(http, url, "").await?;
    if !answer.parts.status.is_success() {
        return Err(format!("answered {}", answer.parts.status));
    }
    serde_json::from_slice(&answer.body).map_err(|e| e.to_string())
}

/// The bytes of `key` in Secret `ns/name`; the error says which is missing.
pub async fn secret_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Secret {ns}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {ns}/{name} does not exist"))?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {ns}/{name} has no key {key:?}"))
}

/// Every `...SecretRef` / `secretRef` (`{name, key?}`) in an issuer's spec (or part),
/// serialized: (name, key).
pub fn secret_refs_of(spec: &Value, out: &mut Vec<(String, Option<String>)>) {
    match spec {
        Value::Object(map) => {
            for (k, v) in map {
                if k.to_ascii_lowercase().ends_with("secretref")
                    && let Some(name) = v["name"].as_str()
                {
                    out.push((name.to_string(), v["key"].as_str().map(str::to_string)));
                }
                secret_refs_of(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| secret_refs_of(v, out)),
        _ => {}
    }
}

/// The Secret names in `part` (serialized first); their keys are dropped.
pub fn secret_names_in(part: &impl serde::Serialize) -> Vec<String> {
    let mut found = Vec::new();
    secret_refs_of(&serde_json::to_value(part).unwrap_or_default(), &mut found);
    found.into_iter().map(|(name, _)| name).collect()
}

/// An issuer as `status issuer` and `check issuer` look at it.
pub struct FoundIssuer {
    pub kind: &'static str,
    /// Empty for a ClusterCaaSIssuer.
    pub namespace: String,
    pub spec: IssuerSpec,
    pub status: Option<IssuerStatus>,
}

/// Which issuer a verb names: a CaaSIssuer `name` in `ns`, or with `cluster` the
/// ClusterCaaSIssuer `name`.
#[derive(Clone, Copy, Debug)]
pub struct IssuerAt<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub cluster: bool,
}

impl IssuerAt<'_> {
    pub fn kind(&self) -> &'static str {
        match self.cluster {
            true => "ClusterCaaSIssuer",
            false => "CaaSIssuer",
        }
    }
}

/// Reads the issuer `at` names.
pub async fn read_issuer(client: &kube::Client, at: IssuerAt<'_>) -> anyhow::Result<FoundIssuer> {
    let IssuerAt { ns, name, cluster } = at;
    Ok(match cluster {
        true => {
            let i = Api::<ClusterCaaSIssuer>::all(client.clone())
                .get_opt(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no ClusterCaaSIssuer {name}"))?;
            FoundIssuer {
                kind: "ClusterCaaSIssuer",
                namespace: String::new(),
                spec: i.spec.0,
                status: i.status,
            }
        }
        false => {
            let i = Api::<CaaSIssuer>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no CaaSIssuer {name} in namespace {ns}"))?;
            FoundIssuer {
                kind: "CaaSIssuer",
                namespace: ns.to_string(),
                spec: i.spec,
                status: i.status,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_refs_are_found_anywhere_in_a_spec() {
        let spec = json!({
            "externalAccountBinding": { "keyID": "k", "keySecretRef": { "name": "eab", "key": "hmac" } },
            "privateKeySecretRef": { "name": "account" },
            "solvers": [{ "dns01": { "cloudflare": { "apiTokenSecretRef": { "name": "cf", "key": "token" } } } }],
            "notify": { "webhooks": [{ "urlSecretRef": { "name": "hooks", "key": "slack" } }] }
        });
        let mut found = Vec::new();
        secret_refs_of(&spec, &mut found);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["eab", "hooks", "account", "cf"]);
        assert_eq!(found[0].1.as_deref(), Some("hmac"));
        assert_eq!(found[2].1, None);
        assert_eq!(
            secret_names_in(&spec),
            vec!["eab", "hooks", "account", "cf"]
        );
    }
}
