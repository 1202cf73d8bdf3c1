//! Project automation, called as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! * `test-env` installs and caches everything the integration tests need: kube-apiserver
//!   and etcd, Pebble 2.6 (ACME with EAB and ARI) and pebble-challtestsrv, BIND 9, kubectl
//!   and Helm. Idempotent: a second run only checks and takes seconds.
//! * `ci` is the one command that checks the project: `test-env`, `cargo fmt --check`,
//!   `cargo clippy --all-targets -- -D warnings` and the whole test suite.
//!
//! Plain `std` on purpose: this crate must build in seconds on a fresh machine, before
//! anything else is there.
#![forbid(unsafe_code)]

mod test_env;

use std::process::{Command, ExitCode};

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <task>

tasks:
  test-env   install/cache the test bed (kube-apiserver, etcd, Pebble, BIND, kubectl, Helm)
  ci         test-env, then cargo fmt --check, clippy -D warnings, and all tests
  test       the whole test suite (assumes test-env has run)"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test-env") => test_env::run().map(|paths| paths.print()),
        Some("ci") => ci(),
        Some("test") => test_env::run().and_then(|_| test(&args[1..])),
        _ => return usage(),
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

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn test(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["test", "--workspace", "--all-targets"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

fn ci() -> Result<(), String> {
    let started = std::time::Instant::now();
    test_env::run()?.print();
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    test(&[])?;
    eprintln!("==> ci passed in {:.0?}", started.elapsed());
    Ok(())
}
