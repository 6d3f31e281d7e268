//! The 25-node scenario with the shipped binaries: `veild` processes with data
//! directories on disk, linked as a seeded small world, and the `veil` CLI publishing and
//! fetching through them. Half the nodes are killed with SIGKILL at once, the documents
//! are fetched again from the survivors, then the killed nodes are restarted on their data
//! directories and shown to hold every block they had acknowledged.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Duration;
use veil_proto::topology;
use veil_tests::{veil, Api, DataDir, VeildProcess, WAIT};

const N: usize = 25;
const SEED: u64 = 52;
const DOCS: usize = 100;
const SIZES: &[usize] = &[0, 1, 5000, 32_768, 32_769, 100_000];

fn write_document(dir: &Path, i: usize) -> PathBuf {
    let mut rng = ChaCha8Rng::seed_from_u64(2000 + i as u64);
    let mut data = vec![0u8; SIZES[i % SIZES.len()]];
    rng.fill_bytes(&mut data);
    let path = dir.join(format!("doc-{i}.bin"));
    std::fs::write(&path, data).expect("write document");
    path
}

async fn status_field(api: &Api, path: &[&str]) -> u64 {
    let mut v = api.status().await.expect("status");
    for p in path {
        v = v[*p].take();
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("status field {path:?}"))
}

/// Waits until node `api` has at least `want` peers. A process has no event channel to
/// offer, so this polls its status API with a short period, bounded by [`WAIT`].
async fn wait_peers(api: &Api, want: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while (status_field(api, &["peers"]).await as usize) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "links did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts node `i` on `dir`, dialling the already running neighbours `edges` give it.
async fn spawn(
    i: usize,
    dir: &Path,
    procs: &[Option<VeildProcess>],
    location: f64,
) -> VeildProcess {
    let edges = topology::small_world(N, 2, 1, SEED);
    let mut args = vec!["--location".to_string(), location.to_string()];
    for &(a, b) in &edges {
        let other = if a == i {
            b
        } else if b == i {
            a
        } else {
            continue;
        };
        if let Some(Some(p)) = procs.get(other) {
            args.push("--peer".into());
            args.push(p.address.to_string());
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    VeildProcess::spawn(dir, &args).await.expect("veild starts")
}

fn fetch_all(
    dirs: &[DataDir],
    alive: &[usize],
    docs: &[(usize, String)],
    files: &Path,
    rng: &mut ChaCha8Rng,
) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut lost = Vec::new();
    for (i, uri) in docs {
        let reader = *alive.choose(rng).expect("a reader");
        let out = files.join(format!("out-{i}-{reader}"));
        match veil(
            dirs[reader].path(),
            &["get", uri, "-o", out.to_str().expect("utf-8")],
        ) {
            Ok(_) => {
                let want = std::fs::read(files.join(format!("doc-{i}.bin"))).expect("doc");
                assert_eq!(std::fs::read(&out).expect("out"), want, "doc {i} differs");
                ok += 1;
            }
            Err(e) => lost.push(format!("doc {i} at node {reader}: {e}")),
        }
    }
    (ok, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn veild_processes_survive_sigkill_of_half_and_restart() {
    let locations = topology::evenly_spaced(N, SEED);
    let degrees: Vec<usize> = topology::adjacency(N, &topology::small_world(N, 2, 1, SEED))
        .iter()
        .map(Vec::len)
        .collect();
    let dirs: Vec<DataDir> = (0..N).map(|_| DataDir::new().expect("dir")).collect();
    let files = DataDir::new().expect("dir");
    let mut procs: Vec<Option<VeildProcess>> = (0..N).map(|_| None).collect();
    for i in 0..N {
        procs[i] = Some(spawn(i, dirs[i].path(), &procs, locations[i].as_fraction()).await);
    }
    for (p, &want) in procs.iter().zip(&degrees) {
        wait_peers(&p.as_ref().expect("running").api, want).await;
    }

    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut docs = Vec::with_capacity(DOCS);
    for i in 0..DOCS {
        let file = write_document(files.path(), i);
        let publisher = rng.gen_range(0..N);
        let uri = veil(
            dirs[publisher].path(),
            &["put", file.to_str().expect("utf-8")],
        )
        .unwrap_or_else(|e| panic!("put doc {i}: {e}"));
        assert!(uri.starts_with("veil:CHK@"), "put printed {uri:?}");
        docs.push((i, uri));
    }
    let everyone: Vec<usize> = (0..N).collect();
    let (ok, lost) = fetch_all(&dirs, &everyone, &docs, files.path(), &mut rng);
    assert_eq!(ok, DOCS, "all nodes up, yet lost: {lost:?}");

    // SIGKILL half the nodes at once, remembering what each had acknowledged.
    let mut order = everyone.clone();
    order.shuffle(&mut rng);
    let (dead, alive) = order.split_at(N / 2);
    let mut stored_before = Vec::new();
    for &d in dead {
        let api = &procs[d].as_ref().expect("running").api;
        stored_before.push(status_field(api, &["store", "store_blocks"]).await);
    }
    for &d in dead {
        procs[d].take().expect("running").kill().expect("SIGKILL");
    }
    let (ok, lost) = fetch_all(&dirs, alive, &docs, files.path(), &mut rng);
    let survived = ok as f64 / DOCS as f64;
    println!(
        "processes: {} of {N} veild killed with SIGKILL, {:.1}% of {DOCS} documents survive",
        dead.len(),
        survived * 100.0
    );
    for l in &lost {
        println!("  lost: {l}");
    }
    assert!(survived >= 0.9, "only {:.1}% survived", survived * 100.0);

    // Restart the killed nodes on their data directories: every acknowledged block is back.
    for (&d, &before) in dead.iter().zip(&stored_before) {
        let p = spawn(d, dirs[d].path(), &procs, locations[d].as_fraction()).await;
        let after = status_field(&p.api, &["store", "store_blocks"]).await;
        assert_eq!(after, before, "node {d}'s store after SIGKILL and restart");
        procs[d] = Some(p);
    }
    let (ok, lost) = fetch_all(&dirs, dead, &docs[..20], files.path(), &mut rng);
    assert_eq!(ok, 20, "restarted nodes fetch: {lost:?}");
}
