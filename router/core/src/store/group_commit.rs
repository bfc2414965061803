//! Group commit: writes from many actors are merged into one store transaction.
//!
//! A submitter gets a future that resolves when its ops are durable. The batcher takes the
//! first waiting write, then everything else that arrives within [`GroupCommit::new`]'s
//! `max_delay` or until `max_ops` (etcd allows 128 operations per transaction) or
//! `max_bytes` (etcd refuses requests over 1.5 MiB), and applies the batch at once;
//! submission order is kept.
//!
//! Bounded (issue 10): at most `max_queued` writes wait; beyond that a write is shed at
//! once with [`StoreError::Overloaded`] (RESOURCE_EXHAUSTED to a client), and a single
//! write larger than `max_bytes` is refused alone with [`StoreError::TooLarge`], never
//! failing the batch of other writers. Both are counted
//! (`centralino_store_writes_shed_total{reason}`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::histogram;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::{Op, Store, StoreError};

/// Default upper bound of operations in one transaction (etcd's `--max-txn-ops` is 128).
pub const DEFAULT_MAX_OPS: usize = 120;
/// Default time a batch waits for more writes.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(2);
/// Default largest batch in bytes (under etcd's 1.5 MiB request limit).
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// Default number of writes that may wait.
pub const DEFAULT_MAX_QUEUED: usize = 100_000;

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Bounds of a [`GroupCommit`].
#[derive(Debug, Clone, Copy)]
pub struct CommitLimits {
    /// Most operations in one transaction.
    pub max_ops: usize,
    /// Longest a batch waits for more writes.
    pub max_delay: Duration,
    /// Most bytes (keys and values) in one transaction; a larger single write is refused.
    pub max_bytes: usize,
    /// Most writes waiting; more are shed.
    pub max_queued: usize,
}

impl Default for CommitLimits {
    fn default() -> Self {
        Self {
            max_ops: DEFAULT_MAX_OPS,
            max_delay: DEFAULT_MAX_DELAY,
            max_bytes: DEFAULT_MAX_BYTES,
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }
}

impl CommitLimits {
    /// Returns the bounds `[limits]` configures (operations and delay at their defaults).
    pub fn from_config(limits: &crate::config::LimitsConfig) -> Self {
        Self {
            max_bytes: limits.commit_batch_bytes,
            max_queued: limits.commit_queue_writes,
            ..Self::default()
        }
    }
}

/// Handle to the batcher task.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<(Vec<Op>, usize, Reply)>,
    max_bytes: usize,
}

/// Resolves when a submitted write is durable.
pub type Durable = oneshot::Receiver<Result<(), StoreError>>;

impl GroupCommit {
    /// Starts a batcher in front of `store`; it stops when `stop` turns true or every
    /// handle is dropped, after flushing what it has.
    pub fn new(
        store: Arc<dyn Store>,
        max_ops: usize,
        max_delay: Duration,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let limits = CommitLimits {
            max_ops,
            max_delay,
            ..CommitLimits::default()
        };
        Self::with_limits(store, limits, stop)
    }

    /// Starts a batcher in front of `store` with the bounds `limits` (see [`Self::new`]).
    pub fn with_limits(
        store: Arc<dyn Store>,
        limits: CommitLimits,
        mut stop: watch::Receiver<bool>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<Op>, usize, Reply)>(limits.max_queued.max(1));
        let max_ops = limits.max_ops.max(1);
        let max_bytes = limits.max_bytes.max(1);
        let max_delay = limits.max_delay;
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    item = rx.recv() => item,
                    _ = stop.changed() => None,
                };
                let Some((ops, size, reply)) = first else {
                    break;
                };
                let (mut count, mut bytes) = (ops.len(), size);
                let mut writes = vec![ops];
                let mut replies = vec![reply];
                let deadline = tokio::time::Instant::now() + max_delay;
                while count < max_ops && bytes < max_bytes {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some((more, size, reply))) => {
                            if count > 0
                                && (count + more.len() > max_ops || bytes + size > max_bytes)
                            {
                                // Too large for this batch: commit it now, start the next
                                // batch with this write.
                                commit_batch(
                                    &store,
                                    std::mem::take(&mut writes),
                                    std::mem::take(&mut replies),
                                )
                                .await;
                                (count, bytes) = (0, 0);
                            }
                            count += more.len();
                            bytes += size;
                            writes.push(more);
                            replies.push(reply);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                commit_batch(&store, writes, replies).await;
            }
            // Flush writes still queued at shutdown.
            rx.close();
            while let Some((ops, _, reply)) = rx.recv().await {
                commit(&store, ops, vec![reply]).await;
            }
        });
        Self { tx, max_bytes }
    }

    /// Submits `ops`; the returned receiver resolves once they are durable — or at once
    /// with [`StoreError::TooLarge`] (larger than a batch may be) or
    /// [`StoreError::Overloaded`] (too many writes wait).
    pub fn submit(&self, ops: Vec<Op>) -> Durable {
        let (reply, rx) = oneshot::channel();
        let size: usize = ops.iter().map(Op::size).sum();
        if size > self.max_bytes {
            crate::metrics::store_write_shed("too_large");
            warn!(
                bytes = size,
                max = self.max_bytes,
                "write larger than a store batch refused"
            );
            let _ = reply.send(Err(StoreError::TooLarge {
                bytes: size,
                max: self.max_bytes,
            }));
            return rx;
        }
        match self.tx.try_send((ops, size, reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full((_, _, reply))) => {
                crate::metrics::store_write_shed("queue_full");
                let _ = reply.send(Err(StoreError::Overloaded));
            }
            Err(mpsc::error::TrySendError::Closed((_, _, reply))) => {
                let _ = reply.send(Err(StoreError::Closed));
            }
        }
        rx
    }

    /// Submits `ops` and waits until they are durable.
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.submit(ops).await.unwrap_or(Err(StoreError::Closed))
    }
}

async fn commit(store: &Arc<dyn Store>, ops: Vec<Op>, replies: Vec<Reply>) {
    if replies.is_empty() {
        return;
    }
    let started = Instant::now();
    let count = ops.len();
    let result = if ops.is_empty() {
        Ok(())
    } else {
        store.apply(ops).await
    };
    record(started, count, &result);
    for reply in replies {
        let _ = reply.send(result.clone());
    }
}

/// Commits the writes of several writers in one batch; each writer gets its own result
/// (a fencing store refuses only the writes of partitions this router lost).
async fn commit_batch(store: &Arc<dyn Store>, writes: Vec<Vec<Op>>, replies: Vec<Reply>) {
    if replies.is_empty() {
        return;
    }
    let started = Instant::now();
    let count: usize = writes.iter().map(Vec::len).sum();
    let writers = writes.len();
    let mut results = store.apply_batch(writes).await;
    results.resize(writers, Err(StoreError::Backend("missing result".into())));
    let overall = results
        .iter()
        .find(|r| r.is_err())
        .cloned()
        .unwrap_or(Ok(()));
    record(started, count, &overall);
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

fn record(started: Instant, count: usize, result: &Result<(), StoreError>) {
    histogram!("centralino_store_commit_seconds").record(started.elapsed().as_secs_f64());
    histogram!("centralino_store_batch_ops").record(count as f64);
    match result {
        Err(StoreError::Fenced(p)) => warn!(partition = p, ops = count, "write fenced"),
        Err(e) => warn!(error = %e, ops = count, "store commit failed"),
        Ok(()) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn concurrent_writes_are_merged_and_all_durable() {
        let store = Arc::new(MemoryStore::default());
        let (_stop_tx, stop) = watch::channel(false);
        let gc = GroupCommit::new(store.clone(), 120, Duration::from_millis(5), stop);
        let mut waits = Vec::new();
        for i in 0..200 {
            waits.push(gc.submit(vec![Op::Put(format!("k/{i:03}"), vec![1])]));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.scan("k/").await.unwrap().len(), 200);
        let txns = store.transactions();
        assert!(txns >= 2, "200 ops must not fit one 120-op transaction");
        assert!(
            txns <= 20,
            "expected batching, got {txns} transactions for 200 writes"
        );
    }

    #[tokio::test]
    async fn batches_are_bounded_in_bytes_and_a_too_large_write_fails_alone() {
        let store = Arc::new(MemoryStore::default());
        let (_stop_tx, stop) = watch::channel(false);
        let limits = CommitLimits {
            max_ops: 120,
            max_delay: Duration::from_millis(20),
            max_bytes: 10_000,
            max_queued: 1000,
        };
        let gc = GroupCommit::with_limits(store.clone(), limits, stop);
        let mut waits = Vec::new();
        for i in 0..20 {
            waits.push(gc.submit(vec![Op::Put(format!("k/{i:02}"), vec![7; 3000])]));
        }
        let big = gc.submit(vec![Op::Put("big".into(), vec![0; 20_000])]);
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert!(matches!(
            big.await.unwrap(),
            Err(StoreError::TooLarge { max: 10_000, .. })
        ));
        assert_eq!(store.scan("k/").await.unwrap().len(), 20);
        // 3 writes of ~3 KB fit a 10 KB batch: at least 7 transactions for 20 writes.
        assert!(store.transactions() >= 7, "{}", store.transactions());
        assert_eq!(store.get("big").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_writes_instead_of_growing() {
        let store = Arc::new(MemoryStore::default());
        let (_stop_tx, stop) = watch::channel(false);
        let limits = CommitLimits {
            max_ops: 1,
            max_delay: Duration::from_millis(1),
            max_bytes: 1 << 20,
            max_queued: 4,
        };
        let gc = GroupCommit::with_limits(store.clone(), limits, stop);
        // Submitted without yielding: the batcher takes none of them meanwhile.
        let waits: Vec<_> = (0..50)
            .map(|i| gc.submit(vec![Op::Put(format!("s/{i:02}"), vec![1])]))
            .collect();
        let mut shed = 0;
        for w in waits {
            match w.await.unwrap() {
                Ok(()) => {}
                Err(StoreError::Overloaded) => shed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(shed >= 45, "shed {shed}");
        let status = tonic::Status::from(StoreError::Overloaded);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn order_of_writes_is_kept() {
        let store = Arc::new(MemoryStore::default());
        let (_stop_tx, stop) = watch::channel(false);
        let gc = GroupCommit::new(store.clone(), 3, Duration::from_millis(1), stop);
        let a = gc.submit(vec![Op::Put("x".into(), b"1".to_vec())]);
        let b = gc.submit(vec![
            Op::Put("x".into(), b"2".to_vec()),
            Op::Put("y".into(), b"1".to_vec()),
        ]);
        let c = gc.submit(vec![Op::Delete("y".into())]);
        for w in [a, b, c] {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.get("x").await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get("y").await.unwrap(), None);
    }
}
