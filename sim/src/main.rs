//! `veil-sim`: simulate a Veil network running the node's own routing core, and report
//! success, hops, load, caching and how well a neighbour can guess who asked.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use veil_sim::latency::LatencyModel;
use veil_sim::params::{Params, PolicyChoice, Popularity, Routing, SwapMode};
use veil_sim::topology::Topology;
use veil_sim::{output, run};

/// Discrete-event simulator of Veil networks. Every simulated node runs veil-proto's
/// router, the same code as the daemon; a run is deterministic from its seed.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate one network: writes DIR/summary.json, DIR/requests.csv and DIR/hops.svg
    /// and prints a one-row table.
    Run {
        /// Number of nodes.
        #[arg(long)]
        nodes: usize,
        #[command(flatten)]
        common: Common,
    },
    /// What joins and leaves cost: the share of keys whose closest holders change per
    /// join and per leave beside 1/n (ring geometry, at each of --sizes), then the
    /// simulator's routers through a wave of leaves and a wave of joins (--wave of the
    /// nodes each), success binned over time, for 1 replica and for --replicas, each
    /// without and with healing (publishers re-insert after each wave).
    /// Writes DIR/churn.json, DIR/churn.csv and DIR/churn.svg and prints both tables.
    Churn {
        /// Nodes of the recovery runs.
        #[arg(long)]
        nodes: usize,
        /// Network sizes of the placement table, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<usize>,
        /// Share of the nodes in each wave.
        #[arg(long, default_value_t = 0.1)]
        wave: f64,
        /// Time bins of the recovery runs.
        #[arg(long, default_value_t = 20)]
        bins: usize,
        /// Keys placed for the placement table.
        #[arg(long, default_value_t = 20_000)]
        placement_keys: usize,
        /// Joins (and as many leaves) applied for the placement table.
        #[arg(long, default_value_t = 500)]
        placement_events: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Simulate several network sizes with the same settings: writes DIR/sweep.json,
    /// DIR/sweep.csv, DIR/sweep.svg (success and hops against size) and one run
    /// directory per size (DIR/n<SIZE>/), and prints the table.
    /// Grow opennet networks with several warm-up lengths: writes DIR/warmup.json,
    /// DIR/warmup.csv and DIR/warmup.svg (success, and hops beside the ideal small
    /// world's, against warm-up requests per node), one run directory per length
    /// (DIR/w<LENGTH>/), and prints the table. The topology is always opennet.
    Warmup {
        /// Number of nodes.
        #[arg(long)]
        nodes: usize,
        /// Warm-up requests per node, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,5,10,20,40")]
        warmups: Vec<usize>,
        #[command(flatten)]
        common: Common,
    },
    /// Passive adversaries against whole downloads: runs the downloads with the
    /// anonymity walk on (unless --defence off) and off on the same network, and
    /// reports how well a fraction of listening nodes names the downloaders (first-hop
    /// guess, Levine et al.'s neighbour test, the predecessor attack, entropy) and what
    /// the walk costs. Writes DIR/summary.json and prints one row per setting and
    /// fraction (docs/anonymity.md).
    Anonymity {
        /// Number of nodes.
        #[arg(long)]
        nodes: usize,
        /// Fractions of nodes that are adversaries, comma-separated (each analysed on
        /// the same runs; the sets are nested).
        #[arg(long, value_delimiter = ',', default_value = "0.1")]
        adversary_fraction: Vec<f64>,
        /// Downloads in all.
        #[arg(long, default_value_t = 500)]
        downloads: usize,
        /// Distinct blocks per download.
        #[arg(long, default_value_t = 50)]
        blocks_per_download: usize,
        /// Downloads each originator makes, each on a fresh tunnel (the predecessor
        /// attack pools them).
        #[arg(long, default_value_t = 5)]
        downloads_per_originator: usize,
        /// on: measure the walk (at --walk-probability, default 0.75) beside the
        /// baseline; off: the baseline alone.
        #[arg(long, value_enum, default_value_t = OnOff::On)]
        defence: OnOff,
        /// What shares one walk: every block of a download or upload (the client's
        /// way), or nothing (a walk per request, plain Crowds; for comparison).
        #[arg(long, value_enum, default_value_t = TunnelChoice::PerDownload)]
        tunnel: TunnelChoice,
        #[command(flatten)]
        common: Common,
    },
    /// What a keyword search costs against network size, beside a Gnutella-style flood
    /// on the same graph from the same searchers: each search reads a word's slots as
    /// `veil search` does (routed requests, most for empty slots). Writes
    /// DIR/search.json and prints the table (docs/search.md).
    Search {
        /// Network sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        sizes: Vec<usize>,
        /// Searches per size, each for a word of its own.
        #[arg(long, default_value_t = 200)]
        searches: usize,
        /// Documents listed under each word.
        #[arg(long, default_value_t = 5)]
        entries: usize,
        #[command(flatten)]
        common: Common,
    },
    Sweep {
        /// Network sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        sizes: Vec<usize>,
        #[command(flatten)]
        common: Common,
    },
}

/// What shares one anonymity walk.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TunnelChoice {
    PerDownload,
    PerRequest,
}

/// A switch.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Args)]
struct Common {
    /// Number of requests, issued one every --interval-ms from random live nodes
    /// (required by run, sweep and warmup; anonymity derives it from its downloads).
    #[arg(long)]
    requests: Option<usize>,
    /// Seed for every random choice (graph, locations, keys, workload, routers).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Graph: Kleinberg small world, random regular, or a darknet friend graph whose
    /// random locations are improved by Sandberg location swapping first.
    #[arg(long, value_enum, default_value_t = Topology::SmallWorld)]
    topology: Topology,
    /// Target number of links per node (Veil's defaults are in the tens).
    #[arg(long, default_value_t = 20)]
    degree: usize,
    /// Fraction of nodes (0 to <1) that fail at once after the inserts and before the
    /// requests.
    #[arg(long, default_value_t = 0.0)]
    fail_fraction: f64,
    /// Fraction of nodes that leave at a random time during the requests and come back
    /// up to a quarter of the request window later (churn).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// HTL policy: `always` decrements at every hop; `probabilistic` (Freenet's and the
    /// daemon's default) decides once per link whether to decrement at the maximum
    /// (p = 0.5) and at 1 (p = 0.25).
    #[arg(long, value_enum, default_value_t = PolicyChoice::Probabilistic)]
    htl_policy: PolicyChoice,
    /// Probabilistic policy: chance that a link decrements HTL at the maximum.
    #[arg(long, default_value_t = 0.5)]
    decrement_at_max: f64,
    /// Probabilistic policy: chance that a link decrements HTL at 1.
    #[arg(long, default_value_t = 0.25)]
    decrement_at_one: f64,
    /// Maximum and starting HTL.
    #[arg(long, default_value_t = 18)]
    max_htl: u8,
    /// Distinct blocks inserted before the requests (0: one per ten requests, between 1
    /// and 10,000). Each is a real 32 KiB CHK block.
    #[arg(long, default_value_t = 0)]
    keys: usize,
    /// Which keys requests ask for: uniform, or Zipf (key i with probability ∝ 1/i^s).
    #[arg(long, value_enum, default_value_t = Popularity::Uniform)]
    popularity: Popularity,
    /// Zipf exponent s.
    #[arg(long, default_value_t = 1.0)]
    zipf_exponent: f64,
    /// Blocks each node's LRU cache holds.
    #[arg(long, default_value_t = 100)]
    cache_size: usize,
    /// Nodes near its key that each inserted block is stored on (the daemon's
    /// `replicas`; the default is the daemon's).
    #[arg(long, default_value_t = veil_proto::router::DEFAULT_REPLICAS)]
    replicas: u8,
    /// Nodes each top and index block is stored on (with --doc-blocks; the client's
    /// default).
    #[arg(long, default_value_t = veil_proto::router::DEFAULT_INDEX_REPLICAS)]
    index_replicas: u8,
    /// Whole documents of this many 32 KiB data blocks instead of lone blocks: each with
    /// its top block, index blocks and Reed–Solomon check blocks as the client makes
    /// them. --keys then counts all their blocks, requests fetch documents block by
    /// block, and the summary adds the share of whole documents still fetchable.
    #[arg(long, default_value_t = 0)]
    doc_blocks: usize,
    /// Location-swap attempts per node before the workload (darknet only).
    #[arg(long, default_value_t = 50)]
    swaps_per_node: usize,
    /// How darknet nodes swap: `offline` applies the rule to the graph before the
    /// routers start; `wire` runs the routers' swap protocol (as `veild --darknet` does),
    /// one attempt per node every 10 virtual seconds.
    #[arg(long, value_enum, default_value_t = SwapMode::Offline)]
    swap_mode: SwapMode,
    /// Opennet: seed nodes that newcomers announce through.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Opennet: warm-up requests per node (on warm-up keys of their own) between the
    /// joins and the measured inserts; path folding reshapes the network meanwhile.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Hash every block at every hop as the daemon does (slower; the default checks the
    /// block's identity, which is equivalent here because simulated nodes never forge).
    #[arg(long)]
    full_verify: bool,
    /// Route the keys of real CHK blocks (payload: the seed and the key's index), as
    /// every run did until 2026-12-03: reproduces figures measured before then bit for
    /// bit, at the cost of encoding a 32 KiB block per key. The default hashes the seed
    /// and the index, which gives keys just as uniform at a fraction of the cost.
    #[arg(long)]
    chk_keys: bool,
    /// Virtual milliseconds between two inserts and between two requests; 0 picks
    /// 10,000 / nodes, which keeps the load on each node the same at every size.
    #[arg(long, default_value_t = 0.0)]
    interval_ms: f64,
    /// The anonymity walk (docs/anonymity.md): chance that a node on a request's walk
    /// passes it on. 0 (here) routes greedily from the originator, as the routing
    /// figures in docs/ were measured; the daemon's default is 0.75.
    #[arg(long, default_value_t = 0.0)]
    walk_probability: f64,
    /// Darknet: fraction of nodes that lie in swaps to collapse everyone's locations
    /// (the pitch-black attack; offline swapping). With --mitigation on, the run is
    /// repeated without the guard and both figures are printed.
    #[arg(long, default_value_t = 0.0)]
    attackers: f64,
    /// Darknet: the core's pitch-black guard on swaps (on by default, as in veild).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    mitigation: OnOff,
    /// Darknet: the mitigation's guard, as ln of the factor by which a swap may lengthen
    /// a side's own links on average (the core's default is ln 2).
    #[arg(long, default_value_t = veil_proto::swap::DEFAULT_MAX_SIDE_LOSS)]
    max_side_loss: f64,
    /// Darknet: friend-of-a-friend routing (nodes tell their friends their friends'
    /// locations), as veild --darknet runs; off routes by the friends' own locations.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    foaf: OnOff,
    /// Routes each insert leaves by, each through its own walk and storing a share of
    /// the replicas (veild's `insert_routes`); default as veild: one per replica in a
    /// darknet (copies land where requests from anywhere end in a roughly embedded
    /// friend graph), 1 elsewhere (every copy next to the key).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    insert_routes: Option<u8>,
    /// Link latencies: `internet` (synthetic coordinates, heavy-tailed access delays and
    /// per-pair route inflation, so the triangle inequality often fails), `uniform`
    /// (each link a fixed draw in [10, 100) ms, the older tables' model), `constant[:MS]`
    /// (default 50 ms) or `matrix:FILE` (one-way ms, one row a line; node i at host
    /// i mod size). docs/routing.md describes them.
    #[arg(long, default_value = "internet")]
    latency_model: LatencyModel,
    /// Next hops of requests: `latency-aware` (the daemon's default: the quickest peer
    /// within --latency-factor of the closest) or `greedy` (the closest). A
    /// latency-aware `run` repeats the run greedily and prints both.
    #[arg(long, value_enum, default_value_t = Routing::LatencyAware)]
    routing: Routing,
    /// Latency-aware routing: how much farther from the key than the closest peer a
    /// quicker peer may be, nearer than the node choosing it (1 is greedy; the daemon's
    /// default here).
    #[arg(long, default_value_t = veil_proto::router::DEFAULT_LATENCY_FACTOR)]
    latency_factor: f64,
    /// Latency-aware routing: what each doubling of a peer's distance to the key over
    /// the closest peer's costs it, as a share of the mean round trip of the node's
    /// links (the daemon's default here).
    #[arg(long, default_value_t = veil_proto::router::DEFAULT_LATENCY_PROGRESS_WEIGHT)]
    progress_weight: f64,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
}

impl Common {
    /// The run's parameters; `--requests` must have been given.
    fn params(&self, nodes: usize) -> Result<Params> {
        if self.requests.is_none() {
            bail!("--requests is required: how many requests to measure");
        }
        Ok(self.network(nodes))
    }

    /// The network's parameters, whatever the requests.
    fn network(&self, nodes: usize) -> Params {
        Params {
            topology: self.topology,
            degree: self.degree,
            fail_fraction: self.fail_fraction,
            churn: self.churn,
            htl_policy: self.htl_policy,
            decrement_at_max: self.decrement_at_max,
            decrement_at_one: self.decrement_at_one,
            max_htl: self.max_htl,
            keys: self.keys,
            popularity: self.popularity,
            zipf_exponent: self.zipf_exponent,
            cache_size: self.cache_size,
            replicas: self.replicas,
            index_replicas: self.index_replicas,
            doc_blocks: self.doc_blocks,
            swaps_per_node: self.swaps_per_node,
            swap_mode: self.swap_mode,
            full_verify: self.full_verify,
            chk_keys: self.chk_keys,
            seeds: self.seeds,
            warmup: self.warmup,
            interval_ms: self.interval_ms,
            walk_probability: self.walk_probability,
            foaf: self.foaf == OnOff::On,
            insert_routes: self.insert_routes,
            attackers: self.attackers,
            mitigation: self.mitigation == OnOff::On,
            max_side_loss: self.max_side_loss,
            latency_model: self.latency_model.clone(),
            routing: self.routing,
            factor: self.latency_factor,
            progress_weight: self.progress_weight,
            ..Params::new(nodes, self.requests.unwrap_or(0), self.seed)
        }
    }
}

/// mimalloc, not the system allocator: a simulation is millions of small allocations
/// across hundreds of megabytes touched at random, and mimalloc's segments come in huge
/// pages (fewer TLB misses) and its small allocations are quicker (docs/sim.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("veil-sim: {e:#}");
        std::process::exit(1);
    }
}

fn one(params: &Params) -> Result<veil_sim::Report> {
    run(params).map_err(invalid)
}

/// Parameters the library refused, as the one line the user sees.
fn invalid(e: veil_sim::params::InvalidParams) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { nodes, common } => cmd_run(nodes, &common),
        Command::Warmup {
            nodes,
            warmups,
            common,
        } => cmd_warmup(nodes, &warmups, &common),
        Command::Anonymity {
            nodes,
            adversary_fraction,
            downloads,
            blocks_per_download,
            downloads_per_originator,
            defence,
            tunnel,
            common,
        } => {
            let walk = if common.walk_probability > 0.0 {
                common.walk_probability
            } else {
                veil_proto::router::DEFAULT_WALK_PROBABILITY
            };
            let a = veil_sim::anonymity::AnonParams {
                fractions: adversary_fraction,
                downloads,
                blocks_per_download,
                downloads_per_originator,
                defence: defence == OnOff::On,
                walk_probability: walk,
                tunnel_per_request: tunnel == TunnelChoice::PerRequest,
            };
            cmd_anonymity(nodes, &a, &common)
        }
        Command::Search {
            sizes,
            searches,
            entries,
            common,
        } => cmd_search(
            &sizes,
            veil_sim::search::SearchParams { searches, entries },
            &common,
        ),
        Command::Churn {
            nodes,
            sizes,
            wave,
            bins,
            placement_keys,
            placement_events,
            common,
        } => {
            let placement = (placement_keys, placement_events);
            cmd_churn(nodes, &sizes, (wave, bins), placement, &common)
        }
        Command::Sweep { sizes, common } => cmd_sweep(&sizes, &common),
    }
}

/// `run`: one network, with its greedy baseline when routing is latency-aware.
fn cmd_run(nodes: usize, common: &Common) -> Result<()> {
    let params = common.params(nodes)?;
    params.validate()?;
    let report = veil_sim::run_with_baseline(&params).map_err(invalid)?;
    output::write_run(&common.out, &report.summary, &report.records)?;
    print_run(&report.summary);
    println!(
        "{} events at {:.0} events/s; files in {}",
        report.summary.events,
        report.summary.events_per_sec,
        common.out.display()
    );
    Ok(())
}

/// The lines `run` prints: latency, the table, storage, and what the run's options add.
fn print_run(s: &veil_sim::metrics::Summary) {
    println!(
        "fetch latency ({} links, {} routing, factor {}): median {:.0} ms, p95 {:.0} ms",
        s.latency_model,
        s.routing,
        s.latency_factor,
        s.fetch_latency_ms_p50,
        s.fetch_latency_ms_p95
    );
    if let (Some(ok), Some(p50), Some(p95), Some(hops)) = (
        s.greedy_success_rate,
        s.greedy_fetch_latency_ms_p50,
        s.greedy_fetch_latency_ms_p95,
        s.greedy_mean_hops,
    ) {
        println!(
            "greedy routing (same network and requests): success {ok:.4}, {hops:.2} \
             mean hops, median {p50:.0} ms, p95 {p95:.0} ms; latency-aware: success \
             {:.4}, {:.2} mean hops, median {:.2}× greedy's",
            s.success_rate,
            s.mean_hops,
            s.fetch_latency_ms_p50 / p50.max(1e-9)
        );
    }
    print!("{}", output::table(std::slice::from_ref(s)));
    println!(
        "storage: {} replicas, {:.1} blocks per node; keys with a live copy {:.4}; \
         requests failed although a copy lived {:.4}",
        s.replicas, s.store_blocks_per_node, s.keys_with_live_copy, s.failed_with_live_copy
    );
    if let (Some(ok), Some(len)) = (s.unmitigated_success_rate, s.unmitigated_mean_link_length) {
        println!(
            "pitch black: {:.1}% of nodes lie in swaps; success {:.4} with the guard \
             (mean link length {:.4}), {ok:.4} without (mean link length {len:.4})",
            s.attackers * 100.0,
            s.success_rate,
            s.mean_link_length
        );
    }
    if let (Some(ok), Some(hops)) = (s.plain_success_rate, s.plain_mean_hops) {
        println!(
            "plain swapping (same friends, same swaps; routed by the friends' own \
             locations, each insert by one route): success {ok:.4}, {hops:.2} mean hops"
        );
    }
    if let (Some(n), Some(ok), Some(top)) = (
        s.documents_checked,
        s.document_success_rate,
        s.top_block_success_rate,
    ) {
        println!(
            "documents: {n} of {} blocks each fetched whole; {ok:.4} could be rebuilt \
             (top blocks found {top:.4}; top and index blocks on {} replicas)",
            s.blocks_per_doc.unwrap_or(0),
            s.index_replicas.unwrap_or(0)
        );
    }
}

/// `warmup`: opennet networks grown with each warm-up length.
fn cmd_warmup(nodes: usize, warmups: &[usize], common: &Common) -> Result<()> {
    if warmups.is_empty() {
        bail!("--warmups needs at least one length");
    }
    let mut rows = Vec::new();
    for &w in warmups {
        let params = Params {
            topology: Topology::Opennet,
            warmup: w,
            ..common.params(nodes)?
        };
        params.validate()?;
        let report = one(&params)?;
        eprintln!(
            "veil-sim: warm-up {w}: success {:.4}, {:.2} hops (ideal {:.2}), {:.1} s",
            report.summary.success_rate,
            report.summary.mean_hops,
            report.summary.ideal_mean_hops.unwrap_or(f64::NAN),
            report.summary.wall_seconds
        );
        let dir = common.out.join(format!("w{w}"));
        output::write_run(&dir, &report.summary, &report.records)
            .with_context(|| format!("writing the warm-up {w} run"))?;
        rows.push(report.summary);
    }
    output::write_warmup(&common.out, &rows)?;
    println!("warmup/node  success  mean-hops  ideal-hops  mean-degree");
    for r in &rows {
        println!(
            "{:>11}  {:>7.4}  {:>9.2}  {:>10.2}  {:>11.1}",
            r.warmup_per_node,
            r.success_rate,
            r.mean_hops,
            r.ideal_mean_hops.unwrap_or(f64::NAN),
            r.mean_degree
        );
    }
    println!("files in {}", common.out.display());
    Ok(())
}

/// `anonymity`: passive adversaries against whole downloads, with the walk and without.
fn cmd_anonymity(nodes: usize, a: &veil_sim::anonymity::AnonParams, common: &Common) -> Result<()> {
    let params = common.network(nodes);
    let started = std::time::Instant::now();
    let summary = match veil_sim::anonymity::run(&params, a) {
        Ok(s) => s,
        Err(e) => bail!("{e}"),
    };
    output::write_json(&common.out, "summary.json", &summary)?;
    print!("{}", veil_sim::anonymity::table(&summary));
    println!(
        "{} downloads of {} blocks on {} nodes in {:.1} s; files in {}",
        a.downloads,
        a.blocks_per_download,
        nodes,
        started.elapsed().as_secs_f64(),
        common.out.display()
    );
    Ok(())
}

/// `search`: keyword searches at each size, beside a flood on the same graph.
fn cmd_search(sizes: &[usize], s: veil_sim::search::SearchParams, common: &Common) -> Result<()> {
    if sizes.is_empty() {
        bail!("--sizes needs at least one size");
    }
    let mut rows = Vec::new();
    for &n in sizes {
        let row = match veil_sim::search::run(&common.network(n), &s) {
            Ok(r) => r,
            Err(e) => bail!("{e}"),
        };
        eprintln!("veil-sim: {n} nodes done in {:.1} s", row.wall_seconds);
        rows.push(row);
        output::write_json(&common.out, "search.json", &rows)?;
    }
    print!("{}", veil_sim::search::table(&rows));
    println!("files in {}", common.out.display());
    Ok(())
}

/// `churn`: what joins and leaves move (the placement table at each size), then the
/// recovery runs through a wave of leaves and one of joins.
fn cmd_churn(
    nodes: usize,
    sizes: &[usize],
    (wave, bins): (f64, usize),
    (placement_keys, placement_events): (usize, usize),
    common: &Common,
) -> Result<()> {
    let params = common.params(nodes)?;
    params.validate()?;
    if sizes.iter().any(|&n| n < 2) {
        bail!("--sizes must all be at least 2");
    }
    let mut placement = Vec::new();
    for &n in sizes {
        for r in [1, usize::from(params.replicas)] {
            let row =
                veil_sim::churn::placement(n, r, placement_keys, placement_events, params.seed);
            placement.push(row);
        }
    }
    print!("{}", veil_sim::churn::placement_table(&placement));
    let mut rows = Vec::new();
    let mut waves = None;
    for s in veil_sim::churn::Setting::all(params.replicas) {
        let (r, w) = match veil_sim::churn::recovery(&params, s, wave, bins) {
            Ok(x) => x,
            Err(e) => bail!("{e}"),
        };
        eprintln!(
            "veil-sim: {} replicas, healing {}: done",
            s.replicas,
            if s.healing { "on" } else { "off" }
        );
        rows.push(r);
        waves = Some(w);
    }
    let waves = waves.context("no recovery run")?;
    print!("{}", veil_sim::churn::recovery_table(&rows, &waves));
    output::write_churn(&common.out, &placement, &waves, &rows)?;
    println!("files in {}", common.out.display());
    Ok(())
}

/// `sweep`: the same settings at several sizes.
fn cmd_sweep(sizes: &[usize], common: &Common) -> Result<()> {
    if sizes.is_empty() {
        bail!("--sizes needs at least one size");
    }
    let mut rows = Vec::new();
    for &n in sizes {
        let params = common.params(n)?;
        params.validate()?;
        let report = one(&params)?;
        eprintln!(
            "veil-sim: {n} nodes done in {:.1} s ({:.0} events/s)",
            report.summary.wall_seconds, report.summary.events_per_sec
        );
        let dir = common.out.join(format!("n{n}"));
        output::write_run(&dir, &report.summary, &report.records)
            .with_context(|| format!("writing the {n}-node run"))?;
        rows.push(report.summary);
    }
    output::write_sweep(&common.out, &rows)?;
    print!("{}", output::table(&rows));
    println!("files in {}", common.out.display());
    Ok(())
}
