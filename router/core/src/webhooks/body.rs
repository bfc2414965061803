//! What a webhook request carries: the event as a JSON object and the header names.

use centralino_record::OutboxEvent;
use serde_json::{json, Value};

/// The header with the event id.
pub const EVENT_ID_HEADER: &str = "centralino-event-id";
/// The header with the attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "centralino-timestamp";
/// The header with the signature (`t=…,v1=…`).
pub const SIGNATURE_HEADER: &str = "centralino-signature";

/// Returns the JSON object an endpoint receives for `event` (see [`crate::webhooks`]).
pub fn event_json(event: &OutboxEvent) -> Value {
    let e = crate::store::events::to_proto(event);
    json!({
        "event_id": e.event_id,
        "kind": e.kind,
        "at_unix_ms": e.at_unix_ms,
        "conversation_id": e.conversation_id,
        "customer_id": e.customer_id,
        "department": e.department,
        "language": e.language,
        "agent_id": e.agent_id,
        "details": e.details.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_the_event_id_kind_time_ids_and_details() {
        let event = OutboxEvent {
            seq: 42,
            kind: "closed".into(),
            customer_id: Some("c1".into()),
            conversation_id: Some("conv-1".into()),
            at_ms: 1_750_000_000_123,
            payload: json!({
                "department": "sales", "language": "it", "agent_id": "giulia",
                "details": { "rating": "good" },
            }),
        };
        let body = event_json(&event);
        assert_eq!(body["event_id"], 42);
        assert_eq!(body["kind"], "closed");
        assert_eq!(body["at_unix_ms"], 1_750_000_000_123_i64);
        assert_eq!(body["conversation_id"], "conv-1");
        assert_eq!(body["customer_id"], "c1");
        assert_eq!(body["department"], "sales");
        assert_eq!(body["agent_id"], "giulia");
        assert_eq!(body["details"]["rating"], "good");
    }
}
