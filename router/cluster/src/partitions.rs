//! Partition ownership in a cluster (DESIGN.md §3).
//!
//! Each of the [`PARTITIONS`] partitions has one owner router: the winner of rendezvous
//! hashing over the live, non-draining routers, which *claims* it with a key bound to its
//! lease. The claim's create revision is the fencing token of every durable write for the
//! partition ([`crate::fenced_store::Fences`]). A claim is written inactive, and marked active
//! once the owner has rebuilt the partition's conversations and queues; other routers
//! forward to an owner only when its claim is active.
//!
//! Ownership changes three ways: a router *adopts* a partition it wins that nobody holds,
//! *releases* one it no longer wins (a router joined, or this one drains) after stopping its
//! actors and flushing its writes, and *loses* everything at once when its lease was lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use centralino_link::grpc::Channels;
use centralino_membership::kv::{Compare, Kv, TxnOp};
use centralino_membership::membership::{Members, Membership, Role};
use centralino_proto::v1::router_internal_client::RouterInternalClient;
use centralino_proto::v1::TellRequest;
use futures::future::BoxFuture;
use futures::StreamExt;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::fenced_store::{claim_key, Fences};
use centralino_core::conversation::{Requeue, Retire};
use centralino_core::directory::department_names;
use centralino_core::metrics as m;
use centralino_core::queue::{self};
use centralino_core::recovery::adopt_partition;
use centralino_core::router::Router;
use centralino_core::shared::{Owner, Placement};
use centralino_core::store::records::{partition_of, PARTITIONS};

/// Partitions claimed or handed over at the same time.
const PARALLEL: usize = 32;

/// What a claim key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimValue {
    /// Owner's node id.
    pub node: String,
    /// Owner's gRPC address.
    pub addr: String,
    /// The owner has rebuilt the partition and serves it.
    pub active: bool,
}

/// A claim as read from the coordination store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    value: ClaimValue,
    revision: i64,
}

/// This router's relation to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// Not held.
    None,
    /// Claimed, rebuilding.
    Loading,
    /// Serving.
    Active,
    /// Handing over.
    Releasing,
}

/// Returns the rendezvous score of `node` for `partition` (FNV-1a; every router agrees).
fn score(partition: u32, node: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in partition
        .to_be_bytes()
        .iter()
        .chain([b'/'].iter())
        .chain(node.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalize (murmur3 fmix64) so that similar node names spread well.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Returns the rendezvous winner of `partition` among `nodes`.
pub fn winner(partition: u32, nodes: &[String]) -> Option<&str> {
    nodes
        .iter()
        .max_by_key(|n| (score(partition, n), n.as_str()))
        .map(String::as_str)
}

/// The cluster as this router sees it: claims, its own partitions, and the way to other
/// routers. The router asks it where a partition lives.
pub struct ClusterView {
    me: String,
    /// The lease whose freshness gates ownership, and the epoch the partitions were
    /// claimed under.
    guard: std::sync::OnceLock<Arc<Membership>>,
    epoch: std::sync::atomic::AtomicU64,
    claims: RwLock<Vec<Option<Claim>>>,
    local: RwLock<Vec<Local>>,
    channels: Channels,
    runtime: tokio::runtime::Handle,
}

impl ClusterView {
    /// Returns an empty view for router `me`; calls to other routers run on `runtime`, over
    /// TLS with `tls` (the internal plane; plaintext without).
    pub fn new(
        me: String,
        runtime: tokio::runtime::Handle,
        tls: Option<centralino_base::tls::ClientTls>,
    ) -> Arc<Self> {
        Arc::new(Self {
            me,
            guard: std::sync::OnceLock::new(),
            epoch: std::sync::atomic::AtomicU64::new(0),
            claims: RwLock::new(vec![None; PARTITIONS as usize]),
            local: RwLock::new(vec![Local::None; PARTITIONS as usize]),
            channels: Channels::with_tls(tls),
            runtime,
        })
    }

    /// Returns a client of the router at `addr`.
    pub fn router(
        &self,
        addr: &str,
    ) -> Result<RouterInternalClient<tonic::transport::Channel>, tonic::Status> {
        Ok(RouterInternalClient::new(self.channels.get(addr)?))
    }

    /// Returns the channel to the router at `addr`.
    pub fn channel(&self, addr: &str) -> Result<tonic::transport::Channel, tonic::Status> {
        self.channels.get(addr)
    }

    /// Returns how many partitions this router serves, and how many have no active owner.
    pub fn counts(&self) -> (usize, usize) {
        let owned = self
            .local
            .read()
            .iter()
            .filter(|l| **l == Local::Active)
            .count();
        let unowned = self
            .claims
            .read()
            .iter()
            .filter(|c| !c.as_ref().is_some_and(|c| c.value.active))
            .count();
        (owned, unowned)
    }

    /// Gates ownership on `membership`'s lease.
    pub fn guard_with(&self, membership: Arc<Membership>) {
        self.epoch
            .store(membership.epoch(), std::sync::atomic::Ordering::SeqCst);
        let _ = self.guard.set(membership);
    }

    fn fresh(&self) -> bool {
        match self.guard.get() {
            Some(m) => {
                m.lease_fresh() && m.epoch() == self.epoch.load(std::sync::atomic::Ordering::SeqCst)
            }
            None => true,
        }
    }

    fn set_local(&self, partition: u32, state: Local) {
        self.local.write()[partition as usize] = state;
    }

    fn local(&self, partition: u32) -> Local {
        self.local.read()[partition as usize]
    }
}

impl Placement for ClusterView {
    fn owner(&self, partition: u32) -> Owner {
        let p = partition as usize;
        if p >= PARTITIONS as usize {
            return Owner::Unknown;
        }
        match self.local.read()[p] {
            Local::Active if self.fresh() => return Owner::Local,
            Local::Active => return Owner::Unknown,
            Local::Loading | Local::Releasing => return Owner::Unknown,
            Local::None => {}
        }
        match &self.claims.read()[p] {
            Some(c) if c.value.active && c.value.node != self.me => {
                Owner::Remote(c.value.addr.clone())
            }
            _ => Owner::Unknown,
        }
    }

    fn serving(&self) -> bool {
        self.fresh()
    }

    fn tell(&self, addr: String, request: TellRequest) {
        let channel = self.channels.get(&addr);
        self.runtime.spawn(async move {
            let Ok(channel) = channel else { return };
            if let Err(status) = RouterInternalClient::new(channel).tell(request).await {
                debug!(%addr, %status, "tell to another router failed");
            }
        });
    }

    fn deliver(
        &self,
        addr: String,
        request: TellRequest,
    ) -> BoxFuture<'static, Result<(), Status>> {
        let channel = self.channels.get(&addr);
        // On the same runtime as `tell`, whichever actor thread awaits the answer.
        let call = self.runtime.spawn(async move {
            RouterInternalClient::new(channel?).tell(request).await?;
            Ok(())
        });
        Box::pin(async move {
            call.await
                .map_err(|e| Status::unavailable(format!("call to another router lost: {e}")))?
        })
    }
}

/// Runs partition ownership for one router.
pub struct Partitions {
    router: Arc<Router>,
    view: Arc<ClusterView>,
    membership: Arc<Membership>,
    fences: Arc<Fences>,
    kv: Arc<dyn Kv>,
    prefix: String,
    draining: watch::Receiver<bool>,
}

impl Partitions {
    /// Returns the manager; run it with [`Partitions::run`].
    pub fn new(
        router: Arc<Router>,
        view: Arc<ClusterView>,
        membership: Arc<Membership>,
        fences: Arc<Fences>,
        draining: watch::Receiver<bool>,
    ) -> Self {
        Self {
            kv: membership.kv().clone(),
            prefix: membership.prefix().to_string(),
            router,
            view,
            membership,
            fences,
            draining,
        }
    }

    /// Returns every department's name by the partition that runs its queue: the
    /// configuration file's and those created at run time through the directory.
    fn departments(&self) -> HashMap<u32, Vec<String>> {
        let shared = &self.router.shared;
        let mut by_partition: HashMap<u32, Vec<String>> = HashMap::new();
        for name in department_names(&shared.config, &shared.directory.snapshot()) {
            by_partition
                .entry(partition_of(&name))
                .or_default()
                .push(name);
        }
        by_partition
    }

    /// Returns the departments whose queues run with partition `p`.
    fn departments_of(&self, p: u32) -> Vec<String> {
        self.departments().remove(&p).unwrap_or_default()
    }

    /// Starts the queues of departments created at run time whose partition this router
    /// serves (the others' owners start theirs); waiting conversations elsewhere find them
    /// through the partition's owner like any queue.
    fn start_created_queues(&self) {
        for (p, departments) in self.departments() {
            if self.view.local(p) != Local::Active {
                continue;
            }
            for department in departments {
                if self.router.queue(&department).is_none() {
                    info!(partition = p, %department, "cluster: queue of a new department started");
                    self.start_queue(&department);
                }
            }
        }
    }

    fn claims_prefix(&self) -> String {
        format!("{}/claims/", self.prefix)
    }

    /// Reconciles ownership on every change of members or claims, on a lost lease, when
    /// draining starts, and twice a second anyway. Returns when draining has handed every
    /// partition over.
    pub async fn run(mut self, mut lost: tokio::sync::mpsc::UnboundedReceiver<u32>) {
        let mut members = self.membership.members();
        let mut epochs = self.membership.epochs();
        let mut claims = self.kv.watch_prefix(&self.claims_prefix());
        let mut epoch = *epochs.borrow();
        let mut directory = self.router.shared.directory.subscribe();
        loop {
            let current = *epochs.borrow();
            if current != epoch {
                epoch = current;
                self.step_down("lease lost");
                // Partitions are claimed under the new lease from here on.
                self.view
                    .epoch
                    .store(current, std::sync::atomic::Ordering::SeqCst);
            }
            while let Ok(p) = lost.try_recv() {
                warn!(partition = p, "cluster: write fenced, partition lost");
                self.lose(p);
            }
            let draining = *self.draining.borrow();
            if let Err(e) = self.reconcile(draining).await {
                warn!(error = %e, "cluster: reconcile failed");
            }
            directory.borrow_and_update();
            self.start_created_queues();
            let (owned, unowned) = self.view.counts();
            m::cluster_partitions(owned, unowned);
            if draining && self.fences.held().is_empty() {
                info!("cluster: drained, no partition held");
                return;
            }
            tokio::select! {
                _ = members.changed() => {}
                Some(()) = claims.recv() => {}
                _ = epochs.changed() => {}
                _ = self.draining.changed() => {}
                _ = directory.changed() => {}
                Some(p) = lost.recv() => {
                    warn!(partition = p, "cluster: write fenced, partition lost");
                    self.lose(p);
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    fn live_routers(&self, members: &Members, draining: bool) -> Vec<String> {
        members
            .values()
            .filter(|m| m.role == Role::Router && !m.draining)
            .map(|m| m.id.clone())
            .filter(|id| !(draining && *id == self.view.me))
            .collect()
    }

    async fn read_claims(&self) -> Result<Vec<Option<Claim>>, String> {
        let (kvs, _) = self
            .kv
            .get_prefix(&self.claims_prefix())
            .await
            .map_err(|e| e.to_string())?;
        let mut claims = vec![None; PARTITIONS as usize];
        for kv in kvs {
            let Some(p) = kv
                .key
                .rsplit('/')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|p| *p < PARTITIONS as usize)
            else {
                continue;
            };
            if let Ok(value) = serde_json::from_slice::<ClaimValue>(&kv.value) {
                claims[p] = Some(Claim {
                    value,
                    revision: kv.create_revision,
                });
            }
        }
        Ok(claims)
    }

    async fn reconcile(&self, draining: bool) -> Result<(), String> {
        let claims = self.read_claims().await?;
        let previous = std::mem::replace(&mut *self.view.claims.write(), claims.clone());
        self.requeue_moved_queues(&previous, &claims);
        let members = self.membership.members().borrow().clone();
        let routers = self.live_routers(&members, draining);
        let me = self.view.me.clone();
        let mut to_release = Vec::new();
        let mut to_claim = Vec::new();
        for p in 0..PARTITIONS {
            let claim = &claims[p as usize];
            let won = winner(p, &routers) == Some(me.as_str());
            match self.fences.token(p) {
                Some(token) => {
                    if claim.as_ref().map(|c| c.revision) != Some(token) {
                        warn!(
                            partition = p,
                            "cluster: claim gone or taken over, partition lost"
                        );
                        self.lose(p);
                    } else if !won && (draining || !routers.is_empty()) {
                        to_release.push((p, token));
                    }
                }
                None if won => match claim {
                    None => to_claim.push(p),
                    Some(c) if c.value.node == me => {
                        // Ours from before a lost lease (or a restart): clear it.
                        let _ = self
                            .kv
                            .delete_if(&claim_key(&self.prefix, p), c.revision)
                            .await;
                    }
                    Some(_) => {}
                },
                None => {}
            }
        }
        // Claims and hand-overs run side by side: after a failover a router adopts dozens
        // of partitions, each a few etcd round trips.
        let adopted: Vec<Result<(), String>> = futures::stream::iter(to_claim)
            .map(|p| self.adopt(p))
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        futures::stream::iter(to_release)
            .map(|(p, token)| self.release(p, token))
            .buffer_unordered(PARALLEL)
            .collect::<Vec<()>>()
            .await;
        adopted.into_iter().collect()
    }

    /// Asks this router's waiting conversations to enqueue again where a department's
    /// queue got a new active owner.
    fn requeue_moved_queues(&self, before: &[Option<Claim>], after: &[Option<Claim>]) {
        let active = |c: &Option<Claim>| {
            c.as_ref()
                .filter(|c| c.value.active)
                .map(|c| (c.value.node.clone(), c.revision))
        };
        for (p, departments) in &self.departments() {
            let (b, a) = (active(&before[*p as usize]), active(&after[*p as usize]));
            if a.is_some() && a != b {
                self.requeue(departments);
            }
        }
    }

    fn requeue(&self, departments: &[String]) {
        let conversations = self.router.all_conversations();
        for department in departments {
            for c in &conversations {
                c.do_send(Requeue {
                    department: department.clone(),
                });
            }
        }
    }

    /// Claims `p`, rebuilds its conversations and queues, and marks the claim active.
    async fn adopt(&self, p: u32) -> Result<(), String> {
        let me = self.membership.me();
        let lease = self.membership.lease();
        let key = claim_key(&self.prefix, p);
        let value = ClaimValue {
            node: me.id.clone(),
            addr: me.addr.clone(),
            active: false,
        };
        let bytes = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        let claimed = self
            .kv
            .create_if_absent(&key, bytes, Some(lease))
            .await
            .map_err(|e| e.to_string())?;
        let token = match claimed {
            Ok(kv) => kv.create_revision,
            // Our own claim, when an answer was lost and the request retried.
            Err(kv) if kv.lease == lease => kv.create_revision,
            Err(_) => return Ok(()),
        };
        m::cluster_claim();
        self.fences.hold(p, token);
        self.view.set_local(p, Local::Loading);
        let restored = match self.load(p).await {
            Ok(n) => n,
            Err(e) => {
                warn!(partition = p, error = %e, "cluster: cannot load a claimed partition, giving it up");
                self.view.set_local(p, Local::None);
                self.fences.release(p);
                let _ = self.kv.delete_if(&key, token).await;
                return Ok(());
            }
        };
        let departments = self.departments_of(p);
        for department in &departments {
            self.start_queue(department);
        }
        let active = ClaimValue {
            active: true,
            ..value
        };
        let bytes = serde_json::to_vec(&active).map_err(|e| e.to_string())?;
        let marked = self
            .kv
            .txn(
                vec![Compare::CreateRevision {
                    key: key.clone(),
                    revision: token,
                }],
                vec![TxnOp::Put {
                    key,
                    value: bytes,
                    lease: Some(lease),
                }],
            )
            .await
            .map_err(|e| e.to_string())?;
        if !marked {
            self.lose(p);
            return Ok(());
        }
        self.view.set_local(p, Local::Active);
        self.requeue(&departments);
        debug!(partition = p, restored, "cluster: partition adopted");
        if restored > 0 || !departments.is_empty() {
            info!(partition = p, restored, queues = ?departments, "cluster: partition adopted");
        }
        Ok(())
    }

    fn start_queue(&self, department: &str) {
        if let Some(config) = self.router.shared.department(department) {
            self.router.start_queue(config);
        }
    }

    /// Rebuilds the conversations of `p` from the store; returns how many.
    async fn load(&self, p: u32) -> Result<usize, String> {
        adopt_partition(&self.router, p)
            .await
            .map(|adopted| adopted.restored)
            .map_err(|e| e.to_string())
    }

    /// Stops the queues and conversation actors of `p` (their state is in the store).
    async fn stop_actors(&self, p: u32) {
        for department in &self.departments_of(p) {
            if let Some(queue) = self.router.remove_queue(department) {
                queue.do_send(queue::Shutdown);
            }
        }
        for (_, actor) in self.router.conversations_in(p) {
            actor.do_send(Retire);
        }
        for _ in 0..200 {
            if self.router.conversations_in(p).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Hands `p` over: stop serving it, let its writes land, then delete the claim so the
    /// next owner can claim it.
    async fn release(&self, p: u32, token: i64) {
        self.view.set_local(p, Local::Releasing);
        self.stop_actors(p).await;
        // Every write submitted before this one is durable when it returns.
        let _ = self.router.shared.commits.write(Vec::new()).await;
        self.fences.release(p);
        if let Err(e) = self.kv.delete_if(&claim_key(&self.prefix, p), token).await {
            warn!(partition = p, error = %e, "cluster: cannot delete a released claim; it expires with the lease");
        }
        self.view.set_local(p, Local::None);
        m::cluster_handoff();
        debug!(partition = p, "cluster: partition handed over");
    }

    /// Drops `p` at once: its claim is gone or someone else's.
    fn lose(&self, p: u32) {
        if self.view.local(p) == Local::None && self.fences.token(p).is_none() {
            return;
        }
        self.fences.release(p);
        self.view.set_local(p, Local::None);
        for department in &self.departments_of(p) {
            if let Some(queue) = self.router.remove_queue(department) {
                queue.do_send(queue::Shutdown);
            }
        }
        for (_, actor) in self.router.conversations_in(p) {
            actor.do_send(Retire);
        }
    }

    fn step_down(&self, why: &str) {
        let held = self.fences.held();
        warn!(
            partitions = held.len(),
            why, "cluster: stepping down from every partition"
        );
        for p in 0..PARTITIONS {
            if self.view.local(p) != Local::None || self.fences.token(p).is_some() {
                self.lose(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let three: Vec<String> = ["router-1", "router-2", "router-3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut counts = HashMap::new();
        for p in 0..PARTITIONS {
            *counts.entry(winner(p, &three).unwrap()).or_insert(0) += 1;
        }
        for (node, n) in &counts {
            assert!((50..=120).contains(n), "{node} won {n} of 256");
        }
        // Removing a router moves only its partitions.
        let two = &three[..2];
        for p in 0..PARTITIONS {
            let before = winner(p, &three).unwrap();
            if before != "router-3" {
                assert_eq!(winner(p, two), Some(before));
            }
        }
        assert_eq!(winner(0, &[]), None);
    }
}
