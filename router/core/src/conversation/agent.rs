//! The agent's side: messages, close, release, escalation, notes.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_proto::v1::{ConversationOutcome, EscalationKind, Sender};
use tonic::Status;
use tracing::info;

use crate::metrics as m;
use crate::store::group_commit::Durable;
use crate::store::records::{Outcome, State};
use crate::texts::Text;

use super::actor::ConversationActor;
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
    type Result = Result<(u64, Option<Durable>), Status>;

    fn handle(&mut self, msg: AgentSend, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        self.check_serving()?;
        if let Some(seq) = self.duplicate(&msg.message_id) {
            return Ok((seq, None));
        }
        if !self.responded {
            self.responded = true;
            if let Some(assigned) = self.rec.assigned_at_ms {
                let secs = (self.shared.clock.now_ms() - assigned).max(0) as f64 / 1000.0;
                m::first_response(&self.rec, secs);
            }
        }
        let (seq, durable) = self.add_message(
            Sender::Agent,
            &msg.agent_id,
            msg.message_id,
            msg.text,
            msg.status_note,
        )?;
        Ok((seq, Some(durable)))
    }
}

impl Handler<AgentClose> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: AgentClose, ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        self.rec.summary = msg.summary;
        Ok(self.close(Outcome::Completed, "agent closed", ctx))
    }
}

impl Handler<Release> for ConversationActor {
    type Result = Result<(), Status>;

    fn handle(&mut self, msg: Release, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        info!(conversation_id = %self.rec.id, agent_id = %msg.agent_id, "conversation requeued");
        self.requeue(&msg.reason);
        Ok(())
    }
}

impl Handler<Escalate> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: Escalate, ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        let e = msg.escalation;
        let kind = match e.kind {
            EscalationKind::Email => "email",
            _ => "callback",
        };
        self.rec.follow_up = BTreeMap::from([
            ("kind".to_string(), kind.to_string()),
            ("phone".to_string(), e.phone),
            ("email".to_string(), e.email),
            ("preferred_time".to_string(), e.preferred_time),
            ("note".to_string(), e.note),
        ]);
        self.tell_agent_ended(msg.agent_id, ConversationOutcome::Escalated);
        Ok(self.close(Outcome::Escalated, kind, ctx))
    }
}

impl Handler<AddNote> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: AddNote, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        if self.rec.notes.len() >= 50 {
            return Err(Status::resource_exhausted(
                "a conversation holds at most 50 notes",
            ));
        }
        self.rec
            .notes
            .push(format!("{}: {}", msg.agent_id, msg.text));
        Ok(self.persist_record())
    }
}

impl Handler<MarkSensitive> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: MarkSensitive, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        self.rec.sensitive = true;
        let text = self.text(Text::Sensitive, &[]);
        self.system_message(text);
        Ok(self.persist_record())
    }
}
