//! `kubectl caas status certificate|issuer`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::{verdict, when};
use crate::api::conditions::find;
use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer, IssuerSpec, IssuerStatus};

/// The last events about an object (newest last), at most `n`.
async fn events(client: &kube::Client, ns: &str, kind: &str, name: &str, n: usize) -> Vec<Value> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("regarding.kind={kind},regarding.name={name}"));
    let mut items = match api.list(&lp).await {
        Ok(l) => l.items,
        Err(_) => return Vec::new(),
    };
    let at = |e: &Event| {
        e.series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    items.sort_by_key(at);
    let skip = items.len().saturating_sub(n);
    items
        .iter()
        .skip(skip)
        .map(|e| {
            json!({
                "time": at(e),
                "type": e.type_,
                "reason": e.reason,
                "note": e.note,
            })
        })
        .collect()
}

/// The report for `status certificate`.
pub async fn certificate(
    client: &kube::Client,
    ns: &str,
    name: &str,
    now: Timestamp,
) -> anyhow::Result<Value> {
    let cert = Api::<Certificate>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Certificate {name} in namespace {ns}"))?;
    let status = cert.status.clone().unwrap_or_default();
    let issuer_ref = &cert.spec.issuer_ref;
    let issuer = issuer_summary(client, ns, &issuer_ref.name, issuer_ref.is_cluster()).await;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&cert.spec.secret_name)
        .await?;
    let secret_report = secret
        .as_ref()
        .map(|s| super::inspect::secret_report(s, now));
    let ari = match &secret {
        Some(s) => ari_window(client, ns, &cert, s).await,
        None => None,
    };
    let ready = find(&status.conditions, "Ready");
    let condition = |c: Option<&crate::api::Condition>| {
        c.map(|c| json!({ "status": c.status, "reason": c.reason, "message": c.message }))
    };
    let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
    let is_ready = ready.is_some_and(|c| c.is_true());
    let expiring = find(&status.conditions, "Expiring").filter(|c| c.is_true());
    let verdict = match (is_ready, expiring) {
        (true, Some(e)) => format!("EXPIRING ({}): {}", e.reason, e.message),
        (true, None) => format!(
            "READY: valid until {}; renewal at {}",
            status.not_after.as_deref().unwrap_or("?"),
            status.renewal_time.as_deref().unwrap_or("?")
        ),
        (false, _) if reason.is_empty() => {
            "NOT READY: the operator has not looked at it yet (is it running? does it watch \
             this namespace?)"
                .to_string()
        }
        (false, _) => format!(
            "NOT READY ({reason}): {}",
            verdict::certificate_advice(&reason)
        ),
    };
    let order = status.order.as_ref().map(|o| {
        json!({
            "url": o.url,
            "state": o.state,
            "since": o.state_since,
            "challenges": o.challenges.iter().map(|c| json!({
                "type": c.type_, "name": c.dns_name, "state": c.state, "error": c.error,
                "waitingForDNS": c.waiting_for_dns,
            })).collect::<Vec<_>>(),
        })
    });
    Ok(json!({
        "kind": "Certificate",
        "namespace": ns,
        "name": name,
        "ready": is_ready,
        "verdict": verdict,
        "dnsNames": cert.spec.dns_names,
        "ipAddresses": cert.spec.ip_addresses,
        "secretName": cert.spec.secret_name,
        "issuer": issuer,
        "conditions": {
            "ready": condition(ready),
            "issuing": condition(find(&status.conditions, "Issuing")),
            "expiring": condition(expiring),
        },
        "notBefore": status.not_before,
        "notAfter": status.not_after,
        "renewalTime": status.renewal_time,
        "ariWindow": ari,
        "revision": status.revision,
        "failedIssuanceAttempts": status.failed_issuance_attempts,
        "lastFailureTime": status.last_failure_time,
        "secret": secret_report,
        "order": order,
        "events": events(client, ns, "Certificate", name, 8).await,
    }))
}

/// The CA's suggested renewal window for the Secret's certificate (ARI, RFC 9773: an
/// unauthenticated GET), when the issuer's CA offers it.
async fn ari_window(
    client: &kube::Client,
    ns: &str,
    cert: &Certificate,
    secret: &Secret,
) -> Option<Value> {
    let r = &cert.spec.issuer_ref;
    let spec = match r.is_cluster() {
        true => {
            Api::<ClusterCaaSIssuer>::all(client.clone())
                .get_opt(&r.name)
                .await
                .ok()??
                .spec
                .0
        }
        false => {
            Api::<CaaSIssuer>::namespaced(client.clone(), ns)
                .get_opt(&r.name)
                .await
                .ok()??
                .spec
        }
    };
    let pem = secret
        .data
        .as_ref()?
        .get("tls.crt")
        .and_then(|b| String::from_utf8(b.0.clone()).ok())?;
    let der = crate::pki::pem_certificates(&pem)
        .ok()?
        .into_iter()
        .next()?;
    let id = instant_acme::CertificateIdentifier::try_from(
        &rustls_pki_types::CertificateDer::from(der.as_slice()),
    )
    .ok()?;
    let (http, dir) = super::check::directory(&spec).await.ok()?;
    let base = dir["renewalInfo"].as_str()?;
    let info = super::check::get_json(&http, &format!("{}/{id}", base.trim_end_matches('/')))
        .await
        .ok()?;
    let w = &info["suggestedWindow"];
    Some(json!({ "start": w["start"], "end": w["end"] }))
}

/// Kind, name and Ready of the issuer a Certificate names.
async fn issuer_summary(client: &kube::Client, ns: &str, name: &str, cluster: bool) -> Value {
    let found = match cluster {
        true => Api::<ClusterCaaSIssuer>::all(client.clone())
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .map(|i| i.status),
        false => Api::<CaaSIssuer>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .map(|i| i.status),
    };
    let kind = if cluster {
        "ClusterCaaSIssuer"
    } else {
        "CaaSIssuer"
    };
    let ready = found
        .as_ref()
        .and_then(|s| s.as_ref())
        .and_then(|s| find(&s.conditions, "Ready"))
        .map(|c| json!({ "status": c.status, "reason": c.reason, "message": c.message }));
    json!({ "kind": kind, "name": name, "exists": found.is_some(), "ready": ready })
}

/// The report for `status issuer`: its account, EAB key ID (never the HMAC), and whether
/// its ACME directory answers from here with TLS verified against its caBundle (or the
/// system's roots).
pub async fn issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
) -> anyhow::Result<Value> {
    let (spec, status, kind, where_): (IssuerSpec, Option<IssuerStatus>, &str, String) =
        match cluster {
            true => {
                let i = Api::<ClusterCaaSIssuer>::all(client.clone())
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no ClusterCaaSIssuer {name}"))?;
                (i.spec.0, i.status, "ClusterCaaSIssuer", String::new())
            }
            false => {
                let i = Api::<CaaSIssuer>::namespaced(client.clone(), ns)
                    .get_opt(name)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no CaaSIssuer {name} in namespace {ns}"))?;
                (i.spec, i.status, "CaaSIssuer", ns.to_string())
            }
        };
    let status = status.unwrap_or_default();
    let ready = find(&status.conditions, "Ready");
    let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
    let is_ready = ready.is_some_and(|c| c.is_true());
    let directory = probe_directory(&spec).await;
    // The pause after a 429 lives in the operator; its Certificates say it.
    let certs = match cluster {
        true => Api::<Certificate>::all(client.clone()),
        false => Api::<Certificate>::namespaced(client.clone(), ns),
    };
    let paused: Vec<String> = certs
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|c| c.spec.issuer_ref.name == name && c.spec.issuer_ref.is_cluster() == cluster)
        .filter_map(|c| {
            let ready = find(&c.status.as_ref()?.conditions, "Ready")?;
            (ready.reason == "RateLimited").then(|| ready.message.clone())
        })
        .collect();
    let verdict = match (is_ready, directory.is_ok()) {
        (true, true) => "READY: the account is registered and the CA answers".to_string(),
        (true, false) => format!(
            "READY, but the CA's directory does not answer from here: {}",
            directory.as_ref().err().cloned().unwrap_or_default()
        ),
        (false, _) if reason.is_empty() => {
            "NOT READY: the operator has not looked at it yet".to_string()
        }
        (false, _) => format!("NOT READY ({reason}): {}", verdict::issuer_advice(&reason)),
    };
    let eab = spec.external_account_binding.as_ref().map(|e| {
        json!({
            "keyID": e.key_id,
            "keyAlgorithm": e.key_algorithm.clone().unwrap_or_else(|| "HS256".into()),
            "keySecretRef": { "name": e.key_secret_ref.name, "key": e.key_secret_ref.key },
        })
    });
    Ok(json!({
        "kind": kind,
        "namespace": where_,
        "name": name,
        "ready": is_ready,
        "verdict": verdict,
        "server": spec.server,
        "accountURI": status.account_uri,
        "externalAccountBinding": eab,
        "condition": ready.map(|c| json!({ "status": c.status, "reason": c.reason, "message": c.message })),
        "rateLimited": paused.first(),
        "directory": match &directory {
            Ok(()) => json!({ "reachable": true, "tls": "verified" }),
            Err(e) => json!({ "reachable": false, "error": e }),
        },
        "events": events(client, if cluster { "default" } else { ns }, kind, name, 8).await,
    }))
}

/// GETs the issuer's ACME directory with its trust settings.
/// Whether the issuer's ACME directory answers, TLS verified (the same probe as
/// `check issuer`).
async fn probe_directory(spec: &IssuerSpec) -> Result<(), String> {
    super::check::directory(spec).await.map(|_| ())
}

/// `True Issued: message` from a reported condition.
fn condition_text(c: &Value) -> String {
    format!(
        "{} {}: {}",
        s(&c["status"]),
        s(&c["reason"]),
        s(&c["message"])
    )
}

fn line(out: &mut String, label: &str, value: impl AsRef<str>) {
    out.push_str(&format!("  {label:<13}{}\n", value.as_ref()));
}

pub(super) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn render_events(out: &mut String, events: &Value) {
    let events = events.as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        return;
    }
    out.push_str("  Events:\n");
    for e in events {
        out.push_str(&format!(
            "    {} {:<7} {:<22} {}\n",
            s(&e["time"]),
            s(&e["type"]),
            s(&e["reason"]),
            s(&e["note"])
        ));
    }
}

/// The text of `status certificate`.
pub fn render_certificate(r: &Value) -> String {
    let now = Timestamp::now();
    let mut out = format!("Certificate {}/{}\n", s(&r["namespace"]), s(&r["name"]));
    let names: Vec<String> = r["dnsNames"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(r["ipAddresses"].as_array().into_iter().flatten())
        .map(s)
        .collect();
    line(&mut out, "Names:", names.join(", "));
    let i = &r["issuer"];
    let issuer_state = match (&i["exists"], &i["ready"]) {
        (Value::Bool(false), _) => "not found".to_string(),
        (_, Value::Null) => "no status yet".to_string(),
        (_, c) => format!("Ready={} ({})", s(&c["status"]), s(&c["reason"])),
    };
    line(
        &mut out,
        "Issuer:",
        format!("{} {}: {issuer_state}", s(&i["kind"]), s(&i["name"])),
    );
    let c = &r["conditions"]["ready"];
    if !c.is_null() {
        line(&mut out, "Ready:", condition_text(c));
    }
    for (label, key) in [("Issuing:", "issuing"), ("Expiring:", "expiring")] {
        let c = &r["conditions"][key];
        // A failed attempt sets Issuing and Ready with the same words: say them once.
        let repeats = c["message"] == r["conditions"]["ready"]["message"];
        if !c.is_null() && !repeats {
            line(&mut out, label, condition_text(c));
        }
    }
    match &r["secret"] {
        Value::Null => line(
            &mut out,
            "Secret:",
            format!("{} (does not exist yet)", s(&r["secretName"])),
        ),
        sec => {
            line(
                &mut out,
                "Secret:",
                format!(
                    "{}: serial {}, issued by {}",
                    s(&r["secretName"]),
                    s(&sec["leaf"]["serial"]),
                    s(&sec["leaf"]["issuer"])
                ),
            );
            let sans: Vec<String> = sec["leaf"]["names"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            line(&mut out, "SANs:", sans.join(", "));
            line(
                &mut out,
                "Valid:",
                format!(
                    "{} .. {}",
                    s(&sec["leaf"]["notBefore"]),
                    when(&s(&sec["leaf"]["notAfter"]), now)
                ),
            );
        }
    }
    if let Some(t) = r["renewalTime"].as_str() {
        line(&mut out, "Renewal:", when(t, now));
    }
    if let (Some(start), Some(end)) = (
        r["ariWindow"]["start"].as_str(),
        r["ariWindow"]["end"].as_str(),
    ) {
        line(
            &mut out,
            "ARI window:",
            format!("{start} .. {end} (the CA's suggestion, asked now)"),
        );
    }
    if let Some(n) = r["failedIssuanceAttempts"].as_i64() {
        line(
            &mut out,
            "Failures:",
            format!("{n} in a row, last at {}", s(&r["lastFailureTime"])),
        );
    }
    if !r["order"].is_null() {
        let o = &r["order"];
        line(
            &mut out,
            "Order:",
            format!(
                "{} {} (since {})",
                s(&o["state"]),
                s(&o["url"]),
                s(&o["since"])
            ),
        );
        for c in o["challenges"].as_array().into_iter().flatten() {
            let error = c["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            line(
                &mut out,
                "",
                format!(
                    "{} {} {}{error}",
                    s(&c["type"]),
                    s(&c["name"]),
                    s(&c["state"])
                ),
            );
        }
    }
    render_events(&mut out, &r["events"]);
    out.push_str(&format!("Verdict: {}\n", s(&r["verdict"])));
    out
}

/// The text of `status issuer`.
pub fn render_issuer(r: &Value) -> String {
    let mut out = match r["namespace"].as_str().filter(|n| !n.is_empty()) {
        Some(ns) => format!("{} {ns}/{}\n", s(&r["kind"]), s(&r["name"])),
        None => format!("{} {}\n", s(&r["kind"]), s(&r["name"])),
    };
    line(&mut out, "Server:", s(&r["server"]));
    let d = &r["directory"];
    line(
        &mut out,
        "Directory:",
        match d["reachable"].as_bool() {
            Some(true) => "reachable from here, TLS verified".to_string(),
            _ => format!("NOT reachable from here: {}", s(&d["error"])),
        },
    );
    line(&mut out, "Account:", s(&r["accountURI"]));
    if let Some(m) = r["rateLimited"].as_str() {
        line(&mut out, "Rate limit:", m);
    }
    let eab = &r["externalAccountBinding"];
    if !eab.is_null() {
        line(
            &mut out,
            "EAB:",
            format!(
                "key ID {}, {}, HMAC in Secret {} key {} (not shown)",
                s(&eab["keyID"]),
                s(&eab["keyAlgorithm"]),
                s(&eab["keySecretRef"]["name"]),
                s(&eab["keySecretRef"]["key"])
            ),
        );
    }
    let c = &r["condition"];
    if !c.is_null() {
        line(&mut out, "Ready:", condition_text(c));
    }
    render_events(&mut out, &r["events"]);
    out.push_str(&format!("Verdict: {}\n", s(&r["verdict"])));
    out
}
