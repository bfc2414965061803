//! Who a customer is (DESIGN.md §9, issue 10): a `customer_id` is honoured only with an
//! identity token the shop's backend signed; everybody else is an anonymous visitor whose
//! visitor token (signed by the node) continues only that visitor's own history.
//!
//! Both tokens have one shape, easy to compute in any language:
//!
//! ```text
//! <version>.<id>.<expiry: Unix seconds>.<lowercase hex HMAC-SHA256(key, "<version>.<id>.<expiry>")>
//! ```
//!
//! with version `v1` for shop identity tokens (key: `[identity] shop_secret`) and `vt1` for
//! visitor tokens (key: `[identity] visitor_secret`). The id may contain dots (the expiry
//! and the signature are the last two fields). Signatures are compared in constant time;
//! expiry is checked against the node's wall clock (a shop signs in real time, so a
//! simulated clock does not apply). Visitors' profiles live under [`VISITOR_PREFIX`]`<id>`,
//! a namespace no shop token may claim.

use std::time::{SystemTime, UNIX_EPOCH};

use centralino_base::jwks::{KeySet, Rules};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{parse_secret as parse_key, IdentityConfig};

type HmacSha256 = Hmac<Sha256>;

/// Version field of shop identity tokens.
pub const CUSTOMER_TOKEN_VERSION: &str = "v1";
/// Version field of visitor tokens.
pub const VISITOR_TOKEN_VERSION: &str = "vt1";
/// Prefix of the customer id under which an anonymous visitor's profile is kept.
pub const VISITOR_PREFIX: &str = "visitor:";
/// Longest id accepted in a token, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Bytes of a signature (HMAC-SHA256).
const SIGNATURE_BYTES: usize = 32;

/// Why a token was refused. Messages complete "identity_token …" / "visitor_token …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `<version>.<id>.<expiry>.<signature>`.
    #[error("is malformed: expected {0}.<id>.<expiry unix seconds>.<64 lowercase hex digits>")]
    Malformed(&'static str),
    /// The id is empty, blank, too long, has control characters or claims a visitor id.
    #[error("names no valid id: {0}")]
    BadId(&'static str),
    /// The signature does not match.
    #[error("has an invalid signature")]
    BadSignature,
    /// The expiry has passed.
    #[error("has expired")]
    Expired,
    /// The expiry lies further ahead than the node accepts.
    #[error("expires more than {0} s from now; sign tokens with a shorter lifetime")]
    TooLong(u64),
    /// A shop JWT failed verification (signature, issuer, audience, expiry, claims).
    #[error("is not a valid shop JWT: {0}")]
    Jwt(String),
}

/// A verified token: its id and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The id the token vouches for.
    pub id: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Returns the current wall-clock time in Unix seconds.
pub fn wall_clock_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn signature(key: &[u8], payload: &str) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(payload.as_bytes());
    Some(mac)
}

/// Returns the token of `version` for `id`, expiring at `expires_at` (Unix seconds),
/// signed with `key` (what a shop's backend computes for `v1`).
pub fn sign(version: &str, key: &[u8], id: &str, expires_at: i64) -> String {
    let payload = format!("{version}.{id}.{expires_at}");
    let digest = signature(key, &payload)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("{payload}.{digest}")
}

/// Returns a shop identity token for `customer_id` valid for `ttl_secs` from now, signed
/// with `shop_secret` as written in the configuration (`None` when the secret is empty or
/// malformed). For the simulator, tests and examples; shops compute it themselves.
pub fn customer_token(shop_secret: &str, customer_id: &str, ttl_secs: i64) -> Option<String> {
    let key = parse_key(shop_secret).ok()??;
    Some(sign(
        CUSTOMER_TOKEN_VERSION,
        &key,
        customer_id,
        wall_clock_secs() + ttl_secs,
    ))
}

fn check_id(id: &str) -> Result<(), TokenError> {
    if id.trim().is_empty() {
        return Err(TokenError::BadId("the id is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(TokenError::BadId("the id is longer than 256 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(TokenError::BadId("the id contains control characters"));
    }
    Ok(())
}

/// Verifies `token` of `version` with `key` at `now` (Unix seconds): the signature (in
/// constant time), then the expiry, which must not lie more than `max_lifetime_secs`
/// ahead of `now`.
pub fn verify(
    version: &'static str,
    key: &[u8],
    token: &str,
    now: i64,
    max_lifetime_secs: u64,
) -> Result<Verified, TokenError> {
    let malformed = TokenError::Malformed(version);
    let rest = token
        .strip_prefix(version)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or(malformed.clone())?;
    let mut fields = rest.rsplitn(3, '.');
    let (Some(digest), Some(expiry), Some(id)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed);
    };
    let strict_hex = digest.len() == 2 * SIGNATURE_BYTES
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let digits =
        !expiry.is_empty() && expiry.len() <= 18 && expiry.bytes().all(|b| b.is_ascii_digit());
    if !strict_hex || !digits {
        return Err(malformed);
    }
    let digest = hex::decode(digest).map_err(|_| malformed.clone())?;
    let expires_at: i64 = expiry.parse().map_err(|_| malformed)?;
    let payload = &token[..token.len() - 2 * SIGNATURE_BYTES - 1];
    signature(key, payload)
        .ok_or(TokenError::BadSignature)?
        .verify_slice(&digest)
        .map_err(|_| TokenError::BadSignature)?;
    check_id(id)?;
    if expires_at <= now {
        return Err(TokenError::Expired);
    }
    if expires_at - now > max_lifetime_secs as i64 {
        return Err(TokenError::TooLong(max_lifetime_secs));
    }
    Ok(Verified {
        id: id.to_string(),
        expires_at,
    })
}

/// Who a conversation is started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A customer the shop vouched for with an identity token.
    Customer(String),
    /// An anonymous visitor (a new one, or one that showed a valid visitor token).
    Visitor {
        /// The visitor id (without [`VISITOR_PREFIX`]).
        id: String,
        /// The request named a `customer_id` without an identity token; it was ignored.
        ignored_customer_id: bool,
    },
}

impl Subject {
    /// Returns the id the customer's profile and conversations are kept under.
    pub fn profile_id(&self) -> String {
        match self {
            Self::Customer(id) => id.clone(),
            Self::Visitor { id, .. } => format!("{VISITOR_PREFIX}{id}"),
        }
    }
}

/// Why a start request's identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The identity token was refused.
    #[error("identity_token {0}")]
    Token(TokenError),
    /// This node accepts no identity tokens.
    #[error(
        "identity_token given, but this node accepts none ([identity] shop_secret is not set)"
    )]
    NotAccepted,
    /// The token claims an id in the visitors' namespace.
    #[error("identity_token may not name an id starting with \"visitor:\"")]
    ReservedId,
    /// `customer_id` and the token's id differ.
    #[error("customer_id does not match the identity token")]
    Mismatch,
}

impl IdentityError {
    /// Returns a short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Token(TokenError::Malformed(_)) => "malformed",
            Self::Token(TokenError::BadId(_)) | Self::ReservedId => "bad_id",
            Self::Token(TokenError::BadSignature) => "bad_signature",
            Self::Token(TokenError::Expired) => "expired",
            Self::Token(TokenError::TooLong(_)) => "too_long",
            Self::Token(TokenError::Jwt(_)) => "bad_jwt",
            Self::NotAccepted => "not_accepted",
            Self::Mismatch => "mismatch",
        }
    }
}

impl From<IdentityError> for tonic::Status {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Mismatch | IdentityError::ReservedId => {
                tonic::Status::invalid_argument(e.to_string())
            }
            _ => tonic::Status::unauthenticated(e.to_string()),
        }
    }
}

/// The node's identity keys and the rules that use them.
pub struct Identity {
    shop_key: Option<Vec<u8>>,
    shop_jwt: Option<ShopJwt>,
    visitor_key: Vec<u8>,
    max_token_lifetime_secs: u64,
    visitor_token_max_age_secs: u64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("shop_key", &self.shop_key.as_ref().map(|_| "<set>"))
            .field(
                "shop_jwt_keys",
                &self.shop_jwt.as_ref().map(|j| j.keys.len()),
            )
            .field("max_token_lifetime_secs", &self.max_token_lifetime_secs)
            .field(
                "visitor_token_max_age_secs",
                &self.visitor_token_max_age_secs,
            )
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Returns the keys of `config`; an empty visitor secret gets a random key. A malformed
    /// secret (the configuration check reports it) accepts no shop token, or gets a random
    /// visitor key: it fails closed.
    pub fn from_config(config: &IdentityConfig) -> Self {
        let shop_key = parse_key(&config.shop_secret).ok().flatten();
        let visitor_key = parse_key(&config.visitor_secret)
            .ok()
            .flatten()
            .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
        let shop_jwt = ShopJwt::load(config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "shop JWKS not loaded: shop JWTs are refused");
            None
        });
        Self {
            shop_key,
            shop_jwt,
            visitor_key,
            max_token_lifetime_secs: config.max_token_lifetime_secs,
            visitor_token_max_age_secs: config.visitor_token_max_age_secs,
        }
    }

    /// Returns whom a start request is for at `now` (Unix seconds), from its `customer_id`,
    /// `identity_token` and `visitor_token`:
    ///
    /// - with an identity token, the customer it names, if it is valid (else an error);
    ///   a `customer_id` given beside it must be the same;
    /// - without one, a visitor: the one of a valid visitor token, or a new one (an expired
    ///   or invalid visitor token — e.g. from before a key rotation — just starts afresh).
    ///   A `customer_id` is then ignored.
    pub fn resolve(
        &self,
        customer_id: &str,
        identity_token: &str,
        visitor_token: &str,
        now: i64,
    ) -> Result<Subject, IdentityError> {
        if !identity_token.is_empty() {
            let hmac_token = identity_token.starts_with("v1.");
            let verified = match &self.shop_jwt {
                Some(jwt) if !hmac_token => {
                    jwt.verify(identity_token, now, self.max_token_lifetime_secs)
                }
                _ => {
                    let key = self.shop_key.as_deref().ok_or(IdentityError::NotAccepted)?;
                    verify(
                        CUSTOMER_TOKEN_VERSION,
                        key,
                        identity_token,
                        now,
                        self.max_token_lifetime_secs,
                    )
                }
            }
            .map_err(IdentityError::Token)?;
            if verified.id.starts_with(VISITOR_PREFIX) {
                return Err(IdentityError::ReservedId);
            }
            if !customer_id.is_empty() && customer_id != verified.id {
                return Err(IdentityError::Mismatch);
            }
            return Ok(Subject::Customer(verified.id));
        }
        let ignored_customer_id = !customer_id.is_empty();
        let known = (!visitor_token.is_empty())
            .then(|| {
                verify(
                    VISITOR_TOKEN_VERSION,
                    &self.visitor_key,
                    visitor_token,
                    now,
                    self.visitor_token_max_age_secs,
                )
                .ok()
            })
            .flatten();
        let id = match known {
            Some(v) => v.id,
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        Ok(Subject::Visitor {
            id,
            ignored_customer_id,
        })
    }

    /// Returns a fresh visitor token for `visitor_id` at `now` (Unix seconds).
    pub fn visitor_token(&self, visitor_id: &str, now: i64) -> String {
        sign(
            VISITOR_TOKEN_VERSION,
            &self.visitor_key,
            visitor_id,
            now + self.visitor_token_max_age_secs as i64,
        )
    }
}

/// Shop JWTs: verified against the keys of a JWKS file with the base crate's JWT checks
/// ([`centralino_base::jwks`]: RS256 or ES256, the `kid` picks the key when present), with
/// the configured issuer and audience, a required expiry (no leeway) and the customer id
/// in `sub`.
struct ShopJwt {
    keys: KeySet,
    issuer: String,
    audience: String,
}

/// The claims of a shop JWT the node reads.
#[derive(serde::Deserialize)]
struct ShopClaims {
    sub: String,
    exp: i64,
}

impl ShopJwt {
    /// Returns the verifier of `config`'s `jwks_file` (`None` when it is not set).
    fn load(config: &IdentityConfig) -> Result<Option<Self>, String> {
        if config.jwks_file.as_os_str().is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys: KeySet::read(&config.jwks_file)?,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }))
    }

    /// Verifies the shop JWT `token` at `now` (Unix seconds).
    fn verify(
        &self,
        token: &str,
        now: i64,
        max_lifetime_secs: u64,
    ) -> Result<Verified, TokenError> {
        let rules = Rules {
            issuer: &self.issuer,
            audience: &self.audience,
            required: &["exp", "iss", "aud", "sub"],
            leeway_secs: 0,
        };
        let ShopClaims { sub, exp } = self
            .keys
            .verify(token, &rules)
            .map_err(|e| TokenError::Jwt(e.to_string()))?;
        check_id(&sub)?;
        if exp <= now {
            return Err(TokenError::Expired);
        }
        if exp - now > max_lifetime_secs as i64 {
            return Err(TokenError::TooLong(max_lifetime_secs));
        }
        Ok(Verified {
            id: sub,
            expires_at: exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn identity() -> Identity {
        Identity::from_config(&IdentityConfig {
            shop_secret: format!("hex:{}", hex::encode(KEY)),
            visitor_secret: String::new(),
            ..IdentityConfig::default()
        })
    }

    #[test]
    fn the_documented_format_is_what_sign_makes() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"0123456789abcdef0123456789abcdef", b"v1.c-42.1800000600", hashlib.sha256).hexdigest())'
        let token = sign(CUSTOMER_TOKEN_VERSION, KEY, "c-42", NOW + 600);
        assert_eq!(
            token,
            "v1.c-42.1800000600.310cc9cf3fafb72c1a3d6e266e6a7cdf43037aebc23251efb0ac26c6cf34c3f3"
        );
    }

    #[test]
    fn valid_tokens_verify_and_dots_in_ids_are_kept() {
        let token = sign(CUSTOMER_TOKEN_VERSION, KEY, "shop.it/c.42", NOW + 600);
        let v = verify(CUSTOMER_TOKEN_VERSION, KEY, &token, NOW, DAY).unwrap();
        assert_eq!(v.id, "shop.it/c.42");
        assert_eq!(v.expires_at, NOW + 600);
    }

    #[test]
    fn expired_long_lived_foreign_and_malformed_tokens_are_refused() {
        let expired = sign(CUSTOMER_TOKEN_VERSION, KEY, "c", NOW);
        assert_eq!(
            verify(CUSTOMER_TOKEN_VERSION, KEY, &expired, NOW, DAY),
            Err(TokenError::Expired)
        );
        let long = sign(CUSTOMER_TOKEN_VERSION, KEY, "c", NOW + DAY as i64 + 1);
        assert_eq!(
            verify(CUSTOMER_TOKEN_VERSION, KEY, &long, NOW, DAY),
            Err(TokenError::TooLong(DAY))
        );
        let other_key = sign(
            CUSTOMER_TOKEN_VERSION,
            b"another key another key another!",
            "c",
            NOW + 60,
        );
        assert_eq!(
            verify(CUSTOMER_TOKEN_VERSION, KEY, &other_key, NOW, DAY),
            Err(TokenError::BadSignature)
        );
        let visitor = sign(VISITOR_TOKEN_VERSION, KEY, "c", NOW + 60);
        assert_eq!(
            verify(CUSTOMER_TOKEN_VERSION, KEY, &visitor, NOW, DAY),
            Err(TokenError::Malformed(CUSTOMER_TOKEN_VERSION))
        );
        let upper = sign(CUSTOMER_TOKEN_VERSION, KEY, "c", NOW + 60).to_uppercase();
        assert!(verify(CUSTOMER_TOKEN_VERSION, KEY, &upper, NOW, DAY).is_err());
        for bad in ["", "v1", "v1.", "v1.c.123", "v1.c.12a.00", "x1.c.1.ab"] {
            assert_eq!(
                verify(CUSTOMER_TOKEN_VERSION, KEY, bad, NOW, DAY),
                Err(TokenError::Malformed(CUSTOMER_TOKEN_VERSION)),
                "{bad:?}"
            );
        }
        let blank = sign(CUSTOMER_TOKEN_VERSION, KEY, "  ", NOW + 60);
        assert!(matches!(
            verify(CUSTOMER_TOKEN_VERSION, KEY, &blank, NOW, DAY),
            Err(TokenError::BadId(_))
        ));
    }

    #[test]
    fn secrets_need_a_prefix_and_32_bytes() {
        assert_eq!(parse_key("").unwrap(), None);
        assert_eq!(
            parse_key(&format!("hex:{}", hex::encode(KEY)))
                .unwrap()
                .unwrap(),
            KEY
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        assert_eq!(parse_key(&format!("base64:{b64}")).unwrap().unwrap(), KEY);
        assert!(parse_key(&hex::encode(KEY)).is_err(), "no prefix");
        assert!(parse_key("hex:abcd").unwrap_err().contains("at least 32"));
        assert!(parse_key("hex:zz").is_err());
    }

    #[test]
    fn a_shop_jwks_that_is_no_key_set_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let jwks_file = dir.path().join("shop-jwks.json");
        std::fs::write(&jwks_file, r#"{"keys": []}"#).unwrap();
        let config = IdentityConfig {
            jwks_file,
            issuer: "https://shop.example".into(),
            audience: "centralino".into(),
            ..IdentityConfig::default()
        };
        let problems = config.secret_problems(true, false).join("\n");
        assert!(
            problems.contains("identity.jwks_file: the JWKS has no RSA or P-256 key"),
            "{problems}"
        );
        std::fs::write(&config.jwks_file, TEST_JWKS).unwrap();
        assert!(config.secret_problems(true, false).is_empty());
    }

    #[test]
    fn a_customer_id_needs_an_identity_token() {
        let id = identity();
        let token = sign(CUSTOMER_TOKEN_VERSION, KEY, "anna", NOW + 60);
        assert_eq!(
            id.resolve("", &token, "", NOW),
            Ok(Subject::Customer("anna".into()))
        );
        assert_eq!(
            id.resolve("anna", &token, "", NOW),
            Ok(Subject::Customer("anna".into()))
        );
        assert_eq!(
            id.resolve("bruno", &token, "", NOW),
            Err(IdentityError::Mismatch)
        );
        match id.resolve("anna", "", "", NOW) {
            Ok(Subject::Visitor {
                id,
                ignored_customer_id: true,
            }) => assert_ne!(id, "anna"),
            other => panic!("{other:?}"),
        }
        let reserved = sign(CUSTOMER_TOKEN_VERSION, KEY, "visitor:x", NOW + 60);
        assert_eq!(
            id.resolve("", &reserved, "", NOW),
            Err(IdentityError::ReservedId)
        );
        let closed = Identity::from_config(&IdentityConfig::default());
        assert_eq!(
            closed.resolve("", &token, "", NOW),
            Err(IdentityError::NotAccepted)
        );
    }

    #[test]
    fn a_visitor_token_continues_its_own_visitor_only() {
        let id = identity();
        let Ok(Subject::Visitor { id: first, .. }) = id.resolve("", "", "", NOW) else {
            panic!("a new visitor");
        };
        let token = id.visitor_token(&first, NOW);
        assert_eq!(
            id.resolve("", "", &token, NOW + 10),
            Ok(Subject::Visitor {
                id: first.clone(),
                ignored_customer_id: false
            })
        );
        // A visitor token is no identity token, and one of another node's key is not kept.
        assert!(id.resolve("", &token, "", NOW).is_err());
        let other = identity();
        let Ok(Subject::Visitor { id: fresh, .. }) = other.resolve("", "", &token, NOW) else {
            panic!("a new visitor");
        };
        assert_ne!(fresh, first);
        // Expired: a new visitor.
        let late = NOW + 31 * DAY as i64;
        let Ok(Subject::Visitor { id: after, .. }) = id.resolve("", "", &token, late) else {
            panic!("a new visitor");
        };
        assert_ne!(after, first);
    }

    #[test]
    fn routers_sharing_the_visitor_secret_continue_each_others_visitors() {
        let config = IdentityConfig {
            visitor_secret: format!("hex:{}", hex::encode(KEY)),
            ..IdentityConfig::default()
        };
        let (a, b) = (
            Identity::from_config(&config),
            Identity::from_config(&config),
        );
        let token = a.visitor_token("v-1", NOW);
        assert_eq!(
            b.resolve("", "", &token, NOW),
            Ok(Subject::Visitor {
                id: "v-1".into(),
                ignored_customer_id: false
            })
        );
    }

    /// A P-256 key made for these tests (`openssl ecparam -name prime256v1 -genkey`), as
    /// PKCS#8 DER, and its public half as a JWKS.
    const TEST_EC_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5mC6UhiUF6MHP7ZsPvknCtc99AXeq2X903ho2o90KwKhRANCAAQZBQrH0nO8jyAiZTYz1D5tGYsMCeQnUzZzOyQcefmPExHfaqwSMxlYApMDdFtOYI4BsaPsPN9mHUkk7IeVDunT";
    const TEST_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"shop-1","use":"sig","alg":"ES256",
        "x":"GQUKx9JzvI8gImU2M9Q-bRmLDAnkJ1M2czskHHn5jxM","y":"Ed9qrBIzGVgCkwN0W05gjgGxo-w832YdSSTsh5UO6dM"}]}"#;

    fn shop_jwt(claims: serde_json::Value, kid: &str) -> String {
        use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
        let der = base64::engine::general_purpose::STANDARD
            .decode(TEST_EC_PKCS8)
            .unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        encode(&header, &claims, &EncodingKey::from_ec_der(&der)).unwrap()
    }

    #[test]
    fn shop_jwts_verify_against_the_jwks_with_issuer_audience_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let jwks_file = dir.path().join("shop-jwks.json");
        std::fs::write(&jwks_file, TEST_JWKS).unwrap();
        let config = IdentityConfig {
            jwks_file,
            issuer: "https://shop.example".into(),
            audience: "centralino".into(),
            ..IdentityConfig::default()
        };
        assert!(config.problems().is_empty() && config.secret_problems(false, false).is_empty());
        let identity = Identity::from_config(&config);
        let now = wall_clock_secs();
        let claims = |sub: &str, exp: i64, iss: &str, aud: &str| serde_json::json!({ "sub": sub, "exp": exp, "iss": iss, "aud": aud });
        let good = shop_jwt(
            claims("anna", now + 600, "https://shop.example", "centralino"),
            "shop-1",
        );
        assert_eq!(
            identity.resolve("anna", &good, "", now),
            Ok(Subject::Customer("anna".into()))
        );
        assert_eq!(
            identity.resolve("bruno", &good, "", now),
            Err(IdentityError::Mismatch)
        );
        let refused = [
            shop_jwt(
                claims("anna", now - 5, "https://shop.example", "centralino"),
                "shop-1",
            ),
            shop_jwt(
                claims("anna", now + 600, "https://evil.example", "centralino"),
                "shop-1",
            ),
            shop_jwt(
                claims("anna", now + 600, "https://shop.example", "other"),
                "shop-1",
            ),
            shop_jwt(
                claims("anna", now + 600, "https://shop.example", "centralino"),
                "shop-2",
            ),
            shop_jwt(
                claims(
                    "anna",
                    now + 400 * 86_400,
                    "https://shop.example",
                    "centralino",
                ),
                "shop-1",
            ),
            shop_jwt(
                serde_json::json!({ "sub": "anna", "iss": "https://shop.example", "aud": "centralino" }),
                "shop-1",
            ),
            {
                // Another customer's id with anna's signature.
                let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
                parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                    serde_json::to_vec(&claims(
                        "bruno",
                        now + 600,
                        "https://shop.example",
                        "centralino",
                    ))
                    .unwrap(),
                );
                parts.join(".")
            },
        ];
        for token in refused {
            let result = identity.resolve("", &token, "", now);
            assert!(
                matches!(result, Err(IdentityError::Token(_))),
                "{token}: {result:?}"
            );
        }
        // HMAC tokens are refused without a shop secret, JWTs without a JWKS.
        let hmac = sign(CUSTOMER_TOKEN_VERSION, KEY, "anna", now + 60);
        assert_eq!(
            identity.resolve("", &hmac, "", now),
            Err(IdentityError::NotAccepted)
        );
        let without = Identity::from_config(&IdentityConfig::default());
        assert_eq!(
            without.resolve("", &good, "", now),
            Err(IdentityError::NotAccepted)
        );
    }

    proptest! {
        #[test]
        fn tokens_round_trip_and_any_one_byte_change_is_refused(
            id in "[ -~]{1,40}",
            ttl in 1i64..86_400,
            at in 0usize..200,
            byte in any::<u8>(),
        ) {
            prop_assume!(!id.trim().is_empty());
            let token = sign(CUSTOMER_TOKEN_VERSION, KEY, &id, NOW + ttl);
            let v = verify(CUSTOMER_TOKEN_VERSION, KEY, &token, NOW, DAY).unwrap();
            prop_assert_eq!(&v.id, &id);
            prop_assert_eq!(v.expires_at, NOW + ttl);
            let mut bytes = token.clone().into_bytes();
            let at = at % bytes.len();
            prop_assume!(bytes[at] != byte);
            bytes[at] = byte;
            if let Ok(changed) = String::from_utf8(bytes) {
                prop_assert!(verify(CUSTOMER_TOKEN_VERSION, KEY, &changed, NOW, DAY).is_err());
            }
        }
    }
}
