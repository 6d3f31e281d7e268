//! Darknet location swapping over the wire: routers that swap by the rule of
//! `crate::swap` through `SwapRequest`, `SwapCommit` and `SwapReveal`, on a friend graph
//! whose locations start scrambled, and single routers fed hostile reveals.

use super::*;
use crate::message::BoundedVec;
use crate::swap::Side;
use rand::Rng;

fn swap_cfg(seed: u64) -> RouterConfig {
    RouterConfig {
        swap: SwapConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            walk_hops: 4,
            ttl: Duration::from_secs(5),
            max_side_loss: Some(crate::swap::DEFAULT_MAX_SIDE_LOSS),
            rerandomise_crowded: true,
        },
        ..cfg(seed)
    }
}

impl Net {
    /// Runs deliveries and timers in order until virtual time `end`.
    fn run_until(&mut self, end: Instant) {
        loop {
            let timer = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].router.poll_timeout())
                .min();
            let msg = self.queue.peek().map(|Reverse(e)| e.0);
            match [timer, msg].into_iter().flatten().min() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }
}

/// A friend graph (a Kleinberg small world over a hidden ring, the simulator's darknet
/// model) whose nodes were dealt the ring's locations at random. Swapping over the wire
/// shortens its links about as much as the same rule applied offline (the simulator's
/// way) with as many attempts; nobody ends up with a location that was not dealt, and
/// every node's view of its peers' locations is right.
#[test]
fn swapping_over_the_wire_untangles_a_friend_graph_like_the_offline_rule() {
    const N: usize = 100;
    let step = u64::MAX / N as u64;
    let edges = crate::topology::small_world(N, 2, 2, 7);
    let adjacency = crate::topology::adjacency(N, &edges);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut dealt: Vec<u64> = (0..N as u64).map(|i| i * step).collect();
    rand::seq::SliceRandom::shuffle(dealt.as_mut_slice(), &mut rng);
    let mean = |locs: &[u64]| {
        let mut s = 0.0;
        for (a, b) in &edges {
            s += Location(locs[*a])
                .distance(Location(locs[*b]))
                .as_fraction();
        }
        s / edges.len() as f64
    };
    let before = mean(&dealt);

    let mut net = Net::new(&dealt, swap_cfg);
    for (a, b) in &edges {
        net.link(*a, *b);
    }
    net.run_until(net.now + Duration::from_secs(60));
    let wire: Vec<u64> = net.nodes.iter().map(|n| n.router.location().0).collect();
    let started: u64 = net
        .nodes
        .iter()
        .map(|n| n.router.stats().swap.started)
        .sum();
    let refused: u64 = net
        .nodes
        .iter()
        .map(|n| n.router.stats().swap.refused)
        .sum();
    assert_eq!(refused, 0);
    // About one swap per node per interval (1 s, jittered), minus the ones a node
    // skipped while its own was open.
    assert!(
        (N as u64 * 30..=N as u64 * 60).contains(&started),
        "{started} swaps started in 60 s by {N} nodes"
    );

    // The same rule offline, as many attempts, partners at the end of as long a walk.
    let mut offline = dealt.clone();
    for _ in 0..started {
        let a = rng.gen_range(0..N);
        let mut b = a;
        for _ in 0..4 {
            let ls = &adjacency[b];
            b = ls[rng.gen_range(0..ls.len())];
        }
        if a == b {
            continue;
        }
        let peers = |n: usize, locs: &[u64]| -> Vec<Location> {
            adjacency[n].iter().map(|&m| Location(locs[m])).collect()
        };
        let g = crate::swap::gain(
            Location(offline[a]),
            &peers(a, &offline),
            Location(offline[b]),
            &peers(b, &offline),
        );
        if crate::swap::accept(g, rng.gen()) {
            offline.swap(a, b);
        }
    }
    let (after_wire, after_offline) = (mean(&wire), mean(&offline));
    assert!(
        before - after_wire >= 0.7 * (before - after_offline),
        "mean link length {before:.4}: over the wire {after_wire:.4}, offline \
         {after_offline:.4} ({started} swaps started)"
    );
    assert!(after_wire < 0.8 * before, "{before} -> {after_wire}");
    // Every move was one half of an agreed exchange: the dealt locations, each once.
    let mut now_at = wire.clone();
    let mut sorted = dealt.clone();
    now_at.sort_unstable();
    sorted.sort_unstable();
    assert_eq!(now_at, sorted);
    // Peers were told.
    for (i, node) in net.nodes.iter().enumerate() {
        for p in node.router.peers.iter() {
            let truth = net.nodes[p.id.0 as usize].router.location();
            assert_eq!(p.location, truth, "node {i}'s view of {:?}", p.id);
        }
    }
}

fn lone_swapper() -> (Router, Instant) {
    let (mut r, now) = lone(&[], swap_cfg(1));
    r.add_peer(now, PeerId(1), Location(1 << 60));
    r.add_peer(now, PeerId(2), Location(3 << 60));
    drain(&mut r);
    (r, now)
}

/// A partner checks the initiator's reveal against the commitment the request carried:
/// a reveal that differs moves nobody, and the partner does not reveal in return.
#[test]
fn a_reveal_that_breaks_its_commitment_moves_nobody() {
    let (mut r, now) = lone_swapper();
    let honest = Side {
        nonce: [3; 32],
        location: Location(7 << 60),
        peers: vec![Location(6 << 60)],
    };
    let id = RequestId(99);
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::SwapRequest {
            id,
            hops: 1,
            commitment: honest.commitment(),
        },
        &mut store,
    );
    let out = drain(&mut r);
    assert!(matches!(
        out.as_slice(),
        [(PeerId(1), Message::SwapCommit { .. })]
    ));
    assert_eq!(r.stats().swap.partnered, 1);
    assert_eq!(r.stats().swap.relayed, 0);
    let at = r.location();
    let reveal = |peers: Vec<Location>| Message::SwapReveal {
        id,
        nonce: honest.nonce,
        location: honest.location,
        peers: BoundedVec::new(peers).unwrap(),
    };
    // The reveal claims other peers than it committed to.
    r.handle_message(now, PeerId(1), reveal(vec![Location(1)]), &mut store);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.location(), at);
    assert_eq!(r.stats().swap.refused, 1);
    // And the swap is over: the honest reveal, late, changes nothing either.
    r.handle_message(now, PeerId(1), reveal(honest.peers.clone()), &mut store);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.location(), at);
}

/// The pitch-black attack on one router: a partner-to-be that reveals a far location and
/// made-up peers all at the router's own place forces Sandberg's rule, and moves the
/// router unless the guard (on by default) weighs the router's own links.
#[test]
fn a_liar_moves_a_router_only_without_the_guard() {
    for guard in [Some(crate::swap::DEFAULT_MAX_SIDE_LOSS), None] {
        // A well-placed router: its friends sit right beside it.
        let (mut r, now) = lone(&[], swap_cfg(1));
        r.add_peer(
            now,
            PeerId(1),
            Location(r.location().0.wrapping_add(1 << 40)),
        );
        r.add_peer(
            now,
            PeerId(2),
            Location(r.location().0.wrapping_sub(1 << 40)),
        );
        drain(&mut r);
        std::sync::Arc::make_mut(&mut r.config).swap.max_side_loss = guard;
        let mut store = Mem::default();
        let liar = Side {
            nonce: [9; 32],
            location: Location(r.location().0.wrapping_add(1 << 63)),
            peers: vec![r.location(); 32],
        };
        let id = RequestId(77);
        r.handle_message(
            now,
            PeerId(1),
            Message::SwapRequest {
                id,
                hops: 1,
                commitment: liar.commitment(),
            },
            &mut store,
        );
        drain(&mut r);
        let at = r.location();
        r.handle_message(
            now,
            PeerId(1),
            Message::SwapReveal {
                id,
                nonce: liar.nonce,
                location: liar.location,
                peers: BoundedVec::new(liar.peers.clone()).unwrap(),
            },
            &mut store,
        );
        drain(&mut r);
        match guard {
            Some(_) => {
                assert_eq!(r.location(), at, "the guard keeps the router in place");
                assert_eq!(r.stats().swap.declined, 1);
            }
            None => assert_eq!(r.location(), liar.location, "without it, the lie wins"),
        }
    }
}

/// The mitigation's other half: a node whose location sits on top of one a friend's
/// friend holds (what the attackers hand out) draws a fresh one at its next swap; with
/// it off, the node keeps its place and swaps as usual.
#[test]
fn a_node_on_top_of_a_known_location_draws_a_new_one() {
    for on in [true, false] {
        let mut cfg = swap_cfg(2);
        cfg.neighbour_lists = true;
        cfg.swap.rerandomise_crowded = on;
        let (mut r, now) = lone(&[1 << 60, 3 << 60], cfg);
        drain(&mut r);
        let mut store = Mem::default();
        // Peer 1's friends: us, and one a hair from us.
        let locations = vec![Location(0), Location(1 << 30)];
        r.handle_message(
            now,
            PeerId(1),
            Message::Neighbours {
                locations: BoundedVec::new(locations).unwrap(),
            },
            &mut store,
        );
        drain(&mut r);
        let mut t = now;
        for _ in 0..10 {
            t += Duration::from_millis(700);
            r.handle_timeout(t);
            drain(&mut r);
        }
        assert!(r.stats().swap.started >= 1);
        if on {
            assert_eq!(r.stats().swap.rerandomised, 1);
            assert_ne!(r.location(), Location(0));
        } else {
            assert_eq!(r.stats().swap.rerandomised, 0);
            assert_eq!(r.location(), Location(0));
        }
    }
}

/// A relay passes the walk on to a peer other than the sender, passes the answers back
/// along the same two links only, and a node that does not swap ignores it all.
#[test]
fn relays_keep_to_the_walk_and_non_swappers_ignore_it() {
    let (mut r, now) = lone_swapper();
    let mut store = Mem::default();
    let id = RequestId(5);
    r.handle_message(
        now,
        PeerId(1),
        Message::SwapRequest {
            id,
            hops: 3,
            commitment: [1; 32],
        },
        &mut store,
    );
    let out = drain(&mut r);
    assert!(
        matches!(
            out.as_slice(),
            [(PeerId(2), Message::SwapRequest { hops: 2, .. })]
        ),
        "{out:?}"
    );
    assert_eq!(r.stats().swap.relayed, 1);
    assert_eq!(r.stats().swap.partnered, 0);
    r.handle_message(
        now,
        PeerId(2),
        Message::SwapCommit {
            id,
            commitment: [2; 32],
        },
        &mut store,
    );
    assert!(matches!(
        drain(&mut r).as_slice(),
        [(PeerId(1), Message::SwapCommit { .. })]
    ));
    // The walk comes back here (a loop): refused, so the sender tries another peer.
    r.handle_message(
        now,
        PeerId(2),
        Message::SwapRequest {
            id,
            hops: 3,
            commitment: [1; 32],
        },
        &mut store,
    );
    assert!(matches!(
        drain(&mut r).as_slice(),
        [(PeerId(2), Message::RejectedLoop { .. })]
    ));
    // A loop refused downstream: with no other peer but the one it came from, the relay
    // hands the loop back and forgets the swap.
    r.handle_message(now, PeerId(2), Message::RejectedLoop { id }, &mut store);
    assert!(matches!(
        drain(&mut r).as_slice(),
        [(PeerId(1), Message::RejectedLoop { .. })]
    ));
    assert!(!r.swapping.is_swap(id));

    let (mut plain, now) = lone(&[], cfg(1));
    plain.add_peer(now, PeerId(1), Location(1 << 60));
    plain.handle_message(
        now,
        PeerId(1),
        Message::SwapRequest {
            id,
            hops: 1,
            commitment: [1; 32],
        },
        &mut store,
    );
    plain.handle_message(
        now,
        PeerId(1),
        Message::LocationChanged {
            location: Location(9),
        },
        &mut store,
    );
    assert!(drain(&mut plain).is_empty());
    assert_eq!(
        plain.peers.get(PeerId(1)).unwrap().location,
        Location(1 << 60)
    );
}

/// A node relays at most `MAX_SWAPS_RELAYED` swaps at once: past that, a walk that
/// reaches it is dropped (its initiator gives up after `ttl`), and the table stays bounded.
#[test]
fn relayed_swaps_are_bounded() {
    let (mut r, now) = lone_swapper();
    let mut store = Mem::default();
    for i in 0..MAX_SWAPS_RELAYED as u64 + 10 {
        r.handle_message(
            now,
            PeerId(1),
            Message::SwapRequest {
                id: RequestId(1000 + i),
                hops: 3,
                commitment: [1; 32],
            },
            &mut store,
        );
    }
    let relayed = drain(&mut r)
        .iter()
        .filter(|(_, m)| matches!(m, Message::SwapRequest { .. }))
        .count();
    assert_eq!(relayed, MAX_SWAPS_RELAYED);
    assert_eq!(r.stats().swap.relayed, MAX_SWAPS_RELAYED as u64);
    // Once they expire, there is room again.
    let later = now + r.config().swap.ttl + Duration::from_millis(1);
    r.handle_timeout(later);
    r.handle_message(
        later,
        PeerId(1),
        Message::SwapRequest {
            id: RequestId(1),
            hops: 3,
            commitment: [1; 32],
        },
        &mut store,
    );
    assert!(drain(&mut r).iter().any(|(_, m)| matches!(
        m,
        Message::SwapRequest {
            id: RequestId(1),
            ..
        }
    )));
}

/// The `Neighbours` lists among `sent`, by receiver.
fn lists(sent: &[(PeerId, Message)]) -> Vec<(PeerId, Vec<Location>)> {
    sent.iter()
        .filter_map(|(p, m)| match m {
            Message::Neighbours { locations } => Some((*p, locations.clone().into_inner())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_darknet_node_tells_its_friends_where_its_friends_are_and_again_when_one_moves() {
    let config = RouterConfig {
        neighbour_lists: true,
        swap: SwapConfig {
            interval: Duration::from_secs(3600),
            ..swap_cfg(4).swap
        },
        ..swap_cfg(4)
    };
    let (mut r, t0) = lone(&[10, 20, 30], config);
    assert!(r.poll_timeout().is_some_and(|t| t <= t0));
    r.handle_timeout(t0);
    let first = lists(&drain(&mut r));
    assert_eq!(first.len(), 3, "{first:?}");
    for (_, l) in &first {
        assert_eq!(l, &vec![Location(10), Location(20), Location(30)]);
    }
    // A friend swapped: the others hear its new place, no sooner than the interval.
    let mut store = Mem::default();
    r.handle_message(
        t0,
        PeerId(2),
        Message::LocationChanged {
            location: Location(99),
        },
        &mut store,
    );
    r.handle_timeout(t0);
    assert!(lists(&drain(&mut r)).is_empty());
    let t1 = t0 + r.config().opennet.neighbours_interval;
    r.handle_timeout(t1);
    let again = lists(&drain(&mut r));
    assert_eq!(again.len(), 3);
    assert!(again
        .iter()
        .all(|(_, l)| l.contains(&Location(99)) && !l.contains(&Location(20))));

    // Without neighbour lists (and without opennet) nothing of the kind is sent.
    let (mut quiet, t0) = lone(&[10, 20, 30], swap_cfg(4));
    quiet.handle_timeout(t0);
    assert!(lists(&drain(&mut quiet)).is_empty());
}

/// Runs `r`'s timer from `now` until it starts a swap: the instant, the friend the walk
/// went to, the swap's id and the commitment it carries.
fn own_swap(r: &mut Router, now: Instant) -> (Instant, PeerId, RequestId, [u8; 32]) {
    let mut t = now;
    loop {
        t += Duration::from_millis(100);
        assert!(t < now + Duration::from_secs(10), "no swap started");
        r.handle_timeout(t);
        if let [(to, Message::SwapRequest { id, commitment, .. })] = drain(r).as_slice() {
            return (t, *to, *id, *commitment);
        }
    }
}

/// An initiator whose walk looped back tries its next untried friend with the same
/// commitment, and gives the swap up when every friend has looped; a `RejectedLoop` from
/// a friend the walk was not sent to is ignored (anyone can claim a loop).
#[test]
fn an_initiator_retries_a_looped_walk_only_through_the_friend_it_used() {
    let (mut r, now) = lone(&[1 << 60, 3 << 60, 5 << 60], swap_cfg(3));
    drain(&mut r);
    let mut store = Mem::default();
    let (t, mut via, id, commitment) = own_swap(&mut r, now);
    let mut tried = vec![via];
    for _ in 0..2 {
        // A loop claimed by a friend the walk never went to changes nothing.
        let stranger = (1..=3).map(PeerId).find(|p| *p != via).unwrap();
        r.handle_message(t, stranger, Message::RejectedLoop { id }, &mut store);
        assert!(drain(&mut r).is_empty());
        // The real loop: the walk goes on through a friend not tried yet.
        r.handle_message(t, via, Message::RejectedLoop { id }, &mut store);
        let out = drain(&mut r);
        let [(
            next,
            Message::SwapRequest {
                id: again,
                commitment: c,
                ..
            },
        )] = out.as_slice()
        else {
            panic!("expected a retry, got {out:?}");
        };
        assert_eq!((*again, *c), (id, commitment));
        assert!(!tried.contains(next), "{next:?} was tried already");
        via = *next;
        tried.push(via);
    }
    assert!(r.swapping.is_swap(id));
    // Every friend looped: the swap is given up, with nothing sent.
    r.handle_message(t, via, Message::RejectedLoop { id }, &mut store);
    assert!(drain(&mut r).is_empty());
    assert!(!r.swapping.is_swap(id));
}

/// The initiator's end of a swap: the partner's commitment answered by our reveal, then
/// the partner's reveal checked against it. A reveal that breaks the commitment is
/// refused; an honest one from a partner whose move would stretch both sides' links is
/// declined; one that shortens them moves the router to the partner's location. The swap
/// is over either way.
#[test]
fn an_initiator_refuses_a_broken_reveal_declines_a_bad_swap_and_takes_a_good_one() {
    let far = 1u64 << 63;
    let near = |at: u64| {
        vec![
            Location(at.wrapping_add(1 << 50)),
            Location(at.wrapping_sub(1 << 50)),
        ]
    };
    // The partner sits across the ring, its friends beside it (a bad swap for both) or
    // beside us (a good one, when our friends sit beside it).
    let cases = [
        ("broken", 0, near(far), (1, 0, 0)),
        ("bad", 0, near(far), (0, 1, 0)),
        ("good", far, near(0), (0, 0, 1)),
    ];
    for (case, friends_at, partner_peers, counts) in cases {
        let partner = Side {
            nonce: [4; 32],
            location: Location(far),
            peers: partner_peers,
        };
        let ours: Vec<u64> = near(friends_at).iter().map(|l| l.0).collect();
        let (mut r, now) = lone(&ours, swap_cfg(4));
        drain(&mut r);
        let mut store = Mem::default();
        let (t, via, id, _) = own_swap(&mut r, now);
        r.handle_message(
            t,
            via,
            Message::SwapCommit {
                id,
                commitment: partner.commitment(),
            },
            &mut store,
        );
        assert!(matches!(
            drain(&mut r).as_slice(),
            [(to, Message::SwapReveal { id: i, .. })] if *to == via && *i == id
        ));
        let sent = Side {
            location: if case == "broken" {
                Location(1 << 62)
            } else {
                partner.location
            },
            ..partner.clone()
        };
        r.handle_message(
            t,
            via,
            Message::SwapReveal {
                id,
                nonce: sent.nonce,
                location: sent.location,
                peers: BoundedVec::new(sent.peers.clone()).unwrap(),
            },
            &mut store,
        );
        let out = drain(&mut r);
        let stats = r.stats().swap;
        assert_eq!(
            (stats.refused, stats.declined, stats.moved),
            counts,
            "{case}"
        );
        if case == "good" {
            assert_eq!(r.location(), Location(far));
            assert_eq!(out.len(), 2, "both friends told of the move: {out:?}");
        } else {
            assert_eq!(r.location(), Location(0), "{case}");
            assert!(out.is_empty(), "{case}: {out:?}");
        }
        assert!(!r.swapping.is_swap(id));
    }
}

/// `set_swapping(false)` (a simulator's swap phase ending) stops a router swapping: open
/// swaps are forgotten, the timer starts no more, and a friend's move goes unheard; turned
/// back on, it swaps again.
#[test]
fn swapping_turned_off_forgets_open_swaps_and_starts_none() {
    let (mut r, now) = lone(&[1 << 60, 3 << 60], swap_cfg(5));
    drain(&mut r);
    let mut store = Mem::default();
    let (t, _, id, _) = own_swap(&mut r, now);
    r.set_swapping(false);
    assert!(!r.swapping.is_swap(id));
    let started = r.stats().swap.started;
    let mut later = t;
    for _ in 0..50 {
        later += Duration::from_millis(100);
        r.handle_timeout(later);
    }
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.stats().swap.started, started);
    r.handle_message(
        later,
        PeerId(1),
        Message::LocationChanged {
            location: Location(7),
        },
        &mut store,
    );
    assert_eq!(r.peers.get(PeerId(1)).unwrap().location, Location(1 << 60));
    r.set_swapping(true);
    own_swap(&mut r, later);
    assert_eq!(r.stats().swap.started, started + 1);
}
