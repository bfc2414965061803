//! [`PgRecord`]: the record of cluster mode, in PostgreSQL, shared by every router.
//!
//! - Every call is one transaction (READ COMMITTED); rows that must not race are locked:
//!   a profile update takes the profile row `FOR UPDATE`, so concurrent updates from any
//!   number of routers apply one after the other and none is lost; the tier is a column of
//!   its own that only `set_tier` writes.
//! - The outbox, the directory feed and the audit log are numbered from rows of
//!   `record_counters`: a writer bumps its row and holds the lock to its commit, so numbers
//!   are gapless and in commit order (a reader that has seen `n` has seen everything up to
//!   `n`), which a PostgreSQL `SEQUENCE` does not give.
//! - Commits notify `centralino_outbox` / `centralino_directory` with the new last number;
//!   one LISTEN connection per [`PgRecord`] turns that into the signals that
//!   [`crate::OutboxTail`] and [`crate::DirectoryFeed`] wait on. When the LISTEN connection
//!   drops, it reconnects and re-reads the counters, so nothing is missed.
//! - Migrations (`migrations/*.sql`, embedded at build time) run on connect, under
//!   sqlx's advisory lock, so routers starting together migrate once.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row, Transaction};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{
    check_actor, check_conversation, check_events, check_id, check_limit, check_opt_id, check_ttl,
    RecordError,
};
use crate::record::{erased_payload, export_json, Record};
use crate::types::{
    ArchiveCursor, ArchiveFilter, ArchiveOutcome, ArchivedConversation, AuditEntry, ChangedBy,
    CustomerProfile, DirectoryChange, DirectoryEntry, DirectoryKind, ErasureReport, NewEvent,
    OperatorToken, OutboxEvent, Page, ProfileFn, Rating, RatingFilter,
};

/// The notification channel of outbox commits (payload: the last sequence number).
pub const OUTBOX_CHANNEL: &str = "centralino_outbox";
/// The notification channel of directory commits (payload: the last feed number).
pub const DIRECTORY_CHANNEL: &str = "centralino_directory";
/// How long the LISTEN loop waits before reconnecting after an error.
const RELISTEN_BACKOFF: Duration = Duration::from_millis(500);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to reach PostgreSQL (the `[record]` section of the router's configuration).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// The DSN, `postgres://user:password@host:port/db?sslmode=require` (TLS through rustls
    /// with the WebPKI roots; `sslmode=verify-full&sslrootcert=…` for a private CA).
    pub postgres_url: String,
    /// The pool's size (connections per router), besides the one LISTEN connection.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// How long a call waits for a connection before it fails as unavailable, in ms.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

fn default_pool_size() -> u32 {
    10
}

fn default_acquire_timeout_ms() -> u64 {
    5_000
}

impl PgConfig {
    /// Returns a configuration with the default pool size and timeout.
    pub fn new(postgres_url: impl Into<String>) -> Self {
        Self {
            postgres_url: postgres_url.into(),
            pool_size: default_pool_size(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
        }
    }
}

/// Maps a driver error to the record's: lost connections and timeouts are `Unavailable`,
/// a full disk `Full`, a unique violation `Conflict`.
fn pg_err(e: sqlx::Error) -> RecordError {
    match &e {
        sqlx::Error::Database(d) => match d.code().as_deref() {
            Some("53100") => RecordError::Full(d.message().to_string()),
            Some("23505") => RecordError::Conflict(d.message().to_string()),
            Some(c)
                if c.starts_with("08")
                    || c.starts_with("57P")
                    || c == "53300"
                    || c == "40001"
                    || c == "40P01" =>
            {
                RecordError::Unavailable(d.message().to_string())
            }
            _ => RecordError::Backend(d.to_string()),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => RecordError::Unavailable(e.to_string()),
        _ => RecordError::Backend(e.to_string()),
    }
}

struct Inner {
    pool: PgPool,
    outbox: watch::Sender<i64>,
    directory: watch::Sender<i64>,
    stop: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The PostgreSQL-backed [`Record`] (cluster mode). Cloning shares the pool.
#[derive(Clone)]
pub struct PgRecord {
    inner: Arc<Inner>,
}

fn raise(sender: &watch::Sender<i64>, seq: i64) {
    sender.send_if_modified(|v| {
        let newer = seq > *v;
        if newer {
            *v = seq;
        }
        newer
    });
}

impl PgRecord {
    /// Connects, runs the migrations and starts the LISTEN loop.
    pub async fn connect(config: &PgConfig) -> Result<Self, RecordError> {
        if config.pool_size == 0 {
            return Err(RecordError::InvalidInput("record pool_size is zero".into()));
        }
        let options = PgConnectOptions::from_str(&config.postgres_url).map_err(|e| {
            RecordError::InvalidInput(format!("record postgres_url does not parse: {e}"))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_with(options)
            .await
            .map_err(pg_err)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| RecordError::Unavailable(format!("record migrations: {e}")))?;
        let (outbox, directory) = counters(&pool).await?;
        let inner = Arc::new(Inner {
            pool: pool.clone(),
            outbox: watch::Sender::new(outbox),
            directory: watch::Sender::new(directory),
            stop: watch::Sender::new(false),
        });
        tokio::spawn(listen(
            pool,
            inner.outbox.clone(),
            inner.directory.clone(),
            inner.stop.subscribe(),
        ));
        info!(
            pool_size = config.pool_size,
            "record connected to postgresql"
        );
        Ok(Self { inner })
    }

    /// Returns the pool (for tests and probes).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Returns how many rows, in every table of the record's schema, mention `needle` in
    /// any column: the erasure tests' "nothing left anywhere" probe.
    pub async fn rows_mentioning(&self, needle: &str) -> Result<usize, RecordError> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename NOT LIKE '\\_sqlx%'",
        )
        .fetch_all(self.pool())
        .await
        .map_err(pg_err)?;
        let mut n = 0usize;
        for t in tables {
            let q = format!(
                "SELECT count(*) FROM \"{}\" AS t WHERE strpos(t::text, $1) > 0",
                t.replace('"', "\"\"")
            );
            let c: i64 = sqlx::query_scalar(&q)
                .bind(needle)
                .fetch_one(self.pool())
                .await
                .map_err(pg_err)?;
            n += c as usize;
        }
        Ok(n)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, RecordError> {
        self.inner.pool.begin().await.map_err(pg_err)
    }
}

async fn counters(pool: &PgPool) -> Result<(i64, i64), RecordError> {
    let rows = sqlx::query("SELECT name, last FROM record_counters")
        .fetch_all(pool)
        .await
        .map_err(pg_err)?;
    let (mut outbox, mut directory) = (0, 0);
    for r in rows {
        let name: String = r.try_get("name").map_err(pg_err)?;
        let last: i64 = r.try_get("last").map_err(pg_err)?;
        match name.as_str() {
            "outbox" => outbox = last,
            "directory" => directory = last,
            _ => {}
        }
    }
    Ok((outbox, directory))
}

/// The LISTEN loop: turns notifications into signal raises until `stop`.
async fn listen(
    pool: PgPool,
    outbox: watch::Sender<i64>,
    directory: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        if !first {
            crate::metrics::listener_reconnect();
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(RELISTEN_BACKOFF) => {}
            }
        }
        first = false;
        let connected = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen_all([OUTBOX_CHANNEL, DIRECTORY_CHANNEL]).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = stop.changed() => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "record: cannot listen for notifications, retrying");
                    continue;
                }
            },
        };
        // whatever was committed while nobody listened
        if let Ok((o, d)) = counters(&pool).await {
            raise(&outbox, o);
            raise(&directory, d);
        }
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                got = listener.try_recv() => match got {
                    Ok(Some(n)) => {
                        let Ok(seq) = n.payload().parse::<i64>() else { continue };
                        match n.channel() {
                            OUTBOX_CHANNEL => raise(&outbox, seq),
                            DIRECTORY_CHANNEL => raise(&directory, seq),
                            _ => {}
                        }
                    }
                    Ok(None) => {
                        warn!("record: notification connection lost, reconnecting");
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "record: notification connection failed, reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// Reserves `n` numbers of a counter (locking its row to the commit); returns the first.
async fn reserve(
    tx: &mut Transaction<'static, Postgres>,
    name: &str,
    n: usize,
) -> Result<i64, RecordError> {
    let last: i64 = sqlx::query_scalar(
        "UPDATE record_counters SET last = last + $2 WHERE name = $1 RETURNING last",
    )
    .bind(name)
    .bind(n as i64)
    .fetch_one(&mut **tx)
    .await
    .map_err(pg_err)?;
    Ok(last - n as i64 + 1)
}

async fn notify(
    tx: &mut Transaction<'static, Postgres>,
    channel: &str,
    seq: i64,
) -> Result<(), RecordError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(seq.to_string())
        .execute(&mut **tx)
        .await
        .map_err(pg_err)?;
    Ok(())
}

async fn append_in(
    tx: &mut Transaction<'static, Postgres>,
    events: Vec<NewEvent>,
) -> Result<Vec<i64>, RecordError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let first = reserve(tx, "outbox", events.len()).await?;
    let seqs: Vec<i64> = (0..events.len() as i64).map(|i| first + i).collect();
    let mut kinds = Vec::with_capacity(events.len());
    let mut customers = Vec::with_capacity(events.len());
    let mut conversations = Vec::with_capacity(events.len());
    let mut ats = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    for e in events {
        kinds.push(e.kind);
        customers.push(e.customer_id);
        conversations.push(e.conversation_id);
        ats.push(e.at_ms);
        payloads.push(e.payload);
    }
    sqlx::query(
        "INSERT INTO outbox_events (seq, kind, customer_id, conversation_id, at_ms, payload) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::jsonb[])",
    )
    .bind(&seqs)
    .bind(&kinds)
    .bind(&customers)
    .bind(&conversations)
    .bind(&ats)
    .bind(&payloads)
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    if let Some(last) = seqs.last() {
        notify(tx, OUTBOX_CHANNEL, *last).await?;
    }
    Ok(seqs)
}

async fn audit_in(
    tx: &mut Transaction<'static, Postgres>,
    by: &ChangedBy,
    action: &str,
    subject: String,
    detail: Value,
) -> Result<(), RecordError> {
    let id = reserve(tx, "audit", 1).await?;
    sqlx::query(
        "INSERT INTO audit_log (id, at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(by.at_ms)
    .bind(&by.actor)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    Ok(())
}

const CONVERSATION_COLUMNS: &str = "id, customer_id, agent_id, department, language, \
    started_at_ms, closed_at_ms, rating_good, rating_comment, transcript, details";

fn conversation(r: &PgRow) -> Result<ArchivedConversation, RecordError> {
    let good: Option<bool> = r.try_get("rating_good").map_err(pg_err)?;
    let comment: Option<String> = r.try_get("rating_comment").map_err(pg_err)?;
    Ok(ArchivedConversation {
        id: r.try_get("id").map_err(pg_err)?,
        customer_id: r.try_get("customer_id").map_err(pg_err)?,
        agent_id: r.try_get("agent_id").map_err(pg_err)?,
        department: r.try_get("department").map_err(pg_err)?,
        language: r.try_get("language").map_err(pg_err)?,
        started_at_ms: r.try_get("started_at_ms").map_err(pg_err)?,
        closed_at_ms: r.try_get("closed_at_ms").map_err(pg_err)?,
        rating: good.map(|good| Rating {
            good,
            comment: comment.unwrap_or_default(),
        }),
        transcript: r.try_get("transcript").map_err(pg_err)?,
        details: r.try_get("details").map_err(pg_err)?,
    })
}

fn profile(r: &PgRow, customer_id: &str) -> Result<CustomerProfile, RecordError> {
    Ok(CustomerProfile {
        customer_id: customer_id.to_string(),
        version: r.try_get("version").map_err(pg_err)?,
        tier: r.try_get("tier").map_err(pg_err)?,
        data: r.try_get("data").map_err(pg_err)?,
    })
}

const EVENT_COLUMNS: &str = "seq, kind, customer_id, conversation_id, at_ms, payload";

fn event(r: &PgRow) -> Result<OutboxEvent, RecordError> {
    Ok(OutboxEvent {
        seq: r.try_get("seq").map_err(pg_err)?,
        kind: r.try_get("kind").map_err(pg_err)?,
        customer_id: r.try_get("customer_id").map_err(pg_err)?,
        conversation_id: r.try_get("conversation_id").map_err(pg_err)?,
        at_ms: r.try_get("at_ms").map_err(pg_err)?,
        payload: r.try_get("payload").map_err(pg_err)?,
    })
}

fn kind_of(r: &PgRow) -> Result<DirectoryKind, RecordError> {
    let kind: String = r.try_get("kind").map_err(pg_err)?;
    DirectoryKind::parse(&kind)
        .ok_or_else(|| RecordError::Backend(format!("unknown directory kind {kind:?} stored")))
}

const ENTRY_COLUMNS: &str = "kind, id, version, disabled, doc, updated_at_ms, updated_by";

fn entry(r: &PgRow) -> Result<DirectoryEntry, RecordError> {
    Ok(DirectoryEntry {
        kind: kind_of(r)?,
        id: r.try_get("id").map_err(pg_err)?,
        version: r.try_get("version").map_err(pg_err)?,
        disabled: r.try_get("disabled").map_err(pg_err)?,
        doc: r.try_get("doc").map_err(pg_err)?,
        updated_at_ms: r.try_get("updated_at_ms").map_err(pg_err)?,
        updated_by: r.try_get("updated_by").map_err(pg_err)?,
    })
}

fn token(r: &PgRow) -> Result<OperatorToken, RecordError> {
    Ok(OperatorToken {
        name: r.try_get("name").map_err(pg_err)?,
        digest: r.try_get("digest").map_err(pg_err)?,
        scopes: r.try_get("scopes").map_err(pg_err)?,
    })
}

/// Stores a directory entry with its feed entry and audit row; the caller holds the
/// directory counter (reserved first, so writers of one document queue on it).
async fn store_entry(
    tx: &mut Transaction<'static, Postgres>,
    seq: i64,
    e: &DirectoryEntry,
    action: &str,
    by: &ChangedBy,
) -> Result<(), RecordError> {
    sqlx::query(
        "INSERT INTO directory_entries (kind, id, version, disabled, doc, updated_at_ms, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version, disabled = EXCLUDED.disabled, \
         doc = EXCLUDED.doc, updated_at_ms = EXCLUDED.updated_at_ms, updated_by = EXCLUDED.updated_by",
    )
    .bind(e.kind.as_str())
    .bind(&e.id)
    .bind(e.version)
    .bind(e.disabled)
    .bind(&e.doc)
    .bind(e.updated_at_ms)
    .bind(&e.updated_by)
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    sqlx::query(
        "INSERT INTO directory_changes (seq, kind, id, version, disabled, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(e.kind.as_str())
    .bind(&e.id)
    .bind(e.version)
    .bind(e.disabled)
    .bind(by.at_ms)
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    audit_in(
        tx,
        by,
        action,
        format!("{}/{}", e.kind.as_str(), e.id),
        serde_json::json!({ "version": e.version, "disabled": e.disabled, "doc": e.doc }),
    )
    .await?;
    notify(tx, DIRECTORY_CHANNEL, seq).await
}

async fn get_entry_in(
    tx: &mut Transaction<'static, Postgres>,
    kind: DirectoryKind,
    id: &str,
) -> Result<Option<DirectoryEntry>, RecordError> {
    let q = format!("SELECT {ENTRY_COLUMNS} FROM directory_entries WHERE kind = $1 AND id = $2");
    sqlx::query(&q)
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(pg_err)?
        .map(|r| entry(&r))
        .transpose()
}

/// The events that name a customer or one of their archived conversations.
const CUSTOMER_EVENTS: &str = "customer_id = $1 OR conversation_id IN \
    (SELECT id FROM archived_conversations WHERE customer_id = $1)";

/// Times a call for the metrics.
async fn timed<T>(
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, RecordError>>,
) -> Result<T, RecordError> {
    let start = Instant::now();
    let out = f.await;
    crate::metrics::op(op, out.is_ok(), start.elapsed().as_secs_f64());
    out
}

#[async_trait]
impl Record for PgRecord {
    async fn archive(
        &self,
        row: ArchivedConversation,
        events: Vec<NewEvent>,
    ) -> Result<ArchiveOutcome, RecordError> {
        check_conversation(&row)?;
        check_events(&events)?;
        timed("archive", async {
            let mut tx = self.begin().await?;
            let q = format!(
                "INSERT INTO archived_conversations ({CONVERSATION_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
            );
            let inserted = sqlx::query(&q)
                .bind(&row.id)
                .bind(&row.customer_id)
                .bind(&row.agent_id)
                .bind(&row.department)
                .bind(&row.language)
                .bind(row.started_at_ms)
                .bind(row.closed_at_ms)
                .bind(row.rating.as_ref().map(|r| r.good))
                .bind(row.rating.as_ref().map(|r| r.comment.as_str()))
                .bind(&row.transcript)
                .bind(&row.details)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?
                .rows_affected()
                == 1;
            if !inserted {
                tx.rollback().await.map_err(pg_err)?;
                return Ok(ArchiveOutcome {
                    inserted: false,
                    seqs: Vec::new(),
                });
            }
            let seqs = append_in(&mut tx, events).await?;
            tx.commit().await.map_err(pg_err)?;
            if let Some(last) = seqs.last() {
                raise(&self.inner.outbox, *last);
            }
            Ok(ArchiveOutcome { inserted, seqs })
        })
        .await
    }

    async fn set_rating(&self, id: &str, good: bool, comment: &str) -> Result<(), RecordError> {
        check_id("conversation id", id)?;
        timed("set_rating", async {
            let n = sqlx::query(
                "UPDATE archived_conversations SET rating_good = $2, rating_comment = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(good)
            .bind(comment)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_err)?
            .rows_affected();
            if n == 0 {
                return Err(RecordError::NotFound(format!("conversation {id}")));
            }
            Ok(())
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<ArchivedConversation>, RecordError> {
        check_id("conversation id", id)?;
        timed("get", async {
            let q =
                format!("SELECT {CONVERSATION_COLUMNS} FROM archived_conversations WHERE id = $1");
            sqlx::query(&q)
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .map(|r| conversation(&r))
                .transpose()
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
        timed("list", async {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
                "SELECT {CONVERSATION_COLUMNS} FROM archived_conversations WHERE TRUE"
            ));
            if let Some(v) = &filter.agent_id {
                q.push(" AND agent_id = ").push_bind(v);
            }
            if let Some(v) = &filter.department {
                q.push(" AND department = ").push_bind(v);
            }
            if let Some(v) = &filter.language {
                q.push(" AND language = ").push_bind(v);
            }
            if let Some(v) = &filter.customer_id {
                q.push(" AND customer_id = ").push_bind(v);
            }
            if let Some(t) = filter.closed_from_ms {
                q.push(" AND closed_at_ms >= ").push_bind(t);
            }
            if let Some(t) = filter.closed_before_ms {
                q.push(" AND closed_at_ms < ").push_bind(t);
            }
            match filter.rating {
                Some(RatingFilter::Good) => q.push(" AND rating_good IS TRUE"),
                Some(RatingFilter::Bad) => q.push(" AND rating_good IS FALSE"),
                Some(RatingFilter::Rated) => q.push(" AND rating_good IS NOT NULL"),
                Some(RatingFilter::Unrated) => q.push(" AND rating_good IS NULL"),
                None => &mut q,
            };
            if let Some(c) = cursor {
                q.push(" AND (closed_at_ms, id) < (")
                    .push_bind(c.closed_at_ms)
                    .push(", ")
                    .push_bind(&c.id)
                    .push(")");
            }
            q.push(" ORDER BY closed_at_ms DESC, id DESC LIMIT ")
                .push_bind(limit as i64 + 1);
            let rows = q
                .build()
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_err)?;
            let mut items = rows
                .iter()
                .map(conversation)
                .collect::<Result<Vec<_>, _>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(ArchiveCursor::after)
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_older_than(&self, closed_before_ms: i64) -> Result<u64, RecordError> {
        timed("delete_older_than", async {
            Ok(
                sqlx::query("DELETE FROM archived_conversations WHERE closed_at_ms < $1")
                    .bind(closed_before_ms)
                    .execute(&self.inner.pool)
                    .await
                    .map_err(pg_err)?
                    .rows_affected(),
            )
        })
        .await
    }

    async fn delete_events_older_than(&self, before_ms: i64) -> Result<u64, RecordError> {
        timed("delete_events_older_than", async {
            Ok(sqlx::query("DELETE FROM outbox_events WHERE at_ms < $1")
                .bind(before_ms)
                .execute(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .rows_affected())
        })
        .await
    }

    async fn get_profile(&self, customer_id: &str) -> Result<Option<CustomerProfile>, RecordError> {
        check_id("customer id", customer_id)?;
        timed("get_profile", async {
            sqlx::query("SELECT version, tier, data FROM customer_profiles WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .map(|r| profile(&r, customer_id))
                .transpose()
        })
        .await
    }

    async fn update_profile(
        &self,
        customer_id: &str,
        f: ProfileFn,
    ) -> Result<CustomerProfile, RecordError> {
        check_id("customer id", customer_id)?;
        timed("update_profile", async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO customer_profiles (customer_id, version, tier, data) \
                 VALUES ($1, 0, NULL, '{}'::jsonb) ON CONFLICT (customer_id) DO NOTHING",
            )
            .bind(customer_id)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
            let row = sqlx::query(
                "SELECT version, tier, data FROM customer_profiles WHERE customer_id = $1 FOR UPDATE",
            )
            .bind(customer_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err)?;
            let mut p = profile(&row, customer_id)?;
            f(&mut p.data).map_err(|why| {
                RecordError::InvalidInput(format!("profile update refused: {why}"))
            })?;
            let row = sqlx::query(
                "UPDATE customer_profiles SET data = $2, version = version + 1 \
                 WHERE customer_id = $1 RETURNING version, tier, data",
            )
            .bind(customer_id)
            .bind(&p.data)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err)?;
            let p = profile(&row, customer_id)?;
            tx.commit().await.map_err(pg_err)?;
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
        timed("set_tier", async {
            let row = sqlx::query(
                "INSERT INTO customer_profiles (customer_id, version, tier, data) \
                 VALUES ($1, 1, $2, '{}'::jsonb) ON CONFLICT (customer_id) DO UPDATE \
                 SET tier = EXCLUDED.tier, version = customer_profiles.version + 1 \
                 RETURNING version, tier, data",
            )
            .bind(customer_id)
            .bind(tier)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(pg_err)?;
            profile(&row, customer_id)
        })
        .await
    }

    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError> {
        check_events(&events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        timed("append", async {
            let mut tx = self.begin().await?;
            let seqs = append_in(&mut tx, events).await?;
            tx.commit().await.map_err(pg_err)?;
            if let Some(last) = seqs.last() {
                raise(&self.inner.outbox, *last);
            }
            Ok(seqs)
        })
        .await
    }

    async fn read_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxEvent>, RecordError> {
        let limit = check_limit(limit)?;
        timed("read_after", async {
            let q = format!(
                "SELECT {EVENT_COLUMNS} FROM outbox_events WHERE seq > $1 ORDER BY seq LIMIT $2"
            );
            sqlx::query(&q)
                .bind(seq)
                .bind(limit as i64)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .iter()
                .map(event)
                .collect()
        })
        .await
    }

    async fn last_seq(&self) -> Result<i64, RecordError> {
        timed("last_seq", async {
            sqlx::query_scalar("SELECT last FROM record_counters WHERE name = 'outbox'")
                .fetch_one(&self.inner.pool)
                .await
                .map_err(pg_err)
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
        timed("put_entry", async {
            let mut tx = self.begin().await?;
            let seq = reserve(&mut tx, "directory", 1).await?;
            let old = get_entry_in(&mut tx, kind, id).await?;
            let current = old.as_ref().map_or(0, |e| e.version);
            if let Some(want) = expected_version {
                if want != current {
                    return Err(RecordError::Conflict(format!(
                        "{}/{id} is at version {current}, not {want}",
                        kind.as_str()
                    )));
                }
            }
            let e = DirectoryEntry {
                kind,
                id: id.to_string(),
                version: current + 1,
                disabled: old.as_ref().is_some_and(|e| e.disabled),
                doc,
                updated_at_ms: by.at_ms,
                updated_by: by.actor.clone(),
            };
            store_entry(&mut tx, seq, &e, "directory.put", by).await?;
            tx.commit().await.map_err(pg_err)?;
            raise(&self.inner.directory, seq);
            Ok(e)
        })
        .await
    }

    async fn get_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
    ) -> Result<Option<DirectoryEntry>, RecordError> {
        check_id("directory id", id)?;
        timed("get_entry", async {
            let q = format!(
                "SELECT {ENTRY_COLUMNS} FROM directory_entries WHERE kind = $1 AND id = $2"
            );
            sqlx::query(&q)
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .map(|r| entry(&r))
                .transpose()
        })
        .await
    }

    async fn list_entries(
        &self,
        kind: DirectoryKind,
        include_disabled: bool,
    ) -> Result<Vec<DirectoryEntry>, RecordError> {
        timed("list_entries", async {
            let q = format!(
                "SELECT {ENTRY_COLUMNS} FROM directory_entries WHERE kind = $1 \
                 AND ($2 OR NOT disabled) ORDER BY id"
            );
            sqlx::query(&q)
                .bind(kind.as_str())
                .bind(include_disabled)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .iter()
                .map(entry)
                .collect()
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
        timed("set_disabled", async {
            let mut tx = self.begin().await?;
            let seq = reserve(&mut tx, "directory", 1).await?;
            let Some(mut e) = get_entry_in(&mut tx, kind, id).await? else {
                return Err(RecordError::NotFound(format!("{}/{id}", kind.as_str())));
            };
            if e.disabled == disabled {
                tx.rollback().await.map_err(pg_err)?;
                return Ok(e);
            }
            e.disabled = disabled;
            e.version += 1;
            e.updated_at_ms = by.at_ms;
            e.updated_by = by.actor.clone();
            let action = if disabled {
                "directory.disable"
            } else {
                "directory.enable"
            };
            store_entry(&mut tx, seq, &e, action, by).await?;
            tx.commit().await.map_err(pg_err)?;
            raise(&self.inner.directory, seq);
            Ok(e)
        })
        .await
    }

    async fn directory_changes_after(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<DirectoryChange>, RecordError> {
        let limit = check_limit(limit)?;
        timed("directory_changes_after", async {
            let rows = sqlx::query(
                "SELECT seq, kind, id, version, disabled, at_ms FROM directory_changes \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq)
            .bind(limit as i64)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    Ok(DirectoryChange {
                        seq: r.try_get("seq").map_err(pg_err)?,
                        kind: kind_of(r)?,
                        id: r.try_get("id").map_err(pg_err)?,
                        version: r.try_get("version").map_err(pg_err)?,
                        disabled: r.try_get("disabled").map_err(pg_err)?,
                        at_ms: r.try_get("at_ms").map_err(pg_err)?,
                    })
                })
                .collect()
        })
        .await
    }

    fn directory_signal(&self) -> watch::Receiver<i64> {
        self.inner.directory.subscribe()
    }

    async fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, RecordError> {
        let limit = check_limit(limit)?;
        timed("audit_after", async {
            let rows = sqlx::query(
                "SELECT id, at_ms, actor, action, subject, detail FROM audit_log \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(pg_err)?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.try_get("id").map_err(pg_err)?,
                        at_ms: r.try_get("at_ms").map_err(pg_err)?,
                        actor: r.try_get("actor").map_err(pg_err)?,
                        action: r.try_get("action").map_err(pg_err)?,
                        subject: r.try_get("subject").map_err(pg_err)?,
                        detail: r.try_get("detail").map_err(pg_err)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn put_token(&self, t: OperatorToken, by: &ChangedBy) -> Result<(), RecordError> {
        check_id("token name", &t.name)?;
        check_id("token digest", &t.digest)?;
        check_actor(by)?;
        timed("put_token", async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO operator_tokens (name, digest, scopes) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET digest = EXCLUDED.digest, scopes = EXCLUDED.scopes",
            )
            .bind(&t.name)
            .bind(&t.digest)
            .bind(&t.scopes)
            .execute(&mut *tx)
            .await
            .map_err(|e| match pg_err(e) {
                RecordError::Conflict(_) => {
                    RecordError::Conflict("another token has this digest".into())
                }
                other => other,
            })?;
            audit_in(
                &mut tx,
                by,
                "token.put",
                format!("token/{}", t.name),
                serde_json::json!({ "scopes": t.scopes }),
            )
            .await?;
            tx.commit().await.map_err(pg_err)
        })
        .await
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<OperatorToken>, RecordError> {
        timed("token_by_digest", async {
            sqlx::query("SELECT name, digest, scopes FROM operator_tokens WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .map(|r| token(&r))
                .transpose()
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<OperatorToken>, RecordError> {
        timed("list_tokens", async {
            sqlx::query("SELECT name, digest, scopes FROM operator_tokens ORDER BY name")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(pg_err)?
                .iter()
                .map(token)
                .collect()
        })
        .await
    }

    async fn delete_token(&self, name: &str, by: &ChangedBy) -> Result<bool, RecordError> {
        check_id("token name", name)?;
        check_actor(by)?;
        timed("delete_token", async {
            let mut tx = self.begin().await?;
            let existed = sqlx::query("DELETE FROM operator_tokens WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?
                .rows_affected()
                > 0;
            if existed {
                audit_in(
                    &mut tx,
                    by,
                    "token.delete",
                    format!("token/{name}"),
                    Value::Null,
                )
                .await?;
            }
            tx.commit().await.map_err(pg_err)?;
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
        timed("claim_webhook", async {
            // The database's clock decides expiry, so routers' clocks need not agree.
            sqlx::query_scalar::<_, i64>(
                "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms) \
                 INSERT INTO webhook_cursors AS w (endpoint, seq, holder, expires_at_ms) \
                 SELECT $1, 0, $2, now.ms + $3 FROM now \
                 ON CONFLICT (endpoint) DO UPDATE \
                 SET holder = EXCLUDED.holder, expires_at_ms = EXCLUDED.expires_at_ms \
                 WHERE w.holder = EXCLUDED.holder OR w.expires_at_ms < EXCLUDED.expires_at_ms - $3 \
                 RETURNING w.seq",
            )
            .bind(endpoint)
            .bind(holder)
            .bind(ttl_ms)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(pg_err)
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
        timed("set_webhook_cursor", async {
            let n = sqlx::query(
                "UPDATE webhook_cursors SET seq = GREATEST(seq, $3) \
                 WHERE endpoint = $1 AND holder = $2",
            )
            .bind(endpoint)
            .bind(holder)
            .bind(seq)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_err)?
            .rows_affected();
            Ok(n > 0)
        })
        .await
    }

    async fn release_webhook(&self, endpoint: &str, holder: &str) -> Result<bool, RecordError> {
        check_id("webhook endpoint", endpoint)?;
        check_id("webhook holder", holder)?;
        timed("release_webhook", async {
            let n = sqlx::query(
                "UPDATE webhook_cursors SET expires_at_ms = 0 WHERE endpoint = $1 AND holder = $2",
            )
            .bind(endpoint)
            .bind(holder)
            .execute(&self.inner.pool)
            .await
            .map_err(pg_err)?
            .rows_affected();
            Ok(n > 0)
        })
        .await
    }

    async fn webhook_cursor(&self, endpoint: &str) -> Result<i64, RecordError> {
        check_id("webhook endpoint", endpoint)?;
        timed("webhook_cursor", async {
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM webhook_cursors WHERE endpoint = $1")
                    .bind(endpoint)
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(pg_err)?;
            Ok(seq.unwrap_or(0))
        })
        .await
    }

    async fn export_customer(&self, customer_id: &str) -> Result<Value, RecordError> {
        check_id("customer id", customer_id)?;
        timed("export_customer", async {
            let mut tx = self.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            let p = sqlx::query(
                "SELECT version, tier, data FROM customer_profiles WHERE customer_id = $1",
            )
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err)?
            .map(|r| profile(&r, customer_id))
            .transpose()?;
            let q = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM archived_conversations WHERE customer_id = $1 \
                 ORDER BY closed_at_ms DESC, id DESC"
            );
            let conversations = sqlx::query(&q)
                .bind(customer_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg_err)?
                .iter()
                .map(conversation)
                .collect::<Result<Vec<_>, _>>()?;
            let q = format!(
                "SELECT {EVENT_COLUMNS} FROM outbox_events WHERE {CUSTOMER_EVENTS} ORDER BY seq"
            );
            let events = sqlx::query(&q)
                .bind(customer_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(pg_err)?
                .iter()
                .map(event)
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await.map_err(pg_err)?;
            export_json(customer_id, p, conversations, events)
        })
        .await
    }

    async fn erase_customer(&self, customer_id: &str) -> Result<ErasureReport, RecordError> {
        check_id("customer id", customer_id)?;
        timed("erase_customer", async {
            let mut tx = self.begin().await?;
            let q = format!(
                "UPDATE outbox_events SET customer_id = NULL, conversation_id = NULL, payload = $2 \
                 WHERE {CUSTOMER_EVENTS}"
            );
            let events = sqlx::query(&q)
                .bind(customer_id)
                .bind(erased_payload())
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?
                .rows_affected();
            let conversations =
                sqlx::query("DELETE FROM archived_conversations WHERE customer_id = $1")
                    .bind(customer_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_err)?
                    .rows_affected();
            let profiles = sqlx::query("DELETE FROM customer_profiles WHERE customer_id = $1")
                .bind(customer_id)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?
                .rows_affected();
            tx.commit().await.map_err(pg_err)?;
            Ok(ErasureReport {
                profiles,
                conversations,
                events,
            })
        })
        .await
    }
}
