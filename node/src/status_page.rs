//! The status page at `/`: plain HTML with the node's identity, peers and store use.
//! No script, no external resource, and only for a Host header naming the loopback API
//! address (127.0.0.1, localhost or [::1] with the API port), so a web page elsewhere
//! cannot read it through DNS rebinding.

use crate::gateway::html_escape;
use crate::loopback::is_loopback_host_on;
use crate::node::NodeHandle;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub(crate) async fn page(State(node): State<NodeHandle>, headers: HeaderMap) -> Response {
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
    let mut peers = String::new();
    for p in node.peers().iter() {
        peers.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{:.6}</td><td>{}</td><td>{}{}</td></tr>",
            html_escape(&p.key.to_string()),
            html_escape(&p.addr.to_string()),
            veil_proto::Location(p.location).as_fraction(),
            if p.outbound { "out" } else { "in" },
            p.origin,
            if p.routable { "" } else { " (transient)" }
        ));
    }
    let u = status.store;
    let r = &status.requests;
    let d = &status.defence;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>veild</title></head><body>\
<h1>veild</h1>\
<p>Identity <code>{id}</code><br>Address <code>{addr}</code><br>Location {loc:.6}</p>\
<h2>Store</h2><p>Store {sb:.1} / {sm:.1} MiB ({sn} blocks)<br>Cache {cb:.1} / {cm:.1} MiB ({cn} blocks)</p>\
<h2>Requests</h2><p>Received {rr}, served from store {fs}, from cache {fc}, forwarded {fw}; local {lo} ({ls} found)</p>\
<h2>Defence</h2><p>Rejected for overload {ro}, loops {rl}; answered from the failure table {rf}; peers dropped for flooding {fl}, for breaking the protocol {mb}; links closed on errors {le}; banned {bn}; handshakes evicted {he}, API connections evicted {ae}</p>\
<h2>Peers ({np})</h2><table><tr><th>key</th><th>address</th><th>location</th><th>dir</th><th>found by</th></tr>{peers}</table>\
</body></html>",
        id = html_escape(&status.identity),
        addr = html_escape(&status.address),
        loc = status.location,
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
    );
    (
        [
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(body),
    )
        .into_response()
}
