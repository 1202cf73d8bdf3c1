//! BIND 9 on a loopback port: the authoritative server of `acc.test`, where every name
//! has an A record 127.0.0.1 and TSIG-signed dynamic updates may change TXT records.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;

use crate::proc::{Proc, free_port};
use crate::{random_bytes, scratch_dir, tool};

pub struct Bind {
    pub port: u16,
    /// The zone served, `acc.test`.
    pub zone: String,
    /// TSIG key name allowed to update TXT records in the zone.
    pub tsig_key_name: String,
    /// TSIG algorithm, as BIND names it (`hmac-sha256`).
    pub tsig_algorithm: String,
    /// TSIG secret, standard base64 (as in BIND's key file).
    pub tsig_secret: String,
    pub dir: std::path::PathBuf,
    #[allow(dead_code)] // kept alive (and killed on drop) with the server
    proc: Mutex<Proc>,
}

/// The BIND server shared by all tests in this test binary, started on first use.
pub fn shared_bind() -> &'static Bind {
    static SHARED: OnceLock<Bind> = OnceLock::new();
    SHARED.get_or_init(Bind::start)
}

pub const ZONE: &str = "acc.test";
/// A second zone, made only for ACME: `_acme-challenge.delegated.acc.test` is a CNAME
/// to `delegated.delegate.test`.
pub const DELEGATE: &str = crate::fake_dns::DELEGATE_ZONE;
/// A zone whose update-policy lets the test bed's key change A records only: a TXT
/// update there is answered REFUSED.
pub const LOCKED_ZONE: &str = "locked.test";

impl Bind {
    pub fn start() -> Bind {
        let dir = scratch_dir("bind");
        let port = free_port();
        let tsig_key_name = "acme-update".to_string();
        let tsig_algorithm = "hmac-sha256".to_string();
        let tsig_secret = base64::engine::general_purpose::STANDARD.encode(random_bytes(32));
        crate::register_secret(&tsig_secret);
        let d = dir.display();
        std::fs::write(
            dir.join("tsig.key"),
            format!("key \"{tsig_key_name}\" {{ algorithm {tsig_algorithm}; secret \"{tsig_secret}\"; }};\n"),
        )
        .expect("write tsig.key");
        std::fs::write(
            dir.join("named.conf"),
            format!(
                r#"options {{
  directory "{d}";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  // Recursion for loopback clients only, so that an answer follows a CNAME from one
  // of its zones into the other (CNAME delegation); nothing outside them resolves.
  recursion yes;
  allow-recursion {{ 127.0.0.1; }};
  dnssec-validation no;
  allow-query {{ any; }};
  notify no;
}};
controls {{ }};
include "{d}/tsig.key";
zone "{ZONE}" {{
  type primary;
  file "{d}/{ZONE}.zone";
  update-policy {{ grant {tsig_key_name} zonesub TXT; grant {tsig_key_name} zonesub CAA; }};
}};
zone "{DELEGATE}" {{
  type primary;
  file "{d}/{DELEGATE}.zone";
  update-policy {{ grant {tsig_key_name} zonesub TXT; }};
}};
zone "{LOCKED_ZONE}" {{
  type primary;
  file "{d}/{LOCKED_ZONE}.zone";
  update-policy {{ grant {tsig_key_name} zonesub A; }};
}};
"#
            ),
        )
        .expect("write named.conf");
        std::fs::write(
            dir.join(format!("{ZONE}.zone")),
            format!(
                "$TTL 5\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 600 5\n\
                 @ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n\
                 ; CNAME delegation: the challenge of delegated.{ZONE} is answered in {DELEGATE}\n\
                 _acme-challenge.delegated IN CNAME delegated.{DELEGATE}.\n\
                 delegated IN A 127.0.0.1\n\
                 ; and acme-dns's (its account's fulldomain)\n\
                 _acme-challenge.acmedns IN CNAME acmedns.{DELEGATE}.\n\
                 acmedns IN A 127.0.0.1\n"
            ),
        )
        .expect("write zone");
        std::fs::write(
            dir.join(format!("{DELEGATE}.zone")),
            format!(
                "$TTL 5\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 600 5\n@ IN NS ns.{ZONE}.\n"
            ),
        )
        .expect("write delegate zone");
        std::fs::write(
            dir.join(format!("{LOCKED_ZONE}.zone")),
            format!(
                "$TTL 5\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 600 5\n@ IN NS ns.{ZONE}.\n\
                 * IN A 127.0.0.1\n"
            ),
        )
        .expect("write locked zone");
        let mut cmd = Command::new(tool("named"));
        cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
        let log = dir.join("named.log");
        let mut proc = Proc::spawn("named", cmd, &log, Some(&dir));
        // Not "running": named prints "running on Linux ..." at start-up, before the
        // zone is loaded, and an update in that window gets SERVFAIL.
        proc.wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&log)
                .map(|t| t.contains("all zones loaded"))
                .unwrap_or(false)
        });
        Bind {
            port,
            zone: ZONE.to_string(),
            tsig_key_name,
            tsig_algorithm,
            tsig_secret,
            dir,
            proc: Mutex::new(proc),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The TSIG secret as raw bytes.
    pub fn tsig_secret_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.tsig_secret)
            .expect("tsig secret is base64")
    }

    /// The answers `dig` gets for `name`/`rtype` from this server (TXT values unquoted).
    /// Sends one `nsupdate` change (`update add NAME. 60 CAA 0 issue "ca"`) signed with
    /// the test bed's key; panics with nsupdate's words when BIND refuses it.
    pub fn nsupdate(&self, change: &str) {
        use std::io::Write;
        let mut child = std::process::Command::new(crate::tool("nsupdate"))
            .arg("-k")
            .arg(self.dir.join("tsig.key"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nsupdate");
        let script = format!("server 127.0.0.1 {}\n{change}\nsend\n", self.port);
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(script.as_bytes()).expect("nsupdate stdin");
        drop(stdin);
        let out = child.wait_with_output().expect("nsupdate");
        assert!(
            out.status.success(),
            "nsupdate {change}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new(tool("dig"))
            .args([
                "+short",
                "+norecurse",
                "-p",
                &self.port.to_string(),
                "@127.0.0.1",
                name,
                rtype,
            ])
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}
