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
//! # Layout
//! `Router` composes machines, each owning its state and counters: `request` (requests
//! and inserts, with the walk's steps and spread inserts), `opennet` (announcement,
//! path folding, link replacement, neighbour lists), `swapping` (darknet location
//! swaps), `peers` (the peer table and next-hop choice), `walk` (the walk's keyed
//! choices) and `failures` (the failure table). A machine takes each input with a
//! `ctx::Ctx` (the shared state lent for that input) and meets another only through a
//! narrow trait of `ctx` (`IdsInUse`, `PathFolding`). A new behaviour is a new machine or
//! a change inside one (docs/routing.md, "Adding a routing behaviour").
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

mod config;
mod ctx;
mod events;
mod failures;
mod opennet;
mod peers;
mod request;
mod seen;
mod spread;
mod swapping;
#[cfg(test)]
mod tests;
mod time;
mod walk;

use crate::block::Block;
use crate::keys::{NodeKey, RoutingKey};
use crate::message::{Htl, Message, PeerAddress, RequestId};
use crate::ring::Location;
pub use config::{
    HtlPolicy, RouterConfig, DARKNET_INSERT_ROUTES, DEFAULT_INDEX_REPLICAS, DEFAULT_LATENCY_FACTOR,
    DEFAULT_LATENCY_PROGRESS_WEIGHT, DEFAULT_REPLICAS, DEFAULT_WALK_PROBABILITY,
};
pub use events::{
    BlockStore, Event, Fetched, InsertFailure, InsertReport, Placement, RequestFailure, RouterStats,
};
use opennet::Opennet;
pub use opennet::{LinkDecision, OpennetConfig, OpennetStats, PeerOrigin, MAX_BAD_OFFERS};
use peers::PeerTable;
pub use peers::{PeerMeta, Peers};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use request::Requests;
use seen::Seen;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use swapping::{SwapConfig, SwapStats, MAX_RELAYED as MAX_SWAPS_RELAYED};

/// An opaque handle the shell assigns to a link. It always names the same remote node:
/// after [`Router::remove_peer`] it may be added again for that node, never for another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerId(pub u64);

/// A configured probability made safe for `gen_bool`: clamped to [0, 1], NaN as 0.5.
fn probability(p: f64) -> f64 {
    if p.is_nan() {
        0.5
    } else {
        p.clamp(0.0, 1.0)
    }
}

/// The router's machines, borrowed together beside the shared state ([`ctx::Ctx`]).
struct Machines<'a> {
    requests: &'a mut Requests,
    swapping: &'a mut swapping::Swapping,
    opennet: &'a mut Opennet,
}

/// One node's routing state machine. See the module documentation for the contract.
///
/// A composer: the shared state (configuration, location, the random stream, the peer
/// table, the seen set, the output queues) and one value per machine; each input goes
/// to the machine that owns it (docs/routing.md, "Layout").
#[derive(Clone, Debug)]
pub struct Router {
    /// Shared by every router of a simulated network (a million copies of it were a
    /// gigabyte); see [`Router::with_shared_config`].
    config: Arc<RouterConfig>,
    location: Location,
    rng: ChaCha8Rng,
    peers: PeerTable,
    seen: Seen,
    transmits: VecDeque<(PeerId, Message)>,
    events: VecDeque<Event>,
    requests: Requests,
    opennet: Opennet,
    swapping: swapping::Swapping,
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
            requests: Requests::new(rng_seed),
            config,
            location,
            peers: PeerTable::default(),
            seen: Seen::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            opennet: Opennet::default(),
            swapping: swapping::Swapping::default(),
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

    /// Adds a link with what the shell knows about it. [`Router::add_peer`] is this for
    /// a routable friend.
    pub fn add_peer_with(
        &mut self,
        now: Instant,
        peer: PeerId,
        location: Location,
        meta: PeerMeta,
    ) {
        self.expire(now);
        if let Some(a) = meta.address {
            self.opennet.linking(&a.key);
        }
        let flags = self.config.htl_policy.draw(&mut self.rng);
        let clock = self.opennet.clock();
        let seed = meta.origin == PeerOrigin::Seed;
        self.peers
            .add_with(peer, location, flags, meta, (now, clock));
        if seed && self.config.opennet.enabled {
            self.opennet.seed_linked(now);
        }
        self.with_swapping(|s, cx| {
            s.peer_added(cx, now, peer);
            None
        });
        self.with_opennet(|o, cx| o.peers_changed(cx, now));
    }

    /// Decides whether to keep a link that just came up from (or to) the node `key` at
    /// `location`, and with which origin: `origin` is what the shell knows (an inbound
    /// link it did not ask for is [`PeerOrigin::Inbound`]; a newcomer this node
    /// answered becomes [`PeerOrigin::Announcement`]).
    pub fn link_decision(
        &mut self,
        now: Instant,
        key: &NodeKey,
        location: Location,
        origin: PeerOrigin,
    ) -> (LinkDecision, PeerOrigin) {
        self.expire(now);
        self.with_opennet(|o, cx| o.link_decision(cx, now, key, location, origin))
    }

    /// The shell did not link to an address it was asked to dial, for a reason of its
    /// own (already connected, banned, refused): nobody is charged.
    pub fn connect_failed(&mut self, key: &NodeKey) {
        self.opennet.connect_failed(key);
    }

    /// The shell could not reach an address it was asked to dial at all (no answer, no
    /// handshake). The peer whose offer named it is charged; one that reaches
    /// [`MAX_BAD_OFFERS`] is reported as misbehaving (the shell drops and bans it).
    pub fn dial_failed(&mut self, key: &NodeKey) {
        if let Some(peer) = self.opennet.dial_failed(&self.peers, key) {
            self.with_requests(|r, cx| r.misbehaved(cx, peer, "offers of unreachable addresses"));
        }
    }

    /// Tells the router where this node can be dialled; opennet offers carry it.
    pub fn set_address(&mut self, address: PeerAddress) {
        self.opennet.set_address(address);
    }

    /// Whether this node would take another routable peer now without dropping one.
    pub fn has_room(&self) -> bool {
        self.opennet.has_room(self.view())
    }

    /// Drops a link: requests it sent are abandoned, requests waiting on it move on.
    pub fn remove_peer(&mut self, now: Instant, peer: PeerId) {
        self.expire(now);
        if !self.peers.remove(peer) {
            return;
        }
        self.with_requests(|r, cx| r.peer_removed(cx, now, peer));
        self.with_opennet(|o, cx| o.peers_changed(cx, now));
        self.requests.tidy_timers();
    }

    /// One round-trip sample of `peer`'s link (a ping answered, a handshake timed), for
    /// latency-aware routing. Unknown peers are ignored.
    pub fn observe_rtt(&mut self, peer: PeerId, rtt: Duration) {
        self.peers.observe_rtt(peer, rtt);
    }

    /// The peers, to look at: how each was found, whether it is routable, its round trip
    /// and success, how many there are.
    pub fn peers(&self) -> Peers<'_> {
        Peers(&self.peers)
    }

    /// The number of requests and inserts this node is working on.
    pub fn active_requests(&self) -> usize {
        self.requests.in_flight().len()
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
        let id = self.with_requests(|r, cx| r.start_request(cx, now, key, htl, tunnel, store));
        self.requests.tidy_timers();
        id
    }

    /// Starts an insert of `block` (already verified by the caller) at `htl` (default
    /// and cap: the maximum), to be stored on `replicas` nodes near its key (default
    /// [`RouterConfig::replicas`], at most [`MAX_REPLICAS`](crate::message::MAX_REPLICAS)). The end comes as
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
        let start = request::InsertStart {
            key,
            block,
            htl,
            replicas,
            tunnel,
        };
        let id = self.with_requests(|r, cx| r.start_insert(cx, now, start));
        self.requests.tidy_timers();
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
            Message::Hello(_)
            | Message::Ping { .. }
            | Message::Pong { .. }
            | Message::PeerInfo { .. } => {}
            Message::LocationChanged { location } => {
                // A peer moved. Only swapping nodes move, and only they listen.
                if self.config.swap.enabled {
                    self.peers.relocate(from, location);
                }
                // Our peers' view of where we lead has changed with it.
                self.with_opennet(|o, cx| o.schedule_neighbours(cx, now));
            }
            msg @ (Message::Announce { .. }
            | Message::AnnounceReply { .. }
            | Message::FoldOffer { .. }
            | Message::Neighbours { .. }) => {
                self.with_opennet(|o, cx| o.handle(cx, now, from, msg));
            }
            msg @ (Message::SwapRequest { .. }
            | Message::SwapCommit { .. }
            | Message::SwapReveal { .. }) => {
                self.with_swapping(|s, cx| s.handle(cx, now, from, msg));
            }
            Message::RejectedLoop { id } if self.swapping.is_swap(id) => {
                self.with_swapping(|s, cx| s.handle(cx, now, from, msg));
            }
            msg => self.with_requests(|r, cx| r.handle(cx, now, from, msg, store)),
        }
        self.requests.tidy_timers();
    }

    /// Handles every timeout due at `now`. Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.with_requests(|r, cx| r.handle_timeout(cx, now));
        if self.opennet.timeout(self.view()).is_some_and(|t| t <= now) {
            self.with_opennet(|o, cx| o.tick(cx, now));
        }
        // Does nothing with swapping off, and otherwise only what is due (a swap to
        // start, state past its ttl to forget).
        self.with_swapping(|s, cx| s.tick(cx, now));
        self.requests.tidy_timers();
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
        if self.transmits.is_empty() && self.events.is_empty() && self.requests.release_if_idle() {
            self.transmits = VecDeque::new();
            self.events = VecDeque::new();
        }
    }

    /// When [`Router::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let request = self.requests.next_timeout();
        let swap = self.swapping.timeout(&self.config.swap);
        [request, self.opennet.timeout(self.view()), swap]
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
            opennet: self.opennet.stats().clone(),
            swap: self.swapping.stats().clone(),
            ..self.requests.stats().clone()
        }
    }

    /// What every machine may read, even from `&self`.
    fn view(&self) -> ctx::View<'_> {
        ctx::View {
            config: &self.config,
            location: self.location,
            peers: &self.peers,
        }
    }

    /// The router's shared state, lent to a machine, beside the machines themselves.
    fn split(&mut self) -> (Machines<'_>, ctx::Ctx<'_>) {
        (
            Machines {
                requests: &mut self.requests,
                swapping: &mut self.swapping,
                opennet: &mut self.opennet,
            },
            ctx::Ctx {
                config: &self.config,
                location: self.location,
                peers: &mut self.peers,
                rng: &mut self.rng,
                seen: &mut self.seen,
                requests: None,
                opennet: None,
                transmits: &mut self.transmits,
                events: &mut self.events,
            },
        )
    }

    /// Hands one input to the swapping machine, then moves the node if the machine says
    /// so.
    fn with_swapping(
        &mut self,
        input: impl FnOnce(&mut swapping::Swapping, &mut ctx::Ctx) -> Option<Location>,
    ) {
        let (m, mut cx) = self.split();
        cx.requests = Some(m.requests.in_flight());
        let Some(location) = input(m.swapping, &mut cx) else {
            return;
        };
        // The swap moved this node: take the location and tell every peer.
        self.location = location;
        for p in self.peers.iter() {
            self.transmits
                .push_back((p.id, Message::LocationChanged { location }));
        }
        self.events.push_back(Event::LocationChanged { location });
    }

    /// Hands one input to the opennet machine.
    fn with_opennet<T>(&mut self, input: impl FnOnce(&mut Opennet, &mut ctx::Ctx) -> T) -> T {
        let (m, mut cx) = self.split();
        cx.requests = Some(m.requests.in_flight());
        input(m.opennet, &mut cx)
    }

    /// Hands one input to the requests machine, with the opennet machine lent for path
    /// folding.
    fn with_requests<T>(&mut self, input: impl FnOnce(&mut Requests, &mut ctx::Ctx) -> T) -> T {
        let (m, mut cx) = self.split();
        cx.opennet = Some(m.opennet);
        input(m.requests, &mut cx)
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

    /// Forgets ids older than the seen TTL, and failures past theirs.
    fn expire(&mut self, now: Instant) {
        self.seen.expire(now);
        self.requests.expire(now);
    }
}
