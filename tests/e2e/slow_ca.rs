//! A slow commercial CA: authorizations stay `pending` and then the order stays
//! `processing`, each for 10 minutes (`CAAS_SLOW_CA_MINUTES` to change it). CaaS CAs do
//! this; clients with a fixed 30-second timeout (acme.sh, lego, mod_md) give up. The
//! operator must keep polling with bounded backoff, say in status that it waits on the
//! CA, never give up on a timer, and keep its one order.
//!
//! This test takes over 20 minutes: `cargo xtask test` runs it alongside the rest.

use std::time::{Duration, Instant};

use caas_operator::api::Certificate;
use caas_testbed::acme_proxy::{Exchange, Kind, SlowCa};
use caas_testbed::{PebbleOptions, unique_name};
use kube::api::Api;
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";

/// Order polls (POST-as-GET of the order) in `[from, to)`: their count and the longest
/// gap between two of them (or between `from` and the first).
fn polls(log: &[Exchange], from: Instant, to: Instant) -> (usize, Duration) {
    let times: Vec<Instant> = log
        .iter()
        .filter(|e| e.kind == Kind::Order && e.at >= from && e.at < to)
        .map(|e| e.at)
        .collect();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in &times {
        longest = longest.max(*t - last);
        last = *t;
    }
    (times.len(), longest)
}

async fn issuing_condition(certs: &Api<Certificate>) -> (String, String, String) {
    let cert = certs.get("slow").await.unwrap();
    cert.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Issuing"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ca_is_waited_for_without_a_timeout() {
    let minutes: u64 = std::env::var("CAAS_SLOW_CA_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let hold = Duration::from_secs(minutes * 60);
    let bed = ProxiedBed::start(
        "slow",
        PebbleOptions {
            // No Retry-After: the operator's own backoff is what is measured.
            retry_after_secs: 0,
            ..Default::default()
        },
    )
    .await;
    let (client, ns, proxy, operator) = (&bed.client, &bed.ns, &bed.proxy, &bed.operator);
    proxy.set_slow(SlowCa {
        validation: hold,
        issuance: hold,
    });
    bed.issuer(json!([{ "http01": {} }])).await;
    let name = format!("{}.{ZONE}", unique_name("slow"));
    create_certificate(
        client,
        ns,
        "slow",
        json!({ "secretName": "slow-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name] }),
    )
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), ns);

    // Validation: the CA accepted the challenge and says "processing" for `hold`.
    let accepted = wait_for(
        "the challenge to be accepted",
        Duration::from_secs(90),
        Some(operator),
        || async { proxy.exchanges() },
        |log: &Vec<Exchange>| {
            log.iter()
                .any(|e| e.kind == Kind::Challenge && e.status == 200)
        },
    )
    .await
    .iter()
    .find(|e| e.kind == Kind::Challenge && e.status == 200)
    .unwrap()
    .at;
    tokio::time::sleep_until((accepted + hold / 2).into()).await;
    let (status, reason, message) = issuing_condition(&certs).await;
    println!("halfway through validation: Issuing={status} {reason}: {message}");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "WaitingForCA"));
    assert!(message.contains(&format!("validating {name}")), "{message}");
    assert!(message.contains("no time limit"), "{message}");

    // Issuance: finalized, and the order says "processing" for `hold`.
    let finalized = wait_for(
        "finalize",
        hold + Duration::from_secs(180),
        Some(operator),
        || async { proxy.exchanges() },
        |log: &Vec<Exchange>| {
            log.iter()
                .any(|e| e.kind == Kind::Finalize && e.status == 200)
        },
    )
    .await
    .iter()
    .find(|e| e.kind == Kind::Finalize && e.status == 200)
    .unwrap()
    .at;
    tokio::time::sleep_until((finalized + hold / 2).into()).await;
    let (status, reason, message) = issuing_condition(&certs).await;
    println!("halfway through issuance: Issuing={status} {reason}: {message}");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "WaitingForCA"));
    assert!(message.contains("processing the order"), "{message}");

    wait_cert_ready(
        client,
        ns,
        "slow",
        "True",
        Some("Issued"),
        hold + Duration::from_secs(180),
        operator,
    )
    .await;
    let log = proxy.exchanges();
    let (validation_polls, validation_gap) = polls(&log, accepted, accepted + hold);
    let (issuance_polls, issuance_gap) = polls(&log, finalized, finalized + hold);
    let noticed = log
        .iter()
        .filter(|e| e.kind == Kind::Certificate)
        .map(|e| e.at)
        .next()
        .unwrap();
    println!(
        "{minutes} min validating: {validation_polls} order polls, longest gap {validation_gap:?}; \
         {minutes} min issuing: {issuance_polls} polls, longest gap {issuance_gap:?}; \
         certificate fetched {:?} after the CA was done; {} requests in all",
        noticed - (finalized + hold),
        log.len()
    );
    // Bounded backoff: quick polls at first, then sparser, never more than a minute
    // apart (plus a reconcile's slack): about 25 in the first minute, 40 in ten.
    for (polls, gap) in [
        (validation_polls, validation_gap),
        (issuance_polls, issuance_gap),
    ] {
        assert!(
            gap <= Duration::from_secs(75),
            "a poll gap of {gap:?} (cap: 60 s)"
        );
        assert!(
            polls >= (minutes as usize) && polls <= 40 + 4 * minutes as usize,
            "{polls} polls in {minutes} minutes"
        );
    }
    assert!(
        noticed - (finalized + hold) <= Duration::from_secs(75),
        "the certificate was fetched within a poll interval of the CA finishing"
    );
    assert_eq!(proxy.new_orders().len(), 1, "one order, never replaced");
}
