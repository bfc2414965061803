//! Connections to the routers (or the agent-nodes): a few lazily connected HTTP/2 channels
//! per address, and the move to the next address when a call fails with UNAVAILABLE.
//!
//! Each caller keeps its own [`Cursor`] (customers start on different routers, agents on
//! different agent-nodes) and moves it on by itself. A cluster may answer UNAVAILABLE for a
//! few seconds while a partition changes owner, so calls keep retrying across the addresses
//! for up to a wall-clock budget ([`RETRY_BUDGET`]); the interval from the first failure to
//! the first answer of such a call is recorded as an outage.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::error::SimError;

/// Channels (HTTP/2 connections) per router address; spreads the many long-lived customer
/// streams over several connections so no per-connection stream limit is reached.
const CHANNELS_PER_ROUTER: usize = 4;
/// Timeout of a TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Wall-clock timeout of one unary call attempt (a router that hangs, e.g. stopped, is left
/// for the next one after this long).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// Pause between attempts after UNAVAILABLE.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long (wall time) a customer call keeps retrying across the routers on UNAVAILABLE
/// before giving up; covers a failover (lease expiry and partition claim) and etcd
/// unavailable for 30 s (the cluster refuses everything meanwhile; a widget keeps trying).
pub const RETRY_BUDGET: Duration = Duration::from_secs(45);
/// HTTP/2 keep-alive ping interval and timeout: a stopped or vanished server breaks the
/// streams within a few seconds.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A caller's position in the address list: the address it uses until that one fails.
#[derive(Debug, Default)]
pub struct Cursor(AtomicUsize);

impl Cursor {
    /// Returns a cursor starting at address `start` (taken modulo the number of addresses).
    pub fn new(start: usize) -> Self {
        Self(AtomicUsize::new(start))
    }
}

/// The routers (or agent-nodes) the simulator talks to.
#[derive(Debug)]
pub struct Routers {
    addresses: Vec<String>,
    channels: Vec<Vec<Channel>>,
    /// The cursor of callers without their own (admin calls).
    current: Cursor,
    next_channel: AtomicUsize,
    failovers: AtomicU64,
    /// Outages seen by callers: wall Unix ms of the first failure and of the first answer.
    outages: Mutex<Vec<(i64, i64)>>,
}

/// Returns the wall clock as Unix ms (outages are measured in wall time, not simulated).
pub fn wall_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
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
                .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
            channels.push(
                (0..CHANNELS_PER_ROUTER)
                    .map(|_| endpoint.connect_lazy())
                    .collect(),
            );
        }
        Ok(Self {
            addresses: addresses.to_vec(),
            channels,
            current: Cursor::default(),
            next_channel: AtomicUsize::new(0),
            failovers: AtomicU64::new(0),
            outages: Mutex::new(Vec::new()),
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

    /// Returns how often callers moved to another address.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Returns the address at `index`.
    pub fn address(&self, index: usize) -> &str {
        &self.addresses[index % self.addresses.len()]
    }

    /// Returns the index of the address `cursor` points at and one of its channels.
    pub fn channel(&self, cursor: &Cursor) -> (usize, Channel) {
        let at = cursor.0.load(Ordering::Relaxed) % self.channels.len();
        let pool = &self.channels[at];
        let i = self.next_channel.fetch_add(1, Ordering::Relaxed) % pool.len();
        (at, pool[i].clone())
    }

    /// Moves `cursor` to the next address after address `failed` did not answer (once per
    /// failure, even when several calls sharing the cursor notice it at the same time).
    pub fn failed(&self, cursor: &Cursor, failed: usize) {
        if self.channels.len() < 2 {
            return;
        }
        let next = (failed + 1) % self.channels.len();
        let current = cursor.0.load(Ordering::Relaxed);
        if current % self.channels.len() == failed
            && cursor
                .0
                .compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(from = %self.addresses[failed], to = %self.addresses[next], "address unavailable, moving on");
        }
    }

    /// Records an outage: wall Unix ms of the first failure and of the first answer after it.
    pub fn record_outage(&self, from_ms: i64, to_ms: i64) {
        self.outages.lock().push((from_ms, to_ms.max(from_ms)));
    }

    /// Returns the outages recorded so far.
    pub fn outages(&self) -> Vec<(i64, i64)> {
        self.outages.lock().clone()
    }

    /// Runs an admin call once on the shared cursor (no retries, no outage recorded).
    pub async fn call_once<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call(&self.current, Duration::ZERO, call).await
    }

    /// Runs a unary call with a timeout per attempt, retrying on UNAVAILABLE (or a timeout)
    /// on the next address every [`RETRY_PAUSE`] until `budget` (wall time) has passed; one
    /// attempt at least. A call that succeeded (or got a definite answer) after failures
    /// records the outage.
    pub async fn call<T, F, Fut>(
        &self,
        cursor: &Cursor,
        budget: Duration,
        mut call: F,
    ) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let began = tokio::time::Instant::now();
        let mut first_failure: Option<i64> = None;
        loop {
            let (at, channel) = self.channel(cursor);
            let status = match tokio::time::timeout(CALL_TIMEOUT, call(channel)).await {
                Ok(Ok(response)) => {
                    self.answered(first_failure);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if is_unavailable(&status) => status,
                Ok(Err(status)) => {
                    self.answered(first_failure);
                    return Err(status);
                }
                Err(_) => Status::deadline_exceeded("call timed out"),
            };
            first_failure.get_or_insert_with(wall_unix_ms);
            self.failed(cursor, at);
            if began.elapsed() + RETRY_PAUSE > budget {
                return Err(status);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn answered(&self, first_failure: Option<i64>) {
        if let Some(from) = first_failure {
            self.record_outage(from, wall_unix_ms());
        }
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
        let cursor = Cursor::default();
        assert_eq!(routers.channel(&cursor).0, 0);
        routers.failed(&cursor, 0);
        routers.failed(&cursor, 0); // a second caller noticing the same failure changes nothing
        assert_eq!(routers.channel(&cursor).0, 1);
        assert_eq!(routers.failovers(), 1);
        routers.failed(&cursor, 1);
        assert_eq!(routers.channel(&cursor).0, 0);
        let other = Cursor::new(3);
        assert_eq!(routers.channel(&other).0, 1, "cursors are independent");
        assert!(Routers::new(&[]).is_err());
        assert!(Routers::new(&["not a uri\u{7f}".to_string()]).is_err());
    }

    #[tokio::test]
    async fn calls_to_a_dead_router_give_up_after_the_budget() {
        let routers = Routers::new(&["127.0.0.1:1".to_string()]).unwrap();
        let began = std::time::Instant::now();
        let result: Result<(), Status> = routers
            .call(
                &Cursor::default(),
                Duration::from_millis(500),
                |channel| async move {
                    let mut client = centralino_proto::v1::admin_client::AdminClient::new(channel);
                    client
                        .get_snapshot(centralino_proto::v1::GetSnapshotRequest {})
                        .await
                        .map(|r| r.map(|_| ()))
                },
            )
            .await;
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
        assert!(began.elapsed() >= Duration::from_millis(400));
        assert!(
            routers.outages().is_empty(),
            "no answer, no outage interval"
        );
        routers.record_outage(10, 5);
        assert_eq!(routers.outages(), vec![(10, 10)]);
    }
}
