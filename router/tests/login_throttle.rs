//! Login throttling (DESIGN.md §9): after five wrong passwords for one agent, further
//! attempts — the right password included — are refused with RESOURCE_EXHAUSTED and a retry
//! hint for a delay that doubles with each failure; other agents are not affected; once the
//! delay has passed on the node's clock the right password works again and clears the count.

use centralino_testkit as common;

use std::time::Duration;

use common::*;
use tonic::Code;

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[test]
fn repeated_wrong_passwords_are_throttled_then_forgiven() {
    run(|| async {
        let (node, clock) = start_manual(config(""), "2026-11-23T12:00:00+01:00").await;
        for i in 0..5 {
            assert_eq!(
                code(login(&node, "giulia", "wrong").await.map(|_| ())),
                Code::Unauthenticated,
                "free failure {i}"
            );
        }
        // The sixth failure starts a delay of one second.
        assert_eq!(
            code(login(&node, "giulia", "wrong").await.map(|_| ())),
            Code::Unauthenticated
        );
        let refused = login(&node, "giulia", "pw").await.err().expect("throttled");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(
            refused
                .metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok()),
            Some("1000"),
            "the retry hint is the remaining delay"
        );
        // Another agent logs in as usual.
        let marco = login(&node, "marco", "pw").await;
        assert!(marco.is_ok(), "other agents are not throttled");

        // Half the delay later: still refused, with the rest as the hint.
        clock.advance(Duration::from_millis(500));
        let refused = login(&node, "giulia", "pw").await.err().expect("throttled");
        assert_eq!(
            refused
                .metadata()
                .get("grpc-retry-pushback-ms")
                .and_then(|v| v.to_str().ok()),
            Some("500")
        );
        // After the delay the right password works and clears the count.
        clock.advance(Duration::from_millis(500));
        let giulia = login(&node, "giulia", "pw").await;
        assert!(giulia.is_ok(), "allowed once the delay has passed");
        drop(giulia);
        assert_eq!(
            code(login(&node, "giulia", "wrong").await.map(|_| ())),
            Code::Unauthenticated,
            "a fresh count after a success: this failure is free again"
        );
        node.shutdown().await;
    });
}

#[test]
fn a_desk_stream_that_never_logs_in_is_refused_after_the_login_timeout() {
    run(|| async {
        let node = start(config("")).await;
        let channel = channel(&node).await;
        let mut desk = centralino_proto::v1::agent_desk_client::AgentDeskClient::new(channel);
        // The stream stays open (its sender is kept) but no command is ever sent.
        let (_keep, rx) = tokio::sync::mpsc::channel::<centralino_proto::v1::AgentCommand>(1);
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            desk.session(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .expect("the node answers within 30 s");
        let status = answer.expect_err("no session without a login");
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");
        assert!(
            started.elapsed() >= centralino_agent_node::gateway::LOGIN_TIMEOUT,
            "refused before the timeout"
        );
        node.shutdown().await;
    });
}
