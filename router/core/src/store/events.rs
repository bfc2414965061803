//! The integration event log: conversation lifecycle events for CRM and e-mail systems,
//! stored durably (`event/<seq>`) and streamed live, resumable from an event id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use centralino_proto::v1::IntegrationEvent;
use tokio::sync::broadcast;

use crate::store::group_commit::GroupCommit;
use crate::store::records::ConversationRecord;
use crate::store::{Op, Store, StoreError};

/// Key prefix of integration events.
pub const EVENTS: &str = "event/";
/// Events kept in the store; older ones are deleted as new ones arrive.
pub const RETAINED: u64 = 100_000;
/// Live events buffered for slow subscribers (they resume from the store).
const LIVE_BUFFER: usize = 4096;

/// Returns the key of event `seq`.
pub fn event_key(seq: u64) -> String {
    format!("{EVENTS}{seq:020}")
}

/// Append-only integration events.
pub struct IntegrationLog {
    /// `event/` alone, or `event/<node>/` for each router of a cluster.
    prefix: String,
    next: AtomicU64,
    live: broadcast::Sender<IntegrationEvent>,
}

impl IntegrationLog {
    /// Returns a log continuing after the last event in `store`.
    pub async fn open(store: &dyn Store) -> Result<Self, StoreError> {
        Self::open_at(store, EVENTS.to_string()).await
    }

    /// Returns the log of one router of a cluster (events under `event/<node>/`).
    pub async fn open_for_node(store: &dyn Store, node_id: &str) -> Result<Self, StoreError> {
        Self::open_at(store, format!("{EVENTS}{node_id}/")).await
    }

    async fn open_at(store: &dyn Store, prefix: String) -> Result<Self, StoreError> {
        let last = store
            .scan(&prefix)
            .await?
            .iter()
            .filter_map(|(k, _)| k[prefix.len()..].parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Ok(Self {
            prefix,
            next: AtomicU64::new(last + 1),
            live,
        })
    }

    /// Returns the ops that append an event of `kind` about `rec`, and the event (to be
    /// published with [`IntegrationLog::publish`] once the ops are durable).
    pub fn append(
        &self,
        kind: &str,
        rec: &ConversationRecord,
        at_ms: i64,
        details: BTreeMap<String, String>,
    ) -> (Vec<Op>, IntegrationEvent) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let event = IntegrationEvent {
            event_id: seq,
            at_unix_ms: at_ms,
            kind: kind.to_string(),
            conversation_id: rec.id.clone(),
            customer_id: rec.customer_id.clone(),
            department: rec.department.clone(),
            language: rec.language.clone(),
            agent_id: rec.agent_id.clone().unwrap_or_default(),
            details: details.into_iter().collect(),
        };
        let mut ops = vec![Op::Put(
            self.key(seq),
            prost::Message::encode_to_vec(&event),
        )];
        if seq > RETAINED {
            ops.push(Op::Delete(self.key(seq - RETAINED)));
        }
        (ops, event)
    }

    fn key(&self, seq: u64) -> String {
        format!("{}{seq:020}", self.prefix)
    }

    /// Publishes a durable event to live subscribers.
    pub fn publish(&self, event: IntegrationEvent) {
        let _ = self.live.send(event);
    }

    /// Appends and publishes an event once it is durable, in the background.
    pub fn record(
        self: &std::sync::Arc<Self>,
        commits: &GroupCommit,
        kind: &str,
        rec: &ConversationRecord,
        at_ms: i64,
        details: BTreeMap<String, String>,
    ) {
        let (ops, event) = self.append(kind, rec, at_ms, details);
        let durable = commits.submit(ops);
        let log = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if matches!(durable.await, Ok(Ok(()))) {
                    log.publish(event);
                }
            });
        }
    }

    /// Returns a receiver of live events.
    pub fn subscribe(&self) -> broadcast::Receiver<IntegrationEvent> {
        self.live.subscribe()
    }

    /// Returns stored events after `after`, in order.
    pub async fn stored_after(
        &self,
        store: &dyn Store,
        after: u64,
    ) -> Result<Vec<IntegrationEvent>, StoreError> {
        let mut out = Vec::new();
        for (key, bytes) in store.scan(&self.prefix).await? {
            let Ok(seq) = key[self.prefix.len()..].parse::<u64>() else {
                continue;
            };
            if seq <= after {
                continue;
            }
            match <IntegrationEvent as prost::Message>::decode(bytes.as_slice()) {
                Ok(event) => out.push(event),
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        key,
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(out)
    }
}
