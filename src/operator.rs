//! Wiring: watches, leader election, controllers, listeners, and shutdown.
//!
//! Every replica watches Certificates (so it can answer HTTP-01 from their status) and
//! serves the solver, health and metrics listeners. Only the replica holding the Lease
//! runs the controllers; when it loses the Lease (or shuts down) they stop, and on
//! SIGTERM it releases the Lease so another replica takes over at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, CaaSIssuer, Certificate, ClusterCaaSIssuer,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::controllers::memory::{Memory, object_key};
use crate::controllers::{self, Context, Settings, Stores};
use crate::metrics::Metrics;
use crate::solvers::SolverSettings;
use crate::solvers::http01::{self, SolverEndpoint};
use crate::solvers::index::ChallengeIndex;

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
    pub dns01_resolvers: crate::solvers::dns01::propagation::Resolvers,
    /// Restart `caas.dev/restart-on-renew` workloads after renewals.
    pub restart_on_renew: bool,
    /// Mark certificates this close to expiry whose renewal fails `Expiring`.
    pub expiring_within: Duration,
    /// Notifications for issuers without `spec.notify`.
    pub default_notify: Option<crate::api::issuer::Notify>,
    /// Honour `cert-manager.io/issuer` / `cluster-issuer` (and their companions).
    pub accept_cert_manager_annotations: bool,
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
            .modify(|c| c.managed_fields_mut().clear()),
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
        settings: Settings {
            cluster_resource_namespace: options.cluster_resource_namespace.clone(),
            solvers: SolverSettings {
                solver_endpoint: SolverEndpoint {
                    ip: options.pod_ip,
                    port: options.http01_addr.port(),
                },
                dns01_resolvers: options.dns01_resolvers.clone(),
            },
            restart_on_renew: options.restart_on_renew,
            expiring_within: options.expiring_within,
            default_notify: options.default_notify.clone(),
            accept_cert_manager_annotations: options.accept_cert_manager_annotations,
        },
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

/// What every leadership term's [`Context`] is made from.
struct TermInputs {
    client: Client,
    settings: Settings,
    certificates: Store<Certificate>,
    feed: Arc<CertificateFeed>,
    index: Arc<ChallengeIndex>,
    memory: Arc<Memory>,
    metrics: Arc<Metrics>,
}

/// Hands the Certificates the one watch sees to the certificate controller of the
/// current leadership term, if any. The controller reads the same store instead of
/// keeping a second watch and a second copy of every Certificate (with managedFields:
/// about 70 MiB at 10,000 Certificates).
#[derive(Default)]
struct CertificateFeed {
    sender: std::sync::Mutex<Option<futures::channel::mpsc::UnboundedSender<Arc<Certificate>>>>,
}

impl CertificateFeed {
    /// From now on, every Certificate applied in the store; the caller adds the store's
    /// present contents (both may name an object twice: the controller merges them).
    fn subscribe(&self) -> futures::channel::mpsc::UnboundedReceiver<Arc<Certificate>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        *self.lock() = Some(tx);
        rx
    }

    fn send(&self, cert: Arc<Certificate>) {
        let mut sender = self.lock();
        if sender
            .as_ref()
            .is_some_and(|tx| tx.unbounded_send(cert).is_err())
        {
            // The term's controller has stopped.
            *sender = None;
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<futures::channel::mpsc::UnboundedSender<Arc<Certificate>>>>
    {
        // Holding the lock cannot panic midway: use it anyway.
        self.sender.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the challenge index in step with the Certificate watch, feeds the current
/// term's controller, and drops the copies of Certificates written by this process once
/// the watch has them.
async fn index_certificates(
    events: impl futures::Stream<Item = Result<watcher::Event<Certificate>, watcher::Error>>,
    store: Store<Certificate>,
    feed: Arc<CertificateFeed>,
    index: Arc<ChallengeIndex>,
    memory: Arc<Memory>,
) {
    events
        .for_each(|event| {
            match event {
                Ok(watcher::Event::Apply(c)) => {
                    // The reflector stores an Apply before passing it on (a (re)list's
                    // objects reach the store together, at InitDone).
                    if let Some(stored) = store.get(&ObjectRef::from_obj(&c)) {
                        feed.send(stored);
                    }
                    applied(&c, &index, &memory);
                }
                Ok(watcher::Event::InitApply(c)) => applied(&c, &index, &memory),
                Ok(watcher::Event::Delete(c)) => index.remove(&c),
                Ok(watcher::Event::Init) => index.begin_resync(),
                Ok(watcher::Event::InitDone) => {
                    index.end_resync();
                    store.state().into_iter().for_each(|c| feed.send(c));
                }
                Err(e) => tracing::debug!(error = %e, "Certificate watch error; retrying"),
            }
            futures::future::ready(())
        })
        .await;
}

/// A Certificate the watch has: index its challenges, and drop our written copy once the
/// watch has caught up with it.
fn applied(c: &Certificate, index: &ChallengeIndex, memory: &Memory) {
    index.update(c);
    let key = object_key(c.namespace().as_deref(), &c.name_any());
    let version = c.resource_version().and_then(|v| v.parse::<u64>().ok());
    if version >= memory.written_status(&key) {
        memory.caught_up(&key);
    }
}

/// Runs a listener; a listener that cannot start (port taken) is reported, not fatal:
/// the other challenge types keep working.
async fn log_listener_error(
    name: &str,
    listener: impl std::future::Future<Output = std::io::Result<()>>,
) {
    if let Err(e) = listener.await {
        tracing::error!(error = %e, "the {name} listener stopped; {name} challenges cannot be answered by this replica");
    }
}

/// Says what is missing when the Lease cannot be made, and which flag changes it.
fn lease_error(e: impl std::fmt::Display, options: &Options) -> anyhow::Error {
    let ns = &options.cluster_resource_namespace;
    let text = e.to_string();
    if text.contains("not found") {
        anyhow::anyhow!(
            "the namespace {ns:?} does not exist: it holds the leader-election Lease and the \
             Secrets of ClusterCaaSIssuers. Create it (kubectl create namespace {ns}) or \
             choose another with --cluster-resource-namespace (default: the pod's namespace, \
             else caas-operator)"
        )
    } else if text.contains("forbidden") {
        anyhow::anyhow!(
            "cannot use the Lease {:?} in namespace {ns:?} ({text}): grant get, create and \
             update on leases there, or run one replica with --leader-elect=false",
            options.lease_name
        )
    } else {
        anyhow::anyhow!("cannot set up leader election in namespace {ns:?}: {text}")
    }
}

/// Campaigns for the Lease; runs the controllers while holding it.
async fn lead_while_leader(
    client: &Client,
    options: &Options,
    shared: &TermInputs,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let secs = options.lease_duration.as_secs().max(3);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &options.lease_name)
        .with_namespace(&options.cluster_resource_namespace)
        .with_identity(&options.identity)
        .with_duration(secs)
        .with_grace((secs / 3).max(1))
        .build()
        .await
        .map_err(|e| lease_error(e, options))?;
    let (mut leader, lease_task) = manager.watch().await;
    loop {
        // Wait to lead (or to stop).
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { break },
                _ = shutdown.clone() => {
                    drop(leader);
                    let _ = lease_task.await;
                    return Ok(());
                }
            }
        }
        tracing::info!(identity = %options.identity, "acquired the Lease: reconciling");
        let mut watch_lost = leader.clone();
        let lost = async move {
            while *watch_lost.borrow_and_update() {
                if watch_lost.changed().await.is_err() {
                    break;
                }
            }
        };
        let stop: Shutdown = {
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = shutdown => {},
                    _ = lost => tracing::warn!("lost the Lease: stopping the controllers"),
                }
            }
            .boxed()
            .shared()
        };
        run_controllers(options, shared, stop).await;
        if shutdown.peek().is_some() {
            drop(leader);
            // Releases the Lease so another replica takes over without waiting it out.
            match lease_task.await {
                Ok(Ok(_)) => tracing::info!("released the Lease"),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not release the Lease"),
                Err(e) => tracing::warn!(error = %e, "lease task failed"),
            }
            return Ok(());
        }
    }
}

/// The controllers, until `stop` resolves, with a fresh [`Context`] (and so fresh
/// per-object memory) for this leadership term.
async fn run_controllers(options: &Options, shared: &TermInputs, stop: Shutdown) {
    let client = &shared.client;
    let issuers: Api<CaaSIssuer> = api(client, &options.namespace);
    let cluster_issuers: Api<ClusterCaaSIssuer> = Api::all(client.clone());
    let issuer_ctrl = Controller::new(issuers, watcher::Config::default());
    let cluster_issuer_ctrl = Controller::new(cluster_issuers, watcher::Config::default());
    // Every Secret the operator manages (TLS, next keys, account keys), by label. The
    // same stream wakes the Certificates (see `certificate_loop`), so a reconcile woken by
    // a Secret change always finds that change in the store.
    let (secrets, writer) = reflector::store();
    let secret_events = reflector::reflector(
        writer,
        watcher(
            api::<Secret>(client, &options.namespace),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
        .modify(|s| {
            s.managed_fields_mut().clear();
            controllers::certificate::secret::slim(s);
        }),
    )
    .default_backoff()
    .touched_objects();
    shared.memory.new_term();
    let stores = Stores::new(
        client.clone(),
        issuer_ctrl.store(),
        cluster_issuer_ctrl.store(),
        secrets,
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        shared.settings.clone(),
        shared.certificates.clone(),
        shared.index.clone(),
        stores,
        shared.memory.clone(),
        shared.metrics.clone(),
    ));
    let sweeper = tokio::spawn(http01::sweep(
        client.clone(),
        options.namespace.clone(),
        shared.certificates.clone(),
    ));
    tokio::join!(
        certificate_loop(
            options,
            ctx.clone(),
            shared.feed.subscribe(),
            secret_events,
            stop.clone()
        ),
        issuer_loops(issuer_ctrl, cluster_issuer_ctrl, ctx.clone(), stop.clone()),
        ingress_loop(options, ctx.clone(), stop.clone()),
        gateway_loop(options, ctx.clone(), stop)
    );
    sweeper.abort();
}

/// Both issuer controllers; a deleted issuer's memory is dropped.
async fn issuer_loops(
    issuer_ctrl: Controller<CaaSIssuer>,
    cluster_issuer_ctrl: Controller<ClusterCaaSIssuer>,
    ctx: Arc<Context>,
    stop: Shutdown,
) {
    let forget_issuer = |ctx: &Context, key: String| {
        ctx.memory.forget_issuer(&key);
        futures::future::ready(())
    };
    let issuer_loop = issuer_ctrl
        .graceful_shutdown_on(stop.clone())
        .run(
            controllers::issuer::reconcile_namespaced,
            controllers::issuer::error_policy,
            ctx.clone(),
        )
        .for_each(|result| match result {
            Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                let ns = obj.namespace.unwrap_or_default();
                forget_issuer(&ctx, format!("{ns}/CaaSIssuer/{}", obj.name))
            }
            _ => futures::future::ready(()),
        });
    let cluster_issuer_loop = cluster_issuer_ctrl
        .graceful_shutdown_on(stop.clone())
        .run(
            controllers::issuer::reconcile_cluster,
            controllers::issuer::error_policy,
            ctx.clone(),
        )
        .for_each(|result| match result {
            Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                let ns = &ctx.settings.cluster_resource_namespace;
                forget_issuer(&ctx, format!("{ns}/ClusterCaaSIssuer/{}", obj.name))
            }
            _ => futures::future::ready(()),
        });
    tokio::join!(issuer_loop, cluster_issuer_loop);
}

/// Certificates, also woken by their TLS Secret (watched by label: only the Secrets we
/// manage) and by their issuer changing. A deleted Certificate's memory is dropped.
async fn certificate_loop(
    options: &Options,
    ctx: Arc<Context>,
    feed: futures::channel::mpsc::UnboundedReceiver<Arc<Certificate>>,
    secret_events: impl futures::Stream<Item = Result<Secret, watcher::Error>> + Send + 'static,
    stop: Shutdown,
) {
    let client = &ctx.client;
    let (store_ns, store_cluster) = (ctx.certificates.clone(), ctx.certificates.clone());
    // Bounded concurrency: a burst of a thousand Certificates otherwise opens hundreds of
    // connections at once (API server and CA), which costs memory and gains nothing.
    // The one Certificate watch (see `run`): what it applies from now on, after what
    // the store already holds.
    let trigger = futures::stream::iter(ctx.certificates.state()).chain(feed);
    Controller::for_shared_stream(trigger, ctx.certificates.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        // A shared reflector's stream (kube's `unstable-runtime-stream-control`: the
        // documented way to share one watch between a store and a controller).
        .watches_stream(secret_events, |secret: Secret| {
            let ns = secret.namespace().unwrap_or_default();
            let tls = secret.labels().get(COMPONENT_LABEL).map(String::as_str) == Some("tls");
            secret
                .labels()
                .get(CERTIFICATE_LABEL)
                .filter(|_| tls)
                .map(|name| ObjectRef::new(name).within(&ns))
        })
        .watches(
            api::<CaaSIssuer>(client, &options.namespace),
            watcher::Config::default(),
            move |issuer: CaaSIssuer| {
                let (ns, name) = (issuer.namespace(), issuer.name_any());
                store_ns
                    .state()
                    .into_iter()
                    .filter(|c| {
                        !c.spec.issuer_ref.is_cluster()
                            && c.spec.issuer_ref.name == name
                            && c.namespace() == ns
                    })
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<ClusterCaaSIssuer>::all(client.clone()),
            watcher::Config::default(),
            move |issuer: ClusterCaaSIssuer| {
                let name = issuer.name_any();
                store_cluster
                    .state()
                    .into_iter()
                    .filter(|c| c.spec.issuer_ref.is_cluster() && c.spec.issuer_ref.name == name)
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stop)
        .run(
            controllers::certificate::reconcile,
            controllers::certificate::error_policy,
            ctx.clone(),
        )
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::ObjectNotFound(obj)) = result {
                let key = object_key(obj.namespace.as_deref(), &obj.name);
                ctx.memory.forget_certificate(&key);
            }
            futures::future::ready(())
        })
        .await;
}

/// Annotated Gateways, when the cluster serves Gateway API (its CRDs are optional): also
/// woken when a Certificate they own changes or goes away.
async fn gateway_loop(options: &Options, ctx: Arc<Context>, stop: Shutdown) {
    use crate::api::gateway::Gateway;
    if !controllers::gateway::served(&ctx.client).await {
        tracing::info!(
            "Gateway API (gateway.networking.k8s.io/v1) is not installed: Gateways are not watched"
        );
        return;
    }
    owner_loop::<Gateway>(options, ctx, stop).await;
}

/// Ingresses: also woken when a Certificate they own changes or goes away.
async fn ingress_loop(options: &Options, ctx: Arc<Context>, stop: Shutdown) {
    owner_loop::<Ingress>(options, ctx, stop).await;
}

/// Annotated Ingresses or Gateways (`K`), also woken when a Certificate one of them owns
/// changes or goes away.
async fn owner_loop<K>(options: &Options, ctx: Arc<Context>, stop: Shutdown)
where
    K: controllers::ingress::Owner
        + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + serde::de::DeserializeOwned,
{
    let owners: Api<K> = api(&ctx.client, &options.namespace);
    let certificates: Api<Certificate> = api(&ctx.client, &options.namespace);
    Controller::new(owners, watcher::Config::default())
        .watches(
            certificates,
            watcher::Config::default(),
            |cert: Certificate| {
                controllers::ingress::owner_of::<K>(&cert)
                    .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
            },
        )
        .graceful_shutdown_on(stop)
        .run(
            controllers::ingress::reconcile_owner::<K>,
            controllers::ingress::error_policy::<K>,
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn metrics_text(
    State(metrics): State<Arc<Metrics>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn serve_health(
    addr: SocketAddr,
    store: Store<Certificate>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = store.clone();
                async move {
                    // Ready once the Certificate cache has synced: before that, HTTP-01
                    // answers could be missing.
                    match tokio::time::timeout(Duration::from_millis(10), store.wait_until_ready())
                        .await
                    {
                        Ok(Ok(())) => (axum::http::StatusCode::OK, "ok\n"),
                        _ => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "cache not synced\n",
                        ),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Arc<Certificate> {
        let mut c = Certificate::new(name, Default::default());
        c.metadata.namespace = Some("ns".into());
        Arc::new(c)
    }

    #[test]
    fn the_feed_reaches_the_current_term_only() {
        let feed = CertificateFeed::default();
        // No term: nothing is kept.
        feed.send(cert("before"));
        let mut first = feed.subscribe();
        feed.send(cert("a"));
        assert_eq!(first.try_recv().unwrap().name_any(), "a");
        // A new term replaces the old one's receiver.
        let mut second = feed.subscribe();
        feed.send(cert("b"));
        assert_eq!(second.try_recv().unwrap().name_any(), "b");
        assert!(
            first.try_recv().is_err(),
            "the old term's receiver is closed"
        );
        // The term ended: the sender is dropped at the next send.
        drop(second);
        feed.send(cert("c"));
        assert!(feed.lock().is_none());
    }
}
