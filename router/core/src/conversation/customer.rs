//! The customer's side: messages, close, rating, offline messages and callbacks.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_proto::v1::{ChatMessage, ConversationOutcome, Sender};
use tonic::Status;
use tracing::debug;

use crate::metrics as m;
use crate::shared::Counters;
use crate::store::archive::{rate_archived, ARCHIVE_ACK_WAIT};
use crate::store::records::{message_key, put, Outcome, Rating, State};

use super::actor::{answer, Acked, ConversationActor, DELIVERY_ATTEMPTS, DELIVERY_RETRY};
use super::messages::{Callback, CustomerClose, CustomerSend, LeaveOffline, Rate};

impl Handler<CustomerSend> for ConversationActor {
    type Result = ResponseFuture<Result<(u64, bool), Status>>;

    fn handle(&mut self, msg: CustomerSend, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_token(&msg.token).and(self.check_serving()) {
            return answer(Err(status));
        }
        // A retry of a durable message (the writes are serialised: a retry sent while the
        // first attempt was in flight waits for it and lands here, or finds the number
        // free again if that write failed).
        match self.duplicate(&msg.message_id, &msg.text) {
            Some(Ok(seq)) => return answer(Ok((seq, true))),
            Some(Err(status)) => return answer(Err(status)),
            None => {}
        }
        if self.rec.state == State::Closed {
            return answer(Err(Status::failed_precondition("conversation is closed")));
        }
        self.last_activity_ms = self.shared.clock.now_ms();
        let record = match self.stage_message(Sender::Customer, "", msg.message_id, msg.text, false)
        {
            Ok(record) => record,
            Err(status) => return answer(Err(status)),
        };
        let seq = record.seq;
        let ops = vec![put(message_key(&self.rec.id, seq), &record)];
        self.write_then(ctx, ops, move |act, _ctx| {
            let message = record.to_proto();
            act.apply_message(record);
            act.deliver_to_agent(message);
            answer(Ok((seq, false)))
        })
    }
}

impl ConversationActor {
    /// Delivers a durable customer message to the assigned agent, retrying while the
    /// agent is between connections.
    fn deliver_to_agent(&self, message: ChatMessage) {
        let (State::Assigned, Some(agent_id)) = (self.rec.state, self.rec.agent_id.clone()) else {
            return;
        };
        let agents = self.shared.agents.clone();
        let cid = self.rec.id.clone();
        actix::spawn(async move {
            // The agent may be between two agent-nodes (or two desktops): try again for a
            // while; the message is in the transcript the desktop gets back when it logs in
            // again anyway.
            for _ in 0..DELIVERY_ATTEMPTS {
                match agents.deliver(&agent_id, &cid, message.clone()).await {
                    Ok(()) => return,
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::NotFound
                                | tonic::Code::FailedPrecondition
                                | tonic::Code::DeadlineExceeded
                        ) =>
                    {
                        debug!(conversation_id = %cid, %status, "delivery to agent failed, retrying");
                        tokio::time::sleep(DELIVERY_RETRY).await;
                    }
                    Err(status) => {
                        debug!(conversation_id = %cid, %status, "delivery to agent failed");
                        return;
                    }
                }
            }
        });
    }
}

impl Handler<CustomerClose> for ConversationActor {
    type Result = ResponseFuture<Result<ConversationOutcome, Status>>;

    fn handle(&mut self, msg: CustomerClose, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_token(&msg.token) {
            return answer(Err(status));
        }
        match self.rec.state {
            State::Closed => answer(self.closed_already(msg.sent_at)),
            State::Queued | State::Offline => self.close(
                ctx,
                Outcome::Abandoned,
                "customer left",
                |_| {},
                |act| {
                    // The queue withdraws an open offer.
                    act.dequeue();
                    act.cancel_direct_offer();
                },
                |_, _| {},
            ),
            State::Assigned => self.close(
                ctx,
                Outcome::Completed,
                "customer closed",
                |_| {},
                |act| {
                    if act.warm_from.is_some() {
                        act.dequeue();
                        act.cancel_direct_offer();
                    }
                    if let Some(agent_id) = act.rec.agent_id.clone() {
                        act.tell_agent_ended(agent_id, ConversationOutcome::Completed);
                    }
                },
                |_, _| {},
            ),
        }
    }
}

impl Handler<Rate> for ConversationActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: Rate, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_token(&msg.token) {
            return answer(Err(status));
        }
        if self.rec.state != State::Closed || self.rec.outcome != Some(Outcome::Completed) {
            return answer(Err(Status::failed_precondition(
                "only a completed conversation can be rated",
            )));
        }
        if let Some(rating) = &self.rec.rating {
            // The same rating again is a retry of a durable one: its outcome again.
            return answer(
                if rating.good == msg.good && rating.comment == msg.comment {
                    Ok(())
                } else {
                    Err(Status::already_exists("conversation is already rated"))
                },
            );
        }
        if msg.comment.len() > self.shared.config.limits.max_message_bytes {
            return answer(Err(Status::invalid_argument("comment is too long")));
        }
        let rating = Rating {
            good: msg.good,
            comment: msg.comment.clone(),
        };
        let mut next = self.next_record();
        next.rating = Some(rating.clone());
        let ops = Self::record_ops(&next, &[]);
        self.write_then(ctx, ops, move |act, _ctx| act.apply_rating(rating))
    }
}

impl ConversationActor {
    /// Applies a durable rating: counters, the profile, the integration event.
    fn apply_rating(&mut self, rating: Rating) -> Acked<()> {
        let good = rating.good;
        Counters::inc(if good {
            &self.shared.counters.csat_good
        } else {
            &self.shared.counters.csat_bad
        });
        m::csat(&self.rec.department, good);
        let comment = rating.comment.clone();
        // The archive row (written at the close) gets the rating too; the answer waits a
        // little for it.
        let archiving = rate_archived(&self.shared.archive, &self.rec.id, &rating);
        self.rec.rating = Some(rating);
        self.profile.last_rating = if good { "good" } else { "bad" }.to_string();
        self.integration(
            "rated",
            BTreeMap::from([
                ("rating".to_string(), self.profile.last_rating.clone()),
                ("comment".to_string(), comment),
            ]),
        );
        let shared = self.shared.clone();
        let customer = self.rec.customer_id.clone();
        let last_rating = self.profile.last_rating.clone();
        self.profile_write = Some(Box::pin(async move {
            shared
                .update_profile(&customer, move |p| p.last_rating = last_rating.clone())
                .await
                .map(|_| ())
        }));
        let acked = self.after_profile(());
        Box::pin(async move {
            acked.await?;
            let _ = tokio::time::timeout(ARCHIVE_ACK_WAIT, archiving).await;
            Ok(())
        })
    }

    /// Ends a waiting conversation with a follow-up instead of a chat.
    pub(super) fn follow_up(
        &mut self,
        token: &str,
        outcome: Outcome,
        details: BTreeMap<String, String>,
        ctx: &mut Context<Self>,
    ) -> Acked<ConversationOutcome> {
        if let Err(status) = self.check_token(token) {
            return answer(Err(status));
        }
        match self.rec.state {
            State::Queued | State::Offline => {}
            State::Assigned => {
                return answer(Err(Status::failed_precondition(
                    "an agent is already serving this conversation",
                )))
            }
            State::Closed => {
                return answer(Err(Status::failed_precondition("conversation is closed")))
            }
        }
        let reason = match outcome {
            Outcome::Offline => "offline message",
            _ => "callback requested",
        };
        self.close(
            ctx,
            outcome,
            reason,
            move |next| next.follow_up = details,
            |act| {
                act.dequeue();
                act.cancel_direct_offer();
            },
            |_, _| {},
        )
    }
}

impl Handler<LeaveOffline> for ConversationActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: LeaveOffline, ctx: &mut Context<Self>) -> Self::Result {
        let done = self.follow_up(&msg.token, Outcome::Offline, msg.details, ctx);
        Box::pin(async move { done.await.map(|_| ()) })
    }
}

impl Handler<Callback> for ConversationActor {
    type Result = ResponseFuture<Result<(), Status>>;

    fn handle(&mut self, msg: Callback, ctx: &mut Context<Self>) -> Self::Result {
        let mut details = msg.details;
        details.insert("kind".to_string(), "callback".to_string());
        let done = self.follow_up(&msg.token, Outcome::Escalated, details, ctx);
        Box::pin(async move { done.await.map(|_| ()) })
    }
}
