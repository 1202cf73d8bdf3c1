//! Issuer fallback: which of a Certificate's issuers (`issuerRef`, then
//! `fallbackIssuerRefs` in order) an issuance uses. A pure decision, with time passed in.
//!
//! An issuance starts with the primary. It moves to the next issuer when the one in use
//! is not Ready, or has failed for `fallbackAfter` (default 24 h) since its first
//! failure in this issuance. It never moves back within an issuance; the next renewal
//! starts with the primary again.

use jiff::{SignedDuration, Timestamp};

/// The default of `spec.fallbackAfter`.
pub const DEFAULT_FALLBACK_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// One issuer a Certificate may use.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// `CaaSIssuer/name` or `ClusterCaaSIssuer/name`.
    pub display: &'a str,
    /// It exists and is Ready.
    pub ready: bool,
}

/// The issuer to use, by index into `candidates` (primary first); `None` when none from
/// the one in use onwards is Ready.
///
/// `in_use` is the issuer the issuance in progress uses (`status.issuingWith`; `None`
/// when none is in progress), `failing_since` when it first failed.
pub fn choose_issuer(
    candidates: &[Candidate<'_>],
    in_use: Option<&str>,
    failing_since: Option<Timestamp>,
    now: Timestamp,
    fallback_after: SignedDuration,
) -> Option<usize> {
    let mut start = in_use
        .and_then(|d| candidates.iter().position(|c| c.display == d))
        .unwrap_or(0);
    let current = start;
    let expired = failing_since.is_some_and(|since| now.duration_since(since) >= fallback_after);
    if expired && start + 1 < candidates.len() {
        start += 1;
    }
    // The next Ready one; else stay with the one in use if it is Ready; else any Ready
    // one before it (the primary may be back).
    (start..candidates.len())
        .chain(std::iter::once(current))
        .chain(0..current)
        .find(|&i| candidates[i].ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candidates from (display, ready) pairs.
    fn issuers(list: &[(&'static str, bool)]) -> Vec<Candidate<'static>> {
        list.iter()
            .map(|&(display, ready)| Candidate { display, ready })
            .collect()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const H: SignedDuration = SignedDuration::from_hours(1);

    /// [`choose_issuer`] with `fallbackAfter` 24 h.
    fn pick(
        c: &[Candidate<'_>],
        in_use: Option<&str>,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<usize> {
        choose_issuer(c, in_use, since, now, 24 * H)
    }

    #[test]
    fn primary_while_it_is_ready_and_not_failing_long() {
        let c = issuers(&[("CaaSIssuer/a", true), ("CaaSIssuer/b", true)]);
        let now = t("2026-11-29T12:00:00Z");
        assert_eq!(pick(&c, None, None, now), Some(0));
        assert_eq!(
            pick(&c, Some("CaaSIssuer/a"), Some(now - 23 * H), now),
            Some(0)
        );
    }

    #[test]
    fn next_issuer_after_failing_for_fallback_after_and_stays_there() {
        let c = issuers(&[("CaaSIssuer/a", true), ("CaaSIssuer/b", true)]);
        let now = t("2026-11-29T12:00:00Z");
        assert_eq!(
            pick(&c, Some("CaaSIssuer/a"), Some(now - 24 * H), now),
            Some(1)
        );
        // On the fallback (its timer restarted): it stays, and there is none after it.
        assert_eq!(pick(&c, Some("CaaSIssuer/b"), None, now), Some(1));
        assert_eq!(
            pick(&c, Some("CaaSIssuer/b"), Some(now - 48 * H), now),
            Some(1)
        );
        // A new issuance (none in progress) starts with the primary again.
        assert_eq!(pick(&c, None, None, now), Some(0));
    }

    #[test]
    fn an_issuer_that_is_not_ready_is_skipped_at_once() {
        let c = issuers(&[
            ("CaaSIssuer/a", false),
            ("ClusterCaaSIssuer/b", false),
            ("CaaSIssuer/c", true),
        ]);
        let now = t("2026-11-29T12:00:00Z");
        assert_eq!(pick(&c, None, None, now), Some(2));
        let none = issuers(&[("CaaSIssuer/a", false)]);
        assert_eq!(pick(&none, None, None, now), None);
        // The last Ready one keeps being used after its timer; a primary that is back is
        // used when nothing after the one in use is Ready.
        let back = issuers(&[("CaaSIssuer/a", true), ("CaaSIssuer/b", false)]);
        assert_eq!(pick(&back, Some("CaaSIssuer/b"), None, now), Some(0));
        let last = issuers(&[("CaaSIssuer/a", false), ("CaaSIssuer/b", true)]);
        assert_eq!(
            pick(&last, Some("CaaSIssuer/b"), Some(now - 48 * H), now),
            Some(1)
        );
        // An issuer in use that vanished from the list: start with the primary.
        assert_eq!(pick(&c, Some("CaaSIssuer/gone"), None, now), Some(2));
    }
}
