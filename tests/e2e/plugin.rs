//! `kubectl caas`, run through the real kubectl binary (installed on PATH as
//! `kubectl-caas`) against the test bed: a healthy certificate, one failing validation,
//! an issuer with a wrong HMAC, a rate-limited one; its verdicts, exit codes, and never
//! a secret in its output.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use caas_testbed::acme_proxy::Kind;
use caas_testbed::{Fault, PebbleOptions, shared_apiserver, unique_name};
use serde_json::json;

use crate::support::*;

const ZONE: &str = "acc.test";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A folder holding only `kubectl-caas` (a link to the built plugin), for PATH.
fn plugin_dir() -> PathBuf {
    let dir = caas_testbed::scratch_dir("kubectl-plugin");
    let link = dir.join("kubectl-caas");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubectl-caas"), &link).unwrap();
    }
    dir
}

/// `kubectl caas ARGS` as admin of the test API server: exit code and stdout (stderr
/// appended). On a blocking thread: the test's runtime keeps serving (the test proxy
/// runs on it).
async fn kubectl_caas(args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl_caas_blocking(&args)
    })
    .await
    .unwrap()
}

fn kubectl_caas_blocking(args: &[&str]) -> (i32, String) {
    let api = shared_apiserver();
    let path = format!(
        "{}:{}",
        plugin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // kubectl passes no global flags to plugins: the kubeconfig comes from KUBECONFIG.
    let out = Command::new(caas_testbed::tool("kubectl"))
        .arg("caas")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &api.kubeconfig)
        .output()
        .expect("run kubectl caas");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn status_inspect_and_renew_a_healthy_and_a_failing_certificate() {
    let (client, ns, pebble, operator) = setup(
        "plugin",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let name = format!("{}.{ZONE}", unique_name("web"));
    create_certificate(
        &client,
        &ns,
        "web",
        json!({ "secretName": "web-tls", "issuerRef": { "name": "pebble" }, "dnsNames": [name] }),
    )
    .await;
    create_certificate(
        &client,
        &ns,
        "bad",
        json!({ "secretName": "bad-tls", "issuerRef": { "name": "pebble" }, "dnsNames": ["nowhere.invalid-zone.test"] }),
    )
    .await;
    wait_revision(&client, &ns, "web", 1, TIMEOUT, &operator).await;
    let certs: kube::Api<caas_operator::api::Certificate> =
        kube::Api::namespaced(client.clone(), &ns);
    wait_for(
        "the bad certificate's first failure",
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
    let mut outputs = Vec::new();

    let (code, out) = kubectl_caas(&["status", "certificate", "web", "-n", &ns]).await;
    assert_eq!(code, 0, "{out}");
    let secret = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .get("web-tls")
        .await
        .unwrap();
    let serial = &secret.metadata.annotations.as_ref().unwrap()["caas.dev/serial"];
    for want in [
        format!("Certificate {ns}/web"),
        format!("Names:       {name}"),
        "Issuer:      CaaSIssuer pebble: Ready=True (AccountRegistered)".to_string(),
        format!("serial {serial}"),
        "Renewal:".to_string(),
        "ARI window:".to_string(),
        "Verdict: READY: valid until".to_string(),
    ] {
        assert!(out.contains(&want), "no {want:?} in:\n{out}");
    }
    outputs.push(out);

    let (code, out) = kubectl_caas(&["status", "cert", "bad", "-n", &ns]).await;
    assert_eq!(code, 1, "not ready: exit 1\n{out}");
    assert!(
        out.contains("Verdict: NOT READY (ChallengeFailed)")
            || out.contains("Verdict: NOT READY (OrderFailed)"),
        "{out}"
    );
    assert!(out.contains("check that each name resolves"), "{out}");
    assert!(
        out.contains("nowhere.invalid-zone.test"),
        "the CA's words: {out}"
    );
    outputs.push(out);

    let (code, out) =
        kubectl_caas(&["status", "certificate", "bad", "-n", &ns, "-o", "json"]).await;
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["ready"], false);
    assert!(report["failedIssuanceAttempts"].as_i64() >= Some(1));
    let (code, out) =
        kubectl_caas(&["status", "certificate", "web", "-n", &ns, "-o", "yaml"]).await;
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_yaml::from_str(&out).expect("YAML");
    assert_eq!(report["secret"]["leaf"]["serial"], serial.as_str());

    let (code, out) = kubectl_caas(&["inspect", "secret", "web-tls", "-n", &ns]).await;
    assert_eq!(code, 0, "{out}");
    for want in [
        "Key:         ECDSA P-256 (matches the certificate)",
        "Chain[1]:",
        "Verdict: USABLE",
        &format!("Serial:      {serial}"),
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    outputs.push(out);

    let (code, out) = kubectl_caas(&["status", "issuer", "pebble", "-n", &ns]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("key ID {}", pebble.eab_kid)), "{out}");
    assert!(out.contains("reachable from here, TLS verified"), "{out}");
    assert!(out.contains("Verdict: READY"), "{out}");
    outputs.push(out);

    let (code, out) = kubectl_caas(&["status", "certificate", "missing", "-n", &ns]).await;
    assert_eq!(code, 2, "an error: exit 2\n{out}");
    assert!(out.contains("no Certificate missing"), "{out}");

    let (code, out) = kubectl_caas(&["renew", "web", "-n", &ns]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("renewal requested: Certificate {ns}/web")));
    wait_revision(&client, &ns, "web", 2, TIMEOUT, &operator).await;
    let (code, out) = kubectl_caas(&["renew", "--all", "-n", &ns]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/bad") && out.contains("/web"), "{out}");

    let (code, out) = kubectl_caas(&["check", "issuer", "pebble", "-n", &ns]).await;
    assert_eq!(code, 0, "{out}");
    for want in [
        "ok     directory",
        "ok     eab",
        "ok     account",
        "the CA knows the account",
        "Verdict: READY",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    outputs.push(out);

    // The support bundle: secrets planted where the bundle looks (an annotation, an
    // event, the operator's log) never reach it.
    let key_pem = secret_text(&secret, "tls.key");
    let planted = json!({ "metadata": { "annotations": { "planted": pebble.eab_hmac } } });
    certs
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&planted),
        )
        .await
        .unwrap();
    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": { "name": unique_name("planted"), "namespace": ns },
        "eventTime": jiff::Timestamp::now().to_string(),
        "reportingController": "tests", "reportingInstance": "tests", "action": "Test",
        "reason": "Planted", "type": "Normal",
        "regarding": { "kind": "Certificate", "name": "web", "namespace": ns },
        "note": format!("a key that must not travel: {key_pem}")
    }))
    .unwrap();
    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns);
    events
        .create(&Default::default(), &event)
        .await
        .expect("create the planted event");
    let dir = caas_testbed::scratch_dir("diagnose");
    let log = dir.join("operator.log");
    std::fs::write(
        &log,
        format!(
            "{}\nplanted hmac={} and Authorization: Bearer s3cr3t-t0ken-value\n",
            operator.logs(),
            pebble.eab_hmac
        ),
    )
    .unwrap();
    let bundle = dir.join("bundle.tar.gz");
    let (code, out) = kubectl_caas(&[
        "diagnose",
        "-n",
        &ns,
        "--operator-namespace",
        &ns,
        "--operator-log",
        log.to_str().unwrap(),
        "--output",
        bundle.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("support bundle written: {}", bundle.display())),
        "{out}"
    );
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(tar.success());
    let folder = std::fs::read_dir(&unpacked)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        folder
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("caas-diagnose-")
    );
    let mut all = String::new();
    for file in [
        "version.txt",
        "summary.txt",
        "certificates.yaml",
        "issuers.yaml",
        "events.yaml",
        "operator.log",
    ] {
        let text =
            std::fs::read_to_string(folder.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        all.push_str(&text);
    }
    assert!(all.contains("Kubernetes 1.20"), "versions");
    assert!(
        all.contains(&format!("Certificate {ns}/web: READY")),
        "summary"
    );
    assert!(
        all.contains("Planted") && all.contains("[REDACTED]"),
        "redacted, not dropped"
    );
    for needle in secret_needles(&pebble.eab_hmac)
        .iter()
        .map(String::as_str)
        .chain(["PRIVATE KEY", "s3cr3t-t0ken-value"])
    {
        assert!(
            !all.contains(needle),
            "the bundle holds secret material ({needle:.12}...)"
        );
    }

    // The plants go (the scan when the operator stops would rightly find them).
    events
        .delete(event.metadata.name.as_deref().unwrap(), &Default::default())
        .await
        .unwrap();
    let unplant = json!({ "metadata": { "annotations": { "planted": null } } });
    certs
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&unplant),
        )
        .await
        .unwrap();

    // convert needs no cluster; through kubectl all the same.
    let manifest = dir.join("cert-manager.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web}\nspec:\n  secretName: web-tls\n  issuerRef: {name: le, kind: ClusterIssuer}\n  dnsNames: [www.example.com]\n  usages: [server auth]\n",
    )
    .unwrap();
    let (code, out) = kubectl_caas(&["convert", "-f", manifest.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("apiVersion: caas.dev/v1alpha1") && out.contains("kind: ClusterCaaSIssuer"),
        "{out}"
    );
    assert!(
        out.contains("warning: Certificate web: spec.usages[0] is not supported"),
        "{out}"
    );

    for out in &outputs {
        assert!(
            !out.contains(&pebble.eab_hmac),
            "the EAB HMAC in the output"
        );
        assert!(!out.contains("PRIVATE KEY"), "a key in the output");
    }
}

#[tokio::test]
async fn status_explains_a_wrong_hmac_and_a_rate_limit() {
    let bed = ProxiedBed::start("plugin-limits", PebbleOptions::default()).await;
    let (client, ns) = (&bed.client, &bed.ns);
    // A wrong HMAC (well-formed, not the CA's).
    let wrong = "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZS1mb3ItdGhpcy1jYQ";
    caas_testbed::register_secret(wrong);
    create_issuer_at(
        client,
        ns,
        "wrong",
        &bed.pebble,
        &bed.proxy.directory_url,
        wrong,
        json!([{ "http01": {} }]),
    )
    .await;
    bed.issuer(json!([{ "http01": {} }])).await;
    wait_issuer(
        client,
        ns,
        "wrong",
        "False",
        "EABRejected",
        TIMEOUT,
        &bed.operator,
    )
    .await;
    let (code, out) = kubectl_caas(&["status", "issuer", "wrong", "-n", ns]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Verdict: NOT READY (EABRejected): copy the EAB key ID"),
        "{out}"
    );
    assert!(
        out.contains("HMAC in Secret wrong-eab key hmac (not shown)"),
        "{out}"
    );
    assert!(
        !out.contains(wrong) && !out.contains(&bed.pebble.eab_hmac),
        "{out}"
    );
    let (code, out) = kubectl_caas(&["check", "issuer", "wrong", "-n", ns]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ok     eab"),
        "the HMAC decodes; the CA refuses it: {out}"
    );
    assert!(out.contains("FAILED account"), "{out}");
    assert!(!out.contains(wrong), "{out}");

    wait_issuer(
        client,
        ns,
        "ca",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &bed.operator,
    )
    .await;
    bed.proxy.set_rule(|e, _| {
        (e.kind == Kind::NewOrder).then_some(Fault::RateLimited {
            retry_after_secs: 600,
        })
    });
    create_certificate(
        client,
        ns,
        "limited",
        json!({ "secretName": "limited-tls", "issuerRef": { "name": "ca" },
                "dnsNames": [format!("{}.{ZONE}", unique_name("limited"))] }),
    )
    .await;
    wait_cert_ready(
        client,
        ns,
        "limited",
        "False",
        Some("RateLimited"),
        TIMEOUT,
        &bed.operator,
    )
    .await;
    let (code, out) = kubectl_caas(&["status", "certificate", "limited", "-n", ns]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Verdict: NOT READY (RateLimited): wait: new orders resume at the time given"),
        "{out}"
    );
    assert!(
        out.contains("new orders resume at"),
        "the time is in Ready's message: {out}"
    );
    let (code, out) = kubectl_caas(&["status", "issuer", "ca", "-n", ns]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Rate limit:") && out.contains("rateLimited"),
        "{out}"
    );
}

/// `check issuer --dns NAME`: a TXT record written and removed through the issuer's
/// DNS-01 solver (real BIND), and a wrong TSIG secret named as such.
#[tokio::test]
async fn check_issuer_writes_and_removes_a_test_txt_record() {
    let (client, ns, pebble, operator) = setup(
        "plugin-dns",
        PebbleOptions::default(),
        json!([{ "http01": {} }]),
    )
    .await;
    let bind = caas_testbed::shared_bind();
    let solver = rfc2136_solver(&client, &ns).await;
    create_issuer(
        &client,
        &ns,
        "dns",
        &pebble,
        &pebble.eab_hmac,
        json!([solver]),
    )
    .await;
    wait_issuer(
        &client,
        &ns,
        "dns",
        "True",
        "AccountRegistered",
        TIMEOUT,
        &operator,
    )
    .await;
    let name = format!("{}.{ZONE}", unique_name("check"));
    let resolvers = format!("--dns01-recursive-nameservers={}", bind.addr());
    let (code, out) = kubectl_caas(&[
        "check",
        "issuer",
        "dns",
        "-n",
        &ns,
        "--dns",
        &name,
        &resolvers,
        "--dns01-recursive-nameservers-only",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "ok     dns        solvers[0] wrote _acme-challenge.{name} TXT, served after"
        )),
        "{out}"
    );
    assert!(out.contains("removed"), "{out}");
    let dig = Command::new(caas_testbed::tool("dig"))
        .args([
            "+short",
            "-p",
            &bind.addr().port().to_string(),
            "@127.0.0.1",
            "TXT",
        ])
        .arg(format!("_acme-challenge.{name}"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dig.stdout).trim().is_empty(),
        "the test record is gone"
    );
    assert!(!out.contains(&bind.tsig_secret), "{out}");

    // CAA (RFC 8659, 8657): none yet, so any CA may issue, and the record that pins the
    // name to this account and DNS-01 is offered.
    let account = kube::Api::<caas_operator::api::CaaSIssuer>::namespaced(client.clone(), &ns)
        .get("dns")
        .await
        .unwrap()
        .status
        .and_then(|s| s.account_uri)
        .unwrap();
    let pin = format!("accounturi={account}; validationmethods=dns-01\"");
    assert!(
        out.contains(&format!(
            "ok     caa        no CAA records at {name} or above"
        )) && out.contains(&pin),
        "{out}"
    );
    let record = out[out.find(&format!("{name}. CAA 0 issue")).unwrap()..]
        .lines()
        .next()
        .unwrap()
        .to_string();
    let check = [
        "check",
        "issuer",
        "dns",
        "-n",
        &ns,
        "--dns",
        &name,
        &resolvers,
        "--dns01-recursive-nameservers-only",
    ];
    bind.nsupdate(&format!(
        "update add {name}. 60 CAA 0 issue \"other.example\""
    ));
    let (code, out) = kubectl_caas(&check).await;
    assert_eq!(code, 1, "another CA only: {out}");
    assert!(
        out.contains(&format!("FAILED caa        CAA at {name}. does not let")),
        "{out}"
    );
    bind.nsupdate(&format!(
        "update add {}",
        record.replacen(". CAA", ". 60 CAA", 1)
    ));
    let (code, out) = kubectl_caas(&check).await;
    assert_eq!(code, 0, "the pin record added: {out}");
    assert!(
        out.contains(&format!("ok     caa        CAA at {name}. lets ")) && out.contains(&pin),
        "{out}"
    );
    bind.nsupdate(&format!("update delete {name}. CAA"));

    // A wrong TSIG secret: the check says which.
    apply_secret(
        &client,
        &ns,
        "tsig",
        &[("secret", "d3JvbmctdHNpZy1zZWNyZXQtZm9yLXRoZS10ZXN0")],
    )
    .await;
    let (code, out) = kubectl_caas(&[
        "check",
        "issuer",
        "dns",
        "-n",
        &ns,
        "--dns",
        &name,
        &resolvers,
        "--dns01-recursive-nameservers-only",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED dns") && out.contains("BADSIG"),
        "{out}"
    );
}
