//! Capacity under concurrent load: no agent ever holds more conversations than its capacity
//! (DESIGN.md §6, invariant 2), the free slots are all used, and waiting conversations are
//! assigned as slots free up.

use centralino_testkit as common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use centralino_proto::v1::agent_event;
use common::*;

/// Per-agent view built from the desk's own events.
#[derive(Default)]
struct Seen {
    active: HashSet<String>,
    max_active: usize,
    assigned_total: usize,
}

impl Seen {
    fn apply(&mut self, events: Vec<agent_event::Kind>) {
        for event in events {
            match event {
                agent_event::Kind::Assigned(a) => {
                    assert!(
                        self.active.insert(a.conversation_id.clone()),
                        "assigned twice: {}",
                        a.conversation_id
                    );
                    self.assigned_total += 1;
                }
                agent_event::Kind::Ended(e) => {
                    self.active.remove(&e.conversation_id);
                }
                _ => {}
            }
            self.max_active = self.max_active.max(self.active.len());
        }
    }
}

#[test]
fn forty_concurrent_conversations_never_exceed_capacity() {
    run(|| async {
        let config = config_with("", |c| {
            c.departments
                .iter_mut()
                .find(|d| d.name == "support")
                .unwrap()
                .auto_accept = true;
            set_capacity(c, "giulia", 4);
            set_capacity(c, "marco", 3);
            set_capacity(c, "emma", 5);
        });
        let capacity: HashMap<&str, usize> = [("giulia", 4), ("marco", 3), ("emma", 5)]
            .into_iter()
            .collect();
        let node = start(config).await;
        let mut desks = Vec::new();
        for id in ["giulia", "marco", "emma"] {
            desks.push((id, login(&node, id, "pw").await.unwrap(), Seen::default()));
        }

        // Sample the admin snapshot during the whole run: load never exceeds capacity.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            let mut admin = admin(&node).await;
            tokio::spawn(async move {
                let mut samples = 0u32;
                let mut violations = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let snap = admin
                        .get_snapshot(authed(centralino_proto::v1::GetSnapshotRequest {}))
                        .await
                        .expect("snapshot")
                        .into_inner();
                    for a in &snap.agents {
                        if a.load > a.capacity {
                            violations.push(format!(
                                "{} load {} > capacity {}",
                                a.agent_id, a.load, a.capacity
                            ));
                        }
                    }
                    samples += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (samples, violations)
            })
        };

        let client = customer(&node).await;
        let starts = (0..40).map(|i| {
            let mut client = client.clone();
            async move {
                let language = if i % 5 < 3 { "it" } else { "en" };
                start_conversation(&mut client, "support", language, &format!("load-{i}")).await
            }
        });
        let started = futures::future::join_all(starts).await;
        let started: Vec<_> = started.into_iter().map(|r| r.expect("start")).collect();
        assert_eq!(started.len(), 40);
        // 24 Italian conversations for 7 Italian slots, 16 English ones for 5 English slots.

        let total_capacity: usize = capacity.values().sum();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            for (_, desk, seen) in desks.iter_mut() {
                seen.apply(desk.collect_for(50).await);
            }
            let assigned: usize = desks.iter().map(|(_, _, s)| s.active.len()).sum();
            if assigned >= total_capacity || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        // Give a wrongful extra assignment a chance to show up.
        for (_, desk, seen) in desks.iter_mut() {
            seen.apply(desk.collect_for(500).await);
        }
        for (id, _, seen) in &desks {
            assert!(
                seen.max_active <= capacity[id],
                "{id} held {} conversations at once, capacity {}",
                seen.max_active,
                capacity[id]
            );
            assert_eq!(
                seen.active.len(),
                capacity[id],
                "{id} should be full while conversations wait"
            );
        }
        let snap = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 28).await;
        assert_eq!(
            queue_in(&snap, "support").depth,
            28,
            "the rest wait in the queue"
        );
        for (id, cap) in &capacity {
            assert_eq!(
                agent_in(&snap, id).load as usize,
                *cap,
                "{id} load in the snapshot"
            );
        }
        let counters = snap.counters.unwrap();
        assert_eq!(counters.conversations_started, 40);
        assert_eq!(counters.offers_accepted as usize, total_capacity);

        // Close two of giulia's and one of emma's: exactly that many waiting ones move up.
        let mut closed = HashSet::new();
        for (id, desk, seen) in desks.iter_mut() {
            let n = match *id {
                "giulia" => 2,
                "emma" => 1,
                _ => 0,
            };
            let victims: Vec<String> = seen.active.iter().take(n).cloned().collect();
            for cid in victims {
                desk.close(&cid, "done").await;
                closed.insert(cid);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            for (_, desk, seen) in desks.iter_mut() {
                seen.apply(desk.collect_for(50).await);
            }
            let assigned: usize = desks.iter().map(|(_, _, s)| s.assigned_total).sum();
            if assigned >= total_capacity + 3 || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        for (_, desk, seen) in desks.iter_mut() {
            seen.apply(desk.collect_for(500).await);
        }
        for (id, _, seen) in &desks {
            assert!(
                seen.max_active <= capacity[id],
                "{id} exceeded capacity after closes"
            );
            assert_eq!(seen.active.len(), capacity[id], "{id} is full again");
            assert!(seen.active.iter().all(|c| !closed.contains(c)));
        }
        let assigned: usize = desks.iter().map(|(_, _, s)| s.assigned_total).sum();
        assert_eq!(
            assigned,
            total_capacity + 3,
            "each freed slot takes one waiting conversation"
        );
        let snap = snapshot_until(&node, 3, |s| queue_in(s, "support").depth == 25).await;
        assert_eq!(queue_in(&snap, "support").depth, 25);
        assert_eq!(snap.counters.unwrap().conversations_completed, 3);

        stop.store(true, Ordering::Relaxed);
        let (samples, violations) = sampler.await.unwrap();
        assert!(samples > 5, "the sampler ran ({samples} samples)");
        assert!(
            violations.is_empty(),
            "snapshot showed load above capacity: {violations:?}"
        );
        drop((desks, client));
        node.shutdown().await;
    });
}
