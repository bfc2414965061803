//! Durable state behind a small [`Store`] trait: the embedded store of standalone mode
//! ([`embedded::EmbeddedStore`], redb) and its in-memory twin for tests
//! ([`MemoryStore`]); cluster mode adds etcd behind the same trait. Writes from many actors
//! are merged by the [`group_commit::GroupCommit`] batcher into one transaction.

pub mod archive;
pub mod embedded;
pub mod events;
pub mod fault;
pub mod group_commit;
pub mod profiles;
pub mod records;

use std::collections::BTreeMap;

use async_trait::async_trait;
use parking_lot::Mutex;

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put(String, Vec<u8>),
    /// Removes `key`.
    Delete(String),
    /// Removes every key starting with the prefix.
    DeletePrefix(String),
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, database error).
    #[error("store backend: {0}")]
    Backend(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// This router no longer owns the partition: another router claimed it, so the write
    /// was refused (the fencing token did not match).
    #[error("partition {0} is owned by another router")]
    Fenced(u32),
    /// Too many writes wait for the store: this one was shed (the caller retries later).
    #[error("the store is overloaded; retry later")]
    Overloaded,
    /// One write is larger than a store transaction may be.
    #[error("a write of {bytes} bytes is larger than the store accepts ({max} bytes)")]
    TooLarge {
        /// Size of the write (keys and values).
        bytes: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The store has no room for the write (disk full, a quota reached: redb's ENOSPC or
    /// EDQUOT, etcd's NOSPACE alarm "database space exceeded"): retrying soon does not help
    /// until an operator makes room.
    #[error("the store is full: {0}")]
    Full(String),
    /// A record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Key of the record.
        key: String,
        /// Decoder message.
        reason: String,
    },
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Overloaded | StoreError::TooLarge { .. } | StoreError::Full(_) => {
                tonic::Status::resource_exhausted(e.to_string())
            }
            _ => tonic::Status::unavailable(e.to_string()),
        }
    }
}

impl Op {
    /// Returns the bytes this operation adds to a store request (key, value and a little
    /// framing).
    pub fn size(&self) -> usize {
        const FRAMING: usize = 16;
        match self {
            Op::Put(key, value) => key.len() + value.len() + FRAMING,
            Op::Delete(key) | Op::DeletePrefix(key) => key.len() + FRAMING,
        }
    }
}

/// A transactional key-value store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies all `ops` atomically and durably.
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Applies the writes of several writers, each atomically; returns one result per
    /// writer. The default puts them all in one transaction; a store that fences writes
    /// (etcd) refuses only the writers whose partitions it lost.
    async fn apply_batch(&self, batch: Vec<Vec<Op>>) -> Vec<Result<(), StoreError>> {
        let writers = batch.len();
        let result = self.apply(batch.into_iter().flatten().collect()).await;
        vec![result; writers]
    }
    /// Returns the value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Returns every key-value pair whose key starts with `prefix`, in key order.
    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// A shared store is a store (wrappers such as [`fault::FaultStore`] take an
/// `Arc<dyn Store>`).
#[async_trait]
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.as_ref().apply(ops).await
    }

    async fn apply_batch(&self, batch: Vec<Vec<Op>>) -> Vec<Result<(), StoreError>> {
        self.as_ref().apply_batch(batch).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.as_ref().get(key).await
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.as_ref().scan(prefix).await
    }
}

/// In-memory twin of the durable stores (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<String, Vec<u8>>>,
    transactions: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    /// Returns how many transactions were applied.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Applies `ops` to an ordered map (shared by the memory twin and tests).
pub fn apply_to_map(map: &mut BTreeMap<String, Vec<u8>>, ops: Vec<Op>) {
    for op in ops {
        match op {
            Op::Put(k, v) => {
                map.insert(k, v);
            }
            Op::Delete(k) => {
                map.remove(&k);
            }
            Op::DeletePrefix(p) => {
                let keys: Vec<String> = map
                    .range(p.clone()..)
                    .take_while(|(k, _)| k.starts_with(&p))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    map.remove(&k);
                }
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.transactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        apply_to_map(&mut self.map.lock(), ops);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().get(key).cloned())
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let map = self.map.lock();
        Ok(map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// A [`Store`] that records each request's duration and failures as metrics.
pub struct Instrumented<S> {
    inner: S,
}

impl<S> Instrumented<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl<S: Store> Store for Instrumented<S> {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let result = self.inner.apply(ops).await;
        crate::metrics::store_request("apply", started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    async fn apply_batch(&self, batch: Vec<Vec<Op>>) -> Vec<Result<(), StoreError>> {
        let started = std::time::Instant::now();
        let results = self.inner.apply_batch(batch).await;
        let ok = results
            .iter()
            .all(|r| !matches!(r, Err(e) if !matches!(e, StoreError::Fenced(_))));
        crate::metrics::store_request("apply", started.elapsed().as_secs_f64(), ok);
        results
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let started = std::time::Instant::now();
        let result = self.inner.get(key).await;
        crate::metrics::store_request("get", started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let started = std::time::Instant::now();
        let result = self.inner.scan(prefix).await;
        crate::metrics::store_request("scan", started.elapsed().as_secs_f64(), result.is_ok());
        result
    }
}
