//! centralino cluster membership and coordination: the [`kv::Kv`] trait (leases, guarded
//! transactions, prefix watches) with its two implementations, the etcd client that retries
//! across etcd members ([`etcd`]) and the in-memory twin ([`memory`]), and the registry of
//! live routers and agent-nodes built on either ([`membership`]). Only cluster wiring depends
//! on this crate; the router's data path never sees etcd.

#![forbid(unsafe_code)]

pub mod etcd;
pub mod kv;
pub mod membership;
pub mod memory;
