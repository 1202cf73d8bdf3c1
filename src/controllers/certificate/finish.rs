//! Finishing: the status of a good certificate (and the Secret write that made it), and
//! a Certificate's deletion.

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action;

use super::observe::Observed;
use super::outcome::Issued;
use super::status::{ISSUING, Reason, StatusWriter};
use super::{Error, ari, effects, key_of, keys, persist_until, present, secret};
use crate::api::certificate::ChallengeStatus;
use crate::api::{Certificate, Time};
use crate::controllers::Context;
use crate::decide::{self, Request};
use crate::pki::CertInfo;
use crate::shared::IssuerHandle;
use crate::shared::memory::Memory;
use crate::solvers::dns01;

/// Look again at least this often (clock changes, lost watches).
const LOOK_AGAIN: Duration = Duration::from_secs(8 * 3600);

/// Come back at `renewal_time` (by the context's clock), within [1 s, `LOOK_AGAIN`].
fn until(memory: &Memory, renewal_time: Timestamp) -> Action {
    let wait = renewal_time
        .duration_since(memory.wall_now())
        .unsigned_abs();
    Action::requeue(wait.clamp(Duration::from_secs(1), LOOK_AGAIN))
}

/// The Secret holds a good certificate: report it and come back at the renewal time.
pub async fn valid(
    ctx: &Context,
    seen: &Observed,
    issuer: &IssuerHandle,
    request: &Request,
    mut w: StatusWriter<'_>,
    info: CertInfo,
    renewal_time: Timestamp,
) -> Result<Action, Error> {
    let cert = &*seen.cert;
    if let Some(order) = w.status.order.take() {
        // A process stopped between writing the Secret and writing status: the Secret
        // holds this order's certificate, one status has not counted yet.
        if w.status.not_before != Some(Time(info.not_before)) {
            w.status.revision = Some(w.status.revision.unwrap_or(0) + 1);
            w.status.manual_renewal = request.renew_request.clone();
        }
        present::cleanup(ctx, cert, issuer, &order.challenges).await;
        keys::delete_next(ctx, cert).await;
    }
    let renewal_time = match seen.secret.as_ref() {
        Some(s) => ari::renewal_time(ctx, cert, issuer, s, &info, renewal_time, w.now).await,
        None => renewal_time,
    };
    let unchanged = w.is_ready()
        && w.condition(super::status::READY)
            .is_some_and(|c| c.reason == Reason::Issued.as_str())
        && w.status.renewal_time == Some(Time(renewal_time));
    record(&mut w, &info, renewal_time);
    let persist_note = persist_until::check(ctx, &mut w, cert, issuer, renewal_time);
    if !unchanged {
        w.set_ready(
            true,
            Reason::Issued,
            format!(
                "the certificate is valid until {}; renewal at {renewal_time}",
                info.not_after
            ),
        );
    }
    w.drop_issuing();
    w.drop_expiring();
    w.save().await?;
    if let Some(note) = persist_note {
        persist_until::tell(ctx, cert, issuer, note).await;
    }
    Ok(until(&ctx.memory, renewal_time))
}

fn record(w: &mut StatusWriter<'_>, info: &CertInfo, renewal_time: Timestamp) {
    w.status.not_before = Some(Time(info.not_before));
    w.status.not_after = Some(Time(info.not_after));
    w.status.renewal_time = Some(Time(renewal_time));
    w.status.failed_issuance_attempts = None;
    w.status.last_failure_time = None;
}

/// Ready's message for a new certificate: its issuer (and whether a fallback), the
/// lifetime the CA gave, renewal.
fn issued_message(
    cert: &Certificate,
    issuer: &IssuerHandle,
    info: &CertInfo,
    renewal_time: Timestamp,
) -> String {
    let primary = cert.spec.issuer_ref.name == issuer.name
        && cert.spec.issuer_ref.is_cluster()
            == matches!(issuer.kind, crate::shared::IssuerKind::Cluster);
    let fallback = if primary { "" } else { " (a fallback issuer)" };
    let lifetime = info.not_after.duration_since(info.not_before);
    format!(
        "issued by {}{fallback}; valid {lifetime:#} until {}; renewal at {renewal_time}",
        issuer.display(),
        info.not_after
    )
}

/// Writes the TLS Secret, then status (after cleaning up the order's answers), then
/// carries out the effects of an issuance ([`effects::issued`]).
pub async fn issued(
    ctx: &Context,
    seen: &Observed,
    issuer: &IssuerHandle,
    request: &Request,
    mut w: StatusWriter<'_>,
    issued: Issued,
) -> Result<Action, Error> {
    let cert = &*seen.cert;
    let body = match secret::tls_secret(
        cert,
        issuer,
        request,
        &issued.info,
        &issued.chain,
        &issued.key_pem,
    ) {
        Ok(body) => body,
        Err(e) => {
            let e = format!("the certificate or key cannot be encoded: {e}");
            return secret_write_failed(ctx, seen, w, e).await;
        }
    };
    if let Err(e) = secret::apply(ctx, cert, &body).await {
        return secret_write_failed(ctx, seen, w, e.to_string()).await;
    }
    let info = &issued.info;
    let lifetime = info.not_after.duration_since(info.not_before);
    let before = crate::decide::renewal::renew_before(
        lifetime,
        request.renew_before,
        request.renew_before_percentage,
    );
    let planned = crate::decide::renewal::renewal_time(
        info.not_before,
        info.not_after,
        before,
        rand::random(),
    );
    // The CA's renewal window (ARI) now, so that the next look has nothing to change.
    let renewal_time = ari::renewal_time(ctx, cert, issuer, &body, info, planned, w.now).await;
    // A renewal replaces a certificate this Certificate had; the first issuance does not.
    // (A Secret another tool filled, now replaced, counts: workloads mount it already.)
    let renewed = w.status.revision.is_some_and(|r| r >= 1)
        || seen.secret.as_ref().and_then(secret::leaf_der).is_some();
    let (challenges, message) =
        record_issued(ctx, &mut w, cert, issuer, request, info, renewal_time);
    let persist_note = persist_until::check(ctx, &mut w, cert, issuer, renewal_time);
    // Clean up before status forgets the order: a process killed in between finds the
    // order again on restart and cleans up then.
    present::cleanup(ctx, cert, issuer, &challenges).await;
    w.save().await?;
    effects::issued(ctx, cert, issuer, message, issued, renewed).await;
    if let Some(note) = persist_note {
        persist_until::tell(ctx, cert, issuer, note).await;
    }
    Ok(until(&ctx.memory, renewal_time))
}

/// Status for a new certificate: its revision, times, issuer and `Ready`; returns the
/// order's challenges for cleanup (status forgets the order) and Ready's message.
fn record_issued(
    ctx: &Context,
    w: &mut StatusWriter<'_>,
    cert: &Certificate,
    issuer: &IssuerHandle,
    request: &Request,
    info: &CertInfo,
    renewal_time: Timestamp,
) -> (Vec<ChallengeStatus>, String) {
    let challenges = w
        .status
        .order
        .take()
        .map(|o| o.challenges)
        .unwrap_or_default();
    w.status.revision = Some(w.status.revision.unwrap_or(0) + 1);
    w.status.manual_renewal = request.renew_request.clone();
    record(w, info, renewal_time);
    w.drop_expiring();
    // The next renewal starts with the primary issuer again.
    w.status.issued_by = Some(issuer.issuer_name());
    w.status.issuing_with = None;
    w.status.issuing_with_failing_since = None;
    let message = issued_message(cert, issuer, info, renewal_time);
    w.set_ready(true, Reason::Issued, message.clone());
    if let Some(started) = w.condition(ISSUING).and_then(|c| c.last_transition_time) {
        let secs = w.now.duration_since(started.0).as_secs_f64().max(0.0);
        ctx.metrics.issuance_duration.observe(secs);
    }
    w.drop_issuing();
    (challenges, message)
}

/// The certificate is safe at the CA and its key in the next-key Secret: keep the order
/// (the next attempt downloads it again) and say why nothing changed.
async fn secret_write_failed(
    ctx: &Context,
    seen: &Observed,
    mut w: StatusWriter<'_>,
    error: String,
) -> Result<Action, Error> {
    let cert = &*seen.cert;
    let attempts = w.count_failure();
    let delay = decide::backoff(attempts);
    let message = format!(
        "the certificate was issued but Secret {} cannot be written: {error} (attempt {attempts}; next try in {delay:#})",
        cert.spec.secret_name
    );
    tracing::warn!(certificate = %key_of(cert), "{message}");
    w.set_issuing(false, Reason::SecretWriteFailed, message.clone());
    if !w.is_ready() {
        w.set_ready(false, Reason::SecretWriteFailed, message.clone());
    }
    w.save().await?;
    let reason = Reason::SecretWriteFailed.as_str();
    ctx.recorder
        .event(cert, true, reason, "Issue", message)
        .await;
    Ok(Action::requeue(delay.unsigned_abs()))
}

/// A Certificate being deleted: DNS-01 records are removed first (see
/// [`dns01::finalize_deletion`]); everything else is owned and garbage-collected.
pub async fn deletion(ctx: &Context, seen: &Observed) -> Result<Action, Error> {
    let cert = &*seen.cert;
    let cleanup = async |issuer: &IssuerHandle, challenges: &[ChallengeStatus]| {
        present::cleanup(ctx, cert, issuer, challenges).await
    };
    dns01::finalize_deletion(ctx.solver_deps(), cert, seen.issuer.as_ref(), cleanup)
        .await
        .map_err(Error::Deletion)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kube::runtime::controller::Action;

    use super::{LOOK_AGAIN, until};
    use crate::controllers::certificate::harness::TestClock;
    use crate::shared::memory::Memory;

    #[test]
    fn the_renewal_requeue_follows_the_injected_clock() {
        let clock = TestClock::new();
        let memory = Memory::new(clock.clone());
        let renewal_time = memory.wall_now() + jiff::SignedDuration::from_hours(2);
        assert_eq!(
            until(&memory, renewal_time),
            Action::requeue(Duration::from_secs(2 * 3600))
        );
        clock.advance(Duration::from_secs(3600 + 59 * 60));
        assert_eq!(
            until(&memory, renewal_time),
            Action::requeue(Duration::from_secs(60))
        );
        clock.advance(Duration::from_millis(59_500));
        assert_eq!(
            until(&memory, renewal_time),
            Action::requeue(Duration::from_secs(1)),
            "at least a second"
        );
        let far = memory.wall_now() + jiff::SignedDuration::from_hours(24 * 30);
        assert_eq!(until(&memory, far), Action::requeue(LOOK_AGAIN));
    }
}
