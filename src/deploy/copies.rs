//! Secret copies in other namespaces: the TLS Secret's data under the same type, marked
//! as a copy (`caas.dev/component: copy`, annotation `caas.dev/copy-of: ns/name`) and
//! created, then replaced whole on the resourceVersion
//! that was checked to be ours. A Secret that is not our copy of this certificate is
//! never overwritten or deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};

use super::{Bundle, DeployError, Deployed};
use crate::api::deploy::SecretCopiesTarget;
use crate::api::{COMPONENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Reason};
use crate::shared::FIELD_MANAGER;
use crate::shared::cached_secret::CachedSecret;

/// The component label's value on copies.
pub const COMPONENT: &str = "copy";
/// Annotation naming the Certificate (`namespace/name`) a copy is of.
pub const COPY_OF: &str = "caas.dev/copy-of";
/// Annotation naming the deploy target (`DeployTarget/name`) that made a copy: two
/// targets of one Certificate never take over each other's copies.
pub const COPY_TARGET: &str = "caas.dev/copy-target";
/// Annotation with the serial of the certificate a copy holds (as on the TLS Secret).
pub const SERIAL: &str = "caas.dev/serial";

/// Where the copies of a target go (`secretCopies:NAME:ns1,ns2`): what the decision
/// compares with the entry's.
pub fn location(name: &str, namespaces: &[String]) -> String {
    format!("secretCopies:{name}:{}", namespaces.join(","))
}

/// Whether `secret` is the copy target `target` made of the Certificate `source`
/// (`namespace/name`).
pub fn is_copy_of(secret: &Secret, source: &str, target: &str) -> bool {
    let annotation = |key: &str| secret.annotations().get(key).map(String::as_str);
    secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && annotation(COPY_OF) == Some(source)
        && annotation(COPY_TARGET) == Some(target)
}

/// Whether the watch cache shows a current copy in every namespace.
pub fn current_in(
    store: &Store<CachedSecret>,
    name: &str,
    namespaces: &[String],
    serial: &str,
) -> bool {
    namespaces.iter().all(|ns| {
        store
            .get(&ObjectRef::new(name).within(ns))
            .is_some_and(|s| {
                s.annotation(SERIAL)
                    .is_some_and(|v| crate::decide::deploy::same_serial(v, serial))
            })
    })
}

/// Whose copy: the Certificate (`namespace/name`) and the target (`DeployTarget/name`).
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub source: &'a str,
    pub target: &'a str,
}

/// The copy of `bundle` for namespace `ns`.
fn copy(
    bundle: &Bundle,
    owner: Owner<'_>,
    name: &str,
    ns: &str,
    target: &SecretCopiesTarget,
) -> Secret {
    let mut labels: BTreeMap<String, String> = target.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(COMPONENT_LABEL.into(), COMPONENT.into());
    let mut annotations = target.annotations.clone();
    annotations.insert(COPY_OF.into(), owner.source.into());
    annotations.insert(COPY_TARGET.into(), owner.target.into());
    annotations.insert(SERIAL.into(), bundle.info.serial.clone());
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(bundle.data.clone()),
        ..Default::default()
    }
}

/// The API server's refusal in its words; 403 is `NotPermitted` (the chart's RBAC).
fn kube_error(ns: &str, e: &kube::Error) -> DeployError {
    match e {
        kube::Error::Api(s) if s.code == 403 => DeployError::Refused {
            reason: Reason::NotPermitted,
            words: format!(
                "namespace {ns}: {} (the chart grants Secret writes in other namespaces only with secretCopies.enabled)",
                s.message
            ),
        },
        kube::Error::Api(s) if s.code == 404 => {
            DeployError::invalid(format!("namespace {ns}: {}", s.message))
        }
        e => DeployError::Unreachable(format!("namespace {ns}: Kubernetes API: {e}")),
    }
}

/// Writes one copy unless it is already current; refuses a Secret that is not ours. A
/// new copy is created (so a Secret made in the meantime is never overwritten); an
/// existing one is replaced with the resourceVersion that was checked.
async fn put(
    client: &kube::Client,
    mut copy: Secret,
    owner: Owner<'_>,
) -> Result<bool, DeployError> {
    let ns = copy.namespace().unwrap_or_default();
    let name = copy.name_any();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let existing = api.get_opt(&name).await.map_err(|e| kube_error(&ns, &e))?;
    let Some(existing) = existing else {
        api.create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &copy,
        )
        .await
        .map_err(|e| kube_error(&ns, &e))?;
        return Ok(true);
    };
    if !is_copy_of(&existing, owner.source, owner.target) {
        return Err(DeployError::Refused {
            reason: Reason::CopyConflict,
            words: format!(
                "Secret {ns}/{name} exists and is not a copy of {} made by {}: it is left alone",
                owner.source, owner.target
            ),
        });
    }
    // The whole copy is ours: compared whole, and replaced whole (labels or
    // annotations the target no longer sets go), on the resourceVersion checked above.
    let same = existing.data == copy.data
        && existing.labels() == copy.labels()
        && existing.annotations() == copy.annotations();
    if same {
        return Ok(false);
    }
    copy.metadata.resource_version = existing.resource_version();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.replace(&name, &params, &copy)
        .await
        .map_err(|e| kube_error(&ns, &e))?;
    Ok(true)
}

/// Deletes our copy `name` in `ns`, if it is ours (and unchanged since read).
pub async fn remove(
    client: &kube::Client,
    ns: &str,
    name: &str,
    source: &str,
    target: &str,
) -> Result<(), DeployError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(existing) = api.get_opt(name).await.map_err(|e| kube_error(ns, &e))? else {
        return Ok(());
    };
    if !is_copy_of(&existing, source, target) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: existing.resource_version(),
            uid: existing.uid(),
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        // Changed since it was read: not removed; the caller retries (and reads again).
        Err(kube::Error::Api(s)) if s.code == 409 => Err(DeployError::Unreachable(format!(
            "namespace {ns}: Secret {name} changed while being removed; retrying"
        ))),
        Err(e) => Err(kube_error(ns, &e)),
    }
}

/// The copies a target wants: written in `namespaces`, removed from the namespaces of
/// `previous` (name, namespaces) that no longer get one. Every namespace is tried; the
/// first failure is reported (naming its namespace) after the others are done.
pub async fn deploy(
    client: &kube::Client,
    bundle: &Bundle,
    owner: Owner<'_>,
    name: &str,
    namespaces: &[String],
    target: &SecretCopiesTarget,
    previous: (&str, &[String]),
) -> Result<Deployed, DeployError> {
    let mut first_error = None;
    let mut done = Vec::new();
    let mut wrote = false;
    for ns in namespaces {
        match put(client, copy(bundle, owner, name, ns, target), owner).await {
            Ok(w) => {
                wrote |= w;
                done.push(ns.clone());
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let (old_name, old_namespaces) = previous;
    for ns in old_namespaces {
        if (old_name != name || !namespaces.contains(ns))
            && let Err(e) = remove(client, ns, old_name, owner.source, owner.target).await
        {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Deployed {
            remote_id: name.to_string(),
            namespaces: done,
            wrote,
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_watch_cache_keeps_the_annotations_copies_are_judged_by() {
        // (`is_copy_of` reads the copy-target from the API server's copy.)
        for kept in [super::SERIAL, super::COPY_OF] {
            assert!(crate::shared::cached_secret::ANNOTATIONS.contains(&kept));
        }
    }
}
