//! Single routers poked by hand with fake peers: one rule per test.

use super::*;

#[test]
fn forwards_to_the_closest_peer_and_never_back_to_the_sender() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(7),
            key,
            htl: Htl(10),
        },
        &mut store,
    );
    // Peer 1 is closest but sent it: peer 2 is next.
    let out = drain(&mut r);
    assert_eq!(
        out,
        vec![(
            PeerId(2),
            Message::Request {
                id: RequestId(7),
                key,
                htl: Htl(9)
            }
        )]
    );
}

#[test]
fn loops_are_rejected_and_the_sender_moves_on() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let req = Message::Request {
        id: RequestId(7),
        key,
        htl: Htl(10),
    };
    r.handle_message(now, PeerId(3), req.clone(), &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    // The same id arriving again (a loop) is rejected.
    r.handle_message(now, PeerId(2), req, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(2), Message::RejectedLoop { id: RequestId(7) })]
    );
    // Peer 1 says loop: the router tries the next closest, peer 2.
    r.handle_message(
        now,
        PeerId(1),
        Message::RejectedLoop { id: RequestId(7) },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id: RequestId(7),
                key,
                htl: Htl(9)
            }
        )]
    );
    assert_eq!(r.stats().rejected_loop, 1);
}

#[test]
fn route_not_found_backtracks_with_the_smaller_htl() {
    let key = key_at(1000);
    // Each new attempt spends one HTL; a route-not-found lowers ours to what the
    // peer had left.
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(1),
            Message::Request {
                id,
                key,
                htl: Htl(18)
            }
        )]
    );
    r.handle_message(
        now,
        PeerId(1),
        Message::RouteNotFound { id, htl: Htl(11) },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(10)
            }
        )]
    );
    // A larger returned HTL does not raise ours.
    r.handle_message(
        now,
        PeerId(2),
        Message::RouteNotFound { id, htl: Htl(15) },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(3),
            Message::Request {
                id,
                key,
                htl: Htl(9)
            }
        )]
    );
    // Out of peers with HTL left, after peers took it: every route it could reach was
    // searched, so to the user the block is not there.
    r.handle_message(
        now,
        PeerId(3),
        Message::RouteNotFound { id, htl: Htl(2) },
        &mut store,
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        events(&mut r),
        vec![Event::RequestFinished {
            id,
            key,
            result: Err(RequestFailure::DataNotFound)
        }]
    );
    assert_eq!(r.active_requests(), 0);
}

#[test]
fn route_not_found_at_zero_htl_ends_as_data_not_found() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000], cfg(1));
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(2),
        Message::Request {
            id: RequestId(3),
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    drain(&mut r);
    r.handle_message(
        now,
        PeerId(1),
        Message::RouteNotFound {
            id: RequestId(3),
            htl: Htl(0),
        },
        &mut store,
    );
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(2), Message::DataNotFound { id: RequestId(3) })]
    );
}

#[test]
fn data_not_found_ends_the_request() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, Some(Htl(4)), &mut store);
    drain(&mut r);
    r.handle_message(now, PeerId(1), Message::DataNotFound { id }, &mut store);
    assert!(drain(&mut r).is_empty(), "no other peer is tried");
    assert_eq!(
        events(&mut r),
        vec![Event::RequestFinished {
            id,
            key,
            result: Err(RequestFailure::DataNotFound)
        }]
    );
}

#[test]
fn probabilistic_htl_is_fixed_per_link() {
    let policy = |at_max: f64, at_one: f64| RouterConfig {
        htl_policy: HtlPolicy::Probabilistic {
            decrement_at_max: at_max,
            decrement_at_one: at_one,
        },
        ..cfg(1)
    };
    let key = key_at(1000);
    let mut store = Mem::default();
    for (p, max_out, one_out) in [(policy(0.0, 0.0), 18, 1), (policy(1.0, 1.0), 17, 0)] {
        let (mut r, now) = lone(&[900, 5000], p);
        r.handle_message(
            now,
            PeerId(2),
            Message::Request {
                id: RequestId(1),
                key,
                htl: Htl(18),
            },
            &mut store,
        );
        r.handle_message(
            now,
            PeerId(2),
            Message::Request {
                id: RequestId(2),
                key,
                htl: Htl(1),
            },
            &mut store,
        );
        let out = drain(&mut r);
        assert_eq!(
            out[0].1,
            Message::Request {
                id: RequestId(1),
                key,
                htl: Htl(max_out)
            }
        );
        let second = if one_out == 0 {
            Message::DataNotFound { id: RequestId(2) }
        } else {
            Message::Request {
                id: RequestId(2),
                key,
                htl: Htl(1),
            }
        };
        assert_eq!(out[1].1, second);
    }
    // With probability one half, links differ, but each link decides once.
    let (mut r, now) = lone(
        &(1..=40).map(|i| i << 50).collect::<Vec<_>>(),
        RouterConfig::default(),
    );
    let mut kept = Vec::new();
    for peer in 1..=40u64 {
        let mut htls = HashSet::new();
        for round in 0..3u64 {
            let id = RequestId(peer * 100 + round);
            r.handle_message(
                now,
                PeerId(peer),
                Message::Request {
                    id,
                    key,
                    htl: Htl(18),
                },
                &mut store,
            );
            for (_, m) in drain(&mut r) {
                if let Message::Request { htl, .. } = m {
                    htls.insert(htl.0);
                }
            }
        }
        assert_eq!(htls.len(), 1, "one choice per link");
        kept.push(htls.contains(&18));
    }
    assert!(kept.iter().any(|k| *k) && kept.iter().any(|k| !*k));
}

#[test]
fn timeout_backtracks_and_late_data_still_counts() {
    let (b, key) = blk(2);
    let (mut r, now) = lone(&[1, 2], cfg(1));
    // Make peer 1 the closer one to the block's key.
    r.add_peer(now, PeerId(1), Location::of_key(&key));
    let mut store = Mem::default();
    let id = r.start_request(now, key, Some(Htl(5)), &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    let due = r.poll_timeout().unwrap();
    assert_eq!(
        due,
        now + Duration::from_secs(2) * 6,
        "hop_timeout × (htl + 1)"
    );
    r.handle_timeout(due - Duration::from_millis(1));
    assert!(drain(&mut r).is_empty(), "an early call does nothing");
    r.handle_timeout(due);
    // One HTL is charged for the silent hop.
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(4)
            }
        )]
    );
    assert_eq!(r.stats().timeouts, 1);
    // Peer 1 answers late: the request completes with its data.
    r.handle_message(
        due,
        PeerId(1),
        Message::Data {
            id,
            block: b.clone(),
        },
        &mut store,
    );
    match &events(&mut r)[..] {
        [Event::RequestFinished { result: Ok(f), .. }] => assert_eq!(f.from, Some(PeerId(1))),
        e => panic!("{e:?}"),
    }
    // Peer 2's answer after that is quietly dropped.
    r.handle_message(due, PeerId(2), Message::DataNotFound { id }, &mut store);
    assert!(events(&mut r).is_empty());
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn overload_rejects_and_backs_off() {
    let key = key_at(1000);
    let config = RouterConfig {
        max_inflight_per_peer: 1,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[900, 5000, 1 << 60], config);
    let mut store = Mem::default();
    r.handle_message(
        now,
        PeerId(3),
        Message::Request {
            id: RequestId(1),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    r.handle_message(
        now,
        PeerId(3),
        Message::Request {
            id: RequestId(2),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    let out = drain(&mut r);
    assert_eq!(
        out[1],
        (PeerId(3), Message::RejectedOverload { id: RequestId(2) })
    );
    assert_eq!(r.stats().rejected_overload, 1);
    // Peer 1 overloaded: request 1 goes to peer 2, and peer 1 is avoided for a while.
    r.handle_message(
        now,
        PeerId(1),
        Message::RejectedOverload { id: RequestId(1) },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
    r.handle_message(
        now,
        PeerId(2),
        Message::Request {
            id: RequestId(3),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(3), "peer 1 is backed off");
    let later = now + Duration::from_secs(6);
    r.handle_message(
        later,
        PeerId(3),
        Message::DataNotFound { id: RequestId(3) },
        &mut store,
    );
    r.handle_message(
        later,
        PeerId(2),
        Message::DataNotFound { id: RequestId(1) },
        &mut store,
    );
    drain(&mut r);
    r.handle_message(
        later,
        PeerId(2),
        Message::Request {
            id: RequestId(4),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(1), "back-off over");
    // A rejected request does not burn its id: it may come back later.
    r.handle_message(
        later,
        PeerId(3),
        Message::Request {
            id: RequestId(2),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    assert!(matches!(drain(&mut r)[0].1, Message::Request { .. }));
}

#[test]
fn removing_a_peer_moves_its_requests_on_and_drops_its_own() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let id = r.start_request(now, key, None, &mut store);
    r.handle_message(
        now,
        PeerId(1),
        Message::Request {
            id: RequestId(5),
            key,
            htl: Htl(9),
        },
        &mut store,
    );
    drain(&mut r);
    r.remove_peer(now, PeerId(1));
    // Our request moves on to peer 2; peer 1's own request is abandoned.
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(18)
            }
        )]
    );
    assert_eq!(r.active_requests(), 1);
    assert_eq!(r.peer_count(), 2);
}

#[test]
fn seen_ids_are_forgotten_after_the_ttl() {
    let key = key_at(1000);
    let (mut r, now) = lone(&[900, 5000], cfg(1));
    let mut store = Mem::default();
    for i in 0..50 {
        r.handle_message(
            now,
            PeerId(2),
            Message::Request {
                id: RequestId(i),
                key,
                htl: Htl(1),
            },
            &mut store,
        );
    }
    assert_eq!(r.seen.len(), 50);
    r.handle_timeout(now + Duration::from_secs(601));
    assert_eq!(r.seen.len(), 0);
    assert_eq!(r.active_requests(), 0);
}

#[test]
fn a_node_answers_within_its_budget() {
    let key = key_at(1000);
    let (mut r, t0) = lone(&[900, 5000, 1 << 60], cfg(1));
    let mut store = Mem::default();
    let id = RequestId(4);
    r.handle_message(
        t0,
        PeerId(3),
        Message::Request {
            id,
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(1));
    // Peer 1 refuses late; the retry's wait is cut to the budget (2 s × 5 from t0).
    let t1 = t0 + Duration::from_secs(9);
    r.handle_message(t1, PeerId(1), Message::RejectedLoop { id }, &mut store);
    assert_eq!(
        drain(&mut r),
        vec![(
            PeerId(2),
            Message::Request {
                id,
                key,
                htl: Htl(4)
            }
        )]
    );
    assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    r.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(
        drain(&mut r),
        vec![(PeerId(3), Message::RouteNotFound { id, htl: Htl(4) })]
    );
    assert_eq!(r.stats().budget_expired, 1);
    assert_eq!(r.stats().timeouts, 0);
    // Peer 2 was not to blame: it is not backed off.
    let t2 = t0 + Duration::from_secs(10);
    r.handle_message(
        t2,
        PeerId(1),
        Message::Request {
            id: RequestId(5),
            key,
            htl: Htl(5),
        },
        &mut store,
    );
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
}
