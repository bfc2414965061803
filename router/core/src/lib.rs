//! centralino's data path: everything a conversation passes through inside a router, with
//! no etcd and no transport between nodes (those are `centralino-cluster`'s).
//!
//! Module map, along the path of a conversation:
//! - [`ingress`]: customer and admin gRPC services → conversation actors.
//! - [`conversation`]: `ConversationActor`, one per live conversation.
//! - [`queue`]: `DepartmentQueue` actor, one per department: ordering, steps, offers.
//! - [`routing`]: pure decision functions: skills, steps, sticky, agent selection.
//! - [`dispatch`]: the router side of the agent-node link (answers, availability fan-out).
//! - [`store`]: the `Store` trait, its twin, the embedded store, group commit, records, the
//!   archive of closed conversations (in the system of record, `centralino-record`) and the
//!   integration events.
//! - [`mail`]: the messages between queues and conversation actors, and the [`mail::Mailroom`]
//!   that carries them (in process or across routers).
//! - [`recovery`]: rebuilding a partition's conversations from the store.
//! - [`places`]: places (open count, queue length) a new conversation holds from
//!   admission on.
//! - [`shared`]: what a router's actors share; [`registry`]: live actors by id;
//!   [`router`]: a router's registries of conversations and queues, its mailroom.
//! - [`texts`]: customer-facing texts per language.
//! - [`identity`]: who a customer is: shop identity tokens and anonymous visitor tokens.
//! - [`directory`]: the router's reading of the live agent directory: the seed from the
//!   configuration file, the checks of documents written through the Admin API, the
//!   departments' settings as they are now.
//! - [`webhooks`]: integration events POSTed to the configured endpoints, signed, retried,
//!   at least once, one deliverer per endpoint across the cluster.
//! - [`config`], [`metrics`]: configuration and metrics.

#![forbid(unsafe_code)]

pub mod config;
pub mod conversation;
pub mod directory;
pub mod dispatch;
pub mod identity;
pub mod ingress;
pub mod mail;
pub mod metrics;
pub mod places;
pub mod queue;
pub mod recovery;
pub mod registry;
pub mod router;
pub mod routing;
pub mod shared;
pub mod store;
pub mod texts;
pub mod today;
pub mod tombstones;
pub mod webhooks;
