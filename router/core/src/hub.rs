//! `Hub`: what every part of a router shares — configuration, clock, store, the registry of
//! conversation actors, the department queues and the link to the agent-nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use centralino_base::clock::SharedClock;
use centralino_link::AgentNodeLink;
use parking_lot::RwLock;

use centralino_base::shifts::Shifts;

use crate::archive::Archive;
use crate::config::Config;
use crate::conversation::ConversationActor;
use crate::events::IntegrationLog;
use crate::queue::DepartmentQueue;
use crate::store::group_commit::GroupCommit;
use crate::store::records::{decode, partition_of, profile_key, put, ProfileRecord};
use crate::store::{Op, Store, StoreError};
use crate::wire::{ToConversation, ToQueue};
use centralino_proto::v1::TellRequest;
use tracing::{debug, warn};

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

/// The cluster as the hub needs it: partition owners and a way to reach other routers.
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

/// What a hub is made of.
pub struct HubParts {
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

/// Shared state of a router.
pub struct Hub {
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
    conversations: RwLock<HashMap<String, Addr<ConversationActor>>>,
    queues: RwLock<HashMap<String, Addr<DepartmentQueue>>>,
    depths: RwLock<HashMap<String, Arc<std::sync::atomic::AtomicUsize>>>,
    placement: OnceLock<Arc<dyn Placement>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Serialise read-modify-write of one customer's profile (striped by customer id).
    profiles: Vec<tokio::sync::Mutex<()>>,
}

impl Hub {
    /// Returns a hub; queues are attached with [`Hub::set_queues`].
    pub fn new(parts: HubParts) -> Arc<Self> {
        Arc::new(Self {
            config: parts.config,
            clock: parts.clock,
            store: parts.store,
            commits: parts.commits,
            archive: parts.archive,
            agents: parts.agents,
            shifts: parts.shifts,
            events: parts.events,
            counters: Counters::default(),
            conversations: RwLock::new(HashMap::new()),
            queues: RwLock::new(HashMap::new()),
            depths: RwLock::new(HashMap::new()),
            placement: OnceLock::new(),
            arbiters: parts.arbiters,
            next_arbiter: AtomicUsize::new(0),
            profiles: (0..PROFILE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// Attaches the department queues and their depth gauges.
    pub fn set_queues(
        &self,
        queues: HashMap<String, Addr<DepartmentQueue>>,
        depths: HashMap<String, Arc<std::sync::atomic::AtomicUsize>>,
    ) {
        *self.queues.write() = queues;
        *self.depths.write() = depths;
    }

    /// Adds the queue of a department whose partition this router just claimed.
    pub fn add_queue(
        &self,
        department: &str,
        queue: Addr<DepartmentQueue>,
        depth: Arc<std::sync::atomic::AtomicUsize>,
    ) {
        self.queues.write().insert(department.to_string(), queue);
        self.depths.write().insert(department.to_string(), depth);
    }

    /// Removes (and returns) the queue of a department this router hands over.
    pub fn remove_queue(&self, department: &str) -> Option<Addr<DepartmentQueue>> {
        self.depths.write().remove(department);
        self.queues.write().remove(department)
    }

    /// Returns how many conversations wait in `department`'s queue.
    pub fn queue_depth(&self, department: &str) -> usize {
        self.depths
            .read()
            .get(department)
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    /// Returns the queue of `department` when it runs on this router.
    pub fn queue(&self, department: &str) -> Option<Addr<DepartmentQueue>> {
        self.queues.read().get(department).cloned()
    }

    /// Returns every queue running on this router.
    pub fn queues(&self) -> Vec<(String, Addr<DepartmentQueue>)> {
        let mut out: Vec<_> = self
            .queues
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Makes this router one of a cluster: messages for queues and conversations of other
    /// routers' partitions go through `placement`.
    pub fn set_placement(&self, placement: Arc<dyn Placement>) {
        let _ = self.placement.set(placement);
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
        if let Some(queue) = self.queue(department) {
            msg.deliver(&queue);
            return;
        }
        let Some(placement) = self.placement.get() else {
            warn!(%department, "no queue for department");
            return;
        };
        match placement.owner(partition_of(department)) {
            Owner::Remote(addr) => match serde_json::to_vec(&msg) {
                Ok(payload) => placement.tell(
                    addr,
                    TellRequest {
                        conversation_id: String::new(),
                        department: department.to_string(),
                        payload,
                        forwarded: false,
                    },
                ),
                Err(e) => warn!(error = %e, "cannot encode a queue message"),
            },
            // Between a claim and the queue's start, or without an owner: the queue's next
            // owner asks its conversations to enqueue again.
            Owner::Local | Owner::Unknown => {
                debug!(%department, "queue not reachable now, message dropped")
            }
        }
    }

    /// Sends `msg` to a conversation actor, wherever it runs.
    pub fn tell_conversation(&self, id: &str, msg: ToConversation) {
        if let Some(conversation) = self.conversation(id) {
            msg.deliver(&conversation);
            return;
        }
        let Some(placement) = self.placement.get() else {
            return;
        };
        if let Owner::Remote(addr) = placement.owner(partition_of(id)) {
            match serde_json::to_vec(&msg) {
                Ok(payload) => placement.tell(
                    addr,
                    TellRequest {
                        conversation_id: id.to_string(),
                        department: String::new(),
                        payload,
                        forwarded: false,
                    },
                ),
                Err(e) => warn!(error = %e, "cannot encode a conversation message"),
            }
        }
    }

    /// Returns the live conversations of `partition` on this router.
    pub fn conversations_in(&self, partition: u32) -> Vec<(String, Addr<ConversationActor>)> {
        self.conversations
            .read()
            .iter()
            .filter(|(id, _)| partition_of(id) == partition)
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect()
    }

    /// Returns every live conversation actor of this router.
    pub fn all_conversations(&self) -> Vec<Addr<ConversationActor>> {
        self.conversations.read().values().cloned().collect()
    }

    /// Returns the actor of a live conversation.
    pub fn conversation(&self, id: &str) -> Option<Addr<ConversationActor>> {
        self.conversations.read().get(id).cloned()
    }

    /// Number of live conversations.
    pub fn live_conversations(&self) -> usize {
        self.conversations.read().len()
    }

    /// Registers a conversation's actor, then starts it on one of the actor threads.
    ///
    /// The address exists before the actor runs, so the registry already knows it when the
    /// actor's `started` enqueues it (a queue's offer must find it).
    pub fn spawn_conversation(
        &self,
        id: String,
        make: impl FnOnce() -> ConversationActor + Send + 'static,
    ) -> Addr<ConversationActor> {
        let (tx, rx) = actix::dev::channel::channel::<ConversationActor>(16);
        let addr = Addr::new(tx);
        self.conversations.write().insert(id, addr.clone());
        let run = move || {
            Context::with_receiver(rx).run(make());
        };
        match self.arbiter() {
            Some(arbiter) => {
                arbiter.spawn_fn(run);
            }
            None => run(),
        }
        addr
    }

    /// Removes a conversation from the registry (its actor stopped), unless another actor
    /// has taken its place meanwhile (the partition came back to this router).
    pub fn forget_conversation(&self, id: &str, actor: &Addr<ConversationActor>) {
        let mut conversations = self.conversations.write();
        if conversations.get(id).is_some_and(|a| a == actor) {
            conversations.remove(id);
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
