//! The command lines of the test bed's programs (`caas-demo`, `caas-bench`, `caas-soak`,
//! run by `cargo xtask demo`, `bench` and `soak`): one clap parser, so both answer `--help`
//! and share their common options.

use std::path::PathBuf;

use clap::{Args, Parser};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Options every test-bed program takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The operator binary to run.
    #[arg(long, default_value_os_t = root().join("target/debug/caas-operator"))]
    pub operator: PathBuf,
}

/// The test bed's programs.
#[derive(Parser, Debug)]
#[command(name = "caas-testbed")]
pub enum Program {
    /// A local API server, ACME CA with EAB and the operator issuing examples/.
    Demo(DemoArgs),
    /// Time to a certificate, burst, memory and idle cost, with lego and certbot.
    Bench(BenchArgs),
    /// Short certificates kept valid for a long run under faults.
    Soak(SoakArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    #[command(flatten)]
    pub common: Common,
    /// The CI form: 20 Certificates of 180 s for 3 minutes.
    #[arg(long)]
    pub quick: bool,
    /// Certificates kept valid (default 200; 20 with --quick).
    #[arg(long)]
    pub certificates: Option<usize>,
    /// Minutes of faults after the first issuance (default 30; 3 with --quick).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Certificate lifetime in seconds, Pebble's `shortlived` profile (default 180).
    #[arg(long)]
    pub lifetime_secs: Option<u64>,
    /// Seed of the fault schedule (default: from the clock; the report prints it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the markdown report is written.
    #[arg(long, default_value_os_t = root().join("target/soak-results.md"))]
    pub out: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub common: Common,
    /// The manifests to apply (`${ACME_SERVER}`, `${EAB_KEY_ID}`, `${EAB_HMAC_KEY}`,
    /// `${DOMAIN}` are filled in).
    #[arg(long, default_value_os_t = root().join("examples"))]
    pub examples: PathBuf,
    /// Stop once everything is issued (default: keep running until Ctrl-C).
    #[arg(long)]
    pub exit: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Small sizes (3 single runs, a burst of 50, 500 unrelated Secrets, 15 s idle): CI.
    #[arg(long)]
    pub quick: bool,
    /// Where the markdown table is written.
    #[arg(long, default_value_os_t = root().join("target/bench-results.md"))]
    pub out: PathBuf,
    /// Single-certificate runs per tool (default 20; 3 with --quick).
    #[arg(long)]
    pub single_runs: Option<usize>,
    /// Certificates applied at once (default 1000; 50 with --quick).
    #[arg(long)]
    pub burst: Option<usize>,
    /// Unrelated Secrets created to show memory does not grow with them (default 10000;
    /// 500 with --quick).
    #[arg(long)]
    pub unrelated: Option<usize>,
    /// Seconds of idle measured after the burst (default 300; 15 with --quick).
    #[arg(long)]
    pub idle_secs: Option<u64>,
    /// After the burst, a renewal storm: every burst certificate due at once.
    #[arg(long)]
    pub storm: bool,
    /// Certificates per Pebble instance in the burst (default 1000: a burst of 10,000
    /// gets ten Pebbles, one issuer each); `--per-pebble 10000` puts it on one.
    #[arg(long)]
    pub per_pebble: Option<usize>,
    /// Deploy targets: renewal to ACM re-import latency, and the burst's certificates
    /// given one ACM target each (moto), then all renewed at once.
    #[arg(long)]
    pub deploy: bool,
}

impl Program {
    /// Parses `caas-<name> ARGS...` (the program name picks the subcommand).
    pub fn parse_as(name: &str) -> Program {
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        args.insert(1, name.into());
        args[0] = format!("caas-{name}").into();
        Program::parse_from(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parser_is_consistent() {
        Program::command().debug_assert();
        let p =
            Program::try_parse_from(["caas-bench", "bench", "--quick", "--burst", "7"]).unwrap();
        match p {
            Program::Bench(b) => assert!(b.quick && b.burst == Some(7)),
            _ => panic!("bench"),
        }
        let p = Program::try_parse_from(["caas-soak", "soak", "--quick", "--seed", "7"]).unwrap();
        assert!(matches!(p, Program::Soak(s) if s.quick && s.seed == Some(7)));
        let p = Program::try_parse_from(["caas-demo", "demo", "--exit"]).unwrap();
        assert!(matches!(p, Program::Demo(d) if d.exit));
    }
}
