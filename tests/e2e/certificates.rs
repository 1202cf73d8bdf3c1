//! The core path against the real test bed: a `CaaSIssuer` with EAB and a `Certificate`
//! become a correct TLS Secret, over HTTP-01 and over RFC 2136 DNS-01; issuer failures
//! are reported and recover; a killed operator resumes its order; bad Certificates are
//! reported without stopping the others; and no secret ever reaches the logs.

use std::collections::BTreeSet;
use std::time::Duration;

use caas_operator::api::{CaaSIssuer, Certificate};
use caas_testbed::{Pebble, PebbleOptions, shared_apiserver, shared_bind, unique_name};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Records the names of objects with the HTTP-01 solver label that appear in `ns`.
fn watch_solver_objects<K>(
    client: &kube::Client,
    ns: &str,
    want: usize,
) -> tokio::task::JoinHandle<BTreeSet<String>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().labels("caas.dev/component=http01-solver");
    // Every object made until at least `want` were made and all of them are gone again.
    tokio::spawn(async move {
        let (mut seen, mut gone) = (BTreeSet::new(), BTreeSet::new());
        let mut stream = watcher(api, cfg).boxed();
        while let Ok(Some(Ok(event))) = tokio::time::timeout(TIMEOUT, stream.next()).await {
            match event {
                watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                    seen.insert(obj.meta().name.clone().unwrap_or_default());
                }
                watcher::Event::Delete(obj) => {
                    gone.insert(obj.meta().name.clone().unwrap_or_default());
                }
                _ => {}
            }
            if seen.len() >= want && seen.is_subset(&gone) {
                break;
            }
        }
        seen
    })
}

#[tokio::test]
async fn http01_issues_a_two_name_certificate() {
    let (client, ns, pebble, operator) = setup(
        "http01",
        PebbleOptions::default(),
        json!([{ "http01": { "ingress": { "ingressClassName": "nginx" } } }]),
    )
    .await;
    wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;

    let ingresses = watch_solver_objects::<Ingress>(&client, &ns, 2);
    let services = watch_solver_objects::<Service>(&client, &ns, 1);
    let endpoints = watch_solver_objects::<Endpoints>(&client, &ns, 1);
    tokio::time::sleep(Duration::from_millis(300)).await; // watches established

    let names = [
        format!("{}.{ZONE}", unique_name("a")),
        format!("{}.{ZONE}", unique_name("b")),
    ];
    create_certificate(
        &client,
        &ns,
        "web",
        json!({
            "secretName": "web-tls",
            "issuerRef": { "name": "pebble" },
            "dnsNames": names,
        }),
    )
    .await;
    let cert = wait_cert_ready(
        &client,
        &ns,
        "web",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let status = cert.status.clone().unwrap();
    assert_eq!(status.revision, Some(1));
    assert!(status.not_after.is_some() && status.renewal_time.is_some());
    assert!(
        status.order.is_none(),
        "the finished order is cleared from status"
    );

    // The Secret: chain verifies against Pebble's root, key matches, SANs exact.
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("web-tls")
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let chain = secret_text(&secret, "tls.crt");
    let key = secret_text(&secret, "tls.key");
    let root = pebble.issuance_root().await;
    for name in &names {
        verify_chain(&chain, &root, name)
            .unwrap_or_else(|e| panic!("chain does not verify for {name}: {e}"));
    }
    let info = caas_operator::pki::parse_chain(&chain).unwrap();
    assert!(info.chain_len >= 2, "tls.crt holds the leaf and its chain");
    assert!(caas_operator::pki::key_matches(&key, &info));
    let mut sans = info.dns_names.clone();
    sans.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(sans, want);
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("caas.dev/certificate-name")
            .map(String::as_str),
        Some("web")
    );
    assert_eq!(annotations.get("caas.dev/serial"), Some(&info.serial));

    // The CA's requests reached the answers through the temporary Ingress -> Service ->
    // Endpoints (the ingress data plane stand-in follows them from the API server).
    let routed = operator.data_plane.routed();
    for name in &names {
        assert!(
            routed
                .iter()
                .any(|r| &r.host == name && r.via.starts_with("Ingress ") && r.status == 200),
            "no validation of {name} routed through an Ingress: {routed:?}"
        );
    }

    // The temporary objects existed during the challenges, and none are left.
    for (kind, seen) in [
        ("Ingress", ingresses),
        ("Service", services),
        ("Endpoints", endpoints),
    ] {
        let seen = seen.await.unwrap();
        // A route per challenge; one Service (and Endpoints) for the namespace.
        let want = if kind == "Ingress" { 2 } else { 1 };
        assert_eq!(
            seen.len(),
            want,
            "temporary {kind}s: one per challenge, or one shared; saw {seen:?}"
        );
    }
    let lp = ListParams::default().labels("caas.dev/component=http01-solver");
    assert!(
        Api::<Ingress>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<Service>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<Endpoints>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt("web-next-key")
            .await
            .unwrap()
            .is_none(),
        "the pending key Secret is removed once the TLS Secret is written"
    );

    let lifetime = info.not_after.duration_since(info.not_before);
    assert!(
        (lifetime.as_hours() - 90 * 24).abs() <= 1,
        "Pebble's configured 90-day validity: {lifetime:#}"
    );

    // Changing dnsNames reissues; the Secret is replaced by a complete successor.
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    certs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "dnsNames": [names[0]] } })),
        )
        .await
        .unwrap();
    let cert = wait_for(
        "revision 2 after changing dnsNames",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("web").await.unwrap() }
        },
        |c: &Certificate| c.status.as_ref().and_then(|s| s.revision) == Some(2),
    )
    .await;
    assert_eq!(
        condition(&cert.status.unwrap().conditions, "Ready")
            .unwrap()
            .0,
        "True"
    );
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("web-tls")
        .await
        .unwrap();
    let reissued = caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt")).unwrap();
    assert_eq!(reissued.dns_names, vec![names[0].clone()]);
    assert_ne!(reissued.serial, info.serial);
    let new_key = secret_text(&secret, "tls.key");
    assert!(caas_operator::pki::key_matches(&new_key, &reissued));
    assert_ne!(
        new_key, key,
        "rotationPolicy Always (the default) makes a new key"
    );

    let account_key = secret_text(
        &Api::<Secret>::namespaced(client.clone(), &ns)
            .get("pebble-account")
            .await
            .unwrap(),
        "tls.key",
    );
    operator.assert_logs_free_of(&[&pebble.eab_hmac, &account_key, &key, &new_key]);
}

#[tokio::test]
async fn dns01_issues_wildcard_and_apex_and_removes_txt_records() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "dns01").await;
    let pebble = Pebble::start(PebbleOptions {
        env: vec![("PEBBLE_AUTHZREUSE".into(), "0".into())],
        ..Default::default()
    });
    let operator = Operator::start(api, &ns, &pebble);
    let solver = rfc2136_solver(&client, &ns).await;
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([solver]),
    )
    .await;
    wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;

    let apex = format!("{}.{ZONE}", unique_name("wild"));
    let wildcard = format!("*.{apex}");
    create_certificate(
        &client,
        &ns,
        "wild",
        json!({
            "secretName": "wild-tls",
            "issuerRef": { "name": "pebble" },
            "dnsNames": [wildcard, apex],
        }),
    )
    .await;
    wait_cert_ready(
        &client,
        &ns,
        "wild",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("wild-tls")
        .await
        .unwrap();
    let info = caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt")).unwrap();
    let sans: BTreeSet<String> = info.dns_names.into_iter().collect();
    assert_eq!(sans, BTreeSet::from([wildcard.clone(), apex.clone()]));
    verify_chain(
        &secret_text(&secret, "tls.crt"),
        &pebble.issuance_root().await,
        &format!("www.{apex}"),
    )
    .unwrap();

    let txt = shared_bind().dig(&format!("_acme-challenge.{apex}"), "TXT");
    assert!(txt.is_empty(), "TXT records left in BIND: {txt:?}");
    operator.assert_logs_free_of(&[
        &pebble.eab_hmac,
        &shared_bind().tsig_secret,
        &secret_text(&secret, "tls.key"),
    ]);
}

#[tokio::test]
async fn issuer_reports_eab_rejection_recovers_and_shares_accounts() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "issuer").await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = Operator::start(api, &ns, &pebble);

    // A wrong HMAC (well-formed, not the CA's).
    let wrong = "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZS1mb3ItdGhpcy1jYQ";
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        wrong,
        json!([{ "http01": {} }]),
    )
    .await;
    let issuer = wait_issuer(
        &client,
        &ns,
        "pebble",
        "False",
        "EABRejected",
        TIMEOUT,
        &operator,
    )
    .await;
    let (_, _, message) = condition(&issuer.status.unwrap().conditions, "Ready").unwrap();
    assert!(
        message.contains("External Account Binding"),
        "message names EAB: {message}"
    );
    assert!(
        message.len() > "the CA rejected the External Account Binding: ".len() + 5,
        "message carries the CA's words: {message}"
    );

    // Fix the Secret: Ready without restarting the operator.
    apply_secret(&client, &ns, "pebble-eab", &[("hmac", &pebble.eab_hmac)]).await;
    let issuer = wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let uri = issuer
        .status
        .unwrap()
        .account_uri
        .expect("account URI in status");
    assert!(uri.starts_with("https://127.0.0.1:"));

    // A second issuer with the same account key Secret gets the same account.
    let second: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": "second", "namespace": ns },
        "spec": {
            "server": pebble.directory_url, "caBundle": pebble.tls_ca_pem,
            "privateKeySecretRef": { "name": "pebble-account" },
            "solvers": [{ "http01": {} }]
        }
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &second)
        .await
        .unwrap();
    let second = wait_issuer(
        &client,
        &ns,
        "second",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    assert_eq!(
        second.status.unwrap().account_uri.as_deref(),
        Some(uri.as_str())
    );

    // A missing EAB Secret and a bad server are reported with their own reasons.
    let missing: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": "missing", "namespace": ns },
        "spec": {
            "server": pebble.directory_url, "caBundle": pebble.tls_ca_pem,
            "externalAccountBinding": { "keyID": pebble.eab_kid, "keySecretRef": { "name": "nope", "key": "hmac" } },
            "privateKeySecretRef": { "name": "missing-account" }
        }
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &missing)
        .await
        .unwrap();
    wait_issuer(
        &client,
        &ns,
        "missing",
        "False",
        "SecretNotFound",
        TIMEOUT,
        &operator,
    )
    .await;
    let unreachable: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": "unreachable", "namespace": ns },
        "spec": { "server": "https://127.0.0.1:1/dir", "privateKeySecretRef": { "name": "u-account" } }
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &unreachable)
        .await
        .unwrap();
    wait_issuer(
        &client,
        &ns,
        "unreachable",
        "False",
        "ServerUnreachable",
        TIMEOUT,
        &operator,
    )
    .await;
    let invalid: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": "invalid", "namespace": ns },
        "spec": { "server": "https://ca.example/dir", "caBundle": "not PEM", "privateKeySecretRef": { "name": "i-account" } }
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &invalid)
        .await
        .unwrap();
    wait_issuer(
        &client,
        &ns,
        "invalid",
        "False",
        "InvalidSpec",
        TIMEOUT,
        &operator,
    )
    .await;

    operator.assert_logs_free_of(&[&pebble.eab_hmac, wrong]);
}

/// Counts new-order requests in Pebble's log.
/// Whether the HTTP-01 data plane (port `port`) answers `path` for host `name` with `key`.
async fn served(port: u16, name: &str, path: &str, key: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).await.is_ok()
        && stream.read_to_string(&mut response).await.is_ok()
        && response.split_whitespace().nth(1) == Some("200")
        && response.ends_with(key)
}

fn new_orders(pebble: &Pebble) -> usize {
    pebble
        .log()
        .lines()
        .filter(|l| l.contains("/order-plz"))
        .count()
}

#[tokio::test]
async fn killed_operator_resumes_the_same_order() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "resume").await;
    // A CA that takes its time to validate (0-15 s), so the kill lands mid-order. No
    // injected bad nonces: a new-order resent after one would count twice below.
    let pebble = Pebble::start(PebbleOptions {
        va_nosleep: false,
        env: vec![("PEBBLE_WFE_NONCEREJECT".into(), "0".into())],
        ..Default::default()
    });
    let mut operator = Operator::start(api, &ns, &pebble);
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let before = new_orders(&pebble);

    let name = format!("{}.{ZONE}", unique_name("resume"));
    create_certificate(
        &client,
        &ns,
        "resume",
        json!({
            "secretName": "resume-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name],
        }),
    )
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let cert = wait_for(
        "the order URL in status",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("resume").await.unwrap() }
        },
        |c: &Certificate| {
            c.status
                .as_ref()
                .and_then(|s| s.order.as_ref())
                .is_some_and(|o| !o.challenges.is_empty())
        },
    )
    .await;
    // Pebble is frozen across the restart: a validation it started before the kill must
    // not run while no operator answers (the order would rightly go invalid and a new one
    // follow, which is not what this test is about; a loaded machine makes the restart
    // slow enough for that). It goes on once the new operator serves the answer, or at
    // once when the first one never published it (then nothing was asked to validate).
    pebble.pause();
    operator.kill();
    let order = cert.status.unwrap().order.unwrap();
    assert_ne!(
        order.state, "valid",
        "the kill must land before the order is valid"
    );

    operator.restart();
    let challenge = &order.challenges[0];
    let answer = format!("/.well-known/acme-challenge/{}", challenge.token);
    let started = std::time::Instant::now();
    let port = operator.http01_port;
    let answered = wait_until(
        Duration::from_secs(20),
        || served(port, &name, &answer, &challenge.key),
        |served| *served,
    )
    .await;
    let waited = started.elapsed();
    println!(
        "answer served: {}, after {waited:?}; Pebble resumes",
        answered.is_ok()
    );
    pebble.resume();
    let cert = wait_cert_ready(
        &client,
        &ns,
        "resume",
        "True",
        Some("Issued"),
        Duration::from_secs(90),
        &operator,
    )
    .await;
    assert_eq!(cert.status.unwrap().revision, Some(1));
    let orders = new_orders(&pebble) - before;
    if orders != 1 {
        let pick = |log: String, words: &[&str]| -> String {
            log.lines()
                .filter(|l| words.iter().any(|w| l.contains(w)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let ca = pick(pebble.log(), &["order", "authz", "chalZ", "valid"]);
        let ours = pick(operator.logs(), &["order", "resum", "issu", "challenge"]);
        panic!("the CA saw {orders} new-order requests, not 1\nPebble:\n{ca}\noperator:\n{ours}");
    }
}

#[tokio::test]
async fn bad_certificates_are_reported_and_others_still_issue() {
    let (client, ns, _pebble, operator) =
        setup("bad", PebbleOptions::default(), json!([{ "http01": {} }])).await;

    create_certificate(
        &client,
        &ns,
        "no-names",
        json!({ "secretName": "a", "issuerRef": { "name": "pebble" } }),
    )
    .await;
    create_certificate(&client, &ns, "no-issuer", json!({
        "secretName": "b", "issuerRef": { "name": "does-not-exist" }, "dnsNames": [format!("x.{ZONE}")],
    }))
    .await;
    create_certificate(&client, &ns, "bad-name", json!({
        "secretName": "c", "issuerRef": { "name": "pebble" }, "dnsNames": ["under_score.acc.test"],
    }))
    .await;
    create_certificate(&client, &ns, "wildcard-http", json!({
        "secretName": "d", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("*.{}.{ZONE}", unique_name("w"))],
    }))
    .await;
    let good = format!("{}.{ZONE}", unique_name("good"));
    create_certificate(
        &client,
        &ns,
        "good",
        json!({
            "secretName": "good-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [good],
        }),
    )
    .await;

    wait_cert_ready(
        &client,
        &ns,
        "good",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let c = wait_cert_ready(
        &client,
        &ns,
        "no-names",
        "False",
        Some("InvalidSpec"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert!(
        condition(&c.status.unwrap().conditions, "Ready")
            .unwrap()
            .2
            .contains("dnsNames")
    );
    let c = wait_cert_ready(
        &client,
        &ns,
        "no-issuer",
        "False",
        Some("IssuerNotFound"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert!(
        condition(&c.status.unwrap().conditions, "Ready")
            .unwrap()
            .2
            .contains("does-not-exist")
    );
    let c = wait_cert_ready(
        &client,
        &ns,
        "bad-name",
        "False",
        Some("InvalidSpec"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert!(
        condition(&c.status.unwrap().conditions, "Ready")
            .unwrap()
            .2
            .contains("under_score")
    );
    let c = wait_cert_ready(
        &client,
        &ns,
        "wildcard-http",
        "False",
        Some("NoSolver"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert!(
        condition(&c.status.unwrap().conditions, "Ready")
            .unwrap()
            .2
            .contains("dns01")
    );
}

/// The issuer controller and the certificate controller share one issuer watch: a
/// deleted issuer must still wake its Certificates (a valid one is requeued only at its
/// renewal time, hours away), which then say so.
#[tokio::test]
async fn deleting_the_issuer_is_reported_on_its_certificates_at_once() {
    let (client, ns, _pebble, operator) = setup(
        "issuer-gone",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    wait_issuer(
        &client,
        &ns,
        "pebble",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let name = format!("{}.{ZONE}", unique_name("gone"));
    create_certificate(
        &client,
        &ns,
        "orphaned",
        json!({ "secretName": "orphaned-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] }),
    )
    .await;
    wait_cert_ready(
        &client,
        &ns,
        "orphaned",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;

    Api::<CaaSIssuer>::namespaced(client.clone(), &ns)
        .delete("pebble", &Default::default())
        .await
        .unwrap();
    let cert = wait_cert_ready(
        &client,
        &ns,
        "orphaned",
        "False",
        Some("IssuerNotFound"),
        Duration::from_secs(30),
        &operator,
    )
    .await;
    let ready = cert.status.unwrap().conditions;
    assert!(
        ready
            .iter()
            .any(|c| c.message.contains("\"pebble\" does not exist")),
        "{ready:?}"
    );
}
