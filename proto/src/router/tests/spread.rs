//! Spread inserts (router/spread.rs): one local insert, several routes, one answer.

use super::*;

/// The ring of [`Net::ring`], spreading inserts over `routes` routes, walk off.
fn ring(n: usize, routes: u8) -> Net {
    Net::ring(n, |seed| RouterConfig {
        insert_routes: routes,
        ..cfg(seed)
    })
}

/// Nodes that keep `key` long-term.
fn holders(net: &Net, key: &RoutingKey) -> Vec<usize> {
    (0..net.nodes.len())
        .filter(|&i| net.placement(i, key) == Some(Placement::Store))
        .collect()
}

#[test]
fn a_spread_insert_leaves_by_its_own_first_hops_and_finishes_once() {
    let mut net = ring(40, 4);
    let (b, key) = blk(9);
    let id = net.insert_with(0, b, None, Some(7));
    // Four routes leave at once, on walks (even with the anonymity walk off), carrying
    // 2 + 2 + 2 + 1 copies to store, by more than one first hop.
    let mut first_hops = Vec::new();
    let mut shares = Vec::new();
    for Reverse((_, seq, from, to)) in net.queue.iter() {
        assert_eq!(*from, 0);
        match &net.in_flight[seq] {
            Message::InsertWalk {
                replicas, key: k, ..
            } => {
                assert_eq!(*k, key);
                first_hops.push(*to);
                shares.push(*replicas);
            }
            m => panic!("unexpected {m:?}"),
        }
    }
    shares.sort_unstable();
    assert_eq!(shares, vec![1, 2, 2, 2]);
    first_hops.sort_unstable();
    first_hops.dedup();
    assert!(first_hops.len() >= 2, "all routes left by {first_hops:?}");
    // The answer comes when the last route is done, not the first.
    while net.step() {
        if net.insert_result(0, id).is_some() {
            assert!(
                net.nodes[0].router.requests.spreads.is_empty(),
                "a route still runs"
            );
        }
    }
    // One answer, under the id the caller got; the routes' own ids stay inside.
    let finished: Vec<&Event> = net.nodes[0]
        .events
        .iter()
        .filter(|e| matches!(e, Event::InsertFinished { .. }))
        .collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    // Routes that found room near the key: not a route that ran out of peers.
    assert_eq!(
        net.insert_result(0, id),
        Some(Ok(InsertReport {
            route_exhausted: false
        }))
    );
    assert_eq!(net.nodes[0].router.stats().local_inserts, 1);
    assert_eq!(net.nodes[0].router.stats().local_inserts_succeeded, 1);
    assert!(net.nodes[0].router.requests.spreads.is_empty());
    assert!(net.nodes[0].router.requests.spread_parents.is_empty());
    // The copies sit on several nodes even though every route met at the same few
    // (one route storing all seven would find seven; without the sibling rule the four
    // routes here counted their copies on three).
    let held = holders(&net, &key);
    assert!(held.len() >= 5, "held by {held:?}");
    // And whoever asks finds it.
    let req = net.request(25, key, None);
    net.drive();
    assert!(net.request_result(25, req).unwrap().is_ok());
}

#[test]
fn one_route_or_a_bounded_htl_inserts_as_before() {
    for (routes, htl) in [(1, None), (4, Some(Htl(5)))] {
        let mut net = ring(40, routes);
        let (b, key) = blk(3);
        let id = net.insert_with(0, b, htl, Some(7));
        let kinds: Vec<&str> = net.in_flight.values().map(|m| m.kind()).collect();
        assert_eq!(kinds, vec!["insert"], "routes {routes}, htl {htl:?}");
        net.drive();
        assert!(net.insert_result(0, id).unwrap().is_ok());
        assert!(!holders(&net, &key).is_empty());
    }
}

#[test]
fn a_spread_insert_with_no_peer_taking_it_fails_once() {
    // Every route's first hop is a black hole: each times out, and the caller hears
    // one failure.
    let mut net = ring(12, 3);
    for to in 1..12 {
        net.black_holes.insert((0, to));
    }
    let (b, _) = blk(5);
    let id = net.insert_with(0, b, None, Some(3));
    net.drive();
    let finished = net.nodes[0]
        .events
        .iter()
        .filter(|e| matches!(e, Event::InsertFinished { .. }))
        .count();
    assert_eq!(finished, 1);
    assert!(net.insert_result(0, id).unwrap().is_err());
    assert_eq!(net.nodes[0].router.stats().local_inserts_succeeded, 0);
    assert!(net.nodes[0].router.requests.spread_parents.is_empty());
}

#[test]
fn a_second_insert_moments_later_adds_copies_and_a_day_later_counts_as_before() {
    let mut net = ring(40, 1);
    let (b, key) = blk(7);
    net.insert_with(0, b.clone(), None, Some(4));
    net.drive();
    let first = holders(&net, &key);
    assert_eq!(first.len(), 4, "{first:?}");
    // A day on (a keepalive pass): the same nodes nearest the key count again.
    net.now += Duration::from_secs(86_400);
    net.insert_with(13, b.clone(), None, Some(4));
    net.drive();
    assert_eq!(holders(&net, &key), first);
    // Moments after that one, another insert of it is a sibling route: the holders that
    // one counted do not count again, and it finds room beyond them (without the rule
    // it would count two of them and add nothing).
    net.insert_with(31, b, None, Some(2));
    net.drive();

    let now_held = holders(&net, &key);
    assert!(now_held.len() > first.len(), "{now_held:?}");
    assert!(first.iter().all(|h| now_held.contains(h)));
}

#[test]
fn a_spread_insert_that_meets_another_block_under_its_signed_key_reports_the_collision() {
    let kp = crate::ssk::KeyPair::from_secret([3; 32], [4; 32]);
    let (first, key) = kp.sign("site", b"first", [0; 12]).unwrap();
    let (second, _) = kp.sign("site", b"second, different", [0; 12]).unwrap();
    let mut net = ring(40, 4);
    let id = net.insert_as(0, key, first, None, Some(4));
    net.drive();
    assert!(matches!(net.insert_result(0, id), Some(Ok(_))));
    // The same name, other content, spread over four routes a day later: the routes
    // that reach the holders meet the first block, and the one answer says so.
    net.now += Duration::from_secs(86_400);
    let id = net.insert_as(0, key, second, None, Some(4));
    net.drive();
    assert_eq!(
        net.insert_result(0, id),
        Some(Err(InsertFailure::Collision))
    );
}
