//! centralino agent-node: the single authority over agents' chat capacity.
//!
//! Module map, in the order a conversation meets them:
//! - [`gateway`]: the agent desktop stream (login, offers, accept/decline, messages).
//! - [`agent`]: `AgentActor`, one per logged-in agent: status, timers, desktop and router;
//!   [`agent::slots`] keeps its chat slots (offers, chats, wrap-ups) as plain, tested data.
//! - [`node`]: the registry of agent actors; implements the router-facing link traits of
//!   `centralino-link` in process.
//! - [`remote`]: cluster glue: the `AgentNodeInternal` service, the link to the routers over
//!   gRPC, one login per agent across agent-nodes.
//! - [`cluster_node`]: the agent-node process of a cluster.
//! - [`directory`]: the follower of the agent directory in the system of record, and the
//!   seeding of an empty directory from the configuration file.
//! - [`throttle`]: login throttling (pure; it lives in the base crate, shared with the router's Admin API).
//! - [`metrics`]: the agent-node's metrics.

#![forbid(unsafe_code)]

pub mod agent;
pub mod cluster_node;
pub mod directory;
pub mod gateway;
pub mod metrics;
pub mod node;
pub mod remote;
pub use centralino_base::throttle;
