//! The Certificate reconcile's main paths, against the fake API and CA.

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use rustls_pki_types::CertificateDer;
use serde_json::json;

use super::fake_acme::Issued;
use super::{Harness, SETTLED, requeue_after};
use crate::api::conditions::find;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, Condition, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    OrderState,
};
use crate::controllers::certificate::secret::{leaf_der, secret_string};
use crate::controllers::certificate::{
    ANNOTATION_ALT_NAMES, ANNOTATION_CERTIFICATE, ANNOTATION_ISSUER, ANNOTATION_ISSUER_KIND,
    ANNOTATION_ISSUER_NAME, ANNOTATION_SERIAL,
};
use crate::pki;

const DAY: SignedDuration = SignedDuration::from_hours(24);

fn condition<'a>(cert: &'a Certificate, type_: &str) -> Option<&'a Condition> {
    find(&cert.status.as_ref()?.conditions, type_)
}

/// `Ready`'s status, reason and message.
fn ready(cert: &Certificate) -> (String, String, String) {
    let c = condition(cert, "Ready").expect("a Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The paths of the writes to Secrets, with their methods.
fn secret_writes(h: &Harness) -> Vec<(Method, String)> {
    h.api
        .writes()
        .into_iter()
        .filter(|c| c.path.contains("/secrets"))
        .map(|c| (c.method, c.path))
        .collect()
}

fn secret_path(h: &Harness, name: &str) -> String {
    format!("/api/v1/namespaces/{}/secrets/{name}", h.ns)
}

/// Asserts the TLS Secret holds `issued` for `names` with a matching key, and the
/// operator's labels and annotations; returns its key.
fn assert_tls_secret(h: &Harness, cert: &str, names: &[&str], issued: &Issued) -> String {
    let secret = h
        .secret(&format!("{cert}-tls"))
        .expect("the TLS Secret exists");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let crt = secret_string(&secret, "tls.crt").expect("tls.crt");
    let key = secret_string(&secret, "tls.key").expect("tls.key");
    assert_eq!(crt, issued.chain, "tls.crt is the chain the CA issued");
    assert!(
        crt.ends_with(&h.ca.root_pem()),
        "the chain ends with the CA"
    );
    let info = pki::parse_chain(&crt).expect("tls.crt parses");
    let mut got = info.dns_names.clone();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "the certificate names the dnsNames");
    assert_eq!(info.chain_len, 2);
    assert!(pki::key_matches(&key, &info), "tls.crt matches tls.key");
    assert_eq!(info.serial, issued.serial);

    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
    assert_eq!(labels[COMPONENT_LABEL], "tls");
    assert_eq!(labels[CERTIFICATE_LABEL], cert);
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let expected = BTreeMap::from([
        (ANNOTATION_CERTIFICATE.to_string(), cert.to_string()),
        (ANNOTATION_ISSUER.to_string(), "CaaSIssuer/ca".to_string()),
        (ANNOTATION_ISSUER_NAME.to_string(), "ca".to_string()),
        (ANNOTATION_ISSUER_KIND.to_string(), "CaaSIssuer".to_string()),
        (ANNOTATION_SERIAL.to_string(), issued.serial.clone()),
        (ANNOTATION_ALT_NAMES.to_string(), names.join(",")),
    ]);
    assert_eq!(annotations, expected);
    key
}

/// Asserts the status of a Certificate that holds `issued`: Ready=True `Issued`, the
/// times, the revision, no order or Issuing condition left.
fn assert_issued_status(cert: &Certificate, issued: &Issued, revision: i64) {
    let (status, reason, message) = ready(cert);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Issued"),
        "{message}"
    );
    let s = cert.status.as_ref().expect("status");
    assert_eq!(s.revision, Some(revision));
    assert_eq!(
        s.not_after.as_deref(),
        Some(issued.not_after.to_string().as_str())
    );
    assert_eq!(
        s.not_before.as_deref(),
        Some(issued.not_before.to_string().as_str())
    );
    assert!(s.order.is_none(), "the order is finished: {:?}", s.order);
    assert!(condition(cert, "Issuing").is_none(), "no Issuing condition");
    assert_eq!(s.failed_issuance_attempts, None);
}

/// The renewal time in status lies in the CA's last suggested window, which was asked
/// for the certificate in the Secret.
fn assert_renewal_in_ari_window(h: &Harness, cert: &Certificate) {
    let window =
        h.ca.windows()
            .last()
            .cloned()
            .expect("an ARI window was asked");
    let secret = h.secret(&cert.spec.secret_name).expect("the TLS Secret");
    let leaf = CertificateDer::from(leaf_der(&secret).expect("a leaf"));
    let id = instant_acme::CertificateIdentifier::try_from(&leaf).expect("an ARI identifier");
    assert_eq!(window.cert_id, id.to_string());
    let renewal: Timestamp = cert
        .status
        .as_ref()
        .and_then(|s| s.renewal_time.as_deref())
        .expect("a renewal time")
        .parse()
        .expect("RFC 3339");
    assert!(
        window.start <= renewal && renewal <= window.end,
        "renewal {renewal} in the ARI window {window:?}"
    );
}

/// The Events about `name` (reason, type).
fn events(h: &Harness, name: &str) -> Vec<(String, String)> {
    h.api
        .list::<Event>(&h.ns)
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default()))
        .collect()
}

/// A TLS Secret holding a certificate the CA issued earlier, as the operator wrote it,
/// and the Certificate's status that went with it.
fn existing(
    h: &Harness,
    cert: &str,
    name: &str,
    from: Timestamp,
    to: Timestamp,
) -> (Issued, String) {
    let (issued, key) = h.ca.issue(&[name], from, to);
    h.api.seed(&Secret {
        metadata: ObjectMeta {
            name: Some(format!("{cert}-tls")),
            namespace: Some(h.ns.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (COMPONENT_LABEL.to_string(), "tls".to_string()),
                (CERTIFICATE_LABEL.to_string(), cert.to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_ISSUER.to_string(),
                "CaaSIssuer/ca".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".to_string(),
                ByteString(issued.chain.clone().into_bytes()),
            ),
            ("tls.key".to_string(), ByteString(key.clone().into_bytes())),
        ])),
        ..Default::default()
    });
    h.certificate(cert, Harness::spec(cert, "ca", &[name]));
    h.api.seed_status::<Certificate>(
        &h.ns,
        cert,
        json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Issued",
                "message": "issued by CaaSIssuer/ca", "lastTransitionTime": from.to_string(),
            }],
            "notBefore": issued.not_before.to_string(),
            "notAfter": issued.not_after.to_string(),
            "revision": 1,
            "issuedBy": "CaaSIssuer/ca",
        }),
    );
    (issued, key)
}

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
        cert.status.as_ref().unwrap().issued_by.as_deref(),
        Some("CaaSIssuer/ca")
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
    assert_eq!(order.issuer.as_deref(), Some("CaaSIssuer/ca"));
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
    let issued = h.ca.issued();
    assert_eq!(issued.len(), 1);
    assert_tls_secret(&h, "api", &["api.example.com"], &issued[0]);
    assert_issued_status(&h.cert("api"), &issued[0], 1);
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
    let issued = h.ca.issued();
    assert_eq!(issued.len(), 1);
    assert_tls_secret(&h, "gone", &["gone.example.com"], &issued[0]);
    assert_issued_status(&h.cert("gone"), &issued[0], 1);
}

#[tokio::test]
async fn renewal_due_orders_a_replacement() {
    let h = Harness::new("renew").await;
    h.ready_issuer("ca");
    let now = h.ctx.memory.wall_now();
    // 90 days, 10 left: inside the default 30-day renewBefore.
    let (old, old_key) = existing(&h, "app", "app.example.com", now - DAY * 80, now + DAY * 10);
    // The CA reuses the account's valid authorization: no challenge this time.
    h.ca.reuse_valid_authorizations(true);

    let actions = h.settle("app").await;
    assert_eq!(
        actions.len(),
        1,
        "order, finalize and download in one pass: {actions:?}"
    );
    assert_eq!(h.ca.count("new-order"), 1);
    assert_eq!(h.ca.count("challenge"), 0);
    assert_eq!(h.ca.count("finalize"), 1);
    // The order names the certificate it replaces (ARI).
    let der = leaf_der(&h.secret("app-tls").unwrap()).unwrap();
    assert_ne!(der, pki::pem_certificates(&old.chain).unwrap()[0]);
    let old_der = pki::pem_certificates(&old.chain).unwrap().remove(0);
    let old_id = instant_acme::CertificateIdentifier::try_from(&CertificateDer::from(old_der))
        .expect("an ARI identifier");
    assert_eq!(h.ca.new_orders()[0]["replaces"], json!(old_id.to_string()));

    let issued = h.ca.issued();
    assert_eq!(issued.len(), 2, "the old certificate and its replacement");
    assert_ne!(issued[1].serial, old.serial);
    let key = assert_tls_secret(&h, "app", &["app.example.com"], &issued[1]);
    assert_ne!(key, old_key, "a new key (rotationPolicy Always)");
    let cert = h.cert("app");
    assert_issued_status(&cert, &issued[1], 2);
    assert_renewal_in_ari_window(&h, &cert);
    assert_eq!(events(&h, "app"), [("RenewalDue".into(), "Normal".into())]);
}

#[tokio::test]
async fn renewal_not_due_orders_nothing() {
    let h = Harness::new("notdue").await;
    h.ready_issuer("ca");
    let now = h.ctx.memory.wall_now();
    let (old, _) = existing(&h, "fresh", "fresh.example.com", now - DAY, now + DAY * 89);
    let secret_version = h.secret("fresh-tls").unwrap().metadata.resource_version;
    h.api.clear_calls();

    let actions = h.settle("fresh").await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    // The only CA traffic is the ARI check (and loading the account for it).
    for endpoint in [
        "new-order",
        "order",
        "authz",
        "challenge",
        "finalize",
        "certificate",
    ] {
        assert_eq!(h.ca.count(endpoint), 0, "{endpoint}: {:?}", h.ca.counts());
    }
    assert_eq!(h.ca.count("renewal-info"), 1);
    assert_eq!(secret_writes(&h), []);
    assert_eq!(
        h.secret("fresh-tls").unwrap().metadata.resource_version,
        secret_version
    );
    let cert = h.cert("fresh");
    assert_issued_status(&cert, &old, 1);
    assert!(
        ready(&cert).2.starts_with("the certificate is valid until"),
        "{:?}",
        ready(&cert)
    );
    assert_renewal_in_ari_window(&h, &cert);
    assert_eq!(events(&h, "fresh"), []);

    // The next look asks the CA nothing at all (the ARI check is not due for hours).
    let total = h.ca.total();
    h.api.clear_calls();
    let action = h.reconcile("fresh").await;
    assert!(requeue_after(&action).is_some_and(|d| d >= SETTLED));
    assert_eq!(h.ca.total(), total, "{:?}", h.ca.counts());
    assert_eq!(h.api.writes().len(), 0, "{:?}", h.api.writes());
}

#[tokio::test]
async fn invalid_specs_are_reported_without_asking_the_ca() {
    let h = Harness::new("invalid").await;
    h.ready_issuer("ca");
    h.certificate("nonames", Harness::spec("nonames", "ca", &[]));
    let mut spec = Harness::spec("badduration", "ca", &["bad.example.com"]);
    spec.duration = Some("ninety days".into());
    h.certificate("badduration", spec);

    for (name, message) in [
        (
            "nonames",
            "the Certificate names nothing: set dnsNames (or ipAddresses)".to_string(),
        ),
        (
            "badduration",
            "duration: duration \"ninety days\" is not valid: write it like 2160h, 1h30m or 90d"
                .to_string(),
        ),
    ] {
        let actions = h.settle(name).await;
        assert_eq!(actions, [Action::await_change()], "{name}");
        let cert = h.cert(name);
        assert_eq!(
            ready(&cert),
            ("False".into(), "InvalidSpec".into(), message)
        );
        assert!(condition(&cert, "Issuing").is_none());
        assert!(cert.status.as_ref().unwrap().order.is_none());
        assert!(h.secret(&format!("{name}-tls")).is_none());
    }
    assert_eq!(h.ca.total(), 0, "{:?}", h.ca.counts());
    assert_eq!(secret_writes(&h), []);
    // Status is written by server-side apply, forced, as the operator's field manager.
    let writes: Vec<(String, Vec<String>, Option<String>)> = h
        .api
        .writes()
        .into_iter()
        .map(|c| {
            let mut query: Vec<String> = c
                .query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            query.sort();
            (c.path, query, c.content_type)
        })
        .collect();
    let apply = |name: &str| {
        (
            format!("/apis/caas.dev/v1alpha1/namespaces/invalid/certificates/{name}/status"),
            vec![
                "fieldManager=caas-operator".to_string(),
                "force=true".to_string(),
            ],
            Some("application/apply-patch+yaml".to_string()),
        )
    };
    assert_eq!(writes, [apply("nonames"), apply("badduration")]);
}

#[tokio::test]
async fn issuer_not_ready_or_missing_stops_before_the_ca() {
    let h = Harness::new("noissuer").await;
    h.ready_issuer("down");
    let broken = json!({"conditions": [{
        "type": "Ready", "status": "False", "reason": "ServerUnreachable",
        "message": "cannot reach the ACME server: connection refused",
    }]});
    h.api
        .seed_status::<crate::api::CaaSIssuer>(&h.ns, "down", broken);
    h.certificate(
        "waits",
        Harness::spec("waits", "down", &["waits.example.com"]),
    );
    h.certificate(
        "orphan",
        Harness::spec("orphan", "nope", &["orphan.example.com"]),
    );

    let action = h.reconcile("waits").await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    assert_eq!(
        ready(&h.cert("waits")),
        (
            "False".into(),
            "IssuerNotReady".into(),
            "CaaSIssuer/down is not ready (ServerUnreachable: cannot reach the ACME server: connection refused)".into()
        )
    );
    let action = h.reconcile("orphan").await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert_eq!(
        ready(&h.cert("orphan")),
        (
            "False".into(),
            "IssuerNotFound".into(),
            "CaaSIssuer \"nope\" does not exist".into()
        )
    );
    assert_eq!(h.ca.total(), 0, "{:?}", h.ca.counts());
    assert_eq!(secret_writes(&h), []);
    assert!(h.cert("waits").status.unwrap().order.is_none());

    // Once the issuer is Ready again, the next look issues.
    let fixed = json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "AccountRegistered", "message": "ok"}],
    });
    h.api
        .seed_status::<crate::api::CaaSIssuer>(&h.ns, "down", fixed);
    h.settle("waits").await;
    assert_eq!(h.ca.count("new-order"), 1);
    assert_eq!(ready(&h.cert("waits")).1, "Issued");
}

#[tokio::test]
async fn http01_solver_objects_are_made_and_removed() {
    use crate::api::issuer::{Http01Ingress, Http01Solver, Solver};
    use crate::solvers::http01::{COMPONENT, PATH_PREFIX, resource_name};
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::networking::v1::Ingress;

    let h = Harness::new("http01").await;
    let http01 = Solver {
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
    assert_eq!(h.api.list::<Service>(&h.ns).len(), 1);
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
        deleted.contains(&format!("/api/v1/namespaces/http01/services/{name}")),
        "{deleted:?}"
    );
}

#[tokio::test]
async fn a_refused_order_backs_off_then_succeeds() {
    let h = Harness::new("refused").await;
    h.ready_issuer("ca");
    h.certificate("deny", Harness::spec("deny", "ca", &["deny.example.com"]));
    h.ca.fail_next(
        "new-order",
        403,
        "rejectedIdentifier",
        "policy forbids issuing for deny.example.com",
    );

    let action = h.reconcile("deny").await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "the first backoff"
    );
    let cert = h.cert("deny");
    let message = "the CA refused: rejectedIdentifier: policy forbids issuing for deny.example.com (attempt 1; next try in 10s)";
    assert_eq!(
        ready(&cert),
        ("False".into(), "ACMEError".into(), message.into())
    );
    let issuing = condition(&cert, "Issuing").expect("Issuing");
    assert_eq!(
        (issuing.status.as_str(), issuing.reason.as_str()),
        ("False", "ACMEError")
    );
    let status = cert.status.clone().unwrap();
    assert_eq!(status.failed_issuance_attempts, Some(1));
    assert!(status.last_failure_time.is_some() && status.order.is_none());
    assert_eq!(events(&h, "deny"), [("ACMEError".into(), "Warning".into())]);
    assert_eq!(h.ca.count("new-order"), 1, "a 403 is not sent again");

    // Within the backoff nothing is asked or written.
    let total = h.ca.total();
    h.api.clear_calls();
    let action = h.reconcile("deny").await;
    assert!(
        requeue_after(&action).is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(10))
    );
    assert_eq!(h.ca.total(), total);
    assert_eq!(h.api.writes().len(), 0, "{:?}", h.api.writes());

    // The backoff has passed: the retry issues.
    h.clock.advance(Duration::from_secs(10));
    h.settle("deny").await;
    assert_eq!(h.ca.count("new-order"), 2);
    let issued = h.ca.issued();
    assert_tls_secret(&h, "deny", &["deny.example.com"], &issued[0]);
    assert_issued_status(&h.cert("deny"), &issued[0], 1);
}
