//! Memory stays bounded under a flood (issue 10): a real node process (the `router` binary)
//! is measured (VmRSS from /proc) before and after one client's flood of start/close pairs,
//! and with 400 event streams that never read on conversations with long transcripts;
//! after the conversations close the memory comes back near the baseline. The node's live
//! cap (1,000) is far below the flood's pairs: closed conversations hold no live place.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use centralino_proto::v1::conversation_service_client::ConversationServiceClient;
use centralino_proto::v1::{
    CloseConversationRequest, SendMessageRequest, StartConversationRequest,
    StartConversationResponse, StreamEventsRequest,
};
use tonic::transport::Channel;

/// Pairs of start and close in the flood.
const FLOOD_PAIRS: usize = 10_000;
/// Concurrent flooding tasks.
const FLOOD_TASKS: usize = 32;
/// Conversations with non-reading streams, and streams per conversation (the cap).
const STREAMED: usize = 100;
const STREAMS_EACH: usize = 4;
/// Messages of ~4 KB in each streamed conversation.
const MESSAGES: usize = 20;
/// Growth allowed while the flood's conversations and the streams live (MB).
const MAX_GROWTH_MB: u64 = 150;
/// Growth allowed once everything closed (MB).
const MAX_LEFT_MB: u64 = 60;
/// Growth allowed by a second flood after the first (MB).
const MAX_SECOND_FLOOD_MB: u64 = 20;

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

impl Node {
    fn rss_mb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kb / 1024
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }
}

async fn spawn_node(dir: &std::path::Path) -> Node {
    let port = centralino_testkit::free_port();
    #[allow(clippy::zombie_processes)] // waited for in Node::drop
    let child = Command::new(env!("CARGO_BIN_EXE_router"))
        .args([
            "--standalone",
            "--dev", // the built-in example configuration's secrets are placeholders
            "--grpc-addr",
            &format!("127.0.0.1:{port}"),
            "--metrics-addr",
            "",
        ])
        .arg("--data-dir")
        .arg(dir)
        // The flood comes from one address: rate limits off, so that every start is
        // admitted and what is measured is the memory of admitted conversations.
        .env("CENTRALINO_LIMITS__STARTS_PER_MINUTE_PER_ADDR", "0")
        .env("CENTRALINO_LIMITS__STARTS_PER_MINUTE_PER_CUSTOMER", "0")
        .env("CENTRALINO_LIMITS__MESSAGES_PER_MINUTE_PER_ADDR", "0")
        .env(
            "CENTRALINO_LIMITS__MESSAGES_PER_MINUTE_PER_CONVERSATION",
            "0",
        )
        // Far fewer live places than the flood's pairs: closed conversations hold none.
        // Abandoned ones linger 2 s (the cap on lingering ones is tested in limits.rs).
        .env("CENTRALINO_LIMITS__MAX_LIVE_CONVERSATIONS", "1000")
        .env("CENTRALINO_LIMITS__CLOSED_LINGER_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("router binary starts");
    let addr = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(c) = Channel::from_shared(addr.clone()).unwrap().connect().await {
            drop(c);
            return Node { child, addr };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("router did not start listening on {addr}");
}

async fn start(
    client: &mut ConversationServiceClient<Channel>,
    customer: String,
) -> StartConversationResponse {
    client
        .start_conversation(StartConversationRequest {
            department: "support".to_string(),
            language: "it".to_string(),
            customer_id: customer,
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner()
}

async fn close(client: &mut ConversationServiceClient<Channel>, c: &StartConversationResponse) {
    client
        .close_conversation(CloseConversationRequest {
            conversation_id: c.conversation_id.clone(),
            token: c.token.clone(),
        })
        .await
        .expect("close");
}

/// Waits until the node's RSS stops falling (or `secs` pass) and returns it.
async fn settled_rss(node: &Node, secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = node.rss_mb();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = node.rss_mb();
        if now >= last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_and_non_reading_streams_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(dir.path()).await;
    let channel = node.channel().await;
    // Warm up (first allocations of the runtime, the store, the queues).
    let mut client = ConversationServiceClient::new(channel.clone());
    for i in 0..200 {
        let c = start(&mut client, format!("warm-{i}")).await;
        close(&mut client, &c).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = node.rss_mb();

    // One client's flood of start/close pairs.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..FLOOD_TASKS {
        let mut client = ConversationServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            for i in (t..FLOOD_PAIRS).step_by(FLOOD_TASKS) {
                let c = start(&mut client, format!("flood-{i}")).await;
                close(&mut client, &c).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let after_flood = node.rss_mb();
    // Real customers are still admitted after the flood.
    let real = start(&mut client, "real-customer".to_string()).await;

    // 400 streams that never read, 4 per conversation (the per-token cap), 16 per
    // connection (the per-connection cap), on conversations with ~80 KB transcripts.
    let text = "x".repeat(4000);
    let mut conversations = Vec::new();
    for i in 0..STREAMED {
        let c = start(&mut client, format!("streamed-{i}")).await;
        for m in 0..MESSAGES {
            client
                .send_message(SendMessageRequest {
                    conversation_id: c.conversation_id.clone(),
                    token: c.token.clone(),
                    message_id: format!("m{m}"),
                    text: text.clone(),
                })
                .await
                .expect("send");
        }
        conversations.push(c);
    }
    let mut streams = Vec::new();
    let mut connection = ConversationServiceClient::new(node.channel().await);
    for (n, (c, _)) in conversations
        .iter()
        .flat_map(|c| std::iter::repeat_n(c, STREAMS_EACH).zip(0..))
        .enumerate()
    {
        if n % 16 == 0 {
            connection = ConversationServiceClient::new(node.channel().await);
        }
        let stream = connection
            .stream_events(StreamEventsRequest {
                conversation_id: c.conversation_id.clone(),
                token: c.token.clone(),
                after_event_id: 0,
            })
            .await
            .expect("stream")
            .into_inner();
        streams.push(stream);
    }
    // A fifth stream on one token is refused.
    let refused = connection
        .stream_events(StreamEventsRequest {
            conversation_id: conversations[0].conversation_id.clone(),
            token: conversations[0].token.clone(),
            after_event_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_streams = node.rss_mb();

    // Everything closes: the streams end, the conversations stop lingering.
    for c in &conversations {
        close(&mut client, c).await;
    }
    close(&mut client, &real).await;
    drop(streams);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = settled_rss(&node, 20).await;
    // A second flood of the same size finds the memory the first one left: nothing
    // accumulates (what stays above the baseline is the allocator's and the store's cache).
    let mut tasks = Vec::new();
    for t in 0..FLOOD_TASKS {
        let mut client = ConversationServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            for i in (t..FLOOD_PAIRS).step_by(FLOOD_TASKS) {
                let c = start(&mut client, format!("again-{i}")).await;
                close(&mut client, &c).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = settled_rss(&node, 20).await;
    eprintln!(
        "RSS MB: baseline {baseline}, after {FLOOD_PAIRS} start/close pairs ({flood_secs:.1} s) \
         {after_flood}, with {} non-reading streams {with_streams}, after close {after}, \
         after a second flood {again}",
        STREAMED * STREAMS_EACH
    );
    assert!(
        again < after + MAX_SECOND_FLOOD_MB,
        "a second flood grew the memory from {after} MB to {again} MB"
    );
    assert!(
        after_flood.max(with_streams) < baseline + MAX_GROWTH_MB,
        "grew from {baseline} MB to {} MB",
        after_flood.max(with_streams)
    );
    assert!(
        after < baseline + MAX_LEFT_MB,
        "{after} MB left after close (baseline {baseline} MB)"
    );
}
