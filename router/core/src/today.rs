//! Today's service per department and customer language for the admin snapshot (the
//! supervisors' wallboard): conversations answered (with their waits) and abandoned since
//! local midnight of `routing.day_timezone`, on the router's clock (simulated in the
//! demo). Prometheus has the same numbers as `centralino_conversation_wait_seconds` and
//! `centralino_conversations_abandoned_total`, over any window; this is the day's.
//!
//! Memory is bounded: one entry per department × language seen today. Conversations start
//! only in a configured department and a language a configured team speaks (admission
//! refuses others); should another language reach here anyway it counts as
//! [`OTHER_LANGUAGE`], and there are at most [`MAX_ENTRIES`] entries in all. The counts start again from
//! zero at local midnight.

use std::collections::{BTreeMap, BTreeSet};

use centralino_proto::v1::ServiceToday;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use parking_lot::Mutex;

/// The language a conversation counts under when no configured team speaks its own.
pub const OTHER_LANGUAGE: &str = "other";

/// Most department × language entries kept (beyond it, new pairs are not counted).
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    answered: u64,
    answered_in_target: u64,
    abandoned: u64,
    wait_ms_total: u64,
}

#[derive(Debug, Default)]
struct Day {
    date: Option<NaiveDate>,
    tallies: BTreeMap<(String, String), Tally>,
}

/// Today's answered and abandoned conversations per department × language.
#[derive(Debug)]
pub struct Today {
    tz: Tz,
    target_ms: i64,
    languages: BTreeSet<String>,
    day: Mutex<Day>,
}

impl Today {
    /// Returns an empty day in `tz`, answering within `target_secs` counting for the service
    /// level; `languages` are those counted under their own name.
    pub fn new<'a>(tz: Tz, target_secs: u64, languages: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            tz,
            target_ms: i64::try_from(target_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            languages: languages.into_iter().map(str::to_string).collect(),
            day: Mutex::new(Day::default()),
        }
    }

    /// Returns the name `language` is counted under.
    pub fn language_key<'a>(&self, language: &'a str) -> &'a str {
        if self.languages.contains(language) {
            language
        } else {
            OTHER_LANGUAGE
        }
    }

    /// Returns the local date of `at_ms`.
    pub fn date_of(&self, at_ms: i64) -> Option<NaiveDate> {
        DateTime::from_timestamp_millis(at_ms).map(|t| t.with_timezone(&self.tz).date_naive())
    }

    fn with_tally(&self, department: &str, language: &str, at_ms: i64, f: impl FnOnce(&mut Tally)) {
        let Some(date) = self.date_of(at_ms) else {
            return;
        };
        let key = (
            department.to_string(),
            self.language_key(language).to_string(),
        );
        let mut day = self.day.lock();
        match day.date {
            Some(current) if current > date => return, // a late report of yesterday
            Some(current) if current == date => {}
            _ => {
                day.date = Some(date);
                day.tallies.clear();
            }
        }
        if !day.tallies.contains_key(&key) && day.tallies.len() >= MAX_ENTRIES {
            return;
        }
        f(day.tallies.entry(key).or_default());
    }

    /// Counts a conversation answered at `at_ms` after waiting `wait_ms` since its start.
    pub fn answered(&self, department: &str, language: &str, wait_ms: i64, at_ms: i64) {
        let wait_ms = wait_ms.max(0);
        let in_target = wait_ms <= self.target_ms;
        self.with_tally(department, language, at_ms, |t| {
            t.answered += 1;
            t.wait_ms_total = t.wait_ms_total.saturating_add(wait_ms as u64);
            if in_target {
                t.answered_in_target += 1;
            }
        });
    }

    /// Counts a conversation abandoned at `at_ms` before an agent took it.
    pub fn abandoned(&self, department: &str, language: &str, at_ms: i64) {
        self.with_tally(department, language, at_ms, |t| t.abandoned += 1);
    }

    /// Returns today's entries as of `now_ms` (empty once the day has turned), by
    /// department and language, with `waiting` (department, language → count, oldest wait
    /// in seconds) merged in; the derived values are filled in.
    pub fn report(
        &self,
        now_ms: i64,
        waiting: impl IntoIterator<Item = (String, String, u32, u32)>,
    ) -> Vec<ServiceToday> {
        let today = self.date_of(now_ms);
        let day_text = today
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let target_seconds = u32::try_from(self.target_ms / 1000).unwrap_or(u32::MAX);
        let mut out: BTreeMap<(String, String), ServiceToday> = BTreeMap::new();
        let blank = |department: &str, language: &str| ServiceToday {
            department: department.to_string(),
            language: language.to_string(),
            target_seconds,
            day: day_text.clone(),
            ..Default::default()
        };
        {
            let day = self.day.lock();
            if day.date.is_some() && day.date == today {
                for ((department, language), t) in &day.tallies {
                    let mut s = blank(department, language);
                    s.answered = t.answered;
                    s.answered_in_target = t.answered_in_target;
                    s.abandoned = t.abandoned;
                    s.wait_ms_total = t.wait_ms_total;
                    out.insert((department.clone(), language.clone()), s);
                }
            }
        }
        for (department, language, count, oldest) in waiting {
            let language = self.language_key(&language).to_string();
            let key = (department, language);
            if !out.contains_key(&key) && out.len() >= MAX_ENTRIES {
                continue;
            }
            let s = out
                .entry(key.clone())
                .or_insert_with(|| blank(&key.0, &key.1));
            s.waiting = s.waiting.saturating_add(count);
            s.oldest_wait_seconds = s.oldest_wait_seconds.max(oldest);
        }
        let mut out: Vec<ServiceToday> = out.into_values().collect();
        out.iter_mut().for_each(derive);
        out
    }
}

/// Fills in `asa_seconds` and `service_level` from the raw sums of `s`.
pub fn derive(s: &mut ServiceToday) {
    s.asa_seconds = if s.answered == 0 {
        0.0
    } else {
        s.wait_ms_total as f64 / s.answered as f64 / 1000.0
    };
    let handled = s.answered.saturating_add(s.abandoned);
    s.service_level = if handled == 0 {
        0.0
    } else {
        s.answered_in_target as f64 / handled as f64
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-10 22:30 UTC = 23:30 in Rome (CET).
    const LATE: i64 = 1_773_181_800_000;

    fn today() -> Today {
        Today::new(chrono_tz::Europe::Rome, 20, ["it", "en"])
    }

    #[test]
    fn counts_per_department_and_language_and_derives_asa_and_service_level() {
        let t = today();
        t.answered("sales", "it", 10_000, LATE);
        t.answered("sales", "it", 30_000, LATE);
        t.answered("sales", "it", 20_000, LATE);
        t.abandoned("sales", "it", LATE);
        t.answered("support", "en", 5_000, LATE);
        let r = t.report(LATE, [("sales".to_string(), "it".to_string(), 2, 40)]);
        assert_eq!(r.len(), 2);
        let s = &r[0];
        assert_eq!(
            (s.department.as_str(), s.language.as_str()),
            ("sales", "it")
        );
        assert_eq!((s.answered, s.answered_in_target, s.abandoned), (3, 2, 1));
        assert_eq!(s.wait_ms_total, 60_000);
        assert_eq!(s.asa_seconds, 20.0);
        assert_eq!(s.service_level, 0.5);
        assert_eq!((s.waiting, s.oldest_wait_seconds), (2, 40));
        assert_eq!((s.day.as_str(), s.target_seconds), ("2026-03-10", 20));
        assert_eq!(
            (r[1].answered, r[1].asa_seconds, r[1].service_level),
            (1, 5.0, 1.0)
        );
    }

    #[test]
    fn unknown_languages_share_one_entry_and_midnight_starts_again() {
        let t = today();
        for l in ["xx", "yy", "zz"] {
            t.abandoned("sales", l, LATE);
        }
        let r = t.report(LATE, []);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].language.as_str(), r[0].abandoned),
            (OTHER_LANGUAGE, 3)
        );
        // 00:30 in Rome the next day: nothing yet.
        let next = LATE + 3_600_000;
        assert!(t.report(next, []).is_empty());
        t.answered("sales", "it", 1_000, next);
        // A late report of yesterday does not mix in.
        t.abandoned("sales", "it", LATE);
        let r = t.report(next, []);
        assert_eq!((r[0].answered, r[0].abandoned), (1, 0));
        assert_eq!(r[0].day, "2026-03-11");
    }
}
