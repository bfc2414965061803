//! Sticky same-agent routing: a returning customer's last agent.

/// Where a returning customer's last agent stands for this conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyState {
    /// Logged in, qualified and with a free slot: offer to them.
    Free,
    /// Logged in and qualified but full or briefly busy: wait for them.
    Busy,
    /// Not logged in, not qualified or not serving: fall back at once.
    Unavailable,
}
