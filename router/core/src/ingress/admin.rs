//! The operator `Admin` service: snapshots, agents' status, transcripts, transfers,
//! customer tiers and the integration event stream.

use std::pin::Pin;
use std::sync::Arc;

use centralino_base::credentials::{self, Scope};
use centralino_base::oidc::{self, OidcVerifier};
use centralino_base::rate::with_pushback;
use centralino_base::throttle::{LoginThrottle, Verdict};
use centralino_link::AgentAdmin;
use centralino_link::TransferTarget;
use centralino_proto::v1::admin_server::Admin;
use centralino_proto::v1::{
    AgentSnapshot, AgentStatus, ConversationOutcome, ConversationSummary,
    Counters as CountersProto, ForceTransferRequest, ForceTransferResponse, GetSnapshotRequest,
    GetTranscriptRequest, IntegrationEvent, ListConversationsRequest, ListConversationsResponse,
    SetAgentStatusRequest, SetAgentStatusResponse, SetCustomerTierRequest, SetCustomerTierResponse,
    Snapshot, StreamIntegrationEventsRequest, Transcript, WatchConversationRequest,
};
use futures::Stream;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::conversation::{GetTranscript, Subscribe, Transfer};
use crate::metrics as m;
use crate::queue::GetStats;
use crate::router::Router;
use crate::store::archive::{Archived, Filter};
use crate::store::events::to_proto;
use crate::store::profiles::status as record_status;
use crate::store::records::Outcome;

use super::validate::{check_field, mailbox, reject, EventStream};

/// Integration events an event stream holds for its reader before it waits for them.
const STREAM_BUFFER: usize = 256;
/// Events an event stream reads from the outbox at a time.
const STREAM_BATCH: usize = 256;

/// The operator API. Every call needs a bearer token with the call's scope (see
/// [`required_scope`]): an `[[operators]]` token (SHA-256 digest compared in constant time),
/// a JWT of the `[oidc]` identity provider with the scope in its scopes claim, or — in dev
/// mode only — `node.admin_token` (every scope). Unknown tokens get UNAUTHENTICATED, known
/// ones without the scope PERMISSION_DENIED.
///
/// Every call answers for this router: in cluster mode the router's public listener serves
/// a wrapper that fans `GetSnapshot` out and forwards calls about other routers'
/// conversations to this service on their owners' internal listeners
/// ([`for_peers`](Self::for_peers)).
///
/// Unknown tokens are throttled per client address like failed agent logins
/// ([`centralino_base::throttle`]): after [`OPERATOR_FREE_FAILURES`] of them, each further
/// call from that address is refused for a doubling delay (RESOURCE_EXHAUSTED with the
/// retry pushback) without its token being looked at; a known token clears the count.
#[derive(Clone)]
pub struct AdminApi {
    router: Arc<Router>,
    agents: Arc<dyn AgentAdmin>,
    oidc: Option<Arc<OidcVerifier>>,
    trust_callers: bool,
    failures: Arc<Mutex<LoginThrottle>>,
}

/// Unknown operator tokens from one client address before its calls are delayed.
pub const OPERATOR_FREE_FAILURES: u32 = 10;

/// The scope each Admin call requires (`admin` grants every call, `supervisor` also the
/// read-only ones).
pub fn required_scope(method: &str) -> Scope {
    match method {
        "ForceTransfer" | "SetAgentStatus" | "SetCustomerTier" => Scope::Supervisor,
        "StreamIntegrationEvents" => Scope::Integration,
        "GetSnapshot" | "ListConversations" | "GetTranscript" | "WatchConversation" => {
            Scope::ReadOnly
        }
        _ => Scope::Admin,
    }
}

impl AdminApi {
    /// Returns the service over `router` and the local agent-node, with its own verifier
    /// of `[oidc]` tokens.
    pub fn new(router: Arc<Router>, agents: Arc<dyn AgentAdmin>) -> Self {
        let oidc = match OidcVerifier::from_config(&router.shared.config.oidc) {
            Ok(v) => v.map(Arc::new),
            Err(e) => {
                warn!(error = %e, "OIDC disabled for the admin API: the JWKS cannot be read");
                None
            }
        };
        Self::with_oidc(router, agents, oidc)
    }

    /// Returns the service verifying `[oidc]` tokens with `oidc` (the node's agent-side
    /// verifier, so that one process keeps one key set and one JWKS refresh).
    pub fn with_oidc(
        router: Arc<Router>,
        agents: Arc<dyn AgentAdmin>,
        oidc: Option<Arc<OidcVerifier>>,
    ) -> Self {
        Self {
            router,
            agents,
            oidc,
            trust_callers: false,
            failures: Arc::new(Mutex::new(LoginThrottle::default())),
        }
    }

    /// Returns the service for the internal plane, where other routers forward the Admin
    /// calls their operators made. With `trusted` (mutual TLS, and the listener lets only
    /// routers through) the entry router has checked the operator's scope and calls are
    /// served without a token; without (dev mode's plaintext internal plane) the forwarded
    /// `authorization` is checked again.
    pub fn for_peers(mut self, trusted: bool) -> Self {
        self.trust_callers = trusted;
        self
    }

    /// Checks that `request` carries a token with the scope `method` needs (see
    /// [`required_scope`]): UNAUTHENTICATED without a known token, PERMISSION_DENIED
    /// without the scope. Counted as a rejected request when it fails.
    pub async fn check_scope<T>(&self, request: &Request<T>, method: &str) -> Result<(), Status> {
        reject(self.authorize(request, method).await)
    }

    async fn authorize<T>(&self, request: &Request<T>, method: &str) -> Result<(), Status> {
        if self.trust_callers {
            return Ok(());
        }
        let required = required_scope(method);
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let client = request.remote_addr().map(|a| a.ip());
        let key = client.map(|ip| format!("addr:{ip}"));
        let now = self.router.shared.clock.now_ms();
        if let Some(key) = &key {
            if let Verdict::Wait(wait_ms) = self.failures.lock().check(key, now) {
                m::admin_auth_refused("throttled");
                warn!(method, client = ?client, wait_ms, "admin call refused: too many unknown tokens from this address");
                let secs = (wait_ms + 999) / 1000;
                return Err(with_pushback(
                    Status::resource_exhausted(format!(
                        "too many calls with unknown tokens; try again in {secs} s"
                    )),
                    wait_ms.max(1) as u64,
                ));
            }
        }
        let Some((who, scopes)) = self.identify(given).await else {
            if let Some(key) = &key {
                self.failures
                    .lock()
                    .failed(key, OPERATOR_FREE_FAILURES, now);
            }
            m::admin_auth_refused("unknown_token");
            warn!(method, client = ?client, "admin call refused: unknown token");
            return Err(Status::unauthenticated("unknown or invalid token"));
        };
        if let Some(key) = &key {
            self.failures.lock().succeeded(key);
        }
        if scopes.iter().any(|s| s.grants(required)) {
            Ok(())
        } else {
            warn!(method, operator = %who, %required, "admin call refused: missing scope");
            Err(Status::permission_denied(format!(
                "{method} needs the {required} scope"
            )))
        }
    }

    /// Returns who holds `token` and their scopes, or `None` for an unknown token.
    async fn identify(&self, token: &str) -> Option<(String, BTreeSet<Scope>)> {
        let config = &self.router.shared.config;
        let mut found = None;
        // Every digest is compared (no early exit on a match): timing tells nothing.
        let digest = credentials::token_hash(token);
        for op in &config.operators {
            if credentials::constant_time_eq(digest.as_bytes(), op.token_hash.as_bytes()) {
                found = Some((op.name.clone(), op.scopes.iter().copied().collect()));
            }
        }
        if found.is_some() {
            return found;
        }
        let dev_token = &config.node.admin_token;
        if config.node.dev_mode
            && !dev_token.is_empty()
            && credentials::constant_time_eq(token.as_bytes(), dev_token.as_bytes())
        {
            return Some(("admin_token".to_string(), Scope::ALL.into_iter().collect()));
        }
        if let Some(verifier) = &self.oidc {
            if oidc::looks_like_jwt(token) {
                match verifier.operator(token).await {
                    Ok((subject, scopes)) => return Some((format!("oidc:{subject}"), scopes)),
                    Err(e) => warn!(error = %e, "admin JWT refused"),
                }
            }
        }
        None
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        reject(self.authorize(&request, "GetSnapshot").await)?;
        let mut queues = Vec::new();
        for (_, queue) in self.router.queues() {
            queues.push(queue.send(GetStats).await.map_err(mailbox)?);
        }
        let live = self.agents.availability().await;
        let mut agents: Vec<AgentSnapshot> = live
            .iter()
            .map(|a| AgentSnapshot {
                agent_id: a.agent_id.clone(),
                display_name: a.display_name.clone(),
                status: a.status as i32,
                load: a.load,
                capacity: a.capacity,
                team: a.team.clone(),
            })
            .collect();
        for account in self.agents.accounts() {
            if !live.iter().any(|a| a.agent_id == account.id) {
                agents.push(AgentSnapshot {
                    agent_id: account.id.clone(),
                    display_name: account.name.clone(),
                    status: AgentStatus::Offline as i32,
                    load: 0,
                    capacity: account.capacity,
                    team: account.team.clone(),
                });
            }
        }
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let c = &self.router.shared.counters;
        let get = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
        let counters = CountersProto {
            conversations_started: get(&c.started),
            conversations_completed: get(&c.completed),
            conversations_abandoned: get(&c.abandoned),
            conversations_open: c.open.load(Ordering::Relaxed).max(0) as u64,
            sticky_hits: get(&c.sticky_hits),
            sticky_misses: get(&c.sticky_misses),
            sticky_timeouts: get(&c.sticky_timeouts),
            offers: get(&c.offers),
            offers_accepted: get(&c.offers_accepted),
            offers_declined: get(&c.offers_declined),
            offers_timed_out: get(&c.offers_timed_out),
            csat_good: get(&c.csat_good),
            csat_bad: get(&c.csat_bad),
            messages: get(&c.messages),
            conversations_offline: get(&c.offline),
            conversations_escalated: get(&c.escalated),
            transfers: get(&c.transfers),
            language_handovers: get(&c.handovers),
            recontacts: get(&c.recontacts),
        };
        Ok(Response::new(Snapshot {
            queues,
            agents,
            counters: Some(counters),
            now_unix_ms: self.router.shared.clock.now_ms(),
            routers: Vec::new(),
            routers_missing: Vec::new(),
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        reject(self.authorize(&request, "ListConversations").await)?;
        let req = request.into_inner();
        let rating = match req.rating.as_str() {
            "" => None,
            "good" => Some(Some(true)),
            "bad" => Some(Some(false)),
            "unrated" => Some(None),
            other => {
                return reject(Err(Status::invalid_argument(format!(
                    "rating must be good, bad, unrated or empty, not {other:?}"
                ))))
            }
        };
        let filter = Filter {
            agent_id: (!req.agent_id.is_empty()).then_some(req.agent_id),
            department: (!req.department.is_empty()).then_some(req.department),
            from_ms: (req.from_unix_ms > 0).then_some(req.from_unix_ms),
            to_ms: (req.to_unix_ms > 0).then_some(req.to_unix_ms),
            rating,
        };
        let limit = match req.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let archive = self.router.shared.archive.clone();
        let found = tokio::task::spawn_blocking(move || archive.list(&filter, limit))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::unavailable(format!("archive: {e}")))?;
        Ok(Response::new(ListConversationsResponse {
            conversations: found.iter().map(summary).collect(),
        }))
    }

    async fn get_transcript(
        &self,
        request: Request<GetTranscriptRequest>,
    ) -> Result<Response<Transcript>, Status> {
        reject(self.authorize(&request, "GetTranscript").await)?;
        let id = request.into_inner().conversation_id;
        reject(check_field(&id, "conversation_id", 256, true))?;
        let archived = match self.router.conversation(&id) {
            Some(actor) => {
                let (conversation, transcript) =
                    actor.send(GetTranscript).await.map_err(mailbox)?;
                Some(Archived {
                    conversation,
                    transcript,
                })
            }
            None => {
                let archive = self.router.shared.archive.clone();
                let key = id.clone();
                tokio::task::spawn_blocking(move || archive.find(&key))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| Status::unavailable(format!("archive: {e}")))?
            }
        };
        let archived = reject(archived.ok_or_else(|| Status::not_found("no such conversation")))?;
        Ok(Response::new(Transcript {
            conversation: Some(summary(&archived)),
            messages: archived.transcript.iter().map(|m| m.to_proto()).collect(),
            notes: archived.conversation.notes.clone(),
            summary: archived.conversation.summary.clone(),
        }))
    }

    type WatchConversationStream = EventStream;

    async fn watch_conversation(
        &self,
        request: Request<WatchConversationRequest>,
    ) -> Result<Response<Self::WatchConversationStream>, Status> {
        reject(self.authorize(&request, "WatchConversation").await)?;
        let req = request.into_inner();
        let actor = reject(
            self.router
                .conversation(&req.conversation_id)
                .ok_or_else(|| Status::not_found("no open conversation with this id")),
        )?;
        let rx = actor
            .send(Subscribe {
                token: None,
                after_event_id: req.after_event_id,
            })
            .await
            .map_err(mailbox)??;
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as EventStream
        ))
    }

    async fn force_transfer(
        &self,
        request: Request<ForceTransferRequest>,
    ) -> Result<Response<ForceTransferResponse>, Status> {
        reject(self.authorize(&request, "ForceTransfer").await)?;
        let req = request.into_inner();
        let target = match (
            req.agent_id.is_empty(),
            req.department.is_empty(),
            req.language.is_empty(),
        ) {
            (false, true, true) => TransferTarget::Agent(req.agent_id),
            (true, false, true) => TransferTarget::Department(req.department),
            (true, true, false) => TransferTarget::Language(req.language),
            _ => {
                return reject(Err(Status::invalid_argument(
                    "give exactly one of agent_id, department, language",
                )))
            }
        };
        let actor = reject(
            self.router
                .conversation(&req.conversation_id)
                .ok_or_else(|| Status::not_found("no open conversation with this id")),
        )?;
        reject(
            actor
                .send(Transfer {
                    agent_id: None,
                    target,
                    reason: req.reason,
                    warm: false,
                })
                .await
                .map_err(mailbox)?,
        )?;
        Ok(Response::new(ForceTransferResponse {}))
    }

    type StreamIntegrationEventsStream =
        Pin<Box<dyn Stream<Item = Result<IntegrationEvent, Status>> + Send>>;

    async fn stream_integration_events(
        &self,
        request: Request<StreamIntegrationEventsRequest>,
    ) -> Result<Response<Self::StreamIntegrationEventsStream>, Status> {
        reject(self.authorize(&request, "StreamIntegrationEvents").await)?;
        let after = request.into_inner().after_event_id;
        // The outbox holds one sequence for the whole cluster: the stream reads it after
        // `after` and then follows it (woken by the record's signal, not by polling), from
        // whichever router it reaches. It reads only as fast as the client takes events, so
        // a slow reader falls behind nothing.
        let mut tail = self.router.shared.events.subscribe(after);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let events = tokio::select! {
                    events = tail.next(STREAM_BATCH) => events,
                    () = tx.closed() => return,
                };
                match events {
                    Ok(events) => {
                        for event in &events {
                            if tx.send(Ok(to_proto(event))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let last = tail.position();
                        let mut status = record_status(e);
                        status = Status::new(
                            status.code(),
                            format!("{}; resume after event {last}", status.message()),
                        );
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn set_customer_tier(
        &self,
        request: Request<SetCustomerTierRequest>,
    ) -> Result<Response<SetCustomerTierResponse>, Status> {
        reject(self.authorize(&request, "SetCustomerTier").await)?;
        let req = request.into_inner();
        reject(check_field(
            &req.customer_id,
            "customer_id",
            self.router.shared.config.limits.max_field_bytes,
            true,
        ))?;
        if !matches!(req.tier.as_str(), "" | "vip") {
            return reject(Err(Status::invalid_argument(
                "tier must be \"vip\" or empty",
            )));
        }
        // The tier is the record's column of its own: no profile update of any router undoes it.
        self.router
            .shared
            .set_tier(&req.customer_id, &req.tier)
            .await
            .map_err(record_status)?;
        Ok(Response::new(SetCustomerTierResponse {}))
    }

    async fn set_agent_status(
        &self,
        request: Request<SetAgentStatusRequest>,
    ) -> Result<Response<SetAgentStatusResponse>, Status> {
        reject(self.authorize(&request, "SetAgentStatus").await)?;
        let req = request.into_inner();
        let status = AgentStatus::try_from(req.status)
            .map_err(|_| Status::invalid_argument("unknown status"));
        let status = reject(status)?;
        reject(self.agents.set_status(&req.agent_id, status).await)?;
        Ok(Response::new(SetAgentStatusResponse {}))
    }
}

fn summary(a: &Archived) -> ConversationSummary {
    let c = &a.conversation;
    let outcome = match c.outcome {
        None => ConversationOutcome::Open,
        Some(Outcome::Completed) => ConversationOutcome::Completed,
        Some(Outcome::Abandoned) => ConversationOutcome::Abandoned,
        Some(Outcome::Offline) => ConversationOutcome::Offline,
        Some(Outcome::Escalated) => ConversationOutcome::Escalated,
    };
    ConversationSummary {
        conversation_id: c.id.clone(),
        customer_id: c.customer_id.clone(),
        department: c.department.clone(),
        language: c.language.clone(),
        agent_id: c.agent_id.clone().unwrap_or_default(),
        outcome: outcome as i32,
        started_at_unix_ms: c.started_at_ms,
        closed_at_unix_ms: c.closed_at_ms.unwrap_or_default(),
        rating: match &c.rating {
            Some(r) if r.good => "good".to_string(),
            Some(_) => "bad".to_string(),
            None => String::new(),
        },
        rating_comment: c
            .rating
            .as_ref()
            .map(|r| r.comment.clone())
            .unwrap_or_default(),
        messages: a.transcript.len() as u32,
        transfers: c.transfers,
    }
}
