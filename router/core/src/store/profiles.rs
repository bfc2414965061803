//! Customer profiles in the system of record ([`centralino_record::Record`]): the core's
//! [`ProfileRecord`] travels as the record's profile JSON, except the tier, which is the
//! record's own column (changed only by `set_tier`, so no other write can undo it).

use centralino_record::{CustomerProfile, RecordError};
use serde_json::Value;

use super::records::ProfileRecord;
use super::StoreError;

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

#[cfg(test)]
mod tests {
    use super::*;

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
