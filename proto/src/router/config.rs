//! The router's tunables and their defaults (each default names the measurement that
//! chose it).

use super::opennet::OpennetConfig;
use super::swapping::SwapConfig;
use crate::message::Htl;
use std::time::Duration;

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

impl HtlPolicy {
    /// The HTL flags of a new link: whether a request arriving on it decrements at the
    /// maximum and at 1.
    pub(super) fn draw(&self, rng: &mut impl rand::Rng) -> (bool, bool) {
        match *self {
            HtlPolicy::Always => (true, true),
            HtlPolicy::Probabilistic {
                decrement_at_max,
                decrement_at_one,
            } => (
                rng.gen_bool(super::probability(decrement_at_max)),
                rng.gen_bool(super::probability(decrement_at_one)),
            ),
        }
    }
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
    /// another number (capped at [`MAX_REPLICAS`](crate::message::MAX_REPLICAS)). Default [`DEFAULT_REPLICAS`].
    pub replicas: u8,
    /// Opennet: announcement, path folding and peer replacement (off by default).
    pub opennet: OpennetConfig,
    /// Darknet location swapping (off by default).
    pub swap: SwapConfig,
    /// The anonymity walk (the `walk` module; docs/anonymity.md): the chance that a
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
    /// measured round trip and success among them ([`Router::observe_rtt`](crate::router::Router::observe_rtt) feeds the
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

impl RouterConfig {
    /// `htl`, or the maximum if none, capped at the maximum.
    pub(super) fn clamp_htl(&self, htl: Option<Htl>) -> u8 {
        htl.unwrap_or(self.max_htl).min(self.max_htl).0
    }
}

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
