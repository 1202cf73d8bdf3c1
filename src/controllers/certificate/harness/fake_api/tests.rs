//! The fake API's own tests: CRUD, selectors, versions and the watch caches.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::*;
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

fn secret(name: &str, managed: bool) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    if managed {
        s.metadata.labels = Some(BTreeMap::from([(
            MANAGED_BY_LABEL.to_string(),
            MANAGED_BY_VALUE.to_string(),
        )]));
    }
    s.data = Some(BTreeMap::from([(
        "a".to_string(),
        k8s_openapi::ByteString(b"1".to_vec()),
    )]));
    s
}

#[tokio::test]
async fn crud_selectors_versions_and_the_watch_cache() {
    let (api, stores) = FakeApi::new();
    let secrets: Api<Secret> = Api::namespaced(api.client(), "ns1");
    let v1 = create(&secrets).await;
    list_by_labels(&secrets).await;
    patch(&secrets, v1).await;
    cache_and_delete(&secrets, &stores).await;
    let writes: Vec<(Method, u16)> = api
        .writes()
        .into_iter()
        .map(|c| (c.method, c.status))
        .collect();
    assert_eq!(
        writes,
        [
            (Method::POST, 201),
            (Method::POST, 409),
            (Method::POST, 201),
            (Method::PATCH, 200),
            (Method::PATCH, 200),
            (Method::DELETE, 200),
            (Method::DELETE, 404),
        ]
    );
}

/// Creates Secrets `one` (managed) and `two`, and `one` again (409): `one`'s version.
async fn create(secrets: &Api<Secret>) -> u64 {
    let made = secrets
        .create(&PostParams::default(), &secret("one", true))
        .await
        .unwrap();
    let v1: u64 = made.metadata.resource_version.unwrap().parse().unwrap();
    assert!(made.metadata.uid.is_some());
    let err = secrets
        .create(&PostParams::default(), &secret("one", true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    secrets
        .create(&PostParams::default(), &secret("two", false))
        .await
        .unwrap();
    assert!(secrets.get_opt("three").await.unwrap().is_none());
    v1
}

async fn list_by_labels(secrets: &Api<Secret>) {
    let lp =
        kube::api::ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let names: Vec<String> = secrets
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["one"]);
    let lp = kube::api::ListParams::default().labels(&format!("!{MANAGED_BY_LABEL}"));
    assert_eq!(secrets.list_metadata(&lp).await.unwrap().items.len(), 1);
}

/// Apply replaces the data it carries; merge merges; the version moves.
async fn patch(secrets: &Api<Secret>, v1: u64) {
    let mut applied = secret("one", true);
    applied.data = Some(BTreeMap::from([(
        "b".to_string(),
        k8s_openapi::ByteString(b"2".to_vec()),
    )]));
    let after = secrets
        .patch(
            "one",
            &PatchParams::apply("t").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let keys: Vec<&String> = after.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["b"]);
    let v2: u64 = after.metadata.resource_version.unwrap().parse().unwrap();
    assert!(v2 > v1);
    let merged = secrets
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"caas.dev/serial": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.annotations.unwrap()["caas.dev/serial"], "y");
}

/// The watch cache holds the managed Secret only, as last written, until it is deleted.
async fn cache_and_delete(secrets: &Api<Secret>, stores: &FakeStores) {
    let cached = stores
        .secrets
        .get(&ObjectRef::new("one").within("ns1"))
        .unwrap();
    assert_eq!(cached.annotation("caas.dev/serial"), Some("y"));
    assert!(
        stores
            .secrets
            .get(&ObjectRef::new("two").within("ns1"))
            .is_none()
    );

    secrets
        .delete("one", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        stores
            .secrets
            .get(&ObjectRef::new("one").within("ns1"))
            .is_none()
    );
    let err = secrets
        .delete("one", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"));
}

#[test]
fn selectors() {
    let labels = json!({"a": "1", "b": "2"});
    assert!(selector_matches("a=1,b==2", &labels));
    assert!(selector_matches("a,!c,b!=3", &labels));
    assert!(!selector_matches("a=2", &labels));
    assert!(!selector_matches("!a", &labels));
    assert!(selector_matches("", &Value::Null));
    assert_eq!(percent_decode("a%3Db%2Cc"), "a=b,c");
}
