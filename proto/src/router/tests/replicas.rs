//! Replication: an insert is stored on the nodes nearest its key, and a request finds a
//! surviving copy when some are gone.

use super::*;
use crate::message::MAX_REPLICAS;

/// `n` nodes evenly spaced on the ring, each linked to its two neighbours on each side
/// and to a few chords, so greedy routing reaches any key in a few hops.
fn ring(n: usize, replicas: u8) -> Net {
    let step = u64::MAX / n as u64;
    let locs: Vec<u64> = (0..n as u64).map(|i| i * step).collect();
    let mut net = Net::new(&locs, |i| RouterConfig {
        rng_seed: i,
        replicas,
        ..greedy()
    });
    let mut linked = HashSet::new();
    for a in 0..n {
        for b in [a + 1, a + 2, a + n / 4, a + n / 2 + 1] {
            let b = b % n;
            if a != b && linked.insert((a.min(b), a.max(b))) {
                net.link(a, b);
            }
        }
    }
    net
}

/// Node indices by distance from `key`, nearest first.
fn nearest(net: &Net, key: &RoutingKey) -> Vec<usize> {
    let target = Location::of_key(key);
    let mut order: Vec<usize> = (0..net.nodes.len()).collect();
    order.sort_by_key(|&i| net.nodes[i].router.location().distance(target));
    order
}

fn holders(net: &Net, key: &RoutingKey) -> Vec<usize> {
    (0..net.nodes.len())
        .filter(|&i| net.placement(i, key) == Some(Placement::Store))
        .collect()
}

#[test]
fn an_insert_is_stored_on_the_replicas_nodes_nearest_its_key() {
    for (seed, replicas) in [(1u8, 3u8), (2, 5), (3, 8)] {
        let mut net = ring(64, replicas);
        let (b, key) = blk(seed);
        let order = nearest(&net, &key);
        // From the node farthest from the key.
        let from = *order.last().unwrap();
        let id = net.insert(from, b, None);
        net.drive();
        assert!(matches!(net.insert_result(from, id), Some(Ok(_))));
        let held = holders(&net, &key);
        // The walk goes out on both sides of the key; on a sparse ring it may still pass
        // over one of the nearest for the next one out, never farther, never fewer.
        let near = &order[..replicas as usize + 1];
        assert_eq!(held.len(), replicas as usize, "held by {held:?}");
        assert!(held.contains(&order[0]), "the nearest holds it: {held:?}");
        assert!(
            held.iter().all(|h| near.contains(h)),
            "replicas {replicas}: held by {held:?}, nearest {near:?}"
        );
    }
}

#[test]
fn the_originator_chooses_more_replicas_for_blocks_that_matter() {
    let mut net = ring(64, 3);
    let (b, key) = blk(9);
    let from = *nearest(&net, &key).last().unwrap();
    net.insert_with(from, b, None, Some(7));
    net.drive();
    assert_eq!(holders(&net, &key).len(), 7);
}

#[test]
fn a_request_finds_a_surviving_copy_when_the_nearest_are_gone() {
    let mut net = ring(64, 5);
    let (b, key) = blk(4);
    let order = nearest(&net, &key);
    let from = *order.last().unwrap();
    net.insert(from, b.clone(), None);
    net.drive();
    // The three nearest nodes fail: every peer drops them.
    let now = net.now;
    for &gone in &order[..3] {
        for n in 0..net.nodes.len() {
            net.nodes[n].router.remove_peer(now, PeerId(gone as u64));
        }
    }
    let asker = order[order.len() / 2];
    let id = net.request(asker, key, None);
    net.drive();
    let got = net.request_result(asker, id).unwrap().unwrap();
    assert_eq!(got.block, b);
}

#[test]
fn hostile_replica_counts_are_capped() {
    let (b, key) = blk(5);
    let loc = Location::of_key(&key).0;
    // Node 0 at the key's location is a sink; peers 1 and 2 are farther away.
    let now = Instant::now();
    let mut r = Router::new(cfg(1), Location(loc));
    r.add_peer(now, PeerId(1), Location(loc.wrapping_add(1 << 60)));
    r.add_peer(now, PeerId(2), Location(loc.wrapping_sub(1 << 60)));
    let mut store = Mem::default();
    let insert = |id, replicas, stored| Message::Insert {
        id: RequestId(id),
        key,
        htl: Htl(3),
        replicas,
        stored,
        block: b.clone(),
    };
    // Asking for 255 copies: stored here (a sink), and the walk's first chain asks for
    // half of at most MAX_REPLICAS.
    r.handle_message(now, PeerId(1), insert(1, 255, 0), &mut store);
    let out = drain(&mut r);
    assert!(
        matches!(
            out[..],
            [(PeerId(2), Message::Insert { replicas, stored: 1, .. })]
                if replicas == 1 + (MAX_REPLICAS - 1).div_ceil(2)
        ),
        "{out:?}"
    );
    // Claiming that all copies but one exist: stored here and answered at once.
    r.handle_message(now, PeerId(1), insert(2, 4, 200), &mut store);
    let out = drain(&mut r);
    assert!(
        matches!(
            out[..],
            [(PeerId(1), Message::InsertReply { id: RequestId(2) })]
        ),
        "{out:?}"
    );
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::Store {
            placement: Placement::Store,
            ..
        }
    )));
}

#[test]
fn an_insert_from_the_node_nearest_its_key_starts_the_walk_there() {
    let mut net = ring(64, 5);
    let (b, key) = blk(6);
    let order = nearest(&net, &key);
    let from = order[0];
    let id = net.insert(from, b, None);
    net.drive();
    assert!(matches!(net.insert_result(from, id), Some(Ok(_))));
    // The originator's own copy (kept by its shell) is the first; four more nodes near
    // the key store it, and no walk message says how far it was from its start.
    let held = holders(&net, &key);
    assert_eq!(
        net.placement(from, &key),
        None,
        "the router stores nothing for its user"
    );
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.iter().all(|h| order[1..6].contains(h)), "{held:?}");
    for n in &net.nodes {
        for (_, m) in &n.received {
            if let Message::Insert { htl, stored, .. } = m {
                assert!(*stored > 0 && htl.0 == 1, "{m:?}");
            }
        }
    }
}
