//! Routers talking to routers and agent-nodes talking to routers: the `RouterInternal`
//! service (agent-node calls about conversations, queue and conversation messages), and the
//! customer API of a clustered router, which forwards calls for conversations of other
//! routers' partitions to their owners.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use centralino_base::server::Access;
use centralino_base::tls::{PeerIdentity, PeerRole};
use centralino_membership::kv::Kv;
use centralino_membership::membership::agent_claim_key;
use parking_lot::Mutex;
use tracing::warn;

use centralino_link::grpc::{call_from_proto, reply_to_proto};
use centralino_link::RouterLink;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::router_internal_server::RouterInternal;
use centralino_proto::v1::*;
use futures::Stream;
use tonic::{Code, Request, Response, Status};

use crate::partitions::ClusterView;
use centralino_core::conversation::GetRecord;
use centralino_core::dispatch::Dispatch;
use centralino_core::ingress::CustomerApi;
use centralino_core::mail::{ToConversation, ToQueue};
use centralino_core::metrics as m;
use centralino_core::router::Router;
use centralino_core::shared::Owner;
use centralino_core::store::records::{partition_of, State};

/// Metadata key set on a customer call a router forwards to the owner.
const FORWARDED: &str = "x-centralino-forwarded";

fn no_owner() -> Status {
    Status::unavailable("the conversation's partition is changing owner, retry shortly")
}

/// How long a checked login claim is trusted without asking the store again.
const CLAIM_FRESH: Duration = Duration::from_secs(1);
/// Most remembered claim checks.
const CLAIM_CACHE: usize = 50_000;

/// Checks that the agent-node making a call holds the login claim of the agent it acts for
/// (the claims agent-nodes write in the coordination store at login), and that a
/// reservation goes to the node holding it. Only a confirmed holder is remembered (for
/// [`CLAIM_FRESH`]); any other answer reads the store again, so a new holder counts at once.
/// Within that second an agent-node that lost the claim refuses by itself: it is fenced
/// from before its lease could expire until it has claimed its agents again.
pub struct Claims {
    kv: Arc<dyn Kv>,
    prefix: String,
    /// agent id → (holder, when it was read).
    checked: Mutex<HashMap<String, (String, Instant)>>,
}

impl Claims {
    /// Returns the check over the claims under cluster `prefix` in `kv`.
    pub fn new(kv: Arc<dyn Kv>, prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            kv,
            prefix: prefix.to_string(),
            checked: Mutex::new(HashMap::new()),
        })
    }

    /// OK when `peer` (an agent-node) holds `agent_id`'s claim; PERMISSION_DENIED when
    /// another node or nobody does.
    pub async fn check(&self, peer: &PeerIdentity, agent_id: &str) -> Result<(), Status> {
        if agent_id.is_empty() || agent_id.len() > 256 {
            return Err(Status::invalid_argument("agent_id"));
        }
        let holder = self.holder(agent_id, |holder| peer.is_node(holder)).await?;
        match holder {
            Some(holder) if peer.is_node(&holder) => Ok(()),
            holder => {
                m::cluster_claim_refusal("link");
                warn!(%peer, %agent_id, ?holder, "internal call refused: the agent is not logged in on the calling agent-node");
                Err(Status::permission_denied(format!(
                    "agent {agent_id:?} is not logged in on {peer}"
                )))
            }
        }
    }

    /// Returns whether agent-node `node_id` holds `agent_id`'s claim.
    pub async fn held_by(&self, agent_id: &str, node_id: &str) -> Result<bool, Status> {
        let holder = self.holder(agent_id, |holder| holder == node_id).await?;
        Ok(holder.as_deref() == Some(node_id))
    }

    /// Returns the holder of `agent_id`'s claim: the remembered one when `wanted` and
    /// fresh, else read from the store.
    async fn holder(
        &self,
        agent_id: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, Status> {
        if let Some((holder, at)) = self.checked.lock().get(agent_id) {
            if at.elapsed() < CLAIM_FRESH && wanted(holder) {
                return Ok(Some(holder.clone()));
            }
        }
        let claim = self
            .kv
            .get(&agent_claim_key(&self.prefix, agent_id))
            .await
            .map_err(|e| {
                Status::unavailable(format!("cannot read the agent's login claim: {e}"))
            })?;
        let holder = claim.map(|c| String::from_utf8_lossy(&c.value).to_string());
        let mut checked = self.checked.lock();
        match &holder {
            Some(h) if wanted(h) => {
                if checked.len() >= CLAIM_CACHE {
                    checked.retain(|_, (_, at)| at.elapsed() < CLAIM_FRESH);
                }
                checked.insert(agent_id.to_string(), (h.clone(), Instant::now()));
            }
            _ => {
                checked.remove(agent_id);
            }
        }
        Ok(holder)
    }
}

/// Chunks of the directory a `WatchDirectory` stream holds for its agent-node.
const DIRECTORY_STREAM_BUFFER: usize = 16;
/// Documents per `WatchDirectory` chunk (well below gRPC's message size limit).
const DIRECTORY_CHUNK: usize = 200;

/// Sends one state of the directory in chunks; false when the agent-node is gone.
async fn send_directory(
    tx: &tokio::sync::mpsc::Sender<Result<DirectoryChunk, Status>>,
    snapshot: &centralino_base::directory::Snapshot,
) -> bool {
    let documents: Vec<DirectoryDocument> = snapshot
        .documents()
        .into_iter()
        .map(|d| DirectoryDocument {
            kind: d.part.as_str().to_string(),
            id: d.id,
            json: d.doc.to_string(),
            disabled: d.disabled,
        })
        .collect();
    let mut chunks: Vec<Vec<DirectoryDocument>> = documents
        .chunks(DIRECTORY_CHUNK)
        .map(<[DirectoryDocument]>::to_vec)
        .collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let n = chunks.len();
    for (i, documents) in chunks.into_iter().enumerate() {
        let chunk = DirectoryChunk {
            documents,
            last: i + 1 == n,
        };
        if tx.send(Ok(chunk)).await.is_err() {
            return false;
        }
    }
    true
}

/// The `RouterInternal` service of a clustered router.
pub struct InternalApi {
    router: Arc<Router>,
    dispatch: Arc<Dispatch>,
    view: Arc<ClusterView>,
    access: Access,
    claims: Arc<Claims>,
}

impl InternalApi {
    /// Returns the service. With [`Access::Mtls`] every call checks the caller: `Link` and
    /// `AgentConversations` are for the agent-node holding the agent's login claim (and
    /// `Link` for routers forwarding one), `Tell` for routers.
    pub fn new(
        router: Arc<Router>,
        dispatch: Arc<Dispatch>,
        view: Arc<ClusterView>,
        access: Access,
        claims: Arc<Claims>,
    ) -> Self {
        Self {
            router,
            dispatch,
            view,
            access,
            claims,
        }
    }

    async fn link_local(&self, r: LinkRequest) -> Result<LinkResponse, Status> {
        let call = call_from_proto(r)?;
        self.dispatch.call(call).await.map(reply_to_proto)
    }
}

#[tonic::async_trait]
impl RouterInternal for InternalApi {
    async fn link(&self, request: Request<LinkRequest>) -> Result<Response<LinkResponse>, Status> {
        let peer = self
            .access
            .check(&request, &[PeerRole::AgentNode, PeerRole::Router], "Link")?;
        let mut r = request.into_inner();
        if r.conversation_id.is_empty() || r.conversation_id.len() > 256 {
            return Err(Status::invalid_argument("conversation_id"));
        }
        match peer {
            Some(peer) if peer.role == PeerRole::Router && !r.forwarded => {
                return Err(Status::permission_denied(
                    "a router only forwards Link calls of agent-nodes",
                ));
            }
            Some(peer) if peer.role == PeerRole::AgentNode => {
                if r.forwarded {
                    return Err(Status::permission_denied("only routers forward Link calls"));
                }
                self.claims.check(&peer, &r.agent_id).await?;
            }
            _ => {}
        }
        match self.router.shared.owner(partition_of(&r.conversation_id)) {
            Owner::Local => self.link_local(r).await.map(Response::new),
            Owner::Remote(addr) if !r.forwarded => {
                r.forwarded = true;
                m::cluster_forwarded();
                self.view.router(&addr)?.link(r).await.map_err(from_peer)
            }
            _ => Err(no_owner()),
        }
    }

    async fn agent_conversations(
        &self,
        request: Request<AgentConversationsRequest>,
    ) -> Result<Response<AgentConversationsResponse>, Status> {
        let peer = self
            .access
            .check(&request, &[PeerRole::AgentNode], "AgentConversations")?;
        let agent_id = request.into_inner().agent_id;
        if let Some(peer) = peer {
            self.claims.check(&peer, &agent_id).await?;
        }
        let mut conversation_ids = Vec::new();
        for actor in self.router.all_conversations() {
            if let Ok(rec) = actor.send(GetRecord).await {
                if rec.state == State::Assigned && rec.agent_id.as_deref() == Some(&agent_id) {
                    conversation_ids.push(rec.id);
                }
            }
        }
        conversation_ids.sort();
        Ok(Response::new(AgentConversationsResponse {
            conversation_ids,
        }))
    }

    type WatchDirectoryStream = Pin<Box<dyn Stream<Item = Result<DirectoryChunk, Status>> + Send>>;

    async fn watch_directory(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::WatchDirectoryStream>, Status> {
        self.access
            .check(&request, &[PeerRole::AgentNode], "WatchDirectory")?;
        let directory = self.router.shared.directory.clone();
        let mut changes = directory.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(DIRECTORY_STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                changes.borrow_and_update();
                if !send_directory(&tx, &directory.snapshot()).await {
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    /// Puts the message in the mailbox of the actor it is for, here or (once) at the owner,
    /// and answers OK only then: a sender that waits for the answer knows that whatever it
    /// sends the actor afterwards comes after this message. A message that reaches no actor
    /// gets NOT_FOUND (the actor is not live), or UNAVAILABLE (its partition is changing
    /// owner).
    async fn tell(&self, request: Request<TellRequest>) -> Result<Response<Empty>, Status> {
        self.access.check(&request, &[PeerRole::Router], "Tell")?;
        let mut r = request.into_inner();
        let partition = if !r.conversation_id.is_empty() {
            let msg: ToConversation = serde_json::from_slice(&r.payload)
                .map_err(|e| Status::invalid_argument(format!("payload: {e}")))?;
            if let Some(actor) = self.router.conversation(&r.conversation_id) {
                msg.deliver(&actor);
                return Ok(Response::new(Empty {}));
            }
            partition_of(&r.conversation_id)
        } else {
            let msg: ToQueue = serde_json::from_slice(&r.payload)
                .map_err(|e| Status::invalid_argument(format!("payload: {e}")))?;
            if let Some(queue) = self.router.queue(&r.department) {
                msg.deliver(&queue);
                return Ok(Response::new(Empty {}));
            }
            partition_of(&r.department)
        };
        match self.router.shared.owner(partition) {
            Owner::Remote(addr) if !r.forwarded => {
                r.forwarded = true;
                self.view.router(&addr)?.tell(r).await.map_err(from_peer)?;
                Ok(Response::new(Empty {}))
            }
            Owner::Local => Err(Status::not_found("no such actor on its owner")),
            _ => Err(no_owner()),
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ConversationEvent, Status>> + Send>>;

/// The customer API of a clustered router: calls for conversations owned here go to the
/// local actors, others to their owner.
pub struct ClusterCustomerApi {
    inner: CustomerApi,
    router: Arc<Router>,
    view: Arc<ClusterView>,
}

/// Where a call for a conversation goes.
enum Route {
    Here,
    There(ConversationServiceClient<tonic::transport::Channel>),
}

impl ClusterCustomerApi {
    /// Returns the service.
    pub fn new(router: Arc<Router>, view: Arc<ClusterView>) -> Self {
        Self {
            inner: CustomerApi::new(router.clone()),
            router,
            view,
        }
    }

    /// Returns the service for the internal plane (routers only, mutual TLS): a call
    /// another router forwarded is served here without forwarding it again, and without the
    /// per-address limits its first router applied.
    pub fn for_peers(mut self) -> Self {
        self.inner = self.inner.for_peers();
        self
    }

    fn route<T>(&self, request: &Request<T>, conversation_id: &str) -> Result<Route, Status> {
        if conversation_id.is_empty() || conversation_id.len() > 256 {
            // The local service gives the precise error.
            return Ok(Route::Here);
        }
        match self.router.shared.owner(partition_of(conversation_id)) {
            Owner::Local => Ok(Route::Here),
            Owner::Remote(addr) if request.metadata().get(FORWARDED).is_none() => {
                m::cluster_forwarded();
                Ok(Route::There(ConversationServiceClient::new(
                    self.view.channel(&addr)?,
                )))
            }
            _ => Err(no_owner()),
        }
    }
}

/// A forwarded call that the owner did not answer (it stopped or its connection broke
/// mid-call) tells the client to try again: the partition is changing owner, and every call
/// that may be forwarded is idempotent.
fn from_peer(status: Status) -> Status {
    match status.code() {
        Code::Cancelled | Code::Unknown | Code::DeadlineExceeded => Status::unavailable(format!(
            "the owner of this conversation did not answer ({}); try again",
            status.message()
        )),
        _ => status,
    }
}

fn forwarded<T>(request: Request<T>) -> Request<T> {
    let mut out = Request::new(request.into_inner());
    out.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    out
}

#[tonic::async_trait]
impl ConversationService for ClusterCustomerApi {
    async fn start_conversation(
        &self,
        request: Request<StartConversationRequest>,
    ) -> Result<Response<StartConversationResponse>, Status> {
        // The new conversation gets an id in one of this router's partitions.
        self.inner.start_conversation(request).await
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.stream_events(request).await,
            Route::There(mut client) => {
                let stream = client
                    .stream_events(forwarded(request))
                    .await
                    .map_err(from_peer)?
                    .into_inner();
                Ok(Response::new(Box::pin(stream) as EventStream))
            }
        }
    }

    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.send_message(request).await,
            Route::There(mut client) => client
                .send_message(forwarded(request))
                .await
                .map_err(from_peer),
        }
    }

    async fn send_typing(
        &self,
        request: Request<SendTypingRequest>,
    ) -> Result<Response<SendTypingResponse>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.send_typing(request).await,
            Route::There(mut client) => client
                .send_typing(forwarded(request))
                .await
                .map_err(from_peer),
        }
    }

    async fn rate_conversation(
        &self,
        request: Request<RateConversationRequest>,
    ) -> Result<Response<RateConversationResponse>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.rate_conversation(request).await,
            Route::There(mut client) => client
                .rate_conversation(forwarded(request))
                .await
                .map_err(from_peer),
        }
    }

    async fn close_conversation(
        &self,
        request: Request<CloseConversationRequest>,
    ) -> Result<Response<CloseConversationResponse>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.close_conversation(request).await,
            Route::There(mut client) => client
                .close_conversation(forwarded(request))
                .await
                .map_err(from_peer),
        }
    }

    async fn leave_offline_message(
        &self,
        request: Request<LeaveOfflineMessageRequest>,
    ) -> Result<Response<LeaveOfflineMessageResponse>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.leave_offline_message(request).await,
            Route::There(mut client) => client
                .leave_offline_message(forwarded(request))
                .await
                .map_err(from_peer),
        }
    }

    async fn request_callback(
        &self,
        request: Request<RequestCallbackRequest>,
    ) -> Result<Response<RequestCallbackResponse>, Status> {
        let id = request.get_ref().conversation_id.clone();
        match self.route(&request, &id)? {
            Route::Here => self.inner.request_callback(request).await,
            Route::There(mut client) => client
                .request_callback(forwarded(request))
                .await
                .map_err(from_peer),
        }
    }
}
