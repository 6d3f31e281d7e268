//! Decoding: a URI's top block, then its index tree and data blocks, fetched from a
//! [`BlockSource`], verified at every level, and streamed out in order.
//!
//! Data blocks are fetched `window` at a time ahead of the writer (futures' `buffered`,
//! which yields in order), and index blocks a couple at a time ahead of the data, so the
//! memory held is about `window` blocks whatever the document's size. Every block is
//! checked against its routing key, decrypted with its data key, and its payload compared
//! with what the tree's shape (a function of size and fan-out) says it must be; the
//! first mismatch or missing block ends the stream with an error naming the block's
//! position — unless the block's segment can be rebuilt from its Reed–Solomon check
//! blocks ([`crate::segment`]), in which case the rebuilt payload takes its place.

use crate::format::{
    data_blocks, Body, ChildRef, FormatError, IndexBlock, TopBlock, TreeParams, FORMAT_VERSION,
};
use crate::segment::decode_missing;
use crate::source::{BlockRole, BlockSink, BlockSource, FetchError, InsertError};
use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use veil_proto::{block, ChkKeys, MAX_PAYLOAD};

/// Data blocks fetched ahead of the writer by default.
pub const DEFAULT_WINDOW: usize = 32;
/// Most blocks one fetch offers for healing ([`Heal`]).
pub const HEAL_LIMIT: usize = 64;

/// Blocks a fetch had to rebuild — data blocks from their segment's check blocks, index
/// block copies from a sibling copy — kept so the reader can insert them again
/// ([`Heal::reinsert`]) and the next reader finds them directly. Bounded by
/// [`HEAL_LIMIT`]; a [`Heal::off`] collects nothing. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct Heal(Option<Arc<std::sync::Mutex<HealList>>>);

/// The blocks a [`Heal`] holds, with the role each is inserted as.
type HealList = Vec<(veil_proto::Block, BlockRole)>;

impl Heal {
    /// Collects up to [`HEAL_LIMIT`] blocks.
    pub fn new() -> Heal {
        Heal(Some(Default::default()))
    }

    /// Collects nothing.
    pub fn off() -> Heal {
        Heal(None)
    }

    /// Offers a rebuilt payload that must encode to `listed`.
    pub(crate) fn offer(&self, payload: &[u8], listed: ChildRef, role: BlockRole) {
        let Some(list) = &self.0 else {
            return;
        };
        let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= HEAL_LIMIT {
            return;
        }
        if let Ok((block, keys)) = veil_proto::block::encode(payload) {
            if keys.routing == listed.routing && keys.data == listed.data {
                list.push((block, role));
            }
        }
    }

    /// Blocks collected so far.
    pub fn len(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |l| l.lock().unwrap_or_else(|e| e.into_inner()).len())
    }

    /// Whether none were collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts the collected blocks again through `sink`, in random order, like any
    /// other insert (nothing in an insert names its originator); returns how many went
    /// out.
    pub async fn reinsert<K: BlockSink>(&self, sink: &K) -> Result<usize, InsertError> {
        let mut blocks = match &self.0 {
            Some(l) => std::mem::take(&mut *l.lock().unwrap_or_else(|e| e.into_inner())),
            None => return Ok(0),
        };
        rand::seq::SliceRandom::shuffle(blocks.as_mut_slice(), &mut rand::thread_rng());
        let n = blocks.len();
        for (block, role) in blocks {
            sink.insert_as(block.routing_key(), block, role).await?;
        }
        Ok(n)
    }
}
/// Index blocks fetched ahead of the one being read.
const INDEX_WINDOW: usize = 2;

/// Which block of a document an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// The block the URI names.
    Top,
    /// An index block: its level and the data blocks it covers (0-based, end exclusive).
    Index {
        /// Height above the data blocks.
        level: u8,
        /// First data block covered.
        first: u64,
        /// One past the last data block covered.
        end: u64,
        /// Data blocks in the document.
        total: u64,
    },
    /// A data block (0-based) of `total`.
    Data {
        /// Its index.
        index: u64,
        /// Data blocks in the document.
        total: u64,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One-based, as a person counts.
        match self {
            Position::Top => write!(f, "the top block"),
            Position::Index {
                level,
                first,
                end,
                total,
            } => write!(
                f,
                "the level-{level} index block over data blocks {}..{} of {total}",
                first + 1,
                end
            ),
            Position::Data { index, total } => write!(f, "data block {} of {total}", index + 1),
        }
    }
}

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A block could not be fetched.
    #[error("{at} could not be fetched: {error}")]
    Fetch {
        /// Which block.
        at: Position,
        /// Why.
        error: FetchError,
    },
    /// A block was fetched but is not what the tree says it must be.
    #[error("{at} is corrupt: {reason}")]
    Corrupt {
        /// Which block.
        at: Position,
        /// What is wrong.
        reason: String,
    },
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
    /// A file or directory to save into could not be made or put in place.
    #[error("cannot create {}", .path.display())]
    Create {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The URI names a path inside a document that is not a directory.
    #[error("the URI has a path but its document is not a directory")]
    NotADirectory,
    /// The URI names a directory where a file is needed.
    #[error("the URI names a directory")]
    IsADirectory,
    /// No file or directory at this path in the manifest.
    #[error("no such file in the directory: {0}")]
    NoSuchPath(String),
    /// A data block failed and its segment could not be rebuilt either.
    #[error(
        "{first}; its segment cannot be rebuilt: {found} of the {needed} blocks needed were found"
    )]
    Unrecoverable {
        /// The data block's own failure.
        first: Box<DecodeError>,
        /// Blocks of the segment that could be fetched and verified.
        found: usize,
        /// Blocks needed (the segment's data block count).
        needed: usize,
    },
    /// The manifest is malformed or unsafe.
    #[error("bad directory manifest: {0}")]
    BadManifest(FormatError),
    /// No node the request reached holds the URI's top block.
    #[error(
        "document not found: no node the request reached holds it (check that the URI is \
         complete; a document nobody keeps alive can also fade away)"
    )]
    DocumentNotFound,
    /// Writing would replace a file that exists (pass the overwrite option to allow it).
    #[error("{} exists already: pass --force to replace it", .0.display())]
    Exists(std::path::PathBuf),
    /// The document (or tree) claims more bytes than the reader allows.
    #[error("the document is {size} bytes, over the limit of {limit} (raise it with --max-size)")]
    TooLarge {
        /// What the document says it holds.
        size: u64,
        /// The reader's bound.
        limit: u64,
    },
    /// The top block was found but the URI's data key does not open it.
    #[error("the URI's data key does not decrypt its document: the URI is wrong or cut short")]
    WrongKey,
}

pub(crate) fn corrupt(at: Position, reason: impl fmt::Display) -> DecodeError {
    DecodeError::Corrupt {
        at,
        reason: reason.to_string(),
    }
}

/// Attempts at one block before its failure counts. A node that lost peers a moment
/// ago, or whose first hop just failed the key, often succeeds a moment later (and the
/// node tries the peers that failed the key last).
const FETCH_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; it grows with each attempt.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Fetches one block, again after a pause when the failure may pass: the node could not
/// route it (no peer free to take it), or, for a block a verified index lists
/// (`listed`), nobody the search reached had it. A top block that is not found is not
/// asked for again: the URI may simply name nothing.
pub(crate) async fn fetch_block<S: BlockSource>(
    source: &S,
    key: veil_proto::RoutingKey,
    listed: bool,
) -> Result<veil_proto::Block, FetchError> {
    let mut attempt = 1;
    loop {
        match source.fetch(key).await {
            Err(FetchError::Unavailable(_)) | Err(FetchError::NotFound)
                if attempt < FETCH_ATTEMPTS && listed =>
            {
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            Err(FetchError::Unavailable(_)) if attempt < FETCH_ATTEMPTS => {
                tokio::time::sleep(RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Fetches, verifies and decrypts one block.
pub(crate) async fn fetch_payload<S: BlockSource>(
    source: &S,
    keys: ChildRef,
    at: &Position,
) -> Result<Vec<u8>, DecodeError> {
    let block = fetch_block(source, keys.routing, true)
        .await
        .map_err(|error| DecodeError::Fetch {
            at: at.clone(),
            error,
        })?;
    block
        .verify(&keys.routing)
        .map_err(|e| corrupt(at.clone(), e))?;
    block
        .decrypt(&keys.data)
        .map_err(|e| corrupt(at.clone(), e))
}

/// Fetches and checks the top block named by `keys`.
pub async fn fetch_top<S: BlockSource>(source: &S, keys: ChkKeys) -> Result<TopBlock, DecodeError> {
    // Its own errors: blame the URI or the network, not a "corrupt block".
    let block = fetch_block(source, keys.routing, false)
        .await
        .map_err(|error| match error {
            FetchError::NotFound => DecodeError::DocumentNotFound,
            error => DecodeError::Fetch {
                at: Position::Top,
                error,
            },
        })?;
    block
        .verify(&keys.routing)
        .map_err(|e| corrupt(Position::Top, e))?;
    let payload = block.decrypt(&keys.data).map_err(|e| match e {
        veil_proto::BlockError::Decrypt => DecodeError::WrongKey,
        e => corrupt(Position::Top, e),
    })?;
    TopBlock::from_payload(&payload).map_err(|e| corrupt(Position::Top, e))
}

/// The tree's fixed parameters, shared by every node of the walk.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) params: TreeParams,
    pub(crate) size: u64,
    pub(crate) total: u64,
}

impl Shape {
    /// The shape of a tree body, with its depth and root copies; `None` for an inline
    /// document.
    pub(crate) fn of(top: &TopBlock) -> Option<(Shape, u8, &[ChildRef])> {
        match &top.body {
            Body::Inline(_) => None,
            Body::Tree {
                params,
                depth,
                root,
            } => Some((
                Shape {
                    params: *params,
                    size: top.meta.size,
                    total: data_blocks(top.meta.size),
                },
                *depth,
                root,
            )),
        }
    }

    /// The payload length data block `index` must have.
    pub(crate) fn data_len(&self, index: u64) -> usize {
        if index + 1 < self.total {
            MAX_PAYLOAD
        } else {
            (self.size - index * MAX_PAYLOAD as u64) as usize
        }
    }
}

/// Fetches an index block of `level` covering data blocks `first..first+count` — the
/// first of its `copies` that can be fetched and verified — and checks it lists exactly
/// the children (and, at level 1, the check blocks) that range needs.
async fn fetch_index<S: BlockSource>(
    source: &S,
    shape: Shape,
    copies: &[ChildRef],
    level: u8,
    first: u64,
    count: u64,
    heal: &Heal,
) -> Result<IndexBlock, DecodeError> {
    let at = Position::Index {
        level,
        first,
        end: first + count,
        total: shape.total,
    };
    let mut first_error = None;
    for (c, &keys) in copies.iter().enumerate() {
        match fetch_payload(source, keys, &at).await {
            Ok(payload) => {
                let index = check_index(shape, &at, &payload, level, count)?;
                // The copies tried before this one failed: rebuild them from it.
                for (b, &listed) in copies[..c].iter().enumerate() {
                    let copy = IndexBlock {
                        copy: b as u8,
                        ..index.clone()
                    };
                    heal.offer(&copy.to_payload(), listed, BlockRole::Index);
                }
                return Ok(index);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| corrupt(at, "no copies listed")))
}

/// Decodes an index block payload and checks it against the tree's shape.
pub(crate) fn check_index(
    shape: Shape,
    at: &Position,
    payload: &[u8],
    level: u8,
    count: u64,
) -> Result<IndexBlock, DecodeError> {
    let index = IndexBlock::from_payload(payload).map_err(|e| corrupt(at.clone(), e))?;
    let children = count.div_ceil(shape.params.cover(level - 1));
    let (want, want_checks) = if level == 1 {
        (children, shape.params.checks_for(count))
    } else {
        (children * shape.params.copies as u64, 0)
    };
    if index.version != FORMAT_VERSION || index.level != level {
        return Err(corrupt(at.clone(), format!("claims level {}", index.level)));
    }
    if index.children.len() as u64 != want || index.checks.len() as u64 != want_checks {
        return Err(corrupt(
            at.clone(),
            format!(
                "lists {} children and {} checks, {want} and {want_checks} expected",
                index.children.len(),
                index.checks.len()
            ),
        ));
    }
    Ok(index)
}

/// A data block to fetch: its index in the document, its keys, and its segment.
/// Blocks fetched at once while rebuilding a segment.
const REBUILD_WINDOW: usize = 32;

/// The outcome of a rebuild, shared by every data block of the segment.
#[derive(Debug)]
enum Rebuilt {
    /// Payloads (zero-padded) by index within the segment.
    Done(Mutex<BTreeMap<usize, Vec<u8>>>),
    /// Too few blocks could be fetched.
    Failed { found: usize, needed: usize },
}

/// One segment of a document: data blocks, check blocks, and a rebuild done at most once.
///
/// When a data block cannot be fetched or fails verification, the decoder asks its
/// segment to rebuild it: the segment fetches its other blocks until it holds as many as
/// it has data blocks, decodes the missing payloads once, and hands each waiting data
/// block its own. A rebuilt payload is accepted only if it hashes to the data key the
/// index lists, so bad check blocks cannot smuggle in other content.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Index of its first data block in the document.
    pub first: u64,
    /// Its data blocks.
    pub data: Vec<ChildRef>,
    /// Its check blocks (none for a document of one data block).
    pub checks: Vec<ChildRef>,
    rebuilt: tokio::sync::OnceCell<Rebuilt>,
}

impl Segment {
    /// A segment starting at data block `first`.
    pub fn new(first: u64, data: Vec<ChildRef>, checks: Vec<ChildRef>) -> Segment {
        Segment {
            first,
            data,
            checks,
            rebuilt: tokio::sync::OnceCell::new(),
        }
    }

    /// The payload of data block `index` (of the document), rebuilt from the segment.
    /// `direct` is why fetching it directly failed, reported if rebuilding fails too.
    pub(crate) async fn rebuild_one<S: BlockSource>(
        &self,
        source: &S,
        shape: Shape,
        index: u64,
        direct: DecodeError,
    ) -> Result<Bytes, DecodeError> {
        let rebuilt = self
            .rebuilt
            .get_or_init(|| self.rebuild(source, shape))
            .await;
        let at = Position::Data {
            index,
            total: shape.total,
        };
        let i = (index - self.first) as usize;
        match rebuilt {
            Rebuilt::Failed { found, needed } => Err(DecodeError::Unrecoverable {
                first: Box::new(direct),
                found: *found,
                needed: *needed,
            }),
            Rebuilt::Done(map) => {
                let padded = map
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&i)
                    .ok_or_else(|| corrupt(at.clone(), "rebuilt twice"))?;
                let payload = &padded[..shape.data_len(index)];
                if block::data_key(payload) != self.data[i].data {
                    return Err(corrupt(at, "rebuilt payload does not match its data key"));
                }
                Ok(Bytes::copy_from_slice(payload))
            }
        }
    }

    /// Fetches blocks of the segment until as many as it has data blocks are in hand,
    /// then decodes the missing data payloads.
    async fn rebuild<S: BlockSource>(&self, source: &S, shape: Shape) -> Rebuilt {
        let d = self.data.len();
        let c = self.checks.len();
        let fetches = (0..d + c).map(|k| async move {
            if k < d {
                let index = self.first + k as u64;
                let at = Position::Data {
                    index,
                    total: shape.total,
                };
                let mut p = fetch_payload(source, self.data[k], &at).await.ok()?;
                if p.len() != shape.data_len(index) {
                    return None;
                }
                p.resize(MAX_PAYLOAD, 0);
                Some((k, p))
            } else {
                let p = fetch_payload(source, self.checks[k - d], &Position::Top)
                    .await
                    .ok()?;
                (p.len() == MAX_PAYLOAD).then_some((k, p))
            }
        });
        let mut originals = BTreeMap::new();
        let mut recovery = BTreeMap::new();
        let mut found = stream::iter(fetches).buffer_unordered(REBUILD_WINDOW);
        while let Some(item) = found.next().await {
            match item {
                Some((k, p)) if k < d => drop(originals.insert(k, p)),
                Some((k, p)) => drop(recovery.insert(k - d, p)),
                None => {}
            }
            if originals.len() + recovery.len() >= d {
                break;
            }
        }
        drop(found);
        let have = originals.len() + recovery.len();
        if have < d {
            tracing::debug!(have, needed = d, "segment cannot be rebuilt");
            return Rebuilt::Failed {
                found: have,
                needed: d,
            };
        }
        let restored = match decode_missing(d, c, &originals, &recovery) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "Reed-Solomon decoding failed");
                return Rebuilt::Failed {
                    found: have,
                    needed: d,
                };
            }
        };
        originals.extend(restored);
        Rebuilt::Done(Mutex::new(originals))
    }
}

type DataRef = (u64, ChildRef, Arc<Segment>);
type RefStream = BoxStream<'static, Result<DataRef, DecodeError>>;

fn failed(e: DecodeError) -> RefStream {
    stream::once(async move { Err(e) }).boxed()
}

/// The data block references under an index block that is already fetched.
fn data_refs<S: BlockSource>(
    source: S,
    shape: Shape,
    index: IndexBlock,
    first: u64,
    count: u64,
    heal: Heal,
) -> RefStream {
    let level = index.level;
    if level == 1 {
        let segment = Arc::new(Segment::new(first, index.children, index.checks));
        let items = (0..segment.data.len())
            .map(move |i| Ok((first + i as u64, segment.data[i], segment.clone())));
        return stream::iter(items).boxed();
    }
    let span = shape.params.cover(level - 1);
    let fetcher = source.clone();
    let groups: Vec<Vec<ChildRef>> = index
        .children
        .chunks(shape.params.copies as usize)
        .map(<[ChildRef]>::to_vec)
        .collect();
    let healer = heal.clone();
    stream::iter(groups.into_iter().enumerate())
        .map(move |(i, copies)| {
            let source = fetcher.clone();
            let heal = healer.clone();
            let cfirst = first + i as u64 * span;
            let ccount = span.min(count - i as u64 * span);
            async move {
                let kids =
                    fetch_index(&source, shape, &copies, level - 1, cfirst, ccount, &heal).await?;
                Ok((kids, cfirst, ccount))
            }
        })
        .buffered(INDEX_WINDOW)
        .map(move |res| match res {
            Ok((kids, cfirst, ccount)) => {
                data_refs(source.clone(), shape, kids, cfirst, ccount, heal.clone())
            }
            Err(e) => failed(e),
        })
        .flatten()
        .boxed()
}

/// Fetches data block `index`, or rebuilds it from its segment when that fails.
async fn fetch_data<S: BlockSource>(
    source: S,
    shape: Shape,
    index: u64,
    keys: ChildRef,
    segment: Arc<Segment>,
    heal: Heal,
) -> Result<Bytes, DecodeError> {
    let at = Position::Data {
        index,
        total: shape.total,
    };
    let want = shape.data_len(index);
    let direct = match fetch_payload(&source, keys, &at).await {
        Ok(p) if p.len() == want => return Ok(Bytes::from(p)),
        Ok(p) => corrupt(at, format!("holds {} bytes, {want} expected", p.len())),
        Err(e) => e,
    };
    if segment.checks.is_empty() {
        return Err(direct);
    }
    let payload = segment.rebuild_one(&source, shape, index, direct).await?;
    heal.offer(&payload, keys, BlockRole::Data);
    Ok(payload)
}

/// The document's bytes, in order, as a stream of chunks (one per data block).
///
/// At most `window` data blocks are fetched ahead; the stream ends after the first error.
pub fn body_stream<S: BlockSource>(
    source: S,
    top: TopBlock,
    window: usize,
) -> impl Stream<Item = Result<Bytes, DecodeError>> + Send + 'static {
    body_stream_healing(source, top, window, Heal::off())
}

/// As [`body_stream`], offering what it had to rebuild to `heal`.
pub fn body_stream_healing<S: BlockSource>(
    source: S,
    top: TopBlock,
    window: usize,
    heal: Heal,
) -> impl Stream<Item = Result<Bytes, DecodeError>> + Send + 'static {
    let tree = Shape::of(&top).map(|(shape, depth, root)| (shape, depth, root.to_vec()));
    let inner: BoxStream<'static, Result<Bytes, DecodeError>> = match (top.body, tree) {
        (Body::Inline(data), _) if data.is_empty() => stream::empty().boxed(),
        (Body::Inline(data), _) => stream::once(async move { Ok(Bytes::from(data)) }).boxed(),
        // `Shape::of` reads every tree body; this arm cannot be reached.
        (Body::Tree { .. }, None) => {
            stream::once(async { Err(corrupt(Position::Top, "no tree")) }).boxed()
        }
        (Body::Tree { .. }, Some((shape, depth, root))) => {
            let refs: RefStream = if depth == 0 {
                match root.first() {
                    Some(&keys) => {
                        let seg = Arc::new(Segment::new(0, vec![keys], Vec::new()));
                        stream::once(async move { Ok((0, keys, seg)) }).boxed()
                    }
                    None => failed(corrupt(Position::Top, "no root")),
                }
            } else {
                let src = source.clone();
                let h = heal.clone();
                stream::once(async move {
                    let index = fetch_index(&src, shape, &root, depth, 0, shape.total, &h).await?;
                    Ok(data_refs(src, shape, index, 0, shape.total, h))
                })
                .map(|r: Result<RefStream, DecodeError>| r.unwrap_or_else(failed))
                .flatten()
                .boxed()
            };
            refs.map(move |r| {
                let source = source.clone();
                let heal = heal.clone();
                async move {
                    let (index, keys, segment) = r?;
                    fetch_data(source, shape, index, keys, segment, heal).await
                }
            })
            .buffered(window.max(1))
            .boxed()
        }
    };
    // Stop after the first error: later items would only repeat it or be out of place.
    inner.scan(false, |failed, item| {
        let out = if *failed {
            None
        } else {
            *failed = item.is_err();
            Some(item)
        };
        futures::future::ready(out)
    })
}

/// Streams the document described by `top` into `out`, calling `progress` with the bytes
/// written so far. Returns the number of bytes written.
pub async fn write_body<S: BlockSource, W: AsyncWrite + Unpin>(
    source: S,
    top: TopBlock,
    window: usize,
    out: &mut W,
    progress: impl FnMut(u64),
) -> Result<u64, DecodeError> {
    write_body_healing(source, top, window, out, progress, Heal::off()).await
}

/// As [`write_body`], offering what it had to rebuild to `heal`.
pub async fn write_body_healing<S: BlockSource, W: AsyncWrite + Unpin>(
    source: S,
    top: TopBlock,
    window: usize,
    out: &mut W,
    mut progress: impl FnMut(u64),
    heal: Heal,
) -> Result<u64, DecodeError> {
    let mut body = std::pin::pin!(body_stream_healing(source, top, window, heal));
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).await?;
        written += chunk.len() as u64;
        progress(written);
    }
    out.flush().await?;
    Ok(written)
}

/// Fetches a whole document into memory, refusing one larger than `limit` bytes.
pub async fn read_to_vec<S: BlockSource>(
    source: S,
    top: TopBlock,
    limit: u64,
) -> Result<Vec<u8>, DecodeError> {
    if top.meta.size > limit {
        return Err(corrupt(
            Position::Top,
            format!("document of {} bytes exceeds {limit}", top.meta.size),
        ));
    }
    let mut out = Vec::with_capacity(top.meta.size as usize);
    write_body(source, top, DEFAULT_WINDOW, &mut out, |_| {}).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails the first `fail` fetches with `error`, then serves `block`.
    #[derive(Clone)]
    struct Failing {
        block: veil_proto::Block,
        fail: u32,
        error: fn() -> FetchError,
        calls: Arc<AtomicU32>,
    }

    impl BlockSource for Failing {
        async fn fetch(
            &self,
            _key: veil_proto::RoutingKey,
        ) -> Result<veil_proto::Block, FetchError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                Err((self.error)())
            } else {
                Ok(self.block.clone())
            }
        }
    }

    fn failing(fail: u32, error: fn() -> FetchError) -> (Failing, veil_proto::RoutingKey) {
        let (block, keys) = block::encode(b"payload").expect("block");
        let source = Failing {
            block,
            fail,
            error,
            calls: Arc::new(AtomicU32::new(0)),
        };
        (source, keys.routing)
    }

    #[tokio::test(start_paused = true)]
    async fn a_listed_block_is_asked_for_again_after_a_passing_failure() {
        let (s, key) = failing(2, || FetchError::NotFound);
        assert!(fetch_block(&s, key, true).await.is_ok());
        assert_eq!(s.calls.load(Ordering::SeqCst), 3);
        let (s, key) = failing(2, || FetchError::Unavailable("no route".into()));
        assert!(fetch_block(&s, key, true).await.is_ok());
        // Not forever: a block gone for good fails after the last attempt.
        let (s, key) = failing(u32::MAX, || FetchError::NotFound);
        assert!(matches!(
            fetch_block(&s, key, true).await,
            Err(FetchError::NotFound)
        ));
        assert_eq!(s.calls.load(Ordering::SeqCst), FETCH_ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_top_block_not_found_is_not_asked_for_again() {
        let (s, key) = failing(1, || FetchError::NotFound);
        assert!(matches!(
            fetch_block(&s, key, false).await,
            Err(FetchError::NotFound)
        ));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1);
        // A node that could not route it is asked again.
        let (s, key) = failing(1, || FetchError::Unavailable("no route".into()));
        assert!(fetch_block(&s, key, false).await.is_ok());
        // Wrong keys and bad blocks are never retried.
        let (s, key) = failing(1, || FetchError::BadBlock);
        assert!(matches!(
            fetch_block(&s, key, true).await,
            Err(FetchError::BadBlock)
        ));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1);
    }
}
