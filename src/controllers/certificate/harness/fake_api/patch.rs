//! PATCH: JSON merge patches, server-side apply (one field manager) and JSON patches.

use super::*;

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

impl FakeApi {
    pub(super) fn patch(
        &self,
        target: &Target,
        name: &str,
        content_type: &str,
        patch: Value,
    ) -> Answer {
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
}
