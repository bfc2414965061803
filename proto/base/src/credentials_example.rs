//! The argon2id hashes published in `deploy/config/centralino.example.toml` (demo passwords
//! `<agent id>-pw`): placeholders, refused outside dev mode.

/// Password hashes of the example configuration's agents.
pub(crate) const EXAMPLE_PASSWORD_HASHES: &[&str] = &[
    "$argon2id$v=19$m=19456,t=2,p=1$2gZqPpWDvMfPDk/d2Nj9qA$k8z9f2f92hPqbOQJhYMw3SWP0R1jQ+UeSUEFfiNDHGQ",
    "$argon2id$v=19$m=19456,t=2,p=1$T+b8M5sYLB4XKxdTxs0beg$F7W+luT8yRh0a0b4JpiXjNAWFBy/pj2Qoeh3pWMDeoE",
    "$argon2id$v=19$m=19456,t=2,p=1$Bc78t6U2yieXnADFwcdJZQ$/zzJ1PkYuBenZgiAH87NwEH+HcAu1OTDlBr6AyjtPmQ",
    "$argon2id$v=19$m=19456,t=2,p=1$rPNYDvx/0z9jcXVc0Ro+Xw$zX67QkaQfzfBosmq9hJMsxgrEfXMwgkrFjM660G2sxY",
    "$argon2id$v=19$m=19456,t=2,p=1$+EwEzRE4mMubg2SoXxHm7g$AbFGz0dd/jg4OeoF4U8s/QmUQrjOi/gjwwMtMGizcyY",
    "$argon2id$v=19$m=19456,t=2,p=1$Lomnn2WEkzWeRFE8slgaKg$bXE1PZ5pmI+ZSiFVR86mT3kstTY8U9Hh8rERKOZ1O8o",
    "$argon2id$v=19$m=19456,t=2,p=1$G8AljLKjpdxKTT8oqtoQ1w$BfcMAX8J3swYTjYxMDxwWCxR1PaTKVh0Knem+pD0l/U",
    "$argon2id$v=19$m=19456,t=2,p=1$dkuw3iNsqzBDjs//WXgtSg$S9KpEFm6ggnJw45hbHdkouezsTzr+VAbeHE7OKTwqo8",
    "$argon2id$v=19$m=19456,t=2,p=1$jRRmsEVEZl9YUdl9LS2RQQ$LtIjggyy1VuIY+OUT3kc25rk22enYNp3oPF4Qy6U0lo",
    "$argon2id$v=19$m=19456,t=2,p=1$uCHc10Rx0fmdvOrKwoLdew$seYjnQa38XjUizwX5ipgy4a4BfZg+cq59X0YarV407s",
    "$argon2id$v=19$m=19456,t=2,p=1$fZOdy3kgQ1kLTZSBIyUdCg$5Cs5L+wjXq0Qr34UMPy5IsLMngtA0KnpNA6pd695IEo",
    "$argon2id$v=19$m=19456,t=2,p=1$yieRgvMVNd0cGqfh5wNPTw$mR7rCcKiMf3YRJMr3hgebdpfGrhDPjaEoReYJKD0IP0",
    "$argon2id$v=19$m=19456,t=2,p=1$Pmx1XXStUNmqZweXU5e09w$lWQdgPm3dCGsvi5/cemGVvY4gxyZRcMhV2W36I0pi9Q",
    "$argon2id$v=19$m=19456,t=2,p=1$Yi2ENYc4Gu2Y4GeaaasM4w$UOdtZ5DTr1gQ+D0gfos60tKh8+02yekJDflY6rrXGyE",
    "$argon2id$v=19$m=19456,t=2,p=1$6iAEzIjq4Ubm4qsX6x+26A$b85XJGgV5HZlIUxrnCN+8byxloQxIAar+JF/J8D4kAw",
    "$argon2id$v=19$m=19456,t=2,p=1$z5gw3WCAXezmzCfaGCDenw$kpTLQRRtGwRNM18DB5KG4yeE9nDKrvoo88QOFoeh62Y",
    "$argon2id$v=19$m=19456,t=2,p=1$w2VBuorkyXv5JWwmF+JYrA$zexqGFJIaLQ2THJ+n4UHyeQWbjhkRWVLpLgUstaJHfs",
    "$argon2id$v=19$m=19456,t=2,p=1$4pgnZ2kShJa0fc8imvtIHg$lmPVSajpT3+D5UPzF/9v4jVg6RfAWGMPDgFI+vOzpIc",
];
