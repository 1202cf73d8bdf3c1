//! Restart after renewal: a Deployment, StatefulSet or DaemonSet annotated
//! `caas.dev/restart-on-renew: "<secret>[,<secret>...]"` gets a rolling restart (the pod
//! template annotation `kubectl rollout restart` sets, `kubectl.kubernetes.io/restartedAt`)
//! when one of those Secrets (in its namespace) is renewed: once per renewal, never at
//! the first issuance, and at most once a minute per workload. A renewal within the
//! minute after a restart is delayed to the minute's end, not dropped; renewals that
//! meet in that delay share one restart (it picks up every new Secret). cert-manager
//! declined this (its issue #1440), so its users run a separate reloader.
//!
//! A delayed restart is also written on the renewed TLS Secret before it waits
//! (`caas.dev/restart-<hash>: "<when> <Kind>/<name>"`; not on the workload, where any
//! annotation change bumps a Deployment's generation) and removed once made: an operator
//! that stops in between (or a new leader) finds it at start ([`resume_pending`]) and
//! makes it, so a renewal's restart is never dropped. What it remembers per workload lives in the controllers'
//! [`Memory`], kept only while it matters (a restart within the last minute, or one
//! waiting); its times come from the memory's clock.

use std::sync::Arc;
use std::time::Duration;

use crate::shared::events::Recorder;
use crate::shared::memory::Memory;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

/// The annotation naming the Secrets whose renewal restarts a workload.
pub const RESTART_ON_RENEW: &str = "caas.dev/restart-on-renew";
/// The pod template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The prefix of the TLS Secret annotation that holds a delayed restart of one workload
/// (`caas.dev/restart-<8 hex of the workload key>: "<RFC 3339 due time> <Kind>/<name>"`).
pub const RESTART_PENDING_PREFIX: &str = "caas.dev/restart-";

/// The Secret annotation for a delayed restart of workload `key` (`Kind/ns/name`).
pub fn pending_annotation(key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{RESTART_PENDING_PREFIX}{hex}")
}
/// At most one restart per workload in this long.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// Whether an annotation value (`"a, b"`) names `secret`.
pub fn names_secret(value: &str, secret: &str) -> bool {
    value.split(',').map(str::trim).any(|s| s == secret)
}

/// What to do about a renewal, given the workload's last restart by us and whether a
/// delayed restart is already waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Now,
    After(Duration),
    /// The waiting restart will pick this renewal up.
    AlreadyPending,
}

pub fn plan(last: Option<Timestamp>, pending: bool, now: Timestamp) -> Plan {
    if pending {
        return Plan::AlreadyPending;
    }
    let Some(last) = last else { return Plan::Now };
    let since = now.duration_since(last);
    let min = SignedDuration::try_from(MIN_INTERVAL).unwrap_or_default();
    if since >= min {
        Plan::Now
    } else {
        Plan::After((min - since).unsigned_abs())
    }
}

/// Decides and reserves in one step, for workload `key` (`kind/namespace/name`): `Now`
/// records the restart as made, `After` marks one as waiting.
fn decide(memory: &Memory, key: &str, now: Timestamp) -> Plan {
    memory.update_restart(key, now, MIN_INTERVAL, |state| {
        let decision = plan(state.last, state.pending, now);
        match decision {
            Plan::Now => state.last = Some(now),
            Plan::After(_) => state.pending = true,
            Plan::AlreadyPending => {}
        }
        decision
    })
}

/// The waiting restart of workload `key` is being made now.
fn take_pending(memory: &Memory, key: &str, now: Timestamp) {
    memory.update_restart(key, now, MIN_INTERVAL, |state| {
        state.last = Some(now);
        state.pending = false;
    });
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }
}

/// One renewal of Secret `secret` in `namespace` (new serial `serial`): restarts (now or
/// later) every workload there annotated for it.
pub async fn on_renewed(
    client: &kube::Client,
    recorder: &Recorder,
    memory: &Arc<Memory>,
    namespace: &str,
    secret: &str,
    serial: &str,
) {
    let mut found: Vec<(Kind, String, k8s_openapi::api::core::v1::ObjectReference)> = Vec::new();
    macro_rules! collect {
        ($ty:ty, $kind:expr) => {{
            match Api::<$ty>::namespaced(client.clone(), namespace)
                .list_metadata(&ListParams::default())
                .await
            {
                Ok(list) => {
                    for w in list.items {
                        if w.annotations()
                            .get(RESTART_ON_RENEW)
                            .is_some_and(|v| names_secret(v, secret))
                        {
                            let mut r = <$ty>::object_ref(&Default::default(), &());
                            r.name = Some(w.name_any());
                            r.namespace = Some(namespace.to_string());
                            r.uid = w.uid();
                            found.push(($kind, w.name_any(), r));
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e, %namespace,
                    "restart-on-renew: cannot list {}s (RBAC: the chart's restartOnRenew.enabled)",
                    $kind.as_str()
                ),
            }
        }};
    }
    collect!(Deployment, Kind::Deployment);
    collect!(StatefulSet, Kind::StatefulSet);
    collect!(DaemonSet, Kind::DaemonSet);
    for (kind, name, oref) in found {
        let key = format!("{}/{namespace}/{name}", kind.as_str());
        let now = memory.wall_now();
        let why = format!("Secret {secret} was renewed (serial {serial})");
        match decide(memory, &key, now) {
            Plan::Now => {
                restart(
                    client, recorder, kind, namespace, &name, &key, oref, &why, now,
                )
                .await
            }
            Plan::AlreadyPending => {
                tracing::info!(workload = %key, "restart-on-renew: {why}; a restart is already due");
            }
            Plan::After(wait) => {
                tracing::info!(workload = %key, "restart-on-renew: {why}; restarting in {wait:?} (at most once a minute)");
                let due = now + SignedDuration::try_from(wait).unwrap_or_default();
                let note = format!("{due} {}/{name}", kind.as_str());
                note_on_secret(client, (namespace, secret), &key, Some(note)).await;
                let target = (kind, namespace.to_string(), name, key, oref);
                later(
                    client,
                    recorder,
                    memory,
                    (target, secret.to_string()),
                    wait,
                    why,
                );
            }
        }
    }
}

type Target = (
    Kind,
    String,
    String,
    String,
    k8s_openapi::api::core::v1::ObjectReference,
);

/// Makes the restart of `target` after `wait`, in a task of its own; then removes its
/// note from the Secret.
fn later(
    client: &kube::Client,
    recorder: &Recorder,
    memory: &Arc<Memory>,
    (target, secret): (Target, String),
    wait: Duration,
    why: String,
) {
    let (client, recorder, memory) = (client.clone(), recorder.clone(), memory.clone());
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let now = memory.wall_now();
        let (kind, namespace, name, key, oref) = target;
        take_pending(&memory, &key, now);
        // Another process (the next leader) made it already: its note is gone.
        let api = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &namespace);
        if let Ok(Some(s)) = api.get_metadata_opt(&secret).await
            && !s.annotations().contains_key(&pending_annotation(&key))
        {
            tracing::info!(workload = %key, "restart-on-renew: the delayed restart was made by another process");
            return;
        }
        restart(
            &client, &recorder, kind, &namespace, &name, &key, oref, &why, now,
        )
        .await;
        note_on_secret(&client, (&namespace, &secret), &key, None).await;
    });
}

/// Writes (or, with `None`, removes) the note of a delayed restart of workload `key` on
/// the renewed Secret; a failure is logged (the restart still happens in this process).
async fn note_on_secret(
    client: &kube::Client,
    (namespace, secret): (&str, &str),
    key: &str,
    note: Option<String>,
) {
    let patch =
        serde_json::json!({ "metadata": { "annotations": { pending_annotation(key): note } } });
    let pp = crate::shared::patch::operator_params();
    let api = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace);
    if let Err(e) = api
        .patch(secret, &pp, &kube::api::Patch::Merge(&patch))
        .await
    {
        tracing::warn!(workload = %key, %secret, error = %e, "restart-on-renew: cannot note the delayed restart on the Secret");
    }
}

async fn patch_workload(
    client: &kube::Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    let pp = crate::shared::patch::operator_params();
    let patch = kube::api::Patch::Merge(patch);
    match kind {
        Kind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        Kind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
        Kind::DaemonSet => Api::<DaemonSet>::namespaced(client.clone(), namespace)
            .patch(name, &pp, &patch)
            .await
            .map(drop),
    }
}

/// The delayed restarts noted on one Secret (its metadata): (target, due time).
fn noted(
    secret: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<(Target, Timestamp)> {
    let namespace = secret.namespace.clone().unwrap_or_default();
    (secret.annotations.iter().flatten())
        .filter(|(k, _)| k.starts_with(RESTART_PENDING_PREFIX) && *k != RESTART_ON_RENEW)
        .filter_map(|(_, v)| {
            let (due, workload) = v.split_once(' ')?;
            let (kind, name) = workload.split_once('/')?;
            let (kind, mut oref) = match kind {
                "Deployment" => (
                    Kind::Deployment,
                    Deployment::object_ref(&Default::default(), &()),
                ),
                "StatefulSet" => (
                    Kind::StatefulSet,
                    StatefulSet::object_ref(&Default::default(), &()),
                ),
                "DaemonSet" => (
                    Kind::DaemonSet,
                    DaemonSet::object_ref(&Default::default(), &()),
                ),
                _ => return None,
            };
            oref.name = Some(name.to_string());
            oref.namespace = Some(namespace.clone());
            let key = format!("{}/{namespace}/{name}", kind.as_str());
            let target = (kind, namespace.clone(), name.to_string(), key, oref);
            Some((target, due.parse().ok()?))
        })
        .collect()
}

/// At start (of the process or of a term as leader): every delayed restart noted on the
/// operator's TLS Secrets (in `namespace`, all when empty) is made when due (at once when
/// its time has passed).
pub async fn resume_pending(
    client: &kube::Client,
    recorder: &Recorder,
    memory: &Arc<Memory>,
    namespace: &str,
) {
    let api: Api<k8s_openapi::api::core::v1::Secret> = match namespace {
        "" => Api::all(client.clone()),
        ns => Api::namespaced(client.clone(), ns),
    };
    let managed = format!(
        "{}={}",
        crate::api::MANAGED_BY_LABEL,
        crate::api::MANAGED_BY_VALUE
    );
    let Ok(list) = api
        .list_metadata(&ListParams::default().labels(&managed))
        .await
    else {
        return;
    };
    for secret in list.items {
        let name = secret.name_any();
        for (target, due) in noted(&secret.metadata) {
            let now = memory.wall_now();
            // Waiting in this process already (it led before): that task makes it.
            let waiting = memory.update_restart(&target.3, now, MIN_INTERVAL, |state| {
                std::mem::replace(&mut state.pending, true)
            });
            if waiting {
                continue;
            }
            let wait = due
                .duration_since(now)
                .max(SignedDuration::ZERO)
                .unsigned_abs();
            tracing::info!(workload = %target.3, "restart-on-renew: a restart delayed by an earlier operator is due at {due}");
            let why = format!("Secret {name} was renewed (its restart was delayed to {due})");
            later(client, recorder, memory, (target, name.clone()), wait, why);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn restart(
    client: &kube::Client,
    recorder: &Recorder,
    kind: Kind,
    namespace: &str,
    name: &str,
    key: &str,
    oref: k8s_openapi::api::core::v1::ObjectReference,
    why: &str,
    now: Timestamp,
) {
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: now.to_string() } } } }
    });
    let result = patch_workload(client, kind, namespace, name, &patch).await;
    let (warning, reason, note) = match result {
        Ok(()) => {
            tracing::info!(workload = %key, "restart-on-renew: rolling restart: {why}");
            (false, "RestartedOnRenew", format!("rolling restart: {why}"))
        }
        Err(e) => {
            tracing::warn!(workload = %key, error = %e, "restart-on-renew: restart failed");
            (
                true,
                "RestartFailed",
                format!("{why}, but the rolling restart failed: {e}"),
            )
        }
    };
    recorder.note(&oref, warning, reason, "Restart", note).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_lists_secrets() {
        assert!(names_secret("a-tls", "a-tls"));
        assert!(names_secret("x, a-tls ,y", "a-tls"));
        assert!(!names_secret("a-tls-2", "a-tls"));
        assert!(!names_secret("", "a-tls"));
    }

    #[test]
    fn two_renewals_at_once_restart_once() {
        let m = Memory::default();
        let now: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        assert_eq!(decide(&m, "Deployment/ns/app", now), Plan::Now);
        assert!(matches!(
            decide(&m, "Deployment/ns/app", now),
            Plan::After(_)
        ));
        assert_eq!(decide(&m, "Deployment/ns/app", now), Plan::AlreadyPending);
        take_pending(&m, "Deployment/ns/app", now + SignedDuration::from_secs(60));
        assert!(matches!(
            decide(&m, "Deployment/ns/app", now + SignedDuration::from_secs(61)),
            Plan::After(_)
        ));
    }

    #[test]
    fn restart_state_is_kept_only_while_it_decides_something() {
        let m = Memory::default();
        let now: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        let later = |secs| now + SignedDuration::from_secs(secs);
        assert_eq!(decide(&m, "Deployment/ns/a", now), Plan::Now);
        assert_eq!(
            decide(&m, "Deployment/ns/a", later(20)),
            Plan::After(Duration::from_secs(40))
        );
        assert_eq!(m.len(), 1);
        // A pending restart is kept however long it waits.
        assert_eq!(decide(&m, "Deployment/ns/b", later(200)), Plan::Now);
        assert_eq!(m.len(), 2);
        take_pending(&m, "Deployment/ns/a", later(200));
        // Once its minute is over, the next decision (of any workload) drops it.
        assert_eq!(decide(&m, "Deployment/ns/c", later(260)), Plan::Now);
        assert_eq!(m.len(), 1, "only c's restart is recent");
        assert_eq!(decide(&m, "Deployment/ns/a", later(261)), Plan::Now);
    }

    #[test]
    fn at_most_once_a_minute_and_never_dropped() {
        let now: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        assert_eq!(plan(None, false, now), Plan::Now);
        let recent = now - SignedDuration::from_secs(20);
        assert_eq!(
            plan(Some(recent), false, now),
            Plan::After(Duration::from_secs(40))
        );
        let old = now - SignedDuration::from_secs(61);
        assert_eq!(plan(Some(old), false, now), Plan::Now);
        assert_eq!(plan(Some(recent), true, now), Plan::AlreadyPending);
    }
}
