//! caas-operator: a Kubernetes operator that obtains and renews TLS certificates from ACME
//! CAs, first of all commercial "Certificate as a Service" CAs that require External
//! Account Binding.
//!
//! Layers, each importing only those before it (README's Layout section says more):
//!
//! * [`api`]: the custom resources (`CaaSIssuer`, `ClusterCaaSIssuer`, `Certificate`),
//!   typed status values and the one [`api::Reason`] vocabulary;
//! * [`shared`]: the issuer handle, field manager, events, typed patches and the
//!   per-object memory with its injected clock;
//! * [`pki`], then [`decide`]: the Certificate's pure decisions (validation, trigger
//!   policies, renewal time, fallback, the ACME order state machine), unit-tested;
//! * [`acme`], [`solvers`], [`notify`], [`metrics`]: the CA, challenge solvers,
//!   notifications and metrics;
//! * [`controllers`]: the reconcile loops that carry the decisions out;
//! * [`operator`] (wiring: watches, leader election, listeners) and [`plugin`]
//!   (`kubectl caas`).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod acme;
pub mod api;
pub mod cloud;
pub mod controllers;
pub mod decide;
pub mod deploy;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod pki;
pub mod plugin;
pub mod shared;
pub mod solvers;
