//! A request's state at one node: what it is ([`Kind`]), where it stands ([`Req`]), its
//! place on the anonymity walk ([`Walk`]), how it ends ([`Outcome`]), and the ids seen
//! here lately ([`Seen`]).

use crate::block::Block;
use crate::keys::RoutingKey;
use crate::message::{RequestId, MAX_REPLICAS};
use crate::ring::Location;
use crate::router::PeerId;
use std::time::Instant;

/// Request or insert.
#[derive(Clone, Debug)]
pub(in crate::router) enum Kind {
    Request,
    /// An insert carries its (verified) block along, the number of nodes that should
    /// store it and how many on its path so far do (this node included).
    Insert {
        block: Block,
        replicas: u8,
        stored: u8,
        /// At the node that holds the first copy: the whole walk's target, to resume
        /// after the first side's chain (see [`Kind::start_walk`]).
        resume: Option<u8>,
    },
}

impl Kind {
    /// Hops this request may still take beyond its HTL: an insert's replica walk.
    pub(in crate::router) fn extra_hops(&self) -> u32 {
        match self {
            Kind::Request => 0,
            Kind::Insert {
                replicas,
                stored,
                resume,
                ..
            } => u32::from(resume.unwrap_or(*replicas).saturating_sub(*stored)),
        }
    }

    /// This node holds the first copy. The walk goes on in two chains, one on each side
    /// of the key: a single chain always takes the closest peer not yet visited, which
    /// past the first few steps is the next node outwards on the side it started, so
    /// it would leave the other side's nearest nodes bare. The first chain (towards the
    /// closest peer) is asked for half the rest; when it reports back, the second goes
    /// to the other side for the remainder.
    pub(in crate::router) fn start_walk(&mut self) {
        if let Kind::Insert {
            replicas,
            stored,
            resume,
            ..
        } = self
        {
            *stored = 1;
            if *replicas >= 3 {
                *resume = Some(*replicas);
                *replicas = 1 + (*replicas - 1).div_ceil(2);
            }
        }
    }

    /// Bytes this request holds while it runs here (an insert's block).
    pub(in crate::router) fn held_bytes(&self) -> u64 {
        match self {
            Kind::Request => 0,
            Kind::Insert { .. } => crate::block::BLOCK_LEN as u64,
        }
    }

    /// An insert that nodes near its key are storing: HTL no longer counts.
    pub(in crate::router) fn replicating(&self) -> bool {
        matches!(self, Kind::Insert { stored, .. } if *stored > 0)
    }
}

/// One request or insert this node is working on.
#[derive(Clone, Debug)]
pub(in crate::router) struct Req {
    pub key: RoutingKey,
    pub target: Location,
    pub kind: Kind,
    /// The peer that sent it, or `None` for the local user.
    pub source: Option<PeerId>,
    /// HTL as received (as started, for local ones): decides caching.
    pub received_htl: u8,
    /// HTL of the last attempt sent (before the first: as received). Each attempt
    /// decrements it, so HTL bounds the nodes a request visits, backtracking included.
    pub htl: u8,
    /// The next attempt is free: the last peer refused (loop, overload, gone) without
    /// spending any of the request's hops.
    pub free_next: bool,
    /// Peers tried so far; the source is excluded separately.
    pub tried: Vec<PeerId>,
    /// The peer whose answer is awaited, and until when.
    pub waiting: Option<PeerId>,
    pub deadline: Option<Instant>,
    /// The deadline is the answer budget below, not the peer's own timeout.
    pub deadline_is_budget: bool,
    /// When this node must have answered its upstream: `hop_timeout × h` after accepting
    /// at HTL `h` (none for local requests). The upstream waits one `hop_timeout`
    /// longer, so a live node always answers before its upstream gives up on it, and
    /// slow subtrees are cut rather than explored twice.
    pub answer_by: Option<Instant>,
    /// Some peer took the request (answered other than loop, overload or timeout).
    pub accepted: bool,
    /// Some peer rejected for overload.
    pub overloaded: bool,
    /// The last try ended in a timeout.
    pub timed_out_last: bool,
    /// An insert on its approach that its own replica walk came back to: this node
    /// stored the block then and answered `Stored` (once).
    pub stored_on_loop: bool,
    /// The replica walk's next attempt must go to a peer on this side of the key (true:
    /// clockwise), if there is one.
    pub next_side: Option<bool>,
    /// The side the second chain of a split walk takes.
    pub other_side: Option<bool>,
    /// Where the request is on its anonymity walk ([`super::walk`]).
    pub walk: Walk,
    /// The id the source knows it by, when this node routes it under another (a walk
    /// that ended here).
    pub reply_id: Option<RequestId>,
}

impl Req {
    /// An insert's reply came back. If it ended the first chain of a split replica walk,
    /// the second chain starts, on the other side of the key: true (the insert goes on).
    /// Otherwise the insert is done: false.
    pub(in crate::router) fn start_second_chain(&mut self) -> bool {
        let Kind::Insert {
            replicas,
            stored,
            resume: resume @ Some(_),
            ..
        } = &mut self.kind
        else {
            return false;
        };
        *stored = *replicas;
        *replicas = resume.take().unwrap_or(*replicas);
        self.next_side = self.other_side;
        self.accepted = true;
        true
    }
}

/// A request's anonymity walk, at one node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(in crate::router) enum Walk {
    /// No walk: routed greedily as it came.
    None,
    /// On its walk: this node passes it on along the tunnel (or ends the walk).
    Step(u64),
    /// The walk ended here: routed greedily from here, as this node's own would be.
    End,
}

/// How a request ends at this node.
pub(in crate::router) enum Outcome {
    /// Verified data, from a peer or the store.
    Data(Block, Option<PeerId>),
    /// A request ran out of HTL, or a peer said so.
    DataNotFound,
    /// An insert ran its course.
    InsertDone,
    /// No peer left to try with HTL remaining.
    NoRoute,
    /// An insert met a different block under its key (a signed-key collision): that
    /// block goes back to the inserter, and nothing is stored.
    Collision(Block),
}

impl Kind {
    /// One more copy for this insert to find room for: the node it is at already held
    /// the block from a sibling route and does not count.
    pub(in crate::router) fn extend(&mut self) {
        if let Kind::Insert {
            replicas, resume, ..
        } = self
        {
            match resume {
                Some(total) => *total = total.saturating_add(1).min(MAX_REPLICAS),
                None => *replicas = replicas.saturating_add(1).min(MAX_REPLICAS),
            }
        }
    }
}
