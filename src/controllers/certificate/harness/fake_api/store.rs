//! The object store's writes and the watch caches (reflector stores) it keeps current.

use std::sync::atomic::Ordering;

use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::*;
use crate::api::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// The watch caches the fake keeps current.
pub(super) struct Mirrors {
    pub(super) secrets: Writer<crate::shared::cached_secret::CachedSecret>,
    pub(super) issuers: Writer<CaaSIssuer>,
    pub(super) cluster_issuers: Writer<ClusterCaaSIssuer>,
    pub(super) certificates: Writer<Certificate>,
}

pub(super) fn synced<K>() -> Writer<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let mut w = Writer::<K>::default();
    w.apply_watcher_event(&watcher::Event::Init);
    w.apply_watcher_event(&watcher::Event::InitDone);
    w
}

/// Applies one change to a watch cache: `Some` stored, `None` deleted.
fn mirror_one<K>(writer: &mut Writer<K>, key: &Key, obj: Option<&Value>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let event = match obj.map(|o| serde_json::from_value::<K>(o.clone())) {
        Some(Ok(k)) => watcher::Event::Apply(k),
        Some(Err(e)) => panic!("fake API: stored {key:?} is not a valid object: {e}"),
        None => {
            // A Delete needs an object with the name and namespace only.
            let meta = json!({"metadata": {"name": key.name, "namespace": key.namespace}});
            let mut k: K = match serde_json::from_value(meta) {
                Ok(k) => k,
                Err(_) => {
                    // Types with required fields: rebuild from the cached copy.
                    let r = ObjectRef::<K>::new(&key.name);
                    let r = if key.namespace.is_empty() {
                        r
                    } else {
                        r.within(&key.namespace)
                    };
                    match writer.as_reader().get(&r) {
                        Some(k) => (*k).clone(),
                        None => return,
                    }
                }
            };
            if !key.namespace.is_empty() {
                k.meta_mut().namespace = Some(key.namespace.clone());
            }
            watcher::Event::Delete(k)
        }
    };
    writer.apply_watcher_event(&event);
}

impl Mirrors {
    pub(super) fn update(&mut self, key: &Key, obj: Option<&Value>) {
        match (key.prefix.as_str(), key.resource.as_str()) {
            ("api/v1", "secrets") => {
                // The operator watches only the Secrets it manages, slimmed.
                let managed = obj.filter(|o| {
                    o["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE)
                });
                // (decoded as the operator's watch decodes them: `CachedSecret`).
                mirror_one(&mut self.secrets, key, managed);
            }
            ("apis/caas.dev/v1alpha1", "caasissuers") => mirror_one(&mut self.issuers, key, obj),
            ("apis/caas.dev/v1alpha1", "clustercaasissuers") => {
                mirror_one(&mut self.cluster_issuers, key, obj)
            }
            ("apis/caas.dev/v1alpha1", "certificates") => {
                mirror_one(&mut self.certificates, key, obj)
            }
            _ => {}
        }
    }
}

impl FakeApi {
    pub(super) fn next_version(&self) -> String {
        (self.state.version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    /// Fills what the API server sets on create.
    pub(super) fn created(&self, key: &Key, obj: &mut Value, has_status: bool, keep_status: bool) {
        let uid = self.state.uids.fetch_add(1, Ordering::SeqCst) + 1;
        let meta = &mut obj["metadata"];
        meta["name"] = key.name.clone().into();
        if !key.namespace.is_empty() {
            meta["namespace"] = key.namespace.clone().into();
        }
        meta["uid"] = format!("00000000-0000-4000-8000-{uid:012}").into();
        meta["creationTimestamp"] = now_rfc3339().into();
        meta["resourceVersion"] = self.next_version().into();
        if has_status {
            meta["generation"] = 1.into();
            if !keep_status && let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
    }

    /// Stores (or, `None`, removes) an object and updates the watch caches.
    pub(super) fn store(&self, key: &Key, obj: Option<Value>) {
        {
            let mut objects = self.state.objects.lock().expect("objects lock");
            match &obj {
                Some(o) => objects.insert(key.clone(), o.clone()),
                None => objects.remove(key),
            };
        }
        self.state
            .mirrors
            .lock()
            .expect("mirrors lock")
            .update(key, obj.as_ref());
    }
}
