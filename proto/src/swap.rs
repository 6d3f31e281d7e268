//! Location swapping (Sandberg, "Searching in a small world", 2005): the rule by which two
//! darknet nodes decide to exchange their ring locations, so that a friend graph whose
//! nodes picked random locations comes to route greedily.
//!
//! Two nodes `a` and `b` swap when that does not lengthen the product of their links'
//! ring distances, and otherwise with probability `before / after` (Metropolis–Hastings
//! on that product). Products of hundreds of distances overflow, so the rule works on sums
//! of logarithms: [`gain`] is `ln(before / after)`, and [`accept`] takes it with a uniform
//! draw in [0, 1).
//!
//! Neither end may steer the draw. Each first sends [`commit`] of a fresh random nonce
//! with the location and peer locations it will reveal; once both commitments are
//! exchanged both reveal, each checks the other's reveal against its commitment
//! ([`Side::matches`]), and both compute the same [`decide`] from the two nonces
//! ([`shared_uniform`]). A node that lies about its peers changes only its own side of the
//! product, which its partner cannot check: the pitch-black attack lives there, and is for
//! the mitigation, not this rule, to bound.
//!
//! The simulator's darknet topology swaps with this rule; the daemon will drive it over
//! the wire (docs/routing.md, darknet).

use crate::ring::Location;
use sha2::{Digest, Sha256};

/// Domain separation for swap commitments.
const COMMIT_DOMAIN: &[u8] = b"veil-swap-commit-v1";
/// Domain separation for the shared draw.
const DRAW_DOMAIN: &[u8] = b"veil-swap-draw-v1";
/// Most peer locations one side may reveal (a node's peers are bounded far below this).
pub const MAX_SWAP_PEERS: usize = 256;

/// `ln(d + 1)` of the ring distance between `a` and `b` in ring units (so a distance of
/// zero, two nodes at one location, stays finite).
fn log_distance(a: Location, b: Location) -> f64 {
    (a.distance(b).0 as f64 + 1.0).ln()
}

/// `ln` of the product of the ring distances from `at` to each of `peers`.
pub fn log_link_product(at: Location, peers: &[Location]) -> f64 {
    peers.iter().map(|&p| log_distance(at, p)).sum()
}

/// `ln(before / after)` for `a` at `a_loc` with peers `a_peers` and `b` likewise, where
/// after means `a` at `b_loc` and `b` at `a_loc`. Positive: the swap shortens links.
/// When the two are peers of each other, each lists the other's location; their own link
/// keeps its length, so it cancels out.
pub fn gain(a_loc: Location, a_peers: &[Location], b_loc: Location, b_peers: &[Location]) -> f64 {
    let before = log_link_product(a_loc, a_peers) + log_link_product(b_loc, b_peers);
    let after = log_link_product(b_loc, a_peers) + log_link_product(a_loc, b_peers);
    before - after
}

/// Sandberg's rule: swap when the product of link distances does not grow, else with
/// probability `before / after`; `u` is a uniform draw in [0, 1).
pub fn accept(gain: f64, u: f64) -> bool {
    gain >= 0.0 || u < gain.exp()
}

/// What one side of a swap reveals: the nonce it committed to, its location and its peers'
/// locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// Fresh randomness for the shared draw.
    pub nonce: [u8; 32],
    /// The node's location.
    pub location: Location,
    /// Its peers' locations (at most [`MAX_SWAP_PEERS`]).
    pub peers: Vec<Location>,
}

impl Side {
    /// The commitment to this side, sent before either side reveals.
    pub fn commitment(&self) -> [u8; 32] {
        commit(&self.nonce, self.location, &self.peers)
    }

    /// Whether this reveal is the one `commitment` was made to (and within bounds).
    pub fn matches(&self, commitment: &[u8; 32]) -> bool {
        self.peers.len() <= MAX_SWAP_PEERS && self.commitment() == *commitment
    }
}

/// SHA-256 over a domain tag, the nonce, the location and the peer locations (count
/// first), all big-endian: binds a side to what it will reveal.
pub fn commit(nonce: &[u8; 32], location: Location, peers: &[Location]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(COMMIT_DOMAIN);
    h.update(nonce);
    h.update(location.0.to_be_bytes());
    h.update((peers.len() as u64).to_be_bytes());
    for p in peers {
        h.update(p.0.to_be_bytes());
    }
    h.finalize().into()
}

/// The pitch-black guard's default: a swap may lengthen either side's own links by at
/// most this much on average, as `ln` of the factor per link (`ln 2`: no swap may double
/// a side's links, on average). Chosen by measurement over ln 1.4 to ln 16
/// (docs/routing.md, pitch black): the best both with and without attackers.
pub const DEFAULT_MAX_SIDE_LOSS: f64 = std::f64::consts::LN_2;

/// How much longer one side's own links get when it moves from `at` to `to`: the mean
/// over its peers of `ln(after / before)` (0 without peers).
pub fn side_loss(at: Location, peers: &[Location], to: Location) -> f64 {
    if peers.is_empty() {
        return 0.0;
    }
    (log_link_product(to, peers) - log_link_product(at, peers)) / peers.len() as f64
}

/// The decision both ends reach, with the pitch-black guard when `max_side_loss` is
/// given: as [`decide`], and refused when either side's own links would lengthen by more
/// than `max_side_loss` ([`side_loss`]).
///
/// Why it holds against the attack (Evans, GauthierDickey and Grothoff, 2007): a liar
/// forces Sandberg's rule by revealing made-up peers at its victim's location, so its own
/// side of the product seems to gain without bound. But the victim's side is computed
/// from the victim's own peers, which the liar cannot change: moving a well-placed node to
/// the attacker's chosen location lengthens that node's links a great deal, and the guard
/// refuses it. Only a node whose peers are near the offered location would accept, and
/// moving that node there does no harm. Both ends compute both sides' losses from the two
/// reveals, so they still reach the same decision.
pub fn decide_guarded(initiator: &Side, partner: &Side, max_side_loss: Option<f64>) -> bool {
    if let Some(max) = max_side_loss {
        let i = side_loss(initiator.location, &initiator.peers, partner.location);
        let p = side_loss(partner.location, &partner.peers, initiator.location);
        if i > max || p > max {
            return false;
        }
    }
    decide(initiator, partner)
}

/// How close to a location the node knows its own may lie before it counts as taken:
/// 2^-24 of the ring. Honest locations are drawn at random from 2^64, so two of them
/// this close are a one-in-eight-million chance per pair; the pitch-black attack hands
/// out locations this close to a few points.
pub const CROWD_DISTANCE: u64 = 1 << 40;

/// Whether `own` lies within [`CROWD_DISTANCE`] of one of `known` (the node's peers' and
/// their peers' locations, its own excluded by the caller): then its location is one
/// that attackers handed out, or a copy left by a broken swap, and the node draws a new
/// one (the second half of the pitch-black mitigation).
pub fn crowded(own: Location, known: &[Location]) -> bool {
    known.iter().any(|&k| own.distance(k).0 <= CROWD_DISTANCE)
}

/// A uniform draw in [0, 1) that neither nonce alone decides: the top 53 bits of
/// SHA-256 over both, initiator's first.
pub fn shared_uniform(initiator: &[u8; 32], partner: &[u8; 32]) -> f64 {
    let mut h = Sha256::new();
    h.update(DRAW_DOMAIN);
    h.update(initiator);
    h.update(partner);
    let d: [u8; 32] = h.finalize().into();
    let mut top = [0u8; 8];
    top.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(top) >> 11) as f64 / (1u64 << 53) as f64
}

/// The decision both ends reach from the two reveals: the same on either side.
pub fn decide(initiator: &Side, partner: &Side) -> bool {
    let g = gain(
        initiator.location,
        &initiator.peers,
        partner.location,
        &partner.peers,
    );
    accept(g, shared_uniform(&initiator.nonce, &partner.nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STEP: u64 = u64::MAX / 100;

    fn at(i: u64) -> Location {
        Location(i.wrapping_mul(STEP))
    }

    #[test]
    fn a_swap_that_puts_each_node_among_its_peers_is_taken() {
        // a sits at 50 with peers near 10; b at 10 with peers near 50.
        let (a, b) = (at(50), at(10));
        let a_peers = [at(9), at(11), at(12)];
        let b_peers = [at(49), at(51), at(48)];
        let g = gain(a, &a_peers, b, &b_peers);
        assert!(g > 0.0, "{g}");
        // Taken whatever the draw.
        assert!(accept(g, 0.999_999));
        // The reverse move lengthens links: taken only with probability e^gain.
        let back = gain(b, &a_peers, a, &b_peers);
        assert!((back + g).abs() < 1e-9);
        assert!(!accept(back, 0.5));
        assert!(accept(back, back.exp() / 2.0));
    }

    /// A side's loss is the mean over its peers of how much longer each link gets.
    #[test]
    fn side_loss_is_the_mean_per_link() {
        // From 0 to 50 with peers at 30 and 70: links of 30 and 30 become 20 and 20.
        let loss = side_loss(at(0), &[at(30), at(70)], at(50));
        let want = (20f64 / 30.0).ln();
        assert!((loss - want).abs() < 1e-9, "{loss} vs {want}");
        assert_eq!(side_loss(at(0), &[], at(50)), 0.0);
    }

    /// The guard refuses a swap only when a side's loss is above the limit: at exactly
    /// the limit, a swap the rule takes is taken.
    #[test]
    fn the_guard_takes_a_loss_of_exactly_its_limit() {
        // The initiator at 0 has its peers near 50, the partner at 50 its peer at 30:
        // the swap shortens links overall (taken whatever the draw), but the partner's
        // own link lengthens from 20 to 30.
        let initiator = Side {
            nonce: [1; 32],
            location: at(0),
            peers: vec![at(45), at(55)],
        };
        let partner = Side {
            nonce: [2; 32],
            location: at(50),
            peers: vec![at(30)],
        };
        assert!(decide(&initiator, &partner));
        let limit = side_loss(partner.location, &partner.peers, initiator.location);
        assert!(limit > 0.0);
        assert!(decide_guarded(&initiator, &partner, Some(limit)));
        assert!(!decide_guarded(&initiator, &partner, Some(limit * 0.999)));
        // The same with the roles the other way round: the initiator's loss at the limit.
        assert!(decide_guarded(&partner, &initiator, Some(limit)));
        assert!(!decide_guarded(&partner, &initiator, Some(limit * 0.999)));
        assert!(decide_guarded(&initiator, &partner, None));
    }

    #[test]
    fn a_peer_at_the_same_location_keeps_the_gain_finite() {
        // Distance 0 (a peer, or the partner, at one's own place) and distance 1: the
        // logarithm of the product stays a number either way.
        let a = Location(5);
        for peers in [vec![Location(5)], vec![Location(6), Location(5)]] {
            let g = gain(a, &peers, Location(7), &[Location(5)]);
            assert!(g.is_finite(), "{peers:?}: {g}");
        }
        assert_eq!(log_link_product(a, &[Location(5)]), 0.0);
        assert_eq!(log_link_product(a, &[Location(6)]), 2f64.ln());
    }

    #[test]
    fn commitments_bind_every_revealed_field() {
        let side = Side {
            nonce: [7; 32],
            location: at(3),
            peers: vec![at(4), at(5)],
        };
        let c = side.commitment();
        assert!(side.matches(&c));
        let mut other = side.clone();
        other.nonce[0] ^= 1;
        assert!(!other.matches(&c));
        let mut other = side.clone();
        other.location = at(6);
        assert!(!other.matches(&c));
        let mut other = side.clone();
        other.peers.pop();
        assert!(!other.matches(&c));
        let mut other = side.clone();
        other.peers.swap(0, 1);
        assert!(!other.matches(&c));
        let too_many = Side {
            peers: vec![at(1); MAX_SWAP_PEERS + 1],
            ..side
        };
        assert!(!too_many.matches(&too_many.commitment()));
    }

    /// Frozen: the commitment and the draw are part of the wire protocol. The expected
    /// values were computed independently (Python's hashlib over the same bytes).
    #[test]
    fn commitment_and_draw_vectors() {
        let c = commit(&[1; 32], Location(0x0102_0304_0506_0708), &[Location(9)]);
        assert_eq!(
            hex(&c),
            "5d1a68af5be1fa68f19a029b89a0e822eff7771e6f64b4679753a584a29b2fd3"
        );
        let u = shared_uniform(&[1; 32], &[2; 32]);
        assert_eq!(u.to_bits(), 0x3fad_6a69_e8b4_e2b0);
    }

    #[test]
    fn the_guard_refuses_a_liar_that_the_rule_alone_accepts() {
        // A well-placed victim at 50 with peers around it; a liar offers 10 and claims
        // as many peers as a reveal may hold, all at the victim's location.
        let victim = Side {
            nonce: [1; 32],
            location: at(50),
            peers: vec![at(49), at(51), at(48), at(52), at(20)],
        };
        let liar = Side {
            nonce: [2; 32],
            location: at(10),
            peers: vec![at(50); MAX_SWAP_PEERS],
        };
        for (i, p) in [(&victim, &liar), (&liar, &victim)] {
            assert!(decide(i, p), "the lie forces Sandberg's rule");
            assert!(!decide_guarded(i, p, Some(DEFAULT_MAX_SIDE_LOSS)));
            assert!(decide_guarded(i, p, None), "off is the plain rule");
        }
        assert!(side_loss(victim.location, &victim.peers, liar.location) > DEFAULT_MAX_SIDE_LOSS);
        // The liar's own side seems to gain: the guard does not rest on it.
        assert!(side_loss(liar.location, &liar.peers, victim.location) < 0.0);
    }

    #[test]
    fn the_guard_lets_a_swap_that_helps_both_through() {
        let a = Side {
            nonce: [3; 32],
            location: at(50),
            peers: vec![at(9), at(11), at(12)],
        };
        let b = Side {
            nonce: [4; 32],
            location: at(10),
            peers: vec![at(49), at(51), at(48)],
        };
        assert!(side_loss(a.location, &a.peers, b.location) < 0.0);
        assert!(decide_guarded(&a, &b, Some(DEFAULT_MAX_SIDE_LOSS)));
        assert!(decide_guarded(&b, &a, Some(DEFAULT_MAX_SIDE_LOSS)));
        // A node without peers loses nothing wherever it goes.
        assert_eq!(side_loss(at(1), &[], at(70)), 0.0);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    proptest! {
        /// A swap and its reverse have opposite gains, always finite; the draw lies in
        /// [0, 1).
        #[test]
        fn decision_is_symmetric_in_what_both_can_compute(
            na in any::<[u8; 32]>(), nb in any::<[u8; 32]>(),
            la in any::<u64>(), lb in any::<u64>(),
            pa in proptest::collection::vec(any::<u64>(), 0..20),
            pb in proptest::collection::vec(any::<u64>(), 0..20),
        ) {
            let a = Side { nonce: na, location: Location(la), peers: pa.into_iter().map(Location).collect() };
            let b = Side { nonce: nb, location: Location(lb), peers: pb.into_iter().map(Location).collect() };
            let u = shared_uniform(&a.nonce, &b.nonce);
            prop_assert!((0.0..1.0).contains(&u));
            let g = gain(a.location, &a.peers, b.location, &b.peers);
            let back = gain(b.location, &a.peers, a.location, &b.peers);
            prop_assert!((g + back).abs() <= 1e-6 * (1.0 + g.abs()));
            prop_assert!(g.is_finite());
            // The guard only ever refuses what the rule would take.
            prop_assert!(!decide_guarded(&a, &b, Some(DEFAULT_MAX_SIDE_LOSS)) || decide(&a, &b));
        }
    }
}
