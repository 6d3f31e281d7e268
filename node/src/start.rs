//! [`Node::start`]: how a node comes up, one step a function.
//!
//! Start-up order: data directory, identity and token; both listeners (so a port clash
//! fails before anything runs); the store; the router and the link factory; the driver,
//! the accept loop and the dialers; the handle, with the history sampler, the pending
//! inserter, keep-alive and the API server; and last the `address` and `api` files, which
//! tell scripts the node is ready.
//!
//! This module sits above [`crate::node`], [`crate::api`] and [`crate::history`]: it wires
//! them together, so none of them needs to know the others.

use crate::config::Config;
use crate::driver::{Driver, Inputs, LinkTag};
use crate::history::Sample;
use crate::identity::{self, Identity};
use crate::link::{LinkEvent, LinkParams};
use crate::metrics::Counters;
use crate::node::{
    keepalive_schedule, load_pending, pending_inserter, Node, NodeError, NodeHandle, Shared,
    Status, INBOX,
};
use crate::peers::{self, LinkFactory, NewLink};
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::router::{OpennetConfig, RouterConfig, SwapConfig};
use veil_proto::{Hello, Htl, Location, PeerAddress, Router};

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

/// Opens the store on a blocking thread (redb and the slot file do blocking I/O).
async fn open_store(config: &Config) -> Result<Store, NodeError> {
    let dir = config.data_dir.clone();
    let (s, c) = (config.store_bytes, config.cache_bytes);
    Ok(tokio::task::spawn_blocking(move || Store::open(&dir, s, c))
        .await
        .map_err(|e| StoreError::io(std::io::Error::other(e)))??)
}

/// The address peers dial. A wildcard listen address is not dialable; name loopback in
/// our own address and let operators publish their public address themselves.
fn advertised_address(id: &Identity, listen: SocketAddr) -> PeerAddress {
    let mut advertised = listen;
    if advertised.ip().is_unspecified() {
        advertised.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    PeerAddress {
        key: id.public(),
        addr: advertised,
    }
}

/// The routing core as the configuration asks for it.
fn router_for(config: &Config, location: Location, address: PeerAddress) -> Router {
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
                interval: Duration::from_millis(config.swap_interval_ms),
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
    router
}

/// The channels between links, dialers, the API and the driver.
struct Channels {
    link_tx: mpsc::Sender<LinkEvent<LinkTag>>,
    inputs: Inputs,
    new_tx: mpsc::Sender<NewLink>,
    cmd_tx: mpsc::Sender<crate::driver::Command>,
    failed_tx: mpsc::Sender<veil_proto::NodeKey>,
    peers_tx: watch::Sender<Arc<Vec<peers::PeerInfo>>>,
    peers_rx: watch::Receiver<Arc<Vec<peers::PeerInfo>>>,
}

impl Channels {
    fn new(shutdown: &watch::Receiver<bool>) -> Channels {
        // Links' messages to the driver. Small on purpose: once it is full, every link's
        // reader waits its turn for a slot (tokio serves waiting senders in order), so the
        // driver takes one message from each busy link in turn, and a flooding peer's
        // backlog queues in its own socket instead of ahead of everyone else's messages.
        let (link_tx, links) = mpsc::channel(INBOX);
        let (new_tx, new_links) = mpsc::channel(64);
        let (cmd_tx, commands) = mpsc::channel(1024);
        let (failed_tx, failed) = mpsc::channel(64);
        let (peers_tx, peers_rx) = watch::channel(Arc::new(Vec::new()));
        Channels {
            link_tx,
            inputs: Inputs {
                links,
                new_links,
                commands,
                failed,
                shutdown: shutdown.clone(),
            },
            new_tx,
            cmd_tx,
            failed_tx,
            peers_tx,
            peers_rx,
        }
    }
}

/// What every link of this node is made with.
fn link_factory(
    config: &Config,
    id: &Identity,
    hello: Hello,
    channels: &Channels,
    counters: &Arc<Counters>,
) -> LinkFactory {
    LinkFactory {
        identity: id.clone(),
        hello,
        params: LinkParams {
            keepalive: config.keepalive(),
            dead_after: config.dead_after(),
            handshake_timeout: config.handshake_timeout(),
            renew_after: (config.link_renew_ms > 0)
                .then(|| Duration::from_millis(config.link_renew_ms)),
        },
        new_links: channels.new_tx.clone(),
        counters: counters.clone(),
        peers: channels.peers_rx.clone(),
    }
}

/// Rejoins through the peers of the last run, then dials the seeds while still short.
fn spawn_opennet_dialers(
    tasks: &mut JoinSet<()>,
    config: &Config,
    id: &Identity,
    factory: &LinkFactory,
    failed_tx: &mpsc::Sender<veil_proto::NodeKey>,
    shutdown: &watch::Receiver<bool>,
) {
    for (peer, origin) in crate::driver::load_known_peers(&config.data_dir) {
        if peer.key == id.public() || config.peers.iter().any(|p| p.key == peer.key) {
            continue;
        }
        tasks.spawn(peers::dial_once(
            peer,
            origin,
            factory.clone(),
            failed_tx.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(peers::seed_dialer(
        config.seed_nodes.clone(),
        config.effective_min_peers(),
        factory.clone(),
        Duration::from_millis(config.redial_min_ms),
        Duration::from_millis(config.redial_max_ms),
        shutdown.clone(),
    ));
}

/// Writes the `address` and `api` files that tell scripts the node is ready.
async fn write_ready_files(handle: &NodeHandle, dir: &Path) -> Result<(), NodeError> {
    let ready = [
        (identity::ADDRESS_FILE, format!("{}\n", handle.address())),
        (identity::API_FILE, format!("{}\n", handle.api_url())),
    ];
    for (name, text) in ready {
        if let Err(e) = identity::write_atomic(&dir.join(name), text.as_bytes(), 0o644) {
            handle.shutdown().await;
            return Err(NodeError::ReadyFile(name, e));
        }
    }
    Ok(())
}

/// A status as one history sample.
fn sample_of(status: &Status, at: u64) -> Sample {
    Sample {
        at,
        local: status.requests.local,
        local_succeeded: status.requests.local_succeeded,
        received: status.requests.received,
        sent: status.traffic.bytes_sent,
        bytes_received: status.traffic.bytes_received,
    }
}

/// Takes a sample now and every [`crate::history::SAMPLE_EVERY`] until the node stops.
async fn sampler(node: NodeHandle, mut shutdown: watch::Receiver<bool>) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(crate::history::SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match node.status().await {
            Ok(status) => node
                .history()
                .push(sample_of(&status, start.elapsed().as_secs())),
            Err(_) => return,
        }
    }
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
        let store = open_store(&config).await?;
        let address = advertised_address(&id, listen);
        let location = config
            .location_u64()
            .map(Location)
            .unwrap_or_else(|| crate::driver::default_location(&id.public()));
        let router = router_for(&config, location, address);
        let counters = Arc::new(Counters::default());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let channels = Channels::new(&shutdown_rx);
        let hello = Hello {
            version: PROTOCOL_VERSION,
            location,
            listen_port: listen.port(),
        };
        let factory = link_factory(&config, &id, hello, &channels, &counters);
        let opennet = config.opennet_on().then(|| crate::driver::Opennet {
            factory: factory.clone(),
            failed_tx: channels.failed_tx.clone(),
            data_dir: dir.clone(),
            shutdown: shutdown_rx.clone(),
            saved: String::new(),
        });
        let driver = Driver::new(
            router,
            store.clone(),
            id.public(),
            config.max_peers,
            channels.link_tx,
            channels.peers_tx,
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
        tasks.spawn(driver.run(channels.inputs));
        if config.opennet_on() {
            let failed_tx = &channels.failed_tx;
            spawn_opennet_dialers(&mut tasks, &config, &id, &factory, failed_tx, &shutdown_rx);
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
                commands: channels.cmd_tx,
                peers: channels.peers_rx,
                counters,
                shutdown: shutdown_tx,
                tasks: Mutex::new(None),
                factory,
                pending: Mutex::new(load_pending(&dir)),
                pending_changed: tokio::sync::Notify::new(),
                history: crate::history::History::default(),
            }),
        };
        tasks.spawn(sampler(handle.clone(), shutdown_rx.clone()));
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
        write_ready_files(&handle, &dir).await?;
        tracing::info!(address = %address, api = %handle.api_url(), "node ready");
        Ok(handle)
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
