//! The last Events about an object, for the status reports.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::plugin::report::or_dash;

/// One Event as a status report shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventReport {
    pub note: Option<String>,
    pub reason: Option<String>,
    pub time: String,
    #[serde(rename = "type")]
    pub type_: Option<String>,
}

/// When an Event last happened (series, event time, or the deprecated timestamp).
fn at(e: &Event) -> String {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The last events about an object (newest last), at most `n`; none when they cannot
/// be listed.
pub async fn recent(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
    n: usize,
) -> Vec<EventReport> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("regarding.kind={kind},regarding.name={name}"));
    match api.list(&lp).await {
        Ok(l) => last(l.items, n),
        Err(_) => Vec::new(),
    }
}

/// The last `n` of `items` by time, oldest first.
fn last(mut items: Vec<Event>, n: usize) -> Vec<EventReport> {
    items.sort_by_key(at);
    let skip = items.len().saturating_sub(n);
    items
        .iter()
        .skip(skip)
        .map(|e| EventReport {
            note: e.note.clone(),
            reason: e.reason.clone(),
            time: at(e),
            type_: e.type_.clone(),
        })
        .collect()
}

/// The `Events:` block of a status text (nothing without events).
pub fn render(out: &mut String, events: &[EventReport]) {
    if events.is_empty() {
        return;
    }
    out.push_str("  Events:\n");
    for e in events {
        out.push_str(&format!(
            "    {} {:<7} {:<22} {}\n",
            e.time,
            or_dash(e.type_.as_deref()),
            or_dash(e.reason.as_deref()),
            or_dash(e.note.as_deref())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(time: &str, reason: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": reason },
            "eventTime": time,
            "reason": reason,
            "type": "Normal",
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_events_are_kept_oldest_first() {
        let items = vec![
            event("2026-01-01T00:00:03.000000Z", "c"),
            event("2026-01-01T00:00:01.000000Z", "a"),
            event("2026-01-01T00:00:02.000000Z", "b"),
        ];
        let kept = last(items, 2);
        let reasons: Vec<_> = kept.iter().map(|e| e.reason.as_deref()).collect();
        assert_eq!(reasons, vec![Some("b"), Some("c")]);
        let value = crate::plugin::report::as_printed(&kept[0]);
        assert_eq!(value["note"], serde_json::Value::Null);
        assert_eq!(value["type"], "Normal");
        let mut out = String::new();
        render(&mut out, &kept);
        assert!(out.starts_with("  Events:\n    2026-01-01"), "{out}");
        assert!(out.contains("Normal  b "), "{out}");
        assert!(out.ends_with(" -\n"), "{out}");
        let mut none = String::new();
        render(&mut none, &[]);
        assert_eq!(none, "");
    }
}
