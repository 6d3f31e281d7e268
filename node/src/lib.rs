#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]
//! `veil-node`: the I/O shell around Veil's routing core.
pub mod config;
pub mod identity;
pub mod link;
pub mod store;
