//! Checks every request passes before it reaches an actor, and the mapping of failures
//! to gRPC statuses (counted by code).

use centralino_proto::v1::ConversationEvent;
use tonic::Status;

use crate::metrics as m;

/// Most pages accepted in a visitor context.
pub(super) const MAX_PAGES_VISITED: usize = 50;

pub(super) fn mailbox(e: actix::MailboxError) -> Status {
    Status::unavailable(format!("conversation actor unavailable: {e}"))
}

pub(super) fn reject<T>(result: Result<T, Status>) -> Result<T, Status> {
    if let Err(status) = &result {
        m::rejected(status.code());
    }
    result
}

pub(super) fn check_field(
    value: &str,
    field: &str,
    max: usize,
    required: bool,
) -> Result<(), Status> {
    if required && value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Status::invalid_argument(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// A stream of conversation events (customers' and supervisors' watch streams).
pub(super) type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ConversationEvent, Status>> + Send>>;
