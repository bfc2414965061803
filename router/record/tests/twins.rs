//! The record contract against the twins: the in-memory record and the redb-embedded one
//! (on a temporary file), and the embedded record's durability across a reopen.

mod common;

use std::sync::Arc;

use centralino_record::contract::{conversation, event};
use centralino_record::{EmbeddedRecord, MemoryRecord, Record};

async fn memory() -> (Arc<dyn Record>, Arc<dyn Record>, MemoryRecord, ()) {
    let r = MemoryRecord::new().expect("memory record");
    (Arc::new(r.clone()), Arc::new(r.clone()), r, ())
}

async fn embedded() -> (
    Arc<dyn Record>,
    Arc<dyn Record>,
    EmbeddedRecord,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let r = EmbeddedRecord::open(dir.path()).expect("embedded record");
    (Arc::new(r.clone()), Arc::new(r.clone()), r, dir)
}

mod on_memory {
    use super::*;
    contract_tests!(memory();
        archive_is_idempotent, rating_updates_the_row, list_filters_and_pages,
        retention_deletes_only_old_rows, event_retention_deletes_only_old_events,
        concurrent_profile_updates_all_survive,
        tier_is_never_undone, outbox_sequence_is_contiguous_across_writers,
        tail_wakes_on_a_new_event, directory_versions_audit_and_feed, operator_tokens,
        webhook_claims_fence_the_cursor,
        export_and_erase, bad_input_changes_nothing, check_all,
    );
}

mod on_embedded {
    use super::*;
    contract_tests!(embedded();
        archive_is_idempotent, rating_updates_the_row, list_filters_and_pages,
        retention_deletes_only_old_rows, event_retention_deletes_only_old_events,
        concurrent_profile_updates_all_survive,
        tier_is_never_undone, outbox_sequence_is_contiguous_across_writers,
        tail_wakes_on_a_new_event, directory_versions_audit_and_feed, operator_tokens,
        webhook_claims_fence_the_cursor,
        export_and_erase, bad_input_changes_nothing, check_all,
    );
}

/// What the embedded record committed is there after a reopen, and the sequences go on
/// from where they were.
#[tokio::test]
async fn embedded_record_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temporary folder");
    {
        let r = EmbeddedRecord::open(dir.path()).expect("open");
        let out = r
            .archive(
                conversation(
                    "reopen-1",
                    Some("c"),
                    Some("anna"),
                    "sales",
                    "it",
                    1_000_000,
                ),
                vec![event("conversation.closed", Some("c"), Some("reopen-1"))],
            )
            .await
            .expect("archive");
        assert_eq!(out.seqs, vec![1]);
    }
    let r = EmbeddedRecord::open(dir.path()).expect("reopen");
    assert!(
        r.get("reopen-1").await.expect("get").is_some(),
        "the archive survived"
    );
    assert_eq!(r.last_seq().await.expect("last_seq"), 1);
    assert_eq!(
        *r.outbox_signal().borrow(),
        1,
        "the signal starts at the stored sequence"
    );
    let seqs = r
        .append(vec![event("next", None, None)])
        .await
        .expect("append");
    assert_eq!(seqs, vec![2], "the sequence goes on");
}

/// Inside a database shared with the live store, a close archives and removes the live
/// keys in one transaction: committed, both happened (and followers wake); aborted,
/// neither did.
#[tokio::test]
async fn archive_and_live_key_removal_in_one_transaction() {
    use redb::{ReadableDatabase, TableDefinition};
    const LIVE: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
    let dir = tempfile::tempdir().expect("temporary folder");
    let db = Arc::new(redb::Database::create(dir.path().join("centralino.redb")).expect("db"));
    let record = EmbeddedRecord::with_database(db.clone()).expect("record");
    let tx = db.begin_write().expect("begin");
    {
        let mut live = tx.open_table(LIVE).expect("live table");
        live.insert("conv/a", b"live a".as_slice()).expect("put");
        live.insert("conv/b", b"live b".as_slice()).expect("put");
    }
    tx.commit().expect("commit");
    let mut signal = record.outbox_signal();
    signal.borrow_and_update();

    // aborted: neither the archive nor the removal
    let tx = db.begin_write().expect("begin");
    let out = EmbeddedRecord::archive_in(
        &tx,
        &conversation("a", Some("c"), None, "sales", "it", 1_000_000),
        vec![event("conversation.closed", Some("c"), Some("a"))],
    )
    .expect("archive in");
    assert!(out.inserted);
    tx.open_table(LIVE)
        .expect("live")
        .remove("conv/a")
        .expect("remove");
    tx.abort().expect("abort");
    assert_eq!(
        record.get("a").await.expect("get"),
        None,
        "an aborted close archived nothing"
    );
    assert_eq!(record.last_seq().await.expect("last_seq"), 0);

    // committed: both
    let tx = db.begin_write().expect("begin");
    let out = EmbeddedRecord::archive_in(
        &tx,
        &conversation("a", Some("c"), None, "sales", "it", 1_000_000),
        vec![event("conversation.closed", Some("c"), Some("a"))],
    )
    .expect("archive in");
    tx.open_table(LIVE)
        .expect("live")
        .remove("conv/a")
        .expect("remove");
    tx.commit().expect("commit");
    record.published(&out);
    assert!(signal.has_changed().expect("signal"), "followers are woken");
    assert_eq!(out.seqs, vec![1]);
    assert!(record.get("a").await.expect("get").is_some());
    let read = db.begin_read().expect("read");
    let live = read.open_table(LIVE).expect("live");
    assert!(
        live.get("conv/a").expect("get").is_none(),
        "the live key is gone"
    );
    assert!(
        live.get("conv/b").expect("get").is_some(),
        "the other live key stays"
    );
    assert!(matches!(
        EmbeddedRecord::archive_in(
            &db.begin_write().expect("begin"),
            &conversation("", None, None, "d", "it", 0),
            vec![]
        ),
        Err(centralino_record::RecordError::InvalidInput(_))
    ));
}

/// The in-memory record keeps the newest 100,000 outbox events (its memory is bounded);
/// followers further behind resume from the oldest kept.
#[tokio::test]
async fn the_memory_outbox_keeps_the_newest_events_only() {
    use centralino_record::embedded::MEMORY_OUTBOX_KEEP;
    let record = MemoryRecord::new().expect("memory record");
    let batch = 2_000;
    let batches = MEMORY_OUTBOX_KEEP as usize / batch + 3;
    for b in 0..batches {
        let events = (0..batch)
            .map(|i| centralino_record::contract::event(&format!("bulk.{b}.{i}"), None, None))
            .collect();
        record.append(events).await.expect("append");
    }
    let last = record.last_seq().await.expect("last seq");
    assert_eq!(last, (batches * batch) as i64);
    let kept = record
        .as_embedded()
        .rows_mentioning("bulk.")
        .await
        .expect("count");
    assert!(
        kept <= MEMORY_OUTBOX_KEEP as usize + 1024 && kept >= MEMORY_OUTBOX_KEEP as usize,
        "{kept} events kept"
    );
    let oldest = record.read_after(0, 1).await.expect("read");
    assert!(
        oldest[0].seq > last - MEMORY_OUTBOX_KEEP - 1024,
        "{}",
        oldest[0].seq
    );
}
