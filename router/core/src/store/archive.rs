//! The archive of closed conversations, in the system of record ([`centralino_record`]):
//! PostgreSQL in cluster mode (every router reads every router's archive), the embedded
//! record inside the redb store file in standalone mode, the in-memory twin in tests.
//!
//! The order that loses and doubles nothing (DESIGN §10, issue 11):
//! 1. the close is written to the live store (etcd, redb) and acknowledged;
//! 2. then the archive row is written ([`archive_closed`], or [`archive_after`] chained to
//!    the close's durable handle; idempotent by conversation id), so supervisors see the
//!    conversation at once; a later rating updates the row ([`rate_archived`],
//!    [`rate_after`]);
//! 3. at the end of the rating window (or on a restart's or a failover's recovery) the live
//!    keys are removed ([`retire_closed`]), after archiving once more (a no-op when step 2
//!    succeeded). A crash between 2 and 3 leaves one row and the live keys; the next owner's
//!    recovery archives (no second row) and removes them.
//!
//! In standalone mode step 3 is one redb transaction: the archive row and the removal of
//! the live keys commit together ([`EmbeddedRecord::archive_in`]).

use std::sync::Arc;
use std::time::Duration;

use centralino_record::{
    ArchiveCursor, ArchiveFilter, ArchivedConversation, EmbeddedRecord, ErasureReport,
    MemoryRecord, NewEvent, Page, Rating as RecordRating, Record, RecordError,
};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::embedded::EmbeddedStore;
use crate::store::events::IntegrationLog;
use crate::store::group_commit::GroupCommit;
use crate::store::records::{
    conversation_key, messages_prefix, ConversationRecord, MessageRecord, Rating,
};
use crate::store::{Op, StoreError};
use centralino_base::clock::SharedClock;

/// How long a close's acknowledgement waits for its archive row (a slow or unreachable
/// record does not hold closes up longer; the row is written at retirement then).
pub const ARCHIVE_ACK_WAIT: Duration = Duration::from_secs(2);
/// How often the retention loop deletes expired archived conversations.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Pauses between attempts of a retirement that failed (the record or the store was
/// unavailable), and how many attempts an actor's retirement makes before it leaves the
/// conversation to the next recovery.
const RETIRE_BACKOFF: Duration = Duration::from_secs(5);
const RETIRE_ATTEMPTS: u32 = 60;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Archived conversations an in-memory archive keeps (the newest): a node on the memory
/// store does not grow without bound however many conversations close.
pub const MEMORY_ARCHIVE_KEEP: usize = 1000;

/// The live store and the record sharing one redb file: retirement in one transaction.
#[derive(Clone)]
struct SameFile {
    store: EmbeddedStore,
    record: EmbeddedRecord,
}

/// The archive: the system of record behind [`Record`], and (standalone) the store file it
/// shares with the live keys.
#[derive(Clone)]
pub struct Archive {
    record: Arc<dyn Record>,
    same_file: Option<SameFile>,
    /// In memory: the close times and ids of the rows archived here, the oldest deleted
    /// beyond [`MEMORY_ARCHIVE_KEEP`].
    bounded: Option<Arc<parking_lot::Mutex<Kept>>>,
    /// Archive writes started at a close and still running, by conversation id: a
    /// retirement waits for them before it removes the live keys, so that once the keys
    /// are gone no late archive write can bring a row back (after an erasure).
    pending: Arc<parking_lot::Mutex<std::collections::HashMap<String, watch::Receiver<bool>>>>,
}

/// The close times and ids of the rows an in-memory archive holds, oldest first.
type Kept = std::collections::BTreeSet<(i64, String)>;

/// An archived conversation as the router reads it back.
#[derive(Debug, Clone)]
pub struct Archived {
    /// The routing record (without the customer's token).
    pub conversation: ConversationRecord,
    /// The transcript.
    pub transcript: Vec<MessageRecord>,
}

/// Marks an archive write of [`archive_closed`] finished when dropped (also when its task
/// ends early): tells the waiting retirement and forgets the entry.
struct Finished(
    watch::Sender<bool>,
    Arc<parking_lot::Mutex<std::collections::HashMap<String, watch::Receiver<bool>>>>,
    String,
);

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.0.send(true);
        self.1.lock().remove(&self.2);
    }
}

/// Returns the gRPC status of a record error: UNAVAILABLE when the record cannot be
/// reached (retry), RESOURCE_EXHAUSTED when it is full, the caller's fault as such.
pub fn record_status(e: RecordError) -> tonic::Status {
    match e {
        RecordError::Full(_) => tonic::Status::resource_exhausted(e.to_string()),
        RecordError::NotFound(_) => tonic::Status::not_found(e.to_string()),
        RecordError::InvalidInput(_) => tonic::Status::invalid_argument(e.to_string()),
        RecordError::Conflict(_) => tonic::Status::aborted(e.to_string()),
        RecordError::Unavailable(_) | RecordError::Backend(_) => {
            tonic::Status::unavailable(e.to_string())
        }
    }
}

impl Archive {
    /// Returns the archive in `record` (cluster mode: [`centralino_record::PgRecord`]).
    pub fn new(record: Arc<dyn Record>) -> Self {
        Self {
            record,
            same_file: None,
            bounded: None,
            pending: Arc::default(),
        }
    }

    /// Returns the archive inside the embedded store's redb file (standalone mode): the
    /// record's tables beside the live keys, retirement in one transaction.
    pub fn in_store_file(store: &EmbeddedStore) -> Result<Self, RecordError> {
        let record = EmbeddedRecord::with_database(store.database())?;
        Ok(Self {
            record: Arc::new(record.clone()),
            same_file: Some(SameFile {
                store: store.clone(),
                record,
            }),
            bounded: None,
            pending: Arc::default(),
        })
    }

    /// Returns an archive in memory (tests, benchmarks, the memory store) that keeps the
    /// newest [`MEMORY_ARCHIVE_KEEP`] conversations.
    pub fn memory() -> Result<Self, RecordError> {
        Ok(Self {
            bounded: Some(Default::default()),
            ..Self::new(Arc::new(MemoryRecord::new()?))
        })
    }

    /// Forgets the oldest rows of an in-memory archive beyond its bound.
    async fn bound(&self, row: &ArchivedConversation) -> Result<(), RecordError> {
        let Some(kept) = &self.bounded else {
            return Ok(());
        };
        let cutoff = {
            let mut kept = kept.lock();
            kept.insert((row.closed_at_ms, row.id.clone()));
            if kept.len() <= MEMORY_ARCHIVE_KEEP {
                return Ok(());
            }
            while kept.len() > MEMORY_ARCHIVE_KEEP {
                kept.pop_first();
            }
            kept.first().map(|(at, _)| *at)
        };
        if let Some(cutoff) = cutoff {
            self.record.delete_older_than(cutoff).await?;
        }
        Ok(())
    }

    /// Returns the system of record underneath.
    pub fn record(&self) -> &Arc<dyn Record> {
        &self.record
    }

    /// Returns the embedded record when it shares the store's file (standalone; tests
    /// probe its tables).
    pub fn embedded(&self) -> Option<&EmbeddedRecord> {
        self.same_file.as_ref().map(|s| &s.record)
    }

    /// Writes the archive row of a closed conversation (idempotent: when it is archived
    /// already only its rating is brought up to date). Returns whether the row is new.
    pub async fn archive(
        &self,
        rec: &ConversationRecord,
        transcript: &[MessageRecord],
    ) -> Result<bool, RecordError> {
        let row = row(rec, transcript)?;
        let outcome = self.record.archive(row.clone(), close_events(rec)).await;
        crate::metrics::archive_write("archive", outcome.is_ok());
        let outcome = outcome?;
        if outcome.inserted {
            self.bound(&row).await?;
        }
        if !outcome.inserted {
            if let Some(r) = &rec.rating {
                self.rate(&rec.id, r).await?;
            }
        }
        Ok(outcome.inserted)
    }

    /// Sets the rating of an archived conversation.
    pub async fn rate(&self, id: &str, rating: &Rating) -> Result<(), RecordError> {
        let done = self
            .record
            .set_rating(id, rating.good, &rating.comment)
            .await;
        crate::metrics::archive_write("rating", done.is_ok());
        done
    }

    /// Returns the archived conversation `id`.
    pub async fn find(&self, id: &str) -> Result<Option<Archived>, RecordError> {
        self.record.get(id).await?.map(archived).transpose()
    }

    /// Returns a page of archived conversations passing `filter`, newest close first.
    pub async fn list(
        &self,
        filter: &ArchiveFilter,
        cursor: Option<&ArchiveCursor>,
        limit: usize,
    ) -> Result<Page<Archived>, RecordError> {
        let page = self.record.list(filter, cursor, limit).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(archived)
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    /// Returns everything the record holds about a customer, as JSON.
    pub async fn export_customer(&self, customer_id: &str) -> Result<Value, RecordError> {
        self.record.export_customer(customer_id).await
    }

    /// Erases a customer from the record.
    pub async fn erase_customer(&self, customer_id: &str) -> Result<ErasureReport, RecordError> {
        let report = self.record.erase_customer(customer_id).await?;
        crate::metrics::archive_erasure();
        Ok(report)
    }

    /// Deletes archived conversations closed more than `days` days before `now_ms`; returns
    /// how many.
    pub async fn expire(&self, days: u32, now_ms: i64) -> Result<u64, RecordError> {
        let cutoff = now_ms - i64::from(days) * DAY_MS;
        let deleted = self.record.delete_older_than(cutoff).await?;
        crate::metrics::archive_retention_deleted(deleted);
        // The integration events of the same age go too (the outbox does not grow forever;
        // a consumer further behind resumes from the oldest kept).
        let events = self.record.delete_events_older_than(cutoff).await?;
        if events > 0 {
            info!(events, days, "retention: integration events deleted");
        }
        Ok(deleted)
    }
}

/// Returns the record's row of a closed conversation: the indexed columns, the transcript
/// and the routing record as JSON (without the customer's token, a secret of the live
/// conversation only).
pub fn row(
    rec: &ConversationRecord,
    transcript: &[MessageRecord],
) -> Result<ArchivedConversation, RecordError> {
    let mut details = rec.clone();
    details.token.clear();
    Ok(ArchivedConversation {
        id: rec.id.clone(),
        customer_id: (!rec.customer_id.is_empty()).then(|| rec.customer_id.clone()),
        agent_id: rec.agent_id.clone(),
        department: rec.department.clone(),
        language: rec.language.clone(),
        started_at_ms: rec.started_at_ms,
        closed_at_ms: rec.closed_at_ms.unwrap_or(rec.started_at_ms),
        rating: rec.rating.as_ref().map(|r| RecordRating {
            good: r.good,
            comment: r.comment.clone(),
        }),
        transcript: serde_json::to_value(transcript)?,
        details: serde_json::to_value(details)?,
    })
}

/// Reads a row back (the rating column wins over the routing record's copy).
fn archived(row: ArchivedConversation) -> Result<Archived, RecordError> {
    let mut conversation: ConversationRecord = serde_json::from_value(row.details)?;
    conversation.rating = row.rating.map(|r| Rating {
        good: r.good,
        comment: r.comment,
    });
    let transcript = serde_json::from_value(row.transcript)?;
    Ok(Archived {
        conversation,
        transcript,
    })
}

/// The close's integration event, written with the archive row (see
/// [`IntegrationLog::close_event`]).
fn close_events(rec: &ConversationRecord) -> Vec<NewEvent> {
    IntegrationLog::close_event(rec).into_iter().collect()
}

/// Archives a conversation whose close is durable, in the background: the row is there for
/// supervisors right after the close, and the close's integration event is appended in the
/// row's transaction (after the conversation's earlier events: the appender is flushed
/// first). A failure is logged; retirement archives again, with the same event.
pub fn archive_closed(
    archive: &Archive,
    events: &Arc<IntegrationLog>,
    rec: &ConversationRecord,
    transcript: &[MessageRecord],
) -> tokio::task::JoinHandle<()> {
    let (archive, rec, transcript) = (archive.clone(), rec.clone(), transcript.to_vec());
    let events = events.clone();
    let (done, running) = watch::channel(false);
    archive.pending.lock().insert(rec.id.clone(), running);
    tokio::spawn(async move {
        let _done = Finished(done, archive.pending.clone(), rec.id.clone());
        events.flush().await;
        match tokio::time::timeout(ARCHIVE_ACK_WAIT * 5, archive.archive(&rec, &transcript)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(conversation_id = %rec.id, error = %e, "closed conversation not archived yet (retried at retirement)")
            }
            Err(_) => {
                warn!(conversation_id = %rec.id, "archiving a closed conversation timed out (retried at retirement)")
            }
        }
    })
}

/// Sets the rating of an archived conversation whose rating is durable, in the background.
/// A failure is logged; retirement brings the row up to date.
pub fn rate_archived(archive: &Archive, id: &str, given: &Rating) -> tokio::task::JoinHandle<()> {
    let (archive, id, given) = (archive.clone(), id.to_string(), given.clone());
    tokio::spawn(async move {
        match tokio::time::timeout(ARCHIVE_ACK_WAIT * 5, archive.rate(&id, &given)).await {
            Ok(Ok(())) => {}
            // Not archived yet (the close's archive write failed): retirement writes the
            // row with the rating.
            Ok(Err(e)) => {
                warn!(conversation_id = %id, error = %e, "rating not archived yet (retried at retirement)")
            }
            Err(_) => warn!(conversation_id = %id, "archiving a rating timed out"),
        }
    })
}

/// Why a closed conversation could not be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// The archive could not be written; the live record stays in the store.
    #[error("archive write failed: {0}")]
    Archive(#[from] RecordError),
    /// The archive was written but the live keys could not be removed (the next recovery
    /// removes them, without a second archive row).
    #[error("live keys not removed: {0}")]
    Store(#[from] StoreError),
}

/// Retires a closed conversation: archives it (idempotently) and then removes its live
/// record and transcript from the store — in one redb transaction when the archive shares
/// the store's file. The one way every path retires a conversation (an actor that stops, a
/// restart's recovery, a partition's adoption).
pub async fn retire_closed(
    archive: &Archive,
    commits: &GroupCommit,
    rec: &ConversationRecord,
    transcript: Vec<MessageRecord>,
) -> Result<(), RetireError> {
    let running = archive.pending.lock().get(&rec.id).cloned();
    if let Some(mut running) = running {
        let _ = running.wait_for(|done| *done).await;
    }
    let deletes = vec![
        Op::Delete(conversation_key(&rec.id)),
        Op::DeletePrefix(messages_prefix(&rec.id)),
    ];
    let done = match &archive.same_file {
        Some(same) => {
            // Writes of this conversation still queued (a rating) commit first.
            commits.write(Vec::new()).await?;
            if let Some(r) = &rec.rating {
                match archive.rate(&rec.id, r).await {
                    Ok(()) | Err(RecordError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let row = row(rec, &transcript)?;
            let events = close_events(rec);
            let outcome = same
                .store
                .apply_with(deletes, move |tx| {
                    EmbeddedRecord::archive_in(tx, &row, events)
                        .map_err(|e| StoreError::Backend(e.to_string()))
                })
                .await?;
            same.record.published(&outcome);
            Ok(())
        }
        None => {
            archive.archive(rec, &transcript).await?;
            commits.write(deletes).await.map_err(RetireError::from)
        }
    };
    crate::metrics::archive_write("retire", done.is_ok());
    done
}

/// Retires a closed conversation whose actor stopped, trying again for a while when the
/// record or the store is unavailable (then the next recovery retires it).
pub async fn retire_eventually(
    archive: Archive,
    commits: GroupCommit,
    rec: ConversationRecord,
    transcript: Vec<MessageRecord>,
) {
    for attempt in 1..=RETIRE_ATTEMPTS {
        match retire_closed(&archive, &commits, &rec, transcript.clone()).await {
            Ok(()) => return,
            Err(RetireError::Store(StoreError::Fenced(_) | StoreError::Closed)) => return,
            Err(e) => {
                warn!(conversation_id = %rec.id, attempt, error = %e, "closed conversation not retired yet");
                tokio::time::sleep(RETIRE_BACKOFF).await;
            }
        }
    }
}

/// Runs the retention loop until `stop` turns true: once an hour (and at start) deletes
/// the archived conversations closed more than `days` days ago. `days == 0` keeps them
/// forever (the loop returns at once).
pub async fn run_retention(
    archive: Archive,
    clock: SharedClock,
    days: u32,
    mut stop: watch::Receiver<bool>,
) {
    if days == 0 {
        return;
    }
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match archive.expire(days, clock.now_ms()).await {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, days, "retention: archived conversations deleted"),
            Err(e) => warn!(error = %e, "retention: archived conversations not deleted"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::records::{Outcome, State, Visitor};
    use crate::store::{MemoryStore, Store};

    pub(crate) fn closed(id: &str) -> ConversationRecord {
        ConversationRecord {
            id: id.into(),
            token: "secret-token".into(),
            customer_id: "cust-1".into(),
            display_name: "Maria".into(),
            department: "sales".into(),
            language: "it".into(),
            priority: 1,
            visitor: Visitor::default(),
            state: State::Closed,
            outcome: Some(Outcome::Completed),
            started_at_ms: 1_000,
            enqueued_at_ms: 1_000,
            queue_entered_at_ms: 1_000,
            agent_id: Some("anna".into()),
            agent_name: "Anna".into(),
            assigned_at_ms: Some(2_000),
            closed_at_ms: Some(9_000),
            returning: false,
            sticky_agent: None,
            last_summary: String::new(),
            summary: "ok".into(),
            rating: None,
            next_event_id: 7,
            serving_language: "it".into(),
            transfers: 0,
            notes: vec!["anna: note".into()],
            extra_skill: None,
            recontact: false,
            pinned_language: false,
            sensitive: false,
            follow_up: Default::default(),
        }
    }

    pub(crate) fn message(seq: u64) -> MessageRecord {
        MessageRecord {
            event_id: seq,
            message_id: format!("m{seq}"),
            seq,
            sender: 1,
            author: String::new(),
            text: format!("hello {seq}"),
            at_ms: 1_000 + seq as i64,
            status_note: false,
        }
    }

    #[tokio::test]
    async fn a_row_reads_back_without_the_token() {
        let archive = Archive::memory().unwrap();
        let rec = closed("c1");
        assert!(archive
            .archive(&rec, &[message(1), message(2)])
            .await
            .unwrap());
        assert!(
            !archive.archive(&rec, &[message(1)]).await.unwrap(),
            "a second archive of the same id changes nothing"
        );
        let back = archive.find("c1").await.unwrap().unwrap();
        assert_eq!(back.transcript, vec![message(1), message(2)]);
        assert_eq!(back.conversation.token, "", "the token is not archived");
        assert_eq!(back.conversation.notes, rec.notes);
        assert_eq!(back.conversation.agent_id.as_deref(), Some("anna"));
    }

    #[tokio::test]
    async fn a_rating_reaches_the_row_also_through_a_second_archive() {
        let archive = Archive::memory().unwrap();
        let mut rec = closed("c2");
        archive.archive(&rec, &[]).await.unwrap();
        rec.rating = Some(Rating {
            good: false,
            comment: "slow".into(),
        });
        archive.archive(&rec, &[]).await.unwrap();
        let back = archive.find("c2").await.unwrap().unwrap();
        assert_eq!(back.conversation.rating, rec.rating);
    }

    #[tokio::test]
    async fn retirement_in_one_file_archives_and_removes_the_live_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let archive = Archive::in_store_file(&store).unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        let commits = GroupCommit::new(
            Arc::new(store.clone()),
            10,
            Duration::from_millis(1),
            stop_rx,
        );
        let rec = closed("c3");
        commits
            .write(vec![
                crate::store::records::put(conversation_key("c3"), &rec),
                crate::store::records::put(
                    crate::store::records::message_key("c3", 1),
                    &message(1),
                ),
            ])
            .await
            .unwrap();
        retire_closed(&archive, &commits, &rec, vec![message(1)])
            .await
            .unwrap();
        assert_eq!(store.get(&conversation_key("c3")).await.unwrap(), None);
        assert!(store.scan(&messages_prefix("c3")).await.unwrap().is_empty());
        assert!(archive.find("c3").await.unwrap().is_some());
        // Again (a recovery after a crash right after): still one row, nothing fails.
        retire_closed(&archive, &commits, &rec, vec![message(1)])
            .await
            .unwrap();
        let page = archive
            .list(&ArchiveFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
    }

    #[tokio::test]
    async fn retirement_elsewhere_archives_first_then_removes() {
        let archive = Archive::memory().unwrap();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let (_stop, stop_rx) = watch::channel(false);
        let commits = GroupCommit::new(store.clone(), 10, Duration::from_millis(1), stop_rx);
        let rec = closed("c4");
        commits
            .write(vec![crate::store::records::put(
                conversation_key("c4"),
                &rec,
            )])
            .await
            .unwrap();
        retire_closed(&archive, &commits, &rec, Vec::new())
            .await
            .unwrap();
        assert_eq!(store.get(&conversation_key("c4")).await.unwrap(), None);
        assert_eq!(
            archive.find("c4").await.unwrap().unwrap().conversation.id,
            "c4"
        );
    }

    #[tokio::test]
    async fn an_archive_in_memory_keeps_the_newest_rows_only() {
        let archive = Archive::memory().unwrap();
        let extra = 5;
        for n in 0..(MEMORY_ARCHIVE_KEEP + extra) {
            let mut rec = closed(&format!("m{n:05}"));
            rec.closed_at_ms = Some(n as i64);
            archive.archive(&rec, &[]).await.unwrap();
        }
        assert!(
            archive.find("m00000").await.unwrap().is_none(),
            "the oldest is gone"
        );
        let newest = format!("m{:05}", MEMORY_ARCHIVE_KEEP + extra - 1);
        assert!(archive.find(&newest).await.unwrap().is_some());
        let all = archive
            .list(&ArchiveFilter::default(), None, centralino_record::MAX_PAGE)
            .await
            .unwrap();
        assert_eq!(all.items.len(), MEMORY_ARCHIVE_KEEP);
    }

    #[tokio::test]
    async fn retention_deletes_what_is_older_than_the_days() {
        let archive = Archive::memory().unwrap();
        let mut old = closed("old");
        old.closed_at_ms = Some(0);
        let mut new = closed("new");
        new.closed_at_ms = Some(10 * DAY_MS);
        archive.archive(&old, &[]).await.unwrap();
        archive.archive(&new, &[]).await.unwrap();
        assert_eq!(archive.expire(5, 10 * DAY_MS).await.unwrap(), 1);
        assert!(archive.find("old").await.unwrap().is_none());
        assert!(archive.find("new").await.unwrap().is_some());
    }
}
