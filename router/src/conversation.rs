//! `ConversationActor`: one per live conversation. It owns the conversation's state
//! machine (queued → offered → assigned → closed, or abandoned), its transcript, its event
//! log for resumable streams, and the customer's token; it persists every change before
//! acknowledging it.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use centralino_agent_node::link::OfferAnswer;
use centralino_proto::v1::{
    conversation_event::Kind, Assigned, ChatMessage, Closed, ConversationEvent,
    ConversationOutcome, Offered, Queued, RatingRequested, Requeued, Sender,
};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::archive::ArchivedConversation;
use crate::cluster::group_commit::Durable;
use crate::cluster::records::{
    conversation_key, message_key, messages_prefix, profile_key, put, ConversationRecord,
    MessageRecord, Outcome, ProfileRecord, Rating, State,
};
use crate::cluster::Op;
use crate::hub::{Counters, Hub};
use crate::metrics as m;
use crate::queue::{self, QueueEntry};

/// Event ids skipped after a restore (more than a conversation emits between two writes of
/// its record).
const RESTORE_EVENT_GAP: u64 = 1 << 20;
/// Events buffered per subscriber before the stream is cut (the client resumes).
const SUBSCRIBER_BUFFER: usize = 256;

/// Sender half of a customer's event stream.
pub type EventTx = mpsc::Sender<Result<ConversationEvent, Status>>;

/// A customer subscribes to events after `after_event_id`.
#[derive(Message)]
#[rtype(result = "Result<mpsc::Receiver<Result<ConversationEvent, Status>>, Status>")]
pub struct Subscribe {
    /// Customer token.
    pub token: String,
    /// Last event id the customer has seen.
    pub after_event_id: u64,
}

/// A customer message.
#[derive(Message)]
#[rtype(result = "Result<(u64, bool, Option<Durable>), Status>")]
pub struct CustomerSend {
    /// Customer token.
    pub token: String,
    /// Client-chosen id.
    pub message_id: String,
    /// Text.
    pub text: String,
}

/// The customer closes the conversation.
#[derive(Message)]
#[rtype(result = "Result<(ConversationOutcome, Option<Durable>), Status>")]
pub struct CustomerClose {
    /// Customer token.
    pub token: String,
}

/// The customer rates the conversation.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct Rate {
    /// Customer token.
    pub token: String,
    /// Good or bad.
    pub good: bool,
    /// Comment.
    pub comment: String,
}

/// From the queue: new position and estimated wait.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Position {
    /// 1-based position.
    pub position: u32,
    /// Estimated wait in seconds.
    pub estimated_wait_secs: u32,
}

/// From the queue: an offer to `agent_id` is open.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Offering {
    /// Reservation id.
    pub reservation_id: String,
    /// Agent offered to.
    pub agent_id: String,
}

/// From the queue: the conversation moved to another department (overflow).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Moved {
    /// New department.
    pub department: String,
    /// When it entered the new queue.
    pub at_ms: i64,
}

/// From the queue: a reservation was rejected, the offer is off.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OfferWithdrawn {
    /// Reservation id.
    pub reservation_id: String,
}

/// From an agent-node: how an offer ended.
#[derive(Message)]
#[rtype(result = "Result<Vec<ChatMessage>, Status>")]
pub struct OfferEnded {
    /// Reservation id.
    pub reservation_id: String,
    /// Agent.
    pub agent_id: String,
    /// Agent name.
    pub agent_name: String,
    /// Answer.
    pub answer: OfferAnswer,
}

/// From an agent: a message.
#[derive(Message)]
#[rtype(result = "Result<(u64, Option<Durable>), Status>")]
pub struct AgentSend {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Client-chosen id.
    pub message_id: String,
    /// Text.
    pub text: String,
    /// Status note.
    pub status_note: bool,
}

/// From an agent: close with a summary.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct AgentClose {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Wrap-up summary.
    pub summary: String,
}

/// From an agent-node: the agent is gone, requeue with the original age.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Release {
    /// Agent id (must be the assigned agent).
    pub agent_id: String,
    /// Why.
    pub reason: String,
}

/// Returns the record (admin, tests).
#[derive(Message)]
#[rtype(result = "ConversationRecord")]
pub struct GetRecord;

/// The actor behind one conversation.
pub struct ConversationActor {
    hub: Arc<Hub>,
    rec: ConversationRecord,
    transcript: Vec<MessageRecord>,
    events: Vec<ConversationEvent>,
    next_event_id: u64,
    subscribers: Vec<EventTx>,
    offer: Option<(String, String)>,
    last_position: Option<(u32, u32)>,
    profile: ProfileRecord,
}

impl ConversationActor {
    /// Returns an actor for `rec` with its stored transcript (new or restored).
    pub fn new(
        hub: Arc<Hub>,
        rec: ConversationRecord,
        transcript: Vec<MessageRecord>,
        profile: ProfileRecord,
    ) -> Self {
        let mut events = Vec::with_capacity(transcript.len() + 2);
        for m in &transcript {
            events.push(ConversationEvent {
                event_id: m.event_id,
                at_unix_ms: m.at_ms,
                kind: Some(Kind::Message(m.to_proto())),
            });
        }
        // Events other than messages are not stored: after a restore, continue well above
        // every id that may have been handed out, so a resumed stream never sees one twice.
        let last_message = transcript.iter().map(|m| m.event_id).max().unwrap_or(0);
        let next_event_id = if rec.next_event_id == 0 && last_message == 0 {
            1
        } else {
            rec.next_event_id.max(last_message + 1) + RESTORE_EVENT_GAP
        };
        Self {
            hub,
            rec,
            transcript,
            events,
            next_event_id,
            subscribers: Vec::new(),
            offer: None,
            last_position: None,
            profile,
        }
    }

    fn check_token(&self, token: &str) -> Result<(), Status> {
        let expected = self.rec.token.as_bytes();
        let given = token.as_bytes();
        let same = expected.len() == given.len()
            && expected
                .iter()
                .zip(given)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Status::permission_denied("wrong conversation token"))
        }
    }

    fn emit(&mut self, kind: Kind) -> u64 {
        let event = ConversationEvent {
            event_id: self.next_event_id,
            at_unix_ms: self.hub.clock.now_ms(),
            kind: Some(kind),
        };
        self.next_event_id += 1;
        self.subscribers
            .retain(|tx| match tx.try_send(Ok(event.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    m::stream_overflow();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        let id = event.event_id;
        self.events.push(event);
        id
    }

    fn persist_record(&mut self) -> Durable {
        self.rec.next_event_id = self.next_event_id;
        self.hub
            .commits
            .submit(vec![put(conversation_key(&self.rec.id), &self.rec)])
    }

    fn queue_entry(&self) -> QueueEntry {
        QueueEntry::from_record(&self.rec, self.hub.clock.now_ms(), &self.hub.config)
    }

    fn enqueue(&self) {
        match self.hub.queue(&self.rec.department) {
            Some(queue) => queue.do_send(queue::Enqueue(self.queue_entry())),
            None => {
                warn!(conversation_id = %self.rec.id, department = %self.rec.department, "no queue for department")
            }
        }
    }

    fn dequeue(&self) {
        if let Some(queue) = self.hub.queue(&self.rec.department) {
            queue.do_send(queue::Dequeue(self.rec.id.clone()));
        }
    }

    fn add_message(
        &mut self,
        sender: Sender,
        author: &str,
        message_id: String,
        text: String,
        status_note: bool,
    ) -> Result<(u64, Durable), Status> {
        if self.transcript.len() >= self.hub.config.limits.max_transcript_messages {
            return Err(Status::resource_exhausted("transcript is full"));
        }
        let seq = self.transcript.last().map_or(1, |m| m.seq + 1);
        let message = ChatMessage {
            message_id,
            seq,
            sender: sender as i32,
            author: author.to_string(),
            text,
            at_unix_ms: self.hub.clock.now_ms(),
            status_note,
        };
        let event_id = self.emit(Kind::Message(message.clone()));
        let record = MessageRecord::from_proto(&message, event_id);
        let durable = self
            .hub
            .commits
            .submit(vec![put(message_key(&self.rec.id, seq), &record)]);
        self.transcript.push(record);
        Counters::inc(&self.hub.counters.messages);
        Ok((seq, durable))
    }

    fn duplicate(&self, message_id: &str) -> Option<u64> {
        self.transcript
            .iter()
            .rev()
            .find(|m| m.message_id == message_id)
            .map(|m| m.seq)
    }

    /// Ends the conversation: persists, tells the customer, updates the profile and
    /// schedules archiving after the rating window.
    fn close(&mut self, outcome: Outcome, reason: &str, ctx: &mut Context<Self>) -> Durable {
        let now = self.hub.clock.now_ms();
        self.rec.state = State::Closed;
        self.rec.outcome = Some(outcome);
        self.rec.closed_at_ms = Some(now);
        self.offer = None;
        let proto_outcome = match outcome {
            Outcome::Completed => ConversationOutcome::Completed,
            Outcome::Abandoned => ConversationOutcome::Abandoned,
        };
        self.emit(Kind::Closed(Closed {
            outcome: proto_outcome as i32,
            reason: reason.to_string(),
        }));
        self.rec.next_event_id = self.next_event_id;
        let mut ops = vec![put(conversation_key(&self.rec.id), &self.rec)];
        match outcome {
            Outcome::Completed => {
                Counters::inc(&self.hub.counters.completed);
                m::conversation_completed(&self.rec);
                if let (Some(assigned), Some(queue)) = (
                    self.rec.assigned_at_ms,
                    self.hub.queue(&self.rec.department),
                ) {
                    queue.do_send(queue::Handled((now - assigned).max(0) as f64 / 1000.0));
                }
                self.emit(Kind::RatingRequested(RatingRequested {}));
                let profile = &mut self.profile;
                profile.customer_id = self.rec.customer_id.clone();
                profile.display_name = self.rec.display_name.clone();
                profile.language = self.rec.language.clone();
                profile.last_agent = self.rec.agent_id.clone();
                profile.last_contact_ms = now;
                profile.last_summary = self.rec.summary.clone();
                profile.contacts = profile.contacts.max(1);
                ops.push(put(profile_key(&self.rec.customer_id), &*profile));
            }
            Outcome::Abandoned => {
                Counters::inc(&self.hub.counters.abandoned);
                m::conversation_abandoned(&self.rec);
            }
        }
        info!(conversation_id = %self.rec.id, ?outcome, "conversation closed");
        let durable = self.hub.commits.submit(ops);
        let linger = self.hub.clock.wall(Duration::from_secs(
            self.hub.config.routing.rating_window_secs,
        ));
        ctx.run_later(linger, |_act, ctx| ctx.stop());
        durable
    }

    fn assign(&mut self, agent_id: String, agent_name: String) {
        let now = self.hub.clock.now_ms();
        if self.rec.assigned_at_ms.is_none() {
            self.rec.assigned_at_ms = Some(now);
            m::conversation_assigned(&self.rec, now);
        }
        if self.rec.sticky_agent.as_deref() == Some(agent_id.as_str()) {
            Counters::inc(&self.hub.counters.sticky_hits);
            m::sticky("hit");
        }
        self.rec.sticky_agent = None;
        self.rec.state = State::Assigned;
        self.rec.agent_id = Some(agent_id.clone());
        self.rec.agent_name = agent_name.clone();
        self.emit(Kind::Assigned(Assigned {
            agent_id,
            agent_display_name: agent_name,
        }));
    }

    fn requeue(&mut self, reason: &str) {
        self.rec.state = State::Queued;
        self.rec.agent_id = None;
        self.rec.agent_name.clear();
        self.rec.queue_entered_at_ms = self.hub.clock.now_ms();
        self.offer = None;
        self.last_position = None;
        self.emit(Kind::Requeued(Requeued {
            reason: reason.to_string(),
        }));
        drop(self.persist_record());
        self.enqueue();
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        match self.rec.state {
            State::Queued => self.enqueue(),
            State::Assigned => {
                let (id, name) = (
                    self.rec.agent_id.clone().unwrap_or_default(),
                    self.rec.agent_name.clone(),
                );
                self.emit(Kind::Assigned(Assigned {
                    agent_id: id,
                    agent_display_name: name,
                }));
            }
            State::Closed => ctx.stop(),
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.hub.forget_conversation(&self.rec.id);
        if self.rec.state != State::Closed {
            return;
        }
        let hub = self.hub.clone();
        let rec = self.rec.clone();
        let transcript = std::mem::take(&mut self.transcript);
        // Archive, then remove the live keys. Without a runtime (the node is stopping) the
        // record stays in the store and the next start archives it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let archive = hub.archive.clone();
            let rec2 = rec.clone();
            let archived = tokio::task::spawn_blocking(move || {
                archive.append(&ArchivedConversation {
                    conversation: &rec2,
                    transcript: &transcript,
                })
            })
            .await;
            match archived {
                Ok(Ok(())) => {
                    let ops = vec![
                        Op::Delete(conversation_key(&rec.id)),
                        Op::DeletePrefix(messages_prefix(&rec.id)),
                    ];
                    if let Err(e) = hub.commits.write(ops).await {
                        warn!(conversation_id = %rec.id, error = %e, "could not remove archived conversation");
                    }
                }
                Ok(Err(e)) => {
                    warn!(conversation_id = %rec.id, error = %e, "archive write failed; kept in the store")
                }
                Err(e) => warn!(conversation_id = %rec.id, error = %e, "archive task failed"),
            }
        });
    }
}

impl Handler<Subscribe> for ConversationActor {
    type Result = Result<mpsc::Receiver<Result<ConversationEvent, Status>>, Status>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        let backlog: Vec<&ConversationEvent> = self
            .events
            .iter()
            .filter(|e| e.event_id > msg.after_event_id)
            .collect();
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

impl Handler<CustomerSend> for ConversationActor {
    type Result = Result<(u64, bool, Option<Durable>), Status>;

    fn handle(&mut self, msg: CustomerSend, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        if let Some(seq) = self.duplicate(&msg.message_id) {
            return Ok((seq, true, None));
        }
        if self.rec.state == State::Closed {
            return Err(Status::failed_precondition("conversation is closed"));
        }
        let (seq, durable) =
            self.add_message(Sender::Customer, "", msg.message_id, msg.text, false)?;
        if let (State::Assigned, Some(agent_id)) = (self.rec.state, self.rec.agent_id.clone()) {
            let message = self.transcript.last().map(MessageRecord::to_proto);
            let agents = self.hub.agents.clone();
            let cid = self.rec.id.clone();
            if let Some(message) = message {
                actix::spawn(async move {
                    if let Err(status) = agents.deliver(&agent_id, &cid, message).await {
                        debug!(conversation_id = %cid, %status, "delivery to agent failed");
                    }
                });
            }
        }
        Ok((seq, false, Some(durable)))
    }
}

impl Handler<CustomerClose> for ConversationActor {
    type Result = Result<(ConversationOutcome, Option<Durable>), Status>;

    fn handle(&mut self, msg: CustomerClose, ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        match self.rec.state {
            State::Closed => Err(Status::failed_precondition(
                "conversation is already closed",
            )),
            State::Queued => {
                // The queue withdraws an open offer.
                self.dequeue();
                let durable = self.close(Outcome::Abandoned, "customer left", ctx);
                Ok((ConversationOutcome::Abandoned, Some(durable)))
            }
            State::Assigned => {
                if let Some(agent_id) = self.rec.agent_id.clone() {
                    let agents = self.hub.agents.clone();
                    let cid = self.rec.id.clone();
                    actix::spawn(async move {
                        let _ = agents
                            .conversation_ended(&agent_id, &cid, ConversationOutcome::Completed)
                            .await;
                    });
                }
                let durable = self.close(Outcome::Completed, "customer closed", ctx);
                Ok((ConversationOutcome::Completed, Some(durable)))
            }
        }
    }
}

impl Handler<Rate> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: Rate, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        if self.rec.state != State::Closed || self.rec.outcome != Some(Outcome::Completed) {
            return Err(Status::failed_precondition(
                "only a completed conversation can be rated",
            ));
        }
        if self.rec.rating.is_some() {
            return Err(Status::already_exists("conversation is already rated"));
        }
        if msg.comment.len() > self.hub.config.limits.max_message_bytes {
            return Err(Status::invalid_argument("comment is too long"));
        }
        Counters::inc(if msg.good {
            &self.hub.counters.csat_good
        } else {
            &self.hub.counters.csat_bad
        });
        m::csat(&self.rec.department, msg.good);
        self.rec.rating = Some(Rating {
            good: msg.good,
            comment: msg.comment,
        });
        Ok(self.persist_record())
    }
}

impl Handler<Position> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Position, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        let now = (msg.position, msg.estimated_wait_secs);
        if self.last_position != Some(now) {
            self.last_position = Some(now);
            self.emit(Kind::Queued(Queued {
                department: self.rec.department.clone(),
                position: msg.position,
                estimated_wait_seconds: msg.estimated_wait_secs,
            }));
        }
    }
}

impl Handler<Offering> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Offering, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        self.offer = Some((msg.reservation_id, msg.agent_id));
        self.emit(Kind::Offered(Offered {}));
    }
}

impl Handler<OfferWithdrawn> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: OfferWithdrawn, _ctx: &mut Context<Self>) {
        if self
            .offer
            .as_ref()
            .is_some_and(|(rid, _)| *rid == msg.reservation_id)
        {
            self.offer = None;
        }
    }
}

impl Handler<Moved> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Moved, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        info!(conversation_id = %self.rec.id, from = %self.rec.department, to = %msg.department, "conversation overflowed");
        self.rec.department = msg.department;
        self.rec.queue_entered_at_ms = msg.at_ms;
        self.last_position = None;
        drop(self.persist_record());
        self.enqueue();
    }
}

impl Handler<OfferEnded> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<Vec<ChatMessage>, Status>>;

    fn handle(&mut self, msg: OfferEnded, _ctx: &mut Context<Self>) -> Self::Result {
        let current = self
            .offer
            .as_ref()
            .is_some_and(|(rid, agent)| *rid == msg.reservation_id && *agent == msg.agent_id);
        if !current || self.rec.state != State::Queued {
            return Box::pin(actix::fut::ready(Err(Status::failed_precondition(
                "offer is no longer valid",
            ))));
        }
        self.offer = None;
        if let Some(queue) = self.hub.queue(&self.rec.department) {
            queue.do_send(queue::OfferClosed {
                conversation_id: self.rec.id.clone(),
                reservation_id: msg.reservation_id.clone(),
                agent_id: msg.agent_id.clone(),
                answer: msg.answer,
            });
        }
        match msg.answer {
            OfferAnswer::Accepted => {
                Counters::inc(&self.hub.counters.offers_accepted);
                self.assign(msg.agent_id, msg.agent_name);
                let durable = self.persist_record();
                let transcript: Vec<ChatMessage> = self
                    .transcript
                    .iter()
                    .map(MessageRecord::to_proto)
                    .collect();
                Box::pin(
                    async move {
                        durable
                            .await
                            .unwrap_or(Err(crate::cluster::StoreError::Closed))
                    }
                    .into_actor(self)
                    .map(move |durable, _act, _ctx| {
                        durable.map_err(Status::from)?;
                        Ok(transcript)
                    }),
                )
            }
            answer => {
                Counters::inc(match answer {
                    OfferAnswer::Declined => &self.hub.counters.offers_declined,
                    _ => &self.hub.counters.offers_timed_out,
                });
                self.emit(Kind::Requeued(Requeued {
                    reason: "offer not accepted".to_string(),
                }));
                self.last_position = None;
                Box::pin(actix::fut::ready(Ok(Vec::new())))
            }
        }
    }
}

impl ConversationActor {
    fn check_agent(&self, agent_id: &str) -> Result<(), Status> {
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
        if let Some(seq) = self.duplicate(&msg.message_id) {
            return Ok((seq, None));
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

impl Handler<GetRecord> for ConversationActor {
    type Result = MessageResult<GetRecord>;

    fn handle(&mut self, _msg: GetRecord, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rec.clone())
    }
}
