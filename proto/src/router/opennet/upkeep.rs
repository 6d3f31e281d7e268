//! Upkeep: the timers, neighbour lists for friend-of-a-friend routing, letting seeds go,
//! and looking around the ring neighbourhood (stabilisation).

use super::{Opennet, PeerOrigin};
use crate::message::Message;
use crate::ring::Location;
use crate::router::ctx::{Ctx, View};
use crate::router::time::{far_past, later};
use crate::router::{Event, PeerId};
use std::time::Instant;

impl Opennet {
    /// The next instant opennet upkeep wants [`Router::handle_timeout`].
    pub(in crate::router) fn timeout(&self, v: View) -> Option<Instant> {
        if !v.config.opennet.enabled {
            return self.neighbours_due.filter(|_| self.foaf_on(v));
        }
        let ttl = v.config.opennet.transient_ttl;
        let transient = v
            .peers
            .iter()
            .filter(|p| !p.routable)
            .map(|p| later(p.added_at, ttl))
            .min();
        let announce = if self.needs_announce(v) {
            self.next_announce
        } else {
            None
        };
        [
            transient,
            announce,
            self.next_stabilize,
            self.neighbours_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn needs_announce(&self, v: View) -> bool {
        v.config.opennet.enabled
            && self.address.is_some()
            && v.peers.len() > 0
            && v.peers.routable() < v.config.opennet.min_peers
    }

    /// After a link came or went: announce soon if peers are short, let seeds go if
    /// not.
    pub(in crate::router) fn peers_changed(&mut self, cx: &mut Ctx, now: Instant) {
        self.schedule_neighbours(cx, now);
        if !cx.config.opennet.enabled {
            return;
        }
        if self.needs_announce(cx.view()) {
            if self.next_announce.is_none() {
                self.next_announce = Some(now);
            }
        } else {
            self.announce_streak = 0;
        }
        if self.next_stabilize.is_none()
            && self.address.is_some()
            && !cx.config.opennet.stabilize_interval.is_zero()
        {
            self.next_stabilize = Some(later(now, cx.config.opennet.stabilize_interval));
        }
        if self.ring_neighbours(cx.view()) != self.ring_seen {
            // The neighbourhood moved (a neighbour left or a nearer one came): look
            // around again soon, at the short pause.
            self.stabilize_streak = 0;
            let soon = later(now, cx.config.opennet.stabilize_interval);
            self.next_stabilize = self.next_stabilize.map(|t| t.min(soon));
        }
        self.release_seeds(cx);
    }

    /// Whether this node exchanges neighbour lists: opennet's friend-of-a-friend
    /// routing, or a darknet's (`neighbour_lists`).
    pub(in crate::router) fn foaf_on(&self, v: View) -> bool {
        v.config.opennet.foaf && (v.config.opennet.enabled || v.config.neighbour_lists)
    }

    /// Sends our peers' locations soon (at most once per `neighbours_interval`).
    pub(in crate::router) fn schedule_neighbours(&mut self, cx: &mut Ctx, now: Instant) {
        if self.foaf_on(cx.view()) && self.neighbours_due.is_none() {
            let next = self.neighbours_sent.map_or(now, |t| {
                later(t, cx.config.opennet.neighbours_interval).max(now)
            });
            self.neighbours_due = Some(next);
        }
    }

    /// Tells every routable peer the locations of our routable peers.
    pub(super) fn send_neighbours(&mut self, cx: &mut Ctx, now: Instant) {
        self.neighbours_due = None;
        self.neighbours_sent = Some(now);
        let routable: Vec<(PeerId, Location)> = cx
            .peers
            .iter()
            .filter(|p| p.routable)
            .map(|p| (p.id, p.location))
            .collect();
        let locations: Vec<Location> = routable
            .iter()
            .map(|(_, l)| *l)
            .take(crate::message::MAX_NEIGHBOURS)
            .collect();
        let Ok(list) = crate::message::BoundedVec::new(locations) else {
            return;
        };
        for (peer, _) in routable {
            cx.transmits.push_back((
                peer,
                Message::Neighbours {
                    locations: list.clone(),
                },
            ));
        }
    }

    /// A peer's neighbour list (friend-of-a-friend routing).
    pub(in crate::router) fn on_neighbours(
        &mut self,
        cx: &mut Ctx,
        from: PeerId,
        mut locations: Vec<Location>,
    ) {
        if cx.config.opennet.foaf {
            // Our own place in the list says nothing about where the peer leads.
            let me = cx.location;
            locations.retain(|l| *l != me);
            cx.peers.set_neighbours(from, locations);
        }
    }

    /// Drops the links to seeds once enough other routable peers are connected.
    pub(super) fn release_seeds(&mut self, cx: &mut Ctx) {
        let min = cx.config.opennet.min_peers;
        let others = cx
            .peers
            .iter()
            .filter(|p| p.routable && p.origin != PeerOrigin::Seed)
            .count();
        if others < min {
            return;
        }
        let seeds: Vec<PeerId> = cx
            .peers
            .iter()
            .filter(|p| p.origin == PeerOrigin::Seed)
            .map(|p| p.id)
            .collect();
        for peer in seeds {
            // Not routed to while the shell closes it.
            if let Some(p) = cx.peers.get_mut(peer) {
                p.origin = PeerOrigin::Inbound;
                p.routable = false;
                p.added_at = far_past(p.added_at);
            }
            self.stats.peers_dropped += 1;
            cx.events.push_back(Event::Disconnect {
                peer,
                reason: "seed no longer needed",
            });
        }
    }

    /// Opennet upkeep: expiry, closing transient and seed links, announcing.
    pub(in crate::router) fn tick(&mut self, cx: &mut Ctx, now: Instant) {
        if !cx.config.opennet.enabled {
            // Without opennet the only timer here is the neighbour list's
            // (`opennet_timeout`), and `handle_timeout` calls this when it is due.
            self.send_neighbours(cx, now);
            return;
        }
        self.forget_stale(cx, now);
        // Transient links have had their time.
        let ttl = cx.config.opennet.transient_ttl;
        let stale: Vec<PeerId> = cx
            .peers
            .iter()
            .filter(|p| !p.routable && later(p.added_at, ttl) <= now)
            .map(|p| p.id)
            .collect();
        for peer in stale {
            cx.events.push_back(Event::Disconnect {
                peer,
                reason: "transient link expired",
            });
        }
        self.release_seeds(cx);
        if self.next_stabilize.is_some_and(|t| t <= now) {
            self.stabilize(cx, now);
        }
        if self.neighbours_due.is_some_and(|t| t <= now) {
            self.send_neighbours(cx, now);
        }
        if self.needs_announce(cx.view()) && self.next_announce.is_none_or(|t| t <= now) {
            self.announce(cx, now);
        }
    }

    /// Forgets expired relays, folds, pending dials and expected newcomers.
    pub(super) fn forget_stale(&mut self, cx: &mut Ctx, now: Instant) {
        self.relays.retain(|_, r| r.expires > now);
        while let Some(&(t, id)) = self.fold_order.front() {
            if t > now {
                break;
            }
            self.fold_order.pop_front();
            if self.folds.get(&id).is_some_and(|f| f.expires <= now) {
                self.folds.remove(&id);
            }
        }
        self.pending.retain(|_, (t, _)| *t > now);
        let peers = &cx.peers;
        self.bad_offers.retain(|id, _| peers.get(*id).is_some());
        self.expected.retain(|_, t| *t > now);
    }

    /// Announces through the nearest peer on each side of the ring: the walk ends at
    /// whichever node is nearest to us there, which offers itself and its neighbours.
    /// While those two peers stay the same the pause doubles, up to
    /// `stabilize_max_interval`: a settled node costs its neighbourhood little, and the
    /// simulator's long joins stay linear in the number of nodes.
    pub(super) fn stabilize(&mut self, cx: &mut Ctx, now: Instant) {
        let ring = self.ring_neighbours(cx.view());
        if ring == self.ring_seen {
            self.stabilize_streak = self.stabilize_streak.saturating_add(1);
        } else {
            self.ring_seen = ring;
            self.stabilize_streak = 0;
        }
        let config = &cx.config.opennet;
        let pause = config
            .stabilize_interval
            .saturating_mul(1 << self.stabilize_streak.min(16))
            .min(config.stabilize_max_interval.max(config.stabilize_interval));
        self.next_stabilize = Some(later(now, pause));
        for peer in ring.into_iter().flatten() {
            self.send_announce(cx, now, vec![peer]);
        }
    }

    /// The nearest routable peer (not a seed) on each side of our location, clockwise
    /// first.
    pub(super) fn ring_neighbours(&self, v: View) -> [Option<PeerId>; 2] {
        let me = v.location;
        [true, false].map(|side| {
            v.peers
                .iter()
                .filter(|p| p.routable && p.origin != PeerOrigin::Seed)
                .filter(|p| p.location.is_clockwise_of(me) == side)
                .min_by_key(|p| (me.distance(p.location), p.id))
                .map(|p| p.id)
        })
    }
}
