//! The datastore: a long-term store and an LRU cache of blocks, each within a byte bound
//! from the config. Blocks live in fixed-size slots of one flat file (`blocks.dat` in the
//! data directory); a redb database (`store.redb`) maps each routing key to its slot.
//!
//! - Every block is verified against its routing key before it is written. Each entry
//!   keeps a fingerprint of its block (the end of its Poly1305 tag), checked on read: a
//!   slot that holds another block than its entry says (a crash between a slot's write
//!   and its entry, a slot reused while it was read) is a miss, and its entry is
//!   dropped. (Bytes that rot inside a slot are not caught here but by whoever takes the
//!   block next: every peer and every client verifies each block it receives.)
//! - Writes go through one writer thread that gathers whatever is queued, writes the
//!   blocks into their slots, syncs the slot file, commits the index in one durable
//!   transaction and only then acknowledges each write: a block whose [`Store::put`]
//!   returned `Ok` survives a crash or a kill, and concurrent inserts share one pair of
//!   fsyncs (group commit) instead of paying one each.
//! - Why slots and not blocks as redb values: a 32,788-byte value fills a 64 KiB page of
//!   redb's copy-on-write tree, so each block cost more than twice its size in writes
//!   and disk, and the writer thread came to dominate a node's CPU as the file grew
//!   (docs/node.md, Store). A slot is written once, in place, at its own size.
//! - Reads look the slot up in memory and read it without a transaction; they never
//!   wait for the writer's disk work.
//! - Recency is kept in memory (a block read or written becomes the newest); on start
//!   the order is rebuilt from the index. When a bound is exceeded the oldest blocks of
//!   that table are dropped in the same transaction and their slots reused. A block put
//!   into the store that was cached moves out of the cache (its slot with it), so no
//!   block is counted or written twice.
//! - A slot is reused as soon as its block is dropped. A crash can then leave an index
//!   entry (of a block that was being dropped anyway) pointing at another block's
//!   bytes: the fingerprint check turns that into a miss.

use redb::{Database, ReadableTable, StorageBackend, TableDefinition, TableHandle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
pub use veil_proto::router::Placement;
use veil_proto::{Block, RoutingKey, BLOCK_LEN};

/// File name of the index database in the data directory.
pub const STORE_FILE: &str = "store.redb";
/// File name of the block slots in the data directory.
pub const BLOCKS_FILE: &str = "blocks.dat";

/// Routing key → (slot, fingerprint), per table.
const STORE: TableDefinition<&[u8; 32], (u64, u64)> = TableDefinition::new("store_slots");
const CACHE: TableDefinition<&[u8; 32], (u64, u64)> = TableDefinition::new("cache_slots");
/// The tables of stores written before slots (routing key → block), moved into slots
/// when such a store is opened.
const OLD_STORE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("store");
const OLD_CACHE: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("cache");

/// A block's fingerprint, kept with its slot: the last 8 bytes of its Poly1305 tag, which
/// differ between any two blocks but by a 2^-64 chance. A read checks it, so a slot that
/// holds another block than its entry says (a crash between the two, a slot reused while
/// it was read) is a miss, at no hashing cost.
fn fingerprint(block: &[u8]) -> u64 {
    u64::from_le_bytes(block[block.len() - 8..].try_into().expect("8 bytes"))
}

/// Bytes of one slot: one block, packed without padding.
const SLOT: u64 = BLOCK_LEN as u64;

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
    /// A file or thread of the store could not be made, read or written.
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
        match e.kind() {
            std::io::ErrorKind::StorageFull => StoreError::Full,
            _ => StoreError::Io(std::sync::Arc::new(e)),
        }
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

/// Recency order of one table, with each block's slot.
#[derive(Debug, Default)]
struct Lru {
    next: u64,
    /// Key → (recency, slot, fingerprint).
    by_key: HashMap<RoutingKey, (u64, u64, u64)>,
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

    /// Makes `key` (in `slot`, with `fp`) the newest.
    fn insert(&mut self, key: RoutingKey, slot: u64, fp: u64) {
        self.next += 1;
        if let Some((old, _, _)) = self.by_key.insert(key, (self.next, slot, fp)) {
            self.order.remove(&old);
        }
        self.order.insert(self.next, key);
    }

    /// Makes `key` the newest, if held.
    fn touch(&mut self, key: RoutingKey) {
        if let Some((slot, fp)) = self.slot(&key) {
            self.insert(key, slot, fp);
        }
    }

    /// `key`'s slot and fingerprint.
    fn slot(&self, key: &RoutingKey) -> Option<(u64, u64)> {
        self.by_key.get(key).map(|&(_, slot, fp)| (slot, fp))
    }

    fn contains(&self, key: &RoutingKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// Forgets `key`; returns its slot.
    fn remove(&mut self, key: &RoutingKey) -> Option<u64> {
        let (seq, slot, _) = self.by_key.remove(key)?;
        self.order.remove(&seq);
        Some(slot)
    }

    /// Removes and returns the oldest entries beyond `n`, with their slots.
    fn keep(&mut self, n: u64) -> Vec<(RoutingKey, u64)> {
        let mut out = Vec::new();
        while self.by_key.len() as u64 > n {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, slot, _)) = self.by_key.remove(&key) {
                out.push((key, slot));
            }
        }
        out
    }

    fn len(&self) -> u64 {
        self.by_key.len() as u64
    }
}

/// Which slots of the block file are free.
#[derive(Debug, Default)]
struct Slots {
    /// Slots below `end` that hold no block; the lowest is taken first, so the file
    /// stays as short as the blocks it holds allow.
    free: BTreeSet<u64>,
    /// One past the highest slot the file has room for or a block uses.
    end: u64,
}

impl Slots {
    /// The free slots of a file of `file_len` bytes whose blocks use `used`.
    fn rebuild(file_len: u64, used: impl Iterator<Item = u64>) -> Slots {
        let used: BTreeSet<u64> = used.collect();
        let end = file_len
            .div_ceil(SLOT)
            .max(used.last().map_or(0, |&s| s + 1));
        Slots {
            free: (0..end).filter(|s| !used.contains(s)).collect(),
            end,
        }
    }

    fn take(&mut self) -> u64 {
        self.free.pop_first().unwrap_or_else(|| {
            self.end += 1;
            self.end - 1
        })
    }

    fn give_back(&mut self, slot: u64) {
        if slot < self.end {
            self.free.insert(slot);
        }
    }

    /// The file now ends at slot `end` (no block uses a slot past it).
    fn cut(&mut self, end: u64) {
        self.free.retain(|&s| s < end);
        self.end = end;
    }
}

#[derive(Debug)]
struct Index {
    store: Lru,
    cache: Lru,
    slots: Slots,
}

impl Index {
    fn new(store_bytes: u64, cache_bytes: u64) -> Index {
        Index {
            store: Lru::new(store_bytes),
            cache: Lru::new(cache_bytes),
            slots: Slots::default(),
        }
    }

    fn lru(&mut self, placement: Placement) -> &mut Lru {
        match placement {
            Placement::Store => &mut self.store,
            Placement::Cache => &mut self.cache,
        }
    }

    /// Where `key` is held, if it is: table, slot and fingerprint.
    fn find(&self, key: &RoutingKey) -> Option<(Placement, u64, u64)> {
        self.store
            .slot(key)
            .map(|(s, f)| (Placement::Store, s, f))
            .or_else(|| self.cache.slot(key).map(|(s, f)| (Placement::Cache, s, f)))
    }

    /// Refills both tables' recency and the free slots from the index tables.
    fn load<T: ReadableTable<&'static [u8; 32], (u64, u64)>>(
        &mut self,
        store: &T,
        cache: &T,
        file_len: u64,
    ) -> Result<(), StoreError> {
        for (t, lru) in [(store, &mut self.store), (cache, &mut self.cache)] {
            *lru = Lru::new(lru.max_bytes);
            for row in t.iter().map_err(dberr)? {
                let (k, v) = row.map_err(dberr)?;
                let (slot, fp) = v.value();
                lru.insert(RoutingKey(*k.value()), slot, fp);
            }
        }
        let used = self.store.by_key.values().chain(self.cache.by_key.values());
        self.slots = Slots::rebuild(file_len, used.map(|&(_, slot, _)| slot));
        Ok(())
    }
}

/// What the writer thread is asked to do.
enum Job {
    Write(WriteOp),
    /// Drop the index entry of a block whose slot did not hold it when read.
    Forget(RoutingKey, u64),
}

struct WriteOp {
    key: RoutingKey,
    block: Block,
    placement: Placement,
    /// Set by [`Store::queue`], which verifies every block once, before it is visible.
    verified: bool,
    ack: Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
}

/// Opens the index database (again, after an I/O error: redb refuses further use then).
type Opener = Box<dyn Fn() -> Result<Database, StoreError> + Send + Sync>;

/// The slot file.
type Blocks = Arc<dyn StorageBackend>;

/// Rebuilds `index` from the tables after a failed write (read-only: the disk may be
/// full).
fn reload_index(db: &Database, blocks: &Blocks, index: &mut Index) -> Result<(), StoreError> {
    let r = db.begin_read().map_err(dberr)?;
    let (store, cache) = match (r.open_table(STORE), r.open_table(CACHE)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return Err(dberr(e)),
    };
    index.load(&store, &cache, blocks.len().map_err(StoreError::io)?)
}

/// Cache blocks dropped at once to make room when the disk is full.
const EVICT_WHEN_FULL: usize = 256;

/// After a failed write: redb refuses further use of a database that saw an I/O error,
/// so close and reopen it, and rebuild the index, which may have counted blocks of the
/// batch that was not committed. On a full disk, also drop the oldest cache blocks, so
/// blocks passing through give way to what users asked to keep (their slots take the
/// next blocks without growing the file).
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
    if let Err(e) = reload_index(&db, &inner.blocks, &mut idx) {
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
            Ok(()) => {
                for k in &oldest {
                    if let Some(s) = idx.cache.remove(k) {
                        idx.slots.give_back(s);
                    }
                }
            }
            Err(e) => {
                // Even deleting needs a page or two: reopen once more and carry on full.
                tracing::warn!(error = %e, "could not drop cache blocks on a full disk");
                drop(db);
                match (inner.open)() {
                    Ok(db) => {
                        let _ = reload_index(&db, &inner.blocks, &mut idx);
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

/// Fills `index` from the tables, moving the blocks of a store written before slots
/// into slots and trimming tables over their bound, then shortens the slot file to the
/// blocks it holds where it can.
fn load_index(db: &Database, blocks: &Blocks, index: &mut Index) -> Result<(), StoreError> {
    let w = db.begin_write().map_err(dberr)?;
    let old: Vec<TableDefinition<&[u8; 32], &[u8]>> = {
        let names: Vec<String> = w
            .list_tables()
            .map_err(dberr)?
            .map(|t| t.name().to_string())
            .collect();
        [OLD_STORE, OLD_CACHE]
            .into_iter()
            .filter(|t| names.iter().any(|n| n == t.name()))
            .collect()
    };
    {
        let mut store = w.open_table(STORE).map_err(dberr)?;
        let mut cache = w.open_table(CACHE).map_err(dberr)?;
        index.load(&store, &cache, blocks.len().map_err(StoreError::io)?)?;
        let mut moved = 0u64;
        for def in &old {
            let (t, placement) = if def.name() == OLD_STORE.name() {
                (&mut store, Placement::Store)
            } else {
                (&mut cache, Placement::Cache)
            };
            moved += migrate(&w, *def, t, placement, blocks, index)?;
        }
        if moved > 0 {
            // The slots before the index that names them.
            blocks.sync_data(false).map_err(StoreError::io)?;
            tracing::info!(blocks = moved, "moved the store's blocks into slots");
        }
        // The bounds may have shrunk since the last run.
        for (t, placement) in [
            (&mut store, Placement::Store),
            (&mut cache, Placement::Cache),
        ] {
            let bound = index.lru(placement).max_blocks;
            keep_at_most(index, placement, bound, t)?;
        }
    }
    for def in old {
        w.delete_table(def).map_err(dberr)?;
    }
    w.commit().map_err(dberr)?;
    // Free slots at the end of the file go (a crash before this costs nothing).
    let end = index
        .store
        .by_key
        .values()
        .chain(index.cache.by_key.values())
        .map(|&(_, s, _)| s + 1)
        .max()
        .unwrap_or(0);
    if blocks.len().map_err(StoreError::io)? > end * SLOT {
        blocks.set_len(end * SLOT).map_err(StoreError::io)?;
        index.slots.cut(end);
    }
    Ok(())
}

/// Moves the blocks of one table of a store written before slots (routing key → block
/// in redb) into slots, in the transaction that opens the store. The caller syncs the
/// slots before that transaction commits, so a crash midway leaves the old table whole.
/// Returns the blocks moved.
fn migrate(
    w: &redb::WriteTransaction,
    from: TableDefinition<&[u8; 32], &[u8]>,
    to: &mut redb::Table<&[u8; 32], (u64, u64)>,
    placement: Placement,
    blocks: &Blocks,
    index: &mut Index,
) -> Result<u64, StoreError> {
    let from = w.open_table(from).map_err(dberr)?;
    let mut moved = 0;
    for row in from.iter().map_err(dberr)? {
        let (k, v) = row.map_err(dberr)?;
        let key = RoutingKey(*k.value());
        if v.value().len() != BLOCK_LEN || index.find(&key).is_some() {
            continue;
        }
        let slot = index.slots.take();
        blocks
            .write(slot * SLOT, v.value())
            .map_err(StoreError::io)?;
        let fp = fingerprint(v.value());
        to.insert(&key.0, (slot, fp)).map_err(dberr)?;
        index.lru(placement).insert(key, slot, fp);
        moved += 1;
    }
    Ok(moved)
}

struct Inner {
    /// `None` once closed, so the file lock is released even while handles remain.
    db: RwLock<Option<Database>>,
    open: Opener,
    blocks: Blocks,
    index: Mutex<Index>,
    /// Blocks queued but not yet committed, so a read right after a write finds them.
    pending: Mutex<HashMap<RoutingKey, (Block, Placement, u32)>>,
    writer: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
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
    /// Opens (or creates) the store in `dir` with the given byte bounds.
    pub fn open(dir: &Path, store_bytes: u64, cache_bytes: u64) -> Result<Store, StoreError> {
        let path = dir.join(STORE_FILE);
        let in_use = dir.to_path_buf();
        let open = move || {
            Database::create(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(in_use.clone()),
                e => dberr(e),
            })
        };
        // The database first: its lock says whether another node runs here.
        let db = open()?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(BLOCKS_FILE))
            .map_err(StoreError::io)?;
        Store::with_opener(
            db,
            Box::new(open),
            Arc::new(SlotFile(file)),
            store_bytes,
            cache_bytes,
        )
    }

    /// Opens (or creates) the store on any storage backends, one for the index database
    /// and one for the slot file: the fault-injection tests run the store on ones that
    /// fail and lose unsynced writes.
    pub fn open_with_backends<B: StorageBackend + Clone, S: StorageBackend>(
        index: B,
        blocks: S,
        store_bytes: u64,
        cache_bytes: u64,
    ) -> Result<Store, StoreError> {
        let open = move || {
            Database::builder()
                .create_with_backend(index.clone())
                .map_err(dberr)
        };
        let db = open()?;
        Store::with_opener(
            db,
            Box::new(open),
            Arc::new(blocks),
            store_bytes,
            cache_bytes,
        )
    }

    fn with_opener(
        db: Database,
        open: Opener,
        blocks: Blocks,
        store_bytes: u64,
        cache_bytes: u64,
    ) -> Result<Store, StoreError> {
        let mut index = Index::new(store_bytes, cache_bytes);
        load_index(&db, &blocks, &mut index)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = Arc::new(Inner {
            db: RwLock::new(Some(db)),
            open,
            blocks,
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

    /// Looks a block up, store first, then cache. A slot that does not hold the block
    /// its entry names (by fingerprint) is a miss, and the entry is dropped.
    pub fn get(&self, key: &RoutingKey) -> Result<Option<(Block, Placement)>, StoreError> {
        if let Some(found) = self.pending_copy(key) {
            return Ok(Some(found));
        }
        if self.inner.db.read().expect("store lock").is_none() {
            return Err(StoreError::Closed);
        }
        let Some((placement, slot, fp)) = self.inner.index.lock().expect("store lock").find(key)
        else {
            return Ok(None);
        };
        let read = || {
            let block = self.read_slot(slot, fp)?;
            let mut idx = self.inner.index.lock().expect("store lock");
            idx.lru(placement).touch(*key);
            Some((block, placement))
        };
        if let Some(found) = read() {
            return Ok(Some(found));
        }
        // Not what the index says: a write of this block may have been finishing as we
        // read (it is served from `pending` until its batch is done), or the block was
        // dropped and its slot reused meanwhile. Look once more before calling it lost.
        if let Some(found) = self.pending_copy(key).or_else(read) {
            return Ok(Some(found));
        }
        let mut idx = self.inner.index.lock().expect("store lock");
        if idx.find(key) == Some((placement, slot, fp)) {
            tracing::warn!(key = %key, slot, "a stored block does not match its key; dropped");
            idx.lru(placement).remove(key);
            idx.slots.give_back(slot);
            drop(idx);
            if let Some(w) = self.inner.writer.lock().expect("store lock").as_ref() {
                let _ = w.send(Job::Forget(*key, slot));
            }
        }
        Ok(None)
    }

    /// The block under `key` queued but not yet committed, if any.
    fn pending_copy(&self, key: &RoutingKey) -> Option<(Block, Placement)> {
        let pending = self.inner.pending.lock().expect("store lock");
        pending.get(key).map(|(b, p, _)| (b.clone(), *p))
    }

    /// The block in `slot`, if it has the fingerprint `fp`.
    fn read_slot(&self, slot: u64, fp: u64) -> Option<Block> {
        let bytes = self.inner.blocks.read(slot * SLOT, BLOCK_LEN).ok()?;
        Block::new(bytes::Bytes::from(bytes))
            .ok()
            .filter(|b| fingerprint(b.as_bytes()) == fp)
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
        w.send(Job::Write(op)).map_err(|_| StoreError::Closed)
    }

    /// Deletes a block from the store and the cache, durably, and overwrites its slot
    /// with zeros (an operator's choice about their own disk: the block stays wherever
    /// else it is). Blocks; call it off the async runtime. Returns whether the block was
    /// held.
    pub fn remove(&self, key: &RoutingKey) -> Result<bool, StoreError> {
        let db = self.inner.db.read().expect("store lock");
        let w = db
            .as_ref()
            .ok_or(StoreError::Closed)?
            .begin_write()
            .map_err(dberr)?;
        let (mut found, mut zeroed) = (false, false);
        {
            // The writer thread waits for this transaction: a slot given back here is
            // reused only after the entry naming it is gone.
            let mut idx = self.inner.index.lock().expect("store lock");
            for def in [STORE, CACHE] {
                let mut t = w.open_table(def).map_err(dberr)?;
                found |= t.remove(&key.0).map_err(dberr)?.is_some();
            }
            for p in [Placement::Store, Placement::Cache] {
                if let Some(slot) = idx.lru(p).remove(key) {
                    // Before the commit, while the writer cannot have taken the slot.
                    self.inner
                        .blocks
                        .write(slot * SLOT, &[0; BLOCK_LEN])
                        .map_err(StoreError::io)?;
                    idx.slots.give_back(slot);
                    zeroed = true;
                }
            }
        }
        w.commit().map_err(dberr)?;
        if zeroed {
            self.inner.blocks.sync_data(false).map_err(StoreError::io)?;
        }
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

/// The slot file on disk. (Not locked: the database's lock already keeps a second node
/// out, and is released on [`Store::close`] even while handles remain.)
#[derive(Debug)]
struct SlotFile(std::fs::File);

impl StorageBackend for SlotFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; len];
        self.0.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.0.write_all_at(data, offset)
    }
}

/// The writer thread: gather, write the slots, commit once, acknowledge all.
fn writer(inner: &Inner, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (mut batch, mut forget) = (Vec::with_capacity(jobs.len()), Vec::new());
        for job in jobs {
            match job {
                Job::Write(op) => batch.push(op),
                Job::Forget(key, slot) => forget.push((key, slot)),
            }
        }
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        let committed = write_batch(inner, &batch, &forget, &mut results);
        if let Err(e @ (StoreError::Db(_) | StoreError::Io(_) | StoreError::Full)) = &committed {
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

/// One group commit: the index entries under the index lock, then the blocks into their
/// slots, then (if anyone waits) a sync of the slots, then the index commit.
fn write_batch(
    inner: &Inner,
    batch: &[WriteOp],
    forget: &[(RoutingKey, u64)],
    results: &mut Vec<Result<(), StoreError>>,
) -> Result<(), StoreError> {
    let db = inner.db.read().expect("store lock");
    let mut w = db
        .as_ref()
        .ok_or(StoreError::Closed)?
        .begin_write()
        .map_err(dberr)?;
    let durable = batch.iter().any(|op| op.ack.is_some());
    if !durable {
        // Nobody waits on these (blocks passing through): skip the fsyncs; the next
        // durable commit persists them too, and a crash costs only cache misses.
        w.set_durability(redb::Durability::Eventual);
    }
    {
        let mut store = w.open_table(STORE).map_err(dberr)?;
        let mut cache = w.open_table(CACHE).map_err(dberr)?;
        let mut writes: Vec<(u64, &Block)> = Vec::new();
        {
            let mut idx = inner.index.lock().expect("store lock");
            for (key, slot) in forget {
                for t in [&mut store, &mut cache] {
                    if t.get(&key.0).map_err(dberr)?.map(|v| v.value().0) == Some(*slot) {
                        t.remove(&key.0).map_err(dberr)?;
                    }
                }
            }
            for op in batch {
                results.push(plan(op, &mut idx, &mut store, &mut cache, &mut writes));
            }
        }
        // Readers find these blocks in `pending` until the batch is done, so the index
        // may name their slots before the bytes are there.
        for (slot, block) in writes {
            inner
                .blocks
                .write(slot * SLOT, block.as_bytes())
                .map_err(StoreError::io)?;
        }
    }
    if durable {
        inner.blocks.sync_data(false).map_err(StoreError::io)?;
    }
    w.commit().map_err(dberr)
}

/// Applies one write to the index (in memory and in the tables) and lists the slot write
/// it needs, if any.
fn plan<'a>(
    op: &'a WriteOp,
    idx: &mut Index,
    store: &mut redb::Table<&[u8; 32], (u64, u64)>,
    cache: &mut redb::Table<&[u8; 32], (u64, u64)>,
    writes: &mut Vec<(u64, &'a Block)>,
) -> Result<(), StoreError> {
    if !op.verified {
        return Err(StoreError::Mismatch);
    }
    let key = op.key;
    let fp = fingerprint(op.block.as_bytes());
    match op.placement {
        Placement::Store => {
            if idx.store.max_blocks == 0 {
                return Err(StoreError::NoRoom(Placement::Store));
            }
            if idx.store.contains(&key) {
                idx.store.touch(key);
            } else {
                // A cached block moves with its slot; a new one takes a free slot.
                let slot = match idx.cache.remove(&key) {
                    Some(slot) => {
                        cache.remove(&key.0).map_err(dberr)?;
                        slot
                    }
                    None => {
                        // Room first, so the new block can take a dropped one's slot.
                        let room = idx.store.max_blocks - 1;
                        keep_at_most(idx, Placement::Store, room, store)?;
                        let slot = idx.slots.take();
                        writes.push((slot, &op.block));
                        slot
                    }
                };
                store.insert(&key.0, (slot, fp)).map_err(dberr)?;
                idx.store.insert(key, slot, fp);
            }
            let bound = idx.store.max_blocks;
            keep_at_most(idx, Placement::Store, bound, store)?;
        }
        Placement::Cache => {
            if idx.store.contains(&key) {
                idx.store.touch(key);
                return Ok(());
            }
            if idx.cache.max_blocks == 0 {
                return Err(StoreError::NoRoom(Placement::Cache));
            }
            if idx.cache.contains(&key) {
                idx.cache.touch(key);
            } else {
                let room = idx.cache.max_blocks - 1;
                keep_at_most(idx, Placement::Cache, room, cache)?;
                let slot = idx.slots.take();
                writes.push((slot, &op.block));
                cache.insert(&key.0, (slot, fp)).map_err(dberr)?;
                idx.cache.insert(key, slot, fp);
            }
            let bound = idx.cache.max_blocks;
            keep_at_most(idx, Placement::Cache, bound, cache)?;
        }
    }
    Ok(())
}

/// Drops the oldest blocks of `placement`'s table beyond `n`, from the index and from
/// `table`, and frees their slots.
fn keep_at_most(
    idx: &mut Index,
    placement: Placement,
    n: u64,
    table: &mut redb::Table<&[u8; 32], (u64, u64)>,
) -> Result<(), StoreError> {
    for (old, slot) in idx.lru(placement).keep(n) {
        table.remove(&old.0).map_err(dberr)?;
        idx.slots.give_back(slot);
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

    /// A slot that does not hold the block its entry names (a crash between the two, a
    /// rotting disk) is a miss, never wrong bytes, and the entry goes for good.
    #[tokio::test]
    async fn a_slot_overwritten_is_a_miss_and_its_entry_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, b1) = block(1);
        let (k2, b2) = block(2);
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        s.put(k1, b1, Placement::Store).await.unwrap();
        s.put(k2, b2.clone(), Placement::Cache).await.unwrap();
        s.close();
        drop(s);
        // Slot 0 (k1's) now holds k2's bytes.
        let path = dir.path().join(BLOCKS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 2 * BLOCK_LEN);
        bytes.copy_within(BLOCK_LEN.., 0);
        std::fs::write(&path, &bytes).unwrap();
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(s.usage().store_blocks, 1);
        assert_eq!(s.get(&k1).unwrap(), None);
        assert_eq!(s.usage().store_blocks, 0);
        assert_eq!(s.get(&k2).unwrap(), Some((b2, Placement::Cache)));
        s.close();
        drop(s);
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(
            s.usage().store_blocks,
            0,
            "the entry was forgotten on disk too"
        );
        s.close();
    }

    /// An operator's delete leaves nothing of the block in the slot file.
    #[tokio::test]
    async fn a_removed_block_is_overwritten_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        let (k1, b1) = block(1);
        let (k2, b2) = block(2);
        s.put(k1, b1.clone(), Placement::Store).await.unwrap();
        s.put(k2, b2.clone(), Placement::Cache).await.unwrap();
        let file = || std::fs::read(dir.path().join(BLOCKS_FILE)).unwrap();
        let holds = |b: &Block| file().windows(64).any(|w| w == &b.as_bytes()[..64]);
        assert!(holds(&b1) && holds(&b2));
        assert!(s.remove(&k1).unwrap());
        assert!(!holds(&b1), "the removed block's bytes are gone");
        assert!(holds(&b2));
        assert_eq!(s.get(&k1).unwrap(), None);
        assert!(!s.remove(&k1).unwrap());
        s.close();
    }

    /// Slots are reused: a cache that turns over many times keeps its file at its bound.
    #[tokio::test]
    async fn dropped_blocks_give_their_slots_to_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 0, 3 * BLOCK_LEN as u64).unwrap();
        for n in 0..20 {
            let (k, b) = block(n);
            s.put(k, b, Placement::Cache).await.unwrap();
        }
        let len = std::fs::metadata(dir.path().join(BLOCKS_FILE))
            .unwrap()
            .len();
        assert_eq!(len, 3 * BLOCK_LEN as u64);
        for n in 17..20 {
            let (k, b) = block(n);
            assert_eq!(s.get(&k).unwrap(), Some((b, Placement::Cache)));
        }
        s.close();
    }

    /// A store written before slots (blocks as redb values) opens with its blocks moved
    /// into slots, each in its table, and the old tables gone.
    #[tokio::test]
    async fn a_store_of_the_earlier_format_opens_with_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, b1) = block(1);
        let (k2, b2) = block(2);
        {
            let db = Database::create(dir.path().join(STORE_FILE)).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(OLD_STORE)
                .unwrap()
                .insert(&k1.0, b1.as_bytes())
                .unwrap();
            w.open_table(OLD_CACHE)
                .unwrap()
                .insert(&k2.0, b2.as_bytes())
                .unwrap();
            w.commit().unwrap();
        }
        let s = Store::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(s.get(&k1).unwrap(), Some((b1, Placement::Store)));
        assert_eq!(s.get(&k2).unwrap(), Some((b2, Placement::Cache)));
        s.close();
        drop(s);
        let db = Database::create(dir.path().join(STORE_FILE)).unwrap();
        let r = db.begin_read().unwrap();
        let names: Vec<String> = r
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(
            !names.iter().any(|n| n == "store" || n == "cache"),
            "{names:?}"
        );
    }
}
