//! Announcements: a newcomer's walk towards its own location, the offers made where it
//! ends, and the replies passed back.

use super::{
    Announce, Opennet, PeerOrigin, Relay, MAX_ANNOUNCES, MAX_EXPECTED, MAX_REPLIES, PENDING_TTL,
    POST_MINIMUM_HOPS,
};
use crate::message::{Htl, Message, PeerAddress, RequestId};
use crate::ring::Location;
use crate::router::ctx::{Ctx, View};
use crate::router::peers::decrement;
use crate::router::time::later;
use crate::router::PeerId;
use rand::Rng;
use std::time::Instant;

/// Sends an announcement on its walk.
fn send_walk(cx: &mut Ctx, to: PeerId, a: Announce) {
    let msg = Message::Announce {
        id: a.id,
        target: a.target,
        address: a.address,
        htl: a.htl,
    };
    cx.send(to, msg);
}

/// Sends (or passes back) one offer for announcement `id`.
fn send_reply(cx: &mut Ctx, to: PeerId, id: RequestId, address: PeerAddress, location: Location) {
    let msg = Message::AnnounceReply {
        id,
        address,
        location,
    };
    cx.send(to, msg);
}

/// Where announcement `a` ends: our routable peers (not in `exclude`, not the newcomer)
/// nearest its target, at most `near_offers`: the nearest on either side of the target
/// first, then the rest by distance.
fn near_offers(v: View, a: &Announce, exclude: &[PeerId]) -> Vec<(PeerAddress, Location)> {
    let target = a.target;
    let mut near: Vec<(crate::ring::Distance, PeerAddress, Location)> = v
        .peers
        .iter()
        .filter(|p| p.routable && !exclude.contains(&p.id))
        .filter_map(|p| {
            p.address
                .as_deref()
                .map(|&addr| (p.location.distance(target), addr, p.location))
        })
        .filter(|(_, addr, _)| addr.key != a.address.key)
        .collect();
    near.sort_by_key(|(d, addr, _)| (*d, addr.key));
    let mut picked: Vec<(PeerAddress, Location)> = Vec::new();
    for want in [true, false] {
        if let Some((_, addr, l)) = near
            .iter()
            .find(|(_, _, l)| l.is_clockwise_of(target) == want)
        {
            picked.push((*addr, *l));
        }
    }
    for (_, addr, l) in &near {
        if picked.len() >= v.config.opennet.near_offers {
            break;
        }
        if !picked.iter().any(|(x, _)| x == addr) {
            picked.push((*addr, *l));
        }
    }
    picked.truncate(v.config.opennet.near_offers);
    picked
}

impl Opennet {
    /// Starts an announcement for our own location.
    pub(super) fn announce(&mut self, cx: &mut Ctx, now: Instant) {
        if self.address.is_none() {
            return;
        }
        let pause = cx
            .config
            .opennet
            .announce_interval
            .saturating_mul(1 << self.announce_streak.min(4));
        self.announce_streak += 1;
        self.next_announce = Some(later(now, pause));
        // The first time through the seeds (they are there for this); after that
        // through a random peer of ours, so each walk passes other nodes on its way
        // (whose answers give links of every length) and ends among our ring
        // neighbours.
        let mut first: Vec<PeerId> = Vec::new();
        let candidates: Vec<PeerId> = cx
            .peers
            .iter()
            .filter(|p| p.routable && p.origin != PeerOrigin::Seed)
            .map(|p| p.id)
            .collect();
        let random = if candidates.is_empty() {
            None
        } else {
            Some(candidates[cx.rng.gen_range(0..candidates.len())])
        };
        match random {
            Some(p) if self.announce_streak > 1 => first.push(p),
            _ => first.extend(
                cx.peers
                    .iter()
                    .filter(|p| p.origin == PeerOrigin::Seed)
                    .map(|p| p.id)
                    .take(2),
            ),
        }
        if first.is_empty() {
            first.extend(random);
        }
        self.stats.announces_started += 1;
        self.send_announce(cx, now, first);
    }

    /// Sends one announcement of ours to `first`.
    pub(super) fn send_announce(&mut self, cx: &mut Ctx, now: Instant, first: Vec<PeerId>) {
        let Some(address) = self.address else {
            return;
        };
        if first.is_empty() {
            return;
        }
        let target = cx.location;
        let id = cx.fresh_id();
        cx.seen.insert(later(now, cx.config.seen_ttl), id);
        self.relays.insert(
            id,
            Relay {
                source: None,
                expires: later(now, cx.config.opennet.announce_ttl),
                replies: 0,
            },
        );
        let htl = cx.config.max_htl;
        for peer in first {
            send_walk(
                cx,
                peer,
                Announce {
                    id,
                    target,
                    address,
                    htl,
                },
            );
        }
    }

    /// An announcement from `from`: answer it if we would link to the newcomer, then
    /// walk it on greedily, or, where the walk ends, offer our peers nearest its target
    /// and let it go on a few hops past the minimum.
    pub(in crate::router) fn on_announce(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        a: Announce,
    ) {
        if !cx.config.opennet.enabled {
            return;
        }
        self.stats.announces_received += 1;
        if self.relays.len() >= MAX_ANNOUNCES {
            self.forget_stale(cx, now);
        }
        if cx.seen.contains(a.id)
            || self.relays.len() >= MAX_ANNOUNCES
            || self.address.is_some_and(|own| own.key == a.address.key)
        {
            // A loop, a flood or ourselves: dropped without a word.
            return;
        }
        cx.seen.insert(later(now, cx.config.seen_ttl), a.id);
        self.relays.insert(
            a.id,
            Relay {
                source: Some(from),
                expires: later(now, cx.config.opennet.announce_ttl),
                replies: 0,
            },
        );
        let newcomer = self.connected_to(cx.view(), &a.address.key);
        // Answer if we would link to the newcomer.
        if newcomer.is_none() && self.wants_peer(cx.view(), now, Some(a.target)) {
            self.offer_self(cx, now, from, &a);
        }
        let mut exclude = vec![from];
        exclude.extend(newcomer);
        let next = decrement(a.htl.0, cx.config.max_htl.0, true, true);
        if next > 0 {
            // Greedy only: a walk that would move away from the target has arrived.
            let own = cx.location.distance(a.target);
            let closer = cx.peers.closest(a.target, &exclude, now).filter(|&p| {
                cx.peers
                    .get(p)
                    .is_some_and(|p| p.location.distance(a.target) < own)
            });
            if let Some(peer) = closer {
                send_walk(
                    cx,
                    peer,
                    Announce {
                        htl: Htl(next),
                        ..a
                    },
                );
                return;
            }
        }
        // The end of the walk: introduce our peers nearest the target.
        for (address, location) in near_offers(cx.view(), &a, &exclude) {
            self.stats.announce_offers += 1;
            send_reply(cx, from, a.id, address, location);
        }
        // Past the local minimum the walk goes on for a few hops through the
        // neighbourhood (the closest peer other than the one it came from), so the
        // newcomer also meets ring neighbours this node does not know; each node where
        // it stops offers its own nearest peers.
        let rest = next.min(POST_MINIMUM_HOPS);
        if rest > 0 {
            if let Some(peer) = cx.peers.closest(a.target, &exclude, now) {
                send_walk(
                    cx,
                    peer,
                    Announce {
                        htl: Htl(rest),
                        ..a
                    },
                );
            }
        }
    }

    /// Offers this node to the newcomer of announcement `a`, and expects it to dial in.
    pub(super) fn offer_self(&mut self, cx: &mut Ctx, now: Instant, from: PeerId, a: &Announce) {
        let Some(own) = self.address else {
            return;
        };
        if self.expected.len() < MAX_EXPECTED {
            self.expected.insert(a.address.key, later(now, PENDING_TTL));
        }
        self.stats.announce_offers += 1;
        let here = cx.location;
        send_reply(cx, from, a.id, own, here);
    }

    /// An offer for announcement `id`: passed back towards its newcomer, or, for our
    /// own announcement, dialled if we want the peer.
    pub(in crate::router) fn on_announce_reply(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        address: PeerAddress,
        location: Location,
    ) {
        let Some(relay) = self.relays.get_mut(&id) else {
            return;
        };
        if relay.replies >= MAX_REPLIES || relay.source == Some(from) {
            return;
        }
        relay.replies += 1;
        match relay.source {
            Some(src) => send_reply(cx, src, id, address, location),
            None => {
                if self.wants_peer(cx.view(), now, Some(location)) {
                    self.connect(cx, now, address, PeerOrigin::Announcement, Some(from));
                }
            }
        }
    }
}
