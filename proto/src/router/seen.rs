//! The ids seen here lately: loop detection shared by every machine (requests, inserts,
//! announcements and swaps are all refused or dropped when they come back), and the one
//! way a machine draws a fresh id.

use crate::message::RequestId;
use std::collections::{HashSet, VecDeque};
use std::time::Instant;

/// Most ids remembered at once, whatever the TTL (about 50 MB).
const MAX_SEEN: usize = 1 << 20;

/// Ids seen recently, forgotten after the TTL: a set for lookups and a queue in arrival
/// order for expiry (time never goes backwards, so the queue stays sorted). The set is
/// a hash set with the standard library's randomly keyed SipHash, so ids a peer picks
/// cannot be made to collide; it is never iterated, so nothing depends on its order.
/// Memory is bounded by `MAX_SEEN` either way (a hash set keeps its capacity after a
/// flood of ids has expired; a B-tree gave it back).
#[derive(Clone, Debug)]
pub(super) struct Seen {
    ids: HashSet<RequestId>,
    order: VecDeque<(Instant, RequestId)>,
    cap: usize,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            ids: HashSet::new(),
            order: VecDeque::new(),
            cap: MAX_SEEN,
        }
    }
}

impl Seen {
    pub fn contains(&self, id: RequestId) -> bool {
        self.ids.contains(&id)
    }

    pub fn insert(&mut self, expires: Instant, id: RequestId) {
        if self.ids.insert(id) {
            if self.order.len() >= self.cap {
                // A flood of fresh ids must not grow memory without bound: forget the
                // oldest early (it can only weaken loop detection for very old ids).
                if let Some((_, old)) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
            self.order.push_back((expires, id));
        }
    }

    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.order.front() {
            if t > now {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A random id that neither a request of this node's (`in_use`) nor a message seen here
/// uses.
pub(super) fn fresh_id(
    rng: &mut rand_chacha::ChaCha8Rng,
    seen: &Seen,
    in_use: &dyn Fn(RequestId) -> bool,
) -> RequestId {
    use rand::Rng;
    loop {
        let id = RequestId(rng.gen());
        if !in_use(id) && !seen.contains(id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_is_bounded_and_expires_in_order() {
        use std::time::Duration;
        let t0 = Instant::now();
        let mut seen = Seen {
            cap: 3,
            ..Seen::default()
        };
        for i in 0..5u64 {
            seen.insert(t0 + Duration::from_secs(i), RequestId(i));
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.contains(RequestId(1)) && seen.contains(RequestId(2)));
        seen.expire(t0 + Duration::from_secs(3));
        assert!(!seen.contains(RequestId(3)) && seen.contains(RequestId(4)));
        assert_eq!(seen.len(), 1);
        // Emptied, then one id again: it still expires on time, not before.
        seen.expire(t0 + Duration::from_secs(4));
        assert_eq!(seen.len(), 0);
        seen.insert(t0 + Duration::from_secs(9), RequestId(9));
        seen.expire(t0 + Duration::from_secs(8));
        assert!(seen.contains(RequestId(9)));
        seen.expire(t0 + Duration::from_secs(9));
        assert_eq!(seen.len(), 0);
    }
}
