//! The controllers and what they share: the context, issuer lookup, the ACME account
//! cache, and small helpers for Secrets, status and events.

pub mod account_key;
pub mod certificate;
pub mod deploy;
pub mod gateway;
pub mod ingress;
pub mod issuer;
pub mod restart;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::acme::{AcmeError, AcmeHttp, AcmeStats};
use crate::api::{CaaSIssuer, Certificate, ClusterCaaSIssuer, IssuerSpec};
use crate::solvers::index::ChallengeIndex;

use crate::shared::IssuerHandle;
use crate::shared::cached_secret::CachedSecret;
use crate::shared::events::Recorder;
use crate::shared::memory::Memory;
use crate::shared::settings::Settings;

/// Errors that end a reconcile early; they are retried with backoff. Everything a user
/// can act on is reported in the object's status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// What the controllers read instead of asking the API server: the watched issuers and
/// the Secrets the operator manages (by label). Until a store has synced (or if its
/// watch cannot start), the API server is asked instead.
pub struct Stores {
    pub client: kube::Client,
    pub issuers: Store<CaaSIssuer>,
    pub cluster_issuers: Store<ClusterCaaSIssuer>,
    pub secrets: Store<CachedSecret>,
    /// Per store: whether a reconcile already waited for it to sync.
    waited: [std::sync::atomic::AtomicBool; 3],
}

/// How long a reconcile waits for a store to sync before asking the API server.
const STORE_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `store` has synced; waits for it (once per store and term: `waited`), then
/// only looks.
async fn synced<K>(store: &Store<K>, waited: &std::sync::atomic::AtomicBool, what: &str) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    use std::sync::atomic::Ordering;
    if waited.swap(true, Ordering::Relaxed) {
        return matches!(store.wait_until_ready().now_or_never(), Some(Ok(())));
    }
    let ready = tokio::time::timeout(STORE_SYNC_WAIT, store.wait_until_ready()).await;
    if !matches!(ready, Ok(Ok(()))) {
        tracing::debug!("the {what} store has not synced; asking the API server");
        return false;
    }
    true
}

impl Stores {
    pub fn new(
        client: kube::Client,
        issuers: Store<CaaSIssuer>,
        cluster_issuers: Store<ClusterCaaSIssuer>,
        secrets: Store<CachedSecret>,
    ) -> Self {
        Stores {
            client,
            issuers,
            cluster_issuers,
            secrets,
            waited: Default::default(),
        }
    }

    /// The issuer a Certificate names. One that is missing or not ready in the store is
    /// looked up on the API server: the store may lag behind the watch that woke us.
    pub async fn issuer_of(
        &self,
        cert: &Certificate,
        settings: &Settings,
    ) -> Result<Option<IssuerHandle>, kube::Error> {
        self.issuer_by_ref(cert, &cert.spec.issuer_ref, settings)
            .await
    }

    /// The issuer `issuer_ref` (of Certificate `cert`) names; see [`Stores::issuer_of`].
    pub async fn issuer_by_ref(
        &self,
        cert: &Certificate,
        issuer_ref: &crate::api::certificate::IssuerRef,
        settings: &Settings,
    ) -> Result<Option<IssuerHandle>, kube::Error> {
        let name = &issuer_ref.name;
        let stored = match issuer_ref.is_cluster() {
            true => synced(&self.cluster_issuers, &self.waited[0], "ClusterCaaSIssuer")
                .await
                .then(|| self.cluster_issuers.get(&ObjectRef::new(name)))
                .flatten()
                .map(|i| IssuerHandle::from_cluster(&i, &settings.cluster_resource_namespace)),
            false => {
                let ns = cert.namespace().unwrap_or_default();
                synced(&self.issuers, &self.waited[1], "CaaSIssuer")
                    .await
                    .then(|| self.issuers.get(&ObjectRef::new(name).within(&ns)))
                    .flatten()
                    .map(|i| IssuerHandle::from_namespaced(&i))
            }
        };
        if let Some(issuer) = stored.filter(IssuerHandle::is_ready) {
            return Ok(Some(issuer));
        }
        if issuer_ref.is_cluster() {
            let found = Api::<ClusterCaaSIssuer>::all(self.client.clone())
                .get_opt(name)
                .await?;
            Ok(found.map(|i| IssuerHandle::from_cluster(&i, &settings.cluster_resource_namespace)))
        } else {
            let ns = cert.namespace().unwrap_or_default();
            let api = Api::<CaaSIssuer>::namespaced(self.client.clone(), &ns);
            Ok(api
                .get_opt(name)
                .await?
                .as_ref()
                .map(IssuerHandle::from_namespaced))
        }
    }

    /// A managed Secret from the store (`Ok(None)`: there is none the operator manages).
    /// From the store it holds only what [`CachedSecret`] keeps (no `ca.crt`, no chain
    /// past the leaf, a few labels and annotations); before the store has synced, the
    /// whole Secret from the API server.
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
        if synced(&self.secrets, &self.waited[2], "Secret").await {
            return Ok(self
                .secrets
                .get(&ObjectRef::new(name).within(namespace))
                .map(|s| s.to_secret()));
        }
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
    }
}

/// Why an account could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("reading the account key Secret: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Acme(#[from] AcmeError),
}

/// What every reconcile gets.
pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub stats: Arc<AcmeStats>,
    pub accounts: Accounts,
    /// The watched Certificates.
    pub certificates: Store<Certificate>,
    /// The challenges this replica answers (shared with the listeners).
    pub index: Arc<ChallengeIndex>,
    /// The namespaces' shared HTTP-01 Services, for this leadership term.
    pub http01_services: Arc<crate::solvers::http01_service::SolverServices>,
    /// Issuers and managed Secrets.
    pub stores: Stores,
    /// Per-object memory of this leadership term.
    pub memory: Arc<Memory>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub notifier: crate::notify::Notifier,
}

impl Context {
    pub fn new(
        client: kube::Client,
        settings: Settings,
        certificates: Store<Certificate>,
        index: Arc<ChallengeIndex>,
        stores: Stores,
        memory: Arc<Memory>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Context {
            recorder: Recorder::new(
                client.clone(),
                "caas-operator",
                std::env::var("POD_NAME").ok(),
            ),
            client,
            settings,
            stats: Arc::new(AcmeStats::new(
                metrics.acme_requests.clone(),
                memory.clone(),
            )),
            accounts: Accounts::default(),
            certificates,
            index,
            http01_services: Default::default(),
            stores,
            memory,
            metrics,
            notifier: Default::default(),
        }
    }

    /// What the challenge solvers get of the context.
    pub fn solver_deps(&self) -> crate::solvers::Deps<'_> {
        crate::solvers::Deps {
            client: &self.client,
            settings: &self.settings.solvers,
            events: &self.recorder,
            memory: &self.memory,
            http01: &self.http01_services,
            index: &self.index,
        }
    }
}

/// ACME accounts by issuer, loaded once from the account key Secret.
#[derive(Default)]
pub struct Accounts {
    cache: Mutex<HashMap<String, (String, crate::acme::AcmeAccount)>>,
}

fn ca_fingerprint(spec: &IssuerSpec, key_version: &str) -> String {
    format!(
        "{}|{}|{}",
        spec.server,
        spec.ca_bundle.as_deref().unwrap_or(""),
        key_version
    )
}

impl Accounts {
    pub fn insert(
        &self,
        issuer: &IssuerHandle,
        key_version: &str,
        account: crate::acme::AcmeAccount,
    ) {
        self.cache.lock().expect("accounts lock").insert(
            issuer.cache_key(),
            (ca_fingerprint(&issuer.spec, key_version), account),
        );
    }

    pub fn cached(
        &self,
        issuer: &IssuerHandle,
        key_version: &str,
    ) -> Option<crate::acme::AcmeAccount> {
        let cache = self.cache.lock().expect("accounts lock");
        cache
            .get(&issuer.cache_key())
            .filter(|(fp, _)| *fp == ca_fingerprint(&issuer.spec, key_version))
            .map(|(_, a)| a.clone())
    }

    /// Forgets the account of the issuer whose cache key is `key` (deleted).
    pub fn forget_key(&self, key: &str) {
        self.cache.lock().expect("accounts lock").remove(key);
    }

    /// Forgets the issuer's account (its key may have changed at the CA).
    pub fn forget(&self, issuer: &IssuerHandle) {
        self.forget_key(&issuer.cache_key());
    }

    /// The account last loaded for the issuer's CA, whatever the key Secret's version.
    fn cached_any(&self, issuer: &IssuerHandle) -> Option<crate::acme::AcmeAccount> {
        let cache = self.cache.lock().expect("accounts lock");
        let prefix = ca_fingerprint(&issuer.spec, "");
        cache
            .get(&issuer.cache_key())
            .filter(|(fp, _)| fp.starts_with(&prefix))
            .map(|(_, a)| a.clone())
    }

    /// The issuer's account: from the cache, or loaded with the key in its Secret (from
    /// the store of managed Secrets; a key Secret the user made is read directly).
    pub async fn get(
        &self,
        ctx: &Context,
        issuer: &IssuerHandle,
    ) -> Result<crate::acme::AcmeAccount, AccountError> {
        let ns = &issuer.secret_namespace;
        let secret_name = &issuer.spec.private_key_secret_ref.name;
        let secret = match ctx.stores.secret(ns, secret_name).await? {
            Some(s) => s,
            // A key Secret the user made is not in the store: the issuer controller
            // reads it (and reloads the account when it changes) on each of its passes.
            None if let Some(account) = self.cached_any(issuer) => return Ok(account),
            None => Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .get_opt(secret_name)
                .await?
                .ok_or_else(|| {
                    AcmeError::AccountNotFound(format!(
                        "the account key Secret {ns}/{secret_name} does not exist yet"
                    ))
                })?,
        };
        let version = secret.resource_version().unwrap_or_default();
        if let Some(account) = self.cached(issuer, &version) {
            return Ok(account);
        }
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get("tls.key"))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
            .ok_or_else(|| {
                AcmeError::InvalidSpec(format!(
                    "the account key Secret {secret_name} has no tls.key"
                ))
            })?;
        let http = AcmeHttp::new(issuer.spec.ca_bundle.as_deref(), ctx.stats.clone())?;
        let account = crate::acme::load(&http, &issuer.spec.server, &key).await?;
        self.insert(issuer, &version, account.clone());
        Ok(account)
    }
}
