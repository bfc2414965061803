//! The embedded durable store of standalone mode: one redb database file in the data
//! directory. Each transaction is committed with fsync, so an acknowledged write survives a
//! `kill -9`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{Op, Store, StoreError};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// The database's page cache (redb's default is 1 GiB). Small: the file holds the record
/// too (archived transcripts), and redb keeps what it caches — measured in
/// `router/tests/limits_memory.rs`, 16 MiB left ~25 MB more resident after a flood than
/// 2 MiB did. Reads past the cache come from the kernel's page cache.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// redb-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// ENOSPC and EDQUOT on Linux (the raw codes, for kernels' errors io maps to no kind).
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Returns whether `e` says the disk (or the user's quota) is full.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::FileTooLarge
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Maps a redb error: a full disk or quota becomes [`StoreError::Full`]
/// (RESOURCE_EXHAUSTED), anything else [`StoreError::Backend`].
fn storage(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if is_full(&io) => StoreError::Full(io.to_string()),
        redb::Error::ValueTooLarge(bytes) => StoreError::Full(format!(
            "a value of {bytes} bytes is larger than redb takes"
        )),
        other => StoreError::Backend(other.to_string()),
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database `centralino.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        // A bounded page cache: the file grows with the archive (the record's tables live
        // in it too), the node's memory must not.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("centralino.redb"))
            .map_err(backend)?;
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(KV).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Returns the database (the embedded record keeps its `record_*` tables in it, see
    /// [`Self::apply_with`]).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// Applies `ops` and runs `also` in the same write transaction: one durable commit, or
    /// nothing when either fails (standalone retires a closed conversation this way: its
    /// archive row and the removal of its live keys together).
    pub async fn apply_with<T: Send + 'static>(
        &self,
        ops: Vec<Op>,
        also: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(backend)?;
            Self::write_ops(&tx, ops)?;
            let out = also(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(backend)?
    }

    fn apply_blocking(db: &Database, ops: Vec<Op>) -> Result<(), StoreError> {
        let tx = db.begin_write().map_err(storage)?;
        Self::write_ops(&tx, ops)?;
        tx.commit().map_err(storage)
    }

    fn write_ops(tx: &WriteTransaction, ops: Vec<Op>) -> Result<(), StoreError> {
        {
            let mut table = tx.open_table(KV).map_err(storage)?;
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        table.insert(k.as_str(), v.as_slice()).map_err(storage)?;
                    }
                    Op::Delete(k) => {
                        table.remove(k.as_str()).map_err(storage)?;
                    }
                    Op::DeletePrefix(p) => {
                        let keys: Vec<String> = table
                            .range(p.as_str()..)
                            .map_err(storage)?
                            .map_while(|item| {
                                let (k, _) = item.ok()?;
                                let k = k.value().to_string();
                                k.starts_with(&p).then_some(k)
                            })
                            .collect();
                        for k in keys {
                            table.remove(k.as_str()).map_err(storage)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || Self::apply_blocking(&db, ops))
            .await
            .map_err(backend)?
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db.clone();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KV).map_err(backend)?;
            Ok(table
                .get(key.as_str())
                .map_err(backend)?
                .map(|v| v.value().to_vec()))
        })
        .await
        .map_err(backend)?
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let db = self.db.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(KV).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.range(prefix.as_str()..).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let k = k.value();
                if !k.starts_with(&prefix) {
                    break;
                }
                out.push((k.to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
        .map_err(backend)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store
                .apply(vec![
                    Op::Put("conv/a".into(), b"1".to_vec()),
                    Op::Put("conv/b".into(), b"2".to_vec()),
                    Op::Put("msg/a/1".into(), b"x".to_vec()),
                    Op::Put("msg/a/2".into(), b"y".to_vec()),
                    Op::Put("msg/b/1".into(), b"z".to_vec()),
                ])
                .await
                .unwrap();
            store
                .apply(vec![
                    Op::Delete("conv/b".into()),
                    Op::DeletePrefix("msg/a/".into()),
                ])
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get("conv/a").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get("conv/b").await.unwrap(), None);
        let msgs = store.scan("msg/").await.unwrap();
        assert_eq!(msgs, vec![("msg/b/1".to_string(), b"z".to_vec())]);
    }

    #[test]
    fn a_full_disk_is_store_full_and_resource_exhausted() {
        for io in [
            std::io::Error::from_raw_os_error(ENOSPC),
            std::io::Error::from_raw_os_error(EDQUOT),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ] {
            let e = storage(redb::StorageError::Io(io));
            assert!(matches!(e, StoreError::Full(_)), "{e:?}");
            assert_eq!(
                tonic::Status::from(e).code(),
                tonic::Code::ResourceExhausted
            );
        }
        let other = storage(redb::StorageError::Io(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        )));
        assert!(matches!(other, StoreError::Backend(_)), "{other:?}");
        assert_eq!(tonic::Status::from(other).code(), tonic::Code::Unavailable);
    }
}
