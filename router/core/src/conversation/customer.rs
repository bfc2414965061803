//! The customer's side: messages, close, rating, offline messages and callbacks.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_proto::v1::{ConversationOutcome, Sender};
use tonic::Status;
use tracing::debug;

use crate::metrics as m;
use crate::shared::Counters;
use crate::store::archive::rate_after;
use crate::store::group_commit::Durable;
use crate::store::records::{MessageRecord, Outcome, Rating, State};

use super::actor::{ConversationActor, DELIVERY_ATTEMPTS, DELIVERY_RETRY};
use super::messages::{Callback, CustomerClose, CustomerSend, LeaveOffline, Rate};

impl Handler<CustomerSend> for ConversationActor {
    type Result = Result<(u64, bool, Option<Durable>), Status>;

    fn handle(&mut self, msg: CustomerSend, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        self.check_serving()?;
        if let Some(seq) = self.duplicate(&msg.message_id) {
            return Ok((seq, true, None));
        }
        if self.rec.state == State::Closed {
            return Err(Status::failed_precondition("conversation is closed"));
        }
        self.last_activity_ms = self.shared.clock.now_ms();
        let (seq, durable) =
            self.add_message(Sender::Customer, "", msg.message_id, msg.text, false)?;
        if let (State::Assigned, Some(agent_id)) = (self.rec.state, self.rec.agent_id.clone()) {
            let message = self.transcript.last().map(MessageRecord::to_proto);
            let agents = self.shared.agents.clone();
            let cid = self.rec.id.clone();
            if let Some(message) = message {
                actix::spawn(async move {
                    // The agent may be between two agent-nodes (or two desktops): try again
                    // for a while; the message is in the transcript the desktop gets back
                    // when it logs in again anyway.
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
        Ok((seq, false, Some(durable)))
    }
}

impl Handler<CustomerClose> for ConversationActor {
    type Result = Result<(ConversationOutcome, Option<Durable>), Status>;

    fn handle(&mut self, msg: CustomerClose, ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        match self.rec.state {
            State::Closed => Err(Status::failed_precondition(
                "conversation is already closed",
            )),
            State::Queued | State::Offline => {
                // The queue withdraws an open offer.
                self.dequeue();
                self.cancel_direct_offer();
                let durable = self.close(Outcome::Abandoned, "customer left", ctx);
                Ok((ConversationOutcome::Abandoned, Some(durable)))
            }
            State::Assigned => {
                if self.warm_from.is_some() {
                    self.dequeue();
                    self.cancel_direct_offer();
                }
                if let Some(agent_id) = self.rec.agent_id.clone() {
                    let agents = self.shared.agents.clone();
                    let cid = self.rec.id.clone();
                    actix::spawn(async move {
                        let _ = agents
                            .conversation_ended(&agent_id, &cid, ConversationOutcome::Completed)
                            .await;
                    });
                }
                let durable = self.close(Outcome::Completed, "customer closed", ctx);
                Ok((ConversationOutcome::Completed, Some(durable)))
            }
        }
    }
}

impl Handler<Rate> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: Rate, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_token(&msg.token)?;
        if self.rec.state != State::Closed || self.rec.outcome != Some(Outcome::Completed) {
            return Err(Status::failed_precondition(
                "only a completed conversation can be rated",
            ));
        }
        if self.rec.rating.is_some() {
            return Err(Status::already_exists("conversation is already rated"));
        }
        if msg.comment.len() > self.shared.config.limits.max_message_bytes {
            return Err(Status::invalid_argument("comment is too long"));
        }
        Counters::inc(if msg.good {
            &self.shared.counters.csat_good
        } else {
            &self.shared.counters.csat_bad
        });
        m::csat(&self.rec.department, msg.good);
        self.rec.rating = Some(Rating {
            good: msg.good,
            comment: msg.comment.clone(),
        });
        self.profile.last_rating = if msg.good { "good" } else { "bad" }.to_string();
        self.integration(
            "rated",
            BTreeMap::from([
                ("rating".to_string(), self.profile.last_rating.clone()),
                ("comment".to_string(), msg.comment),
            ]),
        );
        let durable = self.persist_record();
        let shared = self.shared.clone();
        let customer = self.rec.customer_id.clone();
        let rating = self.profile.last_rating.clone();
        self.profile_write = Some(Box::pin(async move {
            shared
                .update_profile(&customer, Vec::new(), move |p| p.last_rating = rating)
                .await
                .map(|_| ())
        }));
        let durable = self.with_profile_write(durable);
        let given = self.rec.rating.clone().unwrap_or(Rating {
            good: msg.good,
            comment: String::new(),
        });
        Ok(rate_after(&self.shared, durable, &self.rec.id, &given))
    }
}

impl ConversationActor {
    /// Ends a waiting conversation with a follow-up instead of a chat.
    pub(super) fn follow_up(
        &mut self,
        token: &str,
        outcome: Outcome,
        details: BTreeMap<String, String>,
        ctx: &mut Context<Self>,
    ) -> Result<Durable, Status> {
        self.check_token(token)?;
        match self.rec.state {
            State::Queued | State::Offline => {}
            State::Assigned => {
                return Err(Status::failed_precondition(
                    "an agent is already serving this conversation",
                ))
            }
            State::Closed => return Err(Status::failed_precondition("conversation is closed")),
        }
        self.dequeue();
        self.cancel_direct_offer();
        self.rec.follow_up = details;
        let reason = match outcome {
            Outcome::Offline => "offline message",
            _ => "callback requested",
        };
        Ok(self.close(outcome, reason, ctx))
    }
}

impl Handler<LeaveOffline> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: LeaveOffline, ctx: &mut Context<Self>) -> Self::Result {
        self.follow_up(&msg.token, Outcome::Offline, msg.details, ctx)
    }
}

impl Handler<Callback> for ConversationActor {
    type Result = Result<Durable, Status>;

    fn handle(&mut self, msg: Callback, ctx: &mut Context<Self>) -> Self::Result {
        let mut details = msg.details;
        details.insert("kind".to_string(), "callback".to_string());
        self.follow_up(&msg.token, Outcome::Escalated, details, ctx)
    }
}
