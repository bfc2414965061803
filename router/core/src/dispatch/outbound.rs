//! Towards the agents: the reservation that offers a conversation to an agent, built in one
//! place for the queue's offers and for transfers to a named agent.

use centralino_link::ReserveRequest;

use crate::mail::QueueEntry;

/// Returns the reservation that offers `entry` (waiting in `department`) to `agent_id`.
pub fn reserve_request(
    entry: &QueueEntry,
    department: &str,
    auto_accept: bool,
    reservation_id: &str,
    agent_id: &str,
) -> ReserveRequest {
    let info = &entry.info;
    ReserveRequest {
        reservation_id: reservation_id.to_string(),
        conversation_id: entry.conversation_id.clone(),
        agent_id: agent_id.to_string(),
        department: department.to_string(),
        language: entry.language.clone(),
        customer_display_name: info.customer_display_name.clone(),
        returning_customer: info.returning,
        visitor: Some(info.visitor.clone()),
        auto_accept,
        started_at_ms: info.started_at_ms,
        last_summary: info.last_summary.clone(),
        serving_language: entry.serving_language.clone(),
        history: info.history.clone(),
        transfer: info.transfer.clone(),
    }
}
