//! The anonymity walk in real nodes: a 12-node small world on loopback, every node with
//! the daemon's default walk, moves documents through the HTTP API and the client
//! library; the fetching node's requests all start walks, other nodes relay and end
//! them, and the counters say so in `/metrics` too. A node with `walk_probability` 0
//! starts none but still relays others'.

use rand::{RngCore, SeedableRng};
use veil_client::{ApiClient, EncodeOptions};
use veil_node::NodeHandle;
use veil_proto::topology;
use veil_tests::{Testnet, Topology};

const N: usize = 12;

fn client(node: &NodeHandle) -> ApiClient {
    ApiClient::new(&node.api_url(), node.token()).expect("api client")
}

async fn publish_and_fetch(net: &Testnet, from: usize, to: usize, seed: u64) {
    let mut data = vec![0u8; 300_000];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let uri = veil_client::encode(
        &client(net.node(from)),
        &data[..],
        &EncodeOptions::named("walked.bin"),
        |_| {},
    )
    .await
    .expect("publish")
    .uri;
    // One client, one tunnel: the whole download leaves by one walk.
    let source = client(net.node(to));
    let top = veil_client::fetch_top(&source, uri.keys)
        .await
        .expect("top block");
    let got = veil_client::decode::read_to_vec(source, top, 1 << 30)
        .await
        .expect("document");
    assert!(got == data, "the document came back different");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_move_over_walks_and_the_counters_show_them() {
    let locations = topology::evenly_spaced(N, 12);
    let edges = topology::small_world(N, 2, 1, 12);
    let net = Testnet::start_with(N, Topology::Edges(edges), |i, c| {
        c.location = Some(locations[i].as_fraction());
        if i == 3 {
            c.walk_probability = 0.0;
        }
    })
    .await
    .expect("testnet");

    publish_and_fetch(&net, 0, 6, 1).await;
    let reader = net.node(6).router_stats().await.unwrap();
    let network_requests = reader.local_requests - reader.local_hits;
    assert!(network_requests > 0, "{reader:?}");
    assert_eq!(
        reader.walks_started, network_requests,
        "every request that left the reader started a walk"
    );
    assert_eq!(
        net.api(6).metric("walks_started_total").await.unwrap(),
        reader.walks_started
    );
    let mut relayed_or_ended = 0;
    for i in 0..N {
        let s = net.node(i).router_stats().await.unwrap();
        relayed_or_ended += s.walks_relayed + s.walks_ended;
    }
    assert!(relayed_or_ended > 0, "nobody relayed or ended a walk");

    // Node 3 sends its own requests without a walk, and still relays others'.
    let before = net.node(3).router_stats().await.unwrap();
    publish_and_fetch(&net, 9, 3, 2).await;
    let after = net.node(3).router_stats().await.unwrap();
    assert!(after.local_requests > before.local_requests);
    assert_eq!(after.walks_started, 0);
    net.shutdown().await;
}
