//! Issuer controller (`CaaSIssuer` and `ClusterCaaSIssuer`): validate -> account key
//! Secret -> register (with EAB) or load the ACME account -> status.
//!
//! `Ready` says whether Certificates can use the issuer, with a reason a user can act
//! on: `AccountRegistered`, `EABRejected`, `SecretNotFound`, `ServerUnreachable`,
//! `InvalidSpec`, `AccountNotFound`. Failures are retried on a growing delay, so fixing
//! a Secret is picked up without a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::account_key;
use super::{Context, Error};
use crate::acme::{self, AccountKey, AcmeError, AcmeHttp, Direct, Eab};
use crate::api::Reason;
use crate::api::conditions::{Condition, set_condition};
use crate::api::issuer::IssuerStatus;
use crate::api::{
    COMPONENT_LABEL, CaaSIssuer, ClusterCaaSIssuer, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::shared::{FIELD_MANAGER, IssuerHandle, read_secret_key};

mod account;
mod credentials;
mod validate;

use account::*;
pub use validate::validate;

/// Outcome of one look at the account.
struct AccountState {
    condition: Condition,
    account_uri: Option<String>,
    retry: bool,
    /// The `caas.dev/rotate-account-key` value acted on, when a rollover finished.
    rotated: Option<String>,
}

fn failure(reason: Reason, message: String) -> AccountState {
    AccountState {
        condition: Condition::new("Ready", false, reason.as_str(), message),
        account_uri: None,
        retry: true,
        rotated: None,
    }
}

fn from_error(e: AcmeError) -> AccountState {
    failure(e.reason(), e.to_string())
}

async fn account_state(ctx: &Context, issuer: &IssuerHandle) -> Result<AccountState, Error> {
    if let Err(message) = validate(&issuer.spec) {
        let mut s = failure(Reason::InvalidSpec, message);
        s.retry = false;
        return Ok(s);
    }
    let http = match AcmeHttp::new(issuer.spec.ca_bundle.as_deref(), ctx.stats.clone()) {
        Ok(h) => h,
        Err(e) => {
            let mut s = from_error(e);
            s.retry = false;
            return Ok(s);
        }
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &issuer.secret_namespace);
    let key_name = issuer.spec.private_key_secret_ref.name.clone();
    let secret = match secrets.get_opt(&key_name).await? {
        Some(secret) => secret,
        None => match create_key_secret(issuer, &secrets).await {
            Ok(secret) => secret,
            Err(state) => return Ok(state),
        },
    };
    let state = existing_account(ctx, issuer, &http, &secrets, &secret).await?;
    match rotation_asked(issuer) {
        Some(value) if state.condition.is_true() => {
            Ok(rotate(ctx, issuer, &secrets, state, value).await?)
        }
        _ => Ok(state),
    }
}

/// The `caas.dev/rotate-account-key` value not acted on yet, if any.
fn rotation_asked(issuer: &IssuerHandle) -> Option<String> {
    let asked = issuer
        .annotations
        .get(account_key::ROTATE_ANNOTATION)?
        .trim();
    let done = issuer
        .status
        .as_ref()
        .and_then(|s| s.last_account_key_rotation.as_deref());
    (!asked.is_empty() && done != Some(asked)).then(|| asked.to_string())
}

/// Rolls the issuer's account over to a new key (see [`account_key`]).
async fn rotate(
    ctx: &Context,
    issuer: &IssuerHandle,
    secrets: &Api<Secret>,
    state: AccountState,
    value: String,
) -> Result<AccountState, Error> {
    let name = &issuer.spec.private_key_secret_ref.name;
    let secret = secrets.get(name).await?;
    let version = secret.resource_version().unwrap_or_default();
    let Some(account) = ctx.accounts.cached(issuer, &version) else {
        // The key Secret changed since the account was loaded: look again soon.
        let mut state = state;
        state.retry = true;
        return Ok(state);
    };
    match account_key::rotate(secrets, &secret, &account.direct).await {
        Ok(()) => {
            tracing::info!(issuer = %issuer.display(), account = %account.id(), "rolled the ACME account over to a new key");
            let mut state = state;
            state.condition.message = format!(
                "{}; account key rotated ({} = {value})",
                state.condition.message,
                account_key::ROTATE_ANNOTATION
            );
            state.rotated = Some(value);
            Ok(state)
        }
        // The old key still works: the issuer stays Ready, the rollover is retried.
        Err(e) => {
            ctx.accounts.forget(issuer);
            let mut state = state;
            state.condition.message = format!(
                "{}; the account key rollover ({} = {value}) failed, retried: {e}",
                state.condition.message,
                account_key::ROTATE_ANNOTATION
            );
            state.retry = true;
            Ok(state)
        }
    }
}

async fn reconcile_handle(
    ctx: &Context,
    issuer: &IssuerHandle,
    old: Option<&IssuerStatus>,
) -> Result<(IssuerStatus, Action), Error> {
    let state = account_state(ctx, issuer).await?;
    let mut status = old.cloned().unwrap_or_default();
    let was = crate::api::conditions::find(&status.conditions, "Ready").cloned();
    set_condition(
        &mut status.conditions,
        state.condition.clone(),
        ctx.memory.wall_now(),
        issuer.generation,
    );
    if state.account_uri.is_some() {
        status.account_uri = state.account_uri;
    }
    if state.rotated.is_some() {
        status.last_account_key_rotation = state.rotated;
    }
    status.cloud_credentials = credentials::check(
        &ctx.client,
        issuer,
        ctx.settings.solvers.ambient_credentials,
    )
    .await;
    let changed = was.as_ref().map(|c| (&c.status, &c.reason))
        != Some((&state.condition.status, &state.condition.reason));
    if changed {
        tracing::info!(issuer = %issuer.display(), reason = %state.condition.reason, "issuer {}", state.condition.message);
    }
    let key = issuer.cache_key();
    let labels = crate::metrics::IssuerLabels {
        namespace: match issuer.kind {
            crate::shared::IssuerKind::Namespaced => issuer.secret_namespace.clone(),
            crate::shared::IssuerKind::Cluster => String::new(),
        },
        name: issuer.name.clone(),
        kind: issuer.kind.as_str().to_string(),
    };
    ctx.metrics
        .issuer_ready
        .get_or_create(&labels)
        .set(i64::from(state.condition.is_true()));
    let action = if state.retry {
        Action::requeue(ctx.memory.issuer_failed(&key))
    } else if state.condition.is_true() {
        ctx.memory.issuer_succeeded(&key);
        Action::requeue(Duration::from_secs(3600))
    } else {
        Action::await_change()
    };
    Ok((status, action))
}

pub async fn reconcile_namespaced(
    issuer: Arc<CaaSIssuer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let handle = IssuerHandle::from_namespaced(&issuer);
    let api = Api::namespaced(ctx.client.clone(), &issuer.namespace().unwrap_or_default());
    reconcile_kind(&ctx, api, &*issuer, &handle, issuer.status.as_ref()).await
}

pub async fn reconcile_cluster(
    issuer: Arc<ClusterCaaSIssuer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let handle = IssuerHandle::from_cluster(&issuer, &ctx.settings.cluster_resource_namespace);
    let api = Api::all(ctx.client.clone());
    reconcile_kind(&ctx, api, &*issuer, &handle, issuer.status.as_ref()).await
}

/// Either kind: reconciles `handle`, then applies its status (with an event about the
/// change) when it changed.
async fn reconcile_kind<K>(
    ctx: &Context,
    api: Api<K>,
    issuer: &K,
    handle: &IssuerHandle,
    old: Option<&IssuerStatus>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let (mut status, action) = reconcile_handle(ctx, handle, old).await?;
    if old != Some(&status) {
        publish_change(ctx, issuer, old, &status).await;
        // `rateLimited` belongs to the certificate controller's merge patch: never applied
        // (so never owned, nor overwritten with an older copy) here.
        status.rate_limited = None;
        api.patch_status(
            &issuer.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(StatusPatch::new(&K::kind(&()), &status)),
        )
        .await?;
    }
    Ok(action)
}

/// The body of a status apply: apiVersion, kind and status only.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a> {
    api_version: &'static str,
    kind: &'a str,
    status: &'a IssuerStatus,
}

impl<'a> StatusPatch<'a> {
    fn new(kind: &'a str, status: &'a IssuerStatus) -> Self {
        StatusPatch {
            api_version: "caas.dev/v1alpha1",
            kind,
            status,
        }
    }
}

async fn publish_change<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    old: Option<&IssuerStatus>,
    new: &IssuerStatus,
) {
    let old = old.and_then(|s| crate::api::conditions::find(&s.conditions, "Ready"));
    let Some(new) = crate::api::conditions::find(&new.conditions, "Ready") else {
        return;
    };
    if old.map(|c| (&c.status, &c.reason)) != Some((&new.status, &new.reason)) {
        ctx.recorder
            .event(
                obj,
                !new.is_true(),
                &new.reason,
                "Register",
                new.message.clone(),
            )
            .await;
    }
}

pub fn error_policy<K>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error("issuer");
    tracing::warn!(%error, "issuer reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
