//! `veil-sim`: a discrete-event simulator of Veil networks that runs the node's own
//! routing core ([`veil_proto::router::Router`]), one per simulated node, over an
//! in-memory network with per-link latency. A run is a pure function of its
//! [`Params`]: the same seed gives the same figures.
//!
//! # Layout
//! - [`params`]: what defines a run.
//! - [`topology`]: small-world, random-regular and darknet graphs (with location swapping).
//! - [`workload`]: blocks, popularity, and the schedule of inserts, failures, requests, churn.
//! - [`layout`]: how a document's blocks are laid out (as the client lays them out).
//! - [`latency`]: link latency models (Internet-like, uniform, constant, a matrix).
//! - [`event`]: virtual time and the events the engine runs.
//! - [`engine`]: the event loop that drives the routers and watches their messages.
//! - [`metrics`]: per-request records and the summary.
//! - [`output`]: the table, JSON, CSV and SVG plots.
//! - [`anonymity`]: passive adversaries against whole downloads (`veil-sim anonymity`).
//! - [`churn`]: what joins and leaves cost, and how success recovers (`veil-sim churn`).
//! - [`search`]: what a keyword search costs beside a flood (`veil-sim search`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anonymity;
pub mod churn;
pub mod engine;
pub mod event;
pub mod latency;
pub mod layout;
pub mod metrics;
pub mod mix;
pub mod output;
pub mod params;
pub mod search;
pub mod topology;
pub mod workload;

use metrics::{RequestRecord, RunData, Summary};
use params::Params;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// The result of one run.
pub struct Report {
    /// The figures.
    pub summary: Summary,
    /// Every request.
    pub records: Vec<RequestRecord>,
}

/// Builds the network of a run: graph, keys, routers and its schedule (the workload's
/// random choices come from `rng`, which the caller goes on with). Returns the engine,
/// the number of measured keys and when the requests end.
fn build<'p>(params: &'p Params, rng: &mut ChaCha8Rng) -> (engine::Sim<'p>, usize) {
    // Swapping over the wire happens in the run itself, before the workload.
    let offline_swaps = match params.swap_mode {
        params::SwapMode::Offline => params.swaps_per_node,
        params::SwapMode::Wire => 0,
    };
    // The attackers come from a generator of their own, so a run without them draws
    // the same graph as before they existed.
    let attack = if params.attackers > 0.0 {
        topology::Attack::new(
            params.nodes,
            params.attackers,
            &mut ChaCha8Rng::seed_from_u64(params.seed ^ 0x0B1A_C4B1),
        )
    } else {
        topology::Attack::default()
    };
    let swaps = topology::Swaps {
        per_node: offline_swaps,
        attack: &attack,
        guard: params.guard(),
    };
    let graph = topology::build(
        params.topology,
        params.nodes,
        params.degree,
        swaps,
        params.seeds,
        rng,
    );
    let key_count = params.key_count();
    let warm_keys = params.warmup_keys();
    let keys = workload::Keys::generate(
        key_count + warm_keys,
        params.seed,
        workload::KeyMode::of(params),
    );
    let sim_rng = ChaCha8Rng::seed_from_u64(params.seed ^ 0x5EED);
    let mut sim = engine::Sim::new(params, graph, keys, sim_rng);
    sim.set_warm_keys(key_count as u32, (key_count + warm_keys) as u32);
    if params.swap_mode == params::SwapMode::Wire
        || (params.topology == topology::Topology::Darknet && params.foaf)
    {
        // Arm the routers' timers: swapping, and the first neighbour lists.
        sim.start_swapping();
    }
    if let Some(layout) = params.layout() {
        sim.set_documents(key_count / layout.blocks(), layout.blocks());
    }
    (sim, key_count)
}

/// A run built and scheduled, and how far it has gone.
struct Started<'p> {
    params: &'p Params,
    sim: engine::Sim<'p>,
    key_count: usize,
    timeline: workload::Timeline,
    /// When the run began (its figures' wall time counts from here).
    wall: Instant,
    /// Events run so far, and the seconds their loop took.
    events: u64,
    loop_secs: f64,
}

impl<'p> Started<'p> {
    fn new(params: &'p Params) -> Started<'p> {
        let wall = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let (mut sim, key_count) = build(params, &mut rng);
        let timeline = workload::schedule(params, key_count, &mut rng, |at, action| {
            sim.schedule(at, action)
        });
        Started {
            params,
            sim,
            key_count,
            timeline,
            wall,
            events: 0,
            loop_secs: 0.0,
        }
    }

    /// Runs every event due by `until`.
    fn run_until(&mut self, until: event::Nanos) {
        let started = Instant::now();
        self.events += self.sim.run_until(until);
        self.loop_secs += started.elapsed().as_secs_f64();
    }

    /// A copy that goes on under `params` (a different latency factor only).
    fn fork<'q>(&self, params: &'q Params) -> Started<'q> {
        Started {
            params,
            sim: self.sim.fork(params),
            key_count: self.key_count,
            timeline: self.timeline,
            wall: self.wall,
            events: self.events,
            loop_secs: self.loop_secs,
        }
    }
}

/// Runs one simulation.
pub fn run(params: &Params) -> Result<Report, params::InvalidParams> {
    params.validate()?;
    complete(Started::new(params))
}

/// The `run` command's simulation: a latency-aware run is repeated greedily on the same
/// network, seed and workload (its inserts, the same either way, run once), and the
/// baseline's success, hops and fetch latencies go into the summary beside its own; any
/// other run is simulated once.
pub fn run_with_baseline(params: &Params) -> Result<Report, params::InvalidParams> {
    if params.routing != params::Routing::LatencyAware {
        return run(params);
    }
    let (mut report, greedy) = run_beside_greedy(params)?;
    let g = greedy.summary;
    let s = &mut report.summary;
    // Both runs have ended: the process's peak covers the baseline's too.
    s.peak_rss_bytes = metrics::peak_rss().or(s.peak_rss_bytes);
    s.greedy_success_rate = Some(g.success_rate);
    s.greedy_fetch_latency_ms_p50 = Some(g.fetch_latency_ms_p50);
    s.greedy_fetch_latency_ms_p95 = Some(g.fetch_latency_ms_p95);
    s.greedy_mean_hops = Some(g.mean_hops);
    Ok(report)
}

/// Runs `params` and, beside it, the same network, seed and workload routed greedily
/// (the baseline latency-aware routing is read against): `(run, greedy)`.
///
/// Inserts route greedily whatever the latency factor, so the two runs are one and the
/// same up to their first request, unless requests come before that (an opennet
/// warm-up): that part runs once, and the two go on from copies of it, the greedy one on
/// a second thread. The figures are those of two separate runs (`requests.csv` and
/// `summary.json` compared, timings aside); the events and loop time of the shared part
/// count in both.
pub fn run_beside_greedy(params: &Params) -> Result<(Report, Report), params::InvalidParams> {
    params.validate()?;
    let greedy_params = Params {
        routing: params::Routing::Greedy,
        ..params.clone()
    };
    let mut started = Started::new(params);
    if params.warmup_requests() == 0 {
        started.run_until(started.timeline.requests_start - 1);
    }
    let greedy = started.fork(&greedy_params);
    std::thread::scope(|scope| {
        let g = scope.spawn(|| complete(greedy));
        let r = complete(started);
        let g = g.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        Ok((r?, g?))
    })
}

/// Runs what is left of a run and sums it up (with the runs beside it that its
/// settings call for).
fn complete(mut started: Started) -> Result<Report, params::InvalidParams> {
    // Every request has long finished ten virtual minutes after the last one starts.
    started.run_until(started.timeline.requests_end + 600_000_000_000);
    let Started {
        params,
        mut sim,
        key_count,
        wall,
        events,
        loop_secs,
        ..
    } = started;
    sim.finish();
    let graph_figures = if params.topology == topology::Topology::Opennet {
        let d = sim.live_degrees();
        (
            d.iter().sum::<usize>() as f64 / d.len().max(1) as f64,
            topology::mean_link_length(sim.graph()),
        )
    } else {
        (
            sim.graph().mean_degree(),
            topology::mean_link_length(sim.graph()),
        )
    };
    let data = RunData {
        params,
        records: &sim.records,
        counters: &sim.counters,
        load: &sim.load,
        graph: graph_figures,
        keys: key_count,
        storage: sim.storage(key_count),
        events,
        wall: (loop_secs, wall.elapsed().as_secs_f64()),
    };
    if std::env::var_os("VEIL_SIM_DEBUG").is_some() {
        ring_report(&sim, params);
    }
    let mut summary = metrics::summarize(&data, sim.routers());
    if let Some(layout) = params.layout() {
        documents(&mut summary, &layout, &sim.records, params);
    }
    if params.topology == topology::Topology::Opennet {
        // The yardstick: a pre-wired small world of the same size and mean degree,
        // same seed and workload.
        let ideal = Params {
            topology: topology::Topology::SmallWorld,
            degree: (summary.mean_degree.round() as usize).clamp(2, params.nodes - 1),
            ..params.clone()
        };
        let r = run(&ideal)?;
        summary.ideal_mean_hops = Some(r.summary.mean_hops);
        summary.ideal_success_rate = Some(r.summary.success_rate);
    }
    if params.topology == topology::Topology::Darknet && params.attackers > 0.0 && params.mitigation
    {
        // Beside it: the same attack on swaps without the guard.
        let r = run(&Params {
            mitigation: false,
            ..params.clone()
        })?;
        summary.unmitigated_success_rate = Some(r.summary.success_rate);
        summary.unmitigated_mean_link_length = Some(r.summary.mean_link_length);
    }
    if params.topology == topology::Topology::Darknet && params.foaf {
        // Beside it: plain swapping as Freenet runs it, on the same friend graph and
        // swaps: routed without neighbour lists, each insert by one route.
        let r = run(&Params {
            foaf: false,
            insert_routes: Some(1),
            ..params.clone()
        })?;
        summary.plain_success_rate = Some(r.summary.success_rate);
        summary.plain_mean_hops = Some(r.summary.mean_hops);
    }
    Ok(Report {
        summary,
        records: std::mem::take(&mut sim.records),
    })
}

/// Whole documents: requests go through the documents one after another, block by block
/// (request `i` asks for block `i % blocks` of the `i / blocks`-th document fetched), so
/// the records of each full run of `blocks` requests tell whether a reader could have
/// rebuilt that document.
fn documents(
    summary: &mut Summary,
    layout: &layout::DocLayout,
    records: &[RequestRecord],
    params: &Params,
) {
    let blocks = layout.blocks();
    let mut found: std::collections::BTreeMap<usize, Vec<bool>> = Default::default();
    for r in records {
        let i = r.index as usize;
        found
            .entry(i / blocks)
            .or_insert_with(|| vec![false; blocks])[i % blocks] = r.outcome.success();
    }
    let whole = params.requests / blocks;
    let checked: Vec<&Vec<bool>> = found
        .iter()
        .filter(|(d, _)| **d < whole)
        .map(|(_, f)| f)
        .collect();
    let ok = checked
        .iter()
        .filter(|f| layout.fetchable(|o| f[o]))
        .count();
    let tops = checked.iter().filter(|f| f[0]).count();
    let n = checked.len().max(1) as f64;
    summary.index_replicas = Some(params.index_replicas);
    summary.doc_blocks = Some(params.doc_blocks);
    summary.blocks_per_doc = Some(blocks);
    summary.documents_checked = Some(checked.len());
    summary.document_success_rate = Some(ok as f64 / n);
    summary.top_block_success_rate = Some(tops as f64 / n);
}

/// Debugging (`VEIL_SIM_DEBUG=1`): on stderr, how many nodes are linked to their ring
/// successor (the missing ones by join order and by whether their ends are full), the
/// degree histogram and the opennet counters.
fn ring_report(sim: &engine::Sim, params: &Params) {
    let g = sim.graph();
    let mut order: Vec<usize> = (0..g.locations.len()).collect();
    order.sort_by_key(|&i| g.locations[i]);
    let n = order.len();
    let mut succ = 0;
    let mut missing = std::collections::BTreeMap::new();
    let mut by_decile = std::collections::BTreeMap::new();
    let degs_all: Vec<usize> = sim.all_degrees();
    for k in 0..n {
        let (a, b) = (order[k], order[(k + 1) % n]);
        if g.links[a].contains(&(b as u32)) {
            succ += 1;
        } else {
            if missing.values().sum::<usize>() < 6 {
                let spacing = (u64::MAX / n as u64) as f64;
                let la = g.locations[a];
                let lb = g.locations[b];
                let mut cw: Vec<f64> = g.links[a]
                    .iter()
                    .map(|&j| g.locations[j as usize].wrapping_sub(la) as f64 / spacing)
                    .filter(|d| *d < n as f64 / 2.0)
                    .collect();
                cw.sort_by(|x, y| x.partial_cmp(y).unwrap());
                let mut ccw: Vec<f64> = g.links[b]
                    .iter()
                    .map(|&j| lb.wrapping_sub(g.locations[j as usize]) as f64 / spacing)
                    .filter(|d| *d < n as f64 / 2.0)
                    .collect();
                ccw.sort_by(|x, y| x.partial_cmp(y).unwrap());
                eprintln!(
                    "missing {a}->{b}: gap {:.2}; a's clockwise peers {:?}; b's counter-clockwise peers {:?}",
                    lb.wrapping_sub(la) as f64 / spacing,
                    &cw[..cw.len().min(5)],
                    &ccw[..ccw.len().min(5)]
                );
            }
            let decile = a * 10 / n;
            *by_decile.entry(decile).or_insert(0usize) += 1;
            let full = |x: usize| degs_all[x] >= params.degree;
            *missing.entry((full(a), full(b))).or_insert(0) += 1;
        }
    }
    eprintln!("missing successor links by (a full, b full): {missing:?}");
    eprintln!("missing successor links by join decile of a: {by_decile:?}");
    let degs = sim.live_degrees();
    let zero = degs.iter().filter(|&&d| d == 0).count();
    let low = degs.iter().filter(|&&d| d < 5).count();
    let mut hist = [0usize; 41];
    for &d in &degs {
        hist[d.min(40)] += 1;
    }
    eprintln!("degree histogram: {hist:?}");
    eprintln!("ring successor linked: {succ}/{n}; degree 0: {zero}, <5: {low}");
    let mut total = veil_proto::router::OpennetStats::default();
    for r in sim.routers() {
        let o = &r.stats().opennet;
        total.announces_started += o.announces_started;
        total.announces_received += o.announces_received;
        total.announce_offers += o.announce_offers;
        total.fold_offers += o.fold_offers;
        total.folds_taken += o.folds_taken;
        total.connects += o.connects;
        total.peers_dropped += o.peers_dropped;
        total.links_refused += o.links_refused;
        total.links_transient += o.links_transient;
    }
    eprintln!("{total:?}");
}
