//! [`Node`] starts a node from a [`Config`]; [`NodeHandle`] is how the API, the gateway,
//! tests and `main` talk to a running one and stop it.
//!
//! [`Node::start`] itself, the order of start-up, is in the `start` module.

use crate::config::Config;
use crate::driver::Command;
use crate::identity::{self, Identity};
use crate::metrics::Counters;
use crate::peers::PeerInfo;
use crate::peers::{self, LinkFactory};
use crate::store::{Placement, Store, StoreError, Usage};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use veil_proto::router::{InsertFailure, RequestFailure, RouterStats};
use veil_proto::{Block, Htl, Location, PeerAddress, RoutingKey};

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
pub(crate) const INBOX: usize = 64;

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    pub(crate) token: String,
    pub(crate) address: PeerAddress,
    pub(crate) api_addr: SocketAddr,
    /// The ring location: fixed, except on a darknet node, whose driver moves it when it
    /// swaps.
    pub(crate) location: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) store: Store,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) peers: watch::Receiver<Arc<Vec<PeerInfo>>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Option<JoinSet<()>>>,
    pub(crate) factory: LinkFactory,
    /// Blocks kept while alone, to insert once there are peers, with their replicas.
    pub(crate) pending: Mutex<std::collections::BTreeMap<RoutingKey, Option<u8>>>,
    pub(crate) pending_changed: tokio::sync::Notify,
    /// The last hour, sampled for the status page.
    pub(crate) history: crate::history::History,
}

/// A running node. Cheap to clone; [`NodeHandle::shutdown`] stops it.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("address", &self.shared.address)
            .finish()
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
pub(crate) fn load_pending(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<RoutingKey, Option<u8>> {
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
pub(crate) async fn keepalive_schedule(node: NodeHandle, mut shutdown: watch::Receiver<bool>) {
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
pub(crate) async fn pending_inserter(node: NodeHandle, mut shutdown: watch::Receiver<bool>) {
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
