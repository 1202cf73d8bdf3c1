//! A real test bed for caas-operator, started from Rust tests in seconds.
//!
//! * [`ApiServer`]: etcd + kube-apiserver 1.20 with RBAC and an admin token;
//! * [`Pebble`]: an ACME CA that requires External Account Binding (and offers ARI);
//! * [`Bind`]: BIND 9 serving the zone `acc.test` (every name resolves to 127.0.0.1,
//!   TSIG-signed dynamic updates allowed for TXT records), which Pebble uses for all
//!   its lookups, so one DNS server serves HTTP-01, TLS-ALPN-01 and DNS-01;
//! * [`AuthBind`]: a second BIND on port 53 of 127.0.0.1 and ::1, the two authoritative
//!   servers of `auth.test`, for the default (authoritative) DNS-01 propagation check.
//!
//! The API server and BIND are expensive and shared by all tests of one test binary
//! ([`shared_apiserver`], [`shared_bind`]); tests isolate themselves by namespace
//! ([`ApiServer::namespace`]) and by DNS name ([`unique_name`]). Pebble is cheap and
//! started per test, so each test may set its own fault knobs and own the solver ports.
//!
//! Binaries come from `cargo xtask test-env` (see [`tool`]); a missing one fails the test
//! with a message saying how to get it. Nothing started here outlives the test process.
#![forbid(unsafe_code)]

pub mod acme_proxy;
mod apiserver;
mod auth_bind;
mod bind;
pub mod cli;
mod data_plane;
pub mod fake_dns;
mod gateway_api;
mod http;
mod moto;
mod pebble;
mod proc;
mod webhook_receiver;

pub use acme_proxy::{AcmeProxy, Fault, SlowCa};
pub use apiserver::{ApiServer, shared_apiserver};
pub use auth_bind::{AUTH_ZONE, AuthBind, LAGGING_ZONE, shared_auth_bind};
pub use bind::{Bind, LOCKED_ZONE, shared_bind};
pub use data_plane::{IngressDataPlaneStandIn, Routed};
pub use fake_dns::{
    AZURE_CLIENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION, AZURE_TENANT, CLOUD_DNS_PROJECT,
    DELEGATE_ZONE, FakeAcmeDnsServer, FakeAzureDnsApi, FakeCertificateManager, FakeCloudDnsApi,
    FakeCloudflareApi, FakeDigitalOceanApi, FakeDnsApi, FakeHttpreqServer, FakeKeyVault,
    pem_serial,
};
pub use gateway_api::{gateway_api_crds, install_gateway_api_crds};
pub use http::{http_get, https_get};
pub use moto::{AwsKeys, Moto, shared_moto};
pub use pebble::{Pebble, PebbleOptions, goroutines_stuck_on_locks};
pub use proc::{Proc, free_port, log_tail, port_open};
pub use webhook_receiver::{Received, WebhookReceiver};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// The cache folder of `cargo xtask test-env` (`$CAAS_CACHE_DIR`, default
/// `~/.cache/caas-operator`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAAS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/caas-operator")
}

/// The path of a test-bed binary. `kube-apiserver` and `etcd` come from
/// `KUBEBUILDER_ASSETS` when it holds both (envtest's convention); everything else from
/// the cache's `bin/`. Panics, saying how to install it, when it is missing.
pub fn tool(name: &str) -> PathBuf {
    if matches!(name, "kube-apiserver" | "etcd")
        && let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from)
        && dir.join("kube-apiserver").is_file()
        && dir.join("etcd").is_file()
    {
        return dir.join(name);
    }
    let path = cache_dir().join("bin").join(name);
    if !path.exists() {
        panic!(
            "test-bed binary `{name}` not found at {}.\n\
             Install the test bed with `cargo xtask test-env` (as root on Debian 12; it builds \
             kube-apiserver once and caches everything in {}).",
            path.display(),
            cache_dir().display()
        );
    }
    path
}

/// A fresh folder for one service, under the system temp dir.
pub fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "caas-testbed-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

/// Secrets the test bed handed out in this process (EAB HMAC keys, TSIG secrets), which
/// must never appear in the operator's logs; see [`registered_secrets`].
static SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Remembers a secret value that must never be logged.
pub fn register_secret(secret: &str) {
    SECRETS
        .lock()
        .expect("secrets lock")
        .push(secret.to_string());
}

/// Every secret registered so far in this process.
pub fn registered_secrets() -> Vec<String> {
    SECRETS.lock().expect("secrets lock").clone()
}

/// A short random lowercase name, unique enough to isolate tests (`prefix-xxxxxxxx`).
pub fn unique_name(prefix: &str) -> String {
    let suffix: String = random_bytes(8)
        .iter()
        .map(|b| (b'a' + b % 26) as char)
        .collect();
    format!("{prefix}-{suffix}")
}
