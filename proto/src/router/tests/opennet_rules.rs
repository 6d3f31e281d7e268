//! Opennet's link policy rule by rule, on one router poked by hand: which newcomer is
//! taken, which peer makes room, what a pending dial holds, what the counters say.

use super::opennet::{addr, open_cfg, STEP};
use super::*;

fn meta(origin: PeerOrigin, i: usize) -> PeerMeta {
    PeerMeta {
        origin,
        address: Some(addr(i)),
        routable: true,
    }
}

/// A router at 0 (address `addr(0)`) whose seed, peer 1 half a ring away, has just been
/// sent its first announcement; returns the router, the time and the announcement's id.
fn announcing(max_peers: usize) -> (Router, Instant, RequestId) {
    let now = Instant::now();
    let mut r = Router::new(open_cfg(1, max_peers), Location(0));
    r.set_address(addr(0));
    r.add_peer_with(
        now,
        PeerId(1),
        Location(u64::MAX / 2),
        meta(PeerOrigin::Seed, 1),
    );
    r.handle_timeout(now);
    let id = drain(&mut r)
        .into_iter()
        .find_map(|(p, m)| match m {
            Message::Announce { id, .. } if p == PeerId(1) => Some(id),
            _ => None,
        })
        .expect("the node announces through its seed");
    events(&mut r);
    (r, now, id)
}

/// The seed passes back an offer of node `i` at `location`; returns whether the router
/// asked the shell to dial it.
fn offered(r: &mut Router, now: Instant, id: RequestId, i: usize, location: Location) -> bool {
    r.handle_message(
        now,
        PeerId(1),
        Message::AnnounceReply {
            id,
            address: addr(i),
            location,
        },
        &mut Mem::default(),
    );
    events(r)
        .iter()
        .any(|e| matches!(e, Event::Connect { address, .. } if *address == addr(i)))
}

/// The names the API, the peers file and the metrics use, frozen, and read back.
#[test]
fn origins_have_fixed_names_that_read_back() {
    let all = [
        (PeerOrigin::Friend, "friend"),
        (PeerOrigin::Seed, "seed"),
        (PeerOrigin::Announcement, "announcement"),
        (PeerOrigin::PathFolding, "path_folding"),
        (PeerOrigin::Inbound, "inbound"),
    ];
    for (origin, name) in all {
        assert_eq!(origin.as_str(), name);
        assert_eq!(origin.to_string(), name);
        assert_eq!(PeerOrigin::parse(name), Some(origin));
    }
    for bad in ["", "Friend", "seed ", "xyzzy"] {
        assert_eq!(PeerOrigin::parse(bad), None, "{bad:?}");
    }
}

/// Room counts routable peers and dials still pending, against `max_peers`.
#[test]
fn room_counts_routable_peers_and_pending_dials() {
    let (mut r, now, id) = announcing(3);
    // One routable peer (the seed) of three.
    assert!(r.has_room());
    assert!(offered(&mut r, now, id, 10, Location(1 << 40)));
    // The seed and one pending dial: 2 of 3.
    assert!(r.has_room());
    assert!(offered(&mut r, now, id, 11, Location(2 << 40)));
    // 3 of 3: full, though only one link is up.
    assert!(!r.has_room());
    // A transient link is no routable peer.
    r.add_peer_with(
        now,
        PeerId(7),
        Location(3 << 40),
        PeerMeta {
            routable: false,
            ..meta(PeerOrigin::Inbound, 7)
        },
    );
    assert!(!r.peer_is_routable(PeerId(7)));
    assert!(r.peer_is_routable(PeerId(1)));
    assert!(!r.peer_is_routable(PeerId(99)));
    // A dial that did not happen frees its place.
    r.connect_failed(&addr(11).key);
    assert!(r.has_room());
}

/// With one peer and one pending dial of two, the node is full: the two are added, not
/// multiplied.
#[test]
fn one_peer_and_one_pending_dial_fill_two_places() {
    let (mut r, now, id) = announcing(2);
    assert!(r.has_room());
    assert!(offered(&mut r, now, id, 10, Location(1 << 40)));
    assert!(!r.has_room());
}

/// A dial the shell gave up for its own reasons is forgotten: the same address offered
/// again is dialled again, and nobody was charged.
#[test]
fn a_dial_given_up_is_forgotten_and_can_be_asked_again() {
    let (mut r, now, id) = announcing(8);
    assert!(offered(&mut r, now, id, 10, Location(1 << 40)));
    // Still pending: the same offer is not dialled twice.
    assert!(!offered(&mut r, now, id, 10, Location(1 << 40)));
    r.connect_failed(&addr(10).key);
    assert!(offered(&mut r, now, id, 10, Location(1 << 40)));
    assert_eq!(r.stats().opennet.bad_offers, 0);
    assert_eq!(r.stats().opennet.connects, 2);
}

/// One offer that linked takes back one failure, not all of them: a peer at two
/// failures that then links one offer is reported after `MAX_BAD_OFFERS` - 1 more.
#[test]
fn a_good_offer_takes_back_one_failure_not_all() {
    use crate::router::opennet::MAX_BAD_OFFERS;
    let (mut r, now, id) = announcing(64);
    let mut next = 10;
    let mut fail = |r: &mut Router, n: u32| {
        for _ in 0..n {
            assert!(offered(r, now, id, next, Location((next as u64) << 40)));
            r.dial_failed(&addr(next).key);
            next += 1;
        }
    };
    fail(&mut r, 2);
    // One offer links.
    assert!(offered(&mut r, now, id, 5, Location(5 << 40)));
    r.link_decision(
        now,
        &addr(5).key,
        Location(5 << 40),
        PeerOrigin::Announcement,
    );
    // 2 - 1 + (MAX - 1) = MAX: reported at the last.
    fail(&mut r, MAX_BAD_OFFERS - 2);
    assert!(!events(&mut r)
        .iter()
        .any(|e| matches!(e, Event::PeerMisbehaved { .. })));
    fail(&mut r, 1);
    assert!(events(&mut r)
        .iter()
        .any(|e| matches!(e, Event::PeerMisbehaved { peer, .. } if *peer == PeerId(1))));
}

/// Finding a seed link (again) makes a node that is short of peers announce at once,
/// whatever its back-off; any other new link leaves the back-off alone.
#[test]
fn only_a_seed_link_cuts_the_announcement_back_off_short() {
    let mut config = open_cfg(1, 8);
    config.opennet.min_peers = 4;
    // Announcements only: no stabilisation timer in between.
    config.opennet.stabilize_interval = Duration::ZERO;
    let now = Instant::now();
    let mut r = Router::new(config, Location(0));
    r.set_address(addr(0));
    r.add_peer_with(now, PeerId(1), Location(STEP), meta(PeerOrigin::Seed, 1));
    // Announce three times: the pause has grown to four intervals.
    let mut t = now;
    for _ in 0..3 {
        t = r.poll_timeout().expect("an announcement is due").max(t);
        r.handle_timeout(t);
        drain(&mut r);
    }
    let interval = r.config().opennet.announce_interval;
    let next = r.poll_timeout().expect("due");
    assert_eq!(next, t + interval * 4);
    // A peer found by announcement: still short of peers, the back-off stands.
    r.add_peer_with(
        t,
        PeerId(2),
        Location(2 * STEP),
        meta(PeerOrigin::Announcement, 2),
    );
    assert_eq!(r.poll_timeout(), Some(next));
    // A seed: at once.
    r.add_peer_with(t, PeerId(3), Location(3 * STEP), meta(PeerOrigin::Seed, 3));
    assert_eq!(r.poll_timeout(), Some(t));
}

/// A node that does not take part in opennet still lets an operator's friend replace
/// an opennet peer it kept, but nobody else; the counters say what happened.
#[test]
fn without_opennet_only_a_friend_makes_room() {
    let mut config = open_cfg(1, 2);
    config.opennet.enabled = false;
    // No protected nearest peers: with two places, both would be.
    config.opennet.near_slots = 0;
    let now = Instant::now();
    let mut r = Router::new(config, Location(0));
    r.add_peer_with(
        now,
        PeerId(1),
        Location(4 * STEP),
        meta(PeerOrigin::Inbound, 1),
    );
    r.add_peer_with(
        now,
        PeerId(2),
        Location(8 * STEP),
        meta(PeerOrigin::Inbound, 2),
    );
    let t = now + Duration::from_secs(600);
    let stranger = r.link_decision(t, &addr(3).key, Location(STEP), PeerOrigin::Inbound);
    assert_eq!(stranger.0, LinkDecision::Refuse);
    let friend = r.link_decision(t, &addr(4).key, Location(STEP), PeerOrigin::Friend);
    assert!(matches!(friend.0, LinkDecision::Replace(_)), "{friend:?}");
    let s = &r.stats().opennet;
    assert_eq!(
        (s.peers_dropped, s.links_refused, s.links_transient),
        (1, 1, 0)
    );
}

/// The `near_slots` / 2 nearest peers on each side of us are kept apart: a newcomer
/// that would be one of them replaces a far peer at once, even right after another
/// replacement; any other newcomer waits for `drop_interval`.
#[test]
fn a_newcomer_among_the_nearest_replaces_at_once_others_wait() {
    let s = STEP / 100;
    let now = Instant::now();
    // near_slots 4 (the default): two a side.
    let mut r = Router::new(open_cfg(1, 6), Location(0));
    r.set_address(addr(0));
    let cw = |k: u64| Location(k * s);
    let ccw = |k: u64| Location(0u64.wrapping_sub(k * s));
    for (i, l) in [
        cw(2),
        cw(4),
        ccw(2),
        ccw(4),
        Location(4 * STEP),
        Location(10 * STEP),
    ]
    .into_iter()
    .enumerate()
    {
        r.add_peer_with(
            now,
            PeerId(i as u64 + 1),
            l,
            meta(PeerOrigin::Announcement, i + 1),
        );
    }
    let t = now + Duration::from_secs(600);
    // The first far newcomer replaces a far peer (never one of the four nearest).
    let first = r.link_decision(t, &addr(20).key, Location(6 * STEP), PeerOrigin::Inbound);
    assert!(
        matches!(first.0, LinkDecision::Replace(PeerId(5 | 6))),
        "{first:?}"
    );
    assert_eq!(r.stats().opennet.peers_dropped, 1);
    let decide = |r: &mut Router, i: usize, l: Location| {
        r.link_decision(t, &addr(i).key, l, PeerOrigin::Inbound).0
    };
    // Right after it, a far newcomer waits (a transient link for its announcement).
    assert_eq!(
        decide(&mut r, 21, Location(7 * STEP)),
        LinkDecision::Transient
    );
    assert_eq!(r.stats().opennet.links_transient, 1);
    let replaces = |d: LinkDecision| matches!(d, LinkDecision::Replace(PeerId(5 | 6)));
    // Nearer than both on its side, between the two, tied with the second: near.
    for (i, l) in [(22, cw(1)), (23, cw(3)), (24, cw(4)), (25, ccw(3))] {
        let d = decide(&mut r, i, l);
        assert!(replaces(d), "newcomer at {l:?}: {d:?}");
    }
    // Behind the two nearest on its side: not near, though nearer than those on the
    // other side.
    for (i, l) in [(26, cw(5)), (27, ccw(5))] {
        let d = decide(&mut r, i, l);
        assert!(!replaces(d), "newcomer at {l:?}: {d:?}");
    }
    // Past `drop_interval`, a far newcomer may replace again.
    let later = t + r.config().opennet.drop_interval;
    let d = r
        .link_decision(
            later,
            &addr(28).key,
            Location(7 * STEP),
            PeerOrigin::Inbound,
        )
        .0;
    assert!(replaces(d), "{d:?}");
}
