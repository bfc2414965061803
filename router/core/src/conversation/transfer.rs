//! Transfers (to an agent, department, language, skill or supervisor; warm or cold) and
//! language handovers at a shift change.

use actix::prelude::*;
use std::collections::BTreeMap;

use centralino_link::{ReserveOutcome, TransferTarget};
use centralino_proto::v1::{
    conversation_event::Kind, ConversationOutcome, HandedOver, TransferInfo, Transferred,
};
use tonic::Status;

use crate::metrics as m;
use crate::shared::Counters;
use crate::store::records::State;
use crate::texts::{self, Text};

use super::actor::ConversationActor;
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

    /// Applies a transfer to a queue target (department, language, skill, supervisor).
    pub(super) fn transfer_to_queue(
        &mut self,
        from: Option<String>,
        target: &TransferTarget,
        reason: &str,
        warm: bool,
    ) -> Result<String, Status> {
        let config = &self.shared.config;
        let (department, language, skill, label) = match target {
            TransferTarget::Department(d) => {
                if config.department(d).is_none() {
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
                if !config.agents.iter().any(|a| a.skills.contains_key(k)) {
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
                if !config.agents.iter().any(|a| a.skills.contains_key(&skill)) {
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
        };
        let now = self.shared.clock.now_ms();
        self.dequeue();
        self.rec.department = department;
        if let Some(language) = language {
            self.rec.serving_language = language;
            self.rec.pinned_language = true;
        }
        self.rec.extra_skill = skill;
        self.rec.sticky_agent = None;
        self.rec.queue_entered_at_ms = now;
        self.transfer_info = Some(TransferInfo {
            from_agent_id: from.clone().unwrap_or_default(),
            reason: reason.to_string(),
            transfers: self.rec.transfers + 1,
            warm,
        });
        match (warm, from) {
            (true, Some(agent)) if self.rec.state == State::Assigned => {
                self.warm_from = Some(agent)
            }
            (_, from) => {
                if let Some(agent) = from.or_else(|| self.rec.agent_id.clone()) {
                    if self.rec.state == State::Assigned {
                        self.tell_agent_ended(agent, ConversationOutcome::Transferred);
                    }
                }
                self.rec.state = State::Queued;
                self.rec.agent_id = None;
                self.rec.agent_name.clear();
            }
        }
        self.offer = None;
        self.last_position = None;
        self.enqueue();
        Ok(label)
    }

    pub(super) fn announce_transfer(
        &mut self,
        kind: &'static str,
        to: &str,
        reason: &str,
        warm: bool,
    ) {
        self.rec.transfers += 1;
        Counters::inc(&self.shared.counters.transfers);
        m::transfer(kind);
        let text = self.text(Text::Transferred, &[("to", to)]);
        self.emit(Kind::Transferred(Transferred {
            to: to.to_string(),
            reason: reason.to_string(),
            warm,
        }));
        self.system_message(text);
        self.integration(
            "transferred",
            BTreeMap::from([
                ("to".to_string(), to.to_string()),
                ("kind".to_string(), kind.to_string()),
                ("reason".to_string(), reason.to_string()),
                ("warm".to_string(), warm.to_string()),
            ]),
        );
        drop(self.persist_record());
    }
}

impl Handler<Transfer> for ConversationActor {
    type Result = ResponseActFuture<Self, Result<(), Status>>;

    fn handle(&mut self, msg: Transfer, _ctx: &mut Context<Self>) -> Self::Result {
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
            let result = self
                .transfer_to_queue(msg.agent_id.clone(), &msg.target, &msg.reason, msg.warm)
                .map(|label| self.announce_transfer(kind, &label, &msg.reason, msg.warm));
            return Box::pin(actix::fut::ready(result));
        };
        let Some(account) = self.shared.config.agents.iter().find(|a| a.id == target) else {
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
        self.transfer_info = Some(TransferInfo {
            from_agent_id: msg.agent_id.clone().unwrap_or_default(),
            reason: msg.reason.clone(),
            transfers: self.rec.transfers + 1,
            warm: msg.warm,
        });
        let request = reserve_request(
            &self.queue_entry(),
            &self.rec.department,
            false,
            &reservation_id,
            &target,
        );
        let agents = self.shared.agents.clone();
        Box::pin(
            async move { agents.reserve(request).await }
                .into_actor(self)
                .map(move |outcome, act, _ctx| {
                    match outcome {
                        Ok(ReserveOutcome::Held) => {}
                        Ok(ReserveOutcome::Rejected(reason)) => {
                            act.transfer_info = None;
                            return Err(Status::failed_precondition(format!(
                                "agent {target:?} cannot take the conversation now ({reason:?})"
                            )));
                        }
                        Err(status) => {
                            act.transfer_info = None;
                            return Err(status);
                        }
                    }
                    let still_valid = match &msg.agent_id {
                        Some(agent) => act.check_agent(agent).is_ok(),
                        None => matches!(act.rec.state, State::Queued | State::Assigned),
                    };
                    if !still_valid {
                        let agents = act.shared.agents.clone();
                        let (t, rid) = (target.clone(), reservation_id.clone());
                        actix::spawn(async move {
                            let _ = agents.cancel_reservation(&t, &rid).await;
                        });
                        act.transfer_info = None;
                        return Err(Status::failed_precondition(
                            "conversation changed meanwhile",
                        ));
                    }
                    act.dequeue();
                    let from = msg.agent_id.clone().or_else(|| act.rec.agent_id.clone());
                    if msg.warm && act.rec.state == State::Assigned {
                        act.warm_from = from;
                    } else {
                        if let (Some(agent), State::Assigned) = (from, act.rec.state) {
                            act.tell_agent_ended(agent, ConversationOutcome::Transferred);
                        }
                        act.rec.state = State::Queued;
                        act.rec.agent_id = None;
                        act.rec.agent_name.clear();
                    }
                    act.offer = Some((reservation_id, target));
                    act.direct_offer = true;
                    act.announce_transfer("agent", &target_name, &msg.reason, msg.warm);
                    Ok(())
                }),
        )
    }
}

impl Handler<HandOver> for ConversationActor {
    type Result = ();

    fn handle(&mut self, msg: HandOver, _ctx: &mut Context<Self>) {
        if self.rec.state != State::Queued {
            return;
        }
        let now = self.shared.clock.now_ms();
        self.rec.serving_language = msg.to.clone();
        if msg.to == self.rec.language {
            // Pulled back to the customer's own team.
            drop(self.persist_record());
            return;
        }
        Counters::inc(&self.shared.counters.handovers);
        m::handover(&msg.from, &msg.to);
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
        self.emit(Kind::HandedOver(HandedOver {
            from_language: msg.from.clone(),
            to_language: msg.to.clone(),
            reopens_at_unix_ms: reopens.unwrap_or_default(),
        }));
        self.system_message(text);
        self.integration(
            "handed_over",
            BTreeMap::from([("from".to_string(), msg.from), ("to".to_string(), msg.to)]),
        );
        drop(self.persist_record());
    }
}
