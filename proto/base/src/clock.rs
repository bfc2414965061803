//! Time that tests and the simulator can control (DESIGN.md §5).
//!
//! Every schedule and timer decision reads a [`Clock`]. The [`SystemClock`] is production
//! time; the [`SimClock`] starts at a chosen instant and runs `speed` times faster than the
//! wall clock, so a contact-center day fits into a few minutes; the [`ManualClock`] moves
//! only when a test tells it to, and wakes the timers taken with [`Clock::sleep`] as it
//! passes their deadlines.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

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
    /// Returns a timer that completes once `simulated` has passed on this clock. The
    /// deadline is taken when this is called, not when the timer is first polled.
    fn sleep(&self, simulated: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(self.wall(simulated)))
    }
}

/// A timer of a [`Clock`] (see [`Clock::sleep`]).
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

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
        Self::anchored_from(
            start_ms,
            speed,
            anchor_unix_ms,
            SystemClock.now_ms(),
            Instant::now(),
        )
    }

    /// [`SimClock::anchored`] made at wall time `now_unix_ms`, monotonic instant `now`.
    fn anchored_from(
        start_ms: i64,
        speed: f64,
        anchor_unix_ms: i64,
        now_unix_ms: i64,
        now: Instant,
    ) -> Self {
        let mut clock = Self::new(start_ms, speed);
        clock.started = now;
        let since = now_unix_ms - anchor_unix_ms;
        if since >= 0 {
            let back = Duration::from_millis(since as u64);
            // Pretend the clock started at the anchor; an anchor before this boot of the
            // machine's monotonic clock moves the start instead.
            match now.checked_sub(back) {
                Some(started) => clock.started = started,
                None => clock.start_ms += (since as f64 * clock.speed) as i64,
            }
        } else {
            clock.start_ms -= (-since as f64 * clock.speed) as i64;
        }
        clock
    }

    /// Returns what the clock reads at the monotonic instant `at`.
    fn at(&self, at: Instant) -> i64 {
        let elapsed = at.saturating_duration_since(self.started).as_secs_f64() * self.speed;
        self.start_ms + (elapsed * 1000.0) as i64
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.at(Instant::now())
    }
    fn speed(&self) -> f64 {
        self.speed
    }
}

/// How far ahead a wall-time timer of a [`ManualClock`] is set: it never fires by itself.
const MANUAL_WALL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A clock that moves only when told to ([`ManualClock::advance`], [`ManualClock::set`]).
///
/// Timers taken with [`Clock::sleep`] complete as soon as the clock is moved to or past
/// their deadline, so code driven by this clock needs no wall-time sleeps; timers set on
/// the wall-clock mapping ([`Clock::wall`]) are a year away. Clones share one clock.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<Manual>>,
}

#[derive(Debug)]
struct Manual {
    now_ms: i64,
    /// Timers by (deadline, order taken).
    timers: BTreeMap<(i64, u64), oneshot::Sender<()>>,
    taken: u64,
}

impl ManualClock {
    /// Returns a clock that reads `start_ms` until it is moved.
    pub fn new(start_ms: i64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Manual {
                now_ms: start_ms,
                timers: BTreeMap::new(),
                taken: 0,
            })),
        }
    }

    /// Returns this clock as a [`SharedClock`] (moving either moves both).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Moves the clock forward by `by`; returns how many timers this woke.
    pub fn advance(&self, by: Duration) -> usize {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let state = self.lock();
        let to = state.now_ms.saturating_add(by);
        Self::move_to(state, to)
    }

    /// Sets the clock to `at_ms` (also backwards); returns how many timers this woke.
    pub fn set(&self, at_ms: i64) -> usize {
        Self::move_to(self.lock(), at_ms)
    }

    /// Returns how many timers wait for a deadline still ahead.
    pub fn pending_timers(&self) -> usize {
        let mut state = self.lock();
        state.timers.retain(|_, tx| !tx.is_closed());
        state.timers.len()
    }

    /// Returns the earliest deadline a timer waits for, in Unix milliseconds.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let mut state = self.lock();
        state.timers.retain(|_, tx| !tx.is_closed());
        state.timers.keys().next().map(|(at, _)| *at)
    }

    fn move_to(mut state: MutexGuard<'_, Manual>, to: i64) -> usize {
        state.now_ms = to;
        let later = state.timers.split_off(&(to.saturating_add(1), 0));
        let due = std::mem::replace(&mut state.timers, later);
        // Timers are woken outside the lock: whatever they run may read the clock.
        drop(state);
        due.into_values()
            .map(|tx| tx.send(()))
            .filter(Result::is_ok)
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, Manual> {
        // A panic elsewhere while holding the lock leaves consistent state behind.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.lock().now_ms
    }
    /// Returns 0: the clock does not move with the wall clock.
    fn speed(&self) -> f64 {
        0.0
    }
    fn wall(&self, _simulated: Duration) -> Duration {
        MANUAL_WALL
    }
    fn sleep(&self, simulated: Duration) -> Sleep {
        let by = i64::try_from(simulated.as_millis()).unwrap_or(i64::MAX);
        let mut state = self.lock();
        if by == 0 {
            return Box::pin(std::future::ready(()));
        }
        let at = state.now_ms.saturating_add(by);
        let (tx, rx) = oneshot::channel();
        let order = state.taken;
        state.taken += 1;
        state.timers.insert((at, order), tx);
        Box::pin(async move {
            if rx.await.is_err() {
                // The clock is gone: its time never comes.
                std::future::pending::<()>().await;
            }
        })
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

    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn anchored_clocks_agree() {
        let (wall, mono) = (1_700_000_000_000, Instant::now());
        let anchor = wall - 2_000;
        let a = SimClock::anchored_from(1_000_000, 60.0, anchor, wall, mono);
        // Another process makes its clock 30 ms later from the same anchor.
        let later = mono + Duration::from_millis(30);
        let b = SimClock::anchored_from(1_000_000, 60.0, anchor, wall + 30, later);
        let read = later + Duration::from_millis(10);
        let (ta, tb) = (a.at(read), b.at(read));
        assert!((ta - tb).abs() <= 1, "{ta} vs {tb}");
        // 2.04 wall seconds after the anchor at 60x: 122.4 simulated seconds.
        assert!((ta - 1_000_000 - 122_400).abs() <= 1, "{}", ta - 1_000_000);
        // An anchor one wall second ahead: the clock reads a simulated minute before start.
        let future = SimClock::anchored_from(1_000_000, 60.0, wall + 1_000, wall, mono);
        assert_eq!(future.at(mono), 1_000_000 - 60_000);
    }

    #[test]
    fn sim_clock_runs_faster_and_maps_durations_back() {
        let clock = SimClock::new(1_000_000, 1000.0);
        let read = clock.started + Duration::from_millis(20);
        assert_eq!(clock.at(read), 1_000_000 + 20_000);
        // Never behind its start, and real time moves it forward.
        assert!(clock.now_ms() >= 1_000_000);
        assert_eq!(
            clock.wall(Duration::from_secs(10)),
            Duration::from_millis(10)
        );
        assert_eq!(SimClock::new(0, f64::NAN).speed(), 1.0);
    }

    #[test]
    fn system_clock_is_real_time() {
        assert_eq!(
            SystemClock.wall(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert!(SystemClock.now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(5_000);
        let shared = clock.shared();
        assert_eq!(shared.now_ms(), 5_000);
        assert_eq!(clock.advance(Duration::from_millis(1_500)), 0);
        assert_eq!(shared.now_ms(), 6_500);
        clock.set(1_000);
        assert_eq!(shared.now_ms(), 1_000, "set may move the clock backwards");
        assert!(shared.wall(Duration::from_millis(1)) >= Duration::from_secs(3600));
    }

    /// Polls `sleep` once without a runtime; returns whether it completed.
    fn done(sleep: &mut Sleep) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        sleep.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn manual_timers_fire_when_the_clock_passes_their_deadline() {
        let clock = ManualClock::new(0);
        let shared = clock.shared();
        let mut short = shared.sleep(Duration::from_secs(2));
        // Taken at the call, not at the first poll: moving the clock first still counts.
        clock.advance(Duration::from_secs(1));
        let mut long = shared.sleep(Duration::from_secs(2));
        assert_eq!(clock.pending_timers(), 2);
        assert_eq!(clock.next_deadline_ms(), Some(2_000));
        assert!(!done(&mut short) && !done(&mut long));

        assert_eq!(clock.advance(Duration::from_millis(999)), 0);
        assert!(!done(&mut short));
        assert_eq!(
            clock.advance(Duration::from_millis(1)),
            1,
            "due exactly at 2 s"
        );
        assert!(done(&mut short));
        assert!(!done(&mut long), "due at 3 s");
        assert_eq!(clock.set(10_000), 1);
        assert!(done(&mut long));
        assert_eq!(clock.pending_timers(), 0);

        let mut now = shared.sleep(Duration::ZERO);
        assert!(done(&mut now), "a zero timer completes at once");
    }

    #[test]
    fn dropped_manual_timers_are_not_counted() {
        let clock = ManualClock::new(0);
        let shared = clock.shared();
        let kept = shared.sleep(Duration::from_secs(5));
        drop(shared.sleep(Duration::from_secs(1)));
        assert_eq!(clock.pending_timers(), 1);
        assert_eq!(clock.next_deadline_ms(), Some(5_000));
        assert_eq!(clock.advance(Duration::from_secs(10)), 1);
        drop(kept);
    }

    #[test]
    fn manual_timers_wake_tasks_on_a_runtime() {
        let clock = ManualClock::new(0);
        let fired = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let sleep = clock.shared().sleep(Duration::from_secs(60));
            let flag = fired.clone();
            let task = tokio::spawn(async move {
                sleep.await;
                flag.store(true, Ordering::SeqCst);
            });
            tokio::task::yield_now().await;
            assert!(!fired.load(Ordering::SeqCst));
            clock.advance(Duration::from_secs(60));
            // No timer of the runtime is involved: the advance alone lets the task finish.
            task.await.expect("task");
            assert!(fired.load(Ordering::SeqCst));
        });
    }
}
