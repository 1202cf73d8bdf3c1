//! The challenges this replica can answer: token (HTTP-01) or name (TLS-ALPN-01) -> key
//! authorization. One index, shared by both listeners and the controller.
//!
//! The Certificate watch feeds it on every replica (so followers answer too); the
//! controller also puts a challenge in as soon as it has written it to status, so the
//! leader answers without waiting for its own watch event. Each Certificate's entries
//! are replaced as a whole, never by an older resourceVersion than the one they came
//! from.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::ResourceExt;

use crate::api::{Certificate, ChallengeType};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    type_: ChallengeType,
    /// Lowercased identifier.
    name: String,
    token: String,
    key_authorization: String,
}

#[derive(Debug, Default)]
struct Inner {
    /// By Certificate (`namespace/name`): the resourceVersion the entries came from.
    by_certificate: HashMap<String, (u64, Vec<Entry>)>,
    /// Seen since the last `begin_resync` (a watch re-list).
    resync: Option<HashSet<String>>,
}

/// The challenges in progress, by token and by name.
#[derive(Debug, Default)]
pub struct ChallengeIndex {
    inner: RwLock<Inner>,
}

fn key_of(cert: &Certificate) -> String {
    format!(
        "{}/{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    )
}

fn entries(cert: &Certificate) -> Vec<Entry> {
    let Some(order) = cert.status.as_ref().and_then(|s| s.order.as_ref()) else {
        return Vec::new();
    };
    order
        .challenges
        .iter()
        .filter(|c| !c.key.is_empty())
        .map(|c| Entry {
            type_: c.type_,
            name: c.dns_name.to_ascii_lowercase(),
            token: c.token.clone(),
            key_authorization: c.key.clone(),
        })
        .collect()
}

fn version(cert: &Certificate) -> u64 {
    cert.resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl ChallengeIndex {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A Certificate as the API server has it (a watch event or a status write): its
    /// challenges replace those indexed for it, unless the index has a newer version.
    pub fn update(&self, cert: &Certificate) {
        let key = key_of(cert);
        let (version, entries) = (version(cert), entries(cert));
        let mut inner = self.write();
        if let Some(seen) = inner.resync.as_mut() {
            seen.insert(key.clone());
        }
        if inner
            .by_certificate
            .get(&key)
            .is_some_and(|(v, _)| *v > version)
        {
            return;
        }
        if entries.is_empty() {
            inner.by_certificate.remove(&key);
        } else {
            inner.by_certificate.insert(key, (version, entries));
        }
    }

    /// A deleted Certificate.
    pub fn remove(&self, cert: &Certificate) {
        self.write().by_certificate.remove(&key_of(cert));
    }

    /// The watch starts listing everything again.
    pub fn begin_resync(&self) {
        self.write().resync = Some(HashSet::new());
    }

    /// The list is complete: Certificates it did not contain are gone.
    pub fn end_resync(&self) {
        let mut inner = self.write();
        if let Some(seen) = inner.resync.take() {
            inner.by_certificate.retain(|k, _| seen.contains(k));
        }
    }

    /// The key authorization of the HTTP-01 challenge with `token`.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.find(|e| e.type_ == ChallengeType::Http01 && e.token == token)
    }

    /// The HTTP-01 challenges listed by the Certificates of namespace `ns`, as
    /// [`super::http01_service::challenge_key`]s.
    pub fn http01_in(&self, ns: &str) -> HashSet<String> {
        let prefix = format!("{ns}/");
        self.read()
            .by_certificate
            .iter()
            .filter_map(|(key, (_, entries))| Some((key.strip_prefix(&prefix)?, entries)))
            .flat_map(|(cert, entries)| {
                entries
                    .iter()
                    .filter(|e| e.type_ == ChallengeType::Http01)
                    .map(move |e| super::http01_service::challenge_key(cert, &e.token))
            })
            .collect()
    }

    /// The key authorization of the TLS-ALPN-01 challenge for `name`.
    pub fn tls_alpn01(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.find(|e| e.type_ == ChallengeType::TlsAlpn01 && e.name == name)
    }

    fn find(&self, matches: impl Fn(&Entry) -> bool) -> Option<String> {
        self.read()
            .by_certificate
            .values()
            .flat_map(|(_, entries)| entries)
            .find(|e| matches(e))
            .map(|e| e.key_authorization.clone())
    }

    /// How many Certificates have challenges indexed.
    pub fn len(&self) -> usize {
        self.read().by_certificate.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certificate::{ChallengeStatus, OrderStatus};
    use crate::api::{CertificateStatus, ChallengeState};

    fn cert(name: &str, version: u64, challenges: &[(ChallengeType, &str, &str)]) -> Certificate {
        let mut c = Certificate::new(name, Default::default());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(version.to_string());
        c.status = Some(CertificateStatus {
            order: Some(OrderStatus {
                challenges: challenges
                    .iter()
                    .map(|(t, n, token)| ChallengeStatus {
                        type_: *t,
                        dns_name: n.to_string(),
                        token: token.to_string(),
                        key: format!("{token}.thumb"),
                        state: ChallengeState::Pending,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn answers_by_token_and_name_and_ignores_older_versions() {
        let index = ChallengeIndex::default();
        index.update(&cert(
            "a",
            5,
            &[
                (ChallengeType::Http01, "a.example", "t1"),
                (ChallengeType::TlsAlpn01, "B.example", "t2"),
            ],
        ));
        assert_eq!(index.http01("t1").as_deref(), Some("t1.thumb"));
        assert_eq!(
            index.http01("t2"),
            None,
            "a TLS-ALPN-01 token is not HTTP-01"
        );
        assert_eq!(index.tls_alpn01("b.EXAMPLE").as_deref(), Some("t2.thumb"));
        let in_ns = |ns: &str| {
            let mut v: Vec<String> = index.http01_in(ns).into_iter().collect();
            v.sort();
            v
        };
        assert_eq!(
            in_ns("ns"),
            ["a/t1"],
            "HTTP-01 only, by Certificate and token"
        );
        assert!(in_ns("n").is_empty(), "the namespace whole, not a prefix");
        // A late watch event of an older version does not take the challenge away.
        index.update(&cert("a", 4, &[]));
        assert_eq!(index.http01("t1").as_deref(), Some("t1.thumb"));
        // The order is over: nothing to answer.
        index.update(&cert("a", 6, &[]));
        assert_eq!(index.http01("t1"), None);
        assert!(index.is_empty());
    }

    #[test]
    fn deletion_and_resync_prune() {
        let index = ChallengeIndex::default();
        index.update(&cert("a", 1, &[(ChallengeType::Http01, "a", "ta")]));
        index.update(&cert("b", 1, &[(ChallengeType::Http01, "b", "tb")]));
        index.remove(&cert("a", 2, &[]));
        assert_eq!(index.http01("ta"), None);
        assert_eq!(index.len(), 1);
        index.update(&cert("c", 1, &[(ChallengeType::Http01, "c", "tc")]));
        // A re-list that no longer contains b.
        index.begin_resync();
        index.update(&cert("c", 1, &[(ChallengeType::Http01, "c", "tc")]));
        index.end_resync();
        assert_eq!(index.http01("tb"), None);
        assert_eq!(index.http01("tc").as_deref(), Some("tc.thumb"));
    }
}
