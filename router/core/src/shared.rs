//! `Shared`: what the actors of one router share — configuration, clock, store, the link to
//! the agent-nodes, schedules, counters — and the [`Mailroom`] through which queues and
//! conversations reach each other. It knows no actor type: the registries of actors are the
//! [`crate::router::Router`]'s.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use actix::prelude::*;
use centralino_base::clock::SharedClock;
use centralino_base::shifts::Shifts;
use centralino_link::AgentNodeLink;

use crate::config::Config;
use crate::identity::Identity;
use crate::mail::{Mailroom, ToConversation, ToQueue};
use crate::store::archive::Archive;
use crate::store::events::IntegrationLog;
use crate::store::group_commit::GroupCommit;
use crate::store::records::{decode, profile_key, put, ProfileRecord};
use crate::store::{Op, Store, StoreError};
use centralino_proto::v1::TellRequest;

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
    /// Whether this router may act as the owner of its partitions right now (its lease is
    /// surely alive). A router that was paused beyond its lease must not push events or
    /// offers until it has stepped down.
    fn serving(&self) -> bool {
        true
    }
}

/// Lock stripes for profile updates.
const PROFILE_STRIPES: usize = 256;

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
    /// Integration events.
    pub events: Arc<IntegrationLog>,
    /// Counters for snapshots.
    pub counters: Counters,
    /// Identity keys: shop identity tokens and visitor tokens.
    pub identity: Identity,
    placement: OnceLock<Arc<dyn Placement>>,
    mail: Weak<dyn Mailroom>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Serialise read-modify-write of one customer's profile (striped by customer id).
    profiles: Vec<tokio::sync::Mutex<()>>,
}

impl Shared {
    /// Returns the shared state; mail goes through `mail` (the router that owns it).
    pub fn new(parts: SharedParts, mail: Weak<dyn Mailroom>) -> Self {
        let identity = Identity::from_config(&parts.config.identity);
        Self {
            config: parts.config,
            clock: parts.clock,
            store: parts.store,
            commits: parts.commits,
            archive: parts.archive,
            agents: parts.agents,
            shifts: parts.shifts,
            events: parts.events,
            counters: Counters::default(),
            identity,
            placement: OnceLock::new(),
            mail,
            arbiters: parts.arbiters,
            next_arbiter: AtomicUsize::new(0),
            profiles: (0..PROFILE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
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

    /// Holds off other updates of `customer_id`'s profile while the guard lives.
    pub async fn profile_guard(&self, customer_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        customer_id.hash(&mut hasher);
        let stripe = (hasher.finish() % PROFILE_STRIPES as u64) as usize;
        self.profiles[stripe].lock().await
    }

    /// Reads a customer's profile, changes it with `change` and writes it back durably, with
    /// `extra` ops in the same transaction; profile updates never overwrite each other.
    pub async fn update_profile(
        &self,
        customer_id: &str,
        extra: Vec<Op>,
        change: impl FnOnce(&mut ProfileRecord),
    ) -> Result<ProfileRecord, StoreError> {
        let _guard = self.profile_guard(customer_id).await;
        let key = profile_key(customer_id);
        let mut profile: ProfileRecord = match self.store.get(&key).await? {
            Some(bytes) => decode(&key, &bytes)?,
            None => ProfileRecord {
                customer_id: customer_id.to_string(),
                ..ProfileRecord::default()
            },
        };
        change(&mut profile);
        let mut ops = extra;
        ops.push(put(key, &profile));
        self.commits.write(ops).await?;
        Ok(profile)
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
