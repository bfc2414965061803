//! The [`Record`] trait: what every system of record does alike (PostgreSQL, redb, memory).

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::RecordError;
use crate::types::{
    ArchiveCursor, ArchiveFilter, ArchiveOutcome, ArchivedConversation, AuditEntry, ChangedBy,
    CustomerProfile, DirectoryChange, DirectoryEntry, DirectoryKind, ErasureReport, NewEvent,
    OperatorToken, OutboxEvent, Page, ProfileFn,
};

/// The system of record: what outlives a conversation. Every call is one transaction: it
/// commits durably before it returns `Ok`, and changes nothing when it returns `Err`.
#[async_trait]
pub trait Record: Send + Sync + 'static {
    // ---- archived conversations ----

    /// Archives a closed conversation and appends `events` in the same transaction. Idempotent
    /// by conversation id: when the id is archived already, nothing changes (neither the row
    /// nor its rating, and no event is appended) and `inserted` is false.
    async fn archive(
        &self,
        row: ArchivedConversation,
        events: Vec<NewEvent>,
    ) -> Result<ArchiveOutcome, RecordError>;

    /// Sets (or replaces) the rating of an archived conversation; `NotFound` when it is not
    /// archived.
    async fn set_rating(&self, id: &str, good: bool, comment: &str) -> Result<(), RecordError>;

    /// Returns an archived conversation.
    async fn get(&self, id: &str) -> Result<Option<ArchivedConversation>, RecordError>;

    /// Returns up to `limit` archived conversations passing `filter`, newest close first,
    /// starting after `cursor`.
    async fn list(
        &self,
        filter: &ArchiveFilter,
        cursor: Option<&ArchiveCursor>,
        limit: usize,
    ) -> Result<Page<ArchivedConversation>, RecordError>;

    /// Deletes the archived conversations closed before `closed_before_ms` (retention) and
    /// returns how many.
    async fn delete_older_than(&self, closed_before_ms: i64) -> Result<u64, RecordError>;

    // ---- customer profiles ----

    /// Returns a customer's profile.
    async fn get_profile(&self, customer_id: &str) -> Result<Option<CustomerProfile>, RecordError>;

    /// Applies `f` to the profile's data (an empty object for a new profile) under the
    /// profile's lock, so concurrent updates from any number of routers all take effect, one
    /// after the other; `f` refusing changes nothing. The tier is not `f`'s to change.
    async fn update_profile(
        &self,
        customer_id: &str,
        f: ProfileFn,
    ) -> Result<CustomerProfile, RecordError>;

    /// Sets a customer's tier (creating the profile if needed); no later update of the data
    /// undoes it.
    async fn set_tier(
        &self,
        customer_id: &str,
        tier: Option<&str>,
    ) -> Result<CustomerProfile, RecordError>;

    // ---- the integration-event outbox ----

    /// Appends events and returns their sequence numbers: the next ones of the one sequence,
    /// with no gap, in commit order.
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<i64>, RecordError>;

    /// Returns up to `limit` events with a sequence number above `seq`, in order.
    async fn read_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxEvent>, RecordError>;

    /// Deletes the outbox events that happened before `before_ms` (retention) and returns
    /// how many; the sequence goes on where it was (a follower further behind resumes from
    /// the oldest kept).
    async fn delete_events_older_than(&self, before_ms: i64) -> Result<u64, RecordError>;

    /// Returns the highest sequence number used (0 before the first event).
    async fn last_seq(&self) -> Result<i64, RecordError>;

    /// Returns a signal carrying (at least) the highest sequence number known committed;
    /// it changes when events are appended by any writer (PostgreSQL: LISTEN/NOTIFY).
    /// [`crate::OutboxTail`] builds on it.
    fn outbox_signal(&self) -> watch::Receiver<i64>;

    // ---- the agent directory ----

    /// Creates or replaces a directory document and returns it at its new version. With
    /// `expected_version`, only if the document is at that version now (0: absent), else
    /// `Conflict`. A disabled document stays disabled. Writes a change-feed entry and an
    /// audit row in the same transaction.
    async fn put_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
        doc: Value,
        expected_version: Option<i64>,
        by: &ChangedBy,
    ) -> Result<DirectoryEntry, RecordError>;

    /// Returns a directory document.
    async fn get_entry(
        &self,
        kind: DirectoryKind,
        id: &str,
    ) -> Result<Option<DirectoryEntry>, RecordError>;

    /// Returns the documents of a kind, by id; disabled ones only with `include_disabled`.
    async fn list_entries(
        &self,
        kind: DirectoryKind,
        include_disabled: bool,
    ) -> Result<Vec<DirectoryEntry>, RecordError>;

    /// Disables (`disabled`) or enables a document, with a change-feed entry and an audit
    /// row; `NotFound` when absent. Setting the state it has changes nothing.
    async fn set_disabled(
        &self,
        kind: DirectoryKind,
        id: &str,
        disabled: bool,
        by: &ChangedBy,
    ) -> Result<DirectoryEntry, RecordError>;

    /// Returns up to `limit` change-feed entries after `seq`, in order.
    async fn directory_changes_after(
        &self,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<DirectoryChange>, RecordError>;

    /// Returns a signal carrying (at least) the highest change-feed sequence number known
    /// committed; it changes on every directory change by any writer.
    fn directory_signal(&self) -> watch::Receiver<i64>;

    /// Returns up to `limit` audit rows with an id above `after`, in order.
    async fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditEntry>, RecordError>;

    // ---- operator tokens ----

    /// Creates or replaces an operator token (audited).
    async fn put_token(&self, token: OperatorToken, by: &ChangedBy) -> Result<(), RecordError>;

    /// Returns the token with this digest.
    async fn token_by_digest(&self, digest: &str) -> Result<Option<OperatorToken>, RecordError>;

    /// Returns every token, by name.
    async fn list_tokens(&self) -> Result<Vec<OperatorToken>, RecordError>;

    /// Deletes a token (audited when it existed) and returns whether it existed.
    async fn delete_token(&self, name: &str, by: &ChangedBy) -> Result<bool, RecordError>;

    // ---- webhook delivery ----

    /// Claims (or renews) the delivery of the webhook endpoint `endpoint` for `holder`, for
    /// `ttl_ms` milliseconds by the record's clock, and returns the endpoint's cursor (the
    /// last event id delivered or dead-lettered, 0 at first) when `holder` holds the claim
    /// now; `None` while another holder's claim has not expired. One row per endpoint holds
    /// the claim and the cursor, so [`Record::set_webhook_cursor`] is fenced by the claim.
    async fn claim_webhook(
        &self,
        endpoint: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, RecordError>;

    /// Moves `endpoint`'s cursor to `seq` (never back) when `holder` still holds its claim
    /// and returns true; returns false and changes nothing when another holder took the
    /// claim over (or there is none).
    async fn set_webhook_cursor(
        &self,
        endpoint: &str,
        holder: &str,
        seq: i64,
    ) -> Result<bool, RecordError>;

    /// Releases `holder`'s claim on `endpoint` (a clean stop), keeping the cursor, so another
    /// holder takes it over at once; returns false and changes nothing when `holder` does not
    /// hold it.
    async fn release_webhook(&self, endpoint: &str, holder: &str) -> Result<bool, RecordError>;

    /// Returns `endpoint`'s cursor (0 when it was never claimed).
    async fn webhook_cursor(&self, endpoint: &str) -> Result<i64, RecordError>;

    // ---- GDPR ----

    /// Returns everything held about a customer as one JSON object: `customer_id`,
    /// `profile` (or null), `conversations` (archived, newest first) and `events` (outbox
    /// events naming the customer or one of their archived conversations).
    async fn export_customer(&self, customer_id: &str) -> Result<Value, RecordError>;

    /// Erases a customer in one transaction: deletes the profile and the archived
    /// conversations and blanks the personal fields (customer id, conversation id, payload) of the outbox
    /// events that `export_customer` would return. The events keep their sequence numbers,
    /// so the sequence stays without gaps.
    async fn erase_customer(&self, customer_id: &str) -> Result<ErasureReport, RecordError>;
}

/// Builds the JSON of [`Record::export_customer`] (shared by every implementation).
pub(crate) fn export_json(
    customer_id: &str,
    profile: Option<CustomerProfile>,
    conversations: Vec<ArchivedConversation>,
    events: Vec<OutboxEvent>,
) -> Result<Value, RecordError> {
    Ok(serde_json::json!({
        "customer_id": customer_id,
        "profile": serde_json::to_value(profile)?,
        "conversations": serde_json::to_value(conversations)?,
        "events": serde_json::to_value(events)?,
    }))
}

/// The payload an erased event keeps.
pub(crate) fn erased_payload() -> Value {
    serde_json::json!({ "erased": true })
}
