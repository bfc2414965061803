//! `FencedStore` against a real etcd (`scripts/ensure_etcd.sh` installs etcd; these tests
//! fail, never skip, without it). The same fencing runs over the in-memory twin in the unit
//! tests of `centralino_cluster::fenced_store`.

use std::sync::Arc;
use std::time::Duration;

use centralino_cluster::fenced_store::{claim_key, FencedStore, Fences};
use centralino_core::store::group_commit::GroupCommit;
use centralino_core::store::records::{
    conversation_key, message_key, messages_prefix, partition_of, profile_key,
};
use centralino_core::store::{Op, Store, StoreError};
use centralino_membership::etcd::testing::EtcdCluster;
use centralino_membership::etcd::Etcd;
use centralino_membership::kv::Kv;
use tokio::sync::{mpsc, watch};

const PREFIX: &str = "/centralino-test";

struct Setup {
    _cluster: EtcdCluster,
    etcd: Etcd,
    fences: Arc<Fences>,
    lost: mpsc::UnboundedReceiver<u32>,
    store: Arc<FencedStore>,
}

async fn setup() -> Setup {
    let cluster = EtcdCluster::start(1)
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    let etcd = Etcd::connect(&cluster.endpoints(), Duration::from_secs(5))
        .await
        .expect("connect");
    let (fences, lost) = Fences::new();
    let store = Arc::new(FencedStore::new(
        Arc::new(etcd.clone()),
        PREFIX,
        fences.clone(),
    ));
    Setup {
        _cluster: cluster,
        etcd,
        fences,
        lost,
        store,
    }
}

/// Claims `partition` in etcd as this router would and holds it; returns the token.
async fn claim(s: &Setup, partition: u32) -> i64 {
    let kv = match s
        .etcd
        .create_if_absent(&claim_key(PREFIX, partition), b"router-a".to_vec(), None)
        .await
        .unwrap()
    {
        Ok(created) => created,
        // A retry after a lost answer finds the claim its first attempt created.
        Err(existing) if existing.value == b"router-a" => existing,
        Err(existing) => panic!("partition {partition} claimed by {existing:?}"),
    };
    s.fences.hold(partition, kv.create_revision);
    kv.create_revision
}

/// Returns the current etcd revision (one per applied write transaction).
async fn revision(etcd: &Etcd) -> i64 {
    etcd.get_prefix("/nothing-here/").await.unwrap().1
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
    let s = setup().await;
    let id = "conv-a";
    claim(&s, partition_of(id)).await;
    s.store
        .apply(vec![
            Op::Put(conversation_key(id), b"record".to_vec()),
            Op::Put(message_key(id, 2), b"m2".to_vec()),
            Op::Put(message_key(id, 1), b"m1".to_vec()),
            Op::Put(profile_key("c1"), b"profile".to_vec()),
        ])
        .await
        .unwrap();

    assert_eq!(
        s.store.get(&conversation_key(id)).await.unwrap(),
        Some(b"record".to_vec())
    );
    let raw = format!("{PREFIX}/data/{}", conversation_key(id));
    assert_eq!(s.etcd.get(&raw).await.unwrap().unwrap().value, b"record");
    assert_eq!(
        s.store.scan("msg/").await.unwrap(),
        vec![
            (message_key(id, 1), b"m1".to_vec()),
            (message_key(id, 2), b"m2".to_vec()),
        ]
    );
    assert_eq!(s.store.scan("").await.unwrap().len(), 4);

    s.store
        .apply(vec![
            Op::Delete(conversation_key(id)),
            Op::DeletePrefix(messages_prefix(id)),
        ])
        .await
        .unwrap();
    assert_eq!(s.store.get(&conversation_key(id)).await.unwrap(), None);
    assert!(s.store.scan("msg/").await.unwrap().is_empty());
    assert_eq!(
        s.store.scan("").await.unwrap(),
        vec![(profile_key("c1"), b"profile".to_vec())]
    );
}

#[tokio::test]
async fn writers_of_one_key_and_oversized_batches_are_split_into_transactions() {
    let s = setup().await;
    let id = "conv-a";
    claim(&s, partition_of(id)).await;
    let key = conversation_key(id);

    // etcd refuses a transaction that writes a key twice: later writers go to a later one.
    let before = revision(&s.etcd).await;
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
    assert_eq!(revision(&s.etcd).await - before, 4);

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
    // Within one writer etcd cannot express it atomically: refused, nothing written.
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
    let before = revision(&s.etcd).await;
    let batch: Vec<Vec<Op>> = (0..3)
        .map(|w| {
            (0..60)
                .map(|i| Op::Put(message_key(id, w * 100 + i), vec![1]))
                .collect()
        })
        .collect();
    let results = s.store.apply_batch(batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(revision(&s.etcd).await - before, 2);
    assert_eq!(s.store.scan(&messages_prefix(id)).await.unwrap().len(), 181);
}

#[tokio::test]
async fn a_router_that_lost_its_claim_is_fenced() {
    let mut s = setup().await;
    let (a, b) = two_conversations();
    let (pa, pb) = (partition_of(&a), partition_of(&b));
    let token = claim(&s, pa).await;
    claim(&s, pb).await;

    s.store
        .apply(vec![Op::Put(conversation_key(&a), b"mine".to_vec())])
        .await
        .unwrap();

    // Another router takes partition a over: the claim is deleted and re-created.
    assert!(s
        .etcd
        .delete_if(&claim_key(PREFIX, pa), token)
        .await
        .unwrap());
    let theirs = s
        .etcd
        .create_if_absent(&claim_key(PREFIX, pa), b"router-b".to_vec(), None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(theirs.create_revision, token);

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

    // Later writes to the lost partition are refused without asking etcd.
    let result = s
        .store
        .apply(vec![Op::Put(conversation_key(&a), b"again".to_vec())])
        .await;
    assert!(
        matches!(result, Err(StoreError::Fenced(p)) if p == pa),
        "{result:?}"
    );
}

#[tokio::test]
async fn group_commit_merges_concurrent_writes_into_few_transactions() {
    let s = setup().await;
    let held: Vec<u32> = (0..16).map(|i| i * 16).collect();
    for &p in &held {
        claim(&s, p).await;
    }
    let ids: Vec<String> = (0..)
        .map(|i| format!("conv-{i}"))
        .filter(|id| held.contains(&partition_of(id)))
        .take(500)
        .collect();

    let (_stop_tx, stop) = watch::channel(false);
    let store: Arc<dyn Store> = s.store.clone();
    let commits = GroupCommit::new(
        store,
        centralino_core::store::group_commit::DEFAULT_MAX_OPS,
        centralino_core::store::group_commit::DEFAULT_MAX_DELAY,
        stop,
    );
    let before = revision(&s.etcd).await;
    let mut tasks = Vec::new();
    for id in &ids {
        let commits = commits.clone();
        let op = Op::Put(conversation_key(id), id.as_bytes().to_vec());
        tasks.push(tokio::spawn(async move { commits.write(vec![op]).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let txns = revision(&s.etcd).await - before;
    eprintln!("{txns} transactions for 500 writes");
    assert!(
        (5..=50).contains(&txns),
        "{txns} transactions for 500 writes"
    );
    assert_eq!(s.store.scan("conv/").await.unwrap().len(), 500);
}
