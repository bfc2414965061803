//! Customer identity (issue 10): a `customer_id` is honoured only with an identity token
//! signed by the shop; without one the customer is an anonymous visitor whose visitor token
//! continues only their own history, and no reply tells anything about another id.

use centralino_testkit as common;

use centralino_proto::v1::{
    agent_command, AddNote, Priority, SetCustomerTierRequest, StartConversationRequest,
    StartConversationResponse,
};
use centralino_router::identity::{self, CUSTOMER_TOKEN_VERSION, VISITOR_TOKEN_VERSION};
use centralino_router::standalone::RunningNode;
use centralino_router::store::profiles;
use centralino_router::store::records::ProfileRecord;
use common::*;
use tonic::transport::Channel;
use tonic::Code;

type Client = centralino_proto::v1::conversation_service_client::ConversationServiceClient<Channel>;

/// The test shop secret's key bytes.
fn shop_key() -> Vec<u8> {
    centralino_router::config::parse_secret(SHOP_SECRET)
        .expect("valid")
        .expect("set")
}

/// Starts a support conversation in Italian from `request`'s identity fields.
async fn start_with(
    client: &mut Client,
    customer_id: &str,
    identity_token: &str,
    visitor_token: &str,
    display_name: &str,
) -> Result<StartConversationResponse, tonic::Status> {
    client
        .start_conversation(StartConversationRequest {
            department: "support".into(),
            language: "it".into(),
            customer_id: customer_id.into(),
            display_name: display_name.into(),
            identity_token: identity_token.into(),
            visitor_token: visitor_token.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Returns the profile of `customer_id` in the record (its stored form with its version,
/// to compare, and decoded).
async fn profile(node: &RunningNode, customer_id: &str) -> Option<(Vec<u8>, ProfileRecord)> {
    let stored = node
        .router
        .shared
        .record
        .get_profile(customer_id)
        .await
        .expect("record")?;
    let record = profiles::from_record(&stored).expect("profile record");
    Some((serde_json::to_vec(&stored).expect("json"), record))
}

/// The reply fields that could tell something about the customer (everything but the
/// fresh ids and tokens).
fn disclosed(r: &StartConversationResponse) -> (String, i32, bool, bool, bool, i64, bool) {
    (
        r.department.clone(),
        r.priority,
        r.returning_customer,
        r.offline,
        r.recontact,
        r.reopens_at_unix_ms,
        r.customer_id_ignored,
    )
}

/// Anna, a logged-in VIP customer, chats with giulia (a note and a summary), then closes.
async fn anna_has_history(node: &RunningNode, giulia: &mut Desk, client: &mut Client) {
    admin(node)
        .await
        .set_customer_tier(authed(SetCustomerTierRequest {
            customer_id: "anna".into(),
            tier: "vip".into(),
        }))
        .await
        .expect("set tier");
    let first = start_conversation(client, "support", "it", "anna")
        .await
        .unwrap();
    assert!(first.visitor_id.is_empty() && first.visitor_token.is_empty());
    assert!(!first.customer_id_ignored);
    assert_eq!(giulia.take().await, first.conversation_id);
    let reply = giulia
        .call(
            "note",
            agent_command::Kind::Note(AddNote {
                conversation_id: first.conversation_id.clone(),
                text: "indirizzo: via Roma 1".into(),
            }),
        )
        .await;
    assert_eq!(reply, Reply::Ack);
    giulia
        .close(&first.conversation_id, "carta rimborsata")
        .await;
    assert!(giulia.ended(&first.conversation_id, 3).await.is_some());
}

#[test]
fn a_forged_customer_id_gets_nothing_of_the_customer_and_a_signed_one_gets_everything() {
    run(|| async {
        // One slot: while giulia serves the forger, the stranger waits without offers.
        let node = start(config_with("", |c| set_capacity(c, "giulia", 1))).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        anna_has_history(&node, &mut giulia, &mut client).await;
        let (anna_before, record) = profile(&node, "anna").await.expect("anna's profile");
        assert_eq!(record.display_name, "Customer anna");
        assert_eq!(record.tier, "vip");

        // An attacker names anna without a token, and a stranger names a new id.
        let forged = start_with(&mut client, "anna", "", "", "Mallory")
            .await
            .expect("starts as an anonymous visitor");
        let offer = giulia.offer(5).await.expect("offer of the forged start");
        assert_eq!(offer.conversation_id, forged.conversation_id);
        assert!(!offer.returning_customer, "{offer:?}");
        assert!(offer.last_summary.is_empty(), "{offer:?}");
        if let Some(history) = &offer.history {
            assert!(
                history.summaries.is_empty()
                    && history.notes.is_empty()
                    && history.last_agents.is_empty()
                    && history.tier.is_empty()
                    && !history.recontact,
                "anna's history leaked: {history:?}"
            );
        }
        giulia.accept(&offer).await;
        let stranger = start_with(&mut client, "never-seen-42", "", "", "Mallory")
            .await
            .unwrap();
        assert_eq!(disclosed(&forged), disclosed(&stranger));
        assert!(forged.customer_id_ignored);
        assert!(!forged.returning_customer && !forged.recontact);
        assert_eq!(forged.priority, Priority::Normal as i32, "no VIP tier");
        assert!(!forged.visitor_id.is_empty() && forged.visitor_id != "anna");
        assert_ne!(forged.visitor_id, stranger.visitor_id);
        assert!(!forged.visitor_token.is_empty());
        client
            .close_conversation(centralino_proto::v1::CloseConversationRequest {
                conversation_id: stranger.conversation_id.clone(),
                token: stranger.token.clone(),
            })
            .await
            .expect("the stranger leaves");
        let forged_texts = transcript_texts(&node, &forged.conversation_id).await;
        assert!(
            forged_texts.is_empty(),
            "no welcome back for the forger: {forged_texts:?}"
        );
        // The forger's conversation ends; anna's profile is untouched (name, history).
        giulia.close(&forged.conversation_id, "truffa").await;
        assert!(giulia.ended(&forged.conversation_id, 3).await.is_some());
        let (anna_after, record) = profile(&node, "anna").await.expect("anna's profile");
        assert_eq!(record.display_name, "Customer anna");
        assert_eq!(
            anna_after, anna_before,
            "the forged start changed anna's profile"
        );
        let visitor = format!("{}{}", identity::VISITOR_PREFIX, forged.visitor_id);
        let (_, own) = profile(&node, &visitor)
            .await
            .expect("the visitor's own profile");
        assert_eq!(own.display_name, "Mallory");

        // Anna herself, with her token: returning, re-contact, VIP, her agent and history.
        let hits_before = snapshot(&node)
            .await
            .counters
            .expect("counters")
            .sticky_hits;
        assert_eq!(
            hits_before, 0,
            "the forged start was routed as anna's (sticky)"
        );
        let marco = login(&node, "marco", "pw").await.unwrap();
        snapshot_until(&node, 5, |s| {
            agent_in(s, "marco").status == centralino_proto::v1::AgentStatus::Available as i32
        })
        .await;
        let again = start_conversation(&mut client, "support", "it", "anna")
            .await
            .unwrap();
        assert!(again.returning_customer && again.recontact);
        assert_eq!(again.priority, Priority::Vip as i32);
        assert!(!again.customer_id_ignored && again.visitor_id.is_empty());
        let offer = giulia.offer(5).await.expect("anna goes back to giulia");
        assert_eq!(offer.conversation_id, again.conversation_id);
        let history = offer.history.clone().expect("history");
        assert!(
            history.notes.iter().any(|n| n.contains("via Roma 1")),
            "{history:?}"
        );
        assert!(
            history.summaries.iter().any(|s| s == "carta rimborsata"),
            "{history:?}"
        );
        assert!(
            !history.summaries.iter().any(|s| s == "truffa"),
            "{history:?}"
        );
        assert_eq!(history.tier, "vip");
        giulia.accept(&offer).await;
        let snap = snapshot_until(&node, 3, |s| {
            s.counters.is_some_and(|c| c.sticky_hits > hits_before)
        })
        .await;
        let hits_after = snap.counters.expect("counters").sticky_hits;
        assert_eq!(hits_after, hits_before + 1, "a sticky hit for anna");
        let texts = transcript_texts(&node, &again.conversation_id).await;
        assert!(
            texts
                .iter()
                .any(|t| t.contains("Bentornato, Customer anna")),
            "{texts:?}"
        );
        drop((giulia, marco, client));
        node.shutdown().await;
    });
}

#[test]
fn expired_tampered_foreign_and_mismatched_tokens_are_refused_and_change_nothing() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        let key = shop_key();
        let now = identity::wall_clock_secs();
        let valid = identity_token("anna");
        let mut tampered = valid.clone().into_bytes();
        tampered[3] = b'e'; // v1.anna… → v1.enna…
        let tampered = String::from_utf8(tampered).unwrap();
        let mut bad_digit = valid.clone();
        let last = bad_digit.pop().unwrap();
        bad_digit.push(if last == '0' { '1' } else { '0' });
        let foreign = identity::sign(
            CUSTOMER_TOKEN_VERSION,
            b"another shop's secret, 32 bytes!",
            "anna",
            now + 600,
        );
        let cases = [
            (
                "expired",
                identity::sign(CUSTOMER_TOKEN_VERSION, &key, "anna", now - 1),
                "",
                Code::Unauthenticated,
                "expired",
            ),
            (
                "tampered id",
                tampered,
                "",
                Code::Unauthenticated,
                "signature",
            ),
            (
                "tampered signature",
                bad_digit,
                "",
                Code::Unauthenticated,
                "signature",
            ),
            (
                "another key",
                foreign,
                "",
                Code::Unauthenticated,
                "signature",
            ),
            (
                "too long-lived",
                identity::sign(CUSTOMER_TOKEN_VERSION, &key, "anna", now + 400 * 86_400),
                "",
                Code::Unauthenticated,
                "expires more than",
            ),
            (
                "a visitor token",
                identity::sign(VISITOR_TOKEN_VERSION, &key, "anna", now + 600),
                "",
                Code::Unauthenticated,
                "malformed",
            ),
            (
                "garbage",
                "hello".to_string(),
                "",
                Code::Unauthenticated,
                "malformed",
            ),
            (
                "another customer's id beside the token",
                valid.clone(),
                "bruno",
                Code::InvalidArgument,
                "does not match",
            ),
            (
                "the visitors' namespace",
                identity::sign(CUSTOMER_TOKEN_VERSION, &key, "visitor:abc", now + 600),
                "",
                Code::InvalidArgument,
                "visitor:",
            ),
        ];
        for (case, token, customer_id, code, words) in cases {
            let err = start_with(&mut client, customer_id, &token, "", "Mallory")
                .await
                .expect_err(case);
            assert_eq!(err.code(), code, "{case}: {err:?}");
            assert!(err.message().contains(words), "{case}: {}", err.message());
            assert!(
                err.message().contains("identity_token") || err.message().contains("customer_id"),
                "{case}: the message names the field: {}",
                err.message()
            );
        }
        let snap = snapshot(&node).await;
        assert_eq!(
            snap.counters.expect("counters").conversations_started,
            0,
            "nothing started"
        );
        assert_eq!(queue_in(&snap, "support").depth, 0);
        assert!(profile(&node, "anna").await.is_none(), "no profile written");
        // The valid token itself works, with or without the same customer_id.
        let ok = start_with(&mut client, "anna", &valid, "", "Anna")
            .await
            .unwrap();
        assert!(!ok.customer_id_ignored && ok.visitor_id.is_empty());
        let ok = start_with(&mut client, "", &valid, "", "Anna")
            .await
            .unwrap();
        assert!(ok.visitor_id.is_empty());
        let (_, anna) = profile(&node, "anna").await.expect("anna's profile");
        assert_eq!(anna.contacts, 2);
        drop(client);
        node.shutdown().await;
    });
}

#[test]
fn a_visitor_token_continues_its_own_visitor_and_nobody_else() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        let mut client = customer(&node).await;
        anna_has_history(&node, &mut giulia, &mut client).await;

        let first = start_with(&mut client, "", "", "", "Vittoria")
            .await
            .unwrap();
        assert!(!first.visitor_id.is_empty() && !first.visitor_token.is_empty());
        assert!(!first.customer_id_ignored && !first.returning_customer);
        assert_eq!(giulia.take().await, first.conversation_id);
        giulia
            .close(&first.conversation_id, "chiesto dei tempi di consegna")
            .await;
        assert!(giulia.ended(&first.conversation_id, 3).await.is_some());

        // Back with the visitor token: the same visitor, their own history, their agent.
        let again = start_with(&mut client, "", "", &first.visitor_token, "Vittoria")
            .await
            .unwrap();
        assert_eq!(again.visitor_id, first.visitor_id);
        assert!(!again.visitor_token.is_empty());
        assert!(again.returning_customer && again.recontact);
        assert_eq!(again.priority, Priority::Normal as i32);
        let offer = giulia.offer(5).await.expect("offer");
        assert_eq!(offer.conversation_id, again.conversation_id);
        let history = offer.history.clone().expect("the visitor's own history");
        assert_eq!(
            history.summaries,
            vec!["chiesto dei tempi di consegna".to_string()]
        );
        assert!(
            history.notes.is_empty() && history.tier.is_empty(),
            "{history:?}"
        );
        giulia.accept(&offer).await;

        // A visitor token is not a customer's: a customer_id beside it is ignored, and the
        // visitor stays who the token says.
        let named = start_with(&mut client, "anna", "", &first.visitor_token, "Vittoria")
            .await
            .unwrap();
        assert_eq!(named.visitor_id, first.visitor_id);
        assert!(named.customer_id_ignored);
        assert_eq!(
            named.priority,
            Priority::Normal as i32,
            "not anna's VIP tier"
        );
        // A visitor id sent as a customer_id does not reach that visitor.
        let as_id = start_with(&mut client, &first.visitor_id, "", "", "X")
            .await
            .unwrap();
        assert_ne!(as_id.visitor_id, first.visitor_id);
        assert!(!as_id.returning_customer && !as_id.recontact);
        // A tampered or foreign visitor token starts a new visitor.
        let mut tampered = first.visitor_token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        let foreign = identity::sign(
            VISITOR_TOKEN_VERSION,
            b"not this node's visitor key!!!!!",
            &first.visitor_id,
            identity::wall_clock_secs() + 600,
        );
        for token in [tampered, foreign, identity_token("anna")] {
            let fresh = start_with(&mut client, "", "", &token, "X").await.unwrap();
            assert_ne!(fresh.visitor_id, first.visitor_id, "{token}");
            assert!(!fresh.returning_customer && !fresh.recontact);
        }
        drop((giulia, client));
        node.shutdown().await;
    });
}

#[test]
fn a_node_without_a_shop_secret_refuses_identity_tokens_and_serves_visitors() {
    run(|| async {
        let node = start(config_with("", |c| c.identity.shop_secret.clear())).await;
        let mut client = customer(&node).await;
        let err = start_with(&mut client, "anna", &identity_token("anna"), "", "Anna")
            .await
            .expect_err("no shop secret");
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("shop_secret"), "{}", err.message());
        let visitor = start_with(&mut client, "anna", "", "", "Anna")
            .await
            .unwrap();
        assert!(visitor.customer_id_ignored && !visitor.visitor_id.is_empty());
        drop(client);
        node.shutdown().await;
    });
}

#[test]
fn the_example_placeholder_secrets_are_refused_at_start_outside_dev_mode() {
    use centralino_router::config::{PLACEHOLDER_SHOP_SECRET, PLACEHOLDER_VISITOR_SECRET};
    use centralino_router::standalone::{self, StoreChoice};
    run(|| async {
        let placeholders = |dev_mode: bool| {
            config_with("", |c| {
                c.identity.shop_secret = PLACEHOLDER_SHOP_SECRET.into();
                c.identity.visitor_secret = PLACEHOLDER_VISITOR_SECRET.into();
                c.node.dev_mode = dev_mode;
            })
        };
        let err = match standalone::start_with(placeholders(false), StoreChoice::Memory).await {
            Ok(_) => panic!("a node started on the example's placeholder secrets"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("identity.shop_secret") && err.contains("identity.visitor_secret"),
            "{err}"
        );
        let node = start(placeholders(true)).await;
        node.shutdown().await;
    });
}

#[test]
fn a_cluster_router_needs_a_shared_visitor_secret_outside_dev_mode() {
    use centralino_membership::memory::MemoryKv;
    use centralino_router::clustered;
    run(|| async {
        let mut config = common::cluster::cluster_config("router-1", "/identity");
        config.identity.visitor_secret.clear();
        config.node.dev_mode = false;
        let kv = std::sync::Arc::new(MemoryKv::default());
        let err = match clustered::start_with(config, kv).await {
            Ok(_) => panic!("a cluster router started with a per-node visitor key"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("identity.visitor_secret is required"), "{err}");
    });
}
