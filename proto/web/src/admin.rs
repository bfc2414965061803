//! The Admin API over HTTP: `POST /v1/admin/{method}` (the RPC's name in kebab-case) with
//! the request message as JSON, answered by the node's own `Admin` service, so the operator
//! token (`Authorization: Bearer`) and its scopes are checked exactly as over gRPC. The
//! server streams are SSE: `GET /v1/admin/conversations/{id}/watch`,
//! `GET /v1/admin/integration-events/stream`, and `GET /v1/admin/snapshot/stream`, the
//! snapshot each second it changed (what a wallboard shows).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use centralino_proto::v1::admin_server::Admin;
use centralino_proto::v1::{
    GetSnapshotRequest, StreamIntegrationEventsRequest, WatchConversationRequest,
};
use futures::StreamExt;
use prost::Message;

use crate::call::{answer, decode, request};
use crate::customer::AfterQuery;
use crate::sse;
use crate::status::HttpError;

/// How often the snapshot stream looks at the snapshot.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// The unary Admin calls: (path segment, handler method, request message).
macro_rules! admin_unary {
    ($router:expr; $($path:literal => $method:ident($message:ty)),* $(,)?) => {{
        let mut router = $router;
        $(
            router = router.route(
                concat!("/v1/admin/", $path),
                post(|State(service): State<Arc<S>>, parts: Parts, body: Bytes| async move {
                    match decode::<$message>(&body, stringify!($message)) {
                        Ok(message) => answer(service.$method(request(&parts, message)).await),
                        Err(status) => HttpError(status).into_response(),
                    }
                }),
            );
        )*
        router
    }};
}

/// The Admin routes over `service`.
pub fn routes<S: Admin>(service: Arc<S>) -> Router {
    use centralino_proto::v1::*;
    let router = admin_unary!(Router::new();
        "get-snapshot" => get_snapshot(GetSnapshotRequest),
        "set-agent-status" => set_agent_status(SetAgentStatusRequest),
        "list-conversations" => list_conversations(ListConversationsRequest),
        "get-transcript" => get_transcript(GetTranscriptRequest),
        "force-transfer" => force_transfer(ForceTransferRequest),
        "set-customer-tier" => set_customer_tier(SetCustomerTierRequest),
        "export-customer" => export_customer(ExportCustomerRequest),
        "erase-customer" => erase_customer(EraseCustomerRequest),
        "put-directory-entry" => put_directory_entry(PutDirectoryEntryRequest),
        "get-directory-entry" => get_directory_entry(GetDirectoryEntryRequest),
        "list-directory-entries" => list_directory_entries(ListDirectoryEntriesRequest),
        "set-directory-entry-disabled" => set_directory_entry_disabled(SetDirectoryEntryDisabledRequest),
        "list-directory-audit" => list_directory_audit(ListDirectoryAuditRequest),
        "create-operator-token" => create_operator_token(CreateOperatorTokenRequest),
        "list-operator-tokens" => list_operator_tokens(ListOperatorTokensRequest),
        "revoke-operator-token" => revoke_operator_token(RevokeOperatorTokenRequest),
    );
    router
        .route("/v1/admin/conversations/{id}/watch", get(watch::<S>))
        .route("/v1/admin/integration-events/stream", get(integration::<S>))
        .route("/v1/admin/snapshot/stream", get(snapshots::<S>))
        .with_state(service)
}

async fn watch<S: Admin>(
    State(service): State<Arc<S>>,
    Path(id): Path<String>,
    Query(query): Query<AfterQuery>,
    parts: Parts,
) -> Response {
    let after_event_id = match sse::resume_point(&parts.headers, query.after.as_deref()) {
        Ok(after) => after,
        Err(status) => return HttpError(status).into_response(),
    };
    let message = WatchConversationRequest {
        conversation_id: id,
        after_event_id,
    };
    match service.watch_conversation(request(&parts, message)).await {
        Ok(stream) => sse::respond(stream.into_inner(), |e| Some(e.event_id)),
        Err(status) => HttpError(status).into_response(),
    }
}

async fn integration<S: Admin>(
    State(service): State<Arc<S>>,
    Query(query): Query<AfterQuery>,
    parts: Parts,
) -> Response {
    let after_event_id = match sse::resume_point(&parts.headers, query.after.as_deref()) {
        Ok(after) => after,
        Err(status) => return HttpError(status).into_response(),
    };
    let message = StreamIntegrationEventsRequest { after_event_id };
    match service
        .stream_integration_events(request(&parts, message))
        .await
    {
        Ok(stream) => sse::respond(stream.into_inner(), |e| Some(e.event_id)),
        Err(status) => HttpError(status).into_response(),
    }
}

/// The snapshot now, then each [`SNAPSHOT_INTERVAL`] when it changed. The first call's
/// refusal (no token, a token without the read scope) is the HTTP answer; a later one
/// ends the stream with an `error` event (a token revoked meanwhile).
async fn snapshots<S: Admin>(State(service): State<Arc<S>>, parts: Parts) -> Response {
    let first = match service
        .get_snapshot(request(&parts, GetSnapshotRequest {}))
        .await
    {
        Ok(snapshot) => snapshot.into_inner(),
        Err(status) => return HttpError(status).into_response(),
    };
    let state = (service, parts, Some(first), Vec::new(), false);
    let events = futures::stream::unfold(state, |(service, parts, next, last, ended)| async move {
        if ended {
            return None;
        }
        let mut next = next;
        let mut last = last;
        loop {
            let snapshot = match next.take() {
                Some(s) => s,
                None => {
                    tokio::time::sleep(SNAPSHOT_INTERVAL).await;
                    match service
                        .get_snapshot(request(&parts, GetSnapshotRequest {}))
                        .await
                    {
                        Ok(s) => s.into_inner(),
                        Err(status) => {
                            let event = sse::error_event(&status);
                            return Some((Ok(event), (service, parts, None, last, true)));
                        }
                    }
                }
            };
            let encoded = snapshot.encode_to_vec();
            if encoded != last {
                last = encoded;
                let data = serde_json::to_string(&snapshot).unwrap_or_default();
                let event = axum::response::sse::Event::default()
                    .event("snapshot")
                    .data(data);
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (service, parts, None, last, false),
                ));
            }
        }
    });
    Sse::new(events.boxed())
        .keep_alive(KeepAlive::new().interval(sse::KEEPALIVE).text("keepalive"))
        .into_response()
}
