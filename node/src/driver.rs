//! The driver: the one task that owns the [`Router`] and the table of live links.
//!
//! Like quinn's connection driver, it loops: take one input (a message from a link, a
//! link coming up or going down, a command from the API, or the router's timer), hand it
//! to the router, then drain the router's outputs: messages to links, then events
//! (finished requests answer their waiting callers, blocks to keep go to the store's
//! writer, misbehaving peers lose their link). The router never waits for I/O: store
//! lookups are an in-memory index and one slot read, and writes are queued to the
//! store's writer thread.
//!
//! Links feed it through one bounded channel, so a flood from the network slows the
//! links down instead of growing memory.

use crate::link::{Link, LinkError, LinkEvent, LinkHandle};
use crate::peers::{LinkFactory, NewLink, PeerInfo};
use crate::store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use veil_proto::router::{
    BlockStore, Event, Fetched, InsertFailure, InsertReport, LinkDecision, PeerMeta, Placement,
    RequestFailure, RouterStats,
};
use veil_proto::{
    Block, Htl, Location, Message, NodeKey, PeerAddress, PeerId, PeerOrigin, RequestId, Router,
    RoutingKey,
};

/// File in the data directory listing the opennet peers to dial again after a restart.
pub const KNOWN_PEERS_FILE: &str = "known_peers";

/// How long a peer that broke the protocol is refused.
const BAN: Duration = Duration::from_secs(600);

/// Most entries of the ban list.
const MAX_BANNED: usize = 4096;

/// What the driver is asked to do by the rest of the node.
#[derive(Debug)]
pub(crate) enum Command {
    /// Fetch a block, from the local store or the network.
    Fetch {
        key: RoutingKey,
        htl: Option<Htl>,
        /// The anonymity walk's tunnel (`None`: the router's own).
        tunnel: Option<u64>,
        reply: oneshot::Sender<Result<Fetched, RequestFailure>>,
    },
    /// Route an insert (the caller has already stored the block).
    Insert {
        /// The key the block was verified against.
        key: RoutingKey,
        block: Block,
        htl: Option<Htl>,
        /// Nodes to store it on (default: the node's `replicas`).
        replicas: Option<u8>,
        reply: oneshot::Sender<Result<InsertReport, InsertFailure>>,
    },
    /// A copy of the router's counters.
    Stats { reply: oneshot::Sender<RouterStats> },
}

/// What a running link's events carry: the router's id for the peer, and which of the
/// peer's links it is (a renewed link replaces an older one under the same id).
pub(crate) type LinkTag = (PeerId, u64);

/// How long a link replaced by a fresh one to the same peer stays open, so that what
/// the peer sent on it before it saw the new link still arrives.
const RETIRE_AFTER: Duration = Duration::from_secs(5);

struct Peer {
    info: PeerInfo,
    handle: LinkHandle,
    /// Which link of this peer's is current.
    generation: u64,
    _closed: Option<oneshot::Sender<()>>,
}

/// Adapts the store to the router's lookup trait.
struct StoreView<'a>(&'a Store);

impl BlockStore for StoreView<'_> {
    fn get(&mut self, key: &RoutingKey) -> Option<(Block, Placement)> {
        match self.0.get(key) {
            Ok(hit) => hit,
            Err(e) => {
                tracing::warn!(error = %e, "store lookup failed");
                None
            }
        }
    }
}

/// One line per message at trace level (`RUST_LOG=veil_node::wire=trace`): which way,
/// the peer, the kind, the request id and, for searches, the key and hops left. Local
/// only, for following a request through a test network.
fn trace_wire(dir: &'static str, peer: PeerId, peers: &HashMap<PeerId, Peer>, msg: &Message) {
    // Checked first: the peer lookup stays off the hot path when tracing is off.
    if !tracing::enabled!(target: "veil_node::wire", tracing::Level::TRACE) {
        return;
    }
    let at = peers.get(&peer).map(|p| p.info.location);
    let (key, htl) = match msg {
        Message::Request { key, htl, .. } | Message::Insert { key, htl, .. } => {
            (Some(*key), Some(htl.0))
        }
        Message::RouteNotFound { htl, .. } => (None, Some(htl.0)),
        _ => (None, None),
    };
    tracing::trace!(
        target: "veil_node::wire",
        dir,
        peer = peer.0,
        location = ?at.map(|l| Location(l).as_fraction()),
        kind = msg.kind(),
        id = ?msg.request_id(),
        key = ?key,
        htl = ?htl,
    );
}

/// The driver's state.
pub(crate) struct Driver {
    router: Router,
    store: Store,
    own_key: NodeKey,
    max_peers: usize,
    peers: HashMap<PeerId, Peer>,
    by_key: HashMap<NodeKey, PeerId>,
    next_peer: u64,
    fetches: HashMap<RequestId, oneshot::Sender<Result<Fetched, RequestFailure>>>,
    inserts: HashMap<RequestId, oneshot::Sender<Result<InsertReport, InsertFailure>>>,
    link_tx: mpsc::Sender<LinkEvent<LinkTag>>,
    peers_tx: watch::Sender<Arc<Vec<PeerInfo>>>,
    counters: Arc<crate::metrics::Counters>,
    opennet: Option<Opennet>,
    banned: HashMap<NodeKey, Instant>,
    /// Generation of the next link spawned.
    next_link: u64,
    /// Darknet: the only nodes a link may go to (`None`: anyone the rules allow).
    friends_only: Option<std::collections::HashSet<NodeKey>>,
    /// This node's location as the API shows it.
    location: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// What the driver needs to dial for the router and to remember peers.
pub(crate) struct Opennet {
    pub factory: LinkFactory,
    pub failed_tx: mpsc::Sender<NodeKey>,
    pub data_dir: PathBuf,
    pub shutdown: watch::Receiver<bool>,
    /// The saved list as last written, to skip identical rewrites.
    pub saved: String,
}

/// The channels the driver listens on.
pub(crate) struct Inputs {
    pub links: mpsc::Receiver<LinkEvent<LinkTag>>,
    pub new_links: mpsc::Receiver<NewLink>,
    pub commands: mpsc::Receiver<Command>,
    pub failed: mpsc::Receiver<NodeKey>,
    pub shutdown: watch::Receiver<bool>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: Router,
        store: Store,
        own_key: NodeKey,
        max_peers: usize,
        link_tx: mpsc::Sender<LinkEvent<LinkTag>>,
        peers_tx: watch::Sender<Arc<Vec<PeerInfo>>>,
        counters: Arc<crate::metrics::Counters>,
        opennet: Option<Opennet>,
    ) -> Driver {
        Driver {
            router,
            store,
            own_key,
            max_peers,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            next_peer: 1,
            fetches: HashMap::new(),
            inserts: HashMap::new(),
            link_tx,
            peers_tx,
            counters,
            opennet,
            banned: HashMap::new(),
            next_link: 0,
            friends_only: None,
            location: None,
        }
    }

    /// Where the driver writes this node's location when it moves (darknet swapping).
    pub fn publish_location(mut self, cell: Arc<std::sync::atomic::AtomicU64>) -> Driver {
        self.location = Some(cell);
        self
    }

    /// Darknet: links only to these nodes; every other link is refused, inbound or not.
    pub fn friends_only(mut self, keys: impl IntoIterator<Item = NodeKey>) -> Driver {
        self.friends_only = Some(keys.into_iter().collect());
        self
    }

    /// Runs until shutdown is signalled or every input channel has closed.
    pub async fn run(mut self, mut inputs: Inputs) {
        loop {
            let deadline = self.router.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Unbiased: a busy link cannot starve API commands or the timer.
            tokio::select! {
                _ = inputs.shutdown.changed() => break,
                Some(ev) = inputs.links.recv() => self.on_link_event(ev),
                Some(nl) = inputs.new_links.recv() => self.on_new_link(nl),
                Some(cmd) = inputs.commands.recv() => self.on_command(cmd),
                Some(key) = inputs.failed.recv() => self.router.dial_failed(&key),
                () = sleep => self.router.handle_timeout(Instant::now()),
                else => break,
            }
            self.drain();
        }
        // Dropping the link handles closes every link gracefully.
        self.peers.clear();
        self.publish_peers();
    }

    fn on_link_event(&mut self, ev: LinkEvent<LinkTag>) {
        match ev {
            LinkEvent::Message((peer, _), msg) => {
                trace_wire("in", peer, &self.peers, &msg);
                if msg.kind() == "request" {
                    self.counters.peer_requests.inc();
                }
                if let (Message::LocationChanged { location }, Some(_)) = (&msg, &self.friends_only)
                {
                    // A darknet friend swapped: the peer list shows where it is now (the
                    // router, which swaps too, routes by it).
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.info.location = location.0;
                    }
                    self.publish_peers();
                }
                let now = Instant::now();
                self.router
                    .handle_message(now, peer, msg, &mut StoreView(&self.store));
            }
            LinkEvent::Rtt((peer, generation), rtt) => {
                if self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.generation == generation)
                {
                    self.counters.rtt_samples.inc();
                    self.router.observe_rtt(peer, rtt);
                    let smoothed = self
                        .router
                        .peers()
                        .timing(peer)
                        .and_then(|(rtt, _)| rtt)
                        .map(|d| d.as_secs_f64() * 1e3);
                    if let Some(p) = self.peers.get_mut(&peer) {
                        // The peer list is republished on the first sample and on a
                        // change of a tenth or more, not on every ping.
                        let moved = match (p.info.rtt_ms, smoothed) {
                            (None, Some(_)) => true,
                            (Some(old), Some(new)) => (new - old).abs() > old * 0.1,
                            _ => false,
                        };
                        if moved {
                            p.info.rtt_ms = smoothed;
                            self.publish_peers();
                        }
                    }
                }
            }
            LinkEvent::Closed((peer, generation), reason) => {
                if self
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.generation != generation)
                {
                    // A retired link closing after its replacement took over.
                    tracing::debug!(peer = peer.0, %reason, "retired link closed");
                    return;
                }
                self.on_closed(peer, reason)
            }
        }
    }

    fn on_closed(&mut self, peer: PeerId, reason: LinkError) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        self.counters.links_closed.inc();
        match &reason {
            LinkError::Io(_) | LinkError::Renew => {
                tracing::debug!(peer = peer.0, %reason, "link closed")
            }
            LinkError::Dead(_) => {
                self.counters.link_errors.inc();
                tracing::info!(peer = peer.0, %reason, "link closed")
            }
            // The peer proved its key in the handshake, then broke the protocol: worth
            // an operator's attention, and refused for a while.
            _ => {
                self.counters.link_errors.inc();
                tracing::warn!(peer = peer.0, %reason, "link closed on a protocol error");
                self.ban(p.info.key);
            }
        }
        if self.by_key.get(&p.info.key) == Some(&peer) {
            self.by_key.remove(&p.info.key);
        }
        self.router.remove_peer(Instant::now(), peer);
        self.publish_peers();
    }

    fn on_new_link(&mut self, nl: NewLink) {
        let NewLink {
            link,
            closed,
            origin,
        } = nl;
        let key = link.remote();
        let initiator = link.is_initiator();
        let now = Instant::now();
        if self.banned.get(&key).is_some_and(|until| *until > now) {
            tracing::debug!("link from a banned peer refused");
            self.router.connect_failed(&key);
            return;
        }
        if self
            .friends_only
            .as_ref()
            .is_some_and(|f| !f.contains(&key))
        {
            tracing::debug!("link from a stranger refused: darknet links only to friends");
            self.counters.links_refused.inc();
            self.router.connect_failed(&key);
            return;
        }
        let hello = link.remote_hello();
        if let Some(&old) = self.by_key.get(&key) {
            // Two links to one peer (both dialled at once): both ends keep the link
            // dialled by the smaller key, so they agree without talking.
            let dialer_of_new = if initiator { self.own_key } else { key };
            let old_outbound = self.peers.get(&old).is_some_and(|p| p.info.outbound);
            let dialer_of_old = if old_outbound { self.own_key } else { key };
            if dialer_of_new == dialer_of_old {
                // The same side dialled again: a renewal (or a restart the old link has
                // not noticed yet). The new link takes over under the same peer id.
                return self.renew(old, link, closed);
            }
            if dialer_of_new > dialer_of_old {
                tracing::debug!("duplicate link refused");
                return;
            }
            if let Some(p) = self.peers.remove(&old) {
                p.handle.abort();
            }
            self.router.remove_peer(now, old);
        }
        let (decision, origin) = if self.opennet.is_some() {
            self.router.link_decision(now, &key, hello.location, origin)
        } else if self.router.peers().count() >= self.max_peers {
            (LinkDecision::Refuse, origin)
        } else {
            (LinkDecision::Accept, origin)
        };
        match decision {
            LinkDecision::Refuse => {
                tracing::debug!("link refused: peer limit reached");
                self.counters.links_refused.inc();
                return;
            }
            LinkDecision::Replace(victim) => {
                tracing::debug!(peer = victim.0, "peer dropped to make room");
                if let Some(p) = self.peers.remove(&victim) {
                    p.handle.abort();
                    if self.by_key.get(&p.info.key) == Some(&victim) {
                        self.by_key.remove(&p.info.key);
                    }
                }
                self.router.remove_peer(now, victim);
            }
            LinkDecision::Accept | LinkDecision::Transient => {}
        }
        let routable = decision != LinkDecision::Transient;
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        let addr = link.peer_addr();
        let info = PeerInfo {
            key,
            addr,
            listen_port: hello.listen_port,
            location: hello.location.0,
            outbound: initiator,
            origin: origin.as_str(),
            routable,
            rtt_ms: None,
        };
        let generation = self.next_link;
        self.next_link += 1;
        let handle = link
            .count_traffic(self.counters.traffic.clone())
            .spawn((id, generation), self.link_tx.clone());
        self.counters.links_opened.inc();
        self.peers.insert(
            id,
            Peer {
                info,
                handle,
                generation,
                _closed: closed,
            },
        );
        self.by_key.insert(key, id);
        let address = (hello.listen_port != 0).then(|| PeerAddress {
            key,
            addr: SocketAddr::new(addr.ip(), hello.listen_port),
        });
        let meta = PeerMeta {
            origin,
            address,
            routable,
        };
        self.router.add_peer_with(now, id, hello.location, meta);
        self.publish_peers();
    }

    /// Swaps a fresh link to a connected peer in for its current one, under the same
    /// peer id: the router sees nothing, so requests in flight go on. The old link
    /// stays open for [`RETIRE_AFTER`] (what the peer sent on it still arrives), then
    /// closes gracefully.
    fn renew(&mut self, id: PeerId, link: Link, closed: Option<oneshot::Sender<()>>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let hello = link.remote_hello();
        let generation = self.next_link;
        self.next_link += 1;
        // The peer's location is its own for life (location swapping, when it comes,
        // will say so by message), so the router's view stays as it is.
        p.info.addr = link.peer_addr();
        p.info.listen_port = hello.listen_port;
        let handle = link
            .count_traffic(self.counters.traffic.clone())
            .spawn((id, generation), self.link_tx.clone());
        let old = std::mem::replace(&mut p.handle, handle);
        p.generation = generation;
        p._closed = closed;
        self.counters.links_renewed.inc();
        tracing::debug!(peer = id.0, "link renewed");
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            drop(old);
        });
        self.publish_peers();
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Fetch {
                key,
                htl,
                tunnel,
                reply,
            } => {
                let id = self.router.start_request_in(
                    now,
                    key,
                    htl,
                    tunnel,
                    &mut StoreView(&self.store),
                );
                tracing::trace!(target: "veil_node::wire", ?id, ?key, "local request");
                self.fetches.insert(id, reply);
            }
            Command::Insert {
                key,
                block,
                htl,
                replicas,
                reply,
            } => {
                let id = self.router.start_insert_as(now, key, block, htl, replicas);
                self.inserts.insert(id, reply);
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.router.stats().clone());
            }
        }
    }

    fn drain(&mut self) {
        // Blocks to keep go to the store before any reply leaves, so a peer told "done"
        // finds them here at once.
        let mut events = Vec::new();
        while let Some(ev) = self.router.poll_event() {
            match ev {
                Event::Store {
                    key,
                    block,
                    placement,
                } => self.store.put_verified_nowait(key, block, placement),
                ev => events.push(ev),
            }
        }
        while let Some((peer, msg)) = self.router.poll_transmit() {
            trace_wire("out", peer, &self.peers, &msg);
            match self.peers.get(&peer) {
                Some(p) => {
                    if !p.handle.send(msg) {
                        tracing::debug!(peer = peer.0, "send on a closing link");
                    }
                }
                None => tracing::debug!(peer = peer.0, "transmit to a gone peer dropped"),
            }
        }
        for ev in events {
            match ev {
                Event::RequestFinished { id, result, .. } => {
                    if let Some(reply) = self.fetches.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Event::InsertFinished { id, result, .. } => {
                    if let Some(reply) = self.inserts.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Event::Store { .. } => {}
                Event::PeerMisbehaved { peer, reason } => {
                    self.counters.misbehaviour.inc();
                    tracing::info!(peer = peer.0, reason, "peer misbehaved; closing its link");
                    if let Some(p) = self.peers.get(&peer) {
                        p.handle.abort();
                        self.ban(p.info.key);
                    }
                }
                Event::Connect { address, origin } => self.dial(address, origin),
                Event::Disconnect { peer, reason } => {
                    tracing::debug!(peer = peer.0, reason, "closing a link for the router");
                    if let Some(p) = self.peers.get(&peer) {
                        p.handle.abort();
                    }
                }
                Event::WalkEnded { walk, greedy } => {
                    tracing::trace!(target: "veil_node::wire", ?walk, ?greedy, "walk ended here");
                }
                Event::LocationChanged { location } => {
                    tracing::info!(
                        location = location.as_fraction(),
                        "swapped to a new location"
                    );
                    if let Some(cell) = &self.location {
                        cell.store(location.0, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                other => tracing::debug!(?other, "unhandled router event"),
            }
        }
    }

    /// Refuses `key` for a while.
    fn ban(&mut self, key: NodeKey) {
        let now = Instant::now();
        if self.banned.len() >= MAX_BANNED {
            self.banned.retain(|_, t| *t > now);
        }
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(key, now + BAN);
            self.counters.peers_banned.inc();
        }
    }

    /// Dials `address` for the router, unless it is banned or connected.
    fn dial(&mut self, address: PeerAddress, origin: PeerOrigin) {
        let now = Instant::now();
        let Some(o) = &self.opennet else {
            self.router.connect_failed(&address.key);
            return;
        };
        if self.by_key.contains_key(&address.key)
            || self.banned.get(&address.key).is_some_and(|t| *t > now)
            || address.key == self.own_key
        {
            self.router.connect_failed(&address.key);
            return;
        }
        tokio::spawn(crate::peers::dial_once(
            address,
            origin,
            o.factory.clone(),
            o.failed_tx.clone(),
            o.shutdown.clone(),
        ));
    }

    fn publish_peers(&mut self) {
        let mut list: Vec<PeerInfo> = self.peers.values().map(|p| p.info.clone()).collect();
        list.sort_by_key(|p| p.key);
        self.save_known_peers(&list);
        self.peers_tx.send_replace(Arc::new(list));
    }

    /// Keeps the opennet peers' addresses on disk, so a restarted node rejoins without
    /// a seed. Friends are in the config already; seeds and transient links are not
    /// worth keeping.
    fn save_known_peers(&mut self, list: &[PeerInfo]) {
        let Some(o) = &mut self.opennet else {
            return;
        };
        let text: String = list
            .iter()
            .filter(|p| {
                p.routable && p.listen_port != 0 && p.origin != "friend" && p.origin != "seed"
            })
            .map(|p| {
                let a = PeerAddress {
                    key: p.key,
                    addr: SocketAddr::new(p.addr.ip(), p.listen_port),
                };
                format!("{a} {}\n", p.origin)
            })
            .collect();
        if text.is_empty() || text == o.saved {
            // An empty list is not written: a node that lost every peer keeps the old
            // list to rejoin from.
            return;
        }
        let path = o.data_dir.join(KNOWN_PEERS_FILE);
        match crate::identity::write_atomic(&path, text.as_bytes(), 0o600) {
            Ok(()) => o.saved = text,
            Err(e) => tracing::warn!(error = %e, "cannot save the known peers"),
        }
    }
}

/// Reads the saved opennet peers: `<address> <origin>` per line; bad lines are skipped.
pub(crate) fn load_known_peers(dir: &std::path::Path) -> Vec<(PeerAddress, PeerOrigin)> {
    let Ok(text) = std::fs::read_to_string(dir.join(KNOWN_PEERS_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .take(256)
        .filter_map(|l| {
            let (a, o) = l.trim().split_once(' ')?;
            Some((a.parse().ok()?, PeerOrigin::parse(o.trim())?))
        })
        .collect()
}

impl Driver {}

/// The location of a node: configured, else the first 8 bytes of its key.
pub(crate) fn default_location(key: &NodeKey) -> Location {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key.0[..8]);
    Location(u64::from_be_bytes(b))
}
