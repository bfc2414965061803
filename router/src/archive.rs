//! Transcript archive: closed conversations, with their transcripts and ratings, appended as
//! JSON Lines to `<data_dir>/transcripts/YYYY-MM-DD.jsonl` (by close date, UTC).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::cluster::records::{ConversationRecord, MessageRecord};

/// One archived conversation.
#[derive(Debug, Serialize)]
pub struct ArchivedConversation<'a> {
    /// The routing record (outcome, agent, rating, summary).
    pub conversation: &'a ConversationRecord,
    /// The transcript.
    pub transcript: &'a [MessageRecord],
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
