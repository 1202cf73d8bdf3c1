//! AWS Certificate Manager through the SDK (`aws-sdk-acm`, credentials from
//! [`crate::cloud::aws`]): `ImportCertificate` the first time, then into the same ARN on
//! each renewal (ACM keeps the ARN, so listeners using it serve the new certificate);
//! `DescribeCertificate` first, so a serial ACM already holds is not imported twice.

use aws_sdk_acm::Client;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::Tag;

use super::{Bundle, DeployError, Deployed};
use crate::api::Reason;
use crate::api::deploy::AcmTarget;
use crate::cloud::CredentialSource;
use crate::cloud::aws::{self, Auth, words};
use crate::decide::deploy::same_serial;

pub struct Acm {
    client: Client,
    pub source: CredentialSource,
}

/// Where an ACM target puts its copy (`acm:REGION`): a new region is a new import.
pub fn location(cfg: &AcmTarget) -> String {
    format!("acm:{}", aws::settle_region(cfg.region.clone()))
}

/// The SDK's error as a [`DeployError`]: unavailable (retried as is) or refused.
fn failed<E>(
    what: &str,
    err: &aws_sdk_acm::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> DeployError
where
    E: aws_sdk_acm::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let words = format!("ACM {what}: {}", words(err));
    match aws::is_unavailable(err) {
        true => DeployError::Unreachable(words),
        false => DeployError::refused(words),
    }
}

impl Acm {
    /// Signs in with the target's keys (Secrets in `namespace`) or, when it names none
    /// and `ambient` allows, the operator's own identity.
    pub async fn new(
        client: &kube::Client,
        namespace: &str,
        cfg: &AcmTarget,
        ambient: bool,
    ) -> Result<Acm, DeployError> {
        let keys = aws::static_keys(
            client,
            namespace,
            "acm",
            cfg.access_key_id.as_deref(),
            cfg.access_key_id_secret_ref.as_ref(),
            cfg.secret_access_key_secret_ref.as_ref(),
        )
        .await
        .map_err(|e| match e {
            aws::KeysError::Kube(e) => DeployError::kube(&e),
            other => DeployError::invalid(other.to_string()),
        })?;
        if keys.is_none() && !ambient {
            return Err(DeployError::Refused {
                reason: Reason::NotPermitted,
                words: "acm names no keys, and a namespaced DeployTarget may not use the \
                        operator's own AWS identity: give it secretAccessKeySecretRef, or \
                        start the operator with --issuer-ambient-credentials"
                    .into(),
            });
        }
        let auth = Auth {
            keys,
            region: cfg.region.clone(),
            role: cfg.role.clone(),
        };
        let signed = aws::sign_in(auth)
            .await
            .map_err(|e| DeployError::refused(format!("AWS sign-in: {}", e.0)))?;
        let mut config = aws_sdk_acm::config::Builder::from(&signed.config);
        if let Some(url) = &cfg.api_url {
            config = config.endpoint_url(url.trim_end_matches('/'));
        }
        Ok(Acm {
            client: Client::from_conf(config.build()),
            source: signed.source,
        })
    }

    /// The serial ACM holds at `arn` (colon hex, as ACM writes it); `None`: no such
    /// certificate (deleted behind our back).
    pub async fn serial(&self, arn: &str) -> Result<Option<String>, DeployError> {
        match self
            .client
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .certificate()
                .and_then(|c| c.serial())
                .map(str::to_string)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(failed("DescribeCertificate", &e)),
        }
    }

    /// Deletes the certificate at `arn` (gone already: fine). ACM refuses while a load
    /// balancer or distribution uses it (`ResourceInUseException`): that refusal is
    /// returned in ACM's words, never forced.
    pub async fn delete(&self, arn: &str) -> Result<(), DeployError> {
        match self
            .client
            .delete_certificate()
            .certificate_arn(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(failed("DeleteCertificate", &e)),
        }
    }

    /// Puts `bundle` into `arn` (re-import), or a new import with `tags` when there is
    /// none or it is gone (unless `adopted`: the user's `certificateARN` must exist).
    /// Nothing is written when ACM already holds this serial.
    pub async fn deploy(
        &self,
        bundle: &Bundle,
        arn: Option<&str>,
        adopted: bool,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Deployed, DeployError> {
        let existing = match arn {
            Some(arn) => self.serial(arn).await?.map(|serial| (arn, serial)),
            None => None,
        };
        if let (Some(arn), None, true) = (arn, &existing, adopted) {
            return Err(DeployError::invalid(format!(
                "acm.certificateARN {arn} does not exist in ACM (wrong region or account?)"
            )));
        }
        if let Some((arn, serial)) = &existing
            && same_serial(serial, &bundle.info.serial)
        {
            return Ok(Deployed {
                remote_id: arn.to_string(),
                namespaces: Vec::new(),
                wrote: false,
            });
        }
        let mut import = self
            .client
            .import_certificate()
            .certificate(Blob::new(bundle.leaf_pem.as_bytes()))
            .private_key(Blob::new(bundle.key_pem.as_bytes()));
        if !bundle.intermediates_pem.is_empty() {
            import = import.certificate_chain(Blob::new(bundle.intermediates_pem.as_bytes()));
        }
        import = match existing {
            // ACM refuses tags on a re-import ("Tagging is not permitted on re-import").
            Some((arn, _)) => import.certificate_arn(arn),
            None if tags.is_empty() => import,
            None => import.set_tags(Some(acm_tags(tags)?)),
        };
        let out = import
            .send()
            .await
            .map_err(|e| failed("ImportCertificate", &e))?;
        let arn = out
            .certificate_arn()
            .ok_or_else(|| DeployError::refused("ACM ImportCertificate answered no ARN"))?;
        Ok(Deployed {
            remote_id: arn.to_string(),
            namespaces: Vec::new(),
            wrote: true,
        })
    }
}

fn acm_tags(tags: &std::collections::BTreeMap<String, String>) -> Result<Vec<Tag>, DeployError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| DeployError::invalid(format!("acm.tags: {e}")))
        })
        .collect()
}
