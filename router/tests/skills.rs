//! Skills, languages and routing steps: a conversation is only offered to agents who meet
//! the requirements of the step it is in (DESIGN.md §6, invariant 5).

use centralino_testkit as common;

use std::time::Duration;

use centralino_base::clock::ManualClock;
use centralino_proto::v1::{agent_event, AgentStatus};
use centralino_router::standalone::RunningNode;
use common::*;

/// When the sales department's step 1 (any proficiency) begins.
const STEP_ONE_MS: u64 = 2_000;

/// Starts a sales conversation only marco (sales 2) can take and checks, on the manual
/// clock, that he is offered it when step 1 begins and not a millisecond before.
async fn marco_gets_sales_when_step_one_begins(
    node: &RunningNode,
    clock: &ManualClock,
    marco: &mut Desk,
    customer_id: &str,
) {
    let mut client = customer(node).await;
    let t0 = node.clock.now_ms();
    let started = start_conversation(&mut client, "sales", "it", customer_id)
        .await
        .unwrap();
    let mut stream = events(&mut client, &started, 0).await;
    clock.advance(Duration::from_millis(STEP_ONE_MS - 1));
    // The queues tick several times in this second, all of them still in step 0.
    let early = marco.offer(1).await;
    assert!(
        early.is_none(),
        "marco (sales 2) was offered a step-0 conversation: {early:?}"
    );
    clock.advance(Duration::from_millis(1));
    let offer = marco
        .offer(5)
        .await
        .expect("marco gets the chat once the step relaxes");
    assert_eq!(offer.conversation_id, started.conversation_id);
    assert_eq!(
        offered_at(&mut stream, 3).await,
        Some(t0 + STEP_ONE_MS as i64),
        "offered when step 1 began"
    );
}

#[test]
fn an_english_conversation_is_only_offered_to_the_english_agent() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        emma.set_status_and_wait(AgentStatus::Away).await;
        let mut client = customer(&node).await;
        let started = start_conversation(&mut client, "support", "en", "uk-1")
            .await
            .unwrap();
        // Italian agents are idle and have the support skill, but do not speak English.
        let (g, m) = tokio::join!(giulia.collect_for(2500), marco.collect_for(2500));
        for (who, events) in [("giulia", g), ("marco", m)] {
            assert!(
                !events
                    .iter()
                    .any(|k| matches!(k, agent_event::Kind::Offer(_))),
                "{who} was offered an English conversation: {events:?}"
            );
        }
        emma.set_status(AgentStatus::Available).await;
        let offer = emma
            .offer(5)
            .await
            .expect("emma gets the English conversation");
        assert_eq!(offer.conversation_id, started.conversation_id);
        assert_eq!(offer.language, "en");
        drop((giulia, marco, emma, client));
        node.shutdown().await;
    });
}

#[test]
fn step_zero_needs_proficiency_four_so_giulia_not_marco_gets_sales() {
    run(|| async {
        let (node, clock) = start_manual(config(""), "2026-03-10T12:00:00+01:00").await;
        // Marco logs in first: he is the longest idle agent and would win without the step rule.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        clock.advance(Duration::from_secs(1));
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let started = start_conversation(&mut client, "sales", "it", "it-1")
            .await
            .unwrap();
        let offer = giulia
            .offer(5)
            .await
            .expect("giulia (sales 5) is offered the sales chat");
        assert_eq!(offer.conversation_id, started.conversation_id);
        giulia.accept(&offer).await;
        let events = marco.collect_for(500).await;
        assert!(
            !events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "marco (sales 2) got an offer: {events:?}"
        );
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn marco_gets_sales_only_after_the_step_relaxes_when_giulia_is_away() {
    run(|| async {
        let (node, clock) = start_manual(config(""), "2026-03-10T12:00:00+01:00").await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        giulia.set_status_and_wait(AgentStatus::Away).await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        marco_gets_sales_when_step_one_begins(&node, &clock, &mut marco, "it-2").await;
        let events = giulia.collect_for(200).await;
        assert!(
            !events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "away agent got an offer"
        );
        drop((giulia, marco));
        node.shutdown().await;
    });
}

#[test]
fn marco_gets_sales_only_after_the_step_relaxes_when_giulia_is_not_logged_in() {
    run(|| async {
        let (node, clock) = start_manual(config(""), "2026-03-10T12:00:00+01:00").await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        marco_gets_sales_when_step_one_begins(&node, &clock, &mut marco, "it-3").await;
        drop(marco);
        node.shutdown().await;
    });
}
