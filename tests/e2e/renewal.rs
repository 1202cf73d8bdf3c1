//! Renewal and issuance variants against the real test bed: certificates renew by
//! themselves (with the CA's ARI window and `replaces`), TLS-ALPN-01, key types and
//! rotation, a CA that rejects half the nonces, and failures that back off instead of
//! hammering the CA.

use std::time::{Duration, Instant};

use caas_operator::api::Certificate;
use caas_testbed::{PebbleOptions, unique_name};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn tls_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> (caas_operator::pki::CertInfo, String) {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    let info = caas_operator::pki::parse_chain(&secret_text(&secret, "tls.crt")).unwrap();
    (info, secret_text(&secret, "tls.key"))
}

#[tokio::test]
async fn short_certificates_renew_by_themselves_in_the_ari_window() {
    // 30-second certificates: renewal is due a few seconds after issuance.
    let options = PebbleOptions {
        validity_secs: 30,
        ..Default::default()
    };
    let (client, ns, pebble, operator) = setup("renew", options, json!([{ "http01": {} }])).await;
    let name = format!("{}.{ZONE}", unique_name("renew"));
    create_certificate(
        &client,
        &ns,
        "short",
        json!({ "secretName": "short-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] }),
    )
    .await;
    let first = wait_revision(&client, &ns, "short", 1, TIMEOUT, &operator).await;
    let (info1, _) = tls_secret(&client, &ns, "short-tls").await;

    // Until the renewal time, the first certificate stays in the Secret.
    let status = first.status.unwrap();
    let renewal_at: jiff::Timestamp = status.renewal_time.unwrap().0;
    assert!(
        renewal_at < info1.not_after,
        "renewal {renewal_at} before expiry {}",
        info1.not_after
    );
    let second = wait_revision(&client, &ns, "short", 2, TIMEOUT, &operator).await;
    let (info2, _) = tls_secret(&client, &ns, "short-tls").await;
    assert_ne!(info2.serial, info1.serial);
    assert!(
        info2.not_before <= info1.not_after,
        "renewed before the old one expired"
    );
    assert!(jiff::Timestamp::now() >= info1.not_before);
    // The renewal happened at the time status announced (give or take the poll).
    let renewed_status = second.status.unwrap();
    let renewed_at: jiff::Timestamp = renewed_status.not_before.unwrap().0;
    assert!(
        renewed_at.as_second() + 5 >= renewal_at.as_second(),
        "renewed at {renewed_at}, planned {renewal_at}: not early"
    );
    // ARI: Pebble 2.6 offers renewal information; the renewal order named the old certificate.
    let logs = operator.logs();
    let orders: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("order") || l.contains("replaces"))
        .collect();
    assert!(
        logs.contains("renewal order names the certificate it replaces"),
        "no ARI replaces in the logs; the operator's lines about orders:\n{}",
        orders.join("\n")
    );
    assert!(
        !logs.contains("refused `replaces`"),
        "Pebble refused the replaces field"
    );
    assert!(
        logs.contains("renewal time in the CA's ARI window"),
        "the operator asked the CA for ARI"
    );
    let ari_requests = operator
        .metrics()
        .lines()
        .filter(|l| l.contains("renewalInfo\"") && l.contains("status=\"200\""))
        .count();
    assert!(ari_requests > 0, "ARI requests counted in the metrics");
    let _ = pebble;
}

#[tokio::test]
async fn tls_alpn01_issues() {
    let (client, ns, pebble, operator) = setup(
        "alpn",
        PebbleOptions::default(),
        json!([{ "tlsAlpn01": {} }]),
    )
    .await;
    let name = format!("{}.{ZONE}", unique_name("alpn"));
    create_certificate(
        &client,
        &ns,
        "alpn",
        json!({ "secretName": "alpn-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] }),
    )
    .await;
    wait_cert_ready(
        &client,
        &ns,
        "alpn",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let (info, key) = tls_secret(&client, &ns, "alpn-tls").await;
    assert_eq!(info.dns_names, vec![name.clone()]);
    assert!(caas_operator::pki::key_matches(&key, &info));
    assert!(operator.logs().contains("answered a TLS-ALPN-01 handshake"));
    let _ = pebble;
}

/// The SubjectPublicKeyInfo algorithm OID of a PEM key, via the certificate it signs.
fn spki_oid(info: &caas_operator::pki::CertInfo) -> String {
    use x509_parser::prelude::FromDer;
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&info.public_key_spki).unwrap();
    let params = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
        .unwrap_or_default();
    let bits = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!(" rsa{}", rsa.key_size()),
        _ => String::new(),
    };
    format!(
        "{} {}{bits}",
        spki.algorithm.algorithm.to_id_string(),
        params
    )
}

#[tokio::test]
async fn key_algorithms_and_rotation_policies() {
    let (client, ns, _pebble, operator) =
        setup("keys", PebbleOptions::default(), json!([{ "http01": {} }])).await;
    let cases = [
        (
            "p256",
            json!({ "algorithm": "ECDSA", "size": 256 }),
            "1.2.840.10045.2.1 1.2.840.10045.3.1.7",
        ),
        (
            "p384",
            json!({ "algorithm": "ECDSA", "size": 384 }),
            "1.2.840.10045.2.1 1.3.132.0.34",
        ),
        (
            "never",
            json!({ "rotationPolicy": "Never" }),
            "1.2.840.10045.2.1 1.2.840.10045.3.1.7",
        ),
        (
            "rsa2048",
            json!({ "algorithm": "RSA", "size": 2048, "encoding": "PKCS1" }),
            "1.2.840.113549.1.1.1  rsa2048",
        ),
        (
            "rsa3072",
            json!({ "algorithm": "RSA", "size": 3072 }),
            "1.2.840.113549.1.1.1  rsa3072",
        ),
        (
            "rsa4096",
            json!({ "algorithm": "RSA", "size": 4096 }),
            "1.2.840.113549.1.1.1  rsa4096",
        ),
        (
            "always",
            json!({ "rotationPolicy": "Always" }),
            "1.2.840.10045.2.1 1.2.840.10045.3.1.7",
        ),
    ];
    for (name, key, _) in &cases {
        create_certificate(
            &client,
            &ns,
            name,
            json!({
                "secretName": format!("{name}-tls"), "issuerRef": { "name": "pebble" },
                "dnsNames": [format!("{}.{ZONE}", unique_name(name))], "privateKey": key,
            }),
        )
        .await;
    }
    let mut first_keys = Vec::new();
    for (name, _, oid) in &cases {
        wait_cert_ready(
            &client,
            &ns,
            name,
            "True",
            Some("Issued"),
            TIMEOUT,
            &operator,
        )
        .await;
        let (info, key) = tls_secret(&client, &ns, &format!("{name}-tls")).await;
        assert_eq!(spki_oid(&info), *oid, "{name}: key type in the Secret");
        assert!(caas_operator::pki::key_matches(&key, &info));
        first_keys.push(info.public_key_spki.clone());
    }
    // Renew "never" and "always" by hand (the annotation `caas-operator renew` sets).
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    for name in ["never", "always"] {
        let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": jiff::Timestamp::now().to_string() } } });
        certs
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    for (i, name) in [(2, "never"), (6, "always")] {
        wait_revision(&client, &ns, name, 2, TIMEOUT, &operator).await;
        let (info, _) = tls_secret(&client, &ns, &format!("{name}-tls")).await;
        if name == "never" {
            assert_eq!(
                info.public_key_spki, first_keys[i],
                "rotationPolicy Never keeps the key"
            );
        } else {
            assert_ne!(
                info.public_key_spki, first_keys[i],
                "rotationPolicy Always makes a new key"
            );
        }
    }
    // Ed25519 where the CA accepts it: Pebble does not, and says so.
    create_certificate(&client, &ns, "ed25519", json!({
        "secretName": "ed25519-tls", "issuerRef": { "name": "pebble" },
        "dnsNames": [format!("{}.{ZONE}", unique_name("ed"))], "privateKey": { "algorithm": "Ed25519" },
    }))
    .await;
    let c = wait_for(
        "the CA's refusal of Ed25519",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("ed25519").await.unwrap() }
        },
        |c| {
            c.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|(s, r, _)| s == "False" && r != "Issuing")
        },
    )
    .await;
    let (_, reason, message) = condition(&c.status.unwrap().conditions, "Ready").unwrap();
    assert!(
        message.contains("Ed25519") && message.contains("badCSR"),
        "{reason}: {message}"
    );

    // A renewal request is acted on once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let never = certs.get("never").await.unwrap();
    assert_eq!(never.status.unwrap().revision, Some(2));
}

#[tokio::test]
async fn every_certificate_issues_when_half_the_nonces_are_rejected() {
    let options = PebbleOptions {
        env: vec![("PEBBLE_WFE_NONCEREJECT".into(), "50".into())],
        ..Default::default()
    };
    let (client, ns, _pebble, operator) = setup("nonce", options, json!([{ "http01": {} }])).await;
    for i in 0..3 {
        create_certificate(
            &client,
            &ns,
            &format!("n{i}"),
            json!({
                "secretName": format!("n{i}-tls"), "issuerRef": { "name": "pebble" },
                "dnsNames": [format!("{}.{ZONE}", unique_name("nonce"))],
            }),
        )
        .await;
    }
    for i in 0..3 {
        let cert = wait_cert_ready(
            &client,
            &ns,
            &format!("n{i}"),
            "True",
            Some("Issued"),
            Duration::from_secs(90),
            &operator,
        )
        .await;
        assert_eq!(cert.status.unwrap().failed_issuance_attempts, None);
    }
}

#[tokio::test]
async fn failed_validation_is_reported_and_retried_with_growing_delays() {
    let (client, ns, _pebble, operator) =
        setup("fail", PebbleOptions::default(), json!([{ "http01": {} }])).await;
    // A name outside the test zone: the CA's DNS lookup fails, so validation fails.
    create_certificate(&client, &ns, "bad", json!({ "secretName": "bad-tls", "issuerRef": { "name": "pebble" }, "dnsNames": ["nowhere.invalid-zone.test"] })).await;
    let started = Instant::now();
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let cert = wait_for(
        "the first failure",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("bad").await.unwrap() }
        },
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.failed_issuance_attempts)
                .is_some()
        },
    )
    .await;
    let (_, reason, message) =
        condition(&cert.status.clone().unwrap().conditions, "Ready").unwrap();
    assert!(
        ["OrderFailed", "ChallengeFailed"].contains(&reason.as_str()),
        "reason {reason}: {message}"
    );
    assert!(
        message.contains("nowhere.invalid-zone.test"),
        "the CA's reason names the domain: {message}"
    );

    // Two minutes: attempts back off (10 s, 20 s, 40 s, ...), so few orders are made.
    let deadline = started + Duration::from_secs(120);
    tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
    let text = operator.metrics();
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("caas_acme_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let orders: f64 = text
        .lines()
        .filter(|l| {
            // Orders the CA created: a request answered with a bad nonce is resent, and
            // each send is counted.
            l.starts_with("caas_acme_requests_total{")
                && l.contains("endpoint=\"order-plz\"")
                && l.contains("status=\"201\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let status = Api::<Certificate>::namespaced(client.clone(), &ns)
        .get("bad")
        .await
        .unwrap()
        .status
        .unwrap();
    let attempts = status.failed_issuance_attempts.unwrap();
    assert!(
        (3..=5).contains(&attempts),
        "{attempts} attempts in 2 minutes (10 s doubling allows 4)"
    );
    assert!(orders <= 5.0, "{orders} new orders in 2 minutes");
    assert!(total <= 60.0, "{total} ACME requests in 2 minutes");
    assert!(status.last_failure_time.is_some());
}
