//! `kubectl caas` (the `kubectl-caas` binary, also `caas-operator <verb>`): explain a
//! Certificate or issuer on one screen, decode a TLS Secret, renew now. It uses the
//! user's kubeconfig and only reads, except `renew`.
//!
//! Each verb builds a report (JSON) from what the API server has; text output is a
//! rendering of the same report, `-o json|yaml` prints it. Exit codes: 0 ready, 1 not
//! ready, 2 error. Nothing secret is ever printed: the EAB key ID yes, the HMAC never;
//! a Secret's private key only as its type and whether it matches.

pub mod check;
pub mod convert;
pub mod diagnose;
pub mod inspect;
pub mod status;
pub mod verdict;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[default]
    Text,
    Json,
    Yaml,
}

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

/// The exit code of a report: 0 ready, 1 not ready.
pub fn exit_code(report: &Value) -> i32 {
    if report["ready"].as_bool() == Some(true) {
        0
    } else {
        1
    }
}

/// Prints `report` as asked; `text` renders it for people.
pub fn print(report: &Value, output: Output, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Text => print!("{}", text(report)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        Output::Yaml => print!("{}", serde_yaml::to_string(report).unwrap_or_default()),
    }
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
    let global = match verb {
        Verb::Status { global, .. }
        | Verb::Inspect { global, .. }
        | Verb::Renew { global, .. }
        | Verb::Revoke { global, .. }
        | Verb::Check { global, .. } => global.clone(),
        Verb::Diagnose { namespace, .. } => Global {
            namespace: namespace.clone(),
            output: Output::Text,
        },
        Verb::Convert { filename } => return convert_file(filename),
    };
    let ns = global
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let now = jiff::Timestamp::now();
    let report = match verb {
        Verb::Convert { .. } => unreachable!("handled above"),
        Verb::Revoke {
            name,
            reason,
            cluster_resource_namespace,
            ..
        } => {
            let why = crate::revoke::parse_reason(reason)?;
            let serial =
                crate::revoke::revoke(&client, &ns, name, why, cluster_resource_namespace).await?;
            renew(&client, &ns, Some(name), false, None).await?;
            let r = serde_json::json!({ "ready": true, "namespace": ns, "name": name, "revokedSerial": serial });
            print(&r, global.output, |r| {
                format!(
                    "revoked serial {} of Certificate {ns}/{name}; renewal requested\n",
                    r["revokedSerial"].as_str().unwrap_or_default()
                )
            });
            r
        }
        Verb::Check {
            what:
                CheckWhat::Issuer {
                    name,
                    cluster,
                    operator_namespace,
                    dns,
                    dns01_recursive_nameservers,
                    dns01_recursive_nameservers_only,
                },
            ..
        } => {
            let resolvers = crate::solvers::dns01::propagation::Resolvers {
                servers: dns01_recursive_nameservers.clone(),
                only: *dns01_recursive_nameservers_only,
            };
            let dns = dns.as_deref().map(|n| (n, resolvers));
            let r = check::issuer(&client, &ns, name, *cluster, operator_namespace, dns).await?;
            print(&r, global.output, check::render);
            r
        }
        Verb::Diagnose { args, .. } => {
            let r = diagnose::run(&client, &ns, args).await?;
            print(&r, global.output, |r| {
                format!(
                    "support bundle written: {}\n",
                    r["bundle"].as_str().unwrap_or_default()
                )
            });
            r
        }
        Verb::Renew {
            name,
            all,
            selector,
            ..
        } => {
            let r = renew(&client, &ns, name.as_deref(), *all, selector.as_deref()).await?;
            print(&r, global.output, |r| {
                let names: Vec<String> = r["renewed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| {
                        n.as_str()
                            .map(|n| format!("renewal requested: Certificate {ns}/{n}\n"))
                    })
                    .collect();
                if names.is_empty() {
                    "no Certificate matched\n".to_string()
                } else {
                    names.concat()
                }
            });
            r
        }
        Verb::Status {
            what: StatusWhat::Certificate { name },
            ..
        } => {
            let r = status::certificate(&client, &ns, name, now).await?;
            print(&r, global.output, status::render_certificate);
            r
        }
        Verb::Status {
            what: StatusWhat::Issuer { name, cluster },
            ..
        } => {
            let r = status::issuer(&client, &ns, name, *cluster).await?;
            print(&r, global.output, status::render_issuer);
            r
        }
        Verb::Inspect {
            what: InspectWhat::Secret { name },
            ..
        } => {
            let r = inspect::secret(&client, &ns, name, now).await?;
            print(&r, global.output, inspect::render);
            r
        }
    };
    Ok(exit_code(&report))
}

/// Sets `caas.dev/renew` on one Certificate, every one, or those matching `selector`.
pub async fn renew(
    client: &kube::Client,
    ns: &str,
    name: Option<&str>,
    all: bool,
    selector: Option<&str>,
) -> anyhow::Result<Value> {
    use kube::ResourceExt;
    let api: kube::Api<crate::api::Certificate> = kube::Api::namespaced(client.clone(), ns);
    let names: Vec<String> = match (name, all, selector) {
        (Some(n), _, _) => vec![n.to_string()],
        (None, true, _) => api
            .list_metadata(&Default::default())
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect(),
        (None, false, Some(sel)) => api
            .list_metadata(&kube::api::ListParams::default().labels(sel))
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect(),
        (None, false, None) => anyhow::bail!("name a Certificate, or use --all or -l"),
    };
    let now = jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({ "metadata": { "annotations": {
        crate::plan::RENEW_ANNOTATION: now
    } } });
    for n in &names {
        api.patch(
            n,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| anyhow::anyhow!("Certificate {ns}/{n}: {e}"))?;
    }
    Ok(serde_json::json!({ "ready": true, "namespace": ns, "renewed": names, "at": now }))
}

/// `YYYY-MM-DDTHH:MM:SSZ (in 3d 4h)` / `(5m ago)`.
pub fn when(t: &str, now: jiff::Timestamp) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => {
            let secs = ts.duration_since(now).as_secs();
            let span = human(secs.unsigned_abs());
            if secs < 0 {
                format!("{t} ({span} ago)")
            } else {
                format!("{t} (in {span})")
            }
        }
        Err(_) => t.to_string(),
    }
}

/// `3d 4h`, `5m`, `12s`: the two largest units.
pub fn human(secs: u64) -> String {
    let parts = [
        (secs / 86400, "d"),
        (secs % 86400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0 || first == 3)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_say_how_far() {
        let now: jiff::Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        assert_eq!(
            when("2026-12-02T14:30:10Z", now),
            "2026-12-02T14:30:10Z (in 3d 4h)"
        );
        assert_eq!(
            when("2026-11-29T09:55:00Z", now),
            "2026-11-29T09:55:00Z (5m ago)"
        );
        assert_eq!(when("soon", now), "soon");
        assert_eq!(exit_code(&serde_json::json!({ "ready": true })), 0);
        assert_eq!(exit_code(&serde_json::json!({ "ready": false })), 1);
    }
}
