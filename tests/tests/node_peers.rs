//! Peer life: a silent peer is noticed as dead within seconds, and an outbound peer that
//! goes away is redialled and comes back.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use veil_node::link::{NOISE_PARAMS, PROLOGUE};
use veil_node::Node;
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::{Hello, Htl, Location, Message, NodeKey};
use veil_tests::{test_config, wait_for_peer, Testnet, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_within_seconds() -> anyhow::Result<()> {
    let net = Testnet::start_with(1, Topology::None, |_, c| {
        c.keepalive_ms = 100;
        c.dead_after_ms = 600;
    })
    .await?;
    let node = net.node(0);
    // A raw peer that completes the handshake and Hello, then never says a word again
    // (no pongs, no pings) while keeping the socket open.
    let kp = snow::Builder::new(NOISE_PARAMS.parse()?).generate_keypair()?;
    let mut hs = snow::Builder::new(NOISE_PARAMS.parse()?)
        .local_private_key(&kp.private)
        .remote_public_key(&node.key().0)
        .prologue(PROLOGUE)
        .build_initiator()?;
    let mut s = TcpStream::connect(node.address().addr).await?;
    let mut buf = vec![0u8; 65_535];
    let frame = |n: usize, buf: &[u8]| {
        let mut f = (n as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&buf[..n]);
        f
    };
    let n = hs.write_message(&[], &mut buf)?;
    s.write_all(&frame(n, &buf)).await?;
    let len = s.read_u16().await? as usize;
    let mut m2 = vec![0u8; len];
    s.read_exact(&mut m2).await?;
    hs.read_message(&m2, &mut buf)?;
    let n = hs.write_message(&[], &mut buf)?;
    s.write_all(&frame(n, &buf)).await?;
    let mut t = hs.into_transport_mode()?;
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        location: Location(5),
        listen_port: 0,
    });
    let mut out = vec![0u8; 1024];
    let n = t.write_message(&hello.encode(), &mut out)?;
    s.write_all(&frame(n, &out)).await?;
    let key = NodeKey(kp.public.as_slice().try_into()?);
    wait_for_peer(node, key, true).await?;
    let up = Instant::now();
    wait_for_peer(node, key, false).await?;
    let took = up.elapsed();
    assert!(
        // The silence watchdog fires between 3/4 and all of `dead_after` (600 ms).
        took >= Duration::from_millis(400),
        "dropped too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "dead peer noticed only after {took:?}"
    );
    drop(s);
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_peer_is_redialled() -> anyhow::Result<()> {
    let mut net = Testnet::start(2, Topology::Line).await?;
    let a = net.node(0).clone();
    let b = net.nodes.pop().expect("two nodes");
    let (b_key, b_addr) = (b.handle.key(), b.handle.address().addr);
    b.handle.shutdown().await;
    wait_for_peer(&a, b_key, false).await?;
    // B comes back on the same port with the same identity; A redials on its own.
    let mut config = test_config(b.dir.path());
    config.listen = b_addr;
    let b2 = Node::start(config).await?;
    assert_eq!(b2.key(), b_key);
    wait_for_peer(&a, b_key, true).await?;
    wait_for_peer(&b2, a.key(), true).await?;
    b2.shutdown().await;
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialled_links_are_renewed_with_a_fresh_handshake() -> anyhow::Result<()> {
    let net = Testnet::start_with(2, Topology::Line, |i, c| {
        if i == 0 {
            c.link_renew_ms = 1_000;
        }
    })
    .await?;
    let (a, b) = (net.node(0), net.node(1));
    let first = b.peers()[0].addr;
    // A new link shows at B as a new remote socket address for A.
    let mut w = b.watch_peers();
    tokio::time::timeout(
        veil_tests::WAIT,
        w.wait_for(|l| l.iter().any(|p| p.key == a.key() && p.addr != first)),
    )
    .await??;
    // And the renewed link (fresh: a second before its own renewal) carries requests.
    let (key, block) = veil_tests::random_block(21, 100);
    net.api(1).put_block(&key, &block, Some(0)).await?;
    wait_for_peer(a, b.key(), true).await?;
    assert_eq!(net.api(0).get_block(&key, Some(3)).await?, block);
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_dial_each_other_keep_one_link() -> anyhow::Result<()> {
    let net = Testnet::start(2, Topology::Edges(vec![(0, 1), (1, 0)])).await?;
    let (a, b) = (net.node(0), net.node(1));
    // Both ends settle on one and the same link: one side holds it as outbound, the
    // other as inbound. (Which one depends on timing: a dialer defers to a link its peer
    // already opened, and links crossing in flight keep the one the smaller key dialled.)
    let agreed = || {
        let (pa, pb) = (a.peers(), b.peers());
        pa.len() == 1 && pb.len() == 1 && pa[0].outbound != pb[0].outbound
    };
    let (mut wa, mut wb) = (a.watch_peers(), b.watch_peers());
    let settled = tokio::time::timeout(veil_tests::WAIT, async {
        while !agreed() {
            tokio::select! {
                r = wa.changed() => r?,
                r = wb.changed() => r?,
            }
        }
        anyhow::Ok(())
    })
    .await;
    anyhow::ensure!(
        matches!(settled, Ok(Ok(()))),
        "links did not settle: a={:?} b={:?}",
        a.peers(),
        b.peers()
    );
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_links_drops_no_request_in_flight() -> anyhow::Result<()> {
    // A line, so a request that lost its link would have no other way to go. Links are
    // renewed every 200 ms while fetches run back to back for two seconds.
    let net = Testnet::start_with(3, Topology::Line, |_, c| c.link_renew_ms = 200).await?;
    let mut blocks = Vec::new();
    for seed in 0..64u64 {
        let (key, block) = veil_tests::random_block(500 + seed, 200);
        net.node(2)
            .insert(key, block.clone(), Some(Htl(0)), None)
            .await?;
        blocks.push((key, block));
    }
    let renewed_before = net.node(1).counters().links_renewed.get();
    let started = Instant::now();
    let (mut ok, mut failed, mut next) = (0, 0, 0);
    // (Blocks come round again: what is tested here is the links, not the routing.)
    while started.elapsed() < Duration::from_secs(2) {
        let batch: Vec<_> = (0..8)
            .map(|i| blocks[(next + i) % blocks.len()].clone())
            .collect();
        next += batch.len();
        let fetches = batch.into_iter().map(|(key, block)| {
            let node = net.node(0).clone();
            async move {
                node.fetch(key, Some(Htl(3)))
                    .await
                    .is_ok_and(|b| b == block)
            }
        });
        for good in futures::future::join_all(fetches).await {
            if good {
                ok += 1;
            } else {
                failed += 1;
            }
        }
    }
    let renewed = net.node(1).counters().links_renewed.get() - renewed_before;
    println!("{ok} fetches, {failed} failed, across {renewed} link renewals at the middle node");
    assert!(renewed >= 4, "links were renewed only {renewed} times");
    assert_eq!(failed, 0, "requests were dropped by renewals");
    // Both links are still there, each once.
    assert_eq!(net.node(1).peers().len(), 2);
    net.shutdown().await;
    Ok(())
}
