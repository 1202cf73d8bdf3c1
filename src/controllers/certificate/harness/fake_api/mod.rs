//! A fake Kubernetes API server for unit tests: an in-memory object store behind a
//! `tower::Service`, handed to [`kube::Client::new`]. It answers what the Certificate
//! reconcile asks for, no more:
//!
//! * GET of one object, LIST of a collection (label selectors `k=v`, `k==v`, `k!=v`,
//!   `k`, `!k`);
//! * POST (create; 409 when the name is taken; `generateName`);
//! * PATCH: server-side apply (`application/apply-patch+yaml`; each top-level field the
//!   patch carries replaces the stored one, metadata maps are merged: one field manager,
//!   which is all the operator is), JSON merge patches (strategic merge is treated as a
//!   JSON merge) and JSON patches; on `/status` only `status` is written, and on the
//!   custom resources (which have a status subresource) `status` is ignored elsewhere;
//! * PUT (replace, with the resourceVersion conflict check);
//! * DELETE (with finalizers: sets `deletionTimestamp`, and the object goes when its last
//!   finalizer is removed).
//!
//! Every write bumps one resourceVersion counter; `generation` follows `spec` changes of
//! the custom resources. Errors are Kubernetes `Status` documents. Watches are refused
//! (405). Every request is recorded ([`Call`]) for tests to assert on.
//!
//! Not modelled: watches, field selectors, dry runs, managedFields and apply conflicts
//! between field managers, resourceVersion preconditions on PATCH, schema validation
//! and admission, owner-reference garbage collection, namespaces as objects.
//!
//! The reflector stores the reconcile reads (issuers, cluster issuers, managed Secrets,
//! Certificates) are fed by every write, as the operator's watches would feed them: they
//! are synced from the start, never stale.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use http::{Method, Request, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use serde_json::{Value, json};

use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer};

mod patch;
mod requests;
mod store;
#[cfg(test)]
mod tests;

use store::{Mirrors, synced};

/// One request the fake API answered.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    /// The status code answered.
    pub status: u16,
}

impl Call {
    /// Whether this call changed something (POST, PUT, PATCH or DELETE).
    pub fn is_write(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }
}

/// Where an object lives: the API prefix (`api/v1`, `apis/caas.dev/v1alpha1`), the
/// resource (plural), the namespace (empty: cluster-scoped) and the name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub prefix: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// A parsed request path.
#[derive(Debug)]
struct Target {
    prefix: String,
    resource: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Target> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match parts.as_slice() {
            ["api", v, rest @ ..] => (format!("api/{v}"), rest),
            ["apis", g, v, rest @ ..] => (format!("apis/{g}/{v}"), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
            _ => (String::new(), rest),
        };
        let (resource, name, subresource) = match rest {
            [r] => (r, None, None),
            [r, n] => (r, Some(n.to_string()), None),
            [r, n, s] => (r, Some(n.to_string()), Some(s.to_string())),
            _ => return None,
        };
        Some(Target {
            prefix,
            resource: resource.to_string(),
            namespace,
            name,
            subresource,
        })
    }

    fn key(&self, name: &str) -> Key {
        Key {
            prefix: self.prefix.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone(),
            name: name.to_string(),
        }
    }

    /// The custom resources of the operator have a status subresource.
    fn has_status_subresource(&self) -> bool {
        self.prefix.starts_with("apis/caas.dev/")
    }
}

struct State {
    objects: Mutex<BTreeMap<Key, Value>>,
    version: AtomicU64,
    uids: AtomicU64,
    calls: Mutex<Vec<Call>>,
    mirrors: Mutex<Mirrors>,
}

/// The fake API server; cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<State>,
}

/// The watch caches (reader side) the fake keeps current.
pub struct FakeStores {
    pub secrets: Store<crate::shared::cached_secret::CachedSecret>,
    pub issuers: Store<CaaSIssuer>,
    pub cluster_issuers: Store<ClusterCaaSIssuer>,
    pub certificates: Store<Certificate>,
}

type Answer = (StatusCode, Value);

fn status_doc(code: StatusCode, reason: &str, message: String) -> Answer {
    (
        code,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

fn not_found(key: &Key) -> Answer {
    status_doc(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {:?} not found", key.resource, key.name),
    )
}

/// Whether `labels` satisfies a label selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma
/// separated).
pub fn selector_matches(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
            if let Some((k, v)) = term.split_once("!=") {
                get(k) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k).is_none()
            } else {
                get(term).is_some()
            }
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

impl FakeApi {
    /// A fake API server, with its synced watch caches.
    pub fn new() -> (FakeApi, FakeStores) {
        let mirrors = Mirrors {
            secrets: synced(),
            issuers: synced(),
            cluster_issuers: synced(),
            certificates: synced(),
        };
        let stores = FakeStores {
            secrets: mirrors.secrets.as_reader(),
            issuers: mirrors.issuers.as_reader(),
            cluster_issuers: mirrors.cluster_issuers.as_reader(),
            certificates: mirrors.certificates.as_reader(),
        };
        let api = FakeApi {
            state: Arc::new(State {
                objects: Mutex::default(),
                version: AtomicU64::new(1000),
                uids: AtomicU64::new(0),
                calls: Mutex::default(),
                mirrors: Mutex::new(mirrors),
            }),
        };
        (api, stores)
    }

    /// A client talking to this fake.
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Every request answered so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().expect("calls lock").clone()
    }

    /// The writes (POST, PUT, PATCH, DELETE) answered so far.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_write).collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_calls(&self) {
        self.state.calls.lock().expect("calls lock").clear();
    }

    /// A stored object as the API server has it.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let key = Self::key_of::<K>(namespace, name);
        let objects = self.state.objects.lock().expect("objects lock");
        objects
            .get(&key)
            .map(|v| serde_json::from_value(v.clone()).expect("stored object deserializes"))
    }

    /// The stored objects of kind `K` in `namespace`.
    pub fn list<K>(&self, namespace: &str) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let probe = Self::key_of::<K>(namespace, "");
        let objects = self.state.objects.lock().expect("objects lock");
        objects
            .iter()
            .filter(|(k, _)| {
                (&k.prefix, &k.resource, &k.namespace)
                    == (&probe.prefix, &probe.resource, &probe.namespace)
            })
            .map(|(_, v)| serde_json::from_value(v.clone()).expect("stored object deserializes"))
            .collect()
    }

    /// Stores `obj` as the API server would on create (uid, resourceVersion, ...),
    /// without recording a request: a test's setup.
    pub fn seed<K>(&self, obj: &K) -> K
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize + serde::de::DeserializeOwned,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().expect("a seeded object has a name");
        let key = Self::key_of::<K>(&ns, &name);
        let mut value = serde_json::to_value(obj).expect("serializes");
        value["apiVersion"] = K::api_version(&()).into();
        value["kind"] = K::kind(&()).into();
        let has_status = key.prefix.starts_with("apis/caas.dev/");
        self.created(&key, &mut value, has_status, true);
        self.store(&key, Some(value));
        self.get(&ns, &name).expect("just stored")
    }

    /// Overwrites a stored object's status (a test's setup: as another writer would).
    pub fn seed_status<K>(&self, namespace: &str, name: &str, status: Value)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let key = Self::key_of::<K>(namespace, name);
        let mut obj = self.state.objects.lock().expect("objects lock")[&key].clone();
        obj["status"] = status;
        obj["metadata"]["resourceVersion"] = self.next_version().into();
        self.store(&key, Some(obj));
    }

    fn key_of<K: kube::Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Key {
        let group = K::group(&());
        let prefix = if group.is_empty() {
            format!("api/{}", K::version(&()))
        } else {
            format!("apis/{group}/{}", K::version(&()))
        };
        Key {
            prefix,
            resource: K::plural(&()).into_owned(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}
