//! The default DNS-01 propagation check (no `--dns01-recursive-nameservers-only`): the
//! operator finds the zone's authoritative servers through NS records (ns1 by A, ns2 by
//! AAAA) and asks each of them on port 53, against the test bed's port-53 BIND
//! ([`caas_testbed::AuthBind`]), records written through a webhook (httpreq) fake. A
//! value one of them lacks keeps the challenge waiting, with that server named.

use std::time::Duration;

use caas_operator::api::Certificate;
use caas_testbed::{
    AUTH_ZONE, FakeHttpreqServer, LAGGING_ZONE, Pebble, PebbleOptions, shared_apiserver,
    shared_auth_bind, unique_name,
};
use kube::api::Api;
use serde_json::json;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The operator's log lines saying it asked `addr` for `record`'s TXT value and got it.
fn served_by(logs: &str, record: &str, addr: &str) -> bool {
    logs.lines().any(|l| {
        l.contains("asked for the TXT value")
            && l.contains(&format!("addr={addr} "))
            && l.contains(&format!("name={record}."))
            && l.contains("served=true")
    })
}

#[tokio::test]
async fn default_propagation_check_asks_every_authoritative_server() {
    let auth = shared_auth_bind();
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "propagation").await;
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(auth.ns1),
        ..PebbleOptions::default()
    });
    // The "recursive" resolver is ns1 itself (authoritative for the zones and the NS
    // names' addresses); the operator then asks ns1 and ns2 on port 53.
    // The test bed runs the operator at debug level: the log names each server asked.
    let operator = Operator::start_with(
        api,
        &ns,
        pebble.http_port,
        &[&format!("--dns01-recursive-nameservers={}", auth.ns1)],
    );
    // A webhook (httpreq) provider: RFC 2136 asks the server it updates instead of
    // resolving (`DnsProvider::serves`), so it never takes this path.
    let fake = FakeHttpreqServer::start_for(&unique_name("user"), &[AUTH_ZONE, LAGGING_ZONE]).await;
    let (user, password) = fake.credential.split_once(':').unwrap();
    apply_secret(
        &client,
        &ns,
        "hook",
        &[("username", user), ("password", password)],
    )
    .await;
    let solver = json!([{ "dns01": { "webhook": {
        "url": fake.url, "basicAuthSecretRef": { "name": "hook" }
    } } }]);
    create_issuer(&client, &ns, "auth", &pebble, &pebble.eab_hmac, solver).await;
    let served = format!("{}.{AUTH_ZONE}", unique_name("web"));
    let lagging = format!("{}.{LAGGING_ZONE}", unique_name("lag"));
    for (name, dns_name) in [("served", &served), ("lagging", &lagging)] {
        let spec = json!({
            "secretName": format!("{name}-tls"), "issuerRef": { "name": "auth" },
            "dnsNames": [dns_name]
        });
        create_certificate(&client, &ns, name, spec).await;
    }

    // Served by both: issued, after the operator saw the value on each address.
    wait_cert_ready(
        &client,
        &ns,
        "served",
        "True",
        Some("Issued"),
        TIMEOUT,
        &operator,
    )
    .await;
    let logs = operator.logs();
    let record = format!("_acme-challenge.{served}");
    for addr in ["127.0.0.1:53", "[::1]:53"] {
        assert!(
            served_by(&logs, &record, addr),
            "the operator asked {addr} for {record} TXT and it was served; log:\n{}",
            operator.proc.log_tail(40)
        );
    }

    // Lacking on ns2 (its copy of the zone never changes) while ns1, Pebble's and the
    // operator's resolver, serves it: the challenge waits, naming ns2.
    let certs: Api<Certificate> = Api::namespaced(client.clone(), &ns);
    let cert = wait_for(
        "the lagging challenge waiting for ns2",
        TIMEOUT,
        Some(&operator),
        || {
            let certs = certs.clone();
            async move { certs.get("lagging").await.unwrap() }
        },
        |c: &Certificate| {
            let order = c.status.as_ref().and_then(|s| s.order.as_ref());
            order.is_some_and(|o| {
                o.challenges.iter().any(|ch| {
                    ch.waiting_for_dns
                        && ch.error.as_deref().is_some_and(|e| {
                            e.contains("ns2.auth.test at [::1]:53") && e.contains("1 of 2")
                        })
                })
            })
        },
    )
    .await;
    let record = format!("_acme-challenge.{lagging}");
    assert!(
        !auth.dig(auth.ns1, &record, "TXT").is_empty()
            && auth.dig(auth.ns2, &record, "TXT").is_empty(),
        "the value is published on ns1 only"
    );
    let (status, _, _) = condition(&cert.status.unwrap().conditions, "Ready").unwrap();
    assert_ne!(status, "True", "not issued while ns2 lacks the value");
    operator.assert_logs_free_of(&[password, &pebble.eab_hmac]);
}
