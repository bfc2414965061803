//! The agent-node's part of the configuration file: teams, agents, credentials, desk timers
//! and the clock. The router's configuration embeds it (one TOML file for the whole node).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Agent-node configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentNodeConfig {
    /// Simulation or system time.
    pub clock: ClockConfig,
    /// Offer, wrap-up and disconnect timers.
    pub desk: DeskConfig,
    /// Teams agents belong to.
    pub teams: Vec<TeamConfig>,
    /// Agents allowed to log in.
    pub agents: Vec<AgentConfig>,
    /// Language fallback chains.
    pub languages: LanguagesConfig,
    /// What happens to active conversations when their team's shift ends.
    pub handover: HandoverConfig,
    /// Canned responses agents find by shortcut.
    pub canned: Vec<CannedConfig>,
    /// etcd, leases and drain (cluster mode).
    pub cluster: ClusterConfig,
    /// This process: listen addresses and its name in the cluster (the `[node]` section
    /// shared with the router; keys only a router reads are ignored here).
    pub node: ProcessConfig,
    /// TLS of the public listener (agent desktops).
    pub tls: TlsConfig,
    /// OIDC/JWT logins (agents may present an ID token instead of a password).
    pub oidc: crate::oidc::OidcConfig,
    /// Limits on logins (the login keys of the shared `[limits]` section; keys only a
    /// router reads are ignored here).
    pub limits: LoginLimits,
    /// The browser side of the public listener.
    pub web: WebConfig,
}

/// Limits on agent logins, from `[limits]` (issue 10).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginLimits {
    /// Login attempts per minute from one client address, successful ones too (0 = no
    /// limit). Agents of one office often share one address (NAT): allow a shift's logins.
    pub logins_per_minute_per_addr: u32,
    /// Login attempts one client address may make at once.
    pub login_burst_per_addr: u32,
    /// Password logins waiting for an argon2 verification slot; beyond this new ones are
    /// refused (RESOURCE_EXHAUSTED) instead of queueing without bound.
    pub max_logins_waiting: usize,
    /// Client addresses the login rate limit remembers; beyond this it forgets the idle
    /// ones, then all.
    pub rate_limit_max_keys: usize,
}

impl LoginLimits {
    /// Returns what is wrong with these limits.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.logins_per_minute_per_addr > 0 && self.login_burst_per_addr == 0 {
            out.push(
                "limits.login_burst_per_addr must be positive when limits.logins_per_minute_per_addr is set"
                    .to_string(),
            );
        }
        if self.max_logins_waiting == 0 {
            out.push("limits.max_logins_waiting must be positive".to_string());
        }
        out
    }
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            logins_per_minute_per_addr: 60,
            login_burst_per_addr: 30,
            max_logins_waiting: 64,
            rate_limit_max_keys: 100_000,
        }
    }
}

/// TLS of a public listener (`[tls]`): empty files = plaintext (allowed on loopback
/// addresses, elsewhere only with `[node] insecure = true`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The listener's certificate chain (PEM).
    pub cert_file: String,
    /// Its private key (PEM).
    pub key_file: String,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca_file: String,
}

impl TlsConfig {
    /// Returns the files, None for plaintext, or what is wrong.
    pub fn files(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        crate::tls::TlsFiles::from_config(
            &self.cert_file,
            &self.key_file,
            &self.client_ca_file,
            "tls",
        )
    }
}

/// Mutual TLS of the internal plane (`[cluster.tls]`): the cluster CA and this node's
/// certificate, whose URI SAN names its role and id (`spiffe://centralino/<role>/<id>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// The cluster CA (PEM): peers' certificates must be signed by it.
    pub ca_file: String,
    /// This node's certificate chain (PEM), served and presented to peers.
    pub cert_file: String,
    /// Its private key (PEM).
    pub key_file: String,
}

/// Cluster mode: where etcd is and how membership and drain behave. Shared by routers and
/// agent-nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:2379`); a comma-separated string works too, which is
    /// what `CENTRALINO_CLUSTER__ETCD_ENDPOINTS=a,b,c` gives.
    #[serde(deserialize_with = "endpoints")]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd (several clusters can share one etcd).
    pub prefix: String,
    /// TTL of membership leases and partition claims, in wall seconds.
    pub lease_ttl_secs: u64,
    /// How long a router may take to hand its partitions over on SIGTERM (wall seconds).
    pub drain_budget_secs: u64,
    /// Deadline of one etcd request including its retries across endpoints (wall ms).
    pub request_timeout_ms: u64,
    /// Most operations in one etcd transaction of the group-commit batcher (etcd allows
    /// 128); 1 commits every writer on its own (for comparison).
    pub group_commit_max_ops: usize,
    /// Mutual TLS between the nodes (required in cluster mode unless `[node] dev_mode`).
    pub tls: ClusterTlsConfig,
    /// CA of etcd's server certificates (PEM); set it to use `https://` endpoints.
    pub etcd_ca_file: String,
    /// Client certificate presented to etcd (PEM; etcd's `--client-cert-auth`).
    pub etcd_cert_file: String,
    /// Its private key (PEM).
    pub etcd_key_file: String,
    /// etcd user (etcd's authentication); empty = none.
    pub etcd_username: String,
    /// That user's password.
    pub etcd_password: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            etcd_endpoints: Vec::new(),
            prefix: "/centralino".to_string(),
            lease_ttl_secs: 3,
            drain_budget_secs: 30,
            request_timeout_ms: 5000,
            group_commit_max_ops: 120,
            tls: ClusterTlsConfig::default(),
            etcd_ca_file: String::new(),
            etcd_cert_file: String::new(),
            etcd_key_file: String::new(),
            etcd_username: String::new(),
            etcd_password: String::new(),
        }
    }
}

impl ClusterConfig {
    /// Returns the configuration problems of cluster mode over etcd.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.endpoint_problems();
        out.extend(self.settings_problems());
        out
    }

    /// Returns the problems of the etcd endpoints.
    fn endpoint_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.etcd_endpoints.is_empty() {
            out.push(
                "cluster.etcd_endpoints: cluster mode needs at least one etcd endpoint".into(),
            );
        }
        for e in &self.etcd_endpoints {
            if !self.etcd_ca_file.is_empty() && e.starts_with("http://") {
                out.push(format!(
                    "cluster.etcd_endpoints: {e:?} is plaintext but etcd_ca_file is set (https://)"
                ));
            }
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 10 {
                out.push(format!(
                    "cluster.etcd_endpoints: {e:?} is not an http(s) URL"
                ));
            }
        }
        out
    }

    /// Returns the files of the internal plane's mutual TLS; None (plaintext) only in dev
    /// mode with `[cluster.tls]` empty.
    pub fn internal_tls(&self, dev_mode: bool) -> Result<Option<crate::tls::TlsFiles>, String> {
        let t = &self.tls;
        if t.ca_file.is_empty() && t.cert_file.is_empty() && t.key_file.is_empty() {
            return if dev_mode {
                Ok(None)
            } else {
                Err(
                    "cluster.tls: cluster mode needs ca_file, cert_file and key_file \
                     (mutual TLS between the nodes), or [node] dev_mode = true"
                        .into(),
                )
            };
        }
        if t.ca_file.is_empty() || t.cert_file.is_empty() || t.key_file.is_empty() {
            return Err("cluster.tls: ca_file, cert_file and key_file go together".into());
        }
        crate::tls::TlsFiles::from_config(&t.cert_file, &t.key_file, &t.ca_file, "cluster.tls")
    }

    /// Returns the configuration problems of cluster mode whatever the coordination store
    /// (etcd, or an in-memory twin that needs no endpoints).
    pub fn settings_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.etcd_cert_file.is_empty() != self.etcd_key_file.is_empty() {
            out.push("cluster.etcd_cert_file and cluster.etcd_key_file go together".into());
        }
        if !self.etcd_password.is_empty() && self.etcd_username.is_empty() {
            out.push("cluster.etcd_password: set etcd_username too".into());
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            out.push("cluster.prefix: must start with '/' and not end with '/'".into());
        }
        if !(1..=60).contains(&self.lease_ttl_secs) {
            out.push("cluster.lease_ttl_secs: must be 1..=60".into());
        }
        if self.drain_budget_secs == 0 {
            out.push("cluster.drain_budget_secs: must be at least 1".into());
        }
        if !(1..=120).contains(&self.group_commit_max_ops) {
            out.push("cluster.group_commit_max_ops: must be 1..=120".into());
        }
        if self.request_timeout_ms < 100 {
            out.push("cluster.request_timeout_ms: must be at least 100".into());
        }
        out
    }
}

fn endpoints<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// What an agent-node process reads of the `[node]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessConfig {
    /// gRPC listen address (agent desktops, health).
    pub grpc_addr: String,
    /// Listen address of the internal plane in cluster mode (`AgentNodeInternal`, mutual
    /// TLS); required there, never the same as `grpc_addr`.
    pub internal_addr: String,
    /// Internal address other nodes dial (default: the bound `internal_addr`); it is what
    /// membership registers.
    pub advertise_internal_addr: String,
    /// Allows plaintext on a non-loopback public address (`--insecure`).
    pub insecure: bool,
    /// Prometheus `/metrics` listen address; empty disables it.
    pub metrics_addr: String,
    /// Name of this process in the cluster (default: host name, else a random id).
    pub node_id: String,
    /// Address other nodes dial (default: `grpc_addr`).
    pub advertise_addr: String,
    /// Actor threads (0 = one per core).
    pub actor_threads: usize,
    /// Dev mode (demo, tests): plaintext internal plane and agent passwords, the
    /// `admin_token` and the example's placeholder secrets are accepted. Never in production.
    pub dev_mode: bool,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            grpc_addr: "127.0.0.1:50061".to_string(),
            internal_addr: String::new(),
            advertise_internal_addr: String::new(),
            insecure: false,
            metrics_addr: "127.0.0.1:9474".to_string(),
            node_id: String::new(),
            advertise_addr: String::new(),
            actor_threads: 0,
            dev_mode: false,
        }
    }
}

/// Language fallback chains, e.g. `fallback = { it = ["en"] }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguagesConfig {
    /// Per customer language, the languages to serve in when its teams are closed.
    pub fallback: BTreeMap<String, Vec<String>>,
}

/// Policy for conversations still active when their agent's team closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActivePolicy {
    /// The conversation stays with its agent until closed (default).
    #[default]
    Finish,
    /// After `grace_secs`, the conversation moves to the fallback team with its transcript.
    TransferAfter,
}

/// Shift-end handover settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandoverConfig {
    /// `finish` or `transfer_after`.
    pub active: ActivePolicy,
    /// Grace period before active conversations move (with `transfer_after`).
    pub grace_secs: u64,
    /// At opening time, pull conversations still waiting in the fallback language back.
    pub pull_back: bool,
}

impl Default for HandoverConfig {
    fn default() -> Self {
        Self {
            active: ActivePolicy::Finish,
            grace_secs: 300,
            pull_back: false,
        }
    }
}

/// A canned response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CannedConfig {
    /// Shortcut, e.g. `/spedizione`.
    pub shortcut: String,
    /// Department it belongs to (empty: all).
    pub department: String,
    /// Language of the text.
    pub language: String,
    /// The text.
    pub text: String,
}

/// Which clock the node reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// `system` (production) or `simulated`.
    pub mode: ClockMode,
    /// Simulated start instant (RFC 3339); now when absent.
    pub start: Option<String>,
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// Wall time (Unix ms) at which the simulated clock reads `start`; processes given the
    /// same anchor share one simulated time (a simulated cluster). Absent: process start.
    pub anchor_unix_ms: Option<i64>,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            mode: ClockMode::System,
            start: None,
            speed: 1.0,
            anchor_unix_ms: None,
        }
    }
}

/// Clock kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// The operating system's clock.
    System,
    /// A simulation clock (start instant + speed factor).
    Simulated,
}

/// Timers of the agent desk, in simulated seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeskConfig {
    /// How long an offer waits for accept or decline.
    pub offer_timeout_secs: u64,
    /// Missed offers in a row after which the agent is set away.
    pub max_missed_offers: u32,
    /// How long a disconnected agent keeps their conversations.
    pub disconnect_grace_secs: u64,
    /// After-chat work time during which the slot stays taken.
    pub wrap_up_secs: u64,
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            offer_timeout_secs: 30,
            max_missed_offers: 3,
            disconnect_grace_secs: 60,
            wrap_up_secs: 20,
        }
    }
}

/// A team of agents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamConfig {
    /// Team name, e.g. `italian`.
    pub name: String,
    /// The language the team serves, e.g. `it`.
    pub language: String,
    /// Working hours; always open when absent.
    pub schedule: Option<crate::schedule::ScheduleConfig>,
}

/// An agent allowed to log in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Login id.
    pub id: String,
    /// Name shown to customers.
    pub name: String,
    /// Plaintext login secret: accepted in dev mode only.
    pub password: String,
    /// argon2id PHC string of the login secret (`centralino hash-password`).
    pub password_hash: String,
    /// Team name.
    pub team: String,
    /// Maximum concurrent chats.
    pub capacity: u32,
    /// Skills with proficiency 1–5, e.g. `{ "lang:it" = 5, sales = 3 }`.
    pub skills: BTreeMap<String, u8>,
    /// With `[oidc]`: the value of the ID token's agent claim (`oidc.agent_claim`, `sub` by
    /// default) that logs in as this agent when it is not the agent's id — an identity
    /// provider's opaque subject. Empty: the claim must be the id.
    pub oidc_subject: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            password: String::new(),
            password_hash: String::new(),
            team: String::new(),
            capacity: 3,
            skills: BTreeMap::new(),
            oidc_subject: String::new(),
        }
    }
}

impl AgentNodeConfig {
    /// Returns the problems of the agents' credentials and of `[oidc]`, checked at start:
    /// outside dev mode plaintext `password`s, agents without a secret (unless OIDC is
    /// configured, their only way in) and the example's placeholder hashes are refused.
    pub fn credential_problems(&self) -> Vec<String> {
        use crate::credentials::{check_password_hash, is_placeholder};
        let dev = self.node.dev_mode;
        let mut out = self.oidc.problems(dev);
        for (i, agent) in self.agents.iter().enumerate() {
            let key = format!("agents[{i}] (id {:?})", agent.id);
            if !agent.password.is_empty() && !agent.password_hash.is_empty() {
                out.push(format!("{key}: set password_hash or password, not both"));
            }
            if !agent.password_hash.is_empty() {
                if let Err(e) = check_password_hash(&agent.password_hash) {
                    out.push(format!("{key}.password_hash: {e}"));
                } else if !dev && is_placeholder(&agent.password_hash) {
                    out.push(format!(
                        "{key}.password_hash: the example configuration's published hash; \
                         make a real one with `centralino hash-password` (accepted only in dev mode)"
                    ));
                }
            }
            if dev {
                continue;
            }
            if !agent.password.is_empty() {
                out.push(format!(
                    "{key}.password: plaintext passwords are accepted only in dev mode; \
                     use password_hash (`centralino hash-password`)"
                ));
            } else if agent.password_hash.is_empty() && !self.oidc.enabled() {
                out.push(format!(
                    "{key}.password_hash: the agent has no secret (empty password_hash, no [oidc])"
                ));
            }
        }
        out
    }

    /// Returns a list of problems with the configuration (empty when it is valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.limits.problems();
        problems.extend(self.web.problems());
        let mut seen = std::collections::BTreeSet::new();
        for agent in &self.agents {
            if agent.id.trim().is_empty() {
                problems.push("an agent has an empty id".to_string());
            }
            if !seen.insert(agent.id.as_str()) {
                problems.push(format!("agent {:?} is configured twice", agent.id));
            }
            if agent.capacity == 0 || agent.capacity > 64 {
                problems.push(format!("agent {:?}: capacity must be 1..=64", agent.id));
            }
            if !agent.team.is_empty() && !self.teams.iter().any(|t| t.name == agent.team) {
                problems.push(format!(
                    "agent {:?}: unknown team {:?}",
                    agent.id, agent.team
                ));
            }
            for (skill, level) in &agent.skills {
                if !(1..=5).contains(level) {
                    problems.push(format!(
                        "agent {:?}: skill {skill:?} proficiency must be 1..=5",
                        agent.id
                    ));
                }
            }
        }
        for team in &self.teams {
            if let Some(schedule) = &team.schedule {
                if let Err(e) = crate::schedule::Schedule::parse(schedule) {
                    problems.push(format!("team {:?}: {e}", team.name));
                }
            }
        }
        let languages: std::collections::BTreeSet<&str> =
            self.teams.iter().map(|t| t.language.as_str()).collect();
        for (from, chain) in &self.languages.fallback {
            for to in chain {
                if !languages.contains(to.as_str()) {
                    problems.push(format!("languages.fallback.{from}: no team serves {to:?}"));
                }
            }
        }
        for canned in &self.canned {
            if !canned.shortcut.starts_with('/') || canned.text.is_empty() {
                problems.push(format!(
                    "canned response {:?}: the shortcut starts with / and the text is not empty",
                    canned.shortcut
                ));
            }
        }
        if self.clock.speed <= 0.0 || !self.clock.speed.is_finite() {
            problems.push("clock.speed must be a positive number".to_string());
        }
        problems
    }
}

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CENTRALINO_";

/// Reads a TOML file (or an empty document when `path` is `None`), applies `CENTRALINO_*`
/// environment overrides, and returns the merged document.
///
/// `CENTRALINO_NODE__GRPC_ADDR=0.0.0.0:50051` sets `node.grpc_addr` (variables without a
/// `__` are not configuration keys and are left alone); a numeric segment
/// indexes an array (`CENTRALINO_AGENTS__0__CAPACITY=5`). Values parse as TOML literals
/// (numbers, booleans, arrays) and fall back to strings.
pub fn load_document(
    text: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, String> {
    let mut doc: toml::Table = match text {
        Some(text) => toml::from_str(text).map_err(|e| format!("invalid TOML: {e}"))?,
        None => toml::Table::new(),
    };
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        // Every configuration key lives in a section, so an override always has a `__`;
        // other CENTRALINO_* variables (CENTRALINO_CONFIG, CENTRALINO_LOG_FORMAT, ...) are
        // options of the binaries, not configuration keys.
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k[ENV_PREFIX.len()..].contains("__"))
        .collect();
    overrides.sort();
    for (key, value) in overrides {
        let path: Vec<String> = key[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("{key}: empty path segment"));
        }
        set_path(&mut doc, &path, parse_literal(&value)).map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(doc)
}

fn parse_literal(value: &str) -> toml::Value {
    let wrapped = format!("v = {value}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (head, rest) = path.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(head.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_value_path(entry, rest, value)
}

fn set_value_path(
    node: &mut toml::Value,
    path: &[String],
    value: toml::Value,
) -> Result<(), String> {
    match node {
        toml::Value::Table(table) => set_path(table, path, value),
        toml::Value::Array(items) => {
            let (head, rest) = path.split_first().ok_or("empty key")?;
            let index: usize = head
                .parse()
                .map_err(|_| format!("{head:?} is not an array index"))?;
            let item = items
                .get_mut(index)
                .ok_or_else(|| format!("index {index} is past the end of the array"))?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_value_path(item, rest, value)
            }
        }
        _ => Err("cannot set a key inside a scalar value".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nested_keys_and_array_items() {
        let text = "[desk]\noffer_timeout_secs = 30\n[[agents]]\nid = \"a\"\ncapacity = 2\n";
        let env = vec![
            (
                "CENTRALINO_DESK__OFFER_TIMEOUT_SECS".to_string(),
                "12".to_string(),
            ),
            (
                "CENTRALINO_AGENTS__0__CAPACITY".to_string(),
                "5".to_string(),
            ),
            (
                "CENTRALINO_NODE__GRPC_ADDR".to_string(),
                "0.0.0.0:1".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
            ("CENTRALINO_LOG_FORMAT".to_string(), "json".to_string()),
            ("CENTRALINO_CONFIG".to_string(), "/etc/x.toml".to_string()),
        ];
        let doc = load_document(Some(text), env).unwrap();
        let config: AgentNodeConfig = toml::Value::Table(doc.clone()).try_into().unwrap();
        assert_eq!(config.desk.offer_timeout_secs, 12);
        assert_eq!(config.agents[0].capacity, 5);
        assert_eq!(doc["node"]["grpc_addr"].as_str(), Some("0.0.0.0:1"));
        assert!(!doc.contains_key("log_format") && !doc.contains_key("config"));
    }

    #[test]
    fn env_override_past_array_end_is_an_error() {
        let env = vec![(
            "CENTRALINO_AGENTS__3__CAPACITY".to_string(),
            "5".to_string(),
        )];
        let err = load_document(Some("[[agents]]\nid = \"a\"\n"), env).unwrap_err();
        assert!(err.contains("past the end"), "{err}");
    }

    #[test]
    fn problems_reports_bad_capacity_and_unknown_team() {
        let mut config = AgentNodeConfig::default();
        config.agents.push(AgentConfig {
            id: "a".into(),
            capacity: 0,
            team: "nope".into(),
            ..AgentConfig::default()
        });
        let problems = config.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn cluster_settings_need_no_etcd_endpoints_but_etcd_does() {
        let mut cluster = ClusterConfig::default();
        cluster.etcd_endpoints.clear();
        assert!(cluster.settings_problems().is_empty());
        let problems = cluster.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("cluster.etcd_endpoints"));

        cluster.lease_ttl_secs = 0;
        assert_eq!(cluster.settings_problems().len(), 1);
        assert_eq!(cluster.problems().len(), 2);
    }
}

/// The browser side of a public listener (`[web]`): the JSON/SSE API, gRPC-web and the
/// pages are served on the gRPC address itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Origins (`https://shop.example`) whose pages may call the API from the browser
    /// (CORS). Empty: only pages served by the node itself (same origin).
    pub allowed_origins: Vec<String>,
    /// Serve the widget, the demo shop, the agent console and the wallboard.
    pub pages: bool,
    /// Agent desk sessions over HTTP that may be open at once on one node.
    pub max_desk_sessions: usize,
    /// An HTTP desk session whose event stream has had no reader this long ends, as a
    /// dropped desk stream does.
    pub desk_session_idle_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            pages: true,
            max_desk_sessions: 10_000,
            desk_session_idle_secs: 60,
        }
    }
}

impl WebConfig {
    /// Returns what is wrong with this section.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for origin in &self.allowed_origins {
            let scheme_ok = origin.starts_with("https://") || origin.starts_with("http://");
            let host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
            if !scheme_ok || host.is_empty() || host.contains('/') || origin == "*" {
                out.push(format!(
                    "web.allowed_origins: {origin:?} is not an origin (scheme://host[:port], no path, no wildcard)"
                ));
            }
        }
        if self.max_desk_sessions == 0 {
            out.push("web.max_desk_sessions must be positive".to_string());
        }
        if self.desk_session_idle_secs == 0 {
            out.push("web.desk_session_idle_secs must be positive".to_string());
        }
        out
    }
}
