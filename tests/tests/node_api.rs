//! The HTTP API: token checks, error codes, and the status page's Host check.

use veil_tests::{random_block, Testnet, Topology};

#[tokio::test]
async fn refuses_missing_or_wrong_token() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let api = net.api(0);
    let http = api.http();
    for path in ["/api/v1/status", "/api/v1/peers", "/metrics"] {
        let url = format!("{}{path}", api.base);
        let none = http.get(&url).send().await?;
        assert_eq!(none.status(), 401, "{path}");
        let body: serde_json::Value = none.json().await?;
        assert_eq!(body["error"], "unauthorized");
        let wrong = http.get(&url).bearer_auth("not-the-token").send().await?;
        assert_eq!(wrong.status(), 401, "{path}");
        let right = http.get(&url).bearer_auth(&api.token).send().await?;
        assert_eq!(right.status(), 200, "{path}");
    }
    let (key, block) = random_block(3, 10);
    let url = format!("{}/api/v1/blocks/{key}?htl=0", api.base);
    let put = http.put(&url).body(block.bytes().clone()).send().await?;
    assert_eq!(put.status(), 401);
    assert_eq!(api.get_block_response(&key, Some(0)).await?.status(), 404);
    net.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn error_codes() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let api = net.api(0);
    let (key, block) = random_block(4, 10);
    let (other, _) = random_block(5, 10);
    let put =
        |path: String, body: Vec<u8>| api.request(reqwest::Method::PUT, &path).body(body).send();
    // Bad key text.
    let r = put("/api/v1/blocks/nope".into(), block.as_bytes().to_vec()).await?;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await?["error"],
        "bad_routing_key"
    );
    // A block under someone else's key.
    let r = put(
        format!("/api/v1/blocks/{other}?htl=0"),
        block.as_bytes().to_vec(),
    )
    .await?;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await?["error"],
        "block_mismatch"
    );
    // Wrong size, and too large.
    let r = put(format!("/api/v1/blocks/{key}"), vec![0; 10]).await?;
    assert_eq!(r.status(), 400);
    let r = put(format!("/api/v1/blocks/{key}"), vec![0; 40_000]).await?;
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<serde_json::Value>().await?["error"],
        "body_too_large"
    );
    // No peers: an insert is kept locally (and said so); a fetch finds no route.
    let r = put(format!("/api/v1/blocks/{key}"), block.as_bytes().to_vec()).await?;
    assert_eq!(r.status(), 200);
    let body = r.json::<serde_json::Value>().await?;
    assert_eq!(body["local_only"], true, "{body}");
    assert_eq!(body["routed"], false, "{body}");
    assert_eq!(api.get_block(&key, None).await?, block);
    let r = api.get_block_response(&other, None).await?;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await?["error"],
        "route_not_found"
    );
    net.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn status_page_checks_host() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let api = net.api(0);
    let page = api.http().get(format!("{}/", api.base)).send().await?;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-security-policy"],
        "default-src 'none'; form-action 'self'"
    );
    let html = page.text().await?;
    assert!(html.contains(&net.node(0).key().to_string()));
    // The ring with this node on it, the fill meters, the URI box and the hour's charts
    // (the first sample only so far: a note instead of bars).
    assert!(
        html.contains("<svg") && html.contains("class=\"self\""),
        "{html}"
    );
    assert_eq!(html.matches("<meter").count(), 2);
    assert!(html.contains("action=\"/go\""));
    assert!(html.contains("first minute"));
    // Nothing that could load from elsewhere: no src, no url(), no link but same-origin.
    assert!(!html.contains("src=") && !html.contains("url("), "{html}");
    for (i, _) in html.match_indices("href=") {
        assert!(html[i..].starts_with("href=\"/"), "{}", &html[i..i + 40]);
    }
    // It does not reload by itself (that would wipe what one types in its boxes)
    // unless asked, and then at a bounded pace.
    assert!(!html.contains("http-equiv"), "{html}");
    assert!(html.contains("href=\"/?refresh=60\""), "{html}");
    for (asked, meta) in [("30", "content=\"30\""), ("0", "content=\"5\"")] {
        let html = api
            .http()
            .get(format!("{}/?refresh={asked}", api.base))
            .send()
            .await?
            .text()
            .await?;
        assert!(
            html.contains(&format!("<meta http-equiv=\"refresh\" {meta}>")),
            "{html}"
        );
    }
    let bad = api
        .http()
        .get(format!("{}/?refresh=soon", api.base))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let evil = api
        .http()
        .get(format!("{}/", api.base))
        .header("Host", "evil.example")
        .send()
        .await?;
    assert_eq!(evil.status(), 403);
    net.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn gateway_is_mounted_beside_the_api() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let api = net.api(0);
    // The gateway answers without a token (a malformed URI is its 400 page)...
    let r = api
        .http()
        .get(format!("{}/veil:CHK@not-a-uri", api.base))
        .send()
        .await?;
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.text().await?;
    assert_eq!(status, 400, "{body}");
    assert!(headers.contains_key("content-security-policy"));
    // ...while the API's own paths still demand one.
    let r = api
        .http()
        .get(format!("{}/api/v1/status", api.base))
        .send()
        .await?;
    assert_eq!(r.status(), 401);
    net.shutdown().await;
    Ok(())
}

/// A node alone keeps what its user puts and inserts it into the network once it has a
/// peer: the peer receives the insert, and the pending list empties.
#[tokio::test]
async fn a_lone_node_inserts_its_blocks_once_it_has_a_peer() -> anyhow::Result<()> {
    let net = Testnet::start(2, Topology::None).await?;
    let (a, b) = (net.api(0), net.api(1));
    let (key, block) = random_block(6, 10);
    let r = a
        .request(reqwest::Method::PUT, &format!("/api/v1/blocks/{key}"))
        .body(block.as_bytes().to_vec())
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await?["local_only"], true);
    let pending = net.node(0).data_dir().join("pending_inserts");
    assert!(std::fs::read_to_string(&pending)?.contains(&key.to_string()));
    assert_eq!(b.status().await?["requests"]["inserts_received"], 0);
    net.link(&[(0, 1)]).await?;
    // The insert travels on the new link; nothing else would bring B an insert.
    let deadline = tokio::time::Instant::now() + veil_tests::WAIT;
    while b.status().await?["requests"]["inserts_received"] == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no insert reached the new peer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + veil_tests::WAIT;
    while !std::fs::read_to_string(&pending)?.trim().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pending list not emptied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    net.shutdown().await;
    Ok(())
}
