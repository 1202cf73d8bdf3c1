//! `cargo xtask soak [--quick]`: short certificates (minutes) kept valid for a long run
//! while faults come one after another ([`faults`]): the leader SIGKILLed with a second
//! replica taking the Lease, the API server restarted, the CA frozen, answering 500s,
//! and 429s with `Retry-After`. Every second every TLS Secret is read: the number of
//! moments one held an expired certificate must be 0. Also reported: the least remaining
//! lifetime seen, renewals, orders per certificate, 429s answered and new orders sent
//! during the pauses they asked for, and the restarts survived.
//!
//! Against a real API server, Pebble 2.10 (its `shortlived` profile) behind the fault
//! proxy, and BIND (DNS-01 over RFC 2136). Fails when a moment expired is seen, when a
//! Certificate never gets its first certificate, or when nothing was renewed.
#![forbid(unsafe_code)]

mod faults;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caas_testbed::{AcmeProxy, ApiServer, Pebble, PebbleOptions, Proc, free_port, port_open};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use faults::{Chaos, Rng};

const NS: &str = "soak";

struct Config {
    operator: PathBuf,
    certificates: usize,
    duration: Duration,
    lifetime_secs: u64,
    seed: u64,
    out: PathBuf,
}

fn config() -> Config {
    let caas_testbed::cli::Program::Soak(args) = caas_testbed::cli::Program::parse_as("soak")
    else {
        unreachable!("parse_as(\"soak\") parses the soak's arguments")
    };
    let (certificates, minutes, lifetime) = match args.quick {
        true => (20, 3.0, 180),
        false => (200, 30.0, 180),
    };
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    Config {
        operator: args.common.operator,
        certificates: args.certificates.unwrap_or(certificates).max(1),
        duration: Duration::from_secs_f64(args.minutes.unwrap_or(minutes).max(0.1) * 60.0),
        lifetime_secs: args.lifetime_secs.unwrap_or(lifetime).max(30),
        seed: args.seed.unwrap_or(clock),
        out: args.out,
    }
}

fn main() -> ExitCode {
    let cfg = config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(&cfg)) {
        Ok(report) => {
            let table = report.table(&cfg);
            println!("{table}");
            match std::fs::write(&cfg.out, &table) {
                Ok(()) => eprintln!("written to {}", cfg.out.display()),
                Err(e) => eprintln!("soak: cannot write {}: {e}", cfg.out.display()),
            }
            match report.verdict(&cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(why) => {
                    eprintln!("\nsoak FAILED: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("\nsoak FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One operator replica (both run `caas-operator run` with leader election on).
struct Replica {
    proc: Proc,
    args: Vec<String>,
    kubeconfig: PathBuf,
    dir: PathBuf,
    runs: u32,
    operator: PathBuf,
}

impl Replica {
    fn start(cfg: &Config, api: &ApiServer, bind_addr: &str, n: usize) -> Replica {
        let args = vec![
            "run".to_string(),
            format!("--http01-addr=127.0.0.1:{}", free_port()),
            format!("--tls-alpn01-addr=127.0.0.1:{}", free_port()),
            format!("--metrics-addr=127.0.0.1:{}", free_port()),
            format!("--cluster-resource-namespace={NS}"),
            "--pod-ip=10.0.0.10".to_string(),
            // BIND is not on port 53: DNS-01 records are checked through it alone.
            format!("--dns01-recursive-nameservers={bind_addr}"),
            "--dns01-recursive-nameservers-only".to_string(),
        ];
        let dir = api.dir.join(format!("replica-{n}"));
        std::fs::create_dir_all(&dir).expect("replica log folder");
        let proc = spawn(&cfg.operator, &args, &api.kubeconfig, &dir, 0);
        Replica {
            proc,
            args,
            kubeconfig: api.kubeconfig.clone(),
            dir,
            runs: 1,
            operator: cfg.operator.clone(),
        }
    }

    /// SIGKILLs the process (no Lease release, no cleanup).
    fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again (a new log file) and waits for its metrics port.
    fn restart(&mut self) {
        self.proc = spawn(
            &self.operator,
            &self.args,
            &self.kubeconfig,
            &self.dir,
            self.runs,
        );
        self.runs += 1;
    }

    /// The identity it holds the Lease with (`hostname-pid`).
    fn identity(&self) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), self.proc.pid())
    }
}

fn spawn(
    operator: &PathBuf,
    args: &[String],
    kubeconfig: &PathBuf,
    dir: &std::path::Path,
    run: u32,
) -> Proc {
    let metrics: u16 = (args.iter())
        .find_map(|a| a.strip_prefix("--metrics-addr=127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .expect("metrics port");
    let mut cmd = Command::new(operator);
    // Each replica names itself hostname-pid in the Lease (an inherited POD_NAME would
    // give both the same identity).
    cmd.args(args)
        .env_remove("POD_NAME")
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn");
    let log = dir.join(format!("operator-{run}.log"));
    let mut proc = Proc::spawn("caas-operator", cmd, &log, None);
    proc.wait_until(Duration::from_secs(60), || port_open(metrics));
    proc
}

/// What the checks saw, every second.
#[derive(Default)]
struct Seen {
    /// Secret name -> serial of the certificate it holds.
    serials: BTreeMap<String, String>,
    expired_moments: u64,
    expired_names: BTreeMap<String, u64>,
    least_left_secs: Option<i64>,
    renewals: u64,
    checks: u64,
    /// Seconds the Secrets could not be read (the API server was down).
    unreadable: u64,
}

/// The leaf's serial and notAfter (Unix seconds) of a PEM chain.
fn leaf(pem: &[u8]) -> Option<(String, i64)> {
    let der = x509_parser::pem::Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")?
        .contents;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let serial = cert.raw_serial_as_string();
    Some((serial, cert.validity().not_after.timestamp()))
}

/// One check: every TLS Secret of the namespace read, its certificate's time left.
async fn check(secrets: &Api<Secret>, seen: &Mutex<Seen>) {
    let listed =
        tokio::time::timeout(Duration::from_secs(2), secrets.list(&ListParams::default())).await;
    let now = jiff::Timestamp::now().as_second();
    let mut seen = seen.lock().expect("lock");
    let Ok(Ok(list)) = listed else {
        seen.unreadable += 1;
        return;
    };
    seen.checks += 1;
    for s in list.items {
        let name = s.metadata.name.clone().unwrap_or_default();
        let pem = s.data.as_ref().and_then(|d| d.get("tls.crt"));
        let Some((serial, not_after)) = pem.and_then(|p| leaf(&p.0)) else {
            continue;
        };
        let left = not_after - now;
        if left <= 0 {
            seen.expired_moments += 1;
            *seen.expired_names.entry(name.clone()).or_default() += 1;
        }
        seen.least_left_secs = Some(seen.least_left_secs.map_or(left, |l| l.min(left)));
        match seen.serials.insert(name, serial.clone()) {
            Some(old) if old != serial => seen.renewals += 1,
            _ => {}
        }
    }
}

struct Bed {
    api: ApiServer,
    pebble: Pebble,
    proxy: AcmeProxy,
    replicas: Vec<Replica>,
    client: kube::Client,
}

async fn setup(cfg: &Config) -> Result<Bed, String> {
    eprintln!(
        "==> starting kube-apiserver, BIND, Pebble (shortlived: {} s), the fault proxy and two operator replicas",
        cfg.lifetime_secs
    );
    let api = ApiServer::start();
    let bind = caas_testbed::shared_bind();
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(bind.addr()),
        shortlived_secs: Some(cfg.lifetime_secs),
        ..Default::default()
    });
    let proxy = AcmeProxy::start(&pebble).await;
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/caas.dev.yaml");
    kubectl(&api, &["create", "-f", &crds.display().to_string()])?;
    let established = [
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ];
    kubectl(&api, &established)?;
    kubectl(&api, &["create", "namespace", NS])?;
    let client = api.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    for (name, key, value) in [
        ("eab", "hmac", pebble.eab_hmac.clone()),
        ("tsig", "secret", bind.tsig_secret.clone()),
    ] {
        let s: Secret = serde_json::from_value(
            json!({ "metadata": { "name": name }, "stringData": { key: value } }),
        )
        .unwrap();
        (secrets.create(&PostParams::default(), &s).await).map_err(|e| e.to_string())?;
    }
    let issuer: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer", "metadata": { "name": "ca" },
        "spec": {
            "server": proxy.directory_url, "caBundle": pebble.tls_ca_pem, "profile": "shortlived",
            "externalAccountBinding": { "keyID": pebble.eab_kid, "keySecretRef": { "name": "eab", "key": "hmac" } },
            "privateKeySecretRef": { "name": "account" },
            "solvers": [{ "dns01": { "rfc2136": {
                "nameserver": bind.addr().to_string(), "tsigKeyName": bind.tsig_key_name,
                "tsigSecretSecretRef": { "name": "tsig", "key": "secret" } } } }]
        }
    }))
    .unwrap();
    let issuers =
        Api::<DynamicObject>::namespaced_with(client.clone(), NS, &resource("CaaSIssuer"));
    (issuers.create(&PostParams::default(), &issuer).await).map_err(|e| e.to_string())?;
    let bind_addr = bind.addr().to_string();
    let replicas: Vec<Replica> = tokio::task::block_in_place(|| {
        (0..2)
            .map(|n| Replica::start(cfg, &api, &bind_addr, n))
            .collect()
    });
    Ok(Bed {
        api,
        pebble,
        proxy,
        replicas,
        client,
    })
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("caas.dev", "v1alpha1", kind))
}

fn kubectl(api: &ApiServer, args: &[&str]) -> Result<(), String> {
    let out = (api.kubectl().args(args).output()).map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).to_string()),
    }
}

/// Creates the Certificates (a name each under the BIND zone) one after another over
/// `spread`, so that their renewals keep coming all through the run rather than all at
/// once; a creation refused while the API server restarts is tried again.
async fn create_certificates(
    client: kube::Client,
    n: usize,
    spread: Duration,
) -> Result<(), String> {
    let api = Api::<DynamicObject>::namespaced_with(client, NS, &resource("Certificate"));
    let zone = format!("soak-{}.acc.test", std::process::id());
    let started = Instant::now();
    for i in 0..n {
        let at = started + spread.mul_f64(i as f64 / n as f64);
        tokio::time::sleep_until(at.into()).await;
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate", "metadata": { "name": format!("c{i}") },
            "spec": { "secretName": format!("c{i}-tls"), "issuerRef": { "name": "ca" }, "dnsNames": [format!("c{i}.{zone}")] }
        }))
        .unwrap();
        let mut tries = 0;
        loop {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 409 => break,
                Err(e) if tries == 30 => return Err(format!("creating Certificate c{i}: {e}")),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    Ok(())
}

/// The replica holding the Lease; asked again (for up to 30 s) while the Lease names
/// none of the running replicas (a killed one's Lease has not expired yet).
async fn leader(bed: &Bed) -> Option<usize> {
    let leases: Api<Lease> = Api::namespaced(bed.client.clone(), NS);
    for _ in 0..60 {
        let holder = (leases.get_opt("caas-operator").await.ok().flatten())
            .and_then(|l| l.spec?.holder_identity);
        let found = (bed.replicas.iter()).position(|r| Some(r.identity()) == holder);
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Carries out one fault and waits until it is over; `false` when it could not be made.
async fn apply(bed: &mut Bed, chaos: Chaos) -> bool {
    eprintln!("    fault: {}", chaos.describe());
    match chaos {
        Chaos::KillLeader => {
            let Some(n) = leader(bed).await else {
                eprintln!("    no replica holds the Lease after 30 s: none killed");
                return false;
            };
            bed.replicas[n].kill();
            tokio::time::sleep(Duration::from_secs(5)).await;
            tokio::task::block_in_place(|| bed.replicas[n].restart());
        }
        Chaos::RestartApiServer => tokio::task::block_in_place(|| bed.api.restart()),
        Chaos::FreezeCa => {
            bed.pebble.pause();
            tokio::time::sleep(faults::WINDOW).await;
            bed.pebble.resume();
        }
        Chaos::ServerErrors => {
            faults::server_errors(&bed.proxy);
            tokio::time::sleep(faults::WINDOW).await;
            bed.proxy.clear_rule();
        }
        Chaos::RateLimit => {
            faults::rate_limit(&bed.proxy);
            tokio::time::sleep(faults::WINDOW).await;
            bed.proxy.clear_rule();
        }
    }
    true
}

struct Report {
    seen: Seen,
    faults: BTreeMap<Chaos, u32>,
    /// Over how long the Certificates were created.
    spread: Duration,
    ran: Duration,
    new_orders: usize,
    answered_429: usize,
    answered_500: usize,
    sent_during_pauses: usize,
}

async fn run(cfg: &Config) -> Result<Report, String> {
    let mut bed = setup(cfg).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), NS);
    let checker = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                check(&secrets, &seen).await;
            }
        })
    };
    // Created over the time to a renewal (two thirds of the lifetime), at most half the run.
    let spread = (Duration::from_secs(cfg.lifetime_secs * 2 / 3)).min(cfg.duration / 2);
    eprintln!(
        "==> {} Certificates created over {spread:.0?}, faults for {:.0?} (seed {})",
        cfg.certificates, cfg.duration, cfg.seed
    );
    let creator = tokio::spawn(create_certificates(
        bed.client.clone(),
        cfg.certificates,
        spread,
    ));
    let mut rng = Rng::new(cfg.seed);
    let mut counts = BTreeMap::new();
    let started = Instant::now();
    let end = started + cfg.duration;
    'run: loop {
        for chaos in rng.round() {
            if Instant::now() >= end {
                break 'run;
            }
            if apply(&mut bed, chaos).await {
                *counts.entry(chaos).or_insert(0) += 1;
            }
            let gap = Duration::from_secs(rng.between(10, 20));
            tokio::time::sleep(gap.min(end.saturating_duration_since(Instant::now()))).await;
        }
    }
    let created = creator.await.map_err(|e| e.to_string()).and_then(|r| r);
    // The last Certificates get their first certificate with nothing failing, then one more
    // look: every Certificate has a good certificate.
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("lock").serials.len() < cfg.certificates && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Two more complete checks (waited on, not slept for), at most 30 s.
    let after = seen.lock().expect("lock").checks + 2;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("lock").checks < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    checker.abort();
    created?;
    let log = bed.proxy.exchanges();
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    Ok(Report {
        seen,
        faults: counts,
        spread,
        ran: started.elapsed(),
        new_orders: bed.proxy.new_orders().len(),
        answered_429: log.iter().filter(|e| e.status == 429).count(),
        answered_500: log.iter().filter(|e| e.status == 500).count(),
        sent_during_pauses: faults::sent_during_pauses(&log),
    })
}

impl Report {
    fn verdict(&self, cfg: &Config) -> Result<(), String> {
        if self.seen.expired_moments > 0 {
            return Err(format!(
                "{} moments a Secret held an expired certificate: {:?}",
                self.seen.expired_moments, self.seen.expired_names
            ));
        }
        if self.seen.serials.len() < cfg.certificates {
            return Err("not every Certificate got a certificate".into());
        }
        if self.sent_during_pauses > 0 {
            return Err(format!(
                "{} new orders were sent while the CA's Retry-After still ran",
                self.sent_during_pauses
            ));
        }
        if self.seen.renewals == 0 {
            return Err("nothing was renewed: run longer than a certificate's renewal time".into());
        }
        Ok(())
    }

    fn table(&self, cfg: &Config) -> String {
        let s = &self.seen;
        let kills = self.faults.get(&Chaos::KillLeader).copied().unwrap_or(0);
        let faults: Vec<String> = (self.faults.iter())
            .map(|(c, n)| format!("{n} x {}", c.describe()))
            .collect();
        let least = s.least_left_secs.unwrap_or(0);
        let issued = cfg.certificates as u64 + s.renewals;
        let rows = [
            (
                "Certificates kept valid",
                format!(
                    "{} of {} s (Pebble `shortlived`), DNS-01 through BIND, two replicas",
                    cfg.certificates, cfg.lifetime_secs
                ),
            ),
            (
                "Certificates created",
                format!(
                    "one after another over the first {:.0} s, under the faults (so renewals come all through the run)",
                    self.spread.as_secs_f64()
                ),
            ),
            (
                "run with faults",
                format!(
                    "{:.1} min, seed {}",
                    self.ran.as_secs_f64() / 60.0,
                    cfg.seed
                ),
            ),
            ("faults, one at a time, 10-20 s apart", faults.join("; ")),
            (
                "checks (every Secret, each second)",
                format!(
                    "{} ({} s unreadable: API server down)",
                    s.checks, s.unreadable
                ),
            ),
            (
                "moments a Secret held an expired certificate",
                format!("{} (must be 0)", s.expired_moments),
            ),
            (
                "least remaining lifetime seen",
                format!(
                    "{least} s ({:.0}% of the lifetime)",
                    least as f64 * 100.0 / cfg.lifetime_secs as f64
                ),
            ),
            ("renewals", s.renewals.to_string()),
            (
                "orders per certificate issued",
                format!(
                    "{:.2} ({} new orders for {issued} certificates)",
                    self.new_orders as f64 / issued.max(1) as f64,
                    self.new_orders
                ),
            ),
            (
                "429s answered (Retry-After: 15) / new orders sent during the pauses",
                format!("{} / {}", self.answered_429, self.sent_during_pauses),
            ),
            ("500s answered", self.answered_500.to_string()),
            (
                "operator restarts survived (SIGKILL of the leader)",
                kills.to_string(),
            ),
        ];
        let mut out = String::from("| soak | result |\n|---|---|\n");
        for (what, result) in rows {
            out.push_str(&format!("| {what} | {result} |\n"));
        }
        out
    }
}
