//! Routers talking to routers and agent-nodes talking to routers: the `RouterInternal`
//! service (agent-node calls about conversations, queue and conversation messages), and the
//! customer API of a clustered router, which forwards calls for conversations of other
//! routers' partitions to their owners.

use std::pin::Pin;
use std::sync::Arc;

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

/// The `RouterInternal` service of a clustered router.
pub struct InternalApi {
    router: Arc<Router>,
    dispatch: Arc<Dispatch>,
    view: Arc<ClusterView>,
}

impl InternalApi {
    /// Returns the service.
    pub fn new(router: Arc<Router>, dispatch: Arc<Dispatch>, view: Arc<ClusterView>) -> Self {
        Self {
            router,
            dispatch,
            view,
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
        let mut r = request.into_inner();
        if r.conversation_id.is_empty() || r.conversation_id.len() > 256 {
            return Err(Status::invalid_argument("conversation_id"));
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
        let agent_id = request.into_inner().agent_id;
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

    async fn tell(&self, request: Request<TellRequest>) -> Result<Response<Empty>, Status> {
        let mut r = request.into_inner();
        if !r.conversation_id.is_empty() {
            let msg: ToConversation = serde_json::from_slice(&r.payload)
                .map_err(|e| Status::invalid_argument(format!("payload: {e}")))?;
            if let Some(actor) = self.router.conversation(&r.conversation_id) {
                msg.deliver(&actor);
            } else if let Owner::Remote(addr) =
                self.router.shared.owner(partition_of(&r.conversation_id))
            {
                if !r.forwarded {
                    r.forwarded = true;
                    self.view.router(&addr)?.tell(r).await?;
                }
            }
        } else {
            let msg: ToQueue = serde_json::from_slice(&r.payload)
                .map_err(|e| Status::invalid_argument(format!("payload: {e}")))?;
            if let Some(queue) = self.router.queue(&r.department) {
                msg.deliver(&queue);
            } else if let Owner::Remote(addr) =
                self.router.shared.owner(partition_of(&r.department))
            {
                if !r.forwarded {
                    r.forwarded = true;
                    self.view.router(&addr)?.tell(r).await?;
                }
            }
        }
        Ok(Response::new(Empty {}))
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
