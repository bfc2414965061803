//! Typing indicators both ways (issue 12): the customer's reach the agent serving the
//! conversation as `customer_typing`, the agent's reach the customer's stream as `typing`
//! with `event_id` 0. They are ephemeral (not in the transcript, not replayed on resume,
//! taking no event id), rate-limited per conversation and side (the excess is dropped, not
//! refused), and travel between processes in cluster mode (customer → router → agent-node,
//! agent → agent-node → any router → the conversation's owner), where only the agent's own
//! agent-node may carry the agent's typing and only routers the customer's.

use centralino_testkit as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_base::tls::{ClientTls, PeerIdentity, PeerRole};
use centralino_link::grpc::channel_with;
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_membership::memory::MemoryKv;
use centralino_proto::v1::agent_node_internal_client::AgentNodeInternalClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::router_internal_client::RouterInternalClient;
use centralino_proto::v1::{
    agent_command, agent_event, conversation_event::Kind, link_request, transfer::Target,
    AgentTyping, ConversationEvent, ConversationOutcome, CustomerTypingRequest, LinkRequest,
    LinkTyping, SendMessageRequest, SendTypingRequest, Sender, StartConversationResponse, Transfer,
};
use centralino_router::clustered::{self, ClusterRouter};
use centralino_router::config::Config;
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, peer_tls, pki, retrying, settled,
    split_settled, unique_id,
};
use common::*;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

type Client = ConversationServiceClient<Channel>;

/// The customer's typing request for `chat`.
fn typing_request(chat: &StartConversationResponse, typing: bool) -> SendTypingRequest {
    SendTypingRequest {
        conversation_id: chat.conversation_id.clone(),
        token: chat.token.clone(),
        typing,
    }
}

/// Sends the customer's typing; returns `forwarded`.
async fn customer_types(
    client: &mut Client,
    chat: &StartConversationResponse,
    typing: bool,
) -> bool {
    client
        .send_typing(typing_request(chat, typing))
        .await
        .expect("send_typing")
        .into_inner()
        .forwarded
}

/// The agent's typing command for `conversation_id`.
fn agent_types(conversation_id: &str, typing: bool) -> agent_command::Kind {
    agent_command::Kind::Typing(AgentTyping {
        conversation_id: conversation_id.to_string(),
        typing,
    })
}

/// Waits for the desk's `customer_typing` of `conversation_id`; returns its `typing`.
async fn desk_sees_typing(desk: &mut Desk, conversation_id: &str, secs: u64) -> Option<bool> {
    let wanted = conversation_id.to_string();
    desk.next(secs, |k| match k {
        agent_event::Kind::CustomerTyping(t) if t.conversation_id == wanted => Some(t.typing),
        _ => None,
    })
    .await
}

/// Waits for a `typing` event on the customer's stream; returns the event.
async fn stream_sees_typing(
    stream: &mut Streaming<ConversationEvent>,
    secs: u64,
) -> Option<ConversationEvent> {
    next_event(stream, secs, |e| {
        matches!(e.kind, Some(Kind::Typing(_))).then(|| e.clone())
    })
    .await
}

/// Returns every event the stream brings within `ms` milliseconds.
async fn drain(stream: &mut Streaming<ConversationEvent>, ms: u64) -> Vec<ConversationEvent> {
    use tokio_stream::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout_at(deadline, stream.next()).await {
        out.push(event);
    }
    out
}

/// Counts the desk's `customer_typing` events of `conversation_id` within `ms`.
async fn desk_typing_count(desk: &mut Desk, conversation_id: &str, ms: u64) -> usize {
    desk.collect_for(ms)
        .await
        .iter()
        .filter(|k| matches!(k, agent_event::Kind::CustomerTyping(t) if t.conversation_id == conversation_id))
        .count()
}

/// Giulia logs in and takes a new support conversation of `customer_id`.
async fn giulia_with_chat(
    node: &centralino_router::standalone::RunningNode,
    customer_id: &str,
) -> (
    Desk,
    Client,
    StartConversationResponse,
    Streaming<ConversationEvent>,
) {
    let mut giulia = login(node, "giulia", "pw").await.expect("giulia logs in");
    let mut client = customer(node).await;
    let chat = start_conversation(&mut client, "support", "it", customer_id)
        .await
        .expect("start");
    let stream = events(&mut client, &chat, 0).await;
    assert_eq!(giulia.take().await, chat.conversation_id);
    (giulia, client, chat, stream)
}

#[test]
fn typing_goes_both_ways_and_is_never_stored_or_replayed() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "anna").await;
        let cid = chat.conversation_id.clone();

        // The customer types: the desk shows it, nothing else happens.
        assert!(customer_types(&mut client, &chat, true).await, "forwarded");
        assert_eq!(desk_sees_typing(&mut giulia, &cid, 5).await, Some(true));

        // A stored event (the customer's message) and its id.
        send_text(&mut client, &chat, "m1", "ciao")
            .await
            .expect("send");
        let message_id = next_event(&mut stream, 5, |e| match &e.kind {
            Some(Kind::Message(m)) if m.text == "ciao" => Some(e.event_id),
            _ => None,
        })
        .await
        .expect("the customer's message on the stream");

        // The agent types: acknowledged, and shown on the customer's stream with id 0.
        assert_eq!(giulia.call("t1", agent_types(&cid, true)).await, Reply::Ack);
        let typing = stream_sees_typing(&mut stream, 5)
            .await
            .expect("the agent's typing on the customer's stream");
        assert_eq!(typing.event_id, 0, "typing is ephemeral: {typing:?}");
        match &typing.kind {
            Some(Kind::Typing(t)) => {
                assert!(t.typing);
                assert_eq!(t.agent_display_name, "Giulia");
            }
            other => panic!("not a typing event: {other:?}"),
        }
        assert!(typing.at_unix_ms > 0);

        // It took no event id: the agent's next message follows the customer's.
        giulia.say(&cid, "a1", "buongiorno").await;
        let reply_id = next_event(&mut stream, 5, |e| match &e.kind {
            Some(Kind::Message(m)) if m.text == "buongiorno" => Some(e.event_id),
            _ => None,
        })
        .await
        .expect("the agent's message");
        assert_eq!(
            reply_id,
            message_id + 1,
            "typing must not use up an event id"
        );

        // Resuming (from the start, and from the message before the typing) replays the
        // stored events only.
        for after in [0, message_id] {
            let mut resumed = events(&mut client, &chat, after).await;
            let replayed = drain(&mut resumed, 700).await;
            assert!(
                replayed.iter().any(|e| e.event_id == reply_id),
                "the resumed stream (after {after}) has the agent's message: {replayed:?}"
            );
            assert!(
                replayed
                    .iter()
                    .all(|e| e.event_id > after && !matches!(e.kind, Some(Kind::Typing(_)))),
                "typing replayed after {after}: {replayed:?}"
            );
        }

        // The transcript holds the two messages, nothing of the typing.
        let texts = transcript_texts(&node, &cid).await;
        assert!(
            texts.iter().any(|t| t == "ciao") && texts.iter().any(|t| t == "buongiorno"),
            "{texts:?}"
        );
        let mut resumed = events(&mut client, &chat, 0).await;
        let stored_messages = drain(&mut resumed, 700)
            .await
            .iter()
            .filter(|e| matches!(e.kind, Some(Kind::Message(_))))
            .count();
        assert_eq!(
            texts.len(),
            stored_messages,
            "transcript {texts:?} and the replayed messages differ"
        );

        // Typing stopped shows too (the second of the agent's burst).
        assert_eq!(
            giulia.call("t2", agent_types(&cid, false)).await,
            Reply::Ack
        );
        let stopped = stream_sees_typing(&mut stream, 5)
            .await
            .expect("typing off");
        assert!(matches!(stopped.kind, Some(Kind::Typing(t)) if !t.typing));
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn typing_beyond_two_a_second_is_dropped_on_both_sides() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "bruno").await;
        let cid = chat.conversation_id.clone();

        // The customer: a burst of two goes through, the rest of a quick series is dropped
        // (answered forwarded=false, no error).
        let started = Instant::now();
        let mut answers = Vec::new();
        for i in 0..10 {
            answers.push(customer_types(&mut client, &chat, i % 2 == 0).await);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let forwarded = answers.iter().filter(|f| **f).count();
        assert!(answers[0] && answers[1], "the burst of two: {answers:?}");
        // Two per second after the burst, plus one for rounding.
        let allowed = 2 + (elapsed * 2.0).ceil() as usize + 1;
        assert!(
            forwarded < 10 && forwarded <= allowed,
            "{forwarded} of 10 forwarded in {elapsed:.2} s: {answers:?}"
        );
        assert_eq!(
            desk_typing_count(&mut giulia, &cid, 700).await,
            forwarded,
            "the desk shows exactly the forwarded ones"
        );
        // The limit recovers.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            customer_types(&mut client, &chat, false).await,
            "after a pause"
        );
        assert_eq!(desk_sees_typing(&mut giulia, &cid, 5).await, Some(false));

        // The agent: every command is acknowledged, only some reach the customer.
        let started = Instant::now();
        for i in 0..10 {
            assert_eq!(
                giulia
                    .call(&format!("t{i}"), agent_types(&cid, i % 2 == 0))
                    .await,
                Reply::Ack,
                "typing {i} is acknowledged even when dropped"
            );
        }
        let elapsed = started.elapsed().as_secs_f64();
        let shown = drain(&mut stream, 700)
            .await
            .iter()
            .filter(|e| matches!(e.kind, Some(Kind::Typing(_))))
            .count();
        let allowed = 2 + (elapsed * 2.0).ceil() as usize + 1;
        assert!(
            (2..10).contains(&shown) && shown <= allowed,
            "{shown} of 10 shown in {elapsed:.2} s"
        );
        drop((giulia, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn typing_with_nobody_serving_is_not_forwarded_and_bad_input_is_refused_like_a_message() {
    run(|| async {
        let node = start(config("")).await;
        let mut client = customer(&node).await;
        // Nobody is logged in: the conversation waits.
        let waiting = start_conversation(&mut client, "support", "it", "carla")
            .await
            .expect("start");
        assert!(
            !customer_types(&mut client, &waiting, true).await,
            "no agent: not forwarded"
        );

        // Unknown conversation, wrong token, missing or oversized id: the status a message
        // gets, and nothing changes.
        let unknown = StartConversationResponse {
            conversation_id: "no-such-conversation".into(),
            token: waiting.token.clone(),
            ..Default::default()
        };
        let wrong_token = StartConversationResponse {
            token: "wrong".into(),
            ..waiting.clone()
        };
        let no_id = StartConversationResponse {
            conversation_id: String::new(),
            ..waiting.clone()
        };
        let long_id = StartConversationResponse {
            conversation_id: "x".repeat(100_000),
            ..waiting.clone()
        };
        for (what, chat, code) in [
            ("unknown conversation", &unknown, Code::NotFound),
            ("wrong token", &wrong_token, Code::PermissionDenied),
            ("empty id", &no_id, Code::InvalidArgument),
            ("oversized id", &long_id, Code::InvalidArgument),
        ] {
            let typing = client
                .send_typing(typing_request(chat, true))
                .await
                .expect_err(what)
                .code();
            let message = client
                .send_message(SendMessageRequest {
                    conversation_id: chat.conversation_id.clone(),
                    token: chat.token.clone(),
                    message_id: format!("m-{what}"),
                    text: "ciao".into(),
                })
                .await
                .expect_err(what)
                .code();
            assert_eq!(typing, code, "{what}");
            assert_eq!(typing, message, "{what}: typing and a message differ");
        }

        // An agent who does not hold the conversation gets an error, and the customer sees
        // nothing.
        let mut stream = events(&mut client, &waiting, 0).await;
        let mut marco = login(&node, "marco", "pw").await.expect("marco");
        marco
            .set_status_and_wait(centralino_proto::v1::AgentStatus::Away)
            .await;
        let reply = marco
            .call("t1", agent_types(&waiting.conversation_id, true))
            .await;
        assert_eq!(reply.code(), "PERMISSION_DENIED", "{reply:?}");
        let reply = marco.call("t2", agent_types("", true)).await;
        assert_eq!(reply.code(), "INVALID_ARGUMENT", "{reply:?}");
        let seen = drain(&mut stream, 500).await;
        assert!(
            !seen.iter().any(|e| matches!(e.kind, Some(Kind::Typing(_)))),
            "{seen:?}"
        );

        // A closed conversation: not forwarded either, no error.
        let closed = start_conversation(&mut client, "support", "it", "dario")
            .await
            .expect("start");
        client
            .close_conversation(centralino_proto::v1::CloseConversationRequest {
                conversation_id: closed.conversation_id.clone(),
                token: closed.token.clone(),
            })
            .await
            .expect("close");
        match client.send_typing(typing_request(&closed, true)).await {
            Ok(r) => assert!(!r.into_inner().forwarded, "closed: not forwarded"),
            // Gone already (not lingering): as for a message.
            Err(s) => assert_eq!(s.code(), Code::NotFound, "{s}"),
        }
        drop((marco, client, stream));
        node.shutdown().await;
    });
}

#[test]
fn in_a_warm_transfer_the_customer_types_to_the_agent_holding_the_chat() {
    run(|| async {
        let node = start(config("")).await;
        let (mut giulia, mut client, chat, mut stream) = giulia_with_chat(&node, "elena").await;
        let cid = chat.conversation_id.clone();
        let mut marco = login(&node, "marco", "pw").await.expect("marco");
        let transfer = agent_command::Kind::Transfer(Transfer {
            conversation_id: cid.clone(),
            target: Some(Target::AgentId("marco".into())),
            reason: "expert".into(),
            warm: true,
        });
        assert_eq!(giulia.call("w1", transfer).await, Reply::Ack);
        let offer = marco.offer(5).await.expect("marco is offered the transfer");

        // Until marco accepts, giulia holds the chat: she sees the customer typing, and her
        // typing reaches the customer.
        assert!(customer_types(&mut client, &chat, true).await);
        assert_eq!(desk_sees_typing(&mut giulia, &cid, 5).await, Some(true));
        assert_eq!(giulia.call("t1", agent_types(&cid, true)).await, Reply::Ack);
        let shown = stream_sees_typing(&mut stream, 5)
            .await
            .expect("giulia typing");
        assert!(matches!(shown.kind, Some(Kind::Typing(t)) if t.agent_display_name == "Giulia"));

        marco.accept(&offer).await;
        assert_eq!(
            giulia.ended(&cid, 5).await,
            Some(ConversationOutcome::Transferred as i32)
        );
        // Now marco's: the customer's typing reaches him, his shows with his name, and
        // giulia may no longer type into the chat.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(customer_types(&mut client, &chat, false).await);
        assert_eq!(desk_sees_typing(&mut marco, &cid, 5).await, Some(false));
        assert_eq!(marco.call("t2", agent_types(&cid, true)).await, Reply::Ack);
        let shown = stream_sees_typing(&mut stream, 5)
            .await
            .expect("marco typing");
        assert!(
            matches!(&shown.kind, Some(Kind::Typing(t)) if t.agent_display_name == "Marco"),
            "{shown:?}"
        );
        let reply = giulia.call("t3", agent_types(&cid, true)).await;
        assert_eq!(reply.code(), "PERMISSION_DENIED", "{reply:?}");
        drop((giulia, marco, client, stream));
        node.shutdown().await;
    });
}

fn etcd_config(endpoints: &[String], node: &str, prefix: &str) -> Config {
    let mut config = cluster_config(node, prefix);
    config.cluster.etcd_endpoints = endpoints.to_vec();
    config
}

async fn cluster_router(endpoints: &[String], node: &str, prefix: &str) -> ClusterRouter {
    clustered::start(etcd_config(endpoints, node, prefix))
        .await
        .expect("router starts")
}

async fn agent_node(endpoints: &[String], node: &str, prefix: &str) -> RunningAgentNode {
    cluster_node::start(agent_node_config(&etcd_config(endpoints, node, prefix)))
        .await
        .expect("agent-node starts")
}

#[test]
fn in_a_cluster_typing_crosses_routers_and_the_agent_node_both_ways() {
    run(|| async {
        let etcd = EtcdCluster::start(1)
            .await
            .expect("etcd (run scripts/ensure_etcd.sh)");
        let endpoints = etcd.endpoints();
        let prefix = format!("/test-{}", unique_id());
        let a = cluster_router(&endpoints, "router-a", &prefix).await;
        let b = cluster_router(&endpoints, "router-b", &prefix).await;
        let agents = agent_node(&endpoints, "agent-node-1", &prefix).await;
        settled(&a).await;
        settled(&b).await;
        split_settled(&a, &b).await;
        let mut giulia = login_at(agents.grpc_addr, "giulia").await.expect("login");

        let via_a = ConversationServiceClient::new(channel_at(a.grpc_addr).await);
        let chat = retrying(|| {
            let mut c = via_a.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-typing").await }
        })
        .await;
        let offer = giulia.offer(30).await.expect("offer reaches the agent");
        assert_eq!(offer.conversation_id, chat.conversation_id);
        giulia.accept(&offer).await;
        let cid = chat.conversation_id.clone();

        // The customer talks to the router that does NOT own the conversation: the call is
        // forwarded to the owner, whose actor tells the agent-node.
        let owner_is_a = a.router.conversation(&cid).is_some();
        let other = if owner_is_a { &b } else { &a };
        let owner = if owner_is_a { &a } else { &b };
        assert!(owner.router.conversation(&cid).is_some());
        assert!(other.router.conversation(&cid).is_none(), "one owner");
        let mut via_other = ConversationServiceClient::new(channel_at(other.grpc_addr).await);
        let mut stream = events(&mut via_other, &chat, 0).await;
        let forwarded = retrying(|| {
            let mut c = via_other.clone();
            let request = typing_request(&chat, true);
            async move { c.send_typing(request).await }
        })
        .await
        .into_inner()
        .forwarded;
        assert!(forwarded, "the customer's typing is forwarded");
        assert_eq!(
            desk_sees_typing(&mut giulia, &cid, 10).await,
            Some(true),
            "the agent on the agent-node sees the customer typing"
        );

        // The agent types at the agent-node: over the internal Link to a router (and on to
        // the owner), shown on the customer's stream read through the other router.
        send_text(&mut via_other, &chat, "m1", "ciao")
            .await
            .expect("message");
        let message_id = next_event(&mut stream, 10, |e| match &e.kind {
            Some(Kind::Message(m)) if m.sender == Sender::Customer as i32 => Some(e.event_id),
            _ => None,
        })
        .await
        .expect("the customer's message");
        assert_eq!(giulia.call("t1", agent_types(&cid, true)).await, Reply::Ack);
        let typing = stream_sees_typing(&mut stream, 10)
            .await
            .expect("the agent's typing crosses to the customer");
        assert_eq!(typing.event_id, 0);
        assert!(
            matches!(&typing.kind, Some(Kind::Typing(t)) if t.typing && t.agent_display_name == "Giulia"),
            "{typing:?}"
        );
        giulia.say(&cid, "a1", "buongiorno").await;
        let reply_id = next_event(&mut stream, 10, |e| match &e.kind {
            Some(Kind::Message(m)) if m.text == "buongiorno" => Some(e.event_id),
            _ => None,
        })
        .await
        .expect("the agent's message");
        assert_eq!(reply_id, message_id + 1, "typing took no event id");
        let texts = {
            let mut admin = centralino_proto::v1::admin_client::AdminClient::new(
                channel_at(owner.grpc_addr).await,
            );
            admin
                .get_transcript(authed(centralino_proto::v1::GetTranscriptRequest {
                    conversation_id: cid.clone(),
                }))
                .await
                .expect("transcript")
                .into_inner()
                .messages
                .into_iter()
                .map(|m| m.text)
                .collect::<Vec<_>>()
        };
        assert!(
            texts.iter().any(|t| t == "ciao") && texts.iter().any(|t| t == "buongiorno"),
            "{texts:?}"
        );
        assert!(
            texts.iter().all(|t| !t.is_empty()),
            "nothing empty (a typing) in the transcript: {texts:?}"
        );

        giulia.close_and_wait(&cid).await;
        drop((giulia, via_other, stream));
        agents.shutdown().await;
        a.stop().await;
        b.stop().await;
        drop(etcd);
    });
}

fn tls_channel(addr: SocketAddr, tls: &ClientTls) -> Channel {
    channel_with(&addr.to_string(), Some(tls)).expect("channel")
}

fn as_peer(role: PeerRole, id: &str, server: PeerRole) -> ClientTls {
    peer_tls(pki(), Some(PeerIdentity::new(role, id)), server)
}

/// The agent's typing as an agent-node sends it to a router.
fn link_typing(conversation_id: &str, agent_id: &str) -> LinkRequest {
    LinkRequest {
        conversation_id: conversation_id.into(),
        agent_id: agent_id.into(),
        forwarded: false,
        call: Some(link_request::Call::Typing(LinkTyping { typing: true })),
    }
}

#[test]
fn on_the_internal_plane_only_the_agents_own_node_carries_their_typing() {
    run(|| async {
        const PREFIX: &str = "/typing-internal";
        let kv = Arc::new(MemoryKv::new());
        let router = clustered::start_with(cluster_config("router-a", PREFIX), kv.clone())
            .await
            .expect("router starts");
        let node = |id: &'static str| {
            let kv = kv.clone();
            async move {
                cluster_node::start_with(agent_node_config(&cluster_config(id, PREFIX)), kv)
                    .await
                    .expect("agent-node starts")
            }
        };
        let node_1 = node("agent-node-1").await;
        let node_2 = node("agent-node-2").await;
        settled(&router).await;
        let mut giulia = login_at(node_1.grpc_addr, "giulia").await.expect("login");
        let customers = ConversationServiceClient::new(channel_at(router.grpc_addr).await);
        let chat = retrying(|| {
            let mut client = customers.clone();
            async move { start_conversation(&mut client, "sales", "it", "cust-1").await }
        })
        .await;
        let offer = giulia.offer(30).await.expect("offer");
        giulia.accept(&offer).await;
        let cid = chat.conversation_id.clone();
        let mut stream = events(&mut customers.clone(), &chat, 0).await;

        // Another agent-node (a valid certificate of the cluster) forging giulia's typing,
        // and for an agent nobody is logged in as: refused, the customer sees nothing.
        let forger = as_peer(PeerRole::AgentNode, "agent-node-2", PeerRole::Router);
        let mut forged = RouterInternalClient::new(tls_channel(router.internal_addr, &forger));
        for agent in ["giulia", "marco"] {
            let refused = forged.link(link_typing(&cid, agent)).await;
            assert_eq!(
                refused.err().map(|s| s.code()),
                Some(Code::PermissionDenied),
                "{agent}"
            );
        }
        let seen = drain(&mut stream, 500).await;
        assert!(
            !seen.iter().any(|e| matches!(e.kind, Some(Kind::Typing(_)))),
            "a forged typing reached the customer: {seen:?}"
        );

        // Only routers show a customer's typing on an agent-node; a router's call for an
        // agent not logged in there, or a conversation the agent does not hold, is refused.
        let typing_for = |agent: &str, conversation: &str| CustomerTypingRequest {
            agent_id: agent.into(),
            conversation_id: conversation.into(),
            typing: true,
        };
        let node_cert = as_peer(PeerRole::AgentNode, "agent-node-2", PeerRole::AgentNode);
        let refused = AgentNodeInternalClient::new(tls_channel(node_1.internal_addr, &node_cert))
            .customer_typing(typing_for("giulia", &cid))
            .await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let router_cert = as_peer(PeerRole::Router, "router-b", PeerRole::AgentNode);
        let elsewhere =
            AgentNodeInternalClient::new(tls_channel(node_2.internal_addr, &router_cert))
                .customer_typing(typing_for("giulia", &cid))
                .await;
        assert_eq!(elsewhere.err().map(|s| s.code()), Some(Code::NotFound));
        let mut on_node_1 =
            AgentNodeInternalClient::new(tls_channel(node_1.internal_addr, &router_cert));
        let not_held = on_node_1
            .customer_typing(typing_for("giulia", "someone-elses"))
            .await;
        assert_eq!(
            not_held.err().map(|s| s.code()),
            Some(Code::FailedPrecondition)
        );
        let seen = giulia.collect_for(500).await;
        assert!(
            !seen
                .iter()
                .any(|k| matches!(k, agent_event::Kind::CustomerTyping(_))),
            "{seen:?}"
        );

        // The genuine paths work: giulia's node carries her typing, a router shows the
        // customer's on her desk.
        let holder = as_peer(PeerRole::AgentNode, "agent-node-1", PeerRole::Router);
        RouterInternalClient::new(tls_channel(router.internal_addr, &holder))
            .link(link_typing(&cid, "giulia"))
            .await
            .expect("the holder's node carries her typing");
        let typing = stream_sees_typing(&mut stream, 5).await.expect("shown");
        assert_eq!(typing.event_id, 0);
        on_node_1
            .customer_typing(typing_for("giulia", &cid))
            .await
            .expect("a router shows the customer's typing");
        assert_eq!(desk_sees_typing(&mut giulia, &cid, 5).await, Some(true));
        drop((giulia, stream, node_2));
        node_1.shutdown().await;
        router.stop().await;
    });
}
