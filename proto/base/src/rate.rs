//! Keyed rate limits ([`governor`]'s GCRA) with a bounded number of keys, and the
//! RESOURCE_EXHAUSTED status with gRPC's retry pushback that every rate limit answers.
//!
//! A [`KeyedLimit`] remembers at most `max_keys` keys: beyond that it forgets the keys
//! back at their full burst ([`governor::RateLimiter::retain_recent`]), and if that is not
//! enough, starts afresh (an attacker with very many keys can at worst reset the limit,
//! never grow memory). A [`DirectLimit`] limits one thing, and lives (and goes away) with
//! the actor that owns it.
//!
//! Rates are per minute of the node's clock: on a simulated clock running `speed` times
//! faster than wall time, rates and bursts are scaled by `speed`. The limiters themselves
//! measure wall time.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;
use tonic::Status;

/// The gRPC metadata key carrying how long to wait before retrying, in milliseconds.
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// One keyed rate limit with a bounded number of keys; a rate of 0 is no limit.
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    quota: Option<Quota>,
    limiter: RwLock<Arc<DefaultKeyedRateLimiter<K>>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// Returns a limit of `per_minute` requests per key (0: no limit) with bursts of
    /// `burst`, on a clock running `speed` times faster than wall time, remembering at most
    /// `max_keys` keys.
    pub fn new((per_minute, burst): (u32, u32), speed: f64, max_keys: usize) -> Self {
        let quota = quota((per_minute, burst), speed);
        let quota_or_any = quota.unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
        Self {
            quota,
            limiter: RwLock::new(Arc::new(RateLimiter::keyed(quota_or_any))),
            max_keys: max_keys.max(1),
        }
    }

    /// Whether this limit limits anything (its rate is not 0).
    pub fn enabled(&self) -> bool {
        self.quota.is_some()
    }

    /// Counts one request of `key`; when `key` is over its rate, returns how long to wait.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        let limiter = self.limiter.read().clone();
        if limiter.len() >= self.max_keys {
            limiter.retain_recent();
            if limiter.len() >= self.max_keys {
                *self.limiter.write() = Arc::new(RateLimiter::keyed(quota));
            }
        }
        let limiter = self.limiter.read().clone();
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Returns how many keys the limit remembers.
    pub fn keys(&self) -> usize {
        self.limiter.read().len()
    }
}

/// Returns the quota of `per_minute` requests (None for 0: no limit) with bursts of
/// `burst`, on a clock running `speed` times faster than wall time.
fn quota((per_minute, burst): (u32, u32), speed: f64) -> Option<Quota> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    if per_minute == 0 {
        return None;
    }
    let per_wall_minute = per_minute as f64 * speed;
    let period = Duration::from_secs_f64(60.0 / per_wall_minute.max(1e-9));
    let burst = (burst.max(1) as f64 * speed.max(1.0)).min(u32::MAX as f64) as u32;
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .map(|q| q.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
}

/// One rate limit for one thing (no key), small enough to live inside the actor it limits
/// (a conversation's typing indicators): it goes away with its owner. A rate of 0 is no
/// limit.
pub struct DirectLimit {
    limiter: Option<DefaultDirectRateLimiter>,
}

impl DirectLimit {
    /// Returns a limit of `per_minute` requests (0: no limit) with bursts of `burst`, on a
    /// clock running `speed` times faster than wall time.
    pub fn new(rate: (u32, u32), speed: f64) -> Self {
        Self {
            limiter: quota(rate, speed).map(RateLimiter::direct),
        }
    }

    /// Counts one request; when over the rate, returns how long to wait.
    pub fn check(&self) -> Result<(), Duration> {
        match &self.limiter {
            None => Ok(()),
            Some(limiter) => limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }
}

/// RESOURCE_EXHAUSTED saying what was too frequent, with `wait` as the retry pushback
/// ([`RETRY_PUSHBACK`] metadata).
pub fn too_many(what: &str, wait: Duration) -> Status {
    let wait_ms = (wait.as_millis() as u64).max(1);
    let status = Status::resource_exhausted(format!("too many {what}; retry in {wait_ms} ms"));
    with_pushback(status, wait_ms)
}

/// Returns `status` with a retry pushback of `wait_ms` milliseconds.
pub fn with_pushback(mut status: Status, wait_ms: u64) -> Status {
    if let Ok(value) = wait_ms.to_string().parse() {
        status.metadata_mut().insert(RETRY_PUSHBACK, value);
    }
    status
}

/// Returns the retry pushback of `status` in milliseconds, if it has one.
pub fn pushback_ms(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(RETRY_PUSHBACK)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_burst_waits_and_others_do_not() {
        let limit = KeyedLimit::new((60, 3), 1.0, 10);
        for _ in 0..3 {
            limit.check(&1u32).unwrap();
        }
        let wait = limit.check(&1u32).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limit.check(&2u32).unwrap();
        let status = too_many("logins", wait);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!((1..=1000).contains(&pushback_ms(&status).unwrap()));
    }

    #[test]
    fn keys_stay_bounded_and_zero_is_off() {
        let limit = KeyedLimit::new((60, 1), 1.0, 10);
        for i in 0..1000u32 {
            let _ = limit.check(&i);
        }
        assert!(limit.keys() <= 10, "{}", limit.keys());
        let off = KeyedLimit::new((0, 1), 1.0, 10);
        assert!(!off.enabled());
        for _ in 0..10_000 {
            off.check(&1u32).unwrap();
        }
    }

    #[test]
    fn a_direct_limit_lets_its_burst_through_then_waits() {
        let limit = DirectLimit::new((120, 2), 1.0);
        limit.check().unwrap();
        limit.check().unwrap();
        let wait = limit.check().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        let off = DirectLimit::new((0, 1), 1.0);
        for _ in 0..1000 {
            off.check().unwrap();
        }
    }

    #[test]
    fn a_simulated_clock_scales_the_burst() {
        let limit = KeyedLimit::new((60, 3), 10.0, 10);
        for _ in 0..30 {
            limit.check(&1u32).unwrap();
        }
        assert!(limit.check(&1u32).is_err());
    }
}
