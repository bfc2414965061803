//! Queue order and the estimated wait told to customers.

use std::cmp::Reverse;

/// Estimated wait (seconds) of the `position`-th waiting conversation when `free` slots
/// are open now, `capacity` slots serve its language and a chat takes `handle_secs`.
pub fn estimated_wait_secs(position: u32, free: u32, capacity: u32, handle_secs: f64) -> u32 {
    if position <= free {
        return 0;
    }
    let ahead = (position - free) as f64;
    (ahead * handle_secs / capacity.max(1) as f64).round() as u32
}

/// Order of a queue: higher priority first, then older first, then arrival sequence.
pub type QueueKey = (Reverse<u8>, i64, u64);

/// Returns the queue order key of a conversation.
pub fn queue_key(priority: u8, enqueued_at_ms: i64, seq: u64) -> QueueKey {
    (Reverse(priority), enqueued_at_ms, seq)
}
