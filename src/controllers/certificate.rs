//! Certificate controller. One reconcile is a pipeline:
//!
//! 1. validate the spec (`InvalidSpec`) and find a Ready issuer (`IssuerNotFound`,
//!    `IssuerNotReady`);
//! 2. decide, from the Secret, status and time, whether the certificate is good
//!    ([`plan::decide`]); if so, report it and come back at the renewal time;
//! 3. otherwise drive one ACME order (resumed from `status.order.url` after a restart):
//!    present challenges, finalize with a key kept in a Secret (so a crash loses
//!    nothing), download the chain, write the TLS Secret, clean up the solvers.
//!
//! Waiting on the CA never blocks: the reconcile returns and is requeued after the
//! CA's `Retry-After` (or a short delay). Failures back off exponentially
//! ([`plan::backoff`]) and are reported with the CA's words.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus as AcmeOrderStatus,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rustls_pki_types::CertificateDer;
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER, IssuerHandle, read_secret_key, resolve_issuer};
use crate::acme::AcmeError;
use crate::api::certificate::{
    CertificateStatus, ChallengeStatus, OrderStatus, OutputFormatType, RotationPolicy,
};
use crate::api::conditions::{Condition, find, set_condition};
use crate::api::issuer::Solver;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::pki;
use crate::plan::{self, Decision, Request, SecretView};
use crate::solvers::rfc2136::{self, Rfc2136Client};
use crate::solvers::{ChallengeKind, http01, select_solver, solver_kind};

/// Annotations on the TLS Secret.
pub const ANNOTATION_CERTIFICATE: &str = "caas.dev/certificate-name";
pub const ANNOTATION_ISSUER: &str = "caas.dev/issuer";
pub const ANNOTATION_ISSUER_NAME: &str = "caas.dev/issuer-name";
pub const ANNOTATION_ISSUER_KIND: &str = "caas.dev/issuer-kind";
pub const ANNOTATION_SERIAL: &str = "caas.dev/serial";
pub const ANNOTATION_ALT_NAMES: &str = "caas.dev/alt-names";

/// Why issuance stopped, for status: a reason word, the message, and whether the order
/// is dead (so the next attempt must start a new one).
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    message: String,
    abandon_order: bool,
    /// Retry at once, without counting a failure (a rejected nonce).
    transient: bool,
    /// The CA answered with this failure (its `Retry-After` applies).
    from_ca: bool,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>, abandon_order: bool) -> Self {
        Failure {
            reason,
            message: message.into(),
            abandon_order,
            transient: false,
            from_ca: false,
        }
    }
}

impl From<AcmeError> for Failure {
    fn from(e: AcmeError) -> Self {
        let mut f = Failure::new(e.reason(), e.to_string(), false);
        f.transient = e.is_transient();
        f.from_ca = true;
        f
    }
}

impl From<instant_acme::Error> for Failure {
    fn from(e: instant_acme::Error) -> Self {
        AcmeError::from_acme(e).into()
    }
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        Failure::new("KubernetesError", e.to_string(), false)
    }
}

impl From<rfc2136::DnsError> for Failure {
    fn from(e: rfc2136::DnsError) -> Self {
        Failure::new("DNSUpdateFailed", e.to_string(), false)
    }
}

enum Progress {
    /// Waiting on the CA or DNS: look again after the CA's `Retry-After` if it sent
    /// one, else after [`plan::poll_delay`] (at least `floor`).
    Wait {
        retry_after: Option<Duration>,
        floor: Duration,
    },
    /// The chain and the key it was issued for.
    Issued { chain: String, key_pem: String },
}

/// Earliest next poll of the CA per Certificate: our own status writes trigger
/// reconciles too, and they must not turn into extra ACME requests.
fn next_poll() -> &'static Mutex<HashMap<String, (String, Instant)>> {
    static NEXT: OnceLock<Mutex<HashMap<String, (String, Instant)>>> = OnceLock::new();
    NEXT.get_or_init(Default::default)
}

fn key_of(cert: &Certificate) -> String {
    format!(
        "{}/{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    )
}

/// resourceVersion of the status this process last wrote, per Certificate.
fn written_versions() -> &'static Mutex<HashMap<String, u64>> {
    static WRITTEN: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    WRITTEN.get_or_init(Default::default)
}

/// The Certificate as the API server has it now when the watched copy is older than our
/// own last status write (its watch event has not arrived yet): acting on the older copy
/// would write an older status back.
async fn fresh(ctx: &Context, cert: Arc<Certificate>) -> Result<Arc<Certificate>, kube::Error> {
    let written = written_versions()
        .lock()
        .expect("lock")
        .get(&key_of(&cert))
        .copied();
    let cached = cert.resource_version().and_then(|v| v.parse::<u64>().ok());
    match (written, cached) {
        (Some(w), Some(c)) if c >= w => Ok(cert),
        (None, _) => Ok(cert),
        _ => {
            let api: Api<Certificate> =
                Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
            Ok(api
                .get_opt(&cert.name_any())
                .await?
                .map(Arc::new)
                .unwrap_or(cert))
        }
    }
}

pub async fn reconcile(cert: Arc<Certificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(&cert);
    crate::acme::SCOPE
        .scope(key, reconcile_scoped(cert, ctx))
        .await
}

async fn reconcile_scoped(cert: Arc<Certificate>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cert = fresh(&ctx, cert).await?;
    if cert.metadata.deletion_timestamp.is_some() {
        return finalize_deletion(&ctx, &cert).await;
    }
    let now = Timestamp::now();
    let mut status = cert.status.clone().unwrap_or_default();
    let generation = cert.metadata.generation;
    let now_s = now.to_string();
    let set = |status: &mut CertificateStatus, c: Condition| {
        set_condition(&mut status.conditions, c, &now_s, generation)
    };

    // 1. Validate, find the issuer.
    if let Err(message) = plan::validate(&cert.spec, "") {
        set(
            &mut status,
            Condition::new("Ready", false, "InvalidSpec", message),
        );
        status.conditions.retain(|c| c.type_ != "Issuing");
        save_status(&ctx, &cert, &status).await?;
        return Ok(Action::await_change());
    }
    let issuer = match resolve_issuer(&ctx, &cert).await? {
        Some(issuer) => issuer,
        None => {
            let kind = cert.spec.issuer_ref.kind.as_deref().unwrap_or("CaaSIssuer");
            set(
                &mut status,
                Condition::new(
                    "Ready",
                    false,
                    "IssuerNotFound",
                    format!("{kind} {:?} does not exist", cert.spec.issuer_ref.name),
                ),
            );
            save_status(&ctx, &cert, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    if !issuer.is_ready() {
        let why = issuer
            .status
            .as_ref()
            .and_then(|s| find(&s.conditions, "Ready"))
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "it has not been checked yet".into());
        set(
            &mut status,
            Condition::new(
                "Ready",
                false,
                "IssuerNotReady",
                format!("{} is not ready ({why})", issuer.display()),
            ),
        );
        save_status(&ctx, &cert, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let mut request = plan::validate(&cert.spec, &issuer.fingerprint()).expect("validated above");
    request.renew_request = cert.annotations().get(plan::RENEW_ANNOTATION).cloned();

    // 2. Is the Secret good?
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let secret = secrets.get_opt(&cert.spec.secret_name).await?;
    let view = secret.as_ref().map(secret_view);
    let decision = plan::decide(
        &request,
        &issuer.display(),
        Some(&status),
        view.as_ref(),
        now,
        rand::random(),
    );
    let current_valid = view
        .as_ref()
        .and_then(|v| v.cert.as_ref()?.as_ref().ok())
        .filter(|c| c.not_after > now)
        .cloned();

    match decision {
        Decision::Valid { renewal_time } => {
            let info = current_valid.expect("a valid decision has a certificate");
            if let Some(order) = status.order.take() {
                // A process stopped between writing the Secret and writing status: the
                // Secret holds this order's certificate, one status has not counted yet.
                if status.not_before.as_deref() != Some(info.not_before.to_string().as_str()) {
                    status.revision = Some(status.revision.unwrap_or(0) + 1);
                    status.manual_renewal = request.renew_request.clone();
                }
                cleanup(&ctx, &cert, &issuer, &order.challenges).await;
                delete_next_key(&ctx, &cert).await;
            }
            let renewal_time = match secret.as_ref() {
                Some(secret) => {
                    ari_renewal_time(&ctx, &cert, &issuer, secret, &info, renewal_time, now).await
                }
                None => renewal_time,
            };
            status.not_before = Some(info.not_before.to_string());
            status.not_after = Some(info.not_after.to_string());
            status.renewal_time = Some(renewal_time.to_string());
            status.failed_issuance_attempts = None;
            status.last_failure_time = None;
            set(
                &mut status,
                Condition::new(
                    "Ready",
                    true,
                    "Issued",
                    format!(
                        "the certificate is valid until {}; renewal at {renewal_time}",
                        info.not_after
                    ),
                ),
            );
            status.conditions.retain(|c| c.type_ != "Issuing");
            save_status(&ctx, &cert, &status).await?;
            let wait = renewal_time.duration_since(now).unsigned_abs();
            // Look again at least every 8 hours (clock changes, lost watches).
            Ok(Action::requeue(wait.clamp(
                Duration::from_secs(1),
                Duration::from_secs(8 * 3600),
            )))
        }
        Decision::Issue { reason, message } => {
            issue(
                &ctx,
                &cert,
                &issuer,
                &request,
                status,
                secret.as_ref(),
                current_valid.is_some(),
                reason,
                message,
                now,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    request: &Request,
    mut status: CertificateStatus,
    secret: Option<&Secret>,
    has_valid_cert: bool,
    why: &'static str,
    why_message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = cert.metadata.generation;
    let now_s = now.to_string();

    // Back off after failures; a changed spec starts afresh.
    let attempts = status.failed_issuance_attempts.unwrap_or(0);
    // The Issuing condition is rewritten on every attempt (Ready is not, while a valid
    // certificate exists): its generation says whether the failures were for this spec.
    let same_spec =
        find(&status.conditions, "Issuing").and_then(|c| c.observed_generation) == generation;
    let last_failure = status
        .last_failure_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    match plan::retry_gate(attempts, last_failure, same_spec, now) {
        plan::RetryGate::Wait(wait) => return Ok(Action::requeue(wait)),
        plan::RetryGate::Reset => {
            status.failed_issuance_attempts = None;
            status.last_failure_time = None;
        }
        plan::RetryGate::Go => {}
    }

    // Throttle: not before the time the last step set (a CA's Retry-After, a poll
    // interval), unless the spec changed since.
    let key = key_of(cert);
    let until = next_poll()
        .lock()
        .expect("lock")
        .get(&key)
        .filter(|(hash, _)| *hash == request.hash)
        .map(|(_, until)| *until);
    if let Some(until) = until
        && until > Instant::now()
    {
        return Ok(Action::requeue(until - Instant::now()));
    }

    if status.order.is_none() {
        // The reason names why (SecretMissing, RenewalDue, ...): events with the same
        // reason are merged into one series, which would hide a new cause.
        ctx.event(
            cert,
            false,
            why,
            "Issue",
            format!("issuing a certificate: {why_message}"),
        )
        .await;
        tracing::info!(certificate = %key, reason = why, "issuing: {why_message}");
    }
    let issuing = Condition::new("Issuing", true, why, why_message.clone());
    set_condition(&mut status.conditions, issuing, &now_s, generation);
    if !has_valid_cert {
        let pending = Condition::new(
            "Ready",
            false,
            "Issuing",
            format!("issuing the certificate ({why_message})"),
        );
        if find(&status.conditions, "Ready").is_none_or(|c| c.is_true() || c.reason != "Issuing") {
            set_condition(&mut status.conditions, pending, &now_s, generation);
        }
    }

    // A Retry-After left from an earlier request (an ARI check, say) must not apply to
    // this attempt's failures.
    let _ = ctx.stats.take_error_retry_after();
    let before = status.order.as_ref().map(plan::progress_signature);
    let outcome = match ctx.accounts.get(ctx, issuer).await {
        Ok(account) => drive_order(ctx, cert, issuer, &account, request, &mut status, secret).await,
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(Progress::Wait { retry_after, floor }) => {
            let unchanged = note_progress(&mut status, before, Timestamp::now());
            let delay = plan::poll_delay(unchanged, retry_after, floor);
            if let Some((reason, message)) = status
                .order
                .as_ref()
                .and_then(|o| plan::waiting_condition(o, unchanged, delay))
            {
                set_condition(
                    &mut status.conditions,
                    Condition::new("Issuing", true, reason, message),
                    &now_s,
                    generation,
                );
            }
            next_poll()
                .lock()
                .expect("lock")
                .insert(key, (request.hash.clone(), Instant::now() + delay));
            save_status(ctx, cert, &status).await?;
            Ok(Action::requeue(delay))
        }
        Ok(Progress::Issued { chain, key_pem }) => {
            next_poll().lock().expect("lock").remove(&key);
            finish_issued(ctx, cert, issuer, request, status, &chain, &key_pem, now).await
        }
        Err(failure) if failure.transient => {
            tracing::debug!(certificate = %key, "transient CA error ({}); retrying", failure.message);
            save_status(ctx, cert, &status).await?;
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        Err(failure) => {
            // Every failure counts and backs off; a CA that says when to come back (429
            // or 503 with Retry-After) is not asked sooner than that.
            let attempts = status.failed_issuance_attempts.unwrap_or(0) + 1;
            status.failed_issuance_attempts = Some(attempts);
            status.last_failure_time = Some(now_s.clone());
            let ca_wait = ctx
                .stats
                .take_error_retry_after()
                .filter(|_| failure.from_ca)
                .and_then(|w| jiff::SignedDuration::try_from(w).ok());
            let delay = plan::backoff(attempts).max(ca_wait.unwrap_or_default());
            if failure.abandon_order
                && let Some(order) = status.order.take()
            {
                cleanup(ctx, cert, issuer, &order.challenges).await;
                delete_next_key(ctx, cert).await;
            }
            next_poll().lock().expect("lock").insert(
                key.clone(),
                (request.hash.clone(), Instant::now() + delay.unsigned_abs()),
            );
            let message = match ca_wait {
                Some(wait) => format!(
                    "{} (attempt {attempts}; the CA asks to wait {wait:#}; next try in {delay:#})",
                    failure.message
                ),
                None => format!(
                    "{} (attempt {attempts}; next try in {delay:#})",
                    failure.message
                ),
            };
            tracing::warn!(certificate = %key, reason = failure.reason, "issuance failed: {message}");
            ctx.event(cert, true, failure.reason, "Issue", message.clone())
                .await;
            set_condition(
                &mut status.conditions,
                Condition::new("Issuing", false, failure.reason, message.clone()),
                &now_s,
                generation,
            );
            if !has_valid_cert {
                set_condition(
                    &mut status.conditions,
                    Condition::new("Ready", false, failure.reason, message),
                    &now_s,
                    generation,
                );
            }
            save_status(ctx, cert, &status).await?;
            Ok(Action::requeue(delay.unsigned_abs()))
        }
    }
}

/// Resumes the order in status (if it is for this request) or creates one, then takes
/// as many steps as the CA allows without waiting.
async fn drive_order(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    account: &Account,
    request: &Request,
    status: &mut CertificateStatus,
    secret: Option<&Secret>,
) -> Result<Progress, Failure> {
    let mut order: Option<Order> = None;
    if let Some(known) = status.order.clone() {
        if known.request_hash == request.hash && known.state != "invalid" {
            match account.order(known.url.clone()).await {
                Ok(o) => order = Some(o),
                Err(instant_acme::Error::Api(problem))
                    if problem.status == Some(404)
                        || problem
                            .r#type
                            .as_deref()
                            .is_some_and(|t| t.ends_with(":malformed")) =>
                {
                    tracing::info!(certificate = %key_of(cert), ?problem, "the stored order is gone; starting a new one");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if order.is_none() {
            cleanup(ctx, cert, issuer, &known.challenges).await;
            status.order = None;
        }
    }
    let mut order = match order {
        Some(o) => o,
        None => {
            let identifiers: Vec<Identifier> = request
                .dns_names
                .iter()
                .map(|n| Identifier::Dns(n.clone()))
                .chain(request.ip_addresses.iter().map(|ip| Identifier::Ip(*ip)))
                .collect();
            let new_order = || {
                let new = NewOrder::new(&identifiers);
                match issuer.spec.profile.as_deref() {
                    Some(profile) => new.profile(profile),
                    None => new,
                }
            };
            // A renewal names the certificate it replaces (ARI, RFC 9773), so the CA can
            // exempt it from rate limits; a CA that refuses gets a plain order.
            let replaces = secret
                .filter(|s| s.annotations().get(ANNOTATION_ISSUER) == Some(&issuer.display()))
                .and_then(leaf_der);
            let replaces_id = replaces.as_ref().and_then(|der| {
                CertificateIdentifier::try_from(&CertificateDer::from(der.as_slice())).ok()
            });
            let o = match &replaces_id {
                Some(id) => match account.new_order(&new_order().replaces(id.clone())).await {
                    Ok(o) => {
                        tracing::info!(certificate = %key_of(cert), replaces = %id, "renewal order names the certificate it replaces");
                        o
                    }
                    // Only a refusal of the request itself (not a rate limit or an
                    // outage) is retried without `replaces`.
                    Err(instant_acme::Error::Api(problem))
                        if !problem
                            .r#type
                            .as_deref()
                            .is_some_and(|t| t.ends_with(":rateLimited"))
                            && problem.status.is_none_or(|s| s < 500) =>
                    {
                        tracing::info!(certificate = %key_of(cert), ?problem, "the CA refused `replaces`; ordering without it");
                        account.new_order(&new_order()).await?
                    }
                    Err(e) => return Err(e.into()),
                },
                None => account.new_order(&new_order()).await?,
            };
            status.order = Some(OrderStatus {
                url: o.url().to_string(),
                state: "pending".into(),
                request_hash: request.hash.clone(),
                challenges: Vec::new(),
                state_since: Some(Timestamp::now().to_string()),
            });
            // Persist the order URL before anything else: a restart resumes this order.
            save_status(ctx, cert, status).await?;
            ctx.event(
                cert,
                false,
                "OrderCreated",
                "Issue",
                format!("created ACME order {}", o.url()),
            )
            .await;
            o
        }
    };

    // Right after finalize, a quick CA issues within a second or two: look again inline
    // (a few times) instead of a full reconcile round.
    let mut finalized_now = false;
    for _ in 0..10 {
        let state = order.state().status;
        if let Some(o) = status.order.as_mut() {
            o.state = order_state_name(state).into();
        }
        match state {
            AcmeOrderStatus::Pending => {
                return present_challenges(ctx, cert, issuer, &mut order, status).await;
            }
            AcmeOrderStatus::Ready => {
                let key_pem = next_key(ctx, cert, request, secret).await?;
                let csr = pki::csr_der(
                    &key_pem,
                    &request.dns_names,
                    &request.ip_addresses,
                    request.common_name.as_deref(),
                )
                .map_err(|e| Failure::new("InvalidSpec", e.to_string(), true))?;
                match order.finalize_csr(&csr).await {
                    Ok(()) => {}
                    // A finalize the CA already took (its answer was lost and the request
                    // sent again): the order has moved on; look at it again.
                    Err(instant_acme::Error::Api(problem))
                        if problem
                            .r#type
                            .as_deref()
                            .is_some_and(|t| t.ends_with(":orderNotReady")) =>
                    {
                        order.refresh().await?;
                    }
                    Err(e) => return Err(e.into()),
                }
                finalized_now = true;
            }
            AcmeOrderStatus::Processing => {
                let retry_after = ctx.stats.take_retry_after(order.url());
                if !finalized_now || retry_after.is_some_and(|w| w > Duration::from_secs(2)) {
                    return Ok(Progress::Wait {
                        retry_after,
                        floor: Duration::from_millis(300),
                    });
                }
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(300))).await;
                order.refresh().await?;
            }
            AcmeOrderStatus::Valid => {
                let chain = order.certificate().await?.ok_or_else(|| {
                    Failure::new(
                        "ACMEError",
                        "the CA sent no certificate for a valid order",
                        true,
                    )
                })?;
                let key_pem = match next_key_existing(ctx, cert, request, secret).await? {
                    Some(k) => k,
                    None => {
                        return Err(Failure::new(
                            "KeyLost",
                            "the private key for this order is gone (its Secret was deleted); starting over",
                            true,
                        ));
                    }
                };
                // Never write a Secret that the next look would reject: check the chain,
                // the key and the names first.
                let info = pki::parse_chain(&chain).map_err(|e| {
                    Failure::new(
                        "InvalidCertificate",
                        format!("the CA sent an unreadable certificate: {e}"),
                        true,
                    )
                })?;
                if !pki::key_matches(&key_pem, &info) {
                    return Err(Failure::new(
                        "CertificateMismatch",
                        "the issued certificate is not for this order's key; starting over",
                        true,
                    ));
                }
                let mut got: Vec<String> = info
                    .dns_names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect();
                let mut want = request.dns_names.clone();
                got.sort();
                want.sort();
                if got != want {
                    return Err(Failure::new(
                        "CertificateMismatch",
                        format!("the CA issued names {got:?}, not the requested {want:?}"),
                        true,
                    ));
                }
                return Ok(Progress::Issued { chain, key_pem });
            }
            AcmeOrderStatus::Invalid => {
                let message = order_errors(&mut order, status).await;
                return Err(Failure::new("OrderFailed", message, true));
            }
        }
    }
    Ok(Progress::Wait {
        retry_after: None,
        floor: Duration::from_secs(1),
    })
}

/// Restarts the order's `stateSince` clock when its progress signature changed since
/// `before`; returns how long it has been unchanged.
fn note_progress(
    status: &mut CertificateStatus,
    before: Option<String>,
    now: Timestamp,
) -> Duration {
    let Some(order) = status.order.as_mut() else {
        return Duration::ZERO;
    };
    let since = order
        .state_since
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    match since {
        Some(since) if before.as_deref() == Some(plan::progress_signature(order).as_str()) => {
            now.duration_since(since).unsigned_abs()
        }
        _ => {
            order.state_since = Some(now.to_string());
            Duration::ZERO
        }
    }
}

fn order_state_name(s: AcmeOrderStatus) -> &'static str {
    match s {
        AcmeOrderStatus::Pending => "pending",
        AcmeOrderStatus::Ready => "ready",
        AcmeOrderStatus::Processing => "processing",
        AcmeOrderStatus::Valid => "valid",
        AcmeOrderStatus::Invalid => "invalid",
    }
}

/// The CA's reasons for an invalid order: its own error and each failed challenge's.
async fn order_errors(order: &mut Order, status: &mut CertificateStatus) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &order.state().error {
        parts.push(problem_text(e));
    }
    let mut authzs = order.authorizations();
    while let Some(Ok(a)) = authzs.next().await {
        let name = a.identifier().to_string();
        for ch in &a.challenges {
            if let Some(e) = &ch.error {
                let text = problem_text(e);
                parts.push(format!("{name}: {text}"));
                if let Some(rec) = status
                    .order
                    .as_mut()
                    .and_then(|o| o.challenges.iter_mut().find(|c| c.token == ch.token))
                {
                    rec.state = "invalid".into();
                    rec.error = Some(text);
                }
            }
        }
    }
    if parts.is_empty() {
        "the CA marked the order invalid".into()
    } else {
        format!("the CA marked the order invalid: {}", parts.join("; "))
    }
}

fn problem_text(p: &instant_acme::Problem) -> String {
    let kind = p
        .r#type
        .as_deref()
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("");
    format!("{kind}: {}", p.detail.as_deref().unwrap_or(""))
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

fn acme_challenge_state(s: instant_acme::ChallengeStatus) -> &'static str {
    match s {
        instant_acme::ChallengeStatus::Pending => "pending",
        instant_acme::ChallengeStatus::Processing => "processing",
        instant_acme::ChallengeStatus::Valid => "valid",
        instant_acme::ChallengeStatus::Invalid => "invalid",
    }
}

fn upsert(status: &mut CertificateStatus, rec: ChallengeStatus) {
    if let Some(order) = status.order.as_mut() {
        match order.challenges.iter_mut().find(|c| c.token == rec.token) {
            Some(old) => *old = rec,
            None => order.challenges.push(rec),
        }
    }
}

/// Presents every pending authorization's challenge with the solver the issuer picks,
/// and tells the CA to validate the ones that are in place.
async fn present_challenges(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    order: &mut Order,
    status: &mut CertificateStatus,
) -> Result<Progress, Failure> {
    let labels = cert.labels().clone();
    let mut waiting_on_dns = false;
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        let dns_name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                let errors: Vec<String> = authz
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref().map(problem_text))
                    .collect();
                return Err(Failure::new(
                    "ChallengeFailed",
                    format!(
                        "the authorization for {dns_name} is {other:?}: {}",
                        errors.join("; ")
                    ),
                    true,
                ));
            }
        }
        let Some(index) = select_solver(&issuer.spec.solvers, &dns_name, &labels) else {
            let hint = if dns_name.starts_with("*.") {
                " (wildcards need a dns01 solver)"
            } else {
                ""
            };
            return Err(Failure::new(
                "NoSolver",
                format!("no solver of {} matches {dns_name}{hint}", issuer.display()),
                true,
            ));
        };
        let solver: &Solver = &issuer.spec.solvers[index];
        let kind = solver_kind(solver).map_err(|e| Failure::new("InvalidSpec", e, true))?;
        let Some(mut challenge) = authz.challenge(challenge_type(kind)) else {
            return Err(Failure::new(
                "ChallengeNotOffered",
                format!("the CA does not offer {} for {dns_name}", kind.acme_name()),
                true,
            ));
        };
        let mut rec = ChallengeStatus {
            type_: kind.acme_name().into(),
            dns_name: dns_name.clone(),
            token: challenge.token.clone(),
            key: challenge.key_authorization().as_str().to_string(),
            state: acme_challenge_state(challenge.status).into(),
            error: challenge.error.as_ref().map(problem_text),
        };
        match challenge.status {
            instant_acme::ChallengeStatus::Pending => {}
            instant_acme::ChallengeStatus::Invalid => {
                return Err(Failure::new(
                    "ChallengeFailed",
                    format!(
                        "{} for {dns_name} failed: {}",
                        kind.acme_name(),
                        rec.error.clone().unwrap_or_default()
                    ),
                    true,
                ));
            }
            _ => {
                upsert(status, rec);
                continue;
            }
        }
        let in_place = match kind {
            ChallengeKind::Http01 => {
                let http = solver.http01.clone().unwrap_or_default();
                // Every replica answers from the watched status, and the sweep keeps the
                // temporary objects of published challenges: publish first.
                upsert(status, rec.clone());
                save_status(ctx, cert, status).await?;
                http01::present(
                    &ctx.client,
                    cert,
                    &http,
                    &dns_name,
                    &rec.token,
                    ctx.settings.solver_endpoint,
                )
                .await?;
                wait_for_token(ctx, &rec.token).await
            }
            ChallengeKind::Dns01 => {
                let (client, fqdn) = dns_solver(ctx, issuer, solver, &dns_name).await?;
                // In status first: whatever happens next, cleanup knows the record; and
                // a deletion of the Certificate waits until the record is gone.
                upsert(status, rec.clone());
                save_status(ctx, cert, status).await?;
                ensure_finalizer(ctx, cert).await?;
                let value = dns_value(&rec.key);
                client.add_txt(&fqdn, &value).await?;
                let visible = client.has_txt(&fqdn, &value).await?;
                if !visible {
                    rec.error = Some(format!(
                        "waiting for {fqdn} TXT to be served by the zone's server"
                    ));
                }
                visible
            }
            ChallengeKind::TlsAlpn01 => {
                // Answered by every replica's TLS listener from the watched status.
                upsert(status, rec.clone());
                save_status(ctx, cert, status).await?;
                wait_for_token(ctx, &rec.token).await
            }
        };
        if in_place {
            challenge.set_ready().await?;
            rec.state = "processing".into();
            rec.error = None;
        } else {
            waiting_on_dns = true;
        }
        upsert(status, rec);
    }
    if waiting_on_dns {
        return Ok(Progress::Wait {
            retry_after: None,
            floor: Duration::from_secs(2),
        });
    }
    Ok(Progress::Wait {
        retry_after: ctx.stats.take_retry_after(order.url()),
        floor: Duration::from_millis(500),
    })
}

/// Waits (up to 5 s) until the watched Certificates hold the key authorization for
/// `token`, so that this replica's listener answers the CA.
async fn wait_for_token(ctx: &Context, token: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let published = ctx.certificates.state().iter().any(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.order.as_ref())
                .is_some_and(|o| {
                    o.challenges
                        .iter()
                        .any(|ch| ch.token == token && !ch.key.is_empty())
                })
        });
        if published {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The TXT value for a DNS-01 key authorization: base64url(SHA-256(key authorization)).
pub fn dns_value(key_authorization: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The RFC 2136 client for a DNS-01 solver, and the record name for `dns_name`.
async fn dns_solver(
    ctx: &Context,
    issuer: &IssuerHandle,
    solver: &Solver,
    dns_name: &str,
) -> Result<(Rfc2136Client, String), Failure> {
    let cfg = solver
        .dns01
        .as_ref()
        .and_then(|d| d.rfc2136.as_ref())
        .ok_or_else(|| Failure::new("InvalidSpec", "the dns01 solver names no provider", true))?;
    let r = &cfg.tsig_secret_secret_ref;
    let secret = read_secret_key(&ctx.client, &issuer.secret_namespace, &r.name, &r.key)
        .await?
        .ok_or_else(|| {
            Failure::new(
                "SecretNotFound",
                format!(
                    "the TSIG secret {}/{} (key {:?}) does not exist",
                    issuer.secret_namespace, r.name, r.key
                ),
                false,
            )
        })?;
    let server = rfc2136::resolve_nameserver(&cfg.nameserver).await?;
    let client = Rfc2136Client::new(
        server,
        &cfg.tsig_key_name,
        cfg.tsig_algorithm.as_deref(),
        &secret,
    )?;
    let base = dns_name.strip_prefix("*.").unwrap_or(dns_name);
    Ok((client, format!("_acme-challenge.{base}.")))
}

/// Removes what the challenges left: temporary HTTP-01 objects and DNS-01 TXT records.
/// Best effort: failures are logged, and the startup sweep catches HTTP-01 leftovers.
/// Removes what the order's challenges put in place: temporary HTTP-01 objects and
/// DNS-01 TXT records. Once the TXT records are gone, the deletion guard goes too.
/// Returns whether every TXT record was removed.
async fn cleanup(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    challenges: &[ChallengeStatus],
) -> bool {
    let ns = cert.namespace().unwrap_or_default();
    if let Err(e) = http01::cleanup(&ctx.client, &ns, &cert.name_any(), &[]).await {
        tracing::warn!(certificate = %key_of(cert), error = %e, "cannot delete temporary HTTP-01 objects");
    }
    let labels = cert.labels().clone();
    let mut dns_ok = true;
    for ch in challenges.iter().filter(|c| c.type_ == "dns-01") {
        let Some(index) = select_solver(&issuer.spec.solvers, &ch.dns_name, &labels) else {
            dns_ok = false;
            continue;
        };
        let result = async {
            let (client, fqdn) =
                dns_solver(ctx, issuer, &issuer.spec.solvers[index], &ch.dns_name).await?;
            client.remove_txt(&fqdn, &dns_value(&ch.key)).await?;
            Ok::<_, Failure>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(certificate = %key_of(cert), error = %e.message, "cannot remove a DNS-01 TXT record");
            dns_ok = false;
        }
    }
    if challenges.iter().any(|c| c.type_ == "dns-01") {
        if !dns_ok && cert.metadata.deletion_timestamp.is_none() {
            // Status is about to forget the order: say which records may be left.
            let names = txt_records(challenges);
            ctx.event(
                cert,
                true,
                "CleanupFailed",
                "Issue",
                format!(
                    "could not remove the TXT records {} (see the operator log); remove them by hand",
                    names.join(", ")
                ),
            )
            .await;
        }
        if (cert.metadata.deletion_timestamp.is_none() || dns_ok)
            && let Err(e) = remove_finalizer(ctx, cert).await
        {
            tracing::warn!(certificate = %key_of(cert), error = %e, "cannot remove the DNS-01 cleanup finalizer");
        }
    }
    dns_ok
}

/// The TXT record names the DNS-01 challenges among `challenges` publish.
fn txt_records(challenges: &[ChallengeStatus]) -> Vec<String> {
    challenges
        .iter()
        .filter(|c| c.type_ == "dns-01")
        .map(|c| format!("_acme-challenge.{}", c.dns_name.trim_start_matches("*.")))
        .collect()
}

/// Applies the JSON patch `ops` to the Certificate.
async fn patch_certificate(
    api: &Api<Certificate>,
    name: &str,
    ops: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a valid JSON patch");
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// Guards DNS-01 TXT records, which live outside the cluster: while any is published
/// the Certificate carries this finalizer, so deleting it mid-order removes them first.
/// (HTTP-01 objects are owned by the Certificate: garbage collection removes them.)
pub const DNS_CLEANUP_FINALIZER: &str = "caas.dev/dns01-cleanup";

async fn ensure_finalizer(ctx: &Context, cert: &Certificate) -> Result<(), kube::Error> {
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let current = api.get(&cert.name_any()).await?;
    if current
        .finalizers()
        .iter()
        .any(|f| f == DNS_CLEANUP_FINALIZER)
    {
        return Ok(());
    }
    let add = match current.metadata.finalizers {
        Some(_) => {
            json!({ "op": "add", "path": "/metadata/finalizers/-", "value": DNS_CLEANUP_FINALIZER })
        }
        None => {
            json!({ "op": "add", "path": "/metadata/finalizers", "value": [DNS_CLEANUP_FINALIZER] })
        }
    };
    // Appending cannot drop another controller's finalizer; creating the list can only
    // race with another first finalizer in the instant between GET and PATCH.
    patch_certificate(&api, &cert.name_any(), json!([add])).await
}

async fn remove_finalizer(ctx: &Context, cert: &Certificate) -> Result<(), kube::Error> {
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let Some(current) = api.get_opt(&cert.name_any()).await? else {
        return Ok(());
    };
    let Some(index) = current
        .finalizers()
        .iter()
        .position(|f| f == DNS_CLEANUP_FINALIZER)
    else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    patch_certificate(
        &api,
        &cert.name_any(),
        json!([
            { "op": "test", "path": path, "value": DNS_CLEANUP_FINALIZER },
            { "op": "remove", "path": path },
        ]),
    )
    .await
}

/// A Certificate being deleted: remove the TXT records of its order, then let it go.
/// A DNS server that refuses is retried for 2 minutes; an issuer that is gone (deleted
/// with its namespace, say) cannot be used to remove anything. Either way the deletion
/// then goes ahead and an event names the records left behind. A failure to drop the
/// finalizer is an error: the controller retries it.
async fn finalize_deletion(ctx: &Context, cert: &Certificate) -> Result<Action, Error> {
    if !cert.finalizers().iter().any(|f| f == DNS_CLEANUP_FINALIZER) {
        return Ok(Action::await_change());
    }
    let challenges = cert
        .status
        .as_ref()
        .and_then(|s| s.order.as_ref())
        .map(|o| o.challenges.clone())
        .unwrap_or_default();
    let records = txt_records(challenges.as_slice());
    if records.is_empty() {
        remove_finalizer(ctx, cert).await?;
        return Ok(Action::await_change());
    }
    let issuer = resolve_issuer(ctx, cert).await?;
    let removed = match &issuer {
        Some(issuer) => cleanup(ctx, cert, issuer, &challenges).await,
        None => false,
    };
    if removed {
        remove_finalizer(ctx, cert).await?;
        return Ok(Action::await_change());
    }
    let deleting_for = cert
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .unwrap_or_default();
    if issuer.is_some() && deleting_for < jiff::SignedDuration::from_mins(2) {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    ctx.event(
        cert,
        true,
        "CleanupFailed",
        "Delete",
        format!(
            "could not remove the TXT records {} ({}); deleting anyway: remove them by hand",
            records.join(", "),
            if issuer.is_some() {
                "the DNS server refused for 2 minutes"
            } else {
                "the issuer is gone"
            }
        ),
    )
    .await;
    remove_finalizer(ctx, cert).await?;
    Ok(Action::await_change())
}

fn next_key_name(cert: &Certificate) -> String {
    format!("{}-next-key", cert.name_any())
}

/// The key the current order is finalized with, if one was already made (or, with
/// `rotationPolicy: Never`, the Secret's current key).
async fn next_key_existing(
    ctx: &Context,
    cert: &Certificate,
    request: &Request,
    secret: Option<&Secret>,
) -> Result<Option<String>, Failure> {
    if request.rotation == RotationPolicy::Never
        && let Some(key) = secret.and_then(|s| secret_string(s, "tls.key"))
        && request.key.matches(&key)
    {
        return Ok(Some(key));
    }
    let ns = cert.namespace().unwrap_or_default();
    let key = read_secret_key(&ctx.client, &ns, &next_key_name(cert), "tls.key").await?;
    Ok(key
        .map(|k| String::from_utf8_lossy(&k).to_string())
        .filter(|k| request.key.matches(k)))
}

/// The key to finalize with: reused if the order already has one, otherwise a new key
/// stored in a Secret before it is used, so a crash between finalize and writing the TLS
/// Secret loses nothing.
async fn next_key(
    ctx: &Context,
    cert: &Certificate,
    request: &Request,
    secret: Option<&Secret>,
) -> Result<String, Failure> {
    if let Some(key) = next_key_existing(ctx, cert, request, secret).await? {
        return Ok(key);
    }
    let key_pem = pki::generate_key(&request.key)
        .map_err(|e| Failure::new("InvalidSpec", e.to_string(), true))?;
    let ns = cert.namespace().unwrap_or_default();
    let owner = cert.controller_owner_ref(&()).expect("stored Certificate");
    let body = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": next_key_name(cert),
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                COMPONENT_LABEL: "next-key",
                CERTIFICATE_LABEL: cert.name_any(),
            },
            "ownerReferences": [owner],
        },
        "stringData": { "tls.key": key_pem },
    });
    Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &next_key_name(cert),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(key_pem)
}

async fn delete_next_key(ctx: &Context, cert: &Certificate) {
    let ns = cert.namespace().unwrap_or_default();
    match Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .delete(&next_key_name(cert), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            tracing::warn!(certificate = %key_of(cert), error = %e, "cannot delete the next-key Secret")
        }
    }
}

/// Writes the TLS Secret, then status, then cleans up.
#[allow(clippy::too_many_arguments)]
async fn finish_issued(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    request: &Request,
    mut status: CertificateStatus,
    chain: &str,
    key_pem: &str,
    now: Timestamp,
) -> Result<Action, Error> {
    let info = match pki::parse_chain(chain) {
        Ok(info) => info,
        Err(e) => {
            // Should not happen with a conforming CA; report and start over.
            status.order = None;
            set_condition(
                &mut status.conditions,
                Condition::new(
                    "Issuing",
                    false,
                    "InvalidCertificate",
                    format!("the CA sent an unreadable certificate: {e}"),
                ),
                &now.to_string(),
                cert.metadata.generation,
            );
            save_status(ctx, cert, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    let formats: Vec<OutputFormatType> = cert
        .spec
        .additional_output_formats
        .iter()
        .map(|f| f.type_)
        .collect();
    let data = pki::secret_data(chain, key_pem, &formats).expect("the key was made by us");
    let data: BTreeMap<String, String> = data
        .into_iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
        .collect();
    let template = cert.spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(COMPONENT_LABEL.into(), "tls".into());
    labels.insert(CERTIFICATE_LABEL.into(), cert.name_any());
    let mut annotations = template.annotations.clone();
    annotations.insert(ANNOTATION_CERTIFICATE.into(), cert.name_any());
    annotations.insert(ANNOTATION_ISSUER.into(), issuer.display());
    annotations.insert(ANNOTATION_ISSUER_NAME.into(), issuer.name.clone());
    annotations.insert(
        ANNOTATION_ISSUER_KIND.into(),
        issuer
            .display()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    );
    annotations.insert(ANNOTATION_SERIAL.into(), info.serial.clone());
    annotations.insert(ANNOTATION_ALT_NAMES.into(), request.dns_names.join(","));
    let body = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": { "name": cert.spec.secret_name, "labels": labels, "annotations": annotations },
        "data": data,
    });
    let ns = cert.namespace().unwrap_or_default();
    if let Err(e) = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &cert.spec.secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        // The certificate is safe at the CA and its key in the next-key Secret: keep
        // the order (the next attempt downloads it again) and say why nothing changed.
        let attempts = status.failed_issuance_attempts.unwrap_or(0) + 1;
        let delay = plan::backoff(attempts);
        status.failed_issuance_attempts = Some(attempts);
        status.last_failure_time = Some(now.to_string());
        let message = format!(
            "the certificate was issued but Secret {} cannot be written: {e} (attempt {attempts}; next try in {delay:#})",
            cert.spec.secret_name
        );
        tracing::warn!(certificate = %key_of(cert), "{message}");
        ctx.event(cert, true, "SecretWriteFailed", "Issue", message.clone())
            .await;
        let reason = Condition::new("Issuing", false, "SecretWriteFailed", message.clone());
        set_condition(
            &mut status.conditions,
            reason,
            &now.to_string(),
            cert.metadata.generation,
        );
        if find(&status.conditions, "Ready").is_none_or(|c| !c.is_true()) {
            set_condition(
                &mut status.conditions,
                Condition::new("Ready", false, "SecretWriteFailed", message),
                &now.to_string(),
                cert.metadata.generation,
            );
        }
        save_status(ctx, cert, &status).await?;
        return Ok(Action::requeue(delay.unsigned_abs()));
    }

    let lifetime = info.not_after.duration_since(info.not_before);
    let before = crate::renewal::renew_before(
        lifetime,
        request.renew_before,
        request.renew_before_percentage,
    );
    let renewal_time =
        crate::renewal::renewal_time(info.not_before, info.not_after, before, rand::random());
    let challenges = status
        .order
        .take()
        .map(|o| o.challenges)
        .unwrap_or_default();
    status.revision = Some(status.revision.unwrap_or(0) + 1);
    status.manual_renewal = request.renew_request.clone();
    status.not_before = Some(info.not_before.to_string());
    status.not_after = Some(info.not_after.to_string());
    status.renewal_time = Some(renewal_time.to_string());
    status.failed_issuance_attempts = None;
    status.last_failure_time = None;
    let message = format!(
        "issued by {}; valid until {}; renewal at {renewal_time}",
        issuer.display(),
        info.not_after
    );
    set_condition(
        &mut status.conditions,
        Condition::new("Ready", true, "Issued", message.clone()),
        &now.to_string(),
        cert.metadata.generation,
    );
    if let Some(started) = find(&status.conditions, "Issuing")
        .and_then(|c| c.last_transition_time.as_deref())
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        let secs = Timestamp::now()
            .duration_since(started)
            .as_secs_f64()
            .max(0.0);
        ctx.metrics.issuance_duration.observe(secs);
    }
    status.conditions.retain(|c| c.type_ != "Issuing");
    // Clean up before status forgets the order: a process killed in between finds the
    // order again on restart and cleans up then.
    cleanup(ctx, cert, issuer, &challenges).await;
    save_status(ctx, cert, &status).await?;
    tracing::info!(certificate = %key_of(cert), serial = %info.serial, "certificate issued; {message}");
    ctx.event(
        cert,
        false,
        "Issued",
        "Issue",
        format!("certificate issued (serial {}); {message}", info.serial),
    )
    .await;
    delete_next_key(ctx, cert).await;
    let wait = renewal_time.duration_since(Timestamp::now()).unsigned_abs();
    Ok(Action::requeue(wait.clamp(
        Duration::from_secs(1),
        Duration::from_secs(8 * 3600),
    )))
}

/// The DER of the leaf certificate in a TLS Secret.
fn leaf_der(secret: &Secret) -> Option<Vec<u8>> {
    let pem = secret_string(secret, "tls.crt")?;
    pki::pem_certificates(&pem).ok()?.into_iter().next()
}

/// When the next ARI check is due per Certificate (and for which certificate serial).
fn ari_checks() -> &'static Mutex<HashMap<String, (String, Instant)>> {
    static CHECKS: OnceLock<Mutex<HashMap<String, (String, Instant)>>> = OnceLock::new();
    CHECKS.get_or_init(Default::default)
}

/// The renewal time with the CA's advice (ARI, RFC 9773): when the CA offers renewal
/// information, a random moment inside its suggested window (kept while the window still
/// holds it), re-checked when the CA's `Retry-After` says (bounded to 1-24 h). Without
/// ARI, or when the CA cannot be asked, `current` stands.
async fn ari_renewal_time(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    secret: &Secret,
    info: &pki::CertInfo,
    current: Timestamp,
    now: Timestamp,
) -> Timestamp {
    let key = key_of(cert);
    let due = ari_checks()
        .lock()
        .expect("lock")
        .get(&key)
        .is_none_or(|(serial, next)| *serial != info.serial || *next <= Instant::now());
    if !due {
        return current;
    }
    let next_check = |after: Duration| {
        ari_checks()
            .lock()
            .expect("lock")
            .insert(key.clone(), (info.serial.clone(), Instant::now() + after));
    };
    let Some(der) = leaf_der(secret) else {
        return current;
    };
    let Ok(id) = CertificateIdentifier::try_from(&CertificateDer::from(der.as_slice())) else {
        next_check(Duration::from_secs(24 * 3600));
        return current;
    };
    let account = match ctx.accounts.get(ctx, issuer).await {
        Ok(a) => a,
        Err(_) => return current,
    };
    match account.renewal_info(&id).await {
        Ok((ri, retry_after)) => {
            next_check(
                retry_after.clamp(Duration::from_secs(3600), Duration::from_secs(24 * 3600)),
            );
            let start =
                Timestamp::from_second(ri.suggested_window.start.unix_timestamp()).unwrap_or(now);
            let end =
                Timestamp::from_second(ri.suggested_window.end.unix_timestamp()).unwrap_or(now);
            let chosen = crate::renewal::ari_renewal_time(start, end, current, now, rand::random());
            tracing::info!(certificate = %key, window_start = %start, window_end = %end, renewal = %chosen, "renewal time in the CA's ARI window");
            chosen
        }
        Err(instant_acme::Error::Unsupported(_)) => {
            next_check(Duration::from_secs(24 * 3600));
            current
        }
        Err(e) => {
            tracing::debug!(certificate = %key, error = %e, "ARI check failed; keeping the renewal time");
            next_check(Duration::from_secs(3600));
            current
        }
    }
}

fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
}

/// What the decision needs from a Secret.
pub fn secret_view(secret: &Secret) -> SecretView {
    SecretView {
        cert: secret_string(secret, "tls.crt")
            .filter(|s| !s.trim().is_empty())
            .map(|pem| pki::parse_chain(&pem).map_err(|e| e.to_string())),
        key_pem: secret_string(secret, "tls.key").filter(|s| !s.trim().is_empty()),
        issuer: secret.annotations().get(ANNOTATION_ISSUER).cloned(),
    }
}

/// Writes status by server-side apply when it differs from what the object has.
async fn save_status(
    ctx: &Context,
    cert: &Certificate,
    status: &CertificateStatus,
) -> Result<(), kube::Error> {
    if cert.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    let written = api
        .patch_status(
            &cert.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(
                json!({ "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate", "status": status }),
            ),
        )
        .await?;
    if let Some(rv) = written
        .resource_version()
        .and_then(|v| v.parse::<u64>().ok())
    {
        written_versions()
            .lock()
            .expect("lock")
            .insert(key_of(cert), rv);
    }
    Ok(())
}

pub fn error_policy(cert: Arc<Certificate>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error("certificate");
    tracing::warn!(certificate = %key_of(&cert), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns01_value_matches_rfc8555_example_shape() {
        let v = dns_value("token.thumbprint");
        assert_eq!(v.len(), 43);
        assert!(!v.contains('=') && !v.contains('+') && !v.contains('/'));
    }
}
