//! Challenge solvers behind one trait ([`Solver`], registered in [`SOLVERS`]), and the
//! pure choice of which one serves a name ([`select_solver`]).
//!
//! * [`http01`]: the operator's own listener plus a temporary Ingress (or HTTPRoute) per
//!   challenge, to the namespace's shared Service ([`http01_service`]);
//! * [`dns01`]: a TXT record through the issuer's DNS provider ([`rfc2136`]: dynamic
//!   updates signed with TSIG), guarded by a finalizer while published;
//! * [`tls_alpn01`]: the operator's own TLS listener answering `acme-tls/1`;
//! * [`dns01::DnsAccount01`]: DNS-01 at the ACME account's own label (dns-account-01);
//! * [`dns01::persist`]: one persistent TXT record naming the account (dns-persist-01);
//! * [`index`]: the challenges in progress, which both listeners answer from.

pub mod dns01;
pub mod http01;
pub mod http01_service;
pub mod http01_sweep;
pub mod index;
pub mod rfc2136;
pub mod tls_alpn01;

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::api::issuer::SolverConfig;
use crate::api::{Certificate, ChallengeType};
use crate::shared::IssuerHandle;
use crate::shared::events::Recorder;
pub use crate::shared::settings::SolverSettings;

/// Every solver the operator has. Adding one is a new file implementing [`Solver`] and
/// one line here.
pub const SOLVERS: &[&dyn Solver] = &[
    &http01::Http01,
    &dns01::Dns01,
    &tls_alpn01::TlsAlpn01,
    &dns01::DnsAccount01,
    &dns01::persist::DnsPersist01,
];

/// What solvers may use beyond the challenge itself: the API client, their settings and
/// the event publisher; no controller state.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub client: &'a kube::Client,
    pub settings: &'a SolverSettings,
    pub events: &'a Recorder,
    /// Where a DNS provider's changes still being applied are remembered between
    /// `present` and `ready`.
    pub memory: &'a crate::shared::memory::Memory,
    /// The namespaces' shared HTTP-01 Services, in this leadership term.
    pub http01: &'a http01_service::SolverServices,
    /// The challenges every watched Certificate lists.
    pub index: &'a index::ChallengeIndex,
}

/// What a solver needs to act for one Certificate.
pub struct SolveEnv<'a> {
    pub deps: Deps<'a>,
    pub cert: &'a Certificate,
    pub issuer: &'a IssuerHandle,
    /// The issuer's solver entry chosen for the challenge's name.
    pub config: &'a SolverConfig,
}

/// One challenge, as status records it.
#[derive(Clone, Copy, Debug)]
pub struct Challenge<'a> {
    /// The identifier (`*.` for wildcards).
    pub dns_name: &'a str,
    pub token: &'a str,
    pub key_authorization: &'a str,
}

/// Whether the CA can see a presented answer yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet, and what is being waited for.
    Waiting(String),
}

/// Why a solver could not act, with the reason word status shows.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Dns(#[from] dns01::DnsError),
    #[error("{0}")]
    SecretNotFound(String),
    #[error("{0}")]
    InvalidSpec(String),
}

impl SolverError {
    pub fn reason(&self) -> crate::api::Reason {
        use crate::api::Reason;
        match self {
            SolverError::Kube(_) => Reason::KubernetesError,
            SolverError::Dns(_) => Reason::DnsUpdateFailed,
            SolverError::SecretNotFound(_) => Reason::SecretNotFound,
            SolverError::InvalidSpec(_) => Reason::InvalidSpec,
        }
    }
}

/// The future of a solver's step.
pub type SolveFuture<'a, T = ()> = BoxFuture<'a, Result<T, SolverError>>;

/// What a solver is: the challenge type it answers, the issuer spec field that configures
/// it (`http01`, `dns01`, `tlsAlpn01`) and whether a solver entry sets that field.
pub struct Kind(
    pub ChallengeType,
    pub &'static str,
    pub fn(&SolverConfig) -> bool,
);

/// A way of answering one ACME challenge type. The controller writes each challenge to
/// status (and to the [`index::ChallengeIndex`]) before `present`, calls `ready` until it
/// says so, tells the CA to validate, and calls `cleanup` once the order is over.
pub trait Solver: Send + Sync {
    fn kind(&self) -> Kind;

    /// The challenge type it answers.
    fn challenge_type(&self) -> ChallengeType {
        self.kind().0
    }

    /// The issuer spec field that configures it.
    fn field(&self) -> &'static str {
        self.kind().1
    }

    /// Whether an issuer's solver entry is for this solver.
    fn configured(&self, config: &SolverConfig) -> bool {
        (self.kind().2)(config)
    }

    /// Puts the answer in place (idempotent: called again after a restart). By default
    /// nothing: a listener answers from the index.
    fn present<'a>(&'a self, _env: &'a SolveEnv<'a>, _ch: Challenge<'a>) -> SolveFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    /// Whether the CA can see the answer now.
    fn ready<'a>(
        &'a self,
        _env: &'a SolveEnv<'a>,
        _challenge: Challenge<'a>,
    ) -> SolveFuture<'a, Readiness> {
        Box::pin(async { Ok(Readiness::Ready) })
    }

    /// Removes the answer (idempotent; a missing answer is not an error). By default
    /// nothing, as there is nothing to present.
    fn cleanup<'a>(&'a self, _env: &'a SolveEnv<'a>, _ch: Challenge<'a>) -> SolveFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    /// After `cleanup` of all of a Certificate's challenges of this type (`all_removed`:
    /// none failed), e.g. to drop a deletion guard.
    fn cleaned_up<'a>(
        &'a self,
        _deps: Deps<'a>,
        _cert: &'a Certificate,
        _challenges: &'a [Challenge<'a>],
        _all_removed: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The solver for a challenge type.
pub fn for_type(type_: ChallengeType) -> Option<&'static dyn Solver> {
    SOLVERS
        .iter()
        .copied()
        .find(|s| s.challenge_type() == type_)
}

fn fields() -> String {
    SOLVERS
        .iter()
        .map(|s| s.field())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The challenge type a solver entry is configured for; `Err` unless exactly one is set.
pub fn solver_kind(solver: &SolverConfig) -> Result<ChallengeType, String> {
    let kinds: Vec<ChallengeType> = SOLVERS
        .iter()
        .filter(|s| s.configured(solver))
        .map(|s| s.challenge_type())
        .collect();
    match kinds.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("a solver must set one of {}", fields())),
        _ => Err(format!("a solver must set only one of {}", fields())),
    }
}

/// How well a solver's selector matches a name; larger is more specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    exact_name: bool,
    zone_len: usize,
    labels: usize,
}

fn is_in_zone(name: &str, zone: &str) -> bool {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn specificity(
    solver: &SolverConfig,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<Specificity> {
    let Some(sel) = &solver.selector else {
        return Some(Specificity {
            exact_name: false,
            zone_len: 0,
            labels: 0,
        });
    };
    if !sel
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return None;
    }
    let base = name.strip_prefix("*.").unwrap_or(name);
    let exact_name = sel.dns_names.iter().any(|n| n.eq_ignore_ascii_case(name));
    let zone_len = sel
        .dns_zones
        .iter()
        .filter(|z| is_in_zone(base, z))
        .map(|z| z.trim_end_matches('.').len())
        .max();
    let has_name_criteria = !sel.dns_names.is_empty() || !sel.dns_zones.is_empty();
    if has_name_criteria && !exact_name && zone_len.is_none() {
        return None;
    }
    Some(Specificity {
        exact_name,
        zone_len: zone_len.unwrap_or(0),
        labels: sel.match_labels.len(),
    })
}

/// The index of the solver for `name` (a DNS identifier, `*.` for wildcards) on a
/// Certificate with `labels`: the most specific matching selector wins (exact `dnsNames`,
/// then the longest `dnsZones`, then the most `matchLabels`), ties go to the first listed.
/// Wildcards can only be proven over DNS (dns-01, dns-account-01, dns-persist-01).
pub fn select_solver(
    solvers: &[SolverConfig],
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<usize> {
    let wildcard = name.starts_with("*.");
    let mut best: Option<(Specificity, usize)> = None;
    for (i, solver) in solvers.iter().enumerate() {
        let Ok(kind) = solver_kind(solver) else {
            continue;
        };
        if wildcard && !kind.is_dns() {
            continue;
        }
        if let Some(spec) = specificity(solver, name, labels)
            && best.is_none_or(|(b, _)| spec > b)
        {
            best = Some((spec, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::issuer::{Dns01Solver, Http01Solver, SolverSelector};

    fn http(selector: Option<SolverSelector>) -> SolverConfig {
        SolverConfig {
            selector,
            http01: Some(Http01Solver::default()),
            ..Default::default()
        }
    }
    fn dns(selector: Option<SolverSelector>) -> SolverConfig {
        SolverConfig {
            selector,
            dns01: Some(Dns01Solver::default()),
            ..Default::default()
        }
    }
    fn zones(z: &[&str]) -> Option<SolverSelector> {
        Some(SolverSelector {
            dns_zones: z.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }
    fn names(n: &[&str]) -> Option<SolverSelector> {
        Some(SolverSelector {
            dns_names: n.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }
    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn no_selector_matches_everything() {
        let solvers = vec![http(None)];
        assert_eq!(select_solver(&solvers, "a.example.com", &none()), Some(0));
    }

    #[test]
    fn most_specific_wins() {
        let solvers = vec![
            http(None),
            dns(zones(&["example.com"])),
            dns(zones(&["sub.example.com"])),
            http(names(&["www.sub.example.com"])),
        ];
        assert_eq!(select_solver(&solvers, "other.org", &none()), Some(0));
        assert_eq!(select_solver(&solvers, "a.example.com", &none()), Some(1));
        assert_eq!(select_solver(&solvers, "example.com", &none()), Some(1));
        assert_eq!(
            select_solver(&solvers, "a.sub.example.com", &none()),
            Some(2)
        );
        assert_eq!(
            select_solver(&solvers, "www.sub.example.com", &none()),
            Some(3)
        );
        // A zone is matched on label boundaries only.
        assert_eq!(select_solver(&solvers, "notexample.com", &none()), Some(0));
    }

    #[test]
    fn wildcards_need_dns01() {
        let solvers = vec![http(None)];
        assert_eq!(select_solver(&solvers, "*.example.com", &none()), None);
        let solvers = vec![http(None), dns(zones(&["example.com"]))];
        assert_eq!(select_solver(&solvers, "*.example.com", &none()), Some(1));
    }

    #[test]
    fn labels_must_all_match_and_count() {
        let mut team = BTreeMap::new();
        team.insert("team".to_string(), "a".to_string());
        let labelled = SolverConfig {
            selector: Some(SolverSelector {
                match_labels: team.clone(),
                ..Default::default()
            }),
            dns01: Some(Dns01Solver::default()),
            ..Default::default()
        };
        let solvers = vec![http(None), labelled];
        assert_eq!(select_solver(&solvers, "x.org", &none()), Some(0));
        assert_eq!(select_solver(&solvers, "x.org", &team), Some(1));
    }

    #[test]
    fn ties_go_to_the_first_and_bad_solvers_are_skipped() {
        let broken = SolverConfig::default();
        let solvers = vec![broken, http(None), dns(None)];
        assert_eq!(select_solver(&solvers, "x.org", &none()), Some(1));
        assert!(solver_kind(&SolverConfig::default()).is_err());
    }
}
