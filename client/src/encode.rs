//! Encoding: a stream of bytes becomes CHK blocks, inserted into a [`BlockSink`], and a
//! URI naming the top block.
//!
//! The input is read 32 KiB at a time; only the current block, one partial index block
//! per tree level and the blocks in flight are held, so memory does not grow with the
//! document. Inserts run concurrently (bounded by [`EncodeOptions::concurrency`]) on
//! spawned tasks while the next block is encoded. Everything is convergent: the same
//! bytes, name and MIME type give the same URI.

use crate::format::{
    Body, ChildRef, Compression, DocKind, IndexBlock, Metadata, TopBlock, TreeParams,
    FORMAT_VERSION, MAX_MIME_LEN, MAX_NAME_LEN,
};
use crate::source::{BlockRole, BlockSink, InsertError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;
use veil_proto::{block, Uri, MAX_PAYLOAD};

/// Inserts kept in flight by default (`veil put --window`). Each insert returns only when
/// its walk through the network has ended, so the window bounds a put until the CPU
/// does: on a 3-node line of `veild` processes 20 MiB went in 1.4–1.7 s with 16 in
/// flight and 0.6–1.0 s with 64 (2026-12-02). Sweeps of 32 to 128 after the nodes got
/// faster did not show a gain above 64 that outlasts the machine's noise
/// (docs/client.md).
pub const DEFAULT_INSERT_WINDOW: usize = 64;

/// Why a document could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Reading the input failed.
    #[error("reading the input: {0}")]
    Io(#[from] std::io::Error),
    /// The sink refused a block.
    #[error("inserting a block: {0}")]
    Insert(#[from] InsertError),
    /// The name or MIME type is too long for the metadata.
    #[error("{0}")]
    BadMetadata(String),
    /// The tree parameters are out of bounds.
    #[error("invalid tree parameters {0:?}")]
    BadParams(TreeParams),
    /// Reed–Solomon encoding failed.
    #[error("computing check blocks: {0}")]
    Redundancy(String),
    /// An insert task panicked or was cancelled.
    #[error("insert task failed: {0}")]
    Task(String),
}

/// How to encode a document.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// File name recorded in the metadata and appended to the URI.
    pub name: Option<String>,
    /// MIME type; guessed from `name` when `None` (`application/octet-stream` otherwise).
    pub mime: Option<String>,
    /// File or manifest.
    pub kind: DocKind,
    /// Tree shape and redundancy. Keep the default except in tests: other values give
    /// other URIs for the same bytes.
    pub tree: TreeParams,
    /// Inserts in flight at once.
    pub concurrency: usize,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            name: None,
            mime: None,
            kind: DocKind::File,
            tree: TreeParams::default(),
            concurrency: DEFAULT_INSERT_WINDOW,
        }
    }
}

impl EncodeOptions {
    /// Options for a file called `name`.
    pub fn named(name: impl Into<String>) -> EncodeOptions {
        EncodeOptions {
            name: Some(name.into()),
            ..EncodeOptions::default()
        }
    }
}

/// What publishing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Names the document (with its name, if any).
    pub uri: Uri,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type.
    pub mime: String,
    /// Blocks inserted, top block included.
    pub blocks: u64,
}

/// The MIME type for a file name.
pub fn guess_mime(name: Option<&str>) -> String {
    name.and_then(|n| mime_guess::from_path(n).first_raw())
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Reads until `buf` is full or the input ends; returns how much was read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Encodes blocks and keeps a bounded number of inserts in flight.
struct Inserter<K: BlockSink> {
    sink: K,
    tasks: JoinSet<Result<(), InsertError>>,
    limit: usize,
    count: u64,
}

impl<K: BlockSink> Inserter<K> {
    /// Encodes `payload` into a data block, starts its insert and returns its keys.
    async fn put(&mut self, payload: &[u8]) -> Result<ChildRef, EncodeError> {
        self.put_as(payload, BlockRole::Data).await
    }

    /// The same for a block of `role`.
    async fn put_as(&mut self, payload: &[u8], role: BlockRole) -> Result<ChildRef, EncodeError> {
        let (blk, keys) = block::encode(payload).expect("callers pass at most one payload");
        while self.tasks.len() >= self.limit {
            self.join_one().await?;
        }
        let sink = self.sink.clone();
        self.tasks
            .spawn(async move { sink.insert_as(keys.routing, blk, role).await });
        self.count += 1;
        Ok(keys.into())
    }

    async fn join_one(&mut self) -> Result<(), EncodeError> {
        match self.tasks.join_next().await {
            Some(Ok(r)) => Ok(r?),
            Some(Err(e)) => Err(EncodeError::Task(e.to_string())),
            None => Ok(()),
        }
    }

    async fn finish(mut self) -> Result<u64, EncodeError> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        Ok(self.count)
    }
}

/// Pending children per tree level; a full level becomes an index block one level up.
struct Levels {
    params: TreeParams,
    /// `pending[0]` holds the current segment's data blocks; `pending[l]` the copies of
    /// index blocks of level `l`, `copies` consecutive entries per index block.
    pending: Vec<Vec<ChildRef>>,
    /// The current segment's payloads, zero-padded, for its check blocks.
    payloads: Vec<Vec<u8>>,
}

impl Levels {
    fn new(params: TreeParams) -> Levels {
        Levels {
            params,
            pending: vec![Vec::new()],
            payloads: Vec::new(),
        }
    }

    fn copies(&self) -> usize {
        self.params.copies as usize
    }

    /// Inserts every copy of `index` (its `copy` field set to 0, 1, ...).
    async fn put_index<K: BlockSink>(
        &self,
        ins: &mut Inserter<K>,
        mut index: IndexBlock,
    ) -> Result<Vec<ChildRef>, EncodeError> {
        let mut refs = Vec::with_capacity(self.copies());
        for copy in 0..self.params.copies {
            index.copy = copy;
            refs.push(ins.put_as(&index.to_payload(), BlockRole::Index).await?);
        }
        Ok(refs)
    }

    /// Inserts a data block; a full segment becomes a level-1 index block.
    async fn push_data<K: BlockSink>(
        &mut self,
        ins: &mut Inserter<K>,
        payload: &[u8],
    ) -> Result<(), EncodeError> {
        if self.pending[0].len() == self.params.segment as usize {
            let index = self.flush_segment(ins).await?;
            self.push(ins, 1, index).await?;
        }
        let child = ins.put(payload).await?;
        self.pending[0].push(child);
        if self.params.checks > 0 {
            let mut padded = payload.to_vec();
            padded.resize(MAX_PAYLOAD, 0);
            self.payloads.push(padded);
        }
        Ok(())
    }

    /// Writes the current segment's check blocks and its level-1 index block.
    async fn flush_segment<K: BlockSink>(
        &mut self,
        ins: &mut Inserter<K>,
    ) -> Result<Vec<ChildRef>, EncodeError> {
        let children = std::mem::take(&mut self.pending[0]);
        let c = self.params.checks_for(children.len() as u64) as usize;
        let mut checks = Vec::with_capacity(c);
        if c > 0 {
            let shards = crate::segment::encode_checks(&self.payloads, c)
                .map_err(|e| EncodeError::Redundancy(e.to_string()))?;
            self.payloads.clear();
            for shard in shards {
                checks.push(ins.put(&shard).await?);
            }
        }
        let index = IndexBlock {
            version: FORMAT_VERSION,
            level: 1,
            copy: 0,
            children,
            checks,
        };
        self.put_index(ins, index).await
    }

    /// Adds the copies of an index block of level `level` to its parent's pending list.
    async fn push<K: BlockSink>(
        &mut self,
        ins: &mut Inserter<K>,
        mut level: usize,
        mut copies: Vec<ChildRef>,
    ) -> Result<(), EncodeError> {
        loop {
            if self.pending.len() == level {
                self.pending.push(Vec::new());
            }
            self.pending[level].extend(copies);
            if self.pending[level].len() < self.params.fanout as usize * self.copies() {
                return Ok(());
            }
            copies = self.flush(ins, level).await?;
            level += 1;
        }
    }

    /// Writes level `level`'s pending children (level >= 1) as an index block one up.
    async fn flush<K: BlockSink>(
        &mut self,
        ins: &mut Inserter<K>,
        level: usize,
    ) -> Result<Vec<ChildRef>, EncodeError> {
        let index = IndexBlock {
            version: FORMAT_VERSION,
            level: (level + 1) as u8,
            copy: 0,
            children: std::mem::take(&mut self.pending[level]),
            checks: Vec::new(),
        };
        self.put_index(ins, index).await
    }

    /// Closes every level and returns the copies of the root and its depth.
    async fn finish<K: BlockSink>(
        mut self,
        ins: &mut Inserter<K>,
    ) -> Result<(Vec<ChildRef>, u8), EncodeError> {
        // A single data block is its own root: no index, no checks, no copies.
        if self.pending.len() == 1 && self.pending[0].len() == 1 {
            return Ok((self.pending[0].clone(), 0));
        }
        if !self.pending[0].is_empty() {
            let index = self.flush_segment(ins).await?;
            if self.pending.len() == 1 {
                self.pending.push(Vec::new());
            }
            self.pending[1].extend(index);
        }
        let mut level = 1;
        loop {
            let top = level + 1 == self.pending.len();
            if top && self.pending[level].len() == self.copies() {
                return Ok((std::mem::take(&mut self.pending[level]), level as u8));
            }
            if !self.pending[level].is_empty() {
                let copies = self.flush(ins, level).await?;
                if top {
                    self.pending.push(Vec::new());
                }
                self.pending[level + 1].extend(copies);
            }
            level += 1;
        }
    }
}

/// Reads `input` to its end, inserts its blocks into `sink` and returns its URI.
///
/// `progress` is called with the number of bytes read so far after every block.
pub async fn encode<K, R>(
    sink: &K,
    mut input: R,
    opts: &EncodeOptions,
    mut progress: impl FnMut(u64),
) -> Result<Encoded, EncodeError>
where
    K: BlockSink,
    R: AsyncRead + Unpin,
{
    let mime = opts
        .mime
        .clone()
        .unwrap_or_else(|| guess_mime(opts.name.as_deref()));
    if mime.len() > MAX_MIME_LEN {
        return Err(EncodeError::BadMetadata("MIME type too long".into()));
    }
    if opts.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
        return Err(EncodeError::BadMetadata(format!(
            "file name longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if !opts.tree.is_valid() {
        return Err(EncodeError::BadParams(opts.tree));
    }
    let mut ins = Inserter {
        sink: sink.clone(),
        tasks: JoinSet::new(),
        limit: opts.concurrency.max(1),
        count: 0,
    };
    let mut meta = Metadata {
        size: 0,
        mime: mime.clone(),
        name: opts.name.clone(),
        compression: Compression::None,
        kind: opts.kind,
    };

    let mut buf = vec![0u8; MAX_PAYLOAD];
    let mut n = read_full(&mut input, &mut buf).await?;
    meta.size = n as u64;
    progress(meta.size);

    // A document that fits beside its metadata lives in the top block alone.
    let mut top = None;
    if n < MAX_PAYLOAD {
        let inline = TopBlock {
            version: FORMAT_VERSION,
            meta: meta.clone(),
            body: Body::Inline(buf[..n].to_vec()),
        }
        .to_payload();
        if inline.len() <= MAX_PAYLOAD {
            top = Some(inline);
        }
    }
    let top = match top {
        Some(t) => t,
        None => {
            let mut levels = Levels::new(opts.tree);
            while n > 0 {
                levels.push_data(&mut ins, &buf[..n]).await?;
                n = read_full(&mut input, &mut buf).await?;
                meta.size += n as u64;
                progress(meta.size);
            }
            let (root, depth) = levels.finish(&mut ins).await?;
            TopBlock {
                version: FORMAT_VERSION,
                meta: meta.clone(),
                body: Body::Tree {
                    params: opts.tree,
                    depth,
                    root,
                },
            }
            .to_payload()
        }
    };
    let top_keys = ins.put_as(&top, BlockRole::Index).await?;
    let blocks = ins.finish().await?;
    let mut uri = Uri::new(top_keys.into());
    uri.name = opts.name.clone();
    Ok(Encoded {
        uri,
        size: meta.size,
        mime,
        blocks,
    })
}
