//! Crash safety under injected faults, in the manner of redb's own crash tests: the store
//! runs on a storage backend that starts failing at a random operation (a dying disk, a
//! power cut) and, at the "crash", loses what was not yet synced — writes before the
//! last full sync survive, later barrier-separated groups survive in order up to a
//! random point, and the group at that point survives only in a random subset. After
//! each crash the store must reopen, and every block whose `put` was acknowledged must
//! be there, intact. A disk that fills up gives a clear error, not a crash.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io;

/// One write or resize not yet known to be durable.
#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default)]
struct State {
    /// What a crash cannot take away.
    durable: Vec<u8>,
    /// What reads see now.
    live: Vec<u8>,
    /// Writes since the last full sync, in groups separated by write barriers.
    epochs: Vec<Vec<Op>>,
    /// Operations left before every operation fails (`None`: never).
    fuse: Option<u64>,
    /// Most bytes the "disk" holds; growing past it fails as a full disk.
    capacity: Option<u64>,
}

/// A storage backend that fails on cue and forgets unsynced writes on a crash.
#[derive(Debug, Clone)]
struct Faulty(Arc<Mutex<State>>);

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(offset, data) => {
            let end = *offset as usize + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*offset as usize..end].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(*len as usize, 0),
    }
}

impl Faulty {
    fn new(image: Vec<u8>, fuse: Option<u64>, capacity: Option<u64>) -> Faulty {
        Faulty(Arc::new(Mutex::new(State {
            durable: image.clone(),
            live: image,
            epochs: vec![Vec::new()],
            fuse,
            capacity,
        })))
    }

    /// Counts one operation; fails once the fuse has burnt down.
    fn tick(s: &mut State) -> io::Result<()> {
        match &mut s.fuse {
            Some(0) => Err(io::Error::other("injected fault")),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn record(&self, op: Op) -> io::Result<()> {
        let mut s = self.0.lock().expect("backend lock");
        Faulty::tick(&mut s)?;
        let grows_to = match &op {
            Op::Write(o, d) => o + d.len() as u64,
            Op::SetLen(l) => *l,
        };
        if s.capacity.is_some_and(|c| grows_to > c) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        apply(&mut s.live, &op);
        s.epochs.last_mut().expect("an epoch").push(op);
        Ok(())
    }

    /// The image a crash leaves: see the module docs.
    fn crash(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let s = self.0.lock().expect("backend lock");
        let mut image = s.durable.clone();
        let cut = rng.gen_range(0..=s.epochs.len());
        for (i, epoch) in s.epochs.iter().enumerate() {
            if i < cut {
                epoch.iter().for_each(|op| apply(&mut image, op));
            } else if i == cut {
                for op in epoch {
                    if rng.gen_bool(0.5) {
                        apply(&mut image, op);
                    }
                }
            }
        }
        image
    }
}

impl redb::StorageBackend for Faulty {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().expect("backend lock").live.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.0.lock().expect("backend lock");
        let end = offset as usize + len;
        s.live
            .get(offset as usize..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.record(Op::SetLen(len))
    }

    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        let mut s = self.0.lock().expect("backend lock");
        Faulty::tick(&mut s)?;
        if eventual {
            // A barrier: what came before persists before what comes after.
            s.epochs.push(Vec::new());
        } else {
            s.durable = s.live.clone();
            s.epochs = vec![Vec::new()];
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.record(Op::Write(offset, data.to_vec()))
    }
}

fn block(round: u64, i: u64) -> (RoutingKey, Block) {
    let mut payload = vec![0u8; 64];
    payload[..8].copy_from_slice(&round.to_be_bytes());
    payload[8..16].copy_from_slice(&i.to_be_bytes());
    let (b, keys) = veil_proto::block::encode(&payload).expect("encode");
    (keys.routing, b)
}

/// Opens a store on an index image and a slot-file image.
fn open(index: &Faulty, blocks: &Faulty, cache_bytes: u64) -> Result<Store, StoreError> {
    Store::open_with_backends(index.clone(), blocks.clone(), 1 << 30, cache_bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_blocks_survive_faults_and_lost_unsynced_writes() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let cache = 8 * BLOCK_LEN as u64;
    // Faults strike an existing database: one cut short while redb first creates the
    // file can leave a header it refuses, with nothing acknowledged in it yet.
    let created = Faulty::new(Vec::new(), None, None);
    let slots = Faulty::new(Vec::new(), None, None);
    open(&created, &slots, cache).expect("creates").close();
    let live = |f: &Faulty| f.0.lock().expect("backend lock").live.clone();
    let (mut image, mut slot_image) = (live(&created), live(&slots));
    let mut acked: HashMap<RoutingKey, Block> = HashMap::new();
    let (mut failed_puts, mut faults_before_open) = (0, 0);
    for round in 0..100u64 {
        // Mostly mid-run, sometimes while the store opens; in the index, in the slots
        // or in both.
        let mut fuse = || {
            if rng.gen_bool(0.2) {
                rng.gen_range(0..8)
            } else {
                rng.gen_range(0..400)
            }
        };
        let (f1, f2) = (fuse(), fuse());
        let (index_fuse, slot_fuse) = match round % 3 {
            0 => (Some(f1), None),
            1 => (None, Some(f2)),
            _ => (Some(f1), Some(f2)),
        };
        let backend = Faulty::new(image.clone(), index_fuse, None);
        let slot_backend = Faulty::new(slot_image.clone(), slot_fuse, None);
        match open(&backend, &slot_backend, cache) {
            Ok(store) => {
                // Long-term puts (acknowledged once durable) and cache writes, together.
                let mut puts = Vec::new();
                for i in 0..12 {
                    let (key, b) = block(round, i);
                    let s = store.clone();
                    puts.push(tokio::spawn(async move {
                        s.put(key, b.clone(), Placement::Store)
                            .await
                            .ok()
                            .map(|()| (key, b))
                    }));
                    let (ck, cb) = block(round, 1_000 + i);
                    store.put_verified_nowait(ck, cb, Placement::Cache);
                }
                for p in puts {
                    match p.await.expect("put task") {
                        Some((key, b)) => {
                            acked.insert(key, b);
                        }
                        None => failed_puts += 1,
                    }
                }
                store.close();
            }
            Err(_) => faults_before_open += 1,
        }
        // The crash, then a clean reopen: everything acknowledged is there, intact.
        image = backend.crash(&mut rng);
        slot_image = slot_backend.crash(&mut rng);
        let clean = Faulty::new(image.clone(), None, None);
        let clean_slots = Faulty::new(slot_image.clone(), None, None);
        let store = open(&clean, &clean_slots, cache)
            .unwrap_or_else(|e| panic!("round {round}: the store does not reopen: {e}"));
        for (key, b) in &acked {
            match store.get(key) {
                Ok(Some((got, Placement::Store))) => assert_eq!(&got, b, "round {round}"),
                other => panic!("round {round}: acknowledged block lost: {other:?}"),
            }
        }
        // Nothing is served that is not what was asked for.
        for i in 0..12 {
            let (ck, cb) = block(round, 1_000 + i);
            if let Some((got, _)) = store.get(&ck).expect("reads") {
                assert_eq!(got, cb, "round {round}");
            }
        }
        store.close();
        image = live(&clean);
        slot_image = live(&clean_slots);
    }
    println!(
        "{} acknowledged blocks intact after 100 crashes; {failed_puts} puts failed, \
         {faults_before_open} opens failed",
        acked.len()
    );
    // The faults really struck: some puts failed and some opens did.
    assert!(failed_puts > 0 && faults_before_open > 0);
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_what_was_acknowledged_stays() {
    // Room for a few dozen blocks.
    let index = Faulty::new(Vec::new(), None, None);
    let slots = Faulty::new(Vec::new(), None, Some(2 << 20));
    let store = open(&index, &slots, 1 << 30).expect("opens");
    let mut acked = Vec::new();
    let mut error = None;
    for i in 0..200 {
        let (key, b) = block(1, i);
        match store.put(key, b.clone(), Placement::Store).await {
            Ok(()) => acked.push((key, b)),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("the disk never filled");
    assert!(
        matches!(error, StoreError::Full),
        "not a clear error: {error:?}"
    );
    assert!(error.to_string().contains("disk is full"), "{error}");
    assert!(!acked.is_empty());
    // Reads go on, and further writes fail the same way instead of crashing the node.
    for (key, b) in &acked {
        assert_eq!(&store.get(key).unwrap().unwrap().0, b);
    }
    let (key, b) = block(2, 0);
    assert!(matches!(
        store.put(key, b, Placement::Store).await,
        Err(StoreError::Full)
    ));
    store.close();
    // Reopened with more room: everything acknowledged is there.
    let durable = |f: &Faulty| Faulty::new(f.0.lock().unwrap().durable.clone(), None, None);
    let store = open(&durable(&index), &durable(&slots), 1 << 30).expect("reopens");
    for (key, b) in &acked {
        assert_eq!(&store.get(key).unwrap().unwrap().0, b);
    }
    store.close();
}

/// When the disk is full, cache blocks give way: their slots take what users asked to
/// keep, without the file growing.
#[tokio::test]
async fn a_full_disk_drops_cache_blocks_to_keep_stored_ones() {
    let index = Faulty::new(Vec::new(), None, None);
    let slots = Faulty::new(Vec::new(), None, Some(40 * BLOCK_LEN as u64));
    let store = open(&index, &slots, 1 << 30).expect("opens");
    for i in 0..40 {
        let (key, b) = block(3, i);
        store
            .put(key, b, Placement::Cache)
            .await
            .expect("room for 40");
    }
    let (key, b) = block(4, 0);
    assert!(matches!(
        store.put(key, b.clone(), Placement::Store).await,
        Err(StoreError::Full)
    ));
    // The failure dropped the oldest cache blocks; the retry takes one of their slots.
    store
        .put(key, b.clone(), Placement::Store)
        .await
        .expect("a freed slot");
    assert_eq!(store.get(&key).unwrap(), Some((b, Placement::Store)));
    assert!(slots.0.lock().unwrap().live.len() <= 40 * BLOCK_LEN);
    store.close();
}
