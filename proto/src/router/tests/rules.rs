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
    let (mut r, now) = lone(&(1..=40).map(|i| i << 50).collect::<Vec<_>>(), greedy());
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
    // (Another key: the failure table would answer for `key` itself now.)
    r.handle_message(
        later,
        PeerId(2),
        Message::Request {
            id: RequestId(4),
            key: key_at(1001),
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
            key: key_at(1002),
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
    assert_eq!(r.peers().count(), 2);
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

fn request(id: u64, loc: u64) -> Message {
    Message::Request {
        id: RequestId(id),
        key: key_at(loc),
        htl: Htl(9),
    }
}

fn rejected(out: &[(PeerId, Message)]) -> Vec<(PeerId, RequestId)> {
    out.iter()
        .filter_map(|(p, m)| match m {
            Message::RejectedOverload { id } => Some((*p, *id)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_flooding_peer_gets_what_is_left_and_the_others_their_share() {
    // Capacity 8 over 4 peers: a share of 2 each.
    let config = RouterConfig {
        max_inflight: 8,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[1 << 62, 2 << 62, 3 << 62, 100], config);
    let mut store = Mem::default();
    // Peer 1 alone: it may use the whole idle capacity.
    for id in 0..8 {
        r.handle_message(now, PeerId(1), request(id, 50), &mut store);
    }
    assert!(rejected(&drain(&mut r)).is_empty());
    // The node is full. Peer 1 is above its share: rejected.
    r.handle_message(now, PeerId(1), request(8, 50), &mut store);
    assert_eq!(rejected(&drain(&mut r)), vec![(PeerId(1), RequestId(8))]);
    // Peers 2 and 3 are below theirs: served, up to their share each.
    for (id, p) in [(9, 2), (10, 2), (11, 3), (12, 3)] {
        r.handle_message(now, PeerId(p), request(id, 50), &mut store);
    }
    assert!(rejected(&drain(&mut r)).is_empty());
    r.handle_message(now, PeerId(2), request(13, 50), &mut store);
    assert_eq!(rejected(&drain(&mut r)), vec![(PeerId(2), RequestId(13))]);
    // A finished request of peer 1's still leaves it above its share.
    r.handle_message(
        now,
        PeerId(4),
        Message::DataNotFound { id: RequestId(0) },
        &mut store,
    );
    drain(&mut r);
    r.handle_message(now, PeerId(1), request(14, 50), &mut store);
    assert_eq!(rejected(&drain(&mut r)), vec![(PeerId(1), RequestId(14))]);
}

#[test]
fn insert_bytes_are_shared_too() {
    // Room for three blocks in all, over two peers: one block each beyond the free room.
    let config = RouterConfig {
        max_inflight_bytes: 3 * block::BLOCK_LEN as u64,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[1 << 62, 3 << 62], config);
    let mut store = Mem::default();
    let insert = |id: u64, n: u8| {
        let (block, key) = blk(n);
        Message::Insert {
            id: RequestId(id),
            key,
            htl: Htl(9),
            replicas: 1,
            stored: 0,
            block,
        }
    };
    for (id, n) in [(1, 1), (2, 2), (3, 3)] {
        r.handle_message(now, PeerId(1), insert(id, n), &mut store);
    }
    r.handle_message(now, PeerId(1), insert(4, 4), &mut store);
    let out = drain(&mut r);
    assert_eq!(rejected(&out), vec![(PeerId(1), RequestId(4))]);
    // Requests hold no block: they are still taken from the same peer.
    r.handle_message(now, PeerId(1), request(5, 50), &mut store);
    assert!(rejected(&drain(&mut r)).is_empty());
    // Peer 2 holds nothing yet: its insert is within its share.
    r.handle_message(now, PeerId(2), insert(6, 6), &mut store);
    assert!(rejected(&drain(&mut r)).is_empty());
}

#[test]
fn back_off_doubles_while_a_peer_keeps_failing_and_resets_when_it_answers() {
    // One peer: a backed-off peer is still the last resort, so every request goes to it.
    let (mut r, now) = lone(&[100], cfg(1));
    let mut store = Mem::default();
    let base = r.config.backoff;
    let mut periods = Vec::new();
    for id in 0..4 {
        r.start_request(now, key_at(50), None, &mut store);
        let sent = drain(&mut r);
        let id_sent = sent[0].1.request_id().unwrap();
        assert_eq!(sent[0].0, PeerId(1), "request {id}");
        r.handle_message(
            now,
            PeerId(1),
            Message::RejectedOverload { id: id_sent },
            &mut store,
        );
        drain(&mut r);
        events(&mut r);
        let until = r.peers.get(PeerId(1)).unwrap().backoff_until.unwrap();
        periods.push(until - now);
    }
    assert_eq!(periods, vec![base, base * 2, base * 4, base * 8]);
    // A real answer resets the doubling.
    r.start_request(now, key_at(50), None, &mut store);
    let id = drain(&mut r)[0].1.request_id().unwrap();
    r.handle_message(now, PeerId(1), Message::DataNotFound { id }, &mut store);
    assert_eq!(r.peers.get(PeerId(1)).unwrap().backoff_level, 0);
    // And the back-off never exceeds its bound.
    for _ in 0..40 {
        r.peers
            .back_off_more(PeerId(1), now, base, r.config.max_backoff);
    }
    let until = r.peers.get(PeerId(1)).unwrap().backoff_until.unwrap();
    assert_eq!(until - now, r.config.max_backoff);
}

#[test]
fn forwarded_requests_leave_room_downstream_for_the_local_user() {
    // Window for forwarded requests: half of 4.
    let config = RouterConfig {
        max_inflight_per_peer: 4,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[1 << 63, 40, 1 << 62], config);
    let mut store = Mem::default();
    let mut to = Vec::new();
    for id in 0..3 {
        r.handle_message(now, PeerId(1), request(id, 50), &mut store);
        to.push(drain(&mut r)[0].0);
    }
    // Peer 2 is closest to the key, but takes only two of peer 1's requests from us.
    assert_eq!(to, vec![PeerId(2), PeerId(2), PeerId(3)]);
    // Our own user's request still goes to the closest peer.
    r.start_request(now, key_at(50), None, &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
    // An answer frees a place for forwarded requests again.
    r.handle_message(
        now,
        PeerId(2),
        Message::DataNotFound { id: RequestId(0) },
        &mut store,
    );
    drain(&mut r);
    // (Another key: the failure table would answer for key 50 itself now.)
    r.handle_message(now, PeerId(1), request(9, 51), &mut store);
    assert_eq!(drain(&mut r)[0].0, PeerId(2));
}

#[test]
fn offers_are_taken_only_when_asked_for_and_only_if_they_verify() {
    let (block, key) = blk(3);
    let (other, _) = blk(4);
    let (mut r, now) = lone(&[1 << 63, 1 << 62], cfg(1));
    let mut store = Mem::default();
    // Never asked: ignored, nothing stored, nobody blamed.
    let offer = |block: &Block| Message::Offer {
        key,
        block: block.clone(),
    };
    r.handle_message(now, PeerId(1), offer(&block), &mut store);
    assert_eq!(r.stats().offers_ignored, 1);
    assert!(events(&mut r).is_empty());
    // Asked peer 1 (our own user's request), which found nothing.
    let id = r.start_request(now, key, None, &mut store);
    let to = drain(&mut r)[0].0;
    r.handle_message(now, to, Message::DataNotFound { id }, &mut store);
    events(&mut r);
    // An offer from the peer that was not asked is still ignored.
    let stranger = if to == PeerId(1) {
        PeerId(2)
    } else {
        PeerId(1)
    };
    r.handle_message(now, stranger, offer(&block), &mut store);
    assert_eq!(r.stats().offers_ignored, 2);
    // A forged block from the asked peer is misbehaviour.
    r.handle_message(now, to, offer(&other), &mut store);
    assert!(matches!(events(&mut r)[..], [Event::PeerMisbehaved { .. }]));
    assert_eq!(r.stats().bad_blocks, 1);
    // The real block is taken and cached.
    r.handle_message(now, to, offer(&block), &mut store);
    assert_eq!(r.stats().offers_taken, 1);
    assert_eq!(r.stats().cached, 1);
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::Store {
            placement: Placement::Cache,
            ..
        }
    )));
}

#[test]
fn a_peer_that_ignores_overload_rejections_is_reported_once_at_the_threshold() {
    let config = RouterConfig {
        max_inflight_per_peer: 1,
        flood_rejections: 3,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[1 << 62, 100], config);
    let mut store = Mem::default();
    let flagged = |r: &mut Router| {
        events(r)
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::PeerMisbehaved {
                        peer: PeerId(2),
                        ..
                    }
                )
            })
            .count()
    };
    r.handle_message(now, PeerId(2), request(1, 50), &mut store);
    // Two refusals are ordinary load: a well-behaved peer backs off after them.
    for id in 2..4 {
        r.handle_message(now, PeerId(2), request(id, 50), &mut store);
        assert_eq!(flagged(&mut r), 0, "flagged after {} refusals", id - 1);
    }
    // The third within the back-off period is a flood: reported, and only once.
    r.handle_message(now, PeerId(2), request(4, 50), &mut store);
    assert_eq!(flagged(&mut r), 1);
    r.handle_message(now, PeerId(2), request(5, 50), &mut store);
    assert_eq!(flagged(&mut r), 0);
    assert_eq!(r.stats().flooders, 1);
    assert_eq!(r.stats().rejected_overload, 4);
}

#[test]
fn a_peer_may_fill_exactly_its_share_of_insert_bytes() {
    // Room for four blocks over two peers: two each once the node is full.
    let config = RouterConfig {
        max_inflight_bytes: 4 * block::BLOCK_LEN as u64,
        ..cfg(1)
    };
    let (mut r, now) = lone(&[1 << 62, 3 << 62], config);
    let mut store = Mem::default();
    // Blocks whose keys lie far from this node, so it forwards each and holds its bytes
    // until an answer comes (a node nearest the key would store it and be done).
    let far: Vec<(Block, RoutingKey)> = (40..=255)
        .map(blk)
        .filter(|(_, k)| Location::of_key(k).distance(Location(0)).0 > u64::MAX / 4)
        .take(7)
        .collect();
    let insert = |id: u64, n: u8| {
        let (block, key) = far[usize::from(n) - 1].clone();
        Message::Insert {
            id: RequestId(id),
            key,
            htl: Htl(9),
            replicas: 1,
            stored: 0,
            block,
        }
    };
    // Peer 1 fills the idle node.
    for (id, n) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        r.handle_message(now, PeerId(1), insert(id, n), &mut store);
    }
    assert!(rejected(&drain(&mut r)).is_empty());
    // Peer 2 still gets its share of two blocks in flight, not one more.
    for (id, n) in [(5, 5), (6, 6)] {
        r.handle_message(now, PeerId(2), insert(id, n), &mut store);
        assert!(rejected(&drain(&mut r)).is_empty(), "insert {id}");
    }
    r.handle_message(now, PeerId(2), insert(7, 7), &mut store);
    assert_eq!(rejected(&drain(&mut r)), vec![(PeerId(2), RequestId(7))]);
}
