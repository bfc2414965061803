//! `AgentNode`: the registry of agent actors on this node and the in-process
//! [`AgentNodeLink`] that routers use to reach them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use centralino_proto::v1::{AgentStatus, ChatMessage, ConversationOutcome};
use parking_lot::Mutex;
use tonic::Status;
use tracing::warn;

use crate::agent::{self, AgentActor};
use crate::throttle::{LoginThrottle, Verdict, ADDRESS_FREE_FAILURES, AGENT_FREE_FAILURES};
use centralino_base::clock::SharedClock;
use centralino_base::config::{AgentConfig, AgentNodeConfig, CannedConfig};
use centralino_base::credentials;
use centralino_base::directory::Directory;
use centralino_base::oidc::OidcVerifier;
use centralino_base::rate::{too_many, with_pushback, KeyedLimit};
use centralino_base::shifts::Shifts;
use centralino_link::{
    AgentNodeLink, Availability, RejectReason, ReserveOutcome, ReserveRequest, RouterLink,
};

/// What a cluster adds to a login: the agent is claimed for this node (one node per agent)
/// and gets back the conversations it holds from an earlier session on another node.
#[async_trait]
pub trait LoginHook: Send + Sync + 'static {
    /// Claims `agent_id` for this node; returns the conversations the agent holds.
    async fn claim(&self, agent_id: &str) -> Result<Vec<String>, Status>;
    /// Gives the claim up (the agent went offline here).
    async fn release(&self, agent_id: &str);
    /// Returns why this node must not act for its agents now (in a cluster: its lease is
    /// not surely alive, or its agents' claims are not yet bound to the current lease), or
    /// None when it may.
    fn fenced(&self) -> Option<&'static str> {
        None
    }
}

/// How long a call from a router waits for this node's fence to lift before it is refused
/// (UNAVAILABLE: the router tries again or another agent).
const FENCE_WAIT: Duration = Duration::from_secs(1);

/// The agents of one node.
pub struct AgentNode {
    login_hook: OnceLock<Arc<dyn LoginHook>>,
    config: AgentNodeConfig,
    /// Who may log in, with their skills and capacity: the live directory.
    directory: Directory,
    clock: SharedClock,
    router: OnceLock<Arc<dyn RouterLink>>,
    agents: Mutex<HashMap<String, Addr<AgentActor>>>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    shifts: Arc<Shifts>,
    /// Failed logins per agent and per client address.
    throttle: Mutex<LoginThrottle>,
    /// Verifies agents' ID tokens when `[oidc]` is configured.
    oidc: Option<Arc<OidcVerifier>>,
    /// Bounds the argon2 verifications running at once (each takes ~20 ms and 19 MiB).
    hashing: Arc<tokio::sync::Semaphore>,
    /// Password logins waiting for (or about to take) a verification slot.
    hashing_waiting: AtomicUsize,
    /// Login attempts per client address, successful ones too (`[limits]`).
    login_rate: KeyedLimit<IpAddr>,
}

/// Why credentials were not checked through, for [`AgentNode::verify`].
enum Refusal {
    /// Wrong credentials (the reason is for the log only).
    Bad(String),
    /// Too many logins wait for a verification slot; nothing was checked.
    Busy,
}

/// What a desktop presents at login: a password, or an OIDC ID token (then `agent_id` may
/// be empty; when given it must be the token's agent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The agent id typed at the desk.
    pub agent_id: &'a str,
    /// The password (empty with an ID token).
    pub password: &'a str,
    /// An OIDC ID token (JWT), or empty.
    pub id_token: &'a str,
}

impl<'a> Credentials<'a> {
    /// Password credentials.
    pub fn password(agent_id: &'a str, password: &'a str) -> Self {
        Self {
            agent_id,
            password,
            id_token: "",
        }
    }
}

/// Most argon2 verifications at once.
const PARALLEL_HASHES: usize = 4;
/// The retry pushback of a login refused because too many wait for a verification slot.
const BUSY_PUSHBACK_MS: u64 = 1_000;

impl AgentNode {
    /// Returns a node for the configured agents whose actors run on `arbiters`.
    ///
    /// The router link is set afterwards with [`AgentNode::set_router`], since routers and
    /// agent-nodes refer to each other.
    pub fn new(
        config: AgentNodeConfig,
        clock: SharedClock,
        arbiters: Vec<ArbiterHandle>,
    ) -> Arc<Self> {
        let config_for_shifts = config.clone();
        let login_rate = KeyedLimit::new(
            (
                config.limits.logins_per_minute_per_addr,
                config.limits.login_burst_per_addr,
            ),
            clock.speed(),
            config.limits.rate_limit_max_keys,
        );
        // The start checks (`credential_problems`) have read the JWKS already; a failure
        // here leaves OIDC logins refused.
        let oidc = match OidcVerifier::from_config(&config.oidc) {
            Ok(v) => v.map(Arc::new),
            Err(e) => {
                warn!(error = %e, "OIDC disabled: the JWKS cannot be read");
                None
            }
        };
        let directory = Directory::from_config(&config);
        Arc::new(Self {
            login_hook: OnceLock::new(),
            config,
            directory,
            clock,
            router: OnceLock::new(),
            agents: Mutex::new(HashMap::new()),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
            shifts: Arc::new(Shifts::new(&config_for_shifts)),
            throttle: Mutex::new(LoginThrottle::default()),
            oidc,
            hashing: Arc::new(tokio::sync::Semaphore::new(PARALLEL_HASHES)),
            hashing_waiting: AtomicUsize::new(0),
            login_rate,
        })
    }

    /// Returns the verifier of `[oidc]` tokens (None when OIDC is off), for the node's other
    /// services to share.
    pub fn oidc(&self) -> Option<Arc<OidcVerifier>> {
        self.oidc.clone()
    }

    /// Returns the live directory this node reads (the follower of the record writes
    /// into it; see [`crate::directory::follow`]).
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Applies every change of the directory to this node until `stop`: the team
    /// schedules of the shifts, and each logged-in agent's document (skills, capacity,
    /// disabled) to its actor.
    pub fn watch_directory(
        self: &Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let node = Arc::downgrade(self);
        let mut changes = self.directory.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Some(node) = node.upgrade() else { return };
                node.apply_directory();
            }
        })
    }

    /// Applies the current directory to the shifts and the live agent actors.
    pub fn apply_directory(&self) {
        let snapshot = self.directory.snapshot();
        self.shifts.set_teams(snapshot.teams.values());
        let agents: Vec<(String, Addr<AgentActor>)> = self
            .agents
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (agent_id, addr) in agents {
            match snapshot.agents.get(&agent_id) {
                Some(entry) => addr.do_send(agent::UpdateAccount {
                    config: entry.config.clone(),
                    disabled: entry.disabled,
                }),
                // Not in the directory (any more): as good as disabled.
                None => addr.do_send(agent::UpdateAccount {
                    config: Arc::new(AgentConfig {
                        id: agent_id.clone(),
                        ..AgentConfig::default()
                    }),
                    disabled: true,
                }),
            }
        }
    }

    /// Sets where offer answers, agent messages and availability go.
    pub fn set_router(&self, router: Arc<dyn RouterLink>) {
        let _ = self.router.set(router);
    }

    /// Sets the cluster's login rule.
    pub fn set_login_hook(&self, hook: Arc<dyn LoginHook>) {
        let _ = self.login_hook.set(hook);
    }

    /// Checks credentials and, in a cluster, claims the agent for this node: an agent new
    /// to this node gets back the conversations it holds from another node.
    /// Attempts are rate limited per client address (`[limits] logins_per_minute_per_addr`,
    /// successful ones too) and, after failures, throttled per agent and per client address
    /// ([`crate::throttle`]).
    /// Returns the agent's actor and id (the ID token's agent for OIDC logins).
    pub async fn login(
        &self,
        credentials: Credentials<'_>,
        client: Option<IpAddr>,
    ) -> Result<(Addr<AgentActor>, String), Status> {
        // Credentials first: a wrong password claims nothing.
        let account = self.verify(credentials, client).await?;
        let id = account.id.clone();
        self.refuse_disabled(&id)?;
        let Some(hook) = self.login_hook.get() else {
            return Ok((self.actor_for(account)?, id));
        };
        let agent_id = id.as_str();
        let known = self.agent(agent_id).is_some();
        let addr = self.actor_for(account)?;
        if !known {
            match hook.claim(agent_id).await {
                Ok(conversations) => {
                    if !conversations.is_empty() {
                        // Fetch the transcripts now, so the desktop sees every conversation
                        // with what the customer wrote meanwhile right after its login.
                        let mut transcripts = Vec::new();
                        if let Some(router) = self.router.get() {
                            for id in &conversations {
                                if let Ok(t) = router.transcript(id, agent_id).await {
                                    transcripts.push((id.clone(), t));
                                }
                            }
                        }
                        addr.do_send(agent::Restore(conversations));
                        addr.do_send(agent::RestoredTranscripts(transcripts));
                    }
                }
                Err(status) => {
                    // Not ours: drop the actor just started for it.
                    if let Some(addr) = self.agents.lock().remove(agent_id) {
                        addr.do_send(agent::Stop);
                    }
                    return Err(status);
                }
            }
        }
        Ok((addr, id))
    }

    /// Returns why this node must not act for its agents now, None when it may (see
    /// [`LoginHook::fenced`]; a standalone node never is fenced).
    pub fn fenced(&self) -> Option<&'static str> {
        self.login_hook.get().and_then(|hook| hook.fenced())
    }

    /// Waits up to `wait` for the fence to lift; UNAVAILABLE when it does not.
    pub async fn unfenced(&self, wait: Duration) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Some(why) = self.fenced() else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                crate::metrics::fenced_refusal();
                return Err(Status::unavailable(format!("agent-node fenced: {why}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// UNAVAILABLE (counted) when fenced now.
    pub fn refuse_fenced(&self) -> Result<(), Status> {
        match self.fenced() {
            None => Ok(()),
            Some(why) => {
                crate::metrics::fenced_refusal();
                Err(Status::unavailable(format!("agent-node fenced: {why}")))
            }
        }
    }

    /// Returns the ids of the agents this node hosts.
    pub fn agent_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.agents.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Drops `agent_id` from this node without releasing anything: the agent's claim went
    /// to another node, which holds their conversations now. The desktop's stream ends
    /// with FAILED_PRECONDITION and the desktop logs in again.
    pub fn evict(&self, agent_id: &str) {
        if let Some(addr) = self.agents.lock().remove(agent_id) {
            addr.do_send(agent::Evict);
        }
    }

    /// Publishes every agent's availability again (after the fence lifted: routers that
    /// found an agent unreachable meanwhile count it in again).
    pub async fn republish(&self) {
        let Some(router) = self.router.get() else {
            return;
        };
        for a in self.availability().await {
            router.availability(a);
        }
    }

    /// Forgets agents that are offline with nothing held (their grace ran out or they
    /// logged out), so they can log in on another node; returns how many.
    pub async fn forget_idle(&self) -> usize {
        let addrs: Vec<(String, Addr<AgentActor>)> = self
            .agents
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut forgotten = 0;
        for (agent_id, addr) in addrs {
            let Ok(a) = addr.send(agent::GetAvailability).await else {
                continue;
            };
            if a.status == AgentStatus::Offline && a.load == 0 {
                let removed = {
                    let mut agents = self.agents.lock();
                    match agents.get(&agent_id) {
                        Some(current) if *current == addr => agents.remove(&agent_id),
                        _ => None,
                    }
                };
                if let Some(addr) = removed {
                    addr.do_send(agent::Stop);
                    if let Some(hook) = self.login_hook.get() {
                        hook.release(&agent_id).await;
                    }
                    forgotten += 1;
                }
            }
        }
        forgotten
    }

    /// Returns the clock of this node.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Checks an agent's credentials; returns the agent's actor (started on first login)
    /// and id.
    pub async fn authenticate(
        &self,
        credentials: Credentials<'_>,
        client: Option<IpAddr>,
    ) -> Result<(Addr<AgentActor>, String), Status> {
        let account = self.verify(credentials, client).await?;
        let id = account.id.clone();
        self.refuse_disabled(&id)?;
        Ok((self.actor_for(account)?, id))
    }

    /// PERMISSION_DENIED when the directory disables `agent_id` (checked after the
    /// credentials: a wrong password learns nothing).
    fn refuse_disabled(&self, agent_id: &str) -> Result<(), Status> {
        if self.directory.snapshot().enabled_agent(agent_id).is_some() {
            return Ok(());
        }
        crate::metrics::login_refused("disabled");
        warn!(%agent_id, "login refused: the agent is disabled");
        Err(Status::permission_denied("the agent is disabled"))
    }

    /// Checks credentials behind the address's rate limit and the throttle: a password
    /// against the agent's argon2id hash (on the blocking pool, at most
    /// `[limits] max_logins_waiting` waiting for a slot; plaintext only in dev mode, an
    /// empty secret never), or an ID token against the JWKS. Every refusal is logged and
    /// counted; wrong credentials are throttled.
    async fn verify(
        &self,
        credentials: Credentials<'_>,
        client: Option<IpAddr>,
    ) -> Result<Arc<AgentConfig>, Status> {
        let agent_id = credentials.agent_id;
        let now = self.clock.now_ms();
        let agent_key = (!agent_id.is_empty()).then(|| format!("agent:{agent_id}"));
        let client_key = client.map(|ip| format!("addr:{ip}"));
        if let Some(ip) = client {
            if let Err(wait) = self.login_rate.check(&ip) {
                crate::metrics::login_refused("rate_limited");
                warn!(%agent_id, client = %ip, wait_ms = wait.as_millis() as u64, "login refused: too many logins from this address");
                return Err(too_many("logins from this address", wait));
            }
        }
        {
            let throttle = self.throttle.lock();
            let waits = [agent_key.as_ref(), client_key.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|key| match throttle.check(key, now) {
                    Verdict::Wait(ms) => Some(ms),
                    Verdict::Allowed => None,
                })
                .max();
            if let Some(wait_ms) = waits {
                crate::metrics::login_refused("throttled");
                warn!(%agent_id, client = ?client, wait_ms, "login refused: too many failed attempts");
                return Err(throttled(wait_ms));
            }
        }
        let outcome = if credentials.id_token.is_empty() {
            self.check_password(agent_id, credentials.password).await
        } else {
            self.check_id_token(agent_id, credentials.id_token)
                .await
                .map_err(Refusal::Bad)
        };
        let account = match outcome {
            Ok(account) => account,
            Err(Refusal::Busy) => {
                crate::metrics::login_refused("busy");
                warn!(%agent_id, client = ?client, "login refused: too many logins waiting for a password check");
                return Err(with_pushback(
                    Status::resource_exhausted(
                        "too many logins waiting for a password check; retry shortly",
                    ),
                    BUSY_PUSHBACK_MS,
                ));
            }
            Err(Refusal::Bad(reason)) => {
                let mut throttle = self.throttle.lock();
                if let Some(key) = &agent_key {
                    throttle.failed(key, AGENT_FREE_FAILURES, now);
                }
                if let Some(key) = &client_key {
                    throttle.failed(key, ADDRESS_FREE_FAILURES, now);
                }
                crate::metrics::login(false);
                crate::metrics::login_refused("bad_credentials");
                warn!(%agent_id, client = ?client, %reason, "login refused");
                return Err(Status::unauthenticated(
                    if credentials.id_token.is_empty() {
                        "unknown agent or wrong password"
                    } else {
                        "ID token refused"
                    },
                ));
            }
        };
        {
            let mut throttle = self.throttle.lock();
            for key in [agent_key.as_ref(), client_key.as_ref()]
                .into_iter()
                .flatten()
            {
                throttle.succeeded(key);
            }
            throttle.succeeded(&format!("agent:{}", account.id));
        }
        crate::metrics::login(true);
        Ok(account)
    }

    /// Returns the account when `password` is the agent's; else why not (for the log), or
    /// [`Refusal::Busy`] when `[limits] max_logins_waiting` logins wait for a slot already.
    async fn check_password(
        &self,
        agent_id: &str,
        password: &str,
    ) -> Result<Arc<AgentConfig>, Refusal> {
        let bad = |reason: &str| Refusal::Bad(reason.to_string());
        let account = self
            .directory
            .snapshot()
            .agents
            .get(agent_id)
            .map(|a| a.config.clone());
        let hash = match &account {
            Some(a) if !a.password_hash.is_empty() => a.password_hash.clone(),
            Some(a) => {
                // Plaintext: dev mode only, and an empty secret never logs in.
                let ok = self.config.node.dev_mode
                    && !a.password.is_empty()
                    && credentials::constant_time_eq(a.password.as_bytes(), password.as_bytes());
                return if ok {
                    Ok(a.clone())
                } else {
                    Err(bad("wrong password"))
                };
            }
            // Unknown agents cost a verification too, so timing tells nothing.
            None => dummy_hash().to_string(),
        };
        let waiting = self.hashing_waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.config.limits.max_logins_waiting.max(1) {
            self.hashing_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        let permit = self.hashing.clone().acquire_owned().await;
        self.hashing_waiting.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| bad("node stopping"))?;
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            credentials::verify_password(&hash, &password)
        })
        .await
        .unwrap_or(false);
        match account {
            Some(a) if matches => Ok(a),
            Some(_) => Err(bad("wrong password")),
            None => Err(bad("unknown agent")),
        }
    }

    /// Returns the account an ID token names; else why not (for the log).
    async fn check_id_token(
        &self,
        agent_id: &str,
        token: &str,
    ) -> Result<Arc<AgentConfig>, String> {
        let verifier = self
            .oidc
            .as_ref()
            .ok_or_else(|| "an ID token, but [oidc] is not configured".to_string())?;
        let claimed = verifier.agent_id(token).await.map_err(|e| e.to_string())?;
        // The agent whose oidc_subject the claim is, else the agent the claim names.
        let snapshot = self.directory.snapshot();
        let account = snapshot
            .agents
            .values()
            .find(|a| !a.config.oidc_subject.is_empty() && a.config.oidc_subject == claimed)
            .or_else(|| {
                snapshot
                    .agents
                    .get(&claimed)
                    .filter(|a| a.config.oidc_subject.is_empty())
            })
            .map(|a| a.config.clone())
            .ok_or_else(|| format!("the token's agent {claimed:?} is not configured"))?;
        if !agent_id.is_empty() && agent_id != account.id {
            return Err(format!("the token is agent {:?}'s", account.id));
        }
        Ok(account)
    }

    /// Returns the actor of a configured agent, starting it when needed.
    fn actor_for(&self, account: Arc<AgentConfig>) -> Result<Addr<AgentActor>, Status> {
        let router = self
            .router
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("node is starting"))?;
        let mut agents = self.agents.lock();
        if let Some(addr) = agents.get(&account.id) {
            return Ok(addr.clone());
        }
        let agent_id = account.id.clone();
        let desk = self.config.desk.clone();
        let clock = self.clock.clone();
        let shifts = self.shifts.clone();
        let handover = self.config.handover.clone();
        let make = move |_ctx: &mut Context<AgentActor>| {
            AgentActor::new(account, desk, clock, router, shifts, handover)
        };
        let addr = match self.arbiter() {
            Some(arbiter) => AgentActor::start_in_arbiter(&arbiter, make),
            None => AgentActor::create(make),
        };
        agents.insert(agent_id, addr.clone());
        Ok(addr)
    }

    /// Hands an agent the conversations they held before a restart; they have the
    /// disconnect grace to log in again before the conversations are requeued.
    pub fn restore(&self, agent_id: &str, conversation_ids: Vec<String>) -> Result<(), Status> {
        let account = self
            .directory
            .snapshot()
            .agents
            .get(agent_id)
            .map(|a| a.config.clone())
            .ok_or_else(|| Status::not_found(format!("unknown agent {agent_id:?}")))?;
        self.actor_for(account)?
            .do_send(agent::Restore(conversation_ids));
        Ok(())
    }

    fn arbiter(&self) -> Option<ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        Some(self.arbiters[i].clone())
    }

    fn agent(&self, agent_id: &str) -> Option<Addr<AgentActor>> {
        self.agents.lock().get(agent_id).cloned()
    }

    /// Returns whether `agent_id` is an agent of the directory (disabled ones too).
    pub fn is_configured(&self, agent_id: &str) -> bool {
        self.directory.snapshot().agents.contains_key(agent_id)
    }

    /// Sets an agent's status on behalf of a supervisor or a telephony integration.
    pub async fn set_status(&self, agent_id: &str, status: AgentStatus) -> Result<(), Status> {
        if !self.is_configured(agent_id) {
            return Err(Status::not_found(format!("unknown agent {agent_id:?}")));
        }
        let addr = self
            .agent(agent_id)
            .ok_or_else(|| Status::failed_precondition("agent has not logged in"))?;
        addr.send(agent::SetStatus(status))
            .await
            .map_err(mailbox_error)?
    }

    /// Returns the availability of every agent that has logged in since start.
    pub async fn availability(&self) -> Vec<Availability> {
        let addrs: Vec<Addr<AgentActor>> = self.agents.lock().values().cloned().collect();
        let mut out = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if let Ok(a) = addr.send(agent::GetAvailability).await {
                out.push(a);
            }
        }
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }

    /// Returns the shift schedules.
    pub fn shifts(&self) -> &Arc<Shifts> {
        &self.shifts
    }

    /// Returns the canned responses matching `query` (a shortcut prefix such as `/sped`, or
    /// words of the text), for `department` and `language` when they are not empty.
    pub fn find_canned(&self, query: &str, department: &str, language: &str) -> Vec<CannedConfig> {
        let query = query.trim().to_lowercase();
        self.directory
            .snapshot()
            .canned
            .values()
            .filter(|c| {
                department.is_empty() || c.department.is_empty() || c.department == department
            })
            .filter(|c| language.is_empty() || c.language == language)
            .filter(|c| {
                query.is_empty()
                    || c.shortcut.to_lowercase().starts_with(&query)
                    || (!query.starts_with('/') && c.text.to_lowercase().contains(&query))
            })
            .cloned()
            .collect()
    }

    /// Returns the agents of the directory, disabled ones too (for snapshots of agents
    /// never logged in).
    pub fn accounts(&self) -> Vec<AgentConfig> {
        self.directory
            .snapshot()
            .agents
            .values()
            .map(|a| (*a.config).clone())
            .collect()
    }
}

/// An argon2id hash of a random secret, verified for unknown agents.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        credentials::hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default()
    })
}

#[async_trait]
impl centralino_link::AgentAdmin for AgentNode {
    async fn availability(&self) -> Vec<Availability> {
        AgentNode::availability(self).await
    }

    fn accounts(&self) -> Vec<AgentConfig> {
        AgentNode::accounts(self)
    }

    async fn set_status(&self, agent_id: &str, status: AgentStatus) -> Result<(), Status> {
        AgentNode::set_status(self, agent_id, status).await
    }
}

/// RESOURCE_EXHAUSTED for a throttled login, with the wait as gRPC's retry pushback.
fn throttled(wait_ms: i64) -> Status {
    let secs = (wait_ms + 999) / 1000;
    with_pushback(
        Status::resource_exhausted(format!("too many failed logins; try again in {secs} s")),
        wait_ms.max(1) as u64,
    )
}

/// Maps an actor mailbox failure to a gRPC status.
pub fn mailbox_error(e: MailboxError) -> Status {
    Status::unavailable(format!("agent actor unavailable: {e}"))
}

#[async_trait]
impl AgentNodeLink for AgentNode {
    async fn reserve(&self, request: ReserveRequest) -> Result<ReserveOutcome, Status> {
        // No reservation while fenced: another node may hold the agent by now.
        self.refuse_fenced()?;
        match self.agent(&request.agent_id) {
            None => Ok(ReserveOutcome::Rejected(RejectReason::NotLoggedIn)),
            Some(addr) => addr
                .send(agent::Reserve(request))
                .await
                .map_err(mailbox_error),
        }
    }

    async fn cancel_reservation(&self, agent_id: &str, reservation_id: &str) -> Result<(), Status> {
        if let Some(addr) = self.agent(agent_id) {
            addr.do_send(agent::CancelReservation(reservation_id.to_string()));
        }
        Ok(())
    }

    async fn deliver(
        &self,
        agent_id: &str,
        conversation_id: &str,
        message: ChatMessage,
    ) -> Result<(), Status> {
        self.unfenced(FENCE_WAIT).await?;
        let addr = self
            .agent(agent_id)
            .ok_or_else(|| Status::not_found("agent is not on this node"))?;
        addr.send(agent::Deliver {
            conversation_id: conversation_id.to_string(),
            message,
        })
        .await
        .map_err(mailbox_error)?
    }

    async fn customer_typing(
        &self,
        agent_id: &str,
        conversation_id: &str,
        typing: bool,
    ) -> Result<(), Status> {
        self.refuse_fenced()?;
        let addr = self
            .agent(agent_id)
            .ok_or_else(|| Status::not_found("agent is not on this node"))?;
        addr.send(agent::CustomerTyping {
            conversation_id: conversation_id.to_string(),
            typing,
        })
        .await
        .map_err(mailbox_error)?
    }

    async fn conversation_ended(
        &self,
        agent_id: &str,
        conversation_id: &str,
        outcome: ConversationOutcome,
    ) -> Result<(), Status> {
        if let Some(addr) = self.agent(agent_id) {
            addr.do_send(agent::Ended {
                conversation_id: conversation_id.to_string(),
                outcome,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centralino_base::clock::SystemClock;
    use centralino_base::rate::pushback_ms;
    use std::time::Duration;

    fn node(limits: centralino_base::config::LoginLimits) -> Arc<AgentNode> {
        let config = AgentNodeConfig {
            limits,
            ..AgentNodeConfig::default()
        };
        AgentNode::new(config, Arc::new(SystemClock), Vec::new())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test]
    async fn every_login_attempt_counts_against_the_address_rate() {
        let node = node(centralino_base::config::LoginLimits {
            logins_per_minute_per_addr: 60,
            login_burst_per_addr: 3,
            ..Default::default()
        });
        // Unknown agents: each attempt is checked (and refused) after the rate limit.
        for i in 0..3 {
            let got = node
                .authenticate(Credentials::password("nobody", "x"), ip("192.0.2.7"))
                .await
                .err()
                .unwrap();
            assert_eq!(got.code(), tonic::Code::Unauthenticated, "attempt {i}");
        }
        let refused = node
            .authenticate(Credentials::password("nobody", "x"), ip("192.0.2.7"))
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("logins from this address"),
            "{refused}"
        );
        let wait = pushback_ms(&refused).expect("retry hint");
        assert!((1..=1000).contains(&wait), "{wait}");
        // Another address is not affected.
        let other = node
            .authenticate(Credentials::password("nobody", "x"), ip("192.0.2.8"))
            .await
            .err()
            .unwrap();
        assert_eq!(other.code(), tonic::Code::Unauthenticated);
    }

    #[tokio::test]
    async fn logins_beyond_the_waiting_cap_are_refused_not_queued() {
        let node = node(centralino_base::config::LoginLimits {
            logins_per_minute_per_addr: 0,
            max_logins_waiting: 2,
            ..Default::default()
        });
        // Every verification slot is busy.
        let held = node
            .hashing
            .clone()
            .acquire_many_owned(PARALLEL_HASHES as u32)
            .await
            .unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|i| {
                let node = node.clone();
                tokio::spawn(async move {
                    let agent = format!("ghost{i}");
                    node.authenticate(Credentials::password(&agent, "x"), ip("192.0.2.1"))
                        .await
                        .err()
                        .map(|s| s.code())
                })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(5), async {
            while node.hashing_waiting.load(Ordering::Acquire) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("two logins wait");
        let refused = node
            .authenticate(Credentials::password("ghost9", "x"), ip("192.0.2.2"))
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("waiting"), "{refused}");
        assert_eq!(pushback_ms(&refused), Some(BUSY_PUSHBACK_MS));
        // The waiting ones go on once slots free up, and the count goes back to zero.
        drop(held);
        for task in waiting {
            assert_eq!(task.await.unwrap(), Some(tonic::Code::Unauthenticated));
        }
        assert_eq!(node.hashing_waiting.load(Ordering::Acquire), 0);
        // A refusal for a full queue is no failed login: nothing is throttled.
        assert!(node.throttle.lock().check("addr:192.0.2.2", i64::MAX / 2) == Verdict::Allowed);
    }
}
