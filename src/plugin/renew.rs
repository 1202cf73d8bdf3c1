//! `kubectl caas renew` and `revoke`: the only verbs that change anything.

use serde::Serialize;

use super::report::Report;

/// The report of `renew`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RenewReport {
    /// When the renewal was asked for (the annotation's value).
    pub at: String,
    pub namespace: String,
    /// Always true: a Certificate that cannot be annotated is an error.
    pub ready: bool,
    /// The Certificates annotated.
    pub renewed: Vec<String>,
}

impl Report for RenewReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

/// The text of `renew`: one line per Certificate.
pub fn render_renew(r: &RenewReport) -> String {
    if r.renewed.is_empty() {
        return "no Certificate matched\n".to_string();
    }
    let ns = &r.namespace;
    r.renewed
        .iter()
        .map(|n| format!("renewal requested: Certificate {ns}/{n}\n"))
        .collect()
}

/// Sets `caas.dev/renew` on one Certificate, every one, or those matching `selector`.
pub async fn renew(
    client: &kube::Client,
    ns: &str,
    name: Option<&str>,
    all: bool,
    selector: Option<&str>,
) -> anyhow::Result<RenewReport> {
    use kube::ResourceExt;
    let api: kube::Api<crate::api::Certificate> = kube::Api::namespaced(client.clone(), ns);
    let names: Vec<String> = match (name, all, selector) {
        (Some(n), _, _) => vec![n.to_string()],
        (None, true, _) => api
            .list_metadata(&Default::default())
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect(),
        (None, false, Some(sel)) => api
            .list_metadata(&kube::api::ListParams::default().labels(sel))
            .await?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect(),
        (None, false, None) => anyhow::bail!("name a Certificate, or use --all or -l"),
    };
    let now = jiff::Timestamp::now().to_string();
    let patch =
        crate::shared::patch::Annotations::new([(crate::decide::RENEW_ANNOTATION, now.as_str())]);
    let params = crate::shared::patch::params(crate::shared::PLUGIN_FIELD_MANAGER);
    for n in &names {
        api.patch(n, &params, &patch.patch())
            .await
            .map_err(|e| anyhow::anyhow!("Certificate {ns}/{n}: {e}"))?;
    }
    Ok(RenewReport {
        at: now,
        namespace: ns.to_string(),
        ready: true,
        renewed: names,
    })
}

/// The report of `revoke`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeReport {
    pub name: String,
    pub namespace: String,
    /// Always true: a failed revocation or renewal is an error.
    pub ready: bool,
    pub revoked_serial: String,
}

impl Report for RevokeReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

/// The text of `revoke`.
pub fn render_revoke(r: &RevokeReport) -> String {
    format!(
        "revoked serial {} of Certificate {}/{}; renewal requested\n",
        r.revoked_serial, r.namespace, r.name
    )
}

/// Revokes the Certificate's current certificate at its CA, then renews it; for key
/// compromise the key is named in `caas.dev/compromised-key` (in the same write as the
/// renewal), so it is never used again, whatever the rotation policy.
pub async fn revoke(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
    cluster_resource_namespace: &str,
) -> anyhow::Result<RevokeReport> {
    let why = super::revoke::parse_reason(reason)?;
    let compromised = matches!(why, instant_acme::RevocationReason::KeyCompromise);
    let (serial, fingerprint) =
        super::revoke::revoke(client, ns, name, why, cluster_resource_namespace).await?;
    if compromised {
        let now = jiff::Timestamp::now().to_string();
        let patch = crate::shared::patch::Annotations::new([
            (crate::decide::RENEW_ANNOTATION, now.as_str()),
            (
                crate::decide::COMPROMISED_KEY_ANNOTATION,
                fingerprint.as_str(),
            ),
        ]);
        let params = crate::shared::patch::params(crate::shared::PLUGIN_FIELD_MANAGER);
        let api: kube::Api<crate::api::Certificate> = kube::Api::namespaced(client.clone(), ns);
        api.patch(name, &params, &patch.patch())
            .await
            .map_err(|e| anyhow::anyhow!("Certificate {ns}/{name}: {e}"))?;
    } else {
        renew(client, ns, Some(name), false, None).await?;
    }
    Ok(RevokeReport {
        name: name.to_string(),
        namespace: ns.to_string(),
        ready: true,
        revoked_serial: serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_reports_keep_their_json_shape_and_text() {
        let r = RenewReport {
            at: "2026-11-29T10:00:00Z".into(),
            namespace: "ns".into(),
            ready: true,
            renewed: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            crate::plugin::report::as_printed(&r),
            json!({ "ready": true, "namespace": "ns", "renewed": ["a", "b"], "at": "2026-11-29T10:00:00Z" })
        );
        assert_eq!(
            render_renew(&r),
            "renewal requested: Certificate ns/a\nrenewal requested: Certificate ns/b\n"
        );
        let none = RenewReport {
            renewed: vec![],
            ..r
        };
        assert_eq!(render_renew(&none), "no Certificate matched\n");
        let r = RevokeReport {
            name: "web".into(),
            namespace: "ns".into(),
            ready: true,
            revoked_serial: "0a".into(),
        };
        assert_eq!(
            crate::plugin::report::as_printed(&r),
            json!({ "ready": true, "namespace": "ns", "name": "web", "revokedSerial": "0a" })
        );
        assert_eq!(
            render_revoke(&r),
            "revoked serial 0a of Certificate ns/web; renewal requested\n"
        );
    }
}
