//! Messages between department queues and conversation actors, delivered in process when
//! both live on this router and as JSON over `RouterInternal.Tell` when the other side's
//! partition is owned by another router.

use std::sync::Arc;

use actix::Addr;
use centralino_link::OfferAnswer;
use centralino_proto::v1::{CustomerHistory, TransferInfo, VisitorContext};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::conversation::{self, ConversationActor};
use crate::queue::{self, DepartmentQueue, OfferInfo, QueueEntry};

/// A message for a department queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToQueue {
    /// Add a conversation (idempotent by conversation id).
    Enqueue(Box<WireEntry>),
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

/// A [`QueueEntry`] as it travels between routers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEntry {
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

impl From<&QueueEntry> for WireEntry {
    fn from(e: &QueueEntry) -> Self {
        Self {
            conversation_id: e.conversation_id.clone(),
            priority: e.priority,
            enqueued_at_ms: e.enqueued_at_ms,
            queue_entered_at_ms: e.queue_entered_at_ms,
            language: e.language.clone(),
            serving_language: e.serving_language.clone(),
            extra_skill: e.extra_skill.clone(),
            pinned_language: e.pinned_language,
            sticky_agent: e.sticky_agent.clone(),
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

impl WireEntry {
    /// Returns the queue entry; undecodable context parts are left empty.
    pub fn into_entry(self) -> QueueEntry {
        QueueEntry {
            conversation_id: self.conversation_id,
            priority: self.priority,
            enqueued_at_ms: self.enqueued_at_ms,
            queue_entered_at_ms: self.queue_entered_at_ms,
            language: self.language,
            serving_language: self.serving_language,
            extra_skill: self.extra_skill,
            pinned_language: self.pinned_language,
            sticky_agent: self.sticky_agent,
            sticky_until_ms: self.sticky_until_ms,
            info: Arc::new(OfferInfo {
                customer_display_name: self.customer_display_name,
                returning: self.returning,
                visitor: VisitorContext::decode(self.visitor.as_slice()).unwrap_or_default(),
                started_at_ms: self.started_at_ms,
                last_summary: self.last_summary,
                history: self
                    .history
                    .and_then(|b| CustomerHistory::decode(b.as_slice()).ok()),
                transfer: self
                    .transfer
                    .and_then(|b| TransferInfo::decode(b.as_slice()).ok()),
            }),
        }
    }
}

impl ToQueue {
    /// Delivers the message to a queue actor of this router.
    pub fn deliver(self, queue: &Addr<DepartmentQueue>) {
        match self {
            Self::Enqueue(entry) => queue.do_send(queue::Enqueue((*entry).into_entry())),
            Self::Dequeue(id) => queue.do_send(queue::Dequeue(id)),
            Self::OfferClosed {
                conversation_id,
                reservation_id,
                agent_id,
                answer,
            } => queue.do_send(queue::OfferClosed {
                conversation_id,
                reservation_id,
                agent_id,
                answer,
            }),
            Self::Handled(secs) => queue.do_send(queue::Handled(secs)),
        }
    }
}

impl ToConversation {
    /// Delivers the message to a conversation actor of this router.
    pub fn deliver(self, conversation: &Addr<ConversationActor>) {
        match self {
            Self::Offering {
                reservation_id,
                agent_id,
            } => conversation.do_send(conversation::Offering {
                reservation_id,
                agent_id,
            }),
            Self::OfferWithdrawn { reservation_id } => {
                conversation.do_send(conversation::OfferWithdrawn { reservation_id })
            }
            Self::Moved { department, at_ms } => {
                conversation.do_send(conversation::Moved { department, at_ms })
            }
            Self::Position {
                position,
                estimated_wait_secs,
                busy,
            } => conversation.do_send(conversation::Position {
                position,
                estimated_wait_secs,
                busy,
            }),
            Self::HandOver { from, to } => {
                conversation.do_send(conversation::HandOver { from, to })
            }
            Self::Requeue { department } => {
                conversation.do_send(conversation::Requeue { department })
            }
        }
    }
}
