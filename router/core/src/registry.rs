//! `Registry`: the live actors of one kind on this router, by id (conversations by
//! conversation id, queues by department). Generic over the actor, so that it imports
//! neither the conversation nor the queue module.

use std::collections::HashMap;

use actix::prelude::*;
use parking_lot::RwLock;

/// Mailbox capacity of an actor started through a registry.
const MAILBOX: usize = 16;

/// Live actors of type `A` by id.
pub struct Registry<A: Actor<Context = Context<A>>> {
    actors: RwLock<HashMap<String, Addr<A>>>,
}

impl<A: Actor<Context = Context<A>>> Default for Registry<A> {
    fn default() -> Self {
        Self {
            actors: RwLock::new(HashMap::new()),
        }
    }
}

impl<A: Actor<Context = Context<A>>> Registry<A> {
    /// Registers an actor under `id`, then starts it on `arbiter` (or here without one).
    ///
    /// The address exists before the actor runs, so the registry already knows it when the
    /// actor's `started` runs (a queue's offer must find a conversation that just enqueued).
    pub fn spawn(
        &self,
        id: String,
        arbiter: Option<ArbiterHandle>,
        make: impl FnOnce() -> A + Send + 'static,
    ) -> Addr<A> {
        let (tx, rx) = actix::dev::channel::channel::<A>(MAILBOX);
        let addr = Addr::new(tx);
        self.actors.write().insert(id, addr.clone());
        let run = move || {
            Context::with_receiver(rx).run(make());
        };
        match arbiter {
            Some(arbiter) => {
                arbiter.spawn_fn(run);
            }
            None => run(),
        }
        addr
    }

    /// Registers an actor that is already running.
    pub fn insert(&self, id: String, addr: Addr<A>) {
        self.actors.write().insert(id, addr);
    }

    /// Removes the actor of `id` if it is `actor` (another one may have taken its place
    /// meanwhile).
    pub fn forget(&self, id: &str, actor: &Addr<A>) {
        let mut actors = self.actors.write();
        if actors.get(id).is_some_and(|a| a == actor) {
            actors.remove(id);
        }
    }

    /// Removes (and returns) the actor of `id`.
    pub fn remove(&self, id: &str) -> Option<Addr<A>> {
        self.actors.write().remove(id)
    }

    /// Returns the actor of `id`.
    pub fn get(&self, id: &str) -> Option<Addr<A>> {
        self.actors.read().get(id).cloned()
    }

    /// Returns every actor whose id passes `keep`, sorted by id.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Vec<(String, Addr<A>)> {
        let mut out: Vec<_> = self
            .actors
            .read()
            .iter()
            .filter(|(id, _)| keep(id))
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Returns every actor.
    pub fn all(&self) -> Vec<Addr<A>> {
        self.actors.read().values().cloned().collect()
    }

    /// Returns how many actors are registered.
    pub fn len(&self) -> usize {
        self.actors.read().len()
    }

    /// Returns whether no actor is registered.
    pub fn is_empty(&self) -> bool {
        self.actors.read().is_empty()
    }
}
