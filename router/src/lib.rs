//! centralino router: the data path of `centralino-core` wired into a process.
//!
//! - [`standalone`]: one process with a router, an agent-node and the embedded store (the
//!   newcomer's default).
//! - [`clustered`]: one router of a cluster (etcd membership, partitions, gRPC to peers).
//!
//! The data path itself lives in `centralino-core`; its modules are re-exported here under
//! their old names so that callers keep one import path.

#![forbid(unsafe_code)]

pub mod clustered;
pub mod standalone;

pub use centralino_core::{
    config, conversation, directory, dispatch, identity, ingress, mail, metrics, queue, recovery,
    registry, router, routing, shared, store, texts,
};
