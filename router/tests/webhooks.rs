//! Webhooks (issue 12): integration events POSTed to a local receiver that fails now and
//! then — every event arrives at least once, in event-id order of first arrival, signed;
//! an endpoint that always fails dead-letters (counted) and delivery goes on; a restarted
//! node resumes from its cursor.

use centralino_testkit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use centralino_core::webhooks::{verify, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use centralino_record::NewEvent;
use centralino_router::config::Config;
use centralino_router::standalone::RunningNode;
use common::*;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The endpoint's secret (32 bytes of key).
const SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn secret() -> Vec<u8> {
    (0..SECRET_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&SECRET_HEX[i..i + 2], 16).unwrap())
        .collect()
}

/// What the receiver answers to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Fail,
    /// No answer until long after the sender's timeout.
    Hang,
}

/// One attempt as the receiver saw it.
#[derive(Debug, Clone)]
struct Attempt {
    event_id: i64,
    kind: String,
    answer: Answer,
    signed: bool,
    body: Value,
}

type Plan = Arc<dyn Fn(&str, i64, usize) -> Answer + Send + Sync>;

/// A local HTTP/1.1 receiver: answers each POST as `plan(kind, event id, attempt number)`
/// says, after checking the signature with [`secret`].
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl Receiver {
    async fn start(plan: Plan) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let log = attempts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, plan.clone(), log.clone()));
            }
        });
        Self { addr, attempts }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/centralino", self.addr)
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().clone()
    }

    /// Event ids answered 200, in the order they were first answered.
    fn delivered(&self) -> Vec<i64> {
        let mut seen = BTreeSet::new();
        self.attempts()
            .iter()
            .filter(|a| a.answer == Answer::Ok && seen.insert(a.event_id))
            .map(|a| a.event_id)
            .collect()
    }

    fn tries_of(&self, event_id: i64) -> usize {
        self.attempts()
            .iter()
            .filter(|a| a.event_id == event_id)
            .count()
    }
}

async fn serve(mut stream: TcpStream, plan: Plan, log: Arc<Mutex<Vec<Attempt>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(
        request_line.starts_with("POST /hooks/centralino HTTP/1.1"),
        "{request_line}"
    );
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signature = headers.get(SIGNATURE_HEADER).cloned().unwrap_or_default();
    let signed = verify(&secret(), &signature, &body, now, 300)
        .is_ok_and(|t| Some(t.to_string()) == headers.get(TIMESTAMP_HEADER).cloned());
    let json: Value = serde_json::from_slice(&body).expect("a JSON body");
    let event_id: i64 = headers
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.parse().ok())
        .expect("an event id header");
    assert_eq!(json["event_id"], event_id, "the header and the body agree");
    let kind = json["kind"].as_str().unwrap_or_default().to_string();
    let answer = {
        let mut log = log.lock();
        let attempt = 1 + log.iter().filter(|a| a.event_id == event_id).count();
        let answer = plan(&kind, event_id, attempt);
        log.push(Attempt {
            event_id,
            kind,
            answer,
            signed,
            body: json,
        });
        answer
    };
    let status = match answer {
        Answer::Ok => "200 OK",
        Answer::Fail => "500 Internal Server Error",
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            return;
        }
    };
    let _ = stream
        .write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .as_bytes(),
        )
        .await;
    let _ = stream.shutdown().await;
}

fn hook_toml(receiver: &Receiver, extra: &str) -> String {
    format!(
        r#"
[[webhooks]]
name = "crm"
url = "{}"
secret = "hex:{SECRET_HEX}"
timeout_ms = 300
backoff_ms = 20
backoff_cap_ms = 200
{extra}
"#,
        receiver.url()
    )
}

fn with_metrics(mut config: Config) -> (Config, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.node.metrics_addr = addr.to_string();
    (config, addr)
}

fn event(kind: &str, n: usize) -> NewEvent {
    NewEvent {
        kind: kind.to_string(),
        customer_id: Some(format!("customer-{n}")),
        conversation_id: Some(format!("conv-{n}")),
        at_ms: 1_750_000_000_000 + n as i64,
        payload: json!({
            "department": "sales", "language": "it", "agent_id": "giulia",
            "details": { "n": n.to_string() },
        }),
    }
}

async fn append(node: &RunningNode, events: Vec<NewEvent>) -> Vec<i64> {
    node.router
        .shared
        .record
        .append(events)
        .await
        .expect("append to the outbox")
}

/// Returns the value of the series `name{labels}` in a Prometheus scrape.
fn series(scrape: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {prefix:?} in the scrape"))
}

#[test]
fn a_flaky_receiver_gets_every_event_at_least_once_in_order_and_signed() {
    run(|| async {
        // Every third event fails twice with 500; event 5 hangs once past the timeout.
        let receiver = Receiver::start(Arc::new(|_kind: &str, id: i64, attempt: usize| {
            match (id, attempt) {
                (5, 1) => Answer::Hang,
                (id, a) if id % 3 == 0 && a <= 2 => Answer::Fail,
                _ => Answer::Ok,
            }
        }))
        .await;
        let (config, metrics_addr) = with_metrics(config(&hook_toml(&receiver, "")));
        let node = start(config).await;
        let mut ids = append(&node, (1..=6).map(|n| event("closed", n)).collect()).await;
        // More while the first ones are being retried.
        ids.extend(append(&node, (7..=12).map(|n| event("rated", n)).collect()).await);
        assert_eq!(ids, (1..=12).collect::<Vec<i64>>());

        let arrived = wait_until(20, || async { receiver.delivered().len() == 12 }).await;
        assert!(arrived, "delivered: {:?}", receiver.delivered());
        assert_eq!(
            receiver.delivered(),
            ids,
            "every event, in event-id order of first delivery"
        );
        let attempts = receiver.attempts();
        assert!(
            attempts.iter().all(|a| a.signed),
            "every attempt is signed: {attempts:?}"
        );
        // First arrivals (any answer) are in order too: one event at a time.
        let mut seen = BTreeSet::new();
        let firsts: Vec<i64> = attempts
            .iter()
            .filter(|a| seen.insert(a.event_id))
            .map(|a| a.event_id)
            .collect();
        assert_eq!(
            firsts, ids,
            "an attempt only repeats an event id already seen"
        );
        for id in [3, 6, 9, 12] {
            assert_eq!(
                receiver.tries_of(id),
                3,
                "event {id}: two failures, then ok"
            );
        }
        assert_eq!(receiver.tries_of(5), 2, "event 5: a timeout, then ok");
        let rated = attempts.iter().find(|a| a.event_id == 8).unwrap();
        assert_eq!(rated.kind, "rated");
        assert_eq!(rated.body["conversation_id"], "conv-8");
        assert_eq!(rated.body["customer_id"], "customer-8");
        assert_eq!(rated.body["department"], "sales");
        assert_eq!(rated.body["at_unix_ms"], 1_750_000_000_008_i64);
        assert_eq!(rated.body["details"]["n"], "8");

        let saved = wait_until(5, || async {
            node.router.shared.record.webhook_cursor("crm").await.ok() == Some(12)
        })
        .await;
        assert!(saved, "the cursor reaches the last event");
        let scrape = scrape(metrics_addr).await;
        let outcome = |o: &str| {
            series(
                &scrape,
                "centralino_webhook_deliveries_total",
                &format!("endpoint=\"crm\",outcome=\"{o}\""),
            )
        };
        assert_eq!(outcome("delivered"), 12.0);
        assert_eq!(outcome("status"), 8.0);
        assert_eq!(outcome("timeout"), 1.0);
        assert_eq!(
            series(
                &scrape,
                "centralino_webhook_dead_letters_total",
                "endpoint=\"crm\""
            ),
            0.0
        );
        assert_eq!(
            series(&scrape, "centralino_webhook_delivering", "endpoint=\"crm\""),
            1.0
        );
        node.shutdown().await;
    });
}

#[test]
fn an_event_that_always_fails_is_dead_lettered_and_delivery_goes_on() {
    run(|| async {
        let receiver = Receiver::start(Arc::new(|kind: &str, _id: i64, _attempt: usize| {
            if kind == "doomed" {
                Answer::Fail
            } else {
                Answer::Ok
            }
        }))
        .await;
        let extra = r#"max_attempts = 3
kinds = ["closed", "doomed"]"#;
        let (config, metrics_addr) = with_metrics(config(&hook_toml(&receiver, extra)));
        let node = start(config).await;
        let ids = append(
            &node,
            vec![
                event("closed", 1),
                event("doomed", 2),
                event("started", 3), // not in kinds: never sent
                event("closed", 4),
                event("doomed", 5),
                event("closed", 6),
            ],
        )
        .await;
        let arrived = wait_until(20, || async { receiver.delivered().len() == 3 }).await;
        assert!(arrived, "attempts: {:?}", receiver.attempts());
        assert_eq!(receiver.delivered(), vec![ids[0], ids[3], ids[5]]);
        assert_eq!(
            receiver.tries_of(ids[1]),
            3,
            "max_attempts, then dead-lettered"
        );
        assert_eq!(receiver.tries_of(ids[4]), 3);
        assert_eq!(receiver.tries_of(ids[2]), 0, "the kinds filter holds");
        let saved = wait_until(5, || async {
            node.router.shared.record.webhook_cursor("crm").await.ok() == Some(ids[5])
        })
        .await;
        assert!(saved, "the cursor moves past dead letters");
        let scrape = scrape(metrics_addr).await;
        assert_eq!(
            series(
                &scrape,
                "centralino_webhook_dead_letters_total",
                "endpoint=\"crm\""
            ),
            2.0
        );
        assert_eq!(
            series(
                &scrape,
                "centralino_webhook_deliveries_total",
                "endpoint=\"crm\",outcome=\"status\""
            ),
            6.0
        );
        node.shutdown().await;
    });
}

#[test]
fn a_restarted_node_resumes_from_its_cursor() {
    run(|| async {
        let receiver = Receiver::start(Arc::new(|_: &str, _: i64, _: usize| Answer::Ok)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(&hook_toml(&receiver, ""));
        let node = start_durable(config.clone(), dir.path()).await;
        let first = append(&node, (1..=5).map(|n| event("closed", n)).collect()).await;
        assert!(wait_until(10, || async { receiver.delivered().len() == 5 }).await);
        let saved = wait_until(5, || async {
            node.router.shared.record.webhook_cursor("crm").await.ok() == Some(5)
        })
        .await;
        assert!(saved, "the cursor is saved after the batch");
        node.shutdown().await;

        let restarted = restart_durable(config, dir.path()).await;
        let node = restarted.node;
        let later = append(&node, (6..=8).map(|n| event("closed", n)).collect()).await;
        assert_eq!(later, vec![6, 7, 8], "the outbox goes on after the restart");
        assert!(
            wait_until(10, || async { receiver.delivered().len() == 8 }).await,
            "delivered: {:?}",
            receiver.delivered()
        );
        assert_eq!(receiver.delivered(), (1..=8).collect::<Vec<i64>>());
        for id in first {
            assert_eq!(
                receiver.tries_of(id),
                1,
                "event {id} was delivered before the restart and not sent again"
            );
        }
        assert!(
            wait_until(5, || async {
                node.router.shared.record.webhook_cursor("crm").await.ok() == Some(8)
            })
            .await
        );
        node.shutdown().await;
    });
}

/// Two routers on one record (the cluster's PostgreSQL, here its in-memory twin): only the
/// claim's holder delivers, so each event arrives once; when it stops cleanly it releases
/// the claim, and the other takes it over at once and goes on from the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_router_delivers_an_endpoint_and_another_takes_over_when_it_stops() {
    use centralino_core::config::WebhookConfig;
    use centralino_record::{MemoryRecord, Record};
    use tokio::sync::watch;

    let receiver = Receiver::start(Arc::new(|_: &str, _: i64, _: usize| Answer::Ok)).await;
    let record: Arc<dyn Record> = Arc::new(MemoryRecord::new().expect("memory record"));
    let hook = WebhookConfig {
        name: "crm".into(),
        url: receiver.url(),
        secret: format!("hex:{SECRET_HEX}"),
        timeout_ms: 300,
        backoff_ms: 20,
        backoff_cap_ms: 200,
        ..WebhookConfig::default()
    };
    let start = |holder: &str, stop| {
        centralino_core::webhooks::start(
            std::slice::from_ref(&hook),
            false,
            record.clone(),
            holder,
            stop,
        )
        .expect("webhooks start")
    };
    let (stop_a, stop_rx_a) = watch::channel(false);
    let (stop_b, stop_rx_b) = watch::channel(false);
    let a = start("router-a", stop_rx_a);
    // router-a holds the claim: only the holder may write the cursor.
    let a_holds = wait_until(5, || async {
        record
            .set_webhook_cursor("crm", "router-a", 0)
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(a_holds, "router-a claimed the endpoint");
    let b = start("router-b", stop_rx_b);

    let first = record
        .append((1..=5).map(|n| event("closed", n)).collect())
        .await
        .expect("append");
    assert!(wait_until(10, || async { receiver.delivered().len() == 5 }).await);
    assert!(
        wait_until(5, || async {
            record.webhook_cursor("crm").await.ok() == Some(5)
        })
        .await
    );
    for id in &first {
        assert_eq!(receiver.tries_of(*id), 1, "event {id}: one router delivers");
    }

    // router-a stops (releasing its claim); router-b takes it over without waiting for it
    // to expire.
    stop_a.send(true).expect("stop router-a");
    let stopped = tokio::time::Instant::now();
    for task in a {
        task.await.expect("router-a's loop ends");
    }
    let later = record
        .append((6..=8).map(|n| event("closed", n)).collect())
        .await
        .expect("append");
    let ttl = centralino_core::webhooks::delivery::CLAIM_TTL.as_secs();
    assert!(
        wait_until(ttl + 10, || async { receiver.delivered().len() == 8 }).await,
        "router-b did not take over: {:?}",
        receiver.delivered()
    );
    assert!(
        stopped.elapsed() < centralino_core::webhooks::delivery::CLAIM_TTL,
        "the released claim was taken over before it would have expired ({:?})",
        stopped.elapsed()
    );
    assert_eq!(receiver.delivered(), (1..=8).collect::<Vec<i64>>());
    for id in first.iter().chain(&later) {
        assert_eq!(
            receiver.tries_of(*id),
            1,
            "event {id}: sent once across the takeover"
        );
    }
    assert!(
        record
            .set_webhook_cursor("crm", "router-b", 8)
            .await
            .expect("cursor"),
        "router-b holds the claim now"
    );
    assert!(
        !record
            .set_webhook_cursor("crm", "router-a", 8)
            .await
            .expect("cursor"),
        "router-a is fenced off"
    );
    stop_b.send(true).expect("stop router-b");
    for task in b {
        task.await.expect("router-b's loop ends");
    }
}
