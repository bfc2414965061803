//! [`EmbeddedRecord`]: the record of standalone mode, in one redb database file. redb
//! serialises write transactions and commits each with fsync (`Durability::Immediate`, its
//! default), so every call is atomic and durable when it returns, and profile updates and
//! sequence numbers need no further locking. [`MemoryRecord`] is the same code on redb's
//! in-memory backend: the twin shares every line of the semantics.
//!
//! Tables: `conversations` (id → JSON) with the indexes `conversations_by_closed`
//! ((closed_at_ms, id)) and `conversations_by_customer` ((customer_id, id)); `profiles`;
//! `outbox` (seq → JSON); `counters` (the outbox, directory-feed and audit sequences);
//! `directory` ((kind, id) → JSON); `directory_changes`; `audit`; `tokens`; `webhooks`
//! (endpoint → claim and cursor).
//! A list scans `conversations_by_closed` from the cursor backwards and filters, which is
//! fine for one standalone node's archive.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::{
    check_actor, check_conversation, check_events, check_id, check_limit, check_opt_id, check_ttl,
    RecordError,
};
use crate::record::{erased_payload, export_json, Record};
use crate::types::{
    ArchiveCursor, ArchiveFilter, ArchiveOutcome, ArchivedConversation, AuditEntry, ChangedBy,
    CustomerProfile, DirectoryChange, DirectoryEntry, DirectoryKind, ErasureReport, NewEvent,
    OperatorToken, OutboxEvent, Page, ProfileFn,
};

const CONVERSATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("record_conversations");
const BY_CLOSED: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("record_conversations_by_closed");
const BY_CUSTOMER: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("record_conversations_by_customer");
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("record_profiles");
const OUTBOX: TableDefinition<i64, &[u8]> = TableDefinition::new("record_outbox");
/// The outbox by event time, for retention: (at_ms, seq).
const OUTBOX_BY_TIME: TableDefinition<(i64, i64), ()> =
    TableDefinition::new("record_outbox_by_time");
const COUNTERS: TableDefinition<&str, i64> = TableDefinition::new("record_counters");
const DIRECTORY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("record_directory");
const DIRECTORY_CHANGES: TableDefinition<i64, &[u8]> =
    TableDefinition::new("record_directory_changes");
const AUDIT: TableDefinition<i64, &[u8]> = TableDefinition::new("record_audit");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("record_tokens");
/// Webhook endpoint → its claim and cursor ([`WebhookRow`] as JSON).
const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("record_webhooks");

const OUTBOX_COUNTER: &str = "outbox";
const DIRECTORY_COUNTER: &str = "directory";
const AUDIT_COUNTER: &str = "audit";

/// The ENOSPC errno: a full disk is `Full`, not `Unavailable`.
const ENOSPC: i32 = 28;

fn db_err(e: impl Into<redb::Error>) -> RecordError {
    match e.into() {
        redb::Error::Io(io) if io.raw_os_error() == Some(ENOSPC) => {
            RecordError::Full(io.to_string())
        }
        redb::Error::Io(io) => RecordError::Unavailable(io.to_string()),
        other => RecordError::Backend(other.to_string()),
    }
}

/// Begins a write transaction whose commit returns only once it is on disk (fsync).
fn begin(db: &Database) -> Result<WriteTransaction, RecordError> {
    let mut tx = db.begin_write().map_err(db_err)?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| RecordError::Backend(e.to_string()))?;
    Ok(tx)
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, RecordError> {
    Ok(serde_json::to_vec(v)?)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, RecordError> {
    Ok(serde_json::from_slice(b)?)
}

struct Inner {
    db: Arc<Database>,
    outbox: watch::Sender<i64>,
    directory: watch::Sender<i64>,
}

/// The redb-backed [`Record`] (standalone mode). Cloning shares the database.
#[derive(Clone)]
pub struct EmbeddedRecord {
    inner: Arc<Inner>,
}

/// The in-memory twin of the record: [`EmbeddedRecord`] on redb's in-memory backend, so it
/// behaves exactly like the embedded record and, through the contract tests, like
/// PostgreSQL. Nothing survives the process.
#[derive(Clone)]
pub struct MemoryRecord(EmbeddedRecord);

/// Outbox events an in-memory record keeps (the newest): its memory stays bounded.
pub const MEMORY_OUTBOX_KEEP: i64 = 100_000;
/// How often (in sequence numbers) an in-memory record trims its outbox.
const MEMORY_OUTBOX_TRIM_EVERY: i64 = 1024;

impl MemoryRecord {
    /// Forgets the outbox events older than the newest [`MEMORY_OUTBOX_KEEP`] once the
    /// sequence `seqs` reached crosses a trim point (every 1,024 events).
    async fn bound_outbox(&self, seqs: &[i64]) -> Result<(), RecordError> {
        let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
            return Ok(());
        };
        let crossed = last / MEMORY_OUTBOX_TRIM_EVERY != (first - 1) / MEMORY_OUTBOX_TRIM_EVERY;
        if !crossed || *last <= MEMORY_OUTBOX_KEEP {
            return Ok(());
        }
        let keep_from = last - MEMORY_OUTBOX_KEEP + 1;
        self.0
            .run("trim_outbox", move |db| {
                let tx = begin(db)?;
                {
                    let mut table = tx.open_table(OUTBOX).map_err(db_err)?;
                    let mut by_time = tx.open_table(OUTBOX_BY_TIME).map_err(db_err)?;
                    let old: Vec<(i64, i64)> = table
                        .range(..keep_from)
                        .map_err(db_err)?
                        .map(|item| {
                            let (k, v) = item.map_err(db_err)?;
                            let e: OutboxEvent = dec(v.value())?;
                            Ok((k.value(), e.at_ms))
                        })
                        .collect::<Result<_, RecordError>>()?;
                    for (seq, at) in old {
                        table.remove(seq).map_err(db_err)?;
                        by_time.remove((at, seq)).map_err(db_err)?;
                    }
                }
                tx.commit().map_err(db_err)?;
                Ok(())
            })
            .await
    }

    /// Returns an empty in-memory record.
    pub fn new() -> Result<Self, RecordError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(db_err)?;
        Ok(Self(EmbeddedRecord::from_database(Arc::new(db))?))
    }

    /// Returns the embedded record underneath (for the contract's probes).
    pub fn as_embedded(&self) -> &EmbeddedRecord {
        &self.0
    }
}

impl EmbeddedRecord {
    /// Opens (or creates) the record file `record.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, RecordError> {
        std::fs::create_dir_all(dir).map_err(|e| RecordError::Unavailable(e.to_string()))?;
        let db = Database::create(dir.join("record.redb")).map_err(db_err)?;
        Self::from_database(Arc::new(db))
    }

    /// Opens the record inside an existing redb database, such as the one of the embedded
    /// live store (its tables are named `record_*`), so that a close can archive the
    /// conversation and remove its live keys in one transaction with
    /// [`EmbeddedRecord::archive_in`].
    pub fn with_database(db: Arc<Database>) -> Result<Self, RecordError> {
        Self::from_database(db)
    }

    /// Archives a conversation (idempotently, as [`Record::archive`]) inside the caller's
    /// write transaction, beside the caller's own writes; nothing is durable until the
    /// caller commits. After the commit, hand the outcome to [`EmbeddedRecord::published`]
    /// so that followers of the outbox wake.
    pub fn archive_in(
        tx: &WriteTransaction,
        row: &ArchivedConversation,
        events: Vec<NewEvent>,
    ) -> Result<ArchiveOutcome, RecordError> {
        check_conversation(row)?;
        check_events(&events)?;
        archive_in(tx, row, events)
    }

    /// Wakes the outbox's followers after a commit that included [`EmbeddedRecord::archive_in`].
    pub fn published(&self, outcome: &ArchiveOutcome) {
        if let Some(last) = outcome.seqs.last() {
            Self::signal(&self.inner.outbox, *last);
        }
    }

    fn from_database(db: Arc<Database>) -> Result<Self, RecordError> {
        let tx = begin(&db)?;
        tx.open_table(CONVERSATIONS).map_err(db_err)?;
        tx.open_table(BY_CLOSED).map_err(db_err)?;
        tx.open_table(BY_CUSTOMER).map_err(db_err)?;
        tx.open_table(PROFILES).map_err(db_err)?;
        tx.open_table(OUTBOX).map_err(db_err)?;
        tx.open_table(OUTBOX_BY_TIME).map_err(db_err)?;
        tx.open_table(COUNTERS).map_err(db_err)?;
        tx.open_table(DIRECTORY).map_err(db_err)?;
        tx.open_table(DIRECTORY_CHANGES).map_err(db_err)?;
        tx.open_table(AUDIT).map_err(db_err)?;
        tx.open_table(TOKENS).map_err(db_err)?;
        tx.open_table(WEBHOOKS).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        let rtx = db.begin_read().map_err(db_err)?;
        let outbox = counter(&rtx, OUTBOX_COUNTER)?;
        let directory = counter(&rtx, DIRECTORY_COUNTER)?;
        drop(rtx);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                outbox: watch::Sender::new(outbox),
                directory: watch::Sender::new(directory),
            }),
        })
    }

    /// Runs `f` on a blocking thread (redb calls block, a commit waits for fsync).
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Database) -> Result<T, RecordError> + Send + 'static,
    ) -> Result<T, RecordError> {
        let db = self.inner.db.clone();
        let start = Instant::now();
        let out = tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| RecordError::Backend(format!("record task: {e}")))
            .and_then(|r| r);
        crate::metrics::op(op, out.is_ok(), start.elapsed().as_secs_f64());
        out
    }

    fn signal(sender: &watch::Sender<i64>, seq: i64) {
        sender.send_if_modified(|v| {
            let newer = seq > *v;
            if newer {
                *v = seq;
            }
            newer
        });
    }

    /// Returns how many stored keys and values, in every table, contain `needle` (as text):
    /// the erasure tests' "nothing left anywhere" probe.
    pub async fn rows_mentioning(&self, needle: &str) -> Result<usize, RecordError> {
        let needle = needle.to_string();
        self.run("probe", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let mut n = 0;
            let has = |s: &str| s.contains(needle.as_str());
            let hasb = |b: &[u8]| String::from_utf8_lossy(b).contains(needle.as_str());
            for def in [CONVERSATIONS, PROFILES, TOKENS] {
                for item in tx.open_table(def).map_err(db_err)?.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    n += usize::from(has(k.value()) || hasb(v.value()));
                }
            }
            for def in [OUTBOX, DIRECTORY_CHANGES, AUDIT] {
                for item in tx.open_table(def).map_err(db_err)?.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    n += usize::from(hasb(v.value()));
                }
            }
            for item in tx
                .open_table(BY_CLOSED)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (k, _) = item.map_err(db_err)?;
                n += usize::from(has(k.value().1));
            }
            for item in tx
                .open_table(BY_CUSTOMER)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (k, _) = item.map_err(db_err)?;
                let (a, b) = k.value();
                n += usize::from(has(a) || has(b));
            }
            for item in tx
                .open_table(DIRECTORY)
                .map_err(db_err)?
                .iter()
                .map_err(db_err)?
            {
                let (k, v) = item.map_err(db_err)?;
                let (a, b) = k.value();
                n += usize::from(has(a) || has(b) || hasb(v.value()));
            }
            Ok(n)
        })
        .await
    }
}

/// A webhook endpoint's claim and cursor.
#[derive(serde::Serialize, serde::Deserialize)]
struct WebhookRow {
    seq: i64,
    holder: String,
    expires_at_ms: i64,
}

/// The record's clock for webhook claims (milliseconds since the Unix epoch).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn webhook_row(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    endpoint: &str,
) -> Result<Option<WebhookRow>, RecordError> {
    match table.get(endpoint).map_err(db_err)? {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

fn counter(tx: &ReadTransaction, name: &str) -> Result<i64, RecordError> {
    let table = tx.open_table(COUNTERS).map_err(db_err)?;
    Ok(table
        .get(name)
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Reserves `n` numbers of a sequence and returns the first.
fn reserve(tx: &WriteTransaction, name: &str, n: usize) -> Result<i64, RecordError> {
    let mut table = tx.open_table(COUNTERS).map_err(db_err)?;
    let last = table
        .get(name)
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or(0);
    table.insert(name, last + n as i64).map_err(db_err)?;
    Ok(last + 1)
}

fn append_in(tx: &WriteTransaction, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let first = reserve(tx, OUTBOX_COUNTER, events.len())?;
    let mut table = tx.open_table(OUTBOX).map_err(db_err)?;
    let mut by_time = tx.open_table(OUTBOX_BY_TIME).map_err(db_err)?;
    let mut seqs = Vec::with_capacity(events.len());
    for (i, e) in events.into_iter().enumerate() {
        let seq = first + i as i64;
        by_time.insert((e.at_ms, seq), ()).map_err(db_err)?;
        table
            .insert(seq, enc(&OutboxEvent::new(seq, e))?.as_slice())
            .map_err(db_err)?;
        seqs.push(seq);
    }
    Ok(seqs)
}

/// Deletes the outbox events before `before_ms` (by the time index); returns how many.
fn delete_events_before(tx: &WriteTransaction, before_ms: i64) -> Result<u64, RecordError> {
    let mut by_time = tx.open_table(OUTBOX_BY_TIME).map_err(db_err)?;
    let mut table = tx.open_table(OUTBOX).map_err(db_err)?;
    let old: Vec<(i64, i64)> = by_time
        .range(..(before_ms, i64::MIN))
        .map_err(db_err)?
        .map(|item| item.map(|(k, _)| k.value()).map_err(db_err))
        .collect::<Result<_, RecordError>>()?;
    let mut n = 0;
    for (at, seq) in old {
        by_time.remove((at, seq)).map_err(db_err)?;
        n += u64::from(table.remove(seq).map_err(db_err)?.is_some());
    }
    Ok(n)
}

fn audit_in(
    tx: &WriteTransaction,
    by: &ChangedBy,
    action: &str,
    subject: String,
    detail: Value,
) -> Result<(), RecordError> {
    let id = reserve(tx, AUDIT_COUNTER, 1)?;
    let row = AuditEntry {
        id,
        at_ms: by.at_ms,
        actor: by.actor.clone(),
        action: action.to_string(),
        subject,
        detail,
    };
    tx.open_table(AUDIT)
        .map_err(db_err)?
        .insert(id, enc(&row)?.as_slice())
        .map_err(db_err)?;
    Ok(())
}

/// Stores a directory entry with its change-feed entry and audit row; returns the feed seq.
fn store_entry(
    tx: &WriteTransaction,
    entry: &DirectoryEntry,
    action: &str,
    by: &ChangedBy,
) -> Result<i64, RecordError> {
    tx.open_table(DIRECTORY)
        .map_err(db_err)?
        .insert(
            (entry.kind.as_str(), entry.id.as_str()),
            enc(entry)?.as_slice(),
        )
        .map_err(db_err)?;
    let seq = reserve(tx, DIRECTORY_COUNTER, 1)?;
    let change = DirectoryChange {
        seq,
        kind: entry.kind,
        id: entry.id.clone(),
        version: entry.version,
        disabled: entry.disabled,
        at_ms: by.at_ms,
    };
    tx.open_table(DIRECTORY_CHANGES)
        .map_err(db_err)?
        .insert(seq, enc(&change)?.as_slice())
        .map_err(db_err)?;
    audit_in(
        tx,
        by,
        action,
        format!("{}/{}", entry.kind.as_str(), entry.id),
        serde_json::json!({ "version": entry.version, "disabled": entry.disabled, "doc": entry.doc }),
    )?;
    Ok(seq)
}

fn get_entry_in(
    tx: &WriteTransaction,
    kind: DirectoryKind,
    id: &str,
) -> Result<Option<DirectoryEntry>, RecordError> {
    let table = tx.open_table(DIRECTORY).map_err(db_err)?;
    let got = table.get((kind.as_str(), id)).map_err(db_err)?;
    got.map(|v| dec(v.value())).transpose()
}

/// The ids of a customer's archived conversations.
fn customer_conversations(
    table: &impl ReadableTable<(&'static str, &'static str), ()>,
    customer_id: &str,
) -> Result<Vec<String>, RecordError> {
    let mut ids = Vec::new();
    for item in table.range((customer_id, "")..).map_err(db_err)? {
        let (k, _) = item.map_err(db_err)?;
        let (c, id) = k.value();
        if c != customer_id {
            break;
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// The outbox events naming the customer or one of `conversations`.
fn customer_events(
    table: &impl ReadableTable<i64, &'static [u8]>,
    customer_id: &str,
    conversations: &HashSet<String>,
) -> Result<Vec<OutboxEvent>, RecordError> {
    let mut out = Vec::new();
    for item in table.iter().map_err(db_err)? {
        let (_, v) = item.map_err(db_err)?;
        let e: OutboxEvent = dec(v.value())?;
        let names = e.customer_id.as_deref() == Some(customer_id)
            || e.conversation_id
                .as_ref()
                .is_some_and(|c| conversations.contains(c));
        if names {
            out.push(e);
        }
    }
    Ok(out)
}

fn profile_in(tx: &WriteTransaction, customer_id: &str) -> Result<CustomerProfile, RecordError> {
    let table = tx.open_table(PROFILES).map_err(db_err)?;
    let got = table.get(customer_id).map_err(db_err)?;
    match got {
        Some(v) => dec(v.value()),
        None => Ok(CustomerProfile {
            customer_id: customer_id.to_string(),
            version: 0,
            tier: None,
            data: Value::Object(Default::default()),
        }),
    }
}

fn put_profile_in(tx: &WriteTransaction, p: &CustomerProfile) -> Result<(), RecordError> {
    tx.open_table(PROFILES)
        .map_err(db_err)?
        .insert(p.customer_id.as_str(), enc(p)?.as_slice())
        .map_err(db_err)?;
    Ok(())
}

/// Archives `row` and appends `events` inside `tx` (see [`EmbeddedRecord::archive_in`]).
fn archive_in(
    tx: &WriteTransaction,
    row: &ArchivedConversation,
    events: Vec<NewEvent>,
) -> Result<ArchiveOutcome, RecordError> {
    {
        let mut conversations = tx.open_table(CONVERSATIONS).map_err(db_err)?;
        if conversations
            .get(row.id.as_str())
            .map_err(db_err)?
            .is_some()
        {
            return Ok(ArchiveOutcome {
                inserted: false,
                seqs: Vec::new(),
            });
        }
        conversations
            .insert(row.id.as_str(), enc(row)?.as_slice())
            .map_err(db_err)?;
    }
    tx.open_table(BY_CLOSED)
        .map_err(db_err)?
        .insert((row.closed_at_ms, row.id.as_str()), ())
        .map_err(db_err)?;
    if let Some(c) = &row.customer_id {
        tx.open_table(BY_CUSTOMER)
            .map_err(db_err)?
            .insert((c.as_str(), row.id.as_str()), ())
            .map_err(db_err)?;
    }
    let seqs = append_in(tx, events)?;
    Ok(ArchiveOutcome {
        inserted: true,
        seqs,
    })
}

#[async_trait]
impl Record for EmbeddedRecord {
    async fn archive(
        &self,
        row: ArchivedConversation,
        events: Vec<NewEvent>,
    ) -> Result<ArchiveOutcome, RecordError> {
        check_conversation(&row)?;
        check_events(&events)?;
        let out = self
            .run("archive", move |db| {
                let tx = begin(db)?;
                let out = archive_in(&tx, &row, events)?;
                if out.inserted {
                    tx.commit().map_err(db_err)?;
                }
                Ok(out)
            })
            .await?;
        if let Some(last) = out.seqs.last() {
            Self::signal(&self.inner.outbox, *last);
        }
        Ok(out)
    }

    async fn set_rating(&self, id: &str, good: bool, comment: &str) -> Result<(), RecordError> {
        check_id("conversation id", id)?;
        let (id, comment) = (id.to_string(), comment.to_string());
        self.run("set_rating", move |db| {
            let tx = begin(db)?;
            {
                let mut table = tx.open_table(CONVERSATIONS).map_err(db_err)?;
                let got: Option<ArchivedConversation> = {
                    let got = table.get(id.as_str()).map_err(db_err)?;
                    got.map(|v| dec(v.value())).transpose()?
                };
                let Some(mut row) = got else {
                    return Err(RecordError::NotFound(format!("conversation {id}")));
                };
                row.rating = Some(crate::types::Rating { good, comment });
                table
                    .insert(id.as_str(), enc(&row)?.as_slice())
                    .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<ArchivedConversation>, RecordError> {
        check_id("conversation id", id)?;
        let id = id.to_string();
        self.run("get", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(CONVERSATIONS).map_err(db_err)?;
            let got = table.get(id.as_str()).map_err(db_err)?;
            got.map(|v| dec(v.value())).transpose()
        })
        .await
    }

    async fn list(
        &self,
        filter: &ArchiveFilter,
        cursor: Option<&ArchiveCursor>,
        limit: usize,
    ) -> Result<Page<ArchivedConversation>, RecordError> {
        let limit = check_limit(limit)?;
        let filter = filter.clone();
        let cursor = cursor.cloned();
        self.run("list", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let index = tx.open_table(BY_CLOSED).map_err(db_err)?;
            let rows = tx.open_table(CONVERSATIONS).map_err(db_err)?;
            let lower = match filter.closed_from_ms {
                Some(t) => Bound::Included((t, "")),
                None => Bound::Unbounded,
            };
            let mut upper: Bound<(i64, &str)> = match filter.closed_before_ms {
                Some(t) => Bound::Excluded((t, "")),
                None => Bound::Unbounded,
            };
            if let Some(c) = &cursor {
                let tighter = match upper {
                    Bound::Excluded(u) => (c.closed_at_ms, c.id.as_str()) < u,
                    _ => true,
                };
                if tighter {
                    upper = Bound::Excluded((c.closed_at_ms, c.id.as_str()));
                }
            }
            let mut items = Vec::new();
            let mut more = false;
            for item in index.range((lower, upper)).map_err(db_err)?.rev() {
                let (k, _) = item.map_err(db_err)?;
                let (_, id) = k.value();
                let Some(v) = rows.get(id).map_err(db_err)? else {
                    continue;
                };
                let row: ArchivedConversation = dec(v.value())?;
                if !filter.keeps(&row) {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(row);
            }
            let next = if more {
                items.last().map(ArchiveCursor::after)
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_older_than(&self, closed_before_ms: i64) -> Result<u64, RecordError> {
        self.run("delete_older_than", move |db| {
            let tx = begin(db)?;
            let mut n = 0;
            {
                let mut index = tx.open_table(BY_CLOSED).map_err(db_err)?;
                let mut rows = tx.open_table(CONVERSATIONS).map_err(db_err)?;
                let mut by_customer = tx.open_table(BY_CUSTOMER).map_err(db_err)?;
                let old: Vec<(i64, String)> = index
                    .range(..(closed_before_ms, ""))
                    .map_err(db_err)?
                    .map(|item| {
                        let (k, _) = item.map_err(db_err)?;
                        let (t, id) = k.value();
                        Ok((t, id.to_string()))
                    })
                    .collect::<Result<_, RecordError>>()?;
                for (t, id) in old {
                    index.remove((t, id.as_str())).map_err(db_err)?;
                    let removed = rows.remove(id.as_str()).map_err(db_err)?;
                    if let Some(v) = removed {
                        let row: ArchivedConversation = dec(v.value())?;
                        if let Some(c) = &row.customer_id {
                            by_customer
                                .remove((c.as_str(), id.as_str()))
                                .map_err(db_err)?;
                        }
                        n += 1;
                    }
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(n)
        })
        .await
    }

    async fn delete_events_older_than(&self, before_ms: i64) -> Result<u64, RecordError> {
        self.run("delete_events_older_than", move |db| {
            let tx = begin(db)?;
            let n = delete_events_before(&tx, before_ms)?;
            tx.commit().map_err(db_err)?;
            Ok(n)
        })
        .await
    }

    async fn get_profile(&self, customer_id: &str) -> Result<Option<CustomerProfile>, RecordError> {
        check_id("customer id", customer_id)?;
        let customer_id = customer_id.to_string();
        self.run("get_profile", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(PROFILES).map_err(db_err)?;
            let got = table.get(customer_id.as_str()).map_err(db_err)?;
            got.map(|v| dec(v.value())).transpose()
        })
        .await
    }

    async fn update_profile(
        &self,
        customer_id: &str,
        f: ProfileFn,
    ) -> Result<CustomerProfile, RecordError> {
        check_id("customer id", customer_id)?;
        let customer_id = customer_id.to_string();
        self.run("update_profile", move |db| {
            let tx = begin(db)?;
            let mut p = profile_in(&tx, &customer_id)?;
            f(&mut p.data).map_err(|why| {
                RecordError::InvalidInput(format!("profile update refused: {why}"))
            })?;
            p.version += 1;
            put_profile_in(&tx, &p)?;
            tx.commit().map_err(db_err)?;
            Ok(p)
        })
        .await
    }

    async fn set_tier(
        &self,
        customer_id: &str,
        tier: Option<&str>,
    ) -> Result<CustomerProfile, RecordError> {
        check_id("customer id", customer_id)?;
        check_opt_id("tier", tier)?;
        let customer_id = customer_id.to_string();
        let tier = tier.map(str::to_string);
        self.run("set_tier", move |db| {
            let tx = begin(db)?;
            let mut p = profile_in(&tx, &customer_id)?;
            p.tier = tier;
            p.version += 1;
            put_profile_in(&tx, &p)?;
            tx.commit().map_err(db_err)?;
            Ok(p)
        })
        .await
    }

    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError> {
        check_events(&events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let seqs = self
            .run("append", move |db| {
                let tx = begin(db)?;
                let seqs = append_in(&tx, events)?;
                tx.commit().map_err(db_err)?;
                Ok(seqs)
            })
            .await?;
        if let Some(last) = seqs.last() {
            Self::signal(&self.inner.outbox, *last);
        }
        Ok(seqs)
    }

    async fn read_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxEvent>, RecordError> {
        let limit = check_limit(limit)?;
        self.run("read_after", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(OUTBOX).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table.range(seq.saturating_add(1)..).map_err(db_err)? {
                let (_, v) = item.map_err(db_err)?;
                out.push(dec(v.value())?);
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn last_seq(&self) -> Result<i64, RecordError> {
        self.run("last_seq", |db| {
            let tx = db.begin_read().map_err(db_err)?;
            counter(&tx, OUTBOX_COUNTER)
        })
        .await
    }

    fn outbox_signal(&self) -> watch::Receiver<i64> {
        self.inner.outbox.subscribe()
    }

    async fn put_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
        doc: Value,
        expected_version: Option<i64>,
        by: &ChangedBy,
    ) -> Result<DirectoryEntry, RecordError> {
        check_id("directory id", id)?;
        check_actor(by)?;
        let id = id.to_string();
        let by = by.clone();
        let (entry, seq) = self
            .run("put_entry", move |db| {
                let tx = begin(db)?;
                let old = get_entry_in(&tx, kind, &id)?;
                let current = old.as_ref().map_or(0, |e| e.version);
                if let Some(want) = expected_version {
                    if want != current {
                        return Err(RecordError::Conflict(format!(
                            "{}/{id} is at version {current}, not {want}",
                            kind.as_str()
                        )));
                    }
                }
                let entry = DirectoryEntry {
                    kind,
                    id,
                    version: current + 1,
                    disabled: old.as_ref().is_some_and(|e| e.disabled),
                    doc,
                    updated_at_ms: by.at_ms,
                    updated_by: by.actor.clone(),
                };
                let seq = store_entry(&tx, &entry, "directory.put", &by)?;
                tx.commit().map_err(db_err)?;
                Ok((entry, seq))
            })
            .await?;
        Self::signal(&self.inner.directory, seq);
        Ok(entry)
    }

    async fn get_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
    ) -> Result<Option<DirectoryEntry>, RecordError> {
        check_id("directory id", id)?;
        let id = id.to_string();
        self.run("get_entry", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(DIRECTORY).map_err(db_err)?;
            let got = table.get((kind.as_str(), id.as_str())).map_err(db_err)?;
            got.map(|v| dec(v.value())).transpose()
        })
        .await
    }

    async fn list_entries(
        &self,
        kind: DirectoryKind,
        include_disabled: bool,
    ) -> Result<Vec<DirectoryEntry>, RecordError> {
        self.run("list_entries", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(DIRECTORY).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table.range((kind.as_str(), "")..).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                if k.value().0 != kind.as_str() {
                    break;
                }
                let e: DirectoryEntry = dec(v.value())?;
                if include_disabled || !e.disabled {
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_disabled(
        &self,
        kind: DirectoryKind,
        id: &str,
        disabled: bool,
        by: &ChangedBy,
    ) -> Result<DirectoryEntry, RecordError> {
        check_id("directory id", id)?;
        check_actor(by)?;
        let id = id.to_string();
        let by = by.clone();
        let (entry, seq) = self
            .run("set_disabled", move |db| {
                let tx = begin(db)?;
                let Some(mut entry) = get_entry_in(&tx, kind, &id)? else {
                    return Err(RecordError::NotFound(format!("{}/{id}", kind.as_str())));
                };
                if entry.disabled == disabled {
                    return Ok((entry, None));
                }
                entry.disabled = disabled;
                entry.version += 1;
                entry.updated_at_ms = by.at_ms;
                entry.updated_by = by.actor.clone();
                let action = if disabled {
                    "directory.disable"
                } else {
                    "directory.enable"
                };
                let seq = store_entry(&tx, &entry, action, &by)?;
                tx.commit().map_err(db_err)?;
                Ok((entry, Some(seq)))
            })
            .await?;
        if let Some(seq) = seq {
            Self::signal(&self.inner.directory, seq);
        }
        Ok(entry)
    }

    async fn directory_changes_after(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<DirectoryChange>, RecordError> {
        let limit = check_limit(limit)?;
        self.run("directory_changes_after", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(DIRECTORY_CHANGES).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table.range(seq.saturating_add(1)..).map_err(db_err)? {
                let (_, v) = item.map_err(db_err)?;
                out.push(dec(v.value())?);
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    fn directory_signal(&self) -> watch::Receiver<i64> {
        self.inner.directory.subscribe()
    }

    async fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, RecordError> {
        let limit = check_limit(limit)?;
        self.run("audit_after", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(AUDIT).map_err(db_err)?;
            let mut out = Vec::new();
            for item in table.range(after.saturating_add(1)..).map_err(db_err)? {
                let (_, v) = item.map_err(db_err)?;
                out.push(dec(v.value())?);
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_token(&self, token: OperatorToken, by: &ChangedBy) -> Result<(), RecordError> {
        check_id("token name", &token.name)?;
        check_id("token digest", &token.digest)?;
        check_actor(by)?;
        let by = by.clone();
        self.run("put_token", move |db| {
            let tx = begin(db)?;
            {
                let mut table = tx.open_table(TOKENS).map_err(db_err)?;
                let clash = table
                    .iter()
                    .map_err(db_err)?
                    .map(|item| {
                        let (_, v) = item.map_err(db_err)?;
                        dec::<OperatorToken>(v.value())
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .any(|t| t.digest == token.digest && t.name != token.name);
                if clash {
                    return Err(RecordError::Conflict(
                        "another token has this digest".into(),
                    ));
                }
                table
                    .insert(token.name.as_str(), enc(&token)?.as_slice())
                    .map_err(db_err)?;
            }
            audit_in(
                &tx,
                &by,
                "token.put",
                format!("token/{}", token.name),
                serde_json::json!({ "scopes": token.scopes }),
            )?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<OperatorToken>, RecordError> {
        let digest = digest.to_string();
        self.run("token_by_digest", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(TOKENS).map_err(db_err)?;
            for item in table.iter().map_err(db_err)? {
                let (_, v) = item.map_err(db_err)?;
                let t: OperatorToken = dec(v.value())?;
                if t.digest == digest {
                    return Ok(Some(t));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<OperatorToken>, RecordError> {
        self.run("list_tokens", |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(TOKENS).map_err(db_err)?;
            table
                .iter()
                .map_err(db_err)?
                .map(|item| {
                    let (_, v) = item.map_err(db_err)?;
                    dec(v.value())
                })
                .collect()
        })
        .await
    }

    async fn delete_token(&self, name: &str, by: &ChangedBy) -> Result<bool, RecordError> {
        check_id("token name", name)?;
        check_actor(by)?;
        let name = name.to_string();
        let by = by.clone();
        self.run("delete_token", move |db| {
            let tx = begin(db)?;
            let existed = tx
                .open_table(TOKENS)
                .map_err(db_err)?
                .remove(name.as_str())
                .map_err(db_err)?
                .is_some();
            if existed {
                audit_in(
                    &tx,
                    &by,
                    "token.delete",
                    format!("token/{name}"),
                    Value::Null,
                )?;
                tx.commit().map_err(db_err)?;
            }
            Ok(existed)
        })
        .await
    }

    async fn claim_webhook(
        &self,
        endpoint: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, RecordError> {
        check_id("webhook endpoint", endpoint)?;
        check_id("webhook holder", holder)?;
        check_ttl(ttl_ms)?;
        let (endpoint, holder) = (endpoint.to_string(), holder.to_string());
        self.run("claim_webhook", move |db| {
            let now = wall_ms();
            let tx = begin(db)?;
            let seq = {
                let mut table = tx.open_table(WEBHOOKS).map_err(db_err)?;
                let row = webhook_row(&table, &endpoint)?;
                let seq = match &row {
                    None => 0,
                    Some(r) if r.holder == holder || r.expires_at_ms < now => r.seq,
                    Some(_) => return Ok(None),
                };
                let row = WebhookRow {
                    seq,
                    holder,
                    expires_at_ms: now.saturating_add(ttl_ms),
                };
                table
                    .insert(endpoint.as_str(), enc(&row)?.as_slice())
                    .map_err(db_err)?;
                seq
            };
            tx.commit().map_err(db_err)?;
            Ok(Some(seq))
        })
        .await
    }

    async fn set_webhook_cursor(
        &self,
        endpoint: &str,
        holder: &str,
        seq: i64,
    ) -> Result<bool, RecordError> {
        check_id("webhook endpoint", endpoint)?;
        check_id("webhook holder", holder)?;
        let (endpoint, holder) = (endpoint.to_string(), holder.to_string());
        self.run("set_webhook_cursor", move |db| {
            let tx = begin(db)?;
            {
                let mut table = tx.open_table(WEBHOOKS).map_err(db_err)?;
                let Some(mut row) = webhook_row(&table, &endpoint)? else {
                    return Ok(false);
                };
                if row.holder != holder {
                    return Ok(false);
                }
                row.seq = row.seq.max(seq);
                table
                    .insert(endpoint.as_str(), enc(&row)?.as_slice())
                    .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn release_webhook(&self, endpoint: &str, holder: &str) -> Result<bool, RecordError> {
        check_id("webhook endpoint", endpoint)?;
        check_id("webhook holder", holder)?;
        let (endpoint, holder) = (endpoint.to_string(), holder.to_string());
        self.run("release_webhook", move |db| {
            let tx = begin(db)?;
            {
                let mut table = tx.open_table(WEBHOOKS).map_err(db_err)?;
                let Some(mut row) = webhook_row(&table, &endpoint)? else {
                    return Ok(false);
                };
                if row.holder != holder {
                    return Ok(false);
                }
                row.expires_at_ms = 0;
                table
                    .insert(endpoint.as_str(), enc(&row)?.as_slice())
                    .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn webhook_cursor(&self, endpoint: &str) -> Result<i64, RecordError> {
        check_id("webhook endpoint", endpoint)?;
        let endpoint = endpoint.to_string();
        self.run("webhook_cursor", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(WEBHOOKS).map_err(db_err)?;
            Ok(webhook_row(&table, &endpoint)?.map_or(0, |r| r.seq))
        })
        .await
    }

    async fn export_customer(&self, customer_id: &str) -> Result<Value, RecordError> {
        check_id("customer id", customer_id)?;
        let customer_id = customer_id.to_string();
        self.run("export_customer", move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let profile = {
                let table = tx.open_table(PROFILES).map_err(db_err)?;
                let got = table.get(customer_id.as_str()).map_err(db_err)?;
                got.map(|v| dec::<CustomerProfile>(v.value())).transpose()?
            };
            let ids =
                customer_conversations(&tx.open_table(BY_CUSTOMER).map_err(db_err)?, &customer_id)?;
            let mut conversations = Vec::new();
            {
                let table = tx.open_table(CONVERSATIONS).map_err(db_err)?;
                for id in &ids {
                    if let Some(v) = table.get(id.as_str()).map_err(db_err)? {
                        conversations.push(dec::<ArchivedConversation>(v.value())?);
                    }
                }
            }
            conversations.sort_by(|a, b| (b.closed_at_ms, &b.id).cmp(&(a.closed_at_ms, &a.id)));
            let ids: HashSet<String> = ids.into_iter().collect();
            let events =
                customer_events(&tx.open_table(OUTBOX).map_err(db_err)?, &customer_id, &ids)?;
            export_json(&customer_id, profile, conversations, events)
        })
        .await
    }

    async fn erase_customer(&self, customer_id: &str) -> Result<ErasureReport, RecordError> {
        check_id("customer id", customer_id)?;
        let customer_id = customer_id.to_string();
        self.run("erase_customer", move |db| {
            let tx = begin(db)?;
            let profiles = u64::from(
                tx.open_table(PROFILES)
                    .map_err(db_err)?
                    .remove(customer_id.as_str())
                    .map_err(db_err)?
                    .is_some(),
            );
            let mut report = ErasureReport {
                profiles,
                ..ErasureReport::default()
            };
            let ids = {
                let mut by_customer = tx.open_table(BY_CUSTOMER).map_err(db_err)?;
                let ids = customer_conversations(&by_customer, &customer_id)?;
                for id in &ids {
                    by_customer
                        .remove((customer_id.as_str(), id.as_str()))
                        .map_err(db_err)?;
                }
                ids
            };
            {
                let mut rows = tx.open_table(CONVERSATIONS).map_err(db_err)?;
                let mut index = tx.open_table(BY_CLOSED).map_err(db_err)?;
                for id in &ids {
                    let removed = rows.remove(id.as_str()).map_err(db_err)?;
                    if let Some(v) = removed {
                        let row: ArchivedConversation = dec(v.value())?;
                        index
                            .remove((row.closed_at_ms, id.as_str()))
                            .map_err(db_err)?;
                        report.conversations += 1;
                    }
                }
            }
            let ids: HashSet<String> = ids.into_iter().collect();
            {
                let mut outbox = tx.open_table(OUTBOX).map_err(db_err)?;
                let events = customer_events(&outbox, &customer_id, &ids)?;
                for mut e in events {
                    e.customer_id = None;
                    e.conversation_id = None;
                    e.payload = erased_payload();
                    outbox.insert(e.seq, enc(&e)?.as_slice()).map_err(db_err)?;
                    report.events += 1;
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(report)
        })
        .await
    }
}

#[async_trait]
impl Record for MemoryRecord {
    async fn archive(
        &self,
        row: ArchivedConversation,
        events: Vec<NewEvent>,
    ) -> Result<ArchiveOutcome, RecordError> {
        let outcome = self.0.archive(row, events).await?;
        self.bound_outbox(&outcome.seqs).await?;
        Ok(outcome)
    }
    async fn set_rating(&self, id: &str, good: bool, comment: &str) -> Result<(), RecordError> {
        self.0.set_rating(id, good, comment).await
    }
    async fn get(&self, id: &str) -> Result<Option<ArchivedConversation>, RecordError> {
        self.0.get(id).await
    }
    async fn list(
        &self,
        filter: &ArchiveFilter,
        cursor: Option<&ArchiveCursor>,
        limit: usize,
    ) -> Result<Page<ArchivedConversation>, RecordError> {
        self.0.list(filter, cursor, limit).await
    }
    async fn delete_older_than(&self, closed_before_ms: i64) -> Result<u64, RecordError> {
        self.0.delete_older_than(closed_before_ms).await
    }
    async fn delete_events_older_than(&self, before_ms: i64) -> Result<u64, RecordError> {
        self.0.delete_events_older_than(before_ms).await
    }
    async fn get_profile(&self, customer_id: &str) -> Result<Option<CustomerProfile>, RecordError> {
        self.0.get_profile(customer_id).await
    }
    async fn update_profile(
        &self,
        customer_id: &str,
        f: ProfileFn,
    ) -> Result<CustomerProfile, RecordError> {
        self.0.update_profile(customer_id, f).await
    }
    async fn set_tier(
        &self,
        customer_id: &str,
        tier: Option<&str>,
    ) -> Result<CustomerProfile, RecordError> {
        self.0.set_tier(customer_id, tier).await
    }
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError> {
        let seqs = self.0.append(events).await?;
        self.bound_outbox(&seqs).await?;
        Ok(seqs)
    }
    async fn read_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxEvent>, RecordError> {
        self.0.read_after(seq, limit).await
    }
    async fn last_seq(&self) -> Result<i64, RecordError> {
        self.0.last_seq().await
    }
    fn outbox_signal(&self) -> watch::Receiver<i64> {
        self.0.outbox_signal()
    }
    async fn put_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
        doc: Value,
        expected_version: Option<i64>,
        by: &ChangedBy,
    ) -> Result<DirectoryEntry, RecordError> {
        self.0.put_entry(kind, id, doc, expected_version, by).await
    }
    async fn get_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
    ) -> Result<Option<DirectoryEntry>, RecordError> {
        self.0.get_entry(kind, id).await
    }
    async fn list_entries(
        &self,
        kind: DirectoryKind,
        include_disabled: bool,
    ) -> Result<Vec<DirectoryEntry>, RecordError> {
        self.0.list_entries(kind, include_disabled).await
    }
    async fn set_disabled(
        &self,
        kind: DirectoryKind,
        id: &str,
        disabled: bool,
        by: &ChangedBy,
    ) -> Result<DirectoryEntry, RecordError> {
        self.0.set_disabled(kind, id, disabled, by).await
    }
    async fn directory_changes_after(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<DirectoryChange>, RecordError> {
        self.0.directory_changes_after(seq, limit).await
    }
    fn directory_signal(&self) -> watch::Receiver<i64> {
        self.0.directory_signal()
    }
    async fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, RecordError> {
        self.0.audit_after(after, limit).await
    }
    async fn put_token(&self, token: OperatorToken, by: &ChangedBy) -> Result<(), RecordError> {
        self.0.put_token(token, by).await
    }
    async fn token_by_digest(&self, digest: &str) -> Result<Option<OperatorToken>, RecordError> {
        self.0.token_by_digest(digest).await
    }
    async fn list_tokens(&self) -> Result<Vec<OperatorToken>, RecordError> {
        self.0.list_tokens().await
    }
    async fn delete_token(&self, name: &str, by: &ChangedBy) -> Result<bool, RecordError> {
        self.0.delete_token(name, by).await
    }
    async fn claim_webhook(
        &self,
        endpoint: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, RecordError> {
        self.0.claim_webhook(endpoint, holder, ttl_ms).await
    }
    async fn set_webhook_cursor(
        &self,
        endpoint: &str,
        holder: &str,
        seq: i64,
    ) -> Result<bool, RecordError> {
        self.0.set_webhook_cursor(endpoint, holder, seq).await
    }
    async fn release_webhook(&self, endpoint: &str, holder: &str) -> Result<bool, RecordError> {
        self.0.release_webhook(endpoint, holder).await
    }
    async fn webhook_cursor(&self, endpoint: &str) -> Result<i64, RecordError> {
        self.0.webhook_cursor(endpoint).await
    }
    async fn export_customer(&self, customer_id: &str) -> Result<Value, RecordError> {
        self.0.export_customer(customer_id).await
    }
    async fn erase_customer(&self, customer_id: &str) -> Result<ErasureReport, RecordError> {
        self.0.erase_customer(customer_id).await
    }
}
