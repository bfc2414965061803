//! The Admin API's operator-token calls, behind the operator check of
//! [`super::admin::AdminApi`]: tokens created at run time live in the system of record
//! (digest and scopes, never the secret), so every router accepts them from the next call
//! and refuses them once revoked; each change is in the audit log under the operator's
//! name. The file's `[[operators]]` stay as they are (the first admin's way in).

use std::collections::BTreeSet;
use std::sync::Arc;

use centralino_base::credentials::{self, Scope};
use centralino_proto::v1::{
    CreateOperatorTokenRequest, CreateOperatorTokenResponse, ListOperatorTokensResponse,
    OperatorTokenInfo, RevokeOperatorTokenRequest, RevokeOperatorTokenResponse,
};
use centralino_record::{ChangedBy, OperatorToken};
use tonic::Status;
use tracing::info;

use crate::shared::Shared;
use crate::store::archive::record_status;

/// Longest token name.
const MAX_NAME: usize = 64;

/// The token calls of one router.
pub struct TokenAdmin {
    shared: Arc<Shared>,
}

/// Checks a token name: 1–64 of `A-Z a-z 0-9 . _ -`.
fn check_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "name must be 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// Parses the requested scopes (at least one, each known), in a stable order.
fn parse_scopes(names: &[String]) -> Result<Vec<Scope>, Status> {
    if names.is_empty() {
        return Err(Status::invalid_argument(
            "scopes: at least one of admin, supervisor, integration, read-only",
        ));
    }
    let mut scopes = BTreeSet::new();
    for name in names {
        let scope = Scope::parse(name.trim()).ok_or_else(|| {
            Status::invalid_argument(format!(
                "scopes: unknown scope {name:?} (admin, supervisor, integration, read-only)"
            ))
        })?;
        scopes.insert(scope);
    }
    Ok(scopes.into_iter().collect())
}

/// Returns the scopes of a stored token; unknown names (a newer version's) grant nothing.
pub fn stored_scopes(token: &OperatorToken) -> BTreeSet<Scope> {
    token
        .scopes
        .iter()
        .filter_map(|s| Scope::parse(s))
        .collect()
}

impl TokenAdmin {
    /// Returns the calls over `shared`'s record.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn by(&self, who: &str) -> ChangedBy {
        ChangedBy {
            actor: who.to_string(),
            at_ms: self.shared.clock.now_ms(),
        }
    }

    /// Creates a token named `req.name` with `req.scopes` and returns its secret (once).
    pub async fn create(
        &self,
        who: &str,
        req: CreateOperatorTokenRequest,
    ) -> Result<CreateOperatorTokenResponse, Status> {
        let name = req.name.trim().to_string();
        check_name(&name)?;
        let scopes = parse_scopes(&req.scopes)?;
        if self.shared.config.operators.iter().any(|o| o.name == name) {
            return Err(Status::already_exists(format!(
                "operator {name:?} is configured in the file"
            )));
        }
        let record = &self.shared.record;
        let existing = record.list_tokens().await.map_err(record_status)?;
        if existing.iter().any(|t| t.name == name) {
            return Err(Status::already_exists(format!(
                "operator token {name:?} exists; revoke it first to rotate"
            )));
        }
        let (token, digest) = credentials::new_token();
        let scope_names: Vec<String> = scopes.iter().map(|s| s.name().to_string()).collect();
        record
            .put_token(
                OperatorToken {
                    name: name.clone(),
                    digest,
                    scopes: scope_names.clone(),
                },
                &self.by(who),
            )
            .await
            .map_err(record_status)?;
        info!(operator = %who, token = %name, scopes = ?scope_names, "operator token created");
        Ok(CreateOperatorTokenResponse {
            name,
            token,
            scopes: scope_names,
        })
    }

    /// Lists the record's tokens (names and scopes).
    pub async fn list(&self) -> Result<ListOperatorTokensResponse, Status> {
        let tokens = self
            .shared
            .record
            .list_tokens()
            .await
            .map_err(record_status)?;
        Ok(ListOperatorTokensResponse {
            tokens: tokens
                .into_iter()
                .map(|t| OperatorTokenInfo {
                    name: t.name,
                    scopes: t.scopes,
                })
                .collect(),
        })
    }

    /// Revokes the record's token named `req.name`.
    pub async fn revoke(
        &self,
        who: &str,
        req: RevokeOperatorTokenRequest,
    ) -> Result<RevokeOperatorTokenResponse, Status> {
        let name = req.name.trim().to_string();
        check_name(&name)?;
        let revoked = self
            .shared
            .record
            .delete_token(&name, &self.by(who))
            .await
            .map_err(record_status)?;
        if revoked {
            info!(operator = %who, token = %name, "operator token revoked");
        }
        Ok(RevokeOperatorTokenResponse { revoked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_are_checked() {
        assert!(check_name("crm-sync.v2").is_ok());
        for bad in ["", "has space", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_scopes(&["read-only".into(), "admin".into(), "admin".into()]).unwrap(),
            [Scope::Admin, Scope::ReadOnly]
        );
        assert!(parse_scopes(&[]).is_err());
        assert!(parse_scopes(&["root".into()]).is_err());
    }
}
