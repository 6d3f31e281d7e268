//! The peer table: each link's location, its HTL flags, its in-flight count and its
//! back-off, plus the routing choice (closest untried peer) and the HTL decrement.
//!
//! Peer counts are in the tens, so a plain vector scanned linearly beats any index in
//! both speed and memory (the simulator keeps 100,000 of these).

use super::{PeerId, PeerOrigin};
use crate::message::PeerAddress;
use crate::ring::{Distance, Location};
use std::time::Instant;

/// One link. The fields the routing choice reads for every peer come first and the
/// layout is fixed (`repr(C)`), so a scan of the table touches one cache line per peer.
#[derive(Clone, Debug)]
#[repr(C)]
pub(super) struct Peer {
    pub id: PeerId,
    pub location: Location,
    /// Avoid this peer until then (overload or timeout).
    pub backoff_until: Option<Instant>,
    /// The locations of the peer's own peers, as it last told us (friend-of-a-friend),
    /// sorted round the ring so the one nearest a key is found by binary search.
    pub neighbours: Vec<Location>,
    /// Routable peers are chosen as next hops; a transient link (an announcing
    /// newcomer this node had no room for) only carries what the peer asks.
    pub routable: bool,
    /// Requests arriving over this link are decremented at the maximum HTL.
    pub decrement_at_max: bool,
    /// Requests arriving over this link are decremented at HTL 1.
    pub decrement_at_one: bool,
    /// Requests and inserts this peer has running here.
    pub inflight: u32,
    /// Bytes of insert blocks this peer has running here (held until each insert ends).
    pub inflight_bytes: u64,
    /// Back-offs in a row without a good answer in between: each doubles the next.
    pub backoff_level: u8,
    /// Other peers' requests and inserts this node has forwarded to this peer and is
    /// waiting on (its own user's are not counted).
    pub forwarded_out: u32,
    /// Overload rejections sent to this peer since `strikes_since`.
    pub strikes: u32,
    /// How this link came about.
    pub origin: PeerOrigin,
    pub strikes_since: Instant,
    /// Where the peer can be dialled, when the shell knows it. Boxed: most links of a
    /// simulated network have none, and a million nodes keep twenty million of these.
    pub address: Option<Box<PeerAddress>>,
    /// When the link came up.
    pub added_at: Instant,
    /// The router's success clock when the peer last delivered data (when it was added,
    /// before that): least recently successful opennet peers are dropped first.
    pub last_success: u64,
    /// Smoothed round-trip time of the link in µs, as the shell measured it (0: none
    /// yet). Latency-aware routing prefers the quick among near-equal peers.
    pub rtt_us: u32,
    /// Decaying share of the requests forwarded to this peer that came back with data
    /// (1.0 until the first answer).
    pub success: f32,
}

/// Weight of a new round-trip sample in the smoothed RTT (TCP's 1/8).
const RTT_GAIN: f32 = 0.125;
/// Weight of one request's outcome in a peer's success share: about the last 32 count.
const SUCCESS_GAIN: f32 = 1.0 / 32.0;
/// The least success share latency-aware routing divides by: a peer that never delivers
/// costs 20 times its round trip, not infinitely much, so it is still tried now and then
/// when it is by far the closest.
const SUCCESS_FLOOR: f32 = 0.05;

/// What the shell knows about a new link besides its location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMeta {
    /// How the link came about.
    pub origin: PeerOrigin,
    /// Where the peer can be dialled (its key and listening address), if known.
    pub address: Option<PeerAddress>,
    /// False for a transient link ([`super::LinkDecision::Transient`]).
    pub routable: bool,
}

impl PeerMeta {
    /// A routable friend whose address does not matter to the router.
    pub fn friend() -> PeerMeta {
        PeerMeta {
            origin: PeerOrigin::Friend,
            address: None,
            routable: true,
        }
    }
}

/// Latency-aware routing's cost of a peer: the expected wait for one good answer, in
/// ordered integer form (µs × in-flight share ÷ success share).
fn cost(p: &Peer) -> u64 {
    let rtt = f64::from(p.rtt_us) * (1.0 + f64::from(p.forwarded_out));
    (rtt / f64::from(p.success.max(SUCCESS_FLOOR))) as u64
}

/// A read-only look at a router's peers ([`super::Router::peers`]).
#[derive(Clone, Copy, Debug)]
pub struct Peers<'a>(pub(super) &'a PeerTable);

impl Peers<'_> {
    /// How a peer was found, if it is connected.
    pub fn origin(&self, peer: PeerId) -> Option<PeerOrigin> {
        self.0.get(peer).map(|p| p.origin)
    }

    /// Whether a peer's link is routable (not transient).
    pub fn is_routable(&self, peer: PeerId) -> bool {
        self.0.get(peer).is_some_and(|p| p.routable)
    }

    /// `peer`'s smoothed round-trip time and the decaying share of forwarded requests it
    /// answered with data, if it is a peer (the RTT is `None` until a sample came).
    pub fn timing(&self, peer: PeerId) -> Option<(Option<std::time::Duration>, f32)> {
        self.0.get(peer).map(|p| {
            let rtt = (p.rtt_us > 0).then(|| std::time::Duration::from_micros(u64::from(p.rtt_us)));
            (rtt, p.success)
        })
    }

    /// The number of connected peers.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The number of routable peers (transient links left out).
    pub fn routable(&self) -> usize {
        self.0.routable()
    }
}

/// All links.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerTable {
    peers: Vec<Peer>,
    /// `peers[i].id` at `ids[i]`: lookups by id scan this short dense list, not the
    /// peers themselves.
    ids: Vec<PeerId>,
}

impl PeerTable {
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    #[cfg(test)]
    pub fn add(&mut self, id: PeerId, location: Location, at_max: bool, at_one: bool) {
        self.add_with(
            id,
            location,
            (at_max, at_one),
            PeerMeta::friend(),
            (Instant::now(), 0),
        );
    }

    /// Adds a link, or updates the location (and meta) of a known one.
    pub fn add_with(
        &mut self,
        id: PeerId,
        location: Location,
        (at_max, at_one): (bool, bool),
        meta: PeerMeta,
        (now, clock): (Instant, u64),
    ) {
        if let Some(p) = self.get_mut(id) {
            p.location = location;
            p.origin = meta.origin;
            if let Some(a) = meta.address {
                p.address = Some(Box::new(a));
            }
            p.routable = meta.routable;
            return;
        }
        // Tables grow by a quarter, not by doubling: a simulated million nodes keep
        // twenty million peers, and doubling left a third of that room unused.
        if self.peers.len() == self.peers.capacity() {
            self.peers.reserve_exact((self.peers.len() / 4).max(4));
        }
        if self.ids.len() == self.ids.capacity() {
            self.ids.reserve_exact((self.ids.len() / 4).max(4));
        }
        self.ids.push(id);
        self.peers.push(Peer {
            id,
            location,
            decrement_at_max: at_max,
            decrement_at_one: at_one,
            inflight: 0,
            inflight_bytes: 0,
            backoff_until: None,
            backoff_level: 0,
            forwarded_out: 0,
            strikes: 0,
            strikes_since: now,
            origin: meta.origin,
            address: meta.address.map(Box::new),
            routable: meta.routable,
            added_at: now,
            last_success: clock,
            neighbours: Vec::new(),
            rtt_us: 0,
            success: 1.0,
        });
    }

    /// All links.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    /// The number of routable links.
    pub fn routable(&self) -> usize {
        self.peers.iter().filter(|p| p.routable).count()
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: PeerId) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        self.ids.remove(i);
        self.peers.remove(i);
        true
    }

    fn index(&self, id: PeerId) -> Option<usize> {
        self.ids.iter().position(|&p| p == id)
    }

    pub fn contains(&self, id: PeerId) -> bool {
        self.ids.contains(&id)
    }

    pub fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        let i = self.index(id)?;
        self.peers.get_mut(i)
    }

    pub fn get(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(self.index(id)?)
    }

    /// Whether any peer is strictly closer to `target` than `own` is.
    pub fn any_closer(&self, target: Location, own: Location) -> bool {
        let d = own.distance(target);
        self.peers
            .iter()
            .any(|p| p.routable && p.location.distance(target) < d)
    }

    /// The peer closest to `target` that is not in `exclude`, preferring peers out of
    /// back-off; ties go to the lower id so the choice is deterministic.
    pub fn closest(&self, target: Location, exclude: &[PeerId], now: Instant) -> Option<PeerId> {
        self.closest_where(target, exclude, now, (1.0, 0.0, Distance(u64::MAX)), |_| {
            true
        })
    }

    /// As [`PeerTable::closest`], but among the peers whose distance to `target` is
    /// within `factor` of the closest one's (the same back-off class, round-trip times
    /// known), the one with the least expected cost: smoothed RTT, times one plus the
    /// requests it already carries for us, divided by its success share, plus a share of
    /// a typical hop (`weight` times the mean round trip of the links) for each doubling
    /// of its distance over the closest's, plus one typical hop if it is that close only
    /// through one of its own peers. `factor` 1.0 (or below) is pure greedy routing.
    #[cfg(test)]
    pub fn choose(
        &self,
        target: Location,
        exclude: &[PeerId],
        now: Instant,
        (factor, weight): (f64, f64),
    ) -> Option<PeerId> {
        self.choose_below(target, exclude, now, (factor, weight), Distance(u64::MAX))
    }

    /// As [`PeerTable::choose`], where a peer other than the closest is taken only if
    /// its routing distance is below `ceiling` (the choosing node's own distance to
    /// `target`): a quicker peer must still bring the request nearer the key. Without
    /// it, in a network of tens of nodes the factor's bound spans most of the ring and
    /// requests wander by speed alone until their HTL runs out.
    pub fn choose_below(
        &self,
        target: Location,
        exclude: &[PeerId],
        now: Instant,
        (factor, weight): (f64, f64),
        ceiling: Distance,
    ) -> Option<PeerId> {
        self.closest_where(target, exclude, now, (factor, weight, ceiling), |_| true)
    }

    /// As [`PeerTable::closest`], among the peers on one side of `target` (clockwise or
    /// not, within half a turn).
    pub fn closest_on_side(
        &self,
        target: Location,
        exclude: &[PeerId],
        now: Instant,
        clockwise: bool,
    ) -> Option<PeerId> {
        self.closest_where(target, exclude, now, (1.0, 0.0, Distance(u64::MAX)), |l| {
            l.is_clockwise_of(target) == clockwise
        })
    }

    /// How close `p` is to `target` for routing: its own distance, or (friend of a
    /// friend) the closest of its own peers'.
    fn routing_distance(p: &Peer, target: Location) -> Distance {
        let own = p.location.distance(target);
        nearest_distance(&p.neighbours, target).map_or(own, |d| d.min(own))
    }

    fn closest_where(
        &self,
        target: Location,
        exclude: &[PeerId],
        now: Instant,
        (factor, weight, ceiling): (f64, f64, Distance),
        keep: impl Fn(Location) -> bool,
    ) -> Option<PeerId> {
        let eligible = |p: &&Peer| p.routable && !exclude.contains(&p.id) && keep(p.location);
        let mut best: Option<(bool, Distance, Distance, PeerId)> = None;
        let mut best_peer: Option<&Peer> = None;
        for p in self.peers.iter().filter(eligible) {
            let backed_off = p.backoff_until.is_some_and(|t| t > now);
            let cand = (
                backed_off,
                Self::routing_distance(p, target),
                p.location.distance(target),
                p.id,
            );
            if best.is_none_or(|b| cand < b) {
                best = Some(cand);
                best_peer = Some(p);
            }
        }
        let (backed_off, nearest, _, greedy) = best?;
        let Some(greedy_peer) = best_peer.filter(|p| factor > 1.0 && p.rtt_us > 0) else {
            return Some(greedy);
        };
        // Latency-aware: the cheapest of the near-equal peers. The bound keeps every
        // choice close to greedy's, so no peer, however quick, draws keys it is far from.
        let bound = (nearest.0 as f64 * factor).min(u64::MAX as f64);
        // A farther peer leaves more of the way to go: each doubling of the distance
        // costs a share of a typical hop (greedy routing in a small world of tens of
        // links per node shrinks the distance several-fold a hop), a typical hop being
        // the mean round trip of this node's measured links.
        let (sum, n) = self
            .peers
            .iter()
            .filter(|p| p.rtt_us > 0)
            .fold((0u64, 0u64), |(s, n), p| (s + u64::from(p.rtt_us), n + 1));
        let mean_hop = sum as f64 / n.max(1) as f64;
        let per_doubling = weight.max(0.0) * mean_hop;
        // A peer that is this close only through one of its own peers (friend of a
        // friend) is one hop farther from the key than its distance says: without this,
        // a quick peer next to the closest one draws the request away from it, hop after
        // hop, when the closest is our own peer.
        let score = |p: &Peer, d: Distance| {
            let extra = (d.0 as f64 / (nearest.0 as f64).max(1.0)).max(1.0).log2();
            let via = if p.location.distance(target) > d {
                mean_hop
            } else {
                0.0
            };
            cost(p) as f64 + per_doubling * extra + via
        };
        let mut choice = (score(greedy_peer, nearest), nearest, greedy);
        for p in self.peers.iter().filter(eligible) {
            if p.rtt_us == 0 || p.backoff_until.is_some_and(|t| t > now) != backed_off {
                continue;
            }
            let d = Self::routing_distance(p, target);
            if d.0 as f64 > bound || d >= ceiling {
                continue;
            }
            let cand = (score(p, d), d, p.id);
            if cand.0 < choice.0 || (cand.0 == choice.0 && (cand.1, cand.2) < (choice.1, choice.2))
            {
                choice = cand;
            }
        }
        Some(choice.2)
    }

    /// Feeds one round-trip sample of `id`'s link.
    pub fn observe_rtt(&mut self, id: PeerId, rtt: std::time::Duration) {
        if let Some(p) = self.get_mut(id) {
            let sample = rtt.as_micros().clamp(1, u128::from(u32::MAX)) as f32;
            p.rtt_us = if p.rtt_us == 0 {
                sample as u32
            } else {
                let old = p.rtt_us as f32;
                (old + RTT_GAIN * (sample - old)).max(1.0) as u32
            };
        }
    }

    /// Counts the outcome of one request forwarded to `id`: data, or none (not found,
    /// overloaded, timed out).
    pub fn observe_outcome(&mut self, id: PeerId, delivered: bool) {
        if let Some(p) = self.get_mut(id) {
            let x = if delivered { 1.0 } else { 0.0 };
            p.success += SUCCESS_GAIN * (x - p.success);
        }
    }

    /// Fair sharing (as Freenet's load management): a peer below its share of the node's
    /// capacity (capacity / peers), by count and by insert bytes, is always served up to
    /// the per-peer cap; above its share, only while the node as a whole has room. So a
    /// peer that floods takes at most what the others leave unused, and the moment they
    /// need it back, its new requests are rejected and theirs are not.
    pub fn within_share(&self, c: &super::RouterConfig, from: PeerId, bytes: u64) -> bool {
        let (n, b) = self.load(from);
        if n >= c.max_inflight_per_peer {
            return false;
        }
        let peers = self.len().max(1);
        let (total_n, total_b) = self.total_load();
        let count_ok = n < c.max_inflight / peers || total_n < c.max_inflight;
        let bytes_ok = bytes == 0
            || b + bytes <= c.max_inflight_bytes / peers as u64
            || total_b + bytes <= c.max_inflight_bytes;
        count_ok && bytes_ok
    }

    /// `id` moved to `location` (a darknet peer swapped).
    pub fn relocate(&mut self, id: PeerId, location: Location) {
        if let Some(p) = self.get_mut(id) {
            p.location = location;
        }
    }

    /// Records `id`'s neighbour list (bounded by the message that carried it).
    pub fn set_neighbours(&mut self, id: PeerId, mut locations: Vec<Location>) {
        if let Some(p) = self.get_mut(id) {
            locations.sort_unstable();
            p.neighbours = locations;
        }
    }

    #[cfg(test)]
    pub fn back_off(&mut self, id: PeerId, until: Instant) {
        if let Some(p) = self.get_mut(id) {
            p.backoff_until = Some(until);
        }
    }

    /// Backs off `id` (it rejected for overload or timed out): for `base` the first time,
    /// doubling with each back-off in a row up to `max`. Returns the period chosen.
    pub fn back_off_more(
        &mut self,
        id: PeerId,
        now: Instant,
        base: std::time::Duration,
        max: std::time::Duration,
    ) -> std::time::Duration {
        let Some(p) = self.get_mut(id) else {
            return std::time::Duration::ZERO;
        };
        let period = base
            .saturating_mul(1u32 << p.backoff_level.min(20))
            .min(max.max(base));
        p.backoff_level = p.backoff_level.saturating_add(1);
        p.backoff_until = Some(super::time::later(now, period));
        period
    }

    /// Counts an overload rejection sent to `id`; returns the rejections within the
    /// current `window` (a new window starts once the last one has passed).
    pub fn strike(&mut self, id: PeerId, now: Instant, window: std::time::Duration) -> u32 {
        let Some(p) = self.get_mut(id) else {
            return 0;
        };
        if now.saturating_duration_since(p.strikes_since) > window {
            p.strikes = 0;
            p.strikes_since = now;
        }
        p.strikes = p.strikes.saturating_add(1);
        p.strikes
    }

    /// `id` gave a good answer: its next back-off starts from the base again.
    pub fn recovered(&mut self, id: PeerId) {
        if let Some(p) = self.get_mut(id) {
            p.backoff_level = 0;
        }
    }

    /// Counts one more (`up`) or one less forwarded request awaited from `id`.
    pub fn add_forwarded(&mut self, id: PeerId, up: bool) {
        if let Some(p) = self.get_mut(id) {
            p.forwarded_out = if up {
                p.forwarded_out.saturating_add(1)
            } else {
                p.forwarded_out.saturating_sub(1)
            };
        }
    }

    /// Peers awaited on for `window` or more forwarded requests already.
    pub fn forwarding_full(&self, window: u32) -> impl Iterator<Item = PeerId> + '_ {
        self.peers
            .iter()
            .filter(move |p| p.forwarded_out >= window)
            .map(|p| p.id)
    }

    /// What `id` has running here: requests and inserts, and insert bytes.
    pub fn load(&self, id: PeerId) -> (usize, u64) {
        self.get(id)
            .map_or((0, 0), |p| (p.inflight as usize, p.inflight_bytes))
    }

    /// What all peers have running here.
    pub fn total_load(&self) -> (usize, u64) {
        self.peers.iter().fold((0, 0), |(n, b), p| {
            (n + p.inflight as usize, b + p.inflight_bytes)
        })
    }

    /// Counts one more (`up`) or one less running request of `id`, holding `bytes`.
    pub fn add_load(&mut self, id: PeerId, up: bool, bytes: u64) {
        if let Some(p) = self.get_mut(id) {
            if up {
                p.inflight = p.inflight.saturating_add(1);
                p.inflight_bytes = p.inflight_bytes.saturating_add(bytes);
            } else {
                p.inflight = p.inflight.saturating_sub(1);
                p.inflight_bytes = p.inflight_bytes.saturating_sub(bytes);
            }
        }
    }
}

/// The HTL to forward with, given the HTL received (already capped at `max`) and the
/// flags of the link it came in on.
pub(super) fn decrement(htl: u8, max: u8, at_max: bool, at_one: bool) -> u8 {
    let htl = htl.min(max);
    if htl == 0 {
        0
    } else if htl == max {
        if at_max {
            htl - 1
        } else {
            htl
        }
    } else if htl == 1 {
        if at_one {
            0
        } else {
            1
        }
    } else {
        htl - 1
    }
}

/// The ring distance from `target` to the nearest of `sorted` (ascending locations):
/// the nearest is the first at or past `target` or the one before it, wrapping round.
fn nearest_distance(sorted: &[Location], target: Location) -> Option<Distance> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let i = sorted.partition_point(|l| *l < target);
    let after = sorted[i % n].distance(target);
    let before = sorted[(i + n - 1) % n].distance(target);
    Some(after.min(before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> Instant {
        Instant::now()
    }

    /// The table grows by a quarter of its length (at least four), so it never holds
    /// more than a quarter again of unused room; an address, given once, stays.
    #[test]
    fn the_table_grows_by_a_quarter_and_keeps_addresses() {
        let mut t = PeerTable::default();
        let mut room = 0;
        for i in 0..60u64 {
            if i == room {
                room += (i / 4).max(4);
            }
            t.add(PeerId(i), Location(i << 40), false, false);
            assert_eq!(
                (t.peers.capacity(), t.ids.capacity()),
                (room as usize, room as usize)
            );
        }
        let address = PeerAddress {
            key: crate::keys::NodeKey([7; 32]),
            addr: "127.0.0.1:9".parse().unwrap(),
        };
        let meta = |address| PeerMeta {
            address,
            ..PeerMeta::friend()
        };
        let at = (Instant::now(), 0);
        t.add_with(
            PeerId(60),
            Location(1),
            (false, false),
            meta(Some(address)),
            at,
        );
        t.add_with(PeerId(60), Location(2), (false, false), meta(None), at);
        let p = t.iter().find(|p| p.id == PeerId(60)).unwrap();
        assert_eq!(
            (p.address.as_deref(), p.location),
            (Some(&address), Location(2))
        );
    }

    #[test]
    fn closest_skips_excluded_and_prefers_unbacked() {
        let now = t0();
        let mut t = PeerTable::default();
        t.add(PeerId(1), Location(100), true, true);
        t.add(PeerId(2), Location(200), true, true);
        t.add(PeerId(3), Location(1000), true, true);
        assert_eq!(t.closest(Location(190), &[], now), Some(PeerId(2)));
        assert_eq!(t.closest(Location(190), &[PeerId(2)], now), Some(PeerId(1)));
        t.back_off(PeerId(2), now + std::time::Duration::from_secs(1));
        assert_eq!(t.closest(Location(190), &[], now), Some(PeerId(1)));
        // Backed-off peers are the last resort, not excluded.
        assert_eq!(
            t.closest(Location(190), &[PeerId(1), PeerId(3)], now),
            Some(PeerId(2))
        );
        assert_eq!(
            t.closest(Location(190), &[PeerId(1), PeerId(2), PeerId(3)], now),
            None
        );
    }

    #[test]
    fn decrement_rules() {
        assert_eq!(decrement(18, 18, false, true), 18);
        assert_eq!(decrement(18, 18, true, true), 17);
        assert_eq!(decrement(200, 18, true, true), 17);
        assert_eq!(decrement(1, 18, true, false), 1);
        assert_eq!(decrement(1, 18, true, true), 0);
        assert_eq!(decrement(7, 18, false, false), 6);
        assert_eq!(decrement(0, 18, false, false), 0);
    }

    /// A table of peers at `(id, distance past the target, rtt ms)` (0 ms: never
    /// measured), in that order; the target is at 1 << 40.
    fn timed(peers: &[(u64, u64, u64)]) -> (PeerTable, Location) {
        let target = Location(1 << 40);
        let mut t = PeerTable::default();
        for &(id, d, rtt) in peers {
            t.add(PeerId(id), Location(target.0 + d), true, true);
            if rtt > 0 {
                t.observe_rtt(PeerId(id), std::time::Duration::from_millis(rtt));
            }
        }
        (t, target)
    }

    /// The latency-aware choice, case by case: what counts in the typical hop, which
    /// peers may be chosen at all, the edge of the factor, and how ties fall.
    #[test]
    fn latency_aware_choice_case_by_case() {
        let now = t0();
        // G nearest and slow, Q twice as far and quick, U unmeasured: with a full hop
        // per doubling (weight 1), the typical hop is the mean of the *measured* round
        // trips, 70 ms, so Q costs 40 + 70 = 110 against G's 100.
        let (t, target) = timed(&[(1, 1000, 100), (2, 2000, 40), (3, 64_000, 0)]);
        assert_eq!(t.choose(target, &[], now, (4.0, 1.0)), Some(PeerId(1)));
        // Without the distance term Q's 40 ms wins; without the factor's room it cannot.
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(2)));
        assert_eq!(t.choose(target, &[], now, (1.9, 0.0)), Some(PeerId(1)));
        // Exactly at the factor's edge still counts.
        assert_eq!(t.choose(target, &[], now, (2.0, 0.0)), Some(PeerId(2)));

        // An unmeasured peer near the key is never taken for its unknown (zero) cost.
        let (t, target) = timed(&[(1, 1000, 100), (2, 1500, 0)]);
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(1)));

        // A quicker peer that is backed off does not take the request from one that is
        // not.
        let (mut t, target) = timed(&[(1, 1000, 100), (2, 1500, 10)]);
        t.back_off(PeerId(2), now + std::time::Duration::from_secs(5));
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(1)));
        // A back-off that ends now is over.
        t.back_off(PeerId(2), now);
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(2)));

        // The quick peer listed first keeps the request against the slower greedy
        // choice listed after it.
        let (t, target) = timed(&[(1, 2000, 10), (2, 1000, 100)]);
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(1)));

        // Equal cost and distance: the lower id, wherever it is listed.
        let (t, target) = timed(&[(2, 1000, 50), (1, 1000, 50), (3, 1000, 50)]);
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(1)));
        // Two quicker peers tie, both ahead of the greedy one: the lower id again, though
        // listed second.
        let (t, target) = timed(&[(3, 1000, 100), (2, 1500, 10), (1, 1500, 10)]);
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(1)));

        // Factor 1 is greedy even between peers equally close through their neighbours:
        // the one itself nearer goes first, however slow.
        let (mut t, target) = timed(&[(1, 1000, 100), (2, 3000, 10)]);
        t.set_neighbours(PeerId(1), vec![Location(target.0 + 500)]);
        t.set_neighbours(PeerId(2), vec![Location(target.0 + 500)]);
        assert_eq!(t.choose(target, &[], now, (1.0, 0.0)), Some(PeerId(1)));
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(2)));
    }

    /// A greedy choice with no round trip measured yet is taken as it is: it never enters
    /// the latency-aware comparison, where its unknown cost (zero) and the hop its
    /// neighbour list adds would be weighed against measured peers.
    #[test]
    fn an_unmeasured_greedy_peer_is_taken_as_greedy() {
        let now = t0();
        // G (1) is nearest only through its neighbour list and unmeasured; P (2) is
        // measured and quick, within the factor; Q (3) is slow and far, raising the
        // typical hop to 100.5 ms. Weighed, G would cost that hop and P 1 ms.
        let (mut t, target) = timed(&[(1, 4000, 0), (2, 1000, 1), (3, 1 << 50, 200)]);
        t.set_neighbours(PeerId(1), vec![Location(target.0 + 500)]);
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(1)));
        // Once measured, as quick as P, G is weighed, pays the hop its neighbour list
        // adds, and P takes the request.
        t.observe_rtt(PeerId(1), std::time::Duration::from_millis(1));
        assert_eq!(t.choose(target, &[], now, (4.0, 0.0)), Some(PeerId(2)));
    }

    /// A quicker peer must bring the request nearer than the choosing node is, and one
    /// that is near only through its own peer pays for the hop that adds.
    #[test]
    fn latency_aware_choice_makes_progress_and_counts_the_extra_hop() {
        let now = t0();
        let within = (4.0, 0.0);
        // Q (1,500 from the key, 10 ms) takes the request from G (1,000, 100 ms) at a
        // node 1,501 from the key...
        let (t, target) = timed(&[(1, 1000, 100), (2, 1500, 10)]);
        let below = |d| t.choose_below(target, &[], now, within, Distance(d));
        assert_eq!(below(1501), Some(PeerId(2)));
        // ...but not at one 1,500 away: Q would bring it no nearer.
        assert_eq!(below(1500), Some(PeerId(1)));
        // The closest peer is greedy routing's choice, whatever the ceiling.
        assert_eq!(below(0), Some(PeerId(1)));

        // G is near itself (50 ms); Q is far itself (20 ms) but as near through its
        // neighbour. The typical hop is 35 ms, so Q costs 20 + 35 = 55 against 50.
        let (mut t, target) = timed(&[(1, 1000, 50), (2, 64_000, 20)]);
        t.set_neighbours(PeerId(2), vec![Location(target.0 + 1000)]);
        assert_eq!(t.choose(target, &[], now, within), Some(PeerId(1)));
        // A quicker Q (10 ms: 10 + 30 = 40 against 50) is worth the extra hop.
        let (mut t, target) = timed(&[(1, 1000, 50), (2, 64_000, 10)]);
        t.set_neighbours(PeerId(2), vec![Location(target.0 + 1000)]);
        assert_eq!(t.choose(target, &[], now, within), Some(PeerId(2)));
    }

    /// Round trips are smoothed by 1/8 a sample (the first is taken as it is) and the
    /// success share by 1/32 an outcome, from 1.
    #[test]
    fn round_trips_and_success_are_smoothed() {
        let mut t = PeerTable::default();
        t.add(PeerId(1), Location(0), true, true);
        let ms = std::time::Duration::from_millis;
        t.observe_rtt(PeerId(1), ms(80));
        assert_eq!(t.get(PeerId(1)).unwrap().rtt_us, 80_000);
        t.observe_rtt(PeerId(1), ms(160));
        assert_eq!(t.get(PeerId(1)).unwrap().rtt_us, 90_000);
        t.observe_rtt(PeerId(1), ms(10));
        assert_eq!(t.get(PeerId(1)).unwrap().rtt_us, 80_000);
        assert_eq!(t.get(PeerId(1)).unwrap().success, 1.0);
        t.observe_outcome(PeerId(1), false);
        assert_eq!(t.get(PeerId(1)).unwrap().success, 1.0 - 1.0 / 32.0);
        t.observe_outcome(PeerId(1), true);
        let s = 1.0 - 1.0 / 32.0;
        assert_eq!(t.get(PeerId(1)).unwrap().success, s + (1.0 - s) / 32.0);
    }

    /// Overload strikes count within a window that starts at the first strike after
    /// the last window passed; a strike exactly at the window's end still counts in it.
    #[test]
    fn strikes_count_within_their_window() {
        let mut t = PeerTable::default();
        t.add(PeerId(1), Location(0), true, true);
        let start = t0();
        let w = std::time::Duration::from_secs(5);
        let s = std::time::Duration::from_secs;
        assert_eq!(t.strike(PeerId(9), start, w), 0, "no such peer");
        // The window opened when the peer was added.
        let first = t.get(PeerId(1)).unwrap().strikes_since;
        assert_eq!(t.strike(PeerId(1), first, w), 1);
        assert_eq!(t.strike(PeerId(1), first + s(2), w), 2);
        assert_eq!(t.strike(PeerId(1), first + w, w), 3);
        // Past it, counting starts again from there.
        let later = first + w + std::time::Duration::from_millis(1);
        assert_eq!(t.strike(PeerId(1), later, w), 1);
        assert_eq!(t.strike(PeerId(1), later + s(1), w), 2);
    }

    /// One side of the ring: the nearest peer clockwise of the target, or counter-
    /// clockwise, even when the other side has a nearer one.
    #[test]
    fn closest_on_a_side() {
        let now = t0();
        let target = Location(1 << 40);
        let mut t = PeerTable::default();
        t.add(PeerId(1), Location(target.0 + 100), true, true);
        t.add(PeerId(2), Location(target.0 + 900), true, true);
        t.add(PeerId(3), Location(target.0 - 50), true, true);
        assert_eq!(t.closest(target, &[], now), Some(PeerId(3)));
        assert_eq!(t.closest_on_side(target, &[], now, true), Some(PeerId(1)));
        assert_eq!(
            t.closest_on_side(target, &[PeerId(1)], now, true),
            Some(PeerId(2))
        );
        assert_eq!(t.closest_on_side(target, &[], now, false), Some(PeerId(3)));
        assert_eq!(t.closest_on_side(target, &[PeerId(3)], now, false), None);
    }

    /// A peer's cost is its round trip times one plus the requests already awaited from
    /// it: a quick peer carrying three of ours loses to a slower idle one, and wins again
    /// as its answers come back.
    #[test]
    fn requests_in_flight_multiply_a_peers_round_trip() {
        let now = t0();
        let mut t = PeerTable::default();
        // Both equally close to the target, 10 ms and 30 ms away.
        t.add(PeerId(1), Location(1000), true, true);
        t.add(PeerId(2), Location(3000), true, true);
        t.observe_rtt(PeerId(1), std::time::Duration::from_millis(10));
        t.observe_rtt(PeerId(2), std::time::Duration::from_millis(30));
        let target = Location(2000);
        let pick = |t: &PeerTable| t.choose(target, &[], now, (4.0, 0.0));
        assert_eq!(pick(&t), Some(PeerId(1)));
        for _ in 0..3 {
            t.add_forwarded(PeerId(1), true);
        }
        // 10 ms x 4 = 40 against 30.
        assert_eq!(pick(&t), Some(PeerId(2)));
        t.add_forwarded(PeerId(1), false);
        // 10 ms x 3 = 30: a tie in cost, broken by distance, then by id.
        assert_eq!(pick(&t), Some(PeerId(1)));
        t.add_forwarded(PeerId(1), false);
        assert_eq!(pick(&t), Some(PeerId(1)));
    }

    proptest! {
        /// The result never rises, never exceeds the maximum, and only the extremes may
        /// stay put.
        #[test]
        fn decrement_is_monotone(htl: u8, max in 1u8..=40, a: bool, b: bool) {
            let out = decrement(htl, max, a, b);
            let capped = htl.min(max);
            prop_assert!(out <= capped);
            prop_assert!(capped - out <= 1);
            if out == capped && capped != 0 {
                prop_assert!(capped == max || capped == 1);
            }
        }

        /// The chosen peer is never excluded and no allowed peer is strictly closer.
        #[test]
        fn latency_aware_choice_stays_within_the_factor(
            peers in proptest::collection::vec((any::<u64>(), 1u32..1_000_000), 1..20),
            target: u64,
            factor in 1.0f64..64.0,
            weight in 0.0f64..2.0,
        ) {
            let now = t0();
            let mut t = PeerTable::default();
            for (i, (loc, rtt)) in peers.iter().enumerate() {
                t.add(PeerId(i as u64), Location(*loc), true, true);
                t.observe_rtt(PeerId(i as u64), std::time::Duration::from_micros(u64::from(*rtt)));
            }
            let target = Location(target);
            let greedy = t.closest(target, &[], now).unwrap();
            let nearest = t.get(greedy).unwrap().location.distance(target).0 as f64;
            let chosen = t.choose(target, &[], now, (factor, weight)).unwrap();
            let d = t.get(chosen).unwrap().location.distance(target).0 as f64;
            prop_assert!(d <= nearest * factor);
            prop_assert_eq!(t.choose(target, &[], now, (1.0, weight)), Some(greedy));
        }

        fn closest_is_closest(locs in proptest::collection::vec(any::<u64>(), 1..20), target: u64, skip in 0usize..20) {
            let now = t0();
            let mut t = PeerTable::default();
            for (i, l) in locs.iter().enumerate() {
                t.add(PeerId(i as u64), Location(*l), true, true);
            }
            let exclude = [PeerId(skip as u64)];
            match t.closest(Location(target), &exclude, now) {
                Some(id) => {
                    prop_assert!(id != exclude[0]);
                    let d = Location(locs[id.0 as usize]).distance(Location(target));
                    for (i, l) in locs.iter().enumerate() {
                        if i != skip {
                            prop_assert!(Location(*l).distance(Location(target)) >= d);
                        }
                    }
                }
                None => prop_assert!(locs.len() == 1 && skip == 0),
            }
        }
    }

    proptest::proptest! {
        /// The binary search finds the same nearest distance as a scan of every
        /// location, wrap-around included.
        #[test]
        fn nearest_distance_matches_a_scan(
            mut locs in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..40),
            target in proptest::prelude::any::<u64>(),
            near_ends in proptest::prelude::any::<bool>(),
        ) {
            if near_ends && !locs.is_empty() {
                // Put values at the ends of the ring so the wrap is exercised.
                locs.push(u64::MAX - (target % 7));
                locs.push(target % 5);
            }
            let mut sorted: Vec<Location> = locs.iter().map(|&l| Location(l)).collect();
            sorted.sort_unstable();
            let target = Location(target);
            let scan = sorted.iter().map(|l| l.distance(target)).min();
            proptest::prop_assert_eq!(nearest_distance(&sorted, target), scan);
        }
    }
}
