//! End-to-end tests of the `veil` CLI (issue 5), run as a process (built next to this test
//! binary if needed) against real nodes: in-process ones (put through one node, get
//! through another) and `veild` processes found through their data directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use veil_client::ApiClient;
use veil_proto::{Uri, MAX_PAYLOAD};
use veil_tests::{Testnet, Topology};

async fn two_nodes() -> Testnet {
    Testnet::start_with(2, Topology::Line, |_, c| {
        c.store_bytes = 1 << 30;
        c.cache_bytes = 256 << 20;
    })
    .await
    .expect("testnet")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u8 ^ seed)
        .collect()
}

/// The `veil` binary of this build profile, built if needed.
fn veil_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-q", "-p", "veil-client", "--bin", "veil"]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success(), "building veil");
    dir.join("veil")
}

fn veil(bin: &Path, node: Option<&veil_tests::Api>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    if let Some(api) = node {
        cmd.args(["--api", &api.base, "--token", &api.token]);
    }
    cmd.args(args).env_remove("RUST_LOG").output().unwrap()
}

/// Asserts a failed run printed exactly one `error:` line containing `what`.
fn assert_one_error_line(out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(what), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reports_mistakes_in_one_line() {
    let bin = tokio::task::spawn_blocking(veil_bin).await.unwrap();
    let net = two_nodes().await;
    let api = net.api(0).clone();
    let run = |node: Option<veil_tests::Api>, args: Vec<String>| {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            veil(&bin, node.as_ref(), &args)
        })
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let out = run(Some(api.clone()), s(&["get", "veil:CHK@not-a-key"]))
        .await
        .unwrap();
    assert_one_error_line(&out, "malformed URI");
    let out = run(Some(api.clone()), s(&["put", "/no/such/file"]))
        .await
        .unwrap();
    assert_one_error_line(&out, "cannot read /no/such/file");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = run(None, s(&["--api", &dead, "--token", "t", "status"]))
        .await
        .unwrap();
    assert_one_error_line(&out, "not running");
    let mut wrong = api.clone();
    wrong.token = "wrong-token".into();
    let out = run(Some(wrong), s(&["status"])).await.unwrap();
    assert_one_error_line(&out, "refused the API token");
    let missing = format!(
        "veil:CHK@{},{}/gone.txt",
        veil_proto::RoutingKey([3; 32]),
        veil_proto::DataKey([4; 32])
    );
    let out = run(Some(api.clone()), s(&["get", &missing])).await.unwrap();
    assert_one_error_line(&out, "not found");
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        None,
        s(&["--data-dir", &dir.path().display().to_string(), "peers"]),
    )
    .await
    .unwrap();
    assert_one_error_line(&out, "is veild running");

    // Status and peers print JSON.
    let out = run(Some(api.clone()), s(&["status"])).await.unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    let out = run(Some(api), s(&["peers"])).await.unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    net.shutdown().await;
}

/// Writes `len` pseudo-random bytes to `path`, 1 MiB at a time.
fn write_random(path: &Path, len: usize) {
    use rand::{RngCore, SeedableRng};
    use std::io::Write;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            match fb.read(&mut bb[nb..na]).unwrap() {
                0 => return false,
                k => nb += k,
            }
        }
        if ba[..na] != bb[..na] {
            return false;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

/// The peak memory `veil` reports with `VEIL_REPORT_PEAK_RSS`, in KiB.
fn peak_kib(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("veil: peak "))
        .and_then(|l| l.trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no peak memory report in {stderr:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trips_100_mib_in_bounded_memory() {
    const LEN: usize = 100 << 20;
    let bin = tokio::task::spawn_blocking(veil_bin).await.unwrap();
    let net = two_nodes().await;
    let (a, b) = (net.api(0).clone(), net.api(1).clone());
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("big.bin"), dir.path().join("copy.bin"));
    write_random(&src, LEN);

    let (bin2, src2) = (bin.clone(), src.clone());
    let t = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&bin2)
            .args(["--api", &a.base, "--token", &a.token, "put"])
            .arg(&src2)
            .env("VEIL_REPORT_PEAK_RSS", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let put_time = t.elapsed();
    let put_peak_kib = peak_kib(&err);
    let uri = String::from_utf8(out.stdout).unwrap();
    assert!(uri.ends_with("/big.bin\n"), "{uri}");
    let uri: Uri = uri.trim().parse().unwrap();

    let dst2 = dst.clone();
    let t = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&bin)
            .args([
                "--api",
                &b.base,
                "--token",
                &b.token,
                "get",
                &uri.to_string(),
                "-o",
            ])
            .arg(&dst2)
            .env("VEIL_REPORT_PEAK_RSS", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let get_time = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let peak_kib = peak_kib(&err);
    eprintln!(
        "100 MiB: put {put_time:.1?} (peak RSS {:.1} MiB), get {get_time:.1?} (peak RSS {:.1} MiB)",
        put_peak_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    assert!(same_file(&src, &dst), "copy differs");
    // The document is 100 MiB; the get must not hold it (window of 32 blocks + runtime).
    assert!(peak_kib < 64 * 1024, "get peak {peak_kib} KiB");
    // The put holds one segment (10.6 MiB) for its check blocks, not the document.
    assert!(put_peak_kib < 64 * 1024, "put peak {put_peak_kib} KiB");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_publishes_and_restores_directories_and_stdin() {
    let bin = tokio::task::spawn_blocking(veil_bin).await.unwrap();
    let net = two_nodes().await;
    let (a, b) = (net.api(0).clone(), net.api(1).clone());
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    let files = [
        ("index.html", b"<p>home</p>".to_vec()),
        ("docs/a/b.txt", pattern(2 * MAX_PAYLOAD + 9, 3)),
        ("docs/c.txt", b"c".to_vec()),
        ("docs/big.bin", pattern(1 << 20, 4)),
    ];
    for (p, data) in &files {
        let path = site.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let (site2, a2, b2, work2) = (
        site.clone(),
        a.clone(),
        b.clone(),
        work.path().to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        // A small insert window, as a user on a slow node would set it.
        let out = veil(
            &bin,
            Some(&a2),
            &["put", "--window", "2", site2.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uri = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(uri.ends_with("/site"), "{uri}");

        // One file of the directory, to stdout.
        let out = veil(&bin, Some(&b2), &["get", &format!("{uri}/docs/a/b.txt")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, files[1].1);

        // The whole tree.
        let restored = work2.join("restored");
        let out = veil(
            &bin,
            Some(&b2),
            &["get", &uri, "-o", restored.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (p, data) in &files {
            assert_eq!(&std::fs::read(restored.join(p)).unwrap(), data, "{p}");
        }
        // A reader that stops early (`veil get URI | head -c 10`) is no error.
        let mut child = Command::new(&bin)
            .args(["--api", &b2.base, "--token", &b2.token, "get"])
            .arg(format!("{uri}/docs/big.bin"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 10];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // A directory without -o is a mistake, said in one line.
        let out = veil(&bin, Some(&b2), &["get", &uri]);
        assert_one_error_line(&out, "names a directory");

        // Standard input, with a name given.
        let mut child = Command::new(&bin)
            .args([
                "--api", &a2.base, "--token", &a2.token, "put", "-", "--name", "in.txt",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"from stdin")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let uri = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(uri.ends_with("/in.txt"), "{uri}");
        let out = veil(&bin, Some(&b2), &["get", &uri]);
        assert_eq!(out.stdout, b"from stdin");
    })
    .await
    .unwrap();
    net.shutdown().await;
}

/// Waits until the `veild` behind `api` reports a peer. A process has no event to await,
/// so this polls its API, briefly and with a deadline.
async fn wait_for_a_peer(api: &veil_tests::Api) {
    let client = ApiClient::new(&api.base, &api.token).unwrap();
    let deadline = tokio::time::Instant::now() + veil_tests::WAIT;
    loop {
        if let Ok(peers) = client.peers().await {
            let n = peers
                .as_array()
                .or_else(|| peers["peers"].as_array())
                .map_or(0, Vec::len);
            if n > 0 {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no link came up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_finds_veild_processes_through_their_data_directories() {
    let bin = tokio::task::spawn_blocking(veil_bin).await.unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = veil_tests::VeildProcess::spawn(da.path(), &[])
        .await
        .expect("veild a");
    let peer = a.address.to_string();
    let b = veil_tests::VeildProcess::spawn(db.path(), &["--peer", &peer])
        .await
        .expect("veild b");
    wait_for_a_peer(&a.api).await;
    wait_for_a_peer(&b.api).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("note.txt");
    std::fs::write(&file, b"found through the data directory").unwrap();
    let (pa, pb) = (da.path().to_path_buf(), db.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let (pa, pb) = (pa.to_str().unwrap(), pb.to_str().unwrap());
        let out = veil(
            &bin,
            None,
            &["--data-dir", pa, "put", file.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uri = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let out = veil(&bin, None, &["--data-dir", pb, "get", &uri]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"found through the data directory");
        // Without --data-dir, VEIL_DATA_DIR names the node.
        let out = Command::new(&bin)
            .arg("peers")
            .env("VEIL_DATA_DIR", pb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    })
    .await
    .unwrap();
    b.terminate().unwrap();
    a.terminate().unwrap();
}

/// The reader's disk is safe from a publisher: `get -o` never replaces an existing file
/// without `--force` (and keeps it whole when a fetch fails even with it), refuses a
/// document over `--max-size` before writing, and does not create hidden files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_never_destroys_or_overfills_the_readers_disk() {
    let bin = tokio::task::spawn_blocking(veil_bin).await.unwrap();
    let net = two_nodes().await;
    let api = net.api(0).clone();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(".bashrc");
    std::fs::write(&src, pattern(100_000, 3)).unwrap();
    let run = |args: Vec<String>| {
        let bin = bin.clone();
        let api = api.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            veil(&bin, Some(&api), &args)
        })
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let put = run(s(&["put", src.to_str().unwrap()])).await.unwrap();
    assert!(put.status.success());
    let uri = String::from_utf8(put.stdout).unwrap().trim().to_string();

    // Into a directory: the publisher's hidden name is not used as is.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let got = run(s(&["get", &uri, "-o", out_dir.to_str().unwrap()]))
        .await
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(!out_dir.join(".bashrc").exists());
    assert_eq!(
        std::fs::read(out_dir.join("_bashrc")).unwrap(),
        pattern(100_000, 3)
    );

    // An existing file stays unless --force.
    let mine = dir.path().join("mine.txt");
    std::fs::write(&mine, "my precious").unwrap();
    let out = run(s(&["get", &uri, "-o", mine.to_str().unwrap()]))
        .await
        .unwrap();
    assert_one_error_line(&out, "exists already: pass --force");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "my precious");
    // With --force but a document that cannot be fetched: still intact, nothing left over.
    let missing = format!(
        "veil:CHK@{},{}/gone.txt",
        veil_proto::RoutingKey([3; 32]),
        veil_proto::DataKey([4; 32])
    );
    let out = run(s(&[
        "get",
        &missing,
        "-o",
        mine.to_str().unwrap(),
        "--force",
    ]))
    .await
    .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "my precious");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("veil-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With --force and a good document: replaced.
    let out = run(s(&["get", &uri, "-o", mine.to_str().unwrap(), "--force"]))
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read(&mine).unwrap(), pattern(100_000, 3));

    // Over --max-size: refused before anything is written.
    let small = dir.path().join("small.out");
    let out = run(s(&[
        "get",
        &uri,
        "-o",
        small.to_str().unwrap(),
        "--max-size",
        "64K",
    ]))
    .await
    .unwrap();
    assert_one_error_line(&out, "over the limit of 65536");
    assert!(!small.exists());
    let out = run(s(&["get", &uri, "--max-size", "lots"])).await.unwrap();
    assert!(!out.status.success());
    net.shutdown().await;
}

/// `veil --offline`: a put stores on the node alone and a get reads only what the node
/// holds — with its peer killed, a document the node stores still comes back, and one only
/// its (live) peer holds fails with a line naming --offline although a plain get finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_reads_only_the_node_itself() {
    let bin = tokio::task::spawn_blocking(veil_bin).await.unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let off = ["--opennet", "false"];
    let a = veil_tests::VeildProcess::spawn(da.path(), &off)
        .await
        .expect("veild a");
    let peer = a.address.to_string();
    let b = veil_tests::VeildProcess::spawn(db.path(), &["--opennet", "false", "--peer", &peer])
        .await
        .expect("veild b");
    wait_for_a_peer(&a.api).await;
    wait_for_a_peer(&b.api).await;
    let work = tempfile::tempdir().unwrap();
    let (shared, only_b) = (work.path().join("shared.bin"), work.path().join("b.bin"));
    // Several blocks each, so the index tree is read offline too.
    std::fs::write(&shared, pattern(3 * MAX_PAYLOAD + 17, 1)).unwrap();
    std::fs::write(&only_b, pattern(2 * MAX_PAYLOAD + 5, 2)).unwrap();
    let (pa, pb) = (da.path().to_path_buf(), db.path().to_path_buf());
    let bin2 = bin.clone();
    let (shared_uri, b_uri) = tokio::task::spawn_blocking(move || {
        let ok = |out: Output| {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let (pa, pb) = (pa.to_str().unwrap(), pb.to_str().unwrap());
        let shared_uri = ok(veil(
            &bin2,
            None,
            &["--data-dir", pa, "put", shared.to_str().unwrap()],
        ));
        let b_uri = ok(veil(
            &bin2,
            None,
            &[
                "--data-dir",
                pb,
                "--offline",
                "put",
                only_b.to_str().unwrap(),
            ],
        ));
        // Only b holds it: a offline cannot read it, and says why...
        let out = veil(&bin2, None, &["--data-dir", pa, "--offline", "get", &b_uri]);
        assert!(!out.status.success(), "an offline get read a peer's block");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--offline") && err.lines().count() == 1,
            "{err}"
        );
        // ...though the network has it.
        let out = veil(&bin2, None, &["--data-dir", pa, "get", &b_uri]);
        assert_eq!(out.stdout, pattern(2 * MAX_PAYLOAD + 5, 2));
        (shared_uri, b_uri)
    })
    .await
    .unwrap();
    b.kill().expect("kill b");
    let pa = da.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let pa = pa.to_str().unwrap();
        let out = veil(
            &bin,
            None,
            &["--data-dir", pa, "--offline", "get", &shared_uri],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, pattern(3 * MAX_PAYLOAD + 17, 1));
        // What a fetched for its own user was not kept (no cache of own requests).
        let out = veil(&bin, None, &["--data-dir", pa, "--offline", "get", &b_uri]);
        assert!(!out.status.success());
    })
    .await
    .unwrap();
    drop(a);
}
