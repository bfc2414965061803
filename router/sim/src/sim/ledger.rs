//! What customers and agents observed, and the black-box checks on it.
//!
//! Customer and agent tasks write their observations here (under one short-held lock);
//! live checks (double assignment, capacity, skills, shifts) count violations as they
//! happen, and [`crate::sim::report::aggregate`] turns the records into the final [`Report`].
//!
//! Transfers: an agent records the transfer it asks for ([`Ledger::transfer_requested`])
//! before sending it, so that the next agent's `assigned` is recognised as the hand-over it
//! is (the first agent keeps the conversation until its `ended` with outcome TRANSFERRED,
//! possibly after the next agent's `assigned` for a warm transfer), while a second agent
//! without a transfer under way is a double assignment. Messages are tracked per agent and
//! assignment, so the transcript the next agent receives is not a duplicate delivery.
//!
//! [`Report`]: crate::sim::report::Report

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use centralino_base::config::AgentConfig;
use centralino_base::shifts::Shifts;
use centralino_proto::v1::ConversationOutcome;

use centralino_core::config::{Config, DepartmentConfig};

/// How long a customer stays bound to their last agent (the sticky window), in ms.
pub const SEVEN_DAYS_MS: i64 = 7 * 24 * 3_600_000;

/// One message as tracked by the checker.
#[derive(Debug, Clone, Default)]
pub struct Tracked {
    /// When the sender got its acknowledgement (customer) or sent it (agent).
    pub sent_at: Option<Instant>,
    /// How many times the other side saw it.
    pub seen: u32,
    /// Agent sends only: the server answered the send with an `error` (never delivered).
    pub refused: bool,
    /// Agent sends only: the server acknowledged the send (an `ack` event). A send whose
    /// desk stream broke before the answer (its agent-node killed) is not acknowledged: the
    /// agent was never told it went out, so its loss breaks no promise.
    pub acked: bool,
    /// Customer messages only: who saw it, as (agent, index of that agent's assignment in
    /// [`ConvRecord::desk_agents`]); the same pair twice is a duplicate delivery.
    pub seen_by: Vec<(String, usize)>,
}

/// Where an agent transferred a conversation to (as asked on the desk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// A named agent (reserved directly; refused cleanly when full).
    Agent(String),
    /// Another department's queue.
    Department(String),
    /// Another language's team.
    Language(String),
    /// Agents with a skill.
    Skill(String),
    /// Agents with the configured supervisor skill.
    Supervisor,
}

/// A transfer asked for by an agent and not yet taken over by the next agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTransfer {
    /// Agent handing the conversation on.
    pub from: String,
    /// Where to.
    pub target: TransferTarget,
    /// Warm: the first agent stays until the next accepts.
    pub warm: bool,
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
    /// Customer messages agents saw before the start was recorded: (agent, message id,
    /// text).
    pub early_seen: Vec<(String, String, String)>,
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
    /// When the holding agent got a command refused that could not be tied to its command
    /// (such a refusal makes the agent's recent sends uncertain).
    pub agent_refusals: Vec<Instant>,
    /// A transfer asked for and not yet taken over by the next agent.
    pub pending_transfer: Option<PendingTransfer>,
    /// When the last transfer was asked for.
    pub last_transfer_at: Option<Instant>,
    /// Agents that handed the conversation on and still wait for their `ended`.
    pub leaving: Vec<String>,
    /// Outcome of the last `ended` received by the holding agent.
    pub last_end: Option<ConversationOutcome>,
    /// `transferred` events seen by the customer.
    pub transfers_seen: u64,
    /// `handed_over` events seen by the customer.
    pub handovers_seen: u64,
    /// The holding agent escalated it (callback or email).
    pub escalated_by_agent: bool,
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
    /// Logins of agents who had logged in before (after a broken desktop stream).
    pub agent_relogins: u64,
    /// Conversations an agent still held that the desktop re-attached after a re-login.
    pub agent_reattached: u64,
    /// Chat messages a customer's stream delivered with a transcript position not above the
    /// previous one.
    pub messages_out_of_order: u64,
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
    /// Transfers asked for by agents.
    pub transfers_requested: u64,
    /// Transfers refused by the server (e.g. the named agent is full).
    pub transfers_refused: u64,
    /// Warm transfers to a named agent that the agent did not accept.
    pub transfers_not_accepted: u64,
    /// Offers of transferred conversations.
    pub offers_transferred: u64,
    /// Offers served in another language than the customer's (after a handover).
    pub offers_other_language: u64,
    /// Offers to an agent whose team was off shift (counted as skill violations too).
    pub offers_off_shift: u64,
    /// Escalations asked for by agents.
    pub escalations_requested: u64,
    /// Callbacks asked for by waiting customers.
    pub callbacks_requested: u64,
    /// Offline messages left by customers.
    pub offline_messages_left: u64,
    /// Callback or offline-message requests the server refused (e.g. assigned meanwhile).
    pub follow_ups_refused: u64,
    /// `busy` notices seen by customers.
    pub busy_notices: u64,
    /// `offline` notices seen by customers.
    pub offline_notices: u64,
    /// Canned responses looked up (and how many found nothing).
    pub canned_lookups: u64,
    /// Canned lookups that found nothing.
    pub canned_empty: u64,
    /// Internal notes added by agents.
    pub notes_added: u64,
    /// Agents who stopped taking chats shortly before their team's shift end.
    pub agents_wound_down: u64,
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
        for (agent_id, message_id, text) in early {
            self.agent_saw_customer_message(conversation_id, &agent_id, &message_id, &text);
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
        // The server remembers the agent of a completed conversation and of one an agent
        // escalated (both count as the customer's last contact).
        let contact = match record.outcome {
            Some(ConversationOutcome::Completed) => true,
            Some(ConversationOutcome::Escalated) => record.escalated_by_agent,
            _ => false,
        };
        let completed = contact
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

    /// The customer saw `transferred`; a cold transfer takes the conversation away from its
    /// agent until the next one is assigned.
    pub fn customer_transferred(&mut self, conversation_id: &str, warm: bool) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.transfers_seen += 1;
            if !warm {
                r.with_agent = false;
            }
        }
    }

    /// The customer saw `handed_over` (their language's team closed).
    pub fn customer_handed_over(&mut self, conversation_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            r.handovers_seen += 1;
        }
    }

    /// The customer's close (or follow-up) request failed: the conversation goes on.
    pub fn customer_close_cancelled(&mut self, conversation_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            if r.outcome.is_none() {
                r.customer_close_at = None;
            }
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

    /// The server answered NOT_FOUND about an open conversation. One whose final state the
    /// server already acknowledged to the customer (a close, an offline message, a callback
    /// answered OK) has not vanished: its new owner after a failover just no longer keeps it.
    pub fn vanished(&mut self, conversation_id: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            if !r.saw_closed_event && r.outcome.is_none() {
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

    /// `agent_id` saw a customer message (in the transcript or as an event). Seeing it twice
    /// in the same assignment is a duplicate; the next agent's transcript after a transfer
    /// or requeue is not.
    pub fn agent_saw_customer_message(
        &mut self,
        conversation_id: &str,
        agent_id: &str,
        message_id: &str,
        text: &str,
    ) {
        let r = self.convs.entry(conversation_id.to_string()).or_default();
        if !r.started {
            r.early_seen.push((
                agent_id.to_string(),
                message_id.to_string(),
                text.to_string(),
            ));
            return;
        }
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
        let assignment = r
            .desk_agents
            .iter()
            .rposition(|a| a == agent_id)
            .unwrap_or(usize::MAX);
        let tracked = r.customer_msgs.entry(key.to_string()).or_default();
        tracked.seen += 1;
        let viewer = (agent_id.to_string(), assignment);
        if tracked.seen_by.contains(&viewer) {
            self.diag.messages_duplicated += 1;
            tracing::warn!(%conversation_id, agent_id, message_id, "customer message delivered twice to the same agent");
        } else {
            tracked.seen_by.push(viewer);
        }
    }

    /// The server acknowledged an agent's send.
    pub fn agent_message_acked(&mut self, conversation_id: &str, message_id: &str) {
        if let Some(t) = self
            .convs
            .get_mut(conversation_id)
            .and_then(|r| r.agent_msgs.get_mut(message_id))
        {
            t.acked = true;
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

    /// The server refused an agent's send (answered it with an `error`).
    pub fn agent_message_refused(&mut self, conversation_id: &str, message_id: &str) {
        if let Some(t) = self
            .convs
            .get_mut(conversation_id)
            .and_then(|r| r.agent_msgs.get_mut(message_id))
        {
            t.refused = true;
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

    /// `agent_id` got `assigned` again for a conversation it held before its desktop stream
    /// broke (re-attached after a re-login): a new view of the transcript, not a new holder
    /// and no double assignment.
    pub fn desk_reattached(&mut self, conversation_id: &str, agent_id: &str) {
        self.diag.agent_reattached += 1;
        let r = self.convs.entry(conversation_id.to_string()).or_default();
        if r.holder.as_deref().is_none_or(|h| h == agent_id) {
            r.holder = Some(agent_id.to_string());
        } else {
            self.duplicate_assignments += 1;
            tracing::warn!(%conversation_id, holder = ?r.holder, agent_id, "conversation re-attached to an agent while another holds it");
        }
        r.desk_agents.push(agent_id.to_string());
    }

    /// Returns true when `agent_id` saw this customer message (by id, or by text for the
    /// start request's message) in any earlier assignment.
    pub fn agent_saw_before(
        &self,
        conversation_id: &str,
        agent_id: &str,
        message_id: &str,
        text: &str,
    ) -> bool {
        let Some(r) = self.convs.get(conversation_id) else {
            return false;
        };
        let key = if r.first_text.as_deref() == Some(text) {
            "first"
        } else {
            message_id
        };
        r.customer_msgs
            .get(key)
            .is_some_and(|t| t.seen_by.iter().any(|(a, _)| a == agent_id))
    }

    /// An agent received `assigned`; counts a double assignment when another agent holds it
    /// and is not handing it on by a transfer.
    pub fn desk_assigned(&mut self, conversation_id: &str, agent_id: &str) {
        let r = self.convs.entry(conversation_id.to_string()).or_default();
        let transfer = r.pending_transfer.take();
        if let Some(holder) = r.holder.clone().filter(|h| h != agent_id) {
            if transfer.as_ref().is_some_and(|t| t.from == holder) {
                // A transfer: the first agent keeps it until its `ended`.
                r.leaving.push(holder);
            } else {
                self.duplicate_assignments += 1;
                tracing::warn!(%conversation_id, %holder, agent_id, "conversation assigned to a second agent while the first holds it");
            }
        }
        r.holder = Some(agent_id.to_string());
        r.desk_ended = false;
        r.desk_agents.push(agent_id.to_string());
    }

    /// An agent received `ended` with `outcome` (or, with `None`, lost the conversation on a
    /// reconnect).
    pub fn desk_released(
        &mut self,
        conversation_id: &str,
        agent_id: &str,
        outcome: Option<ConversationOutcome>,
    ) {
        let r = self.conv(conversation_id);
        if r.holder.as_deref() == Some(agent_id) {
            r.holder = None;
            if outcome.is_some() {
                r.desk_ended = true;
                r.last_end = outcome;
            }
        } else {
            r.leaving.retain(|a| a != agent_id);
        }
    }

    /// `from` asks to transfer the conversation (recorded before the command is sent).
    pub fn transfer_requested(
        &mut self,
        conversation_id: &str,
        from: &str,
        target: TransferTarget,
        warm: bool,
    ) {
        self.diag.transfers_requested += 1;
        let r = self.conv(conversation_id);
        r.pending_transfer = Some(PendingTransfer {
            from: from.to_string(),
            target,
            warm,
        });
        r.last_transfer_at = Some(Instant::now());
    }

    /// The transfer `from` asked for was refused, or (warm, to a named agent) not accepted:
    /// `from` keeps the conversation.
    pub fn transfer_cancelled(&mut self, conversation_id: &str, from: &str) {
        if let Some(r) = self.convs.get_mut(conversation_id) {
            if r.pending_transfer.as_ref().is_some_and(|t| t.from == from) {
                r.pending_transfer = None;
            }
        }
    }

    /// The holding agent escalated the conversation (a close by the agent).
    pub fn agent_escalated(&mut self, conversation_id: &str) {
        self.diag.escalations_requested += 1;
        let r = self.conv(conversation_id);
        r.escalated_by_agent = true;
        r.agent_close_at.get_or_insert_with(Instant::now);
    }

    /// Returns the transfer under way for a conversation, if any.
    pub fn pending_transfer(&self, conversation_id: &str) -> Option<PendingTransfer> {
        self.convs
            .get(conversation_id)
            .and_then(|r| r.pending_transfer.clone())
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
    /// The agent lacks `lang:<serving language>` (or has it below the step's minimum).
    Language {
        /// Skill needed.
        skill: String,
        /// Agent's proficiency (0 = none).
        has: u8,
        /// Minimum required.
        needs: u8,
    },
    /// A transfer to a skill or to a supervisor reached an agent without that skill.
    TransferSkill {
        /// Skill needed.
        skill: String,
    },
    /// A transfer to a department was offered in another department (not its overflow).
    TransferDepartment {
        /// Department transferred to.
        expected: String,
        /// Department of the offer.
        offered: String,
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

/// Checks an offer of a conversation in `department` served in `serving_language` (the
/// offer's `serving_language`: the customer's language, or the fallback team's after a
/// handover) to `agent`, after the conversation waited `waited`. Returns the problems
/// (empty when the offer is fine).
///
/// A returning customer's last agent (`sticky`) is only held to "has the skill at all",
/// since sticky routing may prefer them over the step's proficiency.
pub fn check_offer(
    config: &Config,
    agent: &AgentConfig,
    department: &str,
    serving_language: &str,
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
    skill_problems(agent, dept, serving_language, needs)
}

fn skill_problems(
    agent: &AgentConfig,
    dept: &DepartmentConfig,
    serving_language: &str,
    needs: u8,
) -> Vec<SkillProblem> {
    let mut problems = Vec::new();
    let skill = dept.skill().to_string();
    let has = agent.skills.get(&skill).copied().unwrap_or(0);
    if has < needs {
        problems.push(SkillProblem::Department { skill, has, needs });
    }
    let skill = format!("lang:{serving_language}");
    let has = agent.skills.get(&skill).copied().unwrap_or(0);
    if has < needs {
        problems.push(SkillProblem::Language { skill, has, needs });
    }
    problems
}

/// Checks an offer of a transferred conversation (`Offer.transfer` set). The routing steps
/// start again in the target department, so only "has the skill at all" is required of the
/// department's skill and of `lang:<serving language>`; a transfer to a skill or to a
/// supervisor (`transfer`, as the first agent asked for it) also needs that skill, and a
/// transfer to a department must be offered there (or where that department overflows to).
pub fn check_transferred_offer(
    config: &Config,
    agent: &AgentConfig,
    department: &str,
    serving_language: &str,
    transfer: Option<&PendingTransfer>,
) -> Vec<SkillProblem> {
    let Some(dept) = config.department(department) else {
        return vec![SkillProblem::UnknownDepartment(department.to_string())];
    };
    let mut problems = skill_problems(agent, dept, serving_language, 1);
    let extra = match transfer.map(|t| &t.target) {
        Some(TransferTarget::Skill(skill)) => Some(skill.clone()),
        Some(TransferTarget::Supervisor) => Some(config.routing.supervisor_skill.clone()),
        _ => None,
    };
    if let Some(skill) = extra {
        if agent.skills.get(&skill).copied().unwrap_or(0) < 1 {
            problems.push(SkillProblem::TransferSkill { skill });
        }
    }
    if let Some(TransferTarget::Department(expected)) = transfer.map(|t| &t.target) {
        let overflow = config
            .department(expected)
            .map(|d| {
                d.steps
                    .iter()
                    .filter_map(|s| s.overflow_to.as_deref())
                    .any(|o| o == department)
            })
            .unwrap_or(false);
        if expected != department && !overflow {
            problems.push(SkillProblem::TransferDepartment {
                expected: expected.clone(),
                offered: department.to_string(),
            });
        }
    }
    problems
}

/// Returns true when an offer at `now_ms` to an agent of `team` breaks the shifts: the team
/// was closed at `now_ms` and already `slack` earlier (the server checks shifts
/// periodically, and an offer reserved just before the shift end may arrive just after).
pub fn offered_off_shift(shifts: &Shifts, team: &str, now_ms: i64, slack: Duration) -> bool {
    !shifts.team_open(team, now_ms) && !shifts.team_open(team, now_ms - slack.as_millis() as i64)
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
    use centralino_core::config::StepConfig;

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
        l.desk_released("c1", "marco", None);
        l.desk_released("c1", "giulia", None);
        l.desk_assigned("c1", "elena");
        assert_eq!(l.duplicate_assignments, 1);
    }

    #[test]
    fn not_found_is_a_loss_only_before_the_server_acknowledged_a_final_state() {
        let mut l = Ledger::default();
        l.started("open", "cust-1", "Anna", "it", "sales", 0, None);
        l.started("left", "cust-2", "Bruno", "it", "sales", 0, None);
        l.vanished("open");
        assert!(!l.convs["open"].is_final(), "gone while open: lost");
        // The offline message was answered OK, then a failover: the new owner has no
        // closed conversations.
        l.customer_closed("left", ConversationOutcome::Offline, 10, false);
        l.vanished("left");
        assert!(l.convs["left"].is_final());
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
        l.desk_assigned("c1", "giulia");
        l.agent_saw_customer_message("c1", "giulia", "srv-1", "ciao c1");
        l.agent_saw_customer_message("c1", "giulia", "c1:c1", "x");
        l.agent_saw_customer_message("c1", "giulia", "c1:c1", "x");
        l.agent_saw_customer_message("c1", "giulia", "zzz", "y");
        assert_eq!(l.convs["c1"].customer_msgs["first"].seen, 1);
        assert_eq!(l.convs["c1"].customer_msgs["c1:c1"].seen, 2);
        assert_eq!(l.diag.messages_duplicated, 1);
        assert_eq!(l.diag.unknown_messages, 1);
    }

    /// 2026-11-23T09:00:00+01:00 (a Monday).
    const NINE_AM: i64 = 1_795_420_800_000;
    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn a_reattach_after_a_relogin_is_no_double_assignment_nor_duplicate_delivery() {
        let mut l = Ledger::default();
        l.started("c1", "cust", "Anna", "it", "sales", 0, Some("ciao".into()));
        l.customer_message_acked("c1", "c1:c1");
        l.desk_assigned("c1", "giulia");
        l.agent_saw_customer_message("c1", "giulia", "m-first", "ciao");
        assert!(l.agent_saw_before("c1", "giulia", "m-first", "ciao"));
        assert!(!l.agent_saw_before("c1", "giulia", "c1:c1", "later"));
        // The desktop stream broke; the agent logs in on another agent-node and the
        // conversation is re-attached with its transcript.
        l.desk_reattached("c1", "giulia");
        l.agent_saw_customer_message("c1", "giulia", "c1:c1", "later");
        assert_eq!(l.duplicate_assignments, 0);
        assert_eq!(l.diag.messages_duplicated, 0);
        assert_eq!(l.diag.agent_reattached, 1);
        assert_eq!(l.convs["c1"].holder.as_deref(), Some("giulia"));
        // Re-attached to someone else while giulia holds it: a double assignment.
        l.desk_reattached("c1", "marco");
        assert_eq!(l.duplicate_assignments, 1);
    }

    #[test]
    fn a_transfer_hands_the_conversation_on_without_a_double_assignment() {
        let mut l = Ledger::default();
        l.started("c1", "cust", "Anna", "it", "sales", 0, None);
        l.desk_assigned("c1", "giulia");
        // Warm: the next agent is assigned before the first one gets `ended`.
        l.transfer_requested(
            "c1",
            "giulia",
            TransferTarget::Department("billing".into()),
            true,
        );
        l.desk_assigned("c1", "chiara");
        assert_eq!(l.duplicate_assignments, 0);
        assert_eq!(l.convs["c1"].leaving, vec!["giulia".to_string()]);
        l.desk_released("c1", "giulia", Some(ConversationOutcome::Transferred));
        assert!(l.convs["c1"].leaving.is_empty());
        assert_eq!(l.convs["c1"].holder.as_deref(), Some("chiara"));
        assert!(!l.convs["c1"].desk_ended, "the holder did not get `ended`");
        // Cold: the first agent gets `ended` first, then the next one is assigned.
        l.transfer_requested("c1", "chiara", TransferTarget::Agent("marco".into()), false);
        l.desk_released("c1", "chiara", Some(ConversationOutcome::Transferred));
        l.desk_assigned("c1", "marco");
        assert_eq!(l.duplicate_assignments, 0);
        // A refused transfer leaves the conversation with its agent: a second agent now is
        // a double assignment.
        l.transfer_requested("c1", "marco", TransferTarget::Agent("elena".into()), false);
        l.transfer_cancelled("c1", "marco");
        l.desk_assigned("c1", "elena");
        assert_eq!(l.duplicate_assignments, 1);
        // Someone else's transfer does not excuse it either.
        l.transfer_requested("c1", "paolo", TransferTarget::Supervisor, false);
        l.desk_assigned("c1", "ava");
        assert_eq!(l.duplicate_assignments, 2);
    }

    #[test]
    fn the_next_agents_transcript_is_not_a_duplicate_delivery() {
        let mut l = Ledger::default();
        l.started("c1", "cust", "Anna", "it", "sales", 0, Some("ciao".into()));
        l.desk_assigned("c1", "giulia");
        l.agent_saw_customer_message("c1", "giulia", "c1-first", "ciao");
        l.customer_message_acked("c1", "c1:c1");
        l.agent_saw_customer_message("c1", "giulia", "c1:c1", "x");
        l.transfer_requested(
            "c1",
            "giulia",
            TransferTarget::Department("billing".into()),
            false,
        );
        l.desk_released("c1", "giulia", Some(ConversationOutcome::Transferred));
        l.desk_assigned("c1", "chiara");
        l.agent_saw_customer_message("c1", "chiara", "c1-first", "ciao");
        l.agent_saw_customer_message("c1", "chiara", "c1:c1", "x");
        assert_eq!(l.diag.messages_duplicated, 0);
        assert_eq!(l.convs["c1"].customer_msgs["c1:c1"].seen, 2);
        // The same agent in the same assignment twice is a duplicate.
        l.agent_saw_customer_message("c1", "chiara", "c1:c1", "x");
        assert_eq!(l.diag.messages_duplicated, 1);
        // Taken again after a requeue: a new assignment, its transcript is no duplicate.
        l.desk_released("c1", "chiara", None);
        l.desk_assigned("c1", "chiara");
        l.agent_saw_customer_message("c1", "chiara", "c1:c1", "x");
        assert_eq!(l.diag.messages_duplicated, 1);
    }

    #[test]
    fn offers_are_checked_against_the_serving_language() {
        let c = config();
        let zero = Duration::ZERO;
        // An Italian customer handed over to the English team: served in English.
        let emma = agent(&c, "emma");
        assert!(check_offer(&c, &emma, "sales", "en", zero, zero, false).is_empty());
        let p = check_offer(&c, &emma, "sales", "it", zero, zero, false);
        assert!(matches!(&p[..], [SkillProblem::Language { .. }]), "{p:?}");
        let marco = agent(&c, "marco");
        assert!(!check_offer(&c, &marco, "sales", "en", zero, zero, false).is_empty());
    }

    #[test]
    fn transferred_offers_need_the_skills_at_all_and_the_asked_skill() {
        let c = config();
        let transfer = |target| PendingTransfer {
            from: "marco".into(),
            target,
            warm: false,
        };
        // sara has sales 2: below the first step's 3, but a transfer restarts the steps.
        let sara = agent(&c, "sara");
        assert!(check_transferred_offer(&c, &sara, "sales", "it", None).is_empty());
        // No billing skill at all is still a problem.
        let p = check_transferred_offer(&c, &sara, "billing", "it", None);
        assert!(
            matches!(&p[..], [SkillProblem::Department { has: 0, .. }]),
            "{p:?}"
        );
        // A transfer to a supervisor needs the supervisor skill.
        let sup = transfer(TransferTarget::Supervisor);
        let ava = agent(&c, "ava");
        assert!(check_transferred_offer(&c, &ava, "support", "en", Some(&sup)).is_empty());
        let james = agent(&c, "james");
        let p = check_transferred_offer(&c, &james, "support", "en", Some(&sup));
        assert_eq!(
            p,
            vec![SkillProblem::TransferSkill {
                skill: "supervisor".into()
            }]
        );
        let skill = transfer(TransferTarget::Skill("billing".into()));
        assert!(!check_transferred_offer(&c, &james, "support", "en", Some(&skill)).is_empty());
        // A transfer to billing must be offered in billing; shipping may overflow to support.
        let billing = transfer(TransferTarget::Department("billing".into()));
        let elena = agent(&c, "elena");
        assert!(check_transferred_offer(&c, &elena, "billing", "it", Some(&billing)).is_empty());
        let p = check_transferred_offer(&c, &elena, "sales", "it", Some(&billing));
        assert!(
            matches!(&p[..], [SkillProblem::TransferDepartment { .. }]),
            "{p:?}"
        );
        let shipping = transfer(TransferTarget::Department("shipping".into()));
        assert!(check_transferred_offer(&c, &elena, "support", "it", Some(&shipping)).is_empty());
        // A transfer to a named agent that failed goes to the queue: any qualified agent.
        let named = transfer(TransferTarget::Agent("giulia".into()));
        assert!(check_transferred_offer(&c, &elena, "sales", "it", Some(&named)).is_empty());
    }

    #[test]
    fn offers_off_shift_are_flagged_after_the_slack() {
        let c = config();
        let shifts = Shifts::new(&c.agent_node());
        let slack = Duration::from_secs(60);
        // The Italian team works 10:00-22:00 Europe/Rome; the English one around the clock.
        assert!(offered_off_shift(
            &shifts,
            "italian",
            NINE_AM + HOUR_MS / 2,
            slack
        ));
        assert!(!offered_off_shift(
            &shifts,
            "italian",
            NINE_AM + 3 * HOUR_MS,
            slack
        ));
        let ten_pm = NINE_AM + 13 * HOUR_MS;
        assert!(!offered_off_shift(
            &shifts,
            "italian",
            ten_pm + 30_000,
            slack
        ));
        assert!(offered_off_shift(
            &shifts,
            "italian",
            ten_pm + 5 * 60_000,
            slack
        ));
        assert!(!offered_off_shift(
            &shifts,
            "english",
            NINE_AM - 6 * HOUR_MS,
            slack
        ));
    }

    #[test]
    fn an_escalation_by_the_agent_counts_as_the_last_contact() {
        let mut l = Ledger::default();
        l.started("c1", "cust", "Anna", "it", "sales", 0, None);
        l.desk_assigned("c1", "giulia");
        l.customer_assigned("c1", "giulia", 5_000);
        l.agent_escalated("c1");
        l.customer_closed("c1", ConversationOutcome::Escalated, 60_000, true);
        l.customer_done("c1");
        let r = l.started("c2", "cust", "Anna", "it", "sales", 120_000, None);
        assert_eq!(r.sticky_agent.as_deref(), Some("giulia"));
        // A callback asked for while waiting is no contact with an agent.
        l.customer_closed("c2", ConversationOutcome::Escalated, 130_000, true);
        l.customer_done("c2");
        l.started("c3", "other", "Bo", "it", "sales", 0, None);
        l.customer_closed("c3", ConversationOutcome::Escalated, 10_000, true);
        l.customer_done("c3");
        assert!(l.customers["other"].last_completed.is_none());
    }
}
