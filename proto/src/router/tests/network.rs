//! Rules that show across several routers, on the in-memory network.

use super::*;

#[test]
fn insert_then_fetch_along_a_line() {
    let (b, key) = blk(1);
    let kl = Location::of_key(&key).0;
    // Five nodes approaching the key; node 4 is the closest.
    let locs: Vec<u64> = (0..5u64).map(|i| kl.wrapping_add((5 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    let ins = net.insert(0, b.clone(), None);
    net.drive();
    // Node 4 stores it and its replica walk finds nobody further: the walk's end, which
    // it reports as done (the approach was not cut short).
    assert_eq!(
        net.insert_result(0, ins),
        Some(Ok(InsertReport {
            route_exhausted: false
        }))
    );
    assert_eq!(
        net.placement(4, &key),
        Some(Placement::Store),
        "sink stores"
    );
    assert_eq!(net.placement(0, &key), None, "never for one's own insert");
    let req = net.request(0, key, None);
    net.drive();
    let got = net.request_result(0, req).unwrap().unwrap();
    assert_eq!(got.block, b);
    assert_eq!(got.from, Some(PeerId(1)));
    // Four hops out, four back.
    let data_msgs: usize = net
        .nodes
        .iter()
        .map(|n| {
            n.received
                .iter()
                .filter(|(_, m)| matches!(m, Message::Data { .. }))
                .count()
        })
        .sum();
    assert_eq!(data_msgs, 4);
    assert_eq!(net.nodes[4].router.stats().served_from_store, 1);
}

#[test]
fn htl_runs_out_along_a_line() {
    let mut net = Net::line(&[10, 20, 30, 40, 50, 60]);
    let key = key_at(100);
    let id = net.request(0, key, Some(Htl(3)));
    net.drive();
    assert_eq!(
        net.request_result(0, id),
        Some(Err(RequestFailure::DataNotFound))
    );
    // HTL 3 reaches nodes 1, 2 and 3; node 3 forwards with HTL 0, so it answers.
    assert!(net.nodes[4].received.is_empty());
    assert!(!net.nodes[3].received.is_empty());
}

#[test]
fn htl_policy_always_decrements_everywhere_but_the_originator() {
    let mut net = Net::line(&[10, 20, 30, 40]);
    net.request(0, key_at(100), None);
    net.drive();
    let htl_at = |n: usize| match &net.nodes[n].received[0].1 {
        Message::Request { htl, .. } => htl.0,
        m => panic!("{m:?}"),
    };
    assert_eq!((htl_at(1), htl_at(2), htl_at(3)), (18, 17, 16));
}

#[test]
fn a_silent_peer_costs_the_budget_and_the_upstream_backtracks_in_time() {
    // 0 - 1 - 2 and 0 - 3. Node 2 is closest to the key but the link 1 → 2 is dead;
    // node 1 is node 0's closest peer; node 3 holds the block.
    let (b, key) = blk(3);
    let kl = Location::of_key(&key).0;
    let mut net = Net::new(
        &[kl ^ (1 << 62), kl ^ (1 << 40), kl ^ 1, kl ^ (1 << 50)],
        cfg,
    );
    net.link(0, 1);
    net.link(1, 2);
    net.link(0, 3);
    net.hold(3, key, &b);
    net.black_holes.insert((1, 2));
    let id = net.request(0, key, None);
    net.drive();
    assert_eq!(net.request_result(0, id).unwrap().unwrap().block, b);
    // Node 1's wait for node 2 (hop_timeout × 18) used up its answer budget, so it said
    // route-not-found before node 0's wait (hop_timeout × 19) expired.
    assert_eq!(net.nodes[1].router.stats().timeouts, 1);
    assert_eq!(net.nodes[0].router.stats().timeouts, 0);
    assert!(net.now - net.start < Duration::from_secs(2) * 19);
}

#[test]
fn caches_on_the_return_path_except_near_the_originator() {
    // A line of 6 with the block held at the end; under `Always`, node i receives
    // HTL 19 - i, so nodes 1 and 2 (HTL 18 and 17 > 16) must not cache, 3 and 4 must.
    let (b, key) = blk(6);
    let kl = Location::of_key(&key).0;
    let locs: Vec<u64> = (0..6u64).map(|i| kl.wrapping_add((6 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    net.nodes[5].store.blocks.insert(key, (b, Placement::Store));
    let id = net.request(0, key, None);
    net.drive();
    assert!(net.request_result(0, id).unwrap().is_ok());
    let cached: Vec<Option<Placement>> = (0..5).map(|n| net.placement(n, &key)).collect();
    assert_eq!(
        cached,
        vec![
            None,
            None,
            None,
            Some(Placement::Cache),
            Some(Placement::Cache)
        ]
    );
    // A second request is served from the nearest cache.
    let id = net.request(0, key, None);
    net.drive();
    assert!(net.request_result(0, id).unwrap().is_ok());
    assert_eq!(net.nodes[3].router.stats().served_from_cache, 1);
}

#[test]
fn inserts_cache_three_hops_away_and_store_where_htl_runs_out() {
    let (b, key) = blk(7);
    let kl = Location::of_key(&key).0;
    let locs: Vec<u64> = (0..7u64).map(|i| kl.wrapping_add((7 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    // HTL 5: nodes 1..=5 receive 5, 4, 3, 2, 1; at node 5 HTL runs out, so the approach
    // ends there although node 6 is closer: node 5 keeps the first copy and the replica
    // walk takes it to node 6, the second of two, which answers `InsertReply`.
    let id = net.insert_with(0, b, Some(Htl(5)), Some(2));
    net.drive();
    assert_eq!(
        net.insert_result(0, id),
        Some(Ok(InsertReport {
            route_exhausted: false
        }))
    );
    assert!(matches!(
        net.nodes[6].received[..],
        [(
            _,
            Message::Insert {
                replicas: 2,
                stored: 1,
                ..
            }
        )]
    ));
    let placements: Vec<Option<Placement>> = (0..7).map(|n| net.placement(n, &key)).collect();
    assert_eq!(
        placements,
        vec![
            None,
            Some(Placement::Cache),
            Some(Placement::Cache),
            Some(Placement::Cache),
            Some(Placement::Cache),
            Some(Placement::Store),
            Some(Placement::Store)
        ]
    );
    // At the maximum HTL (18, 17, 16 received) nothing is cached.
    let (b2, key2) = blk(8);
    let kl2 = Location::of_key(&key2).0;
    let locs: Vec<u64> = (0..5u64).map(|i| kl2.wrapping_add((5 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    net.insert(0, b2, None);
    net.drive();
    let placements: Vec<Option<Placement>> = (0..5).map(|n| net.placement(n, &key2)).collect();
    // Node 4 (received 15) is the sink; node 3 received 16 > 15 and does not cache.
    assert_eq!(
        placements,
        vec![None, None, None, None, Some(Placement::Store)]
    );
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut net = Net::new(&[1 << 60, 2 << 60, 3 << 60, 4 << 60, 5 << 60], |i| {
            RouterConfig {
                rng_seed: i,
                ..greedy()
            }
        });
        for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2)] {
            net.link(a, b);
        }
        let ids: Vec<RequestId> = (0..5)
            .map(|n| net.request(n, key_at(n as u64 * 77), None))
            .collect();
        net.drive();
        (
            ids,
            net.nodes
                .iter()
                .map(|n| n.received.clone())
                .collect::<Vec<_>>(),
            net.now - net.start,
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn htl_bounds_the_nodes_a_request_visits_backtracking_included() {
    // A complete graph of 30 nodes, nothing stored: a request at HTL h may be accepted
    // by at most h nodes however much it backtracks.
    for htl in [1u8, 4, 10] {
        let locs: Vec<u64> = (0..30u64).map(|i| i << 58).collect();
        let mut net = Net::new(&locs, cfg);
        for a in 0..30 {
            for b in a + 1..30 {
                net.link(a, b);
            }
        }
        let id = net.request(0, key_at(7 << 58), Some(Htl(htl)));
        net.drive();
        assert!(net.request_result(0, id).unwrap().is_err());
        let accepted: usize = net
            .nodes
            .iter()
            .map(|n| {
                n.router.stats().requests_received as usize
                    - n.router.stats().rejected_loop as usize
            })
            .sum();
        assert!(accepted <= htl as usize, "htl {htl}: {accepted} nodes");
        assert!(accepted >= 1);
    }
}

#[test]
fn probabilistic_htl_still_bounds_the_nodes_a_request_visits() {
    for seed in 0..5u64 {
        let locs: Vec<u64> = (0..60u64).map(|i| i << 57).collect();
        let mut net = Net::new(&locs, |i| RouterConfig {
            rng_seed: i * 1000 + seed,
            ..greedy()
        });
        for a in 0..60 {
            for b in a + 1..60 {
                if (a * 7 + b * 13) % 3 == 0 {
                    net.link(a, b);
                }
            }
        }
        // A key nobody holds: the request walks until HTL runs out. (An insert now ends
        // once its replicas are stored; its approach follows the same HTL rules.)
        let (_, key) = blk(1);
        net.request(0, key, None);
        net.drive();
        let accepted: usize = net
            .nodes
            .iter()
            .map(|n| {
                n.router.stats().requests_received as usize
                    - n.router.stats().rejected_loop as usize
            })
            .sum();
        let mut hist = std::collections::BTreeMap::new();
        for n in &net.nodes {
            for (_, m) in &n.received {
                if let Message::Request { htl, .. } = m {
                    *hist.entry(htl.0).or_insert(0) += 1;
                }
            }
        }
        // At most one extra node per plateau at the maximum and at 1.
        assert!(
            (10..=24).contains(&accepted),
            "seed {seed}: {accepted} {hist:?}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// On random graphs with silent links, every request and insert finishes exactly once,
    /// no honest node is called a misbehaver, and no state is left behind.
    #[test]
    fn everything_finishes_exactly_once(
        locs in proptest::collection::vec(proptest::prelude::any::<u64>(), 4..16),
        edges in proptest::collection::vec((0usize..16, 0usize..16), 4..60),
        holes in proptest::collection::vec((0usize..16, 0usize..16), 0..4),
        starts in proptest::collection::vec((0usize..16, 0u8..4, proptest::prelude::any::<bool>()), 1..12),
        seed: u64,
    ) {
        let n = locs.len();
        let mut net = Net::new(&locs, |i| RouterConfig { rng_seed: seed ^ i, ..greedy() });
        let mut linked = HashSet::new();
        for (a, b) in edges {
            let (a, b) = (a % n, b % n);
            if a != b && linked.insert((a.min(b), a.max(b))) {
                net.link(a, b);
            }
        }
        for (a, b) in holes {
            net.black_holes.insert((a % n, b % n));
        }
        let mut started = Vec::new();
        for (node, b, insert) in starts {
            let node = node % n;
            let (block, key) = blk(b);
            let id = if insert {
                net.insert(node, block, None)
            } else {
                net.request(node, key, None)
            };
            started.push((node, id, insert));
        }
        net.drive();
        for (node, id, insert) in started {
            let finished = net.nodes[node]
                .events
                .iter()
                .filter(|e| match e {
                    Event::RequestFinished { id: i, .. } => !insert && *i == id,
                    Event::InsertFinished { id: i, .. } => insert && *i == id,
                    _ => false,
                })
                .count();
            proptest::prop_assert_eq!(finished, 1);
        }
        for node in &net.nodes {
            proptest::prop_assert_eq!(node.router.active_requests(), 0);
            proptest::prop_assert_eq!(node.router.stats().misbehaviour, 0);
            proptest::prop_assert_eq!(node.router.poll_timeout(), None);
        }
    }
}

#[test]
fn a_failed_key_is_answered_at_once_and_offered_when_it_arrives() {
    let (b, key) = blk(9);
    let kl = Location::of_key(&key).0;
    // Five nodes approaching the key; node 4 is the closest.
    let locs: Vec<u64> = (0..5u64).map(|i| kl.wrapping_add((5 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    // A key nobody has: every node on the way learns that it failed.
    let first = net.request(0, key, None);
    net.drive();
    assert!(matches!(net.request_result(0, first), Some(Err(_))));
    let reached = net.nodes[2].router.stats().requests_received;
    // Asked again at once: the next node answers itself, the rest see nothing.
    let again = net.request(0, key, None);
    net.drive();
    assert!(matches!(net.request_result(0, again), Some(Err(_))));
    assert_eq!(net.nodes[1].router.stats().recently_failed, 1);
    assert_eq!(net.nodes[2].router.stats().requests_received, reached);
    // The block is published at the node nearest its key. Offers travel back along the
    // path the failed requests took, each node verifying and caching it.
    net.insert(4, b.clone(), None);
    net.drive();
    for n in 0..4 {
        assert!(net.placement(n, &key).is_some(), "node {n} was offered it");
        assert_eq!(net.nodes[n].router.stats().offers_taken, 1, "node {n}");
    }
    assert_eq!(net.placement(0, &key), Some(Placement::Cache));
    // And node 0's user now has it from its own cache: no answer from the failure table.
    let last = net.request(0, key, None);
    net.drive();
    assert_eq!(net.request_result(0, last).unwrap().unwrap().block, b);
}

/// A failure remembered at one hop does not end a search that other peers can finish.
/// Node 0 asks for a key held by node 3. Its peer nearest the key, node 1, only leads to
/// a dead end (node 4), so the first search fails there and goes round through node 2.
/// Asked again at once, node 1 declines from its failure table, and node 0 still reaches
/// the block through node 2 (a `DataNotFound` from node 1 would end it at the first hop).
#[test]
fn a_hop_that_failed_a_key_recently_declines_and_the_search_goes_round() {
    let (b, key) = blk(11);
    let kl = Location::of_key(&key).0;
    let at = |d: i64| kl.wrapping_add_signed(d << 40);
    // 0 far; 1 nearest of 0's peers; 2 farther; 3 the holder behind 2; 4 behind 1.
    let locs = [at(100), at(2), at(10), at(5), at(60)];
    let mut net = Net::new(&locs, cfg);
    net.link(0, 1);
    net.link(0, 2);
    net.link(2, 3);
    net.link(1, 4);
    net.hold(3, key, &b);
    for round in 0..3 {
        let id = net.request(0, key, None);
        net.drive();
        let got = net.request_result(0, id);
        assert_eq!(
            got.and_then(Result::ok).map(|f| f.block),
            Some(b.clone()),
            "round {round}"
        );
    }
    assert!(net.nodes[1].router.stats().recently_failed >= 1);
    // Node 1 searched its dead end once, not once per request.
    assert_eq!(net.nodes[4].router.stats().requests_received, 1);
}

/// The local user's request, asked again after a failure, tries the peers that failed
/// the key last: here the peer nearest the key swallows the first request (its link is
/// a black hole), and the second goes to the other peer first.
#[test]
fn a_local_request_asked_again_tries_the_peers_that_failed_last() {
    let (b, key) = blk(12);
    let kl = Location::of_key(&key).0;
    let at = |d: i64| kl.wrapping_add_signed(d << 40);
    let locs = [at(100), at(2), at(10)];
    let mut net = Net::new(&locs, cfg);
    net.link(0, 1);
    net.link(0, 2);
    net.hold(2, key, &b);
    net.black_holes.insert((0, 1));
    let first = net.request(0, key, Some(Htl(1)));
    net.drive();
    assert!(matches!(net.request_result(0, first), Some(Err(_))));
    net.black_holes.clear();
    // Past node 1's back-off for the timeout, well within the failure's lifetime.
    net.now += Duration::from_secs(60);
    let sent_to_1 = net.nodes[1].router.stats().requests_received;
    let again = net.request(0, key, Some(Htl(1)));
    net.drive();
    assert_eq!(
        net.request_result(0, again)
            .and_then(Result::ok)
            .map(|f| f.block),
        Some(b)
    );
    assert_eq!(net.nodes[1].router.stats().requests_received, sent_to_1);
}
