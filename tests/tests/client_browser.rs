//! The gateway in a real browser: headless Chromium loads a published HTML page through
//! the gateway, and every reference in it to an outside address (a listener on
//! 127.0.0.2, another origin) stays unfetched while the page itself loads.
//!
//! A control run serves the same page without the gateway's headers and shows the
//! listener does get connections, so the test can fail.
//!
//! Needs Debian's `chromium` package. Without it the test is skipped with a message,
//! except in CI (`CI` set), where it fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use veil_client::{encode, ApiClient, EncodeOptions};
use veil_tests::{Testnet, Topology};

const MARKER: &str = "veil-page-loaded-7f3a";

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A page that tries every way we know to make a browser reach `outside`.
fn hostile_page(outside: SocketAddr) -> String {
    let o = format!("http://{outside}");
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hostile</title>
<link rel="stylesheet" href="{o}/style.css">
<link rel="icon" href="{o}/favicon.ico">
<link rel="prefetch" href="{o}/prefetch">
<link rel="preconnect" href="{o}">
<link rel="dns-prefetch" href="{o}">
<link rel="preload" href="{o}/preload.js" as="script">
<meta http-equiv="refresh" content="0; url={o}/refresh">
<script src="{o}/script.js"></script>
<style>body {{ background: url({o}/background.png); }} @import url({o}/import.css);</style>
</head><body>
<p id="marker">{MARKER}</p>
<img src="{o}/image.png" alt="">
<iframe src="{o}/frame"></iframe>
<iframe srcdoc="<img src={o}/srcdoc.png>"></iframe>
<img srcset="{o}/1x.png 1x, {o}/2x.png 2x">
<svg><image href="{o}/svg.png"/></svg>
<a href="{o}/link">a link nobody clicks</a>
<video src="{o}/video.mp4" autoplay></video>
<object data="{o}/object"></object>
<form id="f" action="{o}/form"><input name="q" value="1"></form>
<script>fetch("{o}/fetch"); document.getElementById("f").submit(); location = "{o}/nav";</script>
</body></html>
"#
    )
}

/// A listener on 127.0.0.2 (loopback, another origin) that counts connections and
/// remembers the first request line of each.
async fn outside_listener() -> (SocketAddr, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (count.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                s.lock().unwrap().push(line);
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, count, seen)
}

/// A bare HTTP server that answers every request with `html` and no protective headers.
async fn plain_server(html: String) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    html.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(html.as_bytes()).await;
            });
        }
    });
    addr
}

/// Loads `url` in headless Chromium and returns the DOM it ends with.
async fn load(chromium: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        // Let timers, refreshes and scripts run before the DOM is dumped.
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(["--dump-dom", url])
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium timed out")
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_never_fetches_outside_references() {
    let Some(chromium) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed, and CI must run this test");
        }
        eprintln!("SKIPPED browser_never_fetches_outside_references: chromium is not installed (apt-get install chromium)");
        return;
    };
    let (outside, count, seen) = outside_listener().await;
    let html = hostile_page(outside);

    // Control: without the gateway's headers the same page does reach outside.
    let plain = plain_server(html.clone()).await;
    let dom = load(&chromium, &format!("http://{plain}/page.html")).await;
    assert!(
        count.load(Ordering::SeqCst) > 0,
        "the control page reached nothing outside, so this test could not fail: {dom}"
    );
    count.store(0, Ordering::SeqCst);
    seen.lock().unwrap().clear();

    // The page published and served through the gateway, across two nodes.
    let net = Testnet::start(2, Topology::Line).await.expect("testnet");
    let a = ApiClient::new(&net.api(0).base, &net.api(0).token).unwrap();
    let page = encode(
        &a,
        html.as_bytes(),
        &EncodeOptions::named("page.html"),
        |_| {},
    )
    .await
    .unwrap();
    // Through node 1's own gateway (veild mounts it on its API port).
    let dom = load(&chromium, &format!("{}/{}", net.api(1).base, page.uri)).await;
    assert!(dom.contains(MARKER), "the page did not load: {dom}");
    // Anything chromium started before it exited is in the listener's accept queue by
    // now. A probe connection queues behind it; once the probe is answered, every earlier
    // connection has been accepted and counted.
    let mut probe = tokio::net::TcpStream::connect(outside).await.unwrap();
    probe.write_all(b"PROBE\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    probe.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the browser reached outside: {:?}",
        seen.lock().unwrap()
    );
    net.shutdown().await;
}
