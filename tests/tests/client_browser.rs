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

/// Chromium, or `None` after saying the test `name` is skipped; in CI (`CI` set) a
/// missing Chromium fails the test instead.
fn chromium_or_skip(name: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed, and CI must run this test"
        );
        eprintln!("SKIPPED {name}: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// Asserts the outside listener was never reached. Anything Chromium started before it
/// exited is in the listener's accept queue by now; a probe connection queues behind it,
/// so once the probe is answered every earlier connection has been accepted and counted.
async fn assert_nothing_reached(
    outside: SocketAddr,
    count: &AtomicUsize,
    seen: &Mutex<Vec<String>>,
) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_never_fetches_outside_references() {
    let Some(chromium) = chromium_or_skip("browser_never_fetches_outside_references") else {
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
    assert_nothing_reached(outside, &count, &seen).await;
    net.shutdown().await;
}

/// The hostile corpus: one document per class of attack on the gateway's filter, with
/// the MIME type it is published under. `{o}` is the outside listener's URL, `{h}` its
/// `host:port`.
fn corpus(outside: SocketAddr) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let o = format!("http://{outside}");
    let h = outside.to_string();
    let page = |body: String| {
        format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><p>{MARKER}</p>{body}</body></html>").into_bytes()
    };
    let mut utf16 = vec![0xFF, 0xFE];
    for u in format!("<p>{MARKER}</p><img src=\"{o}/utf16.png\"><link rel=preconnect href=\"{o}\">")
        .encode_utf16()
    {
        utf16.extend(u.to_le_bytes());
    }
    vec![
        ("comments.html", "text/html", page(format!(
            "<!--><img src={o}/c1>--><!---><img src={o}/c2>--><!-- --!><img src={o}/c3> -->\
             <!--<!--><img src={o}/c4>--><!-- a -- b --><img src={o}/c5 alt=x>\
             <? processing <img src={o}/c6> ?><!DOCTYPE x [<img src={o}/c7>]>"))),
        ("rawtext.html", "text/html", page(format!(
            "<title><img src={o}/t></title><textarea><img src={o}/ta></textarea>\
             <noscript><p title=\"</noscript><img src={o}/ns>\"></noscript>\
             <xmp><img src={o}/x></xmp><style><img src={o}/st></style>\
             <noembed><img src={o}/ne></noembed><noframes><img src={o}/nf></noframes>\
             <iframe><img src={o}/if></iframe><plaintext><img src={o}/pt>"))),
        ("mxss.html", "text/html", page(format!(
            "<svg><p><style><img src={o}/m1></style></p></svg>\
             <math><mtext><table><mglyph><style><img src={o}/m2></style></mglyph></table></mtext></math>\
             <form><math><mtext></form><form><mglyph><style></math><img src={o}/m3>\
             <svg></p><style><a id=\"</style><img src={o}/m4>\"></a></style></svg>\
             <svg><foreignObject><iframe src={o}/m5></iframe></foreignObject></svg>"))),
        ("schemes.html", "text/html", page(format!(
            "<img src=\"HtTp://{h}/s1\"><img src=\"&#104;ttp://{h}/s2\"><img src=\"http&colon;//{h}/s3\">\
             <img src=\"&#x2F;&#x2F;{h}/s4\"><img src=\" &#14; //{h}/s5\"><img src=\"/\\{h}/s6\">\
             <img src=\"\\\\{h}/s7\"><img src=\"h\ttt\np://{h}/s8\"><img src=//{h}/s9>\
             <img srcset=\"ok.png 1x, //{h}/s10 2x\"><picture><source srcset=\"{o}/s11\"><img src=ok.png></picture>\
             <img src x=& =http:{h}/s12><img src y=& =\"http:{h}/s13\">"))),
        ("css.html", "text/html", page(format!(
            "<link rel=stylesheet href=\"evil.css\"><div style=\"background:url({o}/inline)\">x</div>\
             <div style=\"background:u\\72l({o}/esc)\">y</div>\
             <style>@import url({o}/imp.css); div{{background-image:image-set(\"{o}/is.png\" 1x)}}\
             p{{background:URL( {o}/upper.png )}}</style>"))),
        ("evil.css", "text/css", format!(
            "@import url({o}/css-import.css);\nbody{{background:url({o}/css-bg.png)}}\n\
             @font-face{{font-family:x;src:url({o}/font.woff)}} body{{font-family:x}}\n").into_bytes()),
        ("navigation.html", "text/html", page(format!(
            "<meta http-equiv=refresh content=\"0;url={o}/refresh\"><base href=\"{o}/\"><img src=\"rel.png\">\
             <form action=\"{o}/form\"><button formaction=\"{o}/fa\">go</button></form>\
             <a ping=\"{o}/ping\" href=\"#\">p</a><link rel=preconnect href=\"{o}\">\
             <link rel=dns-prefetch href=\"{o}\"><link rel=prefetch href=\"{o}/pf\">\
             <link rel=prerender href=\"{o}/pr\"><link rel=modulepreload href=\"{o}/mp\">\
             <link rel=preload as=image href=\"{o}/pl.png\"><iframe src=\"{o}/i\"></iframe>\
             <embed src=\"{o}/e\"><object data=\"{o}/o\"></object><portal src=\"{o}/p\"></portal>\
             <video poster=\"{o}/poster.png\" src=\"{o}/v.mp4\" autoplay></video>\
             <audio src=\"{o}/a.mp3\" autoplay></audio><input type=image src=\"{o}/ii.png\">\
             <body background=\"{o}/bg.png\"><table background=\"{o}/tb.png\"></table>\
             <img src=x onerror=\"fetch('{o}/onerror')\"><svg onload=\"fetch('{o}/svgonload')\"></svg>"))),
        ("data.html", "text/html", page(format!(
            "<iframe src=\"data:text/html,<img src={o}/d1>\"></iframe>\
             <object data=\"data:text/html,<img src={o}/d2>\"></object>\
             <a href=\"data:text/html,<img src={o}/d3>\">d</a>\
             <img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'><image href='{o}/d4'/></svg>\">\
             <iframe srcdoc=\"<img src={o}/d5>\"></iframe>"))),
        ("sjis.html", "text/html", {
            // In Shift_JIS the 0x82 byte swallows the quote after it, so a filter and a
            // browser that disagree on the encoding disagree on where the value ends.
            let mut b = b"<!DOCTYPE html><html><head><meta charset=\"shift_jis\"></head><body><p>".to_vec();
            b.extend(MARKER.as_bytes());
            b.extend(b"</p><img alt=\"\x82\" src=\"");
            b.extend(format!("{o}/sjis.png\"><img alt=\"").as_bytes());
            b.push(0x82);
            b.extend(format!("\" title=\" src={o}/sjis2.png x\">").as_bytes());
            b
        }),
        ("utf16.html", "text/html", utf16),
        ("hostile.svg", "image/svg+xml", format!(
            "<?xml version=\"1.0\"?><!DOCTYPE svg [<!ENTITY e \"<image href='{o}/ent.png'/>\">]>\
             <svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\">\
             <script href=\"{o}/s.js\"/><image href=\"{o}/i.png\"/><image xlink:href=\"{o}/xi.png\"/>\
             <use href=\"{o}/u.svg#a\"/><style><![CDATA[ @import url({o}/c.css); ]]></style>\
             <style>&lt;img src={o}/st&gt;</style><feImage href=\"{o}/fe.png\"/>\
             <foreignObject><iframe src=\"{o}/fo\"></iframe></foreignObject>&e;\
             <a xlink:href=\"{o}/a\"><text>{MARKER}</text></a><circle id=\"hostile-circle\" r=\"5\"/></svg>").into_bytes()),
        ("good.svg", "image/svg+xml", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" viewBox=\"0 0 10 10\"><defs><circle id=\"c\" r=\"2\"/></defs><circle id=\"good-circle\" cx=\"5\" cy=\"5\" r=\"4\" fill=\"red\"/><use xlink:href=\"#c\" x=\"5\" y=\"5\"/></svg>\n".to_vec()),
        ("good.xhtml", "application/xhtml+xml", format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>x</title></head><body><p id=\"xhtml-ok\">{MARKER}<br/>line</p></body></html>\n").into_bytes()),
        ("tool.swf", "application/x-shockwave-flash", b"FWS\x0a not really".to_vec()),
    ]
}

/// Every document of the hostile corpus, served through the gateway and loaded in
/// Chromium, reaches no outside host — counted as TCP connections, since a preconnect
/// sends nothing — while valid SVG and XHTML still render and an unknown type is offered
/// as a download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_never_reaches_outside() {
    let Some(chromium) = chromium_or_skip("hostile_corpus_never_reaches_outside") else {
        return;
    };
    let (outside, count, seen) = outside_listener().await;
    let net = Testnet::start(2, Topology::Line).await.expect("testnet");
    let a = ApiClient::new(&net.api(0).base, &net.api(0).token).unwrap();
    let mut uris = Vec::new();
    for (name, mime, bytes) in corpus(outside) {
        let opts = EncodeOptions {
            mime: Some(mime.into()),
            ..EncodeOptions::named(name)
        };
        let doc = encode(&a, bytes.as_slice(), &opts, |_| {}).await.unwrap();
        uris.push((name, doc.uri));
    }
    // evil.css is reached from css.html by a relative link: publish the pair as a
    // directory too, so the link resolves.
    let dir = tempfile::tempdir().unwrap();
    for (name, _, bytes) in corpus(outside)
        .into_iter()
        .filter(|(n, _, _)| n.starts_with("css") || n.starts_with("evil"))
    {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let site = veil_client::put_dir(&a, dir.path(), &EncodeOptions::named("css-site"), |_, _| {})
        .await
        .unwrap();
    let gateway = &net.api(1).base;
    let mut doms = Vec::new();
    for (name, uri) in &uris {
        doms.push((*name, load(&chromium, &format!("{gateway}/{uri}")).await));
    }
    doms.push((
        "css-site/css.html",
        load(&chromium, &format!("{gateway}/{}/css.html", site.uri)).await,
    ));
    assert_nothing_reached(outside, &count, &seen).await;
    let dom = |n: &str| &doms.iter().find(|(d, _)| *d == n).expect("loaded").1;
    for page in [
        "comments.html",
        "mxss.html",
        "schemes.html",
        "navigation.html",
        "data.html",
        "sjis.html",
        "css-site/css.html",
    ] {
        assert!(
            dom(page).contains(MARKER),
            "{page} did not load: {}",
            dom(page)
        );
    }
    assert!(
        dom("good.svg").contains("good-circle"),
        "valid SVG lost: {}",
        dom("good.svg")
    );
    assert!(
        dom("good.xhtml").contains("xhtml-ok"),
        "valid XHTML lost: {}",
        dom("good.xhtml")
    );
    assert!(
        dom("hostile.svg").contains("hostile-circle"),
        "{}",
        dom("hostile.svg")
    );
    assert!(dom("tool.swf").contains("Download"), "{}", dom("tool.swf"));
    assert!(
        !dom("utf16.html").contains(MARKER),
        "UTF-16 was served: {}",
        dom("utf16.html")
    );
    net.shutdown().await;
}
