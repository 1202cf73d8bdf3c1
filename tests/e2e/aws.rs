//! Route 53 through moto (the maintained AWS emulator, IAM authentication on) with each
//! way a production cluster holds AWS credentials: static keys in a Secret (and a wrong
//! one refused), IRSA's web identity, EKS Pod Identity, and `route53.role` assumed with
//! keys that alone may not touch Route 53. Every change reaches BIND through the test
//! bed's mirror, so Pebble validates for real. Also: ten Certificates presenting ten
//! values for one name at once lose none, and boto3 (AWS's official client) proves the
//! mirror answers as Route 53 does.

use std::time::Duration;

use caas_operator::api::issuer::CaaSIssuer;
use caas_testbed::{
    Pebble, PebbleOptions, scratch_dir, shared_apiserver, shared_bind, shared_moto, unique_name,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(90);

/// The operator with `env` (AWS through moto), checking DNS through BIND alone.
fn aws_operator(ns: &str, pebble: &Pebble, env: &[(String, String)]) -> Operator {
    let bind = shared_bind();
    let mut all = shared_moto().env();
    all.extend(env.iter().cloned());
    let env: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Operator::start_env(
        shared_apiserver(),
        ns,
        pebble.http_port,
        &[
            &format!("--tls-alpn01-addr=127.0.0.1:{}", pebble.tls_port),
            &format!("--dns01-recursive-nameservers={}", bind.addr()),
            "--dns01-recursive-nameservers-only",
            "--issuer-ambient-credentials",
        ],
        &env,
    )
}

struct Case {
    client: kube::Client,
    ns: String,
    operator: Operator,
}

/// An issuer `aws` with `route53` as its DNS-01 solver (and Secret `aws` holding
/// `secret`, if any), under an operator with `env`.
async fn case(
    prefix: &str,
    env: &[(String, String)],
    route53: serde_json::Value,
    secret: &[(&str, &str)],
) -> (Case, Pebble) {
    case_with(prefix, PebbleOptions::default(), env, route53, secret).await
}

async fn case_with(
    prefix: &str,
    options: PebbleOptions,
    env: &[(String, String)],
    route53: serde_json::Value,
    secret: &[(&str, &str)],
) -> (Case, Pebble) {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, prefix).await;
    let pebble = Pebble::start(options);
    let operator = aws_operator(&ns, &pebble, env);
    if !secret.is_empty() {
        apply_secret(&client, &ns, "aws", secret).await;
    }
    let solvers = json!([{ "dns01": { "route53": route53 } }]);
    create_issuer(&client, &ns, "aws", &pebble, &pebble.eab_hmac, solvers).await;
    (
        Case {
            client,
            ns,
            operator,
        },
        pebble,
    )
}

/// A wildcard + apex Certificate through issuer `aws`, issued and its records cleaned
/// from BIND; the issuer's status names the credential source (containing `source`).
async fn issues(case: &Case, pebble: &Pebble, source: &str) {
    let base = format!("{}.{ZONE}", unique_name("r53"));
    create_certificate(
        &case.client,
        &case.ns,
        "web",
        json!({
            "secretName": "web-tls", "issuerRef": { "name": "aws" },
            "dnsNames": [base, format!("*.{base}")]
        }),
    )
    .await;
    wait_cert_ready(
        &case.client,
        &case.ns,
        "web",
        "True",
        Some("Issued"),
        TIMEOUT,
        &case.operator,
    )
    .await;
    let secret = Api::<Secret>::namespaced(case.client.clone(), &case.ns)
        .get("web-tls")
        .await
        .unwrap();
    let root = pebble.issuance_root().await;
    verify_chain(
        &secret_text(&secret, "tls.crt"),
        &root,
        &format!("x.{base}"),
    )
    .expect("wildcard");
    let record = format!("_acme-challenge.{base}");
    wait_for(
        "the records removed from BIND",
        TIMEOUT,
        Some(&case.operator),
        || async { shared_bind().dig(&record, "TXT") },
        |values| values.is_empty(),
    )
    .await;
    let issuers: Api<CaaSIssuer> = Api::namespaced(case.client.clone(), &case.ns);
    let status = issuers.get("aws").await.unwrap().status.unwrap_or_default();
    let creds = &status.cloud_credentials;
    assert!(
        creds.len() == 1
            && creds[0]
                .source
                .as_deref()
                .is_some_and(|s| s.contains(source)),
        "the issuer names its credential source ({source}): {creds:?}"
    );
}

/// A Certificate `name` through issuer `issuer`, refused: its Ready message.
async fn refused(case: &Case, issuer: &str, name: &str) -> String {
    create_certificate(
        &case.client,
        &case.ns,
        name,
        json!({
            "secretName": format!("{name}-tls"), "issuerRef": { "name": issuer },
            "dnsNames": [format!("{}.{ZONE}", unique_name(name))]
        }),
    )
    .await;
    let cert = wait_cert_ready(
        &case.client,
        &case.ns,
        name,
        "False",
        Some("DNSUpdateFailed"),
        TIMEOUT,
        &case.operator,
    )
    .await;
    condition(&cert.status.unwrap().conditions, "Ready")
        .unwrap()
        .2
}

fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn route53_with_static_keys_and_a_wrong_key_refused_in_awss_words() {
    let moto = shared_moto();
    let keys = &moto.dns_user;
    let route53 = json!({
        "region": "us-east-1",
        "accessKeyID": keys.access_key_id,
        "secretAccessKeySecretRef": { "name": "aws", "key": "secret-access-key" },
    });
    let (case, pebble) = case(
        "r53-keys",
        &[],
        route53,
        &[("secret-access-key", &keys.secret_access_key)],
    )
    .await;
    issues(&case, &pebble, "access key from Secret").await;

    let wrong = unique_name("wrong-aws-secret");
    caas_testbed::register_secret(&wrong);
    apply_secret(
        &case.client,
        &case.ns,
        "wrong",
        &[("secret-access-key", &wrong)],
    )
    .await;
    let solvers = json!([{ "dns01": { "route53": {
        "accessKeyIDSecretRef": { "name": "aws-id", "key": "id" },
        "secretAccessKeySecretRef": { "name": "wrong", "key": "secret-access-key" },
    } } }]);
    apply_secret(
        &case.client,
        &case.ns,
        "aws-id",
        &[("id", &keys.access_key_id)],
    )
    .await;
    create_issuer(
        &case.client,
        &case.ns,
        "wrong",
        &pebble,
        &pebble.eab_hmac,
        solvers,
    )
    .await;
    let message = refused(&case, "wrong", "refused").await;
    assert!(
        message.contains("SignatureDoesNotMatch") && message.contains("Route 53"),
        "AWS's own words: {message}"
    );
    assert!(!message.contains(&wrong) && !message.contains(&keys.secret_access_key));
    case.operator
        .assert_logs_free_of(&[&wrong, &keys.secret_access_key, &pebble.eab_hmac]);
}

#[tokio::test]
async fn route53_with_irsa_web_identity_through_sts() {
    let moto = shared_moto();
    let dir = scratch_dir("irsa");
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{}.sig", unique_name("irsa-token"));
    moto.register_web_identity_token(&token);
    let token_file = dir.join("token");
    std::fs::write(&token_file, &token).unwrap();
    let env = owned(&[
        ("AWS_ROLE_ARN", &moto.role_arn),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            &token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL_STS", &moto.url),
    ]);
    let (case, pebble) = case("r53-irsa", &env, json!({ "region": "us-east-1" }), &[]).await;
    issues(
        &case,
        &pebble,
        &format!("web identity (IRSA) for role {}", moto.role_arn),
    )
    .await;
    assert!(
        moto.log().iter().any(|l| l.starts_with("POST / -> 200")),
        "STS answered the web identity: {:?}",
        moto.log()
    );
    case.operator
        .assert_logs_free_of(&[&token, &pebble.eab_hmac]);
}

#[tokio::test]
async fn route53_with_eks_pod_identity() {
    let moto = shared_moto();
    let dir = scratch_dir("pod-identity");
    let token_file = dir.join("eks-pod-identity-token");
    std::fs::write(&token_file, &moto.pod_identity_token).unwrap();
    let env = owned(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &moto.pod_identity_url),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            &token_file.display().to_string(),
        ),
    ]);
    let (case, pebble) = case("r53-pod", &env, json!({}), &[]).await;
    issues(&case, &pebble, "EKS Pod Identity").await;
    case.operator
        .assert_logs_free_of(&[&moto.pod_identity_token, &pebble.eab_hmac]);
}

#[tokio::test]
async fn route53_role_is_assumed_with_keys_that_alone_may_not_change_dns() {
    let moto = shared_moto();
    let keys = &moto.assumer;
    let route53 = json!({
        "accessKeyIDSecretRef": { "name": "aws", "key": "access-key-id" },
        "secretAccessKeySecretRef": { "name": "aws", "key": "secret-access-key" },
        "role": moto.role_arn,
    });
    let secret = [
        ("access-key-id", keys.access_key_id.as_str()),
        ("secret-access-key", keys.secret_access_key.as_str()),
    ];
    let (case, pebble) = case("r53-role", &[], route53, &secret).await;
    issues(
        &case,
        &pebble,
        &format!("role {} assumed with access key", moto.role_arn),
    )
    .await;

    // The same keys without the role are refused by IAM: the role did the work.
    let solvers = json!([{ "dns01": { "route53": {
        "accessKeyIDSecretRef": { "name": "aws", "key": "access-key-id" },
        "secretAccessKeySecretRef": { "name": "aws", "key": "secret-access-key" },
    } } }]);
    create_issuer(
        &case.client,
        &case.ns,
        "no-role",
        &pebble,
        &pebble.eab_hmac,
        solvers,
    )
    .await;
    let message = refused(&case, "no-role", "no-role").await;
    assert!(message.contains("AccessDenied"), "IAM's words: {message}");
    case.operator
        .assert_logs_free_of(&[&keys.secret_access_key, &pebble.eab_hmac]);
}

/// Ten providers built from `solver` (as ten Certificates' solvers are) add ten values
/// to `name` at once: BIND ends up serving all ten; then all remove theirs at once and
/// none is left. The number served.
pub async fn ten_writers(
    client: &kube::Client,
    ns: &str,
    solver: serde_json::Value,
    name: &str,
) -> usize {
    use caas_operator::solvers::dns01::factory;
    let config: caas_operator::api::issuer::SolverConfig = serde_json::from_value(solver).unwrap();
    let spec: caas_operator::api::IssuerSpec = serde_json::from_value(json!({
        "server": "https://ca.invalid/directory", "solvers": [config.clone()],
        "privateKeySecretRef": { "name": "race-account" }
    }))
    .unwrap();
    let issuer = caas_operator::shared::IssuerHandle {
        kind: caas_operator::shared::IssuerKind::Namespaced,
        name: "race".into(),
        secret_namespace: ns.to_string(),
        spec,
        status: None,
        generation: None,
        annotations: Default::default(),
    };
    let mut providers = Vec::new();
    for _ in 0..10 {
        providers.push(
            factory::provider(client, &issuer, &config, Default::default())
                .await
                .expect("provider"),
        );
    }
    let values: Vec<String> = (0..10)
        .map(|i| format!("value-{i}-{}", unique_name("v")))
        .collect();
    let adds = providers
        .iter()
        .zip(&values)
        .map(|(p, v)| p.add_txt(name, v));
    for result in futures::future::join_all(adds).await {
        result.expect("add");
    }
    let mut served = shared_bind().dig(name, "TXT");
    served.sort();
    let mut wanted = values.clone();
    wanted.sort();
    assert_eq!(served, wanted, "all ten values served at {name}");
    let removes = providers
        .iter()
        .zip(&values)
        .map(|(p, v)| p.remove_txt(name, v));
    for result in futures::future::join_all(removes).await {
        result.expect("remove");
    }
    assert!(shared_bind().dig(name, "TXT").is_empty(), "all ten removed");
    served.len()
}

#[tokio::test]
async fn ten_certificates_presenting_one_name_at_once_lose_no_value_on_route53() {
    let moto = shared_moto();
    let keys = &moto.dns_user;
    let route53 = json!({
        "accessKeyID": keys.access_key_id,
        "secretAccessKeySecretRef": { "name": "aws", "key": "secret-access-key" },
    });
    let (case, _pebble) = case_with(
        "r53-ten",
        PebbleOptions {
            // Each order gets its own challenge: ten values at the name at once.
            env: vec![("PEBBLE_AUTHZREUSE".into(), "0".into())],
            ..PebbleOptions::default()
        },
        &[],
        route53,
        &[("secret-access-key", &keys.secret_access_key)],
    )
    .await;
    let name = format!("{}.{ZONE}", unique_name("ten"));
    for i in 0..10 {
        create_certificate(
            &case.client,
            &case.ns,
            &format!("c{i}"),
            json!({
                "secretName": format!("c{i}-tls"), "issuerRef": { "name": "aws" },
                "dnsNames": [name]
            }),
        )
        .await;
    }
    for i in 0..10 {
        let cert = wait_cert_ready(
            &case.client,
            &case.ns,
            &format!("c{i}"),
            "True",
            Some("Issued"),
            Duration::from_secs(180),
            &case.operator,
        )
        .await;
        let status = cert.status.unwrap();
        assert_eq!(
            status.failed_issuance_attempts.unwrap_or(0),
            0,
            "c{i} issued on its first order: no value was lost ({:?})",
            status.last_failure_time
        );
    }
    let conflicts = moto
        .log()
        .iter()
        .filter(|l| l.contains("/rrset") && l.ends_with("-> 400"))
        .count();
    eprintln!("Route 53 refused {conflicts} stale change batches (each read again and retried)");
}

/// Ten values written to one name at once through the provider itself (as ten
/// Certificates' solvers do), then removed at once: none lost, none left.
#[tokio::test]
async fn ten_values_written_to_one_name_at_once_all_end_served_on_route53() {
    let moto = shared_moto();
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "r53-race").await;
    let keys = &moto.dns_user;
    apply_secret(
        &client,
        &ns,
        "aws",
        &[("secret-access-key", &keys.secret_access_key)],
    )
    .await;
    let solver = json!({ "dns01": { "route53": {
        "region": "us-east-1",
        "accessKeyID": keys.access_key_id,
        "secretAccessKeySecretRef": { "name": "aws", "key": "secret-access-key" },
        "apiURL": moto.url,
    } } });
    let name = format!("_acme-challenge.{}.{ZONE}", unique_name("race"));
    let served = ten_writers(&client, &ns, solver, &name).await;
    let conflicts = moto
        .log()
        .iter()
        .filter(|l| l.contains("/rrset") && l.ends_with("-> 400"))
        .count();
    eprintln!(
        "{served} values served; Route 53 refused {conflicts} stale change batches (each read again and retried)"
    );
}

/// boto3 (AWS's official client) through the mirror: a change reaches BIND, and a stale
/// DELETE is refused with `InvalidChangeBatch` in Route 53's shape.
#[tokio::test]
async fn the_route53_mirror_answers_boto3_as_route53_does() {
    let moto = shared_moto();
    let name = format!("_acme-challenge.{}.{ZONE}", unique_name("boto3"));
    let script = r#"
import sys, boto3, botocore
url, key, secret, name = sys.argv[1:5]
r53 = boto3.client("route53", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=key, aws_secret_access_key=secret)
zone = r53.list_hosted_zones_by_name(DNSName="acc.test")["HostedZones"][0]["Id"]
def change(action, values):
    return {"Action": action, "ResourceRecordSet": {"Name": name, "Type": "TXT", "TTL": 60,
            "ResourceRecords": [{"Value": '"%s"' % v} for v in values]}}
r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [change("CREATE", ["one"])]})
try:
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [change("DELETE", ["stale"])]})
    print("STALE DELETE ACCEPTED")
except botocore.exceptions.ClientError as e:
    print("refused", e.response["Error"]["Code"], e.response["Error"]["Message"])
try:
    boto3.client("route53", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                 aws_secret_access_key="wrong").list_hosted_zones()
    print("WRONG KEY ACCEPTED")
except botocore.exceptions.ClientError as e:
    print("wrong key", e.response["Error"]["Code"])
"#;
    let out = std::process::Command::new(caas_testbed::tool("cloud-python"))
        .args(["-c", script, &moto.url, &moto.dns_user.access_key_id])
        .arg(&moto.dns_user.secret_access_key)
        .arg(&name)
        .output()
        .expect("cloud-python (cargo xtask test-env installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("refused InvalidChangeBatch [Tried to delete resource record set")
            && stdout.contains("do not match the current values"),
        "{stdout}"
    );
    assert!(
        stdout.contains("wrong key SignatureDoesNotMatch"),
        "{stdout}"
    );
    assert_eq!(shared_bind().dig(&name, "TXT"), vec!["one".to_string()]);
}
