//! The ACME order state machine (RFC 8555 section 7.1.6), pure: from what the CA says
//! about an order and its authorizations, the next step. The certificate controller's
//! driver (`controllers::certificate::drive`) reads the CA, calls [`next_step`], and
//! carries the step out.

use serde::Deserialize;

use crate::api::{AuthorizationState, ChallengeState, ChallengeType, OrderState, Reason};

/// An ACME problem document (RFC 8555 section 6.7), the parts shown to users.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl Problem {
    /// `kind: detail`, the kind being the last part of the problem type URN.
    pub fn text(&self) -> String {
        let kind = self
            .type_
            .as_deref()
            .unwrap_or("")
            .rsplit(':')
            .next()
            .unwrap_or("");
        format!("{kind}: {}", self.detail.as_deref().unwrap_or(""))
    }
}

impl From<&instant_acme::Problem> for Problem {
    fn from(p: &instant_acme::Problem) -> Self {
        Problem {
            type_: p.r#type.clone(),
            detail: p.detail.clone(),
        }
    }
}

/// An order as the CA shows it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct OrderView {
    pub status: OrderState,
    #[serde(default)]
    pub error: Option<Problem>,
}

/// One challenge of an authorization; `type_` is `None` for types we cannot solve.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "ChallengeWire")]
pub struct ChallengeView {
    pub type_: Option<ChallengeType>,
    pub token: String,
    pub status: ChallengeState,
    pub error: Option<Problem>,
}

/// A challenge as RFC 8555 section 8 writes it.
#[derive(Deserialize)]
struct ChallengeWire {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    url: String,
    status: ChallengeState,
    #[serde(default)]
    error: Option<Problem>,
}

impl From<ChallengeWire> for ChallengeView {
    fn from(w: ChallengeWire) -> Self {
        ChallengeView {
            type_: ChallengeType::from_wire(&w.type_),
            // dns-persist-01 challenges have no token: their URL names them instead.
            token: if w.token.is_empty() { w.url } else { w.token },
            status: w.status,
            error: w.error,
        }
    }
}

/// An authorization as the CA shows it; `name` is its identifier (`*.` for wildcards).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "AuthzWire")]
pub struct AuthzView {
    pub name: String,
    pub status: AuthorizationState,
    pub challenges: Vec<ChallengeView>,
}

/// An authorization as RFC 8555 section 7.1.4 writes it.
#[derive(Deserialize)]
struct AuthzWire {
    identifier: IdentifierWire,
    status: AuthorizationState,
    #[serde(default)]
    wildcard: bool,
    #[serde(default)]
    challenges: Vec<ChallengeView>,
}

#[derive(Deserialize)]
struct IdentifierWire {
    value: String,
}

impl From<AuthzWire> for AuthzView {
    fn from(w: AuthzWire) -> Self {
        let name = match w.wildcard {
            true => format!("*.{}", w.identifier.value),
            false => w.identifier.value,
        };
        AuthzView {
            name,
            status: w.status,
            challenges: w.challenges,
        }
    }
}

impl From<&instant_acme::AuthorizationState> for AuthzView {
    fn from(a: &instant_acme::AuthorizationState) -> Self {
        AuthzView {
            name: a.identifier().to_string(),
            status: a.status.into(),
            challenges: a
                .challenges
                .iter()
                .map(|c| ChallengeView {
                    type_: ChallengeType::from_acme(&c.r#type),
                    // dns-persist-01 challenges have no token: their URL names them.
                    token: match c.token.is_empty() {
                        true => c.url.clone(),
                        false => c.token.clone(),
                    },
                    status: c.status.into(),
                    error: c.error.as_ref().map(Problem::from),
                })
                .collect(),
        }
    }
}

/// Why an order cannot go on: a reason word for status, and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderFailure {
    pub reason: Reason,
    pub message: String,
}

impl OrderFailure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        OrderFailure {
            reason,
            message: message.into(),
        }
    }
}

/// The challenge chosen for one pending authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// Index of the authorization in the list given to [`next_step`].
    pub authz: usize,
    pub name: String,
    pub type_: ChallengeType,
    pub token: String,
    pub status: ChallengeState,
}

impl Chosen {
    /// The answer must be put in place and the CA told to validate.
    pub fn to_present(&self) -> bool {
        self.status == ChallengeState::Pending
    }
}

/// What to do next with an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Authorizations are pending: these challenges prove them. Present those still
    /// `pending`; the others are being validated. Empty: the CA has everything and will
    /// move the order on (all authorizations already valid).
    Validate(Vec<Chosen>),
    /// Send the CSR.
    Finalize,
    /// The CA is issuing.
    AwaitIssuance,
    /// Fetch the certificate.
    Download,
    /// The order is dead; a new one is needed.
    Fail(OrderFailure),
}

/// The next step for `order`. `authzs` are its authorizations (needed when it is
/// `pending` or `invalid`); `choose` names the challenge type the issuer solves a name
/// with, or why none.
pub fn next_step(
    order: &OrderView,
    authzs: &[AuthzView],
    choose: &dyn Fn(&str) -> Result<ChallengeType, OrderFailure>,
) -> Step {
    match order.status {
        OrderState::Pending => match choose_challenges(authzs, choose) {
            Ok(chosen) => Step::Validate(chosen),
            Err(f) => Step::Fail(f),
        },
        OrderState::Ready => Step::Finalize,
        OrderState::Processing => Step::AwaitIssuance,
        OrderState::Valid => Step::Download,
        OrderState::Invalid => Step::Fail(OrderFailure::new(
            Reason::OrderFailed,
            invalid_message(order, authzs),
        )),
    }
}

fn choose_challenges(
    authzs: &[AuthzView],
    choose: &dyn Fn(&str) -> Result<ChallengeType, OrderFailure>,
) -> Result<Vec<Chosen>, OrderFailure> {
    let mut chosen = Vec::new();
    for (i, authz) in authzs.iter().enumerate() {
        match authz.status {
            // Proven earlier (or pre-validated by the CA, as some commercial CAs do).
            AuthorizationState::Valid => continue,
            AuthorizationState::Pending => {}
            other => {
                let errors: Vec<String> = authz
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref().map(Problem::text))
                    .collect();
                let errors = match errors.is_empty() {
                    true => String::new(),
                    false => format!(": {}", errors.join("; ")),
                };
                return Err(OrderFailure::new(
                    Reason::ChallengeFailed,
                    format!("the authorization for {} is {other}{errors}", authz.name),
                ));
            }
        }
        let type_ = choose(&authz.name)?;
        let Some(challenge) = authz.challenges.iter().find(|c| c.type_ == Some(type_)) else {
            return Err(OrderFailure::new(
                Reason::ChallengeNotOffered,
                format!("the CA does not offer {type_} for {}", authz.name),
            ));
        };
        if challenge.status == ChallengeState::Invalid {
            let error = challenge
                .error
                .as_ref()
                .map(Problem::text)
                .unwrap_or_default();
            return Err(OrderFailure::new(
                Reason::ChallengeFailed,
                format!("{type_} for {} failed: {error}", authz.name),
            ));
        }
        chosen.push(Chosen {
            authz: i,
            name: authz.name.clone(),
            type_,
            token: challenge.token.clone(),
            status: challenge.status,
        });
    }
    Ok(chosen)
}

/// The CA's reasons for an invalid order: its own error and each failed challenge's.
pub fn invalid_message(order: &OrderView, authzs: &[AuthzView]) -> String {
    let mut parts: Vec<String> = order.error.iter().map(Problem::text).collect();
    for authz in authzs {
        for ch in &authz.challenges {
            if let Some(e) = &ch.error {
                parts.push(format!("{}: {}", authz.name, e.text()));
            }
        }
    }
    if parts.is_empty() {
        "the CA marked the order invalid".into()
    } else {
        format!("the CA marked the order invalid: {}", parts.join("; "))
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
