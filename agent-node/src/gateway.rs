//! The agent desktop stream (`centralino.v1.AgentDesk/Session`).
//!
//! The first command must be `login`; afterwards each command is forwarded to the agent's
//! actor. A bad command is answered with an `error` event and changes nothing; the stream
//! stays open. When the stream ends the agent's disconnect grace starts.
//!
//! [`AgentDeskService::run_session`] runs a session over any stream of commands: the gRPC
//! handler's, and the HTTP desk sessions of `centralino-web` (as a [`DeskOpener`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use centralino_proto::v1::agent_command::Kind;
use centralino_proto::v1::agent_desk_server::AgentDesk;
use centralino_proto::v1::{
    agent_event, transfer, Ack, AgentCommand, AgentEvent, AgentStatus, CannedResponse,
    EscalationKind,
};
use centralino_web::desk::{CommandStream, DeskEventStream};
use centralino_web::DeskOpener;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use crate::agent::{self, error_event, Action};
use crate::node::{mailbox_error, AgentNode};
use centralino_link::{Escalation, TransferTarget};

/// Events buffered per desktop before new ones are dropped (and counted).
const DESKTOP_BUFFER: usize = 1024;
/// How long a new desk stream may wait before its `login` command; then it is refused
/// with DEADLINE_EXCEEDED (a stream that never logs in must not hold a slot).
pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest accepted message text, in bytes: the same cap as a customer's message (the
/// router's default `limits.max_message_bytes`).
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

impl AgentDeskService {
    /// Runs one desk session for a client at `client` over `commands`, whatever carries
    /// them (the gRPC stream, an HTTP desk session): the first command must be `login`
    /// within [`LOGIN_TIMEOUT`]; then each command is answered with an `ack` or an
    /// `error` event. Returns the session's events, or the login's refusal. When
    /// `commands` ends the agent's disconnect grace starts.
    pub async fn run_session(
        &self,
        client: Option<SocketAddr>,
        mut commands: BoxStream<'static, Result<AgentCommand, Status>>,
    ) -> Result<EventStream, Status> {
        let client = client.map(|a| a.ip());
        let first = tokio::time::timeout(LOGIN_TIMEOUT, commands.next())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no login within {} s of opening the desk stream",
                    LOGIN_TIMEOUT.as_secs()
                ))
            })?
            .ok_or_else(|| Status::invalid_argument("stream ended before login"))??;
        let Some(Kind::Login(login)) = first.kind else {
            return Err(Status::invalid_argument("the first command must be login"));
        };
        let credentials = crate::node::Credentials {
            agent_id: &login.agent_id,
            password: &login.password,
            id_token: &login.id_token,
        };
        let (mut addr, agent_id) = self.node.login(credentials, client).await?;
        let (tx, rx) = mpsc::channel(DESKTOP_BUFFER);
        let session_id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let attach = || agent::Attach {
            session_id,
            tx: tx.clone(),
        };
        let logged_in = match addr.send(attach()).await {
            Ok(logged_in) => logged_in,
            // The idle agent's actor was retired (`forget_idle`, its claim released) between
            // the login and the attach: log in once more, which starts and claims a new one.
            Err(_) => {
                let (again, _) = self.node.login(credentials, client).await?;
                addr = again;
                addr.send(attach()).await.map_err(mailbox_error)?
            }
        };
        info!(%agent_id, session_id, held = logged_in.conversation_ids.len(), "agent logged in");
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(item) = commands.next().await {
                let Ok(command) = item else { break };
                let request_id = command.request_id.clone();
                let reply = match command.kind {
                    Some(Kind::FindCanned(find)) => {
                        let canned = node
                            .find_canned(&find.query, &find.department, &find.language)
                            .into_iter()
                            .map(|c| CannedResponse {
                                shortcut: c.shortcut.clone(),
                                department: c.department.clone(),
                                language: c.language.clone(),
                                text: c.text.clone(),
                            })
                            .collect();
                        agent_event::Kind::Ack(Ack {
                            request_id,
                            seq: 0,
                            canned,
                        })
                    }
                    kind => match handle_command(&addr, kind).await {
                        Ok(seq) => agent_event::Kind::Ack(Ack {
                            request_id,
                            seq,
                            canned: Vec::new(),
                        }),
                        Err(status) => match error_event(&status).kind {
                            Some(agent_event::Kind::Error(mut e)) => {
                                e.request_id = request_id;
                                agent_event::Kind::Error(e)
                            }
                            _ => continue,
                        },
                    },
                };
                if tx.send(Ok(AgentEvent { kind: Some(reply) })).await.is_err() {
                    break;
                }
            }
            info!(%agent_id, session_id, "agent desktop stream ended");
            addr.do_send(agent::Detach { session_id });
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl AgentDesk for AgentDeskService {
    type SessionStream = EventStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentCommand>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let client = request.remote_addr();
        let events = self
            .run_session(client, request.into_inner().boxed())
            .await?;
        Ok(Response::new(events))
    }
}

/// The HTTP desk sessions of `centralino-web` run the same desk as the gRPC stream.
#[tonic::async_trait]
impl DeskOpener for AgentDeskService {
    async fn open(
        &self,
        client: Option<SocketAddr>,
        commands: CommandStream,
    ) -> Result<DeskEventStream, Status> {
        self.run_session(client, commands).await
    }
}

async fn act(
    addr: &actix::Addr<agent::AgentActor>,
    conversation_id: String,
    action: Action,
) -> Result<(), Status> {
    non_empty(&conversation_id, "conversation_id")?;
    addr.send(agent::Act {
        conversation_id,
        action,
    })
    .await
    .map_err(mailbox_error)?
}

fn transfer_target(target: Option<transfer::Target>) -> Result<TransferTarget, Status> {
    let target = match target {
        Some(transfer::Target::AgentId(a)) => TransferTarget::Agent(a),
        Some(transfer::Target::Department(d)) => TransferTarget::Department(d),
        Some(transfer::Target::Language(l)) => TransferTarget::Language(l),
        Some(transfer::Target::Skill(s)) => TransferTarget::Skill(s),
        Some(transfer::Target::Supervisor(true)) => TransferTarget::Supervisor,
        Some(transfer::Target::Supervisor(false)) | None => {
            return Err(Status::invalid_argument("transfer needs a target"))
        }
    };
    if let TransferTarget::Agent(v)
    | TransferTarget::Department(v)
    | TransferTarget::Language(v)
    | TransferTarget::Skill(v) = &target
    {
        non_empty(v, "transfer target")?;
    }
    Ok(target)
}

fn escalation(e: centralino_proto::v1::Escalate) -> Result<(String, Escalation), Status> {
    let kind = EscalationKind::try_from(e.kind).unwrap_or(EscalationKind::Unspecified);
    match kind {
        EscalationKind::Callback if e.phone.trim().is_empty() => {
            return Err(Status::invalid_argument(
                "a callback needs the customer's phone number",
            ))
        }
        EscalationKind::Email if !e.email.contains('@') => {
            return Err(Status::invalid_argument(
                "an email follow-up needs the customer's email address",
            ))
        }
        EscalationKind::Unspecified => {
            return Err(Status::invalid_argument(
                "escalation kind must be CALLBACK or EMAIL",
            ))
        }
        _ => {}
    }
    if [&e.phone, &e.email, &e.preferred_time]
        .iter()
        .any(|f| f.len() > 256)
        || e.note.len() > MAX_AGENT_TEXT_BYTES
    {
        return Err(Status::invalid_argument("escalation field is too long"));
    }
    Ok((
        e.conversation_id,
        Escalation {
            kind,
            phone: e.phone,
            email: e.email,
            preferred_time: e.preferred_time,
            note: e.note,
        },
    ))
}

/// Runs one command; answers the sequence number of a sent message (0 for the others).
async fn handle_command(
    addr: &actix::Addr<agent::AgentActor>,
    kind: Option<Kind>,
) -> Result<u64, Status> {
    let sent = match kind {
        Some(Kind::Send(s)) => s,
        other => return other_command(addr, other).await.map(|()| 0),
    };
    non_empty(&sent.conversation_id, "conversation_id")?;
    non_empty(&sent.message_id, "message_id")?;
    non_empty(&sent.text, "text")?;
    if sent.text.len() > MAX_AGENT_TEXT_BYTES {
        return Err(Status::invalid_argument(format!(
            "text is longer than {MAX_AGENT_TEXT_BYTES} bytes"
        )));
    }
    addr.send(agent::Send {
        conversation_id: sent.conversation_id,
        message_id: sent.message_id,
        text: sent.text,
        status_note: sent.status_note,
    })
    .await
    .map_err(mailbox_error)?
}

async fn other_command(
    addr: &actix::Addr<agent::AgentActor>,
    kind: Option<Kind>,
) -> Result<(), Status> {
    match kind {
        Some(Kind::FindCanned(_)) | Some(Kind::Send(_)) => Ok(()),
        Some(Kind::Transfer(t)) => {
            let target = transfer_target(t.target)?;
            if t.reason.len() > MAX_AGENT_TEXT_BYTES {
                return Err(Status::invalid_argument("reason is too long"));
            }
            let action = Action::Transfer {
                target,
                reason: t.reason,
                warm: t.warm,
            };
            act(addr, t.conversation_id, action).await
        }
        Some(Kind::Escalate(e)) => {
            let (conversation_id, escalation) = escalation(e)?;
            act(addr, conversation_id, Action::Escalate(escalation)).await
        }
        Some(Kind::Note(n)) => {
            non_empty(&n.text, "text")?;
            if n.text.len() > MAX_AGENT_TEXT_BYTES {
                return Err(Status::invalid_argument("note is too long"));
            }
            act(addr, n.conversation_id, Action::Note(n.text)).await
        }
        Some(Kind::MarkSensitive(m)) => act(addr, m.conversation_id, Action::MarkSensitive).await,
        Some(Kind::Typing(t)) => act(addr, t.conversation_id, Action::Typing(t.typing)).await,
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
