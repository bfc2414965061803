//! A clean restart on the embedded store keeps conversations, transcripts, assignments and
//! customer profiles (DESIGN.md §3 failover, §6 invariants 3, 4 and 6).

use centralino_testkit as common;

use std::time::Duration;

use centralino_base::clock::ManualClock;
use centralino_proto::v1::{
    agent_event, conversation_event, ConversationEvent, Sender, StartConversationRequest,
};
use common::*;

/// `disconnect_grace_secs` of the test configuration, in milliseconds.
const GRACE_MS: u64 = 2_000;

fn texts(events: &[ConversationEvent]) -> Vec<String> {
    events.iter().filter_map(message_text).collect()
}

async fn agent_text(desk: &mut Desk, conversation_id: &str) -> Option<String> {
    desk.next(3, |k| match k {
        // The customer's, not the agent's own echoed back.
        agent_event::Kind::Message(m) if m.conversation_id == conversation_id => m
            .message
            .filter(|m| m.sender != Sender::Agent as i32)
            .map(|m| m.text),
        _ => None,
    })
    .await
}

async fn until_text(
    stream: &mut tonic::Streaming<ConversationEvent>,
    text: &str,
) -> Vec<ConversationEvent> {
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| message_text(e).as_deref() == Some(text))
    {
        seen.push(
            next_event(stream, 5, |e| Some(e.clone()))
                .await
                .unwrap_or_else(|| panic!("no event with {text:?}; saw {seen:?}")),
        );
    }
    seen
}

#[test]
fn a_restart_keeps_queued_and_assigned_conversations_and_profiles() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        // Manual clocks: the disconnect grace passes only when the test moves time.
        let before = ManualClock::new(instant_ms("2026-03-10T12:00:00+01:00"));
        let node = start_durable_manual(config(""), dir.path(), &before).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;

        // A customer served and closed earlier: a profile exists.
        start_conversation(&mut client, "sales", "it", "known")
            .await
            .unwrap();
        let first = giulia.take().await;
        giulia.close_and_wait(&first).await;

        // An assigned conversation with messages.
        let assigned = start_conversation(&mut client, "support", "it", "assigned")
            .await
            .unwrap();
        let mut a_stream = events(&mut client, &assigned, 0).await;
        assert_eq!(giulia.take().await, assigned.conversation_id);
        send_text(&mut client, &assigned, "m1", "il pacco è arrivato rotto")
            .await
            .unwrap();
        assert_eq!(
            agent_text(&mut giulia, &assigned.conversation_id)
                .await
                .as_deref(),
            Some("il pacco è arrivato rotto")
        );
        giulia
            .say(
                &assigned.conversation_id,
                "g1",
                "mi dispiace, lo sostituiamo",
            )
            .await;
        until_text(&mut a_stream, "mi dispiace, lo sostituiamo").await;

        // A queued conversation: English, nobody serving it.
        let queued = start_conversation(&mut client, "support", "en", "waiting")
            .await
            .unwrap();
        send_text(&mut client, &queued, "q1", "hello, anyone?")
            .await
            .unwrap();

        drop((giulia, client, a_stream));
        node.shutdown().await;

        // The node comes back a minute later; the restored giulia gets the disconnect grace.
        let clock = ManualClock::new(instant_ms("2026-03-10T12:01:00+01:00"));
        let restarted = restart_durable_manual(config(""), dir.path(), &clock).await;
        let node = restarted.node;
        let grace_ends = node.clock.now_ms() + GRACE_MS as i64;
        let grace_runs =
            wait_until(5, || async { clock.next_deadline_ms() == Some(grace_ends) }).await;
        assert!(grace_runs, "the restored agent's grace does not run");
        // Giulia comes back within the disconnect grace and still holds her conversation.
        let (mut giulia, logged_in) = login_full(&node, "giulia", "pw").await.unwrap();
        assert_eq!(
            logged_in.conversation_ids,
            vec![assigned.conversation_id.clone()],
            "assigned conversation held for giulia"
        );
        let mut client = customer(&node).await;

        // Both customers resume their streams by id and token.
        let mut a_stream = events(&mut client, &assigned, 0).await;
        let replay = collect_events(&mut a_stream, 500).await;
        assert_eq!(
            texts(&replay),
            ["il pacco è arrivato rotto", "mi dispiace, lo sostituiamo"],
            "transcript after restart"
        );
        let mut q_stream = events(&mut client, &queued, 0).await;
        let replay_q = collect_events(&mut q_stream, 300).await;
        assert_eq!(texts(&replay_q), ["hello, anyone?"]);

        // Messages still flow in the assigned conversation.
        send_text(&mut client, &assigned, "m2", "grazie")
            .await
            .unwrap();
        assert_eq!(
            agent_text(&mut giulia, &assigned.conversation_id)
                .await
                .as_deref(),
            Some("grazie")
        );
        giulia.say(&assigned.conversation_id, "g2", "prego").await;
        let seen = until_text(&mut a_stream, "prego").await;
        let reply = seen
            .iter()
            .find(|e| message_text(e).as_deref() == Some("prego"))
            .unwrap();
        assert!(
            matches!(&reply.kind, Some(conversation_event::Kind::Message(m)) if m.sender == Sender::Agent as i32 && m.seq == 4)
        );
        // Her login took the grace back: past it, nothing runs and the assigned
        // conversation is still giulia's.
        let grace_taken_back = wait_until(5, || async {
            clock.next_deadline_ms().is_none_or(|at| at > grace_ends)
        })
        .await;
        assert!(grace_taken_back, "the grace still runs after the login");
        assert_eq!(
            clock.advance(Duration::from_millis(GRACE_MS + 300)),
            0,
            "a timer ran past the grace"
        );
        let snap = snapshot(&node).await;
        assert_eq!(
            agent_in(&snap, "giulia").load,
            1,
            "giulia still holds the conversation"
        );
        send_text(&mut client, &assigned, "m3", "ci sei ancora?")
            .await
            .unwrap();
        assert_eq!(
            agent_text(&mut giulia, &assigned.conversation_id)
                .await
                .as_deref(),
            Some("ci sei ancora?"),
            "messages still reach giulia past the grace"
        );

        // The queued conversation is offered when an English agent logs in.
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let offer = emma
            .offer(5)
            .await
            .expect("the restored queued conversation is offered");
        assert_eq!(offer.conversation_id, queued.conversation_id);
        let assigned_q = emma.accept(&offer).await;
        assert_eq!(assigned_q.transcript.len(), 1);

        // The returning customer is recognised.
        let again = start_conversation(&mut client, "sales", "it", "known")
            .await
            .unwrap();
        assert!(
            again.returning_customer,
            "a customer with a completed conversation is returning after a restart"
        );
        drop((giulia, emma, client, a_stream, q_stream));
        node.shutdown().await;
    });
}

#[test]
fn a_resumed_stream_after_restart_does_not_miss_new_events() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let node = start_durable(config(""), dir.path()).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = client
            .start_conversation(StartConversationRequest {
                department: "support".into(),
                language: "it".into(),
                customer_id: "resumer".into(),
                identity_token: identity_token("resumer"),
                display_name: "Resumer".into(),
                first_message: "buongiorno".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut stream = events(&mut client, &a, 0).await;
        assert_eq!(giulia.take().await, a.conversation_id);
        // The customer sees everything up to the assignment.
        let seen = next_event(&mut stream, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Assigned(_)) => Some(e.event_id),
            _ => None,
        })
        .await
        .expect("assigned event");
        let last = seen.max(
            collect_events(&mut stream, 300)
                .await
                .iter()
                .map(|e| e.event_id)
                .max()
                .unwrap_or(0),
        );
        drop((giulia, client, stream));
        node.shutdown().await;

        let restarted = restart_durable(config(""), dir.path()).await;
        let node = restarted.node;
        let (giulia, logged_in) = login_full(&node, "giulia", "pw").await.unwrap();
        assert_eq!(logged_in.conversation_ids, vec![a.conversation_id.clone()]);
        let mut client = customer(&node).await;
        let mut stream = events(&mut client, &a, last).await;
        giulia.say(&a.conversation_id, "g1", "eccomi").await;
        let got = next_event(&mut stream, 3, |e| message_text(e).map(|t| (e.event_id, t))).await;
        let (id, text) = got.expect("the agent's message after the restart reaches a customer who resumed from the last event seen");
        assert_eq!(text, "eccomi");
        assert!(
            id > last,
            "event ids continue after the restart ({id} <= {last})"
        );
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn shutdown_releases_the_store_so_a_node_can_start_on_it_at_once() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let node = start_durable(config(""), dir.path()).await;
        let mut client = customer(&node).await;
        start_conversation(&mut client, "support", "en", "lock")
            .await
            .unwrap();
        drop(client);
        node.shutdown().await;
        let restarted = restart_durable(config(""), dir.path()).await;
        let locked = restarted.copy.is_some();
        restarted.node.shutdown().await;
        assert!(
            !locked,
            "the store was still locked a second after RunningNode::shutdown returned"
        );
    });
}

#[test]
fn a_customer_with_a_completed_conversation_is_recognised_as_returning() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let first = start_conversation(&mut client, "support", "it", "again")
            .await
            .unwrap();
        assert!(!first.returning_customer);
        let cid = giulia.take().await;
        // The close is answered once the conversation and the customer's profile are
        // durable, and only then does the desk see it end: no wait is needed after it.
        giulia.close_and_wait(&cid).await;
        let second = start_conversation(&mut client, "support", "it", "again")
            .await
            .unwrap();
        assert!(
            second.returning_customer,
            "second contact after a completed one is returning"
        );
        drop((giulia, client));
        node.shutdown().await;
    });
}
