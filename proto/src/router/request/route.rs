//! Forwarding: a request begins here, goes to the next peer while HTL and peers last,
//! and finishes (an answer upstream, or its user told).

use super::state::{Kind, Outcome, Req, Walk};
use super::Requests;
use crate::keys::RoutingKey;
use crate::message::{Htl, Message, RequestId};
use crate::ring::Location;
use crate::router::ctx::Ctx;
use crate::router::failures::FailureTable;
use crate::router::peers::decrement;
use crate::router::time::later;
use crate::router::{
    Event, Fetched, InsertFailure, InsertReport, PeerId, Placement, RequestFailure,
};
use std::time::Instant;

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

impl Requests {
    /// Creates the state for `id` and routes it.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::router) fn begin(
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

    /// As [`Requests::begin`], at a given place on the request's anonymity walk.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::router) fn begin_walk(
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
    pub(in crate::router) fn advance(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) {
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
    pub(in crate::router) fn out_of_hops(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) {
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
    pub(in crate::router) fn send_attempt(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        id: RequestId,
        peer: PeerId,
    ) {
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
    pub(in crate::router) fn finish(
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
    pub(in crate::router) fn answer_upstream(
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
    pub(in crate::router) fn tell_user(
        &mut self,
        cx: &mut Ctx,
        id: RequestId,
        req: &Req,
        outcome: Outcome,
    ) {
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
    pub(in crate::router) fn stop_waiting(
        &mut self,
        cx: &mut Ctx,
        id: RequestId,
    ) -> Option<PeerId> {
        let req = self.requests.get_mut(&id)?;
        let peer = req.waiting.take()?;
        if req.source.is_some() {
            cx.peers.add_forwarded(peer, false);
        }
        Some(peer)
    }
}
