//! The agent desk over HTTP (centralino-web's desk sessions): login, SSE events with
//! sequence ids and resume, commands, logout, the idle end and the session cap, driven
//! over plain HTTP/1.1 against a standalone node's own desk.

use centralino_testkit as common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use centralino_agent_node::gateway::AgentDeskService;
use centralino_base::config::WebConfig;
use centralino_base::server::{GrpcServer, Listener};
use centralino_proto::v1::{conversation_event, AgentStatus};
use centralino_router::standalone::RunningNode;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Serves the HTTP desk over `node`'s agents on a listener of its own; returns its address.
async fn serve_desk(node: &RunningNode, web: WebConfig) -> SocketAddr {
    let listener = Listener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr();
    let desk = AgentDeskService::new(node.agents.clone());
    GrpcServer::new()
        .web(Box::new(move |grpc| {
            centralino_web::Web::new(&web)
                .desk(Arc::new(desk))
                .wrap(grpc)
        }))
        .start(listener, futures::future::pending())
        .await
        .expect("web server starts");
    addr
}

/// Sends one HTTP/1.1 request on a connection of its own; returns the response.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> hyper::Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(value) => {
            request = request.header("content-type", "application/json");
            Bytes::from(value.to_string())
        }
        None => Bytes::new(),
    };
    sender
        .send_request(request.body(Full::new(body)).expect("request"))
        .await
        .expect("response")
}

/// One request answered with JSON: its status and body (Null when empty).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let response = send(addr, method, path, token, &[], body).await;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, value)
}

/// An open HTTP desk session.
struct Session {
    id: String,
    token: String,
    logged_in: Value,
}

async fn open(addr: SocketAddr, agent_id: &str, password: &str) -> Result<Session, (u16, Value)> {
    let (status, body) = call(
        addr,
        "POST",
        "/v1/agent/sessions",
        None,
        Some(json!({"agentId": agent_id, "password": password})),
    )
    .await;
    if status != 201 {
        return Err((status, body));
    }
    Ok(Session {
        id: body["sessionId"].as_str().expect("sessionId").to_string(),
        token: body["sessionToken"]
            .as_str()
            .expect("sessionToken")
            .to_string(),
        logged_in: body["loggedIn"].clone(),
    })
}

async fn command(addr: SocketAddr, session: &Session, body: Value) -> (u16, Value) {
    call(
        addr,
        "POST",
        &format!("/v1/agent/sessions/{}/commands", session.id),
        Some(&session.token),
        Some(body),
    )
    .await
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// The events of an SSE response, parsed as they arrive.
struct Events {
    body: Incoming,
    buffer: String,
}

impl Events {
    async fn open(addr: SocketAddr, session: &Session, last_event_id: Option<u64>) -> Self {
        let last = last_event_id.map(|id| id.to_string());
        let headers: Vec<(&str, &str)> = last
            .as_deref()
            .map(|id| vec![("last-event-id", id)])
            .unwrap_or_default();
        let response = send(
            addr,
            "GET",
            &format!("/v1/agent/sessions/{}/events", session.id),
            Some(&session.token),
            &headers,
            None,
        )
        .await;
        assert_eq!(response.status().as_u16(), 200, "the event stream opens");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event within `secs` (None: the stream ended or nothing came).
    async fn next(&mut self, secs: u64) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The next event of kind `kind` within `secs`, skipping others.
    async fn next_of(&mut self, kind: &str, secs: u64) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left.as_secs().max(1)).await?;
            if event.event == kind {
                return Some(event);
            }
        }
    }

    /// Whether the stream ends within `secs` (events before the end are returned).
    async fn until_end(&mut self, secs: u64) -> (bool, Vec<Sse>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                seen.extend(parse(&block));
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return (false, seen),
                Ok(None) | Ok(Some(Err(_))) => return (true, seen),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }
}

/// Parses one SSE block; None for a comment (keepalive).
fn parse(block: &str) -> Option<Sse> {
    let mut fields: HashMap<&str, String> = HashMap::new();
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        fields.insert(name, value.strip_prefix(' ').unwrap_or(value).to_string());
    }
    let data = fields.get("data")?;
    Some(Sse {
        id: fields.get("id").map(|id| id.parse().expect("numeric id")),
        event: fields.get("event").cloned().unwrap_or_default(),
        data: serde_json::from_str(data).expect("JSON data"),
    })
}

#[test]
fn a_browser_desk_takes_a_chat_resumes_and_logs_out() {
    run(|| async {
        let node = start(config("")).await;
        let web = serve_desk(&node, WebConfig::default()).await;

        let giulia = open(web, "giulia", "pw").await.expect("login");
        assert_eq!(giulia.logged_in["agentId"], "giulia");
        assert_eq!(giulia.id.len(), 32, "a 128-bit session id");
        assert_eq!(giulia.token.len(), 64, "a 256-bit session token");

        let mut events = Events::open(web, &giulia, None).await;
        let first = events.next(5).await.expect("the first event");
        assert_eq!(first.id, Some(1), "loggedIn is event 1");
        assert_eq!(first.event, "logged_in");
        assert_eq!(first.data["loggedIn"], giulia.logged_in);

        // A customer over gRPC is offered to the browser desk.
        let mut client = customer(&node).await;
        let started = start_conversation(&mut client, "support", "it", "c-web")
            .await
            .expect("start");
        let mut customer_events = common::events(&mut client, &started, 0).await;
        let mut seen = vec![first.clone()];
        let offer = loop {
            let event = events.next(5).await.expect("an offer");
            seen.push(event.clone());
            if event.event == "offer" {
                break event;
            }
        };
        assert_eq!(
            offer.data["offer"]["conversationId"],
            started.conversation_id
        );
        let reservation = offer.data["offer"]["reservationId"]
            .as_str()
            .expect("reservationId")
            .to_string();

        let (status, body) = command(
            web,
            &giulia,
            json!({"requestId": "r1", "accept": {"reservationId": reservation}}),
        )
        .await;
        assert_eq!((status, body), (202, json!({"accepted": true})));
        let mut acked = false;
        let mut assigned = false;
        while !(acked && assigned) {
            let event = events.next(5).await.expect("ack and assigned");
            acked |= event.event == "ack" && event.data["ack"]["requestId"] == "r1";
            assigned |= event.event == "assigned"
                && event.data["assigned"]["conversationId"] == started.conversation_id;
            seen.push(event);
        }

        let (status, _) = command(
            web,
            &giulia,
            json!({"requestId": "r2", "send": {
                "conversationId": started.conversation_id, "messageId": "m1", "text": "Ciao"}}),
        )
        .await;
        assert_eq!(status, 202);
        let mut ack_seq = None;
        let mut echoed = false;
        while ack_seq.is_none() || !echoed {
            let event = events.next(5).await.expect("ack and echo of the message");
            if event.event == "ack" && event.data["ack"]["requestId"] == "r2" {
                ack_seq = Some(event.data["ack"]["seq"].clone());
            }
            echoed |=
                event.event == "message" && event.data["message"]["message"]["text"] == "Ciao";
            seen.push(event);
        }
        let ack_seq = ack_seq.expect("seq");
        let seq: u64 = ack_seq
            .as_str()
            .map(|s| s.parse().expect("numeric seq"))
            .or_else(|| ack_seq.as_u64())
            .expect("seq is a number");
        assert!(seq > 0, "the ack of a send carries the message's seq");
        let reply = next_event(&mut customer_events, 5, |e| match &e.kind {
            Some(conversation_event::Kind::Message(m)) if m.text == "Ciao" => Some(()),
            _ => None,
        })
        .await;
        assert!(reply.is_some(), "the customer gets the agent's message");

        // Ids are the session's sequence, without holes.
        let ids: Vec<u64> = seen
            .iter()
            .map(|e| e.id.expect("every event has an id"))
            .collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());

        // A second reader replaces the first: the first stream ends. It resumes after the
        // offer and gets exactly what followed, then live events.
        let offer_id = offer.id.expect("the offer's id");
        let mut resumed = Events::open(web, &giulia, Some(offer_id)).await;
        let (ended, last) = events.until_end(3).await;
        assert!(ended, "the replaced reader's stream ends");
        let farewell = last.last().expect("a last event");
        assert_eq!(farewell.event, "error", "{farewell:?}");
        assert!(
            farewell.data["code"] == "FAILED_PRECONDITION",
            "a final code, so the old tab does not take the stream back: {farewell:?}"
        );
        let mut replay = Vec::new();
        let after_offer = seen[offer_id as usize..].to_vec();
        assert!(!after_offer.is_empty());
        for _ in 0..after_offer.len() {
            replay.push(resumed.next(5).await.expect("a replayed event"));
        }
        assert_eq!(replay, after_offer, "exactly the events after the offer");
        let (status, _) = command(
            web,
            &giulia,
            json!({"requestId": "r3", "findCanned": {"query": "/sped"}}),
        )
        .await;
        assert_eq!(status, 202);
        let mut last_id = seen.len() as u64;
        loop {
            let live = resumed.next(5).await.expect("live events after the replay");
            assert_eq!(
                live.id,
                Some(last_id + 1),
                "live events go on from the replay"
            );
            last_id += 1;
            if live.event == "ack" {
                assert_eq!(live.data["ack"]["requestId"], "r3");
                break;
            }
        }
        let (status, body) = call(
            web,
            "GET",
            &format!("/v1/agent/sessions/{}/events?after=999", giulia.id),
            Some(&giulia.token),
            None,
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (400, Some("OUT_OF_RANGE")));

        // Refusals: a wrong token, an unknown session, login as a command, an empty command.
        let wrong = "0".repeat(64);
        for (method, path) in [
            ("GET", format!("/v1/agent/sessions/{}/events", giulia.id)),
            ("POST", format!("/v1/agent/sessions/{}/commands", giulia.id)),
            ("DELETE", format!("/v1/agent/sessions/{}", giulia.id)),
        ] {
            let (status, body) = call(web, method, &path, Some(&wrong), Some(json!({}))).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (401, Some("UNAUTHENTICATED")),
                "{method} {path}"
            );
            let (status, _) = call(web, method, &path, None, Some(json!({}))).await;
            assert_eq!(status, 401, "no token: {method} {path}");
        }
        let (status, body) = call(
            web,
            "POST",
            &format!("/v1/agent/sessions/{}/commands", "ab".repeat(16)),
            Some(&giulia.token),
            Some(json!({"requestId": "x", "setStatus": {"status": "AGENT_STATUS_AWAY"}})),
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
        let (status, body) = command(
            web,
            &giulia,
            json!({"requestId": "r4", "login": {"agentId": "marco", "password": "pw"}}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let (status, body) = command(web, &giulia, json!({"requestId": "r5"})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT"))
        );
        let (status, _) = command(web, &giulia, json!({"nonsense": 1})).await;
        assert_eq!(status, 400);
        // The refused commands reached nothing: the next event is the next command's ack.
        let (status, _) = command(
            web,
            &giulia,
            json!({"requestId": "r6", "findCanned": {"query": ""}}),
        )
        .await;
        assert_eq!(status, 202);
        loop {
            let next = resumed.next(5).await.expect("the ack of r6");
            assert_ne!(
                next.event, "error",
                "a refused command reached the desk: {next:?}"
            );
            if next.event == "ack" {
                assert_eq!(next.data["ack"]["requestId"], "r6", "{next:?}");
                break;
            }
        }

        // Logout: the session is gone, the agent is disconnected and after the grace the
        // customer's conversation goes back to the queue.
        let (status, _) = call(
            web,
            "DELETE",
            &format!("/v1/agent/sessions/{}", giulia.id),
            Some(&giulia.token),
            None,
        )
        .await;
        assert_eq!(status, 204);
        let (ended, _) = resumed.until_end(3).await;
        assert!(ended, "the reader's stream ends at logout");
        for (method, path) in [
            ("GET", format!("/v1/agent/sessions/{}/events", giulia.id)),
            ("POST", format!("/v1/agent/sessions/{}/commands", giulia.id)),
            ("DELETE", format!("/v1/agent/sessions/{}", giulia.id)),
        ] {
            let (status, _) = call(
                web,
                method,
                &path,
                Some(&giulia.token),
                Some(json!({"requestId": "z", "findCanned": {}})),
            )
            .await;
            assert_eq!(status, 404, "after logout: {method} {path}");
        }
        let snap = snapshot_until(&node, 3, |s| {
            agent_in(s, "giulia").status == AgentStatus::Disconnected as i32
        })
        .await;
        assert_eq!(
            agent_in(&snap, "giulia").status,
            AgentStatus::Disconnected as i32
        );
        let requeued = next_event(&mut customer_events, 6, |e| match &e.kind {
            Some(conversation_event::Kind::Requeued(r)) => Some(r.reason.clone()),
            _ => None,
        })
        .await;
        assert!(
            requeued.is_some(),
            "the conversation is requeued after the grace"
        );
        drop((client, customer_events));
        node.shutdown().await;
    });
}

#[test]
fn bad_logins_open_nothing_and_the_session_cap_holds() {
    run(|| async {
        let node = start(config("")).await;
        let web = serve_desk(
            &node,
            WebConfig {
                max_desk_sessions: 1,
                ..WebConfig::default()
            },
        )
        .await;
        let (status, body) = open(web, "giulia", "wrong").await.err().expect("refused");
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
        let (status, _) = call(
            web,
            "POST",
            "/v1/agent/sessions",
            None,
            Some(json!({"agentId": 5})),
        )
        .await;
        assert_eq!(status, 400, "a body that is not a Login");
        let snap = snapshot(&node).await;
        assert_ne!(
            agent_in(&snap, "giulia").status,
            AgentStatus::Available as i32,
            "a refused login logs nobody in"
        );

        // The refused logins took no slot: the one session may open; a second is refused.
        let giulia = open(web, "giulia", "pw").await.expect("login");
        let (status, body) = open(web, "marco", "pw").await.err().expect("over the cap");
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("RESOURCE_EXHAUSTED"))
        );
        let snap = snapshot(&node).await;
        assert_ne!(
            agent_in(&snap, "marco").status,
            AgentStatus::Available as i32
        );
        let (status, _) = call(
            web,
            "DELETE",
            &format!("/v1/agent/sessions/{}", giulia.id),
            Some(&giulia.token),
            None,
        )
        .await;
        assert_eq!(status, 204);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let marco = loop {
            match open(web, "marco", "pw").await {
                Ok(marco) => break marco,
                Err((status, _)) => {
                    assert_eq!(status, 429, "only the cap refuses marco");
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the ended session's slot is free again"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(marco.logged_in["agentId"], "marco");
        node.shutdown().await;
    });
}

#[test]
fn an_unread_session_ends_and_a_desk_elsewhere_ends_it() {
    run(|| async {
        let node = start(config("")).await;
        let web = serve_desk(
            &node,
            WebConfig {
                desk_session_idle_secs: 1,
                ..WebConfig::default()
            },
        )
        .await;
        // Nobody reads giulia's events: the session ends as a dropped desk stream.
        let giulia = open(web, "giulia", "pw").await.expect("login");
        let gone = wait_until(4, || {
            let giulia = &giulia;
            async move {
                let (status, _) =
                    command(web, giulia, json!({"requestId": "p", "findCanned": {}})).await;
                status == 404
            }
        })
        .await;
        assert!(gone, "an unread session ends after desk_session_idle_secs");
        snapshot_until(&node, 3, |s| {
            agent_in(s, "giulia").status == AgentStatus::Disconnected as i32
        })
        .await;

        // Marco's session has a reader: it stays past the idle time.
        let marco = open(web, "marco", "pw").await.expect("login");
        let mut events = Events::open(web, &marco, None).await;
        assert_eq!(events.next(3).await.map(|e| e.id), Some(Some(1)));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (status, _) = command(web, &marco, json!({"requestId": "q", "findCanned": {}})).await;
        assert_eq!(status, 202, "a read session stays open");
        let ack = events.next_of("ack", 3).await.expect("ack");
        assert_eq!(ack.data["ack"]["requestId"], "q");

        // Marco logs in from a gRPC desk: the HTTP session's desk ends, its reader gets
        // the status, and the session is gone.
        let grpc_marco = login(&node, "marco", "pw").await.expect("gRPC login");
        let (ended, seen) = events.until_end(5).await;
        assert!(ended, "the HTTP session's stream ends");
        let last = seen.last().expect("an error event");
        assert_eq!(last.event, "error");
        assert_eq!(last.data["code"], "ABORTED", "{seen:?}");
        let gone = wait_until(3, || {
            let marco = &marco;
            async move {
                let (status, _) =
                    command(web, marco, json!({"requestId": "r", "findCanned": {}})).await;
                status == 404
            }
        })
        .await;
        assert!(gone, "calls after the desk ended are 404");
        drop(grpc_marco);
        node.shutdown().await;
    });
}

#[test]
fn a_cluster_agent_node_serves_the_http_desk() {
    use centralino_agent_node::cluster_node;
    use centralino_membership::memory::MemoryKv;
    use centralino_router::clustered;
    use common::cluster::{agent_node_config, channel_at, cluster_config, retrying, settled};

    const PREFIX: &str = "/web-desk";
    run(|| async {
        let kv = Arc::new(MemoryKv::new());
        let router = clustered::start_with(cluster_config("router-a", PREFIX), kv.clone())
            .await
            .expect("router starts");
        let agents = cluster_node::start_with(
            agent_node_config(&cluster_config("agent-node-1", PREFIX)),
            kv.clone(),
        )
        .await
        .expect("agent-node starts");
        settled(&router).await;

        // The agent-node's public listener: the desk over HTTP next to gRPC.
        let web = agents.grpc_addr;
        let (status, _) = call(
            web,
            "POST",
            "/v1/agent/sessions",
            None,
            Some(json!({"agentId": "giulia", "password": "wrong"})),
        )
        .await;
        assert_eq!(status, 401);
        let giulia = open(web, "giulia", "pw").await.expect("login over HTTP");
        let mut events = Events::open(web, &giulia, None).await;
        let first = events.next(5).await.expect("loggedIn");
        assert_eq!((first.id, first.event.as_str()), (Some(1), "logged_in"));

        let via_router =
            centralino_proto::v1::conversation_service_client::ConversationServiceClient::new(
                channel_at(router.grpc_addr).await,
            );
        let started = retrying(|| {
            let mut c = via_router.clone();
            async move { start_conversation(&mut c, "sales", "it", "cust-web").await }
        })
        .await;
        let offer = events
            .next_of("offer", 30)
            .await
            .expect("the offer over SSE");
        assert_eq!(
            offer.data["offer"]["conversationId"],
            started.conversation_id
        );
        let reservation = offer.data["offer"]["reservationId"]
            .as_str()
            .expect("reservationId")
            .to_string();
        let (status, _) = command(
            web,
            &giulia,
            json!({"requestId": "a", "accept": {"reservationId": reservation}}),
        )
        .await;
        assert_eq!(status, 202);
        let assigned = events.next_of("assigned", 5).await.expect("assigned");
        assert_eq!(
            assigned.data["assigned"]["conversationId"],
            started.conversation_id
        );
        drop(events);
        agents.shutdown().await;
        router.stop().await;
    });
}

#[test]
fn http_logins_count_against_the_address_rate_like_grpc_ones() {
    let mut config = config("");
    config.limits.logins_per_minute_per_addr = 60;
    config.limits.login_burst_per_addr = 2;
    run(|| async {
        let node = start(config).await;
        let web = serve_desk(&node, WebConfig::default()).await;
        // The desk sees the browser's address: the HTTP logins use its burst up.
        let giulia = open(web, "giulia", "pw").await.expect("giulia");
        let marco = open(web, "marco", "pw").await.expect("marco");
        let response = send(
            web,
            "POST",
            "/v1/agent/sessions",
            None,
            &[],
            Some(json!({"agentId": "emma", "password": "pw"})),
        )
        .await;
        assert_eq!(response.status().as_u16(), 429);
        assert!(
            response.headers().get("retry-after").is_some(),
            "the login's pushback becomes Retry-After"
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["code"], "RESOURCE_EXHAUSTED");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("logins from this address"),
            "{body}"
        );
        // ... and a gRPC login from the same address is refused as well.
        let grpc = login(&node, "emma", "pw")
            .await
            .err()
            .expect("rate limited");
        assert_eq!(grpc.code(), tonic::Code::ResourceExhausted);
        drop((giulia, marco));
        node.shutdown().await;
    });
}
