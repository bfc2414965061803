//! Transfers with full context (DESIGN.md §1): agent → agent (cold and warm), → department
//! keeping the conversation's age, → supervisor; refusals (full agent, unknown target,
//! ping-pong limit) change nothing; escalation out of chat to a callback or an email.

use centralino_testkit as common;

use centralino_proto::v1::{
    agent_command, agent_event, conversation_event::Kind, transfer::Target, AgentStatus,
    ConversationEvent, ConversationOutcome, Escalate, EscalationKind, StartConversationResponse,
    Transfer,
};
use common::*;
use tonic::Streaming;

fn transfer(conversation_id: &str, target: Target, warm: bool) -> agent_command::Kind {
    agent_command::Kind::Transfer(Transfer {
        conversation_id: conversation_id.to_string(),
        target: Some(target),
        reason: "needs an expert".to_string(),
        warm,
    })
}

fn agent(id: &str) -> Target {
    Target::AgentId(id.to_string())
}

/// Giulia logs in and takes a new support conversation of `customer_id`.
async fn giulia_with_chat(
    node: &centralino_router::standalone::RunningNode,
    customer_id: &str,
) -> (
    Desk,
    centralino_proto::v1::conversation_service_client::ConversationServiceClient<
        tonic::transport::Channel,
    >,
    StartConversationResponse,
    Streaming<ConversationEvent>,
) {
    let mut giulia = login(node, "giulia", "pw").await.unwrap();
    let mut client = customer(node).await;
    let chat = start_conversation(&mut client, "support", "it", customer_id)
        .await
        .unwrap();
    let stream = events(&mut client, &chat, 0).await;
    assert_eq!(giulia.take().await, chat.conversation_id);
    (giulia, client, chat, stream)
}

/// Collects customer events until `assigned` to `agent_id`; returns their names.
async fn names_until_assigned_to(
    stream: &mut Streaming<ConversationEvent>,
    agent_id: &str,
) -> Vec<&'static str> {
    let mut names = Vec::new();
    let found = next_event(stream, 5, |e| {
        names.push(event_name(e));
        match &e.kind {
            Some(Kind::Assigned(a)) if a.agent_id == agent_id => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(found.is_some(), "never assigned to {agent_id}: {names:?}");
    names
}

#[test]
fn a_cold_transfer_to_an_agent_moves_the_conversation_with_its_transcript() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        send_text(&mut client, &chat, "m1", "il pacco è danneggiato")
            .await
            .unwrap();
        assert!(
            giulia
                .hears(&chat.conversation_id, "il pacco è danneggiato", 3)
                .await
        );
        let mut marco = login(&node, "marco", "pw").await.unwrap();

        let (reply, early) = giulia
            .call_keep("t1", transfer(&chat.conversation_id, agent("marco"), false))
            .await;
        assert_eq!(reply, Reply::Ack);
        let offer = marco.offer(5).await.expect("marco is offered the transfer");
        assert_eq!(offer.conversation_id, chat.conversation_id);
        let info = offer.transfer.clone().expect("offer carries transfer info");
        assert_eq!(info.from_agent_id, "giulia");
        assert_eq!(info.reason, "needs an expert");
        assert_eq!(info.transfers, 1);
        assert!(!info.warm);
        assert!(
            offer.history.is_some(),
            "offer carries the customer history"
        );
        let assigned = marco.accept(&offer).await;
        assert!(
            assigned
                .transcript
                .iter()
                .any(|m| m.text == "il pacco è danneggiato"),
            "the transcript travels: {:?}",
            assigned.transcript
        );
        assert_eq!(
            giulia.ended_after(&early, &chat.conversation_id, 3).await,
            Some(ConversationOutcome::Transferred as i32)
        );
        let names = names_until_assigned_to(&mut stream, "marco").await;
        let transferred = names.iter().position(|n| *n == "transferred");
        let first_assigned = names.iter().position(|n| *n == "assigned");
        assert!(
            transferred.is_some() && first_assigned < transferred,
            "the customer sees assigned (giulia), transferred, assigned (marco): {names:?}"
        );
        send_text(&mut client, &chat, "m2", "grazie marco")
            .await
            .unwrap();
        assert!(marco.hears(&chat.conversation_id, "grazie marco", 3).await);
        drop((giulia, marco, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn in_a_warm_transfer_the_first_agent_stays_until_the_second_accepts() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        giulia
            .request("w1", transfer(&chat.conversation_id, agent("marco"), true))
            .await;
        let mut skipped = Vec::new();
        assert_eq!(giulia.reply_to("w1", 5, &mut skipped).await, Reply::Ack);
        let offer = marco.offer(5).await.expect("marco is offered the transfer");
        assert!(offer.transfer.as_ref().is_some_and(|t| t.warm));

        // Until marco accepts, giulia keeps the customer.
        send_text(&mut client, &chat, "m1", "sei ancora lì?")
            .await
            .unwrap();
        let mut before_accept = Vec::new();
        let heard = giulia
            .next(3, |k| {
                let hit = matches!(&k, agent_event::Kind::Message(m)
                    if m.message.as_ref().is_some_and(|m| m.text == "sei ancora lì?"));
                before_accept.push(k);
                hit.then_some(())
            })
            .await;
        assert!(
            heard.is_some(),
            "giulia still receives the customer's messages"
        );
        before_accept.extend(skipped);
        assert!(
            !before_accept
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Ended(_))),
            "giulia lost the chat before marco accepted: {before_accept:?}"
        );

        marco.accept(&offer).await;
        assert_eq!(
            giulia.ended(&chat.conversation_id, 3).await,
            Some(ConversationOutcome::Transferred as i32),
            "giulia leaves once marco accepts"
        );
        let names = names_until_assigned_to(&mut stream, "marco").await;
        assert!(names.contains(&"transferred"), "{names:?}");
        drop((giulia, marco, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_transfer_to_a_full_agent_is_refused_and_changes_nothing() {
    run(|| async {
        let config = config_with("", |c| {
            set_capacity(c, "giulia", 1);
            set_capacity(c, "marco", 1);
        });
        let node = start(config).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let other = start_conversation(&mut client, "support", "it", "bruno")
            .await
            .unwrap();
        assert_eq!(
            marco.take().await,
            other.conversation_id,
            "marco is full now"
        );

        let reply = giulia
            .call("t1", transfer(&chat.conversation_id, agent("marco"), false))
            .await;
        assert_eq!(reply.code(), "FAILED_PRECONDITION", "{reply:?}");
        let seen = collect_events(&mut stream, 300).await;
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Transferred(_) | Kind::Requeued(_)))),
            "a refused transfer must not move the conversation: {:?}",
            seen.iter().map(event_name).collect::<Vec<_>>()
        );
        giulia
            .say(&chat.conversation_id, "a1", "sono ancora io")
            .await;
        let reply = next_event(&mut stream, 3, |e| {
            message_text(e).filter(|t| t == "sono ancora io")
        })
        .await;
        assert!(reply.is_some(), "giulia still serves the customer");
        let marco_events = marco.collect_for(200).await;
        assert!(
            !marco_events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "the full agent got an offer"
        );
        // A transfer may be retried later: the refused one did not count.
        marco.close_and_wait(&other.conversation_id).await;
        snapshot_until(&node, 3, |s| agent_in(s, "marco").load == 0).await;
        let reply = giulia
            .call("t2", transfer(&chat.conversation_id, agent("marco"), false))
            .await;
        assert_eq!(reply, Reply::Ack);
        let offer = marco.offer(5).await.expect("offer after marco freed up");
        assert_eq!(offer.transfer.map(|t| t.transfers), Some(1));
        drop((giulia, marco, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn transfers_to_unknown_targets_are_not_found() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, _client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let reply = giulia
            .call("a", transfer(&chat.conversation_id, agent("nobody"), false))
            .await;
        assert_eq!(reply.code(), "NOT_FOUND", "{reply:?}");
        let reply = giulia
            .call(
                "d",
                transfer(
                    &chat.conversation_id,
                    Target::Department("nowhere".into()),
                    false,
                ),
            )
            .await;
        assert_eq!(reply.code(), "NOT_FOUND", "{reply:?}");
        let reply = giulia
            .call(
                "s",
                transfer(
                    &chat.conversation_id,
                    Target::Skill("klingon".into()),
                    false,
                ),
            )
            .await;
        assert_eq!(reply.code(), "NOT_FOUND", "{reply:?}");
        let reply = giulia
            .call("x", transfer("no-such-conversation", agent("marco"), false))
            .await;
        assert!(
            matches!(reply.code(), "PERMISSION_DENIED" | "NOT_FOUND"),
            "{reply:?}"
        );
        let seen = collect_events(&mut stream, 200).await;
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Transferred(_) | Kind::Requeued(_)))),
            "refused transfers moved the conversation"
        );
        drop((giulia, stream));
        node.shutdown().await;
    });
}

#[test]
fn ping_pong_beyond_max_transfers_is_refused() {
    run(|| async {
        let config = config_with("", |c| c.routing.max_transfers = 2);
        let node = start(config).await;
        let (mut giulia, _client, chat, stream) = giulia_with_chat(&node, "anna").await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let cid = chat.conversation_id.clone();

        assert_eq!(
            giulia
                .call("1", transfer(&cid, agent("marco"), false))
                .await,
            Reply::Ack
        );
        let offer = marco.offer(5).await.expect("first transfer offered");
        marco.accept(&offer).await;
        assert_eq!(
            marco
                .call("2", transfer(&cid, agent("giulia"), false))
                .await,
            Reply::Ack
        );
        let offer = giulia.offer(5).await.expect("second transfer offered");
        assert_eq!(offer.transfer.as_ref().map(|t| t.transfers), Some(2));
        giulia.accept(&offer).await;
        let reply = giulia
            .call("3", transfer(&cid, agent("marco"), false))
            .await;
        assert_eq!(reply.code(), "FAILED_PRECONDITION", "{reply:?}");
        let reply = giulia
            .call(
                "4",
                transfer(&cid, Target::Department("sales".into()), false),
            )
            .await;
        assert_eq!(
            reply.code(),
            "FAILED_PRECONDITION",
            "the limit holds for every kind of target: {reply:?}"
        );
        drop((giulia, marco, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_transfer_to_a_department_keeps_the_conversations_age() {
    run(|| async {
        let config = config_with("", |c| set_capacity(c, "giulia", 1));
        let node = start(config).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let old = start_conversation(&mut client, "sales", "it", "old")
            .await
            .unwrap();
        let mut old_events = events(&mut client, &old, 0).await;
        assert_eq!(giulia.take().await, old.conversation_id);
        // A newer conversation waits in support: giulia is full, marco is not logged in.
        let newer = start_conversation(&mut client, "support", "it", "newer")
            .await
            .unwrap();
        snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 1).await;
        giulia.set_status_and_wait(AgentStatus::Away).await;
        let reply = giulia
            .call(
                "t",
                transfer(
                    &old.conversation_id,
                    Target::Department("support".into()),
                    false,
                ),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        let transferred = next_event(&mut old_events, 3, |e| match &e.kind {
            Some(Kind::Transferred(t)) => Some(t.clone()),
            _ => None,
        })
        .await
        .expect("the customer is told about the transfer");
        assert!(transferred.to.contains("support"), "{transferred:?}");
        snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 2).await;

        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let offer = marco.offer(5).await.expect("marco gets an offer");
        assert_eq!(
            offer.conversation_id, old.conversation_id,
            "the transferred conversation is older than {} and goes first",
            newer.conversation_id
        );
        assert_eq!(offer.department, "support");
        assert_eq!(
            offer.transfer.map(|t| t.from_agent_id).as_deref(),
            Some("giulia")
        );
        drop((giulia, marco, client, old_events));
        node.shutdown().await;
    });
}

const SUPERVISOR: &str = r#"
[[agents]]
id = "sara"
name = "Sara"
password = "pw"
team = "italian"
capacity = 2
skills = { "lang:it" = 5, support = 5, supervisor = 1 }
"#;

#[test]
fn a_transfer_to_a_supervisor_goes_to_an_agent_with_the_supervisor_skill() {
    run(|| async {
        let node = start(config(SUPERVISOR)).await;
        let (mut giulia, _client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let mut sara = login(&node, "sara", "pw").await.unwrap();
        let reply = giulia
            .call(
                "sup",
                transfer(&chat.conversation_id, Target::Supervisor(true), false),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        let offer = sara
            .offer(5)
            .await
            .expect("the supervisor is offered the chat");
        assert_eq!(offer.conversation_id, chat.conversation_id);
        assert_eq!(
            offer.transfer.as_ref().map(|t| t.from_agent_id.as_str()),
            Some("giulia")
        );
        let marco_events = marco.collect_for(300).await;
        assert!(
            !marco_events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "a non-supervisor got the supervisor transfer"
        );
        sara.accept(&offer).await;
        names_until_assigned_to(&mut stream, "sara").await;
        drop((giulia, marco, sara, stream));
        node.shutdown().await;
    });
}

fn escalate(conversation_id: &str, kind: EscalationKind, phone: &str, email: &str) -> Escalate {
    Escalate {
        conversation_id: conversation_id.to_string(),
        kind: kind as i32,
        phone: phone.to_string(),
        email: email.to_string(),
        preferred_time: "domani mattina".to_string(),
        note: "dati della carta".to_string(),
    }
}

#[test]
fn escalation_to_a_callback_needs_a_phone_and_ends_the_chat() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, _client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let cid = chat.conversation_id.clone();
        let reply = giulia
            .call(
                "e1",
                agent_command::Kind::Escalate(escalate(&cid, EscalationKind::Callback, "", "")),
            )
            .await;
        assert_eq!(reply.code(), "INVALID_ARGUMENT", "{reply:?}");
        let seen = collect_events(&mut stream, 200).await;
        assert!(
            !seen.iter().any(|e| matches!(e.kind, Some(Kind::Closed(_)))),
            "a refused escalation closed the chat"
        );
        let (reply, early) = giulia
            .call_keep(
                "e2",
                agent_command::Kind::Escalate(escalate(
                    &cid,
                    EscalationKind::Callback,
                    "+39 333 1234567",
                    "",
                )),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        assert_eq!(
            closed_outcome(&mut stream, 3).await,
            Some(ConversationOutcome::Escalated as i32)
        );
        assert_eq!(
            giulia.ended_after(&early, &cid, 3).await,
            Some(ConversationOutcome::Escalated as i32)
        );
        let event = integration_event(&node, 3, |e| {
            e.kind == "callback_request" && e.conversation_id == cid
        })
        .await
        .expect("callback_request integration event");
        assert_eq!(
            event.details.get("phone").map(String::as_str),
            Some("+39 333 1234567")
        );
        assert_eq!(event.agent_id, "giulia");
        drop((giulia, stream));
        node.shutdown().await;
    });
}

#[test]
fn escalation_to_email_emits_an_email_request() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, _client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let cid = chat.conversation_id.clone();
        let reply = giulia
            .call(
                "e1",
                agent_command::Kind::Escalate(escalate(
                    &cid,
                    EscalationKind::Email,
                    "",
                    "not-an-address",
                )),
            )
            .await;
        assert_eq!(reply.code(), "INVALID_ARGUMENT", "{reply:?}");
        let reply = giulia
            .call(
                "e2",
                agent_command::Kind::Escalate(escalate(
                    &cid,
                    EscalationKind::Email,
                    "",
                    "anna@example.it",
                )),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        assert_eq!(
            closed_outcome(&mut stream, 3).await,
            Some(ConversationOutcome::Escalated as i32)
        );
        let event = integration_event(&node, 3, |e| {
            e.kind == "email_request" && e.conversation_id == cid
        })
        .await
        .expect("email_request integration event");
        assert_eq!(
            event.details.get("email").map(String::as_str),
            Some("anna@example.it")
        );
        drop((giulia, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_declined_warm_transfer_leaves_the_chat_with_the_first_agent() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let reply = giulia
            .call("w", transfer(&chat.conversation_id, agent("marco"), true))
            .await;
        assert_eq!(reply, Reply::Ack);
        let offer = marco.offer(5).await.expect("marco is offered the transfer");
        marco
            .send(agent_command::Kind::Decline(
                centralino_proto::v1::DeclineOffer {
                    reservation_id: offer.reservation_id.clone(),
                    reason: "in pausa".into(),
                },
            ))
            .await;
        marco
            .next(3, |k| {
                matches!(k, agent_event::Kind::OfferRevoked(_)).then_some(())
            })
            .await
            .expect("the declined offer is revoked");
        send_text(&mut client, &chat, "m1", "allora?")
            .await
            .unwrap();
        assert!(
            giulia.hears(&chat.conversation_id, "allora?", 3).await,
            "giulia keeps the chat after the declined warm transfer"
        );
        giulia.say(&chat.conversation_id, "a1", "resto io").await;
        let mut names = Vec::new();
        let reached = next_event(&mut stream, 3, |e| {
            names.push(event_name(e));
            message_text(e).filter(|t| t == "resto io")
        })
        .await;
        assert!(reached.is_some(), "giulia's message reaches the customer");
        assert!(
            !names.contains(&"requeued"),
            "a declined warm transfer must not requeue: {names:?}"
        );
        drop((giulia, marco, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_transfer_to_another_language_goes_to_that_team() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, _client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        // While giulia holds the chat, a language no team serves is refused and moves nothing.
        let reply = giulia
            .call(
                "bad",
                transfer(&chat.conversation_id, Target::Language("xx".into()), false),
            )
            .await;
        assert_eq!(reply.code(), "INVALID_ARGUMENT", "{reply:?}");
        let (reply, early) = giulia
            .call_keep(
                "l",
                transfer(&chat.conversation_id, Target::Language("en".into()), false),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        let offer = emma.offer(5).await.expect("the English team gets the chat");
        assert_eq!(offer.conversation_id, chat.conversation_id);
        assert_eq!(offer.serving_language, "en");
        assert_eq!(offer.language, "it");
        let transferred = next_event(&mut stream, 3, |e| match &e.kind {
            Some(Kind::Transferred(t)) => Some(t.clone()),
            _ => None,
        })
        .await
        .expect("transferred event");
        assert_eq!(
            transferred.to, "inglese",
            "named in the customer's language"
        );
        assert_eq!(
            giulia.ended_after(&early, &chat.conversation_id, 3).await,
            Some(ConversationOutcome::Transferred as i32)
        );
        let reply = giulia
            .call(
                "again",
                transfer(&chat.conversation_id, Target::Language("en".into()), false),
            )
            .await;
        assert_eq!(
            reply.code(),
            "PERMISSION_DENIED",
            "giulia no longer holds the chat: {reply:?}"
        );
        drop((giulia, emma, stream));
        node.shutdown().await;
    });
}

const SPECIALIST: &str = r#"
[[agents]]
id = "luca"
name = "Luca"
password = "pw"
team = "italian"
capacity = 2
skills = { "lang:it" = 3, support = 1, returns = 4 }
"#;

#[test]
fn a_transfer_to_a_skill_goes_to_an_agent_with_that_skill() {
    run(|| async {
        let node = start(config(SPECIALIST)).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        send_text(&mut client, &chat, "m1", "vorrei fare un reso")
            .await
            .unwrap();
        assert!(
            giulia
                .hears(&chat.conversation_id, "vorrei fare un reso", 3)
                .await
        );
        // Marco (support 5) is idle too, but has no `returns` skill.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let mut luca = login(&node, "luca", "pw").await.unwrap();
        let (reply, early) = giulia
            .call_keep(
                "returns",
                transfer(
                    &chat.conversation_id,
                    Target::Skill("returns".into()),
                    false,
                ),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        let offer = luca
            .offer(5)
            .await
            .expect("the agent with the skill is offered the chat");
        assert_eq!(offer.conversation_id, chat.conversation_id);
        assert_eq!(
            offer.transfer.as_ref().map(|t| t.from_agent_id.as_str()),
            Some("giulia")
        );
        let transferred = next_event(&mut stream, 3, |e| match &e.kind {
            Some(Kind::Transferred(t)) => Some(t.clone()),
            _ => None,
        })
        .await
        .expect("transferred event");
        assert_eq!(transferred.to, "returns");
        let assigned = luca.accept(&offer).await;
        assert!(
            assigned
                .transcript
                .iter()
                .any(|m| m.text == "vorrei fare un reso"),
            "the transcript travels with the conversation: {:?}",
            assigned.transcript
        );
        names_until_assigned_to(&mut stream, "luca").await;
        assert_eq!(
            giulia.ended_after(&early, &chat.conversation_id, 3).await,
            Some(ConversationOutcome::Transferred as i32),
            "giulia's chat ends as transferred"
        );
        let marco_events = marco.collect_for(300).await;
        assert!(
            !marco_events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "an agent without the skill got the skill transfer"
        );
        drop((giulia, marco, luca, client, stream));
        node.shutdown().await;
    });
}
