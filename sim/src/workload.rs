//! The workload: the blocks inserted, the order of inserts and requests in virtual time,
//! key popularity (uniform or Zipf), node failures and churn.

use crate::event::{Action, Nanos};
use crate::params::{Params, Popularity};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use veil_proto::block::{self, Block};
use veil_proto::keys::RoutingKey;

/// A hasher for routing keys and request ids, which are already uniformly random: it
/// keeps the first eight bytes written. Key indices (small consecutive integers) are
/// spread over the whole word by Fibonacci hashing instead, as the hash table's probe
/// reads the top bits as well as the bottom ones. Fast, and the same in every run.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, _: usize) {
        // Length prefixes of fixed-size keys carry nothing.
    }
}

/// How the simulated keys are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// Key `i` is SHA-256 of a label, the seed and `i`: uniformly random routing keys at
    /// the cost of one short hash each. The default.
    Hashed,
    /// Key `i` is the routing key of a real CHK block whose payload is the seed and `i`
    /// (`--chk-keys`): the keys of every figure measured before hashed keys became the
    /// default, so those runs are reproduced bit for bit. Encoding a 32 KiB block per
    /// key costs about 4 s per 100,000 keys on two cores.
    Chk,
    /// As `Chk`, and each block is that real block (32 KiB each), for `--full-verify`.
    ChkBlocks,
}

impl KeyMode {
    /// How a run's keys are made: real blocks for `--full-verify`, CHK keys for
    /// `--chk-keys`, hashed keys otherwise.
    pub fn of(params: &Params) -> KeyMode {
        if params.full_verify {
            KeyMode::ChkBlocks
        } else if params.chk_keys {
            KeyMode::Chk
        } else {
            KeyMode::Hashed
        }
    }
}

/// The inserted blocks.
#[derive(Clone)]
pub struct Keys {
    /// Block `i`.
    pub blocks: Vec<Block>,
    /// Routing key of block `i`.
    pub routing: Vec<RoutingKey>,
    /// Each routing key's index: nodes keep indices, not keys or blocks.
    index: HashMap<RoutingKey, u32, BuildHasherDefault<KeyHasher>>,
}

impl Keys {
    /// Makes `count` distinct keys from the seed, with a block for each. Unless `mode` is
    /// `ChkBlocks`, the blocks are windows onto one shared buffer, distinct by address
    /// (which is all the identity check looks at), so a million keys take a megabyte
    /// rather than 32 GB. CHK encoding runs on every core; the result does not depend on
    /// how many.
    pub fn generate(count: usize, seed: u64, mode: KeyMode) -> Keys {
        let made: Vec<(RoutingKey, Option<Block>)> = match mode {
            KeyMode::Hashed => (0..count)
                .map(|i| (hashed_key(seed, i as u64), None))
                .collect(),
            KeyMode::Chk | KeyMode::ChkBlocks => chk_keys(count, seed, mode == KeyMode::ChkBlocks),
        };
        // Leaked on purpose (a megabyte per million keys, once per run): blocks on a
        // static buffer are cloned and dropped without touching a reference count,
        // one that the two threads of a run beside its greedy baseline would otherwise
        // share.
        let shared: &'static [u8] = Vec::leak(vec![0u8; block::BLOCK_LEN + count]);
        let mut blocks = Vec::with_capacity(count);
        let mut routing = Vec::with_capacity(count);
        let mut index = HashMap::default();
        index.reserve(count);
        for (i, (key, real)) in made.into_iter().enumerate() {
            let b = real.unwrap_or_else(|| {
                Block::new(bytes::Bytes::from_static(&shared[i..i + block::BLOCK_LEN]))
                    .expect("a block's length")
            });
            index.insert(key, u32::try_from(i).expect("fewer than 2^32 keys"));
            blocks.push(b);
            routing.push(key);
        }
        Keys {
            blocks,
            routing,
            index,
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Whether `block` is the very block made for `key`. Blocks in the simulator are
    /// shared, never copied or forged, so identity stands in for the hash.
    pub fn is_canonical(&self, key: &RoutingKey, block: &Block) -> bool {
        self.index_of(key).is_some_and(|i| {
            self.blocks[i as usize].as_bytes().as_ptr() == block.as_bytes().as_ptr()
        })
    }

    /// The index of the block under `key`, if it is one of these.
    pub fn index_of(&self, key: &RoutingKey) -> Option<u32> {
        self.index.get(key).copied()
    }
}

/// Key `i` of a hashed key set.
fn hashed_key(seed: u64, i: u64) -> RoutingKey {
    let mut h = Sha256::new();
    h.update(b"veil-sim key\0");
    h.update(seed.to_le_bytes());
    h.update(i.to_le_bytes());
    RoutingKey(h.finalize().into())
}

/// The routing keys of `count` real CHK blocks (payload: the seed and the index),
/// encoded on every core, with the blocks themselves if `keep_blocks`.
fn chk_keys(count: usize, seed: u64, keep_blocks: bool) -> Vec<(RoutingKey, Option<Block>)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(|i| {
                            let mut payload = [0u8; 16];
                            payload[..8].copy_from_slice(&seed.to_le_bytes());
                            payload[8..].copy_from_slice(&(i as u64).to_le_bytes());
                            let (b, k) = block::encode(&payload).expect("16 bytes fit a block");
                            (k.routing, keep_blocks.then_some(b))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("key generation thread"))
            .collect()
    })
}

/// Draws key indices by popularity.
#[derive(Clone)]
pub struct KeyPicker {
    /// Cumulative weights, for Zipf; empty for uniform.
    cdf: Vec<f64>,
    count: usize,
}

impl KeyPicker {
    /// A picker over `count` keys.
    pub fn new(params: &Params, count: usize) -> KeyPicker {
        let cdf = match params.popularity {
            Popularity::Uniform => Vec::new(),
            Popularity::Zipf => {
                let mut acc = 0.0;
                (1..=count)
                    .map(|i| {
                        acc += 1.0 / (i as f64).powf(params.zipf_exponent);
                        acc
                    })
                    .collect()
            }
        };
        KeyPicker { cdf, count }
    }

    /// One key index.
    pub fn pick(&self, rng: &mut ChaCha8Rng) -> u32 {
        if self.cdf.is_empty() {
            return rng.gen_range(0..self.count) as u32;
        }
        let total = *self.cdf.last().unwrap_or(&1.0);
        let x = rng.gen::<f64>() * total;
        self.cdf.partition_point(|c| *c <= x).min(self.count - 1) as u32
    }
}

/// Virtual time the workload phases start at.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// When requests start.
    pub requests_start: Nanos,
    /// When the last request is issued.
    pub requests_end: Nanos,
}

/// Mean pause between two swaps a simulated darknet node starts over the wire, as
/// `veild`'s `swap_interval_ms` default.
pub const SWAP_INTERVAL: Nanos = 10_000_000_000;

/// Puts the workload on the heap through `at` (the engine's `schedule`): the first insert and the first request (each
/// schedules the next), the failure and the churn.
pub fn schedule(
    params: &Params,
    key_count: usize,
    rng: &mut ChaCha8Rng,
    mut at: impl FnMut(Nanos, Action),
) -> Timeline {
    let gap = params.interval_nanos();
    const MINUTE: Nanos = 60_000_000_000;
    let mut start: Nanos = 0;
    if params.topology == crate::topology::Topology::Opennet {
        // Nodes come up one by one, ten a second, each knowing only a seed.
        let join_gap: Nanos = 100_000_000;
        for node in 0..params.nodes {
            at(
                node as Nanos * join_gap,
                Action::Bootstrap { node: node as u32 },
            );
        }
        start = params.nodes as Nanos * join_gap + MINUTE;
        // Warm-up: keys of its own inserted, then requested, while folding reshapes.
        let warm_keys = params.warmup_keys();
        let warm_requests = params.warmup_requests();
        if warm_keys > 0 && warm_requests > 0 {
            let end = (key_count + warm_keys) as u32;
            at(
                start,
                Action::Insert {
                    key: key_count as u32,
                    end,
                },
            );
            start += warm_keys as Nanos * gap + MINUTE / 2;
            at(
                start,
                Action::Warmup {
                    left: warm_requests as u32 - 1,
                },
            );
            start += warm_requests as Nanos * gap + MINUTE / 2;
        }
    }
    if params.topology == crate::topology::Topology::Darknet
        && params.swap_mode == crate::params::SwapMode::Wire
    {
        // The routers swap on their own timers, one attempt per node per 10 s on
        // average (the daemon's default): give them that long, then stop them, so the workload runs on
        // fixed locations as it does after offline swapping (swapping on while data is
        // stored and fetched moves nodes away from what they hold: docs/sim.md).
        start += params.swaps_per_node as Nanos * SWAP_INTERVAL;
        at(start, Action::StopSwaps);
        start += MINUTE / 2;
    }
    if key_count > 0 {
        at(
            start,
            Action::Insert {
                key: 0,
                end: key_count as u32,
            },
        );
    }
    // Inserts settle well within a minute of virtual time (timeouts are seconds).
    let fail_at = start + key_count as Nanos * gap + MINUTE;
    if params.fail_fraction > 0.0 {
        at(
            fail_at,
            Action::Fail {
                fraction: params.fail_fraction,
            },
        );
    }
    let requests_start = fail_at + 1_000_000_000;
    if params.requests > 0 {
        at(requests_start, Action::Request { index: 0 });
    }
    let requests_end = requests_start + params.requests as Nanos * gap;
    let window = (requests_end - requests_start).max(1);
    let leaving = (params.churn * params.nodes as f64).round() as usize;
    for _ in 0..leaving {
        let node = rng.gen_range(0..params.nodes) as u32;
        let leave = requests_start + rng.gen_range(0..window);
        let back = leave + rng.gen_range(0..window / 4 + 1);
        at(leave, Action::Leave { node });
        at(back, Action::Join { node });
    }
    Timeline {
        requests_start,
        requests_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use veil_proto::message::{Message, RequestId};

    #[test]
    fn zipf_prefers_the_first_keys() {
        let mut p = Params::new(10, 10, 1);
        p.popularity = Popularity::Zipf;
        let picker = KeyPicker::new(&p, 100);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0u32; 100];
        for _ in 0..10_000 {
            counts[picker.pick(&mut rng) as usize] += 1;
        }
        // P(first) = 1/H(100) ≈ 0.19; P(tenth) ≈ 0.019.
        assert!((1700..2200).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9]);
    }

    #[test]
    fn hashed_keys_are_frozen_distinct_and_seeded() {
        let a = Keys::generate(1000, 1, KeyMode::Hashed);
        let distinct: std::collections::HashSet<_> = a.routing.iter().collect();
        assert_eq!(distinct.len(), 1000);
        assert_eq!(a.routing, Keys::generate(1000, 1, KeyMode::Hashed).routing);
        let b = Keys::generate(1000, 2, KeyMode::Hashed);
        assert!(a.routing.iter().zip(&b.routing).all(|(x, y)| x != y));
        // Published figures depend on these keys: SHA-256("veil-sim key\0" ‖ seed ‖ i).
        assert_eq!(
            hex(&a.routing[0].0),
            "db84fd7aa6ed2057627f924990ae026e38d62a61efca7050528f6fb01ae480cf"
        );
        for i in 0..1000 {
            assert!(a.is_canonical(&a.routing[i], &a.blocks[i]));
            assert!(!a.is_canonical(&a.routing[i], &a.blocks[(i + 1) % 1000]));
        }
    }

    /// Key indices are consecutive; their hashes must differ in the top bits too, which
    /// the hash table's probe compares first (a table of them would crawl otherwise).
    #[test]
    fn key_indices_hash_over_the_whole_word() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<KeyHasher>::default();
        let tops: std::collections::HashSet<u64> =
            (0..1024u32).map(|i| build.hash_one(i) >> 57).collect();
        assert_eq!(tops.len(), 128);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn shared_blocks_have_the_real_keys_and_stay_distinct() {
        let real = Keys::generate(50, 3, KeyMode::ChkBlocks);
        let shared = Keys::generate(50, 3, KeyMode::Chk);
        assert_eq!(
            real.routing, shared.routing,
            "the keys routed depend on the mode"
        );
        for i in 0..50 {
            assert!(shared.is_canonical(&shared.routing[i], &shared.blocks[i]));
            assert!(!shared.is_canonical(&shared.routing[i], &shared.blocks[(i + 1) % 50]));
            assert!(real.blocks[i].verify(&real.routing[i]).is_ok());
        }
        let distinct: std::collections::HashSet<_> = shared.routing.iter().collect();
        assert_eq!(distinct.len(), 50);
    }

    #[test]
    fn canonical_blocks_verify_and_others_do_not() {
        let keys = Keys::generate(3, 7, KeyMode::ChkBlocks);
        assert!(keys.is_canonical(&keys.routing[1], &keys.blocks[1]));
        assert!(!keys.is_canonical(&keys.routing[1], &keys.blocks[2]));
        // A copy with the same bytes is not the canonical block (nothing copies blocks).
        let msg = Message::Data {
            id: RequestId(1),
            block: keys.blocks[0].clone(),
        };
        let Message::Data { block: copy, .. } = Message::decode(&msg.encode()).unwrap() else {
            panic!("decoded another kind");
        };
        assert!(!keys.is_canonical(&keys.routing[0], &copy));
        assert!(copy.verify(&keys.routing[0]).is_ok());
    }
}
