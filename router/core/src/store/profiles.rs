//! Customer profiles in the system of record ([`centralino_record::Record`]): the core's
//! [`ProfileRecord`] travels as the record's profile JSON, except the tier, which is the
//! record's own column (changed only by `set_tier`, so no other write can undo it).

use std::sync::Arc;

use centralino_record::{CustomerProfile, ProfileFn, Record, RecordError};
use serde_json::Value;
use tracing::{info, warn};

use super::group_commit::GroupCommit;
use super::records::{ProfileRecord, HISTORY_LEN, PROFILES};
use super::{Op, Store, StoreError};

/// The JSON key the tier would have in the profile data; it is never stored there.
const TIER: &str = "tier";

/// Returns the core's profile of a record profile.
pub fn from_record(p: &CustomerProfile) -> Result<ProfileRecord, StoreError> {
    let mut profile = from_data(&p.customer_id, &p.data)?;
    profile.tier = p.tier.clone().unwrap_or_default();
    Ok(profile)
}

/// Returns the core's profile of the record's profile data (the tier left empty).
pub fn from_data(customer_id: &str, data: &Value) -> Result<ProfileRecord, StoreError> {
    let mut profile = match data {
        Value::Object(map) if map.is_empty() => ProfileRecord::default(),
        _ => serde_json::from_value(data.clone()).map_err(|e| StoreError::Corrupt {
            key: format!("record profile {customer_id}"),
            reason: e.to_string(),
        })?,
    };
    profile.customer_id = customer_id.to_string();
    profile.tier = String::new();
    Ok(profile)
}

/// Returns the record's profile data for `profile` (everything but the tier).
pub fn to_data(profile: &ProfileRecord) -> Result<Value, String> {
    let mut data = serde_json::to_value(profile).map_err(|e| e.to_string())?;
    if let Value::Object(map) = &mut data {
        map.remove(TIER);
    }
    Ok(data)
}

/// Returns the record's tier for the tier of `SetCustomerTier` (empty: none).
pub fn tier_of(tier: &str) -> Option<&str> {
    (!tier.is_empty()).then_some(tier)
}

/// Returns the store error a record error is to the data path (a failed write is
/// unavailable to the caller, a full record exhausted).
pub fn store_error(e: RecordError) -> StoreError {
    match e {
        RecordError::Full(_) => StoreError::Overloaded,
        other => StoreError::Backend(format!("record: {other}")),
    }
}

/// Merges a profile an older version kept in the live store into the record's `into`:
/// what the record has stays (it is newer: closes since the upgrade), what it lacks is
/// added behind it. Idempotent: merging the same old profile twice changes nothing more.
pub fn merge_old(into: &mut ProfileRecord, old: &ProfileRecord) {
    fn behind(into: &mut Vec<String>, old: &[String], keep: usize) {
        for item in old {
            if into.len() >= keep {
                break;
            }
            if !into.contains(item) {
                into.push(item.clone());
            }
        }
    }
    if into.display_name.is_empty() {
        into.display_name = old.display_name.clone();
    }
    if into.language.is_empty() {
        into.language = old.language.clone();
    }
    if old.last_contact_ms > into.last_contact_ms {
        into.last_contact_ms = old.last_contact_ms;
        into.last_agent = old.last_agent.clone().or(into.last_agent.take());
        into.last_summary = old.last_summary.clone();
    } else if into.last_agent.is_none() {
        into.last_agent = old.last_agent.clone();
    }
    into.contacts = into.contacts.max(old.contacts);
    behind(&mut into.last_agents, &old.last_agents, HISTORY_LEN);
    behind(&mut into.summaries, &old.summaries, HISTORY_LEN);
    behind(&mut into.notes, &old.notes, 2 * HISTORY_LEN);
    if into.last_rating.is_empty() {
        into.last_rating = old.last_rating.clone();
    }
    for close in &old.closes {
        if !into.closes.contains(close) {
            into.closes.push(close.clone());
        }
    }
    into.closes.sort_by_key(|c| std::cmp::Reverse(c.at_ms));
    into.closes.truncate(HISTORY_LEN);
}

/// Moves the customer profiles an older version kept in the live store (`profile/<id>`
/// keys) into the record, then deletes the keys: sticky routing and the agents' history
/// survive the upgrade. Each profile is merged ([`merge_old`], idempotent) before its key
/// goes, so a crash in between, or two routers migrating at once, lose and double nothing.
/// The old tier is taken only for a customer the record does not know yet (a tier set or
/// cleared since is never undone). Returns how many profiles moved.
pub async fn migrate_store_profiles(
    store: &dyn Store,
    commits: &GroupCommit,
    record: &dyn Record,
) -> Result<usize, StoreError> {
    let old = store.scan(PROFILES).await?;
    let mut moved = 0;
    for (key, bytes) in old {
        let Some(customer_id) = key.strip_prefix(PROFILES).map(str::to_string) else {
            continue;
        };
        let profile: ProfileRecord = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => {
                warn!(%key, error = %e, "an old profile that does not decode is left in the store");
                continue;
            }
        };
        let known = record
            .get_profile(&customer_id)
            .await
            .map_err(store_error)?
            .is_some();
        let merged = profile.clone();
        let id = customer_id.clone();
        let f: ProfileFn = Arc::new(move |data| {
            let mut into = from_data(&id, data).map_err(|e| e.to_string())?;
            merge_old(&mut into, &merged);
            *data = to_data(&into)?;
            Ok(())
        });
        record
            .update_profile(&customer_id, f)
            .await
            .map_err(store_error)?;
        if !known && !profile.tier.is_empty() {
            record
                .set_tier(&customer_id, Some(&profile.tier))
                .await
                .map_err(store_error)?;
        }
        commits.write(vec![Op::Delete(key)]).await?;
        moved += 1;
    }
    if moved > 0 {
        info!(
            moved,
            "customer profiles moved from the live store into the record"
        );
    }
    Ok(moved)
}

/// How long a failed profile migration waits before it tries again.
const MIGRATION_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs [`migrate_store_profiles`] until it succeeds (trying again every 30 s while the
/// store or the record is unavailable) or `stop` turns true.
pub async fn run_profile_migration(
    store: Arc<dyn Store>,
    commits: GroupCommit,
    record: Arc<dyn Record>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match migrate_store_profiles(store.as_ref(), &commits, record.as_ref()).await {
            Ok(_) => return,
            Err(e) => warn!(error = %e, "old customer profiles not moved into the record yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(MIGRATION_RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_profile_merges_behind_the_records_newer_history_once() {
        let mut old = ProfileRecord::default();
        old.record_completed(Some("marco"), "old summary", &["old note".into()], 10);
        let mut newer = ProfileRecord::default();
        newer.record_completed(Some("anna"), "new summary", &[], 20);
        let mut merged = newer.clone();
        merge_old(&mut merged, &old);
        assert_eq!(
            merged.last_agent.as_deref(),
            Some("anna"),
            "the newer close wins"
        );
        assert_eq!(merged.last_agents, ["anna", "marco"]);
        assert_eq!(merged.summaries, ["new summary", "old summary"]);
        assert_eq!(merged.notes, ["old note"]);
        assert_eq!(
            merged.closes.iter().map(|c| c.at_ms).collect::<Vec<_>>(),
            [20, 10]
        );
        let once = merged.clone();
        merge_old(&mut merged, &old);
        assert_eq!(merged, once, "merging again changes nothing");
        // Into an empty profile the old one comes whole.
        let mut empty = ProfileRecord::default();
        merge_old(&mut empty, &old);
        assert_eq!(empty.last_agent.as_deref(), Some("marco"));
        assert_eq!(empty.last_contact_ms, 10);
    }

    #[test]
    fn profiles_round_trip_without_the_tier_in_the_data() {
        let mut profile = ProfileRecord {
            customer_id: "c1".into(),
            display_name: "Maria".into(),
            tier: "vip".into(),
            ..ProfileRecord::default()
        };
        profile.record_completed(Some("anna"), "ok", &[], 10);
        let data = to_data(&profile).unwrap();
        assert!(data.get(TIER).is_none(), "the tier is the record's column");
        let back = from_record(&CustomerProfile {
            customer_id: "c1".into(),
            version: 3,
            tier: Some("vip".into()),
            data: data.clone(),
        })
        .unwrap();
        assert_eq!(back, profile);
        let untiered = from_record(&CustomerProfile {
            customer_id: "c1".into(),
            version: 3,
            tier: None,
            data,
        })
        .unwrap();
        assert_eq!(untiered.tier, "");
    }

    #[test]
    fn an_empty_object_is_a_new_profile_and_garbage_is_corrupt() {
        let p = from_data("c9", &serde_json::json!({})).unwrap();
        assert_eq!(p.customer_id, "c9");
        assert_eq!(p.contacts, 0);
        assert!(from_data("c9", &serde_json::json!({"contacts": "many"})).is_err());
        assert_eq!(tier_of(""), None);
        assert_eq!(tier_of("vip"), Some("vip"));
    }
}
