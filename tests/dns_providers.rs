//! DNS-01 providers against the real BIND: what a refused update says.

mod support;

use std::time::Duration;

use base64::Engine;
use caas_testbed::{PebbleOptions, shared_bind, unique_name};
use serde_json::json;
use support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn rfc2136_refusals_name_the_servers_answer_and_the_zone() {
    let (client, ns, pebble, operator) = setup(
        "rfc2136-refused",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let bind = shared_bind();
    let wrong = base64::engine::general_purpose::STANDARD.encode(caas_testbed::random_bytes(32));
    caas_testbed::register_secret(&wrong);
    apply_secret(&client, &ns, "wrong-tsig", &[("secret", &wrong)]).await;
    apply_secret(&client, &ns, "tsig", &[("secret", &bind.tsig_secret)]).await;
    let solver = |key_name: &str, secret: &str| {
        json!([{ "dns01": { "rfc2136": {
            "nameserver": bind.addr().to_string(),
            "tsigKeyName": key_name,
            "tsigAlgorithm": "HMACSHA256",
            "tsigSecretSecretRef": { "name": secret, "key": "secret" }
        } } }])
    };
    // The right key name with a wrong secret; a key name the server does not know.
    let cases = [
        (
            "badsig",
            solver(&bind.tsig_key_name, "wrong-tsig"),
            "BADSIG",
            "secret is wrong",
        ),
        (
            "badkey",
            solver("no-such-key", "tsig"),
            "BADKEY",
            "tsigKeyName",
        ),
    ];
    for (name, solvers, _, _) in &cases {
        create_issuer(
            &client,
            &ns,
            name,
            &pebble,
            &pebble.eab_hmac,
            solvers.clone(),
        )
        .await;
        create_certificate(
            &client,
            &ns,
            name,
            json!({
                "secretName": format!("{name}-tls"), "issuerRef": { "name": name },
                "dnsNames": [format!("{}.{ZONE}", unique_name(name))]
            }),
        )
        .await;
    }
    for (name, _, code, hint) in &cases {
        let cert = wait_cert_ready(
            &client,
            &ns,
            name,
            "False",
            Some("DNSUpdateFailed"),
            TIMEOUT,
            &operator,
        )
        .await;
        let (_, _, message) = condition(&cert.status.unwrap().conditions, "Ready").unwrap();
        assert!(
            message.contains(code)
                && message.contains(&format!("in zone {ZONE}"))
                && message.contains(hint),
            "{name}: the answer, the zone and what to check: {message}"
        );
        assert!(!message.contains(&wrong) && !message.contains(&bind.tsig_secret));
    }
    operator.assert_logs_free_of(&[&wrong, &bind.tsig_secret, &pebble.eab_hmac]);
}
