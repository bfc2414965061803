//! Cluster mode in one process: configurations for routers and agent-nodes (with mutual TLS
//! on the internal plane: certificates of a test CA, [`pki`]), desks that log in at an
//! agent-node, and waits for partitions to settle. Used by the cluster tests over real etcd
//! and over its in-memory twin alike.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use centralino_base::config::{AgentNodeConfig, ClusterTlsConfig};
pub use centralino_base::test_pki::Pki;
use centralino_base::tls::{ClientTls, PeerIdentity, PeerRole, TlsFiles};
use centralino_core::shared::Owner;
use centralino_core::store::records::PARTITIONS;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::{agent_command, agent_event, AgentCommand, Login};
use centralino_router::clustered::ClusterRouter;
use centralino_router::config::Config;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::Desk;

/// How long partitions may take to get an active owner each.
const SETTLE: Duration = Duration::from_secs(20);
/// How long [`retrying`] retries UNAVAILABLE.
const RETRY: Duration = Duration::from_secs(15);

/// The test CA of this process: every node of [`cluster_config`] and
/// [`agent_node_config`] has a certificate of it.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::new)
}

/// Issues a certificate of `pki` for `role` `node_id` (in files of their own) and returns
/// the `[cluster.tls]` section naming them.
pub fn cluster_tls(pki: &Pki, role: PeerRole, node_id: &str) -> ClusterTlsConfig {
    let files = pki.issue(
        &format!("{role}-{node_id}-{}", unique_id()),
        Some(&PeerIdentity::new(role, node_id)),
    );
    tls_section(&files)
}

/// Returns the client TLS of a peer named `identity` (no URI SAN when None) with a
/// certificate of `pki`, for servers of `server_role`: what an outsider holding such a
/// certificate would dial the internal plane with.
pub fn peer_tls(pki: &Pki, identity: Option<PeerIdentity>, server_role: PeerRole) -> ClientTls {
    let files = pki.issue(&format!("peer-{}", unique_id()), identity.as_ref());
    ClientTls::load(files, Some(server_role)).expect("client tls")
}

/// Returns the `[cluster.tls]` section of a set of files.
pub fn tls_section(files: &TlsFiles) -> ClusterTlsConfig {
    let path = |p: &std::path::Path| p.display().to_string();
    ClusterTlsConfig {
        ca_file: files.ca_file.as_deref().map(path).unwrap_or_default(),
        cert_file: path(&files.cert_file),
        key_file: path(&files.key_file),
    }
}

/// Returns the test configuration of cluster router `node` under `prefix`, without etcd
/// endpoints: the internal plane on a free loopback port with mutual TLS (a router
/// certificate of [`pki`]).
pub fn cluster_config(node: &str, prefix: &str) -> Config {
    let mut config = crate::config("");
    config.node.internal_addr = "127.0.0.1:0".to_string();
    config.cluster.tls = cluster_tls(pki(), PeerRole::Router, node);
    config.cluster.prefix = prefix.to_string();
    // The production default: shorter leases make a busy test machine look like a
    // paused router (renewals late by more than the lease allows).
    config.cluster.lease_ttl_secs = 3;
    config.cluster.drain_budget_secs = 20;
    config.node.node_id = node.to_string();
    config.node.data_dir = std::env::temp_dir().join(format!(
        "centralino-cluster-test-{}-{node}",
        std::process::id()
    ));
    config
}

/// Returns the agent-node configuration derived from a cluster configuration, on free
/// loopback ports, without metrics, with an agent-node certificate of [`pki`] for its
/// node id.
pub fn agent_node_config(config: &Config) -> AgentNodeConfig {
    let mut config = config.agent_node();
    config.node.grpc_addr = "127.0.0.1:0".to_string();
    config.node.internal_addr = "127.0.0.1:0".to_string();
    config.node.metrics_addr = String::new();
    if !config.cluster.tls.ca_file.is_empty() {
        config.cluster.tls = cluster_tls(pki(), PeerRole::AgentNode, &config.node.node_id);
    }
    config
}

/// Returns a unique id (conversation ids, key prefixes).
pub fn unique_id() -> String {
    format!("{:x}", uuid::Uuid::new_v4().as_u128())
}

/// Returns a connected channel to `addr`.
pub async fn channel_at(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Logs `agent_id` in at the agent-node at `addr` and waits for `logged_in`.
pub async fn login_at(addr: SocketAddr, agent_id: &str) -> Result<Desk, tonic::Status> {
    let mut client = AgentDeskClient::new(channel_at(addr).await);
    let (tx, rx) = mpsc::channel(64);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent_id.to_string(),
            password: "pw".to_string(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue login");
    let events = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut desk = Desk { tx, events };
    desk.next(10, |k| {
        matches!(k, agent_event::Kind::LoggedIn(_)).then_some(())
    })
    .await
    .ok_or_else(|| tonic::Status::internal("no logged_in event"))?;
    Ok(desk)
}

/// Returns how many partitions `router` serves.
pub fn owned(router: &ClusterRouter) -> usize {
    (0..PARTITIONS)
        .filter(|p| router.router.shared.owner(*p) == Owner::Local)
        .count()
}

/// Waits until the two routers split the partitions between them and the split has held
/// for two seconds (the hand-overs after the second router joined have landed).
pub async fn split_settled(a: &ClusterRouter, b: &ClusterRouter) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = (0, 0);
    let mut since = tokio::time::Instant::now();
    loop {
        let now = (owned(a), owned(b));
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if now.0 + now.1 == PARTITIONS as usize
            && now.0 > 0
            && now.1 > 0
            && since.elapsed() > Duration::from_secs(2)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions did not settle between the routers: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every partition has an active owner, as seen by `router`.
pub async fn settled(router: &ClusterRouter) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if (0..PARTITIONS).all(|p| router.router.shared.owner(p) != Owner::Unknown) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `router` serves all the partitions (a cached claim of another router makes
/// [`settled`] true before the hand-over has landed).
pub async fn owns_all(router: &ClusterRouter) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let owned = owned(router);
        if owned == PARTITIONS as usize {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} serves {owned} partitions, not all",
            router.node_id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retries `f` while it fails with UNAVAILABLE (a partition changing owner), up to 15 s.
pub async fn retrying<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + RETRY;
    loop {
        match f().await {
            Ok(t) => return t,
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("call failed: {s}"),
        }
    }
}

/// Starts router `node` of the cluster under `prefix` on the in-memory twin of etcd `kv`.
pub async fn twin_router(
    kv: &std::sync::Arc<centralino_membership::memory::MemoryKv>,
    node: &str,
    prefix: &str,
) -> ClusterRouter {
    centralino_router::clustered::start_with(cluster_config(node, prefix), kv.clone())
        .await
        .expect("router starts")
}

/// Starts agent-node `node` of the cluster under `prefix` on the in-memory twin of etcd `kv`.
pub async fn twin_agent_node(
    kv: &std::sync::Arc<centralino_membership::memory::MemoryKv>,
    node: &str,
    prefix: &str,
) -> centralino_agent_node::cluster_node::RunningAgentNode {
    let config = agent_node_config(&cluster_config(node, prefix));
    centralino_agent_node::cluster_node::start_with(config, kv.clone())
        .await
        .expect("agent-node starts")
}
