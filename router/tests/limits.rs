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
