//! Passive adversaries against whole downloads (`veil-sim anonymity`): how well nodes
//! that only watch what reaches them can tell who is downloading a file.
//!
//! One simulation per routing setting (the anonymity walk off, and on when asked) runs
//! `downloads` downloads of `blocks_per_download` distinct blocks each; every originator
//! makes `downloads_per_originator` of them, on a fresh tunnel each (as the client does:
//! one random tunnel per download). The engine records every request and walk message
//! any node receives for them. Adversaries only listen, so any set of nodes can be made
//! the adversary afterwards: each fraction takes the first nodes of one random order
//! (the sets are nested), all analysed on the same runs. Adversaries know each other
//! (they never suspect one another) and know every block key of the file they watch,
//! as an investigator with the file's manifest does.
//!
//! The attacks (docs/anonymity.md gives their sources):
//! - **first hop**: a node guesses that the neighbour a request came from started it
//!   whenever it arrives at the maximum HTL, or as a walk (which carries no HTL);
//! - **neighbour test** (Levine et al.): per adversary, neighbour and download, the
//!   number of the download's distinct blocks that neighbour sent at the maximum HTL or
//!   as a walk; the neighbour is named the downloader when that count reaches a
//!   threshold. The threshold is the lowest that names at most 1% of the relayers
//!   (calibrated on this run's ground truth, as an investigator would on a test
//!   network); true positives are counted against every adversary neighbour of every
//!   downloader, whether it saw a block or not;
//! - **predecessor** (Wright et al.): the colluding adversaries note, for each
//!   download, the neighbour that sent them its first telling message (maximum HTL or
//!   walk); for each originator,
//!   the neighbour noted most often over its downloads is named;
//! - **entropy** (Díaz et al.): the adversaries' posterior over who made a download,
//!   with the first message's sender given the probability that such a sender is the
//!   downloader (measured in the run) and the rest spread evenly, as a normalised
//!   entropy (1: no idea; 0: certain).

use crate::engine::{Downloads, Observation};
use crate::metrics::{RequestOutcome, RequestRecord};
use crate::params::{InvalidParams, Params};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What `veil-sim anonymity` measures, besides the network's own parameters.
#[derive(Clone, Debug)]
pub struct AnonParams {
    /// Adversary fractions to analyse (each on the same runs).
    pub fractions: Vec<f64>,
    /// Downloads in all.
    pub downloads: usize,
    /// Distinct blocks per download.
    pub blocks_per_download: usize,
    /// Downloads each originator makes (each on a fresh tunnel).
    pub downloads_per_originator: usize,
    /// Run the defence (the walk at `walk_probability`) beside the baseline.
    pub defence: bool,
    /// The walk's forwarding probability with the defence on.
    pub walk_probability: f64,
    /// A tunnel per request and insert instead of per download and upload (plain
    /// Crowds, for comparison).
    pub tunnel_per_request: bool,
}

impl AnonParams {
    fn check(&self) -> Result<(), String> {
        if self.fractions.is_empty() {
            return Err("--adversary-fraction needs at least one fraction".into());
        }
        if self
            .fractions
            .iter()
            .any(|f| !(0.0..1.0).contains(f) || *f == 0.0)
        {
            return Err("--adversary-fraction must be in (0, 1)".into());
        }
        if self.downloads == 0 || self.blocks_per_download == 0 {
            return Err("--downloads and --blocks-per-download must be at least 1".into());
        }
        if self.downloads_per_originator == 0 {
            return Err("--downloads-per-originator must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.walk_probability) || self.walk_probability == 0.0 {
            return Err("--walk-probability must be in (0, 1) with the defence on".into());
        }
        Ok(())
    }
}

/// What one adversary fraction learns on one run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figures {
    /// Fraction of nodes that are adversaries.
    pub adversary_fraction: f64,
    /// Their number.
    pub adversaries: usize,
    /// Share of first-hop guesses that named the downloader (none if no guess).
    pub first_hop_precision: Option<f64>,
    /// First-hop guesses made.
    pub first_hop_guesses: u64,
    /// The neighbour test's threshold, in blocks of the download (`blocks + 1`: no
    /// threshold keeps the relayers named at or under 1%, so nobody is named).
    pub neighbour_test_threshold: usize,
    /// Share of (adversary neighbour, download) pairs of downloaders named.
    pub neighbour_test_tpr: f64,
    /// Share of relayers seen that were named.
    pub neighbour_test_fpr: f64,
    /// Share of those named that were the downloader (none if nobody was named).
    pub neighbour_test_precision: Option<f64>,
    /// The best precision any threshold would have given, ignoring the 1% bar.
    pub neighbour_test_best_precision: Option<f64>,
    /// Share of originators seen at all that the pooled first senders named right.
    pub predecessor_precision: Option<f64>,
    /// Originators the adversaries saw any message of.
    pub predecessor_originators: usize,
    /// Normalised entropy of the adversaries' posterior over downloaders, mean over
    /// downloads (1: no information).
    pub entropy_degree: f64,
}

/// One routing setting: its cost and what each fraction learns.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Arm {
    /// `on` (the walk) or `off`.
    pub defence: String,
    /// The walk's forwarding probability (0 off).
    pub walk_probability: f64,
    /// Block requests that got their block.
    pub success_rate: f64,
    /// Mean hops the found blocks travelled back (walk hops included).
    pub mean_hops: f64,
    /// Request and walk messages per block request (every try, every node).
    pub messages_per_block: f64,
    /// Mean virtual time from request to answer, milliseconds.
    pub mean_latency_ms: f64,
    /// One row per adversary fraction: the downloads.
    pub figures: Vec<Figures>,
    /// The same attacks on the uploads (the files' inserts, by their publishers).
    pub uploads: Vec<Figures>,
}

/// `summary.json` of `veil-sim anonymity`. The top-level figures are those of the first
/// fraction with the selected defence; `arms` holds every fraction of both settings.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AnonSummary {
    /// Nodes.
    pub nodes: usize,
    /// Graph kind.
    pub topology: String,
    /// Seed.
    pub seed: u64,
    /// Downloads.
    pub downloads: usize,
    /// Blocks per download.
    pub blocks_per_download: usize,
    /// Downloads per originator.
    pub downloads_per_originator: usize,
    /// `on` or `off`: the setting the top-level figures are for.
    pub defence: String,
    /// The first fraction's.
    pub adversary_fraction: f64,
    /// See [`Figures`].
    pub first_hop_precision: Option<f64>,
    /// See [`Figures`].
    pub neighbour_test_tpr: f64,
    /// See [`Figures`].
    pub neighbour_test_fpr: f64,
    /// See [`Figures`].
    pub neighbour_test_precision: Option<f64>,
    /// See [`Figures`].
    pub predecessor_precision: Option<f64>,
    /// See [`Figures`].
    pub entropy_degree: f64,
    /// See [`Arm`].
    pub mean_hops: f64,
    /// See [`Arm`].
    pub messages_per_block: f64,
    /// See [`Arm`].
    pub success_rate: f64,
    /// With the defence on: the defence-off figures of the same run's baseline.
    pub baseline: Option<Box<Arm>>,
    /// Every setting and fraction.
    pub arms: Vec<Arm>,
}

/// What one simulation leaves for the analysis.
struct Trace {
    records: Vec<RequestRecord>,
    /// The downloads' requests as nodes saw them.
    downloads: Vec<Seen>,
    /// The uploads' inserts as nodes saw them.
    uploads: Vec<Seen>,
    originators: Vec<u32>,
    publishers: Vec<u32>,
    links: Vec<Vec<u32>>,
}

/// One message a node received for a download's request or an upload's insert.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: u32,
    from: u32,
    /// The download or upload.
    unit: usize,
    /// Which of its blocks.
    block: u32,
    /// It came at the maximum HTL or as a walk: what an originator sends.
    telling: bool,
}

/// Runs the downloads with the walk at `walk` (0: off) and keeps what was seen.
fn simulate(params: &Params, a: &AnonParams, walk: f64) -> Result<Trace, InvalidParams> {
    let count = a.downloads * a.blocks_per_download;
    let p = Params {
        requests: count,
        keys: count,
        walk_probability: walk,
        doc_blocks: 0,
        ..params.clone()
    };
    p.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let (mut sim, key_count) = crate::build(&p, &mut rng);
    // Who downloads: distinct nodes, each making its share, in a shuffled order so one
    // originator's downloads are spread over the run.
    let mut pick = ChaCha8Rng::seed_from_u64(p.seed ^ 0xD011_0AD5);
    let people = a
        .downloads
        .div_ceil(a.downloads_per_originator)
        .min(p.nodes);
    let mut nodes: Vec<u32> = (0..p.nodes as u32).collect();
    nodes.shuffle(&mut pick);
    let mut originators: Vec<u32> = (0..a.downloads).map(|d| nodes[d % people]).collect();
    originators.shuffle(&mut pick);
    // Who uploads the files: other nodes, as many, each its share.
    let others = (p.nodes - people).max(1);
    let mut publishers: Vec<u32> = (0..a.downloads)
        .map(|d| nodes[(people + d % people.min(others)) % p.nodes])
        .collect();
    publishers.shuffle(&mut pick);
    let tunnels = (0..a.downloads).map(|_| pick.gen()).collect();
    let upload_tunnels = (0..a.downloads).map(|_| pick.gen()).collect();
    sim.set_downloads(Downloads {
        blocks: a.blocks_per_download,
        originators: originators.clone(),
        tunnels,
        publishers: publishers.clone(),
        upload_tunnels,
        per_request: a.tunnel_per_request,
        present: None,
    });
    let timeline = crate::workload::schedule(&p, key_count, &mut rng, |at, action| {
        sim.schedule(at, action)
    });
    sim.run_until(timeline.requests_end + 600_000_000_000);
    sim.finish();
    let max = p.max_htl;
    let blocks = a.blocks_per_download;
    let telling = |o: &Observation| o.htl.is_none_or(|h| h >= max);
    let records = std::mem::take(&mut sim.records);
    let downloads = sim
        .observations
        .iter()
        .map(|o| {
            let index = records[o.record as usize].index;
            Seen {
                at: o.at,
                from: o.from,
                unit: index as usize / blocks,
                block: index,
                telling: telling(o),
            }
        })
        .collect();
    let uploads = sim
        .insert_observations
        .iter()
        .map(|o| Seen {
            at: o.at,
            from: o.from,
            unit: o.record as usize / blocks,
            block: o.record,
            telling: telling(o),
        })
        .collect();
    Ok(Trace {
        records,
        downloads,
        uploads,
        originators,
        publishers,
        links: sim.graph().links.clone(),
    })
}

/// Runs the baseline and, with `a.defence`, the walk; analyses every fraction on both.
pub fn run(params: &Params, a: &AnonParams) -> Result<AnonSummary, InvalidParams> {
    a.check().map_err(InvalidParams)?;
    params.validate()?;
    // The adversaries: the first nodes of one random order, so the sets are nested.
    let mut order: Vec<u32> = (0..params.nodes as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(params.seed ^ 0x00AD_5E75));
    let sets: Vec<(f64, Vec<bool>)> = a
        .fractions
        .iter()
        .map(|&f| {
            let k = ((f * params.nodes as f64).round() as usize).clamp(1, params.nodes - 1);
            let mut adv = vec![false; params.nodes];
            for &n in &order[..k] {
                adv[n as usize] = true;
            }
            (f, adv)
        })
        .collect();
    let mut settings = Vec::new();
    if a.defence {
        settings.push(("on", a.walk_probability));
    }
    settings.push(("off", 0.0));
    let mut arms = Vec::new();
    for (name, walk) in settings {
        let t = simulate(params, a, walk)?;
        let figures = sets
            .iter()
            .map(|(f, adv)| {
                analyse(
                    *f,
                    adv,
                    &t.downloads,
                    &t.originators,
                    &t.links,
                    a.blocks_per_download,
                )
            })
            .collect();
        let uploads = sets
            .iter()
            .map(|(f, adv)| {
                analyse(
                    *f,
                    adv,
                    &t.uploads,
                    &t.publishers,
                    &t.links,
                    a.blocks_per_download,
                )
            })
            .collect();
        arms.push(cost(name, walk, &t, figures, uploads));
    }
    let first = &arms[0];
    let top = &first.figures[0];
    Ok(AnonSummary {
        nodes: params.nodes,
        topology: format!("{:?}", params.topology).to_lowercase(),
        seed: params.seed,
        downloads: a.downloads,
        blocks_per_download: a.blocks_per_download,
        downloads_per_originator: a.downloads_per_originator,
        defence: first.defence.clone(),
        adversary_fraction: top.adversary_fraction,
        first_hop_precision: top.first_hop_precision,
        neighbour_test_tpr: top.neighbour_test_tpr,
        neighbour_test_fpr: top.neighbour_test_fpr,
        neighbour_test_precision: top.neighbour_test_precision,
        predecessor_precision: top.predecessor_precision,
        entropy_degree: top.entropy_degree,
        mean_hops: first.mean_hops,
        messages_per_block: first.messages_per_block,
        success_rate: first.success_rate,
        baseline: a.defence.then(|| Box::new(arms[1].clone())),
        arms,
    })
}

/// The setting's cost: success, hops, messages and latency of its block requests.
fn cost(name: &str, walk: f64, t: &Trace, figures: Vec<Figures>, uploads: Vec<Figures>) -> Arm {
    let n = t.records.len().max(1) as f64;
    let ok: Vec<&RequestRecord> = t.records.iter().filter(|r| r.outcome.success()).collect();
    let found: Vec<&&RequestRecord> = ok
        .iter()
        .filter(|r| r.outcome == RequestOutcome::Found)
        .collect();
    let latency: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.end.map(|e| e.saturating_sub(r.start) as f64 / 1e6))
        .collect();
    Arm {
        defence: name.into(),
        walk_probability: walk,
        success_rate: ok.len() as f64 / n,
        mean_hops: found.iter().map(|r| f64::from(r.hops)).sum::<f64>() / found.len().max(1) as f64,
        messages_per_block: t.records.iter().map(|r| f64::from(r.messages)).sum::<f64>() / n,
        mean_latency_ms: latency.iter().sum::<f64>() / latency.len().max(1) as f64,
        figures,
        uploads,
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// What the adversaries `adv` learn from `seen`, the messages of units (downloads or
/// uploads) made by `owners` (one per unit).
fn analyse(
    fraction: f64,
    adv: &[bool],
    seen: &[Seen],
    owners: &[u32],
    links: &[Vec<u32>],
    blocks: usize,
) -> Figures {
    let honest_unit = |u: usize| !adv[owners[u] as usize];
    // What an adversary looks at: messages from honest neighbours for honest units,
    // as an originator sends them (maximum HTL, or a walk).
    let seen: Vec<&Seen> = seen
        .iter()
        .filter(|o| adv[o.at as usize] && !adv[o.from as usize])
        .filter(|o| honest_unit(o.unit) && o.telling)
        .collect();

    // First hop.
    let guesses = seen.len() as u64;
    let right = seen.iter().filter(|o| o.from == owners[o.unit]).count() as u64;

    // Neighbour test: distinct blocks per (adversary, neighbour, unit).
    let mut blocks_seen: HashSet<(u32, u32, u32)> = HashSet::new();
    let mut counts: HashMap<(u32, u32, usize), usize> = HashMap::new();
    for o in &seen {
        if blocks_seen.insert((o.at, o.from, o.block)) {
            *counts.entry((o.at, o.from, o.unit)).or_default() += 1;
        }
    }
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (&(_, from, d), &c) in &counts {
        if from == owners[d] {
            pos.push(c);
        } else {
            neg.push(c);
        }
    }
    let pairs: usize = (0..owners.len())
        .filter(|&d| honest_unit(d))
        .map(|d| {
            links[owners[d] as usize]
                .iter()
                .filter(|&&n| adv[n as usize])
                .count()
        })
        .sum();
    let named = |v: &[usize], th: usize| v.iter().filter(|&&c| c >= th).count() as u64;
    let threshold = (1..=blocks + 1)
        .find(|&th| named(&neg, th) as f64 <= 0.01 * neg.len() as f64)
        .unwrap_or(blocks + 1);
    let (tp, fp) = (named(&pos, threshold), named(&neg, threshold));
    let best = (1..=blocks)
        .filter_map(|th| ratio(named(&pos, th), named(&pos, th) + named(&neg, th)))
        .reduce(f64::max);

    // Predecessor: the first sender of each unit, pooled per owner.
    let mut first: HashMap<usize, u32> = HashMap::new();
    for o in &seen {
        first.entry(o.unit).or_insert(o.from);
    }
    let mut tally: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
    for (&d, &p) in &first {
        let v = tally.entry(owners[d]).or_default();
        match v.iter_mut().find(|(q, _)| *q == p) {
            Some((_, n)) => *n += 1,
            None => v.push((p, 1)),
        }
    }
    let mut correct = 0u64;
    for (&who, v) in &tally {
        // The most frequent sender; among equals, the lowest node (no hidden order).
        let top = v.iter().map(|&(p, n)| (n, std::cmp::Reverse(p))).max();
        if top.is_some_and(|(_, std::cmp::Reverse(p))| p == who) {
            correct += 1;
        }
    }

    // Entropy: the first sender gets the probability that a first sender is the
    // downloader; everybody else honest shares the rest.
    let honest = adv.iter().filter(|a| !**a).count().max(2) as f64;
    let hits = first.iter().filter(|(&d, &p)| p == owners[d]).count();
    let p = hits as f64 / first.len().max(1) as f64;
    let seen_h = if p <= 0.0 || p >= 1.0 {
        if p >= 1.0 {
            0.0
        } else {
            (honest - 1.0).log2()
        }
    } else {
        -p * p.log2() - (1.0 - p) * ((1.0 - p) / (honest - 1.0)).log2()
    };
    let max_h = honest.log2();
    let all: Vec<usize> = (0..owners.len()).filter(|&d| honest_unit(d)).collect();
    let entropy = all
        .iter()
        .map(|d| if first.contains_key(d) { seen_h } else { max_h })
        .sum::<f64>()
        / (all.len().max(1) as f64 * max_h);

    Figures {
        adversary_fraction: fraction,
        adversaries: adv.iter().filter(|a| **a).count(),
        first_hop_precision: ratio(right, guesses),
        first_hop_guesses: guesses,
        neighbour_test_threshold: threshold,
        neighbour_test_tpr: ratio(tp, pairs as u64).unwrap_or(0.0),
        neighbour_test_fpr: ratio(fp, neg.len() as u64).unwrap_or(0.0),
        neighbour_test_precision: ratio(tp, tp + fp),
        neighbour_test_best_precision: best,
        predecessor_precision: ratio(correct, tally.len() as u64),
        predecessor_originators: tally.len(),
        entropy_degree: entropy,
    }
}

/// The table `veil-sim anonymity` prints.
pub fn table(s: &AnonSummary) -> String {
    let mut out = String::from(
        "defence  what      fraction  first-hop  nt-tpr  nt-fpr  nt-prec  nt-best  pred-prec  entropy  \
         success  hops   msgs/blk  latency-ms\n",
    );
    let f = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for arm in &s.arms {
        // The cost columns are the downloads' (the block requests'), on their rows.
        let cost = format!(
            "  {:>7.4}  {:>5.2}  {:>8.1}  {:>10.0}",
            arm.success_rate, arm.mean_hops, arm.messages_per_block, arm.mean_latency_ms
        );
        let rows = arm.figures.iter().map(|g| ("download", g, cost.as_str()));
        for (what, g, cost) in rows.chain(arm.uploads.iter().map(|g| ("upload", g, ""))) {
            out += &format!(
                "{:<7}  {:<8}  {:>8.2}  {:>9}  {:>6.3}  {:>6.3}  {:>7}  {:>7}  {:>9}  {:>7.3}{cost}\n",
                arm.defence,
                what,
                g.adversary_fraction,
                f(g.first_hop_precision),
                g.neighbour_test_tpr,
                g.neighbour_test_fpr,
                f(g.neighbour_test_precision),
                f(g.neighbour_test_best_precision),
                f(g.predecessor_precision),
                g.entropy_degree,
            );
        }
    }
    out
}
