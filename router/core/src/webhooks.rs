//! Webhooks (issue 12): the integration events of the record's outbox, POSTed as JSON to
//! the configured `[[webhooks]]` endpoints, signed, retried with backoff, at least once.
//!
//! # What an endpoint receives
//! One event per `POST`, `Content-Type: application/json`, the body the object of
//! [`event_json`]:
//! `{"event_id": 42, "kind": "closed", "at_unix_ms": …, "conversation_id": …,
//! "customer_id": …, "department": …, "language": …, "agent_id": …, "details": {…}}` (the
//! fields of `centralino.v1.IntegrationEvent`, snake_case, `event_id` a number). Headers:
//! - `Centralino-Event-Id`: the event id (the outbox sequence number, the same as the
//!   gRPC integration stream's); deliveries are at least once, so a receiver drops an id
//!   it has seen;
//! - `Centralino-Timestamp`: the Unix time of this attempt, in seconds;
//! - `Centralino-Signature`: `t=<timestamp>,v1=<hex HMAC-SHA256>` over the bytes
//!   `<timestamp>.<body>` with the endpoint's secret (the scheme of Stripe's signatures;
//!   see [`signature`]). A receiver recomputes it, compares in constant time and refuses
//!   a timestamp older than a few minutes (replays).
//!
//! Any 2xx answer is a delivery; anything else (another status, no answer within
//! `timeout_ms`, a connection error) is a failed attempt, retried after an exponential
//! backoff with jitter up to `backoff_cap_ms`. After `max_attempts` the event is
//! dead-lettered: logged, counted in `centralino_webhook_dead_letters_total{endpoint}`,
//! and delivery goes on with the next event. Events go out one at a time, in event-id
//! order.
//!
//! # One deliverer per endpoint, resumable
//! See [`delivery`]: a router delivers an endpoint only while it holds the endpoint's
//! claim in the system of record, which also holds the endpoint's cursor.
//!
//! # Module map
//! - [`body`] — what a request carries: the JSON body and the header names.
//! - [`signature`] — signing and verifying (pure functions).
//! - [`client`] — the endpoint URL rule and the HTTP/1.1 POST over the project's rustls.
//! - [`delivery`] — the per-endpoint delivery loops.

pub mod body;
pub mod client;
pub mod delivery;
pub mod signature;

pub use body::{event_json, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
pub use client::Endpoint;
pub use delivery::{start, Webhook};
pub use signature::{sign, verify, SignatureError};
