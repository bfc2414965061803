//! Pure routing decisions: routing steps, sticky rules, agent selection and queue order.
//!
//! Nothing here touches an actor, a clock or the network: the department queue passes plain
//! data in and acts on the decision, so every rule is unit- and property-tested.
//!
//! [`AgentPool`] is a queue's view of the agents that could serve it. It keeps, per
//! language, an ordered index of the agents that have a free slot, sorted by the
//! department's [`Strategy`]; selecting an agent walks that index from the best end and stops
//! at the first agent that meets the step's proficiency, so a decision costs a few index
//! steps instead of a scan of every agent.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use centralino_link::Availability;
use centralino_proto::v1::AgentStatus;

use crate::config::{StepConfig, Strategy};

/// Skill name of a language (`lang:it`).
pub fn language_skill(language: &str) -> String {
    format!("lang:{language}")
}

/// What a conversation needs from an agent in its current routing step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'a> {
    /// Customer language (`it`, `en`).
    pub language: &'a str,
    /// Minimum proficiency in the department skill and in the language skill.
    pub min_proficiency: u8,
    /// A further skill the agent needs (after a transfer to a skill or a supervisor).
    pub extra_skill: Option<&'a str>,
}

/// The routing step a conversation is in after waiting `waited_secs` in its queue.
///
/// Returns the index of the last step whose `after_secs` has passed (0 when `steps` is
/// empty, meaning "any proficiency").
pub fn current_step(steps: &[StepConfig], waited_secs: u64) -> usize {
    steps
        .iter()
        .rposition(|s| s.after_secs <= waited_secs)
        .unwrap_or(0)
}

/// Minimum proficiency of step `index` (1 when there are no steps).
pub fn step_min_proficiency(steps: &[StepConfig], index: usize) -> u8 {
    steps
        .get(index)
        .map(|s| s.min_proficiency)
        .unwrap_or(1)
        .max(1)
}

/// Simulated seconds until the next step starts, if any.
pub fn secs_to_next_step(steps: &[StepConfig], waited_secs: u64) -> Option<u64> {
    steps
        .iter()
        .find(|s| s.after_secs > waited_secs)
        .map(|s| s.after_secs - waited_secs)
}

/// Estimated wait (seconds) of the `position`-th waiting conversation when `free` slots
/// are open now, `capacity` slots serve its language and a chat takes `handle_secs`.
pub fn estimated_wait_secs(position: u32, free: u32, capacity: u32, handle_secs: f64) -> u32 {
    if position <= free {
        return 0;
    }
    let ahead = (position - free) as f64;
    (ahead * handle_secs / capacity.max(1) as f64).round() as u32
}

/// Order of a queue: higher priority first, then older first, then arrival sequence.
pub type QueueKey = (Reverse<u8>, i64, u64);

/// Returns the queue order key of a conversation.
pub fn queue_key(priority: u8, enqueued_at_ms: i64, seq: u64) -> QueueKey {
    (Reverse(priority), enqueued_at_ms, seq)
}

/// Where a returning customer's last agent stands for this conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyState {
    /// Logged in, qualified and with a free slot: offer to them.
    Free,
    /// Logged in and qualified but full or briefly busy: wait for them.
    Busy,
    /// Not logged in, not qualified or not serving: fall back at once.
    Unavailable,
}

/// Agent selection sort key (smaller is better).
type SortKey = (i64, i64);

#[derive(Debug, Clone)]
struct PoolAgent {
    availability: Availability,
    /// Reservations sent by this queue and not yet answered.
    in_flight: u32,
    /// Set by a rejected reservation until the next availability update.
    stale: bool,
    /// Current position in the indices (when indexed).
    key: Option<SortKey>,
}

impl PoolAgent {
    fn load(&self) -> u32 {
        self.availability.load + self.in_flight
    }

    fn has_free_slot(&self) -> bool {
        !self.stale
            && self.availability.on_shift
            && self.availability.status == AgentStatus::Available
            && self.load() < self.availability.capacity
    }

    fn proficiency(&self, skill: &str) -> u8 {
        self.availability.skills.get(skill).copied().unwrap_or(0)
    }
}

/// A department queue's view of the agents that have its skill.
#[derive(Debug)]
pub struct AgentPool {
    strategy: Strategy,
    department_skill: String,
    agents: HashMap<Arc<str>, PoolAgent>,
    /// Per language skill: agents with a free slot, best first.
    free: HashMap<String, BTreeSet<(SortKey, Arc<str>)>>,
}

impl AgentPool {
    /// Returns an empty pool for a department needing `department_skill`.
    pub fn new(strategy: Strategy, department_skill: impl Into<String>) -> Self {
        Self {
            strategy,
            department_skill: department_skill.into(),
            agents: HashMap::new(),
            free: HashMap::new(),
        }
    }

    /// Number of agents in the view.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Returns whether the view has no agents.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Returns whether any agent of the pool has a free slot.
    pub fn any_free(&self) -> bool {
        self.free.values().any(|set| !set.is_empty())
    }

    /// Number of free slots of agents speaking `language` at proficiency ≥ 1.
    pub fn free_slots(&self, language: &str) -> u32 {
        let skill = language_skill(language);
        self.free.get(&skill).map_or(0, |set| {
            set.iter()
                .filter_map(|(_, id)| self.agents.get(id))
                .map(|a| a.availability.capacity.saturating_sub(a.load()))
                .sum()
        })
    }

    /// Number of agents who can serve `language` (logged in or not), for wait estimates.
    pub fn serving_capacity(&self, language: &str) -> u32 {
        let skill = language_skill(language);
        self.agents
            .values()
            .filter(|a| {
                a.proficiency(&skill) > 0 && matches!(a.availability.status, AgentStatus::Available)
            })
            .map(|a| a.availability.capacity)
            .sum()
    }

    fn sort_key(&self, agent: &PoolAgent) -> SortKey {
        let idle = agent.availability.idle_since_ms;
        match self.strategy {
            Strategy::LongestIdle => (idle, 0),
            Strategy::LeastLoaded => {
                let cap = agent.availability.capacity.max(1) as i64;
                ((agent.load() as i64 * 1000) / cap, idle)
            }
            Strategy::MostSkilled => (-(agent.proficiency(&self.department_skill) as i64), idle),
        }
    }

    fn unindex(&mut self, id: &Arc<str>) {
        let Some(agent) = self.agents.get_mut(id) else {
            return;
        };
        if let Some(key) = agent.key.take() {
            for skill in agent.availability.skills.keys() {
                if skill.starts_with("lang:") {
                    if let Some(set) = self.free.get_mut(skill) {
                        set.remove(&(key, id.clone()));
                    }
                }
            }
        }
    }

    fn reindex(&mut self, id: &Arc<str>) {
        self.unindex(id);
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        if !agent.has_free_slot() {
            return;
        }
        let key = self.sort_key(agent);
        let languages: Vec<String> = agent
            .availability
            .skills
            .keys()
            .filter(|s| s.starts_with("lang:"))
            .cloned()
            .collect();
        for skill in languages {
            self.free
                .entry(skill)
                .or_default()
                .insert((key, id.clone()));
        }
        if let Some(agent) = self.agents.get_mut(id) {
            agent.key = Some(key);
        }
    }

    /// Applies an availability update; ignores agents without the department skill and
    /// updates older than the one already seen.
    pub fn update(&mut self, availability: Availability) {
        if availability
            .skills
            .get(&self.department_skill)
            .copied()
            .unwrap_or(0)
            == 0
        {
            return;
        }
        let id: Arc<str> = Arc::from(availability.agent_id.as_str());
        match self.agents.get_mut(&id) {
            Some(agent) if agent.availability.version > availability.version => return,
            Some(agent) => {
                // The update counts the reservations it has seen; keep our unanswered ones
                // only while the published load does not already include them.
                let key = agent.key;
                agent.stale = false;
                agent.availability = availability;
                agent.key = key;
            }
            None => {
                self.agents.insert(
                    id.clone(),
                    PoolAgent {
                        availability,
                        in_flight: 0,
                        stale: false,
                        key: None,
                    },
                );
            }
        }
        // unindex must see the key the agent was indexed under, so re-run with the stored key
        self.reindex_after_update(&id);
    }

    fn reindex_after_update(&mut self, id: &Arc<str>) {
        // Remove under every language set: the skills may have changed with the update.
        if let Some(agent) = self.agents.get_mut(id) {
            if let Some(key) = agent.key.take() {
                for set in self.free.values_mut() {
                    set.remove(&(key, id.clone()));
                }
            }
        }
        self.reindex(id);
    }

    /// Returns the best agent with a free slot that meets `requirement`, skipping `excluded`.
    pub fn select(&self, requirement: &Requirement<'_>, excluded: &[Arc<str>]) -> Option<Arc<str>> {
        let skill = language_skill(requirement.language);
        let set = self.free.get(&skill)?;
        set.iter()
            .map(|(_, id)| id)
            .find(|id| {
                let Some(agent) = self.agents.get(*id) else {
                    return false;
                };
                agent.proficiency(&skill) >= requirement.min_proficiency
                    && agent.proficiency(&self.department_skill) >= requirement.min_proficiency
                    && requirement
                        .extra_skill
                        .is_none_or(|extra| agent.proficiency(extra) > 0)
                    && !excluded.contains(id)
            })
            .cloned()
    }

    /// Returns where `agent_id` stands for a sticky conversation in `language`.
    pub fn sticky_state(&self, agent_id: &str, language: &str) -> StickyState {
        let Some(agent) = self.agents.get(agent_id) else {
            return StickyState::Unavailable;
        };
        if agent.proficiency(&language_skill(language)) == 0 {
            return StickyState::Unavailable;
        }
        if !agent.availability.on_shift {
            return StickyState::Unavailable;
        }
        match agent.availability.status {
            AgentStatus::Available if agent.has_free_slot() => StickyState::Free,
            AgentStatus::Available | AgentStatus::OnCall | AgentStatus::Away => StickyState::Busy,
            _ => StickyState::Unavailable,
        }
    }

    /// Returns the interned id of a known agent.
    pub fn agent_id(&self, agent_id: &str) -> Option<Arc<str>> {
        self.agents.get_key_value(agent_id).map(|(k, _)| k.clone())
    }

    /// Returns the display name of a known agent.
    pub fn display_name(&self, agent_id: &str) -> Option<&str> {
        self.agents
            .get(agent_id)
            .map(|a| a.availability.display_name.as_str())
    }

    /// Counts a reservation sent to `agent_id` at `now_ms` (it takes a slot until answered).
    pub fn begin_reservation(&mut self, agent_id: &Arc<str>, now_ms: i64) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.in_flight += 1;
            agent.availability.idle_since_ms = agent.availability.idle_since_ms.max(now_ms);
        }
        self.reindex(agent_id);
    }

    /// Ends a reservation's in-flight count; `rejected` marks the view of the agent stale
    /// until its next availability update.
    pub fn end_reservation(&mut self, agent_id: &Arc<str>, rejected: bool) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.in_flight = agent.in_flight.saturating_sub(1);
            if rejected {
                agent.stale = true;
            }
        }
        self.reindex(agent_id);
    }

    /// Returns the skills of every agent in the view (for checks and tests).
    pub fn skills_of(&self, agent_id: &str) -> Option<&BTreeMap<String, u8>> {
        self.agents
            .get(agent_id)
            .map(|a| a.availability.skills.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Strategy;
    use proptest::prelude::*;

    fn agent(id: &str, skills: &[(&str, u8)], capacity: u32, load: u32, idle: i64) -> Availability {
        Availability {
            agent_id: id.to_string(),
            version: 1,
            team: "t".into(),
            status: AgentStatus::Available,
            capacity,
            load,
            skills: Arc::new(skills.iter().map(|(s, p)| (s.to_string(), *p)).collect()),
            idle_since_ms: idle,
            display_name: id.to_uppercase(),
            on_shift: true,
        }
    }

    fn req(language: &str, min: u8) -> Requirement<'_> {
        Requirement {
            language,
            min_proficiency: min,
            extra_skill: None,
        }
    }

    #[test]
    fn steps_relax_with_waiting_time() {
        let steps = vec![
            StepConfig {
                after_secs: 0,
                min_proficiency: 4,
                overflow_to: None,
            },
            StepConfig {
                after_secs: 20,
                min_proficiency: 3,
                overflow_to: None,
            },
            StepConfig {
                after_secs: 60,
                min_proficiency: 1,
                overflow_to: None,
            },
        ];
        assert_eq!(current_step(&steps, 0), 0);
        assert_eq!(current_step(&steps, 19), 0);
        assert_eq!(current_step(&steps, 20), 1);
        assert_eq!(current_step(&steps, 500), 2);
        assert_eq!(step_min_proficiency(&steps, 1), 3);
        assert_eq!(secs_to_next_step(&steps, 25), Some(35));
        assert_eq!(secs_to_next_step(&steps, 60), None);
        assert_eq!(step_min_proficiency(&[], 0), 1);
    }

    #[test]
    fn selection_respects_language_and_proficiency() {
        let mut pool = AgentPool::new(Strategy::LongestIdle, "sales");
        pool.update(agent("it-novice", &[("lang:it", 5), ("sales", 1)], 2, 0, 1));
        pool.update(agent("en-expert", &[("lang:en", 5), ("sales", 5)], 2, 0, 2));
        pool.update(agent("it-expert", &[("lang:it", 4), ("sales", 4)], 2, 0, 3));
        pool.update(agent(
            "no-sales",
            &[("lang:it", 5), ("support", 5)],
            2,
            0,
            0,
        ));
        assert_eq!(
            pool.len(),
            3,
            "agents without the department skill stay out"
        );
        assert_eq!(
            pool.select(&req("it", 3), &[]).as_deref(),
            Some("it-expert")
        );
        assert_eq!(
            pool.select(&req("it", 1), &[]).as_deref(),
            Some("it-novice")
        );
        assert_eq!(
            pool.select(&req("en", 1), &[]).as_deref(),
            Some("en-expert")
        );
        assert_eq!(pool.select(&req("de", 1), &[]), None);
        let novice = pool.agent_id("it-novice").unwrap();
        assert_eq!(
            pool.select(&req("it", 1), &[novice]).as_deref(),
            Some("it-expert")
        );
    }

    #[test]
    fn strategies_order_candidates() {
        let agents = [
            agent("a", &[("lang:it", 5), ("sales", 2)], 4, 3, 10),
            agent("b", &[("lang:it", 5), ("sales", 5)], 4, 2, 30),
            agent("c", &[("lang:it", 5), ("sales", 3)], 4, 0, 20),
        ];
        let pick = |strategy| {
            let mut pool = AgentPool::new(strategy, "sales");
            for a in &agents {
                pool.update(a.clone());
            }
            pool.select(&req("it", 1), &[]).map(|s| s.to_string())
        };
        assert_eq!(pick(Strategy::LongestIdle).as_deref(), Some("a"));
        assert_eq!(pick(Strategy::LeastLoaded).as_deref(), Some("c"));
        assert_eq!(pick(Strategy::MostSkilled).as_deref(), Some("b"));
    }

    #[test]
    fn full_agents_and_stale_views_are_not_selected() {
        let mut pool = AgentPool::new(Strategy::LongestIdle, "sales");
        pool.update(agent("a", &[("lang:it", 5), ("sales", 5)], 1, 0, 1));
        let a = pool.agent_id("a").unwrap();
        pool.begin_reservation(&a, 5);
        assert_eq!(
            pool.select(&req("it", 1), &[]),
            None,
            "the in-flight offer takes the slot"
        );
        pool.end_reservation(&a, true);
        assert_eq!(
            pool.select(&req("it", 1), &[]),
            None,
            "rejected: stale until the next update"
        );
        let mut update = agent("a", &[("lang:it", 5), ("sales", 5)], 1, 0, 1);
        update.version = 2;
        pool.update(update);
        assert_eq!(pool.select(&req("it", 1), &[]).as_deref(), Some("a"));
        let mut old = agent("a", &[("lang:it", 5), ("sales", 5)], 1, 1, 1);
        old.version = 1;
        pool.update(old);
        assert_eq!(
            pool.select(&req("it", 1), &[]).as_deref(),
            Some("a"),
            "older update ignored"
        );
    }

    #[test]
    fn off_shift_agents_and_missing_extra_skills_are_not_selected() {
        let mut pool = AgentPool::new(Strategy::LongestIdle, "sales");
        let mut night = agent("night", &[("lang:it", 5), ("sales", 5)], 2, 0, 1);
        night.on_shift = false;
        pool.update(night);
        pool.update(agent("day", &[("lang:it", 3), ("sales", 3)], 2, 0, 2));
        pool.update(agent(
            "boss",
            &[("lang:it", 3), ("sales", 3), ("supervisor", 1)],
            2,
            0,
            3,
        ));
        assert_eq!(pool.select(&req("it", 1), &[]).as_deref(), Some("day"));
        let supervisor = Requirement {
            extra_skill: Some("supervisor"),
            ..req("it", 1)
        };
        assert_eq!(pool.select(&supervisor, &[]).as_deref(), Some("boss"));
        assert_eq!(pool.sticky_state("night", "it"), StickyState::Unavailable);
    }

    #[test]
    fn sticky_states() {
        let mut pool = AgentPool::new(Strategy::LongestIdle, "sales");
        pool.update(agent("free", &[("lang:it", 5), ("sales", 5)], 2, 1, 1));
        pool.update(agent("full", &[("lang:it", 5), ("sales", 5)], 2, 2, 1));
        let mut away = agent("gone", &[("lang:it", 5), ("sales", 5)], 2, 0, 1);
        away.status = AgentStatus::Offline;
        pool.update(away);
        assert_eq!(pool.sticky_state("free", "it"), StickyState::Free);
        assert_eq!(pool.sticky_state("full", "it"), StickyState::Busy);
        assert_eq!(pool.sticky_state("gone", "it"), StickyState::Unavailable);
        assert_eq!(pool.sticky_state("free", "en"), StickyState::Unavailable);
        assert_eq!(pool.sticky_state("unknown", "it"), StickyState::Unavailable);
    }

    #[test]
    fn wait_estimate_falls_as_agents_free_up() {
        assert_eq!(estimated_wait_secs(1, 1, 4, 120.0), 0);
        let busy = estimated_wait_secs(5, 0, 4, 120.0);
        let one_free = estimated_wait_secs(5, 1, 4, 120.0);
        let more_agents = estimated_wait_secs(5, 0, 8, 120.0);
        assert_eq!(busy, 150);
        assert!(one_free < busy && more_agents < busy);
    }

    #[test]
    fn queue_key_orders_priority_then_age() {
        let mut keys = [
            queue_key(1, 100, 0),
            queue_key(2, 300, 1),
            queue_key(1, 50, 2),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                queue_key(2, 300, 1),
                queue_key(1, 50, 2),
                queue_key(1, 100, 0)
            ]
        );
    }

    proptest! {
        /// Whatever the agents, a selected agent has a free slot, the language and the
        /// department skill at the required proficiency, and is not excluded; and when no agent
        /// is selected, none qualifies.
        #[test]
        fn selection_is_sound_and_complete(
            specs in prop::collection::vec((0u8..=5, 0u8..=5, 0u8..=5, 1u32..4, 0u32..4, 0i64..100, any::<bool>()), 0..40),
            min in 1u8..=5,
            strategy in prop_oneof![Just(Strategy::LongestIdle), Just(Strategy::LeastLoaded), Just(Strategy::MostSkilled)],
            exclude_first in any::<bool>(),
        ) {
            let mut pool = AgentPool::new(strategy, "sales");
            let mut all = Vec::new();
            for (i, (it, en, sales, cap, load, idle, available)) in specs.iter().enumerate() {
                let mut skills = vec![];
                if *it > 0 { skills.push(("lang:it", *it)); }
                if *en > 0 { skills.push(("lang:en", *en)); }
                if *sales > 0 { skills.push(("sales", *sales)); }
                let mut a = agent(&format!("a{i}"), &skills, *cap, *load, *idle);
                if !available { a.status = AgentStatus::Away; }
                all.push(a.clone());
                pool.update(a);
            }
            let excluded: Vec<Arc<str>> = if exclude_first {
                pool.agent_id("a0").into_iter().collect()
            } else { vec![] };
            let qualifies = |a: &Availability| {
                a.status == AgentStatus::Available && a.load < a.capacity
                    && a.skills.get("lang:it").copied().unwrap_or(0) >= min
                    && a.skills.get("sales").copied().unwrap_or(0) >= min
                    && !excluded.iter().any(|e| **e == *a.agent_id)
            };
            match pool.select(&req("it", min), &excluded) {
                Some(id) => {
                    let a = all.iter().find(|a| *a.agent_id == *id).unwrap();
                    prop_assert!(qualifies(a));
                    if strategy == Strategy::MostSkilled {
                        let best = all.iter().filter(|a| qualifies(a)).map(|a| a.skills["sales"]).max().unwrap();
                        prop_assert_eq!(a.skills["sales"], best);
                    }
                    if strategy == Strategy::LongestIdle {
                        let best = all.iter().filter(|a| qualifies(a)).map(|a| a.idle_since_ms).min().unwrap();
                        prop_assert_eq!(a.idle_since_ms, best);
                    }
                }
                None => prop_assert!(!all.iter().any(qualifies)),
            }
        }

        /// Reservations never let the view offer more slots than an agent has.
        #[test]
        fn reservations_never_exceed_capacity(cap in 1u32..6, load in 0u32..6, tries in 1usize..12) {
            let mut pool = AgentPool::new(Strategy::LeastLoaded, "sales");
            pool.update(agent("a", &[("lang:it", 3), ("sales", 3)], cap, load.min(cap), 0));
            let mut offered = 0;
            for t in 0..tries {
                if let Some(id) = pool.select(&req("it", 1), &[]) {
                    pool.begin_reservation(&id, t as i64);
                    offered += 1;
                }
            }
            prop_assert_eq!(offered, (cap - load.min(cap)).min(tries as u32));
        }
    }
}
