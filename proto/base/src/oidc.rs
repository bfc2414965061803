//! OIDC / JWT: agents log in and operators call the Admin API with an ID or access token
//! from the organisation's identity provider, verified against its JWKS (a file; RS256 and
//! ES256), with issuer, audience and expiry checked and claims mapped to the agent id and
//! the operator's scopes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::credentials::Scope;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The `[oidc]` section. Disabled when `issuer` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// Expected `iss` claim (exact match); empty disables OIDC.
    pub issuer: String,
    /// Expected `aud` claim (one of the token's audiences).
    pub audience: String,
    /// JWKS file (the identity provider's `jwks_uri` document); required when enabled.
    pub jwks_file: PathBuf,
    /// The identity provider's JWKS URL. Not fetched by the node yet: setting it is refused
    /// at start (download it to `jwks_file`, e.g. with a sidecar).
    pub jwks_url: String,
    /// Claim holding the agent id (default `sub`; `preferred_username` is common).
    pub agent_claim: String,
    /// Claim holding the operator's scopes: a space-separated string (OAuth `scope`) or an
    /// array of strings. Scopes named `admin`, `supervisor`, `integration`, `read-only`
    /// (optionally prefixed `centralino:`) count; others are ignored.
    pub scopes_claim: String,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_file: PathBuf::new(),
            jwks_url: String::new(),
            agent_claim: "sub".to_string(),
            scopes_claim: "scope".to_string(),
        }
    }
}

impl OidcConfig {
    /// Whether OIDC is configured.
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// Returns the problems of this section (empty when valid or disabled); reads the JWKS.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.jwks_url.is_empty() {
            out.push(
                "oidc.jwks_url: fetching the JWKS is not supported yet; download it to oidc.jwks_file"
                    .to_string(),
            );
        }
        if !self.enabled() {
            if !self.audience.is_empty() || !self.jwks_file.as_os_str().is_empty() {
                out.push("oidc.issuer: required when [oidc] is configured".to_string());
            }
            return out;
        }
        if self.audience.is_empty() {
            out.push("oidc.audience: required when oidc.issuer is set".to_string());
        }
        if self.agent_claim.is_empty() || self.scopes_claim.is_empty() {
            out.push("oidc.agent_claim and oidc.scopes_claim must not be empty".to_string());
        }
        if self.jwks_file.as_os_str().is_empty() {
            out.push("oidc.jwks_file: required when oidc.issuer is set".to_string());
        } else if let Err(e) = OidcVerifier::new(self) {
            out.push(format!("oidc.jwks_file: {e}"));
        }
        out
    }
}

/// Why a token was refused (never shown to the caller in detail beyond this text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(String);

/// A verified token's claims.
#[derive(Debug, Clone)]
pub struct Claims(serde_json::Map<String, serde_json::Value>);

/// How often the JWKS file's modification time is looked at (key rotation).
pub const JWKS_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Verifies tokens against the keys of one JWKS; the file is read again when it changes
/// (looked at most every [`JWKS_RECHECK`]; a broken new file keeps the old keys, logged).
pub struct OidcVerifier {
    keys: parking_lot::RwLock<Keys>,
    file: Option<PathBuf>,
    issuer: String,
    audience: String,
    agent_claim: String,
    scopes_claim: String,
}

struct Keys {
    keys: Vec<Key>,
    modified: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("keys", &self.keys.read().keys.len())
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl OidcVerifier {
    /// Reads the JWKS file of `config`; keys other than RSA and P-256 are skipped.
    pub fn new(config: &OidcConfig) -> Result<Self, String> {
        let (keys, modified) = read_keys(&config.jwks_file)?;
        Ok(Self::with_keys(
            config,
            keys,
            modified,
            Some(config.jwks_file.clone()),
        ))
    }

    /// Returns the verifier of `config` when OIDC is enabled.
    pub fn from_config(config: &OidcConfig) -> Result<Option<Self>, String> {
        if config.enabled() {
            Self::new(config).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Builds a verifier from a JWKS document.
    pub fn from_jwks(config: &OidcConfig, jwks: &str) -> Result<Self, String> {
        Ok(Self::with_keys(config, parse_keys(jwks)?, None, None))
    }

    fn with_keys(
        config: &OidcConfig,
        keys: Vec<Key>,
        modified: Option<std::time::SystemTime>,
        file: Option<PathBuf>,
    ) -> Self {
        Self {
            keys: parking_lot::RwLock::new(Keys {
                keys,
                modified,
                checked: std::time::Instant::now(),
            }),
            file,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            agent_claim: config.agent_claim.clone(),
            scopes_claim: config.scopes_claim.clone(),
        }
    }

    /// Reads the JWKS file again when its modification time changed.
    fn refresh(&self) {
        let Some(file) = &self.file else { return };
        {
            let keys = self.keys.read();
            if keys.checked.elapsed() < JWKS_RECHECK {
                return;
            }
        }
        let mut keys = self.keys.write();
        keys.checked = std::time::Instant::now();
        let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == keys.modified {
            return;
        }
        match read_keys(file) {
            Ok((new, modified)) => {
                tracing::info!(file = %file.display(), keys = new.len(), "JWKS reloaded");
                keys.keys = new;
                keys.modified = modified;
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "JWKS not reloaded, keeping the old keys");
                keys.modified = modified;
            }
        }
    }

    /// Verifies `token`: signature (RS256 or ES256, by a key of the JWKS; the `kid` picks
    /// it when present), issuer, audience and expiry (with [`LEEWAY_SECS`]).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError(format!("malformed token: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(TokenError(format!(
                "algorithm {:?} not accepted (RS256, ES256)",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        self.refresh();
        let keys = self.keys.read();
        let mut last = TokenError("no key of the JWKS matches the token".to_string());
        for key in keys.keys.iter().filter(|k| {
            k.alg == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        }) {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &key.key,
                &validation,
            ) {
                Ok(data) => return Ok(Claims(data.claims)),
                Err(e) => last = TokenError(format!("token refused: {e}")),
            }
        }
        Err(last)
    }

    /// Verifies `token` and returns the agent id its `agent_claim` names.
    pub fn agent_id(&self, token: &str) -> Result<String, TokenError> {
        let claims = self.verify(token)?;
        match claims.0.get(&self.agent_claim) {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(TokenError(format!(
                "the token has no {:?} claim",
                self.agent_claim
            ))),
        }
    }

    /// Verifies `token` and returns the subject and the scopes its `scopes_claim` grants.
    pub fn operator(&self, token: &str) -> Result<(String, BTreeSet<Scope>), TokenError> {
        let claims = self.verify(token)?;
        let names: Vec<String> = match claims.0.get(&self.scopes_claim) {
            Some(serde_json::Value::String(s)) => {
                s.split_whitespace().map(str::to_string).collect()
            }
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let scopes = names
            .iter()
            .filter_map(|n| Scope::parse(n.strip_prefix("centralino:").unwrap_or(n)))
            .collect();
        let subject = claims
            .0
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or("oidc")
            .to_string();
        Ok((subject, scopes))
    }
}

fn read_keys(file: &std::path::Path) -> Result<(Vec<Key>, Option<std::time::SystemTime>), String> {
    let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Ok((parse_keys(&text)?, modified))
}

/// Returns the RSA and P-256 keys of a JWKS document (others are skipped).
fn parse_keys(jwks: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_str(jwks).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key: {e}"))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("the JWKS has no RSA or P-256 key".to_string());
    }
    Ok(keys)
}

/// Whether `token` has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.len() > 20
}
