//! Pure routing decisions: routing steps, sticky rules, agent selection and queue order.
//!
//! - [`steps`]: which routing step a waiting conversation is in, and what it requires.
//! - [`order`]: queue order (priority, then age) and estimated waits.
//! - [`sticky`]: where a returning customer's last agent stands.
//! - [`requirement`]: what a conversation needs from an agent.
//! - [`pool`]: a queue's indexed view of the agents that could serve it.
//! - [`admission`]: where a new conversation goes and what the customer's profile adds.
//! - [`decide`]: the decision for one waiting conversation, composed of the rules above.
//!
//! Nothing here touches an actor, a clock or the network: the department queue passes plain
//! data in and acts on the decision, so every rule is unit- and property-tested.
//!
//! [`AgentPool`] is a queue's view of the agents that could serve it. It keeps, per
//! language, an ordered index of the agents that have a free slot, sorted by the
//! department's [`Strategy`]; selecting an agent walks that index from the best end and stops
//! at the first agent that meets the step's proficiency, so a decision costs a few index
//! steps instead of a scan of every agent.

pub mod admission;
pub mod decide;
pub mod order;
pub mod pool;
pub mod requirement;
pub mod steps;
pub mod sticky;

pub use decide::{decide, Action, Decision, Entry, StickyDrop, Unmatched};
pub use order::{estimated_wait_secs, queue_key, QueueKey};
pub use pool::AgentPool;
pub use requirement::{language_skill, Requirement};
pub use steps::{current_step, secs_to_next_step, step_min_proficiency};
pub use sticky::StickyState;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::config::{StepConfig, Strategy};
    use centralino_link::Availability;
    use centralino_proto::v1::AgentStatus;
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
