//! What the steps of an issuance attempt hand back: where the order stands after a
//! pass ([`Progress`]), and a certificate just issued ([`Issued`]). A leaf: the steps
//! (drive, present, finish, effects) import it, and it imports none of them.

use std::time::Duration;

use crate::api::Reason;
use crate::pki::CertInfo;

/// Where an order stands after a pass.
pub enum Progress {
    /// Waiting on the CA or DNS: look again after the CA's `Retry-After` if it sent
    /// one, else after [`crate::decide::poll_delay`] (at least `floor`).
    Wait {
        retry_after: Option<Duration>,
        floor: Duration,
    },
    /// The chain (checked against the key and the names), its key, and what it says.
    Issued {
        chain: String,
        key_pem: String,
        info: CertInfo,
    },
}

/// A certificate just downloaded and checked.
pub struct Issued {
    pub chain: String,
    pub key_pem: String,
    pub info: CertInfo,
    /// Why it was issued: reason (`SecretMissing`, `RenewalDue`, ...) and message.
    pub cause: (Reason, String),
}
