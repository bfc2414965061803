//! `centralino bench cluster`: a 3-member etcd (real processes), three routers and two
//! agent-nodes in this process on loopback, against the standalone node of the same run.
//!
//! Measured: conversations per second and start-to-offer latency through the cluster
//! (customers spread over the three routers, agents over the two agent-nodes); etcd
//! transactions per routed conversation with group commit and without it (one transaction
//! per writer), from etcd's revision counter; the time a router takes to drain its
//! partitions while the conversations are live, against a standalone node's shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_membership::etcd::Etcd;
use centralino_membership::kv::Kv;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::bench::{
    bench_config, connect, drive_starts, log_in_agents, percentile, ThroughputResult,
};
use centralino_core::shared::Owner;
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::standalone::{self, StoreChoice};

/// Agents of the benchmark (auto-accepting, split over the agent-nodes).
const AGENTS: usize = 200;

/// Every figure of one cluster benchmark run.
#[derive(Debug, Serialize)]
pub struct ClusterReport {
    /// Standalone node with the embedded store, same workload, same run.
    pub standalone: ThroughputResult,
    /// Through the cluster, group commit on.
    pub cluster: ThroughputResult,
    /// Through the cluster with one transaction per writer.
    pub cluster_unbatched: ThroughputResult,
    /// etcd transactions per routed conversation, group commit on.
    pub txns_per_conversation: f64,
    /// etcd transactions per routed conversation, one per writer.
    pub txns_per_conversation_unbatched: f64,
    /// Seconds a router took to hand its partitions over, conversations live.
    pub drain_secs: f64,
    /// Conversations live in the cluster when the router drained.
    pub drain_live_conversations: usize,
    /// Seconds a standalone node took to shut down with the same number live.
    pub standalone_shutdown_secs: f64,
}

struct Cluster {
    routers: Vec<ClusterRouter>,
    nodes: Vec<RunningAgentNode>,
}

async fn start_cluster(
    endpoints: &[String],
    prefix: &str,
    max_ops: usize,
    capacity: u32,
) -> Result<Cluster, String> {
    let dir = std::env::temp_dir().join(format!(
        "centralino-cbench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut base = bench_config(AGENTS, capacity, &dir)?;
    base.cluster.etcd_endpoints = endpoints.to_vec();
    base.cluster.prefix = prefix.to_string();
    base.cluster.group_commit_max_ops = max_ops;
    base.node.actor_threads = 1;
    // The bench runs in dev mode: a plaintext internal plane on loopback.
    base.node.dev_mode = true;
    base.node.internal_addr = "127.0.0.1:0".into();
    let mut routers = Vec::new();
    for i in 1..=3 {
        let mut config = base.clone();
        config.node.node_id = format!("router-{i}");
        config.node.data_dir = dir.join(format!("router-{i}"));
        routers.push(clustered::start(config).await.map_err(|e| e.to_string())?);
    }
    let mut nodes = Vec::new();
    for i in 1..=2 {
        let mut config = base.agent_node();
        config.node.node_id = format!("agent-node-{i}");
        config.node.grpc_addr = "127.0.0.1:0".into();
        config.node.metrics_addr = String::new();
        config.node.actor_threads = 1;
        nodes.push(cluster_node::start(config).await?);
    }
    // Every partition owned and active before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let settled = routers
            .iter()
            .all(|r| (0..256).all(|p| r.router.shared.owner(p) != Owner::Unknown));
        if settled {
            break;
        }
        if Instant::now() > deadline {
            return Err("partitions did not settle within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Cluster { routers, nodes })
}

async fn revision(etcd: &Etcd) -> Result<i64, String> {
    etcd.get_prefix("/centralino-bench-revision-probe/")
        .await
        .map(|(_, rev)| rev)
        .map_err(|e| e.to_string())
}

/// Starts `conversations` conversations over `routers` with `concurrency` callers and
/// waits for their offers; returns the throughput.
async fn drive(
    routers: &[SocketAddr],
    offers: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    conversations: usize,
    concurrency: usize,
    tag: &str,
) -> Result<(f64, Vec<f64>), String> {
    let mut channels: Vec<Channel> = Vec::new();
    for addr in routers {
        for _ in 0..2 {
            channels.push(connect(*addr).await?);
        }
    }
    Ok(drive_starts(&channels, offers, conversations, concurrency, tag).await)
}

fn result(workload: String, elapsed: f64, latencies: &[f64]) -> ThroughputResult {
    ThroughputResult {
        workload,
        operations: latencies.len(),
        per_sec: latencies.len() as f64 / elapsed.max(1e-9),
        p50_ms: percentile(latencies, 0.5),
        p99_ms: percentile(latencies, 0.99),
    }
}

/// One cluster run: start, route `conversations`, count transactions; with `drain`, also
/// drain router-1 with the conversations live and time it.
async fn cluster_run(
    etcd_cluster: &EtcdCluster,
    max_ops: usize,
    conversations: usize,
    concurrency: usize,
    drain: bool,
) -> Result<(ThroughputResult, f64, Option<f64>), String> {
    let endpoints = etcd_cluster.endpoints();
    let etcd = Etcd::connect(&endpoints, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let prefix = format!("/bench-{}", uuid::Uuid::new_v4().simple());
    let capacity = (conversations.div_ceil(AGENTS) as u32 + 1).min(64);
    let cluster = start_cluster(&endpoints, &prefix, max_ops, capacity).await?;
    let node_addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.grpc_addr).collect();
    let router_addrs: Vec<SocketAddr> = cluster.routers.iter().map(|r| r.grpc_addr).collect();
    let (desks, mut offers) = log_in_agents(&node_addrs, AGENTS).await?;
    // Let every agent's availability reach the queues.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = revision(&etcd).await?;
    let (elapsed, latencies) =
        drive(&router_addrs, &mut offers, conversations, concurrency, "c").await?;
    // Writes still in flight (profiles, assignments) belong to the conversations.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = revision(&etcd).await?;
    let routed = latencies.len().max(1);
    let txns = (after - before) as f64 / routed as f64;
    let label = if max_ops > 1 {
        "3 routers + 2 agent-nodes + 3-member etcd, group commit"
    } else {
        "3 routers + 2 agent-nodes + 3-member etcd, one transaction per writer"
    };
    let throughput = result(
        format!("start + auto-accepted offer, {label}, {concurrency} callers"),
        elapsed,
        &latencies,
    );
    let mut routers = cluster.routers.into_iter();
    let mut drain_secs = None;
    if drain {
        if let Some(first) = routers.next() {
            let t = Instant::now();
            if !first.drain().await {
                return Err("router-1 did not drain within its budget".into());
            }
            drain_secs = Some(t.elapsed().as_secs_f64());
        }
    }
    drop(desks);
    for r in routers {
        r.stop().await;
    }
    for n in cluster.nodes {
        n.shutdown().await;
    }
    Ok((throughput, txns, drain_secs))
}

/// Runs the cluster benchmark. Must run inside an actix system on a multi-thread runtime.
pub async fn run(conversations: usize, concurrency: usize) -> Result<ClusterReport, String> {
    let standalone_result =
        crate::bench::end_to_end(conversations, concurrency, StoreChoice::Embedded, false).await?;
    println!(
        "standalone: {} ops, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        standalone_result.operations,
        standalone_result.per_sec,
        standalone_result.p50_ms,
        standalone_result.p99_ms
    );
    let shutdown = standalone_shutdown(conversations, concurrency).await?;
    println!("standalone shutdown with {conversations} live conversations: {shutdown:.2} s");

    let etcd = EtcdCluster::start(3).await?;
    let (batched, txns, drain) = cluster_run(&etcd, 120, conversations, concurrency, true).await?;
    println!(
        "cluster (group commit): {} ops, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {:.2} etcd txns per conversation",
        batched.operations, batched.per_sec, batched.p50_ms, batched.p99_ms, txns
    );
    let drain_secs = drain.unwrap_or_default();
    println!("drain of router-1 with {conversations} live conversations in the cluster: {drain_secs:.2} s");
    let (unbatched, txns_unbatched, _) =
        cluster_run(&etcd, 1, conversations, concurrency, false).await?;
    println!(
        "cluster (one txn per writer): {} ops, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {:.2} etcd txns per conversation",
        unbatched.operations, unbatched.per_sec, unbatched.p50_ms, unbatched.p99_ms, txns_unbatched
    );
    Ok(ClusterReport {
        standalone: standalone_result,
        cluster: batched,
        cluster_unbatched: unbatched,
        txns_per_conversation: txns,
        txns_per_conversation_unbatched: txns_unbatched,
        drain_secs,
        drain_live_conversations: conversations,
        standalone_shutdown_secs: shutdown,
    })
}

/// Seconds a standalone node (embedded store) takes to shut down with `conversations`
/// live conversations.
async fn standalone_shutdown(conversations: usize, concurrency: usize) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!(
        "centralino-sbench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let capacity = (conversations.div_ceil(AGENTS) as u32 + 1).min(64);
    let config = bench_config(AGENTS, capacity, &dir)?;
    let node = standalone::start_with(config, StoreChoice::Embedded)
        .await
        .map_err(|e| e.to_string())?;
    let (desks, mut offers) = log_in_agents(&[node.grpc_addr], AGENTS).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drive(
        &[node.grpc_addr],
        &mut offers,
        conversations,
        concurrency,
        "s",
    )
    .await?;
    let t = Instant::now();
    drop(desks);
    node.shutdown().await;
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(secs)
}
