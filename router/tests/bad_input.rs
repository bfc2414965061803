//! Bad input gets a clear gRPC status and changes nothing (DESIGN.md §6, invariant 7).

use centralino_testkit as common;

use centralino_proto::v1::{
    agent_command, agent_event, AcceptOffer, CloseConversationRequest, ConversationOutcome,
    GetSnapshotRequest, RateConversationRequest, Snapshot, StreamEventsRequest,
};
use common::*;
use tonic::Code;

/// Queue depths, agents' load and status, and the counters.
type Fingerprint = (
    Vec<(String, u32)>,
    Vec<(String, u32, i32)>,
    Option<centralino_proto::v1::Counters>,
);

/// What must not change when a request is rejected.
fn fingerprint(s: &Snapshot) -> Fingerprint {
    (
        s.queues
            .iter()
            .map(|q| (q.department.clone(), q.depth))
            .collect(),
        s.agents
            .iter()
            .map(|a| (a.agent_id.clone(), a.load, a.status))
            .collect(),
        s.counters,
    )
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(status) => status.code(),
    }
}

async fn command_error(desk: &mut Desk) -> Option<centralino_proto::v1::CommandError> {
    desk.next(3, |k| match k {
        agent_event::Kind::Error(e) => Some(e),
        _ => None,
    })
    .await
}

#[test]
fn bad_customer_requests_are_rejected_and_change_nothing() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "good")
            .await
            .unwrap();
        let cid = giulia.take().await;
        send_text(&mut client, &a, "m1", "ciao").await.unwrap();
        assert!(giulia.hears(&cid, "ciao", 3).await);
        let before = snapshot_until(&node, 2, |s| {
            s.counters.as_ref().is_some_and(|c| c.messages == 1)
        })
        .await;
        let transcript_before = transcript_texts(&node, &a.conversation_id).await;
        assert!(
            transcript_before.iter().any(|t| t == "ciao"),
            "the customer's message is in the transcript: {transcript_before:?}"
        );

        // Starting a conversation.
        assert_eq!(
            code(start_conversation(&mut client, "nope", "it", "x").await),
            Code::InvalidArgument,
            "unknown department"
        );
        assert_eq!(
            code(start_conversation(&mut client, "support", "de", "x").await),
            Code::InvalidArgument,
            "unsupported language"
        );
        assert_eq!(
            code(start_conversation(&mut client, "support", "it", "   ").await),
            Code::Unauthenticated,
            "an identity token for a blank customer_id"
        );
        assert_eq!(
            code(start_conversation(&mut client, "", "it", "x").await),
            Code::InvalidArgument,
            "empty department"
        );

        // Sending messages.
        let big = "x".repeat(8193);
        assert_eq!(
            code(send_text(&mut client, &a, "m2", &big).await),
            Code::InvalidArgument,
            "oversize message"
        );
        assert_eq!(
            code(send_text(&mut client, &a, "m3", "").await),
            Code::InvalidArgument,
            "empty message"
        );
        assert_eq!(
            code(send_text(&mut client, &a, "m4", "  \n ").await),
            Code::InvalidArgument,
            "blank message"
        );
        assert_eq!(
            code(send_text(&mut client, &a, "", "ciao").await),
            Code::InvalidArgument,
            "empty message_id"
        );
        let mut wrong = a.clone();
        wrong.token = "not-the-token".into();
        assert_eq!(
            code(send_text(&mut client, &wrong, "m5", "ciao").await),
            Code::PermissionDenied,
            "wrong token"
        );
        let sub = client
            .stream_events(StreamEventsRequest {
                conversation_id: a.conversation_id.clone(),
                token: "not-the-token".into(),
                after_event_id: 0,
            })
            .await;
        assert_eq!(
            code(sub.map(|_| ())),
            Code::PermissionDenied,
            "stream with wrong token"
        );
        let close = client
            .close_conversation(CloseConversationRequest {
                conversation_id: a.conversation_id.clone(),
                token: "not-the-token".into(),
            })
            .await;
        assert_eq!(
            code(close),
            Code::PermissionDenied,
            "close with wrong token"
        );
        let mut unknown = a.clone();
        unknown.conversation_id = "0123456789abcdef0123456789abcdef".into();
        assert_eq!(
            code(send_text(&mut client, &unknown, "m6", "ciao").await),
            Code::NotFound,
            "unknown conversation"
        );
        let sub = client
            .stream_events(StreamEventsRequest {
                conversation_id: unknown.conversation_id.clone(),
                token: a.token.clone(),
                after_event_id: 0,
            })
            .await;
        assert_eq!(
            code(sub.map(|_| ())),
            Code::NotFound,
            "stream of unknown conversation"
        );

        // Every rejected request above has had its answer: read the state after them.
        let after = snapshot(&node).await;
        assert_eq!(
            fingerprint(&after),
            fingerprint(&before),
            "rejected requests changed the state"
        );
        assert_eq!(
            transcript_texts(&node, &a.conversation_id).await,
            transcript_before,
            "rejected requests changed the transcript"
        );

        // The node still serves.
        assert!(start_conversation(&mut client, "support", "it", "still-ok")
            .await
            .is_ok());
        drop((giulia, client));
        node.shutdown().await;
    });
}

#[test]
fn closed_rated_and_abandoned_conversations_reject_what_no_longer_applies() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "done")
            .await
            .unwrap();
        let cid = giulia.take().await;
        send_text(&mut client, &a, "m1", "grazie").await.unwrap();
        giulia.close_and_wait(&cid).await;
        let mut stream = events(&mut client, &a, 0).await;
        let closed = next_event(&mut stream, 3, |e| match &e.kind {
            Some(centralino_proto::v1::conversation_event::Kind::Closed(c)) => Some(c.outcome),
            _ => None,
        })
        .await;
        assert_eq!(closed, Some(ConversationOutcome::Completed as i32));

        assert_eq!(
            code(send_text(&mut client, &a, "m2", "ancora una cosa").await),
            Code::FailedPrecondition,
            "message to a closed conversation"
        );
        let rate = |good: bool, token: String| RateConversationRequest {
            conversation_id: a.conversation_id.clone(),
            token,
            good,
            comment: String::new(),
        };
        assert_eq!(
            code(client.rate_conversation(rate(true, "bad".into())).await),
            Code::PermissionDenied
        );
        client
            .rate_conversation(rate(true, a.token.clone()))
            .await
            .expect("first rating");
        let before = snapshot(&node).await;
        assert_eq!(
            code(client.rate_conversation(rate(false, a.token.clone())).await),
            Code::AlreadyExists,
            "rating twice"
        );
        let after = snapshot(&node).await;
        assert_eq!(fingerprint(&after), fingerprint(&before));
        let c = after.counters.unwrap();
        assert_eq!((c.csat_good, c.csat_bad), (1, 0));

        // Abandoned: English nobody serves; the customer leaves.
        let b = start_conversation(&mut client, "support", "en", "gone")
            .await
            .unwrap();
        let outcome = client
            .close_conversation(CloseConversationRequest {
                conversation_id: b.conversation_id.clone(),
                token: b.token.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .outcome;
        assert_eq!(outcome, ConversationOutcome::Abandoned as i32);
        let before = snapshot(&node).await;
        let rated = client
            .rate_conversation(RateConversationRequest {
                conversation_id: b.conversation_id.clone(),
                token: b.token.clone(),
                good: true,
                comment: String::new(),
            })
            .await;
        assert_eq!(
            code(rated),
            Code::FailedPrecondition,
            "rating an abandoned conversation"
        );
        let closed_again = client
            .close_conversation(CloseConversationRequest {
                conversation_id: b.conversation_id.clone(),
                token: b.token.clone(),
            })
            .await;
        assert_eq!(
            code(closed_again),
            Code::FailedPrecondition,
            "closing twice"
        );
        let after = snapshot(&node).await;
        assert_eq!(fingerprint(&after), fingerprint(&before));
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn admin_and_agent_credentials_are_checked() {
    run(|| async {
        let node = start(config("")).await;
        let mut admin_client = admin(&node).await;
        let missing = admin_client.get_snapshot(GetSnapshotRequest {}).await;
        assert_eq!(code(missing), Code::Unauthenticated, "admin without token");
        let mut request = tonic::Request::new(GetSnapshotRequest {});
        request
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(
            code(admin_client.get_snapshot(request).await),
            Code::Unauthenticated,
            "admin with an unknown token (PERMISSION_DENIED is for a missing scope)"
        );

        let before = snapshot(&node).await;
        assert_eq!(
            code(login(&node, "giulia", "wrong").await.map(|_| ())),
            Code::Unauthenticated,
            "wrong password"
        );
        assert_eq!(
            code(login(&node, "nobody", "pw").await.map(|_| ())),
            Code::Unauthenticated,
            "unknown agent"
        );
        let after = snapshot(&node).await;
        assert_eq!(
            fingerprint(&after),
            fingerprint(&before),
            "failed logins changed the state"
        );
        assert_eq!(
            agent_in(&after, "giulia").status,
            centralino_proto::v1::AgentStatus::Offline as i32
        );
        drop(admin_client);
        node.shutdown().await;
    });
}

#[test]
fn bad_agent_commands_get_an_error_event_and_change_nothing() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "agent-errors")
            .await
            .unwrap();
        let offer = giulia.offer(5).await.expect("offer");
        giulia.accept(&offer).await;
        send_text(&mut client, &a, "m1", "ciao").await.unwrap();
        assert!(giulia.hears(&a.conversation_id, "ciao", 3).await);
        let before = snapshot_until(&node, 2, |s| {
            s.counters.as_ref().is_some_and(|c| c.messages == 1)
        })
        .await;
        let transcript_before = transcript_texts(&node, &a.conversation_id).await;
        assert!(
            transcript_before.iter().any(|t| t == "ciao"),
            "the customer's message is in the transcript: {transcript_before:?}"
        );

        // Accepting the same offer again.
        giulia
            .send(agent_command::Kind::Accept(AcceptOffer {
                reservation_id: offer.reservation_id.clone(),
            }))
            .await;
        let error = command_error(&mut giulia)
            .await
            .expect("error event for the second accept");
        assert!(
            error.code.contains("FAILED_PRECONDITION") || error.code.contains("NOT_FOUND"),
            "second accept: {error:?}"
        );
        // Accepting an offer that never existed.
        giulia
            .send(agent_command::Kind::Accept(AcceptOffer {
                reservation_id: "no-such-offer".into(),
            }))
            .await;
        let error = command_error(&mut giulia)
            .await
            .expect("error event for an unknown offer");
        assert!(error.code.contains("NOT_FOUND"), "unknown offer: {error:?}");

        // Another agent writes into giulia's conversation.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        marco
            .say(&a.conversation_id, "intruder-1", "ciao, sono marco")
            .await;
        let error = command_error(&mut marco)
            .await
            .expect("error event for marco");
        assert!(
            error.code.contains("PERMISSION_DENIED"),
            "marco writing into giulia's chat: {error:?}"
        );
        marco.close(&a.conversation_id, "not mine").await;
        let error = command_error(&mut marco)
            .await
            .expect("error event for marco's close");
        assert!(
            error.code.contains("PERMISSION_DENIED"),
            "marco closing giulia's chat: {error:?}"
        );

        let after = snapshot(&node).await;
        let (mut q1, mut a1, c1) = fingerprint(&before);
        let (mut q2, mut a2, c2) = fingerprint(&after);
        // Marco's login is the only change.
        a1.retain(|(id, ..)| id != "marco");
        a2.retain(|(id, ..)| id != "marco");
        q1.sort();
        q2.sort();
        assert_eq!((q1, a1, c1), (q2, a2, c2), "bad commands changed the state");
        // Each bad command's error event has arrived: read the transcript after them.
        assert_eq!(
            transcript_texts(&node, &a.conversation_id).await,
            transcript_before,
            "bad commands changed the transcript"
        );
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn a_full_queue_rejects_new_conversations_with_resource_exhausted() {
    run(|| async {
        let config = config_with("", |c| c.limits.max_queue_length = 2);
        let node = start(config).await;
        let mut client = customer(&node).await;
        // Nobody serves English: both wait.
        start_conversation(&mut client, "support", "en", "q1")
            .await
            .unwrap();
        start_conversation(&mut client, "support", "en", "q2")
            .await
            .unwrap();
        let before = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 2).await;
        assert_eq!(queue_in(&before, "support").depth, 2);
        let third = start_conversation(&mut client, "support", "en", "q3").await;
        assert_eq!(
            code(third),
            Code::ResourceExhausted,
            "third conversation in a queue of 2"
        );
        let after = snapshot(&node).await;
        assert_eq!(
            fingerprint(&after),
            fingerprint(&before),
            "the rejected start changed the state"
        );
        // Another department still has room.
        assert!(start_conversation(&mut client, "sales", "en", "q4")
            .await
            .is_ok());
        drop(client);
        node.shutdown().await;
    });
}
