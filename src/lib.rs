//! caas-operator: a Kubernetes operator that obtains and renews TLS certificates from ACME
//! CAs, first of all commercial "Certificate as a Service" CAs that require External
//! Account Binding.
//!
//! * [`api`]: the custom resources (`CaaSIssuer`, `ClusterCaaSIssuer`, `Certificate`);
//! * [`plan`], [`renewal`], [`solvers::select_solver`], and the ACME order state machine
//!   ([`controllers::certificate::order`]): pure decisions, unit-tested;
//! * [`acme`], [`pki`], [`solvers`]: the CA, keys and certificates, challenge solvers;
//! * [`controllers`]: the reconcile loops that carry the decisions out;
//! * [`operator`]: wiring (watches, listeners, shutdown).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod acme;
pub mod api;
pub mod controllers;
pub mod decide;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod pki;
pub mod plugin;
pub mod shared;
pub mod solvers;
