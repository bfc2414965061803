//! Starting a conversation once its request has passed the ingress checks: admission
//! ([`crate::routing::admission`]), the customer's profile, the first record and transcript,
//! the first durable write, then the conversation actor.

use std::collections::BTreeMap;

use centralino_proto::v1::{
    ChatMessage, Sender, StartConversationRequest, StartConversationResponse, VisitorContext,
};
use tonic::Status;
use tracing::info;

use crate::identity::{wall_clock_secs, Subject};
use crate::metrics as m;
use crate::router::{Revival, Router};
use crate::routing::admission::{self, Admission, Ask, Refusal, Serving};
use crate::shared::{Counters, Owner, Places};
use crate::store::records::{
    conversation_key, message_key, partition_of, put, ConversationRecord, MessageRecord,
    ProfileRecord, State, Visitor,
};
use crate::texts::{self, Text};

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        if refusal.is_bad_request() {
            Status::invalid_argument(refusal.to_string())
        } else {
            Status::resource_exhausted(refusal.to_string())
        }
    }
}

/// Starts the conversation `req` asks for on `router`: admits it, counts the contact in the
/// customer's profile (in the record), writes its record and the first messages in one
/// durable write, then spawns its actor.
///
/// The conversation runs for `subject` (see [`crate::identity`]): its profile, sticky
/// agent, tier and history are that subject's alone, whatever `customer_id` the request
/// named.
pub async fn start_conversation(
    router: &Router,
    mut req: StartConversationRequest,
    subject: Subject,
) -> Result<StartConversationResponse, Status> {
    req.customer_id = subject.profile_id();
    let shared = &router.shared;
    let config = &shared.config;
    let visitor = req.visitor.take().unwrap_or_default();
    let ask = Ask {
        department: &req.department,
        language: &req.language,
        current_page: &visitor.current_page,
    };
    let placement = admission::place(&ask, config, |d| shared.department(d).is_some())?;
    admission::check_room(
        &placement.department,
        &config.limits,
        router.open_conversations(),
        router.queue_depth(&placement.department),
    )?;
    // Places are taken atomically (concurrent starts never exceed a cap) and given back
    // on every early return below, when `places` is dropped.
    let mut places = Places {
        open: Some(shared.reserve_open().ok_or(Refusal::NodeFull)?),
        queue: None,
    };
    let now = shared.clock.now_ms();
    // The profile as it is now, from the record (admission reads it; the contact is
    // counted below by the record's transactional update, never by writing it back).
    let profile = shared.profile(&req.customer_id).await?;
    let serving_language = shared.shifts.serving_language(&req.language, now);
    let serving = Serving {
        language: serving_language,
        reopens_at_ms: match serving_language {
            Some(_) => None,
            None => shared.shifts.reopens_at(&req.language, now),
        },
    };
    let admitted = admission::admit(placement, profile.as_ref(), serving, &config.routing, now);
    if !admitted.offline() {
        places.queue = Some(
            router
                .reserve_queue_place(&admitted.department)
                .ok_or_else(|| Refusal::QueueFull(admitted.department.clone()))?,
        );
    }
    let id = new_id(router)?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let rec = record(
        &req,
        &visitor,
        &admitted,
        profile.as_ref(),
        &id,
        &token,
        now,
    );
    let transcript = first_messages(router, &req, &admitted, &id, now);
    // The contact is counted in the record first: a failure there starts nothing; a failed
    // conversation write after it leaves one contact counted too many (never one lost).
    let (name, language) = (req.display_name.clone(), req.language.clone());
    let new_profile = shared
        .update_profile(&req.customer_id, move |p| {
            if !name.is_empty() {
                p.display_name = name.clone();
            }
            p.language = language.clone();
            p.contacts = p.contacts.saturating_add(1);
        })
        .await?;
    let mut ops = vec![put(conversation_key(&id), &rec)];
    for m in &transcript {
        ops.push(put(message_key(&id, m.seq), m));
    }
    shared.commits.write(ops).await?;
    shared.events.record(
        "started",
        &rec,
        now,
        BTreeMap::from([
            ("recontact".to_string(), admitted.recontact.to_string()),
            ("offline".to_string(), admitted.offline().to_string()),
        ]),
    );
    router.spawn_conversation(Revival {
        record: rec,
        transcript,
        profile: new_profile,
        restored: false,
        places,
    });
    let department = &admitted.department;
    Counters::inc(&shared.counters.started);
    if admitted.recontact {
        Counters::inc(&shared.counters.recontacts);
        m::recontact(department);
    }
    m::conversation_started(department, &req.language);
    m::live(router.live_conversations());
    info!(conversation_id = %id, %department, language = %req.language, returning = admitted.returning, "conversation started");
    let (visitor_id, visitor_token, customer_id_ignored) = match subject {
        Subject::Customer(_) => (String::new(), String::new(), false),
        Subject::Visitor {
            id,
            ignored_customer_id,
        } => {
            let token = shared.identity.visitor_token(&id, wall_clock_secs());
            (id, token, ignored_customer_id)
        }
    };
    Ok(StartConversationResponse {
        conversation_id: id,
        token,
        department: department.clone(),
        priority: admitted.priority as i32,
        returning_customer: admitted.returning,
        offline: admitted.offline(),
        reopens_at_unix_ms: admitted.reopens_at_ms.unwrap_or_default(),
        recontact: admitted.recontact,
        visitor_id,
        visitor_token,
        customer_id_ignored,
    })
}

/// Returns a new conversation id in a partition `router` owns (all of them outside a
/// cluster), so a new conversation starts where it was asked for.
fn new_id(router: &Router) -> Result<String, Status> {
    // With n routers one id in n lands here; 512 tries miss only when this router owns
    // (almost) nothing, i.e. it is starting or draining.
    for _ in 0..512 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if router.shared.owner(partition_of(&id)) == Owner::Local {
            return Ok(id);
        }
    }
    Err(Status::unavailable(
        "this router serves no partition right now; try another router",
    ))
}

/// Returns the record of the new conversation `id`.
fn record(
    req: &StartConversationRequest,
    visitor: &VisitorContext,
    admitted: &Admission,
    profile: Option<&ProfileRecord>,
    id: &str,
    token: &str,
    now: i64,
) -> ConversationRecord {
    ConversationRecord {
        id: id.to_string(),
        token: token.to_string(),
        customer_id: req.customer_id.clone(),
        display_name: req.display_name.clone(),
        department: admitted.department.clone(),
        language: req.language.clone(),
        priority: admitted.priority as i32 as u8,
        visitor: Visitor::from(visitor),
        state: if admitted.offline() {
            State::Offline
        } else {
            State::Queued
        },
        outcome: None,
        started_at_ms: now,
        enqueued_at_ms: now,
        queue_entered_at_ms: now,
        agent_id: None,
        agent_name: String::new(),
        assigned_at_ms: None,
        closed_at_ms: None,
        returning: admitted.returning,
        sticky_agent: admitted.sticky_agent.clone(),
        last_summary: profile.map(|p| p.last_summary.clone()).unwrap_or_default(),
        summary: String::new(),
        rating: None,
        next_event_id: 0,
        serving_language: admitted
            .serving_language
            .clone()
            .unwrap_or_else(|| req.language.clone()),
        transfers: 0,
        notes: Vec::new(),
        extra_skill: None,
        recontact: admitted.recontact,
        pinned_language: false,
        sensitive: false,
        follow_up: Default::default(),
    }
}

/// Returns the first messages of the transcript: a welcome back for a returning customer,
/// a notice in the customer's language when another language's team serves them (their
/// own is closed, e.g. the Italian team before 10:00: the 22:00 handover's text), then the
/// customer's first message, if any.
fn first_messages(
    router: &Router,
    req: &StartConversationRequest,
    admitted: &Admission,
    id: &str,
    now: i64,
) -> Vec<MessageRecord> {
    let returning = admitted.returning;
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
                &router.shared.config,
                &req.language,
                Text::WelcomeBack,
                &[("name", req.display_name.trim())],
            ),
        );
    }
    if let Some(serving) = admitted
        .serving_language
        .as_deref()
        .filter(|serving| *serving != req.language)
    {
        let shifts = &router.shared.shifts;
        let reopens = shifts
            .reopens_at(&req.language, now)
            .map(|r| shifts.describe(&req.language, r))
            .unwrap_or_default();
        let language = texts::language_name(serving, &req.language);
        let from = texts::language_name(&req.language, &req.language);
        push(
            Sender::System,
            format!("{id}-served-in"),
            texts::render(
                &router.shared.config,
                &req.language,
                Text::Handover,
                &[
                    ("language", language.as_str()),
                    ("from", from.as_str()),
                    ("reopens", reopens.as_str()),
                ],
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
    transcript
}
