//! The failure table (Freenet's "recently failed" and ULPR ideas).
//!
//! When a search for a key ends here without the block, the key is remembered for
//! [`super::RouterConfig::failure_ttl`] with the peers that answered "not found" and the
//! peers that asked:
//! - a peer's new request for the key, with no more hops than the failed search had, is
//!   declined at once (`RouteNotFound` with its hops unspent, so the asker tries its other
//!   peers) instead of being routed through the same nodes again;
//! - any other search for the key skips the peers that just failed it (the local user's
//!   requests are always routed, trying those peers last: a user who asks again means it);
//! - when the block does arrive (an insert passing through, or data for another
//!   request), every peer that asked is sent it with [`crate::Message::Offer`], and a
//!   node takes an offer only from a peer it asked itself, so a request that failed a
//!   moment before its block was inserted is answered after all, along the path it took.
//!
//! Bounded: at most [`MAX_FAILURES`] keys (the oldest are forgotten first) and a few
//! peers per key.

use super::PeerId;
use crate::keys::RoutingKey;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Most keys remembered at once.
pub(super) const MAX_FAILURES: usize = 16_384;

/// Most peers remembered per key, for each of the two lists.
const MAX_PEERS_PER_KEY: usize = 8;

/// One key that was not found here recently.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    /// Until then the entry holds.
    pub until: Instant,
    /// The most hops a search for it had from here.
    pub htl: u8,
    /// Peers that answered not found (skipped by later searches, and the only peers an
    /// offer is taken from).
    pub failed: Vec<PeerId>,
    /// Peers that asked (they are offered the block when it arrives).
    pub askers: Vec<PeerId>,
}

/// Keys not found here recently; see the module docs.
#[derive(Clone, Debug, Default)]
pub(super) struct FailureTable {
    entries: HashMap<RoutingKey, Failure>,
    /// Insertion order, for expiry and the bound (an entry renewed later keeps its
    /// place: it is dropped at its first slot's turn only if it has expired by then).
    order: VecDeque<(Instant, RoutingKey)>,
}

fn push_bounded(list: &mut Vec<PeerId>, p: PeerId) {
    if !list.contains(&p) {
        if list.len() >= MAX_PEERS_PER_KEY {
            list.remove(0);
        }
        list.push(p);
    }
}

impl FailureTable {
    /// Records that a search for `key` with `htl` hops failed here, after `failed`
    /// answered not found, asked by `asker` (`None`: the local user).
    pub fn record(
        &mut self,
        key: RoutingKey,
        until: Instant,
        htl: u8,
        failed: &[PeerId],
        asker: Option<PeerId>,
    ) {
        let fresh = !self.entries.contains_key(&key);
        let e = self.entries.entry(key).or_insert_with(|| Failure {
            until,
            htl,
            failed: Vec::new(),
            askers: Vec::new(),
        });
        e.until = e.until.max(until);
        e.htl = e.htl.max(htl);
        for &p in failed {
            push_bounded(&mut e.failed, p);
        }
        if let Some(a) = asker {
            push_bounded(&mut e.askers, a);
        }
        if fresh {
            if self.order.len() >= MAX_FAILURES {
                if let Some((_, old)) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
            self.order.push_back((until, key));
        }
    }

    /// The live entry for `key`.
    pub fn get(&self, key: &RoutingKey, now: Instant) -> Option<&Failure> {
        self.entries.get(key).filter(|e| e.until > now)
    }

    /// Adds `asker` to a live entry; false if there is none.
    pub fn add_asker(&mut self, key: &RoutingKey, now: Instant, asker: PeerId) -> bool {
        match self.entries.get_mut(key).filter(|e| e.until > now) {
            Some(e) => {
                push_bounded(&mut e.askers, asker);
                true
            }
            None => false,
        }
    }

    /// The block for `key` arrived: forgets the entry and returns who asked.
    pub fn resolve(&mut self, key: &RoutingKey, now: Instant) -> Vec<PeerId> {
        match self.entries.remove(key) {
            Some(e) if e.until > now => e.askers,
            _ => Vec::new(),
        }
    }

    /// Forgets entries that expired by `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.order.front() {
            if t > now {
                break;
            }
            self.order.pop_front();
            match self.entries.get(&key) {
                // Renewed since: it goes back in line with its new expiry.
                Some(e) if e.until > now => self.order.push_back((e.until, key)),
                _ => {
                    self.entries.remove(&key);
                }
            }
        }
    }

    /// Forgets `peer` everywhere (its link is gone).
    pub fn forget_peer(&mut self, peer: PeerId) {
        for e in self.entries.values_mut() {
            e.failed.retain(|&p| p != peer);
            e.askers.retain(|&p| p != peer);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u8) -> RoutingKey {
        RoutingKey([n; 32])
    }

    /// A peer whose link is gone leaves every list, and only that peer does.
    #[test]
    fn a_gone_peer_is_forgotten_and_only_it() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(10);
        let mut f = FailureTable::default();
        f.record(key(1), end, 5, &[PeerId(1), PeerId(2)], Some(PeerId(1)));
        assert!(f.add_asker(&key(1), t0, PeerId(3)));
        f.forget_peer(PeerId(1));
        let e = f.get(&key(1), t0).unwrap();
        assert_eq!(e.failed, vec![PeerId(2)]);
        assert_eq!(e.askers, vec![PeerId(3)]);
    }

    /// An entry is dead at the very instant it expires, whether or not `expire` has run:
    /// a peer asking then is not remembered, and a block arriving then is offered to
    /// nobody.
    #[test]
    fn an_entry_ends_exactly_at_its_time() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(10);
        let mut f = FailureTable::default();
        f.record(key(1), end, 5, &[PeerId(1)], Some(PeerId(2)));
        assert!(
            !f.add_asker(&key(1), end, PeerId(3)),
            "asker added at the end"
        );
        assert!(f.resolve(&key(1), end).is_empty(), "resolved at the end");
        f.record(key(2), end, 5, &[PeerId(1)], Some(PeerId(2)));
        assert!(f.add_asker(&key(2), end - Duration::from_nanos(1), PeerId(3)));
        assert!(
            f.resolve(&key(2), end + Duration::from_secs(1)).is_empty(),
            "an expired entry still named its askers"
        );
    }

    #[test]
    fn entries_live_until_their_time_and_resolve_once() {
        let t0 = Instant::now();
        let mut f = FailureTable::default();
        f.record(
            key(1),
            t0 + Duration::from_secs(10),
            5,
            &[PeerId(1)],
            Some(PeerId(2)),
        );
        f.record(key(1), t0 + Duration::from_secs(10), 3, &[PeerId(3)], None);
        let e = f.get(&key(1), t0).unwrap();
        assert_eq!(
            (e.htl, e.failed.clone(), e.askers.clone()),
            (5, vec![PeerId(1), PeerId(3)], vec![PeerId(2)])
        );
        assert!(f.add_asker(&key(1), t0, PeerId(4)));
        assert!(f.get(&key(1), t0 + Duration::from_secs(10)).is_none());
        assert_eq!(f.resolve(&key(1), t0), vec![PeerId(2), PeerId(4)]);
        assert!(f.resolve(&key(1), t0).is_empty());
        assert!(!f.add_asker(&key(1), t0, PeerId(4)));
    }

    #[test]
    fn expiry_and_bounds() {
        let t0 = Instant::now();
        let mut f = FailureTable::default();
        for n in 0..3 {
            f.record(
                key(n),
                t0 + Duration::from_secs(u64::from(n) + 1),
                5,
                &[],
                None,
            );
        }
        // Key 0 renewed: it outlives its first slot.
        f.record(key(0), t0 + Duration::from_secs(9), 5, &[], None);
        f.expire(t0 + Duration::from_secs(2));
        assert!(f.get(&key(0), t0).is_some());
        assert!(f.get(&key(1), t0).is_none());
        assert_eq!(f.len(), 2);
        f.expire(t0 + Duration::from_secs(9));
        assert_eq!(f.len(), 0);
        // Peers per key are bounded, the oldest go first.
        let peers: Vec<PeerId> = (0..20).map(PeerId).collect();
        f.record(key(7), t0 + Duration::from_secs(1), 5, &peers, None);
        assert_eq!(f.get(&key(7), t0).unwrap().failed, peers[12..].to_vec());
        f.forget_peer(PeerId(19));
        assert_eq!(f.get(&key(7), t0).unwrap().failed.len(), 7);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut f = FailureTable::default();
        for n in 0..MAX_FAILURES as u32 + 10 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&n.to_be_bytes());
            f.record(RoutingKey(k), t0 + Duration::from_secs(60), 5, &[], None);
        }
        assert_eq!(f.len(), MAX_FAILURES);
    }
}
