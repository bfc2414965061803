//! Cluster mode in one process against a real etcd: two routers and an agent-node. Requests
//! reach the owner of a conversation from any router; a router that stops hands over (or
//! loses) its partitions and their conversations continue on the other router.
//! (Multi-process fault tests with kill -9 and SIGSTOP are in scripts/cluster_faults.py.)

use centralino_testkit as common;

use std::time::Duration;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, conversation_event, AgentCommand, Login, Sender,
};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::Config;
use common::{start_conversation, Desk};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn cluster_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = common::config("");
    config.cluster.etcd_endpoints = endpoints.to_vec();
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

async fn router(endpoints: &[String], node: &str, prefix: &str) -> ClusterRouter {
    clustered::start(cluster_config(endpoints, node, prefix))
        .await
        .expect("router starts")
}

async fn agent_node(endpoints: &[String], node: &str, prefix: &str) -> RunningAgentNode {
    let mut config = cluster_config(endpoints, node, prefix).agent_node();
    config.node.grpc_addr = "127.0.0.1:0".to_string();
    config.node.metrics_addr = String::new();
    cluster_node::start(config)
        .await
        .expect("agent-node starts")
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

async fn login_at(addr: std::net::SocketAddr, agent_id: &str) -> Result<Desk, tonic::Status> {
    let mut client = AgentDeskClient::new(channel(addr).await);
    let (tx, rx) = mpsc::channel(64);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent_id.to_string(),
            password: "pw".to_string(),
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

/// Waits until every partition has an active owner, as seen by `router`.
async fn settled(router: &ClusterRouter) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let id = uuid_like();
        let owner = router
            .router
            .shared
            .owner(centralino_core::store::records::partition_of(&id));
        let all = (0..256)
            .all(|p| router.router.shared.owner(p) != centralino_router::shared::Owner::Unknown);
        if all && owner != centralino_router::shared::Owner::Unknown {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uuid_like() -> String {
    format!("{:x}", uuid::Uuid::new_v4().as_u128())
}

/// Retries `f` while it fails with UNAVAILABLE (a partition changing owner), up to 15 s.
async fn retrying<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
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

#[test]
fn conversations_route_across_routers_and_survive_a_router_leaving() {
    common::run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", uuid_like());
        let a = router(&endpoints, "router-a", &prefix).await;
        let b = router(&endpoints, "router-b", &prefix).await;
        let agents = agent_node(&endpoints, "agent-node-1", &prefix).await;
        settled(&a).await;
        settled(&b).await;
        // Both routers own partitions.
        let owned_by_a = (0..256)
            .filter(|p| a.router.shared.owner(*p) == centralino_router::shared::Owner::Local)
            .count();
        let owned_by_b = (0..256)
            .filter(|p| b.router.shared.owner(*p) == centralino_router::shared::Owner::Local)
            .count();
        assert_eq!(
            owned_by_a + owned_by_b,
            256,
            "a {owned_by_a} b {owned_by_b}"
        );
        assert!(
            owned_by_a > 50 && owned_by_b > 50,
            "a {owned_by_a} b {owned_by_b}"
        );

        // Reflection lists the public services of each listener, not the internal API.
        let mut public = vec![
            "centralino.v1.Admin".to_string(),
            "centralino.v1.ConversationService".to_string(),
            "grpc.health.v1.Health".to_string(),
        ];
        public.sort();
        let (v1, v1alpha) = common::reflected_services(a.grpc_addr).await;
        assert_eq!((&v1, &v1alpha), (&public, &public), "router reflection");
        let public = vec![
            "centralino.v1.AgentDesk".to_string(),
            "grpc.health.v1.Health".to_string(),
        ];
        let (v1, v1alpha) = common::reflected_services(agents.grpc_addr).await;
        assert_eq!((&v1, &v1alpha), (&public, &public), "agent-node reflection");

        let mut giulia = login_at(agents.grpc_addr, "giulia").await.expect("login");
        // An agent is logged in on one agent-node only.
        let second = agent_node(&endpoints, "agent-node-2", &prefix).await;
        let twice = login_at(second.grpc_addr, "giulia").await;
        assert_eq!(
            twice.err().map(|s| s.code()),
            Some(tonic::Code::FailedPrecondition),
            "a second login elsewhere is refused"
        );

        // Start on router A, talk through router B.
        let via_a = ConversationServiceClient::new(channel(a.grpc_addr).await);
        let mut via_b = ConversationServiceClient::new(channel(b.grpc_addr).await);
        let started = retrying(|| {
            let mut c = via_a.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-1").await }
        })
        .await;
        let offer = giulia.offer(30).await.expect("offer reaches the agent");
        assert_eq!(offer.conversation_id, started.conversation_id);
        giulia.accept(&offer).await;
        let mut events = common::events(&mut via_b, &started, 0).await;
        common::send_text(&mut via_b, &started, "m1", "ciao")
            .await
            .expect("send through router B");
        let got = giulia
            .next(5, |k| match k {
                agent_event::Kind::Message(m) => m.message.map(|m| m.text),
                _ => None,
            })
            .await;
        assert_eq!(got.as_deref(), Some("ciao"));
        giulia
            .say(&started.conversation_id, "a1", "buongiorno")
            .await;
        // The customer's own "ciao" comes first on the stream: look for the agent's reply.
        let seen = common::next_event(&mut events, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Message(m)) if m.sender == Sender::Agent as i32 => {
                Some(m.text.clone())
            }
            _ => None,
        })
        .await;
        assert_eq!(
            seen.as_deref(),
            Some("buongiorno"),
            "the customer sees the agent's reply through router B"
        );

        // The router that owns the conversation stops: the other one takes over and the
        // conversation keeps its agent and transcript.
        let owner_is_a = a.router.conversation(&started.conversation_id).is_some();
        let (gone, stays) = if owner_is_a { (a, b) } else { (b, a) };
        gone.stop().await;
        let via_stays = ConversationServiceClient::new(channel(stays.grpc_addr).await);
        retrying(|| {
            let mut c = via_stays.clone();
            let s = started.clone();
            async move {
                c.send_message(centralino_proto::v1::SendMessageRequest {
                    conversation_id: s.conversation_id.clone(),
                    token: s.token.clone(),
                    message_id: "m2".into(),
                    text: "ancora qui".into(),
                })
                .await
            }
        })
        .await;
        let got = giulia
            .next(10, |k| match k {
                agent_event::Kind::Message(m) => m.message.map(|m| m.text),
                _ => None,
            })
            .await;
        assert_eq!(
            got.as_deref(),
            Some("ancora qui"),
            "delivered after failover"
        );
        assert!(stays
            .router
            .conversation(&started.conversation_id)
            .is_some());
        giulia.close_and_wait(&started.conversation_id).await;

        // A drain hands every partition over before returning.
        let c = router(&endpoints, "router-c", &prefix).await;
        settled(&c).await;
        assert!(stays.drain().await, "drained within the budget");
        settled(&c).await;
        let owned_by_c = (0..256)
            .filter(|p| c.router.shared.owner(*p) == centralino_router::shared::Owner::Local)
            .count();
        assert_eq!(owned_by_c, 256);
        c.stop().await;
        second.shutdown().await;
        agents.shutdown().await;
        drop(etcd);
    });
}
