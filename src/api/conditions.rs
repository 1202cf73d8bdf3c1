//! Status conditions, the Kubernetes way (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`), and the pure functions that set them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::time::Time;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` or `Issuing`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word a program can match (e.g. `EABRejected`).
    pub reason: String,
    /// What happened and what to do, for humans.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time the status last changed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::lenient::option"
    )]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Puts `new` into `conditions`, replacing the one of the same type. The transition time
/// is kept when the status did not change (so a status patch with the same conditions is
/// a no-op), and set to `now` when it did.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    mut new: Condition,
    now: jiff::Timestamp,
    generation: Option<i64>,
) {
    new.observed_generation = generation;
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time
            } else {
                Some(Time(now))
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Some(Time(now));
            conditions.push(new);
        }
    }
}

/// The condition of the given type, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + n).unwrap()
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            Condition::new("Ready", false, "Pending", "a"),
            t(1),
            Some(1),
        );
        set_condition(
            &mut conds,
            Condition::new("Ready", false, "Other", "b"),
            t(2),
            Some(2),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, Some(Time(t(1))));
        assert_eq!(conds[0].reason, "Other");
        set_condition(
            &mut conds,
            Condition::new("Ready", true, "Issued", "c"),
            t(3),
            Some(2),
        );
        assert_eq!(conds[0].last_transition_time, Some(Time(t(3))));
        assert!(conds[0].is_true());
        set_condition(
            &mut conds,
            Condition::new("Issuing", true, "X", ""),
            t(4),
            None,
        );
        assert_eq!(conds.len(), 2);
        assert_eq!(find(&conds, "Issuing").unwrap().reason, "X");
    }

    #[test]
    fn transition_time_round_trips_and_a_bad_one_reads_as_none() {
        let json = r#"{"type":"Ready","status":"True","reason":"Issued","message":"m","lastTransitionTime":"2026-11-29T10:00:00Z","observedGeneration":2}"#;
        let c: Condition = serde_json::from_str(json).unwrap();
        assert_eq!(
            c.last_transition_time,
            Some(Time("2026-11-29T10:00:00Z".parse().unwrap()))
        );
        assert_eq!(serde_json::to_string(&c).unwrap(), json);
        let bad = json.replace("2026-11-29T10:00:00Z", "soon");
        let c: Condition = serde_json::from_str(&bad).unwrap();
        assert_eq!(c.last_transition_time, None);
        assert_eq!(c.reason, "Issued");
    }
}
