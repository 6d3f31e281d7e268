//! Network graphs: node locations on the ring and undirected links between nodes.
//!
//! - Small world (Kleinberg): nodes at random locations, each linked to its nearest ring
//!   neighbours, plus long links whose length (in ring order) is drawn with probability
//!   proportional to 1/distance. Greedy routing finds short paths on it.
//! - Random regular: every node gets the same number of links to uniformly random nodes
//!   (configuration model; the few self-loops and duplicates are dropped). No geometry,
//!   so greedy routing has little to work with: a baseline.
//! - Darknet: a friend-to-friend graph with hidden geometry (a Kleinberg graph over a
//!   hidden ring, as social graphs are modelled), whose nodes start at random locations
//!   unrelated to that geometry. Sandberg's location swapping then lets pairs of nodes
//!   trade locations whenever that shortens their links (and sometimes when not), which
//!   makes the graph routable without changing who links to whom.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use veil_proto::ring::Location;
use veil_proto::swap;

/// Which graph to build.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Kleinberg small world: ring neighbours plus long links with P ∝ 1/distance.
    SmallWorld,
    /// Random regular graph over random locations.
    RandomRegular,
    /// Friend graph with random locations, then Sandberg location swapping.
    Darknet,
    /// Grown by the routers themselves: nodes at random locations join one by one
    /// through a few seeds (announcement), then path folding reshapes the links during
    /// a warm-up of requests.
    Opennet,
}

impl Topology {
    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Topology::SmallWorld => "small-world",
            Topology::RandomRegular => "random-regular",
            Topology::Darknet => "darknet",
            Topology::Opennet => "opennet",
        }
    }
}

/// Locations and adjacency lists (indices into the same vectors).
#[derive(Clone, Debug)]
pub struct Graph {
    /// Each node's ring location.
    pub locations: Vec<u64>,
    /// Each node's neighbours, sorted, without duplicates or self-links.
    pub links: Vec<Vec<u32>>,
}

impl Graph {
    /// Mean number of links per node.
    pub fn mean_degree(&self) -> f64 {
        let total: usize = self.links.iter().map(Vec::len).sum();
        total as f64 / self.links.len().max(1) as f64
    }
}

/// Builds a graph of `n` nodes with about `degree` links each.
pub fn build(
    kind: Topology,
    n: usize,
    degree: usize,
    swaps_per_node: usize,
    seeds: usize,
    rng: &mut ChaCha8Rng,
) -> Graph {
    match kind {
        Topology::SmallWorld => small_world(n, degree, rng),
        Topology::RandomRegular => random_regular(n, degree, rng),
        Topology::Darknet => {
            let mut g = small_world(n, degree, rng);
            // Forget the geometry: random locations, then let swapping recover it.
            for l in &mut g.locations {
                *l = rng.gen();
            }
            swap_locations(&mut g, swaps_per_node * n, rng);
            g
        }
        Topology::Opennet => {
            // Random locations; only the seeds know each other. The rest is grown.
            let locations: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
            let mut sets = vec![HashSet::new(); n];
            let seeds = seeds.min(n);
            for a in 0..seeds {
                for b in a + 1..seeds {
                    link(&mut sets, a, b);
                }
            }
            finish(locations, sets)
        }
    }
}

/// Adds an undirected link, keeping lists free of duplicates.
fn link(sets: &mut [HashSet<u32>], a: usize, b: usize) -> bool {
    if a == b || sets[a].contains(&(b as u32)) {
        return false;
    }
    sets[a].insert(b as u32);
    sets[b].insert(a as u32);
    true
}

fn finish(locations: Vec<u64>, sets: Vec<HashSet<u32>>) -> Graph {
    let links = sets
        .into_iter()
        .map(|s| {
            let mut v: Vec<u32> = s.into_iter().collect();
            v.sort_unstable();
            v
        })
        .collect();
    Graph { locations, links }
}

fn sorted_locations(n: usize, rng: &mut ChaCha8Rng) -> Vec<u64> {
    let mut locs: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    locs.sort_unstable();
    locs
}

/// Kleinberg's small world on a ring of `n` nodes sorted by location, from the generator
/// the test networks use too ([`veil_proto::topology::small_world_with`]).
fn small_world(n: usize, degree: usize, rng: &mut ChaCha8Rng) -> Graph {
    let locations = sorted_locations(n, rng);
    let mut sets = vec![HashSet::new(); n];
    // Two ring neighbours each side (one for tiny degrees), the rest long links; each
    // node starts half of its long links, and receives about as many.
    let ring = if degree >= 8 { 2 } else { 1 };
    let long = degree.saturating_sub(2 * ring).div_ceil(2);
    for (a, b) in veil_proto::topology::small_world_with(n, ring, long, rng) {
        link(&mut sets, a, b);
    }
    finish(locations, sets)
}

/// A random `degree`-regular graph by the configuration model.
fn random_regular(n: usize, degree: usize, rng: &mut ChaCha8Rng) -> Graph {
    let locations = sorted_locations(n, rng);
    let mut sets = vec![HashSet::new(); n];
    let mut stubs: Vec<usize> = (0..n)
        .flat_map(|i| std::iter::repeat_n(i, degree))
        .collect();
    stubs.shuffle(rng);
    for pair in stubs.chunks_exact(2) {
        link(&mut sets, pair[0], pair[1]);
    }
    finish(locations, sets)
}

/// `ln` of the ring distance, plus one so equal locations are not `-inf`.
/// Sandberg's swapping: `attempts` times, a node picks a partner at the end of a short
/// random walk; they swap by the rule of `veil_proto::swap` (the one the daemon's darknet
/// is to use): if that does not lengthen the product of their link distances, and
/// otherwise with probability before/after.
pub fn swap_locations(g: &mut Graph, attempts: usize, rng: &mut ChaCha8Rng) {
    let n = g.locations.len();
    if n < 2 {
        return;
    }
    let peers_of = |g: &Graph, node: usize| -> Vec<Location> {
        g.links[node]
            .iter()
            .map(|&m| Location(g.locations[m as usize]))
            .collect()
    };
    for _ in 0..attempts {
        let a = rng.gen_range(0..n);
        let mut b = a;
        for _ in 0..6 {
            let ls = &g.links[b];
            if ls.is_empty() {
                break;
            }
            b = ls[rng.gen_range(0..ls.len())] as usize;
        }
        if a == b {
            continue;
        }
        let (la, lb) = (Location(g.locations[a]), Location(g.locations[b]));
        let gain = swap::gain(la, &peers_of(g, a), lb, &peers_of(g, b));
        if gain >= 0.0 || swap::accept(gain, rng.gen::<f64>()) {
            g.locations.swap(a, b);
        }
    }
}

/// Mean over links of the ring distance as a fraction of the ring: how well locations
/// match the graph (small for a routable graph).
pub fn mean_link_length(g: &Graph) -> f64 {
    let mut sum = 0.0;
    let mut count = 0usize;
    for (i, ls) in g.links.iter().enumerate() {
        for &j in ls {
            let (a, b) = (g.locations[i], g.locations[j as usize]);
            sum += a.wrapping_sub(b).min(b.wrapping_sub(a)) as f64 / 2f64.powi(64);
            count += 1;
        }
    }
    sum / count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn degrees_are_about_right_and_links_symmetric() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for kind in [
            Topology::SmallWorld,
            Topology::RandomRegular,
            Topology::Darknet,
        ] {
            let g = build(kind, 500, 20, 5, 3, &mut rng);
            let d = g.mean_degree();
            assert!((17.0..=22.0).contains(&d), "{kind:?}: {d}");
            for (i, ls) in g.links.iter().enumerate() {
                for &j in ls {
                    assert_ne!(j as usize, i);
                    assert!(g.links[j as usize].binary_search(&(i as u32)).is_ok());
                }
            }
        }
    }

    #[test]
    fn swapping_shortens_links() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut g = small_world(1000, 10, &mut rng);
        for l in &mut g.locations {
            *l = rng.gen();
        }
        let before = mean_link_length(&g);
        swap_locations(&mut g, 200_000, &mut rng);
        let after = mean_link_length(&g);
        assert!(after < before / 2.0, "{before} -> {after}");
    }
}
