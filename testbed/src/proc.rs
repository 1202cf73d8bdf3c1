//! Child processes that never outlive the test process.
//!
//! Each service runs in its own process group. Beside it runs a tiny watchdog shell that
//! kills that group as soon as the test process is gone: so a panic, an abort, or a test
//! binary that exits with shared services still in `static`s leaves nothing running.
//! (Rust's test harness never drops statics, and `PR_SET_PDEATHSIG` would need `unsafe`.)

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A running service with its output in `log`.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
    watchdog: Child,
    cleanup_dir: Option<PathBuf>,
}

impl Proc {
    /// Starts `cmd` in a new process group, output to `log`, guarded by a watchdog.
    /// `cleanup_dir`, if given, is removed when the `Proc` is dropped, or by the watchdog
    /// once the test process is gone.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, cleanup_dir: Option<&Path>) -> Proc {
        let out = fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create log {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {name} ({:?}): {e}\nRun `cargo xtask test-env` to install the test bed.",
                cmd.get_program()
            )
        });
        let script = "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 0.5; done; \
                      kill -KILL \"-$2\" 2>/dev/null; \
                      if ! kill -0 \"$1\" 2>/dev/null && [ -n \"$3\" ]; then rm -rf \"$3\"; fi; exit 0";
        let cleanup = cleanup_dir
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let watchdog = Command::new("sh")
            .args(["-c", script, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .arg(cleanup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start watchdog shell");
        Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
            watchdog,
            cleanup_dir: cleanup_dir.map(Path::to_path_buf),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process itself (not its group).
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILLs the whole process group and reaps the process.
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `grace` for a clean exit, then SIGKILLs.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// The last `n` lines of the log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Waits until `ready()` holds, panicking with the log tail if the process exits or
    /// `timeout` passes first.
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) before it was ready; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} was not ready after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        if let Some(dir) = &self.cleanup_dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP and UDP port on 127.0.0.1 for a test process to listen on, below Linux's
/// ephemeral range (32768-60999) and never one this process handed out before. A port
/// from `bind(0)` was free only until its user bound it: meanwhile the kernel could offer
/// it again, or give it to an outgoing connection, and a Pebble once got the same port for
/// its ACME and management listeners, an operator its HTTP-01 port in use (CI, 2026-12-07).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // One cursor for the whole process: every test bed of it shares the machine's ports.
    // It starts at a place of this process's own, so that two test processes at once
    // (a bench beside the tests) seldom try the same ports.
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    let _ = NEXT.compare_exchange(u16::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!(
        "no free port on 127.0.0.1 between {FIRST} and {}",
        FIRST + SPAN
    );
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}
