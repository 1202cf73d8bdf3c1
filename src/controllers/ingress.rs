//! Ingress annotations: `caas.dev/issuer` or `caas.dev/cluster-issuer` on an Ingress make
//! the operator keep one Certificate per `spec.tls[]` entry (hosts -> dnsNames, the
//! entry's secretName), owned by the Ingress.
//!
//! Pipeline: read annotations -> desired Certificates ([`desired`], pure) -> apply those
//! that are ours or new -> delete ours that are no longer wanted. A Certificate the user
//! made for the same Secret is never touched: it is reported as a conflict.
//!
//! The same pipeline serves annotated Gateways ([`super::gateway`]) through [`Owner`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{Ingress, IngressTLS};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{Context, Error};
use crate::api::certificate::{IssuerRef, KeyAlgorithm, PrivateKeySpec};
use crate::api::{Certificate, CertificateSpec, DeployRef, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::shared::FIELD_MANAGER;

pub const ISSUER: &str = "caas.dev/issuer";
pub const CLUSTER_ISSUER: &str = "caas.dev/cluster-issuer";
pub const COMMON_NAME: &str = "caas.dev/common-name";
pub const DURATION: &str = "caas.dev/duration";
pub const RENEW_BEFORE: &str = "caas.dev/renew-before";
pub const KEY_ALGORITHM: &str = "caas.dev/private-key-algorithm";
pub const KEY_SIZE: &str = "caas.dev/private-key-size";
/// IP address SANs (comma-separated) added to every Certificate of the Ingress.
pub const IP_SANS: &str = "caas.dev/ip-sans";
/// Deploy targets of the Certificates (comma-separated; `ClusterDeployTarget/name`).
pub const DEPLOY_TO: &str = "caas.dev/deploy-to";
/// Label on Certificates made for an Ingress, naming it.
pub const INGRESS_LABEL: &str = "caas.dev/ingress";

/// An annotated object that keeps Certificates: an Ingress or a Gateway.
pub trait Owner:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// Its kind, as in owner references.
    const KIND: &'static str;
    /// The label on its Certificates, naming it.
    const LABEL: &'static str;
    /// The Certificates it asks for (its annotations as [`annotations`] reads them) and
    /// the parts that cannot be served (see [`Skipped`]), or what is wrong with the
    /// annotations as a whole.
    fn desired_certificates(
        &self,
        ann: &BTreeMap<String, String>,
    ) -> Result<(Vec<DesiredCertificate>, Vec<Skipped>), String>;
}

/// One part of an owner (a Gateway listener) that names a Secret but cannot be served:
/// reported as a warning, while the other parts get their Certificates; a Certificate it
/// had before for that Secret is kept, not deleted, until the part is fixed or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub secret_name: String,
    pub message: String,
}

impl Owner for Ingress {
    const KIND: &'static str = "Ingress";
    const LABEL: &'static str = INGRESS_LABEL;
    fn desired_certificates(
        &self,
        ann: &BTreeMap<String, String>,
    ) -> Result<(Vec<DesiredCertificate>, Vec<Skipped>), String> {
        desired_with(self, ann).map(|wanted| (wanted, Vec::new()))
    }
}

/// cert-manager's Ingress annotations and ours (`--accept-cert-manager-annotations`).
const CERT_MANAGER_ALIASES: [(&str, &str); 7] = [
    ("cert-manager.io/issuer", ISSUER),
    ("cert-manager.io/cluster-issuer", CLUSTER_ISSUER),
    ("cert-manager.io/common-name", COMMON_NAME),
    ("cert-manager.io/duration", DURATION),
    ("cert-manager.io/renew-before", RENEW_BEFORE),
    ("cert-manager.io/private-key-algorithm", KEY_ALGORITHM),
    ("cert-manager.io/private-key-size", KEY_SIZE),
];

/// An object's annotations as the operator reads them: with `cert_manager`, each
/// `cert-manager.io/...` annotation stands for its `caas.dev/...` twin (ours win when
/// both are set), so a cluster moves from cert-manager one namespace at a time. The
/// issuer must then exist as a `CaaSIssuer` / `ClusterCaaSIssuer` of the same name.
pub fn annotations(
    ann: &BTreeMap<String, String>,
    cert_manager: bool,
) -> std::borrow::Cow<'_, BTreeMap<String, String>> {
    if !cert_manager || !ann.keys().any(|k| k.starts_with("cert-manager.io/")) {
        return std::borrow::Cow::Borrowed(ann);
    }
    let mut out = ann.clone();
    let ours = ann.contains_key(ISSUER) || ann.contains_key(CLUSTER_ISSUER);
    for (theirs, mine) in CERT_MANAGER_ALIASES {
        let is_issuer = mine == ISSUER || mine == CLUSTER_ISSUER;
        if let Some(v) = ann.get(theirs)
            && !ann.contains_key(mine)
            && !(is_issuer && ours)
        {
            out.insert(mine.to_string(), v.clone());
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One Certificate an Ingress asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredCertificate {
    pub name: String,
    pub spec: CertificateSpec,
}

/// The Certificates an Ingress's annotations and TLS entries ask for (empty when it is
/// not annotated), or a message saying which annotation is wrong.
pub fn desired(ingress: &Ingress) -> Result<Vec<DesiredCertificate>, String> {
    desired_with(ingress, ingress.annotations())
}

/// [`desired`] with the annotations `ann` (see [`annotations`]).
pub fn desired_with(
    ingress: &Ingress,
    ann: &BTreeMap<String, String>,
) -> Result<Vec<DesiredCertificate>, String> {
    let Some(template) = template(ann)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<DesiredCertificate> = Vec::new();
    for (i, tls) in ingress
        .spec
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (secret, hosts) = tls_entry(i, tls)?;
        add(&mut out, &template, secret, hosts);
    }
    Ok(out)
}

/// The spec every Certificate of an annotated object shares (issuer, key, duration, ...),
/// without Secret and names; `None` when it is not annotated.
pub(crate) fn template(ann: &BTreeMap<String, String>) -> Result<Option<CertificateSpec>, String> {
    let Some(issuer_ref) = issuer_ref(ann)? else {
        return Ok(None);
    };
    let annotated = |key: &str| ann.get(key).map(|v| v.trim().to_string());
    Ok(Some(CertificateSpec {
        issuer_ref,
        common_name: annotated(COMMON_NAME),
        duration: annotated(DURATION),
        renew_before: annotated(RENEW_BEFORE),
        private_key: private_key(ann)?,
        ip_addresses: ip_sans(ann)?,
        deploy_to: match ann.get(DEPLOY_TO) {
            Some(list) => DeployRef::parse_list(list).map_err(|e| format!("{DEPLOY_TO}: {e}"))?,
            None => Vec::new(),
        },
        ..Default::default()
    }))
}

/// Adds the Certificate for `secret` with `hosts`; a Secret named twice gets one
/// certificate for all the hosts.
pub(crate) fn add(
    out: &mut Vec<DesiredCertificate>,
    template: &CertificateSpec,
    secret: &str,
    hosts: Vec<String>,
) {
    if let Some(existing) = out.iter_mut().find(|d| d.name == secret) {
        let names = &mut existing.spec.dns_names;
        for h in hosts {
            if !names.contains(&h) {
                names.push(h);
            }
        }
        return;
    }
    out.push(DesiredCertificate {
        name: secret.to_string(),
        spec: CertificateSpec {
            secret_name: secret.to_string(),
            dns_names: hosts,
            ..template.clone()
        },
    });
}

/// The issuer the annotations name (`None`: not annotated), or what is wrong with them.
fn issuer_ref(ann: &BTreeMap<String, String>) -> Result<Option<IssuerRef>, String> {
    let (issuer, kind) = match (ann.get(ISSUER), ann.get(CLUSTER_ISSUER)) {
        (Some(_), Some(_)) => return Err(format!("set {ISSUER} or {CLUSTER_ISSUER}, not both")),
        (Some(i), None) => (i.trim(), "CaaSIssuer"),
        (None, Some(i)) => (i.trim(), "ClusterCaaSIssuer"),
        (None, None) => return Ok(None),
    };
    if issuer.is_empty() {
        return Err("the issuer annotation is empty".into());
    }
    Ok(Some(IssuerRef {
        name: issuer.to_string(),
        kind: Some(kind.to_string()),
    }))
}

/// The IP addresses of the `caas.dev/ip-sans` annotation (comma-separated).
fn ip_sans(ann: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let Some(value) = ann.get(IP_SANS) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| format!("{IP_SANS}: {v:?} is not an IP address"))
        })
        .collect()
}

/// The private key settings the annotations ask for (`None`: none).
fn private_key(ann: &BTreeMap<String, String>) -> Result<Option<PrivateKeySpec>, String> {
    let mut private_key = PrivateKeySpec::default();
    if let Some(alg) = ann.get(KEY_ALGORITHM) {
        let alg = match alg.trim().to_ascii_uppercase().as_str() {
            "ECDSA" => KeyAlgorithm::Ecdsa,
            "RSA" => KeyAlgorithm::Rsa,
            "ED25519" => KeyAlgorithm::Ed25519,
            other => {
                return Err(format!(
                    "{KEY_ALGORITHM} {other:?} is not ECDSA, RSA or Ed25519"
                ));
            }
        };
        private_key.algorithm = Some(alg);
    }
    if let Some(size) = ann.get(KEY_SIZE) {
        let size: u32 = size
            .trim()
            .parse()
            .map_err(|_| format!("{KEY_SIZE} {size:?} is not a number"))?;
        private_key.size = Some(size);
    }
    Ok((private_key != PrivateKeySpec::default()).then_some(private_key))
}

/// The Secret name and hosts of `spec.tls[i]`, both required.
fn tls_entry(i: usize, tls: &IngressTLS) -> Result<(&str, Vec<String>), String> {
    let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else {
        return Err(format!("spec.tls[{i}] has no secretName"));
    };
    let hosts: Vec<String> = tls.hosts.clone().unwrap_or_default();
    if hosts.is_empty() {
        return Err(format!("spec.tls[{i}] ({secret}) has no hosts"));
    }
    Ok((secret, hosts))
}

fn owned_by<K: Owner>(cert: &Certificate, owner: &K) -> bool {
    let uid = owner.uid();
    cert.owner_references()
        .iter()
        .any(|o| o.kind == K::KIND && Some(&o.uid) == uid.as_ref())
}

pub async fn reconcile(ingress: Arc<Ingress>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_owner(ingress, ctx).await
}

/// Keeps the Certificates an annotated Ingress or Gateway asks for.
pub async fn reconcile_owner<K: Owner>(
    ingress: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = ingress.namespace().unwrap_or_default();
    let certs: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
    let ann = annotations(
        ingress.annotations(),
        ctx.settings.accept_cert_manager_annotations,
    );
    let (wanted, skipped) = match ingress.desired_certificates(&ann) {
        Ok(w) => w,
        Err(message) => {
            ctx.recorder
                .event(&*ingress, true, "InvalidAnnotation", "Reconcile", message)
                .await;
            return Ok(Action::await_change());
        }
    };
    for skip in &skipped {
        ctx.recorder
            .event(
                &*ingress,
                true,
                "InvalidListener",
                "Reconcile",
                skip.message.clone(),
            )
            .await;
    }
    // From the watched Certificates, so an Ingress without annotations costs no API call
    // (shared, not copied: a namespace may hold thousands).
    let all: Vec<Arc<Certificate>> = ctx
        .certificates
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    // Ours: labelled for this Ingress and owned by it.
    let mine: Vec<&Certificate> = all
        .iter()
        .map(|c| &**c)
        .filter(|c| c.labels().get(K::LABEL) == Some(&ingress.name_any()) && owned_by(c, &*ingress))
        .collect();
    // A stored Ingress has a name and uid; without them nothing can be owned.
    let Some(owner) = ingress.controller_owner_ref(&()) else {
        return Ok(Action::await_change());
    };
    for want in &wanted {
        let conflict = all.iter().find(|c| {
            !owned_by(c, &*ingress)
                && (c.name_any() == want.name || c.spec.secret_name == want.spec.secret_name)
        });
        match conflict {
            Some(other) => report_conflict(&ctx, &*ingress, other, want).await,
            None => {
                let existed = mine.iter().any(|c| c.name_any() == want.name);
                apply(&ctx, &certs, &*ingress, &owner, want, existed).await?;
            }
        }
    }
    for cert in mine.iter().filter(|c| {
        !wanted.iter().any(|w| w.name == c.name_any())
            && !skipped.iter().any(|s| s.secret_name == c.spec.secret_name)
    }) {
        delete(&ctx, &certs, &*ingress, cert).await?;
    }
    Ok(Action::requeue(Duration::from_secs(3600)))
}

/// Tells the Ingress's users that `other`, not theirs, manages the Secret `want` names.
async fn report_conflict<K: Owner>(
    ctx: &Context,
    ingress: &K,
    other: &Certificate,
    want: &DesiredCertificate,
) {
    ctx.recorder.event(
        ingress,
        true,
        "Conflict",
        "Reconcile",
        format!(
            "Certificate {} already manages Secret {}; leaving it alone (remove it or the {} entry)",
            other.name_any(),
            want.spec.secret_name,
            if K::KIND == "Ingress" { "tls" } else { "listener" }
        ),
    )
    .await;
}

/// The Certificate for `want`: labelled for the Ingress and owned by it.
fn certificate_for<K: Owner>(
    ingress: &K,
    owner: &OwnerReference,
    want: &DesiredCertificate,
) -> Certificate {
    let mut cert = Certificate::new(&want.name, want.spec.clone());
    cert.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (K::LABEL.to_string(), ingress.name_any()),
    ]));
    cert.metadata.owner_references = Some(vec![owner.clone()]);
    cert
}

/// Server-side applies the Certificate for `want` (a `CreateCertificate` event when it
/// did not exist).
async fn apply<K: Owner>(
    ctx: &Context,
    certs: &Api<Certificate>,
    ingress: &K,
    owner: &OwnerReference,
    want: &DesiredCertificate,
    existed: bool,
) -> Result<(), Error> {
    let body = certificate_for(ingress, owner, want);
    certs
        .patch(
            &want.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    if !existed {
        ctx.recorder
            .event(
                ingress,
                false,
                "CreateCertificate",
                "Reconcile",
                format!("created Certificate {}", want.name),
            )
            .await;
    }
    Ok(())
}

/// Deletes a Certificate of the Ingress's that is no longer wanted (gone already is fine).
async fn delete<K: Owner>(
    ctx: &Context,
    certs: &Api<Certificate>,
    ingress: &K,
    cert: &Certificate,
) -> Result<(), Error> {
    match certs
        .delete(&cert.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.recorder
        .event(
            ingress,
            false,
            "DeleteCertificate",
            "Reconcile",
            format!("deleted Certificate {}", cert.name_any()),
        )
        .await;
    Ok(())
}

pub fn error_policy<K: Owner>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let kind = K::KIND.to_ascii_lowercase();
    ctx.metrics.reconcile_error(&kind);
    tracing::warn!(%error, "{kind} reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Labels of Certificates made for Ingresses, for the watch that maps them back.
pub fn ingress_of(cert: &Certificate) -> Option<(String, String)> {
    owner_of::<Ingress>(cert)
}

/// The namespace and name of the `K` a Certificate was made for (by its label).
pub fn owner_of<K: Owner>(cert: &Certificate) -> Option<(String, String)> {
    let name = cert.labels().get(K::LABEL)?.clone();
    Some((cert.namespace()?, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(ann: &[(&str, &str)], tls: serde_json::Value) -> Ingress {
        let ann: BTreeMap<String, String> = ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "ns", "annotations": ann },
            "spec": { "tls": tls }
        }))
        .unwrap()
    }

    #[test]
    fn not_annotated_means_nothing() {
        assert_eq!(
            desired(&ingress(
                &[],
                json!([{ "hosts": ["a"], "secretName": "s" }])
            ))
            .unwrap(),
            vec![]
        );
    }

    #[test]
    fn one_certificate_per_tls_entry_with_annotations() {
        let ing = ingress(
            &[
                (ISSUER, "ca"),
                (DURATION, "2160h"),
                (KEY_ALGORITHM, "ecdsa"),
                (KEY_SIZE, "384"),
                (DEPLOY_TO, "edge-acm, ClusterDeployTarget/copies"),
            ],
            json!([
                { "hosts": ["a.example", "b.example"], "secretName": "ab-tls" },
                { "hosts": ["c.example"], "secretName": "c-tls" },
                { "hosts": ["d.example"], "secretName": "ab-tls" }
            ]),
        );
        let d = desired(&ing).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "ab-tls");
        assert_eq!(
            d[0].spec.dns_names,
            vec!["a.example", "b.example", "d.example"]
        );
        assert_eq!(
            d[0].spec.issuer_ref,
            IssuerRef {
                name: "ca".into(),
                kind: Some("CaaSIssuer".into())
            }
        );
        assert_eq!(d[0].spec.duration.as_deref(), Some("2160h"));
        assert_eq!(
            d[0].spec.private_key,
            Some(PrivateKeySpec {
                algorithm: Some(KeyAlgorithm::Ecdsa),
                size: Some(384),
                ..Default::default()
            })
        );
        assert_eq!(d[1].spec.dns_names, vec!["c.example"]);
        let targets: Vec<String> = d[1].spec.deploy_to.iter().map(DeployRef::key).collect();
        assert_eq!(
            targets,
            ["DeployTarget/edge-acm", "ClusterDeployTarget/copies"]
        );
        let bad = ingress(
            &[(ISSUER, "ca"), (DEPLOY_TO, "Issuer/x")],
            json!([{ "hosts": ["a"], "secretName": "s" }]),
        );
        assert!(
            desired(&bad)
                .unwrap_err()
                .starts_with("caas.dev/deploy-to: ")
        );
    }

    #[test]
    fn cert_manager_annotations_only_when_accepted() {
        let ing = ingress(
            &[
                ("cert-manager.io/cluster-issuer", "letsencrypt"),
                ("cert-manager.io/duration", "2160h"),
            ],
            json!([{ "hosts": ["a.example"], "secretName": "a-tls" }]),
        );
        assert!(desired(&ing).unwrap().is_empty(), "off by default");
        let d = desired_with(&ing, &annotations(ing.annotations(), true)).unwrap();
        assert_eq!(d[0].spec.issuer_ref.name, "letsencrypt");
        assert_eq!(
            d[0].spec.issuer_ref.kind.as_deref(),
            Some("ClusterCaaSIssuer")
        );
        assert_eq!(d[0].spec.duration.as_deref(), Some("2160h"));
        // Ours win: no "set one, not both" because cert-manager's is also there.
        let both = ingress(
            &[("cert-manager.io/cluster-issuer", "le"), (ISSUER, "caas")],
            json!([{ "hosts": ["a.example"], "secretName": "a-tls" }]),
        );
        let d = desired_with(&both, &annotations(both.annotations(), true)).unwrap();
        assert_eq!(d[0].spec.issuer_ref.name, "caas");
    }

    #[test]
    fn bad_annotations_are_explained() {
        let tls = json!([{ "hosts": ["a"], "secretName": "s" }]);
        // Each bad annotation set (with the tls list), and what its error must say.
        type Bad<'a> = (&'a [(&'a str, &'a str)], &'a serde_json::Value, &'a str);
        let bad: [Bad<'_>; 4] = [
            (&[(ISSUER, "a"), (CLUSTER_ISSUER, "b")], &tls, "not both"),
            (&[(ISSUER, "a"), (KEY_SIZE, "big")], &tls, "not a number"),
            (&[(ISSUER, "a"), (KEY_ALGORITHM, "DSA")], &tls, "DSA"),
            (&[(ISSUER, "a")], &json!([{ "hosts": ["a"] }]), "secretName"),
        ];
        for (annotations, tls, says) in bad {
            let error = desired(&ingress(annotations, tls.clone())).unwrap_err();
            assert!(error.contains(says), "{annotations:?}: {error}");
        }
        let cluster = desired(&ingress(&[(CLUSTER_ISSUER, "global")], tls)).unwrap();
        assert_eq!(
            cluster[0].spec.issuer_ref.kind.as_deref(),
            Some("ClusterCaaSIssuer")
        );
    }

    /// The applied Certificate serializes to exactly the JSON written by hand before
    /// (no defaults added: server-side apply claims only the fields set).
    #[test]
    fn applied_body_is_the_spec_as_set() {
        let owner: OwnerReference = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web",
            "uid": "u-1", "controller": true, "blockOwnerDeletion": true
        }))
        .unwrap();
        let tls = json!([{ "hosts": ["a.example"], "secretName": "a-tls" }]);
        let minimal = ingress(&[(CLUSTER_ISSUER, " global ")], tls.clone());
        let want = &desired(&minimal).unwrap()[0];
        assert_eq!(
            serde_json::to_value(certificate_for(&minimal, &owner, want)).unwrap(),
            json!({
                "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate",
                "metadata": {
                    "name": "a-tls",
                    "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE, INGRESS_LABEL: "web" },
                    "ownerReferences": [owner],
                },
                "spec": {
                    "secretName": "a-tls",
                    "issuerRef": { "name": "global", "kind": "ClusterCaaSIssuer" },
                    "dnsNames": ["a.example"],
                },
            })
        );
        let full = ingress(
            &[
                (ISSUER, "ca"),
                (COMMON_NAME, " a.example "),
                (DURATION, "2160h"),
                (RENEW_BEFORE, "720h "),
                (KEY_ALGORITHM, "ed25519"),
            ],
            tls,
        );
        let want = &desired(&full).unwrap()[0];
        assert_eq!(
            serde_json::to_value(&want.spec).unwrap(),
            json!({
                "secretName": "a-tls",
                "issuerRef": { "name": "ca", "kind": "CaaSIssuer" },
                "dnsNames": ["a.example"],
                "commonName": "a.example",
                "duration": "2160h",
                "renewBefore": "720h",
                "privateKey": { "algorithm": "Ed25519" },
            })
        );
    }
}
