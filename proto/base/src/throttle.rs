//! Login throttling: after a few failed logins for one agent, or from one client address,
//! further attempts are refused for a delay that doubles with each failure (DESIGN.md §9).
//! The agent-node throttles desk logins with it, the router's Admin API unknown operator
//! tokens per address. A pure type: callers pass the time, so the rules are unit-tested
//! without a clock.

use std::collections::HashMap;

/// Failed logins of one agent before its attempts are delayed.
pub const AGENT_FREE_FAILURES: u32 = 5;
/// Failed logins from one client address before its attempts are delayed (a contact
/// center's agents may share one address).
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// The first delay once the free failures are used up; it doubles with each failure.
pub const FIRST_DELAY_MS: i64 = 1_000;
/// The longest delay.
pub const MAX_DELAY_MS: i64 = 300_000;
/// A key with no failure for this long is forgotten.
pub const FORGET_AFTER_MS: i64 = 900_000;
/// Keys kept at most (agents and addresses together); the oldest are forgotten first.
pub const MAX_KEYS: usize = 100_000;

/// What the throttle says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt may go ahead.
    Allowed,
    /// Refused without checking the credentials; retry after this many ms.
    Wait(i64),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure_ms: i64,
    blocked_until_ms: i64,
}

/// Failed logins by key (`agent:<id>`, `addr:<ip>`), bounded in size.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    records: HashMap<String, Record>,
}

impl LoginThrottle {
    /// Returns whether an attempt on `key` may go ahead at `now_ms`.
    pub fn check(&self, key: &str, now_ms: i64) -> Verdict {
        match self.records.get(key) {
            Some(r) if r.blocked_until_ms > now_ms => Verdict::Wait(r.blocked_until_ms - now_ms),
            _ => Verdict::Allowed,
        }
    }

    /// Records a failed attempt on `key`, allowed `free` failures before delays start;
    /// returns the delay now imposed (0 while failures are free).
    pub fn failed(&mut self, key: &str, free: u32, now_ms: i64) -> i64 {
        if self.records.len() >= MAX_KEYS && !self.records.contains_key(key) {
            self.forget_old(now_ms);
        }
        let record = self.records.entry(key.to_string()).or_insert(Record {
            failures: 0,
            last_failure_ms: now_ms,
            blocked_until_ms: 0,
        });
        if now_ms - record.last_failure_ms > FORGET_AFTER_MS {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure_ms = now_ms;
        let delay = delay_after(record.failures, free);
        if delay > 0 {
            record.blocked_until_ms = now_ms + delay;
        }
        delay
    }

    /// Forgets the failures of `key` (a successful login).
    pub fn succeeded(&mut self, key: &str) {
        self.records.remove(key);
    }

    /// Returns how many keys are remembered.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Returns whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drops keys quiet for [`FORGET_AFTER_MS`]; if that frees too little, the older half.
    fn forget_old(&mut self, now_ms: i64) {
        self.records.retain(|_, r| {
            now_ms - r.last_failure_ms <= FORGET_AFTER_MS || r.blocked_until_ms > now_ms
        });
        if self.records.len() >= MAX_KEYS {
            let mut times: Vec<i64> = self.records.values().map(|r| r.last_failure_ms).collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            self.records.retain(|_, r| r.last_failure_ms > cut);
        }
    }
}

/// The delay after the `failures`-th failure when `free` are allowed.
pub fn delay_after(failures: u32, free: u32) -> i64 {
    if failures <= free {
        return 0;
    }
    let doublings = (failures - free - 1).min(20);
    (FIRST_DELAY_MS << doublings).min(MAX_DELAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_failures_then_doubling_delays_up_to_the_cap() {
        assert_eq!(delay_after(5, 5), 0);
        assert_eq!(delay_after(6, 5), 1_000);
        assert_eq!(delay_after(7, 5), 2_000);
        assert_eq!(delay_after(8, 5), 4_000);
        assert_eq!(delay_after(40, 5), MAX_DELAY_MS);
        assert_eq!(delay_after(u32::MAX, 5), MAX_DELAY_MS);
    }

    #[test]
    fn a_key_is_refused_while_blocked_and_allowed_after() {
        let mut t = LoginThrottle::default();
        for i in 0..AGENT_FREE_FAILURES {
            assert_eq!(t.failed("agent:emma", AGENT_FREE_FAILURES, i as i64), 0);
            assert_eq!(t.check("agent:emma", i as i64), Verdict::Allowed);
        }
        assert_eq!(t.failed("agent:emma", AGENT_FREE_FAILURES, 100), 1_000);
        assert_eq!(t.check("agent:emma", 100), Verdict::Wait(1_000));
        assert_eq!(t.check("agent:emma", 1_099), Verdict::Wait(1));
        assert_eq!(t.check("agent:emma", 1_100), Verdict::Allowed);
        assert_eq!(
            t.check("agent:luca", 100),
            Verdict::Allowed,
            "other keys unaffected"
        );
        assert_eq!(t.failed("agent:emma", AGENT_FREE_FAILURES, 1_100), 2_000);
    }

    #[test]
    fn success_forgets_and_quiet_keys_start_over() {
        let mut t = LoginThrottle::default();
        for i in 0..10 {
            t.failed("addr:10.0.0.1", 5, i);
        }
        t.succeeded("addr:10.0.0.1");
        assert_eq!(t.check("addr:10.0.0.1", 10), Verdict::Allowed);
        assert!(t.is_empty());
        for i in 0..6 {
            t.failed("agent:a", 5, i);
        }
        // Long after the last failure, the count starts over.
        let later = 5 + FORGET_AFTER_MS + 1;
        assert_eq!(t.failed("agent:a", 5, later), 0);
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let mut t = LoginThrottle::default();
        for i in 0..(MAX_KEYS + 10) {
            t.failed(&format!("addr:{i}"), 20, i as i64);
        }
        assert!(t.len() <= MAX_KEYS, "{} keys", t.len());
        // The newest keys are kept.
        assert!(t.records.contains_key(&format!("addr:{}", MAX_KEYS + 9)));
    }
}
