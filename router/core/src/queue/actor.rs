//! The department queue actor: waiting conversations in order, the agent pool, offers.
//!
//! Decisions ([`routing::decide`], steps, sticky waits, lost offers) read the clock's
//! simulated `now_ms` and take it as a parameter; wall-clock `Instant`s only pace the
//! actor's own effects (rounds of positions, gauges) and time the decision-latency metric.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use centralino_link::{OfferAnswer, ReserveOutcome};
use centralino_proto::v1::QueueSnapshot;
use tracing::debug;

use crate::config::DepartmentConfig;
use crate::dispatch::outbound::reserve_request;
use crate::mail::{QueueEntry, ToConversation, ToQueue};
use crate::metrics as m;
use crate::routing::{self, Action, AgentPool, Decision, QueueKey, StickyDrop, Unmatched};
use crate::shared::{Counters, Shared};

use super::messages::{
    AgentUpdate, Dequeue, Enqueue, GetOrder, GetStats, GetWaiting, Handled, OfferClosed, Shutdown,
};

/// Shortest and longest wall time between two queue ticks (steps, sticky waits, positions).
const MIN_TICK: Duration = Duration::from_millis(10);
const MAX_TICK: Duration = Duration::from_millis(250);
/// Shortest wall time between two rounds of position updates to customers.
const POSITION_INTERVAL: Duration = Duration::from_millis(200);
/// Wall time between two updates of the queue gauges.
const GAUGE_INTERVAL: Duration = Duration::from_millis(500);
/// Handling time assumed before any conversation of the department has ended (seconds).
const DEFAULT_HANDLE_SECS: f64 = 180.0;
/// How long past the offer timeout a queue waits for an offer's end before dropping it.
const LOST_OFFER_MARGIN: Duration = Duration::from_secs(5);
/// Customers at the front of the queue, told their position on every round.
const POSITIONS_TOLD: usize = 200;
/// Most customers behind the front told a changed position in one round (every
/// [`POSITION_INTERVAL`]): bounds a round's work and messages however long the queue.
const POSITIONS_PER_ROUND: usize = 1000;

struct Waiting {
    /// The position and estimated wait the customer was last told in this queue.
    told: Option<(u32, u32)>,
    entry: QueueEntry,
    key: QueueKey,
    offer: Option<(String, Arc<str>)>,
    /// When the open offer was made (Unix ms, simulated).
    offered_at_ms: Option<i64>,
    excluded: Vec<Arc<str>>,
}

impl Waiting {
    /// Returns what a routing decision reads of this conversation.
    fn view(&self) -> routing::Entry<'_> {
        routing::Entry {
            queue_entered_at_ms: self.entry.queue_entered_at_ms,
            serving_language: &self.entry.serving_language,
            extra_skill: self.entry.extra_skill.as_deref(),
            sticky_agent: self.entry.sticky_agent.as_deref(),
            sticky_until_ms: self.entry.sticky_until_ms,
            excluded: &self.excluded,
        }
    }
}

/// The actor behind one department queue.
pub struct DepartmentQueue {
    shared: Arc<Shared>,
    department: DepartmentConfig,
    /// The directory version `department` was read at.
    department_version: u64,
    pool: AgentPool,
    entries: HashMap<String, Waiting>,
    order: BTreeMap<QueueKey, String>,
    next_seq: u64,
    depth: Arc<AtomicUsize>,
    dirty: bool,
    positions_dirty: bool,
    last_positions: Instant,
    /// Where the next round's batch of positions behind the front starts.
    positions_cursor: usize,
    handle_secs: f64,
    oldest_wait_secs: f64,
    last_gauges: Instant,
}

impl DepartmentQueue {
    /// Returns a queue for `department`; `depth` mirrors its length for admission checks.
    pub fn new(shared: Arc<Shared>, department: DepartmentConfig, depth: Arc<AtomicUsize>) -> Self {
        Self {
            pool: AgentPool::new(department.strategy, department.skill()),
            department_version: shared.directory.version(),
            shared,
            department,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            depth,
            dirty: false,
            positions_dirty: false,
            last_positions: Instant::now(),
            positions_cursor: 0,
            handle_secs: DEFAULT_HANDLE_SECS,
            oldest_wait_secs: 0.0,
            last_gauges: Instant::now(),
        }
    }

    fn remove(&mut self, conversation_id: &str) -> Option<Waiting> {
        let waiting = self.entries.remove(conversation_id)?;
        self.order.remove(&waiting.key);
        self.depth.store(self.entries.len(), Ordering::SeqCst);
        self.positions_dirty = true;
        Some(waiting)
    }

    /// Reads the department's settings again when the directory changed: steps, strategy,
    /// auto-accept apply from the next decision on.
    fn refresh_department(&mut self) {
        let version = self.shared.directory.version();
        if version == self.department_version {
            return;
        }
        self.department_version = version;
        let snapshot = self.shared.directory.snapshot();
        if let Some(d) =
            crate::directory::department(&self.shared.config, &snapshot, &self.department.name)
        {
            self.pool.set_strategy(d.strategy);
            self.department = d;
        }
    }

    /// Runs routing decisions for waiting conversations, oldest first within priority, and
    /// applies them: counters and metrics, dropped sticky agents, reservations, overflows.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        self.refresh_department();
        if !self.shared.serving() {
            // Paused beyond the lease: no offers until this router has stepped down.
            return;
        }
        self.dirty = false;
        let now = self.shared.clock.now_ms();
        let mut overflow = Vec::new();
        let mut reservations = Vec::new();
        let mut unmatched = Unmatched::default();
        let ids: Vec<String> = self.order.values().cloned().collect();
        for id in ids {
            let Some(waiting) = self.entries.get_mut(&id) else {
                continue;
            };
            if waiting.offer.is_some() {
                continue;
            }
            let decision_started = Instant::now();
            let Decision {
                sticky_dropped,
                action,
            } = routing::decide(
                &waiting.view(),
                &self.department.steps,
                &self.pool,
                now,
                &mut unmatched,
            );
            if let Some(drop) = sticky_dropped {
                waiting.entry.sticky_agent = None;
                if drop == StickyDrop::TimedOut {
                    Counters::inc(&self.shared.counters.sticky_timeouts);
                }
                Counters::inc(&self.shared.counters.sticky_misses);
                m::sticky(match drop {
                    StickyDrop::TimedOut => "timeout",
                    StickyDrop::Unavailable => "miss",
                });
            }
            let agent = match action {
                Action::Overflow(target) => {
                    overflow.push((id, target));
                    continue;
                }
                Action::WaitForSticky => continue,
                Action::NoFreeAgent => break,
                Action::NoMatch => {
                    m::routing_decision(decision_started.elapsed());
                    continue;
                }
                Action::Offer { agent, .. } => {
                    m::routing_decision(decision_started.elapsed());
                    agent
                }
            };
            let reservation_id = uuid::Uuid::new_v4().simple().to_string();
            waiting.offer = Some((reservation_id.clone(), agent.clone()));
            waiting.offered_at_ms = Some(now);
            // An entry with an open offer leaves the order; it returns with its key if
            // the offer fails.
            self.order.remove(&waiting.key);
            self.pool.begin_reservation(&agent, now);
            reservations.push((id, reservation_id, agent));
        }
        for (id, reservation_id, agent) in reservations {
            self.reserve(id, reservation_id, agent, ctx);
        }
        for (id, target) in overflow {
            self.overflow(&id, &target, now);
        }
    }

    /// Offers `id` to `agent`: tells the conversation first, then reserves the agent.
    fn reserve(
        &mut self,
        id: String,
        reservation_id: String,
        agent: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        if !self.entries.contains_key(&id) {
            self.pool.end_reservation(&agent, false);
            return;
        }
        // The conversation learns of the offer before the agent sees it: the agent's accept
        // (over the agent-node, through any router) reaches the conversation after the
        // offer, also when the conversation runs on another router than this queue.
        let told = self.shared.hand_to_conversation(
            &id,
            ToConversation::Offering {
                reservation_id: reservation_id.clone(),
                agent_id: agent.to_string(),
            },
        );
        ctx.spawn(told.into_actor(self).map(move |told, act, ctx| {
            let current = act.entries.get(&id).is_some_and(|w| {
                w.offer
                    .as_ref()
                    .is_some_and(|(rid, _)| *rid == reservation_id)
            });
            match told {
                Ok(()) if current => act.reserve_agent(id, reservation_id, agent, ctx),
                Ok(()) => {
                    // Dropped while the conversation was told (dequeued, or expired).
                    act.pool.end_reservation(&agent, false);
                    act.shared
                        .tell_conversation(&id, ToConversation::OfferWithdrawn { reservation_id });
                }
                Err(status) => {
                    // Nobody was asked: the agent is not at fault. The entry waits for the
                    // next tick (its conversation may be changing router meanwhile).
                    debug!(%status, conversation_id = %id, "conversation not told of the offer, agent not reserved");
                    act.pool.end_reservation(&agent, false);
                    act.withdraw(&id, reservation_id);
                }
            }
        }));
    }

    /// Reserves `agent` for the offer `reservation_id` of `id`, which the conversation
    /// knows of.
    fn reserve_agent(
        &mut self,
        id: String,
        reservation_id: String,
        agent: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        let Some(waiting) = self.entries.get(&id) else {
            self.pool.end_reservation(&agent, false);
            return;
        };
        let request = reserve_request(
            &waiting.entry,
            &self.department.name,
            self.department.auto_accept,
            &reservation_id,
            &agent,
        );
        let link = self.shared.agents.clone();
        ctx.spawn(
            async move { link.reserve(request).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let outcome = result.unwrap_or_else(|status| {
                        debug!(%status, "reserve failed");
                        ReserveOutcome::Rejected(centralino_link::RejectReason::NotAvailable)
                    });
                    let rejected = outcome != ReserveOutcome::Held;
                    act.pool.end_reservation(&agent, rejected);
                    if !rejected {
                        Counters::inc(&act.shared.counters.offers);
                        return;
                    }
                    m::reservation_rejected(&act.department.name);
                    act.withdraw(&id, reservation_id);
                    act.dispatch(ctx);
                }),
        );
    }

    /// Takes back the offer `reservation_id` of `id` that no agent holds: the entry returns
    /// to its place in the order, and the conversation forgets the offer.
    fn withdraw(&mut self, id: &str, reservation_id: String) {
        let Some(waiting) = self.entries.get_mut(id) else {
            return;
        };
        if waiting
            .offer
            .as_ref()
            .is_some_and(|(rid, _)| *rid == reservation_id)
        {
            waiting.offer = None;
            waiting.offered_at_ms = None;
            self.order.insert(waiting.key, id.to_string());
            self.shared
                .tell_conversation(id, ToConversation::OfferWithdrawn { reservation_id });
        }
    }

    fn overflow(&mut self, id: &str, target: &str, now: i64) {
        if self.shared.department(target).is_none() {
            return;
        }
        if self.remove(id).is_none() {
            return;
        }
        m::overflow(&self.department.name, target);
        // The conversation re-enqueues itself at the target with its original age.
        self.shared.tell_conversation(
            id,
            ToConversation::Moved {
                department: target.to_string(),
                at_ms: now,
            },
        );
    }

    /// Tells waiting customers their position and estimated wait among the conversations of
    /// their serving language: the first [`POSITIONS_TOLD`] on every round, everybody else
    /// whenever their position or wait differs from what they were last told. The work of
    /// a round is bounded: at most [`POSITIONS_PER_ROUND`] of those behind the front are
    /// told (taken in turns from a rotating start, so nobody waits on others' changes); the
    /// rest follow in the next rounds.
    fn tell_positions(&mut self) {
        self.positions_dirty = false;
        self.last_positions = Instant::now();
        let mut per_language: HashMap<&str, u32> = HashMap::new();
        // Per serving language: agents who can serve it, their free slots.
        let mut agents: HashMap<&str, (u32, u32)> = HashMap::new();
        let mut front = Vec::new();
        let mut behind = Vec::new();
        let pool = &self.pool;
        for (rank, id) in self.order.values().enumerate() {
            let Some(waiting) = self.entries.get(id) else {
                continue;
            };
            let language = waiting.entry.serving_language.as_str();
            let position = {
                let p = per_language.entry(language).or_insert(0);
                *p += 1;
                *p
            };
            let (capacity, free) = *agents.entry(language).or_insert_with(|| {
                (
                    pool.serving_capacity(language).max(1),
                    pool.free_slots(language),
                )
            });
            let ewt = routing::estimated_wait_secs(position, free, capacity, self.handle_secs);
            if rank < POSITIONS_TOLD {
                front.push((id.clone(), position, ewt));
            } else if waiting.told != Some((position, ewt)) {
                behind.push((id.as_str(), position, ewt));
            }
        }
        if behind.len() > POSITIONS_PER_ROUND {
            // In turns: this round's batch starts where the last one ended.
            let start = self.positions_cursor % behind.len();
            behind.rotate_left(start);
            behind.truncate(POSITIONS_PER_ROUND);
            self.positions_cursor = start + POSITIONS_PER_ROUND;
            self.positions_dirty = true;
        }
        let behind: Vec<(String, u32, u32)> = behind
            .into_iter()
            .map(|(id, position, ewt)| (id.to_string(), position, ewt))
            .collect();
        for (id, position, ewt) in front.into_iter().chain(behind) {
            if let Some(waiting) = self.entries.get_mut(&id) {
                waiting.told = Some((position, ewt));
            }
            self.shared
                .tell_conversation(&id, self.position(position, ewt));
        }
    }

    fn position(&self, position: u32, estimated_wait_secs: u32) -> ToConversation {
        let routing = &self.shared.config.routing;
        ToConversation::Position {
            position,
            estimated_wait_secs,
            busy: position > routing.busy_queue_length
                || estimated_wait_secs as u64 > routing.busy_wait_secs,
        }
    }

    /// Moves waiting conversations to the team that serves their language now: when the
    /// customer's language team closes, to the first open fallback (keeping their place by
    /// age); with `pull_back`, back to their own team when it opens again.
    fn follow_shifts(&mut self) {
        let now = self.shared.clock.now_ms();
        let shifts = self.shared.shifts.clone();
        let pull_back = self.shared.config.handover.pull_back;
        let mut open: HashMap<String, bool> = HashMap::new();
        let mut is_open = |language: &str| {
            *open
                .entry(language.to_string())
                .or_insert_with(|| shifts.language_open(language, now))
        };
        let mut moves = Vec::new();
        for id in self.order.values() {
            let Some(waiting) = self.entries.get(id) else {
                continue;
            };
            let (customer, current) = (&waiting.entry.language, &waiting.entry.serving_language);
            let want = if current == customer {
                if is_open(customer) {
                    None
                } else {
                    shifts.serving_language(customer, now).map(str::to_string)
                }
            } else if pull_back && !waiting.entry.pinned_language && is_open(customer) {
                Some(customer.clone())
            } else if !is_open(current) {
                shifts.serving_language(customer, now).map(str::to_string)
            } else {
                None
            };
            if let Some(want) = want.filter(|w| w != current) {
                moves.push((id.clone(), want));
            }
        }
        for (id, language) in moves {
            if let Some(waiting) = self.entries.get_mut(&id) {
                let from = std::mem::replace(&mut waiting.entry.serving_language, language.clone());
                waiting.excluded.clear();
                self.positions_dirty = true;
                self.shared
                    .tell_conversation(&id, ToConversation::HandOver { from, to: language });
            }
        }
    }

    /// An offer whose end never reached this queue (its answer was lost with a router
    /// that died) is dropped well after the agent-node's own offer timeout, and the
    /// conversation waits for the next agent; the conversation actor accepts one agent only.
    fn expire_lost_offers(&mut self) {
        let now = self.shared.clock.now_ms();
        // The offer timeout is simulated time, the margin wall time: both in simulated ms.
        let margin_ms = LOST_OFFER_MARGIN.as_secs_f64() * self.shared.clock.speed() * 1000.0;
        let limit_ms = self.shared.config.desk.offer_timeout_secs as i64 * 1000 + margin_ms as i64;
        let mut expired = Vec::new();
        for (id, waiting) in &mut self.entries {
            if waiting.offered_at_ms.is_some_and(|at| now - at > limit_ms) {
                waiting.offer = None;
                waiting.offered_at_ms = None;
                expired.push((waiting.key, id.clone()));
            }
        }
        if !expired.is_empty() {
            debug!(count = expired.len(), department = %self.department.name, "offers without an answer dropped");
            self.positions_dirty = true;
            self.dirty = true;
        }
        for (key, id) in expired {
            if let Some(waiting) = self.entries.get_mut(&id) {
                waiting.told = None;
            }
            self.order.insert(key, id);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.expire_lost_offers();
        if !self.entries.is_empty() {
            self.follow_shifts();
            self.dispatch(ctx);
        }
        if self.positions_dirty && self.last_positions.elapsed() >= POSITION_INTERVAL {
            self.tell_positions();
        }
        if self.last_gauges.elapsed() >= GAUGE_INTERVAL {
            self.last_gauges = Instant::now();
            self.oldest_wait_secs = self.oldest_wait_ms() as f64 / 1000.0;
            let now = self.shared.clock.now_ms();
            let mut per_language: HashMap<&str, (usize, i64)> = self
                .shared
                .config
                .languages()
                .into_iter()
                .map(|l| (l, (0, now)))
                .collect();
            for waiting in self.entries.values() {
                let e = per_language
                    .entry(waiting.entry.language.as_str())
                    .or_insert((0, now));
                e.0 += 1;
                e.1 = e.1.min(waiting.entry.enqueued_at_ms);
            }
            for (language, (depth, oldest)) in per_language {
                m::queue_state(
                    &self.department.name,
                    language,
                    depth,
                    (now - oldest).max(0) as f64 / 1000.0,
                );
            }
        }
    }

    fn oldest_wait_ms(&self) -> i64 {
        let now = self.shared.clock.now_ms();
        self.entries
            .values()
            .map(|w| w.entry.enqueued_at_ms)
            .min()
            .map_or(0, |e| (now - e).max(0))
    }
}

impl Actor for DepartmentQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let tick = self
            .shared
            .clock
            .wall(Duration::from_secs(1))
            .clamp(MIN_TICK, MAX_TICK);
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Shutdown> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) {
        // Gauges of this router go to zero; the next owner reports the queue.
        self.depth.store(0, Ordering::Relaxed);
        for language in self.shared.config.languages() {
            m::queue_state(&self.department.name, language, 0, 0.0);
        }
        ctx.stop();
    }
}

impl Handler<Enqueue> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, Enqueue(mut entry): Enqueue, ctx: &mut Context<Self>) {
        // The place taken at admission becomes this entry's: the depth counts the entry
        // before the place is given back, so the two never undercount together.
        let place = entry.place.take();
        if self.entries.contains_key(&entry.conversation_id) {
            return;
        }
        let key = routing::queue_key(entry.priority, entry.enqueued_at_ms, self.next_seq);
        self.next_seq += 1;
        let id = entry.conversation_id.clone();
        self.order.insert(key, id.clone());
        self.entries.insert(
            id.clone(),
            Waiting {
                entry,
                key,
                offer: None,
                offered_at_ms: None,
                excluded: Vec::new(),
                told: None,
            },
        );
        self.depth.store(self.entries.len(), Ordering::SeqCst);
        drop(place);
        self.positions_dirty = true;
        self.dispatch(ctx);
        // The newcomer learns its place with the next round of positions (at most
        // POSITION_INTERVAL away), counted among the conversations of its serving language.
        if self.last_positions.elapsed() >= POSITION_INTERVAL {
            self.tell_positions();
        }
    }
}

impl Handler<Dequeue> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, Dequeue(id): Dequeue, _ctx: &mut Context<Self>) {
        if let Some(waiting) = self.remove(&id) {
            if let Some((reservation_id, agent)) = waiting.offer {
                let link = self.shared.agents.clone();
                actix::spawn(async move {
                    let _ = link.cancel_reservation(&agent, &reservation_id).await;
                });
            }
        }
    }
}

impl Handler<OfferClosed> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, msg: OfferClosed, ctx: &mut Context<Self>) {
        if msg.answer == OfferAnswer::Accepted {
            // Assigned, whichever offer it was (after a failover the conversation may have
            // accepted an offer of this queue's previous owner): the entry goes, and an
            // offer of ours still open is withdrawn.
            if let Some(waiting) = self.remove(&msg.conversation_id) {
                if let Some((rid, agent)) = waiting.offer {
                    if rid != msg.reservation_id {
                        let link = self.shared.agents.clone();
                        actix::spawn(async move {
                            let _ = link.cancel_reservation(&agent, &rid).await;
                        });
                    }
                }
            }
            return;
        }
        let matches = self.entries.get(&msg.conversation_id).is_some_and(|w| {
            w.offer
                .as_ref()
                .is_some_and(|(rid, _)| *rid == msg.reservation_id)
        });
        if !matches {
            return;
        }

        if let Some(waiting) = self.entries.get_mut(&msg.conversation_id) {
            waiting.offer = None;
            waiting.offered_at_ms = None;
            // Back in line: the customer (told `requeued`) learns the position again.
            waiting.told = None;
            self.order.insert(waiting.key, msg.conversation_id.clone());
            if let Some(agent) = self.pool.agent_id(&msg.agent_id) {
                if !waiting.excluded.contains(&agent) {
                    waiting.excluded.push(agent);
                }
            }
            if waiting.entry.sticky_agent.as_deref() == Some(msg.agent_id.as_str()) {
                // The last agent did not take it: the customer goes to someone else.
                waiting.entry.sticky_agent = None;
                Counters::inc(&self.shared.counters.sticky_misses);
                m::sticky("miss");
            }
        }
        self.positions_dirty = true;
        self.dispatch(ctx);
    }
}

impl Handler<AgentUpdate> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, msg: AgentUpdate, ctx: &mut Context<Self>) {
        self.pool.update(msg.0);
        self.positions_dirty = true;
        if !self.entries.is_empty() {
            self.dirty = true;
            // Coalesce bursts of updates into one dispatch.
            ctx.notify(Flush);
        }
    }
}

/// Internal: run a pending dispatch.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, _msg: Flush, ctx: &mut Context<Self>) {
        if self.dirty {
            self.dispatch(ctx);
        }
    }
}

impl Handler<Handled> for DepartmentQueue {
    type Result = ();

    fn handle(&mut self, msg: Handled, _ctx: &mut Context<Self>) {
        if msg.0.is_finite() && msg.0 > 0.0 {
            self.handle_secs = 0.9 * self.handle_secs + 0.1 * msg.0;
        }
    }
}

impl Handler<GetStats> for DepartmentQueue {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _msg: GetStats, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(QueueSnapshot {
            department: self.department.name.clone(),
            depth: self.entries.len() as u32,
            oldest_wait_seconds: (self.oldest_wait_ms() / 1000) as u32,
            offering: self.entries.values().filter(|w| w.offer.is_some()).count() as u32,
        })
    }
}

impl Handler<GetWaiting> for DepartmentQueue {
    type Result = MessageResult<GetWaiting>;

    fn handle(&mut self, _msg: GetWaiting, _ctx: &mut Context<Self>) -> Self::Result {
        let now = self.shared.clock.now_ms();
        let mut per_language: BTreeMap<&str, (u32, i64)> = BTreeMap::new();
        for waiting in self.entries.values() {
            let e = per_language
                .entry(self.shared.today.language_key(&waiting.entry.language))
                .or_insert((0, now));
            e.0 = e.0.saturating_add(1);
            e.1 = e.1.min(waiting.entry.enqueued_at_ms);
        }
        MessageResult(
            per_language
                .into_iter()
                .map(|(l, (n, oldest))| (l.to_string(), n, ((now - oldest).max(0) / 1000) as u32))
                .collect(),
        )
    }
}

impl Handler<GetOrder> for DepartmentQueue {
    type Result = MessageResult<GetOrder>;

    fn handle(&mut self, _msg: GetOrder, _ctx: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<(&QueueKey, &String)> =
            self.entries.iter().map(|(id, w)| (&w.key, id)).collect();
        all.sort();
        MessageResult(all.into_iter().map(|(_, id)| id.clone()).collect())
    }
}

impl ToQueue {
    /// Delivers the message to a queue actor of this router.
    pub fn deliver(self, queue: &Addr<DepartmentQueue>) {
        match self {
            Self::Enqueue(entry) => queue.do_send(Enqueue(*entry)),
            Self::Dequeue(id) => queue.do_send(Dequeue(id)),
            Self::OfferClosed {
                conversation_id,
                reservation_id,
                agent_id,
                answer,
            } => queue.do_send(OfferClosed {
                conversation_id,
                reservation_id,
                agent_id,
                answer,
            }),
            Self::Handled(secs) => queue.do_send(Handled(secs)),
        }
    }
}
