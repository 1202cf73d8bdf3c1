//! A reconcile harness for the Certificate controller, in the spirit of kube-rs's
//! controller-rs: the real [`super::reconcile`] against a fake Kubernetes API
//! ([`fake_api`]) and a fake ACME CA ([`fake_acme`]), both in process, with the
//! controllers' clock ([`crate::shared::memory::Clock`]) in the test's hands. No
//! kube-apiserver, Pebble or DNS server: `cargo test --lib harness` runs in seconds.
//!
//! The [`Context`] is built in one place, [`context`]: when its constructor or the
//! settings change, only that function changes.
//!
//! A test makes a [`Harness`] (its own fake API, CA and namespace), seeds objects as
//! the user and the issuer controller would have left them ([`Harness::ready_issuer`],
//! [`Harness::certificate`], [`fake_api::FakeApi::seed`]), then calls
//! [`Harness::reconcile`] or [`Harness::settle`] (reconcile until nothing is due within
//! [`SETTLED`], moving the clock past each short requeue instead of sleeping) and
//! asserts on the stored objects, the API requests ([`fake_api::FakeApi::writes`]) and
//! the CA's counters ([`fake_acme::FakeCa::count`]). [`Harness::restart`] gives the
//! same cluster and CA to a freshly started operator.
//!
//! The injected clock drives both the operator's monotonic time (what
//! [`crate::shared::memory::Memory`] keeps: poll waits, ARI checks, pauses) and its
//! wall time (status times, backoffs, renewal requeues); it starts at the real time, so
//! the fake CA (which signs with the real clock) and the operator agree until a test
//! moves the clock.

pub mod fake_acme;
pub mod fake_api;
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;

use crate::acme::AccountKey;
use crate::api::certificate::IssuerRef;
use crate::api::issuer::{IssuerStatus, SecretRef, SolverConfig, TlsAlpn01Solver};
use crate::api::{
    COMPONENT_LABEL, CaaSIssuer, Certificate, CertificateSpec, Condition, IssuerSpec,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::controllers::{Context, Stores};
use crate::shared::memory::{Clock, Memory};
use crate::shared::settings::Settings;
use crate::shared::settings::SolverEndpoint;
use crate::solvers::index::ChallengeIndex;
use fake_acme::FakeCa;
use fake_api::{FakeApi, FakeStores};

/// A clock (monotonic and wall) that moves only when told.
pub struct TestClock {
    start: Instant,
    wall: Timestamp,
    offset: Mutex<Duration>,
}

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock {
            start: Instant::now(),
            wall: Timestamp::now(),
            offset: Mutex::default(),
        })
    }

    pub fn advance(&self, by: Duration) {
        *self.offset.lock().expect("clock lock") += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().expect("clock lock")
    }

    fn wall(&self) -> Timestamp {
        self.wall + *self.offset.lock().expect("clock lock")
    }
}

/// The operator's settings in tests.
pub fn settings() -> Settings {
    Settings {
        cluster_resource_namespace: "caas-system".into(),
        solvers: crate::shared::settings::SolverSettings {
            solver_endpoint: SolverEndpoint {
                ip: None,
                port: 8089,
            },
            dns01_resolvers: Default::default(),
            ambient_credentials: Default::default(),
        },
        restart_on_renew: false,
        expiring_within: Duration::from_secs(7 * 24 * 3600),
        default_notify: None,
        accept_cert_manager_annotations: false,
    }
}

/// The one place the harness builds a [`Context`]: a fresh one is what a (re)started
/// operator has (empty memory and account cache), on the given API and watch caches.
pub fn context(client: kube::Client, stores: &FakeStores, clock: Arc<TestClock>) -> Arc<Context> {
    let metrics = crate::metrics::Metrics::new(stores.certificates.clone(), Default::default());
    Arc::new(Context::new(
        client.clone(),
        settings(),
        stores.certificates.clone(),
        Arc::new(ChallengeIndex::default()),
        Stores::new(
            client,
            stores.issuers.clone(),
            stores.cluster_issuers.clone(),
            stores.secrets.clone(),
        ),
        Arc::new(Memory::new(clock)),
        metrics,
    ))
}

/// When the reconcile asked to run again (`None`: only on a change).
pub fn requeue_after(action: &Action) -> Option<Duration> {
    // `Action` keeps its delay private; its Debug form is `Action { requeue_after:
    // Some(1.5s) }`, the delay in `Duration`'s Debug form.
    let text = format!("{action:?}");
    let inner = text.split_once("Some(")?.1.split_once(')')?.0;
    let split = inner
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(inner.len());
    let (number, unit) = inner.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => panic!("unexpected Duration form {inner:?}"),
    };
    Some(Duration::from_secs_f64(seconds))
}

/// A requeue this long or longer (or none) means the reconcile has settled: nothing is
/// in progress that it would come back for soon.
pub const SETTLED: Duration = Duration::from_secs(60);

/// One namespace of objects, the fake API and CA, and the operator's context.
pub struct Harness {
    pub ns: String,
    pub api: FakeApi,
    pub stores: FakeStores,
    pub ca: FakeCa,
    pub clock: Arc<TestClock>,
    pub ctx: Arc<Context>,
}

impl Harness {
    pub async fn new(ns: &str) -> Harness {
        let (api, stores) = FakeApi::new();
        let clock = TestClock::new();
        let ctx = context(api.client(), &stores, clock.clone());
        Harness {
            ns: ns.to_string(),
            api,
            stores,
            ca: FakeCa::start().await,
            clock,
            ctx,
        }
    }

    /// The operator restarts: a new context (nothing remembered, no account cached) on
    /// the same API server and CA.
    pub fn restart(&mut self) {
        self.ctx = context(self.api.client(), &self.stores, self.clock.clone());
    }

    /// Issuer `name` as the issuer controller leaves it when it works: its account
    /// registered at the CA, the key in a managed Secret, `Ready=True` with the
    /// account's URI; it solves with TLS-ALPN-01 (the operator's own listener: nothing
    /// to write to the API).
    pub fn ready_issuer(&self, name: &str) -> CaaSIssuer {
        let tls_alpn01 = SolverConfig {
            tls_alpn01: Some(TlsAlpn01Solver {}),
            ..Default::default()
        };
        self.ready_issuer_with(name, vec![tls_alpn01])
    }

    /// [`Harness::ready_issuer`] with these solvers.
    pub fn ready_issuer_with(&self, name: &str, solvers: Vec<SolverConfig>) -> CaaSIssuer {
        let key = AccountKey::generate().expect("an account key");
        let kid = self.ca.register(&key);
        let secret_name = format!("{name}-account-key");
        self.api.seed(&Secret {
            metadata: ObjectMeta {
                name: Some(secret_name.clone()),
                namespace: Some(self.ns.clone()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                    (COMPONENT_LABEL.to_string(), "account-key".to_string()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "tls.key".to_string(),
                ByteString(key.to_pem().into_bytes()),
            )])),
            ..Default::default()
        });
        let ready = Condition::new("Ready", true, "AccountRegistered", "the account is ready");
        let mut issuer = self.issuer(name, &secret_name, ready, Some(kid));
        issuer.spec.solvers = solvers;
        self.api.seed(&issuer)
    }

    /// Issuer `name` (solving with TLS-ALPN-01) with the given `Ready` condition, not
    /// stored yet.
    fn issuer(
        &self,
        name: &str,
        secret_name: &str,
        ready: Condition,
        account_uri: Option<String>,
    ) -> CaaSIssuer {
        let mut issuer = CaaSIssuer::new(
            name,
            IssuerSpec {
                server: self.ca.directory_url(),
                ca_bundle: Some(self.ca.ca_bundle()),
                private_key_secret_ref: SecretRef {
                    name: secret_name.to_string(),
                },
                solvers: vec![SolverConfig {
                    tls_alpn01: Some(TlsAlpn01Solver {}),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        issuer.metadata.namespace = Some(self.ns.clone());
        issuer.status = Some(IssuerStatus {
            conditions: vec![ready],
            account_uri,
            ..IssuerStatus::default()
        });
        issuer
    }

    /// A Certificate spec for `dns_names` from issuer `issuer`, into Secret
    /// `<name>-tls`.
    pub fn spec(name: &str, issuer: &str, dns_names: &[&str]) -> CertificateSpec {
        CertificateSpec {
            secret_name: format!("{name}-tls"),
            issuer_ref: IssuerRef {
                name: issuer.to_string(),
                kind: None,
            },
            dns_names: dns_names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Creates Certificate `name` (as a user would).
    pub fn certificate(&self, name: &str, spec: CertificateSpec) -> Certificate {
        let mut cert = Certificate::new(name, spec);
        cert.metadata.namespace = Some(self.ns.clone());
        self.api.seed(&cert)
    }

    /// Certificate `name` as the API server has it now.
    pub fn cert(&self, name: &str) -> Certificate {
        self.api
            .get(&self.ns, name)
            .unwrap_or_else(|| panic!("Certificate {name} exists"))
    }

    /// Secret `name`, if the API server has it.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.api.get(&self.ns, name)
    }

    /// One reconcile of Certificate `name`, given the object as the watch would.
    pub async fn reconcile(&self, name: &str) -> Action {
        let cert = Arc::new(self.cert(name));
        super::reconcile(cert, self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile of {name} failed: {e}"))
    }

    /// Reconciles `name` until it settles (no requeue within [`SETTLED`]), moving the
    /// clock on by each short requeue: the actions, in order.
    pub async fn settle(&self, name: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..10 {
            let action = self.reconcile(name).await;
            let wait = requeue_after(&action);
            actions.push(action);
            match wait {
                Some(w) if w < SETTLED => self.clock.advance(w),
                _ => return actions,
            }
        }
        panic!("{name} did not settle in 10 passes: {actions:?}");
    }
}
