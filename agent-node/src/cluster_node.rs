//! An agent-node of a cluster: agent desktops connect here (AgentDesk); routers reserve
//! agents and follow their availability (AgentNodeInternal). Membership in etcd (or its
//! in-memory twin, see [`start_with`]), one agent-node per agent, and agents' conversations
//! restored when they come from another node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use centralino_proto::v1::agent_desk_server::AgentDeskServer;
use centralino_proto::v1::agent_node_internal_server::AgentNodeInternalServer;
use tracing::{info, warn};

use crate::gateway::AgentDeskService;
use crate::node::AgentNode;
use crate::remote::{
    keep_claims, AvailabilityHub, ClusterLogin, Fence, InternalService, RemoteRouters,
};
use centralino_base::clock;
use centralino_base::config::AgentNodeConfig;
use centralino_base::server::{check_plaintext, Access, GrpcServer, Listener};
use centralino_base::tls::{own_identity, ClientTls, PeerRole, ServerTls};
use centralino_membership::etcd::{Etcd, EtcdSecurity};
use centralino_membership::kv::Kv;
use centralino_membership::membership::{Member, Membership, Role};

/// Concurrent calls on one internal connection (a router's calls for all its customers).
const INTERNAL_MAX_STREAMS: u32 = 1024;

/// A running agent-node.
pub struct RunningAgentNode {
    /// Bound gRPC address (agent desktops).
    pub grpc_addr: SocketAddr,
    /// Bound address of the internal plane (routers call `AgentNodeInternal` here).
    pub internal_addr: SocketAddr,
    /// Node id in the cluster.
    pub node_id: String,
    /// The agents.
    pub node: Arc<AgentNode>,
    membership: Arc<Membership>,
    health: tonic_health::server::HealthReporter,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    internal_server: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    arbiters: Vec<Arbiter>,
}

/// Starts an agent-node of a cluster coordinated by etcd (`cluster.etcd_endpoints`). Must
/// run inside an actix `System` on a multi-thread runtime. Installing a metrics exporter is
/// the caller's business.
pub async fn start(config: AgentNodeConfig) -> Result<RunningAgentNode, String> {
    let problems = config.cluster.problems();
    if !problems.is_empty() {
        return Err(format!("invalid configuration: {}", problems.join("; ")));
    }
    let etcd = Etcd::connect_with(
        &config.cluster.etcd_endpoints,
        Duration::from_millis(config.cluster.request_timeout_ms),
        &EtcdSecurity::from_config(&config.cluster),
    )
    .await
    .map_err(|e| format!("connecting to etcd: {e}"))?;
    start_with(config, Arc::new(etcd)).await
}

/// Starts an agent-node of the cluster coordinated by `kv` (etcd, or the in-memory twin of
/// in-process tests); `cluster.etcd_endpoints` is not used.
pub async fn start_with(
    config: AgentNodeConfig,
    kv: Arc<dyn Kv>,
) -> Result<RunningAgentNode, String> {
    let mut problems = config.cluster.settings_problems();
    problems.extend(config.credential_problems());
    if !problems.is_empty() {
        return Err(format!("invalid configuration: {}", problems.join("; ")));
    }
    centralino_base::oidc::check_jwks_url(&config.oidc).await?;
    let id = centralino_base::process::node_id(&config.node.node_id, "agent-node");
    let clock = clock::from_config(&config.clock)?;
    let node_config = &config.node;
    let internal_files = config.cluster.internal_tls(node_config.dev_mode)?;
    let public_files = config.tls.files()?;
    if node_config.internal_addr.is_empty() {
        return Err("node.internal_addr: cluster mode needs the internal plane's address".into());
    }
    if node_config.internal_addr == node_config.grpc_addr && !node_config.grpc_addr.ends_with(":0")
    {
        return Err("node.internal_addr: must differ from node.grpc_addr".into());
    }
    check_plaintext(
        "node.grpc_addr",
        &node_config.grpc_addr,
        public_files.is_some(),
        node_config.insecure,
    )?;
    check_plaintext(
        "node.internal_addr",
        &node_config.internal_addr,
        internal_files.is_some(),
        node_config.insecure,
    )?;
    let public_tls = public_files
        .map(ServerTls::load)
        .transpose()
        .map_err(|e| format!("tls: {e}"))?;
    let (internal_tls, router_tls) = match &internal_files {
        Some(files) => {
            own_identity(files, PeerRole::AgentNode, &id)
                .map_err(|e| format!("cluster.tls: {e}"))?;
            (
                Some(ServerTls::load(files.clone()).map_err(|e| format!("cluster.tls: {e}"))?),
                Some(
                    ClientTls::load(files.clone(), Some(PeerRole::Router))
                        .map_err(|e| format!("cluster.tls: {e}"))?,
                ),
            )
        }
        None => {
            warn!("dev mode: the internal plane is plaintext and unauthenticated");
            (None, None)
        }
    };
    let access = if internal_tls.is_some() {
        Access::Mtls
    } else {
        Access::Open
    };
    let listener = Listener::bind(&node_config.grpc_addr)
        .await
        .map_err(|e| e.to_string())?;
    let grpc_addr = listener.local_addr();
    let internal_listener = Listener::bind(&node_config.internal_addr)
        .await
        .map_err(|e| e.to_string())?;
    let internal_addr = internal_listener.local_addr();
    let advertise = if node_config.advertise_internal_addr.is_empty() {
        internal_addr.to_string()
    } else {
        node_config.advertise_internal_addr.clone()
    };
    let membership = Membership::join(
        kv,
        &config.cluster.prefix,
        Member {
            id: id.clone(),
            role: Role::AgentNode,
            addr: advertise.clone(),
            draining: false,
        },
        config.cluster.lease_ttl_secs as i64,
    )
    .await
    .map_err(|e| format!("joining the cluster: {e}"))?;

    let threads = match config.node.actor_threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
    let node = AgentNode::new(config.clone(), clock, handles);
    let feed = Arc::new(AvailabilityHub::default());
    let fence = Fence::new(membership.clone());
    let routers = RemoteRouters::new(membership.clone(), fence.clone(), feed.clone(), router_tls);
    node.set_router(routers.clone());
    let directory_feed = routers.clone();
    let login = ClusterLogin::new(membership.clone(), fence, routers);
    node.set_login_hook(login.clone());

    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    // After a lost lease: the agents claimed again under the new one before the fence lifts.
    drop(tokio::spawn(keep_claims(
        node.clone(),
        login,
        stop_rx.clone(),
    )));
    // The agent directory: the routers' live directory over the internal plane (a change
    // applies here within a second), the configuration file's until the first router answers.
    drop(directory_feed.follow_directory(node.directory().clone(), stop_rx.clone()));
    drop(node.watch_directory(stop_rx.clone()));
    let desk_service = AgentDeskService::new(node.clone());
    let web_config = config.web.clone();
    let grpc = GrpcServer::new()
        .describe(centralino_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .public(AgentDeskServer::new(desk_service.clone()))
        // Browsers: the desk as HTTP sessions, gRPC-web, the pages.
        .web(Box::new(move |grpc| {
            centralino_web::Web::new(&web_config)
                .desk(Arc::new(desk_service))
                .wrap(grpc)
        }))
        .tls(public_tls);
    let health = grpc.health();
    let mut stop_internal = stop_rx.clone();
    let server = grpc
        .start(listener, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| e.to_string())?;
    // Only routers call the internal plane of an agent-node, and only here.
    let internal_server = GrpcServer::new()
        .internal(access.guard(
            &[PeerRole::Router],
            AgentNodeInternalServer::new(InternalService::new(node.clone(), feed, id.clone())),
        ))
        .max_concurrent_streams(INTERNAL_MAX_STREAMS)
        .tls(internal_tls)
        .start(internal_listener, async move {
            let _ = stop_internal.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| e.to_string())?;
    // Agents offline here with nothing held are forgotten, so they may log in elsewhere.
    let sweeper_node = node.clone();
    let sweeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            sweeper_node.forget_idle().await;
        }
    });
    info!(node_id = %id, %grpc_addr, %internal_addr, advertise = %advertise, "cluster: agent-node listening");
    Ok(RunningAgentNode {
        grpc_addr,
        internal_addr,
        internal_server,
        node_id: id,
        node,
        membership,
        health,
        stop,
        server,
        sweeper,
        arbiters,
    })
}

impl RunningAgentNode {
    /// Stops: no more logins, the desktops' streams end (their agents log in on another
    /// node and keep their conversations), the node leaves the cluster.
    pub async fn shutdown(self) {
        info!("shutting down: agents reconnect to another agent-node");
        self.health
            .set_not_serving::<AgentDeskServer<AgentDeskService>>()
            .await;
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = self.membership.set_draining().await;
        self.sweeper.abort();
        let _ = self.stop.send(true);
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
            warn!("open desktop streams cut at shutdown");
        }
        let mut internal = self.internal_server;
        if tokio::time::timeout(Duration::from_secs(1), &mut internal)
            .await
            .is_err()
        {
            internal.abort();
        }
        self.membership.leave().await;
        for arbiter in self.arbiters {
            arbiter.stop();
        }
    }
}
