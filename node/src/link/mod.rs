//! Links: TCP plus Noise (`Noise_XK_25519_ChaChaPoly_BLAKE2s`, prologue `veil/1`).
//!
//! Wire format: every Noise message, handshake and transport alike, is preceded by its
//! length as a 2-byte big-endian integer, and is at most 65,535 bytes. After the three
//! handshake messages (payloads empty on our side, ignored on receipt) each side sends a
//! [`Hello`] as its first transport message, then any [`Message`]s.
//!
//! XK: the dialer must know the listener's static key. A listener that cannot decrypt
//! handshake message 1 (the dialer named another key, or sent garbage) closes the
//! connection without a word, so a scanner learns nothing.
//!
//! A running link (`run.rs`) is two tasks: a reader that decrypts and decodes, and a writer that
//! encodes and encrypts; they share a [`snow::StatelessTransportState`] and keep their
//! own nonces, so encryption and decryption run in parallel. A bad frame, a failed
//! decryption or an undecodable message ends that link only. Keepalive pings go out
//! when a link has been quiet for the keepalive interval; a link silent for
//! `dead_after` is closed as dead.

mod run;

use crate::identity::Identity;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::{Hello, Message, MessageError, NodeKey};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";
/// The Noise prologue both sides mix in.
pub const PROLOGUE: &[u8] = b"veil/1";
/// Largest Noise message (and so largest frame body).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Length of the Poly1305 tag Noise adds to every transport message.
const TAG_LEN: usize = 16;
/// Where the ciphertext starts in the writer's buffer: 16-byte aligned, with the
/// 2-byte prefix just before it (DESIGN.md: a misaligned ciphertext costs ~30%).
const CT_OFFSET: usize = 16;
/// Read buffer: a few frames at once, so small messages cost one syscall between them.
const READ_BUFFER: usize = 256 * 1024;
/// Write buffer: frames queued back to back go out in one write.
const WRITE_BUFFER: usize = 256 * 1024;
/// Messages queued for one link, at most. A peer that reads more slowly than it makes us
/// answer (a stream of requests for stored blocks, or of pings) would otherwise grow our
/// memory without bound while it keeps the write from stalling outright; once this many
/// are waiting the link is closed. 1,024 blocks is 32 MiB, well beyond any burst the
/// router sends a peer that keeps reading.
const SEND_QUEUE: usize = 1024;

/// Why a link could not be set up or ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The Noise handshake or a decryption failed: wrong key, garbage, or tampering.
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// A frame announced a length Noise cannot produce.
    #[error("bad frame length {0}")]
    BadFrame(usize),
    /// A transport message did not decode.
    #[error("undecodable message: {0}")]
    Message(#[from] MessageError),
    /// The peer broke the protocol (e.g. no Hello first, or another version).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The handshake took too long.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing arrived for the dead-peer interval.
    #[error("peer silent for {0:?}; presumed dead")]
    Dead(Duration),
    /// The peer is ourselves.
    #[error("connected to self")]
    SelfConnect,
    /// The link was replaced by a fresh one to the same peer (key renewal).
    #[error("link renewed")]
    Renew,
}

/// Timing of a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkParams {
    /// A ping goes out after this long without sending anything.
    pub keepalive: Duration,
    /// The link is closed after this long without receiving anything.
    pub dead_after: Duration,
    /// Bound on the whole handshake, Hello included.
    pub handshake_timeout: Duration,
    /// The dialer opens a fresh link (a fresh handshake, fresh keys) to the same peer
    /// after this long; the node swaps it in and retires the old one without its router
    /// noticing. `None` keeps links forever.
    pub renew_after: Option<Duration>,
}

impl Default for LinkParams {
    fn default() -> LinkParams {
        LinkParams {
            keepalive: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            renew_after: None,
        }
    }
}

/// Bytes moved by a set of links, length prefixes and Noise tags included (handshakes
/// excluded), for the "bytes on the wire per fetched byte" measure.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes written to peers.
    pub sent: std::sync::atomic::AtomicU64,
    /// Bytes read from peers.
    pub received: std::sync::atomic::AtomicU64,
}

/// A link whose handshake and Hello exchange are done, not yet running.
pub struct Link {
    stream: TcpStream,
    transport: snow::StatelessTransportState,
    remote: NodeKey,
    remote_hello: Hello,
    peer_addr: SocketAddr,
    initiator: bool,
    params: LinkParams,
    traffic: Option<std::sync::Arc<Traffic>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("remote", &self.remote)
            .field("peer_addr", &self.peer_addr)
            .field("initiator", &self.initiator)
            .finish()
    }
}

fn builder(id: &Identity) -> snow::Builder<'_> {
    snow::Builder::new(NOISE_PARAMS.parse().expect("valid noise params"))
        .local_private_key(id.secret_bytes())
        .prologue(PROLOGUE)
}

/// Dials `addr`, proves that `remote` answers there, and exchanges Hellos.
pub async fn dial(
    addr: SocketAddr,
    remote: NodeKey,
    id: &Identity,
    hello: Hello,
    params: LinkParams,
) -> Result<Link, LinkError> {
    if remote == id.public() {
        return Err(LinkError::SelfConnect);
    }
    let work = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let hs = builder(id).remote_public_key(&remote.0).build_initiator()?;
        handshake(stream, hs, true, hello, &|| {}).await
    };
    let (stream, transport, remote_hello) = tokio::time::timeout(params.handshake_timeout, work)
        .await
        .map_err(|_| LinkError::HandshakeTimeout)??;
    Ok(Link {
        peer_addr: addr,
        stream,
        transport,
        remote,
        remote_hello,
        initiator: true,
        params,
        traffic: None,
    })
}

/// Answers a dialer on an accepted socket. Fails (and the caller just drops the socket)
/// unless the dialer knows our key.
pub async fn accept(
    stream: TcpStream,
    id: &Identity,
    hello: Hello,
    params: LinkParams,
) -> Result<Link, LinkError> {
    accept_with(stream, id, hello, params, &|| {}).await
}

/// [`accept`], calling `proven` once the dialer's first message shows it knows our key
/// (so the accept loop can protect this connection from being evicted by a flood).
pub async fn accept_with(
    stream: TcpStream,
    id: &Identity,
    hello: Hello,
    params: LinkParams,
    proven: &(dyn Fn() + Sync),
) -> Result<Link, LinkError> {
    let peer_addr = stream.peer_addr()?;
    let work = async {
        stream.set_nodelay(true)?;
        let hs = builder(id).build_responder()?;
        handshake(stream, hs, false, hello, proven).await
    };
    let (stream, transport, remote_hello) = tokio::time::timeout(params.handshake_timeout, work)
        .await
        .map_err(|_| LinkError::HandshakeTimeout)??;
    let remote = transport
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(NodeKey)
        .ok_or_else(|| LinkError::Protocol("no remote static key".into()))?;
    if remote == id.public() {
        return Err(LinkError::SelfConnect);
    }
    Ok(Link {
        peer_addr,
        stream,
        transport,
        remote,
        remote_hello,
        initiator: false,
        params,
        traffic: None,
    })
}

/// Runs the three XK messages and the Hello exchange.
async fn handshake(
    mut stream: TcpStream,
    mut hs: snow::HandshakeState,
    initiator: bool,
    hello: Hello,
    proven: &(dyn Fn() + Sync),
) -> Result<(TcpStream, snow::StatelessTransportState, Hello), LinkError> {
    let mut frame = vec![0u8; MAX_NOISE_MESSAGE];
    let mut scratch = vec![0u8; MAX_NOISE_MESSAGE];
    // -> e, es ; <- e, ee ; -> s, se
    for step in 0..3 {
        let ours = (step % 2 == 0) == initiator;
        if ours {
            let n = hs.write_message(&[], &mut frame)?;
            write_frame(&mut stream, &frame[..n]).await?;
        } else {
            let n = read_frame(&mut stream, &mut frame).await?;
            // A failure here on message 1 means the dialer does not know our key: return
            // before writing anything, so it gets no answer.
            hs.read_message(&frame[..n], &mut scratch)?;
            if step == 0 {
                proven();
            }
        }
    }
    let transport = hs.into_stateless_transport_mode()?;
    // Hello: nonce 0 each way.
    let plain = Message::Hello(hello).encode();
    let n = transport.write_message(0, &plain, &mut frame)?;
    write_frame(&mut stream, &frame[..n]).await?;
    let n = read_frame(&mut stream, &mut frame).await?;
    let m = transport.read_message(0, &frame[..n], &mut scratch)?;
    match Message::decode(&scratch[..m])? {
        Message::Hello(h) if h.version == PROTOCOL_VERSION => Ok((stream, transport, h)),
        Message::Hello(h) => Err(LinkError::Protocol(format!(
            "protocol version {} not supported",
            h.version
        ))),
        other => Err(LinkError::Protocol(format!(
            "expected hello, got {}",
            other.kind()
        ))),
    }
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(2 + body.len());
    buf.extend_from_slice(&(body.len() as u16).to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf).await
}

async fn read_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> Result<usize, LinkError> {
    let len = r.read_u16().await? as usize;
    if len == 0 || len > buf.len() {
        return Err(LinkError::BadFrame(len));
    }
    r.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// What a running link tells its owner.
#[derive(Debug)]
pub enum LinkEvent<T> {
    /// A message arrived (never Hello, Ping or Pong: the link handles those).
    Message(T, Message),
    /// The link ended; no more messages will come from it.
    Closed(T, LinkError),
    /// A ping was answered after this long: one sample of the link's round trip.
    Rtt(T, std::time::Duration),
}

/// The owner's side of a running link. Dropping it closes the link gracefully (queued
/// messages are still sent).
#[derive(Debug)]
pub struct LinkHandle {
    tx: mpsc::Sender<Message>,
    reader: tokio::task::AbortHandle,
}

impl LinkHandle {
    /// Queues a message. Returns false if the link has closed, or if its queue is full
    /// (the peer does not keep up with what it asks for): then the link is closed now.
    pub fn send(&self, msg: Message) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.abort();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a message, waiting for room in the queue; false once the link has closed.
    /// For tools that produce as fast as the link drains (a node itself never waits on
    /// a peer: it uses [`LinkHandle::send`]).
    pub async fn send_when_room(&self, msg: Message) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Closes the link at once, dropping what is queued.
    pub fn abort(&self) {
        self.reader.abort();
    }
}

impl Link {
    /// The remote's static key (proved by the handshake).
    pub fn remote(&self) -> NodeKey {
        self.remote
    }

    /// The remote's Hello.
    pub fn remote_hello(&self) -> Hello {
        self.remote_hello
    }

    /// The remote socket address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Whether we dialled.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Counts this link's bytes into `traffic` once it runs.
    pub fn count_traffic(mut self, traffic: std::sync::Arc<Traffic>) -> Link {
        self.traffic = Some(traffic);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use veil_proto::{Htl, Location, RequestId, RoutingKey};

    fn hello(port: u16) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            location: Location(port as u64),
            listen_port: port,
        }
    }

    #[tokio::test]
    async fn handshake_and_messages() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let bc = b.clone();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            accept(s, &bc, hello(2), LinkParams::default())
                .await
                .unwrap()
        });
        let la = dial(addr, b.public(), &a, hello(1), LinkParams::default())
            .await
            .unwrap();
        let lb = srv.await.unwrap();
        assert_eq!(la.remote(), b.public());
        assert_eq!(lb.remote(), a.public());
        assert_eq!(la.remote_hello().listen_port, 2);
        assert_eq!(lb.remote_hello().listen_port, 1);
        let (itx, mut irx) = mpsc::channel(8);
        let ha = la.spawn(1u8, itx.clone());
        let _hb = lb.spawn(2u8, itx);
        let m = Message::Request {
            id: RequestId(9),
            key: RoutingKey([3; 32]),
            htl: Htl(4),
        };
        assert!(ha.send(m.clone()));
        // Each end pings at once and times the pong: a round-trip sample for each.
        let mut rtts = std::collections::BTreeSet::new();
        let mut got = None;
        while got.is_none() || rtts.len() < 2 {
            match irx.recv().await.unwrap() {
                LinkEvent::Rtt(tag, rtt) => {
                    assert!(rtt < std::time::Duration::from_secs(5), "{rtt:?}");
                    rtts.insert(tag);
                }
                LinkEvent::Message(2, msg) => got = Some(msg),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, Some(m));
        assert_eq!(rtts.into_iter().collect::<Vec<_>>(), vec![1, 2]);
        drop(ha);
        // Both ends report the close.
        let mut closed = 0;
        while closed < 2 {
            match irx.recv().await.unwrap() {
                LinkEvent::Closed(..) => closed += 1,
                LinkEvent::Rtt(..) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    /// A peer that does not read what it is sent (here: nobody reads its socket) gets
    /// its link closed once the queue is full, instead of growing our memory.
    #[tokio::test]
    async fn full_send_queue_closes_the_link() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let b_key = b.public();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            accept(s, &b, hello(2), LinkParams::default())
                .await
                .unwrap()
        });
        let la = dial(addr, b_key, &a, hello(1), LinkParams::default()).await;
        let (la, _lb) = (la.unwrap(), srv.await.unwrap());
        let (itx, mut irx) = mpsc::channel(8);
        let ha = la.spawn(1u8, itx);
        let (block, _) = veil_proto::block::encode(&[7; 1000]).unwrap();
        // The writer task cannot run while this loop holds the (single-threaded) runtime,
        // so the queue fills deterministically.
        let accepted = (0..2 * SEND_QUEUE)
            .take_while(|&i| {
                ha.send(Message::Data {
                    id: RequestId(i as u64),
                    block: block.clone(),
                })
            })
            .count();
        assert_eq!(accepted, SEND_QUEUE);
        assert!(matches!(irx.recv().await.unwrap(), LinkEvent::Closed(1, _)));
        assert!(!ha.send(Message::Ping { nonce: 1 }));
    }

    #[tokio::test]
    async fn wrong_key_gets_no_answer() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            accept(s, &b, hello(2), LinkParams::default()).await
        });
        let wrong = Identity::generate().public();
        let r = dial(addr, wrong, &a, hello(1), LinkParams::default()).await;
        assert!(r.is_err());
        assert!(matches!(srv.await.unwrap(), Err(LinkError::Noise(_))));
    }
}
