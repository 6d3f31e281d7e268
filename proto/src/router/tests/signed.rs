//! Signed (SSK) blocks in the router: verified like any block, a forgery refused and
//! counted, and a second, different block under the same key refused as a collision.

use super::*;
use crate::ssk::KeyPair;

fn signed(content: &[u8]) -> (Block, RoutingKey) {
    KeyPair::from_secret([3; 32], [4; 32])
        .sign("site-1", content, [0; 12])
        .unwrap()
}

#[test]
fn a_forged_signed_block_is_refused_and_counted() {
    let (block, key) = signed(b"first");
    let mut forged = block.as_bytes().to_vec();
    forged[crate::ssk::HEADER_LEN + 5] ^= 0x80;
    let forged = Block::new(bytes::Bytes::from(forged)).unwrap();
    let (mut r, now) = lone(&[1 << 62], cfg(1));
    let mut store = Mem::default();
    let insert = Message::Insert {
        id: RequestId(1),
        key,
        htl: Htl(5),
        replicas: 3,
        stored: 0,
        block: forged,
    };
    r.handle_message(now, PeerId(1), insert, &mut store);
    assert!(drain(&mut r).is_empty(), "no answer, not forwarded");
    assert!(matches!(events(&mut r)[..], [Event::PeerMisbehaved { .. }]));
    assert_eq!(r.stats().bad_blocks, 1);
    assert!(store.blocks.is_empty(), "never stored");
}

#[test]
fn a_collision_leaves_the_first_block_in_place() {
    let (first, key) = signed(b"first");
    let (second, key2) = signed(b"second, different");
    assert_eq!(key, key2);
    // A line of three nodes around the key; node 2 is nearest.
    let kl = Location::of_key(&key).0;
    let locs: Vec<u64> = (0..3u64).map(|i| kl.wrapping_add((3 - i) << 40)).collect();
    let mut net = Net::line(&locs);
    let id = net.insert_as(0, key, first.clone(), None, None);
    net.drive();
    assert!(matches!(net.insert_result(0, id), Some(Ok(_))));
    assert_eq!(net.placement(2, &key), Some(Placement::Store));
    // The same name, other content, from the same publisher: refused further on.
    let id = net.insert_as(0, key, second, None, None);
    net.drive();
    assert_eq!(
        net.insert_result(0, id),
        Some(Err(InsertFailure::Collision))
    );
    for n in 1..3 {
        if let Some((b, _)) = net.nodes[n].store.blocks.get(&key) {
            assert_eq!(*b, first, "node {n} keeps the first");
        }
    }
    // Met at the node that holds the first block (2), and counted again by each node
    // the answer passes on its way back.
    let collisions: Vec<u64> = net
        .nodes
        .iter()
        .map(|n| n.router.stats().collisions)
        .collect();
    assert_eq!(collisions, vec![1, 1, 1]);
    // Readers still get the first.
    let req = net.request(0, key, None);
    net.drive();
    assert_eq!(net.request_result(0, req).unwrap().unwrap().block, first);
    // Inserting the very same block again is no collision.
    let id = net.insert_as(0, key, first, None, None);
    net.drive();
    assert!(matches!(net.insert_result(0, id), Some(Ok(_))));
}
