//! Load management: in a network of 12 nodes, one peer floods requests and inserts as
//! fast as its links take them, and the others' fetches still succeed at ≥ 95% of their
//! rate without the flood (both printed).
//!
//! The flooder is a raw peer linked to three nodes that never routes anything: it sends
//! `Request`s for fresh random keys (each one travels the whole network before it fails)
//! and `Insert`s of valid blocks under fresh keys, waiting only for room in its link's
//! send queue. Each phase fetches its own distinct blocks, from a node far from where they
//! were inserted, so nothing is answered from a cache the other phase warmed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use veil_node::identity::Identity;
use veil_node::link::{self, LinkParams};
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::{Hello, Htl, Location, Message, RequestId, RoutingKey};
use veil_tests::{random_block, Testnet, Topology};

const NODES: usize = 12;
/// Distinct blocks fetched per phase.
const FETCHES: usize = 48;

/// Ring plus chords to the node three ahead: degree 4, diameter 3.
fn edges() -> Vec<(usize, usize)> {
    (0..NODES)
        .flat_map(|i| [(i, (i + 1) % NODES), (i, (i + 3) % NODES)])
        .collect()
}

/// Inserts `FETCHES` fresh blocks (seeds from `base`) at node `i % NODES` and fetches
/// each from the node opposite; returns the fractions of inserts that routed and of
/// blocks fetched.
async fn phase(net: &Testnet, base: u64) -> anyhow::Result<(f64, f64)> {
    let mut blocks = Vec::new();
    let mut inserted = 0;
    for s in 0..FETCHES as u64 {
        let (key, block) = random_block(base + s, 4_000);
        let at = (s as usize) % NODES;
        match net.node(at).insert(key, block.clone(), None, None).await {
            Ok(_) => inserted += 1,
            Err(e) => eprintln!("insert {s} at node {at}: {e}"),
        }
        blocks.push((at, key, block));
    }
    let mut ok = 0;
    // Eight fetches at a time, as a reader's client would run them.
    for chunk in blocks.chunks(8) {
        let fetches = chunk.iter().map(|(at, key, block)| {
            let node = net.node((at + NODES / 2) % NODES).clone();
            let (key, block) = (*key, block.clone());
            async move { node.fetch(key, None).await.is_ok_and(|b| b == block) }
        });
        ok += futures::future::join_all(fetches)
            .await
            .into_iter()
            .filter(|&b| b)
            .count();
    }
    Ok((inserted as f64 / FETCHES as f64, ok as f64 / FETCHES as f64))
}

/// Floods one node until `stop`, over a link under a fresh identity each time the node
/// drops the last one (as an opennet attacker would); counts messages and identities.
async fn flood(
    addr: std::net::SocketAddr,
    key: veil_proto::NodeKey,
    blocks: Arc<Vec<(RoutingKey, veil_proto::Block)>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    identities: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        location: Location(7),
        listen_port: 0,
    };
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let me = Identity::generate();
        let Ok(link) = link::dial(addr, key, &me, hello, LinkParams::default()).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        identities.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(1024);
        let handle = link.spawn((), tx);
        // Replies are read and thrown away, so the node's sends never stall on us.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let id = RequestId(rand::random());
            let msg = if n % 4 == 0 {
                // An insert of a valid block (the node verifies it: real work).
                let (key, block) = &blocks[(n / 4) as usize % blocks.len()];
                Message::Insert {
                    id,
                    key: *key,
                    htl: Htl(18),
                    replicas: 16,
                    stored: 0,
                    block: block.clone(),
                }
            } else {
                Message::Request {
                    id,
                    key: RoutingKey(rand::random()),
                    htl: Htl(18),
                }
            };
            if !handle.send_when_room(msg).await {
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_does_not_starve_the_others() -> anyhow::Result<()> {
    let net = Testnet::start(NODES, Topology::Edges(edges())).await?;
    let t = Instant::now();
    let (ins_before, before) = phase(&net, 1_000).await?;
    let quiet = t.elapsed();

    let blocks: Arc<Vec<_>> = Arc::new((0..64).map(|s| random_block(50_000 + s, 30_000)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let identities = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    for i in [0, 4, 8] {
        let node = net.node(i);
        floods.push(tokio::spawn(flood(
            node.address().addr,
            node.key(),
            blocks.clone(),
            stop.clone(),
            sent.clone(),
            identities.clone(),
        )));
    }
    // The flood is under way before the measured phase begins.
    let t = Instant::now();
    while sent.load(Ordering::Relaxed) < 2_000 {
        assert!(t.elapsed() < veil_tests::WAIT, "the flood did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let (ins_during, during) = phase(&net, 2_000).await?;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.await??;
    }
    let flood_msgs = sent.load(Ordering::Relaxed);
    let (mut rejected, mut flooders, mut banned) = (0, 0, 0);
    for i in 0..NODES {
        // What an operator sees: the status's defence counters.
        let d = net.node(i).status().await?.defence;
        rejected += d.rejected_overload;
        flooders += d.flooders;
        banned += d.peers_banned;
    }
    let identities = identities.load(Ordering::Relaxed);
    println!(
        "fetch success without flood {before:.3}, with flood {during:.3} \
         ({:.0}% of it); flood sent {flood_msgs} messages in {took:.1?} under \
         {identities} identities; {rejected} rejected for overload, {flooders} flooders \
         dropped, {banned} peers banned; the phase took {quiet:.1?} without it; \
         inserts routed {ins_before:.3} without, {ins_during:.3} with the flood",
        100.0 * during / before.max(f64::MIN_POSITIVE)
    );
    assert!(flooders > 0 && banned > 0, "the flood went unnoticed");
    assert!(before >= 0.9, "the network fails without a flood: {before}");
    assert!(
        during >= 0.95 * before,
        "the flood took the others' service: {during} against {before}"
    );
    net.shutdown().await;
    Ok(())
}
