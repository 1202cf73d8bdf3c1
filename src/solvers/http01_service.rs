//! The HTTP-01 solver's Service and Endpoints: one pair per namespace, shared by every
//! challenge in flight there, instead of a pair per challenge.
//!
//! Each challenge's route (Ingress or HTTPRoute) points at the namespace's
//! `caas-http01-solver` Service, whose Endpoints lead to the operator. The pair is
//! applied when the first challenge of a namespace is presented in this leadership term
//! and deleted when the last one is cleaned up, so a namespace between issuances holds
//! nothing of ours, and a burst of N challenges in one namespace costs 4 API requests
//! for the pair instead of 4 N.
//!
//! "The last one" is known from two sources: the challenges this process presented
//! ([`NsState::users`]) and the HTTP-01 challenges every watched Certificate's status
//! lists ([`ChallengeIndex`]), which also covers challenges a previous leader presented.
//! The index lags the status writes by a watch event; challenges cleaned up in this term
//! ([`NsState::released`]) are not waited for. A challenge presented here that the index
//! no longer lists after [`USER_GRACE`] (its Certificate or namespace was deleted with
//! no cleanup) stops counting. Challenges are named by Certificate and token
//! ([`challenge_key`]): a CA that hands two Certificates the same pending authorization
//! gives them the same token. What is left (a crash between present and cleanup, a
//! lagging index) goes with the sweep every ten minutes, which also notices a pair
//! deleted behind our back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::http01::COMPONENT;
use super::index::ChallengeIndex;
use crate::api::{COMPONENT_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::shared::FIELD_MANAGER;
use crate::shared::settings::SolverEndpoint;

/// The shared Service's (and Endpoints') name in each namespace.
pub const SERVICE_NAME: &str = "caas-http01-solver";
/// The shared Service's port, which every route points at.
pub const SERVICE_PORT: i32 = 8089;
/// Released challenges kept before those the index no longer lists are forgotten.
const RELEASED_KEPT: usize = 1024;
/// How long a challenge presented here counts without the index listing it (status is
/// written before the challenge is presented; the index follows within a watch event).
const USER_GRACE: Duration = Duration::from_secs(120);

/// A challenge within its namespace: its Certificate's name and its token.
pub fn challenge_key(cert_name: &str, token: &str) -> String {
    format!("{cert_name}/{token}")
}

/// What one namespace's pair is needed for, in this leadership term.
#[derive(Debug, Default)]
struct NsState {
    /// The pair was applied in this term (a new leader applies it again, with its own
    /// pod IP in the Endpoints).
    applied: bool,
    /// Challenges presented in this term and not cleaned up yet, and since when.
    users: HashMap<String, Instant>,
    /// Challenges cleaned up in this term, which the index may still list for a moment.
    released: HashSet<String>,
}

impl NsState {
    /// Forgets challenges presented here that the index stopped listing long ago.
    fn prune(&mut self, in_flight: &HashSet<String>, now: Instant) {
        self.users.retain(|key, since| {
            in_flight.contains(key) || now.duration_since(*since) < USER_GRACE
        });
        if self.released.len() > RELEASED_KEPT {
            self.released.retain(|key| in_flight.contains(key));
        }
    }
}

/// Whether the namespace's pair may go: no challenge of this term needs it, and every
/// HTTP-01 challenge the Certificates' status still lists (`in_flight`) was cleaned up.
fn may_delete(
    users: &HashMap<String, Instant>,
    released: &HashSet<String>,
    in_flight: &HashSet<String>,
) -> bool {
    users.is_empty() && in_flight.is_subset(released)
}

/// The shared Service and Endpoints of every namespace, for one leadership term.
#[derive(Default)]
pub struct SolverServices {
    namespaces: Mutex<HashMap<String, Arc<tokio::sync::Mutex<NsState>>>>,
}

impl SolverServices {
    /// One namespace's state; its lock orders apply and delete of the pair.
    fn namespace(&self, ns: &str) -> Arc<tokio::sync::Mutex<NsState>> {
        let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(ns.to_string()).or_default().clone()
    }

    /// Makes sure the namespace's pair exists for the challenge `key`
    /// ([`challenge_key`]). Applied when not applied yet in this term, and again
    /// whenever no other challenge of this term uses it (it may have been deleted since,
    /// with its namespace or by hand): what a quiet namespace pays anyway.
    pub async fn acquire(
        &self,
        (client, ns): (&kube::Client, &str),
        key: String,
        endpoint: SolverEndpoint,
        (index, now): (&ChallengeIndex, Instant),
    ) -> Result<(), kube::Error> {
        let cell = self.namespace(ns);
        let mut state = cell.lock().await;
        state.prune(&index.http01_in(ns), now);
        state.released.remove(&key);
        let alone = state.users.keys().all(|k| *k == key);
        state.users.insert(key, now);
        if state.applied && !alone {
            return Ok(());
        }
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        Api::<Service>::namespaced(client.clone(), ns)
            .patch(SERVICE_NAME, &pp, &Patch::Apply(&service(endpoint)))
            .await?;
        match endpoint.ip {
            Some(ip) => {
                Api::<Endpoints>::namespaced(client.clone(), ns)
                    .patch(
                        SERVICE_NAME,
                        &pp,
                        &Patch::Apply(&endpoints(ip, endpoint.port)),
                    )
                    .await?;
            }
            None => tracing::warn!(
                "no --pod-ip: the Service for HTTP-01 has no Endpoints; \
                 only a CA that reaches the solver listener directly can validate"
            ),
        }
        state.applied = true;
        Ok(())
    }

    /// The challenges `keys` are cleaned up; deletes the namespace's pair when nothing
    /// else needs it. Returns whether it was deleted.
    pub async fn release(
        &self,
        (client, ns): (&kube::Client, &str),
        keys: Vec<String>,
        (index, now): (&ChallengeIndex, Instant),
    ) -> Result<bool, kube::Error> {
        let cell = self.namespace(ns);
        let mut state = cell.lock().await;
        for key in keys {
            state.users.remove(&key);
            state.released.insert(key);
        }
        delete_if_unused((client, ns), &mut state, (index, now)).await
    }

    /// The sweep's look at the namespaces holding a pair (`listed`): deletes those
    /// nothing needs, and marks those gone behind our back as not applied.
    pub async fn sweep(
        &self,
        client: &kube::Client,
        listed: &[String],
        (index, now): (&ChallengeIndex, Instant),
    ) -> Vec<(String, Result<bool, kube::Error>)> {
        let known: Vec<(String, Arc<tokio::sync::Mutex<NsState>>)> = {
            let map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(ns, cell)| (ns.clone(), cell.clone()))
                .collect()
        };
        for (ns, cell) in known {
            if !listed.contains(&ns) {
                cell.lock().await.applied = false;
            }
        }
        let mut results = Vec::new();
        for ns in listed {
            let cell = self.namespace(ns);
            let mut state = cell.lock().await;
            let result = delete_if_unused((client, ns), &mut state, (index, now)).await;
            results.push((ns.clone(), result));
        }
        results
    }
}

async fn delete_if_unused(
    (client, ns): (&kube::Client, &str),
    state: &mut NsState,
    (index, now): (&ChallengeIndex, Instant),
) -> Result<bool, kube::Error> {
    let in_flight = index.http01_in(ns);
    state.prune(&in_flight, now);
    if !may_delete(&state.users, &state.released, &in_flight) {
        return Ok(false);
    }
    // Marked first: a failed delete is retried by the next release or the sweep, and
    // the next acquire applies the pair again either way.
    state.applied = false;
    let dp = DeleteParams::background();
    for result in [
        Api::<Service>::namespaced(client.clone(), ns)
            .delete(SERVICE_NAME, &dp)
            .await
            .map(drop),
        Api::<Endpoints>::namespaced(client.clone(), ns)
            .delete(SERVICE_NAME, &dp)
            .await
            .map(drop),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Labels of the shared pair: ours, without a Certificate (it serves several).
pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (COMPONENT_LABEL.to_string(), COMPONENT.to_string()),
    ])
}

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some(SERVICE_NAME.to_string()),
        labels: Some(labels()),
        ..Default::default()
    }
}

/// A selector-less Service: its Endpoints are ours.
fn service(endpoint: SolverEndpoint) -> Service {
    Service {
        metadata: meta(),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(i32::from(endpoint.port))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn endpoints(ip: IpAddr, port: u16) -> Endpoints {
    Endpoints {
        metadata: meta(),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: ip.to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&str]) -> HashSet<String> {
        keys.iter().map(|t| t.to_string()).collect()
    }

    fn users(keys: &[&str], since: Instant) -> HashMap<String, Instant> {
        keys.iter().map(|t| (t.to_string(), since)).collect()
    }

    #[test]
    fn the_pair_goes_only_when_no_challenge_needs_it() {
        let now = Instant::now();
        // Nothing presented, nothing listed: go.
        assert!(may_delete(&users(&[], now), &set(&[]), &set(&[])));
        // A challenge of this term still in flight: keep.
        assert!(!may_delete(
            &users(&["c/b"], now),
            &set(&["c/a"]),
            &set(&["c/a", "c/b"])
        ));
        // A challenge a previous leader presented, still listed in status: keep.
        assert!(!may_delete(
            &users(&[], now),
            &set(&["c/a"]),
            &set(&["c/a", "d/old"])
        ));
        // Listed only because the index has not seen the cleanup yet: go.
        assert!(may_delete(
            &users(&[], now),
            &set(&["c/a", "c/b"]),
            &set(&["c/a", "c/b"])
        ));
        // Released challenges the index already forgot do not matter.
        assert!(may_delete(
            &users(&[], now),
            &set(&["c/a", "c/gone"]),
            &set(&["c/a"])
        ));
        // The same token for another Certificate is another challenge: keep.
        assert!(!may_delete(
            &users(&[], now),
            &set(&["a/t"]),
            &set(&["a/t", "b/t"])
        ));
    }

    #[test]
    fn a_challenge_the_index_stopped_listing_stops_counting_after_the_grace() {
        let start = Instant::now();
        let mut state = NsState {
            users: users(&["c/t"], start),
            ..Default::default()
        };
        // Not listed yet (the watch lags): still counts.
        state.prune(&set(&[]), start + Duration::from_secs(5));
        assert_eq!(state.users.len(), 1);
        // Listed: counts however long it takes.
        state.prune(&set(&["c/t"]), start + USER_GRACE * 10);
        assert_eq!(state.users.len(), 1);
        // Its Certificate was deleted with no cleanup: gone after the grace.
        state.prune(&set(&[]), start + USER_GRACE + Duration::from_secs(1));
        assert!(state.users.is_empty());
    }
}
