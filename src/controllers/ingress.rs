//! Ingress annotations: `caas.dev/issuer` or `caas.dev/cluster-issuer` on an Ingress make
//! the operator keep one Certificate per `spec.tls[]` entry (hosts -> dnsNames, the
//! entry's secretName), owned by the Ingress.
//!
//! Pipeline: read annotations -> desired Certificates ([`desired`], pure) -> apply those
//! that are ours or new -> delete ours that are no longer wanted. A Certificate the user
//! made for the same Secret is never touched: it is reported as a conflict.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER};
use crate::api::{Certificate, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

pub const ISSUER: &str = "caas.dev/issuer";
pub const CLUSTER_ISSUER: &str = "caas.dev/cluster-issuer";
pub const COMMON_NAME: &str = "caas.dev/common-name";
pub const DURATION: &str = "caas.dev/duration";
pub const RENEW_BEFORE: &str = "caas.dev/renew-before";
pub const KEY_ALGORITHM: &str = "caas.dev/private-key-algorithm";
pub const KEY_SIZE: &str = "caas.dev/private-key-size";
/// Label on Certificates made for an Ingress, naming it.
pub const INGRESS_LABEL: &str = "caas.dev/ingress";

/// One Certificate an Ingress asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredCertificate {
    pub name: String,
    pub spec: serde_json::Value,
}

/// The Certificates an Ingress's annotations and TLS entries ask for (empty when it is
/// not annotated), or a message saying which annotation is wrong.
pub fn desired(ingress: &Ingress) -> Result<Vec<DesiredCertificate>, String> {
    let ann = ingress.annotations();
    let (issuer, kind) = match (ann.get(ISSUER), ann.get(CLUSTER_ISSUER)) {
        (Some(_), Some(_)) => return Err(format!("set {ISSUER} or {CLUSTER_ISSUER}, not both")),
        (Some(i), None) => (i.trim(), "CaaSIssuer"),
        (None, Some(i)) => (i.trim(), "ClusterCaaSIssuer"),
        (None, None) => return Ok(Vec::new()),
    };
    if issuer.is_empty() {
        return Err("the issuer annotation is empty".into());
    }
    let mut private_key = serde_json::Map::new();
    if let Some(alg) = ann.get(KEY_ALGORITHM) {
        let alg = match alg.trim().to_ascii_uppercase().as_str() {
            "ECDSA" => "ECDSA",
            "RSA" => "RSA",
            "ED25519" => "Ed25519",
            other => {
                return Err(format!(
                    "{KEY_ALGORITHM} {other:?} is not ECDSA, RSA or Ed25519"
                ));
            }
        };
        private_key.insert("algorithm".into(), json!(alg));
    }
    if let Some(size) = ann.get(KEY_SIZE) {
        let size: u32 = size
            .trim()
            .parse()
            .map_err(|_| format!("{KEY_SIZE} {size:?} is not a number"))?;
        private_key.insert("size".into(), json!(size));
    }
    let mut out: Vec<DesiredCertificate> = Vec::new();
    for (i, tls) in ingress
        .spec
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            return Err(format!("spec.tls[{i}] has no secretName"));
        };
        let hosts: Vec<String> = tls.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            return Err(format!("spec.tls[{i}] ({secret}) has no hosts"));
        }
        if let Some(existing) = out.iter_mut().find(|d| d.name == secret) {
            // Two entries sharing a Secret: one certificate for all their hosts.
            let names = existing.spec["dnsNames"].as_array_mut().expect("dnsNames");
            for h in hosts {
                if !names.contains(&json!(h)) {
                    names.push(json!(h));
                }
            }
            continue;
        }
        let mut spec = json!({
            "secretName": secret,
            "issuerRef": { "name": issuer, "kind": kind },
            "dnsNames": hosts,
        });
        if let Some(cn) = ann.get(COMMON_NAME) {
            spec["commonName"] = json!(cn.trim());
        }
        if let Some(d) = ann.get(DURATION) {
            spec["duration"] = json!(d.trim());
        }
        if let Some(rb) = ann.get(RENEW_BEFORE) {
            spec["renewBefore"] = json!(rb.trim());
        }
        if !private_key.is_empty() {
            spec["privateKey"] = serde_json::Value::Object(private_key.clone());
        }
        out.push(DesiredCertificate {
            name: secret.to_string(),
            spec,
        });
    }
    Ok(out)
}

fn owned_by(cert: &Certificate, ingress: &Ingress) -> bool {
    let uid = ingress.uid();
    cert.owner_references()
        .iter()
        .any(|o| o.kind == "Ingress" && Some(&o.uid) == uid.as_ref())
}

pub async fn reconcile(ingress: Arc<Ingress>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ingress.namespace().unwrap_or_default();
    let certs: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
    let wanted = match desired(&ingress) {
        Ok(w) => w,
        Err(message) => {
            ctx.event(&*ingress, true, "InvalidAnnotation", "Reconcile", message)
                .await;
            return Ok(Action::await_change());
        }
    };
    // From the watched Certificates, so an Ingress without annotations costs no API call.
    let all: Vec<Certificate> = ctx
        .certificates
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .map(|c| (*c).clone())
        .collect();
    // Ours: labelled for this Ingress and owned by it.
    let mine: Vec<&Certificate> = all
        .iter()
        .filter(|c| {
            c.labels().get(INGRESS_LABEL) == Some(&ingress.name_any()) && owned_by(c, &ingress)
        })
        .collect();
    let owner = ingress.controller_owner_ref(&()).expect("stored Ingress");
    for want in &wanted {
        let conflict = all.iter().find(|c| {
            !owned_by(c, &ingress)
                && (c.name_any() == want.name || c.spec.secret_name == want.spec["secretName"])
        });
        if let Some(other) = conflict {
            ctx.event(
                &*ingress,
                true,
                "Conflict",
                "Reconcile",
                format!(
                    "Certificate {} already manages Secret {}; leaving it alone (remove it or the tls entry)",
                    other.name_any(),
                    want.spec["secretName"].as_str().unwrap_or_default()
                ),
            )
            .await;
            continue;
        }
        let body = json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate",
            "metadata": {
                "name": want.name,
                "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE, INGRESS_LABEL: ingress.name_any() },
                "ownerReferences": [owner],
            },
            "spec": want.spec,
        });
        let existed = mine.iter().any(|c| c.name_any() == want.name);
        certs
            .patch(
                &want.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
        if !existed {
            ctx.event(
                &*ingress,
                false,
                "CreateCertificate",
                "Reconcile",
                format!("created Certificate {}", want.name),
            )
            .await;
        }
    }
    for cert in mine
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.name == c.name_any()))
    {
        match certs
            .delete(&cert.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        ctx.event(
            &*ingress,
            false,
            "DeleteCertificate",
            "Reconcile",
            format!("deleted Certificate {}", cert.name_any()),
        )
        .await;
    }
    Ok(Action::requeue(Duration::from_secs(3600)))
}

pub fn error_policy(_ingress: Arc<Ingress>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error("ingress");
    tracing::warn!(%error, "ingress reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Labels of Certificates made for Ingresses, for the watch that maps them back.
pub fn ingress_of(cert: &Certificate) -> Option<(String, String)> {
    let name = cert.labels().get(INGRESS_LABEL)?.clone();
    Some((cert.namespace()?, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ingress(ann: &[(&str, &str)], tls: serde_json::Value) -> Ingress {
        let ann: BTreeMap<String, String> = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "ns", "annotations": ann },
            "spec": { "tls": tls }
        }))
        .unwrap()
    }

    #[test]
    fn not_annotated_means_nothing() {
        assert_eq!(
            desired(&ingress(
                &[],
                json!([{ "hosts": ["a"], "secretName": "s" }])
            ))
            .unwrap(),
            vec![]
        );
    }

    #[test]
    fn one_certificate_per_tls_entry_with_annotations() {
        let ing = ingress(
            &[
                (ISSUER, "ca"),
                (DURATION, "2160h"),
                (KEY_ALGORITHM, "ecdsa"),
                (KEY_SIZE, "384"),
            ],
            json!([
                { "hosts": ["a.example", "b.example"], "secretName": "ab-tls" },
                { "hosts": ["c.example"], "secretName": "c-tls" },
                { "hosts": ["d.example"], "secretName": "ab-tls" }
            ]),
        );
        let d = desired(&ing).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "ab-tls");
        assert_eq!(
            d[0].spec["dnsNames"],
            json!(["a.example", "b.example", "d.example"])
        );
        assert_eq!(
            d[0].spec["issuerRef"],
            json!({ "name": "ca", "kind": "CaaSIssuer" })
        );
        assert_eq!(d[0].spec["duration"], json!("2160h"));
        assert_eq!(
            d[0].spec["privateKey"],
            json!({ "algorithm": "ECDSA", "size": 384 })
        );
        assert_eq!(d[1].spec["dnsNames"], json!(["c.example"]));
    }

    #[test]
    fn bad_annotations_are_explained() {
        let tls = json!([{ "hosts": ["a"], "secretName": "s" }]);
        assert!(
            desired(&ingress(
                &[(ISSUER, "a"), (CLUSTER_ISSUER, "b")],
                tls.clone()
            ))
            .unwrap_err()
            .contains("not both")
        );
        assert!(
            desired(&ingress(&[(ISSUER, "a"), (KEY_SIZE, "big")], tls.clone()))
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            desired(&ingress(
                &[(ISSUER, "a"), (KEY_ALGORITHM, "DSA")],
                tls.clone()
            ))
            .unwrap_err()
            .contains("DSA")
        );
        assert!(
            desired(&ingress(&[(ISSUER, "a")], json!([{ "hosts": ["a"] }])))
                .unwrap_err()
                .contains("secretName")
        );
        let cluster = desired(&ingress(&[(CLUSTER_ISSUER, "global")], tls)).unwrap();
        assert_eq!(
            cluster[0].spec["issuerRef"]["kind"],
            json!("ClusterCaaSIssuer")
        );
    }
}
