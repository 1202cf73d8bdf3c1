//! Gateway annotations: `caas.dev/issuer` or `caas.dev/cluster-issuer` on a Gateway
//! (gateway.networking.k8s.io/v1) make the operator keep one Certificate per Secret its
//! TLS listeners name in `certificateRefs` (the listeners' hostnames -> dnsNames), owned
//! by the Gateway, with the same optional annotations and conflict rules as Ingresses
//! (the pipeline is [`super::ingress::reconcile_owner`]).
//!
//! Skipped, as cert-manager skips them: listeners that are not `HTTPS` or `TLS`, TLS
//! `Passthrough` (the backend holds the certificate), and references to anything but a
//! Secret in the Gateway's own namespace. A terminating listener without a hostname is
//! reported (there is no name to put in the certificate) and skipped; the other listeners
//! are served, and a Certificate it had is kept.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::ingress::{self, DesiredCertificate, Owner, Skipped};
use super::{Context, Error};
use crate::api::Certificate;
use crate::api::gateway::Gateway;

/// Label on Certificates made for a Gateway, naming it.
pub const GATEWAY_LABEL: &str = "caas.dev/gateway";

impl Owner for Gateway {
    const KIND: &'static str = "Gateway";
    const LABEL: &'static str = GATEWAY_LABEL;
    fn desired_certificates(
        &self,
        ann: &std::collections::BTreeMap<String, String>,
    ) -> Result<(Vec<DesiredCertificate>, Vec<Skipped>), String> {
        desired_with(self, ann)
    }
}

/// The Certificates a Gateway's annotations and TLS listeners ask for (empty when it is
/// not annotated) and the listeners that cannot be served, or a message saying what is
/// wrong with the annotations.
pub fn desired(gateway: &Gateway) -> Result<(Vec<DesiredCertificate>, Vec<Skipped>), String> {
    desired_with(gateway, gateway.annotations())
}

/// [`desired`] with the annotations `ann` (see [`ingress::annotations`]).
pub fn desired_with(
    gateway: &Gateway,
    ann: &std::collections::BTreeMap<String, String>,
) -> Result<(Vec<DesiredCertificate>, Vec<Skipped>), String> {
    let Some(template) = ingress::template(ann)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let own_ns = gateway.namespace();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for l in &gateway.spec.listeners {
        if !matches!(l.protocol.as_str(), "HTTPS" | "TLS") {
            continue;
        }
        let Some(tls) = &l.tls else { continue };
        if tls.mode.as_deref() == Some("Passthrough") {
            continue;
        }
        let secrets: Vec<&str> = tls
            .certificate_refs
            .iter()
            .filter(|r| r.group.as_deref().unwrap_or("").is_empty())
            .filter(|r| r.kind.as_deref().unwrap_or("Secret") == "Secret")
            .filter(|r| r.namespace.is_none() || r.namespace == own_ns)
            .map(|r| r.name.as_str())
            .collect();
        if secrets.is_empty() {
            continue;
        }
        let Some(host) = l
            .hostname
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        else {
            skipped.extend(secrets.iter().map(|secret| Skipped {
                secret_name: secret.to_string(),
                message: format!(
                    "listener {:?} has no hostname: set one, the certificate for Secret {secret} needs a name (the other listeners are served)",
                    l.name
                ),
            }));
            continue;
        };
        for secret in secrets {
            ingress::add(&mut out, &template, secret, vec![host.to_string()]);
        }
    }
    Ok((out, skipped))
}

pub async fn reconcile(gateway: Arc<Gateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    ingress::reconcile_owner(gateway, ctx).await
}

/// Certificates made for Gateways, for the watch that maps them back.
pub fn gateway_of(cert: &Certificate) -> Option<(String, String)> {
    ingress::owner_of::<Gateway>(cert)
}

/// Whether the API server serves Gateways (Gateway API's CRDs are optional).
pub async fn served(client: &kube::Client) -> bool {
    let gv = format!(
        "{}/{}",
        crate::api::gateway::GROUP,
        crate::api::gateway::VERSION
    );
    match client.list_api_group_resources(&gv).await {
        Ok(list) => list.resources.iter().any(|r| r.name == "gateways"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::ingress::{CLUSTER_ISSUER, DURATION, ISSUER};
    use serde_json::json;

    fn gateway(ann: serde_json::Value, listeners: serde_json::Value) -> Gateway {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "name": "gw", "namespace": "ns", "annotations": ann },
            "spec": { "gatewayClassName": "eg", "listeners": listeners }
        }))
        .unwrap()
    }

    fn https(name: &str, host: Option<&str>, secret: serde_json::Value) -> serde_json::Value {
        json!({ "name": name, "hostname": host, "port": 443, "protocol": "HTTPS",
                "tls": { "mode": "Terminate", "certificateRefs": [secret] } })
    }

    #[test]
    fn one_certificate_per_listener_secret() {
        let gw = gateway(
            json!({ ISSUER: "ca", DURATION: "2160h" }),
            json!([
                { "name": "http", "port": 80, "protocol": "HTTP", "hostname": "a.example" },
                https("a", Some("a.example"), json!({ "name": "a-tls" })),
                https("b", Some("b.example"), json!({ "kind": "Secret", "name": "b-tls" })),
                https("b2", Some("www.b.example"), json!({ "name": "b-tls" })),
                https("other-ns", Some("c.example"), json!({ "name": "c-tls", "namespace": "elsewhere" })),
                { "name": "pass", "port": 8443, "protocol": "TLS", "hostname": "d.example",
                  "tls": { "mode": "Passthrough" } }
            ]),
        );
        let (d, skipped) = desired(&gw).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].name, "a-tls");
        assert_eq!(d[0].spec.dns_names, vec!["a.example"]);
        assert_eq!(d[0].spec.duration.as_deref(), Some("2160h"));
        assert_eq!(d[0].spec.issuer_ref.kind.as_deref(), Some("CaaSIssuer"));
        assert_eq!(d[1].spec.secret_name, "b-tls");
        assert_eq!(d[1].spec.dns_names, vec!["b.example", "www.b.example"]);
    }

    #[test]
    fn not_annotated_or_wrong() {
        let listeners = json!([https("a", Some("a.example"), json!({ "name": "a-tls" }))]);
        assert!(
            desired(&gateway(json!({}), listeners.clone()))
                .unwrap()
                .0
                .is_empty()
        );
        let both = gateway(json!({ ISSUER: "a", CLUSTER_ISSUER: "b" }), listeners);
        assert!(desired(&both).unwrap_err().contains("not both"));
        // A listener without a hostname is reported; the others are still served.
        let no_host = gateway(
            json!({ CLUSTER_ISSUER: "ca" }),
            json!([
                https("web", None, json!({ "name": "a-tls" })),
                https("api", Some("api.example"), json!({ "name": "api-tls" }))
            ]),
        );
        let (d, skipped) = desired(&no_host).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].spec.secret_name, "api-tls");
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].secret_name, "a-tls");
        assert!(
            skipped[0].message.contains("\"web\" has no hostname"),
            "{}",
            skipped[0].message
        );
    }
}
