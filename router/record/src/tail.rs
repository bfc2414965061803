//! Followers of the record's two feeds, one [`Follower`] for both: [`OutboxTail`] for
//! integration events and [`DirectoryFeed`] for directory changes. Each waits on its feed's signal (PostgreSQL
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

/// One of the record's feeds: what a [`Follower`] reads and waits on.
pub trait Feed: Send + Sync + 'static {
    /// What the feed yields.
    type Item: Send;
    /// The feed's name in metrics.
    const NAME: &'static str;
    /// The feed's signal (the highest sequence number known committed).
    fn signal(record: &dyn Record) -> watch::Receiver<i64>;
    /// Reads up to `limit` items after `after`, in order.
    fn read(
        record: &dyn Record,
        after: i64,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Item>, RecordError>> + Send;
    /// An item's sequence number.
    fn seq(item: &Self::Item) -> i64;
}

/// The integration-event outbox.
pub struct Outbox;

impl Feed for Outbox {
    type Item = OutboxEvent;
    const NAME: &'static str = "outbox";
    fn signal(record: &dyn Record) -> watch::Receiver<i64> {
        record.outbox_signal()
    }
    async fn read(
        record: &dyn Record,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, RecordError> {
        record.read_after(after, limit).await
    }
    fn seq(item: &OutboxEvent) -> i64 {
        item.seq
    }
}

/// The agent directory's change feed.
pub struct Directory;

impl Feed for Directory {
    type Item = DirectoryChange;
    const NAME: &'static str = "directory";
    fn signal(record: &dyn Record) -> watch::Receiver<i64> {
        record.directory_signal()
    }
    async fn read(
        record: &dyn Record,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DirectoryChange>, RecordError> {
        record.directory_changes_after(after, limit).await
    }
    fn seq(item: &DirectoryChange) -> i64 {
        item.seq
    }
}

/// Follows a feed from a sequence number: each [`Follower::next`] returns the next items,
/// waiting for them when there are none yet. Resumable anywhere: start a new follower at
/// the last sequence number handled.
pub struct Follower<F: Feed> {
    record: Arc<dyn Record>,
    after: i64,
    signal: watch::Receiver<i64>,
    fallback: Duration,
    feed: std::marker::PhantomData<F>,
}

/// Follows the outbox (integration events).
pub type OutboxTail = Follower<Outbox>;

/// Follows the directory's change feed.
pub type DirectoryFeed = Follower<Directory>;

impl<F: Feed> Follower<F> {
    /// Returns a follower that yields the items after `after`.
    pub fn new(record: Arc<dyn Record>, after: i64) -> Self {
        let signal = F::signal(record.as_ref());
        Self {
            record,
            after,
            signal,
            fallback: FALLBACK_POLL,
            feed: std::marker::PhantomData,
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

    /// Returns the next up to `limit` items, waiting until there is at least one.
    pub async fn next(&mut self, limit: usize) -> Result<Vec<F::Item>, RecordError> {
        loop {
            // mark the signal seen before reading, so a commit after the read wakes the wait
            self.signal.borrow_and_update();
            let items = F::read(self.record.as_ref(), self.after, limit).await?;
            if let Some(last) = items.last() {
                self.after = F::seq(last);
                crate::metrics::tail_read(F::NAME, items.len());
                return Ok(items);
            }
            wait(&mut self.signal, self.fallback).await;
        }
    }
}
