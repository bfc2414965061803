//! Group commit: writes from many actors are merged into one store transaction.
//!
//! A submitter gets a future that resolves when its ops are durable. The batcher takes the
//! first waiting write, then everything else that arrives within [`GroupCommit::new`]'s
//! `max_delay` or until `max_ops` (etcd allows 128 operations per transaction), and applies
//! the batch at once; submission order is kept.

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

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// Handle to the batcher task.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<(Vec<Op>, Reply)>,
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
        mut stop: watch::Receiver<bool>,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Vec<Op>, Reply)>();
        let max_ops = max_ops.max(1);
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    item = rx.recv() => item,
                    _ = stop.changed() => None,
                };
                let Some(first) = first else { break };
                let mut count = first.0.len();
                let mut writes = vec![first.0];
                let mut replies = vec![first.1];
                let deadline = tokio::time::Instant::now() + max_delay;
                while count < max_ops {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some((more, reply))) => {
                            if count > 0 && count + more.len() > max_ops {
                                // Too large for this batch: commit it now, start the next
                                // batch with this write.
                                commit_batch(
                                    &store,
                                    std::mem::take(&mut writes),
                                    std::mem::take(&mut replies),
                                )
                                .await;
                                count = 0;
                            }
                            count += more.len();
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
            while let Some((ops, reply)) = rx.recv().await {
                commit(&store, ops, vec![reply]).await;
            }
        });
        Self { tx }
    }

    /// Submits `ops`; the returned receiver resolves once they are durable.
    pub fn submit(&self, ops: Vec<Op>) -> Durable {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, reply))) = self.tx.send((ops, reply)) {
            let _ = reply.send(Err(StoreError::Closed));
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
