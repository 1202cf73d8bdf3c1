//! Delivering the certificate where it is used: HTTP-01 through a Gateway API HTTPRoute,
//! annotated Gateways, rolling restarts after renewals, notifications, and the
//! `Expiring` warning, against the real API server and Pebble.

use std::time::Duration;

use caas_operator::api::Certificate;
use caas_operator::api::gateway::HTTPRoute;
use caas_testbed::acme_proxy::Kind;
use caas_testbed::{
    AcmeProxy, Fault, Pebble, PebbleOptions, WebhookReceiver, shared_apiserver, unique_name,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Applies a Gateway (the test CRD) as a user would.
async fn apply_gateway(client: &kube::Client, ns: &str, gateway: serde_json::Value) {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let name = gateway["metadata"]["name"].as_str().unwrap().to_string();
    let obj: DynamicObject = serde_json::from_value(gateway).unwrap();
    api.patch(
        &name,
        &PatchParams::apply("caas-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .expect("apply Gateway");
}

fn https_listener(name: &str, host: &str, secret: &str) -> serde_json::Value {
    json!({ "name": name, "hostname": host, "port": 443, "protocol": "HTTPS",
            "tls": { "mode": "Terminate", "certificateRefs": [{ "kind": "Secret", "name": secret }] } })
}

/// Waits for events about object `name` with `reason`; returns their notes.
async fn wait_event_notes(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    operator: &Operator,
) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("a {reason} event about {name}"),
        TIMEOUT,
        Some(operator),
        || {
            let events = events.clone();
            async move {
                events
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                    .filter(|e| e.reason.as_deref() == Some(reason))
                    .filter_map(|e| e.note)
                    .collect::<Vec<_>>()
            }
        },
        |notes| !notes.is_empty(),
    )
    .await
}

#[tokio::test]
async fn http01_through_a_temporary_httproute_on_the_gateway() {
    let solvers = json!([{ "http01": { "gatewayHTTPRoute": {
        "parentRefs": [{ "name": "edge", "sectionName": "http" }],
        "labels": { "team": "web" }
    } } }]);
    let (client, ns, _pebble, operator) = setup("route", PebbleOptions::default(), solvers).await;
    apply_gateway(
        &client,
        &ns,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "name": "edge", "namespace": ns },
            "spec": { "gatewayClassName": "test", "listeners": [
                { "name": "http", "port": 80, "protocol": "HTTP" }
            ] }
        }),
    )
    .await;
    // Every HTTPRoute the operator writes, as written.
    let routes: Api<HTTPRoute> = Api::namespaced(client.clone(), &ns);
    let (listed, watching) = tokio::sync::oneshot::channel::<()>();
    let watched = {
        let routes = routes.clone();
        tokio::spawn(async move {
            let mut listed = Some(listed);
            let mut stream = watcher(routes, watcher::Config::default()).boxed();
            let first = async {
                while let Some(Ok(event)) = stream.next().await {
                    match event {
                        watcher::Event::InitDone => {
                            if let Some(tx) = listed.take() {
                                let _ = tx.send(());
                            }
                        }
                        watcher::Event::Apply(r) | watcher::Event::InitApply(r) => return vec![r],
                        _ => {}
                    }
                }
                Vec::new()
            };
            tokio::time::timeout(TIMEOUT, first)
                .await
                .unwrap_or_default()
        })
    };
    // The watch has listed: no route the operator writes from now on can be missed.
    tokio::time::timeout(TIMEOUT, watching)
        .await
        .expect("the HTTPRoute watch lists within the timeout")
        .expect("the watch task is running");
    let name = format!("{}.{ZONE}", unique_name("route"));
    create_certificate(
        &client,
        &ns,
        "web",
        json!({ "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] }),
    )
    .await;
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

    let seen = watched.await.unwrap();
    let route = seen.first().expect("the operator wrote an HTTPRoute");
    let spec = serde_json::to_value(&route.spec).unwrap();
    assert_eq!(
        spec["parentRefs"],
        json!([{ "name": "edge", "sectionName": "http" }])
    );
    assert_eq!(spec["hostnames"], json!([name]));
    let rule = &spec["rules"][0];
    assert_eq!(rule["matches"][0]["path"]["type"], "Exact");
    let path = rule["matches"][0]["path"]["value"].as_str().unwrap();
    assert!(path.starts_with("/.well-known/acme-challenge/") && path.len() > 40);
    assert_eq!(rule["backendRefs"][0]["port"], 8089);
    let labels = route.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(
        labels.get("caas.dev/component").map(String::as_str),
        Some("http01-solver")
    );
    let owner = &route.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Certificate", "web")
    );

    // Pebble's request went through the route (the data plane stand-in follows it), not
    // through an Ingress.
    let routed = operator.data_plane.routed();
    assert!(
        routed.iter().any(|r| r.host == name
            && r.path == path
            && r.via.starts_with("HTTPRoute ")
            && r.status == 200),
        "the CA's request was not routed through the HTTPRoute: {routed:?}"
    );
    assert!(!routed.iter().any(|r| r.via.starts_with("Ingress ")));
    // And the route is gone.
    wait_for(
        "the temporary HTTPRoute deleted",
        TIMEOUT,
        Some(&operator),
        || {
            let routes = routes.clone();
            async move { routes.list(&Default::default()).await.unwrap().items.len() }
        },
        |n| *n == 0,
    )
    .await;
}

#[tokio::test]
async fn annotated_gateway_keeps_a_certificate_per_tls_listener_secret() {
    let (client, ns, _pebble, operator) = setup(
        "gateway",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let [a, b, c] = ["a", "b", "c"].map(|p| format!("{}.{ZONE}", unique_name(p)));
    let gateway = |listeners: serde_json::Value| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "name": "web", "namespace": ns,
                          "annotations": { "caas.dev/issuer": "pebble", "caas.dev/private-key-algorithm": "RSA" } },
            "spec": { "gatewayClassName": "test", "listeners": listeners }
        })
    };
    apply_gateway(
        &client,
        &ns,
        gateway(json!([
            { "name": "http", "port": 80, "protocol": "HTTP" },
            https_listener("https-a", &a, "a-tls"),
            https_listener("https-b", &b, "b-tls"),
        ])),
    )
    .await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    for (secret, host) in [("a-tls", &a), ("b-tls", &b)] {
        let cert = wait_cert_ready(
            &client,
            &ns,
            secret,
            "True",
            Some("Issued"),
            TIMEOUT,
            &operator,
        )
        .await;
        assert_eq!(cert.spec.dns_names, vec![host.clone()]);
        assert_eq!(cert.spec.secret_name, secret);
        let owner = &cert.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Gateway", "web")
        );
        assert_eq!(
            cert.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("caas.dev/gateway"),
            Some(&"web".to_string())
        );
        let tls = Api::<Secret>::namespaced(client.clone(), &ns)
            .get(secret)
            .await
            .unwrap();
        assert!(secret_text(&tls, "tls.key").contains("BEGIN PRIVATE KEY"));
    }

    // The listeners change: b goes, a gets another hostname.
    apply_gateway(
        &client,
        &ns,
        gateway(json!([
            { "name": "http", "port": 80, "protocol": "HTTP" },
            https_listener("https-a", &c, "a-tls"),
        ])),
    )
    .await;
    wait_for(
        "b-tls's Certificate deleted",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get_opt("b-tls").await.unwrap() }
        },
        |c| c.is_none(),
    )
    .await;
    let renamed = wait_revision(&client, &ns, "a-tls", 2, TIMEOUT, &operator).await;
    assert_eq!(renamed.spec.dns_names, vec![c]);

    // a's listener loses its hostname and a new one comes: the new one is served, a's
    // is reported, and a's Certificate (and Secret) are kept.
    let d = format!("{}.{ZONE}", unique_name("d"));
    let mut hostless = https_listener("https-a", "x", "a-tls");
    hostless.as_object_mut().unwrap().remove("hostname");
    apply_gateway(
        &client,
        &ns,
        gateway(json!([
            { "name": "http", "port": 80, "protocol": "HTTP" },
            hostless,
            https_listener("https-d", &d, "d-tls"),
        ])),
    )
    .await;
    wait_cert_ready(
        &client,
        &ns,
        "d-tls",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let notes = wait_event_notes(&client, &ns, "web", "InvalidListener", &operator).await;
    assert!(
        notes[0].contains("\"https-a\" has no hostname") && notes[0].contains("a-tls"),
        "{notes:?}"
    );
    let kept = certs.get_opt("a-tls").await.unwrap();
    assert!(
        kept.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
        "a's Certificate is kept"
    );
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt("a-tls")
        .await
        .unwrap();
    assert!(
        secret.is_some_and(|s| s.metadata.deletion_timestamp.is_none()),
        "a's Secret is kept"
    );
}

/// A Deployment with `caas.dev/restart-on-renew`.
async fn deployment(client: &kube::Client, ns: &str, name: &str, restart_on: Option<&str>) {
    let annotations = match restart_on {
        Some(s) => json!({ "caas.dev/restart-on-renew": s }),
        None => json!({}),
    };
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": ns, "annotations": annotations },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": "nginx" }] }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&Default::default(), &d)
        .await
        .expect("create Deployment");
}

fn restarted_at(d: &Deployment) -> Option<jiff::Timestamp> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("kubectl.kubernetes.io/restartedAt")?
        .parse()
        .ok()
}

#[tokio::test]
async fn restart_on_renew_restarts_annotated_workloads_once_per_renewal() {
    let (client, ns, _pebble, operator) = setup(
        "restart",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    deployment(&client, &ns, "app", Some("other-tls, app-tls")).await;
    deployment(&client, &ns, "bystander", None).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let name = format!("{}.{ZONE}", unique_name("app"));
    create_certificate(
        &client,
        &ns,
        "app",
        json!({ "secretName": "app-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] }),
    )
    .await;
    wait_revision(&client, &ns, "app", 1, TIMEOUT, &operator).await;
    let renew = || async {
        let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": jiff::Timestamp::now().to_string() } } });
        certs
            .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    };
    let generation = |n: i64| {
        let deployments = deployments.clone();
        async move {
            wait_for(
                &format!("Deployment app at generation {n}"),
                Duration::from_secs(100),
                None,
                || {
                    let deployments = deployments.clone();
                    async move { deployments.get("app").await.unwrap() }
                },
                |d| d.metadata.generation >= Some(n),
            )
            .await
        }
    };

    // First renewal: one restart (generation 1 -> 2; a restart at the first issuance
    // would have made it 3).
    renew().await;
    wait_revision(&client, &ns, "app", 2, TIMEOUT, &operator).await;
    let first = generation(2).await;
    let first_at = restarted_at(&first).expect("restartedAt set");
    let serial = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("app-tls")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap()["caas.dev/serial"]
        .clone();
    let notes = wait_event_notes(&client, &ns, "app", "RestartedOnRenew", &operator).await;
    assert!(
        notes[0].contains("app-tls") && notes[0].contains(&serial),
        "the event names the Secret and serial {serial}: {notes:?}"
    );

    // A second renewal within the minute: delayed to a minute after the first restart,
    // not dropped.
    renew().await;
    wait_revision(&client, &ns, "app", 3, TIMEOUT, &operator).await;
    let second = generation(3).await;
    let second_at = restarted_at(&second).expect("restartedAt set");
    let gap = second_at.duration_since(first_at);
    assert!(
        gap >= jiff::SignedDuration::from_secs(59),
        "restarts {gap:#} apart (at most one a minute)"
    );
    assert_eq!(
        second.metadata.generation,
        Some(3),
        "one restart per renewal"
    );
    let bystander = deployments.get("bystander").await.unwrap();
    assert_eq!(
        bystander.metadata.generation,
        Some(1),
        "not annotated: untouched"
    );
    assert!(restarted_at(&bystander).is_none());
}

/// A delayed restart outlives the operator: the second renewal within the minute is
/// noted on the renewed Secret (`caas.dev/restart-<hash>`), the operator is SIGKILLed and
/// started again, and the restart still comes, a minute after the first, once.
#[tokio::test]
async fn a_delayed_restart_outlives_the_operator() {
    let (client, ns, _pebble, mut operator) = setup(
        "restart-kill",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    deployment(&client, &ns, "app", Some("app-tls")).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let name = format!("{}.{ZONE}", unique_name("app"));
    let spec =
        json!({ "secretName": "app-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] });
    create_certificate(&client, &ns, "app", spec).await;
    wait_revision(&client, &ns, "app", 1, TIMEOUT, &operator).await;
    let renew = || async {
        let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": jiff::Timestamp::now().to_string() } } });
        certs
            .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    };
    let deployment_where = |what: &'static str, done: fn(&Deployment) -> bool| {
        let deployments = deployments.clone();
        async move {
            let get = || {
                let deployments = deployments.clone();
                async move { deployments.get("app").await.unwrap() }
            };
            wait_for(what, Duration::from_secs(100), None, get, done).await
        }
    };
    renew().await;
    let first = deployment_where("the first restart", |d| d.metadata.generation >= Some(2)).await;
    let first_at = restarted_at(&first).unwrap();
    renew().await;
    wait_revision(&client, &ns, "app", 3, TIMEOUT, &operator).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let noted = |s: &Secret| {
        (s.metadata.annotations.iter().flatten())
            .any(|(k, v)| k.starts_with("caas.dev/restart-") && v.ends_with(" Deployment/app"))
    };
    wait_for(
        "the delayed restart noted on the Secret",
        Duration::from_secs(30),
        Some(&operator),
        || async { secrets.get("app-tls").await.unwrap() },
        noted,
    )
    .await;
    operator.kill();
    operator.restart();
    let second = deployment_where("the delayed restart made", |d| {
        d.metadata.generation >= Some(3)
    })
    .await;
    let gap = restarted_at(&second).unwrap().duration_since(first_at);
    assert!(gap >= jiff::SignedDuration::from_secs(59), "{gap:#} apart");
    wait_for(
        "the note removed",
        Duration::from_secs(30),
        Some(&operator),
        || async { secrets.get("app-tls").await.unwrap() },
        |s| !noted(s),
    )
    .await;
    let after = deployments.get("app").await.unwrap();
    assert_eq!(after.metadata.generation, Some(3), "one restart, not two");
    assert_eq!(second.metadata.generation, Some(3), "one restart");
}

#[tokio::test]
async fn notifications_and_the_expiring_warning() {
    let receiver = WebhookReceiver::start().await;
    // The first POST fails: notifications are retried.
    receiver.fail_next(1);
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "notify").await;
    // 90-second certificates: renewal at about 60 s, 30 s before expiry, inside the
    // 80-second `--expiring-within`.
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: 90,
        ..Default::default()
    });
    let proxy = AcmeProxy::start(&pebble).await;
    let operator = Operator::start_with(api, &ns, pebble.http_port, &["--expiring-within=80s"]);
    let (generic_url, slack_url) = (receiver.url("/generic"), receiver.url("/slack"));
    // Webhook URLs are credentials: the scan when the operator stops looks for them in
    // its logs, events and status too.
    caas_testbed::register_secret(&generic_url);
    caas_testbed::register_secret(&slack_url);
    apply_secret(
        &client,
        &ns,
        "hooks",
        &[("generic", &generic_url), ("slack", &slack_url)],
    )
    .await;
    create_issuer_at(
        &client,
        &ns,
        "ca",
        &pebble,
        &proxy.directory_url,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    let notify = json!({ "spec": { "notify": { "failedAfter": 2, "webhooks": [
        { "format": "Generic", "urlSecretRef": { "name": "hooks", "key": "generic" } },
        { "format": "Slack", "urlSecretRef": { "name": "hooks", "key": "slack" } }
    ] } } });
    Api::<caas_operator::api::CaaSIssuer>::namespaced(client.clone(), &ns)
        .patch("ca", &PatchParams::default(), &Patch::Merge(&notify))
        .await
        .unwrap();
    let name = format!("{}.{ZONE}", unique_name("shop"));
    create_certificate(
        &client,
        &ns,
        "shop",
        json!({ "secretName": "shop-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name] }),
    )
    .await;
    wait_revision(&client, &ns, "shop", 1, TIMEOUT, &operator).await;
    let events_of = |path: &'static str, event: &'static str| {
        receiver
            .received()
            .into_iter()
            .filter(|r| r.path == path)
            .filter(|r| match path {
                "/generic" => r.json()["event"] == event,
                _ => r.json()["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(event),
            })
            .collect::<Vec<_>>()
    };
    wait_for(
        "issued on both webhooks",
        TIMEOUT,
        Some(&operator),
        || async {
            (
                events_of("/generic", "issued").len(),
                events_of("/slack", "issued").len(),
            )
        },
        |n| *n == (1, 1),
    )
    .await;
    let issued = events_of("/generic", "issued")[0].json();
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("shop-tls")
        .await
        .unwrap();
    let serial = &secret.metadata.annotations.as_ref().unwrap()["caas.dev/serial"];
    assert_eq!(issued["namespace"], ns.as_str());
    assert_eq!(issued["name"], "shop");
    assert_eq!(issued["dnsNames"], json!([name]));
    assert_eq!(issued["serial"], serial.as_str());
    assert!(
        issued["notAfter"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
    );
    assert_eq!(
        events_of("/generic", "issued")[0].content_type,
        "application/json"
    );
    let slack = events_of("/slack", "issued")[0].json();
    assert_eq!(
        slack.as_object().unwrap().len(),
        1,
        "Slack's shape: only text: {slack}"
    );

    // The CaaS subscription lapses: the CA refuses new orders. Renewal fails, the
    // certificate nears its end: Expiring, the metric, one `failed` (after 2 attempts)
    // and one `expiring` message.
    proxy.set_rule(|e, _| {
        (e.kind == Kind::NewOrder).then(|| Fault::Refuse {
            kind: "unauthorized".into(),
            detail: "the CaaS subscription has expired".into(),
        })
    });
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let cert = wait_for(
        "Expiring=True and two failed renewals",
        Duration::from_secs(120),
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("shop").await.unwrap() }
        },
        |c| {
            let s = c.status.clone().unwrap_or_default();
            condition(&s.conditions, "Expiring").is_some_and(|(status, _, _)| status == "True")
                && s.failed_issuance_attempts >= Some(2)
        },
    )
    .await;
    let status = cert.status.unwrap();
    let (_, reason, message) = condition(&status.conditions, "Expiring").unwrap();
    assert_eq!(reason, "RenewalFailing");
    assert!(
        message.contains("renewal is failing") && message.contains("subscription has expired"),
        "{message}"
    );
    let (ready, _, _) = condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready, "True", "still serving the valid certificate");
    // The metric is read from the operator's watch of Certificates, which may see the
    // status a moment after the API server does.
    wait_for(
        "caas_certificate_expiring 1",
        TIMEOUT,
        Some(&operator),
        || async {
            (operator.metrics().lines())
                .find(|l| {
                    l.starts_with("caas_certificate_expiring{") && l.contains("name=\"shop\"")
                })
                .map(str::to_string)
        },
        |metric| metric.as_deref().is_some_and(|l| l.ends_with(" 1")),
    )
    .await;
    wait_for(
        "failed and expiring on both webhooks",
        TIMEOUT,
        Some(&operator),
        || async {
            [
                events_of("/generic", "failed").len(),
                events_of("/generic", "expiring").len(),
                events_of("/slack", "failed").len(),
                events_of("/slack", "expiring").len(),
            ]
        },
        |n| *n == [1, 1, 1, 1],
    )
    .await;
    let failed = events_of("/generic", "failed")[0].json();
    assert!(
        failed["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert!(failed["message"].as_str().unwrap().contains("subscription"));
    assert_eq!(
        events_of("/generic", "expiring")[0].json()["reason"],
        "RenewalFailing"
    );
    let _ = proxy.exchanges();

    // Nothing secret in any message, nor the webhook URLs in the logs.
    let everything: String = receiver.received().iter().map(|r| r.body.clone()).collect();
    for needle in [
        pebble.eab_hmac.as_str(),
        "PRIVATE KEY",
        &generic_url,
        &slack_url,
    ] {
        assert!(
            !everything.contains(needle),
            "a notification contains {needle:?}"
        );
    }
    operator.assert_logs_free_of(&[&generic_url, &slack_url]);
    assert_eq!(events_of("/generic", "renewed").len(), 0);
}
