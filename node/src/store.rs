//! The datastore: a long-term store and an LRU cache of blocks in one redb database
//! (`store.redb` in the data directory), each within a byte bound from the config.
//!
//! - Every block is verified against its routing key before it is written.
//! - Writes go through one writer thread that gathers whatever is queued, commits it in
//!   one durable transaction and only then acknowledges each write: a block whose
//!   [`Store::put`] returned `Ok` survives a crash or a kill, and concurrent inserts
//!   share one fsync (group commit) instead of paying one each.
//! - Reads use redb's concurrent read transactions and never wait for the writer.
//! - Recency is kept in memory (a block read or written becomes the newest); on start
//!   the order is rebuilt from the tables. When a bound is exceeded the oldest blocks of
//!   that table are deleted in the same transaction. A block put into the store that was
//!   cached moves out of the cache, so no block is counted twice.

use redb::{Database, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
pub use veil_proto::router::Placement;
use veil_proto::{Block, RoutingKey, BLOCK_LEN};

/// File name of the database in the data directory.
pub const STORE_FILE: &str = "store.redb";

const STORE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("store");
const CACHE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("cache");

/// Most writes one transaction gathers.
const MAX_BATCH: usize = 512;

/// Most background writes (blocks passing through, nobody waiting) queued at once. Peers
/// can hand us verified blocks faster than a disk commits them; past this bound such a
/// block is not kept (a cache miss later) rather than held in memory. 32 MiB.
const MAX_BACKGROUND: usize = 1024;

/// What can go wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed. (Shared: one failed group commit answers every write in it.)
    #[error("database: {0}")]
    Db(#[source] std::sync::Arc<redb::Error>),
    /// A file or thread of the store could not be made.
    #[error("store: {0}")]
    Io(#[source] std::sync::Arc<std::io::Error>),
    /// A stored value is not a block (the database holds what it should not).
    #[error("corrupt store: {0}")]
    Corrupt(&'static str),
    /// The block does not match the routing key it was stored under.
    #[error("block does not match its routing key")]
    Mismatch,
    /// The table's bound is smaller than one block.
    #[error("no room: the {0:?} bound is smaller than one block")]
    NoRoom(Placement),
    /// The store has been closed.
    #[error("store closed")]
    Closed,
    /// Too many background writes are queued; this one was not kept.
    #[error("too many writes queued")]
    Busy,
    /// The disk holding the store is full: nothing more can be written until room is
    /// made (reads go on).
    #[error("the node's disk is full: no more blocks can be stored until there is room")]
    Full,
    /// Another process holds the store open.
    #[error("another veild is already running on {0} (stop it, or use another --data-dir)")]
    InUse(std::path::PathBuf),
}

impl StoreError {
    /// An I/O error of the store's own files or threads.
    pub fn io(e: std::io::Error) -> StoreError {
        StoreError::Io(std::sync::Arc::new(e))
    }
}

fn dberr<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Full,
        e => StoreError::Db(std::sync::Arc::new(e)),
    }
}

/// Bytes used and allowed, per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Bytes of blocks in the long-term store.
    pub store_bytes: u64,
    /// The store's bound.
    pub store_max: u64,
    /// Blocks in the long-term store.
    pub store_blocks: u64,
    /// Bytes of blocks in the cache.
    pub cache_bytes: u64,
    /// The cache's bound.
    pub cache_max: u64,
    /// Blocks in the cache.
    pub cache_blocks: u64,
}

/// Recency order of one table.
#[derive(Debug, Default)]
struct Lru {
    next: u64,
    by_key: HashMap<RoutingKey, u64>,
    order: BTreeMap<u64, RoutingKey>,
    max_blocks: u64,
    max_bytes: u64,
}

impl Lru {
    fn new(max_bytes: u64) -> Lru {
        Lru {
            max_blocks: max_bytes / BLOCK_LEN as u64,
            max_bytes,
            ..Lru::default()
        }
    }

    fn touch(&mut self, key: RoutingKey) {
        self.next += 1;
        if let Some(old) = self.by_key.insert(key, self.next) {
            self.order.remove(&old);
        }
        self.order.insert(self.next, key);
    }

    fn contains(&self, key: &RoutingKey) -> bool {
        self.by_key.contains_key(key)
    }

    fn remove(&mut self, key: &RoutingKey) -> bool {
        match self.by_key.remove(key) {
            Some(seq) => {
                self.order.remove(&seq);
                true
            }
            None => false,
        }
    }

    /// Removes and returns the oldest entries beyond the bound.
    fn overflow(&mut self) -> Vec<RoutingKey> {
        let mut out = Vec::new();
        while self.by_key.len() as u64 > self.max_blocks {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            self.by_key.remove(&key);
            out.push(key);
        }
        out
    }

    fn len(&self) -> u64 {
        self.by_key.len() as u64
    }
}

#[derive(Debug)]
struct Index {
    store: Lru,
    cache: Lru,
}

struct WriteOp {
    key: RoutingKey,
    block: Block,
    placement: Placement,
    /// Set by [`Store::queue`], which verifies every block once, before it is visible.
    verified: bool,
    ack: Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
}

/// Opens the database (again, after an I/O error: redb refuses further use then).
type Opener = Box<dyn Fn() -> Result<Database, StoreError> + Send + Sync>;

/// Rebuilds `index` from the tables after a failed write (read-only: the disk may be
/// full).
fn reload_index(db: &Database, index: &mut Index) -> Result<(), StoreError> {
    let r = db.begin_read().map_err(dberr)?;
    for (def, lru) in [(STORE, &mut index.store), (CACHE, &mut index.cache)] {
        *lru = Lru::new(lru.max_bytes);
        let t = r.open_table(def).map_err(dberr)?;
        for row in t.iter().map_err(dberr)? {
            let (k, _) = row.map_err(dberr)?;
            lru.touch(RoutingKey(*k.value()));
        }
    }
    Ok(())
}

/// Cache blocks dropped at once to make room when the disk is full.
const EVICT_WHEN_FULL: usize = 256;

/// After a failed write: redb refuses further use of a database that saw an I/O error,
/// so close and reopen it, and rebuild the index, which may have counted blocks of the
/// batch that was not committed. On a full disk, also drop the oldest cache blocks, so
/// blocks passing through give way to what users asked to keep.
fn recover(inner: &Inner, full: bool) {
    let mut slot = inner.db.write().expect("store lock");
    if slot.take().is_none() {
        return; // closed meanwhile
    }
    let db = match (inner.open)() {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "the store could not be reopened after a write error");
            return;
        }
    };
    let mut idx = inner.index.lock().expect("store lock");
    if let Err(e) = reload_index(&db, &mut idx) {
        tracing::error!(error = %e, "the store's index could not be rebuilt");
        return;
    }
    if full {
        let oldest: Vec<RoutingKey> = idx
            .cache
            .order
            .values()
            .take(EVICT_WHEN_FULL)
            .copied()
            .collect();
        let evicted = (|| -> Result<(), StoreError> {
            let w = db.begin_write().map_err(dberr)?;
            {
                let mut t = w.open_table(CACHE).map_err(dberr)?;
                for k in &oldest {
                    t.remove(&k.0).map_err(dberr)?;
                }
            }
            w.commit().map_err(dberr)
        })();
        match evicted {
            Ok(()) => oldest.iter().for_each(|k| {
                idx.cache.remove(k);
            }),
            Err(e) => {
                // Even deleting needs a page or two: reopen once more and carry on full.
                tracing::warn!(error = %e, "could not drop cache blocks on a full disk");
                drop(db);
                match (inner.open)() {
                    Ok(db) => {
                        let _ = reload_index(&db, &mut idx);
                        *slot = Some(db);
                    }
                    Err(e) => tracing::error!(error = %e, "the store could not be reopened"),
                }
                return;
            }
        }
        tracing::warn!(
            evicted = oldest.len(),
            "disk full: dropped the oldest cache blocks"
        );
    }
    *slot = Some(db);
}

/// Fills `index` from the tables, trimming tables over their bound.
fn load_index(db: &Database, index: &mut Index) -> Result<(), StoreError> {
    let w = db.begin_write().map_err(dberr)?;
    for (def, lru) in [(STORE, &mut index.store), (CACHE, &mut index.cache)] {
        let mut t = w.open_table(def).map_err(dberr)?;
        for row in t.iter().map_err(dberr)? {
            let (k, _) = row.map_err(dberr)?;
            lru.touch(RoutingKey(*k.value()));
        }
        // The bound may have shrunk since the last run.
        for k in lru.overflow() {
            t.remove(&k.0).map_err(dberr)?;
        }
    }
    w.commit().map_err(dberr)
}

struct Inner {
    /// `None` once closed, so the file lock is released even while handles remain.
    db: RwLock<Option<Database>>,
    open: Opener,
    index: Mutex<Index>,
    /// Blocks queued but not yet committed, so a read right after a write finds them.
    pending: Mutex<HashMap<RoutingKey, (Block, Placement, u32)>>,
    writer: Mutex<Option<std::sync::mpsc::Sender<WriteOp>>>,
    /// Queued writes without an `ack` (bounded by [`MAX_BACKGROUND`]).
    background: AtomicUsize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The node's datastore. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("usage", &self.usage())
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` with the given byte bounds.
    pub fn open(dir: &Path, store_bytes: u64, cache_bytes: u64) -> Result<Store, StoreError> {
        let path = dir.join(STORE_FILE);
        let dir = dir.to_path_buf();
        let open = move || {
            Database::create(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(dir.clone()),
                e => dberr(e),
            })
        };
        Store::with_opener(Box::new(open), store_bytes, cache_bytes)
    }

    /// Opens (or creates) the database on any redb storage backend: the fault-injection
    /// tests run the store on one that fails and loses unsynced writes.
    pub fn open_with_backend<B: redb::StorageBackend + Clone>(
        backend: B,
        store_bytes: u64,
        cache_bytes: u64,
    ) -> Result<Store, StoreError> {
        let open = move || {
            Database::builder()
                .create_with_backend(backend.clone())
                .map_err(dberr)
        };
        Store::with_opener(Box::new(open), store_bytes, cache_bytes)
    }

    fn with_opener(open: Opener, store_bytes: u64, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = open()?;
        let mut index = Index {
            store: Lru::new(store_bytes),
            cache: Lru::new(cache_bytes),
        };
        load_index(&db, &mut index)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = Arc::new(Inner {
            db: RwLock::new(Some(db)),
            open,
            index: Mutex::new(index),
            pending: Mutex::new(HashMap::new()),
            writer: Mutex::new(Some(tx)),
            background: AtomicUsize::new(0),
            thread: Mutex::new(None),
        });
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("veil-store-writer".into())
            .spawn(move || writer(&for_thread, rx))
            .map_err(StoreError::io)?;
        *inner.thread.lock().expect("store lock") = Some(thread);
        Ok(Store { inner })
    }

    /// Looks a block up, store first, then cache.
    pub fn get(&self, key: &RoutingKey) -> Result<Option<(Block, Placement)>, StoreError> {
        if let Some((b, p, _)) = self.inner.pending.lock().expect("store lock").get(key) {
            return Ok(Some((b.clone(), *p)));
        }
        let db = self.inner.db.read().expect("store lock");
        let r = db
            .as_ref()
            .ok_or(StoreError::Closed)?
            .begin_read()
            .map_err(dberr)?;
        for (def, placement) in [(STORE, Placement::Store), (CACHE, Placement::Cache)] {
            let t = r.open_table(def).map_err(dberr)?;
            if let Some(v) = t.get(&key.0).map_err(dberr)? {
                let block = Block::new(bytes::Bytes::copy_from_slice(v.value()))
                    .map_err(|_| StoreError::Corrupt("a stored block has the wrong length"))?;
                let mut idx = self.inner.index.lock().expect("store lock");
                match placement {
                    Placement::Store => idx.store.touch(*key),
                    Placement::Cache => idx.cache.touch(*key),
                }
                return Ok(Some((block, placement)));
            }
        }
        Ok(None)
    }

    /// Whether the block is held (or queued to be written), without reading it.
    pub fn contains(&self, key: &RoutingKey) -> bool {
        if self
            .inner
            .pending
            .lock()
            .expect("store lock")
            .contains_key(key)
        {
            return true;
        }
        let idx = self.inner.index.lock().expect("store lock");
        idx.store.contains(key) || idx.cache.contains(key)
    }

    /// Verifies and writes a block, and returns once it is durably committed.
    pub async fn put(
        &self,
        key: RoutingKey,
        block: Block,
        placement: Placement,
    ) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(WriteOp {
            key,
            block,
            placement,
            verified: false,
            ack: Some(tx),
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a block the router has already verified against `key` (its `Store` events
    /// carry only verified blocks), without hashing it a second time on the hot path,
    /// and without waiting for the write: these are blocks passing through, whose loss in
    /// a crash costs nothing but a cache miss. Dropped when 1,024 such writes are queued
    /// already.
    pub fn put_verified_nowait(&self, key: RoutingKey, block: Block, placement: Placement) {
        let _ = self.queue(WriteOp {
            key,
            block,
            placement,
            verified: true,
            ack: None,
        });
    }

    fn queue(&self, mut op: WriteOp) -> Result<(), StoreError> {
        if !op.verified {
            op.verified = op.block.verify(&op.key).is_ok();
        }
        if !op.verified {
            return Err(StoreError::Mismatch);
        }
        let w = self.inner.writer.lock().expect("store lock");
        let w = w.as_ref().ok_or(StoreError::Closed)?;
        // Checked and counted under the writer lock, so the bound holds.
        if op.ack.is_none() {
            if self.inner.background.load(Ordering::Relaxed) >= MAX_BACKGROUND {
                return Err(StoreError::Busy);
            }
            self.inner.background.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut pending = self.inner.pending.lock().expect("store lock");
            let e = pending
                .entry(op.key)
                .or_insert((op.block.clone(), op.placement, 0));
            if op.placement == Placement::Store {
                e.1 = Placement::Store;
            }
            e.2 += 1;
        }
        w.send(op).map_err(|_| StoreError::Closed)
    }

    /// Deletes a block from the store and the cache, durably (an operator's choice about
    /// their own disk: the block stays wherever else it is). Blocks; call it off the
    /// async runtime. Returns whether the block was held.
    pub fn remove(&self, key: &RoutingKey) -> Result<bool, StoreError> {
        let db = self.inner.db.read().expect("store lock");
        let w = db
            .as_ref()
            .ok_or(StoreError::Closed)?
            .begin_write()
            .map_err(dberr)?;
        let mut found = false;
        {
            let mut idx = self.inner.index.lock().expect("store lock");
            for def in [STORE, CACHE] {
                let mut t = w.open_table(def).map_err(dberr)?;
                found |= t.remove(&key.0).map_err(dberr)?.is_some();
            }
            idx.store.remove(key);
            idx.cache.remove(key);
        }
        w.commit().map_err(dberr)?;
        Ok(found)
    }

    /// Bytes used and allowed.
    pub fn usage(&self) -> Usage {
        let idx = self.inner.index.lock().expect("store lock");
        let b = BLOCK_LEN as u64;
        Usage {
            store_bytes: idx.store.len() * b,
            store_max: idx.store.max_bytes,
            store_blocks: idx.store.len(),
            cache_bytes: idx.cache.len() * b,
            cache_max: idx.cache.max_bytes,
            cache_blocks: idx.cache.len(),
        }
    }

    /// Stops the writer after it has committed everything queued, then closes the
    /// database. Later reads and writes fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.inner.writer.lock().expect("store lock").take();
        let thread = self.inner.thread.lock().expect("store lock").take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        // Everything queued is committed: release the database and its file lock.
        self.inner.db.write().expect("store lock").take();
    }
}

/// The writer thread: gather, commit once, acknowledge all.
fn writer(inner: &Inner, rx: std::sync::mpsc::Receiver<WriteOp>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        let committed = write_batch(inner, &batch, &mut results);
        if let Err(e @ (StoreError::Db(_) | StoreError::Full)) = &committed {
            tracing::warn!(error = %e, "store write failed; reopening the database");
            recover(inner, matches!(e, StoreError::Full));
        }
        {
            let mut pending = inner.pending.lock().expect("store lock");
            for op in &batch {
                if op.ack.is_none() {
                    inner.background.fetch_sub(1, Ordering::Relaxed);
                }
                if let Some(e) = pending.get_mut(&op.key) {
                    e.2 -= 1;
                    if e.2 == 0 {
                        pending.remove(&op.key);
                    }
                }
            }
        }
        for (op, r) in batch.into_iter().zip(results) {
            let r = match (&committed, r) {
                (Err(e), Ok(())) => Err(e.clone()),
                (_, r) => r,
            };
            if let Err(e) = &r {
                if op.ack.is_none() {
                    tracing::debug!(error = %e, "background block write failed");
                }
            }
            if let Some(ack) = op.ack {
                let _ = ack.send(r);
            }
        }
    }
}

fn write_batch(
    inner: &Inner,
    batch: &[WriteOp],
    results: &mut Vec<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    let db = inner.db.read().expect("store lock");
    let mut w = db
        .as_ref()
        .ok_or(StoreError::Closed)?
        .begin_write()
        .map_err(dberr)?;
    if batch.iter().all(|op| op.ack.is_none()) {
        // Nobody waits on these (blocks passing through): skip the fsync; the next
        // durable commit persists them too, and a crash costs only cache misses.
        w.set_durability(redb::Durability::Eventual);
    }
    {
        let mut store = w.open_table(STORE).map_err(dberr)?;
        let mut cache = w.open_table(CACHE).map_err(dberr)?;
        let mut idx = inner.index.lock().expect("store lock");
        for op in batch {
            results.push(apply(op, &mut idx, &mut store, &mut cache));
        }
    }
    w.commit().map_err(dberr)
}

fn apply(
    op: &WriteOp,
    idx: &mut Index,
    store: &mut redb::Table<&[u8; 32], &[u8]>,
    cache: &mut redb::Table<&[u8; 32], &[u8]>,
) -> Result<(), StoreError> {
    if !op.verified {
        return Err(StoreError::Mismatch);
    }
    let key = op.key;
    match op.placement {
        Placement::Store => {
            if idx.store.max_blocks == 0 {
                return Err(StoreError::NoRoom(Placement::Store));
            }
            if !idx.store.contains(&key) {
                store.insert(&key.0, op.block.as_bytes()).map_err(dberr)?;
            }
            idx.store.touch(key);
            if idx.cache.remove(&key) {
                cache.remove(&key.0).map_err(dberr)?;
            }
            for old in idx.store.overflow() {
                store.remove(&old.0).map_err(dberr)?;
            }
        }
        Placement::Cache => {
            if idx.store.contains(&key) {
                idx.store.touch(key);
                return Ok(());
            }
            if idx.cache.max_blocks == 0 {
                return Err(StoreError::NoRoom(Placement::Cache));
            }
            if !idx.cache.contains(&key) {
                cache.insert(&key.0, op.block.as_bytes()).map_err(dberr)?;
            }
            idx.cache.touch(key);
            for old in idx.cache.overflow() {
                cache.remove(&old.0).map_err(dberr)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_faults.rs"]
mod faults;

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u8) -> (RoutingKey, Block) {
        let (b, k) = veil_proto::block::encode(&[n; 100]).unwrap();
        (k.routing, b)
    }

    /// Peers can hand over blocks faster than the disk commits them: the background
    /// queue stays bounded while the writer is held up.
    #[tokio::test]
    async fn background_writes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let (k, b) = block(1);
        let held = s.inner.db.write().unwrap();
        for _ in 0..MAX_BACKGROUND + 100 {
            s.put_verified_nowait(k, b.clone(), Placement::Cache);
        }
        let queued: u32 = s.inner.pending.lock().unwrap().values().map(|e| e.2).sum();
        assert_eq!(queued as usize, MAX_BACKGROUND);
        drop(held);
        // A durable write queued behind them is acknowledged after they were written
        // (one writer, in order): then the queue is empty again.
        s.put(k, b, Placement::Store).await.unwrap();
        assert_eq!(s.inner.background.load(Ordering::Relaxed), 0);
    }
    #[tokio::test]
    async fn put_get_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 10 * BLOCK_LEN as u64, 10 * BLOCK_LEN as u64).unwrap();
        let (k, b) = block(1);
        assert!(s.get(&k).unwrap().is_none());
        s.put(k, b.clone(), Placement::Store).await.unwrap();
        assert_eq!(s.get(&k).unwrap(), Some((b.clone(), Placement::Store)));
        let (k2, b2) = block(2);
        s.put(k2, b2.clone(), Placement::Cache).await.unwrap();
        assert_eq!(s.get(&k2).unwrap().unwrap().1, Placement::Cache);
        s.close();
        drop(s);
        let s = Store::open(dir.path(), 10 * BLOCK_LEN as u64, 10 * BLOCK_LEN as u64).unwrap();
        assert_eq!(s.get(&k).unwrap(), Some((b, Placement::Store)));
        assert_eq!(s.usage().store_blocks, 1);
        assert_eq!(s.usage().cache_blocks, 1);
    }

    #[tokio::test]
    async fn refuses_mismatched_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let (_, b) = block(1);
        let (k2, _) = block(2);
        assert!(matches!(
            s.put(k2, b, Placement::Store).await,
            Err(StoreError::Mismatch)
        ));
        assert!(s.get(&k2).unwrap().is_none());
    }

    #[tokio::test]
    async fn cache_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 0, 2 * BLOCK_LEN as u64).unwrap();
        let (k1, b1) = block(1);
        let (k2, b2) = block(2);
        let (k3, b3) = block(3);
        s.put(k1, b1, Placement::Cache).await.unwrap();
        s.put(k2, b2, Placement::Cache).await.unwrap();
        // Reading k1 makes k2 the oldest.
        assert!(s.get(&k1).unwrap().is_some());
        s.put(k3, b3.clone(), Placement::Cache).await.unwrap();
        assert!(s.get(&k2).unwrap().is_none());
        assert!(s.get(&k1).unwrap().is_some());
        assert!(s.get(&k3).unwrap().is_some());
        assert_eq!(s.usage().cache_bytes, 2 * BLOCK_LEN as u64);
        assert!(matches!(
            s.put(k3, b3, Placement::Store).await,
            Err(StoreError::NoRoom(Placement::Store))
        ));
    }

    #[tokio::test]
    async fn store_takes_blocks_out_of_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let (k, b) = block(7);
        s.put(k, b.clone(), Placement::Cache).await.unwrap();
        s.put(k, b, Placement::Store).await.unwrap();
        let u = s.usage();
        assert_eq!((u.store_blocks, u.cache_blocks), (1, 0));
        assert_eq!(s.get(&k).unwrap().unwrap().1, Placement::Store);
    }
}
