//! `kubectl caas` (the `kubectl-caas` binary, also `caas-operator <verb>`): explain a
//! Certificate or issuer on one screen, decode a TLS Secret, renew now. It uses the
//! user's kubeconfig and only reads, except `renew`.
//!
//! Each verb builds a typed report ([`report::Report`]) from what the API server has;
//! text output is a rendering of the same report, `-o json|yaml` prints it. Exit codes: 0 ready, 1 not
//! ready, 2 error. Nothing secret is ever printed: the EAB key ID yes, the HMAC never;
//! a Secret's private key only as its type and whether it matches.

pub mod check;
pub mod convert;
pub mod diagnose;
pub mod inspect;
pub mod probe;
pub mod renew;
pub mod report;
pub mod revoke;
pub mod status;
pub mod verdict;

// Who uses whom, one way only: this file (the CLI) -> the verbs (status, check, inspect,
// diagnose, renew, convert) -> status uses inspect -> the leaves (probe, report, verdict).

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub use renew::renew;
pub use report::{Output, emit, exit_code, human, print, when};

/// Options every verb takes.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Namespace (default: the kubeconfig's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text", global = true)]
    pub output: Output,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Verb {
    /// One screen about a Certificate or an issuer, with a verdict and the next action.
    Status {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        what: StatusWhat,
    },
    /// Probe an issuer live, issuing nothing: directory, TLS, profile, EAB, account,
    /// solver and notification Secrets.
    Check {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        what: CheckWhat,
    },
    /// Decode a TLS Secret: chain, names, validity, key type and whether it matches.
    Inspect {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        what: InspectWhat,
    },
    /// Write a support bundle (tar.gz) safe to send: versions, issuers, Certificates,
    /// Events, the operator's log, every secret value redacted.
    Diagnose {
        /// Namespace (default: the kubeconfig's).
        #[arg(short, long)]
        namespace: Option<String>,
        #[command(flatten)]
        args: diagnose::DiagnoseArgs,
    },
    /// Turn cert-manager Issuer/ClusterIssuer (ACME) and Certificate manifests into
    /// caas-operator's (YAML on stdout), with a warning for each field not supported.
    Convert {
        /// The cert-manager manifests (`-` for standard input).
        #[arg(short = 'f', long)]
        filename: PathBuf,
    },
    /// Revoke a Certificate's current certificate at its CA (with the issuer's
    /// account), then renew it.
    Revoke {
        #[command(flatten)]
        global: Global,
        /// The Certificate's name.
        name: String,
        /// RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded,
        /// cessationOfOperation.
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// Where ClusterCaaSIssuers keep their Secrets (the operator's namespace).
        #[arg(long, default_value = "caas-operator")]
        cluster_resource_namespace: String,
    },
    /// Renew Certificates now (sets their caas.dev/renew annotation to the time).
    Renew {
        #[command(flatten)]
        global: Global,
        /// The Certificate's name.
        #[arg(required_unless_present_any = ["all", "selector"])]
        name: Option<String>,
        /// Every Certificate in the namespace.
        #[arg(long, conflicts_with_all = ["name", "selector"])]
        all: bool,
        /// The Certificates with these labels (`-l app=shop`).
        #[arg(short = 'l', long, conflicts_with = "name")]
        selector: Option<String>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum StatusWhat {
    /// A Certificate (short: cert).
    #[command(alias = "cert")]
    Certificate { name: String },
    /// A CaaSIssuer (or, with --cluster, a ClusterCaaSIssuer).
    Issuer {
        name: String,
        /// A ClusterCaaSIssuer.
        #[arg(long)]
        cluster: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum CheckWhat {
    /// A CaaSIssuer (or, with --cluster, a ClusterCaaSIssuer).
    Issuer {
        name: String,
        /// A ClusterCaaSIssuer.
        #[arg(long)]
        cluster: bool,
        /// Where ClusterCaaSIssuers keep their Secrets (the operator's namespace).
        #[arg(long, default_value = "caas-operator")]
        operator_namespace: String,
        /// Also write and delete a test TXT record for this name through the DNS-01
        /// solver the issuer picks for it (waits until it is served, at most 2 min).
        #[arg(long, value_name = "NAME")]
        dns: Option<String>,
        /// Resolvers (`host:port`, comma-separated) for that propagation check, as the
        /// operator's `--dns01-recursive-nameservers`.
        #[arg(long, value_delimiter = ',')]
        dns01_recursive_nameservers: Vec<std::net::SocketAddr>,
        /// Check through those resolvers only.
        #[arg(long)]
        dns01_recursive_nameservers_only: bool,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum InspectWhat {
    /// A kubernetes.io/tls Secret.
    Secret { name: String },
}

/// `convert`: needs no cluster.
pub fn convert_file(filename: &std::path::Path) -> anyhow::Result<i32> {
    let input = if filename == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(filename)
            .map_err(|e| anyhow::anyhow!("{}: {e}", filename.display()))?
    };
    let converted = convert::convert(&input).map_err(|e| anyhow::anyhow!(e))?;
    print!("{}", converted.yaml);
    for w in &converted.warnings {
        eprintln!("warning: {w}");
    }
    Ok(0)
}

/// Runs a verb that needs no cluster ([`needs_cluster`] is false).
pub fn run_offline(verb: &Verb) -> anyhow::Result<i32> {
    match verb {
        Verb::Convert { filename } => convert_file(filename),
        _ => anyhow::bail!("this verb needs a cluster"),
    }
}

/// Whether a verb talks to the cluster (`convert` does not).
pub fn needs_cluster(verb: &Verb) -> bool {
    !matches!(verb, Verb::Convert { .. })
}

/// Runs one verb; returns the exit code (errors are the caller's: exit 2).
pub async fn run(client: kube::Client, verb: &Verb) -> anyhow::Result<i32> {
    let (namespace, output) = match verb {
        Verb::Status { global, .. }
        | Verb::Inspect { global, .. }
        | Verb::Renew { global, .. }
        | Verb::Revoke { global, .. }
        | Verb::Check { global, .. } => (global.namespace.as_deref(), global.output),
        Verb::Diagnose { namespace, .. } => (namespace.as_deref(), Output::Text),
        Verb::Convert { filename } => return convert_file(filename),
    };
    let ns = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let now = jiff::Timestamp::now();
    let client = &client;
    Ok(match verb {
        Verb::Convert { .. } => unreachable!("handled above"),
        Verb::Revoke {
            name,
            reason,
            cluster_resource_namespace,
            ..
        } => {
            let r = renew::revoke(client, &ns, name, reason, cluster_resource_namespace).await?;
            emit(&r, output, renew::render_revoke)
        }
        Verb::Check { what, .. } => run_check(client, &ns, what, output).await?,
        Verb::Diagnose { args, .. } => {
            let r = diagnose::run(client, &ns, args).await?;
            emit(&r, output, diagnose::render)
        }
        Verb::Renew {
            name,
            all,
            selector,
            ..
        } => {
            let r = renew::renew(client, &ns, name.as_deref(), *all, selector.as_deref()).await?;
            emit(&r, output, renew::render_renew)
        }
        Verb::Status {
            what: StatusWhat::Certificate { name },
            ..
        } => {
            let r = status::certificate::report(client, &ns, name, now).await?;
            emit(&r, output, status::certificate::render)
        }
        Verb::Status {
            what: StatusWhat::Issuer { name, cluster },
            ..
        } => {
            let at = probe::IssuerAt {
                ns: &ns,
                name,
                cluster: *cluster,
            };
            let r = status::issuer::report(client, at).await?;
            emit(&r, output, status::issuer::render)
        }
        Verb::Inspect {
            what: InspectWhat::Secret { name },
            ..
        } => {
            let r = inspect::secret(client, &ns, name, now).await?;
            emit(&r, output, inspect::render)
        }
    })
}

/// `check issuer`, with `--dns` resolvers as the operator's flags.
async fn run_check(
    client: &kube::Client,
    ns: &str,
    what: &CheckWhat,
    output: Output,
) -> anyhow::Result<i32> {
    let CheckWhat::Issuer {
        name,
        cluster,
        operator_namespace,
        dns,
        dns01_recursive_nameservers,
        dns01_recursive_nameservers_only,
    } = what;
    let resolvers = crate::shared::settings::Resolvers {
        servers: dns01_recursive_nameservers.clone(),
        only: *dns01_recursive_nameservers_only,
    };
    let dns = dns.as_deref().map(|n| (n, resolvers));
    let r = check::issuer(client, ns, name, *cluster, operator_namespace, dns).await?;
    Ok(emit(&r, output, check::render))
}
