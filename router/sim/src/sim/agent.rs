//! Agents: one task per configured agent on the `AgentDesk/Session` stream.
//!
//! An agent logs in, accepts offers after a short think time (now and then declines one or
//! lets it time out), greets the customer in the offer's serving language, answers each
//! customer message once (now and then with a canned response found by shortcut, now and
//! then adding an internal note), and closes the conversation with a summary after a
//! handling time of a few simulated minutes. A few percent of the chats are transferred
//! (to another department, a named colleague with a free slot, a supervisor or the
//! customer's own language team; some warm) and about 2 % escalated (callback or email).
//! When the server sets it away for missed offers it comes back after a short break; an
//! agent whose team works to a schedule stops taking chats a little before the shift ends
//! (staggered) and finishes the ones it holds.
//!
//! Commands carry a `request_id`, so each `ack` or `error` is tied to its command: a
//! refused send is not expected at the customer, a refused transfer (e.g. the named agent
//! is full) leaves the chat with the agent, and is no violation.
//!
//! Checks from the agent's own events: every offer must fit the agent's skills (department
//! skill and `lang:<serving language>` at the routing step's minimum proficiency; for a
//! transferred conversation, both at least 1 and the skill a transfer asked for), no offer
//! reaches an agent whose team is off shift, the agent never holds more
//! assigned-and-not-ended conversations than its capacity, and no other agent holds a
//! conversation it receives unless that agent is handing it on (see [`super::ledger`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use centralino_base::config::AgentConfig;
use centralino_base::shifts::Shifts;
use centralino_proto::v1::agent_command::Kind as Command;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::agent_event::Kind as Event;
use centralino_proto::v1::{
    transfer, AcceptOffer, AddNote, AgentClose, AgentCommand, AgentEvent, AgentSend, AgentStatus,
    ConversationOutcome, DeclineOffer, Escalate, EscalationKind, FindCanned, Login, Sender,
    SetStatus, Transfer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tracing::{debug, warn};

use super::ledger::{check_offer, check_transferred_offer, offered_off_shift, TransferTarget};
use super::net::{Cursor, CALL_TIMEOUT};
use super::run::Shared;
use centralino_core::config::Config;

/// Share of offers declined.
/// Break of night-team agents who speak Italian (local minutes): 21:30–22:20.
const BREAK_FROM: u32 = 21 * 60 + 30;
const BREAK_UNTIL: u32 = 22 * 60 + 20;
const DECLINE_SHARE: f64 = 0.04;
/// Share of offers left to time out.
const IGNORE_SHARE: f64 = 0.02;
/// How long the customer must have been quiet before the agent closes (simulated).
const QUIET_BEFORE_CLOSE: Duration = Duration::from_secs(45);
/// The agent closes regardless after this long (simulated).
const MAX_HANDLING: Duration = Duration::from_secs(25 * 60);
/// Pause before repeating a close request that got no `ended` (simulated) ...
const CLOSE_RETRY: Duration = Duration::from_secs(120);
/// ... and at least this much wall time.
const CLOSE_RETRY_WALL: Duration = Duration::from_secs(5);
/// Close requests per conversation after which the agent says it does not close (and tries on).
const MAX_CLOSE_ATTEMPTS: u32 = 3;
/// Most desktop sessions (logins) per agent in one run.
const MAX_SESSIONS: u32 = 50;
/// Pause before logging in again after a broken or refused session (wall time).
const RELOGIN_PAUSE: Duration = Duration::from_millis(300);
/// How long (wall time) an agent keeps trying to log in before giving up: covers an
/// agent-node's failover (its lease must expire before the agent may log in elsewhere).
const LOGIN_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// Commands buffered towards the server.
const COMMAND_BUFFER: usize = 256;
/// Share of chats the agent transfers.
const TRANSFER_SHARE: f64 = 0.045;
/// Share of chats the agent escalates out of chat.
const ESCALATE_SHARE: f64 = 0.02;
/// Share of answers taken from the canned responses (when one fits).
const CANNED_SHARE: f64 = 0.2;
/// Share of chats with an internal note.
const NOTE_SHARE: f64 = 0.1;
/// How long an agent waits for a transfer to be taken over before closing anyway
/// (simulated).
const TRANSFER_WAIT: Duration = Duration::from_secs(10 * 60);
/// When an agent stops taking chats before its team's shift ends (simulated): each agent
/// draws its own time in this range (a thin late shift that finishes its chats).
const WIND_DOWN: std::ops::RangeInclusive<u64> = 20 * 60..=55 * 60;
/// How often an agent looks at the clock for its shift (simulated).
const SHIFT_LOOK: Duration = Duration::from_secs(60);
/// Simulated delay of the server's shift checks (the agent-node checks every 30 s).
const SERVER_SHIFT_CHECK: Duration = Duration::from_secs(30);

/// Something the agent does later.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Answer an offer.
    Answer {
        reservation_id: String,
        accept: bool,
    },
    /// Send the greeting or the next reply.
    Reply { conversation_id: String },
    /// Close if the chat is done.
    TryClose { conversation_id: String },
    /// Become available again after being set away.
    BackToWork,
    /// Carry out the chat's planned transfer or escalation.
    Act { conversation_id: String },
    /// Look at the shift: stop taking chats shortly before it ends.
    Shift,
}

/// What the agent means to do with a chat besides answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Serve and close.
    Serve,
    /// Transfer it after the first answer.
    Transfer,
    /// Escalate it after the first answer.
    Escalate,
}

/// A command waiting for its `ack` or `error`.
#[derive(Debug, Clone)]
enum Request {
    /// A message.
    Send {
        conversation_id: String,
        message_id: String,
    },
    /// A transfer.
    Transfer { conversation_id: String },
    /// A canned-response search for an answer.
    Canned { conversation_id: String },
    /// Anything else (close, escalate, note, offer answers, status).
    Other { what: &'static str },
}

/// An offer as the agent keeps it until the assignment.
#[derive(Debug, Clone)]
struct OfferSeen {
    conversation_id: String,
    serving_language: String,
    department: String,
    transferred: bool,
}

/// One conversation on the agent's desk.
#[derive(Debug)]
struct Chat {
    /// The language the agent answers in (the offer's serving language).
    language: String,
    department: String,
    plan: Plan,
    /// A transfer asked for: when, and whether warm.
    transferring: Option<(Instant, bool)>,
    /// A canned response was looked up for the next answer.
    canned_pending: bool,
    noted: bool,
    greeted: bool,
    owed: u32,
    reply_pending: bool,
    sent: u32,
    last_customer_at: Instant,
    assigned_at: Instant,
    close_attempts: u32,
}

/// A desktop session's state.
struct Desk {
    shared: Arc<Shared>,
    agent: AgentConfig,
    rng: StdRng,
    commands: Option<mpsc::Sender<AgentCommand>>,
    chats: HashMap<String, Chat>,
    offers: HashMap<String, OfferSeen>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    shifts: Shifts,
    requests: HashMap<String, Request>,
    request_seq: u64,
    /// The agent-node this agent's desktop uses (moves on when a session breaks).
    node: Cursor,
    /// The agent-node of the current session.
    session_node: usize,
    /// The current session got `logged_in`.
    session_logged_in: bool,
    /// An earlier session got `logged_in` (the next one is a re-login).
    logged_in_before: bool,
    /// Stops taking chats this long before the team's shift ends.
    wind_down: Duration,
    winding_down: bool,
}

/// Plays one agent until `stop`; the `index`-th agent starts on the `index`-th agent-node
/// (modulo their number).
pub async fn run(
    shared: Arc<Shared>,
    agent: AgentConfig,
    index: usize,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let shifts = Shifts::new(&shared.config.agent_node());
    let mut rng = StdRng::seed_from_u64(seed);
    let wind_down = Duration::from_secs(rng.random_range(WIND_DOWN));
    let mut desk = Desk {
        shared,
        agent,
        rng,
        commands: None,
        chats: HashMap::new(),
        offers: HashMap::new(),
        timers: BinaryHeap::new(),
        timer_seq: 0,
        shifts,
        requests: HashMap::new(),
        request_seq: 0,
        node: Cursor::new(index),
        session_node: 0,
        session_logged_in: false,
        logged_in_before: false,
        wind_down,
        winding_down: false,
    };
    desk.schedule(SHIFT_LOOK, Timer::Shift);
    let mut sessions = 0u32;
    let mut failing_since: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if sessions > 0 || failing_since.is_some() {
            tokio::select! {
                _ = tokio::time::sleep(RELOGIN_PAUSE) => {}
                _ = stop.changed() => return,
            }
        }
        let stopped = match desk.login().await {
            Some(events) => desk.session(events, &mut stop).await,
            None => false,
        };
        if stopped {
            return;
        }
        if desk.session_logged_in {
            failing_since = None;
            sessions += 1;
            if sessions >= MAX_SESSIONS {
                warn!(agent_id = %desk.agent.id, "agent gave up after too many sessions");
                return;
            }
        } else if failing_since.get_or_insert_with(Instant::now).elapsed() > LOGIN_RETRY_BUDGET {
            warn!(agent_id = %desk.agent.id, "agent gave up: no agent-node accepted the login");
            return;
        }
    }
}

impl Desk {
    /// Opens a desktop session; returns its event stream.
    async fn login(&mut self) -> Option<Streaming<AgentEvent>> {
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        let login = AgentCommand {
            request_id: String::new(),
            kind: Some(Command::Login(Login {
                agent_id: self.agent.id.clone(),
                password: login_secret(&self.agent),
                ..Default::default()
            })),
        };
        tx.try_send(login).ok()?;
        self.session_logged_in = false;
        let (node, channel) = self.shared.agent_nodes.channel(&self.node);
        self.session_node = node;
        let opened = tokio::time::timeout(
            CALL_TIMEOUT,
            AgentDeskClient::new(channel).session(ReceiverStream::new(rx)),
        )
        .await;
        match opened {
            Ok(Ok(response)) => {
                self.commands = Some(tx);
                Some(response.into_inner())
            }
            Ok(Err(status)) => {
                if status.code() != tonic::Code::Unavailable {
                    warn!(agent_id = %self.agent.id, node = self.shared.agent_nodes.address(node), code = ?status.code(), message = status.message(), "login refused");
                }
                self.shared.agent_nodes.failed(&self.node, node);
                None
            }
            Err(_) => {
                self.shared.agent_nodes.failed(&self.node, node);
                None
            }
        }
    }

    /// Runs one session; returns true when stopped on purpose.
    async fn session(
        &mut self,
        mut events: Streaming<AgentEvent>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((at, _, _))| *at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => {
                    self.commands = None;
                    return true;
                }
                item = events.message() => match item {
                    Ok(Some(event)) => self.on_event(event).await,
                    Ok(None) => {
                        debug!(agent_id = %self.agent.id, node = self.shared.agent_nodes.address(self.session_node), "desktop stream ended, logging in on the next agent-node");
                        self.shared.agent_nodes.failed(&self.node, self.session_node);
                        self.commands = None;
                        return false;
                    }
                    Err(status) => {
                        debug!(agent_id = %self.agent.id, node = self.shared.agent_nodes.address(self.session_node), code = ?status.code(), "desktop stream failed, logging in on the next agent-node");
                        self.shared.agent_nodes.failed(&self.node, self.session_node);
                        self.commands = None;
                        return false;
                    }
                },
                _ = tokio::time::sleep_until(next_timer) => self.fire_timers().await,
            }
        }
    }

    fn schedule(&mut self, after_simulated: Duration, timer: Timer) {
        self.schedule_at_least(after_simulated, Duration::ZERO, timer);
    }

    fn schedule_at_least(&mut self, after_simulated: Duration, wall_floor: Duration, timer: Timer) {
        self.timer_seq += 1;
        let at = Instant::now() + self.shared.wall(after_simulated).max(wall_floor);
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }

    /// Sends a command with a fresh `request_id`; `request` says what its `ack` or `error`
    /// answers.
    async fn command(&mut self, kind: Command, request: Request) {
        tracing::trace!(agent_id = %self.agent.id, ?kind, "desk command");
        let Some(tx) = self.commands.clone() else {
            return;
        };
        self.request_seq += 1;
        let request_id = format!("{}-{}", self.agent.id, self.request_seq);
        self.requests.insert(request_id.clone(), request);
        let sent = tokio::time::timeout(
            CALL_TIMEOUT,
            tx.send(AgentCommand {
                request_id: request_id.clone(),
                kind: Some(kind),
            }),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            self.requests.remove(&request_id);
            debug!(agent_id = %self.agent.id, "command not sent");
        }
    }

    async fn on_event(&mut self, event: AgentEvent) {
        let me = self.agent.id.clone();
        tracing::trace!(agent_id = %me, ?event, "desk event");
        match event.kind {
            Some(Event::LoggedIn(logged_in)) => {
                self.session_logged_in = true;
                {
                    let mut ledger = self.shared.ledger.lock();
                    ledger.diag.agent_logins += 1;
                    if self.logged_in_before {
                        ledger.diag.agent_relogins += 1;
                        debug!(agent_id = %me, node = self.shared.agent_nodes.address(self.session_node), holding = logged_in.conversation_ids.len(), "logged in again");
                    }
                    self.logged_in_before = true;
                    if logged_in.capacity != 0 && logged_in.capacity != self.agent.capacity {
                        warn!(agent_id = %me, server = logged_in.capacity, configured = self.agent.capacity, "capacity differs from the configuration");
                    }
                    // Reconcile with what the server says we still hold.
                    let held: Vec<String> = self.chats.keys().cloned().collect();
                    for id in held {
                        if !logged_in.conversation_ids.contains(&id) {
                            self.chats.remove(&id);
                            ledger.desk_released(&id, &me, None);
                        }
                    }
                }
                self.offers.clear();
                self.requests.clear();
                for chat in self.chats.values_mut() {
                    chat.canned_pending = false;
                }
                for id in logged_in.conversation_ids {
                    if !self.chats.contains_key(&id) {
                        let chat = self.new_chat(String::new(), String::new(), true, true);
                        self.chats.insert(id.clone(), chat);
                        self.schedule(
                            Duration::from_secs(30),
                            Timer::TryClose {
                                conversation_id: id,
                            },
                        );
                    }
                }
                if self.winding_down {
                    self.set_status(AgentStatus::Away).await;
                }
            }
            Some(Event::Offer(offer)) => self.on_offer(offer),
            Some(Event::OfferRevoked(revoked)) => {
                self.offers.remove(&revoked.reservation_id);
                self.shared.ledger.lock().diag.offers_revoked += 1;
            }
            Some(Event::Assigned(assigned))
                if self.chats.contains_key(&assigned.conversation_id) =>
            {
                // Re-attached after a re-login: the chat goes on where it was; customer
                // messages sent while the desktop was away arrive in the transcript.
                let id = assigned.conversation_id;
                self.offers.retain(|_, o| o.conversation_id != id);
                let mut ledger = self.shared.ledger.lock();
                let missed: Vec<_> = assigned
                    .transcript
                    .iter()
                    .filter(|m| {
                        m.sender == Sender::Customer as i32
                            && !ledger.agent_saw_before(&id, &me, &m.message_id, &m.text)
                    })
                    .collect();
                ledger.desk_reattached(&id, &me);
                for m in &missed {
                    ledger.agent_saw_customer_message(&id, &me, &m.message_id, &m.text);
                }
                drop(ledger);
                let Some(chat) = self.chats.get_mut(&id) else {
                    return;
                };
                chat.owed += missed.len() as u32;
                if chat.owed > 0 && !chat.reply_pending {
                    chat.reply_pending = true;
                    self.schedule(
                        Duration::from_secs(5),
                        Timer::Reply {
                            conversation_id: id,
                        },
                    );
                }
            }
            Some(Event::Assigned(assigned)) => {
                let id = assigned.conversation_id;
                let seen = self
                    .offers
                    .values()
                    .find(|o| o.conversation_id == id)
                    .cloned();
                self.offers.retain(|_, o| o.conversation_id != id);
                let (language, department, transferred) = seen
                    .map(|o| (o.serving_language, o.department, o.transferred))
                    .unwrap_or_default();
                let mut chat = self.new_chat(language, department, false, transferred);
                let mut ledger = self.shared.ledger.lock();
                ledger.desk_assigned(&id, &me);
                for m in &assigned.transcript {
                    if m.sender == Sender::Customer as i32 {
                        ledger.agent_saw_customer_message(&id, &me, &m.message_id, &m.text);
                        chat.owed += 1;
                    }
                }
                if chat.language.is_empty() || chat.department.is_empty() {
                    if let Some(r) = ledger.convs.get(&id) {
                        if chat.language.is_empty() {
                            chat.language = r.language.clone();
                        }
                        if chat.department.is_empty() {
                            chat.department = r.department.clone();
                        }
                    }
                }
                let fresh = self.chats.insert(id.clone(), chat).is_none();
                if fresh && self.chats.len() > self.agent.capacity as usize {
                    ledger.capacity_violations += 1;
                    warn!(agent_id = %me, holding = self.chats.len(), capacity = self.agent.capacity, "agent over capacity");
                }
                drop(ledger);
                let think = Duration::from_secs_f64(self.rng.random_range(3.0..8.0));
                if let Some(chat) = self.chats.get_mut(&id) {
                    chat.reply_pending = true;
                }
                self.schedule(
                    think,
                    Timer::Reply {
                        conversation_id: id.clone(),
                    },
                );
                let handling = self.handling_time();
                self.schedule(
                    handling,
                    Timer::TryClose {
                        conversation_id: id,
                    },
                );
            }
            Some(Event::Message(message)) => {
                let Some(m) = message.message else { return };
                let id = message.conversation_id;
                if m.sender == Sender::System as i32 {
                    // The server's notes to the agent (not customer messages); one says that
                    // a warm transfer to a named agent was not accepted.
                    if m.text.contains("not accepted") {
                        self.transfer_failed(&id, false);
                    }
                    return;
                }
                if m.sender != Sender::Customer as i32 {
                    return;
                }
                self.shared.ledger.lock().agent_saw_customer_message(
                    &id,
                    &me,
                    &m.message_id,
                    &m.text,
                );
                let typing = Duration::from_secs_f64(self.rng.random_range(5.0..20.0));
                let Some(chat) = self.chats.get_mut(&id) else {
                    return;
                };
                chat.owed += 1;
                chat.last_customer_at = Instant::now();
                if !chat.reply_pending {
                    chat.reply_pending = true;
                    self.schedule(
                        typing,
                        Timer::Reply {
                            conversation_id: id,
                        },
                    );
                }
            }
            Some(Event::Ended(ended)) => {
                self.chats.remove(&ended.conversation_id);
                let outcome = ConversationOutcome::try_from(ended.outcome)
                    .unwrap_or(ConversationOutcome::Unspecified);
                self.shared
                    .ledger
                    .lock()
                    .desk_released(&ended.conversation_id, &me, Some(outcome));
            }
            Some(Event::Status(status)) if status.status == AgentStatus::Away as i32 => {
                // Our own "away" (reason "set") needs no break.
                if self.winding_down || status.reason == "set" {
                    return;
                }
                self.shared.ledger.lock().diag.agents_set_away += 1;
                let pause = Duration::from_secs(self.rng.random_range(60..180));
                self.schedule(pause, Timer::BackToWork);
            }
            Some(Event::Status(_)) => {}
            Some(Event::Error(error)) => self.on_error(error).await,
            Some(Event::Ack(ack)) => {
                let conversation_id = match self.requests.remove(&ack.request_id) {
                    Some(Request::Send {
                        conversation_id,
                        message_id,
                    }) => {
                        self.shared
                            .ledger
                            .lock()
                            .agent_message_acked(&conversation_id, &message_id);
                        return;
                    }
                    // `find_canned` is answered by an ack carrying the responses found.
                    Some(Request::Canned { conversation_id }) => conversation_id,
                    _ => return,
                };
                let text = ack.canned.first().map(|c| c.text.clone());
                {
                    let mut ledger = self.shared.ledger.lock();
                    ledger.diag.canned_lookups += 1;
                    if text.is_none() {
                        ledger.diag.canned_empty += 1;
                    }
                }
                let Some(chat) = self.chats.get_mut(&conversation_id) else {
                    return;
                };
                chat.canned_pending = false;
                if chat.close_attempts > 0 {
                    return;
                }
                let text = text.unwrap_or_else(|| answer(&chat.language, chat.sent));
                self.send_text(&conversation_id, text, false).await;
            }
            // The simulated agents do not watch typing indicators.
            Some(Event::CustomerTyping(_)) | None => {}
        }
    }

    fn on_offer(&mut self, offer: centralino_proto::v1::Offer) {
        let me = self.agent.id.clone();
        let now_ms = self.shared.clock.now_ms();
        let waited = Duration::from_millis((now_ms - offer.started_at_unix_ms).max(0) as u64);
        let serving = if offer.serving_language.is_empty() {
            offer.language.clone()
        } else {
            offer.serving_language.clone()
        };
        let transferred = offer.transfer.is_some();
        let off_shift = offered_off_shift(
            &self.shifts,
            &self.agent.team,
            now_ms,
            SERVER_SHIFT_CHECK + self.shared.slack(),
        );
        let mut ledger = self.shared.ledger.lock();
        ledger.diag.offers += 1;
        if serving != offer.language {
            ledger.diag.offers_other_language += 1;
        }
        if off_shift {
            ledger.diag.offers_off_shift += 1;
            ledger.skill_violations += 1;
            warn!(agent_id = %me, team = %self.agent.team, conversation_id = %offer.conversation_id, "offer to an agent whose team is off shift");
        }
        let (strict, lenient) = if transferred {
            ledger.diag.offers_transferred += 1;
            let pending = ledger.pending_transfer(&offer.conversation_id);
            let problems = check_transferred_offer(
                &self.shared.config,
                &self.agent,
                &offer.department,
                &serving,
                pending.as_ref(),
            );
            (problems.clone(), problems)
        } else {
            let check = |sticky| {
                check_offer(
                    &self.shared.config,
                    &self.agent,
                    &offer.department,
                    &serving,
                    waited,
                    self.shared.slack(),
                    sticky,
                )
            };
            (check(false), check(true))
        };
        if !strict.is_empty() {
            debug!(agent_id = %me, conversation_id = %offer.conversation_id, department = %offer.department, language = %offer.language, serving = %serving, transferred, waited_s = waited.as_secs(), ?strict, ?lenient, "offer above the agent's skills unless sticky");
        }
        ledger.offer_checked(
            &offer.conversation_id,
            &me,
            !strict.is_empty(),
            !lenient.is_empty(),
        );
        self.offers.insert(
            offer.reservation_id.clone(),
            OfferSeen {
                conversation_id: offer.conversation_id.clone(),
                serving_language: serving,
                department: offer.department.clone(),
                transferred,
            },
        );
        if offer.auto_accepted {
            return;
        }
        let roll: f64 = self.rng.random();
        let think = Duration::from_secs_f64(self.rng.random_range(2.0..8.0));
        let accept = roll >= DECLINE_SHARE;
        if (DECLINE_SHARE..DECLINE_SHARE + IGNORE_SHARE).contains(&roll) {
            ledger.diag.offers_ignored += 1;
            return;
        }
        if !accept {
            ledger.diag.offers_declined += 1;
        }
        drop(ledger);
        self.schedule(
            think,
            Timer::Answer {
                reservation_id: offer.reservation_id,
                accept,
            },
        );
    }

    async fn on_error(&mut self, error: centralino_proto::v1::CommandError) {
        let me = self.agent.id.clone();
        self.shared.ledger.lock().diag.agent_errors += 1;
        let request = self.requests.remove(&error.request_id);
        // Refusals after a race with the customer (closed meanwhile, offer withdrawn, the
        // named agent full) are expected; anything else deserves attention.
        let expected = matches!(
            error.code.as_str(),
            "PERMISSION_DENIED" | "FAILED_PRECONDITION" | "NOT_FOUND"
        );
        if expected {
            debug!(agent_id = %me, code = %error.code, message = %error.message, ?request, "command refused");
        } else {
            warn!(agent_id = %me, code = %error.code, message = %error.message, ?request, "command refused");
        }
        match request {
            Some(Request::Send {
                conversation_id,
                message_id,
            }) => self
                .shared
                .ledger
                .lock()
                .agent_message_refused(&conversation_id, &message_id),
            Some(Request::Transfer { conversation_id }) => {
                self.transfer_failed(&conversation_id, true);
            }
            Some(Request::Canned { conversation_id }) => {
                if let Some(chat) = self.chats.get_mut(&conversation_id) {
                    chat.canned_pending = false;
                }
            }
            Some(Request::Other { what }) => {
                debug!(agent_id = %me, what, "refused command needs no follow-up");
            }
            None => {
                // Not tied to a command: the recent sends of every held chat are uncertain.
                if !error.message.contains("offer") {
                    let held: Vec<String> = self.chats.keys().cloned().collect();
                    self.shared.ledger.lock().agent_command_refused(&held);
                }
            }
        }
    }

    /// A transfer was refused (`refused`) or, warm to a named agent, not accepted: the chat
    /// stays with this agent, who carries on.
    fn transfer_failed(&mut self, id: &str, refused: bool) {
        let me = self.agent.id.clone();
        let Some(chat) = self.chats.get_mut(id) else {
            return;
        };
        if chat.transferring.is_none() {
            return;
        }
        chat.transferring = None;
        let owed = chat.owed > 0 && !chat.reply_pending;
        if owed {
            chat.reply_pending = true;
        }
        {
            let mut ledger = self.shared.ledger.lock();
            ledger.transfer_cancelled(id, &me);
            if refused {
                ledger.diag.transfers_refused += 1;
            } else {
                ledger.diag.transfers_not_accepted += 1;
            }
        }
        if owed {
            self.schedule(
                Duration::from_secs(5),
                Timer::Reply {
                    conversation_id: id.to_string(),
                },
            );
        }
        self.schedule(
            Duration::from_secs(60),
            Timer::TryClose {
                conversation_id: id.to_string(),
            },
        );
    }

    fn new_chat(
        &mut self,
        language: String,
        department: String,
        greeted: bool,
        transferred: bool,
    ) -> Chat {
        let now = Instant::now();
        let roll: f64 = self.rng.random();
        // A chat that came by a transfer is not transferred again (no ping-pong).
        let plan = if roll < ESCALATE_SHARE {
            Plan::Escalate
        } else if roll < ESCALATE_SHARE + TRANSFER_SHARE && !transferred && !greeted {
            Plan::Transfer
        } else {
            Plan::Serve
        };
        Chat {
            language,
            department,
            plan,
            transferring: None,
            canned_pending: false,
            noted: false,
            greeted,
            owed: 0,
            reply_pending: false,
            sent: 0,
            last_customer_at: now,
            assigned_at: now,
            close_attempts: 0,
        }
    }

    /// Returns a handling time: log-normal around 3.5 simulated minutes, 1 to 12 minutes.
    fn handling_time(&mut self) -> Duration {
        let secs = LogNormal::new(210f64.ln(), 0.45)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(210.0)
            .clamp(60.0, 720.0);
        Duration::from_secs_f64(secs)
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, timer))) = self.timers.pop() else {
                break;
            };
            self.fire(timer).await;
        }
    }

    async fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Answer {
                reservation_id,
                accept,
            } => {
                if !self.offers.contains_key(&reservation_id) {
                    return;
                }
                let kind = if accept {
                    Command::Accept(AcceptOffer { reservation_id })
                } else {
                    self.offers.remove(&reservation_id);
                    Command::Decline(DeclineOffer {
                        reservation_id,
                        reason: "busy with another customer".into(),
                    })
                };
                self.command(kind, Request::Other { what: "offer" }).await;
            }
            Timer::Reply { conversation_id } => self.reply(conversation_id).await,
            Timer::TryClose { conversation_id } => self.try_close(conversation_id).await,
            Timer::Act { conversation_id } => self.act(conversation_id).await,
            Timer::BackToWork => {
                if !self.winding_down {
                    self.set_status(AgentStatus::Available).await;
                }
            }
            Timer::Shift => {
                self.look_at_shift().await;
                self.schedule(SHIFT_LOOK, Timer::Shift);
            }
        }
    }

    async fn set_status(&mut self, status: AgentStatus) {
        self.command(
            Command::SetStatus(SetStatus {
                status: status as i32,
            }),
            Request::Other { what: "status" },
        )
        .await;
    }

    /// Stops taking chats shortly before the team's shift ends (or during a break) (the held ones are finished),
    /// and takes them again when the team works again.
    async fn look_at_shift(&mut self) {
        let now = self.shared.clock.now_ms();
        let later = now.saturating_add(self.wind_down.as_millis() as i64);
        let open = self.shifts.team_open(&self.agent.team, now);
        // Night-team agents who also speak Italian take their break just before the Italian
        // team goes home, so Italian customers still waiting at 22:00 are handed over.
        let minute = super::profile::local_minute(now);
        let on_break = self.agent.skills.contains_key("lang:it")
            && self
                .shifts
                .team_open(&self.agent.team, now + 12 * 3_600_000)
            && (BREAK_FROM..BREAK_UNTIL).contains(&minute);
        let ending = (open && !self.shifts.team_open(&self.agent.team, later)) || on_break;
        if ending && !self.winding_down {
            self.winding_down = true;
            self.shared.ledger.lock().diag.agents_wound_down += 1;
            debug!(agent_id = %self.agent.id, at = %super::profile::local_clock(now), "winding down before the shift end");
            self.set_status(AgentStatus::Away).await;
        } else if open && !ending && self.winding_down {
            self.winding_down = false;
            self.set_status(AgentStatus::Available).await;
        }
    }

    /// Sends one agent message (recorded in the ledger first).
    async fn send_text(&mut self, id: &str, text: String, status_note: bool) {
        let Some(chat) = self.chats.get_mut(id) else {
            return;
        };
        chat.sent += 1;
        let message_id = format!("{id}:a{}", chat.sent);
        self.shared
            .ledger
            .lock()
            .agent_message_sent(id, &message_id);
        self.command(
            Command::Send(AgentSend {
                conversation_id: id.to_string(),
                message_id: message_id.clone(),
                text,
                status_note,
            }),
            Request::Send {
                conversation_id: id.to_string(),
                message_id,
            },
        )
        .await;
    }

    async fn reply(&mut self, id: String) {
        let note = self.rng.random_bool(0.1);
        let canned = self.rng.random_bool(CANNED_SHARE);
        let internal_note = self.rng.random_bool(NOTE_SHARE);
        let typing = Duration::from_secs_f64(self.rng.random_range(4.0..15.0));
        let act_after = Duration::from_secs_f64(self.rng.random_range(10.0..40.0));
        let Some(chat) = self.chats.get_mut(&id) else {
            return;
        };
        let cold_transfer = chat.transferring.is_some_and(|(_, warm)| !warm);
        if chat.close_attempts > 0 || cold_transfer {
            chat.reply_pending = false;
            return;
        }
        if chat.canned_pending {
            // The canned answer is on its way; the next one after it.
            self.schedule(
                Duration::from_secs(3),
                Timer::Reply {
                    conversation_id: id,
                },
            );
            return;
        }
        let mut texts = Vec::new();
        let mut lookup = None;
        let mut add_note = false;
        if !chat.greeted {
            chat.greeted = true;
            texts.push((greeting(&chat.language, &self.agent.name), false));
        } else if chat.owed > 0 {
            chat.owed -= 1;
            if note {
                texts.push((status_note(&chat.language), true));
            }
            match canned_query(&chat.department, &chat.language) {
                Some(query) if canned => {
                    chat.canned_pending = true;
                    lookup = Some(FindCanned {
                        query: query.to_string(),
                        department: chat.department.clone(),
                        language: chat.language.clone(),
                    });
                }
                _ => texts.push((answer(&chat.language, chat.sent), false)),
            }
            if internal_note && !chat.noted {
                chat.noted = true;
                add_note = true;
            }
        }
        let more = chat.owed > 0;
        chat.reply_pending = more;
        // The planned transfer or escalation follows the first answer.
        let act = chat.plan != Plan::Serve && chat.greeted && chat.sent >= 1 && !texts.is_empty();
        let language = chat.language.clone();
        for (text, status_note) in texts {
            self.send_text(&id, text, status_note).await;
        }
        if let Some(find) = lookup {
            self.command(
                Command::FindCanned(find),
                Request::Canned {
                    conversation_id: id.clone(),
                },
            )
            .await;
        }
        if add_note {
            self.shared.ledger.lock().diag.notes_added += 1;
            self.command(
                Command::Note(AddNote {
                    conversation_id: id.clone(),
                    text: internal_note_text(&language).to_string(),
                }),
                Request::Other { what: "note" },
            )
            .await;
        }
        if act {
            self.schedule(
                act_after,
                Timer::Act {
                    conversation_id: id.clone(),
                },
            );
        }
        if more {
            self.schedule(
                typing,
                Timer::Reply {
                    conversation_id: id,
                },
            );
        }
    }

    /// Carries out the chat's planned transfer or escalation (once).
    async fn act(&mut self, id: String) {
        let Some(chat) = self.chats.get_mut(&id) else {
            return;
        };
        if chat.close_attempts > 0 || chat.transferring.is_some() {
            return;
        }
        let plan = std::mem::replace(&mut chat.plan, Plan::Serve);
        match plan {
            Plan::Serve => {}
            Plan::Transfer => self.transfer(id).await,
            Plan::Escalate => self.escalate(id).await,
        }
    }

    async fn transfer(&mut self, id: String) {
        let me = self.agent.id.clone();
        let now_ms = self.shared.clock.now_ms();
        let Some(chat) = self.chats.get(&id) else {
            return;
        };
        let customer_language = self
            .shared
            .ledger
            .lock()
            .convs
            .get(&id)
            .map(|r| r.language.clone())
            .unwrap_or_default();
        let (target, warm) = choose_transfer(
            &self.shared.config,
            &self.shifts,
            &self.agent,
            &chat.department,
            &chat.language,
            &customer_language,
            now_ms,
            &mut self.rng,
        );
        let reason = transfer_reason(&chat.language, &target).to_string();
        if let Some(chat) = self.chats.get_mut(&id) {
            chat.transferring = Some((Instant::now(), warm));
        }
        debug!(agent_id = %me, conversation_id = %id, ?target, warm, "transfer");
        self.shared
            .ledger
            .lock()
            .transfer_requested(&id, &me, target.clone(), warm);
        let target = match target {
            TransferTarget::Agent(a) => transfer::Target::AgentId(a),
            TransferTarget::Department(d) => transfer::Target::Department(d),
            TransferTarget::Language(l) => transfer::Target::Language(l),
            TransferTarget::Skill(k) => transfer::Target::Skill(k),
            TransferTarget::Supervisor => transfer::Target::Supervisor(true),
        };
        self.command(
            Command::Transfer(Transfer {
                conversation_id: id.clone(),
                target: Some(target),
                reason,
                warm,
            }),
            Request::Transfer {
                conversation_id: id.clone(),
            },
        )
        .await;
        // If the transfer is not taken over in time, the agent closes the chat itself.
        self.schedule(
            TRANSFER_WAIT,
            Timer::TryClose {
                conversation_id: id,
            },
        );
    }

    async fn escalate(&mut self, id: String) {
        let Some(chat) = self.chats.get_mut(&id) else {
            return;
        };
        chat.close_attempts += 1;
        let language = chat.language.clone();
        let callback = self.rng.random_bool(0.6);
        let phone = format!(
            "+39 3{:02} {:07}",
            self.rng.random_range(20..100),
            self.rng.random_range(0..10_000_000)
        );
        let customer = self
            .shared
            .ledger
            .lock()
            .convs
            .get(&id)
            .map(|r| r.customer_id.clone())
            .unwrap_or_else(|| "cliente".to_string());
        self.shared.ledger.lock().agent_escalated(&id);
        let escalation = Escalate {
            conversation_id: id.clone(),
            kind: if callback {
                EscalationKind::Callback
            } else {
                EscalationKind::Email
            } as i32,
            phone: if callback { phone } else { String::new() },
            email: if callback {
                String::new()
            } else {
                format!("{customer}@example.com")
            },
            preferred_time: if callback {
                "domani 10-12".to_string()
            } else {
                String::new()
            },
            note: escalation_note(&language).to_string(),
        };
        self.command(
            Command::Escalate(escalation),
            Request::Other { what: "escalate" },
        )
        .await;
        // Close instead if `ended` does not come.
        self.schedule_at_least(
            CLOSE_RETRY,
            CLOSE_RETRY_WALL,
            Timer::TryClose {
                conversation_id: id,
            },
        );
    }

    async fn try_close(&mut self, id: String) {
        let quiet = self.shared.wall(QUIET_BEFORE_CLOSE);
        let transfer_wait = self.shared.wall(TRANSFER_WAIT);
        let Some(chat) = self.chats.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        if let Some((asked, _)) = chat.transferring {
            if now < asked + transfer_wait {
                // The transfer is under way: the next agent (or `ended`) comes first.
                return;
            }
            warn!(agent_id = %self.agent.id, conversation_id = %id, "transfer not taken over in time, closing");
        }
        let overdue = now >= chat.assigned_at + self.shared.wall(MAX_HANDLING);
        let busy = chat.owed > 0
            || chat.reply_pending
            || chat.canned_pending
            || now < chat.last_customer_at + quiet;
        if busy && !overdue && chat.close_attempts == 0 {
            self.schedule(
                Duration::from_secs(20),
                Timer::TryClose {
                    conversation_id: id,
                },
            );
            return;
        }
        if chat.plan != Plan::Serve && chat.close_attempts == 0 && !overdue {
            // The planned transfer or escalation instead of the close.
            self.act(id.clone()).await;
            self.schedule(
                Duration::from_secs(20),
                Timer::TryClose {
                    conversation_id: id,
                },
            );
            return;
        }
        // An agent keeps closing a chat that does not close (the cluster may refuse
        // everything for a while: etcd unavailable); said once.
        if chat.close_attempts == MAX_CLOSE_ATTEMPTS {
            warn!(agent_id = %self.agent.id, conversation_id = %id, "conversation does not close yet: no `ended` after the close requests, trying on");
        }
        chat.close_attempts += 1;
        let summary = summary(&chat.language, chat.sent);
        self.shared.ledger.lock().agent_close_requested(&id);
        self.command(
            Command::Close(AgentClose {
                conversation_id: id.clone(),
                summary,
            }),
            Request::Other { what: "close" },
        )
        .await;
        // Try again later if `ended` does not come (at least a few wall seconds later: store
        // latency does not shrink with the clock speed).
        self.schedule_at_least(
            CLOSE_RETRY,
            CLOSE_RETRY_WALL,
            Timer::TryClose {
                conversation_id: id,
            },
        );
    }
}

/// Chooses where to transfer a chat in `department` served in `serving_language`: mostly
/// to the related department (sales ↔ billing, shipping ↔ support), sometimes to a named
/// colleague on shift with the skills (who may be full: the server then refuses), to a
/// supervisor who can serve it, or back to the customer's own language team when it is
/// open again. Returns the target and whether the transfer is warm.
#[allow(clippy::too_many_arguments)]
fn choose_transfer(
    config: &Config,
    shifts: &Shifts,
    me: &AgentConfig,
    department: &str,
    serving_language: &str,
    customer_language: &str,
    now_ms: i64,
    rng: &mut impl Rng,
) -> (TransferTarget, bool) {
    let dept_skill = config
        .department(department)
        .map(|d| d.skill().to_string())
        .unwrap_or_else(|| department.to_string());
    let lang_skill = format!("lang:{serving_language}");
    let qualified = |a: &&AgentConfig| {
        a.skills.get(&dept_skill).copied().unwrap_or(0) >= 1
            && a.skills.get(&lang_skill).copied().unwrap_or(0) >= 1
            && shifts.team_open(&a.team, now_ms)
    };
    let supervisor = &config.routing.supervisor_skill;
    let roll: f64 = rng.random();
    if roll < 0.3 {
        let colleagues: Vec<&AgentConfig> = config
            .agents
            .iter()
            .filter(|a| a.id != me.id)
            .filter(qualified)
            .collect();
        if !colleagues.is_empty() {
            let to = colleagues[rng.random_range(0..colleagues.len())];
            return (TransferTarget::Agent(to.id.clone()), rng.random_bool(0.4));
        }
    } else if roll < 0.45 {
        let can_serve = config
            .agents
            .iter()
            .filter(|a| a.id != me.id && a.skills.contains_key(supervisor))
            .any(|a| qualified(&a));
        if can_serve && !me.skills.contains_key(supervisor) {
            return (TransferTarget::Supervisor, rng.random_bool(0.2));
        }
    } else if roll < 0.55
        && !customer_language.is_empty()
        && customer_language != serving_language
        && shifts.language_open(customer_language, now_ms)
    {
        return (
            TransferTarget::Language(customer_language.to_string()),
            false,
        );
    }
    (
        TransferTarget::Department(related_department(config, department)),
        rng.random_bool(0.15),
    )
}

/// Returns the department a chat in `department` is usually transferred to.
fn related_department(config: &Config, department: &str) -> String {
    let preferred = match department {
        "sales" => "billing",
        "billing" => "sales",
        "shipping" => "support",
        _ => "shipping",
    };
    if config.department(preferred).is_some() && preferred != department {
        return preferred.to_string();
    }
    config
        .departments
        .iter()
        .map(|d| d.name.clone())
        .find(|d| d != department)
        .unwrap_or_else(|| department.to_string())
}

/// Returns the canned-response shortcut an agent types for an answer, if one fits.
fn canned_query(department: &str, language: &str) -> Option<&'static str> {
    match (language, department) {
        ("it", "shipping") => Some("/sped"),
        ("it", "support") => Some("/reso"),
        ("it", "billing") => Some("/pag"),
        ("en", "shipping") => Some("/ship"),
        ("en", "billing") => Some("/ref"),
        _ => None,
    }
}

fn transfer_reason(language: &str, target: &TransferTarget) -> &'static str {
    match (language == "it", target) {
        (true, TransferTarget::Supervisor) => "Il cliente chiede un responsabile",
        (true, TransferTarget::Language(_)) => "Il cliente preferisce la sua lingua",
        (true, _) => "Richiesta di competenza di un altro reparto",
        (false, TransferTarget::Supervisor) => "Customer asks for a supervisor",
        (false, TransferTarget::Language(_)) => "Customer prefers their own language",
        (false, _) => "Request belongs to another team",
    }
}

fn internal_note_text(language: &str) -> &'static str {
    if language == "it" {
        "Cliente già sollecitato per lo stesso ordine."
    } else {
        "Customer already chased this order before."
    }
}

fn escalation_note(language: &str) -> &'static str {
    if language == "it" {
        "Serve una verifica del magazzino: richiamare il cliente."
    } else {
        "Needs a warehouse check: follow up with the customer."
    }
}

fn greeting(language: &str, name: &str) -> String {
    let first = name.split_whitespace().next().unwrap_or(name);
    if language == "it" {
        format!("Buongiorno, sono {first} di Bottega Digitale. Come posso aiutarla?")
    } else {
        format!("Hello, this is {first} from Bottega Digitale. How can I help?")
    }
}

fn status_note(language: &str) -> String {
    if language == "it" {
        "Sto verificando, un attimo…"
    } else {
        "Checking that for you…"
    }
    .to_string()
}

fn answer(language: &str, n: u32) -> String {
    let it = language == "it";
    match (it, n % 3) {
        (true, 0) => "Certo, la spedizione richiede 2-3 giorni lavorativi.",
        (true, 1) => "Ho controllato: l'ordine è in consegna oggi.",
        (true, _) => "Ho registrato la richiesta, riceverà una e-mail di conferma.",
        (false, 0) => "Sure, shipping takes 2-3 working days.",
        (false, 1) => "I checked: the order is out for delivery today.",
        (false, _) => "I have logged the request; you will get a confirmation e-mail.",
    }
    .to_string()
}

fn summary(language: &str, messages: u32) -> String {
    if language == "it" {
        format!("Cliente assistito, {messages} messaggi; richiesta risolta.")
    } else {
        format!("Customer helped, {messages} messages; request solved.")
    }
}

/// The password a simulated agent types: the configured plaintext `password` (a dev-mode
/// node's, or a client configuration's such as the `sim.toml` of `deploy/local/cluster.sh`), or
/// else the example configuration's documented demo password `<agent id>-pw` (its
/// `password_hash`es are hashes of those).
fn login_secret(agent: &AgentConfig) -> String {
    if agent.password.is_empty() {
        format!("{}-pw", agent.id)
    } else {
        agent.password.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_the_language() {
        assert!(greeting("it", "Giulia Rossi").contains("sono Giulia"));
        assert!(greeting("en", "Emma Clarke").contains("this is Emma"));
        assert_ne!(answer("it", 0), answer("en", 0));
        assert!(summary("en", 4).contains("4 messages"));
    }

    #[test]
    fn timers_pop_in_time_order() {
        let now = Instant::now();
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((
            now + Duration::from_secs(2),
            1,
            Timer::BackToWork,
        )));
        heap.push(Reverse((
            now,
            2,
            Timer::Reply {
                conversation_id: "c".into(),
            },
        )));
        heap.push(Reverse((
            now + Duration::from_secs(1),
            3,
            Timer::TryClose {
                conversation_id: "c".into(),
            },
        )));
        let order: Vec<u64> =
            std::iter::from_fn(|| heap.pop().map(|Reverse((_, seq, _))| seq)).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }

    /// 2026-11-23T09:00:00+01:00 (a Monday).
    const NINE_AM: i64 = 1_795_420_800_000;

    #[test]
    fn transfer_targets_can_serve_the_chat() {
        let config = Config::load(None).unwrap();
        let shifts = Shifts::new(&config.agent_node());
        let agent = |id: &str| config.agents.iter().find(|a| a.id == id).unwrap().clone();
        let marco = agent("marco");
        let noon = NINE_AM + 3 * 3_600_000;
        let mut rng = StdRng::seed_from_u64(3);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (target, _) = choose_transfer(
                &config, &shifts, &marco, "sales", "it", "it", noon, &mut rng,
            );
            match &target {
                TransferTarget::Agent(id) => {
                    let to = agent(id);
                    assert_ne!(to.id, "marco");
                    assert!(to.skills.get("sales").copied().unwrap_or(0) >= 1, "{id}");
                    assert!(to.skills.get("lang:it").copied().unwrap_or(0) >= 1, "{id}");
                    kinds.insert("agent");
                }
                TransferTarget::Department(d) => {
                    assert_eq!(d, "billing");
                    kinds.insert("department");
                }
                TransferTarget::Supervisor => {
                    kinds.insert("supervisor");
                }
                other => panic!("unexpected target {other:?}"),
            }
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        // At 09:30 the Italian team is off shift: no named Italian colleague; an Italian
        // customer served in English goes back to Italian only when that team is open.
        let emma = agent("emma");
        let early = NINE_AM + 1_800_000;
        for _ in 0..300 {
            let (target, _) = choose_transfer(
                &config, &shifts, &emma, "sales", "en", "it", early, &mut rng,
            );
            if let TransferTarget::Agent(id) = &target {
                assert_eq!(agent(id).team, "english", "{id}");
            }
            assert_ne!(target, TransferTarget::Language("it".into()));
        }
        let back = (0..300).any(|_| {
            choose_transfer(&config, &shifts, &emma, "sales", "en", "it", noon, &mut rng).0
                == TransferTarget::Language("it".into())
        });
        assert!(back);
        // Supervisors do not transfer to a supervisor.
        let giulia = agent("giulia");
        assert!((0..300).all(|_| {
            choose_transfer(
                &config, &shifts, &giulia, "sales", "it", "it", noon, &mut rng,
            )
            .0 != TransferTarget::Supervisor
        }));
    }

    #[test]
    fn related_departments_and_canned_shortcuts_exist_in_the_example() {
        let config = Config::load(None).unwrap();
        assert_eq!(related_department(&config, "sales"), "billing");
        assert_eq!(related_department(&config, "shipping"), "support");
        for d in &config.departments {
            assert_ne!(related_department(&config, &d.name), d.name);
            for language in ["it", "en"] {
                if let Some(query) = canned_query(&d.name, language) {
                    assert!(
                        config.canned.iter().any(|c| c.department == d.name
                            && c.language == language
                            && c.shortcut.starts_with(query)),
                        "{query} finds nothing in {} / {language}",
                        d.name
                    );
                }
            }
        }
        assert_eq!(canned_query("sales", "it"), None);
    }
}
