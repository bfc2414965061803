//! Accepting an offer when the conversation and its department queue run on different
//! routers (real etcd, two routers, one agent-node). The queue tells the conversation of
//! the offer and reserves the agent; the agent's accept travels agent-node → router →
//! conversation. Before the fix the queue's notice went on a separate, unawaited call, so
//! an agent quick to accept reached the conversation first: the accept was refused ("offer
//! is no longer valid"), the agent excluded for that conversation, and the conversation
//! waited with nobody left to take it. Now the agent is reserved only once the
//! conversation has the offer in its mailbox.

use centralino_testkit as common;

use std::net::SocketAddr;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_core::conversation::GetRecord;
use centralino_core::store::records::State;
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{agent_command, agent_event, AcceptOffer, AgentStatus};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::Config;
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, retrying, settled, split_settled,
    unique_id,
};
use common::{start_conversation, Desk};

const DEPARTMENT: &str = "support";

fn etcd_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = cluster_config(node, prefix);
    config.cluster.etcd_endpoints = endpoints.to_vec();
    // An offer does not run out on a busy machine while the test accepts it: any refusal
    // seen here is the router's.
    config.desk.offer_timeout_secs = 60;
    config
}

/// Starts a conversation of `customer` in [`DEPARTMENT`] through the router at `addr`
/// (retrying while a partition changes owner) and returns its id.
async fn start_at(addr: SocketAddr, customer: &str) -> String {
    let client = ConversationServiceClient::new(channel_at(addr).await);
    retrying(|| {
        let mut c = client.clone();
        let customer = customer.to_string();
        async move { start_conversation(&mut c, DEPARTMENT, "it", &customer).await }
    })
    .await
    .conversation_id
}

/// What the desk shows after an accept.
#[derive(Debug)]
enum Answer {
    Assigned,
    Revoked(String),
}

/// Waits for `who`'s offer of `conversation_id`, accepts it at once and asserts that the
/// first answer is the assignment (not a revoked offer).
async fn accept_at_once(desk: &mut Desk, conversation_id: &str, who: &str) {
    let offer = desk
        .offer(20)
        .await
        .unwrap_or_else(|| panic!("{who} gets no offer for {conversation_id}"));
    assert_eq!(offer.conversation_id, conversation_id, "{who}'s offer");
    desk.send(agent_command::Kind::Accept(AcceptOffer {
        reservation_id: offer.reservation_id.clone(),
    }))
    .await;
    // Generous: the assignment waits for its etcd write, slow on a busy machine.
    let answer = desk
        .next(30, |k| match k {
            agent_event::Kind::Assigned(a) if a.conversation_id == conversation_id => {
                Some(Answer::Assigned)
            }
            agent_event::Kind::OfferRevoked(r) if r.conversation_id == conversation_id => {
                Some(Answer::Revoked(r.reason))
            }
            _ => None,
        })
        .await;
    match answer {
        Some(Answer::Assigned) => {}
        Some(Answer::Revoked(reason)) => {
            panic!("{who}'s accept of {conversation_id} was refused: {reason}")
        }
        None => panic!("{who} is not assigned {conversation_id} within 30 s"),
    }
}

/// Asserts that `router` runs `conversation_id` and that it is assigned to `agent_id`.
async fn assert_assigned(router: &ClusterRouter, conversation_id: &str, agent_id: &str) {
    let actor = router
        .router
        .conversation(conversation_id)
        .unwrap_or_else(|| panic!("{} does not run {conversation_id}", router.node_id));
    let rec = actor.send(GetRecord).await.expect("conversation answers");
    assert_eq!(rec.state, State::Assigned, "state of {conversation_id}");
    assert_eq!(
        rec.agent_id.as_deref(),
        Some(agent_id),
        "agent of {conversation_id}"
    );
}

#[test]
fn an_accept_lands_when_the_queue_runs_on_another_router() {
    common::run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let a = clustered::start(etcd_config(&endpoints, "router-a", &prefix))
            .await
            .expect("router a starts");
        let b = clustered::start(etcd_config(&endpoints, "router-b", &prefix))
            .await
            .expect("router b starts");
        let agents: RunningAgentNode = cluster_node::start(agent_node_config(&etcd_config(
            &endpoints,
            "agent-node-1",
            &prefix,
        )))
        .await
        .expect("agent-node starts");
        settled(&a).await;
        settled(&b).await;
        split_settled(&a, &b).await;

        // `queue` runs the department's queue, `other` does not; a conversation started
        // through a router gets an id in that router's partitions.
        let (queue, other) = if a.router.queue(DEPARTMENT).is_some() {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(
            queue.router.queue(DEPARTMENT).is_some() && other.router.queue(DEPARTMENT).is_none(),
            "the {DEPARTMENT} queue runs on exactly one router"
        );

        let mut giulia = login_at(agents.grpc_addr, "giulia").await.expect("login");
        let mut marco = login_at(agents.grpc_addr, "marco").await.expect("login");
        marco.set_status_and_wait(AgentStatus::Away).await;

        // The conversation beside its queue: the accept lands.
        let customer = format!("cust-{}", unique_id());
        let c1 = start_at(queue.grpc_addr, &customer).await;
        assert!(
            queue.router.conversation(&c1).is_some(),
            "c1 runs beside its queue"
        );
        accept_at_once(&mut giulia, &c1, "giulia").await;
        assert_assigned(queue, &c1, "giulia").await;

        // The same customer again, through the other router, while her agent is away: the
        // conversation runs on one router, its queue on the other, and marco's accept
        // lands (the case that hung).
        giulia.set_status_and_wait(AgentStatus::Away).await;
        marco.set_status_and_wait(AgentStatus::Available).await;
        let c2 = start_at(other.grpc_addr, &customer).await;
        assert!(
            other.router.conversation(&c2).is_some() && queue.router.conversation(&c2).is_none(),
            "c2 runs on the router without the queue"
        );
        accept_at_once(&mut marco, &c2, "marco").await;
        assert_assigned(other, &c2, "marco").await;

        // And again for new customers, one after the other: every quick accept across the
        // routers lands the first time.
        marco.close_and_wait(&c2).await;
        for round in 0..3 {
            let c = start_at(other.grpc_addr, &format!("cust-{}", unique_id())).await;
            assert!(
                other.router.conversation(&c).is_some(),
                "round {round}: the conversation runs on the router without the queue"
            );
            accept_at_once(&mut marco, &c, "marco").await;
            assert_assigned(other, &c, "marco").await;
            marco.close_and_wait(&c).await;
        }

        giulia.close_and_wait(&c1).await;
        agents.shutdown().await;
        a.stop().await;
        b.stop().await;
        drop(etcd);
    });
}
