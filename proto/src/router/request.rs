//! Per-request state and the routing steps: accept or reject an incoming request or
//! insert, forward it to the next peer, react to replies and timeouts, and finish it.
//!
//! A request's life at one node: `begin` creates its [`Req`]; `advance` sends it to the
//! closest untried peer or, with nothing left, finishes it; replies and timeouts either
//! finish it or call `advance` again. `finish` answers upstream (or tells the local
//! user), removes the state and leaves the id in [`Seen`] so loops and late replies are
//! recognised for `seen_ttl`.

use super::ctx::Ctx;
use super::failures::FailureTable;
use super::peers::decrement;
use super::spread::{Recent, Spread};
use super::time::later;
use super::walk::Walker;
use super::{
    BlockStore, Event, Fetched, InsertFailure, InsertReport, PeerId, Placement, RequestFailure,
    RouterStats,
};
use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Htl, Message, RequestId, MAX_REPLICAS};
use crate::ring::Location;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

/// Request or insert.
#[derive(Clone, Debug)]
pub(super) enum Kind {
    Request,
    /// An insert carries its (verified) block along, the number of nodes that should
    /// store it and how many on its path so far do (this node included).
    Insert {
        block: Block,
        replicas: u8,
        stored: u8,
        /// At the node that holds the first copy: the whole walk's target, to resume
        /// after the first side's chain (see [`Kind::start_walk`]).
        resume: Option<u8>,
    },
}

impl Kind {
    /// Hops this request may still take beyond its HTL: an insert's replica walk.
    fn extra_hops(&self) -> u32 {
        match self {
            Kind::Request => 0,
            Kind::Insert {
                replicas,
                stored,
                resume,
                ..
            } => u32::from(resume.unwrap_or(*replicas).saturating_sub(*stored)),
        }
    }

    /// This node holds the first copy. The walk goes on in two chains, one on each side
    /// of the key: a single chain always takes the closest peer not yet visited, which
    /// past the first few steps is the next node outwards on the side it started, so
    /// it would leave the other side's nearest nodes bare. The first chain (towards the
    /// closest peer) is asked for half the rest; when it reports back, the second goes
    /// to the other side for the remainder.
    pub(super) fn start_walk(&mut self) {
        if let Kind::Insert {
            replicas,
            stored,
            resume,
            ..
        } = self
        {
            *stored = 1;
            if *replicas >= 3 {
                *resume = Some(*replicas);
                *replicas = 1 + (*replicas - 1).div_ceil(2);
            }
        }
    }

    /// Bytes this request holds while it runs here (an insert's block).
    fn held_bytes(&self) -> u64 {
        match self {
            Kind::Request => 0,
            Kind::Insert { .. } => crate::block::BLOCK_LEN as u64,
        }
    }

    /// An insert that nodes near its key are storing: HTL no longer counts.
    fn replicating(&self) -> bool {
        matches!(self, Kind::Insert { stored, .. } if *stored > 0)
    }
}

/// One request or insert this node is working on.
#[derive(Clone, Debug)]
pub(super) struct Req {
    pub key: RoutingKey,
    pub target: Location,
    pub kind: Kind,
    /// The peer that sent it, or `None` for the local user.
    pub source: Option<PeerId>,
    /// HTL as received (as started, for local ones): decides caching.
    pub received_htl: u8,
    /// HTL of the last attempt sent (before the first: as received). Each attempt
    /// decrements it, so HTL bounds the nodes a request visits, backtracking included.
    pub htl: u8,
    /// The next attempt is free: the last peer refused (loop, overload, gone) without
    /// spending any of the request's hops.
    pub free_next: bool,
    /// Peers tried so far; the source is excluded separately.
    pub tried: Vec<PeerId>,
    /// The peer whose answer is awaited, and until when.
    pub waiting: Option<PeerId>,
    pub deadline: Option<Instant>,
    /// The deadline is the answer budget below, not the peer's own timeout.
    pub deadline_is_budget: bool,
    /// When this node must have answered its upstream: `hop_timeout × h` after accepting
    /// at HTL `h` (none for local requests). The upstream waits one `hop_timeout`
    /// longer, so a live node always answers before its upstream gives up on it, and
    /// slow subtrees are cut rather than explored twice.
    pub answer_by: Option<Instant>,
    /// Some peer took the request (answered other than loop, overload or timeout).
    pub accepted: bool,
    /// Some peer rejected for overload.
    pub overloaded: bool,
    /// The last try ended in a timeout.
    pub timed_out_last: bool,
    /// An insert on its approach that its own replica walk came back to: this node
    /// stored the block then and answered `Stored` (once).
    pub stored_on_loop: bool,
    /// The replica walk's next attempt must go to a peer on this side of the key (true:
    /// clockwise), if there is one.
    pub next_side: Option<bool>,
    /// The side the second chain of a split walk takes.
    pub other_side: Option<bool>,
    /// Where the request is on its anonymity walk ([`super::walk`]).
    pub walk: Walk,
    /// The id the source knows it by, when this node routes it under another (a walk
    /// that ended here).
    pub reply_id: Option<RequestId>,
}

/// A request's anonymity walk, at one node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Walk {
    /// No walk: routed greedily as it came.
    None,
    /// On its walk: this node passes it on along the tunnel (or ends the walk).
    Step(u64),
    /// The walk ended here: routed greedily from here, as this node's own would be.
    End,
}

/// Most ids remembered at once, whatever the TTL (about 50 MB).
const MAX_SEEN: usize = 1 << 20;

/// Ids seen recently, forgotten after the TTL: a set for lookups and a queue in arrival
/// order for expiry (time never goes backwards, so the queue stays sorted). The set is
/// a hash set with the standard library's randomly keyed SipHash, so ids a peer picks
/// cannot be made to collide; it is never iterated, so nothing depends on its order.
/// Memory is bounded by `MAX_SEEN` either way (a hash set keeps its capacity after a
/// flood of ids has expired; a B-tree gave it back).
#[derive(Clone, Debug)]
pub(super) struct Seen {
    ids: HashSet<RequestId>,
    order: VecDeque<(Instant, RequestId)>,
    cap: usize,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            ids: HashSet::new(),
            order: VecDeque::new(),
            cap: MAX_SEEN,
        }
    }
}

impl Seen {
    pub fn contains(&self, id: RequestId) -> bool {
        self.ids.contains(&id)
    }

    pub fn insert(&mut self, expires: Instant, id: RequestId) {
        if self.ids.insert(id) {
            if self.order.len() >= self.cap {
                // A flood of fresh ids must not grow memory without bound: forget the
                // oldest early (it can only weaken loop detection for very old ids).
                if let Some((_, old)) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
            self.order.push_back((expires, id));
        }
    }

    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.order.front() {
            if t > now {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A random id that neither a request of this node's (`in_use`) nor a message seen here
/// uses.
pub(super) fn fresh_id(
    rng: &mut rand_chacha::ChaCha8Rng,
    seen: &Seen,
    in_use: &dyn Fn(RequestId) -> bool,
) -> RequestId {
    use rand::Rng;
    loop {
        let id = RequestId(rng.gen());
        if !in_use(id) && !seen.contains(id) {
            return id;
        }
    }
}

/// The requests machine: the requests and inserts this node works on, their deadlines,
/// the failure table, the anonymity walk's secret and tunnel, spread inserts and the
/// counters of all of it. It takes each input with the router's [`Ctx`].
#[derive(Clone, Debug)]
pub(super) struct Requests {
    pub(super) requests: BTreeMap<RequestId, Box<Req>>,
    /// Deadlines in order. Entries whose request moved on are dropped lazily (see
    /// `tidy_timers`), so the first entry is always the next real deadline.
    pub(super) timers: BTreeSet<(Instant, RequestId)>,
    pub(super) failures: FailureTable,
    /// The anonymity walk's choices ([`super::walk`]).
    pub(super) walk: Walker,
    /// Spread inserts' routes in flight, by route id: the id their shell knows.
    pub(super) spreads: HashMap<RequestId, RequestId>,
    /// Spread inserts in flight, by the id their shell knows.
    pub(super) spread_parents: HashMap<RequestId, Spread>,
    /// Keys stored for an insert moments ago (sibling routes do not count twice).
    pub(super) recent: Recent,
    pub(super) stats: RouterStats,
}

/// A local insert as its user asked for it.
pub(super) struct InsertStart {
    pub key: RoutingKey,
    pub block: Block,
    pub htl: Option<Htl>,
    pub replicas: Option<u8>,
    pub tunnel: Option<u64>,
}

impl Requests {
    /// No requests yet; the walk keyed from `seed`.
    pub(super) fn new(seed: u64) -> Requests {
        Requests {
            requests: BTreeMap::new(),
            timers: BTreeSet::new(),
            failures: FailureTable::default(),
            walk: Walker::new(seed),
            spreads: HashMap::new(),
            spread_parents: HashMap::new(),
            recent: Recent::default(),
            stats: RouterStats::default(),
        }
    }

    /// The requests in flight, by id (other machines draw ids none of them use).
    pub(super) fn in_flight(&self) -> &BTreeMap<RequestId, Box<Req>> {
        &self.requests
    }

    /// Counters of requests, inserts and the rest of this machine's work.
    pub(super) fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// With no request in flight and no deadline pending, frees the maps of work in
    /// flight (see `Router::release_if_idle`). True if it was idle.
    pub(super) fn release_if_idle(&mut self) -> bool {
        let idle = self.requests.is_empty() && self.timers.is_empty();
        if idle {
            self.requests = BTreeMap::new();
            self.timers = BTreeSet::new();
        }
        idle
    }

    /// The next deadline of a request.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Forgets failures past their time. `recent` is pruned as it grows
    /// (`Recent::stored`): stale entries say nothing, and most inputs are not inserts.
    pub(super) fn expire(&mut self, now: Instant) {
        self.failures.expire(now);
    }

    /// Drops timer entries of requests that finished or moved on, up to the first live
    /// one. Called at the end of every input.
    pub(super) fn tidy_timers(&mut self) {
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

    /// A random id not in use here.
    pub(super) fn fresh_id(&mut self, cx: &mut Ctx) -> RequestId {
        let requests = &self.requests;
        fresh_id(cx.rng, cx.seen, &|id| requests.contains_key(&id))
    }

    /// A message from `from` about requests and inserts: one to route, data, an offer,
    /// or a reply to one this node sent.
    pub(super) fn handle(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        msg: Message,
        store: &mut impl BlockStore,
    ) {
        match msg {
            Message::Request { id, key, htl } => {
                self.on_request(cx, now, from, id, key, htl, store)
            }
            Message::Walk { id, key, tunnel } => {
                self.on_walk(cx, now, from, id, key, tunnel, store)
            }
            Message::InsertWalk {
                id,
                key,
                tunnel,
                replicas,
                block,
            } => self.on_insert_walk(cx, now, from, id, key, tunnel, replicas, block, store),
            Message::Insert {
                id,
                key,
                htl,
                replicas,
                stored,
                block,
            } => self.on_insert(cx, now, from, id, key, htl, replicas, stored, block, store),
            Message::Data { id, block } => self.on_data(cx, now, from, id, block, store),
            Message::Offer { key, block } => self.on_offer(cx, now, from, key, block, store),
            reply => self.on_reply(cx, now, from, reply),
        }
    }

    /// Handles every request deadline due at `now`.
    pub(super) fn handle_timeout(&mut self, cx: &mut Ctx, now: Instant) {
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
                self.on_timeout(cx, now, id);
            }
        }
    }

    /// A link went: requests it sent are abandoned, requests waiting on it move on.
    pub(super) fn peer_removed(&mut self, cx: &mut Ctx, now: Instant, peer: PeerId) {
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
                self.stop_waiting(cx, id);
                self.requests.remove(&id);
            } else {
                req.deadline = None;
                req.free_next = true;
                self.stop_waiting(cx, id);
                self.advance(cx, now, id);
            }
        }
    }

    /// A request of this node's user (see `Router::start_request_in`).
    pub(super) fn start_request(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        key: RoutingKey,
        htl: Option<Htl>,
        tunnel: Option<u64>,
        store: &mut impl BlockStore,
    ) -> RequestId {
        self.stats.local_requests += 1;
        let id = self.fresh_id(cx);
        if let Some((block, _)) = store.get(&key) {
            self.stats.local_hits += 1;
            self.stats.local_requests_succeeded += 1;
            cx.events.push_back(Event::RequestFinished {
                id,
                key,
                result: Ok(Fetched { block, from: None }),
            });
            return id;
        }
        let htl = cx.config.clamp_htl(htl);
        if super::walk::walking(cx.config) && htl == cx.config.max_htl.0 {
            let tunnel = tunnel.unwrap_or_else(|| self.walk.default_tunnel(cx, now));
            self.begin_walk(
                cx,
                now,
                id,
                key,
                Kind::Request,
                None,
                htl,
                Walk::Step(tunnel),
            );
        } else {
            self.begin(cx, now, id, key, Kind::Request, None, htl);
        }
        id
    }

    /// An insert of this node's user (see `Router::start_insert_in`).
    pub(super) fn start_insert(&mut self, cx: &mut Ctx, now: Instant, s: InsertStart) -> RequestId {
        let InsertStart {
            key,
            block,
            htl,
            replicas,
            tunnel,
        } = s;
        self.stats.local_inserts += 1;
        let htl = cx.config.clamp_htl(htl);
        let replicas = replicas
            .unwrap_or(cx.config.replicas)
            .clamp(1, MAX_REPLICAS);
        self.offer_to_askers(cx, now, key, &block, None);
        let routes = cx.config.insert_routes.min(replicas);
        let full = htl == cx.config.max_htl.0 && cx.peers.routable() > 0;
        if routes > 1 && full {
            let tunnel = tunnel.unwrap_or_else(|| self.walk.default_tunnel(cx, now));
            return self.start_spread(cx, now, key, block, Htl(htl), replicas, routes, tunnel);
        }
        let id = self.fresh_id(cx);
        let mut kind = Kind::Insert {
            block,
            replicas,
            stored: 0,
            resume: None,
        };
        if super::walk::walking(cx.config) && full {
            // The walk takes it away first; the node that ends it inserts from there.
            let tunnel = tunnel.unwrap_or_else(|| self.walk.default_tunnel(cx, now));
            self.begin_walk(cx, now, id, key, kind, None, htl, Walk::Step(tunnel));
            return id;
        }
        if cx.peers.routable() > 0 && !cx.peers.any_closer(Location::of_key(&key), cx.location) {
            kind.start_walk();
        }
        self.begin(cx, now, id, key, kind, None, htl);
        id
    }
}

/// The HTL of `req`'s next attempt. Decrement per attempt, as Freenet's request sender
/// does: the first attempt by the flags of the link the request came in on (the
/// originator sends its start HTL as is), later ones always, except right after a
/// refusal.
fn next_htl(req: &Req, cx: &Ctx) -> u8 {
    let max = cx.config.max_htl.0;
    if req.kind.replicating() {
        // Once stored, the replica count bounds the walk instead, and every message of a
        // walk carries HTL 1, so none tells where its walk began.
        1
    } else if req.free_next {
        req.htl
    } else if req.tried.is_empty() {
        match req.source {
            None => req.htl,
            Some(src) => {
                let (at_max, at_one) = cx
                    .peers
                    .get(src)
                    .map_or((true, true), |p| (p.decrement_at_max, p.decrement_at_one));
                decrement(req.htl, max, at_max, at_one)
            }
        }
    } else {
        decrement(req.htl, max, true, true)
    }
}

/// The peer `req` goes to next: the closest untried one (on the side the replica walk
/// asks for, if any), a quicker one for requests while HTL is high, peers that failed
/// the key lately only if nothing else is left, and none whose forwarding window is full
/// for another node's request.
fn next_hop(req: &mut Req, failures: &FailureTable, cx: &Ctx, now: Instant) -> Option<PeerId> {
    let mut exclude = req.tried.clone();
    if req.reply_id.is_none() {
        // The sender knows the id: it would refuse it as a loop. A walk that ended here
        // goes on under a fresh id, which the walk's last hop does not know, so greedy
        // routing may lead back through it (in a sparse network it can be the only way
        // on).
        exclude.extend(req.source);
    }
    let mut avoid = Vec::new();
    if matches!(req.kind, Kind::Request) {
        // Peers that just failed this key are not asked again for a while; the local
        // user's request (asked again, it means it) only tries them last.
        if let Some(f) = failures.get(&req.key, now) {
            if req.source.is_some() {
                exclude.extend(f.failed.iter().copied());
            } else {
                avoid.extend(f.failed.iter().copied());
            }
        }
    }
    if req.source.is_some() {
        // Other peers' requests may fill only part of what a peer takes from us, so this
        // node's own user always has room downstream, and a peer flooding us meets a
        // refusal here instead of using up our share at every neighbour.
        let window = cx.config.max_inflight_per_peer.div_ceil(2) as u32;
        exclude.extend(cx.peers.forwarding_full(window));
    }
    let side = req.next_side.take();
    let peers = &cx.peers;
    // Requests may trade some closeness for a quicker peer; inserts stay greedy so the
    // nodes that store a block are the ones requests converge on. The last third of the
    // hops go greedily, so a request that wandered for speed still reaches the key
    // before its HTL runs out.
    let factor = match req.kind {
        Kind::Request if req.htl > cx.config.max_htl.0 / 3 => {
            (cx.config.latency_factor, cx.config.latency_progress_weight)
        }
        _ => (1.0, 0.0),
    };
    // A quicker peer must still bring the request nearer than this node is.
    let own = cx.location.distance(req.target);
    let target = req.target;
    let pick = |exclude: &[PeerId]| {
        side.and_then(|cw| peers.closest_on_side(target, exclude, now, cw))
            .or_else(|| peers.choose_below(target, exclude, now, factor, own))
    };
    let found = if avoid.is_empty() {
        pick(&exclude)
    } else {
        let mut strict = exclude.clone();
        strict.extend(avoid);
        pick(&strict).or_else(|| pick(&exclude))
    }?;
    if matches!(
        req.kind,
        Kind::Insert {
            resume: Some(_),
            ..
        }
    ) {
        // The first chain of a split walk: the second takes the other side of the peer
        // that carries the first (the latest asked, if one refused).
        let cw = cx
            .peers
            .get(found)
            .is_some_and(|p| p.location.is_clockwise_of(req.target));
        req.other_side = Some(!cw);
    }
    Some(found)
}

/// Why this node's user's request `req` failed, as its user is told.
fn request_failure(req: &Req, outcome: &Outcome) -> RequestFailure {
    match outcome {
        Outcome::DataNotFound => RequestFailure::DataNotFound,
        _ if req.timed_out_last => RequestFailure::TimedOut,
        _ if req.overloaded && !req.accepted => RequestFailure::Overloaded,
        // Peers took it and every route it could reach ran out without the block: to its
        // user, the block is not there.
        _ if req.accepted => RequestFailure::DataNotFound,
        _ => RequestFailure::RouteNotFound,
    }
}

/// How this node's user's insert `req` ended, as its user is told.
fn insert_result(req: &Req, outcome: &Outcome) -> Result<InsertReport, InsertFailure> {
    let done = matches!(outcome, Outcome::InsertDone);
    if matches!(outcome, Outcome::Collision(_)) {
        Err(InsertFailure::Collision)
    } else if done || req.accepted {
        Ok(InsertReport {
            route_exhausted: !done,
        })
    } else if req.timed_out_last {
        Err(InsertFailure::TimedOut)
    } else if req.overloaded {
        Err(InsertFailure::Overloaded)
    } else {
        Err(InsertFailure::RouteNotFound)
    }
}

/// How a request ends at this node.
pub(crate) enum Outcome {
    /// Verified data, from a peer or the store.
    Data(Block, Option<PeerId>),
    /// A request ran out of HTL, or a peer said so.
    DataNotFound,
    /// An insert ran its course.
    InsertDone,
    /// No peer left to try with HTL remaining.
    NoRoute,
    /// An insert met a different block under its key (a signed-key collision): that
    /// block goes back to the inserter, and nothing is stored.
    Collision(Block),
}

impl Requests {
    /// Creates the state for `id` and routes it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn begin(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        id: RequestId,
        key: RoutingKey,
        kind: Kind,
        source: Option<PeerId>,
        received_htl: u8,
    ) {
        self.begin_walk(cx, now, id, key, kind, source, received_htl, Walk::None);
    }

    /// As [`Router::begin`], at a given place on the request's anonymity walk.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn begin_walk(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        id: RequestId,
        key: RoutingKey,
        kind: Kind,
        source: Option<PeerId>,
        received_htl: u8,
        walk: Walk,
    ) {
        cx.seen.insert(later(now, cx.config.seen_ttl), id);
        if let Some(src) = source {
            cx.peers.add_load(src, true, kind.held_bytes());
        }
        let hops = u32::from(received_htl) + kind.extra_hops();
        self.requests.insert(
            id,
            Box::new(Req {
                key,
                target: Location::of_key(&key),
                kind,
                source,
                received_htl,
                htl: received_htl,
                free_next: false,
                tried: Vec::new(),
                waiting: None,
                deadline: None,
                deadline_is_budget: false,
                // A walk step has no budget of hops to answer within: it waits on its
                // own deadline (see `walk_step`).
                answer_by: source
                    .filter(|_| !matches!(walk, Walk::Step(_)))
                    .map(|_| later(now, cx.config.hop_timeout.saturating_mul(hops))),
                accepted: false,
                overloaded: false,
                timed_out_last: false,
                stored_on_loop: false,
                next_side: None,
                other_side: None,
                walk,
                reply_id: None,
            }),
        );
        self.advance(cx, now, id);
    }

    /// Sends `id` to the next peer, or finishes it if HTL or peers ran out.
    pub(super) fn advance(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        if req.answer_by.is_some_and(|t| now >= t) {
            // Out of time: answer now with the hops left, before the upstream gives up.
            return self.finish(cx, None, id, Outcome::NoRoute);
        }
        let mut id = id;
        if let Walk::Step(tunnel) = req.walk {
            match self.walk_step(cx, now, id, tunnel) {
                Some(greedy) => id = greedy,
                None => return,
            }
        }
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        if let Kind::Insert {
            replicas, stored, ..
        } = req.kind
        {
            if stored >= replicas {
                // Enough nodes near the key hold it.
                return self.finish(cx, None, id, Outcome::InsertDone);
            }
        }
        req.htl = next_htl(req, cx);
        req.free_next = false;
        if req.htl == 0 {
            return self.out_of_hops(cx, now, id);
        }
        let Some(peer) = next_hop(req, &self.failures, cx, now) else {
            return self.finish(cx, Some(now), id, Outcome::NoRoute);
        };
        self.send_attempt(cx, now, id, peer);
    }

    /// `id`'s HTL ran out here: a request has not found its key; an insert's approach
    /// ends, and this node holds the first copy (unless it is its own user's).
    fn out_of_hops(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        match &mut req.kind {
            Kind::Request => self.finish(cx, Some(now), id, Outcome::DataNotFound),
            Kind::Insert { .. } if req.source.is_none() => {
                // The originator's own HTL ran out (a start HTL of 0 or 1): it never
                // stores its own user's blocks as a replica.
                self.finish(cx, None, id, Outcome::InsertDone)
            }
            Kind::Insert { block, .. } => {
                // The approach ends here, at the closest node HTL let it reach: this
                // node holds the first copy and the replica walk starts.
                let store = Event::Store {
                    key: req.key,
                    block: block.clone(),
                    placement: Placement::Store,
                };
                let key = req.key;
                let again = self.recent.stored(cx.config, now, key);
                let Some(req) = self.requests.get_mut(&id) else {
                    return;
                };
                req.kind.start_walk();
                if again {
                    req.kind.extend();
                }
                req.htl = 1;
                self.stats.stored += 1;
                cx.events.push_back(store);
                self.advance(cx, now, id)
            }
        }
    }

    /// Sends `id` to `peer` and waits for its answer until the deadline its HTL allows.
    fn send_attempt(&mut self, cx: &mut Ctx, now: Instant, id: RequestId, peer: PeerId) {
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.tried.push(peer);
        req.waiting = Some(peer);
        if req.source.is_some() {
            cx.peers.add_forwarded(peer, true);
        }
        let budget = cx
            .config
            .hop_timeout
            .saturating_mul(u32::from(req.htl) + 1 + req.kind.extra_hops());
        let own = later(now, budget);
        req.deadline_is_budget = req.answer_by.is_some_and(|t| t < own);
        let deadline = req.answer_by.map_or(own, |t| t.min(own));
        req.deadline = Some(deadline);
        self.timers.insert((deadline, id));
        let htl = Htl(req.htl);
        let msg = match &req.kind {
            Kind::Request => {
                self.stats.requests_forwarded += 1;
                Message::Request {
                    id,
                    key: req.key,
                    htl,
                }
            }
            Kind::Insert {
                block,
                replicas,
                stored,
                ..
            } => {
                self.stats.inserts_forwarded += 1;
                Message::Insert {
                    id,
                    key: req.key,
                    htl,
                    replicas: *replicas,
                    stored: *stored,
                    block: block.clone(),
                }
            }
        };
        cx.transmits.push_back((peer, msg));
    }

    /// Ends `id` here: answers upstream or tells the local user, and drops the state.
    /// With `now`, the failure table learns from a request's end.
    pub(super) fn finish(
        &mut self,
        cx: &mut Ctx,
        now: Option<Instant>,
        id: RequestId,
        outcome: Outcome,
    ) {
        self.stop_waiting(cx, id);
        let Some(req) = self.requests.remove(&id) else {
            return;
        };
        // A walk step's failure says nothing about its one next hop and the key.
        let walking = matches!(req.walk, Walk::Step(_));
        if let (Some(now), Kind::Request, false) = (now, &req.kind, walking) {
            match &outcome {
                Outcome::DataNotFound | Outcome::NoRoute => {
                    let until = later(now, cx.config.failure_ttl);
                    self.failures
                        .record(req.key, until, req.received_htl, &req.tried, req.source);
                }
                Outcome::Data(block, from) => {
                    let skip = [*from, req.source];
                    self.offer_to_askers(cx, now, req.key, block, Some(&skip));
                }
                _ => {}
            }
        }
        // The source knows the request by its walk's id when the walk ended here.
        let id = req.reply_id.unwrap_or(id);
        match req.source {
            Some(src) => self.answer_upstream(cx, src, id, &req, outcome),
            None => self.tell_user(cx, id, &req, outcome),
        }
    }

    /// Answers the peer that sent `req` (as `id`), caching data that passes on its way
    /// back unless it is near its originator.
    fn answer_upstream(
        &mut self,
        cx: &mut Ctx,
        src: PeerId,
        id: RequestId,
        req: &Req,
        outcome: Outcome,
    ) {
        let max = cx.config.max_htl.0;
        cx.peers.add_load(src, false, req.kind.held_bytes());
        let reply = match (&req.kind, outcome) {
            (Kind::Request, Outcome::Data(block, _)) => {
                if req.received_htl <= max.saturating_sub(2) {
                    self.stats.cached += 1;
                    cx.events.push_back(Event::Store {
                        key: req.key,
                        block: block.clone(),
                        placement: Placement::Cache,
                    });
                }
                Message::Data { id, block }
            }
            (Kind::Request, Outcome::DataNotFound) => Message::DataNotFound { id },
            (Kind::Insert { .. }, Outcome::InsertDone) => Message::InsertReply { id },
            (Kind::Insert { .. }, Outcome::Collision(block)) => Message::Data { id, block },
            // A replica walk that can go no further has stored what it could: its end,
            // not a dead end for the approach upstream (whose HTL a `RouteNotFound`
            // carrying the walk's HTL 1 would cut short).
            (kind @ Kind::Insert { .. }, _) if kind.replicating() => Message::InsertReply { id },
            _ => Message::RouteNotFound {
                id,
                htl: Htl(req.htl),
            },
        };
        cx.transmits.push_back((src, reply));
    }

    /// Tells this node's user how its request or insert `id` ended.
    fn tell_user(&mut self, cx: &mut Ctx, id: RequestId, req: &Req, outcome: Outcome) {
        let result = match (&req.kind, outcome) {
            (Kind::Request, Outcome::Data(block, from)) => {
                self.stats.local_requests_succeeded += 1;
                Ok(Fetched { block, from })
            }
            (Kind::Request, outcome) => Err(request_failure(req, &outcome)),
            (Kind::Insert { .. }, outcome) => {
                // Counted, and reported as itself or as one route of a spread insert.
                return self.insert_finished(cx, id, req.key, insert_result(req, &outcome));
            }
        };
        cx.events.push_back(Event::RequestFinished {
            id,
            key: req.key,
            result,
        });
    }

    /// `id` no longer awaits an answer from the peer it was sent to; returns that peer.
    pub(super) fn stop_waiting(&mut self, cx: &mut Ctx, id: RequestId) -> Option<PeerId> {
        let req = self.requests.get_mut(&id)?;
        let peer = req.waiting.take()?;
        if req.source.is_some() {
            cx.peers.add_forwarded(peer, false);
        }
        Some(peer)
    }

    /// Loop and overload checks shared by requests and inserts (holding `bytes` while
    /// they run); true if accepted.
    pub(super) fn admit(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        bytes: u64,
    ) -> bool {
        if self.requests.contains_key(&id) || cx.seen.contains(id) {
            self.stats.rejected_loop += 1;
            cx.transmits.push_back((from, Message::RejectedLoop { id }));
            return false;
        }
        if !cx.peers.within_share(cx.config, from, bytes) {
            self.stats.rejected_overload += 1;
            cx.transmits
                .push_back((from, Message::RejectedOverload { id }));
            let strikes = cx.peers.strike(from, now, cx.config.backoff);
            if strikes == cx.config.flood_rejections {
                self.stats.flooders += 1;
                self.misbehaved(cx, from, "kept sending after overload rejections (a flood)");
            }
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_request(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: RoutingKey,
        htl: Htl,
        store: &mut impl BlockStore,
    ) {
        self.stats.requests_received += 1;
        if !self.admit(cx, now, from, id, 0) {
            return;
        }
        let received = htl.0.min(cx.config.max_htl.0);
        if let Some((block, placement)) = store.get(&key) {
            return self.serve(cx, now, from, id, block, placement);
        }
        if self
            .failures
            .get(&key, now)
            .is_some_and(|f| received <= f.htl)
        {
            // Searched for in vain from here a moment ago, with as many hops: decline at
            // once rather than send it through the same nodes again, and offer the block
            // to this peer too should it turn up. The decline is a `RouteNotFound` with
            // every hop still unspent, not a `DataNotFound`: that search came from
            // another direction, so the asker's other peers may well reach the block,
            // and a `DataNotFound` would end its whole search here.
            self.failures.add_asker(&key, now, from);
            cx.seen.insert(later(now, cx.config.seen_ttl), id);
            self.stats.recently_failed += 1;
            cx.transmits
                .push_back((from, Message::RouteNotFound { id, htl }));
            return;
        }
        self.begin(cx, now, id, key, Kind::Request, Some(from), received);
    }

    /// The block under `key` is here now: offer it to the peers that asked for it here in
    /// vain recently (all but those in `skip`), and forget that it failed.
    pub(super) fn offer_to_askers(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        key: RoutingKey,
        block: &Block,
        skip: Option<&[Option<PeerId>]>,
    ) {
        for asker in self.failures.resolve(&key, now) {
            if skip.is_some_and(|s| s.contains(&Some(asker))) || !cx.peers.contains(asker) {
                continue;
            }
            self.stats.offers_sent += 1;
            cx.transmits.push_back((
                asker,
                Message::Offer {
                    key,
                    block: block.clone(),
                },
            ));
        }
    }

    /// A peer offers a block: taken only if this node asked that peer for it and failed
    /// (the failure table), and only if it verifies; then cached and offered onwards.
    pub(super) fn on_offer(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        key: RoutingKey,
        block: Block,
        store: &mut impl BlockStore,
    ) {
        let asked = self
            .failures
            .get(&key, now)
            .is_some_and(|f| f.failed.contains(&from));
        if !asked {
            // Unasked, or asked too long ago (an honest race): ignored, not punished.
            self.stats.offers_ignored += 1;
            return;
        }
        if !store.verify(&key, &block) {
            self.stats.bad_blocks += 1;
            return self.misbehaved(cx, from, "an offered block that fails verification");
        }
        self.stats.offers_taken += 1;
        self.stats.cached += 1;
        cx.events.push_back(Event::Store {
            key,
            block: block.clone(),
            placement: Placement::Cache,
        });
        self.offer_to_askers(cx, now, key, &block, Some(&[Some(from)]));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_insert(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: RoutingKey,
        htl: Htl,
        replicas: u8,
        stored: u8,
        block: Block,
        store: &mut impl BlockStore,
    ) {
        self.stats.inserts_received += 1;
        if stored > 0 && self.store_on_loop(cx, id, from) {
            return;
        }
        // Loop and overload checks first: they are cheap, and a looping insert need not
        // be hashed again.
        if !self.admit_insert(cx, now, from, id, &key, &block, store) {
            return;
        }
        self.offer_to_askers(cx, now, key, &block, Some(&[Some(from)]));
        let max = cx.config.max_htl.0;
        let received = htl.0.min(max);
        let replicas = replicas.clamp(1, MAX_REPLICAS);
        let target = Location::of_key(&key);
        // A node stores the block long-term when the insert is already being stored
        // (the replica walk through the nodes nearest the key), or when it is a sink: no
        // peer closer to the key than itself. The sender counts among the peers: it is
        // connected, so `any_closer` sees it.
        let keep = stored > 0 || !cx.peers.any_closer(target, cx.location);
        // A copy made here moments ago by a sibling route does not count again.
        let again = keep && self.recent.stored(cx.config, now, key);
        // On a walk (so kept), this copy counts; a sink's first copy is counted below.
        let walked = if stored > 0 && !again {
            stored.saturating_add(1).min(replicas)
        } else {
            stored
        };
        let placement = if keep {
            Some(Placement::Store)
        } else if received <= max.saturating_sub(3) {
            Some(Placement::Cache)
        } else {
            None
        };
        if let Some(placement) = placement {
            match placement {
                Placement::Store => self.stats.stored += 1,
                Placement::Cache => self.stats.cached += 1,
            }
            cx.events.push_back(Event::Store {
                key,
                block: block.clone(),
                placement,
            });
        }
        let mut kind = Kind::Insert {
            block,
            replicas,
            stored: walked,
            resume: None,
        };
        if keep && stored == 0 {
            // A sink: the first copy is here.
            kind.start_walk();
            if again {
                kind.extend();
            }
        }
        self.begin(cx, now, id, key, kind, Some(from), received);
    }

    /// The checks every insert from a peer passes, walking or not: loop and overload
    /// first (cheap, and a looping insert need not be hashed again), then the block
    /// against its key, then a collision with a different block held under a signed
    /// key. A block byte for byte the same as the copy held here needs no hash: that
    /// copy was verified when it was stored, and a comparison costs a fraction of one
    /// (inserts come back to nodes that hold them: the walk, the replica walk).
    /// True if it may go on; otherwise it has been answered.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit_insert(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: &RoutingKey,
        block: &Block,
        store: &mut impl BlockStore,
    ) -> bool {
        if !self.admit(cx, now, from, id, crate::block::BLOCK_LEN as u64) {
            return false;
        }
        let held = store.get(key);
        let same = held.as_ref().is_some_and(|(h, _)| h == block);
        if !same && !store.verify(key, block) {
            self.stats.bad_blocks += 1;
            self.misbehaved(cx, from, "insert with a block that fails verification");
            return false;
        }
        if let Some((held, _)) = held {
            if held != *block {
                // Only a signed key can hold two different valid blocks: the first one
                // published stays, and the inserter gets it back.
                self.stats.collisions += 1;
                cx.seen.insert(later(now, cx.config.seen_ttl), id);
                cx.transmits
                    .push_back((from, Message::Data { id, block: held }));
                return false;
            }
        }
        true
    }

    /// The replica walk of an insert this node forwarded on its approach came back here:
    /// store our own (verified) copy of the block and say `Stored`, so the walker counts
    /// this node. True if handled so.
    fn store_on_loop(&mut self, cx: &mut Ctx, id: RequestId, from: PeerId) -> bool {
        let Some(req) = self.requests.get_mut(&id) else {
            return false;
        };
        let Kind::Insert { block, stored, .. } = &req.kind else {
            return false;
        };
        // The originator never stores its own user's blocks, and a node counts once.
        if req.source.is_none() || *stored > 0 || req.stored_on_loop {
            return false;
        }
        req.stored_on_loop = true;
        let event = Event::Store {
            key: req.key,
            block: block.clone(),
            placement: Placement::Store,
        };
        self.stats.stored += 1;
        cx.events.push_back(event);
        cx.transmits.push_back((from, Message::Stored { id }));
        true
    }

    pub(super) fn on_data(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        block: Block,
        store: &mut impl BlockStore,
    ) {
        let Some(req) = self.requests.get_mut(&id) else {
            if !cx.seen.contains(id) {
                self.misbehaved(cx, from, "reply for an unknown request");
            }
            return;
        };
        if !req.tried.contains(&from) {
            return self.misbehaved(cx, from, "data for a request it was not sent");
        }
        let key = req.key;
        if let Kind::Insert { block: ours, .. } = &req.kind {
            // An insert answered with data: a collision further on, if the block is
            // valid under the key and not our own.
            if req.waiting != Some(from) || !store.verify(&key, &block) || block == *ours {
                return self.misbehaved(cx, from, "data for an insert that is no collision");
            }
            self.stats.collisions += 1;
            return self.finish(cx, None, id, Outcome::Collision(block));
        }
        if !store.verify(&key, &block) {
            self.stats.bad_blocks += 1;
            self.misbehaved(cx, from, "data that fails verification");
            if let Some(req) = self.requests.get_mut(&id) {
                if req.waiting == Some(from) {
                    req.deadline = None;
                    self.stop_waiting(cx, id);
                    self.advance(cx, now, id);
                }
            }
            return;
        }
        // Late data from a peer that timed out counts as much as the awaited answer.
        if let Some(req) = self.requests.get(&id) {
            let (source, received) = (req.source, req.received_htl);
            if let Some(o) = cx.opennet.as_deref_mut() {
                o.note_success(cx.peers, from);
            }
            cx.peers.observe_outcome(from, true);
            cx.peers.recovered(from);
            if let Some(o) = cx.opennet.as_deref_mut() {
                o.await_fold(cx.config, now, id, source, received, from);
            }
        }
        self.finish(cx, Some(now), id, Outcome::Data(block, Some(from)));
    }

    /// `DataNotFound`, `RouteNotFound`, `RejectedLoop`, `RejectedOverload`, `InsertReply`.
    pub(super) fn on_reply(&mut self, cx: &mut Ctx, now: Instant, from: PeerId, msg: Message) {
        let Some(id) = msg.request_id() else {
            return;
        };
        let Some(req) = self.requests.get_mut(&id) else {
            if !cx.seen.contains(id) {
                self.misbehaved(cx, from, "reply for an unknown request");
            }
            return;
        };
        if req.waiting != Some(from) {
            if !req.tried.contains(&from) {
                self.misbehaved(cx, from, "reply for a request it was not sent");
            }
            // Otherwise a late answer from a peer we gave up on: the request moved on.
            return;
        }
        let is_insert = matches!(req.kind, Kind::Insert { .. });
        if !matches!(msg, Message::RejectedOverload { .. }) {
            // Any real answer: the peer is working again.
            cx.peers.recovered(from);
        }
        self.stop_waiting(cx, id);
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.deadline = None;
        req.timed_out_last = false;
        match msg {
            Message::DataNotFound { .. } if !is_insert => {
                cx.peers.observe_outcome(from, false);
                self.finish(cx, Some(now), id, Outcome::DataNotFound)
            }
            Message::InsertReply { .. } if is_insert => {
                if let Kind::Insert {
                    replicas,
                    stored,
                    resume: resume @ Some(_),
                    ..
                } = &mut req.kind
                {
                    // The first chain of the walk is done: the second, on the other side.
                    *stored = *replicas;
                    *replicas = resume.take().unwrap_or(*replicas);
                    req.next_side = req.other_side;
                    req.accepted = true;
                    self.advance(cx, now, id);
                } else {
                    self.finish(cx, None, id, Outcome::InsertDone)
                }
            }
            Message::Stored { .. } if req.kind.replicating() => {
                // One more copy, on a node of the approach; no hops spent.
                if let Kind::Insert { stored, .. } = &mut req.kind {
                    *stored = stored.saturating_add(1);
                }
                req.accepted = true;
                req.free_next = true;
                self.advance(cx, now, id);
            }
            Message::RouteNotFound { htl, .. } => {
                req.accepted = true;
                req.htl = req.htl.min(htl.0);
                self.advance(cx, now, id);
            }
            Message::RejectedLoop { .. } => {
                req.free_next = true;
                self.advance(cx, now, id);
            }
            Message::RejectedOverload { .. } => {
                if !is_insert {
                    cx.peers.observe_outcome(from, false);
                }
                req.overloaded = true;
                req.free_next = true;
                let c = &cx.config;
                cx.peers.back_off_more(from, now, c.backoff, c.max_backoff);
                self.advance(cx, now, id);
            }
            _ => {
                self.misbehaved(cx, from, "reply of the wrong kind");
                self.advance(cx, now, id);
            }
        }
    }

    pub(super) fn on_timeout(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) {
        let Some(peer) = self.stop_waiting(cx, id) else {
            return;
        };
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.deadline = None;
        if req.deadline_is_budget {
            // Our own time is up; the peer is not to blame.
            self.stats.budget_expired += 1;
            return self.finish(cx, None, id, Outcome::NoRoute);
        }
        self.stats.timeouts += 1;
        req.timed_out_last = true;
        if matches!(req.kind, Kind::Request) {
            cx.peers.observe_outcome(peer, false);
        }
        let c = &cx.config;
        cx.peers.back_off_more(peer, now, c.backoff, c.max_backoff);
        self.advance(cx, now, id);
    }

    /// A reply for an id with no state: quiet if the id was ours recently (a late reply),
    /// misbehaviour otherwise.
    pub(super) fn misbehaved(&mut self, cx: &mut Ctx, peer: PeerId, reason: &'static str) {
        self.stats.misbehaviour += 1;
        cx.events.push_back(Event::PeerMisbehaved { peer, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_is_bounded_and_expires_in_order() {
        use std::time::Duration;
        let t0 = Instant::now();
        let mut seen = Seen {
            cap: 3,
            ..Seen::default()
        };
        for i in 0..5u64 {
            seen.insert(t0 + Duration::from_secs(i), RequestId(i));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.contains(RequestId(1)) && seen.contains(RequestId(2)));
        seen.expire(t0 + Duration::from_secs(3));
        assert!(!seen.contains(RequestId(3)) && seen.contains(RequestId(4)));
        assert_eq!(seen.len(), 1);
        // Emptied, then one id again: it still expires on time, not before.
        seen.expire(t0 + Duration::from_secs(4));
        assert_eq!(seen.len(), 0);
        seen.insert(t0 + Duration::from_secs(9), RequestId(9));
        seen.expire(t0 + Duration::from_secs(8));
        assert!(seen.contains(RequestId(9)));
        seen.expire(t0 + Duration::from_secs(9));
        assert_eq!(seen.len(), 0);
    }
}
