//! `kubectl caas check issuer NAME`: a live probe that issues nothing. Each check is a
//! line with ok / FAILED and what to do:
//!
//! * the ACME directory answers, TLS verified against `caBundle` (or the system's roots),
//!   and offers the `profile` asked for;
//! * the EAB key ID is set and the HMAC Secret and key exist and decode, long enough for
//!   the algorithm;
//! * the account key Secret exists and the CA knows the account (`onlyReturnExisting`:
//!   nothing is registered, so a single-use EAB key stays unused; without a key the
//!   operator registers when it first runs);
//! * every Secret the solvers name (TSIG, DNS API credentials) and the notification
//!   URLs' Secrets exist with their keys;
//! * the credential source the operator signed in with for each cloud DNS-01 solver
//!   (from the issuer's `status.cloudCredentials`; never a credential);
//! * with `--dns NAME`, a test TXT record round trip ([`dns`]) and the CAA records that
//!   govern NAME, judged for this CA, account and validation method ([`caa`]).

mod caa;
mod dns;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde::Serialize;
use serde_json::Value;

use crate::api::IssuerSpec;
use crate::api::issuer::ExternalAccountBinding;
use crate::plugin::probe::{self, secret_key};
use crate::plugin::report::Report;
use crate::shared::IssuerHandle;
use crate::shared::settings::Resolvers;

/// How long `--dns` waits for the test record to be served.
const DNS_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The report of `check issuer`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    pub checks: Vec<CheckItem>,
    pub kind: &'static str,
    pub name: String,
    /// Empty for a ClusterCaaSIssuer.
    pub namespace: String,
    pub ready: bool,
    pub verdict: String,
}

impl Report for CheckReport {
    fn ready(&self) -> bool {
        self.ready
    }
}

/// One check: its name, whether it passed, and what was found or what to do.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckItem {
    pub check: &'static str,
    pub detail: String,
    pub ok: bool,
}

impl CheckItem {
    fn new(check: &'static str, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(detail) => (true, detail),
            Err(problem) => (false, problem),
        };
        CheckItem { check, detail, ok }
    }
}

impl CheckReport {
    /// Ready when every check passed; the verdict names those that failed.
    pub fn new(kind: &'static str, name: &str, namespace: &str, checks: Vec<CheckItem>) -> Self {
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        let ready = failed.is_empty();
        CheckReport {
            checks,
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
            ready,
            verdict: if ready {
                "READY: every check passed".to_string()
            } else {
                format!("NOT READY: {}", failed.join("; "))
            },
        }
    }
}

/// Runs the checks; the report's `ready` is whether all passed.
pub async fn issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    operator_namespace: &str,
    dns: Option<(&str, Resolvers)>,
) -> anyhow::Result<CheckReport> {
    let (handle, kind) = load(client, ns, name, cluster, operator_namespace).await?;
    let (spec, secret_ns) = (&handle.spec, handle.secret_namespace.as_str());
    let dir = probe::directory(spec).await;
    let mut checks = vec![CheckItem::new(
        "directory",
        dir.as_ref()
            .map(|_| format!("{} answers, TLS verified", spec.server))
            .map_err(|e| format!("{e}: check server, DNS, proxies and caBundle")),
    )];
    if let Some(profile) = &spec.profile {
        let dir = dir.as_ref().ok().map(|(_, d)| d);
        checks.push(CheckItem::new("profile", profile_offered(profile, dir)));
    }
    if let Some(eab) = &spec.external_account_binding {
        checks.push(CheckItem::new("eab", eab_key(client, secret_ns, eab).await));
    }
    let http = dir.as_ref().map(|(http, _)| http);
    let account = account_known(client, spec, secret_ns, http).await;
    checks.push(CheckItem::new("account", account));
    for (secret, key) in named_secrets(spec) {
        let found = secret_present(client, secret_ns, &secret, key.as_deref()).await;
        checks.push(CheckItem::new("secret", found));
    }
    checks.extend(cloud_credentials(handle.status.as_ref()));
    if let Some((dns_name, resolvers)) = dns {
        let directory = dir.as_ref().ok().map(|(_, d)| d);
        let caa = caa::check(&handle, directory, dns_name, &resolvers).await;
        let round_trip = dns::round_trip(client, &handle, dns_name, resolvers, DNS_WAIT).await;
        checks.push(CheckItem::new("dns", round_trip));
        checks.push(CheckItem::new("caa", caa));
    }
    let namespace = if cluster { "" } else { ns };
    Ok(CheckReport::new(kind, name, namespace, checks))
}

/// The issuer as the controller sees it (a ClusterCaaSIssuer's Secrets in the operator's
/// namespace), and its kind.
async fn load(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    operator_namespace: &str,
) -> anyhow::Result<(IssuerHandle, &'static str)> {
    let found = probe::read_issuer(client, probe::IssuerAt { ns, name, cluster }).await?;
    let handle = IssuerHandle {
        kind: match cluster {
            true => crate::shared::IssuerKind::Cluster,
            false => crate::shared::IssuerKind::Namespaced,
        },
        name: name.to_string(),
        secret_namespace: match cluster {
            true => operator_namespace.to_string(),
            false => found.namespace,
        },
        spec: found.spec,
        status: found.status,
        generation: None,
        annotations: Default::default(),
    };
    Ok((handle, found.kind))
}

/// What the operator reported signing in with for each cloud DNS-01 solver (its own
/// identity, not this kubectl's: the source is read from the issuer's status).
fn cloud_credentials(status: Option<&crate::api::issuer::IssuerStatus>) -> Vec<CheckItem> {
    let entries = status
        .map(|s| s.cloud_credentials.as_slice())
        .unwrap_or_default();
    entries
        .iter()
        .map(|c| {
            let at = format!("solvers[{}].dns01.{}", c.solver, c.provider);
            let result = match (&c.source, &c.error) {
                (Some(source), _) => Ok(format!("{at} signs in with {source}")),
                (None, Some(error)) => Err(format!(
                    "{at} cannot sign in: {error}: check the credentials it names, or the operator's service account (IRSA, Pod Identity, Workload Identity)"
                )),
                (None, None) => Err(format!("{at}: no credential source reported yet")),
            };
            CheckItem::new("credentials", result)
        })
        .collect()
}

/// Whether the directory (when it answered) offers `profile`.
fn profile_offered(profile: &str, dir: Option<&Value>) -> Result<String, String> {
    let offered = dir
        .and_then(|d| d["meta"]["profiles"].as_object().cloned())
        .unwrap_or_default();
    if offered.contains_key(profile) {
        Ok(format!("the CA offers profile {profile}"))
    } else {
        Err(format!(
            "the CA does not offer profile {profile} (offered: {:?})",
            offered.keys().collect::<Vec<_>>()
        ))
    }
}

/// The EAB key ID is set, and the HMAC in its Secret decodes and is long enough.
async fn eab_key(
    client: &kube::Client,
    secret_ns: &str,
    eab: &ExternalAccountBinding,
) -> Result<String, String> {
    if eab.key_id.trim().is_empty() {
        return Err("externalAccountBinding.keyID is empty".to_string());
    }
    let r = &eab.key_secret_ref;
    let raw = secret_key(client, secret_ns, &r.name, &r.key).await?;
    eab_hmac(eab, secret_ns, &raw)
}

/// Whether `raw` (the Secret's value) is an HMAC key good for the EAB's algorithm; the
/// detail never shows the key.
fn eab_hmac(eab: &ExternalAccountBinding, secret_ns: &str, raw: &[u8]) -> Result<String, String> {
    let key = crate::acme::decode_eab_hmac(raw).map_err(|e| e.to_string())?;
    let alg = crate::acme::MacAlgorithm::parse(eab.key_algorithm.as_deref())?;
    let alg_name = format!("{alg:?}").to_uppercase();
    if key.len() < alg.min_key_len() {
        return Err(format!(
            "the HMAC key has {} bytes; {alg_name} needs at least {} (RFC 7518)",
            key.len(),
            alg.min_key_len()
        ));
    }
    let r = &eab.key_secret_ref;
    Ok(format!(
        "key ID {}, HMAC in Secret {secret_ns}/{} key {} ({} bytes, {alg_name}; not shown)",
        eab.key_id,
        r.name,
        r.key,
        key.len(),
    ))
}

/// The account key Secret exists and the CA knows its account (registering nothing).
async fn account_known(
    client: &kube::Client,
    spec: &IssuerSpec,
    secret_ns: &str,
    http: Result<&crate::acme::AcmeHttp, &String>,
) -> Result<String, String> {
    let key_pem = secret_key(
        client,
        secret_ns,
        &spec.private_key_secret_ref.name,
        "tls.key",
    )
    .await
    .map_err(|e| format!("{e}: the operator creates and registers it when it first runs"))?;
    let key = crate::acme::AccountKey::from_pem(&String::from_utf8_lossy(&key_pem))
        .map_err(|e| e.to_string())?;
    let http = http.map_err(|e| format!("no directory: {e}"))?;
    let direct = crate::acme::direct::Direct::new(http, &spec.server, key)
        .await
        .map_err(|e| crate::acme::AcmeError::from_acme(e).to_string())?;
    match direct.find_account().await {
        Ok(Some(url)) => Ok(format!("the CA knows the account {url}")),
        Ok(None) => Err(
            "the CA does not know this account key: the operator registers it (with EAB) \
             on its next look"
                .to_string(),
        ),
        Err(e) => Err(crate::acme::AcmeError::from_acme(e).to_string()),
    }
}

/// The Secrets the solvers and the notifications name: (name, key).
fn named_secrets(spec: &IssuerSpec) -> Vec<(String, Option<String>)> {
    let mut refs = Vec::new();
    probe::secret_refs_of(
        &serde_json::to_value(&spec.solvers).unwrap_or_default(),
        &mut refs,
    );
    if let Some(n) = &spec.notify {
        probe::secret_refs_of(&serde_json::to_value(n).unwrap_or_default(), &mut refs);
    }
    refs
}

/// Secret `secret_ns/secret` exists (with `key`, when one is named).
async fn secret_present(
    client: &kube::Client,
    secret_ns: &str,
    secret: &str,
    key: Option<&str>,
) -> Result<String, String> {
    match key {
        Some(k) => secret_key(client, secret_ns, secret, k)
            .await
            .map(|_| format!("Secret {secret_ns}/{secret} key {k} is there")),
        None => Api::<Secret>::namespaced(client.clone(), secret_ns)
            .get_opt(secret)
            .await
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.map(|_| format!("Secret {secret_ns}/{secret} is there"))
                    .ok_or_else(|| format!("Secret {secret_ns}/{secret} does not exist"))
            }),
    }
}

/// The text of `check issuer`.
pub fn render(r: &CheckReport) -> String {
    let mut out = format!("Checking {} {}\n", r.kind, r.name);
    for c in &r.checks {
        out.push_str(&format!(
            "  {:<6} {:<10} {}\n",
            if c.ok { "ok" } else { "FAILED" },
            c.check,
            c.detail
        ));
    }
    out.push_str(&format!("Verdict: {}\n", r.verdict));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The keys and values the untyped report had, and its text.
    #[test]
    fn the_report_keeps_its_json_shape_and_text() {
        let r = CheckReport::new(
            "CaaSIssuer",
            "pebble",
            "ns",
            vec![
                CheckItem::new(
                    "directory",
                    Ok("https://ca/dir answers, TLS verified".into()),
                ),
                CheckItem::new(
                    "account",
                    Err("the CA does not know this account key".into()),
                ),
                CheckItem::new("secret", Err("Secret ns/tsig does not exist".into())),
            ],
        );
        let verdict = "NOT READY: account: the CA does not know this account key; \
                       secret: Secret ns/tsig does not exist";
        let want = json!({
            "kind": "CaaSIssuer", "name": "pebble", "namespace": "ns", "ready": false,
            "checks": [
                { "check": "directory", "ok": true, "detail": "https://ca/dir answers, TLS verified" },
                { "check": "account", "ok": false, "detail": "the CA does not know this account key" },
                { "check": "secret", "ok": false, "detail": "Secret ns/tsig does not exist" },
            ],
            "verdict": verdict,
        });
        assert_eq!(crate::plugin::report::as_printed(&r), want);
        assert_eq!(
            render(&r),
            format!(
                "Checking CaaSIssuer pebble
  ok     directory  https://ca/dir answers, TLS verified
  FAILED account    the CA does not know this account key
  FAILED secret     Secret ns/tsig does not exist
Verdict: {verdict}\n"
            )
        );
        let ok = CheckReport::new("ClusterCaaSIssuer", "le", "", vec![]);
        assert!(ok.ready);
        assert_eq!(ok.verdict, "READY: every check passed");
    }

    #[test]
    fn cloud_credential_sources_come_from_the_operators_status() {
        use crate::api::issuer::{CloudCredentials, IssuerStatus};
        let status = IssuerStatus {
            cloud_credentials: vec![
                CloudCredentials {
                    solver: 0,
                    provider: "route53".into(),
                    source: Some(
                        "AWS: web identity (IRSA) for role arn:aws:iam::1:role/dns".into(),
                    ),
                    error: None,
                },
                CloudCredentials {
                    solver: 2,
                    provider: "azureDNS".into(),
                    source: None,
                    error: Some("could not sign in to Azure: AADSTS700016".into()),
                },
            ],
            ..IssuerStatus::default()
        };
        let items = cloud_credentials(Some(&status));
        assert!(
            items[0].ok
                && items[0]
                    .detail
                    .contains("solvers[0].dns01.route53 signs in with AWS: web identity (IRSA)")
        );
        assert!(!items[1].ok && items[1].detail.contains("AADSTS700016"));
        assert!(cloud_credentials(None).is_empty());
    }

    #[test]
    fn the_profile_must_be_offered() {
        let dir = json!({ "meta": { "profiles": { "tlsserver": "", "classic": "" } } });
        assert_eq!(
            profile_offered("classic", Some(&dir)),
            Ok("the CA offers profile classic".to_string())
        );
        assert_eq!(
            profile_offered("short", Some(&dir)),
            Err(
                r#"the CA does not offer profile short (offered: ["classic", "tlsserver"])"#
                    .to_string()
            )
        );
        assert_eq!(
            profile_offered("short", None),
            Err("the CA does not offer profile short (offered: [])".to_string())
        );
    }

    #[test]
    fn the_hmac_must_decode_and_be_long_enough() {
        let eab: ExternalAccountBinding = serde_json::from_value(json!({
            "keyID": "kid-1", "keySecretRef": { "name": "eab", "key": "hmac" }, "keyAlgorithm": "HS384",
        }))
        .unwrap();
        // 32 bytes: enough for HS256, not for HS384.
        let short = "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZS1mb3I";
        assert_eq!(
            eab_hmac(&eab, "ns", short.as_bytes()),
            Err("the HMAC key has 32 bytes; HS384 needs at least 48 (RFC 7518)".to_string())
        );
        let long = "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZS1mb3ItdGhpcy1jYS1hbmQtbG9uZ2Vy";
        let ok = eab_hmac(&eab, "ns", long.as_bytes()).unwrap();
        assert_eq!(
            ok,
            "key ID kid-1, HMAC in Secret ns/eab key hmac (51 bytes, HS384; not shown)"
        );
        assert!(!ok.contains(long));
        assert!(eab_hmac(&eab, "ns", b"").is_err());
    }

    #[test]
    fn the_solvers_and_notifications_secrets_are_checked() {
        let spec: IssuerSpec = serde_json::from_value(json!({
            "server": "https://ca/dir",
            "privateKeySecretRef": { "name": "account" },
            "externalAccountBinding": { "keyID": "k", "keySecretRef": { "name": "eab", "key": "hmac" } },
            "solvers": [{ "dns01": { "rfc2136": { "nameserver": "127.0.0.1:53", "tsigKeyName": "k",
                "tsigSecretSecretRef": { "name": "tsig", "key": "secret" } } } }],
            "notify": { "webhooks": [{ "urlSecretRef": { "name": "hooks", "key": "slack" } }] },
        }))
        .unwrap();
        assert_eq!(
            named_secrets(&spec),
            vec![
                ("tsig".to_string(), Some("secret".to_string())),
                ("hooks".to_string(), Some("slack".to_string())),
            ]
        );
    }
}
