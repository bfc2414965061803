//! The customer `ConversationService`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use centralino_base::config::ClockMode;
use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::{
    CloseConversationRequest, CloseConversationResponse, LeaveOfflineMessageRequest,
    LeaveOfflineMessageResponse, RateConversationRequest, RateConversationResponse,
    RequestCallbackRequest, RequestCallbackResponse, SendMessageRequest, SendMessageResponse,
    SendTypingRequest, SendTypingResponse, StartConversationRequest, StartConversationResponse,
    StreamEventsRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::conversation::start::start_conversation;
use crate::conversation::{
    Callback, ConversationActor, CustomerClose, CustomerSend, CustomerTyping, LeaveOffline, Rate,
    Subscribe,
};
use crate::identity::wall_clock_secs;
use crate::metrics as m;
use crate::router::Router;

use super::rate::RateLimits;
use super::validate::{check_field, mailbox, reject, EventStream, MAX_PAGES_VISITED};

/// Longest identity or visitor token accepted, in bytes (room for an RS256 shop JWT).
const MAX_TOKEN_BYTES: usize = 4096;
/// Metadata a router sets on a customer call it forwards to the partition's owner (the
/// cluster's forwarding). Such a call comes from the peer's address and over the peer's
/// shared connection, so the per-address and per-connection limits were applied by the
/// router that took the call; the per-customer, per-conversation and per-token limits
/// apply here. The header is believed only by the service on the internal plane
/// ([`CustomerApi::for_peers`]).
pub const FORWARDED_HEADER: &str = "x-centralino-forwarded";

/// The customer API.
#[derive(Clone)]
pub struct CustomerApi {
    router: Arc<Router>,
    /// Rate limits on starts and messages.
    rates: Arc<RateLimits>,
    /// Open event streams per client connection.
    streams: Arc<ConnectionStreams>,
    /// Whether [`FORWARDED_HEADER`] is believed: only on the internal plane, where mutual
    /// TLS lets routers alone in. On a public listener anybody could set it.
    trust_forwarded: bool,
}

impl CustomerApi {
    /// Returns the service over `router`.
    pub fn new(router: Arc<Router>) -> Self {
        let config = &router.shared.config;
        let limits = &config.limits;
        let speed = match config.clock.mode {
            ClockMode::Simulated => config.clock.speed,
            ClockMode::System => 1.0,
        };
        Self {
            rates: Arc::new(RateLimits::new(limits, speed)),
            streams: Arc::new(ConnectionStreams::new(limits.max_streams_per_connection)),
            router,
            trust_forwarded: false,
        }
    }

    /// Returns the service for the internal plane: calls that carry [`FORWARDED_HEADER`]
    /// were forwarded by a router, which applied the per-address and per-connection limits.
    pub fn for_peers(mut self) -> Self {
        self.trust_forwarded = true;
        self
    }

    /// Returns the client address of a request; `None` for a call a router forwarded
    /// (believed on the internal plane only).
    fn client_addr<T>(&self, request: &Request<T>) -> Option<SocketAddr> {
        if self.trust_forwarded && request.metadata().get(FORWARDED_HEADER).is_some() {
            return None;
        }
        request.remote_addr()
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
        self.rates.start(None, &subject.profile_id())?;
        start_conversation(&self.router, req, subject).await
    }
}

#[tonic::async_trait]
impl ConversationService for CustomerApi {
    async fn start_conversation(
        &self,
        request: Request<StartConversationRequest>,
    ) -> Result<Response<StartConversationResponse>, Status> {
        let addr = self.client_addr(&request).map(|a| a.ip());
        // The per-customer limit is counted once the identity is known (in `start`): a
        // customer_id without the shop's signature must not use up that customer's starts.
        reject(self.rates.start(addr, ""))?;
        reject(self.start(request.into_inner()).await).map(Response::new)
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let connection = self.client_addr(&request);
        let req = request.into_inner();
        let result = async {
            let actor = match self.conversation(&req.conversation_id) {
                Ok(actor) => actor,
                // Closed just before its partition moved here: the transcript's last
                // messages and `closed`, then the stream ends.
                Err(status) if status.code() == tonic::Code::NotFound => {
                    let Some(events) = self.router.shared.tombstones.resume(
                        &req.conversation_id,
                        &req.token,
                        req.after_event_id,
                    )?
                    else {
                        return Err(status);
                    };
                    return Ok(Response::new(
                        Box::pin(tokio_stream::iter(events.into_iter().map(Ok))) as EventStream,
                    ));
                }
                Err(status) => return Err(status),
            };
            // One connection may hold only so many streams (all conversations together).
            let held = match connection {
                Some(connection) => Some(self.streams.open(connection)?),
                None => None,
            };
            let rx = actor
                .send(Subscribe {
                    token: Some(req.token),
                    after_event_id: req.after_event_id,
                })
                .await
                .map_err(mailbox)??;
            Ok(Response::new(Box::pin(HeldStream {
                inner: ReceiverStream::new(rx),
                _held: held,
            }) as EventStream))
        }
        .await;
        reject(result)
    }

    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let addr = self.client_addr(&request).map(|a| a.ip());
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
            self.rates.message(addr, &req.conversation_id)?;
            let (seq, duplicate) = self
                .conversation(&req.conversation_id)?
                .send(CustomerSend {
                    token: req.token,
                    message_id: req.message_id,
                    text: req.text,
                })
                .await
                .map_err(mailbox)??;
            Ok(Response::new(SendMessageResponse { seq, duplicate }))
        }
        .await;
        reject(result)
    }

    async fn send_typing(
        &self,
        request: Request<SendTypingRequest>,
    ) -> Result<Response<SendTypingResponse>, Status> {
        // Rate-limited per conversation in the actor (dropped, not refused: typing is best
        // effort), which also checks the token as for a message.
        let req = request.into_inner();
        let result = async {
            let forwarded = self
                .conversation(&req.conversation_id)?
                .send(CustomerTyping {
                    token: req.token,
                    typing: req.typing,
                })
                .await
                .map_err(mailbox)??;
            Ok(Response::new(SendTypingResponse { forwarded }))
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
            self.conversation(&req.conversation_id)?
                .send(Rate {
                    token: req.token,
                    good: req.good,
                    comment: req.comment,
                })
                .await
                .map_err(mailbox)??;
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
            self.conversation(&req.conversation_id)?
                .send(LeaveOffline {
                    token: req.token,
                    details,
                })
                .await
                .map_err(mailbox)??;
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
            self.conversation(&req.conversation_id)?
                .send(Callback {
                    token: req.token,
                    details,
                })
                .await
                .map_err(mailbox)??;
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
            let outcome = self
                .conversation(&req.conversation_id)?
                .send(CustomerClose {
                    token: req.token,
                    sent_at: std::time::Instant::now(),
                })
                .await
                .map_err(mailbox)??;
            Ok(Response::new(CloseConversationResponse {
                outcome: outcome as i32,
            }))
        }
        .await;
        reject(result)
    }
}

/// Open event streams per client connection (remote address and port), at most `max` each.
pub struct ConnectionStreams {
    open: parking_lot::Mutex<HashMap<SocketAddr, usize>>,
    max: usize,
}

impl ConnectionStreams {
    /// Returns an empty count with `max` streams per connection.
    pub fn new(max: usize) -> Self {
        Self {
            open: parking_lot::Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Counts one more stream on `connection`, until the returned guard drops; refuses
    /// it with RESOURCE_EXHAUSTED when the connection holds `max` already.
    fn open(self: &Arc<Self>, connection: SocketAddr) -> Result<StreamHeld, Status> {
        let mut open = self.open.lock();
        let count = open.entry(connection).or_insert(0);
        if *count >= self.max {
            crate::metrics::limit_refused("streams_connection");
            return Err(Status::resource_exhausted(format!(
                "this connection holds {} event streams already; close one first",
                self.max
            )));
        }
        *count += 1;
        Ok(StreamHeld {
            streams: self.clone(),
            connection,
        })
    }

    /// Returns how many streams `connection` holds.
    pub fn held(&self, connection: &SocketAddr) -> usize {
        self.open.lock().get(connection).copied().unwrap_or(0)
    }
}

/// One open stream of a connection; dropping it (the stream ended) frees the place.
struct StreamHeld {
    streams: Arc<ConnectionStreams>,
    connection: SocketAddr,
}

impl Drop for StreamHeld {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock();
        if let Some(count) = open.get_mut(&self.connection) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.connection);
            }
        }
    }
}

/// An event stream that holds its connection's place while it lives.
struct HeldStream<S> {
    inner: S,
    _held: Option<StreamHeld>,
}

impl<S: Stream + Unpin> Stream for HeldStream<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
