//! `veild testnet`: a whole Veil network on one machine, for newcomers and tests.
//!
//! It starts N real nodes in this process, each with its own peer listener, API and data
//! directory `DIR/node-I`, all on 127.0.0.1 with ports from the OS. Nodes sit evenly
//! round the ring (offset by the seed) and link as a seeded Kleinberg small world: ring
//! neighbours plus long links with probability falling as 1/distance
//! ([`veil_proto::topology::small_world`]). [`Testnet::start`] returns once every link is
//! up, awaited on each node's peer-list watch channel, never by polling.

use crate::{Config, Node, NodeError, NodeHandle};
use std::path::PathBuf;
use std::time::Duration;
use veil_proto::topology;

/// What network to start.
#[derive(Debug, Clone)]
pub struct TestnetOptions {
    /// How many nodes.
    pub nodes: usize,
    /// Parent of the nodes' data directories `node-0`, `node-1`, ...
    pub dir: PathBuf,
    /// Seed of the locations and links.
    pub seed: u64,
    /// Ring neighbours each side.
    pub near: usize,
    /// Long links drawn per node.
    pub long: usize,
    /// A template for every node's config; data dir, addresses and location are set per
    /// node.
    pub template: Config,
    /// How long to wait for every link before giving up.
    pub link_timeout: Duration,
    /// Opennet instead of wiring: every node knows only node 0 as its seed and finds
    /// its peers by announcement; [`Testnet::start`] waits until each has
    /// `min(min_peers, nodes - 1)` of them... or at least a few.
    pub opennet: bool,
}

impl TestnetOptions {
    /// `nodes` nodes under `dir`, with about six peers each.
    pub fn new(nodes: usize, dir: PathBuf, seed: u64) -> TestnetOptions {
        TestnetOptions {
            nodes,
            dir,
            seed,
            near: 2,
            long: 1,
            template: Config {
                // A wired testnet keeps exactly the links it was given.
                opennet: false,
                ..Config::default()
            },
            link_timeout: Duration::from_secs(30),
            opennet: false,
        }
    }
}

/// Why a testnet could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    /// Fewer than two nodes asked for.
    #[error("a testnet needs at least 2 nodes, got {0}")]
    TooFew(usize),
    /// A node failed to start.
    #[error("node-{index}: {source}")]
    Node {
        /// Which node.
        index: usize,
        /// Why.
        source: NodeError,
    },
    /// Links did not all come up in time.
    #[error("node-{index} has {have} of its {want} links after {secs} s")]
    LinksTimeout {
        /// Which node.
        index: usize,
        /// Links up.
        have: usize,
        /// Links expected.
        want: usize,
        /// Seconds waited.
        secs: u64,
    },
}

/// A running testnet.
#[derive(Debug)]
pub struct Testnet {
    /// The nodes, `node-I` at index I.
    pub nodes: Vec<NodeHandle>,
    /// The links, as pairs of node indices.
    pub edges: Vec<(usize, usize)>,
    /// The options it was started with.
    pub options: TestnetOptions,
}

/// The data directory of node `index` under `dir`.
pub fn node_dir(dir: &std::path::Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}"))
}

impl Testnet {
    /// Starts the nodes, links them and waits until every link is up.
    pub async fn start(options: TestnetOptions) -> Result<Testnet, TestnetError> {
        let n = options.nodes;
        if n < 2 {
            return Err(TestnetError::TooFew(n));
        }
        let locations = topology::evenly_spaced(n, options.seed);
        let mut nodes: Vec<NodeHandle> = Vec::with_capacity(n);
        for (index, loc) in locations.iter().enumerate() {
            let mut config = node_config(&options, index, loc.as_fraction());
            if options.opennet {
                config.opennet = true;
                if let Some(seed) = nodes.first() {
                    config.seed_nodes = vec![seed.address()];
                }
            }
            let node = Node::start(config)
                .await
                .map_err(|source| TestnetError::Node { index, source })?;
            nodes.push(node);
        }
        if options.opennet {
            let net = Testnet {
                nodes,
                edges: Vec::new(),
                options,
            };
            net.wait_opennet().await?;
            return Ok(net);
        }
        let edges = topology::small_world(n, options.near, options.long, options.seed);
        for &(a, b) in &edges {
            nodes[a].connect(nodes[b].address());
        }
        let net = Testnet {
            nodes,
            edges,
            options,
        };
        net.wait_linked().await?;
        Ok(net)
    }

    /// How many links each node should have.
    pub fn degrees(&self) -> Vec<usize> {
        topology::adjacency(self.nodes.len(), &self.edges)
            .iter()
            .map(Vec::len)
            .collect()
    }

    /// Waits until every node has all its links up.
    pub async fn wait_linked(&self) -> Result<(), TestnetError> {
        let timeout = self.options.link_timeout;
        for (index, (node, want)) in self.nodes.iter().zip(self.degrees()).enumerate() {
            let mut rx = node.watch_peers();
            let waited = tokio::time::timeout(timeout, rx.wait_for(|p| p.len() >= want)).await;
            if !matches!(waited, Ok(Ok(_))) {
                return Err(TestnetError::LinksTimeout {
                    index,
                    have: node.peers().len(),
                    want,
                    secs: timeout.as_secs(),
                });
            }
        }
        Ok(())
    }

    /// The routable peers each opennet node should reach before the net counts as up.
    pub fn opennet_target(&self) -> usize {
        let c = &self.options.template;
        c.effective_min_peers()
            .min(self.nodes.len() - 1)
            .min(c.max_peers * 5 / 8)
            .max(1)
    }

    /// Waits until every opennet node has [`Testnet::opennet_target`] routable peers.
    pub async fn wait_opennet(&self) -> Result<(), TestnetError> {
        let want = self.opennet_target();
        let timeout = self.options.link_timeout;
        for (index, node) in self.nodes.iter().enumerate() {
            let mut rx = node.watch_peers();
            let enough = |p: &std::sync::Arc<Vec<crate::PeerInfo>>| {
                p.iter().filter(|p| p.routable).count() >= want
            };
            let waited = tokio::time::timeout(timeout, rx.wait_for(enough)).await;
            if !matches!(waited, Ok(Ok(_))) {
                return Err(TestnetError::LinksTimeout {
                    index,
                    have: node.peers().iter().filter(|p| p.routable).count(),
                    want,
                    secs: timeout.as_secs(),
                });
            }
        }
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(&self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
    }
}

/// Node `index`'s config: the template with its own data directory, loopback ports from
/// the OS, and its place on the ring.
pub fn node_config(options: &TestnetOptions, index: usize, location: f64) -> Config {
    Config {
        data_dir: node_dir(&options.dir, index),
        listen: "127.0.0.1:0".parse().expect("literal address"),
        api: "127.0.0.1:0".parse().expect("literal address"),
        location: Some(location),
        peers: Vec::new(),
        ..options.template.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_linked_and_routes() {
        let dir = tempfile::tempdir().unwrap();
        let net = Testnet::start(TestnetOptions::new(5, dir.path().to_path_buf(), 3))
            .await
            .unwrap();
        for (node, want) in net.nodes.iter().zip(net.degrees()) {
            assert!(want >= 2);
            assert!(node.peers().len() >= want);
            assert!(node.data_dir().join("api").exists());
        }
        let (block, keys) = veil_proto::block::encode(b"testnet").unwrap();
        net.nodes[0]
            .insert(keys.routing, block, None, None)
            .await
            .unwrap();
        let got = net.nodes[3].fetch(keys.routing, None).await.unwrap();
        assert_eq!(got.decrypt(&keys.data).unwrap(), b"testnet");
        net.shutdown().await;
        assert!(matches!(
            Testnet::start(TestnetOptions::new(1, dir.path().to_path_buf(), 3)).await,
            Err(TestnetError::TooFew(1))
        ));
    }
}
