//! Certificate controller. One reconcile is a pipeline of named steps, each in its file:
//!
//! 1. [`observe`]: the only reads (the Certificate, its TLS Secret and its issuer, from
//!    the watched stores);
//! 2. validate the spec ([`crate::decide::validate`], `InvalidSpec`);
//! 3. resolve the issuer (`IssuerNotFound`, `IssuerNotReady`);
//! 4. decide, from the Secret, status and time, whether the certificate is good
//!    ([`crate::decide::decide`]); if so, report it ([`finish`]) and come back at the
//!    renewal time ([`ari`] refines it with the CA's advice);
//! 5. otherwise [`issue`]: back off after failures, then [`drive`] one ACME order
//!    (resumed from `status.order.url` after a restart) through the pure state machine
//!    in [`order`]: [`present`] challenges with the issuer's solvers, finalize with a key
//!    kept in a Secret ([`keys`]), download the chain;
//! 6. write the TLS Secret ([`secret`]);
//! 7. finish status ([`status`], [`finish`]) and clean the solvers up.
//!
//! Waiting on the CA never blocks: the reconcile returns and is requeued after the
//! CA's `Retry-After` (or a growing delay). Failures back off exponentially
//! ([`crate::decide::backoff`]) and are reported with the CA's words.

pub mod ari;
pub mod drive;
pub mod effects;
pub mod failure;
pub mod finish;
#[cfg(test)]
mod harness;
pub mod issue;
pub mod keys;
pub mod observe;
pub mod outcome;
pub mod persist_until;
pub mod pick;
pub mod present;
pub mod rate_limit;
pub mod secret;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::Context;
use crate::api::Certificate;
use crate::decide::{self, Decision};
use status::{Reason, StatusWriter};

pub use crate::solvers::dns01::DNS_CLEANUP_FINALIZER;
pub use secret::{
    ANNOTATION_ALT_NAMES, ANNOTATION_CERTIFICATE, ANNOTATION_ISSUER, ANNOTATION_ISSUER_KIND,
    ANNOTATION_ISSUER_NAME, ANNOTATION_SERIAL, secret_view,
};

/// A reconcile that ended early, named by its step; retried with backoff. Everything a
/// user can act on is reported in the Certificate's status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("observe: {0}")]
    Observe(#[source] kube::Error),
    #[error("write status: {0}")]
    Status(#[source] kube::Error),
    #[error("deletion cleanup: {0}")]
    Deletion(#[source] kube::Error),
}

/// `namespace/name`.
pub fn key_of(cert: &Certificate) -> String {
    crate::shared::memory::object_key(cert.namespace().as_deref(), &cert.name_any())
}

pub async fn reconcile(cert: Arc<Certificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let seen = observe::observe(&ctx, cert).await.map_err(Error::Observe)?;
    if seen.cert.metadata.deletion_timestamp.is_some() {
        return finish::deletion(&ctx, &seen).await;
    }
    let mut w = StatusWriter::new(&ctx, &seen.cert);

    // Validate.
    if let Err(message) = decide::validate(&seen.cert.spec, "") {
        w.set_ready(false, Reason::InvalidSpec, message);
        w.drop_issuing();
        w.save().await?;
        return Ok(Action::await_change());
    }
    // Resolve the issuer (or, with fallbacks, choose one).
    let issuer = match pick::pick(&seen, &w.status, w.now) {
        pick::Picked::Use(issuer) => issuer,
        pick::Picked::Stop(reason, message, wait) => {
            w.set_ready(false, reason, message);
            w.save().await?;
            return Ok(Action::requeue(wait));
        }
    };
    let mut request = match decide::validate(&seen.cert.spec, &issuer.fingerprint()) {
        Ok(r) => r,
        Err(message) => {
            w.set_ready(false, Reason::InvalidSpec, message);
            w.save().await?;
            return Ok(Action::await_change());
        }
    };
    request.renew_request = seen
        .cert
        .annotations()
        .get(decide::RENEW_ANNOTATION)
        .cloned();
    request.compromised_key = (seen.cert.annotations())
        .get(decide::COMPROMISED_KEY_ANNOTATION)
        .cloned();

    // Decide.
    let view = seen.secret.as_ref().map(secret_view);
    let now = w.now;
    // A certificate from any of the Certificate's issuers is kept until its renewal.
    let issuers = pick::issuers(&seen);
    let accepted: Vec<&str> = issuers.iter().map(|(d, _)| d.as_str()).collect();
    let decision = decide::decide(
        &request,
        &accepted,
        Some(&w.status),
        view.as_ref(),
        now,
        rand::random(),
    );
    match decision {
        Decision::Valid { renewal_time, cert } => {
            // Checked (ARI) with the issuer it came from; no issuance is in progress.
            let from = view.as_ref().and_then(|v| v.issuer.as_deref());
            let came_from = issuers
                .iter()
                .find(|(d, _)| Some(d.as_str()) == from)
                .and_then(|(_, h)| *h)
                .unwrap_or(issuer);
            w.status.issuing_with = None;
            w.status.issuing_with_failing_since = None;
            finish::valid(&ctx, &seen, came_from, &request, w, cert, renewal_time).await
        }
        Decision::Issue { reason, message } => {
            let has_valid = view
                .as_ref()
                .and_then(|v| v.cert.as_ref()?.as_ref().ok())
                .is_some_and(|c| c.not_after > now);
            if !seen.cert.spec.fallback_issuer_refs.is_empty()
                && !w.status.issuing_with.as_ref().is_some_and(|n| issuer.is(n))
            {
                w.status.issuing_with = Some(issuer.issuer_name());
                w.status.issuing_with_failing_since = None;
            }
            let why = issue::Why {
                reason,
                message,
                has_valid_cert: has_valid,
            };
            issue::issue(&ctx, &seen, issuer, &request, w, why).await
        }
    }
}

pub fn error_policy(cert: Arc<Certificate>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error("certificate");
    tracing::warn!(certificate = %key_of(&cert), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
