//! The operator's patches that are not server-side apply: merge patches of a typed shape
//! (so nothing but the named fields can slip in), always under a field manager.
//!
//! Server-side apply is the rule; these are the exceptions where apply would be wrong:
//! an annotation noted on a Secret the operator applies with other fields (an apply
//! under the same manager without them would remove them), a key removed from a Secret's
//! data (`null` in a merge patch), an Event's series, a user's renewal request, a
//! workload's restart annotation (as `kubectl rollout restart` writes it).

use std::collections::BTreeMap;

use kube::api::{Patch, PatchParams};
use serde::Serialize;

use super::FIELD_MANAGER;

/// Patch parameters naming `manager` as the field manager.
pub fn params(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    }
}

/// Patch parameters naming the operator as the field manager.
pub fn operator_params() -> PatchParams {
    params(FIELD_MANAGER)
}

/// `metadata.annotations` entries, nothing else.
#[derive(Debug, Serialize)]
pub struct Annotations<'a> {
    metadata: AnnotationsMeta<'a>,
}

#[derive(Debug, Serialize)]
struct AnnotationsMeta<'a> {
    annotations: BTreeMap<&'a str, &'a str>,
}

impl<'a> Annotations<'a> {
    pub fn new(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Annotations {
            metadata: AnnotationsMeta {
                annotations: entries.into_iter().collect(),
            },
        }
    }

    pub fn patch(&self) -> Patch<&Self> {
        Patch::Merge(self)
    }
}

/// `spec.template.metadata.annotations` entries of a workload (what `kubectl rollout
/// restart` patches), nothing else.
#[derive(Debug, Serialize)]
pub struct PodTemplateAnnotations<'a> {
    spec: TemplateSpec<'a>,
}

#[derive(Debug, Serialize)]
struct TemplateSpec<'a> {
    template: Annotations<'a>,
}

impl<'a> PodTemplateAnnotations<'a> {
    pub fn new(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        PodTemplateAnnotations {
            spec: TemplateSpec {
                template: Annotations::new(entries),
            },
        }
    }

    pub fn patch(&self) -> Patch<&Self> {
        Patch::Merge(self)
    }
}

/// Entries of a Secret's `data`: `Some` sets a key (base64 in the wire format), `None`
/// removes it.
#[derive(Serialize)]
pub struct SecretData {
    data: BTreeMap<String, Option<k8s_openapi::ByteString>>,
}

/// Names the keys only: the values are keys and certificates, never logged.
impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SecretData {
    pub fn new<'k>(entries: impl IntoIterator<Item = (&'k str, Option<String>)>) -> Self {
        SecretData {
            data: entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.map(|v| k8s_openapi::ByteString(v.into_bytes())),
                    )
                })
                .collect(),
        }
    }

    pub fn patch(&self) -> Patch<&Self> {
        Patch::Merge(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_patches_have_the_wire_shape_of_merge_patches() {
        let a = Annotations::new([("caas.dev/account-uri", "https://ca/acct/1")]);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"metadata": {"annotations": {"caas.dev/account-uri": "https://ca/acct/1"}}})
        );
        let t = PodTemplateAnnotations::new([("kubectl.kubernetes.io/restartedAt", "now")]);
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}})
        );
        let d = SecretData::new([("tls.key", Some("PEM".to_string())), ("tls.key.next", None)]);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"data": {"tls.key": "UEVN", "tls.key.next": null}})
        );
        assert_eq!(
            operator_params().field_manager.as_deref(),
            Some("caas-operator")
        );
    }
}
