//! The operator's integration tests: one test binary (`e2e`), one module per area, so the
//! whole crate is linked once instead of once per area (disk and link time).
//!
//! * `testbed_smoke`: the test bed itself (API server, Pebble with EAB, BIND with TSIG).
//! * `certificates`: the core path: issuer with EAB, HTTP-01 and RFC 2136 DNS-01, errors.
//! * `renewal`: renewal (ARI, `replaces`), TLS-ALPN-01, key types, nonces, backoff.
//! * `commercial_ca`: what commercial CaaS CAs need (EAB algorithms, chains, notAfter).
//! * `dns_providers`: DNS-01 providers against BIND, through fakes of their APIs.
//! * `aws`: Route 53 through moto with each AWS credential source (keys, IRSA, Pod
//!   Identity, an assumed role), and ten writers of one name.
//! * `dns_persist`: dns-persist-01 (with and without a DNS provider) and dns-account-01
//!   (two accounts, one name) on Pebble 2.10.
//! * `dns_propagation`: the default DNS-01 check, asking every authoritative server on
//!   port 53 (a second BIND, `caas_testbed::shared_auth_bind`).
//! * `cloud_credentials`: Google and Azure credentials (metadata server, workload
//!   identity; the fakes checked with the official clients), one name written at once.
//! * `deploy`: deploy targets: Secret copies in other namespaces, ACM through moto.
//! * `delivery`: Gateway API, rolling restarts, notifications, the `Expiring` warning.
//! * `operations`: annotated Ingresses, several replicas with one leader, metrics.
//! * `reliability`: the operator killed at each step, a faulty CA front end, 500 certs.
//! * `faults`: TLS Secrets deleted or corrupted by hand, an API server restart.
//! * `slow_ca`: a CA that takes over 20 minutes (`cargo xtask test` runs it alongside).
//! * `chart`: the Helm chart: lint, generated files current, install, its RBAC.
//! * `plugin`: `kubectl caas` through the real kubectl.
//! * `profiles`: ACME profiles (Pebble 2.10's `default` and `shortlived`), short-lived
//!   certificates renewed again and again.
//! * `hostile_input`: property tests: user input gives errors, never panics.
//!
//! All areas share one API server and one BIND (`caas_testbed::shared_apiserver`,
//! `shared_bind`) and install the CRDs once (`support::install_crds`); tests isolate
//! themselves by namespace and by `unique_name`.

mod support;

mod aws;

mod certificates;
mod chart;
mod cloud_credentials;
mod commercial_ca;
mod delivery;
mod deploy;
mod deploy_clouds;
mod dns_persist;
mod dns_propagation;
mod dns_providers;
mod faults;
mod hostile_input;
mod operations;
mod plugin;
mod profiles;
mod reliability;
mod renewal;
mod slow_ca;
mod testbed_smoke;
