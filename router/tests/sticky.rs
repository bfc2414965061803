//! Sticky same-agent routing: a returning customer goes back to their last agent; when that
//! agent is full the conversation waits up to `sticky_wait_secs`, then falls back. The node
//! runs on a manual clock: the sticky wait passes only when the test moves the clock.

use centralino_testkit as common;

use std::time::Duration;

use centralino_proto::v1::{agent_event, AgentStatus, Counters};
use centralino_router::standalone::RunningNode;
use common::*;

/// Start of the manual clock.
const START: &str = "2026-03-10T12:00:00+01:00";
/// `sticky_wait_secs` of the test configuration, in milliseconds.
const STICKY_WAIT_MS: u64 = 2_000;

fn counters(snap: &centralino_proto::v1::Snapshot) -> Counters {
    snap.counters.expect("counters")
}

/// Waits until the admin snapshot shows `agent_id` available. The agent's login published
/// its availability to the queues before the login was confirmed, so the queues know it too.
async fn until_available(node: &RunningNode, agent_id: &str) {
    let snap = snapshot_until(node, 5, |s| {
        agent_in(s, agent_id).status == AgentStatus::Available as i32
    })
    .await;
    assert_eq!(
        agent_in(&snap, agent_id).status,
        AgentStatus::Available as i32,
        "{agent_id} available"
    );
}

#[test]
fn a_returning_customer_goes_back_to_the_last_agent_even_if_another_is_idle() {
    run(|| async {
        let (node, _clock) = start_manual(config(""), START).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let first = start_conversation(&mut client, "support", "it", "cust-x")
            .await
            .unwrap();
        let cid = giulia.take().await;
        assert_eq!(cid, first.conversation_id);
        giulia.close_and_wait(&cid).await;

        // Marco is idle longer than giulia (who just finished) and has support 5 vs 3:
        // without stickiness he would be chosen.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        until_available(&node, "marco").await;
        let before = counters(&snapshot(&node).await);
        let again = start_conversation(&mut client, "support", "it", "cust-x")
            .await
            .unwrap();
        let offer = giulia
            .offer(5)
            .await
            .expect("giulia is offered her returning customer");
        assert_eq!(offer.conversation_id, again.conversation_id);
        giulia.accept(&offer).await;
        let events = marco.collect_for(300).await;
        assert!(
            !events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "marco got an offer: {events:?}"
        );
        let after = counters(&snapshot(&node).await);
        assert_eq!(
            after.sticky_hits,
            before.sticky_hits + 1,
            "sticky hit counted"
        );
        assert_eq!(after.sticky_misses, before.sticky_misses);
        assert_eq!(after.sticky_timeouts, before.sticky_timeouts);
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn when_the_last_agent_is_full_the_customer_waits_then_falls_back() {
    run(|| async {
        let (node, clock) = start_manual(config(""), START).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        start_conversation(&mut client, "support", "it", "cust-y")
            .await
            .unwrap();
        let cid = giulia.take().await;
        giulia.close_and_wait(&cid).await;
        // Giulia fills her two slots.
        for i in 0..2 {
            start_conversation(&mut client, "support", "it", &format!("other-{i}"))
                .await
                .unwrap();
            giulia.take().await;
        }
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        until_available(&node, "marco").await;
        let before = counters(&snapshot(&node).await);
        let t0 = node.clock.now_ms();
        let again = start_conversation(&mut client, "support", "it", "cust-y")
            .await
            .unwrap();
        let mut stream = events(&mut client, &again, 0).await;
        // A millisecond before the sticky wait ends; the queues tick several times in this
        // second, all of them within the wait.
        clock.advance(Duration::from_millis(STICKY_WAIT_MS - 1));
        let early = marco.offer(1).await;
        assert!(
            early.is_none(),
            "fell back to marco before sticky_wait_secs: {early:?}"
        );
        clock.advance(Duration::from_millis(1));
        let offer = marco
            .offer(5)
            .await
            .expect("marco gets the chat after the sticky wait");
        assert_eq!(offer.conversation_id, again.conversation_id);
        assert_eq!(
            offered_at(&mut stream, 3).await,
            Some(t0 + STICKY_WAIT_MS as i64),
            "offered to marco when the sticky wait ended"
        );
        marco.accept(&offer).await;
        let after = counters(&snapshot(&node).await);
        assert_eq!(
            after.sticky_timeouts,
            before.sticky_timeouts + 1,
            "sticky timeout counted"
        );
        assert_eq!(
            after.sticky_misses,
            before.sticky_misses + 1,
            "a timeout is a miss"
        );
        assert_eq!(after.sticky_hits, before.sticky_hits);
        drop((giulia, marco, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn when_the_last_agent_is_logged_out_the_customer_falls_back_at_once() {
    run(|| async {
        let (node, _clock) = start_manual(config(""), START).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        start_conversation(&mut client, "support", "it", "cust-z")
            .await
            .unwrap();
        let cid = giulia.take().await;
        giulia.close_and_wait(&cid).await;
        drop(giulia);
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        snapshot_until(&node, 3, |s| {
            agent_in(s, "giulia").status != centralino_proto::v1::AgentStatus::Available as i32
        })
        .await;
        let before = counters(&snapshot(&node).await);
        let t0 = node.clock.now_ms();
        let again = start_conversation(&mut client, "support", "it", "cust-z")
            .await
            .unwrap();
        let mut stream = events(&mut client, &again, 0).await;
        // The clock stands still: a sticky wait would never end.
        let offer = marco
            .offer(5)
            .await
            .expect("marco gets the chat with no sticky wait");
        assert_eq!(offer.conversation_id, again.conversation_id);
        assert_eq!(offered_at(&mut stream, 3).await, Some(t0));
        let after = counters(&snapshot(&node).await);
        assert_eq!(
            after.sticky_misses,
            before.sticky_misses + 1,
            "sticky miss counted"
        );
        assert_eq!(after.sticky_timeouts, before.sticky_timeouts);
        assert_eq!(after.sticky_hits, before.sticky_hits);
        drop((marco, client, stream));
        node.shutdown().await;
    });
}
