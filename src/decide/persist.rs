//! dns-persist-01: whether a record's `persistUntil` is near enough to tell the user.
//!
//! After `persistUntil` the CA no longer accepts the record, so every validation (and
//! with it every renewal) fails until a new record is published. The user is told while
//! there is time to act: `within` before it (the operator's `--expiring-within`), and in
//! any case before the next renewal that would need the record.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The record(s) nearing their end: the soonest `persistUntil` and the names with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistNear {
    pub until: Timestamp,
    pub names: Vec<String>,
}

/// The soonest `persistUntil` among `untils` (a name and its solver's `persistUntil`)
/// when it falls before `now + within` or before `renewal_time` (the next validation).
pub fn persist_until_near(
    untils: &[(String, Timestamp)],
    now: Timestamp,
    renewal_time: Timestamp,
    within: Duration,
) -> Option<PersistNear> {
    let until = untils.iter().map(|(_, t)| *t).min()?;
    let within = SignedDuration::try_from(within).unwrap_or(SignedDuration::MAX);
    let horizon = now.saturating_add(within).ok()?.max(renewal_time);
    if until > horizon {
        return None;
    }
    let names = (untils.iter())
        .filter(|(_, t)| *t == until)
        .map(|(n, _)| n.clone())
        .collect();
    Some(PersistNear { until, names })
}

/// What the `PersistentRecordExpiring` condition says: stable while nothing changes
/// (one event and notification per value), and once more when the time has passed.
pub fn persist_until_message(near: &PersistNear, now: Timestamp) -> String {
    let names = near.names.join(", ");
    let until = near.until;
    let fix = "publish the record again with a later persistUntil (or none) and set the \
               issuer's dnsPersist01.persistUntil to match";
    match until > now {
        true => format!(
            "the dns-persist-01 record for {names} allows this account until {until} \
             (persistUntil); validations after then fail: {fix}"
        ),
        false => format!(
            "the dns-persist-01 record for {names} allowed this account until {until} \
             (persistUntil): validations fail now: {fix}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn near_within_the_warning_window_or_before_the_next_renewal() {
        let now = at("2027-01-01T00:00:00Z");
        let renewal = at("2027-02-01T00:00:00Z");
        let far = vec![("a.example".to_string(), at("2027-06-01T00:00:00Z"))];
        assert_eq!(persist_until_near(&far, now, renewal, 7 * DAY), None);
        assert_eq!(persist_until_near(&[], now, renewal, 7 * DAY), None);
        // Before the next renewal, though weeks away: that renewal would fail.
        let before_renewal = vec![("a.example".to_string(), at("2027-01-20T00:00:00Z"))];
        let near = persist_until_near(&before_renewal, now, renewal, 7 * DAY).unwrap();
        assert_eq!(near.until, at("2027-01-20T00:00:00Z"));
        // Within the window though the renewal is sooner.
        let soon = at("2027-01-01T12:00:00Z");
        let week = vec![("a.example".to_string(), at("2027-01-05T00:00:00Z"))];
        assert!(persist_until_near(&week, now, soon, 7 * DAY).is_some());
        assert!(persist_until_near(&week, now, soon, DAY).is_none());
    }

    #[test]
    fn the_soonest_record_is_named_with_every_name_that_shares_it() {
        let now = at("2027-01-01T00:00:00Z");
        let untils = vec![
            ("a.example".to_string(), at("2027-01-03T00:00:00Z")),
            ("*.a.example".to_string(), at("2027-01-03T00:00:00Z")),
            ("b.example".to_string(), at("2027-03-01T00:00:00Z")),
        ];
        let near = persist_until_near(&untils, now, now, 7 * DAY).unwrap();
        assert_eq!(near.names, ["a.example", "*.a.example"]);
        let message = persist_until_message(&near, now);
        assert!(
            message.starts_with(
                "the dns-persist-01 record for a.example, *.a.example allows this account until 2027-01-03T00:00:00Z"
            ),
            "{message}"
        );
        assert_eq!(
            message,
            persist_until_message(&near, at("2027-01-02T00:00:00Z")),
            "stable"
        );
        let past = persist_until_message(&near, at("2027-01-04T00:00:00Z"));
        assert!(past.contains("validations fail now"), "{past}");
    }

    #[test]
    fn an_unbounded_window_still_answers() {
        let now = at("2027-01-01T00:00:00Z");
        let untils = vec![("a.example".to_string(), at("2099-01-01T00:00:00Z"))];
        assert!(persist_until_near(&untils, now, now, Duration::MAX).is_some());
    }
}
