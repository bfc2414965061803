//! Durable records and their keys: conversations, transcript messages and customer
//! profiles, serialized as JSON (readable with `etcdctl get` in cluster mode).

use centralino_proto::v1::{ChatMessage, VisitorContext};
use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{Op, StoreError};

/// Key prefix of live conversation records (`conv/<partition>/<id>`).
pub const CONVERSATIONS: &str = "conv/";
/// Key prefix of transcript messages (`msg/<partition>/<id>/<seq>`).
pub const MESSAGES: &str = "msg/";
/// Key prefix of customer profiles.
pub const PROFILES: &str = "profile/";

/// Partitions of the conversation space. Fixed for the life of a cluster: it is part of
/// every conversation's key.
pub const PARTITIONS: u32 = 256;

/// Returns the partition of a conversation id or a department name: FNV-1a of the bytes,
/// modulo [`PARTITIONS`]. Stable across builds and platforms (unlike `DefaultHasher`), since
/// every node of a cluster must agree on it.
pub fn partition_of(name: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(PARTITIONS)) as u32
}

/// Returns the key prefix of one partition's conversation records.
pub fn partition_conversations(partition: u32) -> String {
    format!("{CONVERSATIONS}{partition:03}/")
}

/// Returns the partition a record key belongs to (conversation records and messages);
/// `None` for keys outside the partitioned space (profiles, integration events).
pub fn partition_of_key(key: &str) -> Option<u32> {
    let rest = key
        .strip_prefix(CONVERSATIONS)
        .or_else(|| key.strip_prefix(MESSAGES))?;
    let digits = rest.get(..3)?;
    if rest.as_bytes().get(3) != Some(&b'/') {
        return None;
    }
    digits.parse().ok().filter(|p| *p < PARTITIONS)
}

/// Returns the key of a conversation record.
pub fn conversation_key(id: &str) -> String {
    format!("{CONVERSATIONS}{:03}/{id}", partition_of(id))
}

/// Returns the key prefix of a conversation's messages.
pub fn messages_prefix(id: &str) -> String {
    format!("{MESSAGES}{:03}/{id}/", partition_of(id))
}

/// Returns the key of one transcript message.
pub fn message_key(id: &str, seq: u64) -> String {
    format!("{MESSAGES}{:03}/{id}/{seq:010}", partition_of(id))
}

/// Returns the key of a customer profile.
pub fn profile_key(customer_id: &str) -> String {
    format!("{PROFILES}{customer_id}")
}

/// Lifecycle state of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting in a department queue (an offer may be open).
    Queued,
    /// Served by an agent.
    Assigned,
    /// Ended; see the outcome.
    Closed,
    /// Nobody serves now: waiting for the customer's offline message or callback request.
    Offline,
}

/// Final outcome of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Served and closed.
    Completed,
    /// The customer left before an agent answered.
    Abandoned,
    /// Ended with an offline message.
    Offline,
    /// Ended with a callback or email follow-up.
    Escalated,
}

/// A customer's rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// Good (true) or bad.
    pub good: bool,
    /// Free comment.
    pub comment: String,
}

/// Visitor context as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    /// Page the chat was started from.
    pub current_page: String,
    /// Pages visited before.
    pub pages_visited: Vec<String>,
    /// Referrer.
    pub referrer: String,
    /// Seconds on the site.
    pub time_on_site_seconds: u32,
}

impl From<&VisitorContext> for Visitor {
    fn from(v: &VisitorContext) -> Self {
        Self {
            current_page: v.current_page.clone(),
            pages_visited: v.pages_visited.clone(),
            referrer: v.referrer.clone(),
            time_on_site_seconds: v.time_on_site_seconds,
        }
    }
}

impl From<&Visitor> for VisitorContext {
    fn from(v: &Visitor) -> Self {
        Self {
            current_page: v.current_page.clone(),
            pages_visited: v.pages_visited.clone(),
            referrer: v.referrer.clone(),
            time_on_site_seconds: v.time_on_site_seconds,
        }
    }
}

/// The routing record of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Conversation id.
    pub id: String,
    /// Secret that authorises the customer.
    pub token: String,
    /// Customer id.
    pub customer_id: String,
    /// Customer name from the pre-chat form.
    pub display_name: String,
    /// Current department.
    pub department: String,
    /// Customer language.
    pub language: String,
    /// Priority class (1 normal, 2 high, 3 VIP).
    pub priority: u8,
    /// Visitor context.
    pub visitor: Visitor,
    /// Lifecycle state.
    pub state: State,
    /// Final outcome once closed.
    pub outcome: Option<Outcome>,
    /// Start (Unix ms, node clock).
    pub started_at_ms: i64,
    /// Queue age: kept across requeues and overflows.
    pub enqueued_at_ms: i64,
    /// When the conversation entered its current department's queue (steps count from it).
    pub queue_entered_at_ms: i64,
    /// Serving agent.
    pub agent_id: Option<String>,
    /// Serving agent's name.
    pub agent_name: String,
    /// First assignment (Unix ms).
    pub assigned_at_ms: Option<i64>,
    /// Close (Unix ms).
    pub closed_at_ms: Option<i64>,
    /// The customer contacted the shop before.
    pub returning: bool,
    /// Last agent of a returning customer, for sticky routing.
    pub sticky_agent: Option<String>,
    /// Summary of the previous contact.
    pub last_summary: String,
    /// Wrap-up summary written by the agent.
    pub summary: String,
    /// Customer rating.
    pub rating: Option<Rating>,
    /// Next event id of the conversation's stream when the record was written.
    #[serde(default)]
    pub next_event_id: u64,
    /// Language of the team serving the conversation (the customer's, or a fallback after a
    /// handover).
    #[serde(default)]
    pub serving_language: String,
    /// Transfers so far.
    #[serde(default)]
    pub transfers: u32,
    /// Internal notes of agents.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Extra skill required after a transfer to a skill or a supervisor.
    #[serde(default)]
    pub extra_skill: Option<String>,
    /// The customer came back within the re-contact window.
    #[serde(default)]
    pub recontact: bool,
    /// The serving language was set by a transfer (shift changes do not move it back).
    #[serde(default)]
    pub pinned_language: bool,
    /// The customer was warned not to type sensitive data.
    #[serde(default)]
    pub sensitive: bool,
    /// Callback, email or offline-message details for integrations.
    #[serde(default)]
    pub follow_up: BTreeMap<String, String>,
}

/// A transcript message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Event id under which it was streamed.
    pub event_id: u64,
    /// Message id (dedup).
    pub message_id: String,
    /// Transcript position.
    pub seq: u64,
    /// `centralino.v1.Sender` value.
    pub sender: i32,
    /// Agent id for agent messages.
    pub author: String,
    /// Text.
    pub text: String,
    /// Time (Unix ms).
    pub at_ms: i64,
    /// Status note.
    pub status_note: bool,
}

impl MessageRecord {
    /// Returns the wire form.
    pub fn to_proto(&self) -> ChatMessage {
        ChatMessage {
            message_id: self.message_id.clone(),
            seq: self.seq,
            sender: self.sender,
            author: self.author.clone(),
            text: self.text.clone(),
            at_unix_ms: self.at_ms,
            status_note: self.status_note,
        }
    }

    /// Returns the stored form of `message` streamed as event `event_id`.
    pub fn from_proto(message: &ChatMessage, event_id: u64) -> Self {
        Self {
            event_id,
            message_id: message.message_id.clone(),
            seq: message.seq,
            sender: message.sender,
            author: message.author.clone(),
            text: message.text.clone(),
            at_ms: message.at_unix_ms,
            status_note: message.status_note,
        }
    }
}

/// What the shop knows about a customer across contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecord {
    /// Customer id.
    pub customer_id: String,
    /// Last known name.
    pub display_name: String,
    /// Last language.
    pub language: String,
    /// Agent who served the last completed conversation.
    pub last_agent: Option<String>,
    /// End of the last completed conversation (Unix ms).
    pub last_contact_ms: i64,
    /// Wrap-up summary of the last contact.
    pub last_summary: String,
    /// Number of conversations started.
    pub contacts: u32,
    /// Agents of the last completed conversations, newest first.
    #[serde(default)]
    pub last_agents: Vec<String>,
    /// Wrap-up summaries of the last contacts, newest first.
    #[serde(default)]
    pub summaries: Vec<String>,
    /// Agents' notes, newest first.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Last rating: "good", "bad" or empty.
    #[serde(default)]
    pub last_rating: String,
    /// Priority tier ("vip" or empty). In the system of record it is a column of its own,
    /// changed only by `SetCustomerTier`: no other profile write carries it.
    #[serde(default)]
    pub tier: String,
    /// The last completed contacts with their close times, newest close first: where a
    /// close that arrives late (another router's, closed earlier) belongs in the history.
    #[serde(default)]
    pub closes: Vec<ClosedContact>,
}

/// One completed contact in a profile's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedContact {
    /// When it closed (Unix ms).
    pub at_ms: i64,
    /// The agent who served it, if any.
    pub agent: Option<String>,
}

/// How many entries of each history list a profile keeps.
pub const HISTORY_LEN: usize = 5;

impl ProfileRecord {
    /// Records a completed contact with `agent` and its summary and notes, closed at
    /// `at_ms`. The history is ordered by close time, not by arrival: a close that arrives
    /// after a later one (two routers closing conversations of one customer) is kept in its
    /// place, and the last agent (sticky routing) stays the agent of the latest close.
    pub fn record_completed(
        &mut self,
        agent: Option<&str>,
        summary: &str,
        notes: &[String],
        at_ms: i64,
    ) {
        // Newest first; among equal close times the one recorded later counts as newer.
        let place = self
            .closes
            .iter()
            .position(|c| c.at_ms <= at_ms)
            .unwrap_or(self.closes.len());
        let latest = place == 0 && at_ms >= self.last_contact_ms;
        self.closes.insert(
            place,
            ClosedContact {
                at_ms,
                agent: agent.map(str::to_string),
            },
        );
        self.closes.truncate(HISTORY_LEN);
        if latest {
            if let Some(agent) = agent {
                self.last_agent = Some(agent.to_string());
                self.last_agents.retain(|a| a != agent);
                self.last_agents.insert(0, agent.to_string());
            }
            if !summary.is_empty() {
                self.summaries.insert(0, summary.to_string());
            }
            self.last_summary = summary.to_string();
            self.last_contact_ms = at_ms;
        } else {
            // An earlier close arriving late: behind the newer ones, never in front.
            let newer = place.max(1);
            if let Some(agent) = agent {
                if !self.last_agents.iter().any(|a| a == agent) {
                    let at = newer.min(self.last_agents.len());
                    self.last_agents.insert(at, agent.to_string());
                }
            }
            if !summary.is_empty() {
                let at = newer.min(self.summaries.len());
                self.summaries.insert(at, summary.to_string());
            }
        }
        self.last_agents.truncate(HISTORY_LEN);
        self.summaries.truncate(HISTORY_LEN);
        for note in notes.iter().rev() {
            self.notes.insert(0, note.clone());
        }
        self.notes.truncate(2 * HISTORY_LEN);
        self.contacts = self.contacts.max(1);
    }

    /// Returns the history shown to agents with an offer.
    pub fn history(&self, recontact: bool) -> centralino_proto::v1::CustomerHistory {
        centralino_proto::v1::CustomerHistory {
            contacts: self.contacts,
            last_agents: self.last_agents.clone(),
            summaries: self.summaries.clone(),
            notes: self.notes.clone(),
            last_rating: self.last_rating.clone(),
            recontact,
            tier: self.tier.clone(),
        }
    }
}

/// Returns a put of `value` as JSON.
pub fn put<T: Serialize>(key: String, value: &T) -> Op {
    Op::Put(key, serde_json::to_vec(value).unwrap_or_default())
}

/// Decodes a JSON record.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_partition() {
        for id in [
            "a",
            "conv-1",
            "7f1c2e9a-0000-4000-8000-000000000000",
            "vendite",
        ] {
            let p = partition_of(id);
            assert!(p < PARTITIONS);
            assert_eq!(partition_of_key(&conversation_key(id)), Some(p));
            assert_eq!(partition_of_key(&message_key(id, 42)), Some(p));
            assert!(conversation_key(id).starts_with(&partition_conversations(p)));
        }
        assert_eq!(partition_of_key(&profile_key("c1")), None);
        assert_eq!(partition_of_key("conv/9999/x"), None);
        assert_eq!(partition_of_key("conv/300/x"), None);
    }

    #[test]
    fn partitions_spread_and_are_stable() {
        // Fixed values: every node of a cluster must compute the same partition. FNV-1a 64
        // of "a" is 0xaf63dc4c8601ec8c and of "foobar" 0x85944171f73967e8 (the published
        // test vectors); the others were computed apart from this code.
        assert_eq!(partition_of(""), (0xcbf2_9ce4_8422_2325u64 % 256) as u32);
        for (id, partition) in [
            ("", 37),
            ("a", 0x8c),
            ("foobar", 0xe8),
            ("conv-1", 157),
            ("vendite", 18),
            ("support", 168),
            ("sales", 183),
            ("7f1c2e9a-0000-4000-8000-000000000000", 163),
        ] {
            assert_eq!(partition_of(id), partition, "partition of {id:?}");
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            seen.insert(partition_of(&format!("conversation-{i}")));
        }
        assert_eq!(seen.len(), PARTITIONS as usize);
    }

    #[test]
    fn history_follows_close_time_not_arrival() {
        let mut p = ProfileRecord::default();
        p.record_completed(Some("anna"), "first", &[], 1_000);
        // A later close arrives, then an earlier one from another router.
        p.record_completed(Some("bruno"), "third", &[], 3_000);
        p.record_completed(Some("carla"), "second", &[], 2_000);
        assert_eq!(
            p.last_agent.as_deref(),
            Some("bruno"),
            "sticky: latest close"
        );
        assert_eq!(p.last_contact_ms, 3_000);
        assert_eq!(p.last_summary, "third");
        assert_eq!(p.last_agents, ["bruno", "carla", "anna"]);
        assert_eq!(p.summaries, ["third", "second", "first"]);
        let times: Vec<i64> = p.closes.iter().map(|c| c.at_ms).collect();
        assert_eq!(times, [3_000, 2_000, 1_000]);
        // In arrival order it is the same history.
        let mut q = ProfileRecord::default();
        for (agent, summary, at) in [
            ("anna", "first", 1_000),
            ("carla", "second", 2_000),
            ("bruno", "third", 3_000),
        ] {
            q.record_completed(Some(agent), summary, &[], at);
        }
        assert_eq!(q.last_agents, p.last_agents);
        assert_eq!(q.summaries, p.summaries);
        assert_eq!(q.last_agent, p.last_agent);
    }

    #[test]
    fn history_stays_bounded() {
        let mut p = ProfileRecord::default();
        for i in 0..(3 * HISTORY_LEN as i64) {
            p.record_completed(Some(&format!("agent-{i}")), "s", &["n".into()], i);
            p.record_completed(Some("late"), "old", &[], -i);
        }
        assert_eq!(p.closes.len(), HISTORY_LEN);
        assert!(p.last_agents.len() <= HISTORY_LEN);
        assert!(p.summaries.len() <= HISTORY_LEN);
        assert!(p.notes.len() <= 2 * HISTORY_LEN);
        assert_eq!(p.last_agent.as_deref(), Some("agent-14"));
    }
}
