//! Cluster mode in one process over the in-memory twin of etcd (`MemoryKv`), no etcd
//! process: two routers and two agent-nodes share one twin for membership, partition and
//! login claims and the fenced records. Partitions split, an agent logs in on one node only,
//! a conversation is served through either router, survives the crash of its router (its
//! lease expired in the twin) and a drain hands every partition to a new router.

use centralino_testkit as common;

use std::sync::Arc;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_cluster::partitions::ClaimValue;
use centralino_core::conversation::GetRecord;
use centralino_membership::kv::Kv;
use centralino_membership::membership::{member_key, Role};
use centralino_membership::memory::MemoryKv;
use centralino_proto::v1::agent_event;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_router::clustered::{self, ClusterRouter};
use common::cluster::{
    agent_node_config, channel_at as channel, cluster_config, login_at, owned, owns_all, retrying,
    settled,
};
use common::start_conversation;

const PREFIX: &str = "/twin";

async fn router(kv: &Arc<MemoryKv>, node: &str) -> ClusterRouter {
    let config = cluster_config(node, PREFIX);
    assert!(config.cluster.etcd_endpoints.is_empty(), "no etcd at all");
    clustered::start_with(config, kv.clone())
        .await
        .expect("router starts")
}

async fn agent_node(kv: &Arc<MemoryKv>, node: &str) -> RunningAgentNode {
    let config = agent_node_config(&cluster_config(node, PREFIX));
    cluster_node::start_with(config, kv.clone())
        .await
        .expect("agent-node starts")
}

/// Returns the nodes holding partition claims in the twin.
async fn claim_holders(kv: &MemoryKv) -> Vec<String> {
    let (claims, _) = kv
        .get_prefix(&format!("{PREFIX}/claims/"))
        .await
        .expect("read claims");
    claims
        .iter()
        .filter_map(|c| serde_json::from_slice::<ClaimValue>(&c.value).ok())
        .map(|c| c.node)
        .collect()
}

#[test]
fn a_cluster_on_the_twin_routes_fails_over_and_drains() {
    common::run(|| async {
        let kv = Arc::new(MemoryKv::new());
        let a = router(&kv, "router-a").await;
        let b = router(&kv, "router-b").await;
        let node_1 = agent_node(&kv, "agent-node-1").await;
        let node_2 = agent_node(&kv, "agent-node-2").await;
        settled(&a).await;
        settled(&b).await;

        // The partitions are split between the two routers, each held once.
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
        assert_eq!(claim_holders(&kv).await.len(), 256);

        // An agent is logged in on one agent-node only.
        let mut giulia = login_at(node_1.grpc_addr, "giulia").await.expect("login");
        let twice = login_at(node_2.grpc_addr, "giulia").await;
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
        let seen = common::next_event(&mut events, 5, common::message_text).await;
        assert!(
            seen.is_some(),
            "the customer sees the agent's reply through router B"
        );

        // The owning router crashes: nothing is revoked until its lease expires in the twin.
        let owner_is_a = a.router.conversation(&started.conversation_id).is_some();
        let (gone, stays) = if owner_is_a { (a, b) } else { (b, a) };
        let gone_id = gone.node_id.clone();
        gone.halt().await;
        let registration = member_key(PREFIX, Role::Router, &gone_id);
        assert!(
            claim_holders(&kv).await.contains(&gone_id),
            "a crashed router keeps its claims until its lease expires"
        );
        assert!(
            kv.expire_lease_of(&registration),
            "the crashed router's lease"
        );

        // The survivor adopts its partitions: the conversation keeps its agent and a
        // message reaches her through the survivor.
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
        let actor = stays
            .router
            .conversation(&started.conversation_id)
            .expect("the survivor serves the conversation");
        let record = actor.send(GetRecord).await.expect("record");
        assert_eq!(record.agent_id.as_deref(), Some("giulia"), "kept its agent");
        owns_all(&stays).await;
        let holders = claim_holders(&kv).await;
        assert_eq!(holders.len(), 256);
        assert!(holders.iter().all(|h| *h == stays.node_id), "{holders:?}");
        giulia.close_and_wait(&started.conversation_id).await;

        // A drain hands every partition to a new router before returning.
        let c = router(&kv, "router-c").await;
        settled(&c).await;
        assert!(stays.drain().await, "drained within the budget");
        owns_all(&c).await;
        let holders = claim_holders(&kv).await;
        assert!(holders.len() == 256 && holders.iter().all(|h| h == "router-c"));
        c.stop().await;
        node_2.shutdown().await;
        node_1.shutdown().await;
    });
}
