//! `caas-operator`: run the operator, print the CRDs, or print the version.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "caas-operator",
    version,
    about = "TLS certificates from ACME CAs (with External Account Binding) for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (kubeconfig from KUBECONFIG or ~/.kube/config, else in-cluster).
    Run(RunArgs),
    /// `kubectl caas` verbs: status, inspect, renew (see `kubectl-caas --help`).
    #[command(flatten)]
    Plugin(caas_operator::plugin::Verb),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
    /// Print the version.
    Version,
}

/// The flags of `caas-operator run`.
#[derive(clap::Args)]
struct RunArgs {
    /// Listener for HTTP-01 challenge answers.
    #[arg(long, default_value = "0.0.0.0:8089", env = "CAAS_HTTP01_ADDR")]
    http01_addr: SocketAddr,
    /// TLS listener for TLS-ALPN-01 challenge answers.
    #[arg(long, default_value = "0.0.0.0:8443", env = "CAAS_TLS_ALPN01_ADDR")]
    tls_alpn01_addr: SocketAddr,
    /// Listener for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090", env = "CAAS_METRICS_ADDR")]
    metrics_addr: SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "CAAS_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace holding the Secrets of ClusterCaaSIssuers (default: the pod's
    /// namespace, else `caas-operator`).
    #[arg(long, env = "CAAS_CLUSTER_RESOURCE_NAMESPACE")]
    cluster_resource_namespace: Option<String>,
    /// This replica's pod IP, for the temporary HTTP-01 Endpoints.
    #[arg(long, env = "POD_IP")]
    pod_ip: Option<IpAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "CAAS_LOG_FORMAT")]
    log_format: LogFormat,
    /// Elect a leader through a Lease, so that several replicas can run (all answer
    /// challenges; one reconciles).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "CAAS_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the Lease (in the cluster resource namespace).
    #[arg(long, default_value = "caas-operator", env = "CAAS_LEASE_NAME")]
    lease_name: String,
    /// Seconds a Lease stays valid without renewal (takeover time after a crash).
    #[arg(long, default_value_t = 15, env = "CAAS_LEASE_DURATION")]
    lease_duration: u64,
    /// Recursive resolvers (`host:port`, comma-separated) for DNS-01 propagation
    /// checks and CNAME lookups (default: the system's).
    #[arg(long, value_delimiter = ',', env = "CAAS_DNS01_RECURSIVE_NAMESERVERS")]
    dns01_recursive_nameservers: Vec<SocketAddr>,
    /// Check DNS-01 records through those resolvers only, not the zone's
    /// authoritative servers (where those are unreachable).
    #[arg(long, env = "CAAS_DNS01_RECURSIVE_NAMESERVERS_ONLY")]
    dns01_recursive_nameservers_only: bool,
    /// Restart workloads annotated `caas.dev/restart-on-renew` when their Secrets are
    /// renewed (needs `patch` on Deployments, StatefulSets and DaemonSets).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "CAAS_RESTART_ON_RENEW")]
    restart_on_renew: bool,
    /// A certificate this close to its notAfter whose renewal is failing gets
    /// `Expiring=True`, a metric and an `expiring` notification (e.g. 168h, 30m).
    #[arg(long, default_value = "168h", value_parser = parse_duration, env = "CAAS_EXPIRING_WITHIN")]
    expiring_within: std::time::Duration,
    /// Notifications for issuers without `spec.notify`, as JSON:
    /// `{"webhooks":[{"format":"Slack","urlSecretRef":{"name":"..","key":".."}}],"failedAfter":3}`
    /// (URL Secrets in the cluster resource namespace).
    #[arg(long, value_parser = parse_notify, env = "CAAS_DEFAULT_NOTIFY")]
    default_notify: Option<caas_operator::api::issuer::Notify>,
    /// Also honour cert-manager's `cert-manager.io/issuer` / `cluster-issuer` (and
    /// `common-name`, `duration`, `renew-before`, `private-key-*`) on Ingresses and
    /// Gateways, naming a CaaSIssuer / ClusterCaaSIssuer of the same name.
    #[arg(long, env = "CAAS_ACCEPT_CERT_MANAGER_ANNOTATIONS")]
    accept_cert_manager_annotations: bool,
    /// Let a namespaced CaaSIssuer's cloud DNS-01 solver without keys sign in with the
    /// operator's own identity (IRSA, Pod Identity, Workload Identity, instance
    /// metadata). Off, as cert-manager's `--issuer-ambient-credentials`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", env = "CAAS_ISSUER_AMBIENT_CREDENTIALS")]
    issuer_ambient_credentials: bool,
    /// The same for ClusterCaaSIssuers. On, as cert-manager's.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", env = "CAAS_CLUSTER_ISSUER_AMBIENT_CREDENTIALS")]
    cluster_issuer_ambient_credentials: bool,
    /// Copy certificates' Secrets into other namespaces for `secretCopies` deploy
    /// targets (needs list/watch of namespaces and Secret writes there: the chart's
    /// `secretCopies.enabled`).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", env = "CAAS_SECRET_COPIES")]
    secret_copies: bool,
}

impl RunArgs {
    /// The operator's options; `identity` names this replica in the Lease.
    fn options(self, identity: String) -> caas_operator::operator::Options {
        let cluster_resource_namespace = self
            .cluster_resource_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "caas-operator".into());
        caas_operator::operator::Options {
            http01_addr: self.http01_addr,
            tls_alpn01_addr: self.tls_alpn01_addr,
            metrics_addr: self.metrics_addr,
            namespace: self.namespace,
            cluster_resource_namespace,
            pod_ip: self.pod_ip,
            leader_election: self.leader_elect,
            lease_name: self.lease_name,
            lease_duration: std::time::Duration::from_secs(self.lease_duration),
            identity,
            dns01_resolvers: caas_operator::shared::settings::Resolvers {
                servers: self.dns01_recursive_nameservers,
                only: self.dns01_recursive_nameservers_only,
            },
            restart_on_renew: self.restart_on_renew,
            expiring_within: self.expiring_within,
            default_notify: self.default_notify.filter(|n| !n.webhooks.is_empty()),
            accept_cert_manager_annotations: self.accept_cert_manager_annotations,
            ambient_credentials: caas_operator::shared::settings::AmbientCredentials {
                issuers: self.issuer_ambient_credentials,
                cluster_issuers: self.cluster_issuer_ambient_credentials,
            },
            secret_copies: self.secret_copies,
        }
    }
}

/// A Go-style duration (`168h`, `90m`, `1h30m`), as Certificates' `duration`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    caas_operator::decide::renewal::parse_duration(text)
        .ok()
        .filter(|d| d.is_positive())
        .map(|d| d.unsigned_abs())
        .ok_or_else(|| format!("{text:?} is not a duration like 168h or 30m"))
}

fn parse_notify(text: &str) -> Result<caas_operator::api::issuer::Notify, String> {
    serde_json::from_str(text).map_err(|e| format!("not a notify object: {e}"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube_runtime=warn,kube_client=warn,hyper=warn")
    });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Whatever RUST_LOG says, the AWS SDK's request tracing stops at debug: at trace it
    // prints request bodies, and STS AssumeRoleWithWebIdentity's body holds the pod's
    // service account token.
    let no_sdk_bodies = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("aws_smithy") && *meta.level() == tracing::Level::TRACE)
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.finish().with(no_sdk_bodies).init(),
        LogFormat::Json => builder.json().finish().with(no_sdk_bodies).init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// Errors end the process with one line (`caas-operator: what went wrong: why`), never a
/// backtrace: they are for the person who started it.
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("caas-operator: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_cli()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the whole chain of causes, on one line.
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("caas-operator: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_cli() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", caas_operator::api::crds_yaml());
            Ok(())
        }
        Command::Plugin(verb) if !caas_operator::plugin::needs_cluster(&verb) => {
            let code = caas_operator::plugin::run_offline(&verb)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Plugin(verb) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = kube::Client::try_default().await?;
            let code = caas_operator::plugin::run(client, &verb).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Version => {
            println!("caas-operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run(args) => {
            init_logging(args.log_format);
            let _ = rustls::crypto::ring::default_provider().install_default();
            let (client, kube_requests) = counted_client().await?;
            let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            let options = args.options(identity);
            caas_operator::operator::run(client, options, kube_requests, shutdown_signal()).await
        }
    }
}

/// A client for the API server that counts its requests (a metric) with a layer on its
/// stack.
async fn counted_client()
-> anyhow::Result<(kube::Client, prometheus_client::metrics::counter::Counter)> {
    let kube_requests = prometheus_client::metrics::counter::Counter::default();
    let counter = kube_requests.clone();
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes API server to talk to: {e} (in a pod the service account is used; \
             elsewhere set KUBECONFIG or ~/.kube/config)"
        )
    })?;
    let client = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::util::MapRequestLayer::new(
            move |req: http::Request<kube::client::Body>| {
                counter.inc();
                tracing::trace!(target: "caas_operator::kube_requests", method = %req.method(), uri = %req.uri(), "API request");
                req
            },
        ))
        .build();
    Ok((client, kube_requests))
}
