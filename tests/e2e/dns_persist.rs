//! The ACME of 2026 on Pebble 2.10 and BIND: dns-persist-01 (one persistent TXT record
//! naming the account; no DNS write once it is there) with and without a DNS provider,
//! and dns-account-01 (a label per account: two accounts validate one name at once).

use std::time::Duration;

use caas_operator::api::{CaaSIssuer, Certificate};
use caas_testbed::{FakeCloudflareApi, PebbleOptions, shared_bind, unique_name};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(90);

/// Each order a challenge of its own (no reused authorization).
fn fresh_authorizations() -> PebbleOptions {
    PebbleOptions {
        env: vec![("PEBBLE_AUTHZREUSE".into(), "0".into())],
        ..PebbleOptions::default()
    }
}

/// A namespace, Pebble (no reused authorizations) and the operator asking BIND (the
/// zone's server) whether records are served, with issuer `pebble` using `solvers`.
async fn bed(
    prefix: &str,
    solvers: serde_json::Value,
) -> (kube::Client, String, caas_testbed::Pebble, Operator) {
    let api = caas_testbed::shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, prefix).await;
    let pebble = caas_testbed::Pebble::start(fresh_authorizations());
    let operator = crate::dns_providers::dns_operator_env(&ns, &pebble, &[]);
    let hmac = &pebble.eab_hmac;
    create_issuer(&client, &ns, "pebble", &pebble, hmac, solvers).await;
    (client, ns, pebble, operator)
}

async fn renew(client: &kube::Client, ns: &str, name: &str) {
    let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": jiff::Timestamp::now().to_string() } } });
    Api::<Certificate>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Without a DNS provider the Certificate says exactly which record to publish
/// (`PersistentRecordMissing` on Ready and Issuing, and a Warning event); once the record
/// is served it is issued by itself, and a renewal needs nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist_01_without_a_provider_names_the_record_and_goes_on_once_it_is_served() {
    let (client, ns, _pebble, operator) =
        bed("persist-manual", json!([{ "dnsPersist01": {} }])).await;
    let name = format!("{}.{ZONE}", unique_name("persist"));
    let spec =
        json!({ "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] });
    create_certificate(&client, &ns, "web", spec).await;
    let waiting = wait_cert_ready(
        &client,
        &ns,
        "web",
        "False",
        Some("PersistentRecordMissing"),
        TIMEOUT,
        &operator,
    )
    .await;
    let message = condition(&waiting.status.unwrap().conditions, "Ready")
        .unwrap()
        .2;
    let record = format!("_validation-persist.{name} TXT \"");
    let at = message.find(&record).unwrap_or_else(|| panic!("{message}"));
    let value = message[at + record.len()..].split('"').next().unwrap();
    let account = Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .get("pebble")
        .await
        .unwrap()
        .status
        .and_then(|s| s.account_uri)
        .unwrap();
    assert!(
        value.ends_with(&format!("; accounturi={account}")),
        "the CA's issuer domain name and this account: {value}"
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let told = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("PersistentRecordMissing"))
        .filter(|e| e.note.as_deref().is_some_and(|n| n.contains(value)))
        .count();
    assert_eq!(told, 1, "one Warning event names the record");

    let bind = shared_bind();
    let fqdn = format!("_validation-persist.{name}.");
    bind.nsupdate(&format!("update add {fqdn} 60 TXT \"{value}\""));
    wait_cert_ready(
        &client,
        &ns,
        "web",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    renew(&client, &ns, "web").await;
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    assert_eq!(
        bind.dig(&fqdn, "TXT"),
        [value.to_string()],
        "the record stays"
    );
    bind.nsupdate(&format!("update delete {fqdn} TXT"));
}

/// With a DNS provider the record is written once and never removed: the renewal's
/// order validates against it with no DNS write at all, and deleting the Certificate
/// leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist_01_with_a_provider_writes_the_record_once_and_never_again() {
    let fake = FakeCloudflareApi::start().await;
    let solver = json!([{ "dnsPersist01": { "cloudflare": {
        "apiTokenSecretRef": { "name": "cf", "key": "api-token" }, "apiURL": fake.url
    } } }]);
    let (client, ns, _pebble, operator) = bed("persist-cf", solver).await;
    apply_secret(&client, &ns, "cf", &[("api-token", &fake.credential)]).await;
    let name = format!("{}.{ZONE}", unique_name("persist"));
    let wildcard = format!("*.{name}");
    let spec = json!({ "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name, wildcard] });
    create_certificate(&client, &ns, "web", spec).await;
    wait_cert_ready(
        &client,
        &ns,
        "web",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let fqdn = format!("_validation-persist.{name}");
    let written = |fake: &caas_testbed::FakeDnsApi| -> Vec<String> {
        (fake.added().into_iter())
            .filter(|(n, _)| *n == fqdn)
            .map(|(_, v)| v)
            .collect()
    };
    let first = written(&fake);
    // The name and its wildcard share the record name: one value, with policy=wildcard
    // (a wildcard is allowed by it), or two (one each).
    assert!(
        !first.is_empty() && first.iter().any(|v| v.contains("; policy=wildcard")),
        "{first:?}"
    );
    let writes_before = fake.log().len();
    renew(&client, &ns, "web").await;
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    let after: Vec<String> = fake.log()[writes_before..]
        .iter()
        .filter(|l| !l.starts_with("GET"))
        .cloned()
        .collect();
    assert!(
        after.is_empty(),
        "the renewal wrote nothing to DNS: {after:?}"
    );
    assert_eq!(written(&fake), first);
    Api::<Certificate>::namespaced(client.clone(), &ns)
        .delete("web", &Default::default())
        .await
        .unwrap();
    wait_for(
        "the Certificate gone",
        TIMEOUT,
        Some(&operator),
        || async {
            Api::<Certificate>::namespaced(client.clone(), &ns)
                .get_opt("web")
                .await
                .unwrap()
        },
        |c| c.is_none(),
    )
    .await;
    let kept = (fake.records().into_iter())
        .filter(|(n, _)| *n == fqdn)
        .count();
    assert_eq!(
        kept,
        first.len(),
        "the record stays after the Certificate goes"
    );
}

/// dns-account-01: two issuers (two ACME accounts) validate the same name at the same
/// time, each at its own `_<label>._acme-challenge` name: both issued, nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_account_01_lets_two_accounts_validate_one_name_at_once() {
    let (client, ns, pebble, operator) =
        setup("dns-account", fresh_authorizations(), json!([])).await;
    let solver = rfc2136_solver(&client, &ns).await;
    let solver = json!([{ "dnsAccount01": solver["dns01"] }]);
    let hmac = &pebble.eab_hmac;
    for issuer in ["one", "two"] {
        create_issuer(&client, &ns, issuer, &pebble, hmac, solver.clone()).await;
    }
    let name = format!("{}.{ZONE}", unique_name("acct"));
    for issuer in ["one", "two"] {
        let spec = json!({ "secretName": format!("{issuer}-tls"), "issuerRef": { "name": issuer }, "dnsNames": [name] });
        create_certificate(&client, &ns, issuer, spec).await;
    }
    let mut labels = Vec::new();
    for issuer in ["one", "two"] {
        wait_cert_ready(
            &client,
            &ns,
            issuer,
            "True",
            Some("Issued"),
            TIMEOUT,
            &operator,
        )
        .await;
        let account = Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
            .get(issuer)
            .await
            .unwrap()
            .status
            .and_then(|s| s.account_uri)
            .unwrap();
        labels.push(caas_operator::solvers::dns01::account_record_name(
            &account, &name,
        ));
    }
    assert_ne!(labels[0], labels[1], "one name per account");
    // The issuers' only solver answers dns-account-01, so both certificates were
    // validated that way (a CA that did not offer it would be ChallengeNotOffered).
    let bind = shared_bind();
    for label in &labels {
        wait_for(
            &format!("{label} removed"),
            TIMEOUT,
            Some(&operator),
            || async { bind.dig(label, "TXT") },
            |found| found.is_empty(),
        )
        .await;
    }
}
