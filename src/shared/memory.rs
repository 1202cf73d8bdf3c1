//! What the controllers remember between reconciles, per object: one struct, held by the
//! controllers' `Context`, started afresh with each leadership term (a replica
//! that loses the Lease forgets everything), pruned when its object is
//! deleted, with an injectable clock: the one source of "now" for the controllers, both
//! monotonic (waits) and wall time (status times, renewal requeues, restarts).
//!
//! Nothing here is needed for correctness after a restart: status carries what must
//! survive (the order URL, failure counts); this only saves requests and keeps waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// Where "now" comes from: the system clock, or a test's.
pub trait Clock: Send + Sync {
    /// Monotonic time, for waits.
    fn now(&self) -> Instant;
    /// Wall time, for what is compared with timestamps (status, certificates).
    fn wall(&self) -> Timestamp;
}

/// The system's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A namespaced object (`namespace/name`); cluster-scoped objects have an empty namespace.
pub type ObjectKey = String;

/// The key of an object.
pub fn object_key(namespace: Option<&str>, name: &str) -> ObjectKey {
    format!("{}/{name}", namespace.unwrap_or_default())
}

#[derive(Default)]
struct Maps {
    /// Certificates: earliest next poll of the CA, for the request hash it was set for.
    next_poll: HashMap<ObjectKey, (String, Instant)>,
    /// Certificates: resourceVersion of the status this process last wrote, and the
    /// object as written until the watched copy has caught up.
    written_status: HashMap<ObjectKey, (u64, Option<Arc<crate::api::Certificate>>)>,
    /// Certificates: resourceVersion of each Secret this process last wrote for them
    /// (TLS, next key), by Secret name.
    written_secrets: HashMap<ObjectKey, HashMap<String, u64>>,
    /// Certificates: next ARI check, for which certificate serial.
    ari_checks: HashMap<ObjectKey, (String, Instant)>,
    /// ACME accounts (by account URL): the `Retry-After` of the CA's error answers (429,
    /// 5xx) to the account's requests, and when each came; kept [`WAIT_MEMORY`].
    error_waits: HashMap<String, Vec<(Instant, Duration)>>,
    /// ACME URLs (an order being polled): the `Retry-After` the CA last sent, and when;
    /// consumed by the reconcile that polls, dropped [`URL_WAIT_MEMORY`] after its end.
    url_waits: HashMap<String, (Instant, Duration)>,
    /// DNS-01 records (`fqdn value`): the DNS provider's change still being applied.
    dns_changes: HashMap<String, (String, Instant)>,
    /// When `url_waits`, `error_waits` and `dns_changes` were last swept of old entries.
    waits_swept: Option<Instant>,
    /// ACME accounts (by account URL): no new orders until then, the CA's rate limit
    /// (a 429 with Retry-After), shared by every Certificate using the account.
    account_pauses: HashMap<String, Instant>,
    /// Issuers: consecutive failures (retry delay).
    issuer_failures: HashMap<ObjectKey, u32>,
    /// Certificates: the notAfter they were last reported `expiring` for.
    expiring_reported: HashMap<ObjectKey, String>,
    /// Workloads (`kind/namespace/name`) restarted after a renewal: only while their
    /// last restart is recent or a delayed one is waiting.
    restarts: HashMap<String, WorkloadRestart>,
}

impl Maps {
    /// Drops the CA's waits older than [`WAIT_MEMORY`] and untaken URL waits ended more
    /// than [`URL_WAIT_MEMORY`] ago (every [`URL_WAIT_MEMORY`] at most).
    fn sweep_waits(&mut self, now: Instant) {
        if self
            .waits_swept
            .is_some_and(|at| now.duration_since(at) < URL_WAIT_MEMORY)
        {
            return;
        }
        self.waits_swept = Some(now);
        let fresh = |at: &Instant| now.duration_since(*at) < WAIT_MEMORY;
        // The reconcile that made the request takes its wait at once: one nobody took
        // (an authorization's, a challenge's) has no use once it has ended, and goes
        // seconds later: with a two-minute grace a renewal storm of 10,000 kept 4 MiB.
        self.url_waits
            .retain(|_, (at, wait)| now.duration_since(*at) < *wait + URL_WAIT_MEMORY);
        self.dns_changes.retain(|_, (_, at)| fresh(at));
        self.error_waits.retain(|_, waits| {
            waits.retain(|(at, _)| fresh(at));
            !waits.is_empty()
        });
    }

    fn len(&self) -> usize {
        self.next_poll.len()
            + self.written_status.len()
            + self.written_secrets.len()
            + self.ari_checks.len()
            + self.error_waits.len()
            + self.url_waits.len()
            + self.dns_changes.len()
            + self.issuer_failures.len()
            + self.account_pauses.len()
            + self.expiring_reported.len()
            + self.restarts.len()
    }
}

/// What this process did about restarting one workload after renewals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadRestart {
    /// The last restart it made.
    pub last: Option<Timestamp>,
    /// Whether a delayed restart is waiting.
    pub pending: bool,
}

/// How long a CA's `Retry-After` is remembered for the reconcile that made the request
/// (which asks for it at once), and a DNS provider's pending change for `ready`.
const WAIT_MEMORY: Duration = Duration::from_secs(3600);
/// How long past its end an order's `Retry-After` nobody took is kept (and how often
/// the waits are swept).
const URL_WAIT_MEMORY: Duration = Duration::from_secs(10);

/// Per-object memory of the controllers.
pub struct Memory {
    clock: Arc<dyn Clock>,
    maps: Mutex<Maps>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new(Arc::new(SystemClock))
    }
}

impl Memory {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Memory {
            clock,
            maps: Mutex::default(),
        }
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Wall time, from the same clock.
    pub fn wall_now(&self) -> Timestamp {
        self.clock.wall()
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps inconsistent (each
        // operation is one insert or remove): use them anyway.
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long to wait before polling the CA for `key` again, if the wait was set for
    /// the same request.
    pub fn poll_wait(&self, key: &str, request_hash: &str) -> Option<Duration> {
        let now = self.now();
        self.maps()
            .next_poll
            .get(key)
            .filter(|(hash, until)| hash == request_hash && *until > now)
            .map(|(_, until)| *until - now)
    }

    pub fn set_poll_wait(&self, key: &str, request_hash: &str, wait: Duration) {
        let until = self.now() + wait;
        self.maps()
            .next_poll
            .insert(key.into(), (request_hash.into(), until));
    }

    pub fn clear_poll_wait(&self, key: &str) {
        self.maps().next_poll.remove(key);
    }

    pub fn written_status(&self, key: &str) -> Option<u64> {
        self.maps().written_status.get(key).map(|(v, _)| *v)
    }

    /// The Certificate as this process last wrote it, while the watch has not caught up.
    pub fn written_certificate(&self, key: &str) -> Option<Arc<crate::api::Certificate>> {
        self.maps().written_status.get(key)?.1.clone()
    }

    /// The watched copy has caught up: the written object is not needed any more.
    pub fn caught_up(&self, key: &str) {
        if let Some(entry) = self.maps().written_status.get_mut(key) {
            entry.1 = None;
        }
    }

    pub fn set_written_status(
        &self,
        key: &str,
        version: u64,
        written: Option<Arc<crate::api::Certificate>>,
    ) {
        self.maps()
            .written_status
            .insert(key.into(), (version, written));
    }

    /// The resourceVersion of Secret `secret` as this process last wrote it for `key`.
    pub fn written_secret(&self, key: &str, secret: &str) -> Option<u64> {
        self.maps()
            .written_secrets
            .get(key)
            .and_then(|m| m.get(secret))
            .copied()
    }

    pub fn set_written_secret(&self, key: &str, secret: &str, version: Option<u64>) {
        let mut maps = self.maps();
        let entry = maps.written_secrets.entry(key.into()).or_default();
        match version {
            Some(v) => {
                entry.insert(secret.into(), v);
            }
            None => {
                entry.remove(secret);
            }
        }
        if entry.is_empty() {
            maps.written_secrets.remove(key);
        }
    }

    /// Whether an ARI check is due for `key`'s certificate `serial`.
    pub fn ari_due(&self, key: &str, serial: &str) -> bool {
        let now = self.now();
        self.maps()
            .ari_checks
            .get(key)
            .is_none_or(|(s, next)| s != serial || *next <= now)
    }

    pub fn set_next_ari_check(&self, key: &str, serial: &str, after: Duration) {
        let next = self.now() + after;
        self.maps()
            .ari_checks
            .insert(key.into(), (serial.into(), next));
    }

    /// Records the `Retry-After` of the CA's error answer (429, 5xx) to a request of
    /// `account` (the account's URL, as its requests name it).
    pub fn record_error_wait(&self, account: &str, wait: Duration) {
        let now = self.now();
        let mut maps = self.maps();
        maps.sweep_waits(now);
        let waits = maps.error_waits.entry(account.into()).or_default();
        waits.push((now, wait));
    }

    /// The longest `Retry-After` of the CA's error answers to `account`'s requests
    /// since `since` (the start of an issuance attempt): how long a rate-limited client
    /// must wait. CAs count rate limits per account, so any of its requests counts.
    pub fn error_wait_since(&self, account: &str, since: Instant) -> Option<Duration> {
        let maps = self.maps();
        let waits = maps.error_waits.get(account)?;
        waits
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, wait)| *wait)
            .max()
    }

    /// Records the `Retry-After` the CA sent for `url` (an order's URL belongs to one
    /// Certificate). Waits nobody took are dropped [`URL_WAIT_MEMORY`] after they end.
    pub fn record_url_wait(&self, url: &str, wait: Duration) {
        let now = self.now();
        let mut maps = self.maps();
        maps.sweep_waits(now);
        maps.url_waits.insert(url.into(), (now, wait));
    }

    /// Remembers (or, with `None`, forgets) the DNS provider's change of `value` at
    /// `fqdn` that is still being applied.
    pub fn set_dns_change(&self, fqdn: &str, value: &str, change: Option<String>) {
        let now = self.now();
        let key = format!("{fqdn} {value}");
        let mut maps = self.maps();
        maps.sweep_waits(now);
        match change {
            Some(change) => maps.dns_changes.insert(key, (change, now)),
            None => maps.dns_changes.remove(&key),
        };
    }

    /// The DNS provider's change of `value` at `fqdn` still being applied, if any.
    pub fn dns_change(&self, fqdn: &str, value: &str) -> Option<String> {
        let maps = self.maps();
        let (change, _) = maps.dns_changes.get(&format!("{fqdn} {value}"))?;
        Some(change.clone())
    }

    /// The `Retry-After` the CA last sent for `url`, consumed.
    pub fn take_url_wait(&self, url: &str) -> Option<Duration> {
        let wait = self.maps().url_waits.remove(url);
        wait.map(|(_, wait)| wait)
    }

    /// One more consecutive failure of issuer `key`: the retry delay, 5 s doubling to
    /// at most 5 minutes.
    pub fn issuer_failed(&self, key: &str) -> Duration {
        let mut maps = self.maps();
        let n = maps.issuer_failures.entry(key.into()).or_default();
        *n = (*n + 1).min(10);
        Duration::from_secs((5u64 << (*n - 1)).min(300))
    }

    /// Pauses new orders of the ACME account `account` for `wait` (the CA's
    /// Retry-After); a longer pause already set stays.
    pub fn pause_account(&self, account: &str, wait: Duration) {
        let until = self.now() + wait;
        let mut maps = self.maps();
        let entry = maps.account_pauses.entry(account.into()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How long new orders of `account` are still paused, if they are.
    pub fn account_paused(&self, account: &str) -> Option<Duration> {
        let now = self.now();
        let mut maps = self.maps();
        let until = *maps.account_pauses.get(account)?;
        if until <= now {
            maps.account_pauses.remove(account);
            return None;
        }
        Some(until - now)
    }

    pub fn issuer_succeeded(&self, key: &str) {
        self.maps().issuer_failures.remove(key);
    }

    /// Whether this is the first `expiring` report for Certificate `key` at `not_after`
    /// (and remembers it).
    pub fn first_expiring(&self, key: &str, not_after: &str) -> bool {
        self.maps()
            .expiring_reported
            .insert(key.into(), not_after.into())
            .as_deref()
            != Some(not_after)
    }

    /// Reads and updates, in one step under one lock (two renewals deciding at once see
    /// each other's decision), the restart state of `workload` at `now`. Then every
    /// entry that decides nothing any more is dropped: none pending and the last
    /// restart `quiet` or longer ago (or none).
    pub fn update_restart<R>(
        &self,
        workload: &str,
        now: Timestamp,
        quiet: Duration,
        update: impl FnOnce(&mut WorkloadRestart) -> R,
    ) -> R {
        let mut maps = self.maps();
        let result = update(maps.restarts.entry(workload.into()).or_default());
        let quiet = jiff::SignedDuration::try_from(quiet).unwrap_or(jiff::SignedDuration::MAX);
        maps.restarts.retain(|_, r| {
            r.pending || r.last.is_some_and(|last| now.duration_since(last) < quiet)
        });
        result
    }

    /// A new leadership term: forget what another leader may have changed meanwhile
    /// (waits, versions, ARI checks, failure counts). Nothing here is lost for good:
    /// account keys are stored before they are registered.
    pub fn new_term(&self) {
        *self.maps() = Maps::default();
    }

    /// Forgets everything about a deleted Certificate.
    pub fn forget_certificate(&self, key: &str) {
        let mut maps = self.maps();
        maps.next_poll.remove(key);
        maps.written_status.remove(key);
        maps.written_secrets.remove(key);
        maps.ari_checks.remove(key);
        maps.expiring_reported.remove(key);
        // Its deploy targets' (`key#target`).
        let targets = format!("{key}#");
        maps.expiring_reported
            .retain(|k, _| !k.starts_with(&targets));
    }

    /// Forgets everything about a deleted issuer.
    pub fn forget_issuer(&self, key: &str) {
        let mut maps = self.maps();
        maps.issuer_failures.remove(key);
    }

    /// How many entries all maps hold (for tests and metrics).
    pub fn len(&self) -> usize {
        self.maps().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when told.
    struct TestClock {
        start: Instant,
        wall: Timestamp,
        offset: Mutex<Duration>,
    }

    impl TestClock {
        fn advance(&self, by: Duration) {
            *self.offset.lock().unwrap() += by;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }

        fn wall(&self) -> Timestamp {
            self.wall + *self.offset.lock().unwrap()
        }
    }

    fn memory() -> (Arc<TestClock>, Memory) {
        let clock = Arc::new(TestClock {
            start: Instant::now(),
            wall: "2026-11-29T10:00:00Z".parse().unwrap(),
            offset: Mutex::new(Duration::ZERO),
        });
        (clock.clone(), Memory::new(clock))
    }

    #[test]
    fn waits_follow_the_injected_clock() {
        let (clock, m) = memory();
        m.set_poll_wait("ns/a", "h1", Duration::from_secs(10));
        assert_eq!(m.poll_wait("ns/a", "h1"), Some(Duration::from_secs(10)));
        assert_eq!(m.poll_wait("ns/a", "h2"), None, "another request: no wait");
        *clock.offset.lock().unwrap() = Duration::from_secs(4);
        assert_eq!(m.poll_wait("ns/a", "h1"), Some(Duration::from_secs(6)));
        *clock.offset.lock().unwrap() = Duration::from_secs(10);
        assert_eq!(m.poll_wait("ns/a", "h1"), None);

        m.set_next_ari_check("ns/a", "serial", Duration::from_secs(60));
        assert!(!m.ari_due("ns/a", "serial"));
        assert!(m.ari_due("ns/a", "other-serial"));
        *clock.offset.lock().unwrap() = Duration::from_secs(70);
        assert!(m.ari_due("ns/a", "serial"));
    }

    #[test]
    fn issuer_delay_doubles_to_five_minutes_and_resets() {
        let (_, m) = memory();
        let delays: Vec<u64> = (0..8).map(|_| m.issuer_failed("i").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        m.issuer_succeeded("i");
        assert_eq!(m.issuer_failed("i").as_secs(), 5);
    }

    #[test]
    fn error_waits_are_per_account_since_a_time_and_url_waits_are_taken() {
        let (clock, m) = memory();
        let before = m.now();
        clock.advance(Duration::from_secs(1));
        let since = m.now();
        m.record_error_wait("acct/1", Duration::from_secs(5));
        m.record_error_wait("acct/1", Duration::from_secs(15));
        m.record_error_wait("acct/1", Duration::from_secs(1));
        assert_eq!(
            m.error_wait_since("acct/1", since),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            m.error_wait_since("acct/1", before),
            Some(Duration::from_secs(15))
        );
        assert_eq!(m.error_wait_since("acct/2", since), None, "another account");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            m.error_wait_since("acct/1", m.now()),
            None,
            "an older attempt's"
        );
        m.record_url_wait("https://ca/order/1", Duration::from_secs(3));
        assert_eq!(
            m.take_url_wait("https://ca/order/2"),
            None,
            "another order's"
        );
        assert_eq!(
            m.take_url_wait("https://ca/order/1"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(m.take_url_wait("https://ca/order/1"), None, "taken");
    }

    #[test]
    fn untaken_waits_are_dropped_after_seconds_or_an_hour() {
        let (clock, m) = memory();
        for i in 0..1000 {
            m.record_url_wait(&format!("https://ca/order/{i}"), Duration::from_secs(1));
            m.set_dns_change(
                &format!("_acme-challenge.{i}.example."),
                "v",
                Some("C1".into()),
            );
            m.record_error_wait("acct/1", Duration::from_secs(15));
        }
        // Untaken URL waits go seconds after their wait; the rest stays.
        m.record_url_wait("https://ca/order/long", Duration::from_secs(600));
        clock.advance(URL_WAIT_MEMORY + Duration::from_secs(1));
        m.record_url_wait("https://ca/order/next", Duration::from_secs(1));
        {
            let maps = m.maps();
            assert_eq!(maps.url_waits.len(), 2, "the long wait and the new one");
            assert_eq!(maps.dns_changes.len(), 1000);
            assert!(!maps.error_waits.is_empty());
        }
        clock.advance(WAIT_MEMORY);
        m.record_url_wait("https://ca/order/new", Duration::from_secs(1));
        let maps = m.maps();
        assert_eq!(maps.url_waits.len(), 1, "only the new wait is left");
        assert!(maps.error_waits.is_empty(), "{:?}", maps.error_waits);
        assert!(maps.dns_changes.is_empty(), "{:?}", maps.dns_changes);
    }

    #[test]
    fn maps_return_to_empty_after_many_objects_come_and_go() {
        let (clock, m) = memory();
        for i in 0..1000 {
            let cert = object_key(Some("ns"), &format!("cert-{i}"));
            m.set_poll_wait(&cert, "hash", Duration::from_secs(1));
            m.set_written_status(&cert, i, None);
            m.set_written_secret(&cert, "tls", Some(i));
            m.set_written_secret(&cert, "next-key", Some(i));
            m.set_next_ari_check(&cert, "serial", Duration::from_secs(3600));
            assert!(m.first_expiring(&cert, "2027-01-01T00:00:00Z"));
            m.record_url_wait(&format!("https://ca/order/{i}"), Duration::from_secs(1));
            let record = format!("_acme-challenge.{i}.example.");
            m.set_dns_change(&record, "v", Some("C1".into()));
            m.record_error_wait(&format!("https://ca/acct/{i}"), Duration::from_secs(15));
            let issuer = object_key(None, &format!("issuer-{i}"));
            m.issuer_failed(&issuer);
            // A workload restarted, and a second renewal waiting for its minute.
            let (now, minute) = (m.wall_now(), Duration::from_secs(60));
            let workload = format!("Deployment/ns/app-{i}");
            m.update_restart(&workload, now, minute, |r| r.last = Some(now));
            let workload = format!("Deployment/ns/web-{i}");
            m.update_restart(&workload, now, minute, |r| r.pending = true);
        }
        assert_eq!(m.len(), 11 * 1000);
        for i in 0..1000 {
            m.forget_certificate(&object_key(Some("ns"), &format!("cert-{i}")));
            m.forget_issuer(&object_key(None, &format!("issuer-{i}")));
        }
        assert_eq!(
            m.len(),
            5 * 1000,
            "only the restarts, the CA's waits (by order URL and account) and the DNS \
             providers' pending changes are left"
        );
        // The delayed restarts are made; a minute later any look drops them all.
        let minute = Duration::from_secs(60);
        for i in 0..1000 {
            let now = m.wall_now();
            let workload = format!("Deployment/ns/web-{i}");
            m.update_restart(&workload, now, minute, |r| {
                *r = WorkloadRestart {
                    last: Some(now),
                    pending: false,
                }
            });
        }
        *clock.offset.lock().unwrap() = minute;
        m.update_restart("Deployment/ns/other", m.wall_now(), minute, |r| r.pending);
        // Nobody took the CA's waits: an hour on, the next one recorded sweeps them.
        clock.advance(WAIT_MEMORY);
        m.record_url_wait("https://ca/order/last", Duration::from_secs(1));
        assert_eq!(
            m.take_url_wait("https://ca/order/last"),
            Some(Duration::from_secs(1))
        );
        assert!(m.is_empty(), "{} entries left", m.len());

        m.set_written_status("ns/a", 1, None);
        m.issuer_failed("i");
        m.first_expiring("ns/a", "2027-01-01T00:00:00Z");
        let now = m.wall_now();
        m.update_restart("Deployment/ns/a", now, minute, |r| r.pending = true);
        m.new_term();
        assert!(m.is_empty(), "a new term starts afresh");

        // Removing the last written Secret drops the Certificate's entry as well.
        m.set_written_secret("ns/x", "tls", Some(1));
        m.set_written_secret("ns/x", "tls", None);
        assert!(m.is_empty());
    }

    #[test]
    fn expiring_is_reported_once_per_not_after() {
        let (_, m) = memory();
        assert!(m.first_expiring("ns/a", "2027-01-01T00:00:00Z"));
        assert!(!m.first_expiring("ns/a", "2027-01-01T00:00:00Z"));
        assert!(m.first_expiring("ns/b", "2027-01-01T00:00:00Z"));
        assert!(
            m.first_expiring("ns/a", "2027-04-01T00:00:00Z"),
            "a new notAfter"
        );
        m.forget_certificate("ns/a");
        assert!(
            m.first_expiring("ns/a", "2027-04-01T00:00:00Z"),
            "forgotten"
        );
    }

    #[test]
    fn wall_time_follows_the_injected_clock() {
        let (clock, m) = memory();
        let start = m.wall_now();
        *clock.offset.lock().unwrap() = Duration::from_secs(90);
        assert_eq!(
            m.wall_now().duration_since(start),
            jiff::SignedDuration::from_secs(90)
        );
    }

    #[test]
    fn account_pauses_are_shared_keep_the_longest_and_expire() {
        let (clock, memory) = memory();
        assert_eq!(memory.account_paused("acct-1"), None);
        memory.pause_account("acct-1", Duration::from_secs(60));
        memory.pause_account("acct-1", Duration::from_secs(10));
        assert_eq!(
            memory.account_paused("acct-1"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(memory.account_paused("acct-2"), None);
        *clock.offset.lock().unwrap() = Duration::from_secs(61);
        assert_eq!(memory.account_paused("acct-1"), None);
        assert_eq!(memory.len(), 0);
    }
}
