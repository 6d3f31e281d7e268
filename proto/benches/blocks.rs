//! Block codec benchmark: prints raw SHA-256 and ChaCha20-Poly1305 throughput on 32 KiB
//! buffers, then block encode and verify throughput, and the ratio of encode to the bound
//! its primitives set (one AEAD pass over the frame plus two SHA-256 passes), all
//! measured in the same run on the same machine. The AEAD is the one blocks use
//! (`veil_proto::aead`, through `ring`); the pure-Rust `chacha20poly1305` crate, which
//! blocks used before, is measured beside it.
//!
//! Run: `cargo bench -p veil-proto --bench blocks`

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};
use veil_proto::block::{self, BLOCK_LEN, FRAME_LEN, MAX_PAYLOAD};

const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(300);

/// Runs `f` repeatedly for `ROUNDS` rounds; returns the median seconds per call and the
/// spread (max/min of the per-round means).
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..50 {
        f();
    }
    let mut per_call = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < ROUND_TIME {
            for _ in 0..16 {
                f();
            }
            n += 16;
        }
        per_call.push(start.elapsed().as_secs_f64() / n as f64);
    }
    per_call.sort_by(f64::total_cmp);
    (per_call[ROUNDS / 2], per_call[ROUNDS - 1] / per_call[0])
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn main() {
    let payload: Vec<u8> = (0..MAX_PAYLOAD).map(|i| (i * 31 + 7) as u8).collect();
    let mut frame = vec![0u8; FRAME_LEN];
    let mut out = vec![0u8; BLOCK_LEN];
    let aead = ChaCha20Poly1305::new(Key::from_slice(&[7; 32]));
    let (blk, keys) = block::encode(&payload).expect("encode");

    let (sha, sha_spread) = measure(|| {
        black_box(Sha256::digest(black_box(&payload)));
    });
    let (chacha, chacha_spread) = measure(|| {
        black_box(veil_proto::aead::seal(
            &[7; 32],
            [0; 12],
            b"",
            black_box(&mut frame),
        ));
    });
    let (rustcrypto, rustcrypto_spread) = measure(|| {
        let tag = aead
            .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), b"", black_box(&mut frame))
            .expect("encrypt");
        black_box(tag);
    });
    let (encode, encode_spread) = measure(|| {
        black_box(block::encode_into(black_box(&payload), &mut out).expect("encode"));
    });
    let (verify, verify_spread) = measure(|| {
        veil_proto::verify::verify(black_box(blk.as_bytes()), &keys.routing).expect("verify");
    });
    let (decrypt, decrypt_spread) = measure(|| {
        black_box(block::decrypt(black_box(blk.as_bytes()), &keys.data).expect("decrypt"));
    });

    // The bound: one AEAD pass over the frame and two SHA-256 passes (payload, block),
    // each at the speed just measured for 32 KiB.
    let bound = chacha * (FRAME_LEN as f64 / MAX_PAYLOAD as f64)
        + sha
        + sha * (BLOCK_LEN as f64 / MAX_PAYLOAD as f64);
    let rows = [
        ("sha256 (32 KiB)", mbps(MAX_PAYLOAD, sha), sha_spread),
        (
            "chacha20poly1305 (32 KiB)",
            mbps(FRAME_LEN, chacha),
            chacha_spread,
        ),
        (
            "  pure-Rust crate, beside it",
            mbps(FRAME_LEN, rustcrypto),
            rustcrypto_spread,
        ),
        ("block bound (aead + 2 sha)", mbps(MAX_PAYLOAD, bound), 1.0),
        ("block encode", mbps(MAX_PAYLOAD, encode), encode_spread),
        ("block verify", mbps(BLOCK_LEN, verify), verify_spread),
        ("block decrypt", mbps(MAX_PAYLOAD, decrypt), decrypt_spread),
    ];
    println!("{:<28} {:>10} {:>8}", "operation", "MB/s", "spread");
    for (name, rate, spread) in rows {
        println!("{name:<28} {rate:>10.0} {spread:>8.3}");
    }
    println!(
        "encode / bound ratio: {:.3}  (payload MB/s of encode over payload MB/s the primitives allow)",
        bound / encode
    );
    record("sha256", mbps(MAX_PAYLOAD, sha), "MB/s");
    record("chacha20poly1305", mbps(FRAME_LEN, chacha), "MB/s");
    record(
        "chacha20poly1305_pure_rust",
        mbps(FRAME_LEN, rustcrypto),
        "MB/s",
    );
    record("block_bound", mbps(MAX_PAYLOAD, bound), "MB/s");
    record("block_encode", mbps(MAX_PAYLOAD, encode), "MB/s");
    record("block_encode_over_bound", bound / encode, "ratio");
    record("block_verify", mbps(BLOCK_LEN, verify), "MB/s");
    record("block_decrypt", mbps(MAX_PAYLOAD, decrypt), "MB/s");
}

/// Records a figure for `bench/run` (a `name<TAB>value<TAB>unit` line appended to the
/// file `VEIL_BENCH_OUT` names, when set).
fn record(name: &str, value: f64, unit: &str) {
    if let Some(path) = std::env::var_os("VEIL_BENCH_OUT") {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{name}\t{value}\t{unit}"));
        if let Err(e) = written {
            eprintln!("cannot record {name}: {e}");
        }
    }
}
