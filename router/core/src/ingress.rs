//! gRPC ingress: the customer `ConversationService` and the operator `Admin` service.
//! Requests are validated here (bad input gets a clear status and changes nothing), then
//! handed to the conversation actors.
//!
//! - [`validate`]: field checks and status mapping.
//! - [`customer`]: [`CustomerApi`] (`ConversationService`).
//! - [`admin`]: [`AdminApi`] (`Admin`).
//! - [`directory`]: the Admin API's agent-directory calls.
//! - [`rate`]: rate limits on customers' requests.

pub mod admin;
pub mod customer;
pub mod directory;
pub mod rate;
pub mod tokens;
pub mod validate;

pub use admin::AdminApi;
pub use customer::CustomerApi;
