//! The operator `Admin` service: snapshots, agents' status, transcripts (live from the
//! actors, closed from the record), transfers, customer tiers, the integration event stream,
//! and a customer's export and erasure (GDPR).

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
    force_transfer_request, AgentSnapshot, AgentStatus, ConversationOutcome, ConversationSummary,
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
use tracing::{info, warn};

use super::customer::CustomerApi;
use crate::conversation::{GetTranscript, Subscribe, Transfer};
use crate::metrics as m;
use crate::queue::{GetStats, GetWaiting};
use crate::router::Router;
use crate::shared::{EndLinger, Owner};
use crate::store::archive::{record_status, retire_closed, Archived};
use crate::store::events::to_proto;
use crate::store::records::{
    conversation_key, decode, messages_prefix, partition_of, profile_key, ConversationRecord,
    MessageRecord, Outcome, State, CONVERSATIONS,
};
use crate::store::Op;
use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::{
    CloseConversationRequest, EraseCustomerRequest, EraseCustomerResponse, ExportCustomerRequest,
    ExportCustomerResponse,
};
use centralino_record::{ArchiveCursor, ArchiveFilter, RatingFilter};
use std::time::Duration;

use super::directory::DirectoryAdmin;
use super::tokens::{stored_scopes, TokenAdmin};
use super::validate::{check_field, mailbox, reject, EventStream};
use centralino_proto::v1::{
    CreateOperatorTokenRequest, CreateOperatorTokenResponse, ListOperatorTokensRequest,
    ListOperatorTokensResponse, RevokeOperatorTokenRequest, RevokeOperatorTokenResponse,
};
use centralino_proto::v1::{
    DirectoryEntry, GetDirectoryEntryRequest, ListDirectoryAuditRequest,
    ListDirectoryAuditResponse, ListDirectoryEntriesRequest, ListDirectoryEntriesResponse,
    PutDirectoryEntryRequest, SetDirectoryEntryDisabledRequest,
};

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
        "GetSnapshot"
        | "ListConversations"
        | "GetTranscript"
        | "WatchConversation"
        | "GetDirectoryEntry"
        | "ListDirectoryEntries"
        | "ListDirectoryAudit" => Scope::ReadOnly,
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
        reject(self.authorize(request, method).await).map(|_| ())
    }

    /// Returns who the caller is (the operator's name, `oidc:<subject>`, `admin_token`;
    /// `peer-router` for a trusted forward) when they may call `method`.
    async fn authorize<T>(&self, request: &Request<T>, method: &str) -> Result<String, Status> {
        if self.trust_callers {
            return Ok("peer-router".to_string());
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
            Ok(who)
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
        // Tokens created at run time, in the record (one indexed lookup; a record that
        // cannot answer refuses the token rather than guess).
        match self.router.shared.record.token_by_digest(&digest).await {
            Ok(Some(stored)) => return Some((stored.name.clone(), stored_scopes(&stored))),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "operator token not looked up in the record"),
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
    async fn create_operator_token(
        &self,
        request: Request<CreateOperatorTokenRequest>,
    ) -> Result<Response<CreateOperatorTokenResponse>, Status> {
        let who = reject(self.authorize(&request, "CreateOperatorToken").await)?;
        let admin = TokenAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.create(&who, request.into_inner()).await,
        )?))
    }

    async fn list_operator_tokens(
        &self,
        request: Request<ListOperatorTokensRequest>,
    ) -> Result<Response<ListOperatorTokensResponse>, Status> {
        reject(self.authorize(&request, "ListOperatorTokens").await)?;
        let admin = TokenAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(admin.list().await)?))
    }

    async fn revoke_operator_token(
        &self,
        request: Request<RevokeOperatorTokenRequest>,
    ) -> Result<Response<RevokeOperatorTokenResponse>, Status> {
        let who = reject(self.authorize(&request, "RevokeOperatorToken").await)?;
        let admin = TokenAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.revoke(&who, request.into_inner()).await,
        )?))
    }

    async fn put_directory_entry(
        &self,
        request: Request<PutDirectoryEntryRequest>,
    ) -> Result<Response<DirectoryEntry>, Status> {
        let who = reject(self.authorize(&request, "PutDirectoryEntry").await)?;
        let admin = DirectoryAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.put(&who, request.into_inner()).await,
        )?))
    }

    async fn get_directory_entry(
        &self,
        request: Request<GetDirectoryEntryRequest>,
    ) -> Result<Response<DirectoryEntry>, Status> {
        reject(self.authorize(&request, "GetDirectoryEntry").await)?;
        let admin = DirectoryAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.get(request.into_inner()).await,
        )?))
    }

    async fn list_directory_entries(
        &self,
        request: Request<ListDirectoryEntriesRequest>,
    ) -> Result<Response<ListDirectoryEntriesResponse>, Status> {
        reject(self.authorize(&request, "ListDirectoryEntries").await)?;
        let admin = DirectoryAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.list(request.into_inner()).await,
        )?))
    }

    async fn set_directory_entry_disabled(
        &self,
        request: Request<SetDirectoryEntryDisabledRequest>,
    ) -> Result<Response<DirectoryEntry>, Status> {
        let who = reject(self.authorize(&request, "SetDirectoryEntryDisabled").await)?;
        let admin = DirectoryAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.set_disabled(&who, request.into_inner()).await,
        )?))
    }

    async fn list_directory_audit(
        &self,
        request: Request<ListDirectoryAuditRequest>,
    ) -> Result<Response<ListDirectoryAuditResponse>, Status> {
        reject(self.authorize(&request, "ListDirectoryAudit").await)?;
        let admin = DirectoryAdmin::new(self.router.shared.clone());
        Ok(Response::new(reject(
            admin.audit(request.into_inner()).await,
        )?))
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        reject(self.authorize(&request, "GetSnapshot").await)?;
        let mut queues = Vec::new();
        let mut waiting = Vec::new();
        for (department, queue) in self.router.queues() {
            queues.push(queue.send(GetStats).await.map_err(mailbox)?);
            for (language, count, oldest) in queue.send(GetWaiting).await.map_err(mailbox)? {
                waiting.push((department.clone(), language, count, oldest));
            }
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
        let now = self.router.shared.clock.now_ms();
        Ok(Response::new(Snapshot {
            queues,
            agents,
            counters: Some(counters),
            now_unix_ms: now,
            routers: Vec::new(),
            routers_missing: Vec::new(),
            service: self.router.shared.today.report(now, waiting),
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        reject(self.authorize(&request, "ListConversations").await)?;
        let req = request.into_inner();
        let (filter, cursor, limit) = reject(list_query(&req))?;
        let page = self
            .router
            .shared
            .archive
            .list(&filter, cursor.as_ref(), limit)
            .await
            .map_err(record_status)?;
        Ok(Response::new(ListConversationsResponse {
            conversations: page.items.iter().map(summary).collect(),
            next_page_token: page.next.map(|c| c.to_string()).unwrap_or_default(),
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
            None => self
                .router
                .shared
                .archive
                .find(&id)
                .await
                .map_err(record_status)?,
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
        let target = reject(force_target(req.target))?;
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

    async fn export_customer(
        &self,
        request: Request<ExportCustomerRequest>,
    ) -> Result<Response<ExportCustomerResponse>, Status> {
        reject(self.authorize(&request, "ExportCustomer").await)?;
        let customer_id = request.into_inner().customer_id;
        reject(check_field(&customer_id, "customer_id", MAX_ID_BYTES, true))?;
        let mut doc = self
            .router
            .shared
            .archive
            .export_customer(&customer_id)
            .await
            .map_err(record_status)?;
        // Live conversations (queued, assigned, closed and not retired yet) are the
        // customer's data too.
        let live = self.live_conversations_of(&customer_id).await?;
        if let Some(obj) = doc.as_object_mut() {
            let live: Vec<serde_json::Value> = live
                .into_iter()
                .map(|mut rec| {
                    rec.token.clear();
                    serde_json::to_value(rec).unwrap_or_default()
                })
                .collect();
            obj.insert("live_conversations".into(), serde_json::Value::Array(live));
        }
        let json = serde_json::to_string(&doc).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ExportCustomerResponse { json }))
    }

    async fn erase_customer(
        &self,
        request: Request<EraseCustomerRequest>,
    ) -> Result<Response<EraseCustomerResponse>, Status> {
        reject(self.authorize(&request, "EraseCustomer").await)?;
        let customer_id = request.into_inner().customer_id;
        reject(check_field(&customer_id, "customer_id", MAX_ID_BYTES, true))?;
        let live_closed = self.retire_live_of(&customer_id).await?;
        let shared = &self.router.shared;
        // The closes' integration events are appended in the background: erase after them.
        shared.events.flush().await;
        let report = shared
            .archive
            .erase_customer(&customer_id)
            .await
            .map_err(record_status)?;
        // The profile kept in the live store (beside the record's).
        shared
            .commits
            .write(vec![Op::Delete(profile_key(&customer_id))])
            .await?;
        info!(
            live_closed,
            conversations = report.conversations,
            profiles = report.profiles,
            events = report.events,
            "customer erased on request"
        );
        Ok(Response::new(EraseCustomerResponse {
            live_closed,
            conversations: report.conversations,
            profiles: report.profiles,
            events: report.events,
        }))
    }
}

/// The longest customer id the record takes.
const MAX_ID_BYTES: usize = centralino_record::MAX_ID_LEN;
/// How long an erasure waits for a closed conversation's live keys to go.
const RETIRE_WAIT: Duration = Duration::from_secs(10);

/// Reads a list request: the record's filter, the cursor, the page size.
fn list_query(
    req: &ListConversationsRequest,
) -> Result<(ArchiveFilter, Option<ArchiveCursor>, usize), Status> {
    let rating = match req.rating.as_str() {
        "" => None,
        "good" => Some(RatingFilter::Good),
        "bad" => Some(RatingFilter::Bad),
        "rated" => Some(RatingFilter::Rated),
        "unrated" => Some(RatingFilter::Unrated),
        other => {
            return Err(Status::invalid_argument(format!(
                "rating must be good, bad, rated, unrated or empty, not {other:?}"
            )))
        }
    };
    for (value, name) in [
        (&req.agent_id, "agent_id"),
        (&req.department, "department"),
        (&req.language, "language"),
        (&req.customer_id, "customer_id"),
    ] {
        check_field(value, name, MAX_ID_BYTES, false)?;
    }
    if req.from_unix_ms < 0 || req.to_unix_ms < 0 {
        return Err(Status::invalid_argument(
            "from_unix_ms and to_unix_ms must not be negative",
        ));
    }
    if req.from_unix_ms > 0 && req.to_unix_ms > 0 && req.from_unix_ms >= req.to_unix_ms {
        return Err(Status::invalid_argument(
            "from_unix_ms must be before to_unix_ms",
        ));
    }
    let cursor = match req.page_token.as_str() {
        "" => None,
        token => Some(
            token
                .parse::<ArchiveCursor>()
                .map_err(|e| Status::invalid_argument(format!("page_token: {e}")))?,
        ),
    };
    let some = |v: &String| (!v.is_empty()).then(|| v.clone());
    let filter = ArchiveFilter {
        agent_id: some(&req.agent_id),
        department: some(&req.department),
        language: some(&req.language),
        customer_id: some(&req.customer_id),
        closed_from_ms: (req.from_unix_ms > 0).then_some(req.from_unix_ms),
        closed_before_ms: (req.to_unix_ms > 0).then_some(req.to_unix_ms),
        rating,
    };
    let limit = match req.limit {
        0 => 100,
        n => (n as usize).min(centralino_record::MAX_PAGE),
    };
    Ok((filter, cursor, limit))
}

impl AdminApi {
    /// Returns the live records (queued, assigned, offline, closed and not retired yet) of
    /// `customer_id`, from the live store: every partition's (in cluster mode, every
    /// router's).
    pub async fn live_conversations_of(
        &self,
        customer_id: &str,
    ) -> Result<Vec<ConversationRecord>, Status> {
        let store = &self.router.shared.store;
        let mut out = Vec::new();
        for (key, bytes) in store.scan(CONVERSATIONS).await? {
            match decode::<ConversationRecord>(&key, &bytes) {
                Ok(rec) if rec.customer_id == customer_id => out.push(rec),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "skipping unreadable conversation record"),
            }
        }
        Ok(out)
    }

    /// Closes the live conversations of `customer_id` in this router's partitions and
    /// retires them (archive row, then no live keys), so that an erasure after it finds
    /// everything in the record; returns how many were open. Conversations of partitions
    /// other routers own are theirs to close (the cluster's Admin service forwards).
    pub async fn retire_live_of(&self, customer_id: &str) -> Result<u32, Status> {
        let shared = &self.router.shared;
        let closer = CustomerApi::new(self.router.clone());
        let mut closed = 0;
        for rec in self.live_conversations_of(customer_id).await? {
            if shared.owner(partition_of(&rec.id)) != Owner::Local {
                continue;
            }
            match self.router.conversation(&rec.id) {
                Some(actor) => {
                    if rec.state != State::Closed {
                        let close = CloseConversationRequest {
                            conversation_id: rec.id.clone(),
                            token: rec.token.clone(),
                        };
                        match closer.close_conversation(Request::new(close)).await {
                            Ok(_) => closed += 1,
                            // Closed meanwhile.
                            Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                            Err(s) => return Err(s),
                        }
                    }
                    // No rating window for an erased customer: the actor retires now.
                    actor.do_send(EndLinger);
                }
                None if rec.state == State::Closed => {
                    let transcript = shared
                        .store
                        .scan(&messages_prefix(&rec.id))
                        .await?
                        .iter()
                        .filter_map(|(k, v)| decode::<MessageRecord>(k, v).ok())
                        .collect();
                    retire_closed(&shared.archive, &shared.commits, &rec, transcript)
                        .await
                        .map_err(|e| Status::unavailable(e.to_string()))?;
                }
                None => {
                    return Err(Status::unavailable(format!(
                        "conversation {} is being restored; retry the erasure shortly",
                        rec.id
                    )))
                }
            }
            let key = conversation_key(&rec.id);
            let deadline = tokio::time::Instant::now() + RETIRE_WAIT;
            while shared.store.get(&key).await?.is_some() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Status::unavailable(format!(
                        "conversation {} is not retired yet; retry the erasure",
                        rec.id
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(closed)
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

/// Returns where a `ForceTransfer` goes: the same targets as the desk's `Transfer`.
fn force_target(target: Option<force_transfer_request::Target>) -> Result<TransferTarget, Status> {
    use force_transfer_request::Target;
    let target = match target {
        Some(Target::AgentId(a)) => TransferTarget::Agent(a),
        Some(Target::Department(d)) => TransferTarget::Department(d),
        Some(Target::Language(l)) => TransferTarget::Language(l),
        Some(Target::Skill(s)) => TransferTarget::Skill(s),
        Some(Target::Supervisor(true)) => TransferTarget::Supervisor,
        Some(Target::Supervisor(false)) | None => {
            return Err(Status::invalid_argument(
                "give a target: agent_id, department, language, skill or supervisor",
            ))
        }
    };
    if let TransferTarget::Agent(v)
    | TransferTarget::Department(v)
    | TransferTarget::Language(v)
    | TransferTarget::Skill(v) = &target
    {
        if v.trim().is_empty() {
            return Err(Status::invalid_argument(
                "the transfer target must not be empty",
            ));
        }
    }
    Ok(target)
}
