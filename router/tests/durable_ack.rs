//! Durable before acknowledged (DESIGN.md §6.8, issue 11): with commits failing on purpose
//! (a [`FaultStore`] under the node), no customer or agent message, close, rating,
//! transfer, offline message, escalation or start is acknowledged, shown to the customer's
//! stream or delivered to the agent; the reply is UNAVAILABLE (RESOURCE_EXHAUSTED for a
//! full store); the state after the failure — in the store and in the actor — is the state
//! before; and a retry gets the original outcome. A change the queue makes first (an
//! overflow, a language handover) whose write fails leaves queue and record as recorded,
//! and is made again once the store works.

use std::sync::Arc;
use std::time::Duration;

use centralino_testkit as common;

use centralino_core::conversation::GetRecord;
use centralino_core::store::fault::FaultStore;
use centralino_core::store::records::{
    conversation_key, decode, messages_prefix, ConversationRecord, State,
};
use centralino_core::store::{MemoryStore, Store, StoreError};
use centralino_proto::v1::{
    agent_command, conversation_event::Kind, AgentSend, CloseConversationRequest,
    ConversationOutcome, RateConversationRequest, StartConversationResponse,
};
use centralino_router::standalone::RunningNode;
use common::*;
use tonic::Code;

type Faults = Arc<FaultStore<MemoryStore>>;

async fn node_on_faults() -> (RunningNode, Faults) {
    let faults = Arc::new(FaultStore::new(MemoryStore::default()));
    let node = start_on(config(""), faults.clone()).await;
    (node, faults)
}

fn backend() -> StoreError {
    StoreError::Backend("injected failure".into())
}

fn full() -> StoreError {
    StoreError::Full("injected: no space left on device".into())
}

/// The record as the store holds it.
async fn stored(faults: &Faults, id: &str) -> ConversationRecord {
    let key = conversation_key(id);
    let bytes = faults
        .get(&key)
        .await
        .expect("read")
        .expect("record stored");
    decode(&key, &bytes).expect("decodes")
}

/// The record as the conversation's actor holds it.
async fn live(node: &RunningNode, id: &str) -> ConversationRecord {
    node.router
        .conversation(id)
        .expect("live conversation")
        .send(GetRecord)
        .await
        .expect("actor answers")
}

/// Texts of the messages the store holds for `id`, in order.
async fn stored_texts(faults: &Faults, id: &str) -> Vec<String> {
    faults
        .scan(&messages_prefix(id))
        .await
        .expect("scan")
        .into_iter()
        .map(|(key, bytes)| {
            let m: centralino_core::store::records::MessageRecord =
                decode(&key, &bytes).expect("decodes");
            m.text
        })
        .collect()
}

/// Starts a conversation of `customer` in support and has giulia take it.
async fn assigned(
    node: &RunningNode,
    giulia: &mut Desk,
    customer_id: &str,
) -> (
    StartConversationResponse,
    tonic::Streaming<centralino_proto::v1::ConversationEvent>,
) {
    let mut client = customer(node).await;
    let chat = start_conversation(&mut client, "support", "it", customer_id)
        .await
        .expect("start");
    let mut stream = events(&mut client, &chat, 0).await;
    assert_eq!(giulia.take().await, chat.conversation_id);
    assert_eq!(
        assigned_agent(&mut stream, 5).await.as_deref(),
        Some("giulia")
    );
    (chat, stream)
}

fn texts(events: &[centralino_proto::v1::ConversationEvent]) -> Vec<String> {
    events.iter().filter_map(message_text).collect()
}

fn agent_send(cid: &str, message_id: &str, text: &str) -> agent_command::Kind {
    agent_command::Kind::Send(AgentSend {
        conversation_id: cid.to_string(),
        message_id: message_id.to_string(),
        text: text.to_string(),
        status_note: false,
    })
}

#[test]
fn a_customer_message_whose_write_fails_is_not_acknowledged_shown_or_delivered() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let (chat, mut stream) = assigned(&node, &mut giulia, "anna").await;
        let cid = chat.conversation_id.clone();
        let mut client = customer(&node).await;
        let first = send_text(&mut client, &chat, "m1", "buongiorno")
            .await
            .unwrap();
        assert_eq!((first.seq, first.duplicate), (1, false));
        assert!(giulia.hears(&cid, "buongiorno", 5).await);

        for (error, code) in [
            (backend(), Code::Unavailable),
            (full(), Code::ResourceExhausted),
        ] {
            faults.fail_prefix(messages_prefix(&cid), error);
            let refused = send_text(&mut client, &chat, "m2", "il pacco?").await;
            assert_eq!(refused.map_err(|s| s.code()).err(), Some(code));
            faults.clear();
        }
        assert!(faults.injected() >= 2);
        // Nothing of m2 anywhere: not shown, not delivered, not stored, not in the actor.
        assert_eq!(
            texts(&collect_events(&mut stream, 400).await),
            vec!["buongiorno"]
        );
        assert!(!giulia.hears(&cid, "il pacco?", 1).await);
        assert_eq!(stored_texts(&faults, &cid).await, vec!["buongiorno"]);
        assert_eq!(transcript_texts(&node, &cid).await, vec!["buongiorno"]);

        // The retry is a fresh attempt (the failed one was rolled back): the next number,
        // no gap; a second retry gets the original outcome.
        let retried = send_text(&mut client, &chat, "m2", "il pacco?")
            .await
            .unwrap();
        assert_eq!((retried.seq, retried.duplicate), (2, false));
        let again = send_text(&mut client, &chat, "m2", "il pacco?")
            .await
            .unwrap();
        assert_eq!((again.seq, again.duplicate), (2, true));
        assert!(giulia.hears(&cid, "il pacco?", 5).await);
        assert_eq!(
            texts(&collect_events(&mut stream, 400).await),
            vec!["il pacco?"]
        );

        // A retry sent while the first attempt is in flight waits for it and gets its
        // outcome: one message, one number.
        faults.delay(Duration::from_millis(300));
        let (mut a, mut b) = (client.clone(), client.clone());
        let (x, y) = tokio::join!(
            send_text(&mut a, &chat, "m3", "grazie"),
            send_text(&mut b, &chat, "m3", "grazie"),
        );
        faults.clear();
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!((x.seq, y.seq), (3, 3));
        assert!(x.duplicate != y.duplicate, "{x:?} {y:?}");
        assert_eq!(
            stored_texts(&faults, &cid).await,
            vec!["buongiorno", "il pacco?", "grazie"]
        );
        assert_eq!(
            texts(&collect_events(&mut stream, 400).await),
            vec!["grazie"]
        );
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn an_agent_message_whose_write_fails_is_not_acknowledged_or_shown() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let (chat, mut stream) = assigned(&node, &mut giulia, "bruno").await;
        let cid = chat.conversation_id.clone();

        faults.fail_prefix(messages_prefix(&cid), backend());
        let reply = giulia.call("r1", agent_send(&cid, "a1", "eccomi")).await;
        assert_eq!(reply.code(), "UNAVAILABLE");
        faults.clear();
        faults.fail_prefix(messages_prefix(&cid), full());
        let reply = giulia.call("r2", agent_send(&cid, "a1", "eccomi")).await;
        assert_eq!(reply.code(), "RESOURCE_EXHAUSTED");
        faults.clear();
        assert!(texts(&collect_events(&mut stream, 400).await).is_empty());
        assert!(stored_texts(&faults, &cid).await.is_empty());
        assert!(transcript_texts(&node, &cid).await.is_empty());

        // The retry is applied once, and a retry of it is answered as the first.
        assert!(matches!(
            giulia.call("r3", agent_send(&cid, "a1", "eccomi")).await,
            Reply::Ack
        ));
        assert!(matches!(
            giulia.call("r4", agent_send(&cid, "a1", "eccomi")).await,
            Reply::Ack
        ));
        assert_eq!(
            texts(&collect_events(&mut stream, 400).await),
            vec!["eccomi"]
        );
        assert_eq!(stored_texts(&faults, &cid).await, vec!["eccomi"]);
        drop((giulia, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_close_whose_write_fails_leaves_the_conversation_open() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let (chat, mut stream) = assigned(&node, &mut giulia, "carla").await;
        let cid = chat.conversation_id.clone();
        let mut client = customer(&node).await;
        let close = CloseConversationRequest {
            conversation_id: cid.clone(),
            token: chat.token.clone(),
        };
        let before = live(&node, &cid).await;
        let open_before = snapshot(&node).await.counters.unwrap();

        // The customer's close, then the agent's.
        faults.fail_prefix(conversation_key(&cid), backend());
        let refused = client.close_conversation(close.clone()).await;
        assert_eq!(refused.err().map(|s| s.code()), Some(Code::Unavailable));
        let reply = giulia
            .call(
                "c1",
                agent_command::Kind::Close(centralino_proto::v1::AgentClose {
                    conversation_id: cid.clone(),
                    summary: "fatto".into(),
                }),
            )
            .await;
        assert_eq!(reply.code(), "UNAVAILABLE");
        faults.clear();

        // Still open everywhere: the actor, the store, the counters; nobody was told.
        let after = live(&node, &cid).await;
        assert_eq!(after.state, State::Assigned);
        assert_eq!((after.outcome, after.closed_at_ms), (None, None));
        assert_eq!(after.summary, before.summary);
        let kept = stored(&faults, &cid).await;
        assert_eq!((kept.state, kept.outcome), (State::Assigned, None));
        let events = collect_events(&mut stream, 400).await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Closed(_)))),
            "{events:?}"
        );
        assert!(giulia.ended(&cid, 1).await.is_none());
        let open_after = snapshot(&node).await.counters.unwrap();
        assert_eq!(
            open_after.conversations_completed,
            open_before.conversations_completed
        );
        // The conversation goes on.
        send_text(&mut client, &chat, "m1", "ancora qui")
            .await
            .unwrap();
        assert!(giulia.hears(&cid, "ancora qui", 5).await);

        // A close and its retry in flight together: both get the outcome.
        faults.delay(Duration::from_millis(300));
        let (mut a, mut b) = (client.clone(), client.clone());
        let (x, y) = tokio::join!(
            a.close_conversation(close.clone()),
            b.close_conversation(close.clone())
        );
        faults.clear();
        let completed = ConversationOutcome::Completed as i32;
        assert_eq!(x.unwrap().into_inner().outcome, completed);
        assert_eq!(y.unwrap().into_inner().outcome, completed);
        assert_eq!(closed_outcome(&mut stream, 5).await, Some(completed));
        assert_eq!(giulia.ended(&cid, 5).await, Some(completed));
        let closed = stored(&faults, &cid).await;
        assert_eq!(closed.state, State::Closed);
        assert_eq!(
            snapshot(&node)
                .await
                .counters
                .unwrap()
                .conversations_completed,
            open_before.conversations_completed + 1
        );
        // A close sent later is refused as before.
        let late = client.close_conversation(close).await;
        assert_eq!(late.err().map(|s| s.code()), Some(Code::FailedPrecondition));
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_rating_whose_write_fails_is_not_recorded() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let (chat, mut stream) = assigned(&node, &mut giulia, "dario").await;
        let cid = chat.conversation_id.clone();
        giulia.close_and_wait(&cid).await;
        assert!(closed_outcome(&mut stream, 5).await.is_some());
        let mut client = customer(&node).await;
        let rate = |good: bool| RateConversationRequest {
            conversation_id: cid.clone(),
            token: chat.token.clone(),
            good,
            comment: "bene".into(),
        };

        for (error, code) in [
            (backend(), Code::Unavailable),
            (full(), Code::ResourceExhausted),
        ] {
            faults.fail_prefix(conversation_key(&cid), error);
            let refused = client.rate_conversation(rate(true)).await;
            assert_eq!(refused.err().map(|s| s.code()), Some(code));
            faults.clear();
        }
        assert_eq!(live(&node, &cid).await.rating, None);
        assert_eq!(stored(&faults, &cid).await.rating, None);
        let c = snapshot(&node).await.counters.unwrap();
        assert_eq!((c.csat_good, c.csat_bad), (0, 0));

        // The retry is recorded once; the same rating again is answered as the first, a
        // different one is refused.
        client.rate_conversation(rate(true)).await.expect("rated");
        client.rate_conversation(rate(true)).await.expect("retry");
        let other = client.rate_conversation(rate(false)).await;
        assert_eq!(other.err().map(|s| s.code()), Some(Code::AlreadyExists));
        assert!(stored(&faults, &cid).await.rating.is_some_and(|r| r.good));
        let c = snapshot(&node).await.counters.unwrap();
        assert_eq!((c.csat_good, c.csat_bad), (1, 0));
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_transfer_whose_write_fails_stays_with_the_agent() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let (chat, mut stream) = assigned(&node, &mut giulia, "elena").await;
        let cid = chat.conversation_id.clone();
        let transfer = || {
            agent_command::Kind::Transfer(centralino_proto::v1::Transfer {
                conversation_id: cid.clone(),
                target: Some(centralino_proto::v1::transfer::Target::Department(
                    "sales".into(),
                )),
                reason: "vendite".into(),
                warm: false,
            })
        };
        faults.fail_prefix(conversation_key(&cid), full());
        let reply = giulia.call("t1", transfer()).await;
        assert_eq!(reply.code(), "RESOURCE_EXHAUSTED");
        faults.clear();
        let after = live(&node, &cid).await;
        assert_eq!(
            (after.state, after.department.as_str(), after.transfers),
            (State::Assigned, "support", 0)
        );
        assert_eq!(stored(&faults, &cid).await.department, "support");
        let events = collect_events(&mut stream, 400).await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Transferred(_) | Kind::Message(_)))),
            "{events:?}"
        );
        assert!(giulia.ended(&cid, 1).await.is_none());
        assert_eq!(snapshot(&node).await.counters.unwrap().transfers, 0);
        // Then it goes through.
        let (reply, earlier) = giulia.call_keep("t2", transfer()).await;
        assert!(matches!(reply, Reply::Ack));
        assert_eq!(
            giulia.ended_after(&earlier, &cid, 5).await,
            Some(ConversationOutcome::Transferred as i32)
        );
        assert_eq!(stored(&faults, &cid).await.department, "sales");
        drop((giulia, stream));
        node.shutdown().await;
    });
}

#[test]
fn the_next_commits_failing_refuse_a_start_and_leave_no_trace() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut client = customer(&node).await;
        faults.fail_next(1, full());
        let refused = start_conversation(&mut client, "support", "it", "franca").await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        assert!(faults
            .scan("")
            .await
            .unwrap()
            .iter()
            .all(|(k, _)| !k.contains("conv")));
        let c = snapshot(&node).await.counters.unwrap();
        assert_eq!(c.conversations_started, 0, "{c:?}");
        start_conversation(&mut client, "support", "it", "franca")
            .await
            .expect("starts once the store takes writes");
        drop(client);
        node.shutdown().await;
    });
}

#[test]
fn an_offline_message_or_an_escalation_whose_write_fails_changes_nothing() {
    run(|| async {
        let (node, faults) = node_on_faults().await;
        let mut client = customer(&node).await;
        // Nobody logged in: the conversation waits in its queue.
        let waiting = start_conversation(&mut client, "support", "it", "gina")
            .await
            .expect("start");
        let wid = waiting.conversation_id.clone();
        let offline = centralino_proto::v1::LeaveOfflineMessageRequest {
            conversation_id: wid.clone(),
            token: waiting.token.clone(),
            name: "Gina".into(),
            email: "gina@example.com".into(),
            phone: String::new(),
            text: "richiamatemi".into(),
        };
        faults.fail_prefix(conversation_key(&wid), full());
        let refused = client.leave_offline_message(offline.clone()).await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::ResourceExhausted)
        );
        faults.clear();
        let still = live(&node, &wid).await;
        assert_eq!((still.state, still.outcome), (State::Queued, None));
        assert!(still.follow_up.is_empty());
        assert_eq!(stored(&faults, &wid).await.state, State::Queued);
        let c = snapshot(&node).await.counters.unwrap();
        assert_eq!(c.conversations_offline, 0);
        client
            .leave_offline_message(offline)
            .await
            .expect("left once the store takes writes");
        assert_eq!(stored(&faults, &wid).await.state, State::Closed);

        // An agent's escalation.
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let (chat, mut stream) = assigned(&node, &mut giulia, "ivo").await;
        let cid = chat.conversation_id.clone();
        let escalate = || {
            agent_command::Kind::Escalate(centralino_proto::v1::Escalate {
                conversation_id: cid.clone(),
                kind: centralino_proto::v1::EscalationKind::Callback as i32,
                phone: "+39 055 000000".into(),
                email: String::new(),
                preferred_time: "domani".into(),
                note: "dati della carta".into(),
            })
        };
        faults.fail_prefix(conversation_key(&cid), backend());
        assert_eq!(giulia.call("e1", escalate()).await.code(), "UNAVAILABLE");
        faults.clear();
        let still = live(&node, &cid).await;
        assert_eq!((still.state, still.outcome), (State::Assigned, None));
        assert_eq!(stored(&faults, &cid).await.state, State::Assigned);
        let events = collect_events(&mut stream, 400).await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Closed(_)))),
            "{events:?}"
        );
        assert_eq!(
            snapshot(&node)
                .await
                .counters
                .unwrap()
                .conversations_escalated,
            0
        );
        let (reply, earlier) = giulia.call_keep("e2", escalate()).await;
        assert!(matches!(reply, Reply::Ack));
        assert_eq!(
            giulia.ended_after(&earlier, &cid, 5).await,
            Some(ConversationOutcome::Escalated as i32)
        );
        assert_eq!(
            closed_outcome(&mut stream, 5).await,
            Some(ConversationOutcome::Escalated as i32)
        );
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

/// A department whose waiting conversations overflow to support after a minute.
const OVERFLOWING: &str = r#"
[[departments]]
name = "returns"
steps = [ { after_secs = 0, min_proficiency = 1 }, { after_secs = 60, min_proficiency = 1, overflow_to = "support" } ]
"#;

#[test]
fn an_overflow_whose_write_fails_stays_where_its_record_says_and_moves_once_the_store_works() {
    run(|| async {
        let faults = Arc::new(FaultStore::new(MemoryStore::default()));
        let clock =
            centralino_base::clock::ManualClock::new(instant_ms("2026-11-24T11:00:00+01:00"));
        let node = centralino_router::standalone::start_with_clock(
            config(OVERFLOWING),
            centralino_router::standalone::StoreChoice::Custom(faults.clone()),
            clock.shared(),
        )
        .await
        .expect("node starts");
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "returns", "it", "rita")
            .await
            .expect("start");
        let cid = chat.conversation_id.clone();
        // Nobody logged in: it waits; past a minute the queue overflows it, but the write
        // of the move fails.
        faults.fail_prefix(conversation_key(&cid), backend());
        clock.advance(Duration::from_secs(61));
        let tried = wait_until(5, || async { faults.injected() > 0 }).await;
        assert!(tried, "the overflow tried to write the move");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(live(&node, &cid).await.department, "returns");
        assert_eq!(stored(&faults, &cid).await.department, "returns");
        // The store works again: the conversation, back in its recorded queue, overflows
        // now, and support's agent gets it.
        faults.clear();
        let moved = wait_until(10, || async {
            stored(&faults, &cid).await.department == "support"
        })
        .await;
        assert!(moved, "the overflow is written once the store works");
        assert_eq!(live(&node, &cid).await.department, "support");
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        assert_eq!(marco.take().await, cid, "support's agent is offered it");
        drop((marco, client));
        node.shutdown().await;
    });
}

#[test]
fn a_language_handover_whose_write_fails_stays_with_its_team_and_moves_once_the_store_works() {
    run(|| async {
        let faults = Arc::new(FaultStore::new(MemoryStore::default()));
        let clock =
            centralino_base::clock::ManualClock::new(instant_ms("2026-11-23T21:59:00+01:00"));
        let node = centralino_router::standalone::start_with_clock(
            config_with("", italian_day_shift),
            centralino_router::standalone::StoreChoice::Custom(faults.clone()),
            clock.shared(),
        )
        .await
        .expect("node starts");
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "late-it")
            .await
            .expect("start");
        let cid = chat.conversation_id.clone();
        let mut stream = events(&mut client, &chat, 0).await;
        // 22:00: the Italian team closes and the queue hands the chat to English, but the
        // write of the handover fails: nothing is shown, the record keeps Italian.
        faults.fail_prefix(conversation_key(&cid), backend());
        clock.set(instant_ms("2026-11-23T22:00:00+01:00"));
        let tried = wait_until(5, || async { faults.injected() > 0 }).await;
        assert!(tried, "the handover tried to write");
        let shown = collect_events(&mut stream, 1500).await;
        assert!(
            !shown
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::HandedOver(_)))),
            "a handover shown before it was durable: {shown:?}"
        );
        assert_eq!(live(&node, &cid).await.serving_language, "it");
        assert_eq!(stored(&faults, &cid).await.serving_language, "it");
        // The store works again: the queue hands it over again, durably, and the English
        // agent gets it.
        faults.clear();
        let (handed, _) = next_event(&mut stream, 10, |e| match &e.kind {
            Some(Kind::HandedOver(h)) => Some((h.clone(), e.at_unix_ms)),
            _ => None,
        })
        .await
        .expect("handed over once the store works");
        assert_eq!(
            (handed.from_language.as_str(), handed.to_language.as_str()),
            ("it", "en")
        );
        assert_eq!(stored(&faults, &cid).await.serving_language, "en");
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        assert_eq!(emma.take().await, cid, "the English team is offered it");
        drop((emma, client, stream));
        node.shutdown().await;
    });
}
