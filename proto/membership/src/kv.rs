//! The coordination store behind a small [`Kv`] trait: leases, reads, guarded transactions
//! and prefix watches, the part of etcd that membership, partition and login claims and the
//! fenced record store use.
//!
//! Two implementations: [`crate::etcd::Etcd`] (the real thing, retried across etcd members)
//! and [`crate::memory::MemoryKv`] (its in-memory twin: the same revisions, compares, lease
//! expiry and transaction rules, no process). [`contract`] checks that both behave alike.

pub mod contract;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// etcd's default `--max-txn-ops`: the limit for the compares and, separately, the
/// operations of one transaction.
pub const MAX_TXN_OPS: usize = 128;

/// Why a coordination store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// No member answered within the request timeout.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request (a permanent error; retrying does not help).
    #[error("etcd: {0}")]
    Other(String),
    /// The store has no room: etcd's NOSPACE alarm ("etcdserver: mvcc: database space
    /// exceeded", the backend reached `--quota-backend-bytes`) or a request over its
    /// `--max-request-bytes` ("etcdserver: request is too large"). Writes fail until an
    /// operator compacts, defragments and disarms the alarm.
    #[error("etcd has no room: {0}")]
    NoSpace(String),
}

/// A key-value pair as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key (etcd keys are bytes; ours are UTF-8).
    pub key: String,
    /// Value.
    pub value: Vec<u8>,
    /// Revision that created the key (0 for an absent key); stays the same across updates.
    pub create_revision: i64,
    /// Revision of the last update.
    pub mod_revision: i64,
    /// Lease the key is attached to (0 for none).
    pub lease: i64,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Sets `key` to `value`, attached to `lease` if given.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease id.
        lease: Option<i64>,
    },
    /// Removes `key`.
    Delete {
        /// Key.
        key: String,
    },
    /// Removes every key starting with `prefix`.
    DeletePrefix {
        /// Key prefix.
        prefix: String,
    },
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's create_revision equals `revision` (the key exists and was not re-created).
    CreateRevision {
        /// Key.
        key: String,
        /// Expected create_revision.
        revision: i64,
    },
    /// The key does not exist (its create_revision is 0).
    Absent {
        /// Key.
        key: String,
    },
}

/// The coordination store: etcd or its twin. Revisions grow by one per transaction that
/// changes something; a key's create_revision is its fencing token.
#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// Grants a lease of `ttl_secs` seconds; returns its id.
    async fn grant(&self, ttl_secs: i64) -> Result<i64, KvError>;

    /// Refreshes `lease` once; returns its remaining TTL in seconds, 0 if the lease is gone
    /// (expired or revoked).
    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError>;

    /// Revokes `lease`, deleting its keys; a lease that is already gone is fine.
    async fn revoke(&self, lease: i64) -> Result<(), KvError>;

    /// Returns the pair stored at `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, KvError>;

    /// Returns every pair whose key starts with `prefix`, in key order, and the revision the
    /// listing is consistent at.
    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), KvError>;

    /// Sets `key` to `value`, attached to `lease` if given.
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), KvError>;

    /// Applies `ops` if every compare holds; returns whether it did. The transaction is
    /// refused (an error, nothing applied) when it has more than [`MAX_TXN_OPS`] compares or
    /// ops, puts a key twice, puts a key it also deletes, or names a lease that is gone.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, KvError>;

    /// Creates `key` unless it exists, in one transaction: returns `Ok` with the new pair or
    /// `Err` with the existing one. After a lost answer a retry may find the pair this call
    /// created: callers compare the existing pair's lease with their own.
    async fn create_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<Result<KeyValue, KeyValue>, KvError>;

    /// Deletes `key` if its create_revision is `create_revision`; returns whether it did.
    async fn delete_if(&self, key: &str, create_revision: i64) -> Result<bool, KvError> {
        self.txn(
            vec![Compare::CreateRevision {
                key: key.into(),
                revision: create_revision,
            }],
            vec![TxnOp::Delete { key: key.into() }],
        )
        .await
    }

    /// Watches every key under `prefix`: the receiver gets `()` once when the watch is in
    /// place and after each change, whereupon the consumer re-reads. The watch ends when the
    /// receiver is dropped. Must be called within a Tokio runtime.
    fn watch_prefix(&self, prefix: &str) -> mpsc::Receiver<()>;
}
