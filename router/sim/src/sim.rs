//! Traffic simulator behind `centralino demo` and `centralino sim`: plays customers and
//! agents through the public gRPC API only, and checks the invariants of DESIGN.md §6 from
//! what they observe (a black-box checker).
//!
//! Module map:
//! - [`profile`]: the hourly arrival profile (Europe/Rome) and the Poisson arrival schedule.
//! - [`customer`]: who arrives (language, department, visitor context, returning customers)
//!   and the customer task: start, stream with resume, messages, patience, close, rating;
//!   offline messages and callbacks when nobody can answer (offline or busy notice, or
//!   patience run out), back to a queue after a cold transfer.
//! - [`agent`]: one task per configured agent on the `AgentDesk` stream: offers, accept or
//!   decline, replies in the serving language (canned responses, notes), transfers and
//!   escalations, close with a summary, a staggered stop before the team's shift ends;
//!   checks capacity, skills (serving language, transfers) and shifts.
//! - [`ledger`]: the shared record of observations and the live checks.
//! - [`report`]: the final [`Report`] and its aggregation from the ledger.
//! - [`net`]: channels to the routers and agent-nodes, the move to the next address on
//!   UNAVAILABLE (customers retry across routers through a failover, agents log in again on
//!   the next agent-node and carry on with their conversations), and the outages measured.
//!
//! All durations of the simulated world (patience, think and handling times) are simulated
//! time on the node's clock and are turned into wall time with [`Clock::wall`]. Every network
//! wait has a wall-clock timeout and the whole run has a wall-clock budget.

pub mod agent;
pub mod customer;
pub mod error;
pub mod ledger;
pub mod net;
pub mod profile;
pub mod report;
pub mod run;

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::Duration;

use centralino_base::clock::{Clock, SharedClock, SimClock};
use centralino_proto::v1::admin_client::AdminClient;
use centralino_proto::v1::{GetSnapshotRequest, Snapshot};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::Code;
use tracing::{info, warn};

use centralino_core::config::Config;
use customer::{CustomerPlan, Mix};
pub use error::SimError;
use ledger::Ledger;
use net::Routers;
pub use report::Report;
pub use run::Shared;

/// Service-level threshold of the report's `service_level_20s`.
pub const SERVICE_LEVEL: Duration = Duration::from_secs(20);
/// How long to wait for a router to answer at the start (wall time).
const REACH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for the agents to log in (wall time).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Wall time added to the run's budget for start-up and shutdown.
const BUDGET_SLACK: Duration = Duration::from_secs(60);
/// Share of arrivals that are returning customers (when there are any to return).
const RETURNING_SHARE: f64 = 0.2;
/// From this local hour (Europe/Rome) on, Italian customers weigh [`EVENING_ITALIAN_WEIGHT`]
/// (against 22 for English) instead of 78: the evening peak is mostly Italian, which keeps
/// the thinning Italian late shift busy until its team closes at 22:00 (queued customers
/// are then handed over to the English team).
const EVENING_FROM_HOUR: usize = 20;
/// Weight of Italian arrivals in the evening.
const EVENING_ITALIAN_WEIGHT: f64 = 135.0;

/// Where the simulator's clock comes from.
#[derive(Debug, Clone)]
pub enum ClockSource {
    /// The node's own clock object (in-process demo): perfectly shared.
    Shared(SharedClock),
    /// A simulated clock started from `start_ms` (the node's `now_unix_ms` from the admin
    /// snapshot when `None`) running at `speed` (measured from two snapshots when `None`).
    Node {
        /// Simulated start instant, Unix ms.
        start_ms: Option<i64>,
        /// Simulated seconds per wall second.
        speed: Option<f64>,
    },
}

/// What to simulate and against which routers.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Router gRPC addresses (`host:port`); the next one is used when a call is UNAVAILABLE.
    pub routers: Vec<String>,
    /// Agent-node gRPC addresses for the agents' desktops; the routers when empty (a
    /// standalone node serves the desktops on its own port).
    pub agent_nodes: Vec<String>,
    /// The node's configuration: agents (credentials, capacity, skills), departments, rules
    /// and the admin token.
    pub config: Config,
    /// The clock shared with the node.
    pub clock: ClockSource,
    /// Simulated span during which customers arrive.
    pub duration: Duration,
    /// Expected conversations between 09:00 and 23:00 Europe/Rome (the profile's scale).
    pub conversations_per_day: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Simulated time allowed after the last arrival for open conversations to finish.
    pub drain: Duration,
    /// Show a live progress line on stderr.
    pub progress: bool,
}

impl SimOptions {
    /// Returns options for `routers` and `config` with the defaults of a demo day.
    pub fn new(routers: Vec<String>, config: Config, clock: ClockSource) -> Self {
        Self {
            routers,
            agent_nodes: Vec::new(),
            config,
            clock,
            duration: Duration::from_secs(14 * 3600),
            conversations_per_day: 1200.0,
            seed: 1,
            drain: Duration::from_secs(45 * 60),
            progress: true,
        }
    }
}

/// Runs the simulation and returns the report.
pub async fn run(options: SimOptions) -> Result<Report, SimError> {
    if options.duration.is_zero() {
        return Err(SimError::Options("the duration must be positive".into()));
    }
    let routers = Routers::new(&options.routers)?;
    let agent_nodes = if options.agent_nodes.is_empty() {
        Routers::new(&options.routers)?
    } else {
        Routers::new(&options.agent_nodes)?
    };
    let token = admin_token(&options.config);
    let first = reach(&routers, &token).await?;
    let clock = match &options.clock {
        ClockSource::Shared(clock) => clock.clone(),
        ClockSource::Node { start_ms, speed } => {
            node_clock(&routers, &token, first, *start_ms, *speed).await
        }
    };
    let shared = Arc::new(Shared {
        clock,
        routers,
        agent_nodes,
        ledger: Mutex::new(Ledger::default()),
        config: options.config.clone(),
    });
    let budget =
        tokio::time::Instant::now() + shared.wall(options.duration + options.drain) + BUDGET_SLACK;
    let mut rng = StdRng::seed_from_u64(options.seed);

    // Agents first, so the first customers find someone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agents = JoinSet::new();
    for (index, config) in shared.config.agents.iter().enumerate() {
        agents.spawn(agent::run(
            shared.clone(),
            config.clone(),
            index,
            rng.random(),
            stop_rx.clone(),
        ));
    }
    let login_deadline = tokio::time::Instant::now() + LOGIN_TIMEOUT;
    while shared.ledger.lock().diag.agent_logins < shared.config.agents.len() as u64
        && tokio::time::Instant::now() < login_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if shared.ledger.lock().diag.agent_logins == 0 {
        let _ = stop_tx.send(true);
        agents.abort_all();
        return Err(SimError::NoAgents);
    }

    let progress = options
        .progress
        .then(|| tokio::spawn(progress_loop(shared.clone(), stop_rx.clone())));

    // Arrivals.
    let from = shared.clock.now_ms();
    let to = from.saturating_add(options.duration.as_millis() as i64);
    let profile = profile::HourlyProfile::web_shop(options.conversations_per_day);
    let schedule = profile::arrival_schedule(&profile, from, to, &mut rng);
    info!(arrivals = schedule.len(), from = %profile::local_clock(from), to = %profile::local_clock(to), "arrival schedule drawn");
    let mix = Mix::from_config(&shared.config);
    // After dinner the shop's own country dominates even more.
    let evening_mix = mix.with_language_weight("it", EVENING_ITALIAN_WEIGHT);
    let mut customers = JoinSet::new();
    for (serial, at) in schedule.iter().enumerate() {
        let now = shared.clock.now_ms();
        if *at > now {
            let wait = shared.wall(Duration::from_millis((*at - now) as u64));
            if tokio::time::Instant::now() + wait > budget {
                warn!("wall-clock budget exhausted, no more arrivals");
                break;
            }
            tokio::time::sleep(wait).await;
        }
        while customers.try_join_next().is_some() {}
        let returning = if rng.random_bool(RETURNING_SHARE) {
            let pool = shared.ledger.lock().returnable_customers();
            (!pool.is_empty()).then(|| pool[rng.random_range(0..pool.len())].clone())
        } else {
            None
        };
        let mix = if profile::local_hour(*at) >= EVENING_FROM_HOUR {
            &evening_mix
        } else {
            &mix
        };
        let plan = CustomerPlan::draw(&mut rng, mix, serial as u64, returning);
        customers.spawn(customer::run(shared.clone(), plan));
    }

    // Drain: no more arrivals; open conversations finish (agents close, waiting customers
    // abandon) within the drain time.
    let drain_deadline =
        (tokio::time::Instant::now() + shared.wall(options.drain) + Duration::from_secs(5))
            .min(budget);
    let _ = tokio::time::timeout_at(drain_deadline, async {
        while customers.join_next().await.is_some() {}
    })
    .await;
    let unfinished = customers.len() as u64;
    if unfinished > 0 {
        warn!(
            unfinished,
            "customers still running after the drain, stopping them"
        );
    }
    customers.abort_all();
    // Let the agents receive the last `ended` events.
    tokio::time::sleep(
        shared
            .wall(Duration::from_secs(5))
            .clamp(Duration::from_millis(300), Duration::from_secs(3)),
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while agents.join_next().await.is_some() {}
    })
    .await;
    agents.abort_all();
    if let Some(progress) = progress {
        let _ = tokio::time::timeout(Duration::from_secs(2), progress).await;
    }

    let server = snapshot(&shared.routers, &admin_token(&shared.config))
        .await
        .ok()
        .and_then(|s| s.counters);
    let mut ledger = shared.ledger.lock();
    ledger.diag.unfinished_customers = unfinished;
    ledger.diag.router_failovers = shared.routers.failovers();
    let mut report = report::aggregate(&ledger, SERVICE_LEVEL);
    report.outages = report::Outages::from_intervals(shared.routers.outages());
    report.server = server;
    Ok(report)
}

/// Returns the admin snapshot from the router in use.
pub async fn snapshot(routers: &Routers, token: &str) -> Result<Snapshot, tonic::Status> {
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("admin token is not valid metadata"))?;
    routers
        .call_once(|channel| {
            let mut request = tonic::Request::new(GetSnapshotRequest {});
            request.metadata_mut().insert("authorization", auth.clone());
            async move { AdminClient::new(channel).get_snapshot(request).await }
        })
        .await
}

/// Waits until a router answers; returns its snapshot when the admin token was accepted.
async fn reach(routers: &Routers, token: &str) -> Result<Option<Snapshot>, SimError> {
    let deadline = tokio::time::Instant::now() + REACH_TIMEOUT;
    loop {
        match snapshot(routers, token).await {
            Ok(s) => return Ok(Some(s)),
            Err(status)
                if status.code() == Code::Unavailable
                    || status.code() == Code::DeadlineExceeded =>
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err(SimError::Unreachable(status.message().to_string()));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(status) => {
                warn!(code = ?status.code(), message = status.message(), "admin snapshot refused; clock taken from the options");
                return Ok(None);
            }
        }
    }
}

/// Returns a simulated clock in step with the node's: start from the options or the node's
/// snapshot, speed from the options or measured over two wall seconds.
async fn node_clock(
    routers: &Routers,
    token: &str,
    first: Option<Snapshot>,
    start_ms: Option<i64>,
    speed: Option<f64>,
) -> SharedClock {
    let measured = match (speed, &first) {
        (Some(speed), _) => speed,
        (None, Some(first)) => {
            let began = tokio::time::Instant::now();
            tokio::time::sleep(Duration::from_secs(2)).await;
            match snapshot(routers, token).await {
                Ok(second) => {
                    let wall = began.elapsed().as_secs_f64();
                    round_speed((second.now_unix_ms - first.now_unix_ms) as f64 / 1000.0 / wall)
                }
                Err(_) => 1.0,
            }
        }
        (None, None) => 1.0,
    };
    let start = match start_ms {
        Some(start) => start,
        None => match snapshot(routers, token).await {
            Ok(s) => s.now_unix_ms,
            Err(_) => centralino_base::clock::SystemClock.now_ms(),
        },
    };
    info!(start = %profile::local_clock(start), speed = measured, "simulator clock set");
    Arc::new(SimClock::new(start, measured))
}

/// Rounds a measured clock speed to three significant digits (1.0 stays 1.0).
pub fn round_speed(speed: f64) -> f64 {
    if !speed.is_finite() || speed <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(speed.log10().floor() - 2.0);
    (speed / magnitude).round() * magnitude
}

/// Prints the live progress line until `stop`.
async fn progress_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            log_server_state(&shared).await;
        }
        let line = progress_line(shared.clock.now_ms(), &shared.ledger.lock().progress());
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
    if tty {
        let _ = writeln!(std::io::stderr());
    }
}

/// The bearer token the simulator reads snapshots with: `node.admin_token` of the
/// configuration it was given when set (a dev-mode node's all-scopes token, or an operator's
/// token for nodes outside dev mode, as in the `sim.toml` of `deploy/local/cluster.sh`), else
/// the example configuration's demo operator token.
pub fn admin_token(config: &Config) -> String {
    if config.node.admin_token.is_empty() {
        centralino_base::credentials::DEMO_OPERATOR_TOKEN.to_string()
    } else {
        config.node.admin_token.clone()
    }
}

/// Logs the server's queues and agents (debug level), to explain waits.
async fn log_server_state(shared: &Shared) {
    let Ok(snapshot) = snapshot(&shared.routers, &admin_token(&shared.config)).await else {
        return;
    };
    let queues: Vec<String> = snapshot
        .queues
        .iter()
        .map(|q| {
            format!(
                "{}:{}/{}s/{}",
                q.department, q.depth, q.oldest_wait_seconds, q.offering
            )
        })
        .collect();
    let agents: Vec<String> = snapshot
        .agents
        .iter()
        .map(|a| format!("{}:{}/{}:{}", a.agent_id, a.load, a.capacity, a.status))
        .collect();
    tracing::debug!(at = %profile::local_clock(snapshot.now_unix_ms), queues = %queues.join(" "), agents = %agents.join(" "), "server state");
}

/// Returns the text of the progress line.
pub fn progress_line(now_ms: i64, p: &ledger::Progress) -> String {
    format!(
        "sim {} Rome | started {} | queued {} | with agent {} | closed {} (abandoned {})",
        profile::local_clock(now_ms),
        p.started,
        p.queued,
        p.assigned,
        p.closed,
        p.abandoned
    )
}

/// Parses a simulated duration: `90` or `90s`, `10m`, `2h`, `1d`, or combinations like
/// `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("invalid duration {text:?}"))
        };
    }
    let mut total = 0f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return Err(format!("invalid duration {text:?}: unknown unit {c:?}")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: missing number before {c:?}"))?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: number without unit at the end"
        ));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_all_forms() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5m3").is_err());
        assert!(parse_duration("-3").is_err());
    }

    #[test]
    fn measured_speeds_are_rounded() {
        assert_eq!(round_speed(1.004), 1.0);
        assert!((round_speed(335.2) - 335.0).abs() < 1e-9);
        assert_eq!(round_speed(0.0), 1.0);
        assert_eq!(round_speed(f64::NAN), 1.0);
        assert!((round_speed(59.71) - 59.7).abs() < 1e-9);
    }

    #[test]
    fn progress_line_shows_rome_time_and_figures() {
        let p = ledger::Progress {
            started: 10,
            queued: 2,
            assigned: 3,
            closed: 5,
            abandoned: 1,
        };
        let line = progress_line(1_795_420_800_000, &p);
        assert_eq!(
            line,
            "sim 09:00 Rome | started 10 | queued 2 | with agent 3 | closed 5 (abandoned 1)"
        );
    }
}
