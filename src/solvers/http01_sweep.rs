//! The HTTP-01 sweep: deletes the temporary objects no challenge in progress needs
//! (routes and per-challenge Services of earlier versions left by a crash, and shared
//! Services nothing uses any more), when a replica starts leading and every ten minutes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::http01::{COMPONENT, delete_if_present, resource_name};
use super::http01_service::{SERVICE_NAME, SolverServices};
use super::index::ChallengeIndex;
use crate::api::gateway::HTTPRoute;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::shared::memory::Memory;

/// Deletes this Certificate's temporary solver objects, except those for `keep` tokens.
pub async fn cleanup(
    client: &kube::Client,
    namespace: &str,
    cert_name: &str,
    keep: &[String],
) -> Result<usize, kube::Error> {
    let selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}={COMPONENT},{CERTIFICATE_LABEL}={cert_name}"
    );
    let keep: Vec<String> = keep.iter().map(|t| resource_name(t)).collect();
    let lp = ListParams::default().labels(&selector);
    let mut deleted = 0;
    macro_rules! sweep {
        ($kind:ty) => {{
            let api = Api::<$kind>::namespaced(client.clone(), namespace);
            for obj in api.list_metadata(&lp).await?.items {
                let name = obj.name_any();
                if !keep.contains(&name) && delete_if_present(&api, &name).await? {
                    deleted += 1;
                }
            }
        }};
    }
    sweep!(Ingress);
    // Without the HTTPRoute API (or the right to see HTTPRoutes) there is none to sweep.
    match Api::<HTTPRoute>::namespaced(client.clone(), namespace)
        .list_metadata(&lp)
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {}
        Err(e) => return Err(e),
        Ok(_) => sweep!(HTTPRoute),
    }
    sweep!(Service);
    sweep!(Endpoints);
    Ok(deleted)
}

/// Deletes temporary HTTP-01 objects that no challenge in progress needs: leftovers of
/// a crash between presenting a challenge and cleaning up, and shared Services whose
/// last challenge ended while the index still listed it. Runs when this replica starts
/// leading and every ten minutes after.
pub async fn sweep(
    client: kube::Client,
    namespace: Option<String>,
    store: Store<Certificate>,
    (services, index, memory): (Arc<SolverServices>, Arc<ChallengeIndex>, Arc<Memory>),
) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        for (ns, cert_name) in with_leftovers(&client, namespace.as_deref()).await {
            let keep: Vec<String> = store
                .get(&ObjectRef::new(&cert_name).within(&ns))
                .and_then(|c| c.status.clone())
                .and_then(|s| s.order)
                .map(|o| o.challenges.into_iter().map(|c| c.token).collect())
                .unwrap_or_default();
            match cleanup(&client, &ns, &cert_name, &keep).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(namespace = %ns, certificate = %cert_name, deleted = n, "swept leftover HTTP-01 objects")
                }
                Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep failed"),
            }
        }
        let listed = shared_services(&client, namespace.as_deref()).await;
        let now = memory.now();
        for (ns, result) in services.sweep(&client, &listed, (&index, now)).await {
            match result {
                Ok(true) => tracing::info!(namespace = %ns, "swept the unused HTTP-01 Service"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep failed"),
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

fn solver_objects() -> ListParams {
    ListParams::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{COMPONENT_LABEL}={COMPONENT}"
    ))
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The Certificates (namespace, name) that have routes, or per-challenge Services made
/// by earlier versions, of their own.
async fn with_leftovers(
    client: &kube::Client,
    namespace: Option<&str>,
) -> std::collections::BTreeSet<(String, String)> {
    let lp = solver_objects();
    let mut metas = Vec::new();
    match api::<Ingress>(client, namespace).list_metadata(&lp).await {
        Ok(list) => metas.extend(list.items.into_iter().map(|o| o.metadata)),
        Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep: cannot list Ingresses"),
    }
    match api::<HTTPRoute>(client, namespace).list_metadata(&lp).await {
        Ok(list) => metas.extend(list.items.into_iter().map(|o| o.metadata)),
        // Without the HTTPRoute API (or the right to see HTTPRoutes) there is none.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {}
        Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep: cannot list HTTPRoutes"),
    }
    match api::<Service>(client, namespace).list_metadata(&lp).await {
        Ok(list) => metas.extend(list.items.into_iter().map(|o| o.metadata)),
        Err(e) => tracing::warn!(error = %e, "HTTP-01 sweep: cannot list Services"),
    }
    metas
        .into_iter()
        .filter_map(|m| {
            let cert = m.labels.as_ref()?.get(CERTIFICATE_LABEL)?.clone();
            Some((m.namespace.unwrap_or_default(), cert))
        })
        .collect()
}

/// The namespaces holding a shared HTTP-01 Service.
async fn shared_services(client: &kube::Client, namespace: Option<&str>) -> Vec<String> {
    match api::<Service>(client, namespace)
        .list_metadata(&solver_objects())
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|o| o.metadata.name.as_deref() == Some(SERVICE_NAME))
            .filter(|o| !o.labels().contains_key(CERTIFICATE_LABEL))
            .filter_map(|o| o.metadata.namespace)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "HTTP-01 sweep: cannot list Services");
            Vec::new()
        }
    }
}
