//! Sticky same-agent routing: a returning customer goes back to their last agent; when that
//! agent is full the conversation waits up to `sticky_wait_secs`, then falls back.

use centralino_testkit as common;

use std::time::{Duration, Instant};

use centralino_proto::v1::{agent_event, Counters};
use common::*;

fn counters(snap: &centralino_proto::v1::Snapshot) -> Counters {
    snap.counters.expect("counters")
}

#[test]
fn a_returning_customer_goes_back_to_the_last_agent_even_if_another_is_idle() {
    run(|| async {
        let node = start(config("")).await;
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        let node = start(config("")).await;
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
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = counters(&snapshot(&node).await);
        let t0 = Instant::now();
        let again = start_conversation(&mut client, "support", "it", "cust-y")
            .await
            .unwrap();
        let offer = marco
            .offer(6)
            .await
            .expect("marco gets the chat after the sticky wait");
        let waited = t0.elapsed();
        assert_eq!(offer.conversation_id, again.conversation_id);
        assert!(
            waited >= Duration::from_millis(1900),
            "fell back to marco after {waited:?}, before sticky_wait_secs (2 s)"
        );
        assert!(
            waited <= Duration::from_millis(4000),
            "sticky wait ran long: {waited:?}"
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
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn when_the_last_agent_is_logged_out_the_customer_falls_back_at_once() {
    run(|| async {
        let node = start(config("")).await;
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
        let t0 = Instant::now();
        let again = start_conversation(&mut client, "support", "it", "cust-z")
            .await
            .unwrap();
        let offer = marco.offer(5).await.expect("marco gets the chat");
        assert_eq!(offer.conversation_id, again.conversation_id);
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "no sticky wait for a logged-out agent: {:?}",
            t0.elapsed()
        );
        let after = counters(&snapshot(&node).await);
        assert_eq!(
            after.sticky_misses,
            before.sticky_misses + 1,
            "sticky miss counted"
        );
        assert_eq!(after.sticky_timeouts, before.sticky_timeouts);
        assert_eq!(after.sticky_hits, before.sticky_hits);
        drop((marco, client));
        node.shutdown().await;
    });
}
