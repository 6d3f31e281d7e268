//! Three nodes in a line A-B-C: a block inserted at C is fetched at A over two hops,
//! then fetched again and served from B's cache, which the status counters prove.

use veil_tests::{random_block, Testnet, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_two_hops_then_from_cache() -> anyhow::Result<()> {
    let net = Testnet::start(3, Topology::Line).await?;
    let (a, b, c) = (net.api(0), net.api(1), net.api(2));
    let (key, block) = random_block(1, 20_000);

    // HTL 0: only C holds the block.
    let put = c.put_block(&key, &block, Some(0)).await?;
    assert_eq!(put["routed"], false);
    assert_eq!(b.get_block_response(&key, Some(0)).await?.status(), 404);
    assert_eq!(a.get_block_response(&key, Some(0)).await?.status(), 404);

    // Two hops. HTL 5 is well under max-2, so B caches on the way back.
    assert_eq!(a.get_block(&key, Some(5)).await?, block);
    assert_eq!(c.counter("served_from_store").await?, 1);
    assert_eq!(b.counter("served_from_cache").await?, 0);
    let c_received = c.counter("received").await?;
    assert_eq!(c_received, 1);

    // Again: B answers from its cache and C hears nothing.
    assert_eq!(a.get_block(&key, Some(5)).await?, block);
    assert_eq!(b.counter("served_from_cache").await?, 1);
    assert_eq!(c.counter("received").await?, c_received);
    // The block crossed A's link twice (once per fetch), framed and encrypted.
    let received = a.status().await?["traffic"]["bytes_received"]
        .as_u64()
        .unwrap_or(0);
    assert!(received >= 2 * veil_proto::BLOCK_LEN as u64, "{received}");
    // The requester never caches its own user's requests.
    assert_eq!(a.status().await?["store"]["cache_blocks"], 0);

    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_routes_along_the_line() -> anyhow::Result<()> {
    let net = Testnet::start(3, Topology::Line).await?;
    let (key, block) = random_block(2, 100);
    // HTL 10 is under max-3, so every node past A keeps the block (cache or store).
    let put = net.api(0).put_block(&key, &block, Some(10)).await?;
    assert_eq!(put["routed"], true);
    // Whether it ends as a replica walk with nobody further (done) or as a route run
    // out of peers (`route_exhausted`) depends on where the random key falls.
    assert!(put["route_exhausted"].is_boolean());
    // The insert reached C, which now answers from its own store or cache.
    assert_eq!(net.api(2).get_block(&key, Some(0)).await?, block);
    net.shutdown().await;
    Ok(())
}
