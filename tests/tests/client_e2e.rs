//! End-to-end tests of the client (issue 5) against real in-process nodes: documents are
//! put through one node and fetched through another, so every block crosses a link.
//!
//! The CLI tests live in `client_cli.rs`, the Chromium test in `client_browser.rs`.

use std::path::{Path, PathBuf};
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
            copies: 2,
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
    tokio::spawn(veil_node::gateway::serve(listener, b));
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
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
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
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.bytes().await.unwrap(), html);
    net.shutdown().await;
}
