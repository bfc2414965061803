//! centralino's shared base: what routers and agent-nodes both stand on, and neither owns.
//!
//! Module map:
//! - [`clock`]: controllable time (system, simulated, and a manual twin for tests).
//! - [`schedule`], [`shifts`]: team working hours, time zones, holidays, language fallback.
//! - [`directory`]: the live agent directory (agents, teams, canned responses,
//!   departments) that follows the system of record.
//! - [`config`]: the shared part of the configuration file and its loading (TOML plus
//!   `CENTRALINO_*` overrides).
//! - [`credentials`], [`oidc`]: password hashes, operator tokens and scopes, placeholder
//!   secrets, JWT verification against a JWKS; [`jwks`]: key sets, JWT checks and the JWKS
//!   download, shared with the router's customer identity JWTs.
//! - [`metrics`]: the base crate's metrics (the JWKS downloads).
//! - [`process`]: logging, signals and node ids, alike in every binary.
//! - [`rate`]: keyed rate limits with bounded keys, and the retry-pushback status.
//! - [`throttle`]: failed-login throttling with growing delays (agents' and operators').
//! - [`tls`]: TLS identities from files (reloaded when they change), peer identities.
//! - [`server`]: the gRPC listener and server every node and benchmark serves with (TCP and
//!   HTTP/2 keepalive, `TCP_NODELAY`, health, reflection of the public services).

#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod credentials;
mod credentials_example;
pub mod directory;
pub mod jwks;
pub mod metrics;
pub mod oidc;
pub mod process;
pub mod rate;
pub mod schedule;
pub mod server;
pub mod shifts;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;
pub mod throttle;
pub mod tls;
