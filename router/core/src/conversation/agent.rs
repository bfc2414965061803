//! The agent's side: messages, close, release, escalation, notes.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_proto::v1::{ConversationOutcome, EscalationKind, Sender};
use tonic::Status;
use tracing::info;

use crate::metrics as m;
use crate::store::records::{message_key, put, Outcome, State};
use crate::texts::Text;

use super::actor::{answer, ConversationActor};
use super::messages::{AddNote, AgentClose, AgentSend, Escalate, MarkSensitive, Release};

impl ConversationActor {
    pub(super) fn check_agent(&self, agent_id: &str) -> Result<(), Status> {
        if self.rec.state == State::Closed {
            return Err(Status::failed_precondition("conversation is closed"));
        }
        if self.rec.state != State::Assigned || self.rec.agent_id.as_deref() != Some(agent_id) {
            return Err(Status::permission_denied(
                "conversation is not assigned to this agent",
            ));
        }
        Ok(())
    }
}

impl Handler<AgentSend> for ConversationActor {
    type Result = ResponseFuture<Result<u64, Status>>;

    fn handle(&mut self, msg: AgentSend, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_agent(&msg.agent_id).and(self.check_serving()) {
            return answer(Err(status));
        }
        // A retry of a durable message (see the customer's side).
        match self.duplicate(&msg.message_id, &msg.text) {
            Some(Ok(seq)) => return answer(Ok(seq)),
            Some(Err(status)) => return answer(Err(status)),
            None => {}
        }
        let max = self.shared.config.limits.max_message_bytes;
        if msg.text.len() > max {
            return answer(Err(Status::invalid_argument(format!(
                "text is longer than {max} bytes"
            ))));
        }
        let record = match self.stage_message(
            Sender::Agent,
            &msg.agent_id,
            msg.message_id,
            msg.text,
            msg.status_note,
        ) {
            Ok(record) => record,
            Err(status) => return answer(Err(status)),
        };
        let seq = record.seq;
        let ops = vec![put(message_key(&self.rec.id, seq), &record)];
        self.write_then(ctx, ops, move |act, _ctx| {
            if !act.responded {
                act.responded = true;
                if let Some(assigned) = act.rec.assigned_at_ms {
                    let secs = (act.shared.clock.now_ms() - assigned).max(0) as f64 / 1000.0;
                    m::first_response(&act.rec, secs);
                }
            }
            act.apply_message(record);
            answer(Ok(seq))
        })
    }
}

impl Handler<AgentClose> for ConversationActor {
    type Result = ResponseFuture<Result<ConversationOutcome, Status>>;

    fn handle(&mut self, msg: AgentClose, ctx: &mut Context<Self>) -> Self::Result {
        if self.rec.state == State::Closed {
            // Closed by this agent while the close was in flight: the same answer.
            if self.rec.agent_id.as_deref() == Some(msg.agent_id.as_str()) {
                return answer(self.closed_already(msg.sent_at));
            }
        }
        if let Err(status) = self.check_agent(&msg.agent_id) {
            return answer(Err(status));
        }
        let summary = msg.summary;
        self.close(
            ctx,
            Outcome::Completed,
            "agent closed",
            move |next| next.summary = summary,
            |_| {},
            |_, _| {},
        )
    }
}

impl Handler<Release> for ConversationActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: Release, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_agent(&msg.agent_id) {
            return answer(Err(status));
        }
        info!(conversation_id = %self.rec.id, agent_id = %msg.agent_id, "conversation requeued");
        self.requeue(&msg.reason, ctx)
    }
}

impl Handler<Escalate> for ConversationActor {
    type Result = ResponseFuture<Result<ConversationOutcome, Status>>;

    fn handle(&mut self, msg: Escalate, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_agent(&msg.agent_id) {
            return answer(Err(status));
        }
        let e = msg.escalation;
        let kind = match e.kind {
            EscalationKind::Email => "email",
            _ => "callback",
        };
        let follow_up = BTreeMap::from([
            ("kind".to_string(), kind.to_string()),
            ("phone".to_string(), e.phone),
            ("email".to_string(), e.email),
            ("preferred_time".to_string(), e.preferred_time),
            ("note".to_string(), e.note),
        ]);
        let agent_id = msg.agent_id;
        self.close(
            ctx,
            Outcome::Escalated,
            kind,
            move |next| next.follow_up = follow_up,
            move |act| act.tell_agent_ended(agent_id, ConversationOutcome::Escalated),
            |_, _| {},
        )
    }
}

impl Handler<AddNote> for ConversationActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: AddNote, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_agent(&msg.agent_id) {
            return answer(Err(status));
        }
        if self.rec.notes.len() >= 50 {
            return answer(Err(Status::resource_exhausted(
                "a conversation holds at most 50 notes",
            )));
        }
        let mut next = self.next_record();
        next.notes.push(format!("{}: {}", msg.agent_id, msg.text));
        let ops = Self::record_ops(&next, &[]);
        self.write_then(ctx, ops, move |act, _ctx| {
            act.rec.notes = next.notes;
            answer(Ok(()))
        })
    }
}

impl Handler<MarkSensitive> for ConversationActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: MarkSensitive, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_agent(&msg.agent_id) {
            return answer(Err(status));
        }
        let text = self.text(Text::Sensitive, &[]);
        let warning = self.stage_system(text);
        let mut next = self.next_record();
        next.sensitive = true;
        let ops = Self::record_ops(&next, &warning.iter().collect::<Vec<_>>());
        self.write_then(ctx, ops, move |act, _ctx| {
            act.rec.sensitive = true;
            if let Some(warning) = warning {
                act.apply_message(warning);
            }
            answer(Ok(()))
        })
    }
}
