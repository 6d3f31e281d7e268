//! The anonymity walk's cost on a real network: 20 in-process `veild` nodes on loopback
//! (a ring with chords), blocks inserted through node 0 (one replica each, so almost
//! none is held where it is fetched), then fetched through node 10 on one tunnel, 32 in
//! flight, as a download does. Run once with the walk off and once on (the default 0.75),
//! same network shape, locations and blocks, and prints blocks/s, MB/s and the median latency of a
//! lone fetch for each, with the ratio.
//!
//! Run: `cargo bench -p veil-tests --bench walk` (release). `VEIL_BENCH_WALK_BLOCKS` sets
//! the number of blocks (default 600, about 19 MiB).

use anyhow::Context;
use std::time::Instant;
use veil_proto::router::DEFAULT_WALK_PROBABILITY;
use veil_tests::{bench_record, random_block, Testnet, Topology};

const NODES: usize = 20;

fn edges() -> Vec<(usize, usize)> {
    let mut e = Vec::new();
    for i in 0..NODES {
        for j in [(i + 1) % NODES, (i + 2) % NODES, (i * 7 + 5) % NODES] {
            let (a, b) = (i.min(j), i.max(j));
            if a != b && !e.contains(&(a, b)) {
                e.push((a, b));
            }
        }
    }
    e
}

struct Figures {
    blocks_per_sec: f64,
    median_ms: f64,
}

async fn measure(walk: f64, blocks: usize) -> anyhow::Result<Figures> {
    // The same locations in both runs, so the same blocks land on the same nodes.
    let net = Testnet::start_with(NODES, Topology::Edges(edges()), |i, c| {
        c.location = Some(i as f64 / NODES as f64);
        c.walk_probability = walk;
        c.replicas = 1;
        c.index_replicas = 1;
        c.store_bytes = 1 << 30;
        c.cache_bytes = 1 << 30;
    })
    .await?;
    let (origin, reader) = (net.node(0).clone(), net.node(10).clone());
    // A failed fetch names the block, where its key lies and which nodes hold it.
    let holders = {
        let nodes: Vec<_> = (0..NODES).map(|i| net.node(i).clone()).collect();
        move |k: &veil_proto::RoutingKey| {
            let held: Vec<String> = (0..NODES)
                .filter(|&i| nodes[i].store_contains(k))
                .map(|i| format!("{i} at {:.3}", nodes[i].location().as_fraction()))
                .collect();
            format!(
                "key at {:.3}, held by [{}]",
                veil_proto::Location::of_key(k).as_fraction(),
                held.join(", ")
            )
        }
    };
    let mut keys = Vec::with_capacity(blocks);
    for i in 0..blocks {
        let (k, b) = random_block(9_000_000 + i as u64, 32 * 1024);
        origin.insert(k, b, None, None).await?;
        keys.push(k);
    }
    // A lone fetch's latency: the first 40 blocks, one at a time.
    let tunnel: u64 = rand::random();
    let mut ms = Vec::new();
    for &k in &keys[..40.min(blocks)] {
        let t = Instant::now();
        reader
            .fetch_in(k, None, Some(tunnel))
            .await
            .with_context(|| format!("walk {walk}, lone fetch: {}", holders(&k)))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    // Throughput: the rest, 32 in flight, all on the same tunnel.
    let rest: Vec<_> = keys[40.min(blocks)..].to_vec();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for chunk in rest.chunks(rest.len().div_ceil(32).max(1)) {
        let (reader, chunk, holders) = (reader.clone(), chunk.to_vec(), holders.clone());
        set.spawn(async move {
            for k in chunk {
                reader
                    .fetch_in(k, None, Some(tunnel))
                    .await
                    .with_context(|| format!("walk {walk}, fetch in flight: {}", holders(&k)))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let secs = start.elapsed().as_secs_f64();
    net.shutdown().await;
    Ok(Figures {
        blocks_per_sec: rest.len() as f64 / secs,
        median_ms: ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN),
    })
}

fn main() -> anyhow::Result<()> {
    let blocks: usize = std::env::var("VEIL_BENCH_WALK_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
        .max(80);
    let rt = tokio::runtime::Runtime::new()?;
    let off = rt.block_on(measure(0.0, blocks))?;
    let on = rt.block_on(measure(DEFAULT_WALK_PROBABILITY, blocks))?;
    let mb = |bps: f64| bps * veil_proto::BLOCK_LEN as f64 / 1e6;
    for (name, f) in [("walk off", &off), ("walk on (0.75)", &on)] {
        println!(
            "{NODES}-node testnet, fetch at node 10, {name:<15}: {:6.0} blocks/s, {:6.1} MB/s, lone fetch median {:.2} ms",
            f.blocks_per_sec,
            mb(f.blocks_per_sec),
            f.median_ms
        );
    }
    println!(
        "walk on / off: throughput {:.2}, lone fetch latency {:.2}",
        on.blocks_per_sec / off.blocks_per_sec,
        on.median_ms / off.median_ms
    );
    bench_record("walk_off_fetch", mb(off.blocks_per_sec), "MB/s");
    bench_record("walk_on_fetch", mb(on.blocks_per_sec), "MB/s");
    bench_record(
        "walk_on_over_off_fetch",
        on.blocks_per_sec / off.blocks_per_sec,
        "ratio",
    );
    bench_record("walk_off_latency_median", off.median_ms, "ms");
    bench_record("walk_on_latency_median", on.median_ms, "ms");
    Ok(())
}
