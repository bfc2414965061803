//! Rate limits on what customers' clients send (issue 10): conversation starts per client
//! address and per customer id, messages per client address and per conversation, with
//! governor's GCRA limiters ([`centralino_base::rate`]). A refusal is RESOURCE_EXHAUSTED with the wait in the
//! `grpc-retry-pushback-ms` metadata (gRPC's retry pushback), and counted
//! (`centralino_limits_refusals_total{limit}`).
//!
//! Each keyed limiter ([`centralino_base::rate::KeyedLimit`], shared with the agent-node's
//! login limit) remembers at most `limits.rate_limit_max_keys` keys: beyond that it
//! forgets the keys back at their full burst, and if that is not enough, starts afresh (an
//! attacker with very many addresses can at worst reset the limits, never grow memory).
//!
//! Rates are per minute of the node's clock: on a simulated clock running `speed` times
//! faster than wall time (the demo, the simulator's runs) the rates and bursts are scaled
//! by `speed`, so that simulated customers are limited as real ones would be. The
//! limiters themselves measure wall time.

use std::hash::Hash;
use std::net::IpAddr;

use centralino_base::rate::KeyedLimit;
use tonic::Status;

use crate::config::LimitsConfig;
use crate::metrics as m;

pub use centralino_base::rate::too_many;

/// One keyed limit, named for its metric label and for the refusal's message.
struct Keyed<K: Hash + Eq + Clone> {
    limit: KeyedLimit<K>,
    name: &'static str,
    what: &'static str,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(
        rate: (u32, u32),
        speed: f64,
        max_keys: usize,
        name: &'static str,
        what: &'static str,
    ) -> Self {
        Self {
            limit: KeyedLimit::new(rate, speed, max_keys),
            name,
            what,
        }
    }

    /// Counts one request of `key`; refuses it when `key` is over its rate.
    fn check(&self, key: &K) -> Result<(), Status> {
        self.limit.check(key).map_err(|wait| {
            m::limit_refused(self.name);
            too_many(self.what, wait)
        })
    }

    /// Returns how many keys the limiter remembers.
    fn keys(&self) -> usize {
        self.limit.keys()
    }
}

/// The customer API's rate limiters.
pub struct RateLimits {
    starts_addr: Keyed<IpAddr>,
    starts_customer: Keyed<String>,
    messages_addr: Keyed<IpAddr>,
    messages_conversation: Keyed<String>,
}

impl RateLimits {
    /// Returns the limiters `limits` configures, for a node clock running `speed` times
    /// faster than wall time (1 on the system clock).
    pub fn new(limits: &LimitsConfig, speed: f64) -> Self {
        let keys = limits.rate_limit_max_keys;
        Self {
            starts_addr: Keyed::new(
                (
                    limits.starts_per_minute_per_addr,
                    limits.starts_burst_per_addr,
                ),
                speed,
                keys,
                "start_addr",
                "conversation starts from this address",
            ),
            starts_customer: Keyed::new(
                (
                    limits.starts_per_minute_per_customer,
                    limits.starts_burst_per_customer,
                ),
                speed,
                keys,
                "start_customer",
                "conversation starts for this customer",
            ),
            messages_addr: Keyed::new(
                (
                    limits.messages_per_minute_per_addr,
                    limits.messages_burst_per_addr,
                ),
                speed,
                keys,
                "message_addr",
                "messages from this address",
            ),
            messages_conversation: Keyed::new(
                (
                    limits.messages_per_minute_per_conversation,
                    limits.messages_burst_per_conversation,
                ),
                speed,
                keys,
                "message_conversation",
                "messages in this conversation",
            ),
        }
    }

    /// Counts a conversation start from `addr` (when known) for `customer_id`.
    pub fn start(&self, addr: Option<IpAddr>, customer_id: &str) -> Result<(), Status> {
        if let Some(addr) = addr {
            self.starts_addr.check(&addr)?;
        }
        if !customer_id.is_empty() {
            self.starts_customer.check(&customer_id.to_string())?;
        }
        Ok(())
    }

    /// Counts a customer message from `addr` (when known) in `conversation_id`.
    pub fn message(&self, addr: Option<IpAddr>, conversation_id: &str) -> Result<(), Status> {
        if let Some(addr) = addr {
            self.messages_addr.check(&addr)?;
        }
        self.messages_conversation
            .check(&conversation_id.to_string())
    }

    /// Returns how many keys the limiters remember, all together.
    pub fn keys(&self) -> usize {
        self.starts_addr.keys()
            + self.starts_customer.keys()
            + self.messages_addr.keys()
            + self.messages_conversation.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig {
            starts_per_minute_per_addr: 60,
            starts_burst_per_addr: 3,
            starts_per_minute_per_customer: 0,
            rate_limit_max_keys: 10,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn an_address_over_its_burst_is_refused_with_a_pushback() {
        let rates = RateLimits::new(&limits(), 1.0);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            rates.start(Some(addr), "c").unwrap();
        }
        let refused = rates.start(Some(addr), "c").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let pushback: u64 = refused
            .metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("pushback");
        assert!((1..=1000).contains(&pushback), "{pushback}");
        // Another address is not affected.
        rates
            .start(Some("192.0.2.2".parse().unwrap()), "c")
            .unwrap();
    }

    #[test]
    fn keys_stay_bounded() {
        let rates = RateLimits::new(&limits(), 1.0);
        for i in 0..1000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = rates.start(Some(addr), "");
        }
        assert!(
            rates.starts_addr.keys() <= 10,
            "{}",
            rates.starts_addr.keys()
        );
    }

    #[test]
    fn a_simulated_clock_scales_the_rates() {
        // 60 per minute, burst 3, on a clock 10 times faster: a burst of 30.
        let rates = RateLimits::new(&limits(), 10.0);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..30 {
            rates.start(Some(addr), "").unwrap();
        }
        assert!(rates.start(Some(addr), "").is_err());
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let rates = RateLimits::new(&LimitsConfig::default().without_rate_limits(), 1.0);
        for _ in 0..10_000 {
            rates
                .start(Some("192.0.2.1".parse().unwrap()), "c")
                .unwrap();
        }
    }
}
