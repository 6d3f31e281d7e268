//! Darknet with the shipped binaries: a `veild --darknet` node links to its friend and
//! to nobody else — a stranger that dials it, or announces through it as its seed, is
//! refused — and documents still move over the friend link.

use std::time::Duration;
use veil_tests::{poll_until, veil, Api, DataDir, VeildProcess};

const WAIT: Duration = Duration::from_secs(30);

async fn peer_keys(api: &Api) -> Vec<String> {
    api.routable_peer_keys().await.expect("peers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_darknet_node_links_only_to_its_friends() {
    let dirs: Vec<DataDir> = (0..4).map(|_| DataDir::new().expect("dir")).collect();
    let friend = VeildProcess::spawn(dirs[0].path(), &[])
        .await
        .expect("friend");
    let friend_arg = friend.address.to_string();
    let dark = VeildProcess::spawn(dirs[1].path(), &["--darknet", "--peer", &friend_arg])
        .await
        .expect("darknet node");
    let dark_arg = dark.address.to_string();
    // One stranger dials it as a configured peer, another announces through it as its
    // seed (an opennet node short of peers).
    let dialler = VeildProcess::spawn(dirs[2].path(), &["--peer", &dark_arg])
        .await
        .expect("stranger");
    let announcer = VeildProcess::spawn(dirs[3].path(), &["--seed-node", &dark_arg])
        .await
        .expect("stranger");

    let friend_key = friend.address.key.to_string();
    poll_until("the darknet node links to its friend", WAIT, || async {
        peer_keys(&dark.api).await == vec![friend_key.clone()]
    })
    .await;
    // Both strangers have tried: each refusal is counted.
    poll_until("both strangers are refused", WAIT, || async {
        dark.api.metric("links_refused_total").await.unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(peer_keys(&dark.api).await, vec![friend_key.clone()]);
    let dark_key = dark.address.key.to_string();
    for stranger in [&dialler, &announcer] {
        assert!(!peer_keys(&stranger.api).await.contains(&dark_key));
    }
    // No announcement, no folding: nothing opennet ever ran on it.
    assert_eq!(
        dark.api
            .metric("opennet_announcements_total")
            .await
            .expect("metric"),
        0
    );

    // Documents cross the friend link both ways.
    let file = dirs[1].path().join("doc");
    std::fs::write(&file, vec![7u8; 100_000]).expect("write");
    let uri = veil(dirs[1].path(), &["put", file.to_str().expect("utf-8")]).expect("put");
    let out = dirs[0].path().join("out");
    veil(
        dirs[0].path(),
        &["get", &uri, "-o", out.to_str().expect("utf-8")],
    )
    .expect("get at the friend");
    assert_eq!(std::fs::read(&out).expect("out"), vec![7u8; 100_000]);
}

/// A darknet node with a seed is a contradiction: one clear line, a non-zero exit.
#[test]
fn darknet_with_a_seed_is_refused_at_start() {
    let dir = DataDir::new().expect("dir");
    let seed = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:9";
    let out = std::process::Command::new(veil_tests::veild_path().expect("veild"))
        .args(["--data-dir", dir.path().to_str().expect("utf-8")])
        .args(["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .args(["--darknet", "--seed-node", seed])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("darknet links only to friends"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
