//! The customer `ConversationService`.

use std::collections::BTreeMap;
use std::sync::Arc;

use centralino_proto::v1::conversation_service_server::ConversationService;
use centralino_proto::v1::{
    ChatMessage, CloseConversationRequest, CloseConversationResponse, LeaveOfflineMessageRequest,
    LeaveOfflineMessageResponse, Priority, RateConversationRequest, RateConversationResponse,
    RequestCallbackRequest, RequestCallbackResponse, SendMessageRequest, SendMessageResponse,
    Sender, StartConversationRequest, StartConversationResponse, StreamEventsRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::config::PriorityName;
use crate::conversation::{
    Callback, ConversationActor, CustomerClose, CustomerSend, LeaveOffline, Rate, Subscribe,
};
use crate::metrics as m;
use crate::router::{Revival, Router};
use crate::shared::Counters;
use crate::store::records::{
    conversation_key, decode, message_key, profile_key, put, ConversationRecord, MessageRecord,
    ProfileRecord, State, Visitor,
};
use crate::texts::{self, Text};

use super::validate::{check_field, mailbox, reject, wait_durable, EventStream, MAX_PAGES_VISITED};

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
                texts::render(
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
