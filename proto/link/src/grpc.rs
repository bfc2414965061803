//! The link's wire form: channels to other nodes and the conversions between the link's
//! types and their `centralino.v1` messages, shared by both ends of every gRPC adapter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use centralino_proto::v1::{self as pb, AvailabilityUpdate, OfferAnswerKind, ReserveResult};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::{
    Availability, OfferAnswer, RejectReason, ReserveOutcome, ReserveRequest, TransferTarget,
};

/// Returns a lazily connecting channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, Status> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| Status::internal(format!("bad node address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// Channels by address, created on first use.
#[derive(Default)]
pub struct Channels {
    map: Mutex<HashMap<String, Channel>>,
}

impl Channels {
    /// Returns the channel to `addr`.
    pub fn get(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.map.lock();
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = channel(addr)?;
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// Whether a failed call may succeed on another router or a little later.
pub fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// Converts an availability update to its wire form.
pub fn availability_to_proto(a: &Availability, node_id: &str) -> AvailabilityUpdate {
    AvailabilityUpdate {
        agent_id: a.agent_id.clone(),
        version: a.version,
        team: a.team.clone(),
        status: a.status as i32,
        capacity: a.capacity,
        load: a.load,
        skills: a
            .skills
            .iter()
            .map(|(k, v)| (k.clone(), u32::from(*v)))
            .collect(),
        idle_since_ms: a.idle_since_ms,
        display_name: a.display_name.clone(),
        on_shift: a.on_shift,
        node_id: node_id.to_string(),
    }
}

/// Converts a wire availability update back.
pub fn availability_from_proto(u: &AvailabilityUpdate) -> Availability {
    Availability {
        agent_id: u.agent_id.clone(),
        version: u.version,
        team: u.team.clone(),
        status: pb::AgentStatus::try_from(u.status).unwrap_or(pb::AgentStatus::Offline),
        capacity: u.capacity,
        load: u.load,
        skills: Arc::new(
            u.skills
                .iter()
                .map(|(k, v)| (k.clone(), (*v).min(5) as u8))
                .collect(),
        ),
        idle_since_ms: u.idle_since_ms,
        display_name: u.display_name.clone(),
        on_shift: u.on_shift,
    }
}

/// Converts a reservation to its wire form.
pub fn reserve_to_proto(r: ReserveRequest) -> pb::ReserveRequest {
    pb::ReserveRequest {
        reservation_id: r.reservation_id,
        conversation_id: r.conversation_id,
        agent_id: r.agent_id,
        department: r.department,
        language: r.language,
        customer_display_name: r.customer_display_name,
        returning_customer: r.returning_customer,
        visitor: r.visitor,
        auto_accept: r.auto_accept,
        started_at_ms: r.started_at_ms,
        last_summary: r.last_summary,
        serving_language: r.serving_language,
        history: r.history,
        transfer: r.transfer,
    }
}

pub fn reserve_from_proto(r: pb::ReserveRequest) -> ReserveRequest {
    ReserveRequest {
        reservation_id: r.reservation_id,
        conversation_id: r.conversation_id,
        agent_id: r.agent_id,
        department: r.department,
        language: r.language,
        customer_display_name: r.customer_display_name,
        returning_customer: r.returning_customer,
        visitor: r.visitor,
        auto_accept: r.auto_accept,
        started_at_ms: r.started_at_ms,
        last_summary: r.last_summary,
        serving_language: r.serving_language,
        history: r.history,
        transfer: r.transfer,
    }
}

/// Converts a reservation outcome to its wire form.
pub fn outcome_to_proto(o: ReserveOutcome) -> ReserveResult {
    match o {
        ReserveOutcome::Held => ReserveResult::Held,
        ReserveOutcome::Rejected(RejectReason::NotLoggedIn) => ReserveResult::NotLoggedIn,
        ReserveOutcome::Rejected(RejectReason::NotAvailable) => ReserveResult::NotAvailable,
        ReserveOutcome::Rejected(RejectReason::Full) => ReserveResult::Full,
        ReserveOutcome::Rejected(RejectReason::AlreadyHeld) => ReserveResult::AlreadyHeld,
        ReserveOutcome::Rejected(RejectReason::OffShift) => ReserveResult::OffShift,
    }
}

/// Converts a wire reservation outcome back.
pub fn outcome_from_proto(r: i32) -> ReserveOutcome {
    match ReserveResult::try_from(r).unwrap_or(ReserveResult::Unspecified) {
        ReserveResult::Held => ReserveOutcome::Held,
        ReserveResult::Full => ReserveOutcome::Rejected(RejectReason::Full),
        ReserveResult::AlreadyHeld => ReserveOutcome::Rejected(RejectReason::AlreadyHeld),
        ReserveResult::OffShift => ReserveOutcome::Rejected(RejectReason::OffShift),
        ReserveResult::NotAvailable => ReserveOutcome::Rejected(RejectReason::NotAvailable),
        ReserveResult::NotLoggedIn | ReserveResult::Unspecified => {
            ReserveOutcome::Rejected(RejectReason::NotLoggedIn)
        }
    }
}

/// Converts an offer answer to its wire form.
pub fn answer_to_proto(a: OfferAnswer) -> OfferAnswerKind {
    match a {
        OfferAnswer::Accepted => OfferAnswerKind::Accepted,
        OfferAnswer::Declined => OfferAnswerKind::Declined,
        OfferAnswer::TimedOut => OfferAnswerKind::TimedOut,
        OfferAnswer::Revoked => OfferAnswerKind::Revoked,
    }
}

/// Converts a wire offer answer back.
pub fn answer_from_proto(a: i32) -> Result<OfferAnswer, Status> {
    match OfferAnswerKind::try_from(a).unwrap_or(OfferAnswerKind::Unspecified) {
        OfferAnswerKind::Accepted => Ok(OfferAnswer::Accepted),
        OfferAnswerKind::Declined => Ok(OfferAnswer::Declined),
        OfferAnswerKind::TimedOut => Ok(OfferAnswer::TimedOut),
        OfferAnswerKind::Revoked => Ok(OfferAnswer::Revoked),
        OfferAnswerKind::Unspecified => Err(Status::invalid_argument("offer answer missing")),
    }
}

/// Converts a transfer target to (kind, target).
pub fn target_to_proto(t: &TransferTarget) -> (&'static str, String) {
    match t {
        TransferTarget::Agent(a) => ("agent", a.clone()),
        TransferTarget::Department(d) => ("department", d.clone()),
        TransferTarget::Language(l) => ("language", l.clone()),
        TransferTarget::Skill(s) => ("skill", s.clone()),
        TransferTarget::Supervisor => ("supervisor", String::new()),
    }
}

/// Converts (kind, target) back to a transfer target.
pub fn target_from_proto(kind: &str, target: String) -> Result<TransferTarget, Status> {
    Ok(match kind {
        "agent" => TransferTarget::Agent(target),
        "department" => TransferTarget::Department(target),
        "language" => TransferTarget::Language(target),
        "skill" => TransferTarget::Skill(target),
        "supervisor" => TransferTarget::Supervisor,
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown transfer kind {other:?}"
            )))
        }
    })
}
