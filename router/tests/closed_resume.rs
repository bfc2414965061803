//! A conversation closed just before its router died: the router that adopts the partition
//! retires it at once, yet a customer resuming the stream gets the transcript's last
//! messages and `closed` (not NOT_FOUND), and a wrong token still gets nothing.

use centralino_testkit as common;

use std::sync::Arc;

use centralino_agent_node::cluster_node::RunningAgentNode;
use centralino_membership::membership::{member_key, Role};
use centralino_membership::memory::MemoryKv;
use centralino_proto::v1::conversation_event::Kind;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{ConversationOutcome, StreamEventsRequest};
use centralino_router::clustered::ClusterRouter;
use common::cluster::{
    channel_at as channel, login_at, retrying, settled, twin_agent_node, twin_router,
};
use common::start_conversation;

const PREFIX: &str = "/closed";

async fn router(kv: &Arc<MemoryKv>, node: &str) -> ClusterRouter {
    twin_router(kv, node, PREFIX).await
}

async fn agent_node(kv: &Arc<MemoryKv>, node: &str) -> RunningAgentNode {
    twin_agent_node(kv, node, PREFIX).await
}

#[test]
fn a_conversation_closed_before_its_router_died_resumes_to_closed_on_the_next() {
    common::run(|| async {
        let kv = Arc::new(MemoryKv::new());
        let a = router(&kv, "router-a").await;
        let b = router(&kv, "router-b").await;
        let node = agent_node(&kv, "agent-node-1").await;
        settled(&a).await;
        settled(&b).await;
        let mut giulia = login_at(node.grpc_addr, "giulia").await.expect("login");
        let via_a = ConversationServiceClient::new(channel(a.grpc_addr).await);
        let started = retrying(|| {
            let mut c = via_a.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-1").await }
        })
        .await;
        let offer = giulia.offer(30).await.expect("an offer");
        giulia.accept(&offer).await;
        giulia
            .say(&started.conversation_id, "a1", "ecco a lei")
            .await;
        giulia.close_and_wait(&started.conversation_id).await;

        // Its router dies before retiring it; the other adopts the partition.
        let owner_is_a = a.router.conversation(&started.conversation_id).is_some();
        let (gone, stays) = if owner_is_a { (a, b) } else { (b, a) };
        let gone_id = gone.node_id.clone();
        gone.halt().await;
        assert!(kv.expire_lease_of(&member_key(PREFIX, Role::Router, &gone_id)));
        let via_stays = ConversationServiceClient::new(channel(stays.grpc_addr).await);

        // A wrong token gets PERMISSION_DENIED once the partition is adopted.
        let wrong = retrying(|| {
            let mut c = via_stays.clone();
            let id = started.conversation_id.clone();
            async move {
                match c
                    .stream_events(StreamEventsRequest {
                        conversation_id: id,
                        token: "not-the-token".into(),
                        after_event_id: 0,
                    })
                    .await
                {
                    Err(s) if s.code() == tonic::Code::Unavailable => Err(s),
                    other => Ok(other.err().map(|s| s.code())),
                }
            }
        })
        .await;
        assert_eq!(wrong, Some(tonic::Code::PermissionDenied));

        let mut events = retrying(|| {
            let mut c = via_stays.clone();
            let s = started.clone();
            async move {
                c.stream_events(StreamEventsRequest {
                    conversation_id: s.conversation_id.clone(),
                    token: s.token.clone(),
                    after_event_id: 0,
                })
                .await
                .map(tonic::Response::into_inner)
            }
        })
        .await;
        let mut texts = Vec::new();
        let mut outcome = None;
        while let Ok(Some(event)) = events.message().await {
            match event.kind {
                Some(Kind::Message(m)) => texts.push(m.text),
                Some(Kind::Closed(c)) => outcome = Some(c.outcome),
                _ => {}
            }
        }
        assert!(texts.contains(&"ecco a lei".to_string()), "{texts:?}");
        assert_eq!(outcome, Some(ConversationOutcome::Completed as i32));
        node.shutdown().await;
        stays.stop().await;
    });
}
