//! The faults of a soak, one at a time in a seeded order: the leader SIGKILLed (the other
//! replica takes the Lease; the killed one comes back), the API server restarted, the CA
//! frozen (SIGSTOP), the CA answering 500s, and new orders answered 429 with
//! `Retry-After` (both through the fault proxy).

use std::time::{Duration, Instant};

use caas_testbed::acme_proxy::{Exchange, Kind};
use caas_testbed::{AcmeProxy, Fault};

/// One fault of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Chaos {
    KillLeader,
    RestartApiServer,
    FreezeCa,
    ServerErrors,
    RateLimit,
}

pub const ALL: [Chaos; 5] = [
    Chaos::KillLeader,
    Chaos::RestartApiServer,
    Chaos::FreezeCa,
    Chaos::ServerErrors,
    Chaos::RateLimit,
];

impl Chaos {
    pub fn describe(self) -> &'static str {
        match self {
            Chaos::KillLeader => "leader SIGKILLed (the other replica takes the Lease)",
            Chaos::RestartApiServer => "API server restarted",
            Chaos::FreezeCa => "CA frozen (SIGSTOP) for 15 s",
            Chaos::ServerErrors => "CA answering 500 to every third request for 15 s",
            Chaos::RateLimit => "new orders answered 429 with Retry-After: 15 for 15 s",
        }
    }
}

/// How long the CA-side faults last, and the `Retry-After` of the 429s.
pub const WINDOW: Duration = Duration::from_secs(15);
pub const RETRY_AFTER_SECS: u64 = 15;

/// A small deterministic generator (xorshift64*): the schedule is reproducible from the
/// seed the report prints, without a dependency for it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `[lo, hi]`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// The five faults in a random order (each round has every fault once).
    pub fn round(&mut self) -> Vec<Chaos> {
        let mut round = ALL.to_vec();
        for i in (1..round.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            round.swap(i, j);
        }
        round
    }
}

/// Makes the proxy answer 500 to every third request.
pub fn server_errors(proxy: &AcmeProxy) {
    let mut n = 0u64;
    proxy.set_rule(move |_, _| {
        n += 1;
        n.is_multiple_of(3).then_some(Fault::ServerError)
    });
}

/// Makes the proxy answer every new order 429 with `Retry-After`.
pub fn rate_limit(proxy: &AcmeProxy) {
    proxy.set_rule(|e, _| {
        (e.kind == Kind::NewOrder).then_some(Fault::RateLimited {
            retry_after_secs: RETRY_AFTER_SECS,
        })
    });
}

/// Requests sent during a pause the CA asked for: new orders that arrived more than a
/// second after a 429 was answered (what was already on its way is not counted) and
/// before its `Retry-After` had passed.
pub fn sent_during_pauses(log: &[Exchange]) -> usize {
    let pauses: Vec<(Instant, Instant)> = (log.iter())
        .filter(|e| e.status == 429)
        .filter_map(|e| {
            let secs = e.retry_after?;
            Some((
                e.at + Duration::from_secs(1),
                e.at + Duration::from_secs(secs),
            ))
        })
        .collect();
    (log.iter())
        .filter(|e| e.kind == Kind::NewOrder)
        .filter(|e| pauses.iter().any(|(from, to)| e.at > *from && e.at < *to))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_has_every_fault_once_and_the_seed_repeats_it() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let round = a.round();
        assert_eq!(round, b.round());
        let mut sorted = round.clone();
        sorted.sort();
        assert_eq!(sorted, ALL);
        assert!((0..100).all(|_| (3..=5).contains(&a.between(3, 5))));
    }
}
