//! Getting links: the accept loop for peers that dial us, and one dialer per configured
//! peer that keeps it connected, redialling with exponential backoff when it drops.
//!
//! Both hand finished links to the driver ([`NewLink`]), which decides whether to keep
//! them. Inbound handshakes run concurrently in bounded room, each bounded by the
//! handshake timeout, so garbage or a slow scanner costs a bounded amount, and a flood of
//! idle connections only evicts itself ([`crate::admission`]); a failed handshake is
//! dropped without a reply and counted.

use crate::admission::Admission;
use crate::identity::Identity;
use crate::link::{self, Link, LinkParams};
use crate::metrics::Counters;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use veil_proto::{Hello, NodeKey, PeerAddress, PeerOrigin};

/// A link whose handshake is done, offered to the driver.
#[derive(Debug)]
pub(crate) struct NewLink {
    pub link: Link,
    /// Dropped by the driver when the link is gone (or refused), so a dialer knows
    /// when to redial.
    pub closed: Option<oneshot::Sender<()>>,
    /// How the link came about, as the side that made it knows.
    pub origin: PeerOrigin,
}

/// One connected peer, as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerInfo {
    /// The peer's node key.
    pub key: NodeKey,
    /// The remote socket address of the link.
    pub addr: SocketAddr,
    /// The port the peer listens on, from its Hello.
    pub listen_port: u16,
    /// The peer's ring location (u64).
    pub location: u64,
    /// Whether this node dialled.
    pub outbound: bool,
    /// How the peer was found: friend, seed, announcement, path_folding or inbound.
    pub origin: &'static str,
    /// False for a transient link (a newcomer announcing through us while we are
    /// full): it is not routed to and closes soon.
    pub routable: bool,
    /// The link's smoothed round-trip time in ms, once a ping has been answered.
    pub rtt_ms: Option<f64>,
}

/// Most inbound handshakes in flight at once. A newcomer always gets a slot: when they
/// are all taken, the oldest connection that has not yet shown it knows our key (from the
/// source holding the most) is closed to make room; see [`crate::admission`].
const MAX_PENDING_HANDSHAKES: usize = 256;

/// A link that lived this long resets the redial backoff.
const STABLE_LINK: Duration = Duration::from_secs(10);

/// What the accept loop and the dialers share.
#[derive(Clone)]
pub(crate) struct LinkFactory {
    pub identity: Identity,
    pub hello: Hello,
    pub params: LinkParams,
    pub new_links: mpsc::Sender<NewLink>,
    pub counters: Arc<Counters>,
    /// Connected peers, to hold a dialer back while its peer is connected anyway.
    pub peers: watch::Receiver<Arc<Vec<PeerInfo>>>,
}

/// Accepts peers until shutdown.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    f: LinkFactory,
    mut shutdown: watch::Receiver<bool>,
) {
    let admission = Admission::new(MAX_PENDING_HANDSHAKES);
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, from) = match accepted {
            Ok(s) => {
                backoff = Duration::from_millis(10);
                s
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let ((ticket, evicted), made_room) = admission.admit_counted(from.ip());
        if made_room {
            f.counters.handshakes_evicted.inc();
            tracing::debug!("handshake slots full; the oldest unproven connection was closed");
        }
        let f = f.clone();
        tokio::spawn(async move {
            let proven = || ticket.prove();
            let handshake = link::accept_with(stream, &f.identity, f.hello, f.params, &proven);
            let result = tokio::select! {
                r = handshake => r,
                _ = evicted.wait() => return,
            };
            drop(ticket);
            match result {
                Ok(link) => {
                    let nl = NewLink {
                        link,
                        closed: None,
                        origin: PeerOrigin::Inbound,
                    };
                    let _ = f.new_links.send(nl).await;
                }
                Err(e) => {
                    f.counters.handshake_failures.inc();
                    tracing::debug!(error = %e, "inbound handshake failed");
                }
            }
        });
    }
}

/// Keeps one configured peer connected until shutdown.
pub(crate) async fn dialer(
    peer: PeerAddress,
    f: LinkFactory,
    redial_min: Duration,
    redial_max: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = redial_min;
    let mut peers = f.peers.clone();
    loop {
        // Connected already (the peer dialled us): wait until that link is gone.
        let gone = peers.wait_for(|list| !list.iter().any(|p| p.key == peer.key));
        tokio::select! {
            _ = shutdown.changed() => return,
            r = gone => if r.is_err() { return },
        }
        let attempt = link::dial(peer.addr, peer.key, &f.identity, f.hello, f.params);
        let result = tokio::select! {
            _ = shutdown.changed() => return,
            r = attempt => r,
        };
        match result {
            Ok(link) => {
                let (closed_tx, closed_rx) = oneshot::channel();
                let up = Instant::now();
                let offered = NewLink {
                    link,
                    closed: Some(closed_tx),
                    origin: PeerOrigin::Friend,
                };
                if f.new_links.send(offered).await.is_err() {
                    return;
                }
                // The driver drops `closed_tx` when the link ends or is refused. A link
                // that lives `renew_after` is renewed: a fresh one is dialled beside it
                // and swapped in by the driver (requests in flight go on).
                let mut closed_rx = closed_rx;
                loop {
                    let renew = async {
                        match f.params.renew_after {
                            Some(d) => tokio::time::sleep(d).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = &mut closed_rx => break,
                        _ = renew => {}
                    }
                    let fresh = link::dial(peer.addr, peer.key, &f.identity, f.hello, f.params);
                    let fresh = tokio::select! {
                        _ = shutdown.changed() => return,
                        r = fresh => r,
                    };
                    let Ok(fresh) = fresh else {
                        // Keep the old link and try again after another period.
                        f.counters.dial_failures.inc();
                        continue;
                    };
                    let (tx, rx) = oneshot::channel();
                    let offered = NewLink {
                        link: fresh,
                        closed: Some(tx),
                        origin: PeerOrigin::Friend,
                    };
                    if f.new_links.send(offered).await.is_err() {
                        return;
                    }
                    closed_rx = rx;
                }
                if up.elapsed() >= STABLE_LINK {
                    // A long-lived link that ends (renewal, or the peer restarted) is
                    // redialled at once; backoff is for links that keep failing.
                    delay = redial_min;
                    continue;
                }
            }
            Err(link::LinkError::SelfConnect) => {
                tracing::warn!("a configured peer is this node itself; not dialling it");
                return;
            }
            Err(e) => {
                f.counters.dial_failures.inc();
                tracing::debug!(error = %e, "dial failed");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(redial_max);
    }
}

/// Dials `peer` once for the router (an announcement reply, a fold offer, a saved
/// peer) and offers the link with `origin`; on failure, tells the driver.
pub(crate) async fn dial_once(
    peer: PeerAddress,
    origin: PeerOrigin,
    f: LinkFactory,
    failed: mpsc::Sender<NodeKey>,
    mut shutdown: watch::Receiver<bool>,
) {
    let attempt = link::dial(peer.addr, peer.key, &f.identity, f.hello, f.params);
    let result = tokio::select! {
        _ = shutdown.changed() => return,
        r = attempt => r,
    };
    match result {
        Ok(link) => {
            let nl = NewLink {
                link,
                closed: None,
                origin,
            };
            let _ = f.new_links.send(nl).await;
        }
        Err(e) => {
            f.counters.dial_failures.inc();
            tracing::debug!(error = %e, %peer, "opennet dial failed");
            let _ = failed.send(peer.key).await;
        }
    }
}

/// Keeps the node able to announce: while it has fewer than `min_peers` links and
/// none to a seed, dials the seeds in turn (backing off while that does not help).
pub(crate) async fn seed_dialer(
    seeds: Vec<PeerAddress>,
    min_peers: usize,
    f: LinkFactory,
    redial_min: Duration,
    redial_max: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if seeds.is_empty() {
        return;
    }
    let mut peers = f.peers.clone();
    let mut delay = redial_min.max(Duration::from_millis(500));
    let mut next = 0usize;
    loop {
        let short = peers.wait_for(|list| {
            list.iter().filter(|p| p.routable).count() < min_peers
                && !list.iter().any(|p| seeds.iter().any(|s| s.key == p.key))
        });
        tokio::select! {
            _ = shutdown.changed() => return,
            r = short => if r.is_err() { return },
        }
        let seed = seeds[next % seeds.len()];
        next += 1;
        let attempt = link::dial(seed.addr, seed.key, &f.identity, f.hello, f.params);
        let result = tokio::select! {
            _ = shutdown.changed() => return,
            r = attempt => r,
        };
        match result {
            Ok(link) => {
                let (closed_tx, closed_rx) = oneshot::channel();
                let nl = NewLink {
                    link,
                    closed: Some(closed_tx),
                    origin: PeerOrigin::Seed,
                };
                if f.new_links.send(nl).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = closed_rx => {}
                }
            }
            Err(link::LinkError::SelfConnect) => {
                tracing::debug!("this node is one of its own seeds");
                if seeds.len() == 1 {
                    return;
                }
                continue;
            }
            Err(e) => {
                f.counters.dial_failures.inc();
                tracing::debug!(error = %e, "seed dial failed");
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(redial_max);
    }
}
