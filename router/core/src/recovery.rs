//! Recovery: rebuilds a partition's conversations from the store. Standalone mode adopts
//! every partition after a restart, a cluster router the partitions it claims after a
//! failover or a drain — through this one function, so the two cannot drift. Open
//! conversations go back to their queues with their original age, assigned ones to their
//! agents (who get the disconnect grace to log in again), closed ones to the archive.

use std::collections::BTreeMap;

use tracing::warn;

use crate::router::{Revival, Router};
use crate::store::archive::retire_closed;
use crate::store::records::{
    decode, partition_conversations, ConversationRecord, MessageRecord, ProfileRecord, State,
    MESSAGES,
};
use crate::store::StoreError;

/// What the adoption of a partition rebuilt.
#[derive(Debug, Default)]
pub struct Adopted {
    /// Conversation actors started again.
    pub restored: usize,
    /// Closed conversations moved to the archive.
    pub archived: usize,
    /// Assigned conversations by agent id (the agent-node gives them back at login).
    pub assigned: BTreeMap<String, Vec<String>>,
}

impl Adopted {
    /// Adds what another partition's adoption rebuilt.
    pub fn merge(&mut self, other: Adopted) {
        self.restored += other.restored;
        self.archived += other.archived;
        for (agent, ids) in other.assigned {
            self.assigned.entry(agent).or_default().extend(ids);
        }
    }
}

/// Rebuilds the conversations of partition `p` on `router`.
pub async fn adopt_partition(router: &Router, p: u32) -> Result<Adopted, StoreError> {
    let shared = &router.shared;
    let records = shared.store.scan(&partition_conversations(p)).await?;
    let mut adopted = Adopted::default();
    if records.is_empty() {
        return Ok(adopted);
    }
    let mut transcripts: BTreeMap<String, Vec<MessageRecord>> = BTreeMap::new();
    for (key, bytes) in shared.store.scan(&format!("{MESSAGES}{p:03}/")).await? {
        match decode::<MessageRecord>(&key, &bytes) {
            // msg/<p>/<id>/<seq>
            Ok(m) => {
                if let Some(id) = key.split('/').nth(2) {
                    transcripts.entry(id.to_string()).or_default().push(m);
                }
            }
            Err(e) => warn!(error = %e, "skipping unreadable message"),
        }
    }
    for (key, bytes) in records {
        let rec: ConversationRecord = match decode(&key, &bytes) {
            Ok(rec) => rec,
            Err(e) => {
                warn!(error = %e, "skipping unreadable conversation record");
                continue;
            }
        };
        let mut transcript = transcripts.remove(&rec.id).unwrap_or_default();
        transcript.sort_by_key(|m| m.seq);
        if rec.state == State::Closed {
            // A customer whose stream broke around the close may still resume it.
            let linger = shared.clock.wall(std::time::Duration::from_secs(
                shared.config.routing.rating_window_secs,
            ));
            shared.tombstones.keep(&rec, &transcript, linger);
            // Archived already when the close was durable (then this adds no second row)
            // or not yet (a crash right after the close): either way the live keys go.
            match retire_closed(&shared.archive, &shared.commits, &rec, transcript).await {
                Ok(()) => adopted.archived += 1,
                Err(e) => {
                    warn!(conversation_id = %rec.id, error = %e, "closed conversation not retired yet")
                }
            }
            continue;
        }
        if rec.state == State::Assigned {
            if let Some(agent) = &rec.agent_id {
                adopted
                    .assigned
                    .entry(agent.clone())
                    .or_default()
                    .push(rec.id.clone());
            }
        }
        // The profile only informs the agent's view; the record keeps the real one, so an
        // unreadable profile does not keep the conversation from coming back.
        let profile = match shared.profile(&rec.customer_id).await {
            Ok(profile) => profile.unwrap_or_default(),
            Err(e) => {
                warn!(conversation_id = %rec.id, error = %e, "customer profile not read");
                ProfileRecord::default()
            }
        };
        router.spawn_conversation(Revival {
            record: rec,
            transcript,
            profile,
            restored: true,
            places: Default::default(),
        });
        adopted.restored += 1;
    }
    Ok(adopted)
}
