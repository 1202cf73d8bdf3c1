//! Requests: routing by method and path, and GET, LIST, POST, PUT and DELETE.

use std::sync::atomic::Ordering;

use http::Response;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use super::*;

impl FakeApi {
    pub(super) async fn handle(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
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

    pub(super) fn answer(
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

    pub(super) fn list_answer(&self, target: &Target, query: &str) -> Answer {
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

    pub(super) fn create(&self, target: &Target, mut obj: Value) -> Answer {
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
    pub(super) fn update(&self, key: &Key, target: &Target, old: &Value, mut new: Value) -> Answer {
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

    /// A copy of the object stored at `key`.
    fn stored(&self, key: &Key) -> Option<Value> {
        let objects = self.state.objects.lock().expect("objects lock");
        objects.get(key).cloned()
    }

    pub(super) fn replace(&self, target: &Target, name: &str, new: Value) -> Answer {
        let key = target.key(name);
        let Some(old) = self.stored(&key) else {
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

    pub(super) fn delete(&self, target: &Target, name: &str) -> Answer {
        let key = target.key(name);
        let Some(mut obj) = self.stored(&key) else {
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
