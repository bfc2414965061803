//! Test harness: a standalone node on loopback with a small configuration, and gRPC clients
//! for customers, agents and operators.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, AgentCommand, AgentEvent, ConversationEvent, Login,
    StartConversationRequest, StartConversationResponse, StreamEventsRequest,
};
use centralino_router::config::Config;
use centralino_router::standalone::{self, RunningNode, StoreChoice};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Admin token of the test configuration.
pub const ADMIN: &str = "test-admin";

/// A small shop: two departments, Italian and English agents. `extra` is appended.
pub fn config_text(extra: &str) -> String {
    format!(
        r#"
[node]
grpc_addr = "127.0.0.1:0"
metrics_addr = ""
admin_token = "{ADMIN}"
actor_threads = 2

[desk]
offer_timeout_secs = 2
max_missed_offers = 2
disconnect_grace_secs = 2
wrap_up_secs = 0

[routing]
sticky_wait_secs = 2
rating_window_secs = 30

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
    Config::from_toml(&config_text(extra), Vec::new()).expect("test configuration")
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

/// Starts a node with the embedded store in `dir`.
pub async fn start_durable(mut config: Config, dir: &Path) -> RunningNode {
    config.node.data_dir = dir.to_path_buf();
    standalone::start(config).await.expect("node starts")
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
            .send(AgentCommand { kind: Some(kind) })
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
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent_id.to_string(),
            password: password.to_string(),
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

/// Starts a conversation.
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
