//! Operator API (DESIGN.md §7): closed conversations archived and listed with filters,
//! transcripts of live and archived conversations, read-only watching, forced transfers,
//! and the admin token on every call.

use centralino_testkit as common;

use std::time::Duration;

use centralino_proto::v1::{
    conversation_event::Kind, ConversationOutcome, ForceTransferRequest, GetTranscriptRequest,
    ListConversationsRequest, ListConversationsResponse, RateConversationRequest,
    SetCustomerTierRequest, StreamIntegrationEventsRequest, WatchConversationRequest,
};
use centralino_proto::v1::{AgentStatus, GetSnapshotRequest};
use common::*;

async fn list(
    node: &centralino_router::standalone::RunningNode,
    request: ListConversationsRequest,
) -> ListConversationsResponse {
    admin(node)
        .await
        .list_conversations(authed(request))
        .await
        .expect("list conversations")
        .into_inner()
}

fn ids(response: &ListConversationsResponse) -> Vec<String> {
    response
        .conversations
        .iter()
        .map(|c| c.conversation_id.clone())
        .collect()
}

#[test]
fn closed_conversations_are_archived_listed_and_their_transcripts_kept() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_with("", |c| c.routing.rating_window_secs = 1);
        let node = start_durable(config, dir.path()).await;
        let mut client = customer(&node).await;

        // ada with giulia, rated good.
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let ada = start_conversation(&mut client, "support", "it", "ada")
            .await
            .unwrap();
        assert_eq!(giulia.take().await, ada.conversation_id);
        send_text(&mut client, &ada, "m1", "dov'è il mio ordine?")
            .await
            .unwrap();
        giulia
            .say(&ada.conversation_id, "a1", "è in consegna")
            .await;
        assert!(
            giulia
                .hears(&ada.conversation_id, "dov'è il mio ordine?", 3)
                .await
        );
        giulia
            .close(&ada.conversation_id, "ordine in consegna")
            .await;
        assert!(giulia.ended(&ada.conversation_id, 3).await.is_some());
        client
            .rate_conversation(RateConversationRequest {
                conversation_id: ada.conversation_id.clone(),
                token: ada.token.clone(),
                good: true,
                comment: "veloce".into(),
            })
            .await
            .expect("rating within the window");

        // bea with marco, rated bad.
        giulia.set_status_and_wait(AgentStatus::Away).await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let bea = start_conversation(&mut client, "support", "it", "bea")
            .await
            .unwrap();
        assert_eq!(marco.take().await, bea.conversation_id);
        marco.close_and_wait(&bea.conversation_id).await;
        client
            .rate_conversation(RateConversationRequest {
                conversation_id: bea.conversation_id.clone(),
                token: bea.token.clone(),
                good: false,
                comment: "lenta".into(),
            })
            .await
            .expect("rating within the window");

        // Archived once the rating window is over.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
        let all = loop {
            let all = list(&node, ListConversationsRequest::default()).await;
            if all.conversations.len() >= 2 || tokio::time::Instant::now() >= deadline {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            ids(&all),
            vec![bea.conversation_id.clone(), ada.conversation_id.clone()],
            "both closed conversations archived, newest first"
        );
        let by_giulia = list(
            &node,
            ListConversationsRequest {
                agent_id: "giulia".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&by_giulia), vec![ada.conversation_id.clone()]);
        let summary = &by_giulia.conversations[0];
        assert_eq!(summary.rating, "good");
        assert_eq!(summary.rating_comment, "veloce");
        assert_eq!(summary.outcome, ConversationOutcome::Completed as i32);
        assert_eq!(summary.customer_id, "ada");
        assert!(summary.messages >= 2, "{summary:?}");
        let bad = list(
            &node,
            ListConversationsRequest {
                rating: "bad".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&bad), vec![bea.conversation_id.clone()]);
        assert_eq!(bad.conversations[0].agent_id, "marco");
        let good = list(
            &node,
            ListConversationsRequest {
                rating: "good".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&good), vec![ada.conversation_id.clone()]);
        let unrated = list(
            &node,
            ListConversationsRequest {
                rating: "unrated".into(),
                ..Default::default()
            },
        )
        .await;
        assert!(ids(&unrated).is_empty(), "{:?}", ids(&unrated));
        let err = admin(&node)
            .await
            .list_conversations(authed(ListConversationsRequest {
                rating: "meh".into(),
                ..Default::default()
            }))
            .await
            .expect_err("unknown rating filter");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // The archived transcript.
        let transcript = admin(&node)
            .await
            .get_transcript(authed(GetTranscriptRequest {
                conversation_id: ada.conversation_id.clone(),
            }))
            .await
            .expect("archived transcript")
            .into_inner();
        let texts: Vec<&str> = transcript
            .messages
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert!(
            texts.contains(&"dov'è il mio ordine?") && texts.contains(&"è in consegna"),
            "{texts:?}"
        );
        assert_eq!(transcript.summary, "ordine in consegna");
        let err = admin(&node)
            .await
            .get_transcript(authed(GetTranscriptRequest {
                conversation_id: "no-such-conversation".into(),
            }))
            .await
            .expect_err("unknown conversation");
        assert_eq!(err.code(), tonic::Code::NotFound);
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn a_supervisor_watches_a_live_conversation_reads_its_transcript_and_forces_a_transfer() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let chat = start_conversation(&mut client, "support", "it", "eva")
            .await
            .unwrap();
        let mut stream = events(&mut client, &chat, 0).await;
        assert_eq!(marco.take().await, chat.conversation_id);
        send_text(&mut client, &chat, "m1", "ho bisogno di aiuto")
            .await
            .unwrap();

        let live = admin(&node)
            .await
            .get_transcript(authed(GetTranscriptRequest {
                conversation_id: chat.conversation_id.clone(),
            }))
            .await
            .expect("live transcript")
            .into_inner();
        let summary = live.conversation.expect("summary");
        assert_eq!(summary.outcome, ConversationOutcome::Open as i32);
        assert_eq!(summary.agent_id, "marco");
        assert!(live
            .messages
            .iter()
            .any(|m| m.text == "ho bisogno di aiuto"));

        // Watching needs no customer token; the backlog and live events both arrive.
        let mut watch = admin(&node)
            .await
            .watch_conversation(authed(WatchConversationRequest {
                conversation_id: chat.conversation_id.clone(),
                after_event_id: 0,
            }))
            .await
            .expect("watch")
            .into_inner();
        let backlog = next_event(&mut watch, 3, |e| {
            message_text(e).filter(|t| t == "ho bisogno di aiuto")
        })
        .await;
        assert!(backlog.is_some(), "the watcher sees earlier messages");
        send_text(&mut client, &chat, "m2", "c'è qualcuno?")
            .await
            .unwrap();
        let live_message = next_event(&mut watch, 3, |e| {
            message_text(e).filter(|t| t == "c'è qualcuno?")
        })
        .await;
        assert!(live_message.is_some(), "the watcher sees new messages");

        // Forced transfer to giulia.
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let err = admin(&node)
            .await
            .force_transfer(authed(ForceTransferRequest {
                conversation_id: chat.conversation_id.clone(),
                ..Default::default()
            }))
            .await
            .expect_err("no target");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        admin(&node)
            .await
            .force_transfer(authed(ForceTransferRequest {
                conversation_id: chat.conversation_id.clone(),
                target: Some(
                    centralino_proto::v1::force_transfer_request::Target::AgentId("giulia".into()),
                ),
                reason: "escalation by supervisor".into(),
            }))
            .await
            .expect("forced transfer");
        let offer = giulia.offer(5).await.expect("giulia is offered the chat");
        assert_eq!(offer.conversation_id, chat.conversation_id);
        assert_eq!(
            offer.transfer.as_ref().map(|t| t.reason.as_str()),
            Some("escalation by supervisor")
        );
        giulia.accept(&offer).await;
        assert_eq!(
            marco.ended(&chat.conversation_id, 3).await,
            Some(ConversationOutcome::Transferred as i32)
        );
        let mut names = Vec::new();
        let now_with = next_event(&mut stream, 3, |e| {
            names.push(event_name(e));
            match &e.kind {
                Some(Kind::Assigned(a)) if a.agent_id == "giulia" => Some(()),
                _ => None,
            }
        })
        .await;
        assert!(now_with.is_some(), "customer now with giulia: {names:?}");
        assert!(names.contains(&"transferred"), "{names:?}");
        let watched = next_event(&mut watch, 3, |e| match &e.kind {
            Some(Kind::Assigned(a)) if a.agent_id == "giulia" => Some(()),
            _ => None,
        })
        .await;
        assert!(watched.is_some(), "the watcher follows the transfer");
        drop((giulia, marco, client, stream, watch));
        node.shutdown().await;
    });
}

#[test]
fn admin_calls_need_the_admin_token() {
    run(|| async {
        let node = start(config("")).await;
        let mut admin = admin(&node).await;
        let mut codes = Vec::new();
        codes.push((
            "GetSnapshot",
            admin
                .get_snapshot(GetSnapshotRequest {})
                .await
                .unwrap_err()
                .code(),
        ));
        codes.push((
            "ListConversations",
            admin
                .list_conversations(ListConversationsRequest::default())
                .await
                .unwrap_err()
                .code(),
        ));
        codes.push((
            "GetTranscript",
            admin
                .get_transcript(GetTranscriptRequest {
                    conversation_id: "x".into(),
                })
                .await
                .unwrap_err()
                .code(),
        ));
        codes.push((
            "WatchConversation",
            admin
                .watch_conversation(WatchConversationRequest {
                    conversation_id: "x".into(),
                    after_event_id: 0,
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
        ));
        codes.push((
            "ForceTransfer",
            admin
                .force_transfer(ForceTransferRequest {
                    conversation_id: "x".into(),
                    target: Some(
                        centralino_proto::v1::force_transfer_request::Target::AgentId(
                            "giulia".into(),
                        ),
                    ),
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
        ));
        codes.push((
            "StreamIntegrationEvents",
            admin
                .stream_integration_events(StreamIntegrationEventsRequest { after_event_id: 0 })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
        ));
        codes.push((
            "SetCustomerTier",
            admin
                .set_customer_tier(SetCustomerTierRequest {
                    customer_id: "vera".into(),
                    tier: "vip".into(),
                })
                .await
                .unwrap_err()
                .code(),
        ));
        for (call, code) in &codes {
            assert_eq!(
                *code,
                tonic::Code::Unauthenticated,
                "{call} without a token"
            );
        }
        let mut wrong = tonic::Request::new(ListConversationsRequest::default());
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        let err = admin.list_conversations(wrong).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "an unknown token");
        drop(admin);
        node.shutdown().await;
    });
}
