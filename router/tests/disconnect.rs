//! Agent disconnect grace: an agent whose desktop drops keeps their conversations for
//! `disconnect_grace_secs`; afterwards they go back to the queue with their original age.

use centralino_testkit as common;

use std::time::Duration;

use centralino_proto::v1::{agent_event, conversation_event, AgentStatus, Sender};
use common::*;

#[test]
fn reconnecting_within_the_grace_keeps_the_conversation() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "c-grace")
            .await
            .unwrap();
        let mut stream = events(&mut client, &a, 0).await;
        let cid = giulia.take().await;
        assert_eq!(cid, a.conversation_id);
        drop(giulia);
        snapshot_until(&node, 3, |s| {
            agent_in(s, "giulia").status == AgentStatus::Disconnected as i32
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (mut giulia, logged_in) = login_full(&node, "giulia", "pw").await.unwrap();
        assert_eq!(
            logged_in.conversation_ids,
            vec![a.conversation_id.clone()],
            "logged_in lists the held conversation"
        );
        assert_eq!(logged_in.status, AgentStatus::Available as i32);

        // Messages still flow both ways.
        send_text(&mut client, &a, "c1", "ci sei ancora?")
            .await
            .unwrap();
        let got = giulia
            .next(3, |k| match k {
                agent_event::Kind::Message(m) if m.conversation_id == a.conversation_id => {
                    m.message
                }
                _ => None,
            })
            .await
            .expect("the agent receives the customer's message after reconnecting");
        assert_eq!(got.text, "ci sei ancora?");
        giulia.say(&a.conversation_id, "g1", "sì, eccomi").await;
        let reply = next_event(&mut stream, 3, |e| match &e.kind {
            Some(conversation_event::Kind::Message(m)) if m.sender == Sender::Agent as i32 => {
                Some(m.text.clone())
            }
            _ => None,
        })
        .await;
        assert_eq!(reply.as_deref(), Some("sì, eccomi"));

        // Past the original grace deadline nothing is requeued.
        let later = collect_events(&mut stream, 2500).await;
        assert!(
            !later
                .iter()
                .any(|e| matches!(e.kind, Some(conversation_event::Kind::Requeued(_)))),
            "requeued although the agent came back: {later:?}"
        );
        let snap = snapshot(&node).await;
        assert_eq!(agent_in(&snap, "giulia").load, 1);
        assert_eq!(queue_in(&snap, "support").depth, 0);
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn without_reconnect_the_conversation_is_requeued_with_its_age() {
    run(|| async {
        let config = config_with("", |c| {
            set_capacity(c, "giulia", 1);
            set_capacity(c, "marco", 1);
        });
        let node = start(config).await;
        let mut client = customer(&node).await;
        // Marco is busy with Z.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let z = start_conversation(&mut client, "support", "it", "z")
            .await
            .unwrap();
        assert_eq!(marco.take().await, z.conversation_id);
        // Giulia takes A.
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let a = start_conversation(&mut client, "support", "it", "a")
            .await
            .unwrap();
        let mut a_stream = events(&mut client, &a, 0).await;
        assert_eq!(giulia.take().await, a.conversation_id);
        // B arrives later and waits.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = start_conversation(&mut client, "support", "it", "b")
            .await
            .unwrap();

        drop(giulia);
        let reason = next_event(&mut a_stream, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Requeued(r)) => Some(r.reason.clone()),
            _ => None,
        })
        .await
        .expect("the customer gets a requeued event after the grace");
        assert!(!reason.is_empty());
        let snap = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 2).await;
        assert_eq!(
            queue_in(&snap, "support").depth,
            2,
            "A is back in the queue next to B"
        );
        assert_eq!(agent_in(&snap, "giulia").load, 0);
        assert_eq!(
            agent_in(&snap, "giulia").status,
            AgentStatus::Offline as i32
        );

        // Marco frees his slot: he gets A (older) before B.
        marco.close_and_wait(&z.conversation_id).await;
        let offer = marco.offer(5).await.expect("marco gets an offer");
        assert_eq!(
            offer.conversation_id, a.conversation_id,
            "A kept its age ahead of B"
        );
        assert_ne!(offer.conversation_id, b.conversation_id);
        marco.accept(&offer).await;
        let agent = next_event(&mut a_stream, 3, |e| match &e.kind {
            Some(conversation_event::Kind::Assigned(x)) => Some(x.agent_id.clone()),
            _ => None,
        })
        .await;
        assert_eq!(agent.as_deref(), Some("marco"));
        drop((marco, client, a_stream));
        node.shutdown().await;
    });
}
