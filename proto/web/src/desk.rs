//! The agent desk over HTTP: a desk session (login, then commands and events) made of
//! plain requests and one SSE stream, for browsers, which cannot open the bidirectional
//! `AgentDesk/Session` stream. The session runs the node's own desk (a [`DeskOpener`]), so
//! login checks, limits and answers are those of gRPC.
//!
//! - `POST /v1/agent/sessions` (body `Login`) logs in: 201 with the session's id, its
//!   secret token (`Authorization: Bearer` on every later call; the node keeps only its
//!   SHA-256 digest) and the `loggedIn` event. A refused login answers its status.
//! - `GET /v1/agent/sessions/{sid}/events`: the session's events as SSE, each with its
//!   sequence number (1 is `loggedIn`) as `id:`. The last [`RING_EVENTS`] are kept, so a
//!   reader that comes back with `Last-Event-ID` (or `?after=`) gets exactly what it
//!   missed, then live events. When some of what it missed is no longer kept, the stream
//!   begins with `event: gap`, `data: {"gap":{"after":N,"resumedAt":M}}` (events after
//!   `N` and before `M` are lost; a desk should reload its state, e.g. by logging in
//!   again) and continues from `M`. One reader at a time: a new reader ends the old one's
//!   stream. When the desk ends (logged in elsewhere, node draining) a reader gets the
//!   remaining events, then the status that ended it as `event: error`.
//! - `POST /v1/agent/sessions/{sid}/commands` (body `AgentCommand`, not `login`): queued
//!   for the desk, 202; the `ack` or `error` comes as an event, as on gRPC.
//! - `DELETE /v1/agent/sessions/{sid}`: ends the session as a dropped desk stream does
//!   (the agent's disconnect grace starts), 204.
//! - A session whose events have had no reader for `[web] desk_session_idle_secs` ends
//!   the same way. At most `[web] max_desk_sessions` are open at once.
//!
//! A call for a session that does not exist (or has ended) is 404; one without the
//! session's token 401 (the id is looked up first: ids are 128 random bits, so a 404
//! tells a stranger nothing). A resume point past the session's last event is
//! OUT_OF_RANGE (400): it belongs to another session.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use centralino_proto::v1::agent_command::Kind as CommandKind;
use centralino_proto::v1::agent_event::Kind as EventKind;
use centralino_proto::v1::{AgentCommand, AgentEvent, LoggedIn, Login};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tracing::{debug, info};

use crate::call::{bearer, decode, json, request};
use crate::customer::AfterQuery;
use crate::sse;
use crate::status::{code_name, HttpError};

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

/// Events a session keeps for readers that resume.
pub const RING_EVENTS: usize = 1024;
/// Commands queued for one session's desk; beyond this a command is RESOURCE_EXHAUSTED.
pub const COMMAND_BUFFER: usize = 64;
/// How long a login waits for the desk's answer (`loggedIn` or the refusal).
pub const LOGIN_WAIT: Duration = Duration::from_secs(15);

/// The answer to a login.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreated {
    /// The session's id, in the paths of the later calls.
    pub session_id: String,
    /// The session's secret: `Authorization: Bearer <sessionToken>` on every later call.
    pub session_token: String,
    /// The desk's login confirmation (also the session's event 1).
    pub logged_in: LoggedIn,
}

/// The answer to a queued command.
#[derive(Debug, Serialize)]
struct Accepted {
    accepted: bool,
}

/// The desk routes over `opener`.
pub fn routes(opener: Arc<dyn DeskOpener>, config: &crate::WebConfig) -> Router {
    let desks = Arc::new(Desks {
        opener,
        sessions: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(
            config.max_desk_sessions.min(Semaphore::MAX_PERMITS),
        )),
        idle: Duration::from_secs(config.desk_session_idle_secs.max(1)),
    });
    Router::new()
        .route("/v1/agent/sessions", post(login))
        .route("/v1/agent/sessions/{sid}", delete(logout))
        .route("/v1/agent/sessions/{sid}/events", get(events))
        .route("/v1/agent/sessions/{sid}/commands", post(command))
        .with_state(desks)
}

/// The open sessions of one listener.
struct Desks {
    opener: Arc<dyn DeskOpener>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// One permit per open session (`max_desk_sessions`); its pump holds it.
    slots: Arc<Semaphore>,
    /// A session without a reader this long ends.
    idle: Duration,
}

impl Desks {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session `sid` if `parts` carry its token: 404 for no such session, 401 for a
    /// missing or wrong token.
    #[allow(clippy::result_large_err)]
    fn authorized(&self, sid: &str, parts: &Parts) -> Result<Arc<Session>, Status> {
        let session = self
            .sessions()
            .get(sid)
            .cloned()
            .ok_or_else(|| Status::not_found("no such desk session (it may have ended)"))?;
        let token = bearer(&parts.headers).ok_or_else(|| {
            Status::unauthenticated("the session token is missing (Authorization: Bearer)")
        })?;
        if digest(token) != session.token_digest {
            return Err(Status::unauthenticated("wrong session token"));
        }
        Ok(session)
    }

    /// Ends `session`: it is forgotten (later calls are 404), its commands end (the desk
    /// sees its stream end and starts the agent's disconnect grace), its reader gets what
    /// is left and then the end.
    fn end(&self, session: &Session, why: &str) {
        self.sessions().remove(&session.id);
        session.close(why);
    }
}

/// One HTTP desk session.
struct Session {
    id: String,
    token_digest: [u8; 32],
    /// The desk's command stream; None once the session ended.
    commands: Mutex<Option<mpsc::Sender<AgentCommand>>>,
    state: Mutex<Ring>,
    /// Bumped on every change of `state` (event, end, reader replaced).
    wake: watch::Sender<u64>,
}

/// A session's kept events and its reader.
struct Ring {
    /// The last [`RING_EVENTS`] events with their sequence numbers, oldest first.
    events: VecDeque<(u64, AgentEvent)>,
    /// Sequence number of the last event (0: none yet).
    last_seq: u64,
    /// The desk's events have ended (or the session was closed).
    finished: bool,
    /// The status that ended the desk's events, for the reader.
    end: Option<Status>,
    /// The current reader's generation (a new reader takes the next one).
    reader: u64,
    /// Whether a reader is connected.
    reading: bool,
    /// Since when no reader is connected.
    unread_since: Instant,
}

impl Ring {
    fn push(&mut self, event: AgentEvent) {
        self.last_seq += 1;
        if self.events.len() == RING_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back((self.last_seq, event));
    }

    /// Sequence number of the oldest kept event (`last_seq + 1` when none is kept).
    fn oldest(&self) -> u64 {
        self.events
            .front()
            .map_or(self.last_seq + 1, |(seq, _)| *seq)
    }

    /// The kept event right after `cursor`.
    fn after(&self, cursor: u64) -> Option<&(u64, AgentEvent)> {
        let index = cursor.checked_sub(self.oldest().checked_sub(1)?)?;
        self.events.get(usize::try_from(index).ok()?)
    }
}

impl Session {
    fn state(&self) -> MutexGuard<'_, Ring> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn close(&self, why: &str) {
        let sender = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if sender.is_some() {
            info!(session = %self.id, why, "HTTP desk session ended");
        }
        drop(sender);
        self.state().finished = true;
        self.changed();
    }

    /// Whether the session has had no reader for `idle`.
    fn idle_for(&self, idle: Duration) -> bool {
        let state = self.state();
        !state.reading && state.unread_since.elapsed() >= idle
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The gRPC code named `name` (a `CommandError`'s code); UNKNOWN for another name.
fn code_named(name: &str) -> Code {
    (0..=16)
        .map(Code::from_i32)
        .find(|code| code_name(*code) == name)
        .unwrap_or(Code::Unknown)
}

async fn login(State(desks): State<Arc<Desks>>, parts: Parts, body: Bytes) -> Response {
    match open(&desks, &parts, &body).await {
        Ok(created) => {
            let mut response = json(&created);
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        Err(status) => HttpError(status).into_response(),
    }
}

#[allow(clippy::result_large_err)]
async fn open(desks: &Arc<Desks>, parts: &Parts, body: &Bytes) -> Result<SessionCreated, Status> {
    let credentials: Login = decode(body, "Login")?;
    let permit =
        desks.slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted("too many desk sessions are open on this node")
        })?;
    let client = request(parts, ()).remote_addr();
    let (commands, queued) = mpsc::channel(COMMAND_BUFFER);
    commands
        .try_send(AgentCommand {
            request_id: String::new(),
            kind: Some(CommandKind::Login(credentials)),
        })
        .map_err(|_| Status::internal("cannot queue the login"))?;
    let stream: CommandStream = ReceiverStream::new(queued).map(Ok).boxed();
    let mut events = tokio::time::timeout(LOGIN_WAIT, desks.opener.open(client, stream))
        .await
        .map_err(|_| Status::deadline_exceeded("the desk did not answer the login in time"))??;
    let first = tokio::time::timeout(LOGIN_WAIT, events.next())
        .await
        .map_err(|_| Status::deadline_exceeded("the desk did not confirm the login in time"))?;
    let logged_in = match first {
        Some(Ok(AgentEvent {
            kind: Some(EventKind::LoggedIn(logged_in)),
        })) => logged_in,
        Some(Ok(AgentEvent {
            kind: Some(EventKind::Error(e)),
        })) => return Err(Status::new(code_named(&e.code), e.message)),
        Some(Err(status)) => return Err(status),
        Some(Ok(_)) => return Err(Status::internal("the desk did not begin with loggedIn")),
        None => return Err(Status::unavailable("the desk ended before the login")),
    };
    let id = hex::encode(rand::random::<[u8; 16]>());
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut ring = Ring {
        events: VecDeque::with_capacity(RING_EVENTS),
        last_seq: 0,
        finished: false,
        end: None,
        reader: 0,
        reading: false,
        unread_since: Instant::now(),
    };
    ring.push(AgentEvent {
        kind: Some(EventKind::LoggedIn(logged_in.clone())),
    });
    let session = Arc::new(Session {
        id: id.clone(),
        token_digest: digest(&token),
        commands: Mutex::new(Some(commands)),
        state: Mutex::new(ring),
        wake: watch::Sender::new(0),
    });
    desks.sessions().insert(id.clone(), session.clone());
    info!(session = %id, agent_id = %logged_in.agent_id, "HTTP desk session opened");
    tokio::spawn(pump(desks.clone(), session, events, permit));
    Ok(SessionCreated {
        session_id: id,
        session_token: token,
        logged_in,
    })
}

/// Reads the desk's events into the session's ring until they end (or the session is
/// closed), and ends a session that has had no reader for too long.
async fn pump(
    desks: Arc<Desks>,
    session: Arc<Session>,
    mut events: DeskEventStream,
    _permit: OwnedSemaphorePermit,
) {
    let mut closed = session.wake.subscribe();
    let mut check = tokio::time::interval(
        (desks.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)),
    );
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = events.next() => {
                match item {
                    Some(Ok(event)) => session.state().push(event),
                    Some(Err(status)) => {
                        debug!(session = %session.id, %status, "desk ended with a status");
                        session.state().end = Some(status);
                        break;
                    }
                    None => break,
                }
                session.changed();
            }
            _ = check.tick() => {
                if session.idle_for(desks.idle) {
                    desks.end(&session, "no reader");
                }
            }
            changed = closed.changed() => {
                if changed.is_err() || session.state().finished {
                    break;
                }
            }
        }
    }
    desks.end(&session, "the desk ended");
}

/// A session's events as SSE items: an event with its sequence number, or a gap.
#[derive(Serialize)]
#[serde(untagged)]
enum Item {
    Event(Numbered),
    Gap { gap: Gap },
}

/// An event with its sequence number (the SSE id, not in the JSON).
#[derive(Serialize)]
#[serde(transparent)]
struct Numbered {
    #[serde(skip)]
    seq: u64,
    event: Box<AgentEvent>,
}

/// Events after `after` and before `resumed_at` are no longer kept.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Gap {
    after: u64,
    resumed_at: u64,
}

/// One reader's position in a session.
struct Reader {
    session: Arc<Session>,
    generation: u64,
    cursor: u64,
    wake: watch::Receiver<u64>,
    done: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.session.state();
        if state.reader == self.generation && state.reading {
            state.reading = false;
            state.unread_since = Instant::now();
        }
    }
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Item, Status>, Self)> {
        if self.done {
            return None;
        }
        loop {
            self.wake.borrow_and_update();
            {
                let state = self.session.state();
                if state.reader != self.generation {
                    drop(state);
                    // A final code (not one a client retries): two tabs of one session
                    // must not keep replacing each other.
                    self.done = true;
                    let status = Status::failed_precondition(
                        "another reader took over this desk session's events",
                    );
                    return Some((Err(status), self));
                }
                let oldest = state.oldest();
                if self.cursor + 1 < oldest && self.cursor < state.last_seq {
                    let gap = Gap {
                        after: self.cursor,
                        resumed_at: oldest,
                    };
                    self.cursor = oldest - 1;
                    drop(state);
                    return Some((Ok(Item::Gap { gap }), self));
                }
                if let Some((seq, event)) = state.after(self.cursor) {
                    let item = Item::Event(Numbered {
                        seq: *seq,
                        event: Box::new(event.clone()),
                    });
                    self.cursor = *seq;
                    drop(state);
                    return Some((Ok(item), self));
                }
                if state.finished {
                    let end = state.end.clone();
                    drop(state);
                    self.done = true;
                    return end.map(|status| (Err(status), self));
                }
            }
            if self.wake.changed().await.is_err() {
                return None;
            }
        }
    }
}

async fn events(
    State(desks): State<Arc<Desks>>,
    Path(sid): Path<String>,
    Query(query): Query<AfterQuery>,
    parts: Parts,
) -> Response {
    let session = match desks.authorized(&sid, &parts) {
        Ok(session) => session,
        Err(status) => return HttpError(status).into_response(),
    };
    let after = match sse::resume_point(&parts.headers, query.after.as_deref()) {
        Ok(after) => after,
        Err(status) => return HttpError(status).into_response(),
    };
    let generation = {
        let mut state = session.state();
        if after > state.last_seq {
            return HttpError(Status::out_of_range(format!(
                "event {after} has not happened yet (the last is {})",
                state.last_seq
            )))
            .into_response();
        }
        state.reader += 1;
        state.reading = true;
        state.reader
    };
    // The old reader (if any) sees it was replaced.
    session.changed();
    let reader = Reader {
        wake: session.wake.subscribe(),
        session,
        generation,
        cursor: after,
        done: false,
    };
    let stream = futures::stream::unfold(reader, Reader::next);
    sse::respond(stream, |item| match item {
        Item::Event(numbered) => Some(numbered.seq),
        Item::Gap { .. } => None,
    })
}

async fn command(
    State(desks): State<Arc<Desks>>,
    Path(sid): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    match queue(&desks, &sid, &parts, &body) {
        Ok(()) => {
            let mut response = json(&Accepted { accepted: true });
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
        Err(status) => HttpError(status).into_response(),
    }
}

#[allow(clippy::result_large_err)]
fn queue(desks: &Desks, sid: &str, parts: &Parts, body: &Bytes) -> Result<(), Status> {
    let session = desks.authorized(sid, parts)?;
    let command: AgentCommand = decode(body, "AgentCommand")?;
    match &command.kind {
        None => return Err(Status::invalid_argument("empty command")),
        Some(CommandKind::Login(_)) => {
            return Err(Status::invalid_argument(
                "login opens a session (POST /v1/agent/sessions); it is not a command",
            ))
        }
        Some(_) => {}
    }
    let commands = session
        .commands
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or_else(|| Status::not_found("the desk session has ended"))?;
    commands.try_send(command).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => Status::resource_exhausted(format!(
            "{COMMAND_BUFFER} commands are already waiting for this desk"
        )),
        mpsc::error::TrySendError::Closed(_) => Status::not_found("the desk session has ended"),
    })
}

async fn logout(
    State(desks): State<Arc<Desks>>,
    Path(sid): Path<String>,
    parts: Parts,
) -> Response {
    match desks.authorized(&sid, &parts) {
        Ok(session) => {
            desks.end(&session, "logout");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(status) => HttpError(status).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centralino_proto::v1::Ack;

    fn ack(n: u64) -> AgentEvent {
        AgentEvent {
            kind: Some(EventKind::Ack(Ack {
                request_id: n.to_string(),
                seq: n,
                canned: Vec::new(),
            })),
        }
    }

    fn ring() -> Ring {
        Ring {
            events: VecDeque::new(),
            last_seq: 0,
            finished: false,
            end: None,
            reader: 0,
            reading: false,
            unread_since: Instant::now(),
        }
    }

    /// A desk that confirms any login and answers every command with `burst` acks.
    struct FakeDesk {
        burst: usize,
        /// Never reads a command after the login.
        stalled: bool,
    }

    #[tonic::async_trait]
    impl DeskOpener for FakeDesk {
        async fn open(
            &self,
            _client: Option<SocketAddr>,
            mut commands: CommandStream,
        ) -> Result<DeskEventStream, Status> {
            match commands.next().await {
                Some(Ok(AgentCommand {
                    kind: Some(CommandKind::Login(login)),
                    ..
                })) if login.password == "pw" => {}
                _ => return Err(Status::unauthenticated("bad login")),
            }
            let burst = self.burst;
            let stalled = self.stalled;
            let logged_in = futures::stream::iter([Ok(AgentEvent {
                kind: Some(EventKind::LoggedIn(LoggedIn {
                    agent_id: "giulia".into(),
                    ..Default::default()
                })),
            })]);
            if stalled {
                // Holds the commands unread, like a desk that has fallen behind.
                let held = futures::stream::once(async move {
                    let _commands = commands;
                    futures::future::pending::<()>().await;
                })
                .filter_map(|()| async { None });
                return Ok(logged_in.chain(held).boxed());
            }
            let acks = commands.flat_map(move |command| {
                let id = command.map(|c| c.request_id).unwrap_or_default();
                futures::stream::iter((0..burst).map(move |n| {
                    Ok(AgentEvent {
                        kind: Some(EventKind::Ack(Ack {
                            request_id: format!("{id}-{n}"),
                            seq: 0,
                            canned: Vec::new(),
                        })),
                    })
                }))
            });
            Ok(logged_in.chain(acks).boxed())
        }
    }

    async fn call(
        router: &Router,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(axum::body::Body::from(body.to_string()))
            .expect("request");
        router.clone().oneshot(request).await.expect("infallible")
    }

    /// Reads SSE blocks from `body` until `count` events with data came.
    async fn sse_blocks(body: axum::body::Body, count: usize) -> Vec<String> {
        let mut stream = body.into_data_stream();
        let mut text = String::new();
        let mut blocks = Vec::new();
        while blocks.len() < count {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("events in time")
                .expect("the stream goes on")
                .expect("a chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if block.contains("data:") {
                    blocks.push(block);
                }
            }
        }
        blocks
    }

    #[tokio::test]
    async fn a_resume_older_than_the_ring_begins_with_a_gap() {
        let config = crate::WebConfig::default();
        let router = routes(
            Arc::new(FakeDesk {
                burst: 1100,
                stalled: false,
            }),
            &config,
        );
        let refused = call(
            &router,
            "POST",
            "/v1/agent/sessions",
            None,
            &[],
            r#"{"agentId":"giulia","password":"no"}"#,
        )
        .await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let created = call(
            &router,
            "POST",
            "/v1/agent/sessions",
            None,
            &[],
            r#"{"agentId":"giulia","password":"pw"}"#,
        )
        .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let body = axum::body::to_bytes(created.into_body(), 4096)
            .await
            .expect("body");
        let created: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let sid = created["sessionId"].as_str().expect("sid").to_string();
        let token = created["sessionToken"].as_str().expect("token").to_string();
        let commands = format!("/v1/agent/sessions/{sid}/commands");
        let queued = call(
            &router,
            "POST",
            &commands,
            Some(&token),
            &[],
            r#"{"requestId":"b","findCanned":{}}"#,
        )
        .await;
        assert_eq!(queued.status(), StatusCode::ACCEPTED);
        // 1 + 1100 events: the ring keeps 78..=1101.
        let events = format!("/v1/agent/sessions/{sid}/events");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let too_far = call(
                &router,
                "GET",
                &format!("{events}?after=1101"),
                Some(&token),
                &[],
                "",
            )
            .await;
            if too_far.status() == StatusCode::OK {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the burst is pumped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let resumed = call(
            &router,
            "GET",
            &events,
            Some(&token),
            &[("last-event-id", "5")],
            "",
        )
        .await;
        assert_eq!(resumed.status(), StatusCode::OK);
        let blocks = sse_blocks(resumed.into_body(), 3).await;
        assert!(blocks[0].contains("event: gap"), "{}", blocks[0]);
        assert!(blocks[0].contains(r#""after":5"#), "{}", blocks[0]);
        assert!(blocks[0].contains(r#""resumedAt":78"#), "{}", blocks[0]);
        assert!(!blocks[0].contains("id:"), "a gap has no id: {}", blocks[0]);
        assert!(blocks[1].contains("id: 78\n"), "{}", blocks[1]);
        assert!(blocks[1].contains(r#""requestId":"b-76""#), "{}", blocks[1]);
        assert!(blocks[2].contains("id: 79\n"), "{}", blocks[2]);
        // Within the ring there is no gap.
        let inside = call(
            &router,
            "GET",
            &events,
            Some(&token),
            &[("last-event-id", "1000")],
            "",
        )
        .await;
        let blocks = sse_blocks(inside.into_body(), 1).await;
        assert!(blocks[0].contains("id: 1001\n"), "{}", blocks[0]);
        let out = call(
            &router,
            "GET",
            &events,
            Some(&token),
            &[("last-event-id", "2000")],
            "",
        )
        .await;
        assert_eq!(
            out.status(),
            StatusCode::BAD_REQUEST,
            "a resume point in the future"
        );
    }

    #[tokio::test]
    async fn a_desk_that_falls_behind_gets_resource_exhausted() {
        let config = crate::WebConfig::default();
        let desk = FakeDesk {
            burst: 1,
            stalled: true,
        };
        let router = routes(Arc::new(desk), &config);
        let created = call(
            &router,
            "POST",
            "/v1/agent/sessions",
            None,
            &[],
            r#"{"password":"pw"}"#,
        )
        .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let body = axum::body::to_bytes(created.into_body(), 4096)
            .await
            .expect("body");
        let created: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let sid = created["sessionId"].as_str().expect("sid").to_string();
        let token = created["sessionToken"].as_str().expect("token").to_string();
        let commands = format!("/v1/agent/sessions/{sid}/commands");
        let command = r#"{"requestId":"x","findCanned":{}}"#;
        for n in 0..COMMAND_BUFFER {
            let queued = call(&router, "POST", &commands, Some(&token), &[], command).await;
            assert_eq!(queued.status(), StatusCode::ACCEPTED, "command {n}");
        }
        let full = call(&router, "POST", &commands, Some(&token), &[], command).await;
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        let login = call(
            &router,
            "POST",
            &commands,
            Some(&token),
            &[],
            r#"{"login":{"password":"pw"}}"#,
        )
        .await;
        assert_eq!(
            login.status(),
            StatusCode::BAD_REQUEST,
            "login is no command"
        );
        let session = format!("/v1/agent/sessions/{sid}");
        let other = hex::encode([7u8; 32]);
        let wrong = call(&router, "DELETE", &session, Some(&other), &[], "").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let ended = call(&router, "DELETE", &session, Some(&token), &[], "").await;
        assert_eq!(ended.status(), StatusCode::NO_CONTENT);
        let gone = call(&router, "POST", &commands, Some(&token), &[], command).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_ring_keeps_the_last_events_in_order() {
        let mut ring = ring();
        assert!(ring.after(0).is_none());
        for n in 1..=(RING_EVENTS as u64 + 10) {
            ring.push(ack(n));
        }
        assert_eq!(ring.events.len(), RING_EVENTS);
        assert_eq!(ring.oldest(), 11);
        assert!(ring.after(0).is_none(), "event 1 is gone");
        assert!(ring.after(9).is_none(), "event 10 is gone");
        assert_eq!(ring.after(10).map(|(s, _)| *s), Some(11));
        assert_eq!(ring.after(500).map(|(s, _)| *s), Some(501));
        assert!(ring.after(ring.last_seq).is_none());
    }

    #[test]
    fn command_error_codes_read_back() {
        assert_eq!(code_named("UNAUTHENTICATED"), Code::Unauthenticated);
        assert_eq!(code_named("RESOURCE_EXHAUSTED"), Code::ResourceExhausted);
        assert_eq!(code_named("nonsense"), Code::Unknown);
    }

    #[test]
    fn an_item_is_the_event_json_or_a_gap() {
        let item = Item::Event(Numbered {
            seq: 7,
            event: Box::new(ack(3)),
        });
        let value = serde_json::to_value(&item).expect("json");
        assert!(value.get("ack").is_some(), "{value}");
        assert!(value.get("seq").is_none(), "{value}");
        let gap = Item::Gap {
            gap: Gap {
                after: 2,
                resumed_at: 9,
            },
        };
        let value = serde_json::to_value(&gap).expect("json");
        assert_eq!(value["gap"]["resumedAt"], 9);
    }
}
