//! `centralino`: the command-line tool.
//!
//! - `centralino demo`: starts a standalone node in this process on a simulated clock
//!   (09:00 Europe/Rome), plays a whole contact-center day (09:00–23:00) against it in about
//!   two and a half minutes, prints the report and fails when an invariant was broken.
//! - `centralino sim --router ADDR[,ADDR…] [--agent-node ADDR[,ADDR…]] --duration 2h
//!   --report-json r.json`: plays the same traffic against running routers (agents' desktops
//!   on the agent-nodes, or on the routers when no agent-node is given).
//! - `centralino hash-password < secret.txt`: the argon2id PHC string of a password read
//!   from stdin, for `[[agents]] password_hash`.
//! - `centralino new-token`: a random operator token and its digest for
//!   `[[operators]] token_hash`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use centralino_base::config::{ClockConfig, ClockMode};
use centralino_router::config::Config;
use centralino_router::standalone;
use centralino_sim::sim::{self, ClockSource, Report, SimOptions};
use clap::{Args, Parser, Subcommand};

/// Start of the demo day: a Monday at 09:00 in Rome.
const DEMO_START: &str = "2026-11-23T09:00:00+01:00";
/// The demo day: 09:00 to 23:00.
const DEMO_DAY: Duration = Duration::from_secs(14 * 3600);
/// Wall time the demo day should take at the default speed.
const DEMO_WALL: Duration = Duration::from_secs(150);
/// How long the node may take to shut down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Parser)]
#[command(
    name = "centralino",
    version,
    about = "centralino: live-chat routing for contact centers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a standalone node in-process and simulates a whole contact-center day against it.
    Demo(DemoArgs),
    /// Simulates customers and agents against running routers.
    Sim(SimArgs),
    /// Measures routing decisions, end-to-end throughput over gRPC (with a plain tonic
    /// unary call as the ceiling) and memory per live conversation.
    Bench(BenchArgs),
    /// Reads a password from stdin (one line; never from the command line) and prints its
    /// argon2id PHC string for `[[agents]] password_hash`.
    HashPassword(HashPasswordArgs),
    /// Prints a new random operator token (line 1, give it to the operator) and its digest
    /// (line 2, for `[[operators]] token_hash`).
    NewToken,
}

#[derive(Debug, Args)]
struct HashPasswordArgs {
    /// Read the password from stdin (the default and only way: arguments end up in shell
    /// histories and process lists).
    #[arg(long, default_value_t = true)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Which benchmark: routing, e2e, memory, all, or cluster (a 3-member etcd, three
    /// routers and two agent-nodes against the standalone node; needs etcd installed).
    #[arg(default_value = "all")]
    which: String,
    /// Conversations of the end-to-end run.
    #[arg(long, default_value_t = 10_000)]
    conversations: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Writes the results as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Configuration file (the built-in example when absent).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Writes the report as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Simulated seconds per wall second (default: the day in about 150 s).
    #[arg(long)]
    speed: Option<f64>,
    /// Seed of the simulation's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Expected conversations between 09:00 and 23:00.
    #[arg(long, default_value_t = 1200)]
    conversations: u32,
    /// Keeps the node's data directory instead of removing it at the end.
    #[arg(long)]
    keep_data: bool,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Router gRPC addresses, comma separated; the next one is used when one is unavailable.
    #[arg(long, value_delimiter = ',', required = true)]
    router: Vec<String>,
    /// Agent-node gRPC addresses for the agents' desktops, comma separated; an agent whose
    /// desktop stream breaks logs in again on the next one (default: the --router list).
    #[arg(long = "agent-node", value_delimiter = ',')]
    agent_node: Vec<String>,
    /// Simulated span of arrivals, e.g. 90s, 10m, 2h, 1h30m (a bare number is seconds).
    #[arg(long, value_parser = sim::parse_duration)]
    duration: Duration,
    /// Writes the report as JSON to this file.
    #[arg(long)]
    report_json: PathBuf,
    /// The node's clock speed (measured from the node when absent).
    #[arg(long)]
    speed: Option<f64>,
    /// The node's simulated "now" at the start, RFC 3339 (read from the node when absent).
    #[arg(long)]
    start: Option<String>,
    /// The node's configuration as a client sees it: departments, the agents with their
    /// plaintext `password`s, and `[node] admin_token` = the operator token the sim sends
    /// (`deploy/local/cluster.sh` writes one: credentials/sim.toml); the built-in example
    /// (demo passwords and token, dev-mode nodes) when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the simulation's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Expected conversations between 09:00 and 23:00 Europe/Rome (the profile's scale).
    #[arg(long, default_value_t = 1200)]
    conversations: u32,
    /// Simulated time allowed after the last arrival for open conversations to finish.
    #[arg(long, value_parser = sim::parse_duration, default_value = "45m")]
    drain: Duration,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo(args),
        Command::Sim(args) => run_sim(args),
        Command::Bench(args) => bench(args),
        Command::HashPassword(_) => hash_password(),
        Command::NewToken => {
            let (token, hash) = centralino_base::credentials::new_token();
            println!("{token}\n{hash}");
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use centralino_sim::bench::{self, Which};
    init_logging("warn");
    if args.which == "cluster" {
        let report = actix::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
        })
        .block_on(centralino_sim::cluster_bench::run(
            args.conversations,
            args.concurrency,
        ))
        .map_err(|e| anyhow::anyhow!(e))?;
        if let Some(path) = args.report_json {
            std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let which = match args.which.as_str() {
        "routing" => Which::Routing,
        "e2e" => Which::EndToEnd,
        "memory" => Which::Memory,
        "all" => Which::All,
        other => anyhow::bail!("unknown benchmark {other:?}: routing, e2e, memory, all or cluster"),
    };
    let report = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(bench::run(which, args.conversations, args.concurrency))
    .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(path) = args.report_json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr, filtered by `RUST_LOG` (`default` otherwise); JSON lines when
/// `CENTRALINO_LOG_FORMAT=json`.
fn init_logging(default: &str) {
    let json = std::env::var("CENTRALINO_LOG_FORMAT").is_ok_and(|f| f == "json");
    centralino_base::process::init_logging(json, default);
}

fn hash_password() -> anyhow::Result<ExitCode> {
    use std::io::{BufRead as _, IsTerminal as _};
    if std::io::stdin().is_terminal() {
        eprint!("password (one line, shown as typed): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("empty password: give the password on stdin, e.g. `centralino hash-password < file`");
    }
    let phc = centralino_base::credentials::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{phc}");
    Ok(ExitCode::SUCCESS)
}

fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging("warn");
    let speed = args
        .speed
        .unwrap_or(DEMO_DAY.as_secs_f64() / DEMO_WALL.as_secs_f64());
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed must be a positive number");
    }
    let mut config = Config::load(args.config.as_deref()).context("loading the configuration")?;
    let data_dir = unique_temp_dir("centralino-demo");
    config.node.grpc_addr = "127.0.0.1:0".to_string();
    config.node.metrics_addr = free_local_port()
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_default();
    config.node.data_dir = data_dir.clone();
    // The demo runs on the example configuration's published placeholder secrets.
    config.node.dev_mode = true;
    config.clock = ClockConfig {
        mode: ClockMode::Simulated,
        start: Some(DEMO_START.to_string()),
        speed,
        anchor_unix_ms: None,
    };
    let problems = config.problems();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    eprintln!(
        "centralino demo: {} agents, {} departments, 09:00–23:00 at {speed:.0}× (about {:.0} s)",
        config.agents.len(),
        config.departments.len(),
        DEMO_DAY.as_secs_f64() / speed
    );
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("cannot build the tokio runtime")
    });
    let conversations = args.conversations;
    let seed = args.seed;
    let progress = !args.quiet;
    let outcome: anyhow::Result<Report> = system.block_on(async move {
        let node = standalone::start(config.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the node: {e}"))?;
        eprintln!("node: gRPC on {}", node.grpc_addr);
        eprintln!(
            "node: watch the day live at http://{}/wallboard (operator token: demo-operator-token); \
             the shop at http://{}/, the agent console at http://{}/console",
            node.grpc_addr, node.grpc_addr, node.grpc_addr
        );
        if let Some(metrics) = node.metrics_addr {
            eprintln!("node: metrics at http://{metrics}/metrics");
        }
        let mut options = SimOptions::new(
            vec![node.grpc_addr.to_string()],
            config,
            ClockSource::Shared(node.clock.clone()),
        );
        options.duration = DEMO_DAY;
        options.conversations_per_day = f64::from(conversations);
        options.seed = seed;
        options.progress = progress;
        // SIGINT or SIGTERM stops the day early but still shuts the node down cleanly.
        let report = tokio::select! {
            report = sim::run(options) => Some(report),
            _ = centralino_base::process::shutdown_signal() => None,
        };
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, node.shutdown())
            .await
            .is_err()
        {
            eprintln!("warning: the node did not shut down in time");
        }
        match report {
            Some(report) => Ok(report?),
            None => bail!("interrupted: the node was shut down"),
        }
    });
    if args.keep_data {
        eprintln!("data kept in {}", data_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    finish(outcome?, args.report_json.as_deref())
}

fn run_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    init_logging("warn");
    let config = Config::load(args.config.as_deref()).context("loading the configuration")?;
    let start_ms = match &args.start {
        Some(start) => Some(
            chrono::DateTime::parse_from_rfc3339(start)
                .with_context(|| format!("--start {start:?} is not RFC 3339"))?
                .timestamp_millis(),
        ),
        None => None,
    };
    if let Some(speed) = args.speed {
        if !(speed.is_finite() && speed > 0.0) {
            bail!("--speed must be a positive number");
        }
    }
    let mut options = SimOptions::new(
        args.router.clone(),
        config,
        ClockSource::Node {
            start_ms,
            speed: args.speed,
        },
    );
    options.agent_nodes = args.agent_node.clone();
    options.duration = args.duration;
    options.conversations_per_day = f64::from(args.conversations);
    options.seed = args.seed;
    options.drain = args.drain;
    options.progress = !args.quiet;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = runtime.block_on(sim::run(options))?;
    finish(report, Some(&args.report_json))
}

/// Prints the report, writes the JSON and returns the exit code (1 when a check failed).
fn finish(report: Report, json: Option<&Path>) -> anyhow::Result<ExitCode> {
    println!("{}", report.table());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    let failed: Vec<String> = report
        .violations()
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(name, v)| format!("{name}={v}"))
        .collect();
    if failed.is_empty() {
        println!("all invariant checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("invariant checks FAILED: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}

/// Returns a fresh directory path under the system's temporary directory.
fn unique_temp_dir(prefix: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()))
}

/// Returns a TCP port that was free a moment ago (for the metrics listener, whose bound
/// address the node does not report back when given port 0).
fn free_local_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}
