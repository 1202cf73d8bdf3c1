//! The private key an order is finalized with. It is stored in a `<name>-next-key`
//! Secret before it is used, so a crash between finalize and writing the TLS Secret
//! loses nothing; with `rotationPolicy: Never` the TLS Secret's key is reused, unless
//! the Certificate's `caas.dev/compromised-key` annotation names it (a revocation for
//! key compromise).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta};
use kube::{Resource, ResourceExt};

use super::failure::{FailedStep, Failure};
use super::key_of;
use super::observe::managed_secret;
use super::secret::{self, secret_string};
use super::status::Reason;
use crate::api::certificate::RotationPolicy;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::controllers::Context;
use crate::decide::{COMPROMISED_KEY_ANNOTATION, Request, key_usable};
use crate::pki;

fn next_key_name(cert: &Certificate) -> String {
    format!("{}-next-key", cert.name_any())
}

/// The key the current order is finalized with, if one was already made (or, with
/// `rotationPolicy: Never`, the TLS Secret's current key when it fits the spec).
pub async fn existing(
    ctx: &Context,
    cert: &Certificate,
    request: &Request,
    tls: Option<&Secret>,
) -> Result<Option<String>, Failure> {
    let compromised = cert.annotations().get(COMPROMISED_KEY_ANNOTATION);
    let usable = |key: &String| {
        let fingerprint = pki::key_fingerprint(key).unwrap_or_default();
        request.key.matches(key) && key_usable(&fingerprint, compromised.map(String::as_str))
    };
    if request.rotation == RotationPolicy::Never
        && let Some(key) = tls.and_then(|s| secret_string(s, "tls.key"))
        && usable(&key)
    {
        return Ok(Some(key));
    }
    let ns = cert.namespace().unwrap_or_default();
    let stored = managed_secret(ctx, cert, &ns, &next_key_name(cert))
        .await
        .map_err(Failure::kube(FailedStep::Keys))?;
    Ok(stored
        .and_then(|s| secret_string(&s, "tls.key"))
        .filter(usable))
}

/// The key to finalize with: reused if the order already has one, otherwise a new key,
/// stored before it is returned.
pub async fn next(
    ctx: &Context,
    cert: &Certificate,
    request: &Request,
    tls: Option<&Secret>,
) -> Result<String, Failure> {
    if let Some(key) = existing(ctx, cert, request, tls).await? {
        return Ok(key);
    }
    let key_pem = pki::generate_key(&request.key)
        .map_err(|e| Failure::new(FailedStep::Keys, Reason::InvalidSpec, e.to_string(), true))?;
    let owner = cert.controller_owner_ref(&()).ok_or_else(|| {
        Failure::new(
            FailedStep::Keys,
            Reason::KubernetesError,
            "the Certificate has no uid yet",
            false,
        )
    })?;
    let body = Secret {
        metadata: ObjectMeta {
            name: Some(next_key_name(cert)),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (COMPONENT_LABEL.to_string(), "next-key".to_string()),
                (CERTIFICATE_LABEL.to_string(), cert.name_any()),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "tls.key".to_string(),
            ByteString(key_pem.clone().into_bytes()),
        )])),
        ..Default::default()
    };
    secret::apply(ctx, cert, &body)
        .await
        .map_err(Failure::kube(FailedStep::Keys))?;
    Ok(key_pem)
}

/// Deletes the next-key Secret once its key is in the TLS Secret (or the order is gone).
pub async fn delete_next(ctx: &Context, cert: &Certificate) {
    let ns = cert.namespace().unwrap_or_default();
    let name = next_key_name(cert);
    match Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            tracing::warn!(certificate = %key_of(cert), error = %e, "cannot delete the next-key Secret");
            return;
        }
    }
    // The store may show the Secret for a while yet: until it is confirmed gone, read it
    // from the API server (a stale next key must never be taken for the next order's).
    ctx.memory
        .set_written_secret(&key_of(cert), &name, Some(u64::MAX));
}
