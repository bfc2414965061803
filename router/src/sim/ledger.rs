//! What customers and agents observed, and the black-box checks on it.
//!
//! Customer and agent tasks write their observations here (under one short-held lock);
//! live checks (double assignment, capacity, skills) count violations as they happen, and
//! [`crate::sim::report::aggregate`] turns the records into the final [`Report`].
//!
//! [`Report`]: crate::sim::report::Report

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use centralino_agent_node::config::AgentConfig;
use centralino_proto::v1::ConversationOutcome;

use crate::config::{Config, DepartmentConfig};

/// How long a customer stays bound to their last agent (the sticky window), in ms.
pub const SEVEN_DAYS_MS: i64 = 7 * 24 * 3_600_000;

/// One message as tracked by the checker.
#[derive(Debug, Clone, Default)]
pub struct Tracked {
    /// When the sender got its acknowledgement (customer) or sent it (agent).
    pub sent_at: Option<Instant>,
    /// How many times the other side saw it.
    pub seen: u32,
}

/// An offer whose skill check depends on whether the agent is the customer's sticky agent,
/// received before the customer's start response told the simulator who the customer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSkillCheck {
    /// Agent offered the conversation.
    pub agent_id: String,
    /// The offer breaks the rules for a non-sticky agent.
    pub strict_problem: bool,
    /// The offer breaks the rules even for the sticky agent.
    pub lenient_problem: bool,
}

/// Everything observed about one conversation.
///
/// Agents may see a conversation before its customer got the start response, so a record
/// can exist before [`Ledger::started`] (with `started` false); such early observations are
/// kept and reconciled when the start is recorded.
#[derive(Debug, Clone, Default)]
pub struct ConvRecord {
    /// The customer's start response was recorded.
    pub started: bool,
    /// Skill checks waiting for the start (see [`PendingSkillCheck`]).
    pub pending_skill_checks: Vec<PendingSkillCheck>,
    /// Customer messages agents saw before the start was recorded: (message id, text).
    pub early_seen: Vec<(String, String)>,
    /// Customer who started it.
    pub customer_id: String,
    /// Language asked for.
    pub language: String,
    /// Department after the visitor rules (from the start response).
    pub department: String,
    /// Simulated start (Unix ms).
    pub started_ms: i64,
    /// Text of the first message sent with the start request.
    pub first_text: Option<String>,
    /// Agent a returning customer should be routed back to (sticky), if any.
    pub sticky_agent: Option<String>,
    /// First assignment seen by the customer (simulated Unix ms).
    pub assigned_ms: Option<i64>,
    /// Agents named in the customer's `assigned` events, in order.
    pub customer_agents: Vec<String>,
    /// The customer's last view: with an agent (assigned and not requeued since).
    pub with_agent: bool,
    /// Agents that received the desk `assigned` event, in order.
    pub desk_agents: Vec<String>,
    /// The agent holding it now according to desk events.
    pub holder: Option<String>,
    /// Final state (from the `closed` event, or the close response as a fallback).
    pub outcome: Option<ConversationOutcome>,
    /// The customer's stream delivered the `closed` event.
    pub saw_closed_event: bool,
    /// Simulated close instant (Unix ms).
    pub closed_ms: Option<i64>,
    /// The server answered NOT_FOUND while the conversation was open.
    pub vanished: bool,
    /// When the customer asked to close it.
    pub customer_close_at: Option<Instant>,
    /// When the agent asked to close it.
    pub agent_close_at: Option<Instant>,
    /// The holding agent received `ended`.
    pub desk_ended: bool,
    /// Customer messages by message id (`first` for the start request's message).
    pub customer_msgs: BTreeMap<String, Tracked>,
    /// Agent messages by message id.
    pub agent_msgs: BTreeMap<String, Tracked>,
    /// Rating given (true = good).
    pub rating: Option<bool>,
    /// When the holding agent got a command refused (agent sends have no positive
    /// acknowledgement, so a refusal makes its recent sends uncertain).
    pub agent_refusals: Vec<Instant>,
}

impl ConvRecord {
    /// Returns true when the conversation reached a final state.
    pub fn is_final(&self) -> bool {
        self.outcome.is_some_and(|o| {
            !matches!(
                o,
                ConversationOutcome::Open | ConversationOutcome::Unspecified
            )
        }) && !self.vanished
    }
}

/// A customer's history across conversations.
#[derive(Debug, Clone, Default)]
pub struct CustomerHistory {
    /// Display name.
    pub display_name: String,
    /// Language of their last conversation.
    pub language: String,
    /// Department of their last conversation.
    pub department: String,
    /// Agent and simulated close instant of the last completed conversation.
    pub last_completed: Option<(String, i64)>,
    /// A conversation of theirs is running.
    pub active: bool,
}

/// Counters that explain a run but are not part of the JSON report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// StartConversation calls that failed.
    pub start_failures: u64,
    /// Events with an id not above the last one seen (duplicates after a resume).
    pub duplicate_events: u64,
    /// Messages the other side saw more than once.
    pub messages_duplicated: u64,
    /// Messages with an id the simulator never sent.
    pub unknown_messages: u64,
    /// Deliberately dropped and resumed customer streams.
    pub stream_resumes: u64,
    /// Customer streams that ended or failed and were reopened.
    pub stream_reconnects: u64,
    /// Conversations whose close was known only from the close response.
    pub closed_event_missing: u64,
    /// Conversations the customer saw closed whose agent never received `ended`.
    pub desk_end_missing: u64,
    /// Offers received by agents.
    pub offers: u64,
    /// Offers declined on purpose.
    pub offers_declined: u64,
    /// Offers left to time out on purpose.
    pub offers_ignored: u64,
    /// Offers withdrawn by the server.
    pub offers_revoked: u64,
    /// `error` events received by agents.
    pub agent_errors: u64,
    /// Agents set away by the server (missed offers).
    pub agents_set_away: u64,
    /// Successful agent logins (including reconnects).
    pub agent_logins: u64,
    /// Requeued events seen by customers.
    pub requeues: u64,
    /// System messages seen by customers (e.g. "welcome back").
    pub system_messages: u64,
    /// Checkout visitors not routed to sales.
    pub checkout_misrouted: u64,
    /// Calls moved to the next router after UNAVAILABLE.
    pub router_failovers: u64,
    /// Customer tasks still running when the drain budget ran out.
    pub unfinished_customers: u64,
    /// Conversations agents saw whose start response never reached a customer.
    pub unknown_conversations: u64,
}

/// Shared record of the run.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Conversations by id.
    pub convs: HashMap<String, ConvRecord>,
    /// Customers by id.
    pub customers: HashMap<String, CustomerHistory>,
    /// Explanatory counters.
    pub diag: Diagnostics,
    /// Live-checked violations: second holder while the first still held it.
    pub duplicate_assignments: u64,
    /// Live-checked violations: agent over capacity.
    pub capacity_violations: u64,
    /// Live-checked violations: offer to an unqualified agent.
    pub skill_violations: u64,
    /// Customers who came back within 7 days of a completed conversation.
    pub recontacts_7d: u64,
}

/// What a new conversation inherits from the customer's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Returning {
    /// Agent of the last completed conversation within the sticky window.
    pub sticky_agent: Option<String>,
    /// The customer completed a conversation within the last 7 days.
    pub recontact: bool,
}

impl Ledger {
    /// Returns customers with no running conversation and at least one completed one.
    pub fn returnable_customers(&self) -> Vec<(String, CustomerHistory)> {
        let mut out: Vec<(String, CustomerHistory)> = self
            .customers
            .iter()
            .filter(|(_, h)| !h.active && h.last_completed.is_some())
            .map(|(id, h)| (id.clone(), h.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Records a started conversation and returns what it inherits from the customer.
    #[allow(clippy::too_many_arguments)]
    pub fn started(
        &mut self,
        conversation_id: &str,
        customer_id: &str,
        display_name: &str,
        language: &str,
        department: &str,
        started_ms: i64,
        first_text: Option<String>,
    ) -> Returning {
        let history = self.customers.entry(customer_id.to_string()).or_default();
        let returning = returning_from(history.last_completed.as_ref(), started_ms);
        history.active = true;
        history.display_name = display_name.to_string();
        history.language = language.to_string();
        history.department = department.to_string();
        if returning.recontact {
            self.recontacts_7d += 1;
        }
        let record = self.convs.entry(conversation_id.to_string()).or_default();
        record.started = true;
        record.customer_id = customer_id.to_string();
        record.language = language.to_string();
        record.department = department.to_string();
        record.started_ms = started_ms;
        record.sticky_agent = returning.sticky_agent.clone();
        if let Some(text) = first_text {
            record.first_text = Some(text);
            record
                .customer_msgs
                .entry("first".to_string())
                .or_default()
                .sent_at = Some(Instant::now());
        }
        let checks = std::mem::take(&mut record.pending_skill_checks);
        let early = std::mem::take(&mut record.early_seen);
        for check in checks {
            let sticky = returning.sticky_agent.as_deref() == Some(check.agent_id.as_str());
            self.resolve_skill_check(conversation_id, &check, sticky);
        }
        for (message_id, text) in early {
            self.agent_saw_customer_message(conversation_id, &message_id, &text);
        }
        returning
    }

    fn conv(&mut self, conversation_id: &str) -> &mut ConvRecord {
        self.convs.entry(conversation_id.to_string()).or_default()
    }

    /// Records the skill check of an offer to `agent_id`: `strict_problem` when the offer
    /// breaks the step's rules, `lenient_problem` when it breaks them even for the
    /// customer's sticky agent. Decided now, or when the start is recorded.
    pub fn offer_checked(
        &mut self,
        conversation_id: &str,
        agent_id: &str,
        strict_problem: bool,
        lenient_problem: bool,
    ) {
        let check = PendingSkillCheck {
            agent_id: agent_id.to_string(),
            strict_problem,
            lenient_problem,
        };
        let r = self.conv(conversation_id);
        if r.started {
            let sticky = r.sticky_agent.as_deref() == Some(agent_id);
            self.resolve_skill_check(conversation_id, &check, sticky);
        } else {
            r.pending_skill_checks.push(check);
        }
    }

    fn resolve_skill_check(
        &mut self,
        conversation_id: &str,
        check: &PendingSkillCheck,
        sticky: bool,
    ) {
        let broken = if sticky {
            check.lenient_problem
        } else {
            check.strict_problem
        };
        if broken {
            self.skill_violations += 1;
            tracing::warn!(%conversation_id, agent_id = %check.agent_id, sticky, "offer to an unqualified agent");
        }
    }

    /// The customer's task is over (the customer may come back later).
    pub fn customer_done(&mut self, conversation_id: &str) {
        let Some(record) = self.convs.get(conversation_id) else {
            return;
        };
        let completed = (record.outcome == Some(ConversationOutcome::Completed))
            .then(|| record.customer_agents.last().cloned().zip(record.closed_ms))
            .flatten();
        if let Some(history) = self.customers.get_mut(&record.customer_id) {
            history.active = false;
            if let Some(last) = completed {
                history.last_completed = Some(last);
            }
        }
    }

    /// The customer saw `assigned` naming `agent_id` at simulated `at_ms`.
    pub fn customer_assigned(&mut self, conversation_id: &str, agent_id: &str, at_ms: i64) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.assigned_ms.get_or_insert(at_ms);
            r.customer_agents.push(agent_id.to_string());
            r.with_agent = true;
        }
    }

    /// The customer saw `requeued`.
    pub fn customer_requeued(&mut self, conversation_id: &str) {
        self.diag.requeues += 1;
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.with_agent = false;
        }
    }

    /// The customer saw `closed` (or, with `from_event` false, got it from the close call).
    pub fn customer_closed(
        &mut self,
        conversation_id: &str,
        outcome: ConversationOutcome,
        at_ms: i64,
        from_event: bool,
    ) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            if from_event {
                r.saw_closed_event = true;
                r.outcome = Some(outcome);
                r.closed_ms = Some(at_ms);
            } else if r.outcome.is_none() {
                r.outcome = Some(outcome);
                r.closed_ms = Some(at_ms);
            }
        }
    }

    /// The server answered NOT_FOUND about an open conversation.
    pub fn vanished(&mut self, conversation_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            if !r.saw_closed_event {
                r.vanished = true;
            }
        }
    }

    /// A customer message was acknowledged.
    pub fn customer_message_acked(&mut self, conversation_id: &str, message_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.customer_msgs
                .entry(message_id.to_string())
                .or_default()
                .sent_at
                .get_or_insert_with(Instant::now);
        }
    }

    /// An agent saw a customer message (in the transcript or as an event).
    pub fn agent_saw_customer_message(
        &mut self,
        conversation_id: &str,
        message_id: &str,
        text: &str,
    ) {
        let r = self.convs.entry(conversation_id.to_string()).or_default();
        if !r.started {
            r.early_seen
                .push((message_id.to_string(), text.to_string()));
            return;
        }
        {
            let key = if r.first_text.as_deref() == Some(text) {
                "first"
            } else {
                message_id
            };
            let known = r.customer_msgs.contains_key(key) || key.starts_with(conversation_id);
            if !known {
                self.diag.unknown_messages += 1;
                return;
            }
            let tracked = r.customer_msgs.entry(key.to_string()).or_default();
            tracked.seen += 1;
            if tracked.seen == 2 {
                self.diag.messages_duplicated += 1;
            }
        }
    }

    /// An agent sent a message.
    pub fn agent_message_sent(&mut self, conversation_id: &str, message_id: &str) {
        {
            let r = self.conv(conversation_id);
            r.agent_msgs
                .entry(message_id.to_string())
                .or_default()
                .sent_at
                .get_or_insert_with(Instant::now);
        }
    }

    /// The customer saw an agent message.
    pub fn customer_saw_agent_message(&mut self, conversation_id: &str, message_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            if !r.agent_msgs.contains_key(message_id) && !message_id.starts_with(conversation_id) {
                self.diag.unknown_messages += 1;
                return;
            }
            let tracked = r.agent_msgs.entry(message_id.to_string()).or_default();
            tracked.seen += 1;
            if tracked.seen == 2 {
                self.diag.messages_duplicated += 1;
            }
        }
    }

    /// An agent holding these conversations got a command refused.
    pub fn agent_command_refused(&mut self, conversation_ids: &[String]) {
        let now = Instant::now();
        for id in conversation_ids {
            self.conv(id).agent_refusals.push(now);
        }
    }

    /// The customer asked to close.
    pub fn customer_close_requested(&mut self, conversation_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.customer_close_at.get_or_insert_with(Instant::now);
        }
    }

    /// The agent asked to close.
    pub fn agent_close_requested(&mut self, conversation_id: &str) {
        {
            let r = self.conv(conversation_id);
            r.agent_close_at.get_or_insert_with(Instant::now);
        }
    }

    /// An agent received `assigned`; counts a double assignment when another agent holds it.
    pub fn desk_assigned(&mut self, conversation_id: &str, agent_id: &str) {
        let r = self.convs.entry(conversation_id.to_string()).or_default();
        if let Some(holder) = r.holder.as_deref().filter(|h| *h != agent_id) {
            self.duplicate_assignments += 1;
            tracing::warn!(%conversation_id, holder, agent_id, "conversation assigned to a second agent while the first holds it");
        }
        r.holder = Some(agent_id.to_string());
        r.desk_agents.push(agent_id.to_string());
    }

    /// An agent received `ended` (or lost the conversation on a reconnect).
    pub fn desk_released(&mut self, conversation_id: &str, agent_id: &str, ended: bool) {
        {
            let r = self.conv(conversation_id);
            if r.holder.as_deref() == Some(agent_id) {
                r.holder = None;
                if ended {
                    r.desk_ended = true;
                }
            }
        }
    }

    /// The customer recorded a rating.
    pub fn rated(&mut self, conversation_id: &str, good: bool) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.rating = Some(good);
        }
    }

    /// Returns live figures for the progress line.
    pub fn progress(&self) -> Progress {
        let mut p = Progress::default();
        for r in self.convs.values().filter(|r| r.started) {
            p.started += 1;
            if r.outcome.is_some() || r.vanished {
                p.closed += 1;
                if r.outcome == Some(ConversationOutcome::Abandoned) {
                    p.abandoned += 1;
                }
            } else if r.with_agent {
                p.assigned += 1;
            } else {
                p.queued += 1;
            }
        }
        p
    }
}

/// Live figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Conversations started.
    pub started: u64,
    /// Waiting for an agent.
    pub queued: u64,
    /// With an agent.
    pub assigned: u64,
    /// In a final state.
    pub closed: u64,
    /// Abandoned (part of `closed`).
    pub abandoned: u64,
}

/// Returns what a conversation started at `now_ms` inherits from the last completed one.
pub fn returning_from(last_completed: Option<&(String, i64)>, now_ms: i64) -> Returning {
    match last_completed {
        Some((agent, closed_ms)) if now_ms - closed_ms <= SEVEN_DAYS_MS => Returning {
            sticky_agent: Some(agent.clone()),
            recontact: true,
        },
        _ => Returning::default(),
    }
}

/// Why an offer broke the skill rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkillProblem {
    /// The offer names a department the configuration does not have.
    UnknownDepartment(String),
    /// The agent lacks the department's skill (or has it below the step's minimum).
    Department {
        /// Skill needed.
        skill: String,
        /// Agent's proficiency (0 = none).
        has: u8,
        /// Minimum required.
        needs: u8,
    },
    /// The agent lacks `lang:<language>` (or has it below the step's minimum).
    Language {
        /// Skill needed.
        skill: String,
        /// Agent's proficiency (0 = none).
        has: u8,
        /// Minimum required.
        needs: u8,
    },
}

/// Returns the minimum proficiency in force after waiting `waited`: the weakest among the
/// steps that may apply within `slack` (requirements only relax as time passes, so the
/// check gives the server the benefit of clock and latency differences).
pub fn min_proficiency(department: &DepartmentConfig, waited: Duration, slack: Duration) -> u8 {
    let horizon = (waited + slack).as_secs();
    department
        .steps
        .iter()
        .filter(|s| s.after_secs <= horizon)
        .map(|s| s.min_proficiency)
        .min()
        .unwrap_or(1)
        .max(1)
}

/// Checks an offer of a conversation in `department`/`language` to `agent`, after the
/// conversation waited `waited`. Returns the problems (empty when the offer is fine).
///
/// A returning customer's last agent (`sticky`) is only held to "has the skill at all",
/// since sticky routing may prefer them over the step's proficiency.
pub fn check_offer(
    config: &Config,
    agent: &AgentConfig,
    department: &str,
    language: &str,
    waited: Duration,
    slack: Duration,
    sticky: bool,
) -> Vec<SkillProblem> {
    let Some(dept) = config.department(department) else {
        return vec![SkillProblem::UnknownDepartment(department.to_string())];
    };
    let needs = if sticky {
        1
    } else {
        min_proficiency(dept, waited, slack)
    };
    let mut problems = Vec::new();
    let skill = dept.skill().to_string();
    let has = agent.skills.get(&skill).copied().unwrap_or(0);
    if has < needs {
        problems.push(SkillProblem::Department { skill, has, needs });
    }
    let skill = format!("lang:{language}");
    let has = agent.skills.get(&skill).copied().unwrap_or(0);
    if has < needs {
        problems.push(SkillProblem::Language { skill, has, needs });
    }
    problems
}

/// Returns true when the customer's and the agents' views of who served a closed
/// conversation disagree (as sets of agent ids).
pub fn assignment_views_disagree(record: &ConvRecord) -> bool {
    if !record.saw_closed_event {
        return false;
    }
    let customer: BTreeSet<&String> = record.customer_agents.iter().collect();
    let desk: BTreeSet<&String> = record.desk_agents.iter().collect();
    customer != desk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StepConfig;

    fn config() -> Config {
        Config::load(None).unwrap()
    }

    fn agent(config: &Config, id: &str) -> AgentConfig {
        config.agents.iter().find(|a| a.id == id).unwrap().clone()
    }

    #[test]
    fn steps_relax_with_waiting_and_slack() {
        let dept = DepartmentConfig {
            name: "support".into(),
            steps: vec![
                StepConfig {
                    after_secs: 0,
                    min_proficiency: 3,
                    overflow_to: None,
                },
                StepConfig {
                    after_secs: 20,
                    min_proficiency: 2,
                    overflow_to: None,
                },
                StepConfig {
                    after_secs: 60,
                    min_proficiency: 1,
                    overflow_to: None,
                },
            ],
            ..DepartmentConfig::default()
        };
        let s = Duration::from_secs;
        assert_eq!(min_proficiency(&dept, s(0), s(0)), 3);
        assert_eq!(min_proficiency(&dept, s(19), s(0)), 3);
        assert_eq!(min_proficiency(&dept, s(19), s(2)), 2);
        assert_eq!(min_proficiency(&dept, s(61), s(0)), 1);
        assert_eq!(min_proficiency(&DepartmentConfig::default(), s(0), s(0)), 1);
    }

    #[test]
    fn offers_to_unqualified_agents_are_flagged() {
        let c = config();
        let zero = Duration::ZERO;
        // marco: lang:it 5, sales 4, billing 3; no English, no support.
        let marco = agent(&c, "marco");
        assert!(check_offer(&c, &marco, "sales", "it", zero, zero, false).is_empty());
        let p = check_offer(&c, &marco, "sales", "en", zero, zero, false);
        assert!(
            matches!(&p[..], [SkillProblem::Language { has: 0, .. }]),
            "{p:?}"
        );
        let p = check_offer(
            &c,
            &marco,
            "support",
            "it",
            Duration::from_secs(600),
            zero,
            false,
        );
        assert!(
            matches!(
                &p[..],
                [SkillProblem::Department {
                    has: 0,
                    needs: 1,
                    ..
                }]
            ),
            "{p:?}"
        );
        // sara has sales 2: not before 30 s in sales (step 0 needs 3), fine afterwards.
        let sara = agent(&c, "sara");
        assert_eq!(
            check_offer(&c, &sara, "sales", "it", zero, zero, false).len(),
            1
        );
        assert!(check_offer(
            &c,
            &sara,
            "sales",
            "it",
            Duration::from_secs(31),
            zero,
            false
        )
        .is_empty());
        assert!(check_offer(&c, &sara, "sales", "it", zero, zero, true).is_empty());
        let p = check_offer(&c, &sara, "nowhere", "it", zero, zero, false);
        assert_eq!(p, vec![SkillProblem::UnknownDepartment("nowhere".into())]);
    }

    #[test]
    fn a_second_holder_is_a_duplicate_assignment() {
        let mut l = Ledger::default();
        l.started("c1", "cust", "Anna", "it", "sales", 0, None);
        l.desk_assigned("c1", "giulia");
        assert_eq!(l.duplicate_assignments, 0);
        l.desk_assigned("c1", "marco");
        assert_eq!(l.duplicate_assignments, 1);
        // After the holder released it, a new agent is fine.
        l.desk_released("c1", "marco", false);
        l.desk_released("c1", "giulia", false);
        l.desk_assigned("c1", "elena");
        assert_eq!(l.duplicate_assignments, 1);
    }

    #[test]
    fn views_of_the_assignment_are_compared_only_after_close() {
        let mut r = ConvRecord {
            customer_agents: vec!["giulia".into()],
            desk_agents: vec!["marco".into()],
            ..ConvRecord::default()
        };
        assert!(!assignment_views_disagree(&r));
        r.saw_closed_event = true;
        assert!(assignment_views_disagree(&r));
        r.desk_agents = vec!["giulia".into()];
        assert!(!assignment_views_disagree(&r));
    }

    #[test]
    fn returning_customers_are_sticky_within_seven_days() {
        let last = ("giulia".to_string(), 1_000);
        let r = returning_from(Some(&last), 1_000 + SEVEN_DAYS_MS);
        assert_eq!(r.sticky_agent.as_deref(), Some("giulia"));
        assert!(r.recontact);
        assert_eq!(
            returning_from(Some(&last), 1_001 + SEVEN_DAYS_MS),
            Returning::default()
        );
        assert_eq!(returning_from(None, 5), Returning::default());
    }

    #[test]
    fn completed_conversations_make_customers_returnable_and_sticky() {
        let mut l = Ledger::default();
        let r = l.started("c1", "cust", "Anna", "it", "sales", 0, None);
        assert_eq!(r, Returning::default());
        assert!(l.returnable_customers().is_empty());
        l.customer_assigned("c1", "giulia", 5_000);
        l.customer_closed("c1", ConversationOutcome::Completed, 60_000, true);
        l.customer_done("c1");
        let back = l.returnable_customers();
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[0].1.last_completed,
            Some(("giulia".to_string(), 60_000))
        );
        let r = l.started("c2", "cust", "Anna", "it", "sales", 120_000, None);
        assert_eq!(r.sticky_agent.as_deref(), Some("giulia"));
        assert_eq!(l.recontacts_7d, 1);
        assert!(
            l.returnable_customers().is_empty(),
            "customer is active again"
        );
    }

    #[test]
    fn messages_seen_twice_and_unknown_ones_are_counted() {
        let mut l = Ledger::default();
        l.started(
            "c1",
            "cust",
            "Anna",
            "it",
            "sales",
            0,
            Some("ciao c1".into()),
        );
        l.customer_message_acked("c1", "c1:c1");
        l.agent_saw_customer_message("c1", "srv-1", "ciao c1");
        l.agent_saw_customer_message("c1", "c1:c1", "x");
        l.agent_saw_customer_message("c1", "c1:c1", "x");
        l.agent_saw_customer_message("c1", "zzz", "y");
        assert_eq!(l.convs["c1"].customer_msgs["first"].seen, 1);
        assert_eq!(l.convs["c1"].customer_msgs["c1:c1"].seen, 2);
        assert_eq!(l.diag.messages_duplicated, 1);
        assert_eq!(l.diag.unknown_messages, 1);
    }
}
