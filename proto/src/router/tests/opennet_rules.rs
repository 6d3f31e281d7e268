//! Opennet's link policy rule by rule, on one router poked by hand: which newcomer is
//! taken, which peer makes room, what a pending dial holds, what the counters say.

use super::opennet::{addr, open_cfg, STEP};
use super::*;
use crate::message::PeerAddress;

fn meta(origin: PeerOrigin, i: usize) -> PeerMeta {
    PeerMeta {
        origin,
        address: Some(addr(i)),
        routable: true,
    }
}

/// A router at `at` that can be dialled at `addr(0)`.
fn opennet_node(config: RouterConfig, at: Location) -> Router {
    let mut r = Router::new(config, at);
    r.set_address(addr(0));
    r
}

/// Links peer `i` (dialled at `addr(i)`) at `location`, routable, found by `origin`.
fn link(r: &mut Router, now: Instant, i: u64, location: Location, origin: PeerOrigin) {
    r.add_peer_with(now, PeerId(i), location, meta(origin, i as usize));
}

/// Links peer `i` at `location` as a transient link.
fn link_transient(r: &mut Router, now: Instant, i: u64, location: Location) {
    r.add_peer_with(
        now,
        PeerId(i),
        location,
        PeerMeta {
            routable: false,
            ..meta(PeerOrigin::Inbound, i as usize)
        },
    );
}

/// A router at 0 (address `addr(0)`) whose seed, peer 1 half a ring away, has just been
/// sent its first announcement; returns the router, the time and the announcement's id.
fn announcing(max_peers: usize) -> (Router, Instant, RequestId) {
    let now = Instant::now();
    let mut r = opennet_node(open_cfg(1, max_peers), Location(0));
    link(&mut r, now, 1, Location(u64::MAX / 2), PeerOrigin::Seed);
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
    link_transient(&mut r, now, 7, Location(3 << 40));
    assert!(!r.peers().is_routable(PeerId(7)));
    assert!(r.peers().is_routable(PeerId(1)));
    assert!(!r.peers().is_routable(PeerId(99)));
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
    let mut r = opennet_node(config, Location(0));
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
    link(&mut r, t, 2, Location(2 * STEP), PeerOrigin::Announcement);
    assert_eq!(r.poll_timeout(), Some(next));
    // A seed: at once.
    link(&mut r, t, 3, Location(3 * STEP), PeerOrigin::Seed);
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
    link(&mut r, now, 1, Location(4 * STEP), PeerOrigin::Inbound);
    link(&mut r, now, 2, Location(8 * STEP), PeerOrigin::Inbound);
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
    let mut r = opennet_node(open_cfg(1, 6), Location(0));
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

/// A full node with no peer it may replace wants nobody: it does not offer itself to an
/// announcement passing through, nor dial what the announcement's end offers. With
/// room, it does both.
#[test]
fn a_full_node_answers_no_announcement_and_dials_no_offer() {
    let stranger = addr(40);
    let announce = |r: &mut Router, now: Instant, id: u64| {
        r.handle_message(
            now,
            PeerId(2),
            Message::Announce {
                id: RequestId(id),
                target: Location(5),
                address: stranger,
                htl: Htl(18),
            },
            &mut Mem::default(),
        );
        drain(r).iter().any(|(to, m)| {
            *to == PeerId(2)
                && matches!(m, Message::AnnounceReply { address, .. } if *address == addr(0))
        })
    };
    for (max_peers, wants) in [(3, true), (2, false)] {
        let now = Instant::now();
        let mut r = opennet_node(open_cfg(1, max_peers), Location(0));
        // Two peers, both among the nearest (so neither may be replaced).
        link(&mut r, now, 2, Location(STEP), PeerOrigin::Announcement);
        link(
            &mut r,
            now,
            3,
            Location(0u64.wrapping_sub(STEP)),
            PeerOrigin::Announcement,
        );
        let t = now + Duration::from_secs(600);
        assert_eq!(announce(&mut r, t, 1), wants, "max_peers {max_peers}");
    }
    // Our own announcement's offers, when full: not dialled.
    let (mut r, now, id) = announcing(1);
    assert!(!offered(&mut r, now, id, 10, Location(1 << 40)));
}

/// Our next announcement after `after`: its time and id.
fn next_announcement(r: &mut Router, after: Instant) -> (Instant, RequestId) {
    let mut t = after;
    for _ in 0..10 {
        t = r.poll_timeout().expect("a timer is due").max(t);
        r.handle_timeout(t);
        let id = drain(r).into_iter().find_map(|(_, m)| match m {
            Message::Announce { id, address, .. } if address == addr(0) => Some(id),
            _ => None,
        });
        if let Some(id) = id {
            return (t, id);
        }
    }
    panic!("no announcement");
}

/// Dials in flight are bounded (`MAX_PENDING`, 64): past them the node neither dials
/// another offer nor offers itself to a newcomer it could not take yet.
#[test]
fn at_most_64_dials_are_pending() {
    let (mut r, now, first) = announcing(1000);
    // At most 40 replies pass for one announcement: offer through two.
    let (t, second) = next_announcement(&mut r, now);
    for i in 0..63 {
        let id = if i < 32 { first } else { second };
        assert!(
            offered(&mut r, t, id, 100 + i, Location((i as u64 + 1) << 40)),
            "offer {i}"
        );
    }
    // With 63 pending, a passing announcement is answered.
    let answers = |r: &mut Router, id: u64| {
        r.handle_message(
            t,
            PeerId(1),
            Message::Announce {
                id: RequestId(id),
                target: Location(5),
                address: addr(900 + id as usize),
                htl: Htl(18),
            },
            &mut Mem::default(),
        );
        drain(r).iter().any(
            |(_, m)| matches!(m, Message::AnnounceReply { address, .. } if *address == addr(0)),
        )
    };
    assert!(answers(&mut r, 1));
    assert!(offered(&mut r, t, second, 200, Location(200 << 40)));
    // 64 pending: no more.
    assert!(!answers(&mut r, 2));
    assert!(!offered(&mut r, t, second, 201, Location(201 << 40)));
    assert_eq!(r.stats().opennet.connects, 64);
}

/// Offers of our own address, or of a node we are linked to, are not dialled. A seed
/// that offers itself to our announcement wants us: its link stops being a seed's (and
/// is kept); any other peer offered keeps the origin it had.
#[test]
fn offers_of_ourselves_or_of_peers_are_not_dialled_and_a_seed_that_answers_is_kept() {
    let (mut r, now, id) = announcing(8);
    link(&mut r, now, 2, Location(STEP), PeerOrigin::Inbound);
    assert!(!offered(&mut r, now, id, 0, Location(0)));
    assert!(!offered(&mut r, now, id, 2, Location(STEP)));
    assert_eq!(r.peers().origin(PeerId(2)), Some(PeerOrigin::Inbound));
    assert!(!offered(&mut r, now, id, 1, Location(u64::MAX / 2)));
    assert_eq!(r.peers().origin(PeerId(1)), Some(PeerOrigin::Announcement));
    assert_eq!(r.stats().opennet.connects, 0);
}

/// The peer dropped for a newcomer is the one that least recently delivered data: an
/// old peer that just answered a request is kept, the younger idle one goes.
#[test]
fn a_peer_that_delivered_data_is_kept_over_an_idle_one() {
    let (b, key) = blk(3);
    let at = Location::of_key(&key);
    let mut config = open_cfg(1, 2);
    config.opennet.near_slots = 0;
    let now = Instant::now();
    let mut r = opennet_node(config, Location(at.0.wrapping_add(1 << 62)));
    // The old peer sits on the key; the young one opposite it.
    link(&mut r, now, 1, at, PeerOrigin::Announcement);
    let young = now + Duration::from_secs(1);
    link(
        &mut r,
        young,
        2,
        Location(at.0.wrapping_add(1 << 63)),
        PeerOrigin::Announcement,
    );
    let t = now + Duration::from_secs(600);
    // Idle both: the older goes first.
    let d = r.link_decision(
        t,
        &addr(9).key,
        Location(at.0 ^ 1 << 61),
        PeerOrigin::Inbound,
    );
    assert_eq!(d.0, LinkDecision::Replace(PeerId(1)));
    let mut r2 = Router::new(r.config().clone(), r.location());
    r2.set_address(addr(0));
    link(&mut r2, now, 1, at, PeerOrigin::Announcement);
    link(
        &mut r2,
        young,
        2,
        Location(at.0.wrapping_add(1 << 63)),
        PeerOrigin::Announcement,
    );
    let mut store = Mem::default();
    let id = r2.start_request(t, key, None, &mut store);
    assert!(drain(&mut r2)
        .iter()
        .any(|(to, m)| *to == PeerId(1) && matches!(m, Message::Request { .. })));
    r2.handle_message(t, PeerId(1), Message::Data { id, block: b }, &mut store);
    let d = r2.link_decision(
        t,
        &addr(9).key,
        Location(at.0 ^ 1 << 61),
        PeerOrigin::Inbound,
    );
    assert_eq!(d.0, LinkDecision::Replace(PeerId(2)));
}

/// A node left with no peer at all has nobody to announce through: no announcement
/// timer runs until a link comes.
#[test]
fn a_node_without_peers_does_not_announce() {
    let mut config = open_cfg(1, 8);
    config.opennet.stabilize_interval = Duration::ZERO;
    let now = Instant::now();
    let mut r = opennet_node(config, Location(0));
    link(&mut r, now, 1, Location(STEP), PeerOrigin::Seed);
    assert_eq!(r.poll_timeout(), Some(now));
    r.remove_peer(now, PeerId(1));
    assert_eq!(r.poll_timeout(), None);
}

/// The seed link is let go once `min_peers` other routable peers are linked, exactly;
/// transient links and other seeds do not count.
#[test]
fn the_seed_goes_at_exactly_min_peers_routable_others() {
    let released = |r: &mut Router| {
        events(r).iter().any(|e| {
            matches!(e, Event::Disconnect { peer, reason: "seed no longer needed" } if *peer == PeerId(1))
        })
    };
    // min_peers 2 (open_cfg).
    let (mut r, now, _) = announcing(8);
    link(&mut r, now, 2, Location(STEP), PeerOrigin::Seed);
    link(&mut r, now, 3, Location(2 * STEP), PeerOrigin::Announcement);
    link_transient(&mut r, now, 4, Location(3 * STEP));
    assert!(!released(&mut r), "one routable non-seed peer of two");
    assert!(r.peers().is_routable(PeerId(1)));
    r.add_peer_with(
        now,
        PeerId(5),
        Location(4 * STEP),
        meta(PeerOrigin::PathFolding, 5),
    );
    assert!(released(&mut r), "two of two");
    assert!(!r.peers().is_routable(PeerId(1)));
    assert!(!r.peers().is_routable(PeerId(2)));
    assert_eq!(r.peers().origin(PeerId(1)), Some(PeerOrigin::Inbound));
    assert_eq!(r.stats().opennet.peers_dropped, 2);
}

/// Replies to our announcement are taken for `announce_ttl`, not a moment longer.
#[test]
fn announcement_replies_count_until_the_ttl_and_not_after() {
    let ttl = open_cfg(1, 8).opennet.announce_ttl;
    for (after, dialled) in [(ttl - Duration::from_nanos(1), true), (ttl, false)] {
        let (mut r, now, id) = announcing(8);
        r.handle_timeout(now + after);
        events(&mut r);
        drain(&mut r);
        assert_eq!(
            offered(&mut r, now + after, id, 10, Location(1 << 40)),
            dialled,
            "{after:?} after"
        );
    }
}

/// A dial counts as pending for 30 s: until then the same offer is not dialled again,
/// from then on it may be.
#[test]
fn a_pending_dial_lapses_after_30_seconds() {
    let ttl = Duration::from_secs(30);
    for (after, again) in [(ttl - Duration::from_nanos(1), false), (ttl, true)] {
        let (mut r, now, _) = announcing(8);
        // An announcement from the next round, to carry the second offer.
        let (t, id) = next_announcement(&mut r, now);
        assert!(offered(&mut r, t, id, 10, Location(1 << 40)));
        // The next announcement is overdue by then: its tick, at t + after, is also
        // when pending dials lapse.
        let (at, id2) = next_announcement(&mut r, t + after);
        assert_eq!(at, t + after);
        assert_eq!(
            offered(&mut r, at, id2, 10, Location(1 << 40)),
            again,
            "{after:?} after"
        );
    }
}

/// A newcomer we answered counts as found by announcement when it dials in within 30 s;
/// later it is an ordinary inbound link.
#[test]
fn a_newcomer_we_answered_is_expected_for_30_seconds() {
    let ttl = Duration::from_secs(30);
    for (after, origin) in [
        (ttl - Duration::from_nanos(1), PeerOrigin::Announcement),
        (ttl, PeerOrigin::Inbound),
    ] {
        let now = Instant::now();
        let mut r = opennet_node(open_cfg(1, 8), Location(0));
        link(&mut r, now, 2, Location(STEP), PeerOrigin::Announcement);
        r.handle_message(
            now,
            PeerId(2),
            Message::Announce {
                id: RequestId(5),
                target: Location(7),
                address: addr(40),
                htl: Htl(18),
            },
            &mut Mem::default(),
        );
        assert!(drain(&mut r).iter().any(
            |(_, m)| matches!(m, Message::AnnounceReply { address, .. } if *address == addr(0))
        ));
        r.handle_timeout(now + after);
        let d = r.link_decision(now + after, &addr(40).key, Location(7), PeerOrigin::Inbound);
        assert_eq!(d, (LinkDecision::Accept, origin), "{after:?} after");
    }
}

/// A relay that passed data back waits `FOLD_TTL` (30 s) for the source's fold offer;
/// one arriving later is ignored.
#[test]
fn a_fold_offer_is_awaited_for_30_seconds() {
    let ttl = Duration::from_secs(30);
    for (after, taken) in [(ttl - Duration::from_nanos(1), true), (ttl, false)] {
        let now = Instant::now();
        let id = RequestId(77);
        // Far from the originator (HTL well below the top): may take the offer.
        let mut r = relayed(open_cfg(1, 8), 4, id, 10, now);
        // Upkeep before the offer's time is up (a stabilisation round) forgets nothing.
        let upkeep = r.poll_timeout().expect("stabilisation is due");
        assert!(upkeep < now + after);
        r.handle_timeout(upkeep);
        r.handle_timeout(now + after);
        drain(&mut r);
        events(&mut r);
        assert_eq!(
            fold(&mut r, now + after, id),
            (taken, None),
            "{after:?} after"
        );
        assert_eq!(r.stats().opennet.folds_taken, u64::from(taken));
    }
}

/// Opennet upkeep closes transient links when their time is up, and never a routable
/// link; a node with its `min_peers` does not announce on a timer that fires for
/// something else.
#[test]
fn upkeep_closes_only_expired_transient_links_and_announces_only_when_short() {
    let now = Instant::now();
    let mut config = open_cfg(1, 8);
    config.opennet.transient_slots = 4;
    let mut r = opennet_node(config, Location(0));
    link(&mut r, now, 1, Location(STEP), PeerOrigin::Announcement);
    link(&mut r, now, 2, Location(3 * STEP), PeerOrigin::Inbound);
    link_transient(&mut r, now, 3, Location(5 * STEP));
    let ttl = r.config().opennet.transient_ttl;
    let closed = |r: &mut Router| -> Vec<PeerId> {
        events(r)
            .into_iter()
            .filter_map(|e| match e {
                Event::Disconnect {
                    peer,
                    reason: "transient link expired",
                } => Some(peer),
                _ => None,
            })
            .collect()
    };
    r.handle_timeout(now + ttl - Duration::from_nanos(1));
    assert!(closed(&mut r).is_empty());
    r.handle_timeout(now + ttl);
    assert_eq!(closed(&mut r), vec![PeerId(3)]);
    // Stabilisation rounds come and go; the node has its two peers and never announces.
    let mut t = now + ttl;
    for _ in 0..4 {
        t = r.poll_timeout().expect("stabilisation is due").max(t);
        r.handle_timeout(t);
        drain(&mut r);
    }
    assert_eq!(r.stats().opennet.announces_started, 0);
}

/// A node announces through its seeds first; after that through one of its own routable
/// peers, never a transient link or a seed while such a peer exists. Stabilisation
/// likewise goes through the nearest real peers, not a nearer seed or transient link.
#[test]
fn announcements_go_through_seeds_first_then_through_real_peers() {
    let mut config = open_cfg(1, 8);
    config.opennet.min_peers = 4;
    config.opennet.stabilize_interval = Duration::ZERO;
    let now = Instant::now();
    let mut r = opennet_node(config, Location(0));
    r.add_peer_with(
        now,
        PeerId(1),
        Location(STEP),
        meta(PeerOrigin::Announcement, 1),
    );
    link_transient(&mut r, now, 2, Location(2 * STEP));
    r.add_peer_with(
        now,
        PeerId(3),
        Location(3 * STEP),
        meta(PeerOrigin::Seed, 3),
    );
    let mut firsts = Vec::new();
    let mut t = now;
    while firsts.len() < 5 {
        t = r.poll_timeout().expect("an announcement is due").max(t);
        r.handle_timeout(t);
        // The shell closes what the router asks it to (the transient link, in time).
        for e in events(&mut r) {
            if let Event::Disconnect { peer, .. } = e {
                r.remove_peer(t, peer);
            }
        }
        let to: Vec<PeerId> = drain(&mut r)
            .into_iter()
            .filter(|(_, m)| matches!(m, Message::Announce { address, .. } if *address == addr(0)))
            .map(|(p, _)| p)
            .collect();
        if !to.is_empty() {
            firsts.push(to);
        }
    }
    assert_eq!(firsts[0], vec![PeerId(3)], "{firsts:?}");
    for to in &firsts[1..] {
        assert_eq!(to, &vec![PeerId(1)], "{firsts:?}");
    }
}

/// Stabilisation announces through the nearest routable non-seed peer on each side, not
/// through a nearer seed or transient link.
#[test]
fn stabilisation_goes_through_the_nearest_real_peers() {
    let now = Instant::now();
    let mut config = open_cfg(1, 8);
    config.opennet.transient_slots = 4;
    let mut r = opennet_node(config, Location(0));
    let s = STEP / 8;
    let ccw = |k: u64| Location(0u64.wrapping_sub(k * s));
    link(&mut r, now, 1, Location(s), PeerOrigin::Seed);
    link(&mut r, now, 2, Location(3 * s), PeerOrigin::Announcement);
    link_transient(&mut r, now, 3, ccw(1));
    r.add_peer_with(now, PeerId(4), ccw(3), meta(PeerOrigin::PathFolding, 4));
    link(&mut r, now, 5, ccw(5), PeerOrigin::PathFolding);
    drain(&mut r);
    let due = now + r.config().opennet.stabilize_interval;
    r.handle_timeout(due);
    let mut to: Vec<PeerId> = drain(&mut r)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Announce { .. }))
        .map(|(p, _)| p)
        .collect();
    to.sort_unstable();
    assert_eq!(to, vec![PeerId(2), PeerId(4)]);
}

/// Without opennet, a darknet node that exchanges neighbour lists sends them when due
/// and not before, whatever other timer fires.
#[test]
fn darknet_neighbour_lists_go_when_due_not_before() {
    let now = Instant::now();
    let mut config = cfg(1);
    config.neighbour_lists = true;
    let interval = config.opennet.neighbours_interval;
    let mut r = Router::new(config, Location(0));
    let lists = |r: &mut Router| {
        drain(r)
            .iter()
            .filter(|(_, m)| matches!(m, Message::Neighbours { .. }))
            .count()
    };
    r.add_peer(now, PeerId(1), Location(STEP));
    r.handle_timeout(now);
    assert_eq!(lists(&mut r), 1);
    // Another link: the next list waits out the interval.
    r.add_peer(now, PeerId(2), Location(2 * STEP));
    r.handle_timeout(now + interval - Duration::from_nanos(1));
    assert_eq!(lists(&mut r), 0);
    assert_eq!(r.poll_timeout(), Some(now + interval));
    r.handle_timeout(now + interval);
    assert_eq!(lists(&mut r), 2);
}

/// What one announcement does at a node: the node's answer, and where the walk goes.
struct Walked {
    /// Addresses offered back to the sender.
    offers: Vec<PeerAddress>,
    /// Where the walk went on, and with what HTL.
    forwarded: Vec<(PeerId, u8)>,
}

fn announce_at(r: &mut Router, now: Instant, from: PeerId, target: Location, htl: u8) -> Walked {
    // A fresh id for each (the same id twice is a loop).
    let id = RequestId(4242 + r.stats().opennet.announces_received);
    r.handle_message(
        now,
        from,
        Message::Announce {
            id,
            target,
            address: addr(40),
            htl: Htl(htl),
        },
        &mut Mem::default(),
    );
    let mut w = Walked {
        offers: Vec::new(),
        forwarded: Vec::new(),
    };
    for (to, m) in drain(r) {
        match m {
            Message::AnnounceReply { address, .. } => {
                assert_eq!(to, from, "replies go back to the sender");
                w.offers.push(address);
            }
            Message::Announce { htl, .. } => w.forwarded.push((to, htl.0)),
            _ => {}
        }
    }
    w
}

/// Where the walk ends, the node offers itself and its peers nearest the target on
/// both sides, never the peer the walk came from, a transient link or the newcomer
/// itself; then the walk goes a few hops on (HTL at most 3). The counters say so.
#[test]
fn the_end_of_a_walk_offers_the_nearest_peers_but_not_the_sender() {
    let now = Instant::now();
    let mut config = open_cfg(1, 16);
    config.opennet.transient_slots = 4;
    let mut r = opennet_node(config, Location(0));
    let s = STEP / 8;
    // 1: the sender, far; 2 and 3 either side of the target; 4 a transient link on the
    // target; 5 farther; 6 the newcomer itself, already linked.
    link(&mut r, now, 1, Location(8 * STEP), PeerOrigin::Announcement);
    link(&mut r, now, 2, Location(3 * s), PeerOrigin::Announcement);
    link(
        &mut r,
        now,
        3,
        Location(0u64.wrapping_sub(2 * s)),
        PeerOrigin::Announcement,
    );
    link_transient(&mut r, now, 4, Location(s));
    r.add_peer_with(
        now,
        PeerId(5),
        Location(5 * STEP),
        meta(PeerOrigin::Announcement, 5),
    );
    r.add_peer_with(
        now,
        PeerId(6),
        Location(4 * s),
        PeerMeta {
            ..meta(PeerOrigin::Announcement, 40)
        },
    );
    // The target is just clockwise of us: nobody is closer.
    let w = announce_at(&mut r, now, PeerId(1), Location(1), 18);
    let mut offers = w.offers.clone();
    offers.sort_by_key(|a| a.key);
    let mut want = vec![addr(2), addr(3), addr(5)];
    want.sort_by_key(|a| a.key);
    // Our own address is offered because we have room, but not to a linked newcomer.
    assert_eq!(offers, want, "{:?}", w.offers);
    // Nearest either side first.
    assert_eq!(&w.offers[..2], &[addr(2), addr(3)]);
    assert_eq!(w.forwarded.len(), 1);
    assert!(w.forwarded[0].1 <= 3, "{:?}", w.forwarded);
    let s = &r.stats().opennet;
    assert_eq!((s.announces_received, s.announce_offers), (1, 3));
}

/// A peer exactly as far from the target as we are is no closer: the walk ends here
/// (and goes on only its last few hops).
#[test]
fn a_peer_as_far_from_the_target_as_we_are_is_not_closer() {
    let now = Instant::now();
    let mut r = opennet_node(open_cfg(1, 16), Location(0));
    let target = Location(1 << 62);
    r.add_peer_with(
        now,
        PeerId(1),
        Location(3 << 62),
        meta(PeerOrigin::Announcement, 1),
    );
    link(&mut r, now, 2, Location(1 << 63), PeerOrigin::Announcement);
    let w = announce_at(&mut r, now, PeerId(1), target, 18);
    assert!(w.offers.contains(&addr(2)), "{:?}", w.offers.len());
    assert_eq!(w.forwarded, vec![(PeerId(2), 3)]);
}

/// An announcement that arrives with its last hop ends here: offers, and no further
/// walk at all (no HTL 0 message).
#[test]
fn an_announcement_on_its_last_hop_goes_no_further() {
    let now = Instant::now();
    let mut r = opennet_node(open_cfg(1, 16), Location(0));
    link(&mut r, now, 1, Location(8 * STEP), PeerOrigin::Announcement);
    // Peer 2 is much closer to the target than we are.
    link(&mut r, now, 2, Location(4 * STEP), PeerOrigin::Announcement);
    let w = announce_at(&mut r, now, PeerId(1), Location(4 * STEP + 1), 1);
    assert_eq!(w.forwarded, vec![]);
    assert!(w.offers.contains(&addr(2)));
    // With hops left it goes to peer 2.
    let w = announce_at(&mut r, now, PeerId(1), Location(4 * STEP + 2), 5);
    assert_eq!(w.forwarded, vec![(PeerId(2), 4)]);
}

/// At most 256 newcomers are remembered as expected to dial in: the 257th is still
/// answered, but its link counts as an ordinary inbound one.
#[test]
fn at_most_256_newcomers_are_expected() {
    let now = Instant::now();
    let mut r = opennet_node(open_cfg(1, 16), Location(0));
    link(&mut r, now, 1, Location(8 * STEP), PeerOrigin::Announcement);
    for i in 0..257u64 {
        r.handle_message(
            now,
            PeerId(1),
            Message::Announce {
                id: RequestId(10_000 + i),
                target: Location(5),
                address: addr(1000 + i as usize),
                htl: Htl(1),
            },
            &mut Mem::default(),
        );
        assert!(drain(&mut r).iter().any(
            |(_, m)| matches!(m, Message::AnnounceReply { address, .. } if *address == addr(0))
        ));
    }
    let origin = |r: &mut Router, i: usize| {
        r.link_decision(now, &addr(1000 + i).key, Location(5), PeerOrigin::Inbound)
            .1
    };
    // One offer each: our own address (the only peer is the sender, never offered).
    assert_eq!(r.stats().opennet.announce_offers, 257);
    assert_eq!(origin(&mut r, 255), PeerOrigin::Announcement);
    assert_eq!(origin(&mut r, 256), PeerOrigin::Inbound);
}

/// A node holding the most announcements it relays (4,096) drops new ones; once the old
/// ones have expired it takes new ones again, without waiting for its timer.
#[test]
fn a_flood_of_announcements_is_bounded_and_then_forgotten() {
    let now = Instant::now();
    let mut config = open_cfg(1, 16);
    config.opennet.stabilize_interval = Duration::ZERO;
    let mut r = opennet_node(config, Location(0));
    link(&mut r, now, 1, Location(8 * STEP), PeerOrigin::Announcement);
    link(&mut r, now, 2, Location(4 * STEP), PeerOrigin::Announcement);
    let send = |r: &mut Router, t: Instant, i: u64| {
        r.handle_message(
            t,
            PeerId(1),
            Message::Announce {
                id: RequestId(100_000 + i),
                target: Location(4 * STEP + i),
                address: addr(5000),
                htl: Htl(10),
            },
            &mut Mem::default(),
        );
        !drain(r).is_empty()
    };
    for i in 0..4096 {
        assert!(send(&mut r, now, i), "announcement {i}");
    }
    assert!(!send(&mut r, now, 4096), "the 4,097th is dropped");
    let ttl = r.config().opennet.announce_ttl;
    assert!(
        send(&mut r, now + ttl, 4097),
        "taken again once the others expired"
    );
    assert_eq!(r.stats().opennet.announces_received, 4098);
}

/// A relay passes an announcement's replies back to where it came from: at most 40 of
/// them, and never a "reply" from that same peer.
#[test]
fn a_relay_passes_back_at_most_40_replies_and_none_from_the_sender() {
    let now = Instant::now();
    let mut r = opennet_node(open_cfg(1, 2), Location(0));
    link(&mut r, now, 1, Location(8 * STEP), PeerOrigin::Announcement);
    link(&mut r, now, 2, Location(4 * STEP), PeerOrigin::Announcement);
    let id = RequestId(9);
    r.handle_message(
        now,
        PeerId(1),
        Message::Announce {
            id,
            target: Location(4 * STEP + 1),
            address: addr(40),
            htl: Htl(10),
        },
        &mut Mem::default(),
    );
    assert!(drain(&mut r)
        .iter()
        .any(|(to, m)| *to == PeerId(2) && matches!(m, Message::Announce { .. })));
    let reply = |r: &mut Router, from: u64, i: usize| {
        r.handle_message(
            now,
            PeerId(from),
            Message::AnnounceReply {
                id,
                address: addr(100 + i),
                location: Location(i as u64),
            },
            &mut Mem::default(),
        );
        drain(r)
    };
    // The sender's own "reply" goes nowhere, and does not use up the allowance.
    assert!(reply(&mut r, 1, 0).is_empty());
    for i in 1..=40 {
        let out = reply(&mut r, 2, i);
        assert!(
            matches!(&out[..], [(PeerId(1), Message::AnnounceReply { address, .. })] if *address == addr(100 + i)),
            "reply {i}: {out:?}"
        );
    }
    assert!(reply(&mut r, 2, 41).is_empty(), "the 41st is dropped");
}

/// A relay at 0 with upstream peer 1 and, on the key of block `n`, downstream peer 2,
/// that has passed the block back for request `id` received with `htl`.
fn relayed(config: RouterConfig, n: u8, id: RequestId, htl: u8, now: Instant) -> Router {
    let (_, key) = blk(n);
    let at = Location::of_key(&key);
    let mut r = opennet_node(config, Location(at.0.wrapping_add(1 << 60)));
    link(
        &mut r,
        now,
        1,
        Location(at.0.wrapping_add(1 << 63)),
        PeerOrigin::Announcement,
    );
    link(&mut r, now, 2, at, PeerOrigin::Announcement);
    relay_one(&mut r, n, id, htl, now);
    r
}

/// Request `id` for block `n` comes from peer 1, goes to peer 2, and its data back.
fn relay_one(r: &mut Router, n: u8, id: RequestId, htl: u8, now: Instant) {
    let (b, key) = blk(n);
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id,
            key,
            htl: Htl(htl),
        },
        &mut Mem::default(),
    );
    assert!(drain(r)
        .iter()
        .any(|(to, m)| *to == PeerId(2) && matches!(m, Message::Request { .. })));
    r.handle_message(
        now,
        PeerId(2),
        Message::Data { id, block: b },
        &mut Mem::default(),
    );
    assert!(drain(r)
        .iter()
        .any(|(to, m)| *to == PeerId(1) && matches!(m, Message::Data { .. })));
    events(r);
}

/// What the relay does with the source's fold offer: takes it (dials), or passes it on
/// upstream with this address.
fn fold(r: &mut Router, now: Instant, id: RequestId) -> (bool, Option<PeerAddress>) {
    r.handle_message(
        now,
        PeerId(2),
        Message::FoldOffer {
            id,
            address: addr(50),
        },
        &mut Mem::default(),
    );
    let took = events(r).iter().any(|e| {
        matches!(e, Event::Connect { address, origin: PeerOrigin::PathFolding } if *address == addr(50))
    });
    let passed = drain(r).into_iter().find_map(|(to, m)| match m {
        Message::FoldOffer { address, .. } if to == PeerId(1) => Some(address),
        _ => None,
    });
    (took, passed)
}

/// Nodes that received the request at an HTL above `max - 2` (the originator's
/// neighbourhood) never take a fold offer, so no new link points at whoever asked;
/// from `max - 2` down they may.
#[test]
fn fold_offers_are_taken_only_two_hops_from_the_top_htl() {
    let max = cfg(1).max_htl.0;
    for (htl, takes) in [(max, false), (max - 1, false), (max - 2, true), (3, true)] {
        let now = Instant::now();
        let id = RequestId(31);
        let mut r = relayed(open_cfg(1, 8), 5, id, htl, now);
        let (took, passed) = fold(&mut r, now, id);
        assert_eq!(took, takes, "received at HTL {htl}");
        assert_eq!(passed.is_some(), !takes, "received at HTL {htl}");
    }
}

/// A relay passing an offer on puts its own address in with
/// `fold_replace_probability`, so an offer does not prove where the data came from.
#[test]
fn a_relay_puts_its_own_address_in_a_fold_offer_as_configured() {
    let max = cfg(1).max_htl.0;
    for (p, want) in [(0.0, addr(50)), (1.0, addr(0))] {
        let mut config = open_cfg(1, 8);
        config.opennet.fold_replace_probability = p;
        let now = Instant::now();
        let id = RequestId(32);
        let mut r = relayed(config, 6, id, max, now);
        assert_eq!(fold(&mut r, now, id), (false, Some(want)), "p = {p}");
    }
}

/// Several requests can wait for their fold offers at once (up to 4,096; then the
/// oldest is forgotten).
#[test]
fn fold_offers_are_awaited_for_many_requests_at_once() {
    let now = Instant::now();
    let max = cfg(1).max_htl.0;
    let mut r = relayed(open_cfg(1, 8), 7, RequestId(1), max, now);
    for n in 2..=4097u64 {
        relay_one(&mut r, 7, RequestId(n), max, now);
    }
    // The first was forgotten; the second and the last are still awaited.
    assert_eq!(fold(&mut r, now, RequestId(1)), (false, None));
    assert_eq!(fold(&mut r, now, RequestId(2)).1, Some(addr(50)));
    assert_eq!(fold(&mut r, now, RequestId(4097)).1, Some(addr(50)));
}
