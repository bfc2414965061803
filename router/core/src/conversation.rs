//! `ConversationActor`: one per live conversation. It owns the conversation's state
//! machine (queued → offered → assigned → closed, or abandoned), its transcript, its event
//! log for resumable streams, and the customer's token; it persists every change before
//! acknowledging it.
//!
//! - [`messages`]: what the actor takes.
//! - [`actor`]: [`ConversationActor`], its state and lifecycle.
//! - [`start`]: a new conversation's admission, first record and durable write, then its
//!   actor.
//! - [`customer`], [`agent`], [`offers`], [`transfer`], [`events`], [`close`]: its handlers,
//!   by who sends the message.
//! - [`typing`]: typing indicators both ways, ephemeral and rate-limited.

pub mod actor;
pub mod agent;
pub mod close;
pub mod customer;
pub mod events;
pub mod messages;
pub mod offers;
pub mod start;
pub mod transfer;
pub mod typing;

pub use actor::ConversationActor;
pub use messages::{
    AddNote, AgentClose, AgentSend, AgentTyping, Callback, CustomerClose, CustomerSend,
    CustomerTyping, Escalate, EventTx, EventsKept, GetRecord, GetTranscript, HandOver,
    LeaveOffline, MarkSensitive, Moved, OfferEnded, OfferWithdrawn, Offering, Position, Rate,
    Release, Requeue, Retire, Subscribe, Transfer,
};
