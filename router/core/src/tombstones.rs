//! Closed conversations a router found when it adopted a partition (their router stopped or
//! lost its lease between the close and the retirement). They are retired at once, but a
//! customer whose stream broke around the close still resumes: for a while the router
//! answers the resume with the transcript's messages after the resume point and the
//! `closed` event, instead of NOT_FOUND. Bounded in count (`limits.max_closed_lingering`),
//! in messages per conversation and in time (the rating window, on the node's clock).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use centralino_proto::v1::conversation_event::Kind;
use centralino_proto::v1::{Closed, ConversationEvent, ConversationOutcome};
use parking_lot::Mutex;
use tonic::Status;

use crate::store::records::{ConversationRecord, MessageRecord, Outcome};

/// Messages kept per closed conversation (the newest).
const MESSAGES_KEPT: usize = 50;

struct Tombstone {
    token: String,
    outcome: ConversationOutcome,
    next_event_id: u64,
    closed_at_ms: i64,
    messages: Vec<MessageRecord>,
    until: Instant,
}

/// The closed conversations a resume is still answered for.
pub struct Tombstones {
    cap: usize,
    inner: Mutex<(HashMap<String, Tombstone>, VecDeque<String>)>,
}

impl Tombstones {
    /// Keeps at most `cap` conversations.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Keeps closed `rec` with its `transcript` for `linger` (wall time).
    pub fn keep(&self, rec: &ConversationRecord, transcript: &[MessageRecord], linger: Duration) {
        let outcome = match rec.outcome {
            Some(Outcome::Completed) => ConversationOutcome::Completed,
            Some(Outcome::Abandoned) => ConversationOutcome::Abandoned,
            Some(Outcome::Offline) => ConversationOutcome::Offline,
            Some(Outcome::Escalated) => ConversationOutcome::Escalated,
            None => return,
        };
        let from = transcript.len().saturating_sub(MESSAGES_KEPT);
        let tombstone = Tombstone {
            token: rec.token.clone(),
            outcome,
            next_event_id: rec.next_event_id,
            closed_at_ms: rec.closed_at_ms.unwrap_or_default(),
            messages: transcript[from..].to_vec(),
            until: Instant::now() + linger,
        };
        let mut inner = self.inner.lock();
        let (map, order) = &mut *inner;
        let now = Instant::now();
        while order.len() >= self.cap
            || order
                .front()
                .is_some_and(|id| map.get(id).is_none_or(|t| t.until <= now))
        {
            let Some(old) = order.pop_front() else { break };
            map.remove(&old);
        }
        if map.insert(rec.id.clone(), tombstone).is_none() {
            order.push_back(rec.id.clone());
        }
    }

    /// The events a resume of closed conversation `id` after `after_event_id` gets: its
    /// messages after that point, then `closed`. None when the conversation is not kept;
    /// PERMISSION_DENIED for a wrong token.
    pub fn resume(
        &self,
        id: &str,
        token: &str,
        after_event_id: u64,
    ) -> Result<Option<Vec<ConversationEvent>>, Status> {
        let inner = self.inner.lock();
        let Some(t) = inner.0.get(id).filter(|t| t.until > Instant::now()) else {
            return Ok(None);
        };
        let same = t.token.len() == token.len()
            && t.token
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(Status::permission_denied("wrong conversation token"));
        }
        let mut events: Vec<ConversationEvent> = t
            .messages
            .iter()
            .filter(|m| m.event_id > after_event_id)
            .map(|m| ConversationEvent {
                event_id: m.event_id,
                at_unix_ms: m.at_ms,
                kind: Some(Kind::Message(m.to_proto())),
            })
            .collect();
        let last = events.last().map_or(after_event_id, |e| e.event_id);
        events.push(ConversationEvent {
            event_id: t.next_event_id.max(last + 1).max(after_event_id + 1),
            at_unix_ms: t.closed_at_ms,
            kind: Some(Kind::Closed(Closed {
                outcome: t.outcome as i32,
                reason: "closed".to_string(),
            })),
        });
        Ok(Some(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::archive::tests as archive_tests;

    fn closed(id: &str) -> ConversationRecord {
        let mut rec = archive_tests::closed(id);
        rec.token = "secret".into();
        rec.next_event_id = 9;
        rec
    }

    fn message(event_id: u64, seq: u64) -> MessageRecord {
        let mut m = archive_tests::message(seq);
        m.event_id = event_id;
        m
    }

    #[test]
    fn a_resume_gets_the_messages_after_its_point_then_closed() {
        let t = Tombstones::new(10);
        t.keep(
            &closed("c1"),
            &[message(3, 1), message(5, 2)],
            Duration::from_secs(60),
        );
        let events = t.resume("c1", "secret", 4).unwrap().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_id, 5);
        assert!(
            matches!(events[1].kind, Some(Kind::Closed(ref c)) if c.outcome == ConversationOutcome::Completed as i32)
        );
        assert!(events[1].event_id > 5);
        assert_eq!(
            t.resume("c1", "wrong", 4).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(t.resume("other", "secret", 0).unwrap().is_none());
    }

    #[test]
    fn the_oldest_go_beyond_the_cap_and_all_after_their_time() {
        let t = Tombstones::new(2);
        for id in ["a", "b", "c"] {
            t.keep(&closed(id), &[], Duration::from_secs(60));
        }
        assert!(
            t.resume("a", "secret", 0).unwrap().is_none(),
            "over the cap"
        );
        assert!(t.resume("c", "secret", 0).unwrap().is_some());
        t.keep(&closed("d"), &[], Duration::ZERO);
        assert!(t.resume("d", "secret", 0).unwrap().is_none(), "expired");
    }
}
