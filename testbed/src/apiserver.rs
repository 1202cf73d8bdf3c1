//! etcd + kube-apiserver 1.20 with RBAC, a static admin token, and a kubeconfig.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::proc::{Proc, free_port, port_open};
use crate::{scratch_dir, tool, unique_name};

/// A running API server. Start one with [`ApiServer::start`] or share the binary's one
/// with [`shared_apiserver`].
pub struct ApiServer {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// Bearer token of `admin` (group `system:masters`).
    pub admin_token: String,
    /// A kubeconfig for the admin (insecure-skip-tls-verify: the serving cert is
    /// self-signed by the API server).
    pub kubeconfig: PathBuf,
    pub dir: PathBuf,
    port: u16,
    etcd_port: u16,
    #[allow(dead_code)] // kept alive (and killed on drop) with the server
    etcd: Mutex<Proc>,
    apiserver: Mutex<Proc>,
}

/// The API server shared by all tests in this test binary, started on first use.
pub fn shared_apiserver() -> &'static ApiServer {
    static SHARED: OnceLock<ApiServer> = OnceLock::new();
    SHARED.get_or_init(ApiServer::start)
}

impl ApiServer {
    /// Starts etcd and kube-apiserver on free ports and waits until `/readyz` answers.
    /// Blocking (call it from any thread, inside or outside a Tokio runtime).
    pub fn start() -> ApiServer {
        let dir = scratch_dir("apiserver");
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());

        let mut etcd_cmd = Command::new(tool("etcd"));
        etcd_cmd
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .arg("--unsafe-no-fsync");
        let mut etcd = Proc::spawn("etcd", etcd_cmd, &dir.join("etcd.log"), Some(&dir));
        etcd.wait_until(Duration::from_secs(30), || port_open(etcd_port));

        let sa_key = rcgen::KeyPair::generate().expect("generate service-account key");
        std::fs::write(dir.join("sa.key"), sa_key.serialize_pem()).expect("write sa.key");
        std::fs::write(dir.join("sa.pub"), sa_key.public_key_pem()).expect("write sa.pub");
        let admin_token = unique_name("admin");
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},admin,admin,system:masters\n"),
        )
        .expect("write tokens.csv");

        let apiserver = Self::spawn_apiserver(&dir, etcd_port, port);
        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\n\
                 users:\n- name: admin\n  user:\n    token: {admin_token}\n\
                 contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: admin\n    namespace: default\n\
                 current-context: testbed\n"
            ),
        )
        .expect("write kubeconfig");
        let server = ApiServer {
            url,
            admin_token,
            kubeconfig,
            dir,
            port,
            etcd_port,
            etcd: Mutex::new(etcd),
            apiserver: Mutex::new(apiserver),
        };
        server.wait_ready();
        server
    }

    fn spawn_apiserver(dir: &std::path::Path, etcd_port: u16, port: u16) -> Proc {
        let mut cmd = Command::new(tool("kube-apiserver"));
        cmd.arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--secure-port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg("--cert-dir")
            .arg(dir.join("certs"))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-account-key-file")
            .arg(dir.join("sa.pub"))
            .arg("--service-account-signing-key-file")
            .arg(dir.join("sa.key"))
            .arg("--token-auth-file")
            .arg(dir.join("tokens.csv"))
            .arg("--authorization-mode=RBAC")
            // /16: a burst of HTTP-01 challenges takes one ClusterIP each.
            .arg("--service-cluster-ip-range=10.0.0.0/16")
            .arg("--endpoint-reconciler-type=none")
            .arg("--enable-priority-and-fairness=false")
            .arg("--logtostderr=true")
            .arg("--v=0");
        let mut proc = Proc::spawn("kube-apiserver", cmd, &dir.join("apiserver.log"), None);
        proc.wait_until(Duration::from_secs(60), || port_open(port));
        proc
    }

    /// Waits until `/readyz` says ok (RBAC bootstrap done, CRD informers synced).
    fn wait_ready(&self) {
        let kubeconfig = self.kubeconfig.clone();
        let check = move || -> bool {
            let kubeconfig = kubeconfig.clone();
            // A runtime of its own on a thread of its own: callers may be inside one.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async {
                    let Ok(client) = client_from(&kubeconfig).await else {
                        return false;
                    };
                    let req = http::Request::get("/readyz")
                        .body(Vec::new())
                        .expect("request");
                    matches!(client.request_text(req).await, Ok(body) if body.trim() == "ok")
                })
            })
            .join()
            .unwrap_or(false)
        };
        self.apiserver
            .lock()
            .expect("apiserver lock")
            .wait_until(Duration::from_secs(90), || {
                let ok = check();
                if !ok {
                    std::thread::sleep(Duration::from_millis(200));
                }
                ok
            });
    }

    /// A new admin client. Make one per test: a client is bound to the Tokio runtime
    /// that created it, and each `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig)
            .await
            .expect("client for the test API server")
    }

    /// A client authenticating with `token` instead of the admin's.
    pub async fn client_with_token(&self, token: &str) -> kube::Client {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        let text = text.replace(&self.admin_token, token);
        let kubeconfig = Kubeconfig::from_yaml(&text).expect("parse kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns its name.
    pub async fn namespace(&self, client: &kube::Client, prefix: &str) -> String {
        let name = unique_name(prefix);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "caas.dev/test": "true" } }
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        name
    }

    /// `kubectl` pointed at this server as admin.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(tool("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Stops and starts the API server process (etcd keeps its data), for fault tests.
    pub fn restart(&self) {
        let mut apiserver = self.apiserver.lock().expect("apiserver lock");
        apiserver.kill();
        *apiserver = Self::spawn_apiserver(&self.dir, self.etcd_port, self.port);
        drop(apiserver);
        self.wait_ready();
    }
}

pub(crate) async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
