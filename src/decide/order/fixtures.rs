//! The order-machine table's inputs: real order and authorization JSON from CAs, the
//! tokens the cases expect, and the solver choices an issuer could make.

use super::*;

// Short names keep the expected rows on one line each.
pub(super) use ChallengeState::{Pending, Processing, Valid};
pub(super) use ChallengeType::{Dns01, Http01, TlsAlpn01};

// Orders, as RFC 8555 section 7.1.3 objects from Pebble, Let's Encrypt, Sectigo, step-ca.
pub(super) const PENDING_PEBBLE: &str = include_str!("fixtures/order_pending_pebble.json");
pub(super) const PENDING_LE: &str = include_str!("fixtures/order_pending_letsencrypt.json");
pub(super) const PENDING_SECTIGO: &str = include_str!("fixtures/order_pending_sectigo.json");
pub(super) const PENDING_STEPCA: &str = include_str!("fixtures/order_pending_stepca.json");
pub(super) const READY_LE: &str = include_str!("fixtures/order_ready_letsencrypt.json");
pub(super) const PROCESSING_LE: &str = include_str!("fixtures/order_processing_letsencrypt.json");
pub(super) const VALID_LE: &str = include_str!("fixtures/order_valid_letsencrypt.json");
pub(super) const INVALID_LE: &str = include_str!("fixtures/order_invalid_letsencrypt.json");
pub(super) const INVALID_PEBBLE: &str = include_str!("fixtures/order_invalid_pebble.json");

// Their authorizations (section 7.1.4), one JSON array per fixture, in the order's order.
pub(super) const FRESH_PEBBLE: &str = include_str!("fixtures/authz_pebble_fresh.json");
pub(super) const EXPIRED_PEBBLE: &str = include_str!("fixtures/authz_pebble_expired.json");
pub(super) const CHALLENGE_INVALID_PEBBLE: &str =
    include_str!("fixtures/authz_pebble_challenge_invalid.json");
pub(super) const PREVALIDATED_SECTIGO: &str =
    include_str!("fixtures/authz_sectigo_prevalidated.json");
pub(super) const ALL_VALID_LE: &str = include_str!("fixtures/authz_letsencrypt_all_valid.json");
pub(super) const PROCESSING_AUTHZ_LE: &str =
    include_str!("fixtures/authz_letsencrypt_processing.json");
pub(super) const CHALLENGE_VALID_LE: &str =
    include_str!("fixtures/authz_letsencrypt_challenge_valid.json");
pub(super) const INVALID_AUTHZ_LE: &str = include_str!("fixtures/authz_letsencrypt_invalid.json");
pub(super) const DEACTIVATED_LE: &str = include_str!("fixtures/authz_letsencrypt_deactivated.json");
pub(super) const REVOKED_LE: &str = include_str!("fixtures/authz_letsencrypt_revoked.json");
pub(super) const NO_DNS01_STEPCA: &str = include_str!("fixtures/authz_stepca_no_dns01.json");
pub(super) const DEVICE_ATTEST_STEPCA: &str =
    include_str!("fixtures/authz_stepca_device_attest.json");
/// The driver does not fetch authorizations once the order is past `pending`.
pub(super) const NONE: &str = "[]";

pub(super) const ORDERS: &[&str] = &[
    PENDING_PEBBLE,
    PENDING_LE,
    PENDING_SECTIGO,
    PENDING_STEPCA,
    READY_LE,
    PROCESSING_LE,
    VALID_LE,
    INVALID_LE,
    INVALID_PEBBLE,
];
pub(super) const AUTHZS: &[&str] = &[
    FRESH_PEBBLE,
    EXPIRED_PEBBLE,
    CHALLENGE_INVALID_PEBBLE,
    PREVALIDATED_SECTIGO,
    ALL_VALID_LE,
    PROCESSING_AUTHZ_LE,
    CHALLENGE_VALID_LE,
    INVALID_AUTHZ_LE,
    DEACTIVATED_LE,
    REVOKED_LE,
    NO_DNS01_STEPCA,
    DEVICE_ATTEST_STEPCA,
];

// Tokens the cases expect to be chosen (PB: Pebble, SG: Sectigo, LE: Let's Encrypt).
pub(super) const PB_APEX_HTTP: &str = "_lIzfkNkc4eqSOgBg1A07EJz0VfWoMcxr-YudBFm-Ws";
pub(super) const PB_APEX_DNS: &str = "9p0ISE_kWieyytoU3o83kYRST2CqMTGdnrY5Dmc17EU";
pub(super) const PB_APEX_ALPN: &str = "EgY3atLkGoz4AfxDFUrknUYpoR7OvBiJY_6ETEOpeos";
pub(super) const PB_WILD_DNS: &str = "dl536ayZAElxq58KLuiGoxUFaHqfWhfcAEYweTgNHrs";
pub(super) const PB_WWW_ALPN: &str = "hlqP4TDYKlxXj6x512QqVlDzoH7PiL_Si1CyVMB1drc";
pub(super) const PB_WWW_HTTP: &str = "LCWgF-6fcgNQmCskGZAYBL9kCWt9c5okPPyJpbOo6hk";
pub(super) const PB_WWW_DNS: &str = "Qe0lFAVeYb2f3cCql6zMu3fHtIugO15yqI3f_6Ao0Ws";
pub(super) const SG_SHOP: &str = "3NlrcxOzU9-NGaZ4e40VOwlpdKQfsyGSuUutUYqy_Wc";
/// Let's Encrypt (Boulder) gives all challenges of an authorization one token.
pub(super) const LE_APEX: &str = "M6EasT2u_HQW7EKXtt7lcOF9-rq_hElqN5Bfsu3yMmo";
pub(super) const LE_WWW: &str = "SUaHcyWnjhy2HxdyBaBA_lp0ptu7t4Sz6sbc-Ge-8gY";
pub(super) const LE_404: &str = "93.184.215.14: Invalid response from http://example.com/.well-known/acme-challenge/M6EasT2u_HQW7EKXtt7lcOF9-rq_hElqN5Bfsu3yMmo: 404";
pub(super) const LE_CAA: &str =
    "Error finalizing order :: Rechecking CAA for \"www.example.com\" failed";

pub(super) type Policy = fn(&str) -> Result<ChallengeType, OrderFailure>;

/// http-01 for plain names, dns-01 for wildcards (which nothing else can prove).
pub(super) fn http_or_dns(name: &str) -> Result<ChallengeType, OrderFailure> {
    Ok(if name.starts_with("*.") {
        Dns01
    } else {
        Http01
    })
}

pub(super) fn alpn_or_dns(name: &str) -> Result<ChallengeType, OrderFailure> {
    Ok(if name.starts_with("*.") {
        Dns01
    } else {
        TlsAlpn01
    })
}

pub(super) fn dns_only(_: &str) -> Result<ChallengeType, OrderFailure> {
    Ok(Dns01)
}

pub(super) fn http_only(_: &str) -> Result<ChallengeType, OrderFailure> {
    Ok(Http01)
}

/// An issuer whose only solver is http-01, so a wildcard has none.
pub(super) fn no_wildcard_solver(name: &str) -> Result<ChallengeType, OrderFailure> {
    match name.starts_with("*.") {
        true => Err(OrderFailure::new(
            Reason::NoSolver,
            format!("no solver matches {name}"),
        )),
        false => Ok(Http01),
    }
}

/// For orders whose challenges are settled: the solver must not even be asked.
pub(super) fn never(name: &str) -> Result<ChallengeType, OrderFailure> {
    panic!("choose called for {name}")
}
