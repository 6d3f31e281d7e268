//! Names that stay put (issue 13), with the shipped `veil` binary against real nodes: a
//! site published from one node and republished twice is fetched as its newest edition
//! from another, by `veil get` and by the gateway; SSK and KSK documents cross nodes; a
//! second document under a taken name is refused and the first stays; bad input is one
//! line and nothing published.

use std::path::Path;
use veil_tests::{veil, veil_output, Testnet, Topology};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
}

/// Runs `veil --data-dir dir args`: (status ok, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    veil_output(dir, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_read_at_its_newest_edition_across_nodes() {
    let net = Testnet::start(4, Topology::Ring).await.expect("testnet");
    let (a, b) = (net.nodes[0].dir.path(), net.nodes[2].dir.path());
    let prefix = veil(a, &["keygen", "me"]).expect("keygen");
    assert!(
        prefix.starts_with("veil:SSK@") && prefix.ends_with('/'),
        "{prefix}"
    );
    let site = tempfile::tempdir().expect("dir");
    let big = "x".repeat(200_000);
    write(
        site.path(),
        &[("index.html", "<p>edition zero</p>"), ("big.bin", &big)],
    );
    let mut uris = Vec::new();
    for (i, page) in [
        "<p>edition zero</p>",
        "<p>edition one</p>",
        "<p>edition two</p>",
    ]
    .iter()
    .enumerate()
    {
        write(site.path(), &[("index.html", page)]);
        let (ok, uri, err) = run(
            a,
            &[
                "site",
                "publish",
                site.path().to_str().expect("utf-8"),
                "--key",
                "me",
                "--site",
                "blog",
            ],
        );
        assert!(ok, "{err}");
        assert!(uri.ends_with(&format!("/blog/{i}")), "{uri}");
        assert!(err.contains(&format!("edition {i} of blog")), "{err}");
        if i > 0 {
            // big.bin did not change: its blocks were not sent again.
            let skipped: u64 = err
                .split(", ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(skipped >= 7, "{err}");
        }
        uris.push(uri);
    }
    let newest = uris[2].replace("/blog/2", "/blog/-1");
    // From another node: the newest edition, and it says which.
    let (ok, body, err) = run(b, &["get", &format!("{newest}/index.html")]);
    assert!(ok, "{err}");
    assert_eq!(body, "<p>edition two</p>");
    assert!(err.contains("edition 2 of blog"), "{err}");
    let out = b.join("big.out");
    veil(
        b,
        &[
            "get",
            &format!("{newest}/big.bin"),
            "-o",
            out.to_str().expect("utf-8"),
        ],
    )
    .expect("get big");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), big);
    // An older edition stays readable by number.
    let (ok, body, _) = run(b, &["get", &format!("{}/index.html", uris[0])]);
    assert!(ok);
    assert_eq!(body, "<p>edition zero</p>");
    // The gateway of node 2 serves -1 as the newest and names it.
    let resp = reqwest::get(format!("{}/{newest}/index.html", net.api(2).base))
        .await
        .expect("gateway");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["veil-edition"], "2");
    assert!(resp.text().await.expect("body").contains("edition two"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssk_and_ksk_documents_cross_nodes_and_names_stay_put() {
    let net = Testnet::start(3, Topology::Line).await.expect("testnet");
    let (a, c) = (net.nodes[0].dir.path(), net.nodes[2].dir.path());
    veil(a, &["keygen", "pub"]).expect("keygen");
    let files = tempfile::tempdir().expect("dir");
    write(
        files.path(),
        &[
            ("notes.txt", "first notes"),
            ("other.txt", "other text"),
            ("k.txt", "keyword doc"),
        ],
    );
    let f = |n: &str| files.path().join(n).to_str().expect("utf-8").to_string();
    let ssk = veil(a, &["put", &f("notes.txt"), "--key", "pub"]).expect("put ssk");
    assert!(
        ssk.starts_with("veil:SSK@") && ssk.ends_with("/notes.txt"),
        "{ssk}"
    );
    assert_eq!(veil(c, &["get", &ssk]).expect("get ssk"), "first notes");
    // The same name with other content: refused, and the first stays.
    let (ok, out, err) = run(
        a,
        &[
            "put",
            &f("other.txt"),
            "--key",
            "pub",
            "--name",
            "notes.txt",
        ],
    );
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: ") && err.contains("already published"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(veil(c, &["get", &ssk]).expect("get ssk"), "first notes");
    // KSK: the words are the address.
    let ksk = veil(a, &["put", &f("k.txt"), "--ksk", "veil test words"]).expect("put ksk");
    assert_eq!(ksk, "veil:KSK@veil%20test%20words");
    assert_eq!(
        veil(c, &["get", "veil:KSK@veil test words"]).expect("get ksk"),
        "keyword doc"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signed_input_is_one_line_and_publishes_nothing() {
    let net = Testnet::start(2, Topology::Line).await.expect("testnet");
    let a = net.nodes[0].dir.path();
    let file = a.join("doc.txt");
    std::fs::write(&file, "x").expect("write");
    let file = file.to_str().expect("utf-8");
    let before = net.api(0).counter("local_inserts").await.expect("counter");
    veil(a, &["keygen", "k"]).expect("keygen");
    let usk = "veil:USK@q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE/blog/-2";
    let key_file = a.join("keys").join("k");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["put", file, "--key", "missing"],
            "no key called \"missing\"",
        ),
        (vec!["put", file, "--ksk", " "], "--ksk needs words"),
        (vec!["get", usk], "bad edition \"-2\""),
        (vec!["get", "veil:KSK@"], "needs words"),
        (vec!["keygen", "k"], "already exists"),
        (vec!["keygen", "../escape"], "bad key name"),
    ];
    for (args, want) in cases {
        let (ok, out, err) = run(a, &args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    // A key file others can read is refused, not used.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (ok, _, err) = run(a, &["put", file, "--key", "k"]);
        assert!(!ok && err.contains("readable by others"), "{err}");
    }
    assert_eq!(
        net.api(0).counter("local_inserts").await.expect("counter"),
        before,
        "nothing was published"
    );
    net.shutdown().await;
}
