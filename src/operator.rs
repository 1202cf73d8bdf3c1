//! Wiring: the watches, the controllers, the solver and health listeners, and shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Client, ResourceExt};

use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, CaaSIssuer, Certificate, ClusterCaaSIssuer,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::controllers::{self, Context, Settings};
use crate::solvers::http01::{self, SolverEndpoint};

/// How to run the operator.
#[derive(Clone, Debug)]
pub struct Options {
    pub http01_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    pub cluster_resource_namespace: String,
    /// The address other pods reach this replica at (the temporary HTTP-01 Endpoints).
    pub pod_ip: Option<IpAddr>,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = futures::future::FutureExt::shared(futures::future::FutureExt::boxed(shutdown));
    let certificates: Api<Certificate> = api(&client, &options.namespace);
    let issuers: Api<CaaSIssuer> = api(&client, &options.namespace);
    let cluster_issuers: Api<ClusterCaaSIssuer> = Api::all(client.clone());
    let managed_secrets: Api<Secret> = api(&client, &options.namespace);

    let cert_controller = Controller::new(certificates, watcher::Config::default());
    let store = cert_controller.store();
    let settings = Settings {
        cluster_resource_namespace: options.cluster_resource_namespace.clone(),
        solver_endpoint: SolverEndpoint {
            ip: options.pod_ip,
            port: options.http01_addr.port(),
        },
    };
    let ctx = Arc::new(Context::new(client.clone(), settings, store.clone()));

    // Listeners: HTTP-01 answers and health.
    let http01 = tokio::spawn(http01::serve(
        options.http01_addr,
        store.clone(),
        shutdown.clone(),
    ));
    let health = tokio::spawn(serve_health(
        options.metrics_addr,
        store.clone(),
        shutdown.clone(),
    ));

    // Certificates: also woken by their TLS Secret (label selector: only managed ones)
    // and by their issuer becoming ready.
    let secret_selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}=tls");
    let store_ns = store.clone();
    let store_cluster = store.clone();
    let certs = cert_controller
        .watches(
            managed_secrets,
            watcher::Config::default().labels(&secret_selector),
            |secret: Secret| {
                let ns = secret.namespace();
                secret
                    .labels()
                    .get(CERTIFICATE_LABEL)
                    .map(|name| ObjectRef::new(name).within(ns.as_deref().unwrap_or_default()))
            },
        )
        .watches(
            issuers.clone(),
            watcher::Config::default(),
            move |issuer: CaaSIssuer| {
                let ns = issuer.namespace();
                let name = issuer.name_any();
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
            cluster_issuers.clone(),
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
        .graceful_shutdown_on(shutdown.clone())
        .run(
            controllers::certificate::reconcile,
            controllers::certificate::error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "certificate controller");
            }
        });
    let issuer_loop = Controller::new(issuers, watcher::Config::default())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            controllers::issuer::reconcile_namespaced,
            controllers::issuer::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let cluster_issuer_loop = Controller::new(cluster_issuers, watcher::Config::default())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            controllers::issuer::reconcile_cluster,
            controllers::issuer::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let sweeper = tokio::spawn(sweep_solvers(
        client.clone(),
        options.namespace.clone(),
        store.clone(),
    ));

    tracing::info!(
        namespace = options.namespace.as_deref().unwrap_or("(all)"),
        http01 = %options.http01_addr,
        metrics = %options.metrics_addr,
        "caas-operator running"
    );
    tokio::join!(certs, issuer_loop, cluster_issuer_loop);
    sweeper.abort();
    let _ = http01.await;
    let _ = health.await;
    tracing::info!("caas-operator stopped");
    Ok(())
}

async fn serve_health(
    addr: SocketAddr,
    store: Store<Certificate>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready_store = store.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let store = ready_store.clone();
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

/// Deletes temporary HTTP-01 objects that no challenge in progress needs: leftovers of
/// a crash between presenting a challenge and cleaning up. Runs at start and every
/// ten minutes.
async fn sweep_solvers(client: Client, namespace: Option<String>, store: Store<Certificate>) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        let ingresses: Api<Ingress> = api(&client, &namespace);
        let selector = format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}={}",
            http01::COMPONENT
        );
        match ingresses
            .list_metadata(&kube::api::ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => {
                for obj in list.items {
                    let ns = obj.namespace().unwrap_or_default();
                    let Some(cert_name) = obj.labels().get(CERTIFICATE_LABEL).cloned() else {
                        continue;
                    };
                    let cert = store.get(&ObjectRef::new(&cert_name).within(&ns));
                    let keep: Vec<String> = cert
                        .and_then(|c| c.status.clone())
                        .and_then(|s| s.order)
                        .map(|o| o.challenges.into_iter().map(|c| c.token).collect())
                        .unwrap_or_default();
                    match http01::cleanup(&client, &ns, &cert_name, &keep).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(namespace = %ns, certificate = %cert_name, deleted = n, "swept leftover HTTP-01 objects")
                        }
                        Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep: cannot list Ingresses"),
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}
