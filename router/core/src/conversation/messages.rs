//! The messages a conversation actor takes, one doc line each.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_link::{Escalation, OfferAnswer, TransferTarget};
use centralino_proto::v1::{ChatMessage, ConversationEvent, ConversationOutcome};
use tokio::sync::mpsc;
use tonic::Status;

use crate::store::records::{ConversationRecord, MessageRecord};

/// Sender half of a customer's event stream.
pub type EventTx = mpsc::Sender<Result<ConversationEvent, Status>>;

/// A customer (or a supervisor, read-only) subscribes to events after `after_event_id`.
#[derive(Message)]
#[rtype(result = "Result<mpsc::Receiver<Result<ConversationEvent, Status>>, Status>")]
pub struct Subscribe {
    /// Customer token; `None` for a supervisor already authorised by the admin API.
    pub token: Option<String>,
    /// Last event id the customer has seen.
    pub after_event_id: u64,
}

/// A customer message.
#[derive(Message)]
#[rtype(result = "Result<(u64, bool), Status>")]
pub struct CustomerSend {
    /// Customer token.
    pub token: String,
    /// Client-chosen id.
    pub message_id: String,
    /// Text.
    pub text: String,
}

/// The customer is typing (or stopped); answers whether it was forwarded to the agent.
#[derive(Message)]
#[rtype(result = "Result<bool, Status>")]
pub struct CustomerTyping {
    /// Customer token.
    pub token: String,
    /// Typing now.
    pub typing: bool,
}

/// From an agent: typing (or stopped), shown on the customer's stream, not stored.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct AgentTyping {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Typing now.
    pub typing: bool,
}

/// The customer closes the conversation.
#[derive(Message)]
#[rtype(result = "Result<ConversationOutcome, Status>")]
pub struct CustomerClose {
    /// Customer token.
    pub token: String,
    /// When the request was sent (a close sent while another was in flight gets its
    /// outcome).
    pub sent_at: std::time::Instant,
}

/// The customer rates the conversation.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Rate {
    /// Customer token.
    pub token: String,
    /// Good or bad.
    pub good: bool,
    /// Comment.
    pub comment: String,
}

/// From the queue: new position and estimated wait.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Position {
    /// 1-based position.
    pub position: u32,
    /// Estimated wait in seconds.
    pub estimated_wait_secs: u32,
    /// The queue is long: offer the customer alternatives.
    pub busy: bool,
}

/// From the queue: the customer's language team closed (or opened again); the conversation
/// is now served in `to`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandOver {
    /// Previous serving language.
    pub from: String,
    /// New serving language.
    pub to: String,
}

/// A transfer by the assigned agent (or by a supervisor when `agent_id` is `None`).
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Transfer {
    /// Agent asking; `None` for a supervisor's forced transfer.
    pub agent_id: Option<String>,
    /// Where to.
    pub target: TransferTarget,
    /// Why.
    pub reason: String,
    /// Stay until the next agent accepts.
    pub warm: bool,
}

/// The assigned agent escalates out of chat.
#[derive(Message)]
#[rtype(result = "Result<ConversationOutcome, Status>")]
pub struct Escalate {
    /// Agent.
    pub agent_id: String,
    /// Details.
    pub escalation: Escalation,
}

/// The assigned agent adds an internal note.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct AddNote {
    /// Agent.
    pub agent_id: String,
    /// Note.
    pub text: String,
}

/// The assigned agent warns the customer about sensitive data.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct MarkSensitive {
    /// Agent.
    pub agent_id: String,
}

/// The customer leaves a message instead of waiting.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct LeaveOffline {
    /// Customer token.
    pub token: String,
    /// Name, email, phone and text.
    pub details: BTreeMap<String, String>,
}

/// The customer asks for a callback instead of waiting.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Callback {
    /// Customer token.
    pub token: String,
    /// Phone and preferred time.
    pub details: BTreeMap<String, String>,
}

/// Returns how many events the actor keeps for resuming streams (diagnostics, tests).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct EventsKept;

/// Returns the record and the transcript (admin).
#[derive(Message)]
#[rtype(result = "(ConversationRecord, Vec<MessageRecord>)")]
pub struct GetTranscript;

/// From the queue: an offer to `agent_id` is open.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Offering {
    /// Reservation id.
    pub reservation_id: String,
    /// Agent offered to.
    pub agent_id: String,
}

/// From the queue: the conversation moved to another department (overflow).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Moved {
    /// New department.
    pub department: String,
    /// When it entered the new queue.
    pub at_ms: i64,
}

/// From the queue: a reservation was rejected, the offer is off.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferWithdrawn {
    /// Reservation id.
    pub reservation_id: String,
}

/// From an agent-node: how an offer ended.
#[derive(Message)]
#[rtype(result = "Result<Vec<ChatMessage>, Status>")]
pub struct OfferEnded {
    /// Reservation id.
    pub reservation_id: String,
    /// Agent.
    pub agent_id: String,
    /// Agent name.
    pub agent_name: String,
    /// Answer.
    pub answer: OfferAnswer,
}

/// From an agent: a message.
#[derive(Message)]
#[rtype(result = "Result<u64, Status>")]
pub struct AgentSend {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Client-chosen id.
    pub message_id: String,
    /// Text.
    pub text: String,
    /// Status note.
    pub status_note: bool,
}

/// From an agent: close with a summary.
#[derive(Message)]
#[rtype(result = "Result<ConversationOutcome, Status>")]
pub struct AgentClose {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Wrap-up summary.
    pub summary: String,
    /// When the request was sent (see [`CustomerClose::sent_at`]).
    pub sent_at: std::time::Instant,
}

/// From an agent-node: the agent is gone, requeue with the original age.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Release {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Why.
    pub reason: String,
}

/// The department's queue has a new owner: a waiting conversation enqueues again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Requeue {
    /// Department whose queue moved.
    pub department: String,
}

/// This router hands the conversation's partition over: stop without writing anything (the
/// next owner rebuilds the actor from the store).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Returns the record (admin, tests).
#[derive(Message)]
#[rtype(result = "ConversationRecord")]
pub struct GetRecord;
