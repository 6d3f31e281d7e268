//! Per-request state and the routing steps: accept or reject an incoming request or
//! insert, forward it to the next peer, react to replies and timeouts, and finish it.
//!
//! A request's life at one node: `begin` creates its [`Req`](state::Req); `advance` sends it to the
//! closest untried peer or, with nothing left, finishes it; replies and timeouts either
//! finish it or call `advance` again. `finish` answers upstream (or tells the local
//! user), removes the state and leaves the id in [`Seen`](crate::router::seen::Seen) so loops and late replies are
//! recognised for `seen_ttl`.
//!
//! The machine's state and its inputs from the router are here; the steps are in
//! `state` (the types), `route` (forwarding and finishing), `incoming` (what peers send
//! to be routed) and `replies` (what comes back).

mod incoming;
mod replies;
mod route;
mod spread;
mod state;
mod walk;

pub(in crate::router) use state::{Kind, Req, Walk};

use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Htl, Message, RequestId, MAX_REPLICAS};
use crate::ring::Location;
use crate::router::ctx::{Ctx, IdsInUse};
use crate::router::failures::FailureTable;
use crate::router::seen::fresh_id;
use crate::router::spread::{Recent, Spread};
use crate::router::walk::Walker;
use crate::router::{BlockStore, Event, Fetched, PeerId, RouterStats};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// The requests machine: the requests and inserts this node works on, their deadlines,
/// the failure table, the anonymity walk's secret and tunnel, spread inserts and the
/// counters of all of it. It takes each input with the router's [`Ctx`].
#[derive(Clone, Debug)]
pub(in crate::router) struct Requests {
    pub(in crate::router) requests: BTreeMap<RequestId, Box<Req>>,
    /// Deadlines in order. Entries whose request moved on are dropped lazily (see
    /// `tidy_timers`), so the first entry is always the next real deadline.
    pub(in crate::router) timers: BTreeSet<(Instant, RequestId)>,
    pub(in crate::router) failures: FailureTable,
    /// The anonymity walk's choices ([`super::walk`]).
    pub(in crate::router) walk: Walker,
    /// Spread inserts' routes in flight, by route id: the id their shell knows.
    pub(in crate::router) spreads: HashMap<RequestId, RequestId>,
    /// Spread inserts in flight, by the id their shell knows.
    pub(in crate::router) spread_parents: HashMap<RequestId, Spread>,
    /// Keys stored for an insert moments ago (sibling routes do not count twice).
    pub(in crate::router) recent: Recent,
    pub(in crate::router) stats: RouterStats,
}

/// A local insert as its user asked for it.
pub(in crate::router) struct InsertStart {
    pub key: RoutingKey,
    pub block: Block,
    pub htl: Option<Htl>,
    pub replicas: Option<u8>,
    pub tunnel: Option<u64>,
}

/// The requests in flight, by id, are the ids other machines must not draw.
impl IdsInUse for BTreeMap<RequestId, Box<Req>> {
    fn in_use(&self, id: RequestId) -> bool {
        self.contains_key(&id)
    }
}

impl Requests {
    /// No requests yet; the walk keyed from `seed`.
    pub(in crate::router) fn new(seed: u64) -> Requests {
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
    pub(in crate::router) fn in_flight(&self) -> &BTreeMap<RequestId, Box<Req>> {
        &self.requests
    }

    /// Counters of requests, inserts and the rest of this machine's work.
    pub(in crate::router) fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// With no request in flight and no deadline pending, frees the maps of work in
    /// flight (see `Router::release_if_idle`). True if it was idle.
    pub(in crate::router) fn release_if_idle(&mut self) -> bool {
        let idle = self.requests.is_empty() && self.timers.is_empty();
        if idle {
            self.requests = BTreeMap::new();
            self.timers = BTreeSet::new();
        }
        idle
    }

    /// The next deadline of a request.
    pub(in crate::router) fn next_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Forgets failures past their time. `recent` is pruned as it grows
    /// (`Recent::stored`): stale entries say nothing, and most inputs are not inserts.
    pub(in crate::router) fn expire(&mut self, now: Instant) {
        self.failures.expire(now);
    }

    /// Drops timer entries of requests that finished or moved on, up to the first live
    /// one. Called at the end of every input.
    pub(in crate::router) fn tidy_timers(&mut self) {
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
    pub(in crate::router) fn fresh_id(&mut self, cx: &mut Ctx) -> RequestId {
        let requests = &self.requests;
        fresh_id(cx.rng, cx.seen, &|id| requests.contains_key(&id))
    }

    /// A message from `from` about requests and inserts: one to route, data, an offer,
    /// or a reply to one this node sent.
    pub(in crate::router) fn handle(
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
    pub(in crate::router) fn handle_timeout(&mut self, cx: &mut Ctx, now: Instant) {
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
    pub(in crate::router) fn peer_removed(&mut self, cx: &mut Ctx, now: Instant, peer: PeerId) {
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
    pub(in crate::router) fn start_request(
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
    pub(in crate::router) fn start_insert(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        s: InsertStart,
    ) -> RequestId {
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
