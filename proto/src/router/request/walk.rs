//! The anonymity walk of requests and inserts: a step passed on along its tunnel, the
//! walk ended here and the greedy search begun, and the answer served back along it.

use super::state::{Kind, Outcome, Walk};
use super::Requests;
use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Message, RequestId, MAX_REPLICAS};
use crate::router::ctx::Ctx;
use crate::router::time::later;
use crate::router::walk::{WALK_SLACK_HOPS, WALK_TRIES};
use crate::router::PeerId;
use std::time::Instant;

impl Requests {
    /// A request `id` on its walk here. Returns `None` when it was passed on (or
    /// answered), or the id under which it is now to be routed greedily from here: the
    /// walk ended here (by the draw, for want of peers, or because its next hops could
    /// not take it).
    ///
    /// A walk hop that refuses or times out is replaced by the tunnel's next choice, up
    /// to [`WALK_TRIES`] peers; one whose search came back empty-handed is the answer at
    /// a relay, and at the originator the next walk is tried (a relay trying again would
    /// multiply a missing key's cost along the walk). A relay that ends the walk routes
    /// under a fresh id, so the nodes of the walk do not refuse the greedy search as a
    /// loop (in a sparse network they can cut it off) and the two phases cannot be
    /// linked by their id; its answer goes upstream under the walk's id.
    pub(in crate::router) fn walk_step(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        id: RequestId,
        tunnel: u64,
    ) -> Option<RequestId> {
        let req = self.requests.get(&id)?;
        let (source, tries, answered) = (req.source, req.tried.len(), req.accepted);
        if answered && source.is_some() {
            self.finish(cx, None, id, Outcome::NoRoute);
            return None;
        }
        let go_on = tries > 0 || self.walk.goes_on(cx.config, tunnel, source.is_none());
        let mut exclude = req.tried.clone();
        exclude.extend(source);
        let next = if go_on && tries < WALK_TRIES {
            self.walk.next(cx.peers, tunnel, &exclude, now)
        } else {
            None
        };
        let Some(peer) = next else {
            if source.is_none() && tries > 0 {
                // Every walk the originator tried came back without the block.
                self.finish(cx, None, id, Outcome::NoRoute);
                return None;
            }
            return Some(self.end_walk(cx, now, id));
        };
        let max = cx.config.max_htl.0;
        let budget = cx
            .config
            .hop_timeout
            .saturating_mul(u32::from(max) + 1 + WALK_SLACK_HOPS);
        let renamed = self.walk.renamed(tunnel);
        let req = self.requests.get_mut(&id)?;
        req.tried.push(peer);
        req.waiting = Some(peer);
        req.deadline_is_budget = false;
        let deadline = later(now, budget);
        req.deadline = Some(deadline);
        self.timers.insert((deadline, id));
        if source.is_some() {
            cx.peers.add_forwarded(peer, true);
            self.stats.walks_relayed += 1;
        } else {
            self.stats.walks_started += 1;
        }
        let key = req.key;
        let msg = match &req.kind {
            Kind::Request => Message::Walk {
                id,
                key,
                tunnel: renamed,
            },
            Kind::Insert {
                block, replicas, ..
            } => Message::InsertWalk {
                id,
                key,
                tunnel: renamed,
                replicas: *replicas,
                block: block.clone(),
            },
        };
        cx.transmits.push_back((peer, msg));
        None
    }

    /// The walk of `id` ends here: from now on it is routed as this node's own would be
    /// (full HTL, first attempt not decremented), under a fresh id at a relay. Returns
    /// the id to route under.
    pub(super) fn end_walk(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) -> RequestId {
        let max = cx.config.max_htl.0;
        let sink = cx.location;
        let Some(mut req) = self.requests.remove(&id) else {
            return id;
        };
        self.stats.walks_ended += 1;
        req.walk = Walk::End;
        req.htl = max;
        req.received_htl = max;
        req.free_next = true;
        let sink = !cx.peers.any_closer(req.target, sink);
        let new_id = if req.source.is_some() {
            // Answer before the upstream walk step gives up on us.
            req.answer_by = Some(later(
                now,
                cx.config.hop_timeout.saturating_mul(u32::from(max)),
            ));
            req.reply_id = Some(id);
            let fresh = self.fresh_id(cx);
            cx.seen.insert(later(now, cx.config.seen_ttl), fresh);
            cx.events.push_back(crate::router::Event::WalkEnded {
                walk: id,
                greedy: fresh,
            });
            fresh
        } else {
            id
        };
        if let (Kind::Insert { block, .. }, Some(_), true) = (&req.kind, req.source, sink) {
            // An insert whose walk ends at a sink for its key: the first copy is here
            // (an originator's own copy is its shell's), and the replica walk starts.
            cx.events.push_back(crate::router::Event::Store {
                key: req.key,
                block: block.clone(),
                placement: crate::router::Placement::Store,
            });
            self.stats.stored += 1;
            req.kind.start_walk();
            if self.recent.stored(cx.config, now, req.key) {
                req.kind.extend();
            }
        }
        self.requests.insert(new_id, req);
        new_id
    }

    /// A peer's request on its walk.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::router) fn on_walk(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: RoutingKey,
        tunnel: u64,
        store: &mut impl crate::router::BlockStore,
    ) {
        self.stats.requests_received += 1;
        if !self.admit(cx, now, from, id, 0) {
            return;
        }
        if let Some((block, placement)) = store.get(&key) {
            return self.serve(cx, now, from, id, block, placement);
        }
        let max = cx.config.max_htl.0;
        self.begin_walk(
            cx,
            now,
            id,
            key,
            Kind::Request,
            Some(from),
            max,
            Walk::Step(tunnel),
        );
    }

    /// A peer's insert on its walk: checked as any insert is, then passed on or
    /// inserted from here.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::router) fn on_insert_walk(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: RoutingKey,
        tunnel: u64,
        replicas: u8,
        block: Block,
        store: &mut impl crate::router::BlockStore,
    ) {
        self.stats.inserts_received += 1;
        if !self.admit_insert(cx, now, from, id, &key, &block, store) {
            return;
        }
        let kind = Kind::Insert {
            block,
            replicas: replicas.clamp(1, MAX_REPLICAS),
            stored: 0,
            resume: None,
        };
        let max = cx.config.max_htl.0;
        self.begin_walk(cx, now, id, key, kind, Some(from), max, Walk::Step(tunnel));
    }

    /// Answers `id` from this node's storage.
    pub(in crate::router) fn serve(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        block: Block,
        placement: crate::router::Placement,
    ) {
        cx.seen.insert(later(now, cx.config.seen_ttl), id);
        match placement {
            crate::router::Placement::Store => self.stats.served_from_store += 1,
            crate::router::Placement::Cache => self.stats.served_from_cache += 1,
        }
        cx.transmits.push_back((from, Message::Data { id, block }));
        if let Some(o) = cx.opennet.as_deref_mut() {
            o.offer_fold(cx.config, cx.transmits, from, id);
        }
    }
}
