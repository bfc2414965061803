//! The record contract against a real PostgreSQL (a throwaway server per test, two pools on
//! it), and PostgreSQL's own cases: a crash (`kill -9`) and restart, migrations run twice,
//! bad and unreachable DSNs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use centralino_record::contract::{conversation, event};
use centralino_record::testing::TestPostgres;
use centralino_record::{OutboxTail, PgConfig, PgRecord, Record, RecordError};

async fn connect(url: &str) -> PgRecord {
    let mut config = PgConfig::new(url);
    config.pool_size = 8;
    config.acquire_timeout_ms = 2_000;
    PgRecord::connect(&config).await.expect("connect")
}

async fn postgres() -> (Arc<dyn Record>, Arc<dyn Record>, PgRecord, TestPostgres) {
    let pg = TestPostgres::start_new().expect("postgres");
    let url = pg.database("record").expect("database");
    let (a, b) = tokio::join!(connect(&url), connect(&url));
    (Arc::new(a.clone()), Arc::new(b), a, pg)
}

contract_tests!(postgres();
    archive_is_idempotent, rating_updates_the_row, list_filters_and_pages,
    retention_deletes_only_old_rows, event_retention_deletes_only_old_events,
        concurrent_profile_updates_all_survive,
    tier_is_never_undone, outbox_sequence_is_contiguous_across_writers,
    tail_wakes_on_a_new_event, directory_versions_audit_and_feed, operator_tokens,
        webhook_claims_fence_the_cursor,
    export_and_erase, bad_input_changes_nothing, check_all,
);

async fn retry<T>(
    what: &str,
    within: Duration,
    mut f: impl AsyncFnMut() -> Result<T, RecordError>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// PostgreSQL killed with SIGKILL: calls fail as unavailable (transient), and after the
/// restart the same pools write again, what was committed before is there, the sequence
/// goes on without a gap, and the LISTEN connection is back (a tail wakes within a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_killed_and_restarted() {
    let mut pg = TestPostgres::start_new().expect("postgres");
    let url = pg.database("record").expect("database");
    let a = connect(&url).await;
    let b = connect(&url).await;
    let before = a
        .archive(
            conversation(
                "crash-1",
                Some("c1"),
                Some("anna"),
                "sales",
                "it",
                1_700_000_000_000,
            ),
            vec![event("conversation.closed", Some("c1"), Some("crash-1"))],
        )
        .await
        .expect("archive before the crash");
    assert_eq!(before.seqs, vec![1]);

    pg.kill9().expect("kill -9");
    let down = a
        .archive(
            conversation("crash-down", None, None, "sales", "it", 1_700_000_000_001),
            vec![],
        )
        .await;
    match down {
        Err(e) => assert!(
            e.is_transient(),
            "a write while down is unavailable, got {e}"
        ),
        Ok(_) => panic!("a write succeeded while postgres was down"),
    }
    assert!(b.get("crash-1").await.is_err(), "a read while down fails");

    pg.start().expect("restart");
    let out = retry(
        "archive after restart",
        Duration::from_secs(30),
        async || {
            a.archive(
                conversation(
                    "crash-2",
                    Some("c1"),
                    Some("anna"),
                    "sales",
                    "it",
                    1_700_000_000_002,
                ),
                vec![event("conversation.closed", Some("c1"), Some("crash-2"))],
            )
            .await
        },
    )
    .await;
    assert!(out.inserted);
    assert_eq!(out.seqs, vec![2], "the sequence goes on without a gap");
    let kept = retry("get after restart", Duration::from_secs(30), async || {
        b.get("crash-1").await
    })
    .await;
    assert!(kept.is_some(), "the committed archive survived the crash");
    assert_eq!(
        b.get("crash-down").await.expect("get"),
        None,
        "the failed write left nothing"
    );

    // the LISTEN connection of `b` reconnects: a tail on it wakes on `a`'s next append
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let start = b.last_seq().await.expect("last_seq");
        let mut tail =
            OutboxTail::new(Arc::new(b.clone()), start).with_fallback(Duration::from_secs(60));
        let waiting = tokio::spawn(async move { tail.next(10).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let appended = Instant::now();
        a.append(vec![event("after.restart", None, None)])
            .await
            .expect("append");
        match tokio::time::timeout(Duration::from_secs(1), waiting).await {
            Ok(got) => {
                let got = got.expect("tail task").expect("tail");
                assert_eq!(got.len(), 1);
                assert!(appended.elapsed() < Duration::from_secs(1));
                break;
            }
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => panic!("the LISTEN connection did not come back after the restart"),
        }
    }
}

/// Migrations run on every connect and apply once; the data stays.
#[tokio::test]
async fn migrations_run_once() {
    let pg = TestPostgres::start_new().expect("postgres");
    let url = pg.database("record").expect("database");
    let a = connect(&url).await;
    a.append(vec![event("one", None, None)])
        .await
        .expect("append");
    drop(a);
    let again = connect(&url).await;
    assert_eq!(
        again.last_seq().await.expect("last_seq"),
        1,
        "a second migration run kept the data"
    );
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(again.pool())
        .await
        .expect("migrations table");
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .count() as i64;
    assert_eq!(applied, shipped, "each migration applied once");
}

/// A DSN that does not parse is invalid input; an unreachable server is unavailable.
#[tokio::test]
async fn bad_and_unreachable_dsns() {
    let bad = PgRecord::connect(&PgConfig::new("not a url")).await;
    assert!(matches!(bad, Err(RecordError::InvalidInput(_))), "bad DSN");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = PgConfig::new(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
    config.acquire_timeout_ms = 500;
    let down = PgRecord::connect(&config).await;
    assert!(
        matches!(down, Err(RecordError::Unavailable(_))),
        "unreachable server"
    );
    config.pool_size = 0;
    assert!(matches!(
        PgRecord::connect(&config).await,
        Err(RecordError::InvalidInput(_))
    ));
}

/// An event committed without a notification (a lost one) is still picked up, by the slow
/// fallback poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_falls_back_to_a_slow_poll() {
    let pg = TestPostgres::start_new().expect("postgres");
    let url = pg.database("record").expect("database");
    let r = connect(&url).await;
    let mut tail =
        OutboxTail::new(Arc::new(r.clone()), 0).with_fallback(Duration::from_millis(500));
    let waiting = tokio::spawn(async move { tail.next(10).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tx = r.pool().begin().await.expect("begin");
    sqlx::query("UPDATE record_counters SET last = 1 WHERE name = 'outbox'")
        .execute(&mut *tx)
        .await
        .expect("counter");
    sqlx::query(
        "INSERT INTO outbox_events (seq, kind, at_ms, payload) VALUES (1, 'silent', 0, '{}'::jsonb)",
    )
    .execute(&mut *tx)
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    let got = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("the fallback poll found the event")
        .expect("tail task")
        .expect("tail");
    assert_eq!(
        got.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["silent"]
    );
}
