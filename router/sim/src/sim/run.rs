//! What every task of a simulation run shares.

use std::time::Duration;

use centralino_base::clock::SharedClock;
use centralino_core::config::Config;
use parking_lot::Mutex;

use super::ledger::Ledger;
use super::net::Routers;

/// State shared by every task of a run.
#[derive(Debug)]
pub struct Shared {
    /// The simulated clock shared with the node.
    pub clock: SharedClock,
    /// Channels to the routers (customers and admin).
    pub routers: Routers,
    /// Channels to the agent-nodes (agents' desktops).
    pub agent_nodes: Routers,
    /// Observations and checks.
    pub ledger: Mutex<Ledger>,
    /// The node's configuration.
    pub config: Config,
}

impl Shared {
    /// Returns the wall time of a simulated duration.
    pub fn wall(&self, simulated: Duration) -> Duration {
        self.clock.wall(simulated)
    }

    /// Returns the slack granted to time-dependent checks: a few simulated seconds or the
    /// simulated equivalent of 50 ms of network and scheduling delay, whichever is larger.
    pub fn slack(&self) -> Duration {
        Duration::from_secs(5).max(Duration::from_secs_f64(0.05 * self.clock.speed()))
    }
}
