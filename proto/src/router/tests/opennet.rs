//! Opennet: announcement, path folding and the link policy, on routers poked by hand
//! and on a small in-memory network whose shell links whatever `Event::Connect` names.

use super::*;
use crate::keys::NodeKey;
use crate::message::PeerAddress;

pub(super) fn addr(i: usize) -> PeerAddress {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    PeerAddress {
        key: NodeKey(k),
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
    }
}

fn node_of(key: &NodeKey) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key.0[..8]);
    u64::from_be_bytes(b) as usize - 1
}

pub(super) fn open_cfg(seed: u64, max_peers: usize) -> RouterConfig {
    RouterConfig {
        opennet: OpennetConfig {
            enabled: true,
            min_peers: 2,
            max_peers,
            min_peer_age: Duration::ZERO,
            // These tests follow single mechanisms timer by timer; neighbour lists
            // have a test of their own.
            foaf: false,
            ..OpennetConfig::default()
        },
        ..cfg(seed)
    }
}

/// An opennet network: every router knows its address; links made by the test carry
/// addresses and origins.
fn open_net(locations: &[u64], max_peers: usize) -> Net {
    let mut net = Net::new(locations, |s| open_cfg(s, max_peers));
    for i in 0..locations.len() {
        net.nodes[i].router.set_address(addr(i));
    }
    net
}

impl Net {
    /// Links `a` (which dialled, for `origin`) and `b` the way a shell does: both ask
    /// the router, and a refusal on either side means no link.
    fn open_link(&mut self, a: usize, b: usize, origin: PeerOrigin) -> bool {
        let now = self.now;
        let (la, lb) = (
            self.nodes[a].router.location(),
            self.nodes[b].router.location(),
        );
        let (da, oa) = self.nodes[a]
            .router
            .link_decision(now, &addr(b).key, lb, origin);
        let (db, ob) =
            self.nodes[b]
                .router
                .link_decision(now, &addr(a).key, la, PeerOrigin::Inbound);
        if matches!(da, LinkDecision::Refuse | LinkDecision::Transient)
            || db == LinkDecision::Refuse
        {
            self.nodes[a].router.connect_failed(&addr(b).key);
            return false;
        }
        for (n, d) in [(a, da), (b, db)] {
            if let LinkDecision::Replace(v) = d {
                self.nodes[n].router.remove_peer(now, v);
                let other = v.0 as usize;
                self.nodes[other].router.remove_peer(now, PeerId(n as u64));
            }
        }
        let meta = |o, address, routable| PeerMeta {
            origin: o,
            address: Some(address),
            routable,
        };
        self.nodes[a]
            .router
            .add_peer_with(now, PeerId(b as u64), lb, meta(oa, addr(b), true));
        self.nodes[b].router.add_peer_with(
            now,
            PeerId(a as u64),
            la,
            meta(ob, addr(a), db != LinkDecision::Transient),
        );
        self.flush(a);
        self.flush(b);
        true
    }

    /// Runs to idle, linking every `Connect` as it appears; returns what was linked.
    fn drive_open(&mut self) -> Vec<(usize, usize, PeerOrigin)> {
        let mut linked = Vec::new();
        for _ in 0..200 {
            self.drive_until_quiet();
            let mut todo = Vec::new();
            for (n, node) in self.nodes.iter_mut().enumerate() {
                for ev in node.events.drain(..) {
                    if let Event::Connect { address, origin } = ev {
                        todo.push((n, node_of(&address.key), origin));
                    }
                }
            }
            if todo.is_empty() {
                return linked;
            }
            for (a, b, o) in todo {
                if self.open_link(a, b, o) {
                    linked.push((a, b, o));
                }
            }
        }
        panic!("linking never settled");
    }

    /// Delivers messages until none are in flight (timers that are far off wait).
    fn drive_until_quiet(&mut self) {
        for _ in 0..100_000 {
            if !self.deliver_next() {
                return;
            }
        }
        panic!("network did not go quiet");
    }

    /// Moves the clock to node `n`'s next timer and fires it (an announcement or a
    /// stabilisation round), then links what comes of it; returns when that was.
    fn fire_timer_and_link(&mut self, n: usize) -> Instant {
        let due = self.nodes[n].router.poll_timeout().expect("a timer is due");
        self.now = self.now.max(due);
        self.nodes[n].router.handle_timeout(self.now);
        self.flush(n);
        self.drive_open();
        due
    }

    fn peers_of(&self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self.nodes[n]
            .router
            .peers
            .iter()
            .filter(|p| p.routable)
            .map(|p| p.id.0 as usize)
            .collect();
        v.sort_unstable();
        v
    }
}

pub(super) const STEP: u64 = u64::MAX / 16;

/// Nodes 0..16 evenly round the ring, each linked to its ring neighbours and to the
/// node opposite: routable, but with room for more.
fn ring_net(max_peers: usize) -> Net {
    let locs: Vec<u64> = (0..16).map(|i| i * STEP).collect();
    let mut net = open_net(&locs, max_peers);
    for i in 0..16 {
        net.open_link(i, (i + 1) % 16, PeerOrigin::Friend);
        if i < 8 {
            net.open_link(i, i + 8, PeerOrigin::Friend);
        }
    }
    net
}

/// A newcomer that knows one seed ends up linked to its two ring neighbours (and to
/// nodes on the way), and lets the seed go.
#[test]
fn announcement_finds_the_ring_neighbours() {
    let mut locs: Vec<u64> = (0..16).map(|i| i * STEP).collect();
    // The newcomer sits between nodes 11 and 12.
    locs.push(11 * STEP + STEP / 3);
    let mut net = open_net(&locs, 6);
    for i in 0..16 {
        net.open_link(i, (i + 1) % 16, PeerOrigin::Friend);
        if i < 8 {
            net.open_link(i, i + 8, PeerOrigin::Friend);
        }
    }
    let newcomer = 16;
    assert!(net.open_link(newcomer, 0, PeerOrigin::Seed));
    // The router announces on its own, from its timer.
    let due = net.nodes[newcomer]
        .router
        .poll_timeout()
        .expect("announce due");
    net.now = net.now.max(due);
    net.nodes[newcomer].router.handle_timeout(net.now);
    net.flush(newcomer);
    let linked = net.drive_open();
    let peers = net.peers_of(newcomer);
    assert!(
        peers.contains(&11) && peers.contains(&12),
        "peers {peers:?}, linked {linked:?}"
    );
    assert!(linked
        .iter()
        .all(|&(a, _, o)| a == newcomer && o == PeerOrigin::Announcement));
    assert_eq!(
        net.nodes[newcomer].router.stats().opennet.announces_started,
        1
    );
    // Nodes 11 and 12 know the newcomer as found by announcement.
    let origin = net.nodes[11].router.peers().origin(PeerId(newcomer as u64));
    assert_eq!(origin, Some(PeerOrigin::Announcement));
    // With min_peers (2) others, the seed link is released: no longer routable, and
    // the shell was asked to close it.
    assert!(!net.nodes[newcomer].router.peers().is_routable(PeerId(0)));
    assert!(net.nodes[newcomer].router.stats().opennet.peers_dropped >= 1);
}

/// An island heals through the seed: two nodes cut off from the rest (their other
/// peers gone at once) announce through each other in vain and back off; when the
/// shell links a seed again, the next announcement goes through it at once and meets
/// the rest of the ring.
#[test]
fn an_island_announces_through_a_seed_linked_again() {
    let mut locs: Vec<u64> = (0..16).map(|i| i * STEP).collect();
    locs.push(5 * STEP + STEP / 3);
    locs.push(5 * STEP + 2 * STEP / 3);
    // Short of peers below three, so that the seed link alone does not end the want.
    let mut net = Net::new(&locs, |s| {
        let mut c = open_cfg(s, 8);
        c.opennet.min_peers = 3;
        c
    });
    for i in 0..locs.len() {
        net.nodes[i].router.set_address(addr(i));
    }
    for i in 0..16 {
        net.open_link(i, (i + 1) % 16, PeerOrigin::Friend);
        if i < 8 {
            net.open_link(i, i + 8, PeerOrigin::Friend);
        }
    }
    let (a, b) = (16, 17);
    assert!(net.open_link(a, b, PeerOrigin::Announcement));
    // Each has one peer, fewer than `min_peers` (3): they announce through each other,
    // meet nobody new, and the pause between announcements grows.
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let before = net.now;
        let due = net.fire_timer_and_link(a);
        gaps.push(due.saturating_duration_since(before));
    }
    assert_eq!(net.peers_of(a), vec![b], "still an island");
    assert!(gaps[3] > gaps[1], "backing off: {gaps:?}");
    // The shell links the seed (node 0) again.
    let linked_at = net.now;
    assert!(net.open_link(a, 0, PeerOrigin::Seed));
    let due = net.fire_timer_and_link(a);
    assert_eq!(due, linked_at, "announces at once, not after the back-off");
    let peers = net.peers_of(a);
    assert!(
        peers.contains(&5) && peers.contains(&6),
        "meets its ring neighbours through the seed: {peers:?}"
    );
}

/// A full node makes room for a newcomer by dropping its least recently successful
/// opennet peer, never a friend and never one of its nearest ring neighbours; with no
/// such peer, an inbound newcomer gets a transient link, and past the slots, none.
#[test]
fn a_full_node_replaces_the_least_recently_successful_opennet_peer() {
    let now = Instant::now();
    let mut config = open_cfg(1, 4);
    config.opennet.transient_slots = 1;
    let mut r = Router::new(config, Location(0));
    r.set_address(addr(0));
    let meta = |o, i| PeerMeta {
        origin: o,
        address: Some(addr(i)),
        routable: true,
    };
    // Two ring neighbours each side (protected), all opennet.
    let near = [
        STEP / 100,
        STEP / 50,
        u64::MAX - STEP / 100,
        u64::MAX - STEP / 50,
    ];
    for (i, l) in near.iter().enumerate() {
        r.add_peer_with(
            now,
            PeerId(i as u64 + 1),
            Location(*l),
            meta(PeerOrigin::Announcement, i + 1),
        );
    }
    // Full, and every peer is a protected neighbour: a far newcomer is transient...
    let far = Location(8 * STEP);
    assert_eq!(
        r.link_decision(now, &addr(9).key, far, PeerOrigin::Inbound)
            .0,
        LinkDecision::Transient
    );
    r.add_peer_with(
        now,
        PeerId(9),
        far,
        PeerMeta {
            routable: false,
            ..meta(PeerOrigin::Inbound, 9)
        },
    );
    // ...and with the one transient slot taken, the next is refused.
    assert_eq!(
        r.link_decision(now, &addr(10).key, far, PeerOrigin::Inbound)
            .0,
        LinkDecision::Refuse
    );
    assert_eq!(r.stats().opennet.links_refused, 1);
    // Transient links are closed when their time is up.
    let later = now + r.config().opennet.transient_ttl;
    r.handle_timeout(later);
    let evs = events(&mut r);
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::Disconnect {
                peer: PeerId(9),
                ..
            }
        )),
        "{evs:?}"
    );
    r.remove_peer(later, PeerId(9));

    // Swap one neighbour for two far opennet peers and a friend.
    r.remove_peer(later, PeerId(4));
    r.add_peer_with(
        later,
        PeerId(5),
        Location(3 * STEP),
        meta(PeerOrigin::PathFolding, 5),
    );
    assert_eq!(r.peers().routable(), 4);
    let t = later + Duration::from_secs(60);
    // Peer 5 delivers nothing; a far newcomer replaces it (the only droppable one).
    assert_eq!(
        r.link_decision(t, &addr(11).key, Location(5 * STEP), PeerOrigin::Inbound)
            .0,
        LinkDecision::Replace(PeerId(5))
    );
    // Within drop_interval, no second replacement for a far newcomer.
    r.remove_peer(t, PeerId(5));
    r.add_peer_with(
        t,
        PeerId(11),
        Location(5 * STEP),
        meta(PeerOrigin::Announcement, 11),
    );
    assert_ne!(
        r.link_decision(t, &addr(12).key, Location(6 * STEP), PeerOrigin::Inbound)
            .0,
        LinkDecision::Replace(PeerId(11))
    );
    // A friend is never dropped.
    let mut f = Router::new(open_cfg(2, 1), Location(0));
    f.add_peer(t, PeerId(1), Location(4 * STEP));
    assert_eq!(
        f.link_decision(
            t + Duration::from_secs(60),
            &addr(3).key,
            Location(STEP),
            PeerOrigin::PathFolding
        )
        .0,
        LinkDecision::Refuse
    );
}

/// Hostile announcements: our own address, a replayed id and a reply for an
/// announcement nobody made change nothing.
#[test]
fn hostile_announcements_change_nothing() {
    let mut net = ring_net(8);
    let now = net.now;
    let r = &mut net.nodes[3].router;
    let own = addr(3);
    r.handle_message(
        now,
        PeerId(2),
        Message::Announce {
            id: RequestId(77),
            target: Location(0),
            address: own,
            htl: Htl(18),
        },
        &mut Mem::default(),
    );
    assert!(drain(r).is_empty());
    let stranger = addr(40);
    let msg = Message::Announce {
        id: RequestId(78),
        target: Location(5),
        address: stranger,
        htl: Htl(18),
    };
    r.handle_message(now, PeerId(2), msg.clone(), &mut Mem::default());
    let first = drain(r).len();
    assert!(first > 0);
    r.handle_message(now, PeerId(4), msg, &mut Mem::default());
    assert!(drain(r).is_empty(), "a replayed announcement is dropped");
    r.handle_message(
        now,
        PeerId(2),
        Message::AnnounceReply {
            id: RequestId(999),
            address: stranger,
            location: Location(5),
        },
        &mut Mem::default(),
    );
    r.handle_message(
        now,
        PeerId(2),
        Message::FoldOffer {
            id: RequestId(999),
            address: stranger,
        },
        &mut Mem::default(),
    );
    assert!(drain(r).is_empty());
    assert!(!events(r).iter().any(|e| matches!(e, Event::Connect { .. })));
}

/// After a request succeeds, the data source's address is offered back down the
/// path; a node far enough from the originator takes it, the originator never does.
#[test]
fn path_folding_offers_the_source_and_spares_the_originator() {
    // A line 0-1-...-6; 6 holds the block.
    let locs: Vec<u64> = (0..7).map(|i| i * STEP).collect();
    let mut net = open_net(&locs, 8);
    for i in 0..6 {
        net.open_link(i, i + 1, PeerOrigin::Friend);
    }
    let (b, key) = blk(1);
    net.hold(6, key, &b);
    let id = net.request(0, key, None);
    net.drive_until_quiet();
    assert!(matches!(net.request_result(0, id), Some(Ok(_))));
    let offers: Vec<(usize, PeerAddress)> = (0..7)
        .flat_map(|n| {
            net.nodes[n]
                .received
                .iter()
                .filter_map(move |(_, m)| match m {
                    Message::FoldOffer { address, .. } => Some((n, *address)),
                    _ => None,
                })
        })
        .collect();
    // The source (6) offered itself to 5.
    assert!(offers.contains(&(5, addr(6))), "{offers:?}");
    assert_eq!(net.nodes[6].router.stats().opennet.fold_offers, 1);
    // Nobody near the originator (HTL above max - 2 when received) takes it, and the
    // originator never does.
    let takers: Vec<usize> = (0..7)
        .filter(|&n| {
            net.nodes[n].events.iter().any(|e| {
                matches!(
                    e,
                    Event::Connect {
                        origin: PeerOrigin::PathFolding,
                        ..
                    }
                )
            })
        })
        .collect();
    assert_eq!(
        takers.len(),
        1,
        "exactly one node takes the offer: {takers:?}"
    );
    assert!(takers[0] >= 2, "{takers:?}");
    let taken: u64 = (0..7)
        .map(|n| net.nodes[n].router.stats().opennet.folds_taken)
        .sum();
    assert_eq!(taken, 1);
}

/// Stabilisation: a node that missed its ring neighbour meets it within one
/// `stabilize_interval`, through its nearest peer on that side.
#[test]
fn stabilisation_finds_a_missed_ring_neighbour() {
    // X=0 at 0; Y=1 just clockwise of X; C=2 beyond Y; W=3 counter-clockwise of X.
    let locs = [0, STEP, 2 * STEP, u64::MAX - STEP];
    let mut net = open_net(&locs, 8);
    net.open_link(0, 2, PeerOrigin::Announcement);
    net.open_link(0, 3, PeerOrigin::Announcement);
    net.open_link(2, 1, PeerOrigin::Announcement);
    net.open_link(1, 3, PeerOrigin::Announcement);
    net.drive_open();
    assert!(!net.peers_of(0).contains(&1));
    let before = net.now;
    let due = net.fire_timer_and_link(0);
    assert!(due <= before + net.nodes[0].router.config().opennet.stabilize_interval);
    assert!(net.peers_of(0).contains(&1), "{:?}", net.peers_of(0));
    assert_eq!(
        net.nodes[0].router.peers().origin(PeerId(1)),
        Some(PeerOrigin::Announcement)
    );
}

/// A settled node stabilises less and less often: while its nearest peer on each side
/// stays the same the pause doubles, up to `stabilize_max_interval`; a nearer peer
/// arriving brings the short pause back at once.
#[test]
fn stabilisation_backs_off_while_the_ring_is_settled_and_not_after() {
    // Node 0 at 0 with ring neighbours 1 (clockwise) and 2 (counter-clockwise), linked
    // to each other too; node 4, far off, and node 3, just clockwise of 0, come later.
    let locs = [0, 2 * STEP, u64::MAX - 2 * STEP, STEP, 8 * STEP];
    let mut net = open_net(&locs, 8);
    net.open_link(0, 1, PeerOrigin::Announcement);
    net.open_link(0, 2, PeerOrigin::Announcement);
    net.open_link(1, 2, PeerOrigin::Announcement);
    net.drive_open();
    let config = net.nodes[0].router.config().opennet.clone();
    let short = config.stabilize_interval;
    let mut pauses = Vec::new();
    let mut last = net.fire_timer_and_link(0);
    for _ in 0..8 {
        let due = net.fire_timer_and_link(0);
        pauses.push(due - last);
        last = due;
    }
    assert_eq!(net.peers_of(0), vec![1, 2], "nothing new to meet");
    let want: Vec<Duration> = (0..8)
        .map(|k| (short * (1 << k)).min(config.stabilize_max_interval))
        .collect();
    assert_eq!(pauses, want);
    // A far peer links in: the neighbourhood is the same, so is the long pause.
    assert!(net.open_link(4, 0, PeerOrigin::Announcement));
    net.drive_open();
    assert_eq!(
        net.nodes[0].router.poll_timeout(),
        Some(last + config.stabilize_max_interval)
    );
    // A nearer clockwise neighbour links in: the next look round is one short pause
    // away, and it starts doubling again only from there.
    assert!(net.open_link(3, 0, PeerOrigin::Announcement));
    net.drive_open();
    let due = net.nodes[0]
        .router
        .poll_timeout()
        .expect("a stabilisation is due");
    assert!(
        due <= net.now + short,
        "{:?} after the change",
        due - net.now
    );
    let first = net.fire_timer_and_link(0);
    let second = net.fire_timer_and_link(0);
    assert_eq!(
        second - first,
        short,
        "the new neighbourhood is checked at the short pause"
    );
}

/// A walk that stops at a local minimum which does not know the newcomer's other
/// neighbour goes on for a few hops through the neighbourhood and still meets it.
#[test]
fn an_announcement_goes_past_a_local_minimum() {
    let s = STEP / 16;
    // 0: seed far away; 1: A at 10s; 2: C at 9s; 3: B at 11.5s; 4: newcomer at 11s.
    let locs = [100 * s, 10 * s, 9 * s, 11 * s + s / 2, 11 * s];
    let mut net = open_net(&locs, 8);
    net.open_link(0, 1, PeerOrigin::Friend);
    net.open_link(1, 2, PeerOrigin::Friend);
    net.open_link(2, 3, PeerOrigin::Friend);
    let newcomer = 4;
    assert!(net.open_link(newcomer, 0, PeerOrigin::Seed));
    net.fire_timer_and_link(newcomer);
    // A is where greedy routing stops; B, which A does not know, is found past it.
    let peers = net.peers_of(newcomer);
    assert!(peers.contains(&1) && peers.contains(&3), "{peers:?}");
}

/// Friend-of-a-friend: a node that learns its peers' neighbours routes through the peer
/// that knows a node near the key, even when that peer itself is farther than another.
#[test]
fn neighbour_lists_route_through_the_peer_that_knows_the_key() {
    // Node 0 at 0 has peers 1 (just under 5/8) and 2 (at 3/8); node 2 is linked to node 3
    // at 6/8 + a bit, where the key is. On locations alone node 0 would send to node 1,
    // the closer of its peers; knowing node 2's neighbours, it sends to node 2.
    let q = u64::MAX / 8;
    let locs = [0, 5 * q - (q >> 4), 3 * q, 6 * q + (q >> 3)];
    let mut net = Net::new(&locs, |s| RouterConfig {
        opennet: OpennetConfig {
            enabled: true,
            min_peers: 1,
            max_peers: 8,
            min_peer_age: Duration::ZERO,
            ..OpennetConfig::default()
        },
        ..cfg(s)
    });
    for i in 0..locs.len() {
        net.nodes[i].router.set_address(addr(i));
    }
    net.open_link(0, 1, PeerOrigin::Announcement);
    net.open_link(0, 2, PeerOrigin::Announcement);
    net.open_link(2, 3, PeerOrigin::Announcement);
    net.drive_open();
    // Each node's list is due at once: fire the timers and deliver.
    for n in 0..locs.len() {
        net.nodes[n].router.handle_timeout(net.now);
        net.flush(n);
    }
    net.drive_until_quiet();
    // Node 0 knows node 2 is linked to node 3.
    assert!(net.nodes[0].received.iter().any(|(from, m)| *from == PeerId(2)
        && matches!(m, Message::Neighbours { locations } if locations.as_slice().contains(&Location(locs[3])))));
    let key = key_at(locs[3]);
    let id = net.request(0, key, Some(Htl(3)));
    net.drive_until_quiet();
    let first_hop = net.nodes[0]
        .received
        .iter()
        .chain(net.nodes[1].received.iter())
        .chain(net.nodes[2].received.iter())
        .find_map(|(from, m)| match m {
            Message::Request { id: i, .. } if *i == id && *from == PeerId(0) => Some(()),
            _ => None,
        });
    assert!(first_hop.is_some());
    assert!(
        net.nodes[2]
            .received
            .iter()
            .any(|(from, m)| *from == PeerId(0) && matches!(m, Message::Request { .. })),
        "node 0 routed through node 2, which knows the key's neighbourhood"
    );
    assert!(
        !net.nodes[1]
            .received
            .iter()
            .any(|(_, m)| matches!(m, Message::Request { .. })),
        "not through node 1, closer itself but knowing nobody closer"
    );
}

/// A peer that passes us addresses nobody answers at pays for them: after
/// `MAX_BAD_OFFERS` more unreachable offers than offers that linked, it is reported.
#[test]
fn offering_unreachable_addresses_costs_the_peer_that_offers() {
    use crate::router::opennet::MAX_BAD_OFFERS;
    // `credit` of its offers link, right after the first of the `bad` ones fails.
    let run = |credit: usize, bad: usize| {
        let now = Instant::now();
        let mut r = Router::new(open_cfg(1, 64), Location(0));
        r.set_address(addr(0));
        let seed = PeerId(1);
        r.add_peer_with(
            now,
            seed,
            Location(u64::MAX / 2),
            PeerMeta {
                origin: PeerOrigin::Seed,
                address: Some(addr(1)),
                routable: true,
            },
        );
        r.handle_timeout(now);
        let id = drain(&mut r)
            .into_iter()
            .find_map(|(p, m)| match m {
                Message::Announce { id, .. } if p == seed => Some(id),
                _ => None,
            })
            .expect("the node announces through its seed");
        events(&mut r);
        for k in 0..credit + bad {
            let offered = addr(10 + k);
            r.handle_message(
                now,
                seed,
                Message::AnnounceReply {
                    id,
                    address: offered,
                    location: Location((k as u64 + 1) << 40),
                },
                &mut Mem::default(),
            );
            assert!(
                events(&mut r)
                    .iter()
                    .any(|e| matches!(e, Event::Connect { address, .. } if *address == offered)),
                "offer {k} was not dialled"
            );
        }
        let mut reported = Vec::new();
        for k in credit..credit + bad {
            r.dial_failed(&addr(10 + k).key);
            if k == credit {
                for c in 0..credit {
                    // The shell linked it: the link decision is where the router
                    // learns so.
                    r.link_decision(
                        now,
                        &addr(10 + c).key,
                        Location((c as u64 + 1) << 40),
                        PeerOrigin::Announcement,
                    );
                }
            }
            for e in events(&mut r) {
                if let Event::PeerMisbehaved { peer, reason } = e {
                    reported.push((k - credit + 1, peer, reason));
                }
            }
        }
        (reported, r.stats().opennet.bad_offers)
    };
    let limit = MAX_BAD_OFFERS as usize;
    // Fewer than the limit: tolerated (honest peers pass on stale addresses), counted.
    let (reported, counted) = run(0, limit - 1);
    assert!(reported.is_empty(), "{reported:?}");
    assert_eq!(counted, limit as u64 - 1);
    // The limit: reported at exactly the last one.
    let (reported, _) = run(0, limit);
    assert_eq!(
        reported,
        vec![(limit, PeerId(1), "offers of unreachable addresses")]
    );
    // An offer that linked takes one failure back: as many failures, not reported.
    let (reported, _) = run(1, limit);
    assert!(reported.is_empty(), "{reported:?}");
    // A dial nobody offered (a seed, a friend) charges nobody.
    let mut r = Router::new(open_cfg(1, 64), Location(0));
    r.dial_failed(&addr(3).key);
    assert_eq!(
        r.stats().opennet.bad_offers,
        0,
        "a dial nobody offered was charged"
    );
}
