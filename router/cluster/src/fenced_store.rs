//! The cluster's durable [`Store`]: records in the coordination store ([`Kv`]: etcd, or its
//! in-memory twin), writes fenced by partition claims. The fencing is written once, over the
//! trait, so the twin fences exactly as etcd does.
//!
//! A router writes a partition's records only while it holds the partition's claim key
//! (`<prefix>/claims/<partition>`); the claim's create_revision is the fencing token. Every
//! transaction compares the tokens of the partitions it writes, so a router that lost a
//! claim (another router deleted and re-created it) cannot overwrite the new owner's
//! records: its writers get [`StoreError::Fenced`] and the partition is reported lost.
//!
//! Records live under `<prefix>/data/<key>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use centralino_membership::kv::{Compare, Kv, KvError, TxnOp, MAX_TXN_OPS};
use metrics::counter;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::warn;

use centralino_core::store::records::partition_of_key;
use centralino_core::store::{Op, Store, StoreError};

/// Rounds of a batch whose compares failed without a claim found lost (a claim re-taken
/// while the batch was in flight) before the batch gives up.
const MAX_FENCE_ROUNDS: usize = 5;
/// Metric: writers refused because their router no longer holds a partition.
const FENCED_WRITES: &str = "centralino_cluster_fenced_writes_total";

/// Maps a coordination store error: etcd's NOSPACE (and a request over its size limit)
/// becomes [`StoreError::Full`] (RESOURCE_EXHAUSTED to a client), anything else
/// [`StoreError::Backend`] (UNAVAILABLE).
pub fn store_error(e: KvError) -> StoreError {
    match e {
        KvError::NoSpace(reason) => StoreError::Full(reason),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Returns the claim key of `partition`.
pub fn claim_key(prefix: &str, partition: u32) -> String {
    format!("{prefix}/claims/{partition:03}")
}

/// Partition claims this router holds: partition → create_revision of its claim key (the
/// fencing token).
pub struct Fences {
    tokens: Mutex<BTreeMap<u32, i64>>,
    lost: mpsc::UnboundedSender<u32>,
}

impl Fences {
    /// Returns empty fences and the receiver of partitions found lost by a refused write.
    pub fn new() -> (Arc<Fences>, mpsc::UnboundedReceiver<u32>) {
        let (lost, rx) = mpsc::unbounded_channel();
        let fences = Fences {
            tokens: Mutex::new(BTreeMap::new()),
            lost,
        };
        (Arc::new(fences), rx)
    }

    /// Records that this router holds `partition` with fencing token `token`.
    pub fn hold(&self, partition: u32, token: i64) {
        self.tokens.lock().insert(partition, token);
    }

    /// Forgets `partition`.
    pub fn release(&self, partition: u32) {
        self.tokens.lock().remove(&partition);
    }

    /// Returns the fencing token of `partition` if this router holds it.
    pub fn token(&self, partition: u32) -> Option<i64> {
        self.tokens.lock().get(&partition).copied()
    }

    /// Returns the partitions this router holds, sorted.
    pub fn held(&self) -> Vec<u32> {
        self.tokens.lock().keys().copied().collect()
    }

    /// Forgets `partition` if it is still held with `token` (not re-claimed meanwhile) and
    /// reports it lost.
    fn lose(&self, partition: u32, token: i64) {
        let mut tokens = self.tokens.lock();
        if tokens.get(&partition) == Some(&token) {
            tokens.remove(&partition);
            drop(tokens);
            warn!(partition, token, "partition claim lost");
            let _ = self.lost.send(partition);
        }
    }
}

/// [`Store`] over a [`Kv`], fencing partitioned writes with the claims in [`Fences`].
pub struct FencedStore {
    kv: Arc<dyn Kv>,
    prefix: String,
    data: String,
    fences: Arc<Fences>,
}

/// The writes of one writer, as etcd sees them.
struct Writer {
    /// Position in the batch.
    index: usize,
    /// Partitions it writes, sorted.
    partitions: BTreeSet<u32>,
    /// Final puts (key under the data prefix → value).
    puts: BTreeMap<String, Vec<u8>>,
    /// Deleted keys.
    deletes: BTreeSet<String>,
    /// Deleted prefixes.
    prefixes: Vec<String>,
}

impl Writer {
    fn ops(&self) -> usize {
        self.puts.len() + self.deletes.len() + self.prefixes.len()
    }

    /// Returns whether `key` is deleted by this writer.
    fn deletes_key(&self, key: &str) -> bool {
        self.deletes.contains(key) || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn txn_ops(&self) -> impl Iterator<Item = TxnOp> + '_ {
        let deletes = self
            .deletes
            .iter()
            .map(|key| TxnOp::Delete { key: key.clone() });
        let prefixes = self.prefixes.iter().map(|prefix| TxnOp::DeletePrefix {
            prefix: prefix.clone(),
        });
        let puts = self.puts.iter().map(|(key, value)| TxnOp::Put {
            key: key.clone(),
            value: value.clone(),
            lease: None,
        });
        deletes.chain(prefixes).chain(puts)
    }
}

/// Writers applied in one etcd transaction. etcd refuses a transaction that puts a key
/// twice or puts a key it also deletes, so such writers go to the next group.
#[derive(Default)]
struct Group {
    writers: Vec<Writer>,
}

impl Group {
    fn ops(&self) -> usize {
        self.writers.iter().map(Writer::ops).sum()
    }

    fn partitions(&self) -> BTreeSet<u32> {
        self.writers
            .iter()
            .flat_map(|w| w.partitions.iter().copied())
            .collect()
    }

    /// Returns whether `writer` can join without breaking etcd's limits or its rule
    /// against a key written twice.
    fn admits(&self, writer: &Writer) -> bool {
        if self.writers.is_empty() {
            return true;
        }
        let mut partitions = self.partitions();
        partitions.extend(writer.partitions.iter().copied());
        if self.ops() + writer.ops() > MAX_TXN_OPS || partitions.len() > MAX_TXN_OPS {
            return false;
        }
        self.writers.iter().all(|member| {
            let clash = |a: &Writer, b: &Writer| {
                a.puts
                    .keys()
                    .any(|key| b.puts.contains_key(key) || b.deletes_key(key))
            };
            !clash(writer, member) && !clash(member, writer)
        })
    }
}

impl FencedStore {
    /// Returns a store keeping records under `<prefix>/data/` and fencing writes with the
    /// claims under `<prefix>/claims/` held in `fences`.
    pub fn new(kv: Arc<dyn Kv>, prefix: &str, fences: Arc<Fences>) -> Self {
        let prefix = prefix.trim_end_matches('/').to_string();
        Self {
            kv,
            data: format!("{prefix}/data/"),
            prefix,
            fences,
        }
    }

    /// Returns the fences the store writes under.
    pub fn fences(&self) -> &Arc<Fences> {
        &self.fences
    }

    /// Returns a writer's ops as etcd writes, in their final effect (a later put of a key
    /// replaces an earlier one, a delete drops an earlier put of the key).
    fn writer(&self, index: usize, ops: Vec<Op>) -> Result<Writer, StoreError> {
        let mut writer = Writer {
            index,
            partitions: BTreeSet::new(),
            puts: BTreeMap::new(),
            deletes: BTreeSet::new(),
            prefixes: Vec::new(),
        };
        for op in ops {
            let record_key = match &op {
                Op::Put(key, _) | Op::Delete(key) | Op::DeletePrefix(key) => key,
            };
            writer.partitions.extend(partition_of_key(record_key));
            match op {
                Op::Put(key, value) => {
                    let key = format!("{}{key}", self.data);
                    if writer.prefixes.iter().any(|p| key.starts_with(p.as_str())) {
                        return Err(StoreError::Backend(format!(
                            "{key}: etcd cannot put a key under a prefix deleted in the same transaction"
                        )));
                    }
                    writer.deletes.remove(&key);
                    writer.puts.insert(key, value);
                }
                Op::Delete(key) => {
                    let key = format!("{}{key}", self.data);
                    writer.puts.remove(&key);
                    writer.deletes.insert(key);
                }
                Op::DeletePrefix(prefix) => {
                    let prefix = format!("{}{prefix}", self.data);
                    writer
                        .puts
                        .retain(|key, _| !key.starts_with(prefix.as_str()));
                    writer.prefixes.push(prefix);
                }
            }
        }
        Ok(writer)
    }

    /// Applies the writers of `group` in one transaction, dropping writers of lost
    /// partitions and retrying the rest; fills their entries of `results`.
    async fn commit_group(&self, group: Group, results: &mut [Option<Result<(), StoreError>>]) {
        let mut writers = group.writers;
        let mut rounds = 0;
        while !writers.is_empty() {
            // Tokens are read now: a partition may have been released since the batch began.
            let mut tokens = BTreeMap::new();
            writers.retain(|w| match self.tokens_of(w, &mut tokens) {
                Ok(()) => true,
                Err(partition) => {
                    counter!(FENCED_WRITES).increment(1);
                    results[w.index] = Some(Err(StoreError::Fenced(partition)));
                    false
                }
            });
            if writers.is_empty() {
                return;
            }
            let compares = tokens
                .iter()
                .map(|(partition, token)| Compare::CreateRevision {
                    key: claim_key(&self.prefix, *partition),
                    revision: *token,
                })
                .collect();
            let ops = writers.iter().flat_map(Writer::txn_ops).collect();
            let failure = match self.kv.txn(compares, ops).await {
                Ok(true) => {
                    for w in &writers {
                        results[w.index] = Some(Ok(()));
                    }
                    return;
                }
                // `release_lost` releases the lost partitions: the next round refuses
                // their writers and retries the others.
                Ok(false) => match self.release_lost(&tokens).await {
                    Ok(_) if rounds < MAX_FENCE_ROUNDS => {
                        rounds += 1;
                        continue;
                    }
                    Ok(_) => StoreError::Backend("fencing compares keep failing".into()),
                    Err(e) => e,
                },
                Err(e) => store_error(e),
            };
            for w in &writers {
                results[w.index] = Some(Err(failure.clone()));
            }
            return;
        }
    }

    /// Adds the tokens of `writer`'s partitions to `tokens`; returns the first partition
    /// this router does not hold.
    fn tokens_of(&self, writer: &Writer, tokens: &mut BTreeMap<u32, i64>) -> Result<(), u32> {
        for &partition in &writer.partitions {
            match self.fences.token(partition) {
                Some(token) => {
                    tokens.insert(partition, token);
                }
                None => return Err(partition),
            }
        }
        Ok(())
    }

    /// Reads the claims after a refused transaction and releases the partitions whose
    /// claim no longer carries this router's token; returns how many it released (none when
    /// the claims changed back meanwhile or `hold` replaced a token).
    async fn release_lost(&self, tokens: &BTreeMap<u32, i64>) -> Result<usize, StoreError> {
        let claims = format!("{}/claims/", self.prefix);
        let (kvs, _) = self
            .kv
            .get_prefix(&claims)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let current: BTreeMap<&str, i64> = kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.create_revision))
            .collect();
        let mut released = 0;
        for (&partition, &token) in tokens {
            let key = claim_key(&self.prefix, partition);
            if current.get(key.as_str()) != Some(&token) {
                self.fences.lose(partition, token);
                released += 1;
            }
        }
        Ok(released)
    }

    fn data_key(&self, key: &str) -> String {
        format!("{}{key}", self.data)
    }
}

#[async_trait]
impl Store for FencedStore {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.apply_batch(vec![ops])
            .await
            .pop()
            .unwrap_or(Err(StoreError::Backend("missing result".into())))
    }

    async fn apply_batch(&self, batch: Vec<Vec<Op>>) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = vec![None; batch.len()];
        let mut groups: Vec<Group> = vec![Group::default()];
        for (index, ops) in batch.into_iter().enumerate() {
            let writer = match self.writer(index, ops) {
                Ok(writer) => writer,
                Err(e) => {
                    results[index] = Some(Err(e));
                    continue;
                }
            };
            if writer.ops() == 0 {
                results[index] = Some(Ok(()));
                continue;
            }
            if let Some(&partition) = writer
                .partitions
                .iter()
                .find(|p| self.fences.token(**p).is_none())
            {
                counter!(FENCED_WRITES).increment(1);
                results[index] = Some(Err(StoreError::Fenced(partition)));
                continue;
            }
            match groups.last_mut() {
                Some(group) if group.admits(&writer) => group.writers.push(writer),
                _ => groups.push(Group {
                    writers: vec![writer],
                }),
            }
        }
        // Groups commit in order, so a later write of a key lands after an earlier one.
        for group in groups {
            self.commit_group(group, &mut results).await;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Backend("write not applied".into()))))
            .collect()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv
            .get(&self.data_key(key))
            .await
            .map(|kv| kv.map(|kv| kv.value))
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (kvs, _) = self
            .kv
            .get_prefix(&self.data_key(prefix))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| {
                let key = kv.key.strip_prefix(self.data.as_str())?.to_string();
                Some((key, kv.value))
            })
            .collect())
    }
}

/// The fencing of `router/tests/etcd_store.rs`, over the in-memory twin: no etcd process.
#[cfg(test)]
mod tests {
    use super::*;
    use centralino_core::store::records::{
        conversation_key, message_key, messages_prefix, partition_of, profile_key,
    };
    use centralino_membership::memory::MemoryKv;

    #[test]
    fn etcd_out_of_space_is_a_full_store() {
        let e = store_error(KvError::NoSpace(
            "etcdserver: mvcc: database space exceeded".into(),
        ));
        assert!(matches!(e, StoreError::Full(_)), "{e:?}");
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::ResourceExhausted
        );
        let other = store_error(KvError::Unavailable("no leader".into()));
        assert!(matches!(other, StoreError::Backend(_)), "{other:?}");
    }

    const PREFIX: &str = "/centralino-test";

    struct Setup {
        kv: Arc<MemoryKv>,
        fences: Arc<Fences>,
        lost: mpsc::UnboundedReceiver<u32>,
        store: FencedStore,
    }

    fn setup() -> Setup {
        let kv = Arc::new(MemoryKv::new());
        let (fences, lost) = Fences::new();
        let store = FencedStore::new(kv.clone(), PREFIX, fences.clone());
        Setup {
            kv,
            fences,
            lost,
            store,
        }
    }

    /// Claims `partition` as router-a would, bound to `lease` if given, and holds it;
    /// returns the token.
    async fn claim(s: &Setup, partition: u32, lease: Option<i64>) -> i64 {
        let created =
            s.kv.create_if_absent(&claim_key(PREFIX, partition), b"router-a".to_vec(), lease)
                .await
                .unwrap()
                .unwrap();
        s.fences.hold(partition, created.create_revision);
        created.create_revision
    }

    /// Returns two conversation ids in different partitions.
    fn two_conversations() -> (String, String) {
        let a = "conv-a".to_string();
        let b = (0..)
            .map(|i| format!("conv-b{i}"))
            .find(|b| partition_of(b) != partition_of(&a))
            .unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn records_round_trip_under_the_data_prefix() {
        let s = setup();
        let id = "conv-a";
        claim(&s, partition_of(id), None).await;
        s.store
            .apply(vec![
                Op::Put(conversation_key(id), b"record".to_vec()),
                Op::Put(message_key(id, 2), b"m2".to_vec()),
                Op::Put(message_key(id, 1), b"m1".to_vec()),
                Op::Put(profile_key("c1"), b"profile".to_vec()),
            ])
            .await
            .unwrap();
        let raw = format!("{PREFIX}/data/{}", conversation_key(id));
        assert_eq!(s.kv.get(&raw).await.unwrap().unwrap().value, b"record");
        assert_eq!(
            s.store.scan("msg/").await.unwrap(),
            vec![
                (message_key(id, 1), b"m1".to_vec()),
                (message_key(id, 2), b"m2".to_vec()),
            ]
        );
        s.store
            .apply(vec![
                Op::Delete(conversation_key(id)),
                Op::DeletePrefix(messages_prefix(id)),
            ])
            .await
            .unwrap();
        assert_eq!(
            s.store.scan("").await.unwrap(),
            vec![(profile_key("c1"), b"profile".to_vec())]
        );
    }

    #[tokio::test]
    async fn writers_of_one_key_and_oversized_batches_are_split_into_transactions() {
        let s = setup();
        let id = "conv-a";
        claim(&s, partition_of(id), None).await;
        let key = conversation_key(id);

        // Like etcd, the twin refuses a transaction that writes a key twice: later writers
        // go to a later one, and each writer gets its own result.
        let before = s.kv.revision();
        let results = s
            .store
            .apply_batch(vec![
                vec![Op::Put(key.clone(), b"1".to_vec())],
                vec![Op::Put(key.clone(), b"2".to_vec())],
                vec![Op::Put(profile_key("c1"), b"p".to_vec())],
                vec![Op::Delete(key.clone())],
                vec![Op::Put(key.clone(), b"3".to_vec())],
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(s.store.get(&key).await.unwrap(), Some(b"3".to_vec()));
        assert_eq!(s.kv.revision() - before, 4);

        // A put under a prefix another writer deletes goes to a later transaction too.
        let results = s
            .store
            .apply_batch(vec![
                vec![Op::DeletePrefix(messages_prefix(id))],
                vec![Op::Put(message_key(id, 999), b"m999".to_vec())],
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(s.store.scan("msg/").await.unwrap().len(), 1);
        // Within one writer it cannot be expressed atomically: refused, nothing written.
        let result = s
            .store
            .apply(vec![
                Op::DeletePrefix(messages_prefix(id)),
                Op::Put(message_key(id, 8), b"m8".to_vec()),
            ])
            .await;
        assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
        assert_eq!(s.store.scan("msg/").await.unwrap().len(), 1);

        // 3 × 60 ops do not fit one transaction of at most 128: two writers, then one.
        let before = s.kv.revision();
        let batch: Vec<Vec<Op>> = (0..3)
            .map(|w| {
                (0..60)
                    .map(|i| Op::Put(message_key(id, w * 100 + i), vec![1]))
                    .collect()
            })
            .collect();
        let results = s.store.apply_batch(batch).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(s.kv.revision() - before, 2);
        assert_eq!(s.store.scan(&messages_prefix(id)).await.unwrap().len(), 181);
    }

    #[tokio::test]
    async fn a_router_that_lost_its_claim_is_fenced() {
        let mut s = setup();
        let (a, b) = two_conversations();
        let (pa, pb) = (partition_of(&a), partition_of(&b));
        let token = claim(&s, pa, None).await;
        claim(&s, pb, None).await;
        s.store
            .apply(vec![Op::Put(conversation_key(&a), b"mine".to_vec())])
            .await
            .unwrap();

        // Another router takes partition a over: the claim is deleted and re-created.
        assert!(s.kv.delete_if(&claim_key(PREFIX, pa), token).await.unwrap());
        let theirs =
            s.kv.create_if_absent(&claim_key(PREFIX, pa), b"router-b".to_vec(), None)
                .await
                .unwrap()
                .unwrap();
        assert_ne!(theirs.create_revision, token);

        let before = s.kv.revision();
        let results = s
            .store
            .apply_batch(vec![
                vec![Op::Put(conversation_key(&a), b"stale".to_vec())],
                vec![Op::Put(conversation_key(&b), b"fine".to_vec())],
                vec![Op::Put(profile_key("c1"), b"unfenced".to_vec())],
            ])
            .await;
        assert!(
            matches!(results[0], Err(StoreError::Fenced(p)) if p == pa),
            "{results:?}"
        );
        assert!(results[1].is_ok() && results[2].is_ok(), "{results:?}");
        assert_eq!(s.kv.revision() - before, 1, "the others in one transaction");

        assert_eq!(
            s.store.get(&conversation_key(&a)).await.unwrap(),
            Some(b"mine".to_vec())
        );
        assert_eq!(
            s.store.get(&conversation_key(&b)).await.unwrap(),
            Some(b"fine".to_vec())
        );
        assert_eq!(s.fences.token(pa), None);
        assert_eq!(s.fences.held(), vec![pb]);
        assert_eq!(s.lost.try_recv().unwrap(), pa);
        assert!(
            s.lost.try_recv().is_err(),
            "a partition reported lost twice"
        );

        // Later writes to the lost partition are refused without asking the store.
        let before = s.kv.revision();
        let result = s
            .store
            .apply(vec![Op::Put(conversation_key(&a), b"again".to_vec())])
            .await;
        assert!(
            matches!(result, Err(StoreError::Fenced(p)) if p == pa),
            "{result:?}"
        );
        assert_eq!(s.kv.revision(), before);
    }

    #[tokio::test]
    async fn a_router_whose_lease_expired_is_fenced() {
        let mut s = setup();
        let id = "conv-a";
        let p = partition_of(id);
        let lease = s.kv.grant(30).await.unwrap();
        claim(&s, p, Some(lease)).await;
        s.store
            .apply(vec![Op::Put(conversation_key(id), b"mine".to_vec())])
            .await
            .unwrap();

        // The lease expires (the router was paused): its claim goes with it, and a write
        // it still had in flight is refused even before anyone else claims the partition.
        assert!(s.kv.expire(lease));
        let result = s
            .store
            .apply(vec![Op::Put(conversation_key(id), b"late".to_vec())])
            .await;
        assert!(
            matches!(result, Err(StoreError::Fenced(q)) if q == p),
            "{result:?}"
        );
        assert_eq!(
            s.store.get(&conversation_key(id)).await.unwrap(),
            Some(b"mine".to_vec())
        );
        assert_eq!(s.lost.try_recv().unwrap(), p);
        assert!(s.fences.held().is_empty());
    }
}
