//! The run's report: outcome counts, service figures in simulated seconds, and the
//! invariant checks' violation counters, aggregated from the [`Ledger`].

use std::fmt::Write as _;
use std::time::Duration;

use centralino_proto::v1::{ConversationOutcome, Counters};
use serde::Serialize;

use super::ledger::{assignment_views_disagree, ConvRecord, Diagnostics, Ledger};

/// How much earlier than the customer's close request an agent message must have been sent
/// to be expected at the customer (the two requests race on different paths).
pub const CLOSE_RACE_MARGIN: Duration = Duration::from_millis(500);

/// Outages seen by customers: one interval per call or stream resume that needed retries,
/// from the first failure to the first answer (wall Unix ms).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Outages {
    /// Number of intervals.
    pub count: u64,
    /// Longest interval, ms.
    pub max_ms: u64,
    /// Median interval, ms.
    pub p50_ms: u64,
    /// The intervals, `[start_unix_ms, end_unix_ms]`, in start order.
    pub intervals: Vec<[i64; 2]>,
}

impl Outages {
    /// Returns the summary of `intervals` (start, end) in wall Unix ms.
    pub fn from_intervals(mut intervals: Vec<(i64, i64)>) -> Self {
        intervals.sort_unstable();
        let mut lengths: Vec<u64> = intervals
            .iter()
            .map(|(from, to)| (to - from).max(0) as u64)
            .collect();
        lengths.sort_unstable();
        Self {
            count: intervals.len() as u64,
            max_ms: lengths.last().copied().unwrap_or(0),
            p50_ms: lengths.get(lengths.len() / 2).copied().unwrap_or(0),
            intervals: intervals.into_iter().map(|(a, b)| [a, b]).collect(),
        }
    }
}

/// Result of a simulation run. The JSON form has exactly the documented keys.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// Conversations the server acknowledged.
    pub conversations_started: u64,
    /// Served by an agent and closed.
    pub conversations_completed: u64,
    /// Left by the customer before an agent answered.
    pub conversations_abandoned: u64,
    /// Ended with an offline message.
    pub conversations_offline: u64,
    /// Escalated out of chat.
    pub conversations_escalated: u64,
    /// Without a final state at the end of the run.
    pub conversations_open: u64,
    /// Started but never reached a final state after the drain, or vanished while open.
    pub lost_conversations: u64,
    /// A second agent got a conversation another still held, or the customer's and the
    /// agents' views of who served it disagree.
    pub duplicate_assignments: u64,
    /// An agent held more open conversations than its capacity.
    pub capacity_violations: u64,
    /// An agent was offered a conversation it is not qualified for.
    pub skill_violations: u64,
    /// Messages acknowledged (customer) or sent (agent).
    pub messages_sent: u64,
    /// Messages the other side saw.
    pub messages_delivered: u64,
    /// Acknowledged messages the other side never saw.
    pub messages_lost: u64,
    /// Average wait until assignment, simulated seconds.
    pub asa_seconds: f64,
    /// Share answered within 20 s among those answered or abandoned after 20 s.
    pub service_level_20s: f64,
    /// Average time from assignment to close of completed conversations, simulated seconds.
    pub aht_seconds: f64,
    /// Good ratings.
    pub csat_good: u64,
    /// Bad ratings.
    pub csat_bad: u64,
    /// Customers back within 7 days of a completed conversation.
    pub recontacts_7d: u64,
    /// Returning customers served by their last agent.
    pub sticky_hits: u64,
    /// Returning customers served by someone else.
    pub sticky_misses: u64,
    /// Transfers between agents or departments.
    pub transfers: u64,
    /// Conversations handed over to another language team.
    pub language_handovers: u64,
    /// Events or chat messages a customer's stream delivered out of order or again (event
    /// ids and transcript positions must grow, across resumes and failovers too).
    pub ordering_violations: u64,
    /// Customer calls and stream resumes that had to wait for a router (UNAVAILABLE, a
    /// timeout or a broken stream), in wall time.
    pub outages: Outages,
    /// Agents' logins after their desktop stream broke (on the next agent-node).
    pub agent_relogins: u64,
    /// Explanatory counters (not part of the JSON).
    #[serde(skip)]
    pub diagnostics: Diagnostics,
    /// The server's own counters at the end of the run, for comparison (not in the JSON).
    #[serde(skip)]
    pub server: Option<Counters>,
}

impl Report {
    /// Returns the names and values of the counters that must be zero in a correct run.
    pub fn violations(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("lost_conversations", self.lost_conversations),
            ("duplicate_assignments", self.duplicate_assignments),
            ("capacity_violations", self.capacity_violations),
            ("skill_violations", self.skill_violations),
            ("messages_lost", self.messages_lost),
            ("messages_duplicated", self.diagnostics.messages_duplicated),
            ("duplicate_events", self.diagnostics.duplicate_events),
            ("ordering_violations", self.ordering_violations),
        ]
    }

    /// Returns true when every invariant held.
    pub fn is_clean(&self) -> bool {
        self.violations().iter().all(|(_, v)| *v == 0)
    }

    /// Returns the report as a human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<28} {value:>12}");
        };
        row(
            "conversations started",
            self.conversations_started.to_string(),
        );
        row("  completed", self.conversations_completed.to_string());
        row("  abandoned", self.conversations_abandoned.to_string());
        row("  offline", self.conversations_offline.to_string());
        row("  escalated", self.conversations_escalated.to_string());
        row("  open", self.conversations_open.to_string());
        row("ASA (sim s)", format!("{:.1}", self.asa_seconds));
        row(
            "service level 20 s",
            format!("{:.1} %", self.service_level_20s * 100.0),
        );
        row("AHT (sim s)", format!("{:.1}", self.aht_seconds));
        row(
            "CSAT good / bad",
            format!("{} / {}", self.csat_good, self.csat_bad),
        );
        row("re-contacts 7 d", self.recontacts_7d.to_string());
        row(
            "sticky hits / misses",
            format!("{} / {}", self.sticky_hits, self.sticky_misses),
        );
        row("transfers", self.transfers.to_string());
        row("language handovers", self.language_handovers.to_string());
        let d = &self.diagnostics;
        row(
            "transfers asked (ref/no acc)",
            format!(
                "{} ({}/{})",
                d.transfers_requested, d.transfers_refused, d.transfers_not_accepted
            ),
        );
        row(
            "escalations agent/callback",
            format!("{} / {}", d.escalations_requested, d.callbacks_requested),
        );
        row("offline messages left", d.offline_messages_left.to_string());
        row("follow-ups refused", d.follow_ups_refused.to_string());
        row(
            "busy / offline notices",
            format!("{} / {}", d.busy_notices, d.offline_notices),
        );
        row(
            "canned lookups (empty)",
            format!("{} ({})", d.canned_lookups, d.canned_empty),
        );
        row("notes added", d.notes_added.to_string());
        row(
            "offers transferred/fallback",
            format!("{} / {}", d.offers_transferred, d.offers_other_language),
        );
        row("agents wound down", d.agents_wound_down.to_string());
        if d.offers_off_shift > 0 {
            row("offers off shift", d.offers_off_shift.to_string());
        }
        row("messages sent", self.messages_sent.to_string());
        row("messages delivered", self.messages_delivered.to_string());
        row(
            "offers (declined/ignored)",
            format!("{} ({}/{})", d.offers, d.offers_declined, d.offers_ignored),
        );
        row("offers revoked", d.offers_revoked.to_string());
        row("requeues", d.requeues.to_string());
        row(
            "stream resumes",
            format!("{} + {}", d.stream_resumes, d.stream_reconnects),
        );
        row(
            "agent errors / set away",
            format!("{} / {}", d.agent_errors, d.agents_set_away),
        );
        row("start failures", d.start_failures.to_string());
        if d.unknown_messages
            + d.unknown_conversations
            + d.closed_event_missing
            + d.desk_end_missing
            + d.checkout_misrouted
            > 0
        {
            row("unknown messages", d.unknown_messages.to_string());
            row(
                "conversations never started",
                d.unknown_conversations.to_string(),
            );
            row("closed event missing", d.closed_event_missing.to_string());
            row("agent never got ended", d.desk_end_missing.to_string());
            row("checkout not in sales", d.checkout_misrouted.to_string());
        }
        if d.router_failovers > 0 {
            row("router failovers", d.router_failovers.to_string());
        }
        if self.outages.count > 0 {
            row(
                "outages (max/p50 ms)",
                format!(
                    "{} ({}/{})",
                    self.outages.count, self.outages.max_ms, self.outages.p50_ms
                ),
            );
        }
        if self.agent_relogins > 0 {
            row("agent re-logins", self.agent_relogins.to_string());
        }
        if let Some(c) = &self.server {
            let _ = writeln!(out, "  server counters (for comparison):");
            let _ = writeln!(
                out,
                "    started {} completed {} abandoned {} offline {} escalated {} open {}; sticky {}/{}; CSAT {}/{}; offers {} (accepted {}, declined {}, timed out {}); transfers {} handovers {} recontacts {}",
                c.conversations_started, c.conversations_completed, c.conversations_abandoned,
                c.conversations_offline, c.conversations_escalated,
                c.conversations_open, c.sticky_hits, c.sticky_misses, c.csat_good, c.csat_bad,
                c.offers, c.offers_accepted, c.offers_declined, c.offers_timed_out,
                c.transfers, c.language_handovers, c.recontacts
            );
        }
        let _ = writeln!(out, "  invariant checks:");
        for (name, value) in self.violations() {
            let verdict = if value == 0 {
                "ok".to_string()
            } else {
                format!("FAILED ({value})")
            };
            let _ = writeln!(out, "    {name:<26} {verdict:>12}");
        }
        out
    }
}

/// Returns true when an acknowledged customer message had to reach an agent: the
/// conversation was assigned, the last holder's view is complete (it received `ended`), and
/// the acknowledgement came before the agent asked to close (or escalated). When the last
/// holder's `ended` was a transfer that nobody took over (the customer left the queue), only
/// messages acknowledged before that transfer was asked for had to arrive; after a transfer
/// that was taken over, the next agent's transcript carries the earlier messages.
fn customer_message_expected(r: &ConvRecord, sent_at: Option<std::time::Instant>) -> bool {
    let Some(sent_at) = sent_at else { return false };
    if r.desk_agents.is_empty() || !r.desk_ended {
        return false;
    }
    if r.last_end == Some(ConversationOutcome::Transferred) {
        return r.last_transfer_at.is_some_and(|t| sent_at < t);
    }
    r.agent_close_at.is_none_or(|close| sent_at < close)
}

/// How long after an agent's send a refused command makes that send uncertain.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(2);

/// Returns true when an agent message had to reach the customer: the server acknowledged the
/// send and did not answer it with an `error` (after a transfer the previous agent's late
/// sends are refused),
/// the customer's stream ran until `closed`, the message was sent well before the customer
/// asked to close, and the agent got no untied command refusal shortly after sending it.
fn agent_message_expected(r: &ConvRecord, t: &super::ledger::Tracked) -> bool {
    let Some(sent_at) = t.sent_at else {
        return false;
    };
    if t.refused || !t.acked {
        return false;
    }
    if r.agent_refusals
        .iter()
        .any(|at| *at >= sent_at && *at <= sent_at + REFUSAL_WINDOW)
    {
        return false;
    }
    r.saw_closed_event
        && r.customer_close_at
            .is_none_or(|close| sent_at + CLOSE_RACE_MARGIN <= close)
}

/// Returns the report for what the ledger recorded, with `service_level` as the threshold.
pub fn aggregate(ledger: &Ledger, service_level: Duration) -> Report {
    let mut report = Report {
        conversations_started: ledger.convs.values().filter(|r| r.started).count() as u64,
        duplicate_assignments: ledger.duplicate_assignments,
        capacity_violations: ledger.capacity_violations,
        skill_violations: ledger.skill_violations,
        recontacts_7d: ledger.recontacts_7d,
        ordering_violations: ledger.diag.duplicate_events + ledger.diag.messages_out_of_order,
        agent_relogins: ledger.diag.agent_relogins,
        diagnostics: ledger.diag.clone(),
        ..Report::default()
    };
    let threshold_ms = service_level.as_millis() as i64;
    let (mut waits, mut answered_in_time, mut sl_base) = (Vec::new(), 0u64, 0u64);
    let mut handles = Vec::new();
    for r in ledger.convs.values() {
        if !r.started {
            // Seen by agents only: its start response never reached the customer.
            report.diagnostics.unknown_conversations += 1;
            continue;
        }
        tracing::debug!(
            customer_id = %r.customer_id,
            language = %r.language,
            department = %r.department,
            outcome = ?r.outcome,
            wait_s = r.assigned_ms.or(r.closed_ms).map(|t| (t - r.started_ms) / 1000),
            agents = ?r.desk_agents,
            customer_saw = ?r.customer_agents,
            sticky = ?r.sticky_agent,
            closed_by_customer = r.customer_close_at.is_some(),
            closed_by_agent = r.agent_close_at.is_some(),
            desk_ended = r.desk_ended,
            started_ms = r.started_ms,
            closed_ms = ?r.closed_ms,
            "conversation summary"
        );
        if r.is_final() {
            match r.outcome {
                Some(ConversationOutcome::Completed) => report.conversations_completed += 1,
                Some(ConversationOutcome::Abandoned) => report.conversations_abandoned += 1,
                Some(ConversationOutcome::Offline) => report.conversations_offline += 1,
                Some(ConversationOutcome::Escalated) => report.conversations_escalated += 1,
                _ => {}
            }
        } else {
            report.conversations_open += 1;
            report.lost_conversations += 1;
        }
        if assignment_views_disagree(r) {
            report.duplicate_assignments += 1;
            tracing::warn!(customer_saw = ?r.customer_agents, agents_got = ?r.desk_agents, outcome = ?r.outcome, "customer and agents disagree on who served a conversation");
        }
        if r.saw_closed_event && !r.desk_agents.is_empty() && !r.desk_ended {
            report.diagnostics.desk_end_missing += 1;
        }
        if !r.saw_closed_event && r.outcome.is_some() {
            report.diagnostics.closed_event_missing += 1;
        }
        if let Some(assigned) = r.assigned_ms {
            let wait = (assigned - r.started_ms).max(0);
            waits.push(wait as f64 / 1000.0);
            sl_base += 1;
            if wait <= threshold_ms {
                answered_in_time += 1;
            }
            if let (Some(ConversationOutcome::Completed), Some(closed)) = (r.outcome, r.closed_ms) {
                handles.push((closed - assigned).max(0) as f64 / 1000.0);
            }
            if let (Some(sticky), Some(first)) = (&r.sticky_agent, r.customer_agents.first()) {
                if sticky == first {
                    report.sticky_hits += 1;
                } else {
                    report.sticky_misses += 1;
                }
            }
        } else if r.outcome == Some(ConversationOutcome::Abandoned)
            && r.closed_ms.is_some_and(|c| c - r.started_ms > threshold_ms)
        {
            sl_base += 1;
        }
        report.transfers += r.transfers_seen;
        report.language_handovers += r.handovers_seen;
        match r.rating {
            Some(true) => report.csat_good += 1,
            Some(false) => report.csat_bad += 1,
            None => {}
        }
        for (id, t) in &r.customer_msgs {
            if count_message(
                &mut report,
                t.sent_at.is_some(),
                t.seen,
                customer_message_expected(r, t.sent_at),
            ) {
                warn_lost("customer → agent", id, t, r);
            }
        }
        for (id, t) in &r.agent_msgs {
            if count_message(
                &mut report,
                t.sent_at.is_some(),
                t.seen,
                agent_message_expected(r, t),
            ) {
                warn_lost("agent → customer", id, t, r);
            }
        }
    }
    report.asa_seconds = mean(&waits);
    report.aht_seconds = mean(&handles);
    report.service_level_20s = if sl_base == 0 {
        0.0
    } else {
        answered_in_time as f64 / sl_base as f64
    };
    report
}

/// Counts one message; returns true when it was lost.
fn count_message(report: &mut Report, sent: bool, seen: u32, expected: bool) -> bool {
    if sent {
        report.messages_sent += 1;
    }
    if seen > 0 {
        report.messages_delivered += 1;
    } else if sent && expected {
        report.messages_lost += 1;
        return true;
    }
    false
}

fn warn_lost(direction: &str, message_id: &str, t: &super::ledger::Tracked, r: &ConvRecord) {
    let gap = |close: Option<std::time::Instant>| {
        close.zip(t.sent_at).map(|(c, s)| {
            if c >= s {
                format!("{} ms before", (c - s).as_millis())
            } else {
                format!("{} ms after", (s - c).as_millis())
            }
        })
    };
    tracing::warn!(
        direction,
        message_id,
        outcome = ?r.outcome,
        agents = ?r.desk_agents,
        agent_close = ?gap(r.agent_close_at),
        customer_close = ?gap(r.customer_close_at),
        "acknowledged message never seen by the other side"
    );
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::ledger::TransferTarget;
    use super::*;

    const SL: Duration = Duration::from_secs(20);

    fn served(l: &mut Ledger, id: &str, agent: &str, wait_ms: i64, handle_ms: i64) {
        l.started(id, &format!("cust-{id}"), "Anna", "it", "sales", 0, None);
        l.desk_assigned(id, agent);
        l.customer_assigned(id, agent, wait_ms);
        l.customer_message_acked(id, &format!("{id}:c1"));
        l.agent_saw_customer_message(id, agent, &format!("{id}:c1"), "hello");
        l.agent_message_sent(id, &format!("{id}:a1"));
        l.customer_saw_agent_message(id, &format!("{id}:a1"));
        l.agent_close_requested(id);
        l.desk_released(id, agent, Some(ConversationOutcome::Completed));
        l.customer_closed(
            id,
            ConversationOutcome::Completed,
            wait_ms + handle_ms,
            true,
        );
        l.rated(id, true);
        l.customer_done(id);
    }

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let value = serde_json::to_value(Report::default()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut expected = vec![
            "conversations_started",
            "conversations_completed",
            "conversations_abandoned",
            "conversations_offline",
            "conversations_escalated",
            "conversations_open",
            "lost_conversations",
            "duplicate_assignments",
            "capacity_violations",
            "skill_violations",
            "messages_sent",
            "messages_delivered",
            "messages_lost",
            "asa_seconds",
            "service_level_20s",
            "aht_seconds",
            "csat_good",
            "csat_bad",
            "recontacts_7d",
            "sticky_hits",
            "sticky_misses",
            "ordering_violations",
            "outages",
            "agent_relogins",
            "transfers",
            "language_handovers",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert!(value["asa_seconds"].is_f64());
        assert!(value["csat_good"].is_u64());
    }

    #[test]
    fn outcomes_add_up_and_service_figures_are_right() {
        let mut l = Ledger::default();
        served(&mut l, "a", "giulia", 10_000, 200_000);
        served(&mut l, "b", "marco", 30_000, 400_000);
        // Abandoned after 50 s: counts against the service level.
        l.started("c", "cust-c", "Bo", "en", "support", 0, Some("hi".into()));
        l.customer_close_requested("c");
        l.customer_closed("c", ConversationOutcome::Abandoned, 50_000, true);
        // Never finished: open and lost.
        l.started("d", "cust-d", "Cy", "it", "billing", 0, None);
        let r = aggregate(&l, SL);
        assert_eq!(r.conversations_started, 4);
        assert_eq!(r.conversations_completed, 2);
        assert_eq!(r.conversations_abandoned, 1);
        assert_eq!(r.conversations_open, 1);
        assert_eq!(r.lost_conversations, 1);
        let sum = r.conversations_completed
            + r.conversations_abandoned
            + r.conversations_offline
            + r.conversations_escalated
            + r.conversations_open;
        assert_eq!(sum, r.conversations_started);
        assert!((r.asa_seconds - 20.0).abs() < 1e-9);
        assert!((r.aht_seconds - 300.0).abs() < 1e-9);
        assert!((r.service_level_20s - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!((r.csat_good, r.csat_bad), (2, 0));
        // Abandoned conversation's first message was never expected at an agent.
        assert_eq!(r.messages_sent, 5);
        assert_eq!(r.messages_delivered, 4);
        assert_eq!(r.messages_lost, 0);
        assert!(!r.is_clean(), "a lost conversation fails the run");
    }

    #[test]
    fn unseen_acknowledged_messages_are_lost_unless_they_raced_a_close() {
        let mut l = Ledger::default();
        l.started("a", "x", "Anna", "it", "sales", 0, None);
        l.desk_assigned("a", "giulia");
        l.customer_assigned("a", "giulia", 1_000);
        l.customer_message_acked("a", "a:c1"); // before the agent's close: must arrive
        l.agent_message_sent("a", "a:a1"); // long before the customer's close: must arrive
        l.agent_message_acked("a", "a:a1");
        l.convs
            .get_mut("a")
            .unwrap()
            .agent_msgs
            .get_mut("a:a1")
            .unwrap()
            .sent_at = Some(Instant::now() - Duration::from_secs(5));
        l.customer_close_requested("a");
        l.agent_message_sent("a", "a:a2"); // after the customer's close: race, not expected
        l.agent_message_acked("a", "a:a2");
        // Sent long before the close, but its desk stream broke before the answer (the
        // agent-node killed): never acknowledged, so not expected.
        l.agent_message_sent("a", "a:a3");
        l.convs
            .get_mut("a")
            .unwrap()
            .agent_msgs
            .get_mut("a:a3")
            .unwrap()
            .sent_at = Some(Instant::now() - Duration::from_secs(5));
        l.agent_close_requested("a");
        l.customer_message_acked("a", "a:c2"); // after the agent's close: not expected
        l.desk_released("a", "giulia", Some(ConversationOutcome::Completed));
        l.customer_closed("a", ConversationOutcome::Completed, 9_000, true);
        let r = aggregate(&l, SL);
        assert_eq!(r.messages_sent, 5);
        assert_eq!(r.messages_delivered, 0);
        assert_eq!(r.messages_lost, 2);
        // A refused agent command right after the send makes that send uncertain.
        l.convs
            .get_mut("a")
            .unwrap()
            .agent_refusals
            .push(Instant::now() - Duration::from_secs(4));
        let r = aggregate(&l, SL);
        assert_eq!(r.messages_lost, 1);
    }

    #[test]
    fn sticky_hits_and_misses_and_disagreeing_views() {
        let mut l = Ledger::default();
        served(&mut l, "a", "giulia", 1_000, 10_000);
        // The same customer comes back and gets giulia again: a hit.
        l.started("b", "cust-a", "Anna", "it", "sales", 20_000, None);
        l.desk_assigned("b", "giulia");
        l.customer_assigned("b", "giulia", 21_000);
        l.desk_released("b", "giulia", Some(ConversationOutcome::Completed));
        l.customer_closed("b", ConversationOutcome::Completed, 30_000, true);
        l.customer_done("b");
        // Again, but served by marco while the customer was told it was elena: a miss and
        // a disagreement.
        l.started("c", "cust-a", "Anna", "it", "sales", 40_000, None);
        l.desk_assigned("c", "marco");
        l.customer_assigned("c", "elena", 41_000);
        l.desk_released("c", "marco", Some(ConversationOutcome::Completed));
        l.customer_closed("c", ConversationOutcome::Completed, 50_000, true);
        let r = aggregate(&l, SL);
        assert_eq!((r.sticky_hits, r.sticky_misses), (1, 1));
        assert_eq!(r.recontacts_7d, 2);
        assert_eq!(r.duplicate_assignments, 1);
        assert!(r.violations().contains(&("duplicate_assignments", 1)));
    }

    #[test]
    fn transfers_handovers_and_follow_ups_are_counted_and_add_up() {
        let mut l = Ledger::default();
        // Served by giulia, transferred cold to billing, served there by chiara.
        l.started("t", "cust-t", "Anna", "it", "sales", 0, None);
        l.desk_assigned("t", "giulia");
        l.customer_assigned("t", "giulia", 1_000);
        l.customer_message_acked("t", "t:c1");
        l.agent_saw_customer_message("t", "giulia", "t:c1", "x");
        l.transfer_requested(
            "t",
            "giulia",
            TransferTarget::Department("billing".into()),
            false,
        );
        l.customer_transferred("t", false);
        assert!(!l.convs["t"].with_agent);
        l.desk_released("t", "giulia", Some(ConversationOutcome::Transferred));
        // Written while queued again: the next agent's transcript carries it.
        l.customer_message_acked("t", "t:c2");
        l.desk_assigned("t", "chiara");
        l.customer_assigned("t", "chiara", 90_000);
        l.agent_saw_customer_message("t", "chiara", "t:c1", "x");
        l.agent_saw_customer_message("t", "chiara", "t:c2", "y");
        // giulia's late send was refused: not expected at the customer.
        l.agent_message_sent("t", "t:a9");
        l.agent_message_refused("t", "t:a9");
        l.agent_close_requested("t");
        l.desk_released("t", "chiara", Some(ConversationOutcome::Completed));
        l.customer_closed("t", ConversationOutcome::Completed, 200_000, true);
        // Handed over to English, then a callback while waiting.
        l.started("h", "cust-h", "Bo", "it", "support", 0, None);
        l.customer_handed_over("h");
        l.customer_close_requested("h");
        l.customer_closed("h", ConversationOutcome::Escalated, 50_000, true);
        // An offline message.
        l.started("o", "cust-o", "Cy", "it", "billing", 0, None);
        l.customer_closed("o", ConversationOutcome::Offline, 20_000, true);
        let r = aggregate(&l, SL);
        assert_eq!((r.transfers, r.language_handovers), (1, 1));
        assert_eq!((r.conversations_escalated, r.conversations_offline), (1, 1));
        assert_eq!(
            r.conversations_completed
                + r.conversations_abandoned
                + r.conversations_offline
                + r.conversations_escalated
                + r.conversations_open,
            r.conversations_started
        );
        assert_eq!(r.duplicate_assignments, 0);
        assert_eq!(r.messages_lost, 0);
        assert_eq!(r.diagnostics.messages_duplicated, 0);
        assert!(r.is_clean());
    }

    #[test]
    fn after_a_transfer_nobody_took_over_only_earlier_messages_were_due() {
        let mut l = Ledger::default();
        l.started("t", "cust-t", "Anna", "it", "sales", 0, None);
        l.desk_assigned("t", "giulia");
        l.customer_assigned("t", "giulia", 1_000);
        l.customer_message_acked("t", "t:c1"); // before the transfer: due at giulia
        l.convs
            .get_mut("t")
            .unwrap()
            .customer_msgs
            .get_mut("t:c1")
            .unwrap()
            .sent_at = Some(Instant::now() - Duration::from_secs(1));
        l.transfer_requested(
            "t",
            "giulia",
            TransferTarget::Department("billing".into()),
            false,
        );
        l.customer_transferred("t", false);
        l.desk_released("t", "giulia", Some(ConversationOutcome::Transferred));
        l.customer_message_acked("t", "t:c2"); // queued again, then the customer left
        l.customer_close_requested("t");
        l.customer_closed("t", ConversationOutcome::Abandoned, 60_000, true);
        let r = aggregate(&l, SL);
        assert_eq!(r.messages_lost, 1, "t:c1 never reached giulia");
        assert_eq!(r.messages_sent, 2);
    }

    #[test]
    fn outages_summarise_intervals() {
        let o = Outages::from_intervals(vec![(3000, 3500), (1000, 1100), (2000, 4000)]);
        assert_eq!(o.count, 3);
        assert_eq!(o.max_ms, 2000);
        assert_eq!(o.p50_ms, 500);
        assert_eq!(o.intervals, vec![[1000, 1100], [2000, 4000], [3000, 3500]]);
        assert_eq!(Outages::from_intervals(Vec::new()), Outages::default());
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["intervals"][0], serde_json::json!([1000, 1100]));
    }
}
