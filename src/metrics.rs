//! Prometheus metrics (served on `--metrics-addr` at `/metrics`).
//!
//! Per-Certificate gauges are computed from the watched Certificates at scrape time, so
//! a deleted Certificate never leaves a stale series; the rest are counted as they
//! happen.

use std::sync::Arc;

use kube::Resource;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Certificate;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcmeRequestLabels {
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    pub namespace: String,
    pub name: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// A deployment attempt's destination and outcome (`deployed`, `unchanged`: the
/// destination already held the serial, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeployAttemptLabels {
    pub destination: String,
    pub outcome: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub acme_requests: Family<AcmeRequestLabels, Counter>,
    pub deploy_attempts: Family<DeployAttemptLabels, Counter>,
    pub issuer_ready: Family<IssuerLabels, Gauge>,
    pub issuance_duration: Histogram,
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    pub kube_requests: Counter,
}

/// The size of the pieces a scrape is written in.
const CHUNK: usize = 64 * 1024;

/// Text written in pieces of about [`CHUNK`] bytes.
struct Chunks(Vec<String>);

impl std::fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        match self.0.last_mut() {
            Some(last) if last.len() + s.len() <= CHUNK => last.push_str(s),
            _ => {
                let mut next = String::with_capacity(CHUNK.max(s.len()));
                next.push_str(s);
                self.0.push(next);
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// One per-Certificate gauge: its name, help, and value (none: no series).
type CertificateGauge = (&'static str, &'static str, fn(&Certificate) -> Option<i64>);

/// The per-Certificate gauges, in the order they are written.
const CERTIFICATE_GAUGES: [CertificateGauge; 4] = [
    (
        "caas_certificate_expiration_timestamp_seconds",
        "The certificate's notAfter (Unix seconds)",
        |c| Some(c.status.as_ref()?.not_after?.0.as_second()),
    ),
    (
        "caas_certificate_renewal_timestamp_seconds",
        "When the operator will renew (Unix seconds)",
        |c| Some(c.status.as_ref()?.renewal_time?.0.as_second()),
    ),
    (
        "caas_certificate_ready",
        "1 when the Certificate's Ready condition is True",
        |c| Some(i64::from(condition_is_true(c, "Ready"))),
    ),
    (
        "caas_certificate_expiring",
        "1 when the certificate expires soon (--expiring-within) and renewal is failing",
        |c| Some(i64::from(condition_is_true(c, "Expiring"))),
    ),
];

fn condition_is_true(cert: &Certificate, type_: &str) -> bool {
    cert.status
        .as_ref()
        .and_then(|s| crate::api::conditions::find(&s.conditions, type_))
        .is_some_and(|c| c.is_true())
}

/// Computes the per-Certificate gauges from the store on each scrape, writing each
/// series as it goes: at 10,000 Certificates, filling a `Family` per gauge first would
/// copy every label 40,000 times and hold four hash maps (megabytes) per scrape.
#[derive(Debug)]
struct CertificateCollector(Store<Certificate>);

impl Collector for CertificateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let certs = self.0.state();
        for (name, help, value) in CERTIFICATE_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for cert in &certs {
                let Some(v) = value(cert) else { continue };
                let (namespace, name) = (
                    cert.meta().namespace.as_deref(),
                    cert.meta().name.as_deref(),
                );
                let labels = [
                    ("namespace", namespace.unwrap_or_default()),
                    ("name", name.unwrap_or_default()),
                    ("issuer", cert.spec.issuer_ref.name.as_str()),
                ];
                family.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

/// Computes the per-deployment gauges (one per Certificate and deploy target) from the
/// store on each scrape, writing each series as it goes.
#[derive(Debug)]
struct DeploymentCollector(Store<Certificate>);

impl Collector for DeploymentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        type Value = fn(&crate::api::deploy::DeploymentStatus) -> Option<i64>;
        let gauges: [(&str, &str, Value); 2] = [
            (
                "caas_deployment_ready",
                "1 when the deploy target holds the Secret's certificate (Deployed=True)",
                |d| Some(i64::from(d.is_deployed())),
            ),
            (
                "caas_deployment_expiration_timestamp_seconds",
                "notAfter of the certificate last deployed to the target (Unix seconds)",
                |d| Some(d.not_after?.0.as_second()),
            ),
        ];
        let certs = self.0.state();
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for cert in &certs {
                let (namespace, name) = (
                    cert.meta().namespace.as_deref(),
                    cert.meta().name.as_deref(),
                );
                for d in cert.status.iter().flat_map(|s| &s.deployments) {
                    let Some(v) = value(d) else { continue };
                    let labels = [
                        ("namespace", namespace.unwrap_or_default()),
                        ("name", name.unwrap_or_default()),
                        ("target", d.target.as_str()),
                        ("destination", d.destination.as_deref().unwrap_or_default()),
                    ];
                    family.encode_family(&labels)?.encode_gauge(&v)?;
                }
            }
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(certificates: Store<Certificate>, kube_requests: Counter) -> Arc<Self> {
        let mut registry = Registry::default();
        let acme_requests = Family::<AcmeRequestLabels, Counter>::default();
        registry.register(
            "caas_acme_requests",
            "ACME requests by endpoint and HTTP status (0: no answer)",
            acme_requests.clone(),
        );
        let issuer_ready = Family::<IssuerLabels, Gauge>::default();
        registry.register(
            "caas_issuer_ready",
            "1 when the issuer's Ready condition is True",
            issuer_ready.clone(),
        );
        let issuance_duration =
            Histogram::new([0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0]);
        registry.register(
            "caas_issuance_duration_seconds",
            "Time from the start of an issuance to the Secret written",
            issuance_duration.clone(),
        );
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "caas_reconcile_errors",
            "Reconciles that failed and were retried",
            reconcile_errors.clone(),
        );
        // Series exist from the start (at 0), so rate() and alerts work before a failure.
        for controller in ["certificate", "issuer", "ingress", "deploy"] {
            let _ = reconcile_errors.get_or_create(&ControllerLabels {
                controller: controller.into(),
            });
        }
        registry.register(
            "caas_kube_api_requests",
            "Requests made to the Kubernetes API server",
            kube_requests.clone(),
        );
        let deploy_attempts = Family::<DeployAttemptLabels, Counter>::default();
        registry.register(
            "caas_deploy_attempts",
            "Deployments to deploy targets, by destination and outcome (deployed, unchanged, failed)",
            deploy_attempts.clone(),
        );
        registry.register_collector(Box::new(CertificateCollector(certificates.clone())));
        registry.register_collector(Box::new(DeploymentCollector(certificates)));
        Arc::new(Metrics {
            registry,
            acme_requests,
            deploy_attempts,
            issuer_ready,
            issuance_duration,
            reconcile_errors,
            kube_requests,
        })
    }

    /// The OpenMetrics text of all metrics, whole (`/metrics` sends
    /// [`Metrics::encode_chunks`]).
    pub fn encode(&self) -> String {
        self.encode_chunks().concat()
    }

    /// The OpenMetrics text of all metrics, in pieces of about 64 KiB, each dropped once
    /// sent. At 10,000 Certificates a scrape is 4 MB; as one buffer it is a block glibc
    /// first maps and unmaps, and then (having raised its mmap threshold to the largest
    /// block freed) serves from an arena, which keeps it.
    pub fn encode_chunks(&self) -> Vec<String> {
        let mut out = Chunks(Vec::new());
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to memory");
        out.0
    }

    pub fn deploy_attempt(&self, destination: &str, outcome: &str) {
        self.deploy_attempts
            .get_or_create(&DeployAttemptLabels {
                destination: destination.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn reconcile_error(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                controller: controller.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_is_written_in_pieces() {
        use std::fmt::Write;
        let mut out = Chunks(Vec::new());
        for _ in 0..10_000 {
            out.write_str("0123456789").unwrap();
        }
        out.write_str(&"x".repeat(100_000)).unwrap();
        let sizes: Vec<usize> = out.0.iter().map(String::len).collect();
        assert_eq!(sizes, [65_530, 34_470, 100_000]);
    }

    #[test]
    fn series_exist_from_the_start() {
        let (store, _writer) = kube::runtime::reflector::store::<Certificate>();
        let metrics = Metrics::new(store, Counter::default());
        let text = metrics.encode();
        assert!(
            text.contains("caas_reconcile_errors_total{controller=\"certificate\"} 0"),
            "{text}"
        );
        assert!(text.contains("caas_kube_api_requests_total 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn each_deployment_is_a_series_of_its_own() {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store::<Certificate>();
        let cert: Certificate = serde_json::from_value(serde_json::json!({
            "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": { "secretName": "web-tls", "issuerRef": { "name": "ca" } },
            "status": { "deployments": [
                { "target": "DeployTarget/edge", "destination": "acm", "notAfter": "2027-01-01T00:00:00Z",
                  "conditions": [{ "type": "Deployed", "status": "True", "reason": "Deployed" }] },
                { "target": "ClusterDeployTarget/copies", "destination": "secretCopies",
                  "conditions": [{ "type": "Deployed", "status": "False", "reason": "CopyConflict" }] }
            ] }
        }))
        .unwrap();
        writer.apply_watcher_event(&Event::Apply(cert));
        let metrics = Metrics::new(store, Counter::default());
        metrics.deploy_attempt("acm", "deployed");
        let text = metrics.encode();
        let edge = r#"{namespace="shop",name="web",target="DeployTarget/edge",destination="acm"}"#;
        assert!(
            text.contains(&format!("caas_deployment_ready{edge} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "caas_deployment_expiration_timestamp_seconds{edge} 1798761600"
            )),
            "{text}"
        );
        assert!(text.contains(r#"caas_deployment_ready{namespace="shop",name="web",target="ClusterDeployTarget/copies",destination="secretCopies"} 0"#), "{text}");
        assert!(
            text.contains(r#"caas_deploy_attempts_total{destination="acm",outcome="deployed"} 1"#),
            "{text}"
        );
    }
}
