//! The record's one error type.

/// What a record call can fail with. Every failed call changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The backend cannot be reached or failed mid-call (retry later: gRPC UNAVAILABLE).
    #[error("record unavailable: {0}")]
    Unavailable(String),
    /// The backend is out of space (gRPC RESOURCE_EXHAUSTED).
    #[error("record full: {0}")]
    Full(String),
    /// The named row does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A compare-and-set lost: the row is not at the expected version.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request itself is wrong (empty id, zero limit, a refused profile update …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A stored row could not be decoded, or another internal fault.
    #[error("record backend: {0}")]
    Backend(String),
}

impl RecordError {
    /// Returns whether a retry of the same call may succeed (the backend was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, RecordError::Unavailable(_))
    }
}

impl From<serde_json::Error> for RecordError {
    fn from(e: serde_json::Error) -> Self {
        RecordError::Backend(format!("json: {e}"))
    }
}

/// Checks that an id is non-empty and of bounded length.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), RecordError> {
    if id.is_empty() {
        return Err(RecordError::InvalidInput(format!("{what} is empty")));
    }
    if id.len() > crate::types::MAX_ID_LEN {
        return Err(RecordError::InvalidInput(format!(
            "{what} is longer than {} bytes",
            crate::types::MAX_ID_LEN
        )));
    }
    Ok(())
}

/// Checks a webhook claim's time to live.
pub(crate) fn check_ttl(ttl_ms: i64) -> Result<(), RecordError> {
    if ttl_ms <= 0 {
        return Err(RecordError::InvalidInput(format!(
            "claim ttl must be positive, not {ttl_ms} ms"
        )));
    }
    Ok(())
}

/// Checks a page size.
pub(crate) fn check_limit(limit: usize) -> Result<usize, RecordError> {
    if limit == 0 {
        return Err(RecordError::InvalidInput("limit is zero".into()));
    }
    Ok(limit.min(crate::types::MAX_PAGE))
}

/// Checks an optional id: absent, or a valid id.
pub(crate) fn check_opt_id(what: &str, id: Option<&str>) -> Result<(), RecordError> {
    id.map_or(Ok(()), |id| check_id(what, id))
}

/// Checks a conversation row's ids and labels.
pub(crate) fn check_conversation(
    row: &crate::types::ArchivedConversation,
) -> Result<(), RecordError> {
    check_id("conversation id", &row.id)?;
    check_opt_id("customer id", row.customer_id.as_deref())?;
    check_opt_id("agent id", row.agent_id.as_deref())?;
    check_id("department", &row.department)?;
    check_id("language", &row.language)
}

/// Checks events before any of them is written.
pub(crate) fn check_events(events: &[crate::types::NewEvent]) -> Result<(), RecordError> {
    for e in events {
        check_id("event kind", &e.kind)?;
        check_opt_id("event customer id", e.customer_id.as_deref())?;
        check_opt_id("event conversation id", e.conversation_id.as_deref())?;
    }
    Ok(())
}

/// Checks who makes a change.
pub(crate) fn check_actor(by: &crate::types::ChangedBy) -> Result<(), RecordError> {
    check_id("actor", &by.actor)
}
