//! First issuance (TLS-ALPN-01 and HTTP-01), and orders resumed or replaced.

use std::time::Duration;

use super::*;
use crate::api::OrderState;
use crate::controllers::certificate::harness::{SETTLED, requeue_after};

#[tokio::test]
async fn first_issuance() {
    let h = Harness::new("first").await;
    h.ready_issuer("ca");
    let names = ["web.example.com", "www.example.com"];
    h.certificate("web", Harness::spec("web", "ca", &names));

    let actions = h.settle("web").await;
    // Pass 1 places the order and answers the challenges; pass 2 finalizes, downloads
    // and writes the Secret.
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(requeue_after(&actions[0]).is_some_and(|d| d < Duration::from_secs(5)));
    assert!(requeue_after(&actions[1]).is_some_and(|d| d >= SETTLED));

    let ca = &h.ca;
    assert_eq!(ca.count("new-order"), 1, "{:?}", ca.counts());
    assert_eq!(
        ca.count("challenge"),
        2,
        "one challenge per name: {:?}",
        ca.counts()
    );
    assert_eq!(ca.count("finalize"), 1);
    assert_eq!(ca.count("certificate"), 1);
    assert_eq!(ca.count("new-account"), 1, "the account is looked up once");
    let ordered = &ca.new_orders()[0];
    assert_eq!(
        ordered["identifiers"],
        json!([{"type": "dns", "value": names[0]}, {"type": "dns", "value": names[1]}])
    );
    assert!(ordered.get("replaces").is_none() && ordered.get("notAfter").is_none());
    assert_eq!(ca.order_status(0), "valid");

    let issued = ca.issued();
    assert_eq!(issued.len(), 1);
    assert_tls_secret(&h, "web", &names, &issued[0]);
    let cert = h.cert("web");
    assert_issued_status(&cert, &issued[0], 1);
    assert!(
        ready(&cert).2.starts_with("issued by CaaSIssuer/ca; valid"),
        "{:?}",
        ready(&cert)
    );
    assert_eq!(
        cert.status.as_ref().unwrap().issued_by,
        Some("CaaSIssuer/ca".parse().unwrap())
    );
    assert_renewal_in_ari_window(&h, &cert);

    // The key was kept in the next-key Secret until the TLS Secret held it.
    assert_eq!(
        secret_writes(&h),
        [
            (Method::PATCH, secret_path(&h, "web-next-key")),
            (Method::PATCH, secret_path(&h, "web-tls")),
            (Method::DELETE, secret_path(&h, "web-next-key")),
        ]
    );
    assert!(h.secret("web-next-key").is_none());
    assert_eq!(
        events(&h, "web"),
        [("SecretMissing".into(), "Normal".into())]
    );

    // Settled: another look writes nothing and asks the CA nothing.
    h.api.clear_calls();
    let total = ca.total();
    let action = h.reconcile("web").await;
    assert!(requeue_after(&action).is_some_and(|d| d >= SETTLED));
    assert_eq!(h.api.writes().len(), 0, "{:?}", h.api.writes());
    assert_eq!(ca.total(), total, "{:?}", ca.counts());
}

#[tokio::test]
async fn a_restarted_operator_resumes_the_order_in_status() {
    let mut h = Harness::new("resume").await;
    h.ready_issuer("ca");
    h.certificate("api", Harness::spec("api", "ca", &["api.example.com"]));

    // The first operator places the order and answers its challenge, then stops.
    let action = h.reconcile("api").await;
    assert!(requeue_after(&action).is_some_and(|d| d < SETTLED));
    let cert = h.cert("api");
    let order = cert
        .status
        .as_ref()
        .unwrap()
        .order
        .clone()
        .expect("an order in status");
    assert_eq!(order.url, h.ca.order_url(0));
    assert_eq!(order.issuer, Some("CaaSIssuer/ca".parse().unwrap()));
    assert_eq!(order.state, OrderState::Pending);
    assert_eq!(order.challenges.len(), 1);
    assert_eq!(order.challenges[0].dns_name, "api.example.com");
    assert_eq!(order.challenges[0].type_.to_string(), "tls-alpn-01");
    assert_eq!(ready(&cert).1, "Issuing");
    let issuing = condition(&cert, "Issuing").expect("Issuing");
    assert_eq!(
        (issuing.status.as_str(), issuing.reason.as_str()),
        ("True", "SecretMissing")
    );
    assert!(h.secret("api-tls").is_none());

    // A new operator finds the order URL in status and finishes that order.
    h.restart();
    h.settle("api").await;
    assert_eq!(
        h.ca.count("new-order"),
        1,
        "no second order: {:?}",
        h.ca.counts()
    );
    assert_eq!(h.ca.new_orders().len(), 1);
    assert_eq!(h.ca.count("finalize"), 1);
    assert_eq!(
        h.ca.count("new-account"),
        2,
        "the restarted operator loads the account"
    );
    assert_eq!(h.ca.order_status(0), "valid");
    assert_issued_once(&h, "api", &["api.example.com"]);
}

#[tokio::test]
async fn an_order_the_ca_forgot_is_replaced() {
    let h = Harness::new("forgot").await;
    h.ready_issuer("ca");
    h.certificate("gone", Harness::spec("gone", "ca", &["gone.example.com"]));
    let request = h.reconcile("gone").await;
    assert!(requeue_after(&request).is_some());
    // Status names an order this CA never made (another CA's, or one it purged).
    let mut status = h.cert("gone").status.clone().unwrap();
    let order = status.order.as_mut().unwrap();
    order.url = format!(
        "{}/order/999",
        h.ca.directory_url().trim_end_matches("/dir")
    );
    h.api
        .seed_status::<Certificate>(&h.ns, "gone", serde_json::to_value(&status).unwrap());

    h.settle("gone").await;
    assert_eq!(
        h.ca.count("new-order"),
        2,
        "a new order replaces the lost one"
    );
    assert_issued_once(&h, "gone", &["gone.example.com"]);
}

#[tokio::test]
async fn http01_solver_objects_are_made_and_removed() {
    use crate::api::issuer::{Http01Ingress, Http01Solver, SolverConfig};
    use crate::solvers::http01::{COMPONENT, PATH_PREFIX, resource_name};
    use crate::solvers::http01_service::SERVICE_NAME;
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::networking::v1::Ingress;

    let h = Harness::new("http01").await;
    let http01 = SolverConfig {
        http01: Some(Http01Solver {
            ingress: Some(Http01Ingress {
                ingress_class_name: Some("nginx".into()),
                class: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    h.ready_issuer_with("ca", vec![http01]);
    h.certificate("site", Harness::spec("site", "ca", &["site.example.com"]));

    // The first pass presents the challenge: a Service and an Ingress routing exactly
    // the token's path (no Endpoints: the harness runs without a pod IP).
    let action = h.reconcile("site").await;
    assert!(requeue_after(&action).is_some_and(|d| d < SETTLED));
    let order = h.cert("site").status.unwrap().order.expect("an order");
    assert_eq!(order.challenges.len(), 1);
    let token = order.challenges[0].token.clone();
    assert_eq!(order.challenges[0].type_.to_string(), "http-01");
    let name = resource_name(&token);
    let ingresses = h.api.list::<Ingress>(&h.ns);
    assert_eq!(ingresses.len(), 1);
    let ingress = &ingresses[0];
    assert_eq!(ingress.metadata.name.as_deref(), Some(name.as_str()));
    let labels = ingress.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels[COMPONENT_LABEL], COMPONENT);
    assert_eq!(labels[CERTIFICATE_LABEL], "site");
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("site.example.com"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(path.path, Some(format!("{PATH_PREFIX}{token}")));
    let services = h.api.list::<Service>(&h.ns);
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].metadata.name.as_deref(), Some(SERVICE_NAME));
    let backend = path.backend.service.as_ref().unwrap();
    assert_eq!(
        backend.name, SERVICE_NAME,
        "the route leads to the shared Service"
    );
    assert!(h.api.list::<Endpoints>(&h.ns).is_empty());
    assert_eq!(h.ca.count("challenge"), 1, "the CA was told to validate");

    // Once issued, the solver's objects are gone.
    h.settle("site").await;
    assert_eq!(ready(&h.cert("site")).1, "Issued");
    assert!(h.api.list::<Ingress>(&h.ns).is_empty());
    assert!(h.api.list::<Service>(&h.ns).is_empty());
    let deleted: Vec<String> = h
        .api
        .writes()
        .into_iter()
        .filter(|c| c.method == Method::DELETE && c.status == 200)
        .map(|c| c.path)
        .collect();
    assert!(
        deleted.contains(&format!(
            "/apis/networking.k8s.io/v1/namespaces/http01/ingresses/{name}"
        )),
        "{deleted:?}"
    );
    assert!(
        deleted.contains(&format!(
            "/api/v1/namespaces/http01/services/{SERVICE_NAME}"
        )),
        "{deleted:?}"
    );
}

/// Certificates "a" and "b" of an HTTP-01 issuer in namespace `ns`, each with its
/// challenge presented.
async fn two_http01_challenges(ns: &str) -> Harness {
    use crate::api::issuer::{Http01Solver, SolverConfig};
    let h = Harness::new(ns).await;
    let http01 = SolverConfig {
        http01: Some(Http01Solver::default()),
        ..Default::default()
    };
    h.ready_issuer_with("ca", vec![http01]);
    for name in ["a", "b"] {
        let dns_name = format!("{name}.example.com");
        h.certificate(name, Harness::spec(name, "ca", &[dns_name.as_str()]));
        h.reconcile(name).await;
    }
    h
}

#[tokio::test]
async fn http01_challenges_of_a_namespace_share_one_service() {
    use crate::solvers::http01_service::SERVICE_NAME;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::Ingress;

    let h = two_http01_challenges("shared").await;
    assert_eq!(h.api.list::<Ingress>(&h.ns).len(), 2, "a route each");
    assert_eq!(
        h.api.list::<Service>(&h.ns).len(),
        1,
        "one Service for both"
    );
    let service_writes = |method: Method| {
        h.api
            .writes()
            .into_iter()
            .filter(|c| {
                c.method == method && c.path.ends_with(&format!("/services/{SERVICE_NAME}"))
            })
            .count()
    };
    assert_eq!(service_writes(Method::PATCH), 1, "applied once");

    // The first Certificate is done: its route goes, the Service stays for the other.
    h.settle("a").await;
    assert_eq!(ready(&h.cert("a")).1, "Issued");
    assert_eq!(h.api.list::<Ingress>(&h.ns).len(), 1);
    assert_eq!(h.api.list::<Service>(&h.ns).len(), 1);
    assert_eq!(service_writes(Method::DELETE), 0);

    // After the last, nothing of the solver is left.
    h.settle("b").await;
    assert_eq!(ready(&h.cert("b")).1, "Issued");
    assert!(h.api.list::<Ingress>(&h.ns).is_empty());
    assert!(h.api.list::<Service>(&h.ns).is_empty());
    assert_eq!(service_writes(Method::DELETE), 1);
}

#[tokio::test]
async fn a_certificate_deleted_mid_challenge_does_not_keep_the_shared_service() {
    use k8s_openapi::api::core::v1::Service;

    let h = two_http01_challenges("orphan").await;
    // The watch shows both challenges; then "a" is deleted mid-challenge (no finalizer
    // for HTTP-01: no cleanup runs for it) and its status leaves the index.
    h.ctx.index.update(&h.cert("a"));
    h.ctx.index.update(&h.cert("b"));
    h.ctx.index.remove(&h.cert("a"));
    h.clock.advance(Duration::from_secs(121));
    h.settle("b").await;
    assert_eq!(ready(&h.cert("b")).1, "Issued");
    assert!(
        h.api.list::<Service>(&h.ns).is_empty(),
        "the deleted Certificate's challenge stopped counting"
    );
}
