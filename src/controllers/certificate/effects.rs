//! The effects of an outcome, carried out after its status is saved (cert-manager's
//! issuing/readiness split): events, the next-key Secret's removal, workload restarts
//! and notifications. A status save that fails skips them: the error is retried, and an
//! issuance whose status was lost is then reported as valid without a second event or
//! notification (the Secret is right either way).

use super::failure::Failure;
use super::outcome::Issued;
use super::{key_of, keys};
use crate::api::{Certificate, Time};
use crate::controllers::{Context, restart};
use crate::notify;
use crate::shared::IssuerHandle;

/// The notifications of `issuer` (or the operator's default), and the namespace of their
/// URL Secrets.
pub fn notify_config<'a>(
    ctx: &'a Context,
    issuer: &'a IssuerHandle,
) -> Option<(&'a crate::api::issuer::Notify, &'a str)> {
    match &issuer.spec.notify {
        Some(n) => Some((n, issuer.secret_namespace.as_str())),
        None => ctx
            .settings
            .default_notify
            .as_ref()
            .map(|n| (n, ctx.settings.cluster_resource_namespace.as_str())),
    }
}

/// Sends `message` to the webhooks of `issuer` (or the operator's default).
pub async fn tell(ctx: &Context, issuer: &IssuerHandle, message: &notify::Message) {
    if let Some((config, namespace)) = notify_config(ctx, issuer) {
        ctx.notifier
            .send(&ctx.client, config, namespace, message)
            .await;
    }
}

/// A certificate was issued and its status saved: the event, the next key's removal, the
/// restarts of `caas.dev/restart-on-renew` workloads (renewals only), the notification.
pub async fn issued(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    ready_message: String,
    issued: Issued,
    renewed: bool,
) {
    let Issued {
        info,
        cause: (cause_reason, cause),
        ..
    } = issued;
    tracing::info!(certificate = %key_of(cert), serial = %info.serial, "certificate issued; {ready_message}");
    // One event per issuance (failures have their own). Its reason is the cause: events
    // with the same reason are merged into one series, which would hide a new cause.
    let note = format!(
        "certificate issued (serial {}) because {cause}; {ready_message}",
        info.serial
    );
    ctx.recorder
        .event(cert, false, cause_reason.as_str(), "Issue", note)
        .await;
    keys::delete_next(ctx, cert).await;
    if renewed && ctx.settings.restart_on_renew {
        let ns = cert.metadata.namespace.clone().unwrap_or_default();
        let secret = &cert.spec.secret_name;
        restart::on_renewed(
            &ctx.client,
            &ctx.recorder,
            &ctx.memory,
            &ns,
            secret,
            &info.serial,
        )
        .await;
    }
    let event = match renewed {
        true => notify::Event::Renewed,
        false => notify::Event::Issued,
    };
    let reason = super::status::Reason::Issued.as_str();
    let mut msg = notify::Message::new(event, cert, reason, ready_message);
    msg.serial = Some(info.serial.clone());
    msg.not_after = Some(Time(info.not_after));
    tell(ctx, issuer, &msg).await;
}

/// An issuance attempt failed and its status was saved: the event, the failure
/// notification (at the issuer's `failedAfter`-th attempt), and once per certificate the
/// `Expiring` event and notification (`expiring`: its note and the notAfter).
pub async fn failed(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    failure: &Failure,
    (message, attempts): (String, i32),
    expiring: Option<(String, Time)>,
) {
    let key = key_of(cert);
    tracing::warn!(certificate = %key, reason = failure.reason.as_str(), step = %failure.step, "issuance failed: {message}");
    let reason = failure.reason.as_str();
    ctx.recorder
        .event(cert, true, reason, "Issue", message.clone())
        .await;
    let failing =
        notify_config(ctx, issuer).is_some_and(|(n, _)| notify::report_failure(Some(n), attempts));
    if failing {
        let msg = notify::Message::new(notify::Event::Failed, cert, reason, message);
        tell(ctx, issuer, &msg).await;
    }
    let Some((note, not_after)) = expiring else {
        return;
    };
    // Once per certificate (notAfter): the event, the log line, the notification.
    if ctx.memory.first_expiring(&key, &not_after.to_string()) {
        tracing::warn!(certificate = %key, "{note}");
        let reason = super::status::Reason::RenewalFailing.as_str();
        ctx.recorder
            .event(cert, true, reason, "Renew", note.clone())
            .await;
        let mut msg = notify::Message::new(notify::Event::Expiring, cert, reason, note);
        msg.not_after = Some(not_after);
        tell(ctx, issuer, &msg).await;
    }
}
