//! Recording what happened at a target: the entry's `Deployed` condition, counters and
//! events after an attempt; and removing what a target put somewhere (a dropped target,
//! a deleted Certificate, a target switched to another destination).

use super::target::{Place, remote_client, resolve};
use super::{DeployContext, source_key};
use crate::api::conditions::set_condition;
use crate::api::deploy::DeletionPolicy;
use crate::api::{Certificate, Condition, DeployRef, DeploymentStatus, Reason, Time};
use crate::decide::deploy as decide;
use crate::deploy::{Bundle, DeployError, Deployed, copies, remote};

/// Sets the entry's `Deployed` condition.
pub(super) fn condition(
    entry: &mut DeploymentStatus,
    ok: bool,
    reason: Reason,
    message: String,
    now: jiff::Timestamp,
) {
    set_condition(
        &mut entry.conditions,
        Condition::new("Deployed", ok, reason.as_str(), message),
        now,
        None,
    );
}

/// Removes what a target put somewhere, when the Certificate goes or stops naming it:
/// Secret copies always; a cloud copy when its target (still there: its credentials are
/// needed) says `deletionPolicy: Delete`; otherwise nothing.
pub(super) async fn remove(
    d: &DeployContext,
    cert: &Certificate,
    entry: &DeploymentStatus,
) -> Result<(), String> {
    let Some(remote) = entry.remote_id.as_deref() else {
        return Ok(());
    };
    if entry.is_copies() {
        let source = source_key(cert);
        for ns in &entry.namespaces {
            copies::remove(&d.ctx.client, ns, remote, &source, &entry.target)
                .await
                .map_err(|e| format!("Secret {ns}/{remote}: {e}"))?;
        }
        return Ok(());
    }
    let target = DeployRef::from_key(&entry.target).and_then(|r| resolve(d, cert, &r));
    let Some(t) = target.filter(|t| t.spec.deletion_policy == Some(DeletionPolicy::Delete)) else {
        return Ok(());
    };
    if t.spec.secret_copies.is_some() || remote::adopted(&t.spec).is_some() {
        // Adopted: the user's certificate, not one this operator made.
        return Ok(());
    }
    let key = source_key(cert);
    let source = remote::Source { key: &key };
    if entry.location != remote::location(&t.spec, source) {
        // The target points elsewhere now (another vault, zone, region): its credentials
        // are for there, so the old copy stays where it is.
        tracing::info!(target = %entry.target, %remote, "the target moved; its old copy is left in place");
        return Ok(());
    }
    let client = remote_client(d, &t, cert)
        .await
        .map_err(|e| e.to_string())?;
    client
        .delete(remote)
        .await
        .map_err(|e| format!("{remote}: {e}"))
}

/// A target now of another destination than its entry's: the old Secret copies are
/// removed first (nothing else would ever remove them), then the entry starts afresh.
pub(super) async fn switch_destination(
    d: &DeployContext,
    cert: &Certificate,
    next: &mut DeploymentStatus,
    destination: &str,
) -> Result<(), String> {
    let before = next.destination.clone();
    if before.as_deref().is_some_and(|b| b != destination) && next.is_copies() {
        remove(d, cert, next).await.map_err(|e| {
            format!("removing the Secret copies of the former destination first: {e}")
        })?;
    }
    if before.as_deref() != Some(destination) {
        *next = DeploymentStatus {
            target: next.target.clone(),
            destination: Some(destination.into()),
            ..Default::default()
        };
    }
    Ok(())
}

/// A deployment done: the entry records what is where, and an event says so when
/// something was written.
async fn succeeded(
    d: &DeployContext,
    cert: &Certificate,
    next: &mut DeploymentStatus,
    place: &Place,
    (dep, bundle): (Deployed, Bundle),
    now: jiff::Timestamp,
) {
    next.location = Some(place.location.clone());
    next.remote_id = Some(dep.remote_id.clone());
    next.namespaces = dep.namespaces.clone();
    next.serial = Some(bundle.info.serial.clone());
    next.not_after = Some(Time(bundle.info.not_after));
    next.deployed_at = Some(Time(now));
    next.failed_attempts = None;
    next.next_attempt_time = None;
    let refused = place
        .copies
        .as_ref()
        .map(|(_, p)| p.refused.clone())
        .unwrap_or_default();
    let at = match dep.namespaces.is_empty() {
        true => dep.remote_id.clone(),
        false => format!("{} in {}", dep.remote_id, dep.namespaces.join(", ")),
    };
    let message = format!("serial {} deployed to {at}", bundle.info.serial);
    match refused.is_empty() {
        true => condition(next, true, Reason::Deployed, message, now),
        false => {
            let m = format!("{message}; not copied to {}", refused.join(", "));
            condition(next, false, Reason::NotPermitted, m, now);
        }
    }
    let outcome = if dep.wrote { "deployed" } else { "unchanged" };
    let destination = next.destination.clone().unwrap_or_default();
    d.ctx.metrics.deploy_attempt(&destination, outcome);
    if dep.wrote {
        let note = format!(
            "serial {} deployed to {} ({at})",
            bundle.info.serial, next.target
        );
        d.ctx
            .recorder
            .event(cert, false, "Deployed", "Deploy", note)
            .await;
    }
}

/// The entry after a deployment attempt, and its event.
pub(super) async fn record(
    d: &DeployContext,
    cert: &Certificate,
    next: &mut DeploymentStatus,
    place: &Place,
    result: Result<(Deployed, Bundle), DeployError>,
    now: jiff::Timestamp,
) {
    let was = next
        .conditions
        .iter()
        .find(|c| c.type_ == "Deployed")
        .cloned();
    match result {
        Ok(done) => succeeded(d, cert, next, place, done, now).await,
        Err(e) => {
            let destination = next.destination.clone().unwrap_or_default();
            d.ctx.metrics.deploy_attempt(&destination, "failed");
            if let Some((name, plan)) = &place.copies {
                // Some namespaces may hold a copy now: all stay on record, so a later
                // removal finds them (it checks that each copy is ours).
                next.namespaces.extend(plan.namespaces.iter().cloned());
                next.namespaces.sort();
                next.namespaces.dedup();
                next.remote_id.get_or_insert_with(|| name.clone());
            }
            let attempts = next.failed_attempts.unwrap_or(0) + 1;
            next.failed_attempts = Some(attempts);
            let wait = decide::backoff(attempts, rand::random::<f64>());
            next.next_attempt_time = Some(Time(now + wait));
            let message = e.to_string();
            condition(next, false, e.reason(), message.clone(), now);
            if was.is_none_or(|c| c.message != message) {
                let note = format!("{}: {message}", next.target);
                d.ctx
                    .recorder
                    .event(cert, true, "DeployFailed", "Deploy", note)
                    .await;
            }
        }
    }
}
