//! Durable before acknowledged in cluster mode (issue 11): the fenced etcd store wrapped
//! in the fault-injecting twin acknowledges, shows and delivers nothing whose transaction
//! failed; and an etcd started with a tiny `--quota-backend-bytes` reaches NOSPACE
//! ("etcdserver: mvcc: database space exceeded"): writes answer RESOURCE_EXHAUSTED and
//! change nothing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use centralino_testkit as common;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_core::conversation::GetRecord;
use centralino_core::store::fault::FaultStore;
use centralino_core::store::records::{
    conversation_key, messages_prefix, ConversationRecord, State,
};
use centralino_core::store::{Store, StoreError};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_membership::etcd::Etcd;
use centralino_membership::kv::{Kv, KvError};
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    CloseConversationRequest, ConversationOutcome, RateConversationRequest,
};
use centralino_router::clustered::{self, ClusterRouter, StoreWrap};
use centralino_router::config::Config;
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, settled, unique_id,
};
use common::{send_text, start_conversation};
use tonic::Code;

type Faults = Arc<FaultStore<Arc<dyn Store>>>;

fn etcd_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = cluster_config(node, prefix);
    config.cluster.etcd_endpoints = endpoints.to_vec();
    config
}

/// Starts a router whose fenced store is wrapped in a [`FaultStore`]; returns both.
async fn router_on_faults(endpoints: &[String], prefix: &str) -> (ClusterRouter, Faults) {
    let cell: Arc<OnceLock<Faults>> = Arc::new(OnceLock::new());
    let keep = cell.clone();
    let wrap: StoreWrap = Arc::new(move |inner: Arc<dyn Store>| {
        let faults = Arc::new(FaultStore::new(inner));
        let _ = keep.set(faults.clone());
        faults as Arc<dyn Store>
    });
    let router = clustered::start_on_etcd(etcd_config(endpoints, "router-a", prefix), Some(wrap))
        .await
        .expect("router starts");
    let faults = cell.get().cloned().expect("the store was wrapped");
    (router, faults)
}

async fn agent_node(endpoints: &[String], prefix: &str) -> RunningAgentNode {
    cluster_node::start(agent_node_config(&etcd_config(
        endpoints,
        "agent-node-1",
        prefix,
    )))
    .await
    .expect("agent-node starts")
}

async fn live(router: &ClusterRouter, id: &str) -> ConversationRecord {
    router
        .router
        .conversation(id)
        .expect("live conversation")
        .send(GetRecord)
        .await
        .expect("actor answers")
}

/// The record as etcd holds it (read through the router's store).
async fn stored(store: &dyn Store, id: &str) -> ConversationRecord {
    let key = conversation_key(id);
    let bytes = store.get(&key).await.expect("read").expect("record stored");
    centralino_core::store::records::decode(&key, &bytes).expect("decodes")
}

async fn stored_messages(store: &dyn Store, id: &str) -> usize {
    store.scan(&messages_prefix(id)).await.expect("scan").len()
}

#[test]
fn the_fenced_etcd_store_failing_acknowledges_nothing() {
    common::run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let (a, faults) = router_on_faults(&endpoints, &prefix).await;
        let agents = agent_node(&endpoints, &prefix).await;
        settled(&a).await;
        let mut giulia = login_at(agents.grpc_addr, "giulia").await.expect("login");
        let mut client = ConversationServiceClient::new(channel_at(a.grpc_addr).await);
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .expect("start");
        let cid = chat.conversation_id.clone();
        assert_eq!(giulia.take().await, cid);
        send_text(&mut client, &chat, "m1", "ciao")
            .await
            .expect("m1");
        assert!(giulia.hears(&cid, "ciao", 5).await);

        // A message whose transaction fails: refused, not delivered, not stored.
        faults.fail_prefix(
            messages_prefix(&cid),
            StoreError::Backend("injected".into()),
        );
        let refused = send_text(&mut client, &chat, "m2", "ci sei?").await;
        assert_eq!(refused.err().map(|s| s.code()), Some(Code::Unavailable));
        assert!(!giulia.hears(&cid, "ci sei?", 1).await);
        assert_eq!(stored_messages(faults.as_ref(), &cid).await, 1);
        faults.clear();
        let retried = send_text(&mut client, &chat, "m2", "ci sei?")
            .await
            .expect("retry");
        assert_eq!((retried.seq, retried.duplicate), (2, false));
        assert!(giulia.hears(&cid, "ci sei?", 5).await);

        // A close whose transaction fails leaves it open in etcd and in the actor.
        let close = CloseConversationRequest {
            conversation_id: cid.clone(),
            token: chat.token.clone(),
        };
        faults.fail_prefix(conversation_key(&cid), StoreError::Full("injected".into()));
        let refused = client.close_conversation(close.clone()).await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(live(&a, &cid).await.state, State::Assigned);
        assert_eq!(stored(faults.as_ref(), &cid).await.state, State::Assigned);
        assert!(giulia.ended(&cid, 1).await.is_none());
        faults.clear();
        let closed = client.close_conversation(close).await.expect("close");
        assert_eq!(
            closed.into_inner().outcome,
            ConversationOutcome::Completed as i32
        );
        assert_eq!(stored(faults.as_ref(), &cid).await.state, State::Closed);

        // A rating likewise.
        let rate = RateConversationRequest {
            conversation_id: cid.clone(),
            token: chat.token.clone(),
            good: true,
            comment: String::new(),
        };
        faults.fail_prefix(
            conversation_key(&cid),
            StoreError::Backend("injected".into()),
        );
        let refused = client.rate_conversation(rate.clone()).await;
        assert_eq!(refused.err().map(|s| s.code()), Some(Code::Unavailable));
        assert_eq!(live(&a, &cid).await.rating, None);
        assert_eq!(stored(faults.as_ref(), &cid).await.rating, None);
        faults.clear();
        client.rate_conversation(rate).await.expect("rated");
        assert!(stored(faults.as_ref(), &cid).await.rating.is_some());
        drop((giulia, client));
        agents.shutdown().await;
        a.stop().await;
    });
}

#[test]
fn an_etcd_out_of_space_answers_resource_exhausted_and_changes_nothing() {
    common::run(|| async {
        // Room for the cluster's own keys (membership, 256 partition claims), little more.
        let etcd = EtcdCluster::start_with_flags(1, &["--quota-backend-bytes=4194304"])
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let (a, faults) = router_on_faults(&endpoints, &prefix).await;
        let agents = agent_node(&endpoints, &prefix).await;
        settled(&a).await;
        let mut giulia = login_at(agents.grpc_addr, "giulia").await.expect("login");
        let mut client = ConversationServiceClient::new(channel_at(a.grpc_addr).await);
        let chat = start_conversation(&mut client, "support", "it", "bruno")
            .await
            .expect("start");
        let cid = chat.conversation_id.clone();
        assert_eq!(giulia.take().await, cid);
        send_text(&mut client, &chat, "m1", "ciao")
            .await
            .expect("m1");
        assert!(giulia.hears(&cid, "ciao", 5).await);
        let before = stored(faults.as_ref(), &cid).await;

        // Fill etcd until it raises NOSPACE.
        let kv = Etcd::connect(&endpoints, Duration::from_secs(5))
            .await
            .expect("connect");
        let mut no_space = None;
        for i in 0..64 {
            match kv
                .put(&format!("/ballast/{i}"), vec![7u8; 512 * 1024], None)
                .await
            {
                Ok(()) => {}
                Err(e) => {
                    no_space = Some(e);
                    break;
                }
            }
        }
        let no_space = no_space.expect("etcd never ran out of space");
        assert!(matches!(no_space, KvError::NoSpace(_)), "{no_space:?}");
        assert!(
            no_space.to_string().contains("database space exceeded"),
            "{no_space}"
        );

        // Every write answers RESOURCE_EXHAUSTED; nothing changes, nothing is shown.
        let refused = send_text(&mut client, &chat, "m2", "pronto?").await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        assert!(!giulia.hears(&cid, "pronto?", 1).await);
        let close = CloseConversationRequest {
            conversation_id: cid.clone(),
            token: chat.token.clone(),
        };
        let refused = client.close_conversation(close).await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        let refused = start_conversation(&mut client, "support", "it", "carla").await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        assert!(giulia.ended(&cid, 1).await.is_none());
        assert_eq!(live(&a, &cid).await.state, State::Assigned);
        let after = stored(faults.as_ref(), &cid).await;
        assert_eq!((after.state, after.outcome), (before.state, before.outcome));
        assert_eq!(stored_messages(faults.as_ref(), &cid).await, 1);
        assert_eq!(faults.injected(), 0, "the failures are etcd's own");
        drop((giulia, client));
        agents.shutdown().await;
        a.stop().await;
    });
}
