//! Test CRDs for Gateway API's `Gateway` and `HTTPRoute` (gateway.networking.k8s.io/v1),
//! written here for the 1.20 test API server: a structural schema that keeps `spec` and
//! `status` as they are written (1.20 cannot run the CEL rules of the upstream CRDs,
//! and the operator reads only a subset).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

fn crd(kind: &str, plural: &str, short: &str) -> CustomResourceDefinition {
    let open = json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true });
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.gateway.networking.k8s.io"),
            // *.k8s.io groups need this (KEP 1111); upstream's CRDs carry the same.
            "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"
            }
        },
        "spec": {
            "group": "gateway.networking.k8s.io",
            "names": {
                "kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                "singular": kind.to_ascii_lowercase(), "shortNames": [short]
            },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": open, "status": open }
                }}
            }]
        }
    }))
    .expect("Gateway API CRD")
}

/// The Gateway and HTTPRoute CRDs.
pub fn gateway_api_crds() -> Vec<CustomResourceDefinition> {
    vec![
        crd("Gateway", "gateways", "gtw"),
        crd("HTTPRoute", "httproutes", "hr"),
    ]
}

/// Installs the Gateway API test CRDs (when missing) and waits until they are served.
pub async fn install_gateway_api_crds(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in gateway_api_crds() {
        let name = crd.metadata.name.clone().expect("name");
        if api.get_opt(&name).await.expect("get CRD").is_none() {
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => panic!("create CRD {name}: {e}"),
            }
        }
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established in 30 s"))
        .expect("watch CRD");
    }
}
