//! Routing steps: requirements relax as a conversation waits (DESIGN.md §1).

use crate::config::StepConfig;

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
