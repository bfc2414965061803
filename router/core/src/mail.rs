//! The mail between department queues and conversation actors: plain values handed over
//! in process when both sides live on this router, and sent as JSON over
//! `RouterInternal.Tell` when the other side's partition is owned by another router.
//! Actors reach each other only through the [`Mailroom`], never through each other's
//! addresses.

use std::sync::Arc;

use centralino_link::OfferAnswer;
use centralino_proto::v1::{CustomerHistory, TransferInfo, VisitorContext};
use futures::future::BoxFuture;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::config::Config;
use crate::store::records::ConversationRecord;

/// Delivers mail to queues and conversations, wherever they run (this router or another).
pub trait Mailroom: Send + Sync + 'static {
    /// Sends `msg` to the queue of `department`.
    fn tell_queue(&self, department: &str, msg: ToQueue);
    /// Sends `msg` to the conversation `id`.
    fn tell_conversation(&self, id: &str, msg: ToConversation);
    /// Hands `msg` to the conversation `id` and resolves once it is in the actor's mailbox,
    /// on this router or another: whatever reaches the conversation after that, from any
    /// router, is handled after `msg`. Fails when the conversation cannot be reached now
    /// (not live, or its partition changing owner).
    fn hand_to_conversation(
        &self,
        id: &str,
        msg: ToConversation,
    ) -> BoxFuture<'static, Result<(), Status>>;
}

/// What an agent's offer shows about the customer.
#[derive(Debug)]
pub struct OfferInfo {
    /// Customer name.
    pub customer_display_name: String,
    /// Returning customer.
    pub returning: bool,
    /// Visitor context.
    pub visitor: VisitorContext,
    /// Conversation start (Unix ms).
    pub started_at_ms: i64,
    /// Summary of the last contact.
    pub last_summary: String,
    /// Customer history.
    pub history: Option<CustomerHistory>,
    /// Transfer details, when transferred.
    pub transfer: Option<TransferInfo>,
}

/// A conversation waiting in a queue. Serialised through its wire form, only when it
/// crosses to another router.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "WireEntry", into = "WireEntry")]
pub struct QueueEntry {
    /// Conversation id.
    pub conversation_id: String,
    /// Priority class.
    pub priority: u8,
    /// Age (kept across requeues, overflows and restarts).
    pub enqueued_at_ms: i64,
    /// Steps count from here.
    pub queue_entered_at_ms: i64,
    /// Customer language.
    pub language: String,
    /// Language of the team that serves it now (a fallback after a handover).
    pub serving_language: String,
    /// Further skill required (transfer to a skill or a supervisor).
    pub extra_skill: Option<String>,
    /// The serving language was chosen by a transfer, not by the shifts.
    pub pinned_language: bool,
    /// Last agent of a returning customer.
    pub sticky_agent: Option<String>,
    /// Until when to wait for the sticky agent.
    pub sticky_until_ms: i64,
    /// Shown in offers.
    pub info: Arc<OfferInfo>,
    /// The queue place taken at admission, kept by the queue when the entry joins it (in
    /// process only; never sent to another router).
    pub place: Option<Arc<crate::places::Reserved>>,
}

impl QueueEntry {
    /// Returns the queue entry of a conversation record.
    pub fn from_record(
        rec: &ConversationRecord,
        config: &Config,
        history: Option<CustomerHistory>,
        transfer: Option<TransferInfo>,
    ) -> Self {
        Self {
            conversation_id: rec.id.clone(),
            priority: rec.priority,
            enqueued_at_ms: rec.enqueued_at_ms,
            queue_entered_at_ms: rec.queue_entered_at_ms,
            language: rec.language.clone(),
            serving_language: if rec.serving_language.is_empty() {
                rec.language.clone()
            } else {
                rec.serving_language.clone()
            },
            extra_skill: rec.extra_skill.clone(),
            pinned_language: rec.pinned_language,
            sticky_agent: rec.sticky_agent.clone(),
            sticky_until_ms: rec.queue_entered_at_ms
                + config.routing.sticky_wait_secs as i64 * 1000,
            info: Arc::new(OfferInfo {
                customer_display_name: rec.display_name.clone(),
                returning: rec.returning,
                visitor: (&rec.visitor).into(),
                started_at_ms: rec.started_at_ms,
                last_summary: rec.last_summary.clone(),
                history,
                transfer,
            }),
            place: None,
        }
    }
}

/// A message for a department queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToQueue {
    /// Add a conversation (idempotent by conversation id).
    Enqueue(Box<QueueEntry>),
    /// The conversation left the queue (customer gone, assigned elsewhere).
    Dequeue(String),
    /// An offer ended.
    OfferClosed {
        /// Conversation.
        conversation_id: String,
        /// Reservation.
        reservation_id: String,
        /// Agent.
        agent_id: String,
        /// How.
        answer: OfferAnswer,
    },
    /// A conversation of the department ended after this many seconds with an agent.
    Handled(f64),
}

/// A message for a conversation actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToConversation {
    /// An offer is open.
    Offering {
        /// Reservation.
        reservation_id: String,
        /// Agent.
        agent_id: String,
    },
    /// A reservation was rejected.
    OfferWithdrawn {
        /// Reservation.
        reservation_id: String,
    },
    /// Overflowed to another department.
    Moved {
        /// New department.
        department: String,
        /// When it entered the new queue.
        at_ms: i64,
    },
    /// New place in the queue.
    Position {
        /// 1-based position.
        position: u32,
        /// Estimated wait (seconds).
        estimated_wait_secs: u32,
        /// The queue is long.
        busy: bool,
    },
    /// Served in another language now.
    HandOver {
        /// Previous serving language.
        from: String,
        /// New serving language.
        to: String,
    },
    /// The department's queue has a new owner: enqueue again if still waiting.
    Requeue {
        /// Department whose queue moved.
        department: String,
    },
}

/// A [`QueueEntry`] as it travels between routers (its protobuf parts as bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireEntry {
    conversation_id: String,
    priority: u8,
    enqueued_at_ms: i64,
    queue_entered_at_ms: i64,
    language: String,
    serving_language: String,
    extra_skill: Option<String>,
    pinned_language: bool,
    sticky_agent: Option<String>,
    sticky_until_ms: i64,
    customer_display_name: String,
    returning: bool,
    visitor: Vec<u8>,
    started_at_ms: i64,
    last_summary: String,
    history: Option<Vec<u8>>,
    transfer: Option<Vec<u8>>,
}

impl From<QueueEntry> for WireEntry {
    fn from(e: QueueEntry) -> Self {
        Self {
            conversation_id: e.conversation_id,
            priority: e.priority,
            enqueued_at_ms: e.enqueued_at_ms,
            queue_entered_at_ms: e.queue_entered_at_ms,
            language: e.language,
            serving_language: e.serving_language,
            extra_skill: e.extra_skill,
            pinned_language: e.pinned_language,
            sticky_agent: e.sticky_agent,
            sticky_until_ms: e.sticky_until_ms,
            customer_display_name: e.info.customer_display_name.clone(),
            returning: e.info.returning,
            visitor: e.info.visitor.encode_to_vec(),
            started_at_ms: e.info.started_at_ms,
            last_summary: e.info.last_summary.clone(),
            history: e.info.history.as_ref().map(|h| h.encode_to_vec()),
            transfer: e.info.transfer.as_ref().map(|t| t.encode_to_vec()),
        }
    }
}

impl From<WireEntry> for QueueEntry {
    /// Undecodable context parts are left empty.
    fn from(w: WireEntry) -> Self {
        QueueEntry {
            conversation_id: w.conversation_id,
            priority: w.priority,
            enqueued_at_ms: w.enqueued_at_ms,
            queue_entered_at_ms: w.queue_entered_at_ms,
            language: w.language,
            serving_language: w.serving_language,
            extra_skill: w.extra_skill,
            pinned_language: w.pinned_language,
            sticky_agent: w.sticky_agent,
            sticky_until_ms: w.sticky_until_ms,
            info: Arc::new(OfferInfo {
                customer_display_name: w.customer_display_name,
                returning: w.returning,
                visitor: VisitorContext::decode(w.visitor.as_slice()).unwrap_or_default(),
                started_at_ms: w.started_at_ms,
                last_summary: w.last_summary,
                history: w
                    .history
                    .and_then(|b| CustomerHistory::decode(b.as_slice()).ok()),
                transfer: w
                    .transfer
                    .and_then(|b| TransferInfo::decode(b.as_slice()).ok()),
            }),
            place: None,
        }
    }
}
