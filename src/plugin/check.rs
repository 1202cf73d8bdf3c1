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
//!   URLs' Secrets exist with their keys.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};

use crate::api::{CaaSIssuer, ClusterCaaSIssuer, IssuerSpec};

fn check(name: &str, result: Result<String, String>) -> Value {
    match result {
        Ok(detail) => json!({ "check": name, "ok": true, "detail": detail }),
        Err(problem) => json!({ "check": name, "ok": false, "detail": problem }),
    }
}

async fn secret_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Secret {ns}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {ns}/{name} does not exist"))?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {ns}/{name} has no key {key:?}"))
}

/// The directory, fetched with the issuer's trust settings.
pub(crate) async fn directory(spec: &IssuerSpec) -> Result<(crate::acme::AcmeHttp, Value), String> {
    use std::sync::Arc;
    let stats = Arc::new(crate::acme::AcmeStats::new(
        Default::default(),
        Arc::new(crate::controllers::memory::Memory::default()),
    ));
    let http =
        crate::acme::AcmeHttp::new(spec.ca_bundle.as_deref(), stats).map_err(|e| e.to_string())?;
    let answer = get(&http, spec.server.trim(), "reading the directory: ").await?;
    let (status, body) = (answer.parts.status, answer.body);
    if !status.is_success() {
        return Err(format!("the directory URL answered {status}"));
    }
    let dir: Value = serde_json::from_slice(&body)
        .map_err(|_| "the server URL does not serve an ACME directory (not JSON)".to_string())?;
    if !dir["newAccount"].is_string() {
        return Err("the server URL serves JSON without newAccount: not an ACME directory".into());
    }
    Ok((http, dir))
}

/// GETs `url` with the issuer's trust settings, waiting at most 15 s; `reading` starts
/// the message of an error while reading the body.
async fn get(
    http: &crate::acme::AcmeHttp,
    url: &str,
    reading: &str,
) -> Result<crate::acme::direct::Answer, String> {
    use instant_acme::HttpClient;
    let req = http::Request::get(url)
        .body(instant_acme::BodyWrapper::default())
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(15), http.request(req))
        .await
        .map_err(|_| "no answer within 15 s".to_string())?
        .map_err(|e| crate::acme::AcmeError::from_acme(e).to_string())?;
    crate::acme::direct::read(answer)
        .await
        .map_err(|e| format!("{reading}{e}"))
}

/// GETs `url` (JSON) with the issuer's trust settings.
pub(crate) async fn get_json(http: &crate::acme::AcmeHttp, url: &str) -> Result<Value, String> {
    let answer = get(http, url, "").await?;
    if !answer.parts.status.is_success() {
        return Err(format!("answered {}", answer.parts.status));
    }
    serde_json::from_slice(&answer.body).map_err(|e| e.to_string())
}

/// With `--dns NAME`: the solver the issuer picks for NAME publishes a TXT record at
/// `_acme-challenge.NAME` with a random value (through the same code as a real challenge:
/// provider, CNAME strategy, propagation check), waits until it is served (at most
/// `wait`), and removes it.
async fn dns_round_trip(
    client: &kube::Client,
    handle: &crate::controllers::IssuerHandle,
    dns_name: &str,
    resolvers: crate::solvers::dns01::propagation::Resolvers,
    wait: std::time::Duration,
) -> Result<String, String> {
    use crate::solvers::{Challenge, Readiness, SolveEnv, Solver};
    let solvers = &handle.spec.solvers;
    let i = crate::solvers::select_solver(solvers, dns_name, &Default::default())
        .ok_or_else(|| format!("no solver of the issuer matches {dns_name}"))?;
    let config = &solvers[i];
    if config.dns01.is_none() {
        return Err(format!(
            "solvers[{i}] serves {dns_name} and is not dns01: nothing to write"
        ));
    }
    let settings = crate::solvers::SolverSettings {
        solver_endpoint: crate::solvers::http01::SolverEndpoint { ip: None, port: 0 },
        dns01_resolvers: resolvers,
    };
    let events = crate::shared::events::Recorder::new(client.clone(), "kubectl-caas", None);
    // A Certificate that exists only here: the record is published without its cleanup
    // guard and removed below.
    let mut cert = crate::api::Certificate::new(
        "caas-check",
        crate::api::CertificateSpec {
            dns_names: vec![dns_name.to_string()],
            ..Default::default()
        },
    );
    cert.metadata.namespace = Some(handle.secret_namespace.clone());
    let env = SolveEnv {
        deps: crate::solvers::Deps {
            client,
            settings: &settings,
            events: &events,
        },
        cert: &cert,
        issuer: handle,
        config,
    };
    let random: String = (0..24)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    let challenge = Challenge {
        dns_name,
        token: "caas-check",
        key_authorization: &random,
    };
    let dns = crate::solvers::dns01::Dns01;
    crate::solvers::dns01::publish_unguarded(&env, challenge)
        .await
        .map_err(|e| format!("writing the TXT record: {e}"))?;
    let started = std::time::Instant::now();
    let served = loop {
        match dns.ready(&env, challenge).await {
            Ok(Readiness::Ready) => break Ok(started.elapsed()),
            Ok(Readiness::Waiting(_)) if started.elapsed() < wait => {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Ok(Readiness::Waiting(what)) => break Err(format!("after {wait:?}: {what}")),
            Err(e) => break Err(e.to_string()),
        }
    };
    let removed = dns.cleanup(&env, challenge).await;
    let served = served?;
    removed.map_err(|e| format!("the record was served but could not be removed: {e}"))?;
    Ok(format!(
        "solvers[{i}] wrote _acme-challenge.{dns_name} TXT, served after {:.1}s, removed",
        served.as_secs_f64()
    ))
}

/// Runs the checks; the report's `ready` is whether all passed.
pub async fn issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster: bool,
    operator_namespace: &str,
    dns: Option<(&str, crate::solvers::dns01::propagation::Resolvers)>,
) -> anyhow::Result<Value> {
    let (handle, kind) = match cluster {
        true => {
            let i = Api::<ClusterCaaSIssuer>::all(client.clone())
                .get_opt(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no ClusterCaaSIssuer {name}"))?;
            let mut h = crate::controllers::IssuerHandle::from_namespaced(&CaaSIssuer::new(
                name,
                i.spec.0.clone(),
            ));
            h.kind = crate::controllers::IssuerKind::Cluster;
            h.secret_namespace = operator_namespace.to_string();
            (h, "ClusterCaaSIssuer")
        }
        false => {
            let i = Api::<CaaSIssuer>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no CaaSIssuer {name} in namespace {ns}"))?;
            (
                crate::controllers::IssuerHandle::from_namespaced(&i),
                "CaaSIssuer",
            )
        }
    };
    let (spec, secret_ns) = (handle.spec.clone(), handle.secret_namespace.clone());
    let mut checks = Vec::new();
    let dir = directory(&spec).await;
    checks.push(check(
        "directory",
        dir.as_ref()
            .map(|_| format!("{} answers, TLS verified", spec.server))
            .map_err(|e| format!("{e}: check server, DNS, proxies and caBundle")),
    ));
    if let Some(profile) = &spec.profile {
        let offered = dir
            .as_ref()
            .ok()
            .and_then(|(_, d)| d["meta"]["profiles"].as_object().cloned())
            .unwrap_or_default();
        checks.push(check(
            "profile",
            if offered.contains_key(profile) {
                Ok(format!("the CA offers profile {profile}"))
            } else {
                Err(format!(
                    "the CA does not offer profile {profile} (offered: {:?})",
                    offered.keys().collect::<Vec<_>>()
                ))
            },
        ));
    }
    if let Some(eab) = &spec.external_account_binding {
        let r = &eab.key_secret_ref;
        let result = async {
            if eab.key_id.trim().is_empty() {
                return Err("externalAccountBinding.keyID is empty".to_string());
            }
            let raw = secret_key(client, &secret_ns, &r.name, &r.key).await?;
            let key = crate::acme::decode_eab_hmac(&raw).map_err(|e| e.to_string())?;
            let alg = crate::acme::MacAlgorithm::parse(eab.key_algorithm.as_deref())?;
            if key.len() < alg.min_key_len() {
                return Err(format!(
                    "the HMAC key has {} bytes; {} needs at least {} (RFC 7518)",
                    key.len(),
                    format!("{alg:?}").to_uppercase(),
                    alg.min_key_len()
                ));
            }
            Ok(format!(
                "key ID {}, HMAC in Secret {}/{} key {} ({} bytes, {}; not shown)",
                eab.key_id,
                secret_ns,
                r.name,
                r.key,
                key.len(),
                format!("{alg:?}").to_uppercase()
            ))
        }
        .await;
        checks.push(check("eab", result));
    }
    let account = async {
        let key_pem = secret_key(
            client,
            &secret_ns,
            &spec.private_key_secret_ref.name,
            "tls.key",
        )
        .await
        .map_err(|e| format!("{e}: the operator creates and registers it when it first runs"))?;
        let key = crate::acme::AccountKey::from_pem(&String::from_utf8_lossy(&key_pem))
            .map_err(|e| e.to_string())?;
        let (http, _) = dir.as_ref().map_err(|e| format!("no directory: {e}"))?;
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
    .await;
    checks.push(check("account", account));
    let mut refs = Vec::new();
    super::diagnose::secret_refs_of(
        &serde_json::to_value(&spec.solvers).unwrap_or_default(),
        &mut refs,
    );
    if let Some(n) = &spec.notify {
        super::diagnose::secret_refs_of(&serde_json::to_value(n).unwrap_or_default(), &mut refs);
    }
    for (secret, key) in refs {
        let result = match &key {
            Some(k) => secret_key(client, &secret_ns, &secret, k)
                .await
                .map(|_| format!("Secret {secret_ns}/{secret} key {k} is there")),
            None => Api::<Secret>::namespaced(client.clone(), &secret_ns)
                .get_opt(&secret)
                .await
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    s.map(|_| format!("Secret {secret_ns}/{secret} is there"))
                        .ok_or_else(|| format!("Secret {secret_ns}/{secret} does not exist"))
                }),
        };
        checks.push(check("secret", result));
    }
    if let Some((dns_name, resolvers)) = dns {
        let wait = std::time::Duration::from_secs(120);
        checks.push(check(
            "dns",
            dns_round_trip(client, &handle, dns_name, resolvers, wait).await,
        ));
    }
    let ok = checks.iter().all(|c| c["ok"] == true);
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            format!(
                "{}: {}",
                c["check"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    Ok(json!({
        "kind": kind,
        "name": name,
        "namespace": if cluster { String::new() } else { ns.to_string() },
        "ready": ok,
        "checks": checks,
        "verdict": if ok { "READY: every check passed".to_string() } else { format!("NOT READY: {}", failed.join("; ")) },
    }))
}

/// The text of `check issuer`.
pub fn render(r: &Value) -> String {
    let mut out = format!(
        "Checking {} {}\n",
        r["kind"].as_str().unwrap_or(""),
        r["name"].as_str().unwrap_or("")
    );
    for c in r["checks"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<6} {:<10} {}\n",
            if c["ok"] == true { "ok" } else { "FAILED" },
            c["check"].as_str().unwrap_or(""),
            c["detail"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "Verdict: {}\n",
        r["verdict"].as_str().unwrap_or("")
    ));
    out
}
