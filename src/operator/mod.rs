//! Wiring: watches, leader election, controllers, listeners, and shutdown.
//!
//! Every replica watches Certificates (so it can answer HTTP-01 from their status) and
//! serves the solver, health and metrics listeners. Only the replica holding the Lease
//! runs the controllers; when it loses the Lease (or shuts down) they stop, and on
//! SIGTERM it releases the Lease so another replica takes over at once.
//!
//! * [`feed`]: the one Certificate watch, feeding the challenge index and the current
//!   term's certificate controller;
//! * [`election`]: the Lease, and the controllers run while it is held;
//! * [`loops`]: the controller loops of one leadership term;
//! * [`health`]: the health, readiness and metrics listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::Certificate;
use crate::metrics::Metrics;
use crate::shared::memory::Memory;
use crate::shared::settings::Settings;
use crate::shared::settings::SolverEndpoint;
use crate::shared::settings::SolverSettings;
use crate::solvers::http01;
use crate::solvers::index::ChallengeIndex;

mod deploy_loop;
mod election;
mod feed;
mod health;
mod loops;

use election::lead_while_leader;
use feed::{CertificateFeed, index_certificates};
use health::{log_listener_error, serve_health};
use loops::run_controllers;

/// How to run the operator.
#[derive(Clone, Debug)]
pub struct Options {
    pub http01_addr: SocketAddr,
    pub tls_alpn01_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    pub cluster_resource_namespace: String,
    /// The address other pods reach this replica at (the temporary HTTP-01 Endpoints).
    pub pod_ip: Option<IpAddr>,
    /// Elect a leader through a Lease in `cluster_resource_namespace`; without it this
    /// process always reconciles.
    pub leader_election: bool,
    pub lease_name: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// This replica's name in the Lease.
    pub identity: String,
    /// DNS-01 propagation checks: recursive resolvers, and whether to ask them alone.
    pub dns01_resolvers: crate::shared::settings::Resolvers,
    /// Restart `caas.dev/restart-on-renew` workloads after renewals.
    pub restart_on_renew: bool,
    /// Mark certificates this close to expiry whose renewal fails `Expiring`.
    pub expiring_within: Duration,
    /// Notifications for issuers without `spec.notify`.
    pub default_notify: Option<crate::api::issuer::Notify>,
    /// Honour `cert-manager.io/issuer` / `cluster-issuer` (and their companions).
    pub accept_cert_manager_annotations: bool,
    /// Which issuers may use the operator's own cloud identity.
    pub ambient_credentials: crate::shared::settings::AmbientCredentials,
    /// Copy Secrets into other namespaces for `secretCopies` deploy targets (watches
    /// namespaces' metadata).
    pub secret_copies: bool,
}

type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Certificates reconciled at once.
const CONCURRENCY: u16 = 32;

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` resolves. `kube_requests` counts the client's API requests.
pub async fn run(
    client: Client,
    options: Options,
    kube_requests: prometheus_client::metrics::counter::Counter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown: Shutdown = shutdown.boxed().shared();

    // Every replica: the watched Certificates, for challenge answers and metrics.
    let (store, writer) = reflector::store();
    let index = Arc::new(ChallengeIndex::default());
    let memory = Arc::new(Memory::default());
    let feed = Arc::new(CertificateFeed::default());
    let cert_watch = tokio::spawn(index_certificates(
        reflector::reflector(
            writer,
            watcher(
                api::<Certificate>(&client, &options.namespace),
                watcher::Config::default(),
            )
            .modify(|c| {
                // Nothing reads these, and `kubectl apply` puts the whole manifest
                // in the annotation again: each is kept once per Certificate.
                c.managed_fields_mut().clear();
                if let Some(a) = c.metadata.annotations.as_mut() {
                    a.remove("kubectl.kubernetes.io/last-applied-configuration");
                }
            }),
        )
        .default_backoff(),
        store.clone(),
        feed.clone(),
        index.clone(),
        memory.clone(),
    ));
    let metrics = Metrics::new(store.clone(), kube_requests);
    let shared = TermInputs {
        client: client.clone(),
        settings: settings(&options),
        certificates: store.clone(),
        feed,
        index: index.clone(),
        memory,
        metrics: metrics.clone(),
    };
    let http01 = tokio::spawn(log_listener_error(
        "HTTP-01",
        http01::serve(options.http01_addr, index.clone(), shutdown.clone()),
    ));
    let tls_alpn01 = tokio::spawn(log_listener_error(
        "TLS-ALPN-01",
        crate::solvers::tls_alpn01::serve(options.tls_alpn01_addr, index, shutdown.clone()),
    ));
    let health = tokio::spawn(serve_health(
        options.metrics_addr,
        store.clone(),
        metrics,
        shutdown.clone(),
    ));
    tracing::info!(
        namespace = options.namespace.as_deref().unwrap_or("(all)"),
        http01 = %options.http01_addr,
        metrics = %options.metrics_addr,
        identity = %options.identity,
        "caas-operator running"
    );

    if options.leader_election {
        lead_while_leader(&client, &options, &shared, shutdown.clone()).await?;
    } else {
        run_controllers(&options, &shared, shutdown.clone()).await;
    }
    let _ = http01.await;
    let _ = tls_alpn01.await;
    let _ = health.await;
    cert_watch.abort();
    tracing::info!("caas-operator stopped");
    Ok(())
}

/// The controllers' settings, from the command line's.
fn settings(options: &Options) -> Settings {
    Settings {
        cluster_resource_namespace: options.cluster_resource_namespace.clone(),
        solvers: SolverSettings {
            solver_endpoint: SolverEndpoint {
                ip: options.pod_ip,
                port: options.http01_addr.port(),
            },
            dns01_resolvers: options.dns01_resolvers.clone(),
            ambient_credentials: options.ambient_credentials,
        },
        restart_on_renew: options.restart_on_renew,
        expiring_within: options.expiring_within,
        default_notify: options.default_notify.clone(),
        accept_cert_manager_annotations: options.accept_cert_manager_annotations,
    }
}

/// What every leadership term's [`Context`](crate::controllers::Context) is made from.
struct TermInputs {
    client: Client,
    settings: Settings,
    certificates: Store<Certificate>,
    feed: Arc<CertificateFeed>,
    index: Arc<ChallengeIndex>,
    memory: Arc<Memory>,
    metrics: Arc<Metrics>,
}
