//! Node benchmark: link throughput against raw snow over loopback TCP (measured in the
//! same run), per-hop fetch latency, and block throughput across a three-node line.
//!
//! Run: `cargo bench -p veil-tests --bench node` (release). Sizes from the environment:
//! `VEIL_BENCH_MESSAGES` (per throughput run, default 20000), `VEIL_BENCH_RUNS`
//! (default 7), `VEIL_BENCH_FETCHES` (latency samples per hop count, default 300),
//! `VEIL_BENCH_BLOCKS` (line throughput, default 1500).

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use veil_node::identity::Identity;
use veil_node::link::{self, LinkEvent, LinkParams, NOISE_PARAMS, PROLOGUE};
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::{Hello, Htl, Location, Message, RequestId};
use veil_tests::{bench_record, random_block, Testnet, Topology};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn send_frame(s: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    s.write_all(&(body.len() as u16).to_be_bytes()).await?;
    s.write_all(body).await
}

async fn recv_frame(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let len = s.read_u16().await? as usize;
    s.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// A snow builder: as veild builds its links (snow's `ring-accelerated` resolver), or
/// with snow's pure-Rust resolver only (`pure_rust`), which links used before.
fn snow_builder(params: snow::params::NoiseParams, pure_rust: bool) -> snow::Builder<'static> {
    if pure_rust {
        snow::Builder::with_resolver(params, Box::new(snow::resolvers::DefaultResolver))
    } else {
        snow::Builder::new(params)
    }
}

/// Raw snow over loopback TCP: one task encrypts and writes, another reads and
/// decrypts, `n` messages of `plain_len` bytes. Returns plaintext bytes per second.
async fn raw_noise(n: usize, plain_len: usize, pure_rust: bool) -> anyhow::Result<f64> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse()?;
    let server_kp = snow_builder(params.clone(), pure_rust).generate_keypair()?;
    let client_kp = snow_builder(params.clone(), pure_rust).generate_keypair()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_priv = server_kp.private.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut hs = snow_builder(NOISE_PARAMS.parse()?, pure_rust)
            .local_private_key(&server_priv)
            .prologue(PROLOGUE)
            .build_responder()?;
        let mut buf = vec![0u8; 65_535];
        let mut out = vec![0u8; 65_535];
        let n1 = recv_frame(&mut s, &mut buf).await?;
        hs.read_message(&buf[..n1], &mut out)?;
        let n2 = hs.write_message(&[], &mut buf)?;
        send_frame(&mut s, &buf[..n2]).await?;
        let n3 = recv_frame(&mut s, &mut buf).await?;
        hs.read_message(&buf[..n3], &mut out)?;
        anyhow::Ok((s, hs.into_transport_mode()?))
    });
    let mut c = TcpStream::connect(addr).await?;
    c.set_nodelay(true)?;
    let mut hs = snow_builder(params, pure_rust)
        .local_private_key(&client_kp.private)
        .remote_public_key(&server_kp.public)
        .prologue(PROLOGUE)
        .build_initiator()?;
    let mut buf = vec![0u8; 65_535];
    let mut scratch = vec![0u8; 65_535];
    let m = hs.write_message(&[], &mut buf)?;
    send_frame(&mut c, &buf[..m]).await?;
    let m = recv_frame(&mut c, &mut buf).await?;
    hs.read_message(&buf[..m], &mut scratch)?;
    let m = hs.write_message(&[], &mut buf)?;
    send_frame(&mut c, &buf[..m]).await?;
    let mut tx_state = hs.into_transport_mode()?;
    let (s, mut rx_state) = server.await??;

    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut r = BufReader::with_capacity(256 * 1024, s);
        let mut ct = vec![0u8; 65_535];
        let mut pt = vec![0u8; 65_535];
        let mut total = 0usize;
        for _ in 0..n {
            let len = r.read_u16().await? as usize;
            r.read_exact(&mut ct[..len]).await?;
            total += rx_state.read_message(&ct[..len], &mut pt)?;
        }
        anyhow::Ok(total)
    });
    let writer = tokio::spawn(async move {
        let (_r, w) = c.into_split();
        let mut w = BufWriter::with_capacity(256 * 1024, w);
        let plain = vec![7u8; plain_len];
        // Ciphertext at a 16-byte offset, prefix right before it (the fast layout).
        let mut out = vec![0u8; 16 + 65_535];
        for _ in 0..n {
            let len = tx_state.write_message(&plain, &mut out[16..])?;
            out[14..16].copy_from_slice(&(len as u16).to_be_bytes());
            w.write_all(&out[14..16 + len]).await?;
        }
        w.flush().await?;
        anyhow::Ok(w)
    });
    let total = reader.await??;
    let _keep_open = writer.await??;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// veil links: `n` Data messages one way through [`link`]. Returns message plaintext
/// bytes per second.
async fn link_throughput(n: usize) -> anyhow::Result<(f64, usize)> {
    let (a, b) = (Identity::generate(), Identity::generate());
    let hello = Hello {
        version: PROTOCOL_VERSION,
        location: Location(1),
        listen_port: 0,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let bc = b.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await?;
        anyhow::Ok(link::accept(s, &bc, hello, LinkParams::default()).await?)
    });
    let la = link::dial(addr, b.public(), &a, hello, LinkParams::default()).await?;
    let lb = server.await??;
    let (tx, mut rx) = mpsc::channel(1024);
    let ha = la.spawn(0u8, tx.clone());
    let _hb = lb.spawn(1u8, tx);
    let (_, block) = random_block(1, 32 * 1024);
    let msg = Message::Data {
        id: RequestId(1),
        block,
    };
    let plain_len = msg.encode().len();
    let start = Instant::now();
    let (mut sent, mut got) = (0, 0);
    while got < n {
        // Keep the link's queue fed, within its bound (a send to a full queue closes
        // the link as a peer that does not keep up).
        while sent < n && sent - got < 512 {
            anyhow::ensure!(ha.send(msg.clone()), "link closed while sending");
            sent += 1;
        }
        match rx.recv().await {
            Some(LinkEvent::Message(1, _)) => got += 1,
            Some(LinkEvent::Closed(t, e)) => anyhow::bail!("link {t} closed: {e}"),
            Some(_) => {}
            None => anyhow::bail!("inbox closed"),
        }
    }
    Ok((
        (n * plain_len) as f64 / start.elapsed().as_secs_f64(),
        plain_len,
    ))
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn mb(x: f64) -> f64 {
    x / 1e6
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let messages = env("VEIL_BENCH_MESSAGES", 20_000);
    let runs = env("VEIL_BENCH_RUNS", 7).max(1);
    let fetches = env("VEIL_BENCH_FETCHES", 300);
    let blocks = env("VEIL_BENCH_BLOCKS", 1_500);
    println!(
        "veil node benchmark ({} cores)",
        std::thread::available_parallelism()?.get()
    );

    // 1. Link vs raw snow, interleaved runs so drift hits both alike.
    let (mut raw, mut linked, mut pure) = (Vec::new(), Vec::new(), Vec::new());
    let mut plain_len = 0;
    for _ in 0..runs {
        let (l, p) = link_throughput(messages).await?;
        plain_len = p;
        linked.push(l);
        raw.push(raw_noise(messages, plain_len, false).await?);
        pure.push(raw_noise(messages, plain_len, true).await?);
    }
    // Each link run is paired with the raw run right after it, so load that drifts over
    // the benchmark hits both sides of a ratio alike.
    let ratios: Vec<f64> = linked.iter().zip(&raw).map(|(l, r)| l / r).collect();
    let (qmin, qmed, qmax) = stats(ratios);
    let (rmin, rmed, rmax) = stats(raw.clone());
    let (lmin, lmed, lmax) = stats(linked.clone());
    let pure_ratios: Vec<f64> = linked.iter().zip(&pure).map(|(l, r)| l / r).collect();
    let (_, pqmed, _) = stats(pure_ratios);
    let (pmin, pmed, pmax) = stats(pure);
    println!("message size: {plain_len} bytes plaintext (a Data message), {messages} messages per run, {runs} runs");
    println!(
        "raw snow over loopback TCP:  median {:7.1} MB/s  (min {:.1}, max {:.1})",
        mb(rmed),
        mb(rmin),
        mb(rmax)
    );
    println!(
        "veil link:                   median {:7.1} MB/s  (min {:.1}, max {:.1})",
        mb(lmed),
        mb(lmin),
        mb(lmax)
    );
    println!(
        "link / raw, paired runs:     median {qmed:.2}  (min {qmin:.2}, max {qmax:.2}; ratio of medians {:.2})",
        lmed / rmed
    );
    println!(
        "raw snow, pure-Rust crypto:  median {:7.1} MB/s  (min {:.1}, max {:.1}); link / it {pqmed:.2}",
        mb(pmed),
        mb(pmin),
        mb(pmax)
    );

    bench_record("snow_one_thread", mb(rmed), "MB/s");
    bench_record("link", mb(lmed), "MB/s");
    bench_record("link_over_snow", qmed, "ratio");
    bench_record("snow_one_thread_pure_rust", mb(pmed), "MB/s");
    bench_record("link_over_pure_rust_snow", pqmed, "ratio");

    // 2. Per-hop fetch latency on a line A-B-C, in-process (no HTTP).
    let net = Testnet::start_with(3, Topology::Line, |_, c| {
        c.store_bytes = 4 << 30;
        c.cache_bytes = 4 << 30;
    })
    .await?;
    let (a, b, c) = (net.node(0), net.node(1), net.node(2));
    let put_many = |node: veil_node::NodeHandle, seed: u64, count: usize| async move {
        let mut set = tokio::task::JoinSet::new();
        let mut keys = Vec::with_capacity(count);
        for i in 0..count {
            let (k, blk) = random_block(seed + i as u64, 32 * 1024);
            keys.push(k);
            let node = node.clone();
            set.spawn(async move { node.insert(k, blk, Some(Htl(0)), None).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        anyhow::Ok(keys)
    };
    let local = put_many(a.clone(), 1_000_000, fetches).await?;
    let one_hop = put_many(c.clone(), 2_000_000, fetches).await?;
    let two_hop = put_many(c.clone(), 3_000_000, fetches).await?;
    let lat = |samples: Vec<Duration>| {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(|x, y| x.total_cmp(y));
        (us[us.len() / 2], us[us.len() * 9 / 10])
    };
    let time = |node: veil_node::NodeHandle, keys: Vec<veil_proto::RoutingKey>| async move {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let t = Instant::now();
            node.fetch(k, Some(Htl(5))).await?;
            out.push(t.elapsed());
        }
        anyhow::Ok(out)
    };
    let l0 = lat(time(a.clone(), local).await?);
    let l1 = lat(time(b.clone(), one_hop).await?);
    let l2 = lat(time(a.clone(), two_hop).await?);
    println!("fetch latency, median (p90): local {:.0} us ({:.0}), 1 hop {:.0} us ({:.0}), 2 hops {:.0} us ({:.0})", l0.0, l0.1, l1.0, l1.1, l2.0, l2.1);
    println!(
        "per-hop fetch latency:       {:.0} us  ((2 hops - local) / 2)",
        (l2.0 - l0.0) / 2.0
    );
    bench_record("fetch_local_median", l0.0, "us");
    bench_record("fetch_per_hop_median", (l2.0 - l0.0) / 2.0, "us");

    // 3. Block throughput across the line: many concurrent fetches at A of blocks at C.
    let keys = put_many(c.clone(), 4_000_000, blocks).await?;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let chunks: Vec<Vec<_>> = keys
        .chunks(blocks.div_ceil(32))
        .map(|c| c.to_vec())
        .collect();
    for chunk in chunks {
        let a = a.clone();
        set.spawn(async move {
            for k in chunk {
                a.fetch(k, Some(Htl(5))).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = blocks as f64 / secs;
    println!(
        "line throughput (A fetches from C via B, 32 in flight): {:.0} blocks/s, {:.1} MB/s of blocks",
        rate,
        mb(rate * veil_proto::BLOCK_LEN as f64)
    );
    bench_record(
        "line3_fetch_32_in_flight",
        mb(rate * veil_proto::BLOCK_LEN as f64),
        "MB/s",
    );
    let _ = c;
    net.shutdown().await;
    Ok(())
}
