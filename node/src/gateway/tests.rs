//! Gateway tests over a real loopback server and an in-memory store.

use super::*;
use veil_client::dir::put_dir;
use veil_client::encode::{encode, EncodeOptions};
use veil_client::source::MemoryStore;

async fn serve(store: MemoryStore) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(store)).await });
    format!("http://{addr}")
}

fn assert_protective(resp: &reqwest::Response) {
    let h = resp.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    for d in [
        "form-action 'self'",
        "connect-src 'self'",
        "script-src 'none'",
        "sandbox",
    ] {
        assert!(csp.contains(d), "{csp} lacks {d}");
    }
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

/// The status page of `veild` uses this too, inside single- and double-quoted values.
#[test]
fn escapes_markup_and_both_quotes() {
    assert_eq!(
        html_escape(r#"<a href='x' title="y">&</a>"#),
        "&lt;a href=&#39;x&#39; title=&quot;y&quot;&gt;&amp;&lt;/a&gt;"
    );
}

#[test]
fn paths_parse() {
    let text = "veil:CHK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
                AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    let chk = |a: AnyUri| match a {
        AnyUri::Chk(u) => u,
        other => panic!("{other}"),
    };
    let u = chk(uri_from_path(&format!("/{text}/my%20site/a/b%2Fc.txt")).unwrap());
    assert_eq!(u.name.as_deref(), Some("my site"));
    assert_eq!(u.path, ["a", "b/c.txt"]);
    let enc = text
        .replace(':', "%3A")
        .replace('@', "%40")
        .replace(',', "%2C");
    assert_eq!(chk(uri_from_path(&format!("/{enc}")).unwrap()).keys, u.keys);
    assert!(matches!(
        uri_from_path("/veil%3AKSK%40hello/a.html").unwrap(),
        AnyUri::Signed(SignedUri::Ksk { .. })
    ));
    assert!(uri_from_path("/favicon.ico").is_err());
    assert!(uri_from_path("/veil%zz").is_err());
}

#[tokio::test]
async fn serves_documents_and_manifests_with_protective_headers() {
    let store = MemoryStore::new();
    let html = b"<!DOCTYPE html><title>t</title><p>hello</p>".repeat(2000);
    let doc = encode(
        &store,
        &html[..],
        &EncodeOptions::named("page.html"),
        |_| {},
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/a.css"), "p{}").unwrap();
    std::fs::write(dir.path().join("\"><script>x.txt"), "x").unwrap();
    let site = put_dir(&store, dir.path(), &EncodeOptions::named("site"), |_, _| {})
        .await
        .unwrap();
    let base = serve(store).await;
    let http = reqwest::Client::new();

    let resp = http
        .get(format!("{base}/{}", doc.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_protective(&resp);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(resp.bytes().await.unwrap(), html);

    // The same URI with its scheme and keys percent-encoded, as some tools send it.
    let encoded = doc
        .uri
        .to_string()
        .replace(':', "%3A")
        .replace('@', "%40")
        .replace(',', "%2C");
    let resp = http.get(format!("{base}/{encoded}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), html);

    let resp = http
        .get(format!("{base}/{}", site.uri))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_protective(&resp);
    let page = resp.text().await.unwrap();
    let mut css = site.uri.clone();
    css.path = vec!["sub".into(), "a.css".into()];
    let href = format!("href=\"/{css}\"");
    assert!(page.contains(&href), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    let resp = http.get(format!("{base}/{css}")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/css");
    assert_eq!(resp.text().await.unwrap(), "p{}");

    // Missing document, missing path, malformed URI, foreign Host: all with headers.
    let mut missing = doc.uri.clone();
    missing.keys.routing = veil_proto::RoutingKey([9; 32]);
    let mut nopath = site.uri.clone();
    nopath.path = vec!["nope".into()];
    for (url, status) in [
        (format!("{base}/{missing}"), 404),
        (format!("{base}/{nopath}"), 404),
        (format!("{base}/veil:CHK@short,key"), 400),
        (format!("{base}/favicon.ico"), 400),
    ] {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), status, "{url}");
        assert_protective(&resp);
    }
    let resp = http
        .get(format!("{base}/{}", doc.uri))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_protective(&resp);
    let resp = http
        .get(format!("{base}/{}", doc.uri))
        .header("host", "localhost:1234")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn other_sites_cannot_use_the_gateway() {
    let store = MemoryStore::new();
    let doc = encode(
        &store,
        &b"private"[..],
        &EncodeOptions::named("a.txt"),
        |_| {},
    )
    .await
    .unwrap();
    // A document the node does not have: a refusal must come before any lookup, so the
    // answer (and its timing) is the same whether or not the node holds it.
    let mut missing = doc.uri.clone();
    missing.keys.routing = veil_proto::RoutingKey([7; 32]);
    let missing = missing.to_string();
    let base = serve(store).await;
    let http = reqwest::Client::new();
    let get = |uri: String, site: Option<&'static str>, mode: &'static str| {
        let mut req = http.get(format!("{base}/{uri}"));
        if let Some(site) = site {
            req = req
                .header("sec-fetch-site", site)
                .header("sec-fetch-mode", mode);
        }
        req.send()
    };
    for uri in [doc.uri.to_string(), missing.clone()] {
        for site in ["cross-site", "same-site"] {
            let resp = get(uri.clone(), Some(site), "no-cors").await.unwrap();
            assert_eq!(resp.status(), 403, "{site} subresource");
            assert_protective(&resp);
            let resp = get(uri.clone(), Some(site), "navigate").await.unwrap();
            assert_eq!(resp.status(), 200, "{site} navigation");
            let body = resp.text().await.unwrap();
            assert!(!body.contains("private"), "{body}");
            assert!(body.contains("href=\"/veil:CHK@"), "{body}");
        }
    }
    // The gateway's own pages, the user typing a URI, and clients that do not say.
    for site in [Some("same-origin"), Some("none"), None] {
        let resp = get(doc.uri.to_string(), site, "navigate").await.unwrap();
        assert_eq!(resp.status(), 200, "{site:?}");
        assert_eq!(resp.text().await.unwrap(), "private");
    }
}

/// `/veil:USK@.../site/-1/...` serves the newest edition, says which, and its listing's
/// links stay on `-1` so they follow the site across editions.
#[tokio::test]
async fn serves_the_newest_edition_of_a_site() {
    use veil_client::signed::publish_signed;
    use veil_proto::ssk::KeyPair;
    use veil_proto::uri::usk_name;
    let store = MemoryStore::new();
    let pair = KeyPair::generate(&mut rand::thread_rng());
    for edition in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("index.html"),
            format!("<p>edition {edition}</p>"),
        )
        .unwrap();
        let site = put_dir(&store, dir.path(), &EncodeOptions::named("blog"), |_, _| {})
            .await
            .unwrap();
        publish_signed(&store, &pair, &usk_name("blog", edition), site.uri.keys)
            .await
            .unwrap();
    }
    let base = serve(store).await;
    let newest = SignedUri::Usk {
        keys: pair.keys(),
        site: "blog".into(),
        edition: -1,
        path: vec![],
    };
    let resp = reqwest::get(format!("{base}/{newest}/index.html"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_protective(&resp);
    assert_eq!(resp.headers()["veil-edition"], "2");
    assert!(String::from_utf8_lossy(&resp.bytes().await.unwrap()).contains("edition 2"));
    // An older edition by number.
    let first = newest.to_string().replace("/-1", "/0");
    let body = reqwest::get(format!("{base}/{first}/index.html"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("edition 0"), "{body}");
    // The listing names the edition and links under -1.
    let page = reqwest::get(format!("{base}/{newest}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("blog (edition 2)"), "{page}");
    assert!(page.contains(&format!("/{newest}/index.html")), "{page}");
    // A site with no edition: 404.
    let other = KeyPair::generate(&mut rand::thread_rng());
    let none = SignedUri::Usk {
        keys: other.keys(),
        site: "blog".into(),
        edition: -1,
        path: vec![],
    };
    assert_eq!(
        reqwest::get(format!("{base}/{none}/"))
            .await
            .unwrap()
            .status(),
        404
    );
}

/// A document over the gateway's bound is a 413 page, answered from its top block alone.
#[tokio::test]
async fn documents_over_the_bound_are_refused() {
    let store = MemoryStore::new();
    let doc = encode(
        &store,
        &[7u8; 200_000][..],
        &EncodeOptions::named("big.bin"),
        |_| {},
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limited = router_with_limit(store.clone(), 100_000);
    tokio::spawn(async move { axum::serve(listener, limited).await });
    let resp = reqwest::get(format!("http://{addr}/{}", doc.uri))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_protective(&resp);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("more than this gateway serves"));
    // Under the default bound it is served.
    let base = serve(store).await;
    let resp = reqwest::get(format!("{base}/{}", doc.uri)).await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// The start page's box: `/go?uri=` leads to the gateway path of whatever form was
/// pasted; nothing or nonsense is a 400 page that says what a Veil address looks like.
#[tokio::test]
async fn the_uri_box_leads_to_the_document() {
    let base = serve(MemoryStore::default()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let text = "veil:CHK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
                AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE/a.txt";
    // Pasted as a gateway URL, percent-encoded by the form, with spaces around.
    let pasted = format!("  http://127.0.0.1:7401/{text} ")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('@', "%40")
        .replace(' ', "+");
    let r = client
        .get(format!("{base}/go?uri={pasted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/{text}"));
    for bad in ["", "?uri=", "?uri=hello"] {
        let r = client.get(format!("{base}/go{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let page = r.text().await.unwrap();
        assert!(page.contains("/veil:CHK@"), "{page}");
        assert!(page.contains("href=\"/\""), "{page}");
    }
}

/// Error pages say what happened and what to try, with the right status.
#[tokio::test]
async fn error_pages_say_what_to_try() {
    let base = serve(MemoryStore::default()).await;
    let missing = "veil:CHK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,\
                   AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    let r = reqwest::get(format!("{base}/{missing}")).await.unwrap();
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(page.contains("address is complete"), "{page}");
    assert!(page.contains("veil keepalive"), "{page}");
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::GATEWAY_TIMEOUT,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::BAD_REQUEST,
        StatusCode::FORBIDDEN,
        StatusCode::BAD_GATEWAY,
    ] {
        assert_ne!(
            advice(status),
            advice(StatusCode::IM_A_TEAPOT),
            "{status} has no advice of its own"
        );
    }
}

/// Each type is shown its way: markup filtered as `text/html; charset=utf-8` (SVG too),
/// text as `text/plain`, pictures as themselves, UTF-16 markup refused with 415, and an
/// unknown type as a page offering `?download=1`, which serves it as an attachment.
#[tokio::test]
async fn each_type_is_shown_its_way() {
    let store = MemoryStore::new();
    let put = |name: &'static str, mime: &'static str, bytes: Vec<u8>| {
        let store = store.clone();
        async move {
            let opts = EncodeOptions {
                mime: Some(mime.into()),
                ..EncodeOptions::named(name)
            };
            encode(&store, bytes.as_slice(), &opts, |_| {})
                .await
                .unwrap()
                .uri
        }
    };
    let svg = put(
        "a.svg",
        "image/svg+xml",
        br#"<svg xmlns="http://www.w3.org/2000/svg"><image href="//evil.example/x"/><circle r="1"/></svg>"#.to_vec(),
    )
    .await;
    let html16 = put(
        "u.html",
        "text/html; charset=utf-16",
        b"\xff\xfe<\0p\0>\0".to_vec(),
    )
    .await;
    let json = put("a.json", "application/json", b"{\"a\": 1}".to_vec()).await;
    let xml = put("feed.xml", "application/rss+xml", b"<rss/>".to_vec()).await;
    let png = put("a.png", "image/png", b"\x89PNG\r\n\x1a\n".to_vec()).await;
    let pdf = put("report.pdf", "application/pdf", b"%PDF-1.4 hello".to_vec()).await;
    let base = serve(store.clone()).await;
    let get = |uri: String| {
        let base = base.clone();
        async move { reqwest::get(format!("{base}/{uri}")).await.unwrap() }
    };

    let r = get(svg.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<circle r=\"1\"/>") && !body.contains("evil.example"),
        "{body}"
    );

    let r = get(html16.to_string()).await;
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("UTF-16"));

    let r = get(json.to_string()).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let r = get(xml.to_string()).await;
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let r = get(png.to_string()).await;
    assert_eq!(r.headers()["content-type"], "image/png");

    let r = get(pdf.to_string()).await;
    assert_eq!(r.status(), 200);
    assert_protective(&r);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("application/pdf") && page.contains("?download=1"),
        "{page}"
    );
    let r = get(format!("{pdf}?download=1")).await;
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"report.pdf\""
    );
    assert_eq!(r.bytes().await.unwrap(), &b"%PDF-1.4 hello"[..]);
}
