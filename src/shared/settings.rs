//! The operator's settings from its command line, as every layer reads them: the
//! controllers' [`Settings`], and the part the challenge solvers get
//! ([`SolverSettings`]: where HTTP-01 traffic goes, where DNS questions go).

use std::net::{IpAddr, SocketAddr};

/// Operator settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where `ClusterCaaSIssuer` Secrets live.
    pub cluster_resource_namespace: String,
    /// What the challenge solvers read.
    pub solvers: SolverSettings,
    /// Whether `caas.dev/restart-on-renew` workloads are restarted.
    pub restart_on_renew: bool,
    /// A certificate this close to notAfter whose renewal fails is `Expiring`.
    pub expiring_within: std::time::Duration,
    /// Notifications for issuers without `spec.notify` (URL Secrets in the cluster
    /// resource namespace).
    pub default_notify: Option<crate::api::issuer::Notify>,
    /// Read cert-manager's `cert-manager.io/...` Ingress and Gateway annotations too.
    pub accept_cert_manager_annotations: bool,
}

/// The operator settings the solvers read.
#[derive(Clone, Debug)]
pub struct SolverSettings {
    /// Where the temporary HTTP-01 Services send traffic.
    pub solver_endpoint: SolverEndpoint,
    /// Where DNS-01 propagation checks and CNAME lookups ask.
    pub dns01_resolvers: Resolvers,
    /// Which issuers may sign in to a cloud with the operator's own identity.
    pub ambient_credentials: AmbientCredentials,
}

/// Whether a cloud DNS-01 solver without keys may use the operator's own identity (its
/// service account's IRSA / Workload Identity, the node's metadata service). As
/// cert-manager's `--issuer-ambient-credentials` (off) and
/// `--cluster-issuer-ambient-credentials` (on): a namespace's user must not borrow the
/// operator's cloud identity unless the platform team allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmbientCredentials {
    pub issuers: bool,
    pub cluster_issuers: bool,
}

impl Default for AmbientCredentials {
    fn default() -> Self {
        AmbientCredentials {
            issuers: false,
            cluster_issuers: true,
        }
    }
}

/// Where the temporary Service sends traffic: the operator's address and solver port.
#[derive(Clone, Copy, Debug)]
pub struct SolverEndpoint {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

/// Where DNS questions go.
#[derive(Clone, Debug, Default)]
pub struct Resolvers {
    /// Recursive resolvers; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// Ask these alone, not the zone's authoritative servers.
    pub only: bool,
}

impl Resolvers {
    /// The recursive resolvers to ask: the configured ones, else the system's.
    pub fn recursive(&self) -> Vec<SocketAddr> {
        if !self.servers.is_empty() {
            return self.servers.clone();
        }
        std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }
}
