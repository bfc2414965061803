//! The in-memory twin of etcd: one [`MemoryKv`] is a whole "cluster" that any number of
//! members share (wrap it in an `Arc` and hand each node a clone).
//!
//! It keeps what the cluster code relies on: one revision per transaction that changes
//! something, create revisions as fencing tokens, compares, etcd's refusals (too many ops, a
//! key put twice or put and deleted in one transaction, a lease that is gone), leases whose
//! keys go when they expire, and prefix watches. Leases expire after their TTL without a
//! keep-alive, checked at every call, or at once with [`MemoryKv::expire`] (a crashed node
//! in a test, without waiting out the TTL).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::kv::{Compare, KeyValue, Kv, KvError, TxnOp, MAX_TXN_OPS};

/// The in-memory coordination store.
#[derive(Default)]
pub struct MemoryKv {
    state: Mutex<State>,
}

struct Entry {
    value: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct Watcher {
    prefix: String,
    tx: mpsc::Sender<()>,
}

#[derive(Default)]
struct State {
    revision: i64,
    last_lease: i64,
    keys: BTreeMap<String, Entry>,
    leases: BTreeMap<i64, Lease>,
    watchers: Vec<Watcher>,
}

impl State {
    /// Expires the leases whose TTL ran out by `now`.
    fn expire_due(&mut self, now: Instant) {
        let due: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for lease in due {
            self.remove_lease(lease);
        }
    }

    /// Removes `lease` and its keys (one revision, as etcd revokes); returns whether the
    /// lease existed.
    fn remove_lease(&mut self, lease: i64) -> bool {
        let Some(gone) = self.leases.remove(&lease) else {
            return false;
        };
        let ops: Vec<TxnOp> = gone
            .keys
            .into_iter()
            .map(|key| TxnOp::Delete { key })
            .collect();
        self.apply(ops);
        true
    }

    fn lease_problem(&self, ops: &[TxnOp]) -> Option<KvError> {
        ops.iter().find_map(|op| match op {
            TxnOp::Put {
                lease: Some(lease), ..
            } if *lease != 0 && !self.leases.contains_key(lease) => Some(KvError::Other(format!(
                "etcdserver: requested lease not found: {lease}"
            ))),
            _ => None,
        })
    }

    fn holds(&self, compare: &Compare) -> bool {
        let create_revision = |key: &str| self.keys.get(key).map_or(0, |e| e.create_revision);
        match compare {
            Compare::CreateRevision { key, revision } => create_revision(key) == *revision,
            Compare::Absent { key } => create_revision(key) == 0,
        }
    }

    /// Applies `ops` at the next revision (taken only if something changed) and signals the
    /// watchers of the changed keys.
    fn apply(&mut self, ops: Vec<TxnOp>) {
        let revision = self.revision + 1;
        let mut changed = Vec::new();
        for op in ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let lease = lease.unwrap_or(0);
                    let create_revision = match self.keys.remove(&key) {
                        Some(old) => {
                            self.detach(&key, old.lease);
                            old.create_revision
                        }
                        None => revision,
                    };
                    if let Some(l) = self.leases.get_mut(&lease) {
                        l.keys.insert(key.clone());
                    }
                    self.keys.insert(
                        key.clone(),
                        Entry {
                            value,
                            create_revision,
                            mod_revision: revision,
                            lease,
                        },
                    );
                    changed.push(key);
                }
                TxnOp::Delete { key } => {
                    if let Some(old) = self.keys.remove(&key) {
                        self.detach(&key, old.lease);
                        changed.push(key);
                    }
                }
                TxnOp::DeletePrefix { prefix } => {
                    let keys: Vec<String> = self
                        .keys
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in keys {
                        if let Some(old) = self.keys.remove(&key) {
                            self.detach(&key, old.lease);
                            changed.push(key);
                        }
                    }
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        self.revision = revision;
        self.watchers.retain(|w| {
            if changed.iter().any(|k| k.starts_with(w.prefix.as_str())) {
                // A full channel already holds an unread signal, which covers this change.
                !matches!(
                    w.tx.try_send(()),
                    Err(mpsc::error::TrySendError::Closed(()))
                )
            } else {
                !w.tx.is_closed()
            }
        });
    }

    fn detach(&mut self, key: &str, lease: i64) {
        if let Some(l) = self.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }

    fn read(&self, key: &str, entry: &Entry) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: entry.value.clone(),
            create_revision: entry.create_revision,
            mod_revision: entry.mod_revision,
            lease: entry.lease,
        }
    }
}

/// Returns why etcd would refuse a transaction of `compares` and `ops` whatever the data:
/// too many compares or ops, a key put twice, or a key put and deleted.
fn txn_problem(compares: &[Compare], ops: &[TxnOp]) -> Option<String> {
    if compares.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
        return Some("too many operations in txn request".into());
    }
    let mut puts = std::collections::BTreeSet::new();
    for op in ops {
        if let TxnOp::Put { key, .. } = op {
            if !puts.insert(key.as_str()) {
                return Some(format!("duplicate key given in txn request: {key}"));
            }
        }
    }
    for op in ops {
        let clash = match op {
            TxnOp::Put { .. } => None,
            TxnOp::Delete { key } => puts.get(key.as_str()),
            TxnOp::DeletePrefix { prefix } => puts.iter().find(|k| k.starts_with(prefix.as_str())),
        };
        if let Some(key) = clash {
            return Some(format!("duplicate key given in txn request: {key}"));
        }
    }
    None
}

impl MemoryKv {
    /// Returns an empty store at revision 1, like a fresh etcd.
    pub fn new() -> Self {
        let kv = Self::default();
        kv.state.lock().revision = 1;
        kv
    }

    /// Locks the state after expiring the leases whose TTL ran out.
    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        let mut state = self.state.lock();
        state.expire_due(Instant::now());
        state
    }

    /// Expires `lease` now, as etcd does when its TTL runs out: its keys are deleted and
    /// watchers signalled. Returns whether the lease was alive.
    pub fn expire(&self, lease: i64) -> bool {
        self.state().remove_lease(lease)
    }

    /// Expires the lease `key` is attached to (a member's registration key expires that
    /// member: its claims go with it). Returns whether there was such a lease.
    pub fn expire_lease_of(&self, key: &str) -> bool {
        let mut state = self.state();
        match state.keys.get(key).map(|e| e.lease) {
            Some(lease) if lease != 0 => state.remove_lease(lease),
            _ => false,
        }
    }

    /// Returns the current revision.
    pub fn revision(&self) -> i64 {
        self.state().revision
    }
}

#[async_trait]
impl Kv for MemoryKv {
    async fn grant(&self, ttl_secs: i64) -> Result<i64, KvError> {
        let mut state = self.state();
        state.last_lease += 1;
        let id = state.last_lease;
        let ttl = Duration::from_secs(ttl_secs.max(1) as u64);
        state.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
        let mut state = self.state();
        Ok(match state.leases.get_mut(&lease) {
            Some(l) => {
                l.deadline = Instant::now() + l.ttl;
                l.ttl.as_secs() as i64
            }
            None => 0,
        })
    }

    async fn revoke(&self, lease: i64) -> Result<(), KvError> {
        self.state().remove_lease(lease);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, KvError> {
        let state = self.state();
        Ok(state.keys.get(key).map(|e| state.read(key, e)))
    }

    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), KvError> {
        let state = self.state();
        let kvs = state
            .keys
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| state.read(k, e))
            .collect();
        Ok((kvs, state.revision))
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), KvError> {
        let op = TxnOp::Put {
            key: key.into(),
            value,
            lease,
        };
        self.txn(Vec::new(), vec![op]).await.map(|_| ())
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, KvError> {
        if let Some(problem) = txn_problem(&compares, &ops) {
            return Err(KvError::Other(format!("etcdserver: {problem}")));
        }
        let mut state = self.state();
        if !compares.iter().all(|c| state.holds(c)) {
            return Ok(false);
        }
        if let Some(e) = state.lease_problem(&ops) {
            return Err(e);
        }
        state.apply(ops);
        Ok(true)
    }

    async fn create_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<Result<KeyValue, KeyValue>, KvError> {
        let mut state = self.state();
        if let Some(existing) = state.keys.get(key) {
            return Ok(Err(state.read(key, existing)));
        }
        let put = vec![TxnOp::Put {
            key: key.into(),
            value,
            lease,
        }];
        if let Some(e) = state.lease_problem(&put) {
            return Err(e);
        }
        state.apply(put);
        let created = state
            .keys
            .get(key)
            .map(|e| state.read(key, e))
            .ok_or_else(|| KvError::Other(format!("{key} vanished while created")))?;
        Ok(Ok(created))
    }

    fn watch_prefix(&self, prefix: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        // In place at once: the first signal, like etcd's after the watch is created.
        let _ = tx.try_send(());
        self.state().watchers.push(Watcher {
            prefix: prefix.to_string(),
            tx,
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::contract;

    #[tokio::test]
    async fn behaves_like_etcd() {
        contract::check(&MemoryKv::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_without_keep_alive_expires_after_its_ttl() {
        let kv = MemoryKv::new();
        let lease = kv.grant(3).await.unwrap();
        kv.put("leased", b"x".to_vec(), Some(lease)).await.unwrap();
        let mut changes = kv.watch_prefix("leased");
        changes.recv().await.unwrap();

        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(kv.keep_alive(lease).await.unwrap(), 3);
        tokio::time::advance(Duration::from_secs(2)).await;
        // Renewed at 2 s: alive at 4 s.
        assert!(kv.get("leased").await.unwrap().is_some());
        assert!(changes.try_recv().is_err());

        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(kv.get("leased").await.unwrap(), None);
        assert_eq!(kv.keep_alive(lease).await.unwrap(), 0);
        assert!(changes.try_recv().is_ok(), "expiry signals the watchers");
    }

    #[tokio::test]
    async fn expire_takes_a_lease_and_its_keys_at_once() {
        let kv = MemoryKv::new();
        let (a, b) = (kv.grant(30).await.unwrap(), kv.grant(30).await.unwrap());
        kv.put("m/a", b"a".to_vec(), Some(a)).await.unwrap();
        kv.put("claims/1", b"a".to_vec(), Some(a)).await.unwrap();
        kv.put("m/b", b"b".to_vec(), Some(b)).await.unwrap();
        let before = kv.revision();

        assert!(kv.expire_lease_of("m/a"));
        let (left, revision) = kv.get_prefix("").await.unwrap();
        let keys: Vec<&str> = left.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["m/b"]);
        assert_eq!(revision, before + 1, "one revision for the whole lease");
        assert!(!kv.expire(a), "already gone");
        assert!(!kv.expire_lease_of("m/a"));
        assert!(kv.keep_alive(b).await.unwrap() > 0);
    }
}
