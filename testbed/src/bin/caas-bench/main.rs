//! `cargo xtask bench [--quick] [--storm] [--deploy]`: time to a certificate, burst,
//! renewal storm, deploy targets (ACM in moto), unrelated load and idle cost of the
//! operator, side by side with lego and certbot, against a real API server and Pebble on
//! this machine. Prints a markdown table and writes it to a file.
//!
//! Fails only when the operator does not issue (no Certificate Ready for [`STALL`]), never
//! because a run is slow; a Pebble deadlock, shown by its goroutine dump, gets one more run.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use caas_testbed::{ApiServer, Pebble, PebbleOptions, Proc, free_port, http_get, port_open};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

mod deploy;

struct Config {
    quick: bool,
    operator: PathBuf,
    out: PathBuf,
    single_runs: usize,
    burst: usize,
    storm: bool,
    deploy: bool,
    /// Certificates per Pebble in the burst.
    per_pebble: usize,
    unrelated: usize,
    idle: Duration,
}

fn config() -> Config {
    let caas_testbed::cli::Program::Bench(args) = caas_testbed::cli::Program::parse_as("bench")
    else {
        unreachable!("parse_as(\"bench\") parses the bench's arguments")
    };
    let (single_runs, burst, unrelated, idle) = match args.quick {
        true => (3, 50, 500, 15),
        false => (20, 1000, 10_000, 300),
    };
    // Sizes can be overridden, e.g. to look at one part: --burst 1000 --unrelated 0.
    Config {
        quick: args.quick,
        operator: args.common.operator,
        out: args.out,
        single_runs: args.single_runs.unwrap_or(single_runs).max(1),
        burst: args.burst.unwrap_or(burst),
        storm: args.storm,
        deploy: args.deploy,
        per_pebble: args.per_pebble.unwrap_or(CERTIFICATES_PER_PEBBLE).max(1),
        unrelated: args.unrelated.unwrap_or(unrelated),
        idle: Duration::from_secs(args.idle_secs.unwrap_or(idle)),
    }
}

fn main() {
    let cfg = config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A Pebble deadlock (its bug, proven by its goroutine dump) gets one more run from
    // the start, in a new test bed; anything else fails at once.
    let mut result = rt.block_on(run(&cfg));
    if let Err(Failure::PebbleDeadlock(why)) = &result {
        eprintln!(
            "\nbench: {why}\nbench: that is Pebble's bug, not the operator's; running the bench again from the start"
        );
        result = rt.block_on(run(&cfg));
    }
    match result {
        Ok(table) => {
            println!("{table}");
            if let Err(e) = std::fs::write(&cfg.out, &table) {
                eprintln!("bench: cannot write {}: {e}", cfg.out.display());
            } else {
                eprintln!("written to {}", cfg.out.display());
            }
        }
        Err(Failure::PebbleDeadlock(e) | Failure::Other(e)) => {
            eprintln!("\nbench FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// Why a bench run stopped.
enum Failure {
    /// A Pebble stopped answering with goroutines stuck on its locks (see
    /// [`CERTIFICATES_PER_PEBBLE`]); the dump is saved where the message says.
    PebbleDeadlock(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Other(e)
    }
}

/// How long Certificates may wait with none becoming Ready before the bench asks
/// every Pebble for its goroutines (one certificate takes about a second, a burst
/// completes dozens a second).
const STALL: Duration = Duration::from_secs(100);

/// After a stall: dumps every Pebble's goroutines (which stops it) and says whether
/// one was deadlocked.
fn pebble_deadlock(env: &Env) -> Option<String> {
    for pebble in std::iter::once(&env.pebble).chain(&env.shards) {
        let dump = pebble.goroutine_dump();
        let stuck = caas_testbed::goroutines_stuck_on_locks(&dump);
        if stuck >= 2 {
            let saved = std::env::temp_dir().join(format!(
                "caas-bench-pebble-goroutines-{}.txt",
                std::process::id()
            ));
            let _ = std::fs::write(&saved, &dump);
            return Some(format!(
                "Pebble ({}) deadlocked: after {STALL:?} without progress, {stuck} of its goroutines wait on its locks (goroutine dump: {})",
                pebble.directory_url,
                saved.display()
            ));
        }
    }
    None
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&v, 0.5), percentile(&v, 0.9))
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is index 0; utime 11, stime 12 (1-based 14, 15).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

/// CPU seconds the whole machine has been busy (every process: the operator, the API
/// server, etcd, Pebble, moto), from `/proc/stat`.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = (stat.lines().next().unwrap_or_default().split_whitespace())
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle) / 100.0
}

fn rss_now(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sum of a counter family in the operator's /metrics.
fn metric_sum(port: u16, name: &str, filter: &str) -> f64 {
    let Ok((_, text)) = http_get(port, "/metrics") else {
        return f64::NAN;
    };
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Certificates per Pebble in a burst: Pebble 2.6 keeps everything in one in-memory
/// store behind one RWMutex, and under load a handler that takes its read lock twice
/// while a writer waits deadlocks it (seen at 10,000 orders on one instance and at
/// 2,500 on each of four); a real CA is not one process, so a large burst is spread over
/// one Pebble (and one issuer) per this many, each seeing a tenth of the load. The
/// default of `--per-pebble`.
const CERTIFICATES_PER_PEBBLE: usize = 1_000;

struct Env {
    api: ApiServer,
    pebble: Pebble,
    /// More Pebbles for a large burst, validating through the same ports as `pebble`;
    /// issuer `http-N` uses `shards[N - 1]`.
    shards: Vec<Pebble>,
    /// DNS-01 through an HTTP API: the fake of Cloudflare's, in front of BIND.
    cloudflare: caas_testbed::FakeDnsApi,
    bind_addr: String,
    tsig_name: String,
    tsig_secret: String,
    client: kube::Client,
    certs_ar: ApiResource,
}

fn kubectl(api: &ApiServer, args: &[&str]) -> Result<(), String> {
    let out = api
        .kubectl()
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

async fn setup(cfg: &Config) -> Result<Env, String> {
    eprintln!("==> starting kube-apiserver, BIND, Pebble");
    let api = ApiServer::start();
    let bind = caas_testbed::shared_bind();
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(bind.addr()),
        env: vec![
            ("PEBBLE_AUTHZREUSE".into(), "0".into()),
            // No made-up badNonce answers (Pebble rejects 5% of good nonces by default):
            // certbot 2.1 retries a badNonce once and, on Python 3.11, crashes on the
            // second with "AttributeError: can't set attribute" (certbot #9539, fixed in
            // 2.2), about one full-mode run in five. The operator's badNonce handling is
            // tested in the fault tests.
            ("PEBBLE_WFE_NONCEREJECT".into(), "0".into()),
        ],
        ..Default::default()
    });
    let shards: Vec<Pebble> = (1..cfg.burst.div_ceil(cfg.per_pebble))
        .map(|_| {
            Pebble::start(PebbleOptions {
                dns_server: Some(bind.addr()),
                env: vec![
                    ("PEBBLE_AUTHZREUSE".into(), "0".into()),
                    // (the same as the main Pebble: no made-up badNonce answers)
                    ("PEBBLE_WFE_NONCEREJECT".into(), "0".into()),
                ],
                validation_ports: Some((pebble.http_port, pebble.tls_port)),
                ..Default::default()
            })
        })
        .collect();
    if !shards.is_empty() {
        eprintln!("    {} Pebbles for the burst", shards.len() + 1);
    }
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/caas.dev.yaml");
    kubectl(&api, &["create", "-f", &crds.display().to_string()])?;
    kubectl(
        &api,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    )?;
    kubectl(&api, &["create", "namespace", "bench"])?;
    kubectl(&api, &["create", "namespace", "unrelated"])?;
    let client = api.client().await;
    let certs_ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "caas.dev",
        "v1alpha1",
        "Certificate",
    ));
    let env = Env {
        bind_addr: bind.addr().to_string(),
        tsig_name: bind.tsig_key_name.clone(),
        tsig_secret: bind.tsig_secret.clone(),
        api,
        cloudflare: caas_testbed::FakeCloudflareApi::start().await,
        pebble,
        shards,
        client,
        certs_ar,
    };
    // EAB + TSIG Secrets and two issuers: HTTP-01 and DNS-01.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "bench");
    for (name, key, value) in [
        ("eab", "hmac", env.pebble.eab_hmac.clone()),
        ("tsig", "secret", env.tsig_secret.clone()),
        ("cloudflare", "api-token", env.cloudflare.credential.clone()),
    ] {
        let s: Secret = serde_json::from_value(
            json!({ "metadata": { "name": name }, "stringData": { key: value } }),
        )
        .unwrap();
        secrets
            .create(&PostParams::default(), &s)
            .await
            .map_err(|e| e.to_string())?;
    }
    let issuers = Api::<DynamicObject>::namespaced_with(
        env.client.clone(),
        "bench",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("caas.dev", "v1alpha1", "CaaSIssuer")),
    );
    let mut specs = vec![
        ("http".to_string(), json!({ "http01": {} }), &env.pebble),
        (
            "dns".to_string(),
            json!({ "dns01": { "rfc2136": { "nameserver": env.bind_addr, "tsigKeyName": env.tsig_name, "tsigSecretSecretRef": { "name": "tsig", "key": "secret" } } } }),
            &env.pebble,
        ),
        (
            "cloudflare".to_string(),
            json!({ "dns01": { "cloudflare": { "apiTokenSecretRef": { "name": "cloudflare", "key": "api-token" }, "apiURL": env.cloudflare.url } } }),
            &env.pebble,
        ),
    ];
    for (i, shard) in env.shards.iter().enumerate() {
        specs.push((format!("http-{}", i + 1), json!({ "http01": {} }), shard));
    }
    for (name, solver, pebble) in specs {
        // One EAB Secret and one account per CA.
        let (eab, account) = match name.strip_prefix("http-") {
            Some(n) => (format!("eab-{n}"), format!("account-{n}")),
            None => ("eab".to_string(), "account".to_string()),
        };
        if eab != "eab" {
            let s: Secret = serde_json::from_value(
                json!({ "metadata": { "name": eab }, "stringData": { "hmac": pebble.eab_hmac } }),
            )
            .unwrap();
            secrets
                .create(&PostParams::default(), &s)
                .await
                .map_err(|e| e.to_string())?;
        }
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer", "metadata": { "name": name },
            "spec": {
                "server": pebble.directory_url, "caBundle": pebble.tls_ca_pem,
                "externalAccountBinding": { "keyID": pebble.eab_kid, "keySecretRef": { "name": eab, "key": "hmac" } },
                "privateKeySecretRef": { "name": account },
                "solvers": [solver]
            }
        }))
        .unwrap();
        issuers
            .create(&PostParams::default(), &obj)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(env)
}

fn start_operator(env: &Env, cfg: &Config, tag: &str) -> (Proc, u16) {
    let metrics = free_port();
    let mut cmd = Command::new(&cfg.operator);
    cmd.args([
        "run".to_string(),
        format!("--http01-addr=127.0.0.1:{}", env.pebble.http_port),
        format!("--tls-alpn01-addr=127.0.0.1:{}", env.pebble.tls_port),
        format!("--metrics-addr=127.0.0.1:{metrics}"),
        "--cluster-resource-namespace=bench".to_string(),
        "--pod-ip=10.0.0.10".to_string(),
        // BIND is not on port 53: DNS-01 records are checked through it alone.
        format!("--dns01-recursive-nameservers={}", env.bind_addr),
        "--dns01-recursive-nameservers-only".to_string(),
    ])
    .env("KUBECONFIG", &env.api.kubeconfig)
    // CAAS_BENCH_LOG=warn,caas_operator::kube_requests=trace lists every API request.
    .env(
        "RUST_LOG",
        std::env::var("CAAS_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let mut proc = Proc::spawn(
        "caas-operator",
        cmd,
        &env.api.dir.join(format!("operator-{tag}.log")),
        None,
    );
    proc.wait_until(Duration::from_secs(30), || port_open(metrics));
    (proc, metrics)
}

fn is_ready(obj: &DynamicObject) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Creates Certificates named `names` (spread over `issuers` in turn) and waits until
/// all are Ready.
async fn issue_all(
    env: &Env,
    issuers: &[&str],
    names: &[String],
    prefix: &str,
    operator: &mut Proc,
    timeout: Duration,
) -> Result<Duration, Failure> {
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "bench", &env.certs_ar);
    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let started = Instant::now();
    let creates = futures::stream::iter(names.iter().cloned().enumerate().map(|(i, name)| {
        let api = api.clone();
        let issuer = issuers[i % issuers.len()].to_string();
        let prefix = prefix.to_string();
        async move {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate", "metadata": { "name": name },
                "spec": { "secretName": format!("{name}-tls"), "issuerRef": { "name": issuer }, "dnsNames": [format!("{name}.{prefix}acc.test")] }
            }))
            .unwrap();
            api.create(&PostParams::default(), &obj).await.map(|_| ())
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>();
    let wait = wait_all(
        env,
        &mut stream,
        &wanted,
        is_ready,
        "Ready",
        started,
        timeout,
        operator,
    );
    let (results, waited) = tokio::join!(creates, wait);
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(Failure::Other(format!("creating Certificates: {e}")));
    }
    waited
}

/// Waits until every Certificate in `wanted` has met `done` (`what` in messages). Fails
/// when none more has for [`STALL`] or `timeout` has passed; after a stall with a Pebble
/// deadlocked (its goroutines say so) the failure is [`Failure::PebbleDeadlock`].
#[allow(clippy::too_many_arguments)]
async fn wait_all(
    env: &Env,
    stream: &mut futures::stream::BoxStream<'_, Result<DynamicObject, watcher::Error>>,
    wanted: &BTreeSet<String>,
    done: impl Fn(&DynamicObject) -> bool,
    what: &str,
    started: Instant,
    timeout: Duration,
    operator: &Proc,
) -> Result<Duration, Failure> {
    let mut met = BTreeSet::new();
    let mut progress = Instant::now();
    let wait = async {
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(obj)) => {
                        let name = obj.metadata.name.clone().unwrap_or_default();
                        if wanted.contains(&name) && done(&obj) && met.insert(name) {
                            progress = Instant::now();
                            if met.len() == wanted.len() {
                                return Ok(started.elapsed());
                            }
                        }
                    }
                    Some(Err(_)) => {}
                    None => return Err("watch ended".to_string()),
                },
                // Wakes at the stall deadline itself; each step moves it.
                _ = tokio::time::sleep_until((progress + STALL).into()) => {
                    return Err(format!("none more {what} for {STALL:?}"));
                },
            }
        }
    };
    let why = match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(took)) => return Ok(took),
        Ok(Err(why)) => why,
        Err(_) => format!("time limit {timeout:?} reached"),
    };
    if let Some(deadlock) = pebble_deadlock(env) {
        return Err(Failure::PebbleDeadlock(deadlock));
    }
    Err(Failure::Other(format!(
        "{} of {} Certificates {what} ({why}; operator log tail:\n{})",
        met.len(),
        wanted.len(),
        operator.log_tail(20)
    )))
}

/// One untimed certificate from `issuer`: registers its ACME account.
async fn warm_up(env: &Env, issuer: &str, operator: &mut Proc) -> Result<(), Failure> {
    let name = format!("warm-{issuer}");
    issue_all(
        env,
        &[issuer],
        &[name],
        "w.",
        operator,
        Duration::from_secs(120),
    )
    .await
    .map(|_| ())
}

/// Sets `caas.dev/renew` on every Certificate in `names` at once and waits until each
/// has a new revision; returns the time taken and the most new orders in one second.
async fn renew_all(
    env: &Env,
    names: &[String],
    metrics: u16,
    operator: &mut Proc,
    timeout: Duration,
) -> Result<(Duration, f64), Failure> {
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "bench", &env.certs_ar);
    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let started = Instant::now();
    // Any new value asks for a renewal; the time says when it was asked.
    let at = format!(
        "storm-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    );
    let patches = futures::stream::iter(names.iter().cloned().map(|name| {
        let api = api.clone();
        let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": at } } });
        async move {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>();
    let peak = std::sync::Mutex::new(0f64);
    let sample = async {
        let mut last = metric_sum(metrics, "caas_acme_requests_total", "order-plz");
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = metric_sum(metrics, "caas_acme_requests_total", "order-plz");
            let mut p = peak.lock().unwrap();
            *p = p.max(now - last);
            last = now;
        }
    };
    let wait = wait_all(
        env,
        &mut stream,
        &wanted,
        |obj| obj.data["status"]["revision"].as_i64() >= Some(2),
        "renewed",
        started,
        timeout,
        operator,
    );
    let waited = tokio::select! {
        (results, waited) = async { tokio::join!(patches, wait) } => {
            if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                return Err(Failure::Other(format!("renewing Certificates: {e}")));
            }
            waited
        }
        _ = sample => unreachable!("sampling never ends"),
    };
    let peak = *peak.lock().unwrap();
    waited.map(|d| (d, peak))
}

/// Runs a peer client `runs` times (after one untimed run that registers its account);
/// returns the wall times.
fn peer_runs(env: &Env, peer: &str, runs: usize) -> Result<Vec<f64>, String> {
    let dir = env.api.dir.join(format!("peer-{peer}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ca = env.pebble.dir.join("ca.pem");
    let mut times = Vec::new();
    for i in 0..=runs {
        let domain = format!("{peer}{i}-{}.peer.acc.test", std::process::id());
        let mut cmd = match peer {
            "lego" => {
                let mut c = Command::new("lego");
                c.args([
                    "--server",
                    &env.pebble.directory_url,
                    "--email",
                    "bench@example.com",
                    "--accept-tos",
                    "--eab",
                    "--kid",
                    &env.pebble.eab_kid,
                    "--hmac",
                    &env.pebble.eab_hmac,
                    "--domains",
                    &domain,
                    "--http",
                    "--http.port",
                    &format!("127.0.0.1:{}", env.pebble.http_port),
                    "--key-type",
                    "ec256",
                    "--path",
                    &dir.display().to_string(),
                    "run",
                ])
                .env("LEGO_CA_CERTIFICATES", &ca);
                c
            }
            _ => {
                let mut c = Command::new("certbot");
                c.args([
                    "certonly",
                    "--standalone",
                    "--non-interactive",
                    "--agree-tos",
                    "-m",
                    "bench@example.com",
                    "--server",
                    &env.pebble.directory_url,
                    "--eab-kid",
                    &env.pebble.eab_kid,
                    "--eab-hmac-key",
                    &env.pebble.eab_hmac,
                    "--http-01-port",
                    &env.pebble.http_port.to_string(),
                    "--http-01-address",
                    "127.0.0.1",
                    "--key-type",
                    "ecdsa",
                    "-d",
                    &domain,
                    "--config-dir",
                    &dir.join("config").display().to_string(),
                    "--work-dir",
                    &dir.join("work").display().to_string(),
                    "--logs-dir",
                    &dir.join("logs").display().to_string(),
                ])
                .env("REQUESTS_CA_BUNDLE", &ca);
                c
            }
        };
        let t = Instant::now();
        let out = cmd
            .output()
            .map_err(|e| format!("{peer}: {e} (cargo xtask test-env installs it)"))?;
        if !out.status.success() {
            // certbot 2.1 on Python 3.11 hides the CA's error behind an AttributeError:
            // its log has the last ACME error.
            let log = std::fs::read_to_string(dir.join("logs/letsencrypt.log")).unwrap_or_default();
            let acme_error = (log.lines().rev())
                .find(|l| l.starts_with("acme.messages.Error"))
                .map(|l| format!(" (its log: {l})"))
                .unwrap_or_default();
            return Err(format!(
                "{peer} failed{acme_error}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(times)
}

async fn run(cfg: &Config) -> Result<String, Failure> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let env = setup(cfg).await?;
    let (mut op, metrics) = start_operator(&env, cfg, "main");

    // 1. Single certificate, HTTP-01 and DNS-01 (account registered by the first one).
    let mut singles = Vec::new();
    for (issuer, label) in [
        ("http", "HTTP-01"),
        ("dns", "DNS-01, RFC 2136"),
        (
            "cloudflare",
            "DNS-01, Cloudflare API (its fake, in front of BIND)",
        ),
    ] {
        warm_up(&env, issuer, &mut op).await?;
        let mut times = Vec::new();
        for i in 0..cfg.single_runs {
            let d = issue_all(
                &env,
                &[issuer],
                &[format!("single-{issuer}-{i}")],
                "s.",
                &mut op,
                Duration::from_secs(120),
            )
            .await?;
            times.push(d.as_secs_f64());
        }
        let (p50, p90) = stats(times);
        singles.push((label, p50, p90));
        rows.push((
            format!(
                "single certificate, {label} (p50 / p90 of {})",
                cfg.single_runs
            ),
            format!("{p50:.2} s / {p90:.2} s"),
        ));
    }
    // Peers, against a Pebble of the same configuration (the operator keeps the ports of ours).
    op.stop(Duration::from_secs(10));
    let peer_runs_n = if cfg.quick {
        1
    } else {
        cfg.single_runs.min(10)
    };
    let http_p50 = singles[0].1;
    for peer in ["lego", "certbot"] {
        match peer_runs(&env, peer, peer_runs_n) {
            Ok(times) => {
                let (p50, p90) = stats(times);
                rows.push((
                    format!("{peer} (Debian), HTTP-01, same Pebble (p50 / p90 of {peer_runs_n})"),
                    format!(
                        "{p50:.2} s / {p90:.2} s; caas-operator is {:.1}x faster",
                        p50 / http_p50
                    ),
                ));
            }
            Err(e) => rows.push((peer.to_string(), format!("not measured: {e}"))),
        }
    }
    let (mut op, metrics) = {
        let _ = metrics;
        start_operator(&env, cfg, "burst")
    };

    // 2. Burst.
    // The burst's issuers: one per Pebble, each account registered before (warm-up).
    let shard_issuers: Vec<String> = (1..=env.shards.len())
        .map(|n| format!("http-{n}"))
        .collect();
    let mut burst_issuers = vec!["http"];
    burst_issuers.extend(shard_issuers.iter().map(String::as_str));
    for issuer in &burst_issuers[1..] {
        warm_up(&env, issuer, &mut op).await?;
    }
    let acme0 = metric_sum(metrics, "caas_acme_requests_total", "");
    let kube0 = metric_sum(metrics, "caas_kube_api_requests_total", "");
    let (cpu0, _) = proc_usage(op.pid());
    let names: Vec<String> = (0..cfg.burst).map(|i| format!("burst-{i}")).collect();
    let took = issue_all(
        &env,
        &burst_issuers,
        &names,
        "b.",
        &mut op,
        Duration::from_secs(1800),
    )
    .await?;
    let (cpu1, hwm) = proc_usage(op.pid());
    let acme = metric_sum(metrics, "caas_acme_requests_total", "") - acme0;
    let kube = metric_sum(metrics, "caas_kube_api_requests_total", "") - kube0;
    let n = cfg.burst as f64;
    rows.push((
        format!(
            "burst: {} Certificates created at once, until all Ready{}",
            cfg.burst,
            match burst_issuers.len() {
                1 => String::new(),
                n => format!(" ({n} Pebbles, one issuer each)"),
            }
        ),
        format!(
            "{:.1} s ({:.1} certificates/s)",
            took.as_secs_f64(),
            n / took.as_secs_f64()
        ),
    ));
    rows.push((
        "burst: operator CPU, peak RSS".into(),
        format!("{:.1} CPU s, {:.1} MiB", cpu1 - cpu0, hwm as f64 / 1024.0),
    ));
    rows.push((
        "burst: ACME / Kubernetes API requests per certificate".into(),
        format!("{:.1} / {:.1}", acme / n, kube / n),
    ));
    let rss_burst = rss_now(op.pid());

    // 2b. Renewal storm: every burst certificate due at once.
    if cfg.storm {
        tokio::time::sleep(Duration::from_secs(if cfg.quick { 10 } else { 60 })).await;
        let (cpu0, _) = proc_usage(op.pid());
        let busy0 = machine_busy();
        let acme0 = metric_sum(metrics, "caas_acme_requests_total", "");
        let kube0 = metric_sum(metrics, "caas_kube_api_requests_total", "");
        let limited0 = metric_sum(metrics, "caas_acme_requests_total", "status=\"429\"");
        let (took, peak_orders) =
            renew_all(&env, &names, metrics, &mut op, Duration::from_secs(3600)).await?;
        let (cpu1, hwm) = proc_usage(op.pid());
        let busy = machine_busy() - busy0;
        let acme = metric_sum(metrics, "caas_acme_requests_total", "") - acme0;
        let kube = metric_sum(metrics, "caas_kube_api_requests_total", "") - kube0;
        let limited = metric_sum(metrics, "caas_acme_requests_total", "status=\"429\"") - limited0;
        rows.push((
            format!(
                "renewal storm: all {} due at once (caas.dev/renew on each), until all renewed",
                cfg.burst
            ),
            format!(
                "{:.1} s ({:.1} renewals/s); new orders at most {peak_orders:.0} per second; {limited:.0} answers 429",
                took.as_secs_f64(),
                n / took.as_secs_f64()
            ),
        ));
        rows.push((
            "renewal storm: operator CPU (whole machine), peak RSS (whole run); ACME / API requests per renewal"
                .into(),
            format!(
                "{:.1} CPU s ({busy:.1}), {:.1} MiB; {:.1} / {:.1}",
                cpu1 - cpu0,
                hwm as f64 / 1024.0,
                acme / n,
                kube / n
            ),
        ));
    }

    // 2c. Deploy targets: the burst's certificates to ACM (moto).
    if cfg.deploy {
        deploy::run(&env, cfg, &names, metrics, &mut op, &mut rows).await?;
    }

    // 4. Idle (before adding unrelated Secrets): nothing due. First let the follow-up of
    // the burst settle (each new certificate's first ARI check and status update).
    tokio::time::sleep(if cfg.quick {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(60)
    })
    .await;
    let acme0 = metric_sum(metrics, "caas_acme_requests_total", "");
    let kube0 = metric_sum(metrics, "caas_kube_api_requests_total", "");
    let (cpu0, _) = proc_usage(op.pid());
    tokio::time::sleep(cfg.idle).await;
    let (cpu1, _) = proc_usage(op.pid());
    let minutes = cfg.idle.as_secs_f64() / 60.0;
    let acme_idle = metric_sum(metrics, "caas_acme_requests_total", "") - acme0;
    let kube_idle = metric_sum(metrics, "caas_kube_api_requests_total", "") - kube0;
    rows.push((
        format!(
            "idle: {} Ready Certificates, {:.0} s",
            cfg.burst + 3 * (cfg.single_runs + 1) + env.shards.len(),
            cfg.idle.as_secs_f64()
        ),
        format!(
            "{:.2} CPU s/min, {:.0} ACME and {:.1} API requests/min (Lease renewals)",
            (cpu1 - cpu0) / minutes,
            acme_idle / minutes,
            kube_idle / minutes
        ),
    ));

    // 3. Unrelated Secrets: the operator's memory must not grow with them.
    let rss_before = rss_now(op.pid());
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "unrelated");
    let blob = "x".repeat(10 * 1024);
    let t = Instant::now();
    let results: Vec<_> = futures::stream::iter((0..cfg.unrelated).map(|i| {
        let secrets = secrets.clone();
        let blob = blob.clone();
        async move {
            let s: Secret = serde_json::from_value(json!({ "metadata": { "name": format!("app-{i}") }, "stringData": { "blob": blob } })).unwrap();
            secrets.create(&PostParams::default(), &s).await.map(|_| ())
        }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        return Err(format!("creating unrelated Secrets: {e}").into());
    }
    eprintln!(
        "    {} unrelated Secrets created in {:.1?}",
        cfg.unrelated,
        t.elapsed()
    );
    // Renew a few certificates so the operator works while the Secrets are there.
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "bench", &env.certs_ar);
    let names: Vec<String> = (0..cfg.burst.min(20))
        .map(|i| format!("after-{i}"))
        .collect();
    issue_all(
        &env,
        &["http"],
        &names,
        "a.",
        &mut op,
        Duration::from_secs(300),
    )
    .await?;
    let _ = api
        .patch("burst-0", &PatchParams::default(), &Patch::Merge(json!({})))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_now(op.pid());
    rows.push((
        format!("unrelated: {} Secrets of 10 KB added", cfg.unrelated),
        format!("operator RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB; after the burst: {:.1} MiB)", rss_before as f64 / 1024.0, rss_after as f64 / 1024.0, (rss_after as f64 - rss_before as f64) / 1024.0, rss_burst as f64 / 1024.0),
    ));
    op.stop(Duration::from_secs(10));

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let profile = if cfg
        .operator
        .components()
        .any(|c| c.as_os_str() == "release")
    {
        "release"
    } else {
        "debug"
    };
    let mut table = format!(
        "| measurement ({} mode; {cpus} CPUs; operator {profile} build; API server, etcd, Pebble on the same machine) | result |\n|---|---|\n",
        if cfg.quick { "quick" } else { "full" }
    );
    for (k, v) in rows {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    Ok(table)
}
