//! What the watch cache keeps of each Secret the operator manages (TLS Secrets, next
//! keys, account keys, copies).
//!
//! A whole `Secret` cost about 3.7 KB in the cache: its labels, annotations and data are
//! three `BTreeMap`s, and each takes a whole 11-entry node (544 bytes) however few
//! entries it holds, besides the chain, `ca.crt` and the additional output formats. At
//! 10,000 Certificates that was 37 MiB of a 96 MiB heap. The cache keeps instead the few
//! labels, annotations and data the controllers read, in vectors, and rebuilds a
//! `Secret` of them when one is read ([`CachedSecret::to_secret`]).
//!
//! It deserializes from a Secret, so `Api<CachedSecret>` watches Secrets and the whole
//! object lives only while its watch event is decoded.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::runtime::reflector::ObjectRef;

use crate::api::{CERTIFICATE_LABEL, COMPONENT_LABEL, Certificate, MANAGED_BY_LABEL};
use crate::pki;

/// The labels the controllers read: which Certificate a Secret is for, and as what (and
/// the managed-by label the watch selects by, so a rebuilt Secret still says whose it is).
const LABELS: [&str; 3] = [MANAGED_BY_LABEL, COMPONENT_LABEL, CERTIFICATE_LABEL];

/// The annotations the controllers read from the cache: the issuer of the certificate in
/// a TLS Secret (`caas.dev/issuer`), and of a copy its serial and whose copy it is (the
/// serial is kept on TLS Secrets too, being the same key).
pub const ANNOTATIONS: [&str; 3] = ["caas.dev/issuer", "caas.dev/serial", "caas.dev/copy-of"];

/// The data the controllers read: of `tls.crt` only the leaf (see [`leaf_only`]).
const DATA: [&str; 2] = ["tls.crt", "tls.key"];

/// A managed Secret as the watch cache keeps it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(from = "Secret")]
pub struct CachedSecret {
    /// Name, namespace, uid, resourceVersion and the like; no labels or annotations
    /// (they are below), no managedFields.
    pub metadata: ObjectMeta,
    type_: Option<String>,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    data: Vec<(String, ByteString)>,
}

impl From<Secret> for CachedSecret {
    fn from(secret: Secret) -> Self {
        let mut metadata = secret.metadata;
        let kept = |map: Option<std::collections::BTreeMap<String, String>>, keys: &[&str]| {
            map.into_iter()
                .flatten()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .collect::<Vec<_>>()
        };
        let labels = kept(metadata.labels.take(), &LABELS);
        let annotations = kept(metadata.annotations.take(), &ANNOTATIONS);
        metadata.managed_fields = None;
        let data = secret
            .data
            .into_iter()
            .flatten()
            .filter(|(k, _)| DATA.contains(&k.as_str()))
            .map(|(k, v)| match k.as_str() {
                "tls.crt" => (k, ByteString(leaf_only(v.0))),
                _ => (k, v),
            })
            .collect();
        CachedSecret {
            metadata,
            type_: secret.type_,
            labels,
            annotations,
            data,
        }
    }
}

/// Of a PEM chain, the leaf alone: the decisions read only the leaf. A chain that does
/// not parse is kept whole, so the decision sees exactly what it would have seen in the
/// full Secret.
fn leaf_only(crt: Vec<u8>) -> Vec<u8> {
    const END: &str = "-----END CERTIFICATE-----";
    let Ok(text) = std::str::from_utf8(&crt) else {
        return crt;
    };
    let (Ok(all), Some(end)) = (pki::pem_certificates(text), text.find(END)) else {
        return crt;
    };
    let leaf = format!("{}\n", &text[..end + END.len()]);
    if all.len() > 1 && pki::pem_certificates(&leaf).is_ok_and(|l| l.first() == all.first()) {
        leaf.into_bytes()
    } else {
        crt
    }
}

impl CachedSecret {
    /// A label the cache keeps.
    pub fn label(&self, key: &str) -> Option<&str> {
        find(&self.labels, key)
    }

    /// An annotation the cache keeps ([`ANNOTATIONS`]).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.annotations, key)
    }

    /// The Certificate (in the Secret's namespace) whose TLS Secret this is, if it is one.
    pub fn tls_of(&self) -> Option<ObjectRef<Certificate>> {
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        (self.label(COMPONENT_LABEL) == Some("tls"))
            .then(|| self.label(CERTIFICATE_LABEL))
            .flatten()
            .map(|name| ObjectRef::new(name).within(namespace))
    }

    /// The Secret made of what the cache keeps.
    pub fn to_secret(&self) -> Secret {
        let map = |pairs: &[(String, String)]| {
            (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
        };
        let mut metadata = self.metadata.clone();
        metadata.labels = map(&self.labels);
        metadata.annotations = map(&self.annotations);
        Secret {
            metadata,
            type_: self.type_.clone(),
            data: (!self.data.is_empty()).then(|| self.data.iter().cloned().collect()),
            ..Default::default()
        }
    }
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl k8s_openapi::Resource for CachedSecret {
    const API_VERSION: &'static str = <Secret as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Secret as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Secret as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Secret as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Secret as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for CachedSecret {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A self-signed certificate for `name`, PEM.
    pub(crate) fn pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    }

    /// A managed TLS Secret with `crt`, key `KEY`, a `ca.crt`, an additional output
    /// format, and labels and annotations of which some are not kept.
    pub(crate) fn secret(crt: &str) -> Secret {
        let data = [
            ("tls.crt", crt.to_string()),
            ("tls.key", "KEY".to_string()),
            ("ca.crt", pem("ca.example")),
            ("tls-combined.pem", format!("{crt}KEY")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect();
        let labels = [
            (MANAGED_BY_LABEL, "caas-operator"),
            (COMPONENT_LABEL, "tls"),
            (CERTIFICATE_LABEL, "web"),
            ("team", "shop"),
        ];
        let annotations = [
            ("caas.dev/issuer", "CaaSIssuer/shop/ca"),
            ("caas.dev/serial", "0a"),
            ("caas.dev/alt-names", "web.example"),
        ];
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Secret {
            metadata: ObjectMeta {
                name: Some("web-tls".into()),
                namespace: Some("shop".into()),
                resource_version: Some("7".into()),
                labels: Some(map(&labels)),
                annotations: Some(map(&annotations)),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn the_cache_keeps_what_the_controllers_read() {
        let leaf = pem("leaf.example");
        let full = secret(&format!("{leaf}{}", pem("intermediate.example")));
        // As the watch decodes it.
        let cached: CachedSecret = serde_json::from_value(serde_json::to_value(&full).unwrap())
            .expect("a Secret decodes as a CachedSecret");
        assert_eq!(cached.label(CERTIFICATE_LABEL), Some("web"));
        assert_eq!(cached.label("team"), None);
        assert_eq!(cached.annotation("caas.dev/serial"), Some("0a"));
        assert_eq!(cached.annotation("caas.dev/alt-names"), None);
        let back = cached.to_secret();
        assert_eq!(back.metadata.name, full.metadata.name);
        assert_eq!(back.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(back.type_, full.type_);
        let data = back.data.unwrap();
        let keys: Vec<&String> = data.keys().collect();
        assert_eq!(keys, ["tls.crt", "tls.key"]);
        assert_eq!(data["tls.crt"].0, leaf.as_bytes());
        assert_eq!(data["tls.key"].0, b"KEY");
    }

    #[test]
    fn a_chain_that_does_not_parse_is_kept_whole() {
        for bad in [
            "garbage".to_string(),
            format!("{}-----BEGIN CERTIFICATE-----\n!!\n", pem("leaf.example")),
        ] {
            let cached = CachedSecret::from(secret(&bad));
            let data = cached.to_secret().data.unwrap();
            assert_eq!(data["tls.crt"].0, bad.as_bytes());
        }
    }
}
