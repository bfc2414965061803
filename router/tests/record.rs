//! The system of record behind the router (issue 11): closed conversations are archived in
//! the record when their close is durable (listed and readable at once, before the rating
//! window ends), a rating updates the row, export and erasure by customer id (erasure
//! leaves nothing in the record nor in the live store), retention, the close → archive →
//! live-keys order across a crash between the two, and in cluster mode (two routers, real
//! etcd, PostgreSQL) every router reading every router's closed conversations, also after
//! their router died.

use centralino_testkit as common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use centralino_agent_node::cluster_node;
use centralino_core::recovery::adopt_partition;
use centralino_core::store::records::{conversation_key, messages_prefix, partition_of};
use centralino_core::store::{MemoryStore, Op, Store, StoreError};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    AgentStatus, CloseConversationRequest, ConversationOutcome, EraseCustomerRequest,
    ExportCustomerRequest, GetSnapshotRequest, GetTranscriptRequest, ListConversationsRequest,
    ListConversationsResponse, RateConversationRequest,
};
use centralino_record::testing::TestPostgres;
use centralino_record::{ArchiveFilter, Record};
use centralino_router::clustered;
use centralino_router::standalone::{self, StoreChoice};
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, retrying, unique_id,
};
use common::*;
use tonic::transport::Channel;
use tonic::Code;

async fn list_via(
    admin: &mut AdminClient<Channel>,
    request: ListConversationsRequest,
) -> ListConversationsResponse {
    admin
        .list_conversations(authed(request))
        .await
        .expect("list conversations")
        .into_inner()
}

fn ids(response: &ListConversationsResponse) -> Vec<String> {
    response
        .conversations
        .iter()
        .map(|c| c.conversation_id.clone())
        .collect()
}

/// Polls the list until `id` is in it (at most `secs`).
async fn listed(admin: &mut AdminClient<Channel>, id: &str, secs: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let all = list_via(admin, ListConversationsRequest::default()).await;
        if ids(&all).iter().any(|x| x == id) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a conversation of `customer` in support, served by `agent`, one message each way.
async fn served(
    client: &mut ConversationServiceClient<Channel>,
    agent: &mut Desk,
    customer: &str,
) -> centralino_proto::v1::StartConversationResponse {
    let chat = start_conversation(client, "support", "it", customer)
        .await
        .expect("start");
    assert_eq!(agent.take().await, chat.conversation_id);
    send_text(
        client,
        &chat,
        &format!("{customer}-m1"),
        "dov'è il mio ordine?",
    )
    .await
    .expect("send");
    agent
        .say(
            &chat.conversation_id,
            &format!("{customer}-a1"),
            "è in consegna",
        )
        .await;
    assert!(
        agent
            .hears(&chat.conversation_id, "dov'è il mio ordine?", 5)
            .await
    );
    chat
}

#[test]
fn a_closed_conversation_is_listed_and_readable_at_once_and_its_rating_updates_the_row() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        // The rating window is long: nothing waits for it.
        let config = config_with("", |c| c.routing.rating_window_secs = 600);
        let node = start_durable(config, dir.path()).await;
        let mut client = customer(&node).await;
        let mut admin = admin(&node).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();

        let mut chats = Vec::new();
        for customer in ["rec-ada", "rec-bea", "rec-cloe"] {
            let chat = served(&mut client, &mut giulia, customer).await;
            giulia.close_and_wait(&chat.conversation_id).await;
            chats.push(chat);
        }
        let ada = &chats[0];
        // Listed right after the close, the actor still lingering for the rating.
        assert!(node.router.conversation(&ada.conversation_id).is_some());
        assert!(listed(&mut admin, &ada.conversation_id, 3).await);
        let row = node
            .router
            .shared
            .archive
            .find(&ada.conversation_id)
            .await
            .expect("record")
            .expect("archived when the close was durable");
        assert!(row.conversation.rating.is_none());
        assert_eq!(
            row.conversation.token, "",
            "the customer's token is not archived"
        );
        let texts: Vec<&str> = row.transcript.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["dov'è il mio ordine?", "è in consegna"]);

        // Pages of two, newest first, by the record's cursor.
        let first = list_via(
            &mut admin,
            ListConversationsRequest {
                limit: 2,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            ids(&first),
            vec![
                chats[2].conversation_id.clone(),
                chats[1].conversation_id.clone()
            ]
        );
        assert!(!first.next_page_token.is_empty());
        let second = list_via(
            &mut admin,
            ListConversationsRequest {
                limit: 2,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&second), vec![ada.conversation_id.clone()]);
        assert!(second.next_page_token.is_empty(), "the last page");
        let bad_token = admin
            .list_conversations(authed(ListConversationsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            }))
            .await
            .expect_err("a malformed page token");
        assert_eq!(bad_token.code(), Code::InvalidArgument);

        // Filters: customer, language, agent.
        let of_bea = list_via(
            &mut admin,
            ListConversationsRequest {
                customer_id: "rec-bea".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&of_bea), vec![chats[1].conversation_id.clone()]);
        let english = list_via(
            &mut admin,
            ListConversationsRequest {
                language: "en".into(),
                ..Default::default()
            },
        )
        .await;
        assert!(english.conversations.is_empty());
        let by_marco = list_via(
            &mut admin,
            ListConversationsRequest {
                agent_id: "marco".into(),
                ..Default::default()
            },
        )
        .await;
        assert!(by_marco.conversations.is_empty());

        // A rating updates the row.
        client
            .rate_conversation(RateConversationRequest {
                conversation_id: ada.conversation_id.clone(),
                token: ada.token.clone(),
                good: false,
                comment: "lenta".into(),
            })
            .await
            .expect("rating");
        let bad = list_via(
            &mut admin,
            ListConversationsRequest {
                rating: "bad".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&bad), vec![ada.conversation_id.clone()]);
        assert_eq!(bad.conversations[0].rating_comment, "lenta");
        let unrated = list_via(
            &mut admin,
            ListConversationsRequest {
                rating: "unrated".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(unrated.conversations.len(), 2);

        // After a restart (the actors gone), the transcript comes from the record.
        drop((giulia, client, admin));
        node.shutdown().await;
        let restarted = restart_durable(config_with("", |_| {}), dir.path()).await;
        let node = restarted.node;
        assert!(node.router.conversation(&ada.conversation_id).is_none());
        let transcript = common::admin(&node)
            .await
            .get_transcript(authed(GetTranscriptRequest {
                conversation_id: ada.conversation_id.clone(),
            }))
            .await
            .expect("archived transcript")
            .into_inner();
        assert_eq!(transcript.messages.len(), 2);
        let summary = transcript.conversation.expect("summary");
        assert_eq!(summary.rating, "bad");
        assert_eq!(summary.outcome, ConversationOutcome::Completed as i32);
        // No live keys of the closed conversations remain after the restart's recovery.
        for chat in &chats {
            let key = conversation_key(&chat.conversation_id);
            assert_eq!(node.router.shared.store.get(&key).await.unwrap(), None);
        }
        node.shutdown().await;
    });
}

/// Returns how many keys or values of the live store mention `needle`, leaving out the
/// integration events (`event/`, moved to the record's outbox by its own change).
async fn live_mentions(store: &dyn Store, needle: &str) -> Vec<String> {
    store
        .scan("")
        .await
        .expect("scan")
        .into_iter()
        .filter(|(k, v)| {
            !k.starts_with("event/")
                && (k.contains(needle) || String::from_utf8_lossy(v).contains(needle))
        })
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn export_returns_what_is_held_and_erasure_leaves_nothing() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_with("", |c| c.routing.rating_window_secs = 600);
        let node = start_durable(config, dir.path()).await;
        let mut client = customer(&node).await;
        let mut admin = admin(&node).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let who = "gdpr-7q3x";

        // One closed conversation (rated), one still live and assigned.
        let closed = served(&mut client, &mut giulia, who).await;
        giulia.close_and_wait(&closed.conversation_id).await;
        client
            .rate_conversation(RateConversationRequest {
                conversation_id: closed.conversation_id.clone(),
                token: closed.token.clone(),
                good: true,
                comment: "grazie".into(),
            })
            .await
            .expect("rating");
        let live = start_conversation(&mut client, "support", "it", who)
            .await
            .expect("start");
        assert_eq!(giulia.take().await, live.conversation_id);

        let export = admin
            .export_customer(authed(ExportCustomerRequest {
                customer_id: who.into(),
            }))
            .await
            .expect("export")
            .into_inner();
        let doc: serde_json::Value = serde_json::from_str(&export.json).expect("json");
        assert_eq!(doc["customer_id"], who);
        let archived = doc["conversations"].as_array().expect("conversations");
        assert_eq!(archived.len(), 1, "{doc:#}");
        assert_eq!(archived[0]["id"], closed.conversation_id.as_str());
        assert_eq!(archived[0]["rating"]["comment"], "grazie");
        let live_docs = doc["live_conversations"].as_array().expect("live");
        assert!(
            live_docs
                .iter()
                .any(|c| c["id"] == live.conversation_id.as_str() && c["token"] == ""),
            "{doc:#}"
        );

        // Scopes: erasure is the admin's.
        let mut anonymous = tonic::Request::new(EraseCustomerRequest {
            customer_id: who.into(),
        });
        anonymous
            .metadata_mut()
            .insert("authorization", "Bearer nobody".parse().unwrap());
        assert_eq!(
            admin.erase_customer(anonymous).await.unwrap_err().code(),
            Code::Unauthenticated
        );
        let empty = admin
            .erase_customer(authed(EraseCustomerRequest {
                customer_id: String::new(),
            }))
            .await
            .expect_err("no customer id");
        assert_eq!(empty.code(), Code::InvalidArgument);

        let erased = admin
            .erase_customer(authed(EraseCustomerRequest {
                customer_id: who.into(),
            }))
            .await
            .expect("erase")
            .into_inner();
        assert_eq!(erased.live_closed, 1, "{erased:?}");
        assert_eq!(erased.conversations, 2, "{erased:?}");
        assert!(giulia.ended(&live.conversation_id, 5).await.is_some());
        assert!(node.router.conversation(&live.conversation_id).is_none());

        // Nothing left: the record's lists and export, the live store's keys.
        let record = node.router.shared.archive.record().clone();
        let filter = ArchiveFilter {
            customer_id: Some(who.into()),
            ..Default::default()
        };
        assert!(record
            .list(&filter, None, 10)
            .await
            .unwrap()
            .items
            .is_empty());
        assert!(record.get(&closed.conversation_id).await.unwrap().is_none());
        assert!(record.get(&live.conversation_id).await.unwrap().is_none());
        assert!(record.get_profile(who).await.unwrap().is_none());
        let export = record.export_customer(who).await.unwrap();
        assert!(export["conversations"].as_array().unwrap().is_empty());
        assert!(export["profile"].is_null());
        let left = live_mentions(node.router.shared.store.as_ref(), who).await;
        assert!(
            left.is_empty(),
            "live keys of the erased customer: {left:?}"
        );
        for id in [&closed.conversation_id, &live.conversation_id] {
            let left = live_mentions(node.router.shared.store.as_ref(), id).await;
            assert!(left.is_empty(), "live keys of {id}: {left:?}");
        }
        // A second erasure finds nothing.
        let again = admin
            .erase_customer(authed(EraseCustomerRequest {
                customer_id: who.into(),
            }))
            .await
            .expect("erase again")
            .into_inner();
        assert_eq!((again.live_closed, again.conversations), (0, 0));
        // Every table of the file, probed by the record's own API.
        let embedded = node
            .router
            .shared
            .archive
            .embedded()
            .expect("the record in the store file");
        assert_eq!(embedded.rows_mentioning(who).await.unwrap(), 0);
        assert_eq!(
            embedded
                .rows_mentioning(&closed.conversation_id)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            embedded
                .rows_mentioning(&live.conversation_id)
                .await
                .unwrap(),
            0
        );
        drop((giulia, client, admin));
        node.shutdown().await;
    });
}

#[test]
fn retention_deletes_archived_conversations_older_than_the_setting() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock =
            centralino_base::clock::ManualClock::new(instant_ms("2026-11-02T10:00:00+01:00"));
        let node = start_durable_manual(config(""), dir.path(), &clock).await;
        let mut client = customer(&node).await;
        // Nobody logged in: the customer leaves while queued (abandoned, archived too).
        let old = start_conversation(&mut client, "support", "it", "ret-old")
            .await
            .expect("start");
        client
            .close_conversation(CloseConversationRequest {
                conversation_id: old.conversation_id.clone(),
                token: old.token.clone(),
            })
            .await
            .expect("close");
        clock.advance(Duration::from_secs(3 * 24 * 3600));
        let new = start_conversation(&mut client, "support", "it", "ret-new")
            .await
            .expect("start");
        client
            .close_conversation(CloseConversationRequest {
                conversation_id: new.conversation_id.clone(),
                token: new.token.clone(),
            })
            .await
            .expect("close");
        let archive = node.router.shared.archive.clone();
        for id in [&old.conversation_id, &new.conversation_id] {
            let found = wait_until(3, || async { archive.find(id).await.unwrap().is_some() }).await;
            assert!(found, "{id} archived");
        }
        drop((client, archive));
        node.shutdown().await;

        // Kept for two days: the retention loop deletes the old one when the node starts.
        let keep_two_days = config_with("", |c| c.record.retention_days = 2);
        let node = restart_durable_manual(keep_two_days, dir.path(), &clock)
            .await
            .node;
        let archive = node.router.shared.archive.clone();
        let gone = wait_until(5, || async {
            archive.find(&old.conversation_id).await.unwrap().is_none()
        })
        .await;
        assert!(gone, "the conversation closed three days ago is deleted");
        assert!(archive.find(&new.conversation_id).await.unwrap().is_some());
        drop(archive);
        node.shutdown().await;
    });
}

/// A store that fails the removal of live conversation records while `fail_deletes` is
/// set: a crash between the archive write and the removal of the live keys, as the next
/// owner finds it.
#[derive(Default)]
struct FailingDeletes {
    inner: MemoryStore,
    fail_deletes: AtomicBool,
}

#[async_trait]
impl Store for FailingDeletes {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let deletes_live = ops
            .iter()
            .any(|op| matches!(op, Op::Delete(k) if k.starts_with("conv/")));
        if deletes_live && self.fail_deletes.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected: the router died here".into()));
        }
        self.inner.apply(ops).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.scan(prefix).await
    }
}

#[test]
fn a_crash_between_archive_and_live_key_removal_leaves_one_row_and_recovery_removes_the_keys() {
    run(|| async {
        let store = Arc::new(FailingDeletes::default());
        store.fail_deletes.store(true, Ordering::SeqCst);
        let config = config_with("", |c| c.routing.rating_window_secs = 1);
        let node = standalone::start_with(config, StoreChoice::Custom(store.clone()))
            .await
            .expect("node starts");
        let mut client = customer(&node).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let chat = served(&mut client, &mut giulia, "crash-cust").await;
        let id = chat.conversation_id.clone();
        giulia.close_and_wait(&id).await;

        let archive = node.router.shared.archive.clone();
        let filter = ArchiveFilter {
            customer_id: Some("crash-cust".into()),
            ..Default::default()
        };
        // The row is written at the close; the retirement after the rating window fails
        // to remove the live keys.
        let stopped = wait_until(5, || async { node.router.conversation(&id).is_none() }).await;
        assert!(stopped, "the actor stops after the rating window");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let key = conversation_key(&id);
        assert!(store.get(&key).await.unwrap().is_some(), "live keys kept");
        assert!(!store.scan(&messages_prefix(&id)).await.unwrap().is_empty());
        let rows = archive.list(&filter, None, 10).await.unwrap().items;
        assert_eq!(rows.len(), 1, "exactly one archive row");
        let first_close = rows[0].conversation.closed_at_ms;
        // The close's integration event came with the row, once.
        let closed_events = || async {
            node.router
                .shared
                .events
                .stored_after(0, 10_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.conversation_id == id && e.kind == "closed")
                .count()
        };
        assert_eq!(closed_events().await, 1, "one closed event with the row");

        // The next owner's recovery (the store works again): the live keys go, and no
        // second row is written.
        store.fail_deletes.store(false, Ordering::SeqCst);
        let adopted = adopt_partition(&node.router, partition_of(&id))
            .await
            .expect("recovery");
        assert_eq!(adopted.restored, 0, "a closed conversation is not revived");
        assert_eq!(store.get(&key).await.unwrap(), None);
        assert!(store.scan(&messages_prefix(&id)).await.unwrap().is_empty());
        let rows = archive.list(&filter, None, 10).await.unwrap().items;
        assert_eq!(rows.len(), 1, "still exactly one archive row");
        assert_eq!(rows[0].conversation.closed_at_ms, first_close);
        assert_eq!(rows[0].transcript.len(), 2);
        assert_eq!(
            closed_events().await,
            1,
            "the retirement's archive write adds no second closed event"
        );
        drop((giulia, client, archive));
        node.shutdown().await;
    });
}

#[test]
fn in_a_cluster_every_router_reads_every_routers_closed_conversations_also_after_one_died() {
    run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let pg = TestPostgres::start_new().expect("PostgreSQL (scripts/ensure_postgres.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let router_config = |node: &str| {
            let mut config = cluster_config(node, &prefix);
            config.cluster.etcd_endpoints = endpoints.clone();
            config.record.postgres_url = pg.url();
            config.routing.rating_window_secs = 600;
            config
        };
        let a = clustered::start(router_config("router-rec-a"))
            .await
            .expect("router a starts");
        let b = clustered::start(router_config("router-rec-b"))
            .await
            .expect("router b starts");
        let agents = cluster_node::start(agent_node_config(&router_config("agent-node-rec")))
            .await
            .expect("agent-node starts");
        common::cluster::settled(&a).await;
        common::cluster::settled(&b).await;
        let mut giulia = login_at(agents.grpc_addr, "giulia").await.expect("login");
        // Both routers see her available before the first offer.
        for addr in [a.grpc_addr, b.grpc_addr] {
            let seen = wait_until(20, || async move {
                let mut admin = AdminClient::new(channel_at(addr).await);
                admin
                    .get_snapshot(authed(GetSnapshotRequest {}))
                    .await
                    .is_ok_and(|s| {
                        s.into_inner().agents.iter().any(|x| {
                            x.agent_id == "giulia" && x.status == AgentStatus::Available as i32
                        })
                    })
            })
            .await;
            assert!(seen, "giulia available on {addr}");
        }

        // Conversations started through router a until one lives on a (its partition's
        // owner), closed there.
        let via_a = ConversationServiceClient::new(channel_at(a.grpc_addr).await);
        let mut on_a = None;
        for n in 0..40 {
            let chat = retrying(|| {
                let mut c = via_a.clone();
                let who = format!("cl-{n}");
                async move { start_conversation(&mut c, "support", "it", &who).await }
            })
            .await;
            assert_eq!(giulia.take().await, chat.conversation_id);
            let mut c = via_a.clone();
            send_text(&mut c, &chat, &format!("cl-{n}-m1"), "ciao dal cluster")
                .await
                .expect("send");
            assert!(
                giulia
                    .hears(&chat.conversation_id, "ciao dal cluster", 5)
                    .await
            );
            giulia.close_and_wait(&chat.conversation_id).await;
            if a.router.conversation(&chat.conversation_id).is_some() {
                on_a = Some(chat);
                break;
            }
        }
        let chat = on_a.expect("a conversation owned by router a");
        let id = chat.conversation_id.clone();

        // Listed and readable from b right after the close (a still holds the actor).
        let mut admin_b = AdminClient::new(channel_at(b.grpc_addr).await);
        assert!(
            listed(&mut admin_b, &id, 5).await,
            "b lists a's closed conversation"
        );

        // Erasure through b of a customer whose live conversation a owns: b forwards, a
        // closes and retires it, the record forgets it.
        let live = retrying(|| {
            let mut c = via_a.clone();
            async move { start_conversation(&mut c, "support", "it", "cl-erase").await }
        })
        .await;
        assert_eq!(giulia.take().await, live.conversation_id);
        assert!(
            a.router.conversation(&live.conversation_id).is_some(),
            "owned by a"
        );
        let erased = admin_b
            .erase_customer(authed(EraseCustomerRequest {
                customer_id: "cl-erase".into(),
            }))
            .await
            .expect("erase through b")
            .into_inner();
        assert_eq!(
            (erased.live_closed, erased.conversations),
            (1, 1),
            "{erased:?}"
        );
        assert!(giulia.ended(&live.conversation_id, 5).await.is_some());
        let record_b = b.router.shared.archive.record().clone();
        assert!(record_b.get(&live.conversation_id).await.unwrap().is_none());
        let live_key = conversation_key(&live.conversation_id);
        assert_eq!(b.router.shared.store.get(&live_key).await.unwrap(), None);

        // a dies; its lease expires and b adopts its partitions (retiring the closed
        // conversation: no second row, no live keys).
        a.halt().await;
        let adopted = wait_until(30, || async {
            b.router.shared.owner(partition_of(&id)) == centralino_core::shared::Owner::Local
        })
        .await;
        assert!(adopted, "b owns the dead router's partition");
        let key = conversation_key(&id);
        let retired = wait_until(15, || async {
            matches!(b.router.shared.store.get(&key).await, Ok(None))
        })
        .await;
        assert!(retired, "the live keys are removed by the next owner");
        assert!(listed(&mut admin_b, &id, 5).await);
        let transcript = retrying(|| {
            let mut admin = admin_b.clone();
            let id = id.clone();
            async move {
                admin
                    .get_transcript(authed(GetTranscriptRequest {
                        conversation_id: id,
                    }))
                    .await
            }
        })
        .await
        .into_inner();
        let texts: Vec<&str> = transcript
            .messages
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(
            texts,
            ["ciao dal cluster"],
            "the transcript from the record"
        );
        assert_eq!(
            transcript.conversation.expect("summary").conversation_id,
            id
        );
        let record = b.router.shared.archive.record().clone();
        let filter = ArchiveFilter {
            customer_id: transcript_customer(&record, &id).await,
            ..Default::default()
        };
        let rows = record.list(&filter, None, 100).await.unwrap().items;
        assert_eq!(
            rows.iter().filter(|r| r.id == id).count(),
            1,
            "exactly one archive row"
        );
        drop(giulia);
        b.stop().await;
        drop(agents);
    });
}

/// Returns the customer of an archived conversation.
async fn transcript_customer(record: &Arc<dyn Record>, id: &str) -> Option<String> {
    record
        .get(id)
        .await
        .expect("record")
        .expect("archived")
        .customer_id
}

#[test]
fn cluster_mode_outside_dev_mode_needs_the_record_and_no_placeholder() {
    run(|| async {
        let mut config = cluster_config("router-rec-cfg", &format!("/test-{}", unique_id()));
        config.node.dev_mode = false;
        config.node.admin_token.clear();
        let problems = config.record.problems(false);
        assert!(problems.is_empty(), "{problems:?}");
        // A DSN with the example's placeholder password is refused outside dev mode.
        config.record.postgres_url = "postgres://centralino:CHANGE-ME-db@db:5432/centralino".into();
        let problems = config.record.problems(false).join("\n");
        assert!(problems.contains("record.postgres_url"), "{problems}");
        assert!(
            config.record.problems(true).is_empty(),
            "accepted in dev mode"
        );
        let problems = config.credential_problems().join("\n");
        assert!(problems.contains("record.postgres_url"), "{problems}");
        // Without a DSN a router refuses to start, naming the key (before it joins etcd).
        let mut dev = cluster_config("router-rec-cfg", &format!("/test-{}", unique_id()));
        dev.node.dev_mode = false;
        dev.node.admin_token.clear();
        dev.record.postgres_url.clear();
        let kv: Arc<dyn centralino_membership::kv::Kv> =
            Arc::new(centralino_membership::memory::MemoryKv::new());
        let err = clustered::start_with(dev, kv)
            .await
            .err()
            .expect("no record, no start");
        assert!(err.to_string().contains("record.postgres_url"), "{err}");
        // The environment variable sets it.
        let text = config_text("");
        let loaded = centralino_router::config::Config::from_toml(
            &text,
            vec![(
                "CENTRALINO_RECORD__POSTGRES_URL".to_string(),
                "postgres://u:p@db:5432/c".to_string(),
            )],
        )
        .expect("configuration");
        assert_eq!(loaded.record.postgres_url, "postgres://u:p@db:5432/c");
        assert_eq!(loaded.record.pool_size, 10);
        assert_eq!(loaded.record.retention_days, 0);
    });
}
