//! The router's side of the agent-node link: offer answers, agent messages and closes go to
//! the conversation actors; availability updates fan out to every department queue.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use centralino_link::{AgentAction, Availability, RouterCall, RouterLink, RouterReply};
use centralino_proto::v1::AgentStatus;
use parking_lot::RwLock;
use tonic::Status;

use crate::conversation::{
    AddNote, AgentClose, AgentSend, AgentTyping, Escalate, GetTranscript, MarkSensitive,
    OfferEnded, Release, Transfer,
};
use crate::metrics as m;
use crate::queue::AgentUpdate;
use crate::router::Router;
use crate::store::records::MessageRecord;

/// What the router remembers of each agent from availability updates.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    team: String,
    status: AgentStatus,
    busy: bool,
    on_shift: bool,
    load: u32,
    capacity: u32,
}

impl Known {
    fn logged_in(&self) -> bool {
        !matches!(
            self.status,
            AgentStatus::Offline | AgentStatus::Disconnected | AgentStatus::Unspecified
        )
    }

    /// (on duty, slots in use, capacity) this agent adds to its team's figures.
    fn contribution(&self) -> (i64, i64, i64) {
        if !self.logged_in() {
            return (0, 0, 0);
        }
        (
            i64::from(self.on_shift),
            i64::from(self.load),
            i64::from(self.capacity),
        )
    }
}

/// Per-team sums of on-duty agents, slots in use and capacity.
#[derive(Debug, Default, Clone, Copy)]
struct TeamSums {
    on_duty: i64,
    load: i64,
    capacity: i64,
}

/// [`RouterLink`] into this router's actors.
pub struct Dispatch {
    /// Weak: the router owns the agent-node link that owns this dispatch.
    router: Weak<Router>,
    agents: RwLock<HashMap<String, Known>>,
    teams: parking_lot::Mutex<HashMap<String, TeamSums>>,
    last_tick_ms: parking_lot::Mutex<Option<i64>>,
}

impl Dispatch {
    /// Returns the link for `router`.
    pub fn new(router: Arc<Router>) -> Arc<Self> {
        Arc::new(Self {
            router: Arc::downgrade(&router),
            agents: RwLock::new(HashMap::new()),
            teams: parking_lot::Mutex::new(HashMap::new()),
            last_tick_ms: parking_lot::Mutex::new(None),
        })
    }

    /// Publishes per-team shift and duty metrics; call it periodically.
    pub fn tick(&self) {
        let Some(router) = self.router.upgrade() else {
            return;
        };
        let now = router.shared.clock.now_ms();
        let elapsed_secs = {
            let mut last = self.last_tick_ms.lock();
            let elapsed = last.map_or(0, |l| (now - l).max(0));
            *last = Some(now);
            elapsed as f64 / 1000.0
        };
        let teams = self.teams.lock().clone();
        for team in &router.shared.config.teams {
            let on_duty = teams.get(&team.name).map_or(0, |t| t.on_duty);
            m::team_open(
                &team.name,
                router.shared.shifts.team_open(&team.name, now),
                on_duty as f64 * elapsed_secs,
            );
        }
    }

    fn router(&self) -> Result<Arc<Router>, Status> {
        self.router
            .upgrade()
            .ok_or_else(|| Status::unavailable("router is shutting down"))
    }

    fn conversation(
        &self,
        id: &str,
    ) -> Result<actix::Addr<crate::conversation::ConversationActor>, Status> {
        self.router()?
            .conversation(id)
            .ok_or_else(|| Status::not_found(format!("no live conversation {id:?}")))
    }
}

fn mailbox(e: actix::MailboxError) -> Status {
    Status::unavailable(format!("conversation actor unavailable: {e}"))
}

#[async_trait]
impl RouterLink for Dispatch {
    async fn call(&self, call: RouterCall) -> Result<RouterReply, Status> {
        let RouterCall {
            conversation_id,
            agent_id,
            action,
        } = call;
        let conversation = self.conversation(&conversation_id)?;
        let mut reply = RouterReply::default();
        match action {
            AgentAction::OfferAnswered {
                reservation_id,
                answer,
            } => {
                let agent_name = self
                    .agents
                    .read()
                    .get(&agent_id)
                    .map(|k| k.name.clone())
                    .unwrap_or_else(|| agent_id.clone());
                reply.transcript = conversation
                    .send(OfferEnded {
                        reservation_id,
                        agent_id,
                        agent_name,
                        answer,
                    })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Message {
                message_id,
                text,
                status_note,
            } => {
                reply.seq = conversation
                    .send(AgentSend {
                        agent_id,
                        message_id,
                        text,
                        status_note,
                    })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Close { summary } => {
                conversation
                    .send(AgentClose {
                        agent_id,
                        summary,
                        sent_at: std::time::Instant::now(),
                    })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Release { reason } => {
                conversation
                    .send(Release { agent_id, reason })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Transfer {
                target,
                reason,
                warm,
            } => {
                conversation
                    .send(Transfer {
                        agent_id: Some(agent_id),
                        target,
                        reason,
                        warm,
                    })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Escalate(escalation) => {
                conversation
                    .send(Escalate {
                        agent_id,
                        escalation,
                    })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Note { text } => {
                conversation
                    .send(AddNote { agent_id, text })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::MarkSensitive => {
                conversation
                    .send(MarkSensitive { agent_id })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Typing { typing } => {
                conversation
                    .send(AgentTyping { agent_id, typing })
                    .await
                    .map_err(mailbox)??;
            }
            AgentAction::Transcript => {
                let (rec, transcript) = conversation.send(GetTranscript).await.map_err(mailbox)?;
                if rec.agent_id.as_deref() != Some(agent_id.as_str()) {
                    return Err(Status::permission_denied(
                        "the conversation is not assigned to this agent",
                    ));
                }
                reply.transcript = transcript.iter().map(MessageRecord::to_proto).collect();
            }
        }
        Ok(reply)
    }

    fn availability(&self, update: Availability) {
        let known = Known {
            name: update.display_name.clone(),
            team: update.team.clone(),
            status: update.status,
            busy: update.load > 0,
            on_shift: update.on_shift,
            load: update.load,
            capacity: update.capacity,
        };
        let previous = self
            .agents
            .write()
            .insert(update.agent_id.clone(), known.clone());
        {
            let mut teams = self.teams.lock();
            if let Some(p) = &previous {
                let (d, l, c) = p.contribution();
                let t = teams.entry(p.team.clone()).or_default();
                t.on_duty -= d;
                t.load -= l;
                t.capacity -= c;
            }
            let (d, l, c) = known.contribution();
            let t = teams.entry(known.team.clone()).or_default();
            t.on_duty += d;
            t.load += l;
            t.capacity += c;
            for name in previous
                .as_ref()
                .map(|p| p.team.clone())
                .into_iter()
                .chain([known.team.clone()])
            {
                if let Some(t) = teams.get(&name) {
                    m::team_agents(&name, t.on_duty, t.load, t.capacity);
                }
            }
        }
        m::agent_state_changed(
            previous
                .as_ref()
                .map(|p| (p.team.as_str(), p.status, p.busy)),
            (known.team.as_str(), known.status, known.busy),
        );
        if let Some(router) = self.router.upgrade() {
            for (_, queue) in router.queues() {
                queue.do_send(AgentUpdate(update.clone()));
            }
        }
    }
}
