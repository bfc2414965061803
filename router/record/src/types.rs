//! The plain types that travel through the record: indexed columns as fields, everything the
//! record does not query as JSON beside them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest id (conversation, customer, agent, directory entry, token name) accepted.
pub const MAX_ID_LEN: usize = 256;
/// The largest page any list or read returns; larger limits are clamped to it.
pub const MAX_PAGE: usize = 1000;

/// A customer's satisfaction answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// Good (thumbs up) or bad.
    pub good: bool,
    /// The free-text comment, possibly empty.
    pub comment: String,
}

/// A closed conversation as archived: the columns supervisors query, and the transcript and
/// routing record as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedConversation {
    /// The conversation id (the key; archiving the same id twice changes nothing).
    pub id: String,
    /// The customer, when known.
    pub customer_id: Option<String>,
    /// The agent who served it last, if any.
    pub agent_id: Option<String>,
    /// The department it ended in.
    pub department: String,
    /// Its language (`it`, `en` …).
    pub language: String,
    /// When it started, in Unix milliseconds.
    pub started_at_ms: i64,
    /// When it closed, in Unix milliseconds (the retention and date-range column).
    pub closed_at_ms: i64,
    /// The customer's rating, once given.
    pub rating: Option<Rating>,
    /// The transcript, as the router serialises it.
    pub transcript: Value,
    /// The rest of the routing record (final state, transfers, notes …).
    pub details: Value,
}

/// Which ratings a list keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RatingFilter {
    /// Rated good.
    Good,
    /// Rated bad.
    Bad,
    /// Rated at all.
    Rated,
    /// Not rated.
    Unrated,
}

impl RatingFilter {
    /// Returns whether a conversation with `rating` passes.
    pub fn keeps(self, rating: Option<&Rating>) -> bool {
        match (self, rating) {
            (RatingFilter::Good, Some(r)) => r.good,
            (RatingFilter::Bad, Some(r)) => !r.good,
            (RatingFilter::Rated, Some(_)) => true,
            (RatingFilter::Unrated, None) => true,
            _ => false,
        }
    }
}

/// What a list of archived conversations keeps; every field set narrows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFilter {
    /// Served by this agent.
    pub agent_id: Option<String>,
    /// Ended in this department.
    pub department: Option<String>,
    /// In this language.
    pub language: Option<String>,
    /// Of this customer.
    pub customer_id: Option<String>,
    /// Closed at or after this instant (Unix ms).
    pub closed_from_ms: Option<i64>,
    /// Closed before this instant (Unix ms).
    pub closed_before_ms: Option<i64>,
    /// With such a rating.
    pub rating: Option<RatingFilter>,
}

impl ArchiveFilter {
    /// Returns whether `c` passes the filter (the twins' reference of the SQL `WHERE`).
    pub fn keeps(&self, c: &ArchivedConversation) -> bool {
        fn same(want: &Option<String>, have: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| have == Some(w))
        }
        same(&self.agent_id, c.agent_id.as_deref())
            && same(&self.department, Some(&c.department))
            && same(&self.language, Some(&c.language))
            && same(&self.customer_id, c.customer_id.as_deref())
            && self.closed_from_ms.is_none_or(|t| c.closed_at_ms >= t)
            && self.closed_before_ms.is_none_or(|t| c.closed_at_ms < t)
            && self.rating.is_none_or(|r| r.keeps(c.rating.as_ref()))
    }
}

/// A keyset cursor into a list of archived conversations, which runs newest first: the
/// next page holds what sorts after `(closed_at_ms, id)` in descending order. Its text form
/// (`Display`/`FromStr`) is what an API hands to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveCursor {
    /// The last returned row's close time.
    pub closed_at_ms: i64,
    /// The last returned row's id.
    pub id: String,
}

impl ArchiveCursor {
    /// Returns the cursor that continues after `c`.
    pub fn after(c: &ArchivedConversation) -> Self {
        Self {
            closed_at_ms: c.closed_at_ms,
            id: c.id.clone(),
        }
    }

    /// Returns whether `c` comes after the cursor in list order.
    pub fn precedes(&self, c: &ArchivedConversation) -> bool {
        (c.closed_at_ms, c.id.as_str()) < (self.closed_at_ms, self.id.as_str())
    }
}

impl fmt::Display for ArchiveCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.closed_at_ms, self.id)
    }
}

/// A cursor's text did not parse.
#[derive(Debug, thiserror::Error)]
#[error("malformed cursor (want <closed_at_ms>:<id>)")]
pub struct BadCursor;

impl FromStr for ArchiveCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let (ms, id) = s.split_once(':').ok_or(BadCursor)?;
        let closed_at_ms = ms.parse().map_err(|_| BadCursor)?;
        if id.is_empty() {
            return Err(BadCursor);
        }
        Ok(Self {
            closed_at_ms,
            id: id.to_string(),
        })
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The rows, in list order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<ArchiveCursor>,
}

/// What [`crate::Record::archive`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveOutcome {
    /// The row was new (false: it was archived before and nothing changed, events included).
    pub inserted: bool,
    /// The sequence numbers of the events appended with it (empty when not inserted).
    pub seqs: Vec<i64>,
}

/// A customer's profile: its version (bumped by every change), its tier in a column of its
/// own (changed only by [`crate::Record::set_tier`], so no other write can undo it), and the
/// rest (name, language, last agent, history, notes …) as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerProfile {
    /// The customer id.
    pub customer_id: String,
    /// The version, 1 after the first change.
    pub version: i64,
    /// The priority tier (`vip` …), if any.
    pub tier: Option<String>,
    /// Everything else, a JSON object.
    pub data: Value,
}

/// A profile update: changes the profile's data in place, or refuses with a reason (then
/// nothing is written). It may run more than once (on a retry), so it must not have effects
/// of its own.
pub type ProfileFn = Arc<dyn Fn(&mut Value) -> Result<(), String> + Send + Sync>;

/// An integration event to append to the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Its kind (`conversation.closed` …).
    pub kind: String,
    /// The customer it names, if any (erasure blanks it).
    pub customer_id: Option<String>,
    /// The conversation it is about, if any.
    pub conversation_id: Option<String>,
    /// When it happened, in Unix milliseconds.
    pub at_ms: i64,
    /// The event body (erasure blanks it when it names the customer).
    pub payload: Value,
}

/// An integration event as stored, with its place in the one cluster-wide sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Its sequence number: 1, 2, 3 … with no gap, in commit order.
    pub seq: i64,
    /// See [`NewEvent::kind`].
    pub kind: String,
    /// See [`NewEvent::customer_id`].
    pub customer_id: Option<String>,
    /// See [`NewEvent::conversation_id`].
    pub conversation_id: Option<String>,
    /// See [`NewEvent::at_ms`].
    pub at_ms: i64,
    /// See [`NewEvent::payload`].
    pub payload: Value,
}

impl OutboxEvent {
    /// Returns the stored form of `e` at `seq`.
    pub fn new(seq: i64, e: NewEvent) -> Self {
        Self {
            seq,
            kind: e.kind,
            customer_id: e.customer_id,
            conversation_id: e.conversation_id,
            at_ms: e.at_ms,
            payload: e.payload,
        }
    }
}

/// The kinds of agent-directory documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryKind {
    /// An agent: name, team, skills with proficiency, capacity per channel, password hash
    /// or OIDC subject.
    Agent,
    /// A team: schedules, holidays.
    Team,
    /// A department: routing steps, strategy, auto-accept.
    Department,
    /// A canned response.
    CannedResponse,
}

impl DirectoryKind {
    /// Every kind.
    pub const ALL: [DirectoryKind; 4] = [
        DirectoryKind::Agent,
        DirectoryKind::Team,
        DirectoryKind::Department,
        DirectoryKind::CannedResponse,
    ];

    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Agent => "agent",
            DirectoryKind::Team => "team",
            DirectoryKind::Department => "department",
            DirectoryKind::CannedResponse => "canned_response",
        }
    }

    /// Returns the kind of a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Who changes something, and when (the audit log's "who" and "when").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedBy {
    /// The operator, agent or process (`seed:config`) making the change.
    pub actor: String,
    /// When, in Unix milliseconds (from the caller's clock).
    pub at_ms: i64,
}

/// A versioned agent-directory document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// Its kind.
    pub kind: DirectoryKind,
    /// Its id within the kind.
    pub id: String,
    /// Its version, 1 when created, bumped by every change.
    pub version: i64,
    /// Disabled entries are kept (for history) but take no part in routing.
    pub disabled: bool,
    /// The document.
    pub doc: Value,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
    /// Who changed it last.
    pub updated_by: String,
}

/// One entry of the directory's change feed: which document changed to which version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryChange {
    /// Its place in the feed: 1, 2, 3 … with no gap, in commit order.
    pub seq: i64,
    /// The changed document's kind.
    pub kind: DirectoryKind,
    /// The changed document's id.
    pub id: String,
    /// Its version after the change.
    pub version: i64,
    /// Whether it is disabled after the change.
    pub disabled: bool,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// One audit-log row: who did what, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the log (increasing).
    pub id: i64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What: `directory.put`, `directory.disable`, `directory.enable`, `token.put`,
    /// `token.delete`.
    pub action: String,
    /// On what: `agent/anna`, `token/crm`.
    pub subject: String,
    /// The details (the new document and version; never a token digest).
    pub detail: Value,
}

/// An operator token as stored: a name, the digest of its secret (never the secret) and its
/// scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorToken {
    /// The token's name (the key).
    pub name: String,
    /// The digest of its secret (hex SHA-256, as the credentials code computes it).
    pub digest: String,
    /// Its scopes (`admin`, `supervisor`, `integration`, `read-only`).
    pub scopes: Vec<String>,
}

/// What an erasure removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// Profiles deleted (0 or 1).
    pub profiles: u64,
    /// Archived conversations deleted.
    pub conversations: u64,
    /// Outbox events whose personal fields were blanked.
    pub events: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, closed: i64, rating: Option<bool>) -> ArchivedConversation {
        ArchivedConversation {
            id: id.into(),
            customer_id: Some("c".into()),
            agent_id: None,
            department: "sales".into(),
            language: "it".into(),
            started_at_ms: 0,
            closed_at_ms: closed,
            rating: rating.map(|good| Rating {
                good,
                comment: String::new(),
            }),
            transcript: Value::Null,
            details: Value::Null,
        }
    }

    #[test]
    fn cursor_text_round_trips_and_rejects_garbage() {
        let c = ArchiveCursor {
            closed_at_ms: -5,
            id: "a:b".into(),
        };
        assert_eq!(c.to_string().parse::<ArchiveCursor>().ok(), Some(c));
        for bad in ["", "12", "x:id", "12:", ":id"] {
            assert!(bad.parse::<ArchiveCursor>().is_err(), "{bad:?} parses");
        }
    }

    #[test]
    fn cursor_orders_newest_first_with_id_ties() {
        let c = ArchiveCursor::after(&row("m", 10, None));
        assert!(
            c.precedes(&row("a", 10, None)),
            "same time, smaller id comes after"
        );
        assert!(!c.precedes(&row("z", 10, None)));
        assert!(c.precedes(&row("z", 9, None)), "older comes after");
        assert!(
            !c.precedes(&row("m", 10, None)),
            "the cursor row itself is not repeated"
        );
    }

    #[test]
    fn filters_narrow_by_every_field() {
        let good = row("g", 100, Some(true));
        let bad = row("b", 200, Some(false));
        let none = row("n", 300, None);
        let keeps = |f: &ArchiveFilter| {
            [&good, &bad, &none]
                .into_iter()
                .filter(|c| f.keeps(c))
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(keeps(&ArchiveFilter::default()), ["g", "b", "n"]);
        let rating = |r| ArchiveFilter {
            rating: Some(r),
            ..Default::default()
        };
        assert_eq!(keeps(&rating(RatingFilter::Good)), ["g"]);
        assert_eq!(keeps(&rating(RatingFilter::Bad)), ["b"]);
        assert_eq!(keeps(&rating(RatingFilter::Rated)), ["g", "b"]);
        assert_eq!(keeps(&rating(RatingFilter::Unrated)), ["n"]);
        let range = ArchiveFilter {
            closed_from_ms: Some(200),
            closed_before_ms: Some(300),
            ..Default::default()
        };
        assert_eq!(keeps(&range), ["b"], "from is inclusive, before exclusive");
        let agent = ArchiveFilter {
            agent_id: Some("anna".into()),
            ..Default::default()
        };
        assert!(keeps(&agent).is_empty(), "no agent matches a wanted one");
        let other = ArchiveFilter {
            language: Some("en".into()),
            ..Default::default()
        };
        assert!(keeps(&other).is_empty());
    }

    #[test]
    fn directory_kinds_round_trip() {
        for k in DirectoryKind::ALL {
            assert_eq!(DirectoryKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DirectoryKind::parse("robot"), None);
    }
}
