//! Whole-system benchmark: `veild` processes linked in a line on loopback (node 0, node 1
//! peered to 0, node 2 peered to 1, ...), `veil put` of a file of random bytes through
//! the first node and `veil get` of its URI through the last, as a user would run them.
//! Prints MiB/s each way, the peak RSS of the `veil get` process and the RSS of an idle
//! node; with `VEIL_BENCH_OUT` set, records them for `bench/run`.
//!
//! Run: `cargo bench -p veil-tests --bench line` (release). `VEIL_BENCH_MIB` sets the
//! file size (default 100), `VEIL_BENCH_LINES` the line lengths (default `3,8`).
//! `VEIL_BENCH_PUTS=k` puts k distinct files in a row (after the get), each timed, to
//! show whether puts slow down as the nodes' stores fill: the last is recorded as
//! `line<n>_put_last`.
//!
//! Opennet is off, so the nodes keep exactly the links of the line. Every node stores the blocks of inserts that pass it until `replicas` nodes hold
//! them, so on lines this short the last node already holds most blocks when the get
//! starts: the get figure is the client's decode and verify with the node's store and
//! API, not a transfer across hops (the `node` benchmark measures those).

use anyhow::{bail, Context};
use rand::{RngCore, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use veil_tests::{bench_record, rss_of, veil_path, Api, DataDir, VeildProcess};

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> anyhow::Result<()> {
    let mib: usize = std::env::var("VEIL_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let lines: Vec<usize> = std::env::var("VEIL_BENCH_LINES")
        .unwrap_or_else(|_| "3,8".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|&n| n >= 2)
        .collect();
    let rt = tokio::runtime::Runtime::new()?;
    let work = DataDir::new()?;
    let file = work.path().join("random.bin");
    let mut data = vec![0u8; mib << 20];
    rand_chacha::ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut data);
    std::fs::write(&file, &data)?;
    println!(
        "veil line benchmark: {mib} MiB of random bytes, put at one end, get at the other ({} cores)",
        std::thread::available_parallelism()?.get()
    );
    for n in lines {
        rt.block_on(line(n, &file, &data, mib))?;
    }
    Ok(())
}

async fn line(n: usize, file: &Path, data: &[u8], mib: usize) -> anyhow::Result<()> {
    let dirs: Vec<DataDir> = (0..n).map(|_| DataDir::new()).collect::<Result<_, _>>()?;
    let mut procs: Vec<VeildProcess> = Vec::with_capacity(n);
    for dir in &dirs {
        let peer = procs.last().map(|p| p.address.to_string());
        // Opennet off: a line stays a line (announcement would link the ends).
        let mut args = vec!["--opennet", "false"];
        if let Some(p) = &peer {
            args.extend(["--peer", p.as_str()]);
        }
        procs.push(VeildProcess::spawn(dir.path(), &args).await?);
    }
    for (i, p) in procs.iter().enumerate() {
        let want = if i == 0 || i == n - 1 { 1 } else { 2 };
        wait_for_peers(&p.api, want).await?;
    }
    let (first, last) = (&procs[0], &procs[n - 1]);
    let idle = rss_of(last.pid()).map(|(rss, _)| rss);

    let put = tokio::task::spawn_blocking({
        let (dir, file) = (first.dir.clone(), file.to_path_buf());
        move || run_veil(&dir, &["put".as_ref(), file.as_os_str()])
    })
    .await??;
    let uri = String::from_utf8(put.stdout)?.trim().to_string();
    let out = dirs[n - 1].path().join("copy.bin");
    let get = tokio::task::spawn_blocking({
        let (dir, uri, out) = (last.dir.clone(), uri.clone(), out.clone());
        move || {
            run_veil(
                &dir,
                &["get".as_ref(), uri.as_ref(), "-o".as_ref(), out.as_os_str()],
            )
        }
    })
    .await??;
    if std::fs::read(&out)? != data {
        bail!(
            "the file fetched through node {} differs from the one put",
            n - 1
        );
    }
    let put_rate = mib as f64 / put.secs;
    let get_rate = mib as f64 / get.secs;
    println!(
        "{n}-node line: put {put_rate:6.1} MiB/s ({:.2} s), get {get_rate:6.1} MiB/s ({:.2} s), get peak RSS {:.1} MiB, idle node RSS {}",
        put.secs,
        get.secs,
        get.peak as f64 / MIB,
        idle.map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / MIB)),
    );
    bench_record(&format!("line{n}_put"), put_rate, "MiB/s");
    bench_record(&format!("line{n}_get"), get_rate, "MiB/s");
    bench_record(
        &format!("line{n}_get_peak_rss"),
        get.peak as f64 / MIB,
        "MiB",
    );
    if let Some(b) = idle {
        bench_record(&format!("line{n}_idle_node_rss"), b as f64 / MIB, "MiB");
    }
    let puts: u64 = std::env::var("VEIL_BENCH_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for i in 2..=puts {
        // Distinct bytes each time: every block is new to every node.
        let mut more = vec![0u8; mib << 20];
        rand_chacha::ChaCha8Rng::seed_from_u64(7 + i).fill_bytes(&mut more);
        let more_file = dirs[0].path().join(format!("random-{i}.bin"));
        std::fs::write(&more_file, &more)?;
        drop(more);
        let run = tokio::task::spawn_blocking({
            let (dir, f) = (first.dir.clone(), more_file.clone());
            move || run_veil(&dir, &["put".as_ref(), f.as_os_str()])
        })
        .await??;
        std::fs::remove_file(&more_file)?;
        let rate = mib as f64 / run.secs;
        println!(
            "{n}-node line: put {i} of {puts}: {rate:6.1} MiB/s ({:.2} s)",
            run.secs
        );
        if i == puts {
            bench_record(&format!("line{n}_put_last"), rate, "MiB/s");
        }
    }
    for p in procs {
        p.terminate()?;
    }
    Ok(())
}

struct Run {
    stdout: Vec<u8>,
    secs: f64,
    /// Peak resident set of the process, sampled every few milliseconds.
    peak: u64,
}

/// Runs `veil --data-dir DIR args...` to completion, timing it and sampling its peak RSS.
fn run_veil(dir: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<Run> {
    // Resolved first: under cargo it may build the binary, which is not the run's time.
    let veil = veil_path()?;
    let start = Instant::now();
    let mut child = Command::new(veil)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting veil")?;
    let pid = child.id();
    // Drain stdout while sampling, so a large output cannot block the child.
    let mut stdout = child.stdout.take().context("veil's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
    });
    let mut peak = 0;
    let status = loop {
        if let Some((_, hwm)) = rss_of(pid) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let secs = start.elapsed().as_secs_f64();
    let stdout = reader.join().map_err(|_| anyhow::anyhow!("reader"))??;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err)?;
        }
        bail!("veil {:?} failed: {}", args, err.trim());
    }
    Ok(Run { stdout, secs, peak })
}

/// Waits until the node reports `want` peers.
async fn wait_for_peers(api: &Api, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + veil_tests::WAIT;
    loop {
        let peers: serde_json::Value = api
            .request(reqwest::Method::GET, "/api/v1/peers")
            .send()
            .await?
            .json()
            .await?;
        let n = peers
            .as_array()
            .or_else(|| peers["peers"].as_array())
            .map_or(0, Vec::len);
        if n >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "a node has {n} of its {want} links after {:?}",
                veil_tests::WAIT
            );
        }
        // The API has no way to wait for a link; poll briefly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
