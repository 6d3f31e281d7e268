//! What a keyword search costs (`veil-sim search`), beside a Gnutella-style flood on the
//! same graph.
//!
//! A search for a word under which `entries` documents are listed reads the word's slots
//! as the client does (`veil_client::keyword`): windows of [`SLOT_WINDOW`] slots until a
//! run of [`SLOT_WINDOW`] empty ones, so `entries` routed requests that find their block
//! and the rest that find nothing ([`probes`]). Each search is one download in the engine's
//! terms: its slots are distinct keys, the first `entries` inserted by one publisher
//! beforehand, the others never; its requests start from one searcher, routed greedily by
//! the node's own router (with the anonymity walk when `--walk-probability` is given). The
//! cost is every request message sent for the search's requests, over all nodes, retries
//! and backtracking included; replies are not counted on either side.
//!
//! The flood is measured on the graph the searches ran on, from the same searcher: every
//! node that receives the query for the first time passes it to all its other neighbours
//! while its TTL lasts (duplicates are dropped but were sent). Two floods are reported:
//! with the search's own TTL (the maximum HTL), and the cheapest flood that would have
//! found every entry (the smallest TTL that reaches a node storing or caching each one: a
//! flood that knew when to stop).

use crate::engine::Downloads;
use crate::params::{InvalidParams, Params};
use crate::topology::Graph;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::VecDeque;

/// Slots a search reads at once, and the run of empty slots that ends it (the client's
/// `keyword::SLOT_WINDOW`).
pub const SLOT_WINDOW: usize = 8;

/// Slots a search reads for a word with `entries` entries in slots `0..entries`.
pub fn probes(entries: usize) -> usize {
    SLOT_WINDOW * (entries.div_ceil(SLOT_WINDOW) + 1)
}

/// What `veil-sim search` measures, besides the network's own parameters.
#[derive(Clone, Debug)]
pub struct SearchParams {
    /// Searches, each for a word of its own.
    pub searches: usize,
    /// Entries listed under each word.
    pub entries: usize,
}

/// One network size's figures.
#[derive(Clone, Debug, Serialize)]
pub struct SearchRow {
    /// Nodes.
    pub nodes: usize,
    /// Searches made.
    pub searches: usize,
    /// Entries under each word.
    pub entries: usize,
    /// Slots each search read.
    pub probes: usize,
    /// Share of searches that found every entry.
    pub complete_rate: f64,
    /// Share of all entries found.
    pub entry_rate: f64,
    /// Request messages per search (mean).
    pub messages_mean: f64,
    /// Request messages per search (95th percentile).
    pub messages_p95: u64,
    /// Request messages per slot read that held an entry (mean).
    pub messages_per_found_slot: f64,
    /// Request messages per slot read that was empty (mean): a search for nothing runs
    /// its hops out.
    pub messages_per_empty_slot: f64,
    /// The flood's TTL: the search's maximum HTL.
    pub flood_ttl: u8,
    /// Messages of a flood with that TTL (mean).
    pub flood_messages_mean: f64,
    /// Share of the nodes that flood reaches (mean).
    pub flood_reach: f64,
    /// Messages of the cheapest flood that finds every entry (mean over the searches
    /// whose entries a flood can reach at all).
    pub flood_find_messages_mean: f64,
    /// Its TTL (mean).
    pub flood_find_ttl_mean: f64,
    /// Flood with the same TTL over keyword search, in messages.
    pub flood_ratio: f64,
    /// Wall-clock seconds of the run.
    pub wall_seconds: f64,
}

/// Floods from `origin` on `g`: for every TTL t (index t), the messages a flood with TTL
/// t sends and the nodes it reaches; and each node's distance in hops (`u32::MAX`:
/// unreachable).
fn flood(g: &Graph, origin: u32) -> (Vec<u64>, Vec<u64>, Vec<u32>) {
    let n = g.links.len();
    let mut depth = vec![u32::MAX; n];
    depth[origin as usize] = 0;
    let mut queue = VecDeque::from([origin]);
    // Per depth: nodes at it, and what they send when they forward.
    let mut at = vec![0u64];
    let mut sends = vec![0u64];
    while let Some(v) = queue.pop_front() {
        let d = depth[v as usize] as usize;
        let deg = g.links[v as usize].len() as u64;
        if at.len() <= d {
            at.resize(d + 1, 0);
            sends.resize(d + 1, 0);
        }
        at[d] += 1;
        // The origin sends to every neighbour; others to all but the one they heard from.
        sends[d] += if d == 0 { deg } else { deg.saturating_sub(1) };
        for &w in &g.links[v as usize] {
            if depth[w as usize] == u32::MAX {
                depth[w as usize] = depth[v as usize] + 1;
                queue.push_back(w);
            }
        }
    }
    // TTL t: nodes at depth < t forward; nodes at depth <= t are reached.
    let mut messages = vec![0u64];
    let mut reached = vec![1u64];
    for t in 1..=at.len() {
        messages.push(messages[t - 1] + sends[t - 1]);
        reached.push(reached[t - 1] + at.get(t).copied().unwrap_or(0));
    }
    (messages, reached, depth)
}

/// Runs `s.searches` searches on one network of `params.nodes` nodes.
pub fn run(params: &Params, s: &SearchParams) -> Result<SearchRow, InvalidParams> {
    if s.searches == 0 {
        return Err(InvalidParams("--searches must be at least 1".into()));
    }
    let started = std::time::Instant::now();
    let probes = probes(s.entries);
    let count = s.searches * probes;
    let p = Params {
        requests: count,
        keys: count,
        doc_blocks: 0,
        ..params.clone()
    };
    p.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let (mut sim, key_count) = crate::build(&p, &mut rng);
    let mut pick = ChaCha8Rng::seed_from_u64(p.seed ^ 0x5EA2_C400);
    let mut nodes: Vec<u32> = (0..p.nodes as u32).collect();
    nodes.shuffle(&mut pick);
    let searchers: Vec<u32> = (0..s.searches).map(|i| nodes[i % p.nodes]).collect();
    let publishers: Vec<u32> = (0..s.searches)
        .map(|i| nodes[(i + p.nodes / 2) % p.nodes])
        .collect();
    sim.set_downloads(Downloads {
        blocks: probes,
        originators: searchers.clone(),
        tunnels: (0..s.searches).map(|_| pick.gen()).collect(),
        publishers,
        upload_tunnels: (0..s.searches).map(|_| pick.gen()).collect(),
        per_request: false,
        present: Some(s.entries),
    });
    let timeline = crate::workload::schedule(&p, key_count, &mut rng, |at, action| {
        sim.schedule(at, action)
    });
    sim.run_until(timeline.requests_end + 600_000_000_000);
    sim.finish();
    let mut messages = vec![0u64; s.searches];
    let mut found = vec![0usize; s.searches];
    // Messages and reads, of slots with an entry and of empty ones.
    let (mut full, mut empty) = ((0u64, 0u64), (0u64, 0u64));
    for r in &sim.records {
        let search = r.index as usize / probes;
        messages[search] += u64::from(r.messages);
        let listed = (r.index as usize % probes) < s.entries;
        let side = if listed { &mut full } else { &mut empty };
        side.0 += u64::from(r.messages);
        side.1 += 1;
        if listed && r.outcome.success() {
            found[search] += 1;
        }
    }
    let ttl = p.max_htl;
    let (mut flood_msgs, mut reach, mut find_msgs, mut find_ttl) = (0u64, 0f64, 0u64, 0u64);
    let mut findable = 0u64;
    for (i, &origin) in searchers.iter().enumerate() {
        let (m, reached, depth) = flood(sim.graph(), origin);
        let at = |t: usize| m[t.min(m.len() - 1)];
        flood_msgs += at(usize::from(ttl));
        reach += reached[usize::from(ttl).min(reached.len() - 1)] as f64 / p.nodes as f64;
        // The smallest TTL reaching a holder of every entry.
        let need = (0..s.entries)
            .map(|e| {
                sim.holders(i * probes + e)
                    .iter()
                    .map(|&h| depth[h as usize])
                    .min()
                    .unwrap_or(u32::MAX)
            })
            .max()
            .unwrap_or(0);
        if need != u32::MAX {
            findable += 1;
            find_ttl += u64::from(need);
            find_msgs += at(need as usize);
        }
    }
    let n = s.searches as f64;
    let mean = messages.iter().sum::<u64>() as f64 / n;
    let mut sorted = messages.clone();
    sorted.sort_unstable();
    let p95 = sorted[((sorted.len() * 95).div_ceil(100)).saturating_sub(1)];
    let flood_mean = flood_msgs as f64 / n;
    Ok(SearchRow {
        nodes: p.nodes,
        searches: s.searches,
        entries: s.entries,
        probes,
        complete_rate: found.iter().filter(|&&f| f == s.entries).count() as f64 / n,
        entry_rate: found.iter().sum::<usize>() as f64 / (n * s.entries.max(1) as f64),
        messages_mean: mean,
        messages_p95: p95,
        messages_per_found_slot: full.0 as f64 / full.1.max(1) as f64,
        messages_per_empty_slot: empty.0 as f64 / empty.1.max(1) as f64,
        flood_ttl: ttl,
        flood_messages_mean: flood_mean,
        flood_reach: reach / n,
        flood_find_messages_mean: find_msgs as f64 / findable.max(1) as f64,
        flood_find_ttl_mean: find_ttl as f64 / findable.max(1) as f64,
        flood_ratio: flood_mean / mean.max(1.0),
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The table `veil-sim search` prints (Markdown, as docs/ shows it).
pub fn table(rows: &[SearchRow]) -> String {
    let mut out = String::from(
        "| nodes | searches | entries | slots read | all found | entries found | messages/search (mean, p95) | per listed / empty slot | flood, TTL = max HTL: messages (reach) | cheapest flood finding all: messages (TTL) | flood ÷ search |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.1}, {} | {:.1} / {:.1} | {:.0} ({:.3}) | {:.0} ({:.2}) | {:.0}× |\n",
            r.nodes,
            r.searches,
            r.entries,
            r.probes,
            r.complete_rate,
            r.entry_rate,
            r.messages_mean,
            r.messages_p95,
            r.messages_per_found_slot,
            r.messages_per_empty_slot,
            r.flood_messages_mean,
            r.flood_reach,
            r.flood_find_messages_mean,
            r.flood_find_ttl_mean,
            r.flood_ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_follow_the_clients_scan() {
        // Entries in slots 0..e; the scan ends after eight empty slots in a row, at the
        // end of the window holding the eighth.
        assert_eq!(probes(0), 8);
        assert_eq!(probes(1), 16);
        assert_eq!(probes(8), 16);
        assert_eq!(probes(9), 24);
    }

    #[test]
    fn a_flood_counts_every_copy_sent() {
        // A triangle with a tail: 0-1, 0-2, 1-2, 2-3.
        let g = Graph {
            locations: vec![0; 4],
            links: vec![vec![1, 2], vec![0, 2], vec![0, 1, 3], vec![2]],
        };
        let (m, reached, depth) = flood(&g, 0);
        assert_eq!(depth, [0, 1, 1, 2]);
        // TTL 1: the origin's two. TTL 2: 1 and 2 forward (1 + 2). TTL 3: 3 has no one.
        assert_eq!(m[..4], [0, 2, 5, 5]);
        assert_eq!(reached[..4], [1, 3, 4, 4]);
    }

    #[test]
    fn searches_find_their_entries_and_cost_far_less_than_a_flood() {
        let params = Params::new(300, 0, 3);
        let row = run(
            &params,
            &SearchParams {
                searches: 20,
                entries: 3,
            },
        )
        .unwrap();
        assert_eq!(row.probes, 16);
        assert!(row.entry_rate > 0.9, "{row:?}");
        assert!(row.flood_reach > 0.99, "{row:?}");
        assert!(row.flood_ratio > 5.0, "{row:?}");
        // A search costs at least one message per slot read.
        assert!(row.messages_mean >= 16.0, "{row:?}");
    }
}
