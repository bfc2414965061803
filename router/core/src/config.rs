//! The node's configuration: one TOML file, every key overridable by `CENTRALINO_*`
//! environment variables (see [`centralino_base::config::load_document`]).
//!
//! A commented example describing an Italian web shop is in
//! `deploy/config/centralino.example.toml`; it is also built into the binaries as the
//! default configuration.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use base64::Engine as _;
use centralino_base::config::{
    load_document, AgentConfig, AgentNodeConfig, CannedConfig, ClockConfig, DeskConfig,
    HandoverConfig, LanguagesConfig, TeamConfig,
};
use serde::{Deserialize, Serialize};

/// The example configuration shipped with the project (used when no file is given).
pub const EXAMPLE_CONFIG: &str = include_str!("../../../deploy/config/centralino.example.toml");

/// Whole-node configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses, data directory, admin token.
    pub node: NodeConfig,
    /// Cluster mode: etcd, leases, drain.
    pub cluster: centralino_base::config::ClusterConfig,
    /// Size limits of requests and queues.
    pub limits: LimitsConfig,
    /// Sticky routing and other cross-department routing settings.
    pub routing: RoutingConfig,
    /// Departments with their queues and routing steps.
    pub departments: Vec<DepartmentConfig>,
    /// Rules on the visitor context (e.g. checkout page → sales, high priority).
    pub rules: Vec<RuleConfig>,
    /// Simulation or system clock.
    pub clock: ClockConfig,
    /// Offer, wrap-up and disconnect timers.
    pub desk: DeskConfig,
    /// Teams.
    pub teams: Vec<TeamConfig>,
    /// Agents and their credentials.
    pub agents: Vec<AgentConfig>,
    /// Language fallback chains.
    pub languages: LanguagesConfig,
    /// Shift-end handover of active conversations.
    pub handover: HandoverConfig,
    /// Canned responses.
    pub canned: Vec<CannedConfig>,
    /// Customer-facing message templates per language (built-in it and en by default).
    pub templates: BTreeMap<String, Templates>,
    /// Operators of the Admin API: hashed bearer tokens with scopes.
    pub operators: Vec<OperatorConfig>,
    /// OIDC/JWT: agents and operators may present a token of the identity provider.
    pub oidc: centralino_base::oidc::OidcConfig,
    /// Who a customer is: the shop's identity tokens and anonymous visitor tokens.
    pub identity: IdentityConfig,
    /// TLS of the public listener (customers, admin, agent desktops).
    pub tls: centralino_base::config::TlsConfig,
    /// The system of record in cluster mode (PostgreSQL) and the archive's retention.
    pub record: RecordConfig,
    /// Webhook endpoints: integration events POSTed as signed JSON (see
    /// [`crate::webhooks`]).
    pub webhooks: Vec<WebhookConfig>,
    /// The browser side of the public listener: CORS origins, the pages, desk sessions
    /// over HTTP.
    pub web: centralino_base::config::WebConfig,
}

/// The webhook secret of the example configuration: accepted in dev mode only.
pub const PLACEHOLDER_WEBHOOK_SECRET: &str =
    "hex:6578616d706c652d776562686f6f6b2d7365637265742d6368616e67652d6d65";

/// One `[[webhooks]]` endpoint: integration events POSTed to `url` as JSON, signed with
/// `secret`, retried with backoff, at least once (see [`crate::webhooks`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint's name: unique, in metrics (`endpoint` label) and in the record (its
    /// cursor); renaming an endpoint starts it again from the oldest kept event.
    pub name: String,
    /// Where events are POSTed: `https://` (plain `http://` only on loopback or in dev mode).
    pub url: String,
    /// HMAC-SHA256 key of the signature, `hex:<digits>` or `base64:<text>` with at least 32
    /// bytes (set it from a Secret: `CENTRALINO_WEBHOOKS__0__SECRET`).
    pub secret: String,
    /// Event kinds sent (e.g. `["closed", "offline_message"]`); empty: every kind.
    pub kinds: Vec<String>,
    /// How long one attempt may take, connect to answer, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per event before it is dead-lettered (counted, logged, skipped).
    pub max_attempts: u32,
    /// The pause after the first failed attempt, in milliseconds; it doubles with each
    /// further attempt (with jitter) up to `backoff_cap_ms`.
    pub backoff_ms: u64,
    /// The longest pause between attempts, in milliseconds.
    pub backoff_cap_ms: u64,
    /// PEM CA bundle the endpoint's certificate is checked against (default: the WebPKI
    /// roots).
    pub ca_file: PathBuf,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            secret: String::new(),
            kinds: Vec::new(),
            timeout_ms: 5_000,
            max_attempts: 8,
            backoff_ms: 500,
            backoff_cap_ms: 60_000,
            ca_file: PathBuf::new(),
        }
    }
}

impl WebhookConfig {
    /// Returns the problems of this endpoint (`key` names it in the messages): a missing
    /// name, a URL that is not https (outside loopback and dev mode), a malformed secret,
    /// the example's placeholder secret outside dev mode, zero timeouts or attempts.
    pub fn problems(&self, key: &str, dev_mode: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.name.trim().is_empty() {
            out.push(format!("{key}.name: must not be empty"));
        } else if self.name.len() > centralino_record::MAX_ID_LEN {
            out.push(format!("{key}.name: too long"));
        }
        // The rule of the webhook client's endpoints (and of the JWKS URL).
        if let Err(e) = centralino_base::jwks::JwksUrl::parse(&self.url, dev_mode) {
            out.push(format!("{key}.url: {e}"));
        } else if self.url.split("//").nth(1).is_some_and(|rest| {
            rest.split(['/', '?', '#'])
                .next()
                .is_some_and(|a| a.contains('@'))
        }) {
            out.push(format!(
                "{key}.url: must not carry credentials; the signature authenticates"
            ));
        }
        match parse_secret(&self.secret) {
            Ok(Some(_)) => {}
            Ok(None) => out.push(format!(
                "{key}.secret: required (hex:$(openssl rand -hex 32)); set it with \
                 CENTRALINO_WEBHOOKS__<index>__SECRET"
            )),
            Err(e) => out.push(format!("{key}.secret: {e}")),
        }
        if !dev_mode && self.secret.trim() == PLACEHOLDER_WEBHOOK_SECRET {
            out.push(format!(
                "{key}.secret: the example configuration's placeholder; set your own \
                 (hex:$(openssl rand -hex 32)) (accepted only in dev mode)"
            ));
        }
        if self.timeout_ms == 0 {
            out.push(format!("{key}.timeout_ms: must be positive"));
        }
        if self.max_attempts == 0 {
            out.push(format!("{key}.max_attempts: must be at least 1"));
        }
        if self.backoff_cap_ms < self.backoff_ms {
            out.push(format!(
                "{key}.backoff_cap_ms: must not be below backoff_ms"
            ));
        }
        out
    }
}

/// `[record]`: where what outlives a conversation is kept in cluster mode, and how long
/// archived conversations are kept. Standalone mode keeps the record in its embedded store
/// and reads only `retention_days`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// The PostgreSQL DSN (`postgres://user:password@host:5432/db?sslmode=verify-full`);
    /// required in cluster mode outside dev mode. It holds a password: set it with
    /// `CENTRALINO_RECORD__POSTGRES_URL`, not in the file.
    pub postgres_url: String,
    /// Connections per router.
    pub pool_size: u32,
    /// Archived conversations older than this many days are deleted (0 keeps them forever).
    pub retention_days: u32,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            postgres_url: String::new(),
            pool_size: 10,
            retention_days: 0,
        }
    }
}

impl RecordConfig {
    /// Returns the problems of `[record]`: a zero pool, and outside dev mode a DSN that
    /// still holds the example's placeholder.
    pub fn problems(&self, dev_mode: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.pool_size == 0 {
            out.push("record.pool_size: must be at least 1".to_string());
        }
        if !dev_mode && centralino_base::credentials::is_placeholder(&self.postgres_url) {
            out.push(
                "record.postgres_url: holds a placeholder (CHANGE-ME-…); set the real DSN with \
                 CENTRALINO_RECORD__POSTGRES_URL (accepted only in dev mode)"
                    .to_string(),
            );
        }
        out
    }

    /// Returns the connection settings of [`centralino_record::PgRecord`].
    pub fn pg(&self) -> centralino_record::PgConfig {
        centralino_record::PgConfig {
            pool_size: self.pool_size.max(1),
            ..centralino_record::PgConfig::new(self.postgres_url.clone())
        }
    }
}

/// An operator of the Admin API (`[[operators]]`): a bearer token, stored as its SHA-256
/// digest, and what it may do.
///
/// Tokens are high-entropy random values (`centralino new-token`), not passwords: a fast
/// digest is safe for them, and argon2 would cost ~20 ms on every admin call.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorConfig {
    /// Who holds the token (logs).
    pub name: String,
    /// `sha256:<64 hex digits>` of the token.
    pub token_hash: String,
    /// `admin`, `supervisor`, `integration`, `read-only`.
    pub scopes: Vec<centralino_base::credentials::Scope>,
}

/// The visitor secret of the example configuration: accepted in dev mode only.
pub const PLACEHOLDER_VISITOR_SECRET: &str =
    "hex:6578616d706c652d76697369746f722d7365637265742d6368616e67652d6d65";

/// The shop secret of the example configuration: accepted in dev mode only.
pub const PLACEHOLDER_SHOP_SECRET: &str =
    "hex:6578616d706c652d73686f702d7365637265742d6368616e67652d6d65212121";

/// Customer identity (issue 10): a `customer_id` is honoured only with an identity token
/// the shop's backend signed with `shop_secret`; everybody else is an anonymous visitor
/// with a visitor token signed with `visitor_secret` (see [`crate::identity`]).
///
/// Secrets are written `hex:<hex digits>` or `base64:<standard base64>` and hold at least
/// 32 bytes of key (`openssl rand -hex 32`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// HMAC-SHA256 key shared with the shop's backend; empty: no identity token is
    /// accepted and every customer is an anonymous visitor.
    pub shop_secret: String,
    /// HMAC-SHA256 key of visitor tokens; empty: a random key made at start (visitor tokens
    /// then last until the node restarts). Required in cluster mode outside dev mode, the
    /// same on every router.
    pub visitor_secret: String,
    /// A shop identity token whose expiry lies more than this many seconds after now is
    /// refused, so a leaked token is short-lived.
    pub max_token_lifetime_secs: u64,
    /// How long a visitor token stays valid (seconds); it is renewed at each start.
    pub visitor_token_max_age_secs: u64,
    /// Shop JWTs instead of (or beside) HMAC tokens: the JWKS file of the shop's signing
    /// keys (RS256 or ES256); empty: no JWT is accepted. The `sub` claim is the customer id.
    pub jwks_file: PathBuf,
    /// Required `iss` of shop JWTs.
    pub issuer: String,
    /// Required `aud` of shop JWTs.
    pub audience: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            shop_secret: String::new(),
            visitor_secret: String::new(),
            max_token_lifetime_secs: 24 * 3600,
            visitor_token_max_age_secs: 30 * 24 * 3600,
            jwks_file: PathBuf::new(),
            issuer: String::new(),
            audience: String::new(),
        }
    }
}

impl IdentityConfig {
    /// Returns the problems of this section's values (empty when they are valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in [
            ("shop_secret", &self.shop_secret),
            ("visitor_secret", &self.visitor_secret),
        ] {
            if let Err(e) = parse_secret(value) {
                problems.push(format!("identity.{name}: {e}"));
            }
        }
        if !self.jwks_file.as_os_str().is_empty()
            && (self.issuer.trim().is_empty() || self.audience.trim().is_empty())
        {
            problems.push("identity.jwks_file needs identity.issuer and identity.audience".into());
        }
        if self.max_token_lifetime_secs == 0 || self.visitor_token_max_age_secs == 0 {
            problems.push(
                "identity.max_token_lifetime_secs and visitor_token_max_age_secs must be positive"
                    .to_string(),
            );
        }
        problems
    }

    /// Returns the problems of the secrets, checked at start: outside `dev_mode` the
    /// example's placeholders are refused, and a router of a `cluster` needs a
    /// `visitor_secret` (every router must verify the visitor tokens of the others).
    pub fn secret_problems(&self, dev_mode: bool, cluster: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.jwks_file.as_os_str().is_empty() {
            // Read and parsed as the identity check will (a broken JWKS stops the start).
            if let Err(e) = centralino_base::jwks::KeySet::read(&self.jwks_file) {
                problems.push(format!("identity.jwks_file: {e}"));
            }
        }
        if dev_mode {
            return problems;
        }
        if self.shop_secret.trim() == PLACEHOLDER_SHOP_SECRET {
            problems.push(
                "identity.shop_secret: the example configuration's placeholder; set the shop's \
                 own (hex:$(openssl rand -hex 32)) or leave it empty (accepted only in dev mode)"
                    .to_string(),
            );
        }
        if self.visitor_secret.trim() == PLACEHOLDER_VISITOR_SECRET {
            problems.push(
                "identity.visitor_secret: the example configuration's placeholder; set your own \
                 (hex:$(openssl rand -hex 32)) (accepted only in dev mode)"
                    .to_string(),
            );
        }
        if cluster && self.visitor_secret.trim().is_empty() {
            problems.push(
                "identity.visitor_secret is required in cluster mode, the same on every router \
                 (hex:$(openssl rand -hex 32))"
                    .to_string(),
            );
        }
        problems
    }
}

/// Customer-facing texts of one language. `{name}`, `{reopens}`, `{language}`, `{wait}`
/// and `{to}` are replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Templates {
    /// Greeting for returning customers.
    pub welcome_back: Option<String>,
    /// The customer's language team closed; the conversation continues in `{language}`.
    pub handover: Option<String>,
    /// Nobody can answer now.
    pub offline: Option<String>,
    /// Everybody is busy or the queue is long.
    pub busy: Option<String>,
    /// The conversation moves on to `{to}`.
    pub transferred: Option<String>,
    /// Do not type sensitive data.
    pub sensitive: Option<String>,
}

/// Fewest key bytes accepted for a secret (the HMAC-SHA256 output length).
pub const MIN_KEY_BYTES: usize = 32;

/// Parses a secret written `hex:<digits>` or `base64:<standard base64>`: `None` when
/// empty, an error when malformed or shorter than [`MIN_KEY_BYTES`].
pub fn parse_secret(value: &str) -> Result<Option<Vec<u8>>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let key = if let Some(digits) = value.strip_prefix("hex:") {
        hex::decode(digits).map_err(|e| format!("not valid hex after \"hex:\": {e}"))?
    } else if let Some(text) = value.strip_prefix("base64:") {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("not valid base64 after \"base64:\": {e}"))?
    } else {
        return Err(
            "write the secret as hex:<digits> or base64:<text> (e.g. hex:$(openssl rand -hex 32))"
                .to_string(),
        );
    };
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "{} bytes of key, at least {MIN_KEY_BYTES} are needed (openssl rand -hex 32)",
            key.len()
        ));
    }
    Ok(Some(key))
}

/// Where the node listens and keeps its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// gRPC listen address (customer, agent and admin APIs, health, reflection).
    pub grpc_addr: String,
    /// Prometheus `/metrics` listen address; empty disables it.
    pub metrics_addr: String,
    /// Directory of the embedded store of standalone mode (live state and the record in one
    /// redb file); cluster mode keeps nothing durable there.
    pub data_dir: PathBuf,
    /// Bearer token of the admin API with every scope: dev mode only (use `[[operators]]`).
    pub admin_token: String,
    /// Actor threads (0 = one per core).
    pub actor_threads: usize,
    /// Name of this process in the cluster (default: host name, else a random id).
    pub node_id: String,
    /// Address other nodes dial (default: `grpc_addr`).
    pub advertise_addr: String,
    /// Listen address of the internal plane in cluster mode (`RouterInternal`, mutual
    /// TLS); required there, never the same as `grpc_addr`.
    pub internal_addr: String,
    /// Internal address other nodes dial (default: the bound `internal_addr`); it is what
    /// membership registers and partition claims name.
    pub advertise_internal_addr: String,
    /// Allows plaintext on a non-loopback public address (`--insecure`).
    pub insecure: bool,
    /// Dev mode (demo, tests; CLI `--dev`): plaintext internal plane and agent passwords,
    /// `admin_token` and the example's placeholder secrets are accepted. Never in production.
    pub dev_mode: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50051".to_string(),
            metrics_addr: "127.0.0.1:9464".to_string(),
            data_dir: PathBuf::from("data/centralino"),
            admin_token: String::new(),
            actor_threads: 0,
            node_id: String::new(),
            advertise_addr: String::new(),
            internal_addr: String::new(),
            advertise_internal_addr: String::new(),
            insecure: false,
            dev_mode: false,
        }
    }
}

/// Limits on what clients may send and on queue sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest message text, in bytes (8,192 by default): a customer's message and an
    /// agent's alike (the agent-node refuses longer ones before they reach the router).
    pub max_message_bytes: usize,
    /// Longest id or name field, in bytes.
    pub max_field_bytes: usize,
    /// Most conversations waiting in one department queue.
    pub max_queue_length: usize,
    /// Most messages in one transcript.
    pub max_transcript_messages: usize,
    /// Most open conversations on the node (closed ones waiting for a rating do not count).
    pub max_live_conversations: usize,
    // Limits no client can break (issue 10). Rates are per minute of the node's clock (a
    // simulated clock scales them with its speed), with a burst; 0 turns a rate limit off.
    /// Closed conversations kept in memory (rating window, late resumes); beyond this the
    /// oldest stop early and their rating window ends.
    pub max_closed_lingering: usize,
    /// How long a closed conversation that cannot be rated stays reachable (seconds).
    pub closed_linger_secs: u64,
    /// Conversation starts per minute from one client address.
    pub starts_per_minute_per_addr: u32,
    /// Starts one client address may make at once.
    pub starts_burst_per_addr: u32,
    /// Conversation starts per minute of one customer id.
    pub starts_per_minute_per_customer: u32,
    /// Starts one customer id may make at once.
    pub starts_burst_per_customer: u32,
    /// Customer messages per minute from one client address.
    pub messages_per_minute_per_addr: u32,
    /// Customer messages one client address may send at once.
    pub messages_burst_per_addr: u32,
    /// Customer messages per minute in one conversation.
    pub messages_per_minute_per_conversation: u32,
    /// Customer messages one conversation may send at once.
    pub messages_burst_per_conversation: u32,
    /// Keys (addresses, customers, conversations) one rate limiter remembers; beyond this
    /// it forgets the idle ones, then all.
    pub rate_limit_max_keys: usize,
    /// Agent login attempts per minute from one client address, successful ones too
    /// (0 = no limit; see [`centralino_base::config::LoginLimits`]).
    pub logins_per_minute_per_addr: u32,
    /// Login attempts one client address may make at once.
    pub login_burst_per_addr: u32,
    /// Password logins waiting for an argon2 verification slot before new ones are
    /// refused.
    pub max_logins_waiting: usize,
    /// Open event streams per conversation token.
    pub max_streams_per_conversation: usize,
    /// Open event streams per client connection (address and port).
    pub max_streams_per_connection: usize,
    /// Events buffered for one stream; a reader further behind is cut and resumes.
    pub stream_buffer_events: usize,
    /// Events kept in memory per conversation for resuming streams; older resume points
    /// are answered from the transcript (messages) or refused.
    pub max_events_kept: usize,
    /// A queued conversation with no customer activity ends after this long (seconds;
    /// 0 = never).
    pub idle_queued_secs: u64,
    /// An offline conversation with no customer activity ends after this long (seconds;
    /// 0 = never).
    pub idle_offline_secs: u64,
    /// Writes waiting for group commit; beyond this writes are refused (RESOURCE_EXHAUSTED).
    pub commit_queue_writes: usize,
    /// Largest group-commit batch in bytes (keys and values; etcd refuses requests over
    /// 1.5 MiB).
    pub commit_batch_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 8192,
            max_field_bytes: 256,
            max_queue_length: 1000,
            max_transcript_messages: 500,
            max_live_conversations: 200_000,
            max_closed_lingering: 20_000,
            closed_linger_secs: 10,
            starts_per_minute_per_addr: 1200,
            starts_burst_per_addr: 100,
            starts_per_minute_per_customer: 10,
            starts_burst_per_customer: 5,
            messages_per_minute_per_addr: 6000,
            messages_burst_per_addr: 500,
            messages_per_minute_per_conversation: 120,
            messages_burst_per_conversation: 30,
            rate_limit_max_keys: 100_000,
            logins_per_minute_per_addr: 60,
            login_burst_per_addr: 30,
            max_logins_waiting: 64,
            max_streams_per_conversation: 4,
            max_streams_per_connection: 16,
            stream_buffer_events: 256,
            max_events_kept: 1000,
            idle_queued_secs: 3600,
            idle_offline_secs: 1800,
            commit_queue_writes: 100_000,
            commit_batch_bytes: 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    /// Largest group-commit batch etcd accepts, with room for the request's framing.
    pub const MAX_COMMIT_BATCH_BYTES: usize = 1_500_000;

    /// Returns what is wrong with these limits.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let positive = [
            ("max_live_conversations", self.max_live_conversations),
            ("max_closed_lingering", self.max_closed_lingering),
            ("rate_limit_max_keys", self.rate_limit_max_keys),
            (
                "max_streams_per_conversation",
                self.max_streams_per_conversation,
            ),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
            ("stream_buffer_events", self.stream_buffer_events),
            ("max_events_kept", self.max_events_kept),
            ("commit_queue_writes", self.commit_queue_writes),
        ];
        for (name, value) in positive {
            if value == 0 {
                problems.push(format!("limits.{name} must be positive"));
            }
        }
        let rates = [
            (
                "starts",
                self.starts_per_minute_per_addr,
                self.starts_burst_per_addr,
                "addr",
            ),
            (
                "starts",
                self.starts_per_minute_per_customer,
                self.starts_burst_per_customer,
                "customer",
            ),
            (
                "messages",
                self.messages_per_minute_per_addr,
                self.messages_burst_per_addr,
                "addr",
            ),
            (
                "messages",
                self.messages_per_minute_per_conversation,
                self.messages_burst_per_conversation,
                "conversation",
            ),
        ];
        for (what, rate, burst, per) in rates {
            if rate > 0 && burst == 0 {
                problems.push(format!(
                    "limits.{what}_burst_per_{per} must be positive when limits.{what}_per_minute_per_{per} is set"
                ));
            }
        }
        if self.commit_batch_bytes < 64 * 1024
            || self.commit_batch_bytes > Self::MAX_COMMIT_BATCH_BYTES
        {
            problems.push(format!(
                "limits.commit_batch_bytes must be between 65536 and {} (etcd refuses larger requests)",
                Self::MAX_COMMIT_BATCH_BYTES
            ));
        }
        problems
    }

    /// Turns the rate limits off (tests and benchmarks, whose clients act faster than
    /// people, from one address).
    pub fn without_rate_limits(mut self) -> Self {
        self.starts_per_minute_per_addr = 0;
        self.starts_per_minute_per_customer = 0;
        self.messages_per_minute_per_addr = 0;
        self.messages_per_minute_per_conversation = 0;
        self.logins_per_minute_per_addr = 0;
        self
    }
}

/// Routing settings shared by all departments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// How long a customer stays bound to their last agent (seconds; default 7 days).
    pub sticky_window_secs: u64,
    /// How long a returning customer waits for their last agent when that agent is full.
    pub sticky_wait_secs: u64,
    /// How long a closed conversation still accepts a rating (seconds).
    pub rating_window_secs: u64,
    /// Service-level threshold for metrics and reports (seconds).
    pub service_level_secs: u64,
    /// IANA time zone whose local midnight starts the admin snapshot's "today" (ASA and
    /// service level of the day); when empty, the first `[[teams]]` schedule's, else UTC.
    pub day_timezone: String,
    /// Most transfers of one conversation (stops ping-pong).
    pub max_transfers: u32,
    /// Skill that marks supervisors (transfer target "supervisor").
    pub supervisor_skill: String,
    /// From this queue position on, the customer is offered alternatives to waiting.
    pub busy_queue_length: u32,
    /// From this estimated wait (seconds) on, the customer is offered alternatives.
    pub busy_wait_secs: u64,
    /// A customer coming back within this time after a completed conversation counts as a
    /// re-contact (seconds; default 7 days).
    pub recontact_window_secs: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            sticky_window_secs: 7 * 24 * 3600,
            sticky_wait_secs: 60,
            rating_window_secs: 600,
            service_level_secs: 20,
            day_timezone: String::new(),
            max_transfers: 3,
            supervisor_skill: "supervisor".to_string(),
            busy_queue_length: 20,
            busy_wait_secs: 600,
            recontact_window_secs: 7 * 24 * 3600,
        }
    }
}

/// A department with its queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DepartmentConfig {
    /// Name used by clients, e.g. `sales`.
    pub name: String,
    /// Name shown to people, e.g. `Vendite`.
    pub display_name: String,
    /// Skill an agent needs to serve it; the department name when empty.
    pub skill: String,
    /// How to pick among qualified agents.
    pub strategy: Strategy,
    /// Assign without waiting for the agent's accept.
    pub auto_accept: bool,
    /// Routing steps, by time waited; an empty list means one step with proficiency ≥ 1.
    pub steps: Vec<StepConfig>,
}

impl Default for DepartmentConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            display_name: String::new(),
            skill: String::new(),
            strategy: Strategy::LongestIdle,
            auto_accept: false,
            steps: Vec::new(),
        }
    }
}

impl DepartmentConfig {
    /// Returns the skill agents need for this department.
    pub fn skill(&self) -> &str {
        if self.skill.is_empty() {
            &self.name
        } else {
            &self.skill
        }
    }
}

/// Agent selection strategy of a department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent idle for the longest time (default).
    #[default]
    LongestIdle,
    /// The agent with the lowest load relative to capacity.
    LeastLoaded,
    /// The agent with the highest proficiency in the department's skill.
    MostSkilled,
}

/// One routing step: from `after_secs` of waiting on, these requirements hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepConfig {
    /// Seconds waited from which this step applies.
    pub after_secs: u64,
    /// Minimum proficiency in the department skill and the language skill.
    pub min_proficiency: u8,
    /// Move the conversation to this department (keeping its age) when the step begins.
    pub overflow_to: Option<String>,
}

impl Default for StepConfig {
    fn default() -> Self {
        Self {
            after_secs: 0,
            min_proficiency: 1,
            overflow_to: None,
        }
    }
}

/// A rule on the visitor context.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Matches when the current page contains this text.
    pub page_contains: String,
    /// Department to route to.
    pub department: Option<String>,
    /// Priority to give (`normal`, `high`, `vip`).
    pub priority: Option<PriorityName>,
}

/// Priority class names in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityName {
    /// Normal.
    Normal,
    /// High (e.g. customers at checkout).
    High,
    /// VIP customers.
    Vip,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, unknown keys, wrong types or bad environment overrides.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// Values that do not fit together.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads the file at `path` (the built-in example when `None`), applies `CENTRALINO_*`
    /// environment overrides and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => EXAMPLE_CONFIG.to_string(),
        };
        Self::from_toml(&text, std::env::vars())
    }

    /// Parses `text`, applies the overrides in `env` and validates the result.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let doc = load_document(Some(text), env).map_err(ConfigError::Parse)?;
        let config: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Returns the agent-node part of this configuration.
    pub fn agent_node(&self) -> AgentNodeConfig {
        AgentNodeConfig {
            clock: self.clock.clone(),
            desk: self.desk.clone(),
            teams: self.teams.clone(),
            agents: self.agents.clone(),
            languages: self.languages.clone(),
            handover: self.handover.clone(),
            canned: self.canned.clone(),
            cluster: self.cluster.clone(),
            node: centralino_base::config::ProcessConfig {
                grpc_addr: self.node.grpc_addr.clone(),
                metrics_addr: self.node.metrics_addr.clone(),
                node_id: self.node.node_id.clone(),
                advertise_addr: self.node.advertise_addr.clone(),
                actor_threads: self.node.actor_threads,
                internal_addr: self.node.internal_addr.clone(),
                advertise_internal_addr: self.node.advertise_internal_addr.clone(),
                insecure: self.node.insecure,
                dev_mode: self.node.dev_mode,
            },
            tls: self.tls.clone(),
            oidc: self.oidc.clone(),
            limits: centralino_base::config::LoginLimits {
                logins_per_minute_per_addr: self.limits.logins_per_minute_per_addr,
                login_burst_per_addr: self.limits.login_burst_per_addr,
                max_logins_waiting: self.limits.max_logins_waiting,
                rate_limit_max_keys: self.limits.rate_limit_max_keys,
            },
            web: self.web.clone(),
        }
    }

    /// Returns the problems of the configured secrets, checked at start (see
    /// [`AgentNodeConfig::credential_problems`] for the agents): outside dev mode the
    /// `admin_token` is refused (use `[[operators]]`), and operators' token digests must be
    /// well formed, not the example's, with at least one known scope.
    pub fn credential_problems(&self) -> Vec<String> {
        use centralino_base::credentials::{check_token_hash, is_placeholder};
        let dev = self.node.dev_mode;
        let mut out = self.agent_node().credential_problems();
        out.extend(self.record.problems(dev));
        if !dev && !self.node.admin_token.is_empty() {
            out.push(if is_placeholder(&self.node.admin_token) {
                "node.admin_token: the example configuration's placeholder token; node.admin_token \
                 is accepted only in dev mode — configure [[operators]] with token_hash \
                 (`centralino new-token`)"
                    .to_string()
            } else {
                "node.admin_token: accepted only in dev mode; configure [[operators]] with \
                 token_hash (`centralino new-token`)"
                    .to_string()
            });
        }
        let mut hooks = BTreeSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let key = format!("webhooks[{i}] (name {:?})", hook.name);
            out.extend(hook.problems(&key, dev));
            if !hooks.insert(hook.name.as_str()) {
                out.push(format!("{key}.name: configured twice"));
            }
        }
        let mut names = BTreeSet::new();
        for (i, op) in self.operators.iter().enumerate() {
            let key = format!("operators[{i}] (name {:?})", op.name);
            if op.name.trim().is_empty() {
                out.push(format!("{key}.name: must not be empty"));
            } else if !names.insert(op.name.as_str()) {
                out.push(format!("{key}.name: configured twice"));
            }
            if let Err(e) = check_token_hash(&op.token_hash) {
                out.push(format!("{key}.token_hash: {e}"));
            } else if !dev && is_placeholder(&op.token_hash) {
                out.push(format!(
                    "{key}.token_hash: the example configuration's published token; make a real \
                     one with `centralino new-token` (accepted only in dev mode)"
                ));
            }
            if op.scopes.is_empty() {
                out.push(format!("{key}.scopes: at least one scope is required"));
            }
        }
        out
    }

    /// Returns the department called `name`.
    pub fn department(&self, name: &str) -> Option<&DepartmentConfig> {
        self.departments.iter().find(|d| d.name == name)
    }

    /// Returns the languages some team serves.
    pub fn languages(&self) -> BTreeSet<&str> {
        self.teams.iter().map(|t| t.language.as_str()).collect()
    }

    /// Returns the time zone of the snapshot's "today": `routing.day_timezone`, else the
    /// first team's schedule's, else UTC; an unknown name is an error.
    pub fn day_timezone(&self) -> Result<chrono_tz::Tz, String> {
        let name = if self.routing.day_timezone.trim().is_empty() {
            self.teams
                .iter()
                .find_map(|t| t.schedule.as_ref().map(|s| s.timezone.as_str()))
                .unwrap_or("")
        } else {
            self.routing.day_timezone.as_str()
        };
        let name = name.trim();
        if name.is_empty() {
            return Ok(chrono_tz::Tz::UTC);
        }
        name.parse::<chrono_tz::Tz>().map_err(|_| {
            format!(
                "routing.day_timezone: unknown time zone {name:?}: expected an IANA name such as \"Europe/Rome\""
            )
        })
    }

    /// Returns a list of problems (empty when the configuration is valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.agent_node().problems();
        if let Err(problem) = self.day_timezone() {
            problems.push(problem);
        }
        if self.departments.is_empty() {
            problems.push("at least one department is required".to_string());
        }
        let mut names = BTreeSet::new();
        for d in &self.departments {
            if d.name.trim().is_empty() {
                problems.push("a department has an empty name".to_string());
            }
            if !names.insert(d.name.as_str()) {
                problems.push(format!("department {:?} is configured twice", d.name));
            }
            let mut last = None;
            for step in &d.steps {
                if !(1..=5).contains(&step.min_proficiency) {
                    problems.push(format!(
                        "department {:?}: step min_proficiency must be 1..=5",
                        d.name
                    ));
                }
                if last.is_some_and(|l| step.after_secs <= l) {
                    problems.push(format!(
                        "department {:?}: steps must have increasing after_secs",
                        d.name
                    ));
                }
                last = Some(step.after_secs);
                if let Some(target) = &step.overflow_to {
                    if target == &d.name {
                        problems.push(format!("department {:?} overflows to itself", d.name));
                    }
                }
            }
        }
        for d in &self.departments {
            for step in &d.steps {
                if let Some(target) = &step.overflow_to {
                    if !names.contains(target.as_str()) {
                        problems.push(format!(
                            "department {:?}: overflow_to unknown department {target:?}",
                            d.name
                        ));
                    }
                }
            }
        }
        for rule in &self.rules {
            if rule.page_contains.is_empty() {
                problems.push("a rule has an empty page_contains".to_string());
            }
            if let Some(dept) = &rule.department {
                if !names.contains(dept.as_str()) {
                    problems.push(format!("rule: unknown department {dept:?}"));
                }
            }
        }
        if self.limits.max_message_bytes == 0 || self.limits.max_queue_length == 0 {
            problems.push("limits must be positive".to_string());
        }
        problems.extend(self.identity.problems());
        problems.extend(self.limits.problems());
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_configuration_is_valid_and_describes_the_shop() {
        let config = Config::from_toml(EXAMPLE_CONFIG, Vec::new()).unwrap();
        let names: Vec<&str> = config.departments.iter().map(|d| d.name.as_str()).collect();
        for dept in ["sales", "support", "shipping", "billing"] {
            assert!(names.contains(&dept), "missing department {dept}");
        }
        assert!(config.agents.len() >= 16);
        assert!(config.agents.iter().any(|a| a.capacity == 2));
        assert_eq!(config.languages(), ["en", "it"].into_iter().collect());
    }

    #[test]
    fn unknown_keys_and_bad_references_are_rejected() {
        let err = Config::from_toml("[node]\ngrpc_adr = \"x\"\n", Vec::new()).unwrap_err();
        assert!(err.to_string().contains("grpc_adr"), "{err}");
        let text = "[[departments]]\nname = \"sales\"\nsteps = [{ after_secs = 0, overflow_to = \"nope\" }]\n";
        let err = Config::from_toml(text, Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("unknown department \"nope\""),
            "{err}"
        );
    }

    #[test]
    fn the_day_time_zone_is_configured_or_the_first_teams_and_checked() {
        let mut config = Config::from_toml(EXAMPLE_CONFIG, Vec::new()).unwrap();
        assert_eq!(config.day_timezone(), Ok(chrono_tz::Europe::Rome));
        config.routing.day_timezone = String::new();
        for team in &mut config.teams {
            team.schedule = None;
        }
        assert_eq!(config.day_timezone(), Ok(chrono_tz::Tz::UTC));
        if let Some(team) = config.teams.first_mut() {
            team.schedule = Some(centralino_base::schedule::ScheduleConfig {
                timezone: "America/New_York".into(),
                ..Default::default()
            });
        }
        assert_eq!(config.day_timezone(), Ok(chrono_tz::America::New_York));
        config.routing.day_timezone = "Mars/Olympus".into();
        assert!(
            config
                .problems()
                .iter()
                .any(|p| p.contains("routing.day_timezone") && p.contains("Mars/Olympus")),
            "{:?}",
            config.problems()
        );
    }

    #[test]
    fn identity_secrets_are_checked() {
        let example = Config::from_toml(EXAMPLE_CONFIG, Vec::new()).unwrap();
        assert_eq!(example.identity.shop_secret, PLACEHOLDER_SHOP_SECRET);
        assert_eq!(example.identity.visitor_secret, PLACEHOLDER_VISITOR_SECRET);
        let refused = example.identity.secret_problems(false, false);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("identity.shop_secret"), "{refused:?}");
        assert!(example.identity.secret_problems(true, true).is_empty());
        let own = IdentityConfig {
            shop_secret: format!("base64:{}", "c2hvcC1zZWNyZXQtb2YtdGhlLXNob3AtMzItYnl0ZXM="),
            ..IdentityConfig::default()
        };
        assert!(own.problems().is_empty(), "{:?}", own.problems());
        assert!(own.secret_problems(false, false).is_empty());
        let cluster = own.secret_problems(false, true);
        assert!(
            cluster[0].contains("visitor_secret is required"),
            "{cluster:?}"
        );
        let env = vec![(
            "CENTRALINO_IDENTITY__SHOP_SECRET".to_string(),
            "hex:abcd".to_string(),
        )];
        let err = Config::from_toml(EXAMPLE_CONFIG, env).unwrap_err();
        assert!(err.to_string().contains("identity.shop_secret"), "{err}");
    }

    #[test]
    fn limits_have_defaults_and_are_validated() {
        let config = Config::from_toml(EXAMPLE_CONFIG, Vec::new()).unwrap();
        assert_eq!(config.limits.max_streams_per_conversation, 4);
        assert!(config.limits.commit_batch_bytes <= LimitsConfig::MAX_COMMIT_BATCH_BYTES);
        let env =
            |key: &str, value: &str| vec![(format!("CENTRALINO_LIMITS__{key}"), value.to_string())];
        let err =
            Config::from_toml(EXAMPLE_CONFIG, env("COMMIT_BATCH_BYTES", "2000000")).unwrap_err();
        assert!(err.to_string().contains("commit_batch_bytes"), "{err}");
        let err = Config::from_toml(EXAMPLE_CONFIG, env("STARTS_BURST_PER_ADDR", "0")).unwrap_err();
        assert!(err.to_string().contains("starts_burst_per_addr"), "{err}");
        let err = Config::from_toml(EXAMPLE_CONFIG, env("MAX_EVENTS_KEPT", "0")).unwrap_err();
        assert!(err.to_string().contains("max_events_kept"), "{err}");
        let off =
            Config::from_toml(EXAMPLE_CONFIG, env("STARTS_PER_MINUTE_PER_ADDR", "0")).unwrap();
        assert_eq!(off.limits.starts_per_minute_per_addr, 0);
        // The login limits reach the agent-node part, and are validated there once.
        let logins = config.agent_node().limits;
        assert_eq!(
            (
                logins.logins_per_minute_per_addr,
                logins.login_burst_per_addr,
                logins.max_logins_waiting
            ),
            (60, 30, 64)
        );
        let err = Config::from_toml(EXAMPLE_CONFIG, env("LOGIN_BURST_PER_ADDR", "0")).unwrap_err();
        assert_eq!(
            err.to_string().matches("login_burst_per_addr").count(),
            1,
            "{err}"
        );
        let err = Config::from_toml(EXAMPLE_CONFIG, env("MAX_LOGINS_WAITING", "0")).unwrap_err();
        assert!(err.to_string().contains("max_logins_waiting"), "{err}");
        let off =
            Config::from_toml(EXAMPLE_CONFIG, env("LOGINS_PER_MINUTE_PER_ADDR", "0")).unwrap();
        assert_eq!(off.agent_node().limits.logins_per_minute_per_addr, 0);
    }

    #[test]
    fn environment_overrides_apply() {
        let env = vec![(
            "CENTRALINO_LIMITS__MAX_QUEUE_LENGTH".to_string(),
            "7".to_string(),
        )];
        let config = Config::from_toml(EXAMPLE_CONFIG, env).unwrap();
        assert_eq!(config.limits.max_queue_length, 7);
    }

    #[test]
    fn webhooks_need_https_a_real_secret_and_unique_names() {
        let hook = |name: &str, url: &str, secret: &str| {
            format!("\n[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n")
        };
        let text = format!(
            "{EXAMPLE_CONFIG}{}{}",
            hook(
                "crm",
                "https://crm.example.com/hook",
                PLACEHOLDER_WEBHOOK_SECRET
            ),
            hook(
                "mail",
                "http://127.0.0.1:9000/hook",
                PLACEHOLDER_WEBHOOK_SECRET
            ),
        );
        let mut config = Config::from_toml(&text, Vec::new()).unwrap();
        assert_eq!(config.webhooks.len(), 2);
        assert_eq!(config.webhooks[0].max_attempts, 8, "default");
        assert_eq!(config.webhooks[0].timeout_ms, 5_000, "default");
        config.node.dev_mode = false;
        let problems = config.credential_problems().join("\n");
        assert_eq!(
            problems.matches("placeholder; set your own").count(),
            2,
            "{problems}"
        );
        // The secret from the environment (a Secret) replaces the placeholder.
        let real = format!("hex:{}", "ab".repeat(32));
        let env = vec![
            ("CENTRALINO_WEBHOOKS__0__SECRET".to_string(), real.clone()),
            ("CENTRALINO_WEBHOOKS__1__SECRET".to_string(), real.clone()),
        ];
        let mut config = Config::from_toml(&text, env).unwrap();
        config.node.dev_mode = false;
        assert!(
            !config.credential_problems().join("\n").contains("webhooks"),
            "{:?}",
            config.credential_problems()
        );
        // Plain http off loopback, a short secret, an empty name, a name twice.
        config.webhooks[1].url = "http://crm.example.com/hook".into();
        config.webhooks[1].secret = "hex:00".into();
        config.webhooks.push(config.webhooks[1].clone());
        config.webhooks[0].name = String::new();
        let problems = config.credential_problems().join("\n");
        assert!(
            problems.contains("webhooks[1] (name \"mail\").url: plain http://"),
            "{problems}"
        );
        assert!(
            problems.contains("webhooks[1] (name \"mail\").secret: 1 bytes"),
            "{problems}"
        );
        assert!(
            problems.contains("webhooks[0] (name \"\").name: must not be empty"),
            "{problems}"
        );
        assert!(
            problems.contains("webhooks[2] (name \"mail\").name: configured twice"),
            "{problems}"
        );
        // Dev mode accepts plain http anywhere and the placeholder.
        config.node.dev_mode = true;
        config.webhooks[1].secret = PLACEHOLDER_WEBHOOK_SECRET.into();
        let problems = config.credential_problems().join("\n");
        assert!(!problems.contains(".url:"), "{problems}");
        assert!(!problems.contains("placeholder"), "{problems}");
    }
}
