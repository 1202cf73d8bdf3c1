//! `caas-operator revoke NAME [--reason keyCompromise]`: revokes a Certificate's current
//! certificate at its CA with the issuer's ACME account (RFC 8555 section 7.6); the
//! caller then asks for a renewal, so a new certificate replaces it.

use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use instant_acme::{RevocationReason, RevocationRequest};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use rustls_pki_types::CertificateDer;

use crate::acme::{self, AcmeHttp, AcmeStats};
use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer, IssuerSpec};
use crate::shared::read_secret_key;

/// RFC 5280 reason names, as `--reason` takes them.
pub fn parse_reason(name: &str) -> anyhow::Result<RevocationReason> {
    Ok(match name {
        "unspecified" => RevocationReason::Unspecified,
        "keyCompromise" => RevocationReason::KeyCompromise,
        "affiliationChanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationOfOperation" => RevocationReason::CessationOfOperation,
        other => {
            return Err(anyhow!(
                "--reason {other:?} is not one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation"
            ));
        }
    })
}

/// Revokes the certificate in Certificate `ns/name`'s Secret; returns its serial and
/// its key's fingerprint ([`crate::pki::spki_fingerprint`]).
pub async fn revoke(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: RevocationReason,
    cluster_resource_namespace: &str,
) -> anyhow::Result<(String, String)> {
    let cert = Api::<Certificate>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("cannot read Certificate {ns}/{name}"))?;
    let (spec, secret_ns): (IssuerSpec, &str) = if cert.spec.issuer_ref.is_cluster() {
        let issuer = Api::<ClusterCaaSIssuer>::all(client.clone())
            .get(&cert.spec.issuer_ref.name)
            .await
            .with_context(|| {
                format!(
                    "cannot read ClusterCaaSIssuer {}",
                    cert.spec.issuer_ref.name
                )
            })?;
        (issuer.spec.0, cluster_resource_namespace)
    } else {
        let issuer = Api::<CaaSIssuer>::namespaced(client.clone(), ns)
            .get(&cert.spec.issuer_ref.name)
            .await
            .with_context(|| {
                format!("cannot read CaaSIssuer {ns}/{}", cert.spec.issuer_ref.name)
            })?;
        (issuer.spec, ns)
    };
    let tls = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&cert.spec.secret_name)
        .await
        .with_context(|| format!("cannot read Secret {ns}/{}", cert.spec.secret_name))?;
    let der = crate::controllers::certificate::secret::leaf_der(&tls)
        .ok_or_else(|| anyhow!("Secret {ns}/{} holds no certificate", cert.spec.secret_name))?;
    let info = crate::pki::parse_chain(&acme::pem_encode("CERTIFICATE", &der))?;
    let key_ref = &spec.private_key_secret_ref.name;
    let key = read_secret_key(client, secret_ns, key_ref, "tls.key")
        .await?
        .ok_or_else(|| anyhow!("the account key Secret {secret_ns}/{key_ref} does not exist"))?;
    let http = AcmeHttp::new(spec.ca_bundle.as_deref(), Arc::new(AcmeStats::default()))?;
    let account = acme::load(&http, &spec.server, &String::from_utf8_lossy(&key)).await?;
    account
        .revoke(&RevocationRequest {
            certificate: &CertificateDer::from(der),
            reason: Some(reason),
        })
        .await
        .map_err(|e| {
            anyhow!(
                "the CA refused to revoke serial {}: {}",
                info.serial,
                acme::AcmeError::from_acme(e)
            )
        })?;
    Ok((
        info.serial,
        crate::pki::spki_fingerprint(&info.public_key_spki),
    ))
}
