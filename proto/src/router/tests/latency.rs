//! Latency-aware next hops: among peers nearly as close to the key as the closest, a
//! request goes to the one with the best measured round trip and success; inserts and a
//! request's last hops stay greedy; a quick peer that never delivers loses the traffic.

use super::*;

const D: u64 = 1 << 40;

/// Fixed weights, so the cases below do not move with the tuned defaults.
fn aware(seed: u64) -> RouterConfig {
    RouterConfig {
        latency_factor: 8.0,
        latency_progress_weight: 0.35,
        ..cfg(seed)
    }
}

/// A router far from `base` with three peers at 1, 2 and 20 steps of `D` past it, their
/// round trips `rtts` ms (0: never measured).
fn three(base: u64, config: RouterConfig, rtts: [u64; 3]) -> (Router, Instant) {
    let now = Instant::now();
    let mut r = Router::new(config, Location(base.wrapping_add(1 << 62)));
    for (i, steps) in [1u64, 2, 20].into_iter().enumerate() {
        let id = PeerId(i as u64 + 1);
        r.add_peer(now, id, Location(base.wrapping_add(steps * D)));
        if rtts[i] > 0 {
            r.observe_rtt(id, Duration::from_millis(rtts[i]));
        }
    }
    (r, now)
}

fn first_hop(r: &mut Router, now: Instant, key: RoutingKey) -> PeerId {
    let mut store = Mem::default();
    r.start_request(now, key, None, &mut store);
    let out = drain(r);
    let (peer, msg) = out.first().expect("a request forwarded");
    assert!(matches!(msg, Message::Request { .. }), "{msg:?}");
    *peer
}

#[test]
fn a_quicker_peer_within_the_factor_takes_the_request() {
    let base = 1u64 << 50;
    // Peer 2 is twice as far as peer 1 but ten times quicker; peer 3 is quicker still
    // but twenty times as far, beyond the factor of 8.
    let (mut r, now) = three(base, aware(1), [200, 20, 1]);
    assert_eq!(first_hop(&mut r, now, key_at(base)), PeerId(2));
    assert_eq!(
        r.peers().timing(PeerId(2)).unwrap().0,
        Some(Duration::from_millis(20))
    );
    // Peer 2 slows down: smoothed samples bring it past peer 1's cost.
    for _ in 0..40 {
        r.observe_rtt(PeerId(2), Duration::from_millis(400));
    }
    assert_eq!(first_hop(&mut r, now, key_at(base + 1)), PeerId(1));
}

#[test]
fn greedy_without_measurements_or_with_factor_one() {
    let base = 3u64 << 58;
    let greedy_cfg = RouterConfig {
        latency_factor: 1.0,
        ..aware(1)
    };
    let (mut r, now) = three(base, greedy_cfg, [200, 20, 1]);
    assert_eq!(first_hop(&mut r, now, key_at(base)), PeerId(1));
    let (mut r, now) = three(base, aware(1), [0, 0, 0]);
    assert_eq!(first_hop(&mut r, now, key_at(base)), PeerId(1));
    // The closest peer's round trip unknown: nothing to weigh it against.
    let (mut r, now) = three(base, aware(1), [0, 20, 1]);
    assert_eq!(first_hop(&mut r, now, key_at(base)), PeerId(1));
    // Samples for a peer that is not there change nothing.
    r.observe_rtt(PeerId(9), Duration::from_millis(1));
    assert!(r.peers().timing(PeerId(9)).is_none());
}

#[test]
fn a_copy_switched_to_factor_one_routes_greedily_and_the_original_does_not() {
    let base = 7u64 << 58;
    let (mut aware_router, now) = three(base, aware(1), [200, 20, 1]);
    let mut greedy = aware_router.clone();
    greedy.set_latency_factor(1.0);
    assert_eq!(greedy.config().latency_factor, 1.0);
    assert_eq!(first_hop(&mut greedy, now, key_at(base)), PeerId(1));
    assert_eq!(first_hop(&mut aware_router, now, key_at(base)), PeerId(2));
    // And back: the copy takes the quick peer again once its factor allows it.
    greedy.set_latency_factor(8.0);
    assert_eq!(first_hop(&mut greedy, now, key_at(base + 1)), PeerId(2));
}

#[test]
fn inserts_and_the_last_hops_of_a_request_stay_greedy() {
    let (block, key) = blk(7);
    let base = Location::of_key(&key).0;
    let (mut r, now) = three(base.wrapping_sub(D / 2), aware(1), [200, 20, 1]);
    r.start_insert(now, block, None, Some(1));
    let out = drain(&mut r);
    assert!(
        matches!(out[0], (PeerId(1), Message::Insert { .. })),
        "{out:?}"
    );

    // A request that arrives with few hops left goes to the closest peer: from 7 it
    // holds 6 after this hop's decrement, a third of 18, where the last third begins.
    let base = 5u64 << 58;
    let (mut r, now) = three(base, aware(1), [200, 20, 1]);
    let mut store = Mem::default();
    let low = Htl(r.config().max_htl.0 / 3 + 1);
    r.handle_message(
        now,
        PeerId(3),
        Message::Request {
            id: RequestId(77),
            key: key_at(base),
            htl: low,
        },
        &mut store,
    );
    assert!(matches!(
        drain(&mut r)[..],
        [(PeerId(1), Message::Request { .. })]
    ));
    // With one hop more, or all of them, the same request goes to the quick peer.
    for (id, htl) in [(78, low.0 + 1), (79, r.config().max_htl.0)] {
        r.handle_message(
            now,
            PeerId(3),
            Message::Request {
                id: RequestId(id),
                key: key_at(base + id),
                htl: Htl(htl),
            },
            &mut store,
        );
        assert!(
            matches!(drain(&mut r)[..], [(PeerId(2), Message::Request { .. })]),
            "arriving with HTL {htl}"
        );
    }
}

#[test]
fn a_quick_peer_that_never_delivers_loses_the_traffic() {
    let base = 7u64 << 58;
    let (mut r, now) = three(base, aware(1), [100, 40, 1]);
    let mut store = Mem::default();
    let mut to_quick = 0;
    for i in 0..200u64 {
        let key = key_at(base + i);
        let id = r.start_request(now, key, None, &mut store);
        let (peer, _) = drain(&mut r)[0].clone();
        if peer != PeerId(2) {
            break;
        }
        to_quick += 1;
        // It answers at once, always "not found".
        r.handle_message(now, peer, Message::DataNotFound { id }, &mut store);
        events(&mut r);
    }
    assert!(
        (10..60).contains(&to_quick),
        "the quick peer kept {to_quick} requests"
    );
    let (_, success) = r.peers().timing(PeerId(2)).unwrap();
    assert!(success < 0.6, "{success}");
}
