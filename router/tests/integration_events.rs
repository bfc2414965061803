//! The integration event stream (CRM, e-mail): lifecycle events with increasing ids,
//! resumable after the last event seen without loss or duplicates.

use centralino_testkit as common;

use std::collections::BTreeSet;
use std::time::Duration;

use centralino_proto::v1::IntegrationEvent;
use common::*;
use tokio_stream::StreamExt;

/// Reads `n` events from `stream` (panics after a few seconds).
async fn read(stream: &mut tonic::Streaming<IntegrationEvent>, n: usize) -> Vec<IntegrationEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(3), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} integration events: {out:?}", out.len()))
            .expect("stream open")
            .expect("event");
        out.push(event);
    }
    out
}

/// Returns every event arriving within `ms` milliseconds.
async fn drain(stream: &mut tonic::Streaming<IntegrationEvent>, ms: u64) -> Vec<IntegrationEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, stream.next()).await {
        out.push(event);
    }
    out
}

fn assert_increasing(events: &[IntegrationEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].event_id < pair[1].event_id,
            "event ids must increase: {} then {}",
            pair[0].event_id,
            pair[1].event_id
        );
    }
}

#[test]
fn the_integration_stream_resumes_after_the_last_event_seen() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        let mut first_ids = Vec::new();
        for n in 0..3 {
            let s = start_conversation(&mut client, "support", "it", &format!("early-{n}"))
                .await
                .unwrap();
            first_ids.push(s.conversation_id);
        }
        let mut stream = integration_stream(&node, 0).await;
        let first = read(&mut stream, 3).await;
        assert_increasing(&first);
        assert!(first.iter().all(|e| e.kind == "started"), "{first:?}");
        let seen: Vec<&str> = first.iter().map(|e| e.conversation_id.as_str()).collect();
        assert_eq!(seen, first_ids, "events in the order they happened");
        let first_event = &first[0];
        assert_eq!(first_event.customer_id, "early-0");
        assert_eq!(first_event.department, "support");
        assert_eq!(first_event.language, "it");
        let last = first.last().unwrap().event_id;
        drop(stream);

        // Reconnect after the last event seen, then more happens.
        let mut resumed = integration_stream(&node, last).await;
        let mut later_ids = Vec::new();
        for n in 0..2 {
            let s = start_conversation(&mut client, "support", "it", &format!("late-{n}"))
                .await
                .unwrap();
            later_ids.push(s.conversation_id);
        }
        let mut later = read(&mut resumed, 2).await;
        later.extend(drain(&mut resumed, 300).await);
        assert_increasing(&later);
        assert!(
            later.iter().all(|e| e.event_id > last),
            "resumed stream repeats old events: {later:?}"
        );
        let later_seen: Vec<&str> = later.iter().map(|e| e.conversation_id.as_str()).collect();
        assert_eq!(later_seen, later_ids, "exactly the newer events");

        // From the start again: everything once, in order.
        let mut everything = integration_stream(&node, 0).await;
        let all = read(&mut everything, 5).await;
        let extra = drain(&mut everything, 300).await;
        assert!(extra.is_empty(), "more events than happened: {extra:?}");
        assert_increasing(&all);
        let unique: BTreeSet<u64> = all.iter().map(|e| e.event_id).collect();
        assert_eq!(unique.len(), 5, "no duplicates");
        let mut all_ids: Vec<String> = first_ids.clone();
        all_ids.extend(later_ids.clone());
        let all_seen: Vec<String> = all.iter().map(|e| e.conversation_id.clone()).collect();
        assert_eq!(all_seen, all_ids);

        // Resuming from the middle of the stored backlog.
        let mut middle = integration_stream(&node, first[1].event_id).await;
        let rest = read(&mut middle, 3).await;
        assert_eq!(rest[0].event_id, first[2].event_id);
        assert!(drain(&mut middle, 200).await.is_empty());
        drop((client, resumed, everything, middle));
        node.shutdown().await;
    });
}
