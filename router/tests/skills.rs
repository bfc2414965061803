//! Skills, languages and routing steps: a conversation is only offered to agents who meet
//! the requirements of the step it is in (DESIGN.md §6, invariant 5).

use centralino_testkit as common;

use std::time::{Duration, Instant};

use centralino_proto::v1::{agent_event, AgentStatus};
use common::*;

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
        let node = start(config("")).await;
        // Marco logs in first: he is the longest idle agent and would win without the step rule.
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
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
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        giulia.set_status_and_wait(AgentStatus::Away).await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let t0 = Instant::now();
        let started = start_conversation(&mut client, "sales", "it", "it-2")
            .await
            .unwrap();
        let offer = marco
            .offer(6)
            .await
            .expect("marco gets the chat once the step relaxes");
        let waited = t0.elapsed();
        assert_eq!(offer.conversation_id, started.conversation_id);
        assert!(
            waited >= Duration::from_millis(1900),
            "marco (sales 2) was offered a step-0 conversation after {waited:?}; step 1 starts at 2 s"
        );
        assert!(
            waited <= Duration::from_millis(4000),
            "the step relaxed late: {waited:?}"
        );
        let events = giulia.collect_for(200).await;
        assert!(
            !events
                .iter()
                .any(|k| matches!(k, agent_event::Kind::Offer(_))),
            "away agent got an offer"
        );
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn marco_gets_sales_only_after_the_step_relaxes_when_giulia_is_not_logged_in() {
    run(|| async {
        let node = start(config("")).await;
        let mut marco = login(&node, "marco", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let t0 = Instant::now();
        let started = start_conversation(&mut client, "sales", "it", "it-3")
            .await
            .unwrap();
        let offer = marco
            .offer(6)
            .await
            .expect("marco gets the chat once the step relaxes");
        let waited = t0.elapsed();
        assert_eq!(offer.conversation_id, started.conversation_id);
        assert!(
            waited >= Duration::from_millis(1900),
            "offered to marco too early: {waited:?}"
        );
        assert!(
            waited <= Duration::from_millis(4000),
            "the step relaxed late: {waited:?}"
        );
        drop((marco, client));
        node.shutdown().await;
    });
}
