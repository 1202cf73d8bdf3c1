//! The local demo behind `cargo xtask demo`: a real kube-apiserver, an ACME CA that
//! requires External Account Binding (Pebble), BIND for DNS, and the operator, issuing
//! the manifests in `examples/`. Prints what was issued and keeps running (with a
//! KUBECONFIG to explore) until Ctrl-C; `--exit` stops once everything is issued.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use caas_testbed::{ApiServer, Bind, Pebble, PebbleOptions, Proc, free_port, port_open};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};

const NAMESPACE: &str = "demo";
const DOMAIN: &str = "demo.acc.test";

fn main() {
    let caas_testbed::cli::Program::Demo(args) = caas_testbed::cli::Program::parse_as("demo")
    else {
        unreachable!("parse_as(\"demo\") parses the demo's arguments")
    };
    if let Err(e) = run(args) {
        eprintln!("\ndemo failed: {e}");
        std::process::exit(1);
    }
}

fn kubectl(api: &ApiServer, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = api.kubectl();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| format!("kubectl: {e}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn step(text: &str) -> Instant {
    eprintln!("==> {text}");
    Instant::now()
}

fn run(args: caas_testbed::cli::DemoArgs) -> Result<(), String> {
    let operator_bin = &args.common.operator;
    if !operator_bin.is_file() {
        return Err(format!(
            "no operator binary at {} (cargo build first)",
            operator_bin.display()
        ));
    }
    let started = Instant::now();
    let t = step("starting etcd and kube-apiserver 1.20");
    let api = ApiServer::start();
    eprintln!("    ready in {:.1?} at {}", t.elapsed(), api.url);
    let t = step(
        "starting BIND (zone acc.test) and Pebble (ACME CA requiring External Account Binding)",
    );
    let bind = Bind::start();
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(bind.addr()),
        ..Default::default()
    });
    eprintln!(
        "    ready in {:.1?}; ACME directory {}",
        t.elapsed(),
        pebble.directory_url
    );

    step("installing the CRDs");
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/caas.dev.yaml");
    kubectl(&api, &["create", "-f", &crds.display().to_string()], None)?;
    kubectl(
        &api,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
        None,
    )?;
    kubectl(&api, &["create", "namespace", NAMESPACE], None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Gateway API's Gateway and HTTPRoute (test copies of its CRDs), for the Gateway example.
    rt.block_on(async { caas_testbed::install_gateway_api_crds(&api.client().await).await });

    step("starting the operator");
    let metrics_port = free_port();
    let log = api.dir.join("operator.log");
    let mut cmd = Command::new(operator_bin);
    cmd.args([
        "run".to_string(),
        format!("--http01-addr=127.0.0.1:{}", pebble.http_port),
        format!("--tls-alpn01-addr=127.0.0.1:{}", pebble.tls_port),
        format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        format!("--cluster-resource-namespace={NAMESPACE}"),
        "--pod-ip=10.0.0.10".to_string(),
    ])
    .env("KUBECONFIG", &api.kubeconfig);
    let mut operator = Proc::spawn("caas-operator", cmd, &log, None);
    operator.wait_until(Duration::from_secs(30), || port_open(metrics_port));

    let t = step(&format!(
        "applying {} (EAB Secret, CaaSIssuer, Certificate, annotated Ingress and Gateway)",
        args.examples.display()
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.examples)
        .map_err(|e| format!("{}: {e}", args.examples.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())?
            .replace("${ACME_SERVER}", &pebble.directory_url)
            .replace("${EAB_KEY_ID}", &pebble.eab_kid)
            .replace("${EAB_HMAC_KEY}", &pebble.eab_hmac)
            .replace("${DOMAIN}", DOMAIN);
        kubectl(&api, &["apply", "-n", NAMESPACE, "-f", "-"], Some(&text))?;
    }
    // The demo CA is private: trust its TLS certificate (a public CA needs no caBundle).
    let patch = serde_json::json!({ "spec": { "caBundle": pebble.tls_ca_pem } }).to_string();
    kubectl(
        &api,
        &[
            "patch",
            "-n",
            NAMESPACE,
            "caasissuer",
            "caas",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    )?;

    let issued = rt.block_on(wait_all_ready(
        &api,
        &mut operator,
        Duration::from_secs(120),
    ))?;
    eprintln!(
        "    all issued in {:.1?} (demo total {:.1?})\n",
        t.elapsed(),
        started.elapsed()
    );

    println!("Certificates issued by the local CA (Pebble, EAB required):\n");
    for cert in &issued {
        println!("  {cert}");
    }
    println!("\n$ kubectl get caasissuers,caascerts -n {NAMESPACE}");
    print!(
        "{}",
        kubectl(
            &api,
            &["get", "caasissuers,caascerts", "-n", NAMESPACE],
            None
        )?
    );
    println!("\n$ kubectl get secrets -n {NAMESPACE} -l caas.dev/component=tls");
    print!(
        "{}",
        kubectl(
            &api,
            &[
                "get",
                "secrets",
                "-n",
                NAMESPACE,
                "-l",
                "caas.dev/component=tls"
            ],
            None
        )?
    );
    if args.exit {
        return Ok(());
    }
    println!(
        "\nExplore it:\n  export KUBECONFIG={}\n  kubectl get caascerts -n {NAMESPACE} -o yaml\n  kubectl get events -n {NAMESPACE}\n\
         Operator log: {}\nMetrics: http://127.0.0.1:{metrics_port}/metrics\n\nPress Ctrl-C to stop and clean up.",
        api.kubeconfig.display(),
        log.display()
    );
    rt.block_on(async { tokio::signal::ctrl_c().await.ok() });
    eprintln!("stopping");
    Ok(())
}

/// Waits until every Certificate in the demo namespace (at least three: the example, the
/// Ingress's and the Gateway's) is Ready; returns one summary line per Certificate.
async fn wait_all_ready(
    api: &ApiServer,
    operator: &mut Proc,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let client = api.client().await;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "caas.dev",
        "v1alpha1",
        "Certificate",
    ));
    let certs: Api<DynamicObject> = Api::namespaced_with(client, NAMESPACE, &ar);
    let deadline = Instant::now() + timeout;
    loop {
        let list = certs
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = |c: &DynamicObject| {
            c.data["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
            })
        };
        if list.items.len() >= 3 && list.items.iter().all(ready) {
            return Ok(list
                .items
                .iter()
                .map(|c| {
                    format!(
                        "{:<10} names={:<40} issuer={} secret={} expires={}",
                        c.metadata.name.clone().unwrap_or_default(),
                        c.data["spec"]["dnsNames"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(","))
                            .unwrap_or_default(),
                        c.data["spec"]["issuerRef"]["name"]
                            .as_str()
                            .unwrap_or_default(),
                        c.data["spec"]["secretName"].as_str().unwrap_or_default(),
                        c.data["status"]["notAfter"].as_str().unwrap_or_default(),
                    )
                })
                .collect());
        }
        if let Some(status) = operator.exited() {
            return Err(format!(
                "the operator exited ({status}):\n{}",
                operator.log_tail(40)
            ));
        }
        if Instant::now() > deadline {
            let state: Vec<String> = list
                .items
                .iter()
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.metadata.name.clone().unwrap_or_default(),
                        c.data["status"]["conditions"]
                    )
                })
                .collect();
            return Err(format!(
                "not everything was issued in {timeout:?}: {state:?}\noperator log:\n{}",
                operator.log_tail(40)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
