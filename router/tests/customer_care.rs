//! Knowing the customer (DESIGN.md §1): re-contacts within 7 days with the history of the
//! last contact (agent, summary, notes) shown with the offer; canned responses by shortcut;
//! the sensitive-data warning; one rating per conversation; VIP customers first.

use centralino_testkit as common;

use centralino_proto::v1::{
    agent_command, agent_event, conversation_event::Kind, AddNote, FindCanned, MarkSensitive,
    Priority, RateConversationRequest, Sender, SetCustomerTierRequest,
};
use common::*;

const CANNED: &str = r#"
[[canned]]
shortcut = "/spedizione"
department = "support"
language = "it"
text = "La spedizione richiede 2-3 giorni lavorativi."

[[canned]]
shortcut = "/spedizione-estero"
department = "support"
language = "it"
text = "All'estero la spedizione richiede 5-7 giorni lavorativi."

[[canned]]
shortcut = "/reso"
department = "support"
language = "it"
text = "Puoi restituire il prodotto entro 30 giorni."

[[canned]]
shortcut = "/spedizione"
department = "support"
language = "en"
text = "Shipping takes 2-3 business days."

[[canned]]
shortcut = "/sped-vendite"
department = "sales"
language = "it"
text = "Spediamo gratis sopra i 50 euro."
"#;

#[test]
fn a_returning_customer_is_a_recontact_and_the_offer_shows_the_history() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let first = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        assert!(!first.recontact && !first.returning_customer);
        let mut first_events = events(&mut client, &first, 0).await;
        assert_eq!(giulia.take().await, first.conversation_id);
        let reply = giulia
            .call(
                "note",
                agent_command::Kind::Note(AddNote {
                    conversation_id: first.conversation_id.clone(),
                    text: "preferisce essere contattata via email".into(),
                }),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        giulia
            .close(&first.conversation_id, "ordine 42 spedito con corriere")
            .await;
        assert!(giulia.ended(&first.conversation_id, 3).await.is_some());
        assert!(closed_outcome(&mut first_events, 3).await.is_some());

        let again = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        assert!(again.returning_customer);
        assert!(again.recontact, "back within 7 days: a re-contact");
        let offer = giulia.offer(5).await.expect("offer of the second contact");
        assert_eq!(offer.conversation_id, again.conversation_id);
        assert!(offer.returning_customer);
        let history = offer.history.expect("history with the offer");
        assert!(history.recontact);
        assert!(
            history.contacts >= 1,
            "contacts counted: {}",
            history.contacts
        );
        assert!(
            history.last_agents.iter().any(|a| a == "giulia"),
            "{history:?}"
        );
        assert!(
            history
                .summaries
                .iter()
                .any(|s| s.contains("ordine 42 spedito")),
            "{history:?}"
        );
        assert!(
            history
                .notes
                .iter()
                .any(|n| n.contains("preferisce essere contattata via email")),
            "{history:?}"
        );

        let stranger = start_conversation(&mut client, "support", "it", "bruno")
            .await
            .unwrap();
        assert!(!stranger.recontact && !stranger.returning_customer);
        drop((giulia, client, first_events));
        node.shutdown().await;
    });
}

#[test]
fn canned_responses_are_found_by_shortcut_prefix() {
    run(|| async {
        let node = start(config(CANNED)).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        giulia
            .request(
                "c1",
                agent_command::Kind::FindCanned(FindCanned {
                    query: "/sped".into(),
                    department: "support".into(),
                    language: "it".into(),
                }),
            )
            .await;
        let found = giulia
            .next(3, |k| match k {
                agent_event::Kind::Ack(a) if a.request_id == "c1" => Some(a),
                _ => None,
            })
            .await
            .expect("canned responses answer the request");
        let mut shortcuts: Vec<&str> = found.canned.iter().map(|c| c.shortcut.as_str()).collect();
        shortcuts.sort();
        assert_eq!(
            shortcuts,
            vec!["/spedizione", "/spedizione-estero"],
            "only Italian support responses starting with /sped: {:?}",
            found.canned
        );
        assert!(found
            .canned
            .iter()
            .all(|c| c.language == "it" && c.department == "support"));
        assert!(found
            .canned
            .iter()
            .any(|c| c.text == "La spedizione richiede 2-3 giorni lavorativi."));
        drop(giulia);
        node.shutdown().await;
    });
}

#[test]
fn marking_a_chat_sensitive_warns_the_customer_in_their_language() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let mut stream = events(&mut client, &chat, 0).await;
        assert_eq!(giulia.take().await, chat.conversation_id);
        let reply = giulia
            .call(
                "s1",
                agent_command::Kind::MarkSensitive(MarkSensitive {
                    conversation_id: chat.conversation_id.clone(),
                }),
            )
            .await;
        assert_eq!(reply, Reply::Ack);
        let warning = next_event(&mut stream, 3, |e| match &e.kind {
            Some(Kind::Message(m)) if m.sender == Sender::System as i32 => Some(m.text.clone()),
            _ => None,
        })
        .await
        .expect("a system message warns the customer");
        assert!(
            warning.contains("sensibili"),
            "the warning is in Italian: {warning:?}"
        );
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_conversation_is_rated_once() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        let mut stream = events(&mut client, &chat, 0).await;
        assert_eq!(giulia.take().await, chat.conversation_id);
        giulia.close_and_wait(&chat.conversation_id).await;
        assert!(closed_outcome(&mut stream, 3).await.is_some());
        let rate = |good: bool| RateConversationRequest {
            conversation_id: chat.conversation_id.clone(),
            token: chat.token.clone(),
            good,
            comment: "gentilissima".into(),
        };
        client
            .rate_conversation(rate(true))
            .await
            .expect("first rating");
        let err = client
            .rate_conversation(rate(false))
            .await
            .expect_err("second rating");
        assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
        let snap = snapshot(&node).await;
        let counters = snap.counters.unwrap();
        assert_eq!((counters.csat_good, counters.csat_bad), (1, 0));
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn a_vip_customer_is_served_before_older_normal_ones() {
    run(|| async {
        let config = config_with("", |c| set_capacity(c, "giulia", 1));
        let node = start(config).await;
        admin(&node)
            .await
            .set_customer_tier(authed(SetCustomerTierRequest {
                customer_id: "vera".into(),
                tier: "vip".into(),
            }))
            .await
            .expect("set tier");
        let err = admin(&node)
            .await
            .set_customer_tier(authed(SetCustomerTierRequest {
                customer_id: "vera".into(),
                tier: "gold".into(),
            }))
            .await
            .expect_err("unknown tier");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let mut client = customer(&node).await;
        let normal_1 = start_conversation(&mut client, "support", "it", "n1")
            .await
            .unwrap();
        let normal_2 = start_conversation(&mut client, "support", "it", "n2")
            .await
            .unwrap();
        assert_eq!(normal_1.priority, Priority::Normal as i32);
        let vip = start_conversation(&mut client, "support", "it", "vera")
            .await
            .unwrap();
        assert_eq!(vip.priority, Priority::Vip as i32);
        snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 3).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let offer = giulia.offer(5).await.expect("an offer");
        assert_eq!(
            offer.conversation_id, vip.conversation_id,
            "the VIP goes before the older {} and {}",
            normal_1.conversation_id, normal_2.conversation_id
        );
        assert_eq!(offer.history.map(|h| h.tier).as_deref(), Some("vip"));
        drop((giulia, client));
        node.shutdown().await;
    });
}

#[test]
fn a_tier_set_during_a_live_conversation_survives_its_close() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        let chat = start_conversation(&mut client, "support", "it", "vera")
            .await
            .unwrap();
        assert_eq!(chat.priority, Priority::Normal as i32);
        assert_eq!(giulia.take().await, chat.conversation_id);
        // The operator promotes the customer while she is chatting.
        admin(&node)
            .await
            .set_customer_tier(authed(SetCustomerTierRequest {
                customer_id: "vera".into(),
                tier: "vip".into(),
            }))
            .await
            .expect("set tier");
        giulia.close_and_wait(&chat.conversation_id).await;
        let next = start_conversation(&mut client, "support", "it", "vera")
            .await
            .unwrap();
        assert_eq!(
            next.priority,
            Priority::Vip as i32,
            "the VIP tier set during the first conversation was lost when it closed"
        );
        drop((giulia, client));
        node.shutdown().await;
    });
}

#[test]
fn overlapping_conversations_of_one_customer_both_reach_the_history() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        // Two browser tabs: two conversations of the same customer at once.
        let tab_a = start_conversation(&mut client, "support", "it", "carla")
            .await
            .unwrap();
        assert_eq!(giulia.take().await, tab_a.conversation_id);
        let tab_b = start_conversation(&mut client, "support", "it", "carla")
            .await
            .unwrap();
        assert_eq!(giulia.take().await, tab_b.conversation_id);
        giulia
            .close(&tab_a.conversation_id, "rimborso avviato")
            .await;
        assert!(giulia.ended(&tab_a.conversation_id, 3).await.is_some());
        giulia
            .close(&tab_b.conversation_id, "indirizzo cambiato")
            .await;
        assert!(giulia.ended(&tab_b.conversation_id, 3).await.is_some());

        let again = start_conversation(&mut client, "support", "it", "carla")
            .await
            .unwrap();
        let offer = giulia.offer(5).await.expect("offer of the third contact");
        assert_eq!(offer.conversation_id, again.conversation_id);
        let history = offer.history.expect("history");
        assert!(
            history.summaries.iter().any(|s| s == "rimborso avviato")
                && history.summaries.iter().any(|s| s == "indirizzo cambiato"),
            "both earlier contacts belong in the history: {history:?}"
        );
        drop((giulia, client));
        node.shutdown().await;
    });
}
