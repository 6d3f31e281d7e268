//! What peers send to be routed: requests and inserts admitted or refused (loops,
//! overload), and blocks offered to peers that asked in vain.

use super::state::Kind;
use super::Requests;
use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Htl, Message, RequestId, MAX_REPLICAS};
use crate::ring::Location;
use crate::router::ctx::Ctx;
use crate::router::time::later;
use crate::router::{BlockStore, Event, PeerId, Placement};
use std::time::Instant;

impl Requests {
    /// Loop and overload checks shared by requests and inserts (holding `bytes` while
    /// they run); true if accepted.
    pub(in crate::router) fn admit(
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
    pub(in crate::router) fn on_request(
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
    pub(in crate::router) fn offer_to_askers(
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
    pub(in crate::router) fn on_offer(
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
    pub(in crate::router) fn on_insert(
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
    pub(in crate::router) fn admit_insert(
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
    pub(in crate::router) fn store_on_loop(
        &mut self,
        cx: &mut Ctx,
        id: RequestId,
        from: PeerId,
    ) -> bool {
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
}
