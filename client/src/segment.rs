//! The Reed–Solomon code of a segment: check blocks from data payloads, and missing data
//! payloads back from any as many blocks of the segment as it has data blocks.
//!
//! A segment is the data blocks one level-1 index block lists, with their check blocks
//! (see [`crate::format`]). The encoder makes its checks here; the decoder's rebuild
//! (`decode::Segment`) and the keepalive's repair fetch blocks and restore through here.
//! Pure computation: no fetching, no document types.

use std::collections::BTreeMap;
use veil_proto::MAX_PAYLOAD;

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
