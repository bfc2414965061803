//! `Router`: one router's live actors — a registry of conversation actors and one of
//! department queues — over the [`Shared`] state, and the [`Mailroom`] that carries mail
//! between them: in process when the other side lives here, through the cluster's
//! [`crate::shared::Placement`] when another router owns its partition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use actix::prelude::*;
use centralino_proto::v1::TellRequest;
use futures::future::{self, BoxFuture};
use parking_lot::RwLock;
use tonic::Status;
use tracing::{debug, warn};

use crate::conversation::ConversationActor;
use crate::mail::{Mailroom, ToConversation, ToQueue};
use crate::queue::DepartmentQueue;
use crate::registry::Registry;
use crate::shared::{Owner, Places, Reserved, Shared, SharedParts};
use crate::store::records::{partition_of, ConversationRecord, MessageRecord, ProfileRecord};

/// One router's actors and the state they share.
pub struct Router {
    /// What the actors share.
    pub shared: Arc<Shared>,
    conversations: Arc<Registry<ConversationActor>>,
    queues: Registry<DepartmentQueue>,
    depths: RwLock<HashMap<String, Arc<AtomicUsize>>>,
    /// Places in each queue taken by starts whose conversation has not joined it yet.
    pending: RwLock<HashMap<String, Arc<AtomicUsize>>>,
}

/// A new or restored conversation to start on a router.
pub struct Revival {
    /// Its record.
    pub record: ConversationRecord,
    /// Its transcript so far.
    pub transcript: Vec<MessageRecord>,
    /// The customer's profile.
    pub profile: ProfileRecord,
    /// Rebuilt from the store (after a restart or a failover), not new.
    pub restored: bool,
    /// Places taken at admission (a new conversation), handed to the actor.
    pub places: Places,
}

impl Router {
    /// Returns a router without queues; they are attached with [`Router::add_queue`].
    pub fn new(parts: SharedParts) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Router>| {
            let mail: Weak<dyn Mailroom> = me.clone();
            Router {
                shared: Arc::new(Shared::new(parts, mail)),
                conversations: Arc::new(Registry::default()),
                queues: Registry::default(),
                depths: RwLock::new(HashMap::new()),
                pending: RwLock::new(HashMap::new()),
            }
        })
    }

    /// Starts the queue of `department` on one of the actor threads.
    pub fn start_queue(&self, department: crate::config::DepartmentConfig) {
        let depth = Arc::new(AtomicUsize::new(0));
        let name = department.name.clone();
        let (shared, d) = (self.shared.clone(), depth.clone());
        let make = move || DepartmentQueue::new(shared, department, d);
        let addr = match self.shared.arbiter() {
            Some(arbiter) => DepartmentQueue::start_in_arbiter(&arbiter, move |_| make()),
            None => make().start(),
        };
        self.add_queue(&name, addr, depth);
    }

    /// Starts the queue of every department that has none here yet: the configuration
    /// file's and those created at run time through the directory (standalone runs them
    /// all). Returns the names started.
    pub fn start_missing_queues(&self) -> Vec<String> {
        let snapshot = self.shared.directory.snapshot();
        let mut started = Vec::new();
        for name in crate::directory::department_names(&self.shared.config, &snapshot) {
            if self.queue(&name).is_some() {
                continue;
            }
            if let Some(d) = crate::directory::department(&self.shared.config, &snapshot, &name) {
                self.start_queue(d);
                started.push(name);
            }
        }
        started
    }

    /// Adds the queue of a department (started here or just claimed in a cluster).
    pub fn add_queue(
        &self,
        department: &str,
        queue: Addr<DepartmentQueue>,
        depth: Arc<AtomicUsize>,
    ) {
        self.queues.insert(department.to_string(), queue);
        self.depths.write().insert(department.to_string(), depth);
    }

    /// Removes (and returns) the queue of a department this router hands over.
    pub fn remove_queue(&self, department: &str) -> Option<Addr<DepartmentQueue>> {
        self.depths.write().remove(department);
        self.queues.remove(department)
    }

    /// Returns how many conversations wait in `department`'s queue, counting the places
    /// taken by starts on their way to it.
    pub fn queue_depth(&self, department: &str) -> usize {
        let waiting = self
            .depths
            .read()
            .get(department)
            .map_or(0, |d| d.load(Ordering::SeqCst));
        let pending = self
            .pending
            .read()
            .get(department)
            .map_or(0, |p| p.load(Ordering::SeqCst));
        waiting + pending
    }

    /// Takes a place in `department`'s queue for a new conversation if the queue (with the
    /// places already taken) is shorter than `max_queue_length`. The check and the taking
    /// are one atomic step, so concurrent starts never overfill the queue; the queue keeps
    /// the place when the conversation joins it (see [`crate::mail::QueueEntry::place`]),
    /// and dropping it unused gives it back. A queue another router runs is not counted
    /// here (its owner checks it); the place is then free.
    pub fn reserve_queue_place(&self, department: &str) -> Option<Reserved> {
        let Some(depth) = self.depths.read().get(department).cloned() else {
            return Some(Reserved::new(|| {}));
        };
        let pending = self
            .pending
            .write()
            .entry(department.to_string())
            .or_default()
            .clone();
        let max = self.shared.config.limits.max_queue_length;
        pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                (depth.load(Ordering::SeqCst) + p < max).then_some(p + 1)
            })
            .ok()?;
        Some(Reserved::new(move || {
            let _ = pending.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| p.checked_sub(1));
        }))
    }

    /// Returns how many conversations are open (closed ones waiting for a rating do not
    /// count), including the places taken by starts under way.
    pub fn open_conversations(&self) -> usize {
        self.shared.counters.open.load(Ordering::SeqCst).max(0) as usize
    }

    /// Returns the queue of `department` when it runs on this router.
    pub fn queue(&self, department: &str) -> Option<Addr<DepartmentQueue>> {
        self.queues.get(department)
    }

    /// Returns every queue running on this router, by department name.
    pub fn queues(&self) -> Vec<(String, Addr<DepartmentQueue>)> {
        self.queues.filtered(|_| true)
    }

    /// Returns the live conversations of `partition` on this router.
    pub fn conversations_in(&self, partition: u32) -> Vec<(String, Addr<ConversationActor>)> {
        self.conversations
            .filtered(|id| partition_of(id) == partition)
    }

    /// Returns every live conversation actor of this router.
    pub fn all_conversations(&self) -> Vec<Addr<ConversationActor>> {
        self.conversations.all()
    }

    /// Returns the actor of a live conversation.
    pub fn conversation(&self, id: &str) -> Option<Addr<ConversationActor>> {
        self.conversations.get(id)
    }

    /// Number of live conversations.
    pub fn live_conversations(&self) -> usize {
        self.conversations.len()
    }

    /// Starts the actor of a new or restored conversation on one of the actor threads.
    pub fn spawn_conversation(&self, revival: Revival) -> Addr<ConversationActor> {
        let shared = self.shared.clone();
        let registry = self.conversations.clone();
        let id = revival.record.id.clone();
        self.conversations
            .spawn(id, self.shared.arbiter(), move || {
                let actor = ConversationActor::new(
                    shared,
                    registry,
                    revival.record,
                    revival.transcript,
                    revival.profile,
                )
                .with_places(revival.places);
                if revival.restored {
                    actor.restored()
                } else {
                    actor
                }
            })
    }
}

impl Mailroom for Router {
    fn tell_queue(&self, department: &str, msg: ToQueue) {
        if let Some(queue) = self.queue(department) {
            msg.deliver(&queue);
            return;
        }
        let Some(placement) = self.shared.placement() else {
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

    fn tell_conversation(&self, id: &str, msg: ToConversation) {
        if let Some(conversation) = self.conversation(id) {
            msg.deliver(&conversation);
            return;
        }
        let Some(placement) = self.shared.placement() else {
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

    fn hand_to_conversation(
        &self,
        id: &str,
        msg: ToConversation,
    ) -> BoxFuture<'static, Result<(), Status>> {
        if let Some(conversation) = self.conversation(id) {
            // In this router's mailbox now: anything sent to the actor later queues behind.
            msg.deliver(&conversation);
            return Box::pin(future::ready(Ok(())));
        }
        let placement = match self.shared.placement() {
            Some(placement) => placement,
            None => {
                return Box::pin(future::ready(Err(Status::not_found(format!(
                    "no live conversation {id:?}"
                )))))
            }
        };
        match placement.owner(partition_of(id)) {
            Owner::Remote(addr) => match serde_json::to_vec(&msg) {
                Ok(payload) => placement.deliver(
                    addr,
                    TellRequest {
                        conversation_id: id.to_string(),
                        department: String::new(),
                        payload,
                        forwarded: false,
                    },
                ),
                Err(e) => Box::pin(future::ready(Err(Status::internal(format!(
                    "cannot encode a conversation message: {e}"
                ))))),
            },
            Owner::Local => Box::pin(future::ready(Err(Status::not_found(format!(
                "no live conversation {id:?}"
            ))))),
            Owner::Unknown => Box::pin(future::ready(Err(Status::unavailable(
                "the conversation's partition is changing owner",
            )))),
        }
    }
}
