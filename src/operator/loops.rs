//! The controller loops of one leadership term: Certificates, both issuer kinds,
//! annotated Ingresses and Gateways, sharing one [`Context`].

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

use super::feed::CertificateFeed;
use super::{CONCURRENCY, Options, Shutdown, TermInputs, api};
use crate::api::{
    COMPONENT_LABEL, CaaSIssuer, Certificate, ClusterCaaSIssuer, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::controllers::{self, Context, Stores};
use crate::shared::cached_secret::CachedSecret;
use crate::shared::memory::object_key;

/// The controllers, until `stop` resolves, with a fresh [`Context`] (and so fresh
/// per-object memory) for this leadership term.
pub(super) async fn run_controllers(options: &Options, shared: &TermInputs, stop: Shutdown) {
    let client = &shared.client;
    let issuers: Api<CaaSIssuer> = api(client, &options.namespace);
    let cluster_issuers: Api<ClusterCaaSIssuer> = Api::all(client.clone());
    // One watch per issuer kind, shared by its own controller and the certificate
    // controller (woken when its issuer changes or goes).
    let issuers = SharedWatch::start(issuers);
    let cluster_issuers = SharedWatch::start(cluster_issuers);
    let issuer_ctrl = Controller::for_stream(issuers.for_controller, issuers.store);
    let cluster_issuer_ctrl =
        Controller::for_stream(cluster_issuers.for_controller, cluster_issuers.store);
    // Every Secret the operator manages (TLS, next keys, account keys), by label. The
    // same stream wakes the Certificates (see `certificate_loop`), so a reconcile woken by
    // a Secret change always finds that change in the store.
    // The cache keeps only what the controllers read of each (see `CachedSecret`).
    let (secrets, writer) = reflector::store();
    let secret_events = reflector::reflector(
        writer,
        watcher(
            api::<CachedSecret>(client, &options.namespace),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        ),
    )
    .default_backoff()
    .touched_objects();
    let ((secret_events, secrets_for_deploy), secrets_task) = fan_out(secret_events);
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
    resume_restarts(&ctx, options.namespace.clone());
    let sweeper = tokio::spawn(crate::solvers::http01_sweep::sweep(
        client.clone(),
        options.namespace.clone(),
        shared.certificates.clone(),
        (
            ctx.http01_services.clone(),
            shared.index.clone(),
            shared.memory.clone(),
        ),
    ));
    tokio::join!(
        certificate_loop(
            ctx.clone(),
            shared.feed.subscribe(),
            secret_events,
            (issuers.for_certificates, cluster_issuers.for_certificates),
            stop.clone()
        ),
        issuer_loops(issuer_ctrl, cluster_issuer_ctrl, ctx.clone(), stop.clone()),
        ingress_loop(options, &shared.feed, ctx.clone(), stop.clone()),
        gateway_loop(options, &shared.feed, ctx.clone(), stop.clone()),
        super::deploy_loop::run(
            options,
            ctx.clone(),
            shared.feed.subscribe(),
            secrets_for_deploy,
            stop
        )
    );
    secrets_task.abort();
    sweeper.abort();
    issuers.task.abort();
    cluster_issuers.task.abort();
}

/// Delayed restarts an earlier process (or leader) wrote on workloads and never made.
fn resume_restarts(ctx: &Context, namespace: Option<String>) {
    if !ctx.settings.restart_on_renew {
        return;
    }
    let (client, recorder) = (ctx.client.clone(), ctx.recorder.clone());
    let memory = ctx.memory.clone();
    let namespace = namespace.unwrap_or_default();
    tokio::spawn(async move {
        controllers::restart::resume_pending(&client, &recorder, &memory, &namespace).await;
    });
}

/// What a watched kind must be (a shorthand for kube's bounds).
trait Watched: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync {}

impl<K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync> Watched for K {}

/// The objects one watch touched (applied or deleted), as a controller's trigger.
pub(super) type Touched<K> = futures::channel::mpsc::UnboundedReceiver<Result<K, watcher::Error>>;

/// One watch of an issuer kind feeding a store, the kind's own controller and the
/// certificate controller, driven by a task of its own for one leadership term. Both
/// controllers get every object the watch applies or deletes (a deleted issuer's
/// Certificates report it; its memory is dropped), after the store has it.
struct SharedWatch<K: kube::Resource<DynamicType = ()> + Clone + 'static> {
    store: reflector::Store<K>,
    for_controller: Touched<K>,
    for_certificates: Touched<K>,
    task: tokio::task::JoinHandle<()>,
}

impl<K: Watched> SharedWatch<K> {
    fn start(api: Api<K>) -> Self {
        let (store, writer) = reflector::store();
        let touched = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        let ((for_controller, for_certificates), task) = fan_out(touched);
        SharedWatch {
            store,
            for_controller,
            for_certificates,
            task,
        }
    }
}

/// Two receivers of every object `touched` yields, and the task that drives it (for one
/// leadership term).
fn fan_out<K: Clone + Send + 'static>(
    touched: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> ((Touched<K>, Touched<K>), tokio::task::JoinHandle<()>) {
    let (to_first, first) = futures::channel::mpsc::unbounded();
    let (to_second, second) = futures::channel::mpsc::unbounded();
    let task = tokio::spawn(touched.for_each(move |object| {
        // A closed receiver is a controller that stopped with its term.
        if let Ok(object) = object {
            let _ = to_first.unbounded_send(Ok(object.clone()));
            let _ = to_second.unbounded_send(Ok(object));
        }
        futures::future::ready(())
    }));
    ((first, second), task)
}

/// Both issuer controllers; a deleted issuer's memory is dropped.
async fn issuer_loops(
    issuer_ctrl: Controller<CaaSIssuer>,
    cluster_issuer_ctrl: Controller<ClusterCaaSIssuer>,
    ctx: Arc<Context>,
    stop: Shutdown,
) {
    let issuer_loop = issuer_kind_loop(
        issuer_ctrl,
        controllers::issuer::reconcile_namespaced,
        ctx.clone(),
        stop.clone(),
        |_, obj| {
            let ns = obj.namespace.clone().unwrap_or_default();
            format!("{ns}/CaaSIssuer/{}", obj.name)
        },
    );
    let cluster_issuer_loop = issuer_kind_loop(
        cluster_issuer_ctrl,
        controllers::issuer::reconcile_cluster,
        ctx,
        stop,
        |ctx, obj| {
            let ns = &ctx.settings.cluster_resource_namespace;
            format!("{ns}/ClusterCaaSIssuer/{}", obj.name)
        },
    );
    tokio::join!(issuer_loop, cluster_issuer_loop);
}

/// One issuer kind's controller; a deleted issuer's memory (its key: `key`) is dropped.
async fn issuer_kind_loop<K, Fut>(
    ctrl: Controller<K>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
    ctx: Arc<Context>,
    stop: Shutdown,
    key: impl Fn(&Context, &ObjectRef<kube::api::DynamicObject>) -> String,
) where
    K: Watched,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, controllers::Error>>
        + Send
        + 'static,
{
    ctrl.graceful_shutdown_on(stop)
        .run(reconcile, controllers::issuer::error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::ObjectNotFound(obj)) = result {
                let key = key(&ctx, &obj);
                ctx.memory.forget_issuer(&key);
                ctx.accounts.forget_key(&key);
            }
            futures::future::ready(())
        })
        .await;
}

/// Certificates, also woken by their TLS Secret (watched by label: only the Secrets we
/// manage) and by their issuer changing. A deleted Certificate's memory is dropped.
async fn certificate_loop(
    ctx: Arc<Context>,
    feed: futures::channel::mpsc::UnboundedReceiver<Arc<Certificate>>,
    secret_events: impl futures::Stream<Item = Result<CachedSecret, watcher::Error>> + Send + 'static,
    issuers: (Touched<CaaSIssuer>, Touched<ClusterCaaSIssuer>),
    stop: Shutdown,
) {
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
        .watches_stream(secret_events, |secret: CachedSecret| secret.tls_of())
        .watches_stream(issuers.0, move |issuer: CaaSIssuer| {
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
        })
        .watches_stream(issuers.1, move |issuer: ClusterCaaSIssuer| {
            let name = issuer.name_any();
            store_cluster
                .state()
                .into_iter()
                .filter(|c| c.spec.issuer_ref.is_cluster() && c.spec.issuer_ref.name == name)
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
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
async fn gateway_loop(
    options: &Options,
    feed: &CertificateFeed,
    ctx: Arc<Context>,
    stop: Shutdown,
) {
    use crate::api::gateway::Gateway;
    if !controllers::gateway::served(&ctx.client).await {
        tracing::info!(
            "Gateway API (gateway.networking.k8s.io/v1) is not installed: Gateways are not watched"
        );
        return;
    }
    owner_loop::<Gateway>(options, feed.subscribe(), ctx, stop).await;
}

/// Ingresses: also woken when a Certificate they own changes or goes away.
async fn ingress_loop(
    options: &Options,
    feed: &CertificateFeed,
    ctx: Arc<Context>,
    stop: Shutdown,
) {
    owner_loop::<Ingress>(options, feed.subscribe(), ctx, stop).await;
}

/// Annotated Ingresses or Gateways (`K`), also woken when a Certificate one of them owns
/// changes or goes away (from the one Certificate watch, through `certificates`).
///
/// The HTTP-01 solver's own Ingresses are left out of the watch: a renewal storm makes
/// one per challenge (10,000 at once), and each would otherwise be cached, reconciled
/// (a scan of the namespace's Certificates) and requeued for an hour for nothing.
async fn owner_loop<K>(
    options: &Options,
    certificates: futures::channel::mpsc::UnboundedReceiver<Arc<Certificate>>,
    ctx: Arc<Context>,
    stop: Shutdown,
) where
    K: controllers::ingress::Owner
        + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + serde::de::DeserializeOwned,
{
    let owners: Api<K> = api(&ctx.client, &options.namespace);
    let not_solvers = format!("{COMPONENT_LABEL}!={}", crate::solvers::http01::COMPONENT);
    Controller::new(owners, watcher::Config::default().labels(&not_solvers))
        .watches_shared_stream(certificates, |cert: Arc<Certificate>| {
            controllers::ingress::owner_of::<K>(&cert)
                .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
        })
        .graceful_shutdown_on(stop)
        .run(
            controllers::ingress::reconcile_owner::<K>,
            controllers::ingress::error_policy::<K>,
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}
