//! Traffic simulator (see issue).
