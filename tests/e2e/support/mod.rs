//! What the operator's integration tests share: installing the CRDs, starting the real
//! operator binary against the test bed, issuer manifests, waiting, and checking logs
//! for secrets.

use std::process::Command;
use std::time::{Duration, Instant};

use caas_operator::api::{CaaSIssuer, Certificate};
use caas_testbed::{ApiServer, Pebble, PebbleOptions, Proc, free_port, scratch_dir, shared_bind};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

/// Installs the generated CRDs once per test binary and waits until they are served.
pub async fn install_crds(_client: &kube::Client) {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let api_server = caas_testbed::shared_apiserver();
    // On a thread and runtime of its own: tests run on different runtimes, and a
    // client must not outlive the runtime that made it.
    ONCE.get_or_init(|| {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async { install_crds_on(&api_server.client().await).await })
        })
        .join()
        .expect("installing CRDs")
    });
}

/// Installs the generated CRDs on the API server `client` talks to (create or replace).
pub async fn install_crds_on(client: &kube::Client) {
    // Gateway API's CRDs as a cluster may have them (test copies, see the test bed).
    caas_testbed::install_gateway_api_crds(client).await;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in caas_operator::api::crds_yaml().split("\n---\n").skip(1) {
        let crd: CustomResourceDefinition = serde_yaml::from_str(doc).expect("CRD YAML");
        let name = crd.metadata.name.clone().unwrap();
        // Create or replace, not server-side apply: the 1.20 API server mangles applied
        // CRDs that have subresources ("per-version schemas may not all be identical").
        match api.get_opt(&name).await.expect("get CRD") {
            None => match api.create(&Default::default(), &crd).await {
                Ok(_) => {}
                Err(e) => panic!("create CRD {name}: {e}"),
            },
            Some(existing) => {
                let mut crd = crd.clone();
                crd.metadata.resource_version = existing.metadata.resource_version.clone();
                api.replace(&name, &Default::default(), &crd)
                    .await
                    .expect("replace CRD");
            }
        }
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in 30 s")
        .expect("watch CRD");
    }
}

/// The operator binary running as a child process, with its log in a file.
pub struct Operator {
    pub proc: Proc,
    pub metrics_port: u16,
    /// Where the CA's HTTP-01 requests arrive: the ingress data plane stand-in, which
    /// routes them through the operator's temporary Ingress / HTTPRoute, Service and
    /// Endpoints to `solver_port`.
    #[allow(dead_code)] // no test reads it today; there to look at when one fails
    pub http01_port: u16,
    /// The operator's own HTTP-01 listener (`--http01-addr`).
    #[allow(dead_code)] // no test reads it today; there to look at when one fails
    pub solver_port: u16,
    pub data_plane: caas_testbed::IngressDataPlaneStandIn,
    args: Vec<String>,
    /// Added to the process's environment.
    env: Vec<(String, String)>,
    kubeconfig: std::path::PathBuf,
    /// A kubeconfig that may read everything in the namespace (events, status, the
    /// operator's Secrets) for the secrets scan when the operator stops.
    pub admin_kubeconfig: std::path::PathBuf,
    dir: std::path::PathBuf,
    runs: u32,
    /// `kubectl get -w` of the Secrets the operator manages in its namespace, for the
    /// whole run: every key the operator makes is known, even one deleted later.
    key_watch: Proc,
}

/// The address the temporary HTTP-01 Endpoints point at in tests (no pods run here; the
/// API server refuses loopback addresses in Endpoints).
pub const TEST_POD_IP: &str = "10.0.0.10";

impl Operator {
    /// Starts `caas-operator run` watching `namespace`, answering HTTP-01 on Pebble's
    /// validation port.
    pub fn start(api: &ApiServer, namespace: &str, pebble: &Pebble) -> Operator {
        let tls = format!("--tls-alpn01-addr=127.0.0.1:{}", pebble.tls_port);
        Self::start_with(api, namespace, pebble.http_port, &[&tls])
    }

    /// Starts `caas-operator run` watching `namespace` with `extra` arguments, and the
    /// ingress data plane stand-in on `http01_port` in front of its HTTP-01 listener.
    pub fn start_with(
        api: &ApiServer,
        namespace: &str,
        http01_port: u16,
        extra: &[&str],
    ) -> Operator {
        Self::start_env(api, namespace, http01_port, extra, &[])
    }

    /// Like [`Operator::start_with`], with `env` added to the process's environment
    /// (ambient cloud credentials: `AWS_ROLE_ARN`, `GCE_METADATA_HOST`, ...).
    pub fn start_env(
        api: &ApiServer,
        namespace: &str,
        http01_port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_full(
            &api.kubeconfig,
            &api.kubeconfig,
            namespace,
            http01_port,
            extra,
            env,
        )
    }

    /// Like [`Operator::start_with`], authenticating with the given kubeconfig.
    pub fn start_as(
        kubeconfig: &std::path::Path,
        namespace: &str,
        http01_port: u16,
        extra: &[&str],
    ) -> Operator {
        let admin = &caas_testbed::shared_apiserver().kubeconfig;
        Self::start_full(admin, kubeconfig, namespace, http01_port, extra, Vec::new())
    }

    /// The operator authenticating with `kubeconfig`; the data plane stand-in reads
    /// routes with `admin_kubeconfig` (of the same API server).
    fn start_full(
        admin_kubeconfig: &std::path::Path,
        kubeconfig: &std::path::Path,
        namespace: &str,
        http01_port: u16,
        extra: &[&str],
        env: Vec<(String, String)>,
    ) -> Operator {
        let metrics_port = free_port();
        let solver_port = free_port();
        let data_plane =
            caas_testbed::IngressDataPlaneStandIn::start(http01_port, namespace, admin_kubeconfig);
        let mut args = vec![
            "run".to_string(),
            format!("--namespace={namespace}"),
            format!("--http01-addr=127.0.0.1:{solver_port}"),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--cluster-resource-namespace={namespace}"),
            format!("--pod-ip={TEST_POD_IP}"),
        ];
        if !extra.iter().any(|a| a.starts_with("--tls-alpn01-addr")) {
            args.push(format!("--tls-alpn01-addr=127.0.0.1:{}", free_port()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let dir = scratch_dir("operator");
        let namespace_arg = format!("--namespace={namespace}");
        let mut watch = Command::new(caas_testbed::tool("kubectl"));
        watch
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["get", "secrets", &namespace_arg, "--watch", "--output=json"])
            .arg("--selector=app.kubernetes.io/managed-by=caas-operator");
        let key_watch = Proc::spawn("kubectl", watch, &dir.join("key-watch.json"), None);
        let mut op = Operator {
            proc: spawn(&args, &env, kubeconfig, &dir, 0),
            metrics_port,
            http01_port,
            solver_port,
            data_plane,
            args,
            env,
            kubeconfig: kubeconfig.to_path_buf(),
            admin_kubeconfig: admin_kubeconfig.to_path_buf(),
            dir,
            runs: 1,
            key_watch,
        };
        op.wait_healthy();
        op
    }

    fn wait_healthy(&mut self) {
        let port = self.metrics_port;
        self.proc
            .wait_until(Duration::from_secs(30), || caas_testbed::port_open(port));
    }

    /// The operator's /metrics text.
    pub fn metrics(&self) -> String {
        let (status, body) =
            caas_testbed::http_get(self.metrics_port, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "/metrics answered {status}");
        body
    }

    /// The identity this process uses in the Lease (hostname-pid).
    pub fn identity(&self) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), self.proc.pid())
    }

    /// SIGKILLs the operator (no cleanup, no lease release).
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts the operator again with the same arguments (a new log file).
    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc = spawn(
            &self.args,
            &self.env,
            &self.kubeconfig,
            &self.dir,
            self.runs,
        );
        self.runs += 1;
        self.wait_healthy();
    }

    /// Everything every run of this operator logged.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for run in 0..self.runs {
            all.push_str(
                &std::fs::read_to_string(self.dir.join(format!("operator-{run}.log")))
                    .unwrap_or_default(),
            );
        }
        all
    }

    /// Fails if any of `secrets` (or the base64 body of a PEM among them) appears in the
    /// logs.
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        let logs = self.logs();
        assert!(
            !logs.is_empty(),
            "the operator logged nothing at all: the check below would be empty"
        );
        for secret in secrets {
            for needle in secret_needles(secret) {
                assert!(
                    !logs.contains(&needle),
                    "the operator log contains secret material ({}...)",
                    &needle[..needle.len().min(12)]
                );
            }
        }
    }
}

impl Drop for Operator {
    /// Every operator run in the suite is checked: nothing it logged, and nothing in the
    /// events and status of its namespace (and of cluster issuers), holds a private key
    /// or any of the secrets in play: the EAB HMAC keys and TSIG secrets the test bed
    /// handed out, and every key the operator made (account keys, TLS keys, next keys,
    /// read back from its Secrets).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.proc.kill();
        let logs = self.logs();
        let ns = self
            .args
            .iter()
            .find_map(|a| a.strip_prefix("--namespace="))
            .expect("tests run the operator for one namespace")
            .to_string();
        let kubectl = |args: &[&str]| -> String {
            let out = Command::new(caas_testbed::tool("kubectl"))
                .arg(format!("--kubeconfig={}", self.admin_kubeconfig.display()))
                .args(args)
                .output()
                .expect("run kubectl");
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let published = kubectl(&[
            "get",
            "events,caasissuers,certificates.caas.dev",
            "-n",
            &ns,
            "-o",
            "json",
        ]) + &kubectl(&["get", "clustercaasissuers", "-o", "json"]);
        // Every key the operator made during the run: the watch listed its Secrets
        // first, then saw each one it wrote, next keys deleted since included.
        self.key_watch.kill();
        let watched = std::fs::read_to_string(self.dir.join("key-watch.json")).unwrap_or_default();
        let mut needles: Vec<String> = caas_testbed::registered_secrets();
        for secret in serde_json::Deserializer::from_str(&watched)
            .into_iter::<serde_json::Value>()
            .map_while(Result::ok)
        {
            // The key, and an account key waiting in a rollover (`tls.key.next`).
            for key in ["tls.key", "tls.key.next"]
                .iter()
                .filter_map(|k| secret["data"][*k].as_str())
            {
                use base64::Engine;
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .unwrap_or_default();
                needles.extend(secret_needles(&String::from_utf8_lossy(&pem)));
            }
        }
        let needles: std::collections::HashSet<String> = needles.into_iter().collect();
        for (what, text) in [("log", &logs), ("events and status", &published)] {
            assert!(
                !text.contains("PRIVATE KEY-----"),
                "the operator's {what} contains a PEM private key"
            );
            if let Some(needle) = find_any(text, &needles) {
                panic!(
                    "the operator's {what} contains secret material ({}...)",
                    &needle[..needle.len().min(8)]
                );
            }
        }
    }
}

/// The first of `needles` (base64 or base64url text: keys, PEM lines) found in `text`.
/// Linear in the text: only runs of base64 characters at least as long as the shortest
/// needle are looked at, so a 500-Certificate run's logs scan in milliseconds.
pub fn find_any<'a>(
    text: &str,
    needles: &'a std::collections::HashSet<String>,
) -> Option<&'a String> {
    let lens: std::collections::BTreeSet<usize> = needles.iter().map(String::len).collect();
    let shortest = *lens.first()?;
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    for run in text
        .split(|c: char| !base64(c))
        .filter(|r| r.len() >= shortest)
    {
        for &len in lens.iter().take_while(|l| **l <= run.len()) {
            for start in 0..=run.len() - len {
                if let Some(n) = needles.get(&run[start..start + len]) {
                    return Some(n);
                }
            }
        }
    }
    None
}

/// The strings that must not leak for one secret: the value itself and, for PEM, each
/// base64 line of its body long enough to be specific.
pub fn secret_needles(secret: &str) -> Vec<String> {
    let secret = secret.trim();
    if secret.contains("-----BEGIN") {
        secret
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .map(str::to_string)
            .collect()
    } else {
        vec![secret.to_string()]
    }
}

fn spawn(
    args: &[String],
    env: &[(String, String)],
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    run: u32,
) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_caas-operator"));
    // No cloud credentials leak in from the test runner's environment: a test names the
    // ones it means.
    for (key, _) in std::env::vars() {
        if ["AWS_", "AZURE_", "GOOGLE_", "GCE_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "debug,hyper=info,hyper_util=info,rustls=info,h2=info,tower=info,kube_client=info,kube_runtime=info")
        .env("NO_COLOR", "1");
    Proc::spawn(
        "caas-operator",
        cmd,
        &dir.join(format!("operator-{run}.log")),
        None,
    )
}

/// A Secret with the EAB HMAC key, and a `CaaSIssuer` using it with the given solvers.
pub async fn create_issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    pebble: &Pebble,
    hmac: &str,
    solvers: serde_json::Value,
) -> CaaSIssuer {
    create_issuer_at(
        client,
        ns,
        name,
        pebble,
        &pebble.directory_url,
        hmac,
        solvers,
    )
    .await
}

/// Like [`create_issuer`], with the ACME directory at `server` (a proxy in front of
/// `pebble`).
pub async fn create_issuer_at(
    client: &kube::Client,
    ns: &str,
    name: &str,
    pebble: &Pebble,
    server: &str,
    hmac: &str,
    solvers: serde_json::Value,
) -> CaaSIssuer {
    apply_secret(client, ns, &format!("{name}-eab"), &[("hmac", hmac)]).await;
    let issuer: CaaSIssuer = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "CaaSIssuer",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "server": server,
            "caBundle": pebble.tls_ca_pem,
            "externalAccountBinding": {
                "keyID": pebble.eab_kid,
                "keySecretRef": { "name": format!("{name}-eab"), "key": "hmac" }
            },
            "privateKeySecretRef": { "name": format!("{name}-account") },
            "solvers": solvers
        }
    }))
    .unwrap();
    Api::<CaaSIssuer>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("caas-tests").force(),
            &Patch::Apply(&issuer),
        )
        .await
        .expect("apply issuer")
}

/// The RFC 2136 solver for the shared BIND (TSIG secret in `tsig` Secret of `ns`).
pub async fn rfc2136_solver(client: &kube::Client, ns: &str) -> serde_json::Value {
    let bind = shared_bind();
    apply_secret(client, ns, "tsig", &[("secret", &bind.tsig_secret)]).await;
    json!({ "dns01": { "rfc2136": {
        "nameserver": bind.addr().to_string(),
        "tsigKeyName": bind.tsig_key_name,
        "tsigAlgorithm": "HMACSHA256",
        "tsigSecretSecretRef": { "name": "tsig", "key": "secret" }
    } } })
}

pub async fn apply_secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let string_data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "namespace": ns },
        "stringData": string_data
    });
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("caas-tests").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply secret");
}

pub async fn create_certificate(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> Certificate {
    let cert: Certificate = serde_json::from_value(json!({
        "apiVersion": "caas.dev/v1alpha1", "kind": "Certificate",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec
    }))
    .unwrap();
    Api::<Certificate>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("caas-tests").force(),
            &Patch::Apply(&cert),
        )
        .await
        .expect("apply certificate")
}

/// The `type` condition's (status, reason, message), if any.
pub fn condition(
    conditions: &[caas_operator::api::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls `get` until `done` holds for what it returns, or panics after `timeout` with
/// the last value and the operator's log tail.
pub async fn wait_for<T: std::fmt::Debug, F, Fut>(
    what: &str,
    timeout: Duration,
    operator: Option<&Operator>,
    get: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    match wait_until(timeout, get, done).await {
        Ok(value) => value,
        Err(value) => {
            let log = operator.map(|o| o.proc.log_tail(60)).unwrap_or_default();
            panic!(
                "timed out after {timeout:?} waiting for {what}; last value: {value:#?}\noperator log tail:\n{log}"
            );
        }
    }
}

/// Asks `get` every 100 ms until `done` holds (`Ok`) or `timeout` has passed (`Err`,
/// with the last value).
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    mut get: F,
    done: impl Fn(&T) -> bool,
) -> Result<T, T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = get().await;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the Certificate exists and its `Ready` condition has `status` (and
/// `reason`), and returns it.
pub async fn wait_cert_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
    operator: &Operator,
) -> Certificate {
    let api: Api<Certificate> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("Certificate {ns}/{name} Ready={status} {reason:?}"),
        timeout,
        Some(operator),
        || {
            let api = api.clone();
            async move { api.get_opt(name).await.expect("get certificate") }
        },
        |c: &Option<Certificate>| {
            c.as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|(s, r, _)| s == status && reason.is_none_or(|want| want == r))
        },
    )
    .await
    .expect("checked above")
}

/// Waits until the issuer's `Ready` condition has `status` (and `reason`).
pub async fn wait_issuer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
    operator: &Operator,
) -> CaaSIssuer {
    let api: Api<CaaSIssuer> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("CaaSIssuer {ns}/{name} Ready={status} {reason}"),
        timeout,
        Some(operator),
        || {
            let api = api.clone();
            async move { api.get(name).await.expect("get issuer") }
        },
        |i: &CaaSIssuer| {
            i.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|(s, r, _)| s == status && r == reason)
        },
    )
    .await
}

/// `key` of a Secret's data as text.
pub fn secret_text(secret: &Secret, key: &str) -> String {
    String::from_utf8(
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// Verifies `chain_pem` (leaf first) for `name` against `root_pem`, the way a TLS client
/// would.
pub fn verify_chain(chain_pem: &str, root_pem: &str, name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .map_err(|e| e.to_string())?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = certs.split_first().ok_or("empty chain")?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One test's world behind the fault proxy: its own namespace, Pebble, the proxy in
/// front of it, and the operator. [`ProxiedBed::issuer`] adds the `CaaSIssuer` "ca"
/// that reaches Pebble through the proxy.
pub struct ProxiedBed {
    pub client: kube::Client,
    pub ns: String,
    pub pebble: Pebble,
    pub proxy: caas_testbed::AcmeProxy,
    pub operator: Operator,
}

impl ProxiedBed {
    pub async fn start(prefix: &str, options: caas_testbed::PebbleOptions) -> ProxiedBed {
        let api = caas_testbed::shared_apiserver();
        let client = api.client().await;
        install_crds(&client).await;
        let ns = api.namespace(&client, prefix).await;
        let pebble = Pebble::start(options);
        let proxy = caas_testbed::AcmeProxy::start(&pebble).await;
        let operator = Operator::start(api, &ns, &pebble);
        ProxiedBed {
            client,
            ns,
            pebble,
            proxy,
            operator,
        }
    }

    /// The issuer "ca" with `solvers`, waited for until its account is registered.
    pub async fn registered_issuer(&self, solvers: serde_json::Value) {
        self.issuer(solvers).await;
        wait_issuer(
            &self.client,
            &self.ns,
            "ca",
            "True",
            "AccountRegistered",
            Duration::from_secs(60),
            &self.operator,
        )
        .await;
    }

    /// Deletes Certificate `name`, which must hold the DNS-01 cleanup finalizer (a record
    /// of it is published), and waits until it is gone.
    pub async fn delete_guarded_certificate(&self, name: &str) {
        let certs: Api<Certificate> = Api::namespaced(self.client.clone(), &self.ns);
        let cert = certs.get(name).await.expect("get certificate");
        assert!(
            cert.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == caas_operator::controllers::certificate::DNS_CLEANUP_FINALIZER),
            "a published TXT record is guarded by the finalizer: {:?}",
            cert.metadata.finalizers
        );
        certs
            .delete(name, &kube::api::DeleteParams::default())
            .await
            .expect("delete certificate");
        wait_for(
            "the Certificate to be gone",
            Duration::from_secs(90),
            Some(&self.operator),
            || async {
                certs
                    .get_opt(name)
                    .await
                    .expect("get certificate")
                    .is_none()
            },
            |gone| *gone,
        )
        .await;
    }

    /// The issuer "ca" with `solvers`, its ACME server the proxy.
    pub async fn issuer(&self, solvers: serde_json::Value) {
        create_issuer_at(
            &self.client,
            &self.ns,
            "ca",
            &self.pebble,
            &self.proxy.directory_url,
            &self.pebble.eab_hmac,
            solvers,
        )
        .await;
    }
}

/// One test's world: its own namespace, Pebble started with `options`, the operator, and
/// the `CaaSIssuer` "pebble" with `solvers`.
pub async fn setup(
    prefix: &str,
    options: PebbleOptions,
    solvers: serde_json::Value,
) -> (kube::Client, String, Pebble, Operator) {
    let api = caas_testbed::shared_apiserver();
    let client = api.client().await;
    install_crds(&client).await;
    let ns = api.namespace(&client, prefix).await;
    let pebble = Pebble::start(options);
    let operator = Operator::start(api, &ns, &pebble);
    create_issuer(&client, &ns, "pebble", &pebble, &pebble.eab_hmac, solvers).await;
    (client, ns, pebble, operator)
}

/// Waits until the Certificate's `status.revision` is at least `revision`.
pub async fn wait_revision(
    client: &kube::Client,
    ns: &str,
    name: &str,
    revision: i64,
    timeout: Duration,
    operator: &Operator,
) -> Certificate {
    let certs: Api<Certificate> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{name} at revision {revision}"),
        timeout,
        Some(operator),
        || {
            let certs = certs.clone();
            async move { certs.get_opt(name).await.unwrap() }
        },
        |c| {
            c.as_ref()
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.revision)
                .unwrap_or(0)
                >= revision
        },
    )
    .await
    .unwrap()
}
