//! The customer `ConversationService`.

use std::collections::BTreeMap;
use std::sync::Arc;

use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::{
    CloseConversationRequest, CloseConversationResponse, LeaveOfflineMessageRequest,
    LeaveOfflineMessageResponse, RateConversationRequest, RateConversationResponse,
    RequestCallbackRequest, RequestCallbackResponse, SendMessageRequest, SendMessageResponse,
    StartConversationRequest, StartConversationResponse, StreamEventsRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::conversation::start::start_conversation;
use crate::conversation::{
    Callback, ConversationActor, CustomerClose, CustomerSend, LeaveOffline, Rate, Subscribe,
};
use crate::identity::wall_clock_secs;
use crate::metrics as m;
use crate::router::Router;

use super::validate::{check_field, mailbox, reject, wait_durable, EventStream, MAX_PAGES_VISITED};

/// Longest identity or visitor token accepted, in bytes (room for an RS256 shop JWT).
const MAX_TOKEN_BYTES: usize = 4096;

/// The customer API.
#[derive(Clone)]
pub struct CustomerApi {
    router: Arc<Router>,
}

impl CustomerApi {
    /// Returns the service over `router`.
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }

    fn conversation(&self, id: &str) -> Result<actix::Addr<ConversationActor>, Status> {
        check_field(
            id,
            "conversation_id",
            self.router.shared.config.limits.max_field_bytes,
            true,
        )?;
        self.router
            .conversation(id)
            .ok_or_else(|| Status::not_found("no open conversation with this id"))
    }

    /// Checks the fields of a start request, then starts the conversation.
    async fn start(
        &self,
        req: StartConversationRequest,
    ) -> Result<StartConversationResponse, Status> {
        let limits = &self.router.shared.config.limits;
        check_field(
            &req.customer_id,
            "customer_id",
            limits.max_field_bytes,
            false,
        )?;
        for (token, field) in [
            (&req.identity_token, "identity_token"),
            (&req.visitor_token, "visitor_token"),
        ] {
            check_field(token, field, MAX_TOKEN_BYTES, false)?;
        }
        check_field(
            &req.display_name,
            "display_name",
            limits.max_field_bytes,
            false,
        )?;
        check_field(&req.department, "department", limits.max_field_bytes, true)?;
        check_field(&req.language, "language", limits.max_field_bytes, true)?;
        if req.first_message.len() > limits.max_message_bytes {
            return Err(Status::invalid_argument(format!(
                "first_message is longer than {} bytes",
                limits.max_message_bytes
            )));
        }
        if let Some(visitor) = &req.visitor {
            check_field(&visitor.current_page, "visitor.current_page", 2048, false)?;
            check_field(&visitor.referrer, "visitor.referrer", 2048, false)?;
            if visitor.pages_visited.len() > MAX_PAGES_VISITED
                || visitor.pages_visited.iter().any(|p| p.len() > 2048)
            {
                return Err(Status::invalid_argument(format!(
                    "visitor.pages_visited holds at most {MAX_PAGES_VISITED} pages of 2048 bytes"
                )));
            }
        }
        let subject = self
            .router
            .shared
            .identity
            .resolve(
                &req.customer_id,
                &req.identity_token,
                &req.visitor_token,
                wall_clock_secs(),
            )
            .inspect_err(|e| {
                m::identity_refused(e.reason());
                info!(reason = e.reason(), "identity token refused");
            })?;
        start_conversation(&self.router, req, subject).await
    }
}

#[tonic::async_trait]
impl ConversationService for CustomerApi {
    async fn start_conversation(
        &self,
        request: Request<StartConversationRequest>,
    ) -> Result<Response<StartConversationResponse>, Status> {
        reject(self.start(request.into_inner()).await).map(Response::new)
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let req = request.into_inner();
        let result = async {
            let rx = self
                .conversation(&req.conversation_id)?
                .send(Subscribe {
                    token: Some(req.token),
                    after_event_id: req.after_event_id,
                })
                .await
                .map_err(mailbox)??;
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as EventStream
            ))
        }
        .await;
        reject(result)
    }

    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let limits = &self.router.shared.config.limits;
            check_field(&req.message_id, "message_id", limits.max_field_bytes, true)?;
            if req.text.trim().is_empty() {
                return Err(Status::invalid_argument("text must not be empty"));
            }
            if req.text.len() > limits.max_message_bytes {
                return Err(Status::invalid_argument(format!(
                    "text is longer than {} bytes",
                    limits.max_message_bytes
                )));
            }
            let (seq, duplicate, durable) = self
                .conversation(&req.conversation_id)?
                .send(CustomerSend {
                    token: req.token,
                    message_id: req.message_id,
                    text: req.text,
                })
                .await
                .map_err(mailbox)??;
            wait_durable(durable).await?;
            Ok(Response::new(SendMessageResponse { seq, duplicate }))
        }
        .await;
        reject(result)
    }

    async fn rate_conversation(
        &self,
        request: Request<RateConversationRequest>,
    ) -> Result<Response<RateConversationResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let durable = self
                .conversation(&req.conversation_id)?
                .send(Rate {
                    token: req.token,
                    good: req.good,
                    comment: req.comment,
                })
                .await
                .map_err(mailbox)??;
            wait_durable(Some(durable)).await?;
            Ok(Response::new(RateConversationResponse {}))
        }
        .await;
        reject(result)
    }

    async fn leave_offline_message(
        &self,
        request: Request<LeaveOfflineMessageRequest>,
    ) -> Result<Response<LeaveOfflineMessageResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let max = self.router.shared.config.limits.max_field_bytes;
            check_field(&req.name, "name", max, false)?;
            check_field(&req.email, "email", max, false)?;
            check_field(&req.phone, "phone", max, false)?;
            if req.text.trim().is_empty() {
                return Err(Status::invalid_argument("text must not be empty"));
            }
            if req.text.len() > self.router.shared.config.limits.max_message_bytes {
                return Err(Status::invalid_argument("text is too long"));
            }
            if req.email.trim().is_empty() && req.phone.trim().is_empty() {
                return Err(Status::invalid_argument(
                    "leave an email address or a phone number so we can answer",
                ));
            }
            if !req.email.is_empty() && !req.email.contains('@') {
                return Err(Status::invalid_argument("email is not an email address"));
            }
            let details = BTreeMap::from([
                ("name".to_string(), req.name),
                ("email".to_string(), req.email),
                ("phone".to_string(), req.phone),
                ("text".to_string(), req.text),
            ]);
            let durable = self
                .conversation(&req.conversation_id)?
                .send(LeaveOffline {
                    token: req.token,
                    details,
                })
                .await
                .map_err(mailbox)??;
            wait_durable(Some(durable)).await?;
            Ok(Response::new(LeaveOfflineMessageResponse {}))
        }
        .await;
        reject(result)
    }

    async fn request_callback(
        &self,
        request: Request<RequestCallbackRequest>,
    ) -> Result<Response<RequestCallbackResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let max = self.router.shared.config.limits.max_field_bytes;
            check_field(&req.phone, "phone", max, true)?;
            check_field(&req.preferred_time, "preferred_time", max, false)?;
            if !req
                .phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-()/.".contains(c))
            {
                return Err(Status::invalid_argument("phone is not a phone number"));
            }
            let details = BTreeMap::from([
                ("phone".to_string(), req.phone),
                ("preferred_time".to_string(), req.preferred_time),
            ]);
            let durable = self
                .conversation(&req.conversation_id)?
                .send(Callback {
                    token: req.token,
                    details,
                })
                .await
                .map_err(mailbox)??;
            wait_durable(Some(durable)).await?;
            Ok(Response::new(RequestCallbackResponse {}))
        }
        .await;
        reject(result)
    }

    async fn close_conversation(
        &self,
        request: Request<CloseConversationRequest>,
    ) -> Result<Response<CloseConversationResponse>, Status> {
        let req = request.into_inner();
        let result = async {
            let (outcome, durable) = self
                .conversation(&req.conversation_id)?
                .send(CustomerClose { token: req.token })
                .await
                .map_err(mailbox)??;
            wait_durable(durable).await?;
            Ok(Response::new(CloseConversationResponse {
                outcome: outcome as i32,
            }))
        }
        .await;
        reject(result)
    }
}
