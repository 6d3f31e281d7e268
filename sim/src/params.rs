//! Simulation parameters, shared by the library and the command line.

use crate::topology::Topology;
use veil_proto::message::Htl;
use veil_proto::router::HtlPolicy;

/// HTL policy as chosen on the command line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyChoice {
    /// Every forwarding node decrements HTL.
    Always,
    /// Freenet's rule: per link, decrement at the maximum and at 1 each with a
    /// probability (by default 0.5 and 0.25, the router's default).
    Probabilistic,
}

/// How requests pick their keys.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Popularity {
    /// Every inserted key equally likely.
    Uniform,
    /// Key `i` (from 1) with probability ∝ 1/i^s (`--zipf-exponent`).
    Zipf,
}

/// How a darknet's nodes swap locations before the workload.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapMode {
    /// Sandberg's rule applied to the graph before the routers start (fast).
    Offline,
    /// The routers' own swap protocol over simulated links, one attempt per node
    /// every 10 virtual seconds on average, the same code as `veild --darknet`.
    Wire,
}

/// How requests choose their next hop.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// The closest peer to the key (latency factor 1.0).
    Greedy,
    /// The quickest peer within `--latency-factor` of the closest (the daemon's default).
    LatencyAware,
}

/// Everything that defines a run. Two runs with equal parameters give equal results.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Params {
    /// Number of nodes.
    pub nodes: usize,
    /// Number of requests.
    pub requests: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Graph.
    pub topology: Topology,
    /// Target links per node.
    pub degree: usize,
    /// Fraction of nodes that fail between inserts and requests.
    pub fail_fraction: f64,
    /// Fraction of nodes that leave (and later rejoin) during the requests.
    pub churn: f64,
    /// HTL policy.
    pub htl_policy: PolicyChoice,
    /// Probabilistic policy: chance that a link decrements at the maximum.
    pub decrement_at_max: f64,
    /// Probabilistic policy: chance that a link decrements at 1.
    pub decrement_at_one: f64,
    /// Maximum (and starting) HTL.
    pub max_htl: u8,
    /// Number of distinct blocks inserted (0: one per ten requests, 1..=10,000).
    pub keys: usize,
    /// Request popularity.
    pub popularity: Popularity,
    /// Zipf exponent.
    pub zipf_exponent: f64,
    /// Blocks each node's cache holds.
    pub cache_size: usize,
    /// Nodes each inserted block is stored on.
    pub replicas: u8,
    /// Documents: nodes each top and index block is stored on.
    pub index_replicas: u8,
    /// Documents of this many data blocks instead of lone blocks (0: lone blocks). The
    /// keys are then whole documents' blocks (top, index, data, checks), and requests
    /// fetch documents block by block.
    pub doc_blocks: usize,
    /// Sandberg swap attempts per node (darknet only).
    pub swaps_per_node: usize,
    /// How those attempts run (darknet only).
    pub swap_mode: SwapMode,
    /// Hash every block at every hop, as the daemon does, instead of the memo.
    pub full_verify: bool,
    /// Route the keys of real CHK blocks instead of hashed keys (as every run did
    /// before hashed keys became the default; `--full-verify` implies it).
    pub chk_keys: bool,
    /// Opennet: seed nodes that newcomers announce through.
    pub seeds: usize,
    /// Opennet: warm-up requests per node (on keys of their own) before the measured
    /// inserts and requests, during which path folding reshapes the network.
    pub warmup: usize,
    /// Virtual milliseconds between two requests (and two inserts); 0 for
    /// `10,000 / nodes`, which keeps each node's load the same at every size (about one
    /// request passing through a node every two virtual seconds).
    pub interval_ms: f64,
    /// The routers' anonymity walk: chance a node on a walk passes it on (0: no walk).
    pub walk_probability: f64,
    /// Darknet: friend-of-a-friend routing (neighbour lists), as `veild --darknet` runs.
    pub foaf: bool,
    /// Routes each insert leaves by (`RouterConfig::insert_routes`); `None` takes the
    /// daemon's default for the topology ([`Params::insert_routes`]).
    pub insert_routes: Option<u8>,
    /// Darknet: fraction of nodes that lie in swaps (the pitch-black attack,
    /// [`crate::topology::Attack`]; offline swapping).
    pub attackers: f64,
    /// Darknet: the core's pitch-black guard on swaps (on by default, as in the daemon).
    pub mitigation: bool,
    /// Darknet: the guard's bound (mean `ln` of the factor per link a swap may lengthen
    /// a side's own links by).
    pub max_side_loss: f64,
    /// Link latencies.
    pub latency_model: crate::latency::LatencyModel,
    /// Next-hop choice for requests.
    pub routing: Routing,
    /// Latency-aware routing's factor (the router's `latency_factor`).
    pub factor: f64,
    /// Latency-aware routing's progress weight (the router's
    /// `latency_progress_weight`).
    pub progress_weight: f64,
}

impl Params {
    /// The routers' `latency_factor`: 1.0 for greedy routing.
    pub fn latency_factor(&self) -> f64 {
        match self.routing {
            Routing::Greedy => 1.0,
            Routing::LatencyAware => self.factor,
        }
    }

    /// Routes each insert leaves by: as asked, else the daemon's default (one per
    /// replica in a darknet, as `veild --darknet`; one elsewhere).
    pub fn insert_routes(&self) -> u8 {
        self.insert_routes
            .unwrap_or(if self.topology == crate::topology::Topology::Darknet {
                veil_proto::router::DARKNET_INSERT_ROUTES
            } else {
                1
            })
    }

    /// The pitch-black guard the swaps run with.
    pub fn guard(&self) -> Option<f64> {
        self.mitigation.then_some(self.max_side_loss)
    }

    /// Defaults for everything but the size.
    pub fn new(nodes: usize, requests: usize, seed: u64) -> Params {
        Params {
            nodes,
            requests,
            seed,
            topology: Topology::SmallWorld,
            degree: 20,
            fail_fraction: 0.0,
            churn: 0.0,
            htl_policy: PolicyChoice::Probabilistic,
            decrement_at_max: 0.5,
            decrement_at_one: 0.25,
            max_htl: Htl::DEFAULT_MAX.0,
            keys: 0,
            popularity: Popularity::Uniform,
            zipf_exponent: 1.0,
            cache_size: 100,
            replicas: veil_proto::router::DEFAULT_REPLICAS,
            index_replicas: veil_proto::router::DEFAULT_INDEX_REPLICAS,
            doc_blocks: 0,
            swaps_per_node: 50,
            swap_mode: SwapMode::Offline,
            full_verify: false,
            chk_keys: false,
            seeds: 3,
            warmup: 20,
            interval_ms: 0.0,
            walk_probability: 0.0,
            foaf: true,
            insert_routes: None,
            attackers: 0.0,
            mitigation: true,
            max_side_loss: veil_proto::swap::DEFAULT_MAX_SIDE_LOSS,
            latency_model: crate::latency::LatencyModel::Internet,
            routing: Routing::LatencyAware,
            factor: veil_proto::router::DEFAULT_LATENCY_FACTOR,
            progress_weight: veil_proto::router::DEFAULT_LATENCY_PROGRESS_WEIGHT,
        }
    }

    /// The number of keys actually inserted (with documents: whole documents' blocks,
    /// the most that fit `--keys`, at least one document).
    pub fn key_count(&self) -> usize {
        let keys = if self.keys > 0 {
            self.keys
        } else {
            (self.requests / 10).clamp(1, 10_000)
        };
        match self.layout() {
            Some(l) => (keys / l.blocks()).max(1) * l.blocks(),
            None => keys,
        }
    }

    /// The document layout, with `--doc-blocks`.
    pub fn layout(&self) -> Option<crate::layout::DocLayout> {
        (self.doc_blocks > 0).then(|| crate::layout::DocLayout::new(self.doc_blocks))
    }

    /// Nodes the block with index `key` is to be stored on.
    pub fn replicas_for(&self, key: usize) -> u8 {
        use crate::layout::Role;
        match self.layout().map(|l| l.role(key % l.blocks())) {
            Some(Role::Top | Role::Root | Role::Index(_)) => self.index_replicas,
            _ => self.replicas,
        }
    }

    /// Opennet warm-up requests in all.
    pub fn warmup_requests(&self) -> usize {
        if self.topology == Topology::Opennet {
            self.warmup.saturating_mul(self.nodes)
        } else {
            0
        }
    }

    /// Distinct keys the opennet warm-up requests (one per ten warm-up requests,
    /// between 1 and 10,000).
    pub fn warmup_keys(&self) -> usize {
        let w = self.warmup_requests();
        if w == 0 {
            0
        } else {
            (w / 10).clamp(1, 10_000)
        }
    }

    /// The routers' HTL policy.
    pub fn router_policy(&self) -> HtlPolicy {
        match self.htl_policy {
            PolicyChoice::Always => HtlPolicy::Always,
            PolicyChoice::Probabilistic => HtlPolicy::Probabilistic {
                decrement_at_max: self.decrement_at_max,
                decrement_at_one: self.decrement_at_one,
            },
        }
    }

    /// Virtual nanoseconds between two requests.
    pub fn interval_nanos(&self) -> u64 {
        let ms = if self.interval_ms > 0.0 {
            self.interval_ms
        } else {
            10_000.0 / self.nodes.max(1) as f64
        };
        ((ms * 1e6) as u64).max(1)
    }

    /// Checks the values a user may get wrong, with one plain line each.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        self.check().map_err(InvalidParams)
    }

    fn check(&self) -> Result<(), String> {
        if self.nodes < 2 {
            return Err("--nodes must be at least 2".into());
        }
        if self.swap_mode == SwapMode::Wire && self.topology != Topology::Darknet {
            return Err("--swap-mode wire needs --topology darknet".into());
        }
        if self.max_side_loss.is_nan() || self.max_side_loss <= 0.0 {
            return Err("--max-side-loss must be above 0".into());
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err("--latency-factor must be at least 1 (1 is greedy routing)".into());
        }
        if !(self.progress_weight.is_finite() && self.progress_weight >= 0.0) {
            return Err("--progress-weight must be a non-negative number".into());
        }
        if !(0.0..1.0).contains(&self.attackers) {
            return Err("--attackers must be at least 0 and below 1".into());
        }
        if self.attackers > 0.0
            && (self.topology != Topology::Darknet || self.swap_mode != SwapMode::Offline)
        {
            return Err("--attackers needs --topology darknet with offline swapping".into());
        }
        if self.nodes > u32::MAX as usize / 2 {
            return Err("--nodes is too large".into());
        }
        if !(0.0..1.0).contains(&self.fail_fraction) {
            return Err("--fail-fraction must be in [0, 1)".into());
        }
        if !(0.0..=1.0).contains(&self.churn) {
            return Err("--churn must be in [0, 1]".into());
        }
        if self.degree == 0 || self.degree >= self.nodes {
            return Err(format!(
                "--degree ({}) must be between 1 and --nodes - 1 ({}): pass a smaller --degree",
                self.degree,
                self.nodes - 1
            ));
        }
        if self.max_htl == 0 {
            return Err("--max-htl must be at least 1".into());
        }
        if !(self.zipf_exponent >= 0.0 && self.zipf_exponent.is_finite()) {
            return Err("--zipf-exponent must be a non-negative number".into());
        }
        if !(self.interval_ms >= 0.0 && self.interval_ms.is_finite()) {
            return Err("--interval-ms must be a non-negative number".into());
        }
        for (name, p) in [
            ("--decrement-at-max", self.decrement_at_max),
            ("--decrement-at-one", self.decrement_at_one),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability in [0, 1]"));
            }
        }
        if !(0.0..1.0).contains(&self.walk_probability) {
            return Err("--walk-probability must be in [0, 1)".into());
        }
        if self.seeds == 0 || self.seeds > self.nodes {
            return Err("--seeds must be between 1 and the number of nodes".into());
        }
        for (name, r) in [
            ("--replicas", self.replicas),
            ("--index-replicas", self.index_replicas),
        ] {
            if r == 0 || r > veil_proto::message::MAX_REPLICAS {
                return Err(format!(
                    "{name} must be between 1 and {}",
                    veil_proto::message::MAX_REPLICAS
                ));
            }
        }
        let most = crate::layout::DocLayout::SEGMENT * crate::layout::DocLayout::FANOUT;
        if self.doc_blocks > most {
            return Err(format!("--doc-blocks must be at most {most}"));
        }
        if self.cache_size == 0 {
            return Err("--cache-size must be at least 1".into());
        }
        // Virtual time is u64 nanoseconds: the whole workload must fit, with room left
        // for the settling minute and the requests' own timeouts.
        let steps = self.key_count() as u128
            + self.requests as u128
            + 1_000 * self.nodes as u128
            + self.warmup as u128 * self.nodes as u128
            + 2;
        if steps * u128::from(self.interval_nanos()) > u128::from(u64::MAX / 4) {
            return Err(
                "--interval-ms times the number of requests and keys is too long \
                        for the simulated clock (about 146 years)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_longer_than_the_clock_is_refused() {
        let mut p = Params::new(20, 5, 1);
        p.degree = 4;
        assert_eq!(p.validate(), Ok(()));
        p.interval_ms = 1e300;
        assert!(p.validate().unwrap_err().0.contains("--interval-ms"));
        p.interval_ms = 1e9;
        p.requests = 1_000_000;
        assert!(p.validate().is_err());
        p.interval_ms = 1000.0;
        assert_eq!(p.validate(), Ok(()));
    }
}

/// A run's parameters are out of range; the message names the flag and what it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidParams(pub String);
