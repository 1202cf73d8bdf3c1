//! Project automation, called as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! * `test-env` installs and caches everything the integration tests need: kube-apiserver
//!   and etcd, Pebble 2.10 (ACME with EAB, ARI, profiles, dns-persist-01 and dns-account-01) and pebble-challtestsrv, BIND 9, kubectl
//!   and Helm. Idempotent: a second run only checks and takes seconds.
//! * `ci` is the one command that checks the project: `test-env`, `cargo fmt --check`,
//!   `cargo deny`, `cargo clippy --all-targets -- -D warnings`, the whole test suite, the
//!   demo, the quick benchmark and the 3-minute soak.
//! * `soak` keeps short certificates valid under faults (see `caas-soak`).
//!
//! Plain `std` and clap (for `--help` on every task; the operator builds clap anyway):
//! this crate must build in seconds on a fresh machine, before anything else is there.
#![forbid(unsafe_code)]

mod test_env;

use std::process::{Command, ExitCode};

use clap::Parser;

/// Project automation: `cargo xtask <task>`.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "caas-operator's project automation"
)]
enum Task {
    /// Install/cache the test bed (kube-apiserver, etcd, Pebble, BIND, kubectl, Helm).
    TestEnv,
    /// test-env, then cargo fmt --check, cargo deny, clippy -D warnings, all tests, the
    /// demo, the quick benchmark and the 3-minute soak: the project's one test command.
    Ci,
    /// The whole test suite (installs the test bed first); arguments go to `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
    /// Regenerate crds/, the chart's CRDs and deploy/caas-operator.yaml.
    Manifests,
    /// Time to a certificate, burst, memory and idle cost; lego and certbot side by side.
    Bench {
        /// Benchmark a release build of the operator.
        #[arg(long)]
        release: bool,
        /// Small sizes, for CI.
        #[arg(long)]
        quick: bool,
        /// Single-certificate runs per tool (default 20; 3 with --quick).
        #[arg(long)]
        single_runs: Option<usize>,
        /// Certificates applied at once (default 1000; 50 with --quick).
        #[arg(long)]
        burst: Option<usize>,
        /// Unrelated Secrets (default 10000; 500 with --quick).
        #[arg(long)]
        unrelated: Option<usize>,
        /// Seconds of idle measured (default 300; 15 with --quick).
        #[arg(long)]
        idle_secs: Option<u64>,
        /// After the burst, a renewal storm: every burst certificate due at once.
        #[arg(long)]
        storm: bool,
        /// Certificates per Pebble in the burst (default 1000).
        #[arg(long)]
        per_pebble: Option<usize>,
        /// Deploy targets: renewal-to-ACM latency, and the burst given one ACM target
        /// each, then all renewed at once (moto).
        #[arg(long)]
        deploy: bool,
        /// Where the markdown table is written (default target/bench-results.md).
        #[arg(long)]
        out: Option<String>,
    },
    /// Short certificates kept valid under faults (SIGKILLs with a second replica, API
    /// server restarts, a frozen CA, 500s, 429s): moments expired must be 0.
    Soak {
        /// Soak a release build of the operator.
        #[arg(long)]
        release: bool,
        /// The CI form: 20 Certificates of 180 s for 3 minutes.
        #[arg(long)]
        quick: bool,
        /// Certificates kept valid (default 200; 20 with --quick).
        #[arg(long)]
        certificates: Option<usize>,
        /// Minutes of faults (default 30; 3 with --quick).
        #[arg(long)]
        minutes: Option<f64>,
        /// Certificate lifetime in seconds (default 180).
        #[arg(long)]
        lifetime_secs: Option<u64>,
        /// Seed of the fault schedule (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// A local API server, ACME CA with EAB and the operator issuing the examples/.
    Demo {
        /// Stop once everything is issued.
        #[arg(long)]
        exit: bool,
        /// The manifests to apply (default examples/).
        #[arg(long)]
        examples: Option<String>,
    },
}

fn main() -> ExitCode {
    let result = match Task::parse() {
        Task::TestEnv => test_env::run().map(|paths| paths.print()),
        Task::Ci => ci(),
        Task::Test { cargo_test_args } => {
            test_env::run().and_then(|_| test(&cargo_test_args).map(|_| ()))
        }
        Task::Manifests => test_env::run().and_then(|paths| manifests(&paths)),
        Task::Demo { exit, examples } => {
            let mut args = Vec::new();
            if exit {
                args.push("--exit".to_string());
            }
            if let Some(dir) = examples {
                args.extend(["--examples".to_string(), dir]);
            }
            test_env::run().and_then(|_| demo(&args))
        }
        Task::Bench {
            release,
            quick,
            single_runs,
            burst,
            unrelated,
            idle_secs,
            storm,
            per_pebble,
            deploy,
            out,
        } => {
            let mut args = Vec::new();
            for (flag, on) in [
                ("--release", release),
                ("--quick", quick),
                ("--storm", storm),
                ("--deploy", deploy),
            ] {
                if on {
                    args.push(flag.to_string());
                }
            }
            for (flag, value) in [
                ("--single-runs", single_runs.map(|v| v.to_string())),
                ("--burst", burst.map(|v| v.to_string())),
                ("--unrelated", unrelated.map(|v| v.to_string())),
                ("--idle-secs", idle_secs.map(|v| v.to_string())),
                ("--per-pebble", per_pebble.map(|v| v.to_string())),
                ("--out", out),
            ] {
                if let Some(v) = value {
                    args.extend([flag.to_string(), v]);
                }
            }
            test_env::run().and_then(|_| bench(&args))
        }
        Task::Soak {
            release,
            quick,
            certificates,
            minutes,
            lifetime_secs,
            seed,
        } => {
            let mut args = Vec::new();
            for (flag, on) in [("--release", release), ("--quick", quick)] {
                if on {
                    args.push(flag.to_string());
                }
            }
            for (flag, value) in [
                ("--certificates", certificates.map(|v| v.to_string())),
                ("--minutes", minutes.map(|v| v.to_string())),
                ("--lifetime-secs", lifetime_secs.map(|v| v.to_string())),
                ("--seed", seed.map(|v| v.to_string())),
            ] {
                if let Some(v) = value {
                    args.extend([flag.to_string(), v]);
                }
            }
            test_env::run().and_then(|_| soak(&args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo` with the given arguments in the workspace root, failing on a non-zero exit.
fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

/// One line saying how much disk is free where the build and the test bed's cache write
/// and how much `target/` takes: a CI run once died of a full disk while compiling the
/// tests, and this line makes the next one say so at a glance.
fn disk_report(when: &str) {
    use std::path::Path;
    // A KiB count from a command's output (`df -Pk`: line 1, column 3; `du -sk`: line 0,
    // column 0), as GB.
    let gb = |cmd: &mut Command, line: usize, column: usize| -> Option<String> {
        let text = String::from_utf8(cmd.output().ok()?.stdout).ok()?;
        let kib: u64 = text
            .lines()
            .nth(line)?
            .split_whitespace()
            .nth(column)?
            .parse()
            .ok()?;
        Some(format!("{:.1} GB", kib as f64 * 1024.0 / 1e9))
    };
    // df needs a path that exists: the nearest existing folder holding `path`.
    let free = |path: &Path| {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        gb(Command::new("df").arg("-Pk").arg(existing), 1, 3).unwrap_or_else(|| "unknown".into())
    };
    let used = |path: &Path| {
        gb(Command::new("du").arg("-sk").arg(path), 0, 0).unwrap_or_else(|| "nothing".into())
    };
    let target = workspace_root().join("target");
    let cache = test_env::cache_dir();
    eprintln!(
        "==> disk {when}: {} free for target/ (which takes {}), {} free for the cache {} (which takes {})",
        free(&target),
        used(&target),
        free(&cache),
        cache.display(),
        used(&cache),
    );
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs the whole test suite, echoing its output, and returns the (passed, failed)
/// totals over all test binaries.
fn test(extra: &[String]) -> Result<(u64, u64), String> {
    use std::io::BufRead;
    // Build everything first (never two builds at once), then run the 20-minute slow-CA
    // test in the background (its own process of the e2e binary) while the rest runs.
    cargo(&[
        "test",
        "--workspace",
        "--all-targets",
        "--no-run",
        "--quiet",
    ])?;
    let mut slow = match extra.is_empty() {
        true => Some(SlowTest::start()?),
        false => None,
    };
    let mut args = vec!["test", "--workspace", "--all-targets"];
    args.extend(extra.iter().map(String::as_str));
    if slow.is_some() {
        args.extend(["--", "--skip", SLOW_TEST]);
    }
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo {}", args.join(" "));
    let mut child = Command::new(&cargo_bin)
        .args(&args)
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cargo_bin}: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        let (p, f) = test_result_counts(&line);
        passed += p;
        failed += f;
    }
    let mut status = child.wait().map_err(|e| e.to_string())?;
    if let Some(slow) = slow.as_mut() {
        let (ok, p, f) = slow.finish()?;
        passed += p;
        failed += f;
        if !ok && status.success() {
            status = slow.status.expect("finished");
        }
    }
    println!("tests: {passed} passed, {failed} failed");
    if status.success() {
        Ok((passed, failed))
    } else {
        Err(format!(
            "`cargo {}` failed ({status}): {passed} passed, {failed} failed",
            args.join(" ")
        ))
    }
}

/// The (passed, failed) counts of a libtest `test result:` line; zeros for other lines.
fn test_result_counts(line: &str) -> (u64, u64) {
    let Some(rest) = line.strip_prefix("test result: ") else {
        return (0, 0);
    };
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim().strip_suffix(word).map(|n| {
                    n.trim()
                        .trim_start_matches("ok. ")
                        .trim_start_matches("FAILED. ")
                        .to_string()
                })
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (count(" passed"), count(" failed"))
}

/// The integration-test binary (tests/e2e/main.rs, one module per area).
const E2E_TEST: &str = "e2e";

/// The test that waits on a slow CA for 20 minutes (tests/e2e/slow_ca.rs), by its path
/// in the e2e binary: `--exact` runs it alone, `--skip` leaves it out of the main run.
const SLOW_TEST: &str = "slow_ca::a_slow_ca_is_waited_for_without_a_timeout";

/// The slow-CA test running in the background (the e2e binary, filtered to that one
/// test), its output in a file. Killed if dropped before it finished (an earlier step
/// failed).
struct SlowTest {
    child: std::process::Child,
    log: std::path::PathBuf,
    status: Option<std::process::ExitStatus>,
}

impl Drop for SlowTest {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl SlowTest {
    fn start() -> Result<SlowTest, String> {
        let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo_bin)
            .args([
                "test",
                "--test",
                E2E_TEST,
                "--no-run",
                "--message-format=json",
            ])
            .current_dir(workspace_root())
            .stderr(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {cargo_bin}: {e}"))?;
        let exe = test_executable(&String::from_utf8_lossy(&out.stdout), E2E_TEST)
            .ok_or("cannot find the e2e test binary in cargo's output")?;
        let log = workspace_root().join("target").join("slow_ca.log");
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        eprintln!(
            "==> {exe} {SLOW_TEST} --exact (in the background, output in {})",
            log.display()
        );
        let child = Command::new(&exe)
            .args([SLOW_TEST, "--exact", "--nocapture"])
            .current_dir(workspace_root())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot run {exe}: {e}"))?;
        Ok(SlowTest {
            child,
            log,
            status: None,
        })
    }

    /// Waits for it, echoes its output, and returns (success, passed, failed).
    fn finish(&mut self) -> Result<(bool, u64, u64), String> {
        eprintln!("==> waiting for the slow-CA test");
        let status = self.child.wait().map_err(|e| e.to_string())?;
        self.status = Some(status);
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        println!("{output}");
        let (passed, mut failed) = output
            .lines()
            .map(test_result_counts)
            .fold((0, 0), |(p, f), (a, b)| (p + a, f + b));
        if !status.success() && failed == 0 {
            // Crashed before its summary line.
            failed = 1;
        }
        Ok((status.success(), passed, failed))
    }
}

/// The executable of the integration-test target `name`, from the output of `cargo test
/// --no-run --message-format=json`: one JSON object per line, the test target's line
/// naming the target and its executable (std only here: no JSON parser).
fn test_executable(cargo_json: &str, name: &str) -> Option<String> {
    let name = format!("\"name\":\"{name}\"");
    cargo_json
        .lines()
        .filter(|l| {
            l.contains("\"reason\":\"compiler-artifact\"")
                && l.contains("\"kind\":[\"test\"]")
                && l.contains(&name)
        })
        .find_map(|l| {
            let rest = l.split("\"executable\":\"").nth(1)?;
            Some(rest.split('"').next()?.to_string())
        })
}

/// Regenerates the generated files: `crds/caas.dev.yaml` (from the Rust types), the
/// chart's copy of it, and `deploy/caas-operator.yaml` (the chart rendered with its
/// defaults). Tests fail when any of them is stale.
fn manifests(paths: &test_env::Paths) -> Result<(), String> {
    let root = workspace_root();
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo_bin)
        .args(["run", "--quiet", "--bin", "caas-operator", "--", "crd"])
        .current_dir(&root)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "caas-operator crd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(root.join("crds/caas.dev.yaml"), &out.stdout).map_err(|e| e.to_string())?;
    std::fs::write(
        root.join("charts/caas-operator/crds/caas.dev.yaml"),
        &out.stdout,
    )
    .map_err(|e| e.to_string())?;
    let rendered = Command::new(paths.bin.join("helm"))
        .args(RENDER_ARGS)
        .current_dir(&root)
        .output()
        .map_err(|e| e.to_string())?;
    if !rendered.status.success() {
        return Err(format!(
            "helm template failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        ));
    }
    let mut text = String::from(DEPLOY_HEADER);
    text.push_str(&String::from_utf8_lossy(&rendered.stdout));
    std::fs::write(root.join("deploy/caas-operator.yaml"), text).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote crds/caas.dev.yaml, charts/caas-operator/crds/caas.dev.yaml, deploy/caas-operator.yaml"
    );
    Ok(())
}

/// How `deploy/caas-operator.yaml` is rendered (the chart test uses the same).
const RENDER_ARGS: &[&str] = &[
    "template",
    "caas-operator",
    "charts/caas-operator",
    "--namespace",
    "caas-operator",
    "--include-crds",
];
const DEPLOY_HEADER: &str = "# Generated by `cargo xtask manifests` from charts/caas-operator\n\
# (helm template, default values, namespace caas-operator); do not edit.\n";

/// The benchmarks: see `caas-bench` in the testbed crate.
fn bench(extra: &[String]) -> Result<(), String> {
    run_testbed("caas-bench", extra)
}

/// `cargo xtask soak`: see `caas-soak` in the testbed crate.
fn soak(extra: &[String]) -> Result<(), String> {
    run_testbed("caas-soak", extra)
}

/// Builds the operator (release with `--release`) and runs the test bed's `program`
/// with it and `extra`.
fn run_testbed(program: &str, extra: &[String]) -> Result<(), String> {
    let release = extra.iter().any(|a| a == "--release");
    let operator = if release {
        cargo(&["build", "--quiet", "--release", "--bin", "caas-operator"])?;
        workspace_root().join("target/release/caas-operator")
    } else {
        cargo(&["build", "--quiet", "--bin", "caas-operator"])?;
        workspace_root().join("target/debug/caas-operator")
    };
    let operator = operator.display().to_string();
    let mut args = vec![
        "run",
        "--quiet",
        "-p",
        "caas-testbed",
        "--bin",
        program,
        "--",
        "--operator",
        operator.as_str(),
    ];
    args.extend(
        extra
            .iter()
            .filter(|a| *a != "--release")
            .map(String::as_str),
    );
    cargo(&args)
}

/// The local demo: see `caas-demo` in the testbed crate.
fn demo(extra: &[String]) -> Result<(), String> {
    cargo(&["build", "--quiet", "--bin", "caas-operator"])?;
    let operator = workspace_root().join("target/debug/caas-operator");
    let mut args = vec![
        "run",
        "--quiet",
        "-p",
        "caas-testbed",
        "--bin",
        "caas-demo",
        "--",
    ];
    let operator = operator.display().to_string();
    args.extend(["--operator", operator.as_str()]);
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// `cargo deny` with deny.toml: licenses, bans and sources always; advisories only when
/// the advisory database can be fetched (it is a git repository on the internet).
fn deny(paths: &test_env::Paths) -> Result<(), String> {
    let deny = paths.bin.join("cargo-deny");
    let run = |args: &[&str]| -> Result<bool, String> {
        eprintln!("==> cargo-deny {}", args.join(" "));
        Command::new(&deny)
            .args(args)
            .current_dir(workspace_root())
            .status()
            .map(|s| s.success())
            .map_err(|e| format!("cannot run {}: {e}", deny.display()))
    };
    if !run(&["check", "licenses", "bans", "sources"])? {
        return Err("cargo deny: the dependency policy in deny.toml is broken (see above)".into());
    }
    let fetched = Command::new(&deny)
        .args(["fetch", "db"])
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !fetched {
        eprintln!(
            "==> cargo-deny advisories: the advisory database cannot be fetched here; not checked"
        );
    } else if !run(&["--offline", "check", "advisories"])? {
        return Err("cargo deny: a dependency has a security advisory (see above)".into());
    }
    Ok(())
}

fn ci() -> Result<(), String> {
    let started = std::time::Instant::now();
    disk_report("at the start");
    let paths = test_env::run()?;
    paths.print();
    cargo(&["fmt", "--all", "--", "--check"])?;
    deny(&paths)?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    disk_report("after clippy");
    let (passed, failed) = test(&[]).inspect_err(|_| disk_report("after the failed test step"))?;
    disk_report("after the tests");
    // The README's main command, end to end (it stops once everything is issued).
    demo(&["--exit".to_string()])?;
    // The benchmarks in quick mode: they fail only when the operator fails to issue.
    bench(&["--quick".to_string(), "--deploy".to_string()])?;
    // Three minutes of faults while 20 short certificates must stay valid.
    // A fixed seed: a failure is reproduced with `cargo xtask soak --quick --seed 1`.
    soak(&["--quick".to_string(), "--seed".to_string(), "1".to_string()])?;
    eprintln!("==> ci passed in {:.0?}", started.elapsed());
    // The closing line CI reads: every test of the suite, counted over all binaries.
    println!("ci: {passed} passed, {failed} failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_e2e_executable_in_cargo_json() {
        // Trimmed lines of `cargo test --no-run --message-format=json`.
        let json = [
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w#caas-operator@0.1.0","target":{"kind":["lib"],"crate_types":["lib"],"name":"caas_operator","test":true},"profile":{"test":true},"executable":"/t/debug/deps/caas_operator-1111"}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w#caas-operator@0.1.0","target":{"kind":["test"],"crate_types":["bin"],"name":"e2e","src_path":"/w/tests/e2e/main.rs","test":true},"profile":{"test":true},"filenames":["/t/debug/deps/e2e-2222"],"executable":"/t/debug/deps/e2e-2222","fresh":true}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            test_executable(&json, "e2e").as_deref(),
            Some("/t/debug/deps/e2e-2222")
        );
        assert_eq!(test_executable(&json, "slow_ca"), None);
    }

    #[test]
    fn counts_passed_and_failed_of_a_test_result_line() {
        let ok = "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 73 filtered out; finished in 1260.01s";
        assert_eq!(test_result_counts(ok), (1, 0));
        let failed = "test result: FAILED. 70 passed; 3 failed; 0 ignored; 0 measured; 1 filtered out; finished in 900.2s";
        assert_eq!(test_result_counts(failed), (70, 3));
        assert_eq!(test_result_counts("test slow_ca::x ... ok"), (0, 0));
    }
}
