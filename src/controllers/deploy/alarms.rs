//! What a deployment's failures raise beyond its entry: the `deploy-failed`
//! notification (once per run of failures, at the issuer's `failedAfter`-th attempt),
//! and for a deployed copy nearing its notAfter while the renewal has not reached it,
//! `Expiring` on the entry with a Warning event and an `expiring` notification (once per
//! copy).

use super::DeployContext;
use crate::api::conditions::set_condition;
use crate::api::{Certificate, Condition, DeploymentStatus, Reason};
use crate::controllers::certificate::effects;
use crate::decide::deploy::{self as decide, SecretCert};
use crate::notify;

pub(super) async fn raise(
    d: &DeployContext,
    cert: &Certificate,
    before: &[DeploymentStatus],
    next: &mut [DeploymentStatus],
    secret: Option<&SecretCert>,
    now: jiff::Timestamp,
) {
    let within = jiff::SignedDuration::try_from(d.ctx.settings.expiring_within).unwrap_or_default();
    for entry in next.iter_mut() {
        let was = before.iter().find(|e| e.target == entry.target);
        let attempts = entry.failed_attempts.unwrap_or(0);
        if attempts > was.and_then(|w| w.failed_attempts).unwrap_or(0) {
            failed(d, cert, entry, attempts).await;
        }
        if decide::copy_expiring(entry, secret, now, within) {
            expiring(d, cert, entry, now).await;
        } else {
            entry.conditions.retain(|c| c.type_ != "Expiring");
        }
    }
}

/// The `deploy-failed` notification, at the `failedAfter`-th failure in a row.
async fn failed(d: &DeployContext, cert: &Certificate, entry: &DeploymentStatus, attempts: i32) {
    let Ok(Some(issuer)) = d.ctx.stores.issuer_of(cert, &d.ctx.settings).await else {
        return;
    };
    let report = effects::notify_config(&d.ctx, &issuer)
        .is_some_and(|(n, _)| notify::report_failure(Some(n), attempts));
    if !report {
        return;
    }
    let Some(deployed) = entry.conditions.iter().find(|c| c.type_ == "Deployed") else {
        return;
    };
    let message = format!("{}: {}", entry.target, deployed.message);
    let msg = notify::Message::new(notify::Event::DeployFailed, cert, &deployed.reason, message);
    effects::tell(&d.ctx, &issuer, &msg).await;
}

/// `Expiring` on the entry; the event and notification once per copy (its notAfter).
async fn expiring(
    d: &DeployContext,
    cert: &Certificate,
    entry: &mut DeploymentStatus,
    now: jiff::Timestamp,
) {
    let Some(not_after) = entry.not_after else {
        return;
    };
    let why = (entry.conditions.iter())
        .find(|c| c.type_ == "Deployed")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let at = entry
        .remote_id
        .clone()
        .unwrap_or_else(|| entry.target.clone());
    let note = format!(
        "the copy at {at} ({}) expires {not_after} and the renewal has not reached it: {why}",
        entry.target
    );
    let reason = Reason::DeployedCopyExpiring;
    let condition = Condition::new("Expiring", true, reason.as_str(), note.clone());
    set_condition(&mut entry.conditions, condition, now, None);
    let key = format!("{}#{}", super::source_key(cert), entry.target);
    if !d.ctx.memory.first_expiring(&key, &not_after.to_string()) {
        return;
    }
    tracing::warn!(certificate = %super::source_key(cert), target = %entry.target, "{note}");
    (d.ctx.recorder)
        .event(cert, true, reason.as_str(), "Deploy", note.clone())
        .await;
    if let Ok(Some(issuer)) = d.ctx.stores.issuer_of(cert, &d.ctx.settings).await {
        let mut msg = notify::Message::new(notify::Event::Expiring, cert, reason.as_str(), note);
        msg.not_after = Some(not_after);
        effects::tell(&d.ctx, &issuer, &msg).await;
    }
}
