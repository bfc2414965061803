//! What every [`Record`] must do alike (feature `testing`), as checks run against
//! PostgreSQL (`tests/postgres.rs`) and the twins (`tests/twins.rs`). Each check takes two
//! handles on one record (two pools for PostgreSQL), runs against a record no other check
//! is using at the same time, and panics with the deviation it found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::embedded::{EmbeddedRecord, MemoryRecord};
use crate::error::RecordError;
use crate::postgres::PgRecord;
use crate::record::Record;
use crate::tail::{DirectoryFeed, OutboxTail};
use crate::types::{
    ArchiveCursor, ArchiveFilter, ArchivedConversation, ChangedBy, CustomerProfile, DirectoryKind,
    NewEvent, OperatorToken, ProfileFn, Rating, RatingFilter,
};

/// Close times of the checks' conversations start here (retention uses smaller ones).
const BASE_MS: i64 = 1_750_000_000_000;
/// How soon a follower must see a new event or directory change.
const WAKE: Duration = Duration::from_secs(1);

/// Looks into every table of a record, for the erasure check.
#[async_trait]
pub trait Probe: Send + Sync {
    /// Returns how many stored rows, in any table, mention `needle`.
    async fn rows_mentioning(&self, needle: &str) -> usize;
}

#[async_trait]
impl Probe for PgRecord {
    async fn rows_mentioning(&self, needle: &str) -> usize {
        PgRecord::rows_mentioning(self, needle)
            .await
            .unwrap_or_else(|e| panic!("probe: {e}"))
    }
}

#[async_trait]
impl Probe for EmbeddedRecord {
    async fn rows_mentioning(&self, needle: &str) -> usize {
        EmbeddedRecord::rows_mentioning(self, needle)
            .await
            .unwrap_or_else(|e| panic!("probe: {e}"))
    }
}

#[async_trait]
impl Probe for MemoryRecord {
    async fn rows_mentioning(&self, needle: &str) -> usize {
        Probe::rows_mentioning(self.as_embedded(), needle).await
    }
}

/// Runs every check, one after the other.
pub async fn check_all(a: Arc<dyn Record>, b: Arc<dyn Record>, probe: &dyn Probe) {
    archive_is_idempotent(&*a, &*b).await;
    rating_updates_the_row(&*a, &*b).await;
    list_filters_and_pages(&*a, &*b).await;
    retention_deletes_only_old_rows(&*a, &*b).await;
    event_retention_deletes_only_old_events(&*a, &*b).await;
    concurrent_profile_updates_all_survive(a.clone(), b.clone()).await;
    tier_is_never_undone(a.clone(), b.clone()).await;
    outbox_sequence_is_contiguous_across_writers(a.clone(), b.clone()).await;
    tail_wakes_on_a_new_event(a.clone(), b.clone()).await;
    directory_versions_audit_and_feed(a.clone(), b.clone()).await;
    operator_tokens(&*a, &*b).await;
    webhook_claims_fence_the_cursor(&*a, &*b).await;
    export_and_erase(&*a, &*b, probe).await;
    bad_input_changes_nothing(&*a, &*b).await;
}

fn by(actor: &str, at_ms: i64) -> ChangedBy {
    ChangedBy {
        actor: actor.into(),
        at_ms,
    }
}

/// Returns a conversation row for the checks.
pub fn conversation(
    id: &str,
    customer: Option<&str>,
    agent: Option<&str>,
    department: &str,
    language: &str,
    closed_at_ms: i64,
) -> ArchivedConversation {
    ArchivedConversation {
        id: id.into(),
        customer_id: customer.map(str::to_string),
        agent_id: agent.map(str::to_string),
        department: department.into(),
        language: language.into(),
        started_at_ms: closed_at_ms - 60_000,
        closed_at_ms,
        rating: None,
        transcript: json!([{ "from": "customer", "text": format!("hello from {id}") }]),
        details: json!({ "final": "completed", "transfers": [] }),
    }
}

/// Returns an event for the checks.
pub fn event(kind: &str, customer: Option<&str>, conversation: Option<&str>) -> NewEvent {
    NewEvent {
        kind: kind.into(),
        customer_id: customer.map(str::to_string),
        conversation_id: conversation.map(str::to_string),
        at_ms: BASE_MS,
        payload: json!({ "kind": kind, "customer": customer }),
    }
}

fn ok<T>(what: &str, r: Result<T, RecordError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Archiving an id twice (from either handle) changes nothing the second time: neither the
/// row, nor its rating, nor the outbox; events come with the first archive, in one
/// transaction, with consecutive sequence numbers.
pub async fn archive_is_idempotent(a: &dyn Record, b: &dyn Record) {
    let before = ok("last_seq", a.last_seq().await);
    let row = conversation(
        "idem-1",
        Some("idem-cust"),
        Some("anna"),
        "sales",
        "it",
        BASE_MS,
    );
    let events = vec![
        event("conversation.closed", Some("idem-cust"), Some("idem-1")),
        event("conversation.archived", Some("idem-cust"), Some("idem-1")),
    ];
    let first = ok("archive", a.archive(row.clone(), events.clone()).await);
    assert!(first.inserted, "a new id is inserted");
    assert_eq!(
        first.seqs,
        vec![before + 1, before + 2],
        "events numbered next"
    );
    ok("rate", a.set_rating("idem-1", true, "thanks").await);
    let mut other = row.clone();
    other.agent_id = Some("bruno".into());
    other.transcript = json!([]);
    let second = ok("archive again", b.archive(other, events).await);
    assert!(
        !second.inserted,
        "a second archive of one id inserts nothing"
    );
    assert!(second.seqs.is_empty(), "a second archive appends no event");
    assert_eq!(
        ok("last_seq", b.last_seq().await),
        before + 2,
        "no event from the replay"
    );
    let stored = ok("get", b.get("idem-1").await).unwrap_or_else(|| panic!("idem-1 archived"));
    let mut want = row;
    want.rating = Some(Rating {
        good: true,
        comment: "thanks".into(),
    });
    assert_eq!(stored, want, "the first archive and its rating stay");
    assert!(matches!(
        a.archive(conversation("", None, None, "d", "it", BASE_MS), vec![])
            .await,
        Err(RecordError::InvalidInput(_))
    ));
}

/// A rating is set on an archived row and a later one replaces it; rating an unknown id is
/// `NotFound`.
pub async fn rating_updates_the_row(a: &dyn Record, b: &dyn Record) {
    let row = conversation("rate-1", None, Some("anna"), "support", "en", BASE_MS + 5);
    ok("archive", a.archive(row, vec![]).await);
    assert_eq!(
        ok("get", b.get("rate-1").await).and_then(|c| c.rating),
        None
    );
    ok("rate", a.set_rating("rate-1", false, "").await);
    ok(
        "rate again",
        b.set_rating("rate-1", true, "solved after all").await,
    );
    let got = ok("get", a.get("rate-1").await).and_then(|c| c.rating);
    assert_eq!(
        got,
        Some(Rating {
            good: true,
            comment: "solved after all".into()
        }),
        "the later rating wins"
    );
    assert!(matches!(
        a.set_rating("rate-missing", true, "").await,
        Err(RecordError::NotFound(_))
    ));
    assert_eq!(ok("get missing", a.get("rate-missing").await), None);
}

async fn collect_pages(
    r: &dyn Record,
    filter: &ArchiveFilter,
    limit: usize,
) -> Vec<ArchivedConversation> {
    let mut out = Vec::new();
    let mut cursor: Option<ArchiveCursor> = None;
    for _ in 0..1000 {
        let page = ok("list", r.list(filter, cursor.as_ref(), limit).await);
        assert!(page.items.len() <= limit, "a page holds at most limit rows");
        out.extend(page.items);
        match page.next {
            // the cursor survives its text form, as clients hand it back
            Some(next) => {
                let text = next.to_string();
                cursor = Some(
                    text.parse()
                        .unwrap_or_else(|_| panic!("cursor {text} parses")),
                );
            }
            None => return out,
        }
    }
    panic!("pagination does not end");
}

/// Lists keep exactly the rows each filter names, newest first (ties by id, descending),
/// and paging with the keyset cursor returns them all once, from either handle.
pub async fn list_filters_and_pages(a: &dyn Record, b: &dyn Record) {
    let dept = "contract-list";
    let mut rows = Vec::new();
    for i in 0..23i64 {
        let id = format!("list-{i:02}");
        let customer = format!("list-cust-{}", i % 3);
        let agent = format!("list-agent-{}", i % 4);
        let lang = if i % 2 == 0 { "it" } else { "en" };
        // pairs of equal close times: the id breaks the tie
        let mut row = conversation(
            &id,
            Some(&customer),
            Some(&agent),
            dept,
            lang,
            BASE_MS + (i / 2) * 1000,
        );
        if i % 5 == 1 {
            row.agent_id = None;
        }
        let writer = if i % 2 == 0 { a } else { b };
        ok("archive", writer.archive(row.clone(), vec![]).await);
        match i % 3 {
            0 => {
                ok("rate", writer.set_rating(&id, true, "").await);
                row.rating = Some(Rating {
                    good: true,
                    comment: String::new(),
                });
            }
            1 => {
                ok("rate", writer.set_rating(&id, false, "slow").await);
                row.rating = Some(Rating {
                    good: false,
                    comment: "slow".into(),
                });
            }
            _ => {}
        }
        rows.push(row);
    }
    // a row of another department, which no filter below may return
    ok(
        "archive",
        a.archive(
            conversation(
                "list-other",
                Some("list-cust-0"),
                Some("list-agent-0"),
                "elsewhere",
                "it",
                BASE_MS,
            ),
            vec![],
        )
        .await,
    );
    let base = ArchiveFilter {
        department: Some(dept.into()),
        ..Default::default()
    };
    let filters = vec![
        base.clone(),
        ArchiveFilter {
            agent_id: Some("list-agent-1".into()),
            ..base.clone()
        },
        ArchiveFilter {
            language: Some("en".into()),
            ..base.clone()
        },
        ArchiveFilter {
            customer_id: Some("list-cust-2".into()),
            ..base.clone()
        },
        ArchiveFilter {
            rating: Some(RatingFilter::Good),
            ..base.clone()
        },
        ArchiveFilter {
            rating: Some(RatingFilter::Bad),
            ..base.clone()
        },
        ArchiveFilter {
            rating: Some(RatingFilter::Rated),
            ..base.clone()
        },
        ArchiveFilter {
            rating: Some(RatingFilter::Unrated),
            ..base.clone()
        },
        ArchiveFilter {
            closed_from_ms: Some(BASE_MS + 3000),
            closed_before_ms: Some(BASE_MS + 8000),
            ..base.clone()
        },
        ArchiveFilter {
            language: Some("it".into()),
            rating: Some(RatingFilter::Good),
            closed_from_ms: Some(BASE_MS + 2000),
            ..base.clone()
        },
    ];
    for filter in filters {
        let mut want: Vec<ArchivedConversation> =
            rows.iter().filter(|c| filter.keeps(c)).cloned().collect();
        want.sort_by(|x, y| (y.closed_at_ms, &y.id).cmp(&(x.closed_at_ms, &x.id)));
        assert!(!want.is_empty(), "filter {filter:?} selects something");
        for (r, limit) in [(a, 4), (b, 5), (a, 1000)] {
            let got = collect_pages(r, &filter, limit).await;
            assert_eq!(
                got.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                want.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                "filter {filter:?}, pages of {limit}"
            );
            assert_eq!(got, want, "rows as archived, filter {filter:?}");
        }
    }
    // a customer filter alone crosses departments
    let all = collect_pages(
        a,
        &ArchiveFilter {
            customer_id: Some("list-cust-0".into()),
            ..Default::default()
        },
        3,
    )
    .await;
    assert!(
        all.iter().any(|c| c.id == "list-other"),
        "customer filter spans departments"
    );
    assert_eq!(
        all.len(),
        rows.iter()
            .filter(|c| c.customer_id.as_deref() == Some("list-cust-0"))
            .count()
            + 1
    );
    assert!(matches!(
        a.list(&base, None, 0).await,
        Err(RecordError::InvalidInput(_))
    ));
    assert!("nonsense".parse::<ArchiveCursor>().is_err());
}

/// Retention deletes the rows closed before the bound and nothing else.
/// Event retention deletes the events that happened before the cut, whatever their place
/// in the sequence, and nothing else; the sequence goes on.
pub async fn event_retention_deletes_only_old_events(a: &dyn Record, b: &dyn Record) {
    let before = ok("last seq", a.last_seq().await);
    let at = |kind: &str, at_ms: i64| NewEvent {
        at_ms,
        ..event(kind, Some("ret-events"), None)
    };
    // Out of time order on purpose: a newer one first.
    let seqs = ok(
        "append",
        a.append(vec![
            at("ret.new", BASE_MS + 10),
            at("ret.old1", 1_000),
            at("ret.old2", 2_000),
        ])
        .await,
    );
    assert_eq!(ok("retention", b.delete_events_older_than(2_500).await), 2);
    let left = ok("read", a.read_after(before, 100).await);
    assert_eq!(
        left.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["ret.new"],
        "only the newer event stays"
    );
    assert_eq!(
        ok("retention again", b.delete_events_older_than(2_500).await),
        0
    );
    let next = ok("append", a.append(vec![at("ret.next", BASE_MS + 20)]).await);
    assert_eq!(next, [seqs[2] + 1], "the sequence goes on after a deletion");
}

pub async fn retention_deletes_only_old_rows(a: &dyn Record, b: &dyn Record) {
    let keep = ok("list", a.list(&ArchiveFilter::default(), None, 1000).await)
        .items
        .len();
    for (id, at) in [("ret-1", 1_000), ("ret-2", 2_000), ("ret-3", 3_000)] {
        ok(
            "archive",
            a.archive(
                conversation(id, Some("ret-cust"), None, "ret", "it", at),
                vec![],
            )
            .await,
        );
    }
    assert_eq!(
        ok("retention", b.delete_older_than(2_500).await),
        2,
        "two rows are older"
    );
    assert_eq!(ok("get", a.get("ret-1").await), None);
    assert_eq!(ok("get", a.get("ret-2").await), None);
    assert!(
        ok("get", a.get("ret-3").await).is_some(),
        "the newer row stays"
    );
    assert_eq!(ok("retention again", b.delete_older_than(2_500).await), 0);
    let left = ok("list", a.list(&ArchiveFilter::default(), None, 1000).await)
        .items
        .len();
    assert_eq!(left, keep + 1, "no other row was deleted");
    let by_customer = ArchiveFilter {
        customer_id: Some("ret-cust".into()),
        ..Default::default()
    };
    let left = ok("list", b.list(&by_customer, None, 10).await).items;
    assert_eq!(
        left.len(),
        1,
        "the customer index lost the deleted rows too"
    );
    ok("cleanup", a.delete_older_than(3_500).await);
}

fn push_history(entry: String) -> ProfileFn {
    Arc::new(move |data: &mut Value| {
        let obj = data
            .as_object_mut()
            .ok_or("profile data is not an object")?;
        let history = obj.entry("history").or_insert_with(|| json!([]));
        history
            .as_array_mut()
            .ok_or("history is not an array")?
            .push(json!(entry));
        obj.insert("last_agent".into(), json!(entry));
        Ok(())
    })
}

/// Fifty concurrent history appends to one profile, from two handles, all survive; a
/// refused update changes nothing.
pub async fn concurrent_profile_updates_all_survive(a: Arc<dyn Record>, b: Arc<dyn Record>) {
    const N: usize = 50;
    let mut tasks = Vec::new();
    for i in 0..N {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            r.update_profile("prof-1", push_history(format!("close-{i}")))
                .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap_or_else(|e| panic!("update task: {e}"));
        ok("update", r);
    }
    let p = ok("get", a.get_profile("prof-1").await).unwrap_or_else(|| panic!("profile exists"));
    let history: BTreeSet<String> = p.data["history"]
        .as_array()
        .unwrap_or_else(|| panic!("history array in {}", p.data))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = (0..N).map(|i| format!("close-{i}")).collect();
    assert_eq!(history, want, "every concurrent append survives");
    assert_eq!(
        p.data["history"].as_array().map(Vec::len),
        Some(N),
        "each once"
    );
    assert_eq!(p.version, N as i64, "one version per update");
    let refused: ProfileFn = Arc::new(|data: &mut Value| {
        data["history"] = json!([]);
        Err("no".into())
    });
    assert!(matches!(
        b.update_profile("prof-1", refused).await,
        Err(RecordError::InvalidInput(_))
    ));
    let after = ok("get", b.get_profile("prof-1").await);
    assert_eq!(after.as_ref(), Some(&p), "a refused update changes nothing");
    assert_eq!(ok("get none", a.get_profile("prof-nobody").await), None);
}

/// A tier set while other updates run (and before later ones) is never undone by them.
pub async fn tier_is_never_undone(a: Arc<dyn Record>, b: Arc<dyn Record>) {
    ok(
        "seed",
        b.update_profile("tier-1", push_history("first".into()))
            .await,
    );
    // a slow update that read the profile before the tier change commits after it
    let slow: ProfileFn = Arc::new(|data: &mut Value| {
        std::thread::sleep(Duration::from_millis(300));
        data["name"] = json!("Giulia");
        Ok(())
    });
    let b2 = b.clone();
    let slow_task = tokio::spawn(async move { b2.update_profile("tier-1", slow).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let set = ok("set tier", a.set_tier("tier-1", Some("vip")).await);
    assert_eq!(set.tier.as_deref(), Some("vip"));
    ok(
        "slow update",
        slow_task.await.unwrap_or_else(|e| panic!("task: {e}")),
    );
    let mut tasks = Vec::new();
    for i in 0..10 {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            r.update_profile("tier-1", push_history(format!("later-{i}")))
                .await
        }));
    }
    for t in tasks {
        ok("update", t.await.unwrap_or_else(|e| panic!("task: {e}")));
    }
    let p = ok("get", a.get_profile("tier-1").await).unwrap_or_else(|| panic!("profile"));
    assert_eq!(
        p.tier.as_deref(),
        Some("vip"),
        "no data update undoes the tier"
    );
    assert_eq!(
        p.data["name"],
        json!("Giulia"),
        "the slow update landed too"
    );
    assert_eq!(p.data["history"].as_array().map(Vec::len), Some(11));
    let cleared = ok("clear tier", b.set_tier("tier-1", None).await);
    assert_eq!(cleared.tier, None);
    assert_eq!(cleared.data, p.data, "a tier change keeps the data");
    let fresh = ok("tier on new", a.set_tier("tier-2", Some("gold")).await);
    assert_eq!((fresh.version, fresh.tier.as_deref()), (1, Some("gold")));
}

/// Two handles appending concurrently get unique numbers that together form one gapless
/// range; `read_after` returns the events in that order, page by page from any point.
pub async fn outbox_sequence_is_contiguous_across_writers(a: Arc<dyn Record>, b: Arc<dyn Record>) {
    const WRITERS: usize = 40;
    let start = ok("last_seq", a.last_seq().await);
    let total: i64 = (0..WRITERS).map(|i| (i % 3 + 1) as i64).sum();
    // a follower reading while the writers write must never skip a number: a number it has
    // read past is never committed later (numbers are in commit order)
    let follower = {
        let r = b.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seen = Vec::new();
            let mut at = start;
            while at < start + total && Instant::now() < deadline {
                let page = r
                    .read_after(at, 100)
                    .await
                    .unwrap_or_else(|e| panic!("follow: {e}"));
                if let Some(last) = page.last() {
                    at = last.seq;
                }
                seen.extend(page.into_iter().map(|e| e.seq));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let r = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let batch: Vec<NewEvent> = (0..(i % 3 + 1))
                .map(|j| event(&format!("seq.{i}.{j}"), None, None))
                .collect();
            let kinds: Vec<String> = batch.iter().map(|e| e.kind.clone()).collect();
            r.append(batch).await.map(|seqs| (seqs, kinds))
        }));
    }
    let mut by_seq = BTreeMap::new();
    for t in tasks {
        let (seqs, kinds) = ok("append", t.await.unwrap_or_else(|e| panic!("task: {e}")));
        assert_eq!(seqs.len(), kinds.len());
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "one batch is consecutive: {seqs:?}"
        );
        for (s, k) in seqs.into_iter().zip(kinds) {
            assert!(
                by_seq.insert(s, k).is_none(),
                "sequence number {s} given twice"
            );
        }
    }
    let n = by_seq.len() as i64;
    assert_eq!(n, total);
    let want: Vec<i64> = (start + 1..=start + n).collect();
    assert_eq!(by_seq.keys().copied().collect::<Vec<_>>(), want, "no gap");
    let seen = follower.await.unwrap_or_else(|e| panic!("follower: {e}"));
    assert_eq!(
        seen, want,
        "a concurrent follower saw every event once, in order"
    );
    assert_eq!(ok("last_seq", b.last_seq().await), start + n);
    let all = ok("read", b.read_after(start, 1000).await);
    assert_eq!(
        all.iter()
            .map(|e| (e.seq, e.kind.clone()))
            .collect::<Vec<_>>(),
        by_seq.clone().into_iter().collect::<Vec<_>>(),
        "read_after returns every event in order"
    );
    // resume anywhere, in pages, from the other handle
    let mut resumed = Vec::new();
    let mut at = start + 5;
    loop {
        let page = ok("read page", a.read_after(at, 7).await);
        let Some(last) = page.last() else { break };
        at = last.seq;
        resumed.extend(page);
    }
    assert_eq!(
        resumed,
        all[5..].to_vec(),
        "resuming from a seq continues without gap or repeat"
    );
    assert!(ok("empty append", a.append(vec![]).await).is_empty());
    assert!(matches!(
        a.read_after(0, 0).await,
        Err(RecordError::InvalidInput(_))
    ));
}

/// A tail waiting on one handle wakes within a second of an append on the other, without
/// the fallback poll (set to a minute).
pub async fn tail_wakes_on_a_new_event(a: Arc<dyn Record>, b: Arc<dyn Record>) {
    let start = ok("last_seq", b.last_seq().await);
    let mut tail = OutboxTail::new(b.clone(), start).with_fallback(Duration::from_secs(60));
    let waiting = tokio::spawn(async move {
        let got = tail.next(10).await;
        (got, Instant::now(), tail)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the tail waits while there is nothing"
    );
    let appended_at = Instant::now();
    let seqs = ok(
        "append",
        a.append(vec![event("tail.wake", None, None)]).await,
    );
    let (got, woke_at, mut tail) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap_or_else(|_| panic!("the tail did not wake within 5 s"))
        .unwrap_or_else(|e| panic!("tail task: {e}"));
    let got = ok("tail", got);
    assert!(
        woke_at - appended_at < WAKE,
        "woke after {:?}",
        woke_at - appended_at
    );
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(tail.position(), seqs[0]);
    // and again, for two events appended while nobody waits
    let more = ok(
        "append",
        a.append(vec![
            event("tail.2", None, None),
            event("tail.3", None, None),
        ])
        .await,
    );
    let got = ok(
        "tail",
        tokio::time::timeout(WAKE, tail.next(10))
            .await
            .unwrap_or_else(|_| panic!("no second batch")),
    );
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), more);
}

/// Directory documents are versioned (compare-and-set on the version), listed by kind,
/// disabled and enabled; every change is in the audit log (who, what, when) and the change
/// feed, which wakes a follower on the other handle within a second.
pub async fn directory_versions_audit_and_feed(a: Arc<dyn Record>, b: Arc<dyn Record>) {
    let audit_start = ok("audit", a.audit_after(0, 1000).await)
        .last()
        .map_or(0, |e| e.id);
    let feed_start = ok("feed", a.directory_changes_after(0, 1000).await)
        .last()
        .map_or(0, |c| c.seq);
    let mut feed = DirectoryFeed::new(b.clone(), feed_start).with_fallback(Duration::from_secs(60));
    let waiting = tokio::spawn(async move {
        let got = feed.next(10).await;
        (got, Instant::now(), feed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let doc =
        json!({ "name": "Anna", "team": "it", "skills": { "it": 5 }, "capacity": { "chat": 3 } });
    let put_at = Instant::now();
    let anna = ok(
        "put",
        a.put_entry(
            DirectoryKind::Agent,
            "anna",
            doc.clone(),
            Some(0),
            &by("admin:ops", BASE_MS),
        )
        .await,
    );
    let (got, woke_at, mut feed) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap_or_else(|_| panic!("the directory feed did not wake"))
        .unwrap_or_else(|e| panic!("feed task: {e}"));
    let got = ok("feed", got);
    assert!(
        woke_at - put_at < WAKE,
        "feed woke after {:?}",
        woke_at - put_at
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].seq, got[0].kind, got[0].id.as_str(), got[0].version),
        (feed_start + 1, DirectoryKind::Agent, "anna", 1)
    );
    assert_eq!((anna.version, anna.disabled, &anna.doc), (1, false, &doc));
    assert!(
        matches!(
            b.put_entry(
                DirectoryKind::Agent,
                "anna",
                json!({}),
                Some(0),
                &by("admin:ops", BASE_MS)
            )
            .await,
            Err(RecordError::Conflict(_))
        ),
        "create-if-absent of an existing entry conflicts"
    );
    let doc2 = json!({ "name": "Anna", "team": "it", "skills": { "it": 5, "billing": 2 }, "capacity": { "chat": 2 } });
    let v2 = ok(
        "update",
        b.put_entry(
            DirectoryKind::Agent,
            "anna",
            doc2.clone(),
            Some(1),
            &by("admin:lea", BASE_MS + 1),
        )
        .await,
    );
    assert_eq!(v2.version, 2);
    assert!(
        matches!(
            a.put_entry(
                DirectoryKind::Agent,
                "anna",
                json!({}),
                Some(1),
                &by("admin:ops", BASE_MS)
            )
            .await,
            Err(RecordError::Conflict(_))
        ),
        "a stale version conflicts"
    );
    ok(
        "put",
        a.put_entry(
            DirectoryKind::Agent,
            "bruno",
            json!({ "name": "Bruno" }),
            None,
            &by("seed:config", BASE_MS + 2),
        )
        .await,
    );
    ok(
        "put team",
        a.put_entry(
            DirectoryKind::Team,
            "it",
            json!({ "schedule": "10-22" }),
            None,
            &by("seed:config", BASE_MS + 2),
        )
        .await,
    );
    let agents = ok("list", b.list_entries(DirectoryKind::Agent, false).await);
    assert_eq!(
        agents.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["anna", "bruno"]
    );
    assert_eq!(agents[0].doc, doc2);
    let off = ok(
        "disable",
        a.set_disabled(
            DirectoryKind::Agent,
            "anna",
            true,
            &by("admin:lea", BASE_MS + 3),
        )
        .await,
    );
    assert_eq!((off.version, off.disabled), (3, true));
    let same = ok(
        "disable again",
        b.set_disabled(
            DirectoryKind::Agent,
            "anna",
            true,
            &by("admin:lea", BASE_MS + 4),
        )
        .await,
    );
    assert_eq!(
        same.version, 3,
        "disabling a disabled entry changes nothing"
    );
    let enabled_only = ok("list", b.list_entries(DirectoryKind::Agent, false).await);
    assert_eq!(
        enabled_only
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["bruno"]
    );
    assert_eq!(
        ok("list all", b.list_entries(DirectoryKind::Agent, true).await).len(),
        2
    );
    let kept = ok(
        "put disabled",
        b.put_entry(
            DirectoryKind::Agent,
            "anna",
            doc.clone(),
            None,
            &by("admin:lea", BASE_MS + 5),
        )
        .await,
    );
    assert!(kept.disabled, "a put keeps a disabled entry disabled");
    let on = ok(
        "enable",
        a.set_disabled(
            DirectoryKind::Agent,
            "anna",
            false,
            &by("admin:ops", BASE_MS + 6),
        )
        .await,
    );
    assert_eq!((on.version, on.disabled), (5, false));
    assert_eq!(
        ok("get", b.get_entry(DirectoryKind::Agent, "anna").await).as_ref(),
        Some(&on)
    );
    assert_eq!(
        ok("get team", b.get_entry(DirectoryKind::Team, "it").await).map(|e| e.version),
        Some(1)
    );
    assert_eq!(
        ok(
            "get missing",
            b.get_entry(DirectoryKind::Department, "anna").await
        ),
        None
    );
    assert!(matches!(
        a.set_disabled(
            DirectoryKind::Department,
            "nothing",
            true,
            &by("admin:ops", BASE_MS)
        )
        .await,
        Err(RecordError::NotFound(_))
    ));

    let audit = ok("audit", b.audit_after(audit_start, 1000).await);
    let rows: Vec<(String, String, String, i64)> = audit
        .iter()
        .map(|e| {
            (
                e.actor.clone(),
                e.action.clone(),
                e.subject.clone(),
                e.at_ms,
            )
        })
        .collect();
    let want: Vec<(String, String, String, i64)> = [
        ("admin:ops", "directory.put", "agent/anna", BASE_MS),
        ("admin:lea", "directory.put", "agent/anna", BASE_MS + 1),
        ("seed:config", "directory.put", "agent/bruno", BASE_MS + 2),
        ("seed:config", "directory.put", "team/it", BASE_MS + 2),
        ("admin:lea", "directory.disable", "agent/anna", BASE_MS + 3),
        ("admin:lea", "directory.put", "agent/anna", BASE_MS + 5),
        ("admin:ops", "directory.enable", "agent/anna", BASE_MS + 6),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d))
    .collect();
    assert_eq!(
        rows, want,
        "one audit row per change, none for refused or empty ones"
    );
    assert!(audit.windows(2).all(|w| w[1].id > w[0].id));
    assert_eq!(
        audit[1].detail["doc"], doc2,
        "the audit row holds what was written"
    );

    let changes = ok("feed", a.directory_changes_after(feed_start, 1000).await);
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (feed_start + 1..=feed_start + 7).collect::<Vec<_>>(),
        "the change feed is gapless"
    );
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.id.as_str(), c.version, c.disabled))
            .collect::<Vec<_>>(),
        [
            ("anna", 1, false),
            ("anna", 2, false),
            ("bruno", 1, false),
            ("it", 1, false),
            ("anna", 3, true),
            ("anna", 4, true),
            ("anna", 5, false)
        ]
    );
    let rest = ok(
        "feed rest",
        tokio::time::timeout(WAKE, feed.next(100))
            .await
            .unwrap_or_else(|_| panic!("feed did not continue")),
    );
    assert_eq!(
        rest,
        changes[1..].to_vec(),
        "the follower continues where it was"
    );
}

/// Operator tokens are stored by name with a unique digest; changes are audited without
/// the digest.
pub async fn operator_tokens(a: &dyn Record, b: &dyn Record) {
    let audit_start = ok("audit", a.audit_after(0, 1000).await)
        .last()
        .map_or(0, |e| e.id);
    let crm = OperatorToken {
        name: "crm".into(),
        digest: "d1gest-crm".into(),
        scopes: vec!["integration".into()],
    };
    let ops = OperatorToken {
        name: "ops".into(),
        digest: "d1gest-ops".into(),
        scopes: vec!["admin".into(), "supervisor".into()],
    };
    ok(
        "put",
        a.put_token(crm.clone(), &by("admin:ops", BASE_MS)).await,
    );
    ok(
        "put",
        b.put_token(ops.clone(), &by("admin:ops", BASE_MS)).await,
    );
    assert_eq!(
        ok("by digest", b.token_by_digest("d1gest-crm").await),
        Some(crm.clone())
    );
    assert_eq!(ok("by digest", a.token_by_digest("nothing").await), None);
    let clash = OperatorToken {
        name: "other".into(),
        ..crm.clone()
    };
    assert!(matches!(
        a.put_token(clash, &by("admin:ops", BASE_MS)).await,
        Err(RecordError::Conflict(_))
    ));
    assert_eq!(
        ok("list", a.list_tokens().await),
        vec![crm.clone(), ops.clone()],
        "the clash changed nothing"
    );
    let rotated = OperatorToken {
        digest: "d1gest-crm-2".into(),
        ..crm.clone()
    };
    ok(
        "rotate",
        b.put_token(rotated.clone(), &by("admin:ops", BASE_MS + 1))
            .await,
    );
    assert_eq!(
        ok("old digest", a.token_by_digest("d1gest-crm").await),
        None
    );
    assert_eq!(
        ok("new digest", a.token_by_digest("d1gest-crm-2").await),
        Some(rotated)
    );
    assert!(ok(
        "delete",
        a.delete_token("ops", &by("admin:ops", BASE_MS + 2)).await
    ));
    assert!(!ok(
        "delete again",
        b.delete_token("ops", &by("admin:ops", BASE_MS + 3)).await
    ));
    assert_eq!(ok("list", b.list_tokens().await).len(), 1);
    let audit = ok("audit", b.audit_after(audit_start, 1000).await);
    assert_eq!(
        audit
            .iter()
            .map(|e| (e.action.as_str(), e.subject.as_str()))
            .collect::<Vec<_>>(),
        [
            ("token.put", "token/crm"),
            ("token.put", "token/ops"),
            ("token.put", "token/crm"),
            ("token.delete", "token/ops")
        ]
    );
    assert!(
        audit
            .iter()
            .all(|e| !e.detail.to_string().contains("d1gest")),
        "no digest in the audit log"
    );
}

/// A webhook endpoint has one deliverer at a time: a claim holds until it expires unless
/// its holder renews it (or releases it); only the holder moves the cursor, never back; a
/// claim taken over after expiry or release keeps the cursor; bad input changes nothing.
pub async fn webhook_claims_fence_the_cursor(a: &dyn Record, b: &dyn Record) {
    const TTL: i64 = 60_000;
    assert_eq!(ok("cursor", a.webhook_cursor("crm-hook").await), 0);
    assert_eq!(
        ok("claim", a.claim_webhook("crm-hook", "router-1", TTL).await),
        Some(0),
        "a first claim holds, at cursor 0"
    );
    assert_eq!(
        ok("claim", b.claim_webhook("crm-hook", "router-2", TTL).await),
        None,
        "a live claim is not taken over"
    );
    assert!(ok(
        "set",
        a.set_webhook_cursor("crm-hook", "router-1", 7).await
    ));
    assert!(
        !ok("set", b.set_webhook_cursor("crm-hook", "router-2", 9).await),
        "only the holder moves the cursor"
    );
    assert!(ok(
        "set",
        a.set_webhook_cursor("crm-hook", "router-1", 3).await
    ));
    assert_eq!(
        ok("cursor", b.webhook_cursor("crm-hook").await),
        7,
        "the cursor never moves back"
    );
    assert_eq!(
        ok("renew", b.claim_webhook("crm-hook", "router-1", TTL).await),
        Some(7),
        "the holder renews from either handle and reads its cursor"
    );
    assert!(
        !ok(
            "set",
            a.set_webhook_cursor("other-hook", "router-1", 1).await
        ),
        "no claim, no cursor"
    );
    assert_eq!(ok("cursor", a.webhook_cursor("other-hook").await), 0);

    // A claim that expires is taken over, with the cursor where it was.
    assert_eq!(
        ok("claim", a.claim_webhook("short-hook", "router-1", 1).await),
        Some(0)
    );
    assert!(ok(
        "set",
        a.set_webhook_cursor("short-hook", "router-1", 4).await
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        ok(
            "take over",
            b.claim_webhook("short-hook", "router-2", TTL).await
        ),
        Some(4),
        "an expired claim is taken over at its cursor"
    );
    assert!(
        !ok(
            "set",
            a.set_webhook_cursor("short-hook", "router-1", 5).await
        ),
        "the old holder is fenced off"
    );
    assert_eq!(
        ok(
            "claim",
            a.claim_webhook("short-hook", "router-1", TTL).await
        ),
        None
    );
    assert!(ok(
        "set",
        b.set_webhook_cursor("short-hook", "router-2", 5).await
    ));
    assert_eq!(ok("cursor", a.webhook_cursor("short-hook").await), 5);

    // A released claim (a clean stop) is taken over at once, at its cursor.
    assert!(
        !ok("release", a.release_webhook("crm-hook", "router-2").await),
        "only the holder releases"
    );
    assert_eq!(
        ok("claim", b.claim_webhook("crm-hook", "router-2", TTL).await),
        None,
        "a refused release changed nothing"
    );
    assert!(ok(
        "release",
        a.release_webhook("crm-hook", "router-1").await
    ));
    assert_eq!(
        ok(
            "take over",
            b.claim_webhook("crm-hook", "router-2", TTL).await
        ),
        Some(7),
        "a released claim is taken over at its cursor"
    );
    assert!(!ok(
        "set",
        a.set_webhook_cursor("crm-hook", "router-1", 8).await
    ));

    // Bad input is refused and changes nothing.
    for (endpoint, holder, ttl) in [("", "r", TTL), ("e", "", TTL), ("e", "r", 0)] {
        assert!(
            matches!(
                a.claim_webhook(endpoint, holder, ttl).await,
                Err(RecordError::InvalidInput(_))
            ),
            "claim({endpoint:?}, {holder:?}, {ttl}) must be refused"
        );
    }
    assert_eq!(
        ok("claim", b.claim_webhook("e", "router-2", TTL).await),
        Some(0),
        "the refused claims took nothing"
    );
}

/// Export returns everything stored about a customer; erasure deletes the profile and the
/// archived conversations, blanks the personal fields of their events (keeping the
/// sequence) and leaves no row anywhere that names the customer or their personal text;
/// another customer keeps everything.
pub async fn export_and_erase(a: &dyn Record, b: &dyn Record, probe: &dyn Probe) {
    let who = "gdpr-cust-7f3a";
    let secret = "Via Roma 12, Milano 7f3a";
    let other = "gdpr-other-91c2";
    let p = ok(
        "profile",
        a.update_profile(
            who,
            Arc::new(|d: &mut Value| {
                d["name"] = json!("Ottavia Rossetti");
                d["notes"] = json!(["lives at Via Roma 12, Milano 7f3a"]);
                Ok(())
            }),
        )
        .await,
    );
    let p = CustomerProfile {
        tier: Some("vip".into()),
        version: p.version + 1,
        ..p
    };
    ok("tier", b.set_tier(who, Some("vip")).await);
    ok(
        "other profile",
        b.update_profile(other, push_history("x".into())).await,
    );
    let mut c1 = conversation(
        "gdpr-c1",
        Some(who),
        Some("anna"),
        "sales",
        "it",
        BASE_MS + 100,
    );
    c1.transcript = json!([{ "from": "customer", "text": format!("ship to {secret}") }]);
    let c2 = conversation(
        "gdpr-c2",
        Some(who),
        Some("bruno"),
        "support",
        "en",
        BASE_MS + 200,
    );
    let c3 = conversation(
        "gdpr-c3",
        Some(other),
        Some("anna"),
        "sales",
        "it",
        BASE_MS + 300,
    );
    let mut e1 = event("conversation.closed", Some(who), Some("gdpr-c1"));
    e1.payload = json!({ "address": secret });
    let s1 = ok("archive", a.archive(c1.clone(), vec![e1]).await).seqs;
    ok("archive", b.archive(c2.clone(), vec![]).await);
    ok(
        "archive",
        a.archive(
            c3.clone(),
            vec![event("conversation.closed", Some(other), Some("gdpr-c3"))],
        )
        .await,
    );
    ok("rate", b.set_rating("gdpr-c2", false, "too slow").await);
    // an event naming only the conversation, and one naming only the customer
    let s2 = ok(
        "append",
        a.append(vec![
            event("conversation.rated", None, Some("gdpr-c2")),
            event("customer.tier", Some(who), None),
        ])
        .await,
    );
    let seqs: Vec<i64> = s1.iter().chain(&s2).copied().collect();

    let export = ok("export", b.export_customer(who).await);
    assert_eq!(export["customer_id"], json!(who));
    let profile: CustomerProfile = serde_json::from_value(export["profile"].clone())
        .unwrap_or_else(|e| panic!("profile json: {e}"));
    assert_eq!(profile, p, "the profile as stored");
    let conversations: Vec<ArchivedConversation> =
        serde_json::from_value(export["conversations"].clone())
            .unwrap_or_else(|e| panic!("conversations json: {e}"));
    let mut c2_rated = c2.clone();
    c2_rated.rating = Some(Rating {
        good: false,
        comment: "too slow".into(),
    });
    assert_eq!(
        conversations,
        vec![c2_rated, c1.clone()],
        "both conversations, newest first"
    );
    let events: Vec<crate::types::OutboxEvent> = serde_json::from_value(export["events"].clone())
        .unwrap_or_else(|e| panic!("events json: {e}"));
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        seqs,
        "every event naming the customer or their conversations"
    );
    assert_eq!(events[0].payload, json!({ "address": secret }));

    let last = ok("last_seq", a.last_seq().await);
    let report = ok("erase", a.erase_customer(who).await);
    assert_eq!(
        (report.profiles, report.conversations, report.events),
        (1, 2, 3)
    );
    assert_eq!(
        probe.rows_mentioning(who).await,
        0,
        "no row names the erased customer"
    );
    assert_eq!(
        probe.rows_mentioning("7f3a").await,
        0,
        "no row holds their personal text"
    );
    assert_eq!(probe.rows_mentioning("Rossetti").await, 0, "nor their name");
    assert_eq!(ok("get", b.get("gdpr-c1").await), None);
    assert_eq!(ok("profile", b.get_profile(who).await), None);
    let after = ok("export after", b.export_customer(who).await);
    assert_eq!(after["profile"], Value::Null);
    assert_eq!(after["conversations"], json!([]));
    assert_eq!(after["events"], json!([]));
    // the sequence keeps its numbers: followers see blanked events, not gaps
    let all = ok("read", b.read_after(seqs[0] - 1, 1000).await);
    assert!(seqs
        .iter()
        .all(|s| all.iter().any(|e| e.seq == *s && e.customer_id.is_none())));
    assert_eq!(
        ok("last_seq", a.last_seq().await),
        last,
        "erasure appends nothing"
    );
    // the other customer keeps everything
    assert!(
        probe.rows_mentioning(other).await >= 3,
        "the other customer's rows stay"
    );
    assert_eq!(ok("get other", a.get("gdpr-c3").await), Some(c3));
    assert!(ok("other profile", a.get_profile(other).await).is_some());
    let again = ok("erase again", b.erase_customer(who).await);
    assert_eq!(
        again,
        crate::types::ErasureReport::default(),
        "a second erasure finds nothing"
    );
}

/// Bad input is refused with `InvalidInput` and changes nothing: an archive with a bad
/// event archives nothing, a bad event in a batch appends none of it.
pub async fn bad_input_changes_nothing(a: &dyn Record, b: &dyn Record) {
    let seq = ok("last_seq", a.last_seq().await);
    let long = "x".repeat(crate::types::MAX_ID_LEN + 1);
    let mut no_department = conversation("bad-1", None, None, "", "it", BASE_MS);
    assert!(matches!(
        a.archive(no_department.clone(), vec![]).await,
        Err(RecordError::InvalidInput(_))
    ));
    no_department.department = "sales".into();
    let bad_event = event("", None, None);
    assert!(matches!(
        a.archive(
            no_department,
            vec![
                event("conversation.closed", None, Some("bad-1")),
                bad_event.clone()
            ]
        )
        .await,
        Err(RecordError::InvalidInput(_))
    ));
    assert_eq!(
        ok("get", b.get("bad-1").await),
        None,
        "a refused archive archives nothing"
    );
    let long_customer = conversation("bad-2", Some(&long), None, "sales", "it", BASE_MS);
    assert!(matches!(
        a.archive(long_customer, vec![]).await,
        Err(RecordError::InvalidInput(_))
    ));
    assert!(matches!(
        b.append(vec![event("ok", None, None), bad_event]).await,
        Err(RecordError::InvalidInput(_))
    ));
    assert_eq!(
        ok("last_seq", b.last_seq().await),
        seq,
        "a refused batch appends nothing"
    );
    assert!(matches!(
        a.set_tier("bad-cust", Some("")).await,
        Err(RecordError::InvalidInput(_))
    ));
    assert!(matches!(
        a.update_profile("", push_history("x".into())).await,
        Err(RecordError::InvalidInput(_))
    ));
    assert_eq!(ok("profile", b.get_profile("bad-cust").await), None);
    assert!(matches!(
        a.put_entry(
            DirectoryKind::Agent,
            "bad-agent",
            json!({}),
            None,
            &by("", BASE_MS)
        )
        .await,
        Err(RecordError::InvalidInput(_))
    ));
    assert!(matches!(
        a.put_entry(
            DirectoryKind::Agent,
            &long,
            json!({}),
            None,
            &by("admin", BASE_MS)
        )
        .await,
        Err(RecordError::InvalidInput(_))
    ));
    assert_eq!(
        ok("get", b.get_entry(DirectoryKind::Agent, "bad-agent").await),
        None
    );
    let token = OperatorToken {
        name: "bad".into(),
        digest: String::new(),
        scopes: vec![],
    };
    assert!(matches!(
        a.put_token(token, &by("admin", BASE_MS)).await,
        Err(RecordError::InvalidInput(_))
    ));
    assert!(ok("tokens", b.list_tokens().await)
        .iter()
        .all(|t| t.name != "bad"));
    assert!(matches!(
        a.erase_customer("").await,
        Err(RecordError::InvalidInput(_))
    ));
    assert!(matches!(
        a.export_customer("").await,
        Err(RecordError::InvalidInput(_))
    ));
}
