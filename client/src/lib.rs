//! `veil-client`: encode, publish and fetch Veil documents.
//!
//! # Layout
//! - [`source`]: the [`BlockSource`] / [`BlockSink`] traits the rest is generic over,
//!   and [`MemoryStore`] for tests.
#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]

pub mod source;

pub use source::{BlockSink, BlockSource, FetchError, InsertError, MemoryStore};
