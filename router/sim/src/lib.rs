//! centralino tooling behind the `centralino` binary: the demo and traffic simulator
//! ([`sim`]) and the benchmarks ([`bench`], [`cluster_bench`]). Being its own crate, it can
//! reach the nodes only through their public APIs; no node binary links it.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cluster_bench;
pub mod sim;
