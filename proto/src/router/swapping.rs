//! Darknet location swapping over the wire, with the rule of [`crate::swap`].
//!
//! Every `interval` (jittered) a node starts a swap: it commits to a fresh nonce with its
//! location and its peers' locations and sends [`Message::SwapRequest`] to a random peer.
//! Each relay passes it to a random peer other than the sender, one hop less, and
//! remembers the two; the node that receives it with one hop left (or has no other peer)
//! is the partner. Then, along the walk's path:
//! 1. the partner answers [`Message::SwapCommit`] with its own commitment;
//! 2. the initiator reveals ([`Message::SwapReveal`]);
//! 3. the partner checks the reveal against the first commitment, reveals in turn and
//!    decides; the initiator checks the partner's reveal against its commitment and
//!    decides. Both decide by [`crate::swap::decide`] on the same two reveals, so they
//!    agree; neither saw the other's nonce before committing to its own.
//!
//! A node that swaps takes its partner's old location and tells its peers
//! ([`Message::LocationChanged`]), and the shell learns it from
//! [`Event::LocationChanged`]. A reveal that does not match its commitment ends the swap
//! with no move (`swaps_refused`): the end that lied, or a relay that altered it, gains
//! nothing. A reveal lost on the way leaves the partner moved and the initiator not — two
//! nodes at one location for a while, which later swaps undo; it costs routing a little,
//! never correctness.
//!
//! A node takes part in one swap at a time (it starts none while one is open and passes a
//! request on rather than partner it), so the location it reveals is still its own when
//! it decides. Bounded: at most [`MAX_RELAYED`] swaps relayed at once, each forgotten
//! after `ttl`.

use super::request::later;
use super::{Event, PeerId, Router};
use crate::message::{BoundedVec, Message, RequestId, MAX_NEIGHBOURS};
use crate::ring::Location;
use crate::swap::{self, Side};
use rand::Rng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Swapping tunables. Off by default: only a darknet node swaps (an opennet node's
/// location must stay where its announcement placed it).
#[derive(Clone, Debug)]
pub struct SwapConfig {
    /// Start swaps and answer them.
    pub enabled: bool,
    /// Mean pause between two swaps this node starts (drawn uniformly from half to one
    /// and a half times this).
    pub interval: Duration,
    /// Hops a swap request walks at random before it finds its partner.
    pub walk_hops: u8,
    /// How long a swap's state is kept, at its ends and at relays.
    pub ttl: Duration,
    /// The pitch-black guard ([`swap::decide_guarded`]): a swap may lengthen either
    /// side's own links by at most this much (mean `ln` of the factor per link). `None`
    /// turns it off. Default [`swap::DEFAULT_MAX_SIDE_LOSS`].
    pub max_side_loss: Option<f64>,
    /// The mitigation's other half: before starting a swap, a node whose location lies
    /// within [`swap::CROWD_DISTANCE`] of one its peers or their peers hold
    /// ([`swap::crowded`]) draws a fresh random location instead. Default on.
    pub rerandomise_crowded: bool,
}

impl Default for SwapConfig {
    fn default() -> SwapConfig {
        SwapConfig {
            enabled: false,
            interval: Duration::from_secs(10),
            walk_hops: 6,
            ttl: Duration::from_secs(30),
            max_side_loss: Some(swap::DEFAULT_MAX_SIDE_LOSS),
            rerandomise_crowded: true,
        }
    }
}

/// Counters of swapping.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct SwapStats {
    /// Swaps this node started.
    pub started: u64,
    /// Swaps this node was the partner of.
    pub partnered: u64,
    /// Swaps this node relayed.
    pub relayed: u64,
    /// Swaps decided with a move (this node took its partner's location).
    pub moved: u64,
    /// Swaps decided with no move.
    pub declined: u64,
    /// Swaps ended because a reveal did not match its commitment (or was malformed).
    pub refused: u64,
    /// Fresh random locations drawn because the node's own was crowded.
    pub rerandomised: u64,
}

/// Most swaps relayed at once; more are dropped.
pub const MAX_RELAYED: usize = 1024;

#[derive(Clone, Debug)]
struct Relay {
    prev: PeerId,
    next: PeerId,
    /// Peers this relay tried for the walk (a loop sends it to the next).
    tried: Vec<PeerId>,
    /// What the walk carries on from here.
    hops: u8,
    commitment: [u8; 32],
    expires: Instant,
}

#[derive(Clone, Debug)]
enum Role {
    /// We started it; `theirs` is the partner's commitment once it came.
    Initiator {
        ours: Side,
        theirs: Option<[u8; 32]>,
    },
    /// We are its partner; `theirs` is the initiator's commitment.
    Partner { ours: Side, theirs: [u8; 32] },
}

#[derive(Clone, Debug)]
struct Own {
    role: Role,
    /// The peer the swap's messages come from and go to.
    via: PeerId,
    /// First hops tried (the initiator's walk goes on through another after a loop).
    tried: Vec<PeerId>,
    expires: Instant,
}

/// Swapping state of one router.
#[derive(Clone, Debug, Default)]
pub(super) struct Swapping {
    relays: HashMap<RequestId, Relay>,
    own: HashMap<RequestId, Own>,
    next: Option<Instant>,
}

impl Router {
    /// The next instant swapping wants [`Router::handle_timeout`].
    pub(super) fn swap_timeout(&self) -> Option<Instant> {
        if !self.config.swap.enabled {
            return None;
        }
        let expiry = self
            .swapping
            .relays
            .values()
            .map(|r| r.expires)
            .chain(self.swapping.own.values().map(|o| o.expires))
            .min();
        [self.swapping.next, expiry].into_iter().flatten().min()
    }

    /// Swapping upkeep: forget expired swaps, start one when due.
    pub(super) fn swap_tick(&mut self, now: Instant) {
        if !self.config.swap.enabled {
            return;
        }
        self.swapping.relays.retain(|_, r| r.expires > now);
        self.swapping.own.retain(|_, o| o.expires > now);
        match self.swapping.next {
            None => self.swapping.next = Some(self.next_swap_at(now)),
            Some(t) if t <= now => {
                self.swapping.next = Some(self.next_swap_at(now));
                self.start_swap(now);
            }
            Some(_) => {}
        }
    }

    fn next_swap_at(&mut self, now: Instant) -> Instant {
        let mean = self.config.swap.interval.max(Duration::from_millis(1));
        let f: f64 = self.rng.gen_range(0.5..1.5);
        later(now, mean.mul_f64(f))
    }

    /// Our side of a swap: a fresh nonce, our location and our peers' locations.
    fn own_side(&mut self) -> Side {
        let mut nonce = [0u8; 32];
        self.rng.fill(&mut nonce[..]);
        Side {
            nonce,
            location: self.location,
            peers: self
                .peers
                .iter()
                .filter(|p| p.routable)
                .map(|p| p.location)
                .take(MAX_NEIGHBOURS)
                .collect(),
        }
    }

    /// Whether our location sits on top of one our peers or their peers hold (their
    /// lists name us too: our own location is left out).
    fn crowded(&self) -> bool {
        let own = self.location;
        let known: Vec<Location> = self
            .peers
            .iter()
            .filter(|p| p.routable)
            .flat_map(|p| std::iter::once(p.location).chain(p.neighbours.iter().copied()))
            .filter(|&l| l != own)
            .collect();
        swap::crowded(own, &known)
    }

    fn random_peer(&mut self, except: Option<PeerId>) -> Option<PeerId> {
        let except: Vec<PeerId> = except.into_iter().collect();
        self.random_peer_except(&except)
    }

    fn random_peer_except(&mut self, except: &[PeerId]) -> Option<PeerId> {
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

    fn start_swap(&mut self, now: Instant) {
        if !self.swapping.own.is_empty() {
            // One swap at a time: a move in the middle of another would reveal a stale
            // location.
            return;
        }
        if self.config.swap.rerandomise_crowded && self.crowded() {
            self.stats.swap.rerandomised += 1;
            let fresh = Location(self.rng.gen());
            self.move_to(now, fresh);
            return;
        }
        let Some(first) = self.random_peer(None) else {
            return;
        };
        let ours = self.own_side();
        let id = self.fresh_id();
        self.seen.insert(later(now, self.config.seen_ttl), id);
        let commitment = ours.commitment();
        self.swapping.own.insert(
            id,
            Own {
                role: Role::Initiator { ours, theirs: None },
                via: first,
                tried: vec![first],
                expires: later(now, self.config.swap.ttl),
            },
        );
        self.stats.swap.started += 1;
        self.send_swap_request(first, id, self.config.swap.walk_hops.max(1), commitment);
    }

    pub(super) fn on_swap_request(
        &mut self,
        now: Instant,
        from: PeerId,
        id: RequestId,
        hops: u8,
        commitment: [u8; 32],
    ) {
        if !self.config.swap.enabled {
            return;
        }
        if self.seen.contains(id) {
            // The walk came back here: the sender tries another peer.
            self.transmits
                .push_back((from, Message::RejectedLoop { id }));
            return;
        }
        self.seen.insert(later(now, self.config.seen_ttl), id);
        let expires = later(now, self.config.swap.ttl);
        // A node busy with a swap of its own passes the request on rather than take part.
        let busy = !self.swapping.own.is_empty();
        let onward = if hops > 1 || busy {
            self.random_peer(Some(from))
        } else {
            None
        };
        match onward {
            Some(next) if self.swapping.relays.len() < MAX_RELAYED => {
                // Never below 1: a busy node passes a last hop on as a last hop (and a
                // hostile 0 means the same).
                let hops = hops.saturating_sub(1).max(1);
                self.swapping.relays.insert(
                    id,
                    Relay {
                        prev: from,
                        next,
                        tried: vec![next],
                        hops,
                        commitment,
                        expires,
                    },
                );
                self.stats.swap.relayed += 1;
                self.send_swap_request(next, id, hops, commitment);
            }
            Some(_) => {}
            None => {
                if busy {
                    return;
                }
                let ours = self.own_side();
                let mine = ours.commitment();
                self.swapping.own.insert(
                    id,
                    Own {
                        role: Role::Partner {
                            ours,
                            theirs: commitment,
                        },
                        via: from,
                        tried: Vec::new(),
                        expires,
                    },
                );
                self.stats.swap.partnered += 1;
                self.transmits.push_back((
                    from,
                    Message::SwapCommit {
                        id,
                        commitment: mine,
                    },
                ));
            }
        }
    }

    /// Whether `id` is a swap this node relays or started (a `RejectedLoop` for it is a
    /// walk that looped, not a request's).
    pub(super) fn is_swap(&self, id: RequestId) -> bool {
        self.swapping.relays.contains_key(&id) || self.swapping.own.contains_key(&id)
    }

    /// The walk of swap `id` reached a node it had passed: go on through another peer,
    /// or hand the loop back when none is left.
    pub(super) fn on_swap_loop(&mut self, from: PeerId, id: RequestId) {
        if let Some(r) = self.swapping.relays.get(&id) {
            if r.next != from {
                return;
            }
            let mut exclude = r.tried.clone();
            exclude.push(r.prev);
            let (prev, hops, commitment) = (r.prev, r.hops, r.commitment);
            match self.random_peer_except(&exclude) {
                Some(next) => {
                    if let Some(r) = self.swapping.relays.get_mut(&id) {
                        r.next = next;
                        r.tried.push(next);
                    }
                    self.send_swap_request(next, id, hops, commitment);
                }
                None => {
                    self.swapping.relays.remove(&id);
                    self.transmits
                        .push_back((prev, Message::RejectedLoop { id }));
                }
            }
            return;
        }
        let Some(own) = self.swapping.own.get(&id) else {
            return;
        };
        let Role::Initiator { ours, theirs: None } = &own.role else {
            return;
        };
        if own.via != from {
            return;
        }
        let commitment = ours.commitment();
        let exclude = own.tried.clone();
        match self.random_peer_except(&exclude) {
            Some(next) => {
                if let Some(own) = self.swapping.own.get_mut(&id) {
                    own.via = next;
                    own.tried.push(next);
                }
                self.send_swap_request(next, id, self.config.swap.walk_hops.max(1), commitment);
            }
            None => {
                // Every first hop looped: this swap is over, and the node free for the next.
                self.swapping.own.remove(&id);
            }
        }
    }

    fn send_swap_request(&mut self, to: PeerId, id: RequestId, hops: u8, commitment: [u8; 32]) {
        self.transmits.push_back((
            to,
            Message::SwapRequest {
                id,
                hops,
                commitment,
            },
        ));
    }

    /// Passes a swap message along the walk if we relay `id`; true if so.
    fn relay_swap(&mut self, from: PeerId, id: RequestId, msg: Message) -> bool {
        let Some(r) = self.swapping.relays.get(&id) else {
            return false;
        };
        let to = if from == r.prev {
            r.next
        } else if from == r.next {
            r.prev
        } else {
            return true;
        };
        self.transmits.push_back((to, msg));
        true
    }

    pub(super) fn on_swap_commit(&mut self, from: PeerId, id: RequestId, commitment: [u8; 32]) {
        if self.relay_swap(from, id, Message::SwapCommit { id, commitment }) {
            return;
        }
        let Some(own) = self.swapping.own.get_mut(&id) else {
            return;
        };
        if own.via != from {
            return;
        }
        let Role::Initiator {
            ours,
            theirs: theirs @ None,
        } = &mut own.role
        else {
            return;
        };
        *theirs = Some(commitment);
        let reveal = reveal_of(id, ours);
        self.transmits.push_back((from, reveal));
    }

    pub(super) fn on_swap_reveal(
        &mut self,
        now: Instant,
        from: PeerId,
        id: RequestId,
        nonce: [u8; 32],
        location: Location,
        peers: Vec<Location>,
    ) {
        let them = Side {
            nonce,
            location,
            peers,
        };
        if self.swapping.relays.contains_key(&id) {
            let msg = reveal_of(id, &them);
            self.relay_swap(from, id, msg);
            return;
        }
        if self.swapping.own.get(&id).is_none_or(|o| o.via != from) {
            return;
        }
        let Some(own) = self.swapping.own.remove(&id) else {
            return;
        };
        let (initiator, partner, we_initiated) = match own.role {
            Role::Partner { ours, theirs } => {
                if !them.matches(&theirs) {
                    self.stats.swap.refused += 1;
                    return;
                }
                // Checked: now we reveal, and decide.
                self.transmits.push_back((from, reveal_of(id, &ours)));
                (them, ours, false)
            }
            Role::Initiator {
                ours,
                theirs: Some(c),
            } => {
                if !them.matches(&c) {
                    self.stats.swap.refused += 1;
                    return;
                }
                (ours, them, true)
            }
            Role::Initiator { theirs: None, .. } => return,
        };
        let (mine, target) = if we_initiated {
            (initiator.location, partner.location)
        } else {
            (partner.location, initiator.location)
        };
        // One swap at a time (see `on_swap_request`), so we are still where we said.
        let guard = self.config.swap.max_side_loss;
        if mine == self.location && swap::decide_guarded(&initiator, &partner, guard) {
            self.stats.swap.moved += 1;
            self.move_to(now, target);
        } else {
            self.stats.swap.declined += 1;
        }
    }

    /// Takes `location` and tells every peer.
    fn move_to(&mut self, _now: Instant, location: Location) {
        self.location = location;
        let peers: Vec<PeerId> = self.peers.iter().map(|p| p.id).collect();
        for p in peers {
            self.transmits
                .push_back((p, Message::LocationChanged { location }));
        }
        self.events.push_back(Event::LocationChanged { location });
    }

    /// A link came up: the first swap is due an interval from now, and the peer hears
    /// where we are now (its link's `Hello` may carry the location we had at start).
    pub(super) fn swap_peer_added(&mut self, now: Instant, peer: PeerId) {
        if !self.config.swap.enabled {
            return;
        }
        if self.swapping.next.is_none() {
            self.swapping.next = Some(self.next_swap_at(now));
        }
        self.transmits.push_back((
            peer,
            Message::LocationChanged {
                location: self.location,
            },
        ));
    }

    /// A peer moved. Only swapping nodes move, and only they listen.
    pub(super) fn on_location_changed(&mut self, from: PeerId, location: Location) {
        if !self.config.swap.enabled {
            return;
        }
        if let Some(p) = self.peers.get_mut(from) {
            p.location = location;
        }
    }

    /// Turns swapping on or off (a simulator's swap phase ends; a node stops taking
    /// part). Open swaps are forgotten.
    pub fn set_swapping(&mut self, on: bool) {
        // A configuration shared with other routers is copied only to change it.
        if self.config.swap.enabled != on {
            std::sync::Arc::make_mut(&mut self.config).swap.enabled = on;
        }
        if !on {
            self.swapping = Swapping::default();
        }
    }

    /// Swapping counters.
    pub fn swap_stats(&self) -> &SwapStats {
        &self.stats.swap
    }
}

fn reveal_of(id: RequestId, side: &Side) -> Message {
    let peers = side.peers.iter().copied().take(MAX_NEIGHBOURS).collect();
    Message::SwapReveal {
        id,
        nonce: side.nonce,
        location: side.location,
        peers: BoundedVec::new(peers).unwrap_or_else(|_| {
            BoundedVec::new(Vec::new()).expect("an empty list is within bounds")
        }),
    }
}
