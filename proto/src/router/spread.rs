//! Spread inserts: a local insert that leaves by several routes at once, each through its
//! own walk and each storing a share of the replicas (`RouterConfig::insert_routes`).
//!
//! Why: in a friend graph that location swapping has embedded only roughly, greedy
//! routing towards one key ends at different nodes depending on where it starts (each
//! start lies in the basin of one of several local minima). A single insert route stores
//! every copy around the one minimum its start leads to, which a request from elsewhere
//! often misses; routes that start at random places store copies in the basins that
//! requests from anywhere end in, in proportion to how often they end there. On 10,000
//! simulated darknet nodes after 100 swaps per node this is the difference between 0.79
//! and 0.95 of requests finding their block (0.64 and 0.89 when every key is asked for
//! once), with as many copies in all (docs/routing.md, darknet). In a well-embedded network (opennet, a small world) every start leads to
//! the same nodes, and the default of one route keeps the copies next to the key.
//!
//! Each route is an insert of its own under a fresh id on the anonymity walk of a tunnel
//! derived from the upload's, so the routes of one upload leave by their own first hops
//! and each route takes every block of it the same way (docs/anonymity.md). The shell
//! sees one insert: the id [`Router::start_insert_in`] returned, finished once every
//! route has: a collision if any route met another block under the (signed) key, else
//! successful when any route stored the block.

use super::time::later;
use super::{InsertFailure, InsertReport, RouterConfig};
use crate::keys::RoutingKey;
use crate::message::MAX_REPLICAS;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Most keys [`Recent`] remembers; past it the oldest are forgotten early (their routes
/// then count a copy twice, as before spreading).
const RECENT_CAP: usize = 4096;

/// Keys this node began to keep long-term for an insert within the last few tens of
/// seconds: long enough for every route of one spread insert to have passed. Routes of
/// one insert that meet at the nodes nearest the key (in a well-embedded network they
/// all do) would otherwise each count the same copy, and a block spread over seven
/// routes would sit on one or two nodes; a node that already holds the block from a
/// sibling route does not count for the next one, whose walk goes one node further. A
/// later insert of the same block (a keepalive pass, a day on) counts as before.
#[derive(Clone, Debug, Default)]
pub(super) struct Recent {
    order: VecDeque<(Instant, RoutingKey)>,
    until: HashMap<RoutingKey, Instant>,
}

impl Recent {
    /// This node keeps `key` long-term for an insert now. True if it already did for
    /// another insert moments ago (a sibling route): this copy is not a new one.
    pub(super) fn stored(&mut self, config: &RouterConfig, now: Instant, key: RoutingKey) -> bool {
        let again = self.holds(&key, now);
        let window = config
            .hop_timeout
            .saturating_mul(u32::from(config.max_htl.0) + 1 + u32::from(MAX_REPLICAS));
        self.note(key, later(now, window));
        self.expire(now);
        again
    }

    /// Forgets what expired by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.order.front() {
            if t > now && self.order.len() <= RECENT_CAP {
                break;
            }
            self.order.pop_front();
            if self.until.get(&key) == Some(&t) {
                self.until.remove(&key);
            }
        }
    }

    fn note(&mut self, key: RoutingKey, until: Instant) {
        self.until.insert(key, until);
        self.order.push_back((until, key));
    }

    fn holds(&self, key: &RoutingKey, now: Instant) -> bool {
        self.until.get(key).is_some_and(|&t| t > now)
    }
}

/// One spread insert in flight (keyed by the id its shell knows): what its routes have
/// said.
#[derive(Clone, Debug, Default)]
pub(super) struct Spread {
    /// Routes still running.
    pub(super) left: u8,
    /// The best success a route reported (exhausted only if every successful one was).
    pub(super) ok: Option<InsertReport>,
    /// The failure to report if no route succeeded (a collision outranks the rest).
    pub(super) err: Option<InsertFailure>,
}

/// The tunnel of route `i` of an upload on `tunnel`: distinct per route, fixed per upload.
pub(super) fn route_tunnel(tunnel: u64, i: u8) -> u64 {
    super::walk::mix(tunnel ^ super::walk::mix(u64::from(i) + 1))
}

/// Copies route `i` of `routes` stores, so that the routes store `replicas` in all.
pub(super) fn share(replicas: u8, routes: u8, i: u8) -> u8 {
    replicas / routes + u8::from(i < replicas % routes)
}

#[cfg(test)]
mod tests {
    use super::{route_tunnel, share, Recent, RECENT_CAP};
    use crate::keys::RoutingKey;
    use std::time::{Duration, Instant};

    fn key(i: u32) -> RoutingKey {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        RoutingKey(k)
    }

    #[test]
    fn a_copy_counts_as_a_sibling_s_for_as_long_as_an_insert_may_run() {
        // Default hop timeout 2 s and HTL 18: an insert may run (18 + 1 + 16) × 2 s = 70 s.
        let mut r = Recent::default();
        let config = crate::router::RouterConfig::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!r.stored(&config, t0, key(1)));
        assert!(
            r.stored(&config, at(69), key(1)),
            "69 s on: a sibling's copy"
        );
        assert!(
            !r.stored(&config, at(140), key(1)),
            "71 s after the last: a new one"
        );
        assert!(!r.stored(&config, at(140), key(2)));
    }

    #[test]
    fn recent_stores_are_forgotten_when_due_and_stay_bounded() {
        let now = Instant::now();
        let mut r = Recent::default();
        r.note(key(0), now + Duration::from_secs(10));
        assert!(r.holds(&key(0), now));
        assert!(!r.holds(&key(0), now + Duration::from_secs(10)));
        assert!(!r.holds(&key(1), now));
        // A key noted again keeps its later expiry when the earlier entry goes.
        r.note(key(0), now + Duration::from_secs(20));
        r.expire(now + Duration::from_secs(15));
        assert!(r.holds(&key(0), now + Duration::from_secs(15)));
        r.expire(now + Duration::from_secs(20));
        assert!(r.until.is_empty() && r.order.is_empty());
        // Past the cap the oldest go early, however far off their expiry.
        for i in 0..(RECENT_CAP as u32 + 100) {
            r.note(key(i), now + Duration::from_secs(60));
            r.expire(now);
        }
        assert_eq!(r.order.len(), RECENT_CAP);
        assert!(r.until.len() <= RECENT_CAP);
        assert!(!r.holds(&key(0), now));
        assert!(r.holds(&key(RECENT_CAP as u32 + 99), now));
    }

    #[test]
    fn shares_add_up_to_the_replicas_and_differ_by_at_most_one() {
        for replicas in 1..=16u8 {
            for routes in 1..=replicas {
                let shares: Vec<u8> = (0..routes).map(|i| share(replicas, routes, i)).collect();
                assert_eq!(
                    shares.iter().map(|&s| u32::from(s)).sum::<u32>(),
                    u32::from(replicas)
                );
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(
                    hi - lo <= 1 && *lo >= 1,
                    "{replicas} over {routes}: {shares:?}"
                );
            }
        }
    }

    #[test]
    fn routes_of_one_upload_get_distinct_tunnels() {
        let t: Vec<u64> = (0..16).map(|i| route_tunnel(42, i)).collect();
        let mut d = t.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), t.len());
        assert!(!t.contains(&42));
    }
}
