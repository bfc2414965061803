//! The browser API of a standalone node (issue 12): the customer calls and the Admin calls
//! as JSON, event streams as Server-Sent Events resumable with `Last-Event-ID`, gRPC-web on
//! the same listener, and the same identity rules and limits as gRPC (a wrong token, bad
//! input, an oversized body: a clear status, nothing changed).

use centralino_testkit as common;

use std::time::Duration;

use centralino_base::credentials::{new_token, Scope};
use centralino_proto::v1::{
    agent_command, AcceptOffer, AgentSend, AgentTyping, GetSnapshotRequest, Snapshot,
};
use centralino_router::config::OperatorConfig;
use centralino_router::standalone::RunningNode;
use common::*;
use futures::StreamExt;
use prost::Message;
use serde_json::{json, Value};

/// One parsed Server-Sent Event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    kind: String,
    data: Value,
}

/// Reads Server-Sent Events off an HTTP response.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        Self {
            body: response
                .bytes_stream()
                .map(|r| r.map(|b| b.to_vec()))
                .boxed(),
            buffer: String::new(),
        }
    }

    /// The next event within `secs` seconds (None at the end or on timeout); comments
    /// (keepalives) are skipped.
    async fn next(&mut self, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    kind: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                event.data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event of `kind` within `secs` seconds, skipping others.
    async fn next_of(&mut self, kind: &str, secs: u64) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left.as_secs().max(1)).await?;
            if event.kind == kind {
                return Some(event);
            }
        }
    }
}

/// The JSON body of a response.
trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        let text = self.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }
}

fn base(node: &RunningNode) -> String {
    format!("http://{}", node.grpc_addr)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("http client")
}

/// POSTs `body` as JSON; returns the status and the answer's JSON.
async fn post(url: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = http().post(url).header("content-type", "application/json");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

/// Starts a conversation over JSON and returns its id and token.
async fn start_json(node: &RunningNode, department: &str) -> (String, String) {
    let (status, body) = post(
        &format!("{}/v1/conversations", base(node)),
        None,
        json!({"department": department, "language": "it", "displayName": "Anna",
               "visitor": {"currentPage": "/prodotti"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["conversationId"].as_str().expect("id").to_string();
    let token = body["token"].as_str().expect("token").to_string();
    (id, token)
}

async fn events(node: &RunningNode, id: &str, token: &str, last: Option<&str>) -> SseReader {
    let mut request = http()
        .get(format!("{}/v1/conversations/{id}/events", base(node)))
        .bearer_auth(token);
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.expect("events");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    SseReader::new(response)
}

#[test]
fn a_customer_chats_over_json_and_sse_and_resumes_where_it_left_off() {
    run(|| async {
        let node = start(config("")).await;
        let mut giulia = login(&node, "giulia", "pw").await.expect("login");
        let (id, token) = start_json(&node, "support").await;
        let mut stream = events(&node, &id, &token, None).await;
        let queued = stream.next_of("queued", 5).await.expect("queued");
        assert_eq!(queued.data["queued"]["position"], 1, "{:?}", queued.data);
        assert!(queued.id.is_some(), "stored events carry their id");

        let reservation = giulia
            .next(5, |k| match k {
                centralino_proto::v1::agent_event::Kind::Offer(o) => Some(o.reservation_id),
                _ => None,
            })
            .await
            .expect("offer");
        giulia
            .send(agent_command::Kind::Accept(AcceptOffer {
                reservation_id: reservation,
            }))
            .await;
        let assigned = stream.next_of("assigned", 5).await.expect("assigned");
        assert_eq!(assigned.data["assigned"]["agentId"], "giulia");

        // Typing both ways: shown, never stored, no event id (a resume point never moves).
        // (Best effort: the agent's actor may take the assignment a moment after the
        // customer hears of it, and a typing it does not hold yet is dropped; so try again.)
        let mut shown_on_desk = false;
        for _ in 0..6 {
            let (status, typing) = post(
                &format!("{}/v1/conversations/{id}/typing", base(&node)),
                Some(&token),
                json!({"typing": true}),
            )
            .await;
            assert_eq!(status, 200, "{typing}");
            let seen = giulia
                .next(1, |k| match k {
                    centralino_proto::v1::agent_event::Kind::CustomerTyping(t) => {
                        t.typing.then_some(())
                    }
                    _ => None,
                })
                .await;
            if seen.is_some() {
                shown_on_desk = true;
                break;
            }
        }
        assert!(shown_on_desk, "the desk shows the customer typing");
        giulia
            .send(agent_command::Kind::Typing(AgentTyping {
                conversation_id: id.clone(),
                typing: true,
            }))
            .await;
        let shown = stream.next_of("typing", 5).await.expect("agent typing");
        assert_eq!(shown.id, None, "ephemeral events carry no id");
        assert_eq!(shown.data["typing"]["agentDisplayName"], "Giulia");

        let url = format!("{}/v1/conversations/{id}/messages", base(&node));
        let (status, sent) = post(
            &url,
            Some(&token),
            json!({"messageId": "m1", "text": "Buongiorno"}),
        )
        .await;
        assert_eq!(status, 200, "{sent}");
        assert!(sent["seq"].as_str().is_some(), "int64 as a string: {sent}");
        // A retry with the same id is a duplicate; another text under it is refused.
        let (status, again) = post(
            &url,
            Some(&token),
            json!({"messageId": "m1", "text": "Buongiorno"}),
        )
        .await;
        assert_eq!((status, again["duplicate"].clone()), (200, json!(true)));
        let (status, other) = post(
            &url,
            Some(&token),
            json!({"messageId": "m1", "text": "Altro"}),
        )
        .await;
        assert_eq!(status, 409, "{other}");
        assert_eq!(other["code"], "ALREADY_EXISTS");

        let mine = stream.next_of("message", 5).await.expect("own message");
        assert_eq!(mine.data["message"]["text"], "Buongiorno");
        let resume_at = mine.id.clone().expect("id");
        drop(stream);

        // While nobody listens, the agent answers; a resumed stream gets exactly that.
        giulia
            .send(agent_command::Kind::Send(AgentSend {
                conversation_id: id.clone(),
                message_id: "a1".into(),
                text: "Come posso aiutarla?".into(),
                status_note: false,
            }))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut resumed = events(&node, &id, &token, Some(&resume_at)).await;
        let next = resumed
            .next(5)
            .await
            .expect("the event after the resume point");
        assert_eq!(next.kind, "message");
        assert_eq!(next.data["message"]["text"], "Come posso aiutarla?");
        let n: u64 = next.id.as_deref().expect("id").parse().expect("number");
        assert!(n > resume_at.parse::<u64>().expect("number"));

        // `?after=` works as Last-Event-ID does (for clients that cannot set headers).
        let response = http()
            .get(format!(
                "{}/v1/conversations/{id}/events?after={resume_at}",
                base(&node)
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("events");
        let mut by_query = SseReader::new(response);
        let same = by_query.next(5).await.expect("event");
        assert_eq!(same.id, next.id);

        let (status, closed) = post(
            &format!("{}/v1/conversations/{id}/close", base(&node)),
            Some(&token),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{closed}");
        assert!(closed["outcome"]
            .as_str()
            .expect("enum by name")
            .starts_with("CONVERSATION_OUTCOME_"));
        let end = resumed.next_of("closed", 5).await.expect("closed");
        assert!(end.data["closed"]["outcome"].is_string());
        node.shutdown().await;
    });
}

#[test]
fn wrong_tokens_and_bad_input_get_a_clear_status_and_change_nothing() {
    run(|| async {
        let node = start(config("")).await;
        let (id, token) = start_json(&node, "support").await;
        let url = format!("{}/v1/conversations/{id}/messages", base(&node));

        let (status, body) = post(
            &url,
            Some("not-the-token"),
            json!({"messageId": "m", "text": "x"}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("PERMISSION_DENIED")),
            "{body}"
        );
        let (status, body) = post(&url, None, json!({"messageId": "m", "text": "x"})).await;
        assert!(matches!(status, 401 | 403), "{status} {body}");

        for (bad, why) in [
            (json!({"messageId": "m", "text": ""}), "empty text"),
            (json!({"messageId": "m", "text": 7}), "text is a number"),
            (
                json!({"messageId": "m", "text": "x", "extra": 1}),
                "an unknown field",
            ),
            (
                json!({"conversationId": "other", "messageId": "m", "text": "x"}),
                "another id",
            ),
            (
                json!({"messageId": "m", "text": "x".repeat(8193)}),
                "over 8,192 bytes",
            ),
        ] {
            let (status, body) = post(&url, Some(&token), bad).await;
            assert_eq!(status, 400, "{why}: {body}");
            assert_eq!(body["code"], "INVALID_ARGUMENT", "{why}");
            assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{why}");
        }
        let response = http()
            .post(&url)
            .bearer_auth(&token)
            .body("{not json")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 400);
        let response = http()
            .post(&url)
            .bearer_auth(&token)
            .body(vec![b' '; 70 * 1024])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 413, "bodies are capped");
        let body: Value = response.json_body().await;
        assert_eq!(body["code"], "RESOURCE_EXHAUSTED", "{body}");

        let (status, body) = post(
            &format!("{}/v1/conversations/no-such/messages", base(&node)),
            Some(&token),
            json!({"messageId": "m", "text": "x"}),
        )
        .await;
        assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
        let response = http()
            .get(format!("{}/v1/conversations/{id}/events", base(&node)))
            .bearer_auth("wrong")
            .send()
            .await
            .expect("events");
        assert_eq!(response.status().as_u16(), 403);
        let response = http()
            .get(format!("{}/v1/conversations/{id}/events", base(&node)))
            .bearer_auth(&token)
            .header("last-event-id", "yesterday")
            .send()
            .await
            .expect("events");
        assert_eq!(response.status().as_u16(), 400);
        let response = http()
            .get(format!("{}/v1/no-such-route", base(&node)))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 404);

        // Nothing of the above reached the transcript.
        assert!(transcript_texts(&node, &id).await.is_empty());
        node.shutdown().await;
    });
}

#[test]
fn admin_calls_over_json_check_the_operator_token_and_its_scope() {
    let (reader, hash) = new_token();
    let config = config_with("", |c| {
        c.operators.push(OperatorConfig {
            name: "reader".into(),
            token_hash: hash,
            scopes: vec![Scope::ReadOnly],
        })
    });
    run(|| async move {
        let node = start(config).await;
        let url = format!("{}/v1/admin/get-snapshot", base(&node));
        let (status, body) = post(&url, None, json!({})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{body}"
        );
        let (status, body) = post(&url, Some("nope"), json!({})).await;
        assert!(matches!(status, 401 | 403), "{status} {body}");
        let (status, snapshot) = post(&url, Some(ADMIN), json!({})).await;
        assert_eq!(status, 200, "{snapshot}");
        assert!(snapshot.is_object());

        let (status, body) = post(
            &format!("{}/v1/admin/set-agent-status", base(&node)),
            Some(ADMIN),
            json!({"agentId": "nobody", "status": "AGENT_STATUS_AWAY"}),
        )
        .await;
        assert_eq!(status, 404, "{body}");
        // A reader may look, not act: the scope rule of gRPC.
        let (status, body) = post(
            &format!("{}/v1/admin/set-agent-status", base(&node)),
            Some(&reader),
            json!({"agentId": "giulia", "status": "AGENT_STATUS_AWAY"}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("PERMISSION_DENIED")),
            "{body}"
        );
        let (status, _) = post(&url, Some(&reader), json!({})).await;
        assert_eq!(status, 200, "a reader reads the snapshot");
        let (status, body) = post(
            &format!("{}/v1/admin/set-agent-status", base(&node)),
            Some(ADMIN),
            json!({"agentId": "giulia", "status": "NO_SUCH_STATUS"}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{body}"
        );

        // The snapshot stream: the first snapshot at once, then the change when a
        // conversation queues.
        let response = http()
            .get(format!("{}/v1/admin/snapshot/stream", base(&node)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status().as_u16(), 200);
        let mut stream = SseReader::new(response);
        let first = stream.next_of("snapshot", 5).await.expect("first snapshot");
        let depth = |s: &Value| -> u64 {
            s["queues"]
                .as_array()
                .map(|qs| qs.iter().map(|q| q["depth"].as_u64().unwrap_or(0)).sum())
                .unwrap_or(0)
        };
        assert_eq!(depth(&first.data), 0, "{}", first.data);
        let _ = start_json(&node, "support").await;
        let mut saw = false;
        for _ in 0..10 {
            let Some(next) = stream.next_of("snapshot", 3).await else {
                break;
            };
            if depth(&next.data) == 1 {
                saw = true;
                break;
            }
        }
        assert!(saw, "the stream shows the queued conversation");
        let response = http()
            .get(format!("{}/v1/admin/snapshot/stream", base(&node)))
            .send()
            .await
            .expect("stream");
        assert_eq!(response.status().as_u16(), 401);
        node.shutdown().await;
    });
}

/// Encodes one gRPC-web frame.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn grpc_web_calls_reach_the_same_services_with_the_same_rules() {
    run(|| async {
        let node = start(config("")).await;
        let call = |token: Option<&'static str>| {
            let url = format!("{}/centralino.v1.Admin/GetSnapshot", base(&node));
            async move {
                let mut request = http()
                    .post(url)
                    .header("content-type", "application/grpc-web+proto")
                    .header("x-grpc-web", "1")
                    .body(frame(0, &GetSnapshotRequest {}.encode_to_vec()));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.expect("grpc-web");
                assert_eq!(response.status().as_u16(), 200);
                let header_status = response
                    .headers()
                    .get("grpc-status")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let body = response.bytes().await.expect("body").to_vec();
                (header_status, body)
            }
        };
        // Without a token: the status comes in the headers (a trailers-only answer).
        let (status, _) = call(None).await;
        assert_eq!(status.as_deref(), Some("16"), "UNAUTHENTICATED");

        let (_, body) = call(Some(ADMIN)).await;
        let mut at = 0;
        let mut message = None;
        let mut trailers = String::new();
        while at + 5 <= body.len() {
            let flag = body[at];
            let len = u32::from_be_bytes([body[at + 1], body[at + 2], body[at + 3], body[at + 4]])
                as usize;
            let payload = &body[at + 5..at + 5 + len];
            if flag & 0x80 == 0 {
                message = Some(Snapshot::decode(payload).expect("a Snapshot"));
            } else {
                trailers = String::from_utf8_lossy(payload).to_string();
            }
            at += 5 + len;
        }
        assert!(message.is_some(), "a message frame");
        assert!(trailers.contains("grpc-status:0"), "{trailers}");
        node.shutdown().await;
    });
}

/// Splits a gRPC-web answer into its message payloads and its trailers.
fn frames(body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut at = 0;
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while at + 5 <= body.len() {
        let flag = body[at];
        let len =
            u32::from_be_bytes([body[at + 1], body[at + 2], body[at + 3], body[at + 4]]) as usize;
        let payload = &body[at + 5..(at + 5 + len).min(body.len())];
        if flag & 0x80 == 0 {
            messages.push(payload.to_vec());
        } else {
            trailers.push_str(&String::from_utf8_lossy(payload));
        }
        at += 5 + len;
    }
    (messages, trailers)
}

/// The grpc-status of a gRPC-web answer: from the headers (trailers-only) or the trailer frame.
fn grpc_code(header: Option<String>, body: &[u8]) -> String {
    header.unwrap_or_else(|| {
        frames(body)
            .1
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("grpc-status:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    })
}

/// Calls `method` over gRPC-web with `payload` (already encoded); returns the headers'
/// grpc-status, if any, and the body.
async fn grpc_web(node: &RunningNode, method: &str, payload: Vec<u8>) -> (Option<String>, Vec<u8>) {
    let response = http()
        .post(format!("{}/{method}", base(node)))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(0, &payload))
        .send()
        .await
        .expect("grpc-web");
    assert_eq!(response.status().as_u16(), 200);
    let status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("").to_string());
    (status, response.bytes().await.expect("body").to_vec())
}

#[test]
fn grpc_web_streams_resume_and_refuse_bad_input() {
    use centralino_proto::v1::{
        ConversationEvent, SendMessageRequest, StartConversationRequest, StartConversationResponse,
        StreamEventsRequest,
    };
    run(|| async {
        let node = start(config("")).await;
        let (_, body) = grpc_web(
            &node,
            "centralino.v1.ConversationService/StartConversation",
            StartConversationRequest {
                department: "support".into(),
                language: "it".into(),
                display_name: "Anna".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        )
        .await;
        let (messages, trailers) = frames(&body);
        assert!(trailers.contains("grpc-status:0"), "{trailers}");
        let started = StartConversationResponse::decode(&messages[0][..]).expect("response");
        for (id, text) in [("m1", "uno"), ("m2", "due")] {
            let (_, body) = grpc_web(
                &node,
                "centralino.v1.ConversationService/SendMessage",
                SendMessageRequest {
                    conversation_id: started.conversation_id.clone(),
                    token: started.token.clone(),
                    message_id: id.into(),
                    text: text.into(),
                }
                .encode_to_vec(),
            )
            .await;
            assert!(frames(&body).1.contains("grpc-status:0"));
        }
        // A server stream over gRPC-web, read until the messages, then resumed after the
        // first: exactly the second comes again.
        let stream = |after: u64| {
            StreamEventsRequest {
                conversation_id: started.conversation_id.clone(),
                token: started.token.clone(),
                after_event_id: after,
            }
            .encode_to_vec()
        };
        let response = http()
            .post(format!(
                "{}/centralino.v1.ConversationService/StreamEvents",
                base(&node)
            ))
            .header("content-type", "application/grpc-web+proto")
            .body(frame(0, &stream(0)))
            .send()
            .await
            .expect("stream");
        let mut body = response.bytes_stream();
        let mut buffer = Vec::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while events
            .iter()
            .filter(|e: &&ConversationEvent| {
                matches!(
                    e.kind,
                    Some(centralino_proto::v1::conversation_event::Kind::Message(_))
                )
            })
            .count()
            < 2
        {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .expect("events in time")
                .expect("more body")
                .expect("chunk");
            buffer.extend_from_slice(&chunk);
            let (messages, _) = frames(&buffer);
            events = messages
                .iter()
                .map(|m| ConversationEvent::decode(&m[..]).expect("an event"))
                .collect();
        }
        let first_message = events
            .iter()
            .find(|e| {
                matches!(
                    e.kind,
                    Some(centralino_proto::v1::conversation_event::Kind::Message(_))
                )
            })
            .expect("a message")
            .event_id;
        drop(body);
        let response = http()
            .post(format!(
                "{}/centralino.v1.ConversationService/StreamEvents",
                base(&node)
            ))
            .header("content-type", "application/grpc-web+proto")
            .body(frame(0, &stream(first_message)))
            .send()
            .await
            .expect("stream");
        let mut body = response.bytes_stream();
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("in time")
            .expect("body")
            .expect("chunk");
        let (messages, _) = frames(&chunk);
        let resumed = ConversationEvent::decode(&messages[0][..]).expect("an event");
        match resumed.kind {
            Some(centralino_proto::v1::conversation_event::Kind::Message(m)) => {
                assert_eq!(m.text, "due")
            }
            other => panic!("expected the second message, got {other:?}"),
        }

        // A wrong token and bytes that do not decode: the gRPC statuses.
        let (status, body) = grpc_web(
            &node,
            "centralino.v1.ConversationService/SendMessage",
            SendMessageRequest {
                conversation_id: started.conversation_id.clone(),
                token: "wrong".into(),
                message_id: "m3".into(),
                text: "tre".into(),
            }
            .encode_to_vec(),
        )
        .await;
        assert_eq!(grpc_code(status, &body), "7", "PERMISSION_DENIED");
        let (status, body) = grpc_web(
            &node,
            "centralino.v1.ConversationService/SendMessage",
            vec![0xff, 0xff, 0xff],
        )
        .await;
        assert_eq!(grpc_code(status, &body), "3", "INVALID_ARGUMENT");
        assert_eq!(
            transcript_texts(&node, &started.conversation_id).await,
            ["uno", "due"]
        );
        node.shutdown().await;
    });
}

#[test]
fn cors_lets_the_configured_origins_in_and_nobody_else() {
    let config = config_with("", |c| {
        c.web.allowed_origins = vec!["https://shop.example".into()];
    });
    run(|| async move {
        let node = start(config).await;
        let url = format!("{}/v1/conversations", base(&node));
        let preflight = |origin: &'static str| {
            let url = url.clone();
            async move {
                http()
                    .request(reqwest::Method::OPTIONS, url)
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header(
                        "access-control-request-headers",
                        "authorization, content-type",
                    )
                    .send()
                    .await
                    .expect("preflight")
            }
        };
        let allowed = preflight("https://shop.example").await;
        assert_eq!(
            allowed
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.as_bytes()),
            Some(&b"https://shop.example"[..])
        );
        assert!(
            allowed
                .headers()
                .get("access-control-allow-credentials")
                .is_none(),
            "cookies are never allowed"
        );
        let other = preflight("https://evil.example").await;
        assert!(other.headers().get("access-control-allow-origin").is_none());
        // A real call from the shop's page carries the header on the answer too.
        let response = http()
            .post(&url)
            .header("origin", "https://shop.example")
            .header("content-type", "application/json")
            .body(r#"{"department":"support","language":"it"}"#)
            .send()
            .await
            .expect("start");
        assert_eq!(response.status().as_u16(), 200);
        assert!(response
            .headers()
            .get("access-control-allow-origin")
            .is_some());
        node.shutdown().await;
    });
}

#[test]
fn the_pages_are_served_with_a_strict_content_security_policy() {
    run(|| async {
        let node = start(config("")).await;
        for path in ["/", "/checkout", "/console", "/wallboard"] {
            let response = http()
                .get(format!("{}{path}", base(&node)))
                .send()
                .await
                .expect("page");
            assert_eq!(response.status().as_u16(), 200, "{path}");
            let csp = response
                .headers()
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            let html = response.text().await.expect("html");
            assert!(!html.contains("<script>"), "{path}: no inline script");
        }
        let widget = http()
            .get(format!("{}/widget.js", base(&node)))
            .send()
            .await
            .expect("widget");
        assert_eq!(widget.status().as_u16(), 200);
        assert!(widget
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/javascript")));
        node.shutdown().await;
    });
}
