//! Counters the shell keeps beside the router's own, and the Prometheus text rendering
//! of everything `/metrics` shows.

use crate::store::Usage;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use veil_proto::router::RouterStats;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The shell's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Links that completed their handshake and were taken into the peer table.
    pub links_opened: Counter,
    /// Links that closed.
    pub links_closed: Counter,
    /// Links closed because of a bad frame, failed decryption, bad message or silence.
    pub link_errors: Counter,
    /// Inbound handshakes that failed (wrong key, garbage, timeout).
    pub handshake_failures: Counter,
    /// Outbound dials that failed.
    pub dial_failures: Counter,
    /// Links replaced by a fresh one to the same peer (key renewal), requests kept.
    pub links_renewed: Counter,
    /// Pending inbound handshakes closed to make room for a newer connection.
    pub handshakes_evicted: Counter,
    /// API connections closed to make room for a newer connection.
    pub api_connections_evicted: Counter,
    /// Request messages received from peers.
    pub peer_requests: Counter,
    /// Pings answered: round-trip samples fed to latency-aware routing.
    pub rtt_samples: Counter,
    /// Peers the router reported as misbehaving.
    pub misbehaviour: Counter,
    /// API calls refused for a missing or wrong token.
    pub api_unauthorized: Counter,
    /// Links refused for want of room.
    pub links_refused: Counter,
    /// Peers refused for a while after breaking the protocol.
    pub peers_banned: Counter,
    /// Blocks the local user put that failed verification (wrong hash, forged signature).
    pub api_bad_blocks: Counter,
    /// Bytes all links moved.
    pub traffic: std::sync::Arc<crate::link::Traffic>,
}

/// Renders the Prometheus text exposition.
// A declared table (one entry per metric), exempt from the 80-line rule for functions.
pub fn render(c: &Counters, r: &RouterStats, u: &Usage, routable_peers: usize) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP veil_{name} {help}");
        let _ = writeln!(out, "# TYPE veil_{name} {kind}");
        let _ = writeln!(out, "veil_{name} {value}");
    };
    metric(
        "peers",
        "gauge",
        "Connected routable peers.",
        routable_peers as u64,
    );
    metric(
        "store_bytes",
        "gauge",
        "Bytes in the long-term store.",
        u.store_bytes,
    );
    metric(
        "store_max_bytes",
        "gauge",
        "Bound of the long-term store.",
        u.store_max,
    );
    metric("cache_bytes", "gauge", "Bytes in the cache.", u.cache_bytes);
    metric(
        "cache_max_bytes",
        "gauge",
        "Bound of the cache.",
        u.cache_max,
    );
    metric(
        "links_opened_total",
        "counter",
        "Links opened.",
        c.links_opened.get(),
    );
    metric(
        "links_closed_total",
        "counter",
        "Links closed.",
        c.links_closed.get(),
    );
    metric(
        "link_errors_total",
        "counter",
        "Links closed on an error.",
        c.link_errors.get(),
    );
    metric(
        "handshake_failures_total",
        "counter",
        "Inbound handshakes that failed.",
        c.handshake_failures.get(),
    );
    metric(
        "dial_failures_total",
        "counter",
        "Outbound dials that failed.",
        c.dial_failures.get(),
    );
    metric(
        "links_renewed_total",
        "counter",
        "Links replaced by a fresh one to the same peer (key renewal).",
        c.links_renewed.get(),
    );
    metric(
        "link_rtt_samples_total",
        "counter",
        "Pings answered: link round-trip samples fed to latency-aware routing.",
        c.rtt_samples.get(),
    );
    metric(
        "handshakes_evicted_total",
        "counter",
        "Pending inbound handshakes closed to make room for a newer connection.",
        c.handshakes_evicted.get(),
    );
    metric(
        "api_connections_evicted_total",
        "counter",
        "API connections closed to make room for a newer connection.",
        c.api_connections_evicted.get(),
    );
    metric(
        "links_refused_total",
        "counter",
        "Links refused for want of room.",
        c.links_refused.get(),
    );
    metric(
        "peers_banned_total",
        "counter",
        "Peers banned for a while after breaking the protocol.",
        c.peers_banned.get(),
    );
    metric(
        "api_bad_blocks_total",
        "counter",
        "Blocks put through the API that failed verification (wrong hash, forged signature).",
        c.api_bad_blocks.get(),
    );
    metric(
        "opennet_announcements_total",
        "counter",
        "Announcements this node started.",
        r.opennet.announces_started,
    );
    metric(
        "opennet_folds_taken_total",
        "counter",
        "Path-folding offers this node took.",
        r.opennet.folds_taken,
    );
    metric(
        "opennet_peers_dropped_total",
        "counter",
        "Opennet peers dropped to make room or released seeds.",
        r.opennet.peers_dropped,
    );
    metric(
        "opennet_bad_offers_total",
        "counter",
        "Offered peer addresses that could not be reached, charged to the peer that offered them.",
        r.opennet.bad_offers,
    );
    metric(
        "swaps_started_total",
        "counter",
        "Darknet location swaps this node started.",
        r.swap.started,
    );
    metric(
        "swaps_moved_total",
        "counter",
        "Swaps that moved this node to its partner's location.",
        r.swap.moved,
    );
    metric(
        "swaps_declined_total",
        "counter",
        "Swaps decided with no move.",
        r.swap.declined,
    );
    metric(
        "swaps_refused_total",
        "counter",
        "Swaps ended because a reveal did not match its commitment.",
        r.swap.refused,
    );
    metric(
        "swaps_rerandomised_total",
        "counter",
        "Fresh random locations drawn because this node's own sat on top of one its peers or their peers hold (pitch-black mitigation).",
        r.swap.rerandomised,
    );
    metric(
        "walks_started_total",
        "counter",
        "Anonymity walks this node's own requests and inserts started.",
        r.walks_started,
    );
    metric(
        "walks_relayed_total",
        "counter",
        "Other nodes' walks this node passed on.",
        r.walks_relayed,
    );
    metric(
        "walks_ended_total",
        "counter",
        "Walks that ended here (routed greedily from this node).",
        r.walks_ended,
    );
    metric(
        "api_unauthorized_total",
        "counter",
        "API calls refused for a missing or wrong token.",
        c.api_unauthorized.get(),
    );
    metric(
        "link_bytes_sent_total",
        "counter",
        "Bytes written to peers (frames, prefixes and tags).",
        c.traffic.sent.load(Ordering::Relaxed),
    );
    metric(
        "link_bytes_received_total",
        "counter",
        "Bytes read from peers (frames, prefixes and tags).",
        c.traffic.received.load(Ordering::Relaxed),
    );
    let router = [
        (
            "requests_received_total",
            "Requests received from peers.",
            r.requests_received,
        ),
        (
            "inserts_received_total",
            "Inserts received from peers.",
            r.inserts_received,
        ),
        (
            "requests_forwarded_total",
            "Request messages sent.",
            r.requests_forwarded,
        ),
        (
            "inserts_forwarded_total",
            "Insert messages sent.",
            r.inserts_forwarded,
        ),
        (
            "served_from_store_total",
            "Peer requests answered from the store.",
            r.served_from_store,
        ),
        (
            "served_from_cache_total",
            "Peer requests answered from the cache.",
            r.served_from_cache,
        ),
        (
            "local_requests_total",
            "Local requests started.",
            r.local_requests,
        ),
        (
            "local_hits_total",
            "Local requests answered locally.",
            r.local_hits,
        ),
        (
            "local_requests_succeeded_total",
            "Local requests that found their block.",
            r.local_requests_succeeded,
        ),
        (
            "local_inserts_total",
            "Local inserts started.",
            r.local_inserts,
        ),
        (
            "local_inserts_succeeded_total",
            "Local inserts completed.",
            r.local_inserts_succeeded,
        ),
        ("rejected_loop_total", "RejectedLoop sent.", r.rejected_loop),
        (
            "rejected_overload_total",
            "RejectedOverload sent.",
            r.rejected_overload,
        ),
        (
            "recently_failed_total",
            "Peers' requests answered at once from the failure table.",
            r.recently_failed,
        ),
        (
            "offers_sent_total",
            "Blocks offered to peers that had asked for them in vain.",
            r.offers_sent,
        ),
        (
            "offers_taken_total",
            "Offered blocks taken (asked for here before, and verified).",
            r.offers_taken,
        ),
        (
            "flooders_total",
            "Peers dropped for flooding: they kept sending after overload rejections.",
            r.flooders,
        ),
        ("timeouts_total", "Per-hop timeouts.", r.timeouts),
        ("cached_total", "Blocks handed to the cache.", r.cached),
        (
            "stored_total",
            "Blocks handed to the long-term store.",
            r.stored,
        ),
        (
            "misbehaviour_total",
            "Protocol violations by peers.",
            r.misbehaviour,
        ),
        (
            "bad_blocks_total",
            "Blocks from peers refused for failing verification (wrong hash, forged or altered signature).",
            r.bad_blocks,
        ),
        (
            "collisions_total",
            "Inserts refused because another block already holds their signed key.",
            r.collisions,
        ),
    ];
    for (name, help, v) in router {
        metric(name, "counter", help, v);
    }
    out
}
