//! Who is on shift: team schedules, and which language's team serves a customer now
//! (the customer's own, else the first open language of its fallback chain).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::{AgentNodeConfig, TeamConfig};
use crate::schedule::{self, Schedule};

/// Team name → (language, schedule); `None` = always open.
type Teams = HashMap<String, (String, Option<Schedule>)>;

/// Compiled team schedules and language fallback chains. The teams follow the live
/// directory ([`Shifts::set_teams`]); the fallback chains are the configuration file's.
#[derive(Debug, Default)]
pub struct Shifts {
    teams: RwLock<Arc<Teams>>,
    fallback: BTreeMap<String, Vec<String>>,
}

impl Clone for Shifts {
    fn clone(&self) -> Self {
        Self {
            teams: RwLock::new(self.teams.read().clone()),
            fallback: self.fallback.clone(),
        }
    }
}

/// Compiles teams (invalid schedules count as always open; the configuration check and
/// the admin API refuse them before they get here).
fn compile<'a>(teams: impl IntoIterator<Item = &'a TeamConfig>) -> Teams {
    teams
        .into_iter()
        .map(|t| {
            let schedule = t.schedule.as_ref().and_then(|s| Schedule::parse(s).ok());
            (t.name.clone(), (t.language.clone(), schedule))
        })
        .collect()
}

impl Shifts {
    /// Compiles the teams of `config` (invalid schedules count as always open; the
    /// configuration check reports them before start).
    pub fn new(config: &AgentNodeConfig) -> Self {
        Self {
            teams: RwLock::new(Arc::new(compile(&config.teams))),
            fallback: config.languages.fallback.clone(),
        }
    }

    /// Replaces the teams (a change of the live directory): the next question about a
    /// shift gets the new schedules.
    pub fn set_teams<'a>(&self, teams: impl IntoIterator<Item = &'a TeamConfig>) {
        *self.teams.write() = Arc::new(compile(teams));
    }

    fn teams(&self) -> Arc<Teams> {
        self.teams.read().clone()
    }

    /// Returns whether `team` works at `at_ms` (unknown teams and teams without a schedule
    /// always do).
    pub fn team_open(&self, team: &str, at_ms: i64) -> bool {
        match self.teams().get(team) {
            Some((_, Some(schedule))) => schedule.is_open(at_ms),
            _ => true,
        }
    }

    /// Returns whether some team serving `language` works at `at_ms`.
    pub fn language_open(&self, language: &str, at_ms: i64) -> bool {
        self.teams()
            .values()
            .any(|(l, s)| l == language && s.as_ref().is_none_or(|s| s.is_open(at_ms)))
    }

    /// Returns the language that serves a customer speaking `language` at `at_ms`.
    pub fn serving_language<'a>(&'a self, language: &'a str, at_ms: i64) -> Option<&'a str> {
        schedule::serving_language(language, &self.fallback, |l| self.language_open(l, at_ms))
    }

    /// Returns when a team serving `language` opens next (at or after `at_ms`).
    pub fn reopens_at(&self, language: &str, at_ms: i64) -> Option<i64> {
        self.teams()
            .values()
            .filter(|(l, _)| l == language)
            .filter_map(|(_, s)| match s {
                Some(s) => s.next_open(at_ms),
                None => Some(at_ms),
            })
            .min()
    }

    /// Returns a human-readable local time of `at_ms` for a team serving `language`.
    pub fn describe(&self, language: &str, at_ms: i64) -> String {
        self.teams()
            .values()
            .find_map(|(l, s)| (l == language).then_some(s.as_ref()).flatten())
            .map(|s| s.describe_local(at_ms))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleConfig;

    #[test]
    fn a_changed_schedule_applies_to_the_next_question() {
        let mut config = AgentNodeConfig::default();
        config.teams.push(TeamConfig {
            name: "italian".into(),
            language: "it".into(),
            schedule: None,
        });
        let shifts = Shifts::new(&config);
        // 2026-01-05 is a Monday; 03:00 UTC.
        let at = 1_767_582_000_000;
        assert!(shifts.team_open("italian", at), "no schedule: always open");
        let office = ScheduleConfig {
            timezone: "UTC".into(),
            weekly: BTreeMap::from([("daily".to_string(), vec!["09:00-17:00".to_string()])]),
            ..Default::default()
        };
        config.teams[0].schedule = Some(office);
        shifts.set_teams(&config.teams);
        assert!(!shifts.team_open("italian", at), "closed at 03:00 now");
        assert!(!shifts.language_open("it", at));
        assert_eq!(
            shifts.reopens_at("it", at),
            Some(at + 6 * 3_600_000),
            "opens at 09:00"
        );
    }
}
