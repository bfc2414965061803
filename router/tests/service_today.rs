//! The admin snapshot's service of today (the supervisors' wallboard): per department and
//! customer language who waits and for how long, how many were answered and after which
//! waits (ASA, service level within `routing.service_level_secs`), how many abandoned —
//! since local midnight of `routing.day_timezone`, on the node's (manual) clock.

use centralino_testkit as common;

use std::time::Duration;

use centralino_proto::v1::{CloseConversationRequest, ServiceToday, Snapshot};
use common::*;

/// 21:00 in Rome.
const START: &str = "2026-03-10T21:00:00+01:00";

fn service<'a>(snap: &'a Snapshot, department: &str, language: &str) -> &'a ServiceToday {
    snap.service
        .iter()
        .find(|s| s.department == department && s.language == language)
        .unwrap_or_else(|| panic!("service of {department}/{language} in {:?}", snap.service))
}

#[test]
fn answered_waits_abandons_and_midnight_per_department_and_language() {
    run(|| async {
        let config = config_with("", |c| c.routing.day_timezone = "Europe/Rome".into());
        let (node, clock) = start_manual(config, START).await;
        let mut client = customer(&node).await;
        // Nobody is logged in: everybody waits.
        let a = start_conversation(&mut client, "support", "it", "cust-a")
            .await
            .unwrap();
        let b = start_conversation(&mut client, "support", "en", "cust-b")
            .await
            .unwrap();
        let c = start_conversation(&mut client, "sales", "it", "cust-c")
            .await
            .unwrap();
        // A language no team speaks is refused and makes no entry.
        let refused = start_conversation(&mut client, "sales", "xx", "cust-x")
            .await
            .expect_err("unknown language");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        let snap = snapshot_until(&node, 5, |s| {
            s.service.iter().map(|t| t.waiting).sum::<u32>() >= 3
        })
        .await;
        for (d, l) in [("support", "it"), ("support", "en"), ("sales", "it")] {
            let s = service(&snap, d, l);
            assert_eq!((s.waiting, s.answered, s.abandoned), (1, 0, 0), "{d}/{l}");
            assert_eq!((s.day.as_str(), s.target_seconds), ("2026-03-10", 20));
        }

        clock.advance(Duration::from_secs(10));
        let snap = snapshot(&node).await;
        assert_eq!(service(&snap, "support", "it").oldest_wait_seconds, 10);
        // The customer of sales/it leaves after 10 s.
        client
            .close_conversation(CloseConversationRequest {
                conversation_id: c.conversation_id.clone(),
                token: c.token.clone(),
            })
            .await
            .expect("customer close");
        // Giulia answers support/it after 10 s (within the 20 s target).
        let mut giulia = login(&node, "giulia", "pw").await.unwrap();
        assert_eq!(giulia.take().await, a.conversation_id);
        // Emma answers support/en after 25 s (beyond it).
        clock.advance(Duration::from_secs(15));
        let mut emma = login(&node, "emma", "pw").await.unwrap();
        assert_eq!(emma.take().await, b.conversation_id);

        let snap = snapshot(&node).await;
        let it = service(&snap, "support", "it");
        assert_eq!(
            (it.waiting, it.answered, it.answered_in_target, it.abandoned),
            (0, 1, 1, 0)
        );
        assert_eq!(
            (it.wait_ms_total, it.asa_seconds, it.service_level),
            (10_000, 10.0, 1.0)
        );
        let en = service(&snap, "support", "en");
        assert_eq!(
            (en.waiting, en.answered, en.answered_in_target, en.abandoned),
            (0, 1, 0, 0)
        );
        assert_eq!(
            (en.wait_ms_total, en.asa_seconds, en.service_level),
            (25_000, 25.0, 0.0)
        );
        let sales = service(&snap, "sales", "it");
        assert_eq!((sales.waiting, sales.answered, sales.abandoned), (0, 0, 1));
        assert_eq!((sales.asa_seconds, sales.service_level), (0.0, 0.0));
        assert_eq!(snap.service.len(), 3, "{:?}", snap.service);
        assert!(
            !snap.service.iter().any(|s| s.language == "xx"),
            "a client's language made its own entry: {:?}",
            snap.service
        );
        // The proto3 JSON the browser API serves (pbjson: lowerCamelCase, 64-bit integers
        // as strings, zeros left out).
        let json = serde_json::to_value(it).expect("json");
        assert_eq!(json["department"], "support");
        assert_eq!(json["language"], "it");
        assert_eq!(json["answered"], "1");
        assert_eq!(json["answeredInTarget"], "1");
        assert_eq!(json["waitMsTotal"], "10000");
        assert_eq!(json["asaSeconds"], 10.0);
        assert_eq!(json["serviceLevel"], 1.0);
        assert_eq!(json["targetSeconds"], 20);
        assert_eq!(json["day"], "2026-03-10");
        let json = serde_json::to_value(&snap).expect("json");
        assert_eq!(json["service"].as_array().map(Vec::len), Some(3));
        // The node-wide counters are as before.
        let counters = snap.counters.expect("counters");
        assert_eq!(counters.conversations_abandoned, 1);

        // Past local midnight in Rome (00:00:30 on the 11th): the day starts from zero.
        advance_settled(&clock, Duration::from_secs(3 * 3600 - 25 + 30)).await;
        let snap = snapshot(&node).await;
        assert!(
            snap.service
                .iter()
                .all(|s| s.answered == 0 && s.abandoned == 0),
            "yesterday's counts after midnight: {:?}",
            snap.service
        );
        let e = start_conversation(&mut client, "support", "it", "cust-e")
            .await
            .unwrap();
        assert_eq!(giulia.take().await, e.conversation_id);
        let snap = snapshot(&node).await;
        let it = service(&snap, "support", "it");
        assert_eq!(
            (it.answered, it.answered_in_target, it.abandoned),
            (1, 1, 0)
        );
        assert_eq!((it.wait_ms_total, it.service_level), (0, 1.0));
        assert_eq!(it.day, "2026-03-11");
        assert!(
            snap.service.iter().all(|s| s.day == "2026-03-11"),
            "{:?}",
            snap.service
        );
        assert_eq!(
            snap.service
                .iter()
                .map(|s| s.answered + s.abandoned)
                .sum::<u64>(),
            1
        );
        drop((giulia, emma, client));
        node.shutdown().await;
    });
}
