//! What every [`Kv`] must do alike, as checks run against etcd (`tests/etcd.rs`) and against
//! the in-memory twin (its unit tests): a twin that passes them fences, claims and expires
//! as etcd does. Each check panics with the deviation it found.

use std::time::Duration;

use super::{Compare, Kv, TxnOp, MAX_TXN_OPS};

/// How long a watch may take to signal a change.
const SIGNAL: Duration = Duration::from_secs(5);
/// How long a watch is given to signal wrongly.
const QUIET: Duration = Duration::from_millis(300);

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        lease: None,
    }
}

async fn revision(kv: &dyn Kv) -> i64 {
    kv.get_prefix("contract-nothing/")
        .await
        .map(|(_, revision)| revision)
        .unwrap_or_else(|e| panic!("read the revision: {e}"))
}

async fn signal(rx: &mut tokio::sync::mpsc::Receiver<()>, what: &str) {
    let got = tokio::time::timeout(SIGNAL, rx.recv()).await;
    assert!(matches!(got, Ok(Some(()))), "no watch signal for {what}");
}

async fn quiet(rx: &mut tokio::sync::mpsc::Receiver<()>, what: &str) {
    let got = tokio::time::timeout(QUIET, rx.recv()).await;
    assert!(got.is_err(), "a watch signalled for {what}");
}

/// Runs every check, each under its own key prefix.
pub async fn check(kv: &dyn Kv) {
    create_if_absent_and_guarded_deletes(kv).await;
    compares_and_revisions(kv).await;
    refused_transactions_change_nothing(kv).await;
    leases_own_their_keys(kv).await;
    watches_signal_changes_under_their_prefix(kv).await;
}

/// `create_if_absent` creates once and then returns the existing pair; `delete_if` deletes
/// only with the create revision, and a re-created key has a new one (the fencing token).
pub async fn create_if_absent_and_guarded_deletes(kv: &dyn Kv) {
    let key = "contract-claims/1";
    let created = kv
        .create_if_absent(key, b"first".to_vec(), None)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"))
        .unwrap_or_else(|existing| panic!("{key} was absent, found {existing:?}"));
    let stored = kv.get(key).await.unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(stored.as_ref(), Some(&created), "created pair as stored");
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(created.create_revision, revision(kv).await);

    let existing = kv
        .create_if_absent(key, b"second".to_vec(), None)
        .await
        .unwrap_or_else(|e| panic!("create again: {e}"));
    assert_eq!(
        existing,
        Err(created.clone()),
        "the existing pair, unchanged"
    );

    let token = created.create_revision;
    assert!(!kv.delete_if(key, token + 1).await.unwrap_or(true));
    assert!(
        kv.get(key).await.ok().flatten().is_some(),
        "wrong token deleted"
    );
    assert!(kv.delete_if(key, token).await.unwrap_or(false));
    assert_eq!(kv.get(key).await.ok().flatten(), None);
    assert!(!kv.delete_if(key, token).await.unwrap_or(true));

    let again = kv
        .create_if_absent(key, b"third".to_vec(), None)
        .await
        .ok()
        .and_then(Result::ok);
    let again = again.unwrap_or_else(|| panic!("re-create {key}"));
    assert!(
        again.create_revision > token,
        "a re-created key has a new token"
    );
}

/// A transaction applies only when its compares hold; each transaction that changes
/// something takes one revision, updates keep the create revision.
pub async fn compares_and_revisions(kv: &dyn Kv) {
    let absent = Compare::Absent {
        key: "contract-t/a".into(),
    };
    let before = revision(kv).await;
    let applied = kv
        .txn(
            vec![absent.clone()],
            vec![put("contract-t/a", "1"), put("contract-t/b", "1")],
        )
        .await;
    assert!(matches!(applied, Ok(true)), "{applied:?}");
    assert_eq!(
        revision(kv).await,
        before + 1,
        "one revision per transaction"
    );
    let a = kv.get("contract-t/a").await.ok().flatten();
    let a = a.unwrap_or_else(|| panic!("contract-t/a written"));
    assert_eq!(a.create_revision, before + 1);

    let refused = kv.txn(vec![absent], vec![put("contract-t/c", "1")]).await;
    assert!(matches!(refused, Ok(false)), "{refused:?}");
    assert_eq!(kv.get("contract-t/c").await.ok().flatten(), None);
    assert_eq!(
        revision(kv).await,
        before + 1,
        "a failed compare takes no revision"
    );

    let held = Compare::CreateRevision {
        key: "contract-t/a".into(),
        revision: a.create_revision,
    };
    let updated = kv
        .txn(vec![held.clone()], vec![put("contract-t/a", "2")])
        .await;
    assert!(matches!(updated, Ok(true)), "{updated:?}");
    let a2 = kv.get("contract-t/a").await.ok().flatten();
    let a2 = a2.unwrap_or_else(|| panic!("contract-t/a still there"));
    assert_eq!(a2.value, b"2");
    assert_eq!(
        a2.create_revision, a.create_revision,
        "an update keeps the token"
    );
    assert_eq!(a2.mod_revision, before + 2);

    let cleared = kv
        .txn(
            vec![held],
            vec![TxnOp::DeletePrefix {
                prefix: "contract-t/".into(),
            }],
        )
        .await;
    assert!(matches!(cleared, Ok(true)), "{cleared:?}");
    let left = kv.get_prefix("contract-t/").await.map(|(kvs, _)| kvs.len());
    assert_eq!(left.ok(), Some(0));
    // Deleting nothing changes nothing.
    let before = revision(kv).await;
    let nothing = kv
        .txn(
            vec![],
            vec![TxnOp::Delete {
                key: "contract-t/a".into(),
            }],
        )
        .await;
    assert!(matches!(nothing, Ok(true)), "{nothing:?}");
    assert_eq!(
        revision(kv).await,
        before,
        "deleting nothing takes no revision"
    );
}

/// etcd refuses, as an error and without applying anything, a transaction that puts a key
/// twice, puts a key it also deletes, or has more than [`MAX_TXN_OPS`] ops.
pub async fn refused_transactions_change_nothing(kv: &dyn Kv) {
    let before = revision(kv).await;
    let twice = kv
        .txn(
            vec![],
            vec![put("contract-r/a", "1"), put("contract-r/a", "2")],
        )
        .await;
    assert!(twice.is_err(), "a key put twice: {twice:?}");
    let put_and_deleted = kv
        .txn(
            vec![],
            vec![
                TxnOp::DeletePrefix {
                    prefix: "contract-r/".into(),
                },
                put("contract-r/b", "1"),
            ],
        )
        .await;
    assert!(
        put_and_deleted.is_err(),
        "put under a deleted prefix: {put_and_deleted:?}"
    );
    let too_many: Vec<TxnOp> = (0..=MAX_TXN_OPS)
        .map(|i| put(&format!("contract-r/{i:04}"), "1"))
        .collect();
    let refused = kv.txn(vec![], too_many).await;
    assert!(refused.is_err(), "{} ops: {refused:?}", MAX_TXN_OPS + 1);
    let most: Vec<TxnOp> = (0..MAX_TXN_OPS)
        .map(|i| put(&format!("contract-r/{i:04}"), "1"))
        .collect();
    assert_eq!(
        revision(kv).await,
        before,
        "a refused transaction took a revision"
    );
    let accepted = kv.txn(vec![], most).await;
    assert!(
        matches!(accepted, Ok(true)),
        "{MAX_TXN_OPS} ops: {accepted:?}"
    );
    let written = kv.get_prefix("contract-r/").await.map(|(kvs, _)| kvs.len());
    assert_eq!(written.ok(), Some(MAX_TXN_OPS));
}

/// Keys put under a lease report it and go when it is revoked; a gone lease renews to 0
/// and cannot take new keys.
pub async fn leases_own_their_keys(kv: &dyn Kv) {
    let lease = kv.grant(30).await.unwrap_or_else(|e| panic!("grant: {e}"));
    let ttl = kv.keep_alive(lease).await.unwrap_or(0);
    assert!(ttl > 0 && ttl <= 30, "ttl {ttl}");
    let other = kv.grant(30).await.unwrap_or_else(|e| panic!("grant: {e}"));
    assert_ne!(lease, other);
    let put_leased = kv.put("contract-l/a", b"1".to_vec(), Some(lease)).await;
    assert!(put_leased.is_ok(), "{put_leased:?}");
    let claimed = kv
        .create_if_absent("contract-l/claim", b"1".to_vec(), Some(lease))
        .await;
    assert!(
        matches!(&claimed, Ok(Ok(c)) if c.lease == lease),
        "{claimed:?}"
    );
    let unleased = kv.put("contract-l/b", b"1".to_vec(), Some(other)).await;
    assert!(unleased.is_ok(), "{unleased:?}");
    // Put again without a lease: no longer the lease's.
    let detached = kv.put("contract-l/b", b"2".to_vec(), None).await;
    assert!(detached.is_ok(), "{detached:?}");
    let b = kv.get("contract-l/b").await.ok().flatten();
    assert_eq!(b.map(|b| b.lease), Some(0));

    assert!(kv.revoke(lease).await.is_ok());
    assert_eq!(kv.get("contract-l/a").await.ok().flatten(), None);
    assert_eq!(kv.get("contract-l/claim").await.ok().flatten(), None);
    assert!(kv.keep_alive(lease).await.unwrap_or(1) <= 0);
    assert!(
        kv.revoke(lease).await.is_ok(),
        "revoking a gone lease is fine"
    );
    let late = kv.put("contract-l/c", b"1".to_vec(), Some(lease)).await;
    assert!(late.is_err(), "a put under a gone lease: {late:?}");
    let late_txn = kv
        .txn(
            vec![],
            vec![TxnOp::Put {
                key: "contract-l/c".into(),
                value: b"1".to_vec(),
                lease: Some(lease),
            }],
        )
        .await;
    assert!(late_txn.is_err(), "a txn under a gone lease: {late_txn:?}");
    assert_eq!(kv.get("contract-l/c").await.ok().flatten(), None);

    assert!(kv.revoke(other).await.is_ok());
    let b = kv.get("contract-l/b").await.ok().flatten();
    assert!(
        b.is_some(),
        "a key moved off a lease stays when it is revoked"
    );
}

/// A watch signals once when in place, then after changes under its prefix only,
/// deletions by a revoked lease included.
pub async fn watches_signal_changes_under_their_prefix(kv: &dyn Kv) {
    let mut rx = kv.watch_prefix("contract-w/");
    signal(&mut rx, "the watch in place").await;

    assert!(kv
        .put("contract-elsewhere", b"x".to_vec(), None)
        .await
        .is_ok());
    quiet(&mut rx, "a change outside the prefix").await;

    assert!(kv.put("contract-w/a", b"1".to_vec(), None).await.is_ok());
    signal(&mut rx, "a put").await;

    let lease = kv.grant(30).await.unwrap_or_else(|e| panic!("grant: {e}"));
    assert!(kv
        .put("contract-w/b", b"1".to_vec(), Some(lease))
        .await
        .is_ok());
    signal(&mut rx, "a leased put").await;
    assert!(kv.revoke(lease).await.is_ok());
    signal(&mut rx, "a revoked lease").await;

    let cleared = kv
        .txn(
            vec![],
            vec![TxnOp::DeletePrefix {
                prefix: "contract-w/".into(),
            }],
        )
        .await;
    assert!(matches!(cleared, Ok(true)), "{cleared:?}");
    signal(&mut rx, "a deleted prefix").await;
}
