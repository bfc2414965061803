//! Transcript archive: closed conversations, with their transcripts and ratings, appended as
//! JSON Lines to `<data_dir>/transcripts/YYYY-MM-DD.jsonl` (by close date, UTC).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::store::group_commit::GroupCommit;
use crate::store::records::{conversation_key, messages_prefix, ConversationRecord, MessageRecord};
use crate::store::{Op, StoreError};

/// One archived conversation.
#[derive(Debug, Serialize)]
pub struct ArchivedConversation<'a> {
    /// The routing record (outcome, agent, rating, summary).
    pub conversation: &'a ConversationRecord,
    /// The transcript.
    pub transcript: &'a [MessageRecord],
}

/// An archived conversation as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct Archived {
    /// The routing record.
    pub conversation: ConversationRecord,
    /// The transcript.
    pub transcript: Vec<MessageRecord>,
}

/// Which archived conversations to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Served by this agent.
    pub agent_id: Option<String>,
    /// In this department.
    pub department: Option<String>,
    /// Closed at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Closed before (Unix ms).
    pub to_ms: Option<i64>,
    /// `Some(true)` good, `Some(false)` bad; `rated_only` with `None` = any rating.
    pub rating: Option<Option<bool>>,
}

impl Filter {
    /// Returns whether `rec` passes the filter.
    pub fn matches(&self, rec: &ConversationRecord) -> bool {
        let closed = rec.closed_at_ms.unwrap_or(rec.started_at_ms);
        self.agent_id
            .as_ref()
            .is_none_or(|a| rec.agent_id.as_ref() == Some(a))
            && self
                .department
                .as_ref()
                .is_none_or(|d| &rec.department == d)
            && self.from_ms.is_none_or(|f| closed >= f)
            && self.to_ms.is_none_or(|t| closed < t)
            && self.rating.is_none_or(|want| match (want, &rec.rating) {
                (None, None) => true,
                (Some(good), Some(r)) => r.good == good,
                _ => false,
            })
    }
}

/// Appends closed conversations to JSON Lines files.
#[derive(Clone)]
pub struct Archive {
    dir: Option<PathBuf>,
    lock: Arc<Mutex<()>>,
}

impl Archive {
    /// Returns an archive writing under `dir/transcripts`, or discarding when `dir` is `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir: dir.map(|d| d.join("transcripts")),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Appends one conversation (blocking file I/O: call from a blocking task).
    pub fn append(&self, entry: &ArchivedConversation<'_>) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let closed = entry
            .conversation
            .closed_at_ms
            .unwrap_or(entry.conversation.started_at_ms);
        let day = chrono::DateTime::from_timestamp_millis(closed)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.lock.lock();
        std::fs::create_dir_all(dir)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{day}.jsonl")))?;
        file.write_all(&line)
    }
}

impl Archive {
    /// Returns archived conversations passing `filter`, newest first, at most `limit`
    /// (blocking file I/O: call from a blocking task).
    pub fn list(&self, filter: &Filter, limit: usize) -> std::io::Result<Vec<Archived>> {
        let mut out = Vec::new();
        self.scan(|a| {
            if filter.matches(&a.conversation) {
                out.push(a);
            }
            true
        })?;
        out.sort_by_key(|a| std::cmp::Reverse(a.conversation.closed_at_ms));
        out.truncate(limit);
        Ok(out)
    }

    /// Returns the archived conversation `id` (blocking file I/O).
    pub fn find(&self, id: &str) -> std::io::Result<Option<Archived>> {
        let mut found = None;
        self.scan(|a| {
            if a.conversation.id == id {
                found = Some(a);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    fn scan(&self, mut visit: impl FnMut(Archived) -> bool) -> std::io::Result<()> {
        use std::io::BufRead;
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        files.sort();
        files.reverse();
        for path in files {
            let file = std::io::BufReader::new(std::fs::File::open(&path)?);
            for line in file.lines() {
                let line = line?;
                if let Ok(archived) = serde_json::from_str::<Archived>(&line) {
                    if !visit(archived) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why a closed conversation could not be moved to the archive.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// The archive could not be written; the live record stays in the store.
    #[error("archive write failed: {0}")]
    Archive(String),
    /// The archive was written but the live keys could not be removed (the next recovery
    /// archives the conversation again).
    #[error("live keys not removed: {0}")]
    Store(#[from] StoreError),
}

/// Moves a closed conversation to the archive: appends it first, then removes its live
/// record and transcript from the store. The one way every path retires a conversation
/// (an actor that stops, a restart's recovery, a partition's adoption).
pub async fn retire_closed(
    archive: &Archive,
    commits: &GroupCommit,
    rec: &ConversationRecord,
    transcript: Vec<MessageRecord>,
) -> Result<(), RetireError> {
    let (archive, r) = (archive.clone(), rec.clone());
    tokio::task::spawn_blocking(move || {
        archive.append(&ArchivedConversation {
            conversation: &r,
            transcript: &transcript,
        })
    })
    .await
    .map_err(|e| RetireError::Archive(e.to_string()))?
    .map_err(|e| RetireError::Archive(e.to_string()))?;
    commits
        .write(vec![
            Op::Delete(conversation_key(&rec.id)),
            Op::DeletePrefix(messages_prefix(&rec.id)),
        ])
        .await?;
    Ok(())
}
