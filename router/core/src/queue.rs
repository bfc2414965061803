//! `DepartmentQueue`: one actor per department. It keeps the waiting conversations in
//! order (priority, then age), its view of the agents that can serve the department, and
//! runs the routing decisions of [`crate::routing`]: routing steps, sticky same-agent
//! routing, overflow, and reservations at the agent-nodes (DESIGN.md §4).

//!
//! - [`messages`]: what the queue takes.
//! - [`actor`]: [`DepartmentQueue`] itself.

pub mod actor;
pub mod messages;

pub use actor::DepartmentQueue;
pub use messages::{
    AgentUpdate, Dequeue, Enqueue, GetOrder, GetStats, GetWaiting, Handled, OfferClosed, Shutdown,
};
