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

/// How a darknet's locations are swapped before the routers start.
#[derive(Clone, Copy, Debug)]
pub struct Swaps<'a> {
    /// Attempts per node.
    pub per_node: usize,
    /// Nodes that lie in swaps.
    pub attack: &'a Attack,
    /// The pitch-black mitigation's bound (`None`: off).
    pub guard: Option<f64>,
}

impl Swaps<'_> {
    /// `per_node` honest attempts per node, without the mitigation.
    pub fn plain(per_node: usize) -> Swaps<'static> {
        static NONE: Attack = Attack {
            attackers: Vec::new(),
            targets: Vec::new(),
        };
        Swaps {
            per_node,
            attack: &NONE,
            guard: None,
        }
    }
}

/// Builds a graph of `n` nodes with about `degree` links each.
pub fn build(
    kind: Topology,
    n: usize,
    degree: usize,
    swaps: Swaps,
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
            swap_locations(&mut g, swaps.per_node * n, rng, swaps.attack, swaps.guard);
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

/// Pitch-black attackers (Evans, GauthierDickey and Grothoff, 2007) in offline swapping:
/// nodes that lie in swaps to pull honest nodes' locations towards a few points.
///
/// An attacker answers every swap request that reaches it on its walk as if it were the
/// walk's end, and starts swaps at the same rate as everyone. In each, it reveals a
/// location next to one of [`ATTACK_TARGETS`] points the attackers share (within 2^-24 of
/// the ring) and as many made-up peers as a reveal may carry, all at its victim's
/// location, which makes Sandberg's rule accept whatever the victim's own links say. The
/// victim takes the offered location; the attacker keeps its own, so it can do it again.
/// Attackers route honestly: the damage measured is the locations' collapse alone.
#[derive(Clone, Debug, Default)]
pub struct Attack {
    /// Which nodes lie in swaps.
    pub attackers: Vec<bool>,
    /// The points they pull victims towards.
    pub targets: Vec<u64>,
}

/// The points the attackers share.
pub const ATTACK_TARGETS: usize = 4;
/// How far from its target an offered location may lie: 2^-24 of the ring.
const ATTACK_JITTER: u64 = 1 << 40;

impl Attack {
    /// A random `fraction` of `n` nodes, and the targets.
    pub fn new(n: usize, fraction: f64, rng: &mut ChaCha8Rng) -> Attack {
        let count = (fraction * n as f64).round() as usize;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let mut attackers = vec![false; n];
        for &i in &order[..count.min(n)] {
            attackers[i] = true;
        }
        Attack {
            attackers,
            targets: (0..ATTACK_TARGETS).map(|_| rng.gen()).collect(),
        }
    }

    fn is(&self, node: usize) -> bool {
        self.attackers.get(node).copied().unwrap_or(false)
    }

    /// A location next to one of the targets.
    fn offer(&self, rng: &mut ChaCha8Rng) -> u64 {
        let t = self.targets[rng.gen_range(0..self.targets.len())];
        t.wrapping_add(rng.gen_range(0..ATTACK_JITTER))
    }
}

/// Sandberg's swapping: `attempts` times, a node picks a partner at the end of a short
/// random walk; they swap by the rule of `veil_proto::swap` (the one the daemon's darknet
/// uses): if that does not lengthen the product of their link distances, and otherwise
/// with probability before/after. With `guard`, the core's pitch-black guard
/// ([`swap::decide_guarded`]) also refuses a swap that lengthens either side's own links
/// by more than that much ([`swap::side_loss`]). With `attack`, its attackers lie as
/// [`Attack`] says.
pub fn swap_locations(
    g: &mut Graph,
    attempts: usize,
    rng: &mut ChaCha8Rng,
    attack: &Attack,
    guard: Option<f64>,
) {
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
    let fake_peers = swap::MAX_SWAP_PEERS;
    for _ in 0..attempts {
        let a = rng.gen_range(0..n);
        if guard.is_some() && !attack.is(a) {
            // The mitigation's other half: a node whose location sits on top of one its
            // friends or their friends hold draws a new one instead of swapping.
            let la = Location(g.locations[a]);
            let known: Vec<Location> = g.links[a]
                .iter()
                .flat_map(|&p| std::iter::once(p).chain(g.links[p as usize].iter().copied()))
                .filter(|&m| m as usize != a)
                .map(|m| Location(g.locations[m as usize]))
                .collect();
            if swap::crowded(la, &known) {
                g.locations[a] = rng.gen();
                continue;
            }
        }
        let mut b = a;
        // The first attacker on an honest node's walk answers in the end's place.
        let mut caught = false;
        for _ in 0..6 {
            let ls = &g.links[b];
            if ls.is_empty() {
                break;
            }
            b = ls[rng.gen_range(0..ls.len())] as usize;
            if !attack.is(a) && attack.is(b) && b != a {
                caught = true;
                break;
            }
        }
        if a == b {
            continue;
        }
        let victim = match (attack.is(a), caught) {
            (true, _) if !attack.is(b) => Some(b),
            (true, _) => None,
            (false, true) => Some(a),
            (false, false) => None,
        };
        if attack.is(a) && victim.is_none() {
            continue;
        }
        if let Some(v) = victim {
            let lv = Location(g.locations[v]);
            let offered = Location(attack.offer(rng));
            let peers = peers_of(g, v);
            let lies = vec![lv; fake_peers];
            let gain = swap::gain(lv, &peers, offered, &lies);
            let guarded = guard.is_some_and(|max| swap::side_loss(lv, &peers, offered) > max);
            if !guarded && (gain >= 0.0 || swap::accept(gain, rng.gen::<f64>())) {
                g.locations[v] = offered.0;
            }
            continue;
        }
        let (la, lb) = (Location(g.locations[a]), Location(g.locations[b]));
        let (pa, pb) = (peers_of(g, a), peers_of(g, b));
        if let Some(max) = guard {
            if swap::side_loss(la, &pa, lb) > max || swap::side_loss(lb, &pb, la) > max {
                continue;
            }
        }
        let gain = swap::gain(la, &pa, lb, &pb);
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
            let g = build(kind, 500, 20, Swaps::plain(5), 3, &mut rng);
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
        swap_locations(&mut g, 200_000, &mut rng, &Attack::default(), None);
        let after = mean_link_length(&g);
        assert!(after < before / 2.0, "{before} -> {after}");
    }

    /// The pitch-black attack, offline: without the mitigation a few attackers leave a
    /// large share of honest nodes at their handful of points; with it, few stay there.
    #[test]
    fn pitch_black_pulls_locations_together_unless_the_mitigation_holds() {
        let n = 1000;
        let attack = Attack::new(n, 0.02, &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(attack.attackers.iter().filter(|&&a| a).count(), 20);
        let captured = |guard: Option<f64>| {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let swaps = Swaps {
                per_node: 50,
                attack: &attack,
                guard,
            };
            let g = build(Topology::Darknet, n, 8, swaps, 0, &mut rng);
            (0..n)
                .filter(|&i| {
                    !attack.attackers[i]
                        && attack.targets.iter().any(|&t| {
                            Location(g.locations[i]).distance(Location(t)).0 <= ATTACK_JITTER
                        })
                })
                .count()
        };
        let without = captured(None);
        let with = captured(Some(swap::DEFAULT_MAX_SIDE_LOSS));
        eprintln!("captured without {without}, with {with}");
        assert!(without >= n / 10, "{without}");
        assert!(with * 4 <= without, "{with} of {without}");
    }
}
