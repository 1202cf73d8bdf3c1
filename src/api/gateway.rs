//! The subset of Gateway API (`gateway.networking.k8s.io/v1`) the operator reads and
//! writes: a Gateway's TLS listeners, and the temporary HTTPRoute of an HTTP-01
//! challenge.
//!
//! Written here rather than taken from the `gateway-api` crate: its releases need kube 4
//! / k8s-openapi 0.28, and this operator builds with kube 5 / k8s-openapi 0.29. Fields
//! not listed are ignored when read and never written (server-side apply claims only
//! what we set). The CRDs come with Gateway API itself (`standard-install.yaml`); the
//! operator never installs them, and without them it leaves Gateways alone.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "gateway.networking.k8s.io";
pub const VERSION: &str = "v1";

/// A Gateway: only its listeners matter here.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "Gateway",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`.
    #[serde(default)]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTlsConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    /// `Terminate` (the default) or `Passthrough` (no certificate on the Gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
}

/// A reference to a Secret (group `""` and kind `Secret` by default).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// An HTTPRoute: the operator writes one per HTTP-01 challenge.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HTTPRouteRule>,
}

/// The Gateway (or listener of it, `sectionName`) a route attaches to; also what users
/// write in `http01.gatewayHTTPRoute.parentRefs`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Default `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Default: the route's own namespace (the Certificate's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// A listener's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HTTPRouteMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HTTPBackendRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathMatch>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPPathMatch {
    /// `Exact`, `PathPrefix` (the default) or `RegularExpression`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A Service (by default) and its port.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPBackendRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Gateway as users write it (fields we do not know are ignored) reads into the
    /// subset; an HTTPRoute we write serializes to only the fields set.
    #[test]
    fn read_and_written_shapes() {
        let gw: Gateway = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": { "name": "gw", "namespace": "ns" },
            "spec": {
                "gatewayClassName": "eg",
                "listeners": [{
                    "name": "https", "hostname": "a.example", "port": 443, "protocol": "HTTPS",
                    "allowedRoutes": { "namespaces": { "from": "All" } },
                    "tls": { "mode": "Terminate", "certificateRefs": [{ "kind": "Secret", "name": "a-tls" }] }
                }]
            },
            "status": { "conditions": [] }
        }))
        .unwrap();
        let l = &gw.spec.listeners[0];
        assert_eq!(l.hostname.as_deref(), Some("a.example"));
        assert_eq!(l.tls.as_ref().unwrap().certificate_refs[0].name, "a-tls");

        let route = HTTPRoute::new(
            "r",
            HTTPRouteSpec {
                parent_refs: vec![ParentReference {
                    name: "gw".into(),
                    ..Default::default()
                }],
                hostnames: vec!["a.example".into()],
                rules: vec![HTTPRouteRule {
                    matches: vec![HTTPRouteMatch {
                        path: Some(HTTPPathMatch {
                            type_: Some("Exact".into()),
                            value: Some("/x".into()),
                        }),
                    }],
                    backend_refs: vec![HTTPBackendRef {
                        name: "svc".into(),
                        port: Some(8089),
                        ..Default::default()
                    }],
                }],
            },
        );
        assert_eq!(
            serde_json::to_value(&route).unwrap(),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": { "name": "r" },
                "spec": {
                    "parentRefs": [{ "name": "gw" }],
                    "hostnames": ["a.example"],
                    "rules": [{
                        "matches": [{ "path": { "type": "Exact", "value": "/x" } }],
                        "backendRefs": [{ "name": "svc", "port": 8089 }]
                    }]
                }
            })
        );
    }
}
