//! dns-persist-01 records nearing their `persistUntil` ([`crate::decide::persist`]): the
//! `PersistentRecordExpiring` condition while a good certificate is kept, and for each
//! new message one Warning event and one `expiring` notification (the condition's message
//! is stable, so a restart does not repeat them).

use jiff::Timestamp;
use kube::ResourceExt;

use super::key_of;
use super::status::{PERSIST_EXPIRING, Reason, StatusWriter};
use crate::api::Certificate;
use crate::controllers::Context;
use crate::decide::persist;
use crate::notify;
use crate::shared::IssuerHandle;
use crate::solvers::select_solver;

/// Each DNS name validated by a dnsPersist01 solver with a `persistUntil`, and that time.
fn untils(issuer: &IssuerHandle, cert: &Certificate) -> Vec<(String, Timestamp)> {
    let solvers = &issuer.spec.solvers;
    (cert.spec.dns_names.iter())
        .filter_map(|name| {
            let name = name.to_ascii_lowercase();
            let i = select_solver(solvers, &name, cert.labels())?;
            let until = solvers[i].dns_persist01.as_ref()?.persist_until.as_ref()?.0;
            Some((name, until))
        })
        .collect()
}

/// Sets (or drops) the condition for the certificate kept until `renewal_time`; returns
/// its message when it is new, for [`tell`] once status is saved.
pub fn check(
    ctx: &Context,
    w: &mut StatusWriter<'_>,
    cert: &Certificate,
    issuer: &IssuerHandle,
    renewal_time: Timestamp,
) -> Option<String> {
    let within = ctx.settings.expiring_within;
    let untils = untils(issuer, cert);
    let Some(near) = persist::persist_until_near(&untils, w.now, renewal_time, within) else {
        w.drop_condition(PERSIST_EXPIRING);
        return None;
    };
    let message = persist::persist_until_message(&near, w.now);
    let told = (w.condition(PERSIST_EXPIRING)).is_some_and(|c| c.is_true() && c.message == message);
    w.set(
        PERSIST_EXPIRING,
        true,
        Reason::PersistUntilNear,
        message.clone(),
    );
    (!told).then_some(message)
}

/// The Warning event and the `expiring` notification for a new message.
pub async fn tell(ctx: &Context, cert: &Certificate, issuer: &IssuerHandle, message: String) {
    tracing::warn!(certificate = %key_of(cert), "{message}");
    let reason = Reason::PersistUntilNear.as_str();
    (ctx.recorder)
        .event(cert, true, reason, "Validate", message.clone())
        .await;
    let msg = notify::Message::new(notify::Event::Expiring, cert, reason, message);
    super::effects::tell(ctx, issuer, &msg).await;
}
