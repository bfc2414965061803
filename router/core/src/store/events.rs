//! The integration event log: conversation lifecycle events for CRM and e-mail systems, in
//! the system of record's outbox ([`centralino_record::Record::append`]): one sequence for
//! the whole cluster, assigned at commit, so a reader resumes on any router after the last
//! event id it saw with no gap and no repeat. Live readers follow the outbox with an
//! [`OutboxTail`] (woken by the record's signal, PostgreSQL LISTEN/NOTIFY in a cluster),
//! never by polling it.
//!
//! An event is appended once its cause is durable: the callers record an event after the
//! write that caused it; events of a close that belong with its archive row are built with
//! [`IntegrationLog::event`] and passed to [`centralino_record::Record::archive`], which
//! appends them in the same transaction as the row.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use centralino_proto::v1::IntegrationEvent;
use centralino_record::{NewEvent, OutboxEvent, OutboxTail, Record, RecordError};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::warn;

use crate::store::records::{ConversationRecord, Outcome};

/// How often a background append is tried before the event is given up (and counted).
const APPEND_TRIES: u32 = 5;
/// The pause before the first retry of a background append; it doubles with each retry.
const APPEND_BACKOFF: Duration = Duration::from_millis(200);
/// Events waiting for the background appender; more are refused (and counted).
const PENDING: usize = 4096;
/// Events the background appender writes in one transaction at most.
const BATCH: usize = 256;

fn lost(event: &NewEvent, e: &RecordError) {
    crate::metrics::integration_event_lost();
    warn!(kind = %event.kind, conversation_id = ?event.conversation_id, error = %e, "integration event not appended");
}

/// What waits for the background appender: an event, or a flush that is answered once
/// every event queued before it was appended (or given up).
enum Queued {
    Event(NewEvent),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Appends what `rx` receives, in order, batching what waits, until every sender is gone.
async fn append_loop(record: Arc<dyn Record>, mut rx: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut queued, BATCH).await > 0 {
        let mut events = Vec::with_capacity(queued.len());
        let mut flushes = Vec::new();
        for item in queued.drain(..) {
            match item {
                Queued::Event(event) => events.push(event),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        append_batch(record.as_ref(), events).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn append_batch(record: &dyn Record, events: Vec<NewEvent>) {
    if events.is_empty() {
        return;
    }
    let mut pause = APPEND_BACKOFF;
    for attempt in 1..=APPEND_TRIES {
        match record.append(events.clone()).await {
            Ok(_) => break,
            Err(e) if e.is_transient() && attempt < APPEND_TRIES => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) if events.len() > 1 && !e.is_transient() => {
                // One refused event must not take the others with it: one at a time.
                for event in &events {
                    if let Err(e) = record.append(vec![event.clone()]).await {
                        lost(event, &e);
                    }
                }
                break;
            }
            Err(e) => {
                for event in &events {
                    lost(event, &e);
                }
                break;
            }
        }
    }
}

/// What an event is about (the fields of the API's event beside its kind and details).
struct Subject<'a> {
    conversation_id: &'a str,
    customer_id: &'a str,
    department: &'a str,
    language: &'a str,
    agent_id: &'a str,
}

/// Integration events in the record's outbox.
pub struct IntegrationLog {
    record: Arc<dyn Record>,
    /// The background appender of [`IntegrationLog::record`], started on first use; it
    /// stops when the log is dropped (its only sender with it).
    appender: OnceLock<mpsc::Sender<Queued>>,
}

impl IntegrationLog {
    /// Returns the log of `record`'s outbox.
    pub fn new(record: Arc<dyn Record>) -> Self {
        Self {
            record,
            appender: OnceLock::new(),
        }
    }

    /// Returns the record the events live in.
    pub fn outbox(&self) -> &Arc<dyn Record> {
        &self.record
    }

    /// Returns the outbox event of `kind` about `rec` (to append with
    /// [`IntegrationLog::append`], or with an archive row through
    /// [`centralino_record::Record::archive`]).
    pub fn event(
        kind: &str,
        rec: &ConversationRecord,
        at_ms: i64,
        details: BTreeMap<String, String>,
    ) -> NewEvent {
        Self::event_about(
            kind,
            Subject {
                conversation_id: &rec.id,
                customer_id: &rec.customer_id,
                department: &rec.department,
                language: &rec.language,
                agent_id: rec.agent_id.as_deref().unwrap_or_default(),
            },
            at_ms,
            details,
        )
    }

    fn event_about(
        kind: &str,
        about: Subject<'_>,
        at_ms: i64,
        details: BTreeMap<String, String>,
    ) -> NewEvent {
        NewEvent {
            kind: kind.to_string(),
            customer_id: (!about.customer_id.is_empty()).then(|| about.customer_id.to_string()),
            conversation_id: Some(about.conversation_id.to_string()),
            at_ms,
            payload: json!({
                "department": about.department,
                "language": about.language,
                "agent_id": about.agent_id,
                "details": details,
            }),
        }
    }

    /// Returns the integration event a close makes (`closed`, `abandoned`,
    /// `offline_message`, `email_request` or `callback_request`), derived from the closed
    /// record alone: it is written in the archive row's transaction, and a retirement after
    /// a crash (which archives again) derives the same event, so it lands exactly once.
    /// `None` for a record that is not closed.
    pub fn close_event(rec: &ConversationRecord) -> Option<NewEvent> {
        let closed_at = rec.closed_at_ms?;
        let (kind, details) = match rec.outcome.unwrap_or(Outcome::Abandoned) {
            Outcome::Completed => ("closed", BTreeMap::new()),
            Outcome::Abandoned => ("abandoned", BTreeMap::new()),
            Outcome::Offline => ("offline_message", rec.follow_up.clone()),
            Outcome::Escalated => match rec.follow_up.get("kind").map(String::as_str) {
                Some("email") => ("email_request", rec.follow_up.clone()),
                _ => ("callback_request", rec.follow_up.clone()),
            },
        };
        Some(Self::event(kind, rec, closed_at, details))
    }

    /// Appends events durably and returns their sequence numbers (their event ids).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError> {
        self.record.append(events).await
    }

    /// Appends an event of `kind` about `rec` in the background; call it once the event's
    /// cause is durable. The events of one router are appended in the order they were
    /// recorded (one appender, batches of what waits); a failed append is retried with
    /// backoff, then logged and counted, as is an event that finds the appender's queue full.
    pub fn record(
        &self,
        kind: &str,
        rec: &ConversationRecord,
        at_ms: i64,
        details: BTreeMap<String, String>,
    ) {
        let event = Self::event(kind, rec, at_ms, details);
        if let Err(e) = self.sender().try_send(Queued::Event(event)) {
            crate::metrics::integration_event_lost();
            warn!(error = %e, "integration event not appended: the appender is behind");
        }
    }

    /// Waits until every event recorded before this call was appended (or given up): an
    /// erasure runs after it, so no event about the customer lands after their erasure.
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.sender().send(Queued::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    fn sender(&self) -> &mpsc::Sender<Queued> {
        self.appender.get_or_init(|| {
            let (tx, rx) = mpsc::channel(PENDING);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(append_loop(self.record.clone(), rx));
            }
            tx
        })
    }

    /// Returns up to `limit` stored events after event id `after`, in order.
    pub async fn stored_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<IntegrationEvent>, RecordError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        Ok(self
            .record
            .read_after(after, limit)
            .await?
            .iter()
            .map(to_proto)
            .collect())
    }

    /// Returns a follower of the outbox after event id `after`: each `next` returns the
    /// next events, waiting (on the record's signal) while there are none.
    pub fn subscribe(&self, after: u64) -> OutboxTail {
        OutboxTail::new(
            self.record.clone(),
            i64::try_from(after).unwrap_or(i64::MAX),
        )
    }
}

/// Returns the API form of a stored event (its sequence number is its event id).
pub fn to_proto(e: &OutboxEvent) -> IntegrationEvent {
    let text = |key: &str| {
        e.payload
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let details = e
        .payload
        .get("details")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    IntegrationEvent {
        event_id: u64::try_from(e.seq).unwrap_or_default(),
        at_unix_ms: e.at_ms,
        kind: e.kind.clone(),
        conversation_id: e.conversation_id.clone().unwrap_or_default(),
        customer_id: e.customer_id.clone().unwrap_or_default(),
        department: text("department"),
        language: text("language"),
        agent_id: text("agent_id"),
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centralino_record::MemoryRecord;

    fn event(kind: &str, id: &str, at_ms: i64, details: BTreeMap<String, String>) -> NewEvent {
        let about = Subject {
            conversation_id: id,
            customer_id: "c1",
            department: "support",
            language: "it",
            agent_id: "anna",
        };
        IntegrationLog::event_about(kind, about, at_ms, details)
    }

    #[tokio::test]
    async fn events_round_trip_through_the_outbox_in_order() {
        let log = IntegrationLog::new(Arc::new(MemoryRecord::new().unwrap()));
        let details = BTreeMap::from([("rating".to_string(), "good".to_string())]);
        let seqs = log
            .append(vec![
                event("started", "a", 5, BTreeMap::new()),
                event("rated", "a", 9, details.clone()),
            ])
            .await
            .unwrap();
        assert_eq!(seqs, [1, 2]);
        let events = log.stored_after(0, 10).await.unwrap();
        assert_eq!(events.len(), 2);
        let rated = &events[1];
        assert_eq!(rated.event_id, 2);
        assert_eq!(rated.kind, "rated");
        assert_eq!(rated.conversation_id, "a");
        assert_eq!(rated.customer_id, "c1");
        assert_eq!(rated.department, "support");
        assert_eq!(rated.agent_id, "anna");
        assert_eq!(rated.at_unix_ms, 9);
        assert_eq!(rated.details, details.into_iter().collect());
        assert_eq!(log.stored_after(1, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_appender_keeps_the_order_and_survives_a_refused_event() {
        let record: Arc<dyn Record> = Arc::new(MemoryRecord::new().unwrap());
        let (tx, rx) = mpsc::channel(PENDING);
        let appender = tokio::spawn(append_loop(record.clone(), rx));
        for n in 0..50 {
            let id = if n == 20 {
                "x".repeat(10_000)
            } else {
                format!("c{n}")
            };
            tx.send(Queued::Event(event("started", &id, n, BTreeMap::new())))
                .await
                .unwrap();
        }
        // A flush is answered once everything queued before it is appended.
        let (done, flushed) = tokio::sync::oneshot::channel();
        tx.send(Queued::Flush(done)).await.unwrap();
        flushed.await.unwrap();
        let before_stop = record.read_after(0, 100).await.unwrap().len();
        drop(tx);
        appender.await.unwrap();
        let stored = record.read_after(0, 100).await.unwrap();
        assert_eq!(
            before_stop,
            stored.len(),
            "the flush came before every event was in"
        );
        let times: Vec<i64> = stored.iter().map(|e| e.at_ms).collect();
        let want: Vec<i64> = (0..50).filter(|n| *n != 20).collect();
        assert_eq!(times, want, "in order, only the refused one missing");
    }

    #[tokio::test]
    async fn a_background_event_wakes_a_follower() {
        let log = IntegrationLog::new(Arc::new(MemoryRecord::new().unwrap()));
        let mut tail = log.subscribe(0);
        let appender = IntegrationLog::new(log.outbox().clone());
        tokio::spawn(async move {
            appender
                .append(vec![event("closed", "b", 7, BTreeMap::new())])
                .await
        });
        let events = tokio::time::timeout(Duration::from_secs(3), tail.next(10))
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(to_proto(&events[0]).kind, "closed");
        assert_eq!(tail.position(), 1);
    }
}
