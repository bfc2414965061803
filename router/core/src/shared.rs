//! `Shared`: what the actors of one router share — configuration, clock, store, the link to
//! the agent-nodes, schedules, counters — and the [`Mailroom`] through which queues and
//! conversations reach each other. It knows no actor type: the registries of actors are the
//! [`crate::router::Router`]'s.

use centralino_base::directory::Directory;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use actix::prelude::*;
use centralino_base::clock::SharedClock;
use centralino_base::shifts::Shifts;
use centralino_link::AgentNodeLink;

use crate::config::Config;
use crate::identity::Identity;
use crate::mail::{Mailroom, ToConversation, ToQueue};
pub use crate::places::{Places, Reserved};
use crate::store::archive::Archive;
use crate::store::events::IntegrationLog;
use crate::store::group_commit::GroupCommit;
use crate::store::profiles;
use crate::store::records::ProfileRecord;
use crate::store::{Store, StoreError};
use centralino_proto::v1::TellRequest;
use centralino_record::{ProfileFn, Record};
use futures::future::BoxFuture;
use tonic::Status;

/// Node-wide counters (the admin snapshot; Prometheus has the labelled versions).
#[derive(Debug, Default)]
pub struct Counters {
    /// Conversations started.
    pub started: AtomicU64,
    /// Conversations completed.
    pub completed: AtomicU64,
    /// Conversations abandoned.
    pub abandoned: AtomicU64,
    /// Sticky hits.
    pub sticky_hits: AtomicU64,
    /// Sticky misses.
    pub sticky_misses: AtomicU64,
    /// Sticky waits that ran out.
    pub sticky_timeouts: AtomicU64,
    /// Offers sent (reservations held).
    pub offers: AtomicU64,
    /// Offers accepted.
    pub offers_accepted: AtomicU64,
    /// Offers declined.
    pub offers_declined: AtomicU64,
    /// Offers that timed out.
    pub offers_timed_out: AtomicU64,
    /// Good ratings.
    pub csat_good: AtomicU64,
    /// Bad ratings.
    pub csat_bad: AtomicU64,
    /// Messages relayed.
    pub messages: AtomicU64,
    /// Conversations ended with an offline message.
    pub offline: AtomicU64,
    /// Conversations escalated out of chat.
    pub escalated: AtomicU64,
    /// Transfers.
    pub transfers: AtomicU64,
    /// Language handovers.
    pub handovers: AtomicU64,
    /// Re-contacts within the window.
    pub recontacts: AtomicU64,
    /// Conversations not closed yet (started or restored, minus closed).
    pub open: std::sync::atomic::AtomicI64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Tells a closed conversation to stop lingering now (too many closed conversations wait
/// for a rating; the oldest make room).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndLinger;

/// Closed conversations whose actors still linger (rating window, late resumes), oldest
/// first; at most `max_closed_lingering` of them, the oldest are told to stop beyond that.
#[derive(Default)]
pub struct Lingering {
    actors: parking_lot::Mutex<std::collections::BTreeMap<u64, Recipient<EndLinger>>>,
    next: AtomicU64,
}

impl Lingering {
    /// Adds a closed conversation's actor; tells the oldest to stop while more than `cap`
    /// linger. Returns the ticket to [`remove`](Self::remove) it with when it stops.
    pub fn add(&self, actor: Recipient<EndLinger>, cap: usize) -> u64 {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut evicted = Vec::new();
        {
            let mut actors = self.actors.lock();
            actors.insert(ticket, actor);
            while actors.len() > cap.max(1) {
                match actors.pop_first() {
                    Some((_, oldest)) => evicted.push(oldest),
                    None => break,
                }
            }
        }
        for oldest in evicted {
            crate::metrics::linger_evicted();
            oldest.do_send(EndLinger);
        }
        ticket
    }

    /// Removes the actor of `ticket` (it stopped).
    pub fn remove(&self, ticket: u64) {
        self.actors.lock().remove(&ticket);
    }

    /// Returns how many closed conversations linger.
    pub fn len(&self) -> usize {
        self.actors.lock().len()
    }

    /// Returns whether no closed conversation lingers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a partition lives, as this router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This router.
    Local,
    /// Another router, at this gRPC address.
    Remote(String),
    /// Nobody right now (failover in progress).
    Unknown,
}

/// The cluster as a router needs it: partition owners and a way to reach other routers.
pub trait Placement: Send + Sync + 'static {
    /// Returns the owner of `partition`.
    fn owner(&self, partition: u32) -> Owner;
    /// Sends a queue or conversation message to the router at `addr` (fire and forget).
    fn tell(&self, addr: String, request: TellRequest);
    /// Sends a queue or conversation message to the router at `addr` and resolves once
    /// that router has put it in the mailbox of the actor it is for; fails when it did not.
    fn deliver(&self, addr: String, request: TellRequest)
        -> BoxFuture<'static, Result<(), Status>>;
    /// Whether this router may act as the owner of its partitions right now (its lease is
    /// surely alive). A router that was paused beyond its lease must not push events or
    /// offers until it has stepped down.
    fn serving(&self) -> bool {
        true
    }
}

/// What [`Shared`] is made of.
pub struct SharedParts {
    /// Configuration.
    pub config: Arc<Config>,
    /// Clock.
    pub clock: SharedClock,
    /// Durable store.
    pub store: Arc<dyn Store>,
    /// Batched writes to the store.
    pub commits: GroupCommit,
    /// Transcript archive.
    pub archive: Archive,
    /// The agent-nodes.
    pub agents: Arc<dyn AgentNodeLink>,
    /// Team schedules.
    pub shifts: Arc<Shifts>,
    /// Integration events.
    pub events: Arc<IntegrationLog>,
    /// The system of record: customer profiles, the integration-event outbox (what
    /// outlives a conversation).
    pub record: Arc<dyn Record>,
    /// The live agent directory (agents, teams, canned responses, departments), following
    /// the record.
    pub directory: Directory,
    /// Actor threads.
    pub arbiters: Vec<ArbiterHandle>,
}

/// What the actors of one router share.
pub struct Shared {
    /// Configuration.
    pub config: Arc<Config>,
    /// Clock.
    pub clock: SharedClock,
    /// Durable store (reads).
    pub store: Arc<dyn Store>,
    /// Durable store (writes, batched).
    pub commits: GroupCommit,
    /// Transcript archive.
    pub archive: Archive,
    /// The agent-nodes.
    pub agents: Arc<dyn AgentNodeLink>,
    /// Team schedules and language fallback.
    pub shifts: Arc<Shifts>,
    /// Integration events (in the record's outbox).
    pub events: Arc<IntegrationLog>,
    /// The system of record: customer profiles, the integration-event outbox.
    pub record: Arc<dyn Record>,
    /// The live agent directory, following the record.
    pub directory: Directory,
    /// Counters for snapshots.
    pub counters: Counters,
    /// Today's answered and abandoned conversations per department × language.
    pub today: crate::today::Today,
    /// Identity keys: shop identity tokens and visitor tokens.
    pub identity: Identity,
    /// Closed conversations still lingering.
    pub lingering: Lingering,
    /// Closed conversations found at a partition's adoption, for late resumes.
    pub tombstones: crate::tombstones::Tombstones,
    placement: OnceLock<Arc<dyn Placement>>,
    mail: Weak<dyn Mailroom>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
}

impl Shared {
    /// Returns the shared state; mail goes through `mail` (the router that owns it).
    pub fn new(parts: SharedParts, mail: Weak<dyn Mailroom>) -> Self {
        let identity = Identity::from_config(&parts.config.identity);
        let tombstones =
            crate::tombstones::Tombstones::new(parts.config.limits.max_closed_lingering);
        // The configuration check refuses an unknown time zone before start.
        let today = crate::today::Today::new(
            parts.config.day_timezone().unwrap_or(chrono_tz::Tz::UTC),
            parts.config.routing.service_level_secs,
            parts.config.languages(),
        );
        Self {
            config: parts.config,
            clock: parts.clock,
            store: parts.store,
            commits: parts.commits,
            archive: parts.archive,
            agents: parts.agents,
            shifts: parts.shifts,
            events: parts.events,
            record: parts.record,
            directory: parts.directory,
            counters: Counters::default(),
            today,
            identity,
            lingering: Lingering::default(),
            tombstones,
            placement: OnceLock::new(),
            mail,
            arbiters: parts.arbiters,
            next_arbiter: AtomicUsize::new(0),
        }
    }

    /// Makes this router one of a cluster: partition owners come from `placement`.
    pub fn set_placement(&self, placement: Arc<dyn Placement>) {
        let _ = self.placement.set(placement);
    }

    /// Returns the cluster's placement, if this router is one of a cluster.
    pub fn placement(&self) -> Option<&Arc<dyn Placement>> {
        self.placement.get()
    }

    /// Returns who owns `partition`: always this router outside a cluster.
    pub fn owner(&self, partition: u32) -> Owner {
        match self.placement.get() {
            Some(p) => p.owner(partition),
            None => Owner::Local,
        }
    }

    /// Whether this router may act as an owner now (always outside a cluster).
    pub fn serving(&self) -> bool {
        self.placement.get().is_none_or(|p| p.serving())
    }

    /// Sends `msg` to the queue of `department`, wherever it runs.
    pub fn tell_queue(&self, department: &str, msg: ToQueue) {
        if let Some(mail) = self.mail.upgrade() {
            mail.tell_queue(department, msg);
        }
    }

    /// Sends `msg` to a conversation actor, wherever it runs.
    pub fn tell_conversation(&self, id: &str, msg: ToConversation) {
        if let Some(mail) = self.mail.upgrade() {
            mail.tell_conversation(id, msg);
        }
    }

    /// Hands `msg` to a conversation actor, wherever it runs, and resolves once it is in
    /// the actor's mailbox (see [`Mailroom::hand_to_conversation`]).
    pub fn hand_to_conversation(
        &self,
        id: &str,
        msg: ToConversation,
    ) -> BoxFuture<'static, Result<(), Status>> {
        match self.mail.upgrade() {
            Some(mail) => mail.hand_to_conversation(id, msg),
            None => Box::pin(futures::future::ready(Err(Status::unavailable(
                "router is shutting down",
            )))),
        }
    }

    /// Returns a customer's profile from the record (with its tier), if there is one.
    pub async fn profile(&self, customer_id: &str) -> Result<Option<ProfileRecord>, StoreError> {
        match self
            .record
            .get_profile(customer_id)
            .await
            .map_err(profiles::store_error)?
        {
            Some(p) => Ok(Some(profiles::from_record(&p)?)),
            None => Ok(None),
        }
    }

    /// Returns the department `name` as it is now (the file's, changed or created at run
    /// time through the directory), `None` when there is none.
    pub fn department(&self, name: &str) -> Option<crate::config::DepartmentConfig> {
        crate::directory::department(&self.config, &self.directory.snapshot(), name)
    }

    /// Changes a customer's profile with `change` in one transaction of the record, under
    /// the profile's lock there: concurrent updates from any router all take effect, one
    /// after the other (no lost update), and none of them touches the tier (see
    /// [`Shared::set_tier`]). `change` may run more than once, so it has no effects of its
    /// own. Returns the profile as written.
    pub async fn update_profile(
        &self,
        customer_id: &str,
        change: impl Fn(&mut ProfileRecord) + Send + Sync + 'static,
    ) -> Result<ProfileRecord, StoreError> {
        let id = customer_id.to_string();
        let f: ProfileFn = Arc::new(move |data| {
            let mut profile = profiles::from_data(&id, data).map_err(|e| e.to_string())?;
            change(&mut profile);
            *data = profiles::to_data(&profile)?;
            Ok(())
        });
        let written = self
            .record
            .update_profile(customer_id, f)
            .await
            .map_err(profiles::store_error)?;
        profiles::from_record(&written)
    }

    /// Sets a customer's tier (empty: none) in the record; no later profile update undoes it.
    pub async fn set_tier(
        &self,
        customer_id: &str,
        tier: &str,
    ) -> Result<ProfileRecord, centralino_record::RecordError> {
        let written = self
            .record
            .set_tier(customer_id, profiles::tier_of(tier))
            .await?;
        profiles::from_record(&written)
            .map_err(|e| centralino_record::RecordError::Backend(e.to_string()))
    }

    /// Takes a place among the node's open conversations for a new one, if fewer than
    /// `max_live_conversations` are open (atomically: concurrent starts never exceed it).
    pub fn reserve_open(self: &Arc<Self>) -> Option<Reserved> {
        let max = self.config.limits.max_live_conversations as i64;
        self.counters
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        let me = self.clone();
        Some(Reserved::new(move || {
            me.counters.open.fetch_sub(1, Ordering::SeqCst);
        }))
    }

    /// Returns the next actor thread, round robin.
    pub fn arbiter(&self) -> Option<ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        Some(self.arbiters[i].clone())
    }
}
