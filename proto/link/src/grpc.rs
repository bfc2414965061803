//! The link's wire form: channels to other nodes and the conversions between the link's
//! types and their `centralino.v1` messages, shared by both ends of every gRPC adapter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use centralino_base::tls::ClientTls;
use centralino_proto::v1::{self as pb, AvailabilityUpdate, OfferAnswerKind, ReserveResult};
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::{
    AgentAction, Availability, Escalation, OfferAnswer, RejectReason, ReserveOutcome,
    ReserveRequest, RouterCall, RouterReply, TransferTarget,
};

/// Returns a lazily connecting plaintext channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, Status> {
    channel_with(addr, None)
}

/// Returns a lazily connecting channel to `addr` (`host:port`): over TLS with `tls` (the
/// internal plane: the cluster CA, this node's certificate, the server's expected role),
/// plaintext without.
pub fn channel_with(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, Status> {
    let host_port = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let uri = format!("http://{host_port}");
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Status::internal(format!("bad node address {addr:?}: {e}")))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    let Some(tls) = tls else {
        return Ok(endpoint.connect_lazy());
    };
    let tls = tls.clone();
    let target = host_port.to_string();
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(
        move |_: tonic::codegen::http::Uri| {
            let tls = tls.clone();
            let target = target.clone();
            async move { tls.connect(&target).await.map(hyper_util::rt::TokioIo::new) }
        },
    )))
}

/// Channels by address, created on first use; TLS ones when made [`with_tls`](Self::with_tls).
#[derive(Default)]
pub struct Channels {
    map: Mutex<HashMap<String, Channel>>,
    tls: Option<ClientTls>,
}

impl Channels {
    /// Returns channels over TLS with `tls` (plaintext when None).
    pub fn with_tls(tls: Option<ClientTls>) -> Self {
        Self {
            map: Mutex::default(),
            tls,
        }
    }

    /// Returns the channel to `addr`.
    pub fn get(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.map.lock();
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = channel_with(addr, self.tls.as_ref())?;
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

/// Returns the wire form of a [`RouterCall`].
pub fn call_to_proto(call: RouterCall) -> pb::LinkRequest {
    use pb::link_request::Call;
    let call_proto = match call.action {
        AgentAction::OfferAnswered {
            reservation_id,
            answer,
        } => Call::OfferAnswered(pb::OfferAnswered {
            reservation_id,
            answer: answer_to_proto(answer) as i32,
        }),
        AgentAction::Message {
            message_id,
            text,
            status_note,
        } => Call::AgentMessage(pb::AgentText {
            message_id,
            text,
            status_note,
        }),
        AgentAction::Close { summary } => Call::AgentClose(pb::LinkClose { summary }),
        AgentAction::Release { reason } => Call::Release(pb::LinkRelease { reason }),
        AgentAction::Transfer {
            target,
            reason,
            warm,
        } => {
            let (kind, target) = target_to_proto(&target);
            Call::Transfer(pb::LinkTransfer {
                kind: kind.to_string(),
                target,
                reason,
                warm,
            })
        }
        AgentAction::Escalate(e) => Call::Escalate(pb::Escalate {
            conversation_id: call.conversation_id.clone(),
            kind: e.kind as i32,
            phone: e.phone,
            email: e.email,
            preferred_time: e.preferred_time,
            note: e.note,
        }),
        AgentAction::Note { text } => Call::AddNote(pb::LinkNote { text }),
        AgentAction::MarkSensitive => Call::MarkSensitive(pb::Empty {}),
        AgentAction::Typing { typing } => Call::Typing(pb::LinkTyping { typing }),
        AgentAction::Transcript => Call::Transcript(pb::Empty {}),
    };
    pb::LinkRequest {
        conversation_id: call.conversation_id,
        agent_id: call.agent_id,
        forwarded: false,
        call: Some(call_proto),
    }
}

/// Returns the [`RouterCall`] a `LinkRequest` carries (INVALID_ARGUMENT when it is
/// malformed).
pub fn call_from_proto(request: pb::LinkRequest) -> Result<RouterCall, Status> {
    use pb::link_request::Call;
    let action = match request.call {
        Some(Call::OfferAnswered(o)) => AgentAction::OfferAnswered {
            reservation_id: o.reservation_id,
            answer: answer_from_proto(o.answer)?,
        },
        Some(Call::AgentMessage(t)) => AgentAction::Message {
            message_id: t.message_id,
            text: t.text,
            status_note: t.status_note,
        },
        Some(Call::AgentClose(x)) => AgentAction::Close { summary: x.summary },
        Some(Call::Release(x)) => AgentAction::Release { reason: x.reason },
        Some(Call::Transfer(t)) => AgentAction::Transfer {
            target: target_from_proto(&t.kind, t.target)?,
            reason: t.reason,
            warm: t.warm,
        },
        Some(Call::Escalate(e)) => AgentAction::Escalate(Escalation {
            kind: pb::EscalationKind::try_from(e.kind)
                .map_err(|_| Status::invalid_argument("unknown escalation kind"))?,
            phone: e.phone,
            email: e.email,
            preferred_time: e.preferred_time,
            note: e.note,
        }),
        Some(Call::AddNote(n)) => AgentAction::Note { text: n.text },
        Some(Call::MarkSensitive(_)) => AgentAction::MarkSensitive,
        Some(Call::Typing(t)) => AgentAction::Typing { typing: t.typing },
        Some(Call::Transcript(_)) => AgentAction::Transcript,
        None => return Err(Status::invalid_argument("link call missing")),
    };
    Ok(RouterCall {
        conversation_id: request.conversation_id,
        agent_id: request.agent_id,
        action,
    })
}

/// Returns the wire form of a [`RouterReply`].
pub fn reply_to_proto(reply: RouterReply) -> pb::LinkResponse {
    pb::LinkResponse {
        transcript: reply.transcript,
        seq: reply.seq,
    }
}

/// Returns the [`RouterReply`] a `LinkResponse` carries.
pub fn reply_from_proto(response: pb::LinkResponse) -> RouterReply {
    RouterReply {
        transcript: response.transcript,
        seq: response.seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use centralino_proto::v1::EscalationKind;

    fn round_trip(action: AgentAction) {
        let call = RouterCall {
            conversation_id: "c1".into(),
            agent_id: "emma".into(),
            action,
        };
        let back = call_from_proto(call_to_proto(call.clone()));
        assert_eq!(back.ok(), Some(call));
    }

    #[test]
    fn every_agent_action_survives_the_wire() {
        round_trip(AgentAction::OfferAnswered {
            reservation_id: "r1".into(),
            answer: OfferAnswer::Declined,
        });
        round_trip(AgentAction::Message {
            message_id: "m1".into(),
            text: "ciao".into(),
            status_note: true,
        });
        round_trip(AgentAction::Close {
            summary: "done".into(),
        });
        round_trip(AgentAction::Release {
            reason: "grace".into(),
        });
        for target in [
            TransferTarget::Agent("luca".into()),
            TransferTarget::Department("billing".into()),
            TransferTarget::Language("en".into()),
            TransferTarget::Skill("returns".into()),
            TransferTarget::Supervisor,
        ] {
            round_trip(AgentAction::Transfer {
                target,
                reason: "why".into(),
                warm: true,
            });
        }
        round_trip(AgentAction::Escalate(Escalation {
            kind: EscalationKind::Callback,
            phone: "+39 02 1234".into(),
            email: String::new(),
            preferred_time: "18:00".into(),
            note: "n".into(),
        }));
        round_trip(AgentAction::Note { text: "vip".into() });
        round_trip(AgentAction::MarkSensitive);
        round_trip(AgentAction::Typing { typing: true });
        round_trip(AgentAction::Typing { typing: false });
        round_trip(AgentAction::Transcript);
    }

    #[test]
    fn malformed_calls_are_refused() {
        let mut empty = call_to_proto(RouterCall {
            conversation_id: "c".into(),
            agent_id: "a".into(),
            action: AgentAction::Transcript,
        });
        empty.call = None;
        assert_eq!(
            call_from_proto(empty).map_err(|s| s.code()),
            Err(tonic::Code::InvalidArgument)
        );
        let bad_kind = pb::LinkRequest {
            conversation_id: "c".into(),
            agent_id: "a".into(),
            forwarded: false,
            call: Some(pb::link_request::Call::Transfer(pb::LinkTransfer {
                kind: "moon".into(),
                target: "x".into(),
                reason: String::new(),
                warm: false,
            })),
        };
        assert_eq!(
            call_from_proto(bad_kind).map_err(|s| s.code()),
            Err(tonic::Code::InvalidArgument)
        );
    }
}
