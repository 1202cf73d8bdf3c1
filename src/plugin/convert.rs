//! `kubectl caas convert -f cert-manager.yaml`: cert-manager `Issuer` / `ClusterIssuer`
//! (ACME) and `Certificate` manifests turned into `CaaSIssuer` / `ClusterCaaSIssuer` /
//! `Certificate` (caas.dev), field by field. Our field names are cert-manager's, so each
//! block is carried over and read through our types; every field that does not survive
//! that (a field we do not support) is a warning naming its path. Pure: text in, text
//! and warnings out.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::{CertificateSpec, IssuerSpec};

/// The converted manifests (YAML stream) and one warning per dropped field or object.
#[derive(Debug, Default, PartialEq)]
pub struct Converted {
    pub yaml: String,
    pub warnings: Vec<String>,
}

/// Leaf paths of a JSON value (`a.b[0].c`).
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                leaves(v, &format!("{prefix}.{k}"), out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                leaves(v, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Reads `input` through our type `T` and warns about every leaf that did not survive.
fn carry<T>(input: &Value, path: &str, warnings: &mut Vec<String>, what: &str) -> Option<Value>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = match T::deserialize(input) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!("{what}: {path} cannot be converted: {e}"));
            return None;
        }
    };
    let out = serde_json::to_value(&typed).ok()?;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    leaves(input, path, &mut before);
    leaves(&out, path, &mut after);
    for p in before.iter().filter(|p| !after.contains(p)) {
        // A default we drop because it is our default too is not a loss.
        warnings.push(format!(
            "{what}: {p} is not supported by caas-operator; dropped"
        ));
    }
    Some(out)
}

fn metadata(doc: &Value) -> Value {
    let m = &doc["metadata"];
    let mut out = Map::new();
    for k in ["name", "namespace", "labels", "annotations"] {
        if !m[k].is_null() {
            out.insert(k.into(), m[k].clone());
        }
    }
    Value::Object(out)
}

fn issuer(doc: &Value, kind: &str, warnings: &mut Vec<String>) -> Option<Value> {
    let what = format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    );
    let Some(acme) = doc["spec"]["acme"].as_object() else {
        let types: Vec<&String> = doc["spec"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        warnings.push(format!(
            "{what}: only ACME issuers convert (this one is {types:?}); skipped"
        ));
        return None;
    };
    let mut acme = Value::Object(acme.clone());
    // cert-manager's defaults written out are ours too: no warning for them.
    drop_if(&mut acme, "disableAccountKeyGeneration", &json!(false));
    if let Some(key_ref) = acme.get_mut("privateKeySecretRef") {
        drop_if(key_ref, "key", &json!("tls.key"));
        warnings.push(format!(
            "{what}: spec.acme.privateKeySecretRef {}: caas-operator's account keys are \
             ECDSA P-256 in PKCS#8; cert-manager's (RSA) cannot be reused: name a new Secret \
             (a new account is registered; with EAB, one more EAB key)",
            key_ref["name"].as_str().unwrap_or("?")
        ));
    }
    if let Some(skip) = acme.as_object_mut().and_then(|m| m.remove("skipTLSVerify"))
        && skip == true
    {
        warnings.push(format!(
            "{what}: spec.acme.skipTLSVerify is not supported (set caBundle to the CA's roots); dropped"
        ));
    }
    // cert-manager's external webhook solvers (groupName/solverName) are another
    // protocol than ours (lego's httpreq); say so rather than carry a broken block.
    if let Some(solvers) = acme["solvers"].as_array_mut() {
        for (i, s) in solvers.iter_mut().enumerate() {
            if s["dns01"]["webhook"]["groupName"].is_string() {
                warnings.push(format!(
                    "{what}: spec.acme.solvers[{i}].dns01.webhook is a cert-manager webhook \
                     solver ({}); caas-operator's webhook speaks lego's httpreq: dropped",
                    s["dns01"]["webhook"]["solverName"].as_str().unwrap_or("?")
                ));
                s["dns01"].as_object_mut().map(|m| m.remove("webhook"));
            }
        }
    }
    let spec = carry::<IssuerSpec>(&acme, "spec.acme", warnings, &what)?;
    Some(json!({
        "apiVersion": "caas.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata(doc),
        "spec": spec,
    }))
}

/// Removes `field` from `object` when it holds cert-manager's default (also ours, or
/// meaningless here): writing a default out is no loss worth a warning.
fn drop_if(object: &mut Value, field: &str, default: &Value) {
    if object.get(field) == Some(default)
        && let Some(m) = object.as_object_mut()
    {
        m.remove(field);
    }
}

/// cert-manager's private key defaults (RSA, PKCS#1) differ from ours (ECDSA, PKCS#8):
/// a converted Certificate keeps cert-manager's, written out, and says so.
fn private_key_defaults(spec: &mut Value, warnings: &mut Vec<String>, what: &str) {
    if !spec["privateKey"].is_object() {
        spec["privateKey"] = json!({});
    }
    let key = &mut spec["privateKey"];
    if key["algorithm"].is_null() {
        key["algorithm"] = json!("RSA");
        warnings.push(format!(
            "{what}: spec.privateKey.algorithm unset: cert-manager's default RSA written out \
             (caas-operator's own default is ECDSA P-256; remove it to take that)"
        ));
    }
    match (key["algorithm"].as_str(), key["encoding"].as_str()) {
        (Some("RSA"), None) => key["encoding"] = json!("PKCS1"),
        (Some("ECDSA"), None | Some("PKCS1")) => {
            key["encoding"] = json!("PKCS8");
            warnings.push(format!(
                "{what}: tls.key will be PKCS#8: cert-manager writes ECDSA keys as SEC1 \
                 (`EC PRIVATE KEY`) by default, which caas-operator does not write"
            ));
        }
        (Some("Ed25519"), Some("PKCS1")) => key["encoding"] = json!("PKCS8"),
        _ => {}
    }
}

fn certificate(doc: &Value, warnings: &mut Vec<String>) -> Option<Value> {
    let what = format!(
        "Certificate {}",
        doc["metadata"]["name"].as_str().unwrap_or("?")
    );
    let mut spec = doc["spec"].clone();
    let issuer = &mut spec["issuerRef"];
    if let Some(group) = issuer["group"].as_str() {
        if group != "cert-manager.io" {
            warnings.push(format!(
                "{what}: spec.issuerRef.group {group} is an external issuer; point issuerRef at a CaaSIssuer"
            ));
        }
        issuer.as_object_mut().map(|m| m.remove("group"));
    }
    let kind = match issuer["kind"].as_str() {
        Some("ClusterIssuer") => "ClusterCaaSIssuer",
        _ => "CaaSIssuer",
    };
    issuer["kind"] = json!(kind);
    for (field, default) in [
        ("isCA", json!(false)),
        ("revisionHistoryLimit", json!(1)),
        ("encodeUsagesInRequest", json!(true)),
        ("usages", json!(["digital signature", "key encipherment"])),
    ] {
        drop_if(&mut spec, field, &default);
    }
    private_key_defaults(&mut spec, warnings, &what);
    let spec = carry::<CertificateSpec>(&spec, "spec", warnings, &what)?;
    Some(json!({
        "apiVersion": "caas.dev/v1alpha1",
        "kind": "Certificate",
        "metadata": metadata(doc),
        "spec": spec,
    }))
}

/// Converts a YAML stream of cert-manager manifests.
pub fn convert(input: &str) -> Result<Converted, String> {
    let mut out = Converted::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let doc = Value::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        if doc.is_null() {
            continue;
        }
        let api = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let converted = match (api.split('/').next(), kind) {
            (Some("cert-manager.io"), "Issuer") => issuer(&doc, "CaaSIssuer", &mut out.warnings),
            (Some("cert-manager.io"), "ClusterIssuer") => {
                issuer(&doc, "ClusterCaaSIssuer", &mut out.warnings)
            }
            (Some("cert-manager.io"), "Certificate") => certificate(&doc, &mut out.warnings),
            _ => {
                out.warnings.push(format!(
                    "{kind} {} ({api}) is not a cert-manager Issuer, ClusterIssuer or Certificate; left out",
                    doc["metadata"]["name"].as_str().unwrap_or("?")
                ));
                None
            }
        };
        if let Some(c) = converted {
            out.yaml.push_str("---\n");
            out.yaml
                .push_str(&serde_yaml::to_string(&c).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_MANAGER: &str = r#"
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: trustico
spec:
  acme:
    server: https://acme.example/directory
    email: ops@example.com
    skipTLSVerify: true
    externalAccountBinding:
      keyID: kid-1
      keySecretRef: { name: eab, key: secret }
      keyAlgorithm: HS256
    privateKeySecretRef: { name: trustico-account }
    solvers:
      - selector: { dnsZones: [example.com] }
        dns01:
          cloudflare:
            apiTokenSecretRef: { name: cf, key: token }
      - http01:
          ingress:
            ingressClassName: nginx
            podTemplate: { spec: { nodeSelector: { a: b } } }
      - dns01:
          webhook: { groupName: acme.example, solverName: mydns }
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: { name: internal, namespace: shop }
spec:
  ca: { secretName: root }
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: { name: web, namespace: shop, labels: { app: web } }
spec:
  secretName: web-tls
  issuerRef: { name: trustico, kind: ClusterIssuer, group: cert-manager.io }
  dnsNames: [www.example.com]
  duration: 2160h
  renewBefore: 360h
  privateKey: { algorithm: ECDSA, size: 384, rotationPolicy: Always }
  usages: [server auth]
  subject: { organizations: [Example] }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: other }
"#;

    #[test]
    fn issuers_and_certificates_field_by_field() {
        let c = convert(CERT_MANAGER).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&c.yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2, "{}", c.yaml);
        let issuer = &docs[0];
        assert_eq!(issuer["kind"], "ClusterCaaSIssuer");
        assert_eq!(issuer["spec"]["server"], "https://acme.example/directory");
        assert_eq!(issuer["spec"]["externalAccountBinding"]["keyID"], "kid-1");
        assert_eq!(
            issuer["spec"]["solvers"][0]["dns01"]["cloudflare"]["apiTokenSecretRef"]["name"],
            "cf"
        );
        assert_eq!(
            issuer["spec"]["solvers"][1]["http01"]["ingress"]["ingressClassName"],
            "nginx"
        );
        let cert = &docs[1];
        assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterCaaSIssuer");
        assert_eq!(cert["spec"]["privateKey"]["size"], 384);
        assert_eq!(cert["metadata"]["labels"]["app"], "web");
        let w = c.warnings.join("\n");
        for expected in [
            "skipTLSVerify",
            "spec.acme.solvers[1].http01.ingress.podTemplate.spec.nodeSelector.a is not supported",
            "dns01.webhook is a cert-manager webhook solver (mydns)",
            "Issuer internal: only ACME issuers convert",
            "Certificate web: spec.usages[0] is not supported",
            "Certificate web: spec.subject.organizations[0] is not supported",
            "ConfigMap other",
        ] {
            assert!(w.contains(expected), "no warning {expected:?} in:\n{w}");
        }
        assert!(!w.contains("dnsNames") && !w.contains("duration"), "{w}");
        // ECDSA as given; its encoding PKCS#8, said.
        assert_eq!(cert["spec"]["privateKey"]["encoding"], "PKCS8");
        assert!(w.contains("tls.key will be PKCS#8"), "{w}");
    }

    /// cert-manager's defaults: RSA/PKCS#1 keys written out; default-valued fields
    /// (`isCA: false`, `revisionHistoryLimit: 1`, the default usages, the account key's
    /// `tls.key`) carried without a warning.
    #[test]
    fn cert_managers_defaults_are_kept_and_not_warned_about() {
        let input = r#"
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: { name: le, namespace: shop }
spec:
  acme:
    server: https://acme.example/directory
    disableAccountKeyGeneration: false
    privateKeySecretRef: { name: le-account, key: tls.key }
    solvers: [{ http01: { ingress: {} } }]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: { name: web, namespace: shop }
spec:
  secretName: web-tls
  issuerRef: { name: le }
  dnsNames: [www.example.com]
  isCA: false
  revisionHistoryLimit: 1
  usages: [digital signature, key encipherment]
"#;
        let c = convert(input).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&c.yaml)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let key = &docs[1]["spec"]["privateKey"];
        assert_eq!(
            (key["algorithm"].as_str(), key["encoding"].as_str()),
            (Some("RSA"), Some("PKCS1"))
        );
        let w = c.warnings.join("\n");
        assert!(w.contains("cert-manager's default RSA written out"), "{w}");
        assert!(w.contains("cert-manager's (RSA) cannot be reused"), "{w}");
        let spec = &docs[1]["spec"];
        assert!(spec["isCA"].is_null() && spec["usages"].is_null(), "{spec}");
        for quiet in [
            "isCA",
            "revisionHistoryLimit",
            "usages",
            "disableAccountKeyGeneration",
            "key is not supported",
        ] {
            assert!(!w.contains(quiet), "{quiet} warned about: {w}");
        }
    }

    /// cert-manager's documented Route 53 forms: a plain `accessKeyID` beside the secret
    /// key's Secret, and `role` (assumed with the ambient or given credentials).
    #[test]
    fn route53_access_key_id_and_role_are_carried() {
        let input = r#"
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: { name: le }
spec:
  acme:
    server: https://acme.example/directory
    privateKeySecretRef: { name: le-account }
    solvers:
      - dns01:
          route53:
            region: eu-west-1
            hostedZoneID: Z0123
            accessKeyID: AKIAIOSFODNN7EXAMPLE
            secretAccessKeySecretRef: { name: aws, key: secret-access-key }
            role: arn:aws:iam::123456789012:role/dns-manager
      - dns01:
          route53:
            region: us-east-1
            role: arn:aws:iam::123456789012:role/other
"#;
        let c = convert(input).unwrap();
        // Only the account key's note: both Route 53 forms carry over.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("privateKeySecretRef le-account"));
        let doc: Value = serde_yaml::from_str(&c.yaml).unwrap();
        let r53 = &doc["spec"]["solvers"][0]["dns01"]["route53"];
        assert_eq!(r53["accessKeyID"], "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(r53["role"], "arn:aws:iam::123456789012:role/dns-manager");
        assert_eq!(r53["secretAccessKeySecretRef"]["key"], "secret-access-key");
        let ambient = &doc["spec"]["solvers"][1]["dns01"]["route53"];
        assert_eq!(ambient["role"], "arn:aws:iam::123456789012:role/other");
    }
}
