//! The event stream: subscriptions with resume, transcripts and records for readers.

use actix::prelude::*;

use centralino_proto::v1::{conversation_event::Kind, ConversationEvent};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::debug;

use crate::store::records::State;

use super::actor::ConversationActor;
use super::messages::{EventsKept, GetRecord, GetTranscript, Subscribe};

impl Handler<Subscribe> for ConversationActor {
    type Result = Result<mpsc::Receiver<Result<ConversationEvent, Status>>, Status>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        let limits = &self.shared.config.limits;
        if let Some(token) = &msg.token {
            self.check_token(token)?;
            self.subscribers.retain(|(tx, _)| !tx.is_closed());
            let customers = self
                .subscribers
                .iter()
                .filter(|(_, customer)| *customer)
                .count();
            if customers >= limits.max_streams_per_conversation {
                crate::metrics::limit_refused("streams_conversation");
                return Err(Status::resource_exhausted(format!(
                    "this conversation has {} event streams open already; close one first",
                    limits.max_streams_per_conversation
                )));
            }
        }
        self.last_activity_ms = self.shared.clock.now_ms();
        let mut backlog = self.backlog(msg.after_event_id);
        debug!(conversation_id = %self.rec.id, after = msg.after_event_id, backlog = backlog.len(), next = self.next_event_id, subscribers = self.subscribers.len(), "subscribe");
        let buffer = limits.stream_buffer_events;
        if backlog.len() > buffer {
            // A long backlog comes in pages of `buffer` events, each ended with the status
            // that says where to resume: a stream never holds more than its buffer.
            backlog.truncate(buffer);
            let last = backlog.last().map_or(msg.after_event_id, |e| e.event_id);
            let (tx, rx) = mpsc::channel(buffer + 1);
            for event in backlog {
                let _ = tx.try_send(Ok(event));
            }
            let _ = tx.try_send(Err(super::actor::slow_reader(last)));
            return Ok(rx);
        }
        // The backlog plus a bounded buffer; the last place is for the status that cuts a
        // slow reader.
        let (tx, rx) = mpsc::channel(backlog.len() + buffer + 1);
        for event in backlog {
            let _ = tx.try_send(Ok(event));
        }
        if self.rec.state != State::Closed {
            self.subscribers.push((tx, msg.token.is_some()));
        }
        Ok(rx)
    }
}

impl ConversationActor {
    /// Returns the events after `after_event_id`: those kept in memory, preceded — when the
    /// resume point is older than the oldest event kept — by the messages of the
    /// transcript in between (the other events of that time, positions and the like, are
    /// not kept; the messages are all there).
    fn backlog(&self, after_event_id: u64) -> Vec<ConversationEvent> {
        let oldest_kept = self
            .events
            .front()
            .map_or(self.next_event_id, |e| e.event_id);
        let mut backlog = Vec::new();
        if after_event_id + 1 < oldest_kept {
            backlog.extend(
                self.transcript
                    .iter()
                    .filter(|m| m.event_id > after_event_id && m.event_id < oldest_kept)
                    .map(|m| ConversationEvent {
                        event_id: m.event_id,
                        at_unix_ms: m.at_ms,
                        kind: Some(Kind::Message(m.to_proto())),
                    }),
            );
        }
        backlog.extend(
            self.events
                .iter()
                .filter(|e| e.event_id > after_event_id)
                .cloned(),
        );
        backlog
    }
}

impl Handler<EventsKept> for ConversationActor {
    type Result = usize;

    fn handle(&mut self, _msg: EventsKept, _ctx: &mut Context<Self>) -> usize {
        self.events.len()
    }
}

impl Handler<GetTranscript> for ConversationActor {
    type Result = MessageResult<GetTranscript>;

    fn handle(&mut self, _msg: GetTranscript, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult((self.rec.clone(), self.transcript.clone()))
    }
}

impl Handler<GetRecord> for ConversationActor {
    type Result = MessageResult<GetRecord>;

    fn handle(&mut self, _msg: GetRecord, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rec.clone())
    }
}
