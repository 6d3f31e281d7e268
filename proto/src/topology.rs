//! Seeded network shapes for test networks: where nodes sit on the ring and whom they link
//! to. Pure functions of their inputs, so a testnet, an end-to-end test and a simulation
//! built from the same seed have the same graph.

use crate::ring::Location;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// `n` locations spread evenly round the ring, starting at a seeded offset.
pub fn evenly_spaced(n: usize, seed: u64) -> Vec<Location> {
    let offset: u64 = ChaCha8Rng::seed_from_u64(seed).gen();
    let step = if n == 0 { 0 } else { u64::MAX / n as u64 };
    (0..n as u64)
        .map(|i| Location(offset.wrapping_add(i.wrapping_mul(step))))
        .collect()
}

/// A Kleinberg small world on nodes `0..n` numbered in ring order, as undirected edges
/// `(a, b)` with `a < b`: each node links to its `near` nearest neighbours on each side,
/// plus `long` links whose ring distance `d` is drawn with probability proportional to
/// `1/d`, which is what makes greedy routing find any key in O(log² n) hops.
/// Deterministic in `seed`; [`small_world_with`] takes the random source instead.
pub fn small_world(n: usize, near: usize, long: usize, seed: u64) -> Vec<(usize, usize)> {
    small_world_with(n, near, long, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// [`small_world`] drawing from `rng`: the one generator the test networks (`veild
/// testnet`) and the simulator (`veil-sim --topology small-world`, and the friend graph of
/// `darknet`) share. Each node starts `long` long links that are new (a draw that lands on
/// an existing link is drawn again, at most `10 × long` draws), so a node ends with about
/// `2 × near + 2 × long` links.
pub fn small_world_with<R: Rng + ?Sized>(
    n: usize,
    near: usize,
    long: usize,
    rng: &mut R,
) -> Vec<(usize, usize)> {
    let mut set = BTreeSet::new();
    if n < 2 {
        return Vec::new();
    }
    let mut add = |a: usize, b: usize| a != b && set.insert((a.min(b), a.max(b)));
    for i in 0..n {
        for k in 1..=near.min(n / 2) {
            add(i, (i + k) % n);
        }
    }
    let half = (n / 2).max(1) as f64;
    for i in 0..n {
        let (mut made, mut draws) = (0, 0);
        while made < long && draws < long * 10 {
            draws += 1;
            // Inverse transform of the 1/d density on [1, n/2]: d = half^u for uniform u.
            let d = (half.powf(rng.gen::<f64>()).floor() as usize).clamp(1, n / 2);
            let j = if rng.gen::<bool>() {
                (i + d) % n
            } else {
                (i + n - d) % n
            };
            if add(i, j) {
                made += 1;
            }
        }
    }
    set.into_iter().collect()
}

/// The neighbours of every node, from an edge list.
pub fn adjacency(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a].push(b);
        adj[b].push(a);
    }
    adj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_world_is_seeded_connected_and_sized() {
        let e = small_world(25, 2, 1, 7);
        assert_eq!(e, small_world(25, 2, 1, 7));
        assert_ne!(e, small_world(25, 2, 1, 8));
        let adj = adjacency(25, &e);
        let mean = adj.iter().map(Vec::len).sum::<usize>() as f64 / 25.0;
        assert!((4.5..=6.5).contains(&mean), "mean degree {mean}");
        // Connected: the ring alone guarantees it.
        let mut seen = [false; 25];
        let mut stack = vec![0];
        while let Some(v) = stack.pop() {
            if !std::mem::replace(&mut seen[v], true) {
                stack.extend(&adj[v]);
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert!(e.iter().all(|&(a, b)| a < b && b < 25));
    }

    #[test]
    fn evenly_spaced_is_even() {
        let locs = evenly_spaced(4, 1);
        let d = locs[0].distance(locs[1]);
        assert_eq!(d.0, u64::MAX / 4, "a quarter of the ring apart");
        assert_eq!(locs[1].distance(locs[2]), d);
        assert!(locs[3].distance(locs[0]).0.abs_diff(d.0) <= 4);
        assert!(evenly_spaced(0, 1).is_empty());
        assert_eq!(evenly_spaced(1, 1).len(), 1);
    }

    #[test]
    fn tiny_networks_have_the_edges_they_can() {
        assert!(small_world(0, 2, 1, 1).is_empty());
        assert!(small_world(1, 2, 1, 1).is_empty());
        assert_eq!(small_world(2, 2, 1, 1), vec![(0, 1)]);
    }

    #[test]
    fn a_node_that_cannot_make_its_long_links_stops_after_ten_draws_each() {
        // Four nodes on a ring: every draw lands on a neighbour already linked, so each
        // node spends its whole budget (10 × long draws, each a distance and a side) and
        // gives up; the generator is left exactly that far on.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        assert_eq!(small_world_with(4, 1, 1, &mut rng).len(), 4);
        let mut reference = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..4 * 10 {
            let _: f64 = reference.gen();
            let _: bool = reference.gen();
        }
        assert_eq!(rng.gen::<u64>(), reference.gen::<u64>());
    }

    #[test]
    fn small_world_graphs_are_frozen() {
        // Testnets, end-to-end tests and simulations rebuild the same graph from a seed,
        // and published figures depend on it: these vectors freeze the generator (its
        // draws, the ring links, the retry budget that a dense graph runs out of).
        assert_eq!(
            small_world(10, 1, 2, 3),
            vec![
                (0, 1),
                (0, 2),
                (0, 6),
                (0, 7),
                (0, 8),
                (0, 9),
                (1, 2),
                (1, 3),
                (1, 4),
                (1, 5),
                (1, 8),
                (1, 9),
                (2, 3),
                (2, 6),
                (2, 8),
                (2, 9),
                (3, 4),
                (3, 5),
                (3, 6),
                (3, 7),
                (4, 5),
                (4, 8),
                (5, 6),
                (5, 7),
                (5, 8),
                (6, 7),
                (6, 9),
                (7, 8),
                (7, 9),
                (8, 9)
            ]
        );
        assert_eq!(
            small_world(6, 1, 3, 1),
            vec![
                (0, 1),
                (0, 2),
                (0, 4),
                (0, 5),
                (1, 2),
                (1, 3),
                (1, 5),
                (2, 3),
                (2, 4),
                (3, 4),
                (3, 5),
                (4, 5)
            ]
        );
    }
}
