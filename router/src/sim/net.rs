//! Connections to the routers: a few lazily connected HTTP/2 channels per address, the
//! address in use, and the move to the next address when a call fails with UNAVAILABLE.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::SimError;

/// Channels (HTTP/2 connections) per router address; spreads the many long-lived customer
/// streams over several connections so no per-connection stream limit is reached.
const CHANNELS_PER_ROUTER: usize = 4;
/// Timeout of a TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Wall-clock timeout of one unary call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts after UNAVAILABLE.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The routers the simulator talks to.
#[derive(Debug)]
pub struct Routers {
    addresses: Vec<String>,
    channels: Vec<Vec<Channel>>,
    current: AtomicUsize,
    next_channel: AtomicUsize,
    failovers: AtomicU64,
}

impl Routers {
    /// Returns lazily connecting channels to `addresses` (`host:port` or `http://host:port`).
    pub fn new(addresses: &[String]) -> Result<Self, SimError> {
        if addresses.is_empty() {
            return Err(SimError::Options("no router address given".into()));
        }
        let mut channels = Vec::with_capacity(addresses.len());
        for address in addresses {
            let uri = if address.contains("://") {
                address.clone()
            } else {
                format!("http://{address}")
            };
            let endpoint = Endpoint::from_shared(uri)
                .map_err(|e| SimError::Options(format!("invalid router address {address:?}: {e}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10));
            channels.push(
                (0..CHANNELS_PER_ROUTER)
                    .map(|_| endpoint.connect_lazy())
                    .collect(),
            );
        }
        Ok(Self {
            addresses: addresses.to_vec(),
            channels,
            current: AtomicUsize::new(0),
            next_channel: AtomicUsize::new(0),
            failovers: AtomicU64::new(0),
        })
    }

    /// Returns the number of router addresses.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Returns true when there is no address (never, after `new`).
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// Returns how often calls moved to another router.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Returns the index of the router in use and one of its channels.
    pub fn channel(&self) -> (usize, Channel) {
        let router = self.current.load(Ordering::Relaxed) % self.channels.len();
        let pool = &self.channels[router];
        let i = self.next_channel.fetch_add(1, Ordering::Relaxed) % pool.len();
        (router, pool[i].clone())
    }

    /// Moves to the next router after router `failed` answered UNAVAILABLE (once per failure,
    /// even when many calls notice it at the same time).
    pub fn failed(&self, failed: usize) {
        if self.channels.len() < 2 {
            return;
        }
        let next = (failed + 1) % self.channels.len();
        if self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from = %self.addresses[failed], to = %self.addresses[next], "router unavailable, moving on");
        }
    }

    /// Runs a unary call with a timeout, retrying on UNAVAILABLE (or a timeout) on the next
    /// router, at most `attempts` times in all.
    pub async fn call<T, F, Fut>(&self, attempts: u32, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut last = Status::unavailable("no attempt made");
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE * attempt.min(10)).await;
            }
            let (router, channel) = self.channel();
            match tokio::time::timeout(CALL_TIMEOUT, call(channel)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if is_unavailable(&status) => {
                    self.failed(router);
                    last = status;
                }
                Ok(Err(status)) => return Err(status),
                Err(_) => {
                    self.failed(router);
                    last = Status::deadline_exceeded("call timed out");
                }
            }
        }
        Err(last)
    }
}

/// Returns true for errors that mean "try another router".
pub fn is_unavailable(status: &Status) -> bool {
    status.code() == Code::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failover_moves_to_the_next_router_once_per_failure() {
        let routers =
            Routers::new(&["127.0.0.1:1".to_string(), "http://127.0.0.1:2".to_string()]).unwrap();
        assert_eq!(routers.channel().0, 0);
        routers.failed(0);
        routers.failed(0); // a second caller noticing the same failure changes nothing
        assert_eq!(routers.channel().0, 1);
        assert_eq!(routers.failovers(), 1);
        routers.failed(1);
        assert_eq!(routers.channel().0, 0);
        assert!(Routers::new(&[]).is_err());
        assert!(Routers::new(&["not a uri\u{7f}".to_string()]).is_err());
    }

    #[tokio::test]
    async fn calls_to_a_dead_router_give_up_after_the_attempts() {
        let routers = Routers::new(&["127.0.0.1:1".to_string()]).unwrap();
        let result: Result<(), Status> = routers
            .call(2, |channel| async move {
                let mut client = centralino_proto::v1::admin_client::AdminClient::new(channel);
                client
                    .get_snapshot(centralino_proto::v1::GetSnapshotRequest {})
                    .await
                    .map(|r| r.map(|_| ()))
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
    }
}
