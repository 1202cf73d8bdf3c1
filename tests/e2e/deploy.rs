//! Deploy targets: a Certificate's `deployTo` puts its certificate beyond its Secret.
//! Secret copies in other namespaces (consent, a foreign Secret never overwritten,
//! renewals followed, copies gone with the Certificate) and AWS Certificate Manager
//! through moto (IAM authentication on): first import, re-import into the same ARN on
//! renewal with its tags kept, wrong keys refused in AWS's words while the Secret is
//! written as always.

use std::time::Duration;

use caas_operator::api::{Certificate, DeploymentStatus};
use caas_operator::cloud::aws::{self, Auth, StaticKeys};
use caas_testbed::{AwsKeys, Pebble, PebbleOptions, shared_apiserver, shared_moto};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(90);

/// A web identity token file STS (moto) takes for the role: IRSA's environment.
fn irsa_env() -> Vec<(String, String)> {
    let moto = shared_moto();
    let token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.sig",
        caas_testbed::unique_name("irsa-token")
    );
    moto.register_web_identity_token(&token);
    let file = caas_testbed::scratch_dir("deploy-irsa").join("token");
    std::fs::write(&file, &token).unwrap();
    [
        ("AWS_ROLE_ARN", moto.role_arn.clone()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", file.display().to_string()),
        ("AWS_ENDPOINT_URL_STS", moto.url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub(crate) struct Bed {
    pub client: kube::Client,
    pub ns: String,
    pub operator: Operator,
    _pebble: Pebble,
}

/// A namespace with an HTTP-01 issuer `pebble`, and the operator with Secret copies on
/// and AWS through moto.
async fn bed(prefix: &str) -> Bed {
    bed_with(prefix, &[], &[]).await
}

/// [`bed`] with more operator flags and environment.
pub(crate) async fn bed_with(prefix: &str, flags: &[&str], more_env: &[(String, String)]) -> Bed {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, prefix).await;
    let pebble = Pebble::start(PebbleOptions::default());
    let mut env = shared_moto().env();
    env.extend(more_env.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let tls = format!("--tls-alpn01-addr=127.0.0.1:{}", pebble.tls_port);
    let mut args = vec![tls.as_str(), "--secret-copies"];
    args.extend_from_slice(flags);
    let operator = Operator::start_env(api, &ns, pebble.http_port, &args, &env);
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    Bed {
        client,
        ns,
        operator,
        _pebble: pebble,
    }
}

impl Bed {
    pub(crate) async fn target(&self, name: &str, spec: serde_json::Value) {
        let target = json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "DeployTarget",
            "metadata": { "name": name, "namespace": self.ns }, "spec": spec
        });
        let api: Api<caas_operator::api::DeployTarget> =
            Api::namespaced(self.client.clone(), &self.ns);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(target).unwrap(),
        )
        .await
        .unwrap();
    }

    pub(crate) async fn certificate(&self, name: &str, targets: &[&str]) {
        let deploy_to: Vec<_> = targets.iter().map(|t| json!({ "name": t })).collect();
        let spec = json!({
            "secretName": format!("{name}-tls"), "issuerRef": { "name": "pebble" },
            "dnsNames": [format!("{}.acc.test", caas_testbed::unique_name(name))], "deployTo": deploy_to
        });
        create_certificate(&self.client, &self.ns, name, spec).await;
    }

    /// The Certificate once `pick` holds for its entry of `target`.
    pub(crate) async fn entry_where(
        &self,
        name: &str,
        target: &str,
        what: &str,
        pick: impl Fn(&DeploymentStatus) -> bool,
    ) -> DeploymentStatus {
        let api: Api<Certificate> = Api::namespaced(self.client.clone(), &self.ns);
        let key = format!("DeployTarget/{target}");
        let found = wait_for(
            &format!("{name}'s deployment to {target}: {what}"),
            TIMEOUT,
            Some(&self.operator),
            || {
                let api = api.clone();
                async move { api.get_opt(name).await.unwrap() }
            },
            |c| entry(c, &key).is_some_and(&pick),
        )
        .await;
        entry(&found, &key).cloned().unwrap()
    }

    pub(crate) async fn secret_serial(&self, secret: &str) -> String {
        let s = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get(secret)
            .await
            .unwrap();
        s.metadata.annotations.unwrap()["caas.dev/serial"].clone()
    }

    /// Waits until Certificate `name` is `Ready=True Issued` (its Secret written).
    pub(crate) async fn wait_issued(&self, name: &str) {
        let (client, ns, op) = (&self.client, &self.ns, &self.operator);
        wait_cert_ready(client, ns, name, "True", Some("Issued"), TIMEOUT, op).await;
    }

    /// Deletes Certificate `name` and waits until it is gone (its finalizer done).
    pub(crate) async fn delete_and_wait(&self, name: &str) {
        let certs: Api<Certificate> = Api::namespaced(self.client.clone(), &self.ns);
        certs.delete(name, &DeleteParams::default()).await.unwrap();
        wait_for(
            &format!("Certificate {name} gone"),
            TIMEOUT,
            Some(&self.operator),
            || {
                let certs = certs.clone();
                async move { certs.get_opt(name).await.unwrap() }
            },
            Option::is_none,
        )
        .await;
    }

    pub(crate) async fn renew(&self, name: &str) {
        let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": jiff::Timestamp::now().to_string() } } });
        Api::<Certificate>::namespaced(self.client.clone(), &self.ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        wait_revision(&self.client, &self.ns, name, 2, TIMEOUT, &self.operator).await;
    }
}

pub(crate) fn entry<'a>(cert: &'a Option<Certificate>, key: &str) -> Option<&'a DeploymentStatus> {
    cert.as_ref()?
        .status
        .as_ref()?
        .deployments
        .iter()
        .find(|d| d.target == key)
}

pub(crate) fn deployed(e: &DeploymentStatus) -> Option<(String, String, String)> {
    condition(&e.conditions, "Deployed")
}

/// A destination namespace with `labels` and `annotations`.
async fn namespace(
    client: &kube::Client,
    prefix: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) -> String {
    let ns = shared_apiserver().namespace(client, prefix).await;
    let patch = json!({ "metadata": { "labels": labels, "annotations": annotations } });
    Api::<Namespace>::all(client.clone())
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    ns
}

async fn copy_in(client: &kube::Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_copies_follow_the_certificate_and_go_with_it() {
    let bed = bed("copies").await;
    let label = caas_testbed::unique_name("wants");
    let listed = namespace(
        &bed.client,
        "copy-a",
        json!({}),
        json!({ "caas.dev/accept-secret-copies-from": bed.ns }),
    )
    .await;
    let selected = namespace(
        &bed.client,
        "copy-b",
        json!({ label.clone(): "yes" }),
        json!({ "caas.dev/accept-secret-copies-from": "*" }),
    )
    .await;
    let refused = namespace(&bed.client, "copy-c", json!({}), json!({})).await;
    bed.target(
        "copies",
        json!({ "secretCopies": {
            "namespaces": [listed, refused],
            "namespaceSelector": { "matchLabels": { label.clone(): "yes" } },
            "labels": { "team": "shop" }
        }}),
    )
    .await;
    bed.certificate("web", &["copies"]).await;
    let first = bed
        .entry_where("web", "copies", "copied", |e| {
            e.serial.is_some() && e.namespaces.len() == 2
        })
        .await;
    let serial = bed.secret_serial("web-tls").await;
    assert_eq!(first.serial.as_deref(), Some(serial.as_str()));
    let mut expected = vec![listed.clone(), selected.clone()];
    expected.sort();
    assert_eq!(first.namespaces, expected);
    // Without consent, no copy, and the entry says so.
    let (status, reason, message) = deployed(&first).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NotPermitted"),
        "{message}"
    );
    assert!(
        message.contains(&refused) && message.contains("accept-secret-copies-from"),
        "{message}"
    );
    assert!(copy_in(&bed.client, &refused, "web-tls").await.is_none());
    let source = Api::<Secret>::namespaced(bed.client.clone(), &bed.ns)
        .get("web-tls")
        .await
        .unwrap();
    for ns in [&listed, &selected] {
        let copy = copy_in(&bed.client, ns, "web-tls").await.expect("a copy");
        assert_eq!(copy.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(
            copy.data, source.data,
            "the copy in {ns} holds the Secret's data"
        );
        assert_eq!(copy.metadata.labels.as_ref().unwrap()["team"], "shop");
    }
    // A renewal reaches every copy.
    bed.renew("web").await;
    let renewed = bed.secret_serial("web-tls").await;
    assert_ne!(renewed, serial);
    bed.entry_where("web", "copies", "renewal copied", |e| {
        e.serial.as_deref() == Some(renewed.as_str())
    })
    .await;
    for ns in [&listed, &selected] {
        let copy = copy_in(&bed.client, ns, "web-tls").await.unwrap();
        assert_eq!(
            copy.metadata.annotations.unwrap()["caas.dev/serial"],
            renewed
        );
    }
    // The Certificate goes: so do its copies (the finalizer waits for them).
    Api::<Certificate>::namespaced(bed.client.clone(), &bed.ns)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    for ns in [&listed, &selected] {
        let client = bed.client.clone();
        let ns = ns.clone();
        wait_for(
            &format!("the copy in {ns} removed"),
            TIMEOUT,
            Some(&bed.operator),
            || {
                let (client, ns) = (client.clone(), ns.clone());
                async move { copy_in(&client, &ns, "web-tls").await }
            },
            Option::is_none,
        )
        .await;
    }
    let certs: Api<Certificate> = Api::namespaced(bed.client.clone(), &bed.ns);
    wait_for(
        "the Certificate gone",
        TIMEOUT,
        Some(&bed.operator),
        || {
            let certs = certs.clone();
            async move { certs.get_opt("web").await.unwrap() }
        },
        Option::is_none,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_is_never_overwritten_and_the_copy_follows_once_it_goes() {
    let bed = bed("foreign").await;
    let dest = namespace(
        &bed.client,
        "copy-d",
        json!({}),
        json!({ "caas.dev/accept-secret-copies-from": bed.ns }),
    )
    .await;
    apply_secret(&bed.client, &dest, "shop-tls", &[("tls.crt", "not ours")]).await;
    bed.target(
        "copies",
        json!({ "secretCopies": { "namespaces": [dest] } }),
    )
    .await;
    bed.certificate("shop", &["copies"]).await;
    let refused = bed
        .entry_where("shop", "copies", "refused", |e| {
            deployed(e).is_some_and(|c| c.1 == "CopyConflict")
        })
        .await;
    let (_, _, message) = deployed(&refused).unwrap();
    assert!(
        message.contains(&format!("Secret {dest}/shop-tls exists and is not a copy")),
        "{message}"
    );
    assert_eq!(refused.failed_attempts, Some(1));
    // The Secret itself was written at once, whatever the target does.
    bed.wait_issued("shop").await;
    let foreign = copy_in(&bed.client, &dest, "shop-tls").await.unwrap();
    assert_eq!(secret_text(&foreign, "tls.crt"), "not ours");
    // Its owner removes it: the next attempt (after the backoff) copies.
    Api::<Secret>::namespaced(bed.client.clone(), &dest)
        .delete("shop-tls", &DeleteParams::default())
        .await
        .unwrap();
    let done = bed
        .entry_where("shop", "copies", "copied after the backoff", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(done.namespaces, std::slice::from_ref(&dest));
    assert_eq!(done.failed_attempts, None);
    assert!(copy_in(&bed.client, &dest, "shop-tls").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_target_is_reported_and_deployed_once_it_exists() {
    let bed = bed("missing").await;
    let dest = namespace(
        &bed.client,
        "copy-e",
        json!({}),
        json!({ "caas.dev/accept-secret-copies-from": "*" }),
    )
    .await;
    bed.certificate("api", &["later"]).await;
    let missing = bed
        .entry_where("api", "later", "reported missing", |e| {
            deployed(e).is_some_and(|c| c.1 == "TargetNotFound")
        })
        .await;
    assert!(
        deployed(&missing)
            .unwrap()
            .2
            .contains("DeployTarget later does not exist")
    );
    bed.wait_issued("api").await;
    bed.target("later", json!({ "secretCopies": { "namespaces": [dest] } }))
        .await;
    let done = bed
        .entry_where("api", "later", "deployed", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(done.namespaces, [dest]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_ingress_deploys_its_certificate() {
    let bed = bed("ing-deploy").await;
    let dest = namespace(
        &bed.client,
        "copy-f",
        json!({}),
        json!({ "caas.dev/accept-secret-copies-from": bed.ns }),
    )
    .await;
    bed.target(
        "copies",
        json!({ "secretCopies": { "namespaces": [dest] } }),
    )
    .await;
    let host = format!("{}.acc.test", caas_testbed::unique_name("ing"));
    let ingress: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(json!({
        "metadata": { "name": "web", "annotations": {
            "caas.dev/issuer": "pebble", "caas.dev/deploy-to": "copies"
        } },
        "spec": {
            "tls": [{ "hosts": [host], "secretName": "ing-tls" }],
            "rules": [{ "host": host, "http": { "paths": [{ "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": "web", "port": { "number": 80 } } } }] } }]
        }
    }))
    .unwrap();
    Api::<k8s_openapi::api::networking::v1::Ingress>::namespaced(bed.client.clone(), &bed.ns)
        .create(&PostParams::default(), &ingress)
        .await
        .unwrap();
    let done = bed
        .entry_where("ing-tls", "copies", "deployed", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(done.namespaces, std::slice::from_ref(&dest));
    let serial = bed.secret_serial("ing-tls").await;
    let copy = copy_in(&bed.client, &dest, "ing-tls").await.unwrap();
    assert_eq!(
        copy.metadata.annotations.unwrap()["caas.dev/serial"],
        serial
    );
}

/// 90-second certificates (renewed at about 60 s) under `--expiring-within=80s`: the
/// renewal cannot reach a copy replaced by a foreign Secret, so the target fails
/// (`deploy-failed`, once, at the issuer's `failedAfter` of 1) and the copy still there
/// nears its end (`Expiring` on the entry, an `expiring` notification).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_notifies_once_and_its_stale_copy_raises_expiring() {
    let receiver = caas_testbed::WebhookReceiver::start().await;
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "deploy-alarm").await;
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: 90,
        ..Default::default()
    });
    let tls = format!("--tls-alpn01-addr=127.0.0.1:{}", pebble.tls_port);
    let operator = Operator::start_with(
        api,
        &ns,
        pebble.http_port,
        &[&tls, "--secret-copies", "--expiring-within=80s"],
    );
    let url = receiver.url("/hook");
    caas_testbed::register_secret(&url);
    apply_secret(&client, &ns, "hooks", &[("url", &url)]).await;
    create_issuer(
        &client,
        &ns,
        "pebble",
        &pebble,
        &pebble.eab_hmac,
        json!([{ "http01": {} }]),
    )
    .await;
    let notify = json!({ "spec": { "notify": { "failedAfter": 1, "webhooks": [
        { "format": "Generic", "urlSecretRef": { "name": "hooks", "key": "url" } } ] } } });
    Api::<caas_operator::api::CaaSIssuer>::namespaced(client.clone(), &ns)
        .patch("pebble", &PatchParams::default(), &Patch::Merge(&notify))
        .await
        .unwrap();
    let bed = Bed {
        client,
        ns,
        operator,
        _pebble: pebble,
    };
    let dest = namespace(
        &bed.client,
        "copy-g",
        json!({}),
        json!({ "caas.dev/accept-secret-copies-from": bed.ns }),
    )
    .await;
    bed.target(
        "copies",
        json!({ "secretCopies": { "namespaces": [dest] } }),
    )
    .await;
    bed.certificate("short", &["copies"]).await;
    bed.entry_where("short", "copies", "copied", |e| {
        deployed(e).is_some_and(|c| c.0 == "True")
    })
    .await;
    // Someone replaces the copy with a Secret of their own (created, never merged into
    // ours: a copy recreated in between is deleted again).
    replace_with_foreign(&bed.client, &dest, "short-tls").await;
    let failing = bed
        .entry_where("short", "copies", "failing and expiring", |e| {
            deployed(e).is_some_and(|c| c.1 == "CopyConflict")
                && condition(&e.conditions, "Expiring")
                    .is_some_and(|c| c.1 == "DeployedCopyExpiring")
        })
        .await;
    let (_, _, message) = condition(&failing.conditions, "Expiring").unwrap();
    assert!(
        message.contains("the renewal has not reached it"),
        "{message}"
    );
    let of = |event: &'static str| {
        receiver
            .received()
            .into_iter()
            .filter(move |r| r.json()["event"] == event)
            .collect::<Vec<_>>()
    };
    wait_for(
        "deploy-failed and expiring notified",
        TIMEOUT,
        Some(&bed.operator),
        || async { (of("deploy-failed").len(), of("expiring").len()) },
        |n| n.0 >= 1 && n.1 >= 1,
    )
    .await;
    let failed = &of("deploy-failed")[0];
    assert_eq!(failed.json()["reason"], "CopyConflict");
    assert!(
        failed.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("DeployTarget/copies: Secret")
    );
    let expiring = &of("expiring")[0];
    assert_eq!(expiring.json()["reason"], "DeployedCopyExpiring");
    // Once per run of failures, once per copy: a later retry sends neither again.
    bed.entry_where("short", "copies", "retried", |e| {
        e.failed_attempts.unwrap_or(0) >= 2
    })
    .await;
    assert_eq!((of("deploy-failed").len(), of("expiring").len()), (1, 1));
    // Its owner removes it: the next attempt copies, and Expiring is gone.
    Api::<Secret>::namespaced(bed.client.clone(), &dest)
        .delete("short-tls", &DeleteParams::default())
        .await
        .unwrap();
    bed.entry_where("short", "copies", "deployed, Expiring cleared", |e| {
        deployed(e).is_some_and(|c| c.0 == "True") && condition(&e.conditions, "Expiring").is_none()
    })
    .await;
}

/// Deletes our copy `name` in `ns` and creates a Secret of someone else's there.
async fn replace_with_foreign(client: &kube::Client, ns: &str, name: &str) {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": { "name": name }, "stringData": { "tls.crt": "theirs" }
    }))
    .unwrap();
    for _ in 0..10 {
        let _ = secrets.delete(name, &DeleteParams::default()).await;
        match secrets.create(&PostParams::default(), &foreign).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("create the foreign Secret: {e}"),
        }
    }
    panic!("the foreign Secret could not be created in 10 tries");
}

// ---- AWS Certificate Manager, through moto ----

/// A test-side ACM client signed in as `keys`, straight at moto's mirror.
async fn acm(keys: &AwsKeys) -> aws_sdk_acm::Client {
    let auth = Auth {
        keys: Some(StaticKeys {
            access_key_id: keys.access_key_id.clone(),
            secret_access_key: keys.secret_access_key.clone(),
            origin: "test".into(),
        }),
        region: Some("us-east-1".into()),
        role: None,
    };
    let signed = aws::sign_in(auth).await.expect("sign in to moto");
    let config =
        aws_sdk_acm::config::Builder::from(&signed.config).endpoint_url(&shared_moto().url);
    aws_sdk_acm::Client::from_conf(config.build())
}

/// An ACM target `acm` with the keys in Secret `aws`.
async fn acm_target(bed: &Bed, keys: &AwsKeys, tags: serde_json::Value) {
    acm_target_with(bed, keys, tags, "Retain").await;
}

async fn acm_target_with(bed: &Bed, keys: &AwsKeys, tags: serde_json::Value, deletion: &str) {
    apply_secret(
        &bed.client,
        &bed.ns,
        "aws",
        &[("secret", &keys.secret_access_key)],
    )
    .await;
    bed.target(
        "acm",
        json!({ "deletionPolicy": deletion, "acm": {
            "region": "us-east-1", "accessKeyID": keys.access_key_id,
            "secretAccessKeySecretRef": { "name": "aws", "key": "secret" }, "tags": tags
        }}),
    )
    .await;
}

/// No keys: the operator's own identity (IRSA's web identity through STS), which a
/// namespaced DeployTarget may use only with `--issuer-ambient-credentials`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_with_irsa_only_where_ambient_credentials_are_allowed() {
    let target = json!({ "acm": { "region": "us-east-1", "tags": { "via": "irsa" } } });
    let refused = bed_with("acm-no-ambient", &[], &irsa_env()).await;
    refused.target("acm", target.clone()).await;
    refused.certificate("edge", &["acm"]).await;
    let entry = refused
        .entry_where("edge", "acm", "refused", |e| {
            deployed(e).is_some_and(|c| c.1 == "NotPermitted")
        })
        .await;
    assert!(
        deployed(&entry)
            .unwrap()
            .2
            .contains("--issuer-ambient-credentials")
    );
    let allowed = bed_with("acm-irsa", &["--issuer-ambient-credentials"], &irsa_env()).await;
    allowed.target("acm", target).await;
    allowed.certificate("edge", &["acm"]).await;
    let done = allowed
        .entry_where("edge", "acm", "imported with the role", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    let arn = done.remote_id.unwrap();
    let tags = tags_of(&acm(&shared_moto().acm_user).await, &arn).await;
    assert!(
        tags.contains(&("via".to_string(), "irsa".to_string())),
        "{tags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_deletion_policy_delete_removes_the_import_with_the_certificate() {
    let bed = bed("acm-delete").await;
    let moto = shared_moto();
    acm_target_with(&bed, &moto.acm_user, json!({}), "Delete").await;
    bed.certificate("gone", &["acm"]).await;
    let entry = bed
        .entry_where("gone", "acm", "imported", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    let arn = entry.remote_id.unwrap();
    let client = acm(&moto.acm_user).await;
    let exists = |client: aws_sdk_acm::Client, arn: String| async move {
        match client
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => panic!("DescribeCertificate: {e:?}"),
        }
    };
    assert!(exists(client.clone(), arn.clone()).await);
    bed.delete_and_wait("gone").await;
    assert!(
        !exists(client, arn).await,
        "the ACM certificate was deleted before the finalizer went"
    );
}

/// A load balancer uses the import (a classic ELB's HTTPS listener, made with boto3):
/// dropping the target with `deletionPolicy: Delete` reports ACM's
/// `ResourceInUseException` and retries; the certificate is never forced out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_in_use_by_a_load_balancer_is_reported_and_never_forced() {
    let bed = bed("acm-in-use").await;
    let moto = shared_moto();
    acm_target_with(&bed, &moto.acm_user, json!({}), "Delete").await;
    bed.certificate("edge", &["acm"]).await;
    let entry = bed
        .entry_where("edge", "acm", "imported", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    let arn = entry.remote_id.unwrap();
    let script = r#"
import os, boto3
elb = boto3.client("elb", endpoint_url=os.environ["URL"], region_name="us-east-1",
    aws_access_key_id=os.environ["ID"], aws_secret_access_key=os.environ["SECRET"])
elb.create_load_balancer(LoadBalancerName=os.environ["NAME"], AvailabilityZones=["us-east-1a"],
    Listeners=[{"Protocol": "HTTPS", "LoadBalancerPort": 443, "InstanceProtocol": "HTTP",
                "InstancePort": 80, "SSLCertificateId": os.environ["ARN"]}])
print("in use")
"#;
    let name = caas_testbed::unique_name("lb");
    let keys = &moto.elb_user;
    crate::cloud_credentials::cloud_python(
        script,
        &[
            ("URL", &moto.url),
            ("ID", &keys.access_key_id),
            ("SECRET", &keys.secret_access_key),
            ("NAME", &name),
            ("ARN", &arn),
        ],
    )
    .await;
    let client = acm(&moto.acm_user).await;
    let described = client.describe_certificate().certificate_arn(&arn).send();
    let in_use_by = described
        .await
        .unwrap()
        .certificate()
        .unwrap()
        .in_use_by()
        .to_vec();
    assert_eq!(
        in_use_by.len(),
        1,
        "the load balancer uses it: {in_use_by:?}"
    );
    let patch = json!({ "spec": { "deployTo": [] } });
    Api::<Certificate>::namespaced(bed.client.clone(), &bed.ns)
        .patch("edge", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let kept = bed
        .entry_where("edge", "acm", "its removal refused", |e| {
            deployed(e).is_some_and(|c| c.2.contains("ResourceInUseException"))
        })
        .await;
    let (status, _, message) = deployed(&kept).unwrap();
    assert_eq!(status, "False");
    assert!(message.starts_with("no longer in deployTo"), "{message}");
    assert!(kept.next_attempt_time.is_some(), "retried with backoff");
    let still = client
        .describe_certificate()
        .certificate_arn(&arn)
        .send()
        .await;
    assert!(still.is_ok(), "never forced: {still:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_imports_and_a_renewal_reimports_into_the_same_arn_keeping_its_tags() {
    let bed = bed("acm").await;
    let moto = shared_moto();
    acm_target(&bed, &moto.acm_user, json!({ "team": "shop" })).await;
    bed.certificate("edge", &["acm"]).await;
    let first = bed
        .entry_where("edge", "acm", "imported", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    let arn = first.remote_id.clone().expect("the ARN");
    assert!(arn.starts_with("arn:aws:acm:us-east-1:"), "{arn}");
    assert_eq!(first.location.as_deref(), Some("acm:us-east-1"));
    let serial = bed.secret_serial("edge-tls").await;
    let client = acm(&moto.acm_user).await;
    let remote_serial = |client: aws_sdk_acm::Client, arn: String| async move {
        let out = client
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .unwrap();
        out.certificate().unwrap().serial().unwrap().to_string()
    };
    let remote = remote_serial(client.clone(), arn.clone()).await;
    assert!(
        caas_operator::decide::deploy::same_serial(&remote, &serial),
        "ACM holds {remote}, the Secret {serial}"
    );
    // Renewal: the same ARN, the new serial, the tags kept (ACM refuses tags on a
    // re-import, and the mirror does too, so sending them would fail).
    bed.renew("edge").await;
    let renewed = bed.secret_serial("edge-tls").await;
    let second = bed
        .entry_where("edge", "acm", "re-imported", |e| {
            e.serial.as_deref() == Some(renewed.as_str())
        })
        .await;
    assert_eq!(
        second.remote_id.as_deref(),
        Some(arn.as_str()),
        "the same ARN"
    );
    assert_eq!(deployed(&second).unwrap().0, "True");
    let remote = remote_serial(client.clone(), arn.clone()).await;
    assert!(
        caas_operator::decide::deploy::same_serial(&remote, &renewed),
        "{remote} vs {renewed}"
    );
    let mut tags = tags_of(&client, &arn).await;
    tags.sort();
    let source = format!("{}/edge", bed.ns);
    let tag = ("caas.dev/certificate".to_string(), source.clone());
    assert_eq!(
        tags,
        [tag.clone(), ("team".to_string(), "shop".to_string())]
    );
    // One import for this Certificate, ever: the renewal went into it.
    let mut ours = Vec::new();
    let mut pages = client.list_certificates().into_paginator().send();
    while let Some(page) = pages.next().await {
        for summary in page.unwrap().certificate_summary_list() {
            let found = summary.certificate_arn().unwrap().to_string();
            if tags_of(&client, &found).await.contains(&tag) {
                ours.push(found);
            }
        }
    }
    assert_eq!(ours, [arn]);
}

async fn tags_of(client: &aws_sdk_acm::Client, arn: &str) -> Vec<(String, String)> {
    let out = client
        .list_tags_for_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap();
    (out.tags().iter())
        .map(|t| {
            (
                t.key().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_down_then_back_the_secret_is_written_at_once_then_deployed() {
    let bed = bed("acm-outage").await;
    let moto = shared_moto();
    let door = moto.outage_door();
    door.set_down(true);
    apply_secret(
        &bed.client,
        &bed.ns,
        "aws",
        &[("secret", &moto.acm_user.secret_access_key)],
    )
    .await;
    bed.target(
        "acm",
        json!({ "acm": {
            "region": "us-east-1", "accessKeyID": moto.acm_user.access_key_id, "apiURL": door.url,
            "secretAccessKeySecretRef": { "name": "aws", "key": "secret" }
        }}),
    )
    .await;
    bed.certificate("edge", &["acm"]).await;
    // The Secret does not wait for ACM.
    bed.wait_issued("edge").await;
    let down = bed
        .entry_where("edge", "acm", "unreachable", |e| {
            deployed(e).is_some_and(|c| c.1 == "DestinationUnreachable")
        })
        .await;
    let (_, _, message) = deployed(&down).unwrap();
    assert!(
        message.contains("ServiceUnavailable"),
        "ACM's words: {message}"
    );
    assert!(down.remote_id.is_none() && down.next_attempt_time.is_some());
    door.set_down(false);
    let up = bed
        .entry_where("edge", "acm", "deployed after the outage", |e| {
            deployed(e).is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(up.failed_attempts, None);
    let serial = bed.secret_serial("edge-tls").await;
    assert_eq!(up.serial.as_deref(), Some(serial.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acm_wrong_keys_are_refused_in_awss_words_and_the_secret_is_written_anyway() {
    let bed = bed("acm-denied").await;
    let moto = shared_moto();
    let wrong = AwsKeys {
        access_key_id: moto.acm_user.access_key_id.clone(),
        secret_access_key: caas_testbed::unique_name("wrong-secret"),
    };
    caas_testbed::register_secret(&wrong.secret_access_key);
    acm_target(&bed, &wrong, json!({})).await;
    bed.certificate("edge", &["acm"]).await;
    bed.wait_issued("edge").await;
    let refused = bed
        .entry_where("edge", "acm", "refused", |e| {
            deployed(e).is_some_and(|c| c.1 == "DestinationRefused")
        })
        .await;
    let (_, _, message) = deployed(&refused).unwrap();
    assert!(
        message.starts_with("ACM ImportCertificate: HTTP 4"),
        "{message}"
    );
    assert!(message.contains("Signature"), "AWS's words: {message}");
    assert!(refused.next_attempt_time.is_some() && refused.remote_id.is_none());
    // Valid keys without ACM rights: IAM's AccessDenied, named.
    let bed2 = bed;
    let api: Api<caas_operator::api::DeployTarget> = Api::namespaced(bed2.client.clone(), &bed2.ns);
    api.delete("acm", &DeleteParams::default()).await.unwrap();
    apply_secret(
        &bed2.client,
        &bed2.ns,
        "aws",
        &[("secret", &moto.nothing_user.secret_access_key)],
    )
    .await;
    bed2.target(
        "acm",
        json!({ "acm": {
            "accessKeyID": moto.nothing_user.access_key_id,
            "secretAccessKeySecretRef": { "name": "aws", "key": "secret" }
        }}),
    )
    .await;
    let denied = bed2
        .entry_where("edge", "acm", "denied", |e| {
            deployed(e).is_some_and(|c| c.2.contains("AccessDenied"))
        })
        .await;
    assert_eq!(deployed(&denied).unwrap().1, "DestinationRefused");
}
