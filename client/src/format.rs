//! The document formats: top block, index blocks and directory manifests.
//!
//! All three are postcard-encoded payloads of ordinary CHK blocks, so a node cannot tell
//! them from data. Each starts with a format version byte ([`FORMAT_VERSION`]).
//!
//! ```text
//! TopBlock   = version u8 = 1, Metadata, Body
//! Metadata   = size u64, mime String, name Option<String>, compression, kind
//! Body       = Inline(bytes)                            -- whole document, when it fits
//!            | Tree { fanout u16, segment u16, checks u16, copies u8, depth u8,
//!                     root Vec<ChildRef> }                -- `copies` copies of the root
//! IndexBlock = version u8 = 1, level u8 (>= 1), copy u8,
//!              children Vec<ChildRef>, checks Vec<ChildRef>
//! ChildRef   = routing key [u8; 32], data key [u8; 32]   -- 64 bytes
//! Manifest   = version u8 = 1, entries Vec<{ path String, keys ChildRef, size u64, mime String }>
//! ```
//!
//! The tree's shape is a function of the size and the three numbers alone: the document
//! is cut into `n = ceil(size / 32768)` data blocks (every one full but the last); the
//! level-1 index blocks list the data blocks in runs of `segment` — a *segment* — each
//! with its Reed–Solomon check blocks; level-2 blocks list level-1 blocks in runs of
//! `fanout`, and so on up to a single root at the least `depth` whose tree holds `n`
//! (depth 0: the root is the only data block, with no checks). A decoder recomputes the
//! shape and rejects any block whose child count, check count, level or payload length
//! disagrees.
//!
//! Index blocks are stored `copies` times: copy `c` is the same index block with its
//! `copy` field set to `c`, so each copy is a different CHK block. A parent lists all
//! copies of each child index block, consecutively (`children[i * copies + c]`), and the
//! top block lists all copies of the root. A reader takes the first copy that verifies,
//! so losing an index block loses nothing while one copy of it survives.
//!
//! Redundancy: a segment of `d` data blocks has `ceil(d * checks / segment)` check blocks
//! (so a full one has `checks`). Check block `j` is the CHK block of Reed–Solomon recovery
//! shard `j` (reed-solomon-simd, GF(2^16)) computed over the segment's payloads, each
//! zero-padded to 32768 bytes. Any `d` of a segment's `d + c` blocks rebuild its data; a
//! rebuilt payload is accepted only when it hashes to the data key its index lists.
//!
//! Defaults: [`DEFAULT_SEGMENT`] 340 data and [`DEFAULT_CHECKS`] 170 check blocks per
//! segment (50% more blocks; a segment survives the loss of a third of its blocks),
//! [`DEFAULT_COPIES`] 3 copies of every index block, and [`DEFAULT_FANOUT`] 170 children
//! per index block above level 1 (170 × 3 copies = 510 of the [`MAX_ENTRIES`] 511 64-byte
//! entries one 32 KiB payload holds beside the header). One level-1 index covers
//! 10.6 MiB, two levels 1.8 GiB, three 306 GiB.

use serde::{Deserialize, Serialize};
use veil_proto::{ChkKeys, DataKey, RoutingKey, MAX_PAYLOAD};

/// The version byte every top block, index block and manifest starts with.
pub const FORMAT_VERSION: u8 = 1;
/// Children per index block above level 1 in the shipped format.
pub const DEFAULT_FANOUT: u16 = 170;
/// Copies of every index block in the shipped format.
pub const DEFAULT_COPIES: u8 = 3;
/// Data blocks per segment (per level-1 index block) in the shipped format.
pub const DEFAULT_SEGMENT: u16 = 340;
/// Check blocks per full segment in the shipped format.
pub const DEFAULT_CHECKS: u16 = 170;
/// The most 64-byte entries (children and checks) one index block holds.
pub const MAX_ENTRIES: usize = 511;
/// Longest file name kept in metadata, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest MIME type kept in metadata, in bytes.
pub const MAX_MIME_LEN: usize = 255;
/// Largest manifest a client will fetch into memory.
pub const MAX_MANIFEST_SIZE: u64 = 64 * 1024 * 1024;
/// Longest path in a manifest, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// MIME type of a directory manifest document.
pub const MANIFEST_MIME: &str = "application/x-veil-manifest";

/// The keys of a child block (or of a document, in a manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChildRef {
    /// Names the block.
    pub routing: RoutingKey,
    /// Decrypts the block.
    pub data: DataKey,
}

impl From<ChkKeys> for ChildRef {
    fn from(k: ChkKeys) -> ChildRef {
        ChildRef {
            routing: k.routing,
            data: k.data,
        }
    }
}

impl From<ChildRef> for ChkKeys {
    fn from(c: ChildRef) -> ChkKeys {
        ChkKeys {
            routing: c.routing,
            data: c.data,
        }
    }
}

/// How the document's bytes were compressed before splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Compression {
    /// Stored as is.
    None,
}

/// What the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DocKind {
    /// An ordinary file.
    File,
    /// A directory [`Manifest`].
    Manifest,
}

/// Metadata carried by the top block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Length of the document in bytes.
    pub size: u64,
    /// MIME type, e.g. `text/html`.
    pub mime: String,
    /// File (or directory) name, if the publisher gave one.
    pub name: Option<String>,
    /// Compression applied before splitting.
    pub compression: Compression,
    /// File or directory manifest.
    pub kind: DocKind,
}

/// Where the document's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// The whole document, inside the top block.
    Inline(Vec<u8>),
    /// A tree of index and data blocks. (Postcard writes a nested struct's fields in
    /// order with no framing, so `params` is the same bytes as its four fields inline;
    /// the test vectors hold that.)
    Tree {
        /// The numbers that fix the tree's shape.
        params: TreeParams,
        /// Levels of index blocks above the data blocks (0: `root` is a data block).
        depth: u8,
        /// The copies of the root (one when the root is a data block).
        root: Vec<ChildRef>,
    },
}

/// The payload of the block a URI names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopBlock {
    /// [`FORMAT_VERSION`].
    pub version: u8,
    /// What the document is.
    pub meta: Metadata,
    /// Where its bytes are.
    pub body: Body,
}

/// The payload of an index block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlock {
    /// [`FORMAT_VERSION`].
    pub version: u8,
    /// Height above the data blocks: 1 lists data blocks, 2 lists level-1 blocks, ...
    pub level: u8,
    /// Which copy of this index block this is (0-based).
    pub copy: u8,
    /// The children, in document order; above level 1, every copy of each child.
    pub children: Vec<ChildRef>,
    /// Level 1 only: the segment's check blocks, by recovery shard index.
    pub checks: Vec<ChildRef>,
}

/// One file of a directory manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative path, `/`-separated, no `.`/`..`/empty segments.
    pub path: String,
    /// The file's top block.
    pub keys: ChildRef,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's MIME type.
    pub mime: String,
}

/// A directory: relative paths to documents. Entries are sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub version: u8,
    /// The files.
    pub entries: Vec<ManifestEntry>,
}

/// Why a payload is not a valid format structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Unknown format version.
    #[error("unsupported format version {0}")]
    Version(u8),
    /// postcard could not decode it.
    #[error("undecodable: {0}")]
    Decode(String),
    /// Decoded, but a field is out of bounds or inconsistent.
    #[error("{0}")]
    Invalid(String),
}

fn check_version(payload: &[u8]) -> Result<(), FormatError> {
    match payload.first() {
        Some(&FORMAT_VERSION) => Ok(()),
        Some(&v) => Err(FormatError::Version(v)),
        None => Err(FormatError::Decode("empty payload".into())),
    }
}

fn decode_exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FormatError> {
    check_version(payload)?;
    let (value, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FormatError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::Decode("trailing bytes".into()));
    }
    Ok(value)
}

/// Number of data blocks of a document of `size` bytes (tree body).
pub fn data_blocks(size: u64) -> u64 {
    size.div_ceil(MAX_PAYLOAD as u64)
}

/// The numbers that fix a tree's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeParams {
    /// Children per index block above level 1.
    pub fanout: u16,
    /// Data blocks per segment.
    pub segment: u16,
    /// Check blocks per full segment.
    pub checks: u16,
    /// Copies of every index block.
    pub copies: u8,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            fanout: DEFAULT_FANOUT,
            segment: DEFAULT_SEGMENT,
            checks: DEFAULT_CHECKS,
            copies: DEFAULT_COPIES,
        }
    }
}

impl TreeParams {
    /// Whether every index block of such a tree fits one payload.
    pub fn is_valid(&self) -> bool {
        self.fanout >= 2
            && self.copies >= 1
            && self.fanout as usize * self.copies as usize <= MAX_ENTRIES
            && self.segment >= 2
            && self.segment as usize + self.checks as usize <= MAX_ENTRIES
    }

    /// Most data blocks under a node of `level` (1 for a data block), saturating.
    pub fn cover(&self, level: u8) -> u64 {
        match level {
            0 => 1,
            l => (self.segment as u64)
                .saturating_mul((self.fanout as u64).saturating_pow(l as u32 - 1)),
        }
    }

    /// Least depth whose tree holds `n` data blocks.
    pub fn depth_for(&self, n: u64) -> u8 {
        let mut depth = 0u8;
        while self.cover(depth) < n && depth < u8::MAX {
            depth += 1;
        }
        depth
    }

    /// Check blocks of a segment of `d` data blocks.
    pub fn checks_for(&self, d: u64) -> u64 {
        (d * self.checks as u64).div_ceil(self.segment as u64)
    }
}

impl TopBlock {
    /// Encodes to a payload (may exceed one block; the caller checks).
    pub fn to_payload(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing to a Vec cannot fail")
    }

    /// Decodes and validates a top block payload.
    pub fn from_payload(payload: &[u8]) -> Result<TopBlock, FormatError> {
        let top: TopBlock = decode_exact(payload)?;
        let m = &top.meta;
        if m.mime.len() > MAX_MIME_LEN {
            return Err(FormatError::Invalid("MIME type too long".into()));
        }
        if m.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
            return Err(FormatError::Invalid("name too long".into()));
        }
        match &top.body {
            Body::Inline(data) => {
                if data.len() as u64 != m.size {
                    return Err(FormatError::Invalid("inline size mismatch".into()));
                }
            }
            Body::Tree {
                params,
                depth,
                root,
            } => {
                if !params.is_valid() {
                    return Err(FormatError::Invalid(format!("tree parameters {params:?}")));
                }
                if m.size == 0 || *depth != params.depth_for(data_blocks(m.size)) {
                    return Err(FormatError::Invalid("tree depth does not fit size".into()));
                }
                let want = if *depth == 0 {
                    1
                } else {
                    params.copies as usize
                };
                if root.len() != want {
                    return Err(FormatError::Invalid("wrong number of root copies".into()));
                }
            }
        }
        Ok(top)
    }
}

impl IndexBlock {
    /// Encodes to a payload.
    pub fn to_payload(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing to a Vec cannot fail")
    }

    /// Decodes an index block payload (the shape is checked by the decoder).
    pub fn from_payload(payload: &[u8]) -> Result<IndexBlock, FormatError> {
        decode_exact(payload)
    }
}

/// Why a manifest path is refused: a manifest is hostile input, and a path that climbs out
/// of the output directory must never be written.
pub fn check_path(path: &str) -> Result<(), FormatError> {
    let bad = |why: &str| Err(FormatError::Invalid(format!("unsafe path {path:?}: {why}")));
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return bad("empty or too long");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("empty, . or .. segment");
        }
        if seg.chars().any(|c| c == '\\' || c.is_control()) {
            return bad("backslash or control character");
        }
        // A drive prefix like `C:` would make a Windows path absolute.
        if seg.len() >= 2 && seg.as_bytes()[1] == b':' {
            return bad("drive prefix");
        }
    }
    Ok(())
}

impl Manifest {
    /// Encodes to bytes (a document of its own).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing to a Vec cannot fail")
    }

    /// Decodes and validates a manifest: safe paths, sorted, unique, no file that is also
    /// a directory of another.
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let m: Manifest = decode_exact(bytes)?;
        for e in &m.entries {
            check_path(&e.path)?;
            if e.mime.len() > MAX_MIME_LEN {
                return Err(FormatError::Invalid("MIME type too long".into()));
            }
        }
        for w in m.entries.windows(2) {
            if w[0].path >= w[1].path {
                return Err(FormatError::Invalid(
                    "entries not sorted or repeated".into(),
                ));
            }
        }
        let paths: std::collections::BTreeSet<&str> =
            m.entries.iter().map(|e| e.path.as_str()).collect();
        for e in &m.entries {
            let mut p = e.path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                if paths.contains(parent) {
                    return Err(FormatError::Invalid(format!(
                        "{parent:?} is both a file and a directory"
                    )));
                }
                p = parent;
            }
        }
        Ok(m)
    }

    /// The entry at exactly `path`.
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Entries under the directory `dir` (all entries when `dir` is empty), with paths
    /// made relative to it.
    pub fn subdir(&self, dir: &str) -> Vec<ManifestEntry> {
        if dir.is_empty() {
            return self.entries.clone();
        }
        let prefix = format!("{dir}/");
        self.entries
            .iter()
            .filter_map(|e| {
                e.path.strip_prefix(&prefix).map(|rest| ManifestEntry {
                    path: rest.to_string(),
                    ..e.clone()
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
