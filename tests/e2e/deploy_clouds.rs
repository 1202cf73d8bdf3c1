//! Deploy targets in the clouds without an emulator here, through fakes of their REST
//! APIs (`caas_testbed::fake_dns::deploy`), each fake first checked against the
//! provider's official Python client: Cloudflare custom certificates, Azure Key Vault,
//! Google Certificate Manager. For each destination one run: the destination down at
//! the first issuance (the Secret written at once, `Deployed=False` in the provider's
//! words), then back (deployed, the remote serial the Secret's), a renewal into the
//! same certificate, wrong credentials refused with a clear reason, and
//! `deletionPolicy: Delete` removing the copy with its Certificate. The operator's
//! logs, events and status are scanned for every credential when it stops.

use caas_operator::api::Certificate;
use caas_operator::decide::deploy::same_serial;
use caas_testbed::{
    AZURE_CLIENT, AZURE_TENANT, CLOUD_DNS_PROJECT, FakeCertificateManager, FakeCloudflareApi,
    FakeDnsApi, FakeKeyVault,
};
use kube::api::Api;
use serde_json::{Value, json};

use crate::cloud_credentials::cloud_python;
use crate::deploy::{bed_with, deployed};
use crate::support::*;

/// The id the Cloudflare fake gives the `acc.test` zone.
const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";

/// A throwaway certificate and its PKCS#8 key, as files for the Python clients.
fn test_pem() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["client.acc.test".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = caas_testbed::scratch_dir("deploy-clients");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    )
}

#[tokio::test]
async fn the_cloudflare_fake_answers_the_cloudflare_sdk() {
    let fake = FakeCloudflareApi::start().await;
    let (cert, key) = test_pem();
    let script = r#"
import os, sys
import cloudflare
from cloudflare import Cloudflare
zone = os.environ["ZONE_ID"]
pem, key = open(os.environ["CERT_PEM"]).read(), open(os.environ["KEY_PEM"]).read()
client = Cloudflare(api_token=os.environ["TOKEN"], base_url=os.environ["API"], max_retries=0)
c = client.custom_certificates.create(zone_id=zone, certificate=pem, private_key=key, bundle_method="ubiquitous", type="sni_custom")
assert c.id and c.status == "active" and c.expires_on, c
e = client.custom_certificates.edit(custom_certificate_id=c.id, zone_id=zone, certificate=pem, private_key=key, bundle_method="ubiquitous")
assert e.id != c.id, "a PATCH of sni_custom answers a new id"
g = client.custom_certificates.get(e.id, zone_id=zone)
assert g.id == e.id and g.expires_on == c.expires_on and g.bundle_method == "ubiquitous", g
try:
    client.custom_certificates.get(c.id, zone_id=zone); sys.exit("the old id should be gone")
except cloudflare.NotFoundError:
    pass
assert client.custom_certificates.delete(e.id, zone_id=zone).id == e.id
dns_only = Cloudflare(api_token=os.environ["DNS_ONLY"], base_url=os.environ["API"], max_retries=0)
try:
    dns_only.custom_certificates.create(zone_id=zone, certificate=pem, private_key=key, type="sni_custom")
    sys.exit("a DNS-only token should be refused")
except cloudflare.PermissionDeniedError as e:
    print("refused", e.body)
print("ALL OK")
"#;
    let dns_only = fake.dns_only_token.clone().unwrap();
    let out = cloud_python(
        script,
        &[
            ("API", &fake.url),
            ("TOKEN", &fake.credential),
            ("DNS_ONLY", &dns_only),
            ("ZONE_ID", ZONE_ID),
            ("CERT_PEM", &cert),
            ("KEY_PEM", &key),
        ],
    )
    .await;
    assert!(
        out.contains("'code': 10000") && out.contains("ALL OK"),
        "{out}"
    );
    assert!(fake.stored_keys().is_empty(), "deleted: {:?}", fake.log());
}

#[tokio::test]
async fn the_key_vault_fake_answers_azure_keyvault_certificates() {
    let fake = FakeKeyVault::start().await;
    let (cert, key) = test_pem();
    let script = r#"
import os, sys
from azure.identity import ClientSecretCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, CertificateContentType
ca = os.environ["SSL_CERT_FILE"]
cred = ClientSecretCredential(os.environ["TENANT"], os.environ["CLIENT"], os.environ["SECRET"],
    authority=os.environ["AUTHORITY"], connection_verify=ca, disable_instance_discovery=True)
client = CertificateClient(os.environ["VAULT"], cred, verify_challenge_resource=False, connection_verify=ca)
bundle = open(os.environ["KEY_PEM"], "rb").read() + open(os.environ["CERT_PEM"], "rb").read()
policy = CertificatePolicy(content_type=CertificateContentType.pem)
one = client.import_certificate("shop", certificate_bytes=bundle, policy=policy)
two = client.import_certificate("shop", certificate_bytes=bundle, policy=policy)
assert one.properties.version != two.properties.version
got = client.get_certificate("shop")
assert got.properties.version == two.properties.version and got.cer, got.id
assert len(list(client.list_properties_of_certificate_versions("shop"))) == 2
poller = client.begin_delete_certificate("shop", _polling_interval=0.2)
poller.wait()
assert poller.result().recovery_id
try:
    client.get_certificate("shop"); sys.exit("deleted")
except ResourceNotFoundError:
    pass
try:
    client.import_certificate("shop", certificate_bytes=bundle, policy=policy); sys.exit("soft-deleted names are taken")
except Exception as e:
    assert e.status_code == 409, e
print("ALL OK")
"#;
    let ca = fake.ca_file.clone().unwrap().display().to_string();
    let out = cloud_python(
        script,
        &[
            ("VAULT", &fake.url),
            ("AUTHORITY", fake.authority.as_deref().unwrap()),
            ("TENANT", AZURE_TENANT),
            ("CLIENT", AZURE_CLIENT),
            ("SECRET", &fake.credential),
            ("SSL_CERT_FILE", &ca),
            ("REQUESTS_CA_BUNDLE", &ca),
            ("CERT_PEM", &cert),
            ("KEY_PEM", &key),
        ],
    )
    .await;
    assert!(out.contains("ALL OK"), "{out}");
    let log = fake.log();
    let challenged = log
        .iter()
        .any(|l| l.contains("/import?") && l.ends_with("401"));
    assert!(challenged, "the client met the challenge first: {log:?}");
}

#[tokio::test]
async fn the_certificate_manager_fake_answers_google_cloud_certificate_manager() {
    let fake = FakeCertificateManager::start().await;
    let (cert, key) = test_pem();
    let script = r#"
import json, os, sys
from google.cloud import certificate_manager_v1 as cm
from google.api_core import exceptions
from google.oauth2 import service_account
creds = service_account.Credentials.from_service_account_info(json.loads(os.environ["KEY"]),
    scopes=["https://www.googleapis.com/auth/cloud-platform"])
client = cm.CertificateManagerClient(transport="rest", credentials=creds, client_options={"api_endpoint": os.environ["API"]})
parent = "projects/" + os.environ["PROJECT"] + "/locations/global"
name = parent + "/certificates/shop"
managed = cm.Certificate.SelfManagedCertificate(pem_certificate=open(os.environ["CERT_PEM"]).read(),
    pem_private_key=open(os.environ["KEY_PEM"]).read())
made = client.create_certificate(parent=parent, certificate_id="shop", certificate=cm.Certificate(self_managed=managed)).result(timeout=60)
assert made.name == name and made.san_dnsnames == ["client.acc.test"], made
updated = client.update_certificate(certificate=cm.Certificate(name=name, self_managed=managed),
    update_mask={"paths": ["self_managed"]}).result(timeout=60)
assert updated.name == name
got = client.get_certificate(name=name)
assert got.pem_certificate.startswith("-----BEGIN CERTIFICATE-----") and got.expire_time, got
try:
    client.create_certificate(parent=parent, certificate_id="shop", certificate=cm.Certificate(self_managed=managed), retry=None)
    sys.exit("exists")
except exceptions.Conflict:
    pass
try:
    client.get_certificate(name="projects/other/locations/global/certificates/shop", retry=None); sys.exit("other project")
except exceptions.Forbidden as e:
    print("forbidden", e.message)
client.delete_certificate(name=name).result(timeout=60)
try:
    client.get_certificate(name=name, retry=None); sys.exit("deleted")
except exceptions.NotFound:
    pass
print("ALL OK")
"#;
    let out = cloud_python(
        script,
        &[
            ("API", &fake.url),
            ("KEY", &fake.credential),
            ("PROJECT", CLOUD_DNS_PROJECT),
            ("CERT_PEM", &cert),
            ("KEY_PEM", &key),
        ],
    )
    .await;
    assert!(
        out.contains("ALL OK") && out.contains("certificatemanager.certs.get"),
        "{out}"
    );
    let polled = fake.log().iter().any(|l| l.contains("/operations/"));
    assert!(polled, "the client polled an operation: {:?}", fake.log());
}

/// One destination's run (see the module's text).
struct Case<'a> {
    prefix: &'a str,
    fake: &'a FakeDnsApi,
    /// The operator's environment (the fake's CA).
    env: Vec<(String, String)>,
    /// The target's block with good credentials in Secret `cloud` (key `credential`).
    spec: Value,
    credential: &'a str,
    /// A wrong credential, and the words its refusal must hold.
    wrong: &'a str,
    wrong_words: &'a str,
    /// The words of an outage.
    down_words: &'a str,
    /// The fake's key for a `remoteID`.
    key_of: fn(&str) -> String,
    /// Whether a renewal keeps the remote ID (Cloudflare's sni_custom answers a new one).
    same_id: bool,
}

async fn cloud_destination_end_to_end(case: Case<'_>) {
    let bed = bed_with(case.prefix, &[], &case.env).await;
    apply_secret(
        &bed.client,
        &bed.ns,
        "cloud",
        &[("credential", case.credential)],
    )
    .await;
    apply_secret(&bed.client, &bed.ns, "wrong", &[("credential", case.wrong)]).await;
    let mut spec = case.spec.clone();
    spec["deletionPolicy"] = json!("Delete");
    bed.target("dest", spec).await;
    // Down at the first issuance: the Secret is written at once all the same.
    case.fake.set_down(true);
    bed.certificate("edge", &["dest"]).await;
    bed.wait_issued("edge").await;
    let down = bed
        .entry_where("edge", "dest", "unreachable", |e| {
            deployed(e).is_some_and(|c| c.1 == "DestinationUnreachable")
        })
        .await;
    let (_, _, message) = deployed(&down).unwrap();
    assert!(
        message.contains(case.down_words),
        "the provider's words: {message}"
    );
    assert!(down.remote_id.is_none() && down.next_attempt_time.is_some());
    case.fake.set_down(false);
    let up = bed
        .entry_where("edge", "dest", "deployed after the outage", |e| {
            e.is_deployed()
        })
        .await;
    let id = up.remote_id.clone().expect("the remote ID");
    let serial = bed.secret_serial("edge-tls").await;
    let remote = case.fake.remote_serial(&(case.key_of)(&id));
    assert!(
        remote.as_deref().is_some_and(|r| same_serial(r, &serial)),
        "the destination holds {remote:?}, the Secret {serial}"
    );
    // A renewal goes into the same certificate.
    bed.renew("edge").await;
    let renewed = bed.secret_serial("edge-tls").await;
    let second = bed
        .entry_where("edge", "dest", "renewed", |e| {
            e.serial.as_deref() == Some(renewed.as_str()) && e.is_deployed()
        })
        .await;
    let id2 = second.remote_id.clone().unwrap();
    if case.same_id {
        assert_eq!(id2, id, "the same remote certificate");
    }
    let remote = case.fake.remote_serial(&(case.key_of)(&id2));
    assert!(
        remote.as_deref().is_some_and(|r| same_serial(r, &renewed)),
        "{remote:?} vs {renewed}"
    );
    assert_eq!(
        case.fake
            .stored_keys()
            .iter()
            .filter(|k| !k.contains("/operations/"))
            .count(),
        1,
        "one copy: {:?}",
        case.fake.stored_keys()
    );
    // Wrong credentials: refused with a reason, the Secret written anyway.
    let mut wrong = case.spec.clone();
    let block = wrong.as_object_mut().unwrap().values_mut().next().unwrap();
    for field in [
        "apiTokenSecretRef",
        "clientSecretSecretRef",
        "serviceAccountSecretRef",
    ] {
        if block.get(field).is_some() {
            block[field] = json!({ "name": "wrong", "key": "credential" });
        }
    }
    bed.target("wrong", wrong).await;
    bed.certificate("other", &["wrong"]).await;
    bed.wait_issued("other").await;
    let refused = bed
        .entry_where("other", "wrong", "refused", |e| {
            deployed(e).is_some_and(|c| c.0 == "False" && c.2.contains(case.wrong_words))
        })
        .await;
    assert_eq!(deployed(&refused).unwrap().1, "DestinationRefused");
    // deletionPolicy Delete: the copy goes with its Certificate.
    bed.delete_and_wait("edge").await;
    assert!(
        case.fake.remote_serial(&(case.key_of)(&id2)).is_none(),
        "deleted before the finalizer went: {:?}",
        case.fake.log()
    );
    bed.operator
        .assert_logs_free_of(&[case.credential, case.wrong]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_custom_certificate_uploaded_renewed_and_refused_for_a_dns_only_token() {
    let fake = FakeCloudflareApi::start().await;
    let dns_only = fake.dns_only_token.clone().unwrap();
    cloud_destination_end_to_end(Case {
        prefix: "deploy-cf",
        fake: &fake,
        env: Vec::new(),
        spec: json!({ "cloudflare": {
            "zoneName": "acc.test", "apiURL": fake.url, "bundleMethod": "force",
            "apiTokenSecretRef": { "name": "cloud", "key": "credential" }
        }}),
        credential: &fake.credential,
        wrong: &dns_only,
        wrong_words: "Authentication error (code 10000)",
        down_words: "HTTP 503",
        key_of: |id| format!("{ZONE_ID}/{id}"),
        same_id: false,
    })
    .await;
    let log = fake.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("PATCH /client/v4/zones/") && l.ends_with("200")),
        "the renewal updated the custom certificate: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vault_imports_a_new_version_of_one_name_and_refuses_a_wrong_secret() {
    let fake = FakeKeyVault::start().await;
    let ca = fake.ca_file.clone().unwrap().display().to_string();
    caas_testbed::register_secret("wrong-azure-secret");
    cloud_destination_end_to_end(Case {
        prefix: "deploy-kv",
        fake: &fake,
        env: vec![("SSL_CERT_FILE".into(), ca)],
        spec: json!({ "azureKeyVault": {
            "vaultURL": fake.url, "authorityURL": fake.authority, "tenantID": AZURE_TENANT,
            "clientID": AZURE_CLIENT, "certificateName": "shop-tls", "tags": { "team": "shop" },
            "clientSecretSecretRef": { "name": "cloud", "key": "credential" }
        }}),
        credential: &fake.credential,
        wrong: "wrong-azure-secret",
        wrong_words: "AADSTS7000215",
        down_words: "ServiceUnavailable",
        key_of: |id| id.rsplit('/').next().unwrap().to_string(),
        same_id: true,
    })
    .await;
    let log = fake.log();
    let imports = log
        .iter()
        .filter(|l| l.starts_with("POST /certificates/shop-tls/import") && l.ends_with("200"));
    assert_eq!(imports.count(), 2, "two versions of one name: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_manager_creates_then_patches_one_certificate_and_refuses_a_wrong_key() {
    let fake = FakeCertificateManager::start().await;
    let other_key = fake.other_key.clone().unwrap();
    caas_testbed::register_secret(&other_key);
    cloud_destination_end_to_end(Case {
        prefix: "deploy-gcm",
        fake: &fake,
        env: Vec::new(),
        spec: json!({ "googleCertificateManager": {
            "project": CLOUD_DNS_PROJECT, "apiURL": fake.url, "labels": { "team": "shop" },
            "serviceAccountSecretRef": { "name": "cloud", "key": "credential" }
        }}),
        credential: &fake.credential,
        wrong: &other_key,
        // gcp_auth keeps the endpoint's words ("Invalid JWT Signature.") to its log.
        wrong_words: "the token endpoint refused the key",
        down_words: "UNAVAILABLE",
        key_of: str::to_string,
        same_id: true,
    })
    .await;
    let log = fake.log();
    assert!(
        log.iter()
            .any(|l| l.contains("?updateMask=selfManaged") && l.starts_with("PATCH")),
        "the renewal patched: {log:?}"
    );
}

/// Key Vault takes PKCS#8 keys only: a Certificate with a PKCS#1 RSA key (cert-manager's
/// default encoding) is imported with its key converted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vault_gets_a_pkcs1_rsa_key_as_pkcs8() {
    let fake = FakeKeyVault::start().await;
    let ca = fake.ca_file.clone().unwrap().display().to_string();
    let bed = bed_with("deploy-kv-rsa", &[], &[("SSL_CERT_FILE".into(), ca)]).await;
    apply_secret(
        &bed.client,
        &bed.ns,
        "cloud",
        &[("credential", &fake.credential)],
    )
    .await;
    bed.target(
        "vault",
        json!({ "azureKeyVault": {
            "vaultURL": fake.url, "authorityURL": fake.authority, "tenantID": AZURE_TENANT,
            "clientID": AZURE_CLIENT, "clientSecretSecretRef": { "name": "cloud", "key": "credential" }
        }}),
    )
    .await;
    let spec = json!({
        "secretName": "rsa-tls", "issuerRef": { "name": "pebble" },
        "dnsNames": [format!("{}.acc.test", caas_testbed::unique_name("rsa"))],
        "privateKey": { "algorithm": "RSA", "size": 2048, "encoding": "PKCS1" },
        "deployTo": [{ "name": "vault" }]
    });
    create_certificate(&bed.client, &bed.ns, "rsa", spec).await;
    let done = bed
        .entry_where("rsa", "vault", "imported", |e| e.is_deployed())
        .await;
    let id = done.remote_id.unwrap();
    assert!(
        id.contains(&format!("/certificates/{}-rsa-", bed.ns)),
        "the default name: {id}"
    );
    let serial = bed.secret_serial("rsa-tls").await;
    let name = id.rsplit('/').next().unwrap();
    assert_eq!(fake.remote_serial(name), Some(serial));
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(bed.client.clone(), &bed.ns)
        .get("rsa-tls")
        .await
        .unwrap();
    let key = String::from_utf8(secret.data.unwrap()["tls.key"].0.clone()).unwrap();
    assert!(
        key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "the Secret keeps PKCS#1"
    );
}

/// A target dropped from `deployTo` with `deletionPolicy: Delete`: a certificate a
/// certificate map entry still uses is not deleted; Google's refusal is reported and
/// retried, never forced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_manager_in_use_is_reported_and_never_forced() {
    let fake = FakeCertificateManager::start().await;
    let bed = bed_with("deploy-gcm-use", &[], &[]).await;
    apply_secret(
        &bed.client,
        &bed.ns,
        "cloud",
        &[("credential", &fake.credential)],
    )
    .await;
    bed.target(
        "gclb",
        json!({ "deletionPolicy": "Delete", "googleCertificateManager": {
            "project": CLOUD_DNS_PROJECT, "apiURL": fake.url,
            "serviceAccountSecretRef": { "name": "cloud", "key": "credential" }
        }}),
    )
    .await;
    bed.certificate("edge", &["gclb"]).await;
    let done = bed
        .entry_where("edge", "gclb", "created", |e| e.is_deployed())
        .await;
    let name = done.remote_id.unwrap();
    fake.attach_to_map(&name);
    let patch = json!({ "spec": { "deployTo": [] } });
    Api::<Certificate>::namespaced(bed.client.clone(), &bed.ns)
        .patch(
            "edge",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let kept = bed
        .entry_where("edge", "gclb", "its removal refused", |e| {
            deployed(e).is_some_and(|c| c.2.contains("FAILED_PRECONDITION"))
        })
        .await;
    let (status, reason, message) = deployed(&kept).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DestinationUnreachable")
    );
    assert!(message.starts_with("no longer in deployTo"), "{message}");
    assert!(kept.next_attempt_time.is_some(), "retried with backoff");
    assert!(fake.remote_serial(&name).is_some(), "still there");
}

/// A custom certificate the user already serves, adopted with `customCertificateID`:
/// updated in place of it (Cloudflare answers each PATCH with a new ID, which the next
/// renewal follows), and never deleted, even with `deletionPolicy: Delete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_adopted_certificate_follows_its_new_ids_and_is_never_deleted() {
    let fake = FakeCloudflareApi::start().await;
    let (cert, _) = test_pem();
    let adopted = fake.upload_custom_certificate(ZONE_ID, &std::fs::read_to_string(cert).unwrap());
    let bed = bed_with("deploy-cf-adopt", &[], &[]).await;
    apply_secret(
        &bed.client,
        &bed.ns,
        "cloud",
        &[("credential", &fake.credential)],
    )
    .await;
    bed.target(
        "cdn",
        json!({ "deletionPolicy": "Delete", "cloudflare": {
            "zoneID": ZONE_ID, "apiURL": fake.url, "customCertificateID": adopted,
            "apiTokenSecretRef": { "name": "cloud", "key": "credential" }
        }}),
    )
    .await;
    bed.certificate("edge", &["cdn"]).await;
    let first = bed
        .entry_where("edge", "cdn", "the adopted certificate updated", |e| {
            e.is_deployed()
        })
        .await;
    let id = first.remote_id.clone().unwrap();
    assert_ne!(id, adopted, "a PATCH of sni_custom answers a new ID");
    bed.renew("edge").await;
    let renewed = bed.secret_serial("edge-tls").await;
    let second = bed
        .entry_where("edge", "cdn", "renewed", |e| {
            e.serial.as_deref() == Some(renewed.as_str()) && e.is_deployed()
        })
        .await;
    let id2 = second.remote_id.unwrap();
    assert_eq!(
        fake.remote_serial(&format!("{ZONE_ID}/{id2}")),
        Some(renewed)
    );
    assert_eq!(
        fake.stored_keys(),
        [format!("{ZONE_ID}/{id2}")],
        "one certificate, PATCHed"
    );
    bed.delete_and_wait("edge").await;
    assert_eq!(
        fake.stored_keys().len(),
        1,
        "the adopted certificate stays: {:?}",
        fake.log()
    );
    let deletes = fake
        .log()
        .iter()
        .filter(|l| l.starts_with("DELETE"))
        .count();
    assert_eq!(deletes, 0);
}
