//! What an eavesdropper on the links sees: three nodes in a line whose links run through
//! recording proxies on loopback; a known text is published at one end and fetched at the
//! other, and neither the text nor any of its URI's keys appears in the recorded bytes.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use veil_proto::PeerAddress;
use veil_tests::{wait_for_peer, Testnet, Topology};

type Tape = Arc<Mutex<Vec<u8>>>;

/// Copies `from` to `to`, appending every byte to `tape`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    tape: Tape,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                tape.lock().expect("tape").extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A proxy on loopback that forwards every connection to `target`, recording both ways.
async fn proxy(target: std::net::SocketAddr, tape: Tape) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else {
                continue;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(pump(ir, ow, tape.clone()));
            tokio::spawn(pump(or, iw, tape.clone()));
        }
    });
    addr
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_carry_neither_the_text_nor_its_keys() {
    let net = Testnet::start(3, Topology::None).await.expect("testnet");
    let tape: Tape = Arc::default();
    // 0 -> 1 and 1 -> 2, each through a proxy in front of the node dialled.
    for (a, b) in [(0usize, 1usize), (1, 2)] {
        let real = net.node(b).address();
        let via = proxy(real.addr, tape.clone()).await;
        net.node(a).connect(PeerAddress {
            key: real.key,
            addr: via,
        });
        wait_for_peer(net.node(a), real.key, true)
            .await
            .expect("linked");
        wait_for_peer(net.node(b), net.node(a).key(), true)
            .await
            .expect("linked back");
    }
    // A known text, recognisable in any 32-byte window.
    let text: Vec<u8> = "The quick brown fox files the secret report. "
        .repeat(2000)
        .into_bytes();
    let client = veil_client::ApiClient::new(&net.api(0).base, &net.api(0).token).expect("api");
    let uri = veil_client::encode(
        &client,
        &text[..],
        &veil_client::EncodeOptions::named("secret.txt"),
        |_| {},
    )
    .await
    .expect("publish")
    .uri;
    let reader = veil_client::ApiClient::new(&net.api(2).base, &net.api(2).token).expect("api");
    let top = veil_client::fetch_top(&reader, uri.keys)
        .await
        .expect("top");
    let mut got = Vec::new();
    veil_client::write_body(reader, top, 8, &mut got, |_| {})
        .await
        .expect("fetch");
    assert_eq!(got, text, "the document crossed the links");

    let tape = tape.lock().expect("tape").clone();
    assert!(
        tape.len() > text.len(),
        "the proxies saw the traffic ({} bytes)",
        tape.len()
    );
    assert!(!contains(&tape, &text[..32]), "plaintext on the wire");
    assert!(!contains(&tape, b"secret.txt"), "the name on the wire");
    for key in [uri.keys.routing.0, uri.keys.data.0] {
        assert!(!contains(&tape, &key), "a URI key on the wire");
        assert!(
            !contains(&tape, uri.keys.routing.to_text().as_bytes()),
            "a URI key's text on the wire"
        );
    }
    assert!(!contains(&tape, uri.keys.data.to_text().as_bytes()));
    println!(
        "capture: {} bytes recorded on two links; no plaintext, name or URI key among them",
        tape.len()
    );
    net.shutdown().await;
}
