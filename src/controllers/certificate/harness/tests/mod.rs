//! The Certificate reconcile's main paths, against the fake API and CA: first issuance
//! and resumed orders ([`issuance`]), renewals ([`renewal`]), what fails ([`failures`]);
//! here, what they share (assertions on Secrets, status and events; an existing
//! certificate).

use std::collections::BTreeMap;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ObjectMeta;
use rustls_pki_types::CertificateDer;
use serde_json::json;

use super::Harness;
use super::fake_acme::Issued;
use crate::api::conditions::find;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, Condition, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    Time,
};
use crate::controllers::certificate::secret::{leaf_der, secret_string};
use crate::controllers::certificate::{
    ANNOTATION_ALT_NAMES, ANNOTATION_CERTIFICATE, ANNOTATION_ISSUER, ANNOTATION_ISSUER_KIND,
    ANNOTATION_ISSUER_NAME, ANNOTATION_SERIAL,
};
use crate::pki;

mod failures;
mod issuance;
mod renewal;

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
/// The CA issued exactly one certificate, and it is in `cert`'s Secret and status.
fn assert_issued_once(h: &Harness, cert: &str, names: &[&str]) {
    let issued = h.ca.issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_tls_secret(h, cert, names, &issued[0]);
    assert_issued_status(&h.cert(cert), &issued[0], 1);
}

/// `cert` is not Ready, for `reason` and `message`, after a reconcile that asks to come
/// back in `requeue`.
async fn assert_not_ready(h: &Harness, cert: &str, requeue: u64, reason: &str, message: &str) {
    let action = h.reconcile(cert).await;
    let want = kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(requeue));
    assert_eq!(action, want);
    assert_eq!(
        ready(&h.cert(cert)),
        ("False".into(), reason.into(), message.into())
    );
}

fn assert_issued_status(cert: &Certificate, issued: &Issued, revision: i64) {
    let (status, reason, message) = ready(cert);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Issued"),
        "{message}"
    );
    let s = cert.status.as_ref().expect("status");
    assert_eq!(s.revision, Some(revision));
    assert_eq!(s.not_after, Some(Time(issued.not_after)));
    assert_eq!(s.not_before, Some(Time(issued.not_before)));
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
        .and_then(|s| s.renewal_time)
        .expect("a renewal time")
        .0;
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
