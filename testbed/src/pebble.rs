//! Pebble, an ACME CA for tests, configured like a commercial CaaS CA: External Account
//! Binding required. Started per test (about 0.3 s), so each test owns its fault knobs
//! and the ports Pebble validates HTTP-01 (`http_port`) and TLS-ALPN-01 (`tls_port`) on.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

use crate::proc::{Proc, free_port, port_open};
use crate::{random_bytes, scratch_dir, shared_bind, tool};

/// How to start Pebble (2.10). `Default` gives: EAB required, one key id, 90-day certificates
/// (the `default` profile; `shortlived` only when asked for),
/// lookups through the shared BIND, Pebble's default fault rates (5% bad nonces, 50%
/// authorization reuse) except that validation does not sleep.
#[derive(Clone, Debug)]
pub struct PebbleOptions {
    pub eab_required: bool,
    /// Validity in seconds of certificates of the `default` profile (and of orders
    /// naming no profile).
    pub validity_secs: u64,
    /// A second profile, `shortlived`, with this validity in seconds (Let's Encrypt's: 6
    /// days). Off by default: Pebble picks a profile at random for an order that names
    /// none, so with two profiles such orders would get either validity.
    pub shortlived_secs: Option<u64>,
    /// The DNS server Pebble resolves names with; `None` means the shared BIND.
    pub dns_server: Option<SocketAddr>,
    /// Extra environment, e.g. `PEBBLE_WFE_NONCEREJECT=50`, `PEBBLE_AUTHZREUSE=0`.
    pub env: Vec<(String, String)>,
    /// `Retry-After` seconds Pebble sends on pending authorizations and processing orders.
    pub retry_after_secs: u64,
    /// Validate at once (`PEBBLE_VA_NOSLEEP=1`); when false Pebble waits 0-15 s before
    /// each validation, like a slow CA.
    pub va_nosleep: bool,
    /// The HTTP-01 and TLS-ALPN-01 ports to validate against; `None` picks free ones.
    /// Several Pebbles given the same ports validate through one operator listener.
    pub validation_ports: Option<(u16, u16)>,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        PebbleOptions {
            eab_required: true,
            validity_secs: 90 * 24 * 3600,
            shortlived_secs: None,
            dns_server: None,
            env: Vec::new(),
            retry_after_secs: 1,
            va_nosleep: true,
            validation_ports: None,
        }
    }
}

pub struct Pebble {
    /// The ACME directory, `https://127.0.0.1:PORT/dir`.
    pub directory_url: String,
    /// The management API, `https://127.0.0.1:PORT`.
    pub management_url: String,
    /// PEM of the CA that signed Pebble's own TLS certificate (an issuer's `caBundle`).
    pub tls_ca_pem: String,
    /// EAB key id and HMAC key (base64url without padding, as CAs hand it out).
    pub eab_kid: String,
    pub eab_hmac: String,
    /// Where Pebble connects for HTTP-01 and TLS-ALPN-01 validation (on 127.0.0.1).
    pub http_port: u16,
    pub tls_port: u16,
    pub dir: std::path::PathBuf,
    pub options: PebbleOptions,
    proc: Proc,
}

impl Pebble {
    /// Starts Pebble on free ports and waits until it accepts connections.
    pub fn start(options: PebbleOptions) -> Pebble {
        let dir = scratch_dir("pebble");
        let (tls_ca_pem, cert_pem, key_pem) = tls_certificates();
        std::fs::write(dir.join("cert.pem"), &cert_pem).expect("write cert.pem");
        std::fs::write(dir.join("key.pem"), &key_pem).expect("write key.pem");
        std::fs::write(dir.join("ca.pem"), &tls_ca_pem).expect("write ca.pem");

        let (port, mgmt_port) = (free_port(), free_port());
        let (http_port, tls_port) = options
            .validation_ports
            .unwrap_or_else(|| (free_port(), free_port()));
        let eab_kid = crate::unique_name("kid");
        // 64 bytes: long enough for HS512 (RFC 7518 section 3.2; Pebble's go-jose refuses
        // shorter keys for it).
        let eab_hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(64));
        crate::register_secret(&eab_hmac);
        let mut profiles = serde_json::json!({
            "default": { "description": "The default profile", "validityPeriod": options.validity_secs }
        });
        if let Some(secs) = options.shortlived_secs {
            profiles["shortlived"] = serde_json::json!({ "description": "Short-lived certificates", "validityPeriod": secs });
        }
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": options.eab_required,
                "externalAccountMACKeys": { eab_kid.clone(): eab_hmac.clone() },
                "retryAfter": { "authz": options.retry_after_secs, "order": options.retry_after_secs },
                "profiles": profiles

            }
        });
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config.json");

        let dns = options
            .dns_server
            .unwrap_or_else(|| shared_bind().addr())
            .to_string();
        let mut cmd = Command::new(tool("pebble"));
        cmd.arg("-config")
            .arg(dir.join("config.json"))
            .arg("-dnsserver")
            .arg(&dns);
        if options.va_nosleep {
            cmd.env("PEBBLE_VA_NOSLEEP", "1");
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn("pebble", cmd, &dir.join("pebble.log"), Some(&dir));
        proc.wait_until(Duration::from_secs(30), || {
            port_open(port) && port_open(mgmt_port)
        });
        Pebble {
            directory_url: format!("https://127.0.0.1:{port}/dir"),
            management_url: format!("https://127.0.0.1:{mgmt_port}"),
            tls_ca_pem,
            eab_kid,
            eab_hmac,
            http_port,
            tls_port,
            dir,
            options,
            proc,
        }
    }

    /// The PEM root that Pebble issues certificates under (its management API's
    /// `/roots/0`): the trust anchor to verify issued chains against.
    pub async fn issuance_root(&self) -> String {
        let (status, body) = crate::https_get(
            &format!("{}/roots/0", self.management_url),
            &self.tls_ca_pem,
        )
        .await
        .expect("GET Pebble /roots/0");
        assert_eq!(status, 200, "Pebble /roots/0 answered {status}");
        String::from_utf8(body).expect("PEM root")
    }

    /// The PEM of root `n` (0: the default chain's; 1.. the `PEBBLE_ALTERNATE_ROOTS`).
    pub async fn root(&self, n: usize) -> String {
        let (status, body) = crate::https_get(
            &format!("{}/roots/{n}", self.management_url),
            &self.tls_ca_pem,
        )
        .await
        .expect("GET Pebble /roots/N");
        assert_eq!(status, 200, "Pebble /roots/{n} answered {status}");
        String::from_utf8(body).expect("PEM root")
    }

    /// Pebble's log so far (requests it served, validation results).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.proc.log).unwrap_or_default()
    }

    /// Freezes Pebble (SIGSTOP): connections are accepted by the kernel, nothing is
    /// answered, no state is lost. For outage tests; see [`Pebble::resume`].
    pub fn pause(&self) {
        self.proc.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused Pebble go on (SIGCONT).
    pub fn resume(&self) {
        self.proc.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Stops Pebble (SIGKILL); for outage tests.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Makes Pebble print every goroutine's stack and exit (SIGQUIT, as for any Go
    /// program) and returns that dump: the evidence that tells a deadlocked Pebble (see
    /// [`goroutines_stuck_on_locks`]) from an operator that stopped asking.
    pub fn goroutine_dump(&self) -> String {
        let pid = self.proc.pid();
        self.proc.signal(nix::sys::signal::Signal::SIGQUIT);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        // Exited (a zombie until reaped) or gone: the dump is complete.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        while running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = self.log();
        log.find("SIGQUIT")
            .map(|i| log[i..].to_string())
            .unwrap_or_default()
    }
}

/// How many goroutines of a Go stack dump wait on a lock
/// (`goroutine 7 gp=.. m=nil [sync.RWMutex.RLock, 2 minutes]:`; Go 1.20 and later name
/// the lock; Pebble 2.6 is built with 1.24). Pebble 2.6 keeps its
/// store and each order and authorization behind `sync.RWMutex`es, taken in different
/// orders by different handlers, and under concurrent load they can wait on each other
/// for ever. A healthy Pebble holds them for microseconds, so after it has answered
/// nothing for a minute, two or more goroutines waiting on locks are that deadlock.
/// (The ", N minutes" Go adds is no help: it is only known once a GC has run since the
/// goroutine blocked, and an idle Go program collects every 2 minutes.)
pub fn goroutines_stuck_on_locks(dump: &str) -> usize {
    dump.lines()
        .filter(|l| l.starts_with("goroutine "))
        .filter_map(|l| Some(l[l.find('[')? + 1..l.rfind(']')?].to_string()))
        .filter(|state| {
            ["sync.Mutex.Lock", "sync.RWMutex.Lock", "sync.RWMutex.RLock"]
                .iter()
                .any(|lock| state.split(',').next() == Some(lock))
        })
        .count()
}

/// A CA and a `localhost`/`127.0.0.1` serving certificate signed by it, as PEM:
/// (ca, cert, key).
pub(crate) fn tls_certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "caas-testbed Pebble TLS CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::goroutines_stuck_on_locks;

    #[test]
    fn lock_waits_count() {
        let dump = "SIGQUIT: quit\nPC=0x4 m=0 sigcode=0\n\n\
            goroutine 1 gp=0xc0 m=nil [IO wait]:\n\
            goroutine 7 gp=0xc1 m=nil [sync.RWMutex.RLock, 2 minutes]:\n\
            sync.runtime_SemacquireRWMutexR(..)\n\
            goroutine 8 gp=0xc2 m=nil [sync.RWMutex.Lock, 1 minutes]:\n\
            goroutine 9 gp=0xc3 m=nil [sync.RWMutex.RLock]:\n\
            goroutine 10 gp=0xc4 m=nil [sync.Mutex.Lock, 3 minutes]:\n\
            goroutine 11 gp=0xc5 m=nil [select, 5 minutes]:\n\
            goroutine 12 gp=0xc6 m=nil [sync.WaitGroup.Wait]:\n\
            goroutine 13 gp=0xc7 m=nil [sync.Cond.Wait, 1 minutes]:\n";
        // 1 waits for the network, 11 on a channel, 12 and 13 for other goroutines.
        assert_eq!(goroutines_stuck_on_locks(dump), 4);
        assert_eq!(goroutines_stuck_on_locks(""), 0);
    }
}
