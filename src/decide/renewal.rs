//! When to renew: a pure function of the certificate's lifetime, the spec, and a random
//! draw (so that certificates issued together do not all renew in the same minute).

use jiff::{SignedDuration, Timestamp};

/// Default: renew 30 days before expiry...
pub const DEFAULT_RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// ...and never wait more than this long for the jitter.
pub const MAX_JITTER: SignedDuration = SignedDuration::from_hours(12);

/// Parses a duration as users write them: Go style (`2160h`, `1h30m`, `720h0m0s`), or
/// jiff's friendly (`90 days`, `2h 30m`) and ISO 8601 (`PT2H`) forms.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let t = text.trim();
    // Parsed as a span so that days count (as 24 hours), then made an exact duration.
    let parsed = t
        .parse::<jiff::Span>()
        .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()));
    match parsed {
        Ok(d) if d.is_positive() => Ok(d),
        Ok(_) => Err(format!("duration {text:?} must be positive")),
        Err(_) => Err(format!(
            "duration {text:?} is not valid: write it like 2160h, 1h30m or 90d"
        )),
    }
}

/// How long before expiry to renew.
///
/// * `renewBeforePercentage` p: when p% of the lifetime is left;
/// * `renewBefore`: that long before expiry, but never more than two thirds of the
///   lifetime (a `renewBefore` longer than the certificate would renew in a loop);
/// * neither: 30 days, or a third of the lifetime for certificates shorter than 90 days.
pub fn renew_before(
    lifetime: SignedDuration,
    renew_before: Option<SignedDuration>,
    percentage: Option<u8>,
) -> SignedDuration {
    let third = lifetime / 3;
    match (percentage, renew_before) {
        (Some(p), _) if (1..100).contains(&p) => lifetime * i32::from(p) / 100,
        (_, Some(rb)) if rb < lifetime * 2 / 3 => rb,
        (_, Some(_)) => lifetime * 2 / 3,
        _ => DEFAULT_RENEW_BEFORE.min(third),
    }
}

/// The moment to renew: `renew_before` before expiry, moved earlier by
/// `jitter` (a random draw in [0, 1)) times a tenth of `renew_before`, capped at
/// [`MAX_JITTER`]. Never before `not_before`.
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    before: SignedDuration,
    jitter: f64,
) -> Timestamp {
    let spread = (before / 10).min(MAX_JITTER);
    let jitter = spread.mul_f64(jitter.clamp(0.0, 1.0));
    let at = not_after
        .checked_sub(before)
        .and_then(|t| t.checked_sub(jitter))
        .unwrap_or(not_before);
    at.max(not_before)
}

/// The renewal time inside a CA's suggested window (ARI, RFC 9773): `current` while the
/// window holds it (so it does not move on every check), otherwise a uniformly random
/// point (`jitter` in [0, 1)) inside the window; never later than the window's end, and
/// `now` when the window has already passed.
pub fn ari_renewal_time(
    start: Timestamp,
    end: Timestamp,
    current: Timestamp,
    now: Timestamp,
    jitter: f64,
) -> Timestamp {
    if end <= now {
        return now;
    }
    if (start..=end).contains(&current) {
        return current;
    }
    let width = end.duration_since(start).max(SignedDuration::ZERO);
    let at = start
        .checked_add(width.mul_f64(jitter.clamp(0.0, 1.0)))
        .unwrap_or(start);
    at.max(now).min(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const DAY: SignedDuration = SignedDuration::from_hours(24);

    #[test]
    fn parses_go_and_friendly_durations() {
        assert_eq!(parse_duration("2160h").unwrap(), DAY * 90);
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(parse_duration("720h0m0s").unwrap(), DAY * 30);
        assert_eq!(parse_duration("90d").unwrap(), DAY * 90);
        assert!(parse_duration("soon").unwrap_err().contains("2160h"));
        assert!(parse_duration("-1h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn default_is_30_days_or_a_third() {
        assert_eq!(renew_before(DAY * 90, None, None), DAY * 30);
        assert_eq!(renew_before(DAY * 365, None, None), DAY * 30);
        assert_eq!(renew_before(DAY * 6, None, None), DAY * 2);
        assert_eq!(
            renew_before(SignedDuration::from_hours(3), None, None),
            SignedDuration::from_hours(1)
        );
    }

    #[test]
    fn explicit_and_percentage() {
        assert_eq!(renew_before(DAY * 90, Some(DAY * 10), None), DAY * 10);
        // Longer than the certificate: capped at two thirds.
        assert_eq!(renew_before(DAY * 30, Some(DAY * 60), None), DAY * 20);
        assert_eq!(renew_before(DAY * 100, None, Some(25)), DAY * 25);
        assert_eq!(renew_before(DAY * 100, Some(DAY), Some(50)), DAY * 50);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-04-01T00:00:00Z");
        let rb = DAY * 30;
        let latest = renewal_time(nb, na, rb, 0.0);
        assert_eq!(latest, ts("2026-03-02T00:00:00Z"));
        let earliest = renewal_time(nb, na, rb, 0.999_999);
        assert!(earliest < latest && earliest >= latest - MAX_JITTER);
        // Short certificates: spread is a tenth of renew_before.
        let short = renewal_time(
            nb,
            nb + SignedDuration::from_hours(3),
            SignedDuration::from_hours(1),
            0.5,
        );
        assert_eq!(
            short,
            nb + SignedDuration::from_hours(2) - SignedDuration::from_mins(3)
        );
        // Never before notBefore.
        assert_eq!(renewal_time(nb, nb + DAY, DAY * 2, 0.5), nb);
    }

    #[test]
    fn ari_window() {
        let s = ts("2026-03-01T00:00:00Z");
        let e = ts("2026-03-03T00:00:00Z");
        let now = ts("2026-02-01T00:00:00Z");
        let outside = ts("2026-03-20T00:00:00Z");
        assert_eq!(
            ari_renewal_time(s, e, outside, now, 0.5),
            ts("2026-03-02T00:00:00Z")
        );
        assert_eq!(ari_renewal_time(s, e, outside, now, 0.0), s);
        let inside = ts("2026-03-01T12:00:00Z");
        assert_eq!(
            ari_renewal_time(s, e, inside, now, 0.9),
            inside,
            "kept while the window holds it"
        );
        // A window that has started: not before now; one that has passed: now.
        let later = ts("2026-03-02T12:00:00Z");
        assert_eq!(ari_renewal_time(s, e, outside, later, 0.1), later);
        assert_eq!(
            ari_renewal_time(s, e, outside, ts("2026-04-01T00:00:00Z"), 0.5),
            ts("2026-04-01T00:00:00Z")
        );
    }

    #[test]
    fn thousand_certificates_spread_over_an_hour() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = nb + DAY * 90;
        let times: Vec<Timestamp> = (0..1000)
            .map(|i| {
                renewal_time(
                    nb,
                    na,
                    renew_before(DAY * 90, None, None),
                    i as f64 / 1000.0,
                )
            })
            .collect();
        let min = times.iter().min().unwrap();
        let max = times.iter().max().unwrap();
        assert!(max.duration_since(*min) >= SignedDuration::from_hours(1));
    }
}
