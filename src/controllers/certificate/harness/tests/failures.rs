//! What stops or fails an issuance: invalid specs, issuers not ready or missing, a
//! refused order.

use std::time::Duration;

use kube::runtime::controller::Action;

use super::*;
use crate::controllers::certificate::harness::requeue_after;

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

    assert_not_ready(
        &h,
        "waits",
        30,
        "IssuerNotReady",
        "CaaSIssuer/down is not ready (ServerUnreachable: cannot reach the ACME server: connection refused)",
    )
    .await;
    assert_not_ready(
        &h,
        "orphan",
        60,
        "IssuerNotFound",
        "CaaSIssuer \"nope\" does not exist",
    )
    .await;
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
