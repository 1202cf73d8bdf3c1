//! `kubectl caas inspect secret`: a TLS Secret decoded, like `cmctl inspect secret`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::report::{Report, or_dash, when};

/// One certificate of a chain, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CertDescription {
    Readable(CertSummary),
    Unreadable { error: String },
}

/// What a readable certificate says. `names` (its SANs) only for the leaf.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertSummary {
    #[serde(rename = "isCA")]
    pub is_ca: bool,
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    pub not_after: String,
    pub not_before: String,
    pub serial: String,
    pub subject: String,
}

impl CertDescription {
    /// The certificate's summary, `None` when it could not be read.
    pub fn summary(&self) -> Option<&CertSummary> {
        match self {
            CertDescription::Readable(c) => Some(c),
            CertDescription::Unreadable { .. } => None,
        }
    }

    /// A field of a readable certificate, `-` otherwise (as text shows it).
    pub fn field(&self, f: impl Fn(&CertSummary) -> &str) -> &str {
        or_dash(self.summary().map(f))
    }

    /// The leaf's names (SANs), none when unknown.
    pub fn names(&self) -> &[String] {
        self.summary()
            .and_then(|c| c.names.as_deref())
            .unwrap_or_default()
    }
}

/// What a TLS Secret holds (no key material: its type and whether it matches).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretReport {
    pub ca_crt: bool,
    /// The Certificate that manages it (its annotation).
    pub certificate: Option<String>,
    pub chain: Vec<CertDescription>,
    pub issuer_annotation: Option<String>,
    /// The private key's type, never the key.
    pub key: Option<String>,
    pub key_matches: Option<bool>,
    pub leaf: Option<CertDescription>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub valid_now: bool,
}

/// The report of `inspect secret`: the [`SecretReport`] with the Secret's name and a
/// verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InspectReport {
    pub name: String,
    pub namespace: String,
    pub ready: bool,
    pub verdict: String,
    #[serde(flatten)]
    pub secret: SecretReport,
}

impl Report for InspectReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

impl InspectReport {
    /// The Secret `ns/name`'s report with its verdict.
    pub fn new(ns: &str, name: &str, r: SecretReport) -> Self {
        let (ready, verdict) = super::verdict::secret(r.leaf.is_some(), r.valid_now, r.key_matches);
        InspectReport {
            name: name.to_string(),
            namespace: ns.to_string(),
            ready,
            verdict,
            secret: r,
        }
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// The type of a PEM private key, never the key: `ECDSA P-256`, `RSA 2048`, `Ed25519`.
fn key_type(key_pem: &str) -> String {
    match crate::pki::load_key(key_pem) {
        Ok(key) => {
            let alg = key.algorithm();
            if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
                "ECDSA P-256".into()
            } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
                "ECDSA P-384".into()
            } else if alg == &rcgen::PKCS_ED25519 {
                "Ed25519".into()
            } else {
                use rcgen::PublicKeyData;
                // RSA: the modulus length from the SubjectPublicKeyInfo's size.
                let bits = match key.subject_public_key_info().len() {
                    0..=300 => 2048,
                    301..=430 => 3072,
                    _ => 4096,
                };
                format!("RSA {bits}")
            }
        }
        Err(_) => "unreadable".into(),
    }
}

/// `CN=...` of a name, else the whole name, else a note that the names are in SANs.
fn common_name(n: &x509_parser::x509::X509Name<'_>) -> String {
    n.iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .next()
        .map(|s| format!("CN={s}"))
        .unwrap_or_else(|| match n.to_string() {
            s if s.is_empty() => "(no subject: names in SANs)".to_string(),
            s => s,
        })
}

/// One certificate of a chain.
fn describe(der: &[u8]) -> CertDescription {
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return CertDescription::Unreadable {
            error: "not a readable X.509 certificate".to_string(),
        };
    };
    let ts = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp())
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    CertDescription::Readable(CertSummary {
        is_ca: c.is_ca(),
        issuer: common_name(c.issuer()),
        names: None,
        not_after: ts(c.validity().not_after),
        not_before: ts(c.validity().not_before),
        serial: c.raw_serial_as_string().replace(':', ""),
        subject: common_name(c.subject()),
    })
}

/// What a TLS Secret holds (no key material: its type and whether it matches).
pub fn secret_report(secret: &Secret, now: Timestamp) -> SecretReport {
    let chain = text(secret, "tls.crt").unwrap_or_default();
    let ders = crate::pki::pem_certificates(&chain).unwrap_or_default();
    let info = crate::pki::parse_chain(&chain).ok();
    let key = text(secret, "tls.key");
    let mut leaf = ders.first().map(|d| describe(d));
    // A chain that parses has a readable leaf: its names are the SANs.
    if let (Some(info), Some(CertDescription::Readable(leaf))) = (&info, &mut leaf) {
        let names = info
            .dns_names
            .iter()
            .cloned()
            .chain(info.ip_addresses.iter().map(|i| i.to_string()));
        leaf.names = Some(names.collect());
    }
    let valid_now = info
        .as_ref()
        .is_some_and(|i| i.not_before <= now && now < i.not_after);
    let key_matches = match (&key, &info) {
        (Some(k), Some(i)) => Some(crate::pki::key_matches(k, i)),
        _ => None,
    };
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    SecretReport {
        ca_crt: text(secret, "ca.crt").is_some(),
        certificate: annotations.get("caas.dev/certificate-name").cloned(),
        chain: ders.iter().skip(1).map(|d| describe(d)).collect(),
        issuer_annotation: annotations.get("caas.dev/issuer").cloned(),
        key: key.as_deref().map(key_type),
        key_matches,
        leaf,
        type_: secret.type_.clone(),
        valid_now,
    }
}

/// The report for `inspect secret`.
pub async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    now: Timestamp,
) -> anyhow::Result<InspectReport> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Secret {name} in namespace {ns}"))?;
    Ok(InspectReport::new(ns, name, secret_report(&secret, now)))
}

/// The text of `inspect secret`.
pub fn render(r: &InspectReport) -> String {
    let now = Timestamp::now();
    let mut out = format!(
        "Secret {}/{} ({})\n",
        r.namespace,
        r.name,
        or_dash(r.secret.type_.as_deref())
    );
    if let Some(leaf) = &r.secret.leaf {
        out.push_str(&format!(
            "  Certificate: {} issued by {}\n",
            leaf.field(|c| &c.subject),
            leaf.field(|c| &c.issuer)
        ));
        out.push_str(&format!("  Serial:      {}\n", leaf.field(|c| &c.serial)));
        out.push_str(&format!("  Names:       {}\n", leaf.names().join(", ")));
        out.push_str(&format!(
            "  Valid:       {} .. {}\n",
            leaf.field(|c| &c.not_before),
            when(leaf.field(|c| &c.not_after), now)
        ));
    }
    for (i, c) in r.secret.chain.iter().enumerate() {
        out.push_str(&format!(
            "  Chain[{}]:    {} issued by {} (until {})\n",
            i + 1,
            c.field(|c| &c.subject),
            c.field(|c| &c.issuer),
            c.field(|c| &c.not_after)
        ));
    }
    out.push_str(&format!(
        "  Key:         {} ({})\n",
        or_dash(r.secret.key.as_deref()),
        match r.secret.key_matches {
            Some(true) => "matches the certificate",
            Some(false) => "does NOT match the certificate",
            None => "nothing to compare",
        }
    ));
    if let Some(c) = &r.secret.certificate {
        out.push_str(&format!(
            "  Managed by:  Certificate {c} ({})\n",
            or_dash(r.secret.issuer_annotation.as_deref())
        ));
    }
    out.push_str(&format!("Verdict: {}\n", r.verdict));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(names: Option<Vec<String>>) -> CertDescription {
        CertDescription::Readable(CertSummary {
            is_ca: false,
            issuer: "CN=CA".into(),
            names,
            not_after: "2027-01-01T00:00:00Z".into(),
            not_before: "2026-01-01T00:00:00Z".into(),
            serial: "0a".into(),
            subject: "CN=web".into(),
        })
    }

    fn report() -> SecretReport {
        SecretReport {
            ca_crt: false,
            certificate: Some("web".into()),
            chain: vec![
                summary(None),
                CertDescription::Unreadable {
                    error: "not a readable X.509 certificate".into(),
                },
            ],
            issuer_annotation: None,
            key: Some("ECDSA P-256".into()),
            key_matches: Some(true),
            leaf: Some(summary(Some(vec!["web.test".into()]))),
            type_: Some("kubernetes.io/tls".into()),
            valid_now: true,
        }
    }

    /// The keys and values the untyped report had.
    #[test]
    fn the_report_keeps_its_json_shape() {
        let leaf = json!({ "isCA": false, "issuer": "CN=CA", "names": ["web.test"],
            "notAfter": "2027-01-01T00:00:00Z", "notBefore": "2026-01-01T00:00:00Z",
            "serial": "0a", "subject": "CN=web" });
        let mut chain0 = leaf.clone();
        chain0.as_object_mut().unwrap().remove("names");
        let secret = json!({
            "type": "kubernetes.io/tls", "leaf": leaf,
            "chain": [chain0, { "error": "not a readable X.509 certificate" }],
            "caCrt": false, "key": "ECDSA P-256", "keyMatches": true, "validNow": true,
            "certificate": "web", "issuerAnnotation": null,
        });
        assert_eq!(crate::plugin::report::as_printed(&report()), secret);
        let mut inspect = secret.clone();
        inspect["namespace"] = json!("ns");
        inspect["name"] = json!("web-tls");
        inspect["ready"] = json!(true);
        inspect["verdict"] = json!("USABLE: valid now, and tls.key belongs to the certificate");
        let r = InspectReport::new("ns", "web-tls", report());
        assert_eq!(crate::plugin::report::as_printed(&r), inspect);
    }

    #[test]
    fn the_text_says_what_is_missing_with_a_dash() {
        let text = render(&InspectReport::new("ns", "web-tls", report()));
        for want in [
            "Secret ns/web-tls (kubernetes.io/tls)\n",
            "  Certificate: CN=web issued by CN=CA\n",
            "  Serial:      0a\n",
            "  Names:       web.test\n",
            "  Valid:       2026-01-01T00:00:00Z .. 2027-01-01T00:00:00Z (",
            "  Chain[1]:    CN=web issued by CN=CA (until 2027-01-01T00:00:00Z)\n",
            "  Chain[2]:    - issued by - (until -)\n",
            "  Key:         ECDSA P-256 (matches the certificate)\n",
            "  Managed by:  Certificate web (-)\n",
            "Verdict: USABLE",
        ] {
            assert!(text.contains(want), "no {want:?} in {text}");
        }
        let empty = SecretReport {
            chain: vec![],
            certificate: None,
            key: None,
            key_matches: None,
            leaf: None,
            valid_now: false,
            ..report()
        };
        let text = render(&InspectReport::new("ns", "empty", empty));
        assert!(!text.contains("Certificate:"), "{text}");
        assert!(
            text.contains("  Key:         - (nothing to compare)\n"),
            "{text}"
        );
        assert!(
            text.contains("Verdict: NOT USABLE: no certificate in tls.crt"),
            "{text}"
        );
    }
}
