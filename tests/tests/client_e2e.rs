//! End-to-end tests of the client (issue 5) against real in-process nodes: documents are
//! put through one node and fetched through another, so every block crosses a link.
//!
//! The `veil` binary tests run the CLI as a process (built next to this test binary if
//! needed). The Chromium test lives in `client_browser.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use veil_client::decode::DEFAULT_WINDOW;
use veil_client::format::Body;
use veil_client::{
    encode, fetch_top, put_dir, resolve, restore, write_body, ApiClient, EncodeOptions, Resolved,
};
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

fn client(net: &Testnet, i: usize) -> ApiClient {
    ApiClient::new(&net.api(i).base, &net.api(i).token).expect("client")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u8 ^ seed)
        .collect()
}

async fn get(c: &ApiClient, uri: &Uri) -> Vec<u8> {
    let top = fetch_top(c, uri.keys).await.expect("top block");
    let mut out = Vec::new();
    write_body(c.clone(), top, DEFAULT_WINDOW, &mut out, |_| {})
        .await
        .expect("document");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_round_trip_across_a_link() {
    let net = two_nodes().await;
    let (a, b) = (client(&net, 0), client(&net, 1));
    for len in [0, 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 40 * MAX_PAYLOAD + 3] {
        let data = pattern(len, 7);
        let done = encode(&a, &data[..], &EncodeOptions::named("f.bin"), |_| {})
            .await
            .unwrap();
        assert_eq!(get(&b, &done.uri).await, data, "{len} bytes");
        // Same bytes, same name: same URI.
        let again = encode(&a, &data[..], &EncodeOptions::named("f.bin"), |_| {})
            .await
            .unwrap();
        assert_eq!(again.uri, done.uri);
    }

    // A multi-level tree: index blocks of index blocks of index blocks. The shipped
    // format needs > 340 data blocks (10.6 MiB) for two levels (the 100 MiB CLI test has
    // two); segments of 4 and a fan-out of 4 get to four levels with 70 blocks.
    let data = pattern(70 * MAX_PAYLOAD - 11, 9);
    let opts = EncodeOptions {
        tree: veil_client::format::TreeParams {
            fanout: 4,
            segment: 4,
            checks: 2,
        },
        ..EncodeOptions::named("deep.bin")
    };
    let done = encode(&a, &data[..], &opts, |_| {}).await.unwrap();
    let top = fetch_top(&b, done.uri.keys).await.unwrap();
    assert!(matches!(top.body, Body::Tree { depth: 4, .. }), "{top:?}");
    assert_eq!(get(&b, &done.uri).await, data);
    net.shutdown().await;
}

/// A sink that loses the blocks named in `lost`, as a network that lost them would.
#[derive(Clone)]
struct LossySink {
    inner: ApiClient,
    lost: std::sync::Arc<std::collections::HashSet<veil_proto::RoutingKey>>,
}

impl veil_client::BlockSink for LossySink {
    async fn insert(
        &self,
        key: veil_proto::RoutingKey,
        block: veil_proto::Block,
    ) -> Result<(), veil_client::InsertError> {
        if self.lost.contains(&key) {
            return Ok(());
        }
        veil_client::BlockSink::insert(&self.inner, key, block).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_blocks_are_rebuilt_across_a_link() {
    let net = two_nodes().await;
    let (a, b) = (client(&net, 0), client(&net, 1));
    // 60 data blocks (one segment, 30 check blocks); every third data block never reaches
    // the network.
    let data = pattern(60 * MAX_PAYLOAD - 1, 11);
    let lost = (0..60)
        .step_by(3)
        .map(|i| {
            let end = data.len().min((i + 1) * MAX_PAYLOAD);
            veil_proto::block::encode(&data[i * MAX_PAYLOAD..end])
                .unwrap()
                .1
                .routing
        })
        .collect();
    let sink = LossySink {
        inner: a,
        lost: std::sync::Arc::new(lost),
    };
    let done = encode(&sink, &data[..], &EncodeOptions::named("lossy.bin"), |_| {})
        .await
        .unwrap();
    assert_eq!(get(&b, &done.uri).await, data);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_directory_round_trips() {
    let net = two_nodes().await;
    let (a, b) = (client(&net, 0), client(&net, 1));
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("index.html", b"<p>hi</p>".to_vec()),
        ("docs/guide/intro.txt", pattern(3 * MAX_PAYLOAD + 1, 1)),
        ("docs/empty", Vec::new()),
        ("img/a b.png", pattern(500, 2)),
    ];
    for (p, data) in &files {
        let path = src.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let site = put_dir(&a, src.path(), &EncodeOptions::named("site"), |_, _| {})
        .await
        .unwrap();
    let Resolved::Directory(entries) = resolve(&b, &site.uri).await.unwrap() else {
        panic!("not a directory");
    };
    let out = tempfile::tempdir().unwrap();
    restore(&b, &entries, out.path(), |_, _| {}).await.unwrap();
    for (p, data) in &files {
        assert_eq!(&std::fs::read(out.path().join(p)).unwrap(), data, "{p}");
    }
    let mut one = site.uri.clone();
    one.path = vec!["docs".into(), "guide".into(), "intro.txt".into()];
    let Resolved::File(keys, _) = resolve(&b, &one).await.unwrap() else {
        panic!("not a file");
    };
    assert_eq!(get(&b, &Uri::new(keys)).await, files[1].1);
    net.shutdown().await;
}

/// Every file under `dir`, read whole (test data directories are small).
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_never_see_the_plaintext() {
    let net = two_nodes().await;
    let (a, b) = (client(&net, 0), client(&net, 1));
    let needle = b"Attack at dawn, bring the secret plans";
    let small = needle.to_vec();
    let large = needle.repeat(3000);
    let mut uris = Vec::new();
    for (name, text) in [("orders-small.txt", &small), ("orders-large.txt", &large)] {
        let done = encode(&a, &text[..], &EncodeOptions::named(name), |_| {})
            .await
            .unwrap();
        assert_eq!(&get(&b, &done.uri).await, text);
        uris.push(done.uri);
    }
    // Both nodes hold the blocks now (stored, cached or both): nothing they wrote to disk
    // contains the text, the file name or a data key.
    let mut scanned = 0;
    for i in 0..2 {
        for (path, bytes) in files_under(net.nodes[i].dir.path()) {
            scanned += bytes.len();
            assert!(!contains(&bytes, needle), "plaintext in {}", path.display());
            assert!(
                !contains(&bytes, b"orders-"),
                "file name in {}",
                path.display()
            );
            for uri in &uris {
                assert!(
                    !contains(&bytes, uri.keys.data.as_bytes()),
                    "data key in {}",
                    path.display()
                );
            }
        }
    }
    // The blocks themselves are there: the scan looked at real data.
    assert!(scanned > 5 * MAX_PAYLOAD, "only {scanned} bytes scanned");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_documents_and_manifests() {
    let net = two_nodes().await;
    let (a, b) = (client(&net, 0), client(&net, 1));
    let html = b"<!DOCTYPE html><title>t</title><p>hello gateway</p>".to_vec();
    let page = encode(&a, &html[..], &EncodeOptions::named("page.html"), |_| {})
        .await
        .unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/data.json"), "{}").unwrap();
    std::fs::write(src.path().join("index.html"), &html).unwrap();
    let site = put_dir(&a, src.path(), &EncodeOptions::named("site"), |_, _| {})
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(veil_client::gateway::serve(listener, b));
    let http = reqwest::Client::new();

    let check_headers = |r: &reqwest::Response| {
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self';"), "{csp}");
        assert!(csp.contains("form-action 'self'") && csp.contains("connect-src 'self'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    };
    let r = http
        .get(format!("{base}/{}", page.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    check_headers(&r);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.bytes().await.unwrap(), html);

    let r = http
        .get(format!("{base}/{}", site.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    check_headers(&r);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let listing = r.text().await.unwrap();
    let mut json = site.uri.clone();
    json.path = vec!["sub".into(), "data.json".into()];
    assert!(listing.contains(&format!("href=\"/{json}\"")), "{listing}");
    let r = http.get(format!("{base}/{json}")).send().await.unwrap();
    check_headers(&r);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), "{}");

    let r = http
        .get(format!("{base}/veil:CHK@nonsense"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    check_headers(&r);

    // The same gateway mounted in the node itself, on its API port.
    let node_gateway = &net.api(1).base;
    let r = http
        .get(format!("{node_gateway}/{}", page.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    check_headers(&r);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.bytes().await.unwrap(), html);
    net.shutdown().await;
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
        let out = veil(&bin, Some(&a2), &["put", site2.to_str().unwrap()]);
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
