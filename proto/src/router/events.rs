//! What the router tells its shell and what it asks of it: events, outcomes of local
//! requests and inserts, the storage it reads, and its counters.

use super::opennet::{OpennetStats, PeerOrigin};
use super::swapping::SwapStats;
use super::PeerId;
use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::RequestId;
use crate::ring::Location;

/// Where a block sits in a node's storage.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Placement {
    /// The long-term store: this node is a sink for the key.
    Store,
    /// The LRU cache of blocks passing by.
    Cache,
}

/// Lookups into the node's storage. Writes leave the router as [`Event::Store`].
pub trait BlockStore {
    /// The block under `key`, if held, and where it is held.
    fn get(&mut self, key: &RoutingKey) -> Option<(Block, Placement)>;

    /// Whether `block` is the block named by `key`. The default hashes it
    /// ([`Block::verify`]); a daemon must keep it. A simulator, whose blocks come from
    /// no adversary, may answer from a memo.
    fn verify(&mut self, key: &RoutingKey, block: &Block) -> bool {
        block.verify(key).is_ok()
    }
}

/// A fetched block and where it came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fetched {
    /// The block, verified against the key.
    pub block: Block,
    /// The peer that delivered it, or `None` when the local store had it.
    pub from: Option<PeerId>,
}

/// Why a local request failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The request ran out of HTL without finding the block.
    #[error("data not found")]
    DataNotFound,
    /// Every peer was tried with HTL left: the network here is too sparse.
    #[error("route not found")]
    RouteNotFound,
    /// Every peer tried was overloaded.
    #[error("peers overloaded")]
    Overloaded,
    /// The last peer tried did not answer in time and no other was left.
    #[error("timed out")]
    TimedOut,
}

/// How a successful insert ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InsertReport {
    /// True if the route ran out of peers before HTL ran out (a small or sparse
    /// network); the block still sits on every node it reached.
    pub route_exhausted: bool,
}

/// Why a local insert failed: no peer took the block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InsertFailure {
    /// No peer accepted the insert (none connected, or all rejected it as a loop).
    #[error("route not found")]
    RouteNotFound,
    /// Every peer tried was overloaded.
    #[error("peers overloaded")]
    Overloaded,
    /// The last peer tried did not answer in time and no other was left.
    #[error("timed out")]
    TimedOut,
    /// A different block is already stored under this (signed) key: the first stays.
    #[error("collision: another block is already published under this key")]
    Collision,
}

/// What the router tells its shell.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A request started by [`Router::start_request`](crate::router::Router::start_request) finished.
    RequestFinished {
        /// Its id.
        id: RequestId,
        /// The key asked for.
        key: RoutingKey,
        /// The block or why not.
        result: Result<Fetched, RequestFailure>,
    },
    /// An insert started by [`Router::start_insert`](crate::router::Router::start_insert) finished.
    InsertFinished {
        /// Its id.
        id: RequestId,
        /// The block's key.
        key: RoutingKey,
        /// How it ended.
        result: Result<InsertReport, InsertFailure>,
    },
    /// Keep this verified block: in the long-term store or the cache.
    Store {
        /// Its routing key.
        key: RoutingKey,
        /// The block, already verified against `key`.
        block: Block,
        /// Where to keep it.
        placement: Placement,
    },
    /// A peer broke the protocol (bad block, reply to an id it was never sent). The
    /// shell decides on penalties; the router has already ignored the message.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: &'static str,
    },
    /// Opennet: dial this node, and offer the link with this origin to
    /// [`Router::link_decision`](crate::router::Router::link_decision) once it is up. On failure, tell
    /// [`Router::connect_failed`](crate::router::Router::connect_failed).
    Connect {
        /// Where to dial.
        address: crate::message::PeerAddress,
        /// Why.
        origin: PeerOrigin,
    },
    /// Darknet: this node swapped and is now at `location` (its peers are told).
    LocationChanged {
        /// The new location.
        location: Location,
    },
    /// An anonymity walk ended here and its request or insert is routed on under a
    /// fresh id (answers still go upstream under the walk's). For traces and for a
    /// simulator that follows requests; a daemon needs do nothing.
    WalkEnded {
        /// The id the walk came with.
        walk: RequestId,
        /// The id of the greedy search from here.
        greedy: RequestId,
    },
    /// Opennet: close this link (then call [`Router::remove_peer`](crate::router::Router::remove_peer)).
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why, for logs.
        reason: &'static str,
    },
}

/// Counters for status pages, metrics and the simulator.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct RouterStats {
    /// Requests received from peers.
    pub requests_received: u64,
    /// Inserts received from peers.
    pub inserts_received: u64,
    /// Request messages sent (first tries and retries).
    pub requests_forwarded: u64,
    /// Insert messages sent.
    pub inserts_forwarded: u64,
    /// Peers' requests answered from the long-term store.
    pub served_from_store: u64,
    /// Peers' requests answered from the cache.
    pub served_from_cache: u64,
    /// Local requests answered by the local store or cache.
    pub local_hits: u64,
    /// Local requests started.
    pub local_requests: u64,
    /// Local requests that found their block.
    pub local_requests_succeeded: u64,
    /// Local inserts started.
    pub local_inserts: u64,
    /// Local inserts that completed.
    pub local_inserts_succeeded: u64,
    /// `RejectedLoop` sent.
    pub rejected_loop: u64,
    /// `RejectedOverload` sent.
    pub rejected_overload: u64,
    /// Peers reported as flooding: they kept sending after `flood_rejections`
    /// rejections in one back-off period.
    pub flooders: u64,
    /// Per-hop timeouts.
    pub timeouts: u64,
    /// Requests answered `RouteNotFound` because their answer budget ran out.
    pub budget_expired: u64,
    /// Blocks handed out to be cached.
    pub cached: u64,
    /// Blocks handed out to the long-term store.
    pub stored: u64,
    /// Protocol violations by peers.
    pub misbehaviour: u64,
    /// Blocks from peers refused because they fail verification (a wrong hash, a forged
    /// or altered signed block); each also counts as misbehaviour.
    pub bad_blocks: u64,
    /// Inserts refused because a different block already sits under their (signed)
    /// key, here or further on.
    pub collisions: u64,
    /// Peers' requests declined at once (`RouteNotFound`, hops unspent): their key was
    /// just searched for from here in vain (the failure table).
    pub recently_failed: u64,
    /// Blocks offered to peers that had asked for them in vain.
    pub offers_sent: u64,
    /// Offered blocks taken (asked for here before, and verified).
    pub offers_taken: u64,
    /// Offers ignored: not asked for here, or asked too long ago.
    pub offers_ignored: u64,
    /// Opennet counters.
    pub opennet: OpennetStats,
    /// Location-swapping counters (darknet).
    pub swap: SwapStats,
    /// Anonymity walks this node's user started.
    pub walks_started: u64,
    /// Walks passed on for other nodes.
    pub walks_relayed: u64,
    /// Walks that ended here (greedy routing started here).
    pub walks_ended: u64,
}
