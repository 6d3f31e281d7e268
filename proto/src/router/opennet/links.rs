//! Links: which to keep, which to replace, which addresses to dial, and who is charged
//! for an address that does not answer.

use super::{LinkDecision, Opennet, PeerOrigin, MAX_BAD_OFFERS, MAX_PENDING, PENDING_TTL};
use crate::keys::NodeKey;
use crate::message::PeerAddress;
use crate::ring::Location;
use crate::router::ctx::{Ctx, View};
use crate::router::peers::PeerTable;
use crate::router::time::later;
use crate::router::{Event, PeerId};
use std::time::Instant;

impl Opennet {
    /// Whether this node would take another routable peer now without dropping one.
    pub(in crate::router) fn has_room(&self, v: View) -> bool {
        v.peers.routable() + self.pending.len() < v.config.opennet.max_peers
    }

    /// Decides whether to keep a link that just came up from (or to) the node `key` at
    /// `location`, and with which origin: `origin` is what the shell knows (an inbound
    /// link it did not ask for is [`PeerOrigin::Inbound`]; a newcomer this node
    /// answered becomes [`PeerOrigin::Announcement`]).
    pub(in crate::router) fn link_decision(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        key: &NodeKey,
        location: Location,
        origin: PeerOrigin,
    ) -> (LinkDecision, PeerOrigin) {
        let origin = match (origin, self.expected.remove(key)) {
            (PeerOrigin::Inbound, Some(_)) => PeerOrigin::Announcement,
            (o, _) => o,
        };
        // The address was reachable: whoever offered it told the truth.
        self.offer_linked(key);
        let max = cx.config.opennet.max_peers;
        if cx.peers.routable() < max {
            return (LinkDecision::Accept, origin);
        }
        if origin == PeerOrigin::Friend || cx.config.opennet.enabled {
            if let Some(victim) = self.replaceable(cx.view(), now, Some(location)) {
                self.last_drop = Some(now);
                self.stats.peers_dropped += 1;
                return (LinkDecision::Replace(victim), origin);
            }
        }
        let transient = cx.peers.iter().filter(|p| !p.routable).count();
        if cx.config.opennet.enabled
            && matches!(origin, PeerOrigin::Inbound | PeerOrigin::Announcement)
            && transient < cx.config.opennet.transient_slots
        {
            self.stats.links_transient += 1;
            return (LinkDecision::Transient, origin);
        }
        self.stats.links_refused += 1;
        (LinkDecision::Refuse, origin)
    }

    /// The shell did not link to an address it was asked to dial, for a reason of its
    /// own (already connected, banned, refused): nobody is charged.
    pub(in crate::router) fn connect_failed(&mut self, key: &NodeKey) {
        self.pending.remove(key);
    }

    /// The shell could not reach an address it was asked to dial at all (no answer, no
    /// handshake). The peer whose offer named it is charged; one that reaches
    /// [`MAX_BAD_OFFERS`] is returned, to be reported as misbehaving (the shell drops and
    /// bans it).
    pub(in crate::router) fn dial_failed(
        &mut self,
        peers: &PeerTable,
        key: &NodeKey,
    ) -> Option<PeerId> {
        let Some((_, Some(via))) = self.pending.remove(key) else {
            return None;
        };
        self.stats.bad_offers += 1;
        peers.get(via)?;
        let n = self.bad_offers.entry(via).or_insert(0);
        *n += 1;
        if *n >= MAX_BAD_OFFERS {
            self.bad_offers.remove(&via);
            return Some(via);
        }
        None
    }

    /// A link to `key` came up: a pending dial is done, and the peer whose offer named
    /// the address is credited one offer.
    pub(super) fn offer_linked(&mut self, key: &NodeKey) {
        if let Some((_, Some(via))) = self.pending.remove(key) {
            if let Some(n) = self.bad_offers.get_mut(&via) {
                *n -= 1;
                if *n == 0 {
                    self.bad_offers.remove(&via);
                }
            }
        }
    }

    /// Whether a node at `location` would be among our `near_slots` nearest peers on
    /// the ring. Those short links are what lets greedy routing finish a route, so they
    /// are kept apart from the least-recently-successful rule.
    pub(super) fn is_near(&self, v: View, location: Location) -> bool {
        let d = v.location.distance(location);
        let side = location.is_clockwise_of(v.location);
        v.peers
            .iter()
            .filter(|p| {
                p.routable
                    && p.location.is_clockwise_of(v.location) == side
                    && v.location.distance(p.location) < d
            })
            .count()
            < v.config.opennet.near_slots / 2
    }

    /// The nearest `near_slots` / 2 routable peers on each side of us.
    pub(super) fn near_peers(&self, v: View) -> Vec<PeerId> {
        let mut out = Vec::new();
        for side in [true, false] {
            let mut by_distance: Vec<(crate::ring::Distance, PeerId)> = v
                .peers
                .iter()
                .filter(|p| p.routable && p.location.is_clockwise_of(v.location) == side)
                .map(|p| (v.location.distance(p.location), p.id))
                .collect();
            by_distance.sort_unstable();
            out.extend(
                by_distance
                    .into_iter()
                    .take(v.config.opennet.near_slots / 2)
                    .map(|(_, id)| id),
            );
        }
        out
    }

    /// The opennet peer to drop for a newcomer (at `newcomer`, if known), if the drop
    /// rules allow one now. The `near_slots` nearest peers are never dropped. A
    /// newcomer that would be one of them may replace a farther peer at once; any other
    /// waits for `drop_interval` since the last replacement.
    pub(super) fn replaceable(
        &self,
        v: View,
        now: Instant,
        newcomer: Option<Location>,
    ) -> Option<PeerId> {
        let c = &v.config.opennet;
        let near_newcomer = newcomer.is_some_and(|l| self.is_near(v, l));
        if !near_newcomer {
            if let Some(last) = self.last_drop {
                if now.saturating_duration_since(last) < c.drop_interval {
                    return None;
                }
            }
        }
        let near = self.near_peers(v);
        v.peers
            .iter()
            .filter(|p| {
                p.routable
                    && p.origin != PeerOrigin::Friend
                    && !near.contains(&p.id)
                    && now.saturating_duration_since(p.added_at) >= c.min_peer_age
            })
            .min_by_key(|p| (p.last_success, p.added_at, p.id))
            .map(|p| p.id)
    }

    /// Whether this node wants one more peer (at `location`, if known): room, or a
    /// peer it may replace.
    pub(super) fn wants_peer(&self, v: View, now: Instant, location: Option<Location>) -> bool {
        v.config.opennet.enabled
            && self.pending.len() < MAX_PENDING
            && (self.has_room(v) || self.replaceable(v, now, location).is_some())
    }

    pub(super) fn connected_to(&self, v: View, key: &NodeKey) -> Option<PeerId> {
        v.peers
            .iter()
            .find(|p| p.address.as_ref().is_some_and(|a| a.key == *key))
            .map(|p| p.id)
    }

    /// Asks the shell to dial `address` (offered by `via`), unless it is us, connected
    /// or already asked.
    pub(super) fn connect(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        address: PeerAddress,
        origin: PeerOrigin,
        via: Option<PeerId>,
    ) -> bool {
        if self.address.is_some_and(|a| a.key == address.key)
            || self.pending.contains_key(&address.key)
            || self.pending.len() >= MAX_PENDING
        {
            return false;
        }
        if let Some(id) = self.connected_to(cx.view(), &address.key) {
            // A seed that answered our announcement wants us: keep that link.
            if let Some(p) = cx.peers.get_mut(id) {
                if p.origin == PeerOrigin::Seed && origin == PeerOrigin::Announcement {
                    p.origin = PeerOrigin::Announcement;
                }
            }
            return false;
        }
        self.pending
            .insert(address.key, (later(now, PENDING_TTL), via));
        self.stats.connects += 1;
        cx.events.push_back(Event::Connect { address, origin });
        true
    }
}
