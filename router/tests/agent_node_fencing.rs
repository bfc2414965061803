//! Agent-nodes fence themselves in time, over the in-memory twin of etcd where a lease can
//! be made to expire: an agent-node whose lease expired claims its agents again under a new
//! lease before it serves them again, and an agent whose claim another node took meanwhile
//! is evicted from the old node (its desktop told to log in again) and gets no reservation
//! there.

use centralino_testkit as common;

use std::sync::Arc;
use std::time::Duration;

use centralino_agent_node::cluster_node::RunningAgentNode;
use centralino_membership::kv::Kv;
use centralino_membership::membership::{agent_claim_key, member_key, Role};
use centralino_membership::memory::MemoryKv;
use centralino_proto::v1::agent_event;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_router::clustered::ClusterRouter;
use common::cluster::{
    channel_at as channel, login_at, retrying, settled, twin_agent_node, twin_router,
};
use common::start_conversation;

const PREFIX: &str = "/fencing";

async fn router(kv: &Arc<MemoryKv>, node: &str) -> ClusterRouter {
    twin_router(kv, node, PREFIX).await
}

async fn agent_node(kv: &Arc<MemoryKv>, node: &str) -> RunningAgentNode {
    twin_agent_node(kv, node, PREFIX).await
}

/// The lease `node` is registered under now.
async fn lease_of(kv: &MemoryKv, node: &str) -> Option<i64> {
    kv.get(&member_key(PREFIX, Role::AgentNode, node))
        .await
        .expect("read the member")
        .map(|m| m.lease)
}

/// The agent's claim: holder and lease.
async fn claim_of(kv: &MemoryKv, agent_id: &str) -> Option<(String, i64)> {
    kv.get(&agent_claim_key(PREFIX, agent_id))
        .await
        .expect("read the claim")
        .map(|c| (String::from_utf8_lossy(&c.value).to_string(), c.lease))
}

fn customer_text(kind: agent_event::Kind) -> Option<String> {
    match kind {
        agent_event::Kind::Message(m) => m
            .message
            .filter(|m| m.sender != centralino_proto::v1::Sender::Agent as i32)
            .map(|m| m.text),
        _ => None,
    }
}

#[test]
fn an_agent_node_whose_lease_expired_claims_its_agents_again_and_serves_on() {
    common::run(|| async {
        let kv = Arc::new(MemoryKv::new());
        let a = router(&kv, "router-a").await;
        let node = agent_node(&kv, "agent-node-1").await;
        settled(&a).await;
        let mut giulia = login_at(node.grpc_addr, "giulia").await.expect("login");
        let first_lease = lease_of(&kv, "agent-node-1").await.expect("registered");
        assert_eq!(
            claim_of(&kv, "giulia").await,
            Some(("agent-node-1".to_string(), first_lease)),
            "the login claim is bound to the node's lease"
        );

        let mut customer = ConversationServiceClient::new(channel(a.grpc_addr).await);
        let started = retrying(|| {
            let mut c = customer.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-1").await }
        })
        .await;
        let offer = giulia.offer(30).await.expect("an offer");
        giulia.accept(&offer).await;

        // The lease expires (the node was paused or cut off from etcd past its TTL): its
        // registration and the agent's claim go with it.
        assert!(kv.expire(first_lease), "the node's lease");
        assert_eq!(claim_of(&kv, "giulia").await, None, "the claim went too");

        // The node registers again and binds the claim to its new lease.
        let rebound = common::wait_until(10, || {
            let kv = kv.clone();
            async move {
                match (
                    lease_of(&kv, "agent-node-1").await,
                    claim_of(&kv, "giulia").await,
                ) {
                    (Some(lease), Some((holder, claim_lease))) => {
                        lease != first_lease && claim_lease == lease && holder == "agent-node-1"
                    }
                    _ => false,
                }
            }
        })
        .await;
        assert!(rebound, "the claim is bound to the node's new lease");

        // And it serves on: the customer's message reaches the agent, her reply the customer,
        // and a new conversation is offered to her.
        let mut events = common::events(&mut customer, &started, 0).await;
        retrying(|| {
            let mut c = customer.clone();
            let s = started.clone();
            async move { common::send_text(&mut c, &s, "m1", "ci sei?").await }
        })
        .await;
        assert_eq!(
            giulia.next(10, customer_text).await.as_deref(),
            Some("ci sei?")
        );
        giulia.say(&started.conversation_id, "a1", "sì").await;
        assert!(
            common::next_event(&mut events, 10, common::message_text)
                .await
                .is_some(),
            "the agent's reply reaches the customer"
        );
        // Still holding the first (capacity 2): the routers count her in again although
        // they had marked her disconnected while her node was gone.
        let second = retrying(|| {
            let mut c = customer.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-2").await }
        })
        .await;
        let offer = giulia
            .offer(30)
            .await
            .expect("offers go on after the fence");
        assert_eq!(offer.conversation_id, second.conversation_id);
        node.shutdown().await;
        a.stop().await;
    });
}

#[test]
fn an_agent_whose_claim_another_node_took_is_evicted_and_reserved_there_only() {
    common::run(|| async {
        let kv = Arc::new(MemoryKv::new());
        let a = router(&kv, "router-a").await;
        let node_1 = agent_node(&kv, "agent-node-1").await;
        let node_2 = agent_node(&kv, "agent-node-2").await;
        settled(&a).await;
        let mut giulia = login_at(node_1.grpc_addr, "giulia").await.expect("login");
        let lease_1 = lease_of(&kv, "agent-node-1").await.expect("node 1");
        let lease_2 = lease_of(&kv, "agent-node-2").await.expect("node 2");

        // Node 1's lease expires and, before it is back, the agent's claim goes to node 2
        // (as a login there would take it).
        assert!(kv.expire(lease_1));
        kv.put(
            &agent_claim_key(PREFIX, "giulia"),
            b"agent-node-2".to_vec(),
            Some(lease_2),
        )
        .await
        .expect("claim for node 2");

        // Node 1 finds the claim gone to node 2 and ends the agent's desktop stream there.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let ended = loop {
            match tokio::time::timeout_at(deadline, giulia.events.message()).await {
                Err(_) => break None,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => break Some(tonic::Code::Ok),
                Ok(Err(status)) => break Some(status.code()),
            }
        };
        assert_eq!(
            ended,
            Some(tonic::Code::FailedPrecondition),
            "the old node's desktop stream ends: log in again"
        );
        assert_eq!(
            claim_of(&kv, "giulia").await.map(|(holder, _)| holder),
            Some("agent-node-2".to_string()),
            "node 1 never takes the claim back"
        );

        // A conversation is offered where the claim is, never on node 1.
        let customer = ConversationServiceClient::new(channel(a.grpc_addr).await);
        let started = retrying(|| {
            let mut c = customer.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-3").await }
        })
        .await;
        let mut again = login_at(node_2.grpc_addr, "giulia")
            .await
            .expect("login on node 2, which holds the claim");
        let offer = again.offer(30).await.expect("offered on node 2");
        assert_eq!(offer.conversation_id, started.conversation_id);
        let on_node_1 = login_at(node_1.grpc_addr, "giulia").await;
        assert_eq!(
            on_node_1.err().map(|s| s.code()),
            Some(tonic::Code::FailedPrecondition),
            "a login on node 1 is refused while node 2 holds the claim"
        );
        node_2.shutdown().await;
        node_1.shutdown().await;
        a.stop().await;
    });
}
