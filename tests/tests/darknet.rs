//! Darknet with the shipped binaries: a `veild --darknet` node links to its friend and
//! to nobody else — a stranger that dials it, or announces through it as its seed, is
//! refused — and documents still move over the friend link.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

/// Twenty `veild --darknet` processes, each told only its friends (a ring with chords)
/// and dealt a random place on the ring, swap locations over their friend links until
/// their links are short, keep every link, and move 30 documents between random nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn darknet_processes_swap_locations_and_move_documents() {
    const N: usize = 20;
    let dirs: Vec<DataDir> = (0..N).map(|_| DataDir::new().expect("dir")).collect();
    let keys: Vec<String> = dirs
        .iter()
        .map(|d| {
            veil_node::identity::Identity::load_or_create(d.path())
                .expect("identity")
                .public()
                .to_string()
        })
        .collect();
    let ports = veil_tests::free_loopback_ports(N).expect("ports");
    let friends = |i: usize| [(i + 1) % N, (i + N - 1) % N, (i + 3) % N, (i + N - 3) % N];
    // The ring's places dealt at random, so swapping has something to sort out and the
    // test knows where each node started.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut dealt: Vec<usize> = (0..N).collect();
    rand::seq::SliceRandom::shuffle(dealt.as_mut_slice(), &mut rng);
    let mut procs = Vec::new();
    for i in 0..N {
        let mut args: Vec<String> = vec![
            "--darknet".into(),
            "--swap-interval-ms".into(),
            "200".into(),
            "--location".into(),
            format!("{}", dealt[i] as f64 / N as f64),
        ];
        for f in friends(i) {
            args.push("--peer".into());
            args.push(format!("{}@127.0.0.1:{}", keys[f], ports[f]));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        procs.push(
            VeildProcess::spawn_listening(dirs[i].path(), ports[i], &args)
                .await
                .expect("veild"),
        );
    }
    poll_until("every node links to its four friends", WAIT, || async {
        for p in &procs {
            if peer_keys(&p.api).await.len() < 4 {
                return false;
            }
        }
        true
    })
    .await;
    // Converging: the friend links' mean ring length, from each node's status, falls
    // well below where the random deal left it.
    let link_length = |at: &[f64]| {
        let mut sum = 0.0;
        for (i, a) in at.iter().enumerate() {
            for f in friends(i) {
                let d = (a - at[f]).abs();
                sum += d.min(1.0 - d);
            }
        }
        sum / (4 * N) as f64
    };
    let dealt_at: Vec<f64> = dealt.iter().map(|&d| d as f64 / N as f64).collect();
    let before = link_length(&dealt_at);
    poll_until("the locations converge", WAIT, || async {
        let mut at = Vec::new();
        for p in &procs {
            at.push(
                p.api.status().await.expect("status")["location"]
                    .as_f64()
                    .expect("location"),
            );
        }
        link_length(&at) < 0.7 * before
    })
    .await;
    let mut moved_nodes = 0;
    for (i, p) in procs.iter().enumerate() {
        let at = p.api.status().await.expect("status")["location"]
            .as_f64()
            .expect("location");
        if (at - dealt[i] as f64 / N as f64).abs() > 1e-9 {
            moved_nodes += 1;
        }
        assert_eq!(
            p.api.metric("swaps_refused_total").await.expect("metric"),
            0
        );
        assert_eq!(peer_keys(&p.api).await.len(), 4, "links kept");
    }
    assert!(moved_nodes >= 2, "the status shows the new locations");

    for pair in 0..30 {
        let (from, to) = (rng.gen_range(0..N), rng.gen_range(0..N));
        let mut data = vec![0u8; 40_000 + pair * 1000];
        rng.fill_bytes(&mut data);
        let file = dirs[from].path().join(format!("doc-{pair}"));
        std::fs::write(&file, &data).expect("write");
        let uri = veil(dirs[from].path(), &["put", file.to_str().expect("utf-8")]).expect("put");
        let out = dirs[to].path().join(format!("out-{pair}"));
        veil(
            dirs[to].path(),
            &["get", &uri, "-o", out.to_str().expect("utf-8")],
        )
        .unwrap_or_else(|e| panic!("pair {pair}: get at {to} of a put at {from}: {e}"));
        assert_eq!(std::fs::read(&out).expect("out"), data);
    }
    // Every insert left by seven routes, each on a walk of its own (spread inserts, the
    // darknet's default): a node's walks started are at least seven per local insert.
    let (mut inserts, mut walks) = (0, 0);
    for p in &procs {
        inserts += p.api.metric("local_inserts_total").await.expect("metric");
        walks += p.api.metric("walks_started_total").await.expect("metric");
    }
    assert!(inserts >= 60, "{inserts} inserts");
    assert!(
        walks >= 7 * inserts,
        "{walks} walks started for {inserts} inserts"
    );
}
