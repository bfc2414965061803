//! Metrics of the agent-node, declared in one place (names `centralino_agent_*`).

use metrics::{counter, describe_counter, describe_gauge, gauge};

use centralino_base::config::TeamConfig;
use centralino_link::OfferAnswer;

/// Describes every agent-node metric once per process.
pub fn describe() {
    centralino_base::metrics::describe();
    describe_gauge!(
        "centralino_agent_sessions_connected",
        "Agent desktop streams connected, by team"
    );
    describe_counter!(
        "centralino_agent_offers_total",
        "Offers pushed to agents, by department"
    );
    describe_counter!(
        "centralino_agent_offer_answers_total",
        "Offers ended, by answer (accepted, declined, timed_out, revoked)"
    );
    describe_counter!(
        "centralino_agent_desktop_events_dropped_total",
        "Events not delivered because a desktop stream was full"
    );
    describe_counter!(
        "centralino_agent_typing_dropped_total",
        "Agents' typing indicators dropped on the agent-node, over about 2 per second per conversation (acknowledged, not forwarded)"
    );
    describe_counter!(
        "centralino_agent_desktop_cuts_total",
        "Desktop streams cut because the desktop did not keep up (it logs in again to resume)"
    );
    describe_counter!(
        "centralino_agent_logins_total",
        "Agent logins, by result (ok, denied)"
    );
    describe_counter!(
        "centralino_agent_directory_changes_total",
        "Changes of the agent directory applied on this node, by kind (agent, team, department, canned_response)"
    );
    describe_counter!(
        "centralino_agent_login_refusals_total",
        "Logins refused, by reason (bad_credentials, throttled: after failures, rate_limited: too many from one address, busy: too many waiting for a password check, disabled: the directory disables the agent)"
    );
    describe_counter!(
        "centralino_agent_fenced_refusals_total",
        "Router calls (reservations, deliveries, typing, status) refused because this agent-node was fenced: its lease not surely alive, or its agents not yet claimed again under a new lease"
    );
    describe_counter!(
        "centralino_agent_claims_rebound_total",
        "Agents' login claims after a lost lease, by result (bound: bound to the new lease; evicted: another agent-node holds it now, the agent's desktop logs in again)"
    );
}

/// Makes the agent-node's labelled series visible from the start (at zero): per team, per
/// department (when the caller knows them: a standalone node does, an agent-node's file
/// section does not), per login result and offer answer.
pub fn zero(teams: &[TeamConfig], departments: &[String]) {
    centralino_base::metrics::zero();
    for team in teams {
        gauge!("centralino_agent_sessions_connected", "team" => team.name.clone()).increment(0.0);
    }
    for department in departments {
        counter!("centralino_agent_offers_total", "department" => department.clone()).increment(0);
    }
    for result in ["ok", "denied"] {
        counter!("centralino_agent_logins_total", "result" => result).increment(0);
    }
    for reason in [
        "bad_credentials",
        "throttled",
        "rate_limited",
        "busy",
        "disabled",
    ] {
        counter!("centralino_agent_login_refusals_total", "reason" => reason).increment(0);
    }
    for answer in ["accepted", "declined", "timed_out", "revoked"] {
        counter!("centralino_agent_offer_answers_total", "answer" => answer).increment(0);
    }
    counter!("centralino_agent_desktop_events_dropped_total").increment(0);
    counter!("centralino_agent_typing_dropped_total").increment(0);
    counter!("centralino_agent_fenced_refusals_total").increment(0);
    for result in ["bound", "evicted"] {
        counter!("centralino_agent_claims_rebound_total", "result" => result).increment(0);
    }
}

/// A router call refused because the node was fenced.
pub(crate) fn fenced_refusal() {
    counter!("centralino_agent_fenced_refusals_total").increment(1);
}

/// The claims bound again (and the agents evicted) after a lost lease.
pub(crate) fn claims_rebound(bound: usize, evicted: usize) {
    counter!("centralino_agent_claims_rebound_total", "result" => "bound").increment(bound as u64);
    counter!("centralino_agent_claims_rebound_total", "result" => "evicted")
        .increment(evicted as u64);
}

pub(crate) fn agent_logged_in(team: &str, connected: bool) {
    let g = gauge!("centralino_agent_sessions_connected", "team" => team.to_string());
    if connected {
        g.increment(1.0)
    } else {
        g.decrement(1.0)
    }
}

pub(crate) fn login(ok: bool) {
    counter!("centralino_agent_logins_total", "result" => if ok { "ok" } else { "denied" })
        .increment(1);
}

pub(crate) fn login_refused(reason: &'static str) {
    counter!("centralino_agent_login_refusals_total", "reason" => reason).increment(1);
}

pub(crate) fn offer_made(department: &str) {
    counter!("centralino_agent_offers_total", "department" => department.to_string()).increment(1);
}

pub(crate) fn offer_answered(answer: OfferAnswer) {
    let label = match answer {
        OfferAnswer::Accepted => "accepted",
        OfferAnswer::Declined => "declined",
        OfferAnswer::TimedOut => "timed_out",
        OfferAnswer::Revoked => "revoked",
    };
    counter!("centralino_agent_offer_answers_total", "answer" => label).increment(1);
}

/// A desktop stream cut because its reader fell behind.
pub(crate) fn desktop_cut() {
    counter!("centralino_agent_desktop_cuts_total").increment(1);
}

pub(crate) fn desktop_events_dropped() {
    counter!("centralino_agent_desktop_events_dropped_total").increment(1);
}

/// An agent's typing indicator dropped by the rate limit.
pub(crate) fn typing_dropped() {
    counter!("centralino_agent_typing_dropped_total").increment(1);
}

/// Counts a directory change applied on this node.
pub fn directory_change(kind: &'static str) {
    counter!("centralino_agent_directory_changes_total", "kind" => kind).increment(1);
}
