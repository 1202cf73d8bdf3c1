//! The renewal time with the CA's advice (ARI, RFC 9773): when the CA offers renewal
//! information, a random moment inside its suggested window (kept while the window still
//! holds it), re-checked when the CA's `Retry-After` says (bounded to 1-24 h). Without
//! ARI, or when the CA cannot be asked, the planned time stands.

use std::time::Duration;

use instant_acme::CertificateIdentifier;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::CertificateDer;

use super::key_of;
use super::secret::leaf_der;
use crate::api::Certificate;
use crate::controllers::Context;
use crate::pki::CertInfo;
use crate::shared::IssuerHandle;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

pub async fn renewal_time(
    ctx: &Context,
    cert: &Certificate,
    issuer: &IssuerHandle,
    secret: &Secret,
    info: &CertInfo,
    current: Timestamp,
    now: Timestamp,
) -> Timestamp {
    let key = key_of(cert);
    if !ctx.memory.ari_due(&key, &info.serial) {
        return current;
    }
    let next_check = |after: Duration| ctx.memory.set_next_ari_check(&key, &info.serial, after);
    let Some(der) = leaf_der(secret) else {
        return current;
    };
    let Ok(id) = CertificateIdentifier::try_from(&CertificateDer::from(der.as_slice())) else {
        next_check(DAY);
        return current;
    };
    let Ok(account) = ctx.accounts.get(ctx, issuer).await else {
        return current;
    };
    match account.renewal_info(&id).await {
        Ok((ri, retry_after)) => {
            next_check(retry_after.clamp(HOUR, DAY));
            let start =
                Timestamp::from_second(ri.suggested_window.start.unix_timestamp()).unwrap_or(now);
            let end =
                Timestamp::from_second(ri.suggested_window.end.unix_timestamp()).unwrap_or(now);
            let chosen =
                crate::decide::renewal::ari_renewal_time(start, end, current, now, rand::random());
            tracing::info!(certificate = %key, window_start = %start, window_end = %end, renewal = %chosen, "renewal time in the CA's ARI window");
            chosen
        }
        Err(instant_acme::Error::Unsupported(_)) => {
            next_check(DAY);
            current
        }
        Err(e) => {
            tracing::debug!(certificate = %key, error = %e, "ARI check failed; keeping the renewal time");
            next_check(HOUR);
            current
        }
    }
}
