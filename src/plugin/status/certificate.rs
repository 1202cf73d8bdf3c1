//! `kubectl caas status certificate NAME`: the Certificate, its issuer, its Secret, the
//! CA's renewal window, its order and Events, and a verdict.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde::Serialize;

use super::deployments::{self, DeploymentReport};
use super::events::{self, EventReport};
use crate::api::acme::{ChallengeState, ChallengeType, OrderState};
use crate::api::certificate::OrderStatus;
use crate::api::conditions::find;
use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer, Time};
use crate::plugin::inspect::{SecretReport, secret_report};
use crate::plugin::probe;
use crate::plugin::report::{ConditionReport, Report, line, or_dash, when, when_time};

/// The report of `status certificate`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateReport {
    pub ari_window: Option<AriWindow>,
    pub conditions: Conditions,
    /// Each deploy target of `deployTo`, as `status.deployments` says.
    pub deployments: Vec<DeploymentReport>,
    pub dns_names: Vec<String>,
    pub events: Vec<EventReport>,
    pub failed_issuance_attempts: Option<i32>,
    pub ip_addresses: Vec<String>,
    pub issuer: IssuerSummary,
    /// Always `Certificate`.
    pub kind: &'static str,
    pub last_failure_time: Option<Time>,
    pub name: String,
    pub namespace: String,
    pub not_after: Option<Time>,
    pub not_before: Option<Time>,
    pub order: Option<OrderReport>,
    pub ready: bool,
    pub renewal_time: Option<Time>,
    pub revision: Option<i64>,
    pub secret: Option<SecretReport>,
    pub secret_name: String,
    pub verdict: String,
}

impl Report for CertificateReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

/// The Certificate's conditions a user acts on (`expiring` only when true).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Conditions {
    pub expiring: Option<ConditionReport>,
    pub issuing: Option<ConditionReport>,
    /// A dns-persist-01 record nears its `persistUntil` (only when true).
    #[serde(
        rename = "persistentRecordExpiring",
        skip_serializing_if = "Option::is_none"
    )]
    pub persist_expiring: Option<ConditionReport>,
    pub ready: Option<ConditionReport>,
}

/// The CA's suggested renewal window (ARI), its values as the CA sent them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AriWindow {
    pub end: serde_json::Value,
    pub start: serde_json::Value,
}

/// Kind, name and Ready of the issuer a Certificate names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IssuerSummary {
    pub exists: bool,
    pub kind: &'static str,
    pub name: String,
    pub ready: Option<ConditionReport>,
}

/// The order in flight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderReport {
    pub challenges: Vec<ChallengeReport>,
    pub since: Option<Time>,
    pub state: OrderState,
    pub url: String,
}

/// One challenge of the order in flight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChallengeReport {
    pub error: Option<String>,
    pub name: String,
    pub state: ChallengeState,
    #[serde(rename = "type")]
    pub type_: ChallengeType,
    #[serde(rename = "waitingForDNS")]
    pub waiting_for_dns: bool,
}

impl OrderReport {
    fn of(o: &OrderStatus) -> Self {
        let challenges = o.challenges.iter().map(|c| ChallengeReport {
            error: c.error.clone(),
            name: c.dns_name.clone(),
            state: c.state,
            type_: c.type_,
            waiting_for_dns: c.waiting_for_dns,
        });
        OrderReport {
            challenges: challenges.collect(),
            since: o.state_since,
            state: o.state,
            url: o.url.clone(),
        }
    }
}

/// What `status certificate` reads besides the Certificate itself.
pub struct Found {
    pub issuer: IssuerSummary,
    pub secret: Option<SecretReport>,
    pub ari_window: Option<AriWindow>,
    pub events: Vec<EventReport>,
}

/// The report for `status certificate`.
pub async fn report(
    client: &kube::Client,
    ns: &str,
    name: &str,
    now: Timestamp,
) -> anyhow::Result<CertificateReport> {
    let cert = Api::<Certificate>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Certificate {name} in namespace {ns}"))?;
    let issuer_ref = &cert.spec.issuer_ref;
    let at = probe::IssuerAt {
        ns,
        name: &issuer_ref.name,
        cluster: issuer_ref.is_cluster(),
    };
    let issuer = issuer_summary(client, at).await;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&cert.spec.secret_name)
        .await?;
    let ari_window = match &secret {
        Some(s) => ari_window(client, ns, &cert, s).await,
        None => None,
    };
    let found = Found {
        issuer,
        secret: secret.as_ref().map(|s| secret_report(s, now)),
        ari_window,
        events: events::recent(client, ns, "Certificate", name, 8).await,
    };
    Ok(build(ns, name, &cert, found))
}

/// The report from the Certificate and what was found about it.
pub fn build(ns: &str, name: &str, cert: &Certificate, found: Found) -> CertificateReport {
    let status = cert.status.clone().unwrap_or_default();
    let ready = find(&status.conditions, "Ready");
    let expiring = find(&status.conditions, "Expiring").filter(|c| c.is_true());
    let persist = find(&status.conditions, "PersistentRecordExpiring").filter(|c| c.is_true());
    let reports: Vec<DeploymentReport> = status
        .deployments
        .iter()
        .map(DeploymentReport::of)
        .collect();
    let mut verdict = crate::plugin::verdict::certificate(
        ready,
        expiring.or(persist),
        status.not_after,
        status.renewal_time,
    );
    if let Some(tail) = deployments::verdict_tail(&reports) {
        verdict.push_str(&tail);
    }
    // A target not deployed may still serve the old certificate: not ready.
    let deployed = reports
        .iter()
        .all(|d| d.deployed.as_ref().is_some_and(|c| c.status == "True"));
    CertificateReport {
        ari_window: found.ari_window,
        conditions: Conditions {
            expiring: expiring.map(ConditionReport::of),
            issuing: find(&status.conditions, "Issuing").map(ConditionReport::of),
            persist_expiring: persist.map(ConditionReport::of),
            ready: ready.map(ConditionReport::of),
        },
        deployments: reports,
        dns_names: cert.spec.dns_names.clone(),
        events: found.events,
        failed_issuance_attempts: status.failed_issuance_attempts,
        ip_addresses: cert.spec.ip_addresses.clone(),
        issuer: found.issuer,
        kind: "Certificate",
        last_failure_time: status.last_failure_time,
        name: name.to_string(),
        namespace: ns.to_string(),
        not_after: status.not_after,
        not_before: status.not_before,
        order: status.order.as_ref().map(OrderReport::of),
        ready: ready.is_some_and(|c| c.is_true()) && deployed,
        renewal_time: status.renewal_time,
        revision: status.revision,
        secret: found.secret,
        secret_name: cert.spec.secret_name.clone(),
        verdict,
    }
}

/// The CA's suggested renewal window for the Secret's certificate (ARI, RFC 9773: an
/// unauthenticated GET), when the issuer's CA offers it.
async fn ari_window(
    client: &kube::Client,
    ns: &str,
    cert: &Certificate,
    secret: &Secret,
) -> Option<AriWindow> {
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
    let (http, dir) = probe::directory(&spec).await.ok()?;
    let base = dir["renewalInfo"].as_str()?;
    let info = probe::get_json(&http, &format!("{}/{id}", base.trim_end_matches('/')))
        .await
        .ok()?;
    let w = &info["suggestedWindow"];
    Some(AriWindow {
        end: w["end"].clone(),
        start: w["start"].clone(),
    })
}

/// Kind, name and Ready of the issuer a Certificate names.
async fn issuer_summary(client: &kube::Client, at: probe::IssuerAt<'_>) -> IssuerSummary {
    let found = probe::read_issuer(client, at).await.ok().map(|f| f.status);
    let ready = found
        .as_ref()
        .and_then(|s| s.as_ref())
        .and_then(|s| find(&s.conditions, "Ready"))
        .map(ConditionReport::of);
    IssuerSummary {
        exists: found.is_some(),
        kind: at.kind(),
        name: at.name.to_string(),
        ready,
    }
}

/// The text of `status certificate`.
pub fn render(r: &CertificateReport) -> String {
    render_at(r, Timestamp::now())
}

/// The text of `status certificate`, times relative to `now`.
fn render_at(r: &CertificateReport, now: Timestamp) -> String {
    let mut out = format!("Certificate {}/{}\n", r.namespace, r.name);
    let names: Vec<&str> = r
        .dns_names
        .iter()
        .chain(&r.ip_addresses)
        .map(String::as_str)
        .collect();
    line(&mut out, "Names:", names.join(", "));
    line(&mut out, "Issuer:", issuer_text(&r.issuer));
    render_conditions(&mut out, &r.conditions);
    render_secret(&mut out, r, now);
    deployments::render(&mut out, &r.deployments);
    render_schedule(&mut out, r, now);
    if let Some(o) = &r.order {
        render_order(&mut out, o);
    }
    events::render(&mut out, &r.events);
    out.push_str(&format!("Verdict: {}\n", r.verdict));
    out
}

/// `CaaSIssuer NAME: Ready=True (AccountRegistered)`, or why there is no Ready.
fn issuer_text(i: &IssuerSummary) -> String {
    let state = match (i.exists, &i.ready) {
        (false, _) => "not found".to_string(),
        (true, None) => "no status yet".to_string(),
        (true, Some(c)) => format!("Ready={} ({})", c.status, c.reason),
    };
    format!("{} {}: {state}", i.kind, i.name)
}

/// Ready, and Issuing and Expiring unless they repeat Ready's words.
fn render_conditions(out: &mut String, c: &Conditions) {
    if let Some(ready) = &c.ready {
        line(out, "Ready:", ready.text());
    }
    let ready_message = c.ready.as_ref().map(|r| &r.message);
    let others = [
        ("Issuing:", &c.issuing),
        ("Expiring:", &c.expiring),
        ("Persist:", &c.persist_expiring),
    ];
    for (label, other) in others {
        // A failed attempt sets Issuing and Ready with the same words: say them once.
        if let Some(other) = other
            && Some(&other.message) != ready_message
        {
            line(out, label, other.text());
        }
    }
}

/// The Secret: its leaf's serial, issuer, names and validity, or that it is missing.
fn render_secret(out: &mut String, r: &CertificateReport, now: Timestamp) {
    let Some(secret) = &r.secret else {
        line(
            out,
            "Secret:",
            format!("{} (does not exist yet)", r.secret_name),
        );
        return;
    };
    let leaf = secret.leaf.as_ref();
    let field = |f: fn(&crate::plugin::inspect::CertSummary) -> &str| {
        or_dash(leaf.and_then(|l| l.summary()).map(f))
    };
    line(
        out,
        "Secret:",
        format!(
            "{}: serial {}, issued by {}",
            r.secret_name,
            field(|c| &c.serial),
            field(|c| &c.issuer)
        ),
    );
    let sans = leaf.map(|l| l.names()).unwrap_or_default();
    line(out, "SANs:", sans.join(", "));
    line(
        out,
        "Valid:",
        format!(
            "{} .. {}",
            field(|c| &c.not_before),
            when(field(|c| &c.not_after), now)
        ),
    );
}

/// Renewal time, the CA's ARI window and failed attempts.
fn render_schedule(out: &mut String, r: &CertificateReport, now: Timestamp) {
    if let Some(t) = r.renewal_time {
        line(out, "Renewal:", when_time(t, now));
    }
    if let Some(w) = &r.ari_window
        && let (Some(start), Some(end)) = (w.start.as_str(), w.end.as_str())
    {
        line(
            out,
            "ARI window:",
            format!("{start} .. {end} (the CA's suggestion, asked now)"),
        );
    }
    if let Some(n) = r.failed_issuance_attempts {
        line(
            out,
            "Failures:",
            format!(
                "{n} in a row, last at {}",
                or_dash(r.last_failure_time.map(|t| t.to_string()).as_deref())
            ),
        );
    }
}

/// The order in flight and one line per challenge (with the CA's error).
fn render_order(out: &mut String, o: &OrderReport) {
    line(
        out,
        "Order:",
        format!(
            "{} {} (since {})",
            o.state,
            o.url,
            or_dash(o.since.map(|t| t.to_string()).as_deref())
        ),
    );
    for c in &o.challenges {
        let error = c
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        line(
            out,
            "",
            format!("{} {} {}{error}", c.type_, c.name, c.state),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn certificate() -> Certificate {
        serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate",
            "metadata": { "name": "web", "namespace": "ns" },
            "spec": { "secretName": "web-tls", "issuerRef": { "name": "pebble" },
                      "dnsNames": ["web.test"], "ipAddresses": ["10.0.0.1"] },
            "status": {
                "conditions": [
                    { "type": "Ready", "status": "False", "reason": "ChallengeFailed", "message": "the CA said no" },
                    { "type": "Issuing", "status": "True", "reason": "ChallengeFailed", "message": "the CA said no" },
                    { "type": "Expiring", "status": "False", "reason": "NotExpiring", "message": "" }
                ],
                "notAfter": "2027-01-01T00:00:00Z", "renewalTime": "2026-12-01T00:00:00Z",
                "revision": 2, "failedIssuanceAttempts": 3, "lastFailureTime": "2026-11-29T09:00:00Z",
                "order": { "url": "https://ca/order/1", "state": "invalid", "requestHash": "h",
                           "stateSince": "2026-11-29T08:00:00Z",
                           "challenges": [{ "type": "http-01", "dnsName": "web.test", "token": "t",
                                            "state": "invalid", "error": "connection refused" }] }
            }
        }))
        .unwrap()
    }

    fn found() -> Found {
        Found {
            issuer: IssuerSummary {
                exists: true,
                kind: "CaaSIssuer",
                name: "pebble".into(),
                ready: Some(ConditionReport {
                    message: "ok".into(),
                    reason: "AccountRegistered".into(),
                    status: "True".into(),
                }),
            },
            secret: None,
            ari_window: Some(AriWindow {
                end: json!("2026-12-02T00:00:00Z"),
                start: json!("2026-12-01T00:00:00Z"),
            }),
            events: vec![],
        }
    }

    /// The keys and values the untyped report had.
    #[test]
    fn the_report_keeps_its_json_shape() {
        let r = build("ns", "web", &certificate(), found());
        let want = json!({
            "kind": "Certificate", "namespace": "ns", "name": "web", "ready": false,
            "verdict": format!("NOT READY (ChallengeFailed): {}",
                crate::plugin::verdict::certificate_advice("ChallengeFailed")),
            "dnsNames": ["web.test"], "ipAddresses": ["10.0.0.1"], "secretName": "web-tls",
            "issuer": { "kind": "CaaSIssuer", "name": "pebble", "exists": true,
                        "ready": { "status": "True", "reason": "AccountRegistered", "message": "ok" } },
            "conditions": {
                "ready": { "status": "False", "reason": "ChallengeFailed", "message": "the CA said no" },
                "issuing": { "status": "True", "reason": "ChallengeFailed", "message": "the CA said no" },
                "expiring": null,
            },
            "deployments": [],
            "notBefore": null, "notAfter": "2027-01-01T00:00:00Z",
            "renewalTime": "2026-12-01T00:00:00Z",
            "ariWindow": { "start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z" },
            "revision": 2, "failedIssuanceAttempts": 3,
            "lastFailureTime": "2026-11-29T09:00:00Z", "secret": null,
            "order": { "url": "https://ca/order/1", "state": "invalid",
                       "since": "2026-11-29T08:00:00Z",
                       "challenges": [{ "type": "http-01", "name": "web.test", "state": "invalid",
                                        "error": "connection refused", "waitingForDNS": false }] },
            "events": [],
        });
        assert_eq!(crate::plugin::report::as_printed(&r), want);
    }

    #[test]
    fn the_text_reads_top_down() {
        let now: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        let r = build("ns", "web", &certificate(), found());
        let text = render_at(&r, now);
        let want = "Certificate ns/web
  Names:       web.test, 10.0.0.1
  Issuer:      CaaSIssuer pebble: Ready=True (AccountRegistered)
  Ready:       False ChallengeFailed: the CA said no
  Secret:      web-tls (does not exist yet)
  Renewal:     2026-12-01T00:00:00Z (in 1d 14h)
  ARI window:  2026-12-01T00:00:00Z .. 2026-12-02T00:00:00Z (the CA's suggestion, asked now)
  Failures:    3 in a row, last at 2026-11-29T09:00:00Z
  Order:       invalid https://ca/order/1 (since 2026-11-29T08:00:00Z)
               http-01 web.test invalid: connection refused
";
        assert_eq!(text, format!("{want}Verdict: {}\n", r.verdict));
    }

    #[test]
    fn a_missing_issuer_and_an_empty_secret_are_said() {
        let mut found = found();
        found.issuer.exists = false;
        found.ari_window = None;
        found.secret = Some(SecretReport {
            ca_crt: false,
            certificate: None,
            chain: vec![],
            issuer_annotation: None,
            key: None,
            key_matches: None,
            leaf: None,
            type_: None,
            valid_now: false,
        });
        let mut cert = certificate();
        let status = cert.status.as_mut().unwrap();
        status.conditions.retain(|c| c.type_ == "Issuing");
        status.order = None;
        let text = render_at(&build("ns", "web", &cert, found), Timestamp::UNIX_EPOCH);
        assert!(
            text.contains("  Issuer:      CaaSIssuer pebble: not found\n"),
            "{text}"
        );
        assert!(
            text.contains("  Issuing:     True ChallengeFailed"),
            "{text}"
        );
        assert!(
            text.contains("  Secret:      web-tls: serial -, issued by -\n"),
            "{text}"
        );
        assert!(
            text.contains("  SANs:        \n  Valid:       - .. -\n"),
            "{text}"
        );
        assert!(
            !text.contains("ARI window") && !text.contains("Order:"),
            "{text}"
        );
        assert!(
            text.contains("Verdict: NOT READY: the operator has not looked"),
            "{text}"
        );
    }
}
