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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

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

/// The watch caches the fake keeps current.
struct Mirrors {
    secrets: Writer<Secret>,
    issuers: Writer<CaaSIssuer>,
    cluster_issuers: Writer<ClusterCaaSIssuer>,
    certificates: Writer<Certificate>,
}

fn synced<K>() -> Writer<K>
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
    fn update(&mut self, key: &Key, obj: Option<&Value>) {
        match (key.prefix.as_str(), key.resource.as_str()) {
            ("api/v1", "secrets") => {
                // The operator watches only the Secrets it manages, slimmed.
                let managed = obj.filter(|o| {
                    o["metadata"]["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE)
                });
                let slimmed = managed.map(|o| {
                    let mut s: Secret = serde_json::from_value(o.clone()).expect("a Secret");
                    super::super::secret::slim(&mut s);
                    serde_json::to_value(s).expect("a Secret serializes")
                });
                mirror_one(&mut self.secrets, key, slimmed.as_ref());
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
    pub secrets: Store<Secret>,
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

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Server-side apply with one field manager: the top-level fields the patch carries
/// replace the stored ones; metadata labels, annotations and the rest are merged.
fn apply_fields(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        return;
    };
    for (k, v) in p {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let mut meta = v.clone();
                if let Some(m) = meta.as_object_mut() {
                    for fixed in ["name", "namespace", "uid", "resourceVersion", "generation"] {
                        m.remove(fixed);
                    }
                }
                merge(&mut target["metadata"], &meta);
            }
            _ => target[k] = v.clone(),
        }
    }
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

    fn next_version(&self) -> String {
        (self.state.version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    /// Fills what the API server sets on create.
    fn created(&self, key: &Key, obj: &mut Value, has_status: bool, keep_status: bool) {
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
    fn store(&self, key: &Key, obj: Option<Value>) {
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

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or_default().to_string();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, answer) = match Target::parse(&path) {
            Some(target) => self.answer(&parts.method, &target, &query, &content_type, &body),
            None => status_doc(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the fake API serves no {path}"),
            ),
        };
        self.state.calls.lock().expect("calls lock").push(Call {
            method: parts.method.clone(),
            path,
            query,
            content_type,
            status: status.as_u16(),
        });
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(answer.to_string())))
            .expect("a response")
    }

    fn answer(
        &self,
        method: &Method,
        target: &Target,
        query: &str,
        content_type: &Option<String>,
        body: &[u8],
    ) -> Answer {
        let parsed = || -> Result<Value, Answer> {
            serde_json::from_slice(body).map_err(|e| {
                status_doc(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the body is not JSON: {e}"),
                )
            })
        };
        macro_rules! body {
            () => {
                match parsed() {
                    Ok(v) => v,
                    Err(a) => return a,
                }
            };
        }
        match (method, &target.name) {
            (&Method::GET, None) if query_param(query, "watch").as_deref() == Some("true") => {
                status_doc(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "the fake API does not watch".into(),
                )
            }
            (&Method::GET, None) => self.list_answer(target, query),
            (&Method::GET, Some(name)) => {
                let key = target.key(name);
                match self.state.objects.lock().expect("objects lock").get(&key) {
                    Some(o) => (StatusCode::OK, o.clone()),
                    None => not_found(&key),
                }
            }
            (&Method::POST, None) => self.create(target, body!()),
            (&Method::PATCH, Some(name)) => {
                let ct = content_type.as_deref().unwrap_or_default();
                self.patch(target, name, ct, body!())
            }
            (&Method::PUT, Some(name)) => self.replace(target, name, body!()),
            (&Method::DELETE, Some(name)) => self.delete(target, name),
            _ => status_doc(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("the fake API does not {method} this path"),
            ),
        }
    }

    fn list_answer(&self, target: &Target, query: &str) -> Answer {
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let objects = self.state.objects.lock().expect("objects lock");
        let items: Vec<Value> = objects
            .iter()
            .filter(|(k, _)| {
                k.prefix == target.prefix
                    && k.resource == target.resource
                    && (target.namespace.is_empty() || k.namespace == target.namespace)
            })
            .map(|(_, v)| v)
            .filter(|v| selector_matches(&selector, &v["metadata"]["labels"]))
            .cloned()
            .collect();
        let version = self.state.version.load(Ordering::SeqCst).to_string();
        (
            StatusCode::OK,
            json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": version},
                "items": items,
            }),
        )
    }

    fn create(&self, target: &Target, mut obj: Value) -> Answer {
        let name = match obj["metadata"]["name"].as_str() {
            Some(n) => n.to_string(),
            None => match obj["metadata"]["generateName"].as_str() {
                Some(prefix) => {
                    format!("{prefix}{:05}", self.state.uids.load(Ordering::SeqCst) + 1)
                }
                None => {
                    return status_doc(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name is required".into(),
                    );
                }
            },
        };
        let key = target.key(&name);
        if self
            .state
            .objects
            .lock()
            .expect("objects lock")
            .contains_key(&key)
        {
            return status_doc(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} {name:?} already exists", key.resource),
            );
        }
        self.created(&key, &mut obj, target.has_status_subresource(), false);
        self.store(&key, Some(obj.clone()));
        (StatusCode::CREATED, obj)
    }

    /// Writes `new` over the stored `old` (the spec's generation, the version).
    fn update(&self, key: &Key, target: &Target, old: &Value, mut new: Value) -> Answer {
        let meta = &mut new["metadata"];
        for fixed in ["name", "namespace", "uid", "creationTimestamp"] {
            meta[fixed] = old["metadata"][fixed].clone();
        }
        if target.has_status_subresource() {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = old.get("spec") != new.get("spec");
            new["metadata"]["generation"] = (generation + i64::from(changed)).into();
        }
        new["metadata"]["resourceVersion"] = self.next_version().into();
        let finalizers_gone = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if new["metadata"].get("deletionTimestamp").is_some() && finalizers_gone {
            self.store(key, None);
        } else {
            self.store(key, Some(new.clone()));
        }
        (StatusCode::OK, new)
    }

    fn patch(&self, target: &Target, name: &str, content_type: &str, patch: Value) -> Answer {
        let key = target.key(name);
        let stored = self
            .state
            .objects
            .lock()
            .expect("objects lock")
            .get(&key)
            .cloned();
        let status_only = target.subresource.as_deref() == Some("status");
        if let Some(sub) = target.subresource.as_deref().filter(|s| *s != "status") {
            return status_doc(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the fake API has no subresource {sub}"),
            );
        }
        let apply = content_type.starts_with("application/apply-patch");
        let Some(old) = stored else {
            if apply && !status_only {
                // Apply creates.
                let mut obj = patch;
                obj["metadata"]["name"] = name.into();
                self.created(&key, &mut obj, target.has_status_subresource(), false);
                self.store(&key, Some(obj.clone()));
                return (StatusCode::CREATED, obj);
            }
            return not_found(&key);
        };
        let mut new = old.clone();
        let mut patch = patch;
        if status_only {
            let status = patch.get("status").cloned().unwrap_or(Value::Null);
            patch = json!({ "status": status });
        } else if target.has_status_subresource()
            && let Some(p) = patch.as_object_mut()
        {
            p.remove("status");
        }
        if apply {
            apply_fields(&mut new, &patch);
        } else if content_type.starts_with("application/json-patch") {
            let ops: json_patch::Patch = match serde_json::from_value(patch) {
                Ok(p) => p,
                Err(e) => {
                    return status_doc(StatusCode::BAD_REQUEST, "BadRequest", e.to_string());
                }
            };
            if let Err(e) = json_patch::patch(&mut new, &ops.0) {
                return status_doc(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string());
            }
        } else {
            merge(&mut new, &patch);
        }
        if status_only {
            // Only status changes through /status.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        self.update(&key, target, &old, new)
    }

    fn replace(&self, target: &Target, name: &str, new: Value) -> Answer {
        let key = target.key(name);
        let Some(old) = self
            .state
            .objects
            .lock()
            .expect("objects lock")
            .get(&key)
            .cloned()
        else {
            return not_found(&key);
        };
        let asked = new["metadata"]["resourceVersion"].as_str();
        if asked.is_some_and(|v| Some(v) != old["metadata"]["resourceVersion"].as_str()) {
            return status_doc(
                StatusCode::CONFLICT,
                "Conflict",
                format!("the object {name:?} has been modified"),
            );
        }
        let mut new = new;
        if target.has_status_subresource() {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        }
        self.update(&key, target, &old, new)
    }

    fn delete(&self, target: &Target, name: &str) -> Answer {
        let key = target.key(name);
        let Some(mut obj) = self
            .state
            .objects
            .lock()
            .expect("objects lock")
            .get(&key)
            .cloned()
        else {
            return not_found(&key);
        };
        let has_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = now_rfc3339().into();
                obj["metadata"]["resourceVersion"] = self.next_version().into();
                self.store(&key, Some(obj.clone()));
            }
        } else {
            self.store(&key, None);
        }
        (StatusCode::OK, obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

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

        // Label selectors.
        let lp = kube::api::ListParams::default()
            .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
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

        // Apply replaces the data it carries; merge merges; the version moves.
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
                &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})),
            )
            .await
            .unwrap();
        assert_eq!(merged.metadata.annotations.unwrap()["x"], "y");

        // The watch cache holds the managed Secret only, as last written.
        let cached = stores
            .secrets
            .get(&ObjectRef::new("one").within("ns1"))
            .unwrap();
        assert_eq!(cached.metadata.annotations.as_ref().unwrap()["x"], "y");
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
}
