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
use super::{Context, Error, FIELD_MANAGER, IssuerHandle, read_secret_key};
use crate::acme::{self, AccountKey, AcmeError, AcmeHttp, Direct, Eab};
use crate::api::conditions::{Condition, set_condition};
use crate::api::issuer::IssuerStatus;
use crate::api::{
    COMPONENT_LABEL, CaaSIssuer, ClusterCaaSIssuer, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};

mod validate;
pub use validate::validate;

/// Outcome of one look at the account.
struct AccountState {
    condition: Condition,
    account_uri: Option<String>,
    retry: bool,
    /// The `caas.dev/rotate-account-key` value acted on, when a rollover finished.
    rotated: Option<String>,
}

fn failure(reason: &str, message: String) -> AccountState {
    AccountState {
        condition: Condition::new("Ready", false, reason, message),
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
        let mut s = failure("InvalidSpec", message);
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

/// Writes a new account key Secret: the key is stored before the CA ever sees it, so a
/// registration interrupted at any point (a refused write, a restart) is retried with
/// the same key and the CA finds the account instead of making a second one.
async fn create_key_secret(
    issuer: &IssuerHandle,
    secrets: &Api<Secret>,
) -> Result<Secret, AccountState> {
    let key = AccountKey::generate().map_err(from_error)?;
    let name = &issuer.spec.private_key_secret_ref.name;
    match secrets
        .create(
            &PostParams::default(),
            &account_key_secret(issuer, key.to_pem()),
        )
        .await
    {
        Ok(created) => Ok(created),
        // Someone (another issuer sharing the key Secret) was first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => Err(failure(
            "AccountKeyRace",
            "the account key Secret was created concurrently; retrying with it".into(),
        )),
        Err(e) => Err(failure(
            "SecretWriteFailed",
            format!(
                "cannot write the account key Secret {name} (nothing is registered until it is stored): {e}"
            ),
        )),
    }
}

/// The account of a key Secret (cached while the Secret is unchanged): the CA's account
/// for that key, or a new one registered with it (and EAB) when the CA has none.
async fn existing_account(
    ctx: &Context,
    issuer: &IssuerHandle,
    http: &AcmeHttp,
    secrets: &Api<Secret>,
    secret: &Secret,
) -> Result<AccountState, Error> {
    let server = issuer.spec.server.trim();
    let version = secret.resource_version().unwrap_or_default();
    if let Some(account) = ctx.accounts.cached(issuer, &version) {
        return Ok(registered(server, account.id()));
    }
    let Some(key) = secret.data.as_ref().and_then(|d| d.get("tls.key")) else {
        return Ok(failure(
            "InvalidSpec",
            format!(
                "the account key Secret {} has no tls.key",
                issuer.spec.private_key_secret_ref.name
            ),
        ));
    };
    let key = match AccountKey::from_pem(&String::from_utf8_lossy(&key.0)) {
        Ok(k) => k,
        Err(e) => return Ok(from_error(e)),
    };
    let direct = match Direct::new(http, server, key).await {
        Ok(d) => d,
        Err(e) => return Ok(from_error(AcmeError::from_acme(e))),
    };
    let found = match direct.find_account().await {
        Ok(None) => match account_key::finish_pending(http, server, secrets, secret).await {
            account_key::Pending::None => Ok(None),
            account_key::Pending::Finished(next) => {
                // The swap changed the Secret: its next version is loaded then.
                let mut state = registered(server, &next.kid().unwrap_or_default());
                state.rotated = rotation_asked(issuer);
                return Ok(state);
            }
            // Never register the old key while the CA may have moved the account.
            account_key::Pending::Unknown(e) => {
                return Ok(failure(
                    "KeyRolloverFailed",
                    format!(
                        "an account key rollover may have happened and cannot be checked now (retried): {e}"
                    ),
                ));
            }
        },
        other => other,
    };
    let kid = match found {
        Ok(Some(kid)) => kid,
        Ok(None) => match register(ctx, issuer, &direct).await? {
            Ok(kid) => kid,
            Err(state) => return Ok(state),
        },
        Err(e) => return Ok(from_error(AcmeError::from_acme(e))),
    };
    let account = match acme::attach(http, server, direct, kid).await {
        Ok(a) => a,
        Err(e) => return Ok(from_error(e)),
    };
    let version = note_account_uri(secrets, secret, account.id())
        .await
        .unwrap_or(version);
    ctx.accounts.insert(issuer, &version, account.clone());
    Ok(registered(server, account.id()))
}

/// Registers the key of `direct` (with EAB); `Ok(Err(state))` when that fails.
async fn register(
    ctx: &Context,
    issuer: &IssuerHandle,
    direct: &Direct,
) -> Result<Result<String, AccountState>, Error> {
    let eab = match eab(ctx, issuer).await? {
        Ok(eab) => eab,
        Err(state) => return Ok(Err(state)),
    };
    match direct
        .register(issuer.spec.email.as_deref(), eab.as_ref())
        .await
    {
        Ok(kid) => {
            tracing::info!(issuer = %issuer.display(), account = %kid, "registered an ACME account");
            Ok(Ok(kid))
        }
        Err(e) => {
            let mut state = from_error(AcmeError::from_acme(e));
            if let Some(eab) = eab
                .as_ref()
                .filter(|e| e.hmac.len() < e.algorithm.min_key_len())
            {
                state.condition.message.push_str(&format!(
                        " (the HMAC key is {} bytes; {:?} wants at least {} (RFC 7518 section 3.2): check keyAlgorithm against what the CA gave you)",
                        eab.hmac.len(),
                        eab.algorithm,
                        eab.algorithm.min_key_len()
                    ));
            }
            Ok(Err(state))
        }
    }
}

/// Records the account URI on a key Secret the operator made (for `kubectl describe`);
/// returns the Secret's new resourceVersion. A user's own Secret is left alone.
async fn note_account_uri(secrets: &Api<Secret>, secret: &Secret, uri: &str) -> Option<String> {
    let ours = secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE);
    if !ours
        || secret
            .annotations()
            .get(ACCOUNT_URI_ANNOTATION)
            .map(String::as_str)
            == Some(uri)
    {
        return None;
    }
    let patch =
        serde_json::json!({ "metadata": { "annotations": { ACCOUNT_URI_ANNOTATION: uri } } });
    match secrets
        .patch(
            &secret.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(s) => s.resource_version(),
        Err(e) => {
            tracing::warn!(secret = %secret.name_any(), "cannot note the account URI on the account key Secret: {e}");
            None
        }
    }
}

/// Where the account URI is noted on the account key Secret.
const ACCOUNT_URI_ANNOTATION: &str = "caas.dev/account-uri";

/// The EAB key the issuer names; `Ok(Err(state))` when it cannot be had.
async fn eab(
    ctx: &Context,
    issuer: &IssuerHandle,
) -> Result<Result<Option<Eab>, AccountState>, Error> {
    let Some(eab) = &issuer.spec.external_account_binding else {
        return Ok(Ok(None));
    };
    let r = &eab.key_secret_ref;
    let Some(raw) = read_secret_key(&ctx.client, &issuer.secret_namespace, &r.name, &r.key).await?
    else {
        return Ok(Err(failure(
            "SecretNotFound",
            format!(
                "the EAB HMAC key Secret {}/{} (key {:?}) does not exist",
                issuer.secret_namespace, r.name, r.key
            ),
        )));
    };
    let algorithm = match acme::MacAlgorithm::parse(eab.key_algorithm.as_deref()) {
        Ok(a) => a,
        Err(e) => return Ok(Err(failure("InvalidSpec", e))),
    };
    Ok(match acme::decode_eab_hmac(&raw) {
        Ok(hmac) => Ok(Some(Eab {
            key_id: eab.key_id.trim().to_string(),
            hmac,
            algorithm,
        })),
        Err(e) => Err(from_error(e)),
    })
}

fn account_key_secret(issuer: &IssuerHandle, key_pem: String) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(issuer.spec.private_key_secret_ref.name.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (COMPONENT_LABEL.to_string(), "account-key".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                "caas.dev/issuer".to_string(),
                issuer.display(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "tls.key".to_string(),
            ByteString(key_pem.into_bytes()),
        )])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn registered(server: &str, uri: &str) -> AccountState {
    AccountState {
        condition: Condition::new(
            "Ready",
            true,
            "AccountRegistered",
            format!("the ACME account is registered at {server}"),
        ),
        account_uri: Some(uri.to_string()),
        retry: false,
        rotated: None,
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
        &super::now_string(),
        issuer.generation,
    );
    if state.account_uri.is_some() {
        status.account_uri = state.account_uri;
    }
    if state.rotated.is_some() {
        status.last_account_key_rotation = state.rotated;
    }
    let changed = was.as_ref().map(|c| (&c.status, &c.reason))
        != Some((&state.condition.status, &state.condition.reason));
    if changed {
        tracing::info!(issuer = %issuer.display(), reason = %state.condition.reason, "issuer {}", state.condition.message);
    }
    let key = issuer.cache_key();
    let labels = crate::metrics::IssuerLabels {
        namespace: match issuer.kind {
            super::IssuerKind::Namespaced => issuer.secret_namespace.clone(),
            super::IssuerKind::Cluster => String::new(),
        },
        name: issuer.name.clone(),
        kind: issuer
            .display()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
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
    let (status, action) = reconcile_handle(&ctx, &handle, issuer.status.as_ref()).await?;
    if issuer.status.as_ref() != Some(&status) {
        let api: Api<CaaSIssuer> =
            Api::namespaced(ctx.client.clone(), &issuer.namespace().unwrap_or_default());
        publish_change(&ctx, &*issuer, issuer.status.as_ref(), &status).await;
        api.patch_status(
            &issuer.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(StatusPatch::new("CaaSIssuer", &status)),
        )
        .await?;
    }
    Ok(action)
}

pub async fn reconcile_cluster(
    issuer: Arc<ClusterCaaSIssuer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let handle = IssuerHandle::from_cluster(&issuer, &ctx.settings.cluster_resource_namespace);
    let (status, action) = reconcile_handle(&ctx, &handle, issuer.status.as_ref()).await?;
    if issuer.status.as_ref() != Some(&status) {
        let api: Api<ClusterCaaSIssuer> = Api::all(ctx.client.clone());
        publish_change(&ctx, &*issuer, issuer.status.as_ref(), &status).await;
        api.patch_status(
            &issuer.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(StatusPatch::new("ClusterCaaSIssuer", &status)),
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
    kind: &'static str,
    status: &'a IssuerStatus,
}

impl<'a> StatusPatch<'a> {
    fn new(kind: &'static str, status: &'a IssuerStatus) -> Self {
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
        ctx.event(
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
