//! One process with a router, an agent-node and the embedded store (the newcomer's
//! default). The same actors run in cluster mode; only the store and the links differ.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use centralino_agent_node::gateway::AgentDeskService;
use centralino_agent_node::node::AgentNode;
use centralino_base::clock::{self, SharedClock};
use centralino_base::server::{GrpcServer, Listener, ServerError};
use centralino_link::AgentNodeLink;
use centralino_proto::v1::admin_server::AdminServer;
use centralino_proto::v1::agent_desk_server::AgentDeskServer;
use centralino_proto::v1::conversation_service_server::ConversationServiceServer;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

use centralino_core::config::Config;
use centralino_core::dispatch::Dispatch;
use centralino_core::ingress::{AdminApi, CustomerApi};
use centralino_core::metrics;
use centralino_core::recovery::{adopt_partition, Adopted};
use centralino_core::router::Router;
use centralino_core::shared::SharedParts;
use centralino_core::store::archive::{run_retention, Archive};
use centralino_core::store::embedded::EmbeddedStore;
use centralino_core::store::events::IntegrationLog;
use centralino_core::store::group_commit::{CommitLimits, GroupCommit};
use centralino_core::store::profiles::run_profile_migration;
use centralino_core::store::{Instrumented, MemoryStore, Store};
use centralino_record::Record;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration value.
    #[error("configuration: {0}")]
    Config(String),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] centralino_core::store::StoreError),
    /// The gRPC listener could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The metrics exporter could not start.
    #[error("metrics exporter: {0}")]
    Metrics(String),
    /// The system of record could not be opened or reached.
    #[error("record: {0}")]
    Record(#[from] centralino_record::RecordError),
}

/// Where the node keeps its data.
#[derive(Clone)]
pub enum StoreChoice {
    /// The embedded store in `node.data_dir` (default), with the record inside its file.
    Embedded,
    /// Memory only (benchmarks, tests that need no restart): store and record.
    Memory,
    /// A store the caller built (tests: a fault-injecting twin around the memory or the
    /// embedded store); archives stay in memory.
    Custom(Arc<dyn Store>),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreChoice::Embedded => "Embedded",
            StoreChoice::Memory => "Memory",
            StoreChoice::Custom(_) => "Custom",
        })
    }
}

/// A running standalone node.
pub struct RunningNode {
    /// Bound gRPC address (useful with port 0).
    pub grpc_addr: SocketAddr,
    /// Bound metrics address, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The node's clock.
    pub clock: SharedClock,
    /// Shared router state (tests and benchmarks look inside).
    pub router: Arc<Router>,
    /// The agent-node part.
    pub agents: Arc<AgentNode>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    arbiters: Vec<Arbiter>,
}

impl RunningNode {
    /// Stops serving, flushes the store and stops the actor threads.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Open streams (desktops, customers) would hold a graceful stop: cut them after a
        // moment.
        let mut server = self.server;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        for arbiter in self.arbiters {
            arbiter.stop();
        }
        // The store closes when the last holder lets go: the batcher after its final flush,
        // the actors as their threads stop.
        let store = Arc::downgrade(&self.router.shared.store);
        drop(self.router);
        drop(self.agents);
        let deadline = tokio::time::Instant::now() + STORE_RELEASE;
        while store.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if store.strong_count() > 0 {
            warn!("the store is still held after shutdown");
        }
    }
}

/// How long open streams may keep the gRPC server up during a shutdown.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Partitions of the conversation space (cluster mode); a standalone node owns them all.
pub use centralino_core::store::records::PARTITIONS;
/// Simulated time between two updates of the team metrics (shift, duty time).
pub(crate) const TEAM_TICK: Duration = Duration::from_secs(10);

/// How long a shutdown waits for the store to be released.
const STORE_RELEASE: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Result<(), String>> = OnceLock::new();

/// Installs the Prometheus recorder with its HTTP listener (once per process: a second node
/// in the same process shares the first one's listener and buckets). The wait histogram gets
/// a bucket at `service_level_secs`.
pub(crate) fn install_metrics(addr: SocketAddr, service_level_secs: u64) -> Result<(), StartError> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .with_http_listener(addr)
                .set_buckets_for_metric(
                    Matcher::Full("centralino_conversation_wait_seconds".into()),
                    &metrics::wait_buckets(service_level_secs),
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("centralino_routing_decision_seconds".into()),
                        metrics::LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("centralino_store_commit_seconds".into()),
                        metrics::LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("centralino_store_request_seconds".into()),
                        metrics::LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("centralino_store_batch_ops".into()),
                        metrics::BATCH_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("centralino_webhook_delivery_seconds".into()),
                        metrics::WEBHOOK_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_seconds".into()),
                        metrics::WAIT_BUCKETS,
                    )
                })
                .map_err(|e| e.to_string())?;
            builder.install().map_err(|e| e.to_string())?;
            metrics::describe();
            centralino_agent_node::metrics::describe();
            Ok(())
        })
        .clone()
        .map_err(StartError::Metrics)
}

/// Starts a node from `config` with the embedded store. Must run inside an actix `System`
/// on a multi-thread tokio runtime (`actix::System::with_tokio_rt`).
pub async fn start(config: Config) -> Result<RunningNode, StartError> {
    start_with(config, StoreChoice::Embedded).await
}

/// Starts a node from `config` with the chosen store.
pub async fn start_with(
    config: Config,
    store_choice: StoreChoice,
) -> Result<RunningNode, StartError> {
    let clock = clock::from_config(&config.clock).map_err(StartError::Config)?;
    start_with_clock(config, store_choice, clock).await
}

/// Starts a node from `config` with the chosen store on `clock` instead of the clock the
/// configuration describes (tests drive a `ManualClock`).
pub async fn start_with_clock(
    config: Config,
    store_choice: StoreChoice,
    clock: SharedClock,
) -> Result<RunningNode, StartError> {
    // Customer identity secrets (issue 10): placeholders only in dev mode.
    // Agents' and operators' credentials likewise (every problem at once).
    let mut problems = config.identity.secret_problems(config.node.dev_mode, false);
    problems.extend(config.credential_problems());
    if !problems.is_empty() {
        return Err(StartError::Config(format!("\n  {}", problems.join("\n  "))));
    }
    centralino_base::oidc::check_jwks_url(&config.oidc)
        .await
        .map_err(StartError::Config)?;
    let config = Arc::new(config);
    let metrics_addr = if config.node.metrics_addr.is_empty() {
        None
    } else {
        let addr: SocketAddr = config
            .node
            .metrics_addr
            .parse()
            .map_err(|e| StartError::Config(format!("node.metrics_addr: {e}")))?;
        install_metrics(addr, config.routing.service_level_secs)?;
        Some(addr)
    };
    // The record (closed conversations …) lives in the embedded store's file, so that a
    // retirement archives and removes the live keys in one transaction; `[record]
    // postgres_url` is cluster mode's.
    if !config.record.postgres_url.is_empty() {
        info!(
            "standalone: the record is kept in the embedded store; record.postgres_url is not used"
        );
    }
    let (store, archive): (Arc<dyn Store>, Archive) = match store_choice {
        StoreChoice::Embedded => {
            let embedded = EmbeddedStore::open(&config.node.data_dir)?;
            let archive = Archive::in_store_file(&embedded)?;
            (Arc::new(Instrumented::new(embedded)), archive)
        }
        StoreChoice::Memory => (Arc::new(MemoryStore::default()), Archive::memory()?),
        StoreChoice::Custom(store) => (Arc::new(Instrumented::new(store)), Archive::memory()?),
    };
    let (stop, stop_rx) = watch::channel(false);
    let commits = GroupCommit::with_limits(
        store.clone(),
        CommitLimits::from_config(&config.limits),
        stop_rx.clone(),
    );

    let threads = match config.node.actor_threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();

    let agent_node = AgentNode::new(config.agent_node(), clock.clone(), handles.clone());
    // One record for the archive, the profiles and the outbox.
    let record: Arc<dyn Record> = archive.record().clone();
    // The agent directory: the configuration file seeds an empty record, then the record
    // is the source of truth; the follower applies every change to the node's live view.
    centralino_agent_node::directory::seed(
        &record,
        centralino_core::directory::seed_entries(&config),
        clock.now_ms(),
    )
    .await?;
    let directory = agent_node.directory().clone();
    drop(
        centralino_agent_node::directory::follow(
            record.clone(),
            directory.clone(),
            stop_rx.clone(),
        )
        .await,
    );
    agent_node.apply_directory();
    drop(agent_node.watch_directory(stop_rx.clone()));
    let events = Arc::new(IntegrationLog::new(record.clone()));
    let router = Router::new(SharedParts {
        config: config.clone(),
        clock: clock.clone(),
        store: store.clone(),
        commits,
        archive: archive.clone(),
        agents: agent_node.clone() as Arc<dyn AgentNodeLink>,
        shifts: agent_node.shifts().clone(),
        events,
        record,
        directory,
        arbiters: handles.clone(),
    });
    router.start_missing_queues();
    // Departments created at run time get their queue within a second of the change.
    let (queues_for, mut directory_changes, mut stop_queues) = (
        router.clone(),
        router.shared.directory.subscribe(),
        stop_rx.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = directory_changes.changed() => if changed.is_err() { return },
                _ = stop_queues.wait_for(|s| *s) => return,
            }
            for department in queues_for.start_missing_queues() {
                info!(%department, "queue of a new department started");
            }
        }
    });
    let dispatch = Dispatch::new(router.clone());
    agent_node.set_router(dispatch.clone());
    if metrics_addr.is_some() {
        metrics::zero(&config);
        let departments: Vec<String> = config.departments.iter().map(|d| d.name.clone()).collect();
        centralino_agent_node::metrics::zero(&config.teams, &departments);
        metrics::standalone_cluster(PARTITIONS);
    }
    // The first tick now, not on the ticker's schedule: the teams' gauges (open, on duty)
    // are in the very first scrape.
    dispatch.tick();
    let mut stop_ticker = stop_rx.clone();
    let tick = clock
        .wall(TEAM_TICK)
        .clamp(Duration::from_millis(50), TEAM_TICK);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = interval.tick() => dispatch.tick(),
                _ = stop_ticker.wait_for(|s| *s) => break,
            }
        }
    });

    recover(&router, &agent_node).await?;
    tokio::spawn(run_profile_migration(
        router.shared.store.clone(),
        router.shared.commits.clone(),
        router.shared.record.clone(),
        stop_rx.clone(),
    ));
    tokio::spawn(run_retention(
        router.shared.archive.clone(),
        router.shared.clock.clone(),
        config.record.retention_days,
        stop_rx.clone(),
    ));
    // Webhooks: this process alone opens the embedded record, so it holds every claim.
    drop(
        centralino_core::webhooks::start(
            &config.webhooks,
            config.node.dev_mode,
            router.shared.record.clone(),
            centralino_core::webhooks::delivery::STANDALONE_HOLDER,
            stop_rx.clone(),
        )
        .map_err(StartError::Config)?,
    );

    let public_files = config.tls.files().map_err(StartError::Config)?;
    centralino_base::server::check_plaintext(
        "node.grpc_addr",
        &config.node.grpc_addr,
        public_files.is_some(),
        config.node.insecure,
    )
    .map_err(StartError::Config)?;
    let public_tls = public_files
        .map(centralino_base::tls::ServerTls::load)
        .transpose()
        .map_err(|e| StartError::Config(format!("tls: {e}")))?;
    let listener = Listener::bind(&config.node.grpc_addr).await?;
    let grpc_addr = listener.local_addr();
    let mut stop_server = stop_rx.clone();
    // One instance of each service behind both transports (gRPC and JSON), so they share
    // the rate limits and stream counts.
    let customers = Arc::new(CustomerApi::new(router.clone()));
    let admin = Arc::new(AdminApi::with_oidc(
        router.clone(),
        agent_node.clone(),
        agent_node.oidc(),
    ));
    let desk = AgentDeskService::new(agent_node.clone());
    let web = centralino_web::Web::new(&config.web)
        .customer(customers.clone())
        .admin(admin.clone())
        .desk(Arc::new(desk.clone()));
    let server = GrpcServer::new()
        .tls(public_tls)
        .describe(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .public(ConversationServiceServer::from_arc(customers))
        .public(AgentDeskServer::new(desk))
        .public(AdminServer::from_arc(admin))
        .web(Box::new(move |grpc| web.wrap(grpc)))
        .start(listener, async move {
            let _ = stop_server.wait_for(|s| *s).await;
        })
        .await?;
    info!(%grpc_addr, metrics = ?metrics_addr, data_dir = %config.node.data_dir.display(), "centralino node listening");
    if config.web.pages {
        info!(
            shop = %format!("http://{grpc_addr}/"),
            console = %format!("http://{grpc_addr}/console"),
            wallboard = %format!("http://{grpc_addr}/wallboard"),
            "pages served (https:// when [tls] is set)"
        );
    }
    Ok(RunningNode {
        grpc_addr,
        metrics_addr,
        clock,
        router,
        agents: agent_node,
        stop,
        server,
        arbiters,
    })
}

/// Rebuilds conversation actors from the store after a restart: a standalone node adopts
/// every partition, through the same code as a cluster router's failover. Agents get back
/// the conversations they held when they log in again.
async fn recover(router: &Arc<Router>, agents: &Arc<AgentNode>) -> Result<(), StartError> {
    let mut adopted = Adopted::default();
    for p in 0..PARTITIONS {
        adopted.merge(adopt_partition(router, p).await?);
    }
    for (agent, conversations) in adopted.assigned {
        if let Err(status) = agents.restore(&agent, conversations) {
            warn!(%agent, %status, "cannot restore conversations of an agent");
        }
    }
    if adopted.restored + adopted.archived > 0 {
        info!(
            restored = adopted.restored,
            archived = adopted.archived,
            "conversations restored from the store"
        );
    }
    Ok(())
}
