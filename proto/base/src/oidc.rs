//! OIDC / JWT: agents log in and operators call the Admin API with an ID or access token
//! from the organisation's identity provider, verified against its JWKS (RS256 and ES256;
//! see [`crate::jwks`]), with issuer, audience and expiry checked and claims mapped to the
//! agent id and the operator's scopes.
//!
//! The JWKS comes from a file (read again when it changes) or from the identity provider's
//! URL: fetched at start (the start fails when it cannot be fetched and no file is given
//! to fall back on), again every `jwks_refresh_secs`, and when a token names a key the set
//! does not hold (at most every [`KID_REFETCH`]). A failed refresh keeps the last good
//! keys, logged and counted (`centralino_oidc_jwks_refreshes_total{result="failed"}`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::credentials::Scope;
use crate::jwks::{self, JwksUrl, KeySet, Rules};

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
    /// JWKS file (the identity provider's `jwks_uri` document), read again when it
    /// changes; with `jwks_url` set, the keys used until the first download succeeds.
    pub jwks_file: PathBuf,
    /// The identity provider's JWKS URL (its `jwks_uri`): `https://` (plain `http://`
    /// only on loopback or in dev mode). One of `jwks_file` and `jwks_url` is required.
    pub jwks_url: String,
    /// CA certificates (PEM) that sign the JWKS server's certificate; empty: the WebPKI
    /// roots (the public CAs).
    pub jwks_ca_file: PathBuf,
    /// How often the JWKS is downloaded again from `jwks_url`, in seconds.
    pub jwks_refresh_secs: u64,
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
            jwks_ca_file: PathBuf::new(),
            jwks_refresh_secs: DEFAULT_REFRESH_SECS,
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

    /// Returns the problems of this section (empty when valid or disabled); reads the JWKS
    /// file and checks the URL (plain http only on loopback or when `dev_mode`), without
    /// fetching it ([`check_jwks_url`] does, at start).
    pub fn problems(&self, dev_mode: bool) -> Vec<String> {
        let mut out = Vec::new();
        let has_file = !self.jwks_file.as_os_str().is_empty();
        if !self.enabled() {
            if !self.audience.is_empty() || has_file || !self.jwks_url.is_empty() {
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
        if !has_file && self.jwks_url.is_empty() {
            out.push(
                "oidc.jwks_file or oidc.jwks_url: required when oidc.issuer is set".to_string(),
            );
        }
        if has_file {
            if let Err(e) = KeySet::read(&self.jwks_file) {
                out.push(format!("oidc.jwks_file: {e}"));
            }
        }
        if !self.jwks_url.is_empty() {
            if let Err(e) = JwksUrl::parse(&self.jwks_url, dev_mode) {
                out.push(format!("oidc.jwks_url: {e}"));
            }
            if self.jwks_refresh_secs == 0 {
                out.push("oidc.jwks_refresh_secs must be positive".to_string());
            }
        }
        if !self.jwks_ca_file.as_os_str().is_empty() {
            if let Err(e) = crate::tls::read_roots(&self.jwks_ca_file) {
                out.push(format!("oidc.jwks_ca_file: {e}"));
            }
        }
        out
    }

    /// The URL source of this section, if any (`allow_http`: plain http anywhere).
    fn url_source(&self, allow_http: bool) -> Result<Option<UrlSource>, String> {
        if self.jwks_url.is_empty() {
            return Ok(None);
        }
        let url = JwksUrl::parse(&self.jwks_url, allow_http)?;
        Ok(Some(UrlSource {
            url,
            ca_file: (!self.jwks_ca_file.as_os_str().is_empty()).then(|| self.jwks_ca_file.clone()),
            refresh: Duration::from_secs(self.jwks_refresh_secs.max(1)),
            state: tokio::sync::Mutex::new(FetchState::default()),
        }))
    }
}

/// Default of `jwks_refresh_secs`: the JWKS is downloaded again every 5 minutes.
pub const DEFAULT_REFRESH_SECS: u64 = 300;
/// A token naming a key the set does not hold triggers a download at most this often.
pub const KID_REFETCH: Duration = Duration::from_secs(30);

/// Fetches the JWKS of `config`'s `jwks_url` once, at start: an error when it cannot be
/// fetched and no `jwks_file` is there to fall back on (then it is logged and the file's
/// keys serve until a refresh succeeds). Nothing to do without a URL or with OIDC off.
pub async fn check_jwks_url(config: &OidcConfig) -> Result<(), String> {
    if !config.enabled() {
        return Ok(());
    }
    // The configuration check has refused a plain-http URL where it is not allowed.
    let Some(source) = config.url_source(true)? else {
        return Ok(());
    };
    match source.fetch().await {
        Ok(keys) => {
            tracing::info!(url = %source.url, keys = keys.len(), "JWKS fetched");
            Ok(())
        }
        Err(e) if config.jwks_file.as_os_str().is_empty() => Err(format!(
            "oidc.jwks_url: cannot fetch the JWKS from {}: {e} (and no oidc.jwks_file to fall back on)",
            source.url
        )),
        Err(e) => {
            tracing::warn!(url = %source.url, error = %e, file = %config.jwks_file.display(),
                "JWKS not fetched at start; using the file's keys until a refresh succeeds");
            Ok(())
        }
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
pub const JWKS_RECHECK: Duration = Duration::from_secs(5);

/// Verifies tokens against the keys of one JWKS, from a file (read again when it changes,
/// looked at most every [`JWKS_RECHECK`]) or a URL (see the module documentation); a
/// broken new document keeps the old keys, logged.
pub struct OidcVerifier {
    inner: Arc<Inner>,
    stop: Arc<Notify>,
}

struct Inner {
    keys: parking_lot::RwLock<Option<Arc<KeySet>>>,
    file: Option<FileSource>,
    url: Option<UrlSource>,
    issuer: String,
    audience: String,
    agent_claim: String,
    scopes_claim: String,
}

struct FileSource {
    path: PathBuf,
    seen: parking_lot::Mutex<(Option<std::time::SystemTime>, Instant)>,
}

struct UrlSource {
    url: JwksUrl,
    ca_file: Option<PathBuf>,
    refresh: Duration,
    state: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    /// When a token with an unknown key last made us download.
    last_kid_fetch: Option<Instant>,
    /// When a download was last tried, for any reason.
    last_attempt: Option<Instant>,
}

/// Why the JWKS is downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The periodic refresh.
    Periodic,
    /// No key set yet (URL only, before the first download succeeded); at most every
    /// [`MISSING_REFETCH`].
    Missing,
    /// A token named a key the set does not hold; at most every [`KID_REFETCH`].
    UnknownKid,
}

/// Without any key set, a verification triggers a download at most this often.
const MISSING_REFETCH: Duration = Duration::from_secs(5);

impl UrlSource {
    async fn fetch(&self) -> Result<KeySet, String> {
        jwks::fetch(&self.url, self.ca_file.as_deref()).await
    }
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field(
                "keys",
                &self.inner.keys.read().as_ref().map_or(0, |k| k.len()),
            )
            .field("issuer", &self.inner.issuer)
            .finish()
    }
}

impl Drop for OidcVerifier {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

impl OidcVerifier {
    /// Returns the verifier of `config`: the keys of its JWKS file, if any (an error when
    /// it cannot be read); with a `jwks_url`, keys are downloaded in the background (when a
    /// tokio runtime runs) every `jwks_refresh_secs`, and before a verification that finds
    /// no key yet. Keys other than RSA and P-256 are skipped.
    pub fn new(config: &OidcConfig) -> Result<Self, String> {
        let has_file = !config.jwks_file.as_os_str().is_empty();
        // The configuration check has refused a plain-http URL where it is not allowed.
        let url = config.url_source(true)?;
        if !has_file && url.is_none() {
            return Err("no JWKS: set oidc.jwks_file or oidc.jwks_url".to_string());
        }
        let (keys, file) = if has_file {
            let modified = modified(&config.jwks_file);
            let keys = KeySet::read(&config.jwks_file)?;
            // With a URL, the file only seeds the keys.
            let file = url.is_none().then(|| FileSource {
                path: config.jwks_file.clone(),
                seen: parking_lot::Mutex::new((modified, Instant::now())),
            });
            (Some(Arc::new(keys)), file)
        } else {
            (None, None)
        };
        Ok(Self::with(config, keys, file, url))
    }

    /// Returns the verifier of `config` when OIDC is enabled.
    pub fn from_config(config: &OidcConfig) -> Result<Option<Self>, String> {
        if config.enabled() {
            Self::new(config).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Builds a verifier from a JWKS document (no file, no URL).
    pub fn from_jwks(config: &OidcConfig, jwks: &str) -> Result<Self, String> {
        Ok(Self::with(
            config,
            Some(Arc::new(KeySet::parse(jwks)?)),
            None,
            None,
        ))
    }

    fn with(
        config: &OidcConfig,
        keys: Option<Arc<KeySet>>,
        file: Option<FileSource>,
        url: Option<UrlSource>,
    ) -> Self {
        let inner = Arc::new(Inner {
            keys: parking_lot::RwLock::new(keys),
            file,
            url,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            agent_claim: config.agent_claim.clone(),
            scopes_claim: config.scopes_claim.clone(),
        });
        let stop = Arc::new(Notify::new());
        if let (Some(url), Ok(runtime)) = (&inner.url, tokio::runtime::Handle::try_current()) {
            runtime.spawn(refresh_loop(
                Arc::downgrade(&inner),
                url.refresh,
                stop.clone(),
            ));
        }
        Self { inner, stop }
    }

    /// Verifies `token`: signature (RS256 or ES256, by a key of the JWKS; the `kid` picks
    /// it when present), issuer, audience and expiry (with [`LEEWAY_SECS`]). With a JWKS
    /// URL, a token naming a key the set does not hold makes the set be downloaded again
    /// first (at most every [`KID_REFETCH`]).
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let inner = &self.inner;
        inner.reload_file();
        if inner.url.is_some() {
            let current = inner.current();
            let unknown_key = current.as_ref().is_some_and(|k| !k.has_key_for(token));
            if current.is_none() {
                inner.fetch(Why::Missing).await;
            } else if unknown_key && signed_as_accepted(token) {
                inner.fetch(Why::UnknownKid).await;
            }
        }
        let keys = inner
            .current()
            .ok_or_else(|| TokenError("no JWKS has been fetched yet".to_string()))?;
        let rules = Rules {
            issuer: &inner.issuer,
            audience: &inner.audience,
            required: &["exp", "iss", "aud"],
            leeway_secs: LEEWAY_SECS,
        };
        keys.verify::<serde_json::Map<String, serde_json::Value>>(token, &rules)
            .map(Claims)
            .map_err(|e| TokenError(e.to_string()))
    }

    /// Verifies `token` and returns the agent id its `agent_claim` names.
    pub async fn agent_id(&self, token: &str) -> Result<String, TokenError> {
        let claims = self.verify(token).await?;
        let claim = &self.inner.agent_claim;
        match claims.0.get(claim) {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(TokenError(format!("the token has no {claim:?} claim"))),
        }
    }

    /// Verifies `token` and returns the subject and the scopes its `scopes_claim` grants.
    pub async fn operator(&self, token: &str) -> Result<(String, BTreeSet<Scope>), TokenError> {
        let claims = self.verify(token).await?;
        let names: Vec<String> = match claims.0.get(&self.inner.scopes_claim) {
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

impl Inner {
    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().clone()
    }

    /// Reads the JWKS file again when its modification time changed.
    fn reload_file(&self) {
        let Some(file) = &self.file else { return };
        let mut seen = file.seen.lock();
        if seen.1.elapsed() < JWKS_RECHECK {
            return;
        }
        seen.1 = Instant::now();
        let now_modified = modified(&file.path);
        if now_modified.is_none() || now_modified == seen.0 {
            return;
        }
        seen.0 = now_modified;
        match KeySet::read(&file.path) {
            Ok(new) => {
                tracing::info!(file = %file.path.display(), keys = new.len(), "JWKS reloaded");
                *self.keys.write() = Some(Arc::new(new));
            }
            Err(e) => {
                tracing::warn!(file = %file.path.display(), error = %e, "JWKS not reloaded, keeping the old keys");
            }
        }
    }

    /// Downloads the JWKS from the URL (one download at a time), unless another task just
    /// did, or `why` was tried too recently (see [`Why`]). A failure keeps the old keys
    /// (logged and counted).
    async fn fetch(&self, why: Why) {
        let Some(url) = &self.url else { return };
        let before = self.current();
        let mut state = url.state.lock().await;
        let changed_meanwhile = match (&before, &self.current()) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, Some(_)) => true,
            _ => false,
        };
        if changed_meanwhile {
            return; // another task has just downloaded it
        }
        let recent = |t: Option<Instant>, gap: Duration| t.is_some_and(|t| t.elapsed() < gap);
        match why {
            Why::Periodic => {}
            Why::Missing if recent(state.last_attempt, MISSING_REFETCH) => return,
            Why::Missing => {}
            Why::UnknownKid if recent(state.last_kid_fetch, KID_REFETCH) => return,
            Why::UnknownKid => state.last_kid_fetch = Some(Instant::now()),
        }
        state.last_attempt = Some(Instant::now());
        match url.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %url.url, keys = keys.len(), "JWKS fetched");
                crate::metrics::jwks_refresh(true);
                *self.keys.write() = Some(Arc::new(keys));
            }
            Err(e) => {
                tracing::warn!(url = %url.url, error = %e, "JWKS not fetched, keeping the old keys");
                crate::metrics::jwks_refresh(false);
            }
        }
    }
}

/// Downloads the JWKS now and then every `every`, until the verifier is dropped.
async fn refresh_loop(inner: Weak<Inner>, every: Duration, stop: Arc<Notify>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        strong.fetch(Why::Periodic).await;
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.notified() => return,
        }
    }
}

/// Whether `token`'s header names an accepted algorithm (a download for anything else
/// would be for nothing).
fn signed_as_accepted(token: &str) -> bool {
    jsonwebtoken::decode_header(token)
        .is_ok_and(|h| matches!(h.alg, Algorithm::RS256 | Algorithm::ES256))
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `token` has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.len() > 20
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A token with an ES256 header and a garbage signature.
    fn es256_token(kid: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            b64.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#)),
            b64.encode(r#"{"sub":"x"}"#),
            b64.encode([7u8; 64])
        )
    }

    #[tokio::test]
    async fn an_identity_provider_that_fails_is_not_hammered_by_logins() {
        // A server that accepts and hangs up: every download fails.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        let config = OidcConfig {
            issuer: "https://idp.example".into(),
            audience: "centralino".into(),
            jwks_url: url,
            jwks_refresh_secs: 3600,
            ..OidcConfig::default()
        };
        assert_eq!(config.problems(false), Vec::<String>::new());
        let verifier = OidcVerifier::new(&config).unwrap();
        for kid in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let err = verifier.verify(&es256_token(kid)).await.unwrap_err();
            assert!(err.to_string().contains("no JWKS"), "{err}");
        }
        let tried = connections.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&tried),
            "the start download and at most one more: {tried}"
        );
        drop(verifier);
    }

    #[test]
    fn a_section_needs_a_key_source_and_https_off_loopback() {
        let mut config = OidcConfig {
            issuer: "https://idp.example".into(),
            audience: "centralino".into(),
            ..OidcConfig::default()
        };
        let problems = config.problems(false).join("\n");
        assert!(
            problems.contains("oidc.jwks_file or oidc.jwks_url"),
            "{problems}"
        );
        config.jwks_url = "http://idp.example/certs".into();
        assert!(config.problems(false).join("\n").contains("plain http://"));
        assert!(config.problems(true).is_empty(), "dev mode allows http");
        config.jwks_url = "https://idp.example/certs".into();
        config.jwks_refresh_secs = 0;
        assert!(config
            .problems(false)
            .join("\n")
            .contains("jwks_refresh_secs"));
    }
}
