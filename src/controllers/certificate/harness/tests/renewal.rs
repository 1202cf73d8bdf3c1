//! Renewals: due (a replacement order naming the old certificate) and not due.

use super::*;
use crate::controllers::certificate::harness::{SETTLED, requeue_after};

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
    // Every endpoint of an order (ENDPOINTS after directory, nonce, account).
    for endpoint in &super::super::fake_acme::ENDPOINTS[3..9] {
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
