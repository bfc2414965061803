//! Closing: the final state, the customer's profile updated with the contact, and
//! retirement (a conversation handed over to another router stops without closing).

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;

use centralino_proto::v1::{
    conversation_event::Kind, Closed, ConversationOutcome, RatingRequested,
};
use tonic::Status;
use tracing::info;

use crate::mail::ToQueue;
use crate::metrics as m;
use crate::shared::Counters;
use crate::store::archive::{archive_closed, ARCHIVE_ACK_WAIT};
use crate::store::records::{ConversationRecord, Outcome, State};

use super::actor::{Acked, ConversationActor};
use super::messages::Retire;

/// Events a closed conversation keeps for late resumes (its last ones: the close, the
/// rating request).
const CLOSED_EVENTS_KEPT: usize = 4;

impl Handler<Retire> for ConversationActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        // Customers' streams end with UNAVAILABLE; they resume from their last event on
        // the next owner.
        for (tx, _) in self.subscribers.drain(..) {
            let _ = tx.try_send(Err(Status::unavailable(
                "conversation moved to another router, resume the stream",
            )));
        }
        ctx.stop();
    }
}

impl ConversationActor {
    /// Ends the conversation, write first: the closed record (with `change` made to it)
    /// is written, and only once it is durable `effects` run (the caller's side effects:
    /// leaving the queue, telling the agent) and the close is applied — the customer told,
    /// counters and metrics, the profile updated, archiving scheduled after the rating
    /// window. A failed write leaves the conversation open as it was (`failed` may re-arm
    /// what the close consumed) and answers the store's status.
    pub(super) fn close(
        &mut self,
        ctx: &mut Context<Self>,
        outcome: Outcome,
        reason: &str,
        change: impl FnOnce(&mut ConversationRecord),
        effects: impl FnOnce(&mut Self) + 'static,
        failed: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) -> Acked<ConversationOutcome> {
        let now = self.shared.clock.now_ms();
        let mut next = self.next_record();
        change(&mut next);
        next.state = State::Closed;
        next.outcome = Some(outcome);
        next.closed_at_ms = Some(now);
        let ops = Self::record_ops(&next, &[]);
        let reason = reason.to_string();
        self.write_or(
            ctx,
            ops,
            move |act, ctx| {
                effects(act);
                act.apply_close(next, &reason, ctx)
            },
            failed,
        )
    }

    /// Applies a durable close (see [`Self::close`]).
    fn apply_close(
        &mut self,
        next: ConversationRecord,
        reason: &str,
        ctx: &mut Context<Self>,
    ) -> Acked<ConversationOutcome> {
        if self.rec.state != State::Closed {
            self.shared.counters.open.fetch_sub(1, Ordering::Relaxed);
        }
        self.rec = next;
        let now = self
            .rec
            .closed_at_ms
            .unwrap_or_else(|| self.shared.clock.now_ms());
        let outcome = self.rec.outcome.unwrap_or(Outcome::Abandoned);
        if self.warm_from.take().is_some() {
            // A warm transfer was still looking for the next agent: withdraw it.
            self.dequeue();
        }
        self.cancel_direct_offer();
        self.offer = None;
        let proto_outcome = match outcome {
            Outcome::Completed => ConversationOutcome::Completed,
            Outcome::Abandoned => ConversationOutcome::Abandoned,
            Outcome::Offline => ConversationOutcome::Offline,
            Outcome::Escalated => ConversationOutcome::Escalated,
        };
        self.emit(Kind::Closed(Closed {
            outcome: proto_outcome as i32,
            reason: reason.to_string(),
        }));
        self.rec.next_event_id = self.next_event_id;
        match outcome {
            Outcome::Completed => {
                Counters::inc(&self.shared.counters.completed);
                m::conversation_completed(&self.rec);
                if let Some(assigned) = self.rec.assigned_at_ms {
                    self.shared.tell_queue(
                        &self.rec.department,
                        ToQueue::Handled((now - assigned).max(0) as f64 / 1000.0),
                    );
                }
                self.emit(Kind::RatingRequested(RatingRequested {}));
                self.update_profile(now);
            }
            Outcome::Abandoned => {
                Counters::inc(&self.shared.counters.abandoned);
                m::conversation_abandoned(&self.rec);
                self.shared
                    .today
                    .abandoned(&self.rec.department, &self.rec.language, now);
            }
            Outcome::Offline => {
                Counters::inc(&self.shared.counters.offline);
                m::conversation_ended(&self.rec, "offline");
            }
            Outcome::Escalated => {
                Counters::inc(&self.shared.counters.escalated);
                m::conversation_ended(&self.rec, "escalated");
                if self.rec.agent_id.is_some() {
                    self.update_profile(now);
                }
            }
        }
        info!(conversation_id = %self.rec.id, ?outcome, "conversation closed");
        self.closed_ack = Some((std::time::Instant::now(), proto_outcome));
        // The archive row is written once the close is durable (now), with the close's
        // integration event in its transaction: supervisors list the conversation right
        // away; the answer waits a little for it (retirement archives again when it failed,
        // with the same event, so the event lands exactly once).
        let archiving = archive_closed(
            &self.shared.archive,
            &self.shared.events,
            &self.rec,
            &self.transcript,
        );
        // Streams end after the last events (readers have them buffered); a closed
        // conversation takes no new subscriber. While it lingers it keeps only its last
        // events: an older resume point gets the messages from the transcript.
        self.subscribers.clear();
        let keep_from = self.events.len().saturating_sub(CLOSED_EVENTS_KEPT);
        self.events.drain(..keep_from);
        self.events.shrink_to_fit();
        // The actor lingers through the rating window (a completed conversation) or a short
        // time for late resumes (on the node's clock), then stops; it does not count among
        // the open conversations meanwhile, and at most `max_closed_lingering` linger: the
        // oldest stop early.
        let limits = &self.shared.config.limits;
        let linger_secs = if outcome == Outcome::Completed {
            self.shared.config.routing.rating_window_secs
        } else {
            limits
                .closed_linger_secs
                .min(self.shared.config.routing.rating_window_secs)
        };
        if self.linger_ticket.is_none() {
            self.linger_ticket = Some(
                self.shared
                    .lingering
                    .add(ctx.address().recipient(), limits.max_closed_lingering),
            );
        }
        let linger = self.shared.clock.sleep(Duration::from_secs(linger_secs));
        ctx.spawn(actix::fut::wrap_future::<_, Self>(linger).map(|(), _act, ctx| ctx.stop()));
        let acked = self.after_profile(proto_outcome);
        Box::pin(async move {
            let outcome = acked.await?;
            let _ = tokio::time::timeout(ARCHIVE_ACK_WAIT, archiving).await;
            Ok(outcome)
        })
    }

    /// Answers a close that finds the conversation closed: a close sent while the close
    /// that won was in flight (a retry, or the other side closing at the same moment) gets
    /// that close's outcome; a later one is refused.
    pub(super) fn closed_already(
        &self,
        sent_at: std::time::Instant,
    ) -> Result<ConversationOutcome, Status> {
        match self.closed_ack {
            Some((acked_at, outcome)) if sent_at <= acked_at => Ok(outcome),
            _ => Err(Status::failed_precondition(
                "conversation is already closed",
            )),
        }
    }

    /// Records the finished contact in the customer's profile (read, changed and written
    /// back by the shared state, so concurrent conversations of one customer do not overwrite each
    /// other); the update joins the pending profile writes awaited by `close`.
    pub(super) fn update_profile(&mut self, now: i64) {
        let (name, language) = (self.rec.display_name.clone(), self.rec.language.clone());
        let agent = self.rec.agent_id.clone();
        let (summary, notes) = (self.rec.summary.clone(), self.rec.notes.clone());
        self.profile
            .record_completed(agent.as_deref(), &summary, &notes, now);
        let shared = self.shared.clone();
        let customer = self.rec.customer_id.clone();
        self.profile_write = Some(Box::pin(async move {
            shared
                .update_profile(&customer, move |p| {
                    if !name.is_empty() {
                        p.display_name = name.clone();
                    }
                    p.language = language.clone();
                    p.record_completed(agent.as_deref(), &summary, &notes, now);
                })
                .await
                .map(|_| ())
        }));
    }
}
