//! `veil-sim`: a discrete-event simulator of Veil networks that runs the node's own
//! routing core ([`veil_proto::router::Router`]), one per simulated node, over an
//! in-memory network with per-link latency. A run is a pure function of its
//! [`Params`]: the same seed gives the same figures.
//!
//! # Layout
//! - [`params`]: what defines a run.
//! - [`topology`]: small-world, random-regular and darknet graphs (with location swapping).
//! - [`workload`]: blocks, popularity, and the schedule of inserts, failures, requests, churn.
//! - [`engine`]: the event loop that drives the routers and watches their messages.
//! - [`metrics`]: per-request records and the summary.
//! - [`output`]: the table, JSON, CSV and SVG plots.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;
pub mod metrics;
pub mod output;
pub mod params;
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

/// Runs one simulation.
pub fn run(params: &Params) -> Result<Report, String> {
    params.validate()?;
    let wall = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let graph = topology::build(
        params.topology,
        params.nodes,
        params.degree,
        params.swaps_per_node,
        &mut rng,
    );
    let graph_figures = (graph.mean_degree(), topology::mean_link_length(&graph));
    let key_count = params.key_count();
    let keys = workload::Keys::generate(key_count, params.seed);
    let sim_rng = ChaCha8Rng::seed_from_u64(params.seed ^ 0x5EED);
    let mut sim = engine::Sim::new(params, graph, keys, sim_rng);
    workload::schedule(&mut sim, params, key_count, &mut rng);
    let started = Instant::now();
    let events = sim.run();
    let loop_secs = started.elapsed().as_secs_f64();
    sim.finish();
    let data = RunData {
        params,
        records: &sim.records,
        counters: &sim.counters,
        load: &sim.load,
        graph: graph_figures,
        keys: key_count,
        events,
        wall: (loop_secs, wall.elapsed().as_secs_f64()),
    };
    let summary = metrics::summarize(&data, sim.routers());
    Ok(Report {
        summary,
        records: std::mem::take(&mut sim.records),
    })
}
