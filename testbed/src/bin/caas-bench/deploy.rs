//! `--deploy`: deploy targets under load, against AWS Certificate Manager in moto (IAM
//! authentication on, through the test bed's mirror, which logs each ACM action).
//!
//! * Latency: a Certificate with one ACM target renewed `single_runs` times; each time,
//!   from the new serial seen in its Secret to `status.deployments` saying that serial is
//!   deployed (written right after ACM's `ImportCertificate` answered).
//! * Storm: every burst Certificate given the same ACM target (first imports), then all
//!   renewed at once: time until all renewed and until all re-imported, ACM and API
//!   requests per renewal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::{
    Config, Env, Failure, is_ready, issue_all, machine_busy, metric_sum, proc_usage, stats,
    wait_all,
};

/// The target every measured Certificate names.
const TARGET: &str = "acm";

/// The entry of [`TARGET`] in a Certificate's `status.deployments`.
fn entry(obj: &DynamicObject) -> Option<&Value> {
    let entries = obj.data["status"]["deployments"].as_array()?;
    entries
        .iter()
        .find(|e| e["target"] == format!("DeployTarget/{TARGET}"))
}

/// The serial its entry says is deployed, when `Deployed` is True.
fn deployed_serial(obj: &DynamicObject) -> Option<String> {
    let e = entry(obj)?;
    let ok = (e["conditions"].as_array()?.iter())
        .any(|c| c["type"] == "Deployed" && c["status"] == "True");
    ok.then(|| e["serial"].as_str().map(str::to_string))?
}

/// ACM calls through the mirror so far, by action.
fn acm_calls(moto: &caas_testbed::Moto) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for line in moto.log() {
        let Some(rest) = line.strip_prefix("POST / ") else {
            continue;
        };
        if let Some((action, _)) = rest.split_once(" -> ") {
            *calls.entry(action.to_string()).or_default() += 1;
        }
    }
    calls
}

/// The DeployTarget `acm` in `bench`, with the moto ACM user's keys.
async fn target(env: &Env, moto: &caas_testbed::Moto) -> Result<(), Failure> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "bench");
    let keys = &moto.acm_user;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "aws-acm" }, "stringData": { "secret": keys.secret_access_key }
    }))
    .unwrap();
    let failed = |e: kube::Error| Failure::Other(format!("deploy setup: {e}"));
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(failed)?;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "caas.dev",
        "v1alpha1",
        "DeployTarget",
    ));
    let targets: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "bench", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "DeployTarget", "metadata": { "name": TARGET },
        "spec": { "acm": {
            "region": "us-east-1", "accessKeyID": keys.access_key_id, "apiURL": moto.url,
            "secretAccessKeySecretRef": { "name": "aws-acm", "key": "secret" }
        } }
    }))
    .unwrap();
    targets
        .create(&PostParams::default(), &obj)
        .await
        .map_err(failed)?;
    Ok(())
}

/// Polls `get` every 20 ms until `pick` gives a value, for at most `limit`.
async fn poll<T>(
    what: &str,
    limit: Duration,
    mut get: impl AsyncFnMut() -> Option<T>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = get().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(Failure::Other(format!("{what}: not within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Renews `name` and returns the seconds from its Secret's new serial to that serial
/// deployed.
async fn one_latency(env: &Env, certs: &Api<DynamicObject>, name: &str) -> Result<f64, Failure> {
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "bench");
    let serial_of = async |secrets: &Api<Secret>| {
        let s = secrets.get(&format!("{name}-tls")).await.ok()?;
        s.metadata.annotations?.get("caas.dev/serial").cloned()
    };
    let before = serial_of(&secrets).await;
    let at = format!("latency-{}", caas_testbed::unique_name("r"));
    let patch = json!({ "metadata": { "annotations": { "caas.dev/renew": at } } });
    certs
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| Failure::Other(format!("renewing {name}: {e}")))?;
    let limit = Duration::from_secs(120);
    let serial = poll("the renewed Secret", limit, async || {
        serial_of(&secrets)
            .await
            .filter(|s| Some(s) != before.as_ref())
    })
    .await?;
    let seen = Instant::now();
    poll("the renewal deployed", limit, async || {
        let obj = certs.get(name).await.ok()?;
        (deployed_serial(&obj).as_deref() == Some(serial.as_str())).then_some(())
    })
    .await?;
    Ok(seen.elapsed().as_secs_f64())
}

/// The rows of `--deploy` (see the module's text); `names` are the burst's Certificates.
pub async fn run(
    env: &Env,
    cfg: &Config,
    names: &[String],
    metrics: u16,
    operator: &mut caas_testbed::Proc,
    rows: &mut Vec<(String, String)>,
) -> Result<(), Failure> {
    eprintln!("==> deploy targets: starting moto");
    let moto = caas_testbed::shared_moto();
    target(env, moto).await?;
    let certs: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), "bench", &env.certs_ar);
    // Latency.
    let name = "deploy-latency".to_string();
    issue_all(
        env,
        &["http"],
        std::slice::from_ref(&name),
        "d.",
        operator,
        Duration::from_secs(120),
    )
    .await?;
    let deploy_to = json!({ "spec": { "deployTo": [{ "name": TARGET }] } });
    certs
        .patch(&name, &PatchParams::default(), &Patch::Merge(&deploy_to))
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    poll("the first import", Duration::from_secs(120), async || {
        deployed_serial(&certs.get(&name).await.ok()?)
    })
    .await?;
    let mut times = Vec::new();
    for _ in 0..cfg.single_runs {
        times.push(one_latency(env, &certs, &name).await?);
    }
    let (p50, p90) = stats(times);
    rows.push((
        format!(
            "deploy: Secret renewed -> ACM re-import done (p50 / p90 of {}, moto)",
            cfg.single_runs
        ),
        format!("{p50:.2} s / {p90:.2} s"),
    ));
    storm(env, &certs, names, metrics, moto, operator, rows).await
}

/// All `names` given the ACM target, then all renewed at once.
async fn storm(
    env: &Env,
    certs: &Api<DynamicObject>,
    names: &[String],
    metrics: u16,
    moto: &caas_testbed::Moto,
    operator: &mut caas_testbed::Proc,
    rows: &mut Vec<(String, String)>,
) -> Result<(), Failure> {
    let n = names.len() as f64;
    let wanted = names.iter().cloned().collect();
    let calls0 = acm_calls(moto);
    let started = Instant::now();
    let mut stream = watcher(certs.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let deploy_to = json!({ "spec": { "deployTo": [{ "name": TARGET }] } });
    patch_all(certs, names, &deploy_to).await?;
    let limit = Duration::from_secs(3600);
    let done = |obj: &DynamicObject| deployed_serial(obj).is_some();
    let took = wait_all(
        env,
        &mut stream,
        &wanted,
        done,
        "imported",
        started,
        limit,
        operator,
    )
    .await?;
    let calls1 = acm_calls(moto);
    rows.push((
        format!(
            "deploy storm: {} Ready Certificates given one ACM target, until all imported",
            names.len()
        ),
        format!(
            "{:.1} s ({:.1} imports/s)",
            took.as_secs_f64(),
            n / took.as_secs_f64()
        ),
    ));
    // All renewed at once: the Secret first (Ready with a new revision), ACM after.
    let revisions = revisions(certs).await?;
    let kube0 = metric_sum(metrics, "caas_kube_api_requests_total", "");
    let (cpu0, busy0) = (proc_usage(operator.pid()).0, machine_busy());
    let started = Instant::now();
    let at = format!("deploy-storm-{}", caas_testbed::unique_name("s"));
    let renew = json!({ "metadata": { "annotations": { "caas.dev/renew": at } } });
    let mut stream = watcher(certs.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    patch_all(certs, names, &renew).await?;
    let renewed = |obj: &DynamicObject| {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let rev = obj.data["status"]["revision"].as_i64();
        is_ready(obj) && rev > revisions.get(&name).and_then(|(r, _)| *r)
    };
    let all_renewed = wait_all(
        env,
        &mut stream,
        &wanted,
        renewed,
        "renewed",
        started,
        limit,
        operator,
    )
    .await?;
    // Re-imported: the serial deployed is not the one before the storm (the renewal's).
    let current = |obj: &DynamicObject| {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let before = revisions.get(&name).and_then(|(_, s)| s.clone());
        renewed(obj) && deployed_serial(obj).is_some_and(|s| Some(s) != before)
    };
    let mut stream = watcher(certs.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let all_deployed = wait_all(
        env,
        &mut stream,
        &wanted,
        current,
        "re-imported",
        started,
        limit,
        operator,
    )
    .await?;
    let kube = metric_sum(metrics, "caas_kube_api_requests_total", "") - kube0;
    let (cpu, busy) = (proc_usage(operator.pid()).0 - cpu0, machine_busy() - busy0);
    let calls2 = acm_calls(moto);
    let per = |action: &str, a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>| {
        (b.get(action).copied().unwrap_or(0) - a.get(action).copied().unwrap_or(0)) as f64 / n
    };
    rows.push((
        format!("deploy storm: all {} renewed at once, one ACM target each", names.len()),
        format!(
            "all Secrets renewed in {:.1} s, all re-imported in {:.1} s; operator {cpu:.1} CPU s (whole machine {busy:.1}); per renewal: {:.1} ImportCertificate, {:.1} DescribeCertificate, {:.1} API requests (first imports: {:.1} Import, {:.1} Describe)",
            all_renewed.as_secs_f64(),
            all_deployed.as_secs_f64(),
            per("ImportCertificate", &calls1, &calls2),
            per("DescribeCertificate", &calls1, &calls2),
            kube / n,
            per("ImportCertificate", &calls0, &calls1),
            per("DescribeCertificate", &calls0, &calls1),
        ),
    ));
    Ok(())
}

/// Each Certificate's `status.revision` and deployed serial now.
type Before = BTreeMap<String, (Option<i64>, Option<String>)>;

async fn revisions(certs: &Api<DynamicObject>) -> Result<Before, Failure> {
    let list = certs
        .list(&Default::default())
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    let now = |o: &DynamicObject| (o.data["status"]["revision"].as_i64(), deployed_serial(o));
    Ok((list.items.iter())
        .map(|o| (o.metadata.name.clone().unwrap_or_default(), now(o)))
        .collect())
}

/// Merge-patches every Certificate in `names` with `patch`, 32 at a time.
async fn patch_all(
    certs: &Api<DynamicObject>,
    names: &[String],
    patch: &Value,
) -> Result<(), Failure> {
    let results: Vec<_> = futures::stream::iter(names.iter().map(|name| {
        let certs = certs.clone();
        async move {
            certs
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    match results.into_iter().find_map(Result::err) {
        Some(e) => Err(Failure::Other(format!("patching Certificates: {e}"))),
        None => Ok(()),
    }
}
