//! [`Time`]: a point in time in status, written as RFC 3339 in UTC (`Z`), exactly as
//! `jiff::Timestamp` displays it, with the JSON schema of a plain string.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

/// A status time (`notAfter`, `renewalTime`, `lastTransitionTime`, ...).
///
/// On the wire it is the string `Timestamp`'s `Display` gives (e.g.
/// `2026-11-29T10:00:00Z`, fractional seconds only when there are some); its schema is
/// `String`'s, so the CRD is the same as when these fields were strings. Read
/// `Option<Time>` fields with [`super::lenient::option`]: a value that does not parse
/// reads as `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub Timestamp);

impl Time {
    pub fn timestamp(self) -> Timestamp {
        self.0
    }
}

impl From<Timestamp> for Time {
    fn from(t: Timestamp) -> Self {
        Time(t)
    }
}

impl From<Time> for Timestamp {
    fn from(t: Time) -> Self {
        t.0
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Time {
    type Err = jiff::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Time)
    }
}

super::lenient::string_form!(Time);

#[cfg(test)]
mod tests {
    use super::*;

    use schemars::{JsonSchema, SchemaGenerator};

    type Holder = crate::api::lenient::Holder<Time>;

    fn read(json: &str) -> Holder {
        Holder::read(json)
    }

    #[test]
    fn writes_what_timestamp_displays() {
        for t in [
            "2026-11-29T10:00:00Z",
            "2026-11-29T10:00:00.5Z",
            "2026-11-29T10:00:00.123456789Z",
        ] {
            let ts: Timestamp = t.parse().unwrap();
            let json = serde_json::to_string(&Holder {
                at: Some(ts.into()),
            })
            .unwrap();
            assert_eq!(json, format!(r#"{{"at":"{ts}"}}"#));
            assert_eq!(json, format!(r#"{{"at":"{t}"}}"#));
        }
    }

    #[test]
    fn what_is_written_reads_back_and_writes_the_same() {
        for json in [
            r#"{"at":"2026-11-29T10:00:00Z"}"#,
            r#"{"at":"2026-02-01T08:03:04.270519Z"}"#,
            r#"{}"#,
        ] {
            let h = read(json);
            assert_eq!(serde_json::to_string(&h).unwrap(), json);
        }
        assert_eq!(
            read(r#"{"at":"2026-11-29T10:00:00Z"}"#).at,
            Some(Time("2026-11-29T10:00:00Z".parse().unwrap()))
        );
    }

    #[test]
    fn a_bad_value_reads_as_none() {
        for json in [
            r#"{"at":"yesterday"}"#,
            r#"{"at":""}"#,
            r#"{"at":null}"#,
            r#"{"at":12}"#,
            r#"{"at":{"x":1}}"#,
            r#"{"at":["2026-11-29T10:00:00Z"]}"#,
        ] {
            assert_eq!(read(json), Holder::default(), "{json}");
        }
        assert!(serde_json::from_str::<Time>(r#""yesterday""#).is_err());
    }

    #[test]
    fn an_offset_reads_as_the_same_instant() {
        let h = read(r#"{"at":"2026-11-29T11:00:00+01:00"}"#);
        assert_eq!(h.at.unwrap().to_string(), "2026-11-29T10:00:00Z");
    }

    #[test]
    fn schema_is_a_string() {
        let mut g = SchemaGenerator::default();
        assert_eq!(
            Time::json_schema(&mut g),
            String::json_schema(&mut SchemaGenerator::default())
        );
        assert_eq!(
            schemars::schema_for!(Option<Time>),
            schemars::schema_for!(Option<String>)
        );
    }
}
