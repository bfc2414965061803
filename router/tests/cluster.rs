//! Cluster mode in one process against a real etcd: two routers and an agent-node. Requests
//! reach the owner of a conversation from any router; a router that stops hands over (or
//! loses) its partitions and their conversations continue on the other router.
//! (The same over the in-memory twin of etcd, no process: `cluster_memory.rs`. Multi-process
//! fault tests with kill -9 and SIGSTOP are in scripts/cluster_faults.py.)

use centralino_testkit as common;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{agent_event, conversation_event, Sender};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::Config;
use common::cluster::{
    agent_node_config, channel_at as channel, cluster_config, login_at, owned, owns_all, retrying,
    settled, unique_id,
};
use common::start_conversation;

fn etcd_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = cluster_config(node, prefix);
    config.cluster.etcd_endpoints = endpoints.to_vec();
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

#[test]
fn conversations_route_across_routers_and_survive_a_router_leaving() {
    common::run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let a = router(&endpoints, "router-a", &prefix).await;
        let b = router(&endpoints, "router-b", &prefix).await;
        let agents = agent_node(&endpoints, "agent-node-1", &prefix).await;
        settled(&a).await;
        settled(&b).await;
        // Both routers own partitions.
        let (owned_by_a, owned_by_b) = (owned(&a), owned(&b));
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
                // The customer's, not the agent's own echoed back.
                agent_event::Kind::Message(m) => m
                    .message
                    .filter(|m| m.sender != centralino_proto::v1::Sender::Agent as i32)
                    .map(|m| m.text),
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
                // The customer's, not the agent's own echoed back.
                agent_event::Kind::Message(m) => m
                    .message
                    .filter(|m| m.sender != centralino_proto::v1::Sender::Agent as i32)
                    .map(|m| m.text),
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
        owns_all(&c).await;
        c.stop().await;
        second.shutdown().await;
        agents.shutdown().await;
        drop(etcd);
    });
}
