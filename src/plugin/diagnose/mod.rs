//! `kubectl caas diagnose`: a support bundle safe to send to a CA's or our support.
//!
//! It holds the versions (this tool, Kubernetes, the operator pods' images), the
//! issuers' and Certificates' spec and status, Events, one verdict line per Certificate,
//! and the operator's recent log lines. It never reads a Secret's data into the bundle:
//! Secrets are read only to learn the values to redact (the EAB HMAC, TSIG and DNS
//! credentials, webhook URLs every issuer and the operator pods' `--default-notify` name,
//! and the keys of the Secrets the operator manages). Every occurrence of those values (also base64-encoded), PEM private key
//! blocks and bearer tokens become `[REDACTED]`; then the whole bundle is scanned again,
//! and it is not written if anything secret is left.

mod operator;
mod redact;

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use serde::Serialize;
use serde_json::Value;

pub use self::redact::{REDACTED, Secrets, leftover, redact};
use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer, ClusterDeployTarget, DeployTarget};
use crate::plugin::probe::secret_names_in;
use crate::plugin::report::Report;

#[derive(Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// Where to write the bundle (default: caas-diagnose-<time>.tar.gz here).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The operator's namespace (its pods' logs, ClusterCaaSIssuers' Secrets).
    #[arg(long, default_value = "caas-operator")]
    pub operator_namespace: String,
    /// A log file of an operator running outside the cluster, instead of pod logs.
    #[arg(long)]
    pub operator_log: Option<PathBuf>,
    /// Log lines per operator pod.
    #[arg(long, default_value_t = 2000)]
    pub log_lines: i64,
}

/// The report of `diagnose`: where the bundle is and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiagnoseReport {
    pub bundle: String,
    pub files: Vec<String>,
    /// Always true: a bundle that cannot be written is an error.
    pub ready: bool,
}

impl Report for DiagnoseReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

/// The text of `diagnose`.
pub fn render(r: &DiagnoseReport) -> String {
    format!("support bundle written: {}\n", r.bundle)
}

/// What the bundle describes: the namespace's Certificates and issuers, the cluster's
/// issuers, and the operator's pods.
struct Objects {
    certs: Vec<Certificate>,
    issuers: Vec<CaaSIssuer>,
    cluster_issuers: Vec<ClusterCaaSIssuer>,
    targets: Vec<DeployTarget>,
    cluster_targets: Vec<ClusterDeployTarget>,
    pods: Vec<Pod>,
}

/// Lists the objects; the namespace's must be readable, the rest may be missing.
async fn list_objects(
    client: &kube::Client,
    ns: &str,
    args: &DiagnoseArgs,
) -> anyhow::Result<Objects> {
    let all = ListParams::default();
    Ok(Objects {
        certs: Api::<Certificate>::namespaced(client.clone(), ns)
            .list(&all)
            .await?
            .items,
        issuers: Api::<CaaSIssuer>::namespaced(client.clone(), ns)
            .list(&all)
            .await?
            .items,
        cluster_issuers: Api::<ClusterCaaSIssuer>::all(client.clone())
            .list(&all)
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
        targets: Api::<DeployTarget>::namespaced(client.clone(), ns)
            .list(&all)
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
        cluster_targets: Api::<ClusterDeployTarget>::all(client.clone())
            .list(&all)
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
        pods: Api::<Pod>::namespaced(client.clone(), &args.operator_namespace)
            .list(&ListParams::default().labels("app.kubernetes.io/name=caas-operator"))
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
    })
}

/// The Secrets whose values are redacted, (namespace, name): those the operator pods'
/// `--default-notify`, the issuers and the deploy targets name (the cluster kinds' in
/// the operator's namespace).
fn named_secrets(objects: &Objects, ns: &str, operator_namespace: &str) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = Vec::new();
    for (sns, notify) in objects
        .pods
        .iter()
        .flat_map(|p| operator::default_notify_of(p, operator_namespace))
    {
        refs.extend(
            secret_names_in(&notify)
                .into_iter()
                .map(|n| (sns.clone(), n)),
        );
    }
    for i in &objects.issuers {
        refs.extend(
            secret_names_in(&i.spec)
                .into_iter()
                .map(|n| (ns.to_string(), n)),
        );
    }
    for i in &objects.cluster_issuers {
        refs.extend(
            secret_names_in(&i.spec)
                .into_iter()
                .map(|n| (operator_namespace.to_string(), n)),
        );
    }
    for t in &objects.targets {
        refs.extend(
            secret_names_in(&t.spec)
                .into_iter()
                .map(|n| (ns.to_string(), n)),
        );
    }
    for t in &objects.cluster_targets {
        refs.extend(
            secret_names_in(&t.spec)
                .into_iter()
                .map(|n| (operator_namespace.to_string(), n)),
        );
    }
    refs
}

/// What to redact: the values of the Secrets issuers and the operator's
/// `--default-notify` name, and the keys of the operator's own Secrets in `ns`.
async fn secrets_to_redact(
    client: &kube::Client,
    ns: &str,
    args: &DiagnoseArgs,
    objects: &Objects,
) -> Secrets {
    let mut secrets = Secrets::default();
    for (sns, name) in named_secrets(objects, ns, &args.operator_namespace) {
        if let Ok(Some(s)) = Api::<Secret>::namespaced(client.clone(), &sns)
            .get_opt(&name)
            .await
        {
            secrets.add_secret(&s);
        }
    }
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=caas-operator");
    if let Ok(list) = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&managed)
        .await
    {
        list.items.iter().for_each(|s| secrets.add_managed_keys(s));
    }
    secrets
}

fn yaml(v: &impl serde::Serialize) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

/// Drops what is noise in a bundle (managed fields).
fn clean<K: serde::Serialize>(objs: &[K]) -> Vec<Value> {
    objs.iter()
        .map(|o| {
            let mut v = serde_json::to_value(o).unwrap_or_default();
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            v
        })
        .collect()
}

/// `version.txt`: this tool's, Kubernetes' and the operator pods' versions.
async fn versions(client: &kube::Client, ns: &str, pods: &[Pod]) -> String {
    let kube_version = client
        .apiserver_version()
        .await
        .map(|v| format!("{}.{} ({})", v.major, v.minor, v.git_version))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let images = operator::images(pods);
    format!(
        "kubectl-caas {}\nKubernetes {kube_version}\noperator images: {}\nnamespace: {ns}\ncollected: {}\n",
        env!("CARGO_PKG_VERSION"),
        if images.is_empty() {
            "(no operator pods found in the operator namespace)".to_string()
        } else {
            images.join(", ")
        },
        jiff::Timestamp::now()
    )
}

/// `summary.txt`: the verdict of `status certificate` for each Certificate.
async fn summary(client: &kube::Client, ns: &str, certs: &[Certificate]) -> String {
    let now = jiff::Timestamp::now();
    let mut summary = String::new();
    for c in certs {
        let r = crate::plugin::status::certificate::report(client, ns, &c.name_any(), now).await;
        let line = match r {
            Ok(r) => r.verdict,
            Err(e) => format!("cannot be read: {e}"),
        };
        summary.push_str(&format!("Certificate {ns}/{}: {line}\n", c.name_any()));
    }
    summary
}

/// The namespace's Events.
async fn events(client: &kube::Client, ns: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// `operator.log`: the end of `--operator-log`, then each operator pod's log.
async fn operator_log(
    client: &kube::Client,
    args: &DiagnoseArgs,
    pods: &[Pod],
) -> anyhow::Result<String> {
    let mut logs = String::new();
    if let Some(path) = &args.operator_log {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--operator-log {}: {e}", path.display()))?;
        logs.push_str(&last_lines(&text, args.log_lines));
    }
    for p in pods {
        let lp = LogParams {
            tail_lines: Some(args.log_lines),
            ..Default::default()
        };
        let text = Api::<Pod>::namespaced(client.clone(), &args.operator_namespace)
            .logs(&p.name_any(), &lp)
            .await
            .unwrap_or_else(|e| format!("(cannot read the log: {e})\n"));
        logs.push_str(&format!("==> pod {}\n{text}", p.name_any()));
    }
    Ok(logs)
}

/// The last `n` lines of `text` (none when `n` is negative), newline-terminated.
fn last_lines(text: &str, n: i64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n.max(0) as usize);
    format!("{}\n", lines[skip..].join("\n"))
}

/// Each file redacted, and scanned: an error when anything secret is left.
fn redact_all(
    files: Vec<(String, String)>,
    secrets: &Secrets,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, text) in files {
        let clean = redact(&text, secrets);
        if let Some(problem) = leftover(&clean, secrets) {
            anyhow::bail!("the bundle was not written: in {name}, {problem} after redaction");
        }
        out.push((name, clean));
    }
    Ok(out)
}

/// Builds the bundle's files (name, content), redacted and scanned.
pub async fn collect(
    client: &kube::Client,
    ns: &str,
    args: &DiagnoseArgs,
) -> anyhow::Result<Vec<(String, String)>> {
    let objects = list_objects(client, ns, args).await?;
    let secrets = secrets_to_redact(client, ns, args, &objects).await;
    let files = vec![
        ("version.txt", versions(client, ns, &objects.pods).await),
        ("summary.txt", summary(client, ns, &objects.certs).await),
        ("certificates.yaml", yaml(&clean(&objects.certs))),
        ("issuers.yaml", yaml(&clean(&objects.issuers))),
        (
            "clusterissuers.yaml",
            yaml(&clean(&objects.cluster_issuers)),
        ),
        ("deploytargets.yaml", yaml(&clean(&objects.targets))),
        (
            "clusterdeploytargets.yaml",
            yaml(&clean(&objects.cluster_targets)),
        ),
        ("events.yaml", yaml(&clean(&events(client, ns).await))),
        (
            "operator.log",
            operator_log(client, args, &objects.pods).await?,
        ),
    ];
    let files = files.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    redact_all(files, &secrets)
}

/// Writes the files as a tar.gz under a folder named like the bundle; returns its path.
pub fn write(files: &[(String, String)], output: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let path = output.unwrap_or_else(|| PathBuf::from(format!("caas-diagnose-{stamp}.tar.gz")));
    let folder = format!("caas-diagnose-{stamp}");
    let file = std::fs::File::create(&path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        header.set_cksum();
        tar.append_data(&mut header, format!("{folder}/{name}"), text.as_bytes())?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()?;
    Ok(path)
}

/// Runs `diagnose`: the report names the file.
pub async fn run(
    client: &kube::Client,
    ns: &str,
    args: &DiagnoseArgs,
) -> anyhow::Result<DiagnoseReport> {
    let files = collect(client, ns, args).await?;
    let path = write(&files, args.output.clone())?;
    Ok(DiagnoseReport {
        bundle: path.display().to_string(),
        files: files.into_iter().map(|(n, _)| n).collect(),
        ready: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_log_keeps_its_last_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb", -1), "\n");
        assert_eq!(last_lines("", 3), "\n");
    }

    #[test]
    fn the_secrets_to_redact_are_looked_for_where_they_live() {
        let issuer: CaaSIssuer = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
            "metadata": { "name": "le", "namespace": "ns" },
            "spec": { "server": "https://ca/dir", "privateKeySecretRef": { "name": "account" },
                      "externalAccountBinding": { "keyID": "k", "keySecretRef": { "name": "eab", "key": "hmac" } } }
        }))
        .unwrap();
        let cluster: ClusterCaaSIssuer = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "ClusterCaaSIssuer",
            "metadata": { "name": "global" },
            "spec": { "server": "https://ca/dir", "privateKeySecretRef": { "name": "global-account" } }
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "op" },
            "spec": { "containers": [{ "name": "a", "args": ["run",
                r#"--default-notify={"webhooks":[{"urlSecretRef":{"name":"slack","key":"url"}}]}"#] }] }
        }))
        .unwrap();
        let target: DeployTarget = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "DeployTarget",
            "metadata": { "name": "edge", "namespace": "ns" },
            "spec": { "acm": { "accessKeyID": "AKIA", "secretAccessKeySecretRef": { "name": "aws", "key": "secret" } } }
        }))
        .unwrap();
        let cluster_target: ClusterDeployTarget = serde_json::from_value(json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "ClusterDeployTarget",
            "metadata": { "name": "edge" },
            "spec": { "acm": { "accessKeyIDSecretRef": { "name": "aws-id", "key": "id" },
                               "secretAccessKeySecretRef": { "name": "aws-platform", "key": "secret" } } }
        }))
        .unwrap();
        let objects = Objects {
            certs: vec![],
            issuers: vec![issuer],
            cluster_issuers: vec![cluster],
            targets: vec![target],
            cluster_targets: vec![cluster_target],
            pods: vec![pod],
        };
        let found = named_secrets(&objects, "ns", "caas-operator");
        let want = [
            ("caas-operator", "slack"),
            ("ns", "eab"),
            ("ns", "account"),
            ("caas-operator", "global-account"),
            ("ns", "aws"),
            ("caas-operator", "aws-id"),
            ("caas-operator", "aws-platform"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn the_report_keeps_its_json_shape() {
        let r = DiagnoseReport {
            bundle: "b.tar.gz".into(),
            files: vec!["version.txt".into()],
            ready: true,
        };
        assert_eq!(
            crate::plugin::report::as_printed(&r),
            json!({ "ready": true, "bundle": "b.tar.gz", "files": ["version.txt"] })
        );
        assert_eq!(render(&r), "support bundle written: b.tar.gz\n");
    }
}
