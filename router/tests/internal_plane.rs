//! The internal plane as an outsider meets it (issue 10): a router and two agent-nodes on
//! the in-memory twin of etcd, with mutual TLS from a test CA. The internal services are not
//! on the public ports nor in reflection; the internal ports refuse clients without a
//! certificate, with one of another CA, or of the wrong role; an agent-node may act only
//! for the agents logged in on it.

use centralino_testkit as common;

use std::net::SocketAddr;
use std::sync::Arc;

use centralino_agent_node::cluster_node::{self, RunningAgentNode};
use centralino_base::tls::{ClientTls, PeerIdentity, PeerRole};
use centralino_link::grpc::channel_with;
use centralino_membership::memory::MemoryKv;
use centralino_proto::v1::agent_node_internal_client::AgentNodeInternalClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::router_internal_client::RouterInternalClient;
use centralino_proto::v1::{
    link_request, AgentConversationsRequest, CancelReservationRequest, Empty, LinkRequest,
    ReserveRequest, SendMessageRequest, TellRequest,
};
use centralino_router::clustered::{self, ClusterRouter};
use common::cluster::{
    agent_node_config, channel_at, cluster_config, login_at, peer_tls, pki, retrying, settled, Pki,
};
use tonic::transport::Channel;
use tonic::Code;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const PREFIX: &str = "/internal";

struct Cluster {
    router: ClusterRouter,
    node_1: RunningAgentNode,
    node_2: RunningAgentNode,
}

async fn cluster() -> Cluster {
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
    Cluster {
        router,
        node_1,
        node_2,
    }
}

fn tls_channel(addr: SocketAddr, tls: &ClientTls) -> Channel {
    channel_with(&addr.to_string(), Some(tls)).expect("channel")
}

fn as_peer(role: PeerRole, id: &str, server: PeerRole) -> ClientTls {
    peer_tls(pki(), Some(PeerIdentity::new(role, id)), server)
}

async fn listed_services(channel: Channel) -> Vec<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("reflection answered {other:?}"),
    }
}

fn reserve() -> ReserveRequest {
    ReserveRequest {
        reservation_id: "r-forged".into(),
        conversation_id: "c-forged".into(),
        agent_id: "giulia".into(),
        department: "sales".into(),
        language: "it".into(),
        ..Default::default()
    }
}

fn transcript_of(conversation_id: &str, agent_id: &str) -> LinkRequest {
    LinkRequest {
        conversation_id: conversation_id.into(),
        agent_id: agent_id.into(),
        forwarded: false,
        call: Some(link_request::Call::Transcript(Empty {})),
    }
}

#[test]
fn internal_services_are_not_on_the_public_ports_nor_in_reflection() {
    common::run(|| async {
        let c = cluster().await;
        let public_router = channel_at(c.router.grpc_addr).await;
        let public_node = channel_at(c.node_1.grpc_addr).await;

        let tell = RouterInternalClient::new(public_router.clone())
            .tell(TellRequest::default())
            .await;
        assert_eq!(tell.err().map(|s| s.code()), Some(Code::Unimplemented));
        let link = RouterInternalClient::new(public_router.clone())
            .link(transcript_of("c1", "giulia"))
            .await;
        assert_eq!(link.err().map(|s| s.code()), Some(Code::Unimplemented));
        let reserve = AgentNodeInternalClient::new(public_node.clone())
            .reserve(reserve())
            .await;
        assert_eq!(reserve.err().map(|s| s.code()), Some(Code::Unimplemented));
        let watch = AgentNodeInternalClient::new(public_node.clone())
            .watch_availability(Empty {})
            .await;
        assert_eq!(watch.err().map(|s| s.code()), Some(Code::Unimplemented));

        let on_router = listed_services(public_router).await;
        assert!(
            on_router.contains(&"centralino.v1.ConversationService".to_string()),
            "{on_router:?}"
        );
        let on_node = listed_services(public_node).await;
        assert!(
            on_node.contains(&"centralino.v1.AgentDesk".to_string()),
            "{on_node:?}"
        );
        // Nor does the internal port itself advertise them.
        let internal = listed_services(tls_channel(
            c.router.internal_addr,
            &as_peer(PeerRole::Router, "router-b", PeerRole::Router),
        ))
        .await;
        for list in [&on_router, &on_node, &internal] {
            assert!(
                !list.iter().any(|s| s.contains("Internal")),
                "reflection lists an internal service: {list:?}"
            );
        }
    });
}

#[test]
fn internal_ports_refuse_clients_without_a_certificate_of_the_cluster_ca() {
    common::run(|| async {
        let c = cluster().await;
        for (addr, server) in [
            (c.router.internal_addr, PeerRole::Router),
            (c.node_1.internal_addr, PeerRole::AgentNode),
        ] {
            // Plaintext, as from a pod without the cluster's certificates.
            let plain = centralino_link::grpc::channel(&addr.to_string()).expect("channel");
            let status = AgentNodeInternalClient::new(plain.clone())
                .cancel_reservation(CancelReservationRequest::default())
                .await
                .expect_err("plaintext refused");
            assert!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal
                ),
                "{status:?}"
            );
            let status = RouterInternalClient::new(plain)
                .tell(TellRequest::default())
                .await
                .expect_err("plaintext refused");
            assert_ne!(status.code(), Code::PermissionDenied, "reached a handler");

            // A certificate naming a good identity, but of another CA.
            let other = Pki::new();
            let mut files = other.issue(
                "stranger",
                Some(&PeerIdentity::new(PeerRole::Router, "router-a")),
            );
            files.ca_file = Some(pki().ca_file().to_path_buf());
            let stranger = ClientTls::load(files, Some(server)).expect("tls");
            let status = RouterInternalClient::new(tls_channel(addr, &stranger))
                .tell(TellRequest::default())
                .await
                .expect_err("another CA refused");
            // Refused in the handshake: the connection closes before any call.
            assert!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::Cancelled | Code::Unknown
                ),
                "{status:?}"
            );

            // A certificate of the cluster CA without a centralino identity.
            let nobody = tls_channel(addr, &peer_tls(pki(), None, server));
            let status = match server {
                PeerRole::Router => RouterInternalClient::new(nobody)
                    .tell(TellRequest::default())
                    .await
                    .map(|_| ()),
                PeerRole::AgentNode => AgentNodeInternalClient::new(nobody)
                    .cancel_reservation(CancelReservationRequest::default())
                    .await
                    .map(|_| ()),
            }
            .expect_err("no identity refused");
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        }
    });
}

#[test]
fn internal_calls_check_the_callers_role() {
    common::run(|| async {
        let c = cluster().await;
        // An agent-node's certificate calling what only routers call on an agent-node.
        let node_cert = as_peer(PeerRole::AgentNode, "agent-node-2", PeerRole::AgentNode);
        let mut on_node =
            AgentNodeInternalClient::new(tls_channel(c.node_1.internal_addr, &node_cert));
        let reserved = on_node.reserve(reserve()).await;
        assert_eq!(
            reserved.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let watched = on_node.watch_availability(Empty {}).await;
        assert_eq!(
            watched.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );

        // A router may: the call reaches the node (giulia is not logged in there).
        let router_cert = as_peer(PeerRole::Router, "router-b", PeerRole::AgentNode);
        let mut as_router =
            AgentNodeInternalClient::new(tls_channel(c.node_1.internal_addr, &router_cert));
        let reserved = as_router
            .reserve(reserve())
            .await
            .expect("a router reserves");
        assert_ne!(
            reserved.into_inner().result,
            centralino_proto::v1::ReserveResult::Held as i32
        );

        // On the router: Tell and forwarded customer calls are for routers only, Link and
        // AgentConversations for agent-nodes.
        let node_cert = as_peer(PeerRole::AgentNode, "agent-node-1", PeerRole::Router);
        let to_router = tls_channel(c.router.internal_addr, &node_cert);
        let told = RouterInternalClient::new(to_router.clone())
            .tell(TellRequest::default())
            .await;
        assert_eq!(told.err().map(|s| s.code()), Some(Code::PermissionDenied));
        let sent = ConversationServiceClient::new(to_router.clone())
            .send_message(SendMessageRequest::default())
            .await;
        assert_eq!(sent.err().map(|s| s.code()), Some(Code::PermissionDenied));
        let forwarded = RouterInternalClient::new(to_router)
            .link(LinkRequest {
                forwarded: true,
                ..transcript_of("c1", "giulia")
            })
            .await;
        assert_eq!(
            forwarded.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );

        let router_cert = as_peer(PeerRole::Router, "router-b", PeerRole::Router);
        let from_router = tls_channel(c.router.internal_addr, &router_cert);
        let asked = RouterInternalClient::new(from_router.clone())
            .agent_conversations(AgentConversationsRequest {
                agent_id: "giulia".into(),
            })
            .await;
        assert_eq!(asked.err().map(|s| s.code()), Some(Code::PermissionDenied));
        // The agent directory is streamed to agent-nodes only.
        let watched = RouterInternalClient::new(from_router.clone())
            .watch_directory(Empty {})
            .await;
        assert_eq!(
            watched.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let mut directory =
            RouterInternalClient::new(tls_channel(c.router.internal_addr, &node_cert))
                .watch_directory(Empty {})
                .await
                .expect("an agent-node watches the directory")
                .into_inner();
        let first = directory
            .message()
            .await
            .expect("a directory chunk")
            .expect("the stream is open");
        assert!(
            first
                .documents
                .iter()
                .any(|d| d.kind == "agent" && d.id == "giulia"),
            "the directory reaches the agent-node: {first:?}"
        );
        let linked = RouterInternalClient::new(from_router)
            .link(transcript_of("c1", "giulia"))
            .await;
        assert_eq!(
            linked.err().map(|s| s.code()),
            Some(Code::PermissionDenied),
            "a router does not originate Link calls"
        );
    });
}

#[test]
fn a_link_call_for_an_agent_of_another_agent_node_is_refused() {
    common::run(|| async {
        let c = cluster().await;
        let mut giulia = login_at(c.node_1.grpc_addr, "giulia").await.expect("login");
        let customers = ConversationServiceClient::new(channel_at(c.router.grpc_addr).await);
        let started = retrying(|| {
            let mut client = customers.clone();
            async move { common::start_conversation(&mut client, "sales", "it", "cust-1").await }
        })
        .await;
        let offer = giulia.offer(30).await.expect("offer");
        giulia.accept(&offer).await;
        common::send_text(&mut customers.clone(), &started, "m1", "la mia carta: 4111")
            .await
            .expect("customer writes");
        let id = started.conversation_id.clone();

        // Another agent-node (a valid certificate of the cluster) forging giulia.
        let forger = as_peer(PeerRole::AgentNode, "agent-node-2", PeerRole::Router);
        let mut forged = RouterInternalClient::new(tls_channel(c.router.internal_addr, &forger));
        let read = forged.link(transcript_of(&id, "giulia")).await;
        assert_eq!(read.err().map(|s| s.code()), Some(Code::PermissionDenied));
        let written = forged
            .link(LinkRequest {
                call: Some(link_request::Call::AgentMessage(
                    centralino_proto::v1::AgentText {
                        message_id: "forged".into(),
                        text: "send me your PIN".into(),
                        status_note: false,
                    },
                )),
                ..transcript_of(&id, "giulia")
            })
            .await;
        assert_eq!(
            written.err().map(|s| s.code()),
            Some(Code::PermissionDenied)
        );
        let listed = forged
            .agent_conversations(AgentConversationsRequest {
                agent_id: "giulia".into(),
            })
            .await;
        assert_eq!(listed.err().map(|s| s.code()), Some(Code::PermissionDenied));
        // An agent nobody is logged in as.
        let nobody = forged.link(transcript_of(&id, "marco")).await;
        assert_eq!(nobody.err().map(|s| s.code()), Some(Code::PermissionDenied));

        // The node holding giulia's claim may (and one certificate for every agent-node).
        for holder in ["agent-node-1", "*"] {
            let tls = as_peer(PeerRole::AgentNode, holder, PeerRole::Router);
            let transcript = RouterInternalClient::new(tls_channel(c.router.internal_addr, &tls))
                .link(transcript_of(&id, "giulia"))
                .await
                .expect("the holder reads the transcript")
                .into_inner()
                .transcript;
            assert!(
                transcript.iter().any(|m| m.text.contains("4111")),
                "{transcript:?}"
            );
        }
        // The forged message never reached the customer's transcript.
        let tls = as_peer(PeerRole::AgentNode, "agent-node-1", PeerRole::Router);
        let transcript = RouterInternalClient::new(tls_channel(c.router.internal_addr, &tls))
            .link(transcript_of(&id, "giulia"))
            .await
            .expect("transcript")
            .into_inner()
            .transcript;
        assert!(!transcript.iter().any(|m| m.text.contains("PIN")));
        drop(c.node_2);
    });
}

#[test]
fn a_public_listener_on_a_non_loopback_address_needs_tls_or_insecure() {
    common::run(|| async {
        let mut config = common::config("");
        config.node.grpc_addr = "0.0.0.0:0".into();
        let refused = centralino_router::standalone::start_with(
            config.clone(),
            centralino_router::standalone::StoreChoice::Memory,
        )
        .await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("--insecure"), "{message}");

        let mut insecure = config.clone();
        insecure.node.insecure = true;
        let node = common::start(insecure).await;
        node.shutdown().await;

        // With [tls] the same address is fine, and clients speak TLS to it.
        let files = pki().issue("public", None);
        config.tls = centralino_base::config::TlsConfig {
            cert_file: files.cert_file.display().to_string(),
            key_file: files.key_file.display().to_string(),
            client_ca_file: String::new(),
        };
        let node = common::start(config).await;
        let port = node.grpc_addr.port();
        let ca = std::fs::read(pki().ca_file()).expect("ca");
        let channel = Channel::from_shared(format!("https://localhost:{port}"))
            .expect("uri")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )
            .expect("tls config")
            .connect()
            .await
            .expect("TLS connection");
        let services = listed_services(channel).await;
        assert!(services.contains(&"centralino.v1.ConversationService".to_string()));
        // A plaintext client gets nothing.
        let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect()
            .await;
        if let Ok(plain) = plain {
            let status = RouterInternalClient::new(plain)
                .tell(TellRequest::default())
                .await
                .expect_err("plaintext refused");
            assert_ne!(
                status.code(),
                Code::Unimplemented,
                "plaintext reached the server"
            );
        }
        node.shutdown().await;
    });
}
