//! End-to-end over a 25-node seeded small world, each node with about six peers: 100
//! documents of mixed sizes are published at random nodes and fetched, byte-identical,
//! from other random nodes; then half the nodes are killed at once and the documents are
//! fetched again from the survivors. `testnet_processes.rs` runs the same scenario with
//! `veild` processes and the `veil` CLI, and restarts the killed nodes.
//!
//! Blocks travel through each node's real HTTP API (`veil_client::ApiClient`), so the
//! client library, the API, the links and the routing core are all on the path.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use tokio::task::JoinSet;
use veil_client::{ApiClient, EncodeOptions};
use veil_node::NodeHandle;
use veil_proto::{topology, Uri};
use veil_tests::{Testnet, Topology};

const N: usize = 25;
const SEED: u64 = 25;
const DOCS: usize = 100;

/// Sizes that cover the edges of the block format, up to a few blocks plus index.
const SIZES: &[usize] = &[0, 1, 1000, 32_767, 32_768, 32_769, 70_000, 200_000];

fn document(i: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + i as u64);
    let mut data = vec![0u8; SIZES[i % SIZES.len()]];
    rng.fill_bytes(&mut data);
    data
}

async fn start() -> Testnet {
    let locations = topology::evenly_spaced(N, SEED);
    let edges = topology::small_world(N, 2, 1, SEED);
    let degree = 2.0 * edges.len() as f64 / N as f64;
    assert!((5.0..=7.0).contains(&degree), "mean degree {degree}");
    Testnet::start_with(N, Topology::Edges(edges), |i, c| {
        c.location = Some(locations[i].as_fraction());
    })
    .await
    .expect("testnet starts")
}

fn client(node: &NodeHandle) -> ApiClient {
    ApiClient::new(&node.api_url(), node.token()).expect("api client")
}

async fn publish(node: &NodeHandle, data: &[u8], i: usize) -> Uri {
    let opts = EncodeOptions::named(format!("doc-{i}.bin"));
    veil_client::encode(&client(node), data, &opts, |_| {})
        .await
        .expect("publish")
        .uri
}

async fn fetch(node: &NodeHandle, uri: &Uri) -> Result<Vec<u8>, String> {
    let source = client(node);
    let top = veil_client::fetch_top(&source, uri.keys)
        .await
        .map_err(|e| e.to_string())?;
    veil_client::decode::read_to_vec(source, top, 1 << 30)
        .await
        .map_err(|e| e.to_string())
}

/// Sum of the peers' requests received over the network's nodes: every visit of a
/// request to a node counts one hop, backtracking included.
async fn hops_and_requests(nodes: &[&NodeHandle]) -> (u64, u64) {
    let mut received = 0;
    let mut network_requests = 0;
    for n in nodes {
        let s = n.router_stats().await.expect("stats");
        received += s.requests_received;
        network_requests += s.local_requests - s.local_hits;
    }
    (received, network_requests)
}

/// Fetches every document from a random node of `alive`; returns the fraction that came
/// back byte-identical and the mean hops per network request.
async fn fetch_all(
    net: &Testnet,
    alive: &[usize],
    docs: &[(usize, Uri)],
    rng: &mut ChaCha8Rng,
) -> (f64, f64, Vec<String>) {
    let handles: Vec<&NodeHandle> = alive.iter().map(|&i| net.node(i)).collect();
    let (h0, r0) = hops_and_requests(&handles).await;
    let mut ok = 0;
    let mut failures = Vec::new();
    for (i, uri) in docs {
        let candidates: Vec<usize> = alive.iter().copied().filter(|&r| r != i % N).collect();
        let reader = *candidates.choose(rng).expect("a reader");
        match fetch(net.node(reader), uri).await {
            Ok(data) if data == document(*i) => ok += 1,
            Ok(_) => panic!("document {i} came back different"),
            Err(e) => failures.push(format!("doc {i} at node {reader}: {e}")),
        }
    }
    let (h1, r1) = hops_and_requests(&handles).await;
    let mean_hops = (h1 - h0) as f64 / (r1 - r0).max(1) as f64;
    (ok as f64 / docs.len() as f64, mean_hops, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_documents_survive_half_the_nodes_failing() {
    let started = Instant::now();
    let net = start().await;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);

    let mut docs = Vec::with_capacity(DOCS);
    for i in 0..DOCS {
        let publisher = rng.gen_range(0..N);
        let uri = publish(net.node(publisher), &document(i), i).await;
        docs.push((publisher, uri));
    }
    // Readers avoid the publisher: key the reader choice by document index.
    let docs: Vec<(usize, Uri)> = docs
        .into_iter()
        .enumerate()
        .map(|(i, (_, uri))| (i, uri))
        .collect();
    let everyone: Vec<usize> = (0..N).collect();
    let (before, hops_before, failures) = fetch_all(&net, &everyone, &docs, &mut rng).await;
    println!(
        "all {N} nodes up: {:.1}% of {DOCS} documents fetched, mean hops {hops_before:.2} ({:.1} s)",
        before * 100.0,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        before, 1.0,
        "with every node up all must be found: {failures:?}"
    );

    // Kill half the nodes at once.
    let mut order = everyone.clone();
    order.shuffle(&mut rng);
    let (dead, alive) = order.split_at(N / 2);
    let mut kills = JoinSet::new();
    for &d in dead {
        let h = net.node(d).clone();
        kills.spawn(async move { h.shutdown().await });
    }
    while kills.join_next().await.is_some() {}
    for &a in alive {
        for &d in dead {
            veil_tests::wait_for_peer(net.node(a), net.node(d).key(), false)
                .await
                .expect("dead peers noticed");
        }
    }

    let (after, hops_after, failures) = fetch_all(&net, alive, &docs, &mut rng).await;
    println!(
        "{} of {N} nodes killed: {:.1}% of documents survive, mean hops {hops_after:.2} ({:.1} s)",
        dead.len(),
        after * 100.0,
        started.elapsed().as_secs_f64()
    );
    for f in &failures {
        println!("  lost: {f}");
    }
    // Every insert visits up to max-HTL nodes and each caches it below max-3, and every
    // fetch above caches it again along its path, so in 25 nodes a block has many copies:
    // losing half the nodes must lose very few documents.
    assert!(after >= 0.9, "only {:.1}% survived", after * 100.0);
    net.shutdown().await;
}
