//! Opennet: how a node that knows one seed finds its place, and how the network keeps
//! reshaping itself into a small world. All of it is sans-IO, like the rest of the
//! router: the shell dials what [`Event::Connect`] names, closes what
//! [`Event::Disconnect`] names, and asks [`Router::link_decision`](crate::router::Router::link_decision) before it keeps a new
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

use super::ctx::Ctx;
use super::PeerId;
use crate::keys::NodeKey;
use crate::message::{Htl, Message, PeerAddress, RequestId};
use crate::ring::Location;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

mod announce;
mod folding;
mod links;
mod upkeep;

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
    /// [`Router::remove_peer`](crate::router::Router::remove_peer) for it first).
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
pub(in crate::router) struct Announce {
    pub id: RequestId,
    pub target: Location,
    pub address: PeerAddress,
    pub htl: Htl,
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
pub(in crate::router) struct Opennet {
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
    pub(in crate::router) fn handle(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        msg: Message,
    ) {
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
    pub(in crate::router) fn set_address(&mut self, address: PeerAddress) {
        self.address = Some(address);
    }

    /// Opennet counters.
    pub(in crate::router) fn stats(&self) -> &OpennetStats {
        &self.stats
    }

    /// The least-recently-successful clock: data deliveries seen.
    pub(in crate::router) fn clock(&self) -> u64 {
        self.clock
    }

    /// A link to the node `key` is being added: a dial to it is done, and it is no
    /// longer a newcomer expected to dial in.
    pub(in crate::router) fn linking(&mut self, key: &NodeKey) {
        self.offer_linked(key);
        self.expected.remove(key);
    }

    /// A seed link came up. The shell dials a seed again only when this node is short
    /// of peers with no seed link: announce through it now, whatever the back-off says.
    /// A node cut off with a few others (half the network gone at once) would otherwise
    /// announce only through its own peers, meet nobody outside its island and never
    /// heal.
    pub(in crate::router) fn seed_linked(&mut self, now: Instant) {
        self.announce_streak = 0;
        self.next_announce = Some(now);
    }
}
