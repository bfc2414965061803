//! centralino router: puts every customer chat in front of the right agent.
//!
//! Module map, along the path of a conversation:
//! - [`ingress`]: customer and admin gRPC services → conversation actors.
//! - [`conversation`]: `ConversationActor` (one per live conversation) and its registry.
//! - [`queue`]: `DepartmentQueue` actor (one per department): ordering, steps, offers.
//! - [`routing`]: pure decision functions: skills, steps, sticky, agent selection.
//! - [`dispatch`]: the router side of the agent-node link (availability fan-out).
//! - [`cluster`]: the `Store` trait, the embedded store and group commit.
//! - [`standalone`]: wiring of one process with router, agent-node and embedded store.
//! - [`sim`]: traffic simulator behind `centralino demo|sim`.
//! - [`config`], [`metrics`]: configuration and metrics.

#![forbid(unsafe_code)]

pub mod config;
pub mod sim;
pub mod standalone;
