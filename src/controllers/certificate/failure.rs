//! Why an issuance attempt stopped: the error of the order-driving steps, with the reason
//! word status shows, and what it means for the order.

use super::status::Reason;
use crate::acme::AcmeError;
use crate::controllers::AccountError;
use crate::decide::order;
use crate::solvers::SolverError;

/// Which step of an issuance failed (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedStep {
    Account,
    Order,
    Present,
    Keys,
    Download,
}

impl std::fmt::Display for FailedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailedStep::Account => "account",
            FailedStep::Order => "drive order",
            FailedStep::Present => "present challenges",
            FailedStep::Keys => "keys",
            FailedStep::Download => "download",
        })
    }
}

/// An issuance attempt that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason}: {message}", reason = reason.as_str())]
pub struct Failure {
    pub step: FailedStep,
    pub reason: Reason,
    pub message: String,
    /// The order is dead: the next attempt starts a new one.
    pub abandon_order: bool,
    /// Retry at once, without counting a failure (a rejected nonce).
    pub transient: bool,
    /// The CA answered with this failure (its `Retry-After` applies).
    pub from_ca: bool,
    /// Nothing was sent: the account's new orders are paused this much longer (a rate
    /// limit another Certificate hit). Not counted as a failure.
    pub paused: Option<std::time::Duration>,
}

impl Failure {
    pub fn new(
        step: FailedStep,
        reason: Reason,
        message: impl Into<String>,
        abandon_order: bool,
    ) -> Self {
        Failure {
            step,
            reason,
            message: message.into(),
            abandon_order,
            transient: false,
            from_ca: false,
            paused: None,
        }
    }

    pub fn acme(step: FailedStep, e: AcmeError) -> Self {
        let mut f = Failure::new(step, e.reason(), e.to_string(), false);
        f.transient = e.is_transient();
        f.from_ca = true;
        f
    }

    pub fn from_acme(step: FailedStep) -> impl Fn(instant_acme::Error) -> Failure {
        move |e| Failure::acme(step, AcmeError::from_acme(e))
    }

    pub fn kube(step: FailedStep) -> impl Fn(kube::Error) -> Failure {
        move |e| Failure::new(step, Reason::KubernetesError, e.to_string(), false)
    }

    pub fn solver(e: SolverError) -> Failure {
        Failure::new(FailedStep::Present, e.reason(), e.to_string(), false)
    }

    pub fn account(e: AccountError) -> Failure {
        match e {
            AccountError::Kube(e) => Failure::kube(FailedStep::Account)(e),
            AccountError::Acme(e) => Failure::acme(FailedStep::Account, e),
        }
    }

    /// A dead order, as the state machine found it.
    pub fn order(f: order::OrderFailure) -> Failure {
        Failure::new(FailedStep::Order, f.reason, f.message, true)
    }
}
