//! Status conditions, the Kubernetes way (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`), and the pure functions that set them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
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
    now: &str,
    generation: Option<i64>,
) {
    new.observed_generation = generation;
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                Some(now.to_string())
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Some(now.to_string());
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

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut conds = Vec::new();
        set_condition(
            &mut conds,
            Condition::new("Ready", false, "Pending", "a"),
            "t1",
            Some(1),
        );
        set_condition(
            &mut conds,
            Condition::new("Ready", false, "Other", "b"),
            "t2",
            Some(2),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(conds[0].reason, "Other");
        set_condition(
            &mut conds,
            Condition::new("Ready", true, "Issued", "c"),
            "t3",
            Some(2),
        );
        assert_eq!(conds[0].last_transition_time.as_deref(), Some("t3"));
        assert!(conds[0].is_true());
        set_condition(
            &mut conds,
            Condition::new("Issuing", true, "X", ""),
            "t4",
            None,
        );
        assert_eq!(conds.len(), 2);
        assert_eq!(find(&conds, "Issuing").unwrap().reason, "X");
    }
}
