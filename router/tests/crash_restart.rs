//! `kill -9` of a standalone node: queued and assigned conversations, transcripts and
//! customer profiles survive, because every acknowledged change was committed first.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use centralino_proto::v1::agent_desk_client::AgentDeskClient;
use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    agent_command, agent_event, conversation_event, AcceptOffer, AgentCommand, AgentEvent, Login,
    SendMessageRequest, StartConversationRequest, StreamEventsRequest,
};
use centralino_router::config::PLACEHOLDER_SHOP_SECRET;
use centralino_router::identity::customer_token;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_node(dir: &std::path::Path, port: u16) -> Node {
    #[allow(clippy::zombie_processes)] // waited for in Node::drop
    let child = Command::new(env!("CARGO_BIN_EXE_router"))
        .args([
            "--standalone",
            "--dev",
            "--grpc-addr",
            &format!("127.0.0.1:{port}"),
            "--metrics-addr",
            "",
        ])
        .arg("--data-dir")
        .arg(dir)
        // The built-in example configuration holds placeholder secrets.
        .env("CENTRALINO_NODE__DEV_MODE", "true")
        .env(
            "RUST_LOG",
            std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(if std::env::var("NODE_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("router binary starts");
    let addr = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if Channel::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
            .is_ok()
        {
            return Node { child, addr };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("router did not start listening on {addr}");
}

async fn desk(
    addr: &str,
    agent: &str,
) -> (mpsc::Sender<AgentCommand>, tonic::Streaming<AgentEvent>) {
    let mut client = AgentDeskClient::connect(addr.to_string()).await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Login(Login {
            agent_id: agent.into(),
            password: format!("{agent}-pw"),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let events = client
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, events)
}

async fn next_agent_event(events: &mut tonic::Streaming<AgentEvent>) -> agent_event::Kind {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("agent event in time")
        .expect("stream open")
        .expect("event")
        .kind
        .expect("kind")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_and_assigned_conversations_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = spawn_node(dir.path(), port).await;
    let mut customers = ConversationServiceClient::connect(node.addr.clone())
        .await
        .unwrap();
    let start = |customer: &str| StartConversationRequest {
        department: "sales".into(),
        language: "it".into(),
        customer_id: customer.into(),
        display_name: "Anna".into(),
        identity_token: customer_token(PLACEHOLDER_SHOP_SECRET, customer, 3600)
            .expect("the example's shop secret is valid"),
        ..Default::default()
    };
    let a = customers
        .start_conversation(start("anna"))
        .await
        .unwrap()
        .into_inner();
    let (tx, mut events) = desk(&node.addr, "ava").await;
    let offer = loop {
        if let agent_event::Kind::Offer(o) = next_agent_event(&mut events).await {
            break o;
        }
    };
    assert_eq!(offer.conversation_id, a.conversation_id);
    tx.send(AgentCommand {
        request_id: String::new(),
        kind: Some(agent_command::Kind::Accept(AcceptOffer {
            reservation_id: offer.reservation_id,
        })),
    })
    .await
    .unwrap();
    loop {
        if let agent_event::Kind::Assigned(_) = next_agent_event(&mut events).await {
            break;
        }
    }
    customers
        .send_message(SendMessageRequest {
            conversation_id: a.conversation_id.clone(),
            token: a.token.clone(),
            message_id: "m-1".into(),
            text: "il pacco non è arrivato".into(),
        })
        .await
        .unwrap();
    // A second conversation stays queued: giulia logs out first.
    drop(tx);
    drop(events);
    let b = customers
        .start_conversation(start("bruno"))
        .await
        .unwrap()
        .into_inner();

    // kill -9
    drop(customers);
    let mut node = node;
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    drop(node);

    let node = spawn_node(dir.path(), port).await;
    let mut customers = ConversationServiceClient::connect(node.addr.clone())
        .await
        .unwrap();
    let mut stream = customers
        .stream_events(StreamEventsRequest {
            conversation_id: a.conversation_id.clone(),
            token: a.token.clone(),
            after_event_id: 0,
        })
        .await
        .expect("assigned conversation is live again")
        .into_inner();
    let mut saw_message = false;
    let mut saw_assigned = false;
    while let Ok(Some(Ok(event))) =
        tokio::time::timeout(Duration::from_secs(2), stream.next()).await
    {
        match event.kind {
            Some(conversation_event::Kind::Message(m)) if m.text == "il pacco non è arrivato" => {
                saw_message = true
            }
            Some(conversation_event::Kind::Assigned(x)) if x.agent_id == "ava" => {
                saw_assigned = true
            }
            _ => {}
        }
        if saw_message && saw_assigned {
            break;
        }
    }
    assert!(saw_message, "the acknowledged message survived");
    assert!(saw_assigned, "the conversation is still assigned to ava");

    let (_tx, mut events) = desk(&node.addr, "ava").await;
    let logged_in = loop {
        if let agent_event::Kind::LoggedIn(l) = next_agent_event(&mut events).await {
            break l;
        }
    };
    assert_eq!(
        logged_in.conversation_ids,
        vec![a.conversation_id.clone()],
        "ava gets her conversation back"
    );
    let offer = loop {
        if let agent_event::Kind::Offer(o) = next_agent_event(&mut events).await {
            break o;
        }
    };
    assert_eq!(
        offer.conversation_id, b.conversation_id,
        "the queued conversation is offered after the restart"
    );

    let again = customers
        .start_conversation(start("anna"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.returning_customer, "the customer profile survived");
}
