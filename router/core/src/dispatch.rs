//! Between the router and the agents.
//!
//! - [`outbound`]: reservations towards the agent-nodes (DESIGN.md §4).
//! - [`inbound`]: [`Dispatch`], the router's side of the agent-node link: offer answers,
//!   agent messages and closes go to the conversation actors; availability updates fan out
//!   to every department queue.

pub mod inbound;
pub mod outbound;

pub use inbound::Dispatch;
pub use outbound::reserve_request;
