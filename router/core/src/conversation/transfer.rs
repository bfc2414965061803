//! Transfers (to an agent, department, language, skill or supervisor; warm or cold) and
//! language handovers at a shift change.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_link::{ReserveOutcome, TransferTarget};
use centralino_proto::v1::{
    conversation_event::Kind, ConversationOutcome, HandedOver, TransferInfo, Transferred,
};
use tonic::Status;

use std::pin::Pin;

use crate::metrics as m;
use crate::shared::Counters;
use crate::store::records::{ConversationRecord, MessageRecord, State};
use crate::texts::{self, Text};

use super::actor::{answer, Acked, ConversationActor};
use super::messages::{HandOver, Transfer};
use crate::dispatch::outbound::reserve_request;

impl ConversationActor {
    pub(super) fn cancel_direct_offer(&mut self) {
        if !self.direct_offer {
            return;
        }
        self.direct_offer = false;
        if let Some((rid, agent)) = self.offer.take() {
            let agents = self.shared.agents.clone();
            actix::spawn(async move {
                let _ = agents.cancel_reservation(&agent, &rid).await;
            });
        }
    }

    /// Checks who may transfer and whether the limit allows one more.
    pub(super) fn check_transfer(&self, agent_id: Option<&str>) -> Result<(), Status> {
        match agent_id {
            Some(agent) => self.check_agent(agent)?,
            None if self.rec.state == State::Closed || self.rec.state == State::Offline => {
                return Err(Status::failed_precondition(
                    "only an open conversation can be transferred",
                ))
            }
            None => {}
        }
        if self.warm_from.is_some() || self.direct_offer {
            return Err(Status::failed_precondition(
                "a transfer is already under way",
            ));
        }
        let max = self.shared.config.routing.max_transfers;
        if self.rec.transfers >= max {
            return Err(Status::failed_precondition(format!(
                "the conversation reached its limit of {max} transfers"
            )));
        }
        Ok(())
    }

    /// Returns where a transfer to a queue target (department, language, skill,
    /// supervisor) goes: the department, the language and skill it pins, and the label
    /// the customer is shown.
    fn queue_target(&self, target: &TransferTarget) -> Result<QueueTarget, Status> {
        let config = &self.shared.config;
        let directory = self.shared.directory.snapshot();
        let anyone_has = |skill: &str| {
            directory
                .agents
                .values()
                .any(|a| !a.disabled && a.config.skills.contains_key(skill))
        };
        Ok(match target {
            TransferTarget::Department(d) => {
                if self.shared.department(d).is_none() {
                    return Err(Status::not_found(format!("unknown department {d:?}")));
                }
                (d.clone(), None, None, d.clone())
            }
            TransferTarget::Language(l) => {
                if !config.languages().contains(l.as_str()) {
                    return Err(Status::invalid_argument(format!(
                        "no team serves language {l:?}"
                    )));
                }
                (
                    self.rec.department.clone(),
                    Some(l.clone()),
                    None,
                    texts::language_name(l, &self.rec.language),
                )
            }
            TransferTarget::Skill(k) => {
                if !anyone_has(k) {
                    return Err(Status::not_found(format!("no agent has the skill {k:?}")));
                }
                (
                    self.rec.department.clone(),
                    None,
                    Some(k.clone()),
                    k.clone(),
                )
            }
            TransferTarget::Supervisor => {
                let skill = config.routing.supervisor_skill.clone();
                if !anyone_has(&skill) {
                    return Err(Status::not_found("no supervisor is configured"));
                }
                (
                    self.rec.department.clone(),
                    None,
                    Some(skill),
                    "supervisor".to_string(),
                )
            }
            TransferTarget::Agent(_) => {
                return Err(Status::internal("agent transfers reserve first"))
            }
        })
    }

    /// A transfer to a queue target, write first: the record in its new queue (and the
    /// customer's notice) is written, then applied — out of the old queue, into the new
    /// one, the agents and the customer told.
    fn transfer_to_queue(
        &mut self,
        ctx: &mut Context<Self>,
        from: Option<String>,
        kind: &'static str,
        target: &TransferTarget,
        reason: &str,
        warm: bool,
    ) -> Acked<()> {
        let (department, language, skill, label) = match self.queue_target(target) {
            Ok(target) => target,
            Err(status) => return answer(Err(status)),
        };
        let now = self.shared.clock.now_ms();
        let stays = warm && from.is_some() && self.rec.state == State::Assigned;
        let mut next = self.next_record();
        next.department = department;
        if let Some(language) = language {
            next.serving_language = language;
            next.pinned_language = true;
        }
        next.extra_skill = skill;
        next.sticky_agent = None;
        next.queue_entered_at_ms = now;
        if !stays {
            next.state = State::Queued;
            next.agent_id = None;
            next.agent_name.clear();
        }
        let info = TransferInfo {
            from_agent_id: from.clone().unwrap_or_default(),
            reason: reason.to_string(),
            transfers: self.rec.transfers + 1,
            warm,
        };
        let notice = self.stage_notice(&mut next, &label, reason, warm);
        let ops = Self::record_ops(&next, &notice.message.iter().collect::<Vec<_>>());
        self.write_then(ctx, ops, move |act, _ctx| {
            act.dequeue();
            act.transfer_info = Some(info);
            if stays {
                act.warm_from = from;
            } else if act.rec.state == State::Assigned {
                if let Some(agent) = from.or_else(|| act.rec.agent_id.clone()) {
                    act.tell_agent_ended(agent, ConversationOutcome::Transferred);
                }
            }
            act.rec = next;
            act.offer = None;
            act.last_position = None;
            act.enqueue();
            act.announce_transfer(kind, notice);
            answer(Ok(()))
        })
    }

    /// Counts one more transfer in `next` and stages what tells the customer: the
    /// event's id and the system message, written with the transfer.
    fn stage_notice(
        &mut self,
        next: &mut ConversationRecord,
        to: &str,
        reason: &str,
        warm: bool,
    ) -> Notice {
        next.transfers += 1;
        let event_id = self.reserve_event_id();
        let text = self.text(Text::Transferred, &[("to", to)]);
        let message = self.stage_system(text);
        next.next_event_id = self.next_event_id;
        Notice {
            event_id,
            message,
            to: to.to_string(),
            reason: reason.to_string(),
            warm,
        }
    }

    /// Applies a durable transfer's notice: counters, the customer's events, the
    /// integration event.
    fn announce_transfer(&mut self, kind: &'static str, notice: Notice) {
        Counters::inc(&self.shared.counters.transfers);
        m::transfer(kind);
        self.emit_at(
            notice.event_id,
            Kind::Transferred(Transferred {
                to: notice.to.clone(),
                reason: notice.reason.clone(),
                warm: notice.warm,
            }),
        );
        if let Some(message) = notice.message {
            self.apply_message(message);
        }
        self.integration(
            "transferred",
            BTreeMap::from([
                ("to".to_string(), notice.to),
                ("kind".to_string(), kind.to_string()),
                ("reason".to_string(), notice.reason),
                ("warm".to_string(), notice.warm.to_string()),
            ]),
        );
    }
}

/// A queue target: department, pinned language, extra skill, label.
type QueueTarget = (String, Option<String>, Option<String>, String);

/// What tells the customer about a transfer, staged before its write.
struct Notice {
    event_id: u64,
    message: Option<MessageRecord>,
    to: String,
    reason: String,
    warm: bool,
}

impl Handler<Transfer> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<(), Status>>;

    fn handle(&mut self, msg: Transfer, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(status) = self.check_transfer(msg.agent_id.as_deref()) {
            return Box::pin(actix::fut::ready(Err(status)));
        }
        let TransferTarget::Agent(target) = msg.target.clone() else {
            let kind = match &msg.target {
                TransferTarget::Department(_) => "department",
                TransferTarget::Language(_) => "language",
                TransferTarget::Skill(_) => "skill",
                _ => "supervisor",
            };
            let done = self.transfer_to_queue(
                ctx,
                msg.agent_id.clone(),
                kind,
                &msg.target,
                &msg.reason,
                msg.warm,
            );
            return Box::pin(actix::fut::wrap_future(done));
        };
        let directory = self.shared.directory.snapshot();
        let Some(account) = directory.enabled_agent(&target) else {
            return Box::pin(actix::fut::ready(Err(Status::not_found(format!(
                "unknown agent {target:?}"
            )))));
        };
        if self.rec.agent_id.as_deref() == Some(target.as_str()) {
            return Box::pin(actix::fut::ready(Err(Status::invalid_argument(
                "the conversation is already with this agent",
            ))));
        }
        let target_name = account.name.clone();
        let reservation_id = uuid::Uuid::new_v4().simple().to_string();
        let info = TransferInfo {
            from_agent_id: msg.agent_id.clone().unwrap_or_default(),
            reason: msg.reason.clone(),
            transfers: self.rec.transfers + 1,
            warm: msg.warm,
        };
        // The offer shows the transfer's context.
        self.transfer_info = Some(info.clone());
        let request = reserve_request(
            &self.queue_entry(),
            &self.rec.department,
            false,
            &reservation_id,
            &target,
        );
        self.transfer_info = None;
        let agents = self.shared.agents.clone();
        Box::pin(
            async move { agents.reserve(request).await }
                .into_actor(self)
                .then(move |outcome, act, ctx| {
                    let refused = |status| -> Pin<Box<dyn ActorFuture<Self, Output = _>>> {
                        Box::pin(actix::fut::ready(Err(status)))
                    };
                    match outcome {
                        Ok(ReserveOutcome::Held) => {}
                        Ok(ReserveOutcome::Rejected(reason)) => {
                            return refused(Status::failed_precondition(format!(
                                "agent {target:?} cannot take the conversation now ({reason:?})"
                            )));
                        }
                        Err(status) => return refused(status),
                    }
                    let still_valid = match &msg.agent_id {
                        Some(agent) => act.check_agent(agent).is_ok(),
                        None => matches!(act.rec.state, State::Queued | State::Assigned),
                    };
                    if !still_valid || act.warm_from.is_some() || act.direct_offer {
                        act.cancel_reservation(&target, &reservation_id);
                        return refused(Status::failed_precondition(
                            "conversation changed meanwhile",
                        ));
                    }
                    let from = msg.agent_id.clone().or_else(|| act.rec.agent_id.clone());
                    let stays = msg.warm && act.rec.state == State::Assigned;
                    let mut next = act.next_record();
                    if !stays {
                        next.state = State::Queued;
                        next.agent_id = None;
                        next.agent_name.clear();
                    }
                    let notice = act.stage_notice(&mut next, &target_name, &msg.reason, msg.warm);
                    let ops = Self::record_ops(&next, &notice.message.iter().collect::<Vec<_>>());
                    let (t, rid) = (target.clone(), reservation_id.clone());
                    let done = act.write_or(
                        ctx,
                        ops,
                        move |act, _ctx| {
                            act.dequeue();
                            act.transfer_info = Some(info);
                            if stays {
                                act.warm_from = from;
                            } else if let (Some(agent), State::Assigned) = (from, act.rec.state) {
                                act.tell_agent_ended(agent, ConversationOutcome::Transferred);
                            }
                            act.rec = next;
                            act.offer = Some((reservation_id, target));
                            act.direct_offer = true;
                            act.announce_transfer("agent", notice);
                            answer(Ok(()))
                        },
                        // Not durable: the held slot is given back.
                        move |act, _ctx| act.cancel_reservation(&t, &rid),
                    );
                    Box::pin(actix::fut::wrap_future(done))
                }),
        )
    }
}

impl ConversationActor {
    /// Gives back a slot reserved for a transfer that did not happen.
    fn cancel_reservation(&self, agent: &str, reservation_id: &str) {
        let agents = self.shared.agents.clone();
        let (agent, rid) = (agent.to_string(), reservation_id.to_string());
        actix::spawn(async move {
            let _ = agents.cancel_reservation(&agent, &rid).await;
        });
    }
}

impl Handler<HandOver> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: HandOver, ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        let now = self.shared.clock.now_ms();
        let mut next = self.next_record();
        next.serving_language = msg.to.clone();
        if msg.to == self.rec.language {
            // Pulled back to the customer's own team.
            let ops = Self::record_ops(&next, &[]);
            drop(self.write_or(
                ctx,
                ops,
                move |act, _ctx| {
                    act.rec.serving_language = next.serving_language;
                    answer(Ok(()))
                },
                |act, ctx| act.requeue_as_recorded(ctx),
            ));
            return;
        }
        let reopens = self.shared.shifts.reopens_at(&self.rec.language, now);
        let when = reopens
            .map(|r| self.shared.shifts.describe(&self.rec.language, r))
            .unwrap_or_default();
        let language = texts::language_name(&msg.to, &self.rec.language);
        let from = texts::language_name(&msg.from, &self.rec.language);
        let text = self.text(
            Text::Handover,
            &[
                ("language", language.as_str()),
                ("from", from.as_str()),
                ("reopens", when.as_str()),
            ],
        );
        let event_id = self.reserve_event_id();
        let notice = self.stage_system(text);
        next.next_event_id = self.next_event_id;
        let ops = Self::record_ops(&next, &notice.iter().collect::<Vec<_>>());
        // The queue moved the entry to the new team first; a failed write puts it back as
        // recorded.
        let written = self.write_or(
            ctx,
            ops,
            move |act, _ctx| {
                act.rec.serving_language = next.serving_language;
                Counters::inc(&act.shared.counters.handovers);
                m::handover(&msg.from, &msg.to);
                act.emit_at(
                    event_id,
                    Kind::HandedOver(HandedOver {
                        from_language: msg.from.clone(),
                        to_language: msg.to.clone(),
                        reopens_at_unix_ms: reopens.unwrap_or_default(),
                    }),
                );
                if let Some(notice) = notice {
                    act.apply_message(notice);
                }
                act.integration(
                    "handed_over",
                    BTreeMap::from([("from".to_string(), msg.from), ("to".to_string(), msg.to)]),
                );
                answer(Ok(()))
            },
            |act, ctx| act.requeue_as_recorded(ctx),
        );
        drop(written);
    }
}
