//! The Helm chart: lint, generated files current, a real `helm install`, and the
//! operator issuing certificates with exactly the chart's RBAC (a ServiceAccount token
//! from the API server), including what that account must NOT be able to do.

use std::process::Command;
use std::time::Duration;

use caas_testbed::{Pebble, PebbleOptions, shared_apiserver, tool, unique_name};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use kube::api::{Api, PostParams};
use serde::Deserialize;
use serde_json::json;

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ZONE: &str = "acc.test";

fn helm(args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("helm"))
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("run helm");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn helm_lint_is_clean() {
    // Both RBAC shapes: cluster-wide, and one watched namespace.
    let monitoring = [
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
    ];
    for extra in [
        &[][..],
        &["--set", "watchNamespace=apps"][..],
        &monitoring[..],
    ] {
        let mut args = vec!["lint", "--strict", "charts/caas-operator"];
        args.extend_from_slice(extra);
        let (ok, out) = helm(&args);
        assert!(ok, "helm lint {extra:?} failed:\n{out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{out}"
        );
    }
}

/// `restartOnRenew.enabled` (opt-in) adds the workload permissions and turns the feature
/// on; notification defaults reach the operator as `--default-notify`.
#[test]
fn chart_values_for_restarts_and_notifications() {
    let (ok, default) = helm(&["template", "x", "charts/caas-operator"]);
    assert!(ok, "{default}");
    assert!(!default.contains("deployments") && default.contains("--restart-on-renew=false"));
    assert!(!default.contains("--default-notify"));
    let (ok, on) = helm(&[
        "template",
        "x",
        "charts/caas-operator",
        "--set",
        "restartOnRenew.enabled=true",
    ]);
    assert!(ok, "{on}");
    assert!(on.contains("\"deployments\", \"statefulsets\", \"daemonsets\""));
    assert!(on.contains("--restart-on-renew=true"));
    let (ok, off) = helm(&[
        "template",
        "x",
        "charts/caas-operator",
        "--set",
        "notify.webhooks[0].format=Slack",
        "--set",
        "notify.webhooks[0].urlSecretRef.name=chat",
        "--set",
        "notify.webhooks[0].urlSecretRef.key=url",
        "--set",
        "expiringWithin=72h",
    ]);
    assert!(ok, "{off}");
    assert!(off.contains("--expiring-within=72h"));
    let arg = off
        .lines()
        .find_map(|l| l.trim().strip_prefix("- --default-notify="))
        .expect("--default-notify");
    let notify: caas_operator::api::issuer::Notify = serde_json::from_str(arg).expect(arg);
    assert_eq!(notify.webhooks[0].url_secret_ref.name, "chat");
    assert_eq!(notify.failed_after, Some(3));
    // The schema refuses a webhook without its Secret.
    let (ok, out) = helm(&[
        "template",
        "x",
        "charts/caas-operator",
        "--set",
        "notify.webhooks[0].format=Slack",
    ]);
    assert!(!ok && out.contains("urlSecretRef"), "{out}");
}

/// `secretCopies.enabled` (opt-in) turns Secret copies on and adds what they need:
/// namespaces' metadata, and with `watchNamespace` a Role for Secret writes in each of
/// `secretCopies.namespaces` only.
#[test]
fn chart_secret_copies_switch_grants_namespaces_only_when_on() {
    let rules_of = |docs: &[serde_json::Value], kind: &str| -> Vec<serde_json::Value> {
        of_kind(docs, kind)
            .iter()
            .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let grants_namespaces = |rules: &[serde_json::Value]| {
        rules.iter().any(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("namespaces")))
        })
    };
    let off = render(&[]);
    let args = |docs: &[serde_json::Value]| {
        of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone()
    };
    assert!(
        args(&off)
            .as_array()
            .unwrap()
            .contains(&json!("--secret-copies=false"))
    );
    assert!(!grants_namespaces(&rules_of(&off, "ClusterRole")));
    // Deploy targets are read either way.
    let cluster_rules = rules_of(&off, "ClusterRole");
    for kind in ["deploytargets", "clusterdeploytargets"] {
        assert!(
            cluster_rules.iter().any(|r| r["resources"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(kind)))),
            "{kind} not readable"
        );
    }
    let on = render(&[
        "--set",
        "secretCopies.enabled=true",
        "--set",
        "watchNamespace=shop",
        "--set",
        "secretCopies.namespaces={web,api}",
    ]);
    assert!(
        args(&on)
            .as_array()
            .unwrap()
            .contains(&json!("--secret-copies=true"))
    );
    assert!(grants_namespaces(&rules_of(&on, "ClusterRole")));
    let copies: Vec<&serde_json::Value> = of_kind(&on, "Role")
        .into_iter()
        .filter(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("-copies")
        })
        .collect();
    let namespaces: Vec<&str> = copies
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["web", "api"]);
    assert_eq!(
        copies[0]["rules"][0]["verbs"],
        json!(["get", "create", "patch", "delete"])
    );
    let bindings = of_kind(&on, "RoleBinding");
    assert_eq!(
        bindings
            .iter()
            .filter(|b| b["roleRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("-copies"))
            .count(),
        2
    );
}

/// `helm template` output as JSON documents.
fn render(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec![
        "template",
        "x",
        "charts/caas-operator",
        "--namespace",
        "caas-system",
    ];
    all.extend_from_slice(args);
    let (ok, out) = helm(&all);
    assert!(ok, "helm template {args:?} failed:\n{out}");
    serde_yaml::Deserializer::from_str(&out)
        .filter_map(|doc| {
            let v = serde_json::Value::deserialize(doc).expect("rendered YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Every name the chart gives the operator's ServiceAccount: the Deployment's
/// `serviceAccountName` and each RBAC binding's subject (with its namespace).
fn service_account_names(docs: &[serde_json::Value]) -> Vec<String> {
    let deployments = of_kind(docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let mut names = vec![
        deployments[0]["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("serviceAccountName")
            .to_string(),
    ];
    let bindings: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .collect();
    assert!(bindings.len() >= 2, "{bindings:?}");
    for b in bindings {
        let subjects = b["subjects"].as_array().expect("subjects");
        assert_eq!(subjects.len(), 1, "{b}");
        assert_eq!(subjects[0]["kind"], "ServiceAccount");
        assert_eq!(subjects[0]["namespace"], "caas-system", "{b}");
        names.push(subjects[0]["name"].as_str().unwrap().to_string());
    }
    names
}

/// Cloud workload identity: `serviceAccount.annotations` land on the ServiceAccount (IRSA,
/// GKE, Azure), `podLabels` on the pod template (Azure's `azure.workload.identity/use`,
/// a string even when set as `true`); `serviceAccount.create=false` with a name uses an
/// existing ServiceAccount everywhere the chart names one.
#[test]
fn chart_service_account_for_cloud_identity() {
    // Defaults: the chart's own ServiceAccount, no annotations, everything names it.
    let docs = render(&[]);
    let sas = of_kind(&docs, "ServiceAccount");
    assert_eq!(sas.len(), 1);
    assert_eq!(sas[0]["metadata"]["name"], "x-caas-operator");
    assert!(
        sas[0]["metadata"].get("annotations").is_none(),
        "{}",
        sas[0]
    );
    let names = service_account_names(&docs);
    assert!(names.iter().all(|n| n == "x-caas-operator"), "{names:?}");

    let role = "arn:aws:iam::123456789012:role/caas-dns";
    let docs = render(&[
        "--set",
        &format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role}"),
        "--set",
        "podLabels.azure\\.workload\\.identity/use=true",
        "--set",
        "watchNamespace=apps",
    ]);
    let sas = of_kind(&docs, "ServiceAccount");
    assert_eq!(sas.len(), 1);
    assert_eq!(
        sas[0]["metadata"]["annotations"],
        json!({ "eks.amazonaws.com/role-arn": role })
    );
    let deployment = of_kind(&docs, "Deployment")[0];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        labels["azure.workload.identity/use"],
        json!("true"),
        "{labels}"
    );
    // The selector labels are still there, and the extra label is not in the selector.
    assert_eq!(labels["app.kubernetes.io/name"], "caas-operator");
    assert!(
        deployment["spec"]["selector"]["matchLabels"]
            .get("azure.workload.identity/use")
            .is_none()
    );
    let names = service_account_names(&docs);
    assert!(names.iter().all(|n| n == "x-caas-operator"), "{names:?}");

    // An existing ServiceAccount: none rendered, the Deployment and every binding name
    // it (both RBAC shapes).
    for extra in [&[][..], &["--set", "watchNamespace=apps"][..]] {
        let mut args = vec![
            "--set",
            "serviceAccount.create=false,serviceAccount.name=existing",
        ];
        args.extend_from_slice(extra);
        let docs = render(&args);
        assert!(of_kind(&docs, "ServiceAccount").is_empty());
        let names = service_account_names(&docs);
        assert!(names.iter().all(|n| n == "existing"), "{names:?}");
    }
    // create=false without a name: the namespace's "default" ServiceAccount.
    let docs = render(&["--set", "serviceAccount.create=false"]);
    assert!(of_kind(&docs, "ServiceAccount").is_empty());
    let names = service_account_names(&docs);
    assert!(names.iter().all(|n| n == "default"), "{names:?}");
    // A name with create=true: the chart creates it under that name.
    let docs = render(&["--set", "serviceAccount.name=dns-identity"]);
    assert_eq!(
        of_kind(&docs, "ServiceAccount")[0]["metadata"]["name"],
        "dns-identity"
    );
    let names = service_account_names(&docs);
    assert!(names.iter().all(|n| n == "dns-identity"), "{names:?}");

    // The schema refuses a typo'd key (additionalProperties: false).
    let (ok, out) = helm(&[
        "template",
        "x",
        "charts/caas-operator",
        "--set",
        "serviceAccount.annotation.a=b",
    ]);
    assert!(!ok && out.contains("annotation"), "{out}");
}

/// The release workflow (it cannot run here: no Docker engine, no network) passes
/// actionlint.
#[test]
fn release_workflow_lints_clean() {
    let out = Command::new(tool("actionlint"))
        .arg(".github/workflows/release.yml")
        .current_dir(ROOT)
        .output()
        .expect("run actionlint");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_lints_clean() {
    let out = Command::new(tool("hadolint"))
        .arg("Dockerfile")
        .current_dir(ROOT)
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_chart_files_are_current() {
    let crds = std::fs::read_to_string(format!("{ROOT}/crds/caas.dev.yaml")).unwrap();
    let chart_crds =
        std::fs::read_to_string(format!("{ROOT}/charts/caas-operator/crds/caas.dev.yaml"))
            .unwrap_or_default();
    assert!(
        crds == chart_crds,
        "charts/caas-operator/crds is stale: run `cargo xtask manifests`"
    );
    let (ok, rendered) = helm(&[
        "template",
        "caas-operator",
        "charts/caas-operator",
        "--namespace",
        "caas-operator",
        "--include-crds",
    ]);
    assert!(ok, "helm template failed:\n{rendered}");
    let committed =
        std::fs::read_to_string(format!("{ROOT}/deploy/caas-operator.yaml")).unwrap_or_default();
    let body = committed
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let rendered = rendered
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        body == rendered,
        "deploy/caas-operator.yaml is stale: run `cargo xtask manifests`"
    );
}

async fn allowed(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
) -> bool {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "verb": verb, "group": group, "resource": resource, "namespace": ns } }
    }))
    .unwrap();
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("access review")
        .status
        .map(|s| s.allowed)
        .unwrap_or(false)
}

#[tokio::test]
async fn helm_install_then_issue_as_the_charts_service_account() {
    let api = shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, "helm").await;
    let release = unique_name("caas-operator");
    let kubeconfig = api.kubeconfig.display().to_string();
    let (ok, out) = helm(&[
        "install",
        &release,
        "charts/caas-operator",
        "--namespace",
        &ns,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        &format!("watchNamespace={ns}"),
    ]);
    assert!(ok, "helm install failed:\n{out}");

    // A token for the chart's ServiceAccount, from the API server (TokenRequest).
    let out = api
        .kubectl()
        .args(["create", "token", &release, "-n", &ns, "--duration=1h"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let sa = api.client_with_token(&token).await;

    // What it can do, and what it must not.
    assert!(allowed(&sa, "patch", "caas.dev", "certificates/status", Some(&ns)).await);
    // Annotated Gateways, temporary HTTPRoutes; restart-on-renew is opt-in.
    assert!(!allowed(&sa, "patch", "apps", "deployments", Some(&ns)).await);
    assert!(
        allowed(
            &sa,
            "watch",
            "gateway.networking.k8s.io",
            "gateways",
            Some(&ns)
        )
        .await
    );
    assert!(
        allowed(
            &sa,
            "create",
            "gateway.networking.k8s.io",
            "httproutes",
            Some(&ns)
        )
        .await
    );
    assert!(allowed(&sa, "create", "coordination.k8s.io", "leases", Some(&ns)).await);
    // Deploy targets are read; Secret copies are opt-in (no namespaces list).
    assert!(allowed(&sa, "watch", "caas.dev", "deploytargets", Some(&ns)).await);
    assert!(allowed(&sa, "watch", "caas.dev", "clusterdeploytargets", None).await);
    assert!(!allowed(&sa, "list", "", "namespaces", None).await);
    for (verb, group, resource, in_ns) in [
        ("create", "", "pods", true),
        ("get", "", "configmaps", true),
        ("update", "", "secrets", true),
        ("delete", "", "namespaces", false),
        ("get", "", "nodes", false),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            false,
        ),
        ("patch", "apps", "deployments", false),
        ("create", "apps", "deployments", true),
        ("delete", "apps", "deployments", true),
        ("create", "gateway.networking.k8s.io", "gateways", true),
        ("create", "coordination.k8s.io", "leases", false),
        ("update", "caas.dev", "caasissuers", true),
        ("delete", "caas.dev", "caasissuers", true),
    ] {
        let scope = if in_ns {
            Some(ns.as_str())
        } else {
            Some("kube-system")
        };
        let scope = if resource == "leases" && !in_ns {
            Some("kube-system")
        } else {
            scope
        };
        assert!(
            !allowed(&sa, verb, group, resource, scope).await,
            "the ServiceAccount can {verb} {group}/{resource} in {scope:?}"
        );
    }

    // With watchNamespace set, Secrets (and all other namespaced resources) are
    // reachable in that namespace only: other applications' Secrets elsewhere are not.
    assert!(allowed(&sa, "list", "", "secrets", Some(&ns)).await);
    for (verb, scope) in [
        ("get", Some("kube-system")),
        ("list", Some("default")),
        ("list", None),
        ("watch", None),
    ] {
        assert!(
            !allowed(&sa, verb, "", "secrets", scope).await,
            "the ServiceAccount can {verb} Secrets in {scope:?}"
        );
    }
    assert!(!allowed(&sa, "list", "networking.k8s.io", "ingresses", None).await);
    assert!(allowed(&sa, "watch", "caas.dev", "clustercaasissuers", None).await);

    // Run the operator with exactly that identity: any missing permission fails here.
    let dir = caas_testbed::scratch_dir("sa-kubeconfig");
    let sa_kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &sa_kubeconfig,
        std::fs::read_to_string(&api.kubeconfig)
            .unwrap()
            .replace(&api.admin_token, &token),
    )
    .unwrap();
    let pebble = Pebble::start(PebbleOptions::default());
    let mut operator = Operator::start_as(&sa_kubeconfig, &ns, pebble.http_port, &[]);
    operator.admin_kubeconfig = api.kubeconfig.clone();
    create_issuer(&client, &ns, "pebble", &pebble, &pebble.eab_hmac, json!([{ "http01": {} }, { "selector": { "dnsZones": ["dns.acc.test"] }, "dns01": rfc2136_solver(&client, &ns).await["dns01"] }])).await;
    create_certificate(&client, &ns, "http", json!({
        "secretName": "http-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("{}.{ZONE}", unique_name("rbac"))],
    }))
    .await;
    create_certificate(&client, &ns, "dns", json!({
        "secretName": "dns-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [format!("*.{}.dns.{ZONE}", unique_name("rbac"))],
    }))
    .await;
    let timeout = Duration::from_secs(60);
    wait_cert_ready(
        &client,
        &ns,
        "http",
        "True",
        Some("Issued"),
        timeout,
        &operator,
    )
    .await;
    wait_cert_ready(
        &client,
        &ns,
        "dns",
        "True",
        Some("Issued"),
        timeout,
        &operator,
    )
    .await;
    let logs = operator.logs();
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "the operator hit a missing permission:\n{logs}"
    );
}
