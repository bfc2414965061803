//! Why a simulation could not run.

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad options (addresses, durations).
    #[error("invalid options: {0}")]
    Options(String),
    /// No router answered in time.
    #[error("no router reachable: {0}")]
    Unreachable(String),
    /// No configured agent could log in.
    #[error("no agent could log in (check the agents' passwords in the configuration)")]
    NoAgents,
}
