//! A gRPC server stream as Server-Sent Events: each message one event, `id:` its event id
//! (none for ephemeral events, so a resume point never moves past a stored event),
//! `event:` the oneof case it carries in snake_case (`queued`, `message`, `offer`...),
//! `data:` the whole message in the proto3 JSON mapping. A status that ends the gRPC stream
//! becomes a last `event: error` with `{"code", "message"}`. A comment every
//! [`KEEPALIVE`] keeps proxies from closing an idle stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tonic::Status;

use crate::status::{code_name, ErrorBody};

/// Interval of the keepalive comments on an idle stream.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Fields of a message's JSON that are not its oneof case.
const NOT_A_KIND: [&str; 3] = ["eventId", "atUnixMs", "seq"];

/// The event id a client sent back to resume: `Last-Event-ID` (what `EventSource` sends),
/// else the `after` query parameter; 0 when neither. A value that is not a number is
/// INVALID_ARGUMENT.
#[allow(clippy::result_large_err)]
pub fn resume_point(headers: &HeaderMap, after: Option<&str>) -> Result<u64, Status> {
    let raw = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").trim().to_string())
        .or_else(|| after.map(str::to_string));
    match raw.as_deref() {
        None | Some("") => Ok(0),
        Some(text) => text.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "Last-Event-ID (or after) must be an event id, not {text:?}"
            ))
        }),
    }
}

/// Returns one SSE event for `message`, with `id` (None for an ephemeral event).
pub fn event<T: Serialize>(message: &T, id: Option<u64>) -> Event {
    let value = serde_json::to_value(message).unwrap_or(serde_json::Value::Null);
    let fields = value.as_object();
    // An integration event names its kind in a field; the others carry it as a oneof.
    let named = fields
        .and_then(|f| f.get("kind"))
        .and_then(|k| k.as_str())
        .map(str::to_string);
    let kind = named
        .or_else(|| {
            fields
                .and_then(|f| {
                    f.keys()
                        .find(|k| !NOT_A_KIND.contains(&k.as_str()))
                        .cloned()
                })
                .map(|k| snake_case(&k))
        })
        .unwrap_or_else(|| "event".to_string());
    let data = serde_json::to_string(&value).unwrap_or_default();
    let event = Event::default().event(kind).data(data);
    match id {
        Some(id) => event.id(id.to_string()),
        None => event,
    }
}

/// The last event of a stream that a status ended.
pub fn error_event(status: &Status) -> Event {
    let body = ErrorBody {
        code: code_name(status.code()),
        message: status.message(),
    };
    Event::default()
        .event("error")
        .data(serde_json::to_string(&body).unwrap_or_default())
}

/// Answers `stream` as SSE; `id_of` gives each message's event id (None or 0: ephemeral).
pub fn respond<S, T, F>(stream: S, id_of: F) -> Response
where
    S: Stream<Item = Result<T, Status>> + Send + 'static,
    T: Serialize + Send + 'static,
    F: Fn(&T) -> Option<u64> + Send + 'static,
{
    let events = stream
        .scan(false, move |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            let event = match item {
                Ok(message) => event(&message, id_of(&message).filter(|id| *id > 0)),
                Err(status) => {
                    *ended = true;
                    error_event(&status)
                }
            };
            futures::future::ready(Some(Ok::<_, Infallible>(event)))
        })
        .boxed();
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response();
    // Proxies (nginx) must pass events on at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

/// `agentId` → `agent_id`.
fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_point_comes_from_last_event_id_then_after() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_point(&headers, None).expect("none"), 0);
        assert_eq!(resume_point(&headers, Some("7")).expect("query"), 7);
        headers.insert("last-event-id", HeaderValue::from_static("12"));
        assert_eq!(resume_point(&headers, Some("7")).expect("header wins"), 12);
        headers.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(
            resume_point(&headers, None).expect_err("bad").code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn kinds_are_snake_case_oneof_names() {
        assert_eq!(snake_case("ratingRequested"), "rating_requested");
        assert_eq!(snake_case("queued"), "queued");
    }
}
