//! The status page at `/`: the node at a glance — a box to open a Veil URI in the
//! gateway, the node and its peers drawn on the location ring, store and cache fill,
//! the last hour's requests and traffic as small charts, the defence counters and the
//! peers with how each was found. Inline SVG and HTML only: no script, no style sheet,
//! nothing loaded from anywhere (CSP `default-src 'none'`). It refreshes itself only
//! when asked (`/?refresh=SECS`, a meta refresh): a page that reloads by itself wipes
//! whatever one is typing into its boxes.
//! Answered only for a Host header naming the loopback API address (127.0.0.1,
//! localhost or [::1] with the API port), so a web page elsewhere cannot read it through
//! DNS rebinding.

use crate::gateway::html_escape;
use crate::history::{deltas, Sample};
use crate::loopback::is_loopback_host_on;
use crate::node::{NodeHandle, Status};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;

/// The page's Content-Security-Policy: nothing may load; the URI box may submit to the
/// gateway on this origin.
pub(crate) const CSP: &str = "default-src 'none'; form-action 'self'";

/// Seconds between refreshes that the page's link offers.
const REFRESH_SECS: u32 = 60;

/// The page's query: `refresh` asks for a meta refresh every that many seconds (5 to
/// 3,600).
#[derive(serde::Deserialize)]
pub(crate) struct PageQuery {
    refresh: Option<u32>,
}

pub(crate) async fn page(
    State(node): State<NodeHandle>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback_host_on(host, node.api_addr().port()) {
        return (StatusCode::FORBIDDEN, "forbidden host\n").into_response();
    }
    let status = match node.status().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let peers = node.peers();
    let body = render(&status, &peers, &node.history().samples(), query.refresh);
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(body),
    )
        .into_response()
}

/// The rows of the peer table.
fn peer_rows(peers: &[crate::PeerInfo]) -> String {
    let mut rows = String::new();
    for p in peers {
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{:.6}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>",
            html_escape(&p.key.to_string()),
            html_escape(&p.addr.to_string()),
            veil_proto::Location(p.location).as_fraction(),
            if p.outbound { "out" } else { "in" },
            p.origin,
            if p.routable { "" } else { " (transient)" },
            p.rtt_ms.map_or("–".to_string(), |ms| format!("{ms:.1} ms"))
        );
    }
    rows
}

/// The page's refresh tag and the line that says how it refreshes (off unless asked).
fn refresh_parts(refresh: Option<u32>) -> (String, String) {
    match refresh.map(|s| s.clamp(5, 3600)) {
        Some(secs) => (
            format!("<meta http-equiv=\"refresh\" content=\"{secs}\">"),
            format!("Refreshes every {secs} s (<a href=\"/\">stop</a>)."),
        ),
        None => (
            String::new(),
            format!(
                "<a href=\"/?refresh={REFRESH_SECS}\">Refresh every {REFRESH_SECS} s</a> (off by default, so what you type stays)."
            ),
        ),
    }
}

/// The status page itself.
fn render(
    status: &Status,
    peers: &[crate::PeerInfo],
    samples: &[Sample],
    refresh: Option<u32>,
) -> String {
    let rows = peer_rows(peers);
    let dots: Vec<(f64, &str, bool)> = peers
        .iter()
        .map(|p| {
            (
                veil_proto::Location(p.location).as_fraction(),
                p.origin,
                p.routable,
            )
        })
        .collect();
    let ring = ring_svg(status.location, &dots);
    let charts = charts(samples);
    let u = status.store;
    let r = &status.requests;
    let d = &status.defence;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let (meta, refresh_note) = refresh_parts(refresh);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
{meta}<title>veild</title></head><body>\
<h1>veild</h1>\
<form method=\"get\" action=\"/go\"><label>Open a Veil URI \
<input name=\"uri\" size=\"70\" placeholder=\"veil:CHK@…\" required></label> \
<button>Open</button></form>\
<form method=\"get\" action=\"/search\"><label>Find by words \
<input name=\"q\" size=\"50\" placeholder=\"keywords\" required></label> \
<button>Search</button></form>\
<p>Identity <code>{id}</code><br>Address <code>{addr}</code><br>Location {loc:.6}</p>\
<h2>Ring</h2>{ring}\
<h2>Store</h2><p><meter min=\"0\" max=\"{sm_b}\" value=\"{sb_b}\"></meter> store {sb:.1} / {sm:.1} MiB ({sn} blocks)<br>\
<meter min=\"0\" max=\"{cm_b}\" value=\"{cb_b}\"></meter> cache {cb:.1} / {cm:.1} MiB ({cn} blocks)</p>\
<h2>Last hour</h2>{charts}\
<h2>Requests</h2><p>Received {rr}, served from store {fs}, from cache {fc}, forwarded {fw}; local {lo} ({ls} found)</p>\
<h2>Defence</h2><p>Rejected for overload {ro}, loops {rl}; answered from the failure table {rf}; peers dropped for flooding {fl}, for breaking the protocol {mb}; links closed on errors {le}; banned {bn}; handshakes evicted {he}, API connections evicted {ae}</p>\
<h2>Peers ({np})</h2><table><tr><th>key</th><th>address</th><th>location</th><th>dir</th><th>found by</th><th>round trip</th></tr>{rows}</table>\
<p>{refresh_note} Machine-readable: <code>veil status</code>, <code>/api/v1/status</code>, <code>/metrics</code>.</p>\
</body></html>",
        id = html_escape(&status.identity),
        addr = html_escape(&status.address),
        loc = status.location,
        sb_b = u.store_bytes,
        sm_b = u.store_max.max(1),
        cb_b = u.cache_bytes,
        cm_b = u.cache_max.max(1),
        sb = mib(u.store_bytes),
        sm = mib(u.store_max),
        sn = u.store_blocks,
        cb = mib(u.cache_bytes),
        cm = mib(u.cache_max),
        cn = u.cache_blocks,
        rr = r.received,
        fs = r.served_from_store,
        fc = r.served_from_cache,
        fw = r.forwarded,
        lo = r.local,
        ls = r.local_succeeded,
        np = status.peers,
        ro = d.rejected_overload,
        rl = d.rejected_loop,
        rf = d.recently_failed,
        fl = d.flooders,
        mb = d.misbehaviour,
        le = d.link_errors,
        bn = d.peers_banned,
        he = d.handshakes_evicted,
        ae = d.api_connections_evicted,
    )
}

/// The colour of a peer found by `origin`.
fn colour(origin: &str) -> &'static str {
    match origin {
        "friend" => "#1b7f3b",
        "seed" => "#8a5a00",
        "announcement" => "#1f5fbf",
        "path_folding" => "#7b2fa8",
        _ => "#555555",
    }
}

/// A point on the ring drawn at centre (110, 110) with radius 90; location 0 at the top,
/// clockwise.
fn on_ring(fraction: f64) -> (f64, f64) {
    let a = fraction * std::f64::consts::TAU;
    (110.0 + 90.0 * a.sin(), 110.0 - 90.0 * a.cos())
}

/// The location ring: this node (black), a chord to each peer, each peer coloured by
/// how it was found (hollow when transient), and a legend.
pub(crate) fn ring_svg(own: f64, peers: &[(f64, &str, bool)]) -> String {
    let mut s = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"360\" height=\"220\" \
         viewBox=\"0 0 360 220\" role=\"img\" aria-label=\"this node and its peers on the location ring\">\
         <circle cx=\"110\" cy=\"110\" r=\"90\" fill=\"none\" stroke=\"#999\"/>",
    );
    let (ox, oy) = on_ring(own);
    for &(loc, origin, routable) in peers {
        let (x, y) = on_ring(loc);
        let c = colour(origin);
        let _ = write!(
            s,
            "<line x1=\"{ox:.1}\" y1=\"{oy:.1}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-opacity=\"0.5\"/>\
             <circle class=\"peer\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{}\" stroke=\"{c}\"><title>{origin} {loc:.6}</title></circle>",
            if routable { c } else { "white" },
        );
    }
    let _ = write!(
        s,
        "<circle class=\"self\" cx=\"{ox:.1}\" cy=\"{oy:.1}\" r=\"6\" fill=\"black\"><title>this node {own:.6}</title></circle>"
    );
    for (i, origin) in ["friend", "seed", "announcement", "path_folding", "inbound"]
        .iter()
        .enumerate()
    {
        let y = 30 + 20 * i;
        let _ = write!(
            s,
            "<circle cx=\"230\" cy=\"{y}\" r=\"4\" fill=\"{c}\"/><text x=\"240\" y=\"{}\" font-size=\"12\">{origin}</text>",
            y + 4,
            c = colour(origin),
        );
    }
    s.push_str("</svg>");
    s
}

/// One small bar chart of per-minute values.
fn bar_chart(title: &str, values: &[u64], unit: &str) -> String {
    let (w, h) = (240.0, 60.0);
    let max = values.iter().copied().max().unwrap_or(0);
    let mut s = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{title}\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#f4f4f4\"/>"
    );
    let slot = w / 60.0;
    // The newest interval at the right edge.
    let first = 60usize.saturating_sub(values.len());
    for (i, &v) in values.iter().enumerate() {
        let bh = if max == 0 {
            0.0
        } else {
            (v as f64 / max as f64) * (h - 2.0)
        };
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#1f5fbf\"><title>{v} {unit}</title></rect>",
            (first + i) as f64 * slot,
            h - bh,
            slot * 0.8,
        );
    }
    let _ = write!(
        s,
        "</svg><figcaption>{title}: peak {max} {unit} a minute</figcaption></figure>"
    );
    s
}

/// The last hour's charts, or a note while fewer than two samples exist.
fn charts(samples: &[Sample]) -> String {
    if samples.len() < 2 {
        return "<p>Charts appear after the node's first minute.</p>".into();
    }
    let kib = |v: Vec<u64>| v.into_iter().map(|b| b / 1024).collect::<Vec<_>>();
    let failed: Vec<u64> = deltas(samples, |s| s.local)
        .into_iter()
        .zip(deltas(samples, |s| s.local_succeeded))
        .map(|(all, ok)| all.saturating_sub(ok))
        .collect();
    [
        bar_chart(
            "your requests found",
            &deltas(samples, |s| s.local_succeeded),
            "requests",
        ),
        bar_chart("your requests not found", &failed, "requests"),
        bar_chart(
            "requests from peers",
            &deltas(samples, |s| s.received),
            "requests",
        ),
        bar_chart("traffic sent", &kib(deltas(samples, |s| s.sent)), "KiB"),
        bar_chart(
            "traffic received",
            &kib(deltas(samples, |s| s.bytes_received)),
            "KiB",
        ),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_has_this_node_and_every_peer() {
        let svg = ring_svg(0.25, &[(0.5, "friend", true), (0.75, "inbound", false)]);
        assert_eq!(svg.matches("class=\"peer\"").count(), 2);
        assert_eq!(svg.matches("class=\"self\"").count(), 1);
        // Location 0.25 is at the right of the ring, 0.5 at the bottom.
        assert!(svg.contains("cx=\"200.0\" cy=\"110.0\" r=\"6\""), "{svg}");
        assert!(svg.contains("cx=\"110.0\" cy=\"200.0\""), "{svg}");
        // A transient peer is hollow.
        assert!(svg.contains("fill=\"white\""));
    }

    #[test]
    fn charts_wait_for_two_samples_and_then_draw_each_interval() {
        let s = |at, local, ok| Sample {
            at,
            local,
            local_succeeded: ok,
            received: 0,
            sent: 2048 * at,
            bytes_received: 0,
        };
        assert!(charts(&[s(0, 0, 0)]).contains("first minute"));
        let html = charts(&[s(0, 0, 0), s(60, 10, 7), s(120, 12, 9)]);
        assert_eq!(html.matches("<figure>").count(), 5);
        // Two intervals: 7 then 2 found, 3 then 0 not found.
        assert!(html.contains("<title>7 requests</title>"));
        assert!(html.contains("<title>3 requests</title>"));
        assert!(html.contains("peak 120 KiB"), "{html}");
    }
}
