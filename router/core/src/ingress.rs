//! gRPC ingress: the customer `ConversationService` and the operator `Admin` service.
//! Requests are validated here (bad input gets a clear status and changes nothing), then
//! handed to the conversation actors.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use centralino_link::AgentAdmin;
use centralino_link::TransferTarget;
use centralino_proto::v1::admin_server::Admin;
use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::{
    AgentSnapshot, AgentStatus, ChatMessage, CloseConversationRequest, CloseConversationResponse,
    ConversationEvent, ConversationOutcome, ConversationSummary, Counters as CountersProto,
    ForceTransferRequest, ForceTransferResponse, GetSnapshotRequest, GetTranscriptRequest,
    IntegrationEvent, LeaveOfflineMessageRequest, LeaveOfflineMessageResponse,
    ListConversationsRequest, ListConversationsResponse, Priority, RateConversationRequest,
    RateConversationResponse, RequestCallbackRequest, RequestCallbackResponse, SendMessageRequest,
    SendMessageResponse, Sender, SetAgentStatusRequest, SetAgentStatusResponse,
    SetCustomerTierRequest, SetCustomerTierResponse, Snapshot, StartConversationRequest,
    StartConversationResponse, StreamEventsRequest, StreamIntegrationEventsRequest, Transcript,
    WatchConversationRequest,
};
use futures::Stream;
use std::sync::atomic::Ordering;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::archive::{Archived, Filter};
use crate::config::PriorityName;
use crate::conversation::{
    Callback, ConversationActor, CustomerClose, CustomerSend, GetTranscript, LeaveOffline, Rate,
    Subscribe, Transfer,
};
use crate::messages::{self, Text};
use crate::metrics as m;
use crate::queue::GetStats;
use crate::router::{Revival, Router};
use crate::shared::Counters;
use crate::store::records::{
    conversation_key, decode, message_key, profile_key, put, ConversationRecord, MessageRecord,
    Outcome, ProfileRecord, State, Visitor,
};
use crate::store::StoreError;

/// Most pages accepted in a visitor context.
const MAX_PAGES_VISITED: usize = 50;

fn mailbox(e: actix::MailboxError) -> Status {
    Status::unavailable(format!("conversation actor unavailable: {e}"))
}

fn reject<T>(result: Result<T, Status>) -> Result<T, Status> {
    if let Err(status) = &result {
        m::rejected(status.code());
    }
    result
}

fn check_field(value: &str, field: &str, max: usize, required: bool) -> Result<(), Status> {
    if required && value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Status::invalid_argument(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

async fn wait_durable(d: Option<crate::store::group_commit::Durable>) -> Result<(), Status> {
    match d {
        Some(d) => d
            .await
            .unwrap_or(Err(StoreError::Closed))
            .map_err(Status::from),
        None => Ok(()),
    }
}

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

    /// Returns a new conversation id in a partition this router owns (all of them outside
    /// a cluster), so a new conversation starts where it was asked for.
    fn new_id(&self) -> Result<String, Status> {
        // With n routers one id in n lands here; 512 tries miss only when this router owns
        // (almost) nothing, i.e. it is starting or draining.
        for _ in 0..512 {
            let id = uuid::Uuid::new_v4().simple().to_string();
            if self
                .router
                .shared
                .owner(crate::store::records::partition_of(&id))
                == crate::shared::Owner::Local
            {
                return Ok(id);
            }
        }
        Err(Status::unavailable(
            "this router serves no partition right now; try another router",
        ))
    }

    async fn start(
        &self,
        req: StartConversationRequest,
    ) -> Result<StartConversationResponse, Status> {
        let config = &self.router.shared.config;
        let limits = &config.limits;
        check_field(
            &req.customer_id,
            "customer_id",
            limits.max_field_bytes,
            true,
        )?;
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
        let visitor = req.visitor.clone().unwrap_or_default();
        check_field(&visitor.current_page, "visitor.current_page", 2048, false)?;
        check_field(&visitor.referrer, "visitor.referrer", 2048, false)?;
        if visitor.pages_visited.len() > MAX_PAGES_VISITED
            || visitor.pages_visited.iter().any(|p| p.len() > 2048)
        {
            return Err(Status::invalid_argument(format!(
                "visitor.pages_visited holds at most {MAX_PAGES_VISITED} pages of 2048 bytes"
            )));
        }
        if config.department(&req.department).is_none() {
            return Err(Status::invalid_argument(format!(
                "unknown department {:?}",
                req.department
            )));
        }
        if !config.languages().contains(req.language.as_str()) {
            return Err(Status::invalid_argument(format!(
                "no team serves language {:?}",
                req.language
            )));
        }
        // Visitor-context rules.
        let mut department = req.department.clone();
        let mut priority = Priority::Normal;
        for rule in &config.rules {
            if visitor.current_page.contains(&rule.page_contains) {
                if let Some(d) = &rule.department {
                    department = d.clone();
                }
                if let Some(p) = rule.priority {
                    priority = match p {
                        PriorityName::Normal => Priority::Normal,
                        PriorityName::High => Priority::High,
                        PriorityName::Vip => Priority::Vip,
                    };
                }
            }
        }
        if self.router.live_conversations() >= limits.max_live_conversations {
            return Err(Status::resource_exhausted(
                "the node is at its conversation limit",
            ));
        }
        if self.router.queue_depth(&department) >= limits.max_queue_length {
            return Err(Status::resource_exhausted(format!(
                "the {department} queue is full; please try again later"
            )));
        }
        let now = self.router.shared.clock.now_ms();
        // Profile read-modify-write is serialised with the other profile updates.
        let _profile_guard = self.router.shared.profile_guard(&req.customer_id).await;
        let profile: Option<ProfileRecord> = match self
            .router
            .shared
            .store
            .get(&profile_key(&req.customer_id))
            .await?
        {
            Some(bytes) => Some(decode(&profile_key(&req.customer_id), &bytes)?),
            None => None,
        };
        let returning = profile.as_ref().is_some_and(|p| p.contacts > 0);
        if profile.as_ref().is_some_and(|p| p.tier == "vip") {
            priority = Priority::Vip;
        }
        let recontact_ms = config.routing.recontact_window_secs as i64 * 1000;
        let recontact = profile
            .as_ref()
            .is_some_and(|p| p.last_contact_ms > 0 && now - p.last_contact_ms <= recontact_ms);
        let serving = self
            .router
            .shared
            .shifts
            .serving_language(&req.language, now)
            .map(str::to_string);
        let reopens = match serving {
            Some(_) => None,
            None => self.router.shared.shifts.reopens_at(&req.language, now),
        };
        let window_ms = config.routing.sticky_window_secs as i64 * 1000;
        let sticky_agent = profile
            .as_ref()
            .filter(|p| p.last_contact_ms > 0 && now - p.last_contact_ms <= window_ms)
            .and_then(|p| p.last_agent.clone());
        let id = self.new_id()?;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let rec = ConversationRecord {
            id: id.clone(),
            token: token.clone(),
            customer_id: req.customer_id.clone(),
            display_name: req.display_name.clone(),
            department: department.clone(),
            language: req.language.clone(),
            priority: priority as i32 as u8,
            visitor: Visitor::from(&visitor),
            state: if serving.is_some() {
                State::Queued
            } else {
                State::Offline
            },
            outcome: None,
            started_at_ms: now,
            enqueued_at_ms: now,
            queue_entered_at_ms: now,
            agent_id: None,
            agent_name: String::new(),
            assigned_at_ms: None,
            closed_at_ms: None,
            returning,
            sticky_agent,
            last_summary: profile
                .as_ref()
                .map(|p| p.last_summary.clone())
                .unwrap_or_default(),
            summary: String::new(),
            rating: None,
            next_event_id: 0,
            serving_language: serving.clone().unwrap_or_else(|| req.language.clone()),
            transfers: 0,
            notes: Vec::new(),
            extra_skill: None,
            recontact,
            pinned_language: false,
            sensitive: false,
            follow_up: Default::default(),
        };
        let mut transcript = Vec::new();
        let mut push = |sender: Sender, message_id: String, text: String| {
            let seq = transcript.len() as u64 + 1;
            transcript.push(MessageRecord::from_proto(
                &ChatMessage {
                    message_id,
                    seq,
                    sender: sender as i32,
                    author: String::new(),
                    text,
                    at_unix_ms: now,
                    status_note: false,
                },
                seq,
            ));
        };
        if returning {
            push(
                Sender::System,
                format!("{id}-welcome"),
                messages::render(
                    config,
                    &req.language,
                    Text::WelcomeBack,
                    &[("name", req.display_name.trim())],
                ),
            );
        }
        if !req.first_message.trim().is_empty() {
            push(
                Sender::Customer,
                format!("{id}-first"),
                req.first_message.clone(),
            );
        }
        let mut new_profile = profile.unwrap_or_default();
        new_profile.customer_id = req.customer_id.clone();
        if !req.display_name.is_empty() {
            new_profile.display_name = req.display_name.clone();
        }
        new_profile.language = req.language.clone();
        new_profile.contacts = new_profile.contacts.saturating_add(1);
        let mut ops = vec![
            put(conversation_key(&id), &rec),
            put(profile_key(&req.customer_id), &new_profile),
        ];
        for m in &transcript {
            ops.push(put(message_key(&id, m.seq), m));
        }
        self.router.shared.commits.write(ops).await?;
        self.router.shared.events.record(
            &self.router.shared.commits,
            "started",
            &rec,
            now,
            BTreeMap::from([
                ("recontact".to_string(), recontact.to_string()),
                ("offline".to_string(), serving.is_none().to_string()),
            ]),
        );
        self.router.spawn_conversation(Revival {
            record: rec,
            transcript,
            profile: new_profile,
            restored: false,
        });
        Counters::inc(&self.router.shared.counters.started);
        if recontact {
            Counters::inc(&self.router.shared.counters.recontacts);
            m::recontact(&department);
        }
        m::conversation_started(&department, &req.language);
        m::live(self.router.live_conversations());
        info!(conversation_id = %id, %department, language = %req.language, returning, "conversation started");
        Ok(StartConversationResponse {
            conversation_id: id,
            token,
            department,
            priority: priority as i32,
            returning_customer: returning,
            offline: serving.is_none(),
            reopens_at_unix_ms: reopens.unwrap_or_default(),
            recontact,
        })
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ConversationEvent, Status>> + Send>>;

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

/// The operator API (needs the admin token).
#[derive(Clone)]
pub struct AdminApi {
    router: Arc<Router>,
    agents: Arc<dyn AgentAdmin>,
}

impl AdminApi {
    /// Returns the service over `router` and the local agent-node.
    pub fn new(router: Arc<Router>, agents: Arc<dyn AgentAdmin>) -> Self {
        Self { router, agents }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let expected = &self.router.shared.config.node.admin_token;
        if expected.is_empty() {
            return Err(Status::permission_denied(
                "the admin API is disabled (no admin_token configured)",
            ));
        }
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("missing authorization: Bearer <admin token>")
            })?;
        let same = given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(Status::permission_denied("wrong admin token"))
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        reject(self.authorize(&request))?;
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
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        reject(self.authorize(&request))?;
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
        reject(self.authorize(&request))?;
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
        reject(self.authorize(&request))?;
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
        reject(self.authorize(&request))?;
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
        reject(self.authorize(&request))?;
        let after = request.into_inner().after_event_id;
        // Subscribe first, then read the stored backlog: nothing falls in between.
        let mut live = self.router.shared.events.subscribe();
        let backlog = self
            .router
            .shared
            .events
            .stored_after(self.router.shared.store.as_ref(), after)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            let mut last = after;
            for event in backlog {
                last = last.max(event.event_id);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(event) if event.event_id > last => {
                        last = event.event_id;
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "the stream fell behind; resume after event {last}"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn set_customer_tier(
        &self,
        request: Request<SetCustomerTierRequest>,
    ) -> Result<Response<SetCustomerTierResponse>, Status> {
        reject(self.authorize(&request))?;
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
        let tier = req.tier;
        self.router
            .shared
            .update_profile(&req.customer_id, Vec::new(), move |p| p.tier = tier)
            .await?;
        Ok(Response::new(SetCustomerTierResponse {}))
    }

    async fn set_agent_status(
        &self,
        request: Request<SetAgentStatusRequest>,
    ) -> Result<Response<SetAgentStatusResponse>, Status> {
        reject(self.authorize(&request))?;
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
