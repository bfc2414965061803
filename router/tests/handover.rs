//! Language shift handover (DESIGN.md §1): the Italian team works 10:00–22:00 Europe/Rome,
//! the English team 24 h, Italian customers fall back to English. Queued conversations are
//! handed over keeping their age, new ones go straight to the open team, active ones finish
//! or are transferred after a grace; holidays and daylight-saving days keep local hours.
//! Tests that cross a shift change run the node on a manual clock and move it past the
//! change once the setup is done; the others on a simulated clock (60 simulated seconds per
//! wall second).

use centralino_testkit as common;

use std::time::Duration;

use centralino_base::config::ActivePolicy;
use centralino_proto::v1::{
    agent_command, conversation_event::Kind, ConversationOutcome, Sender, Transfer,
};
use common::*;

const SPEED: f64 = 60.0;

/// Waits for an offer of `conversation_id` on `desk`.
async fn offer_of(
    desk: &mut Desk,
    conversation_id: &str,
    secs: u64,
) -> Option<centralino_proto::v1::Offer> {
    let wanted = conversation_id.to_string();
    desk.next(secs, |k| match k {
        centralino_proto::v1::agent_event::Kind::Offer(o) if o.conversation_id == wanted => Some(o),
        _ => None,
    })
    .await
}

/// Returns the next customer system message.
async fn system_message(
    stream: &mut tonic::Streaming<centralino_proto::v1::ConversationEvent>,
    secs: u64,
) -> Option<String> {
    next_event(stream, secs, |e| match &e.kind {
        Some(Kind::Message(m)) if m.sender == Sender::System as i32 => Some(m.text.clone()),
        _ => None,
    })
    .await
}

#[test]
fn queued_italian_conversations_are_handed_over_to_english_at_22_keeping_their_age() {
    run(|| async {
        let config = config_with("", |c| {
            italian_day_shift(c);
            set_capacity(c, "emma", 1);
        });
        let (node, clock) = start_manual(config, "2026-11-23T21:59:00+01:00").await;
        let ten_pm = instant_ms("2026-11-23T22:00:00+01:00");
        let mut client = customer(&node).await;
        // Nobody is logged in: all three wait. Oldest first: it-old, en-mid, it-new.
        let it_old = start_conversation(&mut client, "support", "it", "it-old")
            .await
            .unwrap();
        let mut it_old_events = events(&mut client, &it_old, 0).await;
        let en_mid = start_conversation(&mut client, "support", "en", "en-mid")
            .await
            .unwrap();
        let mut en_mid_events = events(&mut client, &en_mid, 0).await;
        let it_new = start_conversation(&mut client, "support", "it", "it-new")
            .await
            .unwrap();
        let mut it_new_events = events(&mut client, &it_new, 0).await;
        let before = collect_events(&mut it_old_events, 300).await;
        assert!(
            !before
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::HandedOver(_)))),
            "handed over before 22:00"
        );

        clock.set(ten_pm);
        let (handed, at) = next_event(&mut it_old_events, 6, |e| match &e.kind {
            Some(Kind::HandedOver(h)) => Some((h.clone(), e.at_unix_ms)),
            _ => None,
        })
        .await
        .expect("handed_over event for the older Italian conversation");
        assert_eq!(handed.from_language, "it");
        assert_eq!(handed.to_language, "en");
        assert_eq!(at, ten_pm, "handed over at 22:00");
        assert_eq!(
            handed.reopens_at_unix_ms,
            instant_ms("2026-11-24T10:00:00+01:00"),
            "the Italian service reopens at 10:00 the next morning"
        );
        let text = system_message(&mut it_old_events, 2)
            .await
            .expect("a system message tells the customer about the handover");
        assert!(
            text.contains("inglese") && text.contains("10:00"),
            "the message is in Italian and names English and the reopening time: {text:?}"
        );
        let integration = integration_event(&node, 3, |e| {
            e.kind == "handed_over" && e.conversation_id == it_old.conversation_id
        })
        .await
        .expect("a handed_over integration event");
        assert_eq!(
            integration.details.get("to").map(String::as_str),
            Some("en")
        );
        let handed_new = next_event(&mut it_new_events, 3, |e| match &e.kind {
            Some(Kind::HandedOver(h)) => Some(h.clone()),
            _ => None,
        })
        .await
        .expect("handed_over event for the newer Italian conversation");
        assert_eq!(handed_new.to_language, "en");
        // The English customer is not handed over anywhere.
        let english = collect_events(&mut en_mid_events, 200).await;
        assert!(
            !english
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::HandedOver(_)))),
            "an English conversation was handed over: {:?}",
            english.iter().map(event_name).collect::<Vec<_>>()
        );

        // Emma (capacity 1) serves them one by one, oldest first.
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let mut order = Vec::new();
        for _ in 0..3 {
            let offer = emma.offer(5).await.expect("an offer for emma");
            assert_eq!(
                offer.serving_language, "en",
                "emma answers in English: {offer:?}"
            );
            order.push((offer.conversation_id.clone(), offer.language.clone()));
            emma.accept(&offer).await;
            emma.close_and_wait(&offer.conversation_id).await;
        }
        assert_eq!(
            order,
            vec![
                (it_old.conversation_id.clone(), "it".to_string()),
                (en_mid.conversation_id.clone(), "en".to_string()),
                (it_new.conversation_id.clone(), "it".to_string()),
            ],
            "handed-over conversations keep their place by age among the English ones"
        );
        drop((emma, client, it_old_events, en_mid_events, it_new_events));
        node.shutdown().await;
    });
}

#[test]
fn new_italian_conversations_go_to_english_after_22() {
    run(|| async {
        let config = config_with("", |c| {
            simulated(c, "2026-11-23T22:00:05+01:00", SPEED);
            italian_day_shift(c);
        });
        let node = start(config).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let late = start_conversation(&mut client, "support", "it", "late")
            .await
            .unwrap();
        assert!(!late.offline, "English serves Italian customers at night");
        let offer = offer_of(&mut emma, &late.conversation_id, 5)
            .await
            .expect("the English team gets the Italian conversation");
        assert_eq!(offer.language, "it");
        assert_eq!(offer.serving_language, "en");
        let giulia_events = giulia.collect_for(300).await;
        assert!(
            !giulia_events
                .iter()
                .any(|k| matches!(k, centralino_proto::v1::agent_event::Kind::Offer(_))),
            "an off-shift Italian agent got an offer"
        );
        drop((giulia, emma, client));
        node.shutdown().await;
    });
}

#[test]
fn before_10_italian_goes_to_english_and_from_10_to_the_italian_team() {
    run(|| async {
        let config = config_with("", italian_day_shift);
        let (node, clock) = start_manual(config, "2026-11-24T09:59:00+01:00").await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let early = start_conversation(&mut client, "support", "it", "early")
            .await
            .unwrap();
        let offer = offer_of(&mut emma, &early.conversation_id, 5)
            .await
            .expect("before 10:00 the English team gets the Italian conversation");
        assert_eq!(offer.serving_language, "en");
        emma.accept(&offer).await;

        // To 10:00:01; the agents' shift checks run there.
        advance_settled(&clock, Duration::from_secs(61)).await;
        let opening = start_conversation(&mut client, "support", "it", "opening")
            .await
            .unwrap();
        let offer = offer_of(&mut giulia, &opening.conversation_id, 5)
            .await
            .expect("from 10:00 the Italian team gets Italian conversations");
        assert_eq!(offer.serving_language, "it");
        drop((giulia, emma, client));
        node.shutdown().await;
    });
}

#[test]
fn an_italian_customer_served_by_the_english_team_before_10_is_told_so_in_italian() {
    run(|| async {
        let config = config_with("", italian_day_shift);
        let (node, _clock) = start_manual(config, "2026-11-24T09:30:00+01:00").await;
        let mut client = customer(&node).await;
        let early = start_conversation(&mut client, "support", "it", "early")
            .await
            .unwrap();
        assert!(!early.offline, "the English team serves Italian customers");
        let mut stream = events(&mut client, &early, 0).await;
        let text = system_message(&mut stream, 3)
            .await
            .expect("a system message at the start says who serves the customer");
        assert!(
            text.contains("inglese") && text.contains("10:00"),
            "in Italian, naming English and the Italian team's opening: {text:?}"
        );
        // An English customer at the same time is told nothing of the kind.
        let english = start_conversation(&mut client, "support", "en", "early-en")
            .await
            .unwrap();
        let mut english_events = events(&mut client, &english, 0).await;
        assert_eq!(system_message(&mut english_events, 1).await, None);
        drop((stream, english_events, client));
        node.shutdown().await;
    });
}

/// An Italian conversation waits in English from 09:59 with no English agent; at 10:00 the
/// Italian team opens. Returns the offer giulia gets within a few seconds, if any.
async fn waiting_in_english_at_opening(pull_back: bool) -> Option<centralino_proto::v1::Offer> {
    let config = config_with("", |c| {
        italian_day_shift(c);
        c.handover.pull_back = pull_back;
    });
    let (node, clock) = start_manual(config, "2026-11-24T09:59:00+01:00").await;
    let mut giulia = login(&node, "giulia", "pw").await.unwrap();
    let mut client = customer(&node).await;
    let waiting = start_conversation(&mut client, "support", "it", "waiting")
        .await
        .unwrap();
    let early = offer_of(&mut giulia, &waiting.conversation_id, 1).await;
    assert!(
        early.is_none(),
        "offered to the Italian team before it opened: {early:?}"
    );
    // To 10:00:01; giulia's shift check runs there.
    advance_settled(&clock, Duration::from_secs(61)).await;
    let offer = offer_of(&mut giulia, &waiting.conversation_id, 4).await;
    drop((giulia, client));
    node.shutdown().await;
    offer
}

#[test]
fn with_pull_back_a_conversation_waiting_in_english_returns_to_the_italian_team_at_10() {
    run(|| async {
        let offer = waiting_in_english_at_opening(true)
            .await
            .expect("pulled back to the Italian team at 10:00");
        assert_eq!(offer.serving_language, "it");
        assert_eq!(offer.language, "it");
    });
}

#[test]
fn without_pull_back_a_conversation_waiting_in_english_stays_there() {
    run(|| async {
        let offer = waiting_in_english_at_opening(false).await;
        assert!(
            offer.is_none(),
            "without pull_back the conversation stays with the English queue: {offer:?}"
        );
    });
}

#[test]
fn active_chats_finish_with_their_agent_after_22_by_default() {
    run(|| async {
        let config = config_with("", |c| {
            italian_day_shift(c);
            assert_eq!(
                c.handover.active,
                ActivePolicy::Finish,
                "finish is the default"
            );
        });
        let (node, clock) = start_manual(config, "2026-11-23T21:59:00+01:00").await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "evening")
            .await
            .unwrap();
        let mut chat_events = events(&mut client, &chat, 0).await;
        assert_eq!(giulia.take().await, chat.conversation_id);
        send_text(&mut client, &chat, "m1", "prima delle dieci")
            .await
            .unwrap();
        assert!(
            giulia
                .hears(&chat.conversation_id, "prima delle dieci", 3)
                .await
        );

        // Well past 22:00, through a shift check of the agent every 30 s.
        for _ in 0..5 {
            advance_settled(&clock, Duration::from_secs(30)).await;
        }
        assert_eq!(node.clock.now_ms(), instant_ms("2026-11-23T22:01:30+01:00"));
        send_text(&mut client, &chat, "m2", "dopo le dieci")
            .await
            .unwrap();
        assert!(
            giulia
                .hears(&chat.conversation_id, "dopo le dieci", 3)
                .await,
            "the chat stays with giulia after 22:00"
        );
        giulia.say(&chat.conversation_id, "a1", "eccomi").await;
        let reply = next_event(&mut chat_events, 3, |e| {
            message_text(e).filter(|t| t == "eccomi")
        })
        .await;
        assert!(reply.is_some(), "giulia's answer reaches the customer");
        let seen = collect_events(&mut chat_events, 300).await;
        let names: Vec<&str> = seen.iter().map(event_name).collect();
        assert!(
            !names.contains(&"requeued") && !names.contains(&"handed_over"),
            "finish policy: no requeue or handover of an active chat: {names:?}"
        );

        // New Italian conversations now go to the English team; a direct transfer to the
        // off-shift giulia is refused.
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let night = start_conversation(&mut client, "support", "it", "night")
            .await
            .unwrap();
        let offer = offer_of(&mut emma, &night.conversation_id, 5)
            .await
            .expect("emma gets the new Italian conversation");
        assert_eq!(offer.serving_language, "en");
        emma.accept(&offer).await;
        let reply = emma
            .call(
                "to-giulia",
                agent_command::Kind::Transfer(Transfer {
                    conversation_id: night.conversation_id.clone(),
                    target: Some(centralino_proto::v1::transfer::Target::AgentId(
                        "giulia".into(),
                    )),
                    reason: "parla italiano".into(),
                    warm: false,
                }),
            )
            .await;
        assert_eq!(
            reply.code(),
            "FAILED_PRECONDITION",
            "an off-shift agent takes no transfer: {reply:?}"
        );
        let giulia_events = giulia.collect_for(300).await;
        assert!(
            !giulia_events
                .iter()
                .any(|k| matches!(k, centralino_proto::v1::agent_event::Kind::Offer(_))),
            "giulia got an offer after 22:00"
        );
        drop((giulia, emma, client, chat_events));
        node.shutdown().await;
    });
}

#[test]
fn with_transfer_after_active_chats_move_to_english_after_the_grace() {
    run(|| async {
        let config = config_with("", |c| {
            italian_day_shift(c);
            c.handover.active = ActivePolicy::TransferAfter;
            c.handover.grace_secs = 60;
        });
        let (node, clock) = start_manual(config, "2026-11-23T21:59:00+01:00").await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "evening")
            .await
            .unwrap();
        let mut chat_events = events(&mut client, &chat, 0).await;
        assert_eq!(giulia.take().await, chat.conversation_id);
        send_text(&mut client, &chat, "m1", "dov'è il mio ordine?")
            .await
            .unwrap();
        giulia
            .say(&chat.conversation_id, "a1", "controllo subito")
            .await;
        assert!(
            giulia
                .hears(&chat.conversation_id, "dov'è il mio ordine?", 3)
                .await
        );

        // Giulia's shift check at 22:00 sees the shift over; at 22:00:30 the grace still runs.
        advance_settled(&clock, Duration::from_secs(60)).await;
        advance_settled(&clock, Duration::from_secs(30)).await;
        assert_eq!(
            agent_in(&snapshot(&node).await, "giulia").load,
            1,
            "handed on within the grace"
        );
        // 22:01: the grace is over.
        advance_settled(&clock, Duration::from_secs(30)).await;
        let outcome = giulia
            .ended(&chat.conversation_id, 8)
            .await
            .expect("giulia's chat ends after the grace");
        assert_eq!(outcome, ConversationOutcome::Transferred as i32);
        assert_eq!(node.clock.now_ms(), instant_ms("2026-11-23T22:01:00+01:00"));
        let mut sequence = Vec::new();
        let handed = next_event(&mut chat_events, 5, |e| {
            sequence.push(event_name(e));
            match &e.kind {
                Some(Kind::HandedOver(h)) => Some(h.clone()),
                _ => None,
            }
        })
        .await
        .expect("the customer is told about the handover");
        assert_eq!(handed.to_language, "en");
        let requeued_at = sequence.iter().position(|n| *n == "requeued");
        assert!(
            requeued_at.is_some(),
            "requeued before handed_over: {sequence:?}"
        );

        let offer = offer_of(&mut emma, &chat.conversation_id, 5)
            .await
            .expect("the English team gets the conversation");
        assert_eq!(offer.serving_language, "en");
        let assigned = emma.accept(&offer).await;
        let texts: Vec<&str> = assigned
            .transcript
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert!(
            texts.contains(&"dov'è il mio ordine?") && texts.contains(&"controllo subito"),
            "the transcript travels with the conversation: {texts:?}"
        );
        assert_eq!(
            assigned_agent(&mut chat_events, 3).await.as_deref(),
            Some("emma")
        );
        drop((giulia, emma, client, chat_events));
        node.shutdown().await;
    });
}

#[test]
fn on_christmas_the_italian_team_is_closed() {
    run(|| async {
        let config = config_with("", |c| {
            simulated(c, "2026-12-25T11:00:00+01:00", SPEED);
            italian_day_shift(c);
            let mut schedule = rome_daily(&["10:00-22:00"]);
            schedule.holidays = vec!["12-25".to_string()];
            set_schedule(c, "italian", schedule);
        });
        let node = start(config).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let xmas = start_conversation(&mut client, "support", "it", "xmas")
            .await
            .unwrap();
        let offer = offer_of(&mut emma, &xmas.conversation_id, 5)
            .await
            .expect("on a holiday the English team serves Italian customers");
        assert_eq!(offer.serving_language, "en");
        let giulia_events = giulia.collect_for(300).await;
        assert!(
            !giulia_events
                .iter()
                .any(|k| matches!(k, centralino_proto::v1::agent_event::Kind::Offer(_))),
            "giulia got an offer on a holiday"
        );
        drop((giulia, emma, client));
        node.shutdown().await;
    });
}

/// Starts a node on `date` at `before` local time (Europe/Rome offset `offset`), checks that a
/// new Italian conversation is served in `first`, waits until `change` local time and checks
/// that a new one is served in `second`.
async fn serving_across(
    date: &str,
    offset: &str,
    before: &str,
    change: &str,
    first: &str,
    second: &str,
) {
    let config = config_with("", italian_day_shift);
    let before_ms = instant_ms(&format!("{date}T{before}{offset}"));
    let (node, clock) = start_manual(config, &format!("{date}T{before}{offset}")).await;
    let mut giulia = login(&node, "giulia", "pw").await.unwrap();
    let mut emma = login(&node, "emma", "pw").await.unwrap();
    let mut client = customer(&node).await;
    for (n, (language, at)) in [(first, None), (second, Some(change))]
        .into_iter()
        .enumerate()
    {
        if let Some(at) = at {
            // Across the change; the agents' shift checks run there.
            let to = instant_ms(&format!("{date}T{at}{offset}"));
            advance_settled(&clock, Duration::from_millis((to - before_ms) as u64)).await;
            assert_eq!(node.clock.now_ms(), to);
        }
        let started = start_conversation(&mut client, "support", "it", &format!("c{n}"))
            .await
            .unwrap();
        let desk = if language == "it" {
            &mut giulia
        } else {
            &mut emma
        };
        let offer = offer_of(desk, &started.conversation_id, 5)
            .await
            .unwrap_or_else(|| {
                panic!("{date}: conversation {n} not offered to the {language} team")
            });
        assert_eq!(
            offer.serving_language, language,
            "{date}: conversation {n} served in the wrong language"
        );
        // Accepted, so that no open offer times out when the clock moves on.
        desk.accept(&offer).await;
    }
    drop((giulia, emma, client));
    node.shutdown().await;
}

#[test]
fn on_the_spring_dst_day_the_italian_team_opens_at_10_and_closes_at_22_local() {
    run(|| async {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (+02:00).
        serving_across("2026-03-29", "+02:00", "09:59:30", "10:00:01", "en", "it").await;
        serving_across("2026-03-29", "+02:00", "21:59:30", "22:00:01", "it", "en").await;
    });
}

#[test]
fn on_the_autumn_dst_day_the_italian_team_opens_at_10_and_closes_at_22_local() {
    run(|| async {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET (+01:00).
        serving_across("2026-10-25", "+01:00", "09:59:30", "10:00:01", "en", "it").await;
        serving_across("2026-10-25", "+01:00", "21:59:30", "22:00:01", "it", "en").await;
    });
}
