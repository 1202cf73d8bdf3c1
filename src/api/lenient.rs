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

/// Implements `Serialize` (its `Display`), `Deserialize` (its `FromStr`, strictly: a
/// status field reads leniently through [`option`] instead) and `JsonSchema` (a
/// `String`'s, so the CRD stays as it was) for a type whose wire form is a string.
macro_rules! string_form {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $type {
            fn inline_schema() -> bool {
                String::inline_schema()
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                String::schema_name()
            }

            fn schema_id() -> std::borrow::Cow<'static, str> {
                String::schema_id()
            }

            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                String::json_schema(generator)
            }
        }
    };
}

pub(crate) use string_form;

/// For tests of a string-form status value: a status with one such field, `at`, read
/// leniently as status fields are.
#[cfg(test)]
#[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(bound(deserialize = "T: FromStr", serialize = "T: serde::Serialize"))]
pub struct Holder<T> {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "option"
    )]
    pub at: Option<T>,
}

#[cfg(test)]
impl<T> Default for Holder<T> {
    fn default() -> Self {
        Holder { at: None }
    }
}

#[cfg(test)]
impl<T: FromStr> Holder<T> {
    pub fn read(json: &str) -> Self {
        serde_json::from_str(json).unwrap()
    }
}
