//! Links under attack and from outside: a dial naming the wrong key fails; a dialer
//! naming a wrong key gets no answer; garbage thrown at the listener and into an open
//! link leaves the node routing for others; and a Noise handshake written here with
//! snow alone (not the node's link code) completes against a node.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use veil_node::identity::Identity;
use veil_node::link::{self, LinkParams, NOISE_PARAMS, PROLOGUE};
use veil_proto::message::PROTOCOL_VERSION;
use veil_proto::{Hello, Location, Message, NodeKey};
use veil_tests::{random_block, wait_for_peer, Testnet, Topology};

/// Writes one length-prefixed frame.
async fn send(s: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    s.write_all(&(body.len() as u16).to_be_bytes()).await?;
    s.write_all(body).await
}

/// Reads one length-prefixed frame.
async fn recv(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Reads until EOF and returns how many bytes came; bounded by `within`.
async fn bytes_until_close(s: &mut TcpStream, within: Duration) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("connection not closed in {within:?}"))?;
    Ok(n)
}

/// A raw XK initiator: snow only, our framing and prologue.
struct RawPeer {
    stream: TcpStream,
    transport: snow::TransportState,
    key: [u8; 32],
}

impl RawPeer {
    /// Connected to `node` and through the Hello exchange, taken into its peer table.
    async fn linked(node: &veil_node::NodeHandle) -> anyhow::Result<RawPeer> {
        let mut peer = RawPeer::connect(node.address().addr, &node.key()).await?;
        anyhow::ensure!(
            matches!(peer.recv_msg().await?, Message::Hello(_)),
            "no hello"
        );
        peer.send_msg(&Message::Hello(hello())).await?;
        wait_for_peer(node, NodeKey(peer.key), true).await?;
        Ok(peer)
    }

    async fn connect(addr: std::net::SocketAddr, remote: &NodeKey) -> anyhow::Result<RawPeer> {
        let kp = snow::Builder::new(NOISE_PARAMS.parse()?).generate_keypair()?;
        RawPeer::connect_as(addr, remote, &kp).await
    }

    async fn connect_as(
        addr: std::net::SocketAddr,
        remote: &NodeKey,
        kp: &snow::Keypair,
    ) -> anyhow::Result<RawPeer> {
        // snow's pure-Rust resolver, while veild uses `ring`'s ChaCha20-Poly1305: the
        // two must speak the same bytes.
        let mut hs = snow::Builder::with_resolver(
            NOISE_PARAMS.parse()?,
            Box::new(snow::resolvers::DefaultResolver),
        )
        .local_private_key(&kp.private)
        .remote_public_key(&remote.0)
        .prologue(b"veil/1")
        .build_initiator()?;
        let mut stream = TcpStream::connect(addr).await?;
        let mut buf = vec![0u8; 65535];
        let n = hs.write_message(&[], &mut buf)?;
        send(&mut stream, &buf[..n]).await?;
        let m2 = recv(&mut stream).await?;
        hs.read_message(&m2, &mut buf)?;
        let n = hs.write_message(&[], &mut buf)?;
        send(&mut stream, &buf[..n]).await?;
        let key = kp.public.as_slice().try_into()?;
        Ok(RawPeer {
            stream,
            transport: hs.into_transport_mode()?,
            key,
        })
    }

    async fn send_msg(&mut self, msg: &Message) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 65535];
        let n = self.transport.write_message(&msg.encode(), &mut buf)?;
        send(&mut self.stream, &buf[..n]).await?;
        Ok(())
    }

    async fn recv_msg(&mut self) -> anyhow::Result<Message> {
        let frame = recv(&mut self.stream).await?;
        let mut buf = vec![0u8; 65535];
        let n = self.transport.read_message(&frame, &mut buf)?;
        Ok(Message::decode(&buf[..n])?)
    }
}

async fn metrics_text(api: &veil_tests::Api) -> anyhow::Result<String> {
    Ok(api
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await?
        .text()
        .await?)
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        location: Location(42),
        listen_port: 0,
    }
}

#[test]
fn prologue_is_veil_1() {
    assert_eq!(PROLOGUE, b"veil/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_snow_handshake_completes() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let node = net.node(0);
    let mut peer = RawPeer::connect(node.address().addr, &node.key()).await?;
    match peer.recv_msg().await? {
        Message::Hello(h) => {
            assert_eq!(h.version, PROTOCOL_VERSION);
            assert_eq!(h.location, node.location());
        }
        other => panic!("expected hello, got {other:?}"),
    }
    peer.send_msg(&Message::Hello(hello())).await?;
    wait_for_peer(node, NodeKey(peer.key), true).await?;
    peer.send_msg(&Message::Ping { nonce: 77 }).await?;
    loop {
        match peer.recv_msg().await? {
            Message::Pong { nonce } => {
                assert_eq!(nonce, 77);
                break;
            }
            Message::Ping { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    net.shutdown().await;
    Ok(())
}

/// The node times its pings for latency-aware routing: a pong echoing the ping it awaits
/// is one round-trip sample; pongs sent before the ping, or with another nonce, are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_ping_is_one_round_trip_sample() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let node = net.node(0);
    let mut peer = RawPeer::linked(node).await?;
    // Guessed pongs, before any ping is seen: none may count.
    for nonce in 0..32 {
        peer.send_msg(&Message::Pong { nonce }).await?;
    }
    // The node pings a new link at once.
    let nonce = loop {
        if let Message::Ping { nonce } = peer.recv_msg().await? {
            break nonce;
        }
    };
    peer.send_msg(&Message::Pong { nonce: nonce ^ 1 }).await?;
    peer.send_msg(&Message::Pong { nonce }).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.counters().rtt_samples.get() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no sample counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its pong again: the ping was answered already.
    peer.send_msg(&Message::Pong { nonce }).await?;
    peer.send_msg(&Message::Ping { nonce: 5 }).await?;
    loop {
        if let Message::Pong { nonce: 5 } = peer.recv_msg().await? {
            break;
        }
    }
    assert_eq!(node.counters().rtt_samples.get(), 1);
    assert!(metrics_text(net.api(0))
        .await?
        .contains("veil_link_rtt_samples_total 1"));
    // The peer list shows the smoothed round trip.
    let peers: serde_json::Value = net
        .api(0)
        .request(reqwest::Method::GET, "/api/v1/peers")
        .send()
        .await?
        .json()
        .await?;
    let ours = peers
        .as_array()
        .and_then(|l| l.iter().find(|p| p["key"] == NodeKey(peer.key).to_string()))
        .expect("the raw peer listed");
    assert!(
        ours["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{ours}"
    );
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_fails_and_gets_no_answer() -> anyhow::Result<()> {
    let net = Testnet::start(1, Topology::None).await?;
    let node = net.node(0);
    let addr = node.address().addr;
    let me = Identity::generate();
    let wrong = Identity::generate().public();

    // Our own link code: the dial fails.
    let r = link::dial(addr, wrong, &me, hello(), LinkParams::default()).await;
    assert!(r.is_err(), "dial naming the wrong key must fail");

    // Raw: handshake message 1 for the wrong key; the listener must send nothing back.
    let mut hs = snow::Builder::new(NOISE_PARAMS.parse()?)
        .local_private_key(me.secret_bytes())
        .remote_public_key(&wrong.0)
        .prologue(PROLOGUE)
        .build_initiator()?;
    let mut buf = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut buf)?;
    let mut s = TcpStream::connect(addr).await?;
    send(&mut s, &buf[..n]).await?;
    assert_eq!(bytes_until_close(&mut s, Duration::from_secs(10)).await?, 0);

    // And the right key still works.
    let ok = link::dial(addr, node.key(), &me, hello(), LinkParams::default()).await;
    assert!(ok.is_ok());
    assert!(node.counters().handshake_failures.get() >= 2);
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_leaves_the_node_routing() -> anyhow::Result<()> {
    use rand::{RngCore, SeedableRng};
    let net = Testnet::start(3, Topology::Line).await?;
    let b = net.node(1);
    let addr = b.address().addr;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);

    // Random bytes at the listener: the connection is closed without a word.
    for len in [1usize, 2, 3, 100, 70_000] {
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        let mut s = TcpStream::connect(addr).await?;
        // The node may hang up before it has read everything: a failed write is fine.
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
        assert_eq!(bytes_until_close(&mut s, Duration::from_secs(10)).await?, 0);
    }

    // Garbage inside open links: a frame that does not decrypt, a frame that decrypts
    // to no message, and a second Hello. Each closes only that link, and the peer that
    // sent it is refused for a while.
    let mut keys = Vec::new();
    for case in 0..3 {
        let kp = snow::Builder::new(NOISE_PARAMS.parse()?).generate_keypair()?;
        let mut peer = RawPeer::connect_as(addr, &b.key(), &kp).await?;
        keys.push(kp);
        let _their_hello = peer.recv_msg().await?;
        peer.send_msg(&Message::Hello(hello())).await?;
        wait_for_peer(b, NodeKey(peer.key), true).await?;
        match case {
            0 => {
                let mut junk = vec![0u8; 500];
                rng.fill_bytes(&mut junk);
                send(&mut peer.stream, &junk).await?;
            }
            1 => {
                let mut buf = vec![0u8; 1024];
                let n = peer
                    .transport
                    .write_message(&[0xff, 0xff, 0xff], &mut buf)?;
                send(&mut peer.stream, &buf[..n]).await?;
            }
            _ => peer.send_msg(&Message::Hello(hello())).await?,
        }
        wait_for_peer(b, NodeKey(peer.key), false).await?;
    }
    assert!(b.counters().link_errors.get() >= 3);
    assert!(b.counters().peers_banned.get() >= 2);
    let defence = b.status().await?.defence;
    assert!(defence.peers_banned >= 2 && defence.link_errors >= 3);
    // The peer that sent an undecodable message comes back: its handshake completes,
    // then the node hangs up without taking the link.
    let mut again = RawPeer::connect_as(addr, &b.key(), &keys[1]).await?;
    let _their_hello = again.recv_msg().await?;
    again.send_msg(&Message::Hello(hello())).await?;
    bytes_until_close(&mut again.stream, Duration::from_secs(10)).await?;
    assert!(!b
        .peers()
        .iter()
        .any(|p| p.key.0 == keys[1].public.as_slice()));

    // B still routes for A and C.
    assert_eq!(b.peers().len(), 2);
    let (key, block) = random_block(11, 5000);
    net.api(2).put_block(&key, &block, Some(0)).await?;
    assert_eq!(net.api(0).get_block(&key, Some(5)).await?, block);
    net.shutdown().await;
    Ok(())
}

/// Signed blocks from a peer: a valid one is kept, a second, different one under the same
/// key is answered with the first (a collision), and a forged one is refused, counted in
/// the metrics, never stored nor served, and costs its sender the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_blocks_from_a_peer_are_checked() -> anyhow::Result<()> {
    use veil_proto::message::{Htl, RequestId};
    use veil_proto::ssk::{KeyPair, HEADER_LEN};
    let net = Testnet::start(1, Topology::None).await?;
    let node = net.node(0);
    let mut peer = RawPeer::linked(node).await?;
    let pair = KeyPair::from_secret([5; 32], [6; 32]);
    let (first, key) = pair.sign("page", b"the first", [1; 12])?;
    let (second, _) = pair.sign("page", b"another", [2; 12])?;
    let insert = |id, block| Message::Insert {
        id: RequestId(id),
        key,
        htl: Htl(5),
        replicas: 3,
        stored: 0,
        block,
    };
    // The first is taken (stored or cached: the node has no other peer).
    peer.send_msg(&insert(1, first.clone())).await?;
    loop {
        match peer.recv_msg().await? {
            Message::Ping { .. } | Message::Pong { .. } | Message::PeerInfo { .. } => {}
            m if m.request_id() == Some(RequestId(1)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(node.store_contains(&key));
    // The second under the same key: refused, and the first comes back.
    peer.send_msg(&insert(2, second)).await?;
    loop {
        match peer.recv_msg().await? {
            Message::Data {
                id: RequestId(2),
                block,
            } => {
                assert_eq!(block, first);
                break;
            }
            Message::Ping { .. } | Message::Pong { .. } | Message::PeerInfo { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(net.api(0).counter("collisions").await?, 1);
    // A forgery: the first block with one bit of its sealed payload flipped.
    let mut bytes = first.as_bytes().to_vec();
    bytes[HEADER_LEN + 9] ^= 1;
    let forged = veil_proto::Block::new(bytes.clone().into())?;
    let forged_insert = Message::Insert {
        id: RequestId(3),
        key,
        htl: Htl(5),
        replicas: 3,
        stored: 0,
        block: forged,
    };
    peer.send_msg(&forged_insert).await?;
    wait_for_peer(node, NodeKey(peer.key), false).await?;
    assert_eq!(net.api(0).counter("bad_blocks").await?, 1);
    let metrics = metrics_text(net.api(0)).await?;
    assert!(metrics.contains("veil_bad_blocks_total 1"), "{metrics}");
    // Put through the API, the same forgery is refused with a typed error and counted.
    let resp = net
        .api(0)
        .request(reqwest::Method::PUT, &format!("/api/v1/blocks/{key}"))
        .body(bytes)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await?.contains("block_mismatch"));
    let metrics = metrics_text(net.api(0)).await?;
    assert!(metrics.contains("veil_api_bad_blocks_total 1"), "{metrics}");
    // Never stored nor served: the first is, unchanged.
    assert_eq!(net.api(0).get_block(&key, Some(0)).await?, first);
    net.shutdown().await;
    Ok(())
}
