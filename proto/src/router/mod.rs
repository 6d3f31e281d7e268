//! The routing core: a sans-IO state machine that routes requests and inserts greedily
//! by key closeness, exactly as `veild` and `veil-sim` both run it.
//!
//! The router never reads a clock, sleeps, spawns or touches a socket. Time enters as a
//! value, messages and events leave as values, and all randomness comes from a ChaCha8
//! generator seeded by [`RouterConfig::rng_seed`], so a run replays bit for bit.
//!
//! # Driving it
//! Inputs:
//! - [`Router::add_peer`] / [`Router::remove_peer`] when a link comes up or goes down
//!   (the shell assigns [`PeerId`]s; an id always names the same remote node);
//! - [`Router::handle_message`] for every request-related message a peer sends
//!   (`Hello`, `Ping`, `Pong` and `PeerInfo` are the shell's business and are ignored);
//! - [`Router::start_request`] / [`Router::start_insert`] for the local user;
//! - [`Router::handle_timeout`] once the instant from [`Router::poll_timeout`] has passed
//!   (calling it early is harmless).
//!
//! After any input, drain the outputs: [`Router::poll_transmit`] until `None` (messages to
//! send, in order), [`Router::poll_event`] until `None` (finished requests, blocks to
//! store, misbehaving peers), then re-arm the timer from [`Router::poll_timeout`].
//!
//! # Time
//! Time is [`std::time::Instant`]. A tokio shell has it for free (`tokio::time::Instant`
//! converts into it), and a discrete-event simulator makes virtual instants as one fixed
//! base instant plus a virtual offset: 16 bytes, plain integer arithmetic, and nothing
//! in the router ever compares against the real clock. Time must never go backwards.
//!
//! # Rules (see docs/routing.md for the reasoning)
//! - Each request or insert has per-node state keyed by its random [`RequestId`]. A node
//!   forwards to the connected peer closest to the key's location that it has not tried
//!   for that id and that is not the sender (on opennet, a peer counts as close as the
//!   closest of the neighbours it announced with `Neighbours`: friend-of-a-friend); peers in overload back-off are used only when
//!   nothing else is left. An id seen within [`RouterConfig::seen_ttl`] is answered
//!   `RejectedLoop`.
//! - HTL ("hops to live") in a message is the number of hops left at its receiver. Every
//!   attempt to forward spends one, so HTL bounds the nodes a request visits,
//!   backtracking included: the first attempt at a node decrements at the maximum and at
//!   1 only if the flag drawn once for the link the request arrived on says so
//!   ([`HtlPolicy::Probabilistic`]); later attempts always decrement, except the one
//!   right after a peer refused without spending hops (loop, overload, link gone). The
//!   originator's first attempt carries the start HTL as is, so under
//!   [`HtlPolicy::Always`] a neighbour that sees the maximum knows it talks to the
//!   originator, and under the probabilistic policy it cannot be sure.
//! - A forwarded request waits `hop_timeout × (htl_sent + 1)` for the reply, so the budget
//!   shrinks with the hops left downstream. A node that accepted a peer's request at HTL
//!   `h` answers within `hop_timeout × h`: once that passes it starts no new attempt,
//!   stops waiting and answers `RouteNotFound` with the hops it has left. Its upstream
//!   waits one `hop_timeout` longer, so a live peer is never timed out (given a round
//!   trip under `hop_timeout`) and a subtree is not explored twice in parallel (except
//!   briefly where HTL stays at the maximum for a hop).
//! - Backtracking: `RouteNotFound` (own HTL becomes the smaller of own and returned),
//!   `RejectedLoop`, `RejectedOverload` (and back off that peer), a timeout (back off that
//!   peer too) and a bad block (the peer misbehaved) all move on to the next peer while
//!   HTL remains. HTL 0 ends a request with `DataNotFound`; no peer left gives
//!   `RouteNotFound` upstream. `DataNotFound` ends a request. A late `Data` from a peer
//!   that timed out still completes the request.
//! - Data is verified against the key at every hop before it is cached or forwarded (an
//!   insert of a block held here byte for byte is compared with that verified copy
//!   instead of hashed). Every node on the return path caches it unless its HTL for that
//!   request is above `max − 2`; inserts are cached at `HTL ≤ max − 3`. A node never caches or stores for
//!   its own user's requests and inserts.
//! - Replication: an insert approaches its key under HTL until it reaches a sink (a node
//!   that no peer, the sender included, beats on closeness) or HTL runs out. That node
//!   stores it long-term and the replica walk begins: the insert goes on through the
//!   closest untried peers, each storing it, until `replicas` nodes on the path hold it
//!   (`stored` in the message counts them); then `InsertReply` travels back. During the
//!   walk HTL stays as it was and the replica count bounds the hops, so an insert that
//!   reaches its key late still leaves its copies.
//! - For an insert, running out of peers is also the end of its route: the originator
//!   reports success with [`InsertReport::route_exhausted`] set.

mod failures;
mod opennet;
mod peers;
mod request;
mod spread;
mod swapping;
#[cfg(test)]
mod tests;
mod time;
mod walk;

use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Htl, Message, RequestId, MAX_REPLICAS};
use crate::ring::Location;
use crate::swap;
use opennet::Opennet;
pub use opennet::{LinkDecision, OpennetConfig, OpennetStats, PeerOrigin};
pub use peers::PeerMeta;
use peers::PeerTable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use request::{Kind, Req, Seen};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use swapping::{SwapConfig, SwapStats, MAX_RELAYED as MAX_SWAPS_RELAYED};

/// An opaque handle the shell assigns to a link. It always names the same remote node:
/// after [`Router::remove_peer`] it may be added again for that node, never for another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerId(pub u64);

/// How HTL is decremented at its extremes.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum HtlPolicy {
    /// Every forwarding node decrements. Simple, and it tells a neighbour who sees the
    /// maximum HTL that it talks to the originator; kept for comparison.
    Always,
    /// Freenet's rule: for each link the router draws, once, whether requests arriving
    /// over it are decremented at the maximum (with `decrement_at_max`) and at 1 (with
    /// `decrement_at_one`).
    Probabilistic {
        /// Probability that a link decrements at the maximum HTL.
        decrement_at_max: f64,
        /// Probability that a link decrements at HTL 1.
        decrement_at_one: f64,
    },
}

impl Default for HtlPolicy {
    fn default() -> HtlPolicy {
        HtlPolicy::Probabilistic {
            decrement_at_max: 0.5,
            decrement_at_one: 0.25,
        }
    }
}

/// The router's tunables.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// Largest HTL; requests start here. Default 18.
    pub max_htl: Htl,
    /// HTL decrement policy. Default probabilistic (0.5 at the maximum, 0.25 at 1).
    pub htl_policy: HtlPolicy,
    /// Per-hop base timeout: a request forwarded with HTL `h` times out after
    /// `hop_timeout × (h + 1)`. Default 2 s.
    pub hop_timeout: Duration,
    /// How long a peer that rejected for overload or timed out is avoided, the first
    /// time; each back-off in a row doubles it, up to `max_backoff`. Default 5 s.
    pub backoff: Duration,
    /// The longest back-off. Default 2 min.
    pub max_backoff: Duration,
    /// Most requests and inserts a single peer may have running here at once; more are
    /// answered `RejectedOverload`. Default 128: an anonymity walk carries a whole
    /// download or upload over one link (a client keeps up to 64 inserts in flight),
    /// and a relay on it may use half (the forwarding window).
    pub max_inflight_per_peer: usize,
    /// Requests and inserts from all peers together that this node takes on before it
    /// holds each peer to its fair share (this divided by the number of peers): past
    /// it, a peer above its share is answered `RejectedOverload` while the others are
    /// still served. Default 512.
    pub max_inflight: usize,
    /// The same bound for the bytes of insert blocks held while their inserts run.
    /// Default 16 MiB (512 blocks).
    pub max_inflight_bytes: u64,
    /// How long a key whose search failed here is remembered (the failure table: quick
    /// answers, skipped peers, and offers when the block turns up). Default 2 min.
    pub failure_ttl: Duration,
    /// A peer that is sent this many `RejectedOverload`s within one `backoff` period
    /// ignores them (a router backs off a peer that rejects it): it is flooding and is
    /// reported as misbehaving. Default 2,048 (400 a second for 5 s).
    pub flood_rejections: u32,
    /// How long a request id is remembered for loop detection. Default 10 min.
    pub seen_ttl: Duration,
    /// Seed of the router's random generator (request ids, per-link HTL flags).
    pub rng_seed: u64,
    /// Nodes near its key that an insert is stored on, unless its originator asks for
    /// another number (capped at [`MAX_REPLICAS`]). Default [`DEFAULT_REPLICAS`].
    pub replicas: u8,
    /// Opennet: announcement, path folding and peer replacement (off by default).
    pub opennet: OpennetConfig,
    /// Darknet location swapping (off by default).
    pub swap: SwapConfig,
    /// The anonymity walk ([`walk`](self) module; docs/anonymity.md): the chance that a
    /// node on a request's walk passes it on rather than ending it (Crowds' forwarding
    /// probability; the originator always takes the first hop). 0 turns the walk off.
    /// Default [`DEFAULT_WALK_PROBABILITY`].
    pub walk_probability: f64,
    /// How long a router-chosen tunnel lasts, for local requests whose user names none:
    /// requests within it share one walk. Default 10 min.
    pub tunnel_lifetime: Duration,
    /// Friend-of-a-friend routing without opennet (darknet): send peers our peers'
    /// locations and route by theirs (`opennet.foaf` and `opennet.neighbours_interval`
    /// say how). Opennet does this whenever `opennet.foaf`. Default false.
    pub neighbour_lists: bool,
    /// Latency-aware next hops: a request may go to any peer whose distance to the key is
    /// within this factor of the closest peer's (and below this node's own, so every
    /// hop makes progress), and goes to the one with the best
    /// measured round trip and success among them ([`Router::observe_rtt`] feeds the
    /// round trips). 1.0 is pure greedy routing. Inserts always route greedily, so
    /// where blocks are stored does not change. Default [`DEFAULT_LATENCY_FACTOR`].
    pub latency_factor: f64,
    /// Latency-aware routing: what each doubling of a candidate's distance to the key
    /// over the closest peer's costs it, as a share of the mean round trip of this
    /// node's links (a farther peer leaves more of the way to go). Default
    /// [`DEFAULT_LATENCY_PROGRESS_WEIGHT`].
    pub latency_progress_weight: f64,
    /// Spread inserts: a local insert at full HTL leaves by this many routes (at most
    /// its replicas), each through its own walk (one hop at least, even with the
    /// anonymity walk off) and each storing an equal share of the replicas, so that in
    /// a roughly embedded friend graph the copies land where requests from anywhere end
    /// (docs/routing.md, darknet). 1: one route, every copy next to the key. Default 1;
    /// [`DARKNET_INSERT_ROUTES`] is the darknet's.
    pub insert_routes: u8,
}

/// Insert routes of a darknet node (`RouterConfig::insert_routes`): one per replica,
/// chosen by the measurement in docs/routing.md.
pub const DARKNET_INSERT_ROUTES: u8 = DEFAULT_REPLICAS;

/// Default progress weight of latency-aware routing, chosen with the factor by the sweep
/// in docs/routing.md.
pub const DEFAULT_LATENCY_PROGRESS_WEIGHT: f64 = 0.3;

/// Default latency factor: chosen by the sweep in docs/routing.md (10,000 simulated
/// nodes on the Internet-like latency model).
pub const DEFAULT_LATENCY_FACTOR: f64 = 32.0;

/// Default walk probability: the least that kept a passive adversary's guesses below
/// the bars of docs/anonymity.md, measured there with its cost in hops.
pub const DEFAULT_WALK_PROBABILITY: f64 = 0.75;

/// Default replicas per block: the least count that keeps ≥ 97% of distinct blocks
/// fetchable after half of a 10,000-node network fails at once (measured in
/// docs/durability.md, with its storage cost).
pub const DEFAULT_REPLICAS: u8 = 7;

/// Default replicas for a document's top and index blocks, which every reader of the
/// document needs: twice the data blocks' (docs/durability.md).
pub const DEFAULT_INDEX_REPLICAS: u8 = 14;

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            max_htl: Htl::DEFAULT_MAX,
            htl_policy: HtlPolicy::default(),
            hop_timeout: Duration::from_secs(2),
            backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(120),
            max_inflight_per_peer: 128,
            max_inflight: 512,
            max_inflight_bytes: 16 << 20,
            flood_rejections: 2048,
            failure_ttl: Duration::from_secs(120),
            seen_ttl: Duration::from_secs(600),
            rng_seed: 0,
            replicas: DEFAULT_REPLICAS,
            opennet: OpennetConfig::default(),
            swap: SwapConfig::default(),
            walk_probability: DEFAULT_WALK_PROBABILITY,
            tunnel_lifetime: Duration::from_secs(600),
            neighbour_lists: false,
            latency_factor: DEFAULT_LATENCY_FACTOR,
            latency_progress_weight: DEFAULT_LATENCY_PROGRESS_WEIGHT,
            insert_routes: 1,
        }
    }
}

/// Where a block sits in a node's storage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Placement {
    /// The long-term store: this node is a sink for the key.
    Store,
    /// The LRU cache of blocks passing by.
    Cache,
}

/// Lookups into the node's storage. Writes leave the router as [`Event::Store`].
pub trait BlockStore {
    /// The block under `key`, if held, and where it is held.
    fn get(&mut self, key: &RoutingKey) -> Option<(Block, Placement)>;

    /// Whether `block` is the block named by `key`. The default hashes it
    /// ([`Block::verify`]); a daemon must keep it. A simulator, whose blocks come from
    /// no adversary, may answer from a memo.
    fn verify(&mut self, key: &RoutingKey, block: &Block) -> bool {
        block.verify(key).is_ok()
    }
}

/// A fetched block and where it came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fetched {
    /// The block, verified against the key.
    pub block: Block,
    /// The peer that delivered it, or `None` when the local store had it.
    pub from: Option<PeerId>,
}

/// Why a local request failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The request ran out of HTL without finding the block.
    #[error("data not found")]
    DataNotFound,
    /// Every peer was tried with HTL left: the network here is too sparse.
    #[error("route not found")]
    RouteNotFound,
    /// Every peer tried was overloaded.
    #[error("peers overloaded")]
    Overloaded,
    /// The last peer tried did not answer in time and no other was left.
    #[error("timed out")]
    TimedOut,
}

/// How a successful insert ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InsertReport {
    /// True if the route ran out of peers before HTL ran out (a small or sparse
    /// network); the block still sits on every node it reached.
    pub route_exhausted: bool,
}

/// Why a local insert failed: no peer took the block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InsertFailure {
    /// No peer accepted the insert (none connected, or all rejected it as a loop).
    #[error("route not found")]
    RouteNotFound,
    /// Every peer tried was overloaded.
    #[error("peers overloaded")]
    Overloaded,
    /// The last peer tried did not answer in time and no other was left.
    #[error("timed out")]
    TimedOut,
    /// A different block is already stored under this (signed) key: the first stays.
    #[error("collision: another block is already published under this key")]
    Collision,
}

/// What the router tells its shell.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A request started by [`Router::start_request`] finished.
    RequestFinished {
        /// Its id.
        id: RequestId,
        /// The key asked for.
        key: RoutingKey,
        /// The block or why not.
        result: Result<Fetched, RequestFailure>,
    },
    /// An insert started by [`Router::start_insert`] finished.
    InsertFinished {
        /// Its id.
        id: RequestId,
        /// The block's key.
        key: RoutingKey,
        /// How it ended.
        result: Result<InsertReport, InsertFailure>,
    },
    /// Keep this verified block: in the long-term store or the cache.
    Store {
        /// Its routing key.
        key: RoutingKey,
        /// The block, already verified against `key`.
        block: Block,
        /// Where to keep it.
        placement: Placement,
    },
    /// A peer broke the protocol (bad block, reply to an id it was never sent). The
    /// shell decides on penalties; the router has already ignored the message.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: &'static str,
    },
    /// Opennet: dial this node, and offer the link with this origin to
    /// [`Router::link_decision`] once it is up. On failure, tell
    /// [`Router::connect_failed`].
    Connect {
        /// Where to dial.
        address: crate::message::PeerAddress,
        /// Why.
        origin: PeerOrigin,
    },
    /// Darknet: this node swapped and is now at `location` (its peers are told).
    LocationChanged {
        /// The new location.
        location: Location,
    },
    /// An anonymity walk ended here and its request or insert is routed on under a
    /// fresh id (answers still go upstream under the walk's). For traces and for a
    /// simulator that follows requests; a daemon needs do nothing.
    WalkEnded {
        /// The id the walk came with.
        walk: RequestId,
        /// The id of the greedy search from here.
        greedy: RequestId,
    },
    /// Opennet: close this link (then call [`Router::remove_peer`]).
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why, for logs.
        reason: &'static str,
    },
}

/// Counters for status pages, metrics and the simulator.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct RouterStats {
    /// Requests received from peers.
    pub requests_received: u64,
    /// Inserts received from peers.
    pub inserts_received: u64,
    /// Request messages sent (first tries and retries).
    pub requests_forwarded: u64,
    /// Insert messages sent.
    pub inserts_forwarded: u64,
    /// Peers' requests answered from the long-term store.
    pub served_from_store: u64,
    /// Peers' requests answered from the cache.
    pub served_from_cache: u64,
    /// Local requests answered by the local store or cache.
    pub local_hits: u64,
    /// Local requests started.
    pub local_requests: u64,
    /// Local requests that found their block.
    pub local_requests_succeeded: u64,
    /// Local inserts started.
    pub local_inserts: u64,
    /// Local inserts that completed.
    pub local_inserts_succeeded: u64,
    /// `RejectedLoop` sent.
    pub rejected_loop: u64,
    /// `RejectedOverload` sent.
    pub rejected_overload: u64,
    /// Peers reported as flooding: they kept sending after `flood_rejections`
    /// rejections in one back-off period.
    pub flooders: u64,
    /// Per-hop timeouts.
    pub timeouts: u64,
    /// Requests answered `RouteNotFound` because their answer budget ran out.
    pub budget_expired: u64,
    /// Blocks handed out to be cached.
    pub cached: u64,
    /// Blocks handed out to the long-term store.
    pub stored: u64,
    /// Protocol violations by peers.
    pub misbehaviour: u64,
    /// Blocks from peers refused because they fail verification (a wrong hash, a forged
    /// or altered signed block); each also counts as misbehaviour.
    pub bad_blocks: u64,
    /// Inserts refused because a different block already sits under their (signed)
    /// key, here or further on.
    pub collisions: u64,
    /// Peers' requests declined at once (`RouteNotFound`, hops unspent): their key was
    /// just searched for from here in vain (the failure table).
    pub recently_failed: u64,
    /// Blocks offered to peers that had asked for them in vain.
    pub offers_sent: u64,
    /// Offered blocks taken (asked for here before, and verified).
    pub offers_taken: u64,
    /// Offers ignored: not asked for here, or asked too long ago.
    pub offers_ignored: u64,
    /// Opennet counters.
    pub opennet: OpennetStats,
    /// Location-swapping counters (darknet).
    pub swap: SwapStats,
    /// Anonymity walks this node's user started.
    pub walks_started: u64,
    /// Walks passed on for other nodes.
    pub walks_relayed: u64,
    /// Walks that ended here (greedy routing started here).
    pub walks_ended: u64,
}

/// A configured probability made safe for `gen_bool`: clamped to [0, 1], NaN as 0.5.
fn probability(p: f64) -> f64 {
    if p.is_nan() {
        0.5
    } else {
        p.clamp(0.0, 1.0)
    }
}

/// One node's routing state machine. See the module documentation for the contract.
#[derive(Clone, Debug)]
pub struct Router {
    /// Shared by every router of a simulated network (a million copies of it were a
    /// gigabyte); see [`Router::with_shared_config`].
    config: Arc<RouterConfig>,
    location: Location,
    rng: ChaCha8Rng,
    peers: PeerTable,
    requests: BTreeMap<RequestId, Box<Req>>,
    /// Deadlines in order. Entries whose request moved on are dropped lazily (see
    /// `tidy_timers`), so the first entry is always the next real deadline.
    timers: BTreeSet<(Instant, RequestId)>,
    seen: Seen,
    failures: failures::FailureTable,
    transmits: VecDeque<(PeerId, Message)>,
    events: VecDeque<Event>,
    stats: RouterStats,
    opennet: Opennet,
    swapping: swapping::Swapping,
    /// Keys this node's walk choices ([`walk`](self) module).
    walk_secret: [u8; 32],
    /// The tunnel for local requests whose user named none, and until when it holds.
    tunnel: Option<(u64, Instant)>,
    /// Spread inserts' routes in flight, by route id: the id their shell knows.
    spreads: std::collections::HashMap<RequestId, RequestId>,
    /// Spread inserts in flight, by the id their shell knows.
    spread_parents: std::collections::HashMap<RequestId, spread::Spread>,
    /// Keys stored for an insert moments ago (sibling routes do not count twice).
    recent: spread::Recent,
}

impl Router {
    /// A router at `location` with no peers.
    pub fn new(config: RouterConfig, location: Location) -> Router {
        let seed = config.rng_seed;
        Router::with_shared_config(Arc::new(config), seed, location)
    }

    /// A router at `location` with no peers, on a configuration it may share with
    /// others (a simulator's whole network), its random choices seeded by `rng_seed`
    /// instead of `config.rng_seed`: the very router [`Router::new`] makes from the
    /// same settings with that seed.
    pub fn with_shared_config(
        config: Arc<RouterConfig>,
        rng_seed: u64,
        location: Location,
    ) -> Router {
        Router {
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            walk_secret: Router::walk_secret(rng_seed),
            config,
            location,
            peers: PeerTable::default(),
            requests: BTreeMap::new(),
            timers: BTreeSet::new(),
            seen: Seen::default(),
            failures: failures::FailureTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RouterStats::default(),
            opennet: Opennet::default(),
            swapping: swapping::Swapping::default(),
            tunnel: None,
            spreads: Default::default(),
            spread_parents: Default::default(),
            recent: Default::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Sets [`RouterConfig::latency_factor`] from now on: the next request's next hop is
    /// chosen by it; inserts, which always route greedily, are not affected. The
    /// simulator runs a workload's inserts once and then routes its requests both ways
    /// from two copies of the same network.
    pub fn set_latency_factor(&mut self, factor: f64) {
        Arc::make_mut(&mut self.config).latency_factor = factor;
    }

    /// Replaces the configuration from the next input on, as
    /// [`Router::set_latency_factor`] does one setting (the seed a router was made
    /// with stays its own): a simulator switches a whole network to one new shared
    /// configuration so.
    pub fn set_shared_config(&mut self, config: Arc<RouterConfig>) {
        self.config = config;
    }

    /// The configuration, to share with others.
    pub fn shared_config(&self) -> &Arc<RouterConfig> {
        &self.config
    }

    /// This node's location.
    pub fn location(&self) -> Location {
        self.location
    }

    /// Moves this node (location swapping).
    pub fn set_location(&mut self, location: Location) {
        self.location = location;
    }

    /// Adds a routable friend link, drawing its HTL flags. Adding a known peer only
    /// updates its location. [`Router::add_peer_with`] says more about the link.
    pub fn add_peer(&mut self, now: Instant, peer: PeerId, location: Location) {
        self.add_peer_with(now, peer, location, PeerMeta::friend());
    }

    /// The HTL flags of a new link.
    fn draw_htl_flags(&mut self) -> (bool, bool) {
        match self.config.htl_policy {
            HtlPolicy::Always => (true, true),
            HtlPolicy::Probabilistic {
                decrement_at_max,
                decrement_at_one,
            } => (
                self.rng.gen_bool(probability(decrement_at_max)),
                self.rng.gen_bool(probability(decrement_at_one)),
            ),
        }
    }

    /// Drops a link: requests it sent are abandoned, requests waiting on it move on.
    pub fn remove_peer(&mut self, now: Instant, peer: PeerId) {
        self.expire(now);
        if !self.peers.remove(peer) {
            return;
        }
        self.failures.forget_peer(peer);
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.source == Some(peer) || r.waiting == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(req) = self.requests.get_mut(&id) else {
                continue;
            };
            if req.source == Some(peer) {
                // Nobody to answer; the id stays in `seen` so late replies are quiet.
                self.stop_waiting(id);
                self.requests.remove(&id);
            } else {
                req.deadline = None;
                req.free_next = true;
                self.stop_waiting(id);
                self.advance(now, id);
            }
        }
        self.peers_changed(now);
        self.tidy_timers();
    }

    /// One round-trip sample of `peer`'s link (a ping answered, a handshake timed), for
    /// latency-aware routing. Unknown peers are ignored.
    pub fn observe_rtt(&mut self, peer: PeerId, rtt: Duration) {
        self.peers.observe_rtt(peer, rtt);
    }

    /// `peer`'s smoothed round-trip time and the decaying share of forwarded requests it
    /// answered with data, if it is a peer (the RTT is `None` until a sample came).
    pub fn peer_timing(&self, peer: PeerId) -> Option<(Option<Duration>, f32)> {
        self.peers.get(peer).map(|p| {
            let rtt = (p.rtt_us > 0).then(|| Duration::from_micros(u64::from(p.rtt_us)));
            (rtt, p.success)
        })
    }

    /// The number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The number of routable peers (transient links left out).
    pub fn routable_peer_count(&self) -> usize {
        self.peers.routable()
    }

    /// The number of requests and inserts this node is working on.
    pub fn active_requests(&self) -> usize {
        self.requests.len()
    }

    /// Starts a request for `key` at `htl` (default and cap: the maximum). The local
    /// store is asked first. The answer comes as [`Event::RequestFinished`].
    pub fn start_request(
        &mut self,
        now: Instant,
        key: RoutingKey,
        htl: Option<Htl>,
        store: &mut impl BlockStore,
    ) -> RequestId {
        self.start_request_in(now, key, htl, None, store)
    }

    /// As [`Router::start_request`], on the anonymity walk of `tunnel`: give every
    /// request of one download the same tunnel (a random one per download), so they all
    /// leave this node the same way (docs/anonymity.md). `None` takes the router's own
    /// tunnel of the moment. Without the walk (`walk_probability` 0), or with an HTL
    /// below the maximum (a search its user bounded, `0` for this node alone), there is
    /// no walk and the tunnel is ignored.
    pub fn start_request_in(
        &mut self,
        now: Instant,
        key: RoutingKey,
        htl: Option<Htl>,
        tunnel: Option<u64>,
        store: &mut impl BlockStore,
    ) -> RequestId {
        self.expire(now);
        self.stats.local_requests += 1;
        let id = self.fresh_id();
        if let Some((block, _)) = store.get(&key) {
            self.stats.local_hits += 1;
            self.stats.local_requests_succeeded += 1;
            self.events.push_back(Event::RequestFinished {
                id,
                key,
                result: Ok(Fetched { block, from: None }),
            });
            return id;
        }
        let htl = self.clamp_htl(htl);
        if self.walking() && htl == self.config.max_htl.0 {
            let tunnel = tunnel.unwrap_or_else(|| self.default_tunnel(now));
            self.begin_walk(
                now,
                id,
                key,
                Kind::Request,
                None,
                htl,
                request::Walk::Step(tunnel),
            );
        } else {
            self.begin(now, id, key, Kind::Request, None, htl);
        }
        self.tidy_timers();
        id
    }

    /// Starts an insert of `block` (already verified by the caller) at `htl` (default
    /// and cap: the maximum), to be stored on `replicas` nodes near its key (default
    /// [`RouterConfig::replicas`], at most [`MAX_REPLICAS`]). The end comes as
    /// [`Event::InsertFinished`]. The router emits no `Store` for it: the shell keeps its
    /// own user's blocks as it sees fit (`veild` and `veil-sim` keep them long-term).
    /// When no peer is closer to the key than this node, that kept copy counts as the
    /// first replica and the replica walk starts here, as at any sink; otherwise an
    /// insert from the node nearest its key would be stored nowhere else.
    pub fn start_insert(
        &mut self,
        now: Instant,
        block: Block,
        htl: Option<Htl>,
        replicas: Option<u8>,
    ) -> RequestId {
        let key = block.routing_key();
        self.start_insert_as(now, key, block, htl, replicas)
    }

    /// As [`Router::start_insert`], under `key`, which the caller has verified the
    /// block against: a signed (SSK) block's key is not the hash of its bytes.
    pub fn start_insert_as(
        &mut self,
        now: Instant,
        key: RoutingKey,
        block: Block,
        htl: Option<Htl>,
        replicas: Option<u8>,
    ) -> RequestId {
        self.start_insert_in(now, key, block, htl, replicas, None)
    }

    /// As [`Router::start_insert_as`], on the anonymity walk of `tunnel` (give every
    /// block of one upload the same one; `None`: the router's own tunnel of the moment).
    /// Without the walk the tunnel is ignored.
    pub fn start_insert_in(
        &mut self,
        now: Instant,
        key: RoutingKey,
        block: Block,
        htl: Option<Htl>,
        replicas: Option<u8>,
        tunnel: Option<u64>,
    ) -> RequestId {
        self.expire(now);
        self.stats.local_inserts += 1;
        let htl = self.clamp_htl(htl);
        let replicas = replicas
            .unwrap_or(self.config.replicas)
            .clamp(1, MAX_REPLICAS);
        self.offer_to_askers(now, key, &block, None);
        let routes = self.config.insert_routes.min(replicas);
        let full = htl == self.config.max_htl.0 && self.peers.routable() > 0;
        if routes > 1 && full {
            let tunnel = tunnel.unwrap_or_else(|| self.default_tunnel(now));
            let id = self.start_spread(now, key, block, Htl(htl), replicas, routes, tunnel);
            self.tidy_timers();
            return id;
        }
        let id = self.fresh_id();
        let mut kind = Kind::Insert {
            block,
            replicas,
            stored: 0,
            resume: None,
        };
        if self.walking() && full {
            // The walk takes it away first; the node that ends it inserts from there.
            let tunnel = tunnel.unwrap_or_else(|| self.default_tunnel(now));
            self.begin_walk(now, id, key, kind, None, htl, request::Walk::Step(tunnel));
            self.tidy_timers();
            return id;
        }
        if self.peers.routable() > 0
            && !self.peers.any_closer(Location::of_key(&key), self.location)
        {
            kind.start_walk();
        }
        self.begin(now, id, key, kind, None, htl);
        self.tidy_timers();
        id
    }

    /// Handles one message from `peer`.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: PeerId,
        msg: Message,
        store: &mut impl BlockStore,
    ) {
        self.expire(now);
        if !self.peers.contains(from) {
            // A message racing a link's removal; nothing can be answered.
            return;
        }
        match msg {
            Message::Request { id, key, htl } => self.on_request(now, from, id, key, htl, store),
            Message::Walk { id, key, tunnel } => self.on_walk(now, from, id, key, tunnel, store),
            Message::InsertWalk {
                id,
                key,
                tunnel,
                replicas,
                block,
            } => self.on_insert_walk(now, from, id, key, tunnel, replicas, block, store),
            Message::Insert {
                id,
                key,
                htl,
                replicas,
                stored,
                block,
            } => self.on_insert(now, from, id, key, htl, replicas, stored, block, store),
            Message::Data { id, block } => self.on_data(now, from, id, block, store),
            Message::Announce {
                id,
                target,
                address,
                htl,
            } => self.on_announce(now, from, id, target, address, htl),
            Message::AnnounceReply {
                id,
                address,
                location,
            } => self.on_announce_reply(now, from, id, address, location),
            Message::FoldOffer { id, address } => self.on_fold_offer(now, from, id, address),
            Message::Neighbours { locations } => self.on_neighbours(from, locations.into_inner()),
            Message::Offer { key, block } => self.on_offer(now, from, key, block, store),
            Message::SwapRequest {
                id,
                hops,
                commitment,
            } => self.with_swapping(now, |s, cx| {
                s.on_request(cx, now, from, id, hops, commitment);
                None
            }),
            Message::SwapCommit { id, commitment } => self.with_swapping(now, |s, cx| {
                s.on_commit(cx, from, id, commitment);
                None
            }),
            Message::SwapReveal {
                id,
                nonce,
                location,
                peers,
            } => {
                let them = swap::Side {
                    nonce,
                    location,
                    peers: peers.into_inner(),
                };
                self.with_swapping(now, |s, cx| s.on_reveal(cx, from, id, them));
            }
            Message::LocationChanged { location } => {
                self.on_location_changed(from, location);
                // Our peers' view of where we lead has changed with it.
                self.schedule_neighbours(now);
            }
            Message::RejectedLoop { id } if self.swapping.is_swap(id) => {
                self.with_swapping(now, |s, cx| {
                    s.on_loop(cx, from, id);
                    None
                });
            }
            Message::Hello(_)
            | Message::Ping { .. }
            | Message::Pong { .. }
            | Message::PeerInfo { .. } => {}
            reply => self.on_reply(now, from, reply),
        }
        self.tidy_timers();
    }

    /// Handles every timeout due at `now`. Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if self
                .requests
                .get(&id)
                .is_some_and(|r| r.deadline == Some(t))
            {
                self.on_timeout(now, id);
            }
        }
        if self.opennet_timeout().is_some_and(|t| t <= now) {
            self.opennet_tick(now);
        }
        // Does nothing with swapping off, and otherwise only what is due (a swap to
        // start, state past its ttl to forget).
        self.with_swapping(now, |s, cx| s.tick(cx, now));
        self.tidy_timers();
    }

    /// The next message to send, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Message)> {
        let out = self.transmits.pop_front();
        if out.is_none() {
            self.release_if_idle();
        }
        out
    }

    /// Frees the queues and maps that only hold work in flight once none is left: they
    /// keep their first allocation otherwise, 1.2 KB a router that has ever relayed
    /// anything, which was a seventh of a million-node simulation's memory. A busy
    /// router is never idle and never pays for it; an idle one pays a few allocations
    /// when work comes again.
    fn release_if_idle(&mut self) {
        if self.transmits.is_empty()
            && self.events.is_empty()
            && self.requests.is_empty()
            && self.timers.is_empty()
        {
            self.transmits = VecDeque::new();
            self.events = VecDeque::new();
            self.requests = BTreeMap::new();
            self.timers = BTreeSet::new();
        }
    }

    /// When [`Router::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let request = self.timers.first().map(|(t, _)| *t);
        let swap = self.swapping.timeout(&self.config.swap);
        [request, self.opennet_timeout(), swap]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next event for the shell.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let out = self.events.pop_front();
        if out.is_none() {
            self.release_if_idle();
        }
        out
    }

    /// The events not yet polled, without taking them: a simulator that must know of a
    /// [`Event::WalkEnded`] before it sees the messages queued beside it looks here.
    pub fn pending_events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Counters since creation.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            swap: self.swapping.stats().clone(),
            ..self.stats.clone()
        }
    }

    fn clamp_htl(&self, htl: Option<Htl>) -> u8 {
        htl.unwrap_or(self.config.max_htl)
            .min(self.config.max_htl)
            .0
    }

    /// A random id not in use here.
    fn fresh_id(&mut self) -> RequestId {
        let requests = &self.requests;
        request::fresh_id(&mut self.rng, &self.seen, &|id| requests.contains_key(&id))
    }

    /// Hands one input to the swapping machine with its view of the router, then moves
    /// the node if the machine says so.
    fn with_swapping(
        &mut self,
        now: Instant,
        input: impl FnOnce(&mut swapping::Swapping, &mut swapping::SwapCtx) -> Option<Location>,
    ) {
        let requests = &self.requests;
        let in_use = |id: RequestId| requests.contains_key(&id);
        let mut cx = swapping::SwapCtx {
            config: &self.config,
            location: self.location,
            peers: &self.peers,
            rng: &mut self.rng,
            seen: &mut self.seen,
            in_use: &in_use,
            transmits: &mut self.transmits,
        };
        if let Some(location) = input(&mut self.swapping, &mut cx) {
            self.move_to(now, location);
        }
    }

    /// Takes `location` and tells every peer (a swap moved this node).
    fn move_to(&mut self, _now: Instant, location: Location) {
        self.location = location;
        let peers: Vec<PeerId> = self.peers.iter().map(|p| p.id).collect();
        for p in peers {
            self.transmits
                .push_back((p, Message::LocationChanged { location }));
        }
        self.events.push_back(Event::LocationChanged { location });
    }

    /// A peer moved. Only swapping nodes move, and only they listen.
    fn on_location_changed(&mut self, from: PeerId, location: Location) {
        if !self.config.swap.enabled {
            return;
        }
        if let Some(p) = self.peers.get_mut(from) {
            p.location = location;
        }
    }

    /// Turns swapping on or off (a simulator's swap phase ends; a node stops taking
    /// part). Open swaps are forgotten; the counters stay.
    pub fn set_swapping(&mut self, on: bool) {
        // A configuration shared with other routers is copied only to change it.
        if self.config.swap.enabled != on {
            Arc::make_mut(&mut self.config).swap.enabled = on;
        }
        if !on {
            self.swapping.forget_open();
        }
    }

    /// Swapping counters.
    pub fn swap_stats(&self) -> &SwapStats {
        self.swapping.stats()
    }

    /// Drops timer entries of requests that finished or moved on, up to the first live
    /// one. Called at the end of every input.
    fn tidy_timers(&mut self) {
        while let Some(&(t, id)) = self.timers.first() {
            if self
                .requests
                .get(&id)
                .is_some_and(|r| r.deadline == Some(t))
            {
                break;
            }
            self.timers.pop_first();
        }
    }

    /// Forgets ids older than the seen TTL.
    fn expire(&mut self, now: Instant) {
        self.seen.expire(now);
        self.failures.expire(now);
        // `recent` is pruned as it grows (`stored_for_insert`): stale entries say
        // nothing, and most inputs are not inserts.
    }
}
