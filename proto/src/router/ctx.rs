//! What a machine of the router sees of the rest for one input.
//!
//! The router hands each machine its own state and a [`Ctx`]: the configuration, the
//! node's location, the peer table, the one random generator, the set of ids seen, the
//! ids of requests in flight (so a fresh id is not one of them) and the output queues.
//! A machine reads and writes nothing else of the router; what only the router may do
//! (move the node, count a peer's misbehaviour) comes back as a return value.

use super::peers::PeerTable;
use super::seen::Seen;
use super::{Event, PeerId, RouterConfig};
use crate::message::{Message, RequestId};
use crate::ring::Location;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::time::Instant;

/// Ids taken by work in flight (the requests machine's), which a fresh id must avoid.
pub(super) trait IdsInUse {
    /// Whether `id` is taken.
    fn in_use(&self, id: RequestId) -> bool;
}

/// What the requests machine asks of opennet's path folding (it is lent as this, so the
/// two machines know each other only through it).
pub(super) trait PathFolding {
    /// `peer` delivered data (the least-recently-successful clock).
    fn note_success(&mut self, peers: &mut PeerTable, peer: PeerId);
    /// A request ended here with data from `data_from`: remember where its fold offer
    /// goes.
    fn await_fold(
        &mut self,
        config: &RouterConfig,
        now: Instant,
        id: RequestId,
        upstream: Option<PeerId>,
        received_htl: u8,
        data_from: PeerId,
    );
    /// This node is the data source: offer itself to the request's return path.
    fn offer_fold(
        &mut self,
        config: &RouterConfig,
        transmits: &mut VecDeque<(PeerId, Message)>,
        to: PeerId,
        id: RequestId,
    );
}

/// What a machine may read of the router at any time, even from `&self` (timers,
/// queries).
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub config: &'a RouterConfig,
    /// Where this node is now.
    pub location: Location,
    pub peers: &'a PeerTable,
}

/// The router's shared state, lent to one machine for one input.
pub(super) struct Ctx<'a> {
    pub config: &'a RouterConfig,
    /// Where this node is now.
    pub location: Location,
    pub peers: &'a mut PeerTable,
    /// The router's one random stream: every machine draws from it in turn, so a run
    /// replays exactly.
    pub rng: &'a mut ChaCha8Rng,
    /// Ids seen here (loop detection for requests, announcements and swaps alike).
    pub seen: &'a mut Seen,
    /// Requests in flight (their ids are taken); `None` while the requests machine
    /// itself runs (it knows its own).
    pub requests: Option<&'a dyn IdsInUse>,
    /// The opennet machine, lent to the requests machine alone, for path folding: a
    /// delivery counts as a peer's success, a request that ended with data awaits the
    /// source's offer, a data source offers itself.
    pub opennet: Option<&'a mut dyn PathFolding>,
    pub transmits: &'a mut VecDeque<(PeerId, Message)>,
    pub events: &'a mut VecDeque<Event>,
}

impl Ctx<'_> {
    /// The read-only part.
    pub fn view(&self) -> View<'_> {
        View {
            config: self.config,
            location: self.location,
            peers: self.peers,
        }
    }

    /// A random id that neither a request in flight nor a message seen here uses.
    pub fn fresh_id(&mut self) -> RequestId {
        let requests = self.requests;
        super::seen::fresh_id(self.rng, self.seen, &|id| {
            requests.is_some_and(|r| r.in_use(id))
        })
    }

    /// A routable peer drawn uniformly, other than those in `except`.
    pub fn random_peer_except(&mut self, except: &[PeerId]) -> Option<PeerId> {
        let candidates: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|p| p.routable && !except.contains(&p.id))
            .map(|p| p.id)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.gen_range(0..candidates.len())])
    }

    /// Queues `msg` for `to`.
    pub fn send(&mut self, to: PeerId, msg: Message) {
        self.transmits.push_back((to, msg));
    }
}
