//! The location ring: node and key locations are `u64` points on a circle of 2^64
//! positions, and distance is the shorter way round. Integer arithmetic only, so every
//! node and the simulator agree to the bit.

use crate::keys::RoutingKey;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A point on the ring.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location(pub u64);

/// A distance between two locations: at most half the ring (2^63).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Distance(pub u64);

impl Location {
    /// The location of a key: the first 8 bytes of its routing key, big-endian.
    pub fn of_key(key: &RoutingKey) -> Location {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key.0[..8]);
        Location(u64::from_be_bytes(b))
    }

    /// The shorter way round the ring from `self` to `other`.
    pub fn distance(self, other: Location) -> Distance {
        let a = self.0.wrapping_sub(other.0);
        let b = other.0.wrapping_sub(self.0);
        Distance(a.min(b))
    }

    /// The location as a fraction of the ring in [0, 1), for display and plots only.
    pub fn as_fraction(self) -> f64 {
        self.0 as f64 / 2f64.powi(64)
    }

    /// Whether `self` lies on the clockwise side of `target`: within the half turn that
    /// starts at `target` (`target` itself included, its antipode not).
    pub fn is_clockwise_of(self, target: Location) -> bool {
        self.0.wrapping_sub(target.0) < 1 << 63
    }
}

impl Distance {
    /// Half the ring: the largest possible distance.
    pub const MAX: Distance = Distance(1 << 63);

    /// The distance as a fraction of the ring in [0, 0.5], for display and statistics.
    pub fn as_fraction(self) -> f64 {
        self.0 as f64 / 2f64.powi(64)
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({:.6})", self.as_fraction())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_fraction())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the status page, the API's `location` and the simulator's plots show.
    #[test]
    fn fractions_and_display() {
        assert_eq!(Location(0).as_fraction(), 0.0);
        assert_eq!(Location(1 << 63).as_fraction(), 0.5);
        assert_eq!(Location(3 << 62).as_fraction(), 0.75);
        assert_eq!(Distance::MAX.as_fraction(), 0.5);
        assert_eq!(Distance(1 << 62).as_fraction(), 0.25);
        assert_eq!(Location(1 << 62).to_string(), "0.250000");
        assert_eq!(format!("{:?}", Location(1 << 61)), "Location(0.125000)");
    }

    #[test]
    fn clockwise_is_the_half_ring_after_a_location() {
        let half = 1u64 << 63;
        for a in [0u64, 1, half - 1, half, u64::MAX] {
            let at = |d: u64| Location(a.wrapping_add(d));
            assert!(at(0).is_clockwise_of(Location(a)));
            assert!(at(1).is_clockwise_of(Location(a)));
            assert!(at(half - 1).is_clockwise_of(Location(a)));
            assert!(!at(half).is_clockwise_of(Location(a)));
            assert!(!at(u64::MAX).is_clockwise_of(Location(a)));
        }
    }

    #[test]
    fn wraps_round_zero() {
        assert_eq!(Location(u64::MAX).distance(Location(1)), Distance(2));
        assert_eq!(Location(0).distance(Location(1 << 63)), Distance::MAX);
    }

    #[test]
    fn key_location_is_big_endian_prefix() {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            Location::of_key(&RoutingKey(k)),
            Location(0x0102030405060708)
        );
    }

    proptest! {
        #[test]
        fn symmetric(a: u64, b: u64) {
            prop_assert_eq!(Location(a).distance(Location(b)), Location(b).distance(Location(a)));
        }

        #[test]
        fn zero_only_for_equal(a: u64, b: u64) {
            prop_assert_eq!(Location(a).distance(Location(b)) == Distance(0), a == b);
        }

        #[test]
        fn at_most_half(a: u64, b: u64) {
            prop_assert!(Location(a).distance(Location(b)) <= Distance::MAX);
        }

        #[test]
        fn triangle(a: u64, b: u64, c: u64) {
            let (a, b, c) = (Location(a), Location(b), Location(c));
            let ab = a.distance(b).0 as u128;
            let bc = b.distance(c).0 as u128;
            prop_assert!((a.distance(c).0 as u128) <= ab + bc);
        }

        #[test]
        fn shift_invariant(a: u64, b: u64, s: u64) {
            let d = Location(a).distance(Location(b));
            prop_assert_eq!(Location(a.wrapping_add(s)).distance(Location(b.wrapping_add(s))), d);
        }
    }
}
