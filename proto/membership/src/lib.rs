//! centralino cluster membership over etcd: the client that retries across etcd members,
//! leases, guarded transactions and watches ([`etcd`]), and the registry of live routers
//! and agent-nodes ([`membership`]). Only cluster wiring depends on this crate; the router's
//! data path never sees etcd.

#![forbid(unsafe_code)]

pub mod etcd;
pub mod membership;
