//! Offers that are not accepted: timeout and decline free the slot and put the conversation
//! back in its original place; repeated missed offers set the agent away (DESIGN.md §4).

use centralino_testkit as common;

use std::time::{Duration, Instant};

use centralino_proto::v1::{
    agent_command, agent_event, conversation_event, AgentStatus, DeclineOffer,
};
use common::*;

/// `offer_timeout_secs` of the test configuration, in milliseconds.
const OFFER_TIMEOUT_MS: u64 = 2_000;

async fn revoked(desk: &mut Desk, secs: u64) -> Option<centralino_proto::v1::OfferRevoked> {
    desk.next(secs, |k| match k {
        agent_event::Kind::OfferRevoked(r) => Some(r),
        _ => None,
    })
    .await
}

#[test]
fn an_unanswered_offer_is_revoked_and_the_conversation_keeps_its_place() {
    run(|| async {
        let config = config_with("", |c| {
            c.desk.max_missed_offers = 1;
            set_capacity(c, "giulia", 1);
            set_capacity(c, "marco", 1);
        });
        // A manual clock: the offer times out exactly when the test moves time past it.
        let (node, clock) = start_manual(config, "2026-03-10T12:00:00+01:00").await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "old")
            .await
            .unwrap();
        let mut a_events = events(&mut client, &a, 0).await;
        let offer = giulia.offer(5).await.expect("offer of A");
        assert_eq!(offer.conversation_id, a.conversation_id);
        assert_eq!(offer.expires_in_ms, OFFER_TIMEOUT_MS as u32);
        let b = start_conversation(&mut client, "support", "it", "newer-1")
            .await
            .unwrap();
        let c = start_conversation(&mut client, "support", "it", "newer-2")
            .await
            .unwrap();

        // The only timers due within the next 30 s are giulia's offer timer (shift checks
        // come every 30 s): none is due a millisecond before the timeout, it at the timeout.
        assert_eq!(
            clock.advance(Duration::from_millis(OFFER_TIMEOUT_MS - 1)),
            0,
            "a timer ran before the offer timeout"
        );
        assert_eq!(clock.advance(Duration::from_millis(1)), 1);
        let revoke = revoked(&mut giulia, 5)
            .await
            .expect("offer_revoked after the offer timeout");
        assert_eq!(revoke.reservation_id, offer.reservation_id);
        assert_eq!(revoke.conversation_id, a.conversation_id);
        assert_eq!(revoke.reason, "timedout");
        // max_missed_offers = 1: giulia is now away and gets nothing more.
        giulia
            .next(3, |k| match k {
                agent_event::Kind::Status(s) if s.status == AgentStatus::Away as i32 => Some(()),
                _ => None,
            })
            .await
            .expect("giulia set away");
        let requeued = next_event(&mut a_events, 3, |e| match &e.kind {
            Some(conversation_event::Kind::Requeued(r)) => Some(r.reason.clone()),
            _ => None,
        })
        .await;
        assert!(
            requeued.is_some(),
            "the customer is told the conversation is back in the queue"
        );

        // The next agent gets the old conversation first, not the newer ones.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let offer = marco.offer(5).await.expect("marco gets an offer");
        assert_eq!(
            offer.conversation_id, a.conversation_id,
            "A kept its place ahead of B and C"
        );
        assert_ne!(offer.conversation_id, b.conversation_id);
        assert_ne!(offer.conversation_id, c.conversation_id);
        let snap = snapshot(&node).await;
        assert_eq!(snap.counters.as_ref().unwrap().offers_timed_out, 1);
        assert_eq!(agent_in(&snap, "giulia").status, AgentStatus::Away as i32);
        assert_eq!(
            agent_in(&snap, "giulia").load,
            0,
            "the timed-out offer freed giulia's slot"
        );
        drop((giulia, marco, client, a_events));
        node.shutdown().await;
    });
}

#[test]
fn a_declined_offer_returns_the_conversation_to_its_place() {
    run(|| async {
        let config = config_with("", |c| {
            set_capacity(c, "giulia", 1);
            set_capacity(c, "marco", 1);
        });
        let node = start(config).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "old")
            .await
            .unwrap();
        let offer = giulia.offer(5).await.expect("offer of A");
        assert_eq!(offer.conversation_id, a.conversation_id);
        let b = start_conversation(&mut client, "support", "it", "newer-1")
            .await
            .unwrap();
        let c = start_conversation(&mut client, "support", "it", "newer-2")
            .await
            .unwrap();
        giulia
            .send(agent_command::Kind::Decline(DeclineOffer {
                reservation_id: offer.reservation_id.clone(),
                reason: "busy".into(),
            }))
            .await;
        let revoke = revoked(&mut giulia, 2)
            .await
            .expect("offer_revoked after decline");
        assert_eq!(revoke.conversation_id, a.conversation_id);
        // Giulia declined A, so she is offered the next one, B.
        let next = giulia
            .offer(3)
            .await
            .expect("giulia gets the next conversation");
        assert_eq!(
            next.conversation_id, b.conversation_id,
            "after declining A giulia gets B"
        );
        // Marco gets A, which is older than C.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let offer = marco.offer(5).await.expect("marco gets an offer");
        assert_eq!(
            offer.conversation_id, a.conversation_id,
            "A kept its place ahead of C"
        );
        assert_ne!(offer.conversation_id, c.conversation_id);
        let snap = snapshot(&node).await;
        assert_eq!(snap.counters.as_ref().unwrap().offers_declined, 1);
        assert_eq!(
            queue_in(&snap, "support").depth,
            3,
            "nothing accepted yet: A, B, C all still queued"
        );
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn two_missed_offers_in_a_row_set_the_agent_away() {
    run(|| async {
        let config = config_with("", |c| set_capacity(c, "giulia", 1));
        let node = start(config).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let a = start_conversation(&mut client, "support", "it", "a")
            .await
            .unwrap();
        let b = start_conversation(&mut client, "support", "it", "b")
            .await
            .unwrap();
        let first = giulia.offer(5).await.expect("first offer");
        assert_eq!(first.conversation_id, a.conversation_id);
        revoked(&mut giulia, 4)
            .await
            .expect("first offer times out");
        let snap = snapshot(&node).await;
        assert_eq!(
            agent_in(&snap, "giulia").status,
            AgentStatus::Available as i32,
            "one miss is not enough"
        );
        let second = giulia.offer(3).await.expect("second offer");
        assert_eq!(second.conversation_id, b.conversation_id);
        let t = Instant::now();
        let mut away = false;
        let mut second_revoked = false;
        while t.elapsed() < Duration::from_secs(5) && !(away && second_revoked) {
            match giulia.next(5, Some).await {
                Some(agent_event::Kind::OfferRevoked(r))
                    if r.reservation_id == second.reservation_id =>
                {
                    second_revoked = true
                }
                Some(agent_event::Kind::Status(s)) if s.status == AgentStatus::Away as i32 => {
                    away = true
                }
                Some(agent_event::Kind::Offer(o)) => panic!("offer after two misses: {o:?}"),
                Some(_) => {}
                None => break,
            }
        }
        assert!(second_revoked, "second offer revoked");
        assert!(
            away,
            "status event AGENT_STATUS_AWAY after two missed offers"
        );
        let snap = snapshot(&node).await;
        assert_eq!(agent_in(&snap, "giulia").status, AgentStatus::Away as i32);
        assert_eq!(snap.counters.as_ref().unwrap().offers_timed_out, 2);
        assert_eq!(
            queue_in(&snap, "support").depth,
            2,
            "both conversations wait again"
        );
        let events = giulia.collect_for(500).await;
        assert!(
            !events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "away agent got an offer"
        );
        drop((giulia, client));
        node.shutdown().await;
    });
}
