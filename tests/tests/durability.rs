//! Durability with the shipped binaries (issue 12): documents outlive a third of a
//! network killed at once, and `veil keepalive` restores blocks gone from every store.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::time::Duration;
use veil_client::{BlockRole, EncodeOptions, MemoryStore};
use veil_proto::{Block, RoutingKey};
use veil_tests::{veil, DataDir, Testnet, Topology, VeildProcess};

/// Waits until every node in `nodes` has at least `want` routable peers, none in
/// `gone`, and the routable links among them join them all into one network, polling
/// their peer lists (a process offers no event channel).
async fn wait_settled(
    nodes: &[&VeildProcess],
    want: usize,
    gone: &HashSet<String>,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    let keys: Vec<String> = nodes.iter().map(|p| p.address.key.to_string()).collect();
    loop {
        let mut ok = true;
        let mut seen = Vec::new();
        let mut links = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let peers = node.api.peers().await.expect("peers");
            let routable: Vec<&str> = peers
                .iter()
                .filter(|p| p["routable"].as_bool() == Some(true))
                .map(|p| p["key"].as_str().unwrap_or_default())
                .collect();
            let stale = peers
                .iter()
                .any(|p| gone.contains(p["key"].as_str().unwrap_or_default()));
            for k in &routable {
                if let Some(j) = keys.iter().position(|x| x == k) {
                    links.push((i, j));
                }
            }
            ok &= routable.len() >= want && !stale;
            seen.push((routable.len(), stale));
        }
        let pieces = components(nodes.len(), &links);
        if ok && pieces == 1 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not settle in {limit:?}: {pieces} separate pieces; (routable peers, \
             still linked to a killed node) {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many separate pieces `n` nodes joined by `links` make.
fn components(n: usize, links: &[(usize, usize)]) -> usize {
    let mut root: Vec<usize> = (0..n).collect();
    fn find(root: &mut [usize], mut i: usize) -> usize {
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    let mut pieces = n;
    for &(a, b) in links {
        let (ra, rb) = (find(&mut root, a), find(&mut root, b));
        if ra != rb {
            root[ra] = rb;
            pieces -= 1;
        }
    }
    pieces
}

/// 20 `veild` processes grown from one seed; 30 documents from 1 KiB to 3 MiB published
/// through random nodes; 10 processes killed with SIGKILL at once (publishers and the
/// seed among them, as the dice fall); then every document fetched from a survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_outlive_half_the_processes_killed() {
    const N: usize = 20;
    const DOCS: usize = 30;
    const KILLED: usize = 10;
    let dirs: Vec<DataDir> = (0..N).map(|_| DataDir::new().expect("dir")).collect();
    let files = DataDir::new().expect("dir");
    let seed = VeildProcess::spawn(dirs[0].path(), &["--max-peers", "10"])
        .await
        .expect("seed starts");
    let seed_arg = seed.address.to_string();
    let args = ["--seed-node", seed_arg.as_str(), "--max-peers", "10"];
    let mut procs = vec![Some(seed)];
    for dir in &dirs[1..] {
        procs.push(Some(
            VeildProcess::spawn(dir.path(), &args).await.expect("veild"),
        ));
    }
    {
        let all: Vec<&VeildProcess> = procs.iter().map(|p| p.as_ref().expect("up")).collect();
        wait_settled(&all, 5, &HashSet::new(), Duration::from_secs(60)).await;
    }

    // Sizes spread evenly on a log scale from 1 KiB to 3 MiB.
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut docs = Vec::new();
    for i in 0..DOCS {
        let exp = (1024f64).ln() + ((3 << 20) as f64 / 1024.0).ln() * i as f64 / (DOCS - 1) as f64;
        let mut data = vec![0u8; exp.exp() as usize];
        rng.fill_bytes(&mut data);
        let file = files.path().join(format!("doc-{i}"));
        std::fs::write(&file, &data).expect("write");
        let at = rng.gen_range(0..N);
        let uri = veil(dirs[at].path(), &["put", file.to_str().expect("utf-8")])
            .unwrap_or_else(|e| panic!("put {i} ({} bytes) at node {at}: {e}", data.len()));
        docs.push((uri, data));
    }

    // Kill ten at once.
    let mut order: Vec<usize> = (0..N).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    let (killed, alive) = order.split_at(KILLED);
    let mut gone = HashSet::new();
    for &k in killed {
        let p = procs[k].take().expect("up");
        gone.insert(p.address.key.to_string());
        p.kill().expect("SIGKILL");
    }
    let survivors: Vec<&VeildProcess> = alive
        .iter()
        .map(|&i| procs[i].as_ref().expect("alive"))
        .collect();
    // Survivors notice the dead links and, where the kill cut a few of them off from
    // the rest, heal into one network again (through the seed, if it lives, or the
    // peers they still have) before the fetches.
    wait_settled(&survivors, 2, &gone, Duration::from_secs(90)).await;

    let mut fetched = 0;
    let mut failures = Vec::new();
    for (i, (uri, data)) in docs.iter().enumerate() {
        let at = alive[i % alive.len()];
        let out = files.path().join(format!("out-{i}"));
        match veil(
            dirs[at].path(),
            &["get", uri, "-o", out.to_str().expect("utf-8")],
        ) {
            Ok(_) if std::fs::read(&out).expect("out") == *data => fetched += 1,
            Ok(_) => panic!("doc {i}: fetched bytes differ"),
            Err(e) => failures.push(format!("doc {i} ({} bytes) at node {at}: {e}", data.len())),
        }
    }
    println!(
        "durability: {fetched}/{DOCS} documents fetched byte-identical after {KILLED} of {N} processes were killed; killed {killed:?}"
    );
    assert!(fetched >= DOCS - 1, "{fetched}/{DOCS}: {failures:?}");
}

/// The routing keys of data blocks `which` of a document of `data`.
fn data_keys(data: &[u8], which: &[usize]) -> Vec<RoutingKey> {
    which
        .iter()
        .map(|&i| {
            let chunk = &data[i * veil_proto::MAX_PAYLOAD..(i + 1) * veil_proto::MAX_PAYLOAD];
            veil_proto::block::encode(chunk).expect("block").1.routing
        })
        .collect()
}

/// Deletes `keys` from every node's store and cache (`DELETE /api/v1/blocks/{key}`).
async fn delete_everywhere(net: &Testnet, keys: &[RoutingKey]) {
    for i in 0..net.nodes.len() {
        for k in keys {
            let resp = net
                .api(i)
                .request(reqwest::Method::DELETE, &format!("/api/v1/blocks/{k}"))
                .send()
                .await
                .expect("delete");
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u8 ^ 0x5a)
        .collect()
}

/// A 5 MiB document loses a random 30% of its blocks from every store; `veil keepalive`
/// finds exactly those missing and restores them, and a second pass finds none missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_restores_blocks_gone_from_every_store() {
    let net = Testnet::start(4, Topology::Ring).await.expect("testnet");
    let data = pattern(5 << 20);
    let opts = EncodeOptions::named("five.bin");
    // Convergent encryption: encoding into memory names exactly the blocks the network
    // got, without asking any node.
    let mem = MemoryStore::new();
    let expected = veil_client::encode(&mem, &data[..], &opts, |_| {})
        .await
        .expect("encode");
    let client = veil_client::ApiClient::new(&net.api(0).base, &net.api(0).token).expect("api");
    let published = veil_client::encode(&client, &data[..], &opts, |_| {})
        .await
        .expect("publish");
    assert_eq!(published.uri, expected.uri);
    let uri = published.uri.to_string();

    // A random 30% of every block but the top one, sparing one copy of the index block
    // (an index block with no copy left cannot be rebuilt: `lost`, a unit test's case).
    let top = published.uri.keys.routing;
    let mut keys: Vec<(RoutingKey, Option<BlockRole>)> = mem
        .blocks()
        .iter()
        .map(Block::routing_key)
        .filter(|k| *k != top)
        .map(|k| (k, mem.role(&k)))
        .collect();
    keys.sort_by_key(|(k, _)| k.0);
    let mut rng = ChaCha8Rng::seed_from_u64(30);
    rand::seq::SliceRandom::shuffle(keys.as_mut_slice(), &mut rng);
    let spared = keys
        .iter()
        .find(|(_, r)| *r == Some(BlockRole::Index))
        .map(|(k, _)| *k)
        .expect("an index block");
    let gone: Vec<RoutingKey> = keys
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| *k != spared)
        .take((keys.len() * 3).div_ceil(10))
        .collect();
    delete_everywhere(&net, &gone).await;
    // Gone from the network: node 2 cannot find one.
    assert!(net.api(2).get_block(&gone[0], None).await.is_err());

    let dir = net.nodes[2].dir.path();
    let line = veil(dir, &["keepalive", &uri]).expect("keepalive");
    println!("first pass: {line}");
    let n = gone.len();
    assert!(
        line.contains(&format!(
            "{} blocks in 1 document, {n} missing ({n} rebuilt, 0 lost)",
            keys.len() + 1
        )) && line.ends_with(&format!("{n} inserted again")),
        "{line}"
    );
    for k in &gone {
        net.api(1).get_block(k, None).await.expect("restored");
    }
    let json = veil(dir, &["keepalive", "--json", &uri]).expect("second keepalive");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["missing"], 0, "{json}");
    assert_eq!(v[0]["reinserted"], 0, "{json}");
    assert_eq!(v[0]["uri"], uri.as_str());
    // And the document reads back whole.
    let out = dir.join("five.out");
    veil(dir, &["get", &uri, "-o", out.to_str().expect("utf-8")]).expect("get");
    assert_eq!(std::fs::read(&out).expect("read"), data);
    net.shutdown().await;
}

/// A `veil get` that has to rebuild data blocks from check blocks inserts them again
/// afterwards, so the next reader finds them directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_that_rebuilds_blocks_heals_them() {
    let net = Testnet::start(3, Topology::Line).await.expect("testnet");
    let data = pattern(1 << 20);
    let opts = EncodeOptions::named("one.bin");
    let client = veil_client::ApiClient::new(&net.api(0).base, &net.api(0).token).expect("api");
    let uri = veil_client::encode(&client, &data[..], &opts, |_| {})
        .await
        .expect("publish")
        .uri;
    // Data blocks 2, 9 and 30 of 32, gone from every store.
    let lost = data_keys(&data, &[2, 9, 30]);
    delete_everywhere(&net, &lost).await;
    assert!(net.api(1).get_block(&lost[0], None).await.is_err());
    let dir = net.nodes[2].dir.path();
    let out = dir.join("one.out");
    let run = std::process::Command::new(veil_tests::veil_path().expect("veil"))
        .arg("--data-dir")
        .arg(dir)
        .args(["get", &uri.to_string(), "-o", out.to_str().expect("utf-8")])
        .output()
        .expect("veil get");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert_eq!(std::fs::read(&out).expect("read"), data);
    assert!(
        stderr.contains("3 blocks of this document had to be rebuilt; inserted them again"),
        "{stderr}"
    );
    for k in &lost {
        net.api(1).get_block(k, None).await.expect("healed");
    }
    net.shutdown().await;
}

/// A node with `keepalive_uris` restores a document's lost blocks on its own schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_its_keepalive_uris_alive() {
    let data = pattern(600_000);
    let opts = EncodeOptions::named("kept.bin");
    // The URI is known before anything is published (convergent encryption), so the
    // keeping node can be configured with it from the start.
    let mem = MemoryStore::new();
    let uri = veil_client::encode(&mem, &data[..], &opts, |_| {})
        .await
        .expect("encode")
        .uri;
    let text = uri.to_string();
    let net = Testnet::start_with(3, Topology::Line, |i, c| {
        if i == 2 {
            c.keepalive_uris = vec![text.clone()];
            c.keepalive_interval_ms = 300;
        }
    })
    .await
    .expect("testnet");
    let client = veil_client::ApiClient::new(&net.api(0).base, &net.api(0).token).expect("api");
    veil_client::encode(&client, &data[..], &opts, |_| {})
        .await
        .expect("publish");
    // Two data blocks gone from every store.
    let lost = data_keys(&data, &[1, 12]);
    delete_everywhere(&net, &lost).await;
    // The node's next passes put them back: poll the stores (bounded) until each lost
    // block is held by some node again. Where the re-insert leaves its copies depends on
    // the replica walk, so any holder counts; node 0 must then be able to fetch them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let back = lost
            .iter()
            .filter(|k| (0..net.nodes.len()).any(|i| net.node(i).store_contains(k)))
            .count();
        if back == lost.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{back}/{} blocks restored by the schedule",
            lost.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Node 0 reaches them only through node 1, which may still decline the key for a
    // moment: the pass asked for the lost blocks in vain before it put them back, so
    // node 1's failure table holds them until a copy reaches node 1 (the first copy is
    // on node 2; the replica walk or node 2's offer brings one). Bounded poll.
    for k in &lost {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = net.api(0).get_block(k, None).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "restored block fetched: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    net.shutdown().await;
}
