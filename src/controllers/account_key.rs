//! Account key rollover on request: `caas.dev/rotate-account-key: <any new value>` on an
//! issuer makes the operator move its ACME account to a new key (RFC 8555 section
//! 7.3.5) once per value; the value acted on is kept in `status.lastAccountKeyRotation`.
//!
//! The new key is stored in the account key Secret (`tls.key.next`) before the CA is
//! asked, then swapped into `tls.key`: a failure or restart at any point leaves a key the
//! CA knows in the Secret, and [`finish_pending`] completes a swap the CA already made.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use crate::acme::{AccountKey, AcmeError, AcmeHttp, Direct};
use crate::shared::patch::{SecretData, operator_params};

/// The issuer annotation that asks for a rollover.
pub const ROTATE_ANNOTATION: &str = "caas.dev/rotate-account-key";
/// Where the next key waits in the account key Secret during a rollover.
pub const NEXT_KEY: &str = "tls.key.next";

/// Why a rollover did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("cannot store the new account key in Secret {0} (nothing changed at the CA): {1}")]
    Store(String, kube::Error),
    #[error("the CA refused the account key rollover: {0}")]
    Ca(AcmeError),
    #[error(
        "the CA switched the account to the new key, but Secret {0} cannot be updated yet (retried): {1}"
    )]
    Swap(String, kube::Error),
}

impl RotateError {
    pub fn reason(&self) -> crate::api::Reason {
        use crate::api::Reason;
        match self {
            RotateError::Store(..) | RotateError::Swap(..) => Reason::SecretWriteFailed,
            RotateError::Ca(_) => Reason::KeyRolloverFailed,
        }
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Moves `account` (found with the Secret's `tls.key`) to a new key.
pub async fn rotate(
    secrets: &Api<Secret>,
    secret: &Secret,
    account: &Direct,
) -> Result<(), RotateError> {
    let name = secret.name_any();
    // A next key left by an interrupted rollover is used again.
    let next = match text(secret, NEXT_KEY).and_then(|pem| AccountKey::from_pem(&pem).ok()) {
        Some(k) => k,
        None => {
            let k = AccountKey::generate().map_err(RotateError::Ca)?;
            let patch = SecretData::new([(NEXT_KEY, Some(k.to_pem()))]);
            secrets
                .patch(&name, &operator_params(), &patch.patch())
                .await
                .map_err(|e| RotateError::Store(name.clone(), e))?;
            k
        }
    };
    // A rollover whose answer was lost may have happened: then only the swap is left.
    let pem = next.to_pem();
    let http_server = (account.http(), account.server());
    let done_before = match Direct::new(
        http_server.0,
        http_server.1,
        AccountKey::from_pem(&pem).map_err(RotateError::Ca)?,
    )
    .await
    {
        Ok(d) => d.find_account().await.ok().flatten().is_some(),
        Err(_) => false,
    };
    if !done_before {
        account
            .key_change(&next)
            .await
            .map_err(|e| RotateError::Ca(AcmeError::from_acme(e)))?;
    }
    swap(secrets, &name, pem).await
}

/// Makes `pem` the Secret's `tls.key` and drops `tls.key.next`.
async fn swap(secrets: &Api<Secret>, name: &str, pem: String) -> Result<(), RotateError> {
    let patch = SecretData::new([("tls.key", Some(pem)), (NEXT_KEY, None)]);
    secrets
        .patch(name, &operator_params(), &patch.patch())
        .await
        .map(|_| ())
        .map_err(|e| RotateError::Swap(name.to_string(), e))
}

/// What became of a rollover left in the Secret (`tls.key.next`).
pub enum Pending {
    /// There is none, or the CA does not know its key: `tls.key` is the account's key.
    None,
    /// The CA had already switched to it; the Secret now holds it as `tls.key`.
    Finished(std::sync::Arc<Direct>),
    /// It cannot be told now (the CA or the API server did not answer): retry, and
    /// never register `tls.key` meanwhile.
    Unknown(String),
}

/// When the CA knows no account for `tls.key`, whether it knows one for `tls.key.next`
/// (a rollover the CA made whose swap was not written) and, if so, finishes the swap.
pub async fn finish_pending(
    http: &AcmeHttp,
    server: &str,
    secrets: &Api<Secret>,
    secret: &Secret,
) -> Pending {
    let Some(pem) = text(secret, NEXT_KEY) else {
        return Pending::None;
    };
    let Ok(key) = AccountKey::from_pem(&pem) else {
        return Pending::None;
    };
    let direct = match Direct::new(http, server, key).await {
        Ok(d) => d,
        Err(e) => return Pending::Unknown(AcmeError::from_acme(e).to_string()),
    };
    match direct.find_account().await {
        Ok(Some(_)) => {}
        Ok(None) => return Pending::None,
        Err(e) => return Pending::Unknown(AcmeError::from_acme(e).to_string()),
    }
    match swap(secrets, &secret.name_any(), pem).await {
        Ok(()) => {
            tracing::info!(secret = %secret.name_any(), "finished an account key rollover the CA had already made");
            Pending::Finished(direct)
        }
        Err(e) => Pending::Unknown(e.to_string()),
    }
}
