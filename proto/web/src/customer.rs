//! The customer API over HTTP: every route calls the node's own `ConversationService`
//! (standalone or the cluster router's forwarding one), so the limits, the identity rules
//! and the answers are those of gRPC.
//!
//! The conversation id comes from the path; the conversation token from
//! `Authorization: Bearer` (or the body's `token`, as in gRPC).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::{
    CloseConversationRequest, LeaveOfflineMessageRequest, RateConversationRequest,
    RequestCallbackRequest, SendMessageRequest, SendTypingRequest, StartConversationRequest,
    StreamEventsRequest,
};
use serde::Deserialize;
use tonic::Status;

use crate::call::{answer, decode, path_id, request, token_from_header};
use crate::sse;
use crate::status::HttpError;

/// Query parameters of the event stream.
#[derive(Debug, Deserialize)]
pub struct AfterQuery {
    /// Resume after this event id (when there is no `Last-Event-ID`).
    pub after: Option<String>,
}

/// The customer routes over `service`.
pub fn routes<S: ConversationService>(service: Arc<S>) -> Router {
    Router::new()
        .route("/v1/conversations", post(start::<S>))
        .route("/v1/conversations/{id}/events", get(events::<S>))
        .route("/v1/conversations/{id}/messages", post(send::<S>))
        .route("/v1/conversations/{id}/typing", post(typing::<S>))
        .route("/v1/conversations/{id}/rating", post(rate::<S>))
        .route("/v1/conversations/{id}/close", post(close::<S>))
        .route("/v1/conversations/{id}/offline-message", post(offline::<S>))
        .route("/v1/conversations/{id}/callback", post(callback::<S>))
        .with_state(service)
}

async fn start<S: ConversationService>(
    State(service): State<Arc<S>>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let message: StartConversationRequest = match decode(&body, "StartConversationRequest") {
        Ok(m) => m,
        Err(status) => return HttpError(status).into_response(),
    };
    answer(service.start_conversation(request(&parts, message)).await)
}

async fn events<S: ConversationService>(
    State(service): State<Arc<S>>,
    Path(id): Path<String>,
    Query(query): Query<AfterQuery>,
    parts: Parts,
) -> Response {
    let after_event_id = match sse::resume_point(&parts.headers, query.after.as_deref()) {
        Ok(after) => after,
        Err(status) => return HttpError(status).into_response(),
    };
    let mut message = StreamEventsRequest {
        conversation_id: id,
        token: String::new(),
        after_event_id,
    };
    token_from_header(&mut message.token, &parts.headers);
    match service.stream_events(request(&parts, message)).await {
        Ok(stream) => sse::respond(stream.into_inner(), |e| Some(e.event_id)),
        Err(status) => HttpError(status).into_response(),
    }
}

/// A customer call about one conversation: decodes the body, fills its id and token.
#[allow(clippy::result_large_err)]
fn about<T>(
    id: &str,
    parts: &Parts,
    body: &Bytes,
    name: &str,
    fields: impl FnOnce(&mut T) -> (&mut String, &mut String),
) -> Result<tonic::Request<T>, Status>
where
    T: serde::de::DeserializeOwned + Default,
{
    let mut message: T = decode(body, name)?;
    let (conversation_id, token) = fields(&mut message);
    path_id(conversation_id, id, "conversationId")?;
    token_from_header(token, &parts.headers);
    Ok(request(parts, message))
}

macro_rules! conversation_call {
    ($name:ident, $message:ty, $method:ident) => {
        async fn $name<S: ConversationService>(
            State(service): State<Arc<S>>,
            Path(id): Path<String>,
            parts: Parts,
            body: Bytes,
        ) -> Response {
            let request = match about::<$message>(&id, &parts, &body, stringify!($message), |m| {
                (&mut m.conversation_id, &mut m.token)
            }) {
                Ok(r) => r,
                Err(status) => return HttpError(status).into_response(),
            };
            answer(service.$method(request).await)
        }
    };
}

conversation_call!(send, SendMessageRequest, send_message);
conversation_call!(typing, SendTypingRequest, send_typing);
conversation_call!(rate, RateConversationRequest, rate_conversation);
conversation_call!(close, CloseConversationRequest, close_conversation);
conversation_call!(offline, LeaveOfflineMessageRequest, leave_offline_message);
conversation_call!(callback, RequestCallbackRequest, request_callback);
