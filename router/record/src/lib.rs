//! placeholder
#![forbid(unsafe_code)]
pub mod embedded;
pub mod error;
pub mod metrics;
pub mod record;
pub mod tail;
pub mod types;
