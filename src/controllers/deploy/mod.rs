//! The deploy controller: after the certificate controller has written a Certificate's
//! Secret, puts that certificate where `spec.deployTo` says (ACM, Secret copies) and
//! reports each target in `status.deployments`. It runs beside the certificate
//! controller and never holds it up: a failing target is retried with backoff while the
//! Secret is written and renewed as always.

mod alarms;
mod record;
mod status;
mod target;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;

use super::{Context, Error};
use crate::api::{Certificate, ClusterDeployTarget, DeployTarget, DeploymentStatus};
use crate::decide::deploy::{self as decide, SecretCert};

/// Present while the Certificate has Secret copies to remove when it goes.
pub const FINALIZER: &str = "caas.dev/deployments";
/// The field manager of `status.deployments` (the certificate controller never sends it).
pub const FIELD_MANAGER: &str = "caas-operator-deploy";
/// How often a deployed copy is looked at again (a copy deleted by hand comes back).
pub const VERIFY_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_hours(12);

/// What the deploy controller reads besides the shared [`Context`].
pub struct DeployContext {
    pub ctx: Arc<Context>,
    pub targets: Store<DeployTarget>,
    pub cluster_targets: Store<ClusterDeployTarget>,
    /// Namespaces' metadata, when Secret copies are on.
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// Whether the managed-Secret store sees every namespace (no `--namespace`), so a
    /// copy deleted by hand shows there.
    pub secrets_everywhere: bool,
    /// What this controller wrote last, per Certificate.
    pub written: status::Written,
}

/// `namespace/name` of a Certificate: what its copies' `caas.dev/copy-of` says.
pub fn source_key(cert: &Certificate) -> String {
    format!(
        "{}/{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    )
}

pub async fn reconcile(cert: Arc<Certificate>, d: Arc<DeployContext>) -> Result<Action, Error> {
    if cert.metadata.deletion_timestamp.is_some() {
        return finalize(&cert, &d).await;
    }
    let entries = d.written.entries(&cert);
    let has_finalizer = cert.finalizers().iter().any(|f| f == FINALIZER);
    if cert.spec.deploy_to.is_empty() && entries.is_empty() {
        if has_finalizer {
            crate::shared::finalizer::remove(&d.ctx.client, &cert, FINALIZER).await?;
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer && target::wants_cleanup(&d, &cert, &entries) {
        crate::shared::finalizer::ensure(&d.ctx.client, &cert, FINALIZER).await?;
    }
    let now = d.ctx.memory.wall_now();
    let secret = secret_cert(&d.ctx, &cert).await?;
    let mut bundle = target::LazyBundle::default();
    let (mut next, mut steps, mut keys) = (Vec::new(), Vec::new(), BTreeSet::new());
    for r in &cert.spec.deploy_to {
        if !keys.insert(r.key()) {
            continue;
        }
        let entry = entries.iter().find(|e| e.target == r.key());
        let (entry, step) =
            target::one(&d, &cert, r, entry, secret.as_ref(), now, &mut bundle).await;
        next.push(entry);
        steps.push(step);
    }
    for gone in decide::dropped(&keys, &entries) {
        if let Some((kept, step)) = remove_dropped(&d, &cert, gone, now).await {
            next.push(kept);
            steps.push(step);
        }
    }
    alarms::raise(&d, &cert, &entries, &mut next, secret.as_ref(), now).await;
    status::apply(&d, &cert, &entries, &next).await?;
    Ok(match decide::next_look(&steps, now) {
        Some(after) => Action::requeue(after.unsigned_abs()),
        None => Action::await_change(),
    })
}

/// How a dropped target's entry says so while its removal fails.
const DROPPED: &str = "no longer in deployTo";

/// A target no longer named: what it put somewhere is removed as it says
/// ([`record::remove`]). While that fails the entry stays, says why (`Deployed=False`)
/// and is retried with backoff.
async fn remove_dropped(
    d: &DeployContext,
    cert: &Certificate,
    gone: &DeploymentStatus,
    now: jiff::Timestamp,
) -> Option<(DeploymentStatus, decide::Step)> {
    // A removal already failing has its own backoff; a deploy's backoff does not hold
    // up the first removal.
    let removing =
        (gone.conditions.iter()).any(|c| c.type_ == "Deployed" && c.message.starts_with(DROPPED));
    let waiting = gone.next_attempt_time.map(|t| t.0).filter(|t| *t > now);
    if let (true, Some(until)) = (removing, waiting) {
        return Some((gone.clone(), decide::Step::Wait { until }));
    }
    let e = record::remove(d, cert, gone).await.err()?;
    let mut kept = gone.clone();
    let attempts = if removing {
        kept.failed_attempts.unwrap_or(0) + 1
    } else {
        1
    };
    let until = now + decide::backoff(attempts, rand::random::<f64>());
    kept.failed_attempts = Some(attempts);
    kept.next_attempt_time = Some(crate::api::Time(until));
    let message = format!("{DROPPED}; removing what it deployed failed: {e}");
    record::condition(
        &mut kept,
        false,
        crate::api::Reason::DestinationUnreachable,
        message,
        now,
    );
    Some((kept, decide::Step::Wait { until }))
}

/// A Certificate being deleted: its Secret copies go with it, and remote copies of
/// targets with `deletionPolicy: Delete`; then the finalizer. A removal that fails (ACM:
/// a certificate in use) is retried for 10 minutes; then the deletion goes ahead and a
/// Warning event names what was left.
async fn finalize(cert: &Certificate, d: &DeployContext) -> Result<Action, Error> {
    if !cert.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let mut left = Vec::new();
    for entry in &d.written.entries(cert) {
        if let Err(e) = record::remove(d, cert, entry).await {
            left.push(format!("{}: {e}", entry.target));
        }
    }
    let deleting_for = (cert.metadata.deletion_timestamp.as_ref())
        .map(|t| d.ctx.memory.wall_now().duration_since(t.0))
        .unwrap_or_default();
    if !left.is_empty() && deleting_for < jiff::SignedDuration::from_mins(10) {
        tracing::warn!(certificate = %source_key(cert), "cannot remove deployed copies yet: {}", left.join("; "));
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    if !left.is_empty() {
        let note = format!("deployed copies left behind: {}", left.join("; "));
        (d.ctx.recorder)
            .event(cert, true, "CopiesLeft", "Delete", note)
            .await;
    }
    crate::shared::finalizer::remove(&d.ctx.client, cert, FINALIZER).await?;
    Ok(Action::await_change())
}

/// The certificate in the Certificate's Secret (the watch cache's copy), if any.
async fn secret_cert(ctx: &Context, cert: &Certificate) -> Result<Option<SecretCert>, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let Some(secret) = ctx.stores.secret(&ns, &cert.spec.secret_name).await? else {
        return Ok(None);
    };
    let text = |key: &str| {
        (secret.data.as_ref())
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let (Some(crt), Some(_)) = (text("tls.crt"), text("tls.key")) else {
        return Ok(None);
    };
    let Ok(info) = crate::pki::parse_chain(&crt) else {
        return Ok(None);
    };
    // The key's type from the certificate's public key: no private key parsed on this
    // path, which every status change of every Certificate with targets takes.
    Ok(Some(SecretCert {
        serial: info.serial,
        not_after: info.not_after,
        key: crate::pki::spki_algorithm(&info.public_key_spki),
    }))
}

pub fn error_policy(cert: Arc<Certificate>, error: &Error, d: Arc<DeployContext>) -> Action {
    d.ctx.metrics.reconcile_error("deploy");
    tracing::warn!(certificate = %source_key(&cert), %error, "deploy reconcile failed; retrying in 30 s");
    Action::requeue(Duration::from_secs(30))
}
