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

//!
//! # The machine
//! [`Swapping`] owns the swaps in flight and their counters, and takes each input with
//! the router's [`Ctx`] (it only reads the peer table). A swap that moves the node
//! returns the new location, and the router takes it and tells its peers.

use super::ctx::Ctx;
use super::time::later;
use super::PeerId;
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

/// Swapping state of one router: the swaps it takes part in and its counters.
#[derive(Clone, Debug, Default)]
pub(super) struct Swapping {
    relays: HashMap<RequestId, Relay>,
    own: HashMap<RequestId, Own>,
    next: Option<Instant>,
    stats: SwapStats,
}

/// When the next swap of this node's is due: a jittered interval from `now`.
fn next_swap_at(cx: &mut Ctx, now: Instant) -> Instant {
    let mean = cx.config.swap.interval.max(Duration::from_millis(1));
    let f: f64 = cx.rng.gen_range(0.5..1.5);
    later(now, mean.mul_f64(f))
}

/// Our side of a swap: a fresh nonce, our location and our peers' locations.
fn own_side(cx: &mut Ctx) -> Side {
    let mut nonce = [0u8; 32];
    cx.rng.fill(&mut nonce[..]);
    Side {
        nonce,
        location: cx.location,
        peers: cx
            .peers
            .iter()
            .filter(|p| p.routable)
            .map(|p| p.location)
            .take(MAX_NEIGHBOURS)
            .collect(),
    }
}

/// Whether our location sits on top of one our peers or their peers hold (their lists
/// name us too: our own location is left out).
fn crowded(cx: &Ctx) -> bool {
    let own = cx.location;
    let known: Vec<Location> = cx
        .peers
        .iter()
        .filter(|p| p.routable)
        .flat_map(|p| std::iter::once(p.location).chain(p.neighbours.iter().copied()))
        .filter(|&l| l != own)
        .collect();
    swap::crowded(own, &known)
}

fn send_swap_request(cx: &mut Ctx, to: PeerId, id: RequestId, hops: u8, commitment: [u8; 32]) {
    cx.send(
        to,
        Message::SwapRequest {
            id,
            hops,
            commitment,
        },
    );
}

impl Swapping {
    /// The next instant swapping wants the router's timer.
    pub(super) fn timeout(&self, config: &SwapConfig) -> Option<Instant> {
        if !config.enabled {
            return None;
        }
        let expiry = self
            .relays
            .values()
            .map(|r| r.expires)
            .chain(self.own.values().map(|o| o.expires))
            .min();
        [self.next, expiry].into_iter().flatten().min()
    }

    /// A swap message from `from` (a `RejectedLoop` only if it is for a swap). Returns a
    /// location to move to when a swap says so.
    pub(super) fn handle(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        msg: Message,
    ) -> Option<Location> {
        match msg {
            Message::SwapRequest {
                id,
                hops,
                commitment,
            } => self.on_request(cx, now, from, id, hops, commitment),
            Message::SwapCommit { id, commitment } => self.on_commit(cx, from, id, commitment),
            Message::SwapReveal {
                id,
                nonce,
                location,
                peers,
            } => {
                let them = Side {
                    nonce,
                    location,
                    peers: peers.into_inner(),
                };
                return self.on_reveal(cx, from, id, them);
            }
            Message::RejectedLoop { id } => self.on_loop(cx, from, id),
            _ => {}
        }
        None
    }

    /// Swapping upkeep: forget expired swaps, start one when due. Returns a location to
    /// move to (a crowded node draws a fresh one).
    pub(super) fn tick(&mut self, cx: &mut Ctx, now: Instant) -> Option<Location> {
        if !cx.config.swap.enabled {
            return None;
        }
        self.relays.retain(|_, r| r.expires > now);
        self.own.retain(|_, o| o.expires > now);
        match self.next {
            None => self.next = Some(next_swap_at(cx, now)),
            Some(t) if t <= now => {
                self.next = Some(next_swap_at(cx, now));
                return self.start(cx, now);
            }
            Some(_) => {}
        }
        None
    }

    fn start(&mut self, cx: &mut Ctx, now: Instant) -> Option<Location> {
        if !self.own.is_empty() {
            // One swap at a time: a move in the middle of another would reveal a stale
            // location.
            return None;
        }
        if cx.config.swap.rerandomise_crowded && crowded(cx) {
            self.stats.rerandomised += 1;
            return Some(Location(cx.rng.gen()));
        }
        let first = cx.random_peer_except(&[])?;
        let ours = own_side(cx);
        let id = cx.fresh_id();
        cx.seen.insert(later(now, cx.config.seen_ttl), id);
        let commitment = ours.commitment();
        self.own.insert(
            id,
            Own {
                role: Role::Initiator { ours, theirs: None },
                via: first,
                tried: vec![first],
                expires: later(now, cx.config.swap.ttl),
            },
        );
        self.stats.started += 1;
        send_swap_request(cx, first, id, cx.config.swap.walk_hops.max(1), commitment);
        None
    }

    /// A swap request from `from`: relay its walk, or partner it.
    fn on_request(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        from: PeerId,
        id: RequestId,
        hops: u8,
        commitment: [u8; 32],
    ) {
        if !cx.config.swap.enabled {
            return;
        }
        if cx.seen.contains(id) {
            // The walk came back here: the sender tries another peer.
            cx.transmits.push_back((from, Message::RejectedLoop { id }));
            return;
        }
        cx.seen.insert(later(now, cx.config.seen_ttl), id);
        let expires = later(now, cx.config.swap.ttl);
        // A node busy with a swap of its own passes the request on rather than take part.
        let busy = !self.own.is_empty();
        let onward = if hops > 1 || busy {
            cx.random_peer_except(&[from])
        } else {
            None
        };
        match onward {
            Some(next) if self.relays.len() < MAX_RELAYED => {
                // Never below 1: a busy node passes a last hop on as a last hop (and a
                // hostile 0 means the same).
                let hops = hops.saturating_sub(1).max(1);
                self.relays.insert(
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
                self.stats.relayed += 1;
                send_swap_request(cx, next, id, hops, commitment);
            }
            Some(_) => {}
            None if busy => {}
            None => self.partner(cx, from, id, commitment, expires),
        }
    }

    /// Becomes the partner of swap `id`: commits to our side.
    fn partner(
        &mut self,
        cx: &mut Ctx,
        from: PeerId,
        id: RequestId,
        theirs: [u8; 32],
        expires: Instant,
    ) {
        let ours = own_side(cx);
        let mine = ours.commitment();
        self.own.insert(
            id,
            Own {
                role: Role::Partner { ours, theirs },
                via: from,
                tried: Vec::new(),
                expires,
            },
        );
        self.stats.partnered += 1;
        cx.transmits.push_back((
            from,
            Message::SwapCommit {
                id,
                commitment: mine,
            },
        ));
    }

    /// Whether `id` is a swap this node relays or started (a `RejectedLoop` for it is a
    /// walk that looped, not a request's).
    pub(super) fn is_swap(&self, id: RequestId) -> bool {
        self.relays.contains_key(&id) || self.own.contains_key(&id)
    }

    /// The walk of swap `id` reached a node it had passed: go on through another peer,
    /// or hand the loop back when none is left.
    fn on_loop(&mut self, cx: &mut Ctx, from: PeerId, id: RequestId) {
        if self.relays.contains_key(&id) {
            self.relay_loop(cx, from, id);
            return;
        }
        let Some(own) = self.own.get(&id) else {
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
        match cx.random_peer_except(&exclude) {
            Some(next) => {
                if let Some(own) = self.own.get_mut(&id) {
                    own.via = next;
                    own.tried.push(next);
                }
                send_swap_request(cx, next, id, cx.config.swap.walk_hops.max(1), commitment);
            }
            None => {
                // Every first hop looped: this swap is over, and the node free for the next.
                self.own.remove(&id);
            }
        }
    }

    /// A walk this node relays looped: on through another peer, or back to its sender.
    fn relay_loop(&mut self, cx: &mut Ctx, from: PeerId, id: RequestId) {
        let Some(r) = self.relays.get(&id) else {
            return;
        };
        if r.next != from {
            return;
        }
        let mut exclude = r.tried.clone();
        exclude.push(r.prev);
        let (prev, hops, commitment) = (r.prev, r.hops, r.commitment);
        match cx.random_peer_except(&exclude) {
            Some(next) => {
                if let Some(r) = self.relays.get_mut(&id) {
                    r.next = next;
                    r.tried.push(next);
                }
                send_swap_request(cx, next, id, hops, commitment);
            }
            None => {
                self.relays.remove(&id);
                cx.transmits.push_back((prev, Message::RejectedLoop { id }));
            }
        }
    }

    /// Passes a swap message along the walk if we relay `id`; true if so.
    fn relay(&mut self, cx: &mut Ctx, from: PeerId, id: RequestId, msg: Message) -> bool {
        let Some(r) = self.relays.get(&id) else {
            return false;
        };
        let to = if from == r.prev {
            r.next
        } else if from == r.next {
            r.prev
        } else {
            return true;
        };
        cx.transmits.push_back((to, msg));
        true
    }

    /// The partner's commitment reached the initiator: reveal.
    fn on_commit(&mut self, cx: &mut Ctx, from: PeerId, id: RequestId, commitment: [u8; 32]) {
        if self.relay(cx, from, id, Message::SwapCommit { id, commitment }) {
            return;
        }
        let Some(own) = self.own.get_mut(&id) else {
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
        cx.transmits.push_back((from, reveal));
    }

    /// The other end's reveal: check it against its commitment, reveal in turn (the
    /// partner) and decide. Returns the location to move to when the swap says so.
    fn on_reveal(
        &mut self,
        cx: &mut Ctx,
        from: PeerId,
        id: RequestId,
        them: Side,
    ) -> Option<Location> {
        if self.relays.contains_key(&id) {
            let msg = reveal_of(id, &them);
            self.relay(cx, from, id, msg);
            return None;
        }
        if self.own.get(&id).is_none_or(|o| o.via != from) {
            return None;
        }
        let own = self.own.remove(&id)?;
        let (initiator, partner, we_initiated) = match own.role {
            Role::Partner { ours, theirs } => {
                if !them.matches(&theirs) {
                    self.stats.refused += 1;
                    return None;
                }
                // Checked: now we reveal, and decide.
                cx.transmits.push_back((from, reveal_of(id, &ours)));
                (them, ours, false)
            }
            Role::Initiator {
                ours,
                theirs: Some(c),
            } => {
                if !them.matches(&c) {
                    self.stats.refused += 1;
                    return None;
                }
                (ours, them, true)
            }
            Role::Initiator { theirs: None, .. } => return None,
        };
        self.decide(cx, &initiator, &partner, we_initiated)
    }

    /// Both reveals checked: move to the partner's location if the rule says so.
    fn decide(
        &mut self,
        cx: &Ctx,
        initiator: &Side,
        partner: &Side,
        we_initiated: bool,
    ) -> Option<Location> {
        let (mine, target) = if we_initiated {
            (initiator.location, partner.location)
        } else {
            (partner.location, initiator.location)
        };
        // One swap at a time (see `on_request`), so we are still where we said.
        let guard = cx.config.swap.max_side_loss;
        if mine == cx.location && swap::decide_guarded(initiator, partner, guard) {
            self.stats.moved += 1;
            Some(target)
        } else {
            self.stats.declined += 1;
            None
        }
    }

    /// A link came up: the first swap is due an interval from now, and the peer hears
    /// where we are now (its link's `Hello` may carry the location we had at start).
    pub(super) fn peer_added(&mut self, cx: &mut Ctx, now: Instant, peer: PeerId) {
        if !cx.config.swap.enabled {
            return;
        }
        if self.next.is_none() {
            self.next = Some(next_swap_at(cx, now));
        }
        cx.transmits.push_back((
            peer,
            Message::LocationChanged {
                location: cx.location,
            },
        ));
    }

    /// Forgets every open swap (swapping was turned off); the counters stay.
    pub(super) fn forget_open(&mut self) {
        let stats = std::mem::take(&mut self.stats);
        *self = Swapping {
            stats,
            ..Swapping::default()
        };
    }

    /// Swapping counters.
    pub(super) fn stats(&self) -> &SwapStats {
        &self.stats
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
