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

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};
use serde_json::{Value, json};

use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer};

pub const REDACTED: &str = "[REDACTED]";

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

/// Values (and their base64 forms) that must not appear in the bundle.
#[derive(Default)]
pub struct Secrets(BTreeSet<String>);

impl Secrets {
    pub fn add(&mut self, value: &str) {
        // The value as stored (base64 of the raw bytes, trailing newline and all) and
        // trimmed.
        if value.len() >= 8 {
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                self.0.insert(engine.encode(value));
            }
        }
        let value = value.trim();
        // Short values ("1", "true", a port) would redact half the bundle, and are not
        // credentials.
        if value.len() < 8 {
            return;
        }
        self.0.insert(value.to_string());
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            self.0.insert(engine.encode(value));
        }
        for line in value.lines().map(str::trim).filter(|l| l.len() >= 16) {
            if !line.starts_with("-----") {
                self.0.insert(line.to_string());
            }
        }
    }

    fn add_secret(&mut self, secret: &Secret) {
        for v in secret.data.iter().flat_map(|d| d.values()) {
            if let Ok(text) = std::str::from_utf8(&v.0) {
                self.add(text);
            }
        }
    }
}

/// `text` with every known secret value, PEM private key and bearer token replaced.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    let mut out = text.to_string();
    // Longest first: a value containing another is replaced whole.
    let mut values: Vec<&String> = secrets.0.iter().collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    // PEM private keys, whatever their type; certificates stay.
    let mut from = 0;
    while let Some(found) = out[from..].find("-----BEGIN ") {
        let start = from + found;
        let label_start = start + "-----BEGIN ".len();
        let Some(label_len) = out[label_start..].find("-----") else {
            break;
        };
        let label = out[label_start..label_start + label_len].to_string();
        if !label.contains("PRIVATE KEY") {
            from = label_start + label_len;
            continue;
        }
        let end_marker = format!("-----END {label}-----");
        let end = out[start..]
            .find(&end_marker)
            .map(|e| start + e + end_marker.len())
            .unwrap_or(out.len());
        out.replace_range(start..end, REDACTED);
        from = start + REDACTED.len();
    }
    redact_bearer(&out)
}

fn redact_bearer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("Bearer ") {
        out.push_str(&rest[..at + 7]);
        let tail = &rest[at + 7..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str(REDACTED);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// What is left that must not be sent: `None` when clean.
pub fn leftover(text: &str, secrets: &Secrets) -> Option<String> {
    if secrets.0.iter().any(|v| text.contains(v.as_str())) {
        return Some("a secret value is still present".to_string());
    }
    text.contains("PRIVATE KEY-----")
        .then(|| "a PEM private key is still present".to_string())
}

/// The values an operator pod runs flag `flag` with: `--flag=V` or `--flag V` in its
/// command and arguments (as the chart passes them), or the environment variable `env`
/// (a literal value; one from a ConfigMap or Secret is not read).
fn flag_values(pod: &Pod, flag: &str, env: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let words: Vec<&str> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .map(String::as_str)
            .collect();
        for (i, word) in words.iter().enumerate() {
            let value = match word.strip_prefix(flag) {
                Some("") => words.get(i + 1).copied(),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            out.extend(value.map(str::to_string));
        }
        for e in c.env.iter().flatten() {
            if e.name == env {
                out.extend(e.value.clone());
            }
        }
    }
    out
}

/// The `--default-notify` JSON an operator pod runs with: its webhook URLs are Secrets
/// in the pod's `--cluster-resource-namespace` (default: the operator namespace) that no
/// issuer names. Returns (namespace, notify JSON).
fn default_notify_of(pod: &Pod, operator_namespace: &str) -> Vec<(String, Value)> {
    let ns = flag_values(
        pod,
        "--cluster-resource-namespace",
        "CAAS_CLUSTER_RESOURCE_NAMESPACE",
    )
    .into_iter()
    .next()
    .unwrap_or_else(|| operator_namespace.to_string());
    flag_values(pod, "--default-notify", "CAAS_DEFAULT_NOTIFY")
        .iter()
        .filter_map(|v| serde_json::from_str(v).ok())
        .map(|v| (ns.clone(), v))
        .collect()
}

/// Every `...SecretRef` / `secretRef` (`{name, key?}`) in an issuer's spec (or part).
pub fn secret_refs_of(spec: &Value, out: &mut Vec<(String, Option<String>)>) {
    secret_refs(spec, out)
}

fn secret_refs(spec: &Value, out: &mut Vec<(String, Option<String>)>) {
    match spec {
        Value::Object(map) => {
            for (k, v) in map {
                if k.to_ascii_lowercase().ends_with("secretref")
                    && let Some(name) = v["name"].as_str()
                {
                    out.push((name.to_string(), v["key"].as_str().map(str::to_string)));
                }
                secret_refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| secret_refs(v, out)),
        _ => {}
    }
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

/// Builds the bundle's files (name, content), redacted and scanned.
pub async fn collect(
    client: &kube::Client,
    ns: &str,
    args: &DiagnoseArgs,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut secrets = Secrets::default();
    let mut files: Vec<(String, String)> = Vec::new();
    let certs = Api::<Certificate>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let issuers = Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    let cluster_issuers = Api::<ClusterCaaSIssuer>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();

    let pods = Api::<Pod>::namespaced(client.clone(), &args.operator_namespace)
        .list(&ListParams::default().labels("app.kubernetes.io/name=caas-operator"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();

    // What to redact: the Secrets issuers and the operator's `--default-notify` name,
    // and the operator's own in this namespace.
    let mut refs: Vec<(String, String)> = Vec::new();
    for (sns, notify) in pods
        .iter()
        .flat_map(|p| default_notify_of(p, &args.operator_namespace))
    {
        let mut found = Vec::new();
        secret_refs(&notify, &mut found);
        refs.extend(found.into_iter().map(|(n, _)| (sns.clone(), n)));
    }
    for i in &issuers {
        let mut found = Vec::new();
        secret_refs(
            &serde_json::to_value(&i.spec).unwrap_or_default(),
            &mut found,
        );
        refs.extend(found.into_iter().map(|(n, _)| (ns.to_string(), n)));
    }
    for i in &cluster_issuers {
        let mut found = Vec::new();
        secret_refs(
            &serde_json::to_value(&i.spec).unwrap_or_default(),
            &mut found,
        );
        refs.extend(
            found
                .into_iter()
                .map(|(n, _)| (args.operator_namespace.clone(), n)),
        );
    }
    for (sns, name) in refs {
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
        for s in &list.items {
            // Keys only: certificates are public.
            for (k, v) in s.data.iter().flatten() {
                if (k.ends_with(".key") || k.contains("key.next"))
                    && let Ok(text) = std::str::from_utf8(&v.0)
                {
                    secrets.add(text);
                }
            }
        }
    }

    let kube_version = client
        .apiserver_version()
        .await
        .map(|v| format!("{}.{} ({})", v.major, v.minor, v.git_version))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let images: Vec<String> = pods
        .iter()
        .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
        .filter_map(|c| c.image.clone())
        .collect();
    files.push((
        "version.txt".into(),
        format!(
            "kubectl-caas {}\nKubernetes {kube_version}\noperator images: {}\nnamespace: {ns}\ncollected: {}\n",
            env!("CARGO_PKG_VERSION"),
            if images.is_empty() {
                "(no operator pods found in the operator namespace)".to_string()
            } else {
                images.join(", ")
            },
            jiff::Timestamp::now()
        ),
    ));
    let now = jiff::Timestamp::now();
    let mut summary = String::new();
    for c in &certs {
        let r = super::status::certificate(client, ns, &c.name_any(), now).await;
        let line = match r {
            Ok(r) => r["verdict"].as_str().unwrap_or_default().to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        summary.push_str(&format!("Certificate {ns}/{}: {line}\n", c.name_any()));
    }
    files.push(("summary.txt".into(), summary));
    files.push(("certificates.yaml".into(), yaml(&clean(&certs))));
    files.push(("issuers.yaml".into(), yaml(&clean(&issuers))));
    files.push(("clusterissuers.yaml".into(), yaml(&clean(&cluster_issuers))));
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    files.push(("events.yaml".into(), yaml(&clean(&events))));

    let mut logs = String::new();
    if let Some(path) = &args.operator_log {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--operator-log {}: {e}", path.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let skip = lines.len().saturating_sub(args.log_lines.max(0) as usize);
        logs.push_str(&lines[skip..].join("\n"));
        logs.push('\n');
    }
    for p in &pods {
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
    files.push(("operator.log".into(), logs));

    let mut out = Vec::new();
    for (name, text) in files {
        let clean = redact(&text, &secrets);
        if let Some(problem) = leftover(&clean, &secrets) {
            anyhow::bail!("the bundle was not written: in {name}, {problem} after redaction");
        }
        out.push((name, clean));
    }
    Ok(out)
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
pub async fn run(client: &kube::Client, ns: &str, args: &DiagnoseArgs) -> anyhow::Result<Value> {
    let files = collect(client, ns, args).await?;
    let path = write(&files, args.output.clone())?;
    Ok(json!({
        "ready": true,
        "bundle": path.display().to_string(),
        "files": files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_keys_and_tokens_are_redacted() {
        let mut s = Secrets::default();
        let hmac = "c2VjcmV0LWhtYWMta2V5LXZhbHVl";
        s.add(hmac);
        s.add("short");
        let b64 = base64::engine::general_purpose::STANDARD.encode(hmac);
        let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----";
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        let text = format!(
            "hmac {hmac} again {b64}\n{cert}\n{key}\nAuthorization: Bearer abc.def-123, x short"
        );
        let out = redact(&text, &s);
        assert!(!out.contains(hmac) && !out.contains(&b64), "{out}");
        assert!(
            !out.contains("MHcCAQEEIB") && !out.contains("PRIVATE KEY"),
            "{out}"
        );
        assert!(
            out.contains("BEGIN CERTIFICATE"),
            "certificates stay: {out}"
        );
        assert!(out.contains("Bearer [REDACTED], x short"), "{out}");
        assert_eq!(leftover(&out, &s), None);
        assert!(leftover(&text, &s).is_some());
    }

    #[test]
    fn default_notify_is_read_from_args_and_env() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "op" },
            "spec": { "containers": [
                { "name": "a", "args": ["run", r#"--default-notify={"webhooks":[{"urlSecretRef":{"name":"slack","key":"url"}}]}"#] },
                { "name": "b", "command": ["caas-operator", "run", "--default-notify", r#"{"webhooks":[{"urlSecretRef":{"name":"teams","key":"url"}}]}"#, "--default-notify-x=1"] },
                { "name": "c", "env": [{ "name": "CAAS_DEFAULT_NOTIFY", "value": r#"{"webhooks":[{"urlSecretRef":{"name":"generic","key":"url"}}]}"# }] },
                { "name": "d", "args": ["--default-notify=not json"] }
            ] }
        }))
        .unwrap();
        let mut found = Vec::new();
        for (ns, v) in default_notify_of(&pod, "caas-operator") {
            assert_eq!(ns, "caas-operator");
            secret_refs(&v, &mut found);
        }
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["slack", "teams", "generic"]);
        // Their Secrets live in the cluster resource namespace when it is set.
        let elsewhere: Pod = serde_json::from_value(json!({
            "metadata": { "name": "op" },
            "spec": { "containers": [{ "name": "a", "args": [
                "run", "--cluster-resource-namespace", "certs",
                r#"--default-notify={"webhooks":[{"urlSecretRef":{"name":"slack","key":"url"}}]}"#
            ] }] }
        }))
        .unwrap();
        let found = default_notify_of(&elsewhere, "caas-operator");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "certs");
    }

    #[test]
    fn secret_refs_are_found_anywhere_in_a_spec() {
        let spec = json!({
            "externalAccountBinding": { "keyID": "k", "keySecretRef": { "name": "eab", "key": "hmac" } },
            "privateKeySecretRef": { "name": "account" },
            "solvers": [{ "dns01": { "cloudflare": { "apiTokenSecretRef": { "name": "cf", "key": "token" } } } }],
            "notify": { "webhooks": [{ "urlSecretRef": { "name": "hooks", "key": "slack" } }] }
        });
        let mut found = Vec::new();
        secret_refs(&spec, &mut found);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["eab", "hooks", "account", "cf"]);
    }
}
