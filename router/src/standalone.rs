//! One process with a router, an agent-node and the embedded store (the newcomer's default).

use std::net::SocketAddr;

use centralino_agent_node::clock::SharedClock;

use crate::config::Config;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Anything that stopped the start.
    #[error("{0}")]
    Other(String),
}

/// A running standalone node.
pub struct RunningNode {
    /// Bound gRPC address (useful with port 0).
    pub grpc_addr: SocketAddr,
    /// Bound metrics address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The node's clock.
    pub clock: SharedClock,
}

impl RunningNode {
    /// Stops serving and flushes the store.
    pub async fn shutdown(self) {}
}

/// Starts a node from `config`. Must run inside an actix `System` on a multi-thread tokio
/// runtime (`actix::System::with_tokio_rt`).
pub async fn start(config: Config) -> Result<RunningNode, StartError> {
    let _ = config;
    Err(StartError::Other("not yet".into()))
}
