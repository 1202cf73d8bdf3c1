//! What every verb's report shares: the output formats, printing a report, its exit code,
//! and the small text helpers the renderings use. A leaf: it imports nothing from the
//! rest of the plugin.
//!
//! Reports are `#[derive(Serialize)]` structs; `-o json|yaml` prints them through a
//! `serde_json::Value`, whose keys sort (serde_json without `preserve_order`, as the
//! untyped reports did; a test checks the printed order).

use clap::ValueEnum;
use serde::Serialize;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[default]
    Text,
    Json,
    Yaml,
}

/// A verb's report: printed as text, JSON or YAML; `ready` is its exit code.
pub trait Report: Serialize {
    /// Whether the thing reported on is ready (exit code 0).
    fn ready(&self) -> bool;
}

/// The exit code of a report: 0 ready, 1 not ready.
pub fn exit_code(report: &impl Report) -> i32 {
    if report.ready() { 0 } else { 1 }
}

/// Prints `report` as asked; `text` renders it for people. JSON and YAML go through a
/// `serde_json::Value`, so keys print in sorted order whatever the struct's field order
/// (and a flattened part sorts in with the rest).
pub fn print<R: Report>(report: &R, output: Output, text: impl FnOnce(&R) -> String) {
    match output {
        Output::Text => print!("{}", text(report)),
        Output::Json => println!("{}", machine(report, output)),
        Output::Yaml => print!("{}", machine(report, output)),
    }
}

/// `report` as JSON or YAML, keys sorted.
fn machine(report: &impl Serialize, output: Output) -> String {
    let value = serde_json::to_value(report).unwrap_or_default();
    match output {
        Output::Yaml => serde_yaml::to_string(&value).unwrap_or_default(),
        _ => serde_json::to_string_pretty(&value).unwrap_or_default(),
    }
}

/// Prints `report` as asked and returns its exit code.
pub fn emit<R: Report>(report: &R, output: Output, text: impl FnOnce(&R) -> String) -> i32 {
    print(report, output, text);
    exit_code(report)
}

/// A condition as reports show it: `{message, reason, status}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionReport {
    pub message: String,
    pub reason: String,
    pub status: String,
}

impl ConditionReport {
    pub fn of(c: &crate::api::Condition) -> Self {
        ConditionReport {
            message: c.message.clone(),
            reason: c.reason.clone(),
            status: c.status.clone(),
        }
    }

    /// `True Issued: message`.
    pub fn text(&self) -> String {
        format!("{} {}: {}", self.status, self.reason, self.message)
    }
}

/// A value for text output, `-` when absent.
pub fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// One `  Label:       value` line of a text report.
pub fn line(out: &mut String, label: &str, value: impl AsRef<str>) {
    out.push_str(&format!("  {label:<13}{}\n", value.as_ref()));
}

/// `YYYY-MM-DDTHH:MM:SSZ (in 3d 4h)` / `(5m ago)`; `t` as it is when it is not a time.
pub fn when(t: &str, now: jiff::Timestamp) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => relative(t, ts, now),
        Err(_) => t.to_string(),
    }
}

/// [`when`] for a status time.
pub fn when_time(t: crate::api::Time, now: jiff::Timestamp) -> String {
    relative(&t.to_string(), t.0, now)
}

/// `shown (in 3d 4h)` / `shown (5m ago)`: `at` relative to `now`.
fn relative(shown: &str, at: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = at.duration_since(now).as_secs();
    let span = human(secs.unsigned_abs());
    if secs < 0 {
        format!("{shown} ({span} ago)")
    } else {
        format!("{shown} (in {span})")
    }
}

/// `3d 4h`, `5m`, `12s`: the two largest units.
pub fn human(secs: u64) -> String {
    let parts = [
        (secs / 86400, "d"),
        (secs % 86400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0 || first == 3)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// For tests: `report` as [`print`] prints it in JSON and YAML (keys sorted), as a
/// `Value` to compare.
#[cfg(test)]
pub fn as_printed(report: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(report).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_print_keys_sorted_whatever_the_field_order() {
        #[derive(Serialize)]
        struct Unsorted {
            zeta: u8,
            alpha: u8,
        }
        let r = Unsorted { zeta: 1, alpha: 2 };
        assert_eq!(
            machine(&r, Output::Json),
            "{\n  \"alpha\": 2,\n  \"zeta\": 1\n}"
        );
        assert_eq!(machine(&r, Output::Yaml), "alpha: 2\nzeta: 1\n");
    }

    #[derive(Serialize)]
    struct Ready(bool);

    impl Report for Ready {
        fn ready(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn times_say_how_far() {
        let now: jiff::Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        assert_eq!(
            when("2026-12-02T14:30:10Z", now),
            "2026-12-02T14:30:10Z (in 3d 4h)"
        );
        assert_eq!(
            when("2026-11-29T09:55:00Z", now),
            "2026-11-29T09:55:00Z (5m ago)"
        );
        assert_eq!(when("soon", now), "soon");
        assert_eq!(human(0), "0s");
        assert_eq!(human(3600), "1h");
        assert_eq!(exit_code(&Ready(true)), 0);
        assert_eq!(exit_code(&Ready(false)), 1);
    }

    #[test]
    fn conditions_read_as_one_line() {
        let c = ConditionReport {
            message: "done".into(),
            reason: "Issued".into(),
            status: "True".into(),
        };
        assert_eq!(c.text(), "True Issued: done");
        assert_eq!(
            as_printed(&c),
            serde_json::json!({ "status": "True", "reason": "Issued", "message": "done" })
        );
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("x")), "x");
    }
}
