//! The agent directory at run time (issue 11): documents written through the Admin API
//! apply live on every node — a skill added counts in the next routing decision, a lower
//! capacity keeps the chats held and takes no new ones until the load is below it, a
//! disabled agent gets no offers, cannot log in again and is logged out once their chats
//! end, a new agent logs in and gets offers, a canned response is found right away. Every
//! change reaches every node's live directory within a second and lands in the audit log
//! under the operator's name; bad documents are refused and change nothing; a reader
//! cannot write. One scenario, run on a standalone node (in-process agent-node) and on a
//! cluster (real etcd, a throwaway PostgreSQL, two routers and one agent-node that gets the
//! directory from the routers over the internal plane).

use centralino_testkit as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_base::credentials::{new_token, Scope};
use centralino_base::directory::{Directory, Snapshot};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, AcceptOffer, AgentCommand, DirectoryEntry, DirectoryKind,
    FindCanned, GetDirectoryEntryRequest, GetSnapshotRequest, ListDirectoryAuditRequest,
    ListDirectoryEntriesRequest, Offer, PutDirectoryEntryRequest, SetDirectoryEntryDisabledRequest,
};
use centralino_record::testing::TestPostgres;
use centralino_record::{PgConfig, PgRecord, Record};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::{Config, DepartmentConfig, OperatorConfig};
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at as login, settled, unique_id,
};
use common::{start_conversation, Desk};
use serde_json::{json, Value};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

/// Two departments no configured agent serves: a skill or an agent added at run time is
/// the only way a conversation there gets an offer.
const EXTRA: &str = r#"
[[departments]]
name = "billing"

[[departments]]
name = "returns"
"#;

/// The operators' tokens: `alice` may change the directory, `rita` only read it.
#[derive(Clone)]
struct Tokens {
    admin: String,
    reader: String,
}

/// Adds the two operators to `config` and returns their tokens.
fn operators(config: &mut Config, tokens: &(String, String, String, String)) {
    config.operators.push(OperatorConfig {
        name: "alice".into(),
        token_hash: tokens.1.clone(),
        scopes: vec![Scope::Admin],
    });
    config.operators.push(OperatorConfig {
        name: "rita".into(),
        token_hash: tokens.3.clone(),
        scopes: vec![Scope::ReadOnly],
    });
}

fn new_tokens() -> (String, String, String, String) {
    let (admin, admin_hash) = new_token();
    let (reader, reader_hash) = new_token();
    (admin, admin_hash, reader, reader_hash)
}

/// Where the scenario reaches the system.
struct Env {
    /// Admin API of two routers (standalone: the one node twice).
    admin: [SocketAddr; 2],
    /// Where customers start conversations.
    customers: SocketAddr,
    /// Where agents log in.
    desk: SocketAddr,
    /// Every node's live directory.
    views: Vec<Directory>,
    tokens: Tokens,
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

async fn admin_at(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(channel_at(addr).await)
}

async fn put(
    addr: SocketAddr,
    token: &str,
    kind: DirectoryKind,
    id: &str,
    doc: &Value,
    expected_version: Option<i64>,
) -> Result<DirectoryEntry, tonic::Status> {
    admin_at(addr)
        .await
        .put_directory_entry(with_token(
            PutDirectoryEntryRequest {
                kind: kind as i32,
                id: id.to_string(),
                json: doc.to_string(),
                expected_version,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn get(addr: SocketAddr, token: &str, kind: DirectoryKind, id: &str) -> DirectoryEntry {
    admin_at(addr)
        .await
        .get_directory_entry(with_token(
            GetDirectoryEntryRequest {
                kind: kind as i32,
                id: id.to_string(),
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("get {id}: {s}"))
        .into_inner()
}

async fn set_disabled(addr: SocketAddr, token: &str, id: &str, disabled: bool) {
    admin_at(addr)
        .await
        .set_directory_entry_disabled(with_token(
            SetDirectoryEntryDisabledRequest {
                kind: DirectoryKind::Agent as i32,
                id: id.to_string(),
                disabled,
            },
            token,
        ))
        .await
        .unwrap_or_else(|s| panic!("disable {id}: {s}"));
}

/// Waits until every live directory of `env` passes `ok`; returns how long it took.
async fn applied(env: &Env, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        if env.views.iter().all(|v| ok(&v.snapshot())) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not applied on every node"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a conversation in `department` (Italian), retrying while a partition changes
/// owner; returns its id.
async fn start(addr: SocketAddr, department: &str) -> String {
    let client = ConversationServiceClient::new(channel_at(addr).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = client.clone();
        match start_conversation(&mut c, department, "it", &unique_id()).await {
            Ok(started) => return started.conversation_id,
            Err(s) if s.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("start in {department}: {s}"),
        }
    }
}

/// Waits for the offer of `conversation_id` and accepts it (taking a repeated offer again
/// when the first ran out on a busy machine).
async fn take(desk: &mut Desk, conversation_id: &str, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut offer: Offer = desk
        .offer(20)
        .await
        .unwrap_or_else(|| panic!("{who} gets no offer for {conversation_id}"));
    loop {
        assert_eq!(offer.conversation_id, conversation_id, "{who}'s offer");
        desk.send(agent_command::Kind::Accept(AcceptOffer {
            reservation_id: offer.reservation_id.clone(),
        }))
        .await;
        enum Seen {
            Offer(Box<Offer>),
            Assigned,
        }
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
            Some(Seen::Assigned) => return,
            Some(Seen::Offer(again)) if tokio::time::Instant::now() < deadline => offer = *again,
            _ => panic!("{who} is not assigned {conversation_id}"),
        }
    }
}

/// Closes `conversation_id` from `desk` and waits for its end.
async fn close(desk: &mut Desk, conversation_id: &str) {
    desk.close(conversation_id, "done").await;
    let wanted = conversation_id.to_string();
    desk.next(20, |k| match k {
        agent_event::Kind::Ended(e) if e.conversation_id == wanted => Some(()),
        _ => None,
    })
    .await
    .unwrap_or_else(|| panic!("conversation {wanted} did not end"));
}

/// Returns `(load, capacity)` of `agent_id` in the snapshot of the router at `addr`.
async fn load_of(addr: SocketAddr, token: &str, agent_id: &str) -> (u32, u32) {
    let snapshot = admin_at(addr)
        .await
        .get_snapshot(with_token(GetSnapshotRequest {}, token))
        .await
        .expect("snapshot")
        .into_inner();
    let a = common::agent_in(&snapshot, agent_id);
    (a.load, a.capacity)
}

/// Waits until `desk`'s stream ends with a status; returns its code.
async fn stream_end(desk: &mut Desk, secs: u64) -> Option<Code> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, desk.events.next()).await {
            Err(_) => return None,
            Ok(None) => return Some(Code::Ok),
            Ok(Some(Err(status))) => return Some(status.code()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn doc_of(entry: &DirectoryEntry) -> Value {
    serde_json::from_str(&entry.json).expect("entry json")
}

async fn scenario(env: Env) {
    let [a, b] = env.admin;
    let Tokens { admin, reader } = env.tokens.clone();

    // ---- the seed: the file's agents are in the record, written by seed:config ----
    let marco = get(a, &reader, DirectoryKind::Agent, "marco").await;
    assert_eq!(marco.updated_by, "seed:config");
    assert_eq!(doc_of(&marco)["password"], "(set)", "secrets are not shown");
    let listed = admin_at(b)
        .await
        .list_directory_entries(with_token(
            ListDirectoryEntriesRequest {
                kind: DirectoryKind::Department as i32,
                include_disabled: false,
            },
            &reader,
        ))
        .await
        .expect("a reader lists")
        .into_inner();
    assert_eq!(listed.entries.len(), 4, "the file's departments");

    // ---- a reader cannot write; bad documents change nothing ----
    let mut doc = doc_of(&marco);
    doc["skills"]["billing"] = json!(3);
    let err = put(a, &reader, DirectoryKind::Agent, "marco", &doc, None)
        .await
        .expect_err("a reader writes");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    for (kind, id, bad, needle) in [
        (
            DirectoryKind::Agent,
            "marco",
            json!({"team": "nope"}),
            "unknown team",
        ),
        (
            DirectoryKind::Agent,
            "marco",
            json!({"capacity": 0, "team": "italian"}),
            "capacity",
        ),
        (
            DirectoryKind::Agent,
            "marco",
            json!({"skills": {"x": 6}}),
            "proficiency",
        ),
        (
            DirectoryKind::Department,
            "support",
            json!({"steps": [{"overflow_to": "nowhere"}]}),
            "unknown department",
        ),
        (
            DirectoryKind::Department,
            "brand new",
            json!({}),
            "the name must be",
        ),
        (
            DirectoryKind::Department,
            "support",
            json!({"skill": "sales"}),
            "skill cannot change",
        ),
        (
            DirectoryKind::CannedResponse,
            "c",
            json!({"shortcut": "ciao", "text": "x"}),
            "shortcut",
        ),
        (
            DirectoryKind::Team,
            "italian",
            json!({"language": "it", "schedule": {"timezone": "Nowhere/Land"}}),
            "team",
        ),
    ] {
        let err = put(a, &admin, kind, id, &bad, None)
            .await
            .expect_err("a bad document is stored");
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err}");
        assert!(err.message().contains(needle), "{bad}: {}", err.message());
    }
    let err = put(a, &admin, DirectoryKind::Agent, "marco", &doc, Some(99))
        .await
        .expect_err("a stale version is written");
    assert_eq!(err.code(), Code::Aborted, "{err}");
    let unchanged = get(b, &reader, DirectoryKind::Agent, "marco").await;
    assert_eq!(unchanged.version, marco.version, "nothing changed");
    assert_eq!(unchanged.json, marco.json);

    // ---- a skill added counts in the next routing decision ----
    let mut marco_desk = login(env.desk, "marco").await.expect("marco logs in");
    let c1 = start(env.customers, "billing").await;
    assert!(
        marco_desk.offer(2).await.is_none(),
        "billing has nobody with its skill yet"
    );
    let written = put(
        a,
        &admin,
        DirectoryKind::Agent,
        "marco",
        &doc,
        Some(marco.version),
    )
    .await
    .expect("alice adds a skill");
    assert_eq!(written.version, marco.version + 1);
    let took = applied(&env, "marco's billing skill", |s| {
        s.agents["marco"].config.skills.get("billing") == Some(&3)
    })
    .await;
    assert!(
        took <= Duration::from_secs(1),
        "the change reached every node in {took:?}, not within 1 s"
    );
    take(&mut marco_desk, &c1, "marco (billing skill added)").await;

    // ---- a lower capacity keeps the chats held and takes no new ones ----
    let c2 = start(env.customers, "support").await;
    take(&mut marco_desk, &c2, "marco (second chat)").await;
    let current = get(a, &reader, DirectoryKind::Agent, "marco").await;
    let mut lower = doc_of(&current);
    lower["capacity"] = json!(1);
    put(
        b,
        &admin,
        DirectoryKind::Agent,
        "marco",
        &lower,
        Some(current.version),
    )
    .await
    .expect("alice lowers the capacity");
    applied(&env, "marco's capacity 1", |s| {
        s.agents["marco"].config.capacity == 1
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while load_of(a, &reader, "marco").await != (2, 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "marco keeps both chats at capacity 1: {:?}",
            load_of(a, &reader, "marco").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c3 = start(env.customers, "support").await;
    let seen = marco_desk.collect_for(2000).await;
    assert!(
        !seen
            .iter()
            .any(|k| matches!(k, agent_event::Kind::Offer(_))),
        "no new offer at load 2 of 1: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|k| matches!(k, agent_event::Kind::Ended(_))),
        "the chats held are kept: {seen:?}"
    );
    close(&mut marco_desk, &c1).await;
    assert!(
        marco_desk.offer(2).await.is_none(),
        "no new offer at load 1 of 1"
    );
    close(&mut marco_desk, &c2).await;
    take(&mut marco_desk, &c3, "marco (below capacity again)").await;
    close(&mut marco_desk, &c3).await;

    // ---- a new agent logs in right away and gets offers ----
    let nina = json!({
        "name": "Nina", "team": "italian", "password": "pw", "capacity": 1,
        "skills": {"lang:it": 5, "returns": 4},
    });
    assert_eq!(
        login(env.desk, "nina").await.err().map(|s| s.code()),
        Some(Code::Unauthenticated),
        "nina is not an agent yet"
    );
    put(a, &admin, DirectoryKind::Agent, "nina", &nina, Some(0))
        .await
        .expect("alice creates nina");
    applied(&env, "nina", |s| s.agents.contains_key("nina")).await;
    let mut nina_desk = login(env.desk, "nina").await.expect("nina logs in");
    let c4 = start(env.customers, "returns").await;
    take(&mut nina_desk, &c4, "nina (new agent)").await;

    // ---- a disabled agent: no offers, no new login, logged out after the last chat ----
    set_disabled(b, &admin, "nina", true).await;
    applied(&env, "nina disabled", |s| s.agents["nina"].disabled).await;
    let c5 = start(env.customers, "returns").await;
    let seen = nina_desk.collect_for(2000).await;
    assert!(
        !seen
            .iter()
            .any(|k| matches!(k, agent_event::Kind::Offer(_))),
        "a disabled agent gets no offer: {seen:?}"
    );
    assert_eq!(
        login(env.desk, "nina").await.err().map(|s| s.code()),
        Some(Code::PermissionDenied),
        "a disabled agent cannot log in again"
    );
    nina_desk.close(&c4, "done").await;
    assert_eq!(
        stream_end(&mut nina_desk, 20).await,
        Some(Code::PermissionDenied),
        "nina is logged out once her last chat ended"
    );
    assert_eq!(
        login(env.desk, "nina").await.err().map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    // Enabled again: she logs in and the conversation waiting for her skill is hers.
    set_disabled(a, &admin, "nina", false).await;
    applied(&env, "nina enabled", |s| !s.agents["nina"].disabled).await;
    let mut nina_desk = login(env.desk, "nina").await.expect("nina logs in again");
    take(&mut nina_desk, &c5, "nina (enabled again)").await;
    close(&mut nina_desk, &c5).await;

    // ---- a department created at run time: its queue starts, its skill routes ----
    let mut customers = ConversationServiceClient::new(channel_at(env.customers).await);
    let unknown = start_conversation(&mut customers, "warranty", "it", &unique_id())
        .await
        .expect_err("no such department yet");
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown}");
    put(
        a,
        &admin,
        DirectoryKind::Department,
        "warranty",
        &json!({"display_name": "Garanzia", "steps": [{"after_secs": 0, "min_proficiency": 1}]}),
        Some(0),
    )
    .await
    .expect("alice creates a department");
    applied(&env, "warranty", |s| s.departments.contains_key("warranty")).await;
    // Its queue runs (in a cluster on its partition's owner) and shows in the snapshot.
    let started = tokio::time::Instant::now();
    loop {
        let snapshot = admin_at(b)
            .await
            .get_snapshot(with_token(GetSnapshotRequest {}, &reader))
            .await
            .expect("snapshot")
            .into_inner();
        if snapshot.queues.iter().any(|q| q.department == "warranty") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new department's queue did not start: {:?}",
            snapshot.queues
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let walter = json!({
        "name": "Walter", "team": "italian", "password": "pw", "capacity": 1,
        "skills": {"lang:it": 5, "warranty": 3},
    });
    put(b, &admin, DirectoryKind::Agent, "walter", &walter, Some(0))
        .await
        .expect("alice creates walter");
    applied(&env, "walter", |s| s.agents.contains_key("walter")).await;
    let mut walter_desk = login(env.desk, "walter").await.expect("walter logs in");
    let c6 = start(env.customers, "warranty").await;
    take(&mut walter_desk, &c6, "walter (a new department)").await;
    close(&mut walter_desk, &c6).await;
    // A new department's skill is fixed once it exists, like the file's.
    let err = put(
        a,
        &admin,
        DirectoryKind::Department,
        "warranty",
        &json!({"skill": "sales"}),
        None,
    )
    .await
    .expect_err("a skill change");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // Disabled, it takes no new conversation.
    admin_at(a)
        .await
        .set_directory_entry_disabled(with_token(
            SetDirectoryEntryDisabledRequest {
                kind: DirectoryKind::Department as i32,
                id: "warranty".into(),
                disabled: true,
            },
            &admin,
        ))
        .await
        .expect("alice disables the department");
    applied(&env, "warranty disabled", |s| {
        !s.departments.contains_key("warranty")
    })
    .await;
    let refused = start_conversation(&mut customers, "warranty", "it", &unique_id())
        .await
        .expect_err("a disabled department");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");
    drop(walter_desk);

    // ---- a canned response added is found at the next lookup ----
    let canned = json!({"shortcut": "/resi", "department": "returns", "language": "it", "text": "Per i resi ..."});
    put(
        a,
        &admin,
        DirectoryKind::CannedResponse,
        "it/returns/resi",
        &canned,
        None,
    )
    .await
    .expect("alice adds a canned response");
    applied(&env, "canned response", |s| {
        s.canned.contains_key("it/returns/resi")
    })
    .await;
    nina_desk
        .tx
        .send(AgentCommand {
            request_id: "find-1".into(),
            kind: Some(agent_command::Kind::FindCanned(FindCanned {
                query: "/res".into(),
                department: "returns".into(),
                language: "it".into(),
            })),
        })
        .await
        .expect("find");
    let items = nina_desk
        .next(10, |k| match k {
            agent_event::Kind::Ack(a) if a.request_id == "find-1" => Some(a.canned),
            _ => None,
        })
        .await
        .expect("canned responses");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].text, "Per i resi ...");

    // ---- the audit log: who, what, when ----
    let audit = admin_at(b)
        .await
        .list_directory_audit(with_token(
            ListDirectoryAuditRequest {
                after_id: 0,
                limit: 1000,
            },
            &reader,
        ))
        .await
        .expect("a reader reads the audit log")
        .into_inner()
        .entries;
    let by = |subject: &str, actor: &str| {
        audit
            .iter()
            .filter(|e| e.subject == subject && e.actor == actor)
            .count()
    };
    assert!(by("agent/marco", "seed:config") == 1, "{audit:?}");
    assert_eq!(
        by("agent/marco", "alice"),
        2,
        "skill and capacity: {audit:?}"
    );
    assert_eq!(
        by("agent/nina", "alice"),
        3,
        "created, disabled, enabled: {audit:?}"
    );
    assert_eq!(by("canned_response/it/returns/resi", "alice"), 1);
    assert!(
        audit
            .iter()
            .all(|e| e.at_unix_ms > 0 && !e.action.is_empty()),
        "{audit:?}"
    );
    assert!(
        audit.iter().all(|e| !e.detail_json.contains("\"pw\"")),
        "no secret in the audit log"
    );
    assert_eq!(by("agent/marco", "rita"), 0, "the reader wrote nothing");
}

#[test]
fn standalone_directory_changes_apply_live() {
    let tokens = new_tokens();
    let mut config = common::config(EXTRA);
    operators(&mut config, &tokens);
    common::run(|| async move {
        let node = common::start(config).await;
        let env = Env {
            admin: [node.grpc_addr, node.grpc_addr],
            customers: node.grpc_addr,
            desk: node.grpc_addr,
            views: vec![node.router.shared.directory.clone()],
            tokens: Tokens {
                admin: tokens.0.clone(),
                reader: tokens.2.clone(),
            },
        };
        scenario(env).await;
        node.shutdown().await;
    });
}

#[test]
fn standalone_directory_survives_a_restart_and_is_not_seeded_again() {
    let tokens = new_tokens();
    let mut config = common::config(EXTRA);
    operators(&mut config, &tokens);
    let dir = tempfile::tempdir().expect("tempdir");
    common::run(|| async move {
        let node = common::start_durable(config.clone(), dir.path()).await;
        let nina =
            json!({"name": "Nina", "team": "italian", "password": "pw", "skills": {"lang:it": 5}});
        put(
            node.grpc_addr,
            &tokens.0,
            DirectoryKind::Agent,
            "nina",
            &nina,
            None,
        )
        .await
        .expect("alice creates nina");
        set_disabled(node.grpc_addr, &tokens.0, "marco", true).await;
        put(
            node.grpc_addr,
            &tokens.0,
            DirectoryKind::Department,
            "warranty",
            &json!({"display_name": "Garanzia"}),
            None,
        )
        .await
        .expect("alice creates a department");
        node.shutdown().await;
        // The same file again: the record is the source of truth now.
        let restarted = common::restart_durable(config, dir.path()).await;
        let node = restarted.node;
        let snapshot = node.router.shared.directory.snapshot();
        assert!(snapshot.enabled_agent("nina").is_some(), "nina survives");
        assert!(snapshot.agents["marco"].disabled, "marco stays disabled");
        login(node.grpc_addr, "nina").await.expect("nina logs in");
        // The department created at run time has its queue from the start.
        assert!(node.router.queue("warranty").is_some(), "its queue runs");
        start(node.grpc_addr, "warranty").await;
        assert_eq!(
            login(node.grpc_addr, "marco").await.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let marco = get(node.grpc_addr, &tokens.2, DirectoryKind::Agent, "marco").await;
        assert_eq!((marco.version, marco.updated_by.as_str()), (2, "alice"));
        let giulia = get(node.grpc_addr, &tokens.2, DirectoryKind::Agent, "giulia").await;
        assert_eq!(
            (giulia.version, giulia.updated_by.as_str()),
            (1, "seed:config"),
            "not seeded again"
        );
        node.shutdown().await;
    });
}

/// Two routers and one agent-node on one etcd and one PostgreSQL.
struct Cluster {
    _etcd: EtcdCluster,
    _pg: TestPostgres,
    a: ClusterRouter,
    b: ClusterRouter,
    agents: RunningAgentNode,
}

async fn cluster(tokens: &(String, String, String, String)) -> Cluster {
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
    let config = |node: &str| {
        let mut config = cluster_config(node, &prefix);
        config.cluster.etcd_endpoints = endpoints.clone();
        for name in ["billing", "returns"] {
            config.departments.push(DepartmentConfig {
                name: name.to_string(),
                ..DepartmentConfig::default()
            });
        }
        operators(&mut config, tokens);
        config
    };
    let a = clustered::start_with_record(config("router-a"), connect().await)
        .await
        .expect("router a starts");
    let b = clustered::start_with_record(config("router-b"), connect().await)
        .await
        .expect("router b starts");
    // The agent-node has no access to PostgreSQL: the routers stream the directory to it.
    let agents = cluster_node::start(agent_node_config(&config("agent-node-1")))
        .await
        .expect("agent-node starts");
    settled(&a).await;
    settled(&b).await;
    Cluster {
        _etcd: etcd,
        _pg: pg,
        a,
        b,
        agents,
    }
}

#[test]
fn cluster_directory_changes_apply_live_on_every_node() {
    let tokens = new_tokens();
    common::run(|| async move {
        let c = cluster(&tokens).await;
        let env = Env {
            admin: [c.a.grpc_addr, c.b.grpc_addr],
            customers: c.a.grpc_addr,
            desk: c.agents.grpc_addr,
            views: vec![
                c.a.router.shared.directory.clone(),
                c.b.router.shared.directory.clone(),
                c.agents.node.directory().clone(),
            ],
            tokens: Tokens {
                admin: tokens.0.clone(),
                reader: tokens.2.clone(),
            },
        };
        scenario(env).await;
        c.a.stop().await;
        c.b.stop().await;
        c.agents.shutdown().await;
    });
}
