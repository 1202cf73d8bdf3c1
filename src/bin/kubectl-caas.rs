//! `kubectl caas`: installed on PATH as `kubectl-caas`, kubectl runs it as a plugin.
//! Explains Certificates and issuers, decodes TLS Secrets, renews (see
//! `caas_operator::plugin`). Exit codes: 0 ready, 1 not ready, 2 error.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "kubectl caas",
    version,
    about = "Explain and fix caas-operator Certificates and issuers"
)]
struct Cli {
    #[command(subcommand)]
    verb: caas_operator::plugin::Verb,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl caas: cannot start: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !caas_operator::plugin::needs_cluster(&cli.verb) {
        return match caas_operator::plugin::run_offline(&cli.verb) {
            Ok(code) => std::process::ExitCode::from(code as u8),
            Err(e) => {
                eprintln!("kubectl caas: {}", format!("{e:#}").replace('\n', " "));
                std::process::ExitCode::from(2)
            }
        };
    }
    let result = runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("no Kubernetes API server to talk to: {e} (set KUBECONFIG)")
        })?;
        caas_operator::plugin::run(client, &cli.verb).await
    });
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("kubectl caas: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::from(2)
        }
    }
}
