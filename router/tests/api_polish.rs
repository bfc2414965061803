//! What a client developer meets first (issue 12, "API polish"): positions all along a long
//! queue, the same event sequence whether an agent is free or not, a stream that ends with
//! the close, the desk's answers (the seq of a sent message, its echo, canned responses in
//! the ack, gRPC status names), one text cap for both sides, and the status of bad input
//! (a reused message id, bytes that do not decode).

use centralino_testkit as common;

use std::time::{Duration, Instant};

use centralino_proto::codec::StrictCodec;
use centralino_proto::v1::{
    agent_command, agent_event, conversation_event::Kind, AgentSend, CloseConversationRequest,
    ConversationEvent, SendMessageResponse, Sender,
};
use common::*;
use futures::StreamExt;
use tonic::Code;

/// Returns the next `queued` position on `stream` within `secs` seconds that `want` accepts.
async fn position(
    stream: &mut tonic::Streaming<ConversationEvent>,
    secs: u64,
    want: impl Fn(u32) -> bool,
) -> Option<u32> {
    next_event(stream, secs, |e| match &e.kind {
        Some(Kind::Queued(q)) if want(q.position) => Some(q.position),
        _ => None,
    })
    .await
}

/// Sends a desk command and returns its `ack` or `error`, with the events before it.
async fn answer(
    desk: &mut Desk,
    request_id: &str,
    kind: agent_command::Kind,
) -> (
    Result<centralino_proto::v1::Ack, centralino_proto::v1::CommandError>,
    Vec<agent_event::Kind>,
) {
    desk.request(request_id, kind).await;
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let event = tokio::time::timeout_at(deadline, desk.events.next())
            .await
            .unwrap_or_else(|_| panic!("no answer to {request_id:?}"))
            .expect("desk stream open")
            .expect("desk stream event");
        match event.kind {
            Some(agent_event::Kind::Ack(a)) if a.request_id == request_id => {
                return (Ok(a), before)
            }
            Some(agent_event::Kind::Error(e)) if e.request_id == request_id => {
                return (Err(e), before)
            }
            Some(other) => before.push(other),
            None => {}
        }
    }
}

fn send(conversation_id: &str, message_id: &str, text: &str) -> agent_command::Kind {
    agent_command::Kind::Send(AgentSend {
        conversation_id: conversation_id.to_string(),
        message_id: message_id.to_string(),
        text: text.to_string(),
        status_note: false,
    })
}

#[test]
fn customers_far_back_in_a_queue_of_2000_hear_their_position_change() {
    run(|| async {
        const WAITING: usize = 2_000;
        let config = config_with("", |c| {
            c.limits.max_queue_length = WAITING + 10;
        });
        let node = start(config).await;
        // Nobody is logged in: everybody waits, in the order they came.
        let mut client = customer(&node).await;
        let started_at = Instant::now();
        let mut started = Vec::with_capacity(WAITING);
        for _ in 0..WAITING {
            started.push(
                start_conversation(&mut client, "support", "en", "")
                    .await
                    .expect("start"),
            );
        }
        eprintln!(
            "{WAITING} conversations started in {:?}",
            started_at.elapsed()
        );
        let far = &started[1_499];
        let last = &started[WAITING - 1];
        let mut far_events = events(&mut client, far, 0).await;
        let mut last_events = events(&mut client, last, 0).await;
        assert_eq!(
            position(&mut far_events, 5, |p| p == 1_500).await,
            Some(1_500),
            "the 1,500th customer is told their place"
        );
        assert_eq!(
            position(&mut last_events, 5, |p| p == 2_000).await,
            Some(2_000)
        );

        // The first ten leave: everybody behind them moves up by ten.
        let closed_at = Instant::now();
        for s in &started[..10] {
            client
                .close_conversation(CloseConversationRequest {
                    conversation_id: s.conversation_id.clone(),
                    token: s.token.clone(),
                })
                .await
                .expect("close");
        }
        assert_eq!(
            position(&mut far_events, 5, |p| p == 1_490).await,
            Some(1_490),
            "the 1,500th customer hears of the move (not stuck at their first place)"
        );
        assert_eq!(
            position(&mut last_events, 5, |p| p == 1_990).await,
            Some(1_990),
            "so does the last one"
        );
        let told_in = closed_at.elapsed();
        eprintln!("positions of {WAITING} waiting updated within {told_in:?}");
        assert!(
            told_in < Duration::from_secs(3),
            "the last customer waited {told_in:?} for the new position"
        );

        // The queue actor stays responsive while it tells 2,000 positions: its snapshot
        // (a message to the same actor) answers quickly, during another wave of moves.
        for s in &started[10..20] {
            client
                .close_conversation(CloseConversationRequest {
                    conversation_id: s.conversation_id.clone(),
                    token: s.token.clone(),
                })
                .await
                .expect("close");
        }
        let asked = Instant::now();
        let snap = snapshot(&node).await;
        let answered_in = asked.elapsed();
        eprintln!("snapshot with {WAITING} waiting answered in {answered_in:?}");
        assert_eq!(queue_in(&snap, "support").depth as usize, WAITING - 20);
        assert!(
            answered_in < Duration::from_secs(1),
            "the queue took {answered_in:?} to answer its snapshot"
        );
        assert_eq!(
            position(&mut far_events, 5, |p| p == 1_480).await,
            Some(1_480)
        );
        drop((far_events, last_events, client));
        node.shutdown().await;
    });
}

#[test]
fn queued_comes_first_also_when_an_agent_is_free_at_once() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        // Let the queue's first round of positions pass: the newcomer is offered at once.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let mut stream = events(&mut client, &chat, 0).await;
        let offer = giulia.offer(5).await.expect("an offer for giulia");
        giulia.accept(&offer).await;
        let seen: Vec<&'static str> = collect_events(&mut stream, 500)
            .await
            .iter()
            .map(event_name)
            .filter(|n| *n != "message")
            .collect();
        assert_eq!(
            seen.iter().take(3).copied().collect::<Vec<_>>(),
            vec!["queued", "offered", "assigned"],
            "the same sequence as when the customer waits: {seen:?}"
        );
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn the_event_stream_ends_right_after_closed() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let mut stream = events(&mut client, &chat, 0).await;
        giulia.take().await;
        client
            .close_conversation(CloseConversationRequest {
                conversation_id: chat.conversation_id.clone(),
                token: chat.token.clone(),
            })
            .await
            .expect("close");
        let closed_at = Instant::now();
        let mut after_close = Vec::new();
        let mut closed = false;
        let ended = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(event) = stream.next().await {
                let event = event.expect("no error on the stream");
                if closed {
                    after_close.push(event_name(&event));
                }
                closed |= matches!(event.kind, Some(Kind::Closed(_)));
            }
        })
        .await;
        assert!(closed, "the stream carried the close");
        assert!(
            ended.is_ok(),
            "the stream still open {:?} after closed",
            closed_at.elapsed()
        );
        assert_eq!(after_close, vec!["rating_requested"]);
        // A stream opened afterwards (a reload) gets the events and ends too.
        let mut again = events(&mut client, &chat, 0).await;
        let replay = tokio::time::timeout(Duration::from_secs(3), async {
            let mut names = Vec::new();
            while let Some(Ok(event)) = again.next().await {
                names.push(event_name(&event));
            }
            names
        })
        .await
        .expect("a stream of a closed conversation ends");
        assert!(replay.contains(&"closed"), "{replay:?}");
        drop((giulia, client));
        node.shutdown().await;
    });
}

#[test]
fn the_desk_acks_a_send_with_its_seq_and_echoes_the_message() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let cid = giulia.take().await;
        let first = send_text(&mut client, &chat, "c-1", "buongiorno")
            .await
            .expect("customer message");

        let (acked, before) =
            answer(&mut giulia, "s1", send(&cid, "a-1", "come posso aiutarla?")).await;
        let acked = acked.expect("an ack");
        assert_eq!(
            acked.seq,
            first.seq + 1,
            "the ack carries the message's seq"
        );
        let echo: Vec<_> = before
            .iter()
            .filter_map(|k| match k {
                agent_event::Kind::Message(m) => m.message.clone(),
                _ => None,
            })
            .filter(|m| m.message_id == "a-1")
            .collect();
        assert_eq!(
            echo.len(),
            1,
            "the agent sees their own message: {before:?}"
        );
        assert_eq!(echo[0].seq, acked.seq);
        assert_eq!(echo[0].sender, Sender::Agent as i32);
        assert_eq!(echo[0].author, "giulia");
        assert_eq!(echo[0].text, "come posso aiutarla?");

        // A retry: the same seq again, no second echo.
        let (retry, before) =
            answer(&mut giulia, "s2", send(&cid, "a-1", "come posso aiutarla?")).await;
        assert_eq!(retry.expect("a retry is acked").seq, acked.seq);
        assert!(
            !before
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Message(_))),
            "a retry is not shown twice: {before:?}"
        );
        // The same id with another text is refused by its status name.
        let (reused, _) = answer(&mut giulia, "s3", send(&cid, "a-1", "altro testo")).await;
        let reused = reused.expect_err("another text under the same id");
        assert_eq!(reused.code, "ALREADY_EXISTS", "{reused:?}");
        // Status names as in the gRPC specification.
        let (foreign, _) = answer(&mut giulia, "s4", send("no-such-chat", "a-2", "ciao")).await;
        let foreign = foreign.expect_err("an unknown conversation");
        assert_eq!(foreign.code, "PERMISSION_DENIED", "{foreign:?}");
        let (empty, _) = answer(&mut giulia, "s5", send(&cid, "a-3", " ")).await;
        assert_eq!(empty.expect_err("empty text").code, "INVALID_ARGUMENT");
        let texts = transcript_texts(&node, &cid).await;
        assert_eq!(texts, vec!["buongiorno", "come posso aiutarla?"]);
        drop((giulia, client));
        node.shutdown().await;
    });
}

#[test]
fn customer_and_agent_texts_share_one_cap_and_a_reused_id_is_already_exists() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let cid = giulia.take().await;
        const CAP: usize = 8 * 1024;
        let longest = "a".repeat(CAP);
        let too_long = "a".repeat(CAP + 1);
        send_text(&mut client, &chat, "long", &longest)
            .await
            .expect("a customer's 8,192 bytes are taken");
        let refused = send_text(&mut client, &chat, "too-long", &too_long)
            .await
            .expect_err("8,193 bytes are not");
        assert_eq!(refused.code(), Code::InvalidArgument);
        let (agent_long, _) = answer(&mut giulia, "l1", send(&cid, "a-long", &longest)).await;
        agent_long.expect("an agent's 8,192 bytes are taken");
        let (agent_too_long, _) =
            answer(&mut giulia, "l2", send(&cid, "a-too-long", &too_long)).await;
        assert_eq!(
            agent_too_long.expect_err("8,193 bytes are not").code,
            "INVALID_ARGUMENT"
        );

        // The same id and text: an idempotent duplicate; another text: ALREADY_EXISTS, and
        // the first text stays.
        let first = send_text(&mut client, &chat, "m-1", "ciao").await.unwrap();
        let again = send_text(&mut client, &chat, "m-1", "ciao").await.unwrap();
        assert!(again.duplicate && again.seq == first.seq, "{again:?}");
        let other = send_text(&mut client, &chat, "m-1", "ciao, sono Anna")
            .await
            .expect_err("another text under a used id");
        assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
        let texts = transcript_texts(&node, &cid).await;
        assert_eq!(texts.iter().filter(|t| t.starts_with("ciao")).count(), 1);
        assert!(!texts.iter().any(|t| t == "ciao, sono Anna"));
        drop((giulia, client));
        node.shutdown().await;
    });
}

/// A message with a bytes field 1: its bytes arrive where a string is expected.
#[derive(Clone, PartialEq, prost::Message)]
struct NotUtf8 {
    #[prost(bytes = "vec", tag = "1")]
    raw: Vec<u8>,
}

#[test]
fn request_bytes_that_do_not_decode_are_invalid_argument() {
    run(|| async {
        let node = start(config("")).await;
        let mut grpc = tonic::client::Grpc::new(channel(&node).await);
        grpc.ready().await.expect("ready");
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/centralino.v1.ConversationService/SendMessage",
        );
        // `conversation_id` (field 1, a string) as bytes that are no UTF-8.
        let got: Result<tonic::Response<SendMessageResponse>, tonic::Status> = grpc
            .unary(
                tonic::Request::new(NotUtf8 {
                    raw: vec![0xc3, 0x28],
                }),
                path,
                StrictCodec::<NotUtf8, SendMessageResponse>::default(),
            )
            .await;
        let status = got.expect_err("undecodable bytes are refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("decode"), "{status:?}");
        node.shutdown().await;
    });
}

/// `ForceTransferRequest` as it was before its target became a oneof (plain fields 2-4).
#[derive(Clone, PartialEq, prost::Message)]
struct OldForceTransfer {
    #[prost(string, tag = "1")]
    conversation_id: String,
    #[prost(string, tag = "2")]
    agent_id: String,
    #[prost(string, tag = "5")]
    reason: String,
}

#[test]
fn force_transfer_takes_one_target_and_older_clients_still_work() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        giulia
            .set_status_and_wait(centralino_proto::v1::AgentStatus::Away)
            .await;
        // The old shape on the wire: field 2 set, which is now `target.agent_id`.
        let mut grpc = tonic::client::Grpc::new(channel(&node).await);
        grpc.ready().await.expect("ready");
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/centralino.v1.Admin/ForceTransfer",
        );
        let got: Result<
            tonic::Response<centralino_proto::v1::ForceTransferResponse>,
            tonic::Status,
        > = grpc
            .unary(
                authed(OldForceTransfer {
                    conversation_id: chat.conversation_id.clone(),
                    agent_id: "giulia".into(),
                    reason: "old client".into(),
                }),
                path,
                StrictCodec::<OldForceTransfer, centralino_proto::v1::ForceTransferResponse>::default(),
            )
            .await;
        let status = got.expect_err("giulia is away: the named agent cannot take it");
        // Read as a transfer to giulia (refused because she is away), not as a request
        // without a target (INVALID_ARGUMENT).
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("giulia"), "{status:?}");
        // Without a target.
        let none = admin(&node)
            .await
            .force_transfer(authed(centralino_proto::v1::ForceTransferRequest {
                conversation_id: chat.conversation_id.clone(),
                target: None,
                reason: String::new(),
            }))
            .await
            .expect_err("no target");
        assert_eq!(none.code(), Code::InvalidArgument);
        drop((giulia, client));
        node.shutdown().await;
    });
}
