//! centralino cluster mode for routers: what a router needs to be one of many.
//!
//! Module map:
//! - [`partitions`]: rendezvous placement over live routers, partition claims in etcd
//!   (fencing tokens), adoption and hand-over of a partition's conversations and queues.
//! - [`fenced_store`]: the `Store` of cluster mode, every write fenced by its partitions'
//!   claims, over etcd or its in-memory twin.
//! - [`peer`]: the `RouterInternal` service and forwarding of customer and agent-node calls
//!   to a partition's owner.
//! - [`agents`]: the agent-nodes seen from a router: reservations over gRPC, availability
//!   feeds, login claims, the operators' view of the agents.
//! - [`admin`]: the cluster-wide `Admin` service: snapshots merged from every router,
//!   operator calls forwarded to the owner.

#![forbid(unsafe_code)]

pub mod admin;
pub mod agents;
pub mod fenced_store;
pub mod partitions;
pub mod peer;
