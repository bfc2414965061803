//! The first scrape of a fresh node, before any traffic: every metric the Grafana dashboard
//! and the Prometheus rules use is already exported (counters and gauges at 0, histograms
//! with empty buckets), and the wait histogram has a bucket at the configured service-level
//! threshold, which is exported as well.

use centralino_testkit as common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use centralino_router::config::{Config, EXAMPLE_CONFIG};

/// Metric names in a dashboard or rules file: identifiers `centralino_…` that are not part
/// of a recording rule's name (`level:metric:operation`).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("centralino_") && !word.contains(':'))
        .map(str::to_string)
        .collect()
}

/// Names with at least one sample in a Prometheus text scrape.
fn sampled(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_fresh_node_exports_every_metric_of_the_dashboard_and_rules_and_its_threshold_bucket() {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let dashboard = std::fs::read_to_string(format!("{deploy}/grafana/centralino.json"))
        .expect("the dashboard");
    let rules =
        std::fs::read_to_string(format!("{deploy}/prometheus/rules.yaml")).expect("the rules");
    let used: BTreeSet<String> = metric_names(&dashboard)
        .into_iter()
        .chain(metric_names(&rules))
        .collect();
    assert!(used.len() > 30, "too few names found: {used:?}");

    common::run(|| async {
        let dir = tempfile::tempdir().expect("data dir");
        let mut config = Config::from_toml(EXAMPLE_CONFIG, Vec::new()).expect("example");
        config.node.grpc_addr = "127.0.0.1:0".to_string();
        config.node.dev_mode = true;
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .expect("address");
        config.node.metrics_addr = metrics_addr.to_string();
        // Not one of the default buckets (20 and 30 are).
        config.routing.service_level_secs = 45;
        let node = common::start_durable(config, dir.path()).await;
        let scrape = common::scrape(metrics_addr).await;
        node.shutdown().await;

        let exported = sampled(&scrape);
        let missing: Vec<&String> = used
            .iter()
            .filter(|name| {
                // A histogram may be named without its suffix (in a comment).
                !exported.contains(*name) && !exported.contains(&format!("{name}_bucket"))
            })
            .collect();
        assert!(missing.is_empty(), "not in the first scrape: {missing:?}");

        let line = |prefix: &str, suffix: &str| {
            scrape
                .lines()
                .find(|l| l.starts_with(prefix) && l.ends_with(suffix))
                .map(str::to_string)
        };
        assert!(
            line(
                "centralino_conversation_wait_seconds_bucket{department=\"sales\",language=\"it\",le=\"45\"}",
                " 0"
            )
            .is_some(),
            "no le=\"45\" wait bucket:\n{scrape}"
        );
        assert!(
            line(
                "centralino_routing_service_level_threshold_seconds{threshold=\"45\"}",
                " 45"
            )
            .is_some(),
            "no threshold gauge:\n{scrape}"
        );
        assert!(
            line(
                "centralino_conversation_wait_seconds_count{department=\"sales\",language=\"it\"}",
                " 0"
            )
            .is_some(),
            "the empty wait histogram has no count"
        );
    });
}
