//! [`IssuerName`]: which issuer, as status names it (`CaaSIssuer/name` or
//! `ClusterCaaSIssuer/name`), with the JSON schema of a plain string.

use std::fmt;
use std::str::FromStr;

/// Which issuer kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssuerKind {
    /// `CaaSIssuer`, in the Certificate's namespace.
    Namespaced,
    /// `ClusterCaaSIssuer`.
    Cluster,
}

impl IssuerKind {
    /// The resource kind: `CaaSIssuer` or `ClusterCaaSIssuer`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Namespaced => "CaaSIssuer",
            IssuerKind::Cluster => "ClusterCaaSIssuer",
        }
    }

    /// The kind named `kind` (as in `issuerRef.kind`), if it is one.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "CaaSIssuer" => Some(IssuerKind::Namespaced),
            "ClusterCaaSIssuer" => Some(IssuerKind::Cluster),
            _ => None,
        }
    }
}

impl fmt::Display for IssuerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An issuer, by kind and name: `status.issuedBy`, `status.issuingWith`,
/// `status.order.issuer`.
///
/// On the wire and in `Display` it is `Kind/name`, as it was when these fields were
/// strings (and as in the Secret's `caas.dev/issuer` annotation). Read `Option` fields
/// with [`super::lenient::option`]: a value that does not parse reads as `None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IssuerName {
    pub kind: IssuerKind,
    pub name: String,
}

impl IssuerName {
    pub fn new(kind: IssuerKind, name: impl Into<String>) -> Self {
        IssuerName {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for IssuerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Why a string is not an [`IssuerName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an issuer name (CaaSIssuer/name or ClusterCaaSIssuer/name)")]
pub struct ParseIssuerNameError;

impl FromStr for IssuerName {
    type Err = ParseIssuerNameError;

    /// `CaaSIssuer/name` or `ClusterCaaSIssuer/name`, the name non-empty and without `/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once('/').ok_or(ParseIssuerNameError)?;
        let kind = IssuerKind::from_kind(kind).ok_or(ParseIssuerNameError)?;
        if name.is_empty() || name.contains('/') {
            return Err(ParseIssuerNameError);
        }
        Ok(IssuerName::new(kind, name))
    }
}

super::lenient::string_form!(IssuerName);

#[cfg(test)]
mod tests {
    use super::*;

    type Holder = crate::api::lenient::Holder<IssuerName>;

    fn read(json: &str) -> Holder {
        Holder::read(json)
    }

    #[test]
    fn what_is_written_reads_back_and_writes_the_same() {
        for (json, kind, name) in [
            (r#"{"at":"CaaSIssuer/ca"}"#, IssuerKind::Namespaced, "ca"),
            (
                r#"{"at":"ClusterCaaSIssuer/lets-encrypt.prod"}"#,
                IssuerKind::Cluster,
                "lets-encrypt.prod",
            ),
        ] {
            let h = read(json);
            assert_eq!(h.at, Some(IssuerName::new(kind, name)));
            assert_eq!(serde_json::to_string(&h).unwrap(), json);
        }
        assert_eq!(serde_json::to_string(&read("{}")).unwrap(), "{}");
    }

    #[test]
    fn display_is_the_wire_form() {
        let n = IssuerName::new(IssuerKind::Cluster, "x");
        assert_eq!(n.to_string(), "ClusterCaaSIssuer/x");
        assert_eq!("ClusterCaaSIssuer/x".parse::<IssuerName>(), Ok(n));
    }

    #[test]
    fn a_bad_value_reads_as_none() {
        for json in [
            r#"{"at":"ca"}"#,
            r#"{"at":"Issuer/ca"}"#,
            r#"{"at":"caasissuer/ca"}"#,
            r#"{"at":"CaaSIssuer/"}"#,
            r#"{"at":"CaaSIssuer/a/b"}"#,
            r#"{"at":""}"#,
            r#"{"at":null}"#,
            r#"{"at":7}"#,
        ] {
            assert_eq!(read(json), Holder::default(), "{json}");
        }
        assert!(serde_json::from_str::<IssuerName>(r#""ca""#).is_err());
    }

    #[test]
    fn schema_is_a_string() {
        assert_eq!(
            schemars::schema_for!(Option<IssuerName>),
            schemars::schema_for!(Option<String>)
        );
    }
}
