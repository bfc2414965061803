//! Customer profiles and the integration-event outbox in the system of record: two routers
//! of a cluster (real etcd, one throwaway PostgreSQL) closing conversations of one customer
//! at the same moment keep both history entries; a tier set on one router survives closes
//! on the other; sticky routing follows the latest close; the integration stream read on
//! one router, cut and resumed on the other misses and repeats nothing. The same scenarios
//! run on a standalone node (memory and embedded record), where both "routers" are the one
//! node.

use centralino_testkit as common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_cluster::partitions::winner;
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, AcceptOffer, AgentStatus, IntegrationEvent, SetCustomerTierRequest,
    StreamIntegrationEventsRequest,
};
use centralino_record::testing::TestPostgres;
use centralino_record::{PgConfig, PgRecord, Record};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::Config;
use centralino_router::shared::{Owner, Shared};
use centralino_router::store::profiles;
use centralino_router::store::records::{partition_of, ProfileRecord};
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, retrying, settled, split_settled,
    unique_id,
};
use common::{authed, start_conversation, Desk};
use tokio_stream::StreamExt;

// ---------------------------------------------------------------- shared scenarios ----

/// Starts a conversation of `customer` through the router at `addr` (retrying while a
/// partition changes owner) and returns its id.
async fn start_at(addr: SocketAddr, customer: &str) -> String {
    start_in(
        Via {
            addr,
            department: "support",
        },
        customer,
    )
    .await
}

/// A router and the department whose queue it runs (see [`profiles_scenario`]).
#[derive(Clone, Copy)]
struct Via {
    addr: SocketAddr,
    department: &'static str,
}

/// Starts a conversation of `customer` in `via.department` through `via.addr`.
async fn start_in(via: Via, customer: &str) -> String {
    let client = ConversationServiceClient::new(channel_at(via.addr).await);
    retrying(|| {
        let mut c = client.clone();
        let customer = customer.to_string();
        async move { start_conversation(&mut c, via.department, "it", &customer).await }
    })
    .await
    .conversation_id
}

/// Waits for the offer of `conversation_id` on `desk` and accepts it; when the offer ran
/// out before the accept landed (a busy test machine), takes the next offer of it again.
async fn take(desk: &mut Desk, conversation_id: &str, who: &str) -> centralino_proto::v1::Offer {
    enum Seen {
        Offer(Box<centralino_proto::v1::Offer>),
        Assigned,
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut offer = desk
        .offer(20)
        .await
        .unwrap_or_else(|| panic!("{who} gets no offer for {conversation_id}"));
    loop {
        assert_eq!(offer.conversation_id, conversation_id, "{who}'s offer");
        desk.send(agent_command::Kind::Accept(AcceptOffer {
            reservation_id: offer.reservation_id.clone(),
        }))
        .await;
        // Generous: the accept waits for the assignment's etcd write, slow on a busy machine.
        let seen = desk
            .next(30, |k| match k {
                agent_event::Kind::Assigned(a) if a.conversation_id == conversation_id => {
                    Some(Seen::Assigned)
                }
                agent_event::Kind::Offer(o) if o.conversation_id == conversation_id => {
                    Some(Seen::Offer(Box::new(o)))
                }
                _ => None,
            })
            .await;
        match seen {
            Some(Seen::Assigned) => return offer,
            Some(Seen::Offer(again)) if tokio::time::Instant::now() < deadline => offer = *again,
            _ => {
                let later = desk.collect_for(3000).await;
                panic!("{who} is not assigned {conversation_id}; then: {later:?}")
            }
        }
    }
}

/// Waits until `desk` saw every conversation of `ids` end.
async fn ended(desk: &mut Desk, ids: &[&str]) {
    let mut left: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    while !left.is_empty() {
        let gone = desk
            .next(10, |k| match k {
                agent_event::Kind::Ended(e) => Some(e.conversation_id.clone()),
                _ => None,
            })
            .await
            .unwrap_or_else(|| panic!("conversations {left:?} did not end"));
        left.remove(&gone);
    }
}

/// Returns the customer's profile in the record once `ok` holds for it (within 10 s), or
/// panics with the last profile seen.
async fn profile_until(
    record: &Arc<dyn Record>,
    customer: &str,
    what: &str,
    ok: impl Fn(&ProfileRecord) -> bool,
) -> ProfileRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let last = record
            .get_profile(customer)
            .await
            .expect("record reads")
            .map(|p| profiles::from_record(&p).expect("profile decodes"));
        if let Some(p) = &last {
            if ok(p) {
                return p.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: last profile {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn set_tier(addr: SocketAddr, customer: &str, tier: &str) {
    AdminClient::new(channel_at(addr).await)
        .set_customer_tier(authed(SetCustomerTierRequest {
            customer_id: customer.to_string(),
            tier: tier.to_string(),
        }))
        .await
        .expect("SetCustomerTier");
}

/// Two routers (`routers[0]`, `routers[1]`; the same node twice in standalone mode), the
/// agents giulia and marco on the agent-node at `agents`, one customer. Each router starts
/// conversations in a department whose queue it runs itself (on the base code an accept of
/// a conversation whose queue runs on the other router can hang: see the outbox11 report).
/// - two conversations, one on each router, closed by giulia at the same moment: both
///   enter the history;
/// - the tier set through router 0 while conversations are open survives their closes;
/// - giulia closes on router 1, then marco on router 0: the next conversation goes to marco.
async fn profiles_scenario(routers: [Via; 2], agents: SocketAddr, record: Arc<dyn Record>) {
    let customer = format!("cust-{}", unique_id());
    let mut giulia = login_at(agents, "giulia").await.expect("giulia logs in");
    let mut marco = login_at(agents, "marco").await.expect("marco logs in");
    marco.set_status_and_wait(AgentStatus::Away).await;

    // Two conversations of one customer, one per router: giulia has the first, marco the
    // second.
    let c1 = start_in(routers[0], &customer).await;
    take(&mut giulia, &c1, "giulia").await;
    giulia.set_status_and_wait(AgentStatus::Away).await;
    marco.set_status_and_wait(AgentStatus::Available).await;
    let c2 = start_in(routers[1], &customer).await;
    take(&mut marco, &c2, "marco").await;
    // Closed at the same moment: the two closes update the profile on two routers at once.
    tokio::join!(
        giulia.close(&c1, "first summary"),
        marco.close(&c2, "second summary")
    );
    ended(&mut giulia, &[&c1]).await;
    ended(&mut marco, &[&c2]).await;
    let p = profile_until(&record, &customer, "both closes in the history", |p| {
        p.closes.len() == 2
    })
    .await;
    let summaries: BTreeSet<&str> = p.summaries.iter().map(String::as_str).collect();
    assert_eq!(
        summaries,
        BTreeSet::from(["first summary", "second summary"]),
        "neither close overwrote the other: {p:?}"
    );
    let agents: BTreeSet<&str> = p.last_agents.iter().map(String::as_str).collect();
    assert_eq!(agents, BTreeSet::from(["giulia", "marco"]), "{p:?}");
    assert_eq!(p.contacts, 2, "both starts counted: {p:?}");
    // Whichever close is the later one by close time is the sticky agent.
    let latest = p.closes.first().and_then(|c| c.agent.clone());
    assert_eq!(p.last_agent, latest, "{p:?}");

    // Marco serves the next one (giulia is still away), giulia the one after (marco away);
    // a sticky wait for the away agent runs out first.
    let c3 = start_in(routers[0], &customer).await;
    take(&mut marco, &c3, "marco").await;
    marco.set_status_and_wait(AgentStatus::Away).await;
    giulia.set_status_and_wait(AgentStatus::Available).await;
    let c4 = start_in(routers[1], &customer).await;
    take(&mut giulia, &c4, "giulia").await;
    // VIP through router 0 while both actors hold the profile as it was without a tier.
    set_tier(routers[0].addr, &customer, "vip").await;
    // Giulia closes on router 1 first, then marco on router 0: marco's close is the latest.
    giulia.close(&c4, "giulia again").await;
    ended(&mut giulia, &[&c4]).await;
    profile_until(&record, &customer, "giulia's close recorded", |p| {
        p.closes.len() == 3
    })
    .await;
    marco.close(&c3, "marco's turn").await;
    ended(&mut marco, &[&c3]).await;
    let p = profile_until(&record, &customer, "marco's close recorded", |p| {
        p.closes.len() == 4
    })
    .await;
    assert_eq!(p.tier, "vip", "no close undid the tier: {p:?}");
    assert_eq!(
        p.last_agent.as_deref(),
        Some("marco"),
        "latest close: {p:?}"
    );
    assert_eq!(p.last_agents.first().map(String::as_str), Some("marco"));
    assert_eq!(p.last_summary, "marco's turn");
    let stored = record.get_profile(&customer).await.unwrap().unwrap();
    assert_eq!(
        stored.tier.as_deref(),
        Some("vip"),
        "the record's tier column"
    );
    assert!(
        stored.data.get("tier").is_none(),
        "the tier never travels in the profile data"
    );

    // Both available: the returning customer goes back to marco, the agent of the latest
    // close, with the VIP tier in the history the offer shows.
    marco.set_status_and_wait(AgentStatus::Available).await;
    let c5 = start_in(routers[1], &customer).await;
    let offer = take(&mut marco, &c5, "marco").await;
    assert!(offer.returning_customer);
    let history = offer.history.expect("history with the offer");
    assert_eq!(history.tier, "vip");
    assert_eq!(
        history.last_agents.first().map(String::as_str),
        Some("marco")
    );
    assert_eq!(history.contacts, 5, "every start counted once");
    let giulia_offer = giulia.offer(1).await;
    assert!(
        giulia_offer.is_none(),
        "giulia is not offered marco's customer: {giulia_offer:?}"
    );
}

/// Many profile updates at once from two routers' shared state (their own record handles):
/// none is lost, and the last agent is the one of the latest close time however the updates
/// arrive.
async fn concurrent_updates(routers: [Arc<Shared>; 2], record: Arc<dyn Record>) {
    let customer = format!("busy-{}", unique_id());
    const EACH: i64 = 20;
    let mut tasks = Vec::new();
    for n in 0..2 * EACH {
        let shared = routers[(n % 2) as usize].clone();
        let customer = customer.clone();
        // Close times in a scrambled order, so arrival order is not close order.
        let at_ms = 1_000 + (n * 7) % (2 * EACH);
        tasks.push(tokio::spawn(async move {
            shared
                .update_profile(&customer, move |p| {
                    p.contacts += 1;
                    p.record_completed(Some(&format!("agent-{at_ms}")), "", &[], at_ms);
                })
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("update");
    }
    let p = profile_until(&record, &customer, "every update", |_| true).await;
    assert_eq!(p.contacts as i64, 2 * EACH, "no update lost: {p:?}");
    let latest = 1_000 + 2 * EACH - 1;
    assert_eq!(p.last_agent, Some(format!("agent-{latest}")), "{p:?}");
    assert_eq!(p.last_contact_ms, latest);
    let times: Vec<i64> = p.closes.iter().map(|c| c.at_ms).collect();
    let newest: Vec<i64> = (0..5).map(|i| latest - i).collect();
    assert_eq!(
        times, newest,
        "the history holds the latest closes, newest first"
    );
}

/// Opens the integration stream of the router at `addr` after `after`.
async fn stream_at(addr: SocketAddr, after: u64) -> tonic::Streaming<IntegrationEvent> {
    AdminClient::new(channel_at(addr).await)
        .stream_integration_events(authed(StreamIntegrationEventsRequest {
            after_event_id: after,
        }))
        .await
        .expect("integration stream")
        .into_inner()
}

/// Reads events from `stream` until it yielded event `upto` (panics after 10 s).
async fn read_upto(
    stream: &mut tonic::Streaming<IntegrationEvent>,
    upto: u64,
) -> Vec<IntegrationEvent> {
    let mut out: Vec<IntegrationEvent> = Vec::new();
    while out.last().is_none_or(|e| e.event_id < upto) {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("stream stopped before event {upto}: {out:?}"))
            .expect("stream open")
            .expect("event");
        out.push(event);
    }
    out
}

/// Waits until the record's outbox has the `started` event of every conversation in
/// `started`; returns its last sequence number.
async fn outbox_has(record: &Arc<dyn Record>, started: &BTreeSet<String>) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = record.read_after(0, 1000).await.expect("outbox reads");
        let seen = events
            .iter()
            .filter(|e| e.kind == "started")
            .filter_map(|e| e.conversation_id.clone())
            .filter(|id| started.contains(id))
            .count();
        if seen == started.len() {
            return record.last_seq().await.expect("last seq") as u64;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {seen} of {} started events in the outbox",
            started.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Conversations start on both routers; the stream is read on router 0, cut, resumed on
/// router 1 after the last event seen, and follows new events from router 0 live: what it
/// yields is the record's full outbox, in order, without gaps or repeats.
async fn stream_scenario(routers: [SocketAddr; 2], record: Arc<dyn Record>) {
    let mut started = BTreeSet::new();
    for n in 0..6 {
        let id = start_at(routers[n % 2], &format!("s-{n}-{}", unique_id())).await;
        started.insert(id);
    }
    let upto = outbox_has(&record, &started).await;
    assert!(upto >= 6);
    let mut first = stream_at(routers[0], 0).await;
    let mut seen = read_upto(&mut first, 4).await;
    drop(first);
    let last = seen.last().expect("events").event_id;
    assert_eq!(last, 4);

    // More happens while no stream is open, then the reader resumes on the other router.
    for n in 6..8 {
        started.insert(start_at(routers[1], &format!("s-{n}-{}", unique_id())).await);
    }
    let upto = outbox_has(&record, &started).await;
    let mut resumed = stream_at(routers[1], last).await;
    seen.extend(read_upto(&mut resumed, upto).await);
    // New events on router 0 reach the stream on router 1 without it asking again.
    for n in 8..10 {
        started.insert(start_at(routers[0], &format!("s-{n}-{}", unique_id())).await);
    }
    let upto = outbox_has(&record, &started).await;
    seen.extend(read_upto(&mut resumed, upto).await);

    let full = record.read_after(0, 1000).await.expect("outbox reads");
    let ids: Vec<u64> = seen.iter().map(|e| e.event_id).collect();
    let want: Vec<u64> = full.iter().map(|e| e.seq as u64).collect();
    assert_eq!(ids, want, "the stream is the outbox, in order, once each");
    let dense: Vec<u64> = (1..=want.len() as u64).collect();
    assert_eq!(want, dense, "one sequence without gaps");
    let conversations: Vec<&str> = seen.iter().map(|e| e.conversation_id.as_str()).collect();
    let recorded: Vec<&str> = full
        .iter()
        .map(|e| e.conversation_id.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(conversations, recorded);
    for id in &started {
        let n = seen
            .iter()
            .filter(|e| e.kind == "started" && &e.conversation_id == id)
            .count();
        assert_eq!(n, 1, "conversation {id} started once in the stream");
    }
}

// ------------------------------------------------------------------------ cluster ----

fn etcd_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = cluster_config(node, prefix);
    config.cluster.etcd_endpoints = endpoints.to_vec();
    config
}

/// A cluster of two routers and an agent-node, the routers on one PostgreSQL record (each
/// with its own pool, as two processes would be).
struct Cluster {
    _etcd: EtcdCluster,
    _pg: TestPostgres,
    a: ClusterRouter,
    b: ClusterRouter,
    agents: RunningAgentNode,
    record: Arc<dyn Record>,
}

/// Returns two router ids whose rendezvous winners of the `support` and `sales` queues
/// differ, so that each router runs one of the two queues.
fn split_ids() -> (String, String) {
    for n in 0..1000 {
        let ids = vec![format!("router-a{n}"), format!("router-b{n}")];
        let support = winner(partition_of("support"), &ids);
        let sales = winner(partition_of("sales"), &ids);
        if support.is_some() && sales.is_some() && support != sales {
            return (ids[0].clone(), ids[1].clone());
        }
    }
    panic!("no pair of router ids splits the two queues")
}

async fn cluster() -> Cluster {
    let etcd = EtcdCluster::start(1)
        .await
        .expect("etcd (run scripts/ensure_etcd.sh)");
    let pg = TestPostgres::start_new().expect("postgresql for tests");
    let connect = || async {
        Arc::new(
            PgRecord::connect(&PgConfig::new(pg.url()))
                .await
                .expect("record connects"),
        ) as Arc<dyn Record>
    };
    let endpoints = etcd.endpoints();
    let prefix = format!("/test-{}", unique_id());
    let (id_a, id_b) = split_ids();
    let a = clustered::start_with_record(etcd_config(&endpoints, &id_a, &prefix), connect().await)
        .await
        .expect("router a starts");
    let b = clustered::start_with_record(etcd_config(&endpoints, &id_b, &prefix), connect().await)
        .await
        .expect("router b starts");
    let agents = cluster_node::start(agent_node_config(&etcd_config(
        &endpoints,
        "agent-node-1",
        &prefix,
    )))
    .await
    .expect("agent-node starts");
    settled(&a).await;
    settled(&b).await;
    split_settled(&a, &b).await;
    let record = connect().await;
    Cluster {
        _etcd: etcd,
        _pg: pg,
        a,
        b,
        agents,
        record,
    }
}

#[test]
fn cluster_profiles_keep_every_close_the_tier_and_the_latest_agent() {
    common::run(|| async {
        let c = cluster().await;
        let via = |r: &ClusterRouter| {
            let department = ["support", "sales"]
                .into_iter()
                .find(|d| r.router.shared.owner(partition_of(d)) == Owner::Local)
                .unwrap_or_else(|| panic!("{} runs neither queue", r.node_id));
            Via {
                addr: r.grpc_addr,
                department,
            }
        };
        profiles_scenario([via(&c.a), via(&c.b)], c.agents.grpc_addr, c.record.clone()).await;
        concurrent_updates(
            [c.a.router.shared.clone(), c.b.router.shared.clone()],
            c.record.clone(),
        )
        .await;
        c.a.stop().await;
        c.b.stop().await;
    });
}

#[test]
fn cluster_integration_stream_resumes_on_another_router_without_gaps_or_repeats() {
    common::run(|| async {
        let c = cluster().await;
        stream_scenario([c.a.grpc_addr, c.b.grpc_addr], c.record.clone()).await;
        c.a.stop().await;
        c.b.stop().await;
    });
}

// --------------------------------------------------------------------- standalone ----

#[test]
fn standalone_profiles_on_the_memory_record() {
    common::run(|| async {
        let node = common::start(common::config("")).await;
        let record = node.router.shared.record.clone();
        let via = |department| Via {
            addr: node.grpc_addr,
            department,
        };
        profiles_scenario(
            [via("support"), via("sales")],
            node.grpc_addr,
            record.clone(),
        )
        .await;
        let shared = node.router.shared.clone();
        concurrent_updates([shared.clone(), shared], record).await;
        node.shutdown().await;
    });
}

#[test]
fn standalone_integration_stream_on_the_embedded_record_survives_a_restart() {
    common::run(|| async {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = common::start_durable(common::config(""), dir.path()).await;
        let record = node.router.shared.record.clone();
        stream_scenario([node.grpc_addr, node.grpc_addr], record).await;
        let before = node
            .router
            .shared
            .record
            .last_seq()
            .await
            .expect("last seq");
        node.shutdown().await;
        // The embedded outbox is durable: after a restart the sequence goes on from there.
        let restarted = common::restart_durable(common::config(""), dir.path()).await;
        let node = restarted.node;
        let record = node.router.shared.record.clone();
        assert_eq!(record.last_seq().await.expect("last seq"), before);
        let id = start_at(node.grpc_addr, "after-restart").await;
        let mut stream = stream_at(node.grpc_addr, before as u64).await;
        let next = read_upto(&mut stream, before as u64 + 1).await;
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!(next[0].conversation_id, id);
        assert_eq!(next[0].kind, "started");
        node.shutdown().await;
    });
}

/// Profiles an older version kept in the live store (`profile/<id>` keys) move into the
/// record at start: the history, the last agent (sticky routing) and the tier come along,
/// the keys go, and a profile the record knows already keeps what it has.
#[test]
fn standalone_old_store_profiles_move_into_the_record_at_start() {
    common::run(|| async {
        use centralino_router::store::records::{profile_key, put, ClosedContact};
        use centralino_router::store::{MemoryStore, Op, Store};
        let store = Arc::new(MemoryStore::default());
        let old = ProfileRecord {
            customer_id: "old-cust".into(),
            display_name: "Olga".into(),
            last_agent: Some("marco".into()),
            last_contact_ms: 1_700_000_000_000,
            contacts: 3,
            last_agents: vec!["marco".into(), "giulia".into()],
            summaries: vec!["reso approvato".into()],
            tier: "vip".into(),
            closes: vec![ClosedContact {
                at_ms: 1_700_000_000_000,
                agent: Some("marco".into()),
            }],
            ..Default::default()
        };
        store
            .apply(vec![
                put(profile_key("old-cust"), &old),
                Op::Put(profile_key("broken"), b"not json".to_vec()),
            ])
            .await
            .expect("old keys written");
        let node = common::start_on(common::config(""), store.clone()).await;
        let record = node.router.shared.record.clone();
        let moved = common::wait_until(10, || async {
            store.get(&profile_key("old-cust")).await.unwrap().is_none()
        })
        .await;
        assert!(moved, "the old profile key is removed after the move");
        let profile = record
            .get_profile("old-cust")
            .await
            .expect("record")
            .expect("the profile is in the record");
        let merged = profiles::from_record(&profile).expect("decodes");
        assert_eq!(merged.last_agent.as_deref(), Some("marco"));
        assert_eq!(merged.last_agents, old.last_agents);
        assert_eq!(merged.summaries, old.summaries);
        assert_eq!(merged.contacts, 3);
        assert_eq!(merged.tier, "vip");
        // What does not decode stays where it is, for an operator to look at.
        assert!(store.get(&profile_key("broken")).await.unwrap().is_some());
        // Moving the same old profile again (another router, a crash before the delete)
        // doubles nothing.
        store
            .apply(vec![put(profile_key("old-cust"), &old)])
            .await
            .unwrap();
        profiles::migrate_store_profiles(
            store.as_ref(),
            &node.router.shared.commits,
            record.as_ref(),
        )
        .await
        .expect("migrates again");
        let again =
            profiles::from_record(&record.get_profile("old-cust").await.unwrap().unwrap()).unwrap();
        assert_eq!(again, merged);
        node.shutdown().await;
    });
}
