//! `agent-node --config FILE`: hosts agents of a centralino cluster. Agent desktops connect
//! here (AgentDesk); routers reserve agents and follow their availability (AgentNodeInternal).
//! On SIGTERM the node stops taking logins and ends the desktops' streams, so agents
//! reconnect to another node (and keep their conversations within the disconnect grace).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use centralino_agent_node::cluster_node;
use centralino_base::config::{load_document, AgentNodeConfig};
use centralino_base::process;
use clap::Parser;

/// A centralino agent-node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML), the same file the routers read.
    #[arg(long, env = "CENTRALINO_CONFIG")]
    config: PathBuf,
    /// Dev mode (demo, local tests): accepts plaintext agent passwords and the example
    /// configuration's placeholder secrets. Never in production.
    #[arg(long)]
    dev: bool,
    /// Log format: text or json (also CENTRALINO_LOG_FORMAT).
    #[arg(long, env = "CENTRALINO_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Allow a plaintext listener on a non-loopback address (`[node] insecure`).
    #[arg(long)]
    insecure: bool,
}

fn load(path: &PathBuf) -> anyhow::Result<AgentNodeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc = load_document(Some(&text), std::env::vars()).map_err(anyhow::Error::msg)?;
    let config: AgentNodeConfig = toml::Value::Table(doc)
        .try_into()
        .context("parsing the configuration")?;
    let problems = config.cluster.problems();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    process::init_logging(args.log_format == "json", "info");
    let mut config = load(&args.config)?;
    if args.insecure {
        config.node.insecure = true;
    }
    if args.dev {
        config.node.dev_mode = true;
    }
    if config.node.dev_mode {
        tracing::warn!("dev mode: plaintext passwords and placeholder secrets are accepted");
    }
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(async move {
        if !config.node.metrics_addr.is_empty() {
            let addr: SocketAddr = config
                .node
                .metrics_addr
                .parse()
                .context("node.metrics_addr")?;
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .context("metrics exporter")?;
            centralino_agent_node::metrics::describe();
            // Departments are the routers' section: offers by department appear with the first.
            centralino_agent_node::metrics::zero(&config.teams, &[]);
        }
        let node = cluster_node::start(config)
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "centralino agent-node {}: gRPC {}, internal {}",
            node.node_id, node.grpc_addr, node.internal_addr
        );
        process::shutdown_signal().await;
        node.shutdown().await;
        Ok(())
    })
}
