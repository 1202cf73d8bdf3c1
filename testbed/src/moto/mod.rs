//! AWS for the tests: moto (PyPI `moto[server]`, the maintained AWS emulator) serving
//! Route 53, ACM, STS and IAM with IAM authentication on, so a wrong secret key is refused.
//! `testbed/python/moto_server.py` starts it and makes the accounts: a user allowed to
//! change Route 53, a user allowed only to assume roles, the role `caas-dns` (for IRSA,
//! Pod Identity and `route53.role`), and the hosted zones `acc.test` and `delegate.test`.
//!
//! Clients reach moto through the [`mirror`] (`AWS_ENDPOINT_URL`), which applies each
//! accepted Route 53 change to the shared BIND; and an EKS Pod Identity agent stand-in
//! hands out the role's session credentials to a caller with the right token.

pub mod acm;
pub mod mirror;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::proc::{Proc, free_port};
use crate::{scratch_dir, tool};
use mirror::Mirror;

/// An IAM user's access key.
#[derive(Clone, Debug)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub struct Moto {
    /// Where AWS clients send requests (`AWS_ENDPOINT_URL`): the mirror in front of moto.
    pub url: String,
    /// May change Route 53.
    pub dns_user: AwsKeys,
    /// May only assume roles.
    pub assumer: AwsKeys,
    /// May import certificates into ACM and read them back.
    pub acm_user: AwsKeys,
    /// Valid keys with no rights at all.
    pub nothing_user: AwsKeys,
    /// May make load balancers (ELB), to put an ACM certificate in use.
    pub elb_user: AwsKeys,
    /// The role `caas-dns` (may change Route 53 and import into ACM), for IRSA, Pod
    /// Identity and `role`.
    pub role_arn: String,
    /// The Pod Identity agent stand-in (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
    pub pod_identity_url: String,
    /// The token it wants (the content of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`).
    pub pod_identity_token: String,
    /// An empty file: the AWS config and credentials files of the operator under test.
    empty_file: std::path::PathBuf,
    mirror: Arc<Mirror>,
    /// The runtime the mirror runs on (outage doors are served there too).
    runtime: tokio::runtime::Handle,
    #[allow(dead_code)] // kept alive (and killed on drop) with the server
    proc: Mutex<Proc>,
}

/// See [`Moto::outage_door`].
pub struct OutageDoor {
    pub url: String,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl OutageDoor {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The moto shared by all tests in this test binary, started on first use.
pub fn shared_moto() -> &'static Moto {
    static SHARED: OnceLock<Moto> = OnceLock::new();
    SHARED.get_or_init(Moto::start)
}

fn keys(v: &Value) -> AwsKeys {
    let keys = AwsKeys {
        access_key_id: v["id"].as_str().expect("key id").to_string(),
        secret_access_key: v["secret"].as_str().expect("secret").to_string(),
    };
    crate::register_secret(&keys.secret_access_key);
    keys
}

/// The JSON line the launcher prints once the accounts are made.
fn wait_for_accounts(proc: &Proc) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.starts_with('{')) {
            return serde_json::from_str(line).expect("moto_server.py's JSON line");
        }
        assert!(
            Instant::now() < deadline,
            "moto did not start in 90 s; its log ({}):\n{log}",
            proc.log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Moto {
    pub fn start() -> Moto {
        let dir = scratch_dir("moto");
        let port = free_port();
        let mut cmd = std::process::Command::new(tool("cloud-python"));
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/moto_server.py"
        ))
        .arg(port.to_string())
        .args([crate::bind::ZONE, crate::fake_dns::DELEGATE_ZONE]);
        let proc = Proc::spawn("moto", cmd, &dir.join("moto.log"), None);
        let accounts = wait_for_accounts(&proc);
        let empty_file = dir.join("empty");
        std::fs::write(&empty_file, "").expect("write an empty file");
        let pod = accounts["pod_identity"].clone();
        crate::register_secret(pod["SecretAccessKey"].as_str().unwrap_or_default());
        crate::register_secret(pod["Token"].as_str().unwrap_or_default());
        let pod_identity_token = crate::unique_name("pod-identity-token");
        crate::register_secret(&pod_identity_token);
        let mirror = Arc::new(Mirror {
            moto: format!("http://127.0.0.1:{port}"),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
            sets: Default::default(),
            tokens: Mutex::new(HashSet::new()),
            log: Mutex::default(),
        });
        let (mirror_port, agent_port, runtime) =
            serve(mirror.clone(), pod, pod_identity_token.clone());
        Moto {
            url: format!("http://127.0.0.1:{mirror_port}"),
            dns_user: keys(&accounts["dns_user"]),
            assumer: keys(&accounts["assumer"]),
            acm_user: keys(&accounts["acm_user"]),
            nothing_user: keys(&accounts["nothing_user"]),
            elb_user: keys(&accounts["elb_user"]),
            role_arn: accounts["role_arn"].as_str().expect("role").to_string(),
            pod_identity_url: format!("http://127.0.0.1:{agent_port}/v1/credentials"),
            pod_identity_token,
            empty_file,
            mirror,
            runtime,
            proc: Mutex::new(proc),
        }
    }

    /// A door of its own to the mirror, for one test's `apiURL`, that the test can
    /// close: while down, every request is answered `503 ServiceUnavailable` in the
    /// AWS JSON shape (a regional outage), and other tests are not affected.
    pub fn outage_door(&self) -> OutageDoor {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (mirror, flag) = (self.mirror.clone(), down.clone());
        self.runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            accept(listener, move |req| {
                let (mirror, flag) = (mirror.clone(), flag.clone());
                async move {
                    if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        return Ok(acm::error(
                            503,
                            "ServiceUnavailable",
                            "Service is temporarily unavailable",
                        ));
                    }
                    mirror.handle(req).await
                }
            })
            .await;
        });
        OutageDoor {
            url: format!("http://127.0.0.1:{port}"),
            down,
        }
    }

    /// Lets STS take `token` in AssumeRoleWithWebIdentity (as if an OIDC provider had
    /// signed it).
    pub fn register_web_identity_token(&self, token: &str) {
        crate::register_secret(token);
        self.mirror
            .tokens
            .lock()
            .expect("lock")
            .insert(token.to_string());
    }

    /// `METHOD path -> status` of every request through the mirror so far.
    pub fn log(&self) -> Vec<String> {
        self.mirror.log.lock().expect("lock").clone()
    }

    /// The operator's environment for AWS through moto: the endpoint, a region, and no
    /// profile files or instance metadata of this machine.
    pub fn env(&self) -> Vec<(String, String)> {
        let empty = self.empty_file.display().to_string();
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", &empty),
            ("AWS_SHARED_CREDENTIALS_FILE", &empty),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The mirror and the Pod Identity agent stand-in, on a thread and runtime of their own
/// (tests each have a runtime; this outlives them); their ports.
fn serve(mirror: Arc<Mirror>, pod: Value, token: String) -> (u16, u16, tokio::runtime::Handle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let m = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let a = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let ports = (
                m.local_addr().expect("addr").port(),
                a.local_addr().expect("addr").port(),
                tokio::runtime::Handle::current(),
            );
            tx.send(ports).expect("ports");
            let agent = Arc::new((pod, token));
            let mirror_loop = accept(m, move |req| {
                let mirror = mirror.clone();
                async move { mirror.handle(req).await }
            });
            let agent_loop = accept(a, move |req| {
                let agent = agent.clone();
                async move { Ok(pod_identity(&agent.0, &agent.1, &req)) }
            });
            tokio::join!(mirror_loop, agent_loop);
        });
    });
    rx.recv().expect("moto mirror thread")
}

async fn accept<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The EKS Pod Identity agent's answer (`GET /v1/credentials` with the projected
/// service account token in `Authorization`): the role's session credentials.
fn pod_identity(pod: &Value, token: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (status, body) = match (req.uri().path(), given == token) {
        ("/v1/credentials", true) => (200, pod.to_string()),
        ("/v1/credentials", false) => (
            401,
            serde_json::json!({"message": "Service account token cannot be empty or invalid"})
                .to_string(),
        ),
        _ => (404, "{}".into()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}
