//! Finding documents by words (issue 18), with the shipped `veil` binary against real
//! nodes: documents published from three nodes under overlapping keywords are found from
//! a fourth, all of them and only them, with AND across words; a publisher's signed index
//! is searched the same way; bad keywords are one line and nothing published.

use std::collections::BTreeSet;
use std::path::Path;
use veil_tests::{veil, veil_output, Testnet, Topology};

/// Runs `veil --data-dir dir args`: (status ok, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    veil_output(dir, args)
}

/// The names `veil search --json ARGS` finds from `dir`, checking every line's fields.
fn found(dir: &Path, args: &[&str]) -> BTreeSet<String> {
    let mut all = vec!["search", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = run(dir, &all);
    assert!(ok, "search {args:?}: {err}");
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            for field in ["uri", "name", "size", "mime", "description"] {
                assert!(v.get(field).is_some(), "{field} missing in {l}");
            }
            v["name"].as_str().expect("name").to_string()
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_from_three_nodes_are_found_by_words_from_a_fourth() {
    let net = Testnet::start(4, Topology::Ring).await.expect("testnet");
    let dirs: Vec<&Path> = net.nodes.iter().map(|n| n.dir.path()).collect();
    let files = tempfile::tempdir().expect("dir");
    let file = |name: &str, body: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, body).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    // Which node publishes what, under which words (case and Unicode forms vary).
    let published: [(usize, &str, &[&str]); 5] = [
        (0, "apple.txt", &["red", "Fruit"]),
        (1, "cherry.txt", &["RED", "fruit", "small"]),
        (1, "sky.txt", &["blue"]),
        (2, "grape.txt", &["fruit", "Small", "Straße"]),
        (2, "ruby.txt", &["red", "stone"]),
    ];
    let mut uris = std::collections::HashMap::new();
    for (node, name, words) in published {
        let path = file(name, &format!("the text of {name}"));
        let mut args = vec!["put", path.as_str(), "--description", "a test document"];
        args.push("--keyword");
        args.extend_from_slice(words);
        let (ok, uri, err) = run(dirs[node], &args);
        assert!(ok, "put {name}: {err}");
        assert!(uri.starts_with("veil:CHK@"), "{uri}");
        assert!(err.contains("listed under"), "{err}");
        uris.insert(name, uri);
    }
    // A keyword is not a KSK: a KSK of the same word takes nothing from it.
    let ksk = file("ksk.txt", "a KSK document");
    veil(dirs[0], &["put", &ksk, "--ksk", "red"]).expect("ksk put");
    // Listing the same document again is found, not added twice.
    let (ok, _, err) = run(
        dirs[0],
        &[
            "put",
            &file("apple.txt", "the text of apple.txt"),
            "--keyword",
            "red",
        ],
    );
    assert!(ok && err.contains("already listed"), "{err}");

    let d = dirs[3];
    assert_eq!(
        found(d, &["red"]),
        set(&["apple.txt", "cherry.txt", "ruby.txt"])
    );
    assert_eq!(
        found(d, &["fruit"]),
        set(&["apple.txt", "cherry.txt", "grape.txt"])
    );
    assert_eq!(
        found(d, &["Red", "FRUIT"]),
        set(&["apple.txt", "cherry.txt"])
    );
    assert_eq!(
        found(d, &["fruit", "small"]),
        set(&["cherry.txt", "grape.txt"])
    );
    assert_eq!(found(d, &["red", "small", "fruit"]), set(&["cherry.txt"]));
    assert_eq!(found(d, &["STRASSE"]), set(&["grape.txt"]));
    assert_eq!(found(d, &["blue"]), set(&["sky.txt"]));
    assert!(found(d, &["red", "blue"]).is_empty());
    assert!(found(d, &["purple"]).is_empty());

    // What a result names is the document, fetched from the fourth node.
    let (ok, out, _) = run(d, &["search", "--json", "stone"]);
    assert!(ok);
    let hit: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(hit["uri"], uris["ruby.txt"].as_str());
    assert_eq!(hit["size"], "the text of ruby.txt".len());
    assert_eq!(hit["mime"], "text/plain");
    assert_eq!(hit["description"], "a test document");
    assert_eq!(
        veil(d, &["get", hit["uri"].as_str().expect("uri")]).expect("get"),
        "the text of ruby.txt"
    );
    // The table: a header, the entry and its description.
    let (ok, table, err) = run(d, &["search", "stone"]);
    assert!(ok, "{err}");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("ruby.txt") && table.contains("a test document"),
        "{table}"
    );

    // The gateway of the fourth node: a search box on the start page, a results page
    // whose links stay inside the gateway.
    let base = &net.api(3).base;
    let start = reqwest::get(format!("{base}/")).await.expect("start page");
    assert!(start
        .text()
        .await
        .expect("body")
        .contains("action=\"/search\""));
    let results = reqwest::get(format!("{base}/search?q=Red+fruit"))
        .await
        .expect("search page");
    assert_eq!(results.status(), 200);
    let html = results.text().await.expect("body");
    for (name, listed) in [
        ("apple.txt", true),
        ("cherry.txt", true),
        ("ruby.txt", false),
    ] {
        let href = format!("href=\"/{}\"", uris[name]);
        assert_eq!(html.contains(&href), listed, "{name} in {html}");
    }
    let http = reqwest::Client::new();
    let cross = http
        .get(format!("{base}/search?q=red"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("cross-site search");
    assert_eq!(cross.status(), 403);
    let empty = reqwest::get(format!("{base}/search?q="))
        .await
        .expect("empty");
    assert_eq!(empty.status(), 400);

    // Bad input: one line, exit 1, nothing published.
    for (args, says) in [
        (vec!["search", ""], "empty keyword"),
        (vec!["search", "a", " "], "empty keyword"),
        (vec!["put", &ksk, "--keyword", ""], "empty keyword"),
    ] {
        let (ok, out, err) = run(d, &args);
        assert!(!ok && out.is_empty(), "{args:?}");
        assert!(
            err.starts_with("error: ") && err.contains(says),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let long = "x".repeat(300);
    let (ok, _, err) = run(d, &["search", &long]);
    assert!(!ok && err.contains("at most 256"), "{err}");

    // A site is listed at its newest edition.
    veil(dirs[1], &["keygen", "site-key"]).expect("keygen");
    let site = tempfile::tempdir().expect("site");
    std::fs::write(site.path().join("index.html"), "<p>garden</p>").expect("write");
    let site_dir = site.path().to_str().expect("utf-8");
    let publish = [
        "site", "publish", site_dir, "--key", "site-key", "--site", "garden",
    ];
    let (ok, _, err) = run(dirs[1], &[&publish[..], &["--keyword", "plants"]].concat());
    assert!(ok, "{err}");
    let (ok, out, _) = run(d, &["search", "--json", "plants"]);
    assert!(ok);
    let hit: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(hit["name"], "garden");
    let newest = hit["uri"].as_str().expect("uri");
    assert!(
        newest.starts_with("veil:USK@") && newest.ends_with("/garden/-1"),
        "{newest}"
    );
    assert_eq!(
        veil(d, &["get", &format!("{newest}/index.html")]).expect("get site"),
        "<p>garden</p>"
    );

    // A publisher's signed index: only entries its owner added, searched by URI.
    veil(dirs[0], &["keygen", "lib"]).expect("keygen");
    let mut index_uri = String::new();
    for (name, words) in [
        ("apple.txt", &["fruit", "Tree"][..]),
        ("ruby.txt", &["stone"]),
        ("grape.txt", &["fruit", "vine"]),
    ] {
        let mut args = vec!["index", "add", "--key", "lib", uris[name].as_str()];
        args.extend_from_slice(words);
        let (ok, uri, err) = run(dirs[0], &args);
        assert!(ok, "index add {name}: {err}");
        assert!(
            uri.starts_with("veil:USK@") && uri.ends_with("/index/-1"),
            "{uri}"
        );
        index_uri = uri;
    }
    let idx = |words: &[&str]| {
        let mut args = vec!["--index", index_uri.as_str()];
        args.extend_from_slice(words);
        found(d, &args)
    };
    assert_eq!(idx(&["fruit"]), set(&["apple.txt", "grape.txt"]));
    assert_eq!(idx(&["fruit", "tree"]), set(&["apple.txt"]));
    assert_eq!(idx(&["STONE"]), set(&["ruby.txt"]));
    // cherry.txt is under "fruit" on the network, not in this index.
    assert!(idx(&["red"]).is_empty());
    net.shutdown().await;
}
