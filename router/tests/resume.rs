//! Event stream resume and idempotent sends (DESIGN.md §6, invariant 4).

use centralino_testkit as common;

use centralino_proto::v1::{agent_event, conversation_event, ConversationEvent};
use common::*;

fn ids(events: &[ConversationEvent]) -> Vec<u64> {
    events.iter().map(|e| e.event_id).collect()
}

#[test]
fn a_resumed_stream_delivers_exactly_the_missed_events() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "resume")
            .await
            .unwrap();
        let mut stream = events(&mut client, &a, 0).await;
        giulia.take().await;
        send_text(&mut client, &a, "m1", "uno").await.unwrap();
        giulia.say(&a.conversation_id, "g1", "due").await;
        let mut seen = Vec::new();
        loop {
            let event = next_event(&mut stream, 5, |e| Some(e.clone()))
                .await
                .expect("event before the drop");
            let done = message_text(&event).as_deref() == Some("due");
            seen.push(event);
            if done {
                break;
            }
        }
        let last = seen.last().unwrap().event_id;
        assert!(
            ids(&seen).windows(2).all(|w| w[0] < w[1]),
            "ids increase: {:?}",
            ids(&seen)
        );
        drop(stream);

        // A witness stream from the start tells when each missed event has been emitted.
        let mut witness = events(&mut client, &a, 0).await;
        let mut all = Vec::new();
        async fn until(
            witness: &mut tonic::Streaming<ConversationEvent>,
            all: &mut Vec<ConversationEvent>,
            text: &str,
        ) {
            while !all.iter().any(|e| message_text(e).as_deref() == Some(text)) {
                all.push(
                    next_event(witness, 5, |e| Some(e.clone()))
                        .await
                        .expect("witness event"),
                );
            }
        }
        send_text(&mut client, &a, "m2", "tre").await.unwrap();
        giulia.say(&a.conversation_id, "g2", "quattro").await;
        until(&mut witness, &mut all, "quattro").await;
        send_text(&mut client, &a, "m3", "cinque").await.unwrap();
        until(&mut witness, &mut all, "cinque").await;
        all.extend(collect_events(&mut witness, 200).await);
        assert_eq!(
            &all[..seen.len()],
            &seen[..],
            "a stream from 0 replays what was seen"
        );

        let mut resumed_stream = events(&mut client, &a, last).await;
        let resumed = collect_events(&mut resumed_stream, 500).await;
        let missed: Vec<ConversationEvent> =
            all.iter().filter(|e| e.event_id > last).cloned().collect();
        assert_eq!(resumed, missed, "exactly the missed events, in order");
        assert_eq!(
            resumed.first().map(|e| e.event_id),
            Some(last + 1),
            "no gap after the last seen id"
        );
        assert!(
            ids(&resumed).windows(2).all(|w| w[0] < w[1]),
            "ids strictly increase: {:?}",
            ids(&resumed)
        );
        let texts: Vec<String> = resumed.iter().filter_map(message_text).collect();
        assert_eq!(texts, ["tre", "quattro", "cinque"]);

        // Live events keep flowing on the resumed stream, without duplicates.
        giulia.say(&a.conversation_id, "g3", "sei").await;
        let live = next_event(&mut resumed_stream, 3, |e| Some(e.clone()))
            .await
            .expect("live event");
        assert_eq!(message_text(&live).as_deref(), Some("sei"));
        assert_eq!(live.event_id, resumed.last().unwrap().event_id + 1);
        drop((giulia, client, resumed_stream, witness));
        node.shutdown().await;
    });
}

#[test]
fn the_same_message_id_twice_is_stored_and_delivered_once() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "dup")
            .await
            .unwrap();
        // Before assignment: a retried message lands once in the transcript.
        let first = send_text(&mut client, &a, "q1", "prima").await.unwrap();
        let again = send_text(&mut client, &a, "q1", "prima").await.unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate, "second send of q1 is a duplicate");
        assert_eq!(again.seq, first.seq);
        let offer = giulia.offer(5).await.expect("offer");
        let assigned = giulia.accept(&offer).await;
        let q1: Vec<_> = assigned
            .transcript
            .iter()
            .filter(|m| m.message_id == "q1")
            .collect();
        assert_eq!(
            q1.len(),
            1,
            "transcript holds q1 once: {:?}",
            assigned.transcript
        );

        // After assignment: the agent receives a retried message once.
        let r1 = send_text(&mut client, &a, "m1", "ciao").await.unwrap();
        let r2 = send_text(&mut client, &a, "m1", "ciao").await.unwrap();
        assert!(!r1.duplicate);
        assert!(r2.duplicate, "second send of m1 returns duplicate=true");
        assert_eq!(r1.seq, r2.seq, "same seq for the duplicate");
        send_text(&mut client, &a, "m2", "dopo").await.unwrap();
        let mut received = Vec::new();
        while !received.iter().any(|id: &String| id == "m2") {
            let id = giulia
                .next(3, |k| match k {
                    agent_event::Kind::Message(m) => m.message.map(|m| m.message_id),
                    _ => None,
                })
                .await
                .expect("agent message");
            received.push(id);
        }
        for kind in giulia.collect_for(300).await {
            if let agent_event::Kind::Message(m) = kind {
                received.push(m.message.unwrap().message_id);
            }
        }
        assert_eq!(received, ["m1", "m2"], "the agent gets m1 once");

        // Agent retries are deduplicated too.
        giulia.say(&a.conversation_id, "a1", "risposta").await;
        giulia.say(&a.conversation_id, "a1", "risposta").await;
        giulia.say(&a.conversation_id, "a2", "altro").await;
        let mut stream = events(&mut client, &a, 0).await;
        let mut all = Vec::new();
        while !all
            .iter()
            .any(|e| message_text(e).as_deref() == Some("altro"))
        {
            all.push(
                next_event(&mut stream, 5, |e| Some(e.clone()))
                    .await
                    .expect("event"),
            );
        }
        all.extend(collect_events(&mut stream, 300).await);
        let ids: Vec<String> = all
            .iter()
            .filter_map(|e| match &e.kind {
                Some(conversation_event::Kind::Message(m)) => Some(m.message_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            ids,
            ["q1", "m1", "m2", "a1", "a2"],
            "each message once in the customer's stream"
        );
        let snap = snapshot(&node).await;
        assert_eq!(snap.counters.unwrap().messages, 5);
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}
