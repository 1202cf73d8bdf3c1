//! ACME profiles on Pebble 2.10 (`default` and `shortlived`, each with a validity of its
//! own): a profile the CA offers is ordered and its validity given; one it does not
//! offer is refused on the issuer before any order; short-lived certificates are
//! renewed again and again with no moment expired.

use std::time::Duration;

use caas_operator::api::{CaaSIssuer, Certificate};
use caas_testbed::{Pebble, PebbleOptions, shared_apiserver, unique_name};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";

/// Sets (or removes, with `None`) the issuer's `profile`.
async fn set_profile(client: &kube::Client, ns: &str, issuer: &str, profile: Option<&str>) {
    let patch = json!({ "spec": { "profile": profile } });
    Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .patch(issuer, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// The lifetime (notAfter - notBefore) of the certificate in Secret `name`, and its
/// notAfter.
async fn secret_lifetime(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Option<(jiff::SignedDuration, jiff::Timestamp)> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()?;
    let pem = secret.data?.get("tls.crt")?.0.clone();
    let info = caas_operator::pki::parse_chain(&String::from_utf8_lossy(&pem)).ok()?;
    Some((
        info.not_after.duration_since(info.not_before),
        info.not_after,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_the_ca_offers_is_ordered_and_an_unknown_one_refused_before_any_order() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "profiles").await;
    let pebble = Pebble::start(PebbleOptions {
        shortlived_secs: Some(3 * 24 * 3600),
        ..PebbleOptions::default()
    });
    let operator = Operator::start(api, &ns, &pebble);
    let solver = rfc2136_solver(&client, &ns).await;
    let hmac = &pebble.eab_hmac;
    create_issuer(&client, &ns, "ca", &pebble, hmac, json!([solver])).await;
    set_profile(&client, &ns, "ca", Some("tlsserver")).await;
    let refused = wait_issuer(
        &client,
        &ns,
        "ca",
        "False",
        "UnknownProfile",
        Duration::from_secs(60),
        &operator,
    )
    .await;
    let message = condition(&refused.status.unwrap().conditions, "Ready")
        .unwrap()
        .2;
    assert!(
        message.contains("\"tlsserver\" is not offered")
            && message.contains("default (The default profile)")
            && message.contains("shortlived (Short-lived certificates)"),
        "{message}"
    );
    let name = format!("{}.{ZONE}", unique_name("p"));
    let spec =
        json!({ "secretName": "web-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name] });
    create_certificate(&client, &ns, "web", spec).await;
    wait_cert_ready(
        &client,
        &ns,
        "web",
        "False",
        Some("IssuerNotReady"),
        Duration::from_secs(60),
        &operator,
    )
    .await;
    assert!(
        !pebble.log().contains("/order-plz"),
        "no order reached the CA while the profile was unknown"
    );

    set_profile(&client, &ns, "ca", Some("shortlived")).await;
    wait_cert_ready(
        &client,
        &ns,
        "web",
        "True",
        Some("Issued"),
        Duration::from_secs(120),
        &operator,
    )
    .await;
    let (lifetime, _) = secret_lifetime(&client, &ns, "web-tls").await.unwrap();
    assert!(
        (lifetime.as_hours() - 72).abs() <= 1,
        "the shortlived profile's 3 days, not the default 90: {lifetime:#}"
    );
}

/// A Certificate's own `profile` overrides the issuer's (`default` here: Pebble picks a
/// profile at random for an order naming none): `shortlived` gets that profile's
/// validity, no profile the issuer's, and a profile the CA does not offer is
/// `UnknownProfile` on the Certificate, with no order placed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_names_its_own_profile() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "cert-profile").await;
    let pebble = Pebble::start(PebbleOptions {
        shortlived_secs: Some(3 * 24 * 3600),
        ..PebbleOptions::default()
    });
    let operator = Operator::start(api, &ns, &pebble);
    let solver = rfc2136_solver(&client, &ns).await;
    let hmac = &pebble.eab_hmac;
    create_issuer(&client, &ns, "ca", &pebble, hmac, json!([solver])).await;
    set_profile(&client, &ns, "ca", Some("default")).await;
    for (cert, profile) in [
        ("short", Some("shortlived")),
        ("plain", None),
        ("odd", Some("tlsserver")),
    ] {
        let name = format!("{}.{ZONE}", unique_name(cert));
        let mut spec = json!({ "secretName": format!("{cert}-tls"), "issuerRef": { "name": "ca" }, "dnsNames": [name] });
        if let Some(profile) = profile {
            spec["profile"] = profile.into();
        }
        create_certificate(&client, &ns, cert, spec).await;
    }
    let refused = wait_cert_ready(
        &client,
        &ns,
        "odd",
        "False",
        Some("UnknownProfile"),
        Duration::from_secs(60),
        &operator,
    )
    .await;
    let status = refused.status.unwrap();
    let message = condition(&status.conditions, "Ready").unwrap().2;
    assert!(
        message.contains("\"tlsserver\" is not offered") && message.contains("shortlived ("),
        "{message}"
    );
    assert!(status.order.is_none(), "no order for an unknown profile");
    let mut lifetimes = Vec::new();
    for cert in ["short", "plain"] {
        wait_cert_ready(
            &client,
            &ns,
            cert,
            "True",
            Some("Issued"),
            Duration::from_secs(120),
            &operator,
        )
        .await;
        let secret = format!("{cert}-tls");
        lifetimes.push(secret_lifetime(&client, &ns, &secret).await.unwrap().0);
    }
    assert!(
        (lifetimes[0].as_hours() - 72).abs() <= 1,
        "the shortlived profile's 3 days: {:#}",
        lifetimes[0]
    );
    assert!(
        lifetimes[1].as_hours() > 73,
        "the issuer's default profile's lifetime: {:#}",
        lifetimes[1]
    );
}

/// Certificates of 90 seconds (Pebble's `shortlived` profile here) renewed at least
/// three times in a row: the Secret, checked every 250 ms, never holds an expired
/// certificate, and each renewal comes before two thirds of the lifetime have passed
/// (cert-manager's default renewBefore), whatever window ARI suggests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_again_and_again_never_expired() {
    const LIFETIME: u64 = 90;
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "shortlived").await;
    let pebble = Pebble::start(PebbleOptions {
        shortlived_secs: Some(LIFETIME),
        ..PebbleOptions::default()
    });
    let operator = Operator::start(api, &ns, &pebble);
    let solver = rfc2136_solver(&client, &ns).await;
    let hmac = &pebble.eab_hmac;
    create_issuer(&client, &ns, "ca", &pebble, hmac, json!([solver])).await;
    set_profile(&client, &ns, "ca", Some("shortlived")).await;
    let name = format!("{}.{ZONE}", unique_name("s"));
    let spec = json!({ "secretName": "s-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name] });
    create_certificate(&client, &ns, "s", spec).await;
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(LIFETIME * 5);
    let (mut expired_moments, mut least_left) = (0u32, i64::MAX);
    let mut serials = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "three renewals within {}s; seen {serials:?}\n{}",
            LIFETIME * 5,
            operator.logs()
        );
        if let Some((lifetime, not_after)) = secret_lifetime(&client, &ns, "s-tls").await {
            assert!(lifetime.as_secs() <= LIFETIME as i64 + 1, "{lifetime:#}");
            let left = not_after.duration_since(jiff::Timestamp::now()).as_secs();
            least_left = least_left.min(left);
            if left <= 0 {
                expired_moments += 1;
            }
            let cert = certs.get("s").await.unwrap();
            let revision = cert.status.and_then(|s| s.revision).unwrap_or(0);
            if serials.last() != Some(&not_after) {
                serials.push(not_after);
            }
            if revision >= 4 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "{} certificates of {LIFETIME}s; least lifetime left seen {least_left}s",
        serials.len()
    );
    assert_eq!(expired_moments, 0, "moments with an expired certificate");
    assert!(
        least_left >= (LIFETIME / 3) as i64 - 5,
        "renewed with a third of the lifetime left (cert-manager's default renewBefore), not later: {least_left}s left at worst"
    );
}
