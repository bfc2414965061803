//! Credentials: agent password hashes (argon2id PHC strings), operator token digests
//! (SHA-256), operator scopes, the example configuration's placeholder secrets, and the
//! checks a node runs at start (plaintext, empty and placeholder secrets are refused outside
//! dev mode).
//!
//! Argon2id parameters: m = 19 456 KiB, t = 2, p = 1 — the OWASP minimum for argon2id
//! (Password Storage Cheat Sheet). One verification costs ~20 ms of one core and 19 MiB;
//! nodes run it on the blocking pool, a few at a time, behind the login throttle. Hashes made
//! with other parameters verify too (the PHC string carries them).

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Argon2id memory cost, KiB.
pub const ARGON2_M_KIB: u32 = 19_456;
/// Argon2id passes.
pub const ARGON2_T: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_P: u32 = 1;

/// Prefix of an operator token digest in the configuration (`sha256:<64 hex digits>`).
pub const TOKEN_HASH_PREFIX: &str = "sha256:";

/// Secrets published with the project (the example configuration, the Kubernetes base
/// overlay's credentials file, the demo passwords): refused outside dev mode wherever a
/// secret is configured. Anything containing `change-me` or `changeme` is refused too.
pub const PLACEHOLDER_SECRETS: &[&str] = &[
    "admin-secret-change-me",
    "demo-operator-token",
    "change-me-admin-token",
    "giulia-pw",
    "marco-pw",
    "francesca-pw",
    "luca-pw",
    "chiara-pw",
    "alessandro-pw",
    "sara-pw",
    "davide-pw",
    "elena-pw",
    "paolo-pw",
    "emma-pw",
    "james-pw",
    "olivia-pw",
    "noah-pw",
    "sophie-pw",
    "liam-pw",
    "ava-pw",
    "oliver-pw",
    "pw",
    "password",
    "secret",
    "admin",
    "test-admin",
    "bench",
];

/// The argon2id hashes and token digests published in `deploy/config/centralino.example.toml`
/// (hashes of the documented demo passwords `<agent id>-pw` and of the demo operator token
/// `demo-operator-token`): public, so refused outside dev mode like the plaintext ones.
pub const PLACEHOLDER_HASHES: &[&str] = &[
    // The demo operator token "demo-operator-token".
    "sha256:61112491d046c3f6f8ab801f170d9b2d0c734a17ceff60dee92123fb507cfc3f",
];

/// The example configuration's demo operator token (admin scope; its digest is a
/// placeholder, accepted in dev mode only).
pub const DEMO_OPERATOR_TOKEN: &str = "demo-operator-token";

/// Whether `secret` is one of the project's published placeholder secrets or hashes.
pub fn is_placeholder(secret: &str) -> bool {
    let s = secret.trim();
    let lower = s.to_ascii_lowercase();
    PLACEHOLDER_SECRETS.contains(&s)
        || PLACEHOLDER_HASHES.contains(&s)
        || crate::credentials_example::EXAMPLE_PASSWORD_HASHES.contains(&s)
        || lower.contains("change-me")
        || lower.contains("changeme")
}

fn argon2() -> Argon2<'static> {
    // The constants are valid parameters; `Params::new` only fails outside argon2's ranges.
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Returns the argon2id PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that `phc` is an argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e})"))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "algorithm {:?}, expected argon2id",
            hash.algorithm.as_str()
        ));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("the PHC string has no salt or no hash".to_string());
    }
    Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    Ok(())
}

/// Whether `password` matches the argon2id PHC string `phc` (the digest comparison is
/// constant-time). Slow by design (see the module doc): call it off the async executor.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm.as_str() != "argon2id" {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Returns the configuration form of an operator token's digest: `sha256:<hex>`.
///
/// Operator tokens are 256-bit random values, not passwords people choose: nothing can be
/// guessed from a fast digest, so a plain SHA-256 is the right hash (argon2 would add ~20 ms
/// and 19 MiB to every admin call for no gain).
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(TOKEN_HASH_PREFIX.len() + 64);
    out.push_str(TOKEN_HASH_PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Checks the form of a configured token digest (`sha256:` and 64 lowercase hex digits).
pub fn check_token_hash(hash: &str) -> Result<(), String> {
    let hex = hash
        .strip_prefix(TOKEN_HASH_PREFIX)
        .ok_or_else(|| format!("must start with {TOKEN_HASH_PREFIX:?}"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("expected 64 lowercase hex digits after sha256:".to_string());
    }
    Ok(())
}

/// Whether `token` hashes to `hash` (constant-time comparison of the digests).
pub fn token_matches(hash: &str, token: &str) -> bool {
    constant_time_eq(token_hash(token).as_bytes(), hash.as_bytes())
}

/// Returns a new random operator token (`cnt_` + 32 random bytes, base64url) and its digest.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!(
        "cnt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    (token, hash)
}

/// What an operator (a token or a JWT) may do with the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Everything.
    #[serde(rename = "admin")]
    Admin,
    /// Force transfers, set agents' status, customer tiers — and everything `read-only` may.
    #[serde(rename = "supervisor")]
    Supervisor,
    /// The integration event feed.
    #[serde(rename = "integration")]
    Integration,
    /// Snapshots, conversation lists, transcripts, watching a conversation.
    #[serde(rename = "read-only")]
    ReadOnly,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [
        Scope::Admin,
        Scope::Supervisor,
        Scope::Integration,
        Scope::ReadOnly,
    ];

    /// The scope's name in configuration and tokens.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Supervisor => "supervisor",
            Scope::Integration => "integration",
            Scope::ReadOnly => "read-only",
        }
    }

    /// Parses a scope name (`admin`, `supervisor`, `integration`, `read-only`).
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether holding `self` allows a call that requires `required`.
    pub fn grants(self, required: Scope) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Supervisor => matches!(required, Scope::Supervisor | Scope::ReadOnly),
            Scope::Integration => required == Scope::Integration,
            Scope::ReadOnly => required == Scope::ReadOnly,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify_only_the_right_password() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        check_password_hash(&phc).unwrap();
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct hors"));
        assert!(!verify_password(&phc, ""));
        assert!(!verify_password("not a hash", "correct horse"));
        // Two hashes of one password differ (random salt).
        assert_ne!(phc, hash_password("correct horse").unwrap());
    }

    #[test]
    fn non_argon2id_hashes_are_refused() {
        assert!(check_password_hash("plaintext").is_err());
        let argon2i = "$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$c2FsdHNhbHRzYWx0c2FsdHNhbHQ";
        assert!(check_password_hash(argon2i).is_err());
        assert!(!verify_password(argon2i, "x"));
    }

    #[test]
    fn tokens_and_digests() {
        let (token, hash) = new_token();
        assert!(token.starts_with("cnt_") && token.len() > 40, "{token}");
        check_token_hash(&hash).unwrap();
        assert!(token_matches(&hash, &token));
        assert!(!token_matches(&hash, "cnt_other"));
        assert_ne!(new_token().0, token);
        assert_eq!(
            token_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(check_token_hash("sha256:abc").is_err());
        assert!(check_token_hash("md5:ba7816bf8f01cfea414140de5dae2223").is_err());
    }

    #[test]
    fn scope_hierarchy() {
        use Scope::*;
        for s in Scope::ALL {
            assert!(Admin.grants(s));
            assert_eq!(Scope::parse(s.name()), Some(s));
        }
        assert!(Supervisor.grants(ReadOnly) && Supervisor.grants(Supervisor));
        assert!(!Supervisor.grants(Integration) && !Supervisor.grants(Admin));
        assert!(Integration.grants(Integration) && !Integration.grants(ReadOnly));
        assert!(ReadOnly.grants(ReadOnly) && !ReadOnly.grants(Supervisor));
        assert_eq!(Scope::parse("root"), None);
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(is_placeholder("admin-secret-change-me"));
        assert!(is_placeholder("my-CHANGEME-token"));
        assert!(is_placeholder("giulia-pw"));
        assert!(!is_placeholder(&new_token().0));
        assert!(is_placeholder(&token_hash("demo-operator-token")));
        // The example's password hashes are of the documented demo passwords.
        for (hash, id) in crate::credentials_example::EXAMPLE_PASSWORD_HASHES
            .iter()
            .zip(["giulia", "marco"])
        {
            assert!(is_placeholder(hash));
            assert!(verify_password(hash, &format!("{id}-pw")));
        }
    }
}
