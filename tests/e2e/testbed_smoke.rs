//! Smoke tests of the test bed itself: if these fail, every other integration test would
//! fail for reasons that have nothing to do with the operator.
//!
//! 1. The API server accepts a CRD; creating, patching and watching custom resources works
//!    (the 1.20 server built without the reflect2 fix passes `get ns` and dies here).
//! 2. Pebble requires EAB: an account registers with it and a certificate is issued over
//!    DNS-01 (TXT record set in BIND by a TSIG-signed update); without EAB it is refused.
//! 3. BIND applies an RFC 2136 update signed with the TSIG key and refuses an unsigned one.

use std::sync::Arc;
use std::time::Duration;

use caas_testbed::{Bind, Pebble, PebbleOptions, shared_apiserver, shared_bind, unique_name};
use futures::{StreamExt, TryStreamExt};
use hickory_client::client::{Client as DnsClient, ClientHandle};
use hickory_client::proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_client::proto::dnssec::tsig::TSigner;
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::rdata::TXT;
use hickory_client::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};

#[tokio::test]
async fn apiserver_accepts_crd_and_custom_resources() {
    let api = shared_apiserver();
    let client = api.client().await;
    let ns = api.namespace(&client, "smoke-crd").await;

    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.smoke.caas.dev" },
        "spec": {
            "group": "smoke.caas.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": {
                        "size": { "type": "integer" } } } }
                } }
            }]
        }
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "widgets.smoke.caas.dev",
        &PatchParams::apply("testbed-smoke").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    kube::runtime::wait::await_condition(
        crds.clone(),
        "widgets.smoke.caas.dev",
        kube::runtime::wait::conditions::is_crd_established(),
    )
    .await
    .expect("CRD established");

    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("smoke.caas.dev", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    for (name, size) in [("one", 1), ("two", 2)] {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "smoke.caas.dev/v1", "kind": "Widget",
            "metadata": { "name": name }, "spec": { "size": size }
        }))
        .unwrap();
        widgets
            .create(&PostParams::default(), &obj)
            .await
            .expect("create widget");
    }

    // Watch, then patch: the watch must see the new value.
    let mut events = watcher(widgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let patched = tokio::spawn({
        let widgets = widgets.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            widgets
                .patch(
                    "two",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "spec": { "size": 20 } })),
                )
                .await
                .expect("patch widget")
        }
    });
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(obj) = events.try_next().await.expect("watch") {
            if obj.data["spec"]["size"] == 20 {
                return obj;
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("watch saw the patch within 20 s");
    assert_eq!(seen.metadata.name.as_deref(), Some("two"));
    assert_eq!(patched.await.unwrap().data["spec"]["size"], 20);
    let list = widgets.list(&Default::default()).await.expect("list");
    assert_eq!(list.items.len(), 2);
}

/// A DNS client for the test BIND, TSIG-signed when `signed`.
async fn dns_client(bind: &Bind, signed: bool) -> DnsClient {
    let mut builder = UdpClientStream::builder(bind.addr(), TokioRuntimeProvider::default());
    if signed {
        let signer = TSigner::new(
            bind.tsig_secret_bytes(),
            TsigAlgorithm::HmacSha256,
            Name::from_ascii(&bind.tsig_key_name).unwrap(),
            300,
        )
        .expect("TSIG signer");
        builder = builder.with_signer(Some(Arc::new(signer)));
    }
    let (client, background) = DnsClient::connect(builder.build())
        .await
        .expect("connect to BIND");
    tokio::spawn(background);
    client
}

fn txt_record(name: &str, value: &str) -> Record {
    let mut record = Record::from_rdata(
        Name::from_ascii(name).unwrap(),
        5,
        RData::TXT(TXT::new(vec![value.to_string()])),
    );
    record.set_dns_class(DNSClass::IN);
    record
}

async fn txt_values(bind: &Bind, name: &str) -> Vec<String> {
    let mut client = dns_client(bind, false).await;
    let response = client
        .query(
            Name::from_ascii(name).unwrap(),
            DNSClass::IN,
            RecordType::TXT,
        )
        .await
        .expect("TXT query");
    response
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn bind_accepts_tsig_signed_updates_and_refuses_unsigned() {
    let bind = shared_bind();
    let zone = Name::from_ascii(format!("{}.", bind.zone)).unwrap();
    let name = format!("_acme-challenge.{}.{}.", unique_name("tsig"), bind.zone);

    let mut signed = dns_client(bind, true).await;
    let response = signed
        .append(txt_record(&name, "signed-value"), zone.clone(), false)
        .await
        .expect("signed update");
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert_eq!(txt_values(bind, &name).await, vec!["signed-value"]);
    assert_eq!(bind.dig(&name, "TXT"), vec!["signed-value"], "dig agrees");

    let mut unsigned = dns_client(bind, false).await;
    let response = unsigned
        .append(txt_record(&name, "unsigned-value"), zone.clone(), false)
        .await
        .expect("unsigned update gets an answer");
    assert_eq!(response.response_code(), ResponseCode::Refused);
    assert_eq!(txt_values(bind, &name).await, vec!["signed-value"]);

    let response = signed
        .delete_by_rdata(txt_record(&name, "signed-value"), zone)
        .await
        .expect("signed delete");
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert!(txt_values(bind, &name).await.is_empty());
}

fn eab_key(pebble: &Pebble) -> ExternalAccountKey {
    use base64::Engine;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&pebble.eab_hmac)
        .unwrap();
    ExternalAccountKey::new(pebble.eab_kid.clone(), &hmac)
}

#[tokio::test]
async fn pebble_requires_eab_and_issues_over_dns01() {
    let bind = shared_bind();
    let pebble = Pebble::start(PebbleOptions::default());
    let new_account = NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };

    // Without EAB: refused.
    let refused = Account::builder_with_root(pebble.dir.join("ca.pem"))
        .unwrap()
        .create(&new_account, pebble.directory_url.clone(), None)
        .await;
    match refused {
        Err(instant_acme::Error::Api(problem)) => assert!(
            problem
                .r#type
                .as_deref()
                .unwrap_or("")
                .contains("externalAccountRequired"),
            "unexpected problem: {problem:?}"
        ),
        Err(other) => panic!("expected an externalAccountRequired problem, got {other}"),
        Ok(_) => panic!("Pebble registered an account without EAB"),
    }

    // With EAB: registered.
    let (account, _credentials) = Account::builder_with_root(pebble.dir.join("ca.pem"))
        .unwrap()
        .create(
            &new_account,
            pebble.directory_url.clone(),
            Some(&eab_key(&pebble)),
        )
        .await
        .expect("account with EAB");
    assert!(account.id().starts_with("https://127.0.0.1:"));

    // One certificate over DNS-01, the TXT record set in BIND with TSIG.
    let host = format!("{}.{}", unique_name("dns01"), bind.zone);
    let zone = Name::from_ascii(format!("{}.", bind.zone)).unwrap();
    let mut dns = dns_client(bind, true).await;
    let identifiers = [Identifier::Dns(host.clone())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .expect("new order");
    let mut records = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.expect("authorization");
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authz
                .challenge(ChallengeType::Dns01)
                .expect("dns-01 offered");
            let record_name = format!("_acme-challenge.{host}.");
            let record = txt_record(&record_name, &challenge.key_authorization().dns_value());
            let response = dns
                .append(record.clone(), zone.clone(), false)
                .await
                .expect("TXT update");
            assert_eq!(response.response_code(), ResponseCode::NoError);
            records.push(record);
            challenge.set_ready().await.expect("challenge ready");
        }
    }
    let retries = RetryPolicy::new().timeout(Duration::from_secs(60));
    assert_eq!(
        order.poll_ready(&retries).await.expect("order ready"),
        OrderStatus::Ready
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec![host.clone()])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    order.finalize_csr(csr.der()).await.expect("finalize");
    let chain = order.poll_certificate(&retries).await.expect("certificate");
    assert!(
        chain.matches("BEGIN CERTIFICATE").count() >= 2,
        "leaf and chain: {chain}"
    );
    for record in records {
        dns.delete_by_rdata(record, zone.clone())
            .await
            .expect("delete TXT");
    }
    let root = pebble.issuance_root().await;
    assert!(root.contains("BEGIN CERTIFICATE"));
}
