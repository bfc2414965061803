//! centralino agent-node: the single authority over agents' chat capacity.
//!
//! Module map, in the order a conversation meets them:
//! - [`gateway`]: the agent desktop stream (login, offers, accept/decline, messages).
//! - [`agent`]: `AgentActor`, one per logged-in agent: status, slots, reservations, wrap-up.
//! - [`node`]: the registry of agent actors and the in-process [`link::AgentNodeLink`].
//! - [`link`]: the router ↔ agent-node traits (in process or over gRPC).
//! - [`schedule`], [`shifts`]: team working hours, time zones, language fallback.
//! - [`config`], [`clock`], [`metrics`]: configuration, controllable time, metrics.

#![forbid(unsafe_code)]

pub mod agent;
pub mod clock;
pub mod cluster_node;
pub mod config;
pub mod etcd;
pub mod gateway;
pub mod link;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod process;
pub mod remote;
pub mod schedule;
pub mod shifts;
