//! The loopback HTTP API (axum): blocks, status, peers and metrics, all behind
//! `Authorization: Bearer <token>`; and the unauthenticated, Host-checked status page.
//!
//! | call | answer |
//! |---|---|
//! | `PUT /api/v1/blocks/{routing_key}?htl=N` | body: the block (32,788 bytes); verified, stored durably, routed; JSON [`crate::InsertOutcome`] |
//! | `GET /api/v1/blocks/{routing_key}?htl=N&tunnel=T` | the block, `application/octet-stream` (`tunnel`: one random number per download, docs/anonymity.md) |
//! | `GET /api/v1/status` | JSON [`crate::Status`] |
//! | `GET /api/v1/peers` | JSON list of [`crate::PeerInfo`] |
//! | `GET /api/v1/openapi.json` | this API's OpenAPI 3.1 description ([`OPENAPI`], docs/openapi.json) |
//! | `GET /metrics` | Prometheus text |
//!
//! The browser gateway (`crate::gateway`, `/veil:CHK@...`, no token, loopback Host
//! only) is mounted in the same server and fetches through this node.
//!
//! Errors are JSON `{"code": "<code>", "error": "<code>", "message": "<text>"}`: 400 bad input, 401 no or
//! wrong token, 404 data not found, 413 body too large, 503 route not found or
//! overloaded, 504 timeout, 507 the node's disk is full.

use crate::admission::{Admission, Evicted, Ticket};
use crate::node::{NodeHandle, RequestError};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use veil_proto::{Block, Htl, RoutingKey, BLOCK_LEN};

/// An API error: status, stable snake_case code, human message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // `error` is `code`'s name from before `code`: kept for v1 clients.
        let body = serde_json::json!({
            "code": self.code,
            "error": self.code,
            "message": self.message,
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        let (status, code) = match &e {
            RequestError::DataNotFound => (StatusCode::NOT_FOUND, "data_not_found"),
            RequestError::RouteNotFound => (StatusCode::SERVICE_UNAVAILABLE, "route_not_found"),
            RequestError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            RequestError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            RequestError::BadBlock => (StatusCode::BAD_REQUEST, "block_mismatch"),
            RequestError::Store(crate::store::StoreError::Full) => {
                (StatusCode::INSUFFICIENT_STORAGE, "disk_full")
            }
            RequestError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
            RequestError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            RequestError::Collision => (StatusCode::CONFLICT, "collision"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// `GET /api/v1/blocks/{key}?htl=`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HtlQuery {
    htl: Option<u8>,
    /// The anonymity walk's tunnel: one per download (docs/anonymity.md).
    tunnel: Option<u64>,
}

/// `PUT /api/v1/blocks/{key}?htl=&role=&replicas=`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PutQuery {
    htl: Option<u8>,
    /// `data` (default) or `index`: top and index blocks get `index_replicas`.
    role: Option<String>,
    /// Nodes to store it on, overriding the role's default (1 to 16).
    replicas: Option<u8>,
}

/// The whole HTTP app: API, metrics and status page.
pub(crate) fn app(node: NodeHandle) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/blocks/{key}",
            get(get_block).put(put_block).delete(delete_block),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/openapi.json", get(openapi))
        // Any other API path: a JSON 404, not the gateway's "not a Veil URI" page.
        .route("/api/{*rest}", axum::routing::any(unknown_api))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BLOCK_LEN))
        .route_layer(middleware::from_fn_with_state(node.clone(), auth));
    Router::new()
        .route("/", get(crate::status_page::page))
        .merge(api)
        .with_state(node.clone())
        // Every other path goes to the browser gateway (`/veil:CHK@...` documents, and its
        // own error pages for anything else).
        .fallback_service(crate::gateway::router_with_limit(
            node.clone(),
            node.config().gateway_max_bytes,
        ))
}

async fn unknown_api(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        format!(
            "{} is not an API endpoint: see /api/v1/openapi.json",
            uri.path()
        ),
    )
}

/// The gateway fetches through the node: local store and cache first, then the network.
impl veil_client::BlockSource for NodeHandle {
    fn fetch(
        &self,
        key: RoutingKey,
    ) -> impl std::future::Future<Output = Result<Block, veil_client::FetchError>> + Send {
        use veil_client::FetchError;
        let node = self.clone();
        async move {
            NodeHandle::fetch(&node, key, None)
                .await
                .map_err(|e| match e {
                    RequestError::DataNotFound => FetchError::NotFound,
                    RequestError::Timeout => FetchError::Timeout,
                    RequestError::BadBlock => FetchError::BadBlock,
                    e @ (RequestError::RouteNotFound
                    | RequestError::Overloaded
                    | RequestError::Stopped) => FetchError::Unavailable(e.to_string()),
                    e => FetchError::Other(e.to_string()),
                })
        }
    }
}

/// Most API connections open at once. A newcomer always gets in: when full, the oldest
/// connection not answering a request is closed ([`crate::admission`]), so idle or
/// half-sent connections cannot lock `veil` commands out.
const MAX_API_CONNECTIONS: usize = 512;

/// A request's header must arrive within this long, so a slow writer holds nothing.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the app until shutdown, then lets the connections finish what they answer.
pub(crate) async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = app(node.clone());
    let admission = Admission::new(MAX_API_CONNECTIONS);
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = std::time::Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            a = listener.accept() => a,
            // Reap finished connections as we go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, from) = match accepted {
            Ok(s) => {
                backoff = std::time::Duration::from_millis(10);
                s
            }
            Err(e) => {
                tracing::warn!(error = %e, "api accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        let ((ticket, evicted), made_room) = admission.admit_counted(from.ip());
        if made_room {
            node.counters().api_connections_evicted.inc();
        }
        connections.spawn(connection(
            stream,
            app.clone(),
            ticket,
            evicted,
            shutdown.clone(),
        ));
    }
    while connections.join_next().await.is_some() {}
}

/// Serves one API connection until it closes, is evicted or the node stops.
async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    ticket: Ticket,
    evicted: Evicted,
    mut shutdown: watch::Receiver<bool>,
) {
    let ticket = std::sync::Arc::new(ticket);
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        let busy = Busy::new(ticket.clone());
        async move {
            let response = tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await;
            // The connection stays busy until the body has been sent (or dropped).
            response.map(|r| r.map(|body| axum::body::Body::new(BusyBody { body, _busy: busy })))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "api connection ended");
            }
        }
        _ = evicted.wait() => {}
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the node stops (or its handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Marks an API connection as answering a request while it lives: such a connection is
/// evicted only when every other one is too.
struct Busy(std::sync::Arc<Ticket>);

impl Busy {
    fn new(ticket: std::sync::Arc<Ticket>) -> Busy {
        ticket.prove();
        Busy(ticket)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.unprove();
    }
}

/// A response body that keeps its connection [`Busy`] until it is sent or dropped.
struct BusyBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(
    State(node): State<NodeHandle>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.trim().as_bytes(), node.token().as_bytes()) => next.run(req).await,
        Some(_) => {
            node.counters().api_unauthorized.inc();
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong API token")
                .into_response()
        }
        None => {
            node.counters().api_unauthorized.inc();
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing 'Authorization: Bearer <token>' (the token is in the data directory's 'token' file)",
            )
            .into_response()
        }
    }
}

fn parse_key(text: &str) -> Result<RoutingKey, ApiError> {
    text.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_routing_key",
            format!("routing key: {e}"),
        )
    })
}

fn parse_htl(
    q: Result<Query<HtlQuery>, QueryRejection>,
) -> Result<(Option<Htl>, Option<u64>), ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    Ok((q.htl.map(Htl), q.tunnel))
}

async fn get_block(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
    q: Result<Query<HtlQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = parse_key(&key)?;
    let (htl, tunnel) = parse_htl(q)?;
    let block = node.fetch_in(key, htl, tunnel).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(block),
    )
        .into_response())
}

async fn put_block(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
    q: Result<Query<PutQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = parse_key(&key)?;
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let htl = q.htl.map(Htl);
    let replicas = put_replicas(&node, &q)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a block is {BLOCK_LEN} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
        }
    })?;
    let block = Block::new(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_block", e.to_string()))?;
    let outcome = node.insert(key, block, htl, replicas).await?;
    Ok(Json(serde_json::json!({
        "routing_key": key.to_string(),
        "routed": outcome.routed,
        "route_exhausted": outcome.route_exhausted,
        "local_only": outcome.local_only,
    }))
    .into_response())
}

/// Deletes a block from this node's store and cache (not from the network).
async fn delete_block(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let key = parse_key(&key)?;
    let removed = node.remove_block(key).await?;
    Ok(Json(serde_json::json!({
        "routing_key": key.to_string(),
        "removed": removed,
    }))
    .into_response())
}

/// The replicas a `PUT` asks for: explicit, else by role (`None`: the node's default).
fn put_replicas(node: &NodeHandle, q: &PutQuery) -> Result<Option<u8>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m);
    let most = veil_proto::message::MAX_REPLICAS;
    if let Some(r) = q.replicas {
        if !(1..=most).contains(&r) {
            return Err(bad(format!("replicas must be between 1 and {most}")));
        }
        return Ok(Some(r));
    }
    match q.role.as_deref() {
        None | Some("data") => Ok(None),
        Some("index") => Ok(Some(node.config().index_replicas)),
        Some(other) => Err(bad(format!("role must be data or index, not {other:?}"))),
    }
}

async fn status(State(node): State<NodeHandle>) -> Result<Response, ApiError> {
    Ok(Json(node.status().await?).into_response())
}

async fn peers(State(node): State<NodeHandle>) -> Response {
    let list: Vec<serde_json::Value> = node
        .peers()
        .iter()
        .map(|p| {
            serde_json::json!({
                "key": p.key.to_string(),
                "addr": p.addr.to_string(),
                "listen_port": p.listen_port,
                "location": veil_proto::Location(p.location).as_fraction(),
                "location_u64": p.location,
                "outbound": p.outbound,
                "origin": p.origin,
                "routable": p.routable,
                "rtt_ms": p.rtt_ms,
            })
        })
        .collect();
    Json(list).into_response()
}

/// The API's OpenAPI 3.1 description (docs/openapi.json, built in).
pub(crate) const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(node): State<NodeHandle>) -> Result<Response, ApiError> {
    let text = node.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// In-process publishing (tools, the testnet): the same path as `PUT /api/v1/blocks`.
impl veil_client::BlockSink for NodeHandle {
    fn insert(
        &self,
        key: RoutingKey,
        block: Block,
    ) -> impl std::future::Future<Output = Result<(), veil_client::InsertError>> + Send {
        self.insert_as(key, block, veil_client::BlockRole::Data)
    }

    fn insert_as(
        &self,
        key: RoutingKey,
        block: Block,
        role: veil_client::BlockRole,
    ) -> impl std::future::Future<Output = Result<(), veil_client::InsertError>> + Send {
        use veil_client::InsertError;
        let node = self.clone();
        let replicas = match role {
            veil_client::BlockRole::Data => None,
            veil_client::BlockRole::Index => Some(node.config().index_replicas),
        };
        async move {
            NodeHandle::insert(&node, key, block, None, replicas)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    RequestError::Timeout => InsertError::Timeout,
                    RequestError::BadBlock => InsertError::Rejected(e.to_string()),
                    e @ (RequestError::RouteNotFound
                    | RequestError::Overloaded
                    | RequestError::Stopped) => InsertError::Unavailable(e.to_string()),
                    RequestError::Collision => InsertError::Collision,
                    e => InsertError::Other(e.to_string()),
                })
        }
    }
}
