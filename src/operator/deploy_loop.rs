//! The deploy controller's loop: the same Certificate store as the certificate
//! controller (fed by the one watch), woken also by the Certificate's TLS Secret and its
//! copies, by the targets it names, and (with Secret copies on) by namespaces.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use super::loops::Touched;
use super::{Options, Shutdown, api};
use crate::api::{COMPONENT_LABEL, Certificate, ClusterDeployTarget, DeployTarget};
use crate::controllers::Context;
use crate::controllers::deploy::{self, DeployContext};
use crate::deploy::copies;
use crate::shared::cached_secret::CachedSecret;

/// Certificates deployed at once: remote calls take seconds, so more than the
/// certificate controller would help a renewal storm little and load the clouds.
const DEPLOY_CONCURRENCY: u16 = 16;

/// How long the loop waits for the target stores before starting (so a target is never
/// reported missing because its watch had not listed yet).
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A watch feeding a store, driven by a task of its own; its touched objects.
fn watched<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> (Store<K>, Touched<K>, tokio::task::JoinHandle<()>)
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let touched = reflector::reflector(writer, stream)
        .default_backoff()
        .touched_objects();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let task = tokio::spawn(touched.for_each(move |object| {
        if let Ok(object) = object {
            let _ = tx.unbounded_send(Ok(object));
        }
        futures::future::ready(())
    }));
    (store, rx, task)
}

/// The Certificates in the store a predicate picks, as controller triggers.
fn certificates_where(
    store: &Store<Certificate>,
    pick: impl Fn(&Certificate) -> bool,
) -> Vec<ObjectRef<Certificate>> {
    (store.state().iter())
        .filter(|c| pick(c))
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// The Certificate a managed Secret belongs to: its TLS Secret, or one of its copies.
fn owner_of_secret(secret: &CachedSecret) -> Option<ObjectRef<Certificate>> {
    match secret.label(COMPONENT_LABEL) {
        Some("tls") => secret.tls_of(),
        Some(copies::COMPONENT) => {
            let source = secret.annotation(copies::COPY_OF)?;
            let (ns, name) = source.split_once('/')?;
            Some(ObjectRef::new(name).within(ns))
        }
        _ => None,
    }
}

/// The watches the deploy loop reads besides the Certificates: targets of both kinds
/// and (with Secret copies on) namespaces' metadata, each driven by a task of its own.
struct Watches {
    targets: Store<DeployTarget>,
    target_events: Touched<DeployTarget>,
    cluster_targets: Store<ClusterDeployTarget>,
    cluster_events: Touched<ClusterDeployTarget>,
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    namespace_events: BoxStream<'static, Result<PartialObjectMeta<Namespace>, watcher::Error>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watches {
    /// Starts them, and waits (30 s at most) until the targets have listed, so a target
    /// is never reported missing because its watch had not listed yet.
    async fn start(options: &Options, client: &kube::Client) -> Watches {
        let (targets, target_events, t1) = watched(watcher(
            api::<DeployTarget>(client, &options.namespace),
            watcher::Config::default(),
        ));
        let (cluster_targets, cluster_events, t2) = watched(watcher(
            Api::<ClusterDeployTarget>::all(client.clone()),
            watcher::Config::default(),
        ));
        let mut tasks = vec![t1, t2];
        let (namespaces, namespace_events) = match options.secret_copies {
            true => {
                let (store, events, task) = watched(watcher(
                    Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                    watcher::Config::default(),
                ));
                tasks.push(task);
                (Some(store), events.boxed())
            }
            false => (None, futures::stream::empty().boxed()),
        };
        for (what, ready) in [
            (
                "DeployTarget",
                tokio::time::timeout(STORE_WAIT, targets.wait_until_ready()).await,
            ),
            (
                "ClusterDeployTarget",
                tokio::time::timeout(STORE_WAIT, cluster_targets.wait_until_ready()).await,
            ),
        ] {
            if !matches!(ready, Ok(Ok(()))) {
                tracing::warn!(
                    "the {what} watch has not listed in 30 s (is its CRD installed? may the operator read it?); deploying anyway"
                );
            }
        }
        // Secret copies are not decided before namespaces have listed (see `place`).
        if let Some(store) = &namespaces
            && tokio::time::timeout(STORE_WAIT, store.wait_until_ready())
                .await
                .is_err()
        {
            tracing::warn!(
                "the Namespace watch has not listed in 30 s (may the operator list namespaces? the chart's secretCopies.enabled grants it)"
            );
        }
        Watches {
            targets,
            target_events,
            cluster_targets,
            cluster_events,
            namespaces,
            namespace_events,
            tasks,
        }
    }
}

pub(super) async fn run(
    options: &Options,
    ctx: Arc<Context>,
    feed: futures::channel::mpsc::UnboundedReceiver<Arc<Certificate>>,
    secret_events: Touched<CachedSecret>,
    stop: Shutdown,
) {
    let w = Watches::start(options, &ctx.client).await;
    let d = Arc::new(DeployContext {
        ctx: ctx.clone(),
        targets: w.targets.clone(),
        cluster_targets: w.cluster_targets.clone(),
        namespaces: w.namespaces.clone(),
        secrets_everywhere: options.namespace.is_none(),
        written: Default::default(),
    });
    let (by_target, by_cluster_target, by_namespace) = (
        ctx.certificates.clone(),
        ctx.certificates.clone(),
        ctx.certificates.clone(),
    );
    let trigger = futures::stream::iter(ctx.certificates.state()).chain(feed);
    Controller::for_shared_stream(trigger, ctx.certificates.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(DEPLOY_CONCURRENCY))
        .watches_stream(secret_events, |secret: CachedSecret| {
            owner_of_secret(&secret)
        })
        .watches_stream(w.target_events, move |t: DeployTarget| {
            let (ns, name) = (t.namespace(), t.name_any());
            certificates_where(&by_target, |c| {
                c.namespace() == ns
                    && c.spec
                        .deploy_to
                        .iter()
                        .any(|r| !r.is_cluster() && r.name == name)
            })
        })
        .watches_stream(w.cluster_events, move |t: ClusterDeployTarget| {
            let name = t.name_any();
            certificates_where(&by_cluster_target, |c| {
                c.spec
                    .deploy_to
                    .iter()
                    .any(|r| r.is_cluster() && r.name == name)
            })
        })
        .watches_stream(
            w.namespace_events,
            move |_ns: PartialObjectMeta<Namespace>| {
                certificates_where(&by_namespace, |c| !c.spec.deploy_to.is_empty())
            },
        )
        .graceful_shutdown_on(stop)
        .run(deploy::reconcile, deploy::error_policy, d.clone())
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::ObjectNotFound(obj)) = result {
                let ns = obj.namespace.unwrap_or_default();
                d.written.forget(&format!("{ns}/{}", obj.name));
            }
            futures::future::ready(())
        })
        .await;
    w.tasks.iter().for_each(|t| t.abort());
}
