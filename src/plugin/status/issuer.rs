//! `kubectl caas status issuer NAME`: its account, EAB key ID (never the HMAC), whether
//! its ACME directory answers from here, a rate limit its Certificates report, Events,
//! and a verdict.

use kube::api::{Api, ListParams};
use serde::Serialize;

use super::events::{self, EventReport};
use crate::api::Certificate;
use crate::api::conditions::find;
use crate::api::issuer::ExternalAccountBinding;
use crate::plugin::probe;
use crate::plugin::report::{ConditionReport, Report, line, or_dash};

/// The report of `status issuer`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerReport {
    #[serde(rename = "accountURI")]
    pub account_uri: Option<String>,
    pub condition: Option<ConditionReport>,
    pub directory: DirectoryProbe,
    pub events: Vec<EventReport>,
    pub external_account_binding: Option<EabReport>,
    pub kind: &'static str,
    pub name: String,
    /// Empty for a ClusterCaaSIssuer.
    pub namespace: String,
    /// The message of a Certificate paused by the CA's rate limit.
    pub rate_limited: Option<String>,
    pub ready: bool,
    pub server: String,
    pub verdict: String,
}

impl Report for IssuerReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

/// Whether the ACME directory answers from here, TLS verified.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DirectoryProbe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub reachable: bool,
    /// `verified` when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<&'static str>,
}

impl DirectoryProbe {
    fn of(result: &Result<(), String>) -> Self {
        match result {
            Ok(()) => DirectoryProbe {
                error: None,
                reachable: true,
                tls: Some("verified"),
            },
            Err(e) => DirectoryProbe {
                error: Some(e.clone()),
                reachable: false,
                tls: None,
            },
        }
    }
}

/// The EAB settings, never the HMAC.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EabReport {
    pub key_algorithm: String,
    #[serde(rename = "keyID")]
    pub key_id: String,
    pub key_secret_ref: SecretKeyRef,
}

/// A Secret's name and key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretKeyRef {
    pub key: String,
    pub name: String,
}

impl EabReport {
    fn of(e: &ExternalAccountBinding) -> Self {
        EabReport {
            key_algorithm: e.key_algorithm.clone().unwrap_or_else(|| "HS256".into()),
            key_id: e.key_id.clone(),
            key_secret_ref: SecretKeyRef {
                key: e.key_secret_ref.key.clone(),
                name: e.key_secret_ref.name.clone(),
            },
        }
    }
}

/// The message of the first of the issuer's Certificates paused by a rate limit (the
/// pause after a 429 lives in the operator; its Certificates say it).
async fn rate_limited(client: &kube::Client, at: probe::IssuerAt<'_>) -> Option<String> {
    let probe::IssuerAt { ns, name, cluster } = at;
    let certs = match cluster {
        true => Api::<Certificate>::all(client.clone()),
        false => Api::<Certificate>::namespaced(client.clone(), ns),
    };
    certs
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|c| c.spec.issuer_ref.name == name && c.spec.issuer_ref.is_cluster() == cluster)
        .find_map(|c| {
            let ready = find(&c.status.as_ref()?.conditions, "Ready")?;
            (ready.reason == "RateLimited").then(|| ready.message.clone())
        })
}

/// The report for `status issuer`: its account, EAB key ID (never the HMAC), and whether
/// its ACME directory answers from here with TLS verified against its caBundle (or the
/// system's roots: the same probe as `check issuer`).
pub async fn report(
    client: &kube::Client,
    at: probe::IssuerAt<'_>,
) -> anyhow::Result<IssuerReport> {
    let found = probe::read_issuer(client, at).await?;
    let directory = probe::directory(&found.spec).await.map(|_| ());
    let rate_limited = rate_limited(client, at).await;
    let (events_ns, name) = (if at.cluster { "default" } else { at.ns }, at.name);
    let events = events::recent(client, events_ns, found.kind, name, 8).await;
    Ok(build(name, found, directory, rate_limited, events))
}

/// The report from the issuer and what was found about it.
pub fn build(
    name: &str,
    found: probe::FoundIssuer,
    directory: Result<(), String>,
    rate_limited: Option<String>,
    events: Vec<EventReport>,
) -> IssuerReport {
    let status = found.status.unwrap_or_default();
    let ready = find(&status.conditions, "Ready");
    let verdict = crate::plugin::verdict::issuer(
        ready,
        directory.as_ref().map(|_| ()).map_err(String::as_str),
    );
    IssuerReport {
        account_uri: status.account_uri.clone(),
        condition: ready.map(ConditionReport::of),
        directory: DirectoryProbe::of(&directory),
        events,
        external_account_binding: found
            .spec
            .external_account_binding
            .as_ref()
            .map(EabReport::of),
        kind: found.kind,
        name: name.to_string(),
        namespace: found.namespace,
        rate_limited,
        ready: ready.is_some_and(|c| c.is_true()),
        server: found.spec.server,
        verdict,
    }
}

/// The text of `status issuer`.
pub fn render(r: &IssuerReport) -> String {
    let mut out = match r.namespace.as_str() {
        "" => format!("{} {}\n", r.kind, r.name),
        ns => format!("{} {ns}/{}\n", r.kind, r.name),
    };
    line(&mut out, "Server:", &r.server);
    let directory = match (&r.directory.reachable, &r.directory.error) {
        (true, _) => "reachable from here, TLS verified".to_string(),
        (false, e) => format!("NOT reachable from here: {}", or_dash(e.as_deref())),
    };
    line(&mut out, "Directory:", directory);
    line(&mut out, "Account:", or_dash(r.account_uri.as_deref()));
    if let Some(m) = &r.rate_limited {
        line(&mut out, "Rate limit:", m);
    }
    if let Some(eab) = &r.external_account_binding {
        line(
            &mut out,
            "EAB:",
            format!(
                "key ID {}, {}, HMAC in Secret {} key {} (not shown)",
                eab.key_id, eab.key_algorithm, eab.key_secret_ref.name, eab.key_secret_ref.key
            ),
        );
    }
    if let Some(c) = &r.condition {
        line(&mut out, "Ready:", c.text());
    }
    events::render(&mut out, &r.events);
    out.push_str(&format!("Verdict: {}\n", r.verdict));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{IssuerSpec, IssuerStatus};
    use serde_json::json;

    fn found(cluster: bool) -> probe::FoundIssuer {
        let spec: IssuerSpec = serde_json::from_value(json!({
            "server": "https://ca/dir",
            "privateKeySecretRef": { "name": "account" },
            "externalAccountBinding": { "keyID": "kid-1",
                "keySecretRef": { "name": "eab", "key": "hmac" } },
            "solvers": [],
        }))
        .unwrap();
        let status: IssuerStatus = serde_json::from_value(json!({
            "conditions": [{ "type": "Ready", "status": "False", "reason": "EABRejected",
                             "message": "the CA refused the EAB" }],
        }))
        .unwrap();
        probe::FoundIssuer {
            kind: if cluster {
                "ClusterCaaSIssuer"
            } else {
                "CaaSIssuer"
            },
            namespace: if cluster { String::new() } else { "ns".into() },
            spec,
            status: Some(status),
        }
    }

    /// The keys and values the untyped report had.
    #[test]
    fn the_report_keeps_its_json_shape() {
        let r = build(
            "pebble",
            found(false),
            Err("no answer within 15 s".into()),
            None,
            vec![],
        );
        let want = json!({
            "kind": "CaaSIssuer", "namespace": "ns", "name": "pebble", "ready": false,
            "verdict": format!("NOT READY (EABRejected): {}",
                crate::plugin::verdict::issuer_advice("EABRejected")),
            "server": "https://ca/dir", "accountURI": null,
            "externalAccountBinding": { "keyID": "kid-1", "keyAlgorithm": "HS256",
                "keySecretRef": { "name": "eab", "key": "hmac" } },
            "condition": { "status": "False", "reason": "EABRejected",
                           "message": "the CA refused the EAB" },
            "rateLimited": null,
            "directory": { "reachable": false, "error": "no answer within 15 s" },
            "events": [],
        });
        assert_eq!(crate::plugin::report::as_printed(&r), want);
        let r = build("pebble", found(true), Ok(()), Some("later".into()), vec![]);
        let value = crate::plugin::report::as_printed(&r);
        assert_eq!(
            value["directory"],
            json!({ "reachable": true, "tls": "verified" })
        );
        assert_eq!(value["rateLimited"], "later");
        assert_eq!(value["namespace"], "");
    }

    #[test]
    fn the_text_names_the_hmac_secret_never_its_value() {
        let text = render(&build(
            "pebble",
            found(false),
            Err("refused".into()),
            None,
            vec![],
        ));
        let want = "CaaSIssuer ns/pebble
  Server:      https://ca/dir
  Directory:   NOT reachable from here: refused
  Account:     -
  EAB:         key ID kid-1, HS256, HMAC in Secret eab key hmac (not shown)
  Ready:       False EABRejected: the CA refused the EAB
";
        assert!(text.starts_with(want), "{text}");
        let text = render(&build(
            "pebble",
            found(true),
            Ok(()),
            Some("wait".into()),
            vec![],
        ));
        assert!(text.starts_with("ClusterCaaSIssuer pebble\n"), "{text}");
        assert!(
            text.contains("  Directory:   reachable from here, TLS verified\n"),
            "{text}"
        );
        assert!(text.contains("  Rate limit:  wait\n"), "{text}");
    }
}
