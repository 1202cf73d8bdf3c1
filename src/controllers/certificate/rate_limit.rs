//! A CA's rate limit (429 with `Retry-After`) outlives the process: besides the account's
//! pause in memory, it goes into the issuer's `status.rateLimited` (the account, when the
//! pause ends, the CA's words), and a new leader or a restarted operator restores the
//! pause from there before it places any order, instead of asking a CA that said "wait".

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};

use crate::api::{CaaSIssuer, ClusterCaaSIssuer, Time};
use crate::controllers::Context;
use crate::shared::{IssuerHandle, IssuerKind};

/// The field manager of `status.rateLimited` (a merge patch: the issuer controller's
/// own apply of its status leaves the field alone).
const FIELD_MANAGER: &str = "caas-operator-rate-limit";

/// Records the account's pause in the issuer's status, unless a pause as long is there
/// already. A failure is logged: the pause still holds in this process.
pub async fn record(
    ctx: &Context,
    issuer: &IssuerHandle,
    account: &str,
    until: Timestamp,
    message: &str,
) {
    let known = (issuer.status.as_ref()).and_then(|s| s.rate_limited.as_ref());
    if known.is_some_and(|k| k.account_uri == account && k.until.0 >= until) {
        return;
    }
    let patch = serde_json::json!({ "status": { "rateLimited": {
        "accountURI": account, "until": Time(until), "message": message
    } } });
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let result = match issuer.kind {
        IssuerKind::Namespaced => {
            Api::<CaaSIssuer>::namespaced(ctx.client.clone(), &issuer.secret_namespace)
                .patch_status(&issuer.name, &pp, &Patch::Merge(&patch))
                .await
                .map(drop)
        }
        IssuerKind::Cluster => Api::<ClusterCaaSIssuer>::all(ctx.client.clone())
            .patch_status(&issuer.name, &pp, &Patch::Merge(&patch))
            .await
            .map(drop),
    };
    if let Err(e) = result {
        tracing::warn!(issuer = %issuer.display(), error = %e, "cannot record the rate limit in the issuer's status (it holds in this process)");
    }
}

/// Restores the pause of `account` from the issuer's status, while it lasts (idempotent:
/// the memory keeps the later end).
pub fn restore(ctx: &Context, issuer: &IssuerHandle, account: &str) {
    let Some(limit) = (issuer.status.as_ref()).and_then(|s| s.rate_limited.as_ref()) else {
        return;
    };
    if limit.account_uri != account {
        return;
    }
    let left = limit.until.0.duration_since(ctx.memory.wall_now());
    if let Ok(left) = std::time::Duration::try_from(left)
        && !left.is_zero()
    {
        ctx.memory.pause_account(account, left);
    }
}
