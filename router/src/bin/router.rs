//! `router`: a centralino routing node.
//!
//! `router --standalone` runs router, agent-node and embedded store in one process with the
//! example configuration on 127.0.0.1:50051 (gRPC) and 127.0.0.1:9464 (metrics).
//! `router --config FILE` with `[cluster] etcd_endpoints` runs one router of a cluster; on
//! SIGTERM it hands its partitions over before exiting (within `cluster.drain_budget_secs`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use centralino_base::process;
use centralino_router::config::Config;
use centralino_router::{clustered, standalone};
use clap::Parser;

/// A centralino routing node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Run router, agent-node and embedded store in this one process.
    #[arg(long)]
    standalone: bool,
    /// Configuration file (TOML); the built-in example when absent.
    #[arg(long, env = "CENTRALINO_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address (overrides node.grpc_addr).
    #[arg(long)]
    grpc_addr: Option<String>,
    /// Metrics listen address (overrides node.metrics_addr; "" disables).
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Data directory (overrides node.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Dev mode (demo, local tests): accepts plaintext agent passwords, node.admin_token and
    /// the example configuration's placeholder secrets. Never in production.
    #[arg(long)]
    dev: bool,
    /// Log format: text or json (also CENTRALINO_LOG_FORMAT).
    #[arg(long, env = "CENTRALINO_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Allow a plaintext public listener on a non-loopback address (`[node] insecure`).
    #[arg(long)]
    insecure: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    process::init_logging(args.log_format == "json", "info");
    let mut config = Config::load(args.config.as_deref()).context("loading the configuration")?;
    if let Some(addr) = args.grpc_addr {
        config.node.grpc_addr = addr;
    }
    if let Some(addr) = args.metrics_addr {
        config.node.metrics_addr = addr;
    }
    if let Some(dir) = args.data_dir {
        config.node.data_dir = dir;
    }
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
        if !args.standalone {
            if config.cluster.etcd_endpoints.is_empty() {
                bail!("cluster mode needs [cluster] etcd_endpoints (or CENTRALINO_CLUSTER__ETCD_ENDPOINTS); use --standalone for one process without etcd");
            }
            let router = clustered::start(config)
                .await
                .context("starting the router")?;
            println!(
                "centralino router {}: gRPC {}, internal {}",
                router.node_id, router.grpc_addr, router.internal_addr
            );
            process::shutdown_signal().await;
            tracing::info!("shutting down: handing partitions over");
            if !router.drain().await {
                bail!("drain budget spent before every partition was handed over");
            }
            return Ok(());
        }
        let node = standalone::start(config)
            .await
            .context("starting the node")?;
        println!(
            "centralino standalone node: gRPC {} metrics {:?}",
            node.grpc_addr, node.metrics_addr
        );
        process::shutdown_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok(())
    })
}
