//! A second BIND 9, on port 53, for the default DNS-01 propagation check: the operator
//! finds a zone's authoritative servers through NS records and asks each of them on port
//! 53, so they must be there (the shared BIND, [`crate::shared_bind`], keeps its random
//! port for everything else).
//!
//! It listens on 127.0.0.1:53 (`ns1.auth.test`, an A record) and [::1]:53
//! (`ns2.auth.test`, an AAAA record): one server per address family. Both are loopback
//! addresses the machine already has; BIND only listens on addresses configured on an
//! interface, so 127.0.0.53 or a second IPv4 loopback address would mean changing the
//! host's network setup, which the test bed does not do. Without IPv6 on `lo` it fails
//! to start, saying so.
//!
//! Two zones, both with NS records naming ns1 and ns2, and TSIG-signed TXT updates with
//! the shared BIND's key (so an RFC 2136 solver and Pebble work as with the shared one):
//! * [`AUTH_ZONE`] (`auth.test`): the same zone on both addresses.
//! * [`LAGGING_ZONE`] (`lag.test`): updates reach ns1 only; ns2 answers from its own copy
//!   that never changes, like a secondary that does not get transfers. A TXT value there
//!   is never served by every authoritative server.
//!
//! Recursion is off: the operator's "recursive" resolver is ns1 itself, authoritative for
//! both zones and the NS names' addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::proc::Proc;
use crate::{scratch_dir, shared_bind, tool};

pub const AUTH_ZONE: &str = "auth.test";
pub const LAGGING_ZONE: &str = "lag.test";

/// Whether `name` is in one of the zones of the port-53 BIND.
pub(crate) fn holds(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    [AUTH_ZONE, LAGGING_ZONE]
        .iter()
        .any(|z| name == *z || name.ends_with(&format!(".{z}")))
}

pub struct AuthBind {
    /// `ns1.auth.test`: 127.0.0.1:53.
    pub ns1: SocketAddr,
    /// `ns2.auth.test`: [::1]:53.
    pub ns2: SocketAddr,
    pub dir: std::path::PathBuf,
    #[allow(dead_code)] // kept alive (and killed on drop) with the server
    proc: Mutex<Proc>,
}

/// The port-53 BIND of this test process, started on first use.
pub fn shared_auth_bind() -> &'static AuthBind {
    static SHARED: OnceLock<AuthBind> = OnceLock::new();
    SHARED.get_or_init(AuthBind::start)
}

/// Panics, naming the address, unless nothing listens on UDP and TCP port 53 there.
fn assert_port_53_free(addr: SocketAddr) {
    let udp = std::net::UdpSocket::bind(addr);
    let tcp = std::net::TcpListener::bind(addr);
    if let (Err(e), _) | (_, Err(e)) = (&udp, &tcp) {
        panic!(
            "the port-53 BIND needs {addr} (UDP and TCP), which cannot be bound: {e}. \
             Something else listens there (see `ss -lunpt`), or the address is missing \
             (IPv6 disabled on lo?); the test bed needs root for port 53."
        );
    }
}

fn zone_file(note: &str) -> String {
    format!(
        "$TTL 5\n@ IN SOA ns1.{AUTH_ZONE}. hostmaster.{AUTH_ZONE}. 1 60 60 600 5\n\
         @ IN NS ns1.{AUTH_ZONE}.\n@ IN NS ns2.{AUTH_ZONE}.\n; {note}\n"
    )
}

fn named_conf(d: &std::path::Display<'_>, key_name: &str) -> String {
    let policy = format!("update-policy {{ grant {key_name} zonesub TXT; }};");
    format!(
        r#"options {{
  directory "{d}";
  listen-on port 53 {{ 127.0.0.1; }};
  listen-on-v6 port 53 {{ ::1; }};
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
  recursion no;
  dnssec-validation no;
  allow-query {{ any; }};
  notify no;
}};
controls {{ }};
include "{d}/tsig.key";
view "ns1" {{
  match-destinations {{ 127.0.0.1; }};
  zone "{AUTH_ZONE}" {{ type primary; file "{d}/{AUTH_ZONE}.zone"; {policy} }};
  zone "{LAGGING_ZONE}" {{ type primary; file "{d}/{LAGGING_ZONE}.zone"; {policy} }};
}};
view "ns2" {{
  match-destinations {{ ::1; }};
  zone "{AUTH_ZONE}" {{ in-view "ns1"; }};
  zone "{LAGGING_ZONE}" {{ type primary; file "{d}/{LAGGING_ZONE}.ns2.zone"; }};
}};
"#
    )
}

impl AuthBind {
    pub fn start() -> AuthBind {
        let ns1 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
        let ns2 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53);
        assert_port_53_free(ns1);
        assert_port_53_free(ns2);
        let shared = shared_bind();
        let dir = scratch_dir("auth-bind");
        let d = dir.display();
        std::fs::copy(shared.dir.join("tsig.key"), dir.join("tsig.key")).expect("copy tsig.key");
        let write = |file: String, text: String| {
            std::fs::write(dir.join(&file), text).unwrap_or_else(|e| panic!("write {file}: {e}"))
        };
        write("named.conf".into(), named_conf(&d, &shared.tsig_key_name));
        let glue = "ns1 IN A 127.0.0.1\nns2 IN AAAA ::1\n";
        write(
            format!("{AUTH_ZONE}.zone"),
            zone_file("served by ns1 and ns2") + glue,
        );
        write(
            format!("{LAGGING_ZONE}.zone"),
            zone_file("ns1's copy: takes updates"),
        );
        write(
            format!("{LAGGING_ZONE}.ns2.zone"),
            zone_file("ns2's copy: never updated"),
        );
        let mut cmd = Command::new(tool("named"));
        cmd.arg("-g").arg("-c").arg(dir.join("named.conf"));
        let log = dir.join("named.log");
        let mut proc = Proc::spawn("named (port 53)", cmd, &log, Some(&dir));
        proc.wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&log)
                .map(|t| t.contains("all zones loaded"))
                .unwrap_or(false)
        });
        AuthBind {
            ns1,
            ns2,
            dir,
            proc: Mutex::new(proc),
        }
    }

    /// The answers `dig` gets for `name`/`rtype` from `server` (TXT values unquoted).
    pub fn dig(&self, server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new(tool("dig"))
            .args(["+short", "+norecurse", "-p", "53"])
            .arg(format!("@{}", server.ip()))
            .args([name, rtype])
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}
