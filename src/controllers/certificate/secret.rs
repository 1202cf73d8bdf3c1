//! Writing the TLS Secret, and reading what the decisions need from it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::key_of;
use crate::api::certificate::OutputFormatType;
use crate::api::{
    CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::controllers::Context;
use crate::decide::{Request, SecretView};
use crate::pki::{self, CertInfo};
use crate::shared::{FIELD_MANAGER, IssuerHandle};

/// Annotations on the TLS Secret.
pub const ANNOTATION_CERTIFICATE: &str = "caas.dev/certificate-name";
pub const ANNOTATION_ISSUER: &str = "caas.dev/issuer";
pub const ANNOTATION_ISSUER_NAME: &str = "caas.dev/issuer-name";
pub const ANNOTATION_ISSUER_KIND: &str = "caas.dev/issuer-kind";
pub const ANNOTATION_SERIAL: &str = "caas.dev/serial";
pub const ANNOTATION_ALT_NAMES: &str = "caas.dev/alt-names";

/// `key` of a Secret as text.
pub fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).to_string())
}

/// What the decision needs from a Secret.
pub fn secret_view(secret: &Secret) -> SecretView {
    SecretView {
        cert: secret_string(secret, "tls.crt")
            .filter(|s| !s.trim().is_empty())
            .map(|pem| pki::parse_chain(&pem).map_err(|e| e.to_string())),
        key_pem: secret_string(secret, "tls.key").filter(|s| !s.trim().is_empty()),
        issuer: secret.annotations().get(ANNOTATION_ISSUER).cloned(),
    }
}

/// The DER of the leaf certificate in a TLS Secret.
pub fn leaf_der(secret: &Secret) -> Option<Vec<u8>> {
    let pem = secret_string(secret, "tls.crt")?;
    pki::pem_certificates(&pem).ok()?.into_iter().next()
}

/// The TLS Secret for an issued chain and its key.
pub fn tls_secret(
    cert: &Certificate,
    issuer: &IssuerHandle,
    request: &Request,
    info: &CertInfo,
    chain: &str,
    key_pem: &str,
) -> Result<Secret, pki::PkiError> {
    let formats: Vec<OutputFormatType> = cert
        .spec
        .additional_output_formats
        .iter()
        .map(|f| f.type_)
        .collect();
    let data = pki::secret_data(chain, key_pem, &formats)?
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect();
    let template = cert.spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels;
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(COMPONENT_LABEL.into(), "tls".into());
    labels.insert(CERTIFICATE_LABEL.into(), cert.name_any());
    let display = issuer.display();
    let kind = issuer.kind.as_str().to_string();
    let mut annotations = template.annotations;
    annotations.extend(BTreeMap::from([
        (ANNOTATION_CERTIFICATE.to_string(), cert.name_any()),
        (ANNOTATION_ISSUER.to_string(), display.clone()),
        (ANNOTATION_ISSUER_NAME.to_string(), issuer.name.clone()),
        (ANNOTATION_ISSUER_KIND.to_string(), kind),
        (ANNOTATION_SERIAL.to_string(), info.serial.clone()),
        (
            ANNOTATION_ALT_NAMES.to_string(),
            request.dns_names.join(","),
        ),
    ]));
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(cert.spec.secret_name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    })
}

/// Writes a Secret the operator owns for `cert` by server-side apply, and remembers the
/// version written (the store may not have it yet on the next reconcile).
pub async fn apply(ctx: &Context, cert: &Certificate, secret: &Secret) -> Result<(), kube::Error> {
    let ns = cert.namespace().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let written = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await?;
    let version = written.resource_version().and_then(|v| v.parse().ok());
    ctx.memory.set_written_secret(&key_of(cert), &name, version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::cached_secret::CachedSecret;
    use crate::shared::cached_secret::tests::{pem, secret};

    #[test]
    fn the_cache_keeps_what_the_decision_reads() {
        // The annotation the decision reads from a cached TLS Secret is kept.
        assert!(crate::shared::cached_secret::ANNOTATIONS.contains(&ANNOTATION_ISSUER));
        let chain = format!("{}{}", pem("leaf.example"), pem("intermediate.example"));
        let full = secret(&chain);
        let slimmed = CachedSecret::from(full.clone()).to_secret();
        let keys: Vec<&String> = slimmed.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["tls.crt", "tls.key"]);
        assert_eq!(leaf_der(&slimmed), leaf_der(&full));
        let (a, b) = (secret_view(&full), secret_view(&slimmed));
        let (a, b) = (a.cert.unwrap().unwrap(), b.cert.unwrap().unwrap());
        assert_eq!((a.chain_len, b.chain_len), (2, 1));
        assert_eq!(
            (a.dns_names, a.serial, a.not_after, a.public_key_spki),
            (b.dns_names, b.serial, b.not_after, b.public_key_spki)
        );
        assert_eq!(secret_view(&slimmed).key_pem.as_deref(), Some("KEY"));

        // What does not parse stays as it is: the decision must see the same error.
        for bad in [
            "garbage".to_string(),
            format!("{}-----BEGIN CERTIFICATE-----\n!!\n", pem("leaf.example")),
        ] {
            let s = CachedSecret::from(secret(&bad)).to_secret();
            assert_eq!(secret_string(&s, "tls.crt").as_deref(), Some(bad.as_str()));
            assert!(secret_view(&s).cert.unwrap().is_err());
        }
    }
}
