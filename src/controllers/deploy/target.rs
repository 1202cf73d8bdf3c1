//! One target of one Certificate: resolve it, decide, carry the step out, and say what
//! the entry in `status.deployments` becomes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::{DeployContext, VERIFY_EVERY, record, source_key};
use crate::api::deploy::{DeletionPolicy, DeployTargetSpec, SecretCopiesTarget};
use crate::api::{Certificate, DeployRef, DeploymentStatus, Reason};
use crate::decide::deploy::{self as decide, CopyPlan, NamespaceView, SecretCert, Step};
use crate::deploy::remote::{self, Remote, Source};
use crate::deploy::{Bundle, DeployError, Deployed, copies};

/// A target as found, with where its credential Secrets live.
pub(super) struct Resolved {
    pub spec: DeployTargetSpec,
    version: Option<String>,
    cluster: bool,
    secret_namespace: String,
}

pub(super) fn resolve(d: &DeployContext, cert: &Certificate, r: &DeployRef) -> Option<Resolved> {
    match r.is_cluster() {
        true => (d.cluster_targets.get(&ObjectRef::new(&r.name))).map(|t| Resolved {
            spec: t.spec.0.clone(),
            version: t.resource_version(),
            cluster: true,
            secret_namespace: d.ctx.settings.cluster_resource_namespace.clone(),
        }),
        false => {
            let ns = cert.namespace().unwrap_or_default();
            (d.targets.get(&ObjectRef::new(&r.name).within(&ns))).map(|t| Resolved {
                spec: t.spec.clone(),
                version: t.resource_version(),
                cluster: false,
                secret_namespace: ns,
            })
        }
    }
}

/// Whether the Certificate has (or will have) copies to remove when it goes: Secret
/// copies, or remote ones of a target with `deletionPolicy: Delete`.
pub(super) fn wants_cleanup(
    d: &DeployContext,
    cert: &Certificate,
    entries: &[DeploymentStatus],
) -> bool {
    let removes = |t: Resolved| {
        t.spec.secret_copies.is_some() || t.spec.deletion_policy == Some(DeletionPolicy::Delete)
    };
    entries.iter().any(DeploymentStatus::is_copies)
        || (cert.spec.deploy_to.iter())
            .filter_map(|r| resolve(d, cert, r))
            .any(removes)
}

/// Target `t`'s cloud destination signed in, with the operator's own identity only
/// where the ambient-credentials flags allow it for the target's kind.
pub(super) async fn remote_client(
    d: &DeployContext,
    t: &Resolved,
    cert: &Certificate,
) -> Result<Remote, DeployError> {
    let ambient = match t.cluster {
        true => d.ctx.settings.solvers.ambient_credentials.cluster_issuers,
        false => d.ctx.settings.solvers.ambient_credentials.issuers,
    };
    let key = source_key(cert);
    let source = Source { key: &key };
    Remote::connect(&d.ctx.client, &t.secret_namespace, &t.spec, ambient, source).await
}

/// The TLS Secret read whole (the watch cache keeps only the leaf), once per reconcile
/// and only when some target deploys.
#[derive(Default)]
pub(super) struct LazyBundle(Option<Result<Bundle, DeployError>>);

impl LazyBundle {
    async fn get(
        &mut self,
        client: &kube::Client,
        cert: &Certificate,
    ) -> Result<&Bundle, &DeployError> {
        if self.0.is_none() {
            let ns = cert.namespace().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let read = match api.get_opt(&cert.spec.secret_name).await {
                Ok(Some(s)) => Bundle::from_secret(&s).map_err(|e| DeployError::Refused {
                    reason: Reason::WaitingForCertificate,
                    words: format!("Secret {ns}/{}: {e}", cert.spec.secret_name),
                }),
                Ok(None) => Err(DeployError::Refused {
                    reason: Reason::WaitingForCertificate,
                    words: format!("Secret {ns}/{} does not exist yet", cert.spec.secret_name),
                }),
                Err(e) => Err(DeployError::kube(&e)),
            };
            self.0 = Some(read);
        }
        self.0.as_ref().expect("just read").as_ref()
    }
}

/// Where a target puts its copy now, and for Secret copies the plan.
pub(super) struct Place {
    pub location: String,
    pub copies: Option<(String, CopyPlan)>,
}

fn namespace_views(d: &DeployContext) -> Vec<NamespaceView> {
    let Some(store) = &d.namespaces else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .map(|ns| NamespaceView {
            name: ns.name_any(),
            labels: ns.labels().clone(),
            accepts_from: ns
                .annotations()
                .get("caas.dev/accept-secret-copies-from")
                .cloned(),
        })
        .collect()
}

/// Where target `t` puts the Certificate's copy now; `Ok(None)`: not known yet (the
/// namespaces' watch has not listed: deciding on an empty list would remove every copy).
fn place(
    d: &DeployContext,
    cert: &Certificate,
    r: &DeployRef,
    t: &Resolved,
) -> Result<Option<Place>, (Reason, String)> {
    let key = source_key(cert);
    let source = Source { key: &key };
    if let Some(location) = remote::location(&t.spec, source) {
        if let Some(named) = remote::names_one(&t.spec) {
            shared_adoption(d, cert, r, named)?;
        }
        return Ok(Some(Place {
            location,
            copies: None,
        }));
    }
    let cfg = t.spec.secret_copies.as_ref().expect("one destination");
    let Some(namespaces) = &d.namespaces else {
        return Err((
            Reason::NotPermitted,
            "Secret copies are off: install the chart with secretCopies.enabled=true \
             (the operator's --secret-copies)"
                .into(),
        ));
    };
    if namespaces.state().is_empty() {
        // The loop waited for the list at start: still none means it cannot list.
        return Err((
            Reason::NotPermitted,
            "no namespaces listed yet: may the operator list and watch namespaces? (the \
             chart's secretCopies.enabled grants it)"
                .into(),
        ));
    }
    let name = (cfg.secret_name.clone()).unwrap_or_else(|| cert.spec.secret_name.clone());
    let selector = cfg.namespace_selector.clone();
    let matches =
        |labels: &BTreeMap<String, String>| selector.as_ref().is_some_and(|s| s.matches(labels));
    let plan = decide::copy_plan(
        &cfg.namespaces,
        Some(&matches),
        &namespace_views(d),
        &cert.namespace().unwrap_or_default(),
        t.cluster,
    );
    Ok(Some(Place {
        location: copies::location(&name, &plan.namespaces),
        copies: Some((name, plan)),
    }))
}

/// A target naming one remote certificate outright (`acm.certificateARN`, a Key Vault
/// `certificateName`, ...) holds one certificate: several Certificates naming it would
/// overwrite each other on every renewal, so all of them are refused until one remains.
fn shared_adoption(
    d: &DeployContext,
    cert: &Certificate,
    r: &DeployRef,
    named: &str,
) -> Result<(), (Reason, String)> {
    let ns = cert.namespace();
    let users: Vec<String> = (d.ctx.certificates.state().iter())
        .filter(|c| r.is_cluster() || c.namespace() == ns)
        .filter(|c| c.spec.deploy_to.iter().any(|o| o.key() == r.key()))
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    if users.len() <= 1 {
        return Ok(());
    }
    let message = format!(
        "{} names one remote certificate ({named}) but {} Certificates name this target ({}): name it from one only",
        r.key(),
        users.len(),
        users.join(", ")
    );
    Err((Reason::InvalidTarget, message))
}

/// The target resolved, its destination, and where it puts the copy now; or the entry
/// and step when it cannot go on (missing, invalid, not known yet).
async fn prepare(
    d: &DeployContext,
    cert: &Certificate,
    r: &DeployRef,
    next: &mut DeploymentStatus,
    now: jiff::Timestamp,
) -> Result<(Resolved, &'static str, Place), Step> {
    let mut refuse = |reason: Reason, message: String| {
        record::condition(next, false, reason, message.clone(), now);
        Step::Refuse { reason, message }
    };
    let Some(t) = resolve(d, cert, r) else {
        let kind = if r.is_cluster() {
            "ClusterDeployTarget"
        } else {
            "DeployTarget"
        };
        return Err(refuse(
            Reason::TargetNotFound,
            format!("{kind} {} does not exist", r.name),
        ));
    };
    let destination = match t.spec.destination() {
        Ok(dest) => dest,
        Err(m) => return Err(refuse(Reason::InvalidTarget, m)),
    };
    if let Err(m) = record::switch_destination(d, cert, next, destination).await {
        record::condition(next, false, Reason::DestinationUnreachable, m.clone(), now);
        return Err(Step::Refuse {
            reason: Reason::DestinationUnreachable,
            message: m,
        });
    }
    match place(d, cert, r, &t) {
        Ok(Some(p)) => Ok((t, destination, p)),
        Ok(None) => Err(Step::Wait {
            until: now + jiff::SignedDuration::from_secs(5),
        }),
        Err((reason, message)) => {
            record::condition(next, false, reason, message.clone(), now);
            Err(Step::Refuse { reason, message })
        }
    }
}

/// One target's entry after this reconcile, and the step taken.
pub(super) async fn one(
    d: &DeployContext,
    cert: &Certificate,
    r: &DeployRef,
    entry: Option<&DeploymentStatus>,
    secret: Option<&SecretCert>,
    now: jiff::Timestamp,
    bundle: &mut LazyBundle,
) -> (DeploymentStatus, Step) {
    let mut next = entry.cloned().unwrap_or_else(|| DeploymentStatus {
        target: r.key(),
        ..Default::default()
    });
    let (t, destination, place) = match prepare(d, cert, r, &mut next, now).await {
        Ok(found) => found,
        Err(step) => return (next, step),
    };
    let entry = entry.filter(|e| e.destination == next.destination);
    let stale = match (&place.copies, secret) {
        (Some((name, plan)), Some(s)) if d.secrets_everywhere => {
            !copies::current_in(&d.ctx.stores.secrets, name, &plan.namespaces, &s.serial)
        }
        _ => false,
    };
    let view = decide::TargetView {
        destination,
        location: &place.location,
        version: t.version.as_deref(),
        stale,
    };
    let step = decide::step(view, entry, secret, now, VERIFY_EVERY);
    match &step {
        Step::WaitForCertificate => {
            let message = format!("no certificate in Secret {} yet", cert.spec.secret_name);
            record::condition(
                &mut next,
                false,
                Reason::WaitingForCertificate,
                message,
                now,
            );
        }
        Step::Refuse { reason, message } => {
            record::condition(&mut next, false, *reason, message.clone(), now);
        }
        Step::Wait { .. } | Step::Idle { .. } => {}
        Step::Deploy => {
            let result = match bundle.get(&d.ctx.client, cert).await {
                Ok(b) => carry_out(d, cert, &t, &place, (entry, &r.key()), b)
                    .await
                    .map(|dep| (dep, b.clone())),
                Err(e) => Err(DeployError::Refused {
                    reason: e.reason(),
                    words: e.to_string(),
                }),
            };
            next.target_version = t.version.clone();
            record::record(d, cert, &mut next, &place, result, now).await;
        }
    }
    (next, step)
}

/// Puts the bundle at the target.
async fn carry_out(
    d: &DeployContext,
    cert: &Certificate,
    t: &Resolved,
    place: &Place,
    (entry, key): (Option<&DeploymentStatus>, &str),
    bundle: &Bundle,
) -> Result<Deployed, DeployError> {
    // What this target deployed before, where it still applies.
    let same_place = entry.filter(|e| e.location.as_deref() == Some(place.location.as_str()));
    let Some((name, plan)) = place.copies.as_ref() else {
        let client = remote_client(d, t, cert).await?;
        let deployed = same_place.and_then(|e| e.remote_id.as_deref());
        let prior = remote::prior(&t.spec, deployed);
        let adopted = remote::adopted(&t.spec).is_some();
        // Another certificate deployed there before: its notAfter (see `Remote::deploy`).
        let replaced = same_place
            .filter(|e| e.serial.as_deref() != Some(bundle.info.serial.as_str()))
            .and_then(|e| e.not_after.as_ref().map(|t| t.0));
        let prior = (prior.as_deref(), adopted);
        return client.deploy(bundle, prior, replaced).await;
    };
    let cfg: &SecretCopiesTarget = t.spec.secret_copies.as_ref().expect("copies");
    let previous = entry
        .filter(|e| e.is_copies())
        .map(|e| {
            (
                e.remote_id.clone().unwrap_or_default(),
                e.namespaces.clone(),
            )
        })
        .unwrap_or_default();
    let source = source_key(cert);
    let owner = copies::Owner {
        source: &source,
        target: key,
    };
    copies::deploy(
        &d.ctx.client,
        bundle,
        owner,
        name,
        &plan.namespaces,
        cfg,
        (&previous.0, &previous.1),
    )
    .await
}
