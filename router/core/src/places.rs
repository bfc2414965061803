//! Places held by a new conversation from its admission until their holders take them
//! over: one among the node's open conversations, one in its department queue. Taking a
//! place is one atomic step (see [`crate::shared::Shared::reserve_open`] and
//! [`crate::router::Router::reserve_queue_place`]), so concurrent starts never exceed a
//! cap; a place dropped unused is given back, on every path.

/// A place held for one new conversation — in the node's open conversations or in a
/// department queue — taken atomically at admission and given back when dropped, unless
/// its new holder [`keep`](Reserved::keep)s it (the count then belongs to that holder).
pub struct Reserved(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Reserved {
    /// Returns a place that runs `release` when dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(release)))
    }

    /// Keeps the place taken: dropping no longer gives it back.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Reserved" } else { "Kept" })
    }
}

/// The places a new conversation holds from admission until its actor (open count) and
/// its queue (queue length) take them over.
#[derive(Debug, Default)]
pub struct Places {
    /// A place among the node's open conversations.
    pub open: Option<Reserved>,
    /// A place in the department queue.
    pub queue: Option<Reserved>,
}
