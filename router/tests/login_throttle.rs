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

fn pushback(status: &tonic::Status) -> Option<u64> {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_login_from_one_address_counts_against_its_rate_successful_ones_too() {
    let mut config = config("");
    config.limits.logins_per_minute_per_addr = 60;
    config.limits.login_burst_per_addr = 3;
    run(|| async {
        let node = start(config).await;
        // Three good logins from 127.0.0.1 use the burst up ...
        let mut desks = Vec::new();
        for agent in ["giulia", "marco", "emma"] {
            desks.push(login(&node, agent, "pw").await.expect(agent));
        }
        // ... so the fourth is refused before its password is looked at, with a retry hint.
        let refused = login(&node, "giulia", "pw")
            .await
            .err()
            .expect("rate limited");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
        assert!(
            refused.message().contains("logins from this address"),
            "{refused}"
        );
        let wait = pushback(&refused).expect("retry hint");
        assert!((1..=1000).contains(&wait), "{wait}");
        // One login a second comes back: after the hint, the next one goes through.
        tokio::time::sleep(Duration::from_millis(wait + 50)).await;
        assert!(login(&node, "giulia", "pw").await.is_ok(), "after the wait");
        drop(desks);
        node.shutdown().await;
    });
}

#[test]
fn unknown_operator_tokens_from_one_address_are_throttled() {
    run(|| async {
        let (node, clock) = start_manual(config(""), "2026-11-23T12:00:00+01:00").await;
        let mut client = admin(&node).await;
        let with_token = |token: &str| {
            let mut request = tonic::Request::new(centralino_proto::v1::GetSnapshotRequest {});
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
            request
        };
        let free = centralino_core::ingress::admin::OPERATOR_FREE_FAILURES;
        for i in 0..=free {
            assert_eq!(
                code(client.get_snapshot(with_token(&format!("guess-{i}"))).await),
                Code::Unauthenticated,
                "guess {i}"
            );
        }
        // The address is delayed now: even the right token waits, told how long.
        let refused = client
            .get_snapshot(authed(centralino_proto::v1::GetSnapshotRequest {}))
            .await
            .expect_err("throttled");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
        assert_eq!(pushback(&refused), Some(1000));
        clock.advance(Duration::from_millis(1000));
        assert!(
            client
                .get_snapshot(authed(centralino_proto::v1::GetSnapshotRequest {}))
                .await
                .is_ok(),
            "the right token works once the delay has passed"
        );
        // ... and clears the count: one more guess is free again.
        assert_eq!(
            code(client.get_snapshot(with_token("guess-again")).await),
            Code::Unauthenticated
        );
        assert!(client
            .get_snapshot(authed(centralino_proto::v1::GetSnapshotRequest {}))
            .await
            .is_ok());
        drop(client);
        node.shutdown().await;
    });
}
