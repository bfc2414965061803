//! The two directions between routers and agent-nodes, as traits.
//!
//! A router reserves agents and delivers customer traffic through [`AgentNodeLink`]; an
//! agent-node reports offer answers, agent messages and availability through [`RouterLink`].
//! Standalone mode implements both in process; cluster mode implements them over gRPC.
//! Errors are `tonic::Status` values so that they cross a network unchanged; [`grpc`] holds
//! their wire form.

#![forbid(unsafe_code)]

pub mod grpc;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use centralino_proto::v1::{
    AgentStatus, ChatMessage, ConversationOutcome, CustomerHistory, EscalationKind, TransferInfo,
    VisitorContext,
};
use tonic::Status;

/// Typing indicators forwarded per minute per conversation and side (2 per second, wall
/// time: people type at wall speed also on a simulated clock); the excess is dropped.
/// Applied by the conversation's router, and for each agent already on their agent-node
/// (the excess then never crosses the network).
pub const TYPING_PER_MINUTE: u32 = 120;
/// Typing indicators forwarded at once before [`TYPING_PER_MINUTE`] applies (a start and a
/// stop).
pub const TYPING_BURST: u32 = 2;

/// A router's request to hold one chat slot of an agent for a conversation (DESIGN.md §4).
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// Idempotency key of this offer.
    pub reservation_id: String,
    /// Conversation to offer.
    pub conversation_id: String,
    /// Agent to reserve.
    pub agent_id: String,
    /// Department the conversation is queued in.
    pub department: String,
    /// Customer language.
    pub language: String,
    /// Customer name from the pre-chat form.
    pub customer_display_name: String,
    /// Whether the customer has contacted the shop before.
    pub returning_customer: bool,
    /// Pages and referrer, shown to the agent.
    pub visitor: Option<VisitorContext>,
    /// Assign at once without waiting for the agent's accept.
    pub auto_accept: bool,
    /// When the conversation started (Unix ms).
    pub started_at_ms: i64,
    /// Summary of the customer's previous contact.
    pub last_summary: String,
    /// Language the agent answers in (differs from `language` after a handover).
    pub serving_language: String,
    /// What the shop knows about the customer.
    pub history: Option<CustomerHistory>,
    /// Where the conversation comes from, when transferred.
    pub transfer: Option<TransferInfo>,
}

/// Where an agent transfers a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// A named agent (reserved before anything changes).
    Agent(String),
    /// A department's queue.
    Department(String),
    /// Agents speaking a language.
    Language(String),
    /// Agents with a skill.
    Skill(String),
    /// A supervisor.
    Supervisor,
}

/// An escalation out of chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// Callback or email.
    pub kind: EscalationKind,
    /// Phone number for a callback.
    pub phone: String,
    /// Address for an email follow-up.
    pub email: String,
    /// When the customer prefers to be called.
    pub preferred_time: String,
    /// Agent's note for whoever follows up.
    pub note: String,
}

/// The answer to a [`ReserveRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The slot is held and the offer is on the agent's desktop.
    Held,
    /// The agent cannot take it now (stale view at the router).
    Rejected(RejectReason),
}

/// Why a reservation was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The agent is not logged in on this node.
    NotLoggedIn,
    /// The agent is away, on a call, offline or disconnected.
    NotAvailable,
    /// Every chat slot is taken.
    Full,
    /// The agent already holds this conversation.
    AlreadyHeld,
    /// The agent's team is not working now.
    OffShift,
}

/// How an offer ended at the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OfferAnswer {
    /// The agent accepted (or the department auto-accepts).
    Accepted,
    /// The agent declined.
    Declined,
    /// Nobody answered within the offer timeout.
    TimedOut,
    /// The agent disconnected or changed status while the offer was open.
    Revoked,
}

/// An agent's routing-relevant state, published to every router on each change.
#[derive(Debug, Clone)]
pub struct Availability {
    /// Agent id.
    pub agent_id: String,
    /// Increases with every update of this agent; older updates are ignored.
    pub version: u64,
    /// Team name.
    pub team: String,
    /// Current status.
    pub status: AgentStatus,
    /// Maximum concurrent chats.
    pub capacity: u32,
    /// Slots in use: active chats, held offers and wrap-ups.
    pub load: u32,
    /// Skills with proficiency 1–5.
    pub skills: Arc<BTreeMap<String, u8>>,
    /// When the agent last became idle (Unix ms), for the longest-idle strategy.
    pub idle_since_ms: i64,
    /// Name shown to customers.
    pub display_name: String,
    /// Whether the agent's team is working now.
    pub on_shift: bool,
}

impl Availability {
    /// Returns whether the agent can take one more chat right now.
    pub fn has_free_slot(&self) -> bool {
        self.on_shift && self.status == AgentStatus::Available && self.load < self.capacity
    }
}

/// Router → agent-node.
#[async_trait]
pub trait AgentNodeLink: Send + Sync + 'static {
    /// Holds a slot of the agent and offers the conversation (idempotent by reservation id).
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveOutcome, Status>;
    /// Withdraws an open offer (the customer left meanwhile).
    async fn cancel_reservation(&self, agent_id: &str, reservation_id: &str) -> Result<(), Status>;
    /// Delivers a customer message to the assigned agent.
    async fn deliver(
        &self,
        agent_id: &str,
        conversation_id: &str,
        message: ChatMessage,
    ) -> Result<(), Status>;
    /// Shows the agent that the customer is typing (or stopped). Ephemeral: one attempt,
    /// never retried; FAILED_PRECONDITION or NOT_FOUND when the agent does not hold the
    /// conversation here.
    async fn customer_typing(
        &self,
        agent_id: &str,
        conversation_id: &str,
        typing: bool,
    ) -> Result<(), Status>;
    /// Tells the assigned agent that the conversation ended on the customer's side.
    async fn conversation_ended(
        &self,
        agent_id: &str,
        conversation_id: &str,
        outcome: ConversationOutcome,
    ) -> Result<(), Status>;
}

/// What an agent did, as a call to the router that owns the conversation: the one
/// definition of the agent-node → router calls, carried in process as this value and over
/// gRPC as `LinkRequest` (see [`grpc::call_to_proto`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterCall {
    /// The conversation acted on.
    pub conversation_id: String,
    /// The agent who acted (their session's identity on the agent-node).
    pub agent_id: String,
    /// What the agent did.
    pub action: AgentAction,
}

/// The actions of [`RouterCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAction {
    /// An offer ended; for `Accepted` the router assigns the conversation and returns its
    /// transcript, an error means the conversation is gone and the slot is free.
    OfferAnswered {
        /// The reservation of the offer.
        reservation_id: String,
        /// How it ended.
        answer: OfferAnswer,
    },
    /// A message to the customer; the reply holds its sequence number.
    Message {
        /// Idempotency key.
        message_id: String,
        /// Text.
        text: String,
        /// A status note (shown, not counted as the first response).
        status_note: bool,
    },
    /// The agent closes the conversation with a wrap-up summary.
    Close {
        /// Wrap-up summary.
        summary: String,
    },
    /// The agent's disconnect grace ran out: the conversation returns to its queue with
    /// its original age.
    Release {
        /// Why.
        reason: String,
    },
    /// A transfer to another agent, department, language, skill or a supervisor, keeping
    /// age, transcript and notes.
    Transfer {
        /// Where to.
        target: TransferTarget,
        /// Why.
        reason: String,
        /// The first agent stays until the next one accepts.
        warm: bool,
    },
    /// The conversation ends with a callback or an email follow-up.
    Escalate(Escalation),
    /// An internal note.
    Note {
        /// Text.
        text: String,
    },
    /// The customer is told not to type sensitive data into the chat.
    MarkSensitive,
    /// The agent is typing (or stopped): shown on the customer's stream, not stored.
    Typing {
        /// Typing now.
        typing: bool,
    },
    /// The transcript so far (a desktop that logs in again catches up).
    Transcript,
}

/// The router's answer to a [`RouterCall`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterReply {
    /// `OfferAnswered` (accepted) and `Transcript`: the transcript so far.
    pub transcript: Vec<ChatMessage>,
    /// `Message`: the message's sequence number in the transcript.
    pub seq: u64,
}

/// Agent-node → router: one call for everything an agent does, plus availability.
/// The typed methods build a [`RouterCall`]; implementors write [`RouterLink::call`] only.
#[async_trait]
pub trait RouterLink: Send + Sync + 'static {
    /// Carries out `call` at the conversation's owner.
    async fn call(&self, call: RouterCall) -> Result<RouterReply, Status>;

    /// Publishes an agent's availability to the routing queues (never blocks).
    fn availability(&self, update: Availability);

    /// Reports the end of an offer; returns the transcript when accepted.
    async fn offer_answered(
        &self,
        conversation_id: &str,
        reservation_id: &str,
        agent_id: &str,
        answer: OfferAnswer,
    ) -> Result<Vec<ChatMessage>, Status> {
        let action = AgentAction::OfferAnswered {
            reservation_id: reservation_id.to_string(),
            answer,
        };
        Ok(self
            .act(conversation_id, agent_id, action)
            .await?
            .transcript)
    }

    /// Relays an agent message; returns its sequence number in the transcript.
    async fn agent_message(
        &self,
        conversation_id: &str,
        agent_id: &str,
        message_id: &str,
        text: &str,
        status_note: bool,
    ) -> Result<u64, Status> {
        let action = AgentAction::Message {
            message_id: message_id.to_string(),
            text: text.to_string(),
            status_note,
        };
        Ok(self.act(conversation_id, agent_id, action).await?.seq)
    }

    /// Closes a conversation from the agent's side, with a wrap-up summary.
    async fn agent_close(
        &self,
        conversation_id: &str,
        agent_id: &str,
        summary: &str,
    ) -> Result<(), Status> {
        let action = AgentAction::Close {
            summary: summary.to_string(),
        };
        self.act(conversation_id, agent_id, action).await.map(drop)
    }

    /// Returns a conversation to its queue with its original age.
    async fn release(
        &self,
        conversation_id: &str,
        agent_id: &str,
        reason: &str,
    ) -> Result<(), Status> {
        let action = AgentAction::Release {
            reason: reason.to_string(),
        };
        self.act(conversation_id, agent_id, action).await.map(drop)
    }

    /// Moves a conversation on, keeping its age, transcript and notes.
    async fn transfer(
        &self,
        conversation_id: &str,
        agent_id: &str,
        target: TransferTarget,
        reason: &str,
        warm: bool,
    ) -> Result<(), Status> {
        let action = AgentAction::Transfer {
            target,
            reason: reason.to_string(),
            warm,
        };
        self.act(conversation_id, agent_id, action).await.map(drop)
    }

    /// Ends a conversation with a callback or email follow-up.
    async fn escalate(
        &self,
        conversation_id: &str,
        agent_id: &str,
        escalation: Escalation,
    ) -> Result<(), Status> {
        let action = AgentAction::Escalate(escalation);
        self.act(conversation_id, agent_id, action).await.map(drop)
    }

    /// Adds an internal note to a conversation.
    async fn add_note(
        &self,
        conversation_id: &str,
        agent_id: &str,
        text: &str,
    ) -> Result<(), Status> {
        let action = AgentAction::Note {
            text: text.to_string(),
        };
        self.act(conversation_id, agent_id, action).await.map(drop)
    }

    /// Tells the customer not to type sensitive data into the chat.
    async fn mark_sensitive(&self, conversation_id: &str, agent_id: &str) -> Result<(), Status> {
        self.act(conversation_id, agent_id, AgentAction::MarkSensitive)
            .await
            .map(drop)
    }

    /// Shows the customer that the agent is typing (or stopped); best effort.
    async fn agent_typing(
        &self,
        conversation_id: &str,
        agent_id: &str,
        typing: bool,
    ) -> Result<(), Status> {
        self.act(conversation_id, agent_id, AgentAction::Typing { typing })
            .await
            .map(drop)
    }

    /// Returns the transcript of a conversation assigned to `agent_id`.
    async fn transcript(
        &self,
        conversation_id: &str,
        agent_id: &str,
    ) -> Result<Vec<ChatMessage>, Status> {
        Ok(self
            .act(conversation_id, agent_id, AgentAction::Transcript)
            .await?
            .transcript)
    }

    /// Carries out `action` of `agent_id` on `conversation_id`.
    async fn act(
        &self,
        conversation_id: &str,
        agent_id: &str,
        action: AgentAction,
    ) -> Result<RouterReply, Status> {
        self.call(RouterCall {
            conversation_id: conversation_id.to_string(),
            agent_id: agent_id.to_string(),
            action,
        })
        .await
    }
}

/// What the operators' admin calls need of the agent side: who is logged in and how they
/// are doing, who may log in, and a supervisor's status change.
#[async_trait]
pub trait AgentAdmin: Send + Sync + 'static {
    /// Returns the availability of every agent that has logged in since start.
    async fn availability(&self) -> Vec<Availability>;
    /// Returns the agents allowed to log in.
    fn accounts(&self) -> Vec<centralino_base::config::AgentConfig>;
    /// Sets an agent's status (NOT_FOUND for an unknown agent, FAILED_PRECONDITION when the
    /// agent has not logged in).
    async fn set_status(&self, agent_id: &str, status: AgentStatus) -> Result<(), Status>;
}
