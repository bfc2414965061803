//! The messages a department queue takes, one doc line each.

use actix::prelude::*;
use centralino_link::{Availability, OfferAnswer};
use centralino_proto::v1::QueueSnapshot;

use crate::mail::QueueEntry;

/// Adds a conversation to the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub QueueEntry);

/// Removes a conversation (the customer left); withdraws an open offer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dequeue(pub String);

/// An offer ended (from the conversation actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferClosed {
    /// Conversation.
    pub conversation_id: String,
    /// Reservation.
    pub reservation_id: String,
    /// Agent.
    pub agent_id: String,
    /// Answer.
    pub answer: OfferAnswer,
}

/// An agent's availability changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentUpdate(pub Availability);

/// A conversation of this department ended after `handle_secs` with an agent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Handled(pub f64);

/// Returns the queue's snapshot.
#[derive(Message)]
#[rtype(result = "QueueSnapshot")]
pub struct GetStats;

/// Returns, per customer language, how many conversations wait and the longest wait in
/// seconds (the snapshot's service of today).
#[derive(Message)]
#[rtype(result = "Vec<(String, u32, u32)>")]
pub struct GetWaiting;

/// Stops the queue: its partition moves to another router, which rebuilds it from the
/// conversations that enqueue again there.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Returns the waiting conversation ids in offer order (tests, admin).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct GetOrder;
