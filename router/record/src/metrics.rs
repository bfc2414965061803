//! The record's metrics, each described once in [`describe`].

use metrics::{counter, describe_counter, describe_histogram, histogram};

/// Registers the descriptions of the record's metrics.
pub fn describe() {
    describe_counter!(
        "centralino_record_ops_total",
        "record calls by operation and outcome (ok, error)"
    );
    describe_histogram!(
        "centralino_record_op_duration_seconds",
        "record call duration by operation"
    );
    describe_counter!(
        "centralino_record_tail_events_total",
        "events and directory changes handed to followers, by feed"
    );
    describe_counter!(
        "centralino_record_listener_reconnects_total",
        "times the PostgreSQL LISTEN connection was lost and re-established"
    );
}

/// Counts one call of `op` and its duration.
pub(crate) fn op(op: &'static str, ok: bool, seconds: f64) {
    let outcome = if ok { "ok" } else { "error" };
    counter!("centralino_record_ops_total", "op" => op, "outcome" => outcome).increment(1);
    histogram!("centralino_record_op_duration_seconds", "op" => op).record(seconds);
}

/// Counts rows handed to followers of `feed`.
pub(crate) fn tail_read(feed: &'static str, n: usize) {
    counter!("centralino_record_tail_events_total", "feed" => feed).increment(n as u64);
}

/// Counts one reconnection of the LISTEN connection.
pub(crate) fn listener_reconnect() {
    counter!("centralino_record_listener_reconnects_total").increment(1);
}
