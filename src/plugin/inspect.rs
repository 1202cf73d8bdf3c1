//! `kubectl caas inspect secret`: a TLS Secret decoded, like `cmctl inspect secret`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::when;

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

/// One certificate of a chain.
fn describe(der: &[u8]) -> Value {
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return json!({ "error": "not a readable X.509 certificate" });
    };
    let cn = |n: &x509_parser::x509::X509Name<'_>| {
        n.iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .next()
            .map(|s| format!("CN={s}"))
            .unwrap_or_else(|| match n.to_string() {
                s if s.is_empty() => "(no subject: names in SANs)".to_string(),
                s => s,
            })
    };
    let ts = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp())
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    json!({
        "subject": cn(c.subject()),
        "issuer": cn(c.issuer()),
        "serial": c.raw_serial_as_string().replace(':', ""),
        "notBefore": ts(c.validity().not_before),
        "notAfter": ts(c.validity().not_after),
        "isCA": c.is_ca(),
    })
}

/// What a TLS Secret holds (no key material: its type and whether it matches).
pub fn secret_report(secret: &Secret, now: Timestamp) -> Value {
    let chain = text(secret, "tls.crt").unwrap_or_default();
    let ders = crate::pki::pem_certificates(&chain).unwrap_or_default();
    let info = crate::pki::parse_chain(&chain).ok();
    let key = text(secret, "tls.key");
    let mut leaf = ders.first().map(|d| describe(d)).unwrap_or(Value::Null);
    if let Some(info) = &info {
        let names: Vec<String> = info
            .dns_names
            .iter()
            .cloned()
            .chain(info.ip_addresses.iter().map(|i| i.to_string()))
            .collect();
        leaf["names"] = json!(names);
    }
    let valid = info
        .as_ref()
        .is_some_and(|i| i.not_before <= now && now < i.not_after);
    let matches = match (&key, &info) {
        (Some(k), Some(i)) => Some(crate::pki::key_matches(k, i)),
        _ => None,
    };
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    json!({
        "type": secret.type_,
        "leaf": leaf,
        "chain": ders.iter().skip(1).map(|d| describe(d)).collect::<Vec<_>>(),
        "caCrt": text(secret, "ca.crt").is_some(),
        "key": key.as_deref().map(key_type),
        "keyMatches": matches,
        "validNow": valid,
        "certificate": annotations.get("caas.dev/certificate-name"),
        "issuerAnnotation": annotations.get("caas.dev/issuer"),
    })
}

/// The report for `inspect secret`.
pub async fn secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    now: Timestamp,
) -> anyhow::Result<Value> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no Secret {name} in namespace {ns}"))?;
    let mut r = secret_report(&secret, now);
    let good = r["validNow"] == true && r["keyMatches"] == true;
    r["namespace"] = json!(ns);
    r["name"] = json!(name);
    r["ready"] = json!(good);
    r["verdict"] = json!(match (&r["leaf"], good) {
        (Value::Null, _) => "NOT USABLE: no certificate in tls.crt".to_string(),
        (_, true) => "USABLE: valid now, and tls.key belongs to the certificate".to_string(),
        _ if r["keyMatches"] == false =>
            "NOT USABLE: tls.key does not belong to the certificate".to_string(),
        _ => "NOT USABLE: the certificate is not valid now".to_string(),
    });
    Ok(r)
}

/// The text of `inspect secret`.
pub fn render(r: &Value) -> String {
    let now = Timestamp::now();
    let s = super::status::s;
    let mut out = format!(
        "Secret {}/{} ({})\n",
        s(&r["namespace"]),
        s(&r["name"]),
        s(&r["type"])
    );
    let leaf = &r["leaf"];
    if !leaf.is_null() {
        let names: Vec<String> = leaf["names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        out.push_str(&format!(
            "  Certificate: {} issued by {}\n",
            s(&leaf["subject"]),
            s(&leaf["issuer"])
        ));
        out.push_str(&format!("  Serial:      {}\n", s(&leaf["serial"])));
        out.push_str(&format!("  Names:       {}\n", names.join(", ")));
        out.push_str(&format!(
            "  Valid:       {} .. {}\n",
            s(&leaf["notBefore"]),
            when(&s(&leaf["notAfter"]), now)
        ));
    }
    for (i, c) in r["chain"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!(
            "  Chain[{}]:    {} issued by {} (until {})\n",
            i + 1,
            s(&c["subject"]),
            s(&c["issuer"]),
            s(&c["notAfter"])
        ));
    }
    out.push_str(&format!(
        "  Key:         {} ({})\n",
        s(&r["key"]),
        match r["keyMatches"].as_bool() {
            Some(true) => "matches the certificate",
            Some(false) => "does NOT match the certificate",
            None => "nothing to compare",
        }
    ));
    if let Some(c) = r["certificate"].as_str() {
        out.push_str(&format!(
            "  Managed by:  Certificate {c} ({})\n",
            s(&r["issuerAnnotation"])
        ));
    }
    out.push_str(&format!("Verdict: {}\n", s(&r["verdict"])));
    out
}
