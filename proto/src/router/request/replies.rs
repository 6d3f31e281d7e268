//! What comes back: data, refusals and answers from the peer a request was sent to, and
//! the deadline when none comes.

use super::state::{Kind, Outcome};
use super::Requests;
use crate::block::Block;
use crate::message::{Message, RequestId};
use crate::router::ctx::Ctx;
use crate::router::{BlockStore, Event, PeerId};
use std::time::Instant;

impl Requests {
    pub(in crate::router) fn on_data(
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
    pub(in crate::router) fn on_reply(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        msg: Message,
    ) {
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
                if req.start_second_chain() {
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

    pub(in crate::router) fn on_timeout(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) {
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
    pub(in crate::router) fn misbehaved(
        &mut self,
        cx: &mut Ctx,
        peer: PeerId,
        reason: &'static str,
    ) {
        self.stats.misbehaviour += 1;
        cx.events.push_back(Event::PeerMisbehaved { peer, reason });
    }
}
