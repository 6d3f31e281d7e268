//! Keeping documents alive: fetch every block of a document — the top block, every copy
//! of every index block, every data and check block — rebuild what is missing from what
//! is there, and insert again what was missing or found only on a second try.
//!
//! Blocks fade when the nodes that held them leave or evict them. A reader who finds a
//! block only late (or not at all, rebuilding it from its segment's check blocks) is the
//! first to notice; inserting those blocks again puts fresh copies on the nodes now
//! nearest their keys. Everything can be rebuilt from the document itself because CHK
//! encryption is convergent: the same payload always makes the same block under the same
//! key, so a rebuilt block is byte for byte the one that was lost, and is checked
//! against the key its parent lists before it is inserted.
//!
//! What cannot be rebuilt: the top block (nothing lists it but the URI), an index block
//! all of whose copies are gone (and with it what it lists), and a segment with fewer
//! blocks left than it has data blocks. Those are counted as `lost`.

use crate::decode::{check_index, Position, Shape};
use crate::dir::fetch_manifest;
use crate::format::{ChildRef, DocKind, IndexBlock, TopBlock, FORMAT_VERSION};
use crate::segment::{decode_missing, encode_checks};
use crate::source::{BlockRole, BlockSink, BlockSource, InsertError};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use veil_proto::{block, Block, ChkKeys, MAX_PAYLOAD};

/// Blocks fetched at once.
const FETCH_WINDOW: usize = 32;
/// Blocks inserted at once.
const INSERT_WINDOW: usize = 16;

/// What a keep-alive pass found and did, for one document or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeepaliveReport {
    /// Documents walked (a directory counts its manifest and every file).
    pub documents: u64,
    /// Blocks the documents consist of.
    pub blocks: u64,
    /// Blocks that could not be fetched (or failed verification) in two tries.
    pub missing: u64,
    /// Blocks found only on the second try.
    pub late: u64,
    /// Missing blocks rebuilt from the rest of their document.
    pub rebuilt: u64,
    /// Missing blocks that could not be rebuilt (see the module docs).
    pub lost: u64,
    /// Blocks inserted again: the rebuilt and the late ones.
    pub reinserted: u64,
}

impl KeepaliveReport {
    fn add(&mut self, o: &KeepaliveReport) {
        self.documents += o.documents;
        self.blocks += o.blocks;
        self.missing += o.missing;
        self.late += o.late;
        self.rebuilt += o.rebuilt;
        self.lost += o.lost;
        self.reinserted += o.reinserted;
    }
}

/// Why a keep-alive pass stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeepaliveError {
    /// The top block could not be fetched: nothing else can be found or rebuilt.
    #[error("the top block could not be fetched, so nothing of the document can be found")]
    TopMissing,
    /// The top block (or a manifest) is not a valid document.
    #[error("{0}")]
    Corrupt(String),
    /// Inserting a block again failed.
    #[error("inserting a block again: {0}")]
    Insert(#[from] InsertError),
}

/// A block fetched twice at most.
enum Got {
    /// Verified and decrypted; `late` if only the second try found it.
    Found {
        block: Block,
        payload: Vec<u8>,
        late: bool,
    },
    Missing,
}

async fn fetch_twice<S: BlockSource>(source: &S, keys: ChildRef) -> Got {
    for late in [false, true] {
        if let Ok(block) = source.fetch(keys.routing).await {
            if block.verify(&keys.routing).is_ok() {
                if let Ok(payload) = block.decrypt(&keys.data) {
                    return Got::Found {
                        block,
                        payload,
                        late,
                    };
                }
            }
        }
    }
    Got::Missing
}

/// Fetches `keys` (twice at most each), `FETCH_WINDOW` at a time, in order.
async fn fetch_all<S: BlockSource>(source: &S, keys: &[ChildRef]) -> Vec<Got> {
    let jobs = keys.iter().map(|&k| {
        let source = source.clone();
        async move { fetch_twice(&source, k).await }
    });
    stream::iter(jobs.collect::<Vec<_>>())
        .buffered(FETCH_WINDOW)
        .collect()
        .await
}

/// One pass over one document, gathering the blocks to insert again.
struct Pass<'a, S, F> {
    source: S,
    report: KeepaliveReport,
    /// Blocks to insert again, with their role.
    again: Vec<(Block, BlockRole)>,
    progress: &'a mut F,
}

impl<S: BlockSource, F: FnMut(&KeepaliveReport)> Pass<'_, S, F> {
    fn tick(&mut self, n: u64) {
        self.report.blocks += n;
        (self.progress)(&self.report);
    }

    /// Counts a missing block rebuilt as `payload`, if it really is the listed block.
    fn rebuilt(&mut self, payload: &[u8], listed: ChildRef, role: BlockRole) {
        match block::encode(payload) {
            Ok((b, keys)) if keys.routing == listed.routing && keys.data == listed.data => {
                self.report.rebuilt += 1;
                self.again.push((b, role));
            }
            _ => self.report.lost += 1,
        }
    }

    /// Fetches every copy of an index block, rebuilds missing copies from one that
    /// verifies, and returns it (or `None` when no copy can be had).
    async fn index(
        &mut self,
        shape: Shape,
        copies: &[ChildRef],
        level: u8,
        first: u64,
        count: u64,
    ) -> Option<IndexBlock> {
        let at = Position::Index {
            level,
            first,
            end: first + count,
            total: shape.total,
        };
        let got = fetch_all(&self.source, copies).await;
        self.tick(copies.len() as u64);
        let mut index = None;
        let mut missing = Vec::new();
        for (c, g) in got.into_iter().enumerate() {
            match g {
                Got::Found {
                    block,
                    payload,
                    late,
                } => {
                    if late {
                        self.report.late += 1;
                        self.again.push((block, BlockRole::Index));
                    }
                    if index.is_none() {
                        index = check_index(shape, &at, &payload, level, count).ok();
                    }
                }
                Got::Missing => missing.push(c),
            }
        }
        self.report.missing += missing.len() as u64;
        let Some(found) = index else {
            // Nothing to rebuild the copies from, and nothing below can be reached.
            self.report.lost += missing.len() as u64 + below(shape, level, count);
            return None;
        };
        for c in missing {
            let copy = IndexBlock {
                version: FORMAT_VERSION,
                copy: c as u8,
                ..found.clone()
            };
            self.rebuilt(&copy.to_payload(), copies[c], BlockRole::Index);
        }
        Some(found)
    }

    /// Fetches every block of a segment and rebuilds the missing ones.
    async fn segment(&mut self, shape: Shape, index: &IndexBlock, first: u64) {
        let d = index.children.len();
        let c = index.checks.len();
        let all: Vec<ChildRef> = index
            .children
            .iter()
            .chain(&index.checks)
            .copied()
            .collect();
        let got = fetch_all(&self.source, &all).await;
        self.tick(all.len() as u64);
        let mut originals = BTreeMap::new();
        let mut recovery = BTreeMap::new();
        let mut missing = Vec::new();
        for (k, g) in got.into_iter().enumerate() {
            let want = if k < d {
                shape.data_len(first + k as u64)
            } else {
                MAX_PAYLOAD
            };
            match g {
                Got::Found {
                    block,
                    mut payload,
                    late,
                } if payload.len() == want => {
                    if late {
                        self.report.late += 1;
                        self.again.push((block, BlockRole::Data));
                    }
                    payload.resize(MAX_PAYLOAD, 0);
                    if k < d {
                        originals.insert(k, payload);
                    } else {
                        recovery.insert(k - d, payload);
                    }
                }
                _ => missing.push(k),
            }
        }
        self.report.missing += missing.len() as u64;
        if missing.is_empty() {
            return;
        }
        if originals.len() + recovery.len() < d || c == 0 {
            self.report.lost += missing.len() as u64;
            return;
        }
        let Ok(restored) = decode_missing(d, c, &originals, &recovery) else {
            self.report.lost += missing.len() as u64;
            return;
        };
        originals.extend(restored);
        let data: Vec<Vec<u8>> = (0..d).filter_map(|k| originals.remove(&k)).collect();
        if data.len() != d {
            self.report.lost += missing.len() as u64;
            return;
        }
        // The check blocks are a function of the data payloads: recompute them all if
        // any is missing.
        let checks = if missing.iter().any(|&k| k >= d) {
            encode_checks(&data, c).ok()
        } else {
            None
        };
        for k in missing {
            if k < d {
                let len = shape.data_len(first + k as u64);
                self.rebuilt(&data[k][..len], index.children[k], BlockRole::Data);
            } else if let Some(checks) = &checks {
                self.rebuilt(&checks[k - d], index.checks[k - d], BlockRole::Data);
            } else {
                self.report.lost += 1;
            }
        }
    }

    /// Walks the tree under an index block of `level` listed by `copies`.
    async fn tree(
        &mut self,
        shape: Shape,
        copies: Vec<ChildRef>,
        level: u8,
        first: u64,
        count: u64,
    ) {
        // Depth-first, one index block at a time: memory stays one segment's worth.
        let mut stack = vec![(copies, level, first, count)];
        while let Some((copies, level, first, count)) = stack.pop() {
            let Some(index) = self.index(shape, &copies, level, first, count).await else {
                continue;
            };
            if level == 1 {
                self.segment(shape, &index, first).await;
                continue;
            }
            let span = shape.params.cover(level - 1);
            let groups: Vec<Vec<ChildRef>> = index
                .children
                .chunks(shape.params.copies as usize)
                .map(<[ChildRef]>::to_vec)
                .collect();
            // Pushed in reverse so the walk goes in document order.
            for (i, group) in groups.into_iter().enumerate().rev() {
                let cfirst = first + i as u64 * span;
                let ccount = span.min(count - i as u64 * span);
                stack.push((group, level - 1, cfirst, ccount));
            }
        }
    }
}

/// Blocks under an index block of `level` covering `count` data blocks (itself not
/// counted): what is lost with all its copies.
fn below(shape: Shape, level: u8, count: u64) -> u64 {
    if level <= 1 {
        return count + shape.params.checks_for(count);
    }
    let span = shape.params.cover(level - 1);
    let children = count.div_ceil(span);
    (0..children)
        .map(|i| {
            let c = span.min(count - i * span);
            u64::from(shape.params.copies) + below(shape, level - 1, c)
        })
        .sum()
}

/// Checks one document (the top block named by `keys`), rebuilds and inserts again what
/// it can. `progress` sees the running report after every batch of blocks.
pub async fn keepalive_document<S: BlockSource, K: BlockSink>(
    source: S,
    sink: K,
    keys: ChkKeys,
    progress: &mut impl FnMut(&KeepaliveReport),
) -> Result<(KeepaliveReport, TopBlock), KeepaliveError> {
    let mut pass = Pass {
        source: source.clone(),
        report: KeepaliveReport {
            documents: 1,
            ..KeepaliveReport::default()
        },
        again: Vec::new(),
        progress,
    };
    let (top_block, payload, late) = match fetch_twice(&source, keys.into()).await {
        Got::Found {
            block,
            payload,
            late,
        } => (block, payload, late),
        Got::Missing => return Err(KeepaliveError::TopMissing),
    };
    pass.tick(1);
    if late {
        pass.report.late += 1;
        pass.again.push((top_block, BlockRole::Index));
    }
    let top = TopBlock::from_payload(&payload)
        .map_err(|e| KeepaliveError::Corrupt(format!("the top block: {e}")))?;
    if let Some((shape, depth, root)) = Shape::of(&top) {
        if depth == 0 {
            // One data block and no checks: found or lost.
            if let Some(&k) = root.first() {
                match fetch_twice(&source, k).await {
                    Got::Found { block, late, .. } => {
                        if late {
                            pass.report.late += 1;
                            pass.again.push((block, BlockRole::Data));
                        }
                    }
                    Got::Missing => {
                        pass.report.missing += 1;
                        pass.report.lost += 1;
                    }
                }
                pass.tick(1);
            }
        } else {
            pass.tree(shape, root.to_vec(), depth, 0, shape.total).await;
        }
    }
    let mut report = pass.report;
    let again = pass.again;
    let mut inserts = stream::iter(again.into_iter().map(|(b, role)| {
        let sink = sink.clone();
        async move { sink.insert_as(b.routing_key(), b, role).await }
    }))
    .buffer_unordered(INSERT_WINDOW);
    while let Some(r) = inserts.next().await {
        r?;
        report.reinserted += 1;
        progress(&report);
    }
    Ok((report, top))
}

/// Keeps the document `keys` names alive and, if it is a directory, every file in it.
/// Returns the sum over all of them.
pub async fn keepalive<S: BlockSource, K: BlockSink>(
    source: S,
    sink: K,
    keys: ChkKeys,
    mut progress: impl FnMut(&KeepaliveReport),
) -> Result<KeepaliveReport, KeepaliveError> {
    let (mut total, top) =
        keepalive_document(source.clone(), sink.clone(), keys, &mut progress).await?;
    if top.meta.kind != DocKind::Manifest {
        return Ok(total);
    }
    let manifest = fetch_manifest(&source, top)
        .await
        .map_err(|e| KeepaliveError::Corrupt(format!("the directory manifest: {e}")))?;
    for entry in manifest.entries {
        let done = total;
        let mut each = |r: &KeepaliveReport| {
            let mut sum = done;
            sum.add(r);
            progress(&sum);
        };
        let (source, sink) = (source.clone(), sink.clone());
        match keepalive_document(source, sink, entry.keys.into(), &mut each).await {
            Ok((r, _)) => total.add(&r),
            Err(KeepaliveError::TopMissing) => {
                // A file whose top block is gone: counted lost, the others go on.
                total.documents += 1;
                total.blocks += 1;
                total.missing += 1;
                total.lost += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{fetch_top, write_body, DEFAULT_WINDOW};
    use crate::encode::{encode, EncodeOptions};
    use crate::source::{FetchError, MemoryStore};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use veil_proto::RoutingKey;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u8)
            .collect()
    }

    async fn get(store: &MemoryStore, keys: ChkKeys) -> Vec<u8> {
        let top = fetch_top(store, keys).await.unwrap();
        let mut out = Vec::new();
        write_body(store.clone(), top, DEFAULT_WINDOW, &mut out, |_| {})
            .await
            .unwrap();
        out
    }

    /// A 5 MiB document (160 data, 80 check, 3 index blocks and the top block) loses a
    /// random 30% of every block but the top; keep-alive finds each one missing,
    /// rebuilds it byte for byte and inserts it again; a second pass finds none missing.
    #[tokio::test]
    async fn lost_blocks_are_rebuilt_and_a_second_pass_finds_none_missing() {
        let store = MemoryStore::new();
        let data = pattern(5 << 20);
        let uri = encode(&store, &data[..], &EncodeOptions::named("big"), |_| {})
            .await
            .unwrap()
            .uri;
        let all: Vec<RoutingKey> = store.blocks().iter().map(Block::routing_key).collect();
        assert_eq!(all.len(), 244);
        // Every 10th key of a deterministic order, three of each ten: 30%, sparing the
        // top block and one copy of the index block (losing all copies is `lost`, below).
        let mut order: Vec<RoutingKey> = all
            .iter()
            .filter(|k| **k != uri.keys.routing)
            .copied()
            .collect();
        order.sort_by_key(|k| k.0);
        let index_keys: HashSet<RoutingKey> = all
            .iter()
            .filter(|k| store.role(k) == Some(BlockRole::Index) && **k != uri.keys.routing)
            .copied()
            .collect();
        assert_eq!(index_keys.len(), 3);
        let spared = *index_keys.iter().min_by_key(|k| k.0).unwrap();
        let gone: Vec<RoutingKey> = order
            .iter()
            .enumerate()
            .filter(|(i, k)| i % 10 < 3 && **k != spared)
            .map(|(_, k)| *k)
            .collect();
        for k in &gone {
            assert!(store.remove(k));
        }
        let mut seen = 0;
        let report = keepalive(store.clone(), store.clone(), uri.keys, |r| seen = r.blocks)
            .await
            .unwrap();
        assert_eq!(seen, 244, "progress saw every block");
        assert_eq!(
            report,
            KeepaliveReport {
                documents: 1,
                blocks: 244,
                missing: gone.len() as u64,
                late: 0,
                rebuilt: gone.len() as u64,
                lost: 0,
                reinserted: gone.len() as u64,
            }
        );
        for k in &gone {
            assert!(store.contains(k), "rebuilt and inserted again");
        }
        // Index blocks go back as index blocks (more replicas), the rest as data.
        for k in &gone {
            let want = if index_keys.contains(k) {
                BlockRole::Index
            } else {
                BlockRole::Data
            };
            assert_eq!(store.role(k), Some(want));
        }
        let again = keepalive(store.clone(), store.clone(), uri.keys, |_| {})
            .await
            .unwrap();
        assert_eq!((again.missing, again.reinserted), (0, 0));
        assert_eq!(get(&store, uri.keys).await, data);
    }

    /// Fails the first fetch of the chosen keys, as a block found only on a retry.
    #[derive(Clone)]
    struct Flaky {
        store: MemoryStore,
        slow: Arc<Mutex<HashSet<RoutingKey>>>,
    }

    impl BlockSource for Flaky {
        async fn fetch(&self, key: RoutingKey) -> Result<Block, FetchError> {
            if self.slow.lock().unwrap().remove(&key) {
                return Err(FetchError::Timeout);
            }
            self.store.fetch(key).await
        }
    }

    #[tokio::test]
    async fn blocks_found_only_on_a_retry_are_inserted_again() {
        let store = MemoryStore::new();
        let data = pattern(200_000);
        let uri = encode(&store, &data[..], &EncodeOptions::default(), |_| {})
            .await
            .unwrap()
            .uri;
        let keys: Vec<RoutingKey> = store.blocks().iter().map(Block::routing_key).collect();
        let slow: HashSet<RoutingKey> = keys.iter().take(3).copied().collect();
        let source = Flaky {
            store: store.clone(),
            slow: Arc::new(Mutex::new(slow)),
        };
        let before = store.insert_count();
        let report = keepalive(source, store.clone(), uri.keys, |_| {})
            .await
            .unwrap();
        assert_eq!((report.missing, report.late, report.reinserted), (0, 3, 3));
        assert_eq!(store.insert_count(), before + 3);
    }

    #[tokio::test]
    async fn what_cannot_be_rebuilt_is_reported_lost() {
        let store = MemoryStore::new();
        let uri = encode(
            &store,
            &pattern(100_000)[..],
            &EncodeOptions::default(),
            |_| {},
        )
        .await
        .unwrap()
        .uri;
        // 4 data blocks, 2 checks, 3 index copies, top: lose all three index copies.
        let index: Vec<RoutingKey> = store
            .blocks()
            .iter()
            .map(Block::routing_key)
            .filter(|k| store.role(k) == Some(BlockRole::Index) && *k != uri.keys.routing)
            .collect();
        for k in &index {
            store.remove(k);
        }
        let r = keepalive(store.clone(), store.clone(), uri.keys, |_| {})
            .await
            .unwrap();
        assert_eq!((r.missing, r.rebuilt, r.reinserted), (3, 0, 0));
        assert_eq!(r.lost, 3 + 4 + 2, "the copies and everything they list");
        // Without the top block nothing can be done.
        store.remove(&uri.keys.routing);
        assert!(matches!(
            keepalive(store.clone(), store.clone(), uri.keys, |_| {}).await,
            Err(KeepaliveError::TopMissing)
        ));
    }
}
