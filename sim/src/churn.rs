//! What joins and leaves cost (`veil-sim churn`).
//!
//! Two measurements, as a DHT paper would give them:
//!
//! - **Placement cost** ([`placement`]): with each block meant for the `replicas` nodes
//!   closest to its key (where the replica walk puts its copies), the share of keys whose
//!   set of closest holders changes when one node joins or leaves, beside consistent
//!   hashing's 1/n, and the share of all copies that must move. Pure ring geometry over
//!   uniformly placed nodes and keys; every join and leave is applied to the same
//!   network on its own.
//! - **Recovery** ([`recovery`]): the simulator's own routers, a wave of leaves and
//!   then a wave of joins during the requests, and the success rate in time bins around
//!   them, for one replica without healing, the default replicas without healing, and
//!   the default replicas with healing (each publisher re-inserts its blocks after each
//!   wave, as its keepalive pass would for blocks it finds missing).

use crate::event::{Action, Nanos};
use crate::metrics::RequestOutcome;
use crate::mix::splitmix;
use crate::params::{InvalidParams, Params};
use crate::workload;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;

/// One row of the placement table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlacementRow {
    /// Nodes.
    pub nodes: usize,
    /// Closest nodes each key is meant for.
    pub replicas: usize,
    /// Keys placed.
    pub keys: usize,
    /// Joins and leaves applied (each).
    pub events: usize,
    /// Mean share of keys whose set of closest holders changes with one join.
    pub keys_changed_per_join: f64,
    /// The same for one leave.
    pub keys_changed_per_leave: f64,
    /// Mean share of all copies that move with one join (each changed key hands one
    /// copy to the newcomer).
    pub copies_moved_per_join: f64,
    /// The same for one leave (each changed key needs one new copy).
    pub copies_moved_per_leave: f64,
    /// Consistent hashing's share moved per join or leave: 1/n.
    pub one_over_n: f64,
}

/// The ring distance between two points.
fn dist(a: u64, b: u64) -> u64 {
    let d = a.wrapping_sub(b);
    d.min(d.wrapping_neg())
}

/// The `r` nodes closest to `key` among `sorted` locations (indices into `sorted`) and
/// the distance of the farthest of them. The closest `r` points to a key are a
/// contiguous arc around it, found by walking out from its place in the sorted ring.
fn closest(sorted: &[u64], key: u64, r: usize) -> (Vec<usize>, u64) {
    let n = sorted.len();
    let r = r.min(n);
    let at = sorted.partition_point(|&l| l < key);
    // `hi` walks clockwise from `at`, `lo` anticlockwise from `at - 1`.
    let (mut hi, mut lo) = (at % n, (at + n - 1) % n);
    let mut set = Vec::with_capacity(r);
    let mut far = 0;
    while set.len() < r {
        let (dh, dl) = (dist(sorted[hi], key), dist(sorted[lo], key));
        let take = if hi == lo || dh <= dl {
            let t = hi;
            hi = (hi + 1) % n;
            t
        } else {
            let t = lo;
            lo = (lo + n - 1) % n;
            t
        };
        far = far.max(dist(sorted[take], key));
        set.push(take);
    }
    (set, far)
}

/// Placement cost at `nodes` nodes with `replicas` copies per key.
pub fn placement(
    nodes: usize,
    replicas: usize,
    keys: usize,
    events: usize,
    seed: u64,
) -> PlacementRow {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC4_0211);
    let mut sorted: Vec<u64> = (0..nodes).map(|_| rng.gen()).collect();
    sorted.sort_unstable();
    let key_locs: Vec<u64> = (0..keys).map(|_| rng.gen()).collect();
    // Per key, how far its farthest holder is; per node, how many keys it holds.
    let mut far = Vec::with_capacity(keys);
    let mut held = vec![0u64; nodes];
    for &k in &key_locs {
        let (set, f) = closest(&sorted, k, replicas);
        far.push(f);
        for i in set {
            held[i] += 1;
        }
    }
    // A newcomer at `l` enters a key's set if it is closer than its farthest holder.
    let mut joined = 0u64;
    for _ in 0..events {
        let l: u64 = rng.gen();
        joined += key_locs
            .iter()
            .zip(&far)
            .filter(|(&k, &f)| dist(l, k) < f)
            .count() as u64;
    }
    // A node leaving changes the set of every key it holds.
    let mut left = 0u64;
    for _ in 0..events {
        left += held[rng.gen_range(0..nodes)];
    }
    let per = |total: u64| total as f64 / events.max(1) as f64 / keys.max(1) as f64;
    let r = replicas.min(nodes) as f64;
    PlacementRow {
        nodes,
        replicas,
        keys,
        events,
        keys_changed_per_join: per(joined),
        keys_changed_per_leave: per(left),
        copies_moved_per_join: per(joined) / r,
        copies_moved_per_leave: per(left) / r,
        one_over_n: 1.0 / nodes as f64,
    }
}

/// One setting of the recovery runs.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Setting {
    /// Copies per block.
    pub replicas: u8,
    /// Whether publishers re-insert their blocks after each wave.
    pub healing: bool,
}

impl Setting {
    /// The four settings a churn run compares: 1 and `replicas` copies, each without and
    /// with healing.
    pub fn all(replicas: u8) -> [Setting; 4] {
        [(1, false), (1, true), (replicas, false), (replicas, true)]
            .map(|(replicas, healing)| Setting { replicas, healing })
    }
}

/// Success in one time bin.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Bin {
    /// Bin start, virtual seconds from the first request.
    pub from_s: f64,
    /// Requests started in the bin whose asker stayed up.
    pub requests: usize,
    /// Share of them that got their block.
    pub success_rate: f64,
}

/// The recovery of one setting.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recovery {
    /// The setting.
    pub setting: Setting,
    /// Success before the first wave.
    pub before: f64,
    /// Success from the leave wave to the join wave.
    pub after_leaves: f64,
    /// Success after the join wave.
    pub after_joins: f64,
    /// Every bin.
    pub bins: Vec<Bin>,
    /// Messages sent in the whole run (healing's inserts included).
    pub messages: u64,
}

/// When things happen in a recovery run, virtual seconds from the first request.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Waves {
    /// Share of nodes in each wave.
    pub fraction: f64,
    /// The leave wave.
    pub leaves_at_s: f64,
    /// The join wave.
    pub joins_at_s: f64,
    /// How long after a wave the healing pass starts.
    pub heal_after_s: f64,
}

/// Runs `params`'s workload with a wave of `waves.fraction` of the nodes leaving for
/// good at a quarter of the requests and as many newcomers (held back from the start,
/// with empty stores, each linking to its place in the graph) joining at 60%, and
/// bins the requests' success by start time into `bins`.
pub fn recovery(
    params: &Params,
    setting: Setting,
    fraction: f64,
    bins: usize,
) -> Result<(Recovery, Waves), InvalidParams> {
    let params = Params {
        replicas: setting.replicas,
        index_replicas: setting.replicas,
        churn: 0.0,
        fail_fraction: 0.0,
        ..params.clone()
    };
    params.validate()?;
    if params.topology == crate::topology::Topology::Opennet {
        return Err(InvalidParams(
            "churn runs need a pre-wired graph (small-world, random-regular or darknet)".into(),
        ));
    }
    if !(fraction > 0.0 && fraction < 0.5) {
        return Err(InvalidParams("--wave must be above 0 and below 0.5".into()));
    }
    let n = params.nodes;
    let count = ((fraction * n as f64).round() as usize).max(1);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(splitmix(
        params.seed ^ 0xC4_0202,
    )));
    let (newcomers, rest) = order.split_at(count);
    let leavers = &rest[..count];

    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let (mut sim, key_count) = crate::build(&params, &mut rng);
    sim.hold_back(newcomers);
    let timeline = workload::schedule(&params, key_count, &mut rng, |at, a| sim.schedule(at, a));
    let start = timeline.requests_start;
    let window = (timeline.requests_end - start).max(1);
    let leave_at = start + window / 4;
    let join_at = start + window * 3 / 5;
    for &node in leavers {
        sim.schedule(leave_at, Action::Leave { node });
    }
    for &node in newcomers {
        sim.schedule(join_at, Action::Join { node });
    }
    // The healing pass starts once the wave's links have settled (a twentieth of the
    // window, at least a virtual second).
    let heal_after = (window / 20).max(1_000_000_000);
    if setting.healing && key_count > 0 {
        for at in [leave_at, join_at] {
            let pass = Action::Reinsert {
                key: 0,
                end: key_count as u32,
            };
            sim.schedule(at + heal_after, pass);
        }
    }
    sim.run_until(timeline.requests_end + 600_000_000_000);
    sim.finish();

    let secs = |t: Nanos| (t.saturating_sub(start)) as f64 / 1e9;
    let bins = bins.max(1);
    let width = window.div_ceil(bins as u64).max(1);
    let mut counts = vec![(0usize, 0usize); bins];
    let mut phases = [(0usize, 0usize); 3];
    for r in &sim.records {
        if r.outcome == RequestOutcome::Lost || r.outcome == RequestOutcome::Pending {
            continue;
        }
        let ok = usize::from(r.outcome.success());
        let b = ((r.start.saturating_sub(start)) / width).min(bins as u64 - 1) as usize;
        counts[b].0 += 1;
        counts[b].1 += ok;
        let phase = if r.start < leave_at {
            0
        } else if r.start < join_at {
            1
        } else {
            2
        };
        phases[phase].0 += 1;
        phases[phase].1 += ok;
    }
    let rate = |(all, ok): (usize, usize)| ok as f64 / all.max(1) as f64;
    let recovery = Recovery {
        setting,
        before: rate(phases[0]),
        after_leaves: rate(phases[1]),
        after_joins: rate(phases[2]),
        bins: counts
            .iter()
            .enumerate()
            .map(|(i, &c)| Bin {
                from_s: secs(start + i as u64 * width),
                requests: c.0,
                success_rate: rate(c),
            })
            .collect(),
        messages: sim.counters.messages,
    };
    let waves = Waves {
        fraction,
        leaves_at_s: secs(leave_at),
        joins_at_s: secs(join_at),
        heal_after_s: heal_after as f64 / 1e9,
    };
    Ok((recovery, waves))
}

/// The placement table.
pub fn placement_table(rows: &[PlacementRow]) -> String {
    let mut out = String::from(
        "   nodes replicas  keys-changed/join  keys-changed/leave  copies-moved/join  copies-moved/leave        1/n\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>8} {:>8} {:>18.6} {:>19.6} {:>18.6} {:>19.6} {:>10.6}",
            r.nodes,
            r.replicas,
            r.keys_changed_per_join,
            r.keys_changed_per_leave,
            r.copies_moved_per_join,
            r.copies_moved_per_leave,
            r.one_over_n
        );
    }
    out
}

/// The recovery table: one row per setting.
pub fn recovery_table(rows: &[Recovery], waves: &Waves) -> String {
    let mut out = format!(
        "waves of {:.0}% of the nodes: leaves at {:.0} s, joins at {:.0} s (healing {:.0} s after each)\n\
         replicas healing  before  after-leaves  after-joins  lowest-bin    messages\n",
        waves.fraction * 100.0,
        waves.leaves_at_s,
        waves.joins_at_s,
        waves.heal_after_s
    );
    for r in rows {
        let lowest = r
            .bins
            .iter()
            .filter(|b| b.requests > 0)
            .map(|b| b.success_rate)
            .fold(1.0, f64::min);
        let _ = writeln!(
            out,
            "{:>8} {:>7} {:>7.4} {:>13.4} {:>12.4} {:>11.4} {:>11}",
            r.setting.replicas,
            if r.setting.healing { "on" } else { "off" },
            r.before,
            r.after_leaves,
            r.after_joins,
            lowest,
            r.messages
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_the_nearest_arc_across_zero() {
        let sorted = vec![10, 20, 30, u64::MAX - 5];
        let (mut set, far) = closest(&sorted, 2, 2);
        set.sort_unstable();
        assert_eq!(set, vec![0, 3]);
        assert_eq!(far, 8);
        let (set, far) = closest(&sorted, 25, 4);
        assert_eq!(set.len(), 4);
        assert_eq!(far, dist(u64::MAX - 5, 25));
    }

    #[test]
    fn one_replica_moves_about_one_nth_and_more_replicas_move_r_over_n() {
        let one = placement(1000, 1, 20_000, 200, 1);
        assert!(
            (one.keys_changed_per_join * 1000.0 - 1.0).abs() < 0.25,
            "{one:?}"
        );
        assert!(
            (one.keys_changed_per_leave * 1000.0 - 1.0).abs() < 0.25,
            "{one:?}"
        );
        let seven = placement(1000, 7, 20_000, 200, 1);
        assert!(
            (seven.keys_changed_per_join * 1000.0 - 7.0).abs() < 1.5,
            "{seven:?}"
        );
        assert!(
            (seven.copies_moved_per_join * 1000.0 - 1.0).abs() < 0.25,
            "{seven:?}"
        );
        assert!(
            (seven.copies_moved_per_leave * 1000.0 - 1.0).abs() < 0.25,
            "{seven:?}"
        );
    }

    #[test]
    fn healing_brings_success_back_after_the_waves() {
        // Distinct keys, so no cache stands in for a lost copy.
        let mut p = Params::new(300, 3000, 5);
        p.degree = 8;
        p.keys = 3000;
        let run = |replicas, healing| {
            recovery(&p, Setting { replicas, healing }, 0.2, 10)
                .unwrap()
                .0
        };
        let bare = run(1, false);
        let healed = run(1, true);
        // Leaves lose single copies for good; healing puts them back.
        assert!(bare.before > 0.85, "{bare:?}");
        assert!(bare.after_joins < bare.before - 0.05, "{bare:?}");
        assert!(
            healed.after_joins > bare.after_joins + 0.05,
            "{healed:?} vs {bare:?}"
        );
        assert!(healed.messages > bare.messages);
    }
}
