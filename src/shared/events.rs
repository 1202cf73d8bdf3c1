//! Kubernetes Events (events.k8s.io/v1), published as kube's `Recorder` publishes them:
//! a repeat (same type, reason, action, object and object version) within 6 minutes
//! bumps the first Event's `series` instead of creating another object, so `kubectl
//! describe` shows "x3 over 2m".
//!
//! Written here rather than used from kube-runtime because its `Recorder` keeps a full
//! copy of every Event it published for those 6 minutes and scans all of them on every
//! publish: with thousands of Certificates that was about 2.4 KB per Certificate and
//! CPU growing with the square of the events per 6 minutes. Here a repeat is found by
//! a hash and remembered with the Event's name, its count and when it was last seen
//! (about 100 bytes), and the map is swept once a minute, not on every publish.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PostParams};
use kube::runtime::events::{Event, EventType};

/// How long a repeat joins the earlier Event's series (kube's and client-go's value).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// How often the remembered Events are swept.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_mins(1);

/// Publishes Events for one controller (`reportingController`) and instance.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<Recent>>,
}

/// The Events published in the last [`SERIES_WINDOW`], by a hash of what makes a repeat.
#[derive(Default)]
struct Recent {
    hasher: RandomState,
    by_key: HashMap<u64, Published>,
    swept: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// What to send for one publish.
#[derive(Debug, PartialEq)]
enum Publish {
    /// A new Event object of this name.
    Create { name: String },
    /// The series of Event `name` now counts `count`.
    Patch { name: String, count: i32 },
}

impl Recent {
    /// What makes a repeat: kube's key less the reporter (one per `Recorder`) and the
    /// related object (`secondary`), which every caller here leaves empty.
    fn key(&self, ev: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = self.hasher.build_hasher();
        matches!(ev.type_, EventType::Warning).hash(&mut h);
        (&ev.reason, &ev.action).hash(&mut h);
        let r = regarding;
        (&r.api_version, &r.kind, &r.namespace, &r.name).hash(&mut h);
        (&r.uid, &r.resource_version, &r.field_path).hash(&mut h);
        h.finish()
    }

    /// Decides between a new Event and a repeat of a recent one, and remembers it.
    fn next(&mut self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> Publish {
        if self.swept.is_none_or(|t| t + SWEEP_EVERY <= now) {
            self.by_key.retain(|_, p| p.last + SERIES_WINDOW > now);
            self.swept = Some(now);
        }
        let key = self.key(ev, regarding);
        match self.by_key.get_mut(&key) {
            Some(p) if p.last + SERIES_WINDOW > now => {
                p.count += 1;
                p.last = now;
                Publish::Patch {
                    name: p.name.clone(),
                    count: p.count,
                }
            }
            _ => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("caas-operator"),
                    now.as_nanosecond()
                );
                self.by_key.insert(
                    key,
                    Published {
                        name: name.clone(),
                        count: 1,
                        last: now,
                    },
                );
                Publish::Create { name }
            }
        }
    }

    /// Forgets Event `name` of this publish (it could not be created, or is gone); a
    /// newer Event for the same key, made by a publish in between, is kept.
    fn forget(&mut self, ev: &Event, regarding: &ObjectReference, name: &str) {
        let key = self.key(ev, regarding);
        if self.by_key.get(&key).is_some_and(|p| p.name == name) {
            self.by_key.remove(&key);
        }
    }
}

/// The one field an Event's repeat changes.
#[derive(Debug, serde::Serialize)]
struct SeriesPatch {
    series: EventSeries,
}

impl Recorder {
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            recent: Arc::default(),
        }
    }

    /// Publishes an event about `obj`; failures are logged, never fatal.
    pub async fn event<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.note(&obj.object_ref(&()), warning, reason, action, note)
            .await;
    }

    /// Publishes an event about `regarding`; failures are logged, never fatal.
    pub async fn note(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.publish(&event, regarding).await {
            tracing::debug!(error = %e, "cannot publish event");
        }
    }

    /// Publishes `ev` about `regarding` (in its namespace; `default` for cluster-scoped
    /// objects, as kube does).
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), ns);
        // A series whose Event is gone (the API server's event TTL, or a repeat that
        // raced the first one's create) starts again with a new Event, once.
        for _ in 0..2 {
            let now = Timestamp::now();
            let send = self
                .recent
                .lock()
                .expect("events lock")
                .next(ev, regarding, now);
            match send {
                Publish::Patch { name, count } => {
                    let series = EventSeries {
                        count,
                        last_observed_time: MicroTime(now),
                    };
                    let patch = SeriesPatch { series };
                    match api
                        .patch(
                            &name,
                            &super::patch::operator_params(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        Err(kube::Error::Api(e)) if e.code == 404 => {
                            self.forget(ev, regarding, &name);
                        }
                        other => return other.map(|_| ()),
                    }
                }
                Publish::Create { name } => {
                    let event = self.build_event(ev, regarding, name.clone(), now);
                    let params = PostParams {
                        field_manager: Some(super::FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    let created = api.create(&params, &event).await;
                    if created.is_err() {
                        self.forget(ev, regarding, &name);
                    }
                    return created.map(|_| ());
                }
            }
        }
        Ok(())
    }

    fn forget(&self, ev: &Event, regarding: &ObjectReference, name: &str) {
        self.recent
            .lock()
            .expect("events lock")
            .forget(ev, regarding, name);
    }

    fn build_event(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
        name: String,
        now: Timestamp,
    ) -> K8sEvent {
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(name),
                ..Default::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some("n".into()),
            action: "Issue".into(),
            secondary: None,
        }
    }

    fn obj(name: &str, rv: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("caas.dev/v1alpha1".into()),
            kind: Some("Certificate".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    /// A fresh memory after a first `Failed` Event about object `a` (created): the
    /// memory, the time and the Event's name.
    fn first_failed() -> (Recent, Timestamp, String) {
        let mut r = Recent::default();
        let t0: Timestamp = "2026-11-29T10:00:00Z".parse().unwrap();
        let Publish::Create { name } = r.next(&ev("Failed"), &obj("a", "1"), t0) else {
            panic!("first is created")
        };
        (r, t0, name)
    }

    #[test]
    fn a_repeat_within_six_minutes_joins_the_series() {
        let (mut r, t0, name) = first_failed();
        assert!(name.starts_with("a."), "{name}");
        // Two repeats, 2 and 7 minutes later: the window runs from the last repeat.
        let t1 = t0 + SignedDuration::from_mins(2);
        let t2 = t1 + SignedDuration::from_mins(5);
        for (count, at) in [(2, t1), (3, t2)] {
            let name = name.clone();
            let want = Publish::Patch { name, count };
            assert_eq!(r.next(&ev("Failed"), &obj("a", "1"), at), want);
        }
        // Another reason, object or object version is another Event.
        assert!(matches!(
            r.next(&ev("Other"), &obj("a", "1"), t2),
            Publish::Create { .. }
        ));
        assert!(matches!(
            r.next(&ev("Failed"), &obj("b", "1"), t2),
            Publish::Create { .. }
        ));
        assert!(matches!(
            r.next(&ev("Failed"), &obj("a", "2"), t2),
            Publish::Create { .. }
        ));
        assert_eq!(r.by_key.len(), 4);
        // After the window: a new Event, and the sweep forgets the old ones.
        let t3 = t2 + SignedDuration::from_mins(7);
        assert!(matches!(
            r.next(&ev("Failed"), &obj("a", "1"), t3),
            Publish::Create { .. }
        ));
        assert_eq!(r.by_key.len(), 1);
    }

    #[test]
    fn a_failed_create_is_forgotten() {
        let (mut r, t0, name) = first_failed();
        // Another publish's Event under the same key is not this one's to forget.
        r.forget(&ev("Failed"), &obj("a", "1"), "other.1");
        assert_eq!(r.by_key.len(), 1);
        r.forget(&ev("Failed"), &obj("a", "1"), &name);
        assert!(r.by_key.is_empty());
        assert!(matches!(
            r.next(&ev("Failed"), &obj("a", "1"), t0),
            Publish::Create { .. }
        ));
    }
}
