//! The actor's timers (offer timeout, wrap-up, disconnect grace, shift checks) driven by a
//! [`ManualClock`]: time moves only when a test says so, and the tests wait for what the
//! actor does (desktop events, calls to the router), never for wall time.

use std::time::Duration;

use async_trait::async_trait;
use centralino_base::clock::ManualClock;
use centralino_base::config::{AgentNodeConfig, TeamConfig};
use centralino_base::schedule::ScheduleConfig;
use centralino_link::{AgentAction, RejectReason, RouterCall, RouterReply};
use tokio::sync::mpsc;

use super::*;

/// How long a test waits for something the actor does before it fails (not a sleep).
const PATIENCE: Duration = Duration::from_secs(10);
/// 2026-03-10 12:00:00 UTC.
const T0: i64 = 1_773_144_000_000;

/// What the actor told the router.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Answered {
        reservation_id: String,
        answer: OfferAnswer,
    },
    Released {
        conversation_id: String,
        reason: String,
    },
    Availability {
        status: AgentStatus,
        load: u32,
        on_shift: bool,
    },
    Typing {
        conversation_id: String,
        typing: bool,
    },
}

/// A router that records calls and confirms every assignment.
struct Recorder(mpsc::UnboundedSender<Call>);

#[async_trait]
impl RouterLink for Recorder {
    async fn call(&self, call: RouterCall) -> Result<RouterReply, Status> {
        match call.action {
            AgentAction::OfferAnswered {
                reservation_id,
                answer,
            } => {
                let _ = self.0.send(Call::Answered {
                    reservation_id,
                    answer,
                });
            }
            AgentAction::Release { reason } => {
                let _ = self.0.send(Call::Released {
                    conversation_id: call.conversation_id,
                    reason,
                });
            }
            AgentAction::Typing { typing } => {
                let _ = self.0.send(Call::Typing {
                    conversation_id: call.conversation_id,
                    typing,
                });
            }
            AgentAction::Message { .. } => {
                return Ok(RouterReply {
                    seq: 1,
                    ..RouterReply::default()
                })
            }
            _ => {}
        }
        Ok(RouterReply::default())
    }

    fn availability(&self, update: Availability) {
        let _ = self.0.send(Call::Availability {
            status: update.status,
            load: update.load,
            on_shift: update.on_shift,
        });
    }
}

/// One agent on a manual clock, with its desktop and what its router hears.
struct Rig {
    clock: ManualClock,
    agent: Addr<AgentActor>,
    desktop: mpsc::Receiver<Result<AgentEvent, Status>>,
    router: mpsc::UnboundedReceiver<Call>,
}

impl Rig {
    /// Starts agent `a` (capacity `capacity`, team `day`) at `start_ms` and attaches its
    /// desktop.
    async fn start(start_ms: i64, capacity: u32, desk: DeskConfig, teams: Vec<TeamConfig>) -> Rig {
        let clock = ManualClock::new(start_ms);
        let config = Arc::new(AgentConfig {
            id: "a".to_string(),
            name: "A".to_string(),
            team: "day".to_string(),
            capacity,
            ..AgentConfig::default()
        });
        let shifts = Arc::new(Shifts::new(&AgentNodeConfig {
            teams,
            ..AgentNodeConfig::default()
        }));
        let (calls, router) = mpsc::unbounded_channel();
        let shared = clock.shared();
        let agent = AgentActor::create(move |_ctx| {
            AgentActor::new(
                config,
                desk,
                shared,
                Arc::new(Recorder(calls)),
                shifts,
                HandoverConfig::default(),
            )
        });
        let (tx, desktop) = mpsc::channel(64);
        let logged_in = agent
            .send(Attach { session_id: 1, tx })
            .await
            .expect("attach");
        assert_eq!(logged_in.status, AgentStatus::Available as i32);
        Rig {
            clock,
            agent,
            desktop,
            router,
        }
    }

    async fn reserve(
        &self,
        reservation_id: &str,
        conversation_id: &str,
        auto: bool,
    ) -> ReserveOutcome {
        self.agent
            .send(Reserve(ReserveRequest {
                reservation_id: reservation_id.to_string(),
                conversation_id: conversation_id.to_string(),
                agent_id: "a".to_string(),
                department: "sales".to_string(),
                language: "it".to_string(),
                customer_display_name: String::new(),
                returning_customer: false,
                visitor: None,
                auto_accept: auto,
                started_at_ms: 0,
                last_summary: String::new(),
                serving_language: String::new(),
                history: None,
                transfer: None,
            }))
            .await
            .expect("reserve")
    }

    async fn load(&self) -> u32 {
        self.agent
            .send(GetAvailability)
            .await
            .expect("availability")
            .load
    }

    /// Returns the next desktop event `pick` accepts, skipping others.
    async fn desktop_sees<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(agent_event::Kind) -> Option<T>,
    ) -> T {
        let wait = async {
            while let Some(event) = self.desktop.recv().await {
                if let Some(found) = event.ok().and_then(|e| e.kind).and_then(&mut pick) {
                    return Some(found);
                }
            }
            None
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the desktop never saw {what}"))
    }

    /// Returns the next router call `pick` accepts, skipping others.
    async fn router_hears<T>(&mut self, what: &str, mut pick: impl FnMut(Call) -> Option<T>) -> T {
        let wait = async {
            while let Some(call) = self.router.recv().await {
                if let Some(found) = pick(call) {
                    return Some(found);
                }
            }
            None
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the router never heard {what}"))
    }

    /// Forgets what the router heard so far.
    fn forget_router_calls(&mut self) {
        while self.router.try_recv().is_ok() {}
    }

    /// Moves the clock by `ms` and returns how many timers that woke.
    fn advance(&self, ms: u64) -> usize {
        self.clock.advance(Duration::from_millis(ms))
    }
}

fn desk(offer: u64, missed: u32, grace: u64, wrap_up: u64) -> DeskConfig {
    DeskConfig {
        offer_timeout_secs: offer,
        max_missed_offers: missed,
        disconnect_grace_secs: grace,
        wrap_up_secs: wrap_up,
    }
}

fn run(test: impl std::future::Future<Output = ()>) {
    actix::System::new().block_on(test);
}

#[test]
fn an_unanswered_offer_times_out_and_two_misses_set_the_agent_away() {
    run(async {
        // Shift checks every 30 s; every deadline here is before the first one.
        let mut rig = Rig::start(T0, 2, desk(10, 2, 60, 0), Vec::new()).await;
        assert_eq!(rig.reserve("r1", "c1", false).await, ReserveOutcome::Held);
        assert_eq!(rig.clock.next_deadline_ms(), Some(T0 + 10_000));
        assert_eq!(rig.advance(9_999), 0, "the offer is open until its timeout");
        assert_eq!(rig.load().await, 1);
        assert_eq!(rig.advance(1), 1);
        let revoked = rig
            .desktop_sees("the offer revoked", |k| match k {
                agent_event::Kind::OfferRevoked(r) => Some(r),
                _ => None,
            })
            .await;
        assert_eq!(
            (revoked.reservation_id.as_str(), revoked.reason.as_str()),
            ("r1", "timedout")
        );
        let answer = rig
            .router_hears("the answer to r1", |c| match c {
                Call::Answered {
                    reservation_id,
                    answer,
                } if reservation_id == "r1" => Some(answer),
                _ => None,
            })
            .await;
        assert_eq!(answer, OfferAnswer::TimedOut);
        assert_eq!(rig.load().await, 0, "a timed-out offer frees its slot");

        // The second miss in a row sets the agent away.
        assert_eq!(rig.reserve("r2", "c2", false).await, ReserveOutcome::Held);
        assert_eq!(rig.advance(9_999), 0);
        assert_eq!(rig.advance(1), 1);
        let status = rig
            .desktop_sees("a status change", |k| match k {
                agent_event::Kind::Status(s) => Some(s),
                _ => None,
            })
            .await;
        assert_eq!(status.status, AgentStatus::Away as i32);
        assert_eq!(status.reason, "missed offers");
        assert_eq!(
            rig.reserve("r3", "c3", false).await,
            ReserveOutcome::Rejected(RejectReason::NotAvailable)
        );
    });
}

#[test]
fn an_accepted_offer_stops_its_timer() {
    run(async {
        let mut rig = Rig::start(T0, 2, desk(10, 1, 60, 0), Vec::new()).await;
        assert_eq!(rig.reserve("r1", "c1", false).await, ReserveOutcome::Held);
        rig.agent
            .send(Accept("r1".to_string()))
            .await
            .expect("accept")
            .expect("offer open");
        rig.desktop_sees("the assignment", |k| match k {
            agent_event::Kind::Assigned(a) if a.conversation_id == "c1" => Some(()),
            _ => None,
        })
        .await;
        // Only the shift check is left: the offer timer was cancelled with the accept.
        assert_eq!(rig.clock.next_deadline_ms(), Some(T0 + 30_000));
        assert_eq!(rig.advance(10_000), 0);
        assert_eq!(rig.load().await, 1);
        assert_eq!(
            rig.agent
                .send(Decline("r1".to_string()))
                .await
                .expect("decline")
                .map_err(|s| s.code()),
            Err(tonic::Code::FailedPrecondition)
        );
    });
}

#[test]
fn a_wrap_up_holds_the_slot_until_its_timer() {
    run(async {
        let mut rig = Rig::start(T0, 1, desk(10, 3, 60, 20), Vec::new()).await;
        assert_eq!(rig.reserve("r1", "c1", true).await, ReserveOutcome::Held);
        rig.desktop_sees("the auto-accepted assignment", |k| match k {
            agent_event::Kind::Assigned(a) if a.conversation_id == "c1" => Some(()),
            _ => None,
        })
        .await;
        rig.agent
            .send(Ended {
                conversation_id: "c1".to_string(),
                outcome: ConversationOutcome::Completed,
            })
            .await
            .expect("ended");
        assert_eq!(rig.load().await, 1, "the wrap-up takes the slot");
        assert_eq!(
            rig.reserve("r2", "c2", false).await,
            ReserveOutcome::Rejected(RejectReason::Full)
        );
        assert_eq!(rig.clock.next_deadline_ms(), Some(T0 + 20_000));
        assert_eq!(rig.advance(19_999), 0);
        rig.forget_router_calls();
        assert_eq!(rig.advance(1), 1);
        rig.router_hears("the slot free again", |c| match c {
            Call::Availability { load: 0, .. } => Some(()),
            _ => None,
        })
        .await;
        assert_eq!(rig.load().await, 0);
        let idle = rig.agent.send(GetAvailability).await.expect("availability");
        assert_eq!(
            idle.idle_since_ms,
            T0 + 20_000,
            "idle from the end of the wrap-up"
        );
        assert_eq!(rig.reserve("r2", "c2", false).await, ReserveOutcome::Held);
    });
}

#[test]
fn the_disconnect_grace_releases_conversations_and_a_reconnect_keeps_them() {
    run(async {
        let mut rig = Rig::start(T0, 2, desk(10, 3, 25, 0), Vec::new()).await;
        rig.agent
            .send(Restore(vec!["c1".to_string()]))
            .await
            .expect("restore");
        assert_eq!(rig.load().await, 1);

        // A reconnect within the grace keeps the conversation.
        rig.agent
            .send(Detach { session_id: 1 })
            .await
            .expect("detach");
        assert_eq!(rig.advance(24_999), 0);
        let (tx, desktop) = mpsc::channel(64);
        let again = rig
            .agent
            .send(Attach { session_id: 2, tx })
            .await
            .expect("attach");
        rig.desktop = desktop;
        assert_eq!(again.conversation_ids, vec!["c1".to_string()]);
        assert_eq!(rig.clock.pending_timers(), 1, "the grace timer is gone");
        assert_eq!(rig.advance(1), 0, "nothing was due at the end of the grace");
        assert_eq!(rig.load().await, 1);
        // Past the shift check at 30 s, so that only the grace is due below.
        assert_eq!(rig.advance(5_000), 1);

        // A disconnect that outlasts the grace releases it and takes the agent offline.
        let gone_at = rig.clock.now_ms();
        rig.agent
            .send(Detach { session_id: 2 })
            .await
            .expect("detach");
        assert_eq!(rig.clock.next_deadline_ms(), Some(gone_at + 25_000));
        assert_eq!(rig.advance(24_999), 0);
        assert_eq!(rig.load().await, 1);
        assert_eq!(rig.advance(1), 1);
        // Published at once; the release follows from its own task.
        rig.router_hears("the agent offline", |c| match c {
            Call::Availability {
                status: AgentStatus::Offline,
                load: 0,
                ..
            } => Some(()),
            _ => None,
        })
        .await;
        let released = rig
            .router_hears("the release", |c| match c {
                Call::Released {
                    conversation_id,
                    reason,
                } => Some((conversation_id, reason)),
                _ => None,
            })
            .await;
        assert_eq!(
            released,
            ("c1".to_string(), "agent disconnected".to_string())
        );
    });
}

#[test]
fn the_shift_end_is_noticed_on_the_next_check() {
    run(async {
        let day = TeamConfig {
            name: "day".to_string(),
            language: "it".to_string(),
            schedule: Some(ScheduleConfig {
                timezone: "UTC".to_string(),
                weekly: [("daily".to_string(), vec!["08:00-12:00".to_string()])].into(),
                ..ScheduleConfig::default()
            }),
        };
        // 11:59:50 UTC, ten seconds before the shift ends.
        let mut rig = Rig::start(T0 - 10_000, 2, desk(10, 3, 60, 0), vec![day]).await;
        rig.router_hears("the agent on shift at login", |c| match c {
            Call::Availability { on_shift: true, .. } => Some(()),
            _ => None,
        })
        .await;
        // The shift is over at 12:00, but nothing reads the schedule before the check.
        assert_eq!(rig.clock.next_deadline_ms(), Some(T0 + 20_000));
        assert_eq!(rig.advance(29_999), 0);
        assert_eq!(rig.advance(1), 1);
        rig.router_hears("the agent off shift", |c| match c {
            Call::Availability {
                on_shift: false, ..
            } => Some(()),
            _ => None,
        })
        .await;
        assert_eq!(
            rig.reserve("r2", "c2", false).await,
            ReserveOutcome::Rejected(RejectReason::OffShift)
        );
        // Checks go on: the next one is armed.
        assert_eq!(rig.clock.pending_timers(), 1);
    });
}

#[test]
fn a_desktop_that_stops_reading_is_cut_with_resume_and_a_login_resumes() {
    run(async {
        let mut rig = Rig::start(T0, 2, desk(10, 3, 60, 0), Vec::new()).await;
        rig.agent
            .send(Restore(vec!["c1".to_string()]))
            .await
            .expect("restore");
        // The desktop reads nothing while 100 messages arrive (its buffer holds 64).
        for seq in 1..=100u64 {
            let delivered = rig
                .agent
                .send(Deliver {
                    conversation_id: "c1".to_string(),
                    message: ChatMessage {
                        message_id: format!("m{seq}"),
                        seq,
                        text: format!("testo {seq}"),
                        ..ChatMessage::default()
                    },
                })
                .await
                .expect("deliver");
            assert!(delivered.is_ok());
        }
        let mut events = 0;
        let cut = loop {
            match tokio::time::timeout(PATIENCE, rig.desktop.recv()).await {
                Ok(Some(Ok(_))) => events += 1,
                Ok(Some(Err(status))) => break status,
                Ok(None) | Err(_) => panic!("the stream ended without a status"),
            }
        };
        assert_eq!(cut.code(), tonic::Code::Unavailable);
        assert!(cut.message().contains("slow reader"), "{cut}");
        assert!(cut.message().contains("log in again to resume"), "{cut}");
        assert!(events < 64, "{events} events before the cut");
        assert!(
            tokio::time::timeout(PATIENCE, rig.desktop.recv())
                .await
                .expect("the stream ends")
                .is_none(),
            "nothing after the cut"
        );
        // Cut like a dropped stream: the agent is disconnected, within the grace.
        rig.router_hears("the agent disconnected", |c| match c {
            Call::Availability {
                status: AgentStatus::Disconnected,
                ..
            } => Some(()),
            _ => None,
        })
        .await;
        assert_eq!(rig.load().await, 1, "the conversation is kept");
        // Logging in again resumes: the held conversation is listed.
        let (tx, desktop) = mpsc::channel(64);
        let again = rig
            .agent
            .send(Attach { session_id: 2, tx })
            .await
            .expect("attach");
        rig.desktop = desktop;
        assert_eq!(again.conversation_ids, vec!["c1".to_string()]);
        assert_eq!(again.status, AgentStatus::Available as i32);
    });
}

#[test]
fn error_events_name_the_grpc_status_as_the_specification_does() {
    for (status, name) in [
        (Status::permission_denied("x"), "PERMISSION_DENIED"),
        (Status::not_found("x"), "NOT_FOUND"),
        (Status::invalid_argument("x"), "INVALID_ARGUMENT"),
        (Status::already_exists("x"), "ALREADY_EXISTS"),
        (Status::failed_precondition("x"), "FAILED_PRECONDITION"),
        (Status::unavailable("x"), "UNAVAILABLE"),
    ] {
        match error_event(&status).kind {
            Some(agent_event::Kind::Error(e)) => {
                assert_eq!(e.code, name);
                assert_eq!(e.message, "x");
            }
            other => panic!("not an error event: {other:?}"),
        }
    }
}

#[test]
fn typing_is_shown_for_held_chats_and_its_excess_stays_on_the_node() {
    run(async {
        let mut rig = Rig::start(T0, 2, desk(10, 3, 60, 0), Vec::new()).await;
        assert_eq!(rig.reserve("r1", "c1", true).await, ReserveOutcome::Held);
        rig.desktop_sees("the assignment", |k| match k {
            agent_event::Kind::Assigned(a) if a.conversation_id == "c1" => Some(()),
            _ => None,
        })
        .await;
        // The customer's typing: shown for a held chat, refused for another.
        rig.agent
            .send(CustomerTyping {
                conversation_id: "c1".into(),
                typing: true,
            })
            .await
            .expect("typing")
            .expect("shown");
        let shown = rig
            .desktop_sees("the customer typing", |k| match k {
                agent_event::Kind::CustomerTyping(t) => Some(t),
                _ => None,
            })
            .await;
        assert_eq!((shown.conversation_id.as_str(), shown.typing), ("c1", true));
        let other = rig
            .agent
            .send(CustomerTyping {
                conversation_id: "c9".into(),
                typing: true,
            })
            .await
            .expect("typing");
        assert_eq!(
            other.map_err(|s| s.code()),
            Err(tonic::Code::FailedPrecondition)
        );

        // The agent's typing: a quick series is acknowledged in full, but only the burst
        // (and what the rate refills meanwhile) reaches the router.
        rig.forget_router_calls();
        let started = std::time::Instant::now();
        for i in 0..10 {
            rig.agent
                .send(Act {
                    conversation_id: "c1".into(),
                    action: Action::Typing(i % 2 == 0),
                })
                .await
                .expect("act")
                .expect("acknowledged");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mut forwarded = 0;
        while let Ok(call) = rig.router.try_recv() {
            if matches!(call, Call::Typing { ref conversation_id, .. } if conversation_id == "c1") {
                forwarded += 1;
            }
        }
        let allowed = TYPING_BURST as usize + (elapsed * 2.0).ceil() as usize + 1;
        assert!(
            (TYPING_BURST as usize..=allowed).contains(&forwarded) && forwarded < 10,
            "{forwarded} of 10 forwarded in {elapsed:.2} s"
        );
        // Not for a chat the agent does not hold.
        let refused = rig
            .agent
            .send(Act {
                conversation_id: "c9".into(),
                action: Action::Typing(true),
            })
            .await
            .expect("act");
        assert_eq!(
            refused.map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
    });
}
