//! The conversation actor: its state, lifecycle and the helpers its handlers share.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use std::collections::{BTreeMap, VecDeque};

use centralino_proto::v1::{
    conversation_event::Kind, Assigned, ChatMessage, ConversationEvent, ConversationOutcome,
    OfflineNotice, Requeued, Sender, TransferInfo,
};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::warn;

use crate::mail::{QueueEntry, ToConversation, ToQueue};
use crate::metrics as m;
use crate::registry::Registry;
use crate::shared::{Counters, EndLinger, Places, Shared};
use crate::store::archive::retire_eventually;
use crate::store::records::{
    conversation_key, message_key, put, ConversationRecord, MessageRecord, Outcome, ProfileRecord,
    State,
};
use crate::store::{Op, StoreError};
use crate::texts::{self, Text};

use super::messages::{EventTx, HandOver, Moved, OfferWithdrawn, Offering, Position, Requeue};

/// Attempts to deliver a customer message to an agent who is between connections.
pub(super) const DELIVERY_ATTEMPTS: usize = 20;
/// Pause between two delivery attempts (wall time).
pub(super) const DELIVERY_RETRY: Duration = Duration::from_millis(300);

/// Event ids skipped after a restore (more than a conversation emits between two writes of
/// its record).
pub(super) const RESTORE_EVENT_GAP: u64 = 1 << 20;

/// The actor behind one conversation.
pub struct ConversationActor {
    pub(super) shared: Arc<Shared>,
    /// The registry this actor is in (it leaves it when it stops).
    pub(super) registry: Arc<Registry<ConversationActor>>,
    pub(super) rec: ConversationRecord,
    pub(super) transcript: Vec<MessageRecord>,
    /// The last `limits.max_events_kept` events, for resuming streams.
    pub(super) events: VecDeque<ConversationEvent>,
    pub(super) next_event_id: u64,
    /// Open streams, each marked whether a customer (not a supervisor) reads it.
    pub(super) subscribers: Vec<(EventTx, bool)>,
    /// Last customer request or subscription (node clock, Unix ms), for idle expiry.
    pub(super) last_activity_ms: i64,
    pub(super) offer: Option<(String, String)>,
    pub(super) last_position: Option<(u32, u32)>,
    pub(super) profile: ProfileRecord,
    /// During a warm transfer: the agent who stays until the next one accepts.
    pub(super) warm_from: Option<String>,
    /// The open offer was reserved directly by a transfer to an agent (not by the queue).
    pub(super) direct_offer: bool,
    /// Shown with the next offers while a transfer is under way.
    pub(super) transfer_info: Option<TransferInfo>,
    pub(super) busy_told: bool,
    /// A profile update to make durable with the next acknowledged change.
    pub(super) profile_write: Option<ProfileWrite>,
    /// The agent has answered since the first assignment.
    pub(super) responded: bool,
    /// Rebuilt from the store: offers of the previous actor may still be answered.
    pub(super) restored: bool,
    /// Write the record when the actor starts (a restored actor's new event ids).
    pub(super) persist_on_start: bool,
    /// Handed over to another router: stopping must not archive or count anything.
    pub(super) retired: bool,
    /// Places taken at admission, until the actor and its queue take them over.
    pub(super) places: Places,
    /// Closed and lingering: the ticket in [`crate::shared::Lingering`].
    pub(super) linger_ticket: Option<u64>,
    /// When the close was applied (after its write) and its outcome: a close sent before
    /// then was in flight with it and gets the same answer.
    pub(super) closed_ack: Option<(std::time::Instant, ConversationOutcome)>,
    /// Rate limits of the typing indicators, one per side (they go away with the actor).
    pub(super) typing: TypingLimits,
}

pub(super) type ProfileWrite = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), crate::store::StoreError>> + Send>,
>;

/// What a writing handler answers: resolves once the change's write is durable and the
/// change applied (then with its outcome), or with the status of the failed write (then
/// nothing of the change was applied).
/// How long a conversation whose queue-made change failed to write waits before it goes
/// back to the queue as recorded (see [`ConversationActor::requeue_as_recorded`]).
const REQUEUE_AFTER_FAILED_WRITE: Duration = Duration::from_secs(1);

pub type Acked<T> = futures::future::BoxFuture<'static, Result<T, Status>>;

/// Returns an answer that needs no write (a refusal, a duplicate).
pub(super) fn answer<T: Send + 'static>(result: Result<T, Status>) -> Acked<T> {
    Box::pin(futures::future::ready(result))
}

impl ConversationActor {
    /// Returns an actor for `rec` with its stored transcript (new or restored).
    pub fn new(
        shared: Arc<Shared>,
        registry: Arc<Registry<ConversationActor>>,
        rec: ConversationRecord,
        transcript: Vec<MessageRecord>,
        profile: ProfileRecord,
    ) -> Self {
        let keep = shared.config.limits.max_events_kept;
        let mut events = VecDeque::with_capacity(transcript.len().min(keep) + 2);
        for m in transcript
            .iter()
            .skip(transcript.len().saturating_sub(keep))
        {
            events.push_back(ConversationEvent {
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
            last_activity_ms: 0,
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
            places: Places::default(),
            linger_ticket: None,
            closed_ack: None,
            typing: TypingLimits::default(),
        }
    }

    /// Hands the actor the places its start took (open count, queue place).
    pub fn with_places(mut self, places: Places) -> Self {
        self.places = places;
        self
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

    pub(super) fn text(&self, text: Text, values: &[(&str, &str)]) -> String {
        texts::render(&self.shared.config, &self.rec.language, text, values)
    }

    /// Stages a system message in the customer's language (not relayed to the agent): its
    /// record, to write with the change it belongs to and apply with
    /// [`Self::apply_message`]; `None` when the transcript is full.
    pub(super) fn stage_system(&mut self, text: String) -> Option<MessageRecord> {
        let id = format!("sys-{}", self.next_event_id);
        self.stage_message(Sender::System, "", id, text, false).ok()
    }

    pub(super) fn integration(&self, kind: &str, details: BTreeMap<String, String>) {
        self.shared
            .events
            .record(kind, &self.rec, self.shared.clock.now_ms(), details);
    }

    /// Sends a system note to an agent's desktop (not part of the customer's transcript).
    pub(super) fn tell_agent(&self, agent_id: String, text: String) {
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

    pub(super) fn tell_agent_ended(&self, agent_id: String, outcome: ConversationOutcome) {
        let agents = self.shared.agents.clone();
        let cid = self.rec.id.clone();
        actix::spawn(async move {
            let _ = agents.conversation_ended(&agent_id, &cid, outcome).await;
        });
    }

    pub(super) fn check_token(&self, token: &str) -> Result<(), Status> {
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

    pub(super) fn emit(&mut self, kind: Kind) -> u64 {
        let id = self.reserve_event_id();
        self.emit_at(id, kind)
    }

    /// Emits an event under an id reserved with [`Self::reserve_event_id`].
    pub(super) fn emit_at(&mut self, event_id: u64, kind: Kind) -> u64 {
        let event = ConversationEvent {
            event_id,
            at_unix_ms: self.shared.clock.now_ms(),
            kind: Some(kind),
        };
        self.next_event_id = self.next_event_id.max(event_id + 1);
        if !self.shared.serving() {
            // This router may no longer own the conversation (paused beyond its lease):
            // nothing that may not be durable reaches a customer; they resume elsewhere.
            for (tx, _) in self.subscribers.drain(..) {
                let _ = tx.try_send(Err(Status::unavailable(
                    "this router is not serving the conversation, resume the stream",
                )));
            }
        }
        // A reader whose buffer is full but for one place is cut: that place takes the
        // status telling it where to resume (it has every event up to the previous one).
        let previous = event.event_id.saturating_sub(1);
        self.subscribers.retain(|(tx, _)| {
            if tx.is_closed() {
                return false;
            }
            if tx.capacity() <= 1 {
                m::stream_overflow();
                m::slow_reader_cut();
                let _ = tx.try_send(Err(slow_reader(previous)));
                return false;
            }
            match tx.try_send(Ok(event.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    m::stream_overflow();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        let id = event.event_id;
        self.events.push_back(event);
        while self.events.len() > self.shared.config.limits.max_events_kept {
            self.events.pop_front();
        }
        id
    }

    /// Writes the record as it is now without waiting (changes that no client waits for
    /// and that show nothing: a restored actor's new event ids, an overflow's department).
    pub(super) fn persist_record(&mut self) {
        self.rec.next_event_id = self.next_event_id;
        drop(
            self.shared
                .commits
                .submit(vec![put(conversation_key(&self.rec.id), &self.rec)]),
        );
    }

    /// Returns the record as the next write of a change should store it: a copy of the
    /// current one, to change and write before it is applied.
    pub(super) fn next_record(&self) -> ConversationRecord {
        let mut next = self.rec.clone();
        next.next_event_id = self.next_event_id;
        next
    }

    /// Returns the write of `next` and of the staged `messages`.
    pub(super) fn record_ops(next: &ConversationRecord, messages: &[&MessageRecord]) -> Vec<Op> {
        let mut ops = vec![put(conversation_key(&next.id), next)];
        ops.extend(
            messages
                .iter()
                .map(|m| put(message_key(&next.id, m.seq), *m)),
        );
        ops
    }

    /// Writes `ops` first and applies the change after: submits them to group commit and
    /// pauses this actor's mailbox until they are durable (`ctx.wait`), so the
    /// conversation's writes are serialised — the next change is built on the state this
    /// one leaves, sequence numbers have no gaps, and a retry queued meanwhile sees the
    /// outcome — while group commit still batches across conversations. On success `apply`
    /// changes the state, emits and has the side effects; its future is the answer. On
    /// failure nothing is applied, `failed` may undo what was prepared (a reservation), and
    /// the answer is the store's status (UNAVAILABLE, or RESOURCE_EXHAUSTED for a full or
    /// overloaded store, a write too large).
    pub(super) fn write_or<T: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        ops: Vec<Op>,
        apply: impl FnOnce(&mut Self, &mut Context<Self>) -> Acked<T> + 'static,
        failed: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) -> Acked<T> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<Acked<T>, Status>>();
        let durable = self.shared.commits.submit(ops);
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(async move {
                durable.await.unwrap_or(Err(StoreError::Closed))
            })
            .map(move |result, act, ctx| {
                let answer = match result {
                    Ok(()) => Ok(apply(act, ctx)),
                    Err(e) => {
                        m::change_not_applied(&e);
                        warn!(conversation_id = %act.rec.id, error = %e, "write failed; the change is not applied");
                        failed(act, ctx);
                        Err(Status::from(e))
                    }
                };
                let _ = tx.send(answer);
            }),
        );
        Box::pin(async move {
            match rx.await {
                Ok(Ok(applied)) => applied.await,
                Ok(Err(status)) => Err(status),
                // The actor stopped before the write completed (a handover): the write may
                // or may not be durable; a retry on the next owner finds out.
                Err(_) => Err(Status::unavailable(
                    "the conversation moved while the write was in flight; retry",
                )),
            }
        })
    }

    /// [`Self::write_or`] with nothing to undo on failure.
    pub(super) fn write_then<T: Send + 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        ops: Vec<Op>,
        apply: impl FnOnce(&mut Self, &mut Context<Self>) -> Acked<T> + 'static,
    ) -> Acked<T> {
        self.write_or(ctx, ops, apply, |_, _| {})
    }

    /// Returns `value` as the answer once the pending profile write (if any) is durable.
    pub(super) fn after_profile<T: Send + 'static>(&mut self, value: T) -> Acked<T> {
        let profile = self.profile_write.take();
        Box::pin(async move {
            if let Some(profile) = profile {
                profile.await.map_err(Status::from)?;
            }
            Ok(value)
        })
    }

    pub(super) fn queue_entry(&self) -> QueueEntry {
        QueueEntry::from_record(
            &self.rec,
            &self.shared.config,
            Some(self.profile.history(self.rec.recontact)),
            self.transfer_info.clone(),
        )
    }

    pub(super) fn enqueue(&mut self) {
        let mut entry = self.queue_entry();
        // The first enqueue carries the place taken at admission.
        entry.place = self.places.queue.take().map(Arc::new);
        self.shared
            .tell_queue(&self.rec.department, ToQueue::Enqueue(Box::new(entry)));
    }

    /// After a failed write of a change its queue made first (an overflow, a language
    /// handover): after a pause (a failing store is not hammered), puts the conversation
    /// back in the queue as its unchanged record says, where the queue's rules fire again.
    /// Queue and record never disagree for longer than that pause.
    pub(super) fn requeue_as_recorded(&self, ctx: &mut Context<Self>) {
        ctx.run_later(REQUEUE_AFTER_FAILED_WRITE, |act, _ctx| {
            if act.rec.state == State::Queued && act.warm_from.is_none() {
                act.dequeue();
                act.enqueue();
            }
        });
    }

    pub(super) fn dequeue(&self) {
        self.shared
            .tell_queue(&self.rec.department, ToQueue::Dequeue(self.rec.id.clone()));
    }

    /// Stages a message: checks the transcript's room and returns its record with the next
    /// sequence number and a reserved event id, to write first and apply with
    /// [`Self::apply_message`] once durable (a failed write leaves the number free).
    pub(super) fn stage_message(
        &mut self,
        sender: Sender,
        author: &str,
        message_id: String,
        text: String,
        status_note: bool,
    ) -> Result<MessageRecord, Status> {
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
        let event_id = self.reserve_event_id();
        Ok(MessageRecord::from_proto(&message, event_id))
    }

    /// Takes the next event id for an event emitted once its write is durable (a failed
    /// write leaves a gap in event ids, never in message sequence numbers).
    pub(super) fn reserve_event_id(&mut self) -> u64 {
        let id = self.next_event_id;
        self.next_event_id += 1;
        id
    }

    /// Applies a durable message: into the transcript and to the subscribers.
    pub(super) fn apply_message(&mut self, record: MessageRecord) {
        self.emit_at(record.event_id, Kind::Message(record.to_proto()));
        self.transcript.push(record);
        Counters::inc(&self.shared.counters.messages);
    }

    /// Refuses a change while this router may not own the conversation (see
    /// [`crate::shared::Shared::serving`]); the caller retries on the owner.
    pub(super) fn check_serving(&self) -> Result<(), Status> {
        if self.shared.serving() {
            Ok(())
        } else {
            Err(Status::unavailable(
                "this router is not serving the conversation now, retry",
            ))
        }
    }

    /// Returns the answer to a message whose id is in the transcript already: its seq for
    /// a retry (the same text), ALREADY_EXISTS for another text under the same id (the new
    /// text is not taken); `None` for a new id.
    pub(super) fn duplicate(&self, message_id: &str, text: &str) -> Option<Result<u64, Status>> {
        let stored = self
            .transcript
            .iter()
            .rev()
            .find(|m| m.message_id == message_id)?;
        Some(if stored.text == text {
            Ok(stored.seq)
        } else {
            Err(Status::already_exists(format!(
                "message_id {message_id:?} was used for another text (seq {}); send a new message with a new id",
                stored.seq
            )))
        })
    }

    /// Applies a durable assignment to `agent_id` (first assigned at `assigned_at`, as
    /// written).
    pub(super) fn assign(
        &mut self,
        agent_id: String,
        agent_name: String,
        assigned_at: Option<i64>,
    ) {
        let now = assigned_at.unwrap_or_else(|| self.shared.clock.now_ms());
        if let Some(previous) = self.warm_from.take() {
            if previous != agent_id {
                self.tell_agent_ended(previous, ConversationOutcome::Transferred);
            }
        }
        let transferred = self.transfer_info.take().is_some();
        if self.rec.assigned_at_ms.is_none() {
            self.rec.assigned_at_ms = Some(now);
            m::conversation_assigned(&self.rec, now);
            self.shared.today.answered(
                &self.rec.department,
                &self.rec.language,
                now - self.rec.started_at_ms,
                now,
            );
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

    /// Puts an assigned conversation back into its queue (its agent is gone), once the
    /// record saying so is durable.
    pub(super) fn requeue(&mut self, reason: &str, ctx: &mut Context<Self>) -> Acked<()> {
        let mut next = self.next_record();
        next.state = State::Queued;
        next.agent_id = None;
        next.agent_name.clear();
        next.queue_entered_at_ms = self.shared.clock.now_ms();
        let ops = Self::record_ops(&next, &[]);
        let reason = reason.to_string();
        self.write_then(ctx, ops, move |act, _ctx| {
            act.rec = next;
            act.offer = None;
            act.last_position = None;
            act.emit(Kind::Requeued(Requeued { reason }));
            act.enqueue();
            answer(Ok(()))
        })
    }
}

impl Actor for ConversationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.last_activity_ms = self.shared.clock.now_ms();
        if self.rec.state != State::Closed {
            self.arm_idle(ctx);
        }
        if std::mem::take(&mut self.persist_on_start) && self.rec.state != State::Closed {
            self.persist_record();
        }
        if self.rec.state != State::Closed {
            match self.places.open.take() {
                // Counted at admission already.
                Some(place) => place.keep(),
                None => {
                    self.shared.counters.open.fetch_add(1, Ordering::SeqCst);
                }
            }
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
        if let Some(ticket) = self.linger_ticket.take() {
            self.shared.lingering.remove(ticket);
        }
        if self.retired {
            if self.rec.state != State::Closed {
                self.shared.counters.open.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        if self.rec.state != State::Closed {
            return;
        }
        let rec = self.rec.clone();
        let transcript = std::mem::take(&mut self.transcript);
        // Archive, then remove the live keys. Without a runtime (the node is stopping) the
        // record stays in the store and the next start archives it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (archive, commits) = (self.shared.archive.clone(), self.shared.commits.clone());
        runtime.spawn(retire_eventually(archive, commits, rec, transcript));
    }
}

/// The status that cuts a stream whose reader fell behind: UNAVAILABLE (retry), naming
/// the event to resume after; no event is lost by resuming from there.
pub fn slow_reader(last_event_id: u64) -> Status {
    Status::unavailable(format!(
        "slow reader; resume from event {last_event_id} (stream again with after_event_id = {last_event_id})"
    ))
}

impl ConversationActor {
    /// Idle expiry of the current state (`limits.idle_queued_secs` while queued — and as
    /// the re-check period while assigned —, `idle_offline_secs` while offline); `None`
    /// when off.
    fn idle_limit_ms(&self) -> Option<i64> {
        let limits = &self.shared.config.limits;
        let secs = match self.rec.state {
            State::Queued | State::Assigned => limits.idle_queued_secs,
            State::Offline => limits.idle_offline_secs,
            State::Closed => 0,
        };
        (secs > 0).then_some(secs as i64 * 1000)
    }

    /// Arms the next idle check on the node's clock.
    pub(super) fn arm_idle(&mut self, ctx: &mut Context<Self>) {
        let Some(limit) = self.idle_limit_ms() else {
            return;
        };
        let wait = (self.last_activity_ms + limit - self.shared.clock.now_ms()).max(1);
        let sleep = self.shared.clock.sleep(Duration::from_millis(wait as u64));
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(sleep).map(|(), act, ctx| act.check_idle(ctx)),
        );
    }

    /// Ends a queued or offline conversation whose customer did nothing (no request, no
    /// open stream) for its idle time; the customer's stream gets the closed event.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let Some(limit) = self.idle_limit_ms() else {
            return;
        };
        let now = self.shared.clock.now_ms();
        let present = self
            .subscribers
            .iter()
            .any(|(tx, customer)| *customer && !tx.is_closed());
        if present || self.rec.state == State::Assigned {
            self.last_activity_ms = now;
        }
        if now - self.last_activity_ms < limit {
            self.arm_idle(ctx);
            return;
        }
        let state = if self.rec.state == State::Offline {
            "offline"
        } else {
            "queued"
        };
        let minutes = (limit / 60_000).max(1);
        let reason = format!("no activity for {minutes} min; the conversation has ended");
        let ended = self.close(
            ctx,
            Outcome::Abandoned,
            &reason,
            |_| {},
            move |act| {
                m::idle_expired(state);
                tracing::info!(conversation_id = %act.rec.id, state, "idle conversation ended");
                act.dequeue();
                act.cancel_direct_offer();
            },
            // Not durable: still open; the next check tries again.
            |act, ctx| act.arm_idle(ctx),
        );
        drop(ended);
    }
}

impl Handler<EndLinger> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _msg: EndLinger, ctx: &mut Context<Self>) {
        if self.rec.state == State::Closed {
            ctx.stop();
        }
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

/// The two rate limits of a conversation's typing indicators.
pub struct TypingLimits {
    pub(super) customer: centralino_base::rate::DirectLimit,
    pub(super) agent: centralino_base::rate::DirectLimit,
}

impl Default for TypingLimits {
    fn default() -> Self {
        let rate = (
            centralino_link::TYPING_PER_MINUTE,
            centralino_link::TYPING_BURST,
        );
        Self {
            customer: centralino_base::rate::DirectLimit::new(rate, 1.0),
            agent: centralino_base::rate::DirectLimit::new(rate, 1.0),
        }
    }
}
