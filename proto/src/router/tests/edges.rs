//! Hostile and odd inputs (bad blocks, replies nobody asked for, strange
//! configurations) and the local shortcuts (own store, no peers).

use super::*;

#[test]
fn bad_data_is_misbehaviour_and_the_next_peer_is_tried() {
    let (_, key) = blk(4);
    let (other, _) = blk(5);
    let (mut r, now) = lone(&[1, 2], cfg(1));
    r.add_peer(now, PeerId(1), Location::of_key(&key));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    drain(&mut r);
    r.handle_message(
        now,
        PeerId(1),
        Message::Data { id, block: other },
        &mut store,
    );
    assert_eq!(
        events(&mut r),
        vec![Event::PeerMisbehaved {
            peer: PeerId(1),
            reason: "data that fails verification"
        }]
    );
    assert_eq!(r.stats().bad_blocks, 1);
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
}

/// While a request is in flight the router keeps its queues' memory; once nothing is
/// left to do it frees them, and the next request works as the first did.
#[test]
fn an_idle_router_frees_its_queues_and_a_busy_one_keeps_them() {
    let (block, key) = blk(4);
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    for round in 0..2 {
        let id = r.start_request(now, key, None, &mut store);
        assert_eq!(drain(&mut r).len(), 1, "round {round}");
        assert!(events(&mut r).is_empty());
        assert!(r.transmits.capacity() > 0);
        assert_eq!(
            (r.requests.in_flight().len(), r.requests.timers.len()),
            (1, 1)
        );
        r.handle_message(
            now,
            PeerId(1),
            Message::Data {
                id,
                block: block.clone(),
            },
            &mut store,
        );
        let done = events(&mut r);
        assert!(
            done.iter().any(
                |e| matches!(e, Event::RequestFinished { id: i, result: Ok(_), .. } if *i == id)
            ),
            "round {round}: {done:?}"
        );
        drain(&mut r);
        assert!(r.requests.requests.is_empty() && r.requests.timers.is_empty());
        assert_eq!((r.transmits.capacity(), r.events.capacity()), (0, 0));
    }
}

#[test]
fn replies_for_unknown_ids_are_misbehaviour() {
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::InsertReply { id: RequestId(9) },
        &mut store,
    );
    assert!(matches!(
        events(&mut r)[..],
        [Event::PeerMisbehaved {
            peer: PeerId(1),
            ..
        }]
    ));
    // Messages from peers never added are dropped, and chatter is the shell's.
    r.handle_message(
        now,
        PeerId(77),
        Message::InsertReply { id: RequestId(9) },
        &mut store,
    );
    r.handle_message(now, PeerId(1), Message::Ping { nonce: 1 }, &mut store);
    assert!(events(&mut r).is_empty());
    assert!(drain(&mut r).is_empty());
}

#[test]
fn bad_insert_is_misbehaviour() {
    let (b, _) = blk(9);
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Insert {
            id: RequestId(1),
            key: key_at(5),
            htl: Htl(5),
            replicas: 3,
            stored: 0,
            block: b,
        },
        &mut store,
    );
    assert!(matches!(events(&mut r)[..], [Event::PeerMisbehaved { .. }]));
    assert!(drain(&mut r).is_empty());
}

#[test]
fn local_inserts_without_peers_fail() {
    // Whatever the replica count (one copy included: this node alone is not "the
    // nearest node" of a network it is not in) and with the anonymity walk on or off,
    // an insert with nobody to send it to says so, and the daemon keeps it for later.
    for walk in [0.0, 1.0] {
        for replicas in [None, Some(1), Some(3)] {
            let config = RouterConfig {
                walk_probability: walk,
                ..cfg(1)
            };
            let (b, _) = blk(10);
            let (mut r, now) = lone(&[], config);
            let id = r.start_insert(now, b, None, replicas);
            assert!(
                matches!(
                    events(&mut r)[..],
                    [Event::InsertFinished { id: i, result: Err(InsertFailure::RouteNotFound), .. }] if i == id
                ),
                "walk {walk}, replicas {replicas:?}"
            );
            assert!(drain(&mut r).is_empty());
        }
    }
}

#[test]
fn an_inserts_deadline_allows_for_its_replica_chain() {
    // A request waits one hop timeout per hop it may still take; an insert also for
    // each copy still to be stored after its HTL runs out.
    let (b, key) = blk(12);
    let config = cfg(1);
    let per_hop = config.hop_timeout;
    let (mut r, now) = lone(&[Location::of_key(&key).0], config);
    let mut store = Mem::default();
    r.start_request(now, key, Some(Htl(5)), &mut store);
    assert_eq!(r.poll_timeout(), Some(now + per_hop * (5 + 1)));
    let (mut r, now) = lone(&[Location::of_key(&key).0], cfg(1));
    r.start_insert(now, b, Some(Htl(5)), Some(4));
    assert_eq!(r.poll_timeout(), Some(now + per_hop * (5 + 1 + 4)));
}

#[test]
fn local_store_answers_first() {
    let (b, key) = blk(11);
    let (mut r, now) = lone(&[1], cfg(1));
    let mut store = Mem::default();
    store.blocks.insert(key, (b.clone(), Placement::Cache));
    let id = r.start_request(now, key, None, &mut store);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.stats().local_hits, 1);
    assert_eq!(r.stats().local_requests_succeeded, 1);
    // The shell may look at what is pending without taking it.
    assert_eq!(r.pending_events().count(), 1);
    assert_eq!(r.pending_events().count(), 1);
    assert_eq!(
        events(&mut r),
        vec![Event::RequestFinished {
            id,
            key,
            result: Ok(Fetched {
                block: b,
                from: None
            })
        }]
    );
}

#[test]
fn odd_configurations_do_not_panic() {
    let key = key_at(1000);
    let mut store = Mem::default();
    let config = RouterConfig {
        max_htl: Htl(0),
        htl_policy: HtlPolicy::Probabilistic {
            decrement_at_max: f64::NAN,
            decrement_at_one: 7.0,
        },
        hop_timeout: Duration::MAX,
        max_inflight_per_peer: 0,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[900, 5000], config);
    let id = r.start_request(now, key, None, &mut store);
    assert!(matches!(
        events(&mut r)[..],
        [Event::RequestFinished { id: i, result: Err(RequestFailure::DataNotFound), .. }] if i == id
    ));
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(1),
            key,
            htl: Htl(255),
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(1), Message::RejectedOverload { id: RequestId(1) })]
    );
}

/// A router on a shared configuration is the router `new` makes from the same
/// settings with its seed; a new shared configuration takes effect; changing one
/// router's setting leaves the shared copy alone.
#[test]
fn routers_on_a_shared_configuration_keep_their_own_seeds() {
    let (_, key) = blk(4);
    let settings = |seed| RouterConfig {
        max_htl: Htl(9),
        ..cfg(seed)
    };
    let shared = std::sync::Arc::new(settings(0));
    let first_request = |mut r: Router| {
        let now = Instant::now();
        r.add_peer(now, PeerId(1), Location(7));
        let id = r.start_request(now, key, None, &mut Mem::default());
        let htl = r.poll_transmit().map(|(_, m)| match m {
            Message::Request { htl, .. } => htl,
            other => panic!("a request, not {other:?}"),
        });
        (id, htl)
    };
    let a = Router::with_shared_config(shared.clone(), 42, Location(0));
    assert!(std::sync::Arc::ptr_eq(a.shared_config(), &shared));
    let want = first_request(Router::new(settings(42), Location(0)));
    assert_eq!(first_request(a), want);
    assert_eq!(want.1, Some(Htl(9)));
    let other = first_request(Router::with_shared_config(shared.clone(), 43, Location(0)));
    assert_ne!(other.0, want.0);

    let mut b = Router::with_shared_config(shared.clone(), 42, Location(0));
    b.set_shared_config(std::sync::Arc::new(RouterConfig {
        max_htl: Htl(4),
        ..settings(0)
    }));
    assert_eq!(b.config().max_htl, Htl(4));
    let mut c = Router::with_shared_config(shared.clone(), 42, Location(0));
    let before = shared.latency_factor;
    c.set_latency_factor(before + 1.0);
    assert_eq!(c.config().latency_factor, before + 1.0);
    assert_eq!(shared.latency_factor, before);
}

#[test]
fn what_the_shell_reads_back_is_what_it_set() {
    let config = RouterConfig {
        max_htl: Htl(11),
        ..cfg(3)
    };
    let (mut r, _) = lone(&[1], config);
    assert_eq!(r.config().max_htl, Htl(11));
    assert_eq!(r.config().rng_seed, 3);
    // A peer never timed has no round trip (not a zero one, which would make it look
    // the quickest of all), and starts trusted.
    assert_eq!(r.peers().timing(PeerId(1)), Some((None, 1.0)));
    r.observe_rtt(PeerId(1), Duration::from_millis(5));
    assert_eq!(
        r.peers().timing(PeerId(1)),
        Some((Some(Duration::from_millis(5)), 1.0))
    );
    assert_eq!(r.peers().timing(PeerId(9)), None);
}

#[test]
fn a_fresh_id_skips_one_the_generator_draws_while_it_is_in_use() {
    // Twin routers with the same seed draw the same ids. The twin's first id arrives at
    // this router from a peer first, is served from the store and so is remembered as
    // seen; when this router's own generator then draws it, it must draw again, or a
    // reply to the peer's request would be taken for its own.
    let (b, key) = blk(13);
    let (mut twin, now) = lone(&[1], cfg(21));
    let drawn = twin.start_request(now, key_at(7), None, &mut Mem::default());
    let (mut r, _) = lone(&[1], cfg(21));
    let mut store = Mem::default();
    store.blocks.insert(key, (b, Placement::Store));
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: drawn,
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    assert!(matches!(drain(&mut r)[..], [(PeerId(1), Message::Data { id, .. })] if id == drawn));
    let own = r.start_request(now, key_at(7), None, &mut Mem::default());
    assert_ne!(own, drawn);
}

#[test]
fn sides_and_deadlines_at_their_extremes() {
    use super::time::later;
    // A point exactly half a turn away lies on one side only (counter-clockwise), so
    // the two chains of a replica walk can never both count it.
    assert!(Location((1 << 63) - 1).is_clockwise_of(Location(0)));
    assert!(!Location(1 << 63).is_clockwise_of(Location(0)));
    assert!(Location(5).is_clockwise_of(Location(u64::MAX - 5)));
    assert!(Location(7).is_clockwise_of(Location(7)));
    // A deadline that would overflow the clock is a year away instead.
    let now = Instant::now();
    assert_eq!(
        later(now, Duration::MAX),
        now + Duration::from_secs(365 * 86_400)
    );
    assert_eq!(
        later(now, Duration::from_secs(3)),
        now + Duration::from_secs(3)
    );
}
