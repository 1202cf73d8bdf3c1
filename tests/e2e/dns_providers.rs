//! DNS-01 providers against the real BIND: RFC 2136 (what a refused update says),
//! Cloudflare, DigitalOcean and the httpreq webhook through fakes of their APIs that
//! apply each change to BIND (lego, from Debian, talks to the same fakes), and CNAME
//! delegation; a Certificate deleted mid-order has its record removed through the
//! provider.

use std::time::Duration;

use base64::Engine;
use caas_testbed::{
    CLOUD_DNS_PROJECT, DELEGATE_ZONE, FakeAcmeDnsServer, FakeCloudDnsApi, FakeCloudflareApi,
    FakeDigitalOceanApi, FakeDnsApi, FakeHttpreqServer, LOCKED_ZONE, Pebble, PebbleOptions,
    shared_apiserver, shared_bind, unique_name,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use crate::support::*;

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
    // The right key name with a wrong secret; a key name the server does not know; the
    // right key in a zone whose update-policy does not let it write TXT records.
    let cases = [
        (
            "badsig",
            solver(&bind.tsig_key_name, "wrong-tsig"),
            "BADSIG",
            "secret is wrong",
            ZONE,
        ),
        (
            "badkey",
            solver("no-such-key", "tsig"),
            "BADKEY",
            "tsigKeyName",
            ZONE,
        ),
        (
            "refused",
            solver(&bind.tsig_key_name, "tsig"),
            "REFUSED",
            "update-policy",
            LOCKED_ZONE,
        ),
    ];
    for (name, solvers, _, _, zone) in &cases {
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
                "dnsNames": [format!("{}.{zone}", unique_name(name))]
            }),
        )
        .await;
    }
    for (name, _, code, hint, zone) in &cases {
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
                && message.contains(&format!("in zone {zone}"))
                && message.contains(hint),
            "{name}: the answer, the zone and what to check: {message}"
        );
        assert!(!message.contains(&wrong) && !message.contains(&bind.tsig_secret));
    }
    operator.assert_logs_free_of(&[&wrong, &bind.tsig_secret, &pebble.eab_hmac]);
}

/// The operator, checking DNS-01 records through the test bed's BIND alone (it is not on
/// port 53, so the zone's authoritative servers as listed in NS cannot be asked).
fn dns_operator(ns: &str, pebble: &Pebble) -> Operator {
    dns_operator_env(ns, pebble, &[])
}

/// [`dns_operator`] with `env` added to its environment (ambient cloud credentials, which
/// the tests' namespaced issuers may then use: `--issuer-ambient-credentials`).
pub fn dns_operator_env(ns: &str, pebble: &Pebble, env: &[(&str, &str)]) -> Operator {
    let bind = shared_bind();
    let tls = format!("--tls-alpn01-addr=127.0.0.1:{}", pebble.tls_port);
    let resolvers = format!("--dns01-recursive-nameservers={}", bind.addr());
    let mut args = vec![
        tls.as_str(),
        resolvers.as_str(),
        "--dns01-recursive-nameservers-only",
    ];
    if !env.is_empty() {
        args.push("--issuer-ambient-credentials");
    }
    Operator::start_env(shared_apiserver(), ns, pebble.http_port, &args, env)
}

/// One provider end to end: a wildcard + apex certificate through the fake (Pebble
/// validating through BIND), the records gone from BIND afterwards, and a bad
/// credential reported as `DNSUpdateFailed` in the provider's words, never logged. The
/// operator runs with `env` added; it is returned for more checks of its log.
async fn provider_end_to_end(
    prefix: &str,
    fake: &FakeDnsApi,
    solver: impl Fn(&str) -> serde_json::Value,
    credential_secret: &[(&str, &str)],
    wrong_secret: &[(&str, &str)],
    refusal_words: &str,
    env: &[(&str, &str)],
) -> Operator {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, prefix).await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = dns_operator_env(&ns, &pebble, env);
    apply_secret(&client, &ns, "dns-credential", credential_secret).await;
    apply_secret(&client, &ns, "wrong-credential", wrong_secret).await;
    create_issuer(
        &client,
        &ns,
        "dns",
        &pebble,
        &pebble.eab_hmac,
        json!([solver("dns-credential")]),
    )
    .await;
    create_issuer(
        &client,
        &ns,
        "wrong",
        &pebble,
        &pebble.eab_hmac,
        json!([solver("wrong-credential")]),
    )
    .await;

    let base = format!("{}.{ZONE}", unique_name(prefix));
    let wildcard = format!("*.{base}");
    create_certificate(
        &client,
        &ns,
        "web",
        json!({
            "secretName": "web-tls", "issuerRef": { "name": "dns" }, "dnsNames": [base, wildcard]
        }),
    )
    .await;
    create_certificate(
        &client,
        &ns,
        "refused",
        json!({
            "secretName": "refused-tls", "issuerRef": { "name": "wrong" },
            "dnsNames": [format!("{}.{ZONE}", unique_name("refused"))]
        }),
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
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("web-tls")
        .await
        .unwrap();
    let chain = secret_text(&secret, "tls.crt");
    let root = pebble.issuance_root().await;
    verify_chain(&chain, &root, &base).expect("apex");
    verify_chain(&chain, &root, &format!("x.{base}")).expect("wildcard");
    let record = format!("_acme-challenge.{base}");
    assert!(
        fake.log()
            .iter()
            .filter(|l| l.contains("POST") || l.contains("/present"))
            .count()
            >= 2,
        "both values went through the API: {:?}",
        fake.log()
    );
    // Cleanup follows the issuance (the Secret and Ready come first): waited for.
    wait_for(
        "cleanup to remove the records from BIND and from the provider",
        TIMEOUT,
        Some(&operator),
        || async {
            let in_bind = !shared_bind().dig(&record, "TXT").is_empty();
            let at_provider = fake.records().iter().any(|(n, _)| *n == record);
            (in_bind, at_provider)
        },
        |left: &(bool, bool)| *left == (false, false),
    )
    .await;

    let refused = wait_cert_ready(
        &client,
        &ns,
        "refused",
        "False",
        Some("DNSUpdateFailed"),
        TIMEOUT,
        &operator,
    )
    .await;
    let (_, _, message) = condition(&refused.status.unwrap().conditions, "Ready").unwrap();
    assert!(
        message.contains(refusal_words),
        "the provider's own words: {message}"
    );
    for (_, value) in wrong_secret.iter().chain(credential_secret) {
        assert!(!message.contains(value), "no credential in the message");
    }
    let credentials: Vec<&str> = credential_secret
        .iter()
        .chain(wrong_secret)
        .map(|(_, v)| *v)
        .collect();
    operator.assert_logs_free_of(&credentials);
    operator
}

#[tokio::test]
async fn cloudflare_through_its_fake_api() {
    let fake = FakeCloudflareApi::start().await;
    let wrong = unique_name("cf-wrong");
    caas_testbed::register_secret(&wrong);
    let url = fake.url.clone();
    let solver = |secret: &str| {
        json!({ "dns01": { "cloudflare": {
        "apiTokenSecretRef": { "name": secret, "key": "api-token" }, "apiURL": url
    } } })
    };
    provider_end_to_end(
        "cloudflare",
        &fake,
        solver,
        &[("api-token", &fake.credential)],
        &[("api-token", &wrong)],
        "Authentication error",
        &[],
    )
    .await;
}

#[tokio::test]
async fn digitalocean_through_its_fake_api_and_lego_through_the_same_fake() {
    let fake = FakeDigitalOceanApi::start().await;
    let wrong = unique_name("do-wrong");
    caas_testbed::register_secret(&wrong);
    let url = fake.url.clone();
    let solver = |secret: &str| {
        json!({ "dns01": { "digitalocean": {
        "tokenSecretRef": { "name": secret, "key": "access-token" }, "apiURL": url
    } } })
    };
    provider_end_to_end(
        "digitalocean",
        &fake,
        solver,
        &[("access-token", &fake.credential)],
        &[("access-token", &wrong)],
        "Unable to authenticate you",
        &[],
    )
    .await;
    lego(
        "digitalocean",
        &[
            ("DO_AUTH_TOKEN", fake.credential.as_str()),
            ("DO_API_URL", fake.url.as_str()),
        ],
        &fake,
    )
    .await;
}

#[tokio::test]
async fn httpreq_webhook_through_its_fake_server_and_lego_through_the_same_fake() {
    let fake = FakeHttpreqServer::start(&unique_name("user")).await;
    let (user, password) = fake.credential.split_once(':').unwrap();
    let url = fake.url.clone();
    let solver = |secret: &str| {
        json!({ "dns01": { "webhook": {
        "url": url, "basicAuthSecretRef": { "name": secret }
    } } })
    };
    let wrong = unique_name("pw-wrong");
    caas_testbed::register_secret(&wrong);
    provider_end_to_end(
        "httpreq",
        &fake,
        solver,
        &[("username", user), ("password", password)],
        &[("username", user), ("password", &wrong)],
        "HTTP 401",
        &[],
    )
    .await;
    lego(
        "httpreq",
        &[
            ("HTTPREQ_ENDPOINT", fake.url.as_str()),
            ("HTTPREQ_USERNAME", user),
            ("HTTPREQ_PASSWORD", password),
        ],
        &fake,
    )
    .await;
}

/// lego (Debian's) issues a certificate through the same fake: the fake speaks the API
/// the way a real client expects.
async fn lego(provider: &str, env: &[(&str, &str)], fake: &FakeDnsApi) {
    let domain = &format!("{}.{ZONE}", unique_name(&format!("lego-{provider}")));
    let lego = std::path::Path::new("/usr/bin/lego");
    assert!(
        lego.exists(),
        "lego is missing: install the test bed with `cargo xtask test-env` (Debian package lego)"
    );
    let pebble = Pebble::start(PebbleOptions::default());
    let dir = caas_testbed::scratch_dir("lego");
    let before = fake.log().len();
    let out = tokio::process::Command::new(lego)
        .args([
            "--server",
            &pebble.directory_url,
            "--email",
            "lego@example.com",
            "--accept-tos",
        ])
        .args([
            "--eab",
            "--kid",
            &pebble.eab_kid,
            "--hmac",
            &pebble.eab_hmac,
        ])
        .args(["--domains", domain, "--dns", provider, "--dns.disable-cp"])
        .args(["--dns.resolvers", &shared_bind().addr().to_string()])
        .args([
            "--key-type",
            "ec256",
            "--path",
            &dir.display().to_string(),
            "run",
        ])
        .env("LEGO_CA_CERTIFICATES", pebble.dir.join("ca.pem"))
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run lego");
    assert!(
        out.status.success(),
        "lego through the fake failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = &fake.log()[before..];
    assert!(
        log.iter().any(|l| l.starts_with("POST")),
        "lego changed records through the fake: {log:?}"
    );
    assert!(
        shared_bind()
            .dig(&format!("_acme-challenge.{domain}"), "TXT")
            .is_empty(),
        "lego's cleanup went through the fake into BIND"
    );
}

#[tokio::test]
async fn cname_delegation_is_followed_when_asked() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "cname").await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = dns_operator(&ns, &pebble);
    let mut solver = rfc2136_solver(&client, &ns).await;
    solver["dns01"]["cnameStrategy"] = json!("Follow");
    create_issuer(
        &client,
        &ns,
        "follow",
        &pebble,
        &pebble.eab_hmac,
        json!([solver]),
    )
    .await;
    // `_acme-challenge.delegated.acc.test` is a CNAME into the zone made for ACME.
    let name = format!("delegated.{ZONE}");
    create_certificate(
        &client,
        &ns,
        "web",
        json!({
            "secretName": "web-tls", "issuerRef": { "name": "follow" }, "dnsNames": [name]
        }),
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
    let target = format!("delegated.{DELEGATE_ZONE}");
    assert!(
        shared_bind().dig(&target, "TXT").is_empty(),
        "the record at the CNAME target was removed"
    );
    let logs = operator.logs();
    assert!(
        !logs.contains("refused the update of _acme-challenge.delegated"),
        "nothing written at the CNAME itself"
    );
}

#[tokio::test]
async fn acme_dns_through_its_fake_server() {
    // `_acme-challenge.acmedns.acc.test` is a CNAME to the account's fulldomain.
    let fulldomain = format!("acmedns.{DELEGATE_ZONE}");
    let fake = FakeAcmeDnsServer::start(&fulldomain).await;
    let domain = format!("acmedns.{ZONE}");
    let accounts = json!({ domain.clone(): fake.account.clone().unwrap() }).to_string();
    let mut wrong_account = fake.account.clone().unwrap();
    let wrong = unique_name("acmedns-wrong");
    caas_testbed::register_secret(&wrong);
    wrong_account["password"] = json!(wrong);
    let wrong_accounts = json!({ format!("refused.{ZONE}"): wrong_account }).to_string();

    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "acme-dns").await;
    let pebble = Pebble::start(PebbleOptions::default());
    let operator = dns_operator(&ns, &pebble);
    apply_secret(&client, &ns, "acme-dns", &[("acmedns.json", &accounts)]).await;
    apply_secret(
        &client,
        &ns,
        "acme-dns-wrong",
        &[("acmedns.json", &wrong_accounts)],
    )
    .await;
    let solver = |secret: &str| {
        json!([{ "dns01": { "acmeDNS": {
        "host": fake.url, "accountSecretRef": { "name": secret, "key": "acmedns.json" }
    } } }])
    };
    create_issuer(
        &client,
        &ns,
        "acme-dns",
        &pebble,
        &pebble.eab_hmac,
        solver("acme-dns"),
    )
    .await;
    create_issuer(
        &client,
        &ns,
        "wrong",
        &pebble,
        &pebble.eab_hmac,
        solver("acme-dns-wrong"),
    )
    .await;
    create_certificate(
        &client,
        &ns,
        "web",
        json!({
            "secretName": "web-tls", "issuerRef": { "name": "acme-dns" },
            "dnsNames": [domain, format!("*.{domain}")]
        }),
    )
    .await;
    create_certificate(&client, &ns, "refused", json!({
        "secretName": "refused-tls", "issuerRef": { "name": "wrong" }, "dnsNames": [format!("refused.{ZONE}")]
    }))
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
    let chain = secret_text(
        &Api::<Secret>::namespaced(client.clone(), &ns)
            .get("web-tls")
            .await
            .unwrap(),
        "tls.crt",
    );
    let root = pebble.issuance_root().await;
    verify_chain(&chain, &root, &domain).expect("apex");
    verify_chain(&chain, &root, &format!("x.{domain}")).expect("wildcard");
    let refused = wait_cert_ready(
        &client,
        &ns,
        "refused",
        "False",
        Some("DNSUpdateFailed"),
        TIMEOUT,
        &operator,
    )
    .await;
    let (_, _, message) = condition(&refused.status.unwrap().conditions, "Ready").unwrap();
    assert!(
        message.contains("HTTP 401: forbidden") && !message.contains(&wrong),
        "{message}"
    );
    operator.assert_logs_free_of(&[&fake.credential, &wrong]);

    // Debian's lego 4.9.1 is built without its acme-dns provider ("unrecognized DNS
    // provider: acme-dns"), so only the operator talks to this fake; its requests follow
    // acme-dns's README (POST /update, X-Api-User, X-Api-Key, {"subdomain", "txt"}).
    assert!(
        fake.log()
            .iter()
            .any(|l| l.starts_with("POST /update -> 200")),
        "{:?}",
        fake.log()
    );
}

#[tokio::test]
async fn cloud_dns_through_its_fake_api() {
    let fake = FakeCloudDnsApi::start().await;
    let other = fake.other_key.clone().unwrap();
    let url = fake.url.clone();
    let solver = |s: &str| {
        json!({ "dns01": { "cloudDNS": {
        "project": CLOUD_DNS_PROJECT,
        "serviceAccountSecretRef": { "name": s, "key": "key.json" },
        "apiURL": url
    } } })
    };
    let operator = provider_end_to_end(
        "clouddns",
        &fake,
        solver,
        &[("key.json", &fake.credential)],
        &[("key.json", &other)],
        "token request failed",
        &[],
    )
    .await;
    // gcp_auth keeps the token endpoint's answer out of its error and logs it: the
    // endpoint's own words reach the operator's log.
    assert!(
        operator.logs().contains("Invalid JWT Signature"),
        "the token endpoint's words in the log"
    );
}

#[tokio::test]
async fn azure_dns_through_its_fake_api() {
    use caas_testbed::{AZURE_CLIENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION, AZURE_TENANT};
    let fake = caas_testbed::FakeAzureDnsApi::start().await;
    let wrong = unique_name("azure-wrong");
    caas_testbed::register_secret(&wrong);
    let url = fake.url.clone();
    let authority = fake.authority.clone().unwrap();
    let solver = |s: &str| {
        json!({ "dns01": { "azureDNS": {
        "subscriptionID": AZURE_SUBSCRIPTION, "resourceGroupName": AZURE_RESOURCE_GROUP,
        "hostedZoneName": ZONE, "clientID": AZURE_CLIENT, "tenantID": AZURE_TENANT,
        "clientSecretSecretRef": { "name": s, "key": "client-secret" },
        "apiURL": url, "authorityURL": authority
    } } })
    };
    // Azure's SDK takes only https authorities: the fake's Entra ID serves TLS from a
    // CA of its own, which the operator trusts through SSL_CERT_FILE.
    let ca_file = fake.ca_file.clone().unwrap();
    let ca_file = ca_file.to_str().unwrap();
    provider_end_to_end(
        "azuredns",
        &fake,
        solver,
        &[("client-secret", &fake.credential)],
        &[("client-secret", &wrong)],
        "AADSTS7000215: Invalid client secret provided",
        &[("SSL_CERT_FILE", ca_file)],
    )
    .await;
}

/// A Certificate deleted while its TXT record is published through a hosted provider's
/// API (the propagation check still waiting: this operator asks the zone's nameservers,
/// which are not on port 53 here): the deletion finalizer removes the record through that
/// API, from the provider and from BIND, before the Certificate goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_certificate_mid_order_removes_its_record_through_the_provider() {
    let fake = FakeCloudflareApi::start().await;
    let bed = ProxiedBed::start("cf-delete", PebbleOptions::default()).await;
    apply_secret(
        &bed.client,
        &bed.ns,
        "dns-credential",
        &[("api-token", &fake.credential)],
    )
    .await;
    bed.issuer(json!([{ "dns01": { "cloudflare": {
        "apiTokenSecretRef": { "name": "dns-credential", "key": "api-token" }, "apiURL": fake.url
    } } }]))
    .await;
    let name = format!("{}.{ZONE}", unique_name("cf-del"));
    create_certificate(
        &bed.client,
        &bed.ns,
        "del",
        json!({ "secretName": "del-tls", "issuerRef": { "name": "ca" }, "dnsNames": [name] }),
    )
    .await;
    let record = format!("_acme-challenge.{name}");
    let published = || {
        let in_bind = !shared_bind().dig(&record, "TXT").is_empty();
        let at_provider = fake.records().iter().any(|(n, _)| *n == record);
        (in_bind, at_provider)
    };
    wait_for(
        "the TXT record published through the fake Cloudflare API",
        TIMEOUT,
        Some(&bed.operator),
        || async { published() },
        |p: &(bool, bool)| *p == (true, true),
    )
    .await;
    bed.delete_guarded_certificate("del").await;
    assert_eq!(
        published(),
        (false, false),
        "the record was removed from BIND and from the provider before the Certificate went: {:?}",
        fake.log()
    );
    bed.operator.assert_logs_free_of(&[&fake.credential]);
}
