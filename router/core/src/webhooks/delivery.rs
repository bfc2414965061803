//! The delivery loops: one task per configured endpoint, on every router; only the router
//! holding the endpoint's claim delivers it.
//!
//! # One deliverer per endpoint: a claim in the record
//! An endpoint's claim and its cursor (the last event id delivered or dead-lettered) are
//! one row of the system of record ([`Record::claim_webhook`],
//! [`Record::set_webhook_cursor`]). A router takes the claim when it is free or expired,
//! renews it every [`RENEW_EVERY`] (it lasts [`CLAIM_TTL`] by the record's clock), and
//! releases it on a clean stop (so another router takes over at once, not after the TTL),
//! and stops delivering when a renewal or a cursor write finds the claim taken over: the
//! cursor write is fenced by the claim, so a router that lost it cannot move the cursor.
//! We chose this over an etcd lease (the membership crate) or a PostgreSQL advisory lock
//! because the cursor must live in the record anyway, and one row holding both makes the
//! fencing one `UPDATE … WHERE holder = me`; an advisory lock lives on one pooled
//! connection and is lost silently with it, and an etcd lease would split the claim and
//! the cursor over two systems (and standalone mode has no etcd). In standalone mode the
//! embedded record is opened by one process only, so its router always holds the claim.
//!
//! # At least once
//! Events are read after the cursor with an [`OutboxTail`] (woken by the record's signal,
//! no polling), sent one at a time in event-id order, and the cursor moves after each
//! batch (and on a clean stop, after the last event done). A crash or a failover therefore
//! sends again at most the batch in flight (up to [`BATCH`] events), with the same event
//! ids: receivers deduplicate on `Centralino-Event-Id`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use centralino_record::{OutboxEvent, OutboxTail, Record};
use hyper::body::Bytes;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::body::{event_json, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::client::{Client, Endpoint};
use super::signature::sign;
use crate::config::{parse_secret, WebhookConfig};
use crate::metrics;

/// How long a claim lasts without renewal (by the record's clock).
pub const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How often the holder renews its claim.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a router without the claim tries to take it.
const CLAIM_RETRY: Duration = Duration::from_secs(2);
/// Events read from the outbox at once; the cursor moves after each batch.
pub const BATCH: usize = 64;
/// The pause after the record failed a read.
const RECORD_RETRY: Duration = Duration::from_secs(1);

/// The holder name of a standalone node's claims (one process opens its embedded record).
pub const STANDALONE_HOLDER: &str = "standalone";

/// A configured endpoint, ready to deliver.
pub struct Webhook {
    name: String,
    client: Client,
    secret: Vec<u8>,
    kinds: BTreeSet<String>,
    max_attempts: u32,
    backoff: Duration,
    backoff_cap: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("kinds", &self.kinds)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Builds the endpoint of `config` (checked by
    /// [`crate::config::Config::credential_problems`] at start; refused here again).
    pub fn from_config(config: &WebhookConfig, dev_mode: bool) -> Result<Self, String> {
        let name = &config.name;
        let endpoint = Endpoint::parse(&config.url, dev_mode)
            .map_err(|e| format!("webhook {name:?}: url: {e}"))?;
        let secret = parse_secret(&config.secret)
            .map_err(|e| format!("webhook {name:?}: secret: {e}"))?
            .ok_or_else(|| format!("webhook {name:?}: secret: required"))?;
        let ca_file = (!config.ca_file.as_os_str().is_empty()).then_some(config.ca_file.as_path());
        let client = Client::new(endpoint, ca_file, Duration::from_millis(config.timeout_ms))
            .map_err(|e| format!("webhook {name:?}: {e}"))?;
        Ok(Self {
            name: name.clone(),
            client,
            secret,
            kinds: config.kinds.iter().cloned().collect(),
            max_attempts: config.max_attempts.max(1),
            backoff: Duration::from_millis(config.backoff_ms),
            backoff_cap: Duration::from_millis(config.backoff_cap_ms),
        })
    }

    /// Returns the endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns whether events of `kind` go to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.contains(kind)
    }
}

/// Returns the pause after failed attempt `attempt` (1 for the first): `base`·2^(attempt−1),
/// at most `cap`, times `jitter` (clamped to 0.5..=1), so endpoints that failed together
/// are not retried together.
pub fn backoff(base: Duration, cap: Duration, attempt: u32, jitter: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    base.saturating_mul(factor)
        .min(cap)
        .mul_f64(jitter.clamp(0.5, 1.0))
}

/// Starts one delivery loop per endpoint of `configs` on `record`, claiming as `holder`
/// (the node id; [`STANDALONE_HOLDER`] on a standalone node); they end when `stop` turns
/// true. Refuses an endpoint that cannot be built.
pub fn start(
    configs: &[WebhookConfig],
    dev_mode: bool,
    record: Arc<dyn Record>,
    holder: &str,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let hooks = configs
        .iter()
        .map(|c| Webhook::from_config(c, dev_mode))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(hooks
        .into_iter()
        .map(|hook| tokio::spawn(run(hook, record.clone(), holder.to_string(), stop.clone())))
        .collect())
}

/// How a stretch of delivery ended.
enum Ended {
    /// The node stops.
    Stopped,
    /// Another router holds the claim now.
    Lost,
}

fn ttl_ms() -> i64 {
    i64::try_from(CLAIM_TTL.as_millis()).unwrap_or(i64::MAX)
}

/// Sleeps `d`; returns true when the node stopped meanwhile (or its stop signal is gone).
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// The claim this router holds on an endpoint.
struct Claim<'a> {
    record: &'a dyn Record,
    endpoint: &'a str,
    holder: &'a str,
    /// When the last successful claim or renewal was sent (before the record's clock
    /// started the TTL, so this side errs early).
    renewed: Instant,
}

impl Claim<'_> {
    /// Renews the claim when due; false when it is lost (taken over, or not renewed for so
    /// long that it may have expired).
    async fn keep(&mut self) -> bool {
        if self.renewed.elapsed() < RENEW_EVERY {
            return true;
        }
        let sent = Instant::now();
        match self
            .record
            .claim_webhook(self.endpoint, self.holder, ttl_ms())
            .await
        {
            Ok(Some(_)) => {
                self.renewed = sent;
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(endpoint = %self.endpoint, error = %e, "webhook: cannot renew the claim");
                // Still ours while the last renewal's TTL has time left (minus a margin).
                self.renewed.elapsed() < CLAIM_TTL - RENEW_EVERY
            }
        }
    }

    /// Sleeps `d` while renewing the claim; `Some` when delivery must end.
    async fn hold_for(&mut self, d: Duration, stop: &mut watch::Receiver<bool>) -> Option<Ended> {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if pause(left.min(RENEW_EVERY), stop).await {
                return Some(Ended::Stopped);
            }
            if !self.keep().await {
                return Some(Ended::Lost);
            }
        }
    }
}

/// One endpoint's loop: claim, deliver while holding the claim, try again after losing it.
async fn run(
    hook: Webhook,
    record: Arc<dyn Record>,
    holder: String,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let sent = Instant::now();
        match record.claim_webhook(&hook.name, &holder, ttl_ms()).await {
            Ok(Some(cursor)) => {
                info!(endpoint = %hook.name, cursor, "webhook: delivering after the cursor");
                metrics::webhook_delivering(&hook.name, true);
                let mut claim = Claim {
                    record: record.as_ref(),
                    endpoint: &hook.name,
                    holder: &holder,
                    renewed: sent,
                };
                let ended = deliver_after(&hook, &record, &mut claim, cursor, &mut stop).await;
                metrics::webhook_delivering(&hook.name, false);
                match ended {
                    Ended::Stopped => {
                        // A clean stop hands the endpoint over at once (a rolling restart
                        // does not wait for the claim to expire).
                        if let Err(e) = record.release_webhook(&hook.name, &holder).await {
                            warn!(endpoint = %hook.name, error = %e, "webhook: cannot release the claim; it expires by itself");
                        }
                        return;
                    }
                    Ended::Lost => {
                        warn!(endpoint = %hook.name, "webhook: another router took the claim over; delivery stops here")
                    }
                }
            }
            Ok(None) => debug!(endpoint = %hook.name, "webhook: another router delivers"),
            Err(e) => {
                warn!(endpoint = %hook.name, error = %e, "webhook: cannot claim the endpoint")
            }
        }
        if pause(CLAIM_RETRY, &mut stop).await {
            return;
        }
    }
}

/// Delivers the events after `cursor` until the node stops or the claim is lost.
async fn deliver_after(
    hook: &Webhook,
    record: &Arc<dyn Record>,
    claim: &mut Claim<'_>,
    cursor: i64,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut tail = OutboxTail::new(record.clone(), cursor);
    let (mut done, mut saved) = (cursor, cursor);
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            next = tokio::time::timeout(RENEW_EVERY, tail.next(BATCH)) => Some(next),
        };
        let Some(next) = next else {
            return save(hook, claim, done, saved, Ended::Stopped).await;
        };
        let batch = match next {
            Err(_idle) => Vec::new(),
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                warn!(endpoint = %hook.name, error = %e, "webhook: cannot read the outbox");
                if pause(RECORD_RETRY, stop).await {
                    return save(hook, claim, done, saved, Ended::Stopped).await;
                }
                Vec::new()
            }
        };
        for event in &batch {
            if hook.wants(&event.kind) {
                if let Some(ended) = deliver(hook, event, claim, stop).await {
                    return save(hook, claim, done, saved, ended).await;
                }
            }
            done = event.seq;
        }
        if !claim.keep().await {
            return Ended::Lost;
        }
        if done > saved {
            match record
                .set_webhook_cursor(&hook.name, claim.holder, done)
                .await
            {
                Ok(true) => saved = done,
                Ok(false) => return Ended::Lost,
                // The next batch's write moves the cursor on; until then a restart sends
                // these events again, which at least once allows.
                Err(e) => {
                    warn!(endpoint = %hook.name, error = %e, "webhook: cannot save the cursor")
                }
            }
        }
        if let Ok(last) = record.last_seq().await {
            metrics::webhook_lag(&hook.name, last - done);
        }
    }
}

/// Saves the cursor at `done` on the way out (a clean stop sends nothing twice).
async fn save(hook: &Webhook, claim: &Claim<'_>, done: i64, saved: i64, ended: Ended) -> Ended {
    if matches!(ended, Ended::Stopped) && done > saved {
        if let Err(e) = claim
            .record
            .set_webhook_cursor(&hook.name, claim.holder, done)
            .await
        {
            warn!(endpoint = %hook.name, error = %e, "webhook: cannot save the cursor at stop");
        }
    }
    ended
}

/// Returns the Unix time in seconds: the signature's timestamp is wall-clock time, which the
/// receiver compares with its own clock (not the node's clock, which a simulation may run).
fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Delivers one event, retrying with backoff; after the last attempt it is dead-lettered.
/// `Some` when delivery must end before the event was done.
async fn deliver(
    hook: &Webhook,
    event: &OutboxEvent,
    claim: &mut Claim<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Ended> {
    let body = Bytes::from(event_json(event).to_string());
    for attempt in 1..=hook.max_attempts {
        if !claim.keep().await {
            return Some(Ended::Lost);
        }
        let now = unix_secs();
        let headers = [
            (EVENT_ID_HEADER, event.seq.to_string()),
            (TIMESTAMP_HEADER, now.to_string()),
            (SIGNATURE_HEADER, sign(&hook.secret, now, &body)),
        ];
        let started = Instant::now();
        let result = tokio::select! {
            result = hook.client.post(&headers, body.clone()) => result,
            _ = stop.wait_for(|s| *s) => return Some(Ended::Stopped),
        };
        let secs = started.elapsed().as_secs_f64();
        let error = match result {
            Ok(()) => {
                metrics::webhook_attempt(&hook.name, "delivered", secs);
                return None;
            }
            Err(e) => e,
        };
        metrics::webhook_attempt(&hook.name, error.label(), secs);
        if attempt == hook.max_attempts {
            metrics::webhook_dead_letter(&hook.name);
            warn!(endpoint = %hook.name, event_id = event.seq, kind = %event.kind, attempts = attempt, error = %error, "webhook: event dead-lettered after its last attempt");
            return None;
        }
        let wait = backoff(
            hook.backoff,
            hook.backoff_cap,
            attempt,
            rand::rng().random_range(0.5..=1.0),
        );
        debug!(endpoint = %hook.name, event_id = event.seq, attempt, error = %error, ?wait, "webhook: attempt failed; retrying");
        if let Some(ended) = claim.hold_for(wait, stop).await {
            return Some(ended);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(base, cap, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(base, cap, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(base, cap, 4, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(base, cap, 5, 1.0), cap, "capped");
        assert_eq!(backoff(base, cap, 200, 1.0), cap, "no overflow");
        assert_eq!(backoff(base, cap, 2, 0.5), Duration::from_millis(100));
        assert_eq!(
            backoff(base, cap, 2, 0.0),
            Duration::from_millis(100),
            "jitter at least half"
        );
    }

    #[test]
    fn kinds_filter_events_and_bad_config_is_refused() {
        let mut config = WebhookConfig {
            name: "crm".into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret: crate::config::PLACEHOLDER_WEBHOOK_SECRET.into(),
            kinds: vec!["closed".into()],
            ..WebhookConfig::default()
        };
        let hook = Webhook::from_config(&config, false).unwrap();
        assert!(hook.wants("closed"));
        assert!(!hook.wants("started"));
        config.kinds.clear();
        assert!(Webhook::from_config(&config, false)
            .unwrap()
            .wants("started"));
        config.secret = "hex:00".into();
        assert!(
            Webhook::from_config(&config, false).is_err(),
            "short secret"
        );
        config.secret = crate::config::PLACEHOLDER_WEBHOOK_SECRET.into();
        config.url = "http://crm.example.com/hook".into();
        assert!(
            Webhook::from_config(&config, false).is_err(),
            "plain http off loopback"
        );
    }
}
