//! What a run measures: per-request records, counters, and the summary derived from
//! them (the fields of `summary.json`).

use crate::event::Nanos;
use crate::params::Params;
use serde::Serialize;
use std::collections::BTreeMap;
use veil_proto::router::Router;

/// How a request ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Not finished (should not remain after a run).
    Pending,
    /// Found in the network.
    Found,
    /// The originator held the block itself.
    LocalHit,
    /// Ran out of HTL.
    DataNotFound,
    /// Ran out of peers.
    RouteNotFound,
    /// Every peer overloaded.
    Overloaded,
    /// The last hop timed out.
    TimedOut,
    /// The originator left before it finished.
    Lost,
}

impl RequestOutcome {
    /// Whether the block arrived.
    pub fn success(self) -> bool {
        matches!(self, RequestOutcome::Found | RequestOutcome::LocalHit)
    }
}

/// One request, for the CSV.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Request number in issue order.
    pub index: u32,
    /// The node that started it.
    pub origin: u32,
    /// Index of the key asked for.
    pub key: u32,
    /// Virtual start time.
    pub start: Nanos,
    /// Virtual end time.
    pub end: Option<Nanos>,
    /// How it ended.
    pub outcome: RequestOutcome,
    /// Hops the block travelled back (0 for a local hit).
    pub hops: u32,
    /// Request messages sent for it (all tries, all nodes).
    pub messages: u32,
}

/// Totals gathered while the simulation runs.
#[derive(Clone, Default, Debug)]
pub struct Counters {
    /// Messages sent.
    pub messages: u64,
    /// Inserts started and completed.
    pub inserts: u64,
    /// Inserts that completed.
    pub inserts_ok: u64,
    /// Requests received with HTL at the maximum from their originator.
    pub guess_true_pos: u64,
    /// Requests received with HTL at the maximum from a forwarder.
    pub guess_false_pos: u64,
    /// Requests received from their originator below the maximum.
    pub guess_false_neg: u64,
    /// Protocol violations reported by routers (none expected).
    pub misbehaviour: u64,
    /// Nodes failed at once.
    pub failed_nodes: u64,
    /// Churn departures.
    pub churn_leaves: u64,
    /// Messages sent, by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
}

/// The figures of one run: `summary.json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Nodes.
    pub nodes: usize,
    /// Requests issued.
    pub requests: usize,
    /// Seed.
    pub seed: u64,
    /// Graph kind.
    pub topology: String,
    /// HTL policy.
    pub htl_policy: String,
    /// Probabilistic policy: chance a link decrements at the maximum (and at 1).
    pub decrement_at_max: f64,
    /// Probabilistic policy: chance a link decrements at 1.
    pub decrement_at_one: f64,
    /// Fraction of nodes failed before the requests.
    pub fail_fraction: f64,
    /// Fraction of nodes churned during the requests.
    pub churn: f64,
    /// Distinct keys inserted.
    pub keys: usize,
    /// Target links per node (`--degree`; opennet's `max_peers`).
    pub degree: usize,
    /// Maximum HTL.
    pub max_htl: u8,
    /// Opennet: seed nodes.
    pub seeds: usize,
    /// Opennet: warm-up requests per node before the measured ones.
    pub warmup_per_node: usize,
    /// Mean links per node (opennet: routable peers of live nodes at the end).
    pub mean_degree: f64,
    /// Opennet: mean hops of a pre-wired Kleinberg small world with the same nodes and
    /// mean degree, run with the same seed and workload in the same invocation.
    pub ideal_mean_hops: Option<f64>,
    /// Opennet: success rate of that small world.
    pub ideal_success_rate: Option<f64>,
    /// Darknet with friend-of-a-friend routing: the success rate of the same network,
    /// seed and workload routed by the friends' own locations only, in the same
    /// invocation.
    pub plain_success_rate: Option<f64>,
    /// Its mean hops.
    pub plain_mean_hops: Option<f64>,
    /// Darknet: fraction of nodes lying in swaps (the pitch-black attack).
    pub attackers: f64,
    /// Darknet: whether the swaps ran with the core's pitch-black guard.
    pub mitigation: bool,
    /// Darknet under attack, with the guard: the success rate of the same network, seed,
    /// attack and workload without it, in the same invocation.
    pub unmitigated_success_rate: Option<f64>,
    /// Its mean link length.
    pub unmitigated_mean_link_length: Option<f64>,
    /// Opennet: links taken from path-folding offers, over the whole run.
    pub folds_taken: u64,
    /// Opennet: announcements started, over the whole run.
    pub announcements: u64,
    /// Mean link length as a fraction of the ring.
    pub mean_link_length: f64,
    /// Fraction of inserts that completed.
    pub insert_success_rate: f64,
    /// Fraction of requests that got their block.
    pub success_rate: f64,
    /// Nodes each block was to be stored on (`--replicas`).
    pub replicas: u8,
    /// Routes each insert left by, sharing the replicas (`--insert-routes`; the daemon's
    /// default for the topology unless given).
    pub insert_routes: u8,
    /// Mean blocks in a node's long-term store at the end (replicas and publishers' own
    /// copies; caches not counted): the storage cost of `replicas`.
    pub store_blocks_per_node: f64,
    /// Share of inserted keys that some live node other than the publisher still stores
    /// at the end: the most any routing could find after the failures.
    pub keys_with_live_copy: f64,
    /// Share of requests that failed although a live node stored their key: the part of
    /// the loss that routing, not storage, is to blame for.
    pub failed_with_live_copy: f64,
    /// Documents: nodes each top and index block was stored on.
    pub index_replicas: Option<u8>,
    /// Documents: data blocks per document (`--doc-blocks`).
    pub doc_blocks: Option<usize>,
    /// Documents: blocks per document in all (top, index copies, data, checks).
    pub blocks_per_doc: Option<usize>,
    /// Documents: whole documents fetched (all their blocks requested once).
    pub documents_checked: Option<usize>,
    /// Documents: share of them a reader could rebuild from the blocks it got.
    pub document_success_rate: Option<f64>,
    /// Documents: share of their top blocks found.
    pub top_block_success_rate: Option<f64>,
    /// Mean hops of successful requests.
    pub mean_hops: f64,
    /// Median hops of successful requests.
    pub median_hops: u32,
    /// 95th-percentile hops of successful requests.
    pub p95_hops: u32,
    /// Mean request messages per request.
    pub mean_messages: f64,
    /// Mean virtual latency of successful requests, ms.
    pub mean_latency_ms: f64,
    /// Median time from asking to holding the block, successful requests, ms.
    pub fetch_latency_ms_p50: f64,
    /// 95th percentile of the same, ms.
    pub fetch_latency_ms_p95: f64,
    /// The link latency model (`internet`, `uniform`, `constant:MS`, `matrix:FILE`).
    pub latency_model: String,
    /// Next-hop choice for requests: `greedy` or `latency-aware`.
    pub routing: String,
    /// The routers' latency factor (1.0 under greedy routing).
    pub latency_factor: f64,
    /// Latency-aware runs of `veil-sim run`: the same network, seed and workload routed
    /// greedily, in the same invocation.
    pub greedy_success_rate: Option<f64>,
    /// Its median fetch latency, ms.
    pub greedy_fetch_latency_ms_p50: Option<f64>,
    /// Its 95th-percentile fetch latency, ms.
    pub greedy_fetch_latency_ms_p95: Option<f64>,
    /// Its mean hops.
    pub greedy_mean_hops: Option<f64>,
    /// Share of peers' requests answered from a cache rather than a long-term store.
    pub cache_hit_rate: f64,
    /// Precision of "the neighbour that sent me HTL = max started it".
    pub guess_precision: f64,
    /// Recall of the same guess.
    pub guess_recall: f64,
    /// Mean messages received per node.
    pub load_mean: f64,
    /// 99th-percentile messages received per node.
    pub load_p99: u32,
    /// Most messages received by one node.
    pub load_max: u32,
    /// Protocol violations seen (0 expected).
    pub misbehaviour: u64,
    /// Messages sent, by kind (request, data, insert, rejected_loop, ...).
    pub messages_by_kind: BTreeMap<String, u64>,
    /// Events processed.
    pub events: u64,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
    /// Wall-clock seconds for the whole run (setup included).
    pub wall_seconds: f64,
    /// The process's peak resident set in bytes at the end of the run (Linux; null
    /// elsewhere); it counts every run the process made, such as a greedy baseline
    /// beside a latency-aware run.
    pub peak_rss_bytes: Option<u64>,
    /// Every parameter of the run, as the command line set them: the run can be redone
    /// from its summary alone.
    pub params: serde_json::Value,
}

impl Summary {
    /// The summary with wall-clock figures zeroed, for comparing runs.
    pub fn without_timing(&self) -> Summary {
        Summary {
            events_per_sec: 0.0,
            wall_seconds: 0.0,
            peak_rss_bytes: None,
            // The figures alone: two runs that differ only in how they were computed
            // (`--full-verify`) must agree.
            params: serde_json::Value::Null,
            ..self.clone()
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn percentile<T: Copy + Ord + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Everything a summary is computed from.
pub struct RunData<'a> {
    /// The parameters.
    pub params: &'a Params,
    /// Per request.
    pub records: &'a [RequestRecord],
    /// Counters.
    pub counters: &'a Counters,
    /// Messages received per node.
    pub load: &'a [u32],
    /// Mean degree and link length of the graph used.
    pub graph: (f64, f64),
    /// Keys inserted.
    pub keys: usize,
    /// Which keys a live non-publisher stores, and mean store size per node.
    pub storage: (Vec<bool>, f64),
    /// Events processed.
    pub events: u64,
    /// Wall-clock seconds of the event loop, and of the whole run.
    pub wall: (f64, f64),
}

/// Computes the summary.
pub fn summarize<'r>(d: &RunData, routers: impl Iterator<Item = &'r Router>) -> Summary {
    let ok: Vec<&RequestRecord> = d.records.iter().filter(|r| r.outcome.success()).collect();
    let mut hops: Vec<u32> = ok.iter().map(|r| r.hops).collect();
    hops.sort_unstable();
    let hop_sum: u64 = hops.iter().map(|h| u64::from(*h)).sum();
    let mut lats: Vec<u64> = ok
        .iter()
        .map(|r| r.end.unwrap_or(r.start) - r.start)
        .collect();
    lats.sort_unstable();
    let lat_sum: u64 = lats.iter().sum();
    let msg_sum: u64 = d.records.iter().map(|r| u64::from(r.messages)).sum();
    let (mut from_cache, mut from_store) = (0u64, 0u64);
    let (mut folds, mut announces) = (0u64, 0u64);
    for r in routers {
        from_cache += r.stats().served_from_cache;
        from_store += r.stats().served_from_store;
        folds += r.stats().opennet.folds_taken;
        announces += r.stats().opennet.announces_started;
    }
    let mut load = d.load.to_vec();
    load.sort_unstable();
    let load_sum: u64 = load.iter().map(|l| u64::from(*l)).sum();
    let c = d.counters;
    let n_ok = ok.len() as u64;
    Summary {
        nodes: d.params.nodes,
        requests: d.records.len(),
        seed: d.params.seed,
        topology: d.params.topology.name().to_string(),
        htl_policy: match d.params.htl_policy {
            crate::params::PolicyChoice::Always => "always",
            crate::params::PolicyChoice::Probabilistic => "probabilistic",
        }
        .to_string(),
        decrement_at_max: d.params.decrement_at_max,
        decrement_at_one: d.params.decrement_at_one,
        fail_fraction: d.params.fail_fraction,
        churn: d.params.churn,
        keys: d.keys,
        degree: d.params.degree,
        max_htl: d.params.max_htl,
        seeds: d.params.seeds,
        warmup_per_node: if d.params.topology == crate::topology::Topology::Opennet {
            d.params.warmup
        } else {
            0
        },
        mean_degree: d.graph.0,
        ideal_mean_hops: None,
        ideal_success_rate: None,
        plain_success_rate: None,
        plain_mean_hops: None,
        attackers: d.params.attackers,
        mitigation: d.params.mitigation,
        unmitigated_success_rate: None,
        unmitigated_mean_link_length: None,
        folds_taken: folds,
        announcements: announces,
        mean_link_length: d.graph.1,
        insert_success_rate: ratio(c.inserts_ok, c.inserts),
        success_rate: ratio(n_ok, d.records.len() as u64),
        replicas: d.params.replicas,
        insert_routes: d.params.insert_routes(),
        index_replicas: None,
        doc_blocks: None,
        blocks_per_doc: None,
        documents_checked: None,
        document_success_rate: None,
        top_block_success_rate: None,
        store_blocks_per_node: d.storage.1,
        keys_with_live_copy: ratio(
            d.storage.0.iter().filter(|l| **l).count() as u64,
            d.storage.0.len() as u64,
        ),
        failed_with_live_copy: ratio(
            d.records
                .iter()
                .filter(|r| !r.outcome.success() && d.storage.0.get(r.key as usize) == Some(&true))
                .count() as u64,
            d.records.len() as u64,
        ),
        mean_hops: ratio(hop_sum, n_ok),
        median_hops: percentile(&hops, 0.5),
        p95_hops: percentile(&hops, 0.95),
        mean_messages: ratio(msg_sum, d.records.len() as u64),
        mean_latency_ms: ratio(lat_sum, n_ok) / 1e6,
        fetch_latency_ms_p50: percentile(&lats, 0.5) as f64 / 1e6,
        fetch_latency_ms_p95: percentile(&lats, 0.95) as f64 / 1e6,
        latency_model: d.params.latency_model.to_string(),
        routing: match d.params.routing {
            crate::params::Routing::Greedy => "greedy",
            crate::params::Routing::LatencyAware => "latency-aware",
        }
        .to_string(),
        latency_factor: d.params.latency_factor(),
        greedy_success_rate: None,
        greedy_fetch_latency_ms_p50: None,
        greedy_fetch_latency_ms_p95: None,
        greedy_mean_hops: None,
        cache_hit_rate: ratio(from_cache, from_cache + from_store),
        guess_precision: ratio(c.guess_true_pos, c.guess_true_pos + c.guess_false_pos),
        guess_recall: ratio(c.guess_true_pos, c.guess_true_pos + c.guess_false_neg),
        load_mean: ratio(load_sum, load.len() as u64),
        load_p99: percentile(&load, 0.99),
        load_max: load.last().copied().unwrap_or(0),
        misbehaviour: c.misbehaviour,
        messages_by_kind: c.by_kind.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        events: d.events,
        events_per_sec: d.events as f64 / d.wall.0.max(1e-9),
        wall_seconds: d.wall.1,
        peak_rss_bytes: peak_rss(),
        params: serde_json::to_value(d.params).unwrap_or_default(),
    }
}

/// The process's peak resident set (`VmHWM` in `/proc/self/status`), when the system
/// tells it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.95), 95);
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&[7u32], 0.95), 7);
        assert_eq!(percentile::<u32>(&[], 0.95), 0);
    }
}
