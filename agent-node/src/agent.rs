//! `AgentActor`: one per logged-in agent, the single authority over the agent's chat slots.
//!
//! A slot is taken by a held offer, an active conversation or a wrap-up; the actor accepts a
//! reservation only while the agent is available, connected and has a free slot, so no
//! router can ever push an agent past their capacity (DESIGN.md §4, invariant 2). The
//! bookkeeping of the slots is the plain [`slots::Slots`]; the actor keeps its timers (on
//! the node's clock), the desktop stream and the router link.

pub mod slots;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use centralino_proto::v1::{
    agent_event, AgentEvent, AgentStatus, ChatMessage, CommandError, ConversationAssigned,
    ConversationEnded, ConversationOutcome, LoggedIn, Offer, OfferRevoked, StatusChanged,
};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::metrics as m;
use centralino_base::clock::{Clock, SharedClock};
use centralino_base::config::{ActivePolicy, AgentConfig, DeskConfig, HandoverConfig};
use centralino_base::rate::KeyedLimit;
use centralino_base::shifts::Shifts;
use centralino_link::{
    Availability, Escalation, OfferAnswer, ReserveOutcome, ReserveRequest, RouterLink,
    TransferTarget, TYPING_BURST, TYPING_PER_MINUTE,
};
use slots::{Accepting, Cancelled, OfferError, Presence, Reserved, Slots};

/// Simulated time between two checks of the agent's shift.
const SHIFT_CHECK: Duration = Duration::from_secs(30);
/// Conversations whose typing rate an agent actor remembers (beyond that it forgets the
/// quiet ones: see [`KeyedLimit`]).
const TYPING_KEYS_PER_AGENT: usize = 32;
/// Bounds of the wall time between two shift checks.
const SHIFT_CHECK_WALL: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(5));

/// Sender half of an agent desktop stream.
pub type DesktopTx = mpsc::Sender<Result<AgentEvent, Status>>;

/// Attaches a desktop stream (login or reconnect); returns the login confirmation.
#[derive(Message)]
#[rtype(result = "LoggedIn")]
pub struct Attach {
    /// Identifies this stream, so a late `Detach` of a replaced stream is ignored.
    pub session_id: u64,
    /// Where events for the desktop go.
    pub tx: DesktopTx,
}

/// The desktop stream ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    /// Stream that ended.
    pub session_id: u64,
}

/// Sets the agent's status (desktop or supervisor).
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct SetStatus(pub AgentStatus);

/// Holds a slot for a conversation and offers it.
#[derive(Message)]
#[rtype(result = "ReserveOutcome")]
pub struct Reserve(pub ReserveRequest);

/// Withdraws an open offer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelReservation(pub String);

/// The agent accepts an offer.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Accept(pub String);

/// The agent declines an offer.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Decline(pub String);

/// A customer message for the agent's desktop.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Deliver {
    /// Conversation the message belongs to.
    pub conversation_id: String,
    /// The message.
    pub message: ChatMessage,
}

/// The customer is typing (or stopped): an ephemeral event for the desktop.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct CustomerTyping {
    /// Conversation the customer types in.
    pub conversation_id: String,
    /// Typing now.
    pub typing: bool,
}

/// The conversation ended on the customer's side.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ended {
    /// Conversation that ended.
    pub conversation_id: String,
    /// How it ended.
    pub outcome: ConversationOutcome,
}

/// The agent sends a message into one of their conversations.
#[derive(Message)]
#[rtype(result = "Result<u64, Status>")]
pub struct Send {
    /// Target conversation.
    pub conversation_id: String,
    /// Client-chosen id for dedup.
    pub message_id: String,
    /// Text.
    pub text: String,
    /// Short status note.
    pub status_note: bool,
}

/// The agent closes one of their conversations.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Close {
    /// Conversation to close.
    pub conversation_id: String,
    /// Wrap-up summary.
    pub summary: String,
}

/// Gives the agent conversations they held before a router restart or failover; the agent
/// gets the disconnect grace to come back for them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restore(pub Vec<String>);

/// Transcripts of restored conversations, shown to the desktop right after its login.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoredTranscripts(pub Vec<(String, Vec<ChatMessage>)>);

/// Something the agent does to one of their conversations through the router.
#[derive(Message)]
#[rtype(result = "Result<(), Status>")]
pub struct Act {
    /// Conversation.
    pub conversation_id: String,
    /// What to do.
    pub action: Action,
}

/// Router actions an agent can take on a conversation they hold.
#[derive(Debug, Clone)]
pub enum Action {
    /// Transfer.
    Transfer {
        /// Where to.
        target: TransferTarget,
        /// Why.
        reason: String,
        /// Stay until the next agent accepts.
        warm: bool,
    },
    /// Escalate out of chat.
    Escalate(Escalation),
    /// Add an internal note.
    Note(String),
    /// Warn the customer about sensitive data.
    MarkSensitive,
    /// Show the customer that the agent is typing (or stopped); not stored.
    Typing(bool),
}

/// The directory changed (the agent's document, or a team's schedule): name, team, skills and capacity apply
/// from the next offer on; a disabled agent gets no offers and is logged out once nothing
/// holds a slot.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateAccount {
    /// The agent's document now.
    pub config: Arc<AgentConfig>,
    /// Whether the directory disables the agent.
    pub disabled: bool,
}

/// Returns the agent's current availability.
#[derive(Message)]
#[rtype(result = "Availability")]
pub struct GetAvailability;

/// The actor behind one agent.
pub struct AgentActor {
    config: Arc<AgentConfig>,
    skills: Arc<std::collections::BTreeMap<String, u8>>,
    /// The directory disables the agent: capacity 0 for new offers, logged out once free.
    disabled: bool,
    desk: DeskConfig,
    clock: SharedClock,
    router: Arc<dyn RouterLink>,
    status: AgentStatus,
    /// Status to return to after a reconnect.
    status_before_disconnect: AgentStatus,
    session: Option<(u64, DesktopTx)>,
    /// Held offers, active chats, wrap-ups.
    slots: Slots,
    /// Timers of open offers, by reservation id.
    offer_timers: HashMap<String, SpawnHandle>,
    /// Customer messages that arrived while an accept was being confirmed, by reservation.
    pending: HashMap<String, Vec<ChatMessage>>,
    /// Sequence numbers of the customer and system messages each held conversation's
    /// desktop has been shown (live or in a transcript): a message delivered again after a
    /// reconnect is not shown twice.
    shown: HashMap<String, HashSet<u64>>,
    /// Transcripts fetched for conversations restored from another node, shown right
    /// after the next login.
    restored_transcripts: HashMap<String, Vec<ChatMessage>>,
    version: u64,
    grace_timer: Option<SpawnHandle>,
    shifts: Arc<Shifts>,
    handover: HandoverConfig,
    on_shift: bool,
    off_shift_since_ms: Option<i64>,
    /// This actor's address (to detach a desktop it cut).
    me: Option<Addr<AgentActor>>,
    /// The session cut for reading too slowly, until its detach is handled.
    cut_session: Option<u64>,
    /// The agent's typing indicators per conversation: the excess is dropped here, before
    /// it crosses to a router (a few keys at most, one per chat held recently).
    typing: KeyedLimit<String>,
}

impl AgentActor {
    /// Returns a new actor for `config`; it starts offline until a desktop attaches.
    pub fn new(
        config: Arc<AgentConfig>,
        desk: DeskConfig,
        clock: SharedClock,
        router: Arc<dyn RouterLink>,
        shifts: Arc<Shifts>,
        handover: HandoverConfig,
    ) -> Self {
        let now = clock.now_ms();
        let on_shift = shifts.team_open(&config.team, now);
        Self {
            skills: Arc::new(config.skills.clone()),
            disabled: false,
            slots: Slots::new(config.capacity, desk.max_missed_offers, now),
            offer_timers: HashMap::new(),
            pending: HashMap::new(),
            config,
            desk,
            clock,
            router,
            status: AgentStatus::Offline,
            status_before_disconnect: AgentStatus::Available,
            session: None,
            shown: HashMap::new(),
            restored_transcripts: HashMap::new(),
            // Versions start at the wall clock in microseconds: when an agent moves to
            // another agent-node, the new actor's updates supersede the old one's.
            version: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            grace_timer: None,
            shifts,
            handover,
            on_shift,
            off_shift_since_ms: (!on_shift).then_some(now),
            me: None,
            cut_session: None,
            typing: KeyedLimit::new(
                (TYPING_PER_MINUTE, TYPING_BURST),
                1.0,
                TYPING_KEYS_PER_AGENT,
            ),
        }
    }

    /// Follows the team's schedule: publishes shift changes and, with the `transfer_after`
    /// policy, hands active conversations on once the grace after the shift end is over.
    fn check_shift(&mut self) {
        let now = self.clock.now_ms();
        let on_shift = self.shifts.team_open(&self.config.team, now);
        if on_shift != self.on_shift {
            self.on_shift = on_shift;
            self.off_shift_since_ms = (!on_shift).then_some(now);
            info!(agent_id = %self.config.id, on_shift, "agent shift changed");
            self.publish();
        }
        let grace_over = self
            .off_shift_since_ms
            .is_some_and(|since| now - since >= self.handover.grace_secs as i64 * 1000);
        if self.handover.active == ActivePolicy::TransferAfter
            && grace_over
            && self.slots.has_active()
        {
            let conversations = self.slots.drain_active();
            info!(agent_id = %self.config.id, count = conversations.len(), "shift over, handing conversations on");
            for conversation_id in conversations {
                self.push(agent_event::Kind::Ended(ConversationEnded {
                    conversation_id: conversation_id.clone(),
                    outcome: ConversationOutcome::Transferred as i32,
                }));
                let router = self.router.clone();
                let agent_id = self.config.id.clone();
                actix::spawn(async move {
                    if let Err(status) = router
                        .release(&conversation_id, &agent_id, "handover")
                        .await
                    {
                        debug!(%conversation_id, %status, "handover release failed");
                    }
                });
            }
            self.publish();
        }
    }

    fn availability(&self) -> Availability {
        Availability {
            agent_id: self.config.id.clone(),
            version: self.version,
            team: self.config.team.clone(),
            status: self.status,
            capacity: self.slots.capacity(),
            load: self.slots.load(),
            skills: self.skills.clone(),
            idle_since_ms: self.slots.idle_since_ms(),
            display_name: self.config.name.clone(),
            on_shift: self.on_shift,
        }
    }

    fn publish(&mut self) {
        self.version += 1;
        self.router.availability(self.availability());
    }

    /// Shows a conversation with its transcript on the desktop.
    fn push_assigned(&mut self, conversation_id: String, transcript: Vec<ChatMessage>) {
        let shown = self.shown.entry(conversation_id.clone()).or_default();
        shown.extend(transcript.iter().map(|m| m.seq));
        self.push(agent_event::Kind::Assigned(ConversationAssigned {
            conversation_id,
            transcript,
        }));
    }

    /// Shows one message unless the desktop has already seen it.
    fn push_message(&mut self, conversation_id: String, message: ChatMessage) {
        // Notes outside the transcript (seq 0) are always shown.
        if message.seq > 0
            && !self
                .shown
                .entry(conversation_id.clone())
                .or_default()
                .insert(message.seq)
        {
            return;
        }
        self.push(agent_event::Kind::Message(
            centralino_proto::v1::AgentMessage {
                conversation_id,
                message: Some(message),
            },
        ));
    }

    /// Sends an ephemeral event (typing) to the desktop when there is room for it: unlike
    /// [`Self::push`], a full stream drops it (counted) without cutting the desktop.
    fn push_ephemeral(&mut self, kind: agent_event::Kind) {
        let Some((session_id, tx)) = &self.session else {
            return;
        };
        if self.cut_session == Some(*session_id)
            || tx.capacity() <= 1
            || tx.try_send(Ok(AgentEvent { kind: Some(kind) })).is_err()
        {
            m::desktop_events_dropped();
        }
    }

    /// Sends an event to the desktop. A desktop that does not keep up (its buffer full but
    /// for one place) is cut: the last place takes an UNAVAILABLE status saying to resume,
    /// and the session is detached as if the stream had ended (offers revoked, disconnect
    /// grace). Logging in again resumes without loss: the login confirmation lists the
    /// conversations held and each comes back with its whole transcript.
    fn push(&mut self, kind: agent_event::Kind) {
        let Some((session_id, tx)) = &self.session else {
            return;
        };
        let session_id = *session_id;
        if self.cut_session == Some(session_id) {
            m::desktop_events_dropped();
            return;
        }
        if tx.capacity() <= 1 {
            m::desktop_events_dropped();
            m::desktop_cut();
            let _ = tx.try_send(Err(slow_desktop()));
            warn!(agent_id = %self.config.id, session_id, "desktop too slow, stream cut");
            self.cut_session = Some(session_id);
            if let Some(me) = &self.me {
                me.do_send(Detach { session_id });
            }
            return;
        }
        if tx.try_send(Ok(AgentEvent { kind: Some(kind) })).is_err() {
            m::desktop_events_dropped();
        }
    }

    fn set_status(&mut self, status: AgentStatus, reason: &str) {
        if self.status == status {
            return;
        }
        info!(agent_id = %self.config.id, ?status, reason, "agent status changed");
        self.status = status;
        self.push(agent_event::Kind::Status(StatusChanged {
            status: status as i32,
            reason: reason.to_string(),
        }));
        self.publish();
    }

    /// Tells the desktop and the router that an offer ended unaccepted (its slot is
    /// already free).
    fn offer_ended(
        &mut self,
        reservation_id: String,
        conversation_id: String,
        answer: OfferAnswer,
        ctx: &mut Context<Self>,
    ) {
        if let Some(timer) = self.offer_timers.remove(&reservation_id) {
            ctx.cancel_future(timer);
        }
        m::offer_answered(answer);
        self.push(agent_event::Kind::OfferRevoked(OfferRevoked {
            reservation_id: reservation_id.clone(),
            conversation_id: conversation_id.clone(),
            reason: format!("{answer:?}").to_lowercase(),
        }));
        self.publish();
        let router = self.router.clone();
        let agent_id = self.config.id.clone();
        actix::spawn(async move {
            if let Err(status) = router
                .offer_answered(&conversation_id, &reservation_id, &agent_id, answer)
                .await
            {
                debug!(%conversation_id, %status, "router did not take the offer answer");
            }
        });
    }

    /// The offer timer of `reservation_id` ran out.
    fn offer_expired(&mut self, reservation_id: String, ctx: &mut Context<Self>) {
        // This timer has just fired: nothing to cancel.
        self.offer_timers.remove(&reservation_id);
        let Some(timed_out) = self.slots.time_out(&reservation_id) else {
            return;
        };
        self.offer_ended(
            reservation_id,
            timed_out.conversation_id,
            OfferAnswer::TimedOut,
            ctx,
        );
        if timed_out.away {
            self.set_status(AgentStatus::Away, "missed offers");
        }
    }

    /// Sends the accept to the router; the slot becomes an active chat once it confirms.
    fn accept(
        &mut self,
        reservation_id: String,
        ctx: &mut Context<Self>,
    ) -> Result<(), OfferError> {
        let conversation_id = match self.slots.begin_accept(&reservation_id)? {
            Accepting::Started(conversation_id) => conversation_id,
            Accepting::Already => return Ok(()),
        };
        if let Some(timer) = self.offer_timers.remove(&reservation_id) {
            ctx.cancel_future(timer);
        }
        let router = self.router.clone();
        let agent_id = self.config.id.clone();
        let rid = reservation_id.clone();
        let cid = conversation_id.clone();
        let fut = async move {
            router
                .offer_answered(&cid, &rid, &agent_id, OfferAnswer::Accepted)
                .await
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, _ctx| {
            let pending = act.pending.remove(&reservation_id).unwrap_or_default();
            match result {
                Ok(transcript) => {
                    if act.slots.accepted(&reservation_id).is_none() {
                        return;
                    }
                    m::offer_answered(OfferAnswer::Accepted);
                    act.push_assigned(conversation_id.clone(), transcript);
                    for message in pending {
                        act.push_message(conversation_id.clone(), message);
                    }
                }
                Err(status) => {
                    if act.slots.refused(&reservation_id).is_none() {
                        return;
                    }
                    debug!(%conversation_id, %status, "assignment refused by the router");
                    act.push(agent_event::Kind::OfferRevoked(OfferRevoked {
                        reservation_id,
                        conversation_id,
                        reason: status.message().to_string(),
                    }));
                }
            }
            act.publish();
        }));
        Ok(())
    }

    /// Logs a disabled agent out once nothing holds a slot: the desktop stream ends with
    /// PERMISSION_DENIED and the agent goes offline (the node forgets the actor later).
    fn logout_if_disabled(&mut self, ctx: &mut Context<Self>) {
        if !self.disabled || self.slots.load() > 0 || self.status == AgentStatus::Offline {
            return;
        }
        if let Some(timer) = self.grace_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some((_, tx)) = self.session.take() {
            let _ = tx.try_send(Err(Status::permission_denied(
                "the agent is disabled: logged out",
            )));
            m::agent_logged_in(&self.config.team, false);
        }
        info!(agent_id = %self.config.id, "disabled agent logged out");
        self.set_status(AgentStatus::Offline, "disabled");
    }

    /// Keeps the slot of `conversation_id` for its wrap-up, then frees it.
    fn start_wrap_up(&mut self, conversation_id: String, ctx: &mut Context<Self>) {
        let wrap_up = self
            .clock
            .sleep(Duration::from_secs(self.desk.wrap_up_secs));
        ctx.spawn(wrap_up.into_actor(self).map(move |(), act, ctx| {
            let now = act.clock.now_ms();
            if act.slots.end_wrap_up(&conversation_id, now) {
                act.publish();
                act.logout_if_disabled(ctx);
            }
        }));
    }

    /// Checks the shift after [`SHIFT_CHECK`], then again.
    fn schedule_shift_check(&mut self, ctx: &mut Context<Self>) {
        let next = self.clock.sleep(shift_check_period(self.clock.as_ref()));
        ctx.spawn(next.into_actor(self).map(|(), act, ctx| {
            act.check_shift();
            act.schedule_shift_check(ctx);
        }));
    }

    fn end_conversation(
        &mut self,
        conversation_id: &str,
        outcome: ConversationOutcome,
        ctx: &mut Context<Self>,
    ) {
        self.shown.remove(conversation_id);
        if self.slots.end(conversation_id) {
            self.push(agent_event::Kind::Ended(ConversationEnded {
                conversation_id: conversation_id.to_string(),
                outcome: outcome as i32,
            }));
            self.start_wrap_up(conversation_id.to_string(), ctx);
            self.publish();
        }
    }

    fn revoke_all_offers(&mut self, answer: OfferAnswer, ctx: &mut Context<Self>) {
        for (reservation_id, conversation_id) in self.slots.revoke_open() {
            self.offer_ended(reservation_id, conversation_id, answer, ctx);
        }
    }
}

/// Returns the simulated time between two shift checks: [`SHIFT_CHECK`], kept within
/// [`SHIFT_CHECK_WALL`] of wall time on a clock that moves with the wall clock.
fn shift_check_period(clock: &dyn Clock) -> Duration {
    let speed = clock.speed();
    if !(speed.is_finite() && speed > 0.0) {
        return SHIFT_CHECK;
    }
    let simulated = |wall: Duration| {
        Duration::try_from_secs_f64(wall.as_secs_f64() * speed).unwrap_or(Duration::MAX)
    };
    SHIFT_CHECK.clamp(simulated(SHIFT_CHECK_WALL.0), simulated(SHIFT_CHECK_WALL.1))
}

/// Returns the desktop's error for an answer to an offer that does not apply.
fn offer_status(error: OfferError) -> Status {
    match error {
        OfferError::NotFound => Status::not_found("no such offer"),
        OfferError::Answered => Status::failed_precondition("offer already answered or withdrawn"),
        OfferError::BeingAccepted => Status::failed_precondition("offer is being accepted"),
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        self.me = Some(ctx.address());
        self.schedule_shift_check(ctx);
    }
}

impl Handler<Attach> for AgentActor {
    type Result = MessageResult<Attach>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(timer) = self.grace_timer.take() {
            ctx.cancel_future(timer);
        }
        if let Some((_, old)) = self.session.take() {
            let _ = old.try_send(Err(Status::aborted("logged in from another desktop")));
        }
        self.session = Some((msg.session_id, msg.tx));
        let status = match self.status {
            AgentStatus::Offline | AgentStatus::Unspecified => AgentStatus::Available,
            AgentStatus::Disconnected => self.status_before_disconnect,
            other => other,
        };
        let conversation_ids = self.slots.active();
        let logged_in = LoggedIn {
            agent_id: self.config.id.clone(),
            display_name: self.config.name.clone(),
            capacity: self.config.capacity,
            conversation_ids,
            status: status as i32,
        };
        // The confirmation goes first: offers may follow at once.
        self.push(agent_event::Kind::LoggedIn(logged_in.clone()));
        // Conversations held from before (a reconnect, another node, a restart): the
        // desktop gets each one again with its transcript, including what the customer
        // wrote while it was away.
        for conversation_id in logged_in.conversation_ids.iter().cloned() {
            if let Some(transcript) = self.restored_transcripts.remove(&conversation_id) {
                self.push_assigned(conversation_id, transcript);
                continue;
            }
            let router = self.router.clone();
            let agent_id = self.config.id.clone();
            let session_id = msg.session_id;
            ctx.spawn(
                async move {
                    let transcript = router.transcript(&conversation_id, &agent_id).await;
                    (conversation_id, transcript)
                }
                .into_actor(self)
                .map(move |(conversation_id, transcript), act, _ctx| {
                    let current = act.session.as_ref().is_some_and(|(id, _)| *id == session_id);
                    match transcript {
                        Ok(transcript) if current && act.slots.is_active(&conversation_id) => {
                            act.push_assigned(conversation_id, transcript);
                        }
                        Ok(_) => {}
                        Err(status) => {
                            debug!(%conversation_id, %status, "no transcript for a held conversation")
                        }
                    }
                }),
            );
        }
        m::agent_logged_in(&self.config.team, true);
        self.set_status(status, "login");
        self.publish();
        MessageResult(logged_in)
    }
}

impl Handler<Detach> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if self.session.as_ref().map(|(id, _)| *id) != Some(msg.session_id) {
            return;
        }
        self.session = None;
        m::agent_logged_in(&self.config.team, false);
        self.revoke_all_offers(OfferAnswer::Revoked, ctx);
        if self.status != AgentStatus::Disconnected {
            self.status_before_disconnect = self.status;
        }
        self.set_status(AgentStatus::Disconnected, "desktop disconnected");
        self.start_grace(ctx);
    }
}

impl Handler<RestoredTranscripts> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: RestoredTranscripts, _ctx: &mut Context<Self>) {
        for (conversation_id, transcript) in msg.0 {
            if self.slots.is_active(&conversation_id) {
                self.restored_transcripts
                    .insert(conversation_id, transcript);
            }
        }
    }
}

impl Handler<Restore> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Restore, ctx: &mut Context<Self>) {
        self.slots.restore(msg.0);
        if self.session.is_none() && self.grace_timer.is_none() {
            self.status_before_disconnect = AgentStatus::Available;
            self.set_status(AgentStatus::Disconnected, "restored after restart");
            self.start_grace(ctx);
        }
        self.publish();
    }
}

impl AgentActor {
    /// Starts the disconnect grace: when it runs out, the agent's conversations go back to
    /// their queues with their original age.
    fn start_grace(&mut self, ctx: &mut Context<Self>) {
        let grace = self
            .clock
            .sleep(Duration::from_secs(self.desk.disconnect_grace_secs));
        self.grace_timer = Some(ctx.spawn(grace.into_actor(self).map(|(), act, _ctx| {
            act.grace_timer = None;
            let conversations = act.slots.drain_active();
            info!(agent_id = %act.config.id, count = conversations.len(), "disconnect grace over, releasing conversations");
            for conversation_id in conversations {
                let router = act.router.clone();
                let agent_id = act.config.id.clone();
                actix::spawn(async move {
                    if let Err(status) = router
                        .release(&conversation_id, &agent_id, "agent disconnected")
                        .await
                    {
                        debug!(%conversation_id, %status, "release failed");
                    }
                });
            }
            act.set_status(AgentStatus::Offline, "disconnect grace over");
            act.publish();
        })));
    }
}

impl Handler<SetStatus> for AgentActor {
    type Result = Result<(), Status>;

    fn handle(&mut self, msg: SetStatus, ctx: &mut Context<Self>) -> Self::Result {
        match msg.0 {
            AgentStatus::Available
            | AgentStatus::Away
            | AgentStatus::OnCall
            | AgentStatus::Offline => {}
            other => {
                return Err(Status::invalid_argument(format!(
                    "status {} cannot be set",
                    other.as_str_name()
                )))
            }
        }
        if self.session.is_none() && msg.0 != AgentStatus::Offline {
            // A supervisor may set a disconnected agent's status for after the reconnect.
            self.status_before_disconnect = msg.0;
            return Ok(());
        }
        if msg.0 != AgentStatus::Available {
            self.revoke_all_offers(OfferAnswer::Revoked, ctx);
        } else {
            self.slots.available_again();
        }
        self.set_status(msg.0, "set");
        Ok(())
    }
}

impl Handler<Reserve> for AgentActor {
    type Result = MessageResult<Reserve>;

    fn handle(&mut self, Reserve(req): Reserve, ctx: &mut Context<Self>) -> Self::Result {
        let presence = Presence {
            connected: self.session.is_some(),
            status: self.status,
            on_shift: self.on_shift,
        };
        match self
            .slots
            .reserve(&req.reservation_id, &req.conversation_id, presence)
        {
            Reserved::New => {}
            Reserved::Again => return MessageResult(ReserveOutcome::Held),
            Reserved::Rejected(reason) => return MessageResult(ReserveOutcome::Rejected(reason)),
        }
        let timeout_ms = self.desk.offer_timeout_secs * 1000;
        let rid = req.reservation_id.clone();
        if !req.auto_accept {
            let expiry = self
                .clock
                .sleep(Duration::from_secs(self.desk.offer_timeout_secs));
            let expired = rid.clone();
            let timer = ctx.spawn(
                expiry
                    .into_actor(self)
                    .map(move |(), act, ctx| act.offer_expired(expired, ctx)),
            );
            self.offer_timers.insert(rid.clone(), timer);
        }
        m::offer_made(&req.department);
        self.push(agent_event::Kind::Offer(Offer {
            reservation_id: rid.clone(),
            conversation_id: req.conversation_id,
            department: req.department,
            language: req.language,
            customer_display_name: req.customer_display_name,
            returning_customer: req.returning_customer,
            visitor: req.visitor,
            expires_in_ms: timeout_ms.min(u32::MAX as u64) as u32,
            auto_accepted: req.auto_accept,
            started_at_unix_ms: req.started_at_ms,
            last_summary: req.last_summary,
            history: req.history,
            transfer: req.transfer,
            serving_language: req.serving_language,
        }));
        self.publish();
        if req.auto_accept {
            if let Err(error) = self.accept(rid, ctx) {
                debug!(?error, "auto-accept of a new offer did not start");
            }
        }
        MessageResult(ReserveOutcome::Held)
    }
}

impl Handler<CancelReservation> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: CancelReservation, ctx: &mut Context<Self>) {
        match self.slots.cancel(&msg.0) {
            Cancelled::Withdrawn(conversation_id) => {
                if let Some(timer) = self.offer_timers.remove(&msg.0) {
                    ctx.cancel_future(timer);
                }
                self.push(agent_event::Kind::OfferRevoked(OfferRevoked {
                    reservation_id: msg.0,
                    conversation_id,
                    reason: "customer left".to_string(),
                }));
                self.publish();
            }
            // Being accepted: the router settles it. Not held: refused when it comes.
            Cancelled::Accepting | Cancelled::NotHeld => {}
        }
    }
}

impl Handler<Accept> for AgentActor {
    type Result = Result<(), Status>;

    fn handle(&mut self, msg: Accept, ctx: &mut Context<Self>) -> Self::Result {
        self.accept(msg.0, ctx).map_err(offer_status)
    }
}

impl Handler<Decline> for AgentActor {
    type Result = Result<(), Status>;

    fn handle(&mut self, msg: Decline, ctx: &mut Context<Self>) -> Self::Result {
        let conversation_id = self.slots.decline(&msg.0).map_err(offer_status)?;
        self.offer_ended(msg.0, conversation_id, OfferAnswer::Declined, ctx);
        Ok(())
    }
}

impl Handler<Deliver> for AgentActor {
    type Result = Result<(), Status>;

    fn handle(&mut self, msg: Deliver, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(reservation_id) = self.slots.accepting(&msg.conversation_id) {
            // Assigned at the router, not yet confirmed here: deliver after the assignment.
            self.pending
                .entry(reservation_id.to_string())
                .or_default()
                .push(msg.message);
            return Ok(());
        }
        if !self.slots.is_active(&msg.conversation_id) {
            return Err(Status::failed_precondition(
                "agent does not hold this conversation",
            ));
        }
        self.push_message(msg.conversation_id, msg.message);
        Ok(())
    }
}

impl Handler<CustomerTyping> for AgentActor {
    type Result = Result<(), Status>;

    fn handle(&mut self, msg: CustomerTyping, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.slots.is_active(&msg.conversation_id) {
            return Err(Status::failed_precondition(
                "agent does not hold this conversation",
            ));
        }
        self.push_ephemeral(agent_event::Kind::CustomerTyping(
            centralino_proto::v1::CustomerTyping {
                conversation_id: msg.conversation_id,
                typing: msg.typing,
            },
        ));
        Ok(())
    }
}

impl Handler<Ended> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Ended, ctx: &mut Context<Self>) {
        self.end_conversation(&msg.conversation_id, msg.outcome, ctx);
    }
}

impl Handler<Send> for AgentActor {
    type Result = ResponseActFuture<Self, Result<u64, Status>>;

    fn handle(&mut self, msg: Send, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.slots.is_active(&msg.conversation_id) {
            return Box::pin(actix::fut::ready(Err(Status::permission_denied(
                "conversation is not assigned to this agent",
            ))));
        }
        let router = self.router.clone();
        let agent_id = self.config.id.clone();
        Box::pin(
            async move {
                let seq = router
                    .agent_message(
                        &msg.conversation_id,
                        &agent_id,
                        &msg.message_id,
                        &msg.text,
                        msg.status_note,
                    )
                    .await?;
                Ok((seq, msg, agent_id))
            }
            .into_actor(self)
            .map(|result: Result<(u64, Send, String), Status>, act, _ctx| {
                let (seq, msg, agent_id) = result?;
                // The agent's own message comes back as the other participants' do (shown
                // once: a retry of a stored message is not shown again).
                let message = ChatMessage {
                    message_id: msg.message_id,
                    seq,
                    sender: centralino_proto::v1::Sender::Agent as i32,
                    author: agent_id,
                    text: msg.text,
                    at_unix_ms: act.clock.now_ms(),
                    status_note: msg.status_note,
                };
                act.push_message(msg.conversation_id, message);
                Ok(seq)
            }),
        )
    }
}

impl Handler<Close> for AgentActor {
    type Result = ResponseActFuture<Self, Result<(), Status>>;

    fn handle(&mut self, msg: Close, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.slots.is_active(&msg.conversation_id) {
            return Box::pin(actix::fut::ready(Err(Status::permission_denied(
                "conversation is not assigned to this agent",
            ))));
        }
        let router = self.router.clone();
        let agent_id = self.config.id.clone();
        let cid = msg.conversation_id.clone();
        Box::pin(
            async move { router.agent_close(&cid, &agent_id, &msg.summary).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    if result.is_ok()
                        || result
                            .as_ref()
                            .is_err_and(|s| s.code() == tonic::Code::NotFound)
                    {
                        act.end_conversation(
                            &msg.conversation_id,
                            ConversationOutcome::Completed,
                            ctx,
                        );
                    }
                    result
                }),
        )
    }
}

impl Handler<Act> for AgentActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: Act, _ctx: &mut Context<Self>) -> Self::Result {
        if !self.slots.is_active(&msg.conversation_id) {
            return Box::pin(async {
                Err(Status::permission_denied(
                    "conversation is not assigned to this agent",
                ))
            });
        }
        if matches!(msg.action, Action::Typing(_))
            && self.typing.check(&msg.conversation_id).is_err()
        {
            // Best effort: acknowledged, not forwarded.
            m::typing_dropped();
            return Box::pin(async { Ok(()) });
        }
        let router = self.router.clone();
        let agent_id = self.config.id.clone();
        let cid = msg.conversation_id;
        Box::pin(async move {
            match msg.action {
                Action::Transfer {
                    target,
                    reason,
                    warm,
                } => {
                    router
                        .transfer(&cid, &agent_id, target, &reason, warm)
                        .await
                }
                Action::Escalate(escalation) => router.escalate(&cid, &agent_id, escalation).await,
                Action::Note(text) => router.add_note(&cid, &agent_id, &text).await,
                Action::MarkSensitive => router.mark_sensitive(&cid, &agent_id).await,
                Action::Typing(typing) => router.agent_typing(&cid, &agent_id, typing).await,
            }
        })
    }
}

impl Handler<UpdateAccount> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: UpdateAccount, ctx: &mut Context<Self>) {
        // Any change of the directory may be the team's schedule: follow it now, not at
        // the next periodic check.
        self.check_shift();
        let capacity = if msg.disabled { 0 } else { msg.config.capacity };
        let same = msg.disabled == self.disabled
            && capacity == self.slots.capacity()
            && msg.config.skills == *self.skills
            && msg.config.name == self.config.name
            && msg.config.team == self.config.team;
        if same {
            return;
        }
        info!(agent_id = %self.config.id, capacity, disabled = msg.disabled, "agent changed in the directory");
        // The team's metric counts the session under its old team until it ends.
        let team_changed = msg.config.team != self.config.team;
        if team_changed && self.session.is_some() {
            m::agent_logged_in(&self.config.team, false);
            m::agent_logged_in(&msg.config.team, true);
        }
        self.skills = Arc::new(msg.config.skills.clone());
        self.slots.set_capacity(capacity);
        self.disabled = msg.disabled;
        self.config = msg.config;
        if team_changed {
            let now = self.clock.now_ms();
            let on_shift = self.shifts.team_open(&self.config.team, now);
            if on_shift != self.on_shift {
                self.on_shift = on_shift;
                self.off_shift_since_ms = (!on_shift).then_some(now);
            }
        }
        if self.disabled {
            // Open offers are not chats yet: withdrawn like at a status change.
            self.revoke_all_offers(OfferAnswer::Revoked, ctx);
        }
        self.publish();
        self.logout_if_disabled(ctx);
    }
}

impl Handler<GetAvailability> for AgentActor {
    type Result = MessageResult<GetAvailability>;

    fn handle(&mut self, _msg: GetAvailability, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.availability())
    }
}

/// The status that cuts a desktop stream whose reader fell behind.
pub fn slow_desktop() -> Status {
    Status::unavailable(
        "slow reader; the desktop fell behind: log in again to resume (held conversations come back with their transcripts)",
    )
}

/// The gRPC specification's name of a code ("PERMISSION_DENIED"), as the JSON API says it.
pub use centralino_web::status::code_name;

/// Returns an error event for the desktop.
pub fn error_event(status: &Status) -> AgentEvent {
    AgentEvent {
        kind: Some(agent_event::Kind::Error(CommandError {
            code: code_name(status.code()).to_string(),
            message: status.message().to_string(),
            request_id: String::new(),
        })),
    }
}

#[cfg(test)]
mod tests;

/// Stops the actor: the agent is forgotten on this node (offline, nothing held).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for AgentActor {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Stops the actor because the agent's login claim went to another agent-node (this node
/// lost its lease meanwhile): the desktop's stream ends with FAILED_PRECONDITION, so the
/// desktop logs in again, and nothing is released (the other node holds the conversations).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict;

impl Handler<Evict> for AgentActor {
    type Result = ();

    fn handle(&mut self, _msg: Evict, ctx: &mut Context<Self>) {
        if let Some((_, tx)) = self.session.take() {
            let _ = tx.try_send(Err(Status::failed_precondition(
                "the agent's login moved to another agent-node: log in again",
            )));
            m::agent_logged_in(&self.config.team, false);
        }
        warn!(agent_id = %self.config.id, "agent evicted: logged in on another agent-node");
        ctx.stop();
    }
}
