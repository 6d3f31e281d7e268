//! `veild testnet`: a whole Veil network on one machine, for newcomers and tests.
//!
//! It starts N real nodes in this process, each with its own peer listener, API and data
//! directory `DIR/node-I`, all on 127.0.0.1 with ports from the OS. Nodes sit evenly
//! round the ring (offset by the seed) and link as a seeded Kleinberg small world: ring
//! neighbours plus long links with probability falling as 1/distance
//! ([`veil_proto::topology::small_world`]). [`Testnet::start`] returns once every link is
//! up, awaited on each node's peer-list watch channel, never by polling.
//!
//! With `darknet`, the same small world is a friend graph over a *hidden* ring (node I's
//! hidden place is I/N: Sandberg's model of a social network, whose links follow a
//! geography nobody reveals); every node is dealt a random location instead (a seeded
//! shuffle of evenly spaced ones), links only to its friends (`darknet = true`, each
//! told its friends' keys and addresses before it starts) and swaps locations until
//! the ring order follows the hidden one.

use crate::identity::{Identity, IdentityError};
use crate::{Config, Node, NodeError, NodeHandle};
use std::path::PathBuf;
use std::time::Duration;
use veil_proto::message::PeerAddress;
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
    /// Darknet: the small world is a friend graph over a hidden ring, locations are
    /// dealt at random, and nodes link only to their friends and swap (module docs).
    pub darknet: bool,
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
            darknet: false,
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
    /// A darknet node's identity could not be made ahead of its start.
    #[error("node-{index}: {source}")]
    Identity {
        /// Which node.
        index: usize,
        /// Why.
        source: IdentityError,
    },
    /// No free loopback ports for a darknet's nodes.
    #[error("no free loopback ports for the darknet's nodes: {0}")]
    Ports(std::io::Error),
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
        if options.darknet {
            return Testnet::start_darknet(options).await;
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

    /// A darknet: identities and ports first, so every node starts knowing its
    /// friends, then the nodes, then every friend link up.
    async fn start_darknet(options: TestnetOptions) -> Result<Testnet, TestnetError> {
        use rand::SeedableRng;
        let n = options.nodes;
        let edges = topology::small_world(n, options.near, options.long, options.seed);
        let friends = topology::adjacency(n, &edges);
        let mut keys = Vec::with_capacity(n);
        for index in 0..n {
            let dir = node_dir(&options.dir, index);
            let key = crate::identity::ensure_data_dir(&dir)
                .and_then(|()| Identity::load_or_create(&dir))
                .map_err(|source| TestnetError::Identity { index, source })?
                .public();
            keys.push(key);
        }
        let ports = free_loopback_ports(n).map_err(TestnetError::Ports)?;
        let addr = |i: usize| PeerAddress {
            key: keys[i],
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], ports[i])),
        };
        // Locations dealt at random: the ring order has nothing to do with the friends.
        let mut locations = topology::evenly_spaced(n, options.seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed ^ 0xDA27);
        rand::seq::SliceRandom::shuffle(locations.as_mut_slice(), &mut rng);
        let mut nodes = Vec::with_capacity(n);
        for (index, loc) in locations.iter().enumerate() {
            let mut config = node_config(&options, index, loc.as_fraction());
            config.listen = addr(index).addr;
            config.darknet = true;
            config.opennet = false;
            config.peers = friends[index].iter().map(|&j| addr(j)).collect();
            let node = Node::start(config)
                .await
                .map_err(|source| TestnetError::Node { index, source })?;
            nodes.push(node);
        }
        let net = Testnet {
            nodes,
            edges,
            options,
        };
        net.wait_linked().await?;
        Ok(net)
    }

    /// Mean ring distance across the links, as a fraction of the ring: a darknet's
    /// shrinks as swapping makes the ring order follow the friend graph.
    pub fn mean_link_length(&self) -> f64 {
        if self.edges.is_empty() {
            return 0.0;
        }
        let total: f64 = self
            .edges
            .iter()
            .map(|&(a, b)| {
                let (la, lb) = (self.nodes[a].location(), self.nodes[b].location());
                la.distance(lb).as_fraction()
            })
            .sum();
        total / self.edges.len() as f64
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

/// `n` loopback ports that were free a moment ago (bound together, then released).
fn free_loopback_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<_, _>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
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
    async fn a_darknet_testnet_links_friends_only_and_swaps_towards_its_hidden_ring() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = TestnetOptions::new(12, dir.path().to_path_buf(), 5);
        options.darknet = true;
        options.template.swap_interval_ms = 100;
        let net = Testnet::start(options).await.unwrap();
        let friends = topology::adjacency(12, &net.edges);
        for (i, node) in net.nodes.iter().enumerate() {
            let mut have: Vec<_> = node.peers().iter().map(|p| p.key).collect();
            let mut want: Vec<_> = friends[i].iter().map(|&j| net.nodes[j].key()).collect();
            have.sort_unstable_by_key(|k| k.0);
            want.sort_unstable_by_key(|k| k.0);
            assert_eq!(have, want, "node-{i} links to its friends and nobody else");
        }
        let dealt = net.mean_link_length();
        // Swaps happen on the nodes' own timers (ten a second each): wait, bounded,
        // until the links are shorter than dealt. (Twelve nodes settle near their best
        // order quickly, and Metropolis swaps keep them moving round it, so how much
        // shorter varies from run to run; without swapping they never change.)
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while net.mean_link_length() >= dealt {
            assert!(
                tokio::time::Instant::now() < deadline,
                "mean link length {} after 30 s, dealt {dealt}",
                net.mean_link_length()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut moved = 0;
        for node in &net.nodes {
            moved += node.router_stats().await.unwrap().swap.moved;
        }
        assert!(moved > 0);
        net.shutdown().await;
    }

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
