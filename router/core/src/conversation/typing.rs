//! Typing indicators both ways: the customer's to the agent's desktop, the agent's to the
//! customer's stream. Ephemeral: nothing is written, kept for resuming or given an event id
//! (the customer sees `typing` with `event_id` 0). Best effort: at most
//! [`TYPING_PER_MINUTE`] per minute per conversation and side are forwarded (bursts of
//! [`TYPING_BURST`]), the rest are dropped without an error. The limiters live in the
//! actor, so nothing of a conversation's typing outlives it.

use actix::prelude::*;

use centralino_proto::v1::{conversation_event::Kind, ConversationEvent, Typing};
use tracing::debug;

use crate::metrics as m;
use crate::store::records::State;

use super::actor::ConversationActor;
use super::messages::{AgentTyping, CustomerTyping};

pub use centralino_link::{TYPING_BURST, TYPING_PER_MINUTE};

impl Handler<CustomerTyping> for ConversationActor {
    type Result = Result<bool, tonic::Status>;

    fn handle(&mut self, msg: CustomerTyping, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        self.check_serving()?;
        let agents: Vec<String> = match (self.rec.state, &self.rec.agent_id) {
            (State::Assigned, Some(agent)) => std::iter::once(agent.clone())
                .chain(self.warm_from.clone().filter(|w| w != agent))
                .collect(),
            _ => {
                m::typing("customer", "no_agent");
                return Ok(false);
            }
        };
        self.last_activity_ms = self.shared.clock.now_ms();
        if self.typing.customer.check().is_err() {
            m::typing("customer", "rate_limited");
            return Ok(false);
        }
        m::typing("customer", "forwarded");
        let link = self.shared.agents.clone();
        let cid = self.rec.id.clone();
        actix::spawn(async move {
            for agent_id in agents {
                // One attempt: a stale indicator is worth less than the next one.
                if let Err(status) = link.customer_typing(&agent_id, &cid, msg.typing).await {
                    debug!(conversation_id = %cid, %agent_id, %status, "typing not shown to the agent");
                }
            }
        });
        Ok(true)
    }
}

impl Handler<AgentTyping> for ConversationActor {
    type Result = Result<(), tonic::Status>;

    fn handle(&mut self, msg: AgentTyping, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_agent(&msg.agent_id)?;
        if self.typing.agent.check().is_err() {
            // Best effort: the agent's command is acknowledged all the same.
            m::typing("agent", "rate_limited");
            return Ok(());
        }
        m::typing("agent", "forwarded");
        self.emit_ephemeral(Kind::Typing(Typing {
            typing: msg.typing,
            agent_display_name: self.rec.agent_name.clone(),
        }));
        Ok(())
    }
}

impl ConversationActor {
    /// Sends an event that is not kept to the open streams, with `event_id` 0: it takes no
    /// id and is never replayed. A stream without room for it just misses it (only stored
    /// events cut a slow reader, see [`Self::emit_at`]); nothing is sent while this router
    /// may not be serving the conversation.
    pub(super) fn emit_ephemeral(&mut self, kind: Kind) {
        if !self.shared.serving() {
            return;
        }
        let event = ConversationEvent {
            event_id: 0,
            at_unix_ms: self.shared.clock.now_ms(),
            kind: Some(kind),
        };
        self.subscribers.retain(|(tx, _)| {
            if tx.is_closed() {
                return false;
            }
            // The last place of a buffer is for the status that cuts a slow reader.
            if tx.capacity() > 1 {
                let _ = tx.try_send(Ok(event.clone()));
            }
            true
        });
    }
}
