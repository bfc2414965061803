//! Queue experience (DESIGN.md §1): out of hours an offline notice and the offline message
//! form; a long queue offers alternatives (wait, callback, message); the estimated wait is
//! streamed as agents free up; a full queue refuses new conversations.

use centralino_testkit as common;

use centralino_proto::v1::{
    conversation_event::Kind, ConversationOutcome, GetTranscriptRequest,
    LeaveOfflineMessageRequest, RequestCallbackRequest,
};
use common::*;

#[test]
fn out_of_hours_the_customer_gets_an_offline_notice_and_can_leave_a_message() {
    run(|| async {
        let config = config_with("", |c| {
            simulated(c, "2026-11-24T03:00:00+01:00", 1.0);
            italian_day_shift(c);
            set_schedule(c, "english", rome_daily(&["08:00-20:00"]));
        });
        let node = start(config).await;
        let mut client = customer(&node).await;
        let night = start_conversation(&mut client, "support", "it", "nottambulo")
            .await
            .unwrap();
        assert!(night.offline, "no team serves it or en at 03:00");
        assert_eq!(
            night.reopens_at_unix_ms,
            instant_ms("2026-11-24T10:00:00+01:00"),
            "the Italian service reopens at 10:00"
        );
        let mut stream = events(&mut client, &night, 0).await;
        let notice = next_event(&mut stream, 3, |e| match &e.kind {
            Some(Kind::Offline(o)) => Some(o.clone()),
            _ => None,
        })
        .await
        .expect("an offline notice on the stream");
        assert_eq!(notice.reopens_at_unix_ms, night.reopens_at_unix_ms);
        assert!(
            notice.message.contains("10:00"),
            "the notice says when the service reopens: {:?}",
            notice.message
        );

        // Neither email nor phone: refused, nothing changes.
        let err = client
            .leave_offline_message(LeaveOfflineMessageRequest {
                conversation_id: night.conversation_id.clone(),
                token: night.token.clone(),
                name: "Luca".into(),
                text: "vorrei un preventivo".into(),
                ..Default::default()
            })
            .await
            .expect_err("an offline message needs a way to answer");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let transcript = admin(&node)
            .await
            .get_transcript(authed(GetTranscriptRequest {
                conversation_id: night.conversation_id.clone(),
            }))
            .await
            .expect("transcript of the open conversation")
            .into_inner();
        assert_eq!(
            transcript.conversation.unwrap().outcome,
            ConversationOutcome::Open as i32,
            "the refused message closed the conversation"
        );
        let meanwhile = collect_events(&mut stream, 200).await;
        assert!(
            !meanwhile
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Closed(_)))),
            "closed after a refused offline message"
        );

        client
            .leave_offline_message(LeaveOfflineMessageRequest {
                conversation_id: night.conversation_id.clone(),
                token: night.token.clone(),
                name: "Luca".into(),
                email: "luca@example.it".into(),
                phone: String::new(),
                text: "vorrei un preventivo".into(),
            })
            .await
            .expect("offline message with an email address");
        assert_eq!(
            closed_outcome(&mut stream, 3).await,
            Some(ConversationOutcome::Offline as i32)
        );
        let event = integration_event(&node, 3, |e| {
            e.kind == "offline_message" && e.conversation_id == night.conversation_id
        })
        .await
        .expect("an offline_message integration event");
        assert_eq!(
            event.details.get("text").map(String::as_str),
            Some("vorrei un preventivo")
        );
        assert_eq!(
            event.details.get("email").map(String::as_str),
            Some("luca@example.it")
        );
        drop((client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_long_queue_offers_alternatives_and_a_callback_ends_the_wait() {
    run(|| async {
        let config = config_with("", |c| {
            c.routing.busy_queue_length = 2;
            c.routing.busy_wait_secs = 1_000_000;
            c.limits.max_queue_length = 3;
        });
        let node = start(config).await;
        let mut client = customer(&node).await;
        let mut started = Vec::new();
        let mut streams = Vec::new();
        for n in 0..3 {
            let s = start_conversation(&mut client, "support", "it", &format!("c{n}"))
                .await
                .unwrap();
            streams.push(events(&mut client, &s, 0).await);
            started.push(s);
        }
        let busy = next_event(&mut streams[2], 3, |e| match &e.kind {
            Some(Kind::Busy(b)) => Some(b.clone()),
            _ => None,
        })
        .await
        .expect("the third customer gets a busy notice");
        assert_eq!(busy.options, vec!["wait", "callback", "message"]);
        assert!(!busy.message.is_empty());
        for (n, stream) in streams.iter_mut().take(2).enumerate() {
            let seen = collect_events(stream, 200).await;
            assert!(
                !seen.iter().any(|e| matches!(e.kind, Some(Kind::Busy(_)))),
                "customer {n} (position {}) got a busy notice",
                n + 1
            );
        }

        // The queue is full.
        let snap = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 3).await;
        assert_eq!(queue_in(&snap, "support").depth, 3);
        let err = start_conversation(&mut client, "support", "it", "c3")
            .await
            .expect_err("a full queue refuses new conversations");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

        // A callback instead of waiting.
        let third = &started[2];
        let err = client
            .request_callback(RequestCallbackRequest {
                conversation_id: third.conversation_id.clone(),
                token: third.token.clone(),
                phone: String::new(),
                preferred_time: "domani".into(),
            })
            .await
            .expect_err("a callback needs a phone number");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert_eq!(
            queue_in(&snapshot(&node).await, "support").depth,
            3,
            "a refused callback request changes nothing"
        );
        client
            .request_callback(RequestCallbackRequest {
                conversation_id: third.conversation_id.clone(),
                token: third.token.clone(),
                phone: "+39 02 1234567".into(),
                preferred_time: "domani dopo le 10".into(),
            })
            .await
            .expect("callback request");
        assert_eq!(
            closed_outcome(&mut streams[2], 3).await,
            Some(ConversationOutcome::Escalated as i32)
        );
        let event = integration_event(&node, 3, |e| {
            e.kind == "callback_request" && e.conversation_id == third.conversation_id
        })
        .await
        .expect("a callback_request integration event");
        assert_eq!(
            event.details.get("phone").map(String::as_str),
            Some("+39 02 1234567")
        );
        let snap = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 2).await;
        assert_eq!(
            queue_in(&snap, "support").depth,
            2,
            "the callback left the queue"
        );
        drop((client, streams));
        node.shutdown().await;
    });
}

/// Waits for a `queued` event with an estimate below `below`; returns it.
async fn lower_estimate(
    stream: &mut tonic::Streaming<centralino_proto::v1::ConversationEvent>,
    below: u32,
    seen: &mut Vec<(u32, u32)>,
) -> Option<u32> {
    next_event(stream, 5, |e| match &e.kind {
        Some(Kind::Queued(q)) => {
            seen.push((q.position, q.estimated_wait_seconds));
            (q.estimated_wait_seconds < below).then_some(q.estimated_wait_seconds)
        }
        _ => None,
    })
    .await
}

#[test]
fn the_estimated_wait_drops_as_agents_free_up() {
    run(|| async {
        let config = config_with("", |c| set_capacity(c, "giulia", 1));
        let node = start(config).await;
        let mut client = customer(&node).await;
        let mut started = Vec::new();
        for n in 0..3 {
            started.push(
                start_conversation(&mut client, "support", "it", &format!("w{n}"))
                    .await
                    .unwrap(),
            );
        }
        let mut third = events(&mut client, &started[2], 0).await;
        let mut seen = Vec::new();
        let first = next_event(&mut third, 3, |e| match &e.kind {
            Some(Kind::Queued(q)) => Some(q.clone()),
            _ => None,
        })
        .await
        .expect("queued event with an estimate");
        seen.push((first.position, first.estimated_wait_seconds));
        assert_eq!(first.position, 3);
        assert!(
            first.estimated_wait_seconds > 0,
            "nobody is logged in: the third customer must wait: {first:?}"
        );

        // An agent logs in: the estimate drops.
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let after_login = lower_estimate(&mut third, first.estimated_wait_seconds, &mut seen)
            .await
            .unwrap_or_else(|| panic!("no lower estimate after an agent logged in: {seen:?}"));

        // A chat closes: the estimate drops again.
        let offer = giulia.offer(5).await.expect("giulia gets the oldest");
        assert_eq!(offer.conversation_id, started[0].conversation_id);
        giulia.accept(&offer).await;
        giulia.close_and_wait(&offer.conversation_id).await;
        lower_estimate(&mut third, after_login, &mut seen)
            .await
            .unwrap_or_else(|| panic!("no lower estimate after a chat closed: {seen:?}"));
        drop((giulia, client, third));
        node.shutdown().await;
    });
}

#[test]
fn a_waiting_customer_can_leave_a_message_with_a_phone_number() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        let waiting = start_conversation(&mut client, "support", "it", "paziente")
            .await
            .unwrap();
        let mut stream = events(&mut client, &waiting, 0).await;
        snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 1).await;
        let err = client
            .leave_offline_message(LeaveOfflineMessageRequest {
                conversation_id: waiting.conversation_id.clone(),
                token: waiting.token.clone(),
                email: "not-an-address".into(),
                text: "richiamatemi".into(),
                ..Default::default()
            })
            .await
            .expect_err("a malformed email address");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        client
            .leave_offline_message(LeaveOfflineMessageRequest {
                conversation_id: waiting.conversation_id.clone(),
                token: waiting.token.clone(),
                phone: "+39 333 7654321".into(),
                text: "richiamatemi".into(),
                ..Default::default()
            })
            .await
            .expect("a message with a phone number");
        assert_eq!(
            closed_outcome(&mut stream, 3).await,
            Some(ConversationOutcome::Offline as i32)
        );
        let snap = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 0).await;
        assert_eq!(
            queue_in(&snap, "support").depth,
            0,
            "the message left the queue"
        );
        drop((client, stream));
        node.shutdown().await;
    });
}

#[test]
fn the_queue_position_does_not_jump_while_nobody_moves() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        // Nobody is logged in; an English customer arrives behind two Italian ones.
        let mut streams = Vec::new();
        for (n, language) in ["it", "it", "en"].into_iter().enumerate() {
            let s = start_conversation(&mut client, "support", language, &format!("q{n}"))
                .await
                .unwrap();
            streams.push(events(&mut client, &s, 0).await);
        }
        let english = collect_events(&mut streams[2], 1000).await;
        let positions: Vec<u32> = english
            .iter()
            .filter_map(|e| match &e.kind {
                Some(Kind::Queued(q)) => Some(q.position),
                _ => None,
            })
            .collect();
        assert!(!positions.is_empty(), "the customer is told a position");
        assert!(
            positions.windows(2).all(|w| w[0] == w[1]),
            "nobody joined or left ahead, yet the position changed: {positions:?}"
        );
        drop((client, streams));
        node.shutdown().await;
    });
}
