//! [`decide`]: the routing decision for one waiting conversation, composed of the rules of
//! the sibling modules in the order DESIGN.md §1 gives them: routing step → overflow →
//! sticky agent (timeout, then where the agent stands) → agent selection.
//!
//! The function reads plain data (the conversation, the department's steps, the pool, the
//! time) and returns a [`Decision`]; it counts nothing, reserves nothing and reads no clock.
//! The department queue applies the decision: counters and metrics, clearing a dropped
//! sticky agent, the reservation at the agent-node.

use std::sync::Arc;

use super::pool::AgentPool;
use super::requirement::Requirement;
use super::steps::{current_step, step_min_proficiency};
use super::sticky::StickyState;
use crate::config::StepConfig;

/// What a routing decision reads of one waiting conversation.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// When it entered this queue (Unix ms, simulated); steps count from here.
    pub queue_entered_at_ms: i64,
    /// Language of the team that serves it now.
    pub serving_language: &'a str,
    /// A further skill the agent needs (after a transfer to a skill or a supervisor).
    pub extra_skill: Option<&'a str>,
    /// Last agent of a returning customer, while the customer is still bound to them.
    pub sticky_agent: Option<&'a str>,
    /// Until when to wait for the sticky agent (Unix ms, simulated).
    pub sticky_until_ms: i64,
    /// Agents that did not take it (declined, timed out), skipped by the selection.
    pub excluded: &'a [Arc<str>],
}

/// Why a conversation stops waiting for its sticky agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyDrop {
    /// The sticky wait ran out.
    TimedOut,
    /// The agent is not logged in, not qualified or not serving.
    Unavailable,
}

/// What the queue does with the conversation in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Move it to this department (its routing step says so).
    Overflow(String),
    /// Offer it to `agent`; `sticky` when the agent is the customer's last one.
    Offer {
        /// Agent to reserve.
        agent: Arc<str>,
        /// Whether the agent is the customer's sticky agent.
        sticky: bool,
    },
    /// Leave it waiting for its sticky agent, who is logged in but busy.
    WaitForSticky,
    /// No free agent meets its requirement; later conversations may still be served.
    NoMatch,
    /// No agent of the pool has a free slot: stop the pass.
    NoFreeAgent,
}

/// The routing decision for one waiting conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The sticky agent was dropped first (the caller counts it and clears the agent).
    pub sticky_dropped: Option<StickyDrop>,
    /// What to do with the conversation.
    pub action: Action,
}

impl Decision {
    fn new(sticky_dropped: Option<StickyDrop>, action: Action) -> Self {
        Self {
            sticky_dropped,
            action,
        }
    }
}

/// Requirements that found nobody in the current dispatch pass. The pool only loses free
/// slots during a pass (reservations), so a later conversation with the same requirement
/// and nothing else to match (no exclusions, no extra skill) need not ask it again.
#[derive(Debug, Default)]
pub struct Unmatched(Vec<(String, u8)>);

impl Unmatched {
    fn contains(&self, language: &str, min_proficiency: u8) -> bool {
        self.0
            .iter()
            .any(|(l, m)| l == language && *m == min_proficiency)
    }

    fn insert(&mut self, language: &str, min_proficiency: u8) {
        self.0.push((language.to_string(), min_proficiency));
    }
}

/// Returns the routing decision for `entry` at `now_ms` (simulated Unix ms), given the
/// department's `steps` and its `pool` of agents.
///
/// `unmatched` carries the requirements that found nobody earlier in the same pass over
/// the queue; it starts empty for each pass. Between two calls of a pass the pool may only
/// lose free slots (the reservations of the offers decided so far).
pub fn decide(
    entry: &Entry<'_>,
    steps: &[StepConfig],
    pool: &AgentPool,
    now_ms: i64,
    unmatched: &mut Unmatched,
) -> Decision {
    let waited_secs = ((now_ms - entry.queue_entered_at_ms).max(0) / 1000) as u64;
    let step = current_step(steps, waited_secs);
    if let Some(target) = steps.get(step).and_then(|s| s.overflow_to.as_ref()) {
        return Decision::new(None, Action::Overflow(target.clone()));
    }
    let mut sticky_dropped = None;
    if let Some(sticky) = entry.sticky_agent {
        if now_ms >= entry.sticky_until_ms {
            sticky_dropped = Some(StickyDrop::TimedOut);
        } else {
            match pool.sticky_state(sticky, entry.serving_language) {
                StickyState::Free => {
                    if let Some(agent) = pool.agent_id(sticky) {
                        return Decision::new(
                            None,
                            Action::Offer {
                                agent,
                                sticky: true,
                            },
                        );
                    }
                }
                StickyState::Busy => return Decision::new(None, Action::WaitForSticky),
                StickyState::Unavailable => sticky_dropped = Some(StickyDrop::Unavailable),
            }
        }
    }
    if !pool.any_free() {
        return Decision::new(sticky_dropped, Action::NoFreeAgent);
    }
    let requirement = Requirement {
        language: entry.serving_language,
        min_proficiency: step_min_proficiency(steps, step),
        extra_skill: entry.extra_skill,
    };
    let simple = entry.excluded.is_empty() && entry.extra_skill.is_none();
    if simple && unmatched.contains(requirement.language, requirement.min_proficiency) {
        return Decision::new(sticky_dropped, Action::NoMatch);
    }
    let Some(agent) = pool.select(&requirement, entry.excluded) else {
        if simple {
            unmatched.insert(requirement.language, requirement.min_proficiency);
        }
        return Decision::new(sticky_dropped, Action::NoMatch);
    };
    debug_assert!(
        pool.meets(&agent, &requirement) && !entry.excluded.contains(&agent),
        "selected agent {agent} does not meet {requirement:?} or is excluded"
    );
    Decision::new(
        sticky_dropped,
        Action::Offer {
            agent,
            sticky: false,
        },
    )
}

#[cfg(test)]
mod tests {
    //! `decide` against a naive reference: a scan over every agent in a `Vec`, with the
    //! strategies, the sticky rules and the steps written out from DESIGN.md §1.

    use super::*;
    use std::collections::BTreeMap;

    use crate::config::Strategy;
    use centralino_link::Availability;
    use centralino_proto::v1::AgentStatus;
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    const DEPARTMENT: &str = "sales";

    fn availability(id: &str, skills: &[(&str, u8)], capacity: u32, load: u32) -> Availability {
        Availability {
            agent_id: id.to_string(),
            version: 1,
            team: "t".into(),
            status: AgentStatus::Available,
            capacity,
            load,
            skills: Arc::new(skills.iter().map(|(s, p)| (s.to_string(), *p)).collect()),
            idle_since_ms: 0,
            display_name: id.to_uppercase(),
            on_shift: true,
        }
    }

    fn step(after_secs: u64, min_proficiency: u8, overflow_to: Option<&str>) -> StepConfig {
        StepConfig {
            after_secs,
            min_proficiency,
            overflow_to: overflow_to.map(str::to_string),
        }
    }

    fn entry<'a>(language: &'a str, sticky: Option<&'a str>) -> Entry<'a> {
        Entry {
            queue_entered_at_ms: 0,
            serving_language: language,
            extra_skill: None,
            sticky_agent: sticky,
            sticky_until_ms: 60_000,
            excluded: &[],
        }
    }

    fn pool_of(agents: &[Availability]) -> AgentPool {
        let mut pool = AgentPool::new(Strategy::LongestIdle, DEPARTMENT);
        for a in agents {
            pool.update(a.clone());
        }
        pool
    }

    fn offer(agent: &str, sticky: bool) -> Action {
        Action::Offer {
            agent: Arc::from(agent),
            sticky,
        }
    }

    #[test]
    fn overflow_comes_before_the_sticky_agent() {
        let pool = pool_of(&[availability("a", &[("lang:it", 3), ("sales", 3)], 2, 0)]);
        let steps = [step(0, 1, None), step(30, 1, Some("support"))];
        let e = entry("it", Some("a"));
        let mut unmatched = Unmatched::default();
        assert_eq!(
            decide(&e, &steps, &pool, 29_999, &mut unmatched).action,
            offer("a", true)
        );
        let d = decide(&e, &steps, &pool, 30_000, &mut unmatched);
        assert_eq!(d, Decision::new(None, Action::Overflow("support".into())));
    }

    #[test]
    fn a_busy_sticky_agent_is_waited_for_until_the_sticky_wait_runs_out() {
        let mut b = availability("b", &[("lang:it", 5), ("sales", 5)], 2, 0);
        b.idle_since_ms = -1;
        let agents = [availability("a", &[("lang:it", 3), ("sales", 3)], 1, 1), b];
        let pool = pool_of(&agents);
        let e = entry("it", Some("a"));
        let mut unmatched = Unmatched::default();
        assert_eq!(
            decide(&e, &[], &pool, 59_999, &mut unmatched),
            Decision::new(None, Action::WaitForSticky)
        );
        assert_eq!(
            decide(&e, &[], &pool, 60_000, &mut unmatched),
            Decision::new(Some(StickyDrop::TimedOut), offer("b", false)),
            "the wait ran out: dropped, and someone else is offered in the same decision"
        );
    }

    #[test]
    fn an_unavailable_sticky_agent_is_dropped_at_once() {
        let mut away = availability("a", &[("lang:it", 3), ("sales", 3)], 2, 0);
        away.status = AgentStatus::Offline;
        let pool = pool_of(&[away]);
        let mut unmatched = Unmatched::default();
        assert_eq!(
            decide(&entry("it", Some("a")), &[], &pool, 0, &mut unmatched),
            Decision::new(Some(StickyDrop::Unavailable), Action::NoFreeAgent)
        );
        assert_eq!(
            decide(&entry("it", Some("ghost")), &[], &pool, 0, &mut unmatched),
            Decision::new(Some(StickyDrop::Unavailable), Action::NoFreeAgent)
        );
    }

    #[test]
    fn a_free_sticky_agent_is_offered_even_if_a_better_one_is_idle() {
        let mut best = availability("best", &[("lang:it", 5), ("sales", 5)], 2, 0);
        best.idle_since_ms = -100;
        let pool = pool_of(&[
            best,
            availability("last", &[("lang:it", 1), ("sales", 1)], 2, 1),
        ]);
        let steps = [step(0, 4, None)];
        let mut unmatched = Unmatched::default();
        assert_eq!(
            decide(&entry("it", Some("last")), &steps, &pool, 0, &mut unmatched),
            Decision::new(None, offer("last", true))
        );
        assert_eq!(
            decide(&entry("it", None), &steps, &pool, 0, &mut unmatched),
            Decision::new(None, offer("best", false))
        );
    }

    #[test]
    fn steps_relax_the_required_proficiency() {
        let pool = pool_of(&[availability("a", &[("lang:it", 2), ("sales", 2)], 2, 0)]);
        let steps = [step(0, 4, None), step(20, 2, None)];
        let mut unmatched = Unmatched::default();
        assert_eq!(
            decide(&entry("it", None), &steps, &pool, 19_999, &mut unmatched).action,
            Action::NoMatch
        );
        assert_eq!(
            decide(&entry("it", None), &steps, &pool, 20_000, &mut unmatched).action,
            offer("a", false)
        );
    }

    #[test]
    fn the_unmatched_cache_answers_only_simple_requirements() {
        let mut pool = pool_of(&[availability(
            "boss",
            &[("lang:it", 3), ("sales", 3), ("supervisor", 1)],
            1,
            0,
        )]);
        let steps = [step(0, 4, None)];
        let mut unmatched = Unmatched::default();
        assert_eq!(
            decide(&entry("it", None), &steps, &pool, 0, &mut unmatched).action,
            Action::NoMatch
        );
        assert!(unmatched.contains("it", 4));
        // The cache answers the same requirement; the pool is not asked again.
        pool.update(Availability {
            version: 2,
            ..availability("boss", &[("lang:it", 5), ("sales", 5)], 1, 0)
        });
        assert_eq!(
            decide(&entry("it", None), &steps, &pool, 0, &mut unmatched).action,
            Action::NoMatch
        );
        // An extra skill is not cached: it asks the pool.
        let mut with_extra = entry("it", None);
        with_extra.extra_skill = Some("supervisor");
        pool.update(Availability {
            version: 3,
            ..availability(
                "boss",
                &[("lang:it", 5), ("sales", 5), ("supervisor", 1)],
                1,
                0,
            )
        });
        assert_eq!(
            decide(&with_extra, &steps, &pool, 0, &mut unmatched).action,
            offer("boss", false)
        );
    }

    #[test]
    fn a_miss_with_an_extra_skill_or_exclusions_is_not_cached() {
        let pool = pool_of(&[availability("a", &[("lang:it", 3), ("sales", 3)], 1, 0)]);
        let mut unmatched = Unmatched::default();
        let mut supervisor = entry("it", None);
        supervisor.extra_skill = Some("supervisor");
        assert_eq!(
            decide(&supervisor, &[], &pool, 0, &mut unmatched).action,
            Action::NoMatch
        );
        let excluded = [Arc::from("a")];
        let declined = Entry {
            excluded: &excluded,
            ..entry("it", None)
        };
        assert_eq!(
            decide(&declined, &[], &pool, 0, &mut unmatched).action,
            Action::NoMatch
        );
        assert_eq!(
            decide(&entry("it", None), &[], &pool, 0, &mut unmatched).action,
            offer("a", false),
            "agent a serves a conversation without extra needs"
        );
    }

    // ---- the naive reference ------------------------------------------------------------

    /// An agent as the reference sees it: its availability plus this queue's open and
    /// rejected reservations.
    #[derive(Debug, Clone)]
    struct Naive {
        availability: Availability,
        in_flight: u32,
        stale: bool,
    }

    impl Naive {
        fn id(&self) -> &str {
            &self.availability.agent_id
        }
        fn skill(&self, skill: &str) -> u8 {
            self.availability.skills.get(skill).copied().unwrap_or(0)
        }
        fn in_department(&self) -> bool {
            self.skill(DEPARTMENT) > 0
        }
        fn free(&self) -> bool {
            let a = &self.availability;
            !self.stale
                && a.on_shift
                && a.status == AgentStatus::Available
                && a.load + self.in_flight < a.capacity
        }
        fn speaks_some_language(&self) -> bool {
            self.availability
                .skills
                .iter()
                .any(|(s, _)| s.starts_with("lang:"))
        }
        /// Strategy order, smaller is better.
        fn rank(&self, strategy: Strategy) -> (i64, i64) {
            let a = &self.availability;
            match strategy {
                Strategy::LongestIdle => (a.idle_since_ms, 0),
                Strategy::LeastLoaded => (
                    (a.load + self.in_flight) as i64 * 1000 / a.capacity.max(1) as i64,
                    a.idle_since_ms,
                ),
                Strategy::MostSkilled => (-(self.skill(DEPARTMENT) as i64), a.idle_since_ms),
            }
        }
        fn qualifies(&self, language: &str, min: u8, extra: Option<&str>) -> bool {
            self.in_department()
                && self.free()
                && self.skill(&format!("lang:{language}")) >= min
                && self.skill(DEPARTMENT) >= min
                && extra.is_none_or(|x| self.skill(x) > 0)
        }
    }

    fn naive_sticky(agents: &[Naive], id: &str, language: &str) -> StickyState {
        let Some(a) = agents.iter().find(|a| a.id() == id && a.in_department()) else {
            return StickyState::Unavailable;
        };
        if a.skill(&format!("lang:{language}")) == 0 || !a.availability.on_shift {
            return StickyState::Unavailable;
        }
        match a.availability.status {
            AgentStatus::Available if a.free() => StickyState::Free,
            AgentStatus::Available | AgentStatus::OnCall | AgentStatus::Away => StickyState::Busy,
            _ => StickyState::Unavailable,
        }
    }

    /// The step in force after `waited_secs`: the last one begun, else the first.
    fn naive_step(steps: &[StepConfig], waited_secs: u64) -> Option<&StepConfig> {
        let mut current = steps.first();
        for s in steps {
            if s.after_secs <= waited_secs {
                current = Some(s);
            }
        }
        current
    }

    /// What the reference decides: the same classes as [`Action`], with every agent who
    /// would do for an offer (the strategy's best ones).
    #[derive(Debug, PartialEq)]
    enum Expected {
        Overflow(String),
        Sticky(String),
        WaitForSticky,
        Best(Vec<String>),
        NoMatch,
        NoFreeAgent,
    }

    fn naive_decide(
        e: &Entry<'_>,
        steps: &[StepConfig],
        agents: &[Naive],
        strategy: Strategy,
        now_ms: i64,
    ) -> (Option<StickyDrop>, Expected) {
        let waited_secs = if now_ms > e.queue_entered_at_ms {
            ((now_ms - e.queue_entered_at_ms) / 1000) as u64
        } else {
            0
        };
        let step = naive_step(steps, waited_secs);
        if let Some(target) = step.and_then(|s| s.overflow_to.clone()) {
            return (None, Expected::Overflow(target));
        }
        let mut dropped = None;
        if let Some(sticky) = e.sticky_agent {
            if now_ms >= e.sticky_until_ms {
                dropped = Some(StickyDrop::TimedOut);
            } else {
                match naive_sticky(agents, sticky, e.serving_language) {
                    StickyState::Free => return (None, Expected::Sticky(sticky.to_string())),
                    StickyState::Busy => return (None, Expected::WaitForSticky),
                    StickyState::Unavailable => dropped = Some(StickyDrop::Unavailable),
                }
            }
        }
        if !agents
            .iter()
            .any(|a| a.in_department() && a.free() && a.speaks_some_language())
        {
            return (dropped, Expected::NoFreeAgent);
        }
        let min = step.map_or(1, |s| s.min_proficiency).max(1);
        let qualified: Vec<&Naive> = agents
            .iter()
            .filter(|a| a.qualifies(e.serving_language, min, e.extra_skill))
            .filter(|a| !e.excluded.iter().any(|x| &**x == a.id()))
            .collect();
        let Some(best) = qualified.iter().map(|a| a.rank(strategy)).min() else {
            return (dropped, Expected::NoMatch);
        };
        let mut best: Vec<String> = qualified
            .iter()
            .filter(|a| a.rank(strategy) == best)
            .map(|a| a.id().to_string())
            .collect();
        best.sort();
        (dropped, Expected::Best(best))
    }

    // ---- generators ---------------------------------------------------------------------

    const STATUSES: [AgentStatus; 5] = [
        AgentStatus::Available,
        AgentStatus::Away,
        AgentStatus::OnCall,
        AgentStatus::Offline,
        AgentStatus::Disconnected,
    ];

    /// An agent: it, en, sales and supervisor proficiencies (0 = none), capacity, load,
    /// idle since, status, on shift, open reservations, a rejected reservation.
    type AgentSpec = ([u8; 4], u32, u32, i64, usize, bool, u32, bool);

    fn agent_spec() -> impl prop::strategy::Strategy<Value = AgentSpec> {
        (
            [0u8..=5, 0u8..=5, 0u8..=5, 0u8..=1],
            1u32..4,
            0u32..4,
            0i64..50,
            0usize..STATUSES.len(),
            prop::bool::weighted(0.85),
            0u32..2,
            prop::bool::weighted(0.15),
        )
    }

    /// A waiting conversation: language (0 it, 1 en, 2 de), supervisor needed, sticky agent
    /// (an index; past the agents means unknown), entered and sticky-until offsets,
    /// excluded agents (indices).
    type EntrySpec = (usize, bool, Option<usize>, i64, i64, Vec<usize>);

    fn entry_spec() -> impl prop::strategy::Strategy<Value = EntrySpec> {
        (
            prop_oneof![4 => Just(0usize), 3 => Just(1), 1 => Just(2)],
            prop::bool::weighted(0.15),
            prop::option::weighted(0.3, 0usize..14),
            // Entries often share a step (and so a requirement), and the sticky wait often
            // ends exactly now.
            prop_oneof![2 => Just(0i64), 1 => 0i64..120_000],
            prop_oneof![1 => Just(0i64), 3 => -10_000i64..70_000],
            prop_oneof![
                3 => Just(Vec::new()),
                1 => prop::collection::vec(0usize..12, 1..3),
            ],
        )
    }

    fn steps_spec() -> impl prop::strategy::Strategy<Value = Vec<StepConfig>> {
        prop::collection::vec((1u64..40, 1u8..=5, prop::bool::weighted(0.15)), 0..4).prop_map(
            |specs| {
                let mut after = 0;
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (gap, min, overflow))| {
                        if i > 0 {
                            after += gap;
                        }
                        step(after, min, overflow.then_some("support"))
                    })
                    .collect()
            },
        )
    }

    fn strategy_spec() -> impl prop::strategy::Strategy<Value = Strategy> {
        prop_oneof![
            Just(Strategy::LongestIdle),
            Just(Strategy::LeastLoaded),
            Just(Strategy::MostSkilled),
        ]
    }

    /// Builds the pool and the reference from the same specs, the reservations made before
    /// the pass included (at `now_ms`, as the queue does).
    fn build(specs: &[AgentSpec], strategy: Strategy, now_ms: i64) -> (AgentPool, Vec<Naive>) {
        let mut pool = AgentPool::new(strategy, DEPARTMENT);
        let mut naive = Vec::new();
        for (i, (skills, capacity, load, idle, status, on_shift, open, rejected)) in
            specs.iter().enumerate()
        {
            let names = ["lang:it", "lang:en", DEPARTMENT, "supervisor"];
            let skills: BTreeMap<String, u8> = names
                .iter()
                .zip(skills)
                .filter(|(_, p)| **p > 0)
                .map(|(n, p)| (n.to_string(), *p))
                .collect();
            let availability = Availability {
                agent_id: format!("a{i}"),
                version: 1,
                team: "t".into(),
                status: STATUSES[*status],
                capacity: *capacity,
                load: *load,
                skills: Arc::new(skills),
                idle_since_ms: *idle,
                display_name: String::new(),
                on_shift: *on_shift,
            };
            pool.update(availability.clone());
            let mut agent = Naive {
                availability,
                in_flight: 0,
                stale: false,
            };
            if let Some(id) = pool.agent_id(agent.id()) {
                if *rejected {
                    pool.begin_reservation(&id, now_ms);
                    pool.end_reservation(&id, true);
                    agent.stale = true;
                }
                for _ in 0..*open {
                    pool.begin_reservation(&id, now_ms);
                    agent.in_flight += 1;
                }
                if *rejected || *open > 0 {
                    agent.availability.idle_since_ms = agent.availability.idle_since_ms.max(now_ms);
                }
            }
            naive.push(agent);
        }
        (pool, naive)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// One pass over a queue: each conversation in turn gets the decision the naive
        /// reference gets (same class, same sticky drop, same overflow target and sticky
        /// agent); an offer goes to an agent who meets the requirement (language, minimum
        /// proficiency, extra skill, free slot, on shift, not excluded) and is among the
        /// best by the department's strategy. Offers reserve a slot in both before the next
        /// conversation, and the unmatched cache of `decide` never changes an answer.
        #[test]
        fn decide_agrees_with_a_naive_scan(
            agents in prop::collection::vec(agent_spec(), 0..12),
            entries in prop::collection::vec(entry_spec(), 1..10),
            steps in steps_spec(),
            strategy in strategy_spec(),
            now_ms in 0i64..150_000,
        ) {
            let (mut pool, mut naive) = build(&agents, strategy, now_ms);
            let mut unmatched = Unmatched::default();
            let ids: Vec<String> = (0..14).map(|i| format!("a{i}")).collect();
            for (language, supervisor, sticky, entered, until, excluded) in &entries {
                let excluded: Vec<Arc<str>> =
                    excluded.iter().map(|i| Arc::from(ids[*i].as_str())).collect();
                let e = Entry {
                    queue_entered_at_ms: now_ms - entered,
                    serving_language: ["it", "en", "de"][*language],
                    extra_skill: supervisor.then_some("supervisor"),
                    sticky_agent: sticky.map(|i| ids[i].as_str()),
                    sticky_until_ms: now_ms + until,
                    excluded: &excluded,
                };
                let decision = decide(&e, &steps, &pool, now_ms, &mut unmatched);
                let (dropped, expected) = naive_decide(&e, &steps, &naive, strategy, now_ms);
                prop_assert_eq!(decision.sticky_dropped, dropped, "{:?}", e);
                let offered = match (&decision.action, &expected) {
                    (Action::Overflow(t), Expected::Overflow(x)) => { prop_assert_eq!(t, x); None }
                    (Action::WaitForSticky, Expected::WaitForSticky)
                    | (Action::NoMatch, Expected::NoMatch) => None,
                    (Action::NoFreeAgent, Expected::NoFreeAgent) => break,
                    (Action::Offer { agent, sticky: true }, Expected::Sticky(x)) => {
                        prop_assert_eq!(&**agent, x.as_str());
                        Some(agent.clone())
                    }
                    (Action::Offer { agent, sticky: false }, Expected::Best(best)) => {
                        let a = naive.iter().find(|a| a.id() == &**agent);
                        prop_assert!(a.is_some(), "offered to an unknown agent {}", agent);
                        let a = a.unwrap();
                        let min = naive_step(&steps, ((now_ms - e.queue_entered_at_ms).max(0) / 1000) as u64)
                            .map_or(1, |s| s.min_proficiency);
                        prop_assert!(a.qualifies(e.serving_language, min, e.extra_skill), "{:?}", a);
                        prop_assert!(a.availability.on_shift);
                        prop_assert!(!excluded.contains(agent));
                        prop_assert!(best.contains(&agent.to_string()), "{} not among the best {:?}", agent, best);
                        Some(agent.clone())
                    }
                    (got, want) => {
                        prop_assert!(false, "decide: {:?}, reference: {:?} for {:?}", got, want, e);
                        None
                    }
                };
                if let Some(agent) = offered {
                    pool.begin_reservation(&agent, now_ms);
                    if let Some(a) = naive.iter_mut().find(|a| a.id() == &*agent) {
                        a.in_flight += 1;
                        a.availability.idle_since_ms = a.availability.idle_since_ms.max(now_ms);
                    }
                }
            }
        }
    }
}
