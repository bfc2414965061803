//! A small etcd client shared by routers and agent-nodes: leases, reads, guarded
//! transactions and prefix watches, each retried across the cluster's members.
//!
//! etcd-client does not retry: with one member down, calls routed to it fail with
//! `Unavailable`. [`Etcd`] keeps one client per member and a preferred member; a call that
//! fails with a transient error moves the preference to the next member and is retried with
//! exponential backoff until its request timeout is spent. A dead member therefore costs one
//! failed attempt, not a third of all calls. [`Etcd`] is the real [`Kv`].
//!
//! With TLS, the CA, client certificate and key files are looked at every
//! [`TLS_RELOAD_EVERY`] (their modification times and sizes, as the node's own TLS files
//! are): when they change, every member's client is replaced by one with the new identity
//! (new calls and watches use it; a half-written set is retried at the next look).
//!
//! [`testing::EtcdCluster`] spawns real etcd processes for multi-process tests.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions, Txn,
    TxnOpResponse, WatchOptions,
};
use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tracing::{debug, warn};

use crate::kv::{self, Compare, Kv, KvError, TxnOp};

/// Bounds one attempt of a call (one member); a dead member never holds a call longer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds establishing a connection to one member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// First pause before a retry.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(20);
/// Longest pause between retries.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Keys fetched per page by [`Kv::get_prefix`].
pub const PAGE_SIZE: i64 = 10_000;
/// Interval of HTTP/2 pings, which detect a member that vanished under an open watch.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the TLS files of the etcd client are looked at for a renewal.
pub const TLS_RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Metric: reloads of the etcd client's TLS files (label `result`: ok, failed).
const TLS_RELOADS: &str = "centralino_store_etcd_tls_reloads_total";

/// Metric: duration of one call, retries included (label `op`).
const REQUEST_SECONDS: &str = "centralino_store_request_seconds";
/// Metric: calls that failed after their retries (label `op`).
const REQUEST_ERRORS: &str = "centralino_store_errors_total";
/// Metric: retried attempts (label `op`).
const RETRIES: &str = "centralino_store_retries_total";

/// `op` label of reads.
const OP_GET: &str = "etcd_get";
/// `op` label of plain puts.
const OP_PUT: &str = "etcd_put";
/// `op` label of transactions.
const OP_TXN: &str = "etcd_txn";
/// `op` label of lease calls.
const OP_LEASE: &str = "etcd_lease";
/// `op` label of watch (re)connects.
const OP_WATCH: &str = "etcd_watch";

/// Returns a key-value pair as etcd-client reports it in our terms.
fn key_value(kv: &KeyValue) -> kv::KeyValue {
    kv::KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

/// Returns a write of a transaction as etcd-client spells it.
fn txn_op(op: &TxnOp) -> etcd_client::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => etcd_client::TxnOp::put(
            key.as_str(),
            value.clone(),
            lease.map(|l| PutOptions::new().with_lease(l)),
        ),
        TxnOp::Delete { key } => etcd_client::TxnOp::delete(key.as_str(), None),
        TxnOp::DeletePrefix { prefix } => {
            etcd_client::TxnOp::delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
        }
    }
}

/// Returns a condition of a transaction as etcd-client spells it.
fn compare(compare: &Compare) -> etcd_client::Compare {
    match compare {
        Compare::CreateRevision { key, revision } => {
            etcd_client::Compare::create_revision(key.as_str(), CompareOp::Equal, *revision)
        }
        Compare::Absent { key } => {
            etcd_client::Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
        }
    }
}

/// Client of an etcd cluster; cheap to clone (clones share the connections).
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    /// One client per member, in the order of the configured endpoints.
    members: Vec<Member>,
    /// Index of the member calls go to first; moves on after a transient failure.
    preferred: AtomicUsize,
    /// Bounds one call including its retries.
    request_timeout: Duration,
    /// etcd user and password, when etcd authenticates users.
    creds: Option<(String, String)>,
    /// Ends the TLS reload task when the last clone is dropped.
    stop: Arc<tokio::sync::Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

struct Member {
    endpoint: String,
    /// Replaced when the TLS files change.
    client: parking_lot::RwLock<Client>,
    /// Whether the client has authenticated as the user (always true without one).
    authenticated: std::sync::atomic::AtomicBool,
}

impl Member {
    /// Returns the member's current client (cheap: clones share the connection).
    fn client(&self) -> Client {
        self.client.read().clone()
    }
}

/// What one failed attempt tells the retry loop.
enum Failure {
    /// The member is unreachable or overloaded, or the cluster has no leader: try again.
    Transient(String),
    /// The request itself is wrong: give up.
    Permanent(String),
    /// The cluster is out of space (NOSPACE) or the request over its size limit: give up,
    /// retrying does not help.
    NoSpace(String),
}

/// Returns whether an etcd error message says the cluster has no room for the write.
pub fn is_no_space(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("database space exceeded") || message.contains("request is too large")
}

#[cfg(test)]
mod no_space_tests {
    use super::*;

    #[test]
    fn nospace_and_oversized_requests_are_no_space_not_transient() {
        for message in [
            "etcdserver: mvcc: database space exceeded",
            "etcdserver: request is too large",
        ] {
            assert!(is_no_space(message), "{message}");
            let status = tonic::Status::resource_exhausted(message);
            let failure = Failure::from(etcd_client::Error::GRpcStatus(status));
            assert!(matches!(failure, Failure::NoSpace(_)), "{message}");
        }
        assert!(!is_no_space("etcdserver: no leader"));
    }
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Self {
        if is_no_space(&e.to_string()) {
            Failure::NoSpace(e.to_string())
        } else if is_transient(&e) {
            Failure::Transient(e.to_string())
        } else {
            Failure::Permanent(e.to_string())
        }
    }
}

/// Returns whether `e` is worth retrying, possibly on another member.
fn is_transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match e {
        Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted => true,
            Code::Unknown | Code::Internal => {
                let message = status.message().to_ascii_lowercase();
                [
                    "transport",
                    "connection",
                    "broken pipe",
                    "h2 protocol",
                    "reset",
                ]
                .iter()
                .any(|m| message.contains(m))
            }
            _ => false,
        },
        Error::TransportError(_) | Error::IoError(_) => true,
        // The request stream of a watch or keep-alive closed under us.
        Error::WatchError(_) | Error::LeaseKeepAliveError(_) => true,
        _ => false,
    }
}

/// Returns the end of the key range covering every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Empty prefix or only 0xff bytes: to the end of the key space.
    vec![0]
}

/// Returns `backoff` scaled by a random factor in [0.5, 1).
fn jittered(backoff: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    backoff / 2 + backoff * random / 2000
}

/// How the client proves itself to etcd and checks etcd's certificate (`[cluster]
/// etcd_ca_file, etcd_cert_file, etcd_key_file, etcd_username, etcd_password`); all empty =
/// plaintext without authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdSecurity {
    /// CA of etcd's server certificates (PEM); with it the endpoints are `https://`.
    pub ca_file: String,
    /// Client certificate (PEM), for etcd's `--client-cert-auth`.
    pub cert_file: String,
    /// Its key (PEM).
    pub key_file: String,
    /// etcd user; empty = none.
    pub username: String,
    /// That user's password.
    pub password: String,
}

impl EtcdSecurity {
    /// Returns the security of the `[cluster]` section: its `etcd_ca_file`,
    /// `etcd_cert_file`, `etcd_key_file`, `etcd_username` and `etcd_password`.
    pub fn from_config(c: &centralino_base::config::ClusterConfig) -> Self {
        Self {
            ca_file: c.etcd_ca_file.clone(),
            cert_file: c.etcd_cert_file.clone(),
            key_file: c.etcd_key_file.clone(),
            username: c.etcd_username.clone(),
            password: c.etcd_password.clone(),
        }
    }

    /// Whether TLS files are configured.
    fn has_files(&self) -> bool {
        !self.ca_file.is_empty() || !self.cert_file.is_empty()
    }

    /// Modification times and sizes of the TLS files (what a renewal changes).
    fn stamp(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| {
                std::fs::metadata(p)
                    .and_then(|m| Ok((m.modified()?, m.len())))
                    .ok()
            })
            .collect()
    }

    fn apply(&self, mut options: ConnectOptions) -> Result<ConnectOptions, KvError> {
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| KvError::Other(format!("etcd tls: {path}: {e}")))
        };
        if !self.ca_file.is_empty() || !self.cert_file.is_empty() {
            let mut tls = etcd_client::TlsOptions::new();
            if !self.ca_file.is_empty() {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca_file)?));
            }
            if !self.cert_file.is_empty() {
                let (cert, key) = (read(&self.cert_file)?, read(&self.key_file)?);
                check_identity(&self.cert_file, &cert, &self.key_file, &key)?;
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        // The user is set per member at its first call (see `Etcd::call`): connecting with
        // it would authenticate at once and fail while a member is down.
        if !self.username.is_empty() {
            options = options.with_auto_token_refresh(true);
        }
        Ok(options)
    }
}

/// Checks that `cert` holds PEM certificates and `key` a PEM private key (a file caught
/// half-written during a renewal is refused, not handed to the TLS stack).
fn check_identity(cert_path: &str, cert: &[u8], key_path: &str, key: &[u8]) -> Result<(), KvError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(cert).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => {}
        Ok(_) => {
            return Err(KvError::Other(format!(
                "etcd tls: {cert_path}: no PEM certificate in the file"
            )))
        }
        Err(e) => return Err(KvError::Other(format!("etcd tls: {cert_path}: {e}"))),
    }
    PrivateKeyDer::from_pem_slice(key)
        .map(|_| ())
        .map_err(|e| KvError::Other(format!("etcd tls: {key_path}: {e}")))
}

/// The connection options every member's client starts from.
fn base_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_timeout(ATTEMPT_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        .with_require_leader(true)
}

/// Looks at `security`'s files every `every` and, when they changed, gives every member a
/// client with the new identity; ends when the client is dropped (`stop`).
async fn reload_tls(
    inner: std::sync::Weak<Inner>,
    security: EtcdSecurity,
    mut stamp: Vec<Option<(std::time::SystemTime, u64)>>,
    every: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.notified() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let now = security.stamp();
        if now == stamp {
            continue;
        }
        match reconnect(&inner, &security).await {
            Ok(()) => {
                stamp = now;
                counter!(TLS_RELOADS, "result" => "ok").increment(1);
                tracing::info!(cert = %security.cert_file, "etcd client: certificates reloaded");
            }
            // A half-written set (certificate renewed, key not yet): try again next time.
            Err(e) => {
                counter!(TLS_RELOADS, "result" => "failed").increment(1);
                warn!(error = %e, "etcd client: cannot reload certificates; keeping the old ones");
            }
        }
    }
}

/// Replaces every member's client by one built from `security`'s files now.
async fn reconnect(inner: &Inner, security: &EtcdSecurity) -> Result<(), KvError> {
    let options = security.apply(base_options())?;
    // Build them all first: a set that cannot be used replaces nothing.
    let mut clients = Vec::with_capacity(inner.members.len());
    for member in &inner.members {
        let client = Client::connect([member.endpoint.as_str()], Some(options.clone()))
            .await
            .map_err(|e| KvError::Other(format!("endpoint {}: {e}", member.endpoint)))?;
        clients.push(client);
    }
    for (member, client) in inner.members.iter().zip(clients) {
        *member.client.write() = client;
        // A new client authenticates as the user again at its first call.
        member
            .authenticated
            .store(inner.creds.is_none(), Ordering::Relaxed);
    }
    Ok(())
}

impl Etcd {
    /// Connects to the cluster at `endpoints` (`http://host:port`); succeeds while at least
    /// one member answers within `request_timeout`, which also bounds every later call
    /// including its retries.
    pub async fn connect(endpoints: &[String], request_timeout: Duration) -> Result<Etcd, KvError> {
        Self::connect_with(endpoints, request_timeout, &EtcdSecurity::default()).await
    }

    /// Like [`connect`](Self::connect), with TLS and/or a user (`https://` endpoints with
    /// a CA file); the TLS files are reloaded when they change (every
    /// [`TLS_RELOAD_EVERY`]).
    pub async fn connect_with(
        endpoints: &[String],
        request_timeout: Duration,
        security: &EtcdSecurity,
    ) -> Result<Etcd, KvError> {
        Self::connect_reloading(endpoints, request_timeout, security, TLS_RELOAD_EVERY).await
    }

    /// Like [`connect_with`](Self::connect_with), looking at the TLS files every `every`.
    pub async fn connect_reloading(
        endpoints: &[String],
        request_timeout: Duration,
        security: &EtcdSecurity,
        every: Duration,
    ) -> Result<Etcd, KvError> {
        if endpoints.is_empty() {
            return Err(KvError::Other("no etcd endpoints configured".into()));
        }
        let stamp = security.stamp();
        let options = security.apply(base_options())?;
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            // Connecting is lazy: this only validates the endpoint.
            let client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .map_err(|e| KvError::Other(format!("endpoint {endpoint}: {e}")))?;
            members.push(Member {
                endpoint: endpoint.clone(),
                client: parking_lot::RwLock::new(client),
                authenticated: std::sync::atomic::AtomicBool::new(security.username.is_empty()),
            });
        }
        let stop = Arc::new(tokio::sync::Notify::new());
        let etcd = Etcd {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
                request_timeout,
                creds: (!security.username.is_empty())
                    .then(|| (security.username.clone(), security.password.clone())),
                stop: stop.clone(),
            }),
        };
        if security.has_files() {
            tokio::spawn(reload_tls(
                Arc::downgrade(&etcd.inner),
                security.clone(),
                stamp,
                every,
                stop,
            ));
        }
        // Probe until a member answers; it becomes the preferred one. A member that answers
        // for itself ("etcdserver: no leader" while the cluster lacks quorum) is up.
        etcd.call(OP_GET, |mut client| async move {
            match client.status().await {
                Ok(_) => Ok(()),
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.message().starts_with("etcdserver:") =>
                {
                    Ok(())
                }
                Err(e) => Err(Failure::from(e)),
            }
        })
        .await?;
        Ok(etcd)
    }

    /// Returns the endpoint calls currently go to first.
    pub fn preferred_endpoint(&self) -> &str {
        let index = self.inner.preferred.load(Ordering::Relaxed);
        self.inner.members[index % self.inner.members.len()]
            .endpoint
            .as_str()
    }

    /// Moves the preference past member `failed`, unless another call already did.
    fn rotate_from(&self, failed: usize) {
        let next = (failed + 1) % self.inner.members.len();
        let _ = self.inner.preferred.compare_exchange(
            failed,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Runs `attempt` against the preferred member, retrying transient failures on the next
    /// members with backoff until the request timeout is spent; records the call's metrics.
    async fn call<T, F, Fut>(&self, op: &'static str, mut attempt: F) -> Result<T, KvError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let deadline = started + self.inner.request_timeout;
        let mut backoff = INITIAL_BACKOFF;
        let result = loop {
            let index = self.inner.preferred.load(Ordering::Relaxed) % self.inner.members.len();
            let member = &self.inner.members[index];
            let budget = deadline.saturating_duration_since(Instant::now());
            let outcome = tokio::time::timeout(budget.min(ATTEMPT_TIMEOUT), async {
                self.authenticate(member).await?;
                attempt(member.client()).await
            })
            .await;
            let reason = match outcome {
                Ok(Ok(value)) => break Ok(value),
                Ok(Err(Failure::Permanent(reason))) => break Err(KvError::Other(reason)),
                Ok(Err(Failure::NoSpace(reason))) => break Err(KvError::NoSpace(reason)),
                Ok(Err(Failure::Transient(reason))) => reason,
                Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            };
            self.rotate_from(index);
            let pause = jittered(backoff);
            if Instant::now() + pause >= deadline {
                break Err(KvError::Unavailable(format!(
                    "{op} failed for {:?}, last from {}: {reason}",
                    self.inner.request_timeout, member.endpoint
                )));
            }
            debug!(op, endpoint = %member.endpoint, %reason, "etcd call failed, retrying");
            counter!(RETRIES, "op" => op).increment(1);
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        histogram!(REQUEST_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            counter!(REQUEST_ERRORS, "op" => op).increment(1);
            warn!(op, error = %e, "etcd call failed");
        }
        result
    }

    /// Authenticates `member`'s client as the configured user, once (the client refreshes
    /// an expired token itself).
    async fn authenticate(&self, member: &Member) -> Result<(), Failure> {
        let Some(creds) = &self.inner.creds else {
            return Ok(());
        };
        if member.authenticated.load(Ordering::Relaxed) {
            return Ok(());
        }
        member
            .client()
            .update_user(Some(creds.clone()))
            .await
            .map_err(|e| Failure::Transient(format!("authenticating as {:?}: {e}", creds.0)))?;
        member.authenticated.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Returns what [`Kv::get_prefix`] does, reading pages of `page_size` keys, all at the
    /// revision of the first page.
    pub async fn get_prefix_paged(
        &self,
        prefix: &str,
        page_size: i64,
    ) -> Result<(Vec<kv::KeyValue>, i64), KvError> {
        let page_size = page_size.max(1);
        let end = prefix_end(prefix.as_bytes());
        let mut kvs = Vec::new();
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        loop {
            let (page, more, page_revision) = self
                .call(OP_GET, |mut client| {
                    let from = from.clone();
                    let end = end.clone();
                    async move {
                        let mut options = GetOptions::new().with_range(end).with_limit(page_size);
                        if revision > 0 {
                            options = options.with_revision(revision);
                        }
                        let response = client.get(from, Some(options)).await?;
                        let page_revision = response.header().map_or(0, |h| h.revision());
                        let page: Vec<kv::KeyValue> =
                            response.kvs().iter().map(key_value).collect();
                        Ok((page, response.more(), page_revision))
                    }
                })
                .await?;
            if revision == 0 {
                revision = page_revision;
            }
            let last = page.last().map(|kv| kv.key.clone());
            kvs.extend(page);
            match last {
                Some(last) if more => {
                    // Next page starts right after the last key.
                    from = last.into_bytes();
                    from.push(0);
                }
                _ => return Ok((kvs, revision)),
            }
        }
    }

    /// Keeps a watch on `prefix` open, notifying `tx`; returns when `tx` is closed.
    async fn watch_loop(&self, prefix: &str, tx: &mpsc::Sender<()>) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let index = self.inner.preferred.load(Ordering::Relaxed) % self.inner.members.len();
            let member = &self.inner.members[index];
            let started = Instant::now();
            let opened = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
                if let Err(
                    Failure::Transient(reason)
                    | Failure::Permanent(reason)
                    | Failure::NoSpace(reason),
                ) = self.authenticate(member).await
                {
                    return Err(etcd_client::Error::WatchError(reason));
                }
                let mut client = member.client();
                let options = WatchOptions::new().with_prefix();
                let mut stream = client.watch(prefix, Some(options)).await?;
                // Wait until etcd confirms the watch: changes after this point are seen.
                match stream.message().await? {
                    Some(response) if response.created() && !response.canceled() => Ok(stream),
                    Some(response) => Err(etcd_client::Error::WatchError(format!(
                        "watch not created: {}",
                        response.cancel_reason()
                    ))),
                    None => Err(etcd_client::Error::WatchError("watch stream closed".into())),
                }
            })
            .await;
            histogram!(REQUEST_SECONDS, "op" => OP_WATCH).record(started.elapsed().as_secs_f64());
            let reason = match opened {
                Ok(Ok(mut stream)) => {
                    backoff = INITIAL_BACKOFF;
                    if !notify(tx) {
                        return;
                    }
                    loop {
                        match stream.message().await {
                            Ok(Some(response)) if response.canceled() => {
                                break format!("watch canceled: {}", response.cancel_reason());
                            }
                            Ok(Some(response)) => {
                                if !response.events().is_empty() && !notify(tx) {
                                    return;
                                }
                            }
                            Ok(None) => break "watch stream closed".to_string(),
                            Err(e) => break e.to_string(),
                        }
                    }
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            };
            debug!(%prefix, endpoint = %member.endpoint, %reason, "etcd watch lost, reconnecting");
            counter!(RETRIES, "op" => OP_WATCH).increment(1);
            self.rotate_from(index);
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// The trait's methods, each retried across members until the request timeout is spent.
/// A transaction retried after an ambiguous failure (the answer was lost) may apply its ops
/// a second time; `create_if_absent` then finds the pair its first attempt created.
#[async_trait]
impl Kv for Etcd {
    async fn grant(&self, ttl_secs: i64) -> Result<i64, KvError> {
        self.call(OP_LEASE, |mut client| async move {
            let response = client.lease_grant(ttl_secs, None).await?;
            if response.error().is_empty() {
                Ok(response.id())
            } else {
                Err(Failure::Permanent(response.error().to_string()))
            }
        })
        .await
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, KvError> {
        self.call(OP_LEASE, |mut client| async move {
            // etcd-client sends the first keep-alive itself and keeps its answer, failing
            // with "lease not found" if the TTL was 0; a second round trip on the same stream
            // reports the TTL.
            let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
                Ok(pair) => pair,
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                    return Ok(0)
                }
                Err(e) => return Err(e.into()),
            };
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(response) => Ok(response.ttl().max(0)),
                None => Err(Failure::Transient("keep-alive stream closed".into())),
            }
        })
        .await
    }

    async fn revoke(&self, lease: i64) -> Result<(), KvError> {
        self.call(OP_LEASE, |mut client| async move {
            match client.lease_revoke(lease).await {
                Ok(_) => Ok(()),
                Err(etcd_client::Error::GRpcStatus(s)) if s.code() == Code::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<kv::KeyValue>, KvError> {
        self.call(OP_GET, |mut client| async move {
            let response = client.get(key, None).await?;
            Ok(response.kvs().first().map(key_value))
        })
        .await
    }

    // Pages of `PAGE_SIZE` keys, all read at the revision of the first page.
    async fn get_prefix(&self, prefix: &str) -> Result<(Vec<kv::KeyValue>, i64), KvError> {
        self.get_prefix_paged(prefix, PAGE_SIZE).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), KvError> {
        self.call(OP_PUT, |mut client| {
            let value = value.clone();
            async move {
                let options = lease.map(|l| PutOptions::new().with_lease(l));
                client.put(key, value, options).await?;
                Ok(())
            }
        })
        .await
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool, KvError> {
        let compares: Vec<etcd_client::Compare> = compares.iter().map(compare).collect();
        let ops: Vec<etcd_client::TxnOp> = ops.iter().map(txn_op).collect();
        self.call(OP_TXN, |mut client| {
            let txn = Txn::new().when(compares.clone()).and_then(ops.clone());
            async move { Ok(client.txn(txn).await?.succeeded()) }
        })
        .await
    }

    async fn create_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<Result<kv::KeyValue, kv::KeyValue>, KvError> {
        let absent = compare(&Compare::Absent { key: key.into() });
        let put = txn_op(&TxnOp::Put {
            key: key.into(),
            value: value.clone(),
            lease,
        });
        let read = etcd_client::TxnOp::get(key, None);
        let response = self
            .call(OP_TXN, |mut client| {
                let txn = Txn::new()
                    .when(vec![absent.clone()])
                    .and_then(vec![put.clone()])
                    .or_else(vec![read.clone()]);
                async move { Ok(client.txn(txn).await?) }
            })
            .await?;
        if response.succeeded() {
            // The put is the transaction's only write: the key was created at its revision.
            let revision = response.header().map_or(0, |h| h.revision());
            return Ok(Ok(kv::KeyValue {
                key: key.into(),
                value,
                create_revision: revision,
                mod_revision: revision,
                lease: lease.unwrap_or(0),
            }));
        }
        let existing = response.op_responses().iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(key_value),
            _ => None,
        });
        existing
            .map(Err)
            .ok_or_else(|| KvError::Other(format!("{key} exists but could not be read")))
    }

    fn watch_prefix(&self, prefix: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        let etcd = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = etcd.watch_loop(&prefix, &tx) => {}
                _ = tx.closed() => {}
            }
            debug!(%prefix, "etcd watch stopped");
        });
        rx
    }
}

/// Signals a change to the watcher; returns false once the receiver is gone. A full channel
/// already holds an unread signal, which covers this change too.
fn notify(tx: &mpsc::Sender<()>) -> bool {
    !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
}

pub mod testing {
    //! Real etcd clusters for multi-process tests and benchmarks.

    use std::fs::File;
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use super::{Etcd, EtcdSecurity};
    use crate::kv::Kv;

    /// TLS of a test etcd cluster: its CA, the members' server (and peer) certificate, and
    /// what its clients present.
    #[derive(Debug, Clone)]
    pub struct EtcdTls {
        /// CA of every certificate (clients, members, peers).
        pub ca_file: PathBuf,
        /// The members' certificate (valid for 127.0.0.1), also used between peers.
        pub cert_file: PathBuf,
        /// Its key.
        pub key_file: PathBuf,
        /// What clients of [`EtcdCluster::endpoints`] use (client certificate, user).
        pub client: EtcdSecurity,
    }

    /// How long a new cluster may take until every member answers.
    const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
    /// Attempts with fresh ports when a member fails to start (a port taken meanwhile).
    const START_ATTEMPTS: usize = 3;

    /// An etcd cluster of local processes on free loopback ports, with its data in a
    /// temporary directory; dropping it kills the members and removes the directory.
    pub struct EtcdCluster {
        dir: PathBuf,
        members: Vec<Process>,
        tls: Option<EtcdTls>,
    }

    struct Process {
        client_port: u16,
        child: Option<Child>,
        log: PathBuf,
    }

    /// Returns the etcd binary: from `PATH`, else `/usr/bin/etcd`.
    pub fn etcd_binary() -> Result<PathBuf, String> {
        let from_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        });
        from_path
            .or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
            .ok_or_else(|| "etcd not found: run scripts/ensure_etcd.sh".to_string())
    }

    /// Returns `count` distinct free loopback ports (all bound at once, then released).
    fn free_ports(count: usize) -> Result<Vec<u16>, String> {
        let listeners = (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot find a free port: {e}"))?;
        listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot find a free port: {e}"))
    }

    /// Returns a fresh directory for the cluster's data, on tmpfs when there is one (etcd
    /// syncs every write; tmpfs makes that free).
    fn data_root() -> Result<PathBuf, String> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("centralino-etcd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    fn tail(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    impl EtcdCluster {
        /// Starts a cluster of `members` etcd processes and waits until every member
        /// answers a read.
        pub async fn start(members: usize) -> Result<EtcdCluster, String> {
            Self::start_with(members, None, &[]).await
        }

        /// Starts a plaintext cluster whose members get the `extra` flags as well (e.g.
        /// `--quota-backend-bytes=…` to reach NOSPACE in a test).
        pub async fn start_with_flags(
            members: usize,
            extra: &[&str],
        ) -> Result<EtcdCluster, String> {
            let extra: Vec<String> = extra.iter().map(|f| f.to_string()).collect();
            Self::start_with(members, None, &extra).await
        }

        /// Starts a cluster whose clients and peers speak TLS with client certificates
        /// (`--client-cert-auth`, `--peer-client-cert-auth`).
        pub async fn start_secure(members: usize, tls: EtcdTls) -> Result<EtcdCluster, String> {
            Self::start_with(members, Some(tls), &[]).await
        }

        /// What clients must use (plaintext without TLS).
        pub fn security(&self) -> EtcdSecurity {
            self.tls
                .as_ref()
                .map(|t| t.client.clone())
                .unwrap_or_default()
        }

        async fn start_with(
            members: usize,
            tls: Option<EtcdTls>,
            extra: &[String],
        ) -> Result<EtcdCluster, String> {
            let binary = etcd_binary()?;
            let mut last_error = String::new();
            for _ in 0..START_ATTEMPTS {
                match Self::try_start(&binary, members.max(1), tls.clone(), extra).await {
                    Ok(cluster) => return Ok(cluster),
                    Err(e) => last_error = e,
                }
            }
            Err(last_error)
        }

        async fn try_start(
            binary: &Path,
            members: usize,
            tls: Option<EtcdTls>,
            extra: &[String],
        ) -> Result<EtcdCluster, String> {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let ports = free_ports(2 * members)?;
            let (client_ports, peer_ports) = ports.split_at(members);
            let initial_cluster = peer_ports
                .iter()
                .enumerate()
                .map(|(i, port)| format!("m{i}={scheme}://127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",");
            let token = format!("centralino-{}", uuid::Uuid::new_v4().simple());
            let mut cluster = EtcdCluster {
                dir: data_root()?,
                members: Vec::with_capacity(members),
                tls: tls.clone(),
            };
            let tls_args: Vec<String> = match &tls {
                None => Vec::new(),
                Some(t) => {
                    let (ca, cert, key) = (
                        t.ca_file.display().to_string(),
                        t.cert_file.display().to_string(),
                        t.key_file.display().to_string(),
                    );
                    vec![
                        "--client-cert-auth".into(),
                        "--trusted-ca-file".into(),
                        ca.clone(),
                        "--cert-file".into(),
                        cert.clone(),
                        "--key-file".into(),
                        key.clone(),
                        "--peer-client-cert-auth".into(),
                        "--peer-trusted-ca-file".into(),
                        ca,
                        "--peer-cert-file".into(),
                        cert,
                        "--peer-key-file".into(),
                        key,
                    ]
                }
            };
            for (i, (client, peer)) in client_ports.iter().zip(peer_ports).enumerate() {
                let log = cluster.dir.join(format!("m{i}.log"));
                let out = File::create(&log).map_err(|e| format!("cannot create log: {e}"))?;
                let err = out
                    .try_clone()
                    .map_err(|e| format!("cannot create log: {e}"))?;
                let client_url = format!("{scheme}://127.0.0.1:{client}");
                let peer_url = format!("{scheme}://127.0.0.1:{peer}");
                let child = Command::new(binary)
                    .arg("--name")
                    .arg(format!("m{i}"))
                    .arg("--data-dir")
                    .arg(cluster.dir.join(format!("m{i}.etcd")))
                    .args(["--listen-client-urls", &client_url])
                    .args(["--advertise-client-urls", &client_url])
                    .args(["--listen-peer-urls", &peer_url])
                    .args(["--initial-advertise-peer-urls", &peer_url])
                    .args(["--initial-cluster", &initial_cluster])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", &token])
                    .args(&tls_args)
                    .args(extra)
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
                cluster.members.push(Process {
                    client_port: *client,
                    child: Some(child),
                    log,
                });
            }
            cluster.wait_ready().await?;
            Ok(cluster)
        }

        /// Waits until every member answers a linearizable read.
        async fn wait_ready(&mut self) -> Result<(), String> {
            let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
            for i in 0..self.members.len() {
                let endpoint = vec![self.endpoint(i)];
                loop {
                    if let Some(status) = self.members[i]
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten())
                    {
                        return Err(format!(
                            "etcd member {i} exited with {status}:\n{}",
                            tail(&self.members[i].log)
                        ));
                    }
                    let security = self.security();
                    let answered = match Etcd::connect_with(
                        &endpoint,
                        Duration::from_secs(1),
                        &security,
                    )
                    .await
                    {
                        Ok(etcd) => etcd.get("centralino-ready").await.is_ok(),
                        Err(_) => false,
                    };
                    if answered {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!(
                            "etcd member {i} not ready after {STARTUP_TIMEOUT:?}:\n{}",
                            tail(&self.members[i].log)
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(())
        }

        fn endpoint(&self, member: usize) -> String {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://127.0.0.1:{}", self.members[member].client_port)
        }

        /// Returns the client URLs of all members (`http(s)://127.0.0.1:PORT`), killed ones
        /// included.
        pub fn endpoints(&self) -> Vec<String> {
            (0..self.members.len()).map(|i| self.endpoint(i)).collect()
        }

        /// Returns the index of the current leader, asking the live members.
        pub async fn leader(&self) -> Result<usize, String> {
            for (i, member) in self.members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                let Ok(options) = self.security().apply(etcd_client::ConnectOptions::new()) else {
                    continue;
                };
                let Ok(mut client) =
                    etcd_client::Client::connect([self.endpoint(i)], Some(options)).await
                else {
                    continue;
                };
                let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_secs(1), client.status()).await
                else {
                    continue;
                };
                if status.header().map(|h| h.member_id()) == Some(status.leader()) {
                    return Ok(i);
                }
            }
            Err("no live etcd member is the leader".into())
        }

        /// Kills member `member` with SIGKILL and waits for it to exit.
        pub fn kill(&mut self, member: usize) {
            if let Some(mut child) = self.members.get_mut(member).and_then(|m| m.child.take()) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for EtcdCluster {
        fn drop(&mut self) {
            for member in 0..self.members.len() {
                self.kill(member);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
