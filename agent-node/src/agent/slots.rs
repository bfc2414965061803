//! The agent's chat slots as plain data: held offers, active chats and wrap-ups.
//!
//! [`Slots`] decides; the actor around it keeps the timers, talks to the desktop and the
//! router, and tells it what happened (an answer, a timer that ran out, the router's
//! confirmation). A slot is taken by a held offer, an active chat or a wrap-up, and a new
//! offer is held only while the load is below the capacity, so the load never exceeds it
//! (DESIGN.md §4, invariant 2). Nothing here reads a clock: callers pass `now_ms`.

use std::collections::{HashMap, HashSet, VecDeque};

use centralino_link::RejectReason;
use centralino_proto::v1::AgentStatus;

/// How many answered reservation ids an agent remembers for idempotent retries.
pub const REMEMBERED_RESERVATIONS: usize = 256;

/// What the agent is doing besides chats, as far as a new reservation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// A desktop stream is attached.
    pub connected: bool,
    /// The agent's status.
    pub status: AgentStatus,
    /// The agent's team works now.
    pub on_shift: bool,
}

impl Presence {
    /// Returns why no reservation may be held now, if anything stops it.
    pub fn refuses(&self) -> Option<RejectReason> {
        if !self.connected {
            return Some(RejectReason::NotLoggedIn);
        }
        if self.status != AgentStatus::Available {
            // Away, offline, disconnected, or on a phone call: calls and chats exclude
            // each other, so an agent on a call takes no chat.
            return Some(RejectReason::NotAvailable);
        }
        (!self.on_shift).then_some(RejectReason::OffShift)
    }
}

/// The answer to [`Slots::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// A new offer holds a slot: show it and start its timer.
    New,
    /// This reservation already holds a slot (a retried request): nothing to do.
    Again,
    /// No slot is held.
    Rejected(RejectReason),
}

/// Why an answer to an offer does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferError {
    /// No such offer was ever held here.
    NotFound,
    /// The offer was already answered, timed out or withdrawn.
    Answered,
    /// The offer is being accepted.
    BeingAccepted,
}

/// The answer to [`Slots::begin_accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepting {
    /// The accept starts now: send it to the router for the conversation.
    Started(String),
    /// An accept of this offer is already on its way.
    Already,
}

/// The answer to [`Slots::cancel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The open offer of this conversation is withdrawn and its slot free.
    Withdrawn(String),
    /// The offer is being accepted; the router settles it.
    Accepting,
    /// Nothing is held under this id; a reservation arriving later is refused.
    NotHeld,
}

/// An offer that ran out without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    /// Conversation of the offer.
    pub conversation_id: String,
    /// The agent missed `max_missed_offers` in a row: set them away.
    pub away: bool,
}

/// An open offer: the slot is held until it is answered.
#[derive(Debug, Clone)]
struct Held {
    conversation_id: String,
    /// Accept sent to the router, awaiting its confirmation.
    accepting: bool,
}

/// One agent's chat slots.
#[derive(Debug, Clone)]
pub struct Slots {
    capacity: u32,
    max_missed_offers: u32,
    /// Open offers by reservation id.
    held: HashMap<String, Held>,
    active: HashSet<String>,
    /// Conversations whose wrap-up still takes a slot (one entry per wrap-up).
    wrap_ups: Vec<String>,
    missed_in_row: u32,
    /// Reservation ids answered or withdrawn, oldest first.
    answered: VecDeque<String>,
    idle_since_ms: i64,
}

impl Slots {
    /// Returns empty slots; the agent is set away after `max_missed_offers` (at least 1)
    /// offers missed in a row.
    pub fn new(capacity: u32, max_missed_offers: u32, now_ms: i64) -> Self {
        Self {
            capacity,
            max_missed_offers: max_missed_offers.max(1),
            held: HashMap::new(),
            active: HashSet::new(),
            wrap_ups: Vec::new(),
            missed_in_row: 0,
            answered: VecDeque::new(),
            idle_since_ms: now_ms,
        }
    }

    /// Returns the chat capacity.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Sets the chat capacity (a change of the directory). Slots taken beyond it stay
    /// taken: only new offers see the lower capacity.
    pub fn set_capacity(&mut self, capacity: u32) {
        self.capacity = capacity;
    }

    /// Returns the slots taken: held offers, active chats and wrap-ups.
    pub fn load(&self) -> u32 {
        (self.held.len() + self.active.len() + self.wrap_ups.len()) as u32
    }

    /// Returns when the agent last became free of any chat.
    pub fn idle_since_ms(&self) -> i64 {
        self.idle_since_ms
    }

    /// Returns whether the agent holds `conversation_id` as an active chat.
    pub fn is_active(&self, conversation_id: &str) -> bool {
        self.active.contains(conversation_id)
    }

    /// Returns the active chats, sorted.
    pub fn active(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.active.iter().cloned().collect();
        ids.sort();
        ids
    }

    /// Returns whether any chat is active.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Returns the reservation whose accept of `conversation_id` awaits the router.
    pub fn accepting(&self, conversation_id: &str) -> Option<&str> {
        self.held
            .iter()
            .find(|(_, h)| h.accepting && h.conversation_id == conversation_id)
            .map(|(rid, _)| rid.as_str())
    }

    /// Holds a slot for `conversation_id` under `reservation_id` if the agent can take it.
    /// A retried reservation is held once; one answered or withdrawn is refused.
    pub fn reserve(
        &mut self,
        reservation_id: &str,
        conversation_id: &str,
        presence: Presence,
    ) -> Reserved {
        if self.held.contains_key(reservation_id) {
            return Reserved::Again;
        }
        if self.answered.iter().any(|rid| rid == reservation_id) {
            return Reserved::Rejected(RejectReason::AlreadyHeld);
        }
        if let Some(reason) = presence.refuses() {
            return Reserved::Rejected(reason);
        }
        if self.active.contains(conversation_id)
            || self
                .held
                .values()
                .any(|h| h.conversation_id == conversation_id)
        {
            return Reserved::Rejected(RejectReason::AlreadyHeld);
        }
        if self.load() >= self.capacity {
            return Reserved::Rejected(RejectReason::Full);
        }
        self.held.insert(
            reservation_id.to_string(),
            Held {
                conversation_id: conversation_id.to_string(),
                accepting: false,
            },
        );
        Reserved::New
    }

    /// The agent (or the department's auto-accept) takes an offer; the slot stays held
    /// until the router confirms ([`Slots::accepted`]) or refuses ([`Slots::refused`]).
    pub fn begin_accept(&mut self, reservation_id: &str) -> Result<Accepting, OfferError> {
        match self.held.get_mut(reservation_id) {
            Some(held) if held.accepting => Ok(Accepting::Already),
            Some(held) => {
                held.accepting = true;
                Ok(Accepting::Started(held.conversation_id.clone()))
            }
            None => Err(self.unknown(reservation_id)),
        }
    }

    /// The router assigned the conversation: the held slot becomes an active chat.
    /// Returns the conversation.
    pub fn accepted(&mut self, reservation_id: &str) -> Option<String> {
        let held = self.settle(reservation_id, |_| true)?;
        self.missed_in_row = 0;
        self.active.insert(held.clone());
        Some(held)
    }

    /// The router refused the assignment (the conversation is gone): the slot is free.
    /// Returns the conversation.
    pub fn refused(&mut self, reservation_id: &str) -> Option<String> {
        self.settle(reservation_id, |_| true)
    }

    /// The agent declines an open offer: the slot is free. Returns the conversation.
    pub fn decline(&mut self, reservation_id: &str) -> Result<String, OfferError> {
        match self.held.get(reservation_id) {
            Some(held) if held.accepting => Err(OfferError::BeingAccepted),
            Some(_) => self
                .settle(reservation_id, |h| !h.accepting)
                .ok_or(OfferError::NotFound),
            None => Err(self.unknown(reservation_id)),
        }
    }

    /// The offer's timer ran out: an open offer frees its slot and counts as missed.
    /// Returns `None` when the offer was answered meanwhile or is being accepted.
    pub fn time_out(&mut self, reservation_id: &str) -> Option<TimedOut> {
        let conversation_id = self.settle(reservation_id, |h| !h.accepting)?;
        self.missed_in_row += 1;
        let away = self.missed_in_row >= self.max_missed_offers;
        if away {
            self.missed_in_row = 0;
        }
        Some(TimedOut {
            conversation_id,
            away,
        })
    }

    /// The router withdraws a reservation (the customer left, or another agent won).
    pub fn cancel(&mut self, reservation_id: &str) -> Cancelled {
        match self.held.get(reservation_id) {
            None => {
                // The cancel overtook its reservation: refuse the reservation when it comes.
                self.remember(reservation_id);
                Cancelled::NotHeld
            }
            Some(held) if held.accepting => Cancelled::Accepting,
            Some(_) => self
                .settle(reservation_id, |h| !h.accepting)
                .map_or(Cancelled::NotHeld, Cancelled::Withdrawn),
        }
    }

    /// Withdraws every open offer (the agent left, or is no longer available); offers being
    /// accepted stay. Returns (reservation, conversation) pairs, sorted.
    pub fn revoke_open(&mut self) -> Vec<(String, String)> {
        let mut open: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.accepting)
            .map(|(rid, _)| rid.clone())
            .collect();
        open.sort();
        open.into_iter()
            .filter_map(|rid| {
                let cid = self.settle(&rid, |h| !h.accepting)?;
                Some((rid, cid))
            })
            .collect()
    }

    /// The agent becomes available again by choice: missed offers start counting anew.
    pub fn available_again(&mut self) {
        self.missed_in_row = 0;
    }

    /// Gives the agent conversations they held before a restart or failover. These are
    /// not offers: they are taken even beyond the capacity, which only bounds new offers.
    pub fn restore(&mut self, conversation_ids: impl IntoIterator<Item = String>) {
        self.active.extend(conversation_ids);
    }

    /// An active chat ended: its slot stays taken by the wrap-up until
    /// [`Slots::end_wrap_up`]. Returns whether the agent held the conversation.
    pub fn end(&mut self, conversation_id: &str) -> bool {
        if !self.active.remove(conversation_id) {
            return false;
        }
        self.wrap_ups.push(conversation_id.to_string());
        true
    }

    /// The wrap-up of `conversation_id` is over: its slot is free. Returns whether one was
    /// running.
    pub fn end_wrap_up(&mut self, conversation_id: &str, now_ms: i64) -> bool {
        let Some(i) = self.wrap_ups.iter().position(|c| c == conversation_id) else {
            return false;
        };
        self.wrap_ups.swap_remove(i);
        if self.load() == 0 {
            self.idle_since_ms = now_ms;
        }
        true
    }

    /// Takes every active chat away (they go back to their queues or on to other agents),
    /// without a wrap-up. Returns them, sorted.
    pub fn drain_active(&mut self) -> Vec<String> {
        let mut ids: Vec<String> = self.active.drain().collect();
        ids.sort();
        ids
    }

    /// Removes an offer matching `open`, remembering its id; returns its conversation.
    fn settle(&mut self, reservation_id: &str, open: impl Fn(&Held) -> bool) -> Option<String> {
        if !self.held.get(reservation_id).is_some_and(open) {
            return None;
        }
        let held = self.held.remove(reservation_id)?;
        self.remember(reservation_id);
        Some(held.conversation_id)
    }

    fn remember(&mut self, reservation_id: &str) {
        if self.answered.len() >= REMEMBERED_RESERVATIONS {
            self.answered.pop_front();
        }
        self.answered.push_back(reservation_id.to_string());
    }

    fn unknown(&self, reservation_id: &str) -> OfferError {
        if self.answered.iter().any(|rid| rid == reservation_id) {
            OfferError::Answered
        } else {
            OfferError::NotFound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: Presence = Presence {
        connected: true,
        status: AgentStatus::Available,
        on_shift: true,
    };

    fn slots(capacity: u32) -> Slots {
        Slots::new(capacity, 2, 0)
    }

    /// Reserves and confirms `cid` under reservation `r-<cid>`.
    fn take(slots: &mut Slots, cid: &str) {
        let rid = format!("r-{cid}");
        assert_eq!(slots.reserve(&rid, cid, READY), Reserved::New);
        assert_eq!(
            slots.begin_accept(&rid),
            Ok(Accepting::Started(cid.to_string()))
        );
        assert_eq!(slots.accepted(&rid).as_deref(), Some(cid));
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let mut s = slots(2);
        take(&mut s, "c1");
        assert_eq!(s.reserve("r2", "c2", READY), Reserved::New);
        assert_eq!(s.load(), 2);
        assert_eq!(
            s.reserve("r3", "c3", READY),
            Reserved::Rejected(RejectReason::Full)
        );
        assert_eq!(s.load(), 2);
        // A wrap-up still counts.
        assert!(s.end("c1"));
        assert_eq!(
            s.reserve("r4", "c4", READY),
            Reserved::Rejected(RejectReason::Full)
        );
    }

    #[test]
    fn a_retried_reservation_is_held_once() {
        let mut s = slots(3);
        assert_eq!(s.reserve("r1", "c1", READY), Reserved::New);
        assert_eq!(s.reserve("r1", "c1", READY), Reserved::Again);
        assert_eq!(s.load(), 1);
        // The same conversation under another id is not a second slot either.
        assert_eq!(
            s.reserve("r2", "c1", READY),
            Reserved::Rejected(RejectReason::AlreadyHeld)
        );
        // Once answered, a late retry is refused rather than offered again.
        assert_eq!(s.decline("r1").as_deref(), Ok("c1"));
        assert_eq!(
            s.reserve("r1", "c1", READY),
            Reserved::Rejected(RejectReason::AlreadyHeld)
        );
        assert_eq!(s.load(), 0);
    }

    #[test]
    fn a_cancel_before_its_reservation_refuses_it() {
        let mut s = slots(3);
        assert_eq!(s.cancel("r1"), Cancelled::NotHeld);
        assert_eq!(
            s.reserve("r1", "c1", READY),
            Reserved::Rejected(RejectReason::AlreadyHeld)
        );
        assert_eq!(s.reserve("r2", "c2", READY), Reserved::New);
        assert_eq!(s.cancel("r2"), Cancelled::Withdrawn("c2".to_string()));
        assert_eq!(s.load(), 0);
    }

    #[test]
    fn ending_a_chat_frees_exactly_one_slot_after_its_wrap_up() {
        let mut s = slots(3);
        take(&mut s, "c1");
        take(&mut s, "c2");
        assert_eq!(s.reserve("r3", "c3", READY), Reserved::New);
        assert_eq!(s.load(), 3);
        assert!(s.end("c1"));
        assert!(!s.end("c1"), "a chat ends once");
        assert!(!s.end("unknown"));
        assert_eq!(s.load(), 3, "the wrap-up holds the slot");
        assert!(!s.is_active("c1"));
        assert!(!s.end_wrap_up("c2", 10), "c2 is not wrapping up");
        assert!(s.end_wrap_up("c1", 10));
        assert!(!s.end_wrap_up("c1", 11), "a wrap-up ends once");
        assert_eq!(s.load(), 2);
        assert_eq!(s.active(), vec!["c2".to_string()]);
        assert_eq!(s.reserve("r4", "c4", READY), Reserved::New);
    }

    #[test]
    fn idle_since_moves_when_the_last_wrap_up_ends() {
        let mut s = Slots::new(2, 2, 100);
        take(&mut s, "c1");
        take(&mut s, "c2");
        s.end("c1");
        s.end_wrap_up("c1", 500);
        assert_eq!(s.idle_since_ms(), 100, "c2 is still active");
        s.end("c2");
        s.end_wrap_up("c2", 900);
        assert_eq!(s.idle_since_ms(), 900);
    }

    #[test]
    fn decline_and_timeout_free_the_slot() {
        let mut s = Slots::new(1, 5, 0);
        assert_eq!(s.reserve("r1", "c1", READY), Reserved::New);
        assert_eq!(s.decline("r1").as_deref(), Ok("c1"));
        assert_eq!(s.load(), 0);
        assert_eq!(s.decline("r1"), Err(OfferError::Answered));
        assert_eq!(s.decline("nope"), Err(OfferError::NotFound));

        assert_eq!(s.reserve("r2", "c2", READY), Reserved::New);
        assert_eq!(
            s.time_out("r2"),
            Some(TimedOut {
                conversation_id: "c2".to_string(),
                away: false
            })
        );
        assert_eq!(s.load(), 0);
        assert_eq!(
            s.time_out("r2"),
            None,
            "a timer of an answered offer is stale"
        );
        assert_eq!(s.begin_accept("r2"), Err(OfferError::Answered));
    }

    #[test]
    fn an_offer_being_accepted_is_not_declined_timed_out_or_withdrawn() {
        let mut s = slots(2);
        assert_eq!(s.reserve("r1", "c1", READY), Reserved::New);
        assert_eq!(
            s.begin_accept("r1"),
            Ok(Accepting::Started("c1".to_string()))
        );
        assert_eq!(s.begin_accept("r1"), Ok(Accepting::Already));
        assert_eq!(s.accepting("c1"), Some("r1"));
        assert_eq!(s.decline("r1"), Err(OfferError::BeingAccepted));
        assert_eq!(s.time_out("r1"), None);
        assert_eq!(s.cancel("r1"), Cancelled::Accepting);
        assert!(s.revoke_open().is_empty());
        assert_eq!(s.load(), 1);
        // The router refuses: the slot is free and nothing is active.
        assert_eq!(s.refused("r1").as_deref(), Some("c1"));
        assert_eq!(s.load(), 0);
        assert!(!s.is_active("c1"));
        assert_eq!(s.accepting("c1"), None);
    }

    #[test]
    fn missed_offers_in_a_row_set_the_agent_away() {
        let mut s = Slots::new(3, 2, 0);
        let miss = |s: &mut Slots, n: u32| {
            let rid = format!("r{n}");
            assert_eq!(s.reserve(&rid, &format!("c{n}"), READY), Reserved::New);
            s.time_out(&rid).expect("open offer").away
        };
        assert!(!miss(&mut s, 1));
        assert!(miss(&mut s, 2), "second miss in a row");
        // The count starts again after going away.
        assert!(!miss(&mut s, 3));
        // An accepted offer breaks the row.
        take(&mut s, "c4");
        assert!(!miss(&mut s, 5));
        // So does becoming available again.
        s.available_again();
        assert!(!miss(&mut s, 6));
        assert!(miss(&mut s, 7));
    }

    #[test]
    fn presence_gates_reservations() {
        let mut s = slots(3);
        let cases = [
            (
                Presence {
                    connected: false,
                    ..READY
                },
                RejectReason::NotLoggedIn,
            ),
            (
                Presence {
                    on_shift: false,
                    ..READY
                },
                RejectReason::OffShift,
            ),
            (
                Presence {
                    status: AgentStatus::OnCall,
                    ..READY
                },
                RejectReason::NotAvailable,
            ),
            (
                Presence {
                    status: AgentStatus::Away,
                    ..READY
                },
                RejectReason::NotAvailable,
            ),
            (
                Presence {
                    status: AgentStatus::Disconnected,
                    ..READY
                },
                RejectReason::NotAvailable,
            ),
        ];
        for (presence, reason) in cases {
            assert_eq!(
                s.reserve("r1", "c1", presence),
                Reserved::Rejected(reason),
                "{presence:?}"
            );
        }
        assert_eq!(s.load(), 0);
        // None of these refusals remembered the id: it may be held once the agent can.
        assert_eq!(s.reserve("r1", "c1", READY), Reserved::New);
    }

    #[test]
    fn revoking_frees_open_offers_and_draining_takes_chats_away() {
        let mut s = slots(3);
        take(&mut s, "c1");
        assert_eq!(s.reserve("r2", "c2", READY), Reserved::New);
        assert_eq!(s.reserve("r3", "c3", READY), Reserved::New);
        assert_eq!(
            s.revoke_open(),
            vec![
                ("r2".to_string(), "c2".to_string()),
                ("r3".to_string(), "c3".to_string())
            ]
        );
        assert_eq!(s.load(), 1);
        assert_eq!(s.drain_active(), vec!["c1".to_string()]);
        assert_eq!(s.load(), 0, "drained chats take no wrap-up");
    }

    #[test]
    fn restored_chats_count_but_do_not_open_new_slots() {
        let mut s = slots(1);
        s.restore(["a".to_string(), "b".to_string()]);
        assert_eq!(s.load(), 2);
        assert_eq!(
            s.reserve("r1", "c1", READY),
            Reserved::Rejected(RejectReason::Full)
        );
        assert_eq!(
            s.reserve("r2", "a", READY),
            Reserved::Rejected(RejectReason::AlreadyHeld)
        );
    }

    #[test]
    fn answered_ids_are_remembered_up_to_a_bound() {
        let mut s = slots(1);
        for n in 0..=REMEMBERED_RESERVATIONS {
            assert_eq!(s.cancel(&format!("r{n}")), Cancelled::NotHeld);
        }
        // The oldest is forgotten, the newest still refused.
        assert_eq!(s.reserve("r0", "c0", READY), Reserved::New);
        assert_eq!(s.decline("r0").as_deref(), Ok("c0"));
        let newest = format!("r{REMEMBERED_RESERVATIONS}");
        assert_eq!(
            s.reserve(&newest, "c1", READY),
            Reserved::Rejected(RejectReason::AlreadyHeld)
        );
    }

    mod model {
        //! Random sequences of offer and chat events against a naive reference.
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Debug, Clone)]
        enum Op {
            Reserve { rid: u8, cid: u8, ready: bool },
            BeginAccept(u8),
            Confirm(u8),
            Refuse(u8),
            Decline(u8),
            TimeOut(u8),
            Cancel(u8),
            Revoke,
            Close(u8),
            WrapUpEnd(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            let id = 0u8..8;
            prop_oneof![
                3 => (id.clone(), id.clone(), proptest::bool::weighted(0.9))
                    .prop_map(|(rid, cid, ready)| Op::Reserve { rid, cid, ready }),
                2 => id.clone().prop_map(Op::BeginAccept),
                2 => id.clone().prop_map(Op::Confirm),
                1 => id.clone().prop_map(Op::Refuse),
                1 => id.clone().prop_map(Op::Decline),
                1 => id.clone().prop_map(Op::TimeOut),
                1 => id.clone().prop_map(Op::Cancel),
                1 => Just(Op::Revoke),
                2 => id.clone().prop_map(Op::Close),
                2 => id.prop_map(Op::WrapUpEnd),
            ]
        }

        /// The reference: offers by id (conversation, accepting), chats, wrap-ups.
        #[derive(Default)]
        struct Model {
            held: BTreeMap<String, (String, bool)>,
            answered: HashSet<String>,
            active: HashSet<String>,
            wrap_ups: Vec<String>,
        }

        impl Model {
            fn load(&self) -> u32 {
                (self.held.len() + self.active.len() + self.wrap_ups.len()) as u32
            }
            fn settle(&mut self, rid: &str, only_open: bool) -> Option<String> {
                let (cid, accepting) = self.held.get(rid)?.clone();
                if only_open && accepting {
                    return None;
                }
                self.held.remove(rid);
                self.answered.insert(rid.to_string());
                Some(cid)
            }
        }

        proptest! {
            #[test]
            fn load_counts_every_slot_and_never_exceeds_capacity(
                capacity in 1u32..4,
                ops in proptest::collection::vec(op(), 1..80),
            ) {
                let mut slots = Slots::new(capacity, 3, 0);
                let mut model = Model::default();
                for (t, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Reserve { rid, cid, ready } => {
                            let (rid, cid) = (format!("r{rid}"), format!("c{cid}"));
                            let presence = Presence { connected: ready, ..READY };
                            let expected = if model.held.contains_key(&rid) {
                                Reserved::Again
                            } else if model.answered.contains(&rid) {
                                Reserved::Rejected(RejectReason::AlreadyHeld)
                            } else if !ready {
                                Reserved::Rejected(RejectReason::NotLoggedIn)
                            } else if model.active.contains(&cid)
                                || model.held.values().any(|(c, _)| *c == cid)
                            {
                                Reserved::Rejected(RejectReason::AlreadyHeld)
                            } else if model.load() >= capacity {
                                Reserved::Rejected(RejectReason::Full)
                            } else {
                                model.held.insert(rid.clone(), (cid.clone(), false));
                                Reserved::New
                            };
                            prop_assert_eq!(slots.reserve(&rid, &cid, presence), expected);
                        }
                        Op::BeginAccept(rid) => {
                            let rid = format!("r{rid}");
                            let expected = match model.held.get_mut(&rid) {
                                Some((_, true)) => Ok(Accepting::Already),
                                Some((cid, accepting)) => {
                                    *accepting = true;
                                    Ok(Accepting::Started(cid.clone()))
                                }
                                None if model.answered.contains(&rid) => Err(OfferError::Answered),
                                None => Err(OfferError::NotFound),
                            };
                            prop_assert_eq!(slots.begin_accept(&rid), expected);
                        }
                        Op::Confirm(rid) | Op::Refuse(rid) => {
                            let confirm = matches!(op, Op::Confirm(_));
                            let rid = format!("r{rid}");
                            // The router only answers accepts it was sent.
                            if model.held.get(&rid).is_some_and(|(_, accepting)| *accepting) {
                                let cid = model.settle(&rid, false);
                                let got = if confirm {
                                    if let Some(cid) = &cid {
                                        model.active.insert(cid.clone());
                                    }
                                    slots.accepted(&rid)
                                } else {
                                    slots.refused(&rid)
                                };
                                prop_assert_eq!(got, cid);
                            }
                        }
                        Op::Decline(rid) => {
                            let rid = format!("r{rid}");
                            let expected = match model.held.get(&rid) {
                                Some((_, true)) => Err(OfferError::BeingAccepted),
                                Some(_) => model.settle(&rid, true).ok_or(OfferError::NotFound),
                                None if model.answered.contains(&rid) => Err(OfferError::Answered),
                                None => Err(OfferError::NotFound),
                            };
                            prop_assert_eq!(slots.decline(&rid), expected);
                        }
                        Op::TimeOut(rid) => {
                            let rid = format!("r{rid}");
                            let expected = model.settle(&rid, true);
                            let got = slots.time_out(&rid).map(|t| t.conversation_id);
                            prop_assert_eq!(got, expected);
                        }
                        Op::Cancel(rid) => {
                            let rid = format!("r{rid}");
                            let expected = match model.held.get(&rid) {
                                Some((_, true)) => Cancelled::Accepting,
                                Some(_) => model
                                    .settle(&rid, true)
                                    .map_or(Cancelled::NotHeld, Cancelled::Withdrawn),
                                None => {
                                    model.answered.insert(rid.clone());
                                    Cancelled::NotHeld
                                }
                            };
                            prop_assert_eq!(slots.cancel(&rid), expected);
                        }
                        Op::Revoke => {
                            let open: Vec<String> = model
                                .held
                                .iter()
                                .filter(|(_, (_, accepting))| !accepting)
                                .map(|(rid, _)| rid.clone())
                                .collect();
                            let expected: Vec<(String, String)> = open
                                .into_iter()
                                .filter_map(|rid| Some((rid.clone(), model.settle(&rid, true)?)))
                                .collect();
                            prop_assert_eq!(slots.revoke_open(), expected);
                        }
                        Op::Close(cid) => {
                            let cid = format!("c{cid}");
                            let expected = model.active.remove(&cid);
                            if expected {
                                model.wrap_ups.push(cid.clone());
                            }
                            prop_assert_eq!(slots.end(&cid), expected);
                        }
                        Op::WrapUpEnd(cid) => {
                            let cid = format!("c{cid}");
                            let expected = match model.wrap_ups.iter().position(|c| *c == cid) {
                                Some(i) => {
                                    model.wrap_ups.remove(i);
                                    true
                                }
                                None => false,
                            };
                            prop_assert_eq!(slots.end_wrap_up(&cid, t as i64), expected);
                        }
                    }
                    prop_assert!(slots.load() <= capacity, "load {} over {}", slots.load(), capacity);
                    prop_assert_eq!(slots.load(), model.load());
                    let mut active: Vec<String> = model.active.iter().cloned().collect();
                    active.sort();
                    prop_assert_eq!(slots.active(), active);
                }
            }
        }
    }
}
