#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]
//! `veil-node`: the I/O shell around Veil's routing core — links, peers, the datastore,
//! the loopback HTTP API, config and metrics. `veild` (src/main.rs) only parses
//! arguments and calls [`Node::start`]; tests and the testnet start nodes in-process the
//! same way.
//!
//! # Layout
//! - [`config`]: the TOML config and its command-line overrides.
//! - [`identity`]: the static key, the API token and atomic files in the data directory.
//! - [`link`]: TCP + Noise XK links, framing, keepalive.
//! - `peers`: the accept loop and the dialers that keep configured peers connected.
//! - `driver`: the task that owns the router and the live links.
//! - [`store`]: the store and cache (block slots in a flat file, a redb index) with
//!   group commit.
//! - `api`: the HTTP API, `/metrics` and the status page.
//! - [`gateway`]: the browser gateway, an axum router over any `veil_client::BlockSource`.
//! - [`loopback`]: the one `Host` check the status page and the gateway share.
//! - [`metrics`]: counters and their Prometheus text.
//! - [`node`]: [`Node`] and [`NodeHandle`], which drive all of the above.
//! - `start`: [`Node::start`], which wires them together, one step a function.
//! - [`testnet`]: `veild testnet`, a whole network of in-process nodes on loopback.

pub mod admission;
mod api;
pub mod config;
mod driver;
pub mod gateway;
mod history;
pub mod identity;
pub mod link;
pub mod loopback;
pub mod metrics;
pub mod node;
mod peers;
mod start;
mod status_page;
pub mod store;
pub mod testnet;

pub use config::{Config, Overrides};
pub use node::{
    DefenceCounters, InsertOutcome, Node, NodeError, NodeHandle, RequestCounters, RequestError,
    Status, TrafficCounters,
};
pub use peers::PeerInfo;
