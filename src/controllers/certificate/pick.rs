//! Which issuer a reconcile uses: `issuerRef`, or, with `fallbackIssuerRefs`, the one
//! [`choose_issuer`] names from their readiness and the failures so far.

use std::time::Duration;

use jiff::Timestamp;

use super::observe::Observed;
use super::status::{READY, Reason};
use crate::api::conditions::find;
use crate::api::{CertificateStatus, IssuerName, Time};
use crate::decide::fallback::{Candidate, DEFAULT_FALLBACK_AFTER, choose_issuer};
use crate::shared::IssuerHandle;

/// The issuer to use, or why there is none (and when to look again).
pub enum Picked<'a> {
    Use(&'a IssuerHandle),
    Stop(Reason, String, Duration),
}

/// The Certificate's issuers, primary first: display name and handle (when it exists).
pub fn issuers(seen: &Observed) -> Vec<(String, Option<&IssuerHandle>)> {
    let spec = &seen.cert.spec;
    std::iter::once(&spec.issuer_ref)
        .chain(&spec.fallback_issuer_refs)
        .zip(std::iter::once(&seen.issuer).chain(&seen.fallbacks))
        .map(|(r, h)| {
            let display = h.as_ref().map_or_else(
                || format!("{}/{}", r.kind.as_deref().unwrap_or("CaaSIssuer"), r.name),
                IssuerHandle::display,
            );
            (display, h.as_ref())
        })
        .collect()
}

pub fn pick<'a>(seen: &'a Observed, status: &CertificateStatus, now: Timestamp) -> Picked<'a> {
    let spec = &seen.cert.spec;
    if spec.fallback_issuer_refs.is_empty() {
        let Some(issuer) = seen.issuer.as_ref() else {
            let r = &spec.issuer_ref;
            let kind = r.kind.as_deref().unwrap_or("CaaSIssuer");
            return Picked::Stop(
                Reason::IssuerNotFound,
                format!("{kind} {:?} does not exist", r.name),
                Duration::from_secs(60),
            );
        };
        if !issuer.is_ready() {
            return Picked::Stop(
                Reason::IssuerNotReady,
                not_ready_message(issuer),
                Duration::from_secs(30),
            );
        }
        return Picked::Use(issuer);
    }
    let all = issuers(seen);
    let candidates: Vec<Candidate<'_>> = all
        .iter()
        .map(|(display, h)| Candidate {
            display,
            ready: h.is_some_and(IssuerHandle::is_ready),
        })
        .collect();
    let after = spec
        .fallback_after
        .as_deref()
        .and_then(|s| crate::decide::renewal::parse_duration(s).ok())
        .unwrap_or(DEFAULT_FALLBACK_AFTER);
    let since = status.issuing_with_failing_since.map(Time::timestamp);
    let current = status.issuing_with.as_ref().map(IssuerName::to_string);
    match choose_issuer(&candidates, current.as_deref(), since, now, after) {
        Some(i) => Picked::Use(all[i].1.expect("a ready issuer exists")),
        None => {
            let why: Vec<String> = all
                .iter()
                .map(|(display, h)| match h {
                    Some(h) => not_ready_message(h),
                    None => format!("{display} does not exist"),
                })
                .collect();
            Picked::Stop(
                Reason::IssuerNotReady,
                format!("no issuer is ready: {}", why.join("; ")),
                Duration::from_secs(30),
            )
        }
    }
}

pub fn not_ready_message(issuer: &IssuerHandle) -> String {
    let why = issuer
        .status
        .as_ref()
        .and_then(|s| find(&s.conditions, READY))
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_else(|| "it has not been checked yet".into());
    format!("{} is not ready ({why})", issuer.display())
}
