//! A fault-injecting twin of any [`Store`]: [`FaultStore`] wraps a store and, on command,
//! fails the next N commits, fails every commit that touches a key prefix, or delays
//! commits, with the error kind the test chooses. Reads always pass through.
//!
//! Tests build a node on it (standalone: `StoreChoice::Custom`; cluster: the fenced etcd
//! store wrapped by the router's store hook) and check that nothing is acknowledged, shown
//! or delivered whose write failed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Op, Store, StoreError};

/// What a [`FaultStore`] does to the commits it sees.
#[derive(Debug, Default)]
struct Rules {
    /// Errors for the next commits, one each, in order.
    next: VecDeque<StoreError>,
    /// Writers touching a key under one of these prefixes fail with the error.
    prefixes: Vec<(String, StoreError)>,
    /// Pause before each commit.
    delay: Duration,
}

/// A [`Store`] that fails or delays commits on command (tests).
pub struct FaultStore<S> {
    inner: S,
    rules: Mutex<Rules>,
    injected: AtomicU64,
    commits: AtomicU64,
}

impl<S> FaultStore<S> {
    /// Wraps `inner`, injecting nothing until told.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rules: Mutex::new(Rules::default()),
            injected: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    /// Returns the wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Fails the next `n` commits (each `apply` or batch, every writer in it) with `error`.
    pub fn fail_next(&self, n: usize, error: StoreError) {
        let mut rules = self.rules.lock();
        rules.next.extend(std::iter::repeat_n(error, n));
    }

    /// Fails every writer whose ops touch a key starting with `prefix` with `error`, until
    /// [`Self::clear`]; other writers of the same batch commit.
    pub fn fail_prefix(&self, prefix: impl Into<String>, error: StoreError) {
        self.rules.lock().prefixes.push((prefix.into(), error));
    }

    /// Pauses every commit by `delay` before it reaches the wrapped store.
    pub fn delay(&self, delay: Duration) {
        self.rules.lock().delay = delay;
    }

    /// Removes every rule: commits pass through again.
    pub fn clear(&self) {
        *self.rules.lock() = Rules::default();
    }

    /// Returns how many writers were failed on purpose so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Returns how many commits (`apply` or batch calls) were seen so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Returns the error for the whole commit (next N) and the delay, consuming one error.
    fn take_commit(&self) -> (Option<StoreError>, Duration) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let mut rules = self.rules.lock();
        (rules.next.pop_front(), rules.delay)
    }

    /// Returns the error of a writer whose ops touch a failing prefix.
    fn prefix_error(&self, ops: &[Op]) -> Option<StoreError> {
        let rules = self.rules.lock();
        ops.iter().find_map(|op| {
            let key = match op {
                Op::Put(key, _) | Op::Delete(key) | Op::DeletePrefix(key) => key,
            };
            rules
                .prefixes
                .iter()
                .find(|(prefix, _)| key.starts_with(prefix.as_str()))
                .map(|(_, e)| e.clone())
        })
    }
}

#[async_trait]
impl<S: Store> Store for FaultStore<S> {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (error, delay) = self.take_commit();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(e) = error.or_else(|| self.prefix_error(&ops)) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
        self.inner.apply(ops).await
    }

    async fn apply_batch(&self, batch: Vec<Vec<Op>>) -> Vec<Result<(), StoreError>> {
        let (error, delay) = self.take_commit();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(e) = error {
            self.injected
                .fetch_add(batch.len() as u64, Ordering::SeqCst);
            return vec![Err(e); batch.len()];
        }
        let mut results: Vec<Option<Result<(), StoreError>>> = vec![None; batch.len()];
        let mut passed = Vec::new();
        let mut indices = Vec::new();
        for (i, ops) in batch.into_iter().enumerate() {
            match self.prefix_error(&ops) {
                Some(e) => {
                    self.injected.fetch_add(1, Ordering::SeqCst);
                    results[i] = Some(Err(e));
                }
                None => {
                    indices.push(i);
                    passed.push(ops);
                }
            }
        }
        if !passed.is_empty() {
            let outcomes = self.inner.apply_batch(passed).await;
            for (i, outcome) in indices.into_iter().zip(outcomes) {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Backend("write not applied".into()))))
            .collect()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.scan(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn put(key: &str) -> Vec<Op> {
        vec![Op::Put(key.to_string(), b"v".to_vec())]
    }

    #[tokio::test]
    async fn fails_the_next_commits_then_passes() {
        let store = FaultStore::new(MemoryStore::default());
        store.fail_next(2, StoreError::Full("test".into()));
        assert!(matches!(
            store.apply(put("a")).await,
            Err(StoreError::Full(_))
        ));
        let batch = store.apply_batch(vec![put("b"), put("c")]).await;
        assert!(batch.iter().all(|r| matches!(r, Err(StoreError::Full(_)))));
        store.apply(put("d")).await.unwrap();
        assert_eq!(store.get("a").await.unwrap(), None);
        assert_eq!(store.get("b").await.unwrap(), None);
        assert_eq!(store.get("d").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!((store.injected(), store.commits()), (3, 3));
    }

    #[tokio::test]
    async fn fails_only_the_writers_touching_a_prefix() {
        let store = FaultStore::new(MemoryStore::default());
        store.fail_prefix("conv/1", StoreError::Backend("injected".into()));
        let results = store
            .apply_batch(vec![put("conv/10"), put("conv/2"), put("conv/1/x")])
            .await;
        assert!(matches!(results[0], Err(StoreError::Backend(_))));
        assert!(results[1].is_ok());
        assert!(matches!(results[2], Err(StoreError::Backend(_))));
        assert_eq!(store.scan("conv/").await.unwrap().len(), 1);
        store.clear();
        store.apply(put("conv/10")).await.unwrap();
        assert_eq!(store.scan("conv/").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn delays_commits() {
        let store = FaultStore::new(MemoryStore::default());
        store.delay(Duration::from_millis(50));
        let started = std::time::Instant::now();
        store.apply(put("a")).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
