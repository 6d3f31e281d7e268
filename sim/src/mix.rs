//! One cheap, well-mixed hash of a word, shared by the engine, the latency models and
//! churn (tunnels, per-pair latencies, orders drawn from a seed).

/// SplitMix64: a cheap, well-mixed hash of one word.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
