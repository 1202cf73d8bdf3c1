//! One target of one Certificate: resolve it, decide, carry the step out, and say what
//! the entry in `status.deployments` becomes.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::{DeployContext, VERIFY_EVERY, source_key};
use crate::api::conditions::set_condition;
use crate::api::deploy::{DeployTargetSpec, SecretCopiesTarget};
use crate::api::{Certificate, Condition, DeployRef, DeploymentStatus, Reason, Time};
use crate::decide::deploy::{self as decide, CopyPlan, NamespaceView, SecretCert, Step};
use crate::deploy::{Bundle, DeployError, Deployed, acm, copies};

/// A target as found, with where its credential Secrets live.
struct Resolved {
    spec: DeployTargetSpec,
    version: Option<String>,
    cluster: bool,
    secret_namespace: String,
}

fn resolve(d: &DeployContext, cert: &Certificate, r: &DeployRef) -> Option<Resolved> {
    match r.is_cluster() {
        true => d
            .cluster_targets
            .get(&ObjectRef::new(&r.name))
            .map(|t| Resolved {
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

/// Whether the Certificate has (or will have) Secret copies to remove when it goes.
pub(super) fn wants_cleanup(
    d: &DeployContext,
    cert: &Certificate,
    entries: &[DeploymentStatus],
) -> bool {
    entries.iter().any(DeploymentStatus::is_copies)
        || (cert.spec.deploy_to.iter())
            .filter_map(|r| resolve(d, cert, r))
            .any(|t| t.spec.secret_copies.is_some())
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
struct Place {
    location: String,
    copies: Option<(String, CopyPlan)>,
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

fn place(d: &DeployContext, cert: &Certificate, t: &Resolved) -> Result<Place, (Reason, String)> {
    if let Some(cfg) = &t.spec.acm {
        return Ok(Place {
            location: acm::location(cfg),
            copies: None,
        });
    }
    let cfg = t.spec.secret_copies.as_ref().expect("one destination");
    if d.namespaces.is_none() {
        return Err((
            Reason::NotPermitted,
            "Secret copies are off: install the chart with secretCopies.enabled=true \
             (the operator's --secret-copies)"
                .into(),
        ));
    }
    let name = cfg
        .secret_name
        .clone()
        .unwrap_or_else(|| cert.spec.secret_name.clone());
    let selector = cfg.namespace_selector.clone();
    let matches = |labels: &std::collections::BTreeMap<String, String>| {
        selector.as_ref().is_some_and(|s| s.matches(labels))
    };
    let plan = decide::copy_plan(
        &cfg.namespaces,
        Some(&matches),
        &namespace_views(d),
        &cert.namespace().unwrap_or_default(),
        t.cluster,
    );
    Ok(Place {
        location: copies::location(&name, &plan.namespaces),
        copies: Some((name, plan)),
    })
}

fn condition(
    entry: &mut DeploymentStatus,
    ok: bool,
    reason: Reason,
    message: String,
    now: jiff::Timestamp,
) {
    set_condition(
        &mut entry.conditions,
        Condition::new("Deployed", ok, reason.as_str(), message),
        now,
        None,
    );
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
    let refuse = |mut next: DeploymentStatus, reason: Reason, message: String| {
        condition(&mut next, false, reason, message.clone(), now);
        (next, Step::Refuse { reason, message })
    };
    let Some(t) = resolve(d, cert, r) else {
        let kind = if r.is_cluster() {
            "ClusterDeployTarget"
        } else {
            "DeployTarget"
        };
        let message = format!("{kind} {} does not exist", r.name);
        return refuse(next, Reason::TargetNotFound, message);
    };
    let destination = match t.spec.destination() {
        Ok(dest) => dest,
        Err(m) => return refuse(next, Reason::InvalidTarget, m),
    };
    next.destination = Some(destination.into());
    let place = match place(d, cert, &t) {
        Ok(p) => p,
        Err((reason, message)) => return refuse(next, reason, message),
    };
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
            condition(
                &mut next,
                false,
                Reason::WaitingForCertificate,
                message,
                now,
            );
        }
        Step::Refuse { reason, message } => {
            condition(&mut next, false, *reason, message.clone(), now);
        }
        Step::Wait { .. } | Step::Idle { .. } => {}
        Step::Deploy => {
            let result = match bundle.get(&d.ctx.client, cert).await {
                Ok(b) => carry_out(d, cert, &t, &place, entry, b)
                    .await
                    .map(|dep| (dep, b.clone())),
                Err(e) => Err(DeployError::Refused {
                    reason: e.reason(),
                    words: e.to_string(),
                }),
            };
            next.target_version = t.version.clone();
            record(d, cert, &mut next, &place, result, now).await;
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
    entry: Option<&DeploymentStatus>,
    bundle: &Bundle,
) -> Result<Deployed, DeployError> {
    // What this target deployed before, where it still applies.
    let same_place = entry.filter(|e| e.location.as_deref() == Some(place.location.as_str()));
    if let Some(cfg) = &t.spec.acm {
        let ambient = match t.cluster {
            true => d.ctx.settings.solvers.ambient_credentials.cluster_issuers,
            false => d.ctx.settings.solvers.ambient_credentials.issuers,
        };
        let client = acm::Acm::new(&d.ctx.client, &t.secret_namespace, cfg, ambient).await?;
        let arn = (cfg.certificate_arn.as_deref())
            .or_else(|| same_place.and_then(|e| e.remote_id.as_deref()));
        return client
            .deploy(bundle, arn, cfg.certificate_arn.is_some(), &cfg.tags)
            .await;
    }
    let (name, plan) = place.copies.as_ref().expect("a copies place");
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
    copies::deploy(
        &d.ctx.client,
        bundle,
        &source,
        name,
        &plan.namespaces,
        cfg,
        (&previous.0, &previous.1),
    )
    .await
}

/// The entry after a deployment attempt, and its event.
async fn record(
    d: &DeployContext,
    cert: &Certificate,
    next: &mut DeploymentStatus,
    place: &Place,
    result: Result<(Deployed, Bundle), DeployError>,
    now: jiff::Timestamp,
) {
    let was = next
        .conditions
        .iter()
        .find(|c| c.type_ == "Deployed")
        .cloned();
    match result {
        Ok((dep, bundle)) => {
            next.location = Some(place.location.clone());
            next.remote_id = Some(dep.remote_id.clone());
            next.namespaces = dep.namespaces.clone();
            next.serial = Some(bundle.info.serial.clone());
            next.not_after = Some(Time(bundle.info.not_after));
            next.deployed_at = Some(Time(now));
            next.failed_attempts = None;
            next.next_attempt_time = None;
            let refused = place
                .copies
                .as_ref()
                .map(|(_, p)| p.refused.clone())
                .unwrap_or_default();
            let at = match dep.namespaces.is_empty() {
                true => dep.remote_id.clone(),
                false => format!("{} in {}", dep.remote_id, dep.namespaces.join(", ")),
            };
            let message = format!("serial {} deployed to {at}", bundle.info.serial);
            match refused.is_empty() {
                true => condition(next, true, Reason::Deployed, message, now),
                false => {
                    let m = format!("{message}; not copied to {}", refused.join(", "));
                    condition(next, false, Reason::NotPermitted, m, now);
                }
            }
            if dep.wrote {
                let note = format!(
                    "serial {} deployed to {} ({at})",
                    bundle.info.serial, next.target
                );
                d.ctx
                    .recorder
                    .event(cert, false, "Deployed", "Deploy", note)
                    .await;
            }
        }
        Err(e) => {
            let attempts = next.failed_attempts.unwrap_or(0) + 1;
            next.failed_attempts = Some(attempts);
            let wait = decide::backoff(attempts, rand::random::<f64>());
            next.next_attempt_time = Some(Time(now + wait));
            let message = e.to_string();
            condition(next, false, e.reason(), message.clone(), now);
            if was.is_none_or(|c| c.message != message) {
                let note = format!("{}: {message}", next.target);
                d.ctx
                    .recorder
                    .event(cert, true, "DeployFailed", "Deploy", note)
                    .await;
            }
        }
    }
}
