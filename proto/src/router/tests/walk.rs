//! The anonymity walk in front of greedy routing (router/walk.rs).

use super::*;

fn walker(seed: u64) -> RouterConfig {
    RouterConfig {
        rng_seed: seed,
        walk_probability: 0.75,
        ..RouterConfig::default()
    }
}

/// The ring of [`Net::ring`], walking.
fn ring(n: usize) -> Net {
    Net::ring(n, walker)
}

/// The node nearest `key`.
fn nearest(net: &Net, key: &RoutingKey) -> usize {
    (0..net.nodes.len())
        .min_by_key(|&i| {
            net.nodes[i]
                .router
                .location()
                .distance(Location::of_key(key))
        })
        .unwrap()
}

/// The hops (sender, receiver) that messages of `id` matching `kind` took.
fn hops(net: &Net, id: RequestId, kind: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (to, node) in net.nodes.iter().enumerate() {
        for (from, m) in &node.received {
            if m.request_id() == Some(id) && m.kind() == kind {
                out.push((from.0 as usize, to));
            }
        }
    }
    out.sort_unstable();
    out
}

impl Net {
    fn request_in(&mut self, n: usize, key: RoutingKey, tunnel: u64) -> RequestId {
        let node = &mut self.nodes[n];
        let id = node
            .router
            .start_request_in(self.now, key, None, Some(tunnel), &mut node.store);
        self.flush(n);
        id
    }
}

#[test]
fn every_request_of_a_tunnel_takes_the_same_walk_and_finds_its_block() {
    let mut net = ring(40);
    let mut walks: Vec<Vec<(usize, usize)>> = Vec::new();
    for k in 0..12u8 {
        let (b, key) = blk(k);
        // Each block is held by the node nearest its key, far from the asker.
        let holder = nearest(&net, &key);
        net.hold(holder, key, &b);
        if holder == 0 {
            continue;
        }
        let id = net.request_in(0, key, 77);
        net.drive();
        assert_eq!(net.request_result(0, id).unwrap().unwrap().block, b);
        walks.push(hops(&net, id, "walk"));
    }
    assert!(walks.len() >= 8);
    let longest = walks.iter().max_by_key(|w| w.len()).unwrap();
    let first = longest.iter().find(|&&(from, _)| from == 0);
    assert!(first.is_some(), "the originator takes the first hop");
    for w in &walks {
        // A block met on the walk ends it early; otherwise the walk is the same.
        assert!(
            w.iter().all(|h| longest.contains(h)),
            "{w:?} vs {longest:?}"
        );
        assert!(w.contains(first.unwrap()), "{w:?}");
    }
}

#[test]
fn tunnels_leave_by_different_peers_and_the_walk_end_routes_at_full_htl() {
    let mut net = ring(40);
    let (b, key) = blk(1);
    let holder = nearest(&net, &key);
    net.hold(holder, key, &b);
    let asker = (holder + 20) % 40;
    let mut first_hops = HashSet::new();
    let mut lengths = Vec::new();
    for tunnel in 0..30u64 {
        let id = net.request_in(asker, key, tunnel);
        net.drive();
        assert_eq!(net.request_result(asker, id).unwrap().unwrap().block, b);
        let walk = hops(&net, id, "walk");
        let (_, first) = *walk.iter().find(|(from, _)| *from == asker).unwrap();
        first_hops.insert(first);
        lengths.push(walk.len());
        // Greedy routing starts where the walk ended, at the maximum HTL (unless the
        // walk met the block); the asker itself sends no request.
        let on_walk: HashSet<usize> = walk.iter().map(|&(_, to)| to).collect();
        let requests = hops(&net, id, "request");
        let from_walk_end = net.nodes.iter().flat_map(|n| &n.received).any(|(from, m)| {
            matches!(m, Message::Request { id: i, htl, .. }
                if *i == id && *htl == Htl::DEFAULT_MAX && on_walk.contains(&(from.0 as usize)))
        });
        assert!(
            requests.is_empty() || from_walk_end,
            "{walk:?} {requests:?}"
        );
        assert!(requests.iter().all(|&(from, _)| from != asker));
    }
    assert!(
        first_hops.len() >= 3,
        "tunnels pick peers at random: {first_hops:?}"
    );
    // Each step goes on with chance 0.75 after the first: a mean of four steps.
    let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
    assert!((2.0..7.0).contains(&mean), "mean walk {mean}");
    assert!(lengths.contains(&1) && lengths.iter().any(|&l| l >= 3));
}

#[test]
fn without_the_walk_requests_go_greedily_from_the_originator() {
    let locs: Vec<u64> = (0..20u64).map(|i| i * (u64::MAX / 20)).collect();
    let mut net = Net::new(&locs, |s| RouterConfig {
        walk_probability: 0.0,
        ..walker(s)
    });
    for i in 0..20 {
        net.link(i, (i + 1) % 20);
        net.link(i, (i + 7) % 20);
    }
    let (b, key) = blk(3);
    net.hold(10, key, &b);
    let id = net.request_in(0, key, 5);
    net.drive();
    assert!(net.request_result(0, id).unwrap().is_ok());
    assert!(hops(&net, id, "walk").is_empty());
    assert!(hops(&net, id, "request").iter().any(|&(from, _)| from == 0));
}

/// One router with peers 1–4, the walk on.
fn lone_walker() -> (Router, Instant) {
    lone(&[10, 20, 30, 40], walker(9))
}

#[test]
fn a_refused_walk_takes_the_tunnels_next_choice_and_the_originator_gives_up_after_three() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    let key = key_at(40);
    let id = r.start_request_in(t0, key, None, Some(1), &mut store);
    let mut asked = Vec::new();
    for refusal in [
        Message::RejectedLoop { id },
        Message::RejectedOverload { id },
        Message::RouteNotFound { id, htl: Htl(0) },
    ] {
        let sent = drain(&mut r);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (peer, Message::Walk { id: wid, .. }) = sent[0].clone() else {
            panic!("the originator only ever walks: {sent:?}");
        };
        assert_eq!(wid, id);
        assert!(!asked.contains(&peer), "each try takes another peer");
        asked.push(peer);
        r.handle_message(t0, peer, refusal, &mut store);
    }
    assert!(
        drain(&mut r).is_empty(),
        "no greedy search from the originator"
    );
    assert!(matches!(
        &events(&mut r)[..],
        [Event::RequestFinished { id: i, result: Err(_), .. }] if *i == id
    ));
    assert_eq!(r.stats().walks_started, 3);
    // Another tunnel's first choice differs for some tunnel: the choice is the tunnel's.
    let firsts: HashSet<PeerId> = (10..30u64)
        .map(|t| {
            r.start_request_in(t0, key, None, Some(t), &mut store);
            drain(&mut r)[0].0
        })
        .collect();
    assert!(firsts.len() > 1);
}

#[test]
fn a_walk_ending_at_a_relay_is_routed_under_a_fresh_id_and_answered_under_its_own() {
    let (mut r, t0) = lone(&[10, 20, 30, 40, 50, 60], walker(9));
    let mut store = Mem::default();
    let (b, key) = blk(6);
    let (walk_id, greedy_id, to) = (0..200u64)
        .find_map(|tunnel| {
            let id = RequestId(1000 + tunnel);
            r.handle_message(t0, PeerId(1), Message::Walk { id, key, tunnel }, &mut store);
            match drain(&mut r).pop() {
                Some((to, Message::Request { id: g, htl, .. })) => {
                    assert_eq!(htl, Htl::DEFAULT_MAX);
                    Some((id, g, to))
                }
                _ => None,
            }
        })
        .expect("some tunnel ends here");
    assert_ne!(walk_id, greedy_id, "the greedy phase has an id of its own");
    r.handle_message(
        t0,
        to,
        Message::Data {
            id: greedy_id,
            block: b.clone(),
        },
        &mut store,
    );
    let sent = drain(&mut r);
    assert!(
        sent.contains(&(
            PeerId(1),
            Message::Data {
                id: walk_id,
                block: b
            }
        )),
        "{sent:?}"
    );
    assert_eq!(r.stats().misbehaviour, 0);
}

#[test]
fn a_relay_whose_walk_hops_all_refuse_ends_the_walk_itself() {
    let (mut r, t0) = lone(&[10, 20, 30, 40, 50, 60], walker(9));
    let mut store = Mem::default();
    let key = key_at(55);
    let (id, first) = (0..200u64)
        .find_map(|tunnel| {
            let id = RequestId(5000 + tunnel);
            r.handle_message(t0, PeerId(1), Message::Walk { id, key, tunnel }, &mut store);
            match drain(&mut r).pop() {
                Some((to, Message::Walk { .. })) => Some((id, to)),
                _ => None,
            }
        })
        .expect("some tunnel goes on");
    let mut peer = first;
    for _ in 0..2 {
        r.handle_message(t0, peer, Message::RejectedOverload { id }, &mut store);
        let sent = drain(&mut r);
        let [(next, Message::Walk { .. })] = &sent[..] else {
            panic!("the walk's next choice: {sent:?}");
        };
        assert_ne!(*next, peer);
        peer = *next;
    }
    r.handle_message(t0, peer, Message::RejectedLoop { id }, &mut store);
    let sent = drain(&mut r);
    let [(to, Message::Request { id: g, htl, .. })] = &sent[..] else {
        panic!("after three refusals the relay routes it itself: {sent:?}");
    };
    assert_ne!(*g, id);
    assert_eq!(*htl, Htl::DEFAULT_MAX);
    assert!(
        ![first, peer].contains(to),
        "not to a walk hop that refused"
    );
    assert_eq!(r.stats().walks_ended, 1);
}

#[test]
fn a_walk_is_passed_on_or_ended_the_same_way_for_its_whole_tunnel() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    let mut seen = HashSet::new();
    // 60 requests from one peer, none answered: within its share.
    for tunnel in 0..20u64 {
        let mut outcome = None;
        for n in 0..3u64 {
            let id = RequestId(tunnel * 100 + n);
            let key = key_at(n * 1000);
            r.handle_message(t0, PeerId(1), Message::Walk { id, key, tunnel }, &mut store);
            let sent = drain(&mut r);
            assert_eq!(sent.len(), 1, "{sent:?}");
            let (peer, msg) = &sent[0];
            let this = match msg {
                Message::Walk { tunnel: next, .. } => {
                    assert_ne!(*peer, PeerId(1), "a walk never goes back to its sender");
                    assert_ne!(*next, tunnel, "each hop renames the tunnel");
                    (Some(*peer), Some(*next))
                }
                Message::Request {
                    id: greedy, htl, ..
                } => {
                    // Under a fresh id, greedy routing may go back through the sender.
                    assert_ne!(*greedy, id);
                    assert_eq!(*htl, Htl::DEFAULT_MAX);
                    (None, None)
                }
                other => panic!("{other:?}"),
            };
            assert!(outcome.is_none_or(|o| o == this), "tunnel {tunnel}");
            outcome = Some(this);
        }
        seen.insert(outcome.unwrap().0.is_some());
    }
    assert_eq!(seen.len(), 2, "some walks go on and some end here");
    let s = r.stats();
    assert!(s.walks_relayed > 0 && s.walks_ended > 0);
    assert_eq!(s.walks_relayed + s.walks_ended, 60);
    assert_eq!(s.requests_received, 60);
}

#[test]
fn a_walk_whose_search_came_back_empty_is_answered_not_searched_again() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    // Find a tunnel this node passes on.
    let (id, next) = (0..100u64)
        .find_map(|tunnel| {
            let id = RequestId(tunnel);
            let key = key_at(5);
            r.handle_message(t0, PeerId(1), Message::Walk { id, key, tunnel }, &mut store);
            match drain(&mut r).pop() {
                Some((p, Message::Walk { .. })) => Some((id, p)),
                _ => None,
            }
        })
        .unwrap();
    r.handle_message(
        t0,
        next,
        Message::RouteNotFound { id, htl: Htl(3) },
        &mut store,
    );
    let sent = drain(&mut r);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, PeerId(1));
    assert!(matches!(sent[0].1, Message::RouteNotFound { .. }));
}

#[test]
fn a_walk_looping_back_is_refused_and_one_for_a_held_block_is_answered() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    let (b, key) = blk(4);
    store.blocks.insert(key, (b.clone(), Placement::Store));
    r.handle_message(
        t0,
        PeerId(2),
        Message::Walk {
            id: RequestId(1),
            key,
            tunnel: 3,
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Data {
                id: RequestId(1),
                block: b
            }
        )]
    );
    r.handle_message(
        t0,
        PeerId(3),
        Message::Walk {
            id: RequestId(1),
            key,
            tunnel: 3,
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(3), Message::RejectedLoop { id: RequestId(1) })]
    );
}

#[test]
fn inserts_walk_too_and_their_blocks_land_near_the_key() {
    let mut net = ring(40);
    let (b, key) = blk(9);
    let sink = nearest(&net, &key);
    let publisher = (sink + 20) % 40;
    let id = net.insert(publisher, b.clone(), None);
    net.drive();
    assert!(net.insert_result(publisher, id).unwrap().is_ok());
    assert_eq!(net.placement(sink, &key), Some(Placement::Store));
    let walk = hops(&net, id, "insert_walk");
    assert!(walk.iter().any(|&(from, _)| from == publisher), "{walk:?}");
    // The publisher sends no insert itself: the walk's end does.
    let from_publisher = net
        .nodes
        .iter()
        .flat_map(|n| &n.received)
        .any(|(from, m)| from.0 as usize == publisher && matches!(m, Message::Insert { .. }));
    assert!(!from_publisher);
    // And the block is found from anywhere.
    let reader = (sink + 10) % 40;
    let got = net.request_in(reader, key, 4);
    net.drive();
    assert_eq!(net.request_result(reader, got).unwrap().unwrap().block, b);
}

#[test]
fn an_insert_walk_with_a_bad_block_is_misbehaviour_and_goes_nowhere() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    let (b, _) = blk(1);
    let (_, other) = blk(2);
    r.handle_message(
        t0,
        PeerId(2),
        Message::InsertWalk {
            id: RequestId(7),
            key: other,
            tunnel: 1,
            replicas: 3,
            block: b,
        },
        &mut store,
    );
    assert!(drain(&mut r).is_empty());
    assert!(matches!(
        &events(&mut r)[..],
        [Event::PeerMisbehaved {
            peer: PeerId(2),
            ..
        }]
    ));
}

/// The tunnel name the first walk message of a fresh local request carries (a pure
/// function of the tunnel at this node), and where it went.
fn first_walk(r: &mut Router, now: Instant, tunnel: Option<u64>, k: u8) -> (PeerId, u64) {
    let mut store = Mem::default();
    let (_, key) = blk(k);
    r.start_request_in(now, key, None, tunnel, &mut store);
    match drain(r).pop() {
        Some((peer, Message::Walk { tunnel, .. })) => (peer, tunnel),
        other => panic!("a walk: {other:?}"),
    }
}

#[test]
fn the_routers_own_tunnel_holds_for_its_lifetime_then_changes() {
    let (mut r, t0) = lone_walker();
    let life = r.config().tunnel_lifetime;
    let (_, a) = first_walk(&mut r, t0, None, 1);
    let (_, b) = first_walk(&mut r, t0 + life - Duration::from_nanos(1), None, 2);
    assert_eq!(a, b, "one tunnel within its lifetime");
    let (_, c) = first_walk(&mut r, t0 + life, None, 3);
    assert_ne!(c, a, "a new tunnel once the lifetime is over");
    let mut names = HashSet::from([a, c]);
    for i in 2..6u32 {
        names.insert(first_walk(&mut r, t0 + life * i, None, 4).1);
    }
    assert_eq!(names.len(), 6, "a fresh tunnel each lifetime");
    // A tunnel named by the user is used as given, whatever the router's own.
    let (_, x) = first_walk(&mut r, t0, Some(42), 5);
    let (_, y) = first_walk(&mut r, t0 + life * 9, Some(42), 6);
    assert_eq!(x, y);
}

#[test]
fn a_backed_off_first_choice_is_skipped_until_its_back_off_ends() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    let (first, _) = first_walk(&mut r, t0, Some(7), 1);
    // It refuses for overload: backed off for `backoff`; the walk takes the next choice.
    let (_, key) = blk(2);
    let id = r.start_request_in(t0, key, None, Some(7), &mut store);
    let (to, _) = drain(&mut r).pop().unwrap();
    assert_eq!(to, first);
    r.handle_message(t0, first, Message::RejectedOverload { id }, &mut store);
    let (second, _) = drain(&mut r).pop().unwrap();
    assert_ne!(second, first);
    let until = t0 + r.config().backoff;
    let (during, _) = first_walk(&mut r, until - Duration::from_nanos(1), Some(7), 3);
    assert_eq!(during, second, "the backed-off peer is skipped");
    let (after, _) = first_walk(&mut r, until, Some(7), 4);
    assert_eq!(after, first, "back at the back-off's end");
}

#[test]
fn a_silent_walk_hop_is_given_the_walks_whole_budget_then_replaced() {
    let (mut r, t0) = lone_walker();
    let mut store = Mem::default();
    let (_, key) = blk(3);
    r.start_request_in(t0, key, None, Some(11), &mut store);
    let (first, _) = drain(&mut r).pop().unwrap();
    // A walk step waits hop_timeout × (max_htl + 1 + 8): the greedy search after it, and
    // the rest of the walk.
    let budget = r.config().hop_timeout * (u32::from(Htl::DEFAULT_MAX.0) + 1 + 8);
    r.handle_timeout(t0 + budget - Duration::from_nanos(1));
    assert!(drain(&mut r).is_empty(), "not before its budget");
    r.handle_timeout(t0 + budget);
    let sent = drain(&mut r);
    let [(next, Message::Walk { .. })] = &sent[..] else {
        panic!("the tunnel's next choice: {sent:?}");
    };
    assert_ne!(*next, first);
    assert_eq!(r.stats().timeouts, 1);
}

#[test]
fn an_insert_walk_ending_at_a_sink_is_stored_there_and_counted() {
    // This node (location 0) is closer to a key at 1 than every peer: a sink.
    let (mut r, t0) = lone(&[1 << 60, 2 << 60, 3 << 60], walker(9));
    let mut store = Mem::default();
    let (b, key) = blk(8);
    let mut stored = 0;
    let mut passed = 0;
    for tunnel in 0..40u64 {
        let id = RequestId(100 + tunnel);
        r.handle_message(
            t0,
            PeerId(1),
            Message::InsertWalk {
                id,
                key,
                tunnel,
                replicas: 3,
                block: b.clone(),
            },
            &mut store,
        );
        let sent = drain(&mut r);
        let evs = events(&mut r);
        let here = evs.iter().any(
            |e| matches!(e, Event::Store { placement: Placement::Store, key: k, .. } if *k == key),
        );
        if matches!(sent.last(), Some((_, Message::InsertWalk { .. }))) {
            assert!(!here, "a walk passed on stores nothing");
            passed += 1;
        } else if here {
            // The walk ended at a sink: first copy here, and the replica walk goes on
            // (at HTL 1, as every replica walk message).
            assert!(
                sent.iter().any(
                    |(_, m)| matches!(m, Message::Insert { htl, stored: 1, .. } if *htl == Htl(1))
                ),
                "{sent:?}"
            );
            stored += 1;
        }
    }
    assert!(
        stored > 0 && passed > 0,
        "{stored} stored, {passed} passed on"
    );
    assert_eq!(r.stats().stored, stored);
    assert_eq!(r.stats().inserts_received, 40);
}

/// Each node keys its walk choices with a secret of its own: two nodes with the same
/// peers, given the same tunnel, rename it differently (so a tunnel's names cannot be
/// linked hop to hop) and, over a few tunnels, choose different next hops; a node keyed
/// by the same seed makes the same choices again.
#[test]
fn the_walks_choices_are_keyed_by_each_nodes_own_secret() {
    let now = Instant::now();
    let walks = |seed: u64| -> Vec<(PeerId, u64)> {
        let (mut r, _) = lone(&[10, 20, 30, 40], walker(seed));
        drain(&mut r);
        (0..8u64)
            .map(|tunnel| first_walk(&mut r, now, Some(tunnel), tunnel as u8))
            .collect()
    };
    let (a, b) = (walks(1), walks(2));
    assert_eq!(walks(1), a);
    assert!(
        a.iter().zip(&b).all(|((_, x), (_, y))| x != y),
        "{a:?} {b:?}"
    );
    assert!(
        a.iter().zip(&b).any(|((p, _), (q, _))| p != q),
        "{a:?} {b:?}"
    );
}
