//! Reliability against a CA reached through the fault-injecting proxy (test support in
//! `caas_testbed::acme_proxy`): the operator killed at each step of an issuance, a CA
//! front end that rate-limits, fails, stalls and drops connections, and 500
//! Certificates issued while the operator is restarted three times.

use std::time::{Duration, Instant};

use caas_operator::api::{COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use caas_testbed::acme_proxy::{Exchange, Fault, Kind};
use caas_testbed::{PebbleOptions, shared_bind, unique_name};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    OrderCreated,
    ChallengePresented,
    ChallengeAccepted,
    Finalized,
    Downloaded,
}

fn accepted_challenges(log: &[Exchange]) -> usize {
    log.iter()
        .filter(|e| e.kind == Kind::Challenge && e.status == 200)
        .count()
}

/// The temporary HTTP-01 objects in `ns` (Ingress, Service, Endpoints).
async fn solver_objects(client: &kube::Client, ns: &str) -> usize {
    let lp = ListParams::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}=http01-solver"
    ));
    let ingresses = Api::<Ingress>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
        .items
        .len();
    let services = Api::<Service>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
        .items
        .len();
    let endpoints = Api::<Endpoints>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .unwrap()
        .items
        .len();
    ingresses + services + endpoints
}

/// Kills the operator (SIGKILL) at `stage` of an issuance for two names, one proved by
/// HTTP-01 and one by DNS-01; a new operator must finish with the same single order,
/// leave nothing temporary behind, and write a Secret whose key matches.
async fn killed_at(stage: Stage) {
    let bed = ProxiedBed::start("kill", PebbleOptions::default()).await;
    let http_name = format!("{}.{ZONE}", unique_name("kh"));
    let dns_name = format!("{}.{ZONE}", unique_name("kd"));
    let mut dns = rfc2136_solver(&bed.client, &bed.ns).await;
    dns["selector"] = json!({ "dnsNames": [dns_name] });
    bed.issuer(json!([dns, { "http01": {} }])).await;
    let ProxiedBed {
        client,
        ns,
        pebble,
        proxy,
        mut operator,
    } = bed;
    wait_issuer(
        &client,
        &ns,
        "ca",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    if stage == Stage::Downloaded {
        // A Secret the operator cannot write (immutable, another type): the issued
        // certificate is downloaded and then cannot be stored.
        let blocker: Secret = serde_json::from_value(json!({
            "metadata": { "name": "kill-tls" }, "immutable": true, "type": "Opaque",
            "data": { "placeholder": "eA==" }
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &blocker)
            .await
            .unwrap();
    }
    proxy.set_rule(move |req, log| {
        let hold = match stage {
            Stage::OrderCreated => log
                .iter()
                .any(|e| e.kind == Kind::NewOrder && e.status == 201),
            // The second challenge's acceptance: both are presented, one accepted.
            Stage::ChallengePresented => {
                req.kind == Kind::Challenge
                    && log
                        .iter()
                        .any(|e| e.kind == Kind::Challenge && e.status == 200)
            }
            Stage::ChallengeAccepted => accepted_challenges(log) >= 2,
            Stage::Finalized => log
                .iter()
                .any(|e| e.kind == Kind::Finalize && e.status == 200),
            Stage::Downloaded => false,
        };
        hold.then_some(Fault::Hold)
    });
    create_certificate(
        &client,
        &ns,
        "kill",
        json!({
            "secretName": "kill-tls", "issuerRef": { "name": "ca" },
            "dnsNames": [http_name, dns_name],
        }),
    )
    .await;

    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    if stage == Stage::Downloaded {
        wait_for(
            "the Secret write to fail after the download",
            TIMEOUT,
            Some(&operator),
            || {
                let certs = certs.clone();
                async move { certs.get("kill").await.unwrap() }
            },
            |c: &Certificate| {
                c.status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "Ready"))
                    .is_some_and(|(_, reason, _)| reason == "SecretWriteFailed")
            },
        )
        .await;
    } else {
        wait_for(
            &format!("the proxy to hold the operator at {stage:?}"),
            TIMEOUT,
            Some(&operator),
            || async { proxy.holding() },
            |h| *h,
        )
        .await;
    }
    // Let the operator write whatever it writes before it would hear back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    operator.kill();

    // The kill landed where it was meant to.
    let log = proxy.exchanges();
    let has = |kind: Kind| log.iter().any(|e| e.kind == kind && e.status == 200);
    let cert = certs.get("kill").await.unwrap();
    let order = cert.status.as_ref().and_then(|s| s.order.clone());
    match stage {
        Stage::OrderCreated => {
            assert!(
                order.is_some_and(|o| o.url.contains("/my-order/")),
                "the order URL is in status before anything else"
            );
            assert!(
                !has(Kind::Authz),
                "killed before any authorization was read"
            );
        }
        Stage::ChallengePresented => {
            let txt = shared_bind().dig(&format!("_acme-challenge.{dns_name}"), "TXT");
            let objects = solver_objects(&client, &ns).await;
            assert!(
                !txt.is_empty() && objects > 0,
                "both challenges are presented when killed (TXT {txt:?}, {objects} HTTP-01 objects)"
            );
            assert_eq!(accepted_challenges(&log), 1);
            // The temporary Ingress routes exactly the one challenge path, nothing else.
            let token = order
                .iter()
                .flat_map(|o| &o.challenges)
                .find(|c| c.type_ == "http-01")
                .map(|c| c.token.clone())
                .expect("the HTTP-01 challenge in status");
            let lp = ListParams::default().labels(&format!("{COMPONENT_LABEL}=http01-solver"));
            let ingresses = Api::<Ingress>::namespaced(client.clone(), &ns)
                .list(&lp)
                .await
                .unwrap()
                .items;
            assert_eq!(ingresses.len(), 1);
            let spec = ingresses[0].spec.clone().unwrap();
            assert!(spec.default_backend.is_none() && spec.tls.is_none());
            let rules = spec.rules.unwrap();
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[0].host.as_deref(), Some(http_name.as_str()));
            let paths = &rules[0].http.as_ref().unwrap().paths;
            assert_eq!(paths.len(), 1);
            assert_eq!(
                paths[0].path.as_deref(),
                Some(format!("/.well-known/acme-challenge/{token}").as_str())
            );
            assert_eq!(paths[0].path_type, "Exact");
        }
        Stage::ChallengeAccepted => {
            assert_eq!(accepted_challenges(&log), 2);
            assert!(!has(Kind::Finalize), "killed before finalize");
        }
        Stage::Finalized => {
            assert!(has(Kind::Finalize));
            assert!(!has(Kind::Certificate), "killed before the download");
        }
        Stage::Downloaded => {
            assert!(has(Kind::Certificate), "the certificate was downloaded");
            let blocker = secrets.get("kill-tls").await.unwrap();
            assert!(secret_text(&blocker, "tls.crt").is_empty());
            secrets
                .delete("kill-tls", &DeleteParams::default())
                .await
                .unwrap();
        }
    }

    proxy.clear_rule();
    operator.restart();
    let cert = wait_cert_ready(
        &client,
        &ns,
        "kill",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert_eq!(cert.status.as_ref().unwrap().revision, Some(1));
    wait_for(
        "the DNS-01 cleanup finalizer to go once the records are removed",
        TIMEOUT,
        Some(&operator),
        || async { certs.get("kill").await.unwrap().metadata.finalizers },
        |f| f.as_ref().is_none_or(|f| f.is_empty()),
    )
    .await;
    assert_eq!(
        proxy.new_orders().len(),
        1,
        "{stage:?}: the CA saw exactly one new order"
    );
    assert_eq!(proxy.finalized_orders().len(), 1, "{stage:?}: one finalize");

    let secret = secrets.get("kill-tls").await.unwrap();
    let info = caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt")).unwrap();
    assert!(
        caas_operator::pki::key_matches(&secret_text(&secret, "tls.key"), &info),
        "{stage:?}: the Secret's key matches its certificate"
    );
    let mut names = info.dns_names.clone();
    names.sort();
    let mut want = vec![http_name.clone(), dns_name.clone()];
    want.sort();
    assert_eq!(names, want);
    verify_chain(
        &secret_text(&secret, "tls.crt"),
        &pebble.issuance_root().await,
        &http_name,
    )
    .unwrap();

    // Nothing temporary is left: HTTP-01 objects, TXT records, the next-key Secret.
    wait_for(
        "no temporary HTTP-01 objects",
        TIMEOUT,
        Some(&operator),
        || solver_objects(&client, &ns),
        |n| *n == 0,
    )
    .await;
    wait_for(
        "no TXT record",
        TIMEOUT,
        Some(&operator),
        || async { shared_bind().dig(&format!("_acme-challenge.{dns_name}"), "TXT") },
        |t: &Vec<String>| t.is_empty(),
    )
    .await;
    // Key Secrets are labelled (the operator watches only those; tooling can find them).
    for (name, component) in [("kill-tls", "tls"), ("ca-account", "account-key")] {
        let labels = secrets.get(name).await.unwrap().metadata.labels.unwrap();
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY_VALUE)
        );
        assert_eq!(
            labels.get(COMPONENT_LABEL).map(String::as_str),
            Some(component)
        );
    }
    assert!(
        secrets.get_opt("kill-next-key").await.unwrap().is_none(),
        "the next-key Secret is removed once the certificate is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_order_is_created() {
    killed_at(Stage::OrderCreated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_a_challenge_is_presented() {
    killed_at(Stage::ChallengePresented).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_challenges_are_accepted() {
    killed_at(Stage::ChallengeAccepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_finalize() {
    killed_at(Stage::Finalized).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_download_before_the_secret_is_written() {
    killed_at(Stage::Downloaded).await;
}

/// A CA front end that answers the first new-order of each Certificate with 429 and
/// `Retry-After: 15` (longer than the operator's own 10 s first backoff), and every
/// tenth request with a 500, a dropped connection, or a 1.5-second stall: every
/// Certificate still becomes Ready with one order, and no new-order is sent again
/// before its `Retry-After` is up, nor much later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_errors_stalls_and_drops_are_ridden_out() {
    const RETRY_AFTER: u64 = 15;
    let bed = ProxiedBed::start("flaky", PebbleOptions::default()).await;
    let mut n = 0u64;
    bed.proxy.set_rule(move |req, log| {
        if req.kind == Kind::NewOrder
            && !log
                .iter()
                .any(|e| e.kind == Kind::NewOrder && e.names == req.names)
        {
            return Some(Fault::RateLimited {
                retry_after_secs: RETRY_AFTER,
            });
        }
        n += 1;
        match n % 10 {
            3 => Some(Fault::ServerError),
            6 => Some(Fault::Drop),
            8 => Some(Fault::Slow(Duration::from_millis(1500))),
            _ => None,
        }
    });
    bed.issuer(json!([{ "http01": {} }])).await;
    let ProxiedBed {
        client,
        ns,
        proxy,
        operator,
        ..
    } = bed;
    let names: Vec<String> = (0..4)
        .map(|i| format!("{}.{ZONE}", unique_name(&format!("flaky{i}"))))
        .collect();
    for (i, name) in names.iter().enumerate() {
        create_certificate(
            &client,
            &ns,
            &format!("c{i}"),
            json!({ "secretName": format!("c{i}-tls"), "issuerRef": { "name": "ca" }, "dnsNames": [name] }),
        )
        .await;
    }
    for i in 0..names.len() {
        wait_cert_ready(
            &client,
            &ns,
            &format!("c{i}"),
            "True",
            Some("Issued"),
            Duration::from_secs(180),
            &operator,
        )
        .await;
    }

    let log = proxy.exchanges();
    let injected = |f: &dyn Fn(&Fault) -> bool| {
        log.iter()
            .filter(|e| e.fault.as_ref().is_some_and(f))
            .count()
    };
    let errors = injected(&|f| *f == Fault::ServerError);
    let drops = injected(&|f| *f == Fault::Drop);
    let stalls = injected(&|f| matches!(f, Fault::Slow(_)));
    let limited = injected(&|f| matches!(f, Fault::RateLimited { .. }));
    println!(
        "{} requests; injected: {limited} x 429, {errors} x 500, {drops} drops, {stalls} stalls",
        log.len()
    );
    assert!(errors > 0 && drops > 0 && stalls > 0 && limited >= names.len());

    for name in &names {
        let orders: Vec<&Exchange> = log
            .iter()
            .filter(|e| e.kind == Kind::NewOrder && e.names == vec![name.clone()])
            .collect();
        let first = orders[0];
        assert_eq!(first.status, 429);
        let next = orders
            .iter()
            .find(|e| e.at > first.at)
            .unwrap_or_else(|| panic!("{name}: no new-order after the 429"));
        let gap = next.at - first.at;
        println!("{name}: new-order again {gap:?} after 429 with Retry-After {RETRY_AFTER}");
        assert!(
            gap >= Duration::from_secs(RETRY_AFTER),
            "{name}: new-order sent again after {gap:?}, before Retry-After ({RETRY_AFTER} s)"
        );
        // CAs limit per account: a 429 pauses the new orders of every Certificate of the
        // account, so the wait is bounded by the latest 429 before this new-order. A 500
        // or a dropped connection after the pause (on the nonce or account request that
        // comes before the new-order) is one more failure: the backoff doubles from
        // 10 s, so each such fault in between allows its doubled backoff after it.
        let last_limit = log
            .iter()
            .filter(|e| e.kind == Kind::NewOrder && e.status == 429 && e.at < next.at)
            .map(|e| e.at)
            .max()
            .unwrap_or(first.at);
        let failed: Vec<std::time::Instant> = log
            .iter()
            .filter(|e| e.at > first.at && e.at < next.at)
            .filter(|e| matches!(e.fault, Some(Fault::ServerError | Fault::Drop)))
            .map(|e| e.at)
            .collect();
        let last_cause = failed.iter().copied().fold(last_limit, std::cmp::max);
        let allowed = Duration::from_secs(
            (RETRY_AFTER * 2).max(10 * (1 << failed.len().min(6)) + RETRY_AFTER),
        );
        let since_last = next.at - last_cause;
        assert!(
            since_last < allowed,
            "{name}: waited {since_last:?} after the account's last {RETRY_AFTER} s \
             Retry-After or the last of {} injected failures in between (allowed {allowed:?})",
            failed.len()
        );
    }
    let per_name = proxy.finalized_per_names();
    for name in &names {
        assert_eq!(
            per_name.get(&vec![name.clone()]),
            Some(&1),
            "{name}: exactly one successful order"
        );
    }
    // The rate limit was reported on the Certificate's events with the CA's words.
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("RateLimited")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("the CA asks to wait 15s"))),
        "a RateLimited event naming the wait: {:?}",
        events.iter().map(|e| &e.note).collect::<Vec<_>>()
    );
}

/// A rate limit outlives the operator: the CA answers the account's first new-order with
/// 429 and `Retry-After: 40`; the pause goes into the issuer's status with the CA's words,
/// the operator is SIGKILLed and started again, and a Certificate created after that
/// (which never saw a 429 itself) sends no new-order before the 40 s are up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_pause_outlives_the_operator() {
    const RETRY_AFTER: u64 = 40;
    let bed = ProxiedBed::start("limit-kill", PebbleOptions::default()).await;
    bed.proxy.set_rule(move |req, log| {
        let first = !log.iter().any(|e| e.kind == Kind::NewOrder);
        (req.kind == Kind::NewOrder && first).then_some(Fault::RateLimited {
            retry_after_secs: RETRY_AFTER,
        })
    });
    bed.issuer(json!([{ "http01": {} }])).await;
    let ProxiedBed {
        client,
        ns,
        proxy,
        mut operator,
        ..
    } = bed;
    let cert = |i: usize| {
        let name = format!("{}.{ZONE}", unique_name(&format!("limit{i}")));
        json!({ "secretName": format!("c{i}-tls"), "issuerRef": { "name": "ca" }, "dnsNames": [name] })
    };
    create_certificate(&client, &ns, "c0", cert(0)).await;
    let issuers = Api::<caas_operator::api::CaaSIssuer>::namespaced(client.clone(), &ns);
    let limited = wait_for(
        "the rate limit in the issuer's status",
        TIMEOUT,
        Some(&operator),
        || async {
            issuers
                .get("ca")
                .await
                .unwrap()
                .status
                .and_then(|s| s.rate_limited)
        },
        |r| r.is_some(),
    )
    .await
    .unwrap();
    let limited_at = proxy
        .exchanges()
        .iter()
        .find(|e| e.kind == Kind::NewOrder && e.status == 429)
        .map(|e| e.at)
        .unwrap();
    let left = limited.until.0.duration_since(jiff::Timestamp::now());
    assert!(
        left > jiff::SignedDuration::from_secs(20),
        "until {} ({left:#} left)",
        limited.until.0
    );
    assert!(
        limited.message.contains("429") || limited.message.contains("rate"),
        "{}",
        limited.message
    );

    operator.kill();
    operator.restart();
    create_certificate(&client, &ns, "c1", cert(1)).await;
    for c in ["c0", "c1"] {
        let timeout = Duration::from_secs(RETRY_AFTER + 90);
        wait_cert_ready(&client, &ns, c, "True", Some("Issued"), timeout, &operator).await;
    }
    let orders: Vec<Exchange> = (proxy.exchanges().into_iter())
        .filter(|e| e.kind == Kind::NewOrder && e.at > limited_at)
        .collect();
    let first = orders.iter().map(|e| e.at).min().unwrap();
    let gap = first - limited_at;
    println!(
        "first new-order {gap:?} after the 429 (Retry-After {RETRY_AFTER} s, operator killed in between)"
    );
    assert!(
        gap >= Duration::from_secs(RETRY_AFTER - 1),
        "a new-order {gap:?} after the 429: the restarted operator forgot the pause"
    );
}

/// 500 Certificates while the operator is killed twice (SIGKILL) and stopped once
/// (SIGTERM) along the way: all become Ready, each with exactly one successful order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_certificates_through_three_restarts() {
    const COUNT: usize = 500;
    let bed = ProxiedBed::start(
        "restarts",
        PebbleOptions {
            env: vec![("PEBBLE_AUTHZREUSE".into(), "0".into())],
            ..Default::default()
        },
    )
    .await;
    bed.issuer(json!([{ "http01": {} }])).await;
    let ProxiedBed {
        client,
        ns,
        proxy,
        mut operator,
        ..
    } = bed;
    let run = unique_name("r");
    let started = Instant::now();
    futures::stream::iter(0..COUNT)
        .map(|i| {
            let client = client.clone();
            let ns = ns.clone();
            let run = run.clone();
            async move {
                create_certificate(
                    &client,
                    &ns,
                    &format!("c{i}"),
                    json!({ "secretName": format!("c{i}-tls"), "issuerRef": { "name": "ca" }, "dnsNames": [format!("{run}-{i}.{ZONE}")] }),
                )
                .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let ready_count = || {
        let certs = certs.clone();
        async move {
            certs
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .filter(|c| {
                    c.status
                        .as_ref()
                        .and_then(|s| condition(&s.conditions, "Ready"))
                        .is_some_and(|(s, _, _)| s == "True")
                })
                .count()
        }
    };
    for (at, graceful) in [(100, false), (250, true), (400, false)] {
        let ready = wait_for(
            &format!("{at} Certificates Ready"),
            Duration::from_secs(300),
            Some(&operator),
            ready_count,
            |n| *n >= at,
        )
        .await;
        println!(
            "{ready} Ready after {:?}; restarting ({})",
            started.elapsed(),
            if graceful { "SIGTERM" } else { "SIGKILL" }
        );
        if graceful {
            operator.proc.stop(Duration::from_secs(10));
        }
        operator.restart();
    }
    wait_for(
        "all Certificates Ready",
        Duration::from_secs(600),
        Some(&operator),
        ready_count,
        |n| *n == COUNT,
    )
    .await;
    println!("{COUNT} Ready after {:?}", started.elapsed());

    let per_name = proxy.finalized_per_names();
    let new_orders = proxy.new_orders().len();
    println!("{new_orders} new orders for {COUNT} Certificates");
    for i in 0..COUNT {
        let name = vec![format!("{run}-{i}.{ZONE}")];
        assert_eq!(
            per_name.get(&name),
            Some(&1),
            "{name:?}: exactly one successful order; its orders: {:?}",
            proxy
                .new_orders()
                .iter()
                .filter(|e| e.names == name)
                .map(|e| &e.order_id)
                .collect::<Vec<_>>()
        );
    }
    for c in certs.list(&Default::default()).await.unwrap().items {
        assert_eq!(
            c.status.as_ref().and_then(|s| s.revision),
            Some(1),
            "{:?} written once",
            c.metadata.name
        );
    }
}

/// The secrets scan every operator run ends with (tests/support) finds a key inside
/// JSON-escaped PEM text and base64 in any surroundings, and nothing else.
#[test]
fn secrets_scan_finds_keys_in_any_surroundings() {
    let secret = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgabcdefghijklmnop";
    let needles = [
        secret.to_string(),
        "c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cw==".to_string(),
    ]
    .into_iter()
    .collect();
    let log = format!(r#"{{"msg":"key: -----BEGIN X-----\n{secret}\nxyz"}}"#);
    assert_eq!(find_any(&log, &needles).map(String::as_str), Some(secret));
    assert!(find_any("token=c2VjcmV0LXRzaWcta2V5LWZvci10ZXN0cw==;", &needles).is_some());
    assert!(find_any("nothing to see here, MIGHAgEAMBMGByqGSM49", &needles).is_none());
}

/// A Certificate deleted while its DNS-01 TXT record is published (the CA is still
/// validating): the record is removed before the Certificate goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_certificate_mid_order_removes_its_txt_record() {
    let bed = ProxiedBed::start("delete", PebbleOptions::default()).await;
    bed.proxy.set_slow(caas_testbed::SlowCa {
        validation: Duration::from_secs(600),
        issuance: Duration::from_secs(600),
    });
    let dns = rfc2136_solver(&bed.client, &bed.ns).await;
    bed.issuer(json!([dns])).await;
    let name = format!("{}.{ZONE}", unique_name("del"));
    create_certificate(
        &bed.client,
        &bed.ns,
        "del",
        json!({ "secretName": "del-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name] }),
    )
    .await;
    let record = format!("_acme-challenge.{name}");
    wait_for(
        "the TXT record to be published",
        TIMEOUT,
        Some(&bed.operator),
        || async { shared_bind().dig(&record, "TXT") },
        |t: &Vec<String>| !t.is_empty(),
    )
    .await;
    bed.delete_guarded_certificate("del").await;
    assert!(
        shared_bind().dig(&record, "TXT").is_empty(),
        "the TXT record was removed before the Certificate went"
    );
}
