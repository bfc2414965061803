//! Limits no client can break (issue 10): closed conversations do not hold live slots,
//! exact queue and node caps under concurrency, rate limits, stream caps, bounded event
//! logs, slow readers cut with a resume hint, idle expiry.

use std::time::Duration;

use centralino_testkit as common;

use centralino_proto::v1::{CloseConversationRequest, RateConversationRequest};
use common::*;

#[test]
fn closed_conversations_do_not_hold_live_slots() {
    run(|| async {
        let node = start(config_with("", |c| {
            c.limits.max_live_conversations = 5;
            c.limits.max_closed_lingering = 8;
        }))
        .await;
        let mut client = customer(&node).await;
        // Far more start/close pairs than the live cap: every start is admitted.
        for i in 0..40 {
            let started = start_conversation(&mut client, "support", "it", &format!("flood-{i}"))
                .await
                .unwrap_or_else(|s| panic!("start {i} refused: {s}"));
            client
                .close_conversation(CloseConversationRequest {
                    conversation_id: started.conversation_id,
                    token: started.token,
                })
                .await
                .unwrap();
        }
        // At most max_closed_lingering closed actors are kept.
        assert!(
            wait_until(5, || async { node.router.live_conversations() <= 8 }).await,
            "{} actors live",
            node.router.live_conversations()
        );
        // The open cap still holds for open conversations.
        let mut open = Vec::new();
        for i in 0..5 {
            open.push(
                start_conversation(&mut client, "support", "it", &format!("open-{i}"))
                    .await
                    .unwrap(),
            );
        }
        let refused = start_conversation(&mut client, "support", "it", "one-more")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    });
}

#[test]
fn a_completed_conversation_can_still_be_rated_after_close() {
    run(|| async {
        let node = start(config_with("", |c| c.limits.max_live_conversations = 1)).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "rater")
            .await
            .unwrap();
        giulia.take().await;
        client
            .close_conversation(CloseConversationRequest {
                conversation_id: a.conversation_id.clone(),
                token: a.token.clone(),
            })
            .await
            .unwrap();
        // The closed conversation no longer holds the node's only live slot ...
        let b = start_conversation(&mut client, "support", "it", "next")
            .await
            .expect("a closed conversation holds no live slot");
        // ... and the first one is still rated within its window.
        client
            .rate_conversation(RateConversationRequest {
                conversation_id: a.conversation_id.clone(),
                token: a.token.clone(),
                good: true,
                comment: String::new(),
            })
            .await
            .expect("rating within the window");
        drop(b);
    });
}

#[test]
fn concurrent_starts_fill_the_queue_exactly_to_its_cap() {
    run(|| async {
        const CAP: usize = 37;
        let node = start(config_with("", |c| c.limits.max_queue_length = CAP)).await;
        let channel = channel(&node).await;
        let mut tasks = Vec::new();
        for i in 0..256 {
            let mut client =
                centralino_proto::v1::conversation_service_client::ConversationServiceClient::new(
                    channel.clone(),
                );
            tasks.push(tokio::spawn(async move {
                start_conversation(&mut client, "support", "it", &format!("rush-{i}")).await
            }));
        }
        let mut admitted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => admitted += 1,
                Err(s) => assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s}"),
            }
        }
        assert_eq!(admitted, CAP, "admitted starts");
        assert!(
            wait_until(5, || async { node.router.queue_depth("support") == CAP }).await,
            "queue depth {}",
            node.router.queue_depth("support")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(node.router.queue_depth("support"), CAP);
    });
}

#[test]
fn concurrent_starts_fill_the_node_exactly_to_its_cap() {
    run(|| async {
        const CAP: usize = 23;
        let node = start(config_with("", |c| c.limits.max_live_conversations = CAP)).await;
        let channel = channel(&node).await;
        let mut tasks = Vec::new();
        for i in 0..256 {
            let mut client =
                centralino_proto::v1::conversation_service_client::ConversationServiceClient::new(
                    channel.clone(),
                );
            tasks.push(tokio::spawn(async move {
                start_conversation(&mut client, "sales", "it", &format!("node-{i}")).await
            }));
        }
        let mut admitted = 0;
        for task in tasks {
            if task.await.unwrap().is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, CAP);
        assert_eq!(node.router.open_conversations(), CAP);
    });
}

/// Extracts the `grpc-retry-pushback-ms` of a refusal.
fn pushback_ms(status: &tonic::Status) -> Option<u64> {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[test]
fn starts_from_one_address_are_rate_limited_with_a_retry_hint() {
    run(|| async {
        let node = start(config_with("", |c| {
            c.limits.starts_per_minute_per_addr = 60;
            c.limits.starts_burst_per_addr = 5;
        }))
        .await;
        let mut client = customer(&node).await;
        // Different customers: only the address limit applies (it needs the client
        // address, so this also shows the server sees it).
        for i in 0..5 {
            start_conversation(&mut client, "support", "it", &format!("addr-{i}"))
                .await
                .unwrap_or_else(|s| panic!("start {i}: {s}"));
        }
        let refused = start_conversation(&mut client, "support", "it", "addr-5")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
        assert!(refused.message().contains("from this address"), "{refused}");
        let wait = pushback_ms(&refused).expect("retry pushback");
        assert!((1..=1000).contains(&wait), "{wait} ms");
        assert_eq!(
            node.router.live_conversations(),
            5,
            "the refusal changed nothing"
        );
        // After the hinted wait one more start is admitted.
        tokio::time::sleep(Duration::from_millis(wait + 50)).await;
        start_conversation(&mut client, "support", "it", "addr-6")
            .await
            .expect("admitted after the pushback");
    });
}

#[test]
fn starts_and_messages_of_one_customer_are_rate_limited() {
    run(|| async {
        let node = start(config_with("", |c| {
            c.limits.starts_per_minute_per_customer = 1;
            c.limits.starts_burst_per_customer = 2;
            c.limits.messages_per_minute_per_conversation = 1;
            c.limits.messages_burst_per_conversation = 3;
        }))
        .await;
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "eager")
            .await
            .unwrap();
        start_conversation(&mut client, "support", "it", "eager")
            .await
            .unwrap();
        let refused = start_conversation(&mut client, "support", "it", "eager")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            pushback_ms(&refused).is_some_and(|ms| ms > 1000),
            "{refused:?}"
        );
        // Another customer is served meanwhile.
        start_conversation(&mut client, "support", "it", "patient")
            .await
            .expect("other customers are not limited");
        for i in 0..3 {
            send_text(&mut client, &a, &format!("m{i}"), "ciao")
                .await
                .unwrap();
        }
        let refused = send_text(&mut client, &a, "m3", "ciao").await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
        assert!(pushback_ms(&refused).is_some());
        let texts = transcript_texts(&node, &a.conversation_id).await;
        assert_eq!(
            texts.len(),
            3,
            "the refused message was not stored: {texts:?}"
        );
    });
}

#[test]
fn a_token_holds_a_bounded_number_of_streams() {
    run(|| async {
        let node = start(config_with("", |c| {
            c.limits.max_streams_per_conversation = 2;
            c.limits.max_streams_per_connection = 3;
        }))
        .await;
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "streams-a")
            .await
            .unwrap();
        let s1 = events(&mut client, &a, 0).await;
        let s2 = events(&mut client, &a, 0).await;
        let third = client
            .stream_events(centralino_proto::v1::StreamEventsRequest {
                conversation_id: a.conversation_id.clone(),
                token: a.token.clone(),
                after_event_id: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(third.code(), tonic::Code::ResourceExhausted, "{third}");
        // Closing one stream frees its place.
        drop(s1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s3 = events(&mut client, &a, 0).await;
        // Per connection: a third stream of another conversation fits, a fourth does not.
        let b = start_conversation(&mut client, "support", "it", "streams-b")
            .await
            .unwrap();
        let s4 = events(&mut client, &b, 0).await;
        let fifth = client
            .stream_events(centralino_proto::v1::StreamEventsRequest {
                conversation_id: b.conversation_id.clone(),
                token: b.token.clone(),
                after_event_id: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(fifth.code(), tonic::Code::ResourceExhausted, "{fifth}");
        assert!(fifth.message().contains("connection"), "{fifth}");
        // A new connection has its own places.
        let mut other = customer(&node).await;
        let _s5 = events(&mut other, &b, 0).await;
        drop((s2, s3, s4));
    });
}

#[test]
fn a_slow_reader_is_cut_with_a_resume_point_and_resumes_without_loss() {
    run(|| async {
        let node = start(config_with("", |c| c.limits.stream_buffer_events = 4)).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "slow")
            .await
            .unwrap();
        giulia.take().await;
        // A subscriber that does not read (in process: nothing drains it).
        let actor = node.router.conversation(&a.conversation_id).unwrap();
        let mut slow = actor
            .send(centralino_router::conversation::Subscribe {
                token: Some(a.token.clone()),
                after_event_id: 0,
            })
            .await
            .unwrap()
            .unwrap();
        for i in 0..12 {
            send_text(&mut client, &a, &format!("s{i}"), &format!("testo {i}"))
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        let cut = loop {
            match slow.recv().await.expect("the stream ends with a status") {
                Ok(event) => got.push(event),
                Err(status) => break status,
            }
        };
        assert!(slow.recv().await.is_none(), "nothing after the cut");
        assert_eq!(cut.code(), tonic::Code::Unavailable, "{cut}");
        let last = got.last().map_or(0, |e| e.event_id);
        assert!(
            cut.message().contains(&format!("resume from event {last}")),
            "{cut}"
        );
        // Resuming from the named event brings every message, none twice (a long
        // backlog comes in pages of the buffer, each ending with where to resume).
        let mut texts: Vec<String> = got.iter().filter_map(message_text).collect();
        let mut after = last;
        let mut pages = 0;
        'resume: while !texts.iter().any(|t| t == "testo 11") {
            pages += 1;
            assert!(pages < 20, "too many pages");
            let mut resumed = events(&mut client, &a, after).await;
            loop {
                let item = tokio::time::timeout(Duration::from_secs(5), resumed.message())
                    .await
                    .expect("resumed event");
                match item {
                    Ok(Some(event)) => {
                        assert!(event.event_id > after, "no event twice");
                        after = event.event_id;
                        texts.extend(message_text(&event));
                        if texts.iter().any(|t| t == "testo 11") {
                            break 'resume;
                        }
                    }
                    Ok(None) => panic!("a stream ended without a status"),
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                        assert!(
                            status
                                .message()
                                .contains(&format!("resume from event {after}")),
                            "{status}"
                        );
                        continue 'resume;
                    }
                }
            }
        }
        let expected: Vec<String> = (0..12).map(|i| format!("testo {i}")).collect();
        let customer_texts: Vec<String> = texts
            .into_iter()
            .filter(|t| t.starts_with("testo "))
            .collect();
        assert_eq!(customer_texts, expected);
    });
}

#[test]
fn the_event_log_is_trimmed_and_old_resume_points_get_the_messages() {
    run(|| async {
        let node = start(config_with("", |c| c.limits.max_events_kept = 5)).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "long")
            .await
            .unwrap();
        giulia.take().await;
        for i in 0..20 {
            send_text(&mut client, &a, &format!("l{i}"), &format!("riga {i}"))
                .await
                .unwrap();
        }
        // From the start: the 20 messages come from the transcript, in order, then the
        // events kept.
        let mut stream = events(&mut client, &a, 0).await;
        let mut texts = Vec::new();
        let mut ids = Vec::new();
        while !texts.iter().any(|t: &String| t == "riga 19") {
            let event = next_event(&mut stream, 5, |e| Some(e.clone()))
                .await
                .expect("event");
            ids.push(event.event_id);
            texts.extend(message_text(&event));
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let expected: Vec<String> = (0..20).map(|i| format!("riga {i}")).collect();
        assert_eq!(texts, expected);
        // The actor keeps only the last events.
        let kept = node
            .router
            .conversation(&a.conversation_id)
            .unwrap()
            .send(centralino_router::conversation::EventsKept)
            .await
            .unwrap();
        assert_eq!(kept, 5);
        // A resume point inside the kept events gets exactly what follows it.
        let after = ids[ids.len() - 3];
        let mut tail = events(&mut client, &a, after).await;
        let next = next_event(&mut tail, 5, |e| Some(e.event_id))
            .await
            .unwrap();
        assert_eq!(next, ids[ids.len() - 2]);
    });
}

#[test]
fn idle_queued_conversations_end_on_the_node_clock() {
    run(|| async {
        let config = config_with("", |c| c.limits.idle_queued_secs = 600);
        let (node, clock) = start_manual(config, "2026-03-02T10:00:00+01:00").await;
        let mut client = customer(&node).await;
        let idle = start_conversation(&mut client, "support", "it", "idle")
            .await
            .unwrap();
        let present = start_conversation(&mut client, "support", "it", "present")
            .await
            .unwrap();
        let mut watching = events(&mut client, &present, 0).await;
        assert!(wait_until(5, || async { node.router.queue_depth("support") == 2 }).await);
        advance_settled(&clock, Duration::from_secs(300)).await;
        // Half way: still queued.
        assert!(node.router.conversation(&idle.conversation_id).is_some());
        assert_eq!(node.router.open_conversations(), 2);
        clock.advance(Duration::from_secs(301));
        assert!(
            wait_until(5, || async { node.router.open_conversations() == 1 }).await,
            "the idle conversation ended"
        );
        assert!(wait_until(5, || async { node.router.queue_depth("support") == 1 }).await);
        // Its customer, coming back, sees why.
        let mut stream = events(&mut client, &idle, 0).await;
        let reason = next_event(&mut stream, 5, |e| match &e.kind {
            Some(centralino_proto::v1::conversation_event::Kind::Closed(c)) => {
                Some(c.reason.clone())
            }
            _ => None,
        })
        .await
        .expect("closed event");
        assert!(reason.contains("no activity"), "{reason}");
        // The customer with an open stream is still waiting.
        assert!(node.router.conversation(&present.conversation_id).is_some());
        drop(watching.message().await);
    });
}

#[test]
fn idle_offline_conversations_end_on_the_node_clock() {
    run(|| async {
        let config = config_with("", |c| {
            c.limits.idle_offline_secs = 900;
            set_schedule(c, "italian", rome_daily(&["10:00-22:00"]));
            set_schedule(c, "english", rome_daily(&["10:00-22:00"]));
        });
        let (node, clock) = start_manual(config, "2026-03-02T23:00:00+01:00").await;
        let mut client = customer(&node).await;
        let night = start_conversation(&mut client, "support", "it", "night-owl")
            .await
            .unwrap();
        assert!(night.offline, "nobody serves at 23:00");
        let mut stream = events(&mut client, &night, 0).await;
        drop(stream.message().await);
        drop(stream);
        tokio::time::sleep(Duration::from_millis(100)).await;
        advance_settled(&clock, Duration::from_secs(899)).await;
        assert_eq!(node.router.open_conversations(), 1);
        clock.advance(Duration::from_secs(2));
        assert!(
            wait_until(5, || async { node.router.open_conversations() == 0 }).await,
            "the idle offline conversation ended"
        );
        let mut stream = events(&mut client, &night, 0).await;
        let closed = next_event(&mut stream, 5, |e| match &e.kind {
            Some(centralino_proto::v1::conversation_event::Kind::Closed(c)) => Some(c.clone()),
            _ => None,
        })
        .await
        .expect("closed event");
        assert!(
            closed.reason.contains("no activity for 15 min"),
            "{closed:?}"
        );
    });
}
