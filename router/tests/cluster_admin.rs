//! One admin view of a cluster (issue 11): two routers and two agent-nodes in one process
//! against a real etcd. `GetSnapshot` from either router covers the whole cluster (queues of
//! departments owned by different routers, agents logged in on different agent-nodes,
//! counters summed) and is the same from both; `SetAgentStatus` and `ForceTransfer`
//! through a router that does not own the agent or the conversation take effect; a router
//! that does not answer is named in the snapshot, which still succeeds; a call on the public
//! port with a forged forwarding header still needs its scope. The internal plane serves
//! forwarded admin calls to routers only (over the in-memory twin of etcd), and checks the
//! forwarded token again when it is plaintext (dev mode).

use centralino_testkit as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_base::credentials::{token_hash, Scope};
use centralino_base::tls::{PeerIdentity, PeerRole};
use centralino_cluster::partitions::winner;
use centralino_core::shared::Owner;
use centralino_core::store::records::partition_of;
use centralino_link::grpc::channel_with;
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_membership::etcd::Etcd;
use centralino_membership::membership::{Member, Membership, Role};
use centralino_membership::memory::MemoryKv;
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::agent_node_internal_client::AgentNodeInternalClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    AgentStatus, ForceTransferRequest, GetSnapshotRequest, GetTranscriptRequest,
    SetAgentStatusRequest, Snapshot, WatchConversationRequest,
};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::{Config, OperatorConfig};
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, peer_tls, pki, retrying, settled,
    unique_id,
};
use common::{agent_in, authed, start_conversation};
use tonic::transport::Channel;
use tonic::Code;

/// The read-only operator's token of every router here.
const VIEWER: &str = "viewer-token-of-the-cluster-admin-test";

fn etcd_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = cluster_config(node, prefix);
    config.cluster.etcd_endpoints = endpoints.to_vec();
    config.operators.push(OperatorConfig {
        name: "viewer".into(),
        token_hash: token_hash(VIEWER),
        scopes: vec![Scope::ReadOnly],
    });
    config
}

async fn router(endpoints: &[String], node: &str, prefix: &str) -> ClusterRouter {
    clustered::start(etcd_config(endpoints, node, prefix))
        .await
        .expect("router starts")
}

async fn agent_node(endpoints: &[String], node: &str, prefix: &str) -> RunningAgentNode {
    cluster_node::start(agent_node_config(&etcd_config(endpoints, node, prefix)))
        .await
        .expect("agent-node starts")
}

async fn admin(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(channel_at(addr).await)
}

async fn snapshot(addr: SocketAddr) -> Snapshot {
    admin(addr)
        .await
        .get_snapshot(authed(GetSnapshotRequest {}))
        .await
        .expect("snapshot")
        .into_inner()
}

/// Polls the snapshot of the router at `addr` until `ok` holds; panics after 20 s.
async fn snapshot_until(addr: SocketAddr, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snap = snapshot(addr).await;
        if ok(&snap) {
            return snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never seen in {snap:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Returns the depth of `department`'s queue in `snap` (0 when it is not listed).
fn depth(snap: &Snapshot, department: &str) -> u32 {
    snap.queues
        .iter()
        .find(|q| q.department == department)
        .map_or(0, |q| q.depth)
}

/// A snapshot without what moves with time (ages, the clock), to compare two of them.
fn steady(mut snap: Snapshot) -> Snapshot {
    snap.now_unix_ms = 0;
    for q in &mut snap.queues {
        q.oldest_wait_seconds = 0;
    }
    snap
}

/// Two router ids under which "sales" and "support" have different rendezvous owners.
fn router_ids() -> (String, String) {
    for n in 0..100 {
        let ids = vec![format!("router-a{n}"), format!("router-b{n}")];
        let sales = winner(partition_of("sales"), &ids).map(str::to_string);
        let support = winner(partition_of("support"), &ids).map(str::to_string);
        if sales != support {
            return (ids[0].clone(), ids[1].clone());
        }
    }
    panic!("no pair of router ids splits the two departments");
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// A forged "already forwarded" header, as an outsider might add on the public port.
fn forged<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert("x-centralino-forwarded", "1".parse().expect("header"));
    request
}

async fn set_status(addr: SocketAddr, agent_id: &str, status: AgentStatus) {
    retrying(|| async move {
        admin(addr)
            .await
            .set_agent_status(authed(SetAgentStatusRequest {
                agent_id: agent_id.to_string(),
                status: status as i32,
            }))
            .await
    })
    .await;
}

#[test]
fn every_router_answers_for_the_whole_cluster() {
    common::run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let (id_a, id_b) = router_ids();
        let a = router(&endpoints, &id_a, &prefix).await;
        let b = router(&endpoints, &id_b, &prefix).await;
        let node_1 = agent_node(&endpoints, "agent-node-1", &prefix).await;
        let node_2 = agent_node(&endpoints, "agent-node-2", &prefix).await;
        settled(&a).await;
        settled(&b).await;
        // The two departments' queues live on different routers.
        let owners_split = common::wait_until(20, || async {
            let sales = a.router.shared.owner(partition_of("sales"));
            let support = a.router.shared.owner(partition_of("support"));
            let seen_by_b = (
                b.router.shared.owner(partition_of("sales")),
                b.router.shared.owner(partition_of("support")),
            );
            matches!(
                (&sales, &support, &seen_by_b),
                (
                    Owner::Local,
                    Owner::Remote(_),
                    (Owner::Remote(_), Owner::Local)
                ) | (
                    Owner::Remote(_),
                    Owner::Local,
                    (Owner::Local, Owner::Remote(_))
                )
            )
        })
        .await;
        assert!(owners_split, "sales and support owned by different routers");

        // Agents on two agent-nodes, set away through routers that do not hold them.
        let mut giulia = login_at(node_1.grpc_addr, "giulia").await.expect("login");
        let _emma = login_at(node_2.grpc_addr, "emma").await.expect("login");
        set_status(a.grpc_addr, "giulia", AgentStatus::Away).await;
        set_status(b.grpc_addr, "emma", AgentStatus::Away).await;
        for addr in [a.grpc_addr, b.grpc_addr] {
            snapshot_until(addr, "both agents away", |s| {
                s.agents
                    .iter()
                    .any(|x| x.agent_id == "giulia" && x.status == AgentStatus::Away as i32)
                    && s.agents
                        .iter()
                        .any(|x| x.agent_id == "emma" && x.status == AgentStatus::Away as i32)
            })
            .await;
        }

        // One conversation started on each router, in departments owned by different ones.
        let via_a = ConversationServiceClient::new(channel_at(a.grpc_addr).await);
        let via_b = ConversationServiceClient::new(channel_at(b.grpc_addr).await);
        let sales = retrying(|| {
            let mut c = via_a.clone();
            async move { start_conversation(&mut c, "sales", "it", "ada").await }
        })
        .await;
        let support = retrying(|| {
            let mut c = via_b.clone();
            async move { start_conversation(&mut c, "support", "it", "bea").await }
        })
        .await;
        assert!(a.router.conversation(&sales.conversation_id).is_some());
        assert!(b.router.conversation(&support.conversation_id).is_some());

        let whole = |s: &Snapshot| depth(s, "sales") == 1 && depth(s, "support") == 1;
        let from_a = snapshot_until(a.grpc_addr, "both queues from a", whole).await;
        let from_b = snapshot_until(b.grpc_addr, "both queues from b", whole).await;
        let mut both = vec![id_a.clone(), id_b.clone()];
        both.sort();
        for snap in [&from_a, &from_b] {
            assert_eq!(snap.routers, both);
            assert!(snap.routers_missing.is_empty(), "{snap:?}");
            let counters = snap.counters.expect("counters");
            assert_eq!(counters.conversations_started, 2, "summed over routers");
            assert_eq!(counters.conversations_open, 2);
            assert_eq!(agent_in(snap, "giulia").status, AgentStatus::Away as i32);
            assert_eq!(agent_in(snap, "emma").status, AgentStatus::Away as i32);
            assert_eq!(agent_in(snap, "emma").capacity, 3);
            assert_eq!(agent_in(snap, "marco").status, AgentStatus::Offline as i32);
        }
        assert_eq!(steady(from_a.clone()), steady(from_b.clone()));
        // A read-only operator sees the same through either router.
        let viewed = admin(b.grpc_addr)
            .await
            .get_snapshot(with_token(GetSnapshotRequest {}, VIEWER))
            .await
            .expect("a read-only snapshot")
            .into_inner();
        assert_eq!(depth(&viewed, "sales"), 1);
        assert_eq!(depth(&viewed, "support"), 1);

        // The live transcript of a conversation owned by the other router.
        let transcript = admin(b.grpc_addr)
            .await
            .get_transcript(authed(GetTranscriptRequest {
                conversation_id: sales.conversation_id.clone(),
            }))
            .await
            .expect("a live transcript through the other router")
            .into_inner();
        let summary = transcript.conversation.expect("summary");
        assert_eq!(summary.customer_id, "ada");
        assert_eq!(summary.department, "sales");
        // And its live events, watched through the other router.
        let mut watched = admin(b.grpc_addr)
            .await
            .watch_conversation(authed(WatchConversationRequest {
                conversation_id: sales.conversation_id.clone(),
                after_event_id: 0,
            }))
            .await
            .expect("a live watch through the other router")
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), watched.message())
            .await
            .expect("an event within 5 s")
            .expect("the watch stream");
        assert!(first.is_some_and(|e| e.event_id > 0), "a first event");
        drop(watched);

        // A forged forwarding header on the public port changes nothing: the scope is
        // still needed.
        let transfer = ForceTransferRequest {
            conversation_id: sales.conversation_id.clone(),
            target: Some(
                centralino_proto::v1::force_transfer_request::Target::Department("support".into()),
            ),
            reason: "forged".into(),
        };
        let anonymous = admin(b.grpc_addr)
            .await
            .force_transfer(forged(tonic::Request::new(transfer.clone())))
            .await;
        assert_eq!(
            anonymous.err().map(|s| s.code()),
            Some(Code::Unauthenticated)
        );
        let viewer = admin(b.grpc_addr)
            .await
            .force_transfer(forged(with_token(transfer.clone(), VIEWER)))
            .await;
        assert_eq!(viewer.err().map(|s| s.code()), Some(Code::PermissionDenied));
        let status = admin(a.grpc_addr)
            .await
            .set_agent_status(forged(with_token(
                SetAgentStatusRequest {
                    agent_id: "giulia".into(),
                    status: AgentStatus::Available as i32,
                },
                VIEWER,
            )))
            .await;
        assert_eq!(status.err().map(|s| s.code()), Some(Code::PermissionDenied));
        let unchanged = snapshot(a.grpc_addr).await;
        assert_eq!(depth(&unchanged, "sales"), 1);
        assert_eq!(unchanged.counters.expect("counters").transfers, 0);
        assert_eq!(
            agent_in(&unchanged, "giulia").status,
            AgentStatus::Away as i32
        );

        // ForceTransfer through the router that does not own the conversation.
        admin(b.grpc_addr)
            .await
            .force_transfer(authed(ForceTransferRequest {
                reason: "supervisor".into(),
                ..transfer
            }))
            .await
            .expect("a transfer through the non-owner");
        let moved = snapshot_until(a.grpc_addr, "transferred to support", |s| {
            depth(s, "sales") == 0 && depth(s, "support") == 2
        })
        .await;
        assert_eq!(moved.counters.expect("counters").transfers, 1);
        assert!(
            a.router.conversation(&sales.conversation_id).is_some(),
            "the conversation stays with its owner"
        );

        // SetAgentStatus through a router: giulia, on agent-node-1, becomes available and
        // gets the oldest support conversation.
        set_status(b.grpc_addr, "giulia", AgentStatus::Available).await;
        let offer = giulia.offer(15).await.expect("an offer once available");
        assert!(
            [&sales.conversation_id, &support.conversation_id].contains(&&offer.conversation_id),
            "{offer:?}"
        );

        // A router that does not answer (registered, but it never replies, or nothing
        // listens at its address) is named missing; the snapshot still comes, within its
        // deadline.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent_addr = silent.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                open.push(socket);
            }
        });
        let kv: Arc<Etcd> = Arc::new(
            Etcd::connect(&endpoints, Duration::from_secs(5))
                .await
                .expect("etcd client"),
        );
        // Registered draining, the ghosts get no partitions.
        let join = |id: &'static str, addr: String| {
            let kv = kv.clone();
            let prefix = prefix.clone();
            async move {
                Membership::join(
                    kv,
                    &prefix,
                    Member {
                        id: id.into(),
                        role: Role::Router,
                        addr,
                        draining: true,
                    },
                    3,
                )
                .await
                .expect("a ghost joins")
            }
        };
        let silent_ghost = join("router-ghost", silent_addr.to_string()).await;
        // And one whose address refuses connections (nobody listens there).
        let refusing = format!("127.0.0.1:{}", common::free_port());
        let refusing_ghost = join("router-refusing", refusing).await;
        let started = Instant::now();
        let ghosts = vec!["router-ghost".to_string(), "router-refusing".to_string()];
        let with_ghosts = snapshot_until(a.grpc_addr, "the ghosts missing", |s| {
            s.routers_missing == ghosts
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(with_ghosts.routers, both, "the others still answer");
        let mut listed: Vec<&str> = with_ghosts
            .queues
            .iter()
            .map(|q| q.department.as_str())
            .collect();
        listed.sort();
        assert_eq!(listed, vec!["sales", "support"], "both owners' queues");
        assert_eq!(
            with_ghosts
                .counters
                .expect("counters")
                .conversations_started,
            2
        );
        let timed = Instant::now();
        let from_b = snapshot(b.grpc_addr).await;
        assert!(
            timed.elapsed() < Duration::from_secs(3),
            "one snapshot waits for a silent router at most its deadline, not {:?}",
            timed.elapsed()
        );
        assert_eq!(from_b.routers_missing, ghosts);
        silent_ghost.leave().await;
        refusing_ghost.leave().await;
        held.abort();
        snapshot_until(a.grpc_addr, "the ghosts gone", |s| {
            s.routers_missing.is_empty()
        })
        .await;

        b.stop().await;
        a.stop().await;
        node_1.shutdown().await;
        node_2.shutdown().await;
        drop(etcd);
    });
}

/// Over the in-memory twin: one router and one agent-node with mutual TLS.
#[test]
fn forwarded_admin_calls_are_for_routers_on_the_internal_plane_only() {
    common::run(|| async {
        const PREFIX: &str = "/cluster-admin";
        let kv = Arc::new(MemoryKv::new());
        let router = clustered::start_with(cluster_config("router-a", PREFIX), kv.clone())
            .await
            .expect("router starts");
        let node = cluster_node::start_with(
            agent_node_config(&cluster_config("agent-node-1", PREFIX)),
            kv,
        )
        .await
        .expect("agent-node starts");
        settled(&router).await;
        let _giulia = login_at(node.grpc_addr, "giulia").await.expect("login");

        let dial = |addr: SocketAddr, role: PeerRole, id: &str, server: PeerRole| {
            let tls = peer_tls(pki(), Some(PeerIdentity::new(role, id)), server);
            channel_with(&addr.to_string(), Some(&tls)).expect("channel")
        };
        // Another router reaches the internal Admin service without a token (the entry
        // router checked the scope) ...
        let as_router = dial(
            router.internal_addr,
            PeerRole::Router,
            "router-b",
            PeerRole::Router,
        );
        let part = AdminClient::new(as_router)
            .get_snapshot(GetSnapshotRequest {})
            .await
            .expect("a router's part for another router")
            .into_inner();
        assert!(part.routers.is_empty(), "a part is this router's only");
        // ... an agent-node does not, nor does a client without a certificate.
        let as_node = dial(
            router.internal_addr,
            PeerRole::AgentNode,
            "agent-node-1",
            PeerRole::Router,
        );
        let refused = AdminClient::new(as_node.clone())
            .force_transfer(ForceTransferRequest {
                conversation_id: "c1".into(),
                target: Some(
                    centralino_proto::v1::force_transfer_request::Target::Department(
                        "support".into(),
                    ),
                ),
                ..Default::default()
            })
            .await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let refused = AdminClient::new(as_node)
            .get_snapshot(GetSnapshotRequest {})
            .await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let plain =
            centralino_link::grpc::channel(&router.internal_addr.to_string()).expect("channel");
        let refused = AdminClient::new(plain)
            .get_snapshot(GetSnapshotRequest {})
            .await
            .expect_err("plaintext refused");
        assert_ne!(refused.code(), Code::Ok);

        // An agent-node takes status changes from routers only.
        let as_other_node = dial(
            node.internal_addr,
            PeerRole::AgentNode,
            "agent-node-2",
            PeerRole::AgentNode,
        );
        let refused = AgentNodeInternalClient::new(as_other_node)
            .set_agent_status(SetAgentStatusRequest {
                agent_id: "giulia".into(),
                status: AgentStatus::Away as i32,
            })
            .await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );

        // Through the public port with the operator's token, the change reaches the node.
        set_status(router.grpc_addr, "giulia", AgentStatus::Away).await;
        snapshot_until(router.grpc_addr, "giulia away", |s| {
            agent_in(s, "giulia").status == AgentStatus::Away as i32
        })
        .await;
        // An unknown agent and one who is not logged in get clear errors.
        let mut public = admin(router.grpc_addr).await;
        let unknown = public
            .set_agent_status(authed(SetAgentStatusRequest {
                agent_id: "nobody".into(),
                status: AgentStatus::Away as i32,
            }))
            .await;
        assert_eq!(unknown.err().map(|s| s.code()), Some(Code::NotFound));
        let absent = public
            .set_agent_status(authed(SetAgentStatusRequest {
                agent_id: "marco".into(),
                status: AgentStatus::Away as i32,
            }))
            .await;
        assert_eq!(
            absent.err().map(|s| s.code()),
            Some(Code::FailedPrecondition)
        );

        router.stop().await;
        node.shutdown().await;
    });
}

/// Dev mode, whose internal plane is plaintext and names nobody: a forwarded Admin call
/// there is checked against the operator's token again.
#[test]
fn a_plaintext_internal_plane_checks_the_forwarded_token_again() {
    common::run(|| async {
        let mut config = cluster_config("router-dev", "/cluster-admin-dev");
        config.cluster.tls = Default::default();
        assert!(config.node.dev_mode);
        let router = clustered::start_with(config, Arc::new(MemoryKv::new()))
            .await
            .expect("router starts");
        settled(&router).await;
        let plain =
            centralino_link::grpc::channel(&router.internal_addr.to_string()).expect("channel");
        let anonymous = AdminClient::new(plain.clone())
            .get_snapshot(GetSnapshotRequest {})
            .await;
        assert_eq!(
            anonymous.err().map(|s| s.code()),
            Some(Code::Unauthenticated)
        );
        let forged = AdminClient::new(plain.clone())
            .force_transfer(forged(tonic::Request::new(ForceTransferRequest {
                conversation_id: "c1".into(),
                target: Some(
                    centralino_proto::v1::force_transfer_request::Target::Department(
                        "support".into(),
                    ),
                ),
                ..Default::default()
            })))
            .await;
        assert_eq!(forged.err().map(|s| s.code()), Some(Code::Unauthenticated));
        let part = AdminClient::new(plain)
            .get_snapshot(authed(GetSnapshotRequest {}))
            .await
            .expect("with the operator's token")
            .into_inner();
        assert!(part.routers.is_empty(), "a part is this router's only");
        router.stop().await;
    });
}
