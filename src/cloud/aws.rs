//! AWS credentials and configuration through the SDK (`aws-config`): static keys from a
//! Secret, or the SDK's whole default chain (environment, profile files, web identity /
//! IRSA, the container endpoint / EKS Pod Identity, IMDS), optionally turned into an
//! assumed role (cert-manager's `route53.role`). The SDK's own settings are honoured:
//! `AWS_REGION`, `AWS_ENDPOINT_URL` and the service ones (`AWS_ENDPOINT_URL_STS`, ...),
//! `AWS_USE_FIPS_ENDPOINT`, the partitions' endpoints.
//!
//! HTTPS goes through rustls on ring (`aws-smithy-http-client`'s `rustls-ring`), not the
//! SDK's default aws-lc.

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::CredentialSource;
use crate::api::issuer::SecretKeySelector;

/// Route 53 is global: its requests are signed for this region when none is set.
pub const GLOBAL_REGION: &str = "us-east-1";

/// An access key pair (from a Secret, or cert-manager's plain `accessKeyID`).
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Where the keys came from, for [`CredentialSource`] (`Secret ns/name`).
    pub origin: String,
}

/// How to sign in.
#[derive(Default)]
pub struct Auth {
    /// Static keys; `None`: the SDK's default chain (ambient credentials).
    pub keys: Option<StaticKeys>,
    /// `route53.region`; else `AWS_REGION` / `AWS_DEFAULT_REGION`, else [`GLOBAL_REGION`].
    pub region: Option<String>,
    /// A role to assume with the credentials above (`route53.role`).
    pub role: Option<String>,
}

/// A signed-in SDK configuration and where its credentials came from.
pub struct Signed {
    pub config: SdkConfig,
    pub source: CredentialSource,
}

/// Why signing in failed, in the SDK's words (never a credential).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AwsError(pub String);

/// The region a client uses: the one given, else `AWS_REGION` / `AWS_DEFAULT_REGION`,
/// else [`GLOBAL_REGION`].
pub fn settle_region(given: Option<String>) -> String {
    given
        .filter(|r| !r.is_empty())
        .or_else(|| super::env("AWS_REGION"))
        .or_else(|| super::env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| GLOBAL_REGION.to_string())
}

/// Why an access key pair could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The fields do not make a pair (the message names them).
    #[error("{0}")]
    Invalid(String),
    /// A Secret or key they name is missing (the message names it).
    #[error("{0}")]
    SecretMissing(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// The access key pair a block (`route53`, `acm`) names: `accessKeyID` (plain, as
/// cert-manager allows) or `accessKeyIDSecretRef`, with `secretAccessKeySecretRef`, read
/// from Secrets in `namespace`; `None`: no keys (ambient credentials).
pub async fn static_keys(
    client: &kube::Client,
    namespace: &str,
    block: &str,
    access_key_id: Option<&str>,
    id_ref: Option<&SecretKeySelector>,
    secret_ref: Option<&SecretKeySelector>,
) -> Result<Option<StaticKeys>, KeysError> {
    let Some(key_ref) = secret_ref else {
        return Ok(None);
    };
    let value = async |r: &SecretKeySelector, what: &str| {
        let raw = crate::shared::read_secret_key(client, namespace, &r.name, &r.key).await?;
        raw.map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .ok_or_else(|| {
                KeysError::SecretMissing(format!(
                    "the {what} Secret {namespace}/{} (key {:?}) does not exist",
                    r.name, r.key
                ))
            })
    };
    let access_key_id = match (access_key_id, id_ref) {
        (Some(id), _) => id.to_string(),
        (None, Some(id_ref)) => value(id_ref, "AWS access key ID").await?,
        (None, None) => {
            return Err(KeysError::Invalid(format!(
                "{block} has secretAccessKeySecretRef but neither accessKeyID nor accessKeyIDSecretRef"
            )));
        }
    };
    Ok(Some(StaticKeys {
        access_key_id,
        secret_access_key: value(key_ref, "AWS secret access key").await?,
        origin: format!("Secret {namespace}/{}", key_ref.name),
    }))
}

/// An SDK error in the service's own words (`HTTP 403: AccessDeniedException: ...`).
pub fn words<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> String {
    let status = err
        .raw_response()
        .map(|r| format!("HTTP {}: ", r.status().as_u16()))
        .unwrap_or_default();
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{status}{code}: {message}"),
        (Some(code), None) => format!("{status}{code}"),
        _ => format!(
            "{status}{}",
            aws_smithy_types::error::display::DisplayErrorContext(err)
        ),
    }
}

/// Whether an SDK error means the service did not answer, or answered that it cannot
/// now (5xx, throttling): worth retrying as is, unlike a refusal.
pub fn is_unavailable<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> bool {
    let server_side = err
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let throttled = err
        .code()
        .is_some_and(|c| c.contains("Throttl") || c == "TooManyRequestsException");
    matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    ) || server_side
        || throttled
}

/// Resolves credentials once (so a wrong setup is reported before any DNS change) and
/// hands back a configuration that uses them.
pub async fn sign_in(auth: Auth) -> Result<Signed, AwsError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    // The region is settled before loading: the chain's STS client (IRSA) needs one, and
    // leaving it to the SDK would probe the instance metadata service for it.
    let region = settle_region(auth.region.clone());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new(region));
    if let Some(keys) = &auth.keys {
        loader = loader.credentials_provider(Credentials::new(
            &keys.access_key_id,
            &keys.secret_access_key,
            None,
            None,
            "Secret",
        ));
    }
    let config = loader.load().await;
    let base = config
        .credentials_provider()
        .ok_or_else(|| AwsError("the AWS SDK has no credentials provider".into()))?;
    let provider = match &auth.role {
        None => base,
        Some(role) => SharedCredentialsProvider::new(
            AssumeRoleProvider::builder(role.clone())
                .session_name("caas-operator")
                .configure(&config)
                .build_from_provider(base)
                .await,
        ),
    };
    let credentials = provider.provide_credentials().await.map_err(|e| {
        AwsError(format!(
            "no AWS credentials: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        ))
    })?;
    let source = source_of(&credentials, &auth);
    let config = config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build();
    Ok(Signed { config, source })
}

/// Which source the SDK used, from the features it records on the credentials (the
/// same ones it reports in its User-Agent), plus the keys' origin or the role.
fn source_of(credentials: &Credentials, auth: &Auth) -> CredentialSource {
    let features = credentials
        .get_property::<Vec<AwsCredentialFeature>>()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let web_identity_role = std::env::var("AWS_ROLE_ARN").unwrap_or_default();
    describe(features, auth, &web_identity_role)
}

/// The words for a chain's features (pure, unit-tested).
fn describe(
    features: &[AwsCredentialFeature],
    auth: &Auth,
    web_identity_role: &str,
) -> CredentialSource {
    use AwsCredentialFeature as F;
    let base = match (&auth.keys, features) {
        (Some(keys), _) => format!("access key from {}", keys.origin),
        // The SDK marks web identity as `CredentialsProfileStsWebIdToken` whether the
        // token file came from the environment (IRSA) or a profile.
        (None, f)
            if !web_identity_role.is_empty()
                && [
                    F::CredentialsEnvVarsStsWebIdToken,
                    F::CredentialsStsAssumeRoleWebId,
                    F::CredentialsProfileStsWebIdToken,
                ]
                .iter()
                .any(|w| f.contains(w)) =>
        {
            format!("web identity (IRSA) for role {web_identity_role}")
        }
        (None, f) if f.contains(&F::CredentialsProfileStsWebIdToken) => {
            "web identity from the AWS profile".into()
        }
        (None, f) if f.contains(&F::CredentialsHttp) => {
            "container credentials endpoint (EKS Pod Identity / ECS)".into()
        }
        (None, f) if f.contains(&F::CredentialsImds) => "instance metadata (IMDS)".into(),
        (None, f) if f.contains(&F::CredentialsEnvVars) => "environment (AWS_ACCESS_KEY_ID)".into(),
        (None, f)
            if f.contains(&F::CredentialsProcess) || f.contains(&F::CredentialsProfileProcess) =>
        {
            "credential_process of the AWS profile".into()
        }
        (None, f)
            if f.iter().any(|f| {
                matches!(
                    f,
                    F::CredentialsProfile
                        | F::CredentialsProfileSourceProfile
                        | F::CredentialsProfileNamedProvider
                )
            }) =>
        {
            "AWS profile".into()
        }
        (None, _) => "the SDK's default chain".into(),
    };
    let source = match &auth.role {
        Some(role) => format!("role {role} assumed with {base}"),
        None => base,
    };
    CredentialSource {
        cloud: "AWS",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AwsCredentialFeature as F;

    #[test]
    fn sources_are_named_without_values() {
        let keys = Auth {
            keys: Some(StaticKeys {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "very-secret".into(),
                origin: "Secret ns/aws".into(),
            }),
            ..Auth::default()
        };
        let words = describe(&[], &keys, "").to_string();
        assert_eq!(words, "AWS: access key from Secret ns/aws");
        assert!(!words.contains("very-secret") && !words.contains("AKIA"));
        let pod = describe(&[F::CredentialsHttp], &Auth::default(), "");
        assert!(pod.source.contains("EKS Pod Identity"), "{pod}");
        let imds = describe(&[F::CredentialsImds], &Auth::default(), "");
        assert_eq!(imds.source, "instance metadata (IMDS)");
        let irsa = describe(
            &[F::CredentialsProfileStsWebIdToken],
            &Auth::default(),
            "arn:r",
        );
        assert_eq!(irsa.source, "web identity (IRSA) for role arn:r");
        let role = Auth {
            role: Some("arn:aws:iam::1:role/dns".into()),
            ..Auth::default()
        };
        assert_eq!(
            describe(
                &[F::CredentialsEnvVars, F::CredentialsStsAssumeRole],
                &role,
                ""
            )
            .source,
            "role arn:aws:iam::1:role/dns assumed with environment (AWS_ACCESS_KEY_ID)"
        );
    }
}
