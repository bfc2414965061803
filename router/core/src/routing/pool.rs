//! [`AgentPool`]: a queue's view of the agents that have its skill, with, per language, an
//! ordered index of the agents that have a free slot (sorted by the department's strategy).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use centralino_link::Availability;
use centralino_proto::v1::AgentStatus;

use super::requirement::{language_skill, Requirement};
use super::sticky::StickyState;
use crate::config::Strategy;

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

    /// Sets the selection strategy (a change of the department in the directory): every
    /// agent is indexed again under it.
    pub fn set_strategy(&mut self, strategy: Strategy) {
        if self.strategy == strategy {
            return;
        }
        self.strategy = strategy;
        let ids: Vec<Arc<str>> = self.agents.keys().cloned().collect();
        for id in ids {
            self.reindex(&id);
        }
    }

    /// Applies an availability update; ignores updates older than the one already seen.
    /// An agent without the department skill is not in the view (one who lost it leaves).
    pub fn update(&mut self, availability: Availability) {
        let id: Arc<str> = Arc::from(availability.agent_id.as_str());
        if availability
            .skills
            .get(&self.department_skill)
            .copied()
            .unwrap_or(0)
            == 0
        {
            let newer = self
                .agents
                .get(&id)
                .is_some_and(|a| a.availability.version <= availability.version);
            if newer {
                self.unindex(&id);
                self.agents.remove(&id);
            }
            return;
        }
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

    /// Returns whether `agent` has the skills `requirement` asks for (`language_skill` is
    /// the requirement's language as a skill name).
    fn qualifies(
        &self,
        agent: &PoolAgent,
        requirement: &Requirement<'_>,
        language_skill: &str,
    ) -> bool {
        agent.proficiency(language_skill) >= requirement.min_proficiency
            && agent.proficiency(&self.department_skill) >= requirement.min_proficiency
            && requirement
                .extra_skill
                .is_none_or(|extra| agent.proficiency(extra) > 0)
    }

    /// Returns the best agent with a free slot that meets `requirement`, skipping `excluded`.
    pub fn select(&self, requirement: &Requirement<'_>, excluded: &[Arc<str>]) -> Option<Arc<str>> {
        let skill = language_skill(requirement.language);
        let set = self.free.get(&skill)?;
        set.iter()
            .map(|(_, id)| id)
            .find(|id| {
                self.agents
                    .get(*id)
                    .is_some_and(|agent| self.qualifies(agent, requirement, &skill))
                    && !excluded.contains(id)
            })
            .cloned()
    }

    /// Returns whether `agent_id` has a free slot and meets `requirement` (what
    /// [`AgentPool::select`] asks of the agent it returns).
    pub fn meets(&self, agent_id: &str, requirement: &Requirement<'_>) -> bool {
        let skill = language_skill(requirement.language);
        self.agents.get(agent_id).is_some_and(|agent| {
            agent.has_free_slot() && self.qualifies(agent, requirement, &skill)
        })
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
