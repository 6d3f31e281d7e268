//! Rebuilding lost data blocks from a segment's Reed–Solomon check blocks.
//!
//! A segment is the data blocks one level-1 index block lists, with their check blocks
//! (see [`crate::format`]). When a data block cannot be fetched or fails verification,
//! the decoder asks its segment to rebuild it: the segment fetches its other blocks until
//! it holds as many as it has data blocks, decodes the missing payloads once, and hands
//! each waiting data block its own. A rebuilt payload is accepted only if it hashes to the
//! data key the index lists, so bad check blocks cannot smuggle in other content.

use crate::decode::{corrupt, fetch_payload, DecodeError, Position, Shape};
use crate::format::ChildRef;
use crate::source::BlockSource;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::sync::Mutex;
use veil_proto::{block, MAX_PAYLOAD};

/// Blocks fetched at once while rebuilding.
const REBUILD_WINDOW: usize = 32;

/// Reed–Solomon works on each byte position independently (in 64-byte groups), so the
/// shards are coded in columns of this many bytes: the coder's work buffers then hold
/// `segment + checks` columns rather than whole 32 KiB shards (4 MiB instead of 32 MiB).
const COLUMN: usize = 4096;

/// The `c` check payloads of the (zero-padded, 32 KiB) data payloads `originals`.
pub(crate) fn encode_checks(
    originals: &[Vec<u8>],
    c: usize,
) -> Result<Vec<Vec<u8>>, reed_solomon_simd::Error> {
    let d = originals.len();
    let mut checks = vec![vec![0u8; MAX_PAYLOAD]; c];
    let mut encoder = reed_solomon_simd::ReedSolomonEncoder::new(d, c, COLUMN)?;
    for col in (0..MAX_PAYLOAD).step_by(COLUMN) {
        encoder.reset(d, c, COLUMN)?;
        for p in originals {
            encoder.add_original_shard(&p[col..col + COLUMN])?;
        }
        let result = encoder.encode()?;
        for (check, shard) in checks.iter_mut().zip(result.recovery_iter()) {
            check[col..col + COLUMN].copy_from_slice(shard);
        }
    }
    Ok(checks)
}

/// Restores the missing ones of `d` original payloads from those at hand (`originals`,
/// by index) and check payloads (`recovery`, by index); returns the restored ones.
pub(crate) fn decode_missing(
    d: usize,
    c: usize,
    originals: &BTreeMap<usize, Vec<u8>>,
    recovery: &BTreeMap<usize, Vec<u8>>,
) -> Result<BTreeMap<usize, Vec<u8>>, reed_solomon_simd::Error> {
    let mut restored: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    if originals.len() == d {
        return Ok(restored);
    }
    let mut decoder = reed_solomon_simd::ReedSolomonDecoder::new(d, c, COLUMN)?;
    for col in (0..MAX_PAYLOAD).step_by(COLUMN) {
        decoder.reset(d, c, COLUMN)?;
        for (&k, p) in originals {
            decoder.add_original_shard(k, &p[col..col + COLUMN])?;
        }
        for (&k, p) in recovery {
            decoder.add_recovery_shard(k, &p[col..col + COLUMN])?;
        }
        for (k, shard) in decoder.decode()?.restored_original_iter() {
            restored.entry(k).or_insert_with(|| vec![0u8; MAX_PAYLOAD])[col..col + COLUMN]
                .copy_from_slice(shard);
        }
    }
    Ok(restored)
}

/// The outcome of a rebuild, shared by every data block of the segment.
#[derive(Debug)]
enum Rebuilt {
    /// Payloads (zero-padded) by index within the segment.
    Done(Mutex<BTreeMap<usize, Vec<u8>>>),
    /// Too few blocks could be fetched.
    Failed { found: usize, needed: usize },
}

/// One segment of a document: data blocks, check blocks, and a rebuild done at most once.
#[derive(Debug)]
pub struct Segment {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: usize, seed: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                (0..MAX_PAYLOAD)
                    .map(|j| {
                        ((j as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15 + i as u64) >> 56)
                            as u8
                    })
                    .collect()
            })
            .collect()
    }

    /// Coding in columns gives the same check blocks as coding whole shards, so the
    /// format is plain Reed–Solomon over 32 KiB shards.
    #[test]
    fn columns_equal_whole_shards() {
        let originals = shards(7, 1);
        let whole = reed_solomon_simd::encode(7, 4, &originals).unwrap();
        assert_eq!(encode_checks(&originals, 4).unwrap(), whole);
    }

    #[test]
    fn any_d_of_d_plus_c_restore() {
        let originals = shards(6, 2);
        let checks = encode_checks(&originals, 3).unwrap();
        // Lose originals 0, 2 and 5; keep checks 0, 1 and 2.
        let have: BTreeMap<_, _> = [1, 3, 4].map(|k| (k, originals[k].clone())).into();
        let rec: BTreeMap<_, _> = (0..3).map(|k| (k, checks[k].clone())).collect();
        let restored = decode_missing(6, 3, &have, &rec).unwrap();
        assert_eq!(restored.len(), 3);
        for k in [0, 2, 5] {
            assert_eq!(restored[&k], originals[k]);
        }
        // One fewer is not enough.
        let rec: BTreeMap<_, _> = (0..2).map(|k| (k, checks[k].clone())).collect();
        assert!(decode_missing(6, 3, &have, &rec).is_err());
    }
}
