//! The Admin API's directory calls, behind the operator check of
//! [`super::admin::AdminApi`]: put, get, list, disable/enable and the audit log, straight
//! on the system of record (every router shares it, so no call is forwarded). Each write
//! is checked first ([`crate::directory::check_document`]), lands in the audit log under the
//! operator's name, and reaches every node's live directory through its follower.

use std::sync::Arc;

use centralino_base::directory::{Part, Snapshot};
use centralino_proto::v1::{
    DirectoryAuditEntry, DirectoryEntry as EntryProto, DirectoryKind as KindProto,
    GetDirectoryEntryRequest, ListDirectoryAuditRequest, ListDirectoryAuditResponse,
    ListDirectoryEntriesRequest, ListDirectoryEntriesResponse, PutDirectoryEntryRequest,
    SetDirectoryEntryDisabledRequest,
};
use centralino_record::{ChangedBy, DirectoryEntry, DirectoryKind};
use serde_json::Value;
use tonic::Status;
use tracing::info;

use crate::directory::{check_document, redacted};
use crate::shared::Shared;
use crate::store::archive::record_status;

/// Longest document accepted, in bytes of JSON.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Audit rows returned at most per call.
const MAX_AUDIT_PAGE: usize = 1000;

/// The directory calls of one router.
#[derive(Clone)]
pub struct DirectoryAdmin {
    shared: Arc<Shared>,
}

fn kind_of(kind: i32) -> Result<DirectoryKind, Status> {
    match KindProto::try_from(kind) {
        Ok(KindProto::Agent) => Ok(DirectoryKind::Agent),
        Ok(KindProto::Team) => Ok(DirectoryKind::Team),
        Ok(KindProto::Department) => Ok(DirectoryKind::Department),
        Ok(KindProto::CannedResponse) => Ok(DirectoryKind::CannedResponse),
        _ => Err(Status::invalid_argument(
            "kind must be AGENT, TEAM, DEPARTMENT or CANNED_RESPONSE",
        )),
    }
}

fn proto_kind(kind: DirectoryKind) -> KindProto {
    match kind {
        DirectoryKind::Agent => KindProto::Agent,
        DirectoryKind::Team => KindProto::Team,
        DirectoryKind::Department => KindProto::Department,
        DirectoryKind::CannedResponse => KindProto::CannedResponse,
    }
}

fn check_id(id: &str) -> Result<(), Status> {
    if id.trim().is_empty() || id.len() > centralino_base::directory::MAX_NAME {
        return Err(Status::invalid_argument(format!(
            "id must not be empty nor longer than {} bytes",
            centralino_base::directory::MAX_NAME
        )));
    }
    Ok(())
}

fn to_proto(e: &DirectoryEntry) -> EntryProto {
    EntryProto {
        kind: proto_kind(e.kind) as i32,
        id: e.id.clone(),
        version: e.version,
        disabled: e.disabled,
        json: redacted(e.kind, &e.doc).to_string(),
        updated_at_unix_ms: e.updated_at_ms,
        updated_by: e.updated_by.clone(),
    }
}

impl DirectoryAdmin {
    /// Returns the calls over `shared`'s record and live directory.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn by(&self, operator: &str) -> ChangedBy {
        ChangedBy {
            actor: operator.to_string(),
            at_ms: self.shared.clock.now_ms(),
        }
    }

    /// Checks and stores a document for `operator`.
    pub async fn put(
        &self,
        operator: &str,
        req: PutDirectoryEntryRequest,
    ) -> Result<EntryProto, Status> {
        let kind = kind_of(req.kind)?;
        check_id(&req.id)?;
        if req.json.len() > MAX_DOCUMENT_BYTES {
            return Err(Status::invalid_argument(format!(
                "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        if req.expected_version.is_some_and(|v| v < 0) {
            return Err(Status::invalid_argument(
                "expected_version must not be negative",
            ));
        }
        let doc: Value = serde_json::from_str(&req.json)
            .map_err(|e| Status::invalid_argument(format!("the document is not JSON: {e}")))?;
        let record = &self.shared.record;
        let existing = record
            .get_entry(kind, &req.id)
            .await
            .map_err(record_status)?;
        // Checked against the record itself, not this router's live view (which follows it
        // a little behind): a write right after another one — here or on another router —
        // sees it (a team just made, a subject just taken).
        let snapshot = self.current().await?;
        let doc = check_document(
            kind,
            &req.id,
            doc,
            &self.shared.config,
            &snapshot,
            existing.as_ref(),
        )
        .map_err(Status::invalid_argument)?;
        let entry = record
            .put_entry(kind, &req.id, doc, req.expected_version, &self.by(operator))
            .await
            .map_err(record_status)?;
        info!(operator, kind = kind.as_str(), id = %entry.id, version = entry.version, "directory entry written");
        Ok(to_proto(&entry))
    }

    /// Returns the directory as the record holds it now.
    async fn current(&self) -> Result<Snapshot, Status> {
        let mut snapshot = Snapshot::default();
        for kind in DirectoryKind::ALL {
            let part = match kind {
                DirectoryKind::Agent => Part::Agent,
                DirectoryKind::Team => Part::Team,
                DirectoryKind::Department => Part::Department,
                DirectoryKind::CannedResponse => Part::Canned,
            };
            let entries = self
                .shared
                .record
                .list_entries(kind, true)
                .await
                .map_err(record_status)?;
            for entry in entries {
                snapshot.set(part, &entry.id, Some(&entry.doc), entry.disabled);
            }
        }
        Ok(snapshot)
    }

    /// Returns a document.
    pub async fn get(&self, req: GetDirectoryEntryRequest) -> Result<EntryProto, Status> {
        let kind = kind_of(req.kind)?;
        check_id(&req.id)?;
        let entry = self
            .shared
            .record
            .get_entry(kind, &req.id)
            .await
            .map_err(record_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no {} {:?} in the directory",
                    kind.as_str(),
                    req.id
                ))
            })?;
        Ok(to_proto(&entry))
    }

    /// Lists the documents of a kind.
    pub async fn list(
        &self,
        req: ListDirectoryEntriesRequest,
    ) -> Result<ListDirectoryEntriesResponse, Status> {
        let kind = kind_of(req.kind)?;
        let entries = self
            .shared
            .record
            .list_entries(kind, req.include_disabled)
            .await
            .map_err(record_status)?;
        Ok(ListDirectoryEntriesResponse {
            entries: entries.iter().map(to_proto).collect(),
        })
    }

    /// Disables or enables a document for `operator`.
    pub async fn set_disabled(
        &self,
        operator: &str,
        req: SetDirectoryEntryDisabledRequest,
    ) -> Result<EntryProto, Status> {
        let kind = kind_of(req.kind)?;
        check_id(&req.id)?;
        let entry = self
            .shared
            .record
            .set_disabled(kind, &req.id, req.disabled, &self.by(operator))
            .await
            .map_err(record_status)?;
        info!(operator, kind = kind.as_str(), id = %entry.id, disabled = entry.disabled, "directory entry disabled or enabled");
        Ok(to_proto(&entry))
    }

    /// Lists audit rows (agents' password hashes redacted).
    pub async fn audit(
        &self,
        req: ListDirectoryAuditRequest,
    ) -> Result<ListDirectoryAuditResponse, Status> {
        if req.after_id < 0 {
            return Err(Status::invalid_argument("after_id must not be negative"));
        }
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(MAX_AUDIT_PAGE),
        };
        let rows = self
            .shared
            .record
            .audit_after(req.after_id, limit)
            .await
            .map_err(record_status)?;
        let entries = rows
            .into_iter()
            .map(|row| {
                let mut detail = row.detail;
                if row.subject.starts_with("agent/") {
                    if let Some(obj) = detail.as_object_mut() {
                        if let Some(doc) = obj.get("doc").map(|d| redacted(DirectoryKind::Agent, d))
                        {
                            obj.insert("doc".into(), doc);
                        }
                    }
                }
                DirectoryAuditEntry {
                    id: row.id,
                    at_unix_ms: row.at_ms,
                    actor: row.actor,
                    action: row.action,
                    subject: row.subject,
                    detail_json: detail.to_string(),
                }
            })
            .collect();
        Ok(ListDirectoryAuditResponse { entries })
    }
}
