//! The agent desktop stream (`centralino.v1.AgentDesk/Session`).
//!
//! The first command must be `login`; afterwards each command is forwarded to the agent's
//! actor. A bad command is answered with an `error` event and changes nothing; the stream
//! stays open. When the stream ends the agent's disconnect grace starts.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use centralino_proto::v1::agent_command::Kind;
use centralino_proto::v1::agent_desk_server::AgentDesk;
use centralino_proto::v1::{AgentCommand, AgentEvent, AgentStatus};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use crate::agent::{self, error_event};
use crate::node::{mailbox_error, AgentNode};

/// Events buffered per desktop before new ones are dropped (and counted).
const DESKTOP_BUFFER: usize = 1024;
/// Longest accepted message text, in bytes.
pub const MAX_AGENT_TEXT_BYTES: usize = 8 * 1024;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The tonic service behind `AgentDesk`.
#[derive(Clone)]
pub struct AgentDeskService {
    node: Arc<AgentNode>,
}

impl AgentDeskService {
    /// Returns the service for `node`.
    pub fn new(node: Arc<AgentNode>) -> Self {
        Self { node }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<AgentEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AgentDesk for AgentDeskService {
    type SessionStream = EventStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentCommand>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut commands = request.into_inner();
        let first = commands
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("stream ended before login"))??;
        let Some(Kind::Login(login)) = first.kind else {
            return Err(Status::invalid_argument("the first command must be login"));
        };
        let addr = self.node.authenticate(&login.agent_id, &login.password)?;
        let (tx, rx) = mpsc::channel(DESKTOP_BUFFER);
        let session_id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let logged_in = addr
            .send(agent::Attach {
                session_id,
                tx: tx.clone(),
            })
            .await
            .map_err(mailbox_error)?;
        info!(agent_id = %login.agent_id, session_id, held = logged_in.conversation_ids.len(), "agent logged in");
        let agent_id = login.agent_id;
        tokio::spawn(async move {
            while let Some(item) = commands.next().await {
                let Ok(command) = item else { break };
                if let Err(status) = handle_command(&addr, command).await {
                    if tx.send(Ok(error_event(&status))).await.is_err() {
                        break;
                    }
                }
            }
            info!(%agent_id, session_id, "agent desktop stream ended");
            addr.do_send(agent::Detach { session_id });
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn handle_command(
    addr: &actix::Addr<agent::AgentActor>,
    command: AgentCommand,
) -> Result<(), Status> {
    match command.kind {
        None => Err(Status::invalid_argument("empty command")),
        Some(Kind::Login(_)) => Err(Status::failed_precondition("already logged in")),
        Some(Kind::SetStatus(s)) => {
            let status = AgentStatus::try_from(s.status)
                .map_err(|_| Status::invalid_argument("unknown status"))?;
            addr.send(agent::SetStatus(status))
                .await
                .map_err(mailbox_error)?
        }
        Some(Kind::Accept(a)) => {
            non_empty(&a.reservation_id, "reservation_id")?;
            addr.send(agent::Accept(a.reservation_id))
                .await
                .map_err(mailbox_error)?
        }
        Some(Kind::Decline(d)) => {
            non_empty(&d.reservation_id, "reservation_id")?;
            addr.send(agent::Decline(d.reservation_id))
                .await
                .map_err(mailbox_error)?
        }
        Some(Kind::Send(s)) => {
            non_empty(&s.conversation_id, "conversation_id")?;
            non_empty(&s.message_id, "message_id")?;
            non_empty(&s.text, "text")?;
            if s.text.len() > MAX_AGENT_TEXT_BYTES {
                return Err(Status::invalid_argument(format!(
                    "text is longer than {MAX_AGENT_TEXT_BYTES} bytes"
                )));
            }
            addr.send(agent::Send {
                conversation_id: s.conversation_id,
                message_id: s.message_id,
                text: s.text,
                status_note: s.status_note,
            })
            .await
            .map_err(mailbox_error)?
            .map(|_| ())
        }
        Some(Kind::Close(c)) => {
            non_empty(&c.conversation_id, "conversation_id")?;
            addr.send(agent::Close {
                conversation_id: c.conversation_id,
                summary: c.summary,
            })
            .await
            .map_err(mailbox_error)?
        }
    }
}

fn non_empty(value: &str, field: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )))
    } else {
        Ok(())
    }
}
