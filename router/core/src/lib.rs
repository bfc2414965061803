//! centralino's data path: everything a conversation passes through inside a router, with
//! no etcd and no transport between nodes (those are `centralino-cluster`'s).
//!
//! Module map, along the path of a conversation:
//! - [`ingress`]: customer and admin gRPC services → conversation actors.
//! - [`conversation`]: `ConversationActor`, one per live conversation.
//! - [`queue`]: `DepartmentQueue` actor, one per department: ordering, steps, offers.
//! - [`routing`]: pure decision functions: skills, steps, sticky, agent selection.
//! - [`dispatch`]: the router side of the agent-node link (answers, availability fan-out).
//! - [`store`]: the `Store` trait, its twin, the embedded store, group commit and records.
//! - [`wire`]: the messages between queues and conversation actors (in process or across
//!   routers).
//! - [`hub`]: state every part of the router shares.
//! - [`archive`]: transcripts of closed conversations (JSON Lines).
//! - [`events`]: integration events for CRM and e-mail systems.
//! - [`messages`]: customer-facing texts per language.
//! - [`config`], [`metrics`]: configuration and metrics.

#![forbid(unsafe_code)]

pub mod archive;
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
pub mod store;
pub mod wire;
