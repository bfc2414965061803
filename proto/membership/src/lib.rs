//! centralino cluster membership and coordination: the [`kv::Kv`] trait (leases, guarded
//! transactions, prefix watches) implemented by the etcd client that retries across etcd
//! members ([`etcd`]), and the registry of live routers and agent-nodes built on it
//! ([`membership`]). Only cluster wiring depends on this crate; the router's data path
//! never sees etcd.

#![forbid(unsafe_code)]

pub mod etcd;
pub mod kv;
pub mod membership;
