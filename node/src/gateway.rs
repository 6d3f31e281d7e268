//! The browser gateway (a module of `veild` over the `veil-client` library): an axum router that serves `GET /veil:CHK@<R>,<K>/name[/path]`
//! from any [`BlockSource`], decoding with this crate.
//!
//! - A file is streamed with the Content-Type its metadata gives.
//! - A directory manifest (or a directory inside one) is an HTML page of links. Links are
//!   absolute paths on the gateway (`/veil:CHK@.../name/sub/file`), so they resolve
//!   under it whatever the page's own URL ends with. Mount the router at the root.
//! - A malformed URI is a 400 page, a missing document a 404 page.
//!
//! - HTML, XHTML and SVG are streamed through a filter on a standard HTML parser (module
//!   `html`) that removes everything that could name another host, because browsers
//!   open speculative connections the CSP does not stop; they are served as
//!   `text/html; charset=utf-8` whatever their metadata says, so the browser parses them
//!   exactly as the filter did. Memory per request is bounded whatever the size.
//! - CSS is served as `text/css` (its loads meet the CSP) and JSON as itself; other text
//!   (plain, XML feeds) as `text/plain; charset=utf-8`;
//!   pictures, sound and video as themselves; any other type gets a page that names it
//!   and offers it as a download (`?download=1`, `Content-Disposition: attachment`)
//!   rather than handing it to the browser.
//!
//! Every response carries headers that keep a page from reaching outside the gateway and
//! from revealing its user ([`SECURITY_HEADERS`]): a Content-Security-Policy allowing
//! only the gateway's own origin, no scripts at all, and a sandbox that also stops forms,
//! plugins and `<meta http-equiv=refresh>` navigation. The gateway answers only requests
//! whose Host header is a loopback name (`127.0.0.1`, `localhost`, `[::1]`, any port), so
//! a web page elsewhere cannot reach it through DNS rebinding.
//!
//! Nor may another web site use the gateway from the reader's browser: a page elsewhere
//! could embed `http://127.0.0.1:7401/veil:CHK@...` and time the answers to learn what
//! this node has cached, or make it fetch documents. Browsers say where a request comes
//! from in `Sec-Fetch-Site`; anything but `same-origin` (the gateway's own pages) and
//! `none` (a URI typed or pasted by the user) is refused before any block is looked at.
//! A link followed from another site gets a page that asks the user to go on, so links to
//! Veil documents still work with one click, and the other site learns nothing.

use crate::loopback::is_loopback_host;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures::StreamExt;
use std::fmt::Write as _;
use veil_client::decode::{body_stream, DecodeError, DEFAULT_WINDOW};
use veil_client::dir::{resolve, Resolved};
use veil_client::format::ManifestEntry;
use veil_client::signed::{resolve_signed, SignedError};
use veil_client::source::{BlockSource, FetchError};
use veil_proto::uri::{AnyUri, SignedUri};
use veil_proto::Uri;

mod html;
pub use html::{filter as filter_markup, Filter as MarkupFilter, FilterError};

/// The Content-Security-Policy of every gateway response.
pub const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'self'; connect-src 'self'; \
     img-src 'self' data:; media-src 'self'; font-src 'self'; style-src 'self' 'unsafe-inline'; \
     worker-src 'none'; manifest-src 'self'; sandbox allow-same-origin";

/// Headers set on every gateway response.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "SAMEORIGIN"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("x-dns-prefetch-control", "off"),
    // Documents are private reading: leave no copy in the browser's cache.
    ("cache-control", "no-store"),
];

/// The largest document the gateway serves by default (4 GiB).
pub const DEFAULT_MAX_DOCUMENT: u64 = 4 << 30;

/// A router serving Veil URIs from `source`. Mount it at the root of a loopback server.
pub fn router<S: BlockSource>(source: S) -> Router {
    router_with_limit(source, DEFAULT_MAX_DOCUMENT)
}

/// As [`router`], serving no document larger than `max_bytes` (a larger one is a 413
/// page, answered before any of it is fetched).
pub fn router_with_limit<S: BlockSource>(source: S, max_bytes: u64) -> Router {
    Router::new().route(
        "/{*uri}",
        any(move |req: Request| {
            let source = source.clone();
            async move { with_headers(handle(source, req, max_bytes).await) }
        }),
    )
}

/// Serves [`router`] on `listener` until the server fails (tests and tools; `veild`
/// mounts the router in its own server).
pub async fn serve<S: BlockSource>(
    listener: tokio::net::TcpListener,
    source: S,
) -> std::io::Result<()> {
    axum::serve(listener, router(source)).await
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(*name, HeaderValue::from_static(value));
    }
    resp
}

/// `s` made safe for HTML text and quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>{body}</body></html>\n",
        t = html_escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// An error a reader sees: what happened, what to try, and a way back to the start page.
fn error_page(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        status,
        title,
        &format!(
            "<p>{}</p><p>{}</p><p><a href=\"/\">Back to the start page</a></p>",
            html_escape(message),
            advice(status)
        ),
    )
}

/// What a reader can do about an error with `status` (HTML).
fn advice(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => {
            "Check that the address is complete: Veil addresses are long, and a cut-off \
             paste is the usual cause. If it is, no node your request reached holds the \
             document now: it may have faded because nobody keeps it alive (its publisher \
             can run <code>veil keepalive</code>), or this node may still be finding its \
             peers (see the start page) &mdash; try again in a few minutes."
        }
        StatusCode::GATEWAY_TIMEOUT => {
            "The network did not answer in time. Try again: a retry takes other routes, \
             and a node that has just started finds better peers within minutes."
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            "This node cannot reach the network now: it has no peer to ask or is \
             overloaded. The start page shows its peers; try again once it has some."
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            "The gateway does not serve documents this large. Fetch it with \
             <code>veil get URI -o FILE --max-size SIZE</code> if you trust it, or raise \
             the node's <code>gateway_max_bytes</code>."
        }
        StatusCode::BAD_REQUEST => {
            "A Veil address looks like <code>/veil:CHK@&hellip;/name</code> (also SSK, USK, \
             KSK): paste it into the box on the start page."
        }
        StatusCode::FORBIDDEN => {
            "The gateway answers only on this machine (127.0.0.1, localhost, [::1]) and \
             does not load Veil documents into other sites."
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "The gateway shows markup only in UTF-8, the encoding its filter reads. Fetch \
             the document with <code>veil get</code> to read it outside the browser."
        }
        StatusCode::BAD_GATEWAY => {
            "A block came back damaged or the document is malformed. Try again: another \
             route may hold a good copy. If it keeps failing, the document itself is broken."
        }
        _ => "Try again, or open the start page to see the node's state.",
    }
}

/// `GET /go?uri=...`: the start page's box. A pasted URI in any form the CLI takes
/// (gateway URL, percent-encoded, any case) leads to its gateway path.
fn go(query: Option<&str>) -> Response {
    let pasted = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("uri="))
        .map(|v| v.replace('+', " "))
        .map(|v| veil_proto::uri::percent_decode(&v).unwrap_or(v));
    let Some(pasted) = pasted.filter(|p| !p.trim().is_empty()) else {
        return error_page(StatusCode::BAD_REQUEST, "no URI was given");
    };
    match pasted.parse::<AnyUri>() {
        Ok(uri) => (StatusCode::SEE_OTHER, [(header::LOCATION, link(&uri))], ()).into_response(),
        Err(e) => error_page(StatusCode::BAD_REQUEST, &format!("not a Veil URI: {e}")),
    }
}

/// `GET /search?q=WORDS`: the start page's search box. Entries listed under every word
/// (keyword search, AND), each linking to its document inside the gateway. Only the
/// user (or the gateway's own pages) may search: another site could otherwise make the
/// node look words up and time the answers.
async fn search_page<S: BlockSource>(
    source: &S,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    let site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or("cross-site"));
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return error_page(
            StatusCode::FORBIDDEN,
            "another web site may not search through this gateway",
        );
    }
    let q = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("q="))
        .map(|v| v.replace('+', " "))
        .map(|v| veil_proto::uri::percent_decode(&v).unwrap_or(v))
        .unwrap_or_default();
    let words: Vec<String> = q.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "no words were given to search for");
    }
    let found = match veil_client::keyword::search(source, &words).await {
        Ok(found) => found,
        Err(e @ veil_client::keyword::KeywordError::Fetch(_)) => {
            return error_page(StatusCode::BAD_GATEWAY, &e.to_string())
        }
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/search\"><input name=\"q\" size=\"50\" value=\"{}\" \
         required> <button>Search</button></form>",
        html_escape(&q)
    );
    if found.is_empty() {
        body.push_str("<p>Nothing is listed under all of these words.</p>");
    } else {
        let _ = write!(
            body,
            "<p>{} found.</p><table><tr><th>name</th><th>size</th><th>type</th>\
             <th>description</th></tr>",
            found.len()
        );
        for e in &found {
            // Entries are checked to carry a Veil URI; a link to anything else is not made.
            let Ok(uri) = e.uri.parse::<AnyUri>() else {
                continue;
            };
            let name = if e.name.is_empty() { &e.uri } else { &e.name };
            let _ = write!(
                body,
                "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html_escape(&link(&uri)),
                html_escape(name),
                e.size,
                html_escape(&e.mime),
                html_escape(&e.description)
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<p><a href=\"/\">Back to the start page</a></p>");
    page(StatusCode::OK, &format!("Search: {q}"), &body)
}

/// `None` when the request comes from the gateway itself, from the user directly, or from
/// a client that does not say (not a browser); else the answer that replaces it: for a
/// followed link, a page asking the user to go on (its link is same-origin); for anything
/// else (images, frames, scripts' fetches), 403. Neither touches a block, so neither's
/// timing reveals what the node holds.
fn refuse_cross_site(headers: &HeaderMap, uri: &AnyUri) -> Option<Response> {
    let site = headers
        .get("sec-fetch-site")?
        .to_str()
        .unwrap_or("cross-site");
    if site == "same-origin" || site == "none" {
        return None;
    }
    let navigate = headers
        .get("sec-fetch-mode")
        .is_some_and(|m| m.as_bytes() == b"navigate");
    if !navigate {
        return Some(error_page(
            StatusCode::FORBIDDEN,
            "another web site may not load documents through this gateway",
        ));
    }
    let body = format!(
        "<p>You followed a link from another web site to a Veil document. The gateway does \
         not open it on that site's behalf.</p><p><a href=\"{}\">Open the document</a></p>",
        html_escape(&link(uri))
    );
    Some(page(StatusCode::OK, "Follow a link into Veil?", &body))
}

/// The Veil URI in a request path: the path without its leading `/`. The scheme and keys
/// may arrive percent-encoded (`veil%3ACHK%40...`); name and path segments stay encoded
/// for the URI parser, which decodes each segment once.
fn uri_from_path(path: &str) -> Result<AnyUri, String> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (head, tail) = match path.find('/') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let head = veil_proto::uri::percent_decode(head).map_err(|e| e.to_string())?;
    format!("{head}{tail}")
        .parse::<AnyUri>()
        .map_err(|e| e.to_string())
}

/// The absolute gateway path of `uri`.
fn link(uri: &AnyUri) -> String {
    format!("/{uri}")
}

/// `uri` with `more` path segments.
fn with_path(uri: &AnyUri, more: &str) -> AnyUri {
    let mut out = uri.clone();
    let segs = more.split('/').map(str::to_string);
    match &mut out {
        AnyUri::Chk(u) => u.path.extend(segs),
        AnyUri::Signed(
            SignedUri::Ssk { path, .. } | SignedUri::Usk { path, .. } | SignedUri::Ksk { path, .. },
        ) => path.extend(segs),
    }
    out
}

/// Links in a listing stay in the URI the reader asked by, so a listing of
/// `USK@.../site/-1/` leads to the newest edition's files, whichever that is next time.
fn listing(uri: &AnyUri, edition: Option<u64>, entries: &[ManifestEntry]) -> Response {
    let (name, path): (String, &[String]) = match uri {
        AnyUri::Chk(u) => (
            u.name.clone().unwrap_or_else(|| "directory".into()),
            &u.path,
        ),
        AnyUri::Signed(SignedUri::Ssk { name, path, .. }) => (name.clone(), path),
        AnyUri::Signed(SignedUri::Usk { site, path, .. }) => (site.clone(), path),
        AnyUri::Signed(SignedUri::Ksk { words, path }) => (words.clone(), path),
    };
    let mut title = name;
    if let Some(e) = edition {
        title.push_str(&format!(" (edition {e})"));
    }
    for seg in path {
        title.push('/');
        title.push_str(seg);
    }
    let mut body = String::from("<ul>\n");
    for e in entries {
        let target = with_path(uri, &e.path);
        // Display percent-encodes every segment, so a name like `javascript:x` or one
        // with quotes stays a harmless path on the gateway.
        let _ = writeln!(
            body,
            "<li><a href=\"{}\">{}</a> ({} bytes, {})</li>",
            html_escape(&link(&target)),
            html_escape(&e.path),
            e.size,
            html_escape(&e.mime)
        );
    }
    body.push_str("</ul>");
    page(StatusCode::OK, &title, &body)
}

fn decode_error(e: &DecodeError) -> Response {
    let status = match e {
        DecodeError::Fetch {
            error: FetchError::NotFound,
            ..
        }
        | DecodeError::NoSuchPath(_)
        | DecodeError::DocumentNotFound
        | DecodeError::NotADirectory => StatusCode::NOT_FOUND,
        DecodeError::WrongKey => StatusCode::BAD_REQUEST,
        DecodeError::Fetch {
            error: FetchError::Timeout,
            ..
        } => StatusCode::GATEWAY_TIMEOUT,
        DecodeError::Fetch {
            error: FetchError::Unavailable(_) | FetchError::NodeNotRunning(_),
            ..
        } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    error_page(status, &e.to_string())
}

async fn handle<S: BlockSource>(source: S, req: Request, max_bytes: u64) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    match host {
        None => return error_page(StatusCode::BAD_REQUEST, "missing Host header"),
        Some(h) if !is_loopback_host(h) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "the gateway answers only at a loopback address (127.0.0.1, localhost, [::1])",
            )
        }
        Some(_) => {}
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error_page(StatusCode::METHOD_NOT_ALLOWED, "only GET is served");
    }
    if req.uri().path() == "/go" {
        return go(req.uri().query());
    }
    if req.uri().path() == "/search" {
        return search_page(&source, req.headers(), req.uri().query()).await;
    }
    let asked = match uri_from_path(req.uri().path()) {
        Ok(u) => u,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &format!("not a Veil URI: {e}")),
    };
    if let Some(refused) = refuse_cross_site(req.headers(), &asked) {
        return refused;
    }
    // A signed name leads to a CHK document first (for a USK -1, the newest edition).
    let (uri, edition) = match &asked {
        AnyUri::Chk(u) => (u.clone(), None),
        AnyUri::Signed(s) => match resolve_signed(&source, s, 0).await {
            Ok(r) => (
                Uri {
                    keys: r.target,
                    name: None,
                    path: s.path().to_vec(),
                },
                r.edition,
            ),
            Err(e) => {
                let status = match e {
                    SignedError::Fetch(FetchError::NotFound) | SignedError::NoEdition(_) => {
                        StatusCode::NOT_FOUND
                    }
                    _ => StatusCode::BAD_GATEWAY,
                };
                return error_page(status, &e.to_string());
            }
        },
    };
    let download = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "download=1"));
    let mut resp = serve_chk(source, &asked, &uri, edition, max_bytes, download).await;
    if let Some(e) = edition {
        resp.headers_mut()
            .insert("veil-edition", HeaderValue::from(e));
    }
    resp
}

async fn serve_chk<S: BlockSource>(
    source: S,
    asked: &AnyUri,
    uri: &Uri,
    edition: Option<u64>,
    max_bytes: u64,
    download: bool,
) -> Response {
    let top = match resolve(&source, uri).await {
        Ok(Resolved::File(_, top)) => top,
        Ok(Resolved::Directory(entries)) => return listing(asked, edition, &entries),
        Err(e) => return decode_error(&e),
    };
    if top.meta.size > max_bytes {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "this document says it is {} bytes, more than this gateway serves ({max_bytes}); \
                 fetch it with veil get --max-size if you trust it",
                top.meta.size
            ),
        );
    }
    let size = top.meta.size;
    let shown = if download {
        Shown::Download
    } else {
        Shown::of(&top.meta.mime)
    };
    let mut body = body_stream(source, top, DEFAULT_WINDOW).boxed();
    // Fetch the first block before answering, so a missing document is a 404 rather than
    // a 200 cut short. Later failures can only cut the stream.
    let first = match body.next().await {
        Some(Err(e)) => return decode_error(&e),
        first => first,
    };
    let mut headers = HeaderMap::new();
    let mime = match shown {
        Shown::Markup => {
            let mut filter = html::Filter::new();
            let head = match first.map(|f| f.map(|b| filter.write(&b))) {
                Some(Ok(Ok(out))) => out,
                Some(Ok(Err(e))) => {
                    return error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string())
                }
                _ => Vec::new(),
            };
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            let rest = filtered(body, filter);
            let stream = futures::stream::iter([Ok(bytes::Bytes::from(head))]).chain(rest);
            return (StatusCode::OK, headers, Body::from_stream(stream)).into_response();
        }
        Shown::Warn(essence) => return download_page(asked, &essence, size),
        Shown::Download => {
            let name = asked_name(asked).unwrap_or_else(|| "document".into());
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            HeaderValue::from_static("application/octet-stream")
        }
        Shown::Text => HeaderValue::from_static("text/plain; charset=utf-8"),
        Shown::Media(m) => m,
    };
    let stream = futures::stream::iter(first).chain(body);
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}

/// How the gateway shows a document of a given MIME type.
enum Shown {
    /// HTML, XHTML, SVG: filtered, as `text/html`.
    Markup,
    /// Other text: as `text/plain`.
    Text,
    /// A picture, sound or video: as its own type.
    Media(HeaderValue),
    /// Anything else: a page naming the type, with a download link.
    Warn(String),
    /// Asked for with `?download=1`: as an attachment.
    Download,
}

impl Shown {
    fn of(mime: &str) -> Shown {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let media = [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "image/avif",
            "image/bmp",
            "image/x-icon",
            "image/vnd.microsoft.icon",
        ];
        match essence.as_str() {
            "text/html" | "application/xhtml+xml" | "image/svg+xml" => Shown::Markup,
            // A style sheet must keep its type to apply; its loads meet the CSP, which
            // refuses them before any connection (the browser test checks).
            "text/css" => Shown::Media(HeaderValue::from_static("text/css")),
            // Browsers show JSON as text; programs reading the gateway keep its type.
            "application/json" => Shown::Media(HeaderValue::from_static("application/json")),
            "application/xml" => Shown::Text,
            e if e.starts_with("text/") || e.ends_with("+xml") || e.ends_with("+json") => {
                Shown::Text
            }
            e if media.contains(&e) || e.starts_with("audio/") || e.starts_with("video/") => {
                HeaderValue::from_str(e).map_or(Shown::Warn(essence.clone()), Shown::Media)
            }
            _ => Shown::Warn(essence),
        }
    }
}

/// The file name at the end of the asked URI, if any.
fn asked_name(asked: &AnyUri) -> Option<String> {
    let text = asked.to_string();
    let last = text.rsplit('/').next()?;
    (!last.is_empty() && !last.contains('@'))
        .then(|| veil_proto::uri::percent_decode(last).unwrap_or_else(|_| last.to_string()))
}

/// The page for a type the gateway does not hand to the browser.
fn download_page(asked: &AnyUri, essence: &str, size: u64) -> Response {
    let href = format!("{}?download=1", link(asked));
    let kind = if essence.is_empty() {
        "no type".to_string()
    } else {
        format!("type <code>{}</code>", html_escape(essence))
    };
    page(
        StatusCode::OK,
        "Download this document?",
        &format!(
            "<p>This document ({size} bytes) is of {kind}, which the gateway does not open in \
             the browser: a program that opens it may reach other hosts and reveal you.</p>\
             <p><a href=\"{}\" download>Download it</a> and open it only with a program you \
             trust to stay offline.</p><p><a href=\"/\">Back to the start page</a></p>",
            html_escape(&href)
        ),
    )
}

/// The rest of a markup document, filtered as it streams; an error cuts the stream.
fn filtered(
    body: futures::stream::BoxStream<'static, Result<bytes::Bytes, DecodeError>>,
    filter: html::Filter,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    futures::stream::unfold(Some((body, filter)), |state| async move {
        let (mut body, mut filter) = state?;
        match body.next().await {
            Some(Ok(chunk)) => match filter.write(&chunk) {
                Ok(out) => Some((Ok(bytes::Bytes::from(out)), Some((body, filter)))),
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            },
            Some(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), None)),
            None => match filter.end() {
                Ok(out) => Some((Ok(bytes::Bytes::from(out)), None)),
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            },
        }
    })
}

#[cfg(test)]
mod tests;
