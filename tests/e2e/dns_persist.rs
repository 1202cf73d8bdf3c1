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

/// The TXT value a Certificate asks to publish for `name`, from its `type_` condition.
fn asked_record(cert: &Certificate, type_: &str, name: &str) -> String {
    let conditions = &cert.status.as_ref().unwrap().conditions;
    let message = condition(conditions, type_).unwrap().2;
    let record = format!("_validation-persist.{name} TXT \"");
    let at = message.find(&record).unwrap_or_else(|| panic!("{message}"));
    message[at + record.len()..]
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

async fn issuer_account(client: &kube::Client, ns: &str, issuer: &str) -> String {
    Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .get(issuer)
        .await
        .unwrap()
        .status
        .and_then(|s| s.account_uri)
        .unwrap()
}

/// How many Events of `reason` mention `text`.
async fn events_with(client: &kube::Client, ns: &str, reason: &str, text: &str) -> usize {
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    (events.iter())
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.note.as_deref().is_some_and(|n| n.contains(text)))
        .count()
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
    let value = asked_record(&waiting, "Ready", &name);
    let value = value.as_str();
    let account = issuer_account(&client, &ns, "pebble").await;
    assert!(
        value.ends_with(&format!("; accounturi={account}")),
        "the CA's issuer domain name and this account: {value}"
    );
    let told = events_with(&client, &ns, "PersistentRecordMissing", value).await;
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

/// A `persistUntil` two days ahead (inside the default week of `--expiring-within`):
/// `PersistentRecordExpiring` with a Warning event and an `expiring` notification, once.
/// An account key rollover keeps the account URI, so the record stays valid (a renewal
/// asks for nothing); a new account (another key Secret) asks for its own record, while
/// the certificate in use stays Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_persist_01_warns_before_persist_until_and_follows_the_account() {
    let receiver = caas_testbed::WebhookReceiver::start().await;
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48);
    let until = jiff::Timestamp::from_second(until.as_second()).unwrap();
    let solver = json!([{ "dnsPersist01": { "persistUntil": until.to_string() } }]);
    let (client, ns, _pebble, operator) = bed("persist-life", solver).await;
    let hook = receiver.url("/hook");
    caas_testbed::register_secret(&hook);
    apply_secret(&client, &ns, "hooks", &[("url", &hook)]).await;
    let notify = json!({ "spec": { "notify": { "webhooks": [
        { "format": "Generic", "urlSecretRef": { "name": "hooks", "key": "url" } }
    ] } } });
    let issuers = Api::<CaaSIssuer>::namespaced(client.clone(), &ns);
    (issuers.patch("pebble", &PatchParams::default(), &Patch::Merge(&notify)))
        .await
        .unwrap();
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
    let value = asked_record(&waiting, "Ready", &name);
    assert!(
        value.ends_with(&format!("; persistUntil={}", until.as_second())),
        "{value}"
    );
    let bind = shared_bind();
    let fqdn = format!("_validation-persist.{name}.");
    bind.nsupdate(&format!("update add {fqdn} 60 TXT \"{value}\""));
    let certs = Api::<Certificate>::namespaced(client.clone(), &ns);
    let persist_condition = |c: &Option<Certificate>| {
        let conditions = &c.as_ref()?.status.as_ref()?.conditions;
        condition(conditions, "PersistentRecordExpiring")
    };
    let warned = wait_for(
        "PersistentRecordExpiring",
        TIMEOUT,
        Some(&operator),
        || async { certs.get_opt("web").await.unwrap() },
        |c| persist_condition(c).is_some(),
    )
    .await;
    let (status, reason, message) = persist_condition(&warned).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "PersistUntilNear")
    );
    assert!(message.contains(&until.to_string()), "{message}");
    let notes = || {
        (receiver.received().into_iter())
            .map(|r| r.json())
            .filter(|j| j["reason"] == "PersistUntilNear")
            .collect::<Vec<_>>()
    };
    let told = wait_for(
        "the expiring notification",
        TIMEOUT,
        Some(&operator),
        || async { notes() },
        |n| !n.is_empty(),
    )
    .await;
    assert_eq!(told[0]["event"], "expiring");
    assert_eq!(told[0]["message"], message.as_str());
    let events = events_with(&client, &ns, "PersistUntilNear", &until.to_string()).await;
    assert_eq!(events, 1, "one Warning event");

    // An account key rollover: the same account URI, so the record still holds.
    let account = issuer_account(&client, &ns, "pebble").await;
    let rotate = json!({ "metadata": { "annotations": { "caas.dev/rotate-account-key": "1" } } });
    (issuers.patch("pebble", &PatchParams::default(), &Patch::Merge(&rotate)))
        .await
        .unwrap();
    wait_for(
        "the rollover",
        TIMEOUT,
        Some(&operator),
        || async { issuers.get("pebble").await.unwrap().status },
        |s| {
            s.as_ref()
                .and_then(|s| s.last_account_key_rotation.as_deref())
                == Some("1")
        },
    )
    .await;
    assert_eq!(issuer_account(&client, &ns, "pebble").await, account);
    renew(&client, &ns, "web").await;
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    let missing = events_with(&client, &ns, "PersistentRecordMissing", "").await;
    assert_eq!(
        missing, 1,
        "the renewal after the rollover asked for nothing new"
    );

    // A new account (another key Secret): its own record, the certificate stays Ready.
    let new_key = json!({ "spec": { "privateKeySecretRef": { "name": "pebble-account-2" } } });
    (issuers.patch("pebble", &PatchParams::default(), &Patch::Merge(&new_key)))
        .await
        .unwrap();
    let other = wait_for(
        "a new account",
        TIMEOUT,
        Some(&operator),
        || async { issuers.get("pebble").await.unwrap().status },
        |s| {
            let uri = s.as_ref().and_then(|s| s.account_uri.as_deref());
            uri.is_some_and(|u| u != account)
        },
    )
    .await
    .and_then(|s| s.account_uri)
    .unwrap();
    renew(&client, &ns, "web").await;
    let asking = wait_for(
        "the new account's record asked for",
        TIMEOUT,
        Some(&operator),
        || async { certs.get("web").await.unwrap() },
        |c| {
            let conditions = &c.status.as_ref().unwrap().conditions;
            condition(conditions, "Issuing").is_some_and(|(_, r, m)| {
                r == "PersistentRecordMissing" && m.contains(&format!("accounturi={other}"))
            })
        },
    )
    .await;
    let conditions = &asking.status.as_ref().unwrap().conditions;
    assert_eq!(condition(conditions, "Ready").unwrap().0, "True");
    let new_value = asked_record(&asking, "Issuing", &name);
    bind.nsupdate(&format!("update add {fqdn} 60 TXT \"{new_value}\""));
    wait_revision(&client, &ns, "web", 3, TIMEOUT, &operator).await;
    bind.nsupdate(&format!("update delete {fqdn} TXT"));
    // Two renewals and a new account later, the same persistUntil was warned of once.
    assert_eq!(notes().len(), 1, "the warning is not repeated");
    let events = events_with(&client, &ns, "PersistUntilNear", &until.to_string()).await;
    assert_eq!(events, 1, "one Warning event");
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
    // The name and its wildcard share the record name: one value, with policy=wildcard,
    // covers both.
    assert!(
        first.len() == 1 && first[0].contains("; policy=wildcard"),
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
