//! When customers arrive: an hourly profile of a web shop's day in Europe/Rome and a
//! non-homogeneous Poisson arrival schedule drawn from it. Pure functions, seeded randomness.

use chrono::{DateTime, Timelike};
use chrono_tz::Europe::Rome;
use rand::Rng;
use rand_distr::{Distribution, Exp1};

/// One hour in milliseconds.
const HOUR_MS: i64 = 3_600_000;
/// Most arrivals one schedule may hold (a guard against absurd rates).
pub const MAX_ARRIVALS: usize = 1_000_000;

/// Relative arrival weights per local hour (Europe/Rome), 0–23: quiet nights, a morning
/// ramp, a lunch dip and the evening peak from 20:00 to 22:00 (after dinner), which keeps
/// the thinning Italian late shift busy until the team closes at 22:00.
pub const DEFAULT_WEIGHTS: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.5, // 00–08
    4.0, 6.0, 7.0, 6.0, 5.0, 6.0, 7.0, 7.0, 7.5, // 09–17
    8.0, 9.0, 11.0, 16.0, 6.0, 2.0, // 18–23
];

/// First and last (exclusive) local hour of the shop's chat day.
pub const DAY_HOURS: std::ops::Range<usize> = 9..23;

/// Expected arrivals per local hour of the day.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyProfile {
    weights: [f64; 24],
    /// Expected arrivals between 09:00 and 23:00 local time.
    per_day: f64,
}

impl HourlyProfile {
    /// Returns the default web-shop profile scaled so that `per_day` conversations are
    /// expected between 09:00 and 23:00 Europe/Rome.
    pub fn web_shop(per_day: f64) -> Self {
        Self::new(DEFAULT_WEIGHTS, per_day)
    }

    /// Returns a profile with the given relative `weights` (negative values count as zero).
    pub fn new(weights: [f64; 24], per_day: f64) -> Self {
        let weights = weights.map(|w| if w.is_finite() { w.max(0.0) } else { 0.0 });
        let per_day = if per_day.is_finite() {
            per_day.max(0.0)
        } else {
            0.0
        };
        Self { weights, per_day }
    }

    /// Returns the expected arrivals per hour at local hour `hour` (0–23).
    pub fn rate_per_hour(&self, hour: usize) -> f64 {
        let day: f64 = self.weights[DAY_HOURS].iter().sum();
        if day <= 0.0 {
            return 0.0;
        }
        self.weights[hour % 24] * self.per_day / day
    }

    /// Returns the expected arrivals per hour at the instant `unix_ms`.
    pub fn rate_at(&self, unix_ms: i64) -> f64 {
        self.rate_per_hour(local_hour(unix_ms))
    }

    /// Returns the expected number of arrivals in `[from_ms, to_ms)`.
    pub fn expected_between(&self, from_ms: i64, to_ms: i64) -> f64 {
        let mut total = 0.0;
        let mut t = from_ms;
        while t < to_ms {
            let boundary = next_hour_boundary(t).min(to_ms);
            total += self.rate_at(t) * (boundary - t) as f64 / HOUR_MS as f64;
            t = boundary;
        }
        total
    }
}

/// Returns the local hour (Europe/Rome) of the instant `unix_ms`.
pub fn local_hour(unix_ms: i64) -> usize {
    DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.with_timezone(&Rome).hour() as usize)
        .unwrap_or(0)
}

/// Returns the minutes since local midnight (Europe/Rome) of the instant `unix_ms`.
pub fn local_minute(unix_ms: i64) -> u32 {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| {
            let local = t.with_timezone(&Rome);
            local.hour() * 60 + local.minute()
        })
        .unwrap_or(0)
}

/// Returns `HH:MM` of the instant `unix_ms` in Europe/Rome.
pub fn local_clock(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.with_timezone(&Rome).format("%H:%M").to_string())
        .unwrap_or_else(|| "--:--".to_string())
}

/// Returns the next whole UTC hour after `unix_ms` (Rome's offsets are whole hours, so this
/// is also the next local hour boundary).
fn next_hour_boundary(unix_ms: i64) -> i64 {
    (unix_ms.div_euclid(HOUR_MS) + 1) * HOUR_MS
}

/// Returns the arrival instants (Unix ms, ascending) of a Poisson process whose rate follows
/// `profile`, in `[from_ms, to_ms)`.
///
/// The rate is constant within each hour; by the memorylessness of the exponential
/// distribution, redrawing at each hour boundary gives an exact non-homogeneous process.
pub fn arrival_schedule(
    profile: &HourlyProfile,
    from_ms: i64,
    to_ms: i64,
    rng: &mut impl Rng,
) -> Vec<i64> {
    let mut arrivals = Vec::new();
    let mut t = from_ms;
    while t < to_ms && arrivals.len() < MAX_ARRIVALS {
        let boundary = next_hour_boundary(t).min(to_ms);
        let per_ms = profile.rate_at(t) / HOUR_MS as f64;
        if per_ms <= 0.0 {
            t = boundary;
            continue;
        }
        let gap = poisson_gap_ms(per_ms, rng);
        if t as f64 + gap >= boundary as f64 {
            t = boundary;
        } else {
            t += gap.ceil().max(1.0) as i64;
            if t < boundary {
                arrivals.push(t);
            }
        }
    }
    arrivals
}

/// Returns an exponential inter-arrival gap in ms for a rate of `per_ms` arrivals per ms.
pub fn poisson_gap_ms(per_ms: f64, rng: &mut impl Rng) -> f64 {
    let unit: f64 = Exp1.sample(rng);
    unit / per_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// 2026-11-23T09:00:00+01:00.
    const NINE_AM: i64 = 1_795_420_800_000;

    #[test]
    fn nine_am_constant_is_nine_in_rome() {
        assert_eq!(local_hour(NINE_AM), 9);
        assert_eq!(local_clock(NINE_AM + 90 * 60_000), "10:30");
    }

    #[test]
    fn profile_is_scaled_to_the_day_and_peaks_in_the_evening() {
        let p = HourlyProfile::web_shop(1200.0);
        let day: f64 = DAY_HOURS.map(|h| p.rate_per_hour(h)).sum();
        assert!((day - 1200.0).abs() < 1e-6, "{day}");
        let peak = (0..24)
            .max_by(|a, b| p.rate_per_hour(*a).total_cmp(&p.rate_per_hour(*b)))
            .unwrap();
        assert!((20..=21).contains(&peak), "{peak}");
        assert!(p.rate_per_hour(3) < p.rate_per_hour(9) / 10.0);
        let expected = p.expected_between(NINE_AM, NINE_AM + 14 * HOUR_MS);
        assert!((expected - 1200.0).abs() < 1e-6, "{expected}");
    }

    #[test]
    fn schedule_count_matches_the_expectation_and_is_sorted() {
        let p = HourlyProfile::web_shop(1200.0);
        for seed in 0..5 {
            let mut rng = StdRng::seed_from_u64(seed);
            let a = arrival_schedule(&p, NINE_AM, NINE_AM + 14 * HOUR_MS, &mut rng);
            // Poisson(1200): standard deviation ≈ 35; allow 5 of them.
            assert!((1025..=1375).contains(&a.len()), "seed {seed}: {}", a.len());
            assert!(a.windows(2).all(|w| w[0] <= w[1]));
            assert!(a
                .iter()
                .all(|t| (NINE_AM..NINE_AM + 14 * HOUR_MS).contains(t)));
            let evening = a.iter().filter(|t| local_hour(**t) == 21).count();
            let morning = a.iter().filter(|t| local_hour(**t) == 9).count();
            assert!(evening > morning, "evening {evening} morning {morning}");
        }
    }

    #[test]
    fn schedule_is_deterministic_per_seed_and_empty_without_rate() {
        let p = HourlyProfile::web_shop(500.0);
        let a = arrival_schedule(
            &p,
            NINE_AM,
            NINE_AM + HOUR_MS,
            &mut StdRng::seed_from_u64(7),
        );
        let b = arrival_schedule(
            &p,
            NINE_AM,
            NINE_AM + HOUR_MS,
            &mut StdRng::seed_from_u64(7),
        );
        assert_eq!(a, b);
        let zero = HourlyProfile::new([0.0; 24], 1000.0);
        let none = arrival_schedule(
            &zero,
            NINE_AM,
            NINE_AM + 24 * HOUR_MS,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(none.is_empty());
    }

    #[test]
    fn poisson_gaps_have_the_right_mean() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20_000;
        let mean = (0..n).map(|_| poisson_gap_ms(0.01, &mut rng)).sum::<f64>() / n as f64;
        assert!((mean - 100.0).abs() < 3.0, "{mean}");
    }
}
