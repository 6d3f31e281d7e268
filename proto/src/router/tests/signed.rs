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

/// A store that counts the hashes the router asks of it.
#[derive(Default)]
struct Counting {
    mem: Mem,
    verified: usize,
}

impl BlockStore for Counting {
    fn get(&mut self, key: &RoutingKey) -> Option<(Block, Placement)> {
        self.mem.get(key)
    }

    fn verify(&mut self, key: &RoutingKey, block: &Block) -> bool {
        self.verified += 1;
        block.verify(key).is_ok()
    }
}

/// An insert of a block held here byte for byte is taken without hashing it again; any
/// other block under a held key is hashed: a forgery is misbehaviour, whether or not
/// the key's block is held.
#[test]
fn an_insert_of_a_held_block_is_not_hashed_again_and_a_forgery_still_is() {
    let (block, key) = blk(1);
    let mut forged = block.as_bytes().to_vec();
    forged[100] ^= 1;
    let forged = Block::new(bytes::Bytes::from(forged)).unwrap();
    let insert = |id, block: &Block| Message::Insert {
        id: RequestId(id),
        key,
        htl: Htl(5),
        replicas: 3,
        stored: 0,
        block: block.clone(),
    };
    let (mut r, now) = lone(&[1 << 62], cfg(1));
    let mut store = Counting::default();
    store
        .mem
        .blocks
        .insert(key, (block.clone(), Placement::Store));
    r.handle_message(now, PeerId(1), insert(1, &block), &mut store);
    assert_eq!(store.verified, 0, "the held copy vouches for it");
    assert_eq!(r.stats().bad_blocks, 0);
    drain(&mut r);
    events(&mut r);
    r.handle_message(now, PeerId(1), insert(2, &forged), &mut store);
    assert_eq!(store.verified, 1);
    assert!(matches!(events(&mut r)[..], [Event::PeerMisbehaved { .. }]));
    assert_eq!(r.stats().bad_blocks, 1);
    // Not held: hashed, and the real block goes on.
    store.mem.blocks.clear();
    let (mut r, now) = lone(&[1 << 62], cfg(1));
    r.handle_message(now, PeerId(1), insert(3, &block), &mut store);
    assert_eq!(store.verified, 2);
    assert_eq!(r.stats().bad_blocks, 0);
}
