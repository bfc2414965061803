//! Followers of the record's two feeds: [`OutboxTail`] for integration events and
//! [`DirectoryFeed`] for directory changes. Each waits on its feed's signal (PostgreSQL
//! LISTEN/NOTIFY, or the twins' in-process channel) and re-reads only when woken, with a
//! slow fallback poll in case a notification was lost: no polling storm however many
//! followers a node runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::RecordError;
use crate::record::Record;
use crate::types::{DirectoryChange, OutboxEvent};

/// How long a follower waits without a signal before it reads anyway.
pub const FALLBACK_POLL: Duration = Duration::from_secs(5);

/// Waits until `signal` changed since it was last marked seen, or `fallback` passes.
async fn wait(signal: &mut watch::Receiver<i64>, fallback: Duration) {
    let woken = async {
        if signal.changed().await.is_err() {
            // the sender is gone: only the fallback poll is left
            std::future::pending::<()>().await;
        }
    };
    let _ = tokio::time::timeout(fallback, woken).await;
}

/// Follows the outbox from a sequence number: each [`OutboxTail::next`] returns the next
/// events, waiting for them when there are none yet. Resumable anywhere: start a new tail
/// at the last sequence number handled.
pub struct OutboxTail {
    record: Arc<dyn Record>,
    after: i64,
    signal: watch::Receiver<i64>,
    fallback: Duration,
}

impl OutboxTail {
    /// Returns a tail that yields the events after `after`.
    pub fn new(record: Arc<dyn Record>, after: i64) -> Self {
        let signal = record.outbox_signal();
        Self {
            record,
            after,
            signal,
            fallback: FALLBACK_POLL,
        }
    }

    /// Sets the fallback poll interval.
    pub fn with_fallback(mut self, fallback: Duration) -> Self {
        self.fallback = fallback;
        self
    }

    /// Returns the last sequence number yielded (or the start).
    pub fn position(&self) -> i64 {
        self.after
    }

    /// Returns the next up to `limit` events, waiting until there is at least one.
    pub async fn next(&mut self, limit: usize) -> Result<Vec<OutboxEvent>, RecordError> {
        loop {
            // mark the signal seen before reading, so a commit after the read wakes the wait
            self.signal.borrow_and_update();
            let events = self.record.read_after(self.after, limit).await?;
            if let Some(last) = events.last() {
                self.after = last.seq;
                crate::metrics::tail_read("outbox", events.len());
                return Ok(events);
            }
            wait(&mut self.signal, self.fallback).await;
        }
    }
}

/// Follows the directory's change feed, like [`OutboxTail`] follows the outbox.
pub struct DirectoryFeed {
    record: Arc<dyn Record>,
    after: i64,
    signal: watch::Receiver<i64>,
    fallback: Duration,
}

impl DirectoryFeed {
    /// Returns a feed that yields the changes after `after`.
    pub fn new(record: Arc<dyn Record>, after: i64) -> Self {
        let signal = record.directory_signal();
        Self {
            record,
            after,
            signal,
            fallback: FALLBACK_POLL,
        }
    }

    /// Sets the fallback poll interval.
    pub fn with_fallback(mut self, fallback: Duration) -> Self {
        self.fallback = fallback;
        self
    }

    /// Returns the last sequence number yielded (or the start).
    pub fn position(&self) -> i64 {
        self.after
    }

    /// Returns the next up to `limit` changes, waiting until there is at least one.
    pub async fn next(&mut self, limit: usize) -> Result<Vec<DirectoryChange>, RecordError> {
        loop {
            self.signal.borrow_and_update();
            let changes = self
                .record
                .directory_changes_after(self.after, limit)
                .await?;
            if let Some(last) = changes.last() {
                self.after = last.seq;
                crate::metrics::tail_read("directory", changes.len());
                return Ok(changes);
            }
            wait(&mut self.signal, self.fallback).await;
        }
    }
}
