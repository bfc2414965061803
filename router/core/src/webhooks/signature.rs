//! The webhook signature: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! The timestamp is inside the signed bytes, so a receiver that refuses old timestamps
//! refuses replays of a captured request; several `v1=` parts may be present (a receiver
//! accepts any that matches, so a secret can be rotated).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How old a signature's timestamp may be, by default, for [`verify`] (and how far in
/// the future).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// No `v1` matches the body and timestamp with this secret.
    #[error("no signature matches")]
    NoMatch,
    /// The timestamp lies outside the tolerance.
    #[error("timestamp {timestamp} is more than {tolerance_secs} s away from now ({now})")]
    Stale {
        /// The header's timestamp.
        timestamp: i64,
        /// The verifier's time.
        now: i64,
        /// The tolerance.
        tolerance_secs: i64,
    },
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Returns the `Centralino-Signature` header value of `body` sent at `timestamp` (Unix
/// seconds) with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a `Centralino-Signature` header against `body` with `secret` at `now` (Unix
/// seconds) and returns the signed timestamp; the comparison is constant-time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("a part without '='"))?;
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not a number"))?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed("t given twice"));
                }
            }
            "v1" => tags
                .push(hex::decode(value).map_err(|_| SignatureError::Malformed("v1 is not hex"))?),
            _ => {} // other schemes: ignored
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t"))?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed("no v1"));
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale {
            timestamp,
            now,
            tolerance_secs,
        });
    }
    let expected = mac(secret, timestamp, body);
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(timestamp)
    } else {
        Err(SignatureError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const BODY: &[u8] = br#"{"event_id":1,"kind":"closed"}"#;

    #[test]
    fn a_signature_verifies_with_its_secret_body_and_time() {
        let header = sign(SECRET, 1_750_000_000, BODY);
        assert!(header.starts_with("t=1750000000,v1="), "{header}");
        assert_eq!(header.len(), "t=1750000000,v1=".len() + 64);
        assert_eq!(
            verify(SECRET, &header, BODY, 1_750_000_010, DEFAULT_TOLERANCE_SECS),
            Ok(1_750_000_000)
        );
    }

    #[test]
    fn the_known_answer_is_hmac_sha256_of_timestamp_dot_body() {
        // HMAC-SHA256(key "key", message "1.{}"), computed independently (Python's hmac).
        let expected = "1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224";
        let header = sign(b"key", 1, b"{}");
        assert_eq!(header, format!("t=1,v1={expected}"));
    }

    #[test]
    fn another_secret_body_or_timestamp_is_refused() {
        let header = sign(SECRET, 100, BODY);
        let other: &[u8] = b"fedcba9876543210fedcba9876543210";
        assert_eq!(
            verify(other, &header, BODY, 100, 300),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(SECRET, &header, b"{\"event_id\":2}", 100, 300),
            Err(SignatureError::NoMatch)
        );
        let moved = header.replace("t=100", "t=101");
        assert_eq!(
            verify(SECRET, &moved, BODY, 100, 300),
            Err(SignatureError::NoMatch),
            "the timestamp is signed"
        );
    }

    #[test]
    fn an_old_timestamp_is_refused_as_a_replay() {
        let header = sign(SECRET, 100, BODY);
        assert!(matches!(
            verify(SECRET, &header, BODY, 100 + 301, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            verify(SECRET, &header, BODY, 100 - 301, 300),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn any_matching_v1_is_accepted_for_secret_rotation() {
        let good = sign(SECRET, 100, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=100,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify(SECRET, &header, BODY, 100, 300), Ok(100));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=1,t=2,v1=00",
            "nonsense",
        ] {
            assert!(
                matches!(
                    verify(SECRET, header, BODY, 1, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
    }
}
