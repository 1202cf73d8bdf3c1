//! What the operator's pods say about themselves: the flags they run with, and the
//! `--default-notify` Secrets no issuer names. Pure.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

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
pub fn default_notify_of(pod: &Pod, operator_namespace: &str) -> Vec<(String, Value)> {
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

/// The operator pods' images.
pub fn images(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
        .filter_map(|c| c.image.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::probe::secret_refs_of;
    use serde_json::json;

    #[test]
    fn default_notify_is_read_from_args_and_env() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "op" },
            "spec": { "containers": [
                { "name": "a", "image": "caas:1", "args": ["run", r#"--default-notify={"webhooks":[{"urlSecretRef":{"name":"slack","key":"url"}}]}"#] },
                { "name": "b", "command": ["caas-operator", "run", "--default-notify", r#"{"webhooks":[{"urlSecretRef":{"name":"teams","key":"url"}}]}"#, "--default-notify-x=1"] },
                { "name": "c", "env": [{ "name": "CAAS_DEFAULT_NOTIFY", "value": r#"{"webhooks":[{"urlSecretRef":{"name":"generic","key":"url"}}]}"# }] },
                { "name": "d", "args": ["--default-notify=not json"] }
            ] }
        }))
        .unwrap();
        let mut found = Vec::new();
        for (ns, v) in default_notify_of(&pod, "caas-operator") {
            assert_eq!(ns, "caas-operator");
            secret_refs_of(&v, &mut found);
        }
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["slack", "teams", "generic"]);
        assert_eq!(images(std::slice::from_ref(&pod)), vec!["caas:1"]);
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
}
