//! centralino's system of record: what outlives a conversation (DESIGN §10). Closed
//! conversations with their transcripts, customer profiles, the integration-event outbox,
//! the agent directory with its audit log, and operator tokens, behind one small async
//! trait, [`Record`], with plain types of its own (the router's types travel as JSON beside
//! the indexed columns). Live state (queued and assigned conversations, claims, membership)
//! is not here: it stays in etcd or the embedded store.
//!
//! Three implementations, held to one contract (module `contract`, feature `testing`):
//! - [`PgRecord`] — PostgreSQL, cluster mode: every router shares it.
//! - [`EmbeddedRecord`] — one redb file, standalone mode: fsync-durable commits.
//! - [`MemoryRecord`] — the in-memory twin for tests (the embedded code on redb's memory
//!   backend).
//!
//! # Why sqlx
//! The PostgreSQL driver is sqlx (postgres, tokio runtime, rustls, migrations; no default
//! features, no compile-time-checked queries): one well-kept crate gives the async driver,
//! a pool that tests connections before handing them out (so a restarted server is picked
//! up without help), a LISTEN/NOTIFY listener, TLS through rustls (which the workspace
//! already uses) for external DSNs with `sslmode`, and migrations embedded at build time
//! and run under an advisory lock (routers starting together migrate once). The
//! alternative, tokio-postgres + deadpool + refinery, needs three crates and a separate
//! rustls adapter for the same.
//!
//! # Module map
//! - [`types`] — the plain types: archived conversations, filters and cursors, profiles,
//!   events, directory entries, audit rows, tokens.
//! - [`record`] — the [`Record`] trait.
//! - [`tail`] — [`OutboxTail`] and [`DirectoryFeed`], followers that wake on signals.
//! - [`postgres`] — [`PgRecord`] and its configuration [`PgConfig`]; SQL in `migrations/`.
//! - [`embedded`] — [`EmbeddedRecord`] and [`MemoryRecord`].
//! - [`error`] — [`RecordError`].
//! - [`metrics`] — the record's metrics.
//! - `contract`, `testing` (feature `testing`) — the shared checks and a throwaway
//!   PostgreSQL server.
#![forbid(unsafe_code)]

pub mod embedded;
pub mod error;
pub mod metrics;
pub mod postgres;
pub mod record;
pub mod tail;
pub mod types;

#[cfg(feature = "testing")]
pub mod contract;
#[cfg(feature = "testing")]
pub mod testing;

pub use embedded::{EmbeddedRecord, MemoryRecord};
pub use error::RecordError;
pub use postgres::{PgConfig, PgRecord};
pub use record::Record;
pub use tail::{DirectoryFeed, Feed, Follower, OutboxTail};
pub use types::*;
