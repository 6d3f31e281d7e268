//! Opennet: how a node that knows one seed finds its place, and how the network keeps
//! reshaping itself into a small world. All of it is sans-IO, like the rest of the
//! router: the shell dials what [`Event::Connect`] names, closes what
//! [`Event::Disconnect`] names, and asks [`Router::link_decision`] before it keeps a new
//! link.
//!
//! - Announcement. While it has fewer than `min_peers` routable peers, a node sends an
//!   [`Message::Announce`] for its own location (with its address) to a seed, or to the
//!   peer closest to it. Every node on the way that wants a peer answers with an
//!   [`Message::AnnounceReply`] carrying its address; the node where greedy routing
//!   stops (no peer closer to the target) also offers the addresses of its peers
//!   closest to the target, so the newcomer meets its ring neighbours. Replies travel
//!   back along the path. The newcomer dials the offers its peer policy wants.
//! - Path folding. The node that answers a request from its store or cache follows
//!   `Data` with a [`Message::FoldOffer`] of its own address. The first node on the way
//!   back that wants a peer takes it; the others pass it on, each replacing it with its
//!   own address with a small probability, so an offer does not prove where the data
//!   came from. Nodes that received the request at an HTL above `max − 2` (the
//!   originator and its neighbours) never take an offer, so a new link does not point
//!   at whoever asked.
//! - Peer management. A node keeps at most `max_peers` routable links. When full, a new
//!   link replaces the opennet peer that least recently delivered data (never a friend,
//!   never one younger than `min_peer_age`), at most once per `drop_interval`;
//!   an announcing newcomer it has no room for gets a transient link that carries its
//!   announcement and is closed after `transient_ttl`. A node drops its links to seeds
//!   once it has `min_peers` other peers, so a seed does not keep every newcomer.

use super::ctx::{Ctx, View};
use super::peers::{decrement, PeerTable};
use super::time::{far_past, later};
use super::{Event, PeerId, RouterConfig};
use crate::keys::NodeKey;
use crate::message::{Htl, Message, PeerAddress, RequestId};
use crate::ring::Location;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How a link came about, as the API and the status page show it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PeerOrigin {
    /// Configured by the operator (`--peer`); never dropped to make room.
    Friend,
    /// A seed node dialled to announce; dropped once enough other peers are found.
    Seed,
    /// Found through an announcement (ours, or a newcomer's that we answered).
    Announcement,
    /// Taken from a path-folding offer.
    PathFolding,
    /// Dialled us without this node asking.
    Inbound,
}

impl PeerOrigin {
    /// The name used in JSON, files and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerOrigin::Friend => "friend",
            PeerOrigin::Seed => "seed",
            PeerOrigin::Announcement => "announcement",
            PeerOrigin::PathFolding => "path_folding",
            PeerOrigin::Inbound => "inbound",
        }
    }

    /// Parses [`PeerOrigin::as_str`].
    pub fn parse(s: &str) -> Option<PeerOrigin> {
        [
            PeerOrigin::Friend,
            PeerOrigin::Seed,
            PeerOrigin::Announcement,
            PeerOrigin::PathFolding,
            PeerOrigin::Inbound,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for PeerOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the shell should do with a link that just came up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LinkDecision {
    /// Keep it as a routable peer.
    Accept,
    /// Keep it, and close this peer's link to make room (call
    /// [`Router::remove_peer`] for it first).
    Replace(PeerId),
    /// Keep it as a transient, non-routable link: it carries what the peer asks (its
    /// announcement) and the router asks for it to be closed after `transient_ttl`.
    Transient,
    /// Close it.
    Refuse,
}

/// Opennet tunables. Disabled by default: a router then only routes over the links its
/// shell gives it (friends, a fixed test topology).
#[derive(Clone, Debug)]
pub struct OpennetConfig {
    /// Take part in opennet: announce, answer announcements, fold paths.
    pub enabled: bool,
    /// Announce while fewer routable peers than this are connected.
    pub min_peers: usize,
    /// Most routable peers.
    pub max_peers: usize,
    /// Pause between two announcements of this node.
    pub announce_interval: Duration,
    /// How long relays remember an announcement to pass its replies back.
    pub announce_ttl: Duration,
    /// Ring neighbours of the target that the end of an announcement offers.
    pub near_offers: usize,
    /// The nearest peers on the ring (half each side) that are kept whatever their
    /// success: the short links that let greedy routing finish a route.
    pub near_slots: usize,
    /// How often a node re-announces through its nearest peer on each side of the ring,
    /// so it meets ring neighbours that joined later or that it missed (Chord's
    /// stabilisation, with announcements). Zero turns it off.
    pub stabilize_interval: Duration,
    /// Longest pause between two stabilisations: while a node's nearest peer on each
    /// side stays the same from one stabilisation to the next, the pause doubles from
    /// `stabilize_interval` up to this; a change of either brings it back.
    pub stabilize_max_interval: Duration,
    /// A peer younger than this is never dropped to make room.
    pub min_peer_age: Duration,
    /// Shortest time between two replacements.
    pub drop_interval: Duration,
    /// Probability that a relay puts its own address into a fold offer it passes on.
    pub fold_replace_probability: f64,
    /// Most transient links at once.
    pub transient_slots: usize,
    /// How long a transient link is kept.
    pub transient_ttl: Duration,
    /// Friend-of-a-friend routing: tell peers our peers' locations (at most once per
    /// `neighbours_interval`) and route towards the peer that is, or has a peer, closest
    /// to the key.
    pub foaf: bool,
    /// Least time between two neighbour lists sent.
    pub neighbours_interval: Duration,
}

impl Default for OpennetConfig {
    fn default() -> OpennetConfig {
        OpennetConfig {
            enabled: false,
            min_peers: 10,
            max_peers: 40,
            announce_interval: Duration::from_secs(2),
            announce_ttl: Duration::from_secs(10),
            near_offers: 4,
            near_slots: 4,
            stabilize_interval: Duration::from_secs(10),
            stabilize_max_interval: Duration::from_secs(320),
            min_peer_age: Duration::from_secs(5),
            drop_interval: Duration::from_secs(120),
            fold_replace_probability: 0.05,
            transient_slots: 32,
            transient_ttl: Duration::from_secs(5),
            foaf: true,
            neighbours_interval: Duration::from_secs(1),
        }
    }
}

/// Most announcements relayed at once; more are dropped.
const MAX_ANNOUNCES: usize = 4096;
/// Most replies passed back for one announcement.
const MAX_REPLIES: u32 = 40;
/// Most finished requests remembered for their fold offers.
const MAX_FOLDS: usize = 4096;
/// How long a finished request waits for its fold offer.
const FOLD_TTL: Duration = Duration::from_secs(30);
/// Most connections asked of the shell and not yet resolved.
const MAX_PENDING: usize = 64;
/// How long a requested connection counts as pending.
const PENDING_TTL: Duration = Duration::from_secs(30);
/// Unreachable addresses a peer may offer (announcement replies it passed us, fold
/// offers), less one for each of its offers that linked, before it is reported as
/// misbehaving. Honest peers pass on an address that went offline now and then; a peer
/// that sends us dialling dead addresses runs out fast.
pub const MAX_BAD_OFFERS: u32 = 16;
/// Hops an announcement goes on past a local minimum of its walk.
const POST_MINIMUM_HOPS: u8 = 3;
/// Most newcomers remembered as expected to dial in.
const MAX_EXPECTED: usize = 256;

/// One announcement as it walks: its id, the location it looks for, the newcomer's
/// address and the hops it has left.
#[derive(Clone, Copy, Debug)]
pub(super) struct Announce {
    pub id: RequestId,
    pub target: Location,
    pub address: PeerAddress,
    pub htl: Htl,
}

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

/// An announcement passing through (or started by) this node.
#[derive(Clone, Debug)]
struct Relay {
    /// Where replies go; `None` for our own.
    source: Option<PeerId>,
    expires: Instant,
    replies: u32,
}

/// A request that ended here with data, waiting for its fold offer.
#[derive(Clone, Debug)]
struct Fold {
    /// Where the offer goes on; `None` at the originator.
    upstream: Option<PeerId>,
    received_htl: u8,
    data_from: PeerId,
    expires: Instant,
}

/// Opennet state of one router.
#[derive(Clone, Debug, Default)]
pub(super) struct Opennet {
    address: Option<PeerAddress>,
    relays: BTreeMap<RequestId, Relay>,
    folds: BTreeMap<RequestId, Fold>,
    fold_order: VecDeque<(Instant, RequestId)>,
    /// Connections asked of the shell: key, until when they count, and the peer whose
    /// offer named the address.
    pending: BTreeMap<NodeKey, (Instant, Option<PeerId>)>,
    /// Per peer, unreachable addresses it offered less offers that linked.
    bad_offers: BTreeMap<PeerId, u32>,
    /// Newcomers we answered, expected to dial in.
    expected: BTreeMap<NodeKey, Instant>,
    next_announce: Option<Instant>,
    /// When to check the ring neighbours next.
    next_stabilize: Option<Instant>,
    /// The nearest peer on each side (clockwise, counter-clockwise) at the last
    /// stabilisation, and how many stabilisations in a row found them unchanged.
    ring_seen: [Option<PeerId>; 2],
    stabilize_streak: u32,
    /// Announcements in a row while short of peers: the pause doubles with each, up to
    /// 16 times `announce_interval`.
    announce_streak: u32,
    /// Data deliveries seen (the clock of "least recently successful").
    clock: u64,
    last_drop: Option<Instant>,
    /// When our neighbour list is next due to our peers, and when it last went.
    neighbours_due: Option<Instant>,
    neighbours_sent: Option<Instant>,
    stats: OpennetStats,
}

/// Opennet counters, part of [`super::RouterStats`].
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct OpennetStats {
    /// Announcements this node started.
    pub announces_started: u64,
    /// Announcements received from peers.
    pub announces_received: u64,
    /// Announce replies this node sent with its own or a neighbour's address.
    pub announce_offers: u64,
    /// Fold offers this node sent as the data source.
    pub fold_offers: u64,
    /// Fold offers this node took.
    pub folds_taken: u64,
    /// Connections asked of the shell.
    pub connects: u64,
    /// Peers dropped to make room or because they were seeds no longer needed.
    pub peers_dropped: u64,
    /// Links refused for want of room.
    pub links_refused: u64,
    /// Links kept as transient for want of room.
    pub links_transient: u64,
    /// Offered addresses that could not be reached (charged to the peer that offered).
    pub bad_offers: u64,
}

impl Opennet {
    /// An opennet message from `from`: an announcement, a reply to one, a fold offer or
    /// a neighbour list.
    pub(super) fn handle(&mut self, cx: &mut Ctx, now: Instant, from: PeerId, msg: Message) {
        match msg {
            Message::Announce {
                id,
                target,
                address,
                htl,
            } => {
                let a = Announce {
                    id,
                    target,
                    address,
                    htl,
                };
                self.on_announce(cx, now, from, a)
            }
            Message::AnnounceReply {
                id,
                address,
                location,
            } => self.on_announce_reply(cx, now, from, id, address, location),
            Message::FoldOffer { id, address } => self.on_fold_offer(cx, now, from, id, address),
            Message::Neighbours { locations } => {
                self.on_neighbours(cx, from, locations.into_inner())
            }
            _ => {}
        }
    }

    /// Where this node can be dialled; opennet offers carry it.
    pub(super) fn set_address(&mut self, address: PeerAddress) {
        self.address = Some(address);
    }

    /// Opennet counters.
    pub(super) fn stats(&self) -> &OpennetStats {
        &self.stats
    }

    /// The least-recently-successful clock: data deliveries seen.
    pub(super) fn clock(&self) -> u64 {
        self.clock
    }

    /// A link to the node `key` is being added: a dial to it is done, and it is no
    /// longer a newcomer expected to dial in.
    pub(super) fn linking(&mut self, key: &NodeKey) {
        self.offer_linked(key);
        self.expected.remove(key);
    }

    /// A seed link came up. The shell dials a seed again only when this node is short
    /// of peers with no seed link: announce through it now, whatever the back-off says.
    /// A node cut off with a few others (half the network gone at once) would otherwise
    /// announce only through its own peers, meet nobody outside its island and never
    /// heal.
    pub(super) fn seed_linked(&mut self, now: Instant) {
        self.announce_streak = 0;
        self.next_announce = Some(now);
    }

    /// Whether this node would take another routable peer now without dropping one.
    pub(super) fn has_room(&self, v: View) -> bool {
        v.peers.routable() + self.pending.len() < v.config.opennet.max_peers
    }

    /// Decides whether to keep a link that just came up from (or to) the node `key` at
    /// `location`, and with which origin: `origin` is what the shell knows (an inbound
    /// link it did not ask for is [`PeerOrigin::Inbound`]; a newcomer this node
    /// answered becomes [`PeerOrigin::Announcement`]).
    pub(super) fn link_decision(
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
    pub(super) fn connect_failed(&mut self, key: &NodeKey) {
        self.pending.remove(key);
    }

    /// The shell could not reach an address it was asked to dial at all (no answer, no
    /// handshake). The peer whose offer named it is charged; one that reaches
    /// [`MAX_BAD_OFFERS`] is returned, to be reported as misbehaving (the shell drops and
    /// bans it).
    pub(super) fn dial_failed(&mut self, peers: &PeerTable, key: &NodeKey) -> Option<PeerId> {
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
    fn offer_linked(&mut self, key: &NodeKey) {
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
    fn is_near(&self, v: View, location: Location) -> bool {
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
    fn near_peers(&self, v: View) -> Vec<PeerId> {
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
    fn replaceable(&self, v: View, now: Instant, newcomer: Option<Location>) -> Option<PeerId> {
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
    fn wants_peer(&self, v: View, now: Instant, location: Option<Location>) -> bool {
        v.config.opennet.enabled
            && self.pending.len() < MAX_PENDING
            && (self.has_room(v) || self.replaceable(v, now, location).is_some())
    }

    fn connected_to(&self, v: View, key: &NodeKey) -> Option<PeerId> {
        v.peers
            .iter()
            .find(|p| p.address.as_ref().is_some_and(|a| a.key == *key))
            .map(|p| p.id)
    }

    /// Asks the shell to dial `address` (offered by `via`), unless it is us, connected
    /// or already asked.
    fn connect(
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

    /// Records a data delivery by `peer` (the least-recently-successful clock).
    pub(super) fn note_success(&mut self, peers: &mut PeerTable, peer: PeerId) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(p) = peers.get_mut(peer) {
            p.last_success = clock;
        }
    }

    /// The next instant opennet upkeep wants [`Router::handle_timeout`].
    pub(super) fn timeout(&self, v: View) -> Option<Instant> {
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

    fn needs_announce(&self, v: View) -> bool {
        v.config.opennet.enabled
            && self.address.is_some()
            && v.peers.len() > 0
            && v.peers.routable() < v.config.opennet.min_peers
    }

    /// After a link came or went: announce soon if peers are short, let seeds go if
    /// not.
    pub(super) fn peers_changed(&mut self, cx: &mut Ctx, now: Instant) {
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
    pub(super) fn foaf_on(&self, v: View) -> bool {
        v.config.opennet.foaf && (v.config.opennet.enabled || v.config.neighbour_lists)
    }

    /// Sends our peers' locations soon (at most once per `neighbours_interval`).
    pub(super) fn schedule_neighbours(&mut self, cx: &mut Ctx, now: Instant) {
        if self.foaf_on(cx.view()) && self.neighbours_due.is_none() {
            let next = self.neighbours_sent.map_or(now, |t| {
                later(t, cx.config.opennet.neighbours_interval).max(now)
            });
            self.neighbours_due = Some(next);
        }
    }

    /// Tells every routable peer the locations of our routable peers.
    fn send_neighbours(&mut self, cx: &mut Ctx, now: Instant) {
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
    pub(super) fn on_neighbours(
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
    fn release_seeds(&mut self, cx: &mut Ctx) {
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
    pub(super) fn tick(&mut self, cx: &mut Ctx, now: Instant) {
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
    fn forget_stale(&mut self, cx: &mut Ctx, now: Instant) {
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
    fn stabilize(&mut self, cx: &mut Ctx, now: Instant) {
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
    fn ring_neighbours(&self, v: View) -> [Option<PeerId>; 2] {
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

    /// Starts an announcement for our own location.
    fn announce(&mut self, cx: &mut Ctx, now: Instant) {
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
    fn send_announce(&mut self, cx: &mut Ctx, now: Instant, first: Vec<PeerId>) {
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
    pub(super) fn on_announce(&mut self, cx: &mut Ctx, now: Instant, from: PeerId, a: Announce) {
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
    fn offer_self(&mut self, cx: &mut Ctx, now: Instant, from: PeerId, a: &Announce) {
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

    pub(super) fn on_announce_reply(
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

    /// The data source offers itself to the request's return path.
    pub(super) fn offer_fold(
        &mut self,
        config: &RouterConfig,
        transmits: &mut VecDeque<(PeerId, Message)>,
        to: PeerId,
        id: RequestId,
    ) {
        if !config.opennet.enabled {
            return;
        }
        if let Some(address) = self.address {
            self.stats.fold_offers += 1;
            transmits.push_back((to, Message::FoldOffer { id, address }));
        }
    }

    /// A request ended here with data from `data_from`: remember where its fold offer
    /// goes.
    pub(super) fn await_fold(
        &mut self,
        config: &RouterConfig,
        now: Instant,
        id: RequestId,
        upstream: Option<PeerId>,
        received_htl: u8,
        data_from: PeerId,
    ) {
        if !config.opennet.enabled {
            return;
        }
        if self.folds.len() >= MAX_FOLDS {
            if let Some((_, old)) = self.fold_order.pop_front() {
                self.folds.remove(&old);
            }
        }
        let expires = later(now, FOLD_TTL);
        self.folds.insert(
            id,
            Fold {
                upstream,
                received_htl,
                data_from,
                expires,
            },
        );
        self.fold_order.push_back((expires, id));
    }

    pub(super) fn on_fold_offer(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        address: PeerAddress,
    ) {
        let Some(fold) = self.folds.get(&id) else {
            return;
        };
        if fold.data_from != from {
            return;
        }
        let fold = self.folds.remove(&id).expect("just seen");
        let max = cx.config.max_htl.0;
        let near_originator = fold.received_htl > max.saturating_sub(2);
        if fold.upstream.is_some()
            && !near_originator
            && self.connected_to(cx.view(), &address.key).is_none()
            && self.wants_peer(cx.view(), now, None)
            && self.connect(cx, now, address, PeerOrigin::PathFolding, Some(from))
        {
            self.stats.folds_taken += 1;
            return;
        }
        let Some(up) = fold.upstream else {
            return;
        };
        let p = super::probability(cx.config.opennet.fold_replace_probability);
        let address = match self.address {
            Some(own) if cx.rng.gen_bool(p) => own,
            _ => address,
        };
        cx.transmits
            .push_back((up, Message::FoldOffer { id, address }));
    }
}
