//! The argon2id hashes published in `deploy/config/centralino.example.toml` (demo passwords
//! `<agent id>-pw`): placeholders, refused outside dev mode.

/// Password hashes of the example configuration's agents.
pub(crate) const EXAMPLE_PASSWORD_HASHES: &[&str] = &[];
