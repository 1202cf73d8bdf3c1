//! Issue: one attempt at an order, after backoff, and what its outcome means for status.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;

use super::drive::{self, Pass};
use super::failure::Failure;
use super::observe::Observed;
use super::outcome::Progress;
use super::status::{EXPIRING, ISSUING, READY, Reason, StatusWriter};
use super::{Error, finish, key_of, present};
use crate::api::{Certificate, CertificateStatus, Time};
use crate::controllers::Context;
use crate::decide::{self, Request};
use crate::shared::IssuerHandle;

/// Why a certificate is being issued.
pub struct Why {
    pub reason: Reason,
    pub message: String,
    /// A valid certificate is in place meanwhile (`Ready` stays true).
    pub has_valid_cert: bool,
}

/// Backoff after failures (a changed spec starts afresh), then the throttle set by the
/// last step (a CA's Retry-After, a poll interval): how long to wait, if at all.
fn gate(ctx: &Context, key: &str, request: &Request, w: &mut StatusWriter<'_>) -> Option<Duration> {
    let attempts = w.status.failed_issuance_attempts.unwrap_or(0);
    // The Issuing condition is rewritten on every attempt (Ready is not, while a valid
    // certificate exists): its generation says whether the failures were for this spec.
    let generation = w.generation();
    let same_spec = w.condition(ISSUING).and_then(|c| c.observed_generation) == generation;
    let last_failure = w.status.last_failure_time.map(Time::timestamp);
    match decide::retry_gate(attempts, last_failure, same_spec, w.now) {
        decide::RetryGate::Wait(wait) => return Some(wait),
        decide::RetryGate::Reset => {
            w.status.failed_issuance_attempts = None;
            w.status.last_failure_time = None;
        }
        decide::RetryGate::Go => {}
    }
    ctx.memory.poll_wait(key, &request.hash)
}

pub async fn issue(
    ctx: &Context,
    seen: &Observed,
    issuer: &IssuerHandle,
    request: &Request,
    mut w: StatusWriter<'_>,
    why: Why,
) -> Result<Action, Error> {
    let cert = &*seen.cert;
    let key = key_of(cert);
    if let Some(wait) = gate(ctx, &key, request, &mut w) {
        return Ok(Action::requeue(wait));
    }
    if w.status.order.is_none() {
        tracing::info!(certificate = %key, reason = why.reason.as_str(), "issuing: {}", why.message);
    }
    mark_issuing(&mut w, &why);

    // Only the CA's error answers from now on (not an earlier ARI check's, say) apply
    // to this attempt's failures.
    let started = ctx.memory.now();
    let before = w.status.order.as_ref().map(decide::progress_signature);
    let mut account_id = None;
    let outcome = match ctx.accounts.get(ctx, issuer).await {
        Ok(account) => {
            account_id = Some(account.id().to_string());
            let pass = Pass {
                ctx,
                cert,
                issuer,
                account: &account,
                request,
                tls: seen.secret.as_ref(),
                why: (why.reason, &why.message),
            };
            drive::drive(&pass, &mut w).await
        }
        Err(e) => Err(Failure::account(e)),
    };
    match outcome {
        Ok(Progress::Wait { retry_after, floor }) => {
            let valid = why.has_valid_cert;
            waiting(ctx, (cert, valid), request, w, before, (retry_after, floor)).await
        }
        Ok(Progress::Issued {
            chain,
            key_pem,
            info,
        }) => {
            ctx.memory.clear_poll_wait(&key);
            let issued = super::outcome::Issued {
                chain,
                key_pem,
                info,
                cause: (why.reason, why.message),
            };
            finish::issued(ctx, seen, issuer, request, w, issued).await
        }
        Err(failure) if failure.transient => {
            tracing::debug!(certificate = %key, "transient CA error ({failure}); retrying");
            w.save().await?;
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        Err(failure) if failure.paused.is_some() => {
            paused(ctx, &key, request, w, failure, why.has_valid_cert).await
        }
        Err(failure) => {
            let ca = (issuer, account_id.as_deref(), started);
            failed(ctx, seen, ca, request, w, failure, why.has_valid_cert).await
        }
    }
}

/// `Issuing` with the cause; `Ready=False Issuing` too while no valid certificate exists.
fn mark_issuing(w: &mut StatusWriter<'_>, why: &Why) {
    w.set_issuing(true, why.reason, why.message.clone());
    if !why.has_valid_cert
        && w.condition(READY)
            .is_none_or(|c| c.is_true() || c.reason != Reason::Issuing.as_str())
    {
        w.set_ready(
            false,
            Reason::Issuing,
            format!("issuing the certificate ({})", why.message),
        );
    }
}

/// Restarts the order's `stateSince` clock when its progress signature changed since
/// `before` (`None`: the order was created in this pass, with its clock); returns how
/// long it has been unchanged.
pub fn note_progress(
    status: &mut CertificateStatus,
    before: Option<String>,
    now: Timestamp,
) -> Duration {
    let Some(order) = status.order.as_mut() else {
        return Duration::ZERO;
    };
    let since = order.state_since.map(Time::timestamp);
    match since {
        Some(since)
            if before.is_none()
                || before.as_deref() == Some(decide::progress_signature(order).as_str()) =>
        {
            now.duration_since(since).unsigned_abs()
        }
        _ => {
            order.state_since = Some(Time(now));
            Duration::ZERO
        }
    }
}

async fn waiting(
    ctx: &Context,
    (cert, has_valid_cert): (&Certificate, bool),
    request: &Request,
    mut w: StatusWriter<'_>,
    before: Option<String>,
    (retry_after, floor): (Option<Duration>, Duration),
) -> Result<Action, Error> {
    let key = key_of(cert);
    let unchanged = note_progress(&mut w.status, before, ctx.memory.wall_now());
    let delay = decide::poll_delay(unchanged, retry_after, floor);
    if let Some((reason, message)) = w
        .status
        .order
        .as_ref()
        .and_then(|o| decide::waiting_condition(o, unchanged, delay))
    {
        if reason == Reason::PersistentRecordMissing {
            persistent_record_missing(ctx, cert, &mut w, has_valid_cert, &message).await;
        }
        w.set_issuing(true, reason, message);
    }
    ctx.memory.set_poll_wait(&key, &request.hash, delay);
    w.save().await?;
    Ok(Action::requeue(delay))
}

/// dns-persist-01 without a provider waits for a person: the first time, a Warning
/// event with the record to publish; before the first certificate, `Ready` says it too.
async fn persistent_record_missing(
    ctx: &Context,
    cert: &Certificate,
    w: &mut StatusWriter<'_>,
    has_valid_cert: bool,
    message: &str,
) {
    let reason = Reason::PersistentRecordMissing;
    let said = w
        .condition(ISSUING)
        .is_some_and(|c| c.reason == reason.as_str());
    if !said {
        let note = message
            .split(" (for ")
            .next()
            .unwrap_or(message)
            .to_string();
        (ctx.recorder)
            .event(cert, true, reason.as_str(), "Issue", note)
            .await;
    }
    if !has_valid_cert {
        w.set_ready(false, reason, message);
    }
}

/// New orders of the account are paused (a rate limit another Certificate hit): say
/// when they resume and look again then, without counting a failure.
async fn paused(
    ctx: &Context,
    key: &str,
    request: &Request,
    mut w: StatusWriter<'_>,
    failure: Failure,
    has_valid_cert: bool,
) -> Result<Action, Error> {
    let wait = failure.paused.unwrap_or_default();
    ctx.memory.set_poll_wait(key, &request.hash, wait);
    w.set_issuing(false, failure.reason, failure.message.clone());
    if !has_valid_cert {
        w.set_ready(false, failure.reason, failure.message);
    }
    w.save().await?;
    Ok(Action::requeue(wait))
}

/// Every failure counts and backs off; a CA that says when to come back (429 or 503
/// with Retry-After) is not asked sooner than that. A rate limit with Retry-After pauses
/// new orders of the whole account (`account`), as CAs count them per account.
async fn failed(
    ctx: &Context,
    seen: &Observed,
    (issuer, account, started): (&IssuerHandle, Option<&str>, std::time::Instant),
    request: &Request,
    mut w: StatusWriter<'_>,
    failure: Failure,
    has_valid_cert: bool,
) -> Result<Action, Error> {
    let cert = &*seen.cert;
    let key = key_of(cert);
    let attempts = w.count_failure();
    let ca_wait = account
        .and_then(|account| ctx.stats.error_retry_after(account, started))
        .filter(|_| failure.from_ca)
        .and_then(|d| SignedDuration::try_from(d).ok());
    let delay = decide::backoff(attempts).max(ca_wait.unwrap_or_default());
    if failure.reason == Reason::RateLimited
        && let (Some(account), Some(wait)) = (account, ca_wait)
    {
        ctx.memory.pause_account(account, wait.unsigned_abs());
        tracing::warn!(certificate = %key, %account, "the CA rate-limited the account: its new orders pause for {wait:#}");
        let until = ctx.memory.wall_now() + wait;
        super::rate_limit::record(ctx, issuer, account, until, &failure.message).await;
    }
    if failure.abandon_order
        && let Some(order) = w.status.order.take()
    {
        present::cleanup(ctx, cert, issuer, &order.challenges).await;
        super::keys::delete_next(ctx, cert).await;
    }
    ctx.memory
        .set_poll_wait(&key, &request.hash, delay.unsigned_abs());
    let message = match ca_wait {
        Some(wait) => format!(
            "{} (attempt {attempts}; the CA asks to wait {wait:#}; next try in {delay:#})",
            failure.message
        ),
        None => format!(
            "{} (attempt {attempts}; next try in {delay:#})",
            failure.message
        ),
    };
    w.set_issuing(false, failure.reason, message.clone());
    if !has_valid_cert {
        w.set_ready(false, failure.reason, message.clone());
    }
    let expiring = expiring(ctx, &mut w, has_valid_cert, &message);
    w.save().await?;
    super::effects::failed(ctx, cert, issuer, &failure, (message, attempts), expiring).await;
    Ok(Action::requeue(delay.unsigned_abs()))
}

/// Sets `Expiring` when the certificate in use expires within `--expiring-within` and
/// this renewal failed (clears it otherwise); returns its message and the notAfter when
/// set.
fn expiring(
    ctx: &Context,
    w: &mut StatusWriter<'_>,
    has_valid_cert: bool,
    failure: &str,
) -> Option<(String, Time)> {
    // Short certificates (a week or less) are always "within a week": for them the
    // warning starts in the last third of their lifetime, past the renewal time.
    let lifetime = match (w.status.not_before, w.status.not_after) {
        (Some(b), Some(a)) => a.0.duration_since(b.0).unsigned_abs() / 3,
        _ => ctx.settings.expiring_within,
    };
    let within = ctx.settings.expiring_within.min(lifetime);
    let not_after = w.status.not_after;
    let left = decide::expires_within(not_after, w.now, within).filter(|_| has_valid_cert);
    let (Some(left), Some(not_after)) = (left, not_after) else {
        w.drop_expiring();
        return None;
    };
    let note = format!(
        "the certificate expires at {not_after} (in {:#}) and renewal is failing: {failure}",
        SignedDuration::from_secs(left.as_secs())
    );
    w.set(EXPIRING, true, Reason::RenewalFailing, note.clone());
    Some((note, not_after))
}
