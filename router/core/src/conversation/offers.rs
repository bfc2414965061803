//! The queue's side: positions, offers and their answers, moves between queues.

use actix::prelude::*;

use centralino_link::OfferAnswer;
use centralino_proto::v1::{
    conversation_event::Kind, BusyNotice, ChatMessage, Offered, Queued, Requeued,
};
use tonic::Status;
use tracing::info;

use crate::mail::ToQueue;
use crate::metrics as m;
use crate::shared::Counters;
use crate::store::records::{MessageRecord, State};
use crate::texts::{self, Text};

use super::actor::{answer, ConversationActor};
use super::messages::{Moved, OfferEnded, OfferWithdrawn, Offering, Position, Requeue};

impl Handler<Position> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Position, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        if msg.busy && !self.busy_told {
            self.busy_told = true;
            m::busy_notice(&self.rec.department);
            let wait = texts::minutes(msg.estimated_wait_secs);
            let message = self.text(Text::Busy, &[("wait", wait.as_str())]);
            self.emit(Kind::Busy(BusyNotice {
                message,
                estimated_wait_seconds: msg.estimated_wait_secs,
                options: vec!["wait".into(), "callback".into(), "message".into()],
            }));
        }
        let now = (msg.position, msg.estimated_wait_secs);
        if self.last_position != Some(now) {
            self.last_position = Some(now);
            self.emit(Kind::Queued(Queued {
                department: self.rec.department.clone(),
                position: msg.position,
                estimated_wait_seconds: msg.estimated_wait_secs,
            }));
        }
    }
}

impl Handler<Offering> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Offering, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued && self.warm_from.is_none() {
            // A queue that lost track (a message gone with a failed router) still holds
            // this conversation: take it out, which also withdraws the offer.
            if self.rec.state == State::Assigned {
                self.shared
                    .tell_queue(&self.rec.department, ToQueue::Dequeue(self.rec.id.clone()));
            }
            return;
        }
        self.direct_offer = false;
        self.offer = Some((msg.reservation_id, msg.agent_id));
        if self.rec.state == State::Queued && self.last_position.is_none() {
            // An agent was free at once, before the queue's round of positions: the
            // customer still sees `queued` first (first in line, no wait), then `offered`.
            self.last_position = Some((1, 0));
            self.emit(Kind::Queued(Queued {
                department: self.rec.department.clone(),
                position: 1,
                estimated_wait_seconds: 0,
            }));
        }
        self.emit(Kind::Offered(Offered {}));
    }
}

impl Handler<OfferWithdrawn> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: OfferWithdrawn, _ctx: &mut Context<Self>) {
        if self
            .offer
            .as_ref()
            .is_some_and(|(rid, _)| *rid == msg.reservation_id)
        {
            self.offer = None;
        }
    }
}

impl Handler<Moved> for ConversationActor {
    type Result = ();

    /// Overflow, write first: the queue took the entry out already; the conversation
    /// writes its new department and only then enqueues there. A failed write leaves the
    /// record as it was, and the conversation goes back to the queue its record names
    /// ([`ConversationActor::requeue_as_recorded`]).
    fn handle(&mut self, msg: Moved, ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        let mut next = self.next_record();
        next.department = msg.department;
        next.queue_entered_at_ms = msg.at_ms;
        let ops = Self::record_ops(&next, &[]);
        let written = self.write_or(
            ctx,
            ops,
            move |act, _ctx| {
                info!(conversation_id = %act.rec.id, from = %act.rec.department, to = %next.department, "conversation overflowed");
                act.rec = next;
                act.last_position = None;
                act.enqueue();
                answer(Ok(()))
            },
            |act, ctx| act.requeue_as_recorded(ctx),
        );
        drop(written);
    }
}

impl Handler<OfferEnded> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<Vec<ChatMessage>, Status>>;

    fn handle(&mut self, msg: OfferEnded, ctx: &mut Context<Self>) -> Self::Result {
        let accepted = msg.answer == OfferAnswer::Accepted;
        if accepted
            && self.rec.state == State::Assigned
            && self.rec.agent_id.as_deref() == Some(msg.agent_id.as_str())
            && self.offer.is_none()
        {
            // The same accept again (the agent-node retried after a failover): answer as
            // the first time.
            let transcript: Vec<ChatMessage> = self
                .transcript
                .iter()
                .map(MessageRecord::to_proto)
                .collect();
            return Box::pin(actix::fut::ready(Ok(transcript)));
        }
        let inherited = self.restored
            && self.offer.is_none()
            && self.rec.state == State::Queued
            && self.warm_from.is_none();
        let current = inherited
            || self
                .offer
                .as_ref()
                .is_some_and(|(rid, agent)| *rid == msg.reservation_id && *agent == msg.agent_id);
        let open = self.rec.state == State::Queued || self.warm_from.is_some();
        if !current || !open {
            if self.rec.state == State::Queued {
                // Let the queue drop the offer it may still count as open.
                self.shared.tell_queue(
                    &self.rec.department,
                    ToQueue::OfferClosed {
                        conversation_id: self.rec.id.clone(),
                        reservation_id: msg.reservation_id.clone(),
                        agent_id: msg.agent_id.clone(),
                        answer: OfferAnswer::TimedOut,
                    },
                );
            }
            return Box::pin(actix::fut::ready(Err(Status::failed_precondition(
                "offer is no longer valid",
            ))));
        }
        if accepted {
            // Write first: the assignment is applied (the offer closed, the customer told)
            // only once its record is durable; a failed write leaves the offer open (the
            // agent-node may retry the accept, or the offer times out).
            let mut next = self.next_record();
            next.state = State::Assigned;
            next.agent_id = Some(msg.agent_id.clone());
            next.agent_name = msg.agent_name.clone();
            next.sticky_agent = None;
            if next.assigned_at_ms.is_none() {
                next.assigned_at_ms = Some(self.shared.clock.now_ms());
            }
            let ops = Self::record_ops(&next, &[]);
            let done = self.write_then(ctx, ops, move |act, _ctx| {
                act.offer = None;
                act.direct_offer = false;
                act.shared.tell_queue(
                    &act.rec.department,
                    ToQueue::OfferClosed {
                        conversation_id: act.rec.id.clone(),
                        reservation_id: msg.reservation_id.clone(),
                        agent_id: msg.agent_id.clone(),
                        answer: msg.answer,
                    },
                );
                Counters::inc(&act.shared.counters.offers_accepted);
                act.assign(msg.agent_id, msg.agent_name, next.assigned_at_ms);
                let transcript: Vec<ChatMessage> =
                    act.transcript.iter().map(MessageRecord::to_proto).collect();
                answer(Ok(transcript))
            });
            return Box::pin(actix::fut::wrap_future(done));
        }
        self.offer = None;
        let direct = std::mem::take(&mut self.direct_offer);
        self.shared.tell_queue(
            &self.rec.department,
            ToQueue::OfferClosed {
                conversation_id: self.rec.id.clone(),
                reservation_id: msg.reservation_id.clone(),
                agent_id: msg.agent_id.clone(),
                answer: msg.answer,
            },
        );
        match msg.answer {
            OfferAnswer::Accepted => Box::pin(actix::fut::ready(Err(Status::internal(
                "an accepted offer is handled above",
            )))),
            answer => {
                Counters::inc(match answer {
                    OfferAnswer::Declined => &self.shared.counters.offers_declined,
                    _ => &self.shared.counters.offers_timed_out,
                });
                self.last_position = None;
                if direct && self.warm_from.is_some() {
                    // A warm transfer to a named agent failed: the first agent keeps it.
                    if let Some(first) = self.warm_from.take() {
                        self.tell_agent(
                            first,
                            format!(
                                "transfer to {} was not accepted: the conversation stays with you",
                                msg.agent_id
                            ),
                        );
                    }
                    self.transfer_info = None;
                    self.rec.transfers = self.rec.transfers.saturating_sub(1);
                } else if direct {
                    // A cold transfer to a named agent failed: into the department queue,
                    // with the conversation's age.
                    self.emit(Kind::Requeued(Requeued {
                        reason: "transfer not accepted".to_string(),
                    }));
                    self.enqueue();
                } else if self.rec.state == State::Queued {
                    self.emit(Kind::Requeued(Requeued {
                        reason: "offer not accepted".to_string(),
                    }));
                }
                Box::pin(actix::fut::ready(Ok(Vec::new())))
            }
        }
    }
}

impl Handler<Requeue> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: Requeue, _ctx: &mut Context<Self>) {
        if self.rec.state == State::Queued && self.rec.department == msg.department {
            self.enqueue();
        }
    }
}
