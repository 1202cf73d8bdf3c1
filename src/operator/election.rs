//! Leader election through a Lease: the controllers run only while this replica holds
//! it, and a start-up problem with the Lease is one line naming the flag that fixes it.

use futures::FutureExt;
use kube::Client;

use super::loops::run_controllers;
use super::{Options, Shutdown, TermInputs};

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
pub(super) async fn lead_while_leader(
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
