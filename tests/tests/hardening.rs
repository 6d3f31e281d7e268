//! A node keeps serving while its ports are flooded from loopback: a new peer links while
//! the peer port is churned by a connection flood; the API answers `veil` with 20,000 idle
//! connections open against it; idle connections and random bytes on the peer port leave
//! routing working. The floods run in `veil-flood` child processes, so their sockets do
//! not count against this process's descriptor limit.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use veil_node::Node;
use veil_tests::{random_block, test_config, veil, wait_for_peer, DataDir, Testnet, Topology};

/// A running `veil-flood`; killed when dropped.
struct Flood(Child);

impl Flood {
    fn start(mode: &str, addr: SocketAddr, n: usize, secs: u64) -> anyhow::Result<Flood> {
        let child = Command::new(env!("CARGO_BIN_EXE_veil-flood"))
            .args([mode, &addr.to_string(), &n.to_string(), &secs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning veil-flood")?;
        Ok(Flood(child))
    }

    /// Reads the flood's first line (idle mode: `open N` once every connection is up).
    fn first_line(&mut self) -> anyhow::Result<String> {
        let out = self.0.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        Ok(line.trim().to_string())
    }

    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) until `f` holds, checking every few milliseconds.
async fn until(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + veil_tests::WAIT;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_peer_links_while_the_peer_port_is_flooded() -> anyhow::Result<()> {
    let (da, db) = (DataDir::new()?, DataDir::new()?);
    let a = Node::start(test_config(da.path())).await?;
    // Connections as fast as one process can open them, the newest 1,000 held open: far
    // more than the node's handshake slots, for longer than the handshake timeout.
    let mut flood = Flood::start("churn", a.address().addr, 1_000, 30)?;
    until("the flood to fill every handshake slot", || {
        a.counters().handshakes_evicted.get() > 1_000
    })
    .await?;
    let mut config = test_config(db.path());
    config.peers = vec![a.address()];
    let started = Instant::now();
    let b = Node::start(config).await?;
    wait_for_peer(&b, a.key(), true).await?;
    let took = started.elapsed();
    assert!(flood.running(), "the flood stopped before the peer linked");
    let evicted = a.counters().handshakes_evicted.get();
    println!("linked in {took:?} under a flood; {evicted} pending handshakes evicted");
    assert!(took < Duration::from_secs(5), "linking took {took:?}");
    // The link carries requests while the flood goes on.
    let (key, block) = random_block(1, 1_000);
    a.insert(key, block.clone(), None, None).await?;
    assert_eq!(b.fetch(key, None).await?, block);
    assert!(flood.running());
    b.shutdown().await;
    a.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_with_20k_idle_connections_open() -> anyhow::Result<()> {
    let dir = DataDir::new()?;
    let node = veil_tests::VeildProcess::spawn(dir.path(), &[]).await?;
    let api_addr: SocketAddr = node
        .api
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    // Two processes of 10,000 each: 20,000 idle connections, none sending a byte.
    let mut floods = vec![
        Flood::start("idle", api_addr, 10_000, 120)?,
        Flood::start("idle", api_addr, 10_000, 120)?,
    ];
    let mut open = 0;
    for f in &mut floods {
        let line = f.first_line()?;
        open += line
            .strip_prefix("open ")
            .context("flood output")?
            .parse::<usize>()?;
    }
    assert_eq!(open, 20_000, "the floods could not open their connections");
    // Every `veil` command still answers, within seconds.
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || veil(&d, &["status"])
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    assert!(status.contains("peers"), "{status}");
    let (key, block) = random_block(2, 5_000);
    node.api.put_block(&key, &block, None).await?;
    assert_eq!(node.api.get_block(&key, None).await?, block);
    let took = started.elapsed();
    let evicted = node.api.metric("api_connections_evicted_total").await?;
    println!(
        "veil status, put and get in {took:?} with {open} idle connections; {evicted} evicted"
    );
    assert!(took < Duration::from_secs(10), "the API took {took:?}");
    // Connections the kernel completed but the node has not accepted yet wait in the
    // listen backlog; what the node did accept overflowed its room many times.
    assert!(evicted > 1_000, "evicted {evicted}");
    for f in &mut floods {
        assert!(
            f.running(),
            "a flood ended early, releasing its connections"
        );
    }
    drop(floods);
    node.terminate()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_random_bytes_leave_routing_working() -> anyhow::Result<()> {
    let net = Testnet::start(3, Topology::Line).await?;
    let middle = net.node(1).address().addr;
    let mut idle = Flood::start("idle", middle, 500, 60)?;
    assert_eq!(idle.first_line()?, "open 500");
    let _bytes = Flood::start("bytes", middle, 16, 60)?;
    until("random bytes to fail handshakes", || {
        net.node(1).counters().handshake_failures.get() >= 16
    })
    .await?;
    // Inserted at one end, fetched at the other: every block crosses the middle node.
    for seed in 0..10 {
        let (key, block) = random_block(100 + seed, 2_000);
        net.node(0).insert(key, block.clone(), None, None).await?;
        assert_eq!(
            net.node(2).fetch(key, Some(veil_proto::Htl(3))).await?,
            block
        );
    }
    assert!(idle.running());
    assert_eq!(net.node(1).peers().len(), 2, "the middle node lost a peer");
    net.shutdown().await;
    Ok(())
}
