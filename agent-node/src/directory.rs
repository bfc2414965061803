//! The agent directory's follower: reads the system of record's directory into the node's
//! live [`Directory`] and applies every change of its feed within a second, on every node
//! (routers and agent-nodes alike; in standalone mode the one node). Also the seeding of an
//! empty directory from the configuration file.

use std::sync::Arc;
use std::time::Duration;

use centralino_base::directory::{Directory, Part, Snapshot};
use centralino_record::{ChangedBy, DirectoryFeed, DirectoryKind, Record, RecordError};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long the follower waits without a signal before it reads the feed anyway: short, so
/// a change reaches every node within a second even when a notification is lost.
pub const FEED_FALLBACK: Duration = Duration::from_millis(300);
/// Changes read from the feed at a time.
const FEED_BATCH: usize = 256;
/// Pause after a failed read of the record.
const RETRY: Duration = Duration::from_millis(500);
/// The actor of the seeding writes in the audit log.
pub const SEED_ACTOR: &str = "seed:config";

/// Returns the part of the live directory a record kind fills.
pub fn part_of(kind: DirectoryKind) -> Part {
    match kind {
        DirectoryKind::Agent => Part::Agent,
        DirectoryKind::Team => Part::Team,
        DirectoryKind::Department => Part::Department,
        DirectoryKind::CannedResponse => Part::Canned,
    }
}

/// Writes `entries` into the record's directory when it holds no document of any kind
/// (the configuration file seeds an empty directory; afterwards the record is the source of
/// truth). Each write expects the document absent, so routers seeding at once write each
/// entry once. Returns how many documents this call wrote.
pub async fn seed(
    record: &Arc<dyn Record>,
    entries: Vec<(DirectoryKind, String, Value)>,
    now_ms: i64,
) -> Result<usize, RecordError> {
    for kind in DirectoryKind::ALL {
        if !record.list_entries(kind, true).await?.is_empty() {
            return Ok(0);
        }
    }
    let by = ChangedBy {
        actor: SEED_ACTOR.to_string(),
        at_ms: now_ms,
    };
    let mut written = 0;
    for (kind, id, doc) in entries {
        match record.put_entry(kind, &id, doc, Some(0), &by).await {
            Ok(_) => written += 1,
            // Another router seeds at the same moment.
            Err(RecordError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if written > 0 {
        info!(written, "directory seeded from the configuration file");
    }
    Ok(written)
}

/// Reads the whole directory from the record; returns it with the change-feed position it
/// is at least as new as.
pub async fn load(record: &Arc<dyn Record>) -> Result<(Snapshot, i64), RecordError> {
    // The position first: the feed's signal carries a sequence number every change up to
    // which is committed (never one ahead of a commit), so the listing read after it holds
    // them all. A change after it is both in the listing and replayed from the feed, which
    // is harmless (applying re-reads the document); a signal lagging behind only replays
    // more. No need to read the whole feed from the start.
    let position = *record.directory_signal().borrow();
    let mut snapshot = Snapshot::default();
    for kind in DirectoryKind::ALL {
        for entry in record.list_entries(kind, true).await? {
            snapshot.set(part_of(kind), &entry.id, Some(&entry.doc), entry.disabled);
        }
    }
    Ok((snapshot, position))
}

/// Loads the record's directory into `directory` (retrying until the record answers or
/// `stop`), then follows the change feed into it until `stop`. Returns once the first load
/// is done, with the follower running.
pub async fn follow(
    record: Arc<dyn Record>,
    directory: Directory,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let position = loop {
        match load(&record).await {
            Ok((snapshot, position)) => {
                directory.replace(snapshot);
                break position;
            }
            Err(e) => {
                warn!(error = %e, "directory: the record cannot be read yet");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    _ = stop.wait_for(|s| *s) => return tokio::spawn(async {}),
                }
            }
        }
    };
    tokio::spawn(run(record, directory, position, stop))
}

async fn run(
    record: Arc<dyn Record>,
    directory: Directory,
    position: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut feed = DirectoryFeed::new(record.clone(), position).with_fallback(FEED_FALLBACK);
    loop {
        let changes = tokio::select! {
            changes = feed.next(FEED_BATCH) => changes,
            _ = stop.wait_for(|s| *s) => return,
        };
        let changes = match changes {
            Ok(changes) => changes,
            Err(e) => {
                warn!(error = %e, "directory: the change feed cannot be read");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        for change in changes {
            // The document now (not as of the change): later changes of it are applied
            // again, in order, which ends at the same state.
            loop {
                match record.get_entry(change.kind, &change.id).await {
                    Ok(entry) => {
                        let doc = entry.as_ref().map(|e| &e.doc);
                        let disabled = entry.as_ref().is_some_and(|e| e.disabled);
                        directory.apply(part_of(change.kind), &change.id, doc, disabled);
                        crate::metrics::directory_change(change.kind.as_str());
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, id = %change.id, "directory: a changed document cannot be read");
                        tokio::select! {
                            () = tokio::time::sleep(RETRY) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                }
            }
        }
    }
}

/// Keeps `shifts` on the directory's teams until `stop` (a cluster router, which runs no
/// agent actors; an agent-node's [`crate::node::AgentNode::watch_directory`] does this too).
pub fn keep_shifts(
    directory: Directory,
    shifts: Arc<centralino_base::shifts::Shifts>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut changes = directory.subscribe();
    shifts.set_teams(directory.snapshot().teams.values());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            shifts.set_teams(directory.snapshot().teams.values());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use centralino_record::MemoryRecord;
    use serde_json::json;

    #[tokio::test]
    async fn seeds_once_then_follows_changes() {
        let record: Arc<dyn Record> = Arc::new(MemoryRecord::new().unwrap());
        let entries = vec![(
            DirectoryKind::Agent,
            "anna".to_string(),
            json!({"name": "Anna", "capacity": 2}),
        )];
        assert_eq!(seed(&record, entries.clone(), 1).await.unwrap(), 1);
        assert_eq!(
            seed(&record, entries, 2).await.unwrap(),
            0,
            "seeded already"
        );
        let audit = record.audit_after(0, 10).await.unwrap();
        assert_eq!(audit[0].actor, SEED_ACTOR);

        let directory = Directory::default();
        let (stop_tx, stop) = watch::channel(false);
        let task = follow(record.clone(), directory.clone(), stop).await;
        assert_eq!(directory.snapshot().agents["anna"].config.capacity, 2);

        let by = ChangedBy {
            actor: "test".into(),
            at_ms: 3,
        };
        record
            .put_entry(
                DirectoryKind::Agent,
                "anna",
                json!({"name": "Anna", "capacity": 1, "skills": {"sales": 4}}),
                None,
                &by,
            )
            .await
            .unwrap();
        record
            .set_disabled(DirectoryKind::Agent, "anna", true, &by)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let snapshot = directory.snapshot();
            let anna = &snapshot.agents["anna"];
            if anna.disabled && anna.config.capacity == 1 {
                assert_eq!(anna.config.skills["sales"], 4);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not applied within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }
}
