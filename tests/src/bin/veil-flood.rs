//! A loopback connection flood for the hardening tests (and for trying a node by hand).
//!
//! ```text
//! veil-flood idle  ADDR COUNT SECONDS   open COUNT idle connections, print "open N",
//!                                        hold them SECONDS, exit
//! veil-flood churn ADDR KEEP SECONDS    open connections as fast as possible for SECONDS,
//!                                        holding the newest KEEP; print "opened N" at exit
//! veil-flood bytes ADDR COUNT SECONDS   COUNT connections that send random bytes, slowly
//! ```
//!
//! It refuses any address outside 127.0.0.0/8: it is a test tool, not a weapon. Each mode
//! stops by itself after SECONDS. A separate process, so its sockets do not count against
//! the file-descriptor limit of the node or test it floods.
#![forbid(unsafe_code)]

use anyhow::{bail, Context};
use rand::RngCore;
use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, n, secs] = args.as_slice() else {
        bail!("usage: veil-flood idle|churn|bytes ADDR N SECONDS");
    };
    let addr: SocketAddr = addr.parse().context("ADDR")?;
    if !addr.ip().is_loopback() {
        bail!("veil-flood only floods loopback addresses");
    }
    let n: usize = n.parse().context("N")?;
    let secs: u64 = secs.parse().context("SECONDS")?;
    let until = Instant::now() + Duration::from_secs(secs);
    match mode.as_str() {
        "idle" => idle(addr, n, until).await,
        "churn" => churn(addr, n, until).await,
        "bytes" => bytes(addr, n, until).await,
        other => bail!("unknown mode {other:?}"),
    }
}

async fn idle(addr: SocketAddr, count: usize, until: Instant) -> anyhow::Result<()> {
    let mut held = Vec::with_capacity(count);
    // A few hundred connects in flight at once: the listen backlog is the bound.
    let mut pending = tokio::task::JoinSet::new();
    let mut started = 0;
    while held.len() < count && Instant::now() < until {
        while started < count && pending.len() < 256 {
            pending.spawn(tokio::time::timeout(
                Duration::from_secs(5),
                TcpStream::connect(addr),
            ));
            started += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(Ok(s)))) => held.push(s),
            // Refused or timed out (a full listen backlog): try again.
            Some(_) => started -= 1,
            None => break,
        }
    }
    println!("open {}", held.len());
    std::io::stdout().flush()?;
    tokio::time::sleep_until(until.into()).await;
    Ok(())
}

async fn churn(addr: SocketAddr, keep: usize, until: Instant) -> anyhow::Result<()> {
    let mut held = VecDeque::with_capacity(keep);
    let mut opened = 0u64;
    while Instant::now() < until {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
        {
            opened += 1;
            if held.len() >= keep {
                held.pop_front();
            }
            held.push_back(s);
        }
    }
    println!("opened {opened}");
    Ok(())
}

async fn bytes(addr: SocketAddr, count: usize, until: Instant) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        tasks.spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
            while Instant::now() < until {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut buf = vec![0u8; 64 + i % 4096];
                for _ in 0..16 {
                    rng.fill_bytes(&mut buf);
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    println!("done");
    Ok(())
}
