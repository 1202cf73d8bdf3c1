//! Finishing status: condition types and reasons as typed constants, and the one place
//! a Certificate's status is written (server-side apply, only when it changed).

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use super::{Error, key_of};
use crate::api::conditions::{Condition, find, set_condition};
use crate::api::{Certificate, CertificateStatus, Time};
use crate::controllers::Context;
use crate::shared::FIELD_MANAGER;

/// Condition types.
pub const READY: &str = "Ready";
pub const ISSUING: &str = "Issuing";
/// Close to notAfter while renewal fails (`--expiring-within`).
pub const EXPIRING: &str = "Expiring";
/// A dns-persist-01 record's `persistUntil` is near ([`super::persist_until`]).
pub const PERSIST_EXPIRING: &str = "PersistentRecordExpiring";

pub use crate::api::Reason;

/// A Certificate's status being worked on, and how to write it.
pub struct StatusWriter<'a> {
    ctx: &'a Context,
    cert: &'a Certificate,
    pub status: CertificateStatus,
    /// What the API server has now (as observed, then as last written by this pass).
    saved: Option<CertificateStatus>,
    /// The reconcile's time.
    pub now: Timestamp,
}

impl<'a> StatusWriter<'a> {
    pub fn new(ctx: &'a Context, cert: &'a Certificate) -> Self {
        StatusWriter {
            ctx,
            cert,
            status: cert.status.clone().unwrap_or_default(),
            saved: cert.status.clone(),
            now: ctx.memory.wall_now(),
        }
    }

    pub fn generation(&self) -> Option<i64> {
        self.cert.metadata.generation
    }

    pub fn set(&mut self, type_: &str, status: bool, reason: Reason, message: impl Into<String>) {
        let c = Condition::new(type_, status, reason.as_str(), message);
        set_condition(
            &mut self.status.conditions,
            c,
            self.now,
            self.cert.metadata.generation,
        );
    }

    pub fn set_ready(&mut self, ready: bool, reason: Reason, message: impl Into<String>) {
        self.set(READY, ready, reason, message);
    }

    pub fn set_issuing(&mut self, issuing: bool, reason: Reason, message: impl Into<String>) {
        self.set(ISSUING, issuing, reason, message);
    }

    /// Counts one more failed attempt (now); returns how many in a row.
    pub fn count_failure(&mut self) -> i32 {
        let attempts = self.status.failed_issuance_attempts.unwrap_or(0) + 1;
        self.status.failed_issuance_attempts = Some(attempts);
        self.status.last_failure_time = Some(Time(self.now));
        if self.status.issuing_with.is_some() && self.status.issuing_with_failing_since.is_none() {
            self.status.issuing_with_failing_since = Some(Time(self.now));
        }
        attempts
    }

    pub fn drop_issuing(&mut self) {
        self.status.conditions.retain(|c| c.type_ != ISSUING);
    }

    pub fn drop_expiring(&mut self) {
        self.drop_condition(EXPIRING);
    }

    pub fn drop_condition(&mut self, type_: &str) {
        self.status.conditions.retain(|c| c.type_ != type_);
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find(&self.status.conditions, type_)
    }

    /// Whether `Ready` is true now.
    pub fn is_ready(&self) -> bool {
        self.condition(READY).is_some_and(|c| c.is_true())
    }

    /// Writes status when it differs from what the API server has.
    pub async fn save(&mut self) -> Result<(), Error> {
        if self.saved.as_ref() == Some(&self.status) {
            return Ok(());
        }
        save_status(self.ctx, self.cert, &self.status)
            .await
            .map_err(Error::Status)?;
        self.saved = Some(self.status.clone());
        Ok(())
    }
}

/// Writes status by server-side apply, and remembers the version written (so an older
/// cached copy is never acted on) and the challenges it publishes (so this replica
/// answers them at once).
async fn save_status(
    ctx: &Context,
    cert: &Certificate,
    status: &CertificateStatus,
) -> Result<(), kube::Error> {
    let api: Api<Certificate> =
        Api::namespaced(ctx.client.clone(), &cert.namespace().unwrap_or_default());
    // `deployments` belongs to the deploy controller's field manager: never sent here,
    // so this forced apply neither owns nor removes it.
    let without_deployments;
    let status = match status.deployments.is_empty() {
        true => status,
        false => {
            without_deployments = CertificateStatus {
                deployments: Vec::new(),
                ..status.clone()
            };
            &without_deployments
        }
    };
    let patch = StatusPatch {
        api_version: "caas.dev/v1alpha1",
        kind: "Certificate",
        status,
    };
    let mut written = api
        .patch_status(
            &cert.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.index.update(&written);
    if let Some(rv) = written
        .resource_version()
        .and_then(|v| v.parse::<u64>().ok())
    {
        written.managed_fields_mut().clear();
        ctx.memory
            .set_written_status(&key_of(cert), rv, Some(std::sync::Arc::new(written)));
    }
    Ok(())
}

/// The body of a status apply: apiVersion, kind and status only (the spec is not ours).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a CertificateStatus,
}
