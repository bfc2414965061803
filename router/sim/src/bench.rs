//! Benchmarks behind `centralino bench`: routing decisions, end-to-end throughput over gRPC,
//! memory per live conversation, and a plain tonic unary call as the transport's ceiling.
//! Each figure is measured against a baseline in the same run (the machines are shared).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use centralino_base::server::{GrpcServer, Listener};
use centralino_base::test_pki::Pki;
use centralino_base::tls::{ClientTls, PeerRole};
use centralino_link::Availability;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, AgentCommand, AgentStatus, Login, StartConversationRequest,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use centralino_core::config::{Config, Strategy};
use centralino_core::routing::{language_skill, AgentPool, Requirement};
use centralino_router::standalone::{self, StoreChoice};

const LANGUAGES: [&str; 5] = ["it", "en", "de", "fr", "es"];

/// Result of the routing-decision benchmark.
#[derive(Debug, Serialize)]
pub struct RoutingResult {
    /// Agents in the view.
    pub agents: usize,
    /// Distinct skills (languages included).
    pub skills: usize,
    /// Queued conversations decided in turn.
    pub queued: usize,
    /// Decisions per second with the indexed pool (one thread).
    pub indexed_per_sec: f64,
    /// Decisions per second of a linear scan over every agent (the baseline).
    pub linear_per_sec: f64,
    /// Share of decisions that found an agent.
    pub found_ratio: f64,
}

struct Conv {
    department: usize,
    language: &'static str,
    min: u8,
}

fn random_agents(rng: &mut StdRng, agents: usize, product_skills: usize) -> Vec<Availability> {
    (0..agents)
        .map(|i| {
            let mut skills = std::collections::BTreeMap::new();
            skills.insert(
                language_skill(LANGUAGES[rng.random_range(0..LANGUAGES.len())]),
                rng.random_range(3..=5),
            );
            if rng.random_bool(0.3) {
                skills.insert(
                    language_skill(LANGUAGES[rng.random_range(0..LANGUAGES.len())]),
                    rng.random_range(1..=5),
                );
            }
            for _ in 0..5 {
                skills.insert(
                    format!("skill-{}", rng.random_range(0..product_skills)),
                    rng.random_range(1..=5),
                );
            }
            let capacity = rng.random_range(2..=5);
            Availability {
                agent_id: format!("agent-{i}"),
                version: 1,
                team: "bench".into(),
                status: if rng.random_bool(0.9) {
                    AgentStatus::Available
                } else {
                    AgentStatus::Away
                },
                capacity,
                load: rng.random_range(0..=capacity),
                skills: Arc::new(skills),
                idle_since_ms: rng.random_range(0..1_000_000),
                display_name: String::new(),
                on_shift: true,
            }
        })
        .collect()
}

/// Measures routing decisions per second with `agents` agents, `skills` skills and
/// `queued` conversations, for `duration` per variant, on the calling thread.
pub fn routing(
    agents: usize,
    skills: usize,
    queued: usize,
    duration: Duration,
    seed: u64,
) -> RoutingResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let product_skills = skills.saturating_sub(LANGUAGES.len()).max(1);
    let all = random_agents(&mut rng, agents, product_skills);
    let mut pools: Vec<AgentPool> = (0..product_skills)
        .map(|d| AgentPool::new(Strategy::LongestIdle, format!("skill-{d}")))
        .collect();
    for pool in &mut pools {
        for a in &all {
            pool.update(a.clone());
        }
    }
    let convs: Vec<Conv> = (0..queued)
        .map(|_| Conv {
            department: rng.random_range(0..product_skills),
            language: LANGUAGES[rng.random_range(0..LANGUAGES.len())],
            min: rng.random_range(1..=3),
        })
        .collect();

    let mut found = 0u64;
    let mut decisions = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for c in &convs {
            let pick = pools[c.department].select(
                &Requirement {
                    language: c.language,
                    min_proficiency: c.min,
                    extra_skill: None,
                },
                &[],
            );
            found += pick.is_some() as u64;
        }
        decisions += convs.len() as u64;
    }
    let indexed_per_sec = decisions as f64 / started.elapsed().as_secs_f64();
    let found_ratio = found as f64 / decisions.max(1) as f64;

    // Baseline: scan every agent and keep the longest idle qualified one.
    let mut decisions = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for c in &convs {
            let dept = format!("skill-{}", c.department);
            let lang = language_skill(c.language);
            let best = all
                .iter()
                .filter(|a| {
                    a.has_free_slot()
                        && a.skills.get(&lang).copied().unwrap_or(0) >= c.min
                        && a.skills.get(&dept).copied().unwrap_or(0) >= c.min
                })
                .min_by_key(|a| a.idle_since_ms);
            std::hint::black_box(best);
        }
        decisions += convs.len() as u64;
    }
    let linear_per_sec = decisions as f64 / started.elapsed().as_secs_f64();
    RoutingResult {
        agents,
        skills,
        queued,
        indexed_per_sec,
        linear_per_sec,
        found_ratio,
    }
}

/// Result of a gRPC throughput run.
#[derive(Debug, Serialize)]
pub struct ThroughputResult {
    /// What was measured.
    pub workload: String,
    /// Operations completed.
    pub operations: usize,
    /// Operations per second.
    pub per_sec: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn bench_config(
    agents: usize,
    capacity: u32,
    data_dir: &std::path::Path,
) -> Result<Config, String> {
    let mut text = format!(
        r#"
[node]
grpc_addr = "127.0.0.1:0"
metrics_addr = ""
admin_token = "bench"
dev_mode = true
data_dir = "{}"
[limits]
max_queue_length = 1000000
max_live_conversations = 1000000
# load from one address: no rate limits
starts_per_minute_per_addr = 0
starts_per_minute_per_customer = 0
messages_per_minute_per_addr = 0
messages_per_minute_per_conversation = 0
# every agent logs in from this one address
logins_per_minute_per_addr = 0
[[departments]]
name = "bench"
auto_accept = true
[[teams]]
name = "bench"
language = "it"
[identity]
visitor_secret = "hex:{}"
"#,
        data_dir.display(),
        // One visitor key for the routers of a cluster run (customers are anonymous).
        uuid::Uuid::new_v4().simple().to_string().repeat(2)
    );
    for i in 0..agents {
        text.push_str(&format!(
            "[[agents]]\nid = \"a{i}\"\nname = \"A{i}\"\npassword = \"pw\"\nteam = \"bench\"\ncapacity = {capacity}\nskills = {{ \"lang:it\" = 5, bench = 5 }}\n"
        ));
    }
    Config::from_toml(&text, Vec::new()).map_err(|e| e.to_string())
}

pub(crate) async fn connect(addr: std::net::SocketAddr) -> Result<Channel, String> {
    connect_with(addr, None).await
}

/// Connects to `addr`, over TLS (rustls, the servers' CA) when `tls` is given; no request
/// timeout, since desk sessions are long streams.
pub(crate) async fn connect_with(
    addr: std::net::SocketAddr,
    tls: Option<&ClientTls>,
) -> Result<Channel, String> {
    let endpoint = Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true);
    let Some(tls) = tls else {
        return endpoint.connect().await.map_err(|e| e.to_string());
    };
    let tls = tls.clone();
    let target = addr.to_string();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let tls = tls.clone();
            let target = target.clone();
            async move { tls.connect(&target).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .map_err(|e| e.to_string())
}

/// A test CA, the node's server certificate (configured as its public `[tls]`) and a
/// client that trusts the CA: the TLS variant of the end-to-end benchmark.
struct BenchTls {
    _pki: Pki,
    client: ClientTls,
}

impl BenchTls {
    fn configure(config: &mut Config) -> Result<Self, String> {
        let pki = Pki::new();
        // The project's rustls client checks the chain and that the certificate names a
        // centralino identity; the handshake and record costs are those of any TLS client.
        let server = pki.node(PeerRole::Router, "bench-node");
        config.tls.cert_file = server.cert_file.display().to_string();
        config.tls.key_file = server.key_file.display().to_string();
        let client = ClientTls::load(pki.issue("bench-client", None), None)
            .map_err(|e| format!("client TLS: {e}"))?;
        Ok(Self { _pki: pki, client })
    }
}

/// Starts `conversations` conversations with `concurrency` callers against a standalone
/// node whose auto-accepting agents take them; measures start-to-offer latency at the agents.
/// Must run inside an actix system.
pub async fn end_to_end(
    conversations: usize,
    concurrency: usize,
    store: StoreChoice,
    tls: bool,
) -> Result<ThroughputResult, String> {
    let agents = 200usize;
    let capacity = (conversations.div_ceil(agents) as u32 + 1).min(64);
    if agents as u64 * capacity as u64 <= conversations as u64 {
        return Err(format!(
            "at most {} conversations",
            agents as u32 * 64 - agents as u32
        ));
    }
    let dir = std::env::temp_dir().join(format!(
        "centralino-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = bench_config(agents, capacity, &dir)?;
    let tls = match tls {
        true => Some(BenchTls::configure(&mut config)?),
        false => None,
    };
    let client_tls = tls.as_ref().map(|t| &t.client);
    let durable = matches!(store, StoreChoice::Embedded);
    let node = standalone::start_with(config, store)
        .await
        .map_err(|e| e.to_string())?;
    let (desks, mut offer_rx) = log_in_agents_with(&[node.grpc_addr], agents, client_tls).await?;
    // Let every agent's availability reach the queue.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let channels: Vec<Channel> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(connect_with(node.grpc_addr, client_tls).await?);
        }
        v
    };
    let (elapsed, latencies) =
        drive_starts(&channels, &mut offer_rx, conversations, concurrency, "c").await;
    drop(desks);
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ThroughputResult {
        workload: format!(
            "start + auto-accepted offer, {} store, {concurrency} callers{}",
            if durable {
                "embedded (fsync)"
            } else {
                "memory"
            },
            if tls.is_some() { ", TLS" } else { "" }
        ),
        operations: latencies.len(),
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

/// The transport's ceiling: `calls` unary `grpc.health.v1.Health/Check` calls with
/// `concurrency` callers against a tonic server that does nothing else.
pub async fn unary_echo(calls: usize, concurrency: usize) -> Result<ThroughputResult, String> {
    let listener = Listener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr();
    let server = GrpcServer::new()
        .start(listener, std::future::pending())
        .await
        .map_err(|e| e.to_string())?;
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(connect(addr).await?);
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let begin = Instant::now();
    let mut callers = Vec::new();
    for c in 0..concurrency {
        let mut client = tonic_health::pb::health_client::HealthClient::new(
            channels[c % channels.len()].clone(),
        );
        let next = next.clone();
        callers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < calls {
                let t = Instant::now();
                if client
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for caller in callers {
        latencies.extend(caller.await.unwrap_or_default());
    }
    let elapsed = begin.elapsed().as_secs_f64();
    server.abort();
    latencies.sort_by(f64::total_cmp);
    Ok(ThroughputResult {
        workload: format!("tonic unary health check, {concurrency} callers"),
        operations: latencies.len(),
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    })
}

/// Result of the memory benchmark.
#[derive(Debug, Serialize)]
pub struct MemoryResult {
    /// Live conversations created.
    pub conversations: usize,
    /// Resident memory before (MiB).
    pub rss_before_mib: f64,
    /// Resident memory after (MiB).
    pub rss_after_mib: f64,
    /// Bytes per live conversation.
    pub bytes_per_conversation: f64,
}

/// Returns the process's resident set size in bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Creates `conversations` queued conversations through gRPC (embedded store, no agents)
/// and reports the growth of resident memory per conversation.
pub async fn memory(conversations: usize, concurrency: usize) -> Result<MemoryResult, String> {
    let dir = std::env::temp_dir().join(format!(
        "centralino-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = bench_config(1, 1, &dir)?;
    config.limits.max_queue_length = conversations + 1;
    config.limits.max_live_conversations = conversations + 1;
    // The embedded store keeps records on disk, so what grows is the live state.
    let node = standalone::start_with(config, StoreChoice::Embedded)
        .await
        .map_err(|e| e.to_string())?;
    let channel = connect(node.grpc_addr).await?;
    // Warm up allocator and connection.
    let mut client = ConversationServiceClient::new(channel.clone());
    for i in 0..100 {
        let _ = client
            .start_conversation(StartConversationRequest {
                department: "bench".into(),
                language: "it".into(),
                customer_id: format!("warm{i}"),
                ..Default::default()
            })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..concurrency {
        let mut client = ConversationServiceClient::new(channel.clone());
        let next = next.clone();
        callers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= conversations {
                    break;
                }
                let request = StartConversationRequest {
                    department: "bench".into(),
                    language: "it".into(),
                    customer_id: format!("customer-{i:08}"),
                    display_name: "Maria Rossi".into(),
                    ..Default::default()
                };
                if client.start_conversation(request).await.is_err() {
                    break;
                }
            }
        }));
    }
    for caller in callers {
        let _ = caller.await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = node.router.live_conversations();
    let after = rss_bytes();
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(MemoryResult {
        conversations: live,
        rss_before_mib: before as f64 / (1024.0 * 1024.0),
        rss_after_mib: after as f64 / (1024.0 * 1024.0),
        bytes_per_conversation: after.saturating_sub(before) as f64 / live.max(1) as f64,
    })
}

/// Which benchmarks `centralino bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Routing decisions.
    Routing,
    /// End to end over gRPC (and the unary ceiling).
    EndToEnd,
    /// Memory per live conversation.
    Memory,
    /// All of them.
    All,
}

/// Every result of one `centralino bench` run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Routing decisions.
    pub routing: Option<RoutingResult>,
    /// Plain tonic unary calls (the transport's ceiling).
    pub unary_ceiling: Option<ThroughputResult>,
    /// End to end with the embedded store.
    pub end_to_end_embedded: Option<ThroughputResult>,
    /// End to end with the memory store.
    pub end_to_end_memory: Option<ThroughputResult>,
    /// End to end with the embedded store, customers and desktops over TLS.
    pub end_to_end_embedded_tls: Option<ThroughputResult>,
    /// End to end with the memory store, over TLS.
    pub end_to_end_memory_tls: Option<ThroughputResult>,
    /// Memory per live conversation.
    pub memory: Option<MemoryResult>,
}

/// Runs the chosen benchmarks and prints each result as it comes. Must run inside an
/// actix system.
pub async fn run(which: Which, conversations: usize, concurrency: usize) -> Result<Report, String> {
    let mut report = Report::default();
    let all = which == Which::All;
    if all || which == Which::Routing {
        let r =
            tokio::task::spawn_blocking(|| routing(10_000, 50, 1_000, Duration::from_secs(3), 7))
                .await
                .map_err(|e| e.to_string())?;
        println!(
            "routing: {} agents, {} skills, {} queued: {:.0} decisions/s indexed, {:.0}/s linear scan ({:.0}x)",
            r.agents,
            r.skills,
            r.queued,
            r.indexed_per_sec,
            r.linear_per_sec,
            r.indexed_per_sec / r.linear_per_sec.max(1.0)
        );
        report.routing = Some(r);
    }
    if all || which == Which::EndToEnd {
        let print = |r: &ThroughputResult| {
            println!(
                "{}: {} ops, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                r.workload, r.operations, r.per_sec, r.p50_ms, r.p99_ms
            )
        };
        let ceiling = unary_echo(conversations * 2, concurrency).await?;
        print(&ceiling);
        report.unary_ceiling = Some(ceiling);
        // Plaintext and TLS runs alternate, so that both see the same machine.
        let embedded = end_to_end(conversations, concurrency, StoreChoice::Embedded, false).await?;
        print(&embedded);
        report.end_to_end_embedded = Some(embedded);
        let embedded = end_to_end(conversations, concurrency, StoreChoice::Embedded, true).await?;
        print(&embedded);
        report.end_to_end_embedded_tls = Some(embedded);
        let memory = end_to_end(conversations, concurrency, StoreChoice::Memory, false).await?;
        print(&memory);
        report.end_to_end_memory = Some(memory);
        let memory = end_to_end(conversations, concurrency, StoreChoice::Memory, true).await?;
        print(&memory);
        report.end_to_end_memory_tls = Some(memory);
    }
    if all || which == Which::Memory {
        let r = memory(100_000, concurrency).await?;
        println!(
            "memory: {} live conversations, RSS {:.1} -> {:.1} MiB, {:.0} bytes per conversation",
            r.conversations, r.rss_before_mib, r.rss_after_mib, r.bytes_per_conversation
        );
        report.memory = Some(r);
    }
    Ok(report)
}

/// How long the load driver waits for the next offer before it gives up on the rest.
const OFFER_PATIENCE: Duration = Duration::from_secs(15);
/// The longest a load run may take.
const RUN_BUDGET: Duration = Duration::from_secs(180);

/// The load driver of the end-to-end benchmarks: `concurrency` callers start
/// `conversations` conversations (customer ids `<tag><n>`) over `channels`, and the offers
/// arriving on `offers` (customer name, arrival) close each one's start-to-offer latency.
/// Returns the run's duration in seconds and the latencies in ms, sorted.
pub(crate) async fn drive_starts(
    channels: &[Channel],
    offers: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    conversations: usize,
    concurrency: usize,
    tag: &str,
) -> (f64, Vec<f64>) {
    let started_at: Arc<Mutex<HashMap<String, Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(conversations)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let begin = Instant::now();
    let mut callers = Vec::new();
    for c in 0..concurrency {
        let mut client = ConversationServiceClient::new(channels[c % channels.len()].clone());
        let next = next.clone();
        let started_at = started_at.clone();
        let tag = tag.to_string();
        callers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= conversations {
                    break;
                }
                let key = format!("{tag}{i}");
                started_at.lock().insert(key.clone(), Instant::now());
                let request = StartConversationRequest {
                    department: "bench".into(),
                    language: "it".into(),
                    customer_id: key.clone(),
                    display_name: key,
                    ..Default::default()
                };
                if client.start_conversation(request).await.is_err() {
                    break;
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(conversations);
    let deadline = Instant::now() + RUN_BUDGET;
    while latencies.len() < conversations && Instant::now() < deadline {
        match tokio::time::timeout(OFFER_PATIENCE, offers.recv()).await {
            Ok(Some((key, at))) => {
                if let Some(start) = started_at.lock().get(&key) {
                    latencies.push(at.duration_since(*start).as_secs_f64() * 1000.0);
                }
            }
            _ => break,
        }
    }
    let elapsed = begin.elapsed().as_secs_f64();
    for caller in callers {
        let _ = caller.await;
    }
    latencies.sort_by(f64::total_cmp);
    (elapsed, latencies)
}

/// Logs agents `a0`…`a<count-1>` in over `AgentDesk/Session` (agent i on node i mod the
/// number of nodes); returns their command senders (dropping one ends its session) and a
/// channel of (customer name, arrival) for every offer they receive.
pub(crate) async fn log_in_agents(
    nodes: &[SocketAddr],
    count: usize,
) -> Result<
    (
        Vec<mpsc::Sender<AgentCommand>>,
        mpsc::UnboundedReceiver<(String, Instant)>,
    ),
    String,
> {
    log_in_agents_with(nodes, count, None).await
}

/// [`log_in_agents`] over TLS when `tls` is given.
pub(crate) async fn log_in_agents_with(
    nodes: &[SocketAddr],
    count: usize,
    tls: Option<&ClientTls>,
) -> Result<
    (
        Vec<mpsc::Sender<AgentCommand>>,
        mpsc::UnboundedReceiver<(String, Instant)>,
    ),
    String,
> {
    let (offer_tx, offer_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let mut desks = Vec::new();
    for i in 0..count {
        let channel = connect_with(nodes[i % nodes.len()], tls).await?;
        let mut client = AgentDeskClient::new(channel);
        let (tx, rx) = mpsc::channel(4);
        tx.send(AgentCommand {
            request_id: String::new(),
            kind: Some(agent_command::Kind::Login(Login {
                agent_id: format!("a{i}"),
                password: "pw".into(),
                ..Default::default()
            })),
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut events = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let offers = offer_tx.clone();
        desks.push(tx);
        tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                if let Some(agent_event::Kind::Offer(o)) = event.kind {
                    let _ = offers.send((o.customer_display_name, Instant::now()));
                }
            }
        });
    }
    Ok((desks, offer_rx))
}
