//! centralino router: puts every customer chat in front of the right agent.
//!
//! Module map, along the path of a conversation:
//! - [`ingress`]: customer and admin gRPC services → conversation actors.
//! - [`conversation`]: `ConversationActor`, one per live conversation.
//! - [`queue`]: `DepartmentQueue` actor, one per department: ordering, steps, offers.
//! - [`routing`]: pure decision functions: skills, steps, sticky, agent selection.
//! - [`dispatch`]: the router side of the agent-node link (answers, availability fan-out).
//! - [`cluster`]: the `Store` trait, the embedded store and group commit.
//! - [`hub`]: state every part of the router shares.
//! - [`archive`]: transcripts of closed conversations (JSON Lines).
//! - [`events`]: integration events for CRM and e-mail systems.
//! - [`messages`]: customer-facing texts per language.
//! - [`standalone`]: one process with router, agent-node and embedded store.
//! - [`sim`]: traffic simulator behind `centralino demo|sim`.
//! - [`bench`]: the benchmarks behind `centralino bench`.
//! - [`config`], [`metrics`]: configuration and metrics.

#![forbid(unsafe_code)]

pub mod archive;
pub mod bench;
pub mod cluster;
pub mod cluster_bench;
pub mod clustered;
pub mod config;
pub mod conversation;
pub mod dispatch;
pub mod events;
pub mod hub;
pub mod ingress;
pub mod messages;
pub mod metrics;
pub mod queue;
pub mod routing;
pub mod sim;
pub mod standalone;
