//! Team working hours: whether a team is open at an instant, when it next opens or closes,
//! and which language's team serves a customer (language fallback chains).
//!
//! Everything here is a pure function of configuration and an instant in Unix milliseconds
//! (UTC); nothing reads a clock, so callers pass `clock.now_ms()` explicitly.
//!
//! # Model
//!
//! A [`ScheduleConfig`] describes hours in the team's *local wall time* in an IANA time zone
//! (e.g. `Europe/Rome`, resolved with the tz database bundled in `chrono-tz`):
//!
//! ```toml
//! timezone = "Europe/Rome"
//! holidays = ["12-25", "2026-12-08"]
//! [weekly]
//! daily = ["10:00-22:00"]
//! sun = ["10:00-13:00", "14:00-18:00"]
//! [overrides]
//! "2026-12-24" = ["10:00-14:00"]
//! "2026-12-31" = []
//! ```
//!
//! The hours of a local date D are, in order of precedence:
//! 1. `overrides[D]` when present (an empty list closes the day), so an override can also
//!    open a date that is a holiday;
//! 2. closed when D is a holiday (`"MM-DD"` every year, or `"YYYY-MM-DD"` once);
//! 3. the weekly hours of D's weekday: the `mon`..`sun` entry if present, else the `daily`
//!    entry, else closed. An empty `weekly` map means open 24 hours every day (24/7).
//!
//! An interval `"HH:MM-HH:MM"` is half-open: open from the start minute inclusive to the end
//! minute exclusive. The end may be `"24:00"` (the next local midnight); `"24h"` means
//! `"00:00-24:00"`. Intervals may not cross midnight: write `"22:00-24:00"` on one day and
//! `"00:00-02:00"` on the next, which then form one continuous open period with no change at
//! midnight. Overlapping or touching intervals of one day are merged.
//!
//! # Local time and daylight saving
//!
//! A wall time "D hh:mm" stands for the **earliest instant at which the local clock reads
//! that time**; when the clock never reads it (it falls in a spring-forward gap) it stands
//! for the instant the clock jumps over it, the end of the gap. In `Europe/Rome`:
//! - 2026-03-29, 02:00 CET jumps to 03:00 CEST: `"02:30"` means 03:00 CEST (01:00 UTC), so
//!   `"02:00-03:00"` is empty and `"01:00-04:00"` lasts two real hours;
//! - 2026-10-25, 03:00 CEST falls back to 02:00 CET: `"02:30"` means its first occurrence,
//!   02:30 CEST (00:30 UTC), so `"02:00-03:00"` lasts two real hours and `"01:00-04:00"` four.
//!
//! Hours away from the change (such as `"10:00-22:00"`) keep their local meaning, so on
//! change days their UTC instants shift by one hour from the previous day. This mapping is
//! monotonic, so intervals never invert and consecutive days never overlap.
//!
//! The set of instants at which a team is open is the union, over all local dates D and all
//! intervals `[s, e)` of D's hours, of `[instant(D, s), instant(D, e))`. [`Schedule::is_open`],
//! [`Schedule::next_change`], [`Schedule::next_open`] and [`Schedule::next_close`] all read this
//! one set, so they always agree. Searches look at most [`SEARCH_HORIZON_DAYS`] local days
//! ahead; a state that does not flip within that horizon (a 24/7 team, a team never open) has
//! no next change.
//!
//! # Language fallback
//!
//! [`serving_language`] picks the first language of `[customer language, fallback...]` that
//! has an open team; fallback chains are not transitive (the fallbacks of a fallback language
//! are not consulted), so the configuration lists the whole chain explicitly.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How many local days ahead of the queried instant searches look for a change.
pub const SEARCH_HORIZON_DAYS: u64 = 400;

/// Minutes in a local day (the end of an interval may equal it: `"24:00"`).
const MINUTES_PER_DAY: u16 = 24 * 60;
/// Longest spring-forward gap to step over, in minutes (the tz database has whole skipped
/// days, e.g. Pacific/Apia on 2011-12-30).
const MAX_GAP_MINUTES: i64 = 2 * 24 * 60;
/// Milliseconds in 24 hours.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Weekly keys, Monday first, matching `Weekday::num_days_from_monday`.
const WEEKDAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A team's working schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA time zone, e.g. "Europe/Rome"; "UTC" when empty.
    pub timezone: String,
    /// Weekly hours: keys mon..sun (lowercase 3 letters) or "daily"; values are lists of "HH:MM-HH:MM" or ["24h"]. A missing day = closed, unless the map is empty = always open (24/7).
    pub weekly: BTreeMap<String, Vec<String>>,
    /// Closed dates: "MM-DD" every year or "YYYY-MM-DD".
    pub holidays: Vec<String>,
    /// Dates with their own hours (YYYY-MM-DD → intervals; empty list = closed).
    pub overrides: BTreeMap<String, Vec<String>>,
}

/// A half-open interval of minutes since local midnight, `start < end <= 1440`.
type Interval = (u16, u16);

/// A validated, compiled [`ScheduleConfig`], ready to answer time queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    tz: Tz,
    /// Sorted, disjoint, non-touching intervals per weekday, Monday first.
    weekly: [Vec<Interval>; 7],
    /// Recurring holidays as (month, day).
    yearly_holidays: BTreeSet<(u32, u32)>,
    /// One-off holidays.
    dated_holidays: BTreeSet<NaiveDate>,
    /// Dates with their own hours (sorted, merged intervals).
    overrides: BTreeMap<NaiveDate, Vec<Interval>>,
}

impl Schedule {
    /// Returns the compiled schedule of `config`, or an error message naming the bad value
    /// (unknown time zone, malformed interval, start not before end, unknown weekday key,
    /// malformed or impossible date).
    pub fn parse(config: &ScheduleConfig) -> Result<Self, String> {
        let tz = parse_timezone(&config.timezone)?;
        let weekly = parse_weekly(&config.weekly)?;
        let mut yearly_holidays = BTreeSet::new();
        let mut dated_holidays = BTreeSet::new();
        for holiday in &config.holidays {
            let text = holiday.trim();
            if let Some(date) = parse_full_date(text) {
                dated_holidays.insert(date);
            } else if let Some(month_day) = parse_month_day(text) {
                yearly_holidays.insert(month_day);
            } else {
                return Err(format!(
                    "bad holiday {holiday:?}: expected \"MM-DD\" (every year) or \"YYYY-MM-DD\""
                ));
            }
        }
        let mut overrides = BTreeMap::new();
        for (date, intervals) in &config.overrides {
            let day = parse_full_date(date.trim())
                .ok_or_else(|| format!("bad override date {date:?}: expected \"YYYY-MM-DD\""))?;
            let hours = parse_intervals(intervals).map_err(|e| format!("overrides.{date}: {e}"))?;
            overrides.insert(day, hours);
        }
        Ok(Self {
            tz,
            weekly,
            yearly_holidays,
            dated_holidays,
            overrides,
        })
    }

    /// Returns the schedule's time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Returns whether the team is open at `at_ms` (closed for instants outside chrono's range).
    pub fn is_open(&self, at_ms: i64) -> bool {
        let Some((first, last)) = self.window(at_ms, 2) else {
            return false;
        };
        self.spans(first, last)
            .find(|&(_, end)| end > at_ms)
            .is_some_and(|(start, _)| start <= at_ms)
    }

    /// Returns the first instant after `at_ms` at which the open/closed state flips, or `None`
    /// when it does not flip within [`SEARCH_HORIZON_DAYS`] local days (24/7, never open).
    pub fn next_change(&self, at_ms: i64) -> Option<i64> {
        let (first, last) = self.window(at_ms, SEARCH_HORIZON_DAYS)?;
        let horizon = instant(self.tz, last, MINUTES_PER_DAY)?;
        let (start, end) = self.spans(first, last).find(|&(_, end)| end > at_ms)?;
        if start > at_ms {
            Some(start)
        } else {
            (end < horizon).then_some(end)
        }
    }

    /// Returns the first instant at or after `at_ms` at which the team is open (`at_ms` itself
    /// when open), or `None` when it does not open within [`SEARCH_HORIZON_DAYS`] local days.
    pub fn next_open(&self, at_ms: i64) -> Option<i64> {
        let (first, last) = self.window(at_ms, SEARCH_HORIZON_DAYS)?;
        self.spans(first, last)
            .find(|&(_, end)| end > at_ms)
            .map(|(start, _)| start.max(at_ms))
    }

    /// Returns the first instant at or after `at_ms` at which the team is closed (`at_ms`
    /// itself when closed), or `None` when it stays open for [`SEARCH_HORIZON_DAYS`] local days.
    pub fn next_close(&self, at_ms: i64) -> Option<i64> {
        if !self.is_open(at_ms) {
            return Some(at_ms);
        }
        self.next_change(at_ms)
    }

    /// Returns `at_ms` as a date and time in the schedule's time zone, or `None` when out of
    /// range; for callers that format the time in the customer's language.
    pub fn local(&self, at_ms: i64) -> Option<DateTime<Tz>> {
        Some(DateTime::from_timestamp_millis(at_ms)?.with_timezone(&self.tz))
    }

    /// Returns `at_ms` as local date and time with the zone name, e.g.
    /// `"2026-12-26 10:00 (Europe/Rome)"`; the date is always included so the text is
    /// unambiguous without knowing "now" (see [`Schedule::describe_local_from`]).
    pub fn describe_local(&self, at_ms: i64) -> String {
        match self.local(at_ms) {
            Some(t) => format!("{} ({})", t.format("%Y-%m-%d %H:%M"), self.tz.name()),
            None => format!("{at_ms} ms since the Unix epoch (out of range)"),
        }
    }

    /// Returns `at_ms` as seen from `now_ms`: only the local time, e.g. `"10:00 (Europe/Rome)"`,
    /// when `at_ms` lies less than 24 hours after `now_ms` (the next time the clock reads
    /// 10:00 is then unambiguous, as in "the Italian service reopens at 10:00"), otherwise
    /// the full [`Schedule::describe_local`] text with the date.
    pub fn describe_local_from(&self, now_ms: i64, at_ms: i64) -> String {
        match self.local(at_ms) {
            Some(t) if (0..DAY_MS).contains(&at_ms.saturating_sub(now_ms)) => {
                format!("{} ({})", t.format("%H:%M"), self.tz.name())
            }
            _ => self.describe_local(at_ms),
        }
    }

    /// Returns the hours of local date `date` after overrides and holidays.
    fn hours(&self, date: NaiveDate) -> &[Interval] {
        if let Some(hours) = self.overrides.get(&date) {
            return hours;
        }
        if self.dated_holidays.contains(&date)
            || self.yearly_holidays.contains(&(date.month(), date.day()))
        {
            return &[];
        }
        &self.weekly[date.weekday().num_days_from_monday() as usize]
    }

    /// Returns the local dates to scan for a query at `at_ms`: from two days before its
    /// local date (so the open period containing it is seen whole) to `days_ahead` after.
    fn window(&self, at_ms: i64, days_ahead: u64) -> Option<(NaiveDate, NaiveDate)> {
        let date = self.local(at_ms)?.date_naive();
        let first = date.checked_sub_days(Days::new(2)).unwrap_or(date);
        Some((first, date.checked_add_days(Days::new(days_ahead))?))
    }

    /// Returns the open periods of local dates `first..=last` in order, merged across
    /// interval and day boundaries, as half-open `(start_ms, end_ms)` pairs.
    fn spans(&self, first: NaiveDate, last: NaiveDate) -> Spans<'_> {
        Spans {
            schedule: self,
            next_day: Some(first),
            last_day: last,
            buffer: Vec::new(),
            pending: None,
        }
    }
}

/// Returns whether any of `schedules` is open at `at_ms` (false for an empty list).
pub fn is_open_any(schedules: &[&Schedule], at_ms: i64) -> bool {
    schedules.iter().any(|s| s.is_open(at_ms))
}

/// Returns the earliest instant at or after `at_ms` at which any of `schedules` is open, or
/// `None` when none opens within the search horizon.
pub fn next_open_any(schedules: &[&Schedule], at_ms: i64) -> Option<i64> {
    schedules.iter().filter_map(|s| s.next_open(at_ms)).min()
}

/// Returns the language whose team serves a customer speaking `language` at `at_ms`: the customer's own language if one of its teams is open, else the first open language of its fallback chain; None when nobody serves.
///
/// `fallback` maps a language to its ordered fallback languages (e.g. `it = ["en"]`);
/// `open(lang)` tells whether any team for `lang` is open at the instant of interest. Only
/// the customer language's own chain is consulted (chains are not followed transitively).
pub fn serving_language<'a>(
    language: &'a str,
    fallback: &'a BTreeMap<String, Vec<String>>,
    open: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    std::iter::once(language)
        .chain(
            fallback
                .get(language)
                .into_iter()
                .flatten()
                .map(String::as_str),
        )
        .find(|lang| open(lang))
}

/// Lazily yields the merged open periods of a range of local dates.
struct Spans<'a> {
    schedule: &'a Schedule,
    /// The next local date to expand, `None` once past the range (or chrono's last date).
    next_day: Option<NaiveDate>,
    last_day: NaiveDate,
    /// Raw periods of the last expanded day, in reverse order (popped from the back).
    buffer: Vec<(i64, i64)>,
    /// The period being extended by touching or overlapping raw periods.
    pending: Option<(i64, i64)>,
}

impl Spans<'_> {
    /// Returns the next raw (unmerged, non-empty) period, expanding days as needed.
    fn next_raw(&mut self) -> Option<(i64, i64)> {
        loop {
            if let Some(raw) = self.buffer.pop() {
                return Some(raw);
            }
            let day = self.next_day.filter(|day| *day <= self.last_day)?;
            self.next_day = day.succ_opt();
            let tz = self.schedule.tz;
            for &(start, end) in self.schedule.hours(day).iter().rev() {
                if let (Some(s), Some(e)) = (instant(tz, day, start), instant(tz, day, end)) {
                    if s < e {
                        self.buffer.push((s, e));
                    }
                }
            }
        }
    }
}

impl Iterator for Spans<'_> {
    type Item = (i64, i64);

    fn next(&mut self) -> Option<(i64, i64)> {
        loop {
            let Some((start, end)) = self.next_raw() else {
                return self.pending.take();
            };
            match self.pending {
                Some((s, e)) if start <= e => self.pending = Some((s, e.max(end))),
                previous => {
                    self.pending = Some((start, end));
                    if previous.is_some() {
                        return previous;
                    }
                }
            }
        }
    }
}

/// Returns the instant (Unix ms) meant by local wall time `minute` (may be 1440 = next
/// midnight) on `date` in `tz`: the earliest instant the clock reads it, or the end of the
/// gap when the clock skips it (see the module documentation).
fn instant(tz: Tz, date: NaiveDate, minute: u16) -> Option<i64> {
    let (date, minute) = if minute >= MINUTES_PER_DAY {
        (date.succ_opt()?, 0)
    } else {
        (date, minute)
    };
    let time = NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)?;
    let local = date.and_time(time);
    earliest(tz, local).or_else(|| {
        // In a gap: the first local minute that exists is the one the clock jumps to
        // (all modern tz transitions fall on whole local minutes).
        (1..=MAX_GAP_MINUTES)
            .find_map(|k| earliest(tz, local.checked_add_signed(TimeDelta::try_minutes(k)?)?))
    })
}

/// Returns the earliest instant (Unix ms) at which the clock in `tz` reads `local`, if any.
fn earliest(tz: Tz, local: NaiveDateTime) -> Option<i64> {
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.timestamp_millis())
}

/// Returns the time zone named `name` ("UTC" when blank).
fn parse_timezone(name: &str) -> Result<Tz, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Ok(Tz::UTC);
    }
    trimmed.parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}: expected an IANA name such as \"Europe/Rome\"")
    })
}

/// Returns the hours per weekday (Monday first) of a `weekly` map.
fn parse_weekly(weekly: &BTreeMap<String, Vec<String>>) -> Result<[Vec<Interval>; 7], String> {
    if weekly.is_empty() {
        return Ok(std::array::from_fn(|_| vec![(0, MINUTES_PER_DAY)]));
    }
    let mut days: [Option<Vec<Interval>>; 7] = Default::default();
    let mut daily = None;
    for (key, values) in weekly {
        let slot = if key == "daily" {
            &mut daily
        } else if let Some(i) = WEEKDAY_KEYS.iter().position(|k| k == key) {
            &mut days[i]
        } else {
            return Err(format!(
                "unknown weekday key {key:?} in weekly hours: expected one of \
                 mon, tue, wed, thu, fri, sat, sun, daily"
            ));
        };
        *slot = Some(parse_intervals(values).map_err(|e| format!("weekly.{key}: {e}"))?);
    }
    Ok(days.map(|day| day.or_else(|| daily.clone()).unwrap_or_default()))
}

/// Returns the sorted, merged intervals of a list of `"HH:MM-HH:MM"` / `"24h"` values.
fn parse_intervals(values: &[String]) -> Result<Vec<Interval>, String> {
    let mut intervals = values
        .iter()
        .map(|v| parse_interval(v))
        .collect::<Result<Vec<_>, _>>()?;
    intervals.sort_unstable();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}

/// Returns the interval of one `"HH:MM-HH:MM"` or `"24h"` value.
fn parse_interval(value: &str) -> Result<Interval, String> {
    let text = value.trim();
    if text.eq_ignore_ascii_case("24h") {
        return Ok((0, MINUTES_PER_DAY));
    }
    let bad = || {
        format!(
            "bad interval {value:?}: expected \"HH:MM-HH:MM\" with times from 00:00 to 24:00, \
             or \"24h\""
        )
    };
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start = parse_clock(start.trim(), false).ok_or_else(bad)?;
    let end = parse_clock(end.trim(), true).ok_or_else(bad)?;
    if start >= end {
        return Err(format!(
            "bad interval {value:?}: the start must be before the end (write an interval \
             crossing midnight as two, e.g. \"22:00-24:00\" and \"00:00-02:00\" on the next day)"
        ));
    }
    Ok((start, end))
}

/// Returns the minutes since midnight of `"H:MM"`/`"HH:MM"` (`"24:00"` only if `allow_end`).
fn parse_clock(text: &str, allow_end: bool) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !(1..=2).contains(&hours.len()) || minutes.len() != 2 || !all_digits(hours) {
        return None;
    }
    if !all_digits(minutes) {
        return None;
    }
    let (h, m) = (hours.parse::<u16>().ok()?, minutes.parse::<u16>().ok()?);
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 60 + m),
        (24, 0) if allow_end => Some(MINUTES_PER_DAY),
        _ => None,
    }
}

/// Returns the date of a strict `"YYYY-MM-DD"` text, if valid.
fn parse_full_date(text: &str) -> Option<NaiveDate> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 {
        return None;
    }
    let (month, day) = parse_month_day_parts(m, d)?;
    NaiveDate::from_ymd_opt(parse_digits(y)?.try_into().ok()?, month, day)
}

/// Returns (month, day) of a strict `"MM-DD"` text valid in some year (so `"02-29"` is).
fn parse_month_day(text: &str) -> Option<(u32, u32)> {
    let (m, d) = text.split_once('-')?;
    let (month, day) = parse_month_day_parts(m, d)?;
    NaiveDate::from_ymd_opt(2000, month, day).map(|_| (month, day))
}

/// Returns the month and day of two-digit `m` and `d` texts (not yet range-checked).
fn parse_month_day_parts(m: &str, d: &str) -> Option<(u32, u32)> {
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    Some((parse_digits(m)?, parse_digits(d)?))
}

/// Returns the value of an all-ASCII-digit text.
fn parse_digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;
    use chrono_tz::Europe::Rome;
    use proptest::prelude::*;

    const ITALIAN: &str = r#"
        timezone = "Europe/Rome"
        holidays = ["12-25"]
        [weekly]
        daily = ["10:00-22:00"]
        [overrides]
        "2026-12-24" = ["10:00-14:00"]
        "2026-12-31" = []
    "#;

    fn config(toml_text: &str) -> ScheduleConfig {
        toml::from_str(toml_text).expect("valid TOML schedule")
    }

    fn schedule(toml_text: &str) -> Schedule {
        Schedule::parse(&config(toml_text)).expect("valid schedule")
    }

    fn italian() -> Schedule {
        schedule(ITALIAN)
    }

    /// Unix ms of an unambiguous Rome wall time "YYYY-MM-DD HH:MM:SS".
    fn rome(local: &str) -> i64 {
        let ndt = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").expect("datetime");
        Rome.from_local_datetime(&ndt)
            .single()
            .expect("unambiguous local time")
            .timestamp_millis()
    }

    /// Unix ms of a UTC "YYYY-MM-DD HH:MM:SS".
    fn utc(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .expect("datetime")
            .and_utc()
            .timestamp_millis()
    }

    fn parse_err(toml_text: &str) -> String {
        Schedule::parse(&config(toml_text)).expect_err("config must be rejected")
    }

    #[test]
    fn italian_team_boundaries_on_an_ordinary_day() {
        let s = italian();
        assert!(!s.is_open(rome("2026-06-10 09:59:59")));
        assert!(!s.is_open(rome("2026-06-10 10:00:00") - 1));
        assert!(s.is_open(rome("2026-06-10 10:00:00")));
        assert!(s.is_open(rome("2026-06-10 21:59:00")));
        assert!(s.is_open(rome("2026-06-10 22:00:00") - 1));
        assert!(!s.is_open(rome("2026-06-10 22:00:00")));
        assert_eq!(
            s.next_change(rome("2026-06-10 09:00:00")),
            Some(rome("2026-06-10 10:00:00"))
        );
        assert_eq!(
            s.next_change(rome("2026-06-10 10:00:00")),
            Some(rome("2026-06-10 22:00:00"))
        );
        assert_eq!(
            s.next_open(rome("2026-06-10 23:00:00")),
            Some(rome("2026-06-11 10:00:00"))
        );
        assert_eq!(
            s.next_open(rome("2026-06-10 12:00:00")),
            Some(rome("2026-06-10 12:00:00"))
        );
        assert_eq!(
            s.next_close(rome("2026-06-10 12:00:00")),
            Some(rome("2026-06-10 22:00:00"))
        );
        assert_eq!(
            s.next_close(rome("2026-06-10 23:00:00")),
            Some(rome("2026-06-10 23:00:00"))
        );
        assert_eq!(s.timezone(), Rome);
    }

    #[test]
    fn italian_team_holidays_and_overrides() {
        let s = italian();
        // Shortened Christmas Eve.
        assert!(s.is_open(rome("2026-12-24 13:59:00")));
        assert!(!s.is_open(rome("2026-12-24 14:00:00")));
        // Christmas closed every year, reopening on the 26th.
        assert!(!s.is_open(rome("2026-12-25 12:00:00")));
        assert!(!s.is_open(rome("2030-12-25 12:00:00")));
        assert_eq!(
            s.next_open(rome("2026-12-24 15:00:00")),
            Some(rome("2026-12-26 10:00:00"))
        );
        // A closed override, and the day after it.
        assert!(!s.is_open(rome("2026-12-31 12:00:00")));
        assert!(s.is_open(rome("2027-01-01 12:00:00")));
        assert!(s.is_open(rome("2027-12-31 12:00:00")));
    }

    #[test]
    fn override_beats_holiday_and_full_date_holidays_apply_once() {
        let s = schedule(
            r#"
            timezone = "Europe/Rome"
            holidays = ["12-25", "2026-12-08"]
            weekly = { daily = ["10:00-22:00"] }
            overrides = { "2027-12-25" = ["10:00-12:00"] }
            "#,
        );
        assert!(!s.is_open(rome("2026-12-08 12:00:00")));
        assert!(s.is_open(rome("2027-12-08 12:00:00")));
        assert!(!s.is_open(rome("2026-12-25 11:00:00")));
        assert!(s.is_open(rome("2027-12-25 11:00:00")));
        assert!(!s.is_open(rome("2027-12-25 12:00:00")));
    }

    #[test]
    fn spring_forward_day_keeps_local_hours() {
        let s = italian();
        // Saturday 2026-03-28 is CET (UTC+1): 10:00-22:00 local = 09:00-21:00 UTC.
        assert!(!s.is_open(utc("2026-03-28 08:59:59")));
        assert!(s.is_open(utc("2026-03-28 09:00:00")));
        assert!(!s.is_open(utc("2026-03-28 21:00:00")));
        // Sunday 2026-03-29 is CEST (UTC+2) from 02:00: 10:00-22:00 local = 08:00-20:00 UTC.
        assert!(!s.is_open(utc("2026-03-29 07:59:59")));
        assert!(s.is_open(utc("2026-03-29 08:00:00")));
        assert!(s.is_open(utc("2026-03-29 19:59:59")));
        assert!(!s.is_open(utc("2026-03-29 20:00:00")));
        // The closed night across the change lasts 11 real hours.
        assert_eq!(
            s.next_change(utc("2026-03-28 21:00:00")),
            Some(utc("2026-03-29 08:00:00"))
        );
        assert_eq!(
            s.next_change(utc("2026-03-29 08:00:00")),
            Some(utc("2026-03-29 20:00:00"))
        );
        assert_eq!(
            s.next_change(utc("2026-03-28 12:00:00")),
            Some(utc("2026-03-28 21:00:00"))
        );
    }

    #[test]
    fn fall_back_day_keeps_local_hours() {
        let s = italian();
        // Saturday 2026-10-24 is CEST: 08:00-20:00 UTC; Sunday 2026-10-25 is CET: 09:00-21:00.
        assert!(s.is_open(utc("2026-10-24 08:00:00")));
        assert!(!s.is_open(utc("2026-10-24 20:00:00")));
        assert!(!s.is_open(utc("2026-10-25 08:59:59")));
        assert!(s.is_open(utc("2026-10-25 09:00:00")));
        assert!(s.is_open(utc("2026-10-25 20:59:59")));
        assert!(!s.is_open(utc("2026-10-25 21:00:00")));
        // The closed night across the change lasts 13 real hours.
        assert_eq!(
            s.next_change(utc("2026-10-24 20:00:00")),
            Some(utc("2026-10-25 09:00:00"))
        );
        assert_eq!(
            s.next_open(utc("2026-10-24 23:30:00")),
            Some(utc("2026-10-25 09:00:00"))
        );
        assert_eq!(
            s.next_change(utc("2026-10-25 09:00:00")),
            Some(utc("2026-10-25 21:00:00"))
        );
    }

    #[test]
    fn boundaries_inside_the_gap_and_the_fold() {
        // Spring: 02:00 CET (01:00 UTC) jumps to 03:00 CEST.
        let spring = schedule(
            r#"
            timezone = "Europe/Rome"
            weekly = { sun = ["01:00-04:00"] }
            "#,
        );
        // 01:00 CET = 00:00 UTC to 04:00 CEST = 02:00 UTC: two real hours.
        assert!(!spring.is_open(utc("2026-03-28 23:59:59")));
        assert!(spring.is_open(utc("2026-03-29 00:00:00")));
        assert_eq!(
            spring.next_change(utc("2026-03-29 00:00:00")),
            Some(utc("2026-03-29 02:00:00"))
        );
        // "02:00-03:00" never happens on a spring-forward day.
        let s2 = schedule(
            r#"
            timezone = "Europe/Rome"
            weekly = { sun = ["02:00-03:00", "12:00-13:00"] }
            "#,
        );
        assert_eq!(
            s2.next_open(utc("2026-03-28 12:00:00")),
            Some(utc("2026-03-29 10:00:00"))
        );
        // "02:30" in the gap means the jump instant, 03:00 CEST = 01:00 UTC.
        let s3 = schedule(
            r#"
            timezone = "Europe/Rome"
            weekly = { sun = ["02:30-05:00"] }
            "#,
        );
        assert_eq!(
            s3.next_open(utc("2026-03-28 12:00:00")),
            Some(utc("2026-03-29 01:00:00"))
        );
        // Autumn: 03:00 CEST (01:00 UTC) falls back to 02:00 CET. "02:30" is the first
        // occurrence (00:30 UTC); "04:00" is 03:00 UTC.
        let autumn = schedule(
            r#"
            timezone = "Europe/Rome"
            weekly = { sun = ["02:30-04:00"] }
            "#,
        );
        assert_eq!(
            autumn.next_open(utc("2026-10-24 12:00:00")),
            Some(utc("2026-10-25 00:30:00"))
        );
        assert_eq!(
            autumn.next_change(utc("2026-10-25 00:30:00")),
            Some(utc("2026-10-25 03:00:00"))
        );
        // The second 02:30 (01:30 UTC) lies inside the open period.
        assert!(autumn.is_open(utc("2026-10-25 01:30:00")));
    }

    #[test]
    fn a_skipped_local_day_is_closed_without_breaking_the_search() {
        // Pacific/Apia skipped 2011-12-30 entirely (UTC-10 to UTC+14).
        let apia = schedule(
            r#"
            timezone = "Pacific/Apia"
            weekly = { daily = ["10:00-22:00"] }
            "#,
        );
        // 2011-12-29 22:00 local (UTC-10) is 2011-12-30 08:00 UTC;
        // 2011-12-31 10:00 local (UTC+14) is 2011-12-30 20:00 UTC.
        assert_eq!(
            apia.next_change(utc("2011-12-30 08:00:00")),
            Some(utc("2011-12-30 20:00:00"))
        );
        let always = schedule(r#"timezone = "Pacific/Apia""#);
        assert!(always.is_open(utc("2011-12-30 10:00:00")));
        assert_eq!(always.next_change(utc("2011-12-29 10:00:00")), None);
    }

    #[test]
    fn always_open_schedules() {
        let all_day = schedule(
            r#"
            timezone = "Europe/London"
            weekly = { daily = ["24h"] }
            "#,
        );
        let empty = Schedule::parse(&ScheduleConfig::default()).expect("default config");
        assert_eq!(empty.timezone(), Tz::UTC);
        for s in [&all_day, &empty] {
            for t in [
                utc("2026-01-01 00:00:00"),
                utc("2026-03-29 01:00:00"),
                utc("2026-10-25 01:30:00"),
                utc("2026-12-25 23:59:59"),
            ] {
                assert!(s.is_open(t));
                assert_eq!(s.next_change(t), None);
                assert_eq!(s.next_open(t), Some(t));
                assert_eq!(s.next_close(t), None);
            }
        }
        // An empty weekly map is still subject to holidays.
        let with_holiday = schedule(r#"holidays = ["12-25"]"#);
        assert!(!with_holiday.is_open(utc("2026-12-25 12:00:00")));
        assert_eq!(
            with_holiday.next_change(utc("2026-12-24 12:00:00")),
            Some(utc("2026-12-25 00:00:00"))
        );
    }

    #[test]
    fn never_open_and_midnight_continuation() {
        let never = schedule(r#"weekly = { mon = [] }"#);
        let t = utc("2026-05-01 12:00:00");
        assert!(!never.is_open(t));
        assert_eq!(never.next_change(t), None);
        assert_eq!(never.next_open(t), None);
        assert_eq!(never.next_close(t), Some(t));

        // Monday 18:00-24:00 and Tuesday 00:00-06:00 form one period; several intervals a day.
        let night = schedule(
            r#"
            weekly = { mon = ["09:00-13:00", "14:00-18:00", "20:00-24:00"], tue = ["00:00-06:00"] }
            "#,
        );
        // 2026-06-08 is a Monday.
        assert!(night.is_open(utc("2026-06-08 12:59:59")));
        assert!(!night.is_open(utc("2026-06-08 13:30:00")));
        assert_eq!(
            night.next_change(utc("2026-06-08 13:30:00")),
            Some(utc("2026-06-08 14:00:00"))
        );
        assert_eq!(
            night.next_change(utc("2026-06-08 21:00:00")),
            Some(utc("2026-06-09 06:00:00"))
        );
        assert!(night.is_open(utc("2026-06-09 00:00:00")));
    }

    #[test]
    fn weekday_key_beats_daily_and_overlaps_merge() {
        let s = schedule(
            r#"
            timezone = "Europe/Rome"
            weekly = { daily = ["10:00-22:00"], sun = ["10:00-12:00", "11:00-13:00", "13:00-14:00"] }
            "#,
        );
        // 2026-06-14 is a Sunday.
        assert!(s.is_open(rome("2026-06-14 13:30:00")));
        assert!(!s.is_open(rome("2026-06-14 15:00:00")));
        assert_eq!(
            s.next_change(rome("2026-06-14 10:00:00")),
            Some(rome("2026-06-14 14:00:00"))
        );
        assert!(s.is_open(rome("2026-06-15 15:00:00")));
    }

    #[test]
    fn describes_local_times() {
        let s = italian();
        let reopen = rome("2026-03-29 10:00:00");
        assert_eq!(s.describe_local(reopen), "2026-03-29 10:00 (Europe/Rome)");
        assert_eq!(
            s.describe_local_from(rome("2026-03-28 23:00:00"), reopen),
            "10:00 (Europe/Rome)"
        );
        assert_eq!(
            s.describe_local_from(rome("2026-03-27 23:00:00"), reopen),
            "2026-03-29 10:00 (Europe/Rome)"
        );
        assert!(s.describe_local(i64::MAX).contains("out of range"));
    }

    fn languages() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("it".to_owned(), vec!["en".to_owned()])])
    }

    #[test]
    fn serving_language_follows_the_fallback_chain() {
        let it = italian();
        let en_24h = schedule(r#"weekly = { daily = ["24h"] }"#);
        let en_office = schedule(
            r#"
            timezone = "Europe/London"
            weekly = { daily = ["09:00-18:00"] }
            "#,
        );
        let fallback = languages();
        let pick = |en: &Schedule, at: i64| {
            serving_language("it", &fallback, |lang| match lang {
                "it" => it.is_open(at),
                "en" => en.is_open(at),
                _ => false,
            })
            .map(str::to_owned)
        };
        let night = rome("2026-06-10 23:00:00");
        let morning = rome("2026-06-10 11:00:00");
        assert_eq!(pick(&en_24h, night).as_deref(), Some("en"));
        assert_eq!(pick(&en_24h, morning).as_deref(), Some("it"));
        assert_eq!(pick(&en_office, night), None);
        // A language without a fallback entry; a language with no team at all.
        assert_eq!(serving_language("de", &fallback, |_| true), Some("de"));
        assert_eq!(serving_language("de", &fallback, |l| l == "en"), None);
        assert!(!is_open_any(&[&en_office, &it], night));
        assert!(is_open_any(&[&en_office, &it, &en_24h], night));
        assert_eq!(
            next_open_any(&[&en_office, &it], night),
            Some(rome("2026-06-11 10:00:00"))
        );
    }

    #[test]
    fn rejects_bad_configs_with_clear_messages() {
        let err = parse_err(r#"timezone = "Europe/Atlantis""#);
        assert!(err.contains("Europe/Atlantis"), "{err}");
        let err = parse_err(r#"weekly = { mon = ["25:00-26:00"] }"#);
        assert!(
            err.contains("25:00-26:00") && err.contains("weekly.mon"),
            "{err}"
        );
        let err = parse_err(r#"weekly = { mon = ["18:00-09:00"] }"#);
        assert!(
            err.contains("18:00-09:00") && err.contains("before the end"),
            "{err}"
        );
        let err = parse_err(r#"weekly = { mon = ["10:00-10:00"] }"#);
        assert!(err.contains("before the end"), "{err}");
        let err = parse_err(r#"weekly = { monday = ["10:00-12:00"] }"#);
        assert!(err.contains("\"monday\""), "{err}");
        for bad in [
            "10-12",
            "10:00",
            "10:0-12:00",
            "24:00-24:00",
            "10:60-11:00",
            "a:bc-12:00",
        ] {
            let err = parse_err(&format!(r#"weekly = {{ mon = ["{bad}"] }}"#));
            assert!(err.contains(bad), "{err}");
        }
        let err = parse_err(r#"holidays = ["13-45"]"#);
        assert!(err.contains("13-45"), "{err}");
        let err = parse_err(r#"holidays = ["2026-02-29"]"#);
        assert!(err.contains("2026-02-29"), "{err}");
        let err = parse_err(r#"overrides = { "2026-12-32" = [] }"#);
        assert!(err.contains("2026-12-32"), "{err}");
        let err = parse_err(r#"overrides = { "12-24" = [] }"#);
        assert!(err.contains("12-24"), "{err}");
        let err = parse_err(r#"overrides = { "2026-12-24" = ["14:00-10:00"] }"#);
        assert!(err.contains("overrides.2026-12-24"), "{err}");
        assert!(toml::from_str::<ScheduleConfig>(r#"timezon = "UTC""#).is_err());
        // Accepted edge values.
        let ok = schedule(
            r#"holidays = ["02-29"]
            weekly = { mon = ["9:00-24:00"] }"#,
        );
        assert!(ok.is_open(utc("2026-06-08 23:59:59")));
    }

    /// Time zones with varied rules: 30-minute DST (Lord Howe), DST at 02:45 (Chatham),
    /// negative half-hour offset (St John's), no DST (Kolkata).
    const ZONES: [&str; 8] = [
        "Europe/Rome",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/St_Johns",
        "Asia/Kolkata",
        "Pacific/Apia",
        "UTC",
    ];

    fn hhmm(minute: u16) -> String {
        format!("{:02}:{:02}", minute / 60, minute % 60)
    }

    /// Intervals on a 15-minute grid (so boundaries often hit DST gaps and folds), often
    /// starting at midnight or ending at 24:00 (so days often touch), or "24h".
    fn interval() -> impl Strategy<Value = String> {
        let grid = (0u16..96, 1u16..40).prop_map(|(start, len)| {
            let start = start * 15;
            (start, (start + len * 15).min(MINUTES_PER_DAY))
        });
        let from_midnight = (1u16..96).prop_map(|end| (0, end * 15));
        let to_midnight = (0u16..96).prop_map(|start| (start * 15, MINUTES_PER_DAY));
        prop_oneof![
            4 => grid.prop_map(|(start, end)| format!("{}-{}", hhmm(start), hhmm(end))),
            2 => from_midnight.prop_map(|(start, end)| format!("{}-{}", hhmm(start), hhmm(end))),
            2 => to_midnight.prop_map(|(start, end)| format!("{}-{}", hhmm(start), hhmm(end))),
            1 => Just("24h".to_owned()),
        ]
    }

    prop_compose! {
        fn arb_config()(
            zone in 0..ZONES.len(),
            days in proptest::collection::vec(proptest::collection::vec(interval(), 0..3), 7),
            daily in proptest::option::of(proptest::collection::vec(interval(), 0..3)),
            holiday in proptest::option::of((1u32..=12, 1u32..=28)),
            override_day in proptest::option::of((1u32..=12, 1u32..=28, proptest::collection::vec(interval(), 0..2))),
        ) -> ScheduleConfig {
            let mut weekly = BTreeMap::new();
            for (key, hours) in WEEKDAY_KEYS.iter().zip(days) {
                if !hours.is_empty() {
                    weekly.insert((*key).to_owned(), hours);
                }
            }
            if let Some(hours) = daily {
                weekly.insert("daily".to_owned(), hours);
            }
            let holidays = holiday.map(|(m, d)| format!("{m:02}-{d:02}")).into_iter().collect();
            let overrides = override_day
                .map(|(m, d, hours)| (format!("2026-{m:02}-{d:02}"), hours))
                .into_iter()
                .collect();
            ScheduleConfig { timezone: ZONES[zone].to_owned(), weekly, holidays, overrides }
        }
    }

    /// Instants across 2026, half of them within hours of a DST change somewhere.
    fn arb_instant() -> impl Strategy<Value = i64> {
        let year = utc("2026-01-01 00:00:00")..utc("2027-01-01 00:00:00");
        let changes: Vec<i64> = [
            "2026-03-29 00:00:00", // Europe
            "2026-10-25 00:00:00",
            "2026-03-08 06:00:00", // North America
            "2026-11-01 05:00:00",
            "2026-04-04 13:00:00", // Southern hemisphere (back)
            "2026-10-03 13:00:00", // Southern hemisphere (forward)
            "2026-04-05 12:00:00",
            "2026-09-26 12:00:00",
        ]
        .iter()
        .map(|t| utc(t))
        .collect();
        prop_oneof![
            year,
            (proptest::sample::select(changes), 0i64..6 * 3_600_000).prop_map(|(c, d)| c + d),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn state_flips_exactly_at_next_change(config in arb_config(), t in arb_instant()) {
            let s = Schedule::parse(&config).expect("generated config is valid");
            let open = s.is_open(t);
            if let Some(c) = s.next_change(t) {
                prop_assert!(c > t);
                prop_assert_eq!(s.is_open(c - 1), open);
                prop_assert_eq!(s.is_open(t + (c - t) / 2), open);
                prop_assert_ne!(s.is_open(c), open);
            }
            match s.next_open(t) {
                Some(o) => {
                    prop_assert!(o >= t);
                    prop_assert!(s.is_open(o));
                    prop_assert_eq!(o == t, open);
                    if o > t {
                        prop_assert!(!s.is_open(o - 1));
                        prop_assert_eq!(Some(o), s.next_change(t));
                    }
                }
                None => prop_assert!(!open),
            }
            if let Some(c) = s.next_close(t) {
                prop_assert!(c >= t);
                prop_assert!(!s.is_open(c));
            }
        }

        #[test]
        fn italian_hours_match_local_wall_time(t in arb_instant()) {
            let s = italian();
            let local = s.local(t).expect("in range");
            let minute = local.hour() * 60 + local.minute();
            let day = (local.month(), local.day());
            let expected = match (local.year(), day) {
                (_, (12, 25)) | (2026, (12, 31)) => false,
                (2026, (12, 24)) => (600..840).contains(&minute),
                _ => (600..1320).contains(&minute),
            };
            prop_assert_eq!(s.is_open(t), expected);
        }
    }
}
