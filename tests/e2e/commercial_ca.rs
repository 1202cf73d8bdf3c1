//! What commercial CaaS CAs need, against Pebble: EAB with HS384/HS512, an account key
//! stored before it is registered (and a stored key the CA does not know registered
//! instead of refused), `caBundle` as base64 PEM, `duration` sent as `notAfter`,
//! `preferredChain` over alternate roots, IP address identifiers, and orders whose
//! authorizations are already valid.

use std::time::Duration;

use base64::Engine;
use caas_operator::api::{CaaSIssuer, Certificate, Time};
use caas_operator::pki;
use caas_testbed::Fault;
use caas_testbed::acme_proxy::{Exchange, Kind, Rule};
use caas_testbed::{Pebble, PebbleOptions, shared_apiserver, unique_name};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A `CaaSIssuer` named `name` at `server` with extra spec fields.
async fn issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    pebble: &Pebble,
    spec: serde_json::Value,
) {
    let mut full = json!({
        "server": pebble.directory_url,
        "caBundle": pebble.tls_ca_pem,
        "externalAccountBinding": {
            "keyID": pebble.eab_kid,
            "keySecretRef": { "name": "eab", "key": "hmac" }
        },
        "privateKeySecretRef": { "name": format!("{name}-account") },
        "solvers": [{ "http01": {} }]
    });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    let issuer: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": name, "namespace": ns },
        "spec": full
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("caas-tests").force(),
            &Patch::Apply(&issuer),
        )
        .await
        .expect("apply issuer");
}

/// A proxy rule that decides by the request alone.
fn rule(mut decide: impl FnMut(&Exchange) -> Option<Fault> + Send + 'static) -> Rule {
    Box::new(move |e: &Exchange, _: &[Exchange]| decide(e))
}

/// Certificate `cert` from `issuer_name` for a fresh name (its Secret `<cert>-tls`), with
/// `extra` spec fields, waited for until issued; returns the name and the chain.
async fn issued(
    client: &kube::Client,
    ns: &str,
    cert: &str,
    issuer_name: &str,
    extra: serde_json::Value,
    operator: &Operator,
) -> (String, String) {
    let name = format!("{}.{ZONE}", unique_name(cert));
    let mut spec = json!({
        "secretName": format!("{cert}-tls"), "issuerRef": { "name": issuer_name }, "dnsNames": [name]
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    create_certificate(client, ns, cert, spec).await;
    wait_cert_ready(client, ns, cert, "True", Some("Issued"), TIMEOUT, operator).await;
    let chain = secret_text(&secret(client, ns, &format!("{cert}-tls")).await, "tls.crt");
    (name, chain)
}

/// `caas-operator revoke NAME --reason keyCompromise`, which must succeed; its output.
fn revoke_for_key_compromise(ns: &str, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caas-operator"))
        .env("KUBECONFIG", &shared_apiserver().kubeconfig)
        .args(["revoke", name, "-n", ns, "--reason", "keyCompromise"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "revoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asks for a renewal of Certificate `name` (`caas.dev/renew: value`).
async fn renew(client: &kube::Client, ns: &str, name: &str, value: &str) {
    let renew = json!({ "metadata": { "annotations": { "caas.dev/renew": value } } });
    Api::<Certificate>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&renew))
        .await
        .unwrap();
}

async fn secret(client: &kube::Client, ns: &str, name: &str) -> Secret {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}

#[tokio::test]
async fn eab_hs384_hs512_base64_ca_bundle_and_unknown_stored_key() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "eab-algs").await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = Operator::start(api, &ns, &pebble);
    apply_secret(&client, &ns, "eab", &[("hmac", &pebble.eab_hmac)]).await;

    // HS512 with the caBundle pasted as base64 PEM (cert-manager's form).
    let b64_bundle = base64::engine::general_purpose::STANDARD.encode(&pebble.tls_ca_pem);
    issuer(
        &client,
        &ns,
        "hs512",
        &pebble,
        json!({
            "caBundle": b64_bundle,
            "externalAccountBinding": {
                "keyID": pebble.eab_kid, "keyAlgorithm": "HS512",
                "keySecretRef": { "name": "eab", "key": "hmac" }
            }
        }),
    )
    .await;
    issuer(
        &client,
        &ns,
        "hs384",
        &pebble,
        json!({
            "externalAccountBinding": {
                "keyID": pebble.eab_kid, "keyAlgorithm": "HS384",
                "keySecretRef": { "name": "eab", "key": "hmac" }
            }
        }),
    )
    .await;
    for name in ["hs512", "hs384"] {
        wait_issuer(
            &client,
            &ns,
            name,
            "True",
            "AccountRegistered",
            TIMEOUT,
            &operator,
        )
        .await;
    }
    assert!(
        pebble
            .log()
            .matches("Successful newAccount Binding")
            .count()
            >= 2,
        "Pebble verified both bindings"
    );

    // A certificate from each account.
    for (cert, issuer_name) in [("web", "hs512"), ("api", "hs384")] {
        let (name, chain) = issued(&client, &ns, cert, issuer_name, json!({}), &operator).await;
        verify_chain(&chain, &pebble.issuance_root().await, &name)
            .unwrap_or_else(|e| panic!("the {issuer_name} chain verifies: {e}"));
    }

    // A stored account key the CA has never seen is registered (with EAB), not refused,
    // and stays the key.
    let key_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    caas_testbed::register_secret(&key_pem);
    apply_secret(&client, &ns, "own-account", &[("tls.key", &key_pem)]).await;
    issuer(
        &client,
        &ns,
        "own",
        &pebble,
        json!({ "privateKeySecretRef": { "name": "own-account" } }),
    )
    .await;
    let own = wait_issuer(
        &client,
        &ns,
        "own",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    assert!(own.status.unwrap().account_uri.is_some());
    assert_eq!(
        secret_text(&secret(&client, &ns, "own-account").await, "tls.key"),
        key_pem
    );
    operator.assert_logs_free_of(&[&pebble.eab_hmac, &key_pem]);
}

#[tokio::test]
async fn account_key_is_stored_before_registration_one_account_after_refusal_and_kill() {
    // No injected bad nonces: a held registration answer must be the only surprise.
    let options = PebbleOptions {
        env: vec![("PEBBLE_WFE_NONCEREJECT".into(), "0".into())],
        ..PebbleOptions::default()
    };
    let bed = ProxiedBed::start("acct-first", options).await;
    let (client, ns) = (&bed.client, bed.ns.as_str());
    // A quota of no Secrets (its status set here: no quota controller runs in the test
    // bed): the API server refuses every Secret create in the namespace until it goes.
    apply_secret(client, ns, "ca-eab", &[("hmac", &bed.pebble.eab_hmac)]).await;
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(client.clone(), ns);
    let quota = serde_json::from_value(json!({
        "metadata": { "name": "no-secrets" },
        "spec": { "hard": { "count/secrets": "0" } }
    }))
    .unwrap();
    quotas.create(&Default::default(), &quota).await.unwrap();
    let status =
        json!({ "status": { "hard": { "count/secrets": "0" }, "used": { "count/secrets": "0" } } });
    quotas
        .patch_status(
            "no-secrets",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .unwrap();
    bed.issuer(json!([{ "http01": {} }])).await;
    let mut operator = bed.operator;
    wait_issuer(
        client,
        ns,
        "ca",
        "False",
        "SecretWriteFailed",
        TIMEOUT,
        &operator,
    )
    .await;
    let registrations = || {
        bed.pebble
            .log()
            .matches("Successful newAccount Binding")
            .count()
    };
    assert_eq!(
        registrations(),
        0,
        "nothing is registered before the key is stored"
    );
    assert!(
        bed.proxy
            .exchanges()
            .iter()
            .all(|e| e.kind != Kind::NewAccount)
    );

    // The write goes through; the registration reaches the CA, its answer never comes
    // back: the operator is killed right after the CA made the account.
    // The first newAccount asks whether the CA knows the key (it does not); the second
    // registers it.
    let mut new_accounts = 0;
    bed.proxy.set_rule(rule(move |e: &Exchange| {
        if e.kind != Kind::NewAccount {
            return None;
        }
        new_accounts += 1;
        (new_accounts >= 2).then_some(Fault::Slow(Duration::from_secs(120)))
    }));
    // Allow Secrets again (a raised limit reaches the API server's quota informer at
    // once), and touch the issuer so it tries now rather than after its backoff.
    let allow = json!({ "spec": { "hard": { "count/secrets": "100" } } });
    quotas
        .patch("no-secrets", &PatchParams::default(), &Patch::Merge(&allow))
        .await
        .unwrap();
    let allow = json!({ "status": { "hard": { "count/secrets": "100" }, "used": { "count/secrets": "0" } } });
    quotas
        .patch_status("no-secrets", &PatchParams::default(), &Patch::Merge(&allow))
        .await
        .unwrap();
    let touch = json!({ "metadata": { "annotations": { "test/touch": "1" } } });
    Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .patch("ca", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    wait_for(
        "the CA registers the account",
        TIMEOUT,
        Some(&operator),
        || async { registrations() },
        |n| *n == 1,
    )
    .await;
    operator.kill();
    bed.proxy.clear_rule();
    let stored = secret_text(&secret(client, ns, "ca-account").await, "tls.key");

    operator.restart();
    let ready = wait_issuer(
        client,
        ns,
        "ca",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    assert_eq!(
        registrations(),
        1,
        "Pebble saw exactly one newAccount binding for the key"
    );
    let account = secret(client, ns, "ca-account").await;
    assert_eq!(
        secret_text(&account, "tls.key"),
        stored,
        "the stored key was kept"
    );
    assert_eq!(
        account
            .metadata
            .annotations
            .unwrap_or_default()
            .get("caas.dev/account-uri"),
        ready.status.unwrap().account_uri.as_ref()
    );
}

#[tokio::test]
async fn duration_is_sent_as_not_after_only_when_the_issuer_turns_it_on() {
    let (client, ns, pebble, operator) = setup(
        "duration",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    apply_secret(&client, &ns, "eab", &[("hmac", &pebble.eab_hmac)]).await;
    issuer(
        &client,
        &ns,
        "on",
        &pebble,
        json!({ "enableDurationFeature": true }),
    )
    .await;
    // Off by default, as in cert-manager: a pasted Certificate with `duration` gets the
    // CA's default lifetime from an issuer that does not say otherwise.
    for (cert, issuer_name, want_hours) in [("short", "on", 48), ("default", "pebble", 90 * 24)] {
        let (_, chain) = issued(
            &client,
            &ns,
            cert,
            issuer_name,
            json!({ "duration": "48h" }),
            &operator,
        )
        .await;
        let info = pki::parse_chain(&chain).unwrap();
        let hours = info.not_after.duration_since(info.not_before).as_hours();
        assert!(
            (want_hours - 1..=want_hours + 1).contains(&hours),
            "{cert}: the CA gave {hours} h, expected about {want_hours} h"
        );
        let status = Api::<caas_operator::api::Certificate>::namespaced(client.clone(), &ns)
            .get(cert)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.not_after, Some(Time(info.not_after)));
    }
}

#[tokio::test]
async fn preferred_chain_picks_the_alternate_root_by_common_name() {
    let options = PebbleOptions {
        env: vec![("PEBBLE_ALTERNATE_ROOTS".into(), "2".into())],
        ..PebbleOptions::default()
    };
    let (client, ns, pebble, operator) = setup("chains", options, json!([{ "http01": {} }])).await;
    apply_secret(&client, &ns, "eab", &[("hmac", &pebble.eab_hmac)]).await;
    let alternate_root = pebble.root(2).await;
    let wanted = common_name(&alternate_root);
    assert_ne!(wanted, common_name(&pebble.issuance_root().await));
    issuer(
        &client,
        &ns,
        "alt",
        &pebble,
        json!({ "preferredChain": wanted }),
    )
    .await;
    issuer(
        &client,
        &ns,
        "nomatch",
        &pebble,
        json!({ "preferredChain": "No Such Root" }),
    )
    .await;
    for (cert, issuer_name, root) in [
        ("alt", "alt", alternate_root.clone()),
        ("nomatch", "nomatch", pebble.issuance_root().await),
    ] {
        let (name, chain) = issued(&client, &ns, cert, issuer_name, json!({}), &operator).await;
        verify_chain(&chain, &root, &name)
            .unwrap_or_else(|e| panic!("{cert}: chain does not lead to the expected root: {e}"));
    }
}

/// The subject Common Name of a PEM certificate.
fn common_name(pem: &str) -> String {
    use x509_parser::prelude::FromDer;
    let der = pki::pem_certificates(pem).unwrap().remove(0);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn ip_addresses_over_http01_tls_alpn01_and_the_ingress_annotation() {
    let (client, ns, pebble, operator) = setup(
        "ip-sans",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    apply_secret(&client, &ns, "eab", &[("hmac", &pebble.eab_hmac)]).await;
    issuer(
        &client,
        &ns,
        "alpn",
        &pebble,
        json!({ "solvers": [{ "tlsAlpn01": {} }] }),
    )
    .await;
    let root = pebble.issuance_root().await;
    for (cert, issuer_name) in [("by-http", "pebble"), ("by-alpn", "alpn")] {
        create_certificate(
            &client,
            &ns,
            cert,
            json!({
                "secretName": format!("{cert}-tls"), "issuerRef": { "name": issuer_name },
                "ipAddresses": ["127.0.0.1"]
            }),
        )
        .await;
        wait_cert_ready(
            &client,
            &ns,
            cert,
            "True",
            Some("Issued"),
            TIMEOUT,
            &operator,
        )
        .await;
        let chain = secret_text(
            &secret(&client, &ns, &format!("{cert}-tls")).await,
            "tls.crt",
        );
        verify_chain(&chain, &root, "127.0.0.1").unwrap_or_else(|e| panic!("{cert}: {e}"));
        let info = pki::parse_chain(&chain).unwrap();
        assert_eq!(
            info.ip_addresses,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    // An Ingress: its TLS host and the annotated IP address in one certificate.
    let host = format!("{}.{ZONE}", unique_name("ing"));
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": {
            "caas.dev/issuer": "pebble", "caas.dev/ip-sans": "127.0.0.1"
        } },
        "spec": {
            "tls": [{ "hosts": [host], "secretName": "ing-tls" }],
            "rules": [{ "host": host, "http": { "paths": [{ "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }]
        }
    }))
    .unwrap();
    Api::<Ingress>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &ingress)
        .await
        .unwrap();
    wait_cert_ready(
        &client,
        &ns,
        "ing-tls",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let chain = secret_text(&secret(&client, &ns, "ing-tls").await, "tls.crt");
    verify_chain(&chain, &root, &host).expect("host");
    verify_chain(&chain, &root, "127.0.0.1").expect("IP address");
}

#[tokio::test]
async fn valid_authorizations_go_straight_to_finalize() {
    let options = PebbleOptions {
        env: vec![("PEBBLE_AUTHZREUSE".into(), "100".into())],
        ..PebbleOptions::default()
    };
    let bed = ProxiedBed::start("authz-reuse", options).await;
    let (client, ns) = (&bed.client, bed.ns.as_str());
    bed.issuer(json!([{ "http01": {} }])).await;
    let name = format!("{}.{ZONE}", unique_name("reuse"));
    let challenges = || {
        bed.proxy
            .exchanges()
            .iter()
            .filter(|e| e.kind == Kind::Challenge)
            .count()
    };
    create_certificate(
        client,
        ns,
        "first",
        json!({
            "secretName": "first-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name]
        }),
    )
    .await;
    wait_cert_ready(
        client,
        ns,
        "first",
        "True",
        Some("Issued"),
        TIMEOUT,
        &bed.operator,
    )
    .await;
    let answered = challenges();
    assert!(answered >= 1, "the first order proved the name");

    // Same name, same account: the CA reuses the valid authorization; nothing is presented.
    create_certificate(
        client,
        ns,
        "second",
        json!({
            "secretName": "second-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name]
        }),
    )
    .await;
    wait_cert_ready(
        client,
        ns,
        "second",
        "True",
        Some("Issued"),
        TIMEOUT,
        &bed.operator,
    )
    .await;
    assert_eq!(
        challenges(),
        answered,
        "no challenge was answered for the second order"
    );
}

#[tokio::test]
async fn a_rate_limit_pauses_new_orders_of_every_certificate_of_the_account() {
    let bed = ProxiedBed::start("ratelimit", PebbleOptions::default()).await;
    let (client, ns) = (&bed.client, bed.ns.as_str());
    bed.registered_issuer(json!([{ "http01": {} }])).await;
    const PAUSE: u64 = 15;
    let mut limited = false;
    bed.proxy.set_rule(rule(move |e: &Exchange| {
        (e.kind == Kind::NewOrder && !std::mem::replace(&mut limited, true)).then_some(
            Fault::RateLimited {
                retry_after_secs: PAUSE,
            },
        )
    }));
    let new_orders = || {
        bed.proxy
            .exchanges()
            .into_iter()
            .filter(|e| e.kind == Kind::NewOrder)
            .collect::<Vec<_>>()
    };
    for cert in ["first", "second"] {
        create_certificate(
            client,
            ns,
            cert,
            json!({
                "secretName": format!("{cert}-tls"), "issuerRef": { "name": "ca" },
                "dnsNames": [format!("{}.{ZONE}", unique_name(cert))]
            }),
        )
        .await;
        let c = wait_cert_ready(
            client,
            ns,
            cert,
            "False",
            Some("RateLimited"),
            TIMEOUT,
            &bed.operator,
        )
        .await;
        let (_, _, message) = condition(&c.status.unwrap().conditions, "Ready").unwrap();
        if cert == "second" {
            assert!(
                message.contains("resume at"),
                "says when it resumes: {message}"
            );
        }
    }
    // The second Certificate never asked the CA during the pause.
    assert_eq!(
        new_orders().len(),
        1,
        "only the rate-limited order reached the CA"
    );
    for cert in ["first", "second"] {
        wait_cert_ready(
            client,
            ns,
            cert,
            "True",
            Some("Issued"),
            TIMEOUT,
            &bed.operator,
        )
        .await;
    }
    let orders = new_orders();
    let limited_at = orders[0].at;
    assert!(
        orders[1..]
            .iter()
            .all(|o| o.at.duration_since(limited_at) >= Duration::from_secs(PAUSE - 1)),
        "no new order before the CA's Retry-After ran out"
    );
}

/// A pause stops new orders only: an order the CA accepted before the 429 is validated,
/// finalized and downloaded while the account's other Certificate waits.
#[tokio::test]
async fn an_order_under_way_continues_while_the_account_is_paused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let bed = ProxiedBed::start("ratelimit-inflight", PebbleOptions::default()).await;
    let (client, ns) = (&bed.client, bed.ns.as_str());
    bed.registered_issuer(json!([{ "http01": {} }])).await;
    const PAUSE: u64 = 45;
    const HOLD: Duration = Duration::from_secs(20);
    // The in-flight order's challenge answer is held back 20 s (the operator gives an
    // answer 30 s): the second Certificate's new order, answered 429, lands inside that
    // window.
    let challenged = Arc::new(AtomicBool::new(false));
    let (seen, mut limited) = (challenged.clone(), false);
    bed.proxy.set_rule(rule(move |e: &Exchange| match e.kind {
        Kind::Challenge if !seen.swap(true, Ordering::SeqCst) => Some(Fault::Slow(HOLD)),
        // The first new order after that (the second Certificate's).
        Kind::NewOrder if seen.load(Ordering::SeqCst) && !std::mem::replace(&mut limited, true) => {
            Some(Fault::RateLimited {
                retry_after_secs: PAUSE,
            })
        }
        _ => None,
    }));
    let names: Vec<String> = ["inflight", "waiting"]
        .iter()
        .map(|c| format!("{}.{ZONE}", unique_name(c)))
        .collect();
    let spec = |cert: &str, name: &str| {
        json!({
            "secretName": format!("{cert}-tls"), "issuerRef": { "name": "ca" }, "dnsNames": [name]
        })
    };
    create_certificate(client, ns, "inflight", spec("inflight", &names[0])).await;
    wait_for(
        "the first Certificate's challenge answer",
        TIMEOUT,
        Some(&bed.operator),
        || async { challenged.load(Ordering::SeqCst) },
        |answered| *answered,
    )
    .await;
    create_certificate(client, ns, "waiting", spec("waiting", &names[1])).await;
    wait_cert_ready(
        client,
        ns,
        "waiting",
        "False",
        Some("RateLimited"),
        TIMEOUT,
        &bed.operator,
    )
    .await;
    wait_cert_ready(
        client,
        ns,
        "inflight",
        "True",
        Some("Issued"),
        TIMEOUT,
        &bed.operator,
    )
    .await;
    let log = bed.proxy.exchanges();
    let limited_at = log
        .iter()
        .find(|e| e.kind == Kind::NewOrder && e.status == 429)
        .expect("the second new order was answered 429")
        .at;
    let held_at = log
        .iter()
        .find(|e| e.kind == Kind::Challenge)
        .expect("the held challenge answer")
        .at;
    assert!(
        limited_at < held_at + HOLD,
        "the second new order came {:?} after the held challenge answer, not within {HOLD:?}: \
         the test cannot tell a paused in-flight order from a slow machine",
        limited_at.checked_duration_since(held_at)
    );
    let during_pause = |at: std::time::Instant| {
        at > limited_at && at.duration_since(limited_at) < Duration::from_secs(PAUSE)
    };
    let downloaded = log
        .iter()
        .find(|e| e.kind == Kind::Certificate && e.status == 200)
        .expect("the in-flight certificate was downloaded")
        .at;
    assert!(
        during_pause(downloaded),
        "the in-flight order finished inside the pause ({:?} after the 429, pause {PAUSE} s)",
        downloaded.checked_duration_since(limited_at)
    );
    // Pebble rejects some nonces (retried invisibly): one finalize answered 200 counts.
    assert!(
        log.iter()
            .any(|e| e.kind == Kind::Finalize && e.status == 200 && during_pause(e.at)),
        "the in-flight order was finalized during the pause"
    );
    let waiting = Api::<caas_operator::api::Certificate>::namespaced(client.clone(), ns)
        .get("waiting")
        .await
        .unwrap();
    let (status, reason, _) = condition(&waiting.status.unwrap().conditions, "Ready").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RateLimited"),
        "the paused Certificate is still waiting while the other one is issued"
    );
    wait_cert_ready(
        client,
        ns,
        "waiting",
        "True",
        Some("Issued"),
        Duration::from_secs(PAUSE) + TIMEOUT,
        &bed.operator,
    )
    .await;
}

#[tokio::test]
async fn account_key_rollover_on_request_and_revocation_then_renewal() {
    let (client, ns, pebble, operator) = setup(
        "rollover",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let ready = wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let uri = ready.status.unwrap().account_uri.unwrap();
    let old_key = secret_text(&secret(&client, &ns, "pebble-account").await, "tls.key");

    // Rollover: the same account, a new key in the Secret, the old key unknown to the CA.
    let annotate =
        json!({ "metadata": { "annotations": { "caas.dev/rotate-account-key": "2026-11-29" } } });
    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .patch("pebble", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap();
    let api = Api::<CaaSIssuer>::namespaced(client.clone(), &ns);
    let rotated = wait_for(
        "the rollover",
        TIMEOUT,
        Some(&operator),
        || async { api.get("pebble").await.unwrap() },
        |i| {
            i.status
                .as_ref()
                .and_then(|s| s.last_account_key_rotation.as_deref())
                == Some("2026-11-29")
        },
    )
    .await;
    assert_eq!(
        rotated.status.unwrap().account_uri.as_deref(),
        Some(uri.as_str())
    );
    let account_secret = secret(&client, &ns, "pebble-account").await;
    let new_key = secret_text(&account_secret, "tls.key");
    assert_ne!(new_key, old_key, "the Secret holds the new key");
    assert!(!account_secret.data.unwrap().contains_key("tls.key.next"));
    let http =
        caas_operator::acme::AcmeHttp::new(Some(&pebble.tls_ca_pem), Default::default()).unwrap();
    match caas_operator::acme::load(&http, &pebble.directory_url, &old_key).await {
        Err(caas_operator::acme::AcmeError::AccountNotFound(_)) => {}
        other => panic!(
            "the old key still finds an account: {:?}",
            other.map(|a| a.id().to_string())
        ),
    }
    let found = caas_operator::acme::load(&http, &pebble.directory_url, &new_key)
        .await
        .unwrap();
    assert_eq!(found.id(), uri);

    // A certificate from the rolled-over account, then revoked and renewed.
    let (_, chain) = issued(&client, &ns, "web", "pebble", json!({}), &operator).await;
    let first = pki::parse_chain(&chain).unwrap();
    let out = revoke_for_key_compromise(&ns, "web");
    assert!(out.contains(&first.serial));
    let (status, body) = caas_testbed::https_get(
        &format!(
            "{}/cert-status-by-serial/{}",
            pebble.management_url, first.serial
        ),
        &pebble.tls_ca_pem,
    )
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Revoked"),
        "Pebble reports the certificate revoked: {body}"
    );
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    let second = pki::parse_chain(&secret_text(
        &secret(&client, &ns, "web-tls").await,
        "tls.crt",
    ))
    .unwrap();
    assert_ne!(
        second.serial, first.serial,
        "a new certificate replaced the revoked one"
    );
    operator.assert_logs_free_of(&[&old_key, &new_key, &pebble.eab_hmac]);
}

#[tokio::test]
async fn fallback_issuer_when_the_primary_ca_is_down_and_back_to_primary_at_renewal() {
    // The primary CA behind a proxy that can make it unreachable; a second, separate CA.
    let bed = ProxiedBed::start("fallback", PebbleOptions::default()).await;
    let (client, ns) = (&bed.client, bed.ns.as_str());
    let backup = Pebble::start(PebbleOptions::default());
    bed.issuer(json!([{ "http01": {} }])).await;
    apply_secret(client, ns, "eab", &[("hmac", &backup.eab_hmac)]).await;
    // The backup validates over DNS-01 (the operator's HTTP-01 listener is on the
    // primary's validation port).
    let dns01 = rfc2136_solver(client, ns).await;
    issuer(client, ns, "backup", &backup, json!({ "solvers": [dns01] })).await;
    for name in ["ca", "backup"] {
        wait_issuer(
            client,
            ns,
            name,
            "True",
            "AccountRegistered",
            TIMEOUT,
            &bed.operator,
        )
        .await;
    }

    // The primary stops answering (every connection dropped).
    bed.proxy.set_rule(rule(|_: &Exchange| Some(Fault::Drop)));
    let name = format!("{}.{ZONE}", unique_name("fallback"));
    create_certificate(
        client,
        ns,
        "web",
        json!({
            "secretName": "web-tls", "issuerRef": { "name": "ca" },
            "fallbackIssuerRefs": [{ "name": "backup" }], "fallbackAfter": "5s",
            "dnsNames": [name]
        }),
    )
    .await;
    let ready = wait_cert_ready(
        client,
        ns,
        "web",
        "True",
        Some("Issued"),
        Duration::from_secs(90),
        &bed.operator,
    )
    .await;
    let status = ready.status.unwrap();
    assert_eq!(status.issued_by, Some("CaaSIssuer/backup".parse().unwrap()));
    let (_, _, message) = condition(&status.conditions, "Ready").unwrap();
    assert!(
        message.contains("fallback"),
        "Ready says a fallback issued it: {message}"
    );
    let chain = secret_text(&secret(client, ns, "web-tls").await, "tls.crt");
    verify_chain(&chain, &backup.issuance_root().await, &name).expect("issued by the backup CA");

    // The primary is back; the next renewal comes from it again.
    bed.proxy.clear_rule();
    let renew = json!({ "metadata": { "annotations": { "caas.dev/renew": "1" } } });
    Api::<caas_operator::api::Certificate>::namespaced(client.clone(), ns)
        .patch("web", &PatchParams::default(), &Patch::Merge(&renew))
        .await
        .unwrap();
    let renewed = wait_revision(client, ns, "web", 2, TIMEOUT, &bed.operator).await;
    assert_eq!(
        renewed.status.unwrap().issued_by,
        Some("CaaSIssuer/ca".parse().unwrap())
    );
    let chain = secret_text(&secret(client, ns, "web-tls").await, "tls.crt");
    verify_chain(&chain, &bed.pebble.issuance_root().await, &name)
        .expect("issued by the primary CA");
}

#[tokio::test]
async fn a_ca_that_refuses_not_after_gets_a_reason_naming_the_switch() {
    let bed = ProxiedBed::start("no-notafter", PebbleOptions::default()).await;
    let (client, ns) = (&bed.client, bed.ns.as_str());
    // An issuer that sends `duration` (enableDurationFeature: true) from the start.
    apply_secret(client, ns, "ca-eab", &[("hmac", &bed.pebble.eab_hmac)]).await;
    let issuer: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": "ca", "namespace": ns },
        "spec": {
            "server": bed.proxy.directory_url, "caBundle": bed.pebble.tls_ca_pem,
            "externalAccountBinding": { "keyID": bed.pebble.eab_kid, "keySecretRef": { "name": "ca-eab", "key": "hmac" } },
            "privateKeySecretRef": { "name": "ca-account" }, "enableDurationFeature": true,
            "solvers": [{ "http01": {} }]
        }
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .create(&Default::default(), &issuer)
        .await
        .unwrap();
    wait_issuer(
        client,
        ns,
        "ca",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &bed.operator,
    )
    .await;
    // What Let's Encrypt answers an order with notAfter.
    bed.proxy.set_rule(rule(|e: &Exchange| {
        (e.kind == Kind::NewOrder).then(|| Fault::Refuse {
            kind: "malformed".into(),
            detail: "NotBefore and NotAfter are not supported".into(),
        })
    }));
    create_certificate(
        client,
        ns,
        "web",
        json!({
            "secretName": "web-tls", "issuerRef": { "name": "ca" },
            "dnsNames": [format!("{}.{ZONE}", unique_name("lifetime"))], "duration": "48h"
        }),
    )
    .await;
    let cert = wait_cert_ready(
        client,
        ns,
        "web",
        "False",
        Some("DurationNotSupported"),
        TIMEOUT,
        &bed.operator,
    )
    .await;
    let (_, _, message) = condition(&cert.status.unwrap().conditions, "Ready").unwrap();
    assert!(
        message.contains("NotAfter are not supported")
            && message.contains("enableDurationFeature: true"),
        "the CA's words and the switch: {message}"
    );
}

#[tokio::test]
async fn a_rollover_the_ca_made_but_the_secret_missed_is_finished_not_registered_anew() {
    let (client, ns, pebble, operator) = setup(
        "rollover-pending",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let ready = wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let uri = ready.status.unwrap().account_uri.unwrap();
    let bindings = || {
        pebble
            .log()
            .matches("Successful newAccount Binding")
            .count()
    };
    let registered = bindings();

    // The CA switches the account to a new key; the Secret gets it only as tls.key.next
    // (as if the operator died between the key change and the swap).
    let old_key = secret_text(&secret(&client, &ns, "pebble-account").await, "tls.key");
    let http =
        caas_operator::acme::AcmeHttp::new(Some(&pebble.tls_ca_pem), Default::default()).unwrap();
    let old = caas_operator::acme::AccountKey::from_pem(&old_key).unwrap();
    let direct = caas_operator::acme::Direct::new(&http, &pebble.directory_url, old)
        .await
        .unwrap();
    assert_eq!(
        direct.find_account().await.unwrap().as_deref(),
        Some(uri.as_str())
    );
    let next = caas_operator::acme::AccountKey::generate().unwrap();
    let next_pem = next.to_pem();
    caas_testbed::register_secret(&next_pem);
    direct.key_change(&next).await.unwrap();
    let data = json!({ "data": { "tls.key.next": base64::engine::general_purpose::STANDARD.encode(&next_pem) } });
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "pebble-account",
            &PatchParams::default(),
            &Patch::Merge(&data),
        )
        .await
        .unwrap();
    let touch = json!({ "metadata": { "annotations": { "test/touch": "1" } } });
    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .patch("pebble", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();

    // The operator finds the account under the next key and finishes the swap.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let swapped = wait_for(
        "the swap",
        TIMEOUT,
        Some(&operator),
        || async { secrets.get("pebble-account").await.unwrap() },
        |s| {
            secret_text(s, "tls.key") == next_pem
                && !s.data.as_ref().unwrap().contains_key("tls.key.next")
        },
    )
    .await;
    assert_eq!(secret_text(&swapped, "tls.key"), next_pem);
    let ready = wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    assert_eq!(
        ready.status.unwrap().account_uri.as_deref(),
        Some(uri.as_str())
    );
    assert_eq!(bindings(), registered, "no account was registered anew");
    issued(&client, &ns, "after", "pebble", json!({}), &operator).await;
    operator.assert_logs_free_of(&[&old_key, &next_pem, &pebble.eab_hmac]);
}

/// `revoke --reason keyCompromise` on a Certificate with `rotationPolicy: Never`: the
/// renewal gets a new key (the compromised one is named in `caas.dev/compromised-key`),
/// and a later renewal keeps that new key, as `Never` says.
#[tokio::test]
async fn key_compromise_always_gets_a_new_key_even_with_rotation_never() {
    let (client, ns, _pebble, operator) = setup(
        "compromise",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let never = json!({ "privateKey": { "rotationPolicy": "Never" } });
    issued(&client, &ns, "web", "pebble", never, &operator).await;
    let key = |s: Secret| secret_text(&s, "tls.key");
    let first = key(secret(&client, &ns, "web-tls").await);
    // A plain renewal first: Never keeps the key.
    renew(&client, &ns, "web", "first").await;
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    assert_eq!(
        key(secret(&client, &ns, "web-tls").await),
        first,
        "Never keeps the key"
    );
    revoke_for_key_compromise(&ns, "web");
    wait_revision(&client, &ns, "web", 3, TIMEOUT, &operator).await;
    let second = key(secret(&client, &ns, "web-tls").await);
    assert_ne!(second, first, "a compromised key is never reused");
    let cert = Api::<Certificate>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    let named = cert.metadata.annotations.unwrap()["caas.dev/compromised-key"].clone();
    assert_eq!(named, pki::key_fingerprint(&first).unwrap());
    assert!(named.starts_with("sha256:") && !named.contains("PRIVATE"));
    // Later renewals keep the new key.
    renew(&client, &ns, "web", "after").await;
    wait_revision(&client, &ns, "web", 4, TIMEOUT, &operator).await;
    assert_eq!(key(secret(&client, &ns, "web-tls").await), second);
    operator.assert_logs_free_of(&[&first, &second]);
}
