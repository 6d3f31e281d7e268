//! Tests for every routing rule, without sockets: single routers poked by hand with
//! fake peers (`rules`), and a small in-memory network ([`Net`]) with virtual time that
//! shuttles `poll_transmit` output into `handle_message` with a fixed latency
//! (`network`). This file holds the shared harness.

mod edges;
mod hostile;
mod latency;
mod network;
mod opennet;
mod opennet_rules;
mod replicas;
mod rules;
mod signed;
mod spread;
mod swapping;
mod walk;

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

/// The defaults, without the anonymity walk: these tests pin greedy routing itself
/// (walk.rs's tests put the walk in front of it).
fn greedy() -> RouterConfig {
    RouterConfig {
        walk_probability: 0.0,
        ..RouterConfig::default()
    }
}

fn cfg(seed: u64) -> RouterConfig {
    RouterConfig {
        htl_policy: HtlPolicy::Always,
        rng_seed: seed,
        ..greedy()
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

    /// Puts `block` into node `n`'s store, as if it had been stored there long ago.
    fn hold(&mut self, n: usize, key: RoutingKey, block: &Block) {
        self.nodes[n]
            .store
            .blocks
            .insert(key, (block.clone(), Placement::Store));
    }

    /// A ring of `n` nodes evenly spread, each linked to the next two on each side and to
    /// one node a third of the way round: enough peers for walks and routes to wander.
    fn ring(n: usize, config: impl Fn(u64) -> RouterConfig) -> Net {
        let locs: Vec<u64> = (0..n as u64).map(|i| i * (u64::MAX / n as u64)).collect();
        let mut net = Net::new(&locs, config);
        for i in 0..n {
            for d in [1, 2, n / 3] {
                let j = (i + d) % n;
                if !net.nodes[i].router.peers.contains(PeerId(j as u64)) {
                    net.link(i, j);
                }
            }
        }
        net
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
        // The timer index always agrees with the requests' own deadlines.
        let r = &self.nodes[n].router;
        if !r.config.opennet.enabled && !r.config.swap.enabled {
            assert_eq!(
                r.poll_timeout(),
                r.requests
                    .requests
                    .values()
                    .filter_map(|q| q.deadline)
                    .min()
            );
        }
        // The forwarded-request counts always agree with the requests themselves.
        for p in r.peers.iter() {
            let awaited = r
                .requests
                .requests
                .values()
                .filter(|q| q.source.is_some() && q.waiting == Some(p.id))
                .count();
            assert_eq!(
                p.forwarded_out as usize, awaited,
                "node {n}, peer {:?}",
                p.id
            );
        }
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

    /// Delivers the next message in flight, if any; false when none is.
    fn deliver_next(&mut self) -> bool {
        let Some(Reverse((t, seq, from, to))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(t);
        let msg = self.in_flight.remove(&seq).unwrap();
        let node = &mut self.nodes[to];
        node.received.push((PeerId(from as u64), msg.clone()));
        node.router
            .handle_message(self.now, PeerId(from as u64), msg, &mut node.store);
        self.flush(to);
        true
    }

    /// Runs one step: the next delivery or timeout. False when idle.
    fn step(&mut self) -> bool {
        let timer = (0..self.nodes.len())
            .filter_map(|i| self.nodes[i].router.poll_timeout().map(|t| (t, i)))
            .min();
        let msg = self.queue.peek().map(|Reverse(e)| *e);
        match (msg, timer) {
            (Some((t, _, _, _)), timer) if timer.is_none_or(|(tt, _)| t <= tt) => {
                self.deliver_next();
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
        self.insert_with(n, block, htl, None)
    }

    fn insert_with(
        &mut self,
        n: usize,
        block: Block,
        htl: Option<Htl>,
        replicas: Option<u8>,
    ) -> RequestId {
        let key = block.routing_key();
        self.insert_as(n, key, block, htl, replicas)
    }

    fn insert_as(
        &mut self,
        n: usize,
        key: RoutingKey,
        block: Block,
        htl: Option<Htl>,
        replicas: Option<u8>,
    ) -> RequestId {
        let id = self.nodes[n]
            .router
            .start_insert_as(self.now, key, block, htl, replicas);
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
