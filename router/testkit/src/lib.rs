//! Test harness: a standalone node on loopback with a small configuration, and gRPC clients
//! for customers, agents and operators; [`cluster`] adds cluster nodes in one process.
#![allow(dead_code)]

pub mod cluster;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use centralino_base::clock::ManualClock;
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, AcceptOffer, AgentClose, AgentCommand, AgentEvent, AgentSend,
    AgentSnapshot, AgentStatus, ConversationAssigned, ConversationEvent, GetSnapshotRequest,
    GetTranscriptRequest, LoggedIn, Login, Offer, QueueSnapshot, SendMessageRequest,
    SendMessageResponse, SetStatus, Snapshot, StartConversationRequest, StartConversationResponse,
    StreamEventsRequest,
};
use centralino_router::config::Config;
use centralino_router::standalone::{self, RunningNode, StoreChoice};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Admin token of the test configuration.
pub const ADMIN: &str = "test-admin";

/// Shop secret of the test configuration (`[identity] shop_secret`).
pub const SHOP_SECRET: &str =
    "hex:746573742d73686f702d7365637265742d666f722d63656e7472616c696e6f21";
/// Visitor secret of the test configuration (`[identity] visitor_secret`), shared by the
/// routers of in-process clusters.
pub const VISITOR_SECRET: &str =
    "hex:746573742d76697369746f722d7365637265742d666f722d63656e7472616c21";

/// Returns an identity token for `customer_id`, valid for an hour, signed with the test
/// configuration's shop secret (what a shop's backend hands its widget).
pub fn identity_token(customer_id: &str) -> String {
    centralino_core::identity::customer_token(SHOP_SECRET, customer_id, 3600)
        .expect("the test shop secret is valid")
}

/// A small shop: two departments, Italian and English agents. `extra` is appended.
pub fn config_text(extra: &str) -> String {
    format!(
        r#"
[node]
grpc_addr = "127.0.0.1:0"
metrics_addr = ""
admin_token = "{ADMIN}"
actor_threads = 2
dev_mode = true

[desk]
offer_timeout_secs = 2
max_missed_offers = 2
disconnect_grace_secs = 2
wrap_up_secs = 0

[routing]
sticky_wait_secs = 2
rating_window_secs = 30

[identity]
shop_secret = "{SHOP_SECRET}"
visitor_secret = "{VISITOR_SECRET}"

[[departments]]
name = "sales"
steps = [ {{ after_secs = 0, min_proficiency = 4 }}, {{ after_secs = 2, min_proficiency = 1 }} ]

[[departments]]
name = "support"

[[teams]]
name = "italian"
language = "it"

[[teams]]
name = "english"
language = "en"

[[agents]]
id = "giulia"
name = "Giulia"
password = "pw"
team = "italian"
capacity = 2
skills = {{ "lang:it" = 5, sales = 5, support = 3 }}

[[agents]]
id = "marco"
name = "Marco"
password = "pw"
team = "italian"
capacity = 2
skills = {{ "lang:it" = 4, sales = 2, support = 5 }}

[[agents]]
id = "emma"
name = "Emma"
password = "pw"
team = "english"
capacity = 3
skills = {{ "lang:en" = 5, sales = 4, support = 4 }}
{extra}
"#
    )
}

/// Parses a test configuration.
pub fn config(extra: &str) -> Config {
    let mut config =
        Config::from_toml(&config_text(extra), Vec::new()).expect("test configuration");
    // limits: tests start conversations faster than people, from one address, and move
    // manual clocks by hours; the limits tests turn these on.
    config.limits = config.limits.without_rate_limits();
    config.limits.idle_queued_secs = 0;
    config.limits.idle_offline_secs = 0;
    config
}

/// Runs `f` inside an actix system on a multi-thread tokio runtime.
pub fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f());
}

/// Starts a node with the memory store.
pub async fn start(config: Config) -> RunningNode {
    standalone::start_with(config, StoreChoice::Memory)
        .await
        .expect("node starts")
}

/// Starts a node on `store` (e.g. a [`centralino_core::store::fault::FaultStore`] the test
/// keeps a handle to).
pub async fn start_on(
    config: Config,
    store: std::sync::Arc<dyn centralino_core::store::Store>,
) -> RunningNode {
    standalone::start_with(config, StoreChoice::Custom(store))
        .await
        .expect("node starts")
}

/// Starts a node with the embedded store in `dir`.
pub async fn start_durable(mut config: Config, dir: &Path) -> RunningNode {
    config.node.data_dir = dir.to_path_buf();
    standalone::start(config).await.expect("node starts")
}

/// Starts a node with the memory store on a [`ManualClock`] reading `at` (RFC 3339): time
/// stands still until the test moves the clock. Desk timers (offer timeout, wrap-up,
/// disconnect grace, shift checks) run on the clock and fire as it passes them; queues
/// look at the clock on each tick (at most 250 ms of wall time apart).
pub async fn start_manual(config: Config, at: &str) -> (RunningNode, ManualClock) {
    let clock = ManualClock::new(instant_ms(at));
    let node = standalone::start_with_clock(config, StoreChoice::Memory, clock.shared())
        .await
        .expect("node starts");
    (node, clock)
}

/// Starts a node with the embedded store in `dir` on `clock` (see [`start_manual`]).
pub async fn start_durable_manual(
    mut config: Config,
    dir: &Path,
    clock: &ManualClock,
) -> RunningNode {
    config.node.data_dir = dir.to_path_buf();
    standalone::start_with_clock(config, StoreChoice::Embedded, clock.shared())
        .await
        .expect("node starts")
}

/// Moves `clock` by `by` and waits until every timer this woke was taken again: the
/// periodic ones (the agents' shift checks) have run at the new time. Use it when only
/// periodic timers are due; returns how many timers the move woke.
pub async fn advance_settled(clock: &ManualClock, by: Duration) -> usize {
    let before = clock.pending_timers();
    let woken = clock.advance(by);
    let rearmed = wait_until(5, || async { clock.pending_timers() >= before }).await;
    assert!(rearmed, "the woken timers were not taken again");
    woken
}

/// Polls `ok` every 10 ms until it holds (true) or `secs` pass (false).
pub async fn wait_until<F, Fut>(secs: u64, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if ok().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Returns the texts of a conversation's transcript as the admin API reads it.
pub async fn transcript_texts(node: &RunningNode, conversation_id: &str) -> Vec<String> {
    admin(node)
        .await
        .get_transcript(authed(GetTranscriptRequest {
            conversation_id: conversation_id.to_string(),
        }))
        .await
        .expect("transcript")
        .into_inner()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// Waits for the customer's `offered` event and returns when (node clock) it happened.
pub async fn offered_at(
    stream: &mut tonic::Streaming<ConversationEvent>,
    secs: u64,
) -> Option<i64> {
    next_event(stream, secs, |e| match &e.kind {
        Some(centralino_proto::v1::conversation_event::Kind::Offered(_)) => Some(e.at_unix_ms),
        _ => None,
    })
    .await
}

/// Returns a channel to the node.
pub async fn channel(node: &RunningNode) -> Channel {
    Channel::from_shared(format!("http://{}", node.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Customer client.
pub async fn customer(node: &RunningNode) -> ConversationServiceClient<Channel> {
    ConversationServiceClient::new(channel(node).await)
}

/// Admin client.
pub async fn admin(node: &RunningNode) -> AdminClient<Channel> {
    AdminClient::new(channel(node).await)
}

/// Adds the admin token to a request.
pub fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("header"),
    );
    request
}

/// A logged-in agent desktop.
pub struct Desk {
    pub tx: mpsc::Sender<AgentCommand>,
    pub events: tonic::Streaming<AgentEvent>,
}

impl Desk {
    /// Sends a command.
    pub async fn send(&self, kind: agent_command::Kind) {
        self.tx
            .send(AgentCommand {
                request_id: String::new(),
                kind: Some(kind),
            })
            .await
            .expect("desk command");
    }

    /// Returns the next event matching `pick` within `secs` seconds, skipping others.
    pub async fn next<T>(
        &mut self,
        secs: u64,
        mut pick: impl FnMut(agent_event::Kind) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .ok()??
                .ok()?;
            if let Some(kind) = event.kind {
                if let Some(t) = pick(kind) {
                    return Some(t);
                }
            }
        }
    }
}

/// Logs an agent in and waits for `logged_in`.
pub async fn login(
    node: &RunningNode,
    agent_id: &str,
    password: &str,
) -> Result<Desk, tonic::Status> {
    let mut client = AgentDeskClient::new(channel(node).await);
    let (tx, rx) = mpsc::channel(64);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent_id.to_string(),
            password: password.to_string(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue login");
    let events = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut desk = Desk { tx, events };
    desk.next(5, |k| {
        matches!(k, agent_event::Kind::LoggedIn(_)).then_some(())
    })
    .await
    .ok_or_else(|| tonic::Status::internal("no logged_in event"))?;
    Ok(desk)
}

/// Starts a conversation for the shop's customer `customer_id`, with its identity token
/// ([`identity_token`]); an empty id starts an anonymous visitor's.
pub async fn start_conversation(
    client: &mut ConversationServiceClient<Channel>,
    department: &str,
    language: &str,
    customer_id: &str,
) -> Result<StartConversationResponse, tonic::Status> {
    client
        .start_conversation(StartConversationRequest {
            department: department.to_string(),
            language: language.to_string(),
            customer_id: customer_id.to_string(),
            display_name: format!("Customer {customer_id}"),
            identity_token: if customer_id.is_empty() {
                String::new()
            } else {
                identity_token(customer_id)
            },
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Opens the event stream of a conversation.
pub async fn events(
    client: &mut ConversationServiceClient<Channel>,
    started: &StartConversationResponse,
    after: u64,
) -> tonic::Streaming<ConversationEvent> {
    client
        .stream_events(StreamEventsRequest {
            conversation_id: started.conversation_id.clone(),
            token: started.token.clone(),
            after_event_id: after,
        })
        .await
        .expect("stream")
        .into_inner()
}

/// Returns the next customer event matching `pick` within `secs` seconds.
pub async fn next_event<T>(
    stream: &mut tonic::Streaming<ConversationEvent>,
    secs: u64,
    mut pick: impl FnMut(&ConversationEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .ok()??
            .ok()?;
        if let Some(t) = pick(&event) {
            return Some(t);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the integration tests below this line.

/// Parses the test configuration and lets `edit` change it before the node starts.
pub fn config_with(extra: &str, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = config(extra);
    edit(&mut config);
    config
}

/// Sets the chat capacity of `agent_id` in `config`.
pub fn set_capacity(config: &mut Config, agent_id: &str, capacity: u32) {
    config
        .agents
        .iter_mut()
        .find(|a| a.id == agent_id)
        .expect("configured agent")
        .capacity = capacity;
}

/// Logs an agent in and returns the desk with its `logged_in` confirmation.
pub async fn login_full(
    node: &RunningNode,
    agent_id: &str,
    password: &str,
) -> Result<(Desk, LoggedIn), tonic::Status> {
    let mut client = AgentDeskClient::new(channel(node).await);
    let (tx, rx) = mpsc::channel(64);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent_id.to_string(),
            password: password.to_string(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue login");
    let events = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut desk = Desk { tx, events };
    let logged_in = desk
        .next(5, |k| match k {
            agent_event::Kind::LoggedIn(l) => Some(l),
            _ => None,
        })
        .await
        .ok_or_else(|| tonic::Status::internal("no logged_in event"))?;
    Ok((desk, logged_in))
}

impl Desk {
    /// Returns every event that arrives within `ms` milliseconds.
    pub async fn collect_for(&mut self, ms: u64) -> Vec<agent_event::Kind> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut out = Vec::new();
        while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, self.events.next()).await
        {
            if let Some(kind) = event.kind {
                out.push(kind);
            }
        }
        out
    }

    /// Returns the next offer within `secs` seconds.
    pub async fn offer(&mut self, secs: u64) -> Option<Offer> {
        self.next(secs, |k| match k {
            agent_event::Kind::Offer(o) => Some(o),
            _ => None,
        })
        .await
    }

    /// Accepts `offer` and waits for the assignment.
    pub async fn accept(&mut self, offer: &Offer) -> ConversationAssigned {
        self.send(agent_command::Kind::Accept(AcceptOffer {
            reservation_id: offer.reservation_id.clone(),
        }))
        .await;
        let wanted = offer.conversation_id.clone();
        self.next(5, |k| match k {
            agent_event::Kind::Assigned(a) if a.conversation_id == wanted => Some(a),
            _ => None,
        })
        .await
        .unwrap_or_else(|| panic!("no assignment after accepting conversation {wanted}"))
    }

    /// Waits for the next offer and accepts it; returns the conversation id.
    pub async fn take(&mut self) -> String {
        let offer = self.offer(5).await.expect("an offer");
        self.accept(&offer).await;
        offer.conversation_id
    }

    /// Sends a message into a conversation.
    pub async fn say(&self, conversation_id: &str, message_id: &str, text: &str) {
        self.send(agent_command::Kind::Send(AgentSend {
            conversation_id: conversation_id.to_string(),
            message_id: message_id.to_string(),
            text: text.to_string(),
            status_note: false,
        }))
        .await;
    }

    /// Closes a conversation with a summary.
    pub async fn close(&self, conversation_id: &str, summary: &str) {
        self.send(agent_command::Kind::Close(AgentClose {
            conversation_id: conversation_id.to_string(),
            summary: summary.to_string(),
        }))
        .await;
    }

    /// Closes a conversation and waits for its `ended` event.
    pub async fn close_and_wait(&mut self, conversation_id: &str) {
        self.close(conversation_id, "done").await;
        let wanted = conversation_id.to_string();
        self.next(5, |k| match k {
            agent_event::Kind::Ended(e) if e.conversation_id == wanted => Some(()),
            _ => None,
        })
        .await
        .unwrap_or_else(|| panic!("conversation {wanted} did not end"));
    }

    /// Sets the agent's status.
    pub async fn set_status(&self, status: AgentStatus) {
        self.send(agent_command::Kind::SetStatus(SetStatus {
            status: status as i32,
        }))
        .await;
    }

    /// Sets the agent's status and waits for the `status` event confirming it.
    pub async fn set_status_and_wait(&mut self, status: AgentStatus) {
        self.set_status(status).await;
        self.next(5, |k| match k {
            agent_event::Kind::Status(s) if s.status == status as i32 => Some(()),
            _ => None,
        })
        .await
        .unwrap_or_else(|| panic!("status {status:?} not confirmed"));
    }
}

/// Sends a customer message.
pub async fn send_text(
    client: &mut ConversationServiceClient<Channel>,
    started: &StartConversationResponse,
    message_id: &str,
    text: &str,
) -> Result<SendMessageResponse, tonic::Status> {
    client
        .send_message(SendMessageRequest {
            conversation_id: started.conversation_id.clone(),
            token: started.token.clone(),
            message_id: message_id.to_string(),
            text: text.to_string(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Returns the admin snapshot.
pub async fn snapshot(node: &RunningNode) -> Snapshot {
    admin(node)
        .await
        .get_snapshot(authed(GetSnapshotRequest {}))
        .await
        .expect("snapshot")
        .into_inner()
}

/// Returns one agent of a snapshot.
pub fn agent_in<'a>(snapshot: &'a Snapshot, agent_id: &str) -> &'a AgentSnapshot {
    snapshot
        .agents
        .iter()
        .find(|a| a.agent_id == agent_id)
        .unwrap_or_else(|| panic!("agent {agent_id} in snapshot"))
}

/// Returns one queue of a snapshot.
pub fn queue_in<'a>(snapshot: &'a Snapshot, department: &str) -> &'a QueueSnapshot {
    snapshot
        .queues
        .iter()
        .find(|q| q.department == department)
        .unwrap_or_else(|| panic!("queue {department} in snapshot"))
}

/// Polls the admin snapshot until `ok` holds (or `secs` pass); returns the last snapshot.
pub async fn snapshot_until(
    node: &RunningNode,
    secs: u64,
    mut ok: impl FnMut(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let snap = snapshot(node).await;
        if ok(&snap) || tokio::time::Instant::now() >= deadline {
            return snap;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Returns every customer event that arrives within `ms` milliseconds.
pub async fn collect_events(
    stream: &mut tonic::Streaming<ConversationEvent>,
    ms: u64,
) -> Vec<ConversationEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, stream.next()).await {
        out.push(event);
    }
    out
}

/// Text of a customer event if it is a chat message.
pub fn message_text(event: &ConversationEvent) -> Option<String> {
    match &event.kind {
        Some(centralino_proto::v1::conversation_event::Kind::Message(m)) => Some(m.text.clone()),
        _ => None,
    }
}

/// How [`restart_durable`] got the node up again.
pub struct Restarted {
    /// The new node.
    pub node: RunningNode,
    /// Set when the old node still held the store's lock and the new node had to start on a
    /// copy of the data directory (a clean shutdown should release the lock).
    pub copy: Option<tempfile::TempDir>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read data dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy data file");
        }
    }
}

/// Starts a node on the embedded store in `dir` after another node on it was shut down.
/// When the old node still holds the store's lock, waits up to one second, then starts on a
/// copy of the directory (its committed content) so the recovery can still be tested.
pub async fn restart_durable(config: Config, dir: &Path) -> Restarted {
    restart_durable_on(config, dir, None).await
}

/// [`restart_durable`] on a [`ManualClock`].
pub async fn restart_durable_manual(config: Config, dir: &Path, clock: &ManualClock) -> Restarted {
    restart_durable_on(config, dir, Some(clock)).await
}

async fn restart_durable_on(config: Config, dir: &Path, clock: Option<&ManualClock>) -> Restarted {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let mut attempt = config.clone();
        attempt.node.data_dir = dir.to_path_buf();
        let started = match clock {
            Some(clock) => {
                standalone::start_with_clock(attempt, StoreChoice::Embedded, clock.shared()).await
            }
            None => standalone::start(attempt).await,
        };
        match started {
            Ok(node) => return Restarted { node, copy: None },
            Err(e) if e.to_string().contains("already open") => {
                if tokio::time::Instant::now() >= deadline {
                    eprintln!("restart: {e}; starting on a copy of {}", dir.display());
                    let copy = tempfile::tempdir().expect("tempdir");
                    copy_dir(dir, copy.path());
                    let node = match clock {
                        Some(clock) => start_durable_manual(config, copy.path(), clock).await,
                        None => start_durable(config, copy.path()).await,
                    };
                    return Restarted {
                        node,
                        copy: Some(copy),
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node does not restart on {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for schedules, simulated time, desk commands with request ids and integration
// events (handover, transfers, offline/busy, customer care, admin tests).

/// Unix milliseconds of an RFC 3339 instant, e.g. `"2026-11-23T22:00:00+01:00"`.
pub fn instant_ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .timestamp_millis()
}

/// Runs the node on a simulated clock starting at `start` (RFC 3339), `speed` simulated
/// seconds per wall second. Desk and rating timers are in simulated seconds, so they are
/// scaled up to stay a few wall seconds long.
pub fn simulated(config: &mut Config, start: &str, speed: f64) {
    config.clock.mode = centralino_base::config::ClockMode::Simulated;
    config.clock.start = Some(start.to_string());
    config.clock.speed = speed;
    let wall = |secs: f64| (secs * speed).round().max(1.0) as u64;
    config.desk.offer_timeout_secs = wall(8.0);
    config.desk.disconnect_grace_secs = wall(30.0);
    config.desk.wrap_up_secs = 0;
    config.routing.sticky_wait_secs = wall(1.0);
    config.routing.rating_window_secs = wall(5.0);
}

/// A schedule in Europe/Rome with the same `hours` every day.
pub fn rome_daily(hours: &[&str]) -> centralino_base::schedule::ScheduleConfig {
    centralino_base::schedule::ScheduleConfig {
        timezone: "Europe/Rome".to_string(),
        weekly: std::collections::BTreeMap::from([(
            "daily".to_string(),
            hours.iter().map(|h| h.to_string()).collect(),
        )]),
        ..Default::default()
    }
}

/// Gives team `team` the schedule `schedule`.
pub fn set_schedule(
    config: &mut Config,
    team: &str,
    schedule: centralino_base::schedule::ScheduleConfig,
) {
    config
        .teams
        .iter_mut()
        .find(|t| t.name == team)
        .unwrap_or_else(|| panic!("configured team {team}"))
        .schedule = Some(schedule);
}

/// The Italian team works 10:00–22:00 Europe/Rome, the English team 24 h, and Italian
/// customers fall back to English.
pub fn italian_day_shift(config: &mut Config) {
    set_schedule(config, "italian", rome_daily(&["10:00-22:00"]));
    config
        .languages
        .fallback
        .insert("it".to_string(), vec!["en".to_string()]);
}

/// Waits (polling the node's clock) until the node's clock reads at least `at_ms`.
pub async fn wait_for_clock(node: &RunningNode, at_ms: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while node.clock.now_ms() < at_ms {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node clock did not reach {at_ms}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What answered a desk command carrying a request id.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `ack`.
    Ack,
    /// `error` with its code name and message.
    Error { code: String, message: String },
}

impl Reply {
    /// Returns the error code name, panicking on an ack.
    pub fn code(&self) -> &str {
        match self {
            Reply::Ack => panic!("expected an error, got an ack"),
            Reply::Error { code, .. } => code,
        }
    }
}

impl Desk {
    /// Sends a command with a request id.
    pub async fn request(&self, request_id: &str, kind: agent_command::Kind) {
        self.tx
            .send(AgentCommand {
                request_id: request_id.to_string(),
                kind: Some(kind),
            })
            .await
            .expect("desk command");
    }

    /// Waits for the `ack` or `error` answering `request_id` (other events are skipped and
    /// returned in `skipped`).
    pub async fn reply_to(
        &mut self,
        request_id: &str,
        secs: u64,
        skipped: &mut Vec<agent_event::Kind>,
    ) -> Reply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("no reply to request {request_id:?}"))
                .unwrap_or_else(|| panic!("desk stream ended before reply to {request_id:?}"))
                .expect("desk stream error");
            match event.kind {
                Some(agent_event::Kind::Ack(a)) if a.request_id == request_id => return Reply::Ack,
                Some(agent_event::Kind::Error(e)) if e.request_id == request_id => {
                    return Reply::Error {
                        code: e.code,
                        message: e.message,
                    }
                }
                Some(other) => skipped.push(other),
                None => {}
            }
        }
    }

    /// Sends a command with a request id and waits for its answer (events arriving before
    /// the answer are dropped; see [`Desk::call_keep`]).
    pub async fn call(&mut self, request_id: &str, kind: agent_command::Kind) -> Reply {
        self.call_keep(request_id, kind).await.0
    }

    /// Sends a command with a request id and waits for its answer; also returns the events
    /// that arrived before it.
    pub async fn call_keep(
        &mut self,
        request_id: &str,
        kind: agent_command::Kind,
    ) -> (Reply, Vec<agent_event::Kind>) {
        self.request(request_id, kind).await;
        let mut skipped = Vec::new();
        let reply = self.reply_to(request_id, 5, &mut skipped).await;
        (reply, skipped)
    }

    /// Returns the outcome of `ended` for `conversation_id`, looking first in `earlier`
    /// (events already read) and then on the stream for up to `secs` seconds.
    pub async fn ended_after(
        &mut self,
        earlier: &[agent_event::Kind],
        conversation_id: &str,
        secs: u64,
    ) -> Option<i32> {
        let found = earlier.iter().find_map(|k| match k {
            agent_event::Kind::Ended(e) if e.conversation_id == conversation_id => Some(e.outcome),
            _ => None,
        });
        match found {
            Some(outcome) => Some(outcome),
            None => self.ended(conversation_id, secs).await,
        }
    }

    /// Waits for `ended` of `conversation_id` and returns its outcome.
    pub async fn ended(&mut self, conversation_id: &str, secs: u64) -> Option<i32> {
        let wanted = conversation_id.to_string();
        self.next(secs, |k| match k {
            agent_event::Kind::Ended(e) if e.conversation_id == wanted => Some(e.outcome),
            _ => None,
        })
        .await
    }

    /// Waits for a customer message of `conversation_id` with `text`.
    pub async fn hears(&mut self, conversation_id: &str, text: &str, secs: u64) -> bool {
        let (cid, text) = (conversation_id.to_string(), text.to_string());
        self.next(secs, |k| match k {
            agent_event::Kind::Message(m)
                if m.conversation_id == cid
                    && m.message.as_ref().is_some_and(|m| m.text == text) =>
            {
                Some(())
            }
            _ => None,
        })
        .await
        .is_some()
    }
}

/// Opens the admin integration event stream after `after`.
pub async fn integration_stream(
    node: &RunningNode,
    after: u64,
) -> tonic::Streaming<centralino_proto::v1::IntegrationEvent> {
    admin(node)
        .await
        .stream_integration_events(authed(
            centralino_proto::v1::StreamIntegrationEventsRequest {
                after_event_id: after,
            },
        ))
        .await
        .expect("integration stream")
        .into_inner()
}

/// Returns the first integration event (after event 0) matching `pick` within `secs`.
pub async fn integration_event(
    node: &RunningNode,
    secs: u64,
    mut pick: impl FnMut(&centralino_proto::v1::IntegrationEvent) -> bool,
) -> Option<centralino_proto::v1::IntegrationEvent> {
    let mut stream = integration_stream(node, 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .ok()??
            .ok()?;
        if pick(&event) {
            return Some(event);
        }
    }
}

/// Kind of a customer event, for messages in assertions.
pub fn event_name(event: &ConversationEvent) -> &'static str {
    use centralino_proto::v1::conversation_event::Kind;
    match &event.kind {
        Some(Kind::Queued(_)) => "queued",
        Some(Kind::Offered(_)) => "offered",
        Some(Kind::Assigned(_)) => "assigned",
        Some(Kind::Message(_)) => "message",
        Some(Kind::Closed(_)) => "closed",
        Some(Kind::RatingRequested(_)) => "rating_requested",
        Some(Kind::Requeued(_)) => "requeued",
        Some(Kind::Offline(_)) => "offline",
        Some(Kind::Busy(_)) => "busy",
        Some(Kind::Transferred(_)) => "transferred",
        Some(Kind::HandedOver(_)) => "handed_over",
        Some(Kind::Typing(_)) => "typing",
        None => "none",
    }
}

/// Waits for the customer's `closed` event and returns its outcome.
pub async fn closed_outcome(
    stream: &mut tonic::Streaming<ConversationEvent>,
    secs: u64,
) -> Option<i32> {
    next_event(stream, secs, |e| match &e.kind {
        Some(centralino_proto::v1::conversation_event::Kind::Closed(c)) => Some(c.outcome),
        _ => None,
    })
    .await
}

/// Waits for the customer's `assigned` event and returns the agent id.
pub async fn assigned_agent(
    stream: &mut tonic::Streaming<ConversationEvent>,
    secs: u64,
) -> Option<String> {
    next_event(stream, secs, |e| match &e.kind {
        Some(centralino_proto::v1::conversation_event::Kind::Assigned(a)) => {
            Some(a.agent_id.clone())
        }
        _ => None,
    })
    .await
}

/// Returns the services gRPC reflection lists at `addr`, sorted: over `grpc.reflection.v1`
/// and over `grpc.reflection.v1alpha` (what older tools such as Python's grpcio-reflection
/// ask).
pub async fn reflected_services(addr: std::net::SocketAddr) -> (Vec<String>, Vec<String>) {
    use tonic_reflection::pb::{v1, v1alpha};
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let answer = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection v1")
        .into_inner()
        .next()
        .await
        .expect("a v1 answer")
        .expect("v1 list");
    let mut listed_v1: Vec<String> = match answer.message_response {
        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("reflection v1 answered {other:?}"),
    };
    listed_v1.sort();

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let answer = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection v1alpha")
        .into_inner()
        .next()
        .await
        .expect("a v1alpha answer")
        .expect("v1alpha list");
    let mut listed_v1alpha: Vec<String> = match answer.message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("reflection v1alpha answered {other:?}"),
    };
    listed_v1alpha.sort();
    (listed_v1, listed_v1alpha)
}

/// Returns a loopback port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Returns the body of `GET /metrics` at `addr` (Prometheus text format), waiting up to
/// 10 s for the exporter to listen.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("metrics exporter at {addr}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // HTTP/1.0: the answer is not chunked and ends with the connection.
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send the scrape");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read the scrape");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}
