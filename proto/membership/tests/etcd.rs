//! The etcd client against real etcd processes (`scripts/ensure_etcd.sh` installs etcd;
//! these tests fail, never skip, without it).

use std::time::Duration;

use centralino_membership::etcd::testing::EtcdCluster;
use centralino_membership::etcd::Etcd;
use centralino_membership::kv::{contract, Kv, TxnOp};
use tokio::time::{timeout, Instant};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn start(members: usize) -> (EtcdCluster, Etcd) {
    let cluster = EtcdCluster::start(members)
        .await
        .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
    let etcd = Etcd::connect(&cluster.endpoints(), REQUEST_TIMEOUT)
        .await
        .expect("connect");
    (cluster, etcd)
}

/// Waits for the next watch signal, failing after `within`.
async fn signal(rx: &mut tokio::sync::mpsc::Receiver<()>, within: Duration) {
    timeout(within, rx.recv())
        .await
        .expect("no watch signal in time")
        .expect("watch ended");
}

/// The twin (`MemoryKv`) passes the same checks in its unit tests.
#[tokio::test]
async fn etcd_meets_the_kv_contract() {
    let (_cluster, etcd) = start(1).await;
    contract::check(&etcd).await;
}

#[tokio::test]
async fn an_expired_lease_deletes_its_keys() {
    let (_cluster, etcd) = start(1).await;
    let lease = etcd.grant(1).await.unwrap();
    etcd.put("expiring", b"x".to_vec(), Some(lease))
        .await
        .unwrap();
    assert!(etcd.get("expiring").await.unwrap().is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    while etcd.get("expiring").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "leased key outlived its lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(etcd.keep_alive(lease).await.unwrap() <= 0);
}

#[tokio::test]
async fn get_prefix_pages_through_many_keys_at_one_revision() {
    let (_cluster, etcd) = start(1).await;
    let keys: Vec<String> = (0..2500).map(|i| format!("many/{i:05}")).collect();
    for chunk in keys.chunks(128) {
        let ops = chunk
            .iter()
            .map(|key| TxnOp::Put {
                key: key.clone(),
                value: key.as_bytes().to_vec(),
                lease: None,
            })
            .collect();
        assert!(etcd.txn(vec![], ops).await.unwrap());
    }
    // Neighbours of the prefix stay out.
    etcd.put("many", b"x".to_vec(), None).await.unwrap();
    etcd.put("many0", b"x".to_vec(), None).await.unwrap();

    let (kvs, revision) = etcd.get_prefix_paged("many/", 700).await.unwrap();
    let listed: Vec<String> = kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(listed, keys);
    assert!(kvs.iter().all(|kv| kv.value == kv.key.as_bytes()));
    assert!(revision >= kvs.iter().map(|kv| kv.mod_revision).max().unwrap());

    let (all, _) = etcd.get_prefix("many/").await.unwrap();
    assert_eq!(all, kvs);
}

/// Kills the leader or a follower of a 3-member cluster, the member the client prefers,
/// then runs 200 puts and gets; returns the slowest put+get.
async fn survive_a_killed_member(kill_leader: bool) -> Duration {
    let mut cluster = EtcdCluster::start(3).await.expect("start etcd");
    let leader = cluster.leader().await.expect("leader");
    let victim = if kill_leader {
        leader
    } else {
        (leader + 1) % 3
    };
    // The client prefers the first endpoint: the one about to die.
    let mut endpoints = cluster.endpoints();
    endpoints.swap(0, victim);
    let etcd = Etcd::connect(&endpoints, REQUEST_TIMEOUT)
        .await
        .expect("connect");
    let mut rx = etcd.watch_prefix("live/");
    signal(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(etcd.preferred_endpoint(), endpoints[0]);
    cluster.kill(victim);

    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let started = Instant::now();
        let key = format!("live/{i:03}");
        etcd.put(&key, i.to_string().into_bytes(), None)
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        let kv = etcd
            .get(&key)
            .await
            .unwrap_or_else(|e| panic!("get {i}: {e}"))
            .unwrap();
        assert_eq!(kv.value, i.to_string().into_bytes());
        slowest = slowest.max(started.elapsed());
    }
    assert_ne!(etcd.preferred_endpoint(), endpoints[0]);

    // The watch moved to a live member (the reconnect signal is long queued) and sees
    // changes again.
    while rx.try_recv().is_ok() {}
    etcd.put("live/after", b"x".to_vec(), None).await.unwrap();
    signal(&mut rx, Duration::from_secs(5)).await;

    let (kvs, _) = etcd.get_prefix("live/").await.unwrap();
    assert_eq!(kvs.len(), 201);
    slowest
}

#[tokio::test]
async fn calls_fail_over_when_a_follower_is_killed() {
    let slowest = survive_a_killed_member(false).await;
    assert!(
        slowest < Duration::from_secs(1),
        "slowest put+get took {slowest:?}"
    );
}

#[tokio::test]
async fn calls_wait_out_the_election_when_the_leader_is_killed() {
    // An election takes one to two election timeouts (1 s) on top of the failover.
    let slowest = survive_a_killed_member(true).await;
    assert!(
        slowest < REQUEST_TIMEOUT * 4 / 5,
        "slowest put+get took {slowest:?}"
    );
}

#[tokio::test]
async fn calls_give_up_as_unavailable_when_no_member_answers() {
    let mut cluster = EtcdCluster::start(1).await.expect("start etcd");
    let etcd = Etcd::connect(&cluster.endpoints(), Duration::from_secs(1))
        .await
        .expect("connect");
    cluster.kill(0);
    let started = Instant::now();
    let result = etcd.get("anything").await;
    assert!(
        matches!(
            result,
            Err(centralino_membership::kv::KvError::Unavailable(_))
        ),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        Etcd::connect(&cluster.endpoints(), Duration::from_millis(500))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn connect_succeeds_while_one_member_is_up() {
    let mut cluster = EtcdCluster::start(3).await.expect("start etcd");
    cluster.kill(0);
    cluster.kill(1);
    // The survivor has no quorum, but it answers: connecting works, reads do not.
    let etcd = Etcd::connect(&cluster.endpoints(), Duration::from_secs(2))
        .await
        .expect("connect");
    assert_eq!(etcd.preferred_endpoint(), cluster.endpoints()[2]);
    assert!(etcd.get("k").await.is_err());
}
