//! Metrics of the base crate, declared in one place (names `centralino_oidc_*`).

use metrics::{counter, describe_counter};

/// Describes the base crate's metrics (the node binaries call it once at start).
pub fn describe() {
    describe_counter!(
        "centralino_oidc_jwks_refreshes_total",
        "Downloads of the OIDC JWKS from its URL, by result (ok, failed: the last good keys stay)"
    );
}

/// Makes the labelled series visible from the start (at zero).
pub fn zero() {
    for result in ["ok", "failed"] {
        counter!("centralino_oidc_jwks_refreshes_total", "result" => result).increment(0);
    }
}

pub(crate) fn jwks_refresh(ok: bool) {
    counter!("centralino_oidc_jwks_refreshes_total", "result" => if ok { "ok" } else { "failed" })
        .increment(1);
}
