//! A router of a cluster (`router --config FILE` with `[cluster] etcd_endpoints`): the same
//! conversation and queue actors as standalone mode, with etcd (or its in-memory twin, see
//! [`start_with`]) as the store, partitions claimed there, agents reached on their
//! agent-nodes over gRPC, and customer calls for other routers' conversations forwarded to
//! their owners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use centralino_base::clock::{self, SharedClock};
use centralino_base::directory::Directory;
use centralino_base::server::{check_plaintext, Access, GrpcServer, Listener};
use centralino_base::shifts::Shifts;
use centralino_base::tls::{own_identity, ClientTls, PeerRole, ServerTls};
use centralino_link::AgentNodeLink;
use centralino_membership::etcd::{Etcd, EtcdSecurity};
use centralino_membership::kv::Kv;
use centralino_membership::membership::{Member, Membership, Role};
use centralino_proto::v1::admin_server::AdminServer;
use centralino_proto::v1::conversation_service_server::ConversationServiceServer;
use centralino_proto::v1::router_internal_server::RouterInternalServer;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::standalone::{install_metrics, StartError, SHUTDOWN_GRACE, TEAM_TICK};
use centralino_cluster::admin::ClusterAdminApi;
use centralino_cluster::agents::{run_feed, ClusterAgentAdmin, RemoteAgents};
use centralino_cluster::fenced_store::{FencedStore, Fences};
use centralino_cluster::partitions::{ClusterView, Partitions};
use centralino_cluster::peer::{Claims, ClusterCustomerApi, InternalApi};
use centralino_core::config::Config;
use centralino_core::dispatch::Dispatch;
use centralino_core::ingress::AdminApi;
use centralino_core::metrics;
use centralino_core::router::Router;
use centralino_core::shared::{Placement, SharedParts};
use centralino_core::store::archive::{run_retention, Archive};
use centralino_core::store::events::IntegrationLog;
use centralino_core::store::group_commit::{CommitLimits, GroupCommit, DEFAULT_MAX_OPS};
use centralino_core::store::profiles::run_profile_migration;
use centralino_core::store::{Instrumented, Store};
use centralino_record::{MemoryRecord, PgRecord, Record, RecordError};

/// Concurrent calls on one internal connection (an agent-node's calls for all its agents).
const INTERNAL_MAX_STREAMS: u32 = 1024;

/// The TLS of a clustered router's listeners and channels.
struct Tls {
    public: Option<ServerTls>,
    internal: Option<ServerTls>,
    access: Access,
    routers: Option<ClientTls>,
    agent_nodes: Option<ClientTls>,
}

impl Tls {
    /// Reads `[tls]` and `[cluster.tls]`; refuses plaintext where it is not allowed and a
    /// certificate that does not name this router.
    fn from_config(config: &Config, node_id: &str) -> Result<Self, StartError> {
        let node = &config.node;
        let bad = |e: String| StartError::Config(e);
        if node.internal_addr.is_empty() {
            return Err(bad(
                "node.internal_addr: cluster mode needs the internal plane's address".into(),
            ));
        }
        if node.internal_addr == node.grpc_addr && !node.grpc_addr.ends_with(":0") {
            return Err(bad(
                "node.internal_addr: must differ from node.grpc_addr".into()
            ));
        }
        let public = config.tls.files().map_err(bad)?;
        let internal = config.cluster.internal_tls(node.dev_mode).map_err(bad)?;
        check_plaintext(
            "node.grpc_addr",
            &node.grpc_addr,
            public.is_some(),
            node.insecure,
        )
        .map_err(bad)?;
        check_plaintext(
            "node.internal_addr",
            &node.internal_addr,
            internal.is_some(),
            node.insecure,
        )
        .map_err(bad)?;
        let public = public
            .map(ServerTls::load)
            .transpose()
            .map_err(|e| bad(format!("tls: {e}")))?;
        let Some(files) = internal else {
            warn!("dev mode: the internal plane is plaintext and unauthenticated");
            return Ok(Self {
                public,
                internal: None,
                access: Access::Open,
                routers: None,
                agent_nodes: None,
            });
        };
        let cluster_tls = |e: centralino_base::tls::TlsError| bad(format!("cluster.tls: {e}"));
        own_identity(&files, PeerRole::Router, node_id).map_err(cluster_tls)?;
        Ok(Self {
            public,
            internal: Some(ServerTls::load(files.clone()).map_err(cluster_tls)?),
            access: Access::Mtls,
            routers: Some(
                ClientTls::load(files.clone(), Some(PeerRole::Router)).map_err(cluster_tls)?,
            ),
            agent_nodes: Some(
                ClientTls::load(files, Some(PeerRole::AgentNode)).map_err(cluster_tls)?,
            ),
        })
    }
}

/// A running clustered router.
pub struct ClusterRouter {
    /// Bound gRPC address (customers, admin).
    pub grpc_addr: SocketAddr,
    /// Bound address of the internal plane (`RouterInternal`, forwarded customer calls).
    pub internal_addr: SocketAddr,
    /// This router's node id.
    pub node_id: String,
    /// Shared router state.
    pub router: Arc<Router>,
    /// The node's clock.
    pub clock: SharedClock,
    membership: Arc<Membership>,
    health: tonic_health::server::HealthReporter,
    draining: watch::Sender<bool>,
    manager: Option<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    internal_server: tokio::task::JoinHandle<()>,
    arbiters: Vec<Arbiter>,
    drain_budget: Duration,
}

/// Starts a router of a cluster coordinated by etcd (`cluster.etcd_endpoints`). Must run
/// inside an actix `System` on a multi-thread runtime.
pub async fn start(config: Config) -> Result<ClusterRouter, StartError> {
    start_on_etcd(config, None).await
}

/// Starts a router as [`start`] does, its fenced store wrapped by `wrap` (see
/// [`start_wrapped`]).
pub async fn start_on_etcd(
    config: Config,
    wrap: Option<StoreWrap>,
) -> Result<ClusterRouter, StartError> {
    let problems = config.cluster.problems();
    if !problems.is_empty() {
        return Err(StartError::Config(problems.join("; ")));
    }
    let etcd = Etcd::connect_with(
        &config.cluster.etcd_endpoints,
        Duration::from_millis(config.cluster.request_timeout_ms),
        &EtcdSecurity::from_config(&config.cluster),
    )
    .await
    .map_err(|e| StartError::Config(format!("etcd: {e}")))?;
    start_wrapped(config, Arc::new(etcd), wrap).await
}

/// Starts a router as [`start`] does, on the system of record `record` instead of the one
/// `[record]` names (tests hand every router of a cluster the same PostgreSQL record).
pub async fn start_with_record(
    config: Config,
    record: Arc<dyn Record>,
) -> Result<ClusterRouter, StartError> {
    let etcd = Etcd::connect_with(
        &config.cluster.etcd_endpoints,
        Duration::from_millis(config.cluster.request_timeout_ms),
        &EtcdSecurity::from_config(&config.cluster),
    )
    .await
    .map_err(|e| StartError::Config(format!("etcd: {e}")))?;
    start_on(config, Arc::new(etcd), Some(record), None).await
}

/// Starts a router of the cluster coordinated by `kv` (etcd, or the in-memory twin of
/// in-process tests): membership, claims and the fenced records all live there;
/// `cluster.etcd_endpoints` is not used.
pub async fn start_with(config: Config, kv: Arc<dyn Kv>) -> Result<ClusterRouter, StartError> {
    start_wrapped(config, kv, None).await
}

/// Wraps the router's durable store (tests: a fault-injecting twin around the fenced
/// store, see `centralino_core::store::fault::FaultStore`).
pub type StoreWrap = Arc<dyn Fn(Arc<dyn Store>) -> Arc<dyn Store> + Send + Sync>;

/// Starts a router as [`start_with`] does, its fenced store wrapped by `wrap` (every
/// read and write of records goes through the wrapper; membership and claims do not).
pub async fn start_wrapped(
    config: Config,
    kv: Arc<dyn Kv>,
    wrap: Option<StoreWrap>,
) -> Result<ClusterRouter, StartError> {
    start_on(config, kv, None, wrap).await
}

/// Starts a router as [`start_with`] does, on `record` (or the default record), its store
/// wrapped by `wrap`.
async fn start_on(
    config: Config,
    kv: Arc<dyn Kv>,
    record: Option<Arc<dyn Record>>,
    wrap: Option<StoreWrap>,
) -> Result<ClusterRouter, StartError> {
    let mut problems = config.cluster.settings_problems();
    // Customer identity secrets (issue 10): placeholders only in dev mode, a shared
    // visitor secret on every router.
    problems.extend(config.identity.secret_problems(config.node.dev_mode, true));
    problems.extend(config.credential_problems());
    problems.extend(record_problem(&config));
    if !problems.is_empty() {
        return Err(StartError::Config(problems.join("; ")));
    }
    centralino_base::oidc::check_jwks_url(&config.oidc)
        .await
        .map_err(StartError::Config)?;
    let config = Arc::new(config);
    let node_id = centralino_base::process::node_id(&config.node.node_id, "router");
    let clock = clock::from_config(&config.clock).map_err(StartError::Config)?;
    if !config.node.metrics_addr.is_empty() {
        let addr: SocketAddr = config
            .node
            .metrics_addr
            .parse()
            .map_err(|e| StartError::Config(format!("node.metrics_addr: {e}")))?;
        install_metrics(addr, config.routing.service_level_secs)?;
        metrics::zero(&config);
        metrics::cluster_start();
    }
    let tls = Tls::from_config(&config, &node_id)?;
    let record = match record {
        Some(record) => record,
        None => connect_record(&config).await?,
    };
    let listener = Listener::bind(&config.node.grpc_addr).await?;
    let grpc_addr = listener.local_addr();
    let internal_listener = Listener::bind(&config.node.internal_addr).await?;
    let internal_addr = internal_listener.local_addr();
    let advertise = if config.node.advertise_internal_addr.is_empty() {
        internal_addr.to_string()
    } else {
        config.node.advertise_internal_addr.clone()
    };

    let cluster = &config.cluster;
    let (fences, lost) = Fences::new();
    let fenced: Arc<dyn Store> = Arc::new(FencedStore::new(
        kv.clone(),
        &cluster.prefix,
        fences.clone(),
    ));
    let fenced = match &wrap {
        Some(wrap) => wrap(fenced),
        None => fenced,
    };
    let store: Arc<dyn Store> = Arc::new(Instrumented::new(fenced));
    let (stop, stop_rx) = watch::channel(false);
    // etcd takes at most 128 operations and 1.5 MiB per transaction: batches stay under both.
    let commits = GroupCommit::with_limits(
        store.clone(),
        CommitLimits {
            max_ops: cluster.group_commit_max_ops.min(DEFAULT_MAX_OPS),
            ..CommitLimits::from_config(&config.limits)
        },
        stop_rx.clone(),
    );
    let threads = match config.node.actor_threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();

    let membership = Membership::join(
        kv,
        &cluster.prefix,
        Member {
            id: node_id.clone(),
            role: Role::Router,
            addr: advertise.clone(),
            draining: false,
        },
        cluster.lease_ttl_secs as i64,
    )
    .await
    .map_err(|e| StartError::Config(format!("joining the cluster: {e}")))?;
    let claims = Claims::new(membership.kv().clone(), &cluster.prefix);

    let agent_config = config.agent_node();
    let shifts = Arc::new(Shifts::new(&agent_config));
    // The agent directory: seeded from the file when the record's is empty, then followed
    // (every router and agent-node applies each change within a second).
    centralino_agent_node::directory::seed(
        &record,
        centralino_core::directory::seed_entries(&config),
        clock.now_ms(),
    )
    .await?;
    let directory = Directory::from_config(&agent_config);
    drop(
        centralino_agent_node::directory::follow(
            record.clone(),
            directory.clone(),
            stop_rx.clone(),
        )
        .await,
    );
    drop(centralino_agent_node::directory::keep_shifts(
        directory.clone(),
        shifts.clone(),
        stop_rx.clone(),
    ));
    let remote_agents = RemoteAgents::new(membership.clone(), claims.clone(), tls.agent_nodes);
    let events = Arc::new(IntegrationLog::new(record.clone()));
    let router = Router::new(SharedParts {
        config: config.clone(),
        clock: clock.clone(),
        store: store.clone(),
        commits,
        archive: Archive::new(record.clone()),
        agents: remote_agents.clone() as Arc<dyn AgentNodeLink>,
        shifts,
        events,
        record,
        directory: directory.clone(),
        arbiters: handles.clone(),
    });
    let view = ClusterView::new(
        node_id.clone(),
        tokio::runtime::Handle::current(),
        tls.routers,
    );
    view.guard_with(membership.clone());
    router
        .shared
        .set_placement(view.clone() as Arc<dyn Placement>);
    let dispatch = Dispatch::new(router.clone());

    // Agents do not log in here: the admin API sees them as the agent-nodes publish them
    // and sends status changes to the node each agent is logged in on.
    let agent_admin = ClusterAgentAdmin::new(remote_agents.clone(), directory);
    let local_admin = AdminApi::new(router.clone(), agent_admin);

    let mut stop_server = stop_rx.clone();
    let customers = Arc::new(ClusterCustomerApi::new(router.clone(), view.clone()));
    let admin = Arc::new(ClusterAdminApi::new(
        local_admin.clone(),
        router.clone(),
        view.clone(),
        membership.clone(),
        node_id.clone(),
    ));
    let web = centralino_web::Web::new(&config.web)
        .customer(customers.clone())
        .admin(admin.clone());
    let grpc = GrpcServer::new()
        .describe(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .public(ConversationServiceServer::from_arc(customers))
        .public(AdminServer::from_arc(admin))
        .web(Box::new(move |grpc| web.wrap(grpc)))
        .tls(tls.public);
    let health = grpc.health();
    let server = grpc
        .start(listener, async move {
            let _ = stop_server.wait_for(|s| *s).await;
        })
        .await?;
    // The internal plane: agent-nodes' and routers' calls, and customer calls other routers
    // forward here; never on the public listener.
    let access = tls.access;
    let mut stop_internal = stop_rx.clone();
    let internal_server = GrpcServer::new()
        .internal(RouterInternalServer::new(InternalApi::new(
            router.clone(),
            dispatch.clone(),
            view.clone(),
            access,
            claims,
        )))
        .internal(access.guard(
            &[PeerRole::Router],
            ConversationServiceServer::new(
                ClusterCustomerApi::new(router.clone(), view.clone()).for_peers(),
            ),
        ))
        // Admin calls other routers forward here after checking the operator's scope, and
        // their snapshots' requests for this router's part.
        .internal(access.guard(
            &[PeerRole::Router],
            AdminServer::new(local_admin.for_peers(access == Access::Mtls)),
        ))
        .max_concurrent_streams(INTERNAL_MAX_STREAMS)
        .tls(tls.internal)
        .start(internal_listener, async move {
            let _ = stop_internal.wait_for(|s| *s).await;
        })
        .await?;

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
    // Webhooks: every router runs the loops; the endpoint's claim in the record picks the
    // one that delivers.
    drop(
        centralino_core::webhooks::start(
            &config.webhooks,
            config.node.dev_mode,
            router.shared.record.clone(),
            &node_id,
            stop_rx.clone(),
        )
        .map_err(StartError::Config)?,
    );
    tokio::spawn(run_feed(
        remote_agents,
        dispatch.clone(),
        router.clone(),
        stop_rx.clone(),
    ));
    // The first tick now: the teams' gauges are in the very first scrape.
    dispatch.tick();
    let mut stop_ticker = stop_rx.clone();
    let tick = clock
        .wall(TEAM_TICK)
        .clamp(Duration::from_millis(50), TEAM_TICK);
    let ticking = dispatch.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = interval.tick() => ticking.tick(),
                _ = stop_ticker.wait_for(|s| *s) => break,
            }
        }
    });

    let (draining, draining_rx) = watch::channel(false);
    let manager = tokio::spawn(
        Partitions::new(
            router.clone(),
            view,
            membership.clone(),
            fences,
            draining_rx,
        )
        .run(lost),
    );
    info!(%node_id, %grpc_addr, %internal_addr, advertise = %advertise, "cluster: router listening");
    Ok(ClusterRouter {
        grpc_addr,
        internal_addr,
        internal_server,
        node_id,
        router,
        clock,
        membership,
        health,
        draining,
        manager: Some(manager),
        stop,
        server,
        arbiters,
        drain_budget: Duration::from_secs(cluster.drain_budget_secs),
    })
}

impl ClusterRouter {
    /// Drains: health turns NOT_SERVING, the router stops taking partitions and hands
    /// every partition to its next owner, within the drain budget; then it stops.
    /// Returns whether every partition was handed over in time.
    pub async fn drain(mut self) -> bool {
        let started = Instant::now();
        info!(budget = ?self.drain_budget, "cluster: draining");
        let health = self.health.clone();
        health
            .set_not_serving::<ConversationServiceServer<ClusterCustomerApi>>()
            .await;
        health
            .set_not_serving::<AdminServer<ClusterAdminApi>>()
            .await;
        // The overall status ("") is what Kubernetes' gRPC probes ask.
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        if let Err(e) = self.membership.set_draining().await {
            warn!(error = %e, "cluster: cannot mark this router draining");
        }
        let _ = self.draining.send(true);
        let done = match self.manager.take() {
            Some(mut manager) => {
                let done = tokio::time::timeout(self.drain_budget, &mut manager)
                    .await
                    .is_ok();
                if !done {
                    manager.abort();
                }
                done
            }
            None => true,
        };
        if !done {
            warn!("cluster: drain budget spent with partitions still held; they expire with the lease");
        }
        info!(elapsed = ?started.elapsed(), handed_over = done, "cluster: drained");
        self.finish(true).await;
        done
    }

    /// Stops at once (partitions expire with the lease).
    pub async fn stop(mut self) {
        if let Some(manager) = self.manager.take() {
            manager.abort();
        }
        self.finish(true).await;
    }

    /// Stops at once without leaving the cluster, as a crashed router would: its lease,
    /// registration and claims stay until the lease expires (tests expire it in the twin).
    pub async fn halt(mut self) {
        if let Some(manager) = self.manager.take() {
            manager.abort();
        }
        self.membership.halt();
        self.finish(false).await;
    }

    /// Stops serving and the actors; leaves the cluster (revokes the lease) if `leave`.
    async fn finish(self, leave: bool) {
        let _ = self.stop.send(true);
        for mut server in [self.server, self.internal_server] {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        if leave {
            self.membership.leave().await;
        }
        for arbiter in self.arbiters {
            arbiter.stop();
        }
    }
}

/// How long a starting router keeps trying to reach PostgreSQL (in Kubernetes it may come
/// up after the routers), and the longest pause between two attempts.
const RECORD_CONNECT_BUDGET: Duration = Duration::from_secs(120);
const RECORD_CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Returns the problem of a cluster router without `[record] postgres_url` outside dev
/// mode.
fn record_problem(config: &Config) -> Option<String> {
    (config.record.postgres_url.is_empty() && !config.node.dev_mode).then(|| {
        "record.postgres_url: cluster mode keeps closed conversations, profiles and \
         integration events in PostgreSQL; set CENTRALINO_RECORD__POSTGRES_URL \
         (Kubernetes: the Secret centralino-postgres, key postgres-url)"
            .to_string()
    })
}

/// Connects to the system of record, `[record] postgres_url`: required outside dev mode;
/// tried again with backoff for [`RECORD_CONNECT_BUDGET`]. Dev mode without a URL falls
/// back to an in-memory record of this router alone.
async fn connect_record(config: &Config) -> Result<Arc<dyn Record>, StartError> {
    let record = &config.record;
    if let Some(problem) = record_problem(config) {
        return Err(StartError::Config(problem));
    }
    if record.postgres_url.is_empty() {
        warn!(
            "dev mode without record.postgres_url: the record (closed conversations, \
             transcripts) is IN MEMORY, this router's alone, and LOST when it stops"
        );
        return Ok(Arc::new(MemoryRecord::new()?));
    }
    let pg = record.pg();
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match PgRecord::connect(&pg).await {
            Ok(r) => {
                info!(attempt, "record: connected to PostgreSQL");
                return Ok(Arc::new(r));
            }
            Err(e @ RecordError::InvalidInput(_)) => return Err(e.into()),
            Err(e) if started.elapsed() + pause < RECORD_CONNECT_BUDGET => {
                warn!(attempt, error = %e, retry_in = ?pause, "record: PostgreSQL not reachable yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECORD_CONNECT_BACKOFF_MAX);
            }
            Err(e) => {
                return Err(StartError::Config(format!(
                    "record.postgres_url: PostgreSQL not reachable after {attempt} attempts \
                     in {:?}: {e}",
                    started.elapsed()
                )))
            }
        }
    }
}
