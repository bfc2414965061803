//! Cluster membership: every router and agent-node registers a key bound to its lease in the
//! coordination store ([`Kv`]: etcd, or its in-memory twin), keeps the lease alive, and
//! watches everyone else's keys.
//!
//! A process whose last renewal is older than a TTL (etcd unreachable, or the process was
//! paused) acts as owner of nothing ([`Membership::lease_fresh`]) until a renewal gets
//! through; when etcd then says the lease is gone, the lease epoch moves on, the owner of
//! partitions steps down, and the process registers again with a fresh lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::kv::{Kv, KvError};

/// Safety margin of [`Membership::lease_fresh`] against clock drift.
const LEASE_MARGIN: Duration = Duration::from_millis(300);

/// What a member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Hosts conversations and queues.
    Router,
    /// Hosts agents.
    AgentNode,
}

impl Role {
    /// Name in keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Router => "router",
            Self::AgentNode => "agent_node",
        }
    }
}

/// One registered process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node id (unique in the cluster).
    pub id: String,
    /// Router or agent-node.
    pub role: Role,
    /// gRPC address other nodes dial.
    pub addr: String,
    /// Draining: taking no new work, handing over what it has.
    pub draining: bool,
}

/// Everyone registered, by role then id.
pub type Members = BTreeMap<(Role, String), Member>;

/// This process's registration.
pub struct Membership {
    kv: Arc<dyn Kv>,
    prefix: String,
    me: Mutex<Member>,
    ttl_secs: i64,
    lease: AtomicI64,
    /// When the last successful renewal was sent.
    renewed_at: Mutex<Instant>,
    members: watch::Sender<Members>,
    epoch: watch::Sender<u64>,
    stop: watch::Sender<bool>,
}

/// Returns the key of an agent's login claim: it holds the id of the agent-node the agent
/// is logged in on, bound to that node's lease.
pub fn agent_claim_key(prefix: &str, agent_id: &str) -> String {
    format!("{prefix}/agents/{agent_id}")
}

/// Returns the key prefix of members under a cluster prefix.
pub fn members_prefix(prefix: &str) -> String {
    format!("{prefix}/members/")
}

/// Returns the key a member registers under.
pub fn member_key(prefix: &str, role: Role, id: &str) -> String {
    format!("{}{}/{id}", members_prefix(prefix), role.as_str())
}

impl Membership {
    /// Registers `me` with a lease of `ttl_secs`, then keeps it alive and watches the other
    /// members in background tasks (until [`Membership::leave`]).
    pub async fn join(
        kv: Arc<dyn Kv>,
        prefix: &str,
        me: Member,
        ttl_secs: i64,
    ) -> Result<Arc<Self>, KvError> {
        let granted = Instant::now();
        let lease = kv.grant(ttl_secs).await?;
        let value = serde_json::to_vec(&me).map_err(|e| KvError::Other(e.to_string()))?;
        kv.put(&member_key(prefix, me.role, &me.id), value, Some(lease))
            .await?;
        info!(node_id = %me.id, role = me.role.as_str(), lease, "cluster: joined");
        let this = Arc::new(Self {
            kv,
            prefix: prefix.to_string(),
            me: Mutex::new(me),
            ttl_secs,
            lease: AtomicI64::new(lease),
            renewed_at: Mutex::new(granted),
            members: watch::channel(Members::new()).0,
            epoch: watch::channel(0).0,
            stop: watch::channel(false).0,
        });
        this.read_members().await;
        tokio::spawn(keep_alive(this.clone()));
        tokio::spawn(watch_members(this.clone()));
        Ok(this)
    }

    /// Returns this process's member record.
    pub fn me(&self) -> Member {
        self.me.lock().clone()
    }

    /// Returns the current lease (changes after a lost lease).
    pub fn lease(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    /// Returns the lease TTL in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Returns whether the lease is surely still alive: renewed less than a TTL (minus a
    /// margin for clock drift) ago. A process that was paused or cut off longer than that
    /// must not act as an owner until it has stepped down and joined again.
    pub fn lease_fresh(&self) -> bool {
        let ttl = Duration::from_secs(self.ttl_secs.max(1) as u64);
        self.renewed_at.lock().elapsed() + LEASE_MARGIN < ttl
    }

    /// Returns the current lease epoch (see [`Membership::epochs`]).
    pub fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// Returns the coordination store (claims are written there, bound to the lease).
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// Returns the cluster prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Watches the members.
    pub fn members(&self) -> watch::Receiver<Members> {
        self.members.subscribe()
    }

    /// Watches the lease epoch: it moves on each time the lease was lost (whatever this
    /// process held under the old lease is gone).
    pub fn epochs(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Returns the members with `role`, draining ones included.
    pub fn with_role(&self, role: Role) -> Vec<Member> {
        self.members
            .borrow()
            .values()
            .filter(|m| m.role == role)
            .cloned()
            .collect()
    }

    /// Marks this member as draining (others stop giving it work).
    pub async fn set_draining(&self) -> Result<(), KvError> {
        let me = {
            let mut me = self.me.lock();
            me.draining = true;
            me.clone()
        };
        let value = serde_json::to_vec(&me).map_err(|e| KvError::Other(e.to_string()))?;
        self.kv
            .put(
                &member_key(&self.prefix, me.role, &me.id),
                value,
                Some(self.lease()),
            )
            .await?;
        self.read_members().await;
        Ok(())
    }

    /// Leaves the cluster: stops the background tasks and revokes the lease (its keys go
    /// at once instead of after the TTL).
    pub async fn leave(&self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.kv.revoke(self.lease()).await {
            warn!(error = %e, "cluster: cannot revoke the lease; it expires by itself");
        }
    }

    /// Stops the background tasks without revoking the lease, as a crashed process would:
    /// its keys stay until the lease expires.
    pub fn halt(&self) {
        let _ = self.stop.send(true);
    }

    async fn read_members(&self) {
        match self.kv.get_prefix(&members_prefix(&self.prefix)).await {
            Ok((kvs, _)) => {
                let mut members = Members::new();
                for kv in kvs {
                    match serde_json::from_slice::<Member>(&kv.value) {
                        Ok(m) => {
                            members.insert((m.role, m.id.clone()), m);
                        }
                        Err(e) => warn!(key = %kv.key, error = %e, "cluster: unreadable member"),
                    }
                }
                self.members.send_if_modified(|current| {
                    if *current == members {
                        false
                    } else {
                        *current = members;
                        true
                    }
                });
            }
            Err(e) => warn!(error = %e, "cluster: cannot read members"),
        }
    }

    /// Registers again under a new lease after the old one was lost.
    async fn rejoin(&self) -> Result<(), KvError> {
        let granted = Instant::now();
        let lease = self.kv.grant(self.ttl_secs).await?;
        let me = self.me();
        let value = serde_json::to_vec(&me).map_err(|e| KvError::Other(e.to_string()))?;
        self.kv
            .put(
                &member_key(&self.prefix, me.role, &me.id),
                value,
                Some(lease),
            )
            .await?;
        self.lease.store(lease, Ordering::SeqCst);
        *self.renewed_at.lock() = granted;
        info!(node_id = %me.id, lease, "cluster: joined again with a new lease");
        Ok(())
    }
}

/// Renews the lease every third of its TTL. When etcd says the lease is gone (it expired
/// while renewals did not arrive, or was revoked), the lease is lost: the epoch moves on and
/// the process registers again.
async fn keep_alive(this: Arc<Membership>) {
    let period = Duration::from_millis((this.ttl_secs as u64 * 1000 / 3).max(200));
    let ttl = Duration::from_secs(this.ttl_secs as u64);
    let mut stop = this.stop.subscribe();
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let sent = Instant::now();
        // The lease is lost when etcd says it is gone, not when renewals were slow: a
        // renewal that etcd answers with TTL left proves the lease (and every key under it)
        // lived on, however late it came — through a leader election, or after this
        // process was paused or cut off for less than the TTL. Meanwhile `lease_fresh` is
        // false from one TTL after the last renewal sent, so the process acted for nothing.
        // A process paused or cut off longer finds the lease gone at its next renewal.
        let lost = match this.kv.keep_alive(this.lease()).await {
            Ok(left) if left > 0 => {
                if renewed.elapsed() > ttl {
                    info!(
                        lease = this.lease(),
                        late_ms = renewed.elapsed().as_millis() as u64,
                        "cluster: lease renewed late but alive, resuming"
                    );
                }
                renewed = Instant::now();
                *this.renewed_at.lock() = sent;
                false
            }
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "cluster: lease renewal failed");
                false
            }
        };
        if !lost {
            continue;
        }
        warn!(lease = this.lease(), "cluster: lease lost, stepping down");
        this.epoch.send_modify(|e| *e += 1);
        loop {
            match this.rejoin().await {
                Ok(()) => break,
                Err(e) => {
                    warn!(error = %e, "cluster: cannot join again, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
        renewed = Instant::now();
    }
}

/// Re-reads the members on every change under the prefix, and every second anyway.
async fn watch_members(this: Arc<Membership>) {
    let mut changes = this.kv.watch_prefix(&members_prefix(&this.prefix));
    let mut stop = this.stop.subscribe();
    loop {
        tokio::select! {
            Some(()) = changes.recv() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        this.read_members().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryKv;

    const PREFIX: &str = "/test";
    /// Bounds every wait for the background tasks.
    const WAIT: Duration = Duration::from_secs(10);

    fn member(id: &str, role: Role) -> Member {
        Member {
            id: id.into(),
            role,
            addr: format!("{id}:1"),
            draining: false,
        }
    }

    async fn join(kv: &Arc<MemoryKv>, id: &str, role: Role) -> Arc<Membership> {
        Membership::join(kv.clone(), PREFIX, member(id, role), 3)
            .await
            .unwrap()
    }

    /// Waits until `membership` sees members for which `ok` holds.
    async fn until(membership: &Membership, ok: impl FnMut(&Members) -> bool) {
        let mut members = membership.members();
        let seen = tokio::time::timeout(WAIT, members.wait_for(ok)).await;
        assert!(
            matches!(seen, Ok(Ok(_))),
            "members never became as expected"
        );
    }

    fn has(members: &Members, id: &str) -> Option<Member> {
        members.values().find(|m| m.id == id).cloned()
    }

    #[tokio::test]
    async fn members_see_each_other_join_drain_and_leave() {
        let kv = Arc::new(MemoryKv::new());
        let router = join(&kv, "router-a", Role::Router).await;
        let node = join(&kv, "agent-node-1", Role::AgentNode).await;
        until(&router, |m| has(m, "agent-node-1").is_some()).await;
        until(&node, |m| has(m, "router-a").is_some()).await;
        assert_eq!(
            router.with_role(Role::AgentNode),
            vec![member("agent-node-1", Role::AgentNode)]
        );
        assert!(router.lease_fresh());

        node.set_draining().await.unwrap();
        until(&router, |m| {
            has(m, "agent-node-1").is_some_and(|n| n.draining)
        })
        .await;
        node.leave().await;
        until(&router, |m| has(m, "agent-node-1").is_none()).await;
        assert!(kv
            .get(&member_key(PREFIX, Role::AgentNode, "agent-node-1"))
            .await
            .unwrap()
            .is_none());
        router.leave().await;
    }

    #[tokio::test]
    async fn a_lost_lease_moves_the_epoch_and_the_member_joins_again() {
        let kv = Arc::new(MemoryKv::new());
        let a = join(&kv, "router-a", Role::Router).await;
        let old = a.lease();
        let mut epochs = a.epochs();
        assert!(kv.expire(old));

        let moved = tokio::time::timeout(WAIT, epochs.wait_for(|e| *e == 1)).await;
        assert!(matches!(moved, Ok(Ok(_))), "the epoch did not move on");
        let key = member_key(PREFIX, Role::Router, "router-a");
        let deadline = Instant::now() + WAIT;
        let registered = loop {
            match kv.get(&key).await.unwrap() {
                Some(kv) if kv.lease != old => break kv,
                _ => {}
            }
            assert!(Instant::now() < deadline, "never registered again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(registered.lease, a.lease());
        assert!(a.lease_fresh());
        a.leave().await;
    }

    /// The twin, where the next keep-alive after `slow` is set takes `delay`, the lease
    /// extended meanwhile: what a new etcd leader does with every lease when it takes over
    /// while the renewal waits for the election.
    struct SlowRenewals {
        kv: Arc<MemoryKv>,
        slow: std::sync::atomic::AtomicBool,
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl Kv for SlowRenewals {
        async fn grant(&self, ttl_secs: i64) -> Result<i64, KvError> {
            self.kv.grant(ttl_secs).await
        }
        async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
            if self.slow.swap(false, Ordering::SeqCst) {
                self.kv.keep_alive(lease).await?;
                tokio::time::sleep(self.delay).await;
            }
            self.kv.keep_alive(lease).await
        }
        async fn revoke(&self, lease: i64) -> Result<(), KvError> {
            self.kv.revoke(lease).await
        }
        async fn get(&self, key: &str) -> Result<Option<crate::kv::KeyValue>, KvError> {
            self.kv.get(key).await
        }
        async fn get_prefix(
            &self,
            prefix: &str,
        ) -> Result<(Vec<crate::kv::KeyValue>, i64), KvError> {
            self.kv.get_prefix(prefix).await
        }
        async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), KvError> {
            self.kv.put(key, value, lease).await
        }
        async fn txn(
            &self,
            compares: Vec<crate::kv::Compare>,
            ops: Vec<crate::kv::TxnOp>,
        ) -> Result<bool, KvError> {
            self.kv.txn(compares, ops).await
        }
        async fn create_if_absent(
            &self,
            key: &str,
            value: Vec<u8>,
            lease: Option<i64>,
        ) -> Result<Result<crate::kv::KeyValue, crate::kv::KeyValue>, KvError> {
            self.kv.create_if_absent(key, value, lease).await
        }
        fn watch_prefix(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<()> {
            self.kv.watch_prefix(prefix)
        }
    }

    #[tokio::test]
    async fn a_late_renewal_of_a_live_lease_fences_for_a_while_but_loses_nothing() {
        let kv = Arc::new(SlowRenewals {
            kv: Arc::new(MemoryKv::new()),
            slow: std::sync::atomic::AtomicBool::new(false),
            delay: Duration::from_millis(2500),
        });
        let a = Membership::join(kv.clone(), PREFIX, member("router-a", Role::Router), 3)
            .await
            .unwrap();
        let lease = a.lease();
        kv.slow.store(true, Ordering::SeqCst);
        // The renewal comes back later than the TTL: not surely alive meanwhile …
        let deadline = Instant::now() + WAIT;
        while a.lease_fresh() {
            assert!(Instant::now() < deadline, "never stale");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // … then fresh again under the same lease and epoch: the lease lived on.
        let deadline = Instant::now() + WAIT;
        while !a.lease_fresh() {
            assert!(Instant::now() < deadline, "never fresh again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(a.lease(), lease, "same lease");
        assert_eq!(a.epoch(), 0, "no step-down");
        a.leave().await;
    }

    #[tokio::test]
    async fn a_halted_member_stays_until_its_lease_expires() {
        let kv = Arc::new(MemoryKv::new());
        let a = join(&kv, "router-a", Role::Router).await;
        let b = join(&kv, "router-b", Role::Router).await;
        until(&a, |m| has(m, "router-b").is_some()).await;

        b.halt();
        let key = member_key(PREFIX, Role::Router, "router-b");
        assert!(
            kv.get(&key).await.unwrap().is_some(),
            "halting revokes nothing"
        );
        assert!(kv.expire_lease_of(&key));
        until(&a, |m| has(m, "router-b").is_none()).await;
        // Halted: it does not come back under a new lease.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(kv.get(&key).await.unwrap().is_none());
        assert_eq!(b.epoch(), 0);
        a.leave().await;
    }
}
