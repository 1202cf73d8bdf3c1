//! Faults the operator must ride out: a TLS Secret deleted or corrupted by hand, and the
//! API server restarting in the middle of an issuance.

use std::time::Duration;

use caas_operator::api::Certificate;
use caas_testbed::{ApiServer, Pebble, PebbleOptions, unique_name};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn event_notes(client: &kube::Client, ns: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn deleted_or_corrupted_secret_is_restored_and_reported() {
    let (client, ns, _pebble, operator) = setup(
        "restore",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    create_certificate(&client, &ns, "web", json!({
        "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("{}.{ZONE}", unique_name("restore"))],
    }))
    .await;
    wait_revision(&client, &ns, "web", 1, TIMEOUT, &operator).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // Deleted by hand: reissued, and the event says why.
    secrets
        .delete("web-tls", &DeleteParams::default())
        .await
        .unwrap();
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    let secret = secrets.get("web-tls").await.unwrap();
    let info = caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt")).unwrap();
    assert!(caas_operator::pki::key_matches(
        &secret_text(&secret, "tls.key"),
        &info
    ));
    let notes = wait_for(
        "an event naming the missing Secret",
        TIMEOUT,
        Some(&operator),
        || event_notes(&client, &ns),
        |n: &Vec<String>| n.iter().any(|n| n.contains("the Secret does not exist")),
    )
    .await;
    assert!(!notes.is_empty());

    // Corrupted by hand: reissued again.
    secrets
        .patch(
            "web-tls",
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": { "tls.crt": "garbage" } })),
        )
        .await
        .unwrap();
    wait_revision(&client, &ns, "web", 3, TIMEOUT, &operator).await;
    let secret = secrets.get("web-tls").await.unwrap();
    assert!(caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt")).is_ok());
    wait_for(
        "an event naming the unreadable certificate",
        TIMEOUT,
        Some(&operator),
        || event_notes(&client, &ns),
        |n: &Vec<String>| n.iter().any(|n| n.contains("cannot be read")),
    )
    .await;
}

#[tokio::test]
async fn api_server_restart_mid_issuance_is_ridden_out() {
    // An API server of its own: restarting the shared one would disturb other tests.
    let api = ApiServer::start();
    let client = api.client().await;
    install_crds_on(&client).await;
    let ns = api.namespace(&client, "restart").await;
    // A CA that validates slowly (0-15 s), so the restart lands in the middle.
    let pebble = Pebble::start(PebbleOptions {
        va_nosleep: false,
        ..Default::default()
    });
    let mut operator = Operator::start(&api, &ns, &pebble);
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    create_certificate(&client, &ns, "web", json!({
        "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("{}.{ZONE}", unique_name("restart"))],
    }))
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "an order in progress",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("web").await.unwrap() }
        },
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.order.as_ref())
                .is_some_and(|o| !o.challenges.is_empty())
        },
    )
    .await;

    api.restart();
    assert!(
        operator.proc.exited().is_none(),
        "the operator survived the API server restart"
    );
    let client = api.client().await;
    let cert = wait_cert_ready(
        &client,
        &ns,
        "web",
        "True",
        Some("Issued"),
        Duration::from_secs(120),
        &operator,
    )
    .await;
    assert_eq!(cert.status.unwrap().revision, Some(1));
    assert!(
        operator.proc.exited().is_none(),
        "no restart of its own was needed"
    );
}

#[tokio::test]
async fn ca_outage_is_reported_backed_off_and_recovered_from() {
    let (client, ns, pebble, operator) = setup(
        "outage",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    wait_for(
        "the issuer",
        TIMEOUT,
        Some(&operator),
        || {
            let api: Api<caas_operator::api::CaaSIssuer> = Api::namespaced(client.clone(), &ns);
            async move { api.get("pebble").await.unwrap() }
        },
        |i| {
            i.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|c| c.0 == "True")
        },
    )
    .await;

    // The CA stops answering (SIGSTOP: connections open, nothing comes back) for 45 s.
    pebble.pause();
    let paused_at = std::time::Instant::now();
    create_certificate(&client, &ns, "web", json!({
        "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("{}.{ZONE}", unique_name("outage"))],
    }))
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let during = wait_for(
        "the outage reported",
        Duration::from_secs(45),
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("web").await.unwrap() }
        },
        |c| {
            c.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|(s, r, _)| s == "False" && r == "ServerUnreachable")
        },
    )
    .await;
    let (_, _, message) = condition(&during.status.unwrap().conditions, "Ready").unwrap();
    assert!(
        message.contains("no answer from the ACME server"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(45).saturating_sub(paused_at.elapsed())).await;
    pebble.resume();

    let cert = wait_cert_ready(
        &client,
        &ns,
        "web",
        "True",
        Some("Issued"),
        Duration::from_secs(120),
        &operator,
    )
    .await;
    assert_eq!(cert.status.unwrap().revision, Some(1));
    // Bounded: a handful of attempts, not a request storm.
    let orders = operator
        .metrics()
        .lines()
        .filter(|l| l.starts_with("caas_acme_requests_total{") && l.contains("order-plz"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(
        orders <= 4.0,
        "{orders} new-order attempts through a 45 s outage"
    );
}
