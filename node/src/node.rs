//! [`Node`] starts a node from a [`Config`]; [`NodeHandle`] is how the API, the gateway,
//! tests and `main` talk to a running one and stop it.
//!
//! Start-up order: data directory, identity and token; the store; both listeners (so a
//! port clash fails before anything runs); the driver, the accept loop, the dialers and
//! the API server; and last the `address` and `api` files, which tell scripts the node
//! is ready.

use crate::config::Config;
use crate::driver::{Command, Driver, Inputs};
use crate::identity::{self, Identity};
use crate::link::LinkParams;
use crate::metrics::Counters;
use crate::peers::PeerInfo;
use crate::peers::{self, LinkFactory};
use crate::store::{Placement, Store, StoreError, Usage};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::router::{
    InsertFailure, OpennetConfig, RequestFailure, RouterConfig, RouterStats, SwapConfig,
};
use veil_proto::{Block, Hello, Htl, Location, PeerAddress, Router, RoutingKey};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The data directory, identity or token.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The store could not be opened.
    #[error("opening the store")]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what})")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing the `address` or `api` file failed.
    #[error("writing {0} in the data directory: {1}")]
    ReadyFile(&'static str, std::io::Error),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Why a fetch or insert did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The block was not found within the HTL.
    #[error("data not found")]
    DataNotFound,
    /// No route: too few peers, or all tried.
    #[error("route not found: no peer could take it (does the node have peers?)")]
    RouteNotFound,
    /// Every peer tried was overloaded.
    #[error("peers overloaded")]
    Overloaded,
    /// The network did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The block does not match its routing key.
    #[error("block does not match its routing key")]
    BadBlock,
    /// The local store failed.
    #[error("store: {0}")]
    Store(StoreError),
    /// The node is shutting down.
    #[error("node is shutting down")]
    Stopped,
    /// Another block is already published under this signed key; the first stays.
    #[error("collision: another block is already published under this key")]
    Collision,
}

impl From<RequestFailure> for RequestError {
    fn from(f: RequestFailure) -> RequestError {
        match f {
            RequestFailure::DataNotFound => RequestError::DataNotFound,
            RequestFailure::RouteNotFound => RequestError::RouteNotFound,
            RequestFailure::Overloaded => RequestError::Overloaded,
            RequestFailure::TimedOut => RequestError::Timeout,
            _ => RequestError::RouteNotFound,
        }
    }
}

impl From<InsertFailure> for RequestError {
    fn from(f: InsertFailure) -> RequestError {
        match f {
            InsertFailure::RouteNotFound => RequestError::RouteNotFound,
            InsertFailure::Overloaded => RequestError::Overloaded,
            InsertFailure::TimedOut => RequestError::Timeout,
            InsertFailure::Collision => RequestError::Collision,
            _ => RequestError::RouteNotFound,
        }
    }
}

/// How an insert ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct InsertOutcome {
    /// Whether the insert was routed to peers (false for HTL 0).
    pub routed: bool,
    /// The route ran out of peers before HTL ran out (small network).
    pub route_exhausted: bool,
    /// The node has no peers: the block is kept here only, and inserted into the
    /// network once peers come (it is remembered in `pending_inserts`).
    pub local_only: bool,
}

/// A node's state as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The node key (base64url).
    pub identity: String,
    /// The peer address, as `--peer` takes it.
    pub address: String,
    /// The ring location as a fraction in [0, 1).
    pub location: f64,
    /// The ring location as a u64.
    pub location_u64: u64,
    /// Connected peers.
    pub peers: usize,
    /// Store and cache use.
    pub store: Usage,
    /// Router counters.
    pub requests: RequestCounters,
    /// Bytes all links moved.
    pub traffic: TrafficCounters,
    /// What the node refused or dropped to defend itself.
    pub defence: DefenceCounters,
}

/// The defence counters of [`Status`]: what load management, the failure table and
/// connection admission refused, and the peers dropped for breaking the rules.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DefenceCounters {
    /// Peers' requests and inserts rejected because the node (or the peer's share) was
    /// full.
    pub rejected_overload: u64,
    /// Requests rejected because they had already passed here (routing loops).
    pub rejected_loop: u64,
    /// Requests answered at once from the failure table (the key failed here recently).
    pub recently_failed: u64,
    /// Peers dropped for flooding: they kept sending after overload rejections.
    pub flooders: u64,
    /// Protocol violations the router saw (blocks failing verification, replies to
    /// nothing asked); each drops the peer.
    pub misbehaviour: u64,
    /// Links closed on an error: a frame that does not decrypt, an undecodable message,
    /// a peer gone silent.
    pub link_errors: u64,
    /// Peers banned for a while after being dropped.
    pub peers_banned: u64,
    /// Unfinished peer handshakes closed to make room for a newcomer.
    pub handshakes_evicted: u64,
    /// Idle API connections closed to make room for a newcomer.
    pub api_connections_evicted: u64,
}

/// The traffic counters of [`Status`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TrafficCounters {
    /// Bytes written to peers (frames, prefixes and tags; handshakes excluded).
    pub bytes_sent: u64,
    /// Bytes read from peers.
    pub bytes_received: u64,
}

/// The request counters of [`Status`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RequestCounters {
    /// Requests received from peers.
    pub received: u64,
    /// Peers' requests answered from the long-term store.
    pub served_from_store: u64,
    /// Peers' requests answered from the cache.
    pub served_from_cache: u64,
    /// Request messages sent to peers.
    pub forwarded: u64,
    /// Local requests started.
    pub local: u64,
    /// Local requests answered from this node's own store or cache.
    pub local_hits: u64,
    /// Local requests that found their block.
    pub local_succeeded: u64,
    /// Inserts received from peers.
    pub inserts_received: u64,
    /// Insert messages sent.
    pub inserts_forwarded: u64,
    /// Local inserts routed.
    pub local_inserts: u64,
    /// Local inserts that completed.
    pub local_inserts_succeeded: u64,
    /// Per-hop timeouts.
    pub timeouts: u64,
    /// Blocks handed to the cache.
    pub cached: u64,
    /// Blocks handed to the long-term store.
    pub stored: u64,
    /// Blocks from peers refused for failing verification (wrong hash, forged signature).
    pub bad_blocks: u64,
    /// Inserts refused because another block holds their signed key.
    pub collisions: u64,
}

impl From<&RouterStats> for RequestCounters {
    fn from(r: &RouterStats) -> RequestCounters {
        RequestCounters {
            received: r.requests_received,
            served_from_store: r.served_from_store,
            served_from_cache: r.served_from_cache,
            forwarded: r.requests_forwarded,
            local: r.local_requests,
            local_hits: r.local_hits,
            local_succeeded: r.local_requests_succeeded,
            inserts_received: r.inserts_received,
            inserts_forwarded: r.inserts_forwarded,
            local_inserts: r.local_inserts,
            local_inserts_succeeded: r.local_inserts_succeeded,
            timeouts: r.timeouts,
            cached: r.cached,
            stored: r.stored,
            bad_blocks: r.bad_blocks,
            collisions: r.collisions,
        }
    }
}

/// File in the data directory listing blocks stored while the node had no peers, one
/// routing key a line; they are inserted once peers come.
pub const PENDING_FILE: &str = "pending_inserts";

/// Capacity of the driver's inbox of link messages (see where it is made).
const INBOX: usize = 64;

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

struct Shared {
    config: Config,
    identity: Identity,
    token: String,
    address: PeerAddress,
    api_addr: SocketAddr,
    /// The ring location: fixed, except on a darknet node, whose driver moves it when it
    /// swaps.
    location: Arc<std::sync::atomic::AtomicU64>,
    store: Store,
    commands: mpsc::Sender<Command>,
    peers: watch::Receiver<Arc<Vec<PeerInfo>>>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Option<JoinSet<()>>>,
    factory: LinkFactory,
    /// Blocks kept while alone, to insert once there are peers, with their replicas.
    pending: Mutex<std::collections::BTreeMap<RoutingKey, Option<u8>>>,
    pending_changed: tokio::sync::Notify,
    /// The last hour, sampled for the status page.
    history: crate::history::History,
}

/// A running node. Cheap to clone; [`NodeHandle::shutdown`] stops it.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("address", &self.shared.address)
            .finish()
    }
}

/// Binds `addr` and reads back the address bound (port 0 picks one).
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), NodeError> {
    let err = |source| NodeError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

impl Node {
    /// Starts a node: binds its listeners, spawns its tasks on the current tokio runtime
    /// and writes the `address` and `api` files. Returns once the node is ready.
    pub async fn start(config: Config) -> Result<NodeHandle, NodeError> {
        config.validate()?;
        let dir = config.data_dir.clone();
        identity::ensure_data_dir(&dir)?;
        let id = Identity::load_or_create(&dir)?;
        let token = identity::load_or_create_token(&dir)?;
        let (peer_listener, listen) = bind("peers", config.listen).await?;
        let (api_listener, api_addr) = bind("api", config.api).await?;
        // Listeners first: a port clash fails before the store is opened.
        let store = {
            let dir = dir.clone();
            let (s, c) = (config.store_bytes, config.cache_bytes);
            tokio::task::spawn_blocking(move || Store::open(&dir, s, c))
                .await
                .map_err(|e| StoreError::io(std::io::Error::other(e)))??
        };
        // A wildcard listen address is not dialable; name loopback in our own address and
        // let operators publish their public address themselves.
        let mut advertised = listen;
        if advertised.ip().is_unspecified() {
            advertised.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let address = PeerAddress {
            key: id.public(),
            addr: advertised,
        };
        let location = config
            .location_u64()
            .map(Location)
            .unwrap_or_else(|| crate::driver::default_location(&id.public()));

        let mut router = Router::new(
            RouterConfig {
                max_htl: Htl(config.max_htl),
                hop_timeout: config.hop_timeout(),
                replicas: config.replicas,
                rng_seed: rand::random(),
                opennet: OpennetConfig {
                    enabled: config.opennet_on(),
                    min_peers: config.effective_min_peers(),
                    max_peers: config.max_peers,
                    ..OpennetConfig::default()
                },
                swap: SwapConfig {
                    enabled: config.darknet,
                    interval: std::time::Duration::from_millis(config.swap_interval_ms),
                    ..SwapConfig::default()
                },
                walk_probability: config.walk_probability,
                latency_factor: config.latency_factor,
                // A darknet routes friend-of-a-friend too (docs/routing.md).
                neighbour_lists: config.darknet,
                insert_routes: config.effective_insert_routes(),
                ..RouterConfig::default()
            },
            location,
        );
        router.set_address(address);
        let counters = Arc::new(Counters::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // Links' messages to the driver. Small on purpose: once it is full, every link's
        // reader waits its turn for a slot (tokio serves waiting senders in order), so the
        // driver takes one message from each busy link in turn, and a flooding peer's
        // backlog queues in its own socket instead of ahead of everyone else's messages.
        let (link_tx, link_rx) = mpsc::channel(INBOX);
        let (new_tx, new_rx) = mpsc::channel(64);
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (failed_tx, failed_rx) = mpsc::channel(64);
        let (peers_tx, peers_rx) = watch::channel(Arc::new(Vec::new()));
        let factory = LinkFactory {
            identity: id.clone(),
            hello: Hello {
                version: PROTOCOL_VERSION,
                location,
                listen_port: listen.port(),
            },
            params: LinkParams {
                keepalive: config.keepalive(),
                dead_after: config.dead_after(),
                handshake_timeout: config.handshake_timeout(),
                renew_after: (config.link_renew_ms > 0)
                    .then(|| std::time::Duration::from_millis(config.link_renew_ms)),
            },
            new_links: new_tx,
            counters: counters.clone(),
            peers: peers_rx.clone(),
        };
        let opennet = config.opennet_on().then(|| crate::driver::Opennet {
            factory: factory.clone(),
            failed_tx: failed_tx.clone(),
            data_dir: dir.clone(),
            shutdown: shutdown_rx.clone(),
            saved: String::new(),
        });
        let driver = Driver::new(
            router,
            store.clone(),
            id.public(),
            config.max_peers,
            link_tx,
            peers_tx,
            counters.clone(),
            opennet,
        );
        let location_cell = Arc::new(std::sync::atomic::AtomicU64::new(location.0));
        let driver = driver.publish_location(location_cell.clone());
        let driver = if config.darknet {
            driver.friends_only(config.peers.iter().map(|p| p.key))
        } else {
            driver
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(driver.run(Inputs {
            links: link_rx,
            new_links: new_rx,
            commands: cmd_rx,
            failed: failed_rx,
            shutdown: shutdown_rx.clone(),
        }));
        if config.opennet_on() {
            // Rejoin through the peers of the last run, then the seeds if still short.
            for (peer, origin) in crate::driver::load_known_peers(&dir) {
                if peer.key == id.public() || config.peers.iter().any(|p| p.key == peer.key) {
                    continue;
                }
                tasks.spawn(peers::dial_once(
                    peer,
                    origin,
                    factory.clone(),
                    failed_tx.clone(),
                    shutdown_rx.clone(),
                ));
            }
            tasks.spawn(peers::seed_dialer(
                config.seed_nodes.clone(),
                config.effective_min_peers(),
                factory.clone(),
                std::time::Duration::from_millis(config.redial_min_ms),
                std::time::Duration::from_millis(config.redial_max_ms),
                shutdown_rx.clone(),
            ));
        }
        tasks.spawn(peers::accept_loop(
            peer_listener,
            factory.clone(),
            shutdown_rx.clone(),
        ));
        let handle = NodeHandle {
            shared: Arc::new(Shared {
                config,
                identity: id,
                token,
                address,
                api_addr,
                location: location_cell,
                store,
                commands: cmd_tx,
                peers: peers_rx,
                counters,
                shutdown: shutdown_tx,
                tasks: Mutex::new(None),
                factory,
                pending: Mutex::new(load_pending(&dir)),
                pending_changed: tokio::sync::Notify::new(),
                history: crate::history::History::default(),
            }),
        };
        tasks.spawn(crate::history::sampler(handle.clone(), shutdown_rx.clone()));
        tasks.spawn(pending_inserter(handle.clone(), shutdown_rx.clone()));
        if !handle.config().keepalive_uris.is_empty() {
            tasks.spawn(keepalive_schedule(handle.clone(), shutdown_rx.clone()));
        }
        tasks.spawn(crate::api::serve(
            api_listener,
            handle.clone(),
            shutdown_rx.clone(),
        ));
        *handle.shared.tasks.lock().expect("tasks lock") = Some(tasks);
        for p in &handle.shared.config.peers {
            handle.connect(*p);
        }
        let ready = [
            (identity::ADDRESS_FILE, format!("{address}\n")),
            (identity::API_FILE, format!("{}\n", handle.api_url())),
        ];
        for (name, text) in ready {
            if let Err(e) = identity::write_atomic(&dir.join(name), text.as_bytes(), 0o644) {
                handle.shutdown().await;
                return Err(NodeError::ReadyFile(name, e));
            }
        }
        tracing::info!(address = %address, api = %handle.api_url(), "node ready");
        Ok(handle)
    }
}

impl NodeHandle {
    /// The last hour's samples, for the status page.
    pub(crate) fn history(&self) -> &crate::history::History {
        &self.shared.history
    }

    /// The node's peer address.
    pub fn address(&self) -> PeerAddress {
        self.shared.address
    }

    /// The node key.
    pub fn key(&self) -> veil_proto::NodeKey {
        self.shared.identity.public()
    }

    /// The ring location (a darknet node's moves as it swaps).
    pub fn location(&self) -> Location {
        Location(
            self.shared
                .location
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The API's socket address.
    pub fn api_addr(&self) -> SocketAddr {
        self.shared.api_addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:7401` (what the `api` file holds). An
    /// API listening on every address (`0.0.0.0`, `::`) is reached at loopback.
    pub fn api_url(&self) -> String {
        let mut addr = self.shared.api_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }

    /// The API token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.shared.config.data_dir.clone()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The connected peers now.
    pub fn peers(&self) -> Arc<Vec<PeerInfo>> {
        self.shared.peers.borrow().clone()
    }

    /// A watch on the connected peers: changes whenever a link comes up or goes down.
    pub fn watch_peers(&self) -> watch::Receiver<Arc<Vec<PeerInfo>>> {
        self.shared.peers.clone()
    }

    /// Deletes a block from this node's store and cache; whether it was held.
    pub async fn remove_block(&self, key: RoutingKey) -> Result<bool, RequestError> {
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || store.remove(&key))
            .await
            .map_err(|_| RequestError::Stopped)?
            .map_err(RequestError::Store)
    }

    /// Whether this node's store or cache holds the block.
    pub fn store_contains(&self, key: &RoutingKey) -> bool {
        self.shared.store.contains(key)
    }

    /// Store and cache use.
    pub fn store_usage(&self) -> Usage {
        self.shared.store.usage()
    }

    /// The shell's counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The router's counters.
    pub async fn router_stats(&self) -> Result<RouterStats, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Stats { reply: tx }).await?;
        rx.await.map_err(|_| RequestError::Stopped)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, RequestError> {
        let stats = self.router_stats().await?;
        let c = &self.shared.counters;
        let t = &c.traffic;
        Ok(Status {
            identity: self.key().to_string(),
            address: self.address().to_string(),
            location: self.location().as_fraction(),
            location_u64: self.location().0,
            peers: self.peers().iter().filter(|p| p.routable).count(),
            store: self.store_usage(),
            requests: RequestCounters::from(&stats),
            traffic: TrafficCounters {
                bytes_sent: t.sent.load(std::sync::atomic::Ordering::Relaxed),
                bytes_received: t.received.load(std::sync::atomic::Ordering::Relaxed),
            },
            defence: DefenceCounters {
                rejected_overload: stats.rejected_overload,
                rejected_loop: stats.rejected_loop,
                recently_failed: stats.recently_failed,
                flooders: stats.flooders,
                misbehaviour: stats.misbehaviour,
                link_errors: c.link_errors.get(),
                peers_banned: c.peers_banned.get(),
                handshakes_evicted: c.handshakes_evicted.get(),
                api_connections_evicted: c.api_connections_evicted.get(),
            },
        })
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> Result<String, RequestError> {
        let stats = self.router_stats().await?;
        Ok(crate::metrics::render(
            &self.shared.counters,
            &stats,
            &self.store_usage(),
            self.peers().iter().filter(|p| p.routable).count(),
        ))
    }

    async fn command(&self, cmd: Command) -> Result<(), RequestError> {
        self.shared
            .commands
            .send(cmd)
            .await
            .map_err(|_| RequestError::Stopped)
    }

    /// Fetches a block from the local store or cache, else from the network with `htl`
    /// (default and cap: the maximum). The block is verified.
    pub async fn fetch(&self, key: RoutingKey, htl: Option<Htl>) -> Result<Block, RequestError> {
        self.fetch_in(key, htl, None).await
    }

    /// As [`NodeHandle::fetch`], on the anonymity walk of `tunnel` (give every block of
    /// one download the same one; `None`: the node's own tunnel of the moment).
    pub async fn fetch_in(
        &self,
        key: RoutingKey,
        htl: Option<Htl>,
        tunnel: Option<u64>,
    ) -> Result<Block, RequestError> {
        let fetch = |reply| Command::Fetch {
            key,
            htl,
            tunnel,
            reply,
        };
        let mut fetched = self.ask(fetch).await?;
        if matches!(fetched, Err(RequestFailure::RouteNotFound)) {
            // As for inserts: the links may have changed under the route; one more try.
            fetched = self.ask(fetch).await?;
        }
        Ok(fetched?.block)
    }

    /// Sends the driver a command that answers on a oneshot, and waits for the answer
    /// within the request timeout.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.command(command(tx)).await?;
        match tokio::time::timeout(self.shared.config.request_timeout(), rx).await {
            Err(_) => Err(RequestError::Timeout),
            Ok(Err(_)) => Err(RequestError::Stopped),
            Ok(Ok(answer)) => Ok(answer),
        }
    }

    /// Verifies `block` against `key`, stores it durably in the long-term store, then
    /// routes it as an insert with `htl` (default: the maximum; 0: store only), to be
    /// stored on `replicas` nodes near the key (default: the config's `replicas`).
    /// Returns when the insert has finished.
    pub async fn insert(
        &self,
        key: RoutingKey,
        block: Block,
        htl: Option<Htl>,
        replicas: Option<u8>,
    ) -> Result<InsertOutcome, RequestError> {
        // A signed key already holding another block here: the first stays. (The index
        // answers the common case, a new key, without a read.)
        let held = if self.shared.store.contains(&key) {
            self.shared.store.get(&key).ok().flatten()
        } else {
            None
        };
        if let Some((held, _)) = held {
            if held != block && block.verify(&key).is_ok() {
                return Err(RequestError::Collision);
            }
        }
        // The store verifies the block before it takes it.
        self.shared
            .store
            .put(key, block.clone(), Placement::Store)
            .await
            .map_err(|e| match e {
                StoreError::Mismatch => {
                    self.shared.counters.api_bad_blocks.inc();
                    RequestError::BadBlock
                }
                e => RequestError::Store(e),
            })?;
        if htl == Some(Htl(0)) {
            return Ok(InsertOutcome {
                routed: false,
                route_exhausted: false,
                local_only: false,
            });
        }
        let alone = || !self.peers().iter().any(|p| p.routable);
        if alone() {
            return self.keep_for_later(key, replicas);
        }
        let mut result = self
            .ask(|reply| Command::Insert {
                key,
                block: block.clone(),
                htl,
                replicas,
                reply,
            })
            .await?;
        if matches!(result, Err(InsertFailure::RouteNotFound)) && !alone() {
            // Every peer tried went away or refused as a loop: on an opennet the links
            // change under a route (replacements, seeds let go), so try once more on
            // the links there are now.
            result = self
                .ask(|reply| Command::Insert {
                    key,
                    block,
                    htl,
                    replicas,
                    reply,
                })
                .await?;
        }
        match result {
            Ok(report) => Ok(InsertOutcome {
                routed: true,
                route_exhausted: report.route_exhausted,
                local_only: false,
            }),
            Err(InsertFailure::RouteNotFound) if alone() => self.keep_for_later(key, replicas),
            Err(e) => Err(e.into()),
        }
    }

    /// Notes a block stored but not yet inserted (no peers), for [`pending_inserter`].
    fn keep_for_later(
        &self,
        key: RoutingKey,
        replicas: Option<u8>,
    ) -> Result<InsertOutcome, RequestError> {
        let mut pending = self.shared.pending.lock().expect("pending lock");
        if pending.insert(key, replicas) != Some(replicas) {
            save_pending(&self.shared.config.data_dir, &pending)
                .map_err(|e| RequestError::Store(StoreError::io(e)))?;
        }
        self.shared.pending_changed.notify_one();
        Ok(InsertOutcome {
            routed: false,
            route_exhausted: false,
            local_only: true,
        })
    }

    /// Keeps `peer` connected from now on, as if it had been given with `--peer`:
    /// dials it, and redials with backoff whenever the link drops.
    pub fn connect(&self, peer: PeerAddress) {
        let c = &self.shared.config;
        let dialer = peers::dialer(
            peer,
            self.shared.factory.clone(),
            std::time::Duration::from_millis(c.redial_min_ms),
            std::time::Duration::from_millis(c.redial_max_ms),
            self.shared.shutdown.subscribe(),
        );
        if let Some(tasks) = self.shared.tasks.lock().expect("tasks lock").as_mut() {
            tasks.spawn(dialer);
        }
    }

    /// Whether shutdown has been requested.
    pub fn is_stopping(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    /// Stops the node: closes links and listeners, lets the API finish, commits the
    /// store. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let tasks = self.shared.tasks.lock().expect("tasks lock").take();
        if let Some(mut tasks) = tasks {
            while tasks.join_next().await.is_some() {}
        }
        let store = self.shared.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        // `address` and `api` mean "ready": a stopped node takes them back (a killed one
        // cannot; scripts and the CLI then find nobody listening).
        for name in [identity::ADDRESS_FILE, identity::API_FILE] {
            let _ = std::fs::remove_file(self.shared.config.data_dir.join(name));
        }
    }
}

/// Writes `pending_inserts`: one routing key a line.
/// One line per block: its routing key, then its replica count if the publisher chose
/// one.
fn save_pending(
    dir: &std::path::Path,
    pending: &std::collections::BTreeMap<RoutingKey, Option<u8>>,
) -> std::io::Result<()> {
    let text: String = pending
        .iter()
        .map(|(k, r)| match r {
            Some(r) => format!("{k} {r}\n"),
            None => format!("{k}\n"),
        })
        .collect();
    identity::write_atomic(&dir.join(PENDING_FILE), text.as_bytes(), 0o600)
}

/// The entries of `pending_inserts`; bad lines are skipped.
fn load_pending(dir: &std::path::Path) -> std::collections::BTreeMap<RoutingKey, Option<u8>> {
    let parse = |line: &str| {
        let mut words = line.split_whitespace();
        let key = words.next()?.parse().ok()?;
        let replicas = match words.next() {
            Some(r) => Some(r.parse().ok()?),
            None => None,
        };
        Some((key, replicas))
    };
    std::fs::read_to_string(dir.join(PENDING_FILE))
        .map(|t| t.lines().filter_map(parse).collect())
        .unwrap_or_default()
}

/// Keeps the config's `keepalive_uris` alive: a minute after start (or one interval, if
/// shorter), then every `keepalive_interval_ms`, the same pass as `veil keepalive`,
/// through this node.
async fn keepalive_schedule(node: NodeHandle, mut shutdown: watch::Receiver<bool>) {
    let every = std::time::Duration::from_millis(node.config().keepalive_interval_ms);
    let first = every.min(std::time::Duration::from_secs(60));
    let mut next = tokio::time::Instant::now() + first;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next += every;
        let uris = node.config().keepalive_uris.clone();
        for text in uris {
            // Checked when the config was loaded.
            let Ok(uri) = text.parse::<veil_proto::uri::Uri>() else {
                continue;
            };
            let pass = veil_client::keepalive(node.clone(), node.clone(), uri.keys, |_| {});
            let result = tokio::select! {
                _ = shutdown.changed() => return,
                r = pass => r,
            };
            match result {
                Ok(r) if r.lost > 0 => tracing::warn!(
                    uri = %text, blocks = r.blocks, missing = r.missing, lost = r.lost,
                    reinserted = r.reinserted, "keepalive: blocks lost for good"
                ),
                Ok(r) => tracing::info!(
                    uri = %text, blocks = r.blocks, missing = r.missing, late = r.late,
                    reinserted = r.reinserted, "keepalive pass done"
                ),
                Err(e) => tracing::warn!(uri = %text, error = %e, "keepalive failed"),
            }
        }
    }
}

/// Inserts the blocks a lone node kept, once it has peers: waits for a peer, routes
/// each block from the store, and forgets those that went out.
async fn pending_inserter(node: NodeHandle, mut shutdown: watch::Receiver<bool>) {
    let mut peers = node.watch_peers();
    loop {
        let empty = node.shared.pending.lock().expect("pending lock").is_empty();
        if empty {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = node.shared.pending_changed.notified() => continue,
            }
        }
        let has_peer = peers.wait_for(|l| l.iter().any(|p| p.routable));
        tokio::select! {
            _ = shutdown.changed() => return,
            r = has_peer => if r.is_err() { return },
        }
        let keys: Vec<(RoutingKey, Option<u8>)> = node
            .shared
            .pending
            .lock()
            .expect("pending lock")
            .iter()
            .map(|(k, r)| (*k, *r))
            .collect();
        let mut done = Vec::new();
        for (key, replicas) in keys {
            let block = match node.shared.store.get(&key) {
                Ok(Some((block, _))) => block,
                // Evicted or gone: nothing left to insert.
                _ => {
                    done.push(key);
                    continue;
                }
            };
            let sent = node
                .ask(|reply| Command::Insert {
                    key,
                    block,
                    htl: None,
                    replicas,
                    reply,
                })
                .await;
            if matches!(sent, Ok(Ok(_))) {
                done.push(key);
            }
        }
        let saved = {
            let mut pending = node.shared.pending.lock().expect("pending lock");
            for k in &done {
                pending.remove(k);
            }
            save_pending(&node.shared.config.data_dir, &pending)
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "cannot update the pending inserts");
        }
        if !done.is_empty() {
            tracing::info!(
                blocks = done.len(),
                "blocks kept while alone are now inserted"
            );
        }
        // Whatever failed waits for the peer set to change (or a new block) and tries again.
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = peers.changed() => {}
            _ = node.shared.pending_changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_names_the_listener_that_failed() {
        let (_held, addr) = bind("peers", "127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(addr.port(), 0);
        match bind("api", addr).await {
            Err(e @ NodeError::Bind { what: "api", .. }) => {
                assert_eq!(e.to_string(), format!("cannot listen on {addr} (api)"));
            }
            other => panic!("{other:?}"),
        }
    }
}
