//! How users meet the operator in production: annotated Ingresses, several replicas with
//! one leader, and metrics.

use std::time::Duration;

use caas_operator::api::Certificate;
use caas_testbed::{Pebble, PebbleOptions, free_port, shared_apiserver, unique_name};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn apply_ingress(
    client: &kube::Client,
    ns: &str,
    annotations: serde_json::Value,
    tls: serde_json::Value,
) {
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "shop", "namespace": ns, "annotations": annotations },
        "spec": {
            "ingressClassName": "nginx",
            "tls": tls,
            "rules": [{ "http": { "paths": [{ "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "shop", "port": { "number": 80 } } } }] } }]
        }
    });
    Api::<Ingress>::namespaced(client.clone(), ns)
        .patch(
            "shop",
            &PatchParams::apply("caas-tests").force(),
            &Patch::Apply(&ingress),
        )
        .await
        .expect("apply ingress");
}

async fn get_cert(certs: &Api<Certificate>, name: &str) -> Option<Certificate> {
    certs.get_opt(name).await.expect("get certificate")
}

#[tokio::test]
async fn annotated_ingress_gets_and_loses_its_certificate() {
    let (client, ns, _pebble, operator) = setup(
        "ingress",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);

    // A user's own Certificate for a Secret the Ingress will also name.
    let user_host = format!("{}.{ZONE}", unique_name("user"));
    create_certificate(
        &client,
        &ns,
        "user-tls",
        json!({
            "secretName": "user-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [user_host],
        }),
    )
    .await;

    let h1 = format!("{}.{ZONE}", unique_name("shop"));
    let h2 = format!("{}.{ZONE}", unique_name("www"));
    apply_ingress(
        &client,
        &ns,
        json!({ "caas.dev/issuer": "pebble", "caas.dev/duration": "2160h" }),
        json!([{ "hosts": [h1], "secretName": "shop-tls" }]),
    )
    .await;
    let cert = wait_cert_ready(
        &client,
        &ns,
        "shop-tls",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert_eq!(cert.spec.dns_names, vec![h1.clone()]);
    assert_eq!(cert.spec.duration.as_deref(), Some("2160h"));
    let owner = &cert.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Ingress", "shop")
    );
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("shop-tls")
        .await
        .unwrap();
    assert_eq!(
        caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt"))
            .unwrap()
            .dns_names,
        vec![h1.clone()]
    );

    // Changing the hosts reissues.
    apply_ingress(
        &client,
        &ns,
        json!({ "caas.dev/issuer": "pebble" }),
        json!([
            { "hosts": [h1, h2], "secretName": "shop-tls" },
            { "hosts": [format!("{}.{ZONE}", unique_name("clash"))], "secretName": "user-tls" }
        ]),
    )
    .await;
    wait_for(
        "revision 2 with both hosts",
        TIMEOUT,
        Some(&operator),
        || get_cert(&certs, "shop-tls"),
        |c| {
            c.as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.revision)
                == Some(2)
        },
    )
    .await;
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("shop-tls")
        .await
        .unwrap();
    let mut sans = caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt"))
        .unwrap()
        .dns_names;
    sans.sort();
    let mut want = vec![h1.clone(), h2.clone()];
    want.sort();
    assert_eq!(sans, want);

    // The user's Certificate is left alone, and the conflict is reported on the Ingress.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let conflict = wait_for(
        "a Conflict event on the Ingress",
        TIMEOUT,
        Some(&operator),
        || {
            let events = events.clone();
            async move { events.list(&Default::default()).await.unwrap().items }
        },
        |items: &Vec<Event>| {
            items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Conflict"))
        },
    )
    .await;
    let event = conflict
        .iter()
        .find(|e| e.reason.as_deref() == Some("Conflict"))
        .unwrap();
    assert_eq!(
        event.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("shop")
    );
    assert!(event.note.as_deref().unwrap_or("").contains("user-tls"));
    let user = get_cert(&certs, "user-tls").await.unwrap();
    assert_eq!(user.spec.dns_names, vec![user_host.clone()]);
    assert!(user.metadata.owner_references.is_none());

    // A Certificate the Ingress asks for and someone deletes is made again (its deletion
    // reaches the Ingress controller through the operator's one Certificate watch).
    let first_uid = get_cert(&certs, "shop-tls").await.unwrap().metadata.uid;
    certs
        .delete("shop-tls", &Default::default())
        .await
        .expect("delete shop-tls");
    wait_for(
        "shop-tls made again",
        TIMEOUT,
        Some(&operator),
        || get_cert(&certs, "shop-tls"),
        |c| {
            c.as_ref().is_some_and(|c| {
                c.metadata.uid != first_uid && c.metadata.deletion_timestamp.is_none()
            })
        },
    )
    .await;

    // Removing the annotation removes the Certificate it made, not the user's.
    apply_ingress(
        &client,
        &ns,
        json!({}),
        json!([{ "hosts": [h1, h2], "secretName": "shop-tls" }]),
    )
    .await;
    wait_for(
        "shop-tls deleted",
        TIMEOUT,
        Some(&operator),
        || get_cert(&certs, "shop-tls"),
        Option::is_none,
    )
    .await;
    assert!(get_cert(&certs, "user-tls").await.is_some());
}

async fn lease_holder(client: &kube::Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt("caas-operator")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn one_leader_reconciles_any_replica_answers_and_takeover_works() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "leader").await;
    let pebble = Pebble::start(PebbleOptions::default());

    // A leads; B starts second and owns the port Pebble validates HTTP-01 on.
    let mut a = Operator::start_with(api, &ns, free_port(), &["--lease-duration=6"]);
    wait_for(
        "A holds the Lease",
        TIMEOUT,
        Some(&a),
        || lease_holder(&client, &ns),
        |h| h.as_deref() == Some(a.identity().as_str()),
    )
    .await;
    let b = Operator::start_with(api, &ns, pebble.http_port, &["--lease-duration=6"]);

    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    let first = format!("{}.{ZONE}", unique_name("first"));
    create_certificate(
        &client,
        &ns,
        "first",
        json!({
            "secretName": "first-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [first],
        }),
    )
    .await;
    wait_cert_ready(&client, &ns, "first", "True", Some("Issued"), TIMEOUT, &a).await;
    assert_eq!(
        lease_holder(&client, &ns).await.as_deref(),
        Some(a.identity().as_str())
    );
    assert!(a.logs().contains("certificate issued"), "the leader issued");
    assert!(
        !b.logs().contains("certificate issued"),
        "the follower did not reconcile"
    );
    assert!(!b.logs().contains("acquired the Lease"));

    // Kill the leader: B takes over and issues the next Certificate.
    a.kill();
    wait_for(
        "B holds the Lease",
        TIMEOUT,
        Some(&b),
        || lease_holder(&client, &ns),
        |h| h.as_deref() == Some(b.identity().as_str()),
    )
    .await;
    let second = format!("{}.{ZONE}", unique_name("second"));
    create_certificate(
        &client,
        &ns,
        "second",
        json!({
            "secretName": "second-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [second],
        }),
    )
    .await;
    wait_cert_ready(&client, &ns, "second", "True", Some("Issued"), TIMEOUT, &b).await;
    assert!(b.logs().contains("acquired the Lease"));
}

/// The value of the first sample of `metric` whose labels contain all of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.starts_with(metric)
                && (l.as_bytes().get(metric.len()) == Some(&b'{')
                    || l.as_bytes().get(metric.len()) == Some(&b' '))
        })
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_describe_certificates_issuers_and_acme_traffic() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "metrics").await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = Operator::start(api, &ns, &pebble);
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
        "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("{}.{ZONE}", unique_name("m"))],
    }))
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
    let not_after: jiff::Timestamp = cert.status.unwrap().not_after.unwrap().0;

    let (status, body) = caas_testbed::http_get(operator.metrics_port, "/healthz").unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = caas_testbed::http_get(operator.metrics_port, "/readyz").unwrap();
    assert_eq!(status, 200);

    let text = operator.metrics();
    let name = "name=\"web\"";
    assert_eq!(
        sample(
            &text,
            "caas_certificate_expiration_timestamp_seconds",
            &[name]
        ),
        Some(not_after.as_second() as f64),
        "{text}"
    );
    assert_eq!(sample(&text, "caas_certificate_ready", &[name]), Some(1.0));
    let renewal = sample(&text, "caas_certificate_renewal_timestamp_seconds", &[name]).unwrap();
    assert!(
        renewal < not_after.as_second() as f64
            && renewal > jiff::Timestamp::now().as_second() as f64
    );
    assert_eq!(
        sample(
            &text,
            "caas_issuer_ready",
            &["name=\"pebble\"", "kind=\"CaaSIssuer\""]
        ),
        Some(1.0)
    );
    let issued = sample(&text, "caas_issuance_duration_seconds_count", &[]).unwrap();
    assert!(issued >= 1.0);
    let seconds = sample(&text, "caas_issuance_duration_seconds_sum", &[]).unwrap();
    assert!(seconds > 0.0 && seconds < 60.0, "issuance took {seconds} s");
    let new_orders = sample(
        &text,
        "caas_acme_requests_total",
        &["endpoint=\"order-plz\"", "status=\"201\""],
    );
    assert_eq!(new_orders, Some(1.0), "one new-order request: {text}");
    assert!(sample(&text, "caas_kube_api_requests_total", &[]).unwrap() > 5.0);
    assert!(
        sample(
            &text,
            "caas_reconcile_errors_total",
            &["controller=\"certificate\""]
        )
        .is_some(),
        "{text}"
    );

    // The chart's alerts and dashboard name only metrics this scrape has (a renamed
    // metric would silently break them), and promtool accepts every expression.
    let exprs = chart_monitoring_exprs();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for expr in &exprs {
        for metric in metric_names(expr) {
            let base = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| metric.strip_suffix(s))
                .unwrap_or(&metric);
            assert!(
                families.contains(&base) || families.contains(&metric.as_str()),
                "{metric} (in `{expr}`) is not exported: {families:?}"
            );
        }
    }
}

/// Every PromQL expression of the chart's PrometheusRule and Grafana dashboard (both
/// enabled), after `promtool check rules` accepted them all.
fn chart_monitoring_exprs() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(caas_testbed::tool("helm"))
        .args([
            "template",
            "x",
            "charts/caas-operator",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
        ])
        .current_dir(root)
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    let mut rules = None;
    let mut dashboard = None;
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let v = serde_json::Value::deserialize(doc).unwrap_or_default();
        match v["kind"].as_str() {
            Some("PrometheusRule") => rules = Some(v["spec"].clone()),
            Some("ConfigMap") if v["data"]["caas-operator.json"].is_string() => {
                let json = v["data"]["caas-operator.json"].as_str().unwrap();
                dashboard =
                    Some(serde_json::from_str::<serde_json::Value>(json).expect("dashboard JSON"));
            }
            _ => {}
        }
    }
    let rules = rules.expect("a PrometheusRule when enabled");
    let dashboard = dashboard.expect("a dashboard ConfigMap when enabled");
    let mut exprs: Vec<String> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    let panels: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    // promtool: the alerts as they are, the dashboard's queries as recording rules.
    let dir = caas_testbed::scratch_dir("promtool");
    let alerts = dir.join("alerts.yaml");
    std::fs::write(&alerts, serde_yaml::to_string(&rules).unwrap()).unwrap();
    let recorded: Vec<serde_json::Value> = panels
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "record": format!("caas:dashboard_query_{i}"), "expr": e }))
        .collect();
    let queries = dir.join("dashboard.yaml");
    std::fs::write(
        &queries,
        serde_yaml::to_string(&json!({ "groups": [{ "name": "dashboard", "rules": recorded }] }))
            .unwrap(),
    )
    .unwrap();
    let check = std::process::Command::new(caas_testbed::tool("promtool"))
        .args(["check", "rules"])
        .arg(&alerts)
        .arg(&queries)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    exprs.extend(panels);
    exprs
}

/// The `caas_*` metric names an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("caas_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// `--accept-cert-manager-annotations`: an Ingress still annotated for cert-manager gets
/// its certificate from the CaaSIssuer of the same name.
#[tokio::test]
async fn cert_manager_annotations_are_honoured_when_accepted() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "cm-annotations").await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = Operator::start_with(
        api,
        &ns,
        pebble.http_port,
        &["--accept-cert-manager-annotations"],
    );
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    let host = format!("{}.{ZONE}", unique_name("cm"));
    apply_ingress(
        &client,
        &ns,
        json!({ "cert-manager.io/issuer": "pebble", "cert-manager.io/private-key-algorithm": "RSA" }),
        json!([{ "hosts": [host], "secretName": "shop-tls" }]),
    )
    .await;
    let cert = wait_cert_ready(
        &client,
        &ns,
        "shop-tls",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    assert_eq!(cert.spec.issuer_ref.name, "pebble");
    assert_eq!(cert.spec.dns_names, vec![host]);
    let key = serde_json::to_value(&cert.spec.private_key).unwrap();
    assert_eq!(key["algorithm"], "RSA");
}

/// Start-up errors are one line on stderr, naming what is missing and the flag that
/// changes it; never a backtrace (even with RUST_BACKTRACE set).
#[tokio::test]
async fn start_up_errors_are_one_line() {
    let api = shared_apiserver();
    let run = |kubeconfig: &std::path::Path, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_caas-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_BACKTRACE", "1")
            .args([
                "run",
                "--http01-addr=127.0.0.1:0",
                "--tls-alpn01-addr=127.0.0.1:0",
                "--metrics-addr=127.0.0.1:0",
            ])
            .args(extra)
            .output()
            .expect("run caas-operator");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let missing = format!("--cluster-resource-namespace={}", unique_name("nowhere"));
    let err = run(&api.kubeconfig, &[&missing]);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("caas-operator: the namespace")
            && err.contains("does not exist")
            && err.contains("--cluster-resource-namespace")
            && err.contains("kubectl create namespace"),
        "{err}"
    );
    let err = run(std::path::Path::new("/nonexistent/kubeconfig"), &[]);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("no Kubernetes API server") && err.contains("KUBECONFIG"),
        "{err}"
    );
    assert!(
        !err.contains("backtrace") && !err.contains("panicked"),
        "{err}"
    );
}

/// The operator's event publisher against the API server: a repeat joins the first
/// Event's series (one object, `series.count` 2), anything else is an Event of its own.
#[tokio::test]
async fn repeated_events_become_one_series() {
    use caas_operator::shared::events::Recorder;
    use kube::runtime::events::{Event as Publish, EventType};
    let api = shared_apiserver();
    let client = api.client().await;
    let ns = api.namespace(&client, "events").await;
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("caas.dev/v1alpha1".into()),
        kind: Some("Certificate".into()),
        namespace: Some(ns.clone()),
        name: Some("web".into()),
        uid: Some("2f0e2c58-0000-4000-8000-000000000001".into()),
        resource_version: Some("7".into()),
        ..Default::default()
    };
    let ev = |reason: &str| Publish {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(format!("{reason} happened")),
        action: "Issue".into(),
        secondary: None,
    };
    let recorder = Recorder::new(client.clone(), "caas-operator", None);
    recorder.publish(&ev("Failed"), &regarding).await.unwrap();
    recorder.publish(&ev("Failed"), &regarding).await.unwrap();
    recorder.publish(&ev("Other"), &regarding).await.unwrap();
    let mut events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    events.sort_by_key(|e| e.reason.clone());
    let summary: Vec<(Option<String>, Option<i32>, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e.reason.clone(),
                e.series.as_ref().map(|s| s.count),
                e.reporting_controller.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("Failed".into()), Some(2), Some("caas-operator".into())),
            (Some("Other".into()), None, Some("caas-operator".into())),
        ]
    );
    assert_eq!(events[0].note.as_deref(), Some("Failed happened"));
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
}
