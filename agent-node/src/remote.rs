//! Cluster mode of an agent-node: the `AgentNodeInternal` gRPC service routers call to
//! reserve agents and hear their availability, the [`RouterLink`] to the routers over gRPC,
//! and the login rule that an agent is logged in on one agent-node only.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use centralino_proto::v1::agent_node_internal_server::AgentNodeInternal;
use centralino_proto::v1::router_internal_client::RouterInternalClient;
use centralino_proto::v1::{
    self as pb, AgentConversationsRequest, AvailabilityUpdate, CancelReservationRequest,
    ConversationEndedRequest, DeliverRequest, LinkRequest, LinkResponse,
};
use futures::Stream;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::node::AgentNode;
use centralino_link::grpc::*;
use centralino_link::{AgentNodeLink, Availability, RouterCall, RouterLink, RouterReply};
use centralino_membership::kv::{Compare, TxnOp};
use centralino_membership::membership::{Membership, Role};

/// How long a call to the routers keeps trying other routers after UNAVAILABLE.
const ROUTER_RETRY_BUDGET: Duration = Duration::from_secs(20);
/// Pause between two attempts.
const ROUTER_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Availability updates buffered per watching router before it must re-read everything.
const AVAILABILITY_BUFFER: usize = 4096;
/// Pause before the directory stream is opened again (on another router) after it ended.
const DIRECTORY_RETRY: Duration = Duration::from_millis(300);

/// Whether this agent-node may act for its agents: only while its lease is surely alive
/// and every agent's login claim is bound to that lease. A node that was paused or cut off
/// from etcd for longer than its lease may have lost its claims to another node, so until
/// it has registered again and re-claimed its agents ([`keep_claims`]) it makes no
/// offers, takes no reservations, delivers nothing and calls no router for them — the way
/// routers fence their partitions.
pub struct Fence {
    membership: Arc<Membership>,
    /// The lease epoch under which every agent's claim was last bound to the lease.
    claimed_epoch: AtomicU64,
}

impl Fence {
    /// Returns the fence over `membership`'s lease.
    pub fn new(membership: Arc<Membership>) -> Arc<Self> {
        Arc::new(Self {
            claimed_epoch: AtomicU64::new(membership.epoch()),
            membership,
        })
    }

    /// Why the node must not act now, or None.
    pub fn reason(&self) -> Option<&'static str> {
        if !self.membership.lease_fresh() {
            Some("its lease is not surely alive")
        } else if self.claimed_epoch.load(Ordering::SeqCst) != self.membership.epoch() {
            Some("it is claiming its agents again under a new lease")
        } else {
            None
        }
    }

    /// Waits up to `wait` for the fence to lift; UNAVAILABLE when it does not.
    async fn wait(&self, wait: Duration) -> Result<(), Status> {
        let deadline = Instant::now() + wait;
        loop {
            let Some(why) = self.reason() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(Status::unavailable(format!("agent-node fenced: {why}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Availability updates of this node's agents, fanned out to every watching router.
pub struct AvailabilityHub {
    tx: broadcast::Sender<Availability>,
}

impl Default for AvailabilityHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(AVAILABILITY_BUFFER).0,
        }
    }
}

impl AvailabilityHub {
    /// Publishes one update (never blocks).
    pub fn publish(&self, update: Availability) {
        let _ = self.tx.send(update);
    }
}

/// The `AgentNodeInternal` service of an agent-node.
pub struct InternalService {
    node: Arc<AgentNode>,
    feed: Arc<AvailabilityHub>,
    node_id: String,
}

impl InternalService {
    /// Returns the service for `node`.
    pub fn new(node: Arc<AgentNode>, feed: Arc<AvailabilityHub>, node_id: String) -> Self {
        Self {
            node,
            feed,
            node_id,
        }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<AvailabilityUpdate, Status>> + Send>>;

#[async_trait]
impl AgentNodeInternal for InternalService {
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let outcome = self
            .node
            .reserve(reserve_from_proto(request.into_inner()))
            .await?;
        Ok(Response::new(pb::ReserveResponse {
            result: outcome_to_proto(outcome) as i32,
        }))
    }

    async fn cancel_reservation(
        &self,
        request: Request<CancelReservationRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.node
            .cancel_reservation(&r.agent_id, &r.reservation_id)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn deliver(
        &self,
        request: Request<DeliverRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let message = r
            .message
            .ok_or_else(|| Status::invalid_argument("message missing"))?;
        self.node
            .deliver(&r.agent_id, &r.conversation_id, message)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn customer_typing(
        &self,
        request: Request<pb::CustomerTypingRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.node
            .customer_typing(&r.agent_id, &r.conversation_id, r.typing)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn conversation_ended(
        &self,
        request: Request<ConversationEndedRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let outcome = pb::ConversationOutcome::try_from(r.outcome)
            .map_err(|_| Status::invalid_argument("unknown outcome"))?;
        self.node
            .conversation_ended(&r.agent_id, &r.conversation_id, outcome)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn set_agent_status(
        &self,
        request: Request<pb::SetAgentStatusRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let status = pb::AgentStatus::try_from(r.status)
            .map_err(|_| Status::invalid_argument("unknown status"))?;
        self.node.refuse_fenced()?;
        self.node.set_status(&r.agent_id, status).await?;
        Ok(Response::new(pb::Empty {}))
    }

    type WatchAvailabilityStream = UpdateStream;

    async fn watch_availability(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<Self::WatchAvailabilityStream>, Status> {
        // Subscribe first, then read the current state: no change falls in between.
        let mut updates = self.feed.tx.subscribe();
        let node = self.node.clone();
        let node_id = self.node_id.clone();
        let stream = async_stream_of(move |tx| async move {
            for a in node.availability().await {
                if tx
                    .send(Ok(availability_to_proto(&a, &node_id)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            loop {
                match updates.recv().await {
                    Ok(a) => {
                        if tx
                            .send(Ok(availability_to_proto(&a, &node_id)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: end the stream, it re-reads everything.
                        let _ = tx
                            .send(Err(Status::unavailable("availability stream lagged")))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// Runs `produce` with the sending half of a channel and returns the receiving half as a
/// stream.
fn async_stream_of<F, Fut>(produce: F) -> UpdateStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<AvailabilityUpdate, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// [`RouterLink`] over gRPC: calls go to any live router (which forwards them to the owner
/// of the conversation), moving on to the next router on UNAVAILABLE.
pub struct RemoteRouters {
    membership: Arc<Membership>,
    fence: Arc<Fence>,
    channels: Channels,
    next: AtomicUsize,
    feed: Arc<AvailabilityHub>,
}

impl RemoteRouters {
    /// Returns the link; availability updates go to `feed`; no call leaves while `fence`
    /// is up. Routers are dialled over TLS with `tls` (the internal plane), plaintext
    /// without.
    pub fn new(
        membership: Arc<Membership>,
        fence: Arc<Fence>,
        feed: Arc<AvailabilityHub>,
        tls: Option<centralino_base::tls::ClientTls>,
    ) -> Arc<Self> {
        Arc::new(Self {
            membership,
            fence,
            channels: Channels::with_tls(tls),
            next: AtomicUsize::new(0),
            feed,
        })
    }

    fn pick(&self) -> Result<String, Status> {
        let mut routers: Vec<String> = self
            .membership
            .with_role(Role::Router)
            .into_iter()
            .filter(|m| !m.draining)
            .map(|m| m.addr)
            .collect();
        if routers.is_empty() {
            routers = self
                .membership
                .with_role(Role::Router)
                .into_iter()
                .map(|m| m.addr)
                .collect();
        }
        if routers.is_empty() {
            return Err(Status::unavailable("no router is up"));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % routers.len();
        Ok(routers[i].clone())
    }

    /// Calls `Link` on some router, trying others while the answer is retryable. While
    /// the node is fenced the call waits (within the same budget) instead of leaving.
    async fn link(&self, request: LinkRequest) -> Result<LinkResponse, Status> {
        let started = Instant::now();
        loop {
            let picked = self.fence.reason().map_or_else(
                || self.pick(),
                |why| Err(Status::unavailable(format!("agent-node fenced: {why}"))),
            );
            let result = match picked.and_then(|addr| self.channels.get(&addr)) {
                Ok(channel) => RouterInternalClient::new(channel)
                    .link(request.clone())
                    .await
                    .map(Response::into_inner),
                Err(e) => Err(e),
            };
            match result {
                Err(status) if retryable(&status) && started.elapsed() < ROUTER_RETRY_BUDGET => {
                    debug!(%status, "router call failed, trying another router");
                    tokio::time::sleep(ROUTER_RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// Follows the agent directory of the routers into `directory` until `stop`: a
    /// `WatchDirectory` stream on some router gives its live directory now and after every
    /// change; when the stream ends (the router stopped), another router's is opened.
    pub fn follow_directory(
        self: &Arc<Self>,
        directory: centralino_base::directory::Directory,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let routers = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ended = routers.watch_directory(&directory) => {
                        debug!(reason = %ended, "directory stream ended, opening another");
                    }
                    _ = stop.wait_for(|s| *s) => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(DIRECTORY_RETRY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// Reads one router's directory stream into `directory` until it ends; returns why.
    async fn watch_directory(&self, directory: &centralino_base::directory::Directory) -> Status {
        use centralino_base::directory::{Document, Part, Snapshot};
        let channel = match self.pick().and_then(|addr| self.channels.get(&addr)) {
            Ok(channel) => channel,
            Err(status) => return status,
        };
        let mut stream = match RouterInternalClient::new(channel)
            .watch_directory(pb::Empty {})
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return status,
        };
        let mut pending = Vec::new();
        loop {
            let chunk = match stream.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Status::unavailable("the router ended the stream"),
                Err(status) => return status,
            };
            for d in chunk.documents {
                let (Some(part), Ok(doc)) = (
                    Part::parse(&d.kind),
                    serde_json::from_str::<serde_json::Value>(&d.json),
                ) else {
                    warn!(kind = %d.kind, id = %d.id, "unreadable directory document from a router");
                    continue;
                };
                pending.push(Document {
                    part,
                    id: d.id,
                    doc,
                    disabled: d.disabled,
                });
            }
            if chunk.last {
                directory.replace(Snapshot::from_documents(std::mem::take(&mut pending)));
                crate::metrics::directory_change("snapshot");
            }
        }
    }

    /// Asks every router which conversations `agent_id` holds.
    pub async fn conversations_of(&self, agent_id: &str) -> Result<Vec<String>, Status> {
        let mut out = Vec::new();
        for router in self.membership.with_role(Role::Router) {
            let channel = self.channels.get(&router.addr)?;
            let started = Instant::now();
            loop {
                match RouterInternalClient::new(channel.clone())
                    .agent_conversations(AgentConversationsRequest {
                        agent_id: agent_id.to_string(),
                    })
                    .await
                {
                    Ok(r) => {
                        out.extend(r.into_inner().conversation_ids);
                        break;
                    }
                    Err(status)
                        if retryable(&status) && started.elapsed() < Duration::from_secs(2) =>
                    {
                        tokio::time::sleep(ROUTER_RETRY_PAUSE).await;
                    }
                    // A router that is gone has no conversations: its partitions' next
                    // owners rebuild them and release them after the disconnect grace.
                    Err(status) => {
                        warn!(router = %router.id, %status, "cannot ask a router for an agent's conversations");
                        break;
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[async_trait]
impl RouterLink for RemoteRouters {
    async fn call(&self, call: RouterCall) -> Result<RouterReply, Status> {
        self.link(call_to_proto(call)).await.map(reply_from_proto)
    }

    fn availability(&self, update: Availability) {
        self.feed.publish(update);
    }
}

/// The cluster's login rule: an agent is logged in on one agent-node at a time (a key
/// bound to this node's lease, its create_revision the fencing token routers check), and an
/// agent who comes from another node gets their conversations back.
pub struct ClusterLogin {
    membership: Arc<Membership>,
    fence: Arc<Fence>,
    routers: Arc<RemoteRouters>,
}

/// What [`ClusterLogin::bind`] found.
enum Bound {
    /// The claim is this node's, bound to the current lease.
    Ours,
    /// Another node holds the claim.
    Theirs(String),
}

impl ClusterLogin {
    /// Returns the rule.
    pub fn new(
        membership: Arc<Membership>,
        fence: Arc<Fence>,
        routers: Arc<RemoteRouters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            membership,
            fence,
            routers,
        })
    }

    fn key(&self, agent_id: &str) -> String {
        centralino_membership::membership::agent_claim_key(self.membership.prefix(), agent_id)
    }

    /// Makes `agent_id`'s claim this node's under the current lease when nobody else holds
    /// it: creates it when absent, binds it to the current lease when it is ours from
    /// before a lost lease (only if it was not re-created meanwhile: a compare on its
    /// create_revision, so a claim another node just made is never overwritten).
    async fn bind(&self, agent_id: &str) -> Result<Bound, Status> {
        let me = self.membership.me();
        let kv = self.membership.kv();
        let key = self.key(agent_id);
        let unavailable =
            |e: centralino_membership::kv::KvError| Status::unavailable(e.to_string());
        loop {
            let lease = self.membership.lease();
            let existing = match kv
                .create_if_absent(&key, me.id.clone().into_bytes(), Some(lease))
                .await
                .map_err(unavailable)?
            {
                Ok(_) => return Ok(Bound::Ours),
                Err(existing) => existing,
            };
            let holder = String::from_utf8_lossy(&existing.value).to_string();
            if holder != me.id {
                return Ok(Bound::Theirs(holder));
            }
            if existing.lease == lease {
                return Ok(Bound::Ours);
            }
            // Ours from before a lost lease: bind it to the current one.
            let rebound = kv
                .txn(
                    vec![Compare::CreateRevision {
                        key: key.clone(),
                        revision: existing.create_revision,
                    }],
                    vec![TxnOp::Put {
                        key: key.clone(),
                        value: me.id.clone().into_bytes(),
                        lease: Some(lease),
                    }],
                )
                .await
                .map_err(unavailable)?;
            if rebound {
                return Ok(Bound::Ours);
            }
            // It expired or was re-created in between: look again.
        }
    }

    /// Binds `agent_id`'s claim to the current lease after a lost lease; false when
    /// another node holds it now (the agent logged in there meanwhile).
    pub async fn reclaim(&self, agent_id: &str) -> Result<bool, Status> {
        match self.bind(agent_id).await? {
            Bound::Ours => Ok(true),
            Bound::Theirs(holder) => {
                warn!(%agent_id, %holder, "the agent's claim went to another agent-node while this one was fenced");
                Ok(false)
            }
        }
    }

    /// Marks every agent's claim bound under `epoch`: the fence lifts (if the lease is
    /// fresh).
    pub fn claimed(&self, epoch: u64) {
        self.fence.claimed_epoch.store(epoch, Ordering::SeqCst);
    }
}

#[async_trait]
impl crate::node::LoginHook for ClusterLogin {
    async fn claim(&self, agent_id: &str) -> Result<Vec<String>, Status> {
        // A node that died holds its agents until its lease expires: wait that long for
        // the claim before refusing the login.
        let ttl = Duration::from_secs(self.membership.ttl_secs() as u64 + 1);
        let deadline = Instant::now() + ttl;
        loop {
            // Not while fenced: a claim under a lease that is going would vanish with it.
            self.fence.wait(ttl).await?;
            let epoch = self.membership.epoch();
            let bound = self.bind(agent_id).await?;
            if self.membership.epoch() != epoch {
                // The lease was lost meanwhile: claim again under the new one.
                continue;
            }
            match bound {
                Bound::Ours => break,
                Bound::Theirs(holder) if Instant::now() >= deadline => {
                    return Err(Status::failed_precondition(format!(
                        "agent {agent_id:?} is logged in on agent-node {holder:?}"
                    )));
                }
                Bound::Theirs(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let conversations = self.routers.conversations_of(agent_id).await?;
        info!(%agent_id, held = conversations.len(), "agent claimed on this node");
        Ok(conversations)
    }

    async fn release(&self, agent_id: &str) {
        let kv = self.membership.kv();
        if let Ok(Some(claim)) = kv.get(&self.key(agent_id)).await {
            if claim.value == self.membership.me().id.into_bytes() {
                let _ = kv.delete_if(&claim.key, claim.create_revision).await;
            }
        }
    }

    fn fenced(&self) -> Option<&'static str> {
        self.fence.reason()
    }
}

/// Keeps the agents' claims bound to this node's lease until `stop`: after a lost lease
/// (the epoch moved on) and once the new lease is in place, every agent's claim is bound
/// to it again, an agent whose claim another node took meanwhile is evicted here, and the
/// fence lifts; then the agents' availability is published again.
pub async fn keep_claims(
    node: Arc<AgentNode>,
    login: Arc<ClusterLogin>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let membership = login.membership.clone();
    let mut epochs = membership.epochs();
    loop {
        tokio::select! {
            _ = epochs.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let epoch = membership.epoch();
        if login.fence.claimed_epoch.load(Ordering::SeqCst) == epoch || !membership.lease_fresh() {
            continue;
        }
        let started = Instant::now();
        let mut bound = 0usize;
        let mut evicted = 0usize;
        let mut failed = None;
        for agent_id in node.agent_ids() {
            match login.reclaim(&agent_id).await {
                Ok(true) => bound += 1,
                Ok(false) => {
                    node.evict(&agent_id);
                    evicted += 1;
                }
                Err(status) => {
                    failed = Some(status);
                    break;
                }
            }
        }
        if let Some(status) = failed {
            warn!(%status, "cannot claim the agents again yet; the node stays fenced");
            continue;
        }
        if membership.epoch() != epoch {
            continue;
        }
        login.claimed(epoch);
        crate::metrics::claims_rebound(bound, evicted);
        info!(
            epoch,
            lease = membership.lease(),
            bound,
            evicted,
            ms = started.elapsed().as_millis() as u64,
            "cluster: agents claimed again under the new lease, fence lifted"
        );
        node.republish().await;
    }
}
