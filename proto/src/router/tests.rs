//! Tests for every routing rule, without sockets: single routers poked by hand with
//! fake peers, and a small in-memory network ([`Net`]) with virtual time that shuttles
//! `poll_transmit` output into `handle_message` with a fixed latency.

use super::*;
use crate::block;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// A block store in memory that applies [`Event::Store`].
#[derive(Default)]
struct Mem {
    blocks: HashMap<RoutingKey, (Block, Placement)>,
}

impl BlockStore for Mem {
    fn get(&mut self, key: &RoutingKey) -> Option<(Block, Placement)> {
        self.blocks.get(key).cloned()
    }
}

fn blk(n: u8) -> (Block, RoutingKey) {
    let (b, k) = block::encode(&[n; 100]).unwrap();
    (b, k.routing)
}

/// A key with a chosen ring location (only the location matters for routing).
fn key_at(loc: u64) -> RoutingKey {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&loc.to_be_bytes());
    RoutingKey(k)
}

fn cfg(seed: u64) -> RouterConfig {
    RouterConfig {
        htl_policy: HtlPolicy::Always,
        rng_seed: seed,
        ..RouterConfig::default()
    }
}

fn drain(r: &mut Router) -> Vec<(PeerId, Message)> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Router) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

/// One node of the test network.
struct Node {
    router: Router,
    store: Mem,
    events: Vec<Event>,
    received: Vec<(PeerId, Message)>,
}

/// An in-memory network with virtual time, in the manner of quinn-proto's test pair.
struct Net {
    nodes: Vec<Node>,
    start: Instant,
    now: Instant,
    latency: Duration,
    seq: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, usize, usize)>>,
    in_flight: HashMap<u64, Message>,
    /// Links (from, to) whose messages vanish.
    black_holes: HashSet<(usize, usize)>,
}

impl Net {
    fn new(locations: &[u64], config: impl Fn(u64) -> RouterConfig) -> Net {
        let start = Instant::now();
        let nodes = locations
            .iter()
            .enumerate()
            .map(|(i, l)| Node {
                router: Router::new(config(i as u64), Location(*l)),
                store: Mem::default(),
                events: Vec::new(),
                received: Vec::new(),
            })
            .collect();
        Net {
            nodes,
            start,
            now: start,
            latency: Duration::from_millis(10),
            seq: 0,
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            black_holes: HashSet::new(),
        }
    }

    fn link(&mut self, a: usize, b: usize) {
        let (la, lb) = (
            self.nodes[a].router.location(),
            self.nodes[b].router.location(),
        );
        self.nodes[a]
            .router
            .add_peer(self.now, PeerId(b as u64), lb);
        self.nodes[b]
            .router
            .add_peer(self.now, PeerId(a as u64), la);
    }

    fn line(locations: &[u64]) -> Net {
        let mut net = Net::new(locations, cfg);
        for i in 1..locations.len() {
            net.link(i - 1, i);
        }
        net
    }

    /// Moves node `n`'s outputs into the network and its store.
    fn flush(&mut self, n: usize) {
        while let Some((to, msg)) = self.nodes[n].router.poll_transmit() {
            let to = to.0 as usize;
            if self.black_holes.contains(&(n, to)) {
                continue;
            }
            self.seq += 1;
            self.in_flight.insert(self.seq, msg);
            self.queue
                .push(Reverse((self.now + self.latency, self.seq, n, to)));
        }
        while let Some(ev) = self.nodes[n].router.poll_event() {
            if let Event::Store {
                key,
                block,
                placement,
            } = &ev
            {
                self.nodes[n]
                    .store
                    .blocks
                    .insert(*key, (block.clone(), *placement));
            }
            self.nodes[n].events.push(ev);
        }
    }

    /// Runs one step: the next delivery or timeout. False when idle.
    fn step(&mut self) -> bool {
        let timer = (0..self.nodes.len())
            .filter_map(|i| self.nodes[i].router.poll_timeout().map(|t| (t, i)))
            .min();
        let msg = self.queue.peek().map(|Reverse(e)| *e);
        match (msg, timer) {
            (Some((t, seq, from, to)), timer) if timer.is_none_or(|(tt, _)| t <= tt) => {
                self.queue.pop();
                self.now = self.now.max(t);
                let msg = self.in_flight.remove(&seq).unwrap();
                let node = &mut self.nodes[to];
                node.received.push((PeerId(from as u64), msg.clone()));
                node.router
                    .handle_message(self.now, PeerId(from as u64), msg, &mut node.store);
                self.flush(to);
            }
            (_, Some((t, i))) => {
                self.now = self.now.max(t);
                self.nodes[i].router.handle_timeout(self.now);
                self.flush(i);
            }
            (None, None) => return false,
            _ => unreachable!(),
        }
        true
    }

    /// Runs to idle, failing a runaway test.
    fn drive(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("network did not go idle");
    }

    fn request(&mut self, n: usize, key: RoutingKey, htl: Option<Htl>) -> RequestId {
        let node = &mut self.nodes[n];
        let id = node
            .router
            .start_request(self.now, key, htl, &mut node.store);
        self.flush(n);
        id
    }

    fn insert(&mut self, n: usize, block: Block, htl: Option<Htl>) -> RequestId {
        let id = self.nodes[n].router.start_insert(self.now, block, htl);
        self.flush(n);
        id
    }

    fn request_result(&self, n: usize, id: RequestId) -> Option<Result<Fetched, RequestFailure>> {
        self.nodes[n].events.iter().find_map(|e| match e {
            Event::RequestFinished { id: i, result, .. } if *i == id => Some(result.clone()),
            _ => None,
        })
    }

    fn insert_result(
        &self,
        n: usize,
        id: RequestId,
    ) -> Option<Result<InsertReport, InsertFailure>> {
        self.nodes[n].events.iter().find_map(|e| match e {
            Event::InsertFinished { id: i, result, .. } if *i == id => Some(*result),
            _ => None,
        })
    }

    fn placement(&self, n: usize, key: &RoutingKey) -> Option<Placement> {
        self.nodes[n].store.blocks.get(key).map(|(_, p)| *p)
    }
}

/// A router at 0 with peers `1..=n` at the given locations.
fn lone(locations: &[u64], config: RouterConfig) -> (Router, Instant) {
    let now = Instant::now();
    let mut r = Router::new(config, Location(0));
    for (i, l) in locations.iter().enumerate() {
        r.add_peer(now, PeerId(i as u64 + 1), Location(*l));
    }
    (r, now)
}

#[test]
fn insert_then_fetch_along_a_line() {
    let (b, key) = blk(1);
    let kl = Location::of_key(&key).0;
    // Five nodes approaching the key; node 4 is the closest.
    let locs: Vec<u64> = (0..5u64).map(|i| kl.wrapping_add((5 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    let ins = net.insert(0, b.clone(), None);
    net.drive();
    assert_eq!(
        net.insert_result(0, ins),
        Some(Ok(InsertReport {
            route_exhausted: true
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
fn forwards_to_the_closest_peer_and_never_back_to_the_sender() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(7),
            key,
            htl: Htl(10),
        },
        &mut store,
    );
    // Peer 1 is closest but sent it: peer 2 is next.
    let out = drain(&mut r);
    assert_eq!(
        out,
        vec![(
            PeerId(2),
            Message::Request {
                id: RequestId(7),
                key,
                htl: Htl(9)
            }
        )]
    );
}

#[test]
fn loops_are_rejected_and_the_sender_moves_on() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let req = Message::Request {
        id: RequestId(7),
        key,
        htl: Htl(10),
    };
    r.handle_message(now, PeerId(3), req.clone(), &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    // The same id arriving again (a loop) is rejected.
    r.handle_message(now, PeerId(2), req, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(2), Message::RejectedLoop { id: RequestId(7) })]
    );
    // Peer 1 says loop: the router tries the next closest, peer 2.
    r.handle_message(
        now,
        PeerId(1),
        Message::RejectedLoop { id: RequestId(7) },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id: RequestId(7),
                key,
                htl: Htl(9)
            }
        )]
    );
    assert_eq!(r.stats().rejected_loop, 1);
}

#[test]
fn route_not_found_backtracks_with_the_smaller_htl() {
    let key = key_at(1000);
    // Each new attempt spends one HTL; a route-not-found lowers ours to what the
    // peer had left.
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(1),
            Message::Request {
                id,
                key,
                htl: Htl(18)
            }
        )]
    );
    r.handle_message(
        now,
        PeerId(1),
        Message::RouteNotFound { id, htl: Htl(11) },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(10)
            }
        )]
    );
    // A larger returned HTL does not raise ours.
    r.handle_message(
        now,
        PeerId(2),
        Message::RouteNotFound { id, htl: Htl(15) },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(3),
            Message::Request {
                id,
                key,
                htl: Htl(9)
            }
        )]
    );
    // Out of peers with HTL left: route not found.
    r.handle_message(
        now,
        PeerId(3),
        Message::RouteNotFound { id, htl: Htl(2) },
        &mut store,
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        events(&mut r),
        vec![Event::RequestFinished {
            id,
            key,
            result: Err(RequestFailure::RouteNotFound)
        }]
    );
    assert_eq!(r.active_requests(), 0);
}

#[test]
fn route_not_found_at_zero_htl_ends_as_data_not_found() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(2),
        Message::Request {
            id: RequestId(3),
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    drain(&mut r);
    r.handle_message(
        now,
        PeerId(1),
        Message::RouteNotFound {
            id: RequestId(3),
            htl: Htl(0),
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(2), Message::DataNotFound { id: RequestId(3) })]
    );
}

#[test]
fn data_not_found_ends_the_request() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, Some(Htl(4)), &mut store);
    drain(&mut r);
    r.handle_message(now, PeerId(1), Message::DataNotFound { id }, &mut store);
    assert!(drain(&mut r).is_empty(), "no other peer is tried");
    assert_eq!(
        events(&mut r),
        vec![Event::RequestFinished {
            id,
            key,
            result: Err(RequestFailure::DataNotFound)
        }]
    );
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
fn probabilistic_htl_is_fixed_per_link() {
    let policy = |at_max: f64, at_one: f64| RouterConfig {
        htl_policy: HtlPolicy::Probabilistic {
            decrement_at_max: at_max,
            decrement_at_one: at_one,
        },
        ..cfg(1)
    };
    let key = key_at(1000);
    let mut store = Mem::default();
    for (p, max_out, one_out) in [(policy(0.0, 0.0), 18, 1), (policy(1.0, 1.0), 17, 0)] {
        let (mut r, now) = lone(&[900, 5000], p);
        r.handle_message(
            now,
            PeerId(2),
            Message::Request {
                id: RequestId(1),
                key,
                htl: Htl(18),
            },
            &mut store,
        );
        r.handle_message(
            now,
            PeerId(2),
            Message::Request {
                id: RequestId(2),
                key,
                htl: Htl(1),
            },
            &mut store,
        );
        let out = drain(&mut r);
        assert_eq!(
            out[0].1,
            Message::Request {
                id: RequestId(1),
                key,
                htl: Htl(max_out)
            }
        );
        let second = if one_out == 0 {
            Message::DataNotFound { id: RequestId(2) }
        } else {
            Message::Request {
                id: RequestId(2),
                key,
                htl: Htl(1),
            }
        };
        assert_eq!(out[1].1, second);
    }
    // With probability one half, links differ, but each link decides once.
    let (mut r, now) = lone(
        &(1..=40).map(|i| i << 50).collect::<Vec<_>>(),
        RouterConfig::default(),
    );
    let mut kept = Vec::new();
    for peer in 1..=40u64 {
        let mut htls = HashSet::new();
        for round in 0..3u64 {
            let id = RequestId(peer * 100 + round);
            r.handle_message(
                now,
                PeerId(peer),
                Message::Request {
                    id,
                    key,
                    htl: Htl(18),
                },
                &mut store,
            );
            for (_, m) in drain(&mut r) {
                if let Message::Request { htl, .. } = m {
                    htls.insert(htl.0);
                }
            }
        }
        assert_eq!(htls.len(), 1, "one choice per link");
        kept.push(htls.contains(&18));
    }
    assert!(kept.iter().any(|k| *k) && kept.iter().any(|k| !*k));
}

#[test]
fn timeout_backtracks_and_late_data_still_counts() {
    let (b, key) = blk(2);
    let (mut r, now) = lone(&[1, 2], cfg(1));
    // Make peer 1 the closer one to the block's key.
    r.add_peer(now, PeerId(1), Location::of_key(&key));
    let mut store = Mem::default();
    let id = r.start_request(now, key, Some(Htl(5)), &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    let due = r.poll_timeout().unwrap();
    assert_eq!(
        due,
        now + Duration::from_secs(2) * 6,
        "hop_timeout × (htl + 1)"
    );
    r.handle_timeout(due - Duration::from_millis(1));
    assert!(drain(&mut r).is_empty(), "an early call does nothing");
    r.handle_timeout(due);
    // One HTL is charged for the silent hop.
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(4)
            }
        )]
    );
    assert_eq!(r.stats().timeouts, 1);
    // Peer 1 answers late: the request completes with its data.
    r.handle_message(
        due,
        PeerId(1),
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    match &events(&mut r)[..] {
        [Event::RequestFinished { result: Ok(f), .. }] => assert_eq!(f.from, Some(PeerId(1))),
        e => panic!("{e:?}"),
    }
    // Peer 2's answer after that is quietly dropped.
    r.handle_message(due, PeerId(2), Message::DataNotFound { id }, &mut store);
    assert!(events(&mut r).is_empty());
    assert_eq!(r.poll_timeout(), None);
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
    net.nodes[3]
        .store
        .blocks
        .insert(key, (b.clone(), Placement::Store));
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
fn overload_rejects_and_backs_off() {
    let key = key_at(1000);
    let config = RouterConfig {
        max_inflight_per_peer: 1,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[900, 5000, 1 << 60], config);
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(3),
        Message::Request {
            id: RequestId(1),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    r.handle_message(
        now,
        PeerId(3),
        Message::Request {
            id: RequestId(2),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    let out = drain(&mut r);
    assert_eq!(
        out[1],
        (PeerId(3), Message::RejectedOverload { id: RequestId(2) })
    );
    assert_eq!(r.stats().rejected_overload, 1);
    // Peer 1 overloaded: request 1 goes to peer 2, and peer 1 is avoided for a while.
    r.handle_message(
        now,
        PeerId(1),
        Message::RejectedOverload { id: RequestId(1) },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
    r.handle_message(
        now,
        PeerId(2),
        Message::Request {
            id: RequestId(3),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(3), "peer 1 is backed off");
    let later = now + Duration::from_secs(6);
    r.handle_message(
        later,
        PeerId(3),
        Message::DataNotFound { id: RequestId(3) },
        &mut store,
    );
    r.handle_message(
        later,
        PeerId(2),
        Message::DataNotFound { id: RequestId(1) },
        &mut store,
    );
    drain(&mut r);
    r.handle_message(
        later,
        PeerId(2),
        Message::Request {
            id: RequestId(4),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(1), "back-off over");
    // A rejected request does not burn its id: it may come back later.
    r.handle_message(
        later,
        PeerId(3),
        Message::Request {
            id: RequestId(2),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    assert!(matches!(drain(&mut r)[0].1, Message::Request { .. }));
}

#[test]
fn bad_data_is_misbehaviour_and_the_next_peer_is_tried() {
    let (_, key) = blk(4);
    let (other, _) = blk(5);
    let (mut r, now) = lone(&[1, 2], cfg(1));
    r.add_peer(now, PeerId(1), Location::of_key(&key));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    drain(&mut r);
    r.handle_message(
        now,
        PeerId(1),
        Message::Data { id, block: other },
        &mut store,
    );
    assert_eq!(
        events(&mut r),
        vec![Event::PeerMisbehaved {
            peer: PeerId(1),
            reason: "data that fails verification"
        }]
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
}

#[test]
fn replies_for_unknown_ids_are_misbehaviour() {
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::InsertReply { id: RequestId(9) },
        &mut store,
    );
    assert!(matches!(
        events(&mut r)[..],
        [Event::PeerMisbehaved {
            peer: PeerId(1),
            ..
        }]
    ));
    // Messages from peers never added are dropped, and chatter is the shell's.
    r.handle_message(
        now,
        PeerId(77),
        Message::InsertReply { id: RequestId(9) },
        &mut store,
    );
    r.handle_message(now, PeerId(1), Message::Ping { nonce: 1 }, &mut store);
    assert!(events(&mut r).is_empty());
    assert!(drain(&mut r).is_empty());
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
fn inserts_cache_only_three_hops_away_and_end_with_an_insert_reply() {
    let (b, key) = blk(7);
    let kl = Location::of_key(&key).0;
    let locs: Vec<u64> = (0..7u64).map(|i| kl.wrapping_add((7 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    // HTL 5: nodes 1..=5 receive 5, 4, 3, 2, 1; node 5 forwards with 0 and replies.
    let id = net.insert(0, b, Some(Htl(5)));
    net.drive();
    assert_eq!(
        net.insert_result(0, id),
        Some(Ok(InsertReport {
            route_exhausted: false
        }))
    );
    assert!(net.nodes[6].received.is_empty());
    let placements: Vec<Option<Placement>> = (0..6).map(|n| net.placement(n, &key)).collect();
    // Node 5 has node 6 (closer) as a peer, so nobody on this path is a sink.
    assert_eq!(
        placements,
        vec![
            None,
            Some(Placement::Cache),
            Some(Placement::Cache),
            Some(Placement::Cache),
            Some(Placement::Cache),
            Some(Placement::Cache)
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
fn bad_insert_is_misbehaviour() {
    let (b, _) = blk(9);
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Insert {
            id: RequestId(1),
            key: key_at(5),
            htl: Htl(5),
            block: b,
        },
        &mut store,
    );
    assert!(matches!(events(&mut r)[..], [Event::PeerMisbehaved { .. }]));
    assert!(drain(&mut r).is_empty());
}

#[test]
fn local_inserts_without_peers_fail() {
    let (b, _) = blk(10);
    let (mut r, now) = lone(&[], cfg(1));
    let id = r.start_insert(now, b, None);
    assert!(matches!(
        events(&mut r)[..],
        [Event::InsertFinished { id: i, result: Err(InsertFailure::RouteNotFound), .. }] if i == id
    ));
}

#[test]
fn local_store_answers_first() {
    let (b, key) = blk(11);
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    store.blocks.insert(key, (b.clone(), Placement::Cache));
    let id = r.start_request(now, key, None, &mut store);
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        events(&mut r),
        vec![Event::RequestFinished {
            id,
            key,
            result: Ok(Fetched {
                block: b,
                from: None
            })
        }]
    );
}

#[test]
fn removing_a_peer_moves_its_requests_on_and_drops_its_own() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(5),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    drain(&mut r);
    r.remove_peer(now, PeerId(1));
    // Our request moves on to peer 2; peer 1's own request is abandoned.
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(18)
            }
        )]
    );
    assert_eq!(r.active_requests(), 1);
    assert_eq!(r.peer_count(), 2);
}

#[test]
fn seen_ids_are_forgotten_after_the_ttl() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000], cfg(1));
    let mut store = Mem::default();
    for i in 0..50 {
        r.handle_message(
            now,
            PeerId(2),
            Message::Request {
                id: RequestId(i),
                key,
                htl: Htl(1),
            },
            &mut store,
        );
    }
    assert_eq!(r.seen.len(), 50);
    r.handle_timeout(now + Duration::from_secs(601));
    assert_eq!(r.seen.len(), 0);
    assert_eq!(r.active_requests(), 0);
}

#[test]
fn same_seed_same_run() {
    let run = || {
        let mut net = Net::new(&[1 << 60, 2 << 60, 3 << 60, 4 << 60, 5 << 60], |i| {
            RouterConfig {
                rng_seed: i,
                ..RouterConfig::default()
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
fn probabilistic_htl_still_bounds_the_nodes_an_insert_visits() {
    for seed in 0..5u64 {
        let locs: Vec<u64> = (0..60u64).map(|i| i << 57).collect();
        let mut net = Net::new(&locs, |i| RouterConfig {
            rng_seed: i * 1000 + seed,
            ..RouterConfig::default()
        });
        for a in 0..60 {
            for b in a + 1..60 {
                if (a * 7 + b * 13) % 3 == 0 {
                    net.link(a, b);
                }
            }
        }
        let (b, _) = blk(1);
        net.insert(0, b, None);
        net.drive();
        let accepted: usize = net
            .nodes
            .iter()
            .map(|n| {
                n.router.stats().inserts_received as usize - n.router.stats().rejected_loop as usize
            })
            .sum();
        let mut hist = std::collections::BTreeMap::new();
        for n in &net.nodes {
            for (_, m) in &n.received {
                if let Message::Insert { htl, .. } = m {
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

#[test]
fn a_node_answers_within_its_budget() {
    let key = key_at(1000);
    let (mut r, t0) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let id = RequestId(4);
    r.handle_message(
        t0,
        PeerId(3),
        Message::Request {
            id,
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    // Peer 1 refuses late; the retry's wait is cut to the budget (2 s × 5 from t0).
    let t1 = t0 + Duration::from_secs(9);
    r.handle_message(t1, PeerId(1), Message::RejectedLoop { id }, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(4)
            }
        )]
    );
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    r.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(3), Message::RouteNotFound { id, htl: Htl(4) })]
    );
    assert_eq!(r.stats().budget_expired, 1);
    assert_eq!(r.stats().timeouts, 0);
    // Peer 2 was not to blame: it is not backed off.
    let t2 = t0 + Duration::from_secs(10);
    r.handle_message(
        t2,
        PeerId(1),
        Message::Request {
            id: RequestId(5),
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
}
