//! What every centralino binary does the same way: logging, signals, its node id.

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (`default` otherwise), as JSON
/// lines when `json` is set.
pub fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Returns this process's node id: the configured one, else the host name (a pod's name on
/// Kubernetes), else `<fallback>-<random>`.
pub fn node_id(configured: &str, fallback: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| {
            format!(
                "{fallback}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
        })
}
