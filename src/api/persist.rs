//! The `dnsPersist01` solver block (kept apart from `issuer.rs` for its size).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::issuer::Dns01Solver;

/// dns-persist-01: the record `_validation-persist.<domain>` TXT `"<issuer domain name>;
/// accounturi=<account URI>"` (plus `policy=wildcard` for wildcard names and
/// `persistUntil`). With a DNS provider (the `dns01` provider fields, inline) the
/// operator writes it once and never removes it; without one, the Certificate says
/// exactly what to publish (`PersistentRecordMissing`) and goes on by itself once the
/// record is served.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DnsPersist01Solver {
    /// The CA's issuer domain name to name in the record (default: the first of the
    /// challenge's `issuer-domain-names`, e.g. `letsencrypt.org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_domain_name: Option<String>,
    /// Until when the record authorizes the account (RFC 3339; default: for ever). A
    /// record that nears it is reported before validations start failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_until: Option<super::Time>,
    /// Optional: a DNS provider to write the record through (once).
    #[serde(flatten)]
    pub provider: Dns01Solver,
}
