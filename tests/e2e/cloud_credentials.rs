//! Cloud credentials of the DNS-01 providers, and record sets shared by writers:
//!
//! * the ambient paths: Cloud DNS through the GCE metadata server (`GCE_METADATA_HOST`),
//!   Azure DNS through workload identity (`AZURE_FEDERATED_TOKEN_FILE`, ...), each to a
//!   Ready Certificate;
//! * the fakes of the identity endpoints are faithful: Google's and Microsoft's official
//!   Python clients (google-auth, azure-identity) get tokens from them that the fake
//!   DNS APIs accept;
//! * ten Certificates for one name at once (ten TXT values in one record set) all end
//!   Ready through Cloud DNS, Azure DNS and Cloudflare, no value lost on the way: the
//!   fakes refuse a write of a set that changed since it was read, as the services do.

use std::time::Duration;

use caas_testbed::{
    AZURE_CLIENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION, AZURE_TENANT, CLOUD_DNS_PROJECT,
    FakeAzureDnsApi, FakeCloudDnsApi, FakeCloudflareApi, FakeDnsApi, Pebble, PebbleOptions,
    shared_apiserver, unique_name,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::{Value, json};

use crate::dns_providers::dns_operator_env;
use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A namespace, a Pebble (`pebble_env` added) and the operator with `env`, and issuer
/// `dns` with `solver`, after `secrets` (name, key-values) are applied.
async fn bed(
    prefix: &str,
    env: &[(&str, &str)],
    pebble_env: &[(&str, &str)],
    secrets: &[(&str, &[(&str, &str)])],
    solver: Value,
) -> (kube::Client, String, Pebble, Operator) {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, prefix).await;
    let env_owned = pebble_env.iter();
    let options = PebbleOptions {
        env: env_owned
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PebbleOptions::default()
    };
    let pebble = Pebble::start(options);
    let operator = dns_operator_env(&ns, &pebble, env);
    for (name, data) in secrets {
        apply_secret(&client, &ns, name, data).await;
    }
    create_issuer(
        &client,
        &ns,
        "dns",
        &pebble,
        &pebble.eab_hmac,
        json!([solver]),
    )
    .await;
    (client, ns, pebble, operator)
}

/// One Certificate for a new name in the zone through issuer `dns`, Ready.
async fn one_certificate(client: &kube::Client, ns: &str, operator: &Operator, prefix: &str) {
    let name = format!("{}.{ZONE}", unique_name(prefix));
    create_certificate(
        client,
        ns,
        "web",
        json!({ "secretName": "web-tls", "issuerRef": { "name": "dns" }, "dnsNames": [name] }),
    )
    .await;
    wait_cert_ready(client, ns, "web", "True", Some("Issued"), TIMEOUT, operator).await;
}

#[tokio::test]
async fn cloud_dns_through_the_gce_metadata_server() {
    let fake = FakeCloudDnsApi::start().await;
    let host = fake.metadata_host.clone().unwrap();
    // No serviceAccountSecretRef: the workload's own identity (GKE Workload Identity).
    let solver =
        json!({ "dns01": { "cloudDNS": { "project": CLOUD_DNS_PROJECT, "apiURL": fake.url } } });
    let env = [("GCE_METADATA_HOST", host.as_str())];
    let (client, ns, _pebble, operator) = bed("gce-metadata", &env, &[], &[], solver).await;
    one_certificate(&client, &ns, &operator, "gce").await;
    let token = "GET /computeMetadata/v1/instance/service-accounts/default/token -> 200";
    assert!(
        fake.log().iter().any(|l| l == token),
        "the token came from the metadata server: {:?}",
        fake.log()
    );
    assert!(
        operator
            .logs()
            .contains(&format!("Google: metadata server {host}")),
        "the credential source is named in the log"
    );
    operator.assert_logs_free_of(
        &caas_testbed::registered_secrets()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

#[tokio::test]
async fn azure_dns_through_workload_identity() {
    let fake = FakeAzureDnsApi::start().await;
    let authority = fake.authority.clone().unwrap();
    let token_file = fake.federated_token_file.clone().unwrap();
    let ca_file = fake.ca_file.clone().unwrap();
    // No clientSecretSecretRef, clientID, tenantID or authorityURL: all from the
    // environment AKS's workload identity webhook sets.
    let solver = json!({ "dns01": { "azureDNS": {
        "subscriptionID": AZURE_SUBSCRIPTION, "resourceGroupName": AZURE_RESOURCE_GROUP,
        "hostedZoneName": ZONE, "apiURL": fake.url
    } } });
    let env = [
        ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AZURE_CLIENT_ID", AZURE_CLIENT),
        ("AZURE_TENANT_ID", AZURE_TENANT),
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
        ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
    ];
    let (client, ns, _pebble, operator) = bed("azure-wi", &env, &[], &[], solver).await;
    one_certificate(&client, &ns, &operator, "azure-wi").await;
    let token = format!("POST /{AZURE_TENANT}/oauth2/v2.0/token -> 200");
    assert!(
        fake.log().contains(&token),
        "the token came from Entra ID: {:?}",
        fake.log()
    );
    let source = format!("Azure: workload identity (federated token) for client {AZURE_CLIENT}");
    assert!(
        operator.logs().contains(&source),
        "the credential source is named in the log"
    );
    operator.assert_logs_free_of(
        &caas_testbed::registered_secrets()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
}

/// Runs `script` with the test bed's Python (the cloud providers' official clients),
/// with `env`; panics with its output unless it succeeds. (Asynchronously: the fakes it
/// talks to run on this test's runtime.)
pub(crate) async fn cloud_python(script: &str, env: &[(&str, &str)]) -> String {
    let python = caas_testbed::tool("cloud-python");
    let out = tokio::process::Command::new(python)
        .args(["-c", script])
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run cloud-python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the official client failed against the fake:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn google_auth_gets_tokens_from_the_fakes_that_cloud_dns_accepts() {
    let fake = FakeCloudDnsApi::start().await;
    let script = r#"
import json, os, requests
import google.auth.transport.requests as transport
from google.auth import compute_engine
from google.oauth2 import service_account

request = transport.Request()
metadata = compute_engine.Credentials()
metadata.refresh(request)
key = service_account.Credentials.from_service_account_info(
    json.loads(os.environ["KEY"]),
    scopes=["https://www.googleapis.com/auth/ndev.clouddns.readwrite"])
key.refresh(request)
zones = os.environ["API"] + "/dns/v1/projects/" + os.environ["PROJECT"] + "/managedZones?dnsName=acc.test."
for name, creds in (("metadata", metadata), ("key", key)):
    answer = requests.get(zones, headers={"Authorization": "Bearer " + creds.token})
    assert answer.status_code == 200 and answer.json()["managedZones"], (name, answer.status_code, answer.text)
    print(name, "ok")
print("email", metadata.service_account_email)
"#;
    let out = cloud_python(
        script,
        &[
            ("GCE_METADATA_HOST", fake.metadata_host.as_deref().unwrap()),
            ("KEY", &fake.credential),
            ("API", &fake.url),
            ("PROJECT", CLOUD_DNS_PROJECT),
        ],
    )
    .await;
    assert!(
        out.contains("metadata ok") && out.contains("key ok"),
        "{out}"
    );
    assert!(out.contains(".iam.gserviceaccount.com"), "{out}");
}

#[tokio::test]
async fn azure_identity_gets_tokens_from_the_fake_entra_id_that_azure_dns_accepts() {
    let fake = FakeAzureDnsApi::start().await;
    let script = r#"
import os, requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

e = os.environ
options = dict(authority=e["AUTHORITY"], disable_instance_discovery=True)
scope = "https://management.azure.com/.default"
workload = WorkloadIdentityCredential(tenant_id=e["TENANT"], client_id=e["CLIENT"],
                                      token_file_path=e["TOKEN_FILE"], **options)
secret = ClientSecretCredential(e["TENANT"], e["CLIENT"], e["SECRET"], **options)
zone = e["API"] + "/subscriptions/" + e["SUBSCRIPTION"] + "/resourceGroups/" + e["GROUP"] + \
    "/providers/Microsoft.Network/dnsZones/acc.test?api-version=2018-05-01"
for name, credential in (("workload", workload), ("secret", secret)):
    token = credential.get_token(scope).token
    answer = requests.get(zone, headers={"Authorization": "Bearer " + token})
    assert answer.status_code == 200, (name, answer.status_code, answer.text)
    print(name, "ok")
try:
    ClientSecretCredential(e["TENANT"], e["CLIENT"], "wrong", **options).get_token(scope)
    raise SystemExit("a wrong secret got a token")
except ClientAuthenticationError as error:
    assert "AADSTS7000215" in str(error), str(error)
    print("refused ok")
"#;
    let token_file = fake.federated_token_file.clone().unwrap();
    let ca_file = fake.ca_file.clone().unwrap();
    let out = cloud_python(
        script,
        &[
            ("AUTHORITY", fake.authority.as_deref().unwrap()),
            ("REQUESTS_CA_BUNDLE", ca_file.to_str().unwrap()),
            ("TOKEN_FILE", token_file.to_str().unwrap()),
            ("TENANT", AZURE_TENANT),
            ("CLIENT", AZURE_CLIENT),
            ("SECRET", &fake.credential),
            ("API", &fake.url),
            ("SUBSCRIPTION", AZURE_SUBSCRIPTION),
            ("GROUP", AZURE_RESOURCE_GROUP),
        ],
    )
    .await;
    for line in ["workload ok", "secret ok", "refused ok"] {
        assert!(out.contains(line), "{line}: {out}");
    }
}

/// Ten Certificates for one name through issuer `dns` at once: ten values in one TXT
/// set. All end Ready, no Event reports a failed update, challenge or order, and the
/// provider saw ten distinct values added and none left.
async fn ten_at_once(
    prefix: &str,
    fake: &FakeDnsApi,
    solver: Value,
    secrets: &[(&str, &[(&str, &str)])],
    env: &[(&str, &str)],
) {
    // Ten issuers, so ten ACME accounts: each account's first order for the name gets
    // an authorization (and a value) of its own. With one account, Pebble reuses an
    // account's valid authorization for an order once in a hundred even with
    // `PEBBLE_AUTHZREUSE=0` (its test is `rand.Intn(100) > percent`), and that order
    // writes no value.
    let pebble_env = [("PEBBLE_AUTHZREUSE", "0")];
    let (client, ns, pebble, operator) =
        bed(prefix, env, &pebble_env, secrets, solver.clone()).await;
    let name = format!("{}.{ZONE}", unique_name(prefix));
    let certs: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for cert in &certs {
        let issuer = format!("dns-{cert}");
        let hmac = &pebble.eab_hmac;
        create_issuer(&client, &ns, &issuer, &pebble, hmac, json!([solver])).await;
        let spec = json!({ "secretName": format!("{cert}-tls"), "issuerRef": { "name": issuer }, "dnsNames": [name] });
        create_certificate(&client, &ns, cert, spec).await;
    }
    for cert in &certs {
        let timeout = Duration::from_secs(180);
        wait_cert_ready(
            &client,
            &ns,
            cert,
            "True",
            Some("Issued"),
            timeout,
            &operator,
        )
        .await;
    }
    // The provider never gave up on a write (conflicts were redone), and no write of
    // the whole set undid another writer's value.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let events = events.list(&Default::default()).await.unwrap().items;
    let reasons = |reason: &str| -> Vec<Option<String>> {
        let matching = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason));
        matching.map(|e| e.note.clone()).collect()
    };
    let refused = reasons("DNSUpdateFailed");
    assert!(refused.is_empty(), "no DNS update failed: {refused:?}");
    assert!(
        fake.overwrites().is_empty(),
        "no value lost to a stale whole-set write: {:?}\nthe provider's changes:\n{}",
        fake.overwrites(),
        fake.timeline().join("\n")
    );
    // An order can still fail here when Pebble misses a value BIND holds (seen with
    // Cloudflare too, whose records are separate: ten values at one name make a large
    // UDP answer); it is retried, and reported here for the record.
    let failed = reasons("OrderFailed");
    eprintln!("{prefix}: orders failed and retried: {failed:?}");
    let record = format!("_acme-challenge.{name}");
    let mut values: Vec<String> = fake
        .added()
        .into_iter()
        .filter(|(n, _)| *n == record)
        .map(|(_, v)| v)
        .collect();
    values.sort();
    values.dedup();
    assert!(
        values.len() >= 10,
        "ten distinct values published (more when an order was retried): {values:?}"
    );
    // Cleanup runs after each Certificate is Ready.
    wait_for(
        "every value removed afterwards",
        TIMEOUT,
        Some(&operator),
        || async {
            let left = fake.records().into_iter();
            left.filter(|(n, _)| *n == record).collect::<Vec<_>>()
        },
        |left| left.is_empty(),
    )
    .await;
    eprintln!(
        "{prefix}: {} conditional writes refused and redone: {:?}",
        fake.conflicts().len(),
        fake.conflicts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_values_for_one_name_at_once_through_cloud_dns() {
    let fake = FakeCloudDnsApi::start().await;
    let solver = json!({ "dns01": { "cloudDNS": {
        "project": CLOUD_DNS_PROJECT, "apiURL": fake.url,
        "serviceAccountSecretRef": { "name": "gcp", "key": "key.json" }
    } } });
    let secrets: &[(&str, &[(&str, &str)])] = &[("gcp", &[("key.json", &fake.credential)])];
    ten_at_once("gcp-ten", &fake, solver, secrets, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_values_for_one_name_at_once_through_azure_dns() {
    let fake = FakeAzureDnsApi::start().await;
    let solver = json!({ "dns01": { "azureDNS": {
        "subscriptionID": AZURE_SUBSCRIPTION, "resourceGroupName": AZURE_RESOURCE_GROUP,
        "hostedZoneName": ZONE, "clientID": AZURE_CLIENT, "tenantID": AZURE_TENANT,
        "clientSecretSecretRef": { "name": "azure", "key": "client-secret" },
        "apiURL": fake.url, "authorityURL": fake.authority
    } } });
    let secrets: &[(&str, &[(&str, &str)])] = &[("azure", &[("client-secret", &fake.credential)])];
    let ca_file = fake.ca_file.clone().unwrap();
    let env = [("SSL_CERT_FILE", ca_file.to_str().unwrap())];
    ten_at_once("azure-ten", &fake, solver, secrets, &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_values_for_one_name_at_once_through_cloudflare() {
    let fake = FakeCloudflareApi::start().await;
    let solver = json!({ "dns01": { "cloudflare": {
        "apiTokenSecretRef": { "name": "cf", "key": "api-token" }, "apiURL": fake.url
    } } });
    let secrets: &[(&str, &[(&str, &str)])] = &[("cf", &[("api-token", &fake.credential)])];
    ten_at_once("cf-ten", &fake, solver, secrets, &[]).await;
}
