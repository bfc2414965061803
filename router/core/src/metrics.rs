//! Metrics of the router, declared in one place. Names follow
//! `centralino_<subsystem>_<name>_<unit>`; labels are bounded (department, language, team,
//! outcome) and never carry a conversation or customer id.

use std::time::Duration;

use centralino_proto::v1::AgentStatus;
use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

use crate::store::records::ConversationRecord;

/// Histogram buckets for waits and durations (seconds).
pub const WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Returns the wait buckets of `centralino_conversation_wait_seconds`: [`WAIT_BUCKETS`] with
/// the service-level threshold (`routing.service_level_secs`) among them, so that the rules
/// read the share answered in time from the bucket `le` = threshold.
pub fn wait_buckets(service_level_secs: u64) -> Vec<f64> {
    let mut buckets = WAIT_BUCKETS.to_vec();
    let threshold = service_level_secs as f64;
    if !buckets.contains(&threshold) {
        buckets.push(threshold);
        buckets.sort_by(f64::total_cmp);
    }
    buckets
}

/// Histogram buckets for internal latencies (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Histogram buckets for webhook attempts (seconds).
pub const WEBHOOK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Histogram buckets for batch sizes.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Describes every router metric once per process.
pub fn describe() {
    centralino_base::metrics::describe();
    centralino_record::metrics::describe();
    describe_counter!(
        "centralino_admin_auth_refusals_total",
        "Admin API calls refused before authorization, by reason (unknown_token, throttled: too many unknown tokens from one address)"
    );
    describe_counter!(
        "centralino_webhook_deliveries_total",
        "Webhook delivery attempts, by endpoint and outcome (delivered; status: a non-2xx answer; timeout; transport: connect, TLS or HTTP failed)"
    );
    describe_counter!(
        "centralino_webhook_dead_letters_total",
        "Integration events given up for a webhook endpoint after every attempt (logged with their event id), by endpoint"
    );
    describe_histogram!(
        "centralino_webhook_delivery_seconds",
        Unit::Seconds,
        "How long a webhook attempt took, connect to answer, by endpoint"
    );
    describe_gauge!(
        "centralino_webhook_lag_events",
        "Integration events not yet delivered to a webhook endpoint (the outbox's last event id minus the endpoint's cursor), by endpoint; set by the router delivering it"
    );
    describe_gauge!(
        "centralino_webhook_delivering",
        "1 on the router that holds a webhook endpoint's claim and delivers it, 0 elsewhere, by endpoint"
    );
    describe_counter!(
        "centralino_conversation_typing_total",
        "Typing indicators, by side (customer, agent) and outcome (forwarded; rate_limited: dropped, over about 2 per second per conversation and side; no_agent: the customer typed while nobody serves the conversation)"
    );
    describe_counter!(
        "centralino_integration_events_lost_total",
        "Integration events the record refused after every retry (logged with their conversation)"
    );
    describe_counter!(
        "centralino_conversations_started_total",
        "Conversations started, by department and language"
    );
    describe_counter!(
        "centralino_conversations_completed_total",
        "Conversations served and closed, by department and language"
    );
    describe_counter!(
        "centralino_conversations_abandoned_total",
        "Conversations the customer left before an agent answered, by department and language"
    );
    describe_histogram!(
        "centralino_conversation_wait_seconds",
        Unit::Seconds,
        "Wait from start to first assignment (ASA), by department and language"
    );
    describe_histogram!(
        "centralino_conversation_duration_seconds",
        Unit::Seconds,
        "Time from assignment to close, by department"
    );
    describe_gauge!(
        "centralino_routing_service_level_threshold_seconds",
        Unit::Seconds,
        "routing.service_level_secs: a chat answered within it counts for the service level; label threshold is the matching le of centralino_conversation_wait_seconds_bucket"
    );
    describe_gauge!(
        "centralino_queue_depth",
        "Conversations waiting, by department and language"
    );
    describe_gauge!(
        "centralino_queue_oldest_wait_seconds",
        Unit::Seconds,
        "Age of the oldest waiting conversation, by department and language"
    );
    describe_gauge!(
        "centralino_agents",
        "Agents known to the router, by team, status and whether they hold chats"
    );
    describe_counter!(
        "centralino_routing_sticky_total",
        "Sticky routing results for returning customers (hit, miss, timeout)"
    );
    describe_counter!(
        "centralino_routing_reservations_rejected_total",
        "Reservations refused by agent-nodes (stale view), by department"
    );
    describe_counter!(
        "centralino_routing_overflows_total",
        "Conversations moved to another department by a routing step"
    );
    describe_histogram!(
        "centralino_routing_decision_seconds",
        Unit::Seconds,
        "Time to take one routing decision"
    );
    describe_counter!(
        "centralino_csat_ratings_total",
        "Customer ratings, by department and rating (good, bad)"
    );
    describe_counter!(
        "centralino_messages_total",
        "Chat messages relayed, by sender"
    );
    describe_counter!(
        "centralino_stream_overflows_total",
        "Customer event streams cut because the client did not keep up"
    );
    describe_counter!(
        "centralino_limits_refusals_total",
        "Requests refused by a limit (limit: start_addr, start_customer, message_addr, message_conversation, streams_conversation, streams_connection)"
    );
    describe_counter!(
        "centralino_limits_linger_evictions_total",
        "Closed conversations stopped before their rating window ended, to bound the closed conversations kept"
    );
    describe_counter!(
        "centralino_limits_slow_reader_cuts_total",
        "Event streams cut because the reader fell behind (it resumes from its last event)"
    );
    describe_counter!(
        "centralino_limits_idle_expired_total",
        "Queued or offline conversations ended because they stayed idle too long, by state"
    );
    describe_counter!(
        "centralino_conversation_changes_not_applied_total",
        "Conversation changes (messages, closes, ratings, transfers …) whose write failed, so \
         nothing was applied, shown or acknowledged; by reason (full, overloaded, too_large, \
         fenced, closed, backend)"
    );
    describe_counter!(
        "centralino_store_writes_shed_total",
        "Writes refused by group commit (queue full or record too large), by reason"
    );
    describe_counter!(
        "centralino_requests_rejected_total",
        "Requests rejected with an error, by code"
    );
    describe_counter!(
        "centralino_identity_tokens_refused_total",
        "Conversation starts refused for their identity token, by reason"
    );
    describe_histogram!(
        "centralino_store_commit_seconds",
        Unit::Seconds,
        "Duration of one store transaction (group commit)"
    );
    describe_histogram!(
        "centralino_store_batch_ops",
        "Operations per group-commit transaction"
    );
    describe_counter!(
        "centralino_conversations_offline_total",
        "Conversations ended with an offline message, by department and language"
    );
    describe_counter!(
        "centralino_conversations_escalated_total",
        "Conversations escalated to a callback or email, by department and language"
    );
    describe_counter!(
        "centralino_transfers_total",
        "Transfers, by kind (agent, department, language, skill, supervisor)"
    );
    describe_counter!(
        "centralino_language_handovers_total",
        "Queued conversations handed to another language's team at shift end, by from and to"
    );
    describe_counter!(
        "centralino_recontacts_total",
        "Customers coming back within the re-contact window, by department"
    );
    describe_counter!(
        "centralino_busy_notices_total",
        "Customers offered alternatives to a long wait, by department"
    );
    describe_histogram!(
        "centralino_conversation_first_response_seconds",
        Unit::Seconds,
        "Time from assignment to the agent's first message, by department and language"
    );
    describe_gauge!(
        "centralino_agents_on_duty",
        "Agents logged in and on shift, by team"
    );
    describe_gauge!(
        "centralino_agent_occupancy_ratio",
        "Chat slots in use over the capacity of logged-in agents, by team"
    );
    describe_counter!(
        "centralino_agent_duty_seconds_total",
        "Agent time on duty (logged in and on shift), by team, in seconds of the node's clock"
    );
    describe_gauge!(
        "centralino_team_open",
        "1 while the team's schedule says it works, by team"
    );
    describe_gauge!(
        "centralino_cluster_members",
        "Live members of the cluster seen by this node, by role"
    );
    describe_gauge!(
        "centralino_cluster_partitions_owned",
        "Conversation partitions owned by this router"
    );
    describe_gauge!(
        "centralino_cluster_partitions_unowned",
        "Partitions without an owner, as seen by this node"
    );
    describe_counter!(
        "centralino_cluster_claims_total",
        "Partitions claimed by this router"
    );
    describe_counter!(
        "centralino_cluster_handoffs_total",
        "Partitions handed to another router (drain)"
    );
    describe_counter!(
        "centralino_cluster_forwarded_requests_total",
        "Requests forwarded to the router owning the conversation"
    );
    describe_counter!(
        "centralino_cluster_snapshot_routers_missing_total",
        "Routers that did not answer an admin snapshot in time (counted per snapshot)"
    );
    describe_counter!(
        "centralino_cluster_fenced_writes_total",
        "Writes refused because this router no longer owns the partition"
    );
    describe_counter!(
        "centralino_cluster_agent_claim_refusals_total",
        "Agent-node calls refused (link) and reservations not sent (reserve) because that agent-node does not hold the agent's login claim"
    );
    describe_histogram!(
        "centralino_store_request_seconds",
        Unit::Seconds,
        "Duration of store requests, by operation"
    );
    describe_counter!(
        "centralino_store_errors_total",
        "Failed store requests, by operation"
    );
    describe_counter!(
        "centralino_store_retries_total",
        "etcd requests retried on another member or after a pause, by operation"
    );
    describe_gauge!(
        "centralino_conversations_live",
        "Conversations with a live actor on this node"
    );
    describe_counter!(
        "centralino_archive_writes_total",
        "Writes to the record's archive of closed conversations, by operation (archive, rating, retire) and result (ok, error)"
    );
    describe_counter!(
        "centralino_archive_retention_deleted_total",
        "Archived conversations deleted by the retention loop"
    );
    describe_counter!(
        "centralino_archive_erasures_total",
        "Customers erased on request (GDPR)"
    );
}

pub(crate) fn conversation_started(department: &str, language: &str) {
    counter!("centralino_conversations_started_total", "department" => department.to_string(), "language" => language.to_string()).increment(1);
}

pub(crate) fn conversation_completed(rec: &ConversationRecord) {
    counter!("centralino_conversations_completed_total", "department" => rec.department.clone(), "language" => rec.language.clone()).increment(1);
    if let (Some(assigned), Some(closed)) = (rec.assigned_at_ms, rec.closed_at_ms) {
        histogram!("centralino_conversation_duration_seconds", "department" => rec.department.clone())
            .record((closed - assigned).max(0) as f64 / 1000.0);
    }
}

pub(crate) fn conversation_abandoned(rec: &ConversationRecord) {
    counter!("centralino_conversations_abandoned_total", "department" => rec.department.clone(), "language" => rec.language.clone()).increment(1);
}

pub(crate) fn conversation_assigned(rec: &ConversationRecord, now_ms: i64) {
    histogram!("centralino_conversation_wait_seconds", "department" => rec.department.clone(), "language" => rec.language.clone())
        .record((now_ms - rec.started_at_ms).max(0) as f64 / 1000.0);
}

pub(crate) fn queue_state(department: &str, language: &str, depth: usize, oldest_wait_secs: f64) {
    gauge!("centralino_queue_depth", "department" => department.to_string(), "language" => language.to_string())
        .set(depth as f64);
    gauge!("centralino_queue_oldest_wait_seconds", "department" => department.to_string(), "language" => language.to_string())
        .set(oldest_wait_secs);
}

pub(crate) fn first_response(rec: &ConversationRecord, secs: f64) {
    histogram!("centralino_conversation_first_response_seconds", "department" => rec.department.clone(), "language" => rec.language.clone())
        .record(secs);
}

/// Per-team agent aggregates.
pub(crate) fn team_agents(team: &str, on_duty: i64, load: i64, capacity: i64) {
    gauge!("centralino_agents_on_duty", "team" => team.to_string()).set(on_duty.max(0) as f64);
    let ratio = if capacity > 0 {
        load.max(0) as f64 / capacity as f64
    } else {
        0.0
    };
    gauge!("centralino_agent_occupancy_ratio", "team" => team.to_string()).set(ratio);
}

pub(crate) fn team_open(team: &str, open: bool, duty_secs: f64) {
    gauge!("centralino_team_open", "team" => team.to_string()).set(if open { 1.0 } else { 0.0 });
    if duty_secs > 0.0 {
        counter!("centralino_agent_duty_seconds_total", "team" => team.to_string())
            .increment(duty_secs.round() as u64);
    }
}

/// Cluster view of a standalone node: one router and one agent-node owning every partition.
pub fn standalone_cluster(partitions: u32) {
    gauge!("centralino_cluster_members", "role" => "router").set(1.0);
    gauge!("centralino_cluster_members", "role" => "agent_node").set(1.0);
    gauge!("centralino_cluster_partitions_owned").set(partitions as f64);
    gauge!("centralino_cluster_partitions_unowned").set(0.0);
    for name in [
        "centralino_cluster_claims_total",
        "centralino_cluster_handoffs_total",
        "centralino_cluster_forwarded_requests_total",
        "centralino_cluster_snapshot_routers_missing_total",
        "centralino_cluster_fenced_writes_total",
    ] {
        counter!(name).increment(0);
    }
    for call in ["link", "reserve"] {
        counter!("centralino_cluster_agent_claim_refusals_total", "call" => call).increment(0);
    }
}

/// Cluster mode: the series start at zero.
pub fn cluster_start() {
    gauge!("centralino_cluster_partitions_owned").set(0.0);
    gauge!("centralino_cluster_partitions_unowned")
        .set(f64::from(crate::store::records::PARTITIONS));
    for role in ["router", "agent_node"] {
        gauge!("centralino_cluster_members", "role" => role).set(0.0);
    }
    for name in [
        "centralino_cluster_claims_total",
        "centralino_cluster_handoffs_total",
        "centralino_cluster_forwarded_requests_total",
        "centralino_cluster_snapshot_routers_missing_total",
        "centralino_cluster_fenced_writes_total",
    ] {
        counter!(name).increment(0);
    }
    for call in ["link", "reserve"] {
        counter!("centralino_cluster_agent_claim_refusals_total", "call" => call).increment(0);
    }
    for op in [
        "etcd_get",
        "etcd_put",
        "etcd_txn",
        "etcd_lease",
        "etcd_watch",
    ] {
        counter!("centralino_store_retries_total", "op" => op).increment(0);
        counter!("centralino_store_errors_total", "op" => op).increment(0);
    }
}

/// Partitions this router serves and partitions without an active owner.
pub fn cluster_partitions(owned: usize, unowned: usize) {
    gauge!("centralino_cluster_partitions_owned").set(owned as f64);
    gauge!("centralino_cluster_partitions_unowned").set(unowned as f64);
}

/// Live members by role.
pub fn cluster_members(routers: usize, agent_nodes: usize) {
    gauge!("centralino_cluster_members", "role" => "router").set(routers as f64);
    gauge!("centralino_cluster_members", "role" => "agent_node").set(agent_nodes as f64);
}

/// An integration event the record did not take after every retry.
pub fn integration_event_lost() {
    counter!("centralino_integration_events_lost_total").increment(1);
}

/// A webhook attempt's outcome (`delivered`, or an [`crate::webhooks::client::AttemptError`]
/// label) and duration.
pub(crate) fn webhook_attempt(endpoint: &str, outcome: &'static str, secs: f64) {
    counter!("centralino_webhook_deliveries_total", "endpoint" => endpoint.to_string(), "outcome" => outcome)
        .increment(1);
    histogram!("centralino_webhook_delivery_seconds", "endpoint" => endpoint.to_string())
        .record(secs);
}

/// An event given up for a webhook endpoint.
pub(crate) fn webhook_dead_letter(endpoint: &str) {
    counter!("centralino_webhook_dead_letters_total", "endpoint" => endpoint.to_string())
        .increment(1);
}

/// Events not yet delivered to a webhook endpoint.
pub(crate) fn webhook_lag(endpoint: &str, events: i64) {
    gauge!("centralino_webhook_lag_events", "endpoint" => endpoint.to_string())
        .set(events.max(0) as f64);
}

/// Whether this router delivers a webhook endpoint now.
pub(crate) fn webhook_delivering(endpoint: &str, delivering: bool) {
    gauge!("centralino_webhook_delivering", "endpoint" => endpoint.to_string())
        .set(if delivering { 1.0 } else { 0.0 });
}

/// A partition claimed.
pub fn cluster_claim() {
    counter!("centralino_cluster_claims_total").increment(1);
}

/// A partition handed over to its next owner.
pub fn cluster_handoff() {
    counter!("centralino_cluster_handoffs_total").increment(1);
}

/// An agent-node call refused, or a reservation not sent (`call`), because that node does
/// not hold the agent's login claim.
pub fn cluster_claim_refusal(call: &'static str) {
    counter!("centralino_cluster_agent_claim_refusals_total", "call" => call).increment(1);
}

/// A request forwarded to the owner of its partition.
pub fn cluster_forwarded() {
    counter!("centralino_cluster_forwarded_requests_total").increment(1);
}

/// An admin snapshot went without the parts of `missing` routers.
pub fn cluster_snapshot_missing(missing: usize) {
    counter!("centralino_cluster_snapshot_routers_missing_total").increment(missing as u64);
}

pub(crate) fn store_request(op: &'static str, secs: f64, ok: bool) {
    histogram!("centralino_store_request_seconds", "op" => op).record(secs);
    let errors = counter!("centralino_store_errors_total", "op" => op);
    errors.increment(if ok { 0 } else { 1 });
}

/// Makes the labelled series of the configuration visible from the start (at zero), so
/// dashboards and alerts see them before the first event: counters and gauges at 0,
/// histograms registered without a sample (their buckets, sum and count at 0). Exports the
/// service-level threshold.
pub fn zero(config: &crate::config::Config) {
    centralino_base::metrics::zero();
    for (side, outcome) in [
        ("customer", "forwarded"),
        ("customer", "rate_limited"),
        ("customer", "no_agent"),
        ("agent", "forwarded"),
        ("agent", "rate_limited"),
    ] {
        typing_counter(side, outcome).increment(0);
    }
    for reason in ["unknown_token", "throttled"] {
        counter!("centralino_admin_auth_refusals_total", "reason" => reason).increment(0);
    }
    let threshold = config.routing.service_level_secs as f64;
    // The label is written as the exporter writes the `le` of that bucket ("20", "30").
    gauge!("centralino_routing_service_level_threshold_seconds", "threshold" => threshold.to_string())
        .set(threshold);
    // A histogram handle registers its series; dropping it unused records nothing.
    let _ = histogram!("centralino_routing_decision_seconds");
    let _ = histogram!("centralino_store_commit_seconds");
    let _ = histogram!("centralino_store_batch_ops");
    let languages = config.languages();
    for d in &config.departments {
        let dept = d.name.clone();
        let _ =
            histogram!("centralino_conversation_duration_seconds", "department" => dept.clone());
        for l in &languages {
            let lang = l.to_string();
            let _ = histogram!("centralino_conversation_wait_seconds", "department" => dept.clone(), "language" => lang.clone());
            let _ = histogram!("centralino_conversation_first_response_seconds", "department" => dept.clone(), "language" => lang.clone());
            for name in [
                "centralino_conversations_started_total",
                "centralino_conversations_completed_total",
                "centralino_conversations_abandoned_total",
                "centralino_conversations_offline_total",
                "centralino_conversations_escalated_total",
            ] {
                counter!(name, "department" => dept.clone(), "language" => lang.clone())
                    .increment(0);
            }
            queue_state(&dept, &lang, 0, 0.0);
        }
        for rating in ["good", "bad"] {
            counter!("centralino_csat_ratings_total", "department" => dept.clone(), "rating" => rating).increment(0);
        }
        for name in [
            "centralino_recontacts_total",
            "centralino_busy_notices_total",
            "centralino_routing_reservations_rejected_total",
        ] {
            counter!(name, "department" => dept.clone()).increment(0);
        }
    }
    for hook in &config.webhooks {
        let endpoint = hook.name.clone();
        for outcome in ["delivered", "status", "timeout", "transport"] {
            counter!("centralino_webhook_deliveries_total", "endpoint" => endpoint.clone(), "outcome" => outcome)
                .increment(0);
        }
        counter!("centralino_webhook_dead_letters_total", "endpoint" => endpoint.clone())
            .increment(0);
        let _ = histogram!("centralino_webhook_delivery_seconds", "endpoint" => endpoint.clone());
        webhook_delivering(&endpoint, false);
    }
    for kind in ["agent", "department", "language", "skill", "supervisor"] {
        counter!("centralino_transfers_total", "kind" => kind).increment(0);
    }
    for (from, chain) in &config.languages.fallback {
        for to in chain {
            counter!("centralino_language_handovers_total", "from" => from.clone(), "to" => to.clone()).increment(0);
        }
    }
    for result in ["hit", "miss", "timeout"] {
        counter!("centralino_routing_sticky_total", "result" => result).increment(0);
    }
    for team in &config.teams {
        team_agents(&team.name, 0, 0, 0);
        counter!("centralino_agent_duty_seconds_total", "team" => team.name.clone()).increment(0);
        for status in STATUS_LABELS {
            for busy in ["true", "false"] {
                gauge!("centralino_agents", "team" => team.name.clone(), "status" => status, "busy" => busy)
                    .increment(0.0);
            }
        }
    }
    for d in &config.departments {
        for step in &d.steps {
            if let Some(to) = &step.overflow_to {
                counter!("centralino_routing_overflows_total", "from" => d.name.clone(), "to" => to.clone())
                    .increment(0);
            }
        }
    }
    for code in [
        tonic::Code::InvalidArgument,
        tonic::Code::NotFound,
        tonic::Code::AlreadyExists,
        tonic::Code::PermissionDenied,
        tonic::Code::Unauthenticated,
        tonic::Code::FailedPrecondition,
        tonic::Code::ResourceExhausted,
        tonic::Code::Unavailable,
    ] {
        counter!("centralino_requests_rejected_total", "code" => format!("{code:?}")).increment(0);
    }
    counter!("centralino_stream_overflows_total").increment(0);
    gauge!("centralino_conversations_live").set(0.0);
}

/// Values of the `status` label of `centralino_agents`.
const STATUS_LABELS: [&str; 5] = ["available", "away", "on_call", "disconnected", "offline"];

fn status_label(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Available => "available",
        AgentStatus::Away => "away",
        AgentStatus::OnCall => "on_call",
        AgentStatus::Disconnected => "disconnected",
        AgentStatus::Offline | AgentStatus::Unspecified => "offline",
    }
}

pub(crate) fn agent_state_changed(
    before: Option<(&str, AgentStatus, bool)>,
    after: (&str, AgentStatus, bool),
) {
    if before == Some(after) {
        return;
    }
    if let Some((team, status, busy)) = before {
        gauge!("centralino_agents", "team" => team.to_string(), "status" => status_label(status), "busy" => if busy { "true" } else { "false" }).decrement(1.0);
    }
    let (team, status, busy) = after;
    gauge!("centralino_agents", "team" => team.to_string(), "status" => status_label(status), "busy" => if busy { "true" } else { "false" }).increment(1.0);
}

pub(crate) fn sticky(result: &'static str) {
    counter!("centralino_routing_sticky_total", "result" => result).increment(1);
}

pub(crate) fn reservation_rejected(department: &str) {
    counter!("centralino_routing_reservations_rejected_total", "department" => department.to_string()).increment(1);
}

pub(crate) fn overflow(from: &str, to: &str) {
    counter!("centralino_routing_overflows_total", "from" => from.to_string(), "to" => to.to_string()).increment(1);
}

pub(crate) fn routing_decision(elapsed: Duration) {
    histogram!("centralino_routing_decision_seconds").record(elapsed.as_secs_f64());
}

pub(crate) fn csat(department: &str, good: bool) {
    counter!("centralino_csat_ratings_total", "department" => department.to_string(), "rating" => if good { "good" } else { "bad" }).increment(1);
}

/// A request refused by a limit (`limit` is one of a fixed set of names).
/// An Admin API call refused for its token (`unknown_token`) or its address (`throttled`).
pub(crate) fn admin_auth_refused(reason: &'static str) {
    counter!("centralino_admin_auth_refusals_total", "reason" => reason).increment(1);
}

pub(crate) fn limit_refused(limit: &'static str) {
    counter!("centralino_limits_refusals_total", "limit" => limit).increment(1);
}

/// A closed conversation stopped early to bound the closed conversations kept.
pub(crate) fn linger_evicted() {
    counter!("centralino_limits_linger_evictions_total").increment(1);
}

fn typing_counter(side: &'static str, outcome: &'static str) -> metrics::Counter {
    counter!("centralino_conversation_typing_total", "side" => side, "outcome" => outcome)
}

/// A typing indicator of `side` ended with `outcome` (forwarded, rate_limited, no_agent).
pub(crate) fn typing(side: &'static str, outcome: &'static str) {
    typing_counter(side, outcome).increment(1);
}

/// A stream cut because its reader fell behind.
pub(crate) fn slow_reader_cut() {
    counter!("centralino_limits_slow_reader_cuts_total").increment(1);
}

/// A conversation ended because it stayed idle (`state`: queued or offline).
pub(crate) fn idle_expired(state: &'static str) {
    counter!("centralino_limits_idle_expired_total", "state" => state).increment(1);
}

/// A conversation change not applied because its write failed.
pub(crate) fn change_not_applied(e: &crate::store::StoreError) {
    use crate::store::StoreError;
    let reason = match e {
        StoreError::Full(_) => "full",
        StoreError::Overloaded => "overloaded",
        StoreError::TooLarge { .. } => "too_large",
        StoreError::Fenced(_) => "fenced",
        StoreError::Closed => "closed",
        StoreError::Backend(_) | StoreError::Corrupt { .. } => "backend",
    };
    counter!("centralino_conversation_changes_not_applied_total", "reason" => reason).increment(1);
}

/// A write refused by group commit (`reason`: queue_full, too_large).
pub(crate) fn store_write_shed(reason: &'static str) {
    counter!("centralino_store_writes_shed_total", "reason" => reason).increment(1);
}

pub(crate) fn stream_overflow() {
    counter!("centralino_stream_overflows_total").increment(1);
}

pub(crate) fn rejected(code: tonic::Code) {
    counter!("centralino_requests_rejected_total", "code" => format!("{code:?}")).increment(1);
}

pub(crate) fn identity_refused(reason: &'static str) {
    counter!("centralino_identity_tokens_refused_total", "reason" => reason).increment(1);
}

pub(crate) fn live(count: usize) {
    gauge!("centralino_conversations_live").set(count as f64);
}

pub(crate) fn conversation_ended(rec: &ConversationRecord, outcome: &'static str) {
    let name = match outcome {
        "offline" => "centralino_conversations_offline_total",
        _ => "centralino_conversations_escalated_total",
    };
    counter!(name, "department" => rec.department.clone(), "language" => rec.language.clone())
        .increment(1);
}

pub(crate) fn transfer(kind: &'static str) {
    counter!("centralino_transfers_total", "kind" => kind).increment(1);
}

pub(crate) fn handover(from: &str, to: &str) {
    counter!("centralino_language_handovers_total", "from" => from.to_string(), "to" => to.to_string())
        .increment(1);
}

pub(crate) fn recontact(department: &str) {
    counter!("centralino_recontacts_total", "department" => department.to_string()).increment(1);
}

pub(crate) fn busy_notice(department: &str) {
    counter!("centralino_busy_notices_total", "department" => department.to_string()).increment(1);
}

/// A write to the archive of closed conversations (`op`: archive, rating, retire).
pub(crate) fn archive_write(op: &'static str, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter!("centralino_archive_writes_total", "op" => op, "result" => result).increment(1);
}

/// Archived conversations deleted by the retention loop.
pub(crate) fn archive_retention_deleted(n: u64) {
    counter!("centralino_archive_retention_deleted_total").increment(n);
}

/// A customer erased on request.
pub(crate) fn archive_erasure() {
    counter!("centralino_archive_erasures_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_buckets_hold_the_service_level_threshold_in_order() {
        let buckets = wait_buckets(45);
        assert!(buckets.contains(&45.0), "{buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        assert_eq!(buckets.len(), WAIT_BUCKETS.len() + 1);
        // A threshold that is a default bucket adds none.
        assert_eq!(wait_buckets(20), WAIT_BUCKETS);
    }
}
