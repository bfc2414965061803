//! Time that tests and the simulator can control (DESIGN.md §5).
//!
//! Every schedule and timer decision reads a [`Clock`]. The [`SystemClock`] is production
//! time; the [`SimClock`] starts at a chosen instant and runs `speed` times faster than the
//! wall clock, so a contact-center day fits into a few minutes.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of "now" in Unix milliseconds and the mapping of simulated durations to wall time.
pub trait Clock: Send + Sync + Debug {
    /// Returns the current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Returns how many simulated seconds pass per wall-clock second (1 for real time).
    fn speed(&self) -> f64;
    /// Returns the wall-clock duration after which `simulated` has passed on this clock.
    fn wall(&self, simulated: Duration) -> Duration {
        simulated.div_f64(self.speed().max(f64::MIN_POSITIVE))
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Production time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }
    fn speed(&self) -> f64 {
        1.0
    }
}

/// A simulation clock: starts at `start_ms` and runs `speed` times faster than the wall clock.
#[derive(Debug, Clone)]
pub struct SimClock {
    start_ms: i64,
    started: Instant,
    speed: f64,
}

impl SimClock {
    /// Returns a clock that reads `start_ms` now and advances `speed` times wall-clock speed.
    pub fn new(start_ms: i64, speed: f64) -> Self {
        Self {
            start_ms,
            started: Instant::now(),
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }
}

impl SimClock {
    /// Returns a clock that read `start_ms` at wall time `anchor_unix_ms`: every process
    /// given the same pair reads the same simulated time (a simulated cluster).
    pub fn anchored(start_ms: i64, speed: f64, anchor_unix_ms: i64) -> Self {
        let mut clock = Self::new(start_ms, speed);
        let since = SystemClock.now_ms() - anchor_unix_ms;
        if since >= 0 {
            let back = Duration::from_millis(since as u64);
            // Pretend the clock started at the anchor; an anchor before this boot of the
            // machine's monotonic clock moves the start instead.
            match Instant::now().checked_sub(back) {
                Some(started) => clock.started = started,
                None => clock.start_ms += (since as f64 * clock.speed) as i64,
            }
        } else {
            clock.start_ms -= (-since as f64 * clock.speed) as i64;
        }
        clock
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        let elapsed = self.started.elapsed().as_secs_f64() * self.speed * 1000.0;
        self.start_ms + elapsed as i64
    }
    fn speed(&self) -> f64 {
        self.speed
    }
}

/// Returns a clock from the configuration's `[clock]` section.
pub fn from_config(config: &crate::config::ClockConfig) -> Result<SharedClock, String> {
    match config.mode {
        crate::config::ClockMode::System => Ok(Arc::new(SystemClock)),
        crate::config::ClockMode::Simulated => {
            let start = match &config.start {
                Some(start) => chrono::DateTime::parse_from_rfc3339(start)
                    .map_err(|e| format!("clock.start {start:?} is not RFC 3339: {e}"))?
                    .timestamp_millis(),
                None => SystemClock.now_ms(),
            };
            Ok(match config.anchor_unix_ms {
                Some(anchor) => Arc::new(SimClock::anchored(start, config.speed, anchor)),
                None => Arc::new(SimClock::new(start, config.speed)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_clocks_agree() {
        let anchor = SystemClock.now_ms() - 2_000;
        let a = SimClock::anchored(1_000_000, 60.0, anchor);
        std::thread::sleep(Duration::from_millis(30));
        let b = SimClock::anchored(1_000_000, 60.0, anchor);
        let (ta, tb) = (a.now_ms(), b.now_ms());
        assert!((ta - tb).abs() < 200, "{ta} vs {tb}");
        // Two wall seconds after the anchor at 60x: two simulated minutes.
        assert!(ta - 1_000_000 >= 120_000, "{}", ta - 1_000_000);
        let future = SimClock::anchored(1_000_000, 60.0, SystemClock.now_ms() + 1_000);
        assert!(future.now_ms() < 1_000_000 - 50_000);
    }

    #[test]
    fn sim_clock_runs_faster_and_maps_durations_back() {
        let clock = SimClock::new(1_000_000, 1000.0);
        std::thread::sleep(Duration::from_millis(20));
        let advanced = clock.now_ms() - 1_000_000;
        assert!(advanced >= 20_000, "advanced only {advanced} ms");
        assert_eq!(
            clock.wall(Duration::from_secs(10)),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn system_clock_is_real_time() {
        assert_eq!(
            SystemClock.wall(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert!(SystemClock.now_ms() > 1_700_000_000_000);
    }
}
