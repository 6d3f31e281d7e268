//! The anonymity walk: a request leaves its originator through a random-walk prefix
//! before greedy routing starts, so the neighbour that sees a key asked for first is
//! rarely next to the one who asked (docs/anonymity.md).
//!
//! Crowds (Reiter & Rubin) with one change that matters against Levine et al.'s
//! neighbour test: the walk is chosen per *tunnel*, not per request. The originator
//! always takes one walk hop; each node on the walk ends it with chance
//! `1 − walk_probability` or passes it to one of its peers. Both choices are drawn from a
//! hash of the node's secret and the tunnel id, not from a random generator, so every
//! request of one tunnel (every block of one download) takes the same walk and leaves
//! the same node for greedy routing. No state is kept per tunnel. A neighbour of the
//! originator therefore sees either all of a download's blocks (it is on the walk, and so
//! are relayers further on: each forwards the whole tunnel) or none; and the node that
//! spreads the blocks over its peers, the pattern the neighbour test looks for, is the
//! walk's end, which is not the originator.
//!
//! The node ending the walk routes as an originator does (full HTL, first attempt not
//! decremented), so its neighbours cannot tell it from one. A walk's next hop that
//! refuses it (loop, overload) or times out ends the walk at the node that sent it;
//! answers (`Data`, `DataNotFound`, `RouteNotFound`) travel back as for any request.
//! Each hop renames the tunnel for the next, so colluding nodes on one walk do not learn
//! from the tunnel id that they are on the same one.

use super::ctx::Ctx;
use super::peers::PeerTable;
use super::request::Requests;
use super::request::{Kind, Walk};
use super::time::later;
use super::{PeerId, RouterConfig};
use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{Message, RequestId, MAX_REPLICAS};
use sha2::{Digest, Sha256};
use std::time::Instant;

/// Hops a walk step's own deadline allows beyond the greedy search's budget: the walk
/// after it and its way back.
const WALK_SLACK_HOPS: u32 = 8;

/// Peers a walk step tries in turn (the tunnel's first, second and third choices)
/// before it gives up on walking from here.
const WALK_TRIES: usize = 3;

/// What one node's secret says about one tunnel.
struct Draw {
    /// Uniform in `[0, 2^64)`: the walk goes on here if below `walk_probability × 2^64`.
    go_on: u64,
    /// The tunnel's name at the next hop.
    renamed: u64,
    /// Key of the rendezvous hash that picks the next hop.
    pick: u64,
}

/// A 64-bit mixer (splitmix64's finaliser): spreads the rendezvous scores.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The walk's choices at this node: a secret that keys them (so nobody else can predict
/// where this node sends a tunnel) and the tunnel of the moment for local requests whose
/// user named none.
#[derive(Clone, Debug)]
pub(super) struct Walker {
    /// Keys this node's walk choices.
    secret: [u8; 32],
    /// The tunnel for local requests whose user named none, and until when it holds.
    tunnel: Option<(u64, Instant)>,
}

impl Walker {
    /// The walk's choices keyed from this node's random seed.
    pub(super) fn new(seed: u64) -> Walker {
        let mut h = Sha256::new();
        h.update(b"veil walk secret");
        h.update(seed.to_le_bytes());
        Walker {
            secret: h.finalize().into(),
            tunnel: None,
        }
    }

    fn draw(&self, tunnel: u64) -> Draw {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(tunnel.to_le_bytes());
        let d: [u8; 32] = h.finalize().into();
        let word = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&d[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Draw {
            go_on: word(0),
            renamed: word(1),
            pick: word(2),
        }
    }

    /// Whether the walk of `tunnel` goes on from this node (the originator always takes
    /// one hop: `first`).
    fn goes_on(&self, config: &RouterConfig, tunnel: u64, first: bool) -> bool {
        if first {
            return true;
        }
        let p = config.walk_probability.clamp(0.0, 1.0);
        // u64::MAX as f64 rounds to 2^64; the cast saturates, so p = 1 never ends.
        (self.draw(tunnel).go_on as f64) < p * u64::MAX as f64
    }

    /// The tunnel for a local request whose user named none: one per `tunnel_lifetime`,
    /// so a burst of requests (a download) shares a walk.
    pub(super) fn default_tunnel(&mut self, cx: &mut Ctx, now: Instant) -> u64 {
        use rand::Rng;
        match self.tunnel {
            Some((t, until)) if now < until => t,
            _ => {
                let t = cx.rng.gen();
                self.tunnel = Some((t, later(now, cx.config.tunnel_lifetime)));
                t
            }
        }
    }

    /// The walk's next hop for `tunnel`: a rendezvous hash over the routable peers that
    /// are not `exclude`d and not backed off (backed-off ones only if nothing else is
    /// left), so the choice moves only when the chosen peer goes, and a second try takes
    /// the tunnel's second choice.
    fn next(
        &self,
        peers: &PeerTable,
        tunnel: u64,
        exclude: &[PeerId],
        now: Instant,
    ) -> Option<PeerId> {
        let key = self.draw(tunnel).pick;
        peers
            .iter()
            .filter(|p| p.routable && !exclude.contains(&p.id))
            .map(|p| {
                let backed_off = p.backoff_until.is_some_and(|t| t > now);
                (!backed_off, mix(key ^ mix(p.id.0)), p.id)
            })
            .max()
            .map(|(_, _, id)| id)
    }
}

/// Whether requests start with a walk here.
pub(super) fn walking(config: &RouterConfig) -> bool {
    config.walk_probability > 0.0
}

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
    pub(super) fn walk_step(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        id: RequestId,
        tunnel: u64,
    ) -> Option<RequestId> {
        let req = self.requests.get(&id)?;
        let (source, tries, answered) = (req.source, req.tried.len(), req.accepted);
        if answered && source.is_some() {
            self.finish(cx, None, id, super::request::Outcome::NoRoute);
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
                self.finish(cx, None, id, super::request::Outcome::NoRoute);
                return None;
            }
            return Some(self.end_walk(cx, now, id));
        };
        let max = cx.config.max_htl.0;
        let budget = cx
            .config
            .hop_timeout
            .saturating_mul(u32::from(max) + 1 + WALK_SLACK_HOPS);
        let renamed = self.walk.draw(tunnel).renamed;
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
    fn end_walk(&mut self, cx: &mut Ctx, now: Instant, id: RequestId) -> RequestId {
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
            cx.events.push_back(super::Event::WalkEnded {
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
            cx.events.push_back(super::Event::Store {
                key: req.key,
                block: block.clone(),
                placement: super::Placement::Store,
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
    pub(super) fn on_walk(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: RoutingKey,
        tunnel: u64,
        store: &mut impl super::BlockStore,
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
    pub(super) fn on_insert_walk(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        key: RoutingKey,
        tunnel: u64,
        replicas: u8,
        block: Block,
        store: &mut impl super::BlockStore,
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
    pub(super) fn serve(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        block: Block,
        placement: super::Placement,
    ) {
        cx.seen.insert(later(now, cx.config.seen_ttl), id);
        match placement {
            super::Placement::Store => self.stats.served_from_store += 1,
            super::Placement::Cache => self.stats.served_from_cache += 1,
        }
        cx.transmits.push_back((from, Message::Data { id, block }));
        if let Some(o) = cx.opennet.as_deref_mut() {
            o.offer_fold(cx.config, cx.transmits, from, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mix;

    #[test]
    fn the_mixer_is_splitmix64s() {
        // splitmix64's first output for seed 0 is the finaliser of its golden-ratio step.
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(0), 0);
    }
}
