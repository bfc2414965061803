//! `ConversationActor`: one per live conversation. It owns the conversation's state
//! machine (queued → offered → assigned → closed, or abandoned), its transcript, its event
//! log for resumable streams, and the customer's token; it persists every change before
//! acknowledging it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_link::{Escalation, OfferAnswer, ReserveOutcome, ReserveRequest, TransferTarget};
use centralino_proto::v1::{
    conversation_event::Kind, Assigned, BusyNotice, ChatMessage, Closed, ConversationEvent,
    ConversationOutcome, EscalationKind, HandedOver, Offered, OfflineNotice, Queued,
    RatingRequested, Requeued, Sender, TransferInfo, Transferred,
};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::archive::retire_closed;
use crate::mail::{QueueEntry, ToConversation, ToQueue};
use crate::messages::{self, Text};
use crate::metrics as m;
use crate::registry::Registry;
use crate::shared::{Counters, Shared};
use crate::store::group_commit::Durable;
use crate::store::records::{
    conversation_key, message_key, put, ConversationRecord, MessageRecord, Outcome, ProfileRecord,
    Rating, State,
};

/// Attempts to deliver a customer message to an agent who is between connections.
const DELIVERY_ATTEMPTS: usize = 20;
/// Pause between two delivery attempts (wall time).
const DELIVERY_RETRY: Duration = Duration::from_millis(300);

/// Event ids skipped after a restore (more than a conversation emits between two writes of
/// its record).
const RESTORE_EVENT_GAP: u64 = 1 << 20;
/// Events buffered per subscriber before the stream is cut (the client resumes).
const SUBSCRIBER_BUFFER: usize = 256;

/// Sender half of a customer's event stream.
pub type EventTx = mpsc::Sender<Result<ConversationEvent, Status>>;

/// A customer (or a supervisor, read-only) subscribes to events after `after_event_id`.
#[derive(Message)]
#[rtype(result = "Result<mpsc::Receiver<Result<ConversationEvent, Status>>, Status>")]
pub struct Subscribe {
    /// Customer token; `None` for a supervisor already authorised by the admin API.
    pub token: Option<String>,
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
    /// The queue is long: offer the customer alternatives.
    pub busy: bool,
}

/// From the queue: the customer's language team closed (or opened again); the conversation
/// is now served in `to`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HandOver {
    /// Previous serving language.
    pub from: String,
    /// New serving language.
    pub to: String,
}

/// A transfer by the assigned agent (or by a supervisor when `agent_id` is `None`).
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Transfer {
    /// Agent asking; `None` for a supervisor's forced transfer.
    pub agent_id: Option<String>,
    /// Where to.
    pub target: TransferTarget,
    /// Why.
    pub reason: String,
    /// Stay until the next agent accepts.
    pub warm: bool,
}

/// The assigned agent escalates out of chat.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct Escalate {
    /// Agent.
    pub agent_id: String,
    /// Details.
    pub escalation: Escalation,
}

/// The assigned agent adds an internal note.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct AddNote {
    /// Agent.
    pub agent_id: String,
    /// Note.
    pub text: String,
}

/// The assigned agent warns the customer about sensitive data.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct MarkSensitive {
    /// Agent.
    pub agent_id: String,
}

/// The customer leaves a message instead of waiting.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct LeaveOffline {
    /// Customer token.
    pub token: String,
    /// Name, email, phone and text.
    pub details: BTreeMap<String, String>,
}

/// The customer asks for a callback instead of waiting.
#[derive(Message)]
#[rtype(result = "Result<Durable, Status>")]
pub struct Callback {
    /// Customer token.
    pub token: String,
    /// Phone and preferred time.
    pub details: BTreeMap<String, String>,
}

/// Returns the record and the transcript (admin).
#[derive(Message)]
#[rtype(result = "(ConversationRecord, Vec<MessageRecord>)")]
pub struct GetTranscript;

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

/// The department's queue has a new owner: a waiting conversation enqueues again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Requeue {
    /// Department whose queue moved.
    pub department: String,
}

/// This router hands the conversation's partition over: stop without writing anything (the
/// next owner rebuilds the actor from the store).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Returns the record (admin, tests).
#[derive(Message)]
#[rtype(result = "ConversationRecord")]
pub struct GetRecord;

/// The actor behind one conversation.
pub struct ConversationActor {
    shared: Arc<Shared>,
    /// The registry this actor is in (it leaves it when it stops).
    registry: Arc<Registry<ConversationActor>>,
    rec: ConversationRecord,
    transcript: Vec<MessageRecord>,
    events: Vec<ConversationEvent>,
    next_event_id: u64,
    subscribers: Vec<EventTx>,
    offer: Option<(String, String)>,
    last_position: Option<(u32, u32)>,
    profile: ProfileRecord,
    /// During a warm transfer: the agent who stays until the next one accepts.
    warm_from: Option<String>,
    /// The open offer was reserved directly by a transfer to an agent (not by the queue).
    direct_offer: bool,
    /// Shown with the next offers while a transfer is under way.
    transfer_info: Option<TransferInfo>,
    busy_told: bool,
    /// A profile update to make durable with the next acknowledged change.
    profile_write: Option<ProfileWrite>,
    /// The agent has answered since the first assignment.
    responded: bool,
    /// Rebuilt from the store: offers of the previous actor may still be answered.
    restored: bool,
    /// Write the record when the actor starts (a restored actor's new event ids).
    persist_on_start: bool,
    /// Handed over to another router: stopping must not archive or count anything.
    retired: bool,
}

type ProfileWrite = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::store::StoreError>> + Send>,
>;

impl ConversationActor {
    /// Returns an actor for `rec` with its stored transcript (new or restored).
    pub fn new(
        shared: Arc<Shared>,
        registry: Arc<Registry<ConversationActor>>,
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
        // A new conversation numbers its events on from its messages; a restored one
        // jumps ahead (see [`ConversationActor::restored`]).
        let last_message = transcript.iter().map(|m| m.event_id).max().unwrap_or(0);
        let next_event_id = rec.next_event_id.max(last_message + 1).max(1);
        Self {
            shared,
            registry,
            rec,
            transcript,
            events,
            next_event_id,
            subscribers: Vec::new(),
            offer: None,
            last_position: None,
            profile,
            warm_from: None,
            direct_offer: false,
            transfer_info: None,
            busy_told: false,
            profile_write: None,
            responded: false,
            restored: false,
            persist_on_start: false,
            retired: false,
        }
    }

    /// Marks an actor rebuilt from the store (restart or failover): an accept of an offer
    /// made before the rebuild is honoured while the conversation still waits.
    ///
    /// Events other than messages are not stored, so the rebuilt actor continues its event
    /// ids well above every id its predecessor may have handed out since the record was last
    /// written, and writes the new start at once: a resumed stream never sees an id twice,
    /// even across several failovers.
    pub fn restored(mut self) -> Self {
        self.restored = true;
        let last_message = self
            .transcript
            .iter()
            .map(|m| m.event_id)
            .max()
            .unwrap_or(0);
        self.next_event_id =
            self.rec.next_event_id.max(last_message + 1).max(1) + RESTORE_EVENT_GAP;
        self.persist_on_start = true;
        self
    }

    fn text(&self, text: Text, values: &[(&str, &str)]) -> String {
        messages::render(&self.shared.config, &self.rec.language, text, values)
    }

    /// Adds a system message in the customer's language (not relayed to the agent).
    fn system_message(&mut self, text: String) {
        let id = format!("sys-{}", self.next_event_id);
        if let Ok((_, durable)) = self.add_message(Sender::System, "", id, text, false) {
            drop(durable);
        }
    }

    fn integration(&self, kind: &str, details: BTreeMap<String, String>) {
        self.shared.events.record(
            &self.shared.commits,
            kind,
            &self.rec,
            self.shared.clock.now_ms(),
            details,
        );
    }

    /// Sends a system note to an agent's desktop (not part of the customer's transcript).
    fn tell_agent(&self, agent_id: String, text: String) {
        let agents = self.shared.agents.clone();
        let cid = self.rec.id.clone();
        let message = ChatMessage {
            message_id: format!("note-{}", uuid::Uuid::new_v4().simple()),
            seq: 0,
            sender: Sender::System as i32,
            author: String::new(),
            text,
            at_unix_ms: self.shared.clock.now_ms(),
            status_note: true,
        };
        actix::spawn(async move {
            let _ = agents.deliver(&agent_id, &cid, message).await;
        });
    }

    fn tell_agent_ended(&self, agent_id: String, outcome: ConversationOutcome) {
        let agents = self.shared.agents.clone();
        let cid = self.rec.id.clone();
        actix::spawn(async move {
            let _ = agents.conversation_ended(&agent_id, &cid, outcome).await;
        });
    }

    /// Returns the offer request of a direct reservation of `agent_id`.
    fn reserve_request(&self, reservation_id: &str, agent_id: &str) -> ReserveRequest {
        let serving = if self.rec.serving_language.is_empty() {
            self.rec.language.clone()
        } else {
            self.rec.serving_language.clone()
        };
        ReserveRequest {
            reservation_id: reservation_id.to_string(),
            conversation_id: self.rec.id.clone(),
            agent_id: agent_id.to_string(),
            department: self.rec.department.clone(),
            language: self.rec.language.clone(),
            customer_display_name: self.rec.display_name.clone(),
            returning_customer: self.rec.returning,
            visitor: Some((&self.rec.visitor).into()),
            auto_accept: false,
            started_at_ms: self.rec.started_at_ms,
            last_summary: self.rec.last_summary.clone(),
            serving_language: serving,
            history: Some(self.profile.history(self.rec.recontact)),
            transfer: self.transfer_info.clone(),
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
            at_unix_ms: self.shared.clock.now_ms(),
            kind: Some(kind),
        };
        self.next_event_id += 1;
        if !self.shared.serving() {
            // This router may no longer own the conversation (paused beyond its lease):
            // nothing that may not be durable reaches a customer; they resume elsewhere.
            for tx in self.subscribers.drain(..) {
                let _ = tx.try_send(Err(Status::unavailable(
                    "this router is not serving the conversation, resume the stream",
                )));
            }
        }
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
        self.shared
            .commits
            .submit(vec![put(conversation_key(&self.rec.id), &self.rec)])
    }

    fn queue_entry(&self) -> QueueEntry {
        QueueEntry::from_record(
            &self.rec,
            &self.shared.config,
            Some(self.profile.history(self.rec.recontact)),
            self.transfer_info.clone(),
        )
    }

    fn enqueue(&self) {
        self.shared.tell_queue(
            &self.rec.department,
            ToQueue::Enqueue(Box::new(self.queue_entry())),
        );
    }

    fn dequeue(&self) {
        self.shared
            .tell_queue(&self.rec.department, ToQueue::Dequeue(self.rec.id.clone()));
    }

    fn add_message(
        &mut self,
        sender: Sender,
        author: &str,
        message_id: String,
        text: String,
        status_note: bool,
    ) -> Result<(u64, Durable), Status> {
        if self.transcript.len() >= self.shared.config.limits.max_transcript_messages {
            return Err(Status::resource_exhausted("transcript is full"));
        }
        let seq = self.transcript.last().map_or(1, |m| m.seq + 1);
        let message = ChatMessage {
            message_id,
            seq,
            sender: sender as i32,
            author: author.to_string(),
            text,
            at_unix_ms: self.shared.clock.now_ms(),
            status_note,
        };
        let event_id = self.emit(Kind::Message(message.clone()));
        let record = MessageRecord::from_proto(&message, event_id);
        let durable = self
            .shared
            .commits
            .submit(vec![put(message_key(&self.rec.id, seq), &record)]);
        self.transcript.push(record);
        Counters::inc(&self.shared.counters.messages);
        Ok((seq, durable))
    }

    /// Refuses a change while this router may not own the conversation (see
    /// [`Hub::serving`]); the caller retries on the owner.
    fn check_serving(&self) -> Result<(), Status> {
        if self.shared.serving() {
            Ok(())
        } else {
            Err(Status::unavailable(
                "this router is not serving the conversation now, retry",
            ))
        }
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
        let now = self.shared.clock.now_ms();
        if self.rec.state != State::Closed {
            self.shared.counters.open.fetch_sub(1, Ordering::Relaxed);
        }
        self.rec.state = State::Closed;
        self.rec.outcome = Some(outcome);
        self.rec.closed_at_ms = Some(now);
        if self.warm_from.take().is_some() {
            // A warm transfer was still looking for the next agent: withdraw it.
            self.dequeue();
        }
        self.cancel_direct_offer();
        self.offer = None;
        let proto_outcome = match outcome {
            Outcome::Completed => ConversationOutcome::Completed,
            Outcome::Abandoned => ConversationOutcome::Abandoned,
            Outcome::Offline => ConversationOutcome::Offline,
            Outcome::Escalated => ConversationOutcome::Escalated,
        };
        self.emit(Kind::Closed(Closed {
            outcome: proto_outcome as i32,
            reason: reason.to_string(),
        }));
        self.rec.next_event_id = self.next_event_id;
        let ops = vec![put(conversation_key(&self.rec.id), &self.rec)];
        match outcome {
            Outcome::Completed => {
                Counters::inc(&self.shared.counters.completed);
                m::conversation_completed(&self.rec);
                if let Some(assigned) = self.rec.assigned_at_ms {
                    self.shared.tell_queue(
                        &self.rec.department,
                        ToQueue::Handled((now - assigned).max(0) as f64 / 1000.0),
                    );
                }
                self.emit(Kind::RatingRequested(RatingRequested {}));
                self.update_profile(now);
                self.integration("closed", BTreeMap::new());
            }
            Outcome::Abandoned => {
                Counters::inc(&self.shared.counters.abandoned);
                m::conversation_abandoned(&self.rec);
                self.integration("abandoned", BTreeMap::new());
            }
            Outcome::Offline => {
                Counters::inc(&self.shared.counters.offline);
                m::conversation_ended(&self.rec, "offline");
                self.integration("offline_message", self.rec.follow_up.clone());
            }
            Outcome::Escalated => {
                Counters::inc(&self.shared.counters.escalated);
                m::conversation_ended(&self.rec, "escalated");
                if self.rec.agent_id.is_some() {
                    self.update_profile(now);
                }
                let kind = match self.rec.follow_up.get("kind").map(String::as_str) {
                    Some("email") => "email_request",
                    _ => "callback_request",
                };
                self.integration(kind, self.rec.follow_up.clone());
            }
        }
        info!(conversation_id = %self.rec.id, ?outcome, "conversation closed");
        let durable = self.shared.commits.submit(ops);
        let durable = self.with_profile_write(durable);
        let linger = self.shared.clock.wall(Duration::from_secs(
            self.shared.config.routing.rating_window_secs,
        ));
        ctx.run_later(linger, |_act, ctx| ctx.stop());
        durable
    }

    /// Records the finished contact in the customer's profile (read, changed and written
    /// back by the shared state, so concurrent conversations of one customer do not overwrite each
    /// other); the update joins the pending profile writes awaited by `close`.
    fn update_profile(&mut self, now: i64) {
        let (name, language) = (self.rec.display_name.clone(), self.rec.language.clone());
        let agent = self.rec.agent_id.clone();
        let (summary, notes) = (self.rec.summary.clone(), self.rec.notes.clone());
        self.profile
            .record_completed(agent.as_deref(), &summary, &notes, now);
        let shared = self.shared.clone();
        let customer = self.rec.customer_id.clone();
        self.profile_write = Some(Box::pin(async move {
            shared
                .update_profile(&customer, Vec::new(), move |p| {
                    if !name.is_empty() {
                        p.display_name = name;
                    }
                    p.language = language;
                    p.record_completed(agent.as_deref(), &summary, &notes, now);
                })
                .await
                .map(|_| ())
        }));
    }

    /// Returns a durable handle that resolves when `first` and the pending profile write
    /// (if any) are both durable.
    fn with_profile_write(&mut self, first: Durable) -> Durable {
        let Some(profile) = self.profile_write.take() else {
            return first;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix::spawn(async move {
            let a = first.await.unwrap_or(Err(crate::store::StoreError::Closed));
            let b = profile.await;
            let _ = tx.send(a.and(b));
        });
        rx
    }

    fn assign(&mut self, agent_id: String, agent_name: String) {
        let now = self.shared.clock.now_ms();
        if let Some(previous) = self.warm_from.take() {
            if previous != agent_id {
                self.tell_agent_ended(previous, ConversationOutcome::Transferred);
            }
        }
        let transferred = self.transfer_info.take().is_some();
        if self.rec.assigned_at_ms.is_none() {
            self.rec.assigned_at_ms = Some(now);
            m::conversation_assigned(&self.rec, now);
        }
        if self.rec.sticky_agent.as_deref() == Some(agent_id.as_str()) {
            Counters::inc(&self.shared.counters.sticky_hits);
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
        self.integration(
            "assigned",
            BTreeMap::from([("after_transfer".to_string(), transferred.to_string())]),
        );
    }

    fn requeue(&mut self, reason: &str) {
        self.rec.state = State::Queued;
        self.rec.agent_id = None;
        self.rec.agent_name.clear();
        self.rec.queue_entered_at_ms = self.shared.clock.now_ms();
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
        if std::mem::take(&mut self.persist_on_start) && self.rec.state != State::Closed {
            drop(self.persist_record());
        }
        if self.rec.state != State::Closed {
            self.shared.counters.open.fetch_add(1, Ordering::Relaxed);
        }
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
            State::Offline => {
                let now = self.shared.clock.now_ms();
                let reopens = self.shared.shifts.reopens_at(&self.rec.language, now);
                let when = reopens
                    .map(|r| self.shared.shifts.describe(&self.rec.language, r))
                    .unwrap_or_default();
                let message = self.text(Text::Offline, &[("reopens", when.as_str())]);
                self.emit(Kind::Offline(OfflineNotice {
                    message,
                    reopens_at_unix_ms: reopens.unwrap_or_default(),
                }));
            }
            State::Closed => ctx.stop(),
        }
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.registry.forget(&self.rec.id, &ctx.address());
        if self.retired {
            if self.rec.state != State::Closed {
                self.shared.counters.open.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        if self.rec.state != State::Closed {
            return;
        }
        let shared = self.shared.clone();
        let rec = self.rec.clone();
        let transcript = std::mem::take(&mut self.transcript);
        // Archive, then remove the live keys. Without a runtime (the node is stopping) the
        // record stays in the store and the next start archives it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = retire_closed(&shared.archive, &shared.commits, &rec, transcript).await {
                warn!(conversation_id = %rec.id, error = %e, "closed conversation not archived yet");
            }
        });
    }
}

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

impl Handler<CustomerSend> for ConversationActor {
    type Result = Result<(u64, bool, Option<Durable>), Status>;

    fn handle(&mut self, msg: CustomerSend, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        self.check_serving()?;
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
            let agents = self.shared.agents.clone();
            let cid = self.rec.id.clone();
            if let Some(message) = message {
                actix::spawn(async move {
                    // The agent may be between two agent-nodes (or two desktops): try again
                    // for a while; the message is in the transcript the desktop gets back
                    // when it logs in again anyway.
                    for _ in 0..DELIVERY_ATTEMPTS {
                        match agents.deliver(&agent_id, &cid, message.clone()).await {
                            Ok(()) => return,
                            Err(status)
                                if matches!(
                                    status.code(),
                                    tonic::Code::Unavailable
                                        | tonic::Code::NotFound
                                        | tonic::Code::FailedPrecondition
                                        | tonic::Code::DeadlineExceeded
                                ) =>
                            {
                                debug!(conversation_id = %cid, %status, "delivery to agent failed, retrying");
                                tokio::time::sleep(DELIVERY_RETRY).await;
                            }
                            Err(status) => {
                                debug!(conversation_id = %cid, %status, "delivery to agent failed");
                                return;
                            }
                        }
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
            State::Queued | State::Offline => {
                // The queue withdraws an open offer.
                self.dequeue();
                self.cancel_direct_offer();
                let durable = self.close(Outcome::Abandoned, "customer left", ctx);
                Ok((ConversationOutcome::Abandoned, Some(durable)))
            }
            State::Assigned => {
                if self.warm_from.is_some() {
                    self.dequeue();
                    self.cancel_direct_offer();
                }
                if let Some(agent_id) = self.rec.agent_id.clone() {
                    let agents = self.shared.agents.clone();
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
        if msg.comment.len() > self.shared.config.limits.max_message_bytes {
            return Err(Status::invalid_argument("comment is too long"));
        }
        Counters::inc(if msg.good {
            &self.shared.counters.csat_good
        } else {
            &self.shared.counters.csat_bad
        });
        m::csat(&self.rec.department, msg.good);
        self.rec.rating = Some(Rating {
            good: msg.good,
            comment: msg.comment.clone(),
        });
        self.profile.last_rating = if msg.good { "good" } else { "bad" }.to_string();
        self.integration(
            "rated",
            BTreeMap::from([
                ("rating".to_string(), self.profile.last_rating.clone()),
                ("comment".to_string(), msg.comment),
            ]),
        );
        let durable = self.persist_record();
        let shared = self.shared.clone();
        let customer = self.rec.customer_id.clone();
        let rating = self.profile.last_rating.clone();
        self.profile_write = Some(Box::pin(async move {
            shared
                .update_profile(&customer, Vec::new(), move |p| p.last_rating = rating)
                .await
                .map(|_| ())
        }));
        Ok(self.with_profile_write(durable))
    }
}

impl Handler<Position> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Position, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        if msg.busy && !self.busy_told {
            self.busy_told = true;
            m::busy_notice(&self.rec.department);
            let wait = messages::minutes(msg.estimated_wait_secs);
            let message = self.text(Text::Busy, &[("wait", wait.as_str())]);
            self.emit(Kind::Busy(BusyNotice {
                message,
                estimated_wait_seconds: msg.estimated_wait_secs,
                options: vec!["wait".into(), "callback".into(), "message".into()],
            }));
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
        if self.rec.state != State::Queued && self.warm_from.is_none() {
            // A queue that lost track (a message gone with a failed router) still holds
            // this conversation: take it out, which also withdraws the offer.
            if self.rec.state == State::Assigned {
                self.shared
                    .tell_queue(&self.rec.department, ToQueue::Dequeue(self.rec.id.clone()));
            }
            return;
        }
        self.direct_offer = false;
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
        let accepted = msg.answer == OfferAnswer::Accepted;
        if accepted
            && self.rec.state == State::Assigned
            && self.rec.agent_id.as_deref() == Some(msg.agent_id.as_str())
            && self.offer.is_none()
        {
            // The same accept again (the agent-node retried after a failover): answer as
            // the first time.
            let transcript: Vec<ChatMessage> = self
                .transcript
                .iter()
                .map(MessageRecord::to_proto)
                .collect();
            return Box::pin(actix::fut::ready(Ok(transcript)));
        }
        let inherited = self.restored
            && self.offer.is_none()
            && self.rec.state == State::Queued
            && self.warm_from.is_none();
        let current = inherited
            || self
                .offer
                .as_ref()
                .is_some_and(|(rid, agent)| *rid == msg.reservation_id && *agent == msg.agent_id);
        let open = self.rec.state == State::Queued || self.warm_from.is_some();
        if !current || !open {
            if self.rec.state == State::Queued {
                // Let the queue drop the offer it may still count as open.
                self.shared.tell_queue(
                    &self.rec.department,
                    ToQueue::OfferClosed {
                        conversation_id: self.rec.id.clone(),
                        reservation_id: msg.reservation_id.clone(),
                        agent_id: msg.agent_id.clone(),
                        answer: OfferAnswer::TimedOut,
                    },
                );
            }
            return Box::pin(actix::fut::ready(Err(Status::failed_precondition(
                "offer is no longer valid",
            ))));
        }
        self.offer = None;
        let direct = std::mem::take(&mut self.direct_offer);
        self.shared.tell_queue(
            &self.rec.department,
            ToQueue::OfferClosed {
                conversation_id: self.rec.id.clone(),
                reservation_id: msg.reservation_id.clone(),
                agent_id: msg.agent_id.clone(),
                answer: msg.answer,
            },
        );
        match msg.answer {
            OfferAnswer::Accepted => {
                Counters::inc(&self.shared.counters.offers_accepted);
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
                            .unwrap_or(Err(crate::store::StoreError::Closed))
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
                    OfferAnswer::Declined => &self.shared.counters.offers_declined,
                    _ => &self.shared.counters.offers_timed_out,
                });
                self.last_position = None;
                if direct && self.warm_from.is_some() {
                    // A warm transfer to a named agent failed: the first agent keeps it.
                    if let Some(first) = self.warm_from.take() {
                        self.tell_agent(
                            first,
                            format!(
                                "transfer to {} was not accepted: the conversation stays with you",
                                msg.agent_id
                            ),
                        );
                    }
                    self.transfer_info = None;
                    self.rec.transfers = self.rec.transfers.saturating_sub(1);
                } else if direct {
                    // A cold transfer to a named agent failed: into the department queue,
                    // with the conversation's age.
                    self.emit(Kind::Requeued(Requeued {
                        reason: "transfer not accepted".to_string(),
                    }));
                    self.enqueue();
                } else if self.rec.state == State::Queued {
                    self.emit(Kind::Requeued(Requeued {
                        reason: "offer not accepted".to_string(),
                    }));
                }
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

impl ConversationActor {
    fn cancel_direct_offer(&mut self) {
        if !self.direct_offer {
            return;
        }
        self.direct_offer = false;
        if let Some((rid, agent)) = self.offer.take() {
            let agents = self.shared.agents.clone();
            actix::spawn(async move {
                let _ = agents.cancel_reservation(&agent, &rid).await;
            });
        }
    }

    /// Checks who may transfer and whether the limit allows one more.
    fn check_transfer(&self, agent_id: Option<&str>) -> Result<(), Status> {
        match agent_id {
            Some(agent) => self.check_agent(agent)?,
            None if self.rec.state == State::Closed || self.rec.state == State::Offline => {
                return Err(Status::failed_precondition(
                    "only an open conversation can be transferred",
                ))
            }
            None => {}
        }
        if self.warm_from.is_some() || self.direct_offer {
            return Err(Status::failed_precondition(
                "a transfer is already under way",
            ));
        }
        let max = self.shared.config.routing.max_transfers;
        if self.rec.transfers >= max {
            return Err(Status::failed_precondition(format!(
                "the conversation reached its limit of {max} transfers"
            )));
        }
        Ok(())
    }

    /// Applies a transfer to a queue target (department, language, skill, supervisor).
    fn transfer_to_queue(
        &mut self,
        from: Option<String>,
        target: &TransferTarget,
        reason: &str,
        warm: bool,
    ) -> Result<String, Status> {
        let config = &self.shared.config;
        let (department, language, skill, label) = match target {
            TransferTarget::Department(d) => {
                if config.department(d).is_none() {
                    return Err(Status::not_found(format!("unknown department {d:?}")));
                }
                (d.clone(), None, None, d.clone())
            }
            TransferTarget::Language(l) => {
                if !config.languages().contains(l.as_str()) {
                    return Err(Status::invalid_argument(format!(
                        "no team serves language {l:?}"
                    )));
                }
                (
                    self.rec.department.clone(),
                    Some(l.clone()),
                    None,
                    messages::language_name(l, &self.rec.language),
                )
            }
            TransferTarget::Skill(k) => {
                if !config.agents.iter().any(|a| a.skills.contains_key(k)) {
                    return Err(Status::not_found(format!("no agent has the skill {k:?}")));
                }
                (
                    self.rec.department.clone(),
                    None,
                    Some(k.clone()),
                    k.clone(),
                )
            }
            TransferTarget::Supervisor => {
                let skill = config.routing.supervisor_skill.clone();
                if !config.agents.iter().any(|a| a.skills.contains_key(&skill)) {
                    return Err(Status::not_found("no supervisor is configured"));
                }
                (
                    self.rec.department.clone(),
                    None,
                    Some(skill),
                    "supervisor".to_string(),
                )
            }
            TransferTarget::Agent(_) => {
                return Err(Status::internal("agent transfers reserve first"))
            }
        };
        let now = self.shared.clock.now_ms();
        self.dequeue();
        self.rec.department = department;
        if let Some(language) = language {
            self.rec.serving_language = language;
            self.rec.pinned_language = true;
        }
        self.rec.extra_skill = skill;
        self.rec.sticky_agent = None;
        self.rec.queue_entered_at_ms = now;
        self.transfer_info = Some(TransferInfo {
            from_agent_id: from.clone().unwrap_or_default(),
            reason: reason.to_string(),
            transfers: self.rec.transfers + 1,
            warm,
        });
        match (warm, from) {
            (true, Some(agent)) if self.rec.state == State::Assigned => {
                self.warm_from = Some(agent)
            }
            (_, from) => {
                if let Some(agent) = from.or_else(|| self.rec.agent_id.clone()) {
                    if self.rec.state == State::Assigned {
                        self.tell_agent_ended(agent, ConversationOutcome::Transferred);
                    }
                }
                self.rec.state = State::Queued;
                self.rec.agent_id = None;
                self.rec.agent_name.clear();
            }
        }
        self.offer = None;
        self.last_position = None;
        self.enqueue();
        Ok(label)
    }

    fn announce_transfer(&mut self, kind: &'static str, to: &str, reason: &str, warm: bool) {
        self.rec.transfers += 1;
        Counters::inc(&self.shared.counters.transfers);
        m::transfer(kind);
        let text = self.text(Text::Transferred, &[("to", to)]);
        self.emit(Kind::Transferred(Transferred {
            to: to.to_string(),
            reason: reason.to_string(),
            warm,
        }));
        self.system_message(text);
        self.integration(
            "transferred",
            BTreeMap::from([
                ("to".to_string(), to.to_string()),
                ("kind".to_string(), kind.to_string()),
                ("reason".to_string(), reason.to_string()),
                ("warm".to_string(), warm.to_string()),
            ]),
        );
        drop(self.persist_record());
    }
}

impl Handler<Transfer> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<(), Status>>;

    fn handle(&mut self, msg: Transfer, _ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_transfer(msg.agent_id.as_deref()) {
            return Box::pin(actix::fut::ready(Err(status)));
        }
        let TransferTarget::Agent(target) = msg.target.clone() else {
            let kind = match &msg.target {
                TransferTarget::Department(_) => "department",
                TransferTarget::Language(_) => "language",
                TransferTarget::Skill(_) => "skill",
                _ => "supervisor",
            };
            let result = self
                .transfer_to_queue(msg.agent_id.clone(), &msg.target, &msg.reason, msg.warm)
                .map(|label| self.announce_transfer(kind, &label, &msg.reason, msg.warm));
            return Box::pin(actix::fut::ready(result));
        };
        let Some(account) = self.shared.config.agents.iter().find(|a| a.id == target) else {
            return Box::pin(actix::fut::ready(Err(Status::not_found(format!(
                "unknown agent {target:?}"
            )))));
        };
        if self.rec.agent_id.as_deref() == Some(target.as_str()) {
            return Box::pin(actix::fut::ready(Err(Status::invalid_argument(
                "the conversation is already with this agent",
            ))));
        }
        let target_name = account.name.clone();
        let reservation_id = uuid::Uuid::new_v4().simple().to_string();
        self.transfer_info = Some(TransferInfo {
            from_agent_id: msg.agent_id.clone().unwrap_or_default(),
            reason: msg.reason.clone(),
            transfers: self.rec.transfers + 1,
            warm: msg.warm,
        });
        let request = self.reserve_request(&reservation_id, &target);
        let agents = self.shared.agents.clone();
        Box::pin(
            async move { agents.reserve(request).await }
                .into_actor(self)
                .map(move |outcome, act, _ctx| {
                    match outcome {
                        Ok(ReserveOutcome::Held) => {}
                        Ok(ReserveOutcome::Rejected(reason)) => {
                            act.transfer_info = None;
                            return Err(Status::failed_precondition(format!(
                                "agent {target:?} cannot take the conversation now ({reason:?})"
                            )));
                        }
                        Err(status) => {
                            act.transfer_info = None;
                            return Err(status);
                        }
                    }
                    let still_valid = match &msg.agent_id {
                        Some(agent) => act.check_agent(agent).is_ok(),
                        None => matches!(act.rec.state, State::Queued | State::Assigned),
                    };
                    if !still_valid {
                        let agents = act.shared.agents.clone();
                        let (t, rid) = (target.clone(), reservation_id.clone());
                        actix::spawn(async move {
                            let _ = agents.cancel_reservation(&t, &rid).await;
                        });
                        act.transfer_info = None;
                        return Err(Status::failed_precondition(
                            "conversation changed meanwhile",
                        ));
                    }
                    act.dequeue();
                    let from = msg.agent_id.clone().or_else(|| act.rec.agent_id.clone());
                    if msg.warm && act.rec.state == State::Assigned {
                        act.warm_from = from;
                    } else {
                        if let (Some(agent), State::Assigned) = (from, act.rec.state) {
                            act.tell_agent_ended(agent, ConversationOutcome::Transferred);
                        }
                        act.rec.state = State::Queued;
                        act.rec.agent_id = None;
                        act.rec.agent_name.clear();
                    }
                    act.offer = Some((reservation_id, target));
                    act.direct_offer = true;
                    act.announce_transfer("agent", &target_name, &msg.reason, msg.warm);
                    Ok(())
                }),
        )
    }
}

impl Handler<HandOver> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: HandOver, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        let now = self.shared.clock.now_ms();
        self.rec.serving_language = msg.to.clone();
        if msg.to == self.rec.language {
            // Pulled back to the customer's own team.
            drop(self.persist_record());
            return;
        }
        Counters::inc(&self.shared.counters.handovers);
        m::handover(&msg.from, &msg.to);
        let reopens = self.shared.shifts.reopens_at(&self.rec.language, now);
        let when = reopens
            .map(|r| self.shared.shifts.describe(&self.rec.language, r))
            .unwrap_or_default();
        let language = messages::language_name(&msg.to, &self.rec.language);
        let from = messages::language_name(&msg.from, &self.rec.language);
        let text = self.text(
            Text::Handover,
            &[
                ("language", language.as_str()),
                ("from", from.as_str()),
                ("reopens", when.as_str()),
            ],
        );
        self.emit(Kind::HandedOver(HandedOver {
            from_language: msg.from.clone(),
            to_language: msg.to.clone(),
            reopens_at_unix_ms: reopens.unwrap_or_default(),
        }));
        self.system_message(text);
        self.integration(
            "handed_over",
            BTreeMap::from([("from".to_string(), msg.from), ("to".to_string(), msg.to)]),
        );
        drop(self.persist_record());
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

impl ConversationActor {
    /// Ends a waiting conversation with a follow-up instead of a chat.
    fn follow_up(
        &mut self,
        token: &str,
        outcome: Outcome,
        details: BTreeMap<String, String>,
        ctx: &mut Context<Self>,
    ) -> Result<Durable, Status> {
        self.check_token(token)?;
        match self.rec.state {
            State::Queued | State::Offline => {}
            State::Assigned => {
                return Err(Status::failed_precondition(
                    "an agent is already serving this conversation",
                ))
            }
            State::Closed => return Err(Status::failed_precondition("conversation is closed")),
        }
        self.dequeue();
        self.cancel_direct_offer();
        self.rec.follow_up = details;
        let reason = match outcome {
            Outcome::Offline => "offline message",
            _ => "callback requested",
        };
        Ok(self.close(outcome, reason, ctx))
    }
}

impl Handler<LeaveOffline> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: LeaveOffline, ctx: &mut Context<Self>) -> Self::Result {
        self.follow_up(&msg.token, Outcome::Offline, msg.details, ctx)
    }
}

impl Handler<Callback> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: Callback, ctx: &mut Context<Self>) -> Self::Result {
        let mut details = msg.details;
        details.insert("kind".to_string(), "callback".to_string());
        self.follow_up(&msg.token, Outcome::Escalated, details, ctx)
    }
}

impl Handler<GetTranscript> for ConversationActor {
    type Result = MessageResult<GetTranscript>;

    fn handle(&mut self, _msg: GetTranscript, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult((self.rec.clone(), self.transcript.clone()))
    }
}

impl Handler<Requeue> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Requeue, _ctx: &mut Context<Self>) {
        if self.rec.state == State::Queued && self.rec.department == msg.department {
            self.enqueue();
        }
    }
}

impl Handler<Retire> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        // Customers' streams end with UNAVAILABLE; they resume from their last event on
        // the next owner.
        for tx in self.subscribers.drain(..) {
            let _ = tx.try_send(Err(Status::unavailable(
                "conversation moved to another router, resume the stream",
            )));
        }
        ctx.stop();
    }
}

impl Handler<GetRecord> for ConversationActor {
    type Result = MessageResult<GetRecord>;

    fn handle(&mut self, _msg: GetRecord, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.rec.clone())
    }
}

impl ToConversation {
    /// Delivers the message to a conversation actor of this router.
    pub fn deliver(self, conversation: &Addr<ConversationActor>) {
        match self {
            Self::Offering {
                reservation_id,
                agent_id,
            } => conversation.do_send(Offering {
                reservation_id,
                agent_id,
            }),
            Self::OfferWithdrawn { reservation_id } => {
                conversation.do_send(OfferWithdrawn { reservation_id })
            }
            Self::Moved { department, at_ms } => conversation.do_send(Moved { department, at_ms }),
            Self::Position {
                position,
                estimated_wait_secs,
                busy,
            } => conversation.do_send(Position {
                position,
                estimated_wait_secs,
                busy,
            }),
            Self::HandOver { from, to } => conversation.do_send(HandOver { from, to }),
            Self::Requeue { department } => conversation.do_send(Requeue { department }),
        }
    }
}
