//! The event stream: subscriptions with resume, transcripts and records for readers.

use actix::prelude::*;

use centralino_proto::v1::ConversationEvent;
use tokio::sync::mpsc;
use tonic::Status;
use tracing::debug;

use crate::store::records::State;

use super::actor::{ConversationActor, SUBSCRIBER_BUFFER};
use super::messages::{GetRecord, GetTranscript, Subscribe};

impl Handler<Subscribe> for ConversationActor {
    type Result = Result<mpsc::Receiver<Result<ConversationEvent, Status>>, Status>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(token) = &msg.token {
            self.check_token(token)?;
        }
        let backlog: Vec<&ConversationEvent> = self
            .events
            .iter()
            .filter(|e| e.event_id > msg.after_event_id)
            .collect();
        debug!(conversation_id = %self.rec.id, after = msg.after_event_id, backlog = ?backlog.iter().map(|e| e.event_id).collect::<Vec<_>>(), next = self.next_event_id, subscribers = self.subscribers.len(), "subscribe");
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER.max(backlog.len() + 16));
        for event in backlog {
            let _ = tx.try_send(Ok(event.clone()));
        }
        if self.rec.state != State::Closed {
            self.subscribers.push(tx);
        }
        Ok(rx)
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
