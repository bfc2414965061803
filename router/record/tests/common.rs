//! Runs one contract check by name (shared by the PostgreSQL and twin suites).

use std::sync::Arc;

use centralino_record::contract::{self, Probe};
use centralino_record::Record;

pub async fn run(name: &str, a: Arc<dyn Record>, b: Arc<dyn Record>, probe: &dyn Probe) {
    match name {
        "archive_is_idempotent" => contract::archive_is_idempotent(&*a, &*b).await,
        "rating_updates_the_row" => contract::rating_updates_the_row(&*a, &*b).await,
        "list_filters_and_pages" => contract::list_filters_and_pages(&*a, &*b).await,
        "retention_deletes_only_old_rows" => {
            contract::retention_deletes_only_old_rows(&*a, &*b).await
        }
        "event_retention_deletes_only_old_events" => {
            contract::event_retention_deletes_only_old_events(&*a, &*b).await
        }
        "concurrent_profile_updates_all_survive" => {
            contract::concurrent_profile_updates_all_survive(a, b).await
        }
        "tier_is_never_undone" => contract::tier_is_never_undone(a, b).await,
        "outbox_sequence_is_contiguous_across_writers" => {
            contract::outbox_sequence_is_contiguous_across_writers(a, b).await
        }
        "tail_wakes_on_a_new_event" => contract::tail_wakes_on_a_new_event(a, b).await,
        "directory_versions_audit_and_feed" => {
            contract::directory_versions_audit_and_feed(a, b).await
        }
        "operator_tokens" => contract::operator_tokens(&*a, &*b).await,
        "webhook_claims_fence_the_cursor" => {
            contract::webhook_claims_fence_the_cursor(&*a, &*b).await
        }
        "export_and_erase" => contract::export_and_erase(&*a, &*b, probe).await,
        "bad_input_changes_nothing" => contract::bad_input_changes_nothing(&*a, &*b).await,
        "check_all" => contract::check_all(a, b, probe).await,
        other => panic!("no contract check {other}"),
    }
}

/// Declares one test per contract check, each building its record with `$setup`, an async
/// block returning `(a, b, probe)`.
#[macro_export]
macro_rules! contract_tests {
    ($setup:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (a, b, probe, _keep) = $setup.await;
                common::run(stringify!($name), a, b, &probe).await;
            }
        )*
    };
}
