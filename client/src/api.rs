//! A client for `veild`'s loopback HTTP API, and how to find the node.
//!
//! ```text
//! PUT /api/v1/blocks/{routing key}[?htl=N]   body: the raw block
//! GET /api/v1/blocks/{routing key}           answer: the raw block
//! GET /api/v1/status, GET /api/v1/peers      answer: JSON
//! ```
//!
//! Every request carries `Authorization: Bearer <token>`. Errors come back as
//! `{"code": code, "message": text}` with 400/401/404/503/504 and are mapped to typed
//! errors. The node is found through its data directory (files `api` and `token`, which
//! `veild` writes once it is ready) or an explicit URL and token.

use crate::source::{BlockRole, BlockSink, BlockSource, FetchError, InsertError};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::Duration;
use veil_proto::{Block, RoutingKey, BLOCK_LEN};

/// How long one request may take: a fetch may cross many hops and backtrack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest JSON answer read from the node.
const MAX_JSON: usize = 4 * 1024 * 1024;

/// Why an API call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Nothing answers at the API address.
    #[error("the node is not running (nothing answers at {0})")]
    NodeNotRunning(String),
    /// The token was refused (401).
    #[error("the node refused the API token (wrong --token or data directory?)")]
    Unauthorized,
    /// Not found (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was malformed or refused (400).
    #[error("the node refused the request: {0}")]
    BadRequest(String),
    /// The node cannot serve now (503).
    #[error("the node could not complete it: {0}")]
    Unavailable(String),
    /// The node or the request timed out (504 or a local timeout).
    #[error("timed out{0}")]
    Timeout(String),
    /// Another block is already published under this signed key (409).
    #[error("another document is already published under this name (the first stays)")]
    Collision,
    /// The HTTP exchange failed after the node was reached (a reset connection, a body
    /// cut short).
    #[error("talking to the node failed: {0}")]
    Http(#[source] std::sync::Arc<reqwest::Error>),
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

impl From<ApiError> for FetchError {
    fn from(e: ApiError) -> FetchError {
        match e {
            ApiError::NodeNotRunning(s) => FetchError::NodeNotRunning(s),
            ApiError::Unauthorized => FetchError::Unauthorized,
            ApiError::NotFound(_) => FetchError::NotFound,
            ApiError::Unavailable(s) => FetchError::Unavailable(s),
            ApiError::Timeout(_) => FetchError::Timeout,
            other => FetchError::Other(other.to_string()),
        }
    }
}

impl From<ApiError> for InsertError {
    fn from(e: ApiError) -> InsertError {
        match e {
            ApiError::NodeNotRunning(s) => InsertError::NodeNotRunning(s),
            ApiError::Unauthorized => InsertError::Unauthorized,
            ApiError::BadRequest(s) => InsertError::Rejected(s),
            ApiError::Unavailable(s) => InsertError::Unavailable(s),
            ApiError::Timeout(_) => InsertError::Timeout,
            ApiError::Collision => InsertError::Collision,
            other => InsertError::Other(other.to_string()),
        }
    }
}

/// Why the node's address or token could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    /// A file of the data directory could not be read.
    #[error("cannot read {path} ({error}): is veild running with this data directory?")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// Neither a data directory nor `--api` is known.
    #[error("no data directory: set --data-dir, VEIL_DATA_DIR or HOME, or give --api and --token")]
    NoDataDir,
    /// `--api` was given without `--token`, or the token is empty.
    #[error("no API token: give --token, or a --data-dir whose token file belongs to that node")]
    MissingToken,
    /// The API URL is not an http URL.
    #[error("the API address must look like http://127.0.0.1:PORT, got {0:?}")]
    BadUrl(String),
}

pub use crate::paths::default_data_dir;

/// A handle on one node's API. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    token: String,
    htl: Option<u8>,
    /// The anonymity walk's tunnel for this client's requests: random per client, so
    /// one download (one client, cloned as it likes) leaves the node by one walk.
    tunnel: u64,
    http: reqwest::Client,
    /// Set when the node kept a block only locally (it had no peers).
    local_only: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7401`) with `token`.
    pub fn new(base: &str, token: &str) -> Result<ApiClient, LocateError> {
        let base = base.trim().trim_end_matches('/');
        if token.trim().is_empty() {
            return Err(LocateError::MissingToken);
        }
        // Parsed here, so a bad port or bracket is this one clear error rather than the
        // HTTP client's "builder error" at the first request.
        let parsed = reqwest::Url::parse(base).ok();
        if !base.starts_with("http://") || parsed.is_none_or(|u| u.host().is_none()) {
            return Err(LocateError::BadUrl(base.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| LocateError::BadUrl(e.to_string()))?;
        Ok(ApiClient {
            base: base.to_string(),
            token: token.trim().to_string(),
            htl: None,
            tunnel: rand::random(),
            http,
            local_only: Default::default(),
        })
    }

    /// A client for the node whose data directory is `dir` (files `api` and `token`).
    pub fn from_data_dir(dir: &Path) -> Result<ApiClient, LocateError> {
        ApiClient::locate(Some(dir), None, None)
    }

    /// Finds the node: `api` and `token` when both are given; otherwise the data
    /// directory (`data_dir`, else [`default_data_dir`]) supplies what is missing.
    pub fn locate(
        data_dir: Option<&Path>,
        api: Option<&str>,
        token: Option<&str>,
    ) -> Result<ApiClient, LocateError> {
        if let (Some(api), Some(token)) = (api, token) {
            return ApiClient::new(api, token);
        }
        let dir = match data_dir {
            Some(d) => d.to_path_buf(),
            None => match default_data_dir() {
                Some(d) => d,
                None if api.is_some() => return Err(LocateError::MissingToken),
                None => return Err(LocateError::NoDataDir),
            },
        };
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|error| LocateError::Read { path, error })
        };
        let api_given = api.is_some();
        let api = match api {
            Some(a) => a.to_string(),
            None => read("api")?,
        };
        let token = match token {
            Some(t) => t.to_string(),
            // `--api` alone: the token of the data directory, if it has one.
            None if api_given => read("token").map_err(|_| LocateError::MissingToken)?,
            None => read("token")?,
        };
        ApiClient::new(&api, &token)
    }

    /// Sends inserts and requests with this hops-to-live instead of the node's default.
    pub fn with_htl(mut self, htl: Option<u8>) -> ApiClient {
        self.htl = htl;
        self
    }

    /// Fetches on this anonymity tunnel instead of the client's random one (the node
    /// sends every request of one tunnel out by the same walk: docs/anonymity.md).
    pub fn with_tunnel(mut self, tunnel: u64) -> ApiClient {
        self.tunnel = tunnel;
        self
    }

    /// The tunnel this client's fetches take.
    pub fn tunnel(&self) -> u64 {
        self.tunnel
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn block_url(&self, key: &RoutingKey) -> String {
        format!("{}/api/v1/blocks/{key}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let message = read_limited(resp, MAX_JSON)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(match status {
            400 => ApiError::BadRequest(message),
            401 | 403 => ApiError::Unauthorized,
            404 => ApiError::NotFound(message),
            409 => ApiError::Collision,
            503 => ApiError::Unavailable(message),
            504 => ApiError::Timeout(format!(": {message}")),
            _ => ApiError::Other(format!("HTTP {status}: {message}")),
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ApiError {
        if e.is_connect() {
            ApiError::NodeNotRunning(self.base.clone())
        } else if e.is_timeout() {
            ApiError::Timeout(String::new())
        } else {
            ApiError::Http(std::sync::Arc::new(e))
        }
    }

    /// Inserts a data block.
    pub async fn put_block(&self, key: &RoutingKey, block: &Block) -> Result<(), ApiError> {
        self.put_block_as(key, block, BlockRole::Data).await
    }

    /// Inserts a block of `role` (index blocks are stored on more nodes).
    pub async fn put_block_as(
        &self,
        key: &RoutingKey,
        block: &Block,
        role: BlockRole,
    ) -> Result<(), ApiError> {
        let mut url = self.block_url(key);
        let mut query = Vec::new();
        if let Some(htl) = self.htl {
            query.push(format!("htl={htl}"));
        }
        if role != BlockRole::Data {
            query.push(format!("role={}", role.as_str()));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let req = self.http.put(url).body(block.bytes().clone());
        let resp = self.send(req).await?;
        let bytes = read_limited(resp, MAX_JSON)
            .await
            .map_err(|e| self.transport_error(e))?;
        let local_only = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("local_only").and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
        if local_only {
            self.local_only
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the node kept any block put through this client only in its own store,
    /// for want of peers (it inserts them once it has some).
    pub fn stored_locally_only(&self) -> bool {
        self.local_only.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the node holds the block in its own store or cache (asked with HTL 0,
    /// so nothing goes out to the network).
    pub async fn has_local(&self, key: &RoutingKey) -> Result<bool, ApiError> {
        let url = format!("{}?htl=0", self.block_url(key));
        match self.send(self.http.get(url)).await {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Fetches a block (the node verifies it; so does the caller).
    pub async fn get_block(&self, key: &RoutingKey) -> Result<Block, ApiError> {
        let mut url = format!("{}?tunnel={}", self.block_url(key), self.tunnel);
        if let Some(htl) = self.htl {
            url.push_str(&format!("&htl={htl}"));
        }
        let resp = self.send(self.http.get(url)).await?;
        let bytes = read_limited(resp, BLOCK_LEN)
            .await
            .map_err(|e| self.transport_error(e))?;
        Block::new(bytes).map_err(|e| ApiError::Other(format!("bad block from node: {e}")))
    }

    async fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        let bytes = read_limited(resp, MAX_JSON)
            .await
            .map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Other(format!("bad JSON: {e}")))
    }

    /// The node's status (`GET /api/v1/status`).
    pub async fn status(&self) -> Result<serde_json::Value, ApiError> {
        self.get_json("/api/v1/status").await
    }

    /// The node's peers (`GET /api/v1/peers`).
    pub async fn peers(&self) -> Result<serde_json::Value, ApiError> {
        self.get_json("/api/v1/peers").await
    }
}

/// Reads a body of at most `limit` bytes; a longer one is cut at `limit + 1` bytes so the
/// caller's length check refuses it without reading the rest.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, reqwest::Error> {
    let mut buf = Vec::with_capacity(limit.min(64 * 1024));
    while let Some(chunk) = resp.chunk().await? {
        let room = limit + 1 - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() > limit {
            break;
        }
    }
    Ok(Bytes::from(buf))
}

impl BlockSource for ApiClient {
    async fn fetch(&self, key: RoutingKey) -> Result<Block, FetchError> {
        let block = self.get_block(&key).await?;
        block.verify(&key).map_err(|_| FetchError::BadBlock)?;
        Ok(block)
    }
}

impl crate::source::HoldsBlocks for ApiClient {
    async fn holds(&self, key: &RoutingKey) -> bool {
        self.has_local(key).await.unwrap_or(false)
    }
}

impl BlockSink for ApiClient {
    async fn insert(&self, key: RoutingKey, block: Block) -> Result<(), InsertError> {
        Ok(self.put_block(&key, &block).await?)
    }

    async fn insert_as(
        &self,
        key: RoutingKey,
        block: Block,
        role: BlockRole,
    ) -> Result<(), InsertError> {
        Ok(self.put_block_as(&key, &block, role).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_api_urls_are_refused_up_front() {
        for bad in [
            "http://",
            "https://127.0.0.1:7401",
            "http://127.0.0.1:99999",
            "http://[::1",
            "127.0.0.1:7401",
        ] {
            assert!(
                matches!(ApiClient::new(bad, "t"), Err(LocateError::BadUrl(_))),
                "{bad}"
            );
        }
        for good in [
            "http://127.0.0.1:7401",
            "http://[::1]:7401/",
            "http://localhost:1",
        ] {
            assert!(ApiClient::new(good, "t").is_ok(), "{good}");
        }
    }
}
