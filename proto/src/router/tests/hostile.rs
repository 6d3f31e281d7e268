//! What a hostile or broken peer can send, and what the router answers and flags: data
//! nobody asked it for, replies of the wrong kind, late replies, and the failures a local
//! user then sees. Also the edges an attacker leans on: ties in "am I the nearest node",
//! a back-off that ends exactly now, a location that changes, and the counters that
//! metrics and research figures are built on. Written as behaviour (what arrives, what
//! leaves, what is flagged), so that breaking a defence fails a test.

use super::*;

/// A router with peers 1 and 2 that has just sent a request (or insert) for `key`:
/// returns it with the peer asked and the other.
fn asked(
    start: impl FnOnce(&mut Router, Instant, &mut Mem) -> RequestId,
) -> (Router, Instant, Mem, RequestId, PeerId, PeerId) {
    let (mut r, now) = lone(&[u64::MAX / 3, 2 * (u64::MAX / 3)], cfg(1));
    let mut store = Mem::default();
    let id = start(&mut r, now, &mut store);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "{out:?}");
    let first = out[0].0;
    let other = if first == PeerId(1) {
        PeerId(2)
    } else {
        PeerId(1)
    };
    (r, now, store, id, first, other)
}

/// A block whose key is far from location 0, so a router there with peers at a third
/// and two thirds of the ring is never the node nearest it.
fn far_block() -> Block {
    (20..=255)
        .map(blk)
        .find(|(_, k)| Location::of_key(k).distance(Location(0)).0 > u64::MAX / 4)
        .expect("some block lies far from 0")
        .0
}

/// Nodes 0 - 1 - 2 in a line, 2 nearest `key` and 0 farthest.
fn line_toward(key: &RoutingKey) -> Net {
    let t = Location::of_key(key).0;
    Net::line(&[
        t.wrapping_add(u64::MAX / 2),
        t.wrapping_add(u64::MAX / 4),
        t.wrapping_add(5),
    ])
}

/// The one message the router sent, a request or insert to `to`: its id.
fn sent_to(r: &mut Router, to: PeerId) -> RequestId {
    let out = drain(r);
    match out[..] {
        [(p, Message::Request { id, .. } | Message::Insert { id, .. })] if p == to => id,
        _ => panic!("expected one request or insert to {to:?}, sent {out:?}"),
    }
}

fn misbehaved(r: &mut Router) -> Vec<(PeerId, &'static str)> {
    events(r)
        .into_iter()
        .filter_map(|e| match e {
            Event::PeerMisbehaved { peer, reason } => Some((peer, reason)),
            _ => None,
        })
        .collect()
}

fn finished(evs: &[Event]) -> usize {
    evs.iter()
        .filter(|e| {
            matches!(
                e,
                Event::RequestFinished { .. } | Event::InsertFinished { .. }
            )
        })
        .count()
}

#[test]
fn data_from_a_peer_never_asked_is_flagged_and_the_asked_one_still_counts() {
    let (b, key) = blk(20);
    let (mut r, now, mut store, id, first, other) =
        asked(|r, now, s| r.start_request(now, key, None, s));
    // Valid data, but from a peer the request never went to.
    r.handle_message(
        now,
        other,
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    assert_eq!(
        misbehaved(&mut r),
        vec![(other, "data for a request it was not sent")]
    );
    assert_eq!(r.stats().misbehaviour, 1);
    assert_eq!(r.active_requests(), 1, "the request ended on unasked data");
    // The peer that was asked answers: that is the result.
    r.handle_message(
        now,
        first,
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    let evs = events(&mut r);
    assert!(evs.contains(&Event::RequestFinished {
        id,
        key,
        result: Ok(Fetched {
            block: b,
            from: Some(first)
        })
    }));
}

#[test]
fn data_answering_an_insert_is_flagged_unless_it_is_a_collision() {
    let b = far_block();
    let block = b.clone();
    let (mut r, now, mut store, id, first, other) =
        asked(move |r, now, _| r.start_insert(now, block, None, Some(1)));
    // Our own block echoed back is no collision; nor is data from a peer not asked.
    r.handle_message(
        now,
        first,
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    r.handle_message(
        now,
        other,
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    assert_eq!(
        misbehaved(&mut r),
        vec![
            (first, "data for an insert that is no collision"),
            (other, "data for a request it was not sent"),
        ]
    );
    assert_eq!(r.stats().collisions, 0);
    assert_eq!(r.active_requests(), 1, "the insert ended on bogus data");
    r.handle_message(now, first, Message::InsertReply { id }, &mut store);
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::InsertFinished { id: i, result: Ok(InsertReport { route_exhausted: false }), .. } if *i == id
    )));
}

#[test]
fn replies_from_peers_never_asked_are_flagged_and_late_ones_ignored() {
    let key = key_at(7);
    let (mut r, now, mut store, id, first, other) =
        asked(|r, now, s| r.start_request(now, key, None, s));
    r.handle_message(now, other, Message::DataNotFound { id }, &mut store);
    assert_eq!(
        misbehaved(&mut r),
        vec![(other, "reply for a request it was not sent")]
    );
    assert_eq!(r.active_requests(), 1);
    // The asked peer stays silent: the request moves on to the other peer.
    let deadline = r.poll_timeout().expect("a hop deadline");
    r.handle_timeout(deadline);
    let out = drain(&mut r);
    assert!(
        matches!(out[..], [(p, Message::Request { id: i, key: k, .. })] if p == other && i == id && k == key),
        "{out:?}"
    );
    // Now the first answers, too late: ignored quietly, the request waits on.
    r.handle_message(deadline, first, Message::DataNotFound { id }, &mut store);
    assert!(
        events(&mut r).is_empty(),
        "a late reply was flagged or ended it"
    );
    assert_eq!(r.stats().misbehaviour, 1);
    assert_eq!(r.active_requests(), 1);
    r.handle_message(deadline, other, Message::DataNotFound { id }, &mut store);
    assert!(events(&mut r).contains(&Event::RequestFinished {
        id,
        key,
        result: Err(RequestFailure::DataNotFound)
    }));
}

#[test]
fn replies_of_the_wrong_kind_are_flagged_and_the_search_goes_on() {
    // An InsertReply to a plain request.
    let key = key_at(8);
    let (mut r, now, mut store, id, first, other) =
        asked(|r, now, s| r.start_request(now, key, None, s));
    r.handle_message(now, first, Message::InsertReply { id }, &mut store);
    let evs = events(&mut r);
    assert_eq!(finished(&evs), 0, "{evs:?}");
    assert!(evs.contains(&Event::PeerMisbehaved {
        peer: first,
        reason: "reply of the wrong kind"
    }));
    let out = drain(&mut r);
    assert!(
        matches!(out[..], [(p, Message::Request { id: i, .. })] if p == other && i == id),
        "{out:?}"
    );

    // A Stored to an insert still approaching the key (no copy yet, so no walk for
    // a copy to count in): flagged, and the insert goes on elsewhere.
    let b = far_block();
    let (mut r, now, mut store, id, first, other) =
        asked(move |r, now, _| r.start_insert(now, b, None, None));
    r.handle_message(now, first, Message::Stored { id }, &mut store);
    assert!(misbehaved(&mut r).contains(&(first, "reply of the wrong kind")));
    assert!(
        matches!(drain(&mut r)[..], [(p, Message::Insert { id: i, .. })] if p == other && i == id)
    );

    // A DataNotFound to an insert.
    let b = far_block();
    let (mut r, now, mut store, id, first, other) =
        asked(move |r, now, _| r.start_insert(now, b, None, None));
    r.handle_message(now, first, Message::DataNotFound { id }, &mut store);
    let evs = events(&mut r);
    assert_eq!(finished(&evs), 0, "{evs:?}");
    assert!(evs.contains(&Event::PeerMisbehaved {
        peer: first,
        reason: "reply of the wrong kind"
    }));
    let out = drain(&mut r);
    assert!(
        matches!(out[..], [(p, Message::Insert { id: i, .. })] if p == other && i == id),
        "{out:?}"
    );
}

#[test]
fn a_relay_answers_a_completed_insert_on_the_wire() {
    // 0 - 1 - 2, the key nearest 2: the insert goes 0 -> 1 -> 2; 2 stores and answers
    // 1, and 1 answers 0 only with what 2 said.
    let (b, key) = blk(23);
    let mut net = line_toward(&key);
    let id = net.insert(0, b, None);
    net.drive();
    let sent_on = |net: &Net, at: usize, from: u64| -> Vec<Message> {
        net.nodes[at]
            .received
            .iter()
            .filter(|(p, _)| *p == PeerId(from))
            .map(|(_, m)| m.clone())
            .collect()
    };
    let to_1 = sent_on(&net, 1, 0);
    let Some(Message::Insert { id: hop1, .. }) = to_1.first() else {
        panic!("0 sent 1 {to_1:?}");
    };
    let to_2 = sent_on(&net, 2, 1);
    let Some(Message::Insert { id: hop2, .. }) = to_2.first() else {
        panic!("1 sent 2 {to_2:?}");
    };
    assert_eq!(
        sent_on(&net, 1, 2),
        vec![Message::InsertReply { id: *hop2 }],
        "the sink's answer"
    );
    assert_eq!(
        sent_on(&net, 0, 1),
        vec![Message::InsertReply { id: *hop1 }],
        "the relay's answer"
    );
    assert_eq!(
        net.insert_result(0, id),
        Some(Ok(InsertReport {
            route_exhausted: false
        }))
    );
    assert_eq!(net.placement(2, &key), Some(Placement::Store));
}

#[test]
fn a_silent_peer_is_a_timeout_and_a_busy_one_overload_to_the_user() {
    let key = key_at(9);
    let (mut r, now) = lone(&[u64::MAX / 2], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    drain(&mut r);
    r.handle_timeout(r.poll_timeout().unwrap());
    assert!(events(&mut r).contains(&Event::RequestFinished {
        id,
        key,
        result: Err(RequestFailure::TimedOut)
    }));

    let (mut r, now) = lone(&[u64::MAX / 2], cfg(1));
    let id = r.start_request(now, key, None, &mut store);
    drain(&mut r);
    r.handle_message(now, PeerId(1), Message::RejectedOverload { id }, &mut store);
    assert!(events(&mut r).contains(&Event::RequestFinished {
        id,
        key,
        result: Err(RequestFailure::Overloaded)
    }));

    let insert_failure = |answer: Option<Message>| {
        let (b, _) = blk(24);
        let (mut r, now) = lone(&[u64::MAX / 2], cfg(1));
        let mut store = Mem::default();
        let id = r.start_insert(now, b, None, None);
        drain(&mut r);
        match answer {
            Some(m) => r.handle_message(now, PeerId(1), m, &mut store),
            None => r.handle_timeout(r.poll_timeout().unwrap()),
        }
        events(&mut r).into_iter().find_map(|e| match e {
            Event::InsertFinished { id: i, result, .. } if i == id => Some(result),
            _ => None,
        })
    };
    assert_eq!(insert_failure(None), Some(Err(InsertFailure::TimedOut)));
    // The rejection must carry the id the router sent; reuse the first id (1).
    let (b, _) = blk(24);
    let (mut r, now) = lone(&[u64::MAX / 2], cfg(1));
    let id = r.start_insert(now, b, None, None);
    drain(&mut r);
    r.handle_message(now, PeerId(1), Message::RejectedOverload { id }, &mut store);
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::InsertFinished { id: i, result: Err(InsertFailure::Overloaded), .. } if *i == id
    )));
}

/// An insert arriving from `peer_at` at a node at `own`: where the node keeps it.
fn kept_at(own: u64, peer_at: u64, block: &Block) -> Option<Placement> {
    let now = Instant::now();
    let mut r = Router::new(cfg(1), Location(own));
    r.add_peer(now, PeerId(1), Location(peer_at));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Insert {
            id: RequestId(77),
            key: block.routing_key(),
            htl: Htl(r.config().max_htl.0),
            replicas: 1,
            stored: 0,
            block: block.clone(),
        },
        &mut store,
    );
    events(&mut r).into_iter().find_map(|e| match e {
        Event::Store { placement, .. } => Some(placement),
        _ => None,
    })
}

#[test]
fn a_node_as_near_the_key_as_any_peer_stores_it() {
    let (b, key) = blk(25);
    let t = Location::of_key(&key).0;
    // A tie: the peer as far on one side as the node on the other. Nobody is nearer,
    // so the node is a sink and keeps the block long-term.
    assert_eq!(
        kept_at(t.wrapping_sub(1000), t.wrapping_add(1000), &b),
        Some(Placement::Store)
    );
    // A peer one step nearer: the node only relays (a fresh insert at full HTL is not
    // even cached, Freenet's rule against tracing the inserter).
    assert_eq!(kept_at(t.wrapping_sub(1000), t.wrapping_add(999), &b), None);
}

#[test]
fn a_new_location_changes_which_node_is_the_sink() {
    let (b, key) = blk(26);
    let t = Location::of_key(&key).0;
    let now = Instant::now();
    let mut r = Router::new(cfg(1), Location(t.wrapping_add(u64::MAX / 2)));
    r.set_location(Location(t));
    assert_eq!(r.location(), Location(t));
    r.add_peer(now, PeerId(1), Location(t.wrapping_add(1000)));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Insert {
            id: RequestId(5),
            key,
            htl: r.config().max_htl,
            replicas: 1,
            stored: 0,
            block: b,
        },
        &mut store,
    );
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::Store {
            placement: Placement::Store,
            ..
        }
    )));
}

#[test]
fn a_back_off_ends_exactly_when_it_says() {
    // Peer 1 is the nearer to every key used; peer 2 is the fallback.
    let near = 1_000u64;
    let (mut r, now) = lone(&[near, u64::MAX / 2], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key_at(near + 1), None, &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    r.handle_message(now, PeerId(1), Message::RejectedOverload { id }, &mut store);
    drain(&mut r);
    events(&mut r);
    let until = r
        .peers
        .iter()
        .find(|p| p.id == PeerId(1))
        .and_then(|p| p.backoff_until)
        .expect("backed off");
    assert!(until > now);
    let first_choice = |r: &mut Router, at: Instant, loc: u64| {
        let mut store = Mem::default();
        r.start_request(at, key_at(loc), None, &mut store);
        drain(r)[0].0
    };
    assert_eq!(
        first_choice(&mut r, until - Duration::from_nanos(1), near + 2),
        PeerId(2),
        "a backed-off peer was asked first"
    );
    assert_eq!(
        first_choice(&mut r, until, near + 3),
        PeerId(1),
        "the back-off outlasted its end"
    );
}

#[test]
fn counters_count_what_happened() {
    // 0 - 1 - 2 with the key nearest 2. Insert from 0, then fetch it from 0 twice.
    let (b, key) = blk(27);
    let mut net = line_toward(&key);
    net.insert(0, b.clone(), None);
    net.drive();
    let s = |net: &Net, n: usize| net.nodes[n].router.stats().clone();
    assert_eq!(
        (s(&net, 0).local_inserts, s(&net, 0).local_inserts_succeeded),
        (1, 1)
    );
    assert_eq!(s(&net, 0).inserts_forwarded, 1);
    assert_eq!(
        (s(&net, 1).inserts_received, s(&net, 1).inserts_forwarded),
        (1, 1)
    );
    assert_eq!((s(&net, 2).inserts_received, s(&net, 2).stored), (1, 1));
    assert_eq!(
        s(&net, 1).stored,
        0,
        "a relay kept a fresh insert long-term"
    );

    // Node 0 asks: its own store does not have it; 1 forwards to 2 which serves it.
    // Drop 1's copy (if it cached one) so the request really travels.
    net.nodes[1].store.blocks.clear();
    let id = net.request(0, key, None);
    net.drive();
    assert!(matches!(net.request_result(0, id), Some(Ok(_))));
    let (s0, s1, s2) = (s(&net, 0), s(&net, 1), s(&net, 2));
    assert_eq!(
        (
            s0.local_requests,
            s0.local_requests_succeeded,
            s0.local_hits
        ),
        (1, 1, 0)
    );
    assert_eq!(s0.requests_forwarded, 1);
    assert_eq!((s1.requests_received, s1.requests_forwarded), (1, 1));
    assert_eq!((s2.requests_received, s2.served_from_store), (1, 1));
    // The relay is within two hops of the requester: caching there would show who
    // asked, so it does not.
    assert_eq!(s1.cached, 0, "a relay next to the requester cached");
    // With the block in 0's own store, asking again is a local hit.
    net.nodes[0]
        .store
        .blocks
        .insert(key, (b.clone(), Placement::Cache));
    let id = net.request(0, key, None);
    net.drive();
    assert!(matches!(net.request_result(0, id), Some(Ok(_))));
    let s0 = s(&net, 0);
    assert_eq!((s0.local_requests, s0.local_hits), (2, 1));
    assert_eq!(s0.requests_forwarded, 1, "a local hit went out to peers");
    for n in 0..3 {
        assert_eq!(s(&net, n).misbehaviour, 0, "node {n}");
    }
}

#[test]
fn an_originator_whose_htl_is_spent_ends_its_insert_unstored() {
    // A start HTL of 0: the originator never keeps its own user's block as a replica
    // (that would mark it as the publisher); the insert simply ends.
    let (b, _) = blk(28);
    let (mut r, now) = lone(&[u64::MAX / 3, 2 * (u64::MAX / 3)], cfg(1));
    let id = r.start_insert(now, b, Some(Htl(0)), None);
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        events(&mut r),
        vec![Event::InsertFinished {
            id,
            key: blk(28).1,
            result: Ok(InsertReport {
                route_exhausted: false
            })
        }]
    );
    assert_eq!(r.stats().stored, 0);
}

#[test]
fn an_insert_whose_htl_runs_out_at_a_relay_is_stored_there_and_walks_on() {
    let b = far_block();
    let key = b.routing_key();
    let (mut r, now) = lone(&[u64::MAX / 3, 2 * (u64::MAX / 3)], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Insert {
            id: RequestId(40),
            key,
            htl: Htl(1),
            replicas: 3,
            stored: 0,
            block: b.clone(),
        },
        &mut store,
    );
    // (Cached on arrival as every relay does, then kept long-term.)
    assert!(events(&mut r).contains(&Event::Store {
        key,
        block: b,
        placement: Placement::Store
    }));
    assert_eq!((r.stats().cached, r.stats().stored), (1, 1));
    // The walk goes on to the other peer, counting this copy, under HTL 1.
    assert!(matches!(
        drain(&mut r)[..],
        [(
            PeerId(2),
            Message::Insert {
                htl: Htl(1),
                stored: 1,
                ..
            }
        )]
    ));
}

#[test]
fn a_relay_far_from_the_requester_caches_what_it_passes_back() {
    let (b, key) = blk(29);
    let (mut r, now) = lone(&[u64::MAX / 2, Location::of_key(&key).0], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(41),
            key,
            htl: Htl(10),
        },
        &mut store,
    );
    let id = sent_to(&mut r, PeerId(2));
    r.handle_message(
        now,
        PeerId(2),
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(1),
            Message::Data {
                id: RequestId(41),
                block: b.clone()
            }
        )]
    );
    assert!(events(&mut r).contains(&Event::Store {
        key,
        block: b,
        placement: Placement::Cache
    }));
    assert_eq!(r.stats().cached, 1);
}

#[test]
fn a_relay_out_of_routes_for_an_unstored_insert_says_route_not_found() {
    // A relay not nearest the key forwards an insert; the one peer it can ask refuses
    // it as a loop. The insert is not stored anywhere yet, so the answer upstream is
    // RouteNotFound with the HTL left (not an InsertReply, which would claim it done).
    let b = far_block();
    let key = b.routing_key();
    let (mut r, now) = lone(&[u64::MAX / 3, 2 * (u64::MAX / 3)], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Insert {
            id: RequestId(42),
            key,
            htl: Htl(10),
            replicas: 3,
            stored: 0,
            block: b,
        },
        &mut store,
    );
    let out = drain(&mut r);
    let [(PeerId(2), Message::Insert { id, htl, .. })] = out[..] else {
        panic!("forwarded {out:?}");
    };
    r.handle_message(now, PeerId(2), Message::RejectedLoop { id }, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(1),
            Message::RouteNotFound {
                id: RequestId(42),
                htl
            }
        )]
    );
}

#[test]
fn what_a_user_is_told_when_every_route_is_spent() {
    // Peers 1 and 2; each answer in turn, then nobody is left.
    let outcome = |answers: [fn(RequestId) -> Message; 2]| {
        let key = key_at(9);
        let (mut r, now) = lone(&[u64::MAX / 3, 2 * (u64::MAX / 3)], cfg(1));
        let mut store = Mem::default();
        let id = r.start_request(now, key, None, &mut store);
        for answer in answers {
            let out = drain(&mut r);
            let [(peer, Message::Request { id: sent, .. })] = out[..] else {
                panic!("sent {out:?}");
            };
            r.handle_message(now, peer, answer(sent), &mut store);
        }
        events(&mut r).into_iter().find_map(|e| match e {
            Event::RequestFinished { id: i, result, .. } if i == id => Some(result),
            _ => None,
        })
    };
    let looped = |id| Message::RejectedLoop { id };
    let busy = |id| Message::RejectedOverload { id };
    let no_route = |id| Message::RouteNotFound { id, htl: Htl(3) };
    // Nobody took it: there is no route.
    assert_eq!(
        outcome([looped, looped]),
        Some(Err(RequestFailure::RouteNotFound))
    );
    // Somebody took it and searched: to the user, the block is not there.
    assert_eq!(
        outcome([no_route, looped]),
        Some(Err(RequestFailure::DataNotFound))
    );
    assert_eq!(
        outcome([busy, no_route]),
        Some(Err(RequestFailure::DataNotFound))
    );
    // Only refusals for load: the network is busy.
    assert_eq!(
        outcome([busy, looped]),
        Some(Err(RequestFailure::Overloaded))
    );
}

#[test]
fn data_found_later_is_offered_to_the_peer_whose_request_failed() {
    // Peer 1 asks for a key; the nearest peer (2) has nothing, so 1 is told DataNotFound
    // and remembered as an asker. When the local user's request then finds the block
    // through peer 3, it is offered to peer 1, and to nobody else.
    let (b, key) = blk(30);
    let t = Location::of_key(&key).0;
    let (mut r, now) = lone(
        &[
            t.wrapping_add(u64::MAX / 2),
            t.wrapping_add(5),
            t.wrapping_add(1 << 40),
        ],
        cfg(1),
    );
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(43),
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    let id = sent_to(&mut r, PeerId(2));
    r.handle_message(now, PeerId(2), Message::DataNotFound { id }, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(1), Message::DataNotFound { id: RequestId(43) })]
    );
    let mine = r.start_request(now, key, None, &mut store);
    let id = sent_to(&mut r, PeerId(3));
    r.handle_message(
        now,
        PeerId(3),
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(1), Message::Offer { key, block: b })]
    );
    assert_eq!(r.stats().offers_sent, 1);
    assert!(matches!(
        events(&mut r)[..],
        [Event::RequestFinished { id, result: Ok(_), .. }] if id == mine
    ));
}

#[test]
fn a_split_walks_second_chain_takes_the_side_the_first_did_not() {
    // This node is the nearest to the key, so it holds the first copy and splits the
    // replica walk: the first chain goes to the closest peer's side, the second to the
    // other. When the closest peer refuses and the first chain goes out on the other
    // side instead, the second chain must follow that change, or both chains would
    // cover one side of the key and leave the other bare.
    let (b, key) = blk(31);
    let t = Location::of_key(&key).0;
    let mut r = Router::new(cfg(1), Location(t));
    let now = Instant::now();
    for (id, at) in [
        (1, t.wrapping_add(10)),
        (2, t.wrapping_sub(20)),
        (3, t.wrapping_add(1000)),
        (4, t.wrapping_sub(1000)),
    ] {
        r.add_peer(now, PeerId(id), Location(at));
    }
    let mut store = Mem::default();
    r.start_insert(now, b, None, Some(5));
    let sent = |r: &mut Router| -> (PeerId, RequestId) {
        match drain(r)[..] {
            [(peer, Message::Insert { id, .. })] => (peer, id),
            ref other => panic!("sent {other:?}"),
        }
    };
    let (first, id) = sent(&mut r);
    assert_eq!(
        first,
        PeerId(1),
        "the first chain starts at the closest peer"
    );
    r.handle_message(now, first, Message::RejectedLoop { id }, &mut store);
    let (retry, id) = sent(&mut r);
    assert_eq!(retry, PeerId(2), "then the next closest, on the other side");
    r.handle_message(now, retry, Message::InsertReply { id }, &mut store);
    let (second, _) = sent(&mut r);
    assert_eq!(
        second,
        PeerId(3),
        "the second chain goes opposite the first's carrier"
    );
}

#[test]
fn data_is_not_offered_back_to_the_peer_that_just_sent_it() {
    // As above, but the user's request finds the block at the earlier asker itself:
    // it has the block now, so offering it back would be noise.
    let (b, key) = blk(30);
    let t = Location::of_key(&key).0;
    let (mut r, now) = lone(&[t.wrapping_add(u64::MAX / 2), t.wrapping_add(5)], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(44),
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    let id = sent_to(&mut r, PeerId(2));
    r.handle_message(now, PeerId(2), Message::DataNotFound { id }, &mut store);
    drain(&mut r);
    r.start_request(now, key, None, &mut store);
    let id = sent_to(&mut r, PeerId(1));
    r.handle_message(now, PeerId(1), Message::Data { id, block: b }, &mut store);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.stats().offers_sent, 0);
}

#[test]
fn a_replica_walk_that_loops_back_is_stored_but_a_looping_approach_is_refused() {
    // This relay forwards an insert (not yet stored anywhere) from peer 1 to peer 2.
    let relay = |stored_when_back: u8| {
        let b = far_block();
        let key = b.routing_key();
        let (mut r, now) = lone(&[u64::MAX / 3, 2 * (u64::MAX / 3)], cfg(1));
        let mut store = Mem::default();
        let insert = |stored| Message::Insert {
            id: RequestId(45),
            key,
            htl: Htl(10),
            replicas: 3,
            stored,
            block: b.clone(),
        };
        r.handle_message(now, PeerId(1), insert(0), &mut store);
        let out = drain(&mut r);
        let [(PeerId(2), Message::Insert { .. })] = out[..] else {
            panic!("forwarded {out:?}");
        };
        events(&mut r);
        // The same insert comes back from peer 2.
        r.handle_message(now, PeerId(2), insert(stored_when_back), &mut store);
        let kept = events(&mut r).contains(&Event::Store {
            key,
            block: b.clone(),
            placement: Placement::Store,
        });
        (drain(&mut r), kept, r.stats().stored)
    };
    // As a replica walk (a copy stored beyond): this node is among the nearest after
    // all, so it keeps a copy and tells the walk, which goes on without a hop spent.
    let (out, kept, stored) = relay(1);
    assert_eq!(
        out,
        vec![(PeerId(2), Message::Stored { id: RequestId(45) })]
    );
    assert!(kept);
    assert_eq!(stored, 1);
    // Still approaching the key: an ordinary loop, refused, nothing kept.
    let (out, kept, stored) = relay(0);
    assert_eq!(
        out,
        vec![(PeerId(2), Message::RejectedLoop { id: RequestId(45) })]
    );
    assert!(!kept);
    assert_eq!(stored, 0);
}

#[test]
fn a_collision_counts_only_from_the_peer_awaited() {
    // A signed insert goes to one peer, which refuses it as a loop; the router moves on
    // to the other. A valid, different block under the key from the peer that refused
    // is no collision (that peer no longer carries the insert); the same from the peer
    // now asked is one, and ends the insert.
    let kp = crate::ssk::KeyPair::from_secret([3; 32], [4; 32]);
    let (first, key) = kp.sign("site-1", b"first", [0; 12]).unwrap();
    let (second, key2) = kp.sign("site-1", b"second", [0; 12]).unwrap();
    assert_eq!(key, key2);
    let (mut r, now, mut store, id, refused, asked_now) =
        asked(move |r, now, _| r.start_insert_as(now, key, first, None, Some(1)));
    r.handle_message(now, refused, Message::RejectedLoop { id }, &mut store);
    assert!(matches!(drain(&mut r)[..], [(p, Message::Insert { .. })] if p == asked_now));
    let data = Message::Data {
        id,
        block: second.clone(),
    };
    r.handle_message(now, refused, data.clone(), &mut store);
    assert_eq!(
        misbehaved(&mut r),
        vec![(refused, "data for an insert that is no collision")]
    );
    assert_eq!(r.stats().collisions, 0);
    r.handle_message(now, asked_now, data, &mut store);
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::InsertFinished { id: i, result: Err(InsertFailure::Collision), .. } if *i == id
    )));
    assert_eq!(r.stats().collisions, 1);
}

#[test]
fn overload_counts_against_a_peers_record_for_requests_only() {
    // A busy peer refusing a request delivered nothing: its success share drops. An
    // insert refused for load says nothing about whether the peer delivers data.
    let key = key_at(8);
    let (mut r, now, mut store, id, first, _) =
        asked(|r, now, s| r.start_request(now, key, None, s));
    r.handle_message(now, first, Message::RejectedOverload { id }, &mut store);
    assert!(r.peers().timing(first).unwrap().1 < 1.0);
    let b = far_block();
    let (mut r, now, mut store, id, first, _) =
        asked(move |r, now, _| r.start_insert(now, b, None, None));
    r.handle_message(now, first, Message::RejectedOverload { id }, &mut store);
    assert_eq!(r.peers().timing(first).unwrap().1, 1.0);
}
