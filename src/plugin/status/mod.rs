//! `kubectl caas status certificate|issuer`: one screen about a Certificate or an issuer,
//! with a verdict and the next action.

pub mod certificate;
pub mod deployments;
pub mod events;
pub mod issuer;
