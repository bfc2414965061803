//! Customers: who arrives ([`Mix`], [`CustomerPlan::draw`]) and how they behave
//! ([`run`]): start a conversation, follow its event stream (dropping and resuming it now
//! and then), wait with a limited patience, exchange a few messages, close or let the agent
//! close, and rate.
//!
//! The customer expects one agent message per customer message plus a greeting; it sends its
//! next message only after the previous one was answered, and closes by itself only when
//! nothing is owed, so that acknowledged messages never race a close on purpose.
//!
//! When nobody can answer the customer takes the alternatives the server offers: after an
//! `offline` notice most leave a message (`LeaveOfflineMessage`); after a `busy` notice some
//! ask for a callback (`RequestCallback`) or leave a message, the others keep waiting; and
//! when their patience runs out some leave a message or ask for a callback instead of just
//! leaving. A cold transfer (`transferred` without `warm`) puts the customer back in a queue
//! with a fresh patience until the next `assigned`; `handed_over` (the language's team
//! closed) is counted.

use std::sync::Arc;
use std::time::Duration;

use centralino_proto::v1::conversation_event::Kind;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    CloseConversationRequest, ConversationEvent, ConversationOutcome, LeaveOfflineMessageRequest,
    RateConversationRequest, RequestCallbackRequest, SendMessageRequest, Sender,
    StartConversationRequest, StreamEventsRequest, VisitorContext,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};
use tracing::{debug, warn};

use super::ledger::CustomerHistory;
use super::net::{is_unavailable, wall_unix_ms, Cursor, CALL_TIMEOUT, RETRY_BUDGET, RETRY_PAUSE};
use super::run::Shared;
use centralino_core::config::Config;
use centralino_core::identity::customer_token;

/// Longest a customer stays (simulated): afterwards they close the conversation themselves.
pub const MAX_LIFETIME: Duration = Duration::from_secs(40 * 60);
/// Lifetime of the identity tokens the simulated shop signs (wall seconds).
const IDENTITY_TOKEN_TTL_SECS: i64 = 3600;
/// How long after a close request the `closed` event may take (simulated), at least
/// [`MIN_CLOSE_WAIT`] of wall time.
const CLOSE_WAIT: Duration = Duration::from_secs(60);
/// Lower bound of the wall-clock wait for the `closed` event.
const MIN_CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Most stream (re)connections of one customer.
const MAX_STREAM_OPENS: u32 = 300;
/// Upper bound of loop turns of one customer (a guard, never reached in practice).
const MAX_TURNS: u32 = 10_000;
/// Customers whose patience ran out who leave a message instead of just leaving ...
const IMPATIENT_MESSAGE_SHARE: f64 = 0.2;
/// ... and who ask for a callback.
const IMPATIENT_CALLBACK_SHARE: f64 = 0.06;
/// Customers told the queue is long who ask for a callback ...
const BUSY_CALLBACK_SHARE: f64 = 0.25;
/// ... and who leave a message (the others keep waiting).
const BUSY_MESSAGE_SHARE: f64 = 0.25;
/// Customers told nobody serves their language now who leave a message (the others leave).
const OFFLINE_MESSAGE_SHARE: f64 = 0.8;
/// Patience after a cold transfer, at least (simulated): the customer was already served.
const PATIENCE_AFTER_TRANSFER: Duration = Duration::from_secs(8 * 60);

/// Who arrives: language and department weights from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Languages with weights (Italian customers dominate).
    pub languages: Vec<(String, f64)>,
    /// Departments with weights.
    pub departments: Vec<(String, f64)>,
    /// The page that the visitor rules send to sales, if there is such a rule.
    pub checkout_page: Option<(String, String)>,
    /// A page that the rules send to another department (e.g. order tracking).
    pub tracking_page: Option<(String, String)>,
}

impl Mix {
    /// Returns the mix for `config`: 78 % Italian, support 35 %, sales and shipping 25 %,
    /// billing 15 % (other names weigh 20 %); checkout visitors when a rule exists.
    pub fn from_config(config: &Config) -> Self {
        let languages = config
            .languages()
            .into_iter()
            .map(|l| {
                let w = match l {
                    "it" => 78.0,
                    "en" => 22.0,
                    _ => 10.0,
                };
                (l.to_string(), w)
            })
            .collect();
        let departments = config
            .departments
            .iter()
            .map(|d| {
                let w = match d.name.as_str() {
                    "support" => 35.0,
                    "sales" | "shipping" => 25.0,
                    "billing" => 15.0,
                    _ => 20.0,
                };
                (d.name.clone(), w)
            })
            .collect();
        let rule_page = |pred: &dyn Fn(&str) -> bool| {
            config.rules.iter().find_map(|r| {
                let dept = r.department.clone()?;
                pred(&r.page_contains).then(|| (r.page_contains.clone(), dept))
            })
        };
        Self {
            languages,
            departments,
            checkout_page: rule_page(&|p| p.contains("checkout")),
            tracking_page: rule_page(&|p| !p.contains("checkout")),
        }
    }
}

impl Mix {
    /// Returns the mix with `language` weighing `weight` (unchanged when not in the mix).
    pub fn with_language_weight(&self, language: &str, weight: f64) -> Self {
        let mut mix = self.clone();
        for (l, w) in &mut mix.languages {
            if l == language {
                *w = weight;
            }
        }
        mix
    }
}

/// Everything decided in advance about one customer's visit.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerPlan {
    /// Stable customer id (reused by returning customers).
    pub customer_id: String,
    /// Name from the pre-chat form.
    pub display_name: String,
    /// Language.
    pub language: String,
    /// Department asked for.
    pub department: String,
    /// Visitor context sent with the start.
    pub visitor: Option<VisitorContext>,
    /// The department the visitor rules should route to, if a rule matches.
    pub rule_department: Option<String>,
    /// Sends a first message with the start request.
    pub first_message: bool,
    /// Sends a "still there?" message after waiting this long (simulated), if not assigned.
    pub nudge_after: Option<Duration>,
    /// Messages sent after the assignment, each after the previous answer.
    pub messages: u32,
    /// How long the customer waits for an agent (simulated).
    pub patience: Duration,
    /// Closes the conversation after the last answer instead of waiting for the agent.
    pub closes_itself: bool,
    /// Gives a good rating.
    pub good_rating: bool,
    /// Drops the event stream after this many events and resumes it.
    pub drop_stream_after: Option<u32>,
    /// Seed of the customer's own random choices (typing times).
    pub seed: u64,
    /// Returning customer.
    pub returning: bool,
}

const IT_NAMES: &[&str] = &[
    "Giovanni",
    "Maria",
    "Francesco",
    "Anna",
    "Alessia",
    "Matteo",
    "Sofia",
    "Lorenzo",
    "Giorgia",
    "Andrea",
    "Martina",
    "Riccardo",
    "Valentina",
    "Stefano",
    "Federica",
];
const EN_NAMES: &[&str] = &[
    "John", "Emily", "Michael", "Hannah", "David", "Grace", "Thomas", "Chloe",
];
const PAGES: &[&str] = &[
    "/prodotti/caffettiera-moka",
    "/prodotti/pasta-artigianale",
    "/offerte",
    "/account/ordini",
];

impl CustomerPlan {
    /// Draws a customer: a new one (`serial` makes the id) or `returning` (same id, name,
    /// language and department as last time).
    pub fn draw(
        rng: &mut impl Rng,
        mix: &Mix,
        serial: u64,
        returning: Option<(String, CustomerHistory)>,
    ) -> Self {
        let (customer_id, display_name, language, department, is_returning) = match returning {
            Some((id, h)) => (id, h.display_name, h.language, h.department, true),
            None => {
                let language = weighted(rng, &mix.languages).unwrap_or_else(|| "it".into());
                let names = if language == "it" { IT_NAMES } else { EN_NAMES };
                let name = names[rng.random_range(0..names.len())].to_string();
                let department = weighted(rng, &mix.departments).unwrap_or_default();
                (
                    format!("cust-{serial:05}"),
                    name,
                    language,
                    department,
                    false,
                )
            }
        };
        let mut rule_department = None;
        let visitor = {
            let roll: f64 = rng.random();
            let page = match (&mix.checkout_page, &mix.tracking_page) {
                (Some((page, dept)), _) if !is_returning && roll < 0.12 => {
                    rule_department = Some(dept.clone());
                    format!("{page}/pagamento")
                }
                (_, Some((page, dept))) if !is_returning && roll > 0.95 => {
                    rule_department = Some(dept.clone());
                    page.clone()
                }
                _ => PAGES[rng.random_range(0..PAGES.len())].to_string(),
            };
            Some(VisitorContext {
                pages_visited: vec![
                    "/".into(),
                    PAGES[rng.random_range(0..PAGES.len())].into(),
                    page.clone(),
                ],
                current_page: page,
                referrer: if rng.random_bool(0.5) {
                    "https://www.google.com/".into()
                } else {
                    String::new()
                },
                time_on_site_seconds: rng.random_range(20..1800),
            })
        };
        // Patience: exponential with mean 4 minutes, between 45 s and 12 minutes.
        let patience: f64 = Exp::new(1.0f64 / 240.0)
            .map(|e| e.sample(rng))
            .unwrap_or(240.0)
            .clamp(45.0, 720.0);
        Self {
            customer_id,
            display_name,
            language,
            department,
            visitor,
            rule_department,
            first_message: rng.random_bool(0.7),
            nudge_after: rng
                .random_bool(0.3)
                .then(|| Duration::from_secs(rng.random_range(40..120))),
            messages: rng.random_range(1..=3),
            patience: Duration::from_secs_f64(patience),
            closes_itself: rng.random_bool(0.3),
            good_rating: rng.random_bool(0.85),
            drop_stream_after: rng.random_bool(0.08).then(|| rng.random_range(1..=4)),
            seed: rng.random(),
            returning: is_returning,
        }
    }
}

/// Returns a name drawn with the given weights.
pub fn weighted(rng: &mut impl Rng, items: &[(String, f64)]) -> Option<String> {
    let total: f64 = items.iter().map(|(_, w)| w.max(0.0)).sum();
    if total <= 0.0 {
        return items.first().map(|(n, _)| n.clone());
    }
    let mut x = rng.random_range(0.0..total);
    for (name, w) in items {
        let w = w.max(0.0);
        if x < w {
            return Some(name.clone());
        }
        x -= w;
    }
    items.last().map(|(n, _)| n.clone())
}

/// What the customer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// A message while still waiting.
    Nudge,
    /// The next message of the chat.
    Send,
    /// Close the conversation.
    Close,
    /// Leave an offline message instead of waiting.
    LeaveMessage,
    /// Ask for a callback instead of waiting.
    Callback,
}

/// A running customer.
struct Customer {
    shared: Arc<Shared>,
    plan: CustomerPlan,
    rng: StdRng,
    /// The router this customer talks to (moves on when it does not answer).
    cursor: Cursor,
    id: String,
    token: String,
    last_event: u64,
    /// Transcript position of the last chat message seen on the stream.
    last_seq: u64,
    events: u32,
    dropped: bool,
    assigned: bool,
    closed: bool,
    close_requested: bool,
    acked: u32,
    sent_after_assign: u32,
    sent_total: u32,
    replies_expected: u32,
    replies_received: u32,
    next: Option<(Instant, Action)>,
    patience_at: Option<Instant>,
    close_deadline: Option<Instant>,
    lifetime_end: Instant,
    give_up: bool,
}

/// Plays one customer's visit from start to rating.
pub async fn run(shared: Arc<Shared>, plan: CustomerPlan) {
    let Some(mut customer) = Customer::start(shared.clone(), plan).await else {
        return;
    };
    customer.follow().await;
    shared.ledger.lock().customer_done(&customer.id);
}

impl Customer {
    async fn start(shared: Arc<Shared>, plan: CustomerPlan) -> Option<Self> {
        let mut rng = StdRng::seed_from_u64(plan.seed);
        let first_text = plan.first_message.then(|| {
            let n: u32 = rng.random_range(0..10_000);
            format!(
                "{} (rif. {}-{n})",
                opening(&plan.language, &plan.department),
                plan.customer_id
            )
        });
        // The simulated shop is logged in: it signs its customers' ids with the shop secret
        // (without one, every customer is an anonymous visitor and nobody is recognised).
        let identity_token = customer_token(
            &shared.config.identity.shop_secret,
            &plan.customer_id,
            IDENTITY_TOKEN_TTL_SECS,
        )
        .unwrap_or_default();
        let request = StartConversationRequest {
            department: plan.department.clone(),
            language: plan.language.clone(),
            customer_id: plan.customer_id.clone(),
            display_name: plan.display_name.clone(),
            visitor: plan.visitor.clone(),
            first_message: first_text.clone().unwrap_or_default(),
            identity_token,
            ..Default::default()
        };
        let started_ms = shared.clock.now_ms();
        // Customers spread over the routers, as behind a load balancer.
        let cursor = Cursor::new(plan.seed as usize);
        let response = shared
            .routers
            .call(&cursor, RETRY_BUDGET, |channel| {
                let request = request.clone();
                async move {
                    ConversationServiceClient::new(channel)
                        .start_conversation(request)
                        .await
                }
            })
            .await;
        let response = match response {
            Ok(r) => r,
            Err(status) => {
                debug!(code = ?status.code(), message = status.message(), "start refused");
                shared.ledger.lock().diag.start_failures += 1;
                return None;
            }
        };
        let department = if response.department.is_empty() {
            plan.department.clone()
        } else {
            response.department.clone()
        };
        {
            let mut ledger = shared.ledger.lock();
            if plan
                .rule_department
                .as_ref()
                .is_some_and(|d| *d != department)
            {
                ledger.diag.checkout_misrouted += 1;
            }
            ledger.started(
                &response.conversation_id,
                &plan.customer_id,
                &plan.display_name,
                &plan.language,
                &department,
                started_ms,
                first_text.clone(),
            );
        }
        let now = Instant::now();
        let next = plan
            .nudge_after
            .map(|after| (now + shared.wall(after), Action::Nudge));
        Some(Self {
            patience_at: Some(now + shared.wall(plan.patience)),
            lifetime_end: now + shared.wall(MAX_LIFETIME),
            acked: u32::from(first_text.is_some()),
            id: response.conversation_id,
            token: response.token,
            shared,
            plan,
            rng,
            cursor,
            last_event: 0,
            last_seq: 0,
            events: 0,
            dropped: false,
            assigned: false,
            closed: false,
            close_requested: false,
            sent_after_assign: 0,
            sent_total: 0,
            replies_expected: 0,
            replies_received: 0,
            next,
            close_deadline: None,
            give_up: false,
        })
    }

    /// Follows the event stream until the conversation is closed (or the customer gives up).
    ///
    /// A stream that breaks (error or end) is resumed from the last event on the next
    /// router, retrying for up to [`RETRY_BUDGET`]; the time until it is open again is
    /// recorded as an outage.
    async fn follow(&mut self) {
        let mut stream: Option<Streaming<ConversationEvent>> = None;
        let mut stream_router = 0usize;
        // Since when the stream is broken: wall instant and Unix ms.
        let mut broken: Option<(Instant, i64)> = None;
        let mut opens = 0u32;
        for _ in 0..MAX_TURNS {
            if self.closed || self.give_up {
                return;
            }
            if stream.is_none() {
                if opens >= MAX_STREAM_OPENS
                    || broken.is_some_and(|(since, _)| since.elapsed() > RETRY_BUDGET)
                {
                    warn!(conversation_id = %self.id, "event stream failed too often, giving up");
                    return;
                }
                opens += 1;
                match self.open_stream().await {
                    Ok((s, router)) => {
                        stream = Some(s);
                        stream_router = router;
                        if let Some((_, from_ms)) = broken.take() {
                            self.shared.routers.record_outage(from_ms, wall_unix_ms());
                        }
                    }
                    Err(status) if status.code() == Code::NotFound => {
                        self.shared.ledger.lock().vanished(&self.id);
                        warn!(conversation_id = %self.id, "conversation not found while open");
                        return;
                    }
                    Err(status) => {
                        debug!(conversation_id = %self.id, code = ?status.code(), "cannot open the event stream");
                        broken.get_or_insert_with(|| (Instant::now(), wall_unix_ms()));
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                }
            }
            let Some(events) = stream.as_mut() else {
                continue;
            };
            let deadline = self.deadline();
            tokio::select! {
                item = events.message() => match item {
                    Ok(Some(event)) => {
                        self.on_event(event).await;
                        if self.dropped {
                            // Deliberately drop the stream and resume from the last event.
                            self.dropped = false;
                            stream = None;
                            self.shared.ledger.lock().diag.stream_resumes += 1;
                        }
                    }
                    Ok(None) => {
                        stream = None;
                        broken = Some((Instant::now(), wall_unix_ms()));
                        self.shared.routers.failed(&self.cursor, stream_router);
                        self.shared.ledger.lock().diag.stream_reconnects += 1;
                    }
                    Err(status) => {
                        stream = None;
                        debug!(conversation_id = %self.id, code = ?status.code(), "event stream failed");
                        if status.code() == Code::NotFound && !self.closed {
                            self.shared.ledger.lock().vanished(&self.id);
                            return;
                        }
                        broken = Some((Instant::now(), wall_unix_ms()));
                        self.shared.routers.failed(&self.cursor, stream_router);
                        self.shared.ledger.lock().diag.stream_reconnects += 1;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => self.on_timer().await,
            }
        }
    }

    /// Opens the event stream after the last event seen; returns it and the router's index.
    async fn open_stream(&self) -> Result<(Streaming<ConversationEvent>, usize), Status> {
        let request = StreamEventsRequest {
            conversation_id: self.id.clone(),
            token: self.token.clone(),
            after_event_id: self.last_event,
        };
        let (router, channel) = self.shared.routers.channel(&self.cursor);
        let opened = tokio::time::timeout(
            CALL_TIMEOUT,
            ConversationServiceClient::new(channel).stream_events(request),
        )
        .await;
        match opened {
            Ok(Ok(response)) => Ok((response.into_inner(), router)),
            Ok(Err(status)) => {
                if is_unavailable(&status) {
                    self.shared.routers.failed(&self.cursor, router);
                }
                Err(status)
            }
            Err(_) => {
                self.shared.routers.failed(&self.cursor, router);
                Err(Status::deadline_exceeded("stream open timed out"))
            }
        }
    }

    /// Returns the earliest pending deadline.
    fn deadline(&self) -> Instant {
        if self.close_requested {
            return self
                .close_deadline
                .unwrap_or(self.lifetime_end + self.close_wait());
        }
        [
            self.next.map(|(at, _)| at),
            if self.assigned {
                None
            } else {
                self.patience_at
            },
            Some(self.lifetime_end),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.lifetime_end)
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.close_deadline.is_some_and(|d| now >= d) {
            // Closed (per the close response) but the event never came.
            self.give_up = true;
            return;
        }
        if !self.close_requested {
            if !self.assigned && self.patience_at.is_some_and(|p| now >= p) {
                let roll: f64 = self.rng.random();
                if roll < IMPATIENT_MESSAGE_SHARE {
                    self.follow_up(Action::LeaveMessage).await;
                } else if roll < IMPATIENT_MESSAGE_SHARE + IMPATIENT_CALLBACK_SHARE {
                    self.follow_up(Action::Callback).await;
                } else {
                    self.close().await;
                }
                return;
            }
            if now >= self.lifetime_end {
                self.close().await;
                return;
            }
        } else if now >= self.lifetime_end + self.close_wait() {
            self.give_up = true;
            return;
        }
        if let Some((at, action)) = self.next {
            if now >= at {
                self.next = None;
                match action {
                    Action::Nudge if !self.assigned && !self.close_requested => {
                        self.send(false).await
                    }
                    Action::Send if !self.close_requested => self.send(true).await,
                    Action::Close if !self.close_requested => self.close().await,
                    Action::LeaveMessage | Action::Callback
                        if !self.assigned && !self.close_requested =>
                    {
                        self.follow_up(action).await
                    }
                    _ => {}
                }
            }
        }
    }

    fn close_wait(&self) -> Duration {
        self.shared.wall(CLOSE_WAIT).max(MIN_CLOSE_WAIT)
    }

    async fn on_event(&mut self, event: ConversationEvent) {
        if event.event_id <= self.last_event {
            self.shared.ledger.lock().diag.duplicate_events += 1;
            warn!(conversation_id = %self.id, event_id = event.event_id, last = self.last_event, "event delivered twice");
            return;
        }
        self.last_event = event.event_id;
        self.events += 1;
        if self.plan.drop_stream_after == Some(self.events) {
            self.dropped = true;
        }
        let at_ms = if event.at_unix_ms > 0 {
            event.at_unix_ms
        } else {
            self.shared.clock.now_ms()
        };
        if let Some(Kind::Message(m)) = &event.kind {
            // Transcript positions grow along the stream, across resumes and failovers.
            if m.seq > 0 && m.seq <= self.last_seq {
                self.shared.ledger.lock().diag.messages_out_of_order += 1;
                warn!(conversation_id = %self.id, seq = m.seq, last = self.last_seq, message_id = %m.message_id, "chat message out of transcript order");
            }
            self.last_seq = self.last_seq.max(m.seq);
        }
        match event.kind {
            Some(Kind::Assigned(a)) => {
                self.shared
                    .ledger
                    .lock()
                    .customer_assigned(&self.id, &a.agent_id, at_ms);
                self.assigned = true;
                self.replies_expected = 1 + self.acked;
                self.replies_received = 0;
                if matches!(self.next, Some((_, Action::Nudge))) {
                    self.next = None;
                }
            }
            Some(Kind::Message(m)) => match Sender::try_from(m.sender) {
                Ok(Sender::Agent) => {
                    self.shared
                        .ledger
                        .lock()
                        .customer_saw_agent_message(&self.id, &m.message_id);
                    if !m.status_note {
                        self.replies_received += 1;
                        self.plan_next();
                    }
                }
                Ok(Sender::System) => self.shared.ledger.lock().diag.system_messages += 1,
                _ => {}
            },
            Some(Kind::Requeued(_)) => {
                self.shared.ledger.lock().customer_requeued(&self.id);
                self.assigned = false;
                self.next = None;
                if !self.close_requested {
                    self.patience_at = Some(Instant::now() + self.shared.wall(self.plan.patience));
                }
            }
            Some(Kind::Closed(c)) => {
                let outcome = ConversationOutcome::try_from(c.outcome)
                    .unwrap_or(ConversationOutcome::Unspecified);
                self.shared
                    .ledger
                    .lock()
                    .customer_closed(&self.id, outcome, at_ms, true);
                self.closed = true;
                if outcome == ConversationOutcome::Completed {
                    self.rate().await;
                }
            }
            Some(Kind::Transferred(t)) => {
                self.shared
                    .ledger
                    .lock()
                    .customer_transferred(&self.id, t.warm);
                if !t.warm && !self.close_requested {
                    // Back in a queue until the next agent takes over.
                    self.assigned = false;
                    self.next = None;
                    let patience = self.plan.patience.max(PATIENCE_AFTER_TRANSFER);
                    self.patience_at = Some(Instant::now() + self.shared.wall(patience));
                }
            }
            Some(Kind::HandedOver(_)) => self.shared.ledger.lock().customer_handed_over(&self.id),
            Some(Kind::Busy(_)) => {
                self.shared.ledger.lock().diag.busy_notices += 1;
                if !self.assigned && !self.close_requested {
                    let roll: f64 = self.rng.random();
                    let action = if roll < BUSY_CALLBACK_SHARE {
                        Some(Action::Callback)
                    } else if roll < BUSY_CALLBACK_SHARE + BUSY_MESSAGE_SHARE {
                        Some(Action::LeaveMessage)
                    } else {
                        None
                    };
                    if let Some(action) = action {
                        let think = Duration::from_secs(self.rng.random_range(5..30));
                        self.next = Some((Instant::now() + self.shared.wall(think), action));
                    }
                }
            }
            Some(Kind::Offline(_)) => {
                self.shared.ledger.lock().diag.offline_notices += 1;
                if !self.assigned && !self.close_requested {
                    let action = if self.rng.random_bool(OFFLINE_MESSAGE_SHARE) {
                        Action::LeaveMessage
                    } else {
                        Action::Close
                    };
                    let think = Duration::from_secs(self.rng.random_range(20..90));
                    self.next = Some((Instant::now() + self.shared.wall(think), action));
                }
            }
            Some(
                Kind::Queued(_) | Kind::Offered(_) | Kind::RatingRequested(_) | Kind::Typing(_),
            )
            | None => {}
        }
    }

    /// Decides what to do after an agent message.
    fn plan_next(&mut self) {
        if !self.assigned || self.close_requested || self.replies_received < self.replies_expected {
            return;
        }
        let now = Instant::now();
        if self.sent_after_assign < self.plan.messages {
            let typing = Duration::from_secs(self.rng.random_range(8..40));
            self.next = Some((now + self.shared.wall(typing), Action::Send));
        } else if self.plan.closes_itself {
            let pause = Duration::from_secs(self.rng.random_range(5..20));
            self.next = Some((now + self.shared.wall(pause), Action::Close));
        }
    }

    async fn send(&mut self, in_chat: bool) {
        self.sent_total += 1;
        let message_id = format!("{}:c{}", self.id, self.sent_total);
        let text = format!(
            "{} [{}]",
            customer_line(&self.plan.language, in_chat, self.sent_total),
            self.sent_total
        );
        let request = SendMessageRequest {
            conversation_id: self.id.clone(),
            token: self.token.clone(),
            message_id: message_id.clone(),
            text,
        };
        let result = self
            .shared
            .routers
            .call(&self.cursor, RETRY_BUDGET, |channel| {
                let request = request.clone();
                async move {
                    ConversationServiceClient::new(channel)
                        .send_message(request)
                        .await
                }
            })
            .await;
        match result {
            Ok(_) => {
                self.shared
                    .ledger
                    .lock()
                    .customer_message_acked(&self.id, &message_id);
                self.acked += 1;
                if in_chat {
                    self.sent_after_assign += 1;
                }
                if self.assigned {
                    self.replies_expected += 1;
                }
            }
            Err(status) => {
                // Usually the agent closed meanwhile; the stream will tell.
                debug!(conversation_id = %self.id, code = ?status.code(), message = status.message(), "message refused");
            }
        }
    }

    async fn close(&mut self) {
        self.close_requested = true;
        self.next = None;
        self.shared.ledger.lock().customer_close_requested(&self.id);
        let request = CloseConversationRequest {
            conversation_id: self.id.clone(),
            token: self.token.clone(),
        };
        let result = self
            .shared
            .routers
            .call(&self.cursor, RETRY_BUDGET, |channel| {
                let request = request.clone();
                async move {
                    ConversationServiceClient::new(channel)
                        .close_conversation(request)
                        .await
                }
            })
            .await;
        match result {
            Ok(response) => {
                let outcome = ConversationOutcome::try_from(response.outcome)
                    .unwrap_or(ConversationOutcome::Unspecified);
                let now_ms = self.shared.clock.now_ms();
                self.shared
                    .ledger
                    .lock()
                    .customer_closed(&self.id, outcome, now_ms, false);
            }
            Err(status) => {
                debug!(conversation_id = %self.id, code = ?status.code(), message = status.message(), "close refused");
            }
        }
        self.close_deadline = Some(Instant::now() + self.close_wait());
    }

    /// Leaves an offline message or asks for a callback instead of waiting; when the server
    /// refuses (an agent took the conversation meanwhile) the chat goes on.
    async fn follow_up(&mut self, action: Action) {
        self.close_requested = true;
        self.next = None;
        self.shared.ledger.lock().customer_close_requested(&self.id);
        let (id, token) = (self.id.clone(), self.token.clone());
        let phone = format!(
            "+39 3{:02} {:07}",
            self.rng.random_range(20..100),
            self.rng.random_range(0..10_000_000)
        );
        let result = if action == Action::Callback {
            let request = RequestCallbackRequest {
                conversation_id: id,
                token,
                phone,
                preferred_time: preferred_time(&self.plan.language).to_string(),
            };
            self.shared
                .routers
                .call(&self.cursor, RETRY_BUDGET, |channel| {
                    let request = request.clone();
                    async move {
                        ConversationServiceClient::new(channel)
                            .request_callback(request)
                            .await
                    }
                })
                .await
                .map(|_| ())
        } else {
            let by_phone = self.rng.random_bool(0.3);
            let request = LeaveOfflineMessageRequest {
                conversation_id: id,
                token,
                name: self.plan.display_name.clone(),
                email: if by_phone {
                    String::new()
                } else {
                    format!("{}@example.com", self.plan.customer_id)
                },
                phone: if by_phone { phone } else { String::new() },
                text: offline_text(&self.plan.language, &self.plan.department).to_string(),
            };
            self.shared
                .routers
                .call(&self.cursor, RETRY_BUDGET, |channel| {
                    let request = request.clone();
                    async move {
                        ConversationServiceClient::new(channel)
                            .leave_offline_message(request)
                            .await
                    }
                })
                .await
                .map(|_| ())
        };
        let now_ms = self.shared.clock.now_ms();
        let mut ledger = self.shared.ledger.lock();
        match result {
            Ok(()) => {
                let outcome = if action == Action::Callback {
                    ledger.diag.callbacks_requested += 1;
                    ConversationOutcome::Escalated
                } else {
                    ledger.diag.offline_messages_left += 1;
                    ConversationOutcome::Offline
                };
                ledger.customer_closed(&self.id, outcome, now_ms, false);
                drop(ledger);
                self.close_deadline = Some(Instant::now() + self.close_wait());
            }
            Err(status) => {
                debug!(conversation_id = %self.id, code = ?status.code(), message = status.message(), "follow-up refused");
                ledger.diag.follow_ups_refused += 1;
                ledger.customer_close_cancelled(&self.id);
                drop(ledger);
                self.close_requested = false;
                // Assigned meanwhile (the stream will tell), or closed: give it a moment.
                if !self.assigned {
                    self.patience_at =
                        Some(Instant::now() + self.shared.wall(Duration::from_secs(60)));
                }
            }
        }
    }

    async fn rate(&mut self) {
        let good = self.plan.good_rating;
        let comment = match (good, self.plan.language.as_str()) {
            (true, "it") => "Gentilissimi, grazie!",
            (false, "it") => "Risposta lenta e poco chiara.",
            (true, _) => "Very helpful, thanks!",
            (false, _) => "Slow and not very clear.",
        };
        let request = RateConversationRequest {
            conversation_id: self.id.clone(),
            token: self.token.clone(),
            good,
            comment: comment.to_string(),
        };
        let result = self
            .shared
            .routers
            .call(&self.cursor, RETRY_BUDGET, |channel| {
                let request = request.clone();
                async move {
                    ConversationServiceClient::new(channel)
                        .rate_conversation(request)
                        .await
                }
            })
            .await;
        match result {
            Ok(_) => self.shared.ledger.lock().rated(&self.id, good),
            Err(status) => {
                debug!(conversation_id = %self.id, code = ?status.code(), message = status.message(), "rating refused")
            }
        }
    }
}

fn opening(language: &str, department: &str) -> &'static str {
    match (language, department) {
        ("it", "sales") => "Buongiorno, vorrei sapere se la moka da 6 tazze è disponibile",
        ("it", "shipping") => "Ciao, il mio ordine non è ancora arrivato",
        ("it", "billing") => "Salve, mi è stato addebitato due volte l'ordine",
        ("it", _) => "Buonasera, ho un problema con il mio account",
        (_, "sales") => "Hi, is the 6-cup moka pot in stock?",
        (_, "shipping") => "Hello, my order has not arrived yet",
        (_, "billing") => "Hi, I was charged twice for my order",
        _ => "Hello, I have a problem with my account",
    }
}

fn preferred_time(language: &str) -> &'static str {
    if language == "it" {
        "domani dopo le 10"
    } else {
        "tomorrow after 10 am"
    }
}

fn offline_text(language: &str, department: &str) -> &'static str {
    match (language == "it", department) {
        (true, "billing") => "Mi è stato addebitato due volte l'ordine, potete ricontattarmi?",
        (true, _) => "Non sono riuscito a parlare con nessuno, potete ricontattarmi?",
        (false, "billing") => "I was charged twice for my order, please get back to me.",
        (false, _) => "I could not reach anyone, please get back to me.",
    }
}

fn customer_line(language: &str, in_chat: bool, n: u32) -> &'static str {
    match (language == "it", in_chat, n % 3) {
        (true, false, _) => "C'è qualcuno?",
        (false, false, _) => "Is anyone there?",
        (true, true, 0) => "Perfetto, e per la consegna quanto ci vuole?",
        (true, true, 1) => "Il numero d'ordine è BD-2026-1142",
        (true, true, _) => "Va bene, grazie mille",
        (false, true, 0) => "Great, and how long does delivery take?",
        (false, true, 1) => "The order number is BD-2026-1142",
        (false, true, _) => "All right, thanks a lot",
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mix_follows_the_configuration_and_mostly_italian() {
        let config = Config::load(None).unwrap();
        let mix = Mix::from_config(&config);
        assert_eq!(mix.departments.len(), config.departments.len());
        assert_eq!(
            mix.checkout_page,
            Some(("/checkout".to_string(), "sales".to_string()))
        );
        let mut rng = StdRng::seed_from_u64(11);
        let plans: Vec<CustomerPlan> = (0..4000)
            .map(|i| CustomerPlan::draw(&mut rng, &mix, i, None))
            .collect();
        let italian = plans.iter().filter(|p| p.language == "it").count() as f64 / 4000.0;
        assert!((0.74..0.82).contains(&italian), "{italian}");
        let support = plans.iter().filter(|p| p.department == "support").count() as f64 / 4000.0;
        assert!((0.31..0.39).contains(&support), "{support}");
        let checkout: Vec<&CustomerPlan> = plans
            .iter()
            .filter(|p| {
                p.visitor
                    .as_ref()
                    .is_some_and(|v| v.current_page.contains("/checkout"))
            })
            .collect();
        assert!((380..580).contains(&checkout.len()), "{}", checkout.len());
        assert!(checkout
            .iter()
            .all(|p| p.rule_department.as_deref() == Some("sales")));
        assert!(plans.iter().all(|p| (1..=3).contains(&p.messages)));
        assert!(plans
            .iter()
            .all(|p| (45.0..=720.0).contains(&p.patience.as_secs_f64())));
        let ids: std::collections::BTreeSet<&str> =
            plans.iter().map(|p| p.customer_id.as_str()).collect();
        assert_eq!(ids.len(), plans.len(), "new customers get fresh ids");
        let good = plans.iter().filter(|p| p.good_rating).count();
        assert!(good > 3000, "mostly good ratings: {good}");
    }

    #[test]
    fn returning_customers_keep_id_language_and_department() {
        let config = Config::load(None).unwrap();
        let mix = Mix::from_config(&config);
        let history = CustomerHistory {
            display_name: "Liam".into(),
            language: "en".into(),
            department: "billing".into(),
            last_completed: Some(("olivia".into(), 5)),
            active: false,
        };
        let plan = CustomerPlan::draw(
            &mut StdRng::seed_from_u64(1),
            &mix,
            9,
            Some(("cust-00001".into(), history)),
        );
        assert_eq!(plan.customer_id, "cust-00001");
        assert_eq!(
            (plan.language.as_str(), plan.department.as_str()),
            ("en", "billing")
        );
        assert!(plan.returning);
        assert_eq!(
            plan.rule_department, None,
            "returning customers skip the rule pages"
        );
    }

    #[test]
    fn weighted_choice_respects_weights() {
        let items = vec![
            ("a".to_string(), 1.0),
            ("b".to_string(), 3.0),
            ("c".to_string(), 0.0),
        ];
        let mut rng = StdRng::seed_from_u64(5);
        let b = (0..10_000)
            .filter(|_| weighted(&mut rng, &items).as_deref() == Some("b"))
            .count();
        assert!((7200..7800).contains(&b), "{b}");
        assert_eq!(weighted(&mut rng, &[]), None);
    }
}
