//! Lenient reading of typed status values: a value that does not parse (hand-edited, or
//! written by something else) reads as unset instead of failing the whole object (which
//! would break the watch of every object of its kind).

use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// For `#[serde(default, deserialize_with = "...")]` on an `Option<T>` field whose wire
/// form is a string: `None` for null, a value of another JSON type, or a string `T`
/// does not parse. Logs (at debug) that a value was ignored, never the value.
pub fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    let parsed = match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) => s.parse::<T>().ok(),
        Some(_) => None,
    };
    if parsed.is_none() {
        tracing::debug!(
            expected = short_type_name::<T>(),
            "a status value does not parse; read as unset"
        );
    }
    Ok(parsed)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}
