//! The discrete-event loop: one `veil_proto` [`Router`] per node, an event heap ordered
//! by virtual time (ties by insertion order), and per-link latencies. No threads, no
//! sockets, no real clock in the loop: a run is a function of its parameters.
//!
//! The simulator watches every message it carries, which is how it measures without
//! touching the router: hops are the `Data` messages that carry a request's block back,
//! and the originator-guessing figure comes from the HTL of every `Request` a node
//! receives, compared with who really started it.

use crate::event::Queue;
pub use crate::event::{Action, Nanos};
use crate::metrics::{Counters, RequestOutcome, RequestRecord};
use crate::mix::splitmix;
use crate::params::Params;
use crate::topology::Graph;
use crate::workload::{KeyHasher, KeyPicker, Keys};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, Instant};
use veil_proto::block::Block;
use veil_proto::keys::NodeKey;
use veil_proto::keys::RoutingKey;
use veil_proto::message::PeerAddress;
use veil_proto::message::{Message, RequestId};
use veil_proto::ring::Location;
use veil_proto::router::{
    BlockStore, Event, LinkDecision, OpennetConfig, PeerId, PeerMeta, PeerOrigin, Placement,
    RequestFailure, Router, RouterConfig,
};

/// Key indices ([`Keys`]): what nodes keep instead of keys and blocks, 4 bytes a stored
/// block where a key and a block took 64, 16 a cached one where they took 72 (and memory
/// is what a large run's time goes on: every first touch of a page, every cache miss).
type IndexSet = HashSet<u32, BuildHasherDefault<KeyHasher>>;
type IndexMap<V> = HashMap<u32, V, BuildHasherDefault<KeyHasher>>;

/// One node: its router, its long-term store and its LRU cache (with each block's last
/// use).
#[derive(Clone)]
struct Node {
    router: Router,
    store: IndexSet,
    cache: IndexMap<u64>,
    /// The timer already on the heap for this node, if any.
    timer: Option<Nanos>,
    alive: bool,
}

/// The router's view of a node's storage for one call.
struct Host<'a> {
    store: &'a IndexSet,
    cache: &'a mut IndexMap<u64>,
    keys: &'a Keys,
    full_verify: bool,
    tick: u64,
}

impl Node {
    /// The router and, beside it, the view of this node's store it routes against.
    fn router_and_host<'a>(
        &'a mut self,
        keys: &'a Keys,
        full_verify: bool,
        tick: u64,
    ) -> (&'a mut Router, Host<'a>) {
        let host = Host {
            store: &self.store,
            cache: &mut self.cache,
            keys,
            full_verify,
            tick,
        };
        (&mut self.router, host)
    }
}

impl BlockStore for Host<'_> {
    fn get(&mut self, key: &RoutingKey) -> Option<(Block, Placement)> {
        let i = self.keys.index_of(key)?;
        let placement = if self.store.contains(&i) {
            Placement::Store
        } else {
            *self.cache.get_mut(&i)? = self.tick;
            Placement::Cache
        };
        Some((self.keys.blocks[i as usize].clone(), placement))
    }

    fn verify(&mut self, key: &RoutingKey, block: &Block) -> bool {
        if self.full_verify {
            block.verify(key).is_ok()
        } else {
            self.keys.is_canonical(key, block)
        }
    }
}

/// The running simulation.
pub struct Sim<'p> {
    params: &'p Params,
    /// How long each link takes.
    latency: crate::latency::Latency,
    base: Instant,
    now: Nanos,
    queue: Queue,
    nodes: Vec<Node>,
    graph: Graph,
    keys: Keys,
    /// The node that published each key (`u32::MAX` before its insert): its own copy
    /// is not a replica, and routing does not lead to it.
    publisher: Vec<u32>,
    rng: ChaCha8Rng,
    tick: u64,
    picker: KeyPicker,
    /// With documents: the order they are fetched in, and blocks per document.
    doc_order: Option<(Vec<usize>, usize)>,
    /// Virtual time between two inserts or two requests.
    gap: Nanos,
    /// Local requests by id: index into `records`.
    by_id: HashMap<RequestId, u32, BuildHasherDefault<KeyHasher>>,
    /// Per request.
    pub records: Vec<RequestRecord>,
    /// Everything else counted.
    pub counters: Counters,
    /// Messages each node received.
    pub load: Vec<u32>,
    /// Warm-up keys: indices `warm.0..warm.1` of the blocks.
    warm: (u32, u32),
    /// Links to close once the current node's outputs are drained.
    deferred: Vec<(u32, u32)>,
    /// Debugging: a node whose opennet messages are printed (`VEIL_SIM_TRACE`).
    trace: Option<u32>,
    /// Whole downloads from chosen nodes instead of lone requests (`veil-sim anonymity`).
    downloads: Option<Downloads>,
    /// With downloads: every request or walk message any node received for a measured
    /// request, for the adversaries' analysis (any set of nodes can be the adversary
    /// afterwards: they only listen).
    pub observations: Vec<Observation>,
    /// With downloads: every insert or insert walk any node received for an upload's
    /// block (`record` is then the key's index).
    pub insert_observations: Vec<Observation>,
    /// With downloads: the uploads' inserts by id, to their key's index.
    upload_ids: HashMap<RequestId, u32, BuildHasherDefault<KeyHasher>>,
}

/// Downloads: request `i` asks for block `i % blocks` of download `i / blocks`, whose
/// keys are `download × blocks ..`, from that download's originator on its tunnel.
#[derive(Clone, Debug)]
pub struct Downloads {
    /// Blocks per download.
    pub blocks: usize,
    /// The node that makes each download.
    pub originators: Vec<u32>,
    /// The tunnel each download's requests take.
    pub tunnels: Vec<u64>,
    /// The node that uploads (inserts) each download's file, before the downloads.
    pub publishers: Vec<u32>,
    /// The tunnel each upload's inserts take.
    pub upload_tunnels: Vec<u64>,
    /// Every request and insert on a tunnel of its own instead (a walk per request, as
    /// plain Crowds; for comparison).
    pub per_request: bool,
    /// Only the first this many blocks of each download are inserted; requests for the
    /// rest find nothing (keyword searches probing empty slots). `None`: all are.
    pub present: Option<usize>,
}

/// A node received a request (or its walk) for a measured request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The receiver.
    pub at: u32,
    /// The neighbour it came from.
    pub from: u32,
    /// Index into the records.
    pub record: u32,
    /// Its HTL, or `None` for a walk message (which carries none).
    pub htl: Option<u8>,
}

/// The simulated node key of node `i`: its index, then a marker.
pub fn node_key(i: u32) -> NodeKey {
    let mut k = [0u8; 32];
    k[..4].copy_from_slice(&i.to_be_bytes());
    k[4..8].copy_from_slice(b"veil");
    NodeKey(k)
}

/// The node a simulated key names.
pub fn node_of(key: &NodeKey) -> Option<u32> {
    if &key.0[4..8] != b"veil" {
        return None;
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(&key.0[..4]);
    Some(u32::from_be_bytes(b))
}

/// The simulated address of node `i` (only its key matters).
pub fn node_address(i: u32) -> PeerAddress {
    PeerAddress {
        key: node_key(i),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7400)),
    }
}

/// The opennet settings a simulated node runs with, for a target degree.
pub fn opennet_config(params: &Params) -> OpennetConfig {
    OpennetConfig {
        enabled: true,
        max_peers: params.degree,
        min_peers: (params.degree / 2).max(1),
        ..OpennetConfig::default()
    }
}

impl<'p> Sim<'p> {
    /// Builds routers over `graph` and links them.
    pub fn new(params: &'p Params, graph: Graph, keys: Keys, rng: ChaCha8Rng) -> Sim<'p> {
        let base = Instant::now();
        // One configuration for the whole network; each router's seed is its own.
        let seed = |i: usize| params.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let config = Arc::new(RouterConfig {
            max_htl: veil_proto::message::Htl(params.max_htl),
            htl_policy: params.router_policy(),
            hop_timeout: Duration::from_secs(1),
            backoff: Duration::from_secs(5),
            max_inflight_per_peer: 64,
            seen_ttl: Duration::from_secs(120),
            rng_seed: seed(0),
            replicas: params.replicas,
            // Load management as a node has it: simulated requests come one at a time,
            // far below any share.
            max_backoff: RouterConfig::default().max_backoff,
            max_inflight: RouterConfig::default().max_inflight,
            max_inflight_bytes: RouterConfig::default().max_inflight_bytes,
            flood_rejections: RouterConfig::default().flood_rejections,
            failure_ttl: RouterConfig::default().failure_ttl,
            // The anonymity walk: off unless asked for (`--walk-probability`; the
            // routing figures in docs/ are greedy routing's own), on in `anonymity`.
            walk_probability: params.walk_probability,
            tunnel_lifetime: RouterConfig::default().tunnel_lifetime,
            // Darknet nodes tell their friends where their friends are, as veild
            // --darknet does (opennet does it on its own).
            neighbour_lists: params.topology == crate::topology::Topology::Darknet && params.foaf,
            latency_factor: params.latency_factor(),
            latency_progress_weight: params.progress_weight,
            insert_routes: params.insert_routes(),
            opennet: if params.topology == crate::topology::Topology::Opennet {
                opennet_config(params)
            } else {
                OpennetConfig::default()
            },
            // Darknet swapping: offline before the routers exist
            // (`topology::swap_locations`, the same rule), or the routers' own protocol at
            // the daemon's default pace (one attempt per node every 10 s on average; at
            // 1 s, so many swaps overlap that reveals grow stale and it converges worse
            // than offline: docs/sim.md).
            swap: veil_proto::router::SwapConfig {
                enabled: params.topology == crate::topology::Topology::Darknet
                    && params.swap_mode == crate::params::SwapMode::Wire,
                interval: Duration::from_nanos(crate::workload::SWAP_INTERVAL),
                max_side_loss: params.guard(),
                rerandomise_crowded: params.mitigation,
                ..veil_proto::router::SwapConfig::default()
            },
        });
        let opennet = params.topology == crate::topology::Topology::Opennet;
        let mut nodes: Vec<Node> = graph
            .locations
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut router = Router::with_shared_config(config.clone(), seed(i), Location(*l));
                if opennet {
                    router.set_address(node_address(i as u32));
                }
                Node {
                    router,
                    store: IndexSet::default(),
                    cache: IndexMap::default(),
                    timer: None,
                    // Opennet nodes come up one by one (`Bootstrap`).
                    alive: !opennet || i < params.seeds,
                }
            })
            .collect();
        for (i, ls) in graph.links.iter().enumerate() {
            for &j in ls {
                let loc = Location(graph.locations[j as usize]);
                let meta = PeerMeta {
                    origin: PeerOrigin::Friend,
                    address: opennet.then(|| node_address(j)),
                    routable: true,
                };
                nodes[i]
                    .router
                    .add_peer_with(base, PeerId(u64::from(j)), loc, meta);
            }
        }
        let n = nodes.len();
        let picker = KeyPicker::new(params, params.key_count().min(keys.len()).max(1));
        let latency = crate::latency::Latency::new(params.latency_model.clone(), params.seed);
        // Every link's round trip is known from its handshake, as veild times its pings.
        for (i, ls) in graph.links.iter().enumerate() {
            for &j in ls {
                let rtt = 2 * latency.between(i as u32, j);
                nodes[i]
                    .router
                    .observe_rtt(PeerId(u64::from(j)), Duration::from_nanos(rtt));
            }
        }
        Sim {
            params,
            latency,
            base,
            now: 0,
            queue: Queue::default(),
            nodes,
            graph,
            publisher: vec![u32::MAX; keys.len()],
            keys,
            rng,
            tick: 0,
            picker,
            doc_order: None,
            gap: params.interval_nanos(),
            by_id: HashMap::default(),
            records: Vec::with_capacity(params.requests),
            counters: Counters::default(),
            load: vec![0; n],
            warm: (0, 0),
            deferred: Vec::new(),
            trace: std::env::var("VEIL_SIM_TRACE")
                .ok()
                .and_then(|v| v.parse().ok()),
            downloads: None,
            observations: Vec::new(),
            insert_observations: Vec::new(),
            upload_ids: HashMap::default(),
        }
    }

    /// Makes the measured requests whole downloads (see [`Downloads`]), and records what
    /// every node sees of them.
    pub fn set_downloads(&mut self, downloads: Downloads) {
        self.downloads = Some(downloads);
    }

    /// Arms every router's timer and sends what linking queued (darknet over the wire:
    /// the swap timers, and each node's location to its friends).
    pub fn start_swapping(&mut self) {
        for n in 0..self.nodes.len() as u32 {
            self.after(n);
        }
    }

    /// Fetch documents of `blocks` blocks (the first `docs × blocks` keys) whole, in a
    /// random order drawn from the simulation's generator.
    pub fn set_documents(&mut self, docs: usize, blocks: usize) {
        let mut order: Vec<usize> = (0..docs.max(1)).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut self.rng);
        self.doc_order = Some((order, blocks.max(1)));
    }

    /// A copy of this simulation, as it stands, that goes on under `params`, which may
    /// differ from its own in the latency factor alone (every router takes the new one).
    /// `run_beside_greedy` routes one network's requests both ways from here.
    pub fn fork<'q>(&self, params: &'q Params) -> Sim<'q> {
        let mut copy = Sim {
            params,
            latency: self.latency.clone(),
            base: self.base,
            now: self.now,
            queue: self.queue.clone(),
            nodes: self.clone_nodes(),
            graph: self.graph.clone(),
            keys: self.keys.clone(),
            publisher: self.publisher.clone(),
            rng: self.rng.clone(),
            tick: self.tick,
            picker: self.picker.clone(),
            doc_order: self.doc_order.clone(),
            gap: self.gap,
            by_id: self.by_id.clone(),
            records: self.records.clone(),
            counters: self.counters.clone(),
            load: self.load.clone(),
            warm: self.warm,
            deferred: self.deferred.clone(),
            trace: self.trace,
            downloads: self.downloads.clone(),
            observations: self.observations.clone(),
            insert_observations: self.insert_observations.clone(),
            upload_ids: self.upload_ids.clone(),
        };
        // Every router has the same settings (seeds aside): the copy shares one with
        // the new latency factor.
        if let Some(first) = copy.nodes.first() {
            let config = Arc::new(RouterConfig {
                latency_factor: params.latency_factor(),
                ..(**first.router.shared_config()).clone()
            });
            for n in &mut copy.nodes {
                n.router.set_shared_config(config.clone());
            }
        }
        copy
    }

    /// A copy of every node, made on two threads: the copy is bound by the first touch
    /// of its pages, which two cores take in half the time (the other core is idle
    /// while a fork is made).
    fn clone_nodes(&self) -> Vec<Node> {
        let (first, second) = self.nodes.split_at(self.nodes.len() / 2);
        std::thread::scope(|scope| {
            let second = scope.spawn(|| second.to_vec());
            let mut nodes = Vec::with_capacity(self.nodes.len());
            nodes.extend_from_slice(first);
            let second = second
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            nodes.extend(second);
            nodes
        })
    }

    /// Sets the range of warm-up keys.
    pub fn set_warm_keys(&mut self, start: u32, end: u32) {
        self.warm = (start, end);
    }

    /// The current links (opennet changes them as it runs).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Routable peers of every node.
    pub fn all_degrees(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| n.router.peers().routable())
            .collect()
    }

    /// Routable peers of each live node.
    pub fn live_degrees(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.router.peers().routable())
            .collect()
    }

    /// Schedules `action` at `at`.
    pub fn schedule(&mut self, at: Nanos, action: Action) {
        self.queue.push(at, action);
    }

    /// Runs until nothing is left to do before `until` (opennet nodes short of peers
    /// announce for ever, so a run needs an end); returns the number of events
    /// processed.
    pub fn run_until(&mut self, until: Nanos) -> u64 {
        let mut events = 0;
        while self.queue.next_at().is_some_and(|at| at <= until) {
            let Some((at, action)) = self.queue.pop() else {
                break;
            };
            self.now = at;
            events += 1;
            self.dispatch(action);
        }
        events
    }

    /// The routers, for their counters.
    pub fn routers(&self) -> impl Iterator<Item = &Router> {
        self.nodes.iter().map(|n| &n.router)
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn dispatch(&mut self, action: Action) {
        let now = self.instant();
        match action {
            Action::Deliver { from, to, msg } => {
                if !self.nodes[to as usize].alive {
                    return;
                }
                if self.trace.is_some_and(|t| t == from || t == to) {
                    self.trace_message(from, to, &msg);
                }
                self.load[to as usize] += 1;
                self.observe(from, to, &msg);
                self.tick += 1;
                let (router, mut host) = self.nodes[to as usize].router_and_host(
                    &self.keys,
                    self.params.full_verify,
                    self.tick,
                );
                router.handle_message(now, PeerId(u64::from(from)), msg, &mut host);
                self.after(to);
            }
            Action::Timer { node } => {
                let n = &mut self.nodes[node as usize];
                if n.timer != Some(self.now) || !n.alive {
                    return;
                }
                n.timer = None;
                // The deadline this timer was set for may have gone with its request
                // (answered in time): then nothing is due and the router is left alone
                // (its expiries run with its next input all the same). The same
                // results, a few percent less time.
                if n.router.poll_timeout().is_some_and(|t| t <= now) {
                    n.router.handle_timeout(now);
                }
                self.after(node);
            }
            Action::Insert { key, end } => {
                if key + 1 < end {
                    let next = Action::Insert { key: key + 1, end };
                    self.schedule(self.now + self.gap, next);
                }
                if let Some(d) = &self.downloads {
                    if d.present.is_some_and(|p| key as usize % d.blocks >= p) {
                        return;
                    }
                }
                // With downloads, each file is uploaded by its publisher on one tunnel.
                let upload = self.downloads.as_ref().and_then(|d| {
                    let u = key as usize / d.blocks;
                    let tunnel = *d.upload_tunnels.get(u)?;
                    let tunnel = if d.per_request {
                        splitmix(tunnel ^ u64::from(key))
                    } else {
                        tunnel
                    };
                    Some((*d.publishers.get(u)?, tunnel))
                });
                let Some(node) = upload.map(|(p, _)| p).or_else(|| self.random_live_node()) else {
                    return;
                };
                if !self.nodes[node as usize].alive {
                    return;
                }
                let block = self.keys.blocks[key as usize].clone();
                self.publisher[key as usize] = node;
                // As veild's PUT does: the publisher's node keeps the block long-term
                // (the router itself never stores its own user's inserts).
                self.nodes[node as usize].store.insert(key);
                // The key is known: no need for the router to hash the block for it.
                let id = self.nodes[node as usize].router.start_insert_in(
                    now,
                    self.keys.routing[key as usize],
                    block,
                    None,
                    Some(self.params.replicas_for(key as usize)),
                    upload.map(|(_, t)| t),
                );
                if upload.is_some() {
                    self.upload_ids.insert(id, key);
                }
                self.counters.inserts += 1;
                self.after(node);
            }
            Action::Request { index } => {
                if (index as usize) + 1 < self.params.requests {
                    let next = Action::Request { index: index + 1 };
                    self.schedule(self.now + self.gap, next);
                }
                if let Some(d) = &self.downloads {
                    let i = index as usize;
                    let (download, block) = (i / d.blocks, i % d.blocks);
                    let (Some(&origin), Some(&tunnel)) =
                        (d.originators.get(download), d.tunnels.get(download))
                    else {
                        return;
                    };
                    let tunnel = if d.per_request {
                        splitmix(tunnel ^ u64::from(index))
                    } else {
                        tunnel
                    };
                    if self.nodes[origin as usize].alive {
                        self.start_request_from(
                            origin,
                            (download * d.blocks + block) as u32,
                            index,
                            Some(tunnel),
                        );
                    }
                    return;
                }
                let key = match &self.doc_order {
                    // Documents are fetched whole, one after another, block by block.
                    Some((order, blocks)) => {
                        let i = index as usize;
                        (order[(i / blocks) % order.len()] * blocks + i % blocks) as u32
                    }
                    None => self.picker.pick(&mut self.rng),
                };
                self.start_request(key, index);
            }
            Action::Fail { fraction } => {
                let n = self.nodes.len();
                let count = (fraction * n as f64).round() as usize;
                let mut order: Vec<u32> = (0..n as u32).collect();
                rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut self.rng);
                for &node in &order[..count.min(n)] {
                    self.take_down(node);
                }
                self.counters.failed_nodes = count as u64;
            }
            Action::Leave { node } => {
                if self.nodes[node as usize].alive {
                    self.take_down(node);
                    self.counters.churn_leaves += 1;
                }
            }
            Action::Join { node } => self.bring_up(node),
            Action::Reinsert { key, end } => {
                if key + 1 < end {
                    // A keepalive pass runs many blocks in parallel: ten times the pace
                    // of the requests.
                    let next = Action::Reinsert { key: key + 1, end };
                    self.schedule(self.now + self.gap.div_ceil(10), next);
                }
                let node = self.publisher[key as usize];
                if node == u32::MAX || !self.nodes[node as usize].alive {
                    return;
                }
                let block = self.keys.blocks[key as usize].clone();
                self.nodes[node as usize].router.start_insert_in(
                    now,
                    self.keys.routing[key as usize],
                    block,
                    None,
                    Some(self.params.replicas_for(key as usize)),
                    None,
                );
                self.after(node);
            }
            Action::StopSwaps => {
                // Still one configuration for all: the first router's, swapping off.
                let mut config: Option<Arc<RouterConfig>> = None;
                for node in &mut self.nodes {
                    if let Some(c) = &config {
                        node.router.set_shared_config(c.clone());
                    }
                    node.router.set_swapping(false);
                    config.get_or_insert_with(|| node.router.shared_config().clone());
                }
            }
            Action::Warmup { left } => {
                if left > 0 {
                    self.schedule(self.now + self.gap, Action::Warmup { left: left - 1 });
                }
                let (a, b) = self.warm;
                if a >= b {
                    return;
                }
                let Some(origin) = self.random_live_node() else {
                    return;
                };
                let key = self.keys.routing[self.rng.gen_range(a..b) as usize];
                self.tick += 1;
                let (router, mut host) = self.nodes[origin as usize].router_and_host(
                    &self.keys,
                    self.params.full_verify,
                    self.tick,
                );
                router.start_request(now, key, None, &mut host);
                self.after(origin);
            }
            Action::Bootstrap { node } => {
                let seeds = self.params.seeds.min(self.nodes.len()) as u32;
                self.nodes[node as usize].alive = true;
                if node < seeds {
                    return;
                }
                let seed = self.rng.gen_range(0..seeds);
                self.try_link(node, seed, PeerOrigin::Seed);
                if std::env::var_os("VEIL_SIM_DEBUG").is_some() {
                    self.schedule(self.now + 20_000_000_000, Action::Check { node });
                }
            }
            Action::Link { from, to, origin } => self.try_link(from, to, origin),
            Action::Check { node } => self.check(node),
        }
    }

    /// Debugging (`VEIL_SIM_TRACE=<node>`): prints an opennet message to or from the
    /// traced node, positions relative to it in units of the mean spacing.
    fn trace_message(&self, from: u32, to: u32, msg: &Message) {
        let Some(t) = self.trace else {
            return;
        };
        if !matches!(
            msg,
            Message::Announce { .. } | Message::AnnounceReply { .. } | Message::Hello(_)
        ) {
            return;
        }
        let me = self.graph.locations[t as usize];
        let spacing = (u64::MAX / self.nodes.len() as u64) as f64;
        let rel = |x: u32| {
            let l = self.graph.locations[x as usize];
            let d = l.wrapping_sub(me) as i64 as f64 / spacing;
            format!("{x}@{d:+.2}")
        };
        let about = match msg {
            Message::AnnounceReply { address, .. } => {
                node_of(&address.key).map(|n| format!(" offer {}", rel(n)))
            }
            Message::Announce { address, .. } => {
                node_of(&address.key).map(|n| format!(" for {}", rel(n)))
            }
            _ => None,
        };
        eprintln!(
            "trace {:.1}s {} -> {} {}{}",
            self.now as f64 / 1e9,
            rel(from),
            rel(to),
            msg.kind(),
            about.unwrap_or_default()
        );
    }

    fn check(&mut self, node: u32) {
        let me = self.graph.locations[node as usize];
        let (mut pred, mut succ) = (None::<(u64, u32)>, None::<(u64, u32)>);
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.alive || i as u32 == node {
                continue;
            }
            let l = self.graph.locations[i];
            let cw = l.wrapping_sub(me);
            let ccw = me.wrapping_sub(l);
            if succ.is_none_or(|(d, _)| cw < d) {
                succ = Some((cw, i as u32));
            }
            if pred.is_none_or(|(d, _)| ccw < d) {
                pred = Some((ccw, i as u32));
            }
        }
        let links = &self.graph.links[node as usize];
        let has = |x: Option<(u64, u32)>| x.is_some_and(|(_, j)| links.contains(&j));
        let full = |x: Option<(u64, u32)>| {
            x.map_or(0, |(_, j)| self.nodes[j as usize].router.peers().routable())
        };
        let st = &self.nodes[node as usize].router.stats().opennet;
        eprintln!(
            "check {node}: peers {} pred {} ({}) succ {} ({}) announces {} connects {}",
            self.nodes[node as usize].router.peers().routable(),
            has(pred),
            full(pred),
            has(succ),
            full(succ),
            st.announces_started,
            st.connects
        );
    }

    /// `a` dialled `b`: both decide whether to keep the link, and make room if needed.
    fn try_link(&mut self, a: u32, b: u32, origin: PeerOrigin) {
        let now = self.instant();
        let (ka, kb) = (node_key(a), node_key(b));
        let ok = a != b
            && self.nodes[a as usize].alive
            && self.nodes[b as usize].alive
            && !self.graph.links[a as usize].contains(&b);
        let (la, lb) = (
            Location(self.graph.locations[a as usize]),
            Location(self.graph.locations[b as usize]),
        );
        let decisions = ok
            .then(|| {
                let (da, oa) = self.nodes[a as usize]
                    .router
                    .link_decision(now, &kb, lb, origin);
                if matches!(da, LinkDecision::Refuse | LinkDecision::Transient) {
                    return None;
                }
                let (db, ob) =
                    self.nodes[b as usize]
                        .router
                        .link_decision(now, &ka, la, PeerOrigin::Inbound);
                (db != LinkDecision::Refuse).then_some(((da, oa), (db, ob)))
            })
            .flatten();
        let Some(((da, oa), (db, ob))) = decisions else {
            if self.nodes[a as usize].alive {
                if self.nodes[b as usize].alive {
                    self.nodes[a as usize].router.connect_failed(&kb);
                } else {
                    // Nobody answers there: the peer that offered the address pays.
                    self.nodes[a as usize].router.dial_failed(&kb);
                }
                self.after(a);
                if origin == PeerOrigin::Seed && self.nodes[a as usize].router.peers().count() == 0
                {
                    // Nobody at all: try a seed again in a while, as veild's seed dialer does.
                    self.schedule(self.now + 10_000_000_000, Action::Bootstrap { node: a });
                }
            }
            return;
        };
        for (node, d) in [(a, da), (b, db)] {
            if let LinkDecision::Replace(victim) = d {
                self.unlink(node, victim.0 as u32);
            }
        }
        self.graph.links[a as usize].push(b);
        self.graph.links[b as usize].push(a);
        let meta_a = PeerMeta {
            origin: oa,
            address: Some(node_address(b)),
            routable: true,
        };
        let meta_b = PeerMeta {
            origin: ob,
            address: Some(node_address(a)),
            routable: db != LinkDecision::Transient,
        };
        self.nodes[a as usize]
            .router
            .add_peer_with(now, PeerId(u64::from(b)), lb, meta_a);
        self.nodes[b as usize]
            .router
            .add_peer_with(now, PeerId(u64::from(a)), la, meta_b);
        self.observe_link(a, b);
        self.after(a);
        self.after(b);
    }

    /// Both ends of a new link time its round trip.
    fn observe_link(&mut self, a: u32, b: u32) {
        let rtt = Duration::from_nanos(2 * self.latency.between(a, b));
        self.nodes[a as usize]
            .router
            .observe_rtt(PeerId(u64::from(b)), rtt);
        self.nodes[b as usize]
            .router
            .observe_rtt(PeerId(u64::from(a)), rtt);
    }

    /// Closes the link between `a` and `b` on both sides.
    fn unlink(&mut self, a: u32, b: u32) {
        let now = self.instant();
        self.graph.links[a as usize].retain(|&x| x != b);
        self.graph.links[b as usize].retain(|&x| x != a);
        for (x, y) in [(a, b), (b, a)] {
            if self.nodes[x as usize].alive {
                self.nodes[x as usize]
                    .router
                    .remove_peer(now, PeerId(u64::from(y)));
                self.after(x);
                if self.params.topology == crate::topology::Topology::Opennet
                    && self.nodes[x as usize].router.peers().count() == 0
                {
                    // Alone again: back to a seed, as veild's seed dialer does.
                    self.schedule(self.now + 10_000_000_000, Action::Bootstrap { node: x });
                }
            }
        }
    }

    fn random_live_node(&mut self) -> Option<u32> {
        let n = self.nodes.len();
        for _ in 0..1000 {
            let i = self.rng.gen_range(0..n);
            if self.nodes[i].alive {
                return Some(i as u32);
            }
        }
        None
    }

    fn start_request(&mut self, key: u32, index: u32) {
        let Some(origin) = self.random_live_node() else {
            return;
        };
        self.start_request_from(origin, key, index, None);
    }

    fn start_request_from(&mut self, origin: u32, key: u32, index: u32, tunnel: Option<u64>) {
        let now = self.instant();
        let routing_key = self.keys.routing[key as usize];
        self.records.push(RequestRecord {
            index,
            origin,
            key,
            start: self.now,
            end: None,
            outcome: RequestOutcome::Pending,
            hops: 0,
            messages: 0,
        });
        let record = (self.records.len() - 1) as u32;
        self.tick += 1;
        let (router, mut host) = self.nodes[origin as usize].router_and_host(
            &self.keys,
            self.params.full_verify,
            self.tick,
        );
        let id = router.start_request_in(now, routing_key, None, tunnel, &mut host);
        self.by_id.insert(id, record);
        self.after(origin);
    }

    /// Records what a message says about hops and about who started a request.
    fn observe(&mut self, from: u32, to: u32, msg: &Message) {
        match msg {
            Message::Insert { id, htl, .. } => {
                if let Some(&key) = self.upload_ids.get(id) {
                    self.insert_observations.push(Observation {
                        at: to,
                        from,
                        record: key,
                        htl: Some(htl.0),
                    });
                }
            }
            Message::InsertWalk { id, .. } => {
                if let Some(&key) = self.upload_ids.get(id) {
                    self.insert_observations.push(Observation {
                        at: to,
                        from,
                        record: key,
                        htl: None,
                    });
                }
            }
            Message::Walk { id, .. } => {
                if let (Some(&record), Some(_)) = (self.by_id.get(id), &self.downloads) {
                    self.observations.push(Observation {
                        at: to,
                        from,
                        record,
                        htl: None,
                    });
                }
            }
            Message::Request { id, htl, .. } => {
                let Some(&r) = self.by_id.get(id) else {
                    return;
                };
                if self.downloads.is_some() {
                    self.observations.push(Observation {
                        at: to,
                        from,
                        record: r,
                        htl: Some(htl.0),
                    });
                }
                let truth = self.records[r as usize].origin == from;
                let guess = htl.0 >= self.params.max_htl;
                let c = &mut self.counters;
                match (guess, truth) {
                    (true, true) => c.guess_true_pos += 1,
                    (true, false) => c.guess_false_pos += 1,
                    (false, true) => c.guess_false_neg += 1,
                    (false, false) => {}
                }
            }
            Message::Data { id, .. } => {
                if let Some(&r) = self.by_id.get(id) {
                    self.records[r as usize].hops += 1;
                }
            }
            _ => {}
        }
    }

    /// Moves a node's outputs into the heap and its store, and re-arms its timer.
    fn after(&mut self, n: u32) {
        if self.params.walk_probability > 0.0 {
            // A walk that ended here goes on under a fresh id: follow it before its
            // first message is counted (the event sits beside that message).
            for ev in self.nodes[n as usize].router.pending_events() {
                if let Event::WalkEnded { walk, greedy } = ev {
                    if let Some(&r) = self.by_id.get(walk) {
                        self.by_id.insert(*greedy, r);
                    }
                    if let Some(&k) = self.upload_ids.get(walk) {
                        self.upload_ids.insert(*greedy, k);
                    }
                }
            }
        }
        while let Some((peer, msg)) = self.nodes[n as usize].router.poll_transmit() {
            let to = peer.0 as u32;
            if let Message::Request { id, .. } | Message::Walk { id, .. } = &msg {
                if let Some(&r) = self.by_id.get(id) {
                    self.records[r as usize].messages += 1;
                }
            }
            self.counters.messages += 1;
            *self.counters.by_kind.entry(msg.kind()).or_default() += 1;
            let at = self.now + self.latency.between(n, to);
            self.schedule(at, Action::Deliver { from: n, to, msg });
        }
        while let Some(ev) = self.nodes[n as usize].router.poll_event() {
            self.on_event(n, ev);
        }
        while let Some((a, b)) = self.deferred.pop() {
            self.unlink(a, b);
        }
        let node = &mut self.nodes[n as usize];
        if let Some(t) = node.router.poll_timeout() {
            let at = t.saturating_duration_since(self.base).as_nanos() as Nanos;
            let at = at.max(self.now);
            if node.timer.is_none_or(|old| at < old) {
                node.timer = Some(at);
                self.schedule(at, Action::Timer { node: n });
            }
        }
    }

    fn on_event(&mut self, n: u32, ev: Event) {
        match ev {
            Event::Store {
                key,
                block,
                placement,
            } => {
                // Every block a router stores was verified: it is one of the keys.
                let Some(i) = self.keys.index_of(&key) else {
                    return;
                };
                debug_assert!(self.keys.is_canonical(&key, &block) || self.params.full_verify);
                let node = &mut self.nodes[n as usize];
                match placement {
                    Placement::Store => {
                        node.store.insert(i);
                    }
                    Placement::Cache => {
                        if node.cache.len() >= self.params.cache_size
                            && !node.cache.contains_key(&i)
                        {
                            // Least recently used out; ticks are unique, so no ties.
                            if let Some(old) =
                                node.cache.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
                            {
                                node.cache.remove(&old);
                            }
                        }
                        self.tick += 1;
                        node.cache.insert(i, self.tick);
                    }
                }
            }
            Event::RequestFinished { id, result, .. } => {
                let Some(r) = self.by_id.remove(&id) else {
                    return;
                };
                let rec = &mut self.records[r as usize];
                rec.end = Some(self.now);
                rec.outcome = match result {
                    Ok(f) if f.from.is_none() => RequestOutcome::LocalHit,
                    Ok(_) => RequestOutcome::Found,
                    Err(RequestFailure::DataNotFound) => RequestOutcome::DataNotFound,
                    Err(RequestFailure::RouteNotFound) => RequestOutcome::RouteNotFound,
                    Err(RequestFailure::Overloaded) => RequestOutcome::Overloaded,
                    Err(_) => RequestOutcome::TimedOut,
                };
                // Keep watching late messages of finished requests out of the figures.
            }
            Event::InsertFinished { result: Ok(_), .. } => self.counters.inserts_ok += 1,
            Event::Connect { address, origin } => {
                match node_of(&address.key).filter(|&j| (j as usize) < self.nodes.len()) {
                    Some(j) => {
                        // A dial takes a handshake's round trip.
                        let at = self.now + 2 * self.latency.between(n, j);
                        self.schedule(
                            at,
                            Action::Link {
                                from: n,
                                to: j,
                                origin,
                            },
                        );
                    }
                    None => self.nodes[n as usize].router.dial_failed(&address.key),
                }
            }
            Event::Disconnect { peer, .. } => self.deferred.push((n, peer.0 as u32)),
            Event::PeerMisbehaved { .. } => self.counters.misbehaviour += 1,
            Event::LocationChanged { location } => self.graph.locations[n as usize] = location.0,
            _ => {}
        }
    }

    /// A node fails or leaves: every live neighbour drops the link, and so does it.
    fn take_down(&mut self, node: u32) {
        if !self.nodes[node as usize].alive {
            return;
        }
        let now = self.instant();
        self.nodes[node as usize].alive = false;
        // Its own requests in flight are lost with it (not routing failures).
        let records = &mut self.records;
        self.by_id.retain(|_, r| {
            let rec = &mut records[*r as usize];
            if rec.origin == node {
                rec.outcome = RequestOutcome::Lost;
                rec.end = Some(self.now);
                false
            } else {
                true
            }
        });
        let links = self.graph.links[node as usize].clone();
        for &m in &links {
            if self.nodes[m as usize].alive {
                self.nodes[m as usize]
                    .router
                    .remove_peer(now, PeerId(u64::from(node)));
                self.after(m);
            }
            self.nodes[node as usize]
                .router
                .remove_peer(now, PeerId(u64::from(m)));
        }
        // Its own requests end now; nobody hears about their replies.
        while self.nodes[node as usize].router.poll_transmit().is_some() {}
        while let Some(ev) = self.nodes[node as usize].router.poll_event() {
            self.on_event(node, ev);
        }
        self.nodes[node as usize].timer = None;
    }

    /// Keeps `nodes` out of the network from the start (their links are dropped until
    /// an [`Action::Join`] brings them up): newcomers with empty stores, for churn.
    pub fn hold_back(&mut self, nodes: &[u32]) {
        for &n in nodes {
            self.take_down(n);
        }
    }

    /// A node that left comes back and links to its live friends again.
    fn bring_up(&mut self, node: u32) {
        if self.nodes[node as usize].alive {
            return;
        }
        let now = self.instant();
        self.nodes[node as usize].alive = true;
        if self.params.topology == crate::topology::Topology::Opennet {
            // It rejoins from the peers it saved, like a restarted veild.
            let links = std::mem::take(&mut self.graph.links[node as usize]);
            for m in links {
                self.graph.links[m as usize].retain(|&x| x != node);
                if self.nodes[m as usize].alive {
                    self.nodes[m as usize]
                        .router
                        .remove_peer(now, PeerId(u64::from(node)));
                    self.after(m);
                    self.try_link(node, m, PeerOrigin::Announcement);
                }
            }
            return;
        }
        let loc = Location(self.graph.locations[node as usize]);
        let links = self.graph.links[node as usize].clone();
        for &m in &links {
            if self.nodes[m as usize].alive {
                let mloc = Location(self.graph.locations[m as usize]);
                self.nodes[node as usize]
                    .router
                    .add_peer(now, PeerId(u64::from(m)), mloc);
                self.nodes[m as usize]
                    .router
                    .add_peer(now, PeerId(u64::from(node)), loc);
                self.observe_link(node, m);
            }
        }
    }

    /// Which of the first `count` keys some live node other than its publisher still
    /// stores long-term (caches not counted), and the mean long-term store size over all
    /// nodes, in blocks (publishers' own copies included).
    pub fn storage(&self, count: usize) -> (Vec<bool>, f64) {
        let mut live = vec![false; count];
        let mut total = 0usize;
        for (j, n) in self.nodes.iter().enumerate() {
            total += n.store.len();
            if n.alive {
                for &i in &n.store {
                    let i = i as usize;
                    if i < count && self.publisher[i] != j as u32 {
                        live[i] = true;
                    }
                }
            }
        }
        (live, total as f64 / self.nodes.len().max(1) as f64)
    }

    /// The live nodes that hold key `key` in their store or their cache.
    pub fn holders(&self, key: usize) -> Vec<u32> {
        let k = key as u32;
        (0..self.nodes.len() as u32)
            .filter(|&j| {
                let n = &self.nodes[j as usize];
                n.alive && (n.store.contains(&k) || n.cache.contains_key(&k))
            })
            .collect()
    }

    /// Drops requests whose originator left before they finished.
    pub fn finish(&mut self) {
        for (_, r) in self.by_id.drain() {
            let rec = &mut self.records[r as usize];
            if rec.outcome == RequestOutcome::Pending {
                rec.outcome = RequestOutcome::Lost;
            }
        }
    }
}
