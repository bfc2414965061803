//! Agents: one task per configured agent on the `AgentDesk/Session` stream.
//!
//! An agent logs in, accepts offers after a short think time (now and then declines one or
//! lets it time out), greets the customer, answers each customer message once, and closes
//! the conversation with a summary after a handling time of a few simulated minutes. When
//! the server sets it away for missed offers it comes back after a short break.
//!
//! Checks from the agent's own events: every offer must fit the agent's skills (department
//! skill and `lang:<language>` at the routing step's minimum proficiency), the agent never
//! holds more assigned-and-not-ended conversations than its capacity, and no other agent
//! holds a conversation it receives (see [`super::ledger`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use centralino_agent_node::config::AgentConfig;
use centralino_proto::v1::agent_command::Kind as Command;
use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::agent_event::Kind as Event;
use centralino_proto::v1::{
    AcceptOffer, AgentClose, AgentCommand, AgentEvent, AgentSend, AgentStatus, DeclineOffer, Login,
    Sender, SetStatus,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tracing::{debug, warn};

use super::ledger::check_offer;
use super::net::{is_unavailable, CALL_TIMEOUT};
use super::Shared;

/// Share of offers declined.
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
/// Close requests per conversation before the agent stops trying.
const MAX_CLOSE_ATTEMPTS: u32 = 3;
/// Most desktop sessions (logins) per agent in one run.
const MAX_SESSIONS: u32 = 50;
/// Commands buffered towards the server.
const COMMAND_BUFFER: usize = 256;

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
}

/// One conversation on the agent's desk.
#[derive(Debug)]
struct Chat {
    language: String,
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
    offers: HashMap<String, (String, String)>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
}

/// Plays one agent until `stop`.
pub async fn run(
    shared: Arc<Shared>,
    agent: AgentConfig,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut desk = Desk {
        shared,
        agent,
        rng: StdRng::seed_from_u64(seed),
        commands: None,
        chats: HashMap::new(),
        offers: HashMap::new(),
        timers: BinaryHeap::new(),
        timer_seq: 0,
    };
    for session in 0..MAX_SESSIONS {
        if *stop.borrow() {
            return;
        }
        if session > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => return,
            }
        }
        let Some(events) = desk.login().await else {
            continue;
        };
        if desk.session(events, &mut stop).await {
            return;
        }
    }
    warn!(agent_id = %desk.agent.id, "agent gave up after too many sessions");
}

impl Desk {
    /// Opens a desktop session; returns its event stream.
    async fn login(&mut self) -> Option<Streaming<AgentEvent>> {
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        let login = AgentCommand {
            request_id: String::new(),
            kind: Some(Command::Login(Login {
                agent_id: self.agent.id.clone(),
                password: self.agent.password.clone(),
            })),
        };
        tx.try_send(login).ok()?;
        let (router, channel) = self.shared.routers.channel();
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
                if is_unavailable(&status) {
                    self.shared.routers.failed(router);
                } else {
                    warn!(agent_id = %self.agent.id, code = ?status.code(), message = status.message(), "login refused");
                }
                None
            }
            Err(_) => {
                self.shared.routers.failed(router);
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
                        debug!(agent_id = %self.agent.id, "desktop stream ended");
                        self.commands = None;
                        return false;
                    }
                    Err(status) => {
                        debug!(agent_id = %self.agent.id, code = ?status.code(), "desktop stream failed");
                        if is_unavailable(&status) {
                            let (router, _) = self.shared.routers.channel();
                            self.shared.routers.failed(router);
                        }
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

    async fn command(&mut self, kind: Command) {
        tracing::trace!(agent_id = %self.agent.id, ?kind, "desk command");
        let Some(tx) = &self.commands else { return };
        let sent = tokio::time::timeout(
            CALL_TIMEOUT,
            tx.send(AgentCommand {
                request_id: String::new(),
                kind: Some(kind),
            }),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            debug!(agent_id = %self.agent.id, "command not sent");
        }
    }

    async fn on_event(&mut self, event: AgentEvent) {
        let me = self.agent.id.clone();
        tracing::trace!(agent_id = %me, ?event, "desk event");
        match event.kind {
            Some(Event::LoggedIn(logged_in)) => {
                let mut ledger = self.shared.ledger.lock();
                ledger.diag.agent_logins += 1;
                if logged_in.capacity != 0 && logged_in.capacity != self.agent.capacity {
                    warn!(agent_id = %me, server = logged_in.capacity, configured = self.agent.capacity, "capacity differs from the configuration");
                }
                // Reconcile with what the server says we still hold.
                let held: Vec<String> = self.chats.keys().cloned().collect();
                for id in held {
                    if !logged_in.conversation_ids.contains(&id) {
                        self.chats.remove(&id);
                        ledger.desk_released(&id, &me, false);
                    }
                }
                drop(ledger);
                self.offers.clear();
                for id in logged_in.conversation_ids {
                    if !self.chats.contains_key(&id) {
                        self.chats
                            .insert(id.clone(), self.new_chat(String::new(), true));
                        self.schedule(
                            Duration::from_secs(30),
                            Timer::TryClose {
                                conversation_id: id,
                            },
                        );
                    }
                }
            }
            Some(Event::Offer(offer)) => {
                let now_ms = self.shared.clock.now_ms();
                let waited =
                    Duration::from_millis((now_ms - offer.started_at_unix_ms).max(0) as u64);
                let check = |sticky| {
                    check_offer(
                        &self.shared.config,
                        &self.agent,
                        &offer.department,
                        &offer.language,
                        waited,
                        self.shared.slack(),
                        sticky,
                    )
                };
                let (strict, lenient) = (check(false), check(true));
                if !strict.is_empty() {
                    debug!(agent_id = %me, conversation_id = %offer.conversation_id, department = %offer.department, language = %offer.language, waited_s = waited.as_secs(), ?strict, ?lenient, "offer above the agent's skills unless sticky");
                }
                let mut ledger = self.shared.ledger.lock();
                ledger.diag.offers += 1;
                ledger.offer_checked(
                    &offer.conversation_id,
                    &me,
                    !strict.is_empty(),
                    !lenient.is_empty(),
                );
                self.offers.insert(
                    offer.reservation_id.clone(),
                    (offer.conversation_id.clone(), offer.language.clone()),
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
            Some(Event::OfferRevoked(revoked)) => {
                self.offers.remove(&revoked.reservation_id);
                self.shared.ledger.lock().diag.offers_revoked += 1;
            }
            Some(Event::Assigned(assigned)) => {
                let id = assigned.conversation_id;
                let language = self
                    .offers
                    .iter()
                    .find(|(_, (cid, _))| *cid == id)
                    .map(|(_, (_, lang))| lang.clone())
                    .unwrap_or_default();
                self.offers.retain(|_, (cid, _)| *cid != id);
                let mut chat = self.new_chat(language, false);
                let mut ledger = self.shared.ledger.lock();
                ledger.desk_assigned(&id, &me);
                for m in &assigned.transcript {
                    if m.sender == Sender::Customer as i32 {
                        ledger.agent_saw_customer_message(&id, &m.message_id, &m.text);
                        chat.owed += 1;
                    }
                }
                if chat.language.is_empty() {
                    chat.language = ledger
                        .convs
                        .get(&id)
                        .map(|r| r.language.clone())
                        .unwrap_or_default();
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
                if m.sender != Sender::Customer as i32 {
                    return;
                }
                let id = message.conversation_id;
                self.shared
                    .ledger
                    .lock()
                    .agent_saw_customer_message(&id, &m.message_id, &m.text);
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
                self.shared
                    .ledger
                    .lock()
                    .desk_released(&ended.conversation_id, &me, true);
            }
            Some(Event::Status(status)) if status.status == AgentStatus::Away as i32 => {
                self.shared.ledger.lock().diag.agents_set_away += 1;
                let pause = Duration::from_secs(self.rng.random_range(60..180));
                self.schedule(pause, Timer::BackToWork);
            }
            Some(Event::Status(_)) => {}
            Some(Event::Error(error)) => {
                let mut ledger = self.shared.ledger.lock();
                ledger.diag.agent_errors += 1;
                if !error.message.contains("offer") {
                    let held: Vec<String> = self.chats.keys().cloned().collect();
                    ledger.agent_command_refused(&held);
                }
                drop(ledger);
                // Refusals after a race with the customer (closed meanwhile, offer withdrawn)
                // are expected; anything else deserves attention.
                if matches!(
                    error.code.as_str(),
                    "PermissionDenied" | "FailedPrecondition" | "NotFound"
                ) {
                    debug!(agent_id = %me, code = %error.code, message = %error.message, "command refused");
                } else {
                    warn!(agent_id = %me, code = %error.code, message = %error.message, "command refused");
                }
            }
            Some(Event::Ack(_) | Event::Canned(_)) | None => {}
        }
    }

    fn new_chat(&self, language: String, greeted: bool) -> Chat {
        let now = Instant::now();
        Chat {
            language,
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
                self.command(kind).await;
            }
            Timer::Reply { conversation_id } => self.reply(conversation_id).await,
            Timer::TryClose { conversation_id } => self.try_close(conversation_id).await,
            Timer::BackToWork => {
                self.command(Command::SetStatus(SetStatus {
                    status: AgentStatus::Available as i32,
                }))
                .await;
            }
        }
    }

    async fn reply(&mut self, id: String) {
        let note = self.rng.random_bool(0.1);
        let typing = Duration::from_secs_f64(self.rng.random_range(4.0..15.0));
        let Some(chat) = self.chats.get_mut(&id) else {
            return;
        };
        if chat.close_attempts > 0 {
            chat.reply_pending = false;
            return;
        }
        let mut texts = Vec::new();
        if !chat.greeted {
            chat.greeted = true;
            texts.push((greeting(&chat.language, &self.agent.name), false));
        } else if chat.owed > 0 {
            chat.owed -= 1;
            if note {
                texts.push((status_note(&chat.language), true));
            }
            texts.push((answer(&chat.language, chat.sent), false));
        }
        let more = chat.owed > 0;
        chat.reply_pending = more;
        let mut sends = Vec::new();
        for (text, status_note) in texts {
            chat.sent += 1;
            sends.push((format!("{id}:a{}", chat.sent), text, status_note));
        }
        for (message_id, text, status_note) in sends {
            self.shared
                .ledger
                .lock()
                .agent_message_sent(&id, &message_id);
            self.command(Command::Send(AgentSend {
                conversation_id: id.clone(),
                message_id,
                text: text.to_string(),
                status_note,
            }))
            .await;
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

    async fn try_close(&mut self, id: String) {
        let quiet = self.shared.wall(QUIET_BEFORE_CLOSE);
        let Some(chat) = self.chats.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let overdue = now >= chat.assigned_at + self.shared.wall(MAX_HANDLING);
        let busy = chat.owed > 0 || chat.reply_pending || now < chat.last_customer_at + quiet;
        if busy && !overdue && chat.close_attempts == 0 {
            self.schedule(
                Duration::from_secs(20),
                Timer::TryClose {
                    conversation_id: id,
                },
            );
            return;
        }
        if chat.close_attempts >= MAX_CLOSE_ATTEMPTS {
            warn!(agent_id = %self.agent.id, conversation_id = %id, "conversation does not close: no `ended` after the close requests");
            return;
        }
        chat.close_attempts += 1;
        let summary = summary(&chat.language, chat.sent);
        self.shared.ledger.lock().agent_close_requested(&id);
        self.command(Command::Close(AgentClose {
            conversation_id: id.clone(),
            summary,
        }))
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
}
